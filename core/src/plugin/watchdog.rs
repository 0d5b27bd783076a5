//! The watchdog: stops plugin calls that run past their time limit.
//!
//! wasmtime interrupts a call when the engine's epoch passes the store's
//! deadline. The usual way is a thread advancing the epoch every few
//! milliseconds; it woke 200 times a second whether or not a plugin ran,
//! which was most of an idle dispatcher's CPU and a tenth of a delivery's
//! at 300 events/s. Here a thread advances the epoch only when a call is
//! overdue, and sleeps until the earliest running call's deadline (or until
//! one starts, when none runs). Every store's deadline is the next advance;
//! its callback then interrupts the store only if its own call is overdue,
//! and lets the others go on. A call starting while the thread already
//! waits for an earlier deadline wakes nobody, so at any rate the thread
//! wakes about twice per time limit.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::{EngineWeak, Store, UpdateDeadline};

/// How soon after its deadline an overdue call is interrupted, at most
/// (while it has not stopped, the epoch advances again this often).
const RECHECK: Duration = super::PluginLimits::EPOCH_TICK;

/// The running calls' deadlines, and the thread that enforces them. Stops
/// its thread when dropped.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Deadlines of running calls, by (deadline, call number).
    running: BTreeMap<(Instant, u64), ()>,
    /// The next call number.
    next: u64,
    /// When the thread wakes next by itself; `None` while it waits for a
    /// call to start.
    armed_until: Option<Instant>,
    stop: bool,
}

/// A running call's place in the watchdog; leaving it (dropping) ends the
/// watch.
pub(crate) struct Watched<'a> {
    shared: &'a Shared,
    key: (Instant, u64),
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        self.shared.lock().running.remove(&self.key);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Watchdog {
    /// Starts the thread that advances `engine`'s epoch when a call is
    /// overdue.
    pub(crate) fn start(engine: EngineWeak) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("statushook-watchdog".into())
            .spawn(move || watch(&thread, &engine))?;
        Ok(Watchdog { shared })
    }

    /// Watches a call that must end by `deadline` (its store [armed](arm)
    /// with the same deadline): the epoch advances once it is overdue. The
    /// watch ends when the guard drops.
    pub(crate) fn watch(&self, deadline: Instant) -> Watched<'_> {
        let mut state = self.shared.lock();
        let key = (deadline, state.next);
        state.next += 1;
        state.running.insert(key, ());
        // Wake the thread only when it would otherwise look too late.
        if state.armed_until.is_none_or(|armed| armed > deadline) {
            state.armed_until = Some(deadline);
            self.shared.wake.notify_one();
        }
        Watched {
            shared: &self.shared,
            key,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
    }
}

/// Sets `store` to stop at an epoch advance if its call is past
/// `deadline(store)` by then, and to go on otherwise. Call once per store;
/// then, before each call, `store.set_epoch_deadline(1)` (the next advance).
pub(crate) fn arm<T: 'static>(
    store: &mut Store<T>,
    deadline: impl Fn(&T) -> Instant + Send + Sync + 'static,
) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |context| {
        if Instant::now() >= deadline(context.data()) {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
}

/// The thread: sleeps until the earliest deadline of a running call (or a
/// call starts), and advances the epoch while any call is overdue.
fn watch(shared: &Shared, engine: &EngineWeak) {
    let mut state = shared.lock();
    loop {
        if state.stop {
            return;
        }
        let now = Instant::now();
        let earliest = state.running.keys().next().map(|(deadline, _)| *deadline);
        let wait = match earliest {
            Some(deadline) if deadline <= now => {
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                engine.increment_epoch();
                // Until the overdue call has stopped and left.
                Some(RECHECK)
            }
            Some(deadline) => Some(deadline - now),
            None => None,
        };
        state.armed_until = wait.map(|wait| now + wait);
        state = match wait {
            Some(wait) => {
                shared
                    .wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => shared.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
        };
    }
}
