//! JetStream through weir, measured against a native relay with the same
//! acknowledgement semantics (issue 16, "JetStream throughput in the relay
//! benchmark"). A private `nats-server -js` on 127.0.0.1 per case, file
//! storage, the relay benchmark's 300-byte JSON events.
//!
//! (f) JetStream source → core sink: a durable pull consumer on stream `IN`
//!     (explicit acks, `max_ack_pending` 10,000, weir's defaults), each output
//!     published to `out` on core NATS, each input acknowledged once a flush
//!     confirmed the server has its output;
//! (g) JetStream source → JetStream sink: the same, the outputs published into
//!     stream `OUT` with a `Nats-Msg-Id` each, each input acknowledged once
//!     the server acknowledged its output.
//!
//! Each once as `weir run` (2 workers, one `noop` stage; outputs stamped, as
//! by default) and once as a native async-nats relay in this process: a
//! durable pull consumer with the same settings read as a message stream in
//! chunks of up to 256 (what weir pulls at a time); per chunk, the outputs
//! are published with a `Nats-Msg-Id` shaped like weir's
//! (`<relay>:IN:<sequence>:0`), then a task awaits the flush (f) or the
//! publish acknowledgements (g) and acknowledges the inputs, with up to 256
//! chunks awaiting at once, as weir's sink does.
//!
//! Throughput: [`N`] events are published into `IN` (with JetStream acks)
//! before the relay starts; events/s = outputs / (first output → last
//! output), so a relay's start-up (weir's process start, the consumer's
//! creation) is left out. Latency: once the stream is drained, a steady
//! 20k events/s for 3 s, core publishes into `IN` carrying their send time;
//! p50/p99/max of output arrival − send. The bench's consumer of `out` is a
//! core subscriber (for (g) it sees the outputs as they are published to
//! the stream).
//!
//! Every event is accounted for: the outputs' `Nats-Msg-Id` names the
//! input's stream sequence, and each sequence must come out at least once;
//! the consumer must end with nothing pending or unacknowledged, and for (g)
//! stream `OUT` must hold exactly one message per input. The run fails (after
//! printing its tables) if not.
//!
//! Run with `cargo bench -p weir-tests --bench jetstream`;
//! `WEIR_JS_ROUNDS=N` (default 2) runs the four cases N times, interleaved,
//! and the ratios are given per round and as medians. Every wait is bounded
//! and a watchdog ends the run after [`WATCHDOG`].

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::task::JoinSet;
use weir_tests::bench::{connect, flush, machine_cpu, process_cpu, relay_payloads, start_watchdog_after, subscribe};
use weir_tests::harness::{NatsServer, TempDir, Weir, toml_str, warm_cache, weir_binary};
use weir_tests::plugins;

/// Events published into the source stream before each throughput run.
const N: usize = 200_000;
/// The rate and duration of the latency runs.
const RATE: u64 = 20_000;
const LATENCY_FOR: Duration = Duration::from_secs(3);
/// The most a drain may take.
const DRAIN_DEADLINE: Duration = Duration::from_secs(90);
/// With no output for this long (once the relay is up), the rest is lost.
const IDLE: Duration = Duration::from_secs(5);
/// What the native relay takes from its message stream at a time, and how
/// many chunks may await confirmation at once: weir's pull batch and
/// confirmations in flight.
const CHUNK: usize = 256;
const CONFIRMS_IN_FLIGHT: usize = 256;
/// The header carrying the send time (ns since the case's epoch).
const SENT_HEADER: &str = "bench-sent-ns";
/// How long the whole run may take.
const WATCHDOG: Duration = Duration::from_secs(900);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sink {
    /// (f): core publishes to `out`.
    Core,
    /// (g): JetStream publishes into stream `OUT`.
    Stream,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Relay {
    Native,
    Weir,
}

/// What one case measured.
#[derive(Debug, Default)]
struct JsResult {
    name: String,
    /// Outputs of the pre-published events / (first → last output).
    events_per_s: f64,
    drained: usize,
    /// From starting the relay to its first output.
    first_output_after: Duration,
    /// CPU µs per drained event: the machine, and nats-server / weir / this
    /// process (NaN when unknown or the drain was incomplete).
    cpu_us_per_event: f64,
    cpu_split: [f64; 3],
    latency_sent: usize,
    /// Arrival − send in ns, sorted.
    latencies: Vec<u64>,
    /// Stream sequences (of the inputs) never seen in an output, seen more
    /// than once, and outputs without a sequence or beyond what was published.
    missing: usize,
    duplicated: usize,
    unexpected: usize,
    /// The source consumer at the end: (pending, ack pending), if it could be
    /// read.
    consumer_left: Option<(u64, u64)>,
    /// (g): messages in stream `OUT` at the end.
    out_stream: Option<u64>,
    /// Slow-consumer events the bench's output consumer saw.
    slow: u64,
}

impl JsResult {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1e6
    }

    /// Whether every input is accounted for.
    fn accounted(&self) -> bool {
        let expected = (N + self.latency_sent) as u64;
        self.missing == 0 && self.unexpected == 0 && self.consumer_left == Some((0, 0)) && self.out_stream.is_none_or(|n| n == expected)
    }
}

fn main() {
    let started = Instant::now();
    let bin = weir_binary();
    eprintln!("[jetstream] weir binary {} ready after {:.1?}", bin.display(), started.elapsed());
    start_watchdog_after(WATCHDOG);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let payloads = relay_payloads();
    let rounds = std::env::var("WEIR_JS_ROUNDS").ok().and_then(|n| n.parse::<usize>().ok()).unwrap_or(2).max(1);

    // One compile cache for every weir of the run, filled before anything is
    // measured.
    let cache = TempDir::new("weir-js-bench-cache");
    warm_cache(cache.path(), &pipeline(Sink::Core));

    let mut results = Vec::new();
    for round in 1..=rounds {
        eprintln!("[jetstream] round {round} of {rounds}");
        for sink in [Sink::Core, Sink::Stream] {
            for relay in [Relay::Native, Relay::Weir] {
                results.push(run_case(&runtime, relay, sink, &payloads, cache.path()));
            }
        }
    }
    report(&payloads, &results);
    let failed: Vec<&str> = results.iter().filter(|r| !r.accounted()).map(|r| r.name.as_str()).collect();
    assert!(failed.is_empty(), "events not accounted for in: {}", failed.join(", "));
}

// ---------------------------------------------------------------- one case

fn case_name(relay: Relay, sink: Sink) -> String {
    let letter = if sink == Sink::Core { "(f)" } else { "(g)" };
    let what = if sink == Sink::Core { "JetStream → core" } else { "JetStream → JetStream" };
    let who = if relay == Relay::Weir { "weir noop" } else { "native relay" };
    format!("{letter} {what}, {who}")
}

/// The weir pipeline of a case: `IN` through one `noop` stage to `out`
/// (core) or into stream `OUT`.
fn pipeline(sink: Sink) -> String {
    let sink_stream = if sink == Sink::Stream { "stream = \"OUT\"\n" } else { "" };
    format!(
        "name = \"relay\"\n\n[source]\nsubject = \"in\"\nstream = \"IN\"\ndurable = \"weir\"\n\n[[stages]]\nname = \"noop\"\nplugin = {}\n\n[sink]\nsubject = \"out\"\n{sink_stream}",
        toml_str(plugins::NOOP)
    )
}

/// The settings weir gives the consumers it creates (`nats/source.rs`).
fn consumer_config(durable: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(durable.into()),
        filter_subject: "in".into(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: 5,
        max_ack_pending: 10_000,
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

fn run_case(runtime: &tokio::runtime::Runtime, relay: Relay, sink: Sink, payloads: &[Bytes], cache: &Path) -> JsResult {
    let name = case_name(relay, sink);
    let server = NatsServer::new();
    let (client, js) = runtime.block_on(server.jetstream());
    runtime.block_on(async {
        create_file_stream(&js, "IN", "in").await;
        if sink == Sink::Stream {
            create_file_stream(&js, "OUT", "out").await;
        }
        let published = Instant::now();
        prepublish(&js, payloads).await;
        eprintln!("[jetstream] {name}: {N} events in stream IN after {:.1?}", published.elapsed());
    });

    // The observer: a core subscriber of `out` on its own connection.
    let (observer_client, slow) = runtime.block_on(connect(&server));
    let sub = runtime.block_on(subscribe(&observer_client, "out"));
    let epoch = Instant::now();
    let progress = Arc::new(Progress::default());
    let weir_pid = Arc::new(OnceLock::new());
    let pids = Pids { server: server.pid(), weir: weir_pid.clone() };
    let (stop_observer, stop) = tokio::sync::oneshot::channel();
    let observer = runtime.spawn(observe(sub, stop, epoch, progress.clone(), pids));

    // The relay.
    let relay_started = Instant::now();
    let mut weir = None;
    let mut native = None;
    match relay {
        Relay::Weir => {
            let w = Weir::builder(&server)
                .label("bench")
                .workers(2)
                .cache_dir(cache)
                .pipeline("relay.toml", &pipeline(sink))
                .spawn();
            let _ = weir_pid.set(w.pid());
            w.wait_ready();
            weir = Some(w);
        }
        Relay::Native => native = Some(runtime.block_on(spawn_native(&server, sink))),
    }
    let up = Instant::now();

    // The drain.
    let drain_deadline = relay_started + DRAIN_DEADLINE;
    loop {
        if progress.drained.load(Ordering::Relaxed) >= N {
            break;
        }
        let last = progress.last_ns.load(Ordering::Relaxed);
        let last = if last == 0 { up } else { (epoch + Duration::from_nanos(last)).max(up) };
        if Instant::now() >= drain_deadline || last.elapsed() >= IDLE {
            eprintln!("[jetstream] {name}: drain incomplete: {} of {N}", progress.drained.load(Ordering::Relaxed));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));

    // Latency at a steady rate.
    let latency_sent = runtime.block_on(publish_at_rate(&client, epoch, payloads));
    let latency_deadline = Instant::now() + IDLE * 2;
    while progress.latency.load(Ordering::Relaxed) < latency_sent && Instant::now() < latency_deadline {
        std::thread::sleep(Duration::from_millis(5));
    }

    // Settled: the consumer has nothing pending or unacknowledged.
    let durable = if relay == Relay::Weir { "weir" } else { "native" };
    let consumer_left = runtime.block_on(settled(&js, durable));
    let out_stream =
        if sink == Sink::Stream { runtime.block_on(async { js.get_stream("OUT").await.ok()?.info().await.ok().map(|i| i.state.messages) }) } else { None };

    let _ = stop_observer.send(());
    let observed = runtime.block_on(observer).expect("the observer task");
    if let Some(mut weir) = weir {
        weir.interrupt();
        if weir.try_wait_exit(Duration::from_secs(15)).is_none() {
            eprintln!("[jetstream] {name}: weir did not stop within 15 s; killed");
        }
    }
    if let Some(native) = native {
        native.abort();
    }

    let published = N + latency_sent;
    let mut missing = 0;
    let mut duplicated = 0;
    for &count in &observed.counts[1..=published] {
        match count {
            0 => missing += 1,
            1 => {}
            _ => duplicated += 1,
        }
    }
    let unexpected = observed.unexpected + observed.counts[published + 1..].iter().filter(|&&c| c > 0).count();
    let result = JsResult {
        name: name.clone(),
        events_per_s: observed.events_per_s,
        drained: observed.drained,
        first_output_after: observed.first_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(relay_started)),
        cpu_us_per_event: observed.cpu[0],
        cpu_split: [observed.cpu[1], observed.cpu[2], observed.cpu[3]],
        latency_sent,
        latencies: observed.latencies,
        missing,
        duplicated,
        unexpected,
        consumer_left,
        out_stream,
        slow: slow.load(Ordering::Relaxed),
    };
    eprintln!(
        "[jetstream] {name}: {:.0} events/s, {}/{N} drained; p99 {:.2} ms; missing {missing}, duplicated {duplicated}, unexpected {unexpected}; consumer left {consumer_left:?}; OUT {out_stream:?}",
        result.events_per_s,
        result.drained,
        result.percentile_ms(0.99),
    );
    result
}

async fn create_file_stream(js: &jetstream::Context, name: &str, subject: &str) {
    js.create_stream(stream::Config { name: name.into(), subjects: vec![subject.into()], storage: stream::StorageType::File, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
}

/// Publishes [`N`] events into stream `IN` with JetStream acks (up to 1024
/// awaited at once) and checks that the stream holds them.
async fn prepublish(js: &jetstream::Context, payloads: &[Bytes]) {
    let publishing = async {
        let mut in_flight = VecDeque::with_capacity(1024);
        for i in 0..N {
            let ack = js.publish("in", payloads[i % payloads.len()].clone()).await.expect("publish into IN");
            in_flight.push_back(ack);
            if in_flight.len() >= 1024 {
                in_flight.pop_front().expect("one in flight").await.expect("IN acknowledges");
            }
        }
        for ack in in_flight {
            ack.await.expect("IN acknowledges");
        }
    };
    tokio::time::timeout(Duration::from_secs(120), publishing)
        .await
        .expect("publishing the events into IN within 120 s");
    let messages = js.get_stream("IN").await.expect("stream IN").info().await.expect("IN's info").state.messages;
    assert_eq!(messages, N as u64, "stream IN holds every event published");
}

/// Waits (bounded) until consumer `durable` of `IN` has nothing pending and
/// nothing unacknowledged; returns what it has left (or `None` if it cannot
/// be read).
async fn settled(js: &jetstream::Context, durable: &str) -> Option<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut left = None;
    while Instant::now() < deadline {
        let info = async { js.get_stream("IN").await.ok()?.consumer_info(durable).await.ok() }.await;
        left = info.map(|i| (i.num_pending, i.num_ack_pending as u64));
        if left == Some((0, 0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    left
}

/// Publishes at [`RATE`] for [`LATENCY_FOR`] (core publishes into `IN`),
/// each event with its send time in [`SENT_HEADER`]. Returns how many were
/// sent.
async fn publish_at_rate(client: &Client, epoch: Instant, payloads: &[Bytes]) -> usize {
    let total = (RATE * LATENCY_FOR.as_secs()) as usize;
    let start = Instant::now();
    let publishing = async {
        let mut sent = 0usize;
        while sent < total {
            let due = ((start.elapsed().as_nanos() as u64 * RATE / 1_000_000_000) as usize).min(total);
            while sent < due {
                let mut headers = HeaderMap::new();
                headers.insert(SENT_HEADER, (epoch.elapsed().as_nanos() as u64).to_string().as_str());
                client
                    .publish_with_headers("in", headers, payloads[sent % payloads.len()].clone())
                    .await
                    .expect("publish");
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        flush(client).await;
        sent
    };
    tokio::time::timeout(LATENCY_FOR + Duration::from_secs(10), publishing).await.unwrap_or(0)
}

// ---------------------------------------------------------------- the observer

#[derive(Default)]
struct Progress {
    /// Outputs of pre-published events seen (duplicates included).
    drained: AtomicUsize,
    /// Latency samples taken.
    latency: AtomicUsize,
    /// When the last output came, in ns since the epoch (0: none yet).
    last_ns: AtomicU64,
}

struct Pids {
    server: Option<u32>,
    weir: Arc<OnceLock<u32>>,
}

impl Pids {
    /// CPU so far: the machine, nats-server, weir, this process.
    fn cpu(&self) -> [Option<Duration>; 4] {
        [machine_cpu(), self.server.and_then(process_cpu), self.weir.get().copied().and_then(process_cpu), process_cpu(std::process::id())]
    }
}

struct Observed {
    events_per_s: f64,
    drained: usize,
    first_at: Option<Instant>,
    /// CPU µs per drained event: the machine, nats-server, weir, this bench.
    cpu: [f64; 4],
    /// How often each stream sequence came out (index = sequence).
    counts: Vec<u8>,
    unexpected: usize,
    latencies: Vec<u64>,
}

/// Reads `out` until told to stop: counts each input's outputs by the stream
/// sequence in their `Nats-Msg-Id`, times the drain of the first [`N`], and
/// takes the latency of the events that carry a send time.
async fn observe(
    mut sub: async_nats::Subscriber,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    epoch: Instant,
    progress: Arc<Progress>,
    pids: Pids,
) -> Observed {
    let mut counts = vec![0u8; N + 2 * (RATE * LATENCY_FOR.as_secs()) as usize + 2];
    let mut unexpected = 0;
    let mut drained = 0usize;
    let mut first: Option<(Instant, [Option<Duration>; 4])> = None;
    let mut last: Option<(Instant, [Option<Duration>; 4])> = None;
    let mut latencies = Vec::with_capacity((RATE * LATENCY_FOR.as_secs()) as usize);
    loop {
        let message = tokio::select! {
            biased;
            _ = &mut stop => break,
            message = sub.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let now = Instant::now();
        progress.last_ns.store(now.duration_since(epoch).as_nanos() as u64, Ordering::Relaxed);
        let headers = message.headers.as_ref();
        let sequence = headers
            .and_then(|h| h.get("Nats-Msg-Id"))
            .and_then(|id| id.as_str().rsplit(':').nth(1)?.parse::<usize>().ok());
        match sequence {
            Some(seq) if seq >= 1 && seq < counts.len() => counts[seq] = counts[seq].saturating_add(1),
            _ => unexpected += 1,
        }
        if let Some(sent) = headers.and_then(|h| h.get(SENT_HEADER)).and_then(|v| v.as_str().parse::<u64>().ok()) {
            latencies.push((now.duration_since(epoch).as_nanos() as u64).saturating_sub(sent));
            progress.latency.fetch_add(1, Ordering::Relaxed);
        } else if sequence.is_some_and(|s| s <= N) {
            drained += 1;
            progress.drained.fetch_add(1, Ordering::Relaxed);
            if drained == 1 {
                first = Some((now, pids.cpu()));
            }
            if drained == N {
                last = Some((now, pids.cpu()));
            }
        }
    }
    latencies.sort_unstable();
    let events_per_s = match (first, last) {
        (Some((first, _)), Some((last, _))) => (N - 1) as f64 / last.duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    let mut cpu = [f64::NAN; 4];
    if let (Some((_, before)), Some((_, after))) = (first, last) {
        for i in 0..4 {
            if let (Some(b), Some(a)) = (before[i], after[i]) {
                cpu[i] = a.saturating_sub(b).as_secs_f64() * 1e6 / (N - 1) as f64;
            }
        }
    }
    Observed { events_per_s, drained, first_at: first.map(|(t, _)| t), cpu, counts, unexpected, latencies }
}

// ---------------------------------------------------------------- the native relay

/// A native relay from stream `IN` to `out` on its own connection, with
/// weir's acknowledgement semantics (see the module documentation).
async fn spawn_native(server: &NatsServer, sink: Sink) -> tokio::task::JoinHandle<()> {
    let (client, _) = connect(server).await;
    let js = jetstream::new(client.clone());
    let consumer: consumer::PullConsumer = js
        .get_stream("IN")
        .await
        .expect("stream IN")
        .get_or_create_consumer("native", consumer_config("native"))
        .await
        .expect("the native relay's consumer");
    let messages = consumer
        .stream()
        .max_messages_per_batch(CHUNK)
        .messages()
        .await
        .expect("the native relay's message stream");
    tokio::spawn(async move {
        let mut chunks = messages.ready_chunks(CHUNK);
        let mut confirms = JoinSet::new();
        while let Some(chunk) = chunks.next().await {
            let mut inputs = Vec::with_capacity(chunk.len());
            let mut acks = Vec::new();
            for message in chunk {
                let Ok(message) = message else { continue };
                let Ok(sequence) = message.info().map(|info| info.stream_sequence) else { continue };
                let mut headers = message.message.headers.clone().unwrap_or_default();
                headers.insert("Nats-Msg-Id", format!("native:IN:{sequence}:0").as_str());
                let payload = message.message.payload.clone();
                match sink {
                    Sink::Core => {
                        if client.publish_with_headers("out", headers, payload).await.is_err() {
                            return;
                        }
                    }
                    Sink::Stream => {
                        let publish = jetstream::message::PublishMessage::build().headers(headers).payload(payload);
                        match js.send_publish("out", publish).await {
                            Ok(ack) => acks.push(ack),
                            Err(_) => return,
                        }
                    }
                }
                inputs.push(message);
            }
            while confirms.len() >= CONFIRMS_IN_FLIGHT {
                confirms.join_next().await;
            }
            let client = client.clone();
            confirms.spawn(async move {
                let confirmed = if acks.is_empty() {
                    client.flush().await.is_ok()
                } else {
                    let mut ok = true;
                    for ack in acks {
                        ok &= ack.await.is_ok();
                    }
                    ok
                };
                // Unconfirmed inputs are left to be redelivered after ack_wait.
                if confirmed {
                    for input in inputs {
                        let _ = input.ack().await;
                    }
                }
            });
        }
    })
}

// ---------------------------------------------------------------- report

fn report(payloads: &[Bytes], results: &[JsResult]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "JetStream on 127.0.0.1 (file storage), {}-byte JSON events; weir: 2 workers, one noop stage. Load average at the end: {}",
        payloads[0].len(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("Throughput: {N} events in stream IN before the relay starts; events/s = outputs / (first output → last output).");
    println!("Latency: {RATE} events/s for {LATENCY_FOR:?} into IN once drained, output arrival − send.");
    println!();
    println!(
        "| case | events/s | machine CPU µs/event | nats-server / weir / bench | drained/N | first output after | p50 ms | p99 ms | max ms | latency delivered | missing / dup / unexpected | consumer left | OUT | slow consumer |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let f2 = |v: f64| if v.is_nan() { "-".to_owned() } else { format!("{v:.2}") };
    for r in results {
        println!(
            "| {} | {:.0} | {} | {} / {} / {} | {}/{N} | {} ms | {:.2} | {:.2} | {:.2} | {}/{} | {} / {} / {} | {} | {} | {} |",
            r.name,
            r.events_per_s,
            f2(r.cpu_us_per_event),
            f2(r.cpu_split[0]),
            f2(r.cpu_split[1]),
            f2(r.cpu_split[2]),
            r.drained,
            r.first_output_after.as_millis(),
            r.percentile_ms(0.5),
            r.percentile_ms(0.99),
            r.percentile_ms(1.0),
            r.latencies.len(),
            r.latency_sent,
            r.missing,
            r.duplicated,
            r.unexpected,
            r.consumer_left.map_or("?".to_owned(), |(p, a)| format!("{p} pending, {a} unacked")),
            r.out_stream.map_or("-".to_owned(), |n| n.to_string()),
            r.slow,
        );
    }
    // Each round is four results: (f) native, (f) weir, (g) native, (g) weir.
    let mut ratios: [Vec<f64>; 4] = Default::default();
    println!();
    println!(
        "| round | (f) weir/native events/s | (f) p99 weir/native | (g) weir/native events/s | (g) p99 weir/native | machine CPU per event weir/native, (f) / (g) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, round) in results.chunks(4).enumerate() {
        let [fa, fb, ga, gb] = round else { continue };
        let r = [
            fb.events_per_s / fa.events_per_s,
            fb.percentile_ms(0.99) / fa.percentile_ms(0.99),
            gb.events_per_s / ga.events_per_s,
            gb.percentile_ms(0.99) / ga.percentile_ms(0.99),
        ];
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} |",
            i + 1,
            r[0],
            r[1],
            r[2],
            r[3],
            fb.cpu_us_per_event / fa.cpu_us_per_event,
            gb.cpu_us_per_event / ga.cpu_us_per_event
        );
        for (all, v) in ratios.iter_mut().zip(r) {
            all.push(v);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [mut ft, mut fp, mut gt, mut gp] = ratios;
    let (ft, fp, gt, gp) = (median(&mut ft), median(&mut fp), median(&mut gt), median(&mut gp));
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!();
    println!("| ratio (median of the rounds) | value | target | |");
    println!("|---|---:|---:|---|");
    println!("| (f) throughput weir/native | {ft:.2} | >= 0.8 | {} |", verdict(ft >= 0.8));
    println!("| (f) p99 at {RATE}/s weir/native | {fp:.2} | <= 1.5 | {} |", verdict(fp <= 1.5));
    println!("| (g) throughput weir/native | {gt:.2} | >= 0.8 | {} |", verdict(gt >= 0.8));
    println!("| (g) p99 at {RATE}/s weir/native | {gp:.2} | <= 1.5 | {} |", verdict(gp <= 1.5));
}
