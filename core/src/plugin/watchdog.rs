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
//! waits for an earlier deadline wakes nobody. With no call running the
//! thread keeps waking every [`LINGER_TICK`] until [`LINGER`] past the last
//! one's deadline, rather than sleeping until the next: at 30 calls a second,
//! waking a sleeping thread for each call (and again at its deadline) cost
//! it 60 wake-ups a second where the ticks cost 10, and an idle dispatcher
//! still sleeps. The limit is the call's CPU time
//! ([`CallStart`]); a call past its wall-clock deadline but not its CPU
//! time (its thread waited for a core) goes on, rechecked every
//! [`RECHECK`].

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::{EngineWeak, Store, UpdateDeadline};

/// How soon after its deadline an overdue call is interrupted, at most
/// (while it has not stopped, the epoch advances again this often).
const RECHECK: Duration = super::PluginLimits::EPOCH_TICK;

/// How long past the last call's deadline the thread keeps ticking on its own.
const LINGER: Duration = Duration::from_secs(1);

/// Its tick meanwhile: a call that starts with a deadline later than the
/// next tick (any time limit from this up) need not wake it.
const LINGER_TICK: Duration = Duration::from_millis(100);

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
    /// The latest deadline of any call that started: the thread lingers
    /// until [`LINGER`] past it.
    last_deadline: Option<Instant>,
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
        state.last_deadline = state.last_deadline.max(Some(deadline));
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

/// Sets `store` to stop at an epoch advance if its call is `overdue` by
/// then, and to go on otherwise. Call once per store; then, before each
/// call, `store.set_epoch_deadline(1)` (the next advance).
pub(crate) fn arm<T: 'static>(
    store: &mut Store<T>,
    overdue: impl Fn(&T) -> bool + Send + Sync + 'static,
) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |context| {
        if overdue(context.data()) {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
}

/// When a call began, by the wall clock and by its thread's CPU clock.
///
/// The limit is CPU time: a call on a machine busy with other work (a
/// CI run, a noisy neighbour) is not stopped for time it spent waiting for
/// a core. Ten times the limit in wall time stops a call whatever its CPU
/// time, should the thread's CPU clock be unreadable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallStart {
    wall: Instant,
    cpu: Option<Duration>,
}

impl CallStart {
    /// Now, on the calling thread (the one that runs the call).
    pub(crate) fn now() -> Self {
        CallStart {
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }

    /// When the watchdog first looks: no call uses `limit` of CPU time
    /// before `limit` of wall time has passed.
    pub(crate) fn first_check(&self, limit: Duration) -> Instant {
        self.wall + limit
    }

    /// Whether the call has used up `limit`; read on the thread running it.
    pub(crate) fn overdue(&self, limit: Duration) -> bool {
        let cpu = self
            .cpu
            .zip(thread_cpu_time())
            .map(|(start, now)| now.saturating_sub(start));
        match cpu {
            Some(used) => used >= limit || self.wall.elapsed() >= limit * 10,
            None => self.wall.elapsed() >= limit,
        }
    }
}

/// The CPU time the calling thread has used, if the system tells.
fn thread_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a
    // live, writable one, and reads nothing else.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
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
            None => state
                .last_deadline
                .filter(|last| now < *last + LINGER)
                .map(|_| LINGER_TICK),
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
