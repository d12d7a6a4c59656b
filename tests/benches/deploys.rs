//! Memory across deploys (issue 16, "Memory bounded across deploys"): does a
//! `weir run` that is redeployed again and again stay within bounds?
//!
//! A private nats-server on 127.0.0.1 and `weir run` (2 workers) with
//! pipeline `main` (core source `in`, one `json-map` stage loaded from a
//! plugin file, sink `out`). A publisher sends a steady 20k events/s to
//! `in`, each with a sequence number in a header; a consumer of `out` counts
//! every sequence and notes the `weir-version` of each output. Then:
//!
//! (i) [`REPLACEMENTS`] replacements of the plugin file, each with a
//!     distinct build (json-map with a custom section of its own appended:
//!     still a valid component, but other bytes, so weir compiles it anew and
//!     gives the pipeline a new version); after each, the bench waits until
//!     outputs of the new version arrive;
//! (ii) [`CYCLES`] add/remove cycles of a second pipeline file (`second`:
//!     `in2` through `noop` to `out2`, 100 events/s), waiting after an add for
//!     its first output and after a removal for weir's log line that it
//!     drained and stopped.
//!
//! weir's resident set size (VmRSS) is taken after each change; the curve is
//! printed every tenth change, with the ratio RSS at the end / RSS after the
//! first 10 changes (goal ≤ 1.2). weir runs with `cache_size = "64MiB"`, so
//! its disk cache must evict along the way. At the end the publisher stops
//! and every sequence published to `in` must have come out on `out` exactly
//! once: the run fails (after printing) if not.
//!
//! Run with `cargo bench -p weir-tests --bench deploys`;
//! `WEIR_DEPLOYS_REPLACEMENTS` and `WEIR_DEPLOYS_CYCLES` change the counts.
//! Every wait is bounded; a watchdog ends the run after [`WATCHDOG`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use futures::StreamExt as _;
use weir_tests::bench::{rss_kib, start_watchdog_after};
use weir_tests::harness::{NatsServer, TempDir, Weir, order, toml_str, weir_binary};
use weir_tests::plugins;

/// Events per second to `in`.
const RATE: u64 = 20_000;
/// Plugin replacements, and add/remove cycles of the second pipeline.
const REPLACEMENTS: usize = 300;
const CYCLES: usize = 100;
/// The most one change may take to show.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The header carrying each event's sequence number.
const SEQ_HEADER: &str = "bench-seq";
/// What weir logs when it swapped `main` to a new version, started the
/// second pipeline, and began to stop it; and at the end of every reload
/// (after unused compiled code is released).
const SWAPPED: &str = "swapped to the new version";
const STARTED: &str = "started pipeline=second";
const STOPPED: &str = "draining and stopping pipeline=second";
const RELOADED: &str = "reloaded: in";
/// The whole run's bound.
const WATCHDOG: Duration = Duration::from_secs(1200);

/// What the consumer saw.
#[derive(Default)]
struct Seen {
    /// How often each sequence came out on `out` (index = sequence).
    counts: Vec<u8>,
    /// Outputs on `out` without a sequence.
    unexpected: usize,
    /// The versions of `main` in the order they first came out.
    versions: Vec<String>,
    /// Outputs on `out2` (the second pipeline).
    second: usize,
    /// When the last output on `out` came.
    last: Option<Instant>,
}

/// One change and what followed it.
struct Change {
    what: &'static str,
    /// From the file change to the outcome it waits for.
    live: Duration,
    rss_kib: u64,
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let started = Instant::now();
    let bin = weir_binary();
    eprintln!("[deploys] weir binary {} ready after {:.1?}", bin.display(), started.elapsed());
    start_watchdog_after(WATCHDOG);
    let replacements = env_count("WEIR_DEPLOYS_REPLACEMENTS", REPLACEMENTS);
    let cycles = env_count("WEIR_DEPLOYS_CYCLES", CYCLES);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let server = NatsServer::new();
    let files = TempDir::new("weir-deploys-bench");
    let plugin = files.path().join("map.wasm");
    let base = std::fs::read(plugins::JSON_MAP).expect("read json-map");
    std::fs::write(&plugin, build_variant(&base, 0)).expect("write the plugin");
    let noop = files.path().join("noop.wasm");
    std::fs::copy(plugins::NOOP, &noop).expect("copy noop");

    let weir = Weir::builder(&server)
        .label("bench")
        .workers(2)
        .global_line("cache_size = \"64MiB\"")
        .pipeline("main.toml", &main_pipeline(&plugin))
        .start();
    let pid = weir.pid();
    let second_file = weir.pipelines_dir().join("second.toml");
    let cache_dir = weir.dir().join("cache");

    // The consumer and the publisher.
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = runtime.block_on(async {
        let client = server.client().await;
        let mut out = client.subscribe("out").await.expect("subscribe to out");
        let mut out2 = client.subscribe("out2").await.expect("subscribe to out2");
        client.flush().await.expect("flush");
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (message, main) = tokio::select! {
                    m = out.next() => (m, true),
                    m = out2.next() => (m, false),
                };
                let Some(message) = message else { break };
                let mut guard = record.lock().expect("lock");
                let seen = &mut *guard;
                if !main {
                    seen.second += 1;
                    continue;
                }
                seen.last = Some(Instant::now());
                let headers = message.headers.as_ref();
                match headers.and_then(|h| h.get(SEQ_HEADER)).and_then(|v| v.as_str().parse::<usize>().ok()) {
                    Some(seq) => {
                        if seq >= seen.counts.len() {
                            seen.counts.resize((seq + 1).max(seen.counts.len() * 2), 0);
                        }
                        seen.counts[seq] = seen.counts[seq].saturating_add(1);
                    }
                    None => seen.unexpected += 1,
                }
                if let Some(version) = headers.and_then(|h| h.get("weir-version")).map(|v| v.as_str())
                    && seen.versions.last().is_none_or(|last| last != version)
                    && !seen.versions.iter().any(|v| v == version)
                {
                    seen.versions.push(version.to_owned());
                }
            }
        });
        client
    });
    let halt = stop.clone();
    let publisher = runtime.spawn(async move {
        let payload: bytes::Bytes = serde_json::to_vec(&order(1)).expect("json").into();
        let start = Instant::now();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while !halt.load(Ordering::Relaxed) {
            tick.tick().await;
            let due = start.elapsed().as_nanos() as u64 * RATE / 1_000_000_000;
            while sent < due {
                let mut headers = HeaderMap::new();
                headers.insert(SEQ_HEADER, sent.to_string().as_str());
                if client.publish_with_headers("in", headers, payload.clone()).await.is_err() {
                    return sent;
                }
                if sent.is_multiple_of(200) {
                    let _ = client.publish("in2", payload.clone()).await;
                }
                sent += 1;
            }
        }
        let _ = client.flush().await;
        sent
    });

    // Steady state first.
    let initial_version = wait_for(&seen, CHANGE_TIMEOUT, |s| s.versions.first().cloned()).expect("no output from weir at all");
    std::thread::sleep(Duration::from_secs(2));
    let rss_start = rss_kib(pid).unwrap_or(0);
    eprintln!("[deploys] steady at {RATE} events/s, version {initial_version}, RSS {} MiB", rss_start / 1024);

    let mut changes: Vec<Change> = Vec::new();
    let mut failure = None;
    let rss = || rss_kib(pid).unwrap_or(0);

    // (i) Plugin replacements.
    for i in 1..=replacements {
        let versions_before = seen.lock().expect("lock").versions.len();
        let swaps_before = weir.stderr().matches(SWAPPED).count();
        let tmp = files.path().join("map.wasm.tmp");
        std::fs::write(&tmp, build_variant(&base, i)).expect("write the new build");
        let written = Instant::now();
        std::fs::rename(&tmp, &plugin).expect("replace the plugin");
        if wait_for(&seen, CHANGE_TIMEOUT, |s| (s.versions.len() > versions_before).then_some(())).is_none() {
            failure = Some(format!("replacement {i}: no output of a new version within {CHANGE_TIMEOUT:?}"));
            break;
        }
        let live = written.elapsed();
        if !weir.wait_for_stderr(CHANGE_TIMEOUT, |text| applied(text, SWAPPED, swaps_before)) {
            failure = Some(format!("replacement {i}: weir did not finish the reload within {CHANGE_TIMEOUT:?}"));
            break;
        }
        changes.push(Change { what: "plugin replaced", live, rss_kib: rss() });
        if i % 50 == 0 {
            eprintln!("[deploys] {i} replacements, RSS {} MiB", rss() / 1024);
        }
    }

    // (ii) Add/remove cycles of a second pipeline file.
    if failure.is_none() {
        for cycle in 1..=cycles {
            let outputs_before = seen.lock().expect("lock").second;
            let starts_before = weir.stderr().matches(STARTED).count();
            let written = Instant::now();
            std::fs::write(&second_file, second_pipeline(&noop)).expect("write the second pipeline");
            if wait_for(&seen, CHANGE_TIMEOUT, |s| (s.second > outputs_before).then_some(())).is_none() {
                failure = Some(format!("cycle {cycle}: the second pipeline gave no output within {CHANGE_TIMEOUT:?}"));
                break;
            }
            let live = written.elapsed();
            if !weir.wait_for_stderr(CHANGE_TIMEOUT, |text| applied(text, STARTED, starts_before)) {
                failure = Some(format!("cycle {cycle}: weir did not finish adding the second pipeline within {CHANGE_TIMEOUT:?}"));
                break;
            }
            changes.push(Change { what: "pipeline added", live, rss_kib: rss() });

            let stops_before = weir.stderr().matches(STOPPED).count();
            let written = Instant::now();
            std::fs::remove_file(&second_file).expect("remove the second pipeline");
            if !weir.wait_for_stderr(CHANGE_TIMEOUT, |text| applied(text, STOPPED, stops_before)) {
                failure = Some(format!("cycle {cycle}: the second pipeline was not stopped within {CHANGE_TIMEOUT:?}"));
                break;
            }
            changes.push(Change { what: "pipeline removed", live: written.elapsed(), rss_kib: rss() });
            if cycle % 25 == 0 {
                eprintln!("[deploys] {cycle} add/remove cycles, RSS {} MiB", rss() / 1024);
            }
        }
    }

    // Settle, then account for every event.
    std::thread::sleep(Duration::from_secs(2));
    let rss_settled = rss();
    stop.store(true, Ordering::Relaxed);
    let published = runtime.block_on(publisher).expect("the publisher") as usize;
    let quiet = Duration::from_secs(2);
    let _ = wait_for(&seen, Duration::from_secs(30), |s| s.last.is_some_and(|t| t.elapsed() >= quiet).then_some(()));
    let cache_bytes = dir_size(&cache_dir);
    let slow_consumers = server.logs().matches("Slow Consumer").count();
    let seen = seen.lock().expect("lock");
    let count = |i: usize| seen.counts.get(i).copied().unwrap_or(0);
    let missing = (0..published).filter(|&i| count(i) == 0).count();
    let duplicated = (0..published).filter(|&i| count(i) > 1).count();
    let beyond = seen.counts.iter().skip(published).filter(|&&c| c > 0).count();
    drop(weir);

    report(&changes, replacements, rss_start, rss_settled, cache_bytes, started.elapsed());
    println!();
    println!(
        "events: {published} published to `in`, {missing} missing, {duplicated} duplicated, {} unexpected on `out`; versions of `main` seen: {}; outputs of `second`: {}; slow-consumer lines in nats-server's log: {slow_consumers}",
        seen.unexpected + beyond,
        seen.versions.len(),
        seen.second,
    );
    if let Some(failure) = &failure {
        println!("stopped early: {failure}");
    }
    assert!(failure.is_none(), "{}", failure.unwrap_or_default());
    assert!(
        missing == 0 && duplicated == 0 && seen.unexpected + beyond == 0,
        "events not accounted for: {missing} missing, {duplicated} duplicated, {} unexpected",
        seen.unexpected + beyond
    );
}

fn main_pipeline(plugin: &Path) -> String {
    format!(
        "name = \"main\"\n[source]\nsubject = \"in\"\n[[stages]]\nname = \"map\"\nplugin = {}\nconfig = {{ set = {{ deployed = true }} }}\n[sink]\nsubject = \"out\"\n",
        toml_str(&plugin.display().to_string())
    )
}

fn second_pipeline(plugin: &Path) -> String {
    format!(
        "name = \"second\"\n[source]\nsubject = \"in2\"\n[[stages]]\nname = \"noop\"\nplugin = {}\n[sink]\nsubject = \"out2\"\n",
        toml_str(&plugin.display().to_string())
    )
}

/// `base` (a component) with a custom section `weir-bench-build` holding `n`
/// appended: a valid component with other bytes, a distinct build for weir.
fn build_variant(base: &[u8], n: usize) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"weir-bench-build";
    let data = n.to_string();
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(data.as_bytes());
    let mut out = base.to_vec();
    out.push(0); // a custom section
    leb128(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// Whether weir's log shows more than `before` lines with `marker`, and the
/// end of the reload after the last of them.
fn applied(log: &str, marker: &str, before: usize) -> bool {
    log.matches(marker).count() > before && log.rfind(marker).is_some_and(|at| log[at..].contains(RELOADED))
}

/// Polls `probe` on what the consumer saw every 2 ms until it gives a value,
/// or `None` after `timeout`.
fn wait_for<T>(seen: &Mutex<Seen>, timeout: Duration, probe: impl Fn(&Seen) -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe(&seen.lock().expect("lock")) {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The bytes of the files in `dir` and its subdirectories.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn report(changes: &[Change], replacements: usize, rss_start: u64, rss_settled: u64, cache_bytes: u64, elapsed: Duration) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "weir run, 2 workers, core source at {RATE} events/s; {} changes in {:.0?}; load average at the end: {}",
        changes.len(),
        elapsed,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!("| after change | what | RSS MiB | live after (ms): the change's first outputs, or its stop |");
    println!("|---:|---|---:|---:|");
    println!("| 0 | steady state before any change | {:.1} | |", mib(rss_start));
    for (i, change) in changes.iter().enumerate() {
        let n = i + 1;
        if n % 10 == 0 || n == changes.len() || n == 1 {
            println!("| {n} | {} | {:.1} | {} |", change.what, mib(change.rss_kib), change.live.as_millis());
        }
    }
    println!("| end | 2 s after the last change | {:.1} | |", mib(rss_settled));
    let mut by_kind: Vec<(&str, Vec<Duration>)> = Vec::new();
    for change in changes {
        match by_kind.iter_mut().find(|(what, _)| *what == change.what) {
            Some((_, lives)) => lives.push(change.live),
            None => by_kind.push((change.what, vec![change.live])),
        }
    }
    println!();
    for (what, mut lives) in by_kind {
        lives.sort();
        println!(
            "{what}: {} times, live after median {} ms, max {} ms",
            lives.len(),
            lives[lives.len() / 2].as_millis(),
            lives[lives.len() - 1].as_millis()
        );
    }
    if let Some(tenth) = changes.get(9) {
        let peak = changes.iter().map(|c| c.rss_kib).max().unwrap_or(0);
        let ratio = rss_settled as f64 / tenth.rss_kib as f64;
        println!();
        println!(
            "RSS: {:.1} MiB before any change, {:.1} after 10 changes, peak {:.1}, {:.1} at the end; end / after 10 changes = {ratio:.2} (goal <= 1.2: {}); the disk cache holds {:.1} MiB (cache_size 64 MiB)",
            mib(rss_start),
            mib(tenth.rss_kib),
            mib(peak),
            mib(rss_settled),
            if ratio <= 1.2 { "met" } else { "NOT met" },
            cache_bytes as f64 / (1024.0 * 1024.0)
        );
        if let Some(last_replacement) = changes.get(replacements.saturating_sub(1)).filter(|_| replacements > 10) {
            println!(
                "after the {replacements} plugin replacements alone: {:.1} MiB, {:.2} × RSS after 10 changes",
                mib(last_replacement.rss_kib),
                last_replacement.rss_kib as f64 / tenth.rss_kib as f64
            );
        }
    }
}
