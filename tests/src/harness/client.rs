//! NATS client helpers: connect, publish test events, collect what comes out,
//! and look at JetStream streams and consumers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use super::eventually;
use super::server::Auth;

/// How long a client may take to connect to a test server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The header every published test event carries with its id, to check that
/// input headers reach the outputs and dead letters.
pub const TEST_ID_HEADER: &str = "test-id";

/// The countries [`order`] cycles through (`id % 3`).
pub const COUNTRIES: [&str; 3] = ["fr", "de", "us"];

/// Connects to `url` with `auth`; panics with the reason after a bounded wait.
pub async fn connect(url: &str, auth: &Auth) -> Client {
    let connecting = auth
        .connect_options()
        .connection_timeout(Duration::from_secs(5))
        .subscription_capacity(1 << 17)
        .connect(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => panic!("cannot connect to {url}: {e}"),
        Err(_) => panic!("cannot connect to {url} within {CONNECT_TIMEOUT:?}"),
    }
}

/// A test event of about 300 bytes of JSON: `id`, `price` = `id % 20`,
/// `country` = [`COUNTRIES`]`[id % 3]`, and some padding fields.
pub fn order(id: u64) -> Value {
    json!({
        "id": id,
        "price": id % 20,
        "country": COUNTRIES[(id % 3) as usize],
        "customer": format!("customer-{:06}", id % 997),
        "currency": "EUR",
        "channel": "web",
        "created": "2026-01-01T12:00:00Z",
        "items": [
            { "sku": format!("sku-{:05}", id % 101), "qty": 1 + id % 4 },
            { "sku": format!("sku-{:05}", (id * 7) % 101), "qty": 1 },
        ],
        "note": "the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog",
    })
}

/// Headers with [`TEST_ID_HEADER`] = `id`.
pub fn test_headers(id: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(TEST_ID_HEADER, id.to_string().as_str());
    headers
}

/// Publishes `payload` with `headers` (core NATS) and flushes.
pub async fn publish(client: &Client, subject: &str, headers: HeaderMap, payload: impl Into<Bytes>) {
    client
        .publish_with_headers(subject.to_string(), headers, payload.into())
        .await
        .unwrap_or_else(|e| panic!("publish to {subject}: {e}"));
    flush(client).await;
}

/// Flushes the client (publishing only queues).
pub async fn flush(client: &Client) {
    match tokio::time::timeout(Duration::from_secs(10), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("flush: {e}"),
        Err(_) => panic!("flush did not finish within 10s"),
    }
}

/// Publishes [`order`]`(id)` for every id in `ids` to `subject` (core NATS),
/// each with its [`test_headers`], then flushes. Returns the events.
pub async fn publish_orders(client: &Client, subject: &str, ids: std::ops::Range<u64>) -> Vec<Value> {
    let mut events = Vec::with_capacity(ids.clone().count());
    for id in ids {
        let event = order(id);
        client
            .publish_with_headers(subject.to_string(), test_headers(id), serde_json::to_vec(&event).unwrap().into())
            .await
            .unwrap_or_else(|e| panic!("publish to {subject}: {e}"));
        events.push(event);
    }
    flush(client).await;
    events
}

/// Publishes to a JetStream stream and waits for the server's ack.
pub async fn js_publish(js: &jetstream::Context, subject: &str, headers: HeaderMap, payload: impl Into<Bytes>) {
    let ack = js
        .publish_with_headers(subject.to_string(), headers, payload.into())
        .await
        .unwrap_or_else(|e| panic!("JetStream publish to {subject}: {e}"));
    match tokio::time::timeout(Duration::from_secs(10), ack).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("JetStream publish to {subject} not acknowledged: {e}"),
        Err(_) => panic!("JetStream publish to {subject}: no ack within 10s"),
    }
}

/// Publishes [`order`]`(id)` for every id in `ids` to `subject` with
/// JetStream acks, each with its [`test_headers`] and `Nats-Msg-Id` =
/// `in-<id>`, keeping up to 256 acks in flight. Returns the events.
pub async fn js_publish_orders(js: &jetstream::Context, subject: &str, ids: std::ops::Range<u64>) -> Vec<Value> {
    let mut events = Vec::with_capacity(ids.clone().count());
    let mut in_flight = VecDeque::new();
    for id in ids {
        let event = order(id);
        let publish = jetstream::message::PublishMessage::build()
            .headers(test_headers(id))
            .message_id(format!("in-{id}"))
            .payload(serde_json::to_vec(&event).unwrap().into());
        let ack = js
            .send_publish(subject.to_string(), publish)
            .await
            .unwrap_or_else(|e| panic!("JetStream publish to {subject}: {e}"));
        in_flight.push_back(ack);
        if in_flight.len() >= 256 {
            in_flight.pop_front().unwrap().await.unwrap_or_else(|e| panic!("JetStream publish not acked: {e}"));
        }
        events.push(event);
    }
    for ack in in_flight {
        ack.await.unwrap_or_else(|e| panic!("JetStream publish not acked: {e}"));
    }
    events
}

/// Subscribes to `subject` and flushes, so the subscription is in place at
/// the server when this returns.
pub async fn subscribe(client: &Client, subject: &str) -> Subscriber {
    let sub = client
        .subscribe(subject.to_string())
        .await
        .unwrap_or_else(|e| panic!("subscribe to {subject}: {e}"));
    flush(client).await;
    sub
}

/// Receives from `sub` until `n` messages arrived or `timeout` passed, and
/// returns what arrived (possibly fewer than `n`; never hangs).
pub async fn collect(sub: &mut Subscriber, n: usize, timeout: Duration) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::with_capacity(n.min(1 << 16));
    while seen.len() < n {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(message)) => seen.push(message),
            Ok(None) | Err(_) => break,
        }
    }
    seen
}

/// Receives whatever arrives on `sub` during `window` (to check that nothing
/// more comes after the expected messages).
pub async fn collect_for(sub: &mut Subscriber, window: Duration) -> Vec<Message> {
    collect(sub, usize::MAX, window).await
}

/// Like [`collect`], but panics unless exactly `n` messages arrive within
/// `timeout` and nothing else during the following `quiet` period.
pub async fn collect_exactly(sub: &mut Subscriber, what: &str, n: usize, timeout: Duration, quiet: Duration) -> Vec<Message> {
    let started = Instant::now();
    let mut seen = collect(sub, n, timeout).await;
    assert_eq!(seen.len(), n, "{what}: expected {n} messages within {timeout:?}, got {}", seen.len());
    let elapsed = started.elapsed();
    let extra = collect_for(sub, quiet).await;
    assert!(
        extra.is_empty(),
        "{what}: expected {n} messages, got {} more after {elapsed:.1?}; first extra: {}",
        extra.len(),
        describe(&extra[0])
    );
    seen.truncate(n);
    seen
}

/// The first value of header `name`, if present.
pub fn header(message: &Message, name: &str) -> Option<String> {
    message.headers.as_ref()?.get(name).map(|value| value.as_str().to_string())
}

/// The payload parsed as JSON; panics with the payload if it is not JSON.
pub fn json(message: &Message) -> Value {
    serde_json::from_slice(&message.payload).unwrap_or_else(|e| panic!("payload on {} is not JSON ({e}): {}", message.subject, describe(message)))
}

/// The `id` field of a JSON payload.
pub fn id_of(message: &Message) -> u64 {
    json(message)["id"].as_u64().unwrap_or_else(|| panic!("no numeric `id` in {}", describe(message)))
}

/// A one-line description of a message: subject, headers, payload.
pub fn describe(message: &Message) -> String {
    let mut headers: Vec<String> = message
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .flat_map(|(name, values)| values.iter().map(move |v| format!("{name}: {v}")))
        .collect();
    headers.sort();
    format!("subject={} headers=[{}] payload={}", message.subject, headers.join(", "), String::from_utf8_lossy(&message.payload))
}

/// Creates a file-backed stream `name` over `subjects` (duplicate window:
/// the server's default of 2 minutes).
pub async fn create_stream(js: &jetstream::Context, name: &str, subjects: &[&str]) -> stream::Stream {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create stream {name}: {e}"))
}

/// Creates KV bucket `name` and opens it. The bucket's stream is made as
/// `nats kv add` makes it: async-nats's `create_key_value` speaks a newer
/// server's dialect than the nats-server 2.9 these tests run on.
pub async fn create_kv_bucket(js: &jetstream::Context, name: &str) -> jetstream::kv::Store {
    js.create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create KV bucket {name}: {e}"));
    js.get_key_value(name).await.unwrap_or_else(|e| panic!("open KV bucket {name}: {e}"))
}

/// The number of messages in stream `name`.
pub async fn stream_len(js: &jetstream::Context, name: &str) -> Result<u64, String> {
    let mut stream = js.get_stream(name).await.map_err(|e| format!("get stream {name}: {e}"))?;
    let info = stream.info().await.map_err(|e| format!("stream {name} info: {e}"))?;
    Ok(info.state.messages)
}

/// Waits until stream `name` holds at least `n` messages; returns the count.
pub async fn wait_stream_len(js: &jetstream::Context, name: &str, n: u64, timeout: Duration) -> u64 {
    eventually(&format!("stream {name} to hold {n} messages"), timeout, || async {
        match stream_len(js, name).await {
            Ok(len) if len >= n => Ok(len),
            Ok(len) => Err(format!("{len} messages")),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Every message of stream `name`, in stream order (read with an ephemeral
/// consumer that does not ack).
pub async fn read_stream(js: &jetstream::Context, name: &str) -> Vec<Message> {
    let stream = js.get_stream(name).await.unwrap_or_else(|e| panic!("get stream {name}: {e}"));
    let expected = stream.cached_info().state.messages as usize;
    if expected == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create a reader of stream {name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut messages = Vec::with_capacity(expected);
    while messages.len() < expected {
        assert!(Instant::now() < deadline, "reading stream {name}: got {} of {expected} messages within 30s", messages.len());
        let mut batch = consumer
            .batch()
            .max_messages((expected - messages.len()).min(1000))
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap_or_else(|e| panic!("fetch from stream {name}: {e}"));
        while let Some(message) = batch.next().await {
            let message = message.unwrap_or_else(|e| panic!("read stream {name}: {e}"));
            messages.push(message.message);
        }
    }
    messages
}

/// The state of consumer `durable` on `stream`.
pub async fn consumer_info(js: &jetstream::Context, stream: &str, durable: &str) -> Result<consumer::Info, String> {
    let stream_handle = js.get_stream(stream).await.map_err(|e| format!("get stream {stream}: {e}"))?;
    stream_handle
        .consumer_info(durable)
        .await
        .map_err(|e| format!("consumer {durable} on {stream}: {e}"))
}

/// Waits until consumer `durable` on `stream` has nothing pending: every
/// message delivered and acknowledged (or terminated). Returns its state.
pub async fn wait_consumer_done(js: &jetstream::Context, stream: &str, durable: &str, timeout: Duration) -> consumer::Info {
    eventually(&format!("consumer {durable} on {stream} to ack everything"), timeout, || async {
        let info = consumer_info(js, stream, durable).await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            Ok(info)
        } else {
            Err(format!(
                "num_pending={} num_ack_pending={} delivered={} ack_floor={} redelivered={}",
                info.num_pending, info.num_ack_pending, info.delivered.stream_sequence, info.ack_floor.stream_sequence, info.num_redelivered
            ))
        }
    })
    .await
}

/// Panics unless `ids` holds every id of `expected` exactly once and nothing
/// else; the message lists (the first) missing, duplicated and unexpected ids.
pub fn assert_exactly_once(what: &str, ids: impl IntoIterator<Item = u64>, expected: impl IntoIterator<Item = u64>) {
    let mut counts = std::collections::BTreeMap::<u64, usize>::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    let expected: std::collections::BTreeSet<u64> = expected.into_iter().collect();
    let missing: Vec<u64> = expected.iter().copied().filter(|id| !counts.contains_key(id)).collect();
    let duplicated: Vec<(u64, usize)> = counts.iter().filter(|&(_, &n)| n > 1).map(|(&id, &n)| (id, n)).collect();
    let unexpected: Vec<u64> = counts.keys().copied().filter(|id| !expected.contains(id)).collect();
    assert!(
        missing.is_empty() && duplicated.is_empty() && unexpected.is_empty(),
        "{what}: {} missing (first: {:?}), {} duplicated (first (id, times): {:?}), {} unexpected (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)],
    );
}

/// Panics unless every message has a `Nats-Msg-Id` header and no two share one.
pub fn assert_unique_msg_ids(what: &str, messages: &[Message]) {
    let mut seen = std::collections::HashMap::new();
    for message in messages {
        let id = header(message, "Nats-Msg-Id").unwrap_or_else(|| panic!("{what}: no Nats-Msg-Id on {}", describe(message)));
        if let Some(previous) = seen.insert(id.clone(), message) {
            panic!("{what}: Nats-Msg-Id {id} twice:\n  {}\n  {}", describe(previous), describe(message));
        }
    }
}
