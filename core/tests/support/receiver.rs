//! A real HTTP receiver on loopback that records what it gets and answers
//! as the test tells it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// How to answer: status, optional delay, optional extra header.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub header: Option<(&'static str, String)>,
    /// The answer's body (`ok` when not given).
    pub body: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            delay: Duration::ZERO,
            header: None,
            body: None,
        }
    }

    /// `status` with `body` as the answer.
    #[allow(dead_code)] // not every test binary answers with a body
    pub fn answering(status: u16, body: &str) -> Self {
        Reply {
            body: Some(body.to_string()),
            ..Self::status(status)
        }
    }

    pub fn delayed(status: u16, delay: Duration) -> Self {
        Reply {
            status,
            delay,
            header: None,
            body: None,
        }
    }
}

type Responder = dyn Fn(&Received, usize) -> Reply + Send + Sync;

/// The receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    responder: Arc<Mutex<Arc<Responder>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub async fn start() -> Self {
        Self::with(|_, _| Reply::status(200)).await
    }

    /// A receiver answering with `responder(request, how many came before)`.
    pub async fn with(
        responder: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::on("127.0.0.1:0".parse().expect("addr"), responder).await
    }

    /// A receiver answering 200 on a given address (to bring a receiver
    /// "back up" where a dispatcher has been failing to reach it).
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::on(addr, |_, _| Reply::status(200)).await
    }

    async fn on(
        addr: SocketAddr,
        responder: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let responder: Arc<Mutex<Arc<Responder>>> = Arc::new(Mutex::new(Arc::new(responder)));
        let task = {
            let (received, arrived, responder) =
                (received.clone(), arrived.clone(), responder.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (received, arrived, responder) =
                        (received.clone(), arrived.clone(), responder.clone());
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (received, arrived, responder) =
                            (received.clone(), arrived.clone(), responder.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let got = Received {
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                body,
                                at: Instant::now(),
                            };
                            let reply = {
                                let mut list = received.lock().expect("lock");
                                let responder = responder.lock().expect("lock").clone();
                                let reply = responder(&got, list.len());
                                list.push(got);
                                reply
                            };
                            arrived.notify_waiters();
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            let body = reply.body.map_or(Bytes::from_static(b"ok"), Bytes::from);
                            let mut response = Response::new(Full::new(body));
                            *response.status_mut() =
                                http::StatusCode::from_u16(reply.status).expect("status");
                            if let Some((name, value)) = reply.header {
                                response
                                    .headers_mut()
                                    .insert(name, value.parse().expect("header value"));
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Receiver {
            addr,
            received,
            arrived,
            responder,
            task,
        }
    }

    /// Changes how the receiver answers from now on.
    pub fn respond(&self, responder: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) {
        *self.responder.lock().expect("lock") = Arc::new(responder);
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until at least `count` requests have arrived, or panics after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "expected {count} requests within {timeout:?}, got {}: {:#?}",
                    got.len(),
                    got.iter().map(|r| &r.path).collect::<Vec<_>>()
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
