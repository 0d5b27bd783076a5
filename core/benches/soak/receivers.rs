//! Receivers the chaos driver can make misbehave: each answers 200 until
//! told to answer 500, 410, too late (past the delivery timeout) or slowly
//! but well. Every request is recorded by its `webhook-id` with its body
//! bytes, path and answer; a repeat of an id is compared byte for byte.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::layout::{self, HOOK_B_TOKEN, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, WHSEC};

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Ok = 0,
    Fail500 = 1,
    /// Answers only after the longest delivery timeout (the dispatcher has
    /// given up by then).
    TooSlow = 2,
    Gone410 = 3,
    /// 200 after 200-600 ms, within the shortest timeout.
    SlowOk = 4,
    /// 404 to everything: a 4xx is the receiver working as meant, so the
    /// circuit breaker stays closed and deliveries spend their attempts on
    /// the schedule (some run out, the rest succeed after the flap).
    Reject404 = 5,
}

impl Mode {
    /// The misbehaviours, in the order the first flaps take them.
    pub const FLAPS: [Mode; 5] = [
        Mode::Reject404,
        Mode::Gone410,
        Mode::TooSlow,
        Mode::Fail500,
        Mode::SlowOk,
    ];

    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Fail500,
            2 => Mode::TooSlow,
            3 => Mode::Gone410,
            4 => Mode::SlowOk,
            5 => Mode::Reject404,
            _ => Mode::Ok,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ok => "200",
            Mode::Fail500 => "500s",
            Mode::TooSlow => "answers past the timeout",
            Mode::Gone410 => "410 Gone",
            Mode::SlowOk => "slow 200s",
            Mode::Reject404 => "404s",
        }
    }
}

/// One delivery (one `webhook-id`) as the receivers saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub event: usize,
    pub bot: usize,
    pub hook: usize,
    /// The bytes of its first arrival; every later arrival is compared.
    pub body: Bytes,
    pub requests: u32,
    /// Requests answered 2xx.
    pub ok: u32,
    /// The answers given, in order (status code; 0: answered too late).
    pub answers: Vec<u16>,
}

/// What every receiver recorded.
#[derive(Default)]
pub struct Record {
    pub by_id: HashMap<String, Seen>,
    /// Same `webhook-id` with other bytes or another path.
    pub inconsistent: Vec<String>,
    /// Requests that name no soak event or webhook.
    pub foreign: Vec<String>,
    pub bad_signatures: Vec<String>,
    pub bad_auth: Vec<String>,
}

/// Counters by answer kind.
#[derive(Default)]
pub struct Answers {
    pub requests: AtomicU64,
    pub by_mode: [AtomicU64; 6],
}

pub struct Shared {
    pub record: Mutex<Record>,
    pub answers: Answers,
    verifier: standardwebhooks::Webhook,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            record: Mutex::default(),
            answers: Answers::default(),
            verifier: standardwebhooks::Webhook::new(WHSEC).expect("the soak's whsec secret"),
        })
    }

    /// Records an arrival; the id it was recorded under, if any.
    fn arrive(&self, path: &str, headers: &http::HeaderMap, body: &Bytes) -> Option<String> {
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut parts = path.trim_start_matches('/').split('/');
        let bot = parts.next().and_then(layout::bot_index);
        let hook = parts.next().and_then(layout::hook_index);
        let event = layout::event_in_body(body);
        let mut record = self.record.lock().expect("record lock");
        let (Some(bot), Some(hook), Some(event), false) = (bot, hook, event, id.is_empty()) else {
            if record.foreign.len() < 20 {
                record.foreign.push(format!(
                    "{path} webhook-id={id:?} body={}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ));
            }
            return None;
        };
        if hook == 0
            && self.verifier.verify(body, headers).is_err()
            && record.bad_signatures.len() < 20
        {
            record
                .bad_signatures
                .push(format!("{path} webhook-id={id} event {event}"));
        }
        let auth_ok = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {HOOK_B_TOKEN}"));
        if hook == 1 && !auth_ok && record.bad_auth.len() < 20 {
            record
                .bad_auth
                .push(format!("{path} webhook-id={id} event {event}"));
        }
        let mut problem = None;
        match record.by_id.get_mut(&id) {
            Some(seen) => {
                seen.requests += 1;
                if seen.body != *body {
                    problem = Some(format!(
                        "webhook-id {id} arrived with other bytes:\n    first: {}\n    now:   {}",
                        String::from_utf8_lossy(&seen.body),
                        String::from_utf8_lossy(body)
                    ));
                } else if (seen.bot, seen.hook, seen.event) != (bot, hook, event) {
                    problem = Some(format!(
                        "webhook-id {id} arrived for event {event} at {path}, first for event {} at bot {} hook {}",
                        seen.event, seen.bot, seen.hook
                    ));
                }
            }
            None => {
                record.by_id.insert(
                    id.clone(),
                    Seen {
                        event,
                        bot,
                        hook,
                        body: body.clone(),
                        requests: 1,
                        ok: 0,
                        answers: Vec::new(),
                    },
                );
            }
        }
        if let Some(problem) = problem {
            record.inconsistent.push(problem);
        }
        Some(id)
    }

    fn answered(&self, id: Option<&str>, status: u16) {
        let Some(id) = id else { return };
        let mut record = self.record.lock().expect("record lock");
        if let Some(seen) = record.by_id.get_mut(id) {
            if (200..300).contains(&status) {
                seen.ok += 1;
            }
            seen.answers.push(status);
        }
    }
}

/// One receiver (one endpoint); stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(shared: Arc<Shared>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a receiver");
        let addr = listener.local_addr().expect("receiver address");
        let mode = Arc::new(AtomicU8::new(Mode::Ok as u8));
        let task_mode = Arc::clone(&mode);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (shared, mode) = (Arc::clone(&shared), Arc::clone(&task_mode));
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (shared, mode) = (Arc::clone(&shared), Arc::clone(&mode));
                    async move { Ok::<_, Infallible>(answer(&shared, &mode, request).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, mode, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Relaxed))
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Relaxed);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    shared: &Shared,
    mode: &AtomicU8,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST);
    };
    let id = shared.arrive(&path, &parts.headers, &body);
    // The mode when the request arrived decides its answer.
    let mode = Mode::from_u8(mode.load(Relaxed));
    shared.answers.requests.fetch_add(1, Relaxed);
    shared.answers.by_mode[mode as usize].fetch_add(1, Relaxed);
    let status = match mode {
        Mode::Ok => StatusCode::OK,
        Mode::Fail500 => StatusCode::INTERNAL_SERVER_ERROR,
        Mode::Reject404 => StatusCode::NOT_FOUND,
        Mode::Gone410 => StatusCode::GONE,
        Mode::SlowOk => {
            let ms = fastrand::u64(200..=MIN_TIMEOUT_MS * 6 / 10);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            StatusCode::OK
        }
        Mode::TooSlow => {
            tokio::time::sleep(Duration::from_millis(MAX_TIMEOUT_MS + 1000)).await;
            // Nobody is listening any more: not a delivery.
            shared.answered(id.as_deref(), 0);
            return reply(StatusCode::GATEWAY_TIMEOUT);
        }
    };
    shared.answered(id.as_deref(), status.as_u16());
    reply(status)
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = status;
    response
}
