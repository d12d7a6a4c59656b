//! The example pipeline `pipelines/products.toml` under `weir run`, as
//! shipped: filter -> ml-tagger -> bi-enrich -> router, with its reference
//! data loaded by `weir kv load` into a real NATS KV.

use std::time::Duration;

use serde_json::{Value, json};
use weir_tests::harness::*;
use weir_tests::plugins;

/// Products of the data set that training never saw (every fifth line).
fn held_out(n: usize) -> Vec<Value> {
    let data = std::fs::read_to_string(repo_root().join("plugins/ml-tagger/train/products.jsonl")).expect("the data set");
    data.lines()
        .enumerate()
        .filter(|(i, _)| i % 5 == 4)
        .take(n)
        .map(|(_, line)| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// A tracking event for a product of the data set.
fn tracking_event(product: &Value, id: usize, shop: &str) -> Value {
    json!({
        "type": "view", "id": id, "shop_id": shop,
        "title": product["title"], "brand": product["brand"], "description": product["description"],
        "price": 20.0 + id as f64, "currency": "USD", "ts": "2026-11-26T10:15:00Z",
        "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
    })
}

fn start_products_pipeline(server: &NatsServer, pipeline: &str) -> Weir {
    warm_shared_cache(pipeline);
    Weir::builder(server).cache_dir(&shared_cache_dir()).pipeline("products.toml", pipeline).start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_products_pipeline_tags_enriches_and_routes_events() {
    let server = NatsServer::new();
    let (client, js) = server.jetstream().await;
    let reference = repo_root().join("pipelines/reference");
    let loaded = kv_load(&server, &[&reference.join("shops.json"), &reference.join("rates.json")]).await;
    assert!(loaded.stdout.contains("shops: 6 keys from") && loaded.stdout.contains("(bucket created)"), "{loaded}");
    let _weir = start_products_pipeline(&server, &example_pipeline("products.toml", |name| plugins::by_name(name).to_owned()));
    let mut out = subscribe(&client, "processed.>").await;
    let mut dlq = subscribe(&client, "weir.dlq.products").await;

    // Held-out products, half from a German shop, half from a French one.
    let products = held_out(40);
    for (i, product) in products.iter().enumerate() {
        let shop = if i.is_multiple_of(2) { "s-100" } else { "s-101" };
        publish(&client, "tracking.product.view", test_headers(i as u64), serde_json::to_vec(&tracking_event(product, i, shop)).unwrap()).await;
    }
    let got = collect(&mut out, products.len(), Duration::from_secs(30)).await;
    assert_eq!(got.len(), products.len(), "every product comes out once");

    // The same model natively: the wasm stage must give the same scores.
    let model = std::fs::read(repo_root().join("pipelines/models/tagger.onnx")).expect("the model");
    let settings =
        weir_ml_tagger::Settings::from_config(&weir_sdk::Config::from_json(r#"{"model": "tagger.onnx", "min_score": 0.4, "max_tags": 3}"#).unwrap()).unwrap();
    let native = weir_ml_tagger::Tagger::new(settings, &model).expect("the model loads natively");

    let mut correct = 0;
    for message in &got {
        let body = json(message);
        let i = body["id"].as_u64().unwrap() as usize;
        let product = &products[i];
        let (shop, country) = if i.is_multiple_of(2) { ("Nordic Threads", "DE") } else { ("Maison Lune", "FR") };
        assert_eq!(message.subject.as_str(), format!("processed.view.{country}"), "routed by type and the shop's country");
        assert_eq!(body["shop"]["name"], shop);
        assert_eq!(body["price_reporting"], ((20.0 + i as f64) * 0.92 * 100.0).round() / 100.0);
        assert_eq!(body["device"], json!({ "class": "mobile", "browser": "Safari" }));
        assert_eq!(body["date"]["hour"], 10);

        let input = serde_json::to_vec(&tracking_event(product, i, "x")).unwrap();
        let expected: Value = serde_json::from_slice(&native.tag_payloads(&[&input]).remove(0).unwrap()).unwrap();
        assert_eq!(body["tags"], expected["tags"], "wasm and native agree on {}", product["title"]);
        let best = body["tags"].as_array().unwrap().iter().find(|t| t["kind"] == "category").map(|t| t["tag"].clone());
        correct += usize::from(best.as_ref() == Some(&product["category"]));
    }
    assert!(correct * 100 >= got.len() * 80, "{correct} of {} held-out products got their category", got.len());

    // Without a title the tagger refuses the event, saying why.
    let untitled = json!({ "type": "cart", "shop_id": "s-100", "price": 1.0, "currency": "EUR", "ts": "2026-11-26T10:15:00Z", "user_agent": "curl/8" });
    publish(&client, "tracking.product.cart", test_headers(100), serde_json::to_vec(&untitled).unwrap()).await;
    let refused = collect(&mut dlq, 1, Duration::from_secs(10)).await;
    assert_eq!(refused.len(), 1);
    assert_eq!(header(&refused[0], "weir-error-stage").as_deref(), Some("tag"));
    assert_eq!(header(&refused[0], "weir-error-kind").as_deref(), Some("invalid"));
    let reason = header(&refused[0], "weir-error").unwrap_or_default();
    assert!(reason.contains("missing field \"title\""), "{reason}");
    assert_eq!(json(&refused[0]), untitled, "the dead letter carries the original event");

    // Internal events are filtered out; an unknown shop is marked, not lost.
    let mut internal = tracking_event(&products[0], 200, "s-100");
    internal["internal"] = json!(true);
    publish(&client, "tracking.product.view", test_headers(200), serde_json::to_vec(&internal).unwrap()).await;
    publish(
        &client,
        "tracking.product.view",
        test_headers(201),
        serde_json::to_vec(&tracking_event(&products[1], 201, "s-404")).unwrap(),
    )
    .await;
    let marked = collect(&mut out, 1, Duration::from_secs(10)).await;
    assert_eq!(marked[0].subject.as_str(), "processed.view.unknown");
    assert_eq!(json(&marked[0])["enrichment_missing"], json!(["shop"]));
    assert!(collect_for(&mut out, Duration::from_millis(300)).await.is_empty(), "the internal event was dropped");

    // A shop moving country in KV reroutes its next events, without a reload.
    let version = header(&got[0], "weir-version");
    let shops = js.get_key_value("shops").await.expect("the shops bucket");
    shops
        .put("s-100", r#"{"name":"Nordic Threads","country":"AT","commission_rate":0.12}"#.into())
        .await
        .expect("put");
    let updated = std::time::Instant::now();
    let moved = loop {
        publish(
            &client,
            "tracking.product.view",
            test_headers(300),
            serde_json::to_vec(&tracking_event(&products[0], 0, "s-100")).unwrap(),
        )
        .await;
        match collect(&mut out, 1, Duration::from_millis(300)).await.pop() {
            Some(m) if m.subject.as_str() == "processed.view.AT" => break m,
            other => assert!(
                updated.elapsed() < Duration::from_secs(3),
                "s-100's events still go to {:?} after the KV update",
                other.map(|m| m.subject.to_string())
            ),
        }
    };
    assert_eq!(header(&moved, "weir-version"), version, "no reload happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tagger_cannot_read_a_model_outside_its_grants() {
    // The shipped pipeline without its `grants = { dirs = ["models"] }`.
    let pipeline = example_pipeline("products.toml", |name| plugins::by_name(name).to_owned());
    warm_shared_cache(&pipeline);
    let ungranted: String = pipeline.lines().filter(|l| !l.contains("dirs = [")).map(|l| format!("{l}\n")).collect();
    assert_ne!(ungranted, pipeline);
    let dir = TempDir::new("weir-ungranted");
    std::fs::write(dir.path().join("products.toml"), &ungranted).unwrap();
    std::fs::write(dir.path().join("weir.toml"), format!("cache_dir = {}\n", toml_str(shared_cache_dir().to_str().unwrap()))).unwrap();
    let run = cli_with_config(&dir.path().join("weir.toml"), dir.path(), &["validate", "products.toml"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("stage \"tag\"") || run.stderr.contains("tag"), "{run}");
    assert!(run.stderr.contains("cannot read /models/tagger.onnx"), "{run}");

    // With the grant, the same file validates.
    std::fs::write(dir.path().join("products.toml"), &pipeline).unwrap();
    let run = cli_with_config(&dir.path().join("weir.toml"), dir.path(), &["validate", "products.toml"]).await;
    assert_eq!(run.code, Some(0), "{run}");
}
