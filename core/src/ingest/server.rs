//! Accepting connections within the listener's limits, and stopping
//! gracefully.
//!
//! The doors of `[server]`: at most `max_connections` open at once (more
//! wait in the kernel's backlog, not in memory); a client that has not sent
//! a request's headers within `header_read_timeout` of the server waiting
//! for them (a new connection, or the next request on a kept-alive one) is
//! cut off; a connection with no bytes either way for `idle_timeout` is
//! closed. The body's deadline, `body_read_timeout`, is applied where bodies
//! are read (`response::read_body`).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::{Ingest, router};
use crate::config::ServerConfig;
use crate::metrics::ReasonLabels;

/// The listener's limits, fixed when it starts (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See [`ServerConfig::header_read_timeout`].
    pub header_read_timeout: Duration,
    /// See [`ServerConfig::idle_timeout`].
    pub idle_timeout: Duration,
    /// See [`ServerConfig::max_connections`].
    pub max_connections: usize,
}

impl Limits {
    /// The limits `server` sets.
    pub fn of(server: &ServerConfig) -> Self {
        Limits {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
        }
    }
}

/// Serves HTTP on `listener` until `shutdown` turns true; then stops
/// accepting, lets requests in progress finish for up to `grace`, and
/// returns.
pub async fn serve(
    listener: TcpListener,
    ingest: Arc<Ingest>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    limits: Limits,
    door: router::Door,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A slot first, then accept: at the cap, new clients wait in the
        // kernel's backlog instead of costing a descriptor each.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                ingest.metrics.server_connection_limit_reached.inc();
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // the semaphore is never closed
                    },
                    _ = shutdown.changed() => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let ingest = Arc::clone(&ingest);
                let metrics = Arc::clone(&ingest.metrics);
                let service = service_fn(move |request| {
                    let ingest = Arc::clone(&ingest);
                    async move { Ok::<_, Infallible>(router::route(&ingest, request, door).await) }
                });
                let activity = Activity::new();
                let io = TokioIo::new(Watched { inner: stream, activity: Arc::clone(&activity) });
                let connection = builder.serve_connection(io, service).into_owned();
                let connection = graceful.watch(connection);
                metrics.server_connections.inc();
                tokio::spawn(async move {
                    tokio::select! {
                        ended = connection => {
                            if let Err(error) = ended {
                                if is_header_timeout(&*error) {
                                    metrics.server_timeouts.get_or_create(&reason("header_read")).inc();
                                    tracing::debug!(%peer, "request headers not complete in time; connection closed");
                                } else {
                                    tracing::debug!(%peer, %error, "connection ended with an error");
                                }
                            }
                        }
                        // hyper's header deadline starts once it knows the
                        // protocol, which takes the first bytes: a client
                        // that sends none is held to the same deadline here.
                        () = activity.silent_for(limits.header_read_timeout) => {
                            metrics.server_timeouts.get_or_create(&reason("header_read")).inc();
                            tracing::debug!(%peer, "no request within header_read_timeout; connection closed");
                        }
                        () = activity.idle_for(limits.idle_timeout) => {
                            metrics.server_timeouts.get_or_create(&reason("idle")).inc();
                            tracing::debug!(%peer, "connection idle too long; closed");
                        }
                    }
                    metrics.server_connections.dec();
                    drop(slot);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running at the end of the grace period were cut off");
    }
}

fn reason(reason: &str) -> ReasonLabels {
    ReasonLabels {
        reason: reason.to_string(),
    }
}

/// Whether a connection ended because its request headers were too slow.
fn is_header_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
}

/// When a connection last moved a byte either way.
struct Activity {
    started: Instant,
    /// Milliseconds since `started` of the last read or write; `NEVER`
    /// until the first.
    last_ms: AtomicU64,
}

/// `Activity::last_ms` before any byte moved.
const NEVER: u64 = u64::MAX;

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(NEVER),
        })
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`. Checks a few times per
    /// `limit`, not on every byte: a busy connection costs one atomic store
    /// per read or write.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = match self.last_ms.load(Ordering::Relaxed) {
                NEVER => Duration::ZERO,
                ms => Duration::from_millis(ms),
            };
            let quiet = self.started.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

impl Activity {
    /// Resolves if no byte at all has moved `limit` after the start; never
    /// resolves otherwise.
    async fn silent_for(&self, limit: Duration) {
        tokio::time::sleep(limit).await;
        if self.last_ms.load(Ordering::Relaxed) != NEVER {
            std::future::pending::<()>().await;
        }
    }
}

/// A client connection that records when it last moved a byte.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
