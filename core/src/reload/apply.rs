//! [`Reloader`]: applying one reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;

use super::Changes;
use super::compose::{Composed, compose};
use crate::config::{self, Config, FileChange, FileOutcome, Fragments, Reread};
use crate::metrics::{Metrics, ReloadLabels};
use crate::plugin::{PluginHost, PluginSource};
use crate::route::Snapshot;

/// What a reload did.
#[derive(Debug)]
pub enum Outcome {
    /// The new snapshot is live (boxed: it is by far the largest variant).
    Applied(Box<Changes>),
    /// The file was empty (a write in progress): nothing was done.
    Ignored,
    /// The file or a plugin is broken: the old snapshot keeps serving.
    Failed(ReloadError),
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The main file does not read or validate.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The HTTP client for the new `allow_private_networks` could not be built.
    #[error(transparent)]
    Client(#[from] crate::deliver::client::ClientError),
    /// The routing table could not be built (a plugin, a clash between files).
    #[error(transparent)]
    Compose(#[from] super::compose::ComposeError),
}

/// Applies reloads of one config file, and the files it includes, to the
/// live routing table.
pub struct Reloader {
    /// The config file.
    pub(crate) path: PathBuf,
    /// The live routing table.
    pub(crate) routes: Arc<ArcSwap<Snapshot>>,
    /// The plugin host (compiles changed plugins).
    pub(crate) host: PluginHost,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// The delivery HTTP client, rebuilt when `allow_private_networks` changes.
    pub(crate) client: Arc<ArcSwap<reqwest::Client>>,
    /// What each included file contributes to the live table.
    fragments: Mutex<Fragments>,
    /// Itself, for the thread that reloads again once a background compile
    /// is done.
    this: Weak<Reloader>,
}

impl Reloader {
    /// A reloader of the config at `path`, whose live table `routes` was
    /// built with `fragments` (as [`compose`](super::compose) left them).
    pub fn new(
        path: PathBuf,
        routes: Arc<ArcSwap<Snapshot>>,
        host: PluginHost,
        metrics: Arc<Metrics>,
        client: Arc<ArcSwap<reqwest::Client>>,
        fragments: Fragments,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Reloader {
            path,
            routes,
            host,
            metrics,
            client,
            fragments: Mutex::new(fragments),
            this: this.clone(),
        })
    }

    /// Reloads the config file and every included file: parse, validate,
    /// compile what changed, swap.
    ///
    /// Blocking (a changed plugin compiles for up to a quarter second): call
    /// it on a blocking thread.
    pub fn reload(&self) -> Outcome {
        self.reload_with(Reread::All)
    }

    /// Reloads the config file, and of the included files those in
    /// `changed` (absolute paths) or whose size, inode or modification time
    /// changed: what the file watcher calls, so that one edit among 1,000
    /// tenant files reads one file.
    pub fn reload_changed(&self, changed: &BTreeSet<PathBuf>) -> Outcome {
        self.reload_with(Reread::Changed(changed))
    }

    fn reload_with(&self, reread: Reread<'_>) -> Outcome {
        let started = Instant::now();
        let outcome = self.try_reload(reread);
        // Rounded to a tenth: logs say `took_ms=7.6`, not `7.5906970000000005`.
        let took_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        let main = self.path.display().to_string();
        let (result, summary) = match &outcome {
            Outcome::Applied(changes) => {
                tracing::info!(took_ms, config = %main, "config reloaded: {changes}");
                self.report(&changes.files);
                ("ok", changes.to_string())
            }
            Outcome::Ignored => {
                tracing::debug!(config = %main, "config file is empty (a write in progress?); ignored");
                (
                    "ignored",
                    "the config file is empty (a write in progress?)".to_string(),
                )
            }
            Outcome::Failed(error) => {
                tracing::error!(took_ms, config = %main, "config reload failed; still serving the previous config:\n{error}");
                ("error", error.to_string())
            }
        };
        self.metrics.activity.reloaded(crate::activity::Reload {
            at_ms: crate::queue::now_ms(),
            result,
            took_ms,
            summary,
        });
        self.count(&main, result);
        self.metrics
            .config_reload_seconds
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Logs and counts what happened to each included file (start-up
    /// reports what the first table was built with this way too).
    pub(crate) fn report(&self, files: &[FileOutcome]) {
        for outcome in files {
            let file = self.label(&outcome.file);
            let result = match &outcome.change {
                FileChange::Applied => {
                    tracing::info!(file, "included file applied");
                    "ok"
                }
                FileChange::Removed => {
                    tracing::info!(file, "included file removed; its bots are gone");
                    "ok"
                }
                FileChange::Refused {
                    problems,
                    kept_last_good,
                } => {
                    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                    let keeps = if *kept_last_good {
                        "its last good version keeps serving"
                    } else {
                        "it contributes nothing until fixed"
                    };
                    tracing::error!(file, "included file refused; {keeps}:\n{}", list.join("\n"));
                    "error"
                }
                FileChange::Ignored => {
                    tracing::debug!(
                        file,
                        "included file is empty (a write in progress?); ignored"
                    );
                    "ignored"
                }
                FileChange::Unchanged => continue,
            };
            self.count(&file, result);
        }
    }

    fn count(&self, file: &str, result: &str) {
        self.metrics
            .config_reloads
            .get_or_create(&ReloadLabels {
                file: file.to_string(),
                reason: result.to_string(),
            })
            .inc();
    }

    /// How logs and metrics name an included file: relative to the config's
    /// folder when it is inside it.
    fn label(&self, file: &Path) -> String {
        label(&self.path, file)
    }

    fn try_reload(&self, reread: Reread<'_>) -> Outcome {
        // One reload at a time: the watcher, SIGHUP and a background
        // compile's reload share this lock, taken before the live table is
        // read so that each builds on the one before.
        let mut fragments = match self.fragments.lock() {
            Ok(fragments) => fragments,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut config = match config::load(&self.path) {
            Ok(config) => config,
            Err(error) if error.is_empty_file() => return Outcome::Ignored,
            Err(error) => return Outcome::Failed(error.into()),
        };
        let current = self.routes.load_full();
        let needs_restart = keep_running_values(&current.config, &mut config);
        for setting in &needs_restart {
            tracing::warn!(
                setting,
                "changing this setting needs a restart; the running value is kept"
            );
        }
        let allow_private = config.delivery.allow_private_networks;
        // Built before anything is committed: a failure here changes nothing.
        let client = if current.config.delivery.allow_private_networks != allow_private {
            match crate::deliver::client::build(allow_private) {
                Ok(client) => Some(client),
                Err(error) => return Outcome::Failed(error.into()),
            }
        } else {
            None
        };
        let Composed {
            snapshot,
            files,
            problems,
            ..
        } = match compose(config, &mut fragments, reread, &self.host, Some(&current)) {
            Ok(composed) => composed,
            Err(error) => return Outcome::Failed(error.into()),
        };
        for problem in &problems {
            tracing::warn!("{problem}; the files found there before keep serving");
        }
        let mut changes = Changes::between(&current.config, &snapshot.config);
        changes.plugins_compiled = snapshot.compiled.clone();
        changes.needs_restart = needs_restart;
        // Named relative to the config's folder in the log line.
        changes.files = files
            .into_iter()
            .filter(|f| f.news)
            .map(|mut f| {
                f.file = PathBuf::from(self.label(&f.file));
                f
            })
            .collect();
        changes.plugins_compiling = snapshot
            .deferred
            .iter()
            .map(|source| self.label(Path::new(&source.name)))
            .collect();
        let deferred = snapshot.deferred.clone();
        if let Some(client) = client {
            self.client.store(Arc::new(client));
        }
        self.routes.store(Arc::new(snapshot));
        self.compile_in_background(deferred);
        Outcome::Applied(Box::new(changes))
    }

    /// Compiles `sources` on a thread of their own, the webhooks that use
    /// them serving with their previous plugin meanwhile, then reloads so
    /// that they switch. The compiled components wait in the host for that
    /// reload; a compile that fails is reported by it, as any broken plugin.
    fn compile_in_background(&self, sources: Vec<PluginSource>) {
        if sources.is_empty() {
            return;
        }
        let this = self.this.clone();
        let host = self.host.clone();
        let spawned = std::thread::Builder::new()
            .name("statushook-compile".into())
            .spawn(move || {
                let mut started = false;
                for source in &sources {
                    let at = Instant::now();
                    match host.compile_ahead(source) {
                        Ok(true) => {
                            started = true;
                            tracing::info!(plugin = %source.name, took_s = at.elapsed().as_secs_f64(), "plugin compiled in the background; reloading to switch to it");
                        }
                        // Another reload's thread has these bytes: it reloads.
                        Ok(false) => {}
                        Err(error) => {
                            started = true;
                            tracing::error!(plugin = %source.name, %error, "plugin failed to compile in the background");
                        }
                    }
                }
                if started && let Some(reloader) = this.upgrade() {
                    let _ = reloader.reload();
                }
                // Bytes no reload took (the file changed again meanwhile)
                // must not stay in memory.
                for source in &sources {
                    host.forget_ahead(source);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a thread to compile plugins; they compile at the next reload");
        }
    }
}

/// How logs and metrics name an included `file` of the config at `main`:
/// relative to the config's folder when it is inside it.
fn label(main: &Path, file: &Path) -> String {
    let base = config::base_dir_of(main);
    let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    file.strip_prefix(&base)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Puts the running values back for settings that cannot change live, and
/// names them. A half-applied change (a new listen address in the config but
/// the old socket in use) would lie to the operator.
fn keep_running_values(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    if new.server.listen != running.server.listen {
        new.server.listen = running.server.listen;
        kept.push("server.listen");
    }
    if new.server.admin_listen != running.server.admin_listen {
        new.server.admin_listen = running.server.admin_listen;
        kept.push("server.admin_listen");
    }
    let (old, fresh) = (&running.server, &mut new.server);
    if (
        fresh.header_read_timeout,
        fresh.idle_timeout,
        fresh.max_connections,
    ) != (
        old.header_read_timeout,
        old.idle_timeout,
        old.max_connections,
    ) {
        fresh.header_read_timeout = old.header_read_timeout;
        fresh.idle_timeout = old.idle_timeout;
        fresh.max_connections = old.max_connections;
        kept.push("server (header_read_timeout, idle_timeout, max_connections)");
    }
    if new.queue.backend != running.queue.backend {
        new.queue.backend = running.queue.backend.clone();
        kept.push("queue (backend, path, url, prefix)");
    }
    if new.history != running.history {
        new.history = running.history;
        kept.push("history (retention, max_per_bot)");
    }
    if new.plugins != running.plugins {
        new.plugins = running.plugins.clone();
        kept.push("plugins (limits, cache_dir)");
    }
    if new.delivery.max_in_flight != running.delivery.max_in_flight {
        new.delivery.max_in_flight = running.delivery.max_in_flight;
        kept.push("delivery.max_in_flight");
    }
    if new.delivery.max_in_flight_per_endpoint != running.delivery.max_in_flight_per_endpoint {
        new.delivery.max_in_flight_per_endpoint = running.delivery.max_in_flight_per_endpoint;
        kept.push("delivery.max_in_flight_per_endpoint");
    }
    kept
}
