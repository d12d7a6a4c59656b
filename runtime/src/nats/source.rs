//! Where events come from. Two kinds of source:
//! - core NATS (`subject`, optional `queue`): at-most-once, fastest;
//! - JetStream (`stream` + `durable`): a pull consumer, at-least-once: an
//!   input is acknowledged only after everything it produced was published.
//!
//! Each event comes with its [`Delivery`], the handle the sink settles it
//! with (ack, or nak for a redelivery).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use async_nats::{HeaderMap, Subscriber};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use tokio_util::sync::CancellationToken;

use super::{Nats, SourceError};
use crate::config::{self, Deliver};
use crate::event::Event;

/// How many messages a core subscription buffers before NATS calls the
/// subscriber slow and drops messages (the async-nats default of 65,536
/// drops at full speed: docs/performance.md, 'Facts the code relies on').
pub const SUBSCRIPTION_CAPACITY: usize = 1 << 18;

/// Messages a JetStream pull asks for at a time: enough to keep the workers
/// busy, few enough that little is fetched ahead and left pending on a stop.
const PULL_BATCH: usize = 256;

/// How long one pull request waits for messages before weir asks again.
const PULL_EXPIRES: Duration = Duration::from_millis(500);

/// Delivery limit of the consumers weir creates when the pipeline sets none:
/// a `retry` gets this many attempts before it is dead-lettered.
pub const DEFAULT_MAX_DELIVER: i64 = 5;

/// Where an input came from, and how to settle it once processed.
pub enum Delivery {
    /// Core NATS: nothing to acknowledge.
    Core {
        /// The input's own `Nats-Msg-Id`, if it had one (to derive output ids).
        msg_id: Option<Arc<str>>,
    },
    /// JetStream: acknowledge, or ask for redelivery.
    JetStream(Box<JsDelivery>),
}

/// A JetStream input's handle.
pub struct JsDelivery {
    acker: jetstream::message::Acker,
    stream: Arc<str>,
    sequence: u64,
    delivered: i64,
    /// When the pull request that brought it was made: before the server
    /// sent it, so before its `ack_wait` started.
    pulled: Instant,
}

impl Delivery {
    /// A stable id for this input, the base of its outputs' `Nats-Msg-Id`:
    /// the stream and sequence for JetStream, the input's own message id for
    /// core NATS. Redeliveries get the same id, so a JetStream sink drops
    /// their outputs as duplicates.
    pub fn id(&self) -> Option<String> {
        match self {
            Delivery::Core { msg_id } => msg_id.as_deref().map(str::to_owned),
            Delivery::JetStream(js) => Some(format!("{}:{}", js.stream, js.sequence)),
        }
    }

    /// The input's stream sequence (JetStream only).
    pub fn sequence(&self) -> Option<u64> {
        match self {
            Delivery::Core { .. } => None,
            Delivery::JetStream(js) => Some(js.sequence),
        }
    }

    /// When the pull request that brought this input was made (JetStream
    /// only): its `ack_wait` started later, when the server sent it.
    pub fn pulled(&self) -> Option<Instant> {
        match self {
            Delivery::Core { .. } => None,
            Delivery::JetStream(js) => Some(js.pulled),
        }
    }

    /// How many times this input was delivered (1 for core NATS).
    pub fn delivered(&self) -> u64 {
        match self {
            Delivery::Core { .. } => 1,
            Delivery::JetStream(js) => js.delivered.max(1) as u64,
        }
    }

    /// Whether the source can deliver this input again.
    pub fn can_redeliver(&self) -> bool {
        matches!(self, Delivery::JetStream(_))
    }

    /// Marks the input done. A lost ack only means a redelivery, whose
    /// outputs the message ids de-duplicate.
    pub async fn ack(self) {
        if let Delivery::JetStream(js) = self
            && let Err(e) = js.acker.ack().await
        {
            tracing::warn!(stream = %js.stream, sequence = js.sequence, error = %e, "ack failed; the event will be redelivered");
        }
    }

    /// Asks for a redelivery after `delay`.
    pub async fn nak(self, delay: Duration) {
        if let Delivery::JetStream(js) = self
            && let Err(e) = js.acker.ack_with(AckKind::Nak(Some(delay))).await
        {
            tracing::warn!(stream = %js.stream, sequence = js.sequence, error = %e, "nak failed; the event will be redelivered after ack_wait");
        }
    }
}

/// An open source of events.
pub struct Source {
    kind: SourceKind,
    max_deliver: Option<u64>,
    ack_wait: Option<Duration>,
}

// A subscriber is large, but there is one source per pipeline: boxing it
// would buy nothing.
#[allow(clippy::large_enum_variant)]
enum SourceKind {
    Core(Subscriber),
    /// `batch`: the open pull request, and when it was made.
    JetStream {
        stream: Arc<str>,
        consumer: jetstream::consumer::PullConsumer,
        batch: Option<(pull::Batch, Instant)>,
    },
    Closed,
}

impl Source {
    /// Subscribes (core) or binds to the durable consumer, creating the
    /// consumer when missing (JetStream).
    pub async fn open(nats: &Nats, pipeline: &config::Pipeline) -> Result<Source, SourceError> {
        let source = &pipeline.source;
        let subject = source.subject.as_str().to_owned();
        let Some(js) = &source.jetstream else {
            let subscribed = match &source.queue {
                Some(queue) => nats.client.queue_subscribe(subject.clone(), queue.clone()).await,
                None => nats.client.subscribe(subject.clone()).await,
            };
            let sub = subscribed.map_err(|e| SourceError::Subscribe { subject, message: e.to_string() })?;
            return Ok(Source { kind: SourceKind::Core(sub), max_deliver: Some(1), ack_wait: None });
        };

        let stream = super::check::get_stream(nats, &js.stream, &subject, "[source] stream").await?;
        let deliver_policy = match &js.deliver {
            Deliver::All => DeliverPolicy::All,
            Deliver::New => DeliverPolicy::New,
            Deliver::StartSequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence: *start_sequence },
            Deliver::StartTime(text) => {
                let start_time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| SourceError::JetStream { what: "reading deliver.start_time".into(), message: e.to_string() })?;
                DeliverPolicy::ByStartTime { start_time }
            }
        };
        let wanted = pull::Config {
            durable_name: Some(js.durable.clone()),
            description: Some(format!("weir pipeline {}", pipeline.name)),
            filter_subject: js.filter_subject.as_ref().map_or_else(|| subject.clone(), |s| s.as_str().to_owned()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: js.ack_wait.unwrap_or(Duration::from_secs(30)),
            max_deliver: js.max_deliver.unwrap_or(DEFAULT_MAX_DELIVER),
            max_ack_pending: js.max_ack_pending.unwrap_or(10_000),
            deliver_policy,
            ..Default::default()
        };
        let asked_ack_wait = wanted.ack_wait;
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(&js.durable, wanted)
            .await
            .map_err(|e| SourceError::JetStream { what: format!("binding durable consumer \"{}\"", js.durable), message: e.to_string() })?;
        // The consumer may have existed with other settings: obey its own.
        let config = consumer.info().await.ok().map(|i| i.config.clone());
        let max_deliver = config.as_ref().map(|c| c.max_deliver).filter(|m| *m > 0).map(|m| m as u64);
        let ack_wait = Some(config.map_or(asked_ack_wait, |c| c.ack_wait));
        Ok(Source { kind: SourceKind::JetStream { stream: js.stream.as_str().into(), consumer, batch: None }, max_deliver, ack_wait })
    }

    /// For a JetStream source, keeps `gauge` at the consumer's count of
    /// messages not yet delivered (its lag), every five seconds, until `stop`.
    /// `acked_through` is told the consumer's ack floor each time (every
    /// input up to that stream sequence is acknowledged).
    pub fn watch_lag(
        &self,
        gauge: prometheus_client::metrics::gauge::Gauge,
        stop: CancellationToken,
        every: Duration,
        acked_through: impl Fn(u64) + Send + 'static,
    ) {
        let SourceKind::JetStream { consumer, .. } = &self.kind else { return };
        let mut consumer = consumer.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(info) = consumer.info().await {
                    gauge.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
                    acked_through(info.ack_floor.stream_sequence);
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }

    /// The consumer's ack wait (JetStream only): an input not acknowledged
    /// within it of its delivery is delivered again, maybe to another process.
    pub fn ack_wait(&self) -> Option<Duration> {
        self.ack_wait
    }

    /// The delivery limit, if any: beyond it a `retry` is dead-lettered.
    pub fn max_deliver(&self) -> Option<u64> {
        self.max_deliver
    }

    /// Waits for at least one event, then takes whatever else is already
    /// waiting, up to `max`. `None` once the source is closed.
    /// Returns `None` too once `stop` fires: only the waiting is cut short,
    /// never a pull request in the making, so nothing fetched is orphaned.
    pub async fn next_batch(&mut self, max: usize, stop: &CancellationToken) -> Option<Vec<(Event, Delivery)>> {
        loop {
            match &mut self.kind {
                SourceKind::Closed => return None,
                SourceKind::Core(sub) => {
                    let first = tokio::select! {
                        _ = stop.cancelled() => return None,
                        first = sub.next() => first?,
                    };
                    let mut batch = Vec::with_capacity(max.min(64));
                    batch.push(core_event(first));
                    while batch.len() < max {
                        match sub.next().now_or_never() {
                            Some(Some(m)) => batch.push(core_event(m)),
                            _ => break,
                        }
                    }
                    return Some(batch);
                }
                SourceKind::JetStream { stream, consumer, batch } => {
                    // One pull request at a time: weir asks for more only
                    // when it has taken what it asked for, so a stop knows
                    // exactly what is still on its way.
                    if stop.is_cancelled() {
                        return None;
                    }
                    let (pull, pulled) = match batch {
                        Some((pull, pulled)) => (pull, *pulled),
                        None => match consumer.batch().max_messages(PULL_BATCH).expires(PULL_EXPIRES).messages().await {
                            Ok(pull) => {
                                let (pull, pulled) = batch.insert((pull, Instant::now()));
                                (pull, *pulled)
                            }
                            Err(e) => {
                                tracing::warn!(stream = %stream, error = %e, "JetStream pull failed; retrying");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                continue;
                            }
                        },
                    };
                    let mut taken = Vec::new();
                    let next = tokio::select! {
                        _ = stop.cancelled() => return None,
                        next = pull.next() => next,
                        // The request expires after PULL_EXPIRES; if its end
                        // never arrives, this process would wait forever while
                        // other processes on the same durable take all the
                        // work. Anything still on its way comes back after
                        // ack_wait.
                        _ = tokio::time::sleep(PULL_EXPIRES * 4) => {
                            tracing::debug!(stream = %stream, "JetStream pull request outlived its expiry; asking again");
                            *batch = None;
                            continue;
                        }
                    };
                    match next {
                        Some(Ok(m)) => taken.extend(js_event(stream, m, pulled)),
                        Some(Err(e)) => {
                            // Missed heartbeats and the like: ask again.
                            tracing::debug!(stream = %stream, error = %e, "JetStream pull ended");
                            *batch = None;
                            continue;
                        }
                        None => {
                            *batch = None;
                            continue;
                        }
                    }
                    while taken.len() < max {
                        match pull.next().now_or_never() {
                            Some(Some(Ok(m))) => taken.extend(js_event(stream, m, pulled)),
                            Some(None) => {
                                *batch = None;
                                break;
                            }
                            _ => break,
                        }
                    }
                    if taken.is_empty() {
                        continue;
                    }
                    return Some(taken);
                }
            }
        }
    }

    /// Stops taking new events and returns those already on their way to
    /// weir, to be processed before the pipeline stops. A core subscription
    /// is drained: the server stops sending, and what the client buffered
    /// (or was still in flight) comes back. What a JetStream pull request
    /// still brings is handed back to the server instead (nak), for
    /// immediate redelivery.
    pub async fn stop(&mut self) -> Vec<(Event, Delivery)> {
        let mut rest = Vec::new();
        match std::mem::replace(&mut self.kind, SourceKind::Closed) {
            SourceKind::Core(mut sub) => {
                if let Err(e) = sub.drain().await {
                    tracing::debug!(error = %e, "drain failed; unsubscribing");
                    let _ = sub.unsubscribe().await;
                }
                while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                    rest.push(core_event(m));
                }
            }
            SourceKind::JetStream { batch, stream, .. } => {
                // What the open pull request still brings was never started:
                // hand it back at once rather than leave it pending until
                // `ack_wait`. The request ends after PULL_BATCH messages or
                // PULL_EXPIRES, so this ends too.
                let mut handed_back = 0;
                if let Some((mut pull, _)) = batch {
                    let deadline = tokio::time::Instant::now() + PULL_EXPIRES + Duration::from_millis(500);
                    while let Ok(Some(next)) = tokio::time::timeout_at(deadline, pull.next()).await {
                        if let Ok(m) = next {
                            if let Err(e) = m.ack_with(AckKind::Nak(None)).await {
                                tracing::debug!(error = %e, "nak on shutdown failed; redelivered after ack_wait");
                            }
                            handed_back += 1;
                        }
                    }
                }
                tracing::debug!(stream = %stream, handed_back, "JetStream pull stopped");
            }
            SourceKind::Closed => {}
        }
        rest
    }
}

fn core_event(m: async_nats::Message) -> (Event, Delivery) {
    let msg_id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| Arc::from(v.as_str()));
    (to_event(m.subject.as_str(), m.headers.as_ref(), &m.payload), Delivery::Core { msg_id })
}

fn js_event(stream: &Arc<str>, m: jetstream::Message, pulled: Instant) -> Option<(Event, Delivery)> {
    let (sequence, delivered) = match m.info() {
        Ok(info) => (info.stream_sequence, info.delivered),
        Err(e) => {
            tracing::warn!(error = %e, subject = %m.subject, "JetStream message without ack metadata; skipping");
            return None;
        }
    };
    let (message, acker) = m.split();
    let event = to_event(message.subject.as_str(), message.headers.as_ref(), &message.payload);
    Some((event, Delivery::JetStream(Box::new(JsDelivery { acker, stream: stream.clone(), sequence, delivered, pulled }))))
}

pub(super) fn to_event(subject: &str, headers: Option<&HeaderMap>, payload: &Bytes) -> Event {
    let headers = headers
        .map(|h| {
            h.iter()
                .flat_map(|(name, values)| values.iter().map(move |v| (name.to_string(), v.as_str().to_owned())))
                .collect()
        })
        .unwrap_or_default();
    // The payload is shared with the client's message, not copied.
    Event { subject: subject.to_owned(), headers, payload: payload.clone() }
}
