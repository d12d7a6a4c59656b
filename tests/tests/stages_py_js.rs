//! Stages written in Python and JavaScript, as their authors use them: built
//! from source with `weir build` (the pinned componentize-py and
//! componentize-js that `./dev setup` installs), run with `weir exec` and
//! `weir run` on a real nats-server, and `weir new stage` projects that
//! build, test and run as generated.
//!
//! Every component here is built once per test process (`built`), and
//! compiled by weir into the shared cache, so the first test that needs one
//! pays for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use weir_tests::harness::{NatsServer, TempDir, Weir, connect, example_pipeline, repo_root, shared_cache_dir, toml_str, warm_shared_cache, weir_binary};
use weir_tests::plugins;

/// Runs `weir ARGS` in `dir` with the shared compile cache.
fn weir(dir: &Path, args: &[&str]) -> Output {
    Command::new(weir_binary())
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", shared_cache_dir().parent().expect("a parent").join("weir-test-xdg"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("weir runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON lines of `weir exec`: outputs (stdout), then dead letters
/// (stderr, between log lines).
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn assert_ok(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}", out.status, text(&out.stdout), text(&out.stderr));
}

/// Builds the project in `dir` into `output` with `weir build`, once per
/// test process.
fn built(dir: &Path, output: &Path) -> PathBuf {
    static DONE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(PoisonError::into_inner);
    if !done.iter().any(|d| d == output) {
        let out = weir(dir, &["build", ".", "-o", output.to_str().expect("UTF-8 paths")]);
        assert_ok(&format!("weir build {}", dir.display()), &out);
        assert!(text(&out.stdout).starts_with(&format!("built {} (", output.display())), "{}", text(&out.stdout));
        done.push(output.to_owned());
    }
    output.to_owned()
}

/// The shipped traffic stage in `lang` (`py` or `js`), built from
/// pipelines/stages/traffic-LANG into a private directory (not plugins/,
/// which a checkout's `./dev plugins` owns).
fn traffic_stage(lang: &str) -> PathBuf {
    let out_dir = shared_cache_dir().parent().expect("a parent").join("weir-test-stages");
    std::fs::create_dir_all(&out_dir).expect("create the stages' directory");
    built(&repo_root().join("pipelines/stages").join(format!("traffic-{lang}")), &out_dir.join(format!("traffic-{lang}.wasm")))
}

/// pipelines/traffic-LANG.toml, with its plugins where this test built them.
fn traffic_pipeline(lang: &str) -> String {
    let stage = traffic_stage(lang);
    example_pipeline(&format!("traffic-{lang}.toml"), |name| match name {
        "router" => plugins::ROUTER.to_owned(),
        _ => stage.display().to_string(),
    })
}

#[test]
fn the_python_and_javascript_traffic_stages_classify_the_samples_alike() {
    let samples = repo_root().join("pipelines/samples/traffic.jsonl");
    let mut by_lang = BTreeMap::new();
    for lang in ["py", "js"] {
        let dir = TempDir::new("weir-traffic-exec");
        std::fs::write(dir.path().join("traffic.toml"), traffic_pipeline(lang)).expect("write the pipeline");
        let out = weir(dir.path(), &["exec", "traffic.toml", "--input", samples.to_str().expect("UTF-8")]);
        assert_ok(&format!("weir exec traffic-{lang}"), &out);
        let lines = json_lines(&out);
        // What a consumer of traffic.<lang>.> sees: one output per hit, with
        // the subject the channel and source route to.
        let outputs: Vec<(String, serde_json::Value)> = lines
            .iter()
            .filter(|l| l["subject"].as_str().is_some_and(|s| s.starts_with(&format!("traffic.{lang}."))))
            .map(|l| (l["subject"].as_str().unwrap().replacen(&format!("traffic.{lang}."), "", 1), l["payload"].clone()))
            .collect();
        let google = outputs.iter().find(|(_, p)| p["hit_id"] == "h-1001").expect("hit h-1001 comes out");
        assert_eq!(google.0, "search.google", "{google:?}");
        assert_eq!(google.1["channel"], "search");
        let letters: Vec<&serde_json::Value> = lines.iter().filter(|l| l["subject"] == format!("weir.dlq.traffic-{lang}")).collect();
        let summary = text(&out.stderr);
        assert!(
            summary.contains(&format!("traffic-{lang}: 40 in, {} out, 0 dropped, {} dead-lettered", outputs.len(), letters.len())),
            "{summary}"
        );
        for letter in &letters {
            assert_eq!(letter["headers"]["weir-error-kind"], "invalid", "{letter}");
            assert_eq!(letter["headers"]["weir-error-stage"], "classify", "{letter}");
        }
        by_lang.insert(lang, (outputs, letters.len()));
    }
    assert_eq!(by_lang["py"], by_lang["js"], "the Python and the JavaScript stage disagree");
    assert!(by_lang["py"].0.len() >= 30, "{:?}", by_lang["py"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_run_classifies_tracking_hits_with_both_stages_on_nats() {
    let py = traffic_pipeline("py");
    let js = traffic_pipeline("js");
    warm_shared_cache(&py);
    warm_shared_cache(&js);
    let server = NatsServer::new();
    let weir = Weir::builder(&server)
        .label("traffic")
        .pipeline("traffic-py.toml", &py)
        .pipeline("traffic-js.toml", &js)
        .start();
    let client = connect(&server.url(), server.auth()).await;
    let mut outputs = client.subscribe("traffic.>").await.expect("subscribe");
    let mut letters = client.subscribe("weir.dlq.>").await.expect("subscribe");
    client.flush().await.expect("flush");

    let hits = 400;
    for i in 0..hits {
        let referrer = ["https://www.google.com/search?q=shirt", "https://www.facebook.com/", "", "https://blog.example.org/post"][i % 4];
        let payload = serde_json::json!({ "hit_id": format!("n-{i}"), "url": format!("https://shop.example.com/p/{i}"), "referrer": referrer });
        client
            .publish("tracking.hit", serde_json::to_vec(&payload).expect("JSON").into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.values().sum::<usize>() < 2 * hits {
        tokio::select! {
            Some(m) = outputs.next() => *seen.entry(m.subject.to_string()).or_default() += 1,
            Some(m) = letters.next() => panic!("dead letter {}: {:?}\n{}", m.subject, m.headers, weir.stderr()),
            _ = tokio::time::sleep_until(deadline) => panic!("{} of {} outputs after 60 s: {seen:?}\n{}", seen.values().sum::<usize>(), 2 * hits, weir.stderr()),
        }
    }
    for lang in ["py", "js"] {
        assert_eq!(seen.get(&format!("traffic.{lang}.search.google")), Some(&(hits / 4)), "{seen:?}");
        assert_eq!(seen.get(&format!("traffic.{lang}.social.facebook")), Some(&(hits / 4)), "{seen:?}");
    }
}

/// `weir new stage` in `lang`, then its native tests, `weir build` and
/// `weir exec` over its own samples: everything its README says to run.
fn new_project_runs_as_generated(lang: &str, native_test: &[&str]) {
    let dir = TempDir::new("weir-new");
    let out = weir(dir.path(), &["new", "stage", "hello-stage", "--lang", lang]);
    assert_ok("weir new stage", &out);
    assert!(text(&out.stdout).contains("created a"), "{}", text(&out.stdout));
    let project = dir.path().join("hello-stage");

    let test = Command::new(native_test[0])
        .args(&native_test[1..])
        .current_dir(&project)
        .output()
        .expect("the native test runs");
    assert_ok(&format!("{native_test:?} in a new {lang} project"), &test);

    let out = weir(&project, &["build"]);
    assert_ok("weir build", &out);
    assert!(text(&out.stdout).starts_with("built ./hello-stage.wasm ("), "{}", text(&out.stdout));

    let out = weir(&project, &["exec", "pipeline.toml", "--input", "events.jsonl"]);
    assert_ok("weir exec", &out);
    let lines = json_lines(&out);
    let outputs: Vec<_> = lines.iter().filter(|l| l["subject"] != "weir.dlq.hello-stage").collect();
    assert_eq!(outputs.len(), 2, "{lines:?}");
    assert!(outputs.iter().all(|o| o["payload"]["team"] == "web"), "{outputs:?}");
    let letter = lines
        .iter()
        .find(|l| l["subject"] == "weir.dlq.hello-stage")
        .expect("the non-object sample is dead-lettered");
    assert!(letter["headers"]["weir-error"].as_str().unwrap().contains("not an object"), "{letter}");
}

fn py_toolchain() -> PathBuf {
    std::env::var_os("WEIR_PY_TOOLCHAIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/weir/py-toolchain"))
}

#[test]
fn a_new_python_stage_tests_builds_and_runs_as_generated() {
    let python = py_toolchain().join("bin/python");
    new_project_runs_as_generated("python", &[python.to_str().expect("UTF-8"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]);
}

#[test]
fn a_new_rust_stage_tests_builds_and_runs_as_generated() {
    // Its own target directory, kept between runs: the SDK and serde are
    // compiled once (natively for `cargo test`, and for wasm32-wasip2).
    let target = shared_cache_dir().parent().expect("a parent").join("weir-test-new-rust");
    let command = format!("CARGO_TARGET_DIR={} cargo test -q", target.display());
    new_project_runs_as_generated("rust", &["sh", "-c", &command]);
}

#[test]
fn a_new_javascript_stage_tests_builds_and_runs_as_generated() {
    // `npm install` links the SDK (a file: dependency), offline.
    new_project_runs_as_generated("js", &["sh", "-c", "npm install --no-audit --no-fund --loglevel=error --offline && node --test"]);
}

/// A stage that misbehaves on request, in Python and in JavaScript: what
/// its author sees in dead letters and in weir's log.
const PROBE_PY: &str = r#"import time
import weir_stage
from weir_stage import Event


class Probe:
    def init(self, config):
        self.kept = []

    def process(self, event: Event):
        what = event.json()["do"]
        if what == "raise":
            return 1 / 0
        if what == "wrong":
            return 42
        if what == "print":
            print("hello from print")
            return event
        if what == "time":
            return event.with_json({"now": time.time()})
        if what == "blow":
            self.kept.append(bytearray(100 * 1024 * 1024))
            return event
        return event


WitWorld = weir_stage.export(Probe)
"#;

const PROBE_JS: &str = r#"import { exportStage } from 'weir-stage';

class Probe {
  init(config) {
    this.kept = [];
  }

  process(event) {
    const what = event.json().do;
    if (what === 'raise') {
      null.boom();
    }
    if (what === 'wrong') {
      return 42;
    }
    if (what === 'print') {
      console.log('hello from print');
      return event;
    }
    if (what === 'time') {
      return event.withJson({ now: Date.now() });
    }
    if (what === 'blow') {
      this.kept.push(new Uint8Array(100 * 1024 * 1024).fill(1));
      return event;
    }
    return event;
  }
}

export const { init, process } = exportStage(Probe);
"#;

/// Builds the probe in `lang`, runs `events` through it with `grants`, and
/// returns weir exec's output lines (outputs and dead letters) and its log.
fn probe(lang: &str, grants: &str, events: &[&str]) -> (Vec<serde_json::Value>, String) {
    let root = shared_cache_dir().parent().expect("a parent").join(format!("weir-test-probe-{lang}"));
    std::fs::create_dir_all(&root).expect("create the probe's directory");
    let sdk = repo_root().join("sdk");
    match lang {
        "python" => std::fs::write(root.join("app.py"), PROBE_PY).expect("write app.py"),
        _ => {
            std::fs::write(root.join("stage.js"), PROBE_JS).expect("write stage.js");
            let package = serde_json::json!({ "name": "probe", "type": "module", "main": "stage.js", "dependencies": { "weir-stage": format!("file:{}", sdk.join("js").display()) } });
            std::fs::write(root.join("package.json"), package.to_string()).expect("write package.json");
        }
    }
    let plugin = built(&root, &root.join("probe.wasm"));
    let dir = TempDir::new("weir-probe");
    let pipeline = format!(
        "name = \"probe\"\n[source]\nsubject = \"probe\"\n[[stages]]\nname = \"probe\"\nplugin = {}\nlimits = {{ memory = \"64MiB\" }}\ngrants = {{ {grants} }}\n[sink]\nsubject = \"out\"\n[dead_letter]\nsubject = \"dlq\"\n",
        toml_str(&plugin.display().to_string())
    );
    std::fs::write(dir.path().join("probe.toml"), pipeline).expect("write the pipeline");
    let input: String = events
        .iter()
        .map(|e| format!("{{\"subject\": \"probe\", \"payload\": {{\"do\": \"{e}\"}}}}\n"))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).expect("write the input");
    let out = weir(dir.path(), &["exec", "probe.toml", "--input", "in.jsonl"]);
    assert_ok("weir exec probe.toml", &out);
    (json_lines(&out), text(&out.stderr))
}

fn error_of(lines: &[serde_json::Value], index: usize) -> (String, String) {
    let letters: Vec<_> = lines.iter().filter(|l| l["subject"] == "dlq").collect();
    let l = letters.get(index).unwrap_or_else(|| panic!("dead letter {index} in {lines:?}"));
    (l["headers"]["weir-error-kind"].as_str().unwrap().to_owned(), l["headers"]["weir-error"].as_str().unwrap().to_owned())
}

/// What the probe in `lang` shows: the exception and its line in the dead
/// letter, a wrong return type refused, `print` in weir's log, and a clock
/// that reads zero until granted, then at least `real_time` (seconds in
/// Python, milliseconds in JavaScript).
fn errors_prints_and_clock(lang: &str, exception: &str, line: &str, real_time: f64) {
    let (lines, log) = probe(lang, "", &["raise", "wrong", "print", "time", "pass"]);
    let (kind, error) = error_of(&lines, 0);
    assert_eq!(kind, "invalid");
    assert!(error.contains(exception) && error.contains(line), "{error}");
    let (kind, error) = error_of(&lines, 1);
    assert_eq!(kind, "invalid", "{error}");
    assert!(log.contains("hello from print") && log.contains("stage=probe"), "{log}");
    let outputs: Vec<_> = lines.iter().filter(|l| l["subject"] == "out").collect();
    assert_eq!(outputs.len(), 3, "{lines:?}");
    assert_eq!(outputs[1]["payload"]["now"].as_f64(), Some(0.0), "no clock unless granted: {lines:?}");

    let (lines, _) = probe(lang, "clock = true", &["time"]);
    let now = lines[0]["payload"]["now"].as_f64().expect("a time");
    assert!(now > real_time, "a granted clock reads the real time: {now}");
}

#[test]
fn a_python_stage_shows_its_errors_its_prints_and_its_clock() {
    errors_prints_and_clock("python", "ZeroDivisionError: division by zero", "(at app.py:13, in process)", 1.7e9);
}

#[test]
fn a_javascript_stage_shows_its_errors_its_prints_and_its_clock() {
    errors_prints_and_clock("js", "TypeError", "(at stage.js:11)", 1.7e12);
}

#[test]
fn a_stage_that_blows_its_memory_costs_only_its_event() {
    for lang in ["python", "js"] {
        let (lines, _) = probe(lang, "", &["pass", "blow", "pass"]);
        let outputs: Vec<_> = lines.iter().filter(|l| l["subject"] == "out").collect();
        assert_eq!(outputs.len(), 2, "{lang}: the events before and after the fault come out: {lines:?}");
        let (kind, error) = error_of(&lines, 0);
        assert_eq!(kind, "memory", "{lang}: {error}");
        assert!(error.contains("over its limit of 67108864 bytes"), "{lang}: {error}");
    }
}

/// Stops `weir build --watch` when the test ends, however it ends.
struct Watching(std::process::Child);

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_under_weir_build_watch_goes_live_in_a_running_weir() {
    let dir = TempDir::new("weir-watch");
    assert_ok("weir new stage", &weir(dir.path(), &["new", "stage", "live", "--lang", "python"]));
    let project = dir.path().join("live");
    let log = project.join("watch.log");
    let _watching = Watching(
        Command::new(weir_binary())
            .args(["build", "--watch"])
            .current_dir(&project)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log"))
            .spawn()
            .expect("weir build --watch starts"),
    );
    let built = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches("built ").count() >= n {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "build {n} did not finish in 180 s:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    built(1);

    let pipeline = std::fs::read_to_string(project.join("pipeline.toml"))
        .expect("read the pipeline")
        .replace("plugin = \"live.wasm\"", &format!("plugin = {}", toml_str(&project.join("live.wasm").display().to_string())));
    warm_shared_cache(&pipeline);
    let server = NatsServer::new();
    let weir_run = Weir::builder(&server).label("live").pipeline("live.toml", &pipeline).start();
    let client = connect(&server.url(), server.auth()).await;
    let mut outputs = client.subscribe("live.out").await.expect("subscribe");
    client.flush().await.expect("flush");
    // Publishes until an output's `team` is `want`.
    let mut until = async |want: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            client.publish("live.in", br#"{"id": 1}"#.to_vec().into()).await.expect("publish");
            client.flush().await.expect("flush");
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), outputs.next()).await {
                let payload: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON");
                if payload["team"] == want {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no output with team {want:?} in 120 s\n{}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                weir_run.stderr()
            );
        }
    };
    until("web").await;

    // The author edits the stage and saves: the watcher builds, the running
    // weir sees the new component and reloads it.
    let app = project.join("app.py");
    let source = std::fs::read_to_string(&app).expect("read app.py");
    std::fs::write(&app, source.replace("payload[self.field] = self.value", "payload[self.field] = self.value + \"-edited\"")).expect("save app.py");
    built(2);
    until("web-edited").await;
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("changed: app.py; building"), "{log}");
}

#[test]
fn weir_build_says_what_it_cannot_build() {
    let dir = TempDir::new("weir-build-unknown");
    std::fs::write(dir.path().join("notes.txt"), "not a stage").expect("write");
    let out = weir(dir.path(), &["build"]);
    assert!(!out.status.success());
    let error = text(&out.stderr);
    assert!(
        error.contains("cannot tell the language of the stage") && error.contains("weir new stage NAME --lang rust|python|js"),
        "{error}"
    );

    std::fs::write(dir.path().join("app.py"), PROBE_PY).expect("write app.py");
    let out = Command::new(weir_binary())
        .args(["build"])
        .current_dir(dir.path())
        .env("WEIR_PY_TOOLCHAIN", dir.path().join("no-such-venv"))
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("weir runs");
    assert!(!out.status.success());
    let error = text(&out.stderr);
    assert!(error.contains("componentize-py is not installed") && error.contains("pip install componentize-py==0.25.1"), "{error}");
}
