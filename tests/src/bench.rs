//! The measuring machinery of the NATS benchmarks (`benches/relay.rs`,
//! `benches/products.rs`): a publisher and a consumer on connections of their
//! own, a full-speed throughput run and a fixed-rate latency run, every wait
//! bounded, and a watchdog. `benches/jetstream.rs` and `benches/deploys.rs`
//! take the payloads, the CPU and RSS readers and the watchdog from here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;

use crate::harness::NatsServer;

/// Events per throughput run. Core NATS has no backpressure, so at full
/// speed some may be dropped as slow consumers: counted, not hidden.
pub const N: usize = 200_000;
/// Hard bound on one throughput run (publish and receive).
pub const THROUGHPUT_DEADLINE: Duration = Duration::from_secs(20);
/// The fixed rate and duration of the latency runs.
pub const LATENCY_RATE: u64 = 20_000;
/// How long a latency run publishes.
pub const LATENCY_FOR: Duration = Duration::from_secs(3);
/// After the last publish, how long to wait without any arrival before
/// counting the rest as lost.
const STRAGGLER_IDLE: Duration = Duration::from_secs(2);
/// Events published (and awaited) before each measurement, so that
/// subscriptions are in place and code paths are warm.
const WARMUP: usize = 2_000;
/// The header that carries the send time (ns since the run's start) in
/// latency runs: weir keeps input headers, and a header leaves the payload
/// alone.
const SENT_HEADER: &str = "bench-sent-ns";
/// How long a whole bench binary may run before [`start_watchdog`] ends it.
pub const WATCHDOG: Duration = Duration::from_secs(175);

#[derive(Debug, Default)]
pub struct CaseResult {
    pub name: String,
    pub events_per_s: f64,
    pub delivered: usize,
    pub published: usize,
    /// Latency run: events sent, received, and arrival - send in ns, sorted.
    pub latency_sent: usize,
    pub latencies: Vec<u64>,
    /// Slow-consumer events reported to the bench's clients, and lines the
    /// server logged about slow consumers (drops in either place).
    pub client_slow: u64,
    pub server_slow: usize,
    /// CPU time the whole machine spent per delivered event during the
    /// throughput run (every process: nats-server, weir, this bench), in µs;
    /// NaN where `/proc/stat` cannot be read. Less noisy than events/s on a
    /// shared VM: on 2 cores the relay is bound by the total.
    pub cpu_us_per_event: f64,
    /// The same, for nats-server, `weir run` (when the case runs it) and this
    /// bench's own process (publisher, consumer, and the native relays),
    /// from `/proc/<pid>/stat`: where the machine's CPU went.
    pub cpu_by_process: CpuSplit,
}

/// CPU µs per delivered event by process; NaN where unknown (or no weir).
#[derive(Debug, Clone, Copy)]
pub struct CpuSplit {
    pub server: f64,
    pub weir: f64,
    pub bench: f64,
}

impl Default for CpuSplit {
    fn default() -> Self {
        CpuSplit { server: f64::NAN, weir: f64::NAN, bench: f64::NAN }
    }
}

impl CaseResult {
    /// The latency at percentile `p` (0..=1), in ms.
    pub fn percentile_ms(&self, p: f64) -> f64 {
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
/// whose overload could otherwise leave a backlog behind. `weir` is the
/// process id of the `weir run` under test, if any, for the CPU split.
pub async fn measure(name: &str, server: &NatsServer, weir: Option<u32>, input: &str, out: &str, payloads: &[Bytes]) -> CaseResult {
    let (publisher, pub_slow) = connect(server).await;
    let (consumer, sub_slow) = connect(server).await;
    let mut sub = subscribe(&consumer, out).await;

    warm_up(name, &publisher, input, &mut sub, payloads).await;
    let (latency_sent, latencies, sub) = latency(&publisher, input, sub, payloads).await;
    let mut sub = sub;
    warm_up(name, &publisher, input, &mut sub, payloads).await;
    let processes = [server.pid(), weir, Some(std::process::id())];
    let cpu_before = machine_cpu();
    let processes_before = processes.map(|pid| pid.and_then(process_cpu));
    let (events_per_s, delivered) = throughput(&publisher, input, sub, payloads, N).await;
    let processes_after = processes.map(|pid| pid.and_then(process_cpu));
    let per_event = |before: Option<Duration>, after: Option<Duration>| match after.zip(before) {
        Some((after, before)) if delivered > 0 => after.saturating_sub(before).as_secs_f64() * 1e6 / delivered as f64,
        _ => f64::NAN,
    };
    let cpu_us_per_event = per_event(cpu_before, machine_cpu());
    let [server_cpu, weir_cpu, bench_cpu] = [0, 1, 2].map(|i| per_event(processes_before[i], processes_after[i]));

    let result = CaseResult {
        name: name.into(),
        events_per_s,
        delivered,
        published: N,
        latency_sent,
        latencies,
        client_slow: pub_slow.load(Ordering::Relaxed) + sub_slow.load(Ordering::Relaxed),
        server_slow: server.logs().matches("Slow Consumer").count(),
        cpu_us_per_event,
        cpu_by_process: CpuSplit { server: server_cpu, weir: weir_cpu, bench: bench_cpu },
    };
    eprintln!(
        "[bench] {name}: {:.0} events/s ({:.2} µs of machine CPU per event), {delivered}/{N} delivered; latency p50 {:.2} ms p99 {:.2} ms ({} of {latency_sent})",
        result.events_per_s,
        result.cpu_us_per_event,
        result.percentile_ms(0.50),
        result.percentile_ms(0.99),
        result.latencies.len()
    );
    result
}

/// Throughput alone, with `n` events: [`measure`] without the latency run,
/// for relays too slow for its fixed rate (Python and JavaScript ones). The
/// result's latency fields are empty.
pub async fn measure_throughput(name: &str, server: &NatsServer, relay: Option<u32>, input: &str, out: &str, payloads: &[Bytes], n: usize) -> CaseResult {
    let (publisher, pub_slow) = connect(server).await;
    let (consumer, sub_slow) = connect(server).await;
    let mut sub = subscribe(&consumer, out).await;
    warm_up(name, &publisher, input, &mut sub, payloads).await;
    let processes = [server.pid(), relay, Some(std::process::id())];
    let cpu_before = machine_cpu();
    let processes_before = processes.map(|pid| pid.and_then(process_cpu));
    let (events_per_s, delivered) = throughput(&publisher, input, sub, payloads, n).await;
    let processes_after = processes.map(|pid| pid.and_then(process_cpu));
    let per_event = |before: Option<Duration>, after: Option<Duration>| match after.zip(before) {
        Some((after, before)) if delivered > 0 => after.saturating_sub(before).as_secs_f64() * 1e6 / delivered as f64,
        _ => f64::NAN,
    };
    let cpu_us_per_event = per_event(cpu_before, machine_cpu());
    let [server_cpu, relay_cpu, bench_cpu] = [0, 1, 2].map(|i| per_event(processes_before[i], processes_after[i]));
    let result = CaseResult {
        name: name.into(),
        events_per_s,
        delivered,
        published: n,
        client_slow: pub_slow.load(Ordering::Relaxed) + sub_slow.load(Ordering::Relaxed),
        server_slow: server.logs().matches("Slow Consumer").count(),
        cpu_us_per_event,
        cpu_by_process: CpuSplit { server: server_cpu, weir: relay_cpu, bench: bench_cpu },
        ..CaseResult::default()
    };
    eprintln!(
        "[bench] {name}: {:.0} events/s ({:.2} µs of machine CPU per event, {:.2} in the relay process), {delivered}/{n} delivered",
        result.events_per_s, result.cpu_us_per_event, relay_cpu
    );
    result
}

/// Publishes `WARMUP` events and waits (bounded) until they arrived, then
/// until the output is quiet, so that nothing of them leaks into a
/// measurement.
async fn warm_up(name: &str, publisher: &Client, input: &str, sub: &mut Subscriber, payloads: &[Bytes]) {
    for i in 0..WARMUP {
        publisher.publish(input.to_owned(), payloads[i % payloads.len()].clone()).await.expect("publish");
    }
    flush(publisher).await;
    let got = receive_until(sub, WARMUP, Duration::from_secs(10)).await;
    if got < WARMUP {
        eprintln!("[bench] {name}: only {got} of {WARMUP} warm-up events arrived");
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

/// CPU time spent so far by the whole machine (user, nice, system, irq and
/// softirq of every core), from `/proc/stat`; `None` off Linux.
pub fn machine_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal ...; in clock ticks,
    // which are 1/100 s on every Linux this runs on (USER_HZ).
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum();
    Some(Duration::from_millis(busy * 10))
}

/// CPU time process `pid` has spent so far (user and system), from
/// `/proc/<pid>/stat`; `None` if it cannot be read.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces): state is field 3, utime
    // and stime are fields 14 and 15, in clock ticks (USER_HZ = 100).
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Publishes `n` events as fast as the client takes them, then flushes; a
/// consumer task counts arrivals. Returns (delivered / (last arrival - first
/// publish), delivered).
async fn throughput(publisher: &Client, input: &str, mut sub: Subscriber, payloads: &[Bytes], n: usize) -> (f64, usize) {
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + THROUGHPUT_DEADLINE);
    // The consumer runs as its own task, so it can take the other core.
    let consumer = tokio::spawn(async move {
        let mut got = 0usize;
        let mut last = start;
        while got < n {
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
        for i in 0..n {
            publisher.publish(input.to_owned(), payloads[i % payloads.len()].clone()).await.expect("publish");
        }
        flush(publisher).await;
    };
    if tokio::time::timeout_at(deadline, publishing).await.is_err() {
        eprintln!("[bench] publishing {n} events did not finish within {THROUGHPUT_DEADLINE:?}");
    }
    let (got, last) = consumer.await.expect("the consumer task");
    let elapsed = last.duration_since(start).as_secs_f64();
    let rate = if got == 0 { 0.0 } else { got as f64 / elapsed };
    (rate, got)
}

/// Publishes at `LATENCY_RATE` for `LATENCY_FOR`, each event with its send
/// time in a header; the consumer records arrival - send. Returns (sent,
/// sorted latencies in ns, the subscription back).
async fn latency(publisher: &Client, input: &str, mut sub: Subscriber, payloads: &[Bytes]) -> (usize, Vec<u64>, Subscriber) {
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
                    .publish_with_headers(input.to_owned(), headers, payloads[sent % payloads.len()].clone())
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

/// A client with a large subscription buffer (the default 65,536 drops
/// messages at full speed) that counts slow-consumer events.
pub async fn connect(server: &NatsServer) -> (Client, Arc<AtomicU64>) {
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

/// Subscribes, and waits until the server has the subscription.
pub async fn subscribe(client: &Client, subject: &str) -> Subscriber {
    let sub = client.subscribe(subject.to_string()).await.expect("subscribe");
    // The subscription is at the server once a flush round-trip is done.
    flush(client).await;
    sub
}

/// Flushes, bounded; a failure is printed, not fatal.
pub async fn flush(client: &Client) {
    match tokio::time::timeout(Duration::from_secs(10), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("[bench] flush failed: {e}"),
        Err(_) => eprintln!("[bench] flush did not finish within 10 s"),
    }
}

/// Ends the run after [`WATCHDOG`] if it still runs: kills this process's
/// children (nats-server, weir: found by parent pid in /proc, so only
/// processes this bench started) and exits with an error.
pub fn start_watchdog() {
    start_watchdog_after(WATCHDOG);
}

/// [`start_watchdog`] for a bench that needs longer than [`WATCHDOG`].
pub fn start_watchdog_after(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("[bench] the bench still runs after {limit:?}: killing its processes and giving up");
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

/// Runs a relay in this process on its own connection: every message on
/// `input` goes through `work` and, if it returns a subject and payload, is
/// published there with the input's headers.
pub async fn spawn_relay<F>(server: &NatsServer, input: &str, work: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(&async_nats::Message) -> Option<(Subject, Bytes)> + Send + 'static,
{
    spawn_stamping_relay(server, input, &[], work).await
}

/// [`spawn_relay`], adding the headers of `stamp` to every output, as weir
/// adds `weir-pipeline` and `weir-version`.
pub async fn spawn_stamping_relay<F>(server: &NatsServer, input: &str, stamp: &[(&'static str, &'static str)], work: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(&async_nats::Message) -> Option<(Subject, Bytes)> + Send + 'static,
{
    let (client, _) = connect(server).await;
    let mut sub = subscribe(&client, input).await;
    let stamp = stamp.to_vec();
    tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            if let Some((subject, payload)) = work(&message) {
                let mut headers = message.headers.clone().unwrap_or_default();
                for (name, value) in &stamp {
                    headers.insert(*name, *value);
                }
                if client.publish_with_headers(subject, headers, payload).await.is_err() {
                    break;
                }
            }
        }
    })
}

/// Prints the cases as a markdown table: throughput, what was delivered,
/// latency percentiles, slow-consumer reports.
pub fn print_cases(cases: &[&CaseResult]) {
    println!(
        "| case | events/s | machine CPU µs/event | of which nats-server / weir / bench | delivered/N | p50 ms | p99 ms | max ms | latency delivered | slow-consumer (client/server) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in cases {
        let split = case.cpu_by_process;
        let weir = if split.weir.is_nan() { "-".to_owned() } else { format!("{:.2}", split.weir) };
        println!(
            "| {} | {:.0} | {:.2} | {:.2} / {weir} / {:.2} | {}/{} | {:.2} | {:.2} | {:.2} | {}/{} | {}/{} |",
            case.name,
            case.events_per_s,
            case.cpu_us_per_event,
            split.server,
            split.bench,
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
}

/// Names the cases that lost events, if any.
pub fn print_losses(cases: &[&CaseResult]) {
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

/// Distinct payloads of [`relay_payloads`], cycled: built before the clock
/// starts.
pub const DISTINCT_PAYLOADS: usize = 1024;

const PAYLOAD_COUNTRIES: [&str; 4] = ["DE", "FR", "US", "NL"];

/// The relay benchmarks' events: [`DISTINCT_PAYLOADS`] of about 300 bytes
/// of JSON each, cycled; `price` > 0 so every event passes the
/// filter, `country` drives the router.
pub fn relay_payloads() -> Vec<Bytes> {
    (0..DISTINCT_PAYLOADS)
        .map(|i| {
            let text = format!(
                r#"{{"id":{i},"type":"order.created","price":{}.{:02},"currency":"EUR","country":"{}","customer":{{"id":"c-{:06}","segment":"returning"}},"items":[{{"sku":"SKU-{:06}","qty":{}}},{{"sku":"SKU-{:06}","qty":1}}],"channel":"web","ts":"2026-11-26T10:15:{:02}Z","note":"the quick brown fox jumps over the lazy dog"}}"#,
                1 + i % 200,
                i % 100,
                PAYLOAD_COUNTRIES[i % PAYLOAD_COUNTRIES.len()],
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

/// The resident set size of process `pid` in KiB (`VmRSS` in
/// `/proc/<pid>/status`); `None` if it cannot be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
