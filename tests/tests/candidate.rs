//! Safe deploys: a candidate version of a stage (`[stages.candidate]`) in
//! shadow or canary beside the live one, compared live, promoted or rolled
//! back by its rules or by `weir promote` / `weir rollback`, remembered
//! across restarts; against a real nats-server and the real `weir`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use weir_tests::harness::*;
use weir_tests::plugins;

/// A core pipeline reading `in.>` and writing `out.{subject}`, with
/// `stages` (each may have its candidate table).
fn core_pipeline(name: &str, stages: &str) -> String {
    format!(
        "name = \"{name}\"\nbatch_size = 16\n\n[source]\nsubject = \"in.>\"\n\n{stages}\n[sink]\nsubject = \"out.{{subject}}\"\n\n[dead_letter]\nsubject = \"dlq.{name}\"\n"
    )
}

/// A `[stages.candidate]` table for the stage before it.
fn candidate(plugin: &str, settings: &str) -> String {
    format!("[stages.candidate]\nplugin = {}\n{settings}\n", toml_str(plugin))
}

/// The JSON reply of `weir.control.<instance>.<what>` to `body`.
async fn control(client: &async_nats::Client, instance: &str, what: &str, body: &'static [u8]) -> Value {
    let subject = format!("weir.control.{instance}.{what}");
    let reply = tokio::time::timeout(CLI_TIMEOUT, client.request(subject.clone(), Bytes::from_static(body)))
        .await
        .unwrap_or_else(|_| panic!("{subject}: no reply"))
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|e| panic!("{subject}: not JSON ({e})"))
}

/// The candidate report of `stage` in pipeline `pipeline`, from `weir status`.
async fn candidate_status(client: &async_nats::Client, instance: &str, pipeline: &str, stage: &str) -> Option<Value> {
    let status = control(client, instance, "status", b"diff").await;
    let pipelines = status["pipelines"].as_array()?;
    let p = pipelines.iter().find(|p| p["name"] == pipeline)?;
    p["candidates"].as_array()?.iter().find(|c| c["stage"] == stage).cloned()
}

/// Waits until the candidate of `stage` is in `state` and returns its report.
async fn wait_state(client: &async_nats::Client, instance: &str, pipeline: &str, stage: &str, state: &str) -> Value {
    eventually(&format!("candidate of {pipeline}/{stage} to be {state}"), Duration::from_secs(30), || async {
        match candidate_status(client, instance, pipeline, stage).await {
            Some(c) if c["state"] == state => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// The text of the Prometheus sample `name` (labels included, exactly).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

fn metrics_text(address: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_is_measured_at_the_rate_it_differs_and_never_published() {
    let server = NatsServer::new();
    let address = format!("127.0.0.1:{}", free_port());
    // The live filter keeps everything; the candidate drops price 18 and 19,
    // a tenth of the orders (price = id % 20).
    let stages = stage("keep", plugins::FILTER, "{ all = [] }")
        + &candidate(
            plugins::FILTER,
            "mode = \"shadow\"\ndecide = \"manual\"\ndiff_subject = \"diff.shadow\"\nconfig = { field = \"price\", lt = 18 }",
        );
    let weir = Weir::builder(&server)
        .instance("shadow-1")
        .workers(2)
        .metrics(&address)
        .pipeline("shadow.toml", &core_pipeline("shadow", &stages))
        .start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    let mut diff = subscribe(&client, "diff.>").await;

    let sent = publish_orders(&client, "in.orders", 0..1000).await;
    let outputs = collect_exactly(&mut out, "outputs", 1000, Duration::from_secs(30), Duration::from_millis(300)).await;
    assert_exactly_once("outputs", outputs.iter().map(id_of), 0..1000);
    for message in &outputs {
        assert_eq!(json(message), sent[id_of(message) as usize], "the live version's output, untouched");
    }

    let c = eventually("1000 compared events", Duration::from_secs(10), || async {
        let c = candidate_status(&client, "shadow-1", "shadow", "keep").await.ok_or("no candidate in status")?;
        if c["figures"]["compared"] == 1000 { Ok(c) } else { Err(c.to_string()) }
    })
    .await;
    let f = &c["figures"];
    assert_eq!(c["state"], "running", "manual: the rules only report: {c}");
    assert_eq!(c["mode"], "shadow");
    assert_eq!(f["agreed"], 900, "{c}");
    assert_eq!(f["differences"], json!({ "drop": 100 }), "{c}");
    assert_eq!(f["diff_rate"], 0.1, "{c}");
    assert_eq!(f["candidate_errors"], 0, "{c}");
    assert!(c["judgement"].as_str().unwrap().contains("limit broken: difference rate 0.1000"), "{c}");

    // Samples: input, the live output, the candidate's (none).
    let samples = collect(&mut diff, 1, Duration::from_secs(5)).await;
    assert!(!samples.is_empty(), "samples on the diff subject");
    for s in &samples {
        let body = json(s);
        assert_eq!(header(s, "weir-difference").as_deref(), Some("drop"));
        assert_eq!(header(s, "weir-stage").as_deref(), Some("keep"));
        assert!(body["input"]["payload"]["price"].as_u64().unwrap() >= 18, "{body}");
        assert_eq!(body["live"]["outputs"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["candidate_result"], json!({ "outputs": [] }), "{body}");
    }
    let status = weir.cli(&["status", "--diff"]).await;
    assert_eq!(status.code, Some(0), "{status}");
    assert!(status.stdout.contains("stage keep candidate"), "{status}");
    assert!(status.stdout.contains("compared 1000: agreed 900, differed 100 (10.00%): drop 100"), "{status}");
    assert!(status.stdout.contains("\"difference\":\"drop\""), "--diff prints samples: {status}");

    let text = metrics_text(&address);
    assert_eq!(sample(&text, r#"weir_candidate_differences_total{pipeline="shadow",stage="keep",kind="drop"}"#), Some(100.0), "{text}");
    assert_eq!(sample(&text, r#"weir_candidate_agreements_total{pipeline="shadow",stage="keep"}"#), Some(900.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_failing_a_tenth_of_events_is_rolled_back_and_costs_the_live_events_nothing() {
    let server = NatsServer::new();
    // The live stage passes everything; the candidate (chaos) panics on
    // every tenth event, loops on one and blows its memory on another.
    let stages = stage("check", plugins::NOOP, "{}")
        + &candidate(
            plugins::CHAOS,
            "mode = \"shadow\"\nmax_diff_rate = 1.0\nconfig = {}\nlimits = { timeout = \"5ms\", memory = \"16MiB\" }",
        );
    let mut weir = Weir::builder(&server)
        .instance("rb-1")
        .workers(2)
        .pipeline("rb.toml", &core_pipeline("rb", &stages))
        .start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    let mut dlq = subscribe(&client, "dlq.>").await;

    let payload = |id: u64| match id {
        5 => json!({ "id": id, "chaos": "loop" }),
        7 => json!({ "id": id, "chaos": "alloc", "bytes": 64 << 20 }),
        _ if id.is_multiple_of(10) => json!({ "id": id, "chaos": "panic" }),
        _ => json!({ "id": id }),
    };
    for id in 0..1000 {
        publish(&client, "in.orders", test_headers(id), serde_json::to_vec(&payload(id)).unwrap()).await;
    }
    flush(&client).await;
    let outputs = collect_exactly(&mut out, "outputs", 1000, Duration::from_secs(30), Duration::from_millis(300)).await;
    assert_exactly_once("outputs", outputs.iter().map(id_of), 0..1000);
    for message in &outputs {
        assert_eq!(json(message), payload(id_of(message)), "the live output: {}", describe(message));
    }
    assert!(collect_for(&mut dlq, Duration::from_millis(200)).await.is_empty(), "a shadow never dead-letters a live event");

    let c = wait_state(&client, "rb-1", "rb", "check", "rolled_back").await;
    let d = &c["decision"];
    assert_eq!(d["by"], "rules", "{c}");
    assert_eq!(d["instance"], "rb-1", "{c}");
    assert!(d["reason"].as_str().unwrap().starts_with("error rate"), "{c}");
    let rate = d["figures"]["candidate_error_rate"].as_f64().unwrap();
    assert!((0.08..=0.2).contains(&rate), "about a tenth fails: {c}");
    assert!(d["figures"]["candidate_events"].as_u64().unwrap() < 1000, "rolled back as soon as the limit broke, not at the end: {c}");
    assert!(
        weir.wait_for_stderr(Duration::from_secs(5), |e| e.contains("rolled back by rules: error rate")),
        "the decision is logged with its figures"
    );

    // Remembered: the unchanged file does not run the candidate again.
    weir.interrupt();
    assert!(weir.wait_exit(Duration::from_secs(20)).success());
    weir.restart();
    assert!(weir.stderr().contains("was rolled back by rules on weir rb-1"), "{}", weir.stderr());
    let c = candidate_status(&client, "rb-1", "rb", "check")
        .await
        .expect("the decision is shown after a restart");
    assert_eq!(c["state"], "rolled_back", "{c}");
    publish(&client, "in.orders", test_headers(2000), serde_json::to_vec(&json!({ "id": 2000, "chaos": "panic" })).unwrap()).await;
    let outputs = collect_exactly(&mut out, "output after restart", 1, Duration::from_secs(10), Duration::from_millis(200)).await;
    assert_eq!(id_of(&outputs[0]), 2000);
    assert!(c["judgement"].as_str().unwrap().contains("remembered"), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_keeps_each_key_on_one_version() {
    let server = NatsServer::new();
    let stages = stage("stamp", plugins::JSON_MAP, r#"{ set = { version = "live" } }"#)
        + &candidate(
            plugins::JSON_MAP,
            "mode = \"canary\"\nshare = 0.5\nkey = \"user\"\ndecide = \"manual\"\nconfig = { set = { version = \"candidate\" } }",
        );
    let _weir = Weir::builder(&server)
        .instance("canary-1")
        .workers(2)
        .pipeline("canary.toml", &core_pipeline("canary", &stages))
        .start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    let mut dlq = subscribe(&client, "dlq.>").await;

    for id in 0..800u64 {
        let event = json!({ "id": id, "user": format!("user-{}", id % 40) });
        publish(&client, "in.orders", test_headers(id), serde_json::to_vec(&event).unwrap()).await;
    }
    flush(&client).await;
    let outputs = collect_exactly(&mut out, "outputs", 800, Duration::from_secs(30), Duration::from_millis(300)).await;
    assert_exactly_once("outputs", outputs.iter().map(id_of), 0..800);
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for message in &outputs {
        let body = json(message);
        assert_eq!(body["user"], format!("user-{}", id_of(message) % 40));
        versions
            .entry(body["user"].as_str().unwrap().to_owned())
            .or_default()
            .insert(body["version"].as_str().unwrap().to_owned());
    }
    let split: Vec<_> = versions.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(split.is_empty(), "each user stays on one version: {split:?}");
    let on_candidate = versions.values().filter(|v| v.contains("candidate")).count();
    assert!((8..=32).contains(&on_candidate), "about half of 40 users go to the candidate: {on_candidate}");
    assert!(collect_for(&mut dlq, Duration::from_millis(200)).await.is_empty());

    let c = candidate_status(&client, "canary-1", "canary", "stamp").await.expect("canary in status");
    assert_eq!(c["mode"], "canary");
    assert_eq!(c["figures"]["candidate_events"].as_u64().unwrap(), on_candidate as u64 * 20, "{c}");
    assert_eq!(c["figures"]["live_events"].as_u64().unwrap(), 800 - on_candidate as u64 * 20, "{c}");
    assert_eq!(c["figures"]["compared"], 0, "a canary compares nothing: {c}");
}

/// Under load from a JetStream stream: one stage's candidate is promoted by
/// its rules and another's rolled back, while every input comes out exactly
/// once; the promotion is remembered across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_and_rollback_under_load_from_jetstream_keep_every_input_exactly_once() {
    let server = NatsServer::new();
    let (client, js) = server.jetstream().await;
    create_stream(&js, "IN", &["in.>"]).await;
    create_stream(&js, "OUT", &["out.>"]).await;
    create_stream(&js, "DLQ", &["dlq.>"]).await;
    let stages = stage("stamp", plugins::JSON_MAP, r#"{ set = { stamp = "live" } }"#)
        + &candidate(
            plugins::JSON_MAP,
            "mode = \"shadow\"\nmin_events = 500\nmax_diff_rate = 1.0\nmax_slowdown = 10\nconfig = { set = { stamp = \"candidate\" } }",
        )
        + &stage("check", plugins::NOOP, "{}")
        + &candidate(plugins::CHAOS, "mode = \"shadow\"\nmin_events = 500\nmax_diff_rate = 1.0\nconfig = {}");
    let pipeline = format!(
        "name = \"deploy\"\nbatch_size = 16\n\n[source]\nsubject = \"in.>\"\nstream = \"IN\"\ndurable = \"weir-deploy\"\n\n{stages}\n[sink]\nsubject = \"out.{{subject}}\"\nstream = \"OUT\"\n\n[dead_letter]\nsubject = \"dlq.deploy\"\nstream = \"DLQ\"\n"
    );
    let mut weir = Weir::builder(&server).instance("deploy-1").workers(2).pipeline("deploy.toml", &pipeline).start();

    let payload = |id: u64| if id % 10 == 3 { json!({ "id": id, "chaos": "panic" }) } else { json!({ "id": id }) };
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for id in 0..4000u64 {
                js_publish(&js, "in.orders", test_headers(id), serde_json::to_vec(&payload(id)).unwrap()).await;
            }
        })
    };
    publisher.await.unwrap();
    wait_stream_len(&js, "OUT", 4000, Duration::from_secs(60)).await;
    wait_consumer_done(&js, "IN", "weir-deploy", Duration::from_secs(30)).await;

    let promoted = wait_state(&client, "deploy-1", "deploy", "stamp", "promoted").await;
    assert_eq!(promoted["decision"]["by"], "rules", "{promoted}");
    let rolled_back = wait_state(&client, "deploy-1", "deploy", "check", "rolled_back").await;
    assert!(rolled_back["decision"]["reason"].as_str().unwrap().starts_with("error rate"), "{rolled_back}");

    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("outputs in OUT", out.iter().map(id_of), 0..4000);
    assert_unique_msg_ids("OUT", &out);
    assert_eq!(stream_len(&js, "DLQ").await.unwrap(), 0, "nothing dead-lettered: {:?}", read_stream(&js, "DLQ").await);
    let mut stamps: BTreeMap<String, usize> = BTreeMap::new();
    for message in &out {
        let body = json(message);
        let mut expected = payload(id_of(message));
        expected["stamp"] = body["stamp"].clone();
        assert_eq!(body, expected, "{}", describe(message));
        *stamps.entry(body["stamp"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert!(stamps.get("live").is_some_and(|&n| n >= 500), "the live version ran until the promotion: {stamps:?}");
    assert!(stamps.get("candidate").is_some_and(|&n| n > 0), "the promoted version ran after it: {stamps:?}");
    let last = out.iter().max_by_key(|m| id_of(m)).unwrap();
    assert_eq!(json(last)["stamp"], "candidate", "the last events ran on the promoted version");

    // The unchanged file runs the promoted version after a restart.
    weir.interrupt();
    assert!(weir.wait_exit(Duration::from_secs(20)).success());
    weir.restart();
    assert!(weir.stderr().contains("was promoted by rules on weir deploy-1"), "{}", weir.stderr());
    for id in 4000..4100u64 {
        js_publish(&js, "in.orders", test_headers(id), serde_json::to_vec(&payload(id)).unwrap()).await;
    }
    wait_stream_len(&js, "OUT", 4100, Duration::from_secs(30)).await;
    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("outputs in OUT", out.iter().map(id_of), 0..4100);
    for message in out.iter().filter(|m| id_of(m) >= 4000) {
        assert_eq!(json(message)["stamp"], "candidate", "{}", describe(message));
    }
    let c = candidate_status(&client, "deploy-1", "deploy", "stamp").await.expect("shown after the restart");
    assert_eq!(c["state"], "promoted", "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_promotes_and_rolls_back_with_the_commands_and_a_reload_changes_the_candidate() {
    let server = NatsServer::new();
    let stages = |second: &str| {
        stage("stamp", plugins::JSON_MAP, r#"{ set = { stamp = "live" } }"#)
            + &candidate(plugins::JSON_MAP, "mode = \"canary\"\nshare = 0.5\ndecide = \"manual\"\nconfig = { set = { stamp = \"candidate\" } }")
            + &stage("route", plugins::JSON_MAP, r#"{ set = { route = "live" } }"#)
            + second
    };
    let with_candidate = candidate(plugins::JSON_MAP, "mode = \"shadow\"\ndecide = \"manual\"\nconfig = { set = { route = \"candidate\" } }");
    let weir = Weir::builder(&server)
        .instance("ops-1")
        .pipeline("ops.toml", &core_pipeline("ops", &stages(&with_candidate)))
        .start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;

    let nothing = weir.cli(&["promote", "ops", "nope"]).await;
    assert_eq!(nothing.code, Some(1), "{nothing}");
    assert!(nothing.stderr.contains("stage \"nope\" of pipeline \"ops\" has no candidate running"), "{nothing}");

    let promote = weir.cli(&["promote", "ops", "stamp"]).await;
    assert_eq!(promote.code, Some(0), "{promote}");
    assert!(promote.stdout.contains("ops stamp: candidate") && promote.stdout.contains("promoted"), "{promote}");
    let c = wait_state(&client, "ops-1", "ops", "stamp", "promoted").await;
    assert_eq!(c["decision"]["by"], "operator", "{c}");
    let again = weir.cli(&["rollback", "ops", "stamp"]).await;
    assert_eq!(again.code, Some(1), "a decided candidate is not decided again: {again}");

    let rollback = weir.cli(&["rollback", "ops", "route"]).await;
    assert_eq!(rollback.code, Some(0), "{rollback}");
    wait_state(&client, "ops-1", "ops", "route", "rolled_back").await;

    publish_orders(&client, "in.orders", 0..50).await;
    let outputs = collect_exactly(&mut out, "outputs", 50, Duration::from_secs(20), Duration::from_millis(200)).await;
    for message in &outputs {
        let body = json(message);
        assert_eq!(body["stamp"], "candidate", "promoted for every key: {}", describe(message));
        assert_eq!(body["route"], "live", "rolled back: {}", describe(message));
    }
    let status = weir.cli(&["status"]).await;
    assert!(status.stdout.contains("promoted by operator on weir ops-1: asked with `weir promote`"), "{status}");

    // A changed candidate is a new one, judged afresh: a reload runs it.
    let changed = candidate(plugins::JSON_MAP, "mode = \"shadow\"\ndecide = \"manual\"\nconfig = { set = { route = \"third\" } }");
    std::fs::write(weir.pipelines_dir().join("ops.toml"), core_pipeline("ops", &stages(&changed))).unwrap();
    let reload = weir.cli(&["reload"]).await;
    assert_eq!(reload.code, Some(0), "{reload}");
    assert!(reload.stdout.contains("changed: ops"), "{reload}");
    let c = wait_state(&client, "ops-1", "ops", "route", "running").await;
    assert_eq!(c["mode"], "shadow", "{c}");
    // Removing the candidate table reloads too.
    std::fs::write(weir.pipelines_dir().join("ops.toml"), core_pipeline("ops", &stages(""))).unwrap();
    let reload = weir.cli(&["reload"]).await;
    assert!(reload.stdout.contains("changed: ops"), "{reload}");
    assert!(candidate_status(&client, "ops-1", "ops", "route").await.is_none(), "no candidate any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_checks_the_candidate_and_names_file_line_and_key() {
    let dir = TempDir::new("candidate");
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "").unwrap();
    let check = |name: &str, candidate_table: &str| {
        let text = core_pipeline(name, &(stage("stamp", plugins::CHAOS, "{}") + candidate_table));
        std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        dir.path().join(format!("{name}.toml"))
    };
    let cases = [
        (
            "init",
            candidate(plugins::CHAOS, "mode = \"shadow\"\nconfig = { fail_init = \"the candidate refuses\" }"),
            "the candidate refuses",
        ),
        ("mode", candidate(plugins::CHAOS, "mode = \"blue\""), "stages[0].candidate.mode"),
        ("key", candidate(plugins::CHAOS, "mode = \"shadow\"\nkey = \"user\""), "stages[0].candidate.key"),
        ("share", candidate(plugins::CHAOS, "mode = \"canary\"\nshare = 0"), "stages[0].candidate.share"),
        ("rate", candidate(plugins::CHAOS, "mode = \"shadow\"\nmax_diff_rate = 2"), "stages[0].candidate.max_diff_rate"),
        ("unknown", candidate(plugins::CHAOS, "mode = \"shadow\"\nshares = 1"), "shares"),
        ("missing", "[stages.candidate]\nplugin = \"nowhere.wasm\"\nmode = \"shadow\"\n".to_owned(), "stages[0].candidate.plugin"),
    ];
    for (name, table, expected) in &cases {
        let file = check(name, table);
        let run = cli_with_config(&config, dir.path(), &["validate", file.to_str().unwrap()]).await;
        assert_eq!(run.code, Some(1), "{name}: {run}");
        assert!(run.stderr.contains(expected), "{name}: expected {expected:?}: {run}");
        if *name != "init" {
            assert!(run.stderr.contains(&format!("{name}.toml:")), "{name}: file and line: {run}");
        } else {
            assert!(run.stderr.contains("stamp (candidate)"), "the error names the candidate: {run}");
        }
        std::fs::remove_file(file).unwrap();
    }
    let fine = check("fine", &candidate(plugins::NOOP, "mode = \"canary\"\nshare = 0.25\nkey = \"user.id\""));
    let run = cli_with_config(&config, dir.path(), &["validate", fine.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("stamp (candidate)"), "{run}");
}

/// Two weir processes running one pipeline agree: a candidate promoted on one
/// is promoted on the other, through the KV bucket of decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_taken_on_one_weir_is_carried_out_by_the_fleet() {
    let server = NatsServer::new();
    let stages = stage("stamp", plugins::JSON_MAP, r#"{ set = { stamp = "live" } }"#)
        + &candidate(plugins::JSON_MAP, "mode = \"shadow\"\ndecide = \"manual\"\nconfig = { set = { stamp = \"candidate\" } }");
    let text = core_pipeline("fleet", &stages).replace("subject = \"in.>\"", "subject = \"in.>\"\nqueue = \"weir\"");
    let a = Weir::builder(&server).instance("fleet-a").pipeline("fleet.toml", &text).start();
    let _b = Weir::builder(&server).instance("fleet-b").pipeline("fleet.toml", &text).start();
    let client = server.client().await;
    assert_eq!(candidate_status(&client, "fleet-b", "fleet", "stamp").await.expect("b runs the candidate")["state"], "running");
    let version = |status: Value| status["pipelines"][0]["version"].as_str().unwrap_or_default().to_owned();
    let before = version(control(&client, "fleet-b", "status", b"").await);

    let promote = a.cli(&["promote", "fleet", "stamp"]).await;
    assert_eq!(promote.code, Some(0), "{promote}");
    let on_b = wait_state(&client, "fleet-b", "fleet", "stamp", "promoted").await;
    assert_eq!(on_b["decision"]["by"], "operator", "{on_b}");
    assert_eq!(on_b["decision"]["instance"], "fleet-a", "decided on a: {on_b}");
    // Decided, b swaps in the promoted version (until then it runs the live one).
    eventually("b to run the promoted version", Duration::from_secs(10), || async {
        let now = version(control(&client, "fleet-b", "status", b"").await);
        if now != before { Ok(()) } else { Err(now) }
    })
    .await;

    // Both now run the promoted version.
    let mut out = subscribe(&client, "out.>").await;
    publish_orders(&client, "in.orders", 0..200).await;
    let outputs = collect_exactly(&mut out, "outputs", 200, Duration::from_secs(20), Duration::from_millis(200)).await;
    assert_exactly_once("outputs", outputs.iter().map(id_of), 0..200);
    for message in &outputs {
        assert_eq!(json(message)["stamp"], "candidate", "{}", describe(message));
    }
}
