//! Warm instances: an instance kept after a render for the next render of
//! the same webhook, so a request of one event pays for a call, not for an
//! instantiation (about 20 µs for a Rust plugin, milliseconds for a
//! JavaScript or Python one).
//!
//! An instance is reused only for the webhook it rendered for (its *owner*),
//! so two tenants' webhooks never share a plugin's memory, even when they use
//! the same plugin. It is retired after [`MAX_CALLS`] calls, when what it
//! printed fills half its output pipes, when its memory grew past half the
//! limit, and after [`MAX_IDLE`] unused. The idle instances of the whole
//! process hold at most [`PluginLimits::warm_memory_bytes`] of linear memory
//! between them; `0` turns warm instances off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::bindings;
use super::limits::PluginLimits;
use super::render::CallState;

/// Calls after which an instance is retired, whatever else: a slow leak in a
/// guest cannot grow without end.
pub(crate) const MAX_CALLS: u32 = 10_000;
/// How long an idle instance is kept.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(60);

/// A live instance of a plugin and its store.
pub(crate) struct Instance {
    /// The store: limits, WASI, log budget.
    pub(crate) store: Store<CallState>,
    /// The instance's exports.
    pub(crate) exports: bindings::Plugin,
    /// Calls it has served.
    pub(crate) calls: u32,
}

impl Instance {
    /// The linear memory it holds, in bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store.data().memory_bytes()
    }

    /// Whether it may serve another render.
    fn reusable(&self, limits: &PluginLimits) -> bool {
        self.calls < MAX_CALLS
            && self.memory_bytes() <= limits.max_memory_bytes / 2
            && self.store.data().output_bytes() <= limits.max_log_bytes / 2
    }
}

/// The process-wide budget of memory idle warm instances may hold.
#[derive(Debug)]
pub(crate) struct WarmBudget {
    max_bytes: usize,
    /// The pooling allocator has room for this many besides the renders.
    max_instances: usize,
    held_bytes: AtomicUsize,
    held_instances: AtomicUsize,
}

impl WarmBudget {
    /// A budget of `max_bytes` in at most `max_instances` instances (`0`:
    /// no warm instances).
    pub(crate) fn new(max_bytes: usize, max_instances: usize) -> Self {
        WarmBudget {
            max_bytes,
            max_instances,
            held_bytes: AtomicUsize::new(0),
            held_instances: AtomicUsize::new(0),
        }
    }

    /// Instances held idle, and the linear memory they hold, in bytes.
    pub(crate) fn usage(&self) -> (usize, usize) {
        (
            self.held_instances.load(Ordering::Relaxed),
            self.held_bytes.load(Ordering::Relaxed),
        )
    }

    fn reserve(&self, bytes: usize) -> bool {
        let counted = self
            .held_instances
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.max_instances).then_some(held + 1)
            })
            .is_ok();
        if !counted {
            return false;
        }
        let fits = self
            .held_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&n| n <= self.max_bytes)
            })
            .is_ok();
        if !fits {
            self.held_instances.fetch_sub(1, Ordering::AcqRel);
        }
        fits
    }

    fn release(&self, bytes: usize) {
        self.held_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.held_instances.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One plugin's idle instances, each with its owner.
#[derive(Default)]
pub(crate) struct WarmPool {
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    owner: Box<str>,
    instance: Instance,
    /// What it was reserved at in the budget.
    bytes: usize,
    since: Instant,
}

impl WarmPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A poisoned pool still holds whole instances: nothing panics while
        // holding the lock.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `owner`'s idle instance, if one is kept; retires instances idle
    /// for longer than [`MAX_IDLE`] on the way.
    pub(crate) fn take(&self, owner: &str, budget: &WarmBudget) -> Option<Instance> {
        let mut idle = self.lock();
        let now = Instant::now();
        let mut found = None;
        let mut i = 0;
        while i < idle.len() {
            let stale = now.duration_since(idle[i].since) > MAX_IDLE;
            if stale || (found.is_none() && &*idle[i].owner == owner) {
                let entry = idle.swap_remove(i);
                budget.release(entry.bytes);
                if !stale {
                    found = Some(entry.instance);
                }
            } else {
                i += 1;
            }
        }
        found
    }

    /// Keeps `instance` for `owner`'s next render, if it is still fit to
    /// serve and the budget has room; drops it otherwise.
    pub(crate) fn put(
        &self,
        owner: &str,
        instance: Instance,
        limits: &PluginLimits,
        budget: &WarmBudget,
    ) {
        if !instance.reusable(limits) {
            return;
        }
        let bytes = instance.memory_bytes();
        if !budget.reserve(bytes) {
            return;
        }
        self.lock().push(Idle {
            owner: owner.into(),
            instance,
            bytes,
            since: Instant::now(),
        });
    }

    /// Drops every idle instance, returning their memory to the budget: the
    /// plugin is going away (a reload replaced it).
    pub(crate) fn clear(&self, budget: &WarmBudget) {
        for entry in self.lock().drain(..) {
            budget.release(entry.bytes);
        }
    }
}
