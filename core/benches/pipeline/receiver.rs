//! The receiver: a hyper server in the bench process answering 200 (after an
//! optional delay), recording when each event's delivery arrived, keyed by
//! the `eventId` of the `wpp` body (`<tag>-<n>`), or for the templates'
//! format (`PIPELINE_PLUGIN`), the `message` (`wamid.<tag>.<n>`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::load::now_ns;

/// Arrivals of one measured run.
pub struct Tracker {
    tag: String,
    /// Arrival (ns since the bench's base instant, +1) of event n; 0: not yet.
    pub arrivals: Vec<AtomicU64>,
    pub distinct: AtomicU64,
    pub duplicates: AtomicU64,
    /// Requests for no event of this run (another tag, or no `eventId`).
    pub foreign: AtomicU64,
}

impl Tracker {
    fn new(tag: &str, capacity: usize) -> Self {
        Tracker {
            tag: format!("{tag}-"),
            arrivals: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            distinct: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        }
    }

    fn record(&self, body: &[u8], at: u64) {
        let n = match json_string(body, b"\"eventId\":\"") {
            Some(id) => id.strip_prefix(self.tag.as_str()),
            None => json_string(body, b"\"message\":\"wamid.")
                .and_then(|id| id.strip_prefix(self.tag.strip_suffix('-')?))
                .and_then(|rest| rest.strip_prefix('.')),
        }
        .and_then(|n| n.parse::<usize>().ok());
        match n.and_then(|n| self.arrivals.get(n)) {
            Some(slot) => {
                if slot.compare_exchange(0, at, Relaxed, Relaxed).is_ok() {
                    self.distinct.fetch_add(1, Relaxed);
                } else {
                    self.duplicates.fetch_add(1, Relaxed);
                }
            }
            None => {
                self.foreign.fetch_add(1, Relaxed);
            }
        }
    }

    /// The latest arrival, in ns since the base instant.
    pub fn last_arrival(&self) -> u64 {
        self.arrivals
            .iter()
            .map(|a| a.load(Relaxed))
            .max()
            .unwrap_or(0)
    }
}

/// The rest of the string value that `key` (`"name":"` and perhaps the
/// value's start) begins in a compact JSON body.
fn json_string<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a str> {
    let start = body.windows(key.len()).position(|w| w == key)? + key.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

struct State {
    tracker: Mutex<Arc<Tracker>>,
    delay: Duration,
    requests: AtomicU64,
}

/// The receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver answering 200 after `delay`.
    pub async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let state = Arc::new(State {
            tracker: Mutex::new(Arc::new(Tracker::new("none", 0))),
            delay,
            requests: AtomicU64::new(0),
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&shared);
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let at = now_ns();
                        state.requests.fetch_add(1, Relaxed);
                        let tracker = Arc::clone(&state.tracker.lock().expect("tracker lock"));
                        tracker.record(&body, at);
                        if !state.delay.is_zero() {
                            tokio::time::sleep(state.delay).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts recording a new run: events `<tag>-0` .. `<tag>-(capacity-1)`.
    pub fn track(&self, tag: &str, capacity: usize) -> Arc<Tracker> {
        let tracker = Arc::new(Tracker::new(tag, capacity));
        *self.state.tracker.lock().expect("tracker lock") = Arc::clone(&tracker);
        tracker
    }

    /// Every request received so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Relaxed)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
