//! One running pipeline: source → workers → sink, until it is stopped.
//!
//! [`start_pipeline`] opens the pipeline's source (`nats/source.rs`) and
//! sink (`sink.rs`) and spawns [`run_pipeline`], a tokio task that takes
//! batches from the source and dispatches each to the worker threads
//! (`pipeline/workers.rs`) with the blueprint current at that moment; the
//! workers hand each processed batch to the pipeline's sink task over a
//! bounded channel. The [`PipelineHandle`] it returns swaps the blueprint
//! (hot reload) or stops the pipeline (drain).
//!
//! Both `run.rs` (the process) and `reload.rs` (the supervisor) start
//! pipelines through this module, which depends on neither.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::MAX_HOPS;
use crate::config::Pipeline;
use crate::event::{DeadLetter, ErrorKind, Event};
use crate::metrics::{Metrics, PipelineMetrics};
use crate::nats::{Captures, Delivery, KvMirror, Nats, Source, check_endpoints};
use crate::pipeline::workers::{Done, Workers};
use crate::pipeline::{Blueprint, Outcome};
use crate::sink::Sink;
use crate::state::{Applied, Store};

/// What every pipeline of a running process shares, and starting one needs.
#[derive(Clone)]
pub(crate) struct ProcessContext {
    pub nats: Nats,
    pub workers: Arc<Workers<Delivery>>,
    pub metrics: Metrics,
    /// The KV buckets granted to stages, mirrored.
    pub kv: KvMirror,
    /// Which subjects JetStream streams capture, for the sinks.
    pub captures: Captures,
    /// Fires on shutdown.
    pub stop: CancellationToken,
    /// This process's instance name: it names its state markers and the
    /// decisions it records.
    pub instance: String,
}

/// A running pipeline: swap its blueprint, or stop it.
pub(crate) struct PipelineHandle {
    swap: watch::Sender<Blueprint>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pub metrics: PipelineMetrics,
    all: Metrics,
    /// The pipeline's state, when it has stateful stages.
    state: Option<Arc<Store>>,
}

impl PipelineHandle {
    /// The next batch runs on `blueprint`; batches in flight finish on theirs.
    pub fn swap(&self, blueprint: Blueprint) {
        let blueprint = blueprint.instrument(&self.all);
        let blueprint = match &self.state {
            Some(state) => blueprint.with_state(state.clone()),
            None => blueprint,
        };
        self.swap.send_replace(blueprint);
    }

    /// Whether this pipeline runs with a state bucket: a new version that
    /// keeps state must start afresh when this one has none.
    pub fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// Stops taking events, finishes those in flight, and returns.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "a pipeline task failed");
        }
    }
}

/// Checks what the pipeline needs on the server (streams, its durable
/// consumer), without opening or creating anything: a reload does this
/// before it stops the version it replaces.
pub(crate) async fn check_pipeline(context: &ProcessContext, pipeline: &Pipeline) -> anyhow::Result<()> {
    check_endpoints(&context.nats, pipeline)
        .await
        .with_context(|| format!("pipeline \"{}\" ({})", pipeline.name, pipeline.file.display()))
}

/// Opens the pipeline's source and sink and starts it.
pub(crate) async fn start_pipeline(context: &ProcessContext, pipeline: Pipeline, blueprint: Blueprint) -> anyhow::Result<PipelineHandle> {
    let what = || format!("pipeline \"{}\" ({})", pipeline.name, pipeline.file.display());
    check_pipeline(context, &pipeline).await?;
    let counters = context.metrics.pipeline(pipeline.name.as_str());
    let stop = CancellationToken::new();
    let source = Source::open(&context.nats, &pipeline).await.with_context(what)?;
    let state = if blueprint.stateful() {
        let state = Store::open(&context.nats, pipeline.name.as_str(), &context.instance, pipeline.state.replicas, source.ack_wait(), stop.clone())
            .await
            .with_context(what)?;
        if pipeline.source.jetstream.is_none() {
            tracing::warn!(pipeline = %pipeline.name, "stateful stages on a core NATS source: state is committed before outputs are published, but an input lost in a crash is lost (core NATS cannot deliver it again); read a JetStream stream for exactly once");
        }
        Some(state)
    } else {
        None
    };
    let floor = state.clone();
    // A stateful pipeline's markers wait for the ack floor: read it often.
    let every = std::time::Duration::from_secs(if state.is_some() { 1 } else { 5 });
    source.watch_lag(counters.pending.clone(), stop.clone(), every, move |acked| {
        if let Some(state) = &floor {
            state.acked_through(acked);
        }
    });
    let mut sink = Sink::new(&context.nats, &pipeline, source.max_deliver(), counters.clone(), context.captures.clone());
    let mut current = blueprint.instrument(&context.metrics);
    if let Some(state) = &state {
        sink = sink.with_state(state.clone());
        current = current.with_state(state.clone());
    }
    let (swap, current) = watch::channel(current);
    let task = tokio::spawn(run_pipeline(pipeline, current, source, sink, context.workers.clone(), stop.clone(), state.clone()));
    Ok(PipelineHandle { swap, stop, task, metrics: counters, all: context.metrics.clone(), state })
}

/// Source → workers → sink for one pipeline, until `stop`. Each batch is
/// dispatched with the blueprint current at that moment.
pub(crate) async fn run_pipeline(
    pipeline: Pipeline,
    blueprint: watch::Receiver<Blueprint>,
    mut source: Source,
    sink: Sink,
    workers: Arc<Workers<Delivery>>,
    stop: CancellationToken,
    state: Option<Arc<Store>>,
) {
    let (done_tx, done_rx) = mpsc::channel(workers.len() * 2);
    let sink = tokio::spawn(sink.run(done_rx));
    let ticks = state.as_ref().map(|state| {
        // What ticks of an earlier run emitted and may not have published.
        let leftovers: Vec<Outcome> = state.leftovers().into_iter().map(|e| Outcome::Done(vec![e])).collect();
        tokio::spawn(tick(blueprint.clone(), workers.clone(), done_tx.clone(), stop.clone(), leftovers))
    });
    loop {
        if let Some(why) = state.as_ref().and_then(|s| s.broken()) {
            // Taking events that can never be acknowledged would only make
            // them pile up as redeliveries; wait for a reload or the stop.
            tracing::debug!(pipeline = %pipeline.name, "not taking events: {why}");
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
            }
        }
        let batch_size = blueprint.borrow().batch_size();
        let Some(mut batch) = source.next_batch(batch_size, &stop).await else { break };
        // Read after the wait: a batch that arrives after a swap runs on the
        // new version.
        let current = blueprint.borrow().clone();
        if batch.iter().any(|(event, _)| event.hops() >= MAX_HOPS) {
            let looped = stop_loops(&mut batch, &pipeline);
            if done_tx.send(Done::outcomes(looped, current.version().into())).await.is_err() {
                break;
            }
            if batch.is_empty() {
                continue;
            }
        }
        if let Some(state) = &state {
            let again = admit(state, &mut batch).await;
            if !again.is_empty() && done_tx.send(Done::outcomes(again, current.version().into())).await.is_err() {
                break;
            }
            if batch.is_empty() {
                continue;
            }
        }
        workers.dispatch(&current, batch, pipeline.ordered, &done_tx).await;
    }
    if let Some(ticks) = ticks {
        let _ = ticks.await;
    }
    let mut rest = source.stop().await.into_iter().peekable();
    let current = blueprint.borrow().clone();
    while rest.peek().is_some() {
        let mut batch: Vec<_> = rest.by_ref().take(current.batch_size()).collect();
        if let Some(state) = &state {
            let again = admit(state, &mut batch).await;
            if !again.is_empty() {
                let _ = done_tx.send(Done::outcomes(again, current.version().into())).await;
            }
        }
        workers.dispatch(&current, batch, pipeline.ordered, &done_tx).await;
    }
    drop(done_tx);
    if let Err(e) = sink.await {
        tracing::error!(pipeline = %pipeline.name, error = %e, "sink task failed");
    }
    tracing::info!(pipeline = %pipeline.name, "drained");
}

/// Takes out of `batch` the inputs whose state is committed already (a
/// redelivery after a crash): they come back with the outputs they made,
/// to publish again and acknowledge. An input still being processed (its
/// redelivery overtook it) is asked for again in a second.
async fn admit(state: &Store, batch: &mut Vec<(Event, Delivery)>) -> Vec<(Outcome, Delivery)> {
    let inputs: Vec<_> = batch.iter().map(|(_, d)| d.sequence().zip(d.pulled())).collect();
    let verdicts = state.admit(&inputs);
    if verdicts.iter().all(|v| matches!(v, Applied::No)) {
        return Vec::new();
    }
    let mut again = Vec::new();
    let mut keep = Vec::with_capacity(batch.len());
    for ((event, delivery), verdict) in std::mem::take(batch).into_iter().zip(verdicts) {
        match verdict {
            Applied::No => keep.push((event, delivery)),
            Applied::Yes(outputs) => again.push((Outcome::Done(outputs), delivery)),
            Applied::InFlight => delivery.nak(std::time::Duration::from_secs(1)).await,
        }
    }
    *batch = keep;
    again
}

/// Calls the stateful stages' `tick` every `timer` (the shortest of the
/// current version's), on the pipeline's worker, until `stop`; first hands
/// `leftovers` to the sink.
async fn tick(
    blueprint: watch::Receiver<Blueprint>,
    workers: Arc<Workers<Delivery>>,
    done: mpsc::Sender<Done<Delivery>>,
    stop: CancellationToken,
    leftovers: Vec<Outcome>,
) {
    if !leftovers.is_empty() {
        tracing::info!(
            events = leftovers.len(),
            "publishing again what ticks emitted before a crash or restart (a JetStream sink drops the copies)"
        );
        let version: Arc<str> = blueprint.borrow().version().into();
        let _ = done.send(Done { results: Vec::new(), version, ticked: leftovers, commit: None }).await;
    }
    loop {
        let every = blueprint.borrow().timer();
        let Some(every) = every else {
            // No timer now; a reload may add one.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let current = blueprint.borrow().clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        workers.tick(&current, now, &done).await;
    }
}

/// Takes the inputs that passed through weir [`MAX_HOPS`] times out of
/// `batch` and makes each a dead letter: pipelines feed each other (or this
/// one itself) in a loop.
fn stop_loops<T>(batch: &mut Vec<(Event, T)>, pipeline: &Pipeline) -> Vec<(Outcome, T)> {
    let (looped, rest): (Vec<_>, Vec<_>) = std::mem::take(batch).into_iter().partition(|(event, _)| event.hops() >= MAX_HOPS);
    *batch = rest;
    if !looped.is_empty() {
        tracing::warn!(
            pipeline = %pipeline.name,
            events = looped.len(),
            "events passed through weir pipelines {MAX_HOPS} times: a loop through subjects; dead-lettering them"
        );
    }
    looped
        .into_iter()
        .map(|(event, ticket)| {
            let message = format!(
                "passed through weir pipelines {} times (weir-hops): pipelines feed each other in a loop, or \"{}\" feeds itself; make a sink publish to a subject no source in the loop reads",
                event.hops(),
                pipeline.name
            );
            (Outcome::Dead(DeadLetter { event, stage: "source".into(), kind: ErrorKind::Loop, message }), ticket)
        })
        .collect()
}
