//! A `nats-server -js` owned by one test (after nats.rs's `nats-server` test
//! crate): a free loopback port, its own JetStream store, killed on drop.
//! The system's NATS on 4222 is never used.
//!
//! The server binary is `$WEIR_NATS_SERVER` when set (`./dev` points it at
//! the pinned current nats-server it installs, and at Debian's oldest
//! supported one for the second pass of the NATS-facing tests), otherwise
//! `nats-server` on the `PATH`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;
use super::output::{Output, WaitError};

const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How clients must authenticate to a [`NatsServer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No authentication.
    #[default]
    None,
    /// `user` and `password`.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
}

impl Auth {
    /// The `[nats]` lines of a `weir.toml` for this authentication.
    pub fn weir_toml(&self) -> String {
        use super::toml_str;
        match self {
            Auth::None => String::new(),
            Auth::UserPassword { user, password } => {
                format!("user = {}\npassword = {}\n", toml_str(user), toml_str(password))
            }
            Auth::Token(token) => format!("token = {}\n", toml_str(token)),
        }
    }

    /// Client options that authenticate this way.
    pub fn connect_options(&self) -> async_nats::ConnectOptions {
        let options = async_nats::ConnectOptions::new();
        match self {
            Auth::None => options,
            Auth::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
            Auth::Token(token) => options.token(token.clone()),
        }
    }
}

/// Options for a [`NatsServer`].
#[derive(Debug, Default)]
pub struct NatsServerBuilder {
    port: Option<u16>,
    auth: Auth,
}

impl NatsServerBuilder {
    /// Listen on this port instead of one the server picks.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Require a user and password.
    pub fn user_password(mut self, user: &str, password: &str) -> Self {
        self.auth = Auth::UserPassword { user: user.into(), password: password.into() };
        self
    }

    /// Require a token.
    pub fn token(mut self, token: &str) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(self) -> NatsServer {
        let mut server = NatsServer { child: None, output: None, port: self.port, auth: self.auth, store: TempDir::new("nats") };
        server.start();
        server
    }
}

/// A running (or stopped) `nats-server -js` on 127.0.0.1.
pub struct NatsServer {
    child: Option<Child>,
    output: Option<Output>,
    /// Known once the first start has chosen it; kept across restarts.
    port: Option<u16>,
    auth: Auth,
    store: TempDir,
}

impl NatsServer {
    /// Starts a server with JetStream and no authentication on a free port.
    #[allow(clippy::new_without_default)]
    pub fn new() -> NatsServer {
        NatsServer::builder().start()
    }

    /// Options: port, authentication.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port())
    }

    /// The client port; the same after [`stop`](Self::stop) and
    /// [`start`](Self::start).
    pub fn port(&self) -> u16 {
        self.port.expect("the server has started once")
    }

    /// How clients authenticate.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The JetStream store directory (`-sd`), kept across restarts.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the server logged since its last start.
    pub fn logs(&self) -> String {
        self.output.as_ref().map(Output::text).unwrap_or_default()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again: on the same port with the same store, so
    /// JetStream streams, messages and consumers survive) and waits until it
    /// accepts connections. Panics if it is already running.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        // Right after a kill the port may briefly still be held; retry then.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.spawn_once() {
                Ok(()) => return,
                Err(log) if attempts < 20 && log.contains("address already in use") => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("nats-server did not start:\n{log}"),
            }
        }
    }

    fn spawn_once(&mut self) -> Result<(), String> {
        let port = self.port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut command = Command::new(nats_server_binary());
        command
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match &self.auth {
            Auth::None => {}
            Auth::UserPassword { user, password } => {
                command.args(["--user", user, "--pass", password]);
            }
            Auth::Token(token) => {
                command.args(["--auth", token]);
            }
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("{} not found: run ./dev setup (or set WEIR_NATS_SERVER)", nats_server_binary().display())
            }
            Err(e) => panic!("cannot start nats-server: {e}"),
        };
        let label = self.port.map_or_else(|| "new".to_string(), |p| p.to_string());
        let output = Output::capture(child.stderr.take().expect("piped stderr"), format!("[nats:{label}]"));
        let ready = output.wait_for(SERVER_READY_TIMEOUT, |text| text.contains("Server is ready"));
        match ready {
            Ok(()) => {}
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = output.text();
                if why == WaitError::Timeout {
                    panic!("nats-server did not become ready within {SERVER_READY_TIMEOUT:?}; it said:\n{log}");
                }
                return Err(log);
            }
        }
        if self.port.is_none() {
            let text = output.text();
            let port = text
                .lines()
                .find_map(|line| line.split("Listening for client connections on ").nth(1))
                .and_then(|addr| addr.trim().rsplit(':').next())
                .and_then(|port| port.parse().ok())
                .unwrap_or_else(|| panic!("cannot find the client port in nats-server's log:\n{text}"));
            self.port = Some(port);
        }
        self.child = Some(child);
        self.output = Some(output);
        Ok(())
    }

    /// A client connected with the server's authentication.
    pub async fn client(&self) -> async_nats::Client {
        super::connect(&self.url(), &self.auth).await
    }

    /// A client and its JetStream context.
    pub async fn jetstream(&self) -> (async_nats::Client, async_nats::jetstream::Context) {
        let client = self.client().await;
        let js = async_nats::jetstream::new(client.clone());
        (client, js)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The nats-server binary the tests run: `$WEIR_NATS_SERVER`, or
/// `nats-server` on the `PATH`.
pub fn nats_server_binary() -> std::path::PathBuf {
    std::env::var_os("WEIR_NATS_SERVER").map_or_else(|| "nats-server".into(), std::path::PathBuf::from)
}

/// A loopback port nothing listens on right now (for "unreachable server"
/// tests, and to start a [`NatsServer`] there later).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
