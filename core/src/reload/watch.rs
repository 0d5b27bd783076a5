//! Noticing changes: a file watcher (debounced) and SIGHUP.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::{Outcome, Reloader};

/// Changes closer together than this make one reload: an editor's save is
/// several events, a plugin copy many writes.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// The file watcher, set up and watching: a change made after
/// [`Watch::start`] returns is never missed.
pub struct Watch {
    reloader: Arc<Reloader>,
    watcher: Option<notify::RecommendedWatcher>,
    changed: mpsc::UnboundedReceiver<PathBuf>,
    files: BTreeSet<PathBuf>,
    watched: BTreeSet<PathBuf>,
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
        let files = watched_files(&reloader);
        let mut watch = Watch {
            reloader,
            watcher,
            changed,
            files,
            watched: BTreeSet::new(),
        };
        watch.rewatch();
        watch
    }

    /// Reloads on change or SIGHUP until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let trigger = tokio::select! {
                Some(path) = self.changed.recv() => self.files.contains(&normalize(&path)).then_some("file change"),
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Some("SIGHUP"),
                _ = shutdown.changed() => return,
            };
            let Some(trigger) = trigger else { continue };
            // Debounce: wait for the writes to settle, then drop what piled up.
            tokio::time::sleep(DEBOUNCE).await;
            while self.changed.try_recv().is_ok() {}
            tracing::debug!(trigger, "reloading");
            let reloader = Arc::clone(&self.reloader);
            let outcome = tokio::task::spawn_blocking(move || reloader.reload()).await;
            if matches!(outcome, Ok(Outcome::Applied(_))) {
                self.files = watched_files(&self.reloader);
                self.rewatch();
            }
        }
    }

    /// Watches the folders of the watched files (not the files: a rename
    /// replaces the inode a file watch would follow), and stops watching
    /// folders no longer needed.
    fn rewatch(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let folders: BTreeSet<PathBuf> = self
            .files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for gone in self
            .watched
            .difference(&folders)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = watcher.unwatch(&gone);
            self.watched.remove(&gone);
        }
        for folder in folders {
            if !self.watched.contains(&folder) {
                match watcher.watch(&folder, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(folder);
                    }
                    Err(error) => {
                        tracing::warn!(folder = %folder.display(), %error, "cannot watch folder; changes there need SIGHUP")
                    }
                }
            }
        }
    }
}

/// The files whose change means a reload: the config and every plugin file
/// it names (built-ins have none).
fn watched_files(reloader: &Reloader) -> BTreeSet<PathBuf> {
    let routes = reloader.routes.load();
    let config = &routes.config;
    let mut files = BTreeSet::from([normalize(&reloader.path)]);
    for bot in &config.bots {
        for webhook in &bot.webhooks {
            if crate::plugin::builtin_wasm(&webhook.plugin).is_none() {
                files.insert(normalize(&config.base_dir().join(&webhook.plugin)));
            }
        }
    }
    files
}

/// An absolute, `..`-free form of `path` for comparing watcher paths: the
/// folder is canonicalized (it exists), the file name kept (it may not).
fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    match (
        absolute.parent().and_then(|p| p.canonicalize().ok()),
        absolute.file_name(),
    ) {
        (Some(folder), Some(name)) => folder.join(name),
        _ => absolute,
    }
}
