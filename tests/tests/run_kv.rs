//! KV grants under `weir run`: a stage reads a real NATS KV bucket through
//! weir's mirror, sees updates without a reload, and cannot read a bucket it
//! was not granted.

use std::time::Duration;

use serde_json::json;
use weir_tests::harness::*;
use weir_tests::plugins;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_read_granted_kv_buckets_live_and_nothing_else() {
    let server = NatsServer::new();
    let (client, js) = server.jetstream().await;
    let shops = create_kv_bucket(&js, "shops").await;
    shops.put("s1", r#"{"name":"Northwind"}"#.into()).await.expect("put");
    let pipeline = format!(
        "name = \"kv\"\n[source]\nsubject = \"in.>\"\n[[stages]]\nname = \"lookup\"\nplugin = {}\ngrants = {{ kv = [\"shops\"] }}\n[sink]\nsubject = \"out\"\n[dead_letter]\nsubject = \"dlq\"\n",
        toml_str(plugins::CHAOS)
    );
    let _weir = Weir::builder(&server).pipeline("kv.toml", &pipeline).start();
    let mut out = subscribe(&client, "out").await;
    let mut dlq = subscribe(&client, "dlq").await;
    let ask = |bucket: &str, key: &str| serde_json::to_vec(&json!({"chaos": "kv", "bucket": bucket, "key": key})).unwrap();

    // The value loaded before weir started is there for the first event.
    publish(&client, "in.x", test_headers(1), ask("shops", "s1")).await;
    let got = collect(&mut out, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload.as_ref(), br#"{"name":"Northwind"}"#);
    assert_eq!(header(&got[0], "chaos-kv").as_deref(), Some("hit"));
    let version = header(&got[0], "weir-version");

    // An update made with any client is seen within a second, no reload.
    shops.put("s1", r#"{"name":"Contoso"}"#.into()).await.expect("put");
    let updated = std::time::Instant::now();
    let seen = loop {
        publish(&client, "in.x", test_headers(2), ask("shops", "s1")).await;
        let got = collect(&mut out, 1, Duration::from_millis(500)).await;
        match got.into_iter().next() {
            Some(m) if m.payload.as_ref() == br#"{"name":"Contoso"}"# => break m,
            other => assert!(
                updated.elapsed() < Duration::from_secs(2),
                "the update was not seen within a second or so: {:?}",
                other.as_ref().map(describe)
            ),
        }
    };
    assert_eq!(header(&seen, "weir-version"), version, "no reload happened");

    // A key that is not there, and a bucket that was not granted.
    publish(&client, "in.x", test_headers(3), ask("shops", "nope")).await;
    let miss = collect(&mut out, 1, Duration::from_secs(10)).await;
    assert_eq!(header(&miss[0], "chaos-kv").as_deref(), Some("miss"));
    publish(&client, "in.x", test_headers(4), ask("secrets", "s1")).await;
    let refused = collect(&mut dlq, 1, Duration::from_secs(10)).await;
    assert_eq!(refused.len(), 1);
    let error = header(&refused[0], "weir-error").unwrap_or_default();
    assert!(error.contains("KV bucket \"secrets\" is not granted to stage \"lookup\""), "{error}");
}

/// bi-enrich against real KV buckets: shop attributes, the price in the
/// reporting currency, date dimensions and the device, all in one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_enrich_joins_events_with_kv_reference_data() {
    let server = NatsServer::new();
    let (client, js) = server.jetstream().await;
    let shops = create_kv_bucket(&js, "shops").await;
    let rates = create_kv_bucket(&js, "rates").await;
    shops
        .put("s-1", r#"{"name":"Northwind","country":"DE","commission_rate":0.1}"#.into())
        .await
        .expect("put");
    rates.put("USD", r#"{"rate":0.5}"#.into()).await.expect("put");
    let pipeline = format!(
        "name = \"bi\"\n[source]\nsubject = \"in.>\"\n[[stages]]\nname = \"enrich\"\nplugin = {}\ngrants = {{ kv = [\"shops\", \"rates\"] }}\n[sink]\nsubject = \"out\"\n[dead_letter]\nsubject = \"dlq\"\n",
        toml_str(plugins::BI_ENRICH)
    );
    let _weir = Weir::builder(&server).pipeline("bi.toml", &pipeline).start();
    let mut out = subscribe(&client, "out").await;
    let event = json!({
        "shop_id": "s-1", "price": 30.0, "currency": "USD", "ts": "2026-11-26T10:15:00Z",
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    });
    publish(&client, "in.view", test_headers(1), serde_json::to_vec(&event).unwrap()).await;
    let got = collect(&mut out, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "one enriched event");
    let body = json(&got[0]);
    assert_eq!(body["shop"]["name"], "Northwind");
    assert_eq!(body["price_reporting"], 15.0);
    assert_eq!(body["reporting_currency"], "EUR");
    assert_eq!(body["commission"], 1.5);
    assert_eq!(body["date"]["iso_week"], "2026-W48");
    assert_eq!(body["date"]["weekday"], "Thursday");
    assert_eq!(body["device"]["class"], "desktop");
    assert_eq!(body["device"]["browser"], "Chrome");
}
