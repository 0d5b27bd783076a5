//! Wake-ups across dispatchers: each listens on a channel of its own,
//! `{p}:wake:<origin>`, and keeps its origin in `{p}:dispatchers` with a
//! heartbeat; a write wakes every other live dispatcher there (see
//! `wake_others` in `lua/lanes.lua`). A dispatcher alone publishes nothing,
//! and none is woken by its own writes (it woke its workers when it wrote).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use tokio::sync::Notify;

use crate::queue::Clock;

/// How often a dispatcher renews its place in `{p}:dispatchers`; the
/// scripts forget one not heard of for 30 s.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Where a dispatcher listens, and what it answers to.
pub(super) struct Listener {
    /// The Redis the queue uses.
    pub(super) client: Client,
    /// The key prefix, `{...}`.
    pub(super) prefix: String,
    /// This queue's name among the dispatchers.
    pub(super) origin: u64,
    /// Its workers' wake-up.
    pub(super) wake: Arc<Notify>,
    /// Its clock, for the heartbeat's score.
    pub(super) clock: Clock,
}

/// Forwards every message on this dispatcher's channel to its workers, and
/// renews its heartbeat, reconnecting forever.
///
/// Wake-ups only cut latency: a worker that misses one still finds the work
/// on its next poll, so a lost subscription costs at most the poll interval.
/// Dispatchers of earlier versions publish on `{p}:wake`; that channel is
/// heard too, so a rolling upgrade keeps its wake-ups one way.
pub(super) async fn forward_wakeups(listener: Listener) {
    let own = format!("{}:wake:{}", listener.prefix, listener.origin);
    let shared = format!("{}:wake", listener.prefix);
    loop {
        if let Err(error) = listen(&listener, &own, &shared).await {
            tracing::debug!(%error, "Redis wake-up subscription unavailable; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen(listener: &Listener, own: &str, shared: &str) -> redis::RedisResult<()> {
    let mut pubsub = listener.client.get_async_pubsub().await?;
    pubsub.subscribe(&[own, shared]).await?;
    let mut conn = listener.client.get_multiplexed_async_connection().await?;
    let mut messages = pubsub.on_message();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(_) => listener.wake.notify_one(),
                None => return Ok(()),
            },
            _ = heartbeat.tick() => {
                redis::cmd("ZADD")
                    .arg(format!("{}:dispatchers", listener.prefix))
                    .arg(listener.clock.now_ms())
                    .arg(listener.origin)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
        }
    }
}
