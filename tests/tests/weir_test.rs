//! `weir test` and `weir record` as a user runs them: the real binary, real
//! plugins (the `chaos` fixture traps, loops and eats memory on demand), a
//! real nats-server for `weir record`; what they print and how they exit.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use async_nats::HeaderMap;
use weir_tests::harness::{NatsServer, TempDir, create_stream, js_publish, publish, toml_str, weir_binary};
use weir_tests::plugins;

fn weir(dir: &Path, args: &[&str]) -> Output {
    Command::new(weir_binary())
        .args(args)
        .current_dir(dir)
        // Each test compiles into its own code cache.
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout and stderr, for assertion messages.
fn both(out: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", text(&out.stdout), text(&out.stderr))
}

/// A pipeline: keep `keep = true` events, then the chaos stage, then route
/// by `country`.
fn pipeline(dir: &Path) {
    let toml = format!(
        r#"name = "shop"
[source]
subject = "shop.>"
[[stages]]
name = "keep"
plugin = {filter}
config = {{ field = "keep", eq = true }}
[[stages]]
name = "chaos"
plugin = {chaos}
limits = {{ timeout = "50ms", memory = "32MiB" }}
[[stages]]
name = "route"
plugin = {router}
config = {{ subject = "out.{{country}}", default = "none" }}
[sink]
subject = "{{subject}}"
[dead_letter]
subject = "dlq.shop"
"#,
        filter = toml_str(plugins::FILTER),
        chaos = toml_str(plugins::CHAOS),
        router = toml_str(plugins::ROUTER),
    );
    std::fs::write(dir.join("shop.toml"), toml).unwrap();
}

const CASES: &str = r#"pipeline = "../shop.toml"

[[case]]
name = "kept events are routed"
subject = "shop.orders"
dropped = [2]
[[case.input]]
payload = { keep = true, country = "DE", price = 10.0 }
[[case.input]]
payload = { keep = false }
[[case.output]]
subject = "out.DE"
paths = { price = 10.0 }
[case.budget]
per_event = "50ms"
memory = "32MiB"

[[case]]
name = "a changed expectation"
subject = "shop.orders"
[[case.input]]
payload = { keep = true, country = "DE", price = 10.5 }
[[case.output]]
subject = "out.FR"
paths = { price = 10.0 }

[[case]]
name = "a stage that traps"
subject = "shop.orders"
[[case.input]]
payload = { keep = true, country = "DE", chaos = "panic" }
[[case.output]]
subject = "out.DE"

[[case]]
name = "a budget cut below the measured time"
subject = "shop.orders"
[[case.input]]
payload = { keep = true, country = "DE" }
[[case.output]]
subject = "out.DE"
[case.budget]
chaos = { per_event = "1ns" }

[[case]]
name = "a stage hungrier than its budget"
subject = "shop.orders"
[[case.input]]
payload = { keep = true, country = "DE", chaos = "alloc", bytes = 8388608 }
[[case.output]]
subject = "out.DE"
[case.budget]
chaos = { memory = "4MiB" }

[[case]]
name = "a budget that cannot be measured"
subject = "shop.orders"
dropped = [1]
[[case.input]]
payload = { keep = false }
[case.budget]
route = { per_event = "1s" }

[[case]]
name = "an expected trap, dead-lettered"
subject = "shop.orders"
[[case.input]]
payload = { keep = true, country = "DE", chaos = "panic" }
[[case.input]]
payload = { keep = true, country = "FR", chaos = "loop" }
[[case.input]]
payload = { keep = true, country = "IT" }
[[case.output]]
input = 3
subject = "out.IT"
[[case.dead_letter]]
input = 1
stage = "chaos"
kind = "trap"
message = "asked to panic"
[[case.dead_letter]]
input = 2
stage = "chaos"
kind = "timeout"
"#;

fn setup(dir: &Path) {
    pipeline(dir);
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(dir.join("tests/shop.test.toml"), CASES).unwrap();
}

/// The lines `weir test` printed for the case `name`: its status line and
/// its problems.
fn case_block(stdout: &str, name: &str) -> String {
    let mut lines = stdout.lines().skip_while(|l| !l.contains(&format!("  {name} (")));
    let mut block = vec![lines.next().unwrap_or_else(|| panic!("no line for case {name:?} in:\n{stdout}")).to_owned()];
    block.extend(lines.take_while(|l| l.starts_with("        ")).map(str::to_owned));
    block.join("\n")
}

#[test]
fn failures_say_what_happened_and_the_other_cases_still_run() {
    let dir = TempDir::new("weir-test-cases");
    setup(dir.path());
    let out = weir(dir.path(), &["test", "tests", "--junit", "report.xml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));

    let passed = case_block(&stdout, "kept events are routed");
    assert!(passed.starts_with("  ok    kept events are routed"), "{passed}");

    let changed = case_block(&stdout, "a changed expectation");
    assert!(changed.starts_with("  FAIL  a changed expectation"), "{changed}");
    assert!(changed.contains(r#"output 1 (line 23): subject "out.DE", expected "out.FR""#), "{changed}");
    assert!(changed.contains("output 1 (line 23): payload at /price: expected 10.0, got 10.5"), "{changed}");
    assert!(changed.contains(r#"{"subject":"out.DE","headers":{},"payload":{"#), "what came out is shown:\n{changed}");

    let trap = case_block(&stdout, "a stage that traps");
    assert!(trap.starts_with("  FAIL"), "{trap}");
    assert!(trap.contains(r#"input 1 was dead-lettered by stage "chaos" (trap): trapped: "#), "{trap}");
    assert!(trap.lines().nth(1).unwrap_or_default().contains("was dead-lettered"), "the trap comes first:\n{trap}");
    assert!(trap.contains("chaos: asked to panic"), "the trap's own message:\n{trap}");

    let slow = case_block(&stdout, "a budget cut below the measured time");
    assert!(slow.starts_with("  FAIL"), "{slow}");
    assert!(slow.contains(r#"stage "chaos" took "#), "{slow}");
    assert!(slow.contains("per event (median of "), "{slow}");
    assert!(slow.contains("batches of 64), over its budget of 1 ns (line 43)"), "{slow}");

    let hungry = case_block(&stdout, "a stage hungrier than its budget");
    assert!(hungry.starts_with("  FAIL"), "{hungry}");
    assert!(
        hungry.contains(r#"stage "chaos" held "#) && hungry.contains("MiB of memory at its peak, over its budget of 4.0 MiB"),
        "{hungry}"
    );

    let unmeasurable = case_block(&stdout, "a budget that cannot be measured");
    assert!(unmeasurable.starts_with("  FAIL"), "{unmeasurable}");
    assert!(
        unmeasurable.contains(r#"budget of stage "route" (line 62) cannot be measured: no event of this case reached the stage"#),
        "{unmeasurable}"
    );

    // After the trap and the failures, the last case runs and passes: a
    // trap and a timeout it expects are dead letters like any other.
    let expected = case_block(&stdout, "an expected trap, dead-lettered");
    assert!(expected.starts_with("  ok    an expected trap, dead-lettered"), "{expected}");

    assert!(stdout.contains("7 cases: 2 passed, 5 failed"), "{stdout}");
    // The table: every stage of the pipeline, with a time and a memory.
    for stage in ["keep", "chaos", "route"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  shop      {stage} ")))
            .unwrap_or_else(|| panic!("no row for {stage}:\n{stdout}"));
        assert!(row.contains(" µs") || row.contains(" ns") || row.contains(" ms"), "{row}");
        assert!(row.contains("MiB") || row.contains("KiB"), "{row}");
    }

    let junit = std::fs::read_to_string(dir.path().join("report.xml")).expect("the JUnit report is written");
    assert!(junit.contains(r#"<testsuites name="weir test" tests="7" failures="5" errors="0""#), "{junit}");
    assert!(junit.contains(r#"<testcase classname="tests/shop.test.toml" name="kept events are routed""#), "{junit}");
    assert!(junit.contains("<failure message=\"input 1 was dead-lettered by stage &quot;chaos&quot; (trap): trapped: "), "{junit}");
}

#[test]
fn passing_cases_exit_0_and_filter_selects_cases() {
    let dir = TempDir::new("weir-test-pass");
    setup(dir.path());
    let out = weir(dir.path(), &["test", "--filter", "routed"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(stdout.starts_with("tests/shop.test.toml\n  ok    kept events are routed ("), "{stdout}");
    assert!(stdout.contains("1 case: 1 passed, 0 failed"), "{stdout}");

    let out = weir(dir.path(), &["test", "--filter", "no such case"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(text(&out.stderr).contains("no case matched"), "{}", both(&out));
}

#[test]
fn a_golden_file_is_written_by_update_and_diffed_after_a_change() {
    let dir = TempDir::new("weir-test-golden");
    pipeline(dir.path());
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("tests/in.jsonl"),
        concat!(
            r#"{"subject": "shop.orders", "headers": {"trace": "t1"}, "payload": {"keep": true, "country": "DE", "id": 1}}"#,
            "\n",
            r#"{"subject": "shop.orders", "payload": {"keep": false, "id": 2}}"#,
            "\n",
            r#"{"subject": "shop.orders", "payload": {"keep": true, "country": {"a": 1}, "id": 3}}"#,
            "\n",
            r#"{"subject": "shop.orders", "payload": {"keep": true, "country": "FR", "id": 4"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tests/golden.test.toml"),
        "pipeline = \"../shop.toml\"\n[[case]]\nname = \"recorded\"\ninput_file = \"in.jsonl\"\ngolden = \"golden/recorded.jsonl\"\n",
    )
    .unwrap();

    let out = weir(dir.path(), &["test"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(text(&out.stdout).contains("golden file tests/golden/recorded.jsonl cannot be read"), "{}", both(&out));
    assert!(text(&out.stdout).contains("run `weir test --update`"), "{}", both(&out));

    let out = weir(dir.path(), &["test", "--update"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(text(&out.stdout).contains("(wrote tests/golden/recorded.jsonl)"), "{}", both(&out));
    let golden = std::fs::read_to_string(dir.path().join("tests/golden/recorded.jsonl")).unwrap();
    let lines: Vec<&str> = golden.lines().collect();
    assert_eq!(lines.len(), 3, "one output, two dead letters, nothing for the dropped input:\n{golden}");
    assert_eq!(lines[0], r#"{"subject":"out.DE","headers":{"trace":"t1"},"payload":{"keep": true, "country": "DE", "id": 1}}"#);
    assert!(lines[1].starts_with(r#"{"subject":"dlq.shop","headers":{"weir-error":"field \"country\" is an object"#), "{}", lines[1]);
    assert!(
        lines[1].contains(r#""weir-error-kind":"invalid","weir-error-stage":"route","weir-pipeline":"shop","weir-subject":"shop.orders"}"#),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with(r#"{"subject":"dlq.shop","headers":{"weir-error":"line 4: not JSON"#), "{}", lines[2]);
    assert!(lines[2].contains(r#""weir-error-kind":"malformed","weir-error-stage":"input""#), "{}", lines[2]);

    assert_eq!(weir(dir.path(), &["test"]).status.code(), Some(0), "the golden file now matches");

    // The router now routes by another field: the diff shows the change.
    let toml = std::fs::read_to_string(dir.path().join("shop.toml")).unwrap().replace("out.{country}", "out.{id}");
    std::fs::write(dir.path().join("shop.toml"), toml).unwrap();
    let out = weir(dir.path(), &["test"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(stdout.contains("differs from tests/golden/recorded.jsonl (- expected, + actual):"), "{stdout}");
    assert!(stdout.contains(r#"- {"subject":"out.DE","headers":{"trace":"t1"}"#), "{stdout}");
    assert!(stdout.contains(r#"+ {"subject":"out.1","headers":{"trace":"t1"}"#), "{stdout}");
    // Input 3's country is no longer read: it passes now instead of failing.
    assert!(stdout.contains(r#"+ {"subject":"out.3","#), "{stdout}");
}

#[test]
fn a_broken_test_file_is_named_with_line_and_key_and_the_others_still_run() {
    let dir = TempDir::new("weir-test-broken");
    setup(dir.path());
    std::fs::write(
        dir.path().join("tests/a-broken.test.toml"),
        "pipeline = \"../shop.toml\"\n[[case]]\nname = \"typo\"\ninput_file = \"missing.jsonl\"\n",
    )
    .unwrap();
    let out = weir(dir.path(), &["test", "tests", "--filter", "routed"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stdout.contains(r#"tests/a-broken.test.toml:4:14: case[0].input_file: input file "missing.jsonl" not found (resolved to tests/missing.jsonl)"#),
        "{stdout}"
    );
    assert!(stdout.contains("  ok    kept events are routed"), "the other file still runs:\n{stdout}");
    assert!(stdout.contains("1 case: 1 passed, 0 failed, 1 test file unreadable"), "{stdout}");
}

/// Runs `weir record` with `args` against `server`, in `dir`.
fn record(dir: &Path, server: &NatsServer, args: &[&str]) -> std::process::Child {
    std::fs::write(dir.join("weir.toml"), format!("[nats]\nurl = {}\n", toml_str(&server.url()))).unwrap();
    let mut all = vec!["--config", "weir.toml", "record"];
    all.extend_from_slice(args);
    Command::new(weir_binary())
        .args(&all)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir record starts")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(*k, *v);
    }
    map
}

#[tokio::test(flavor = "multi_thread")]
async fn record_captures_core_nats_events_with_their_headers() {
    let server = NatsServer::new();
    let client = server.client().await;
    let dir = TempDir::new("weir-record-core");
    let mut child = record(dir.path(), &server, &["--subject", "shop.>", "--count", "3", "--out", "cases/sample.jsonl", "--wait", "20s"]);
    // Core NATS delivers only what is published after the subscription:
    // publish until weir has its three events and exits.
    let mut id = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        id += 1;
        assert!(id < 200, "weir record did not finish");
        let payload = format!(r#"{{"id":{id},"keep":true,"country":"DE"}}"#);
        publish(&client, &format!("shop.orders.{id}"), headers(&[("trace", &id.to_string())]), payload).await;
        publish(&client, "other.subject", HeaderMap::new(), "ignored").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", both(&out));
    assert!(text(&out.stderr).contains("recorded 3 events to cases/sample.jsonl"), "{}", both(&out));
    let recorded = std::fs::read_to_string(dir.path().join("cases/sample.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = recorded.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{recorded}");
    let first = lines[0]["payload"]["id"].as_u64().unwrap();
    for (i, line) in lines.iter().enumerate() {
        let id = first + i as u64;
        assert_eq!(line["subject"], format!("shop.orders.{id}"), "{recorded}");
        assert_eq!(line["headers"]["trace"], id.to_string(), "headers are recorded: {recorded}");
        assert_eq!(line["payload"]["country"], "DE", "{recorded}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn record_reads_a_stream_from_a_sequence_and_update_writes_the_golden_file() {
    let server = NatsServer::new();
    let (_client, js) = server.jetstream().await;
    create_stream(&js, "SHOP", &["shop.>"]).await;
    for id in 1..=5u32 {
        let payload = format!(r#"{{"id":{id},"keep":{},"country":"C{id}"}}"#, id != 3);
        js_publish(&js, "shop.orders", headers(&[("trace", &format!("t{id}"))]), payload).await;
    }
    let dir = TempDir::new("weir-record-js");
    pipeline(dir.path());
    std::fs::create_dir_all(dir.path().join("tests/recorded")).unwrap();
    // The case exists before the recording: --update finds it by its input file.
    std::fs::write(dir.path().join("tests/recorded/sample.jsonl"), "").unwrap();
    std::fs::write(
        dir.path().join("tests/shop.test.toml"),
        "pipeline = \"../shop.toml\"\n[[case]]\nname = \"yesterday's traffic\"\ninput_file = \"recorded/sample.jsonl\"\ngolden = \"golden/sample.jsonl\"\n",
    )
    .unwrap();

    let args =
        ["--subject", "shop.>", "--stream", "SHOP", "--start-seq", "2", "--count", "3", "--out", "tests/recorded/sample.jsonl", "--update", "--tests", "tests"];
    let out = record(dir.path(), &server, &args).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", both(&out));
    assert!(text(&out.stderr).contains("recorded 3 events to tests/recorded/sample.jsonl"), "{}", both(&out));
    assert!(text(&out.stdout).contains("  ok    yesterday's traffic ("), "{}", both(&out));
    assert!(text(&out.stdout).contains("(wrote tests/golden/sample.jsonl)"), "{}", both(&out));

    let recorded = std::fs::read_to_string(dir.path().join("tests/recorded/sample.jsonl")).unwrap();
    let ids: Vec<u64> = recorded
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [2, 3, 4], "from sequence 2, three events:\n{recorded}");
    assert!(recorded.lines().next().unwrap().contains(r#""headers":{"trace":"t2"}"#), "{recorded}");

    // Event 3 is not kept: the golden file holds the outputs of 2 and 4.
    let golden = std::fs::read_to_string(dir.path().join("tests/golden/sample.jsonl")).unwrap();
    let lines: Vec<&str> = golden.lines().collect();
    assert_eq!(
        lines,
        [
            r#"{"subject":"out.C2","headers":{"trace":"t2"},"payload":{"id":2,"keep":true,"country":"C2"}}"#,
            r#"{"subject":"out.C4","headers":{"trace":"t4"},"payload":{"id":4,"keep":true,"country":"C4"}}"#,
        ],
        "{golden}"
    );
    let out = weir(dir.path(), &["test", "tests"]);
    assert_eq!(out.status.code(), Some(0), "the next run compares with it:\n{}", both(&out));

    // No case reads another file: --update says so.
    let args = ["--subject", "shop.>", "--stream", "SHOP", "--count", "1", "--out", "elsewhere.jsonl", "--update", "--tests", "tests"];
    let out = record(dir.path(), &server, &args).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(text(&out.stderr).contains("no case matched"), "{}", both(&out));
}
