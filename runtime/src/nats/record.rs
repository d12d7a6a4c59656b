//! `weir record`: captures real events, headers and all, from core NATS or
//! from a JetStream stream, so that they can become a test case's inputs.
//!
//! Core NATS records what is published from now on. JetStream reads what the
//! stream already holds (from the start, a sequence or a time) through an
//! ordered consumer of its own: nothing is acknowledged, no durable consumer
//! is created, and the pipelines' consumers are not disturbed.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt as _;

use super::Nats;
use super::source::to_event;
use crate::event::Event;

/// Where a JetStream recording starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RecordStart {
    /// The first message the stream holds.
    #[default]
    All,
    /// This stream sequence.
    Sequence(u64),
    /// The first message at or after this instant (RFC 3339).
    Time(String),
}

/// What to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The subject to record; may have wildcards.
    pub subject: String,
    /// Stop after this many events.
    pub count: usize,
    /// Read this JetStream stream instead of subscribing on core NATS.
    pub stream: Option<String>,
    /// Where a JetStream recording starts.
    pub start: RecordStart,
    /// Stop after this long even with fewer events.
    pub wait: Duration,
}

/// Records up to `options.count` events. Returns what arrived within
/// `options.wait` (possibly fewer events, possibly none).
pub async fn record(nats: &Nats, options: &RecordOptions) -> Result<Vec<Event>, String> {
    let deadline = tokio::time::Instant::now() + options.wait;
    let mut events = Vec::with_capacity(options.count.min(1 << 16));
    match &options.stream {
        None => {
            let mut sub = nats
                .client
                .subscribe(options.subject.clone())
                .await
                .map_err(|e| format!("cannot subscribe to {}: {e}", options.subject))?;
            // The subscription must reach the server before anything is
            // published that it should see.
            nats.flush().await?;
            while events.len() < options.count {
                match tokio::time::timeout_at(deadline, sub.next()).await {
                    Ok(Some(m)) => events.push(to_event(m.subject.as_str(), m.headers.as_ref(), &m.payload)),
                    Ok(None) | Err(_) => break,
                }
            }
            let _ = sub.unsubscribe().await;
        }
        Some(stream_name) => {
            let stream = nats
                .js
                .get_stream(stream_name)
                .await
                .map_err(|e| format!("JetStream stream \"{stream_name}\": {e}; check the name with `nats stream ls`"))?;
            let deliver_policy = match &options.start {
                RecordStart::All => DeliverPolicy::All,
                RecordStart::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence: *start_sequence },
                RecordStart::Time(text) => {
                    let start_time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| format!("--start-time {text:?}: {e}; write an RFC 3339 time like 2026-12-01T00:00:00Z"))?;
                    DeliverPolicy::ByStartTime { start_time }
                }
            };
            let consumer = stream
                .create_consumer(pull::OrderedConfig { filter_subject: options.subject.clone(), deliver_policy, ..Default::default() })
                .await
                .map_err(|e| format!("cannot read stream \"{stream_name}\": {e}"))?;
            let mut messages = consumer.messages().await.map_err(|e| format!("cannot read stream \"{stream_name}\": {e}"))?;
            while events.len() < options.count {
                match tokio::time::timeout_at(deadline, messages.next()).await {
                    Ok(Some(Ok(m))) => events.push(to_event(m.subject.as_str(), m.headers.as_ref(), &m.payload)),
                    Ok(Some(Err(e))) => {
                        return Err(format!("reading stream \"{stream_name}\": {e}"));
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
    Ok(events)
}
