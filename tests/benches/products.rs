//! The showcase pipeline, measured (issue 5, "Benchmark").
//!
//! 1. In one process, no NATS: the per-event cost of the `ml-tagger` stage
//!    in weir's chain (batch 64) against the same crate compiled natively.
//!    (`bi-enrich` alone is measured by `benches/enrich.rs`.)
//! 2. Through a private `nats-server` on 127.0.0.1: `pipelines/products.toml`
//!    as shipped (filter -> ml-tagger -> bi-enrich -> router) under `weir run`
//!    with 2 workers and its reference data in NATS KV, against a native
//!    relay in this process doing the same work with the same crates
//!    (filter and route written out, the tagger and the enrichment called
//!    natively, KV served from memory). Throughput (events/s) and latency at
//!    20k events/s (p50/p99), measured as `benches/relay.rs` does.
//!
//! Run with `cargo bench -p weir-tests --bench products`.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;
use serde_json::{Value, json};
use weir::engine::{Engine, EngineOptions};
use weir::event::Event;
use weir::pipeline::{Blueprint, Outcome};
use weir_tests::bench::*;
use weir_tests::harness::{NatsServer, Weir, example_pipeline, kv_load, repo_root, shared_cache_dir, toml_str, warm_shared_cache, weir_binary};
use weir_tests::plugins;

const BATCH: usize = 64;
const IN_PROCESS_EVENTS: usize = BATCH * 64;
const ROUNDS: usize = 5;
const SHOPS: [(&str, &str); 6] = [("s-100", "EUR"), ("s-101", "EUR"), ("s-102", "GBP"), ("s-103", "SEK"), ("s-104", "CHF"), ("s-105", "USD")];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
];

fn main() {
    let started = Instant::now();
    let bin = weir_binary();
    eprintln!("[products] weir binary {} ready after {:.1?}", bin.display(), started.elapsed());
    let payloads = payloads();
    let size = payloads.iter().map(Bytes::len).sum::<usize>() / payloads.len();

    let cases = [("auto", "linear scorer (the default)"), ("tract", "inference = \"tract\"")];
    println!("ml-tagger in one process: {IN_PROCESS_EVENTS} product events (mean {size} bytes), batch {BATCH}, best of {ROUNDS} rounds");
    println!();
    println!("| scores computed by | wasm stage in weir's chain, ns/event | the same code native, ns/event | ratio |");
    println!("|---|---:|---:|---:|");
    for (inference, label) in cases {
        let (wasm_ns, native_ns) = tagger_in_process(&payloads, inference);
        println!("| {label} | {wasm_ns:.0} | {native_ns:.0} | {:.2} |", wasm_ns / native_ns);
    }
    println!();

    start_watchdog();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let native = native_pipeline(&runtime, &payloads);
    let weir = weir_pipeline(&runtime, &payloads);

    println!("pipelines/products.toml through core NATS on 127.0.0.1 ({size}-byte product events, 1 publisher, 1 consumer;");
    println!("weir: 2 workers, batch 64). Throughput: {N} events as fast as possible; latency: {LATENCY_RATE} events/s for {LATENCY_FOR:?}.");
    println!();
    print_cases(&[&native, &weir]);
    println!();
    let ratio = weir.events_per_s / native.events_per_s;
    println!("weir / native throughput: {ratio:.2}; p99 {:.2} ms vs {:.2} ms", weir.percentile_ms(0.99), native.percentile_ms(0.99));
    println!(
        "target: the whole example pipeline above 50k events/s: {:.0} events/s, {}",
        weir.events_per_s,
        if weir.events_per_s > 50_000.0 { "met" } else { "NOT met" }
    );
    print_losses(&[&native, &weir]);
}

/// Product tracking events built from the labelled data set: every listing,
/// each with a shop, a price in the shop's currency, a time and an agent.
fn payloads() -> Vec<Bytes> {
    let data = std::fs::read_to_string(repo_root().join("plugins/ml-tagger/train/products.jsonl")).expect("the data set");
    data.lines()
        .enumerate()
        .map(|(i, line)| {
            let product: Value = serde_json::from_str(line).expect("a JSON line");
            let (shop, currency) = SHOPS[i % SHOPS.len()];
            let event = json!({
                "type": "view", "id": i, "product_id": format!("p-{i:05}"),
                "title": product["title"], "brand": product["brand"], "description": product["description"],
                "shop_id": shop, "price": 10.0 + (i % 190) as f64 + 0.95, "currency": currency,
                "ts": format!("2026-11-26T{:02}:{:02}:00Z", i % 24, i % 60),
                "user_agent": AGENTS[i % AGENTS.len()],
            });
            Bytes::from(serde_json::to_vec(&event).expect("JSON serialises"))
        })
        .collect()
}

fn model_bytes() -> Vec<u8> {
    std::fs::read(repo_root().join("pipelines/models/tagger.onnx")).expect("the model")
}

fn native_tagger(inference: &str) -> weir_ml_tagger::Tagger {
    let config = format!(r#"{{"model": "/models/tagger.onnx", "min_score": 0.4, "max_tags": 3, "inference": "{inference}"}}"#);
    let config = weir_sdk::Config::from_json(&config).expect("JSON");
    let settings = weir_ml_tagger::Settings::from_config(&config).expect("settings");
    weir_ml_tagger::Tagger::new(settings, &model_bytes()).expect("the model loads")
}

fn best(mut round: impl FnMut() -> Duration) -> f64 {
    round();
    (0..ROUNDS).map(|_| round()).min().expect("rounds").as_nanos() as f64 / IN_PROCESS_EVENTS as f64
}

/// (wasm ns/event, native ns/event) of the tagger alone, its scores
/// computed as `inference` says.
fn tagger_in_process(payloads: &[Bytes], inference: &str) -> (f64, f64) {
    let events: Vec<Vec<u8>> = payloads.iter().cycle().take(IN_PROCESS_EVENTS).map(|p| p.to_vec()).collect();
    let engine = Engine::new(&EngineOptions { cache_dir: Some(shared_cache_dir()), cache_size: None, kv: None }).expect("engine");
    let models = repo_root().join("pipelines/models");
    let text = format!(
        "name = \"bench\"\n[source]\nsubject = \"in\"\n[[stages]]\nname = \"tag\"\nplugin = {}\ngrants = {{ dirs = [{}] }}\nconfig = {{ model = \"/models/tagger.onnx\", min_score = 0.4, max_tags = 3, inference = \"{inference}\" }}\n[sink]\nsubject = \"out\"\n",
        toml_str(plugins::ML_TAGGER),
        toml_str(models.to_str().expect("UTF-8 path"))
    );
    let pipeline = weir::config::parse_pipeline(&text, Path::new("bench.toml")).expect("pipeline");
    let (blueprint, _) = Blueprint::build(&engine, &pipeline).expect("builds");
    let mut chain = blueprint.chain();
    let wasm = best(|| {
        let batches: Vec<Vec<Event>> = events.chunks(BATCH).map(|c| c.iter().map(|p| Event::new("in", p.clone())).collect()).collect();
        let started = Instant::now();
        for batch in batches {
            let out = chain.process(batch);
            assert!(matches!(out.last(), Some(Outcome::Done(o)) if o.len() == 1), "{:?}", out.last());
            black_box(out);
        }
        started.elapsed()
    });
    let tagger = native_tagger(inference);
    let native = best(|| {
        let started = Instant::now();
        for batch in events.chunks(BATCH) {
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            let out = tagger.tag_payloads(&refs);
            assert!(out.iter().all(Result::is_ok));
            black_box(out);
        }
        started.elapsed()
    });
    (wasm, native)
}

/// `weir run` on the shipped `pipelines/products.toml`, reference data
/// loaded with `weir kv load`.
fn weir_pipeline(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    let server = NatsServer::new();
    let reference = repo_root().join("pipelines/reference");
    runtime.block_on(kv_load(&server, &[&reference.join("shops.json"), &reference.join("rates.json")]));
    let pipeline = example_pipeline("products.toml", |name| plugins::by_name(name).to_owned());
    warm_shared_cache(&pipeline);
    let mut weir = Weir::builder(&server)
        .label("bench")
        .workers(2)
        .cache_dir(&shared_cache_dir())
        .pipeline("products.toml", &pipeline)
        .start();
    let result = runtime.block_on(measure("weir run pipelines/products.toml", &server, Some(weir.pid()), "tracking.product.view", "processed.>", payloads));
    weir.interrupt();
    let status = weir.wait_exit(Duration::from_secs(15));
    if !status.success() {
        eprintln!("[products] weir exited with {status}");
    }
    result
}

/// The same work natively, in a relay in this process: the filter's two
/// conditions, the tagger and the enrichment (the plugins' own crates), the
/// router's subject.
fn native_pipeline(runtime: &tokio::runtime::Runtime, payloads: &[Bytes]) -> CaseResult {
    let kv = reference_kv();
    let settings = weir_bi_enrich::Settings::from_config(&weir_sdk::Config::from_json(r#"{"reporting_currency": "EUR", "on_missing": "mark"}"#).expect("JSON"))
        .expect("settings");
    // One relay task: the locks are never contended.
    let stages = Mutex::new((native_tagger("auto"), weir_bi_enrich::BiEnrich::new(settings)));
    let work = Arc::new(move |payload: &[u8]| -> Option<(Subject, Bytes)> {
        let event: Value = serde_json::from_slice(payload).ok()?;
        let kept = matches!(event["type"].as_str(), Some("view" | "cart" | "purchase")) && event["internal"] != json!(true);
        if !kept {
            return None;
        }
        let mut stages = stages.lock().expect("the stages");
        let (tagger, enricher) = &mut *stages;
        let tagged = tagger.tag_payloads(&[payload]).pop()?.ok()?;
        let lookup = |bucket: &str, key: &str| Ok(kv.get(&(bucket.to_owned(), key.to_owned())).cloned());
        let enriched = enricher.enrich(&tagged, &lookup).ok()?;
        let event: Value = serde_json::from_slice(&enriched).ok()?;
        let country = event["shop"]["country"].as_str().unwrap_or("unknown");
        let kind = event["type"].as_str().unwrap_or("unknown");
        Some((Subject::from(format!("processed.{kind}.{country}")), Bytes::from(enriched)))
    });
    let server = NatsServer::new();
    runtime.block_on(async {
        let relay = spawn_relay(&server, "tracking.product.view", move |message| work(&message.payload)).await;
        let result = measure("native relay, the same work", &server, None, "tracking.product.view", "processed.>", payloads).await;
        relay.abort();
        result
    })
}

/// `pipelines/reference/*.json` as `(bucket, key) -> JSON bytes`.
fn reference_kv() -> HashMap<(String, String), Vec<u8>> {
    let mut kv = HashMap::new();
    for bucket in ["shops", "rates"] {
        let path = repo_root().join(format!("pipelines/reference/{bucket}.json"));
        let object: serde_json::Map<String, Value> = serde_json::from_str(&std::fs::read_to_string(&path).expect("reference data")).expect("a JSON object");
        for (key, value) in object {
            kv.insert((bucket.to_owned(), key), serde_json::to_vec(&value).expect("JSON"));
        }
    }
    kv
}
