//! weir on a three-node NATS cluster that loses nodes: streams with three
//! replicas, weir connected to all three servers. In every test each input
//! comes out exactly once across the outputs (a JetStream sink) and the dead
//! letters, whatever was killed mid-run.

use std::time::Duration;

use async_nats::jetstream;
use weir_tests::harness::*;
use weir_tests::plugins;

/// Inputs whose id ends in 7 are not JSON: the filter stage dead-letters them.
fn malformed(id: u64) -> bool {
    id % 10 == 7
}

/// Publishes `ids` to `in.orders` with acks and `Nats-Msg-Id` = `in-<id>`;
/// the malformed ones carry a text payload. A publish that the cluster does
/// not acknowledge (a node lost mid-run) is sent again: the message id keeps
/// it from being stored twice.
async fn publish_inputs(js: &jetstream::Context, ids: std::ops::Range<u64>) {
    let message = |id: u64| {
        let payload = if malformed(id) { format!("not json {id}").into_bytes() } else { serde_json::to_vec(&order(id)).unwrap() };
        jetstream::message::PublishMessage::build()
            .headers(test_headers(id))
            .message_id(format!("in-{id}"))
            .payload(payload.into())
    };
    let mut acks = std::collections::VecDeque::new();
    let confirm = |id: u64, ack: Result<jetstream::context::PublishAckFuture, String>| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let mut ack = ack;
        loop {
            let stored = match ack {
                Ok(future) => future.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => return,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("[test] input {id} not acknowledged ({e}); sending it again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    ack = js.send_publish("in.orders".to_string(), message(id)).await.map_err(|e| e.to_string());
                }
                Err(e) => panic!("input {id} not acknowledged within 90s: {e}"),
            }
        }
    };
    for id in ids {
        let ack = js.send_publish("in.orders".to_string(), message(id)).await.map_err(|e| e.to_string());
        acks.push_back((id, ack));
        if acks.len() >= 256 {
            let (id, ack) = acks.pop_front().unwrap();
            confirm(id, ack).await;
        }
    }
    for (id, ack) in acks {
        confirm(id, ack).await;
    }
}

/// A pipeline reading stream IN through durable `weir`, writing to stream
/// OUT, and dead-lettering to the core subject `dlq.orders`, which stream
/// DLQ captures (no `stream` key: weir must find the stream itself).
fn pipeline() -> String {
    format!(
        r#"
name = "orders"
batch_size = 32

[source]
subject = "in.>"
stream = "IN"
durable = "weir"
deliver = "all"
ack_wait = "4s"

{}
[sink]
subject = "out.{{subject}}"
stream = "OUT"

[dead_letter]
subject = "dlq.orders"
"#,
        stage("valid", plugins::FILTER, r#"{ all = [ { field = "price", gte = 0 } ] }"#)
    )
}

async fn create_streams(cluster: &NatsCluster, js: &jetstream::Context) {
    cluster.create_stream(js, "IN", &["in.>"]).await;
    cluster.create_stream(js, "OUT", &["out.>"]).await;
    cluster.create_stream(js, "DLQ", &["dlq.>"]).await;
}

fn weir(cluster: &NatsCluster, label: &str) -> WeirBuilder {
    WeirBuilder::new()
        .label(label)
        .url(&cluster.urls())
        .workers(2)
        .shutdown_timeout("10s")
        .pipeline("orders.toml", &pipeline())
}

/// The test id of a message: its `test-id` header (dead letters are not JSON).
fn test_id(message: &async_nats::Message) -> u64 {
    header(message, TEST_ID_HEADER)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no test-id on {}", describe(message)))
}

/// Waits until OUT and DLQ together hold `n` messages and the consumer has
/// nothing pending, then checks that every input is there exactly once, in
/// the right place.
async fn assert_every_input_once(js: &jetstream::Context, n: u64) {
    eventually("every input to come out", Duration::from_secs(120), || async {
        let out = stream_len(js, "OUT").await?;
        let dlq = stream_len(js, "DLQ").await?;
        if out + dlq >= n { Ok(()) } else { Err(format!("OUT {out} + DLQ {dlq} of {n}")) }
    })
    .await;
    wait_consumer_done(js, "IN", "weir", Duration::from_secs(60)).await;
    let out = read_stream(js, "OUT").await;
    let dlq = read_stream(js, "DLQ").await;
    assert_exactly_once("inputs across OUT and DLQ", out.iter().chain(&dlq).map(test_id), 0..n);
    assert_exactly_once("outputs in OUT", out.iter().map(test_id), (0..n).filter(|id| !malformed(*id)));
    for letter in &dlq {
        assert_eq!(header(letter, "weir-error-kind").as_deref(), Some("invalid"), "{}", describe(letter));
    }
}

/// Waits until at least `n` messages reached OUT: the run is under way.
async fn wait_under_way(js: &jetstream::Context, n: u64) {
    eventually("the run to be under way", Duration::from_secs(60), || async {
        let out = stream_len(js, "OUT").await?;
        if out >= n { Ok(()) } else { Err(format!("OUT has {out}")) }
    })
    .await;
}

/// How many inputs each test sends.
const N: u64 = 8000;

/// A cluster with streams IN, OUT and DLQ, every input in IN, and a weir for
/// each of `labels` running on it, once OUT holds 1000 outputs.
async fn under_way(labels: &[&str]) -> (NatsCluster, jetstream::Context, Vec<Weir>) {
    let cluster = NatsCluster::start().await;
    let (_client, js) = cluster.jetstream().await;
    create_streams(&cluster, &js).await;
    publish_inputs(&js, 0..N).await;
    let weirs = labels.iter().map(|label| weir(&cluster, label).start()).collect();
    wait_under_way(&js, 1000).await;
    (cluster, js, weirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_to_a_captured_core_subject_survive_the_loss_of_their_streams_leader() {
    let (mut cluster, js, _weirs) = under_way(&["a"]).await;
    let leader = cluster.stream_leader(&js, "DLQ").await;
    cluster.kill(&leader);
    assert_every_input_once(&js, N).await;
    cluster.restart(&leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_streams_leader_killed_mid_run_loses_and_duplicates_nothing() {
    let (mut cluster, js, _weirs) = under_way(&["a"]).await;
    let leader = cluster.stream_leader(&js, "IN").await;
    cluster.kill(&leader);
    assert_every_input_once(&js, N).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_weirs_killed_mid_run_loses_and_duplicates_nothing() {
    let (_cluster, js, mut weirs) = under_way(&["a", "b"]).await;
    weirs[0].kill();
    assert_every_input_once(&js, N).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_restarted_mid_run_loses_and_duplicates_nothing() {
    let (mut cluster, _js, _weirs) = under_way(&["a"]).await;
    cluster.restart_all().await;
    let (_client, js) = cluster.jetstream().await;
    assert_every_input_once(&js, N).await;
}
