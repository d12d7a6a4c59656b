//! Stateful stages under `weir run`: `window-count` over a JetStream source,
//! its counts in NATS KV, checked against the inputs: every input counted
//! exactly once and every (window, key) published exactly once, across a
//! SIGKILL of weir, a nats-server restart, a hot reload of the stage and two
//! weir processes sharing the durable consumer; and a stateful stage that
//! traps (the `tally` fixture), counting each input once. And what a user sees when
//! state goes wrong: a missing key field, a state over its limit, the state
//! bucket deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::json;
use weir_tests::harness::*;
use weir_tests::plugins;

/// Products the events spread over.
const PRODUCTS: u64 = 7;
/// Events expected per (window start, product).
type Expected = BTreeMap<(u64, String), u64>;

/// Window length and allowed lateness (ms): a redelivery after a kill or an
/// outage (ack_wait 2 s plus the restart) must land within the lateness.
const WINDOW_MS: u64 = 1000;
const LATENESS: &str = "8s";

fn pipeline(timer: &str, extra_limits: &str) -> String {
    format!(
        r#"
name = "counts"
batch_size = 32

[source]
subject = "in.>"
stream = "IN"
durable = "counts"
ack_wait = "2s"
max_deliver = 1000

[[stages]]
name = "count"
plugin = {plugin}
timer = "{timer}"
limits = {{ timeout = "1s" {extra_limits} }}
config = {{ key = ["product"], time = "ts", window = "1s", lateness = "{LATENESS}", subject = "counts.{{product}}" }}

[sink]
subject = "out.{{subject}}"
stream = "OUT"

[dead_letter]
subject = "dlq.counts"
stream = "DLQ"
"#,
        plugin = toml_str(plugins::WINDOW_COUNT),
    )
}

async fn create_streams(js: &jetstream::Context) {
    create_stream(js, "IN", &["in.>"]).await;
    create_stream(js, "OUT", &["out.>"]).await;
    create_stream(js, "DLQ", &["dlq.>"]).await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Publishes `n` events to IN at about `rate` per second, each with the
/// publish time as `ts`; returns the expected count per (window start,
/// product). `published` counts them as they go.
async fn publish_events(js: jetstream::Context, n: u64, rate: u64, published: Arc<AtomicU64>) -> Expected {
    let mut expected = BTreeMap::new();
    let started = Instant::now();
    for i in 0..n {
        let ts = now_ms();
        let product = format!("p{}", i % PRODUCTS);
        let payload = serde_json::to_vec(&json!({ "id": i, "product": product, "ts": ts })).unwrap();
        js_publish(&js, &format!("in.{product}"), test_headers(i), payload).await;
        *expected.entry((ts - ts % WINDOW_MS, product)).or_insert(0) += 1;
        published.fetch_add(1, Ordering::Relaxed);
        let due = started + Duration::from_micros(i * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    expected
}

/// Waits until every input is acknowledged and every window that had
/// events is published, then checks OUT against `expected`: one event per
/// (window, product), with the exact count; no dead letters.
async fn check_counts(js: &jetstream::Context, expected: &Expected, what: &str) {
    wait_consumer_done(js, "IN", "counts", Duration::from_secs(60)).await;
    let windows = expected.len() as u64;
    eventually(&format!("{what}: all {windows} windows published"), Duration::from_secs(60), || async {
        let out = stream_len(js, "OUT").await?;
        if out >= windows { Ok(()) } else { Err(format!("{out} of {windows} windows in OUT")) }
    })
    .await;
    // Anything published twice would come now: a tick after the last close.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = read_stream(js, "OUT").await;
    let dlq = read_stream(js, "DLQ").await;
    assert!(dlq.is_empty(), "{what}: dead letters: {:?}", dlq.iter().map(describe).collect::<Vec<_>>());
    let mut seen: Expected = BTreeMap::new();
    for message in &out {
        let body = json(message);
        let start = body["window_start"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: no window_start: {}", describe(message)));
        let product = body["key"]["product"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no key.product: {}", describe(message)))
            .to_owned();
        assert_eq!(message.subject.as_str(), format!("out.counts.{product}"), "{}", describe(message));
        let count = body["count"].as_u64().unwrap();
        if let Some(before) = seen.insert((start, product.clone()), count) {
            panic!("{what}: window {start} of {product} was published twice (counts {before} and {count})");
        }
    }
    let mut wrong = Vec::new();
    for (key, count) in expected {
        match seen.get(key) {
            Some(got) if got == count => {}
            got => wrong.push(format!("window {} of {}: expected {count}, got {got:?}", key.0, key.1)),
        }
    }
    for key in seen.keys().filter(|k| !expected.contains_key(k)) {
        wrong.push(format!("window {} of {} was published but had no events", key.0, key.1));
    }
    assert!(wrong.is_empty(), "{what}: {} of {windows} windows wrong:\n{}", wrong.len(), wrong.join("\n"));
    let total: u64 = seen.values().sum();
    eprintln!("{what}: {total} inputs counted exactly once in {windows} windows");
}

/// Starts publishing `n` events at `rate`/s in the background.
fn start_publishing(js: &jetstream::Context, n: u64, rate: u64) -> (tokio::task::JoinHandle<Expected>, Arc<AtomicU64>) {
    let published = Arc::new(AtomicU64::new(0));
    (tokio::spawn(publish_events(js.clone(), n, rate, published.clone())), published)
}

async fn wait_published(published: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while published.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "the publisher stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_across_a_sigkill_of_weir() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    let mut weir = Weir::builder(&server).workers(2).pipeline("counts.toml", &pipeline("200ms", "")).start();

    let (publisher, published) = start_publishing(&js, 4000, 1000);
    wait_published(&published, 2000).await;
    weir.kill();
    eprintln!("killed weir with {} events published", published.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_millis(500)).await;
    weir.restart();
    let expected = publisher.await.unwrap();
    check_counts(&js, &expected, "SIGKILL").await;

    // The state lives in a bucket an operator can see.
    let status = js
        .get_key_value("weir-state-counts")
        .await
        .expect("the state bucket weir-state-counts")
        .status()
        .await
        .unwrap();
    assert!(status.values() > 0, "the bucket holds state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_across_a_nats_server_restart() {
    let mut server = NatsServer::new();
    {
        let (_client, js) = server.jetstream().await;
        create_streams(&js).await;
    }
    let mut weir = Weir::builder(&server).workers(2).pipeline("counts.toml", &pipeline("200ms", "")).start();
    // Publish a first half, restart the server under weir, publish the rest.
    let first = {
        let (_client, js) = server.jetstream().await;
        let (publisher, _) = start_publishing(&js, 2000, 1000);
        publisher.await.unwrap()
    };
    server.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(weir.is_running(), "weir exited when the server went away:\n{}", weir.stderr());
    server.start();
    let (_client, js) = server.jetstream().await;
    let (publisher, _) = start_publishing(&js, 2000, 1000);
    let mut expected = publisher.await.unwrap();
    for (key, count) in first {
        *expected.entry(key).or_insert(0) += count;
    }
    check_counts(&js, &expected, "nats-server restart").await;
    assert!(weir.is_running(), "weir keeps running after the server came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_across_a_hot_reload_of_the_stage() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    let weir = Weir::builder(&server).workers(2).pipeline("counts.toml", &pipeline("200ms", "")).start();

    let (publisher, published) = start_publishing(&js, 4000, 1000);
    wait_published(&published, 1500).await;
    // A new version of the stage (another timer) while events flow.
    std::fs::write(weir.pipelines_dir().join("counts.toml"), pipeline("300ms", "")).unwrap();
    assert!(
        weir.wait_for_stderr(Duration::from_secs(30), |log| log.contains("swapped to the new version")),
        "no reload:\n{}",
        weir.stderr()
    );
    let expected = publisher.await.unwrap();
    check_counts(&js, &expected, "hot reload").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_weir_processes_share_the_work_and_the_counts() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    let one = Weir::builder(&server)
        .instance("one")
        .workers(1)
        .pipeline("counts.toml", &pipeline("200ms", ""))
        .start();
    let two = Weir::builder(&server)
        .instance("two")
        .workers(1)
        .pipeline("counts.toml", &pipeline("200ms", ""))
        .start();

    let (publisher, _) = start_publishing(&js, 4000, 1000);
    let expected = publisher.await.unwrap();
    check_counts(&js, &expected, "two processes").await;
    let logs = one.stderr() + &two.stderr();
    let refused = logs.matches("state commit refused").count();
    let overtaken = logs.matches("was applied by another commit meanwhile").count();
    let late = logs.matches("past the source's ack_wait").count();
    eprintln!("two processes: {refused} commits refused and processed again ({overtaken} had an input another commit applied meanwhile, {late} past ack_wait)");
}

/// A stateful stage that traps mid-batch, after the batch's earlier events
/// wrote their counts: those writes are undone and the events processed
/// again, the culprit's own write is dropped with it, so each key's outputs
/// carry the counts 1, 2, 3 ... exactly once and the state holds the count
/// of the events that got through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_stage_that_traps_counts_each_input_once() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    const KEYS: u64 = 5;
    let is_trap = |i: u64| i % 37 == 20;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..1200u64 {
        let key = format!("k{}", i % KEYS);
        let payload = json!({ "id": i, "key": key, "trap": is_trap(i) });
        js_publish(&js, &format!("in.{key}"), test_headers(i), serde_json::to_vec(&payload).unwrap()).await;
        if !is_trap(i) {
            *expected.entry(key).or_default() += 1;
        }
    }
    let _weir = Weir::builder(&server)
        .pipeline(
            "tally.toml",
            &format!(
                r#"
name = "tally"
batch_size = 32

[source]
subject = "in.>"
stream = "IN"
durable = "tally"

[[stages]]
name = "tally"
plugin = {plugin}

[sink]
subject = "out.{{subject}}"
stream = "OUT"

[dead_letter]
subject = "dlq.tally"
stream = "DLQ"
"#,
                plugin = toml_str(plugins::TALLY)
            ),
        )
        .start();
    wait_consumer_done(&js, "IN", "tally", Duration::from_secs(60)).await;

    let traps = (0..1200).filter(|i| is_trap(*i)).count();
    let dlq = read_stream(&js, "DLQ").await;
    let mut dead: Vec<u64> = dlq.iter().map(id_of).collect();
    dead.sort_unstable();
    assert_eq!(dead, (0..1200).filter(|i| is_trap(*i)).collect::<Vec<_>>(), "exactly the trapping events are dead-lettered");
    for letter in &dlq {
        assert_eq!(header(letter, "weir-error-kind").as_deref(), Some("trap"), "{}", describe(letter));
    }
    let mut tallies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for message in read_stream(&js, "OUT").await {
        let key = json(&message)["key"].as_str().unwrap().to_owned();
        let tally = header(&message, "tally").unwrap_or_else(|| panic!("no tally header: {}", describe(&message)));
        tallies.entry(key).or_default().push(tally.parse().unwrap());
    }
    let kv = js.get_key_value("weir-state-tally").await.unwrap();
    for (key, count) in &expected {
        let mut got = tallies.remove(key).unwrap_or_default();
        got.sort_unstable();
        assert_eq!(got, (1..=*count).collect::<Vec<_>>(), "key {key}: each count published exactly once");
        let stored = kv.get(format!("tally.n/{key}")).await.unwrap().map(|v| String::from_utf8(v.to_vec()).unwrap());
        assert_eq!(stored, Some(count.to_string()), "key {key}: the committed count");
    }
    eprintln!("trapping stage: {traps} traps dead-lettered, {} outputs counted exactly once", expected.values().sum::<u64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_a_full_state_are_dead_lettered_with_the_reason() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    // Room for a few keys only.
    let _weir = Weir::builder(&server).pipeline("counts.toml", &pipeline("200ms", r#", state = "1KiB""#)).start();

    let ts = now_ms();
    js_publish(&js, "in.x", test_headers(0), serde_json::to_vec(&json!({ "id": 0, "ts": ts })).unwrap()).await;
    // Distinct products (keys) with long names, until the state is full.
    for i in 1..=40u64 {
        let product = format!("product-with-a-long-name-{i:04}");
        js_publish(&js, "in.x", test_headers(i), serde_json::to_vec(&json!({ "id": i, "product": product, "ts": ts })).unwrap()).await;
    }
    wait_consumer_done(&js, "IN", "counts", Duration::from_secs(30)).await;
    let dlq = read_stream(&js, "DLQ").await;
    let reasons: BTreeMap<u64, String> = dlq.iter().map(|m| (id_of(m), header(m, "weir-error").unwrap_or_default())).collect();
    let missing = reasons
        .get(&0)
        .unwrap_or_else(|| panic!("the event without a product is dead-lettered: {reasons:?}"));
    assert!(missing.contains("product"), "the reason names the missing field: {missing}");
    let full: Vec<&String> = reasons.iter().filter(|(id, _)| **id > 0).map(|(_, r)| r).collect();
    assert!(!full.is_empty(), "some events are refused once the state is full: {reasons:?}");
    for reason in &full {
        assert!(reason.contains("limits.state of 1024 bytes"), "the reason names the limit: {reason}");
    }
    // What fitted is counted; what did not is in the dead letters: nothing lost.
    let expected_windows = 40 - full.len() as u64;
    eventually("the windows that fitted", Duration::from_secs(30), || async {
        let out = stream_len(&js, "OUT").await?;
        if out >= expected_windows { Ok(()) } else { Err(format!("{out} of {expected_windows}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_state_bucket_stops_the_pipeline_and_says_why() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_streams(&js).await;
    let weir = Weir::builder(&server).pipeline("counts.toml", &pipeline("200ms", "")).start();
    let ts = now_ms();
    for i in 0..10u64 {
        js_publish(&js, "in.x", test_headers(i), serde_json::to_vec(&json!({ "id": i, "product": "p", "ts": ts })).unwrap()).await;
    }
    wait_consumer_done(&js, "IN", "counts", Duration::from_secs(30)).await;
    js.delete_stream("KV_weir-state-counts").await.unwrap();
    for i in 10..20u64 {
        js_publish(&js, "in.x", test_headers(i), serde_json::to_vec(&json!({ "id": i, "product": "p", "ts": ts })).unwrap()).await;
    }
    assert!(
        weir.wait_for_stderr(Duration::from_secs(20), |log| log.contains("state commit refused") && log.contains("weir-state-counts")),
        "weir says why the state cannot be committed:\n{}",
        weir.stderr()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let info = consumer_info(&js, "IN", "counts").await.unwrap();
    assert!(info.num_ack_pending + info.num_pending as usize >= 1, "nothing is acknowledged without its state committed: {info:?}");
}
