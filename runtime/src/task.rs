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
    /// This process's name (`instance`), for decisions it records.
    pub instance: String,
}

/// A running pipeline: swap its blueprint, or stop it.
pub(crate) struct PipelineHandle {
    swap: watch::Sender<Blueprint>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pub metrics: PipelineMetrics,
    all: Metrics,
}

impl PipelineHandle {
    /// The next batch runs on `blueprint`; batches in flight finish on theirs.
    pub fn swap(&self, blueprint: Blueprint) {
        self.swap.send_replace(blueprint.instrument(&self.all));
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
    let source = Source::open(&context.nats, &pipeline).await.with_context(what)?;
    let stop = CancellationToken::new();
    source.watch_lag(counters.pending.clone(), stop.clone());
    let sink = Sink::new(&context.nats, &pipeline, source.max_deliver(), counters.clone(), context.captures.clone());
    let (swap, current) = watch::channel(blueprint.instrument(&context.metrics));
    let task = tokio::spawn(run_pipeline(pipeline, current, source, sink, context.workers.clone(), stop.clone()));
    Ok(PipelineHandle { swap, stop, task, metrics: counters, all: context.metrics.clone() })
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
) {
    let (done_tx, done_rx) = mpsc::channel(workers.len() * 2);
    let sink = tokio::spawn(sink.run(done_rx));
    loop {
        let batch_size = blueprint.borrow().batch_size();
        let Some(mut batch) = source.next_batch(batch_size, &stop).await else { break };
        // Read after the wait: a batch that arrives after a swap runs on the
        // new version.
        let current = blueprint.borrow().clone();
        if batch.iter().any(|(event, _)| event.hops() >= MAX_HOPS) {
            let looped = stop_loops(&mut batch, &pipeline);
            if done_tx.send(Done { results: looped, version: current.version().into() }).await.is_err() {
                break;
            }
            if batch.is_empty() {
                continue;
            }
        }
        workers.dispatch(&current, batch, pipeline.ordered, &done_tx).await;
    }
    let mut rest = source.stop().await.into_iter().peekable();
    let current = blueprint.borrow().clone();
    while rest.peek().is_some() {
        let batch: Vec<_> = rest.by_ref().take(current.batch_size()).collect();
        workers.dispatch(&current, batch, pipeline.ordered, &done_tx).await;
    }
    drop(done_tx);
    if let Err(e) = sink.await {
        tracing::error!(pipeline = %pipeline.name, error = %e, "sink task failed");
    }
    tracing::info!(pipeline = %pipeline.name, "drained");
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
