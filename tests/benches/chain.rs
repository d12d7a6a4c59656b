//! Per-event cost of the chain in one process, no NATS: 300-byte JSON events,
//! instances reused, default limits on (deadline and memory cap).
//!
//! (a0) the floor of the contract: `floor.wat`, a hand-written stage that
//!      hands every event back with the least a guest can do, so that what
//!      it costs is what the host spends crossing into the sandbox and back;
//! (a1) for orientation, the floor of a contract weir does not have: the
//!      batch crossing as one buffer each way (`flat.wat`, called through
//!      wasmtime directly, with the host encoding and decoding the events);
//! (a) one `noop` stage: what weir itself costs per event;
//! (b) `json-map` in wasm: parse the JSON, add two fields, serialise;
//! (c) the same `json-map` code compiled natively, no wasm;
//! each at batch sizes 1 and 64. Prints ns/event and the ratio (b)/(c).
//!
//! Run with `./dev bench` (or `cargo bench -p weir-tests --bench chain`).

// The weir binary's allocator, for weir and the native baseline alike.
#[global_allocator]
static ALLOCATOR: weir::Allocator = weir::ALLOCATOR;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use weir::config;
use weir::engine::{Engine, EngineOptions};
use weir::event::Event;
use weir::pipeline::{Blueprint, Outcome};
use weir_tests::plugins;

/// Events per measurement round; each round is repeated and the best kept,
/// as the machines this runs on are noisy.
const EVENTS: usize = 64 * 512;
const ROUNDS: usize = 7;

fn event(i: usize) -> Event {
    let payload = format!(
        r#"{{"id":{i},"type":"product.viewed","user":{{"id":"u-{:05}","segment":"returning","country":"DE"}},"product":{{"sku":"SKU-{:06}","title":"Slim fit organic cotton shirt","brand":"Northwind","price":49.95,"currency":"EUR"}},"ts":"2026-11-26T10:15:{:02}Z","ua":"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}}"#,
        i % 100_000,
        i % 1_000_000,
        i % 60
    );
    Event::new("tracking.product.viewed", payload.into_bytes())
}

fn pipeline(batch: usize, stage: &str) -> config::Pipeline {
    let text = format!("name = \"bench\"\nbatch_size = {batch}\n[source]\nsubject = \"in\"\n[sink]\nsubject = \"out\"\n{stage}");
    config::parse_pipeline(&text, Path::new("bench.toml")).expect("bench pipeline parses")
}

const FLOOR: &str = "[[stages]]\nname = \"floor\"\nplugin = \"{FLOOR}\"\n";
const NOOP: &str = "[[stages]]\nname = \"noop\"\nplugin = \"{NOOP}\"\n";
const JSON_MAP: &str = "[[stages]]\nname = \"map\"\nplugin = \"{JSON_MAP}\"\nconfig = { set = { processed_by = \"weir\", score = 0.87 } }\n";

/// Best ns/event over `ROUNDS` of `EVENTS` events through the chain.
fn wasm(engine: &Engine, batch: usize, stage: &str) -> f64 {
    let stage = stage
        .replace("{NOOP}", plugins::NOOP)
        .replace("{JSON_MAP}", plugins::JSON_MAP)
        .replace("{FLOOR}", &floor_plugin());
    let (blueprint, _) = Blueprint::build(engine, &pipeline(batch, &stage)).expect("bench pipeline builds");
    let mut chain = blueprint.chain();
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    best(|| {
        // Batches are made before the clock starts: only the chain is timed.
        let batches: Vec<Vec<Event>> = events.chunks(batch).map(<[Event]>::to_vec).collect();
        let started = Instant::now();
        for b in batches {
            let outcomes = chain.process(b);
            assert!(matches!(outcomes.last(), Some(Outcome::Done(o)) if o.len() == 1), "every event passes");
            black_box(outcomes);
        }
        started.elapsed()
    })
}

/// The same json-map work natively: the plugin crate's own code, called per event.
fn native(batch: usize) -> f64 {
    let config = weir_sdk::Config::from_json(r#"{"set": {"processed_by": "weir", "score": 0.87}}"#).expect("valid JSON");
    let mapping = weir_json_map::Mapping::from_config(&config).expect("valid mapping");
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    best(|| {
        let batches: Vec<Vec<Event>> = events.chunks(batch).map(<[Event]>::to_vec).collect();
        let started = Instant::now();
        for b in batches {
            let out: Vec<Vec<u8>> = b.iter().map(|e| weir_json_map::apply(&mapping, &e.payload).expect("maps")).collect();
            black_box(out);
        }
        started.elapsed()
    })
}

/// `floor.wat` as a component file (in the temporary directory), for a
/// pipeline to load; its path, as it goes into the TOML string.
fn floor_plugin() -> String {
    let component = wat::parse_str(include_str!("floor.wat")).expect("floor.wat is a valid component");
    let path = std::env::temp_dir().join(format!("weir-bench-floor-{}.wasm", std::process::id()));
    std::fs::write(&path, component).expect("write the floor component");
    path.to_str().expect("a UTF-8 temporary directory").to_owned()
}

/// (a1): each batch encoded into one buffer (per event: subject, headers,
/// payload, each length-prefixed), passed to `flat.wat` and back, and the
/// result decoded into events whose payloads share the returned buffer.
/// Deadline on, as in weir; no weir bookkeeping around it.
fn flat(batch: usize) -> f64 {
    use wasmtime::component::{Component, Linker};
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config).expect("engine");
    let component = wat::parse_str(include_str!("flat.wat")).expect("flat.wat is a valid component");
    let component = Component::new(&engine, component).expect("flat.wat compiles");
    let mut store = wasmtime::Store::new(&engine, ());
    // Nothing advances the epoch here: the check runs, the deadline never comes.
    store.set_epoch_deadline(1);
    let instance = Linker::new(&engine).instantiate(&mut store, &component).expect("instantiates");
    let process = instance.get_typed_func::<(&[u8],), (bytes::Bytes,)>(&mut store, "process").expect("process");
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    let mut buffer = Vec::new();
    best(|| {
        let batches: Vec<Vec<Event>> = events.chunks(batch).map(<[Event]>::to_vec).collect();
        let started = Instant::now();
        for b in batches {
            buffer.clear();
            for e in &b {
                encode(e, &mut buffer);
            }
            let (out,) = process.call(&mut store, (&buffer,)).expect("process");
            let outputs = decode(&out);
            assert_eq!(outputs.len(), b.len(), "every event comes back");
            black_box(outputs);
        }
        started.elapsed()
    })
}

fn encode(event: &Event, out: &mut Vec<u8>) {
    let mut put = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    put(event.subject.as_bytes());
    put(&(event.headers.len() as u32).to_le_bytes());
    for (name, value) in &event.headers {
        put(name.as_bytes());
        put(value.as_bytes());
    }
    put(&event.payload);
}

fn decode(buffer: &bytes::Bytes) -> Vec<Event> {
    let mut events = Vec::new();
    let mut at = 0;
    let take = |at: &mut usize| {
        let len = u32::from_le_bytes(buffer[*at..*at + 4].try_into().expect("4 bytes")) as usize;
        let part = buffer.slice(*at + 4..*at + 4 + len);
        *at += 4 + len;
        part
    };
    let text = |b: bytes::Bytes| String::from_utf8(b.to_vec()).expect("UTF-8");
    while at < buffer.len() {
        let subject = text(take(&mut at));
        let count = u32::from_le_bytes(take(&mut at)[..].try_into().expect("a count"));
        let headers = (0..count).map(|_| (text(take(&mut at)), text(take(&mut at)))).collect();
        let payload = take(&mut at);
        events.push(Event { subject, headers, payload });
    }
    events
}

fn best(mut round: impl FnMut() -> Duration) -> f64 {
    round(); // warm-up
    let fastest = (0..ROUNDS).map(|_| round()).min().expect("at least one round");
    fastest.as_nanos() as f64 / EVENTS as f64
}

fn main() {
    // Error paths would otherwise capture a host backtrace per failure.
    // SAFETY: single-threaded at this point, before any other thread starts.
    unsafe { std::env::set_var("RUST_BACKTRACE", "0") };
    let engine = Engine::new(&EngineOptions::default()).expect("engine starts");
    let size = event(0).payload.len();
    println!("chain benchmark: {EVENTS} events of {size} bytes, best of {ROUNDS} rounds, default limits (100ms deadline, 64MiB memory)");
    println!();
    println!("| case | batch 1 (ns/event) | batch 64 (ns/event) |");
    println!("|---|---:|---:|");
    let zero = [wasm(&engine, 1, ""), wasm(&engine, 64, "")];
    println!("| (0) no stage: weir's own bookkeeping | {:.0} | {:.0} |", zero[0], zero[1]);
    let floor = [wasm(&engine, 1, FLOOR), wasm(&engine, 64, FLOOR)];
    println!("| (a0) floor.wat: the contract's crossing alone, no guest work | {:.0} | {:.0} |", floor[0], floor[1]);
    let one_buffer = [flat(1), flat(64)];
    println!(
        "| (a1) for orientation: one buffer each way, a contract weir does not have (flat.wat; no bookkeeping) | {:.0} | {:.0} |",
        one_buffer[0], one_buffer[1]
    );
    let a = [wasm(&engine, 1, NOOP), wasm(&engine, 64, NOOP)];
    println!("| (a) noop stage (wasm) | {:.0} | {:.0} |", a[0], a[1]);
    let b = [wasm(&engine, 1, JSON_MAP), wasm(&engine, 64, JSON_MAP)];
    println!("| (b) json-map: parse, add two fields, serialise (wasm) | {:.0} | {:.0} |", b[0], b[1]);
    let c = [native(1), native(64)];
    println!("| (c) the same json-map code, native | {:.0} | {:.0} |", c[0], c[1]);
    println!("| ratio (b)/(c) | {:.2} | {:.2} |", b[0] / c[0], b[1] / c[1]);
    println!();
    println!(
        "targets: (a) at batch 64 <= 300 ns/event: {}; (b)/(c) at batch 64 <= 1.5: {}",
        verdict(a[1] <= 300.0),
        verdict(b[1] / c[1] <= 1.5)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
