//! Wake-ups across dispatchers: a pub/sub subscription to `{p}:wake`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use tokio::sync::Notify;

/// Forwards every message on `channel` to `wake`, but those published by
/// `origin` (this queue: it woke its workers when it wrote), reconnecting
/// forever.
///
/// Wake-ups only cut latency: a worker that misses one still finds the work
/// on its next poll, so a lost subscription costs at most the poll interval.
pub(super) async fn forward_wakeups(
    client: Client,
    channel: String,
    origin: u64,
    wake: Arc<Notify>,
) {
    let own = origin.to_string();
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        if message.get_payload_bytes() != own.as_bytes() {
                            wake.notify_one();
                        }
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
