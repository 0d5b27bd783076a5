//! The documents the fuzz targets start from: the Meta fixtures, canonical
//! events, configs and queue records, plus edge cases no mutation is likely
//! to reach.

use std::path::PathBuf;

use serde_json::{Value, json};

/// The Meta webhook bodies of `tests/fixtures/meta/`.
pub const META_FIXTURES: [&str; 7] = [
    "multi",
    "status_sent",
    "status_failed",
    "change_errors",
    "replies",
    "account_update",
    "instagram",
];

/// A file of the crate's own tree (`core/`), by relative path.
pub fn file(relative: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Meta fixture by name.
pub fn fixture(name: &str) -> Vec<u8> {
    file(&format!("tests/fixtures/meta/{name}.json"))
}

/// Every Meta fixture.
pub fn meta_bodies() -> Vec<Vec<u8>> {
    META_FIXTURES.iter().map(|name| fixture(name)).collect()
}

/// Bodies no mutation is likely to reach: deep nesting, huge numbers, big
/// arrays.
pub fn edge_cases() -> Vec<Vec<u8>> {
    let open = |n: usize, s: &str| s.repeat(n);
    let mut bodies = vec![
        open(100_000, "[").into_bytes(),
        format!("{}{}", open(50_000, "{\"a\":"), "1").into_bytes(),
        format!(r#"{{"object":"whatsapp_business_account","entry":[{}]}}"#, open(200, "[")).into_bytes(),
        format!(r#"{{"object":"whatsapp_business_account","entry":{}1{}}}"#, open(120, "["), open(120, "]")).into_bytes(),
        br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1099887766"},"statuses":[{"id":"w","status":"read","timestamp":1e400,"recipient_id":"1"}]}}]}]}"#.to_vec(),
        br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1099887766"},"statuses":[{"id":"w","status":"read","timestamp":184467440737095516160,"recipient_id":"1"}]}}]}]}"#.to_vec(),
        br#"{"object":"whatsapp_business_account","object":"instagram","entry":[]}"#.to_vec(),
        br#"{"object":"whatsapp_business_account","entry":[],"entry":7}"#.to_vec(),
        b"\xef\xbb\xbf{\"object\":\"whatsapp_business_account\",\"entry\":[]}".to_vec(),
        b"".to_vec(),
        b"null".to_vec(),
        b"\"whatsapp_business_account\"".to_vec(),
        b"1e999999999".to_vec(),
        b"-".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        vec![0xff; 1000],
    ];
    // A callback data string nested far past the recursion limit.
    let deep_callback = format!("{}{}", open(10_000, "["), open(10_000, "]"));
    let mut status: Value = serde_json::from_slice(&fixture("status_sent")).expect("fixture");
    status["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] =
        json!(deep_callback);
    bodies.push(status.to_string().into_bytes());
    // Thousands of updates in one body, and a 1001-event canonical batch.
    let item = status["entry"][0]["changes"][0]["value"]["statuses"][0].clone();
    status["entry"][0]["changes"][0]["value"]["statuses"] = Value::Array(vec![item; 3000]);
    bodies.push(status.to_string().into_bytes());
    bodies.push(
        Value::Array(vec![canonical_event(); 1001])
            .to_string()
            .into_bytes(),
    );
    bodies.push(
        Value::Array(vec![canonical_event(); 1000])
            .to_string()
            .into_bytes(),
    );
    bodies
}

pub fn canonical_event() -> Value {
    json!({"id": "evt-1", "bot_id": "acme", "message_id": "wamid.X", "status": "failed", "timestamp": 1777325700u64,
           "recipient": "+5939800000000", "sender": "16044441111", "channel_name": "Acme", "campaign": {"id": "c", "name": "n"},
           "template": "t", "reply": null, "error": {"code": "131026", "title": "x", "message": "m", "details": "d",
           "type": null, "trace_id": null}, "final": true})
}

/// Configs: the shipped one and one that sets every kind of key.
pub fn configs() -> Vec<String> {
    let shipped = String::from_utf8(file("../config.toml")).expect("config.toml is UTF-8");
    vec![shipped, FULL_CONFIG.to_string()]
}

/// A config touching every section and most keys, valid as written.
const FULL_CONFIG: &str = r#"
include = ["bots.d/*.toml"]

[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:8081"
ingest_tokens = ["${FUZZ_TOKEN}"]
admin_tokens = ["admin-token"]
max_body_bytes = 1048576
header_read_timeout = "5s"
idle_timeout = "60s"
body_read_timeout = "10s"
max_connections = 1024

[queue]
backend = "redis"
url = "redis://127.0.0.1:6379"
prefix = "fuzz"
dedup_window = "24h"

[delivery]
timeout = "10s"
retry_schedule = ["5s", "10s", "1m"]
allow_private_networks = false

[meta]
verify_token = "verify"
app_secrets = ["app-secret"]

[[bots]]
id = "acme"
channel_name = "Acme"
phone_number_ids = ["1099887766"]
ingest_rate_limit = "1000/s"
ingest_tokens = ["tenant-token"]

  [[bots.webhooks]]
  name = "crm"
  url = "https://crm.example.com/status"
  events = ["read", "failed"]
  plugin = "jelou"
  rate_limit = "50/s"
  auth = { type = "bearer", token = "${FUZZ_TOKEN}" }
  sign = { type = "standard-webhooks", secrets = ["whsec_c3RhdHVzaG9vay1kZW1vLXNlY3JldC0wMTIz", "whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0LTAxMjM0"] }

  [[bots.webhooks]]
  name = "bots"
  url = "https://bots.example.com/hook"
  events = ["all"]
  plugin = "wpp"
  auth = { type = "header", name = "X-Api-Key", value = "key" }
  sign = { type = "hmac-sha256", secret = "hmac-secret", header = "X-Signature" }

[[bots]]
id = "globex"

  [[bots.webhooks]]
  name = "engage"
  url = "https://engage.example.com/"
  events = ["delivered"]
  plugin = "engage"
"#;

/// Job records of the embedded store, written out by hand from the layout
/// documented in `queue/embedded/job.rs`: version 2, stage, token, attempts,
/// base, due or dead time, then length-prefixed bot, webhook and reason.
pub fn job_records() -> Vec<Vec<u8>> {
    let record = |version: u8, stage: u8, strings: &[&str]| {
        let mut out = vec![version, stage];
        out.extend_from_slice(&7u64.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&1_750_000_000_000u64.to_le_bytes());
        for s in strings {
            out.extend_from_slice(&u32::try_from(s.len()).expect("short").to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out
    };
    // Version 3 ends with the per-message order: 0, or the mode, the rank
    // and the message id.
    let ordered = |stage: u8, strings: &[&str]| {
        let mut out = record(3, stage, strings);
        out.extend_from_slice(&[2, 3, 7, 0, 0, 0]);
        out.extend_from_slice(b"wamid.1");
        out
    };
    let mut unordered = record(3, 0, &["acme", "crm"]);
    unordered.push(0);
    vec![
        unordered,
        ordered(3, &["acme", "crm"]),
        ordered(4, &["acme", "crm", "suppressed: later"]),
        record(2, 0, &["acme", "crm"]),
        record(2, 1, &["acme", "crm", "ran out of attempts"]),
        record(1, 0, &["acme"]),
        record(1, 1, &["acme", "410 Gone"]),
    ]
}

/// Delivery metadata and attempts as both stores keep them (JSON).
pub fn queue_json() -> Vec<Value> {
    vec![
        json!({"id": "msg_0190a1b2c3d4", "bot": "acme", "webhook": "crm", "event_id": "evt-1",
               "status": "read", "created_ms": 1750000000000u64, "content_type": "application/json",
               "headers": [["X-Partner", "1"], ["X-Trace", "abc"]]}),
        json!({"id": "msg_1", "bot": "acme", "webhook": "crm", "event_id": "evt-2",
               "status": "number_not_found", "created_ms": 0, "content_type": "text/plain"}),
        json!({"at_ms": 1750000000000u64, "duration_ms": 12, "status": 500}),
        json!({"at_ms": 1, "duration_ms": 10000, "error": "timed out after 10s"}),
    ]
}
