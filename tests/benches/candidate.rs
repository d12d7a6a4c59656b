//! What a shadow candidate costs (issue 22, "Benchmark").
//!
//! `pipelines/products.toml` as shipped (filter -> ml-tagger -> bi-enrich ->
//! router) under `weir run` with 2 workers, through a private `nats-server`
//! on 127.0.0.1, in three cases measured in one run:
//!
//! - no candidate;
//! - a shadow candidate of the `tag` stage (the same tagger with
//!   `min_score = 0.45`, a new model setting being tried) on every event
//!   (`share = 1.0`);
//! - the same candidate on a tenth of the events (`share = 0.1`).
//!
//! The candidates decide nothing (`decide = "manual"`), so that each case
//! runs as configured from start to end. Throughput (events/s) and latency at
//! 20k events/s (p50/p99), measured as `benches/products.rs` does; the
//! ratios to the case without a candidate are printed at the end.
//!
//! Run with `cargo bench -p weir-tests --bench candidate`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use weir_tests::bench::*;
use weir_tests::harness::{NatsServer, Weir, example_pipeline, kv_load, repo_root, shared_cache_dir, warm_shared_cache, weir_binary};
use weir_tests::plugins;

const SHOPS: [(&str, &str); 6] = [("s-100", "EUR"), ("s-101", "EUR"), ("s-102", "GBP"), ("s-103", "SEK"), ("s-104", "CHF"), ("s-105", "USD")];

fn main() {
    let started = Instant::now();
    let bin = weir_binary();
    eprintln!("[candidate] weir binary {} ready after {:.1?}", bin.display(), started.elapsed());
    let payloads = payloads();
    let size = payloads.iter().map(Bytes::len).sum::<usize>() / payloads.len();

    // Three cases of `weir run`, each with its start and its measures.
    start_watchdog_after(Duration::from_secs(420));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let none = run(&runtime, &payloads, "no candidate", None);
    let full = run(&runtime, &payloads, "shadow of `tag`, share 1.0", Some(1.0));
    let tenth = run(&runtime, &payloads, "shadow of `tag`, share 0.1", Some(0.1));

    println!("pipelines/products.toml through core NATS on 127.0.0.1 ({size}-byte product events, 1 publisher, 1 consumer;");
    println!("weir: 2 workers, batch 64). Throughput: {N} events as fast as possible; latency: {LATENCY_RATE} events/s for {LATENCY_FOR:?}.");
    println!();
    print_cases(&[&none, &full, &tenth]);
    println!();
    println!("| shadow candidate of `tag` | throughput vs none | p99 at {LATENCY_RATE}/s vs none |");
    println!("|---|---:|---:|");
    for (label, case) in [("share 1.0", &full), ("share 0.1", &tenth)] {
        println!(
            "| {label} | {:.2} | {:.2} ({:.2} ms vs {:.2} ms) |",
            case.events_per_s / none.events_per_s,
            case.percentile_ms(0.99) / none.percentile_ms(0.99),
            case.percentile_ms(0.99),
            none.percentile_ms(0.99)
        );
    }
    print_losses(&[&none, &full, &tenth]);
}

/// `weir run` on `pipelines/products.toml`, with a shadow candidate of its
/// `tag` stage seeing `share` of the events (none: no candidate).
fn run(runtime: &tokio::runtime::Runtime, payloads: &[Bytes], label: &str, share: Option<f64>) -> CaseResult {
    let server = NatsServer::new();
    let reference = repo_root().join("pipelines/reference");
    runtime.block_on(kv_load(&server, &[&reference.join("shops.json"), &reference.join("rates.json")]));
    let mut pipeline = example_pipeline("products.toml", |name| plugins::by_name(name).to_owned());
    if let Some(share) = share {
        let tagger = "config = { model = \"/models/tagger.onnx\", min_score = 0.4, max_tags = 3 }\n";
        assert!(pipeline.contains(tagger), "products.toml's tag stage changed: update this bench");
        let candidate = format!(
            "{tagger}\n[stages.candidate]\nplugin = {}\nmode = \"shadow\"\nshare = {share}\ndecide = \"manual\"\nconfig = {{ model = \"/models/tagger.onnx\", min_score = 0.45, max_tags = 3 }}\n",
            json!(plugins::ML_TAGGER)
        );
        pipeline = pipeline.replace(tagger, &candidate);
    }
    warm_shared_cache(&pipeline);
    let mut weir = Weir::builder(&server)
        .label("bench")
        .workers(2)
        .cache_dir(&shared_cache_dir())
        .pipeline("products.toml", &pipeline)
        .start();
    let result = runtime.block_on(measure(label, &server, Some(weir.pid()), "tracking.product.view", "processed.>", payloads));
    weir.interrupt();
    let status = weir.wait_exit(Duration::from_secs(15));
    if !status.success() {
        eprintln!("[candidate] weir exited with {status}");
    }
    result
}

/// Product tracking events built from the labelled data set, as
/// `benches/products.rs` makes them.
fn payloads() -> Vec<Bytes> {
    let agents = [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ];
    let data = std::fs::read_to_string(repo_root().join("plugins/ml-tagger/train/products.jsonl")).expect("the data set");
    data.lines()
        .enumerate()
        .map(|(i, line)| {
            let product: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let (shop, currency) = SHOPS[i % SHOPS.len()];
            let event = json!({
                "type": "view", "id": i, "product_id": format!("p-{i:05}"),
                "title": product["title"], "brand": product["brand"], "description": product["description"],
                "shop_id": shop, "price": 10.0 + (i % 190) as f64 + 0.95, "currency": currency,
                "ts": format!("2026-11-26T{:02}:{:02}:00Z", i % 24, i % 60),
                "user_agent": agents[i % agents.len()],
            });
            Bytes::from(serde_json::to_vec(&event).expect("JSON serialises"))
        })
        .collect()
}
