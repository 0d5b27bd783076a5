//! Wake-ups across dispatchers: a pub/sub subscription to `{p}:wake`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use tokio::sync::Notify;

/// Forwards every message on `channel` to `wake`, reconnecting forever.
///
/// Wake-ups only cut latency: a worker that misses one still finds the work
/// on its next poll, so a lost subscription costs at most the poll interval.
pub(super) async fn forward_wakeups(client: Client, channel: String, wake: Arc<Notify>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        wake.notify_one();
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "Redis wake-up subscription unavailable; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
