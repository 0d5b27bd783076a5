//! Shared setup for the integration tests.

#![allow(dead_code)] // each test binary uses a different part

pub mod cluster;
pub mod dispatcher;
pub mod guests;
pub mod receiver;
pub mod redis;

#[allow(unused_imports)] // each test binary uses a different part
pub use guests::guest;

use std::path::PathBuf;
use std::sync::OnceLock;

use statushook::event::{StatusEvent, parse_event};
use statushook::plugin::{HostOptions, PluginHost, PluginLimits};

/// A host with default limits and a private compiled-plugin cache, shared by
/// the tests of one binary (as one process shares one host in production).
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| host_with(PluginLimits::default()))
}

/// A host with `limits` and a fresh cache folder.
pub fn host_with(limits: PluginLimits) -> PluginHost {
    host_with_options(limits, true)
}

/// A host with `limits`, a fresh cache folder, and the pooling allocator on
/// or off.
pub fn host_with_options(limits: PluginLimits, pooling: bool) -> PluginHost {
    let cache = tempfile::tempdir().expect("temp dir").keep();
    PluginHost::new(HostOptions {
        limits,
        cache_dir: Some(cache),
        pooling,
    })
    .expect("plugin host")
}

/// A valid event of the given status.
pub fn event(status: &str) -> StatusEvent {
    let json = serde_json::json!({
        "id": "evt-test-1",
        "bot_id": "acme-support",
        "message_id": "wamid.TEST",
        "status": status,
        "timestamp": 1777326001u64,
        "recipient": "5939800000000",
        "sender": "16044441111",
        "reply": if status == "replied" { Some("Yes") } else { None },
    });
    parse_event(json.to_string().as_bytes()).expect("valid test event")
}

/// One worked case of `tests/vectors/<provider>.json`.
pub struct Case {
    pub name: String,
    pub event: serde_json::Value,
    pub expect: serde_json::Value,
}

/// The worked cases for `provider` (the project's copy of the spec vectors).
pub fn vectors(provider: &str) -> Vec<Case> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/vectors/{provider}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("vector file is JSON");
    doc["cases"]
        .as_array()
        .expect("cases array")
        .iter()
        .map(|case| Case {
            name: case["name"].as_str().expect("case name").to_string(),
            event: case["event"].clone(),
            expect: case["expect"].clone(),
        })
        .collect()
}

/// An HTTP client for tests (reqwest is built without a default TLS crypto
/// provider; install ring first, as the dispatcher does).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Writes `text` as `config.toml` in `dir` and starts a dispatcher on it
/// in-process (listen on port 0; see `Running::addr`).
pub async fn start_dispatcher(text: &str, dir: &std::path::Path) -> statushook::app::Running {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let config = statushook::config::parse(text, &path, &|_| None)
        .unwrap_or_else(|e| panic!("test config: {e}"));
    statushook::app::start(config)
        .await
        .expect("dispatcher starts")
}

/// The dispatcher's `/metrics` text.
#[allow(dead_code)] // not every test binary reads metrics
pub async fn metrics(running: &statushook::app::Running) -> String {
    http_client()
        .get(format!("http://{}/metrics", running.addr()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Waits until `check` holds, polling every 10 ms, and returns how long it
/// took; fails naming `what` after 30 s (a bound for a stuck test, not a
/// speed check).
pub async fn until(what: &str, check: impl Fn() -> bool) -> std::time::Duration {
    let limit = std::time::Duration::from_secs(30);
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "not seen after {limit:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Posts `event` to `POST /v1/events` of the dispatcher at `addr` with
/// bearer `token`, and returns the status code.
pub async fn post_event(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    token: &str,
    event: &serde_json::Value,
) -> u16 {
    client
        .post(format!("http://{addr}/v1/events"))
        .bearer_auth(token)
        .json(event)
        .send()
        .await
        .expect("post an event")
        .status()
        .as_u16()
}
