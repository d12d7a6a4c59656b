//! End-to-end relay benchmark over core NATS on one machine (issue 3,
//! "Benchmark"): 300-byte JSON events, one publisher, one consumer of the
//! output subject, a private `nats-server` on 127.0.0.1.
//!
//! (a) a native Rust relay in this process: subscribe to `in`, republish to
//!     `out` (the ceiling);
//! (a2) for orientation, (a) adding the two headers weir adds to outputs;
//! (b) `weir run` with one `noop` stage;
//! (b2) for orientation, (b) with `[sink] stamp = false` (no headers added);
//! (c) `weir run` with `filter` + `json-map` + `router` (all events pass,
//!     routed to `out.<country>`);
//! (d) a native relay doing the work of (c) in this process.
//!
//! For each: throughput (publish N events as fast as possible; events/s =
//! delivered / time from the first publish to the last arrival) and latency
//! at a fixed 20k events/s for 3 s (p50 / p99 / max of arrival - send).
//! Prints a markdown table and the ratios against the issue's targets.
//!
//! Throughput runs also report the CPU time the whole machine spent per
//! event (nats-server, weir and this process together): on 2 cores that
//! total is what bounds a relay, and it is steadier than events/s. It is
//! split by process: nats-server, `weir run`, and this bench (publisher,
//! consumer, and the native relays, which run in it). (b) - (b2) then says
//! who pays for weir's two headers: mostly the consumer, whose async-nats
//! client parses them into a map for every message.
//!
//! Run with `cargo bench -p weir-tests --bench relay`;
//! `WEIR_RELAY_PAIRS=3` runs only (a), (a2), (b) and (b2), three times in
//! turn, to compare two builds of weir (`WEIR_BIN`). Every wait is bounded,
//! and a watchdog ends the run (and the processes it started) after
//! `WATCHDOG` in case something still hangs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;
use weir_tests::bench::*;
use weir_tests::harness::{NatsServer, Weir, toml_str, weir_binary};
use weir_tests::plugins;

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
    let payloads = relay_payloads();
    eprintln!("[relay] payload size: {} bytes", payloads[0].len());

    // WEIR_RELAY_PAIRS=N: only (a), (a2), (b) and (b2), N rounds in turn,
    // for comparing two builds of weir without the rest of the run.
    if let Some(rounds) = std::env::var("WEIR_RELAY_PAIRS").ok().and_then(|n| n.parse::<usize>().ok()) {
        let mut cases = Vec::new();
        for _ in 0..rounds {
            cases.push(native_relay(&runtime, &payloads));
            cases.push(native_stamping_relay(&runtime, &payloads));
            cases.push(weir_noop(&runtime, &payloads));
            cases.push(weir_noop_unstamped(&runtime, &payloads));
        }
        print_cases(&cases.iter().collect::<Vec<_>>());
        for round in cases.chunks(4) {
            let [a, a2, b, b2] = round else { unreachable!("four cases a round") };
            println!(
                "(b)/(a) {:.2} (machine CPU per event {:.2}); (a2)/(a) {:.2} ({:.2}); (b)/(a2) {:.2}; (b2)/(a) {:.2} ({:.2})",
                b.events_per_s / a.events_per_s,
                b.cpu_us_per_event / a.cpu_us_per_event,
                a2.events_per_s / a.events_per_s,
                a2.cpu_us_per_event / a.cpu_us_per_event,
                b.events_per_s / a2.events_per_s,
                b2.events_per_s / a.events_per_s,
                b2.cpu_us_per_event / a.cpu_us_per_event,
            );
            println!("  what the two headers cost, (b) - (b2), µs of CPU per event: {}", header_cost(b, b2));
        }
        return;
    }

    let a = native_relay(&runtime, &payloads);
    let a2 = native_stamping_relay(&runtime, &payloads);
    let b = weir_noop(&runtime, &payloads);
    let b2 = weir_noop_unstamped(&runtime, &payloads);
    let c = weir_chain(&runtime, &payloads);
    let d = native_chain(&runtime, &payloads);
    // Observability's cost: the same chain with metrics on (Prometheus
    // endpoint served, stage calls timed); (c) runs with them off.
    let e = weir_chain_metered(&runtime, &payloads);
    print_report(&payloads, &[&a, &a2, &b, &b2, &c, &d, &e]);

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
    plain_relay(runtime, "(a) native relay", &[], payloads)
}

/// (a2) For orientation: (a), adding to every output the two headers weir
/// adds (`weir-pipeline`, and `weir-version` with a value as long as weir's),
/// which nats-server and the consumer then parse too.
fn native_stamping_relay(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    const STAMP: [(&str, &str); 2] = [("weir-pipeline", "relay"), ("weir-version", "0123456789ab")];
    plain_relay(runtime, "(a2) native relay adding two headers", &STAMP, payloads)
}

/// A native relay from `in` to `out` that adds the headers of `stamp`.
fn plain_relay(runtime: &tokio::runtime::Runtime, name: &str, stamp: &[(&'static str, &'static str)], payloads: &[Bytes]) -> CaseResult {
    let server = NatsServer::new();
    runtime.block_on(async {
        let relay = spawn_stamping_relay(&server, "in", stamp, |message| Some((Subject::from_static("out"), message.payload.clone()))).await;
        let result = measure(name, &server, None, "in", "out", payloads).await;
        relay.abort();
        result
    })
}

/// (b) `weir run` with one `noop` stage, default batch size.
fn weir_noop(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    run_weir(runtime, "(b) weir noop", &noop_pipeline(""), "out", payloads)
}

/// (b2) For orientation: (b) with `[sink] stamp = false`, the outputs
/// without `weir-pipeline` and `weir-version`: the counterpart of (a2).
fn weir_noop_unstamped(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    run_weir(runtime, "(b2) weir noop, stamp = false", &noop_pipeline("stamp = false\n"), "out", payloads)
}

/// One `noop` stage from `in` to `out`; `sink_extra` is added to `[sink]`.
fn noop_pipeline(sink_extra: &str) -> String {
    format!(
        "name = \"relay\"\n\n[source]\nsubject = \"in\"\n\n[[stages]]\nname = \"noop\"\nplugin = {}\n\n[sink]\nsubject = \"out\"\n{sink_extra}",
        toml_str(plugins::NOOP)
    )
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
        let relay = spawn_relay(&server, "in", move |message| {
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
        let result = measure("(d) native filter+map+router", &server, None, "in", "out.>", payloads).await;
        relay.abort();
        result
    })
}

/// A fresh server and a fresh `weir run` (2 workers) for one pipeline;
/// measures, then stops weir with SIGINT and a bounded wait.
fn run_weir(runtime: &tokio::runtime::Runtime, name: &str, pipeline: &str, out: &str, payloads: &[Bytes]) -> CaseResult {
    run_weir_with(runtime, name, pipeline, out, payloads, false)
}

fn run_weir_with(runtime: &tokio::runtime::Runtime, name: &str, pipeline: &str, out: &str, payloads: &[Bytes], metrics: bool) -> CaseResult {
    let server = NatsServer::new();
    // Blocking calls (start, wait_exit) stay outside the runtime.
    let mut builder = Weir::builder(&server).label("bench").workers(2).pipeline("relay.toml", pipeline);
    if metrics {
        builder = builder.metrics(&format!("127.0.0.1:{}", weir_tests::harness::free_port()));
    }
    let mut weir = builder.start();
    let result = runtime.block_on(measure(name, &server, Some(weir.pid()), "in", out, payloads));
    weir.interrupt();
    let status = weir.wait_exit(Duration::from_secs(15));
    if !status.success() {
        eprintln!("[relay] {name}: weir exited with {status}");
    }
    result
}

// ---------------------------------------------------------------- report

/// Where the CPU that weir's two headers cost goes, from the difference
/// between `stamped` and `unstamped` (the same weir pipeline without them):
/// nats-server, weir and this bench, whose consumer parses the headers.
fn header_cost(stamped: &CaseResult, unstamped: &CaseResult) -> String {
    let (s, u) = (stamped.cpu_by_process, unstamped.cpu_by_process);
    format!(
        "nats-server {:+.2}, weir {:+.2}, the bench's consumer {:+.2}; the machine {:+.2}",
        s.server - u.server,
        s.weir - u.weir,
        s.bench - u.bench,
        stamped.cpu_us_per_event - unstamped.cpu_us_per_event
    )
}

fn print_report(payloads: &[Bytes], cases: &[&CaseResult]) {
    let [a, a2, b, b2, c, d, e] = cases else { unreachable!("seven cases") };
    println!();
    println!(
        "Core NATS on 127.0.0.1, {}-byte JSON events, 1 publisher, 1 consumer; weir: 2 workers, default batch size.",
        payloads[0].len()
    );
    println!("Throughput: {N} events published as fast as possible; events/s = delivered / (first publish → last arrival).");
    println!("Latency: {LATENCY_RATE} events/s for {LATENCY_FOR:?}, arrival − send.");
    println!();
    print_cases(cases);
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
    println!("| machine CPU per event, (b)/(a) | {:.2} | | for orientation |", b.cpu_us_per_event / a.cpu_us_per_event);
    println!(
        "| (a2)/(a) throughput: the cost of weir's two headers alone | {:.2} | | for orientation |",
        a2.events_per_s / a.events_per_s
    );
    println!(
        "| (b)/(a2) throughput: weir against a native relay adding the same headers | {:.2} | | for orientation |",
        b.events_per_s / a2.events_per_s
    );
    println!(
        "| (b2)/(a) throughput: weir without the two headers (`stamp = false`) | {:.2} | | for orientation |",
        b2.events_per_s / a.events_per_s
    );
    println!("| what the two headers cost, (b) - (b2), µs of CPU per event: {} | | | for orientation |", header_cost(b, b2));
    println!("| machine CPU per event, (c)/(d) | {:.2} | | for orientation |", c.cpu_us_per_event / d.cpu_us_per_event);
    let cost = 1.0 - e.events_per_s / c.events_per_s;
    println!("| metrics cost: 1 - (e)/(c) throughput | {:.1}% | <= 5% | {} |", cost * 100.0, verdict(cost <= 0.05));
    print_losses(cases);
}
