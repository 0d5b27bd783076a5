//! The connection: one server or a Redis Cluster, made on first use, remade
//! after failures, and checked once for settings that could lose jobs and
//! for a layout that does not match the stored one.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::shards::slot_of;
use super::{RedisQueue, unavailable};
use crate::queue::QueueError;
use crate::queue::delivery::millis;

/// How long a write waits for its replicas (`wait_replicas`) before the
/// enqueue is answered as failed (`503`: the client retries, and the events
/// that did arrive are found as duplicates).
const REPLICA_WAIT: Duration = Duration::from_secs(2);

/// Which Redis a queue uses.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisServers {
    /// One server (`url`).
    Standalone(String),
    /// A Redis Cluster, found through these seed nodes (`cluster_urls`).
    Cluster(Vec<String>),
}

impl RedisServers {
    /// The URLs to try for a pub/sub subscription, in order. Pub/sub
    /// messages reach every node of a cluster, so any one will do.
    pub(super) fn urls(&self) -> Vec<&str> {
        match self {
            RedisServers::Standalone(url) => vec![url.as_str()],
            RedisServers::Cluster(urls) => urls.iter().map(String::as_str).collect(),
        }
    }
}

/// A connection to either kind of Redis; scripts and commands go through it
/// alike (a cluster connection routes each by its first key).
#[derive(Clone)]
pub(super) enum Conn {
    /// One server, reconnecting by itself.
    Standalone(ConnectionManager),
    /// A Redis Cluster, following slot moves and failovers by itself.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Conn {
    /// Waits until `replicas` replicas hold every write made so far through
    /// this connection to the primary of `tag`'s slot.
    pub(super) async fn wait_replicas(&mut self, tag: &str, replicas: u16) -> RedisResult<u64> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(millis(REPLICA_WAIT));
        match self {
            Conn::Standalone(conn) => wait.query_async(conn).await,
            Conn::Cluster(conn) => {
                let primary = Route::new(slot_of(tag), SlotAddr::Master);
                let answer = conn
                    .route_command(
                        wait,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(primary)),
                    )
                    .await?;
                Ok(redis::from_redis_value(answer)?)
            }
        }
    }
}

/// Opens a connection to `servers`.
pub(super) async fn connect(servers: &RedisServers) -> RedisResult<Conn> {
    let (connect_timeout, response_timeout) = (Duration::from_secs(2), Duration::from_secs(5));
    match servers {
        RedisServers::Standalone(url) => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(response_timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            let client = redis::Client::open(url.as_str())?;
            Ok(Conn::Standalone(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        RedisServers::Cluster(urls) => {
            let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                .connection_timeout(connect_timeout)
                .response_timeout(response_timeout)
                .retries(3)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
    }
}

impl RedisQueue {
    /// The shared connection, made (the layout checked, the keys migrated)
    /// on first use.
    pub(super) async fn conn(&self) -> Result<Conn, QueueError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let conn = connect(&self.servers).await.map_err(unavailable)?;
                warn_if_not_durable(conn.clone()).await;
                self.check_layout(conn.clone()).await?;
                if self.shards.len() == 1 {
                    self.migrate(conn.clone()).await?;
                }
                Ok::<_, QueueError>(conn)
            })
            .await?;
        Ok(conn.clone())
    }

    /// Records the shard count on first use, and refuses a count other than
    /// the recorded one: jobs would wait in shards no dispatcher reads.
    ///
    /// The count lives at `{prefix}:shards`, the same key whatever the
    /// layout. A queue written before sharding has no count but has its
    /// keys under `{prefix}`: one shard.
    async fn check_layout(&self, mut conn: Conn) -> Result<(), QueueError> {
        let legacy = format!("{{{}}}", self.prefix);
        let key = format!("{legacy}:shards");
        let wanted = self.shards.len();
        let stored: Option<usize> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let stored = match stored {
            Some(count) => count,
            None => {
                let written_before: bool = redis::cmd("EXISTS")
                    .arg(format!("{legacy}:seq"))
                    .arg(format!("{legacy}:lanes"))
                    .arg(format!("{legacy}:dispatchers"))
                    .query_async::<u64>(&mut conn)
                    .await
                    .map_err(unavailable)?
                    > 0;
                let count = if written_before { 1 } else { wanted };
                // NX: of two dispatchers starting at once, the first sets it
                // and the second is checked against it.
                let _: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(count)
                    .arg("NX")
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<usize>>(&mut conn)
                    .await
                    .map_err(unavailable)?
                    .unwrap_or(count)
            }
        };
        if stored != wanted {
            return Err(QueueError::open_refused(format!(
                "the Redis queue under prefix {:?} is laid out in {stored} shard(s), but [queue] shards = {wanted}. \
                 Changing the count would strand queued deliveries in shards no dispatcher reads: keep shards = {stored}, \
                 or give the new layout another prefix and keep one dispatcher with the old settings until the old queue is empty",
                self.prefix
            )));
        }
        Ok(())
    }

    /// Moves jobs queued by a version without lanes into their lanes.
    async fn migrate(&self, mut conn: Conn) -> Result<(), QueueError> {
        let tag = self.shards.tag(0);
        let moved: u64 = self
            .scripts
            .migrate
            .key(tag)
            .arg(tag)
            .arg(self.clock.now_ms())
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

/// Warns when Redis may evict or lose jobs: the queue promises no loss only
/// as long as Redis keeps its data.
async fn warn_if_not_durable(mut conn: Conn) {
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
