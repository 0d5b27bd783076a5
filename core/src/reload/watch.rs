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

    /// Whether a change to `path` concerns the config.
    fn concerns(&self, path: &Path) -> bool {
        let path = normalize(path);
        self.files.contains(&path)
            || self
                .includes
                .iter()
                .any(|include| include.matches(&path) || include.root() == path)
    }

    /// Reloads on change or SIGHUP until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let (trigger, first) = tokio::select! {
                Some(path) = self.changed.recv() => ("file change", Some(path)),
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => ("SIGHUP", None),
                _ = shutdown.changed() => return,
            };
            if first.as_deref().is_some_and(|path| !self.concerns(path)) {
                continue;
            }
            // Debounce: wait for the writes to settle, then take what piled up.
            tokio::time::sleep(DEBOUNCE).await;
            let mut changed: BTreeSet<PathBuf> = first.into_iter().map(|p| normalize(&p)).collect();
            while let Ok(path) = self.changed.try_recv() {
                changed.insert(normalize(&path));
            }
            // Watch folders that appeared (a new include folder) before
            // reading them, so nothing written after the read is missed.
            self.rewatch();
            tracing::debug!(trigger, changed = changed.len(), "reloading");
            let reloader = Arc::clone(&self.reloader);
            let sighup = trigger == "SIGHUP";
            let _ = tokio::task::spawn_blocking(move || {
                if sighup {
                    reloader.reload()
                } else {
                    reloader.reload_changed(&changed)
                }
            })
            .await;
            self.rewatch();
        }
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
