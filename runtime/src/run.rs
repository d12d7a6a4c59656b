//! `weir run`: the long-running process. Loads and builds every pipeline,
//! connects to NATS, and for each pipeline runs source → workers → sink
//! until shutdown, then drains.
//!
//! Delivery: an input is settled (acknowledged, for JetStream) only after
//! everything it produced — outputs or its dead letter — was published and,
//! for a JetStream sink, acknowledged by the server; for a core sink, after a
//! flush confirmed the server has it. Outputs carry a `Nats-Msg-Id` derived
//! from the input's identity and the output's index, so a redelivered input
//! cannot put duplicates into a JetStream sink.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Global, Pipeline};
use crate::engine::{Engine, EngineOptions};
use crate::event::{ErrorKind, Event, headers};
use crate::metrics::{self, Metrics, PipelineMetrics};
use crate::nats::{self, Delivery, KvMirror, Nats, Published, Publisher, Source};
use crate::pipeline::{Blueprint, Outcome};
use crate::pipeline::workers::{Done, Workers};
use crate::reload::{self, Supervisor};

/// Batches whose publish acknowledgements may be awaited at once per
/// pipeline; beyond it the sink waits, which slows the workers and the source.
const CONFIRMS_IN_FLIGHT: usize = 256;

/// Runs every pipeline of `paths` (or of the configured pipelines directory)
/// until `shutdown` fires, then drains and returns. Pipelines are reloaded
/// live when their files change, on SIGHUP and on `weir reload`.
pub async fn run(global: &Global, paths: &[PathBuf], shutdown: CancellationToken) -> anyhow::Result<()> {
    let paths = if paths.is_empty() { vec![global.pipelines.clone()] } else { paths.to_vec() };
    // Check the files before connecting: a typo should fail fast, not after
    // NATS is reached.
    let (pipelines, errors) = config::load_pipelines(&paths);
    if !errors.is_empty() {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}\n{} pipeline file(s) are invalid; `weir validate` checks them before a deploy", all.join("\n"), errors.len());
    }
    if pipelines.is_empty() {
        anyhow::bail!(
            "no pipelines in {}: put pipeline *.toml files there, or name them on the command line",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }

    // Health and metrics come up first: /healthz answers while weir waits
    // for NATS, and /readyz says why it is not ready yet.
    let metrics = Metrics::new(global.metrics.enabled);
    let endpoint_stop = CancellationToken::new();
    if global.metrics.enabled {
        let address = global.metrics.address;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot serve metrics on {address}; change [metrics].address in weir.toml or set [metrics] enabled = false"))?;
        tracing::info!("metrics on http://{address}/metrics, health on /healthz and /readyz");
        tokio::spawn(metrics::serve(metrics.clone(), listener, endpoint_stop.clone()));
    }

    let nats = nats::connect(&global.nats, &shutdown, Some(metrics.clone())).await?;
    let kv = KvMirror::default();
    let engine = Engine::new(&EngineOptions { cache_dir: Some(global.cache_dir.clone()), cache_size: Some(global.cache_size), kv: Some(Arc::new(kv.clone())) })?;
    let workers = Arc::new(Workers::start(global.workers)?);
    let context = Context { nats: nats.clone(), workers: workers.clone(), metrics: metrics.clone(), kv, stop: shutdown.clone() };
    let mut supervisor = Supervisor::new(context, engine, paths);
    let report = supervisor.reload().await;
    if !report.failed.is_empty() {
        let all: Vec<String> = report.failed.iter().map(|f| f.error.clone()).collect();
        supervisor.stop_all().await;
        anyhow::bail!("{}", all.join("\n"));
    }

    let (control_tx, mut control_rx) = mpsc::channel(4);
    let service = nats::start_service(&nats, global.instance.as_str(), supervisor.status(), control_tx).await;
    if let Err(e) = &service {
        tracing::warn!(error = %e, "cannot register the NATS service (weir runs without $SRV answers and remote reload)");
    }
    let (trigger_tx, mut trigger_rx) = mpsc::channel(64);
    let mut watcher = reload::Watcher::new(trigger_tx.clone());
    watcher.watch(&supervisor.watched_paths());
    tokio::spawn(reload::on_sighup(trigger_tx));

    // A subscription is only queued until the server has it: a round trip
    // makes "ready" true for events published right after it.
    nats.flush().await.map_err(|e| anyhow::anyhow!("NATS at {}: {e}", nats.url()))?;
    metrics.set_running(supervisor.len(), true);
    tracing::info!(url = %nats.url(), workers = workers.len(), io_threads = global.io_threads, "ready: {} pipelines running", supervisor.len());

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(why) = trigger_rx.recv() => {
                reload::debounce(&mut trigger_rx).await;
                tracing::info!("reloading ({why})");
                supervisor.reload().await;
            }
            Some(reply) = control_rx.recv() => {
                let report = supervisor.reload().await;
                let _ = reply.send(serde_json::to_value(&report).unwrap_or_default());
            }
        }
        watcher.watch(&supervisor.watched_paths());
        metrics.set_running(supervisor.len(), true);
    }

    metrics.set_running(supervisor.len(), false);
    tracing::info!("shutting down: finishing in-flight events (at most {:?})", global.shutdown_timeout);
    if tokio::time::timeout(global.shutdown_timeout, supervisor.stop_all()).await.is_err() {
        tracing::warn!("shutdown timeout reached; unfinished JetStream events will be redelivered");
    }
    if let Err(e) = tokio::time::timeout(Duration::from_secs(5), nats.flush()).await.unwrap_or(Err("timed out".into())) {
        tracing::warn!(error = %e, "final flush to NATS failed");
    }
    drop(supervisor);
    if let Ok(workers) = Arc::try_unwrap(workers) {
        tokio::task::spawn_blocking(move || workers.shutdown()).await?;
    }
    if let Ok(service) = service {
        let _ = service.stop().await;
    }
    endpoint_stop.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// What starting a pipeline needs.
#[derive(Clone)]
pub(crate) struct Context {
    pub nats: Nats,
    pub workers: Arc<Workers<Delivery>>,
    pub metrics: Metrics,
    /// The KV buckets granted to stages, mirrored.
    pub kv: KvMirror,
    /// Fires on shutdown.
    pub stop: CancellationToken,
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

/// Opens the pipeline's source and sink and starts it.
pub(crate) async fn start_pipeline(context: &Context, pipeline: Pipeline, blueprint: Blueprint) -> anyhow::Result<PipelineHandle> {
    let what = || format!("pipeline \"{}\" ({})", pipeline.name, pipeline.file.display());
    let counters = context.metrics.pipeline(pipeline.name.as_str());
    let source = Source::open(&context.nats, &pipeline).await.with_context(what)?;
    let stop = CancellationToken::new();
    source.watch_lag(counters.pending.clone(), stop.clone());
    let sink = Sink::new(&context.nats, &pipeline, source.max_deliver(), counters.clone()).await.with_context(what)?;
    let (swap, current) = watch::channel(blueprint.instrument(&context.metrics));
    let task = tokio::spawn(run_pipeline(pipeline, current, source, sink, context.workers.clone(), stop.clone()));
    Ok(PipelineHandle { swap, stop, task, metrics: counters, all: context.metrics.clone() })
}

/// Source → workers → sink for one pipeline, until `stop`. Each batch is
/// dispatched with the blueprint current at that moment.
async fn run_pipeline(
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
        let Some(batch) = source.next_batch(batch_size, &stop).await else { break };
        // Read after the wait: a batch that arrives after a swap runs on the
        // new version.
        let current = blueprint.borrow().clone();
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

/// Publishes outcomes and settles their inputs.
struct Sink {
    name: Arc<str>,
    publisher: Publisher,
    nats: Nats,
    to_stream: bool,
    /// Whether outputs get `weir-pipeline` and `weir-version`.
    stamp: bool,
    dead_letter: Option<(String, bool)>,
    max_deliver: Option<u64>,
    metrics: PipelineMetrics,
}

impl Sink {
    async fn new(nats: &Nats, pipeline: &Pipeline, max_deliver: Option<u64>, metrics: PipelineMetrics) -> anyhow::Result<Sink> {
        let publisher = Publisher::new(nats);
        if let Some(stream) = &pipeline.sink.stream {
            publisher.check_stream(stream, &pipeline.sink.subject.to_string()).await?;
        }
        if let Some(d) = &pipeline.dead_letter
            && let Some(stream) = &d.stream
        {
            publisher.check_stream(stream, d.subject.as_str()).await?;
        }
        Ok(Sink {
            name: pipeline.name.as_str().into(),
            publisher,
            nats: nats.clone(),
            to_stream: pipeline.sink.stream.is_some(),
            stamp: pipeline.sink.stamp,
            dead_letter: pipeline.dead_letter.as_ref().map(|d| (d.subject.as_str().to_owned(), d.stream.is_some())),
            max_deliver,
            metrics,
        })
    }

    async fn run(self, mut done: mpsc::Receiver<Done<Delivery>>) {
        let mut confirms = JoinSet::new();
        while let Some(Done { results, version }) = done.recv().await {
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
            for delivery in failed {
                delivery.nak(Duration::from_secs(1)).await;
            }
            if settle.iter().all(|d| !d.can_redeliver()) && pending.iter().all(|p| matches!(p, Published::Sent)) {
                continue;
            }
            while confirms.len() >= CONFIRMS_IN_FLIGHT {
                confirms.join_next().await;
            }
            let nats = self.nats.clone();
            let name = self.name.clone();
            let stats = self.metrics.clone();
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
                    if ok { d.ack().await } else { d.nak(Duration::from_secs(1)).await }
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
                let stamp = [(headers::PIPELINE, &*self.name), (headers::VERSION, version)];
                let stamp = if self.stamp { &stamp[..] } else { &[] };
                for (index, mut event) in outputs.into_iter().enumerate() {
                    strip_server_directives(&mut event);
                    let msg_id = id.as_ref().map(|id| format!("{}:{id}:{index}", self.name));
                    match self.publisher.publish(event, stamp, msg_id.as_deref(), self.to_stream).await {
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
                match self.publisher.publish(event, &[(headers::VERSION, version)], msg_id.as_deref(), *to_stream).await {
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
