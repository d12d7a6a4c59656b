//! The chain of stages in one process, with real plugins in real wasmtime:
//! the stage contract (drop, map, split, route), and every way a plugin or an
//! event can be bad — each must end as a typed dead letter while the other
//! events go on.

use std::path::Path;

use weir::config;
use weir::engine::{Engine, EngineOptions};
use weir::event::{DeadLetter, ErrorKind, Event};
use weir::pipeline::{Blueprint, Chain, Outcome};
use weir_tests::plugins;

/// A pipeline with `stages` (TOML `[[stages]]` tables, `{PLUGIN}` names
/// replaced by the built plugins' paths).
fn pipeline(stages: &str) -> config::Pipeline {
    let text = format!(
        "name = \"t\"\nbatch_size = 64\n[source]\nsubject = \"in.>\"\n[sink]\nsubject = \"out.{{subject}}\"\n[dead_letter]\nsubject = \"dlq\"\n{}",
        stages
            .replace("{FILTER}", plugins::FILTER)
            .replace("{ROUTER}", plugins::ROUTER)
            .replace("{NOOP}", plugins::NOOP)
            .replace("{JSON_MAP}", plugins::JSON_MAP)
            .replace("{CHAOS}", plugins::CHAOS)
    );
    config::parse_pipeline(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn engine() -> Engine {
    Engine::new(&EngineOptions::default()).unwrap()
}

fn chain(stages: &str) -> Chain {
    let (blueprint, _) = Blueprint::build(&engine(), &pipeline(stages)).unwrap_or_else(|e| panic!("{e}"));
    blueprint.chain()
}

fn json(subject: &str, value: serde_json::Value) -> Event {
    Event::new(subject, serde_json::to_vec(&value).unwrap())
}

fn done(outcome: &Outcome) -> &[Event] {
    match outcome {
        Outcome::Done(events) => events,
        Outcome::Dead(d) => panic!("expected outputs, got a dead letter: {d:?}"),
    }
}

fn dead(outcome: &Outcome) -> &DeadLetter {
    match outcome {
        Outcome::Dead(d) => d,
        Outcome::Done(events) => panic!("expected a dead letter, got {events:?}"),
    }
}

const CHAOS: &str = "[[stages]]\nname = \"chaos\"\nplugin = \"{CHAOS}\"\nlimits = { timeout = \"50ms\", memory = \"32MiB\" }\n";

#[test]
fn filter_drops_and_keeps() {
    let mut chain = chain("[[stages]]\nname = \"f\"\nplugin = \"{FILTER}\"\nconfig = { all = [ { field = \"price\", gt = 10 } ] }\n");
    let out = chain.process(vec![
        json("in.a", serde_json::json!({"price": 5})),
        json("in.b", serde_json::json!({"price": 50})),
        json("in.c", serde_json::json!({"name": "no price"})),
    ]);
    assert_eq!(done(&out[0]), &[]);
    assert_eq!(done(&out[1]).len(), 1);
    assert_eq!(done(&out[1])[0].subject, "out.in.b", "the sink template renders {{subject}}");
    assert_eq!(done(&out[2]), &[], "a missing field makes a comparison false");
}

#[test]
fn a_chain_maps_routes_and_keeps_headers() {
    let mut chain = chain(
        "[[stages]]\nname = \"map\"\nplugin = \"{JSON_MAP}\"\nconfig = { set = { seen = true }, remove = [\"secret\"] }\n\
         [[stages]]\nname = \"route\"\nplugin = \"{ROUTER}\"\nconfig = { subject = \"orders.{country}\", default = \"unknown\" }\n",
    );
    let mut event = json("in.orders", serde_json::json!({"country": "DE", "secret": 1, "id": 7}));
    event.headers.push(("trace".into(), "t-1".into()));
    let out = chain.process(vec![event, json("in.orders", serde_json::json!({"id": 8}))]);
    let first = &done(&out[0])[0];
    assert_eq!(first.subject, "out.orders.DE");
    assert_eq!(first.header("trace"), Some("t-1"));
    let body: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(body, serde_json::json!({"country": "DE", "id": 7, "seen": true}));
    assert_eq!(done(&out[1])[0].subject, "out.orders.unknown");
}

/// `benches/floor.wat`, the chain benchmark's measure of the crossing alone,
/// must be a faithful stage: every event comes back exactly as it went in,
/// batch after batch (its bump allocator resets after each call), however
/// large (its memory grows).
#[test]
fn the_benchmarks_floor_stage_hands_every_event_back_unchanged() {
    let component = wat::parse_str(include_str!("../benches/floor.wat")).unwrap();
    let path = std::env::temp_dir().join(format!("weir-test-floor-{}.wasm", std::process::id()));
    std::fs::write(&path, component).unwrap();
    let mut chain = chain(&format!("[[stages]]\nname = \"floor\"\nplugin = {}\n", weir_tests::harness::toml_str(path.to_str().unwrap())));
    let mut with_headers = Event::new("in.a", "{}");
    with_headers.headers = vec![("h".into(), "1".into()), ("h".into(), "2".into()), ("x-trace".into(), "t".into())];
    let inputs = vec![with_headers, Event::new("in.b", Vec::new()), Event::new("in.c", vec![0xff, 0x00, 0xfe]), Event::new("in.d", vec![b'z'; 3 << 20])];
    for _ in 0..3 {
        let out = chain.process(inputs.clone());
        assert_eq!(out.len(), inputs.len());
        for (outcome, input) in out.iter().zip(&inputs) {
            let outputs = done(outcome);
            assert_eq!(outputs.len(), 1);
            assert_eq!(outputs[0].subject, format!("out.{}", input.subject));
            assert_eq!(outputs[0].headers, input.headers);
            assert_eq!(outputs[0].payload, input.payload);
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_split_yields_every_part_in_order() {
    let mut chain = chain(CHAOS);
    let out = chain.process(vec![json("in.x", serde_json::json!({"chaos": "split", "n": 3}))]);
    let parts = done(&out[0]);
    assert_eq!(parts.len(), 3);
    let numbers: Vec<_> = parts.iter().map(|e| e.header("chaos-part").unwrap().to_owned()).collect();
    assert_eq!(numbers, ["0", "1", "2"]);
}

/// For each misbehaviour: a batch of five where the third is the culprit.
/// Only the culprit is dead-lettered, with the right kind and a message that
/// says what happened; the four others come through.
fn only_the_culprit_fails(culprit: serde_json::Value, kind: ErrorKind, says: &str) {
    let mut chain = chain(CHAOS);
    let mut events: Vec<Event> = (0..5).map(|i| json("in.x", serde_json::json!({"n": i}))).collect();
    events[2] = json("in.bad", culprit.clone());
    let original = events[2].clone();
    let out = chain.process(events);
    for (i, o) in out.iter().enumerate() {
        if i == 2 {
            let d = dead(o);
            assert_eq!(d.kind, kind, "{culprit}: {d:?}");
            assert_eq!(d.stage, "chaos");
            assert!(d.message.contains(says), "{culprit}: message {:?} should contain {says:?}", d.message);
            assert_eq!(d.event, original, "the dead letter carries the original event, untouched");
        } else {
            assert_eq!(done(o).len(), 1, "event {i} must pass: {o:?}");
        }
    }
    // The chain goes on with a fresh instance.
    let again = chain.process(vec![json("in.x", serde_json::json!({"n": 9}))]);
    assert_eq!(done(&again[0]).len(), 1);
}

#[test]
fn a_panic_dead_letters_only_its_event_with_the_panic_message() {
    only_the_culprit_fails(serde_json::json!({"chaos": "panic"}), ErrorKind::Trap, "chaos: asked to panic");
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    only_the_culprit_fails(serde_json::json!({"chaos": "loop"}), ErrorKind::Timeout, "deadline of 50 ms");
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    only_the_culprit_fails(serde_json::json!({"chaos": "alloc", "bytes": 256 << 20}), ErrorKind::Memory, "over its limit of 33554432 bytes");
}

#[test]
fn a_wrong_number_of_results_is_a_bad_output() {
    only_the_culprit_fails(serde_json::json!({"chaos": "wrong-count"}), ErrorKind::BadOutput, "results for 1 events");
}

#[test]
fn stage_errors_are_dead_lettered_with_their_message() {
    only_the_culprit_fails(serde_json::json!({"chaos": "invalid"}), ErrorKind::Invalid, "chaos: asked to be invalid");
    only_the_culprit_fails(serde_json::json!({"chaos": "retry"}), ErrorKind::Retry, "chaos: asked to retry");
}

#[test]
fn an_output_subject_that_cannot_be_published_is_a_bad_output() {
    let mut chain = chain(CHAOS);
    let out = chain.process(vec![json("in.x", serde_json::json!({"chaos": "route", "to": "has space"}))]);
    let d = dead(&out[0]);
    assert_eq!((d.kind, d.stage.as_str()), (ErrorKind::BadOutput, "sink"));
    assert!(d.message.contains("has space"), "{}", d.message);
}

#[test]
fn a_failing_init_fails_the_build_with_its_message() {
    let p = pipeline("[[stages]]\nname = \"c\"\nplugin = \"{CHAOS}\"\nconfig = { fail_init = \"no model file\" }\n");
    let e = Blueprint::build(&engine(), &p).err().expect("init must fail").to_string();
    assert!(e.contains("stage \"c\""), "{e}");
    assert!(e.contains("init refused the configuration: no model file"), "{e}");
}

#[test]
fn a_bad_filter_config_is_refused_by_init() {
    let p = pipeline("[[stages]]\nname = \"f\"\nplugin = \"{FILTER}\"\nconfig = { all = [ { field = \"x\", gtt = 1 } ] }\n");
    let e = Blueprint::build(&engine(), &p).err().expect("init must fail").to_string();
    assert!(e.contains("gtt"), "{e}");
}

#[test]
fn bad_payloads_get_clear_dead_letters() {
    let mut chain = chain("[[stages]]\nname = \"f\"\nplugin = \"{FILTER}\"\nconfig = { all = [ { field = \"price\", gt = 10 } ] }\n");
    let out = chain.process(vec![
        Event::new("in.a", b"not json".to_vec()),
        Event::new("in.b", vec![0xff, 0xfe, 0x00, 0x80]),
        Event::new("in.c", Vec::new()),
    ]);
    for o in &out {
        let d = dead(o);
        assert_eq!(d.kind, ErrorKind::Invalid);
        assert!(d.message.contains("not valid JSON"), "{}", d.message);
    }
    assert_eq!(dead(&out[1]).event.payload, vec![0xff, 0xfe, 0x00, 0x80], "non-UTF-8 bytes are kept as they were");
}

#[test]
fn a_ten_mebibyte_payload_passes_through_or_is_refused_cleanly() {
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(10 << 20)).into_bytes();
    let mut roomy = chain("[[stages]]\nname = \"noop\"\nplugin = \"{NOOP}\"\n");
    let out = roomy.process(vec![Event::new("in.big", big.clone()), json("in.small", serde_json::json!({}))]);
    assert_eq!(done(&out[0])[0].payload.len(), big.len(), "the default 64 MiB limit fits a 10 MiB event");
    assert_eq!(done(&out[1]).len(), 1);

    let mut tight = chain("[[stages]]\nname = \"map\"\nplugin = \"{JSON_MAP}\"\nlimits = { memory = \"16MiB\" }\nconfig = { set = { a = 1 } }\n");
    let out = tight.process(vec![Event::new("in.big", big), json("in.small", serde_json::json!({}))]);
    let d = dead(&out[0]);
    assert_eq!(d.kind, ErrorKind::Memory, "{d:?}");
    assert_eq!(done(&out[1]).len(), 1, "the small event after it still passes");
}

#[test]
fn a_granted_directory_is_readable_read_only_and_nothing_else_is() {
    let dir = weir_tests::harness::TempDir::new("weir-grant");
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::write(models.join("labels.txt"), "shirt,shoe").unwrap();
    let mut chain = chain(&format!("{CHAOS}grants = {{ dirs = [{}] }}\n", weir_tests::harness::toml_str(&models.display().to_string())));
    let out = chain.process(vec![
        json("in.x", serde_json::json!({"chaos": "read", "path": "/models/labels.txt"})),
        json("in.x", serde_json::json!({"chaos": "read", "path": "/etc/hostname"})),
    ]);
    assert_eq!(done(&out[0])[0].payload, &b"shirt,shoe"[..], "the granted directory is seen at /models");
    let refused = dead(&out[1]);
    assert_eq!(refused.kind, ErrorKind::Invalid);
    assert!(refused.message.starts_with("cannot read /etc/hostname"), "{}", refused.message);
}

#[test]
fn kv_reads_need_a_grant_and_weir_run() {
    let mut granted = chain(&format!("{CHAOS}grants = {{ kv = [\"shops\"] }}\n"));
    let out = granted.process(vec![
        json("in.x", serde_json::json!({"chaos": "kv", "bucket": "shops", "key": "s1"})),
        json("in.x", serde_json::json!({"chaos": "kv", "bucket": "secrets", "key": "s1"})),
    ]);
    let no_nats = dead(&out[0]);
    assert!(
        no_nats
            .message
            .contains("`weir run` mirrors KV buckets from NATS, `weir exec` serves them from files"),
        "{}",
        no_nats.message
    );
    let ungranted = dead(&out[1]);
    assert!(ungranted.message.contains("KV bucket \"secrets\" is not granted to stage \"chaos\""), "{}", ungranted.message);
}

// ---------------------------------------------------------------------------
// Stage candidates (`[stages.candidate]`) in the chain

/// A live json-map stamping `v = "live"`, whose candidate is chaos (passes
/// events through, fails those that ask) in `mode`.
fn with_candidate(mode: &str) -> String {
    format!(
        "[[stages]]\nname = \"split\"\nplugin = \"{{CHAOS}}\"\n[[stages]]\nname = \"stamp\"\nplugin = \"{{JSON_MAP}}\"\nconfig = {{ set = {{ v = \"live\" }} }}\n[stages.candidate]\nplugin = \"{{CHAOS}}\"\nconfig = {{}}\ndecide = \"manual\"\nlimits = {{ timeout = \"20ms\", memory = \"16MiB\" }}\n{mode}\n"
    )
}

fn mixed_batch() -> Vec<Event> {
    (0..40)
        .map(|i| match i % 8 {
            0 => json("in.x", serde_json::json!({ "id": i, "chaos": "panic" })),
            3 => json("in.x", serde_json::json!({ "id": i, "chaos": "split", "n": 2 })),
            5 => json("in.x", serde_json::json!({ "id": i, "chaos": "invalid" })),
            _ => json("in.x", serde_json::json!({ "id": i })),
        })
        .collect()
}

#[test]
fn a_shadow_candidate_never_changes_what_the_chain_does() {
    // chaos is the live first stage too: events asking for it split there,
    // and fail there (panic, invalid) before the candidate sees them. Events
    // reaching the candidate pass through it unchanged (or split again); so
    // every event that reaches the stamp stage differs (the candidate stamps
    // nothing).
    let stages_without =
        "[[stages]]\nname = \"split\"\nplugin = \"{CHAOS}\"\n[[stages]]\nname = \"stamp\"\nplugin = \"{JSON_MAP}\"\nconfig = { set = { v = \"live\" } }\n";
    let expected = chain(stages_without).process(mixed_batch());
    let (blueprint, _) = Blueprint::build(&engine(), &pipeline(&with_candidate("mode = \"shadow\""))).unwrap();
    let mut shadowed = blueprint.chain();
    assert_eq!(shadowed.process(mixed_batch()), expected, "the live outcomes, untouched");
    let report = blueprint.candidates().next().expect("one candidate").report(true);
    let f = &report.figures;
    // 40 inputs: 5 panic and 5 are invalid in the first stage; 5 split in
    // two, whose parts (still asking to split) the candidate splits again.
    assert_eq!(f.compared, 35, "{report:?}");
    assert_eq!(f.differences, [("count".to_owned(), 10), ("payload".to_owned(), 25)].into(), "{report:?}");
    assert_eq!(f.candidate_errors, 0, "{report:?}");
    assert_eq!(report.samples.len(), 10, "the last 10 differences are kept: {report:?}");
}

#[test]
fn a_canary_candidate_that_fails_an_event_hands_it_to_the_live_version() {
    let stages = "[[stages]]\nname = \"stamp\"\nplugin = \"{JSON_MAP}\"\nconfig = { set = { v = \"live\" } }\n[stages.candidate]\nplugin = \"{CHAOS}\"\nconfig = {}\ndecide = \"manual\"\nmode = \"canary\"\nshare = 1.0\n";
    let (blueprint, _) = Blueprint::build(&engine(), &pipeline(stages)).unwrap();
    let mut chain = blueprint.chain();
    let outcomes = chain.process(mixed_batch());
    assert_eq!(outcomes.len(), 40);
    for (i, outcome) in outcomes.iter().enumerate() {
        let events = done(outcome);
        let body: serde_json::Value = serde_json::from_slice(&events[0].payload).unwrap();
        match i % 8 {
            // The candidate failed them: the live version stamped them.
            0 | 5 => assert_eq!(body["v"], "live", "{i}: {body}"),
            // The candidate's outputs are published: two parts, unstamped.
            3 => assert_eq!((events.len(), body.get("v")), (2, None), "{i}: {body}"),
            _ => assert_eq!((events.len(), body.get("v")), (1, None), "{i}: {body}"),
        }
    }
    let f = blueprint.candidates().next().unwrap().report(false).figures;
    assert_eq!((f.candidate_events, f.candidate_errors, f.live_events), (40, 10, 10));
}
