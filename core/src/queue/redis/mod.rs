//! The Redis backend: any number of dispatchers share one Redis.
//!
//! Keys (all under one hash tag, `{prefix}`, so every script touches a single
//! Redis Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:lane:<bot>/<webhook>` | sorted set | the lane's pending job ids scored by the unix ms they are next due (leased: when the lease ends) |
//! | `{p}:lanes` | sorted set | non-empty lanes scored by when they can next be claimed from: their earliest job, or their hold if later |
//! | `{p}:hold:<lane>` | string with expiry | the unix ms a [held](Queue::hold) lane is set aside until |
//! | `{p}:job:<id>` | hash | `meta` (JSON), `body`, `bot`, `lane`, `token` while leased, `base`, `reason`/`dead_ms` when dead |
//! | `{p}:att:<id>` | list | attempts, JSON, oldest first |
//! | `{p}:dead:<bot>` | sorted set | the bot's dead letters by time of death |
//! | `{p}:dedup:<bot>:<event>` | string with TTL | the dedup mark of an accepted event |
//! | `{p}:seq` | counter | fencing tokens |
//! | `{p}:wake` | pub/sub channel | "work was enqueued" |
//!
//! Every state change is one Lua script (`lua/`), so a crash between two
//! steps cannot duplicate or lose a job. The lane bookkeeping every script
//! shares lives once, in `lua/lanes.lua`, prepended to them. Scripts are re-loaded automatically
//! after a Redis restart or `SCRIPT FLUSH` (EVALSHA falls back to EVAL), and
//! nothing else needs re-creating: a flushed Redis is an empty queue, not a
//! stalled one.

mod wake;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Script};
use tokio::sync::{Notify, OnceCell};

use super::{
    Attempt, Claimed, DeadLetter, Delivery, Depth, Enqueued, Lease, NewDelivery, NewEvent, Queue,
    QueueError, now_ms,
};

/// The Redis-backed queue.
pub struct RedisQueue {
    client: Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    scripts: Scripts,
    wake: Arc<Notify>,
    subscriber: tokio::task::JoinHandle<()>,
}

struct Scripts {
    enqueue: Script,
    claim: Script,
    ack: Script,
    retry: Script,
    dead: Script,
    dead_letters: Script,
    replay: Script,
    hold: Script,
    depth: Script,
    migrate: Script,
}

/// A script that moves jobs: the shared lane functions, then its own body.
fn with_lanes(body: &str) -> Script {
    Script::new(&[include_str!("lua/lanes.lua"), body].concat())
}

impl RedisQueue {
    /// Prepares the queue at `url` with keys under `prefix`.
    ///
    /// Does not wait for Redis: the connection is made on first use and
    /// remade after failures, so a dispatcher can start (and answer
    /// `/healthz`) before Redis is up. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`QueueError::Open`] if `url` is not a Redis URL.
    pub fn new(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let client = Client::open(url)
            .map_err(|e| QueueError::Open(format!("bad Redis URL {url:?}: {e}")))?;
        let prefix = format!("{{{prefix}}}");
        let wake = Arc::new(Notify::new());
        let subscriber = tokio::spawn(wake::forward_wakeups(
            client.clone(),
            format!("{prefix}:wake"),
            Arc::clone(&wake),
        ));
        Ok(RedisQueue {
            client,
            conn: OnceCell::new(),
            prefix,
            scripts: Scripts {
                enqueue: with_lanes(include_str!("lua/enqueue.lua")),
                claim: with_lanes(include_str!("lua/claim.lua")),
                ack: with_lanes(include_str!("lua/ack.lua")),
                retry: with_lanes(include_str!("lua/retry.lua")),
                dead: with_lanes(include_str!("lua/dead.lua")),
                dead_letters: Script::new(include_str!("lua/dead_letters.lua")),
                replay: with_lanes(include_str!("lua/replay.lua")),
                hold: with_lanes(include_str!("lua/hold.lua")),
                depth: Script::new(include_str!("lua/depth.lua")),
                migrate: with_lanes(include_str!("lua/migrate.lua")),
            },
            wake,
            subscriber,
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, QueueError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let conn = ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(unavailable)?;
                warn_if_not_durable(conn.clone()).await;
                self.migrate(conn.clone()).await?;
                Ok::<_, QueueError>(conn)
            })
            .await?;
        Ok(conn.clone())
    }
}

impl RedisQueue {
    /// Moves jobs queued by a version without lanes into their lanes.
    async fn migrate(&self, mut conn: ConnectionManager) -> Result<(), QueueError> {
        let moved: u64 = self
            .scripts
            .migrate
            .arg(&self.prefix)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if moved > 0 {
            tracing::info!(
                jobs = moved,
                "moved jobs queued by an older statushook into per-webhook lanes"
            );
        }
        Ok(())
    }
}

impl Drop for RedisQueue {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

fn unavailable(e: redis::RedisError) -> QueueError {
    QueueError::Unavailable(format!("Redis: {e}"))
}

/// Warns when Redis may evict or lose jobs: the queue promises no loss only
/// as long as Redis keeps its data.
async fn warn_if_not_durable(mut conn: ConnectionManager) {
    let policy: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut conn)
        .await;
    let aof: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await;
    match (policy, aof) {
        (Ok(policy), Ok(aof)) => {
            if let Some(policy) = policy.get(1).filter(|p| p.as_str() != "noeviction") {
                tracing::warn!(maxmemory_policy = %policy, "Redis may evict queued deliveries under memory pressure; set maxmemory-policy noeviction");
            }
            if aof.get(1).is_some_and(|a| a.as_str() != "yes") {
                tracing::warn!(
                    "Redis has appendonly off: queued deliveries can be lost if Redis restarts; set appendonly yes"
                );
            }
        }
        _ => tracing::warn!(
            "could not read Redis durability settings (CONFIG GET refused); make sure maxmemory-policy is noeviction and appendonly is yes"
        ),
    }
}

fn attempt_json(attempt: Option<&Attempt>) -> Vec<u8> {
    attempt
        .map(|a| serde_json::to_vec(a).unwrap_or_default())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Queue for RedisQueue {
    async fn enqueue(
        &self,
        events: &[NewEvent],
        dedup_window: Duration,
    ) -> Result<Enqueued, QueueError> {
        let mut conn = self.conn().await?;
        let mut call = self.scripts.enqueue.prepare_invoke();
        call.arg(&self.prefix)
            .arg(now_ms())
            .arg(
                u64::try_from(dedup_window.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg(events.len());
        for event in events {
            call.arg(&event.bot)
                .arg(&event.event_id)
                .arg(event.deliveries.len());
            for new in &event.deliveries {
                let delivery = new.delivery();
                let dead = match new {
                    NewDelivery::Pending(_) => "",
                    NewDelivery::Dead(_, reason) => reason.as_str(),
                };
                call.arg(&delivery.id)
                    .arg(delivery.lane())
                    .arg(delivery.meta_json())
                    .arg(&delivery.body)
                    .arg(dead);
            }
        }
        let flags: Vec<u8> = call.invoke_async(&mut conn).await.map_err(unavailable)?;
        let mut outcome = Enqueued::default();
        for accepted in flags {
            outcome.record(accepted == 0);
        }
        if outcome.accepted > 0 {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    async fn claim(
        &self,
        max: usize,
        per_lane: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, QueueError> {
        if max == 0 || per_lane == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let rows: Vec<(String, u64, Vec<u8>, Vec<u8>, i64)> = self
            .scripts
            .claim
            .arg(&self.prefix)
            .arg(now_ms())
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg(max)
            .arg(per_lane)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|(id, token, meta, body, attempts)| {
                Ok(Claimed {
                    delivery: Delivery::from_parts(&id, &meta, body)?,
                    lease: Lease { id, token },
                    attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn ack(&self, lease: &Lease) -> Result<bool, QueueError> {
        let mut conn = self.conn().await?;
        let done: i64 = self
            .scripts
            .ack
            .arg(&self.prefix)
            .arg(&lease.id)
            .arg(lease.token)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn retry(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        due_ms: u64,
    ) -> Result<bool, QueueError> {
        let mut conn = self.conn().await?;
        let done: i64 = self
            .scripts
            .retry
            .arg(&self.prefix)
            .arg(&lease.id)
            .arg(lease.token)
            .arg(due_ms)
            .arg(attempt_json(attempt))
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn hold(&self, bot: &str, webhook: &str, until_ms: u64) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        let _: i64 = self
            .scripts
            .hold
            .arg(&self.prefix)
            .arg(super::lane(bot, webhook))
            .arg(until_ms)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        reason: &str,
    ) -> Result<bool, QueueError> {
        let mut conn = self.conn().await?;
        let done: i64 = self
            .scripts
            .dead
            .arg(&self.prefix)
            .arg(&lease.id)
            .arg(lease.token)
            .arg(now_ms())
            .arg(reason)
            .arg(attempt_json(attempt))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn dead_letters(&self, bot: &str, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut conn = self.conn().await?;
        type Row = (String, Vec<u8>, usize, String, String, Vec<Vec<u8>>);
        let rows: Vec<Row> = self
            .scripts
            .dead_letters
            .arg(&self.prefix)
            .arg(bot)
            .arg(limit.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|(id, meta, body_bytes, reason, dead_ms, attempts)| {
                let corrupt = |reason: String| QueueError::Corrupt {
                    id: id.clone(),
                    reason,
                };
                let attempts = attempts
                    .iter()
                    .map(|a| serde_json::from_slice(a).map_err(|e| corrupt(e.to_string())))
                    .collect::<Result<_, _>>()?;
                Ok(DeadLetter {
                    delivery: Delivery::from_parts(&id, &meta, Vec::new())?,
                    body_bytes,
                    reason,
                    dead_ms: dead_ms
                        .parse()
                        .map_err(|e: std::num::ParseIntError| corrupt(e.to_string()))?,
                    attempts,
                })
            })
            .collect()
    }

    async fn replay(&self, bot: &str, id: Option<&str>) -> Result<usize, QueueError> {
        let mut conn = self.conn().await?;
        let replayed: usize = self
            .scripts
            .replay
            .arg(&self.prefix)
            .arg(bot)
            .arg(now_ms())
            .arg(id.unwrap_or(""))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if replayed > 0 {
            self.wake.notify_one();
        }
        Ok(replayed)
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let mut conn = self.conn().await?;
        let (pending, due): (u64, u64) = self
            .scripts
            .depth
            .arg(&self.prefix)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Depth { pending, due })
    }

    async fn next_due_ms(&self) -> Result<Option<u64>, QueueError> {
        let mut conn = self.conn().await?;
        let first: Vec<(String, f64)> = conn
            .zrange_withscores(format!("{}:lanes", self.prefix), 0, 0)
            .await
            .map_err(unavailable)?;
        // Scores are whole milliseconds, exact in an f64 up to 2^53.
        Ok(first.first().map(|(_, score)| *score as u64))
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
