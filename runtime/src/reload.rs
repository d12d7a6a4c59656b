//! Hot reload: watching the pipeline files and the plugins they use, and
//! swapping pipelines without losing an event.
//!
//! A reload reads every pipeline file again and, for each pipeline, builds
//! the new version beside the running one (parse, compile, every stage's
//! `init`). Only a version that built replaces the old one:
//! - same source, sink and dead letter: the running source is kept and the
//!   next batch runs on the new version (in-flight batches finish on theirs);
//! - anything else changed: the old pipeline drains (JetStream: acks what it
//!   processed), then the new one starts;
//! - a file gone: its pipeline drains and stops; a new file starts one.
//!
//! A version that fails to build changes nothing that runs; the error is
//! logged, counted and returned to `weir reload`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{self, Pipeline};
use crate::engine::Engine;
use crate::nats::PipelineStatus;
use crate::pipeline::Blueprint;
use crate::task::{PipelineHandle, ProcessContext, start_pipeline};

/// Quiet time after the last file event before reloading: an editor's save
/// or a `cp` of a large plugin is several events.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// What a reload did, as `weir reload` prints it.
#[derive(Debug, Default, Serialize)]
pub struct ReloadReport {
    /// Pipelines started.
    pub added: Vec<String>,
    /// Pipelines replaced by a new version.
    pub changed: Vec<String>,
    /// Pipelines stopped because their file is gone.
    pub removed: Vec<String>,
    /// Pipelines left as they were.
    pub unchanged: Vec<String>,
    /// What could not be reloaded (the running version, if any, goes on).
    pub failed: Vec<ReloadFailure>,
}

/// One pipeline file that could not be reloaded.
#[derive(Debug, Serialize)]
pub struct ReloadFailure {
    /// The pipeline, when the file could be read that far.
    pub pipeline: Option<String>,
    /// The file.
    pub file: String,
    /// Why, with file and line for TOML errors.
    pub error: String,
}

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
}

impl Supervisor {
    pub(crate) fn new(context: ProcessContext, engine: Engine, paths: Vec<PathBuf>) -> Self {
        Supervisor { context, engine, paths, running: BTreeMap::new(), status: Arc::default() }
    }

    /// How many pipelines run.
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    /// The status the service face reports, kept current by every reload.
    pub(crate) fn status(&self) -> Arc<Mutex<Vec<PipelineStatus>>> {
        self.status.clone()
    }

    /// The pipeline directories and every plugin file in use.
    pub(crate) fn watched_paths(&self) -> Vec<PathBuf> {
        let mut paths: BTreeSet<PathBuf> = self.paths.iter().cloned().collect();
        for entry in self.running.values() {
            paths.extend(entry.pipeline.stages.iter().map(|s| s.plugin.clone()));
        }
        paths.into_iter().collect()
    }

    /// Reads every pipeline file again and applies what changed.
    pub(crate) async fn reload(&mut self) -> ReloadReport {
        let started = Instant::now();
        let mut report = ReloadReport::default();
        let (pipelines, errors) = config::load_pipelines(&self.paths);
        // A file that no longer parses keeps its running pipeline.
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for e in errors {
            let pipeline = self.running.iter().find(|(_, r)| same_file(&r.pipeline.file, &e.file)).map(|(n, _)| n.clone());
            keep.extend(pipeline.clone());
            report.failed.push(ReloadFailure { pipeline, file: e.file.display().to_string(), error: e.to_string() });
        }
        let wanted: BTreeSet<String> = pipelines.iter().map(|p| p.name.to_string()).chain(keep).collect();

        for name in self.running.keys().filter(|n| !wanted.contains(*n)).cloned().collect::<Vec<_>>() {
            let entry = self.running.remove(&name).expect("listed above");
            tracing::info!(pipeline = %name, "pipeline file removed: draining and stopping");
            entry.handle.stop().await;
            report.removed.push(name);
        }

        for pipeline in pipelines {
            let name = pipeline.name.to_string();
            let built = self.build(&pipeline).await;
            let blueprint = match built {
                Ok(b) => b,
                Err(error) => {
                    report.failed.push(ReloadFailure { pipeline: Some(name), file: pipeline.file.display().to_string(), error });
                    continue;
                }
            };
            match self.running.remove(&name) {
                Some(entry) if entry.blueprint.version() == blueprint.version() => {
                    self.running.insert(name.clone(), entry);
                    report.unchanged.push(name);
                }
                Some(entry) if same_endpoints(&entry.pipeline, &pipeline) => {
                    entry.handle.swap(blueprint.clone());
                    tracing::info!(pipeline = %name, from = entry.blueprint.version(), to = blueprint.version(), "swapped to the new version; the source is kept");
                    self.running.insert(name.clone(), Entry { pipeline, blueprint, ..entry });
                    report.changed.push(name);
                }
                Some(entry) => {
                    tracing::info!(pipeline = %name, "source, sink or dead letter changed: draining the old version before starting the new");
                    let from = entry.blueprint.version().to_owned();
                    entry.handle.stop().await;
                    match start_pipeline(&self.context, pipeline.clone(), blueprint.clone()).await {
                        Ok(handle) => {
                            tracing::info!(pipeline = %name, from, to = blueprint.version(), "restarted on the new version");
                            self.running.insert(name.clone(), Entry { pipeline, blueprint, handle, since: Instant::now() });
                            report.changed.push(name);
                        }
                        Err(e) => report.failed.push(ReloadFailure { pipeline: Some(name), file: pipeline.file.display().to_string(), error: format!("{e:#}") }),
                    }
                }
                None => match start_pipeline(&self.context, pipeline.clone(), blueprint.clone()).await {
                    Ok(handle) => {
                        tracing::info!(pipeline = %name, version = blueprint.version(), "started");
                        self.running.insert(name.clone(), Entry { pipeline, blueprint, handle, since: Instant::now() });
                        report.added.push(name);
                    }
                    Err(e) => report.failed.push(ReloadFailure { pipeline: Some(name), file: pipeline.file.display().to_string(), error: format!("{e:#}") }),
                },
            }
        }

        for f in &report.failed {
            tracing::error!(file = %f.file, "reload failed; the running version, if any, goes on: {}", f.error);
        }
        self.context.metrics.reload(report.failed.is_empty());
        self.publish_status();
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
        tokio::task::spawn_blocking(move || Blueprint::build(&engine, &pipeline).map(|(b, _)| b).map_err(|e| format!("{}: {e}", pipeline.file.display())))
            .await
            .unwrap_or_else(|e| Err(format!("building panicked: {e}")))
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

/// Whether the pipeline talks to NATS the same way, so that its source can
/// be kept across the swap.
fn same_endpoints(old: &Pipeline, new: &Pipeline) -> bool {
    old.source == new.source && old.sink == new.sink && old.dead_letter == new.dead_letter && old.ordered == new.ordered
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok().is_some_and(|b| a == b))
}

/// Waits until no trigger came for [`DEBOUNCE`].
pub(crate) async fn debounce(triggers: &mut mpsc::Receiver<&'static str>) {
    loop {
        match tokio::time::timeout(DEBOUNCE, triggers.recv()).await {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        }
    }
}

/// Sends a trigger on every SIGHUP.
pub(crate) async fn on_sighup(triggers: mpsc::Sender<&'static str>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with `weir reload` or by changing a file");
        return;
    };
    while hup.recv().await.is_some() {
        if triggers.send("SIGHUP").await.is_err() {
            return;
        }
    }
}

/// Watches directories and files; any change sends a trigger.
pub(crate) struct Watcher {
    watcher: Option<notify::RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    interesting: Arc<Mutex<Interesting>>,
}

/// Which paths matter: pipeline files in the watched pipeline directories,
/// and the plugin files in use. Other files beside a plugin (a build
/// directory, say) trigger nothing.
#[derive(Default)]
struct Interesting {
    pipeline_dirs: BTreeSet<PathBuf>,
    files: BTreeSet<PathBuf>,
}

impl Interesting {
    fn matches(&self, path: &Path) -> bool {
        self.files.contains(path)
            || (path.extension().is_some_and(|e| e == "toml") && path.parent().is_some_and(|d| self.pipeline_dirs.contains(d)))
    }
}

impl Watcher {
    pub(crate) fn new(triggers: mpsc::Sender<&'static str>) -> Self {
        let interesting = Arc::new(Mutex::new(Interesting::default()));
        let filter = interesting.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let filter = filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if event.paths.iter().any(|p| filter.matches(p)) {
                // Full means a reload is queued already.
                let _ = triggers.try_send("a watched file changed");
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP or `weir reload`");
                None
            }
        };
        Watcher { watcher, watched: BTreeSet::new(), interesting }
    }

    /// Watches exactly `paths` (directories as directories; files through
    /// their directory, as editors and `cp` replace files).
    pub(crate) fn watch(&mut self, paths: &[PathBuf]) {
        use notify::Watcher as _;
        let Some(w) = &mut self.watcher else { return };
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        {
            let mut i = self.interesting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            i.pipeline_dirs = paths.iter().filter(|p| p.is_dir()).map(absolute).collect();
            i.files = paths.iter().filter(|p| !p.is_dir()).map(absolute).collect();
        }
        let dirs: BTreeSet<PathBuf> = paths
            .iter()
            .map(absolute)
            .map(|p| if p.is_dir() { p } else { p.parent().map(Path::to_path_buf).unwrap_or_default() })
            .filter(|d| !d.as_os_str().is_empty())
            .collect();
        for gone in self.watched.difference(&dirs) {
            let _ = w.unwatch(gone);
        }
        for new in dirs.difference(&self.watched) {
            if let Err(e) = w.watch(new, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(path = %new.display(), error = %e, "cannot watch; changes there need SIGHUP or `weir reload`");
            }
        }
        self.watched = dirs;
    }
}
