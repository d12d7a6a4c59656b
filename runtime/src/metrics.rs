//! Metrics: the counters every part of weir updates, exposed to Prometheus
//! (`/metrics`, OpenMetrics text), to the NATS service face (`$SRV.STATS`)
//! and to health checks (`/healthz`, `/readyz`).
//!
//! The hot path only touches pre-resolved handles: each pipeline and stage
//! resolves its labelled series once, and an update is an atomic add. Stage
//! call latencies are observed per call (a batch), not per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::event::ErrorKind;

mod endpoint;
pub use endpoint::serve;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    pipeline: String,
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLabels {
    pipeline: String,
    stage: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    pipeline: String,
    stage: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DifferenceLabels {
    pipeline: String,
    stage: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    pipeline: String,
    stage: String,
    decision: String,
    by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

type Histograms = Family<StageLabels, Histogram, fn() -> Histogram>;

/// Every metric of one weir process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    registry: Registry,
    events_in: Family<PipelineLabels, Counter>,
    events_out: Family<PipelineLabels, Counter>,
    dropped: Family<PipelineLabels, Counter>,
    dead: Family<DeadLabels, Counter>,
    retried: Family<PipelineLabels, Counter>,
    publish_errors: Family<PipelineLabels, Counter>,
    redeliveries: Family<PipelineLabels, Counter>,
    pending: Family<PipelineLabels, Gauge>,
    stage_events: Family<StageLabels, Counter>,
    stage_calls: Histograms,
    restarts: Family<StageLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    candidate_events: Family<VersionLabels, Counter>,
    candidate_errors: Family<VersionLabels, Counter>,
    candidate_agreed: Family<StageLabels, Counter>,
    candidate_differences: Family<DifferenceLabels, Counter>,
    candidate_decisions: Family<DecisionLabels, Counter>,
    nats_connected: Gauge,
    nats_reconnects: Counter,
    pipelines_running: Gauge,
    ready: AtomicBool,
    timing: bool,
}

fn call_histogram() -> Histogram {
    // 10 µs to about 5 s.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

impl Metrics {
    /// A fresh set of metrics. With `timing` off, stage calls are not timed
    /// (no clock reads on the hot path); counters always count, as the
    /// service face reports them.
    pub fn new(timing: bool) -> Metrics {
        let mut registry = Registry::with_prefix("weir");
        let events_in = Family::default();
        let events_out = Family::default();
        let dropped = Family::default();
        let dead = Family::default();
        let retried = Family::default();
        let publish_errors = Family::default();
        let redeliveries = Family::default();
        let pending = Family::default();
        let stage_events = Family::default();
        let stage_calls: Histograms = Family::new_with_constructor(call_histogram as fn() -> Histogram);
        let restarts = Family::default();
        let reloads: Family<ResultLabels, Counter> = Family::default();
        let candidate_events = Family::default();
        let candidate_errors = Family::default();
        let candidate_agreed = Family::default();
        let candidate_differences = Family::default();
        let candidate_decisions = Family::default();
        let nats_connected = Gauge::default();
        let nats_reconnects = Counter::default();
        let pipelines_running = Gauge::default();
        registry.register("events_in", "Input events settled by a pipeline", events_in.clone());
        registry.register("events_out", "Output events published by a pipeline", events_out.clone());
        registry.register("events_dropped", "Input events that produced no output", dropped.clone());
        registry.register("events_dead_lettered", "Input events dead-lettered, by failing stage and error kind", dead.clone());
        registry.register("events_retried", "Input events handed back for redelivery after a retry error", retried.clone());
        registry.register("publish_errors", "Publishes that failed", publish_errors.clone());
        registry.register("source_redeliveries", "JetStream inputs delivered more than once", redeliveries.clone());
        registry.register("source_pending_messages", "JetStream messages not yet delivered to the pipeline's consumer", pending.clone());
        registry.register("stage_events", "Events handed to a stage", stage_events.clone());
        registry.register_with_unit("stage_call_duration", "Duration of one call into a stage (a batch)", Unit::Seconds, stage_calls.clone());
        registry.register("stage_instance_restarts", "Stage instances replaced after a fault", restarts.clone());
        registry.register("reloads", "Pipeline reloads, by result", reloads.clone());
        registry.register(
            "candidate_events",
            "Events processed by a stage's candidate and by its live version while the candidate runs",
            candidate_events.clone(),
        );
        registry.register(
            "candidate_errors",
            "Events failed by a stage's candidate or its live version while the candidate runs",
            candidate_errors.clone(),
        );
        registry.register("candidate_agreements", "Shadow events on which a candidate agreed with the live version", candidate_agreed.clone());
        registry.register(
            "candidate_differences",
            "Shadow events on which a candidate differed from the live version, by kind",
            candidate_differences.clone(),
        );
        registry.register("candidate_decisions", "Candidates promoted or rolled back, by whom", candidate_decisions.clone());
        registry.register("nats_connected", "1 while connected to NATS", nats_connected.clone());
        registry.register("nats_reconnects", "Reconnections to NATS", nats_reconnects.clone());
        registry.register("pipelines_running", "Pipelines running", pipelines_running.clone());
        for result in ["ok", "failed", "rolled_back"] {
            let _ = reloads.get_or_create(&ResultLabels { result: result.into() }).get();
        }
        Metrics {
            inner: Arc::new(MetricsInner {
                registry,
                events_in,
                events_out,
                dropped,
                dead,
                retried,
                publish_errors,
                redeliveries,
                pending,
                stage_events,
                stage_calls,
                restarts,
                reloads,
                candidate_events,
                candidate_errors,
                candidate_agreed,
                candidate_differences,
                candidate_decisions,
                nats_connected,
                nats_reconnects,
                pipelines_running,
                ready: AtomicBool::new(false),
                timing,
            }),
        }
    }

    /// The handles of one pipeline.
    pub fn pipeline(&self, pipeline: &str) -> PipelineMetrics {
        let i = &self.inner;
        let l = PipelineLabels { pipeline: pipeline.to_owned() };
        PipelineMetrics {
            metrics: self.clone(),
            name: pipeline.to_owned(),
            events_in: i.events_in.get_or_create(&l).clone(),
            events_out: i.events_out.get_or_create(&l).clone(),
            dropped: i.dropped.get_or_create(&l).clone(),
            retried: i.retried.get_or_create(&l).clone(),
            publish_errors: i.publish_errors.get_or_create(&l).clone(),
            redeliveries: i.redeliveries.get_or_create(&l).clone(),
            pending: i.pending.get_or_create(&l).clone(),
            dead_total: Arc::default(),
        }
    }

    /// The handles of one stage.
    pub fn stage(&self, pipeline: &str, stage: &str) -> StageMetrics {
        let i = &self.inner;
        let l = StageLabels { pipeline: pipeline.to_owned(), stage: stage.to_owned() };
        StageMetrics {
            events: i.stage_events.get_or_create(&l).clone(),
            calls: i.timing.then(|| i.stage_calls.get_or_create(&l).clone()),
            restarts: i.restarts.get_or_create(&l).clone(),
        }
    }

    /// The handles of one stage's candidate.
    pub fn candidate(&self, pipeline: &str, stage: &str) -> CandidateMetrics {
        let i = &self.inner;
        let version = |version: &str| VersionLabels { pipeline: pipeline.to_owned(), stage: stage.to_owned(), version: version.to_owned() };
        // One statement each: a family's guard lives to the end of its
        // statement, and a second `get_or_create` on it would wait for it.
        let candidate_events = i.candidate_events.get_or_create(&version("candidate")).clone();
        let live_events = i.candidate_events.get_or_create(&version("live")).clone();
        let candidate_errors = i.candidate_errors.get_or_create(&version("candidate")).clone();
        let live_errors = i.candidate_errors.get_or_create(&version("live")).clone();
        let agreed = i
            .candidate_agreed
            .get_or_create(&StageLabels { pipeline: pipeline.to_owned(), stage: stage.to_owned() })
            .clone();
        CandidateMetrics {
            metrics: self.clone(),
            pipeline: pipeline.to_owned(),
            stage: stage.to_owned(),
            candidate_events,
            live_events,
            candidate_errors,
            live_errors,
            agreed,
        }
    }

    /// Counts a reload.
    /// `result` is `ok`, `failed` (what ran before goes on) or `rolled_back`
    /// (a new version stopped the old, failed to start, and the old one runs
    /// again).
    pub fn reload(&self, result: &str) {
        self.inner.reloads.get_or_create(&ResultLabels { result: result.into() }).inc();
    }

    /// Records the NATS connection state.
    pub fn nats_connected(&self, connected: bool) {
        let was = self.inner.nats_connected.set(i64::from(connected));
        if connected && was == 0 && self.inner.ready.load(Ordering::Relaxed) {
            self.inner.nats_reconnects.inc();
        }
    }

    /// Records how many pipelines run, and whether weir is ready (every
    /// pipeline's source open).
    pub fn set_running(&self, pipelines: usize, ready: bool) {
        self.inner.pipelines_running.set(pipelines as i64);
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// `Ok` when weir is connected to NATS and every pipeline runs, else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.inner.ready.load(Ordering::Relaxed) {
            return Err("pipelines are not running (starting up or shutting down)");
        }
        if self.inner.nats_connected.get() == 0 {
            return Err("not connected to NATS");
        }
        Ok(())
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).expect("writing to a String cannot fail");
        out
    }
}

/// One pipeline's counters.
#[derive(Clone)]
pub struct PipelineMetrics {
    metrics: Metrics,
    name: String,
    /// Inputs settled.
    pub events_in: Counter,
    /// Outputs published.
    pub events_out: Counter,
    /// Inputs that produced nothing.
    pub dropped: Counter,
    /// Inputs handed back after a `retry`.
    pub retried: Counter,
    /// Failed publishes.
    pub publish_errors: Counter,
    /// JetStream inputs seen more than once.
    pub redeliveries: Counter,
    /// JetStream consumer lag.
    pub pending: Gauge,
    dead_total: Arc<AtomicU64>,
}

impl PipelineMetrics {
    /// Counts a dead letter.
    pub fn dead_lettered(&self, stage: &str, kind: ErrorKind) {
        let labels = DeadLabels { pipeline: self.name.clone(), stage: stage.to_owned(), kind: kind.as_str().to_owned() };
        self.metrics.inner.dead.get_or_create(&labels).inc();
        self.dead_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Dead letters of this pipeline, all stages and kinds.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_total.load(Ordering::Relaxed)
    }
}

/// One stage's handles.
#[derive(Clone)]
pub struct StageMetrics {
    /// Events handed to the stage.
    pub events: Counter,
    /// Call durations, when timing is on.
    pub calls: Option<Histogram>,
    /// Instances replaced after a fault.
    pub restarts: Counter,
}

/// One stage candidate's handles.
#[derive(Clone)]
pub struct CandidateMetrics {
    metrics: Metrics,
    pipeline: String,
    stage: String,
    /// Events the candidate processed.
    pub candidate_events: Counter,
    /// Events the live version processed while the candidate ran.
    pub live_events: Counter,
    /// Events the candidate failed.
    pub candidate_errors: Counter,
    /// Events the live version failed while the candidate ran.
    pub live_errors: Counter,
    /// Shadow events on which both versions agreed.
    pub agreed: Counter,
}

impl CandidateMetrics {
    /// Counts a shadow event on which the versions differed.
    pub fn differed(&self, kind: &str) {
        let labels = DifferenceLabels { pipeline: self.pipeline.clone(), stage: self.stage.clone(), kind: kind.to_owned() };
        self.metrics.inner.candidate_differences.get_or_create(&labels).inc();
    }

    /// Counts a decision: `promoted` or `rolled_back`, `by` the rules or an operator.
    pub fn decision(&self, decision: &str, by: &str) {
        let labels = DecisionLabels { pipeline: self.pipeline.clone(), stage: self.stage.clone(), decision: decision.to_owned(), by: by.to_owned() };
        self.metrics.inner.candidate_decisions.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new(true);
        let p = m.pipeline("orders");
        p.events_in.inc_by(3);
        p.dead_lettered("route", ErrorKind::Trap);
        let s = m.stage("orders", "route");
        s.calls.as_ref().unwrap().observe(0.002);
        let text = m.render();
        assert!(text.contains("weir_events_in_total{pipeline=\"orders\"} 3"), "{text}");
        assert!(text.contains("weir_events_dead_lettered_total{pipeline=\"orders\",stage=\"route\",kind=\"trap\"} 1"), "{text}");
        assert!(text.contains("weir_stage_call_duration_seconds_bucket{"), "{text}");
        assert!(text.contains("weir_reloads_total{result=\"failed\"} 0"), "{text}");
        assert_eq!(p.dead_lettered_total(), 1);
    }

    #[test]
    fn readiness_needs_pipelines_and_nats() {
        let m = Metrics::new(false);
        assert!(m.readiness().is_err());
        m.set_running(2, true);
        assert_eq!(m.readiness(), Err("not connected to NATS"));
        m.nats_connected(true);
        assert!(m.readiness().is_ok());
    }
}
