//! Dispatchers as real processes, killed and stopped under load, against a
//! real redis-server and a real receiver: nothing accepted is lost.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::receiver::{Receiver, Reply};
use support::redis::{RedisServer, free_port};

const TOKEN: &str = "crash-token";

struct Dispatcher {
    child: Child,
    port: u16,
}

impl Dispatcher {
    /// Starts `statushook run` on a free port with a Redis queue and waits
    /// for `/readyz`.
    async fn start(dir: &Path, redis: &RedisServer, receiver: &Receiver, name: &str) -> Self {
        let queue = format!(
            "backend = \"redis\"\nurl = \"{}\"\nprefix = \"crash\"",
            redis.url()
        );
        Self::start_with(dir, &queue, &receiver.url(), name).await
    }

    /// Starts `statushook run` with the given `[queue]` body and receiver URL.
    async fn start_with(dir: &Path, queue: &str, receiver_url: &str, name: &str) -> Self {
        let port = free_port();
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
[[bots]]
id = "acme"
  [[bots.webhooks]]
  name = "crm"
  url = "{receiver}/crm"
  events = ["all"]
  plugin = "wpp"
"#,
                receiver = receiver_url,
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
            let ready = support::http_client()
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

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
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

fn batch(start: usize, count: usize) -> serde_json::Value {
    serde_json::Value::Array(
        (start..start + count)
            .map(|i| {
                serde_json::json!({
                    "id": format!("ev-{i}"), "bot_id": "acme", "message_id": format!("wamid.{i}"),
                    "status": "delivered", "timestamp": 1777326001u64, "recipient": "5939800000000"
                })
            })
            .collect(),
    )
}

/// Posts `batch` to whichever dispatcher answers; true once accepted.
async fn post(client: &reqwest::Client, ports: &[u16], body: &serde_json::Value) -> bool {
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
fn check_deliveries(received: &[support::receiver::Received], expected: usize) -> usize {
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

async fn wait_until(
    receiver: &Receiver,
    distinct: usize,
    timeout: Duration,
) -> Vec<support::receiver::Received> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_accepted() {
    const EVENTS: usize = 10_000;
    const BATCH: usize = 100;
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut first = Dispatcher::start(dir.path(), &redis, &receiver, "first").await;
    let client = support::http_client();

    let mut pending: Vec<usize> = (0..EVENTS).step_by(BATCH).collect();
    let mut accepted = 0;
    let mut killed = false;
    let mut second: Option<Dispatcher> = None;
    while let Some(start) = pending.first().copied() {
        let ports: Vec<u16> = std::iter::once(first.port)
            .chain(second.as_ref().map(|d| d.port))
            .collect();
        if post(&client, &ports, &batch(start, BATCH)).await {
            accepted += BATCH;
            pending.remove(0);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Kill the dispatcher mid-load, while deliveries are in flight.
        if !killed && accepted >= EVENTS * 3 / 10 {
            first.kill9();
            killed = true;
            second = Some(Dispatcher::start(dir.path(), &redis, &receiver, "second").await);
        }
    }
    assert!(killed);
    let got = wait_until(&receiver, EVENTS, Duration::from_secs(120)).await;
    let duplicates = check_deliveries(&got, EVENTS);
    eprintln!(
        "kill -9 under load: {EVENTS} delivered, {duplicates} re-deliveries (sends in flight at the kill)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dispatcher_takes_over_the_leases_of_a_killed_one() {
    let redis = RedisServer::start();
    // Slow answers, so the first dispatcher is killed with sends in flight.
    let receiver = Receiver::with(|_, _| Reply::delayed(200, Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut a = Dispatcher::start(dir.path(), &redis, &receiver, "a").await;
    let b = Dispatcher::start(dir.path(), &redis, &receiver, "b").await;
    let client = support::http_client();
    assert!(post(&client, &[a.port], &batch(0, 200)).await);
    receiver.wait_for(20, Duration::from_secs(30)).await;
    a.kill9();
    let got = wait_until(&receiver, 200, Duration::from_secs(60)).await;
    check_deliveries(&got, 200);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_sends_and_loses_nothing() {
    let redis = RedisServer::start();
    let receiver = Receiver::with(|_, _| Reply::delayed(200, Duration::from_millis(200))).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut dispatcher = Dispatcher::start(dir.path(), &redis, &receiver, "term").await;
    let client = support::http_client();
    assert!(post(&client, &[dispatcher.port], &batch(0, 300)).await);
    receiver.wait_for(10, Duration::from_secs(30)).await;
    let status = dispatcher.sigterm();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let before_restart = receiver.received();
    // Nothing was half-done: every send that started was completed and acked.
    let restarted = Dispatcher::start(dir.path(), &redis, &receiver, "term2").await;
    let got = wait_until(&receiver, 300, Duration::from_secs(60)).await;
    let duplicates = check_deliveries(&got, 300);
    assert_eq!(
        duplicates,
        0,
        "a graceful stop re-sends nothing ({} arrived before the restart)",
        before_restart.len()
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_queue_kill_9_with_500_pending_to_a_down_receiver_delivers_all_after_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let queue = format!(
        "backend = \"embedded\"\npath = \"{}\"",
        dir.path().join("queue").display()
    );
    // The receiver is down: nothing listens on its port yet.
    let receiver_port = free_port();
    let receiver_url = format!("http://127.0.0.1:{receiver_port}");
    let mut dispatcher =
        Dispatcher::start_with(dir.path(), &queue, &receiver_url, "embedded").await;
    let client = support::http_client();
    for start in (0..500).step_by(100) {
        assert!(post(&client, &[dispatcher.port], &batch(start, 100)).await);
    }
    // Let some attempts fail against the closed port, then crash.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dispatcher.kill9();

    let receiver =
        Receiver::start_on(format!("127.0.0.1:{receiver_port}").parse().expect("addr")).await;
    let restarted =
        Dispatcher::start_with(dir.path(), &queue, &receiver_url, "embedded-again").await;
    let got = wait_until(&receiver, 500, Duration::from_secs(60)).await;
    check_deliveries(&got, 500);
    drop(restarted);
}
