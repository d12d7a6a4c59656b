//! End-to-end relay benchmark over core NATS on one machine (issue 3,
//! "Benchmark"): 300-byte JSON events, one publisher, one consumer of the
//! output subject, a private `nats-server` on 127.0.0.1.
//!
//! (a) a native Rust relay in this process: subscribe to `in`, republish to
//!     `out` (the ceiling);
//! (b) `weir run` with one `noop` stage;
//! (c) `weir run` with `filter` + `json-map` + `router` (all events pass,
//!     routed to `out.<country>`);
//! (d) a native relay doing the work of (c) in this process.
//!
//! For each: throughput (publish N events as fast as possible; events/s =
//! delivered / time from the first publish to the last arrival) and latency
//! at a fixed 20k events/s for 3 s (p50 / p99 / max of arrival - send).
//! Prints a markdown table and the ratios against the issue's targets.
//!
//! Run with `cargo bench -p weir-tests --bench relay`. Every wait is bounded,
//! and a watchdog ends the run (and the processes it started) after
//! `WATCHDOG` in case something still hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use weir_tests::harness::{NatsServer, Weir, toml_str, weir_binary};
use weir_tests::plugins;

/// Events per throughput run. Core NATS has no backpressure, so at full
/// speed some may be dropped as slow consumers: counted, not hidden.
const N: usize = 200_000;
/// Hard bound on one throughput run (publish and receive).
const THROUGHPUT_DEADLINE: Duration = Duration::from_secs(20);
/// The fixed rate and duration of the latency runs.
const LATENCY_RATE: u64 = 20_000;
const LATENCY_FOR: Duration = Duration::from_secs(3);
/// After the last publish, how long to wait without any arrival before
/// counting the rest as lost.
const STRAGGLER_IDLE: Duration = Duration::from_secs(2);
/// Events published (and awaited) before each measurement, so that
/// subscriptions are in place and code paths are warm.
const WARMUP: usize = 2_000;
/// The header that carries the send time (ns since [`epoch`]) in latency
/// runs: weir keeps input headers, and a header leaves the payload alone.
const SENT_HEADER: &str = "bench-sent-ns";
/// Distinct payloads, cycled: built before the clock starts.
const DISTINCT_PAYLOADS: usize = 1024;
const WATCHDOG: Duration = Duration::from_secs(175);

const COUNTRIES: [&str; 4] = ["DE", "FR", "US", "NL"];

fn main() {
    // Build (or find) the weir binary before anything is timed. The harness
    // may run `cargo build` here, which can take minutes: the watchdog starts
    // after it, so it never kills a build.
    let started = Instant::now();
    let bin = weir_binary();
    eprintln!("[relay] weir binary {} ready after {:.1?}", bin.display(), started.elapsed());
    start_watchdog();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let payloads = payloads();
    eprintln!("[relay] payload size: {} bytes", payloads[0].len());

    let a = native_relay(&runtime, &payloads);
    let b = weir_noop(&runtime, &payloads);
    let c = weir_chain(&runtime, &payloads);
    let d = native_chain(&runtime, &payloads);
    // Observability's cost: the same chain with metrics on (Prometheus
    // endpoint served, stage calls timed); (c) runs with them off.
    let e = weir_chain_metered(&runtime, &payloads);
    print_report(&payloads, &[&a, &b, &c, &d, &e]);

    // One pair of runs is at the mercy of this machine's noise (±20%):
    // price metrics over interleaved pairs and compare the medians.
    let mut off = vec![c.events_per_s];
    let mut on = vec![e.events_per_s];
    for _ in 0..2 {
        off.push(weir_chain(&runtime, &payloads).events_per_s);
        on.push(weir_chain_metered(&runtime, &payloads).events_per_s);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut off), median(&mut on));
    let cost = 1.0 - on / off;
    println!();
    println!(
        "metrics cost over 3 interleaved pairs of (c): median {off:.0} events/s off, {on:.0} on: {:.1}% (target <= 5%: {})",
        cost * 100.0,
        if cost <= 0.05 { "met" } else { "NOT met" }
    );
}

// ---------------------------------------------------------------- the cases

/// (a) Subscribe to `in`, republish each message (headers kept, as weir
/// keeps them) to `out`.
fn native_relay(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    let server = NatsServer::new();
    runtime.block_on(async {
        let relay = spawn_relay(&server, |message| Some((Subject::from_static("out"), message.payload.clone()))).await;
        let result = measure("(a) native relay", &server, "out", payloads).await;
        relay.abort();
        result
    })
}

/// (b) `weir run` with one `noop` stage, default batch size.
fn weir_noop(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    let pipeline = format!(
        "name = \"relay\"\n\n[source]\nsubject = \"in\"\n\n[[stages]]\nname = \"noop\"\nplugin = {}\n\n[sink]\nsubject = \"out\"\n",
        toml_str(plugins::NOOP)
    );
    run_weir(runtime, "(b) weir noop", &pipeline, "out", payloads)
}

/// (c) `weir run` with filter (every event passes) + json-map + router to
/// `out.<country>`.
fn chain_pipeline() -> String {
    format!(
        r#"name = "relay"

[source]
subject = "in"

[[stages]]
name = "filter"
plugin = {filter}
config = {{ all = [ {{ field = "price", gt = 0 }} ] }}

[[stages]]
name = "map"
plugin = {json_map}
config = {{ set = {{ processed_by = "weir", score = 0.87 }} }}

[[stages]]
name = "route"
plugin = {router}
config = {{ subject = "out.{{country}}", default = "unknown" }}

[sink]
subject = "{{subject}}"
"#,
        filter = toml_str(plugins::FILTER),
        json_map = toml_str(plugins::JSON_MAP),
        router = toml_str(plugins::ROUTER),
    )
}

fn weir_chain(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    run_weir(runtime, "(c) weir filter+map+router", &chain_pipeline(), "out.>", payloads)
}

/// (e) = (c) with metrics on: the Prometheus endpoint served and every stage
/// call timed.
fn weir_chain_metered(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    run_weir_with(runtime, "(e) (c) with metrics on", &chain_pipeline(), "out.>", payloads, true)
}

/// (d) The work of (c) natively: parse once into a `serde_json::Value`,
/// check `price > 0`, apply json-map's own `Mapping` (the plugin's code),
/// serialise, publish to `out.<country>`.
fn native_chain(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    use weir_sdk::serde_json::{self, Value};
    let config = weir_sdk::Config::from_json(r#"{"set": {"processed_by": "weir", "score": 0.87}}"#).expect("valid JSON");
    let mapping = Arc::new(weir_json_map::Mapping::from_config(&config).expect("valid mapping"));
    let server = NatsServer::new();
    runtime.block_on(async {
        let relay = spawn_relay(&server, move |message| {
            let mut event: Value = serde_json::from_slice(&message.payload).ok()?;
            if !event.get("price").and_then(Value::as_f64).is_some_and(|price| price > 0.0) {
                return None;
            }
            mapping.apply_to(&mut event).ok()?;
            let country = event.get("country").and_then(Value::as_str).unwrap_or("unknown");
            let subject = Subject::from(format!("out.{country}"));
            Some((subject, serde_json::to_vec(&event).ok()?.into()))
        })
        .await;
        let result = measure("(d) native filter+map+router", &server, "out.>", payloads).await;
        relay.abort();
        result
    })
}

/// A fresh server and a fresh `weir run` (2 workers) for one pipeline;
/// measures, then stops weir with SIGINT and a bounded wait.
fn run_weir(runtime: &tokio::runtime::Runtime, name: &str, pipeline: &str, out: &str, payloads: &[Bytes]) -> CaseResult {
    run_weir_with(runtime, name, pipeline, out, payloads, false)
}

fn run_weir_with(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    pipeline: &str,
    out: &str,
    payloads: &[Bytes],
    metrics: bool,
) -> CaseResult {
    let server = NatsServer::new();
    // Blocking calls (start, wait_exit) stay outside the runtime.
    let mut builder = Weir::builder(&server).label("bench").workers(2).pipeline("relay.toml", pipeline);
    if metrics {
        builder = builder.metrics(&format!("127.0.0.1:{}", weir_tests::harness::free_port()));
    }
    let mut weir = builder.start();
    let result = runtime.block_on(measure(name, &server, out, payloads));
    weir.interrupt();
    let status = weir.wait_exit(Duration::from_secs(15));
    if !status.success() {
        eprintln!("[relay] {name}: weir exited with {status}");
    }
    result
}

/// Runs a relay in this process on its own connection: every message on
/// `in` goes through `work` and, if it returns a subject and payload, is
/// published there with the input's headers.
async fn spawn_relay<F>(server: &NatsServer, work: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(&async_nats::Message) -> Option<(Subject, Bytes)> + Send + 'static,
{
    let (client, _) = connect(server).await;
    let mut sub = subscribe(&client, "in").await;
    tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            if let Some((subject, payload)) = work(&message) {
                let headers = message.headers.clone().unwrap_or_default();
                if client.publish_with_headers(subject, headers, payload).await.is_err() {
                    break;
                }
            }
        }
    })
}

// ---------------------------------------------------------------- measuring

#[derive(Debug, Default)]
struct CaseResult {
    name: String,
    events_per_s: f64,
    delivered: usize,
    published: usize,
    /// Latency run: events sent, received, and arrival - send in ns, sorted.
    latency_sent: usize,
    latencies: Vec<u64>,
    /// Slow-consumer events reported to the bench's clients, and lines the
    /// server logged about slow consumers (drops in either place).
    client_slow: u64,
    server_slow: usize,
}

impl CaseResult {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1e6
    }
}

/// The shared measurement: a publisher on `in` and a consumer of `out` on
/// two connections of their own (so neither waits behind the other's
/// socket). Latency first, on a quiet system; then the full-speed run,
/// whose overload could otherwise leave a backlog behind.
async fn measure(name: &str, server: &NatsServer, out: &str, payloads: &[Bytes]) -> CaseResult {
    let (publisher, pub_slow) = connect(server).await;
    let (consumer, sub_slow) = connect(server).await;
    let mut sub = subscribe(&consumer, out).await;

    warm_up(name, &publisher, &mut sub, payloads).await;
    let (latency_sent, latencies, sub) = latency(&publisher, sub, payloads).await;
    let mut sub = sub;
    warm_up(name, &publisher, &mut sub, payloads).await;
    let (events_per_s, delivered) = throughput(&publisher, sub, payloads).await;

    let result = CaseResult {
        name: name.into(),
        events_per_s,
        delivered,
        published: N,
        latency_sent,
        latencies,
        client_slow: pub_slow.load(Ordering::Relaxed) + sub_slow.load(Ordering::Relaxed),
        server_slow: server.logs().matches("Slow Consumer").count(),
    };
    eprintln!(
        "[relay] {name}: {:.0} events/s, {delivered}/{N} delivered; latency p50 {:.2} ms p99 {:.2} ms ({} of {latency_sent})",
        result.events_per_s,
        result.percentile_ms(0.50),
        result.percentile_ms(0.99),
        result.latencies.len()
    );
    result
}

/// Publishes `WARMUP` events and waits (bounded) until they arrived, then
/// until the output is quiet, so that nothing of them leaks into a
/// measurement.
async fn warm_up(name: &str, publisher: &Client, sub: &mut Subscriber, payloads: &[Bytes]) {
    for i in 0..WARMUP {
        publisher.publish("in", payloads[i % payloads.len()].clone()).await.expect("publish");
    }
    flush(publisher).await;
    let got = receive_until(sub, WARMUP, Duration::from_secs(10)).await;
    if got < WARMUP {
        eprintln!("[relay] {name}: only {got} of {WARMUP} warm-up events arrived");
    }
    receive_until(sub, usize::MAX, Duration::from_millis(200)).await;
}

/// Counts arrivals on `sub` until `n` or until nothing came for `idle`.
async fn receive_until(sub: &mut Subscriber, n: usize, idle: Duration) -> usize {
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(idle, sub.next()).await {
            Ok(Some(_)) => got += 1,
            Ok(None) | Err(_) => break,
        }
    }
    got
}

/// Publishes `N` events as fast as the client takes them, then flushes; a
/// consumer task counts arrivals. Returns (delivered / (last arrival - first
/// publish), delivered).
async fn throughput(publisher: &Client, mut sub: Subscriber, payloads: &[Bytes]) -> (f64, usize) {
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + THROUGHPUT_DEADLINE);
    // The consumer runs as its own task, so it can take the other core.
    let consumer = tokio::spawn(async move {
        let mut got = 0usize;
        let mut last = start;
        while got < N {
            // Stop at the deadline, or when nothing arrived for a while
            // (the rest was dropped somewhere).
            let wait = deadline.min(tokio::time::Instant::now() + STRAGGLER_IDLE);
            match tokio::time::timeout_at(wait, sub.next()).await {
                Ok(Some(_)) => {
                    got += 1;
                    last = Instant::now();
                }
                Ok(None) | Err(_) => break,
            }
        }
        (got, last)
    });
    let publishing = async {
        for i in 0..N {
            publisher.publish("in", payloads[i % payloads.len()].clone()).await.expect("publish");
        }
        flush(publisher).await;
    };
    if tokio::time::timeout_at(deadline, publishing).await.is_err() {
        eprintln!("[relay] publishing {N} events did not finish within {THROUGHPUT_DEADLINE:?}");
    }
    let (got, last) = consumer.await.expect("the consumer task");
    let elapsed = last.duration_since(start).as_secs_f64();
    let rate = if got == 0 { 0.0 } else { got as f64 / elapsed };
    (rate, got)
}

/// Publishes at `LATENCY_RATE` for `LATENCY_FOR`, each event with its send
/// time in a header; the consumer records arrival - send. Returns (sent,
/// sorted latencies in ns, the subscription back).
async fn latency(publisher: &Client, mut sub: Subscriber, payloads: &[Bytes]) -> (usize, Vec<u64>, Subscriber) {
    let epoch = Instant::now();
    let total = (LATENCY_RATE * LATENCY_FOR.as_secs()) as usize;
    let deadline = tokio::time::Instant::from_std(epoch + LATENCY_FOR + Duration::from_secs(10));
    let consumer = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total);
        while latencies.len() < total {
            let wait = deadline.min(tokio::time::Instant::now() + STRAGGLER_IDLE);
            match tokio::time::timeout_at(wait, sub.next()).await {
                Ok(Some(message)) => {
                    let now = epoch.elapsed().as_nanos() as u64;
                    let sent = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(SENT_HEADER))
                        .and_then(|v| v.as_str().parse::<u64>().ok());
                    if let Some(sent) = sent {
                        latencies.push(now.saturating_sub(sent));
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        latencies.sort_unstable();
        (latencies, sub)
    });
    // Pacing: every millisecond, publish as many as are due by now
    // (about 20), so that the rate holds even if a sleep oversleeps.
    let publishing = async {
        let mut sent = 0usize;
        while sent < total {
            let due = ((epoch.elapsed().as_nanos() as u64 * LATENCY_RATE / 1_000_000_000) as usize).min(total);
            while sent < due {
                let mut headers = HeaderMap::new();
                headers.insert(SENT_HEADER, (epoch.elapsed().as_nanos() as u64).to_string().as_str());
                publisher
                    .publish_with_headers("in", headers, payloads[sent % payloads.len()].clone())
                    .await
                    .expect("publish");
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        flush(publisher).await;
        sent
    };
    let sent = tokio::time::timeout_at(deadline, publishing).await.unwrap_or(0);
    let (latencies, sub) = consumer.await.expect("the consumer task");
    (sent, latencies, sub)
}

// ---------------------------------------------------------------- helpers

/// A client with a large subscription buffer (the default 65,536 drops
/// messages at full speed) that counts slow-consumer events.
async fn connect(server: &NatsServer) -> (Client, Arc<AtomicU64>) {
    let slow = Arc::new(AtomicU64::new(0));
    let counter = slow.clone();
    let connecting = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .subscription_capacity(1 << 18)
        .event_callback(move |event| {
            let counter = counter.clone();
            async move {
                if matches!(event, async_nats::Event::SlowConsumer(_)) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .connect(server.url());
    let client = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("connect within 10 s")
        .expect("connect to the bench's nats-server");
    (client, slow)
}

async fn subscribe(client: &Client, subject: &str) -> Subscriber {
    let sub = client.subscribe(subject.to_string()).await.expect("subscribe");
    // The subscription is at the server once a flush round-trip is done.
    flush(client).await;
    sub
}

async fn flush(client: &Client) {
    match tokio::time::timeout(Duration::from_secs(10), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("[relay] flush failed: {e}"),
        Err(_) => eprintln!("[relay] flush did not finish within 10 s"),
    }
}

/// About 300 bytes of JSON each; `price` > 0 so every event passes the
/// filter, `country` drives the router.
fn payloads() -> Vec<Bytes> {
    (0..DISTINCT_PAYLOADS)
        .map(|i| {
            let text = format!(
                r#"{{"id":{i},"type":"order.created","price":{}.{:02},"currency":"EUR","country":"{}","customer":{{"id":"c-{:06}","segment":"returning"}},"items":[{{"sku":"SKU-{:06}","qty":{}}},{{"sku":"SKU-{:06}","qty":1}}],"channel":"web","ts":"2026-11-26T10:15:{:02}Z","note":"the quick brown fox jumps over the lazy dog"}}"#,
                1 + i % 200,
                i % 100,
                COUNTRIES[i % COUNTRIES.len()],
                i * 7 % 1_000_000,
                i * 13 % 1_000_000,
                1 + i % 4,
                i * 31 % 1_000_000,
                i % 60,
            );
            Bytes::from(text)
        })
        .collect()
}

/// Ends the run after `WATCHDOG` if it still runs: kills this process's
/// children (nats-server, weir: found by parent pid in /proc, so only
/// processes this bench started) and exits with an error.
fn start_watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("[relay] the bench still runs after {WATCHDOG:?}: killing its processes and giving up");
        let me = std::process::id().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // Fields after the command name (which may hold spaces): state, ppid.
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
            if rest.split_whitespace().nth(1) == Some(me.as_str())
                && let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>()
            {
                // SAFETY: kill(2) has no memory-safety preconditions; the
                // pid is a child of this process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::process::exit(2);
    });
}

// ---------------------------------------------------------------- report

fn print_report(payloads: &[Bytes], cases: &[&CaseResult]) {
    let [a, b, c, d, e] = cases else { unreachable!("five cases") };
    println!();
    println!(
        "Core NATS on 127.0.0.1, {}-byte JSON events, 1 publisher, 1 consumer; weir: 2 workers, default batch size.",
        payloads[0].len()
    );
    println!(
        "Throughput: {N} events published as fast as possible; events/s = delivered / (first publish → last arrival)."
    );
    println!("Latency: {LATENCY_RATE} events/s for {LATENCY_FOR:?}, arrival − send.");
    println!();
    println!("| case | events/s | delivered/N | p50 ms | p99 ms | max ms | latency delivered | slow-consumer (client/server) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in cases {
        println!(
            "| {} | {:.0} | {}/{} | {:.2} | {:.2} | {:.2} | {}/{} | {}/{} |",
            case.name,
            case.events_per_s,
            case.delivered,
            case.published,
            case.percentile_ms(0.50),
            case.percentile_ms(0.99),
            case.percentile_ms(1.0),
            case.latencies.len(),
            case.latency_sent,
            case.client_slow,
            case.server_slow,
        );
    }
    println!();
    println!("| ratio | value | target | |");
    println!("|---|---:|---:|---|");
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let tput_b = b.events_per_s / a.events_per_s;
    let tput_c = c.events_per_s / d.events_per_s;
    let p99_b = b.percentile_ms(0.99) / a.percentile_ms(0.99);
    println!("| (b)/(a) throughput | {tput_b:.2} | >= 0.85 | {} |", verdict(tput_b >= 0.85));
    println!("| (c)/(d) throughput | {tput_c:.2} | >= 0.60 | {} |", verdict(tput_c >= 0.6));
    println!("| p99(b)/p99(a) | {p99_b:.2} | <= 1.5 | {} |", verdict(p99_b <= 1.5));
    let cost = 1.0 - e.events_per_s / c.events_per_s;
    println!("| metrics cost: 1 - (e)/(c) throughput | {:.1}% | <= 5% | {} |", cost * 100.0, verdict(cost <= 0.05));
    let losses: Vec<&str> = cases
        .iter()
        .filter(|c| c.delivered < c.published || c.latencies.len() < c.latency_sent)
        .map(|c| c.name.as_str())
        .collect();
    if !losses.is_empty() {
        println!();
        println!("Events were lost (core NATS drops under overload) in: {}", losses.join(", "));
    }
}
