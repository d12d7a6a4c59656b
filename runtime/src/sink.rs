//! The sink: the last step of an event's path. It takes what the workers
//! made of each input (an [`Outcome`]) and
//! - publishes the outputs (stamped with `weir-pipeline` and `weir-version`
//!   unless the pipeline turned that off), or else the input's dead letter;
//! - settles the input: acknowledges it (JetStream) once everything it
//!   produced is confirmed, or asks for a redelivery after a backoff
//!   (`retry`, or a publish that failed);
//! - dead-letters a `retry` once its source's delivery limit is reached.
//!
//! Delivery: an input is settled (acknowledged, for JetStream) only after
//! everything it produced — outputs or its dead letter — was published and,
//! for a JetStream sink, acknowledged by the server; for a core sink, after a
//! flush confirmed the server has it. Outputs carry a `Nats-Msg-Id` derived
//! from the input's identity and the output's index, so a redelivered input
//! cannot put duplicates into a JetStream sink.
//!
//! A core subject that a JetStream stream captures gets the stream's
//! guarantee: the sink publishes to it with JetStream acknowledgements, as
//! if `stream` were set (see `nats/capture.rs`).
//!
//! Every output carries how many weir pipelines it has passed through (see
//! [`Event::hops`]): `weir-hops`, from the second hop on, or always when the
//! pipeline does not stamp `weir-pipeline`. The task that feeds the workers
//! dead-letters an input that has looped [`MAX_HOPS`](crate::config::MAX_HOPS)
//! times.
//!
//! A pipeline with stateful stages commits each batch's state writes (and
//! what a tick emitted) to its state bucket before it publishes anything:
//! see `state/mod.rs` for the whole exactly-once sequence. Batches already
//! waiting when the sink takes one commit with it, as one atomic batch (a
//! group commit: each hot key is written once for all of them). A refused commit
//! hands the batch back for redelivery; what a refused tick emitted is
//! dropped (the next tick emits it again from the state).
//!
//! The sink is one tokio task per pipeline; the confirmations it waits for
//! run in tasks of their own, at most [`CONFIRMS_IN_FLIGHT`] batches at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::Pipeline;
use crate::event::{ErrorKind, Event, headers};
use crate::metrics::PipelineMetrics;
use crate::nats::{Captures, Delivery, Nats, Published, Publisher};
use crate::pipeline::Outcome;
use crate::pipeline::workers::Done;
use crate::state::Store;

/// The header that names a tick's output: its outputs' message ids derive
/// from it, so that publishing them again after a crash adds no copies to a
/// JetStream sink.
pub(crate) const TICK_HEADER: &str = "weir-tick";

/// Batches whose publish acknowledgements may be awaited at once per
/// pipeline; beyond it the sink waits, which slows the workers and the source.
const CONFIRMS_IN_FLIGHT: usize = 256;

/// Inputs whose batches may commit their state as one (see [`Done::absorb`]):
/// the marker lists them all.
const MAX_GROUP_INPUTS: usize = 4096;

/// And the most bytes of outputs they may have made: the marker holds them
/// (a NATS message takes 1 MiB by default).
const MAX_GROUP_OUTPUT_BYTES: usize = 256 * 1024;

/// Publishes outcomes and settles their inputs.
pub(crate) struct Sink {
    name: Arc<str>,
    publisher: Publisher,
    nats: Nats,
    to_stream: bool,
    /// Whether outputs get `weir-pipeline` and `weir-version`.
    stamp: bool,
    dead_letter: Option<(String, bool)>,
    max_deliver: Option<u64>,
    metrics: PipelineMetrics,
    /// Which core subjects a stream captures.
    captures: Captures,
    /// The streams already said to capture a subject of this sink.
    announced: Mutex<HashSet<Arc<str>>>,
    /// The state of a pipeline with stateful stages.
    state: Option<Arc<Store>>,
    /// Names ticks' outputs: this sink's own prefix, and a count.
    ticks: (String, u64),
}

impl Sink {
    /// A sink for `pipeline`; the streams it names were checked before
    /// (`nats::check_endpoints`).
    pub(crate) fn new(nats: &Nats, pipeline: &Pipeline, max_deliver: Option<u64>, metrics: PipelineMetrics, captures: Captures) -> Sink {
        Sink {
            name: pipeline.name.as_str().into(),
            publisher: Publisher::new(nats),
            nats: nats.clone(),
            to_stream: pipeline.sink.stream.is_some(),
            stamp: pipeline.sink.stamp,
            dead_letter: pipeline.dead_letter.as_ref().map(|d| (d.subject.as_str().to_owned(), d.stream.is_some())),
            max_deliver,
            metrics,
            captures,
            announced: Mutex::default(),
            state: None,
            ticks: (format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros())), 0),
        }
    }

    /// Commits the pipeline's state to `state` before publishing.
    pub(crate) fn with_state(mut self, state: Arc<Store>) -> Sink {
        self.state = Some(state);
        self
    }

    /// Gives each of a tick's outcomes a delivery whose id is the tick's
    /// (kept in the `weir-tick` header of its events, which a marker keeps).
    fn tick_deliveries(&mut self, ticked: Vec<Outcome>) -> Vec<(Outcome, Delivery)> {
        ticked
            .into_iter()
            .map(|mut outcome| {
                let id = match &mut outcome {
                    Outcome::Done(events) => {
                        let existing = events.first().and_then(|e| e.header(TICK_HEADER)).map(str::to_owned);
                        let id = existing.unwrap_or_else(|| {
                            self.ticks.1 += 1;
                            format!("tick-{}-{}", self.ticks.0, self.ticks.1)
                        });
                        for event in events.iter_mut() {
                            if event.header(TICK_HEADER).is_none() {
                                event.headers.push((TICK_HEADER.to_owned(), id.clone()));
                            }
                        }
                        id
                    }
                    Outcome::Dead(_) => {
                        self.ticks.1 += 1;
                        format!("tick-{}-{}", self.ticks.0, self.ticks.1)
                    }
                };
                (outcome, Delivery::Core { msg_id: Some(id.into()) })
            })
            .collect()
    }

    /// Whether a publish to `subject` needs JetStream acknowledgements:
    /// `stream` is set, or a stream captures the subject.
    fn acked(&self, subject: &str, configured: bool, what: &str) -> bool {
        if configured {
            return true;
        }
        let Some(stream) = self.captures.stream_for(subject) else { return false };
        let mut announced = self.announced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if announced.insert(stream.clone()) {
            tracing::info!(
                pipeline = %self.name,
                "stream \"{stream}\" captures {what} subject {subject}: publishing there with JetStream acknowledgements, so that an input is acknowledged only once the stream stored what it produced"
            );
        }
        true
    }

    /// Publishes and settles every processed batch until the workers' side
    /// of `done` is closed, then waits for the last confirmations.
    pub(crate) async fn run(mut self, mut done: mpsc::Receiver<Done<Delivery>>) {
        let mut confirms = JoinSet::new();
        let mut next: Option<Done<Delivery>> = None;
        loop {
            let Some(mut first) = (match next.take() {
                Some(waiting) => Some(waiting),
                None => done.recv().await,
            }) else {
                break;
            };
            // Group commit: the batches already waiting behind this one
            // commit their state with it, in one atomic batch.
            if self.state.is_some() {
                let mut bytes = first.output_bytes();
                while first.results.len() < MAX_GROUP_INPUTS {
                    let Ok(later) = done.try_recv() else { break };
                    let more = later.output_bytes();
                    if bytes + more > MAX_GROUP_OUTPUT_BYTES {
                        next = Some(later);
                        break;
                    }
                    if let Err(later) = first.absorb(later) {
                        next = Some(later);
                        break;
                    }
                    bytes += more;
                }
            }
            let Done { mut results, version, ticked, commit } = first;
            let sequences: Vec<u64> = results.iter().filter_map(|(_, d)| d.sequence()).collect();
            let ticked = self.tick_deliveries(ticked);
            let mut slot = None;
            if let (Some(state), Some(commit)) = (&self.state, commit.filter(|c| !c.is_empty())) {
                // The inputs that succeeded, and what they and the tick made.
                let applied: Vec<u64> = results
                    .iter()
                    .filter(|(o, _)| matches!(o, Outcome::Done(_)))
                    .filter_map(|(_, d)| d.sequence())
                    .collect();
                let outputs = results
                    .iter()
                    .chain(&ticked)
                    .filter_map(|(o, d)| match o {
                        Outcome::Done(events) if !events.is_empty() => Some((d.sequence(), events.clone())),
                        _ => None,
                    })
                    .collect();
                match state.commit(commit, applied, outputs).await {
                    Ok(s) => slot = Some(s),
                    Err(e) => {
                        self.metrics.publish_errors.inc();
                        tracing::warn!(pipeline = %self.name, bucket = state.bucket().unwrap_or_default(), inputs = results.len(), error = %e, "state commit refused; the batch will be processed again{}", if ticked.is_empty() { "" } else { " (and the tick's events emitted by a later tick)" });
                        if matches!(e, crate::nats::CommitError::Failed(_)) {
                            state.check_bucket().await;
                        }
                        for (_, delivery) in results {
                            delivery.nak(Duration::from_millis(200)).await;
                        }
                        state.settled(sequences);
                        continue;
                    }
                }
            }
            results.extend(ticked);
            let mut pending: Vec<Published> = Vec::new();
            let mut settle: Vec<Delivery> = Vec::new();
            let mut failed: Vec<Delivery> = Vec::new();
            for (outcome, delivery) in results {
                match self.publish(outcome, &delivery, &version, &mut pending).await {
                    Ok(Settle::Ack) => settle.push(delivery),
                    Ok(Settle::Redeliver(delay)) => delivery.nak(delay).await,
                    Err(PublishFailed) => failed.push(delivery),
                }
            }
            let handed_back = !failed.is_empty();
            for delivery in failed {
                hand_back(delivery, self.max_deliver, &self.name).await;
            }
            let state = self.state.clone();
            if settle.iter().all(|d| !d.can_redeliver()) && pending.iter().all(|p| matches!(p, Published::Sent)) {
                if let Some(state) = &state {
                    state.settled(sequences);
                    // A marker stays while an input it lists may come back.
                    if let Some(slot) = slot.filter(|_| !handed_back) {
                        state.release(slot);
                    }
                }
                continue;
            }
            while confirms.len() >= CONFIRMS_IN_FLIGHT {
                confirms.join_next().await;
            }
            let nats = self.nats.clone();
            let name = self.name.clone();
            let stats = self.metrics.clone();
            let max_deliver = self.max_deliver;
            confirms.spawn(async move {
                let mut ok = true;
                let mut core = false;
                for p in pending {
                    core |= matches!(p, Published::Sent);
                    if let Err(e) = p.confirmed().await {
                        tracing::warn!(pipeline = %name, error = %e, "JetStream did not acknowledge a publish; the input will be redelivered");
                        stats.publish_errors.inc();
                        ok = false;
                    }
                }
                if ok && core && settle.iter().any(Delivery::can_redeliver) {
                    // Core publishes carry no acknowledgement: a flush (a
                    // round trip) proves the server received them.
                    if let Err(e) = nats.flush().await {
                        tracing::warn!(pipeline = %name, error = %e, "flush failed; inputs will be redelivered");
                        ok = false;
                    }
                }
                for d in settle {
                    if ok { d.ack().await } else { hand_back(d, max_deliver, &name).await }
                }
                if let Some(state) = state {
                    state.settled(sequences);
                    if let Some(slot) = slot.filter(|_| ok && !handed_back) {
                        state.release(slot);
                    }
                }
            });
        }
        while confirms.join_next().await.is_some() {}
    }

    /// Publishes what one input became; says how to settle the input.
    async fn publish(&self, outcome: Outcome, delivery: &Delivery, version: &str, pending: &mut Vec<Published>) -> Result<Settle, PublishFailed> {
        let id = delivery.id();
        let stats = &self.metrics;
        if delivery.delivered() > 1 {
            stats.redeliveries.inc();
        }
        match outcome {
            Outcome::Done(outputs) => {
                stats.events_in.inc();
                if outputs.is_empty() {
                    stats.dropped.inc();
                }
                for (index, mut event) in outputs.into_iter().enumerate() {
                    strip_server_directives(&mut event);
                    let msg_id = id.as_ref().map(|id| format!("{}:{id}:{index}", self.name));
                    // The common first hop of a stamping pipeline needs no
                    // count: `weir-pipeline` says it.
                    let hops = event.hops().saturating_add(1);
                    let hops_text = if hops >= 2 || !self.stamp { hops.to_string() } else { String::new() };
                    let full = [(headers::PIPELINE, &*self.name), (headers::VERSION, version), (headers::HOPS, hops_text.as_str())];
                    let stamp = match (self.stamp, hops_text.is_empty()) {
                        (true, true) => &full[..2],
                        (true, false) => &full[..],
                        (false, _) => &full[2..],
                    };
                    let acked = self.acked(&event.subject, self.to_stream, "output");
                    match self.publisher.publish(event, stamp, msg_id.as_deref(), acked).await {
                        Ok(p) => pending.push(p),
                        Err(e) => return Err(self.publish_failed("output", &e)),
                    }
                    stats.events_out.inc();
                }
                Ok(Settle::Ack)
            }
            Outcome::Dead(letter) => {
                if letter.kind == ErrorKind::Retry && delivery.can_redeliver() && self.max_deliver.is_none_or(|max| delivery.delivered() < max) {
                    stats.retried.inc();
                    let delay = retry_delay(delivery.delivered());
                    tracing::debug!(pipeline = %self.name, stage = %letter.stage, subject = %letter.event.subject, attempt = delivery.delivered(), "retry in {delay:?}: {}", letter.message);
                    return Ok(Settle::Redeliver(delay));
                }
                stats.events_in.inc();
                stats.dead_lettered(&letter.stage, letter.kind);
                let Some((subject, to_stream)) = &self.dead_letter else {
                    tracing::error!(
                        pipeline = %self.name, stage = %letter.stage, kind = %letter.kind, subject = %letter.event.subject,
                        "event failed and the pipeline has no [dead_letter] subject: {}", letter.message
                    );
                    return Ok(Settle::Ack);
                };
                tracing::debug!(pipeline = %self.name, stage = %letter.stage, kind = %letter.kind, subject = %letter.event.subject, "dead letter: {}", letter.message);
                let event = letter.to_event(&self.name, subject);
                let msg_id = id.as_ref().map(|id| format!("{}:{id}:dead", self.name));
                let acked = self.acked(subject, *to_stream, "the dead-letter");
                match self.publisher.publish(event, &[(headers::VERSION, version)], msg_id.as_deref(), acked).await {
                    Ok(p) => pending.push(p),
                    Err(e) => return Err(self.publish_failed("dead letter", &e)),
                }
                Ok(Settle::Ack)
            }
        }
    }

    fn publish_failed(&self, what: &str, error: &str) -> PublishFailed {
        self.metrics.publish_errors.inc();
        tracing::warn!(pipeline = %self.name, error = %error, "cannot publish {what}; the input will be redelivered if its source can");
        PublishFailed
    }
}

/// A publish failed (already logged and counted): the input is handed back.
struct PublishFailed;

enum Settle {
    Ack,
    Redeliver(Duration),
}

/// Hands an input back after what it produced could not be published or
/// confirmed (a stream electing a new leader after a node was lost, say): it
/// is redelivered after [`publish_retry_delay`], which grows with each
/// delivery, so that a consumer's `max_deliver` attempts span a leader
/// election (seconds) rather than a second.
async fn hand_back(delivery: Delivery, max_deliver: Option<u64>, pipeline: &str) {
    if delivery.can_redeliver() && max_deliver.is_some_and(|max| delivery.delivered() >= max) {
        tracing::error!(
            pipeline,
            attempt = delivery.delivered(),
            "an input reached its consumer's max_deliver while what it produced could not be published; JetStream will not deliver it again (it stays in the stream): raise [source] max_deliver if NATS is often unavailable this long"
        );
    }
    let delay = publish_retry_delay(delivery.delivered());
    delivery.nak(delay).await;
}

/// Backoff after a failed publish: 2 s, 4 s, 8 s … capped at 30 s; the
/// default five deliveries span about 30 s.
fn publish_retry_delay(delivered: u64) -> Duration {
    retry_delay(delivered).saturating_mul(8).min(Duration::from_secs(30))
}

/// Backoff for `retry`: 250 ms, 500 ms, 1 s … capped at 30 s.
fn retry_delay(delivered: u64) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << delivered.saturating_sub(1).min(7))).min(Duration::from_secs(30))
}

/// Outputs keep their input's headers, but not the server directives among
/// them (`Nats-Msg-Id`, `Nats-Expected-*` …): those belong to the input's own
/// publish and would make the output's fail or be dropped as a duplicate.
/// (`weir-pipeline` and `weir-version` are stamped on at publish.)
fn strip_server_directives(event: &mut Event) {
    event.headers.retain(|(name, _)| !name.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("nats-")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_failures_back_off_longer() {
        assert_eq!(publish_retry_delay(1), Duration::from_secs(2));
        assert_eq!(publish_retry_delay(4), Duration::from_secs(16));
        assert_eq!(publish_retry_delay(9), Duration::from_secs(30));
    }

    #[test]
    fn retry_backoff_grows_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_millis(250));
        assert_eq!(retry_delay(2), Duration::from_millis(500));
        assert_eq!(retry_delay(30), Duration::from_secs(30));
    }

    #[test]
    fn outputs_lose_server_directives() {
        let mut e = Event::new("a", Vec::new());
        e.headers = vec![("Nats-Msg-Id".into(), "1".into()), ("nats-expected-stream".into(), "X".into()), ("trace".into(), "t".into())];
        strip_server_directives(&mut e);
        assert_eq!(e.headers, vec![("trace".to_owned(), "t".to_owned())]);
    }
}
