//! `weir run` with a core NATS source: events flow through a chain of stages
//! to the sink subject, with their headers; subject templates; order; signals.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_tests::harness::*;
use weir_tests::plugins;

/// The three-stage pipeline of the core path: drop cheap orders, edit the
/// fields, route by country.
fn orders_pipeline() -> String {
    format!(
        r#"
name = "orders"

[source]
subject = "in.>"

[[stages]]
name = "cheap-out"
plugin = {filter}
config = {{ all = [ {{ field = "price", gt = 10 }} ] }}

[[stages]]
name = "stamp"
plugin = {json_map}
config = {{ remove = ["note"], rename = {{ customer = "buyer" }}, set = {{ processed_by = "weir" }} }}

[[stages]]
name = "route"
plugin = {router}
config = {{ subject = "orders.{{country}}", default = "unknown" }}

[sink]
subject = "out.{{subject}}"
"#,
        filter = toml_str(plugins::FILTER),
        json_map = toml_str(plugins::JSON_MAP),
        router = toml_str(plugins::ROUTER),
    )
}

/// What the orders pipeline makes of `event`.
fn mapped(event: &Value) -> Value {
    let mut out = event.as_object().expect("an object").clone();
    out.remove("note");
    if let Some(customer) = out.remove("customer") {
        out.insert("buyer".into(), customer);
    }
    out.insert("processed_by".into(), json!("weir"));
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_events_flow_through_filter_map_and_router() {
    let server = NatsServer::new();
    let _weir = Weir::builder(&server).workers(2).pipeline("orders.toml", &orders_pipeline()).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;

    let events = publish_orders(&client, "in.orders.new", 0..1000).await;
    // An order without a country goes to the router's default token.
    let mut headers = test_headers(5000);
    headers.insert("trace", "no-country");
    let homeless = json!({ "id": 5000, "price": 99, "customer": "c", "note": "n" });
    publish(&client, "in.orders.new", headers, serde_json::to_vec(&homeless).unwrap()).await;

    let kept: Vec<&Value> = events.iter().filter(|e| e["price"].as_u64().unwrap() > 10).collect();
    assert_eq!(kept.len(), 450, "price = id % 20, so 9 orders in 20 are over 10");
    let got = collect_exactly(&mut out, "outputs on out.>", kept.len() + 1, Duration::from_secs(30), Duration::from_millis(500)).await;

    let mut ids = BTreeSet::new();
    for message in &got {
        let id = id_of(message);
        assert!(ids.insert(id), "order {id} was published twice: {}", describe(message));
        assert_eq!(header(message, "weir-pipeline").as_deref(), Some("orders"), "{}", describe(message));
        assert_eq!(header(message, TEST_ID_HEADER), Some(id.to_string()), "input headers are kept: {}", describe(message));
        if id == 5000 {
            assert_eq!(message.subject.as_str(), "out.orders.unknown", "{}", describe(message));
            assert_eq!(header(message, "trace").as_deref(), Some("no-country"), "{}", describe(message));
            assert_eq!(json(message), mapped(&homeless));
            continue;
        }
        let input = &events[id as usize];
        assert!(input["price"].as_u64().unwrap() > 10, "order {id} should have been filtered out");
        assert_eq!(message.subject.as_str(), format!("out.orders.{}", input["country"].as_str().unwrap()));
        assert_eq!(json(message), mapped(input), "order {id} as the json-map stage edits it");
    }
    let expected: BTreeSet<u64> = kept.iter().map(|e| e["id"].as_u64().unwrap()).chain([5000]).collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_templates_and_stage_routing_and_splitting() {
    let server = NatsServer::new();
    // {2} and {input} read the input subject; {subject} is the subject after
    // the stages, which the chaos stage changes ("route") or keeps.
    let pipeline = format!(
        r#"
name = "shapes"

[source]
subject = "tpl.>"

[[stages]]
name = "chaos"
plugin = {chaos}

[sink]
subject = "out.{{2}}.{{subject}}.from.{{input}}"
"#,
        chaos = toml_str(plugins::CHAOS)
    );
    let _weir = Weir::builder(&server).pipeline("shapes.toml", &pipeline).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;

    let plain = json!({ "id": 1 });
    let route = json!({ "id": 2, "chaos": "route", "to": "special.lane" });
    let split = json!({ "id": 3, "chaos": "split", "n": 3 });
    for (id, event) in [(1, &plain), (2, &route), (3, &split)] {
        publish(&client, "tpl.eu.orders", test_headers(id), serde_json::to_vec(event).unwrap()).await;
    }

    let mut got = collect_exactly(&mut out, "outputs on out.>", 5, Duration::from_secs(30), Duration::from_millis(500)).await;
    got.sort_by_key(|m| (id_of(m), header(m, "chaos-part")));
    let seen: Vec<(String, u64, Option<String>)> = got.iter().map(|m| (m.subject.to_string(), id_of(m), header(m, "chaos-part"))).collect();
    assert_eq!(
        seen,
        vec![
            ("out.eu.tpl.eu.orders.from.tpl.eu.orders".to_string(), 1, None),
            ("out.eu.special.lane.from.tpl.eu.orders".to_string(), 2, None),
            ("out.eu.tpl.eu.orders.from.tpl.eu.orders".to_string(), 3, Some("0".into())),
            ("out.eu.tpl.eu.orders.from.tpl.eu.orders".to_string(), 3, Some("1".into())),
            ("out.eu.tpl.eu.orders.from.tpl.eu.orders".to_string(), 3, Some("2".into())),
        ],
        "(subject, id, chaos-part) of every output"
    );
    for message in &got {
        assert_eq!(header(message, "weir-pipeline").as_deref(), Some("shapes"), "{}", describe(message));
        assert_eq!(header(message, TEST_ID_HEADER), Some(id_of(message).to_string()), "{}", describe(message));
    }
    assert_eq!(json(&got[0]), plain, "a pass-through event is unchanged");
}

/// `[sink] stamp = false`: outputs carry the input's and the stages' headers
/// but not weir's own; dead letters still say where they came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamp_false_leaves_weirs_headers_off_outputs_but_not_off_dead_letters() {
    let server = NatsServer::new();
    let pipeline = format!(
        r#"
name = "bare"

[source]
subject = "bare.in"

[[stages]]
name = "chaos"
plugin = {chaos}

[sink]
subject = "bare.out"
stamp = false

[dead_letter]
subject = "bare.dlq"
"#,
        chaos = toml_str(plugins::CHAOS)
    );
    let _weir = Weir::builder(&server).pipeline("bare.toml", &pipeline).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "bare.out").await;
    let mut dlq = subscribe(&client, "bare.dlq").await;

    publish(&client, "bare.in", test_headers(1), serde_json::to_vec(&json!({ "id": 1 })).unwrap()).await;
    publish(&client, "bare.in", test_headers(2), serde_json::to_vec(&json!({ "id": 2, "chaos": "invalid" })).unwrap()).await;

    let output = collect_exactly(&mut out, "outputs on bare.out", 1, Duration::from_secs(30), Duration::from_millis(300)).await;
    let output = &output[0];
    assert_eq!(header(output, TEST_ID_HEADER).as_deref(), Some("1"), "the input's headers are kept: {}", describe(output));
    assert_eq!(header(output, "weir-pipeline"), None, "{}", describe(output));
    assert_eq!(header(output, "weir-version"), None, "{}", describe(output));
    assert_eq!(json(output), json!({ "id": 1 }));

    let dead = collect_exactly(&mut dlq, "dead letters on bare.dlq", 1, Duration::from_secs(30), Duration::from_millis(300)).await;
    let dead = &dead[0];
    assert_eq!(header(dead, "weir-pipeline").as_deref(), Some("bare"), "{}", describe(dead));
    assert_eq!(header(dead, "weir-error-kind").as_deref(), Some("invalid"), "{}", describe(dead));
    assert!(header(dead, "weir-version").is_some(), "{}", describe(dead));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_pipeline_keeps_the_order_of_each_subject() {
    let server = NatsServer::new();
    let pipeline = format!(
        r#"
name = "ordered"
ordered = true
batch_size = 8

[source]
subject = "in.>"

[[stages]]
name = "noop"
plugin = {noop}

[sink]
subject = "out.{{subject}}"
"#,
        noop = toml_str(plugins::NOOP)
    );
    let _weir = Weir::builder(&server).workers(2).pipeline("ordered.toml", &pipeline).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;

    // Two subjects interleaved: each keeps its own order.
    for id in 0..2000u64 {
        let subject = if id % 2 == 0 { "in.a" } else { "in.b" };
        client
            .publish_with_headers(subject, test_headers(id), serde_json::to_vec(&order(id)).unwrap().into())
            .await
            .unwrap();
    }
    flush(&client).await;

    let got = collect_exactly(&mut out, "outputs", 2000, Duration::from_secs(30), Duration::from_millis(300)).await;
    for subject in ["out.in.a", "out.in.b"] {
        let ids: Vec<u64> = got.iter().filter(|m| m.subject.as_str() == subject).map(id_of).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids.len(), 1000, "outputs on {subject}");
        assert!(ids == sorted, "outputs on {subject} out of order: {:?}", first_disorder(&ids));
    }
}

fn first_disorder(ids: &[u64]) -> Option<(usize, u64, u64)> {
    ids.windows(2).enumerate().find(|(_, w)| w[0] > w[1]).map(|(i, w)| (i, w[0], w[1]))
}

/// Publishes probe orders (ids from 1,000,000, price 15) until one comes out
/// on `out`, so that the pipeline is known to be flowing (whatever `ready:`
/// promised), then lets the probes still in flight arrive and drops them.
async fn wait_until_flowing(client: &async_nats::Client, out: &mut async_nats::Subscriber) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for probe in 1_000_000u64.. {
        assert!(Instant::now() < deadline, "no output from weir within 15s of publishing probes");
        let event = json!({ "id": probe, "price": 15, "country": "fr" });
        publish(client, "in.orders.new", test_headers(probe), serde_json::to_vec(&event).unwrap()).await;
        if !collect(out, 1, Duration::from_millis(100)).await.is_empty() {
            collect_for(out, Duration::from_millis(200)).await;
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_and_sigterm_exit_zero_promptly() {
    let server = NatsServer::new();
    let mut weir = Weir::builder(&server).shutdown_timeout("5s").pipeline("orders.toml", &orders_pipeline()).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;

    for signal in ["SIGINT", "SIGTERM"] {
        // Whether events right after `ready:` are processed is the next test's
        // business; this one is about signals.
        wait_until_flowing(&client, &mut out).await;
        publish_orders(&client, "in.orders.new", 0..100).await;
        let got = collect(&mut out, 45, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 45, "weir processes events before {signal}");

        let started = Instant::now();
        match signal {
            "SIGINT" => weir.interrupt(),
            _ => weir.terminate(),
        }
        let status = weir.wait_exit(Duration::from_secs(8));
        assert!(status.success(), "weir exits 0 on {signal}, got {status}; stderr:\n{}", weir.stderr());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "with nothing in flight weir exits well within shutdown_timeout; took {:.1?}",
            started.elapsed()
        );
        if signal == "SIGINT" {
            weir.restart();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_right_after_ready_are_processed() {
    let server = NatsServer::new();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    let mut weir = Weir::builder(&server).pipeline("orders.toml", &orders_pipeline()).start();

    // `ready:` is what scripts and operators wait for: from then on, events
    // published on the source subject must be processed. Several restarts,
    // because a race between the two shows only sometimes.
    for round in 0..5u64 {
        if round > 0 {
            weir.interrupt();
            assert!(weir.wait_exit(Duration::from_secs(8)).success());
            weir.restart();
        }
        publish_orders(&client, "in.orders.new", round * 20..round * 20 + 20).await;
        let got = collect(&mut out, 9, Duration::from_secs(10)).await;
        assert_eq!(
            got.len(),
            9,
            "round {round}: events published as soon as weir printed `ready:` were lost ({} of 9 outputs arrived); \
             weir must have its subscriptions in place at the server (subscribe, then flush) before it says ready",
            got.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let server = NatsServer::new();
    // One event that loops for up to 30 s keeps the first shutdown draining.
    let pipeline = format!(
        r#"
name = "stuck"

[source]
subject = "in.>"

[[stages]]
name = "chaos"
plugin = {chaos}
limits = {{ timeout = "30s" }}

[sink]
subject = "out.{{subject}}"
"#,
        chaos = toml_str(plugins::CHAOS)
    );
    let mut weir = Weir::builder(&server).workers(1).shutdown_timeout("60s").pipeline("stuck.toml", &pipeline).start();
    let client = server.client().await;
    publish(&client, "in.x", test_headers(1), serde_json::to_vec(&json!({ "id": 1, "chaos": "loop" })).unwrap()).await;
    // Nothing observable says the event reached the worker; a second is ample
    // on loopback.
    tokio::time::sleep(Duration::from_secs(1)).await;

    weir.interrupt();
    if let Some(status) = weir.try_wait_exit(Duration::from_secs(1)) {
        panic!("weir exited ({status}) on the first signal instead of draining the event in flight");
    }

    let started = Instant::now();
    weir.interrupt();
    let status = weir.wait_exit(Duration::from_secs(5));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a second signal exits at once; took {:.1?} (status {status})",
        started.elapsed()
    );
}

/// Core NATS is at-most-once, but a graceful stop must not throw away what
/// the server already sent to weir: the subscription is drained and every
/// buffered event processed before weir exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_processes_what_was_already_delivered() {
    const N: u64 = 20_000;
    let server = NatsServer::new();
    let mut weir = Weir::builder(&server)
        .workers(1)
        .shutdown_timeout("10s")
        .pipeline("slow.toml", &format!(
            "name = \"slow\"\n[source]\nsubject = \"in.>\"\n[[stages]]\nname = \"map\"\nplugin = {}\nconfig = {{ set = {{ seen = true }} }}\n[sink]\nsubject = \"out.{{subject}}\"\n",
            toml_str(plugins::JSON_MAP)
        ))
        .start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    wait_until_flowing(&client, &mut out).await;

    // A burst larger than one worker clears at once: much of it is still
    // buffered in weir's subscription when the signal arrives.
    publish_orders(&client, "in.burst", 0..N).await;
    weir.terminate();
    let got = collect(&mut out, N as usize, Duration::from_secs(30)).await;
    assert!(weir.wait_exit(Duration::from_secs(15)).success(), "weir exits 0 on SIGTERM");
    assert_exactly_once("burst outputs", got.iter().map(id_of), 0..N);
}

/// A batch goes to an idle worker, not behind one that is busy: while one of
/// two workers is stuck in an endless loop (until its 4 s deadline), events
/// published after it still come through at once, on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_takes_the_next_batch_while_the_other_is_busy() {
    const DEADLINE: Duration = Duration::from_secs(4);
    let pipeline = format!(
        r#"
name = "busy"

[source]
subject = "in"

[[stages]]
name = "chaos"
plugin = {chaos}
limits = {{ timeout = "{}s" }}

[sink]
subject = "out"

[dead_letter]
subject = "dlq"
"#,
        DEADLINE.as_secs(),
        chaos = toml_str(plugins::CHAOS),
    );
    let server = NatsServer::new();
    let _weir = Weir::builder(&server).workers(2).pipeline("busy.toml", &pipeline).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out").await;
    let mut dlq = subscribe(&client, "dlq").await;

    let stuck = serde_json::to_vec(&json!({ "id": 0, "chaos": "loop" })).unwrap();
    publish(&client, "in", test_headers(0), stuck).await;
    // Let the loop reach a worker before anything else arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for id in 1..=3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        publish(&client, "in", test_headers(id), serde_json::to_vec(&order(id)).unwrap()).await;
    }
    let got = collect_exactly(&mut out, "outputs on out", 3, Duration::from_secs(30), Duration::from_millis(200)).await;
    let waited = started.elapsed();
    assert!(
        waited < DEADLINE - Duration::from_secs(1),
        "the events after the endless loop took {waited:?}: they waited for the busy worker (deadline {DEADLINE:?}) while the other was idle"
    );
    let ids: BTreeSet<u64> = got.iter().map(id_of).collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    // The loop itself ends at its deadline, as a dead letter.
    let letters = collect_exactly(&mut dlq, "dead letters", 1, Duration::from_secs(30), Duration::from_millis(200)).await;
    assert_eq!(header(&letters[0], "weir-error-kind").as_deref(), Some("timeout"), "{}", describe(&letters[0]));
}
