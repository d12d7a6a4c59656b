//! NATS: the connection, the sources events come from and the publishers
//! that carry results and dead letters away. async-nats's types stay inside
//! this module; the rest of weir sees [`Event`](crate::event::Event)s,
//! [`Delivery`] handles (to acknowledge an input) and [`Publisher`]s.
//!
//! - [`connect`](connect()): the connection, its options and its events;
//! - `source`: where events come from, and their [`Delivery`] handles;
//! - `publish`: sending events, to core NATS or to JetStream;
//! - `kv`: KV buckets mirrored for stages, and `weir kv load`;
//! - `service`: the NATS service face (`$SRV` answers, remote reload).

mod capture;
mod check;
mod connect;
mod kv;
mod publish;
mod record;
mod service;
mod source;
mod state;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;

pub use capture::Captures;
pub use check::check_endpoints;
pub use connect::{ConnectError, connect};
pub use kv::{KvMirror, Loaded, load as load_kv};
pub use publish::{Published, Publisher};
pub use record::{RecordOptions, RecordStart, record};
pub use service::{ControlRequest, PipelineStatus, ReloadRequest, SharedStatus, start_service};
pub use source::{DEFAULT_MAX_DELIVER, Delivery, JsDelivery, SUBSCRIPTION_CAPACITY, Source};
pub use state::{Change, CommitError, KvWrite, MAX_BATCH_WRITES, StateBucket, TOMBSTONE_TTL};

/// A connected NATS client and its JetStream context. Cheap to clone.
#[derive(Clone)]
pub struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    url: Arc<str>,
    /// How many times the connection was lost so far.
    losses: Arc<std::sync::atomic::AtomicU64>,
}

impl Nats {
    /// The server URL(s) as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many times the connection was lost so far: a request sent before
    /// a loss gets no answer after it.
    pub fn losses(&self) -> u64 {
        self.losses.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Sends a request with an empty body and reads the JSON reply.
    pub async fn request_json(&self, subject: &str, timeout: Duration) -> Result<serde_json::Value, String> {
        self.request_json_with(subject, Bytes::new(), timeout).await
    }

    /// Sends a request with `body` and reads the JSON reply.
    pub async fn request_json_with(&self, subject: &str, body: impl Into<Bytes>, timeout: Duration) -> Result<serde_json::Value, String> {
        let reply = tokio::time::timeout(timeout, self.client.request(subject.to_owned(), body.into()))
            .await
            .map_err(|_| format!("no answer on {subject} within {}s", timeout.as_secs()))?
            .map_err(|e| format!("{subject}: {e}"))?;
        serde_json::from_slice(&reply.payload).map_err(|e| format!("{subject}: the reply is not JSON: {e}"))
    }

    /// Sends everything queued to the server.
    pub async fn flush(&self) -> Result<(), String> {
        self.client.flush().await.map_err(|e| e.to_string())
    }

    /// Returns once the server has processed everything this connection
    /// sent before, subscriptions included. async-nats's `flush` only waits
    /// until the bytes are written to the socket, not for the server: an
    /// event published by another client right after it could still miss a
    /// subscription the server had not read yet. A message to a fresh inbox,
    /// received back on this connection, comes after all of it.
    pub async fn round_trip(&self, timeout: Duration) -> Result<(), String> {
        let inbox = self.client.new_inbox();
        let mut echo = self.client.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
        self.client.publish(inbox, Bytes::new()).await.map_err(|e| e.to_string())?;
        self.client.flush().await.map_err(|e| e.to_string())?;
        let answered = tokio::time::timeout(timeout, futures::StreamExt::next(&mut echo)).await;
        let _ = echo.unsubscribe().await;
        match answered {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("the connection closed during a round trip to the server".into()),
            Err(_) => Err(format!("the server did not answer a round trip within {}s", timeout.as_secs())),
        }
    }
}

/// A source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Subscribing failed.
    #[error("cannot subscribe to {subject}: {message}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        message: String,
    },
    /// The stream does not exist: weir never creates streams.
    #[error(
        "JetStream stream \"{stream}\" ({key}) does not exist on {url}; weir never creates or changes streams: create it first (e.g. `nats stream add {stream} --subjects '{subject}'`) or fix {key}"
    )]
    MissingStream {
        /// The stream.
        stream: String,
        /// The setting that names it, like `[source] stream`.
        key: String,
        /// The source subject, for the suggested command.
        subject: String,
        /// The server.
        url: String,
    },
    /// Any other JetStream failure.
    #[error("JetStream {what}: {message}")]
    JetStream {
        /// What was being done.
        what: String,
        /// Why.
        message: String,
    },
}
