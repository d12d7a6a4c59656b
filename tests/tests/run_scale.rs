//! Scale-out: two `weir run` processes with the same pipeline share the work
//! through a core queue group or a shared durable consumer. Each process's
//! copy of the pipeline stamps its outputs (`by = "A"` or `"B"`), so the test
//! can tell who processed what.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_tests::harness::*;
use weir_tests::plugins;

/// The same pipeline ("orders", same source) as process `by` runs it.
fn pipeline(by: &str, source: &str, sink: &str) -> String {
    format!(
        r#"
name = "orders"

[source]
{source}

[[stages]]
name = "stamp"
plugin = {json_map}
config = {{ set = {{ by = "{by}" }} }}

[sink]
{sink}
"#,
        json_map = toml_str(plugins::JSON_MAP),
    )
}

/// Outputs per process, and panics unless both did a fair part of `n`.
fn assert_both_busy(outputs: &[async_nats::Message], n: usize) {
    let mut by = BTreeMap::<String, usize>::new();
    for message in outputs {
        let who = json(message)["by"]
            .as_str()
            .unwrap_or_else(|| panic!("no `by` in {}", describe(message)))
            .to_string();
        *by.entry(who).or_default() += 1;
    }
    eprintln!("events per process: {by:?}");
    let a = by.get("A").copied().unwrap_or(0);
    let b = by.get("B").copied().unwrap_or(0);
    assert_eq!(a + b, n, "outputs by process: {by:?}");
    assert!(a >= n / 100 && b >= n / 100, "both processes take a share of the events: {by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_core_queue_group() {
    const N: u64 = 5000;
    let server = NatsServer::new();
    let source = "subject = \"in.>\"\nqueue = \"weir\"";
    let sink = "subject = \"out.{subject}\"";
    let _a = Weir::builder(&server)
        .label("A")
        .instance("weir-a")
        .workers(1)
        .pipeline("orders.toml", &pipeline("A", source, sink))
        .start();
    let _b = Weir::builder(&server)
        .label("B")
        .instance("weir-b")
        .workers(1)
        .pipeline("orders.toml", &pipeline("B", source, sink))
        .start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;

    publish_orders(&client, "in.orders", 0..N).await;
    let outputs = collect_exactly(&mut out, "outputs of both processes", N as usize, Duration::from_secs(30), Duration::from_millis(500)).await;
    assert_exactly_once("orders processed by the queue group", outputs.iter().map(id_of), 0..N);
    assert_both_busy(&outputs, N as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_durable_consumer() {
    const N: u64 = 5000;
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_stream(&js, "IN", &["in.>"]).await;
    create_stream(&js, "OUT", &["out.>"]).await;
    let source = "subject = \"in.>\"\nstream = \"IN\"\ndurable = \"weir-orders\"\ndeliver = \"all\"\nack_wait = \"10s\"";
    let sink = "subject = \"out.{subject}\"\nstream = \"OUT\"";
    // Both start before any event exists, so both are waiting for work.
    let _a = Weir::builder(&server)
        .label("A")
        .instance("weir-a")
        .workers(1)
        .pipeline("orders.toml", &pipeline("A", source, sink))
        .start();
    let _b = Weir::builder(&server)
        .label("B")
        .instance("weir-b")
        .workers(1)
        .pipeline("orders.toml", &pipeline("B", source, sink))
        .start();

    // In waves, each once both processes are idle again: then each has a
    // pull request waiting when the wave arrives. (One burst can go almost
    // whole to whichever process pulls again first: JetStream hands work to
    // the requests that are waiting, not in turns.)
    const WAVE: u64 = 500;
    for start in (0..N).step_by(WAVE as usize) {
        js_publish_orders(&js, "in.orders", start..start + WAVE).await;
        wait_stream_len(&js, "OUT", start + WAVE, Duration::from_secs(20)).await;
    }
    wait_consumer_done(&js, "IN", "weir-orders", Duration::from_secs(20)).await;
    let outputs = read_stream(&js, "OUT").await;
    assert_exactly_once("orders processed through the shared durable", outputs.iter().map(id_of), 0..N);
    assert_unique_msg_ids("OUT", &outputs);
    assert_both_busy(&outputs, N as usize);
}
