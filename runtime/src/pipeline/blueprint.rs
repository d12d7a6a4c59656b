//! Building a pipeline: every stage's plugin compiled (or taken from the
//! cache) and its `init` run once, and the pipeline's version.

use std::path::PathBuf;
use std::sync::Arc;

use super::candidate::{CandidateSettings, CandidateState};
use crate::config::{self, SubjectTemplate};
use crate::engine::{ContentHash, Engine, InitError, LoadError, Origin, Plugin, StageSpec};
use crate::metrics::{Metrics, StageMetrics};
use crate::state::Store;

/// A pipeline ready to run: plugins compiled and linked, configuration
/// accepted by every stage's `init`. Cheap to clone.
#[derive(Clone)]
pub struct Blueprint {
    pub(super) inner: Arc<BlueprintInner>,
}

#[derive(Clone)]
pub(super) struct BlueprintInner {
    name: String,
    version: String,
    pub(super) batch_size: usize,
    pub(super) stages: Vec<(StageSpec, Plugin)>,
    /// Per stage, its candidate (`[stages.candidate]`): what its instances
    /// need, and the figures and decision every worker shares.
    pub(super) candidates: Vec<Option<(StageSpec, Plugin, Arc<CandidateState>)>>,
    /// Where outputs go: the chain renders each output's subject.
    pub(super) sink: SubjectTemplate,
    /// Per-stage metrics, once [`Blueprint::instrument`]ed.
    pub(super) metrics: Option<Vec<StageMetrics>>,
    /// Where stateful stages keep their state: in memory until
    /// [`Blueprint::with_state`] gives the running pipeline's.
    pub(super) state: Arc<Store>,
}

/// A pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("stage \"{stage}\" of pipeline \"{pipeline}\" ({location}): {reason}")]
pub struct BuildError {
    /// The pipeline.
    pub pipeline: String,
    /// The stage that failed.
    pub stage: String,
    /// Where the stage is declared, `file:line:column`.
    pub location: String,
    /// What went wrong.
    pub reason: BuildFailure,
}

/// What went wrong while building a stage.
#[derive(Debug, thiserror::Error)]
pub enum BuildFailure {
    /// The plugin could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The plugin loaded but its first instance did not start.
    #[error(transparent)]
    Init(#[from] InitError),
    /// A candidate that weir cannot run.
    #[error("{0}")]
    Candidate(String),
    /// `timer` is set on a stage that cannot tick.
    #[error("timer is set, but {0}; remove `timer`, or use a stage that keeps state and exports tick (weir_sdk's Stage::tick)")]
    Timer(String),
}

/// How a stage's plugin was obtained, for progress messages.
#[derive(Debug, Clone)]
pub struct StageReport {
    /// The stage's name.
    pub stage: String,
    /// The plugin file.
    pub plugin: PathBuf,
    /// Content hash of the plugin.
    pub hash: ContentHash,
    /// Compiled now, or taken from a cache.
    pub origin: Origin,
    /// Time spent loading and initialising.
    pub elapsed: std::time::Duration,
}

impl Blueprint {
    /// Loads every stage's plugin and runs its `init` once, so that a
    /// pipeline that builds is a pipeline that starts.
    // A build error names pipeline, stage and location; it is returned once
    // per build, never on the event path, so its size costs nothing.
    #[allow(clippy::result_large_err)]
    pub fn build(engine: &Engine, pipeline: &config::Pipeline) -> Result<(Blueprint, Vec<StageReport>), BuildError> {
        let name = pipeline.name.as_str().to_owned();
        let mut stages = Vec::with_capacity(pipeline.stages.len());
        let mut candidates = Vec::with_capacity(pipeline.stages.len());
        let mut reports = Vec::with_capacity(pipeline.stages.len());
        let mut candidate_reports = Vec::new();
        for stage in &pipeline.stages {
            let load = |spec: &StageSpec, file: &std::path::Path, stage_name: String| {
                let started = std::time::Instant::now();
                let fail =
                    |reason: BuildFailure| BuildError { pipeline: name.clone(), stage: stage_name.clone(), location: stage.location.to_string(), reason };
                let plugin = engine.load(file).map_err(|e| fail(e.into()))?;
                plugin.instantiate(spec).map_err(|e| fail(e.into()))?;
                let report = StageReport {
                    stage: stage_name.clone(),
                    plugin: file.to_owned(),
                    hash: plugin.hash(),
                    origin: plugin.origin(),
                    elapsed: started.elapsed(),
                };
                Ok::<_, BuildError>((plugin, report))
            };
            let spec = stage_spec(pipeline, stage);
            let (plugin, report) = load(&spec, &stage.plugin, spec.stage.clone())?;
            reports.push(report);
            if stage.timer.is_some() && !plugin.ticks() {
                let why = if plugin.stateful() { "the plugin does not export tick" } else { "the plugin keeps no state (it does not import weir:stage/state)" };
                return Err(BuildError {
                    pipeline: name.clone(),
                    stage: spec.stage.clone(),
                    location: stage.location.to_string(),
                    reason: BuildFailure::Timer(why.to_owned()),
                });
            }
            stages.push((spec, plugin));
            let Some(candidate) = &stage.candidate else {
                candidates.push(None);
                continue;
            };
            let spec = candidate_spec(pipeline, stage, candidate);
            let (candidate_plugin, report) = load(&spec, &candidate.plugin, format!("{} (candidate)", stage.name))?;
            if plugin_keeps_state(&stages) || candidate_plugin.stateful() {
                return Err(BuildError {
                    pipeline: name.clone(),
                    stage: format!("{} (candidate)", stage.name),
                    location: stage.location.to_string(),
                    reason: BuildFailure::Candidate(
                        "a stage that keeps state cannot have a candidate yet (the candidate would need a copy of the state of its own); deploy the new version with a reload".to_owned(),
                    ),
                });
            }
            let plugin = candidate_plugin;
            let state = CandidateState::new(CandidateSettings {
                pipeline: &name,
                stage: stage.name.as_str(),
                id: super::candidate_id(candidate, &report.hash),
                plugin: candidate.plugin.display().to_string(),
                candidate,
            });
            candidate_reports.push(report);
            candidates.push(Some((spec, plugin, Arc::new(state))));
        }
        // The version covers the candidates' plugins after the stages'.
        reports.extend(candidate_reports);
        let version = super::version(pipeline, &reports.iter().map(|r| r.hash).collect::<Vec<_>>());
        let inner = BlueprintInner {
            name,
            version,
            batch_size: pipeline.batch_size,
            stages,
            candidates,
            sink: pipeline.sink.subject.clone(),
            metrics: None,
            state: Store::memory(),
        };
        Ok((Blueprint { inner: Arc::new(inner) }, reports))
    }

    /// The same blueprint, with its stages counted and timed in `metrics`.
    pub fn instrument(&self, metrics: &Metrics) -> Blueprint {
        let i = &self.inner;
        let stages = i.stages.iter().map(|(spec, _)| metrics.stage(&i.name, &spec.stage)).collect();
        for (_, _, state) in i.candidates.iter().flatten() {
            state.instrument(metrics);
        }
        let inner = BlueprintInner { metrics: Some(stages), ..(**i).clone() };
        Blueprint { inner: Arc::new(inner) }
    }

    /// The same blueprint, keeping its stages' state in `state` (the
    /// running pipeline's, committed to NATS) instead of in memory.
    pub fn with_state(&self, state: Arc<Store>) -> Blueprint {
        Blueprint { inner: Arc::new(BlueprintInner { state, ..(*self.inner).clone() }) }
    }

    /// Whether a stage keeps state: the pipeline then needs a state bucket,
    /// and its batches run on one worker, in order.
    pub fn stateful(&self) -> bool {
        self.inner.stages.iter().any(|(_, plugin)| plugin.stateful())
    }

    /// The shortest `timer` of its stages: how often the pipeline ticks.
    pub fn timer(&self) -> Option<std::time::Duration> {
        self.inner
            .stages
            .iter()
            .filter(|(_, plugin)| plugin.ticks())
            .filter_map(|(spec, _)| spec.timer)
            .min()
    }

    /// Where its stages keep their state.
    pub fn state(&self) -> &Arc<Store> {
        &self.inner.state
    }

    /// Whether `other` is this very build (not merely an equal one).
    pub fn same(&self, other: &Blueprint) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The version: 12 hex digits of a hash over the pipeline's settings and
    /// its plugins' contents. Outputs carry it in `weir-version`.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The content hashes of its stages' plugins: the compiled code it holds.
    pub fn plugin_hashes(&self) -> impl Iterator<Item = ContentHash> + '_ {
        let candidates = self.inner.candidates.iter().flatten().map(|(_, plugin, _)| plugin.hash());
        self.inner.stages.iter().map(|(_, plugin)| plugin.hash()).chain(candidates)
    }

    /// The candidates of its stages (`[stages.candidate]`), with their
    /// figures and decisions.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<CandidateState>> + '_ {
        self.inner.candidates.iter().flatten().map(|(_, _, state)| state)
    }

    /// The most events handed to a stage in one call.
    pub fn batch_size(&self) -> usize {
        self.inner.batch_size
    }
}

/// What an instance of a stage's candidate needs to know: the stage's
/// names (the stage's marked as the candidate's, in logs), and the
/// candidate's own limits, config and grants.
pub fn candidate_spec(pipeline: &config::Pipeline, stage: &config::StageConfig, candidate: &config::Candidate) -> StageSpec {
    StageSpec {
        pipeline: pipeline.name.as_str().to_owned(),
        stage: format!("{} (candidate)", stage.name),
        timeout: candidate.limits.timeout,
        memory: candidate.limits.memory,
        config: candidate.config.to_string(),
        dirs: candidate.grants.dirs.iter().map(|d| (d.clone(), config::Grants::guest_path(d))).collect(),
        kv: candidate.grants.kv.clone(),
        clock: candidate.grants.clock,
        state: crate::engine::StateLimits { total: candidate.limits.state, value: candidate.limits.state_value },
        timer: None,
    }
}

/// What an instance of `stage` needs to know: its names, limits, config and
/// grants.
pub fn stage_spec(pipeline: &config::Pipeline, stage: &config::StageConfig) -> StageSpec {
    StageSpec {
        pipeline: pipeline.name.as_str().to_owned(),
        stage: stage.name.as_str().to_owned(),
        timeout: stage.limits.timeout,
        memory: stage.limits.memory,
        config: stage.config.to_string(),
        dirs: stage.grants.dirs.iter().map(|d| (d.clone(), config::Grants::guest_path(d))).collect(),
        kv: stage.grants.kv.clone(),
        clock: stage.grants.clock,
        state: crate::engine::StateLimits { total: stage.limits.state, value: stage.limits.state_value },
        timer: stage.timer,
    }
}

/// Whether the last stage built keeps state.
fn plugin_keeps_state(stages: &[(StageSpec, Plugin)]) -> bool {
    stages.last().is_some_and(|(_, plugin)| plugin.stateful())
}
