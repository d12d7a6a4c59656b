//! Hot reload, measured: how long from a file change to the first event
//! processed by the new version, and what a reload does to throughput.
//!
//! A real nats-server and `weir run` (2 workers, core source); a publisher
//! sends a steady 20k events/s; the consumer records when each output
//! arrives and which `weir-version` made it. Five TOML-only changes (a
//! json-map `set` value) and five plugin changes (the plugin file swapped
//! between two builds) are timed. Live time = first output of the new
//! version − file write − the watcher's debounce.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use weir::reload::DEBOUNCE;
use weir_tests::harness::{NatsServer, TempDir, Weir, order, toml_str};
use weir_tests::plugins;

const RATE: u64 = 20_000;
const WINDOW: Duration = Duration::from_millis(100);

/// (arrival, version) of every output.
type Seen = Arc<Mutex<Vec<(Instant, String)>>>;

fn pipeline(plugin: &Path, generation: u64) -> String {
    format!(
        "name = \"hot\"\n[source]\nsubject = \"in\"\n[[stages]]\nname = \"map\"\nplugin = {}\nconfig = {{ set = {{ gen = {generation} }} }}\n[sink]\nsubject = \"out\"\n",
        toml_str(&plugin.display().to_string())
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let server = NatsServer::new();
    let plugin_dir = TempDir::new("weir-reload-bench");
    let plugin = plugin_dir.path().join("map.wasm");
    std::fs::copy(plugins::JSON_MAP, &plugin).expect("copy the plugin");
    let weir = Weir::builder(&server).label("bench").workers(2).pipeline("hot.toml", &pipeline(&plugin, 0)).start();
    let pipeline_file = weir.pipelines_dir().join("hot.toml");

    let seen: Seen = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    runtime.block_on(async {
        let client = server.client().await;
        let mut out = client.subscribe("out").await.expect("subscribe");
        client.flush().await.expect("flush");
        let record = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = out.next().await {
                let version = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("weir-version"))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                record.lock().expect("lock").push((Instant::now(), version));
            }
        });
        let publisher = client.clone();
        let halt = stop.clone();
        tokio::spawn(async move {
            let payload = serde_json::to_vec(&order(1)).expect("json");
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..RATE / 1000 {
                    let _ = publisher.publish("in", payload.clone().into()).await;
                }
            }
        });
    });
    // Steady state first.
    std::thread::sleep(Duration::from_secs(2));

    let mut toml_live = Vec::new();
    let mut plugin_live = Vec::new();
    let mut dips = Vec::new();
    for round in 1..=10u64 {
        let plugin_change = round > 5;
        let before = current_version(&seen);
        let written = Instant::now();
        if plugin_change {
            // A new build of the plugin, copied over the one in use.
            let build = if round % 2 == 0 { plugins::NOOP } else { plugins::JSON_MAP };
            let tmp = plugin_dir.path().join("map.wasm.tmp");
            std::fs::copy(build, &tmp).expect("copy the new build");
            std::fs::rename(&tmp, &plugin).expect("replace the plugin");
        } else {
            std::fs::write(&pipeline_file, pipeline(&plugin, round)).expect("write the pipeline");
        }
        let first = wait_new_version(&seen, &before, written);
        let live = first.saturating_duration_since(written).saturating_sub(DEBOUNCE);
        if plugin_change {
            plugin_live.push(live)
        } else {
            toml_live.push(live)
        }
        std::thread::sleep(Duration::from_millis(1500));
        dips.push(dip(&seen, written));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(weir);

    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (tm, tx) = (median(&mut toml_live), *toml_live.iter().max().expect("rounds"));
    let (pm, px) = (median(&mut plugin_live), *plugin_live.iter().max().expect("rounds"));
    let worst = dips.iter().cloned().fold(0.0_f64, f64::max);
    println!("hot reload: core source at {RATE} events/s, 2 workers, debounce {} ms", DEBOUNCE.as_millis());
    println!();
    println!("| change | live after debounce: median | max |");
    println!("|---|---:|---:|");
    println!("| TOML only (json-map config) | {:.0} ms | {:.0} ms |", ms(&tm), ms(&tx));
    println!("| plugin file replaced | {:.0} ms | {:.0} ms |", ms(&pm), ms(&px));
    println!();
    println!(
        "throughput in {} ms windows during the second after each change, worst dip below the steady median: {:.0}%",
        WINDOW.as_millis(),
        worst * 100.0
    );
    println!(
        "targets: TOML-only change live in <= 100 ms after the debounce: {}; dip <= 20% for at most a second: {}",
        if tx <= Duration::from_millis(100) { "met" } else { "NOT met" },
        if worst <= 0.2 { "met" } else { "NOT met" }
    );
}

fn current_version(seen: &Seen) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((_, v)) = seen.lock().expect("lock").last() {
            return v.clone();
        }
        assert!(Instant::now() < deadline, "no output at all: is weir running?");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// When the first output of a version other than `old` arrived after `since`.
fn wait_new_version(seen: &Seen, old: &str, since: Instant) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((t, _)) = seen.lock().expect("lock").iter().find(|(t, v)| *t >= since && v != old) {
            return *t;
        }
        assert!(Instant::now() < deadline, "the new version never went live");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The deepest drop of any window in the second after `change`, relative to
/// the median window of the second before it (0 = no dip).
fn dip(seen: &Seen, change: Instant) -> f64 {
    let seen = seen.lock().expect("lock");
    let count = |from: Instant| seen.iter().filter(|(t, _)| *t >= from && *t < from + WINDOW).count() as f64;
    let mut before: Vec<f64> = (1..=10).map(|i| count(change - WINDOW * i)).collect();
    before.sort_by(f64::total_cmp);
    let steady = before[before.len() / 2].max(1.0);
    (0..10).map(|i| count(change + WINDOW * i)).map(|n| 1.0 - n / steady).fold(0.0, f64::max)
}
