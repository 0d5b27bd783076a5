//! Dispatchers as real processes (`statushook run`) on free ports, and the
//! load and checks the crash tests share: post batches, then check that
//! every accepted event arrived under one webhook-id with the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::receiver::Receiver;
use super::redis::{RedisServer, free_port};

/// The ingest token every dispatcher here accepts.
pub const TOKEN: &str = "crash-token";

/// A `statushook run` child process; killed (SIGKILL) when dropped.
pub struct Dispatcher {
    child: Child,
    /// Its listen port.
    pub port: u16,
}

impl Dispatcher {
    /// Starts `statushook run` on a free port with a Redis queue and waits
    /// for `/readyz`.
    pub async fn start(dir: &Path, redis: &RedisServer, receiver: &Receiver, name: &str) -> Self {
        let queue = format!(
            "backend = \"redis\"\nurl = \"{}\"\nprefix = \"crash\"",
            redis.url()
        );
        Self::start_with(dir, &queue, &receiver.url(), name).await
    }

    /// Starts `statushook run` with the given `[queue]` body and receiver URL.
    pub async fn start_with(dir: &Path, queue: &str, receiver_url: &str, name: &str) -> Self {
        Self::start_with_bots(dir, queue, receiver_url, name, 1).await
    }

    /// [`Dispatcher::start_with`] serving `bots` bots ([`bot_name`] 0, 1,
    /// ...), each with one webhook `crm` to the receiver.
    pub async fn start_with_bots(
        dir: &Path,
        queue: &str,
        receiver_url: &str,
        name: &str,
        bots: usize,
    ) -> Self {
        let port = free_port();
        let bots: String = (0..bots)
            .map(|i| {
                format!(
                    "[[bots]]\nid = \"{}\"\n  [[bots.webhooks]]\n  name = \"crm\"\n  url = \"{receiver_url}/crm\"\n  events = [\"all\"]\n  plugin = \"wpp\"\n",
                    bot_name(i)
                )
            })
            .collect();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
ingest_tokens = ["{TOKEN}"]
admin_tokens = ["admin"]
[queue]
{queue}
[delivery]
timeout = "1s"
retry_schedule = ["200ms", "200ms", "200ms", "200ms", "200ms"]
allow_private_networks = true
{bots}"#
            ),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_statushook"))
            .args(["run", "--config"])
            .arg(&config)
            .env("STATUSHOOK_CACHE_DIR", dir.join("cache"))
            .env("STATUSHOOK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start statushook");
        let dispatcher = Dispatcher { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = super::http_client()
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(ready, Ok(200)) {
                return dispatcher;
            }
            assert!(
                Instant::now() < deadline,
                "dispatcher {name} not ready: {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        self.child.wait().expect("wait")
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The id of bot `i` of [`Dispatcher::start_with_bots`]: `acme`, `acme-1`, ...
pub fn bot_name(i: usize) -> String {
    if i == 0 {
        "acme".into()
    } else {
        format!("acme-{i}")
    }
}

/// Events `start..start + count`, all for bot `acme`.
pub fn batch(start: usize, count: usize) -> serde_json::Value {
    batch_over(start, count, 1)
}

/// Events `start..start + count`, event `i` for bot `i % bots`; each has
/// message id `wamid.<i>`.
pub fn batch_over(start: usize, count: usize, bots: usize) -> serde_json::Value {
    serde_json::Value::Array(
        (start..start + count)
            .map(|i| {
                serde_json::json!({
                    "id": format!("ev-{i}"), "bot_id": bot_name(i % bots), "message_id": format!("wamid.{i}"),
                    "status": "delivered", "timestamp": 1777326001u64, "recipient": "5939800000000"
                })
            })
            .collect(),
    )
}

/// Posts `batch` to whichever dispatcher answers; true once accepted.
pub async fn post(client: &reqwest::Client, ports: &[u16], body: &serde_json::Value) -> bool {
    for port in ports {
        let sent = client
            .post(format!("http://127.0.0.1:{port}/v1/events"))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await;
        if let Ok(response) = sent
            && response.status().as_u16() == 202
        {
            return true;
        }
    }
    false
}

/// Checks what arrived: every event in `expected` delivered, each under
/// exactly one webhook-id, and every repeat of an id with the same body.
pub fn check_deliveries(received: &[super::receiver::Received], expected: usize) -> usize {
    let mut ids_by_message: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut body_by_id: BTreeMap<String, bytes::Bytes> = BTreeMap::new();
    let mut duplicates = 0;
    for r in received {
        let message = r.json()["messageId"]
            .as_str()
            .expect("messageId")
            .to_string();
        let id = r.header("webhook-id").to_string();
        if let Some(previous) = body_by_id.insert(id.clone(), r.body.clone()) {
            assert_eq!(
                previous, r.body,
                "a re-delivery of {id} carries the same bytes"
            );
            duplicates += 1;
        }
        ids_by_message.entry(message).or_default().insert(id);
    }
    assert_eq!(
        ids_by_message.len(),
        expected,
        "every accepted event delivered"
    );
    assert!(
        ids_by_message.values().all(|ids| ids.len() == 1),
        "one webhook-id per delivery, kept across re-deliveries"
    );
    duplicates
}

pub async fn wait_until(
    receiver: &Receiver,
    distinct: usize,
    timeout: Duration,
) -> Vec<super::receiver::Received> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = receiver.received();
        let ids: BTreeSet<_> = got
            .iter()
            .map(|r| r.header("webhook-id").to_string())
            .collect();
        if ids.len() >= distinct {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {distinct} deliveries arrived",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
