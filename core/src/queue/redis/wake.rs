//! Wake-ups across dispatchers: each listens on a channel of its own per
//! shard, `{t}:wake:<origin>`, and keeps its origin in every shard's
//! `{t}:dispatchers` with a heartbeat; a write wakes every other live
//! dispatcher there (see `wake_others` in `lua/lanes.lua`). A dispatcher
//! alone publishes nothing, and none is woken by its own writes (it woke its
//! workers when it wrote). The channel names the shard, so the woken
//! dispatcher asks that shard only.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use super::connect::{RedisServers, connect};
use super::shards::Shards;
use crate::queue::Clock;

/// How often a dispatcher renews its place in `{t}:dispatchers`.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// A dispatcher not heard of for this long is forgotten: each heartbeat
/// removes those from `{t}:dispatchers` (the scripts that wake the others
/// only read it).
const FORGET_AFTER_MS: u64 = 30_000;

/// Where a dispatcher listens, and what it answers to.
pub(super) struct Listener {
    /// The Redis the queue uses.
    pub(super) servers: RedisServers,
    /// The queue's shards.
    pub(super) shards: Arc<Shards>,
    /// `{prefix}`: versions before per-dispatcher channels publish on
    /// `{prefix}:wake`.
    pub(super) legacy: String,
    /// This queue's name among the dispatchers.
    pub(super) origin: u64,
    /// Its workers' wake-up.
    pub(super) wake: Arc<Notify>,
    /// Its clock, for the heartbeat's score.
    pub(super) clock: Clock,
}

/// Forwards every message on this dispatcher's channels to its workers, and
/// renews its heartbeat, reconnecting forever (to the next seed node of a
/// cluster when one fails; pub/sub messages reach every node).
///
/// Wake-ups only cut latency: a worker that misses one still finds the work
/// on its next poll, so a lost subscription costs at most the poll interval.
/// Dispatchers of earlier versions publish on `{prefix}:wake`; that channel
/// is heard too, so a rolling upgrade keeps its wake-ups one way.
pub(super) async fn forward_wakeups(listener: Listener) {
    let urls: Vec<String> = listener
        .servers
        .urls()
        .into_iter()
        .map(str::to_string)
        .collect();
    for url in urls.iter().cycle() {
        if let Err(error) = listen(&listener, url).await {
            tracing::debug!(%error, %url, "Redis wake-up subscription unavailable; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen(listener: &Listener, url: &str) -> redis::RedisResult<()> {
    let own: Vec<String> = listener
        .shards
        .tags()
        .iter()
        .map(|tag| format!("{tag}:wake:{}", listener.origin))
        .collect();
    let shared = format!("{}:wake", listener.legacy);
    let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
    pubsub.subscribe(&own).await?;
    pubsub.subscribe(&shared).await?;
    let mut conn = connect(&listener.servers).await?;
    let mut messages = pubsub.on_message();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => {
                    let channel = message.get_channel_name();
                    match own.iter().position(|c| c == channel) {
                        Some(shard) => listener.shards.work_at(shard, 0),
                        None => (0..listener.shards.len()).for_each(|s| listener.shards.work_at(s, 0)),
                    }
                    listener.wake.notify_one();
                }
                None => return Ok(()),
            },
            _ = heartbeat.tick() => {
                let now = listener.clock.now_ms();
                for tag in listener.shards.tags() {
                    let key = format!("{tag}:dispatchers");
                    redis::pipe()
                        .cmd("ZADD")
                        .arg(&key)
                        .arg(now)
                        .arg(listener.origin)
                        .ignore()
                        .cmd("ZREMRANGEBYSCORE")
                        .arg(&key)
                        .arg("-inf")
                        .arg(now.saturating_sub(FORGET_AFTER_MS))
                        .ignore()
                        .query_async::<()>(&mut conn)
                        .await?;
                }
            }
        }
    }
}
