//! Hot reload: keeping the running pipelines in step with their files,
//! without ever running less than before.
//!
//! A reload is a plan, then its application:
//! - `plan`: what to do with each pipeline (add, swap in place, restart,
//!   remove, leave), computed from the running and the wanted configuration
//!   alone: no NATS, no compiling. Versions come from the settings and the
//!   plugins' bytes.
//! - this module applies it. Every new version is built first (plugins
//!   compiled, every stage's `init` run, KV buckets mirrored) and what it
//!   needs on the server checked (streams, its durable consumer); only then
//!   is anything running touched.
//!   - swap: the next batch runs on the new version; the source is kept.
//!   - restart: the new version starts, then the old one drains. When both
//!     would take the same events twice (core sources reading the same
//!     subjects without a shared queue group) or would mix their order
//!     (`ordered`), the old one drains first; if the new one then fails to
//!     start, the old one is started again (`rolled_back`).
//!   - add, then remove: a renamed file's new pipeline starts before the
//!     old one drains.
//!
//!   A step that fails leaves what ran before running; the error is logged,
//!   counted (`weir_reloads_total{result}`) and returned to `weir reload`.
//! - `watch`: the file watcher and SIGHUP, which only trigger reloads.
//! - `decisions`: stage candidates promoted or rolled back, remembered in
//!   NATS KV and applied to a pipeline file before its version is computed.
//!
//! Between reloads, [`Supervisor::tend_candidates`] publishes candidates'
//! samples of differing events and carries out their decisions (by the
//! rules, by `weir promote`/`weir rollback`, or by another weir of the
//! fleet): the pipeline is swapped in place for one whose stage runs the
//! promoted plugin, or without the rolled-back candidate.
//!
//! After a reload, compiled code that no running pipeline uses is released,
//! and the workers drop the chains (and instances) of stopped pipelines.

mod decisions;
pub mod plan;
mod watch;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use crate::control::{ReloadFailure, ReloadReport};
pub use decisions::BUCKET as DECISIONS_BUCKET;
pub use watch::DEBOUNCE;
pub(crate) use watch::{Watcher, debounce, on_sighup};

use crate::config::MAX_HOPS;
use crate::config::{self, Pipeline};
use crate::control::{CandidateReport, DecideReport, DecideRequest};
use crate::engine::{ContentHash, Engine};
use crate::event::Event;
use crate::nats::{PipelineStatus, Publisher};
use crate::pipeline::{Blueprint, CandidateState, Verdict, version};
use crate::task::{PipelineHandle, ProcessContext, check_pipeline, start_pipeline};
use decisions::Decisions;
use plan::{Action, Step, Versioned};

struct Entry {
    pipeline: Pipeline,
    blueprint: Blueprint,
    handle: PipelineHandle,
    since: Instant,
}

/// The running pipelines and how to change them.
pub(crate) struct Supervisor {
    context: ProcessContext,
    engine: Engine,
    paths: Vec<PathBuf>,
    running: BTreeMap<String, Entry>,
    status: Arc<Mutex<Vec<PipelineStatus>>>,
    decisions: Decisions,
    /// Candidates whose decision could not be carried out (the promoted
    /// version did not build): not tried again until the next reload.
    stuck: HashSet<String>,
    /// Per pipeline, its candidates decided on (here, or remembered), for
    /// `weir status`.
    decided: BTreeMap<String, Vec<CandidateReport>>,
}

impl Supervisor {
    pub(crate) fn new(context: ProcessContext, engine: Engine, paths: Vec<PathBuf>) -> Self {
        Supervisor {
            context,
            engine,
            paths,
            running: BTreeMap::new(),
            status: Arc::default(),
            decisions: Decisions::default(),
            stuck: HashSet::new(),
            decided: BTreeMap::new(),
        }
    }

    /// How many pipelines run.
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    /// The status the service face reports, kept current by every step.
    pub(crate) fn status(&self) -> Arc<Mutex<Vec<PipelineStatus>>> {
        self.status.clone()
    }

    /// The pipeline directories and every plugin file in use.
    pub(crate) fn watched_paths(&self) -> Vec<PathBuf> {
        let mut paths: BTreeSet<PathBuf> = self.paths.iter().cloned().collect();
        for entry in self.running.values() {
            paths.extend(entry.pipeline.stages.iter().map(|s| s.plugin.clone()));
            paths.extend(entry.pipeline.stages.iter().filter_map(|s| s.candidate.as_ref()).map(|c| c.plugin.clone()));
        }
        paths.into_iter().collect()
    }

    /// Reads every pipeline file again, plans, and applies the plan.
    pub(crate) async fn reload(&mut self) -> ReloadReport {
        let started = Instant::now();
        let mut report = ReloadReport::default();
        let (pipelines, errors) = config::load_pipelines(&self.paths);
        for cycle in config::allowed_loops(&pipelines) {
            tracing::warn!("pipelines with allow_loops = true feed each other: {cycle}; an event is dead-lettered after {MAX_HOPS} hops");
        }
        // A file that no longer loads keeps its running pipeline.
        let mut kept: Vec<String> = Vec::new();
        for e in errors {
            let pipeline = self.running.iter().find(|(_, r)| same_file(&r.pipeline.file, &e.file)).map(|(n, _)| n.clone());
            kept.extend(pipeline.clone());
            report
                .failed
                .push(ReloadFailure { pipeline, file: e.file.display().to_string(), error: e.to_string(), rolled_back: false });
        }
        // Versions from the plugins' bytes: nothing is compiled to plan.
        let mut wanted: Vec<(Pipeline, String)> = Vec::new();
        self.stuck.clear();
        for mut pipeline in pipelines {
            let hashes = match self.remembered(&mut pipeline).await {
                Ok(()) => plugin_hashes(&pipeline),
                Err(e) => Err(e),
            };
            match hashes {
                Ok(hashes) => {
                    let v = version(&pipeline, &hashes);
                    wanted.push((pipeline, v));
                }
                Err(error) => {
                    if self.running.contains_key(pipeline.name.as_str()) {
                        kept.push(pipeline.name.to_string());
                    }
                    report.failed.push(failure(&pipeline, error));
                }
            }
        }
        let plan = {
            let running: Vec<Versioned<'_>> = self
                .running
                .values()
                .map(|e| Versioned { pipeline: &e.pipeline, version: e.blueprint.version() })
                .collect();
            let wanted: Vec<Versioned<'_>> = wanted.iter().map(|(p, v)| Versioned { pipeline: p, version: v }).collect();
            plan::plan(&running, &wanted, &kept)
        };
        for step in plan.steps.iter().filter(|s| !matches!(s.action, Action::Unchanged | Action::Kept)) {
            tracing::info!(pipeline = %step.pipeline, "reload plan: {}: {}", step.action.as_str(), step.reason);
        }

        let mut wanted: BTreeMap<String, Pipeline> = wanted.into_iter().map(|(p, _)| (p.name.to_string(), p)).collect();
        for step in &plan.steps {
            let pipeline = wanted.remove(&step.pipeline);
            self.apply(step, pipeline, &mut report).await;
            // `weir status` shows what runs at every moment, not only at the end.
            self.publish_status();
        }
        report.plan = plan.steps;
        self.decided.retain(|name, _| self.running.contains_key(name));
        self.release_unused_code();

        for f in &report.failed {
            tracing::error!(file = %f.file, "reload failed; {}: {}", if f.rolled_back { "the old version was started again" } else { "the running version, if any, goes on" }, f.error);
        }
        self.context.metrics.reload(report.result());
        tracing::info!(
            added = report.added.len(),
            changed = report.changed.len(),
            removed = report.removed.len(),
            unchanged = report.unchanged.len(),
            failed = report.failed.len(),
            "reloaded: in {} ms",
            started.elapsed().as_millis()
        );
        report
    }

    /// Applies the decisions remembered about the pipeline's candidates.
    async fn remembered(&mut self, pipeline: &mut Pipeline) -> Result<(), String> {
        if pipeline.stages.iter().all(|s| s.candidate.is_none()) {
            self.decided.remove(pipeline.name.as_str());
            return Ok(());
        }
        self.decisions.share(&self.context.nats, &self.context.kv, self.context.stop.clone()).await;
        let hashes = plugin_hashes(pipeline)?;
        let mut reports = Vec::new();
        for (applied, report) in self.decisions.apply(&self.context.kv, pipeline, &hashes) {
            reports.push(report);
            tracing::info!(
                pipeline = %pipeline.name,
                file = %pipeline.file.display(),
                "{applied}: remembered in KV bucket {}; to make the file say what runs, move the candidate's plugin and config into the stage and remove [stages.candidate] (the version stays the same)",
                decisions::BUCKET
            );
        }
        self.decided.insert(pipeline.name.to_string(), reports);
        Ok(())
    }

    /// Publishes candidates' samples of differing events, takes in the
    /// decisions other weir processes made, and carries out every decision:
    /// the pipeline is swapped in place for one where the promoted plugin is
    /// the stage's, or the rolled-back candidate is gone. Called a few times
    /// a second.
    pub(crate) async fn tend_candidates(&mut self) {
        let mut decided: Vec<(String, Arc<CandidateState>)> = Vec::new();
        let publisher = Publisher::new(&self.context.nats);
        for (name, entry) in &self.running {
            for state in entry.blueprint.candidates() {
                if let Some(subject) = state.diff_subject() {
                    for sample in state.take_samples() {
                        let mut event = Event::new(subject, serde_json::to_vec(&sample).unwrap_or_default());
                        for (header, field) in [("weir-stage", "stage"), ("weir-candidate", "candidate"), ("weir-difference", "difference")] {
                            event.set_header(header, sample[field].as_str().unwrap_or_default());
                        }
                        if let Err(e) = publisher.publish(event, &[("weir-pipeline", name)], None, false).await {
                            tracing::debug!(pipeline = %name, error = %e, "cannot publish a candidate's sample");
                        }
                    }
                }
                let key = decisions::key(name, state.stage(), state.id());
                if state.verdict() == Verdict::Running
                    && let Some(d) = self.decisions.get(&self.context.kv, &key)
                {
                    // Decided by another weir of the fleet.
                    let verdict = if d.decision == "promoted" { Verdict::Promoted } else { Verdict::RolledBack };
                    state.decide(verdict, &d.by, &d.reason, d.instance.as_deref());
                }
                if state.verdict() != Verdict::Running && !self.stuck.contains(&key) {
                    decided.push((name.clone(), state.clone()));
                }
            }
        }
        for (name, state) in decided {
            self.carry_out(&name, &state).await;
        }
    }

    /// Remembers a candidate's decision and swaps its pipeline for the
    /// decided one.
    async fn carry_out(&mut self, name: &str, state: &CandidateState) {
        let key = decisions::key(name, state.stage(), state.id());
        let Some(entry) = self.running.get(name) else { return };
        let promoted = state.verdict() == Verdict::Promoted;
        if self.decisions.get(&self.context.kv, &key).is_none()
            && let Some(decision) = state.decision()
        {
            let mut decision = decision.clone();
            decision.instance.get_or_insert_with(|| self.context.instance.clone());
            self.decisions.remember(&self.context.nats, key.clone(), &decision).await;
        }
        let Some(index) = entry.pipeline.stages.iter().position(|s| s.name.as_str() == state.stage()) else { return };
        let mut pipeline = entry.pipeline.clone();
        decisions::apply(&mut pipeline, index, promoted);
        match self.build(&pipeline).await {
            Ok(blueprint) => {
                let entry = self.running.remove(name).expect("looked up above");
                entry.handle.swap(blueprint.clone());
                let stage = &pipeline.stages[index];
                if promoted {
                    tracing::info!(
                        pipeline = %name,
                        stage = %stage.name,
                        from = entry.blueprint.version(),
                        to = blueprint.version(),
                        "candidate {} promoted: the stage now runs {}; weir remembers it (KV bucket {}, key {key}), so a reload or restart of the unchanged file runs the promoted version; to make the file say so, move the candidate's plugin and config into the stage and remove [stages.candidate]",
                        state.id(),
                        stage.plugin.display(),
                        decisions::BUCKET,
                    );
                } else {
                    tracing::warn!(
                        pipeline = %name,
                        stage = %stage.name,
                        from = entry.blueprint.version(),
                        to = blueprint.version(),
                        "candidate {} rolled back: the stage runs its live version alone; weir remembers it (KV bucket {}, key {key}), so a reload or restart of the unchanged file does not run it again; change or remove [stages.candidate] to try another",
                        state.id(),
                        decisions::BUCKET,
                    );
                }
                self.running.insert(name.to_owned(), Entry { pipeline, blueprint, ..entry });
                let mut report = state.report(false);
                if let Some(d) = &mut report.decision {
                    d.instance.get_or_insert_with(|| self.context.instance.clone());
                }
                self.decided.entry(name.to_owned()).or_default().push(report);
                self.publish_status();
                self.release_unused_code();
            }
            Err(error) => {
                tracing::error!(pipeline = %name, "cannot carry out the decision on candidate {}: {error}; the stage runs its live version, the candidate is stopped", state.id());
                self.stuck.insert(key);
            }
        }
    }

    /// `weir promote` and `weir rollback`: a person decides on a running
    /// candidate.
    pub(crate) async fn decide(&mut self, request: DecideRequest) -> DecideReport {
        let error = |message: String| DecideReport { error: Some(message), ..Default::default() };
        let verdict = match request.decision.as_str() {
            "promoted" => Verdict::Promoted,
            "rolled_back" => Verdict::RolledBack,
            other => return error(format!("unknown decision {other:?}")),
        };
        let Some(entry) = self.running.get(&request.pipeline) else {
            return error(format!("no pipeline \"{}\" runs on weir {}; `weir status` lists what runs", request.pipeline, self.context.instance));
        };
        let Some(state) = entry.blueprint.candidates().find(|c| c.stage() == request.stage).cloned() else {
            return error(format!(
                "stage \"{}\" of pipeline \"{}\" has no candidate running (none in its file, or it was decided already); `weir status` shows the candidates",
                request.stage, request.pipeline
            ));
        };
        let asked = if verdict == Verdict::Promoted { "weir promote" } else { "weir rollback" };
        if !state.decide(verdict, "operator", &format!("asked with `{asked}`"), Some(&self.context.instance)) {
            let earlier = state.decision().map(|d| format!("{} by {}", d.decision, d.by)).unwrap_or_default();
            return DecideReport {
                candidate: state.id().to_owned(),
                decision: state.decision().cloned(),
                error: Some(format!("candidate {} was decided already ({earlier})", state.id())),
            };
        }
        self.carry_out(&request.pipeline, &state).await;
        DecideReport { candidate: state.id().to_owned(), decision: state.decision().cloned(), error: None }
    }

    /// Carries out one step of the plan.
    async fn apply(&mut self, step: &Step, pipeline: Option<Pipeline>, report: &mut ReloadReport) {
        let name = step.pipeline.clone();
        match (step.action, pipeline) {
            (Action::Unchanged, _) => report.unchanged.push(name),
            (Action::Kept, _) => {}
            (Action::Remove, _) => {
                if let Some(entry) = self.running.remove(&name) {
                    tracing::info!(pipeline = %name, "{}: draining and stopping", step.reason);
                    entry.handle.stop().await;
                    self.context.workers.forget(&name).await;
                    report.removed.push(name);
                }
            }
            (Action::Add, Some(pipeline)) => match self.prepare(&pipeline).await {
                Err(error) => report.failed.push(failure(&pipeline, error)),
                Ok(blueprint) => match start_pipeline(&self.context, pipeline.clone(), blueprint.clone()).await {
                    Ok(handle) => {
                        tracing::info!(pipeline = %name, version = blueprint.version(), "started");
                        self.running.insert(name.clone(), Entry { pipeline, blueprint, handle, since: Instant::now() });
                        report.added.push(name);
                    }
                    Err(e) => report.failed.push(failure(&pipeline, format!("{e:#}"))),
                },
            },
            (Action::Swap, Some(pipeline)) => match self.build(&pipeline).await {
                Err(error) => report.failed.push(failure(&pipeline, error)),
                // A version that keeps state needs the state bucket, which a
                // pipeline without stateful stages never opened: start it afresh.
                Ok(blueprint) if blueprint.stateful() && self.running.get(&name).is_some_and(|e| !e.handle.has_state()) => {
                    self.restart(pipeline, blueprint, report).await
                }
                Ok(blueprint) => {
                    let entry = self.running.remove(&name).expect("a swap is planned for a running pipeline");
                    entry.handle.swap(blueprint.clone());
                    tracing::info!(pipeline = %name, from = entry.blueprint.version(), to = blueprint.version(), "swapped to the new version; the source is kept");
                    self.running.insert(name.clone(), Entry { pipeline, blueprint, ..entry });
                    report.changed.push(name);
                }
            },
            (Action::Restart, Some(pipeline)) => match self.prepare(&pipeline).await {
                Err(error) => report.failed.push(failure(&pipeline, error)),
                Ok(blueprint) => self.restart(pipeline, blueprint, report).await,
            },
            (action, None) => tracing::error!(pipeline = %name, "reload plan: {} without its configuration; skipped", action.as_str()),
        }
    }

    /// Replaces a running pipeline by a new version that is built and
    /// checked, without ever leaving it not running.
    async fn restart(&mut self, pipeline: Pipeline, blueprint: Blueprint, report: &mut ReloadReport) {
        let name = pipeline.name.to_string();
        let old = self.running.remove(&name).expect("a restart is planned for a running pipeline");
        let from = old.blueprint.version().to_owned();
        if !drain_first(&old.pipeline, &pipeline) {
            match start_pipeline(&self.context, pipeline.clone(), blueprint.clone()).await {
                Ok(handle) => {
                    old.handle.stop().await;
                    tracing::info!(pipeline = %name, from, to = blueprint.version(), "the new version started, then the old one drained");
                    self.running.insert(name.clone(), Entry { pipeline, blueprint, handle, since: Instant::now() });
                    report.changed.push(name);
                }
                Err(e) => {
                    self.running.insert(name, old);
                    report.failed.push(failure(&pipeline, format!("{e:#}")));
                }
            }
            return;
        }
        tracing::info!(pipeline = %name, "draining the old version before the new one starts (the two would share or reorder events)");
        let Entry { pipeline: old_pipeline, blueprint: old_blueprint, handle, .. } = old;
        handle.stop().await;
        match start_pipeline(&self.context, pipeline.clone(), blueprint.clone()).await {
            Ok(handle) => {
                tracing::info!(pipeline = %name, from, to = blueprint.version(), "restarted on the new version");
                self.running.insert(name.clone(), Entry { pipeline, blueprint, handle, since: Instant::now() });
                report.changed.push(name);
            }
            Err(e) => {
                let error = format!("{e:#}");
                match start_pipeline(&self.context, old_pipeline.clone(), old_blueprint.clone()).await {
                    Ok(handle) => {
                        tracing::warn!(pipeline = %name, version = from, "the new version failed to start; the old version runs again");
                        self.running
                            .insert(name, Entry { pipeline: old_pipeline, blueprint: old_blueprint, handle, since: Instant::now() });
                        let mut failed = failure(&pipeline, format!("{error} (rolled back: version {from} runs again)"));
                        failed.rolled_back = true;
                        report.failed.push(failed);
                    }
                    Err(again) => report.failed.push(failure(
                        &pipeline,
                        format!(
                            "{error}; and the old version {from} could not be started again: {again:#}; the pipeline is not running: fix the cause and reload"
                        ),
                    )),
                }
            }
        }
    }

    /// Builds a new version and checks what it needs on the server.
    async fn prepare(&self, pipeline: &Pipeline) -> Result<Blueprint, String> {
        let blueprint = self.build(pipeline).await?;
        check_pipeline(&self.context, pipeline).await.map_err(|e| format!("{e:#}"))?;
        Ok(blueprint)
    }

    /// Parses, compiles and initialises on a blocking thread (compiling is
    /// CPU work; unchanged plugins come from the cache).
    async fn build(&self, pipeline: &Pipeline) -> Result<Blueprint, String> {
        // Granted KV buckets are mirrored before any instance starts, so
        // that `init` and the first events already see them.
        for bucket in pipeline.stages.iter().flat_map(|s| &s.grants.kv) {
            self.context
                .kv
                .mirror(&self.context.nats, bucket, self.context.stop.clone())
                .await
                .map_err(|e| format!("{}: {e}", pipeline.file.display()))?;
        }
        let engine = self.engine.clone();
        let pipeline = pipeline.clone();
        let blueprint = tokio::task::spawn_blocking(move || {
            Blueprint::build(&engine, &pipeline)
                .map(|(b, _)| b)
                .map_err(|e| format!("{}: {e}", pipeline.file.display()))
        })
        .await
        .unwrap_or_else(|e| Err(format!("building panicked: {e}")))?;
        for candidate in blueprint.candidates() {
            candidate.set_instance(&self.context.instance);
        }
        Ok(blueprint)
    }

    /// Forgets the compiled code of plugins no running pipeline uses.
    fn release_unused_code(&self) {
        let used: HashSet<ContentHash> = self.running.values().flat_map(|e| e.blueprint.plugin_hashes()).collect();
        let released = self.engine.retain_code(&used);
        if released > 0 {
            tracing::debug!(released, "released the compiled code of plugins no pipeline uses");
        }
    }

    fn publish_status(&self) {
        let status = self
            .running
            .iter()
            .map(|(name, e)| PipelineStatus {
                name: name.clone(),
                file: e.pipeline.file.clone(),
                version: e.blueprint.version().to_owned(),
                since: e.since,
                metrics: e.handle.metrics.clone(),
                candidates: e
                    .blueprint
                    .candidates()
                    .map(|state| {
                        let state = state.clone();
                        Arc::new(move |diff: bool| state.report(diff)) as Arc<dyn Fn(bool) -> CandidateReport + Send + Sync>
                    })
                    .chain(self.decided.get(name).into_iter().flatten().map(|report| {
                        let report = report.clone();
                        Arc::new(move |_: bool| report.clone()) as Arc<dyn Fn(bool) -> CandidateReport + Send + Sync>
                    }))
                    .collect(),
            })
            .collect();
        *self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }

    /// Drains and stops every pipeline.
    pub(crate) async fn stop_all(&mut self) {
        let all: Vec<Entry> = std::mem::take(&mut self.running).into_values().collect();
        futures::future::join_all(all.into_iter().map(|e| e.handle.stop())).await;
        self.publish_status();
    }
}

fn failure(pipeline: &Pipeline, error: String) -> ReloadFailure {
    ReloadFailure { pipeline: Some(pipeline.name.to_string()), file: pipeline.file.display().to_string(), error, rolled_back: false }
}

/// The SHA-256 of each stage's plugin file, in stage order, then of each
/// candidate's, in stage order.
fn plugin_hashes(pipeline: &Pipeline) -> Result<Vec<ContentHash>, String> {
    let stages = pipeline.stages.iter().map(|s| (s, &s.plugin, ""));
    let candidates = pipeline.stages.iter().filter_map(|s| s.candidate.as_ref().map(|c| (s, &c.plugin, " candidate")));
    stages
        .chain(candidates)
        .map(|(s, plugin, what)| {
            std::fs::read(plugin)
                .map(|bytes| ContentHash::of(&bytes))
                .map_err(|e| format!("stage \"{}\"{what} ({}): cannot read plugin {}: {e}", s.name, s.location, plugin.display()))
        })
        .collect()
}

/// Whether the old version must stop before the new one starts: when both
/// running at once would hand the same core events to both (overlapping
/// subjects and no shared queue group), or could reorder the events of an
/// `ordered` pipeline.
fn drain_first(old: &Pipeline, new: &Pipeline) -> bool {
    if old.ordered || new.ordered {
        return true;
    }
    let (a, b) = (&old.source, &new.source);
    let core = a.jetstream.is_none() && b.jetstream.is_none();
    let shared_queue = a.queue.is_some() && a.queue == b.queue;
    core && !shared_queue && config::subjects_overlap(&a.subject, &b.subject)
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok().is_some_and(|b| a == b))
}
