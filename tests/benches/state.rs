//! A stateful stage through NATS (issue 20): `window-count` in `weir run`
//! against a native Rust consumer doing the same counting with the same
//! guarantee, in the same run. A private `nats-server -js` on 127.0.0.1 per
//! case, file storage.
//!
//! The events: JSON `{"product": "p<k>", "ts": <ms>}` over [`PRODUCTS`]
//! products, published into stream `IN`. Both consumers count per product
//! and one-minute window (`window-count` with `key = ["product"]`,
//! `time = "ts"`, `window = "1m"`; no window closes during a run), read `IN`
//! through a durable pull consumer in batches of up to 256, and for every
//! batch commit the changed counts to a KV bucket in one atomic batch with
//! a revision check per key and a record of the batch's input sequences,
//! then acknowledge the inputs one by one: what makes each input count
//! exactly once. The native consumer does it with async-nats directly,
//! keeping its counts in a map.
//!
//! Throughput: [`N`] events are in `IN` before the consumer starts; events/s
//! = N / (first acknowledgement → the consumer has nothing pending or
//! unacknowledged). Latency: then a steady [`RATE`] events/s for
//! [`LATENCY_FOR`]; an input's state is committed before it is acknowledged,
//! so its latency is (the consumer's ack floor passes its sequence) − (its
//! publish was acknowledged), with the ack floor read every 2 ms.
//! Afterwards the counts in the bucket must add up to every event published.
//!
//! Run with `cargo bench -p weir-tests --bench state`; `WEIR_STATE_ROUNDS=N`
//! (default 2) runs both cases N times, interleaved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt as _;
use weir_tests::bench::start_watchdog_after;
use weir_tests::harness::{NatsServer, Weir, create_stream, toml_str, weir_binary};
use weir_tests::plugins;

const N: usize = 100_000;
const PRODUCTS: u64 = 100;
const RATE: u64 = 10_000;
const LATENCY_FOR: Duration = Duration::from_secs(3);
const BATCH: usize = 256;
const WATCHDOG: Duration = Duration::from_secs(900);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Consumer {
    Weir,
    Native,
}

#[derive(Debug, Default)]
struct Measured {
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    counted: u64,
    published: u64,
    /// Messages written to the bucket in all (commits' keys and markers).
    kv_messages: u64,
}

fn main() {
    let bin = weir_binary();
    eprintln!("[state] weir binary {}", bin.display());
    start_watchdog_after(WATCHDOG);
    let rounds: usize = std::env::var("WEIR_STATE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut results: Vec<(Consumer, Measured)> = Vec::new();
    for round in 0..rounds {
        for which in [Consumer::Native, Consumer::Weir] {
            let measured = runtime.block_on(case(which));
            eprintln!("[state] round {round} {which:?}: {measured:?}");
            assert_eq!(measured.counted, measured.published, "{which:?}: the counts in the bucket add up to every event published");
            results.push((which, measured));
        }
    }
    println!("\n| round | consumer | events/s | p50 ms | p99 ms | KV messages per 100 events | weir / native events/s |");
    println!("|---|---|---|---|---|---|---|");
    for (round, pair) in results.chunks(2).enumerate() {
        let ratio = pair[1].1.events_per_s / pair[0].1.events_per_s;
        for (which, m) in pair {
            let r = if *which == Consumer::Weir { format!("{ratio:.2}") } else { String::new() };
            let per_100 = m.kv_messages as f64 * 100.0 / m.published as f64;
            println!("| {round} | {which:?} | {:.0} | {:.1} | {:.1} | {per_100:.0} | {r} |", m.events_per_s, m.p50_ms, m.p99_ms);
        }
    }
}

fn event(i: u64, ts: u64) -> Bytes {
    Bytes::from(format!(r#"{{"product":"p{}","ts":{ts}}}"#, i % PRODUCTS))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn case(which: Consumer) -> Measured {
    let server = NatsServer::new();
    let (client, js) = server.jetstream().await;
    create_stream(&js, "IN", &["in.>"]).await;
    // The events, published with acknowledgements in waves.
    let ts = now_ms();
    let mut acks = Vec::with_capacity(4096);
    for i in 0..N as u64 {
        acks.push(js.publish("in.p", event(i, ts)).await.unwrap());
        if acks.len() == 4096 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await.unwrap();
    }

    let pipeline = format!(
        r#"
name = "counts"
batch_size = 256
[source]
subject = "in.>"
stream = "IN"
durable = "counts"
max_ack_pending = 10000
[[stages]]
name = "count"
plugin = {}
timer = "1s"
config = {{ key = ["product"], time = "ts", window = "1m", lateness = "1h", subject = "counts.{{product}}" }}
[sink]
subject = "out.{{subject}}"
"#,
        toml_str(plugins::WINDOW_COUNT)
    );
    let (_weir, native) = match which {
        Consumer::Weir => (Some(Weir::builder(&server).workers(2).pipeline("counts.toml", &pipeline).start()), None),
        Consumer::Native => {
            let stream = js.get_stream("IN").await.unwrap();
            stream
                .create_consumer(consumer::pull::Config { durable_name: Some("counts".into()), max_ack_pending: 10_000, ..Default::default() })
                .await
                .unwrap();
            (None, Some(tokio::spawn(native_consumer(client.clone(), js.clone()))))
        }
    };

    // Throughput: first ack → drained.
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "{which:?}: not drained in 300 s");
        let Ok(info) = consumer_info(&js).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        if first.is_none() && info.ack_floor.stream_sequence > 0 {
            first = Some(Instant::now());
        }
        if info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= N as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    let events_per_s = N as f64 / elapsed.as_secs_f64();

    // Latency: a steady rate; publish-acknowledged → ack floor passes.
    let sent = tokio::spawn({
        let js = js.clone();
        async move {
            let mut sent: Vec<(u64, Instant)> = Vec::new();
            let start = Instant::now();
            let total = RATE * LATENCY_FOR.as_secs();
            for i in 0..total {
                let ack = js.publish("in.p", event(i, now_ms())).await.unwrap().await.unwrap();
                sent.push((ack.sequence, Instant::now()));
                let due = start + Duration::from_micros(i * 1_000_000 / RATE);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
            }
            sent
        }
    });
    let mut floors: Vec<(u64, Instant)> = Vec::new();
    while !sent.is_finished() || floors.last().is_none_or(|(f, _)| *f < (N as u64 + RATE * LATENCY_FOR.as_secs())) {
        if let Ok(info) = consumer_info(&js).await {
            floors.push((info.ack_floor.stream_sequence, Instant::now()));
        }
        if floors.len() > 200_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let sent = sent.await.unwrap();
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(seq, at)| {
            floors
                .iter()
                .find(|(f, _)| f >= seq)
                .map(|(_, when)| when.saturating_duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((p * latencies.len() as f64) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };

    if let Some(native) = native {
        native.abort();
    }
    let published = N as u64 + sent.len() as u64;
    let counted = total_counted(&js, which).await;
    let bucket_stream = match which {
        Consumer::Weir => "KV_weir-state-counts",
        Consumer::Native => "KV_native-counts",
    };
    let kv_messages = js.get_stream(bucket_stream).await.unwrap().info().await.unwrap().state.last_sequence;
    Measured { events_per_s, p50_ms: pct(0.5), p99_ms: pct(0.99), counted, published, kv_messages }
}

async fn consumer_info(js: &jetstream::Context) -> Result<consumer::Info, String> {
    let stream = js.get_stream("IN").await.map_err(|e| e.to_string())?;
    let mut c: consumer::PullConsumer = stream.get_consumer("counts").await.map_err(|e| e.to_string())?;
    c.info().await.cloned().map_err(|e| e.to_string())
}

/// The sum of every count in the consumer's bucket.
async fn total_counted(js: &jetstream::Context, which: Consumer) -> u64 {
    let bucket = match which {
        Consumer::Weir => "weir-state-counts",
        Consumer::Native => "native-counts",
    };
    let kv = js.get_key_value(bucket).await.unwrap();
    let mut keys = kv.keys().await.unwrap();
    let mut total = 0;
    while let Some(Ok(key)) = keys.next().await {
        if key.starts_with("_") {
            continue;
        }
        if let Ok(Some(value)) = kv.get(&key).await {
            let json: serde_json::Value = serde_json::from_slice(&value).unwrap_or_default();
            total += json["count"].as_u64().unwrap_or(0);
        }
    }
    total
}

/// The native consumer: pull up to 256, count, commit the changed keys and
/// the batch's sequences in one atomic batch with revision checks, ack.
async fn native_consumer(client: Client, js: jetstream::Context) {
    js.create_stream(jetstream::stream::Config {
        name: "KV_native-counts".into(),
        subjects: vec!["$KV.native-counts.>".into()],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        allow_atomic_publish: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .unwrap();
    let stream = js.get_stream("IN").await.unwrap();
    let consumer: consumer::PullConsumer = stream.get_consumer("counts").await.unwrap();
    // key → (count, revision)
    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    let mut batch_id = 0u64;
    loop {
        let Ok(mut messages) = consumer.fetch().max_messages(BATCH).expires(Duration::from_millis(500)).messages().await else { continue };
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(Ok(message)) = messages.next().await {
            batch.push(message);
        }
        if batch.is_empty() {
            continue;
        }
        let mut changed: HashMap<String, u64> = HashMap::new();
        let mut sequences = Vec::with_capacity(batch.len());
        for message in &batch {
            let json: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            let ts = json["ts"].as_u64().unwrap();
            let key = format!("count.w/{:016}/{}", ts - ts % 60_000, json["product"].as_str().unwrap());
            let base = changed.get(&key).copied().unwrap_or_else(|| counts.get(&key).map_or(0, |c| c.0));
            changed.insert(key, base + 1);
            sequences.push(message.info().unwrap().stream_sequence);
        }
        batch_id += 1;
        let id = format!("native-{batch_id}");
        let mut writes: Vec<(String, Bytes, Option<u64>)> = changed
            .iter()
            .map(|(k, n)| (k.clone(), Bytes::from(format!(r#"{{"count":{n}}}"#)), Some(counts.get(k).map_or(0, |c| c.1))))
            .collect();
        let marker: String = sequences.iter().map(|s| format!("{s},")).collect();
        writes.push((format!("_inputs.{}", batch_id % 64), Bytes::from(marker), None));
        let last = writes.len() - 1;
        let mut revisions = Vec::with_capacity(writes.len());
        for (index, (key, value, expected)) in writes.iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Batch-Id", id.as_str());
            headers.insert("Nats-Batch-Sequence", (index + 1).to_string().as_str());
            if let Some(expected) = expected {
                headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
            }
            let subject = format!("$KV.native-counts.{key}");
            if index == last {
                headers.insert("Nats-Batch-Commit", "1");
                let reply = client.request_with_headers(subject, headers, value.clone()).await.unwrap();
                let answer: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
                assert!(answer.get("error").is_none(), "native commit refused: {answer}");
                let seq = answer["seq"].as_u64().unwrap();
                let first = seq + 1 - writes.len() as u64;
                revisions.extend((0..writes.len() as u64).map(|i| first + i));
            } else {
                client.publish_with_headers(subject, headers, value.clone()).await.unwrap();
            }
        }
        for ((key, _, _), revision) in writes.iter().zip(revisions) {
            if let Some(n) = changed.get(key) {
                counts.insert(key.clone(), (*n, revision));
            }
        }
        for message in batch {
            message.ack().await.unwrap();
        }
    }
}
