//! A pipeline's chain of stages applied to events.
//!
//! A [`Blueprint`] is a pipeline whose plugins are compiled and checked (every
//! `init` ran once): what `weir validate` proves and what a reload builds
//! before it swaps. Each worker makes its own [`Chain`] from it, with its own
//! instances, and feeds it batches of input events; for each input event the
//! chain says what became of it: an [`Outcome`].
//!
//! An input event and everything derived from it succeed or fail together:
//! if any stage refuses or faults on any part of it, the original input goes
//! to the dead letter, untouched, and none of its outputs are published. That
//! keeps redelivery simple: an input is either fully processed or not at all.

pub mod workers;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, SubjectTemplate};
use crate::engine::{ContentHash, Engine, InitError, Instance, LoadError, Origin, Plugin, StageSpec};
use crate::event::{DeadLetter, ErrorKind, Event, StageError};
use crate::metrics::{Metrics, StageMetrics};

/// A pipeline ready to run: plugins compiled and linked, configuration
/// accepted by every stage's `init`. Cheap to clone.
#[derive(Clone)]
pub struct Blueprint {
    inner: Arc<BlueprintInner>,
}

struct BlueprintInner {
    name: String,
    version: String,
    batch_size: usize,
    stages: Vec<(StageSpec, Plugin)>,
    sink: SubjectTemplate,
    /// Per-stage metrics, once [`Blueprint::instrument`]ed.
    metrics: Option<Vec<StageMetrics>>,
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
        let mut reports = Vec::with_capacity(pipeline.stages.len());
        for stage in &pipeline.stages {
            let started = std::time::Instant::now();
            let fail = |reason: BuildFailure| BuildError {
                pipeline: name.clone(),
                stage: stage.name.as_str().to_owned(),
                location: stage.location.to_string(),
                reason,
            };
            let plugin = engine.load(&stage.plugin).map_err(|e| fail(e.into()))?;
            let spec = StageSpec {
                pipeline: name.clone(),
                stage: stage.name.as_str().to_owned(),
                timeout: stage.limits.timeout,
                memory: stage.limits.memory,
                config: stage.config.to_string(),
                dirs: stage.grants.dirs.iter().map(|d| (d.clone(), config::Grants::guest_path(d))).collect(),
                kv: stage.grants.kv.clone(),
            };
            plugin.instantiate(&spec).map_err(|e| fail(e.into()))?;
            reports.push(StageReport {
                stage: spec.stage.clone(),
                plugin: stage.plugin.clone(),
                hash: plugin.hash(),
                origin: plugin.origin(),
                elapsed: started.elapsed(),
            });
            stages.push((spec, plugin));
        }
        let version = version(pipeline, &reports);
        let inner = BlueprintInner {
            name,
            version,
            batch_size: pipeline.batch_size,
            stages,
            sink: pipeline.sink.subject.clone(),
            metrics: None,
        };
        Ok((Blueprint { inner: Arc::new(inner) }, reports))
    }

    /// The same blueprint, with its stages counted and timed in `metrics`.
    pub fn instrument(&self, metrics: &Metrics) -> Blueprint {
        let i = &self.inner;
        let stages = i.stages.iter().map(|(spec, _)| metrics.stage(&i.name, &spec.stage)).collect();
        let inner = BlueprintInner {
            name: i.name.clone(),
            version: i.version.clone(),
            batch_size: i.batch_size,
            stages: i.stages.clone(),
            sink: i.sink.clone(),
            metrics: Some(stages),
        };
        Blueprint { inner: Arc::new(inner) }
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

    /// The most events handed to a stage in one call.
    pub fn batch_size(&self) -> usize {
        self.inner.batch_size
    }

    /// A chain with its own instances. Instances are created lazily, on the
    /// first batch, so this never fails.
    pub fn chain(&self) -> Chain {
        let stages = self
            .inner
            .stages
            .iter()
            .enumerate()
            .map(|(index, (spec, plugin))| Slot {
                spec: spec.clone(),
                plugin: plugin.clone(),
                instance: None,
                restarts: 0,
                metrics: self.inner.metrics.as_ref().map(|m| m[index].clone()),
            })
            .collect();
        Chain { blueprint: self.clone(), stages }
    }
}

/// Hashes what the pipeline does: its parsed settings (the same TOML with
/// other comments or spacing is the same version) and every plugin's bytes.
fn version(pipeline: &config::Pipeline, reports: &[StageReport]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut settings = pipeline.clone();
    // Where the file lives is not what it does.
    settings.file = PathBuf::new();
    for stage in &mut settings.stages {
        stage.location.file = PathBuf::new();
        stage.location.line = 0;
        stage.location.column = 0;
    }
    h.update(format!("{settings:?}").as_bytes());
    for r in reports {
        h.update(r.hash.0);
    }
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// What became of one input event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed: the events to publish, with their final subjects (none: the
    /// event was filtered out).
    Done(Vec<Event>),
    /// Failed: the original event and why.
    Dead(DeadLetter),
}

/// A blueprint's stages with live instances, owned by one worker.
pub struct Chain {
    blueprint: Blueprint,
    stages: Vec<Slot>,
}

struct Slot {
    spec: StageSpec,
    plugin: Plugin,
    instance: Option<Instance>,
    restarts: u64,
    metrics: Option<StageMetrics>,
}

/// Why one event failed in one stage.
struct Failure {
    kind: ErrorKind,
    message: String,
}

type SlotResult = Result<Vec<Event>, Failure>;

impl Chain {
    /// The blueprint this chain runs.
    pub fn blueprint(&self) -> &Blueprint {
        &self.blueprint
    }

    /// Instances thrown away after a fault, per stage, since the chain was made.
    pub fn restarts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.stages.iter().map(|s| (s.spec.stage.as_str(), s.restarts))
    }

    /// Runs `inputs` through every stage and says, for each input in order,
    /// what became of it.
    pub fn process(&mut self, inputs: Vec<Event>) -> Vec<Outcome> {
        let n = inputs.len();
        let batch = self.blueprint.inner.batch_size;
        let mut failed: Vec<Option<(usize, Failure)>> = (0..n).map(|_| None).collect();
        let mut owners: Vec<usize> = (0..n).collect();
        let mut current = inputs;
        let mut originals: Option<Vec<Event>> = None;
        // What each input became after the last stage. The last stage's list
        // for an input is taken as it is when it is the input's only one (a
        // map or a filter): no new list per event.
        let mut outputs: Vec<Vec<Event>> = (0..n).map(|_| Vec::new()).collect();
        let last = self.stages.len().saturating_sub(1);

        for (index, slot) in self.stages.iter_mut().enumerate() {
            let (lent, results) = slot.run(current, batch);
            if index == 0 {
                originals = Some(lent);
            }
            if index == last {
                for (result, &owner) in results.into_iter().zip(&owners) {
                    if failed[owner].is_some() {
                        continue;
                    }
                    match result {
                        Ok(events) if outputs[owner].is_empty() => outputs[owner] = events,
                        Ok(events) => outputs[owner].extend(events),
                        Err(failure) => failed[owner] = Some((index, failure)),
                    }
                }
                current = Vec::new();
                break;
            }
            let mut next = Vec::with_capacity(results.len());
            let mut next_owners = Vec::with_capacity(results.len());
            for (result, &owner) in results.into_iter().zip(&owners) {
                if failed[owner].is_some() {
                    continue;
                }
                match result {
                    Ok(outputs) => {
                        next_owners.extend(std::iter::repeat_n(owner, outputs.len()));
                        next.extend(outputs);
                    }
                    Err(failure) => failed[owner] = Some((index, failure)),
                }
            }
            // A sibling that failed later in this stage fails its whole input.
            if next_owners.iter().any(|&o| failed[o].is_some()) {
                let keep: Vec<bool> = next_owners.iter().map(|&o| failed[o].is_none()).collect();
                let mut k = keep.iter();
                next.retain(|_| *k.next().expect("one flag per event"));
                next_owners.retain(|&o| failed[o].is_none());
            }
            current = next;
            owners = next_owners;
        }
        // No stage at all: every input is its own output.
        let originals = originals.unwrap_or_else(|| {
            for (output, event) in outputs.iter_mut().zip(&current) {
                output.push(event.clone());
            }
            current
        });

        // Render the sink subject of every output; an output that cannot be
        // published (bad subject or headers) fails its input like any stage would.
        let sink = &self.blueprint.inner.sink;
        // Each subject is rendered into the buffer of the one it replaces:
        // no allocation per event once the buffers are large enough.
        let mut scratch = String::new();
        for ((events, failure), original) in outputs.iter_mut().zip(&mut failed).zip(&originals) {
            if failure.is_some() {
                events.clear();
                continue;
            }
            for event in events.iter_mut() {
                let rendered = sink
                    .render_into(&mut scratch, &event.subject, &original.subject)
                    .map_err(|message| format!("output subject {:?}: {message}", event.subject))
                    .and_then(|()| event.check_publishable());
                match rendered {
                    Ok(()) => std::mem::swap(&mut event.subject, &mut scratch),
                    Err(message) => {
                        *failure = Some((usize::MAX, Failure { kind: ErrorKind::BadOutput, message }));
                        break;
                    }
                }
            }
            if failure.is_some() {
                events.clear();
            }
        }

        originals
            .into_iter()
            .zip(failed)
            .zip(outputs)
            .map(|((event, failure), outputs)| match failure {
                None => Outcome::Done(outputs),
                Some((stage, Failure { kind, message })) => Outcome::Dead(DeadLetter {
                    event,
                    stage: self.stages.get(stage).map_or_else(|| "sink".to_owned(), |s| s.spec.stage.clone()),
                    kind,
                    message,
                }),
            })
            .collect()
    }
}

impl Slot {
    /// Runs `events` through this stage in batches of at most `batch`;
    /// returns the events (lent, not consumed) and one result per event.
    fn run(&mut self, events: Vec<Event>, batch: usize) -> (Vec<Event>, Vec<SlotResult>) {
        if events.len() <= batch {
            return self.call(events);
        }
        let mut lent = Vec::with_capacity(events.len());
        let mut results = Vec::with_capacity(events.len());
        let mut rest = events.into_iter();
        loop {
            let chunk: Vec<Event> = rest.by_ref().take(batch).collect();
            if chunk.is_empty() {
                break;
            }
            let (back, r) = self.call(chunk);
            lent.extend(back);
            results.extend(r);
        }
        (lent, results)
    }

    /// One call; on a fault, replays the batch one event at a time on fresh
    /// instances so that only the culprit fails.
    fn call(&mut self, events: Vec<Event>) -> (Vec<Event>, Vec<SlotResult>) {
        if events.is_empty() {
            return (events, Vec::new());
        }
        let timed = self.metrics.as_ref().is_some_and(|m| m.calls.is_some());
        let instance = match self.instance() {
            Ok(i) => i,
            Err(failure) => {
                let results = events.iter().map(|_| Err(Failure { kind: failure.kind, message: failure.message.clone() })).collect();
                return (events, results);
            }
        };
        let started = timed.then(std::time::Instant::now);
        let (events, called) = instance.process(events);
        if let Some(m) = &self.metrics {
            m.events.inc_by(events.len() as u64);
            if let (Some(calls), Some(started)) = (&m.calls, started) {
                calls.observe(started.elapsed().as_secs_f64());
            }
        }
        match called {
            Ok(results) => (events, results.into_iter().map(|r| r.map_err(Failure::from)).collect()),
            Err(fault) => {
                self.lose_instance(&fault.to_string(), events.len());
                if events.len() == 1 {
                    return (events, vec![Err(Failure { kind: fault.kind(), message: fault.to_string() })]);
                }
                let mut lent = Vec::with_capacity(events.len());
                let mut results = Vec::with_capacity(events.len());
                for event in events {
                    let (mut back, mut r) = self.call(vec![event]);
                    lent.append(&mut back);
                    results.append(&mut r);
                }
                (lent, results)
            }
        }
    }

    fn instance(&mut self) -> Result<&mut Instance, Failure> {
        if self.instance.is_none() {
            let instance = self.plugin.instantiate(&self.spec).map_err(|e| Failure {
                kind: ErrorKind::Init,
                message: format!("cannot start a fresh instance: {e}"),
            })?;
            self.instance = Some(instance);
        }
        Ok(self.instance.as_mut().expect("just set"))
    }

    fn lose_instance(&mut self, fault: &str, batch: usize) {
        self.instance = None;
        self.restarts += 1;
        if let Some(m) = &self.metrics {
            m.restarts.inc();
        }
        tracing::warn!(
            pipeline = %self.spec.pipeline,
            stage = %self.spec.stage,
            batch,
            "stage {fault}; replacing its instance{}",
            if batch > 1 { " and replaying the batch one event at a time" } else { "" }
        );
    }
}

impl From<StageError> for Failure {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Invalid(message) => Failure { kind: ErrorKind::Invalid, message },
            StageError::Retry(message) => Failure { kind: ErrorKind::Retry, message },
        }
    }
}
