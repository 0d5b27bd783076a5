//! The listener's doors (`[server] header_read_timeout`, `idle_timeout`,
//! `body_read_timeout`, `max_connections`) against slow and idle clients,
//! over real sockets. Small limits keep the tests short; every wait is a
//! bound for a stuck test, not a speed check.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use statushook::app::Running;

const INGEST_TOKEN: &str = "ingest-secret";

fn config(server: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
ingest_tokens = ["{INGEST_TOKEN}"]
{server}

[queue]
backend = "embedded"
path = "queue"

[[bots]]
id = "acme"

  [[bots.webhooks]]
  name = "crm"
  url = "http://127.0.0.1:9/hook"
  events = ["all"]
  plugin = "jelou"
"#
    )
}

async fn start(server: &str) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let running = support::start_dispatcher(&config(server), dir.path()).await;
    (running, dir)
}

/// A metric's value from `/metrics` text (0 when absent).
fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Whether the server has closed `stream`: a read returns end of file or an
/// error within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or similar before the close
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_and_others_keep_being_served() {
    let (running, _dir) =
        start("header_read_timeout = \"1s\"\nidle_timeout = \"30s\"\nmax_connections = 20").await;
    let addr: SocketAddr = running.addr();

    // 60 connections that never send a byte: 20 take every slot, the rest
    // wait in the backlog.
    let idle: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // A slowloris: request headers one byte at a time, 5 a second.
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let started = Instant::now();
        let head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for &byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if stream.write_all(&[byte]).is_err() || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        started.elapsed()
    });

    // Other clients are still served: the idle ones are closed at the header
    // deadline and their slots go to the next in the backlog.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("healthz is answered while the cap is held by idle clients");
    assert_eq!(health.status(), 200);

    // The slowloris was cut off: its writes failed long before a minute.
    let slow_for = tokio::task::spawn_blocking(move || slow.join().expect("thread"))
        .await
        .expect("join");
    assert!(
        slow_for < Duration::from_secs(60),
        "the slow client was never cut off"
    );
    // Every idle connection was closed by the server.
    let mut idle = idle;
    for stream in &mut idle {
        assert!(
            closed_within(stream, Duration::from_secs(30)),
            "an idle connection stayed open"
        );
    }

    let text = support::metrics(&running).await;
    assert!(
        metric(
            &text,
            "statushook_server_timeouts_total{reason=\"header_read\"} "
        ) >= 60.0
    );
    assert!(metric(&text, "statushook_server_connection_limit_reached_total ") >= 1.0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_closed_when_idle_and_a_slow_body_gets_408() {
    let (running, _dir) =
        start("header_read_timeout = \"30s\"\nidle_timeout = \"3s\"\nbody_read_timeout = \"1s\"")
            .await;
    let addr = running.addr();

    // One request, then silence: closed by the idle timeout, not the
    // 30 s header deadline.
    let mut kept = TcpStream::connect(addr).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    assert!(closed_within(&mut kept, Duration::from_secs(20)));

    // Headers in time, the body never: 408 and nothing queued.
    let mut slow_body = TcpStream::connect(addr).expect("connect");
    write!(
        slow_body,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {INGEST_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\""
    )
    .expect("write");
    slow_body
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = slow_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_read_timeout"), "{answer}");

    let text = support::metrics(&running).await;
    assert!(metric(&text, "statushook_server_timeouts_total{reason=\"idle\"} ") >= 1.0);
    assert_eq!(running.queue().depth().await.expect("depth").pending, 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_every_send_would_refuse_is_a_dead_letter_at_once() {
    // The default `allow_private_networks = false`, and a webhook on
    // 127.0.0.1: no attempt can succeed, so the first one dead-letters it
    // with the reason instead of walking the retry schedule.
    let (running, _dir) = start("").await;
    let body = serde_json::json!({"id": "e1", "bot_id": "acme", "message_id": "wamid.1",
        "status": "read", "timestamp": 1777326001u64, "recipient": "15550002222"});
    let response = support::http_client()
        .post(format!("http://{}/v1/events", running.addr()))
        .bearer_auth(INGEST_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let queue = running.queue().clone();
    let mut dead = Vec::new();
    for _ in 0..300 {
        dead = queue.dead_letters("acme", 10).await.expect("list");
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1, "dead-lettered");
    assert!(
        dead[0].reason.starts_with("refused: "),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[0].reason.contains("allow_private_networks"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].attempts.len(), 1, "one attempt, no retries");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_routes_move_to_admin_listen() {
    let (running, _dir) =
        start("admin_listen = \"127.0.0.1:0\"\nadmin_tokens = [\"admin-secret\"]").await;
    let public = running.addr();
    let operations = running.admin_addr().expect("an operations listener");
    assert_ne!(public, operations);
    let client = support::http_client();
    let get = |addr: SocketAddr, path: &str| {
        let request = client
            .get(format!("http://{addr}{path}"))
            .bearer_auth("admin-secret");
        async move { request.send().await.expect("request").status().as_u16() }
    };
    // Metrics, the admin routes and the API document are on the
    // operations listener only.
    assert_eq!(get(public, "/metrics").await, 404);
    assert_eq!(get(public, "/v1/bots/acme/dead-letters").await, 404);
    assert_eq!(get(public, "/v1/bots/acme/deliveries").await, 404);
    assert_eq!(get(public, "/openapi.json").await, 404);
    assert_eq!(get(public, "/console").await, 404);
    assert_eq!(get(public, "/v1/bots").await, 404);
    assert_eq!(get(operations, "/console").await, 200);
    assert_eq!(get(operations, "/v1/bots").await, 200);
    assert_eq!(get(operations, "/metrics").await, 200);
    assert_eq!(get(operations, "/v1/bots/acme/dead-letters").await, 200);
    assert_eq!(get(operations, "/v1/bots/acme/deliveries").await, 200);
    assert_eq!(get(operations, "/openapi.json").await, 200);
    // Health on both; events on the public one only.
    for addr in [public, operations] {
        assert_eq!(get(addr, "/healthz").await, 200);
        assert_eq!(get(addr, "/readyz").await, 200);
    }
    let post = |addr: SocketAddr| {
        client
            .post(format!("http://{addr}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .json(
                &serde_json::json!({"id": "e1", "bot_id": "acme", "message_id": "wamid.1",
                "status": "read", "timestamp": 1777326001u64, "recipient": "15550002222"}),
            )
            .send()
    };
    assert_eq!(post(operations).await.expect("post").status(), 404);
    assert_eq!(post(public).await.expect("post").status(), 202);
    running.shutdown().await;
}
