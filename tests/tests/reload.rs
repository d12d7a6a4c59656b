//! Hot reload: `weir run` picks up changed, added and removed pipeline files
//! and replaced plugins (file watch, SIGHUP, `weir reload`), builds the new
//! version beside the running one and swaps only if all of it succeeds.
//! Every output and dead letter names the version that processed it in its
//! `weir-version` header; nothing is lost or processed twice by a swap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{Client, Message};
use bytes::Bytes;
use serde_json::{Value, json};
use weir_tests::harness::*;
use weir_tests::plugins;

/// How long one reload may take to be live: debounce, compiling a plugin on a
/// busy 2-core machine, every stage's `init`.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Pipeline files

/// A pipeline reading stream IN (`in.>`) through `durable`, writing to stream
/// OUT (`out.<input subject>`), dead letters to stream DLQ.
fn js_pipeline(name: &str, durable: &str, source_extra: &str, stages: &str) -> String {
    format!(
        r#"
name = "{name}"
batch_size = 16
ordered = true

[source]
subject = "in.>"
stream = "IN"
durable = "{durable}"
deliver = "all"
ack_wait = "30s"
{source_extra}

{stages}

[sink]
subject = "out.{{subject}}"
stream = "OUT"

[dead_letter]
subject = "dlq.{name}"
stream = "DLQ"
"#
    )
}

/// A pipeline with a core NATS source on `source`, sink `out.{subject}`.
fn core_pipeline(name: &str, source: &str, stages: &str) -> String {
    format!(
        r#"
name = "{name}"
ordered = true

[source]
subject = "{source}"

{stages}

[sink]
subject = "out.{{subject}}"
"#
    )
}

async fn create_streams(js: &jetstream::Context) {
    create_stream(js, "IN", &["in.>"]).await;
    create_stream(js, "OUT", &["out.>"]).await;
    create_stream(js, "DLQ", &["dlq.>"]).await;
}

/// Replaces `pipelines/<file>` atomically (written beside, then renamed), as
/// a deployment tool would.
fn write_pipeline(weir: &Weir, file: &str, toml: &str) {
    let tmp = weir.dir().join(format!(".{file}.tmp"));
    std::fs::write(&tmp, toml).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    let target = weir.pipelines_dir().join(file);
    std::fs::rename(&tmp, &target).unwrap_or_else(|e| panic!("rename to {}: {e}", target.display()));
}

/// A copy of `plugin` at `dir/<name>`, for a test to replace later.
fn plugin_copy(dir: &TempDir, plugin: &str, name: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::copy(plugin, &path).unwrap_or_else(|e| panic!("copy {plugin} to {}: {e}", path.display()));
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

// ---------------------------------------------------------------------------
// Control: `weir reload`, `weir status`, and the same requests over NATS

/// Sends a request to `weir.control.<instance>.<what>` and parses the JSON
/// reply.
async fn control(client: &Client, instance: &str, what: &str) -> Result<Value, String> {
    let subject = format!("weir.control.{instance}.{what}");
    let request = async_nats::Request::new().payload(Bytes::new()).timeout(Some(CLI_TIMEOUT));
    match tokio::time::timeout(CLI_TIMEOUT + Duration::from_secs(1), client.send_request(subject.clone(), request)).await {
        Err(_) => Err(format!("{subject}: no reply within {CLI_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("{subject}: {e}")),
        Ok(Ok(reply)) => {
            serde_json::from_slice(&reply.payload).map_err(|e| format!("{subject}: reply is not JSON ({e}): {}", String::from_utf8_lossy(&reply.payload)))
        }
    }
}

/// Whether `v` looks like a pipeline version: 12 hex digits.
fn is_version(v: &str) -> bool {
    v.len() == 12 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Name → version of every running pipeline, from the status request.
async fn running_versions(client: &Client, instance: &str) -> Result<BTreeMap<String, String>, String> {
    let status = control(client, instance, "status").await?;
    let pipelines = status["pipelines"].as_array().ok_or_else(|| format!("no `pipelines` list in {status}"))?;
    let mut versions = BTreeMap::new();
    for p in pipelines {
        let name = p["name"].as_str().ok_or_else(|| format!("a pipeline without `name` in {status}"))?;
        let version = p["version"].as_str().ok_or_else(|| format!("pipeline {name} has no `version` in {status}"))?;
        if !is_version(version) {
            return Err(format!("pipeline {name}: version {version:?} is not 12 hex digits"));
        }
        versions.insert(name.to_string(), version.to_string());
    }
    Ok(versions)
}

/// The version pipeline `name` runs, once it runs one not in `known` (all of
/// the versions it ran before); waits up to [`RELOAD_TIMEOUT`].
async fn wait_new_version(client: &Client, instance: &str, name: &str, known: &[String]) -> String {
    eventually(&format!("pipeline {name} to run a version other than {known:?}"), RELOAD_TIMEOUT, || async {
        let versions = running_versions(client, instance).await?;
        match versions.get(name) {
            Some(v) if !known.contains(v) => Ok(v.clone()),
            Some(v) => Err(format!("still version {v}")),
            None => Err(format!("{name} is not running: {versions:?}")),
        }
    })
    .await
}

/// The version pipeline `name` runs (waits up to 10 s for it to be listed).
async fn current_version(client: &Client, instance: &str, name: &str) -> String {
    eventually(&format!("the status of {instance} to list pipeline {name} with a version"), Duration::from_secs(10), || async {
        let versions = running_versions(client, instance).await?;
        versions.get(name).cloned().ok_or_else(|| format!("{name} is not listed: {versions:?}"))
    })
    .await
}

/// How many reloads weir logged (`reloaded:` lines).
fn reloads_logged(weir: &Weir) -> usize {
    weir.stderr().matches("reloaded:").count()
}

/// Waits (blocking, bounded) for weir to log more than `before` reloads.
fn wait_reload_logged(weir: &Weir, before: usize, what: &str) {
    let logged = weir.wait_for_stderr(RELOAD_TIMEOUT, |text| text.matches("reloaded:").count() > before);
    assert!(logged, "{what}: weir logged no `reloaded:` line within {RELOAD_TIMEOUT:?} (or exited); its stderr:\n{}", weir.stderr());
}

/// The single `weir-version` header of `message` (panics if there is none,
/// several, or one that is not a version).
fn version_of(message: &Message) -> String {
    let values: Vec<String> = message
        .headers
        .as_ref()
        .map(|h| h.get_all("weir-version").map(|v| v.as_str().to_string()).collect())
        .unwrap_or_default();
    assert_eq!(values.len(), 1, "exactly one weir-version header expected: {}", describe(message));
    assert!(is_version(&values[0]), "weir-version is not 12 hex digits: {}", describe(message));
    values.into_iter().next().unwrap()
}

/// The rank of `version` in `versions` (the order the versions became live);
/// panics if it is none of them.
fn rank(versions: &[String], message: &Message) -> usize {
    let version = version_of(message);
    versions
        .iter()
        .position(|v| *v == version)
        .unwrap_or_else(|| panic!("weir-version {version} is none of the versions that ran {versions:?}: {}", describe(message)))
}

/// Panics unless, in the order of `(key, rank)` items (publish order within a
/// key), ranks never decrease.
fn assert_versions_never_go_back(what: &str, mut items: Vec<(u64, u64, usize)>) {
    // (key, id, rank); sort by key then id (publish order).
    items.sort();
    for pair in items.windows(2) {
        let ((k1, id1, r1), (k2, id2, r2)) = (pair[0], pair[1]);
        assert!(
            k1 != k2 || r1 <= r2,
            "{what}: event {id2} was processed by version #{r2} after event {id1} (same subject) by the newer version #{r1}"
        );
    }
}

// ---------------------------------------------------------------------------
// Load generators

/// JetStream load: order(id) with `chaos = "invalid"` when `id % 50 == 7`,
/// subject `in.orders.<id % 4>`, about 1000 events/s until `stop` (at most
/// `max`). Returns how many it published (ids `0..n`).
fn spawn_js_load(js: jetstream::Context, stop: Arc<AtomicBool>, max: u64) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut id = 0;
        while !stop.load(Ordering::SeqCst) && id < max {
            tick.tick().await;
            let mut acks = Vec::new();
            for _ in 0..10 {
                let mut event = order(id);
                if id % 50 == 7 {
                    event["chaos"] = json!("invalid");
                }
                let publish = jetstream::message::PublishMessage::build()
                    .headers(test_headers(id))
                    .message_id(format!("in-{id}"))
                    .payload(serde_json::to_vec(&event).unwrap().into());
                let ack = js
                    .send_publish(format!("in.orders.{}", id % 4), publish)
                    .await
                    .unwrap_or_else(|e| panic!("JetStream publish of {id}: {e}"));
                acks.push(ack);
                id += 1;
            }
            for ack in acks {
                match tokio::time::timeout(Duration::from_secs(10), ack).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => panic!("JetStream publish not acknowledged: {e}"),
                    Err(_) => panic!("JetStream publish: no ack within 10s"),
                }
            }
        }
        id
    })
}

/// Core NATS load: order(id) to `subject`, about 2000 events/s until `stop`
/// (at most `max`). Returns how many it published (ids `0..n`).
fn spawn_core_load(client: Client, subject: &'static str, stop: Arc<AtomicBool>, max: u64) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let mut id = 0;
        while !stop.load(Ordering::SeqCst) && id < max {
            tick.tick().await;
            for _ in 0..10 {
                client
                    .publish_with_headers(subject, test_headers(id), serde_json::to_vec(&order(id)).unwrap().into())
                    .await
                    .unwrap_or_else(|e| panic!("publish {id}: {e}"));
                id += 1;
            }
            flush(&client).await;
        }
        id
    })
}

/// Publishes order(id) for `ids` to stream IN on `in.orders.<id % 4>`.
async fn js_publish_spread(js: &jetstream::Context, ids: std::ops::Range<u64>) {
    for id in ids {
        let mut headers = test_headers(id);
        headers.insert("Nats-Msg-Id", format!("in-{id}").as_str());
        js_publish(js, &format!("in.orders.{}", id % 4), headers, serde_json::to_vec(&order(id)).unwrap()).await;
    }
}

// ---------------------------------------------------------------------------
// 1. Plugin replaced, then a filter's config changed five times, under load

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_reloads_under_jetstream_load_lose_and_double_nothing_and_versions_only_move_forward() {
    const INSTANCE: &str = "reload-load";
    let server = NatsServer::new();
    let (client, js) = server.jetstream().await;
    create_streams(&js).await;

    let plugin_dir = TempDir::new("weir-plugins");
    let stamp_plugin = plugin_copy(&plugin_dir, plugins::NOOP, "stamp.wasm");
    // The filter keeps every test event under each of its configs (price <
    // 20), so every input ends in OUT (or DLQ, for the chaos ones).
    let pipeline = |k: u32| {
        let stages = stage("keep", plugins::FILTER, &format!("{{ all = [ {{ field = \"price\", lt = {} }} ] }}", 100 + k))
            + &stage("stamp", path_str(&stamp_plugin), "{ set = { stamped = true } }")
            + &stage("chaos", plugins::CHAOS, "{}");
        js_pipeline("load", "weir-load", "", &stages)
    };
    let weir = Weir::builder(&server).instance(INSTANCE).workers(2).pipeline("load.toml", &pipeline(0)).start();
    let mut versions = vec![current_version(&client, INSTANCE, "load").await];

    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_js_load(js.clone(), stop.clone(), 40_000);
    wait_stream_len(&js, "OUT", 200, Duration::from_secs(30)).await;

    // Reload 1: the stage's plugin file gets a new build (json-map: the same
    // config now adds `stamped = true`), overwritten in place like `cp` does.
    std::fs::copy(plugins::JSON_MAP, &stamp_plugin).expect("overwrite the stamp plugin");
    versions.push(wait_new_version(&client, INSTANCE, "load", &versions).await);
    eprintln!("[test] plugin replaced: version {}", versions.last().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Reloads 2..=6: the filter's config changes.
    for k in 1..=5 {
        write_pipeline(&weir, "load.toml", &pipeline(k));
        versions.push(wait_new_version(&client, INSTANCE, "load", &versions).await);
        eprintln!("[test] filter config #{k}: version {}", versions.last().unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let published = load.await.expect("the load task");
    eprintln!("[test] published {published} events; versions in order: {versions:?}");
    assert!(reloads_logged(&weir) >= 6, "weir logs `reloaded:` after each reload; its stderr:\n{}", weir.stderr());

    // Every input once in OUT or DLQ.
    let chaos = |id: &u64| id % 50 == 7;
    let expected_dlq = (0..published).filter(chaos).count() as u64;
    eventually("OUT and DLQ to hold every input", Duration::from_secs(60), || async {
        let out = stream_len(&js, "OUT").await?;
        let dlq = stream_len(&js, "DLQ").await?;
        if out + dlq >= published { Ok(()) } else { Err(format!("OUT {out} + DLQ {dlq} of {published}")) }
    })
    .await;
    wait_consumer_done(&js, "IN", "weir-load", Duration::from_secs(30)).await;
    let out = read_stream(&js, "OUT").await;
    let dlq = read_stream(&js, "DLQ").await;
    assert_exactly_once("inputs in OUT + DLQ", out.iter().chain(&dlq).map(id_of), 0..published);
    assert_eq!(dlq.len() as u64, expected_dlq, "the chaos events, and only them, are dead-lettered");
    assert_unique_msg_ids("OUT", &out);

    // Versions: each message names one of the versions that ran; json-map's
    // stamp is there exactly from the plugin replacement on; per subject, in
    // publish order, versions never go back.
    let mut per_version = vec![0usize; versions.len()];
    let mut sequence = Vec::new();
    for message in &out {
        let id = id_of(message);
        let r = rank(&versions, message);
        per_version[r] += 1;
        assert!(!chaos(&id), "chaos event in OUT: {}", describe(message));
        let stamped = json(message).get("stamped") == Some(&json!(true));
        assert_eq!(stamped, r >= 1, "stamped iff processed by a version with the new plugin (#{r}): {}", describe(message));
        sequence.push((id % 4, id, r));
    }
    for letter in &dlq {
        let id = id_of(letter);
        let r = rank(&versions, letter);
        per_version[r] += 1;
        assert!(chaos(&id), "a good event was dead-lettered: {}", describe(letter));
        sequence.push((id % 4, id, r));
    }
    eprintln!("[test] events per version (in the order the versions ran): {per_version:?}");
    assert_versions_never_go_back("OUT + DLQ", sequence);
    assert!(per_version[0] > 0, "the first version processed the events before the reloads");
    assert!(*per_version.last().unwrap() > 0, "the last version processed the events after the last reload");
}

// ---------------------------------------------------------------------------
// 2. Broken reloads change nothing that runs

/// Checks a failed reload: `weir reload` exits 1 with a `failed:` line naming
/// the pipeline file and containing `expect`, and the pipeline still runs
/// `version`.
async fn assert_reload_fails(weir: &Weir, client: &Client, instance: &str, version: &str, what: &str, expect: &str) {
    let cli = weir.cli(&["reload"]).await;
    assert_eq!(cli.code, Some(1), "{what}: `weir reload` exits 1 when a pipeline failed to reload; {cli}");
    let failed = cli.lines_starting("failed:");
    assert!(
        failed.iter().any(|l| l.contains("steady.toml") && l.contains(expect)),
        "{what}: `weir reload` prints `failed: steady (…steady.toml): …{expect}…`; {cli}"
    );
    assert!(cli.lines_starting("changed:").is_empty(), "{what}: nothing changed; {cli}");
    let running = running_versions(client, instance).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(running.get("steady").map(String::as_str), Some(version), "{what}: the old version keeps running");
}

/// Publishes `ids` to IN while weir works on a reload, then checks that they
/// all came out (in OUT, with `gen` and `version`).
async fn assert_still_flowing(js: &jetstream::Context, ids: std::ops::Range<u64>, version: &str, generation: u64, what: &str) {
    let end = ids.end;
    eventually(&format!("{what}: OUT to hold the first {end} events"), Duration::from_secs(30), || async {
        let len = stream_len(js, "OUT").await?;
        if len >= end { Ok(()) } else { Err(format!("{len} in OUT")) }
    })
    .await;
    let out = read_stream(js, "OUT").await;
    for message in out.iter().filter(|m| ids.contains(&id_of(m))) {
        assert_eq!(version_of(message), version, "{what}: processed by the old version: {}", describe(message));
        assert_eq!(json(message)["gen"], json!(generation), "{what}: old config: {}", describe(message));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_reloads_keep_the_old_version_running_and_are_reported() {
    const INSTANCE: &str = "reload-broken";
    let server = NatsServer::new();
    let (client, js) = server.jetstream().await;
    create_streams(&js).await;

    let plugin_dir = TempDir::new("weir-plugins");
    let first = plugin_copy(&plugin_dir, plugins::NOOP, "first.wasm");
    let not_wasm = plugin_dir.path().join("not-a-plugin.wasm");
    std::fs::write(&not_wasm, "this is not WebAssembly\n").unwrap();
    let missing = plugin_dir.path().join("missing.wasm");
    let pipeline = |first: &str, generation: u64, extra: &str| {
        let stages = stage("first", first, "{}") + &stage("map", plugins::JSON_MAP, &format!("{{ set = {{ gen = {generation} }} }}")) + extra;
        js_pipeline("steady", "weir-steady", "", &stages)
    };
    let good = pipeline(path_str(&first), 0, "");
    let weir = Weir::builder(&server).instance(INSTANCE).workers(2).pipeline("steady.toml", &good).start();
    let v0 = current_version(&client, INSTANCE, "steady").await;

    js_publish_spread(&js, 0..100).await;
    assert_still_flowing(&js, 0..100, &v0, 0, "before any reload").await;

    let broken_toml = good.replacen("[sink]", "[sink", 1);
    assert_ne!(broken_toml, good);
    let fail_init = pipeline(path_str(&first), 0, &stage("chaos", plugins::CHAOS, r#"{ fail_init = "refusing to start on purpose" }"#));
    let cases: [(&str, String, &str); 4] = [
        ("a TOML syntax error", broken_toml, "steady.toml:"),
        ("a missing plugin file", pipeline(path_str(&missing), 0, ""), "missing.wasm"),
        ("a stage whose init fails", fail_init, "refusing to start on purpose"),
        ("a plugin that is not WebAssembly", pipeline(path_str(&not_wasm), 0, ""), "not-a-plugin.wasm"),
    ];
    let mut next = 100;
    for (what, toml, expect) in cases {
        let before = reloads_logged(&weir);
        write_pipeline(&weir, "steady.toml", &toml);
        // Events published while weir tries the broken file.
        js_publish_spread(&js, next..next + 50).await;
        wait_reload_logged(&weir, before, what);
        assert_reload_fails(&weir, &client, INSTANCE, &v0, what, expect).await;
        js_publish_spread(&js, next + 50..next + 100).await;
        assert_still_flowing(&js, next..next + 100, &v0, 0, what).await;
        next += 100;
    }

    // The TOML error names the file and line, in the reply over NATS too.
    write_pipeline(&weir, "steady.toml", &good.replacen("[sink]", "[sink", 1));
    let reply = control(&client, INSTANCE, "reload").await.expect("a reload reply");
    let failed = reply["failed"].as_array().unwrap_or_else(|| panic!("no `failed` list in {reply}"));
    assert_eq!(failed.len(), 1, "one failure: {reply}");
    assert!(failed[0]["file"].as_str().is_some_and(|f| f.ends_with("steady.toml")), "the failure names the file: {reply}");
    let error = failed[0]["error"].as_str().unwrap_or_default();
    let line_given = error
        .split("steady.toml:")
        .nth(1)
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    assert!(line_given, "a TOML error says file:line: {reply}");
    for key in ["added", "changed", "removed"] {
        assert_eq!(reply[key], json!([]), "a failed reload changes nothing: {reply}");
    }

    // The good file back: nothing to change.
    write_pipeline(&weir, "steady.toml", &good);
    let cli = weir.cli(&["reload"]).await;
    assert_eq!(cli.code, Some(0), "the running version's file is back; {cli}");
    assert!(cli.lines_starting("unchanged:").iter().any(|l| l.contains("steady")), "steady is unchanged; {cli}");

    // A plugin file the pipeline uses, overwritten in place with garbage.
    let before = reloads_logged(&weir);
    std::fs::write(&first, "garbage, not a component").unwrap();
    js_publish_spread(&js, next..next + 50).await;
    wait_reload_logged(&weir, before, "a used plugin overwritten with garbage");
    assert_reload_fails(&weir, &client, INSTANCE, &v0, "a used plugin overwritten with garbage", "first.wasm").await;
    js_publish_spread(&js, next + 50..next + 100).await;
    assert_still_flowing(&js, next..next + 100, &v0, 0, "a used plugin overwritten with garbage").await;
    next += 100;

    // The plugin back, and a real change: it goes live.
    std::fs::copy(plugins::NOOP, &first).unwrap();
    write_pipeline(&weir, "steady.toml", &pipeline(path_str(&first), 1, ""));
    let cli = weir.cli(&["reload"]).await;
    assert_eq!(cli.code, Some(0), "a good reload exits 0; {cli}");
    assert!(cli.lines_starting("failed:").is_empty(), "nothing failed; {cli}");
    let v1 = wait_new_version(&client, INSTANCE, "steady", std::slice::from_ref(&v0)).await;
    js_publish_spread(&js, next..next + 100).await;
    next += 100;
    eventually("OUT to hold every event", Duration::from_secs(30), || async {
        let len = stream_len(&js, "OUT").await?;
        if len >= next { Ok(()) } else { Err(format!("{len} of {next}")) }
    })
    .await;
    wait_consumer_done(&js, "IN", "weir-steady", Duration::from_secs(30)).await;
    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("every event in OUT", out.iter().map(id_of), 0..next);
    for message in out.iter().filter(|m| id_of(m) >= next - 100) {
        assert_eq!(
            version_of(message),
            v1,
            "published after the status reported version {v1}, so processed by it (not by the old {v0}): {}",
            describe(message)
        );
        assert_eq!(json(message)["gen"], json!(1), "the new config: {}", describe(message));
    }
    assert_eq!(stream_len(&js, "DLQ").await.unwrap(), 0, "no dead letters");
}

// ---------------------------------------------------------------------------
// 3. Pipeline files added and removed while running

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_file_starts_a_pipeline_and_a_removed_one_stops_it() {
    const INSTANCE: &str = "reload-files";
    let server = NatsServer::new();
    let client = server.client().await;
    let alpha = core_pipeline("alpha", "a.>", &stage("noop", plugins::NOOP, "{}"));
    let beta = core_pipeline("beta", "b.>", &stage("map", plugins::JSON_MAP, r#"{ set = { by = "beta" } }"#));
    let weir = Weir::builder(&server).instance(INSTANCE).pipeline("alpha.toml", &alpha).start();
    let alpha_version = current_version(&client, INSTANCE, "alpha").await;
    let mut out = subscribe(&client, "out.>").await;

    publish_orders(&client, "a.x", 0..50).await;
    let got = collect_exactly(&mut out, "alpha alone", 50, Duration::from_secs(10), Duration::from_millis(200)).await;
    assert!(got.iter().all(|m| version_of(m) == alpha_version));

    // A new file starts a pipeline.
    write_pipeline(&weir, "beta.toml", &beta);
    let beta_version = current_version(&client, INSTANCE, "beta").await;
    assert_ne!(beta_version, alpha_version);
    let cli = weir.cli(&["reload"]).await;
    assert_eq!(cli.code, Some(0), "{cli}");
    let listed = |prefixes: &[&str], name: &str| {
        prefixes
            .iter()
            .any(|p| cli.lines_starting(p).iter().any(|l| l.split_whitespace().nth(1) == Some(name)))
    };
    assert!(listed(&["unchanged:"], "alpha"), "alpha is unchanged; {cli}");
    // The watcher may have added beta before this reload ran.
    assert!(listed(&["added:", "unchanged:"], "beta"), "beta is added (or, if the watcher was first, unchanged); {cli}");

    publish_orders(&client, "a.x", 100..150).await;
    publish_orders(&client, "b.x", 200..250).await;
    let got = collect_exactly(&mut out, "alpha and beta", 100, Duration::from_secs(10), Duration::from_millis(300)).await;
    let (from_beta, from_alpha): (Vec<&Message>, Vec<&Message>) = got.iter().partition(|m| m.subject.as_str() == "out.b.x");
    assert_exactly_once("alpha's outputs", from_alpha.iter().map(|m| id_of(m)), 100..150);
    assert_exactly_once("beta's outputs", from_beta.iter().map(|m| id_of(m)), 200..250);
    for m in &from_alpha {
        assert_eq!(version_of(m), alpha_version, "alpha is untouched: {}", describe(m));
    }
    for m in &from_beta {
        assert_eq!(version_of(m), beta_version, "{}", describe(m));
        assert_eq!(json(m)["by"], "beta", "{}", describe(m));
        assert_eq!(header(m, "weir-pipeline").as_deref(), Some("beta"), "{}", describe(m));
    }

    // `weir status` lists both with their versions.
    let status = weir.cli(&["status"]).await;
    assert_eq!(status.code, Some(0), "{status}");
    for (name, version) in [("alpha", &alpha_version), ("beta", &beta_version)] {
        assert!(
            status
                .stdout
                .lines()
                .any(|l| l.split_whitespace().any(|w| w == name) && l.contains(version.as_str())),
            "`weir status` prints a line with {name} and its version {version}; {status}"
        );
    }

    // A removed file stops its pipeline; the other is unaffected.
    std::fs::remove_file(weir.pipelines_dir().join("beta.toml")).unwrap();
    eventually("beta to stop", RELOAD_TIMEOUT, || async {
        let versions = running_versions(&client, INSTANCE).await?;
        if versions.contains_key("beta") { Err(format!("{versions:?}")) } else { Ok(()) }
    })
    .await;
    assert_eq!(running_versions(&client, INSTANCE).await.unwrap().get("alpha"), Some(&alpha_version));
    publish_orders(&client, "b.x", 300..350).await;
    publish_orders(&client, "a.x", 400..450).await;
    let got = collect_exactly(&mut out, "alpha after beta's removal", 50, Duration::from_secs(10), Duration::from_secs(1)).await;
    assert_exactly_once("alpha's outputs (and nothing of beta's)", got.iter().map(id_of), 400..450);
    assert!(got.iter().all(|m| version_of(m) == alpha_version));
    assert!(reloads_logged(&weir) >= 2, "weir logs `reloaded:`; its stderr:\n{}", weir.stderr());
}

// ---------------------------------------------------------------------------
// 4. A core NATS source kept across reloads loses nothing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_source_kept_across_reloads_loses_nothing() {
    const INSTANCE: &str = "reload-core";
    let server = NatsServer::new();
    let client = server.client().await;
    let pipeline = |generation: u64| core_pipeline("relay", "in.>", &stage("map", plugins::JSON_MAP, &format!("{{ set = {{ gen = {generation} }} }}")));
    let weir = Weir::builder(&server).instance(INSTANCE).workers(2).pipeline("relay.toml", &pipeline(0)).start();
    let mut versions = vec![current_version(&client, INSTANCE, "relay").await];
    let mut out = subscribe(&client, "out.>").await;

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = server.client().await;
    let load = spawn_core_load(publisher, "in.orders", stop.clone(), 60_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for generation in 1..=3 {
        write_pipeline(&weir, "relay.toml", &pipeline(generation));
        versions.push(wait_new_version(&client, INSTANCE, "relay", &versions).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let published = load.await.expect("the load task");
    eprintln!("[test] published {published} core events; versions {versions:?}");

    let got = collect_exactly(&mut out, "every event published", published as usize, Duration::from_secs(30), Duration::from_millis(500)).await;
    assert_exactly_once("outputs", got.iter().map(id_of), 0..published);
    let mut sequence = Vec::new();
    for message in &got {
        let r = rank(&versions, message);
        assert_eq!(json(message)["gen"], json!(r), "the config of the version that processed it: {}", describe(message));
        sequence.push((0, id_of(message), r));
    }
    assert_versions_never_go_back("in.orders", sequence);
    assert!(!weir.stderr().to_lowercase().contains("slow consumer"), "weir fell behind; its stderr:\n{}", weir.stderr());
}

// ---------------------------------------------------------------------------
// 5. SIGHUP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    const INSTANCE: &str = "reload-hup";
    let server = NatsServer::new();
    let client = server.client().await;
    let plugin_dir = TempDir::new("weir-plugins");
    let pipeline = core_pipeline("hup", "in.>", &stage("noop", plugins::NOOP, "{}"));
    let mut weir = Weir::builder(&server).instance(INSTANCE).pipeline("hup.toml", &pipeline).start();
    let v0 = current_version(&client, INSTANCE, "hup").await;
    let mut out = subscribe(&client, "out.>").await;

    // Nothing changed: SIGHUP reloads, finds everything unchanged, and weir
    // keeps running the same version (SIGHUP's default action would kill it).
    let before = reloads_logged(&weir);
    weir.signal(libc::SIGHUP);
    wait_reload_logged(&weir, before, "SIGHUP");
    assert!(weir.is_running(), "weir survives SIGHUP; its stderr:\n{}", weir.stderr());
    assert_eq!(running_versions(&client, INSTANCE).await.unwrap().get("hup"), Some(&v0));
    publish_orders(&client, "in.x", 0..20).await;
    let got = collect_exactly(&mut out, "after SIGHUP", 20, Duration::from_secs(10), Duration::from_millis(200)).await;
    assert!(got.iter().all(|m| version_of(m) == v0));

    // A change picked up by SIGHUP at once (the watcher may race it; either
    // way the new version must be live promptly).
    let chaos = plugin_copy(&plugin_dir, plugins::CHAOS, "chaos.wasm");
    let changed = core_pipeline("hup", "in.>", &stage("chaos", path_str(&chaos), "{}"));
    write_pipeline(&weir, "hup.toml", &changed);
    weir.signal(libc::SIGHUP);
    let v1 = wait_new_version(&client, INSTANCE, "hup", std::slice::from_ref(&v0)).await;
    assert!(weir.is_running(), "weir survives SIGHUP; its stderr:\n{}", weir.stderr());
    publish_orders(&client, "in.x", 100..120).await;
    let got = collect_exactly(&mut out, "after the second SIGHUP", 20, Duration::from_secs(10), Duration::from_millis(200)).await;
    for m in &got {
        assert_eq!(
            version_of(m),
            v1,
            "published after the status reported version {v1}, so processed by it (not by the old {v0}): {}",
            describe(m)
        );
    }
}

// ---------------------------------------------------------------------------
// 6. A new version that cannot start never stops the old one

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_cannot_start_leaves_the_old_one_running() {
    const INSTANCE: &str = "reload-start";
    let server = NatsServer::new();
    let (client, js) = server.jetstream().await;
    create_streams(&js).await;
    // A push consumer on IN: weir pulls, so it cannot bind to it.
    js.get_stream("IN")
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::push::Config {
            durable_name: Some("pushed".into()),
            deliver_subject: "deliver.pushed".into(),
            ..Default::default()
        })
        .await
        .expect("create a push consumer");

    let pipeline =
        |generation: u64| js_pipeline("steady", "weir-steady", "", &stage("map", plugins::JSON_MAP, &format!("{{ set = {{ gen = {generation} }} }}")));
    let good = pipeline(0);
    let metrics = format!("127.0.0.1:{}", free_port());
    let weir = Weir::builder(&server)
        .instance(INSTANCE)
        .workers(2)
        .metrics(&metrics)
        .pipeline("steady.toml", &good)
        .start();
    let v0 = current_version(&client, INSTANCE, "steady").await;
    js_publish_spread(&js, 0..100).await;
    assert_still_flowing(&js, 0..100, &v0, 0, "before any reload").await;

    let with_kv = good.replace(
        "[sink]",
        &format!(
            "[[stages]]\nname = \"lookup\"\nplugin = {}\ngrants = {{ kv = [\"no-such-bucket\"] }}\n\n[sink]",
            toml_str(plugins::NOOP)
        ),
    );
    let cases: [(&str, String, &str); 5] = [
        ("a source stream that does not exist", good.replace("stream = \"IN\"", "stream = \"NO_INPUT\""), "NO_INPUT"),
        ("a sink stream that does not exist", good.replace("stream = \"OUT\"", "stream = \"NO_OUTPUT\""), "NO_OUTPUT"),
        ("a dead-letter stream that does not exist", good.replace("stream = \"DLQ\"", "stream = \"NO_DLQ\""), "NO_DLQ"),
        (
            "a durable consumer weir cannot pull from",
            good.replace("durable = \"weir-steady\"", "durable = \"pushed\""),
            "push consumer",
        ),
        ("a KV bucket that does not exist", with_kv, "no-such-bucket"),
    ];
    let mut next = 100;
    for (what, toml, expect) in cases {
        write_pipeline(&weir, "steady.toml", &toml);
        js_publish_spread(&js, next..next + 50).await;
        assert_reload_fails(&weir, &client, INSTANCE, &v0, what, expect).await;
        js_publish_spread(&js, next + 50..next + 100).await;
        assert_still_flowing(&js, next..next + 100, &v0, 0, what).await;
        next += 100;
    }
    let status = weir.cli(&["status"]).await;
    assert!(
        status.stdout.lines().any(|l| l.starts_with("steady") && l.contains(&v0)),
        "`weir status` shows the old version running; {status}"
    );
    let body = http_get(&metrics, "/metrics").await;
    let failed: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("weir_reloads_total{result=\"failed\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no weir_reloads_total{{result=\"failed\"}} in\n{body}"));
    assert!(failed >= 5, "every failed reload is counted: {failed}\n{body}");

    // The good file back, with a real change: it goes live, nothing was lost.
    write_pipeline(&weir, "steady.toml", &pipeline(1));
    let v1 = wait_new_version(&client, INSTANCE, "steady", std::slice::from_ref(&v0)).await;
    assert_ne!(v1, v0);
    wait_consumer_done(&js, "IN", "weir-steady", Duration::from_secs(30)).await;
    let out = read_stream(&js, "OUT").await;
    assert_exactly_once("every event in OUT", out.iter().map(id_of), 0..next);
}

/// `GET http://<address><path>`: the body (a plain HTTP/1.0 request, so that
/// the test needs no HTTP client).
async fn http_get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response))
        .await
        .expect("an answer within 10s")
        .unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or(response)
}

// ---------------------------------------------------------------------------
// 7. A renamed pipeline file: the new pipeline starts before the old stops

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_pipeline_file_loses_nothing_under_load() {
    const INSTANCE: &str = "reload-rename";
    let server = NatsServer::new();
    let client = server.client().await;
    // The same work under another name; a queue group, so that while both run
    // each event goes to one of them.
    let named = |name: &str| {
        core_pipeline(name, "in.>", &stage("map", plugins::JSON_MAP, &format!("{{ set = {{ by = \"{name}\" }} }}")))
            .replace("[source]\nsubject = \"in.>\"", "[source]\nsubject = \"in.>\"\nqueue = \"weir\"")
    };
    let weir = Weir::builder(&server)
        .instance(INSTANCE)
        .workers(2)
        .pipeline("old.toml", &named("old-name"))
        .start();
    current_version(&client, INSTANCE, "old-name").await;
    let mut out = subscribe(&client, "out.>").await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_core_load(server.client().await, "in.orders", stop.clone(), 60_000);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A rename as a deployment tool does it: the new file, then the old gone,
    // seen by one reload.
    std::fs::write(weir.pipelines_dir().join("new.toml"), named("new-name")).unwrap();
    std::fs::remove_file(weir.pipelines_dir().join("old.toml")).unwrap();
    eventually("only new-name to run", RELOAD_TIMEOUT, || async {
        let versions = running_versions(&client, INSTANCE).await?;
        if versions.keys().eq(["new-name"].iter()) { Ok(()) } else { Err(format!("{versions:?}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let published = load.await.expect("the load task");
    let got = collect_exactly(&mut out, "every event published", published as usize, Duration::from_secs(30), Duration::from_millis(500)).await;
    assert_exactly_once("outputs across the rename", got.iter().map(id_of), 0..published);
    let by_new = got.iter().filter(|m| json(m)["by"] == "new-name").count();
    assert!(by_new > 0, "the new pipeline took over");
}
