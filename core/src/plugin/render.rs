//! [`Plugin`]: one loaded component, and running it on events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, Level, to_wit};
use super::error::RenderError;
use super::host::HostInner;
use super::outgoing::{self, Outgoing};
use super::warm::{Instance, WarmPool};
use super::watchdog::{self, CallStart};
use crate::event::StatusEvent;

/// A webhook's `settings` table, as handed to its plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(Vec<(String, String)>);

impl Settings {
    /// The pairs, in a stable order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Settings {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Settings(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// A loaded plugin, ready to render. Cheap to clone and safe to share across
/// threads; a render gets an instance of its own, fresh or kept warm from the
/// same webhook's last render.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    name: String,
    digest: [u8; 32],
    pre: bindings::PluginPre<CallState>,
    host: Arc<HostInner>,
    /// What a render has cost lately, ns per event (a moving average of
    /// whole batches, instantiation included); `u64::MAX` until measured.
    cost_ns: AtomicU64,
    /// Linear memory of one fresh instance, in bytes, measured at load.
    instance_bytes: AtomicU64,
    /// Instances kept between renders, per webhook.
    warm: WarmPool,
}

impl Drop for PluginInner {
    fn drop(&mut self) {
        self.warm.clear(&self.host.warm);
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.sha256())
            .finish_non_exhaustive()
    }
}

/// The result of rendering one event: `Ok(None)` when the plugin drops it.
pub type Rendered = Result<Option<Outgoing>, RenderError>;

impl Plugin {
    pub(crate) fn new(
        name: String,
        digest: [u8; 32],
        pre: bindings::PluginPre<CallState>,
        host: Arc<HostInner>,
    ) -> Self {
        Plugin {
            inner: Arc::new(PluginInner {
                name,
                digest,
                pre,
                host,
                cost_ns: AtomicU64::new(u64::MAX),
                instance_bytes: AtomicU64::new(0),
                warm: WarmPool::default(),
            }),
        }
    }

    /// What rendering one event has cost lately (instantiation included), or
    /// `None` before the first render: callers decide from it whether a
    /// render may run on an async thread.
    pub fn typical_cost(&self) -> Option<Duration> {
        match self.inner.cost_ns.load(Ordering::Relaxed) {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Folds the cost of a batch of `events` into the moving average.
    fn record_cost(&self, took: Duration, events: usize) {
        let per_event =
            u64::try_from(took.as_nanos() / events.max(1) as u128).unwrap_or(u64::MAX - 1);
        let old = self.inner.cost_ns.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            per_event
        } else {
            (old.saturating_mul(7) / 8).saturating_add(per_event / 8)
        };
        self.inner
            .cost_ns
            .store(new.min(u64::MAX - 1), Ordering::Relaxed);
    }

    /// The linear memory one fresh instance holds, in bytes, as measured
    /// when the plugin was loaded: what each instance in flight, and each
    /// kept warm, costs at least.
    pub fn instance_memory_bytes(&self) -> u64 {
        self.inner.instance_bytes.load(Ordering::Relaxed)
    }

    /// The plugin's name: the built-in name or the file path.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The SHA-256 of the component, hex: tells two builds apart.
    pub fn sha256(&self) -> String {
        hex::encode(self.inner.digest)
    }

    /// Whether `other` is this very plugin (the same load), not merely one
    /// with the same bytes.
    pub fn is(&self, other: &Plugin) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Renders one event for the webhook `owner` (see [`Self::render_batch`]).
    ///
    /// Blocks for the duration of the call (microseconds for the built-ins, at
    /// most the time limit), and while all instance slots are taken.
    ///
    /// # Errors
    ///
    /// [`RenderError`] if the plugin fails, runs out of time or memory, or
    /// returns something the host will not send.
    pub fn render(&self, owner: &str, event: &StatusEvent, settings: &Settings) -> Rendered {
        let mut results = self.render_batch(owner, std::slice::from_ref(event), settings);
        results
            .pop()
            .unwrap_or_else(|| unreachable!("one result per event"))
    }

    /// Renders several events for one webhook in one instance: the batch path.
    ///
    /// `owner` names the webhook (its bot and name): the instance is the one
    /// kept warm from `owner`'s last render when there is one, and is kept
    /// for its next (see the `warm` module); instances never pass between
    /// owners. An instance that fails (trap, timeout, memory) is discarded
    /// and the next event gets a fresh one, so one bad event cannot poison
    /// the others. Returns one result per event, in order.
    pub fn render_batch<'a>(
        &self,
        owner: &str,
        events: impl IntoIterator<Item = &'a StatusEvent>,
        settings: &Settings,
    ) -> Vec<Rendered> {
        let host = &self.inner.host;
        let _slot = host.slots.acquire();
        let started = Instant::now();
        let mut instance = self.inner.warm.take(owner, &host.warm);
        let events = events.into_iter();
        let mut results = Vec::with_capacity(events.size_hint().0);
        for event in events {
            let live = match &mut instance {
                Some(live) => live,
                None => match self.instantiate() {
                    Ok(live) => instance.insert(live),
                    Err(error) => {
                        results.push(Err(error));
                        continue;
                    }
                },
            };
            live.calls += 1;
            let call_started = CallStart::now();
            live.store.data_mut().begin_call(call_started);
            live.store.set_epoch_deadline(1);
            let watched = host
                .watchdog
                .watch(call_started.first_check(host.limits.timeout));
            let call = live.exports.statushook_plugin_formatter().call_format(
                &mut live.store,
                &to_wit(event),
                settings.pairs(),
            );
            drop(watched);
            let result = match call {
                Ok(Ok(Some(output))) => {
                    outgoing::check(&self.inner.name, output, host.limits.max_output_bytes)
                        .map(Some)
                }
                Ok(Ok(None)) => Ok(None),
                Ok(Err(reason)) => Err(RenderError::Rejected {
                    plugin: self.inner.name.clone(),
                    reason,
                }),
                Err(error) => {
                    let failed = self.classify(&error, &mut live.store, false);
                    instance = None; // a trapped instance must not run again
                    Err(failed)
                }
            };
            if let Some(live) = &mut instance {
                live.store.data_mut().flush_output();
            }
            results.push(result);
        }
        if let Some(live) = instance {
            self.inner.warm.put(owner, live, &host.limits, &host.warm);
        }
        self.record_cost(started.elapsed(), results.len());
        results
    }

    /// Instantiates the plugin once, records what the instance's memory
    /// costs, and drops it.
    pub(crate) fn check_starts(&self) -> Result<(), RenderError> {
        let _slot = self.inner.host.slots.acquire();
        let instance = self.instantiate()?;
        self.inner
            .instance_bytes
            .store(instance.memory_bytes() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn instantiate(&self) -> Result<Instance, RenderError> {
        let host = &self.inner.host;
        let state = CallState::new(&self.inner.name, &host.limits);
        let first_check = state.started.first_check(host.limits.timeout);
        let mut store = Store::new(&host.engine, state);
        store.limiter(|state| &mut state.limiter);
        watchdog::arm(&mut store, |state: &CallState| {
            state.started.overdue(state.time_limit)
        });
        let watched = host.watchdog.watch(first_check);
        let instantiated = self.inner.pre.instantiate(&mut store);
        drop(watched);
        match instantiated {
            Ok(exports) => Ok(Instance {
                store,
                exports,
                calls: 0,
            }),
            Err(error) => Err(self.classify(&error, &mut store, true)),
        }
    }

    /// Turns a wasmtime failure into the render error that explains it.
    fn classify(
        &self,
        error: &wasmtime::Error,
        store: &mut Store<CallState>,
        instantiating: bool,
    ) -> RenderError {
        let plugin = self.inner.name.clone();
        let limits = &self.inner.host.limits;
        let state = store.data_mut();
        let stderr_tail = state.flush_output();
        if state.limiter.exceeded {
            return RenderError::MemoryLimit {
                plugin,
                limit_bytes: limits.max_memory_bytes,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return RenderError::Timeout {
                plugin,
                limit_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            };
        }
        // The trap itself ("wasm `unreachable` instruction executed") without
        // wasmtime's backtrace, then what the guest printed last: a Rust
        // guest's panic message, the most useful part for its author.
        let mut reason = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        if let Some(tail) = stderr_tail {
            reason = format!("{reason}: {tail}");
        }
        if instantiating {
            RenderError::Instantiate { plugin, reason }
        } else {
            RenderError::Trap { plugin, reason }
        }
    }
}

/// The per-instance state of the store: WASI (locked down), limits and the
/// log budget.
pub(crate) struct CallState {
    plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// How much of each pipe is already in the log: an instance kept warm
    /// prints into the same pipes from call to call.
    stdout_seen: usize,
    stderr_seen: usize,
    log_budget: usize,
    log_dropped: usize,
    /// The budget `begin_call` restores.
    max_log_bytes: usize,
    /// When the current call (or the instantiation) began.
    started: CallStart,
    /// How much CPU time one call may use.
    time_limit: Duration,
}

impl CallState {
    fn new(plugin: &str, limits: &super::PluginLimits) -> Self {
        let stdout = MemoryOutputPipe::new(limits.max_log_bytes);
        let stderr = MemoryOutputPipe::new(limits.max_log_bytes);
        // No preopened folders, no environment, no arguments, no sockets:
        // a plugin computes a body from its inputs and nothing else.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        CallState {
            plugin: plugin.to_string(),
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_memory: limits.max_memory_bytes,
                memory_bytes: 0,
                exceeded: false,
            },
            stdout,
            stderr,
            stdout_seen: 0,
            stderr_seen: 0,
            log_budget: limits.max_log_bytes,
            log_dropped: 0,
            started: CallStart::now(),
            time_limit: limits.timeout,
            max_log_bytes: limits.max_log_bytes,
        }
    }

    /// Starts a call: the log budget is per call.
    fn begin_call(&mut self, started: CallStart) {
        self.log_budget = self.max_log_bytes;
        self.log_dropped = 0;
        self.started = started;
    }

    /// The linear memory the instance holds, in bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.limiter.memory_bytes
    }

    /// What the guest has printed so far, both pipes together, as of the
    /// last [`Self::flush_output`] (which follows every call).
    pub(crate) fn output_bytes(&self) -> usize {
        self.stdout_seen + self.stderr_seen
    }

    /// Moves what the guest printed into the log; returns the last line of
    /// stderr, which holds a Rust guest's panic message.
    fn flush_output(&mut self) -> Option<String> {
        let mut last_stderr = None;
        for (stream, pipe, seen) in [
            ("stdout", &self.stdout, &mut self.stdout_seen),
            ("stderr", &self.stderr, &mut self.stderr_seen),
        ] {
            let bytes = pipe.contents();
            let new = bytes.get(*seen..).unwrap_or_default();
            *seen = bytes.len();
            if new.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(new);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::debug!(plugin = %self.plugin, stream, "{line}");
            }
            if stream == "stderr" {
                last_stderr = panic_message(&text);
            }
        }
        if self.log_dropped > 0 {
            tracing::warn!(plugin = %self.plugin, dropped_bytes = self.log_dropped, "plugin log over its budget; lines dropped");
            self.log_dropped = 0;
        }
        last_stderr
    }
}

/// The last message a guest wrote to stderr, without Rust's "note: run with
/// `RUST_BACKTRACE=1`" hint: for a panic, `panicked at src/lib.rs:9:5: boom`.
fn panic_message(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note:"))
        .collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains("panicked at"))
        .unwrap_or(lines.len().saturating_sub(1));
    let message = lines.get(start..)?.join(" ");
    (!message.is_empty()).then(|| message.chars().take(500).collect())
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::statushook::plugin::types::Host for CallState {}

impl bindings::statushook::plugin::log::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        if message.len() > self.log_budget {
            self.log_dropped += message.len();
            return;
        }
        self.log_budget -= message.len();
        let plugin = self.plugin.as_str();
        match level {
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// Caps linear memory, and remembers whether the cap was hit so the trap
/// that follows is reported as a memory limit, not a crash.
struct MemoryLimiter {
    max_memory: usize,
    /// The instance's linear memories, in bytes, summed.
    memory_bytes: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.max_memory);
        }
        // Called for each memory's initial size too (current = 0).
        self.memory_bytes = self
            .memory_bytes
            .saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far past any real guest.
        Ok(desired <= 1_000_000)
    }
}
