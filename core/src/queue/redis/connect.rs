//! The connection: made on first use, remade after failures, and checked
//! once for settings that could lose jobs.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{RedisQueue, unavailable};
use crate::queue::QueueError;

impl RedisQueue {
    /// The shared connection, made (and the keys migrated) on first use.
    pub(super) async fn conn(&self) -> Result<ConnectionManager, QueueError> {
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

    /// Moves jobs queued by a version without lanes into their lanes.
    async fn migrate(&self, mut conn: ConnectionManager) -> Result<(), QueueError> {
        let moved: u64 = self
            .scripts
            .migrate
            .arg(&self.prefix)
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
