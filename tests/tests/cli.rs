//! `weir exec` and `weir validate` as a user runs them: the real binary, real
//! plugins, what it prints and how it exits.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use weir_tests::harness::{TempDir, toml_str, weir_binary};
use weir_tests::plugins;

fn weir(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(weir_binary())
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin takes the input");
    child.wait_with_output().expect("weir exits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    text(bytes)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn orders_pipeline(dir: &Path) {
    let toml = format!(
        r#"name = "orders"
[source]
subject = "shop.orders.>"
[[stages]]
name = "keep-paid"
plugin = {filter}
config = {{ all = [ {{ field = "status", eq = "paid" }} ] }}
[[stages]]
name = "route"
plugin = {router}
config = {{ subject = "orders.{{country}}", default = "unknown" }}
[[stages]]
name = "chaos"
plugin = {chaos}
limits = {{ timeout = "50ms" }}
[sink]
subject = "processed.{{subject}}"
[dead_letter]
subject = "dlq.orders"
"#,
        filter = toml_str(plugins::FILTER),
        router = toml_str(plugins::ROUTER),
        chaos = toml_str(plugins::CHAOS),
    );
    std::fs::write(dir.join("orders.toml"), toml).unwrap();
}

#[test]
fn exec_prints_outputs_dead_letters_and_a_summary() {
    let dir = TempDir::new("weir-exec");
    orders_pipeline(dir.path());
    let input = [
        r#"{"subject": "shop.orders.new", "headers": {"trace": "t1"}, "payload": {"status": "paid", "country": "DE"}}"#,
        r#"{"subject": "shop.orders.new", "payload": {"status": "cart", "country": "DE"}}"#,
        r#"{"subject": "shop.orders.new", "payload": {"status": "paid", "chaos": "panic"}}"#,
        r#"{"subject": "shop.orders.new", "payload_text": "not json"}"#,
        r#"{"subject": "shop.orders.new", "payload": "#,
        r#"{"status": "paid", "country": "FR"}"#,
    ]
    .join("\n");
    let out = weir(dir.path(), &["exec", "orders.toml", "--subject", "shop.orders.bare", "--dead-letter", "dead.jsonl"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let outputs = lines(&out.stdout);
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(outputs[0]["subject"], "processed.orders.DE");
    assert_eq!(outputs[0]["headers"]["trace"], "t1");
    assert_eq!(outputs[0]["payload"]["country"], "DE");
    assert_eq!(outputs[1]["subject"], "processed.orders.FR", "a bare payload takes --subject");

    let dead = lines(&std::fs::read(dir.path().join("dead.jsonl")).unwrap());
    let kinds: Vec<_> = dead.iter().map(|d| d["headers"]["weir-error-kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["malformed", "trap", "invalid"], "{dead:?}");
    assert!(dead[0]["headers"]["weir-error"].as_str().unwrap().starts_with("line 5: not JSON"));
    assert_eq!(dead[1]["headers"]["weir-error-stage"], "chaos");
    assert!(dead[1]["headers"]["weir-error"].as_str().unwrap().contains("chaos: asked to panic"));
    assert_eq!(dead[1]["payload"], serde_json::json!({"status": "paid", "chaos": "panic"}), "the original payload, untouched");
    assert_eq!(dead[2]["payload_text"], "not json");
    assert!(dead.iter().all(|d| d["subject"] == "dlq.orders"));

    let stderr = text(&out.stderr);
    assert!(stderr.contains("orders: 6 in, 2 out, 1 dropped, 3 dead-lettered"), "{stderr}");
}

#[test]
fn validate_accepts_good_pipelines_with_a_line_each() {
    let dir = TempDir::new("weir-validate-ok");
    orders_pipeline(dir.path());
    let out = weir(dir.path(), &["validate", "."], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("ok orders (./orders.toml): shop.orders.> -> processed.{subject}; 3 stages: keep-paid"), "{stdout}");
}

#[test]
fn validate_reports_every_problem_and_exits_1() {
    let dir = TempDir::new("weir-validate-bad");
    orders_pipeline(dir.path());
    std::fs::write(dir.path().join("typo.toml"), "name = \"typo\"\n[source]\nsubject = \"a\"\nqueu = \"x\"\n[sink]\nsubject = \"b\"\n").unwrap();
    std::fs::write(dir.path().join("not-wasm.txt"), "hello").unwrap();
    std::fs::write(
        dir.path().join("wrong-plugin.toml"),
        "name = \"wrong\"\n[source]\nsubject = \"a\"\n[[stages]]\nname = \"s\"\nplugin = \"not-wasm.txt\"\n[sink]\nsubject = \"b\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("init-fails.toml"),
        format!(
            "name = \"init\"\n[source]\nsubject = \"a\"\n[[stages]]\nname = \"c\"\nplugin = {}\nconfig = {{ fail_init = \"model.onnx not found\" }}\n[sink]\nsubject = \"b\"\n",
            toml_str(plugins::CHAOS)
        ),
    )
    .unwrap();
    let out = weir(dir.path(), &["validate", "."], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("typo.toml:4:1: source.queu: unknown key \"queu\""), "{stderr}");
    assert!(stderr.contains("did you mean \"queue\"?"), "{stderr}");
    assert!(stderr.contains("not-wasm.txt is not a WebAssembly file"), "{stderr}");
    assert!(stderr.contains("init refused the configuration: model.onnx not found"), "{stderr}");
    assert!(stderr.contains("3 of 4 pipeline files are invalid"), "{stderr}");
    assert!(text(&out.stdout).contains("ok orders"), "the good pipeline is still reported");
}

#[test]
fn help_explains_the_commands() {
    let dir = TempDir::new("weir-help");
    let out = weir(dir.path(), &["--help"], "");
    let help = text(&out.stdout);
    for command in ["validate", "exec", "run"] {
        assert!(help.contains(command), "{help}");
    }
    let out = weir(dir.path(), &["exec", "--help"], "");
    assert!(text(&out.stdout).contains("--subject"));
    assert!(text(&out.stdout).contains("payload_base64"));
}

/// `weir exec --kv`: a KV stage runs without NATS, its buckets served from
/// the same JSON files `weir kv load` takes; without them, the dead letters
/// say how to give them.
#[test]
fn exec_serves_kv_buckets_from_files() {
    let dir = TempDir::new("weir-exec-kv");
    let toml = format!(
        "name = \"bi\"\n[source]\nsubject = \"tracking.>\"\n[[stages]]\nname = \"enrich\"\nplugin = {}\ngrants = {{ kv = [\"shops\", \"rates\"] }}\n[sink]\nsubject = \"out\"\n[dead_letter]\nsubject = \"dlq\"\n",
        toml_str(plugins::BI_ENRICH)
    );
    std::fs::write(dir.path().join("bi.toml"), toml).unwrap();
    std::fs::write(dir.path().join("shops.json"), r#"{"s-1": {"name": "Northwind", "country": "DE", "commission_rate": 0.1}}"#).unwrap();
    std::fs::write(dir.path().join("rates.json"), r#"{"USD": {"rate": 0.5}}"#).unwrap();
    let event = r#"{"shop_id": "s-1", "price": 30, "currency": "USD", "ts": "2026-11-26T10:15:00Z", "user_agent": "curl/8"}"#;

    let out = weir(dir.path(), &["exec", "bi.toml", "--subject", "tracking.view", "--kv", "shops.json", "--kv", "rates.json"], event);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outputs = lines(&out.stdout);
    assert_eq!(outputs.len(), 1, "{}", text(&out.stderr));
    assert_eq!(outputs[0]["payload"]["shop"]["name"], "Northwind");
    assert_eq!(outputs[0]["payload"]["price_reporting"], 15.0);

    let out = weir(dir.path(), &["exec", "bi.toml", "--subject", "tracking.view"], event);
    assert!(lines(&out.stdout).is_empty());
    let dead = lines(&out.stderr);
    assert_eq!(dead.len(), 1, "{}", text(&out.stderr));
    let reason = dead[0]["headers"]["weir-error"].as_str().unwrap_or_default();
    assert!(reason.contains("KV bucket \"shops\"") && reason.contains("--kv shops.json"), "{reason}");

    let bad = weir(dir.path(), &["exec", "bi.toml", "--kv", "bi.toml"], "");
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("bi.toml: expected a JSON object of key to value"), "{}", text(&bad.stderr));
}
