//! Noticing changes: a file watcher (debounced) and SIGHUP.
//!
//! Watched: the config file's folder, the folder of every plugin file, and
//! the folder of every `include` pattern (with subfolders when the pattern
//! reaches into them), so that fragment files added, removed or renamed are
//! seen. The paths that changed go to the reloader, which reads only those
//! of the included files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::Reloader;
use crate::config::{Include, absolute as normalize};

/// Changes closer together than this make one reload: an editor's save is
/// several events, a plugin copy many writes.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// The longest one burst of changes is collected before reloading.
pub const MAX_BURST: Duration = Duration::from_secs(2);

/// The file watcher, set up and watching: a change made after
/// [`Watch::start`] returns is never missed.
pub struct Watch {
    reloader: Arc<Reloader>,
    watcher: Option<notify::RecommendedWatcher>,
    changed: mpsc::UnboundedReceiver<PathBuf>,
    /// Files whose change means a reload.
    files: BTreeSet<PathBuf>,
    /// Patterns whose files' changes mean a reload.
    includes: Vec<Include>,
    /// Folders watched, and whether with subfolders.
    watched: BTreeSet<(PathBuf, bool)>,
}

impl Watch {
    /// Starts watching the config file and the plugin files it names. A
    /// watcher that cannot be created is logged; SIGHUP still works.
    /// Blocking (it resolves paths and adds watches): call it from a
    /// blocking thread.
    pub fn start(reloader: Arc<Reloader>) -> Self {
        let (changed_tx, changed) = mpsc::unbounded_channel::<PathBuf>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && !matches!(event.kind, EventKind::Access(_))
            {
                for path in event.paths {
                    let _ = changed_tx.send(path);
                }
            }
        })
        .inspect_err(|error| tracing::error!(%error, "cannot watch files; reload with SIGHUP"))
        .ok();
        let mut watch = Watch {
            reloader,
            watcher,
            changed,
            files: BTreeSet::new(),
            includes: Vec::new(),
            watched: BTreeSet::new(),
        };
        watch.rewatch();
        watch
    }

    /// Whether a change to `path` (normalized) concerns the config.
    fn concerns(&self, path: &Path) -> bool {
        self.files.contains(path)
            || self
                .includes
                .iter()
                .any(|include| include.matches(path) || include.root() == path)
    }

    /// Reloads on change or SIGHUP until `shutdown` turns true.
    ///
    /// Everything that touches the file system (resolving paths, watching
    /// folders, reading the config and compiling plugins) runs on the
    /// blocking pool, never on the runtime's threads.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let (trigger, first) = tokio::select! {
                Some(path) = self.changed.recv() => ("file change", Some(path)),
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => ("SIGHUP", None),
                _ = shutdown.changed() => return,
            };
            let changed = match first {
                Some(path) => self.settle(path).await,
                None => BTreeSet::new(),
            };
            let sighup = trigger == "SIGHUP";
            let step = tokio::task::spawn_blocking(move || {
                self.apply(sighup, changed);
                self
            });
            match step.await {
                Ok(watch) => self = watch,
                Err(error) => {
                    tracing::error!(%error, "the config reload stopped unexpectedly; reload with SIGHUP or restart");
                    return;
                }
            }
        }
    }

    /// Collects the changes of one burst: starting with `first`, until no
    /// change has come for [`DEBOUNCE`] (an editor's save is several events,
    /// a plugin copy many writes), and at most [`MAX_BURST`] so a file
    /// written without pause still gets reloaded.
    async fn settle(&mut self, first: PathBuf) -> BTreeSet<PathBuf> {
        let mut changed = BTreeSet::from([first]);
        let end = tokio::time::Instant::now() + MAX_BURST;
        while let Ok(Some(path)) = tokio::time::timeout_at(
            end.min(tokio::time::Instant::now() + DEBOUNCE),
            self.changed.recv(),
        )
        .await
        {
            changed.insert(path);
        }
        changed
    }

    /// Reloads if `changed` concerns the config (always on SIGHUP), then
    /// watches what the new config names. Blocking.
    fn apply(&mut self, sighup: bool, changed: BTreeSet<PathBuf>) {
        let changed: BTreeSet<PathBuf> = changed.iter().map(|p| normalize(p)).collect();
        if !sighup && !changed.iter().any(|path| self.concerns(path)) {
            return;
        }
        // Watch folders that appeared (a new include folder) before reading
        // them, so nothing written after the read is missed.
        self.rewatch();
        tracing::debug!(sighup, changed = changed.len(), "reloading");
        if sighup {
            let _ = self.reloader.reload();
        } else {
            let _ = self.reloader.reload_changed(&changed);
        }
        self.rewatch();
    }

    /// Watches the folders of the watched files (not the files: a rename
    /// replaces the inode a file watch would follow) and of the include
    /// patterns, and stops watching folders no longer needed.
    fn rewatch(&mut self) {
        self.files = watched_files(&self.reloader);
        self.includes = self.reloader.routes.load().config.include.clone();
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let mut folders: BTreeSet<(PathBuf, bool)> = self
            .files
            .iter()
            .filter_map(|f| f.parent().map(|p| (p.to_path_buf(), false)))
            .collect();
        for include in &self.includes {
            // A folder not made yet: its parent's events say when it is.
            let root = include.root();
            if root.is_dir() {
                folders.insert((root.to_path_buf(), include.is_recursive()));
            } else if let Some(parent) = root.parent().filter(|p| p.is_dir()) {
                folders.insert((parent.to_path_buf(), false));
            }
        }
        // A folder deleted since: its watch is gone with it.
        self.watched.retain(|(folder, _)| folder.is_dir());
        for gone in self
            .watched
            .difference(&folders)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = watcher.unwatch(&gone.0);
            self.watched.remove(&gone);
        }
        for (folder, recursive) in folders {
            if self.watched.contains(&(folder.clone(), recursive)) {
                continue;
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match watcher.watch(&folder, mode) {
                Ok(()) => {
                    self.watched.insert((folder, recursive));
                }
                Err(error) => {
                    tracing::warn!(folder = %folder.display(), %error, "cannot watch folder; changes there need SIGHUP")
                }
            }
        }
    }
}

/// The files whose change means a reload: the config and every plugin file
/// it names (built-ins have none). Included files are matched by pattern.
fn watched_files(reloader: &Reloader) -> BTreeSet<PathBuf> {
    let routes = reloader.routes.load();
    let config = &routes.config;
    // Distinct plugin names first: 1,000 tenants may share a few plugin
    // files, and each normalize() resolves a real path.
    let plugins: BTreeSet<&str> = config
        .bots
        .iter()
        .flat_map(|bot| &bot.webhooks)
        .map(|webhook| webhook.plugin.as_str())
        .filter(|plugin| crate::plugin::builtin_wasm(plugin).is_none())
        .collect();
    let mut files = BTreeSet::from([normalize(&reloader.path)]);
    files.extend(
        plugins
            .into_iter()
            .map(|plugin| normalize(&config.base_dir().join(plugin))),
    );
    files
}
