//! The same stage in Rust, Python and JavaScript (issue 18, "Benchmark"):
//! json-map's work (parse a ~300-byte JSON event, add two fields,
//! serialise), each language against the same code run natively.
//!
//! Part 1, the chain in this process, no NATS (as `benches/chain.rs`), batch
//! 64, default limits:
//! - Rust: `plugins/json-map` with `set = { processed_by = "weir", score =
//!   0.87 }`; Python: `languages/py/app.py`; JavaScript:
//!   `languages/js/stage.js` (both written with the SDKs, built by
//!   `weir build`);
//! - ns per event through `Blueprint::build` + `Chain::process`: the best
//!   and the mean of the rounds (the mean includes the chain's replacing a
//!   Python or JavaScript instance when its memory fills up, which the best
//!   round may miss);
//! - instance memory: a separate instance (memory limit raised so that it is
//!   never replaced) after `init`, after one pass over the events and after
//!   `MEMORY_PASSES`, and what it grows by per event in the later passes;
//! - first start (a new Engine with an empty cache directory: compile,
//!   instantiate, `init`) and cached start (a new Engine on the warm cache
//!   directory: load the compiled code, instantiate, `init`), both as
//!   `Blueprint::build` reports them;
//! - beside each, the same code natively: the plugin crate's own code
//!   (Rust), CPython through `weir_stage.testing` (`languages/native.py`),
//!   node through `weir-stage/testing` (`languages/native.mjs`), timed in
//!   the script over the same events.
//!
//! Part 2, through NATS (as `benches/relay.rs`, throughput only): `weir run`
//! with the Python stage (core source → stage → core sink, 2 workers)
//! against a hand-written nats-py relay doing the same work
//! (`languages/relay.py`), and the JavaScript stage against one written with
//! nats.js (`languages/relay.mjs`): events/s drained and the ratio.
//!
//! Needs the toolchains of `./dev setup` (a language whose toolchain is
//! missing is skipped with a line that says so); installs nats-py into the
//! Python toolchain's venv and the `nats` npm package into
//! `~/.cache/weir/bench-node` when they are missing. Run with
//! `cargo bench -p weir-tests --bench languages` (`WEIR_BIN` to use a given
//! weir binary for `weir build` and `weir run`). Every wait is bounded and a
//! watchdog ends the run after `WATCHDOG`.

// The weir binary's allocator, for weir and the native Rust baseline alike.
#[global_allocator]
static ALLOCATOR: weir::Allocator = weir::ALLOCATOR;

use std::hint::black_box;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use weir::config;
use weir::engine::{Engine, EngineOptions, Origin};
use weir::event::Event;
use weir::pipeline::{Blueprint, Outcome};
use weir_tests::bench::*;
use weir_tests::harness::{NatsServer, Weir, repo_root, toml_str, weir_binary};
use weir_tests::plugins;

const BATCH: usize = 64;
/// Events per round of the chain runs; the best and the mean of `ROUNDS`
/// rounds (after one warm-up round) are reported.
const EVENTS: usize = 64 * 256;
const ROUNDS: usize = 5;
/// Passes over the events of the memory measurement.
const MEMORY_PASSES: usize = 4;
/// Cached starts measured per language (each with a new Engine); the median
/// is reported.
const CACHED_STARTS: usize = 5;
/// Events per throughput run through NATS.
const RELAY_EVENTS: usize = 100_000;
/// How long the whole bench may run, builds excluded.
const WATCHDOG: Duration = Duration::from_secs(480);
/// How long a native relay may take to say `ready`.
const RELAY_READY: Duration = Duration::from_secs(30);

const SUBJECT: &str = "tracking.product.viewed";
const CONFIG_TOML: &str = r#"{ set = { processed_by = "weir", score = 0.87 } }"#;
const CONFIG_JSON: &str = r#"{"set":{"processed_by":"weir","score":0.87}}"#;
const FIELDS_JSON: &str = r#"{"processed_by":"weir","score":0.87}"#;

/// The issue's goals.
const GOAL_PY_NS: f64 = 25_000.0;
const GOAL_JS_NS: f64 = 25_000.0;
const GOAL_CACHED_START: Duration = Duration::from_millis(100);

/// The event of `benches/chain.rs`: about 300 bytes of JSON.
fn payload(i: usize) -> String {
    format!(
        r#"{{"id":{i},"type":"product.viewed","user":{{"id":"u-{:05}","segment":"returning","country":"DE"}},"product":{{"sku":"SKU-{:06}","title":"Slim fit organic cotton shirt","brand":"Northwind","price":49.95,"currency":"EUR"}},"ts":"2026-11-26T10:15:{:02}Z","ua":"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}}"#,
        i % 100_000,
        i % 1_000_000,
        i % 60
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

/// A stage component ready to load.
struct Stage {
    lang: Lang,
    wasm: PathBuf,
    /// How long `weir build` took; `None` when an earlier build was fresh
    /// (or for Rust, built by `tests/build.rs`).
    build: Option<Duration>,
}

/// Where things are: this checkout, the toolchains, the bench's scratch.
struct Setup {
    root: PathBuf,
    scratch: PathBuf,
    py_toolchain: PathBuf,
    js_toolchain: PathBuf,
    bench_node: PathBuf,
    events_file: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weir");
        let dir = |var: &str, name: &str| std::env::var_os(var).map_or_else(|| home.join(name), PathBuf::from);
        let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("languages");
        std::fs::create_dir_all(&scratch).expect("create the bench's scratch directory");
        let events_file = scratch.join("events.txt");
        let lines: String = (0..EVENTS).map(|i| payload(i) + "\n").collect();
        std::fs::write(&events_file, lines).expect("write the events file");
        Setup {
            root: repo_root(),
            scratch,
            py_toolchain: dir("WEIR_PY_TOOLCHAIN", "py-toolchain"),
            js_toolchain: dir("WEIR_JS_TOOLCHAIN", "js-toolchain"),
            bench_node: home.join("bench-node"),
            events_file,
        }
    }

    fn bench_dir(&self) -> PathBuf {
        self.root.join("tests/benches/languages")
    }

    fn python(&self) -> PathBuf {
        self.py_toolchain.join("bin/python")
    }

    /// A scratch directory for node: the stage and the bench's scripts,
    /// with `node_modules/weir-stage` linked to this checkout's SDK and
    /// `node_modules/nats` to the installed nats.js (if it is).
    fn node_dir(&self) -> PathBuf {
        let dir = self.scratch.join("node");
        let modules = dir.join("node_modules");
        std::fs::create_dir_all(&modules).expect("create the node scratch directory");
        for (from, to) in [
            (self.bench_dir().join("js/stage.js"), dir.join("stage.js")),
            (self.bench_dir().join("native.mjs"), dir.join("native.mjs")),
            (self.bench_dir().join("relay.mjs"), dir.join("relay.mjs")),
        ] {
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        }
        let link = |target: PathBuf, name: &str| {
            let at = modules.join(name);
            let _ = std::fs::remove_file(&at);
            std::os::unix::fs::symlink(target, &at).unwrap_or_else(|e| panic!("link {}: {e}", at.display()));
        };
        link(self.root.join("sdk/js"), "weir-stage");
        link(self.bench_node.join("node_modules/nats"), "nats");
        dir
    }
}

fn main() {
    // SAFETY: single-threaded at this point, before any other thread starts.
    unsafe { std::env::set_var("RUST_BACKTRACE", "0") };
    let setup = Setup::new();
    let bin = weir_binary();
    println!("languages benchmark: json-map in Rust, Python and JavaScript; weir binary {}", bin.display());
    println!("load before the builds: {}", load_average());
    // Builds before the watchdog starts: they may take a minute on a busy machine.
    let mut stages = vec![Stage { lang: Lang::Rust, wasm: PathBuf::from(plugins::JSON_MAP), build: None }];
    stages.extend(build_stage(&setup, &bin, Lang::Python));
    stages.extend(build_stage(&setup, &bin, Lang::Js));
    start_watchdog_after(WATCHDOG);

    println!();
    println!("## 1. The chain in this process, no NATS: batch {BATCH}, {EVENTS} events of {} bytes per round", payload(0).len());
    println!("load: {}", load_average());
    let figures: Vec<ChainFigures> = stages.iter().map(|stage| chain_figures(&setup, stage)).collect();
    print_chain(&stages, &figures);

    println!();
    println!("## 2. Through NATS: {RELAY_EVENTS} events published as fast as possible, events/s drained (throughput only)");
    println!("load: {}", load_average());
    relays(&setup, &stages);
}

// ---------------------------------------------------------------- building

/// `weir build` of the Python or JavaScript stage into the scratch
/// directory, unless the component there is newer than every file it is
/// built from. `None` (with a line saying why) when it cannot be built.
fn build_stage(setup: &Setup, bin: &Path, lang: Lang) -> Option<Stage> {
    let (dir, sdk_parts, out) = match lang {
        Lang::Python => {
            if !setup.python().is_file() {
                println!("Python skipped: no Python toolchain at {}; run `./dev setup`", setup.py_toolchain.display());
                return None;
            }
            ("py", vec!["sdk/python/src"], setup.scratch.join("json-map-py.wasm"))
        }
        Lang::Js => {
            if Command::new("node").arg("--version").output().is_err() {
                println!("JavaScript skipped: node is not installed; install Node.js 20+, then run `./dev setup`");
                return None;
            }
            if !setup.js_toolchain.join("node_modules/@bytecodealliance/componentize-js").is_dir() {
                println!("JavaScript skipped: no componentize-js in {}; run `./dev setup`", setup.js_toolchain.display());
                return None;
            }
            ("js", vec!["sdk/js/src", "sdk/js/build"], setup.scratch.join("json-map-js.wasm"))
        }
        Lang::Rust => unreachable!("the Rust stage is built by tests/build.rs"),
    };
    let dir = setup.bench_dir().join(dir);
    let mut sources: Vec<PathBuf> = sdk_parts.iter().map(|p| setup.root.join(p)).collect();
    sources.extend([dir.clone(), setup.root.join("sdk/wit"), bin.to_owned()]);
    let built_at = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
    if built_at.is_some_and(|at| sources.iter().all(|s| newest(s) <= at)) {
        eprintln!("[languages] {} stage up to date: {}", lang.name(), out.display());
        return Some(Stage { lang, wasm: out, build: None });
    }
    eprintln!("[languages] building the {} stage with `weir build`", lang.name());
    let started = Instant::now();
    let built = Command::new(bin)
        .arg("build")
        .arg(&dir)
        .arg("-o")
        .arg(&out)
        .arg("--sdk")
        .arg(setup.root.join("sdk"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output();
    let elapsed = started.elapsed();
    match built {
        Ok(output) if output.status.success() => Some(Stage { lang, wasm: out, build: Some(elapsed) }),
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            println!("{} skipped: `weir build` failed: {reason}", lang.name());
            None
        }
        Err(e) => {
            println!("{} skipped: cannot run {}: {e}", lang.name(), bin.display());
            None
        }
    }
}

/// The newest modification time of `path` or anything under it (skipping
/// what tools write: `__pycache__`, `node_modules`).
fn newest(path: &Path) -> SystemTime {
    let own = std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
    if !path.is_dir() {
        return own;
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !matches!(e.file_name().to_str(), Some("__pycache__" | "node_modules")))
        .map(|e| newest(&e.path()))
        .fold(own, SystemTime::max)
}

// ---------------------------------------------------------------- the chain

struct ChainFigures {
    /// ns/event through the chain: best round, mean of the rounds.
    best_ns: f64,
    mean_ns: f64,
    /// Linear memory of a fresh instance after `init`, after one pass over
    /// the events and after `MEMORY_PASSES` (the instance's memory limit
    /// raised to 1 GiB, so that it is never replaced).
    memory_init: u64,
    memory_one: u64,
    memory_all: u64,
    /// Compile + instantiate + `init`, empty cache directory.
    first_start: Duration,
    /// Load the compiled code + instantiate + `init`, warm cache directory:
    /// the median of `CACHED_STARTS`.
    cached_start: Duration,
    /// The same code natively: (best, mean) ns/event and the runtime's
    /// version, or why not.
    native: Result<(f64, f64, String), String>,
}

fn pipeline(wasm: &Path) -> config::Pipeline {
    let text = format!(
        "name = \"bench\"\nbatch_size = {BATCH}\n[source]\nsubject = \"in\"\n[sink]\nsubject = \"out\"\n[[stages]]\nname = \"map\"\nplugin = {}\nconfig = {CONFIG_TOML}\n",
        toml_str(wasm.to_str().expect("UTF-8 paths"))
    );
    config::parse_pipeline(&text, Path::new("bench.toml")).expect("bench pipeline parses")
}

fn engine(cache_dir: &Path) -> Engine {
    Engine::new(&EngineOptions { cache_dir: Some(cache_dir.to_owned()), ..EngineOptions::default() }).expect("engine starts")
}

fn chain_figures(setup: &Setup, stage: &Stage) -> ChainFigures {
    let name = stage.lang.name();
    let pipeline = pipeline(&stage.wasm);

    // First start: a new engine, an empty cache directory.
    let cache = setup.scratch.join(format!("cache-first-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let (_, reports) = Blueprint::build(&engine(&cache), &pipeline).expect("bench pipeline builds");
    assert_eq!(reports[0].origin, Origin::Compiled, "an empty cache compiles");
    let first_start = reports[0].elapsed;
    eprintln!("[languages] {name}: first start {first_start:.2?}");

    // Cached starts: each a new engine on the warm directory.
    let mut cached = Vec::new();
    let mut last = None;
    for _ in 0..CACHED_STARTS {
        let engine = engine(&cache);
        let (blueprint, reports) = Blueprint::build(&engine, &pipeline).expect("bench pipeline builds");
        assert_eq!(reports[0].origin, Origin::Disk, "a warm cache directory loads");
        cached.push(reports[0].elapsed);
        last = Some((engine, blueprint));
    }
    cached.sort();
    let cached_start = cached[cached.len() / 2];
    let (engine, blueprint) = last.expect("at least one cached start");

    // Through the chain.
    let events: Vec<Event> = (0..EVENTS).map(|i| Event::new(SUBJECT, payload(i).into_bytes())).collect();
    let mut chain = blueprint.chain();
    let mut times = Vec::new();
    for round in 0..=ROUNDS {
        let batches: Vec<Vec<Event>> = events.chunks(BATCH).map(<[Event]>::to_vec).collect();
        let started = Instant::now();
        for b in batches {
            let outcomes = chain.process(b);
            assert!(matches!(outcomes.last(), Some(Outcome::Done(o)) if o.len() == 1), "every event passes");
            black_box(outcomes);
        }
        if round > 0 {
            times.push(started.elapsed());
        }
    }
    let per_event = |d: Duration| d.as_nanos() as f64 / EVENTS as f64;
    let best_ns = per_event(*times.iter().min().expect("rounds"));
    let mean_ns = per_event(times.iter().sum::<Duration>() / times.len() as u32);
    eprintln!("[languages] {name}: {best_ns:.0} ns/event in wasm (mean {mean_ns:.0})");

    // Memory: an instance of its own that is never recycled.
    let plugin = engine.load(&stage.wasm).expect("loads");
    let mut spec = weir::pipeline::stage_spec(&pipeline, &pipeline.stages[0]);
    spec.memory = 1 << 30;
    let mut instance = plugin.instantiate(&spec).expect("instantiates");
    let memory_init = instance.peak_memory();
    let mut memory_one = 0;
    for pass in 0..MEMORY_PASSES {
        for b in events.chunks(BATCH) {
            let (_, results) = instance.process(b.to_vec());
            let results = results.expect("no fault");
            assert!(results.iter().all(Result::is_ok), "every event maps");
        }
        if pass == 0 {
            memory_one = instance.peak_memory();
        }
    }
    let memory_all = instance.peak_memory();
    drop(instance);
    let _ = std::fs::remove_dir_all(&cache);

    let native = match stage.lang {
        Lang::Rust => Ok(native_rust(&events)),
        Lang::Python => native_python(setup),
        Lang::Js => native_js(setup),
    };
    match &native {
        Ok((best, _, version)) => eprintln!("[languages] {name}: {best:.0} ns/event natively ({version})"),
        Err(e) => eprintln!("[languages] {name}: no native figure: {e}"),
    }
    ChainFigures { best_ns, mean_ns, memory_init, memory_one, memory_all, first_start, cached_start, native }
}

/// json-map's own code natively, per event, batches of `BATCH` (as chain.rs (c)).
fn native_rust(events: &[Event]) -> (f64, f64, String) {
    let config = weir_sdk::Config::from_json(CONFIG_JSON).expect("valid JSON");
    let mapping = weir_json_map::Mapping::from_config(&config).expect("valid mapping");
    let mut times = Vec::new();
    for round in 0..=ROUNDS {
        let batches: Vec<Vec<Event>> = events.chunks(BATCH).map(<[Event]>::to_vec).collect();
        let started = Instant::now();
        for b in batches {
            let out: Vec<Vec<u8>> = b.iter().map(|e| weir_json_map::apply(&mapping, &e.payload).expect("maps")).collect();
            black_box(out);
        }
        if round > 0 {
            times.push(started.elapsed());
        }
    }
    let per_event = |d: Duration| d.as_nanos() as f64 / events.len() as f64;
    let best = per_event(*times.iter().min().expect("rounds"));
    let mean = per_event(times.iter().sum::<Duration>() / times.len() as u32);
    (best, mean, "rustc, the plugin crate".into())
}

fn native_python(setup: &Setup) -> Result<(f64, f64, String), String> {
    let mut command = Command::new(setup.python());
    command
        .arg(setup.bench_dir().join("native.py"))
        .arg(setup.bench_dir().join("py"))
        .arg(&setup.events_file)
        .args([CONFIG_JSON, &BATCH.to_string(), &ROUNDS.to_string()])
        .env("PYTHONPATH", setup.root.join("sdk/python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    native_figure(command, "python")
}

fn native_js(setup: &Setup) -> Result<(f64, f64, String), String> {
    let dir = setup.node_dir();
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .arg("native.mjs")
        .arg(&setup.events_file)
        .args([CONFIG_JSON, &BATCH.to_string(), &ROUNDS.to_string()]);
    native_figure(command, "node")
}

/// Runs a native timing script and reads its `ns_per_event=B mean=M RUNTIME=V` line.
fn native_figure(mut command: Command, runtime: &str) -> Result<(f64, f64, String), String> {
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {runtime}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("{runtime} failed ({}): {}", output.status, stderr.lines().last().unwrap_or("")));
    }
    let field = |key: &str| stdout.split_whitespace().find_map(|w| w.strip_prefix(key)).map(str::to_owned);
    let best = field("ns_per_event=").and_then(|v| v.parse().ok());
    let mean = field("mean=").and_then(|v| v.parse().ok());
    let version = field(&format!("{runtime}=")).unwrap_or_default();
    match (best, mean) {
        (Some(best), Some(mean)) => Ok((best, mean, format!("{runtime} {version}"))),
        _ => Err(format!("{runtime} printed no figure: {stdout}")),
    }
}

fn print_chain(stages: &[Stage], figures: &[ChainFigures]) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!();
    println!("| language | wasm ns/event (best / mean of {ROUNDS} rounds) | native ns/event (best / mean) | native runtime | wasm/native (best) |");
    println!("|---|---:|---:|---|---:|");
    for (stage, f) in stages.iter().zip(figures) {
        let (native, runtime, ratio) = match &f.native {
            Ok((best, mean, version)) => (format!("{best:.0} / {mean:.0}"), version.clone(), format!("{:.2}", f.best_ns / best)),
            Err(e) => ("-".into(), e.clone(), "-".into()),
        };
        println!("| {} | {:.0} / {:.0} | {native} | {runtime} | {ratio} |", stage.lang.name(), f.best_ns, f.mean_ns);
    }
    println!();
    println!(
        "| language | component MB | weir build s | first start (compile), empty cache | cached start (median of {CACHED_STARTS}) | memory after init MiB | after {EVENTS} events | after {} | growth B/event after the first pass |",
        EVENTS * MEMORY_PASSES
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (stage, f) in stages.iter().zip(figures) {
        let size = std::fs::metadata(&stage.wasm).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
        let build = stage.build.map_or_else(|| "-".to_owned(), |d| format!("{:.1}", d.as_secs_f64()));
        println!(
            "| {} | {size:.1} | {build} | {:.2} s | {:.1} ms | {:.1} | {:.1} | {:.1} | {:.0} |",
            stage.lang.name(),
            f.first_start.as_secs_f64(),
            f.cached_start.as_secs_f64() * 1e3,
            mib(f.memory_init),
            mib(f.memory_one),
            mib(f.memory_all),
            f.memory_all.saturating_sub(f.memory_one) as f64 / (EVENTS * (MEMORY_PASSES - 1)) as f64,
        );
    }
    println!();
    for (stage, f) in stages.iter().zip(figures) {
        let goal = match stage.lang {
            Lang::Python => Some(GOAL_PY_NS),
            Lang::Js => Some(GOAL_JS_NS),
            Lang::Rust => None,
        };
        if let Some(goal) = goal {
            println!(
                "goal: {} json-map <= {:.0} µs/event: {:.1} µs, {}",
                stage.lang.name(),
                goal / 1e3,
                f.best_ns / 1e3,
                verdict(f.best_ns <= goal)
            );
        }
        println!(
            "goal: a cached {} stage starts in <= {} ms: {:.1} ms, {}",
            stage.lang.name(),
            GOAL_CACHED_START.as_millis(),
            f.cached_start.as_secs_f64() * 1e3,
            verdict(f.cached_start <= GOAL_CACHED_START)
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

// ---------------------------------------------------------------- NATS

fn relays(setup: &Setup, stages: &[Stage]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let payloads: Vec<Bytes> = (0..DISTINCT_PAYLOADS).map(|i| Bytes::from(payload(i))).collect();
    // weir's own cache directory, shared by its runs: a stage compiles once.
    let cache = setup.scratch.join("weir-cache");
    // For scale: the same pipeline with the Rust stage.
    let rust = stages
        .iter()
        .find(|s| s.lang == Lang::Rust)
        .map(|s| weir_relay(&runtime, "weir, Rust stage (for scale)", &s.wasm, &cache, &payloads));
    let mut pairs = Vec::new();
    for stage in stages.iter().filter(|s| s.lang != Lang::Rust) {
        let native = match stage.lang {
            Lang::Python => python_relay(setup),
            Lang::Js => js_relay(setup),
            Lang::Rust => unreachable!(),
        };
        let Some(native) = native else { continue };
        let name = stage.lang.name();
        let w = weir_relay(&runtime, &format!("weir, {name} stage"), &stage.wasm, &cache, &payloads);
        let n = native_relay(&runtime, &format!("native {name} relay ({})", native.0), native.1, &payloads);
        pairs.push((name, w, n));
    }
    println!();
    println!(
        "| case | events/s | delivered/N | machine CPU µs/event | of which nats-server / relay process (weir or native) / bench | slow-consumer (client/server) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let all: Vec<&CaseResult> = rust.iter().chain(pairs.iter().flat_map(|(_, w, n)| [w, n])).collect();
    for case in &all {
        let s = case.cpu_by_process;
        println!(
            "| {} | {:.0} | {}/{} | {:.2} | {:.2} / {:.2} / {:.2} | {}/{} |",
            case.name, case.events_per_s, case.delivered, case.published, case.cpu_us_per_event, s.server, s.weir, s.bench, case.client_slow, case.server_slow
        );
    }
    println!();
    for (name, w, n) in &pairs {
        let ratio = w.events_per_s / n.events_per_s;
        println!(
            "goal: weir ahead of the native {name} relay: weir/native throughput {ratio:.2} (relay-process CPU per event, weir/native: {:.2}), {}",
            w.cpu_by_process.weir / n.cpu_by_process.weir,
            verdict(ratio > 1.0)
        );
    }
    print_losses(&all);
}

/// `weir run` (2 workers) with source `in` → the stage → sink `out`.
fn weir_relay(runtime: &tokio::runtime::Runtime, name: &str, wasm: &Path, cache: &Path, payloads: &[Bytes]) -> CaseResult {
    let server = NatsServer::new();
    let pipeline = format!(
        "name = \"relay\"\n\n[source]\nsubject = \"in\"\n\n[[stages]]\nname = \"map\"\nplugin = {}\nconfig = {CONFIG_TOML}\n\n[sink]\nsubject = \"out\"\n",
        toml_str(wasm.to_str().expect("UTF-8 paths"))
    );
    let mut weir = Weir::builder(&server)
        .label("bench")
        .workers(2)
        .cache_dir(cache)
        .pipeline("relay.toml", &pipeline)
        .start();
    let result = runtime.block_on(measure_throughput(name, &server, Some(weir.pid()), "in", "out", payloads, RELAY_EVENTS));
    weir.interrupt();
    let status = weir.wait_exit(Duration::from_secs(15));
    if !status.success() {
        eprintln!("[languages] {name}: weir exited with {status}");
    }
    result
}

/// The nats-py relay's command (and a label), installing nats-py into the
/// Python toolchain's venv if it is missing; `None`, with a line, if that fails.
fn python_relay(setup: &Setup) -> Option<(String, Command)> {
    let python = setup.python();
    let has_nats = || Command::new(&python).args(["-c", "import nats"]).output().is_ok_and(|o| o.status.success());
    if !has_nats() {
        println!("installing nats-py 2.16.0 into {} (the native Python relay needs it)", setup.py_toolchain.display());
        let _ = Command::new(&python)
            .args(["-m", "pip", "install", "-q", "nats-py==2.16.0"])
            .stdin(Stdio::null())
            .status();
        if !has_nats() {
            println!("Python relay skipped: nats-py is missing; install it with `{} -m pip install nats-py==2.16.0`", python.display());
            return None;
        }
    }
    let version = Command::new(&python)
        .args(["-c", "import importlib.metadata as m, platform; print(platform.python_version(), m.version('nats-py'))"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().replacen(' ', ", nats-py ", 1))
        .unwrap_or_default();
    let mut command = Command::new(python);
    command.arg(setup.bench_dir().join("relay.py")).env("PYTHONDONTWRITEBYTECODE", "1");
    Some((format!("CPython {version}"), command))
}

/// The nats.js relay's command, installing the `nats` package into
/// `~/.cache/weir/bench-node` if it is missing; `None`, with a line, if that fails.
fn js_relay(setup: &Setup) -> Option<(String, Command)> {
    let package = setup.bench_node.join("node_modules/nats/package.json");
    if !package.is_file() {
        println!("installing nats 2.29.3 (nats.js) into {} (the native JavaScript relay needs it)", setup.bench_node.display());
        let _ = std::fs::create_dir_all(&setup.bench_node);
        let manifest = setup.bench_node.join("package.json");
        if !manifest.is_file() {
            let _ = std::fs::write(&manifest, "{\n  \"name\": \"weir-bench-node\",\n  \"private\": true\n}\n");
        }
        let _ = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--save-exact", "nats@2.29.3"])
            .current_dir(&setup.bench_node)
            .stdin(Stdio::null())
            .status();
        if !package.is_file() {
            println!(
                "JavaScript relay skipped: nats.js is missing; install it with `cd {} && npm install --save-exact nats@2.29.3`",
                setup.bench_node.display()
            );
            return None;
        }
    }
    let version = std::fs::read_to_string(&package)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut command = Command::new("node");
    command.current_dir(setup.node_dir()).arg("relay.mjs");
    Some((format!("node {node}, nats.js {version}"), command))
}

/// Starts a native relay process against a fresh server, waits (bounded)
/// for its `ready`, measures, and kills it.
fn native_relay(runtime: &tokio::runtime::Runtime, name: &str, mut command: Command, payloads: &[Bytes]) -> CaseResult {
    let server = NatsServer::new();
    let mut child = command
        .arg(server.url())
        .arg(FIELDS_JSON)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (ready, is_ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "ready" {
                let _ = ready.send(());
            }
        }
    });
    if is_ready.recv_timeout(RELAY_READY).is_err() {
        stop(&mut child);
        panic!("{name} did not say ready within {RELAY_READY:?} (its messages are above)");
    }
    let result = runtime.block_on(measure_throughput(name, &server, Some(child.id()), "in", "out", payloads, RELAY_EVENTS));
    stop(&mut child);
    result
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `uptime`'s load averages, from /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().take(3).collect();
            format!(
                "load average {} (1, 5, 15 min) on {} cores",
                parts.join(", "),
                std::thread::available_parallelism().map_or(0, |n| n.get())
            )
        })
        .unwrap_or_else(|_| "load average unknown".into())
}
