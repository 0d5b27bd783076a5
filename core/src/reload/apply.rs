//! [`Reloader`]: applying one reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::Changes;
use crate::config::{self, Config};
use crate::metrics::{Metrics, ReasonLabels};
use crate::plugin::PluginHost;
use crate::route::Snapshot;

/// What a reload did.
#[derive(Debug)]
pub enum Outcome {
    /// The new snapshot is live.
    Applied(Changes),
    /// The file was empty (a write in progress): nothing was done.
    Ignored,
    /// The file or a plugin is broken: the old snapshot keeps serving.
    Failed(String),
}

/// Applies reloads of one config file to the live routing table.
pub struct Reloader {
    /// The config file.
    pub path: PathBuf,
    /// The live routing table.
    pub routes: Arc<ArcSwap<Snapshot>>,
    /// The plugin host (compiles changed plugins).
    pub host: PluginHost,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The delivery HTTP client, rebuilt when `allow_private_networks` changes.
    pub client: Arc<ArcSwap<reqwest::Client>>,
}

impl Reloader {
    /// Reloads the file: parse, validate, compile what changed, swap.
    ///
    /// Blocking (a changed plugin compiles for up to a quarter second): call
    /// it on a blocking thread.
    pub fn reload(&self) -> Outcome {
        let started = Instant::now();
        let outcome = self.try_reload();
        let took_ms = started.elapsed().as_secs_f64() * 1000.0;
        let result = match &outcome {
            Outcome::Applied(changes) => {
                tracing::info!(took_ms, config = %self.path.display(), "config reloaded: {changes}");
                "ok"
            }
            Outcome::Ignored => {
                tracing::debug!(config = %self.path.display(), "config file is empty (a write in progress?); ignored");
                "ignored"
            }
            Outcome::Failed(error) => {
                tracing::error!(took_ms, config = %self.path.display(), "config reload failed; still serving the previous config:\n{error}");
                "error"
            }
        };
        self.metrics
            .config_reloads
            .get_or_create(&ReasonLabels {
                reason: result.to_string(),
            })
            .inc();
        self.metrics
            .config_reload_seconds
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    fn try_reload(&self) -> Outcome {
        let mut config = match config::load(&self.path) {
            Ok(config) => config,
            Err(error) if error.is_empty_file() => return Outcome::Ignored,
            Err(error) => return Outcome::Failed(error.to_string()),
        };
        let current = self.routes.load_full();
        let needs_restart = keep_running_values(&current.config, &mut config);
        for setting in &needs_restart {
            tracing::warn!(
                setting,
                "changing this setting needs a restart; the running value is kept"
            );
        }
        let private_changed = current.config.delivery.allow_private_networks
            != config.delivery.allow_private_networks;
        let allow_private = config.delivery.allow_private_networks;
        let mut changes = Changes::between(&current.config, &config);
        let snapshot = match Snapshot::build(config, &self.host, Some(&current)) {
            Ok(snapshot) => snapshot,
            Err(error) => return Outcome::Failed(format!("{}: {error}", self.path.display())),
        };
        if private_changed {
            match crate::deliver::client::build(allow_private) {
                Ok(client) => self.client.store(Arc::new(client)),
                Err(error) => return Outcome::Failed(error),
            }
        }
        changes.plugins_compiled = snapshot.compiled.clone();
        changes.needs_restart = needs_restart;
        self.routes.store(Arc::new(snapshot));
        Outcome::Applied(changes)
    }
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
    if new.queue.backend != running.queue.backend {
        new.queue.backend = running.queue.backend.clone();
        kept.push("queue (backend, path, url, prefix)");
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
