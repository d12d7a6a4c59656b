//! The demo behind `./dev demo`: weir's main job, end to end, on this machine.
//!
//! Starts a `nats-server -js` on a free loopback port, runs `weir run` on the
//! example pipelines in `pipelines/`, publishes the sample events of
//! `pipelines/samples/*.jsonl`, and prints what arrives on the processed and
//! dead-letter subjects. Everything it starts is stopped when it ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt as _;
use weir_tests::harness::{NatsServer, Weir, connect, create_stream, example_pipeline, kv_load, repo_root, warm_cache};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let root = repo_root();
    let server = NatsServer::new();
    println!("nats-server -js listening on {}", server.url());

    let reference = root.join("pipelines/reference");
    let loaded = kv_load(&server, &[&reference.join("shops.json"), &reference.join("rates.json")]).await;
    print!("weir kv load pipelines/reference/shops.json pipelines/reference/rates.json\n{}", loaded.stdout);

    // product-metrics reads the tracking events from JetStream: its stream,
    // and its sample events already in it when weir starts (counted at once;
    // the minutes they fall in are long over, so the first tick, a second
    // after the start, publishes them).
    let product_events = {
        let client = connect(&server.url(), server.auth()).await;
        let js = async_nats::jetstream::new(client);
        create_stream(&js, "TRACKING", &["tracking.>"]).await;
        let text = std::fs::read_to_string(root.join("pipelines/samples/product-events.jsonl")).expect("pipelines/samples/product-events.jsonl");
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (subject, headers, payload) = envelope(line);
            js.publish_with_headers(subject, headers, payload.into())
                .await
                .expect("publish")
                .await
                .expect("stored in TRACKING");
            n += 1;
        }
        n
    };
    println!("stream TRACKING (tracking.>) created, with the {product_events} events of pipelines/samples/product-events.jsonl");

    // weir's own default cache (where `weir validate pipelines/` just put the
    // compiled plugins): the ml-tagger takes seconds to compile the first time.
    let cache = default_cache_dir();
    let mut builder = Weir::builder(&server).label("weir").cache_dir(&cache);
    for name in pipeline_files(&root) {
        let text = example_pipeline(&name, |plugin| root.join("plugins").join(format!("{plugin}.wasm")).display().to_string());
        warm_cache(&cache, &text);
        builder = builder.pipeline(&name, &text);
    }
    let mut weir = builder.start();
    println!("weir run {}: ready\n", weir.dir().join("weir.toml").display());

    let client = connect(&server.url(), server.auth()).await;
    let mut processed = client.subscribe("processed.>").await.expect("subscribe processed.>");
    let mut dead = client.subscribe("weir.dlq.>").await.expect("subscribe weir.dlq.>");
    let mut traffic = client.subscribe("traffic.>").await.expect("subscribe traffic.>");
    let mut metrics = client.subscribe("metrics.>").await.expect("subscribe metrics.>");
    client.flush().await.expect("flush");

    // The first tick of product-metrics closes the minutes of its samples.
    let mut per_minute = 0;
    let first_tick = tokio::time::sleep(Duration::from_millis(2500));
    tokio::pin!(first_tick);
    println!("product-metrics: views and carts per product, shop and minute, from the events in TRACKING:\n");
    loop {
        tokio::select! {
            Some(m) = metrics.next() => {
                per_minute += 1;
                println!("✓ {:<24} {}", m.subject, summarise_minute(&m.payload));
            }
            _ = &mut first_tick => break,
        }
    }
    println!("\n{per_minute} per-minute counts from {product_events} events (the purchases are filtered out)\n");

    let mut samples = String::new();
    for file in ["orders.jsonl", "products.jsonl", "traffic.jsonl"] {
        samples += &std::fs::read_to_string(root.join("pipelines/samples").join(file)).unwrap_or_else(|e| panic!("pipelines/samples/{file}: {e}"));
    }
    let mut sent = 0;
    for line in samples.lines().filter(|l| !l.trim().is_empty()) {
        let (subject, headers, payload) = envelope(line);
        println!("→ {subject:<28} {}", String::from_utf8_lossy(&payload));
        client.publish_with_headers(subject, headers, payload.into()).await.expect("publish");
        sent += 1;
    }
    client.flush().await.expect("flush");
    println!("\npublished {sent} sample events; what came out:\n");

    let (mut outputs, mut letters) = (0, 0);
    // hit id -> (the Python stage's subject, the JavaScript stage's).
    let mut channels: BTreeMap<String, [String; 2]> = BTreeMap::new();
    let quiet = Duration::from_millis(1500);
    loop {
        tokio::select! {
            Some(m) = traffic.next() => {
                outputs += 1;
                let hit: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                let id = hit["hit_id"].as_str().unwrap_or("?").to_owned();
                // traffic.py.<channel>.<source> or traffic.js.<...>
                let (lang, route) = m.subject.as_str().strip_prefix("traffic.").and_then(|s| s.split_once('.')).unwrap_or(("?", ""));
                channels.entry(id).or_default()[usize::from(lang == "js")] = route.to_owned();
            }
            Some(m) = metrics.next() => {
                outputs += 1;
                println!("✓ {:<40} {}", m.subject, summarise_minute(&m.payload));
            }
            Some(m) = processed.next() => {
                outputs += 1;
                match summarise_product(&m.payload) {
                    Some(summary) => println!("✓ {:<40} {summary}", m.subject),
                    None => println!("✓ {:<40} {}", m.subject, String::from_utf8_lossy(&m.payload)),
                }
            }
            Some(m) = dead.next() => {
                letters += 1;
                let h = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned()).unwrap_or_default();
                println!("✗ {:<40} [{} in stage {}] {}", m.subject, h("weir-error-kind"), h("weir-error-stage"), h("weir-error"));
                println!("  {:<40} payload: {}", "", String::from_utf8_lossy(&m.payload));
            }
            _ = tokio::time::sleep(quiet) => break,
        }
    }
    if !channels.is_empty() {
        println!("\ntraffic channels of the tracking hits, by the Python stage and by the JavaScript stage:\n");
        for (id, [py, js]) in &channels {
            let agree = if py == js { "" } else { "  <- the two stages disagree" };
            println!("  {id:<8} py: {py:<36} js: {js}{agree}");
        }
    }
    println!("\n{sent} in: {outputs} out, {letters} dead-lettered, the rest filtered out.");
    weir.interrupt();
    let status = weir.wait_exit(Duration::from_secs(15));
    if !status.success() {
        eprintln!("weir did not stop cleanly: {status}\n{}", weir.stderr());
        std::process::exit(1);
    }
    println!("weir stopped cleanly on SIGINT.");
}

/// One line for a processed product event: what the tagger and the
/// enrichment added (the whole event is a screen wide).
fn summarise_product(payload: &[u8]) -> Option<String> {
    let e: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let tags: Vec<String> = e
        .get("tags")?
        .as_array()?
        .iter()
        .map(|t| format!("{} {:.2}", t["tag"].as_str().unwrap_or("?"), t["score"].as_f64().unwrap_or(0.0)))
        .collect();
    let shop = match e.get("shop") {
        Some(shop) => format!("{} ({})", shop["name"].as_str().unwrap_or("?"), shop["country"].as_str().unwrap_or("?")),
        None => format!("shop {} missing", e["shop_id"]),
    };
    let price = match e["price_reporting"].as_f64() {
        Some(p) => format!("{p:.2} {}", e["reporting_currency"].as_str().unwrap_or("")),
        None => "no rate".into(),
    };
    Some(format!(
        "{}\n  {:<40} tags: {} | {shop} | {price} | {}/{} | {} {} {:02}h",
        e["title"],
        "",
        if tags.is_empty() { "none".into() } else { tags.join(", ") },
        e["device"]["class"].as_str().unwrap_or("?"),
        e["device"]["browser"].as_str().unwrap_or("?"),
        e["date"]["iso_week"].as_str().unwrap_or("?"),
        e["date"]["weekday"].as_str().unwrap_or("?"),
        e["date"]["hour"].as_u64().unwrap_or(0),
    ))
}

/// One line for a per-minute count of product-metrics.
fn summarise_minute(payload: &[u8]) -> String {
    let e: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let minute = e["window_start"].as_u64().map_or("?".to_owned(), |ms| {
        let secs = ms / 1000;
        format!("{:02}:{:02} UTC", secs / 3600 % 24, secs / 60 % 60)
    });
    format!(
        "{} {} at {minute}: {}",
        e["key"]["product_id"].as_str().unwrap_or("?"),
        e["key"]["shop_id"].as_str().unwrap_or("?"),
        e["count"]
    )
}

/// weir's default compile cache: `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`.
fn default_cache_dir() -> PathBuf {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("weir")
}

/// The names of the example pipeline files in `pipelines/`.
fn pipeline_files(root: &std::path::Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root.join("pipelines"))
        .expect("pipelines/")
        .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    files.sort();
    files
}

/// A `weir exec` envelope line as what to publish; a malformed line is sent
/// as it is, to show weir dead-lettering it.
fn envelope(line: &str) -> (String, HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line) else {
        return ("shop.orders.created".into(), headers, line.as_bytes().to_vec());
    };
    let subject = map.get("subject").and_then(|s| s.as_str()).unwrap_or("shop.orders.created").to_owned();
    if let Some(serde_json::Value::Object(h)) = map.get("headers") {
        for (k, v) in h {
            headers.insert(k.as_str(), v.as_str().unwrap_or_default());
        }
    }
    let payload = match (map.get("payload"), map.get("payload_text")) {
        (Some(p), _) => serde_json::to_vec(p).expect("JSON serialises"),
        (None, Some(serde_json::Value::String(t))) => t.clone().into_bytes(),
        _ => Vec::new(),
    };
    (subject, headers, payload)
}
