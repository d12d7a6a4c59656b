//! Failures a user must be told about: events a stage cannot process go to the
//! dead-letter subject with headers that say why, and the rest flow on; wrong
//! credentials and an unreachable server are reported clearly.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::json;
use weir_tests::harness::*;
use weir_tests::plugins;

/// A filter that only needs JSON (it refuses anything else), then chaos.
fn faults_pipeline() -> String {
    format!(
        r#"
name = "faults"

[source]
subject = "in.>"

[[stages]]
name = "check"
plugin = {filter}
config = {{ field = "id", exists = true }}

[[stages]]
name = "chaos"
plugin = {chaos}
limits = {{ timeout = "200ms", memory = "32MiB" }}

[sink]
subject = "out.{{subject}}"

[dead_letter]
subject = "dlq.faults"
"#,
        filter = toml_str(plugins::FILTER),
        chaos = toml_str(plugins::CHAOS),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_stages_and_malformed_payloads_are_dead_lettered() {
    let server = NatsServer::new();
    let _weir = Weir::builder(&server).workers(2).pipeline("faults.toml", &faults_pipeline()).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    let mut dlq = subscribe(&client, "dlq.>").await;

    // (test id, payload, expected stage, expected kind); good events between
    // the bad ones so that batches mix both.
    let bad: Vec<(u64, Bytes, &str, &str)> = vec![
        (100, Bytes::from_static(b"this is not JSON {"), "check", "invalid"),
        (101, json_bytes(json!({ "id": 101, "chaos": "panic" })), "chaos", "trap"),
        (102, json_bytes(json!({ "id": 102, "chaos": "invalid" })), "chaos", "invalid"),
        (103, json_bytes(json!({ "id": 103, "chaos": "loop" })), "chaos", "timeout"),
        (104, json_bytes(json!({ "id": 104, "chaos": "alloc" })), "chaos", "memory"),
        (105, json_bytes(json!({ "id": 105, "chaos": "wrong-count" })), "chaos", "bad-output"),
        (106, json_bytes(json!({ "id": 106, "chaos": "retry" })), "chaos", "retry"),
    ];
    let mut good = 0u64;
    for (id, payload, _, _) in &bad {
        for _ in 0..3 {
            publish(&client, "in.faults", with_trace(test_headers(good), good), json_bytes(order(good))).await;
            good += 1;
        }
        publish(&client, "in.faults", with_trace(test_headers(*id), *id), payload.clone()).await;
    }

    let letters = collect_exactly(&mut dlq, "dead letters", bad.len(), Duration::from_secs(30), Duration::from_millis(500)).await;
    let by_id: BTreeMap<String, &async_nats::Message> = letters
        .iter()
        .map(|m| (header(m, TEST_ID_HEADER).unwrap_or_else(|| panic!("{}", describe(m))), m))
        .collect();
    let mut problems = Vec::new();
    for (id, payload, stage, kind) in &bad {
        let Some(letter) = by_id.get(&id.to_string()) else {
            problems.push(format!("event {id} (expected {stage}/{kind}): no dead letter"));
            continue;
        };
        let got = (
            letter.subject.as_str(),
            header(letter, "weir-pipeline"),
            header(letter, "weir-error-stage"),
            header(letter, "weir-error-kind"),
            header(letter, "weir-subject"),
            header(letter, "trace"),
        );
        let want = (
            "dlq.faults",
            Some("faults".to_string()),
            Some(stage.to_string()),
            Some(kind.to_string()),
            Some("in.faults".to_string()),
            Some(format!("t-{id}")),
        );
        if got != want {
            problems.push(format!("event {id}: got {got:?}, want {want:?}"));
        }
        if header(letter, "weir-error").is_none_or(|e| e.trim().is_empty()) {
            problems.push(format!("event {id}: no weir-error message: {}", describe(letter)));
        }
        if letter.payload != *payload {
            problems.push(format!("event {id}: payload changed: {}", describe(letter)));
        }
    }
    assert!(problems.is_empty(), "dead letters:\n{}", problems.join("\n"));

    let outputs = collect_exactly(&mut out, "good events", good as usize, Duration::from_secs(30), Duration::from_millis(300)).await;
    let mut ids: Vec<u64> = outputs.iter().map(id_of).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..good).collect::<Vec<_>>(), "every good event gets through, each once");

    // The runtime goes on after traps, timeouts and memory breaches.
    publish(&client, "in.faults", test_headers(999), json_bytes(order(999))).await;
    let after = collect(&mut out, 1, Duration::from_secs(10)).await;
    assert_eq!(after.iter().map(id_of).collect::<Vec<_>>(), vec![999], "weir still processes events");
}

fn json_bytes(value: serde_json::Value) -> Bytes {
    serde_json::to_vec(&value).unwrap().into()
}

fn with_trace(mut headers: HeaderMap, id: u64) -> HeaderMap {
    headers.insert("trace", format!("t-{id}").as_str());
    headers
}

/// A core pipeline that passes events through, for the connection tests.
fn noop_pipeline() -> String {
    format!(
        r#"
name = "pass"

[source]
subject = "in.>"

[[stages]]
name = "noop"
plugin = {noop}

[sink]
subject = "out.{{subject}}"
"#,
        noop = toml_str(plugins::NOOP)
    )
}

/// Waits until weir's stderr mentions authorization and `url` (it may exit
/// non-zero or keep retrying, but it must not claim to be ready).
fn assert_auth_error_reported(weir: &mut Weir, url: &str) {
    let reported = weir.wait_for_stderr(Duration::from_secs(15), |text| text.lines().any(|line| line.to_lowercase().contains("auth") && line.contains(url)));
    // The process may have exited right after its last line; give the
    // capture a moment.
    let _ = weir.try_wait_exit(Duration::from_millis(200));
    let reported = reported || weir.stderr().lines().any(|line| line.to_lowercase().contains("auth") && line.contains(url));
    assert!(reported, "weir should say on one line that {url} refused its credentials (authorization); it said:\n{}", weir.stderr());
    assert!(!weir.stderr().contains("ready:"), "weir claims to be ready with wrong credentials:\n{}", weir.stderr());
    if let Some(status) = weir.try_wait_exit(Duration::ZERO) {
        assert!(!status.success(), "weir exited 0 with wrong credentials");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_reported_with_the_url() {
    let server = NatsServer::builder().user_password("weir", "s3cret").start();

    let wrong = Auth::UserPassword { user: "weir".into(), password: "wrong".into() };
    let mut weir = Weir::builder(&server).auth(wrong).pipeline("pass.toml", &noop_pipeline()).spawn();
    assert_auth_error_reported(&mut weir, &server.url());
    drop(weir);

    let mut anonymous = Weir::builder(&server).auth(Auth::None).pipeline("pass.toml", &noop_pipeline()).spawn();
    assert_auth_error_reported(&mut anonymous, &server.url());
    drop(anonymous);

    // The right password works.
    let _weir = Weir::builder(&server).pipeline("pass.toml", &noop_pipeline()).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    publish(&client, "in.x", test_headers(1), json_bytes(order(1))).await;
    assert_eq!(collect(&mut out, 1, Duration::from_secs(10)).await.len(), 1, "events flow with the right password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_reported_with_the_url() {
    let server = NatsServer::builder().token("t0ken").start();
    let mut weir = Weir::builder(&server)
        .auth(Auth::Token("nope".into()))
        .pipeline("pass.toml", &noop_pipeline())
        .spawn();
    assert_auth_error_reported(&mut weir, &server.url());
    drop(weir);

    let _weir = Weir::builder(&server).pipeline("pass.toml", &noop_pipeline()).start();
}

/// A line that names `url` and says something is wrong (not, say, an
/// informational "connecting to <url>").
fn is_unreachable_line(line: &str, url: &str) -> bool {
    let lower = line.to_lowercase();
    line.contains(url)
        && ["cannot", "can't", "could not", "unable", "unreachable", "refused", "not reach", "fail", "error", "retry"]
            .iter()
            .any(|word| lower.contains(word))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_reported_and_retried_until_it_comes_up() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut weir = WeirBuilder::new().url(&url).pipeline("pass.toml", &noop_pipeline()).spawn();

    assert!(
        weir.wait_for_stderr(Duration::from_secs(15), |text| text.lines().any(|l| is_unreachable_line(l, &url))),
        "weir should say on one line that it cannot reach {url}; it said:\n{}",
        weir.stderr()
    );
    if let Some(status) = weir.try_wait_exit(Duration::from_secs(2)) {
        panic!("weir gave up ({status}) instead of retrying; it said:\n{}", weir.stderr());
    }
    // One line per attempt is fine as long as the attempts back off.
    let complaints = weir.stderr().lines().filter(|line| is_unreachable_line(line, &url)).count();
    assert!(
        complaints <= 10,
        "weir should retry with backoff, not complain in a tight loop; {complaints} lines in about 2s:\n{}",
        weir.stderr()
    );

    // The server comes up: weir connects on its own and works.
    let server = NatsServer::builder().port(port).start();
    weir.wait_ready();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    publish(&client, "in.x", test_headers(1), json_bytes(order(1))).await;
    let got = collect(&mut out, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "events flow once the server is up");
}
