//! `weir run` with a JetStream source: at-least-once delivery with acks after
//! the outputs are stored, `retry` redeliveries, graceful shutdown and a NATS
//! server restart without losing or duplicating anything.

use std::time::{Duration, Instant};

use serde_json::json;
use weir_tests::harness::*;
use weir_tests::plugins;

/// A pipeline reading stream IN through `durable`, writing to stream OUT,
/// dead letters to stream DLQ.
fn js_pipeline(name: &str, durable: &str, source_extra: &str, stages: &str) -> String {
    format!(
        r#"
name = "{name}"
batch_size = 16

[source]
subject = "in.>"
stream = "IN"
durable = "{durable}"
deliver = "all"
{source_extra}

{stages}

[sink]
subject = "out.{{subject}}"
stream = "OUT"

[dead_letter]
subject = "dlq.{name}"
stream = "DLQ"
"#
    )
}

async fn create_streams(js: &async_nats::jetstream::Context) {
    create_stream(js, "IN", &["in.>"]).await;
    create_stream(js, "OUT", &["out.>"]).await;
    create_stream(js, "DLQ", &["dlq.>"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_inputs_are_acked_once_their_outputs_are_stored() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    let events = js_publish_orders(&js, "in.orders", 0..1000).await;

    let stages = stage("cheap-out", plugins::FILTER, r#"{ all = [ { field = "price", gt = 10 } ] }"#)
        + &stage("stamp", plugins::JSON_MAP, r#"{ set = { processed_by = "weir" } }"#);
    let pipeline = js_pipeline("orders", "weir-orders", "ack_wait = \"10s\"", &stages);
    let _weir = Weir::builder(&server).workers(2).pipeline("orders.toml", &pipeline).start();

    let kept = |range: std::ops::Range<u64>| range.filter(|id| id % 20 > 10);
    wait_stream_len(&js, "OUT", 450, Duration::from_secs(30)).await;
    let info = wait_consumer_done(&js, "IN", "weir-orders", Duration::from_secs(30)).await;
    assert_eq!(info.config.durable_name.as_deref(), Some("weir-orders"), "weir created the durable consumer");

    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("orders in OUT", out.iter().map(id_of), kept(0..1000));
    assert_unique_msg_ids("OUT", &out);
    for message in &out {
        let id = id_of(message);
        assert_eq!(message.subject.as_str(), "out.in.orders", "{}", describe(message));
        assert_eq!(header(message, "weir-pipeline").as_deref(), Some("orders"), "{}", describe(message));
        assert_eq!(header(message, TEST_ID_HEADER), Some(id.to_string()), "input headers are kept: {}", describe(message));
        let mut expected = events[id as usize].clone();
        expected["processed_by"] = json!("weir");
        assert_eq!(json(message), expected);
    }

    // Events published while weir runs flow the same way.
    js_publish_orders(&js, "in.orders", 1000..1200).await;
    wait_stream_len(&js, "OUT", 540, Duration::from_secs(30)).await;
    wait_consumer_done(&js, "IN", "weir-orders", Duration::from_secs(30)).await;
    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("orders in OUT", out.iter().map(id_of), kept(0..1200));
    assert_eq!(stream_len(&js, "DLQ").await.unwrap(), 0, "no dead letters: {:?}", read_stream(&js, "DLQ").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_is_redelivered_up_to_max_deliver_then_dead_lettered() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    js_publish_orders(&js, "in.orders", 0..10).await;
    let retry = serde_json::to_vec(&json!({ "id": 100, "chaos": "retry" })).unwrap();
    let mut headers = test_headers(100);
    headers.insert("Nats-Msg-Id", "in-100");
    js_publish(&js, "in.orders", headers, retry.clone()).await;

    let pipeline = js_pipeline("retry", "weir-retry", "max_deliver = 3\nack_wait = \"2s\"", &stage("chaos", plugins::CHAOS, "{}"));
    let _weir = Weir::builder(&server).pipeline("retry.toml", &pipeline).start();

    wait_stream_len(&js, "DLQ", 1, Duration::from_secs(40)).await;
    wait_stream_len(&js, "OUT", 10, Duration::from_secs(10)).await;
    let info = wait_consumer_done(&js, "IN", "weir-retry", Duration::from_secs(20)).await;

    let letters = read_stream(&js, "DLQ").await;
    assert_eq!(letters.len(), 1, "one dead letter: {:?}", letters.iter().map(describe).collect::<Vec<_>>());
    let letter = &letters[0];
    assert_eq!(letter.subject.as_str(), "dlq.retry");
    assert_eq!(header(letter, "weir-error-kind").as_deref(), Some("retry"), "{}", describe(letter));
    assert_eq!(header(letter, "weir-error-stage").as_deref(), Some("chaos"), "{}", describe(letter));
    assert_eq!(header(letter, "weir-pipeline").as_deref(), Some("retry"), "{}", describe(letter));
    assert_eq!(header(letter, "weir-subject").as_deref(), Some("in.orders"), "{}", describe(letter));
    assert_eq!(header(letter, TEST_ID_HEADER).as_deref(), Some("100"), "{}", describe(letter));
    assert!(header(letter, "weir-error").is_some_and(|e| !e.is_empty()), "{}", describe(letter));
    assert_eq!(letter.payload.as_ref(), retry.as_slice(), "the dead letter carries the original payload");

    // 10 events delivered once, the failing one max_deliver = 3 times.
    assert_eq!(
        info.delivered.consumer_sequence, 13,
        "deliveries: 10 good events once and the `retry` event 3 times (max_deliver), then no more"
    );
    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("good events in OUT", out.iter().map(id_of), 0..10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_stream_is_an_error_naming_it_and_is_not_created() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_stream(&js, "OUT", &["out.>"]).await;
    let pipeline = format!(
        r#"
name = "lost"

[source]
subject = "in.>"
stream = "NOSUCHSTREAM"
durable = "weir-lost"

{stages}

[sink]
subject = "out.{{subject}}"
"#,
        stages = stage("noop", plugins::NOOP, "{}")
    );
    let mut weir = Weir::builder(&server).pipeline("lost.toml", &pipeline).spawn();
    assert!(
        weir.wait_for_stderr(Duration::from_secs(20), |text| text.contains("NOSUCHSTREAM")) || weir.stderr().contains("NOSUCHSTREAM"),
        "weir should name the missing stream NOSUCHSTREAM; it said:\n{}",
        weir.stderr()
    );
    if let Some(status) = weir.try_wait_exit(Duration::from_millis(500)) {
        assert!(!status.success(), "weir exited 0 although its stream is missing");
    }
    assert!(js.get_stream("NOSUCHSTREAM").await.is_err(), "weir must never create a stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_nothing() {
    const N: u64 = 5000;
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    js_publish_orders(&js, "in.orders", 0..N).await;

    let pipeline = js_pipeline("drain", "weir-drain", "ack_wait = \"2s\"", &stage("noop", plugins::NOOP, "{}"));
    let mut weir = Weir::builder(&server).workers(2).shutdown_timeout("10s").pipeline("drain.toml", &pipeline).start();

    let at_signal = wait_stream_len(&js, "OUT", 500, Duration::from_secs(30)).await;
    let signalled = Instant::now();
    weir.terminate();
    let status = weir.wait_exit(Duration::from_secs(15));
    eprintln!("SIGTERM with {at_signal} of {N} in OUT; exit after {:.1?}", signalled.elapsed());
    assert!(status.success(), "weir exits 0 after SIGTERM, got {status}");
    assert!(signalled.elapsed() < Duration::from_secs(11), "weir exits within shutdown_timeout");

    // Acked inputs (stream sequence s holds id s - 1) have their output stored.
    let info = consumer_info(&js, "IN", "weir-drain").await.unwrap();
    let acked = info.ack_floor.stream_sequence;
    let out = read_stream(&js, "OUT").await;
    let stored: std::collections::BTreeSet<u64> = out.iter().map(id_of).collect();
    let lost: Vec<u64> = (0..acked).filter(|id| !stored.contains(id)).take(10).collect();
    assert!(lost.is_empty(), "inputs acked without their output in OUT (first: {lost:?})");

    // A new weir finishes the rest; nothing is lost or doubled.
    weir.restart();
    wait_stream_len(&js, "OUT", N, Duration::from_secs(30)).await;
    wait_consumer_done(&js, "IN", "weir-drain", Duration::from_secs(30)).await;
    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("orders in OUT after a shutdown and a restart", out.iter().map(id_of), 0..N);
    assert_unique_msg_ids("OUT", &out);
    assert_eq!(stream_len(&js, "DLQ").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_hands_back_what_it_did_not_finish() {
    const N: u64 = 5000;
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    js_publish_orders(&js, "in.orders", 0..N).await;

    // With a long ack_wait, events weir fetched but neither acked nor handed
    // back (nak) would sit pending: another weir gets them only a minute later.
    let pipeline = js_pipeline("drain", "weir-drain", "ack_wait = \"60s\"", &stage("noop", plugins::NOOP, "{}"));
    let mut weir = Weir::builder(&server).workers(2).shutdown_timeout("10s").pipeline("drain.toml", &pipeline).start();
    wait_stream_len(&js, "OUT", 500, Duration::from_secs(30)).await;
    weir.terminate();
    assert!(weir.wait_exit(Duration::from_secs(15)).success(), "weir exits 0 after SIGTERM");

    // The server keeps nak'ed messages in the consumer's ack-pending set
    // until someone pulls again (nats-server 2.9), so the proof is that a new
    // weir gets them at once: well within the 60 s ack_wait.
    let restarted = Instant::now();
    weir.restart();
    wait_stream_len(&js, "OUT", N, Duration::from_secs(20)).await;
    wait_consumer_done(&js, "IN", "weir-drain", Duration::from_secs(20)).await;
    assert!(restarted.elapsed() < Duration::from_secs(30), "handed-back events came at once, not after ack_wait");
    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("orders in OUT", out.iter().map(id_of), 0..N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    const N: u64 = 5000;
    let mut server = NatsServer::new();
    {
        let (_client, js) = server.jetstream().await;
        create_streams(&js).await;
        js_publish_orders(&js, "in.orders", 0..N).await;
    }
    let pipeline = js_pipeline("crash", "weir-crash", "ack_wait = \"2s\"", &stage("noop", plugins::NOOP, "{}"));
    let mut weir = Weir::builder(&server).workers(1).pipeline("crash.toml", &pipeline).start();

    // Kill the server about half way through.
    let at_kill = {
        let (_client, js) = server.jetstream().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let len = stream_len(&js, "OUT").await.unwrap_or(0);
            if len >= N / 2 {
                break len;
            }
            assert!(Instant::now() < deadline, "weir stored only {len} of {N} outputs in 30s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    server.stop();
    eprintln!("killed nats-server with {at_kill} of {N} outputs stored");
    // An outage weir has to live through, not a synchronisation.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(weir.is_running(), "weir exited when the server went away:\n{}", weir.stderr());
    server.start();

    let (_client, js) = server.jetstream().await;
    let total = eventually("every input to be in OUT or DLQ", Duration::from_secs(60), || async {
        let out = stream_len(&js, "OUT").await?;
        let dlq = stream_len(&js, "DLQ").await?;
        if out + dlq >= N { Ok(out + dlq) } else { Err(format!("OUT={out} DLQ={dlq}")) }
    })
    .await;
    wait_consumer_done(&js, "IN", "weir-crash", Duration::from_secs(30)).await;

    let out = read_stream(&js, "OUT").await;
    let dlq = read_stream(&js, "DLQ").await;
    assert_exactly_once("inputs accounted for in OUT + DLQ across a server restart", out.iter().chain(&dlq).map(id_of), 0..N);
    assert_eq!(total, N);
    assert_unique_msg_ids("OUT", &out);
    assert!(weir.is_running(), "weir keeps running after the server came back");
}
