//! A three-node nats-server cluster with JetStream on loopback, owned by one
//! test: each node has its own client and route port and its own store, and
//! can be killed (SIGKILL, like a crash) and started again on the same ports
//! and store. Streams created with 3 replicas survive the loss of one node.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use super::TempDir;
use super::output::Output;
use super::server::{free_port, nats_server_binary};

const NODE_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a fresh or restarted cluster may take to elect its JetStream
/// meta leader (a few seconds on a loaded 2-core machine).
const META_LEADER_TIMEOUT: Duration = Duration::from_secs(60);

struct Node {
    name: String,
    client_port: u16,
    config: PathBuf,
    child: Option<Child>,
    output: Option<Output>,
}

/// Three clustered `nats-server -js` processes on 127.0.0.1.
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts three nodes (`n1`, `n2`, `n3`) and waits until JetStream has a
    /// meta leader, so that streams can be created.
    pub async fn start() -> NatsCluster {
        let dir = TempDir::new("cluster");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports.iter().map(|(_, route)| format!("nats-route://127.0.0.1:{route}")).collect();
        let mut nodes = Vec::new();
        for (index, (client_port, route_port)) in ports.iter().enumerate() {
            let name = format!("n{}", index + 1);
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).expect("create a node's store");
            let config = dir.path().join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client_port}\n\
                 jetstream {{ store_dir: {store:?}, max_memory_store: 256MB, max_file_store: 2GB }}\n\
                 cluster {{ name: weir-test, listen: 127.0.0.1:{route_port}, routes: [{}] }}\n",
                routes.join(", "),
                store = store.to_str().expect("UTF-8 paths"),
            );
            std::fs::write(&config, text).expect("write a node's config");
            nodes.push(Node { name, client_port: *client_port, config, child: None, output: None });
        }
        let mut cluster = NatsCluster { nodes, _dir: dir };
        for index in 0..3 {
            cluster.spawn(index);
        }
        cluster.wait_for_meta_leader().await;
        cluster
    }

    /// Every node's URL, comma-separated, as `[nats] url` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The names of the nodes (`n1`, `n2`, `n3`).
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// A client that may connect to any running node.
    pub async fn client(&self) -> async_nats::Client {
        let urls: Vec<async_nats::ServerAddr> = self.urls().split(',').map(|u| u.parse().expect("a URL")).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match async_nats::ConnectOptions::new().retry_on_initial_connect().connect(urls.as_slice()).await {
                Ok(client) => return client,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("[cluster] connect: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot connect to the cluster at {}: {e}", self.urls()),
            }
        }
    }

    /// A client and its JetStream context.
    pub async fn jetstream(&self) -> (async_nats::Client, jetstream::Context) {
        let client = self.client().await;
        let js = jetstream::new(client.clone());
        (client, js)
    }

    /// Kills node `name` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, name: &str) {
        let node = self.node(name);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        eprintln!("[cluster] killed {name}");
    }

    /// Starts node `name` again on its ports and store.
    pub fn restart(&mut self, name: &str) {
        let index = self.nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"));
        self.spawn(index);
        eprintln!("[cluster] restarted {name}");
    }

    /// Kills every node, then starts them all again, and waits for a meta
    /// leader: a whole-cluster restart.
    pub async fn restart_all(&mut self) {
        for name in self.names() {
            self.kill(&name);
        }
        for index in 0..self.nodes.len() {
            self.spawn(index);
        }
        self.wait_for_meta_leader().await;
    }

    /// The node that leads stream `stream` right now, once it has one.
    pub async fn stream_leader(&self, js: &jetstream::Context, stream: &str) -> String {
        let deadline = Instant::now() + META_LEADER_TIMEOUT;
        loop {
            let leader = match js.get_stream(stream).await {
                Ok(mut s) => s.info().await.ok().and_then(|i| i.cluster.as_ref().and_then(|c| c.leader.clone())),
                Err(_) => None,
            };
            match leader {
                Some(leader) if !leader.is_empty() => return leader,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => panic!("stream {stream} has no leader after {META_LEADER_TIMEOUT:?}"),
            }
        }
    }

    /// Creates a file stream with 3 replicas, retrying while the cluster
    /// settles (a fresh meta leader may refuse at first).
    pub async fn create_stream(&self, js: &jetstream::Context, name: &str, subjects: &[&str]) {
        let deadline = Instant::now() + META_LEADER_TIMEOUT;
        loop {
            let created = js
                .get_or_create_stream(jetstream::stream::Config {
                    name: name.into(),
                    subjects: subjects.iter().map(|s| s.to_string()).collect(),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("[cluster] create stream {name}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("cannot create stream {name} with 3 replicas: {e}"),
            }
        }
        self.stream_leader(js, name).await;
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    fn spawn(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert!(node.child.is_none(), "node {} is already running", node.name);
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        loop {
            let mut child = Command::new(nats_server_binary())
                .arg("-c")
                .arg(&node.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}; run ./dev setup", nats_server_binary().display()));
            let output = Output::capture(child.stderr.take().expect("piped stderr"), format!("[nats:{}]", node.name));
            match output.wait_for(NODE_READY_TIMEOUT, |text| text.contains("Server is ready")) {
                Ok(()) => {
                    node.child = Some(child);
                    node.output = Some(output);
                    return;
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = output.text();
                    // Right after a kill a port may still be held: try again.
                    if log.contains("address already in use") && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    panic!("node {} did not start:\n{log}", node.name);
                }
            }
        }
    }

    async fn wait_for_meta_leader(&self) {
        use futures::StreamExt as _;
        let (_client, js) = self.jetstream().await;
        let deadline = Instant::now() + META_LEADER_TIMEOUT;
        loop {
            // Listing streams needs the meta leader, and reads the same on
            // every server version (account info does not).
            let listed = js.stream_names().next().await.transpose();
            match listed {
                Ok(_) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("[cluster] waiting for JetStream: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("the cluster's JetStream did not come up within {META_LEADER_TIMEOUT:?}: {e}"),
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
