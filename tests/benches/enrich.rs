//! Per-event cost of `bi-enrich` in one process: the wasm stage (KV lookups
//! through weir's host import, served from memory as in `weir run`) against
//! the same crate compiled natively with the same lookups. No NATS.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::config;
use weir::engine::{Engine, EngineOptions, KvSource};
use weir::event::Event;
use weir::pipeline::{Blueprint, Outcome};
use weir_tests::harness::toml_str;
use weir_tests::plugins;

const EVENTS: usize = 64 * 256;
const ROUNDS: usize = 7;

struct Reference(HashMap<(String, String), Vec<u8>>);

impl KvSource for Reference {
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.get(&(bucket.to_owned(), key.to_owned())).cloned())
    }
}

fn reference() -> Reference {
    let mut kv = HashMap::new();
    for i in 0..100 {
        let shop = format!(r#"{{"name":"Shop {i}","country":"DE","commission_rate":0.{:02}}}"#, i % 20 + 1);
        kv.insert(("shops".to_owned(), format!("s-{i}")), shop.into_bytes());
    }
    kv.insert(("rates".to_owned(), "USD".to_owned()), br#"{"rate":0.92}"#.to_vec());
    Reference(kv)
}

fn event(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":{i},"shop_id":"s-{}","price":{}.95,"currency":"USD","ts":"2026-11-26T10:{:02}:00Z","user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"}}"#,
        i % 100,
        i % 500,
        i % 60
    )
    .into_bytes()
}

fn best(mut round: impl FnMut() -> Duration) -> f64 {
    round();
    (0..ROUNDS).map(|_| round()).min().expect("rounds").as_nanos() as f64 / EVENTS as f64
}

fn main() {
    // SAFETY: single-threaded here, before any other thread starts.
    unsafe { std::env::set_var("RUST_BACKTRACE", "0") };
    let kv = Arc::new(reference());
    let payloads: Vec<Vec<u8>> = (0..EVENTS).map(event).collect();

    let engine = Engine::new(&EngineOptions { cache_dir: None, kv: Some(kv.clone()) }).expect("engine");
    let text = format!(
        "name = \"bench\"\n[source]\nsubject = \"in\"\n[[stages]]\nname = \"enrich\"\nplugin = {}\ngrants = {{ kv = [\"shops\", \"rates\"] }}\n[sink]\nsubject = \"out\"\n",
        toml_str(plugins::BI_ENRICH)
    );
    let pipeline = config::parse_pipeline(&text, Path::new("bench.toml")).expect("pipeline");
    let (blueprint, _) = Blueprint::build(&engine, &pipeline).expect("builds");
    let mut chain = blueprint.chain();
    let wasm = best(|| {
        let batches: Vec<Vec<Event>> =
            payloads.chunks(64).map(|c| c.iter().map(|p| Event::new("in", p.clone())).collect()).collect();
        let started = Instant::now();
        for b in batches {
            let out = chain.process(b);
            assert!(matches!(out.last(), Some(Outcome::Done(o)) if o.len() == 1), "{:?}", out.last());
            black_box(out);
        }
        started.elapsed()
    });

    let settings = weir_bi_enrich::Settings::from_config(&weir_sdk::Config::empty()).expect("defaults");
    let lookup = |bucket: &str, key: &str| kv.get(bucket, key);
    let native = best(|| {
        let started = Instant::now();
        for p in &payloads {
            black_box(weir_bi_enrich::enrich(&settings, p, &lookup).expect("enriches"));
        }
        started.elapsed()
    });

    println!("bi-enrich: {EVENTS} events, batch 64, best of {ROUNDS} rounds, KV served from memory");
    println!();
    println!("| case | ns/event |");
    println!("|---|---:|");
    println!("| wasm stage in weir's chain | {wasm:.0} |");
    println!("| the same code, native | {native:.0} |");
    println!("| ratio | {:.2} |", wasm / native);
    println!();
    println!("target: wasm at most 2x native: {}", if wasm / native <= 2.0 { "met" } else { "NOT met" });
}
