//! What triggers a reload: changes to the watched files (debounced), and
//! SIGHUP. The plan (`plan.rs`) and its application (`mod.rs`) know nothing
//! of either.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// Quiet time after the last file event before reloading: an editor's save
/// or a `cp` of a large plugin is several events.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

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
        self.files.contains(path) || (path.extension().is_some_and(|e| e == "toml") && path.parent().is_some_and(|d| self.pipeline_dirs.contains(d)))
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
