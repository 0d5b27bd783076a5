//! Meta's WhatsApp Cloud API webhooks, end to end.
//!
//! The end-to-end tests run the dispatcher in-process against a real
//! redis-server and real loopback receivers, and play Meta: signed bodies in
//! the shapes Meta sends (`tests/fixtures/meta/`), re-sends, bad signatures,
//! the verification handshake. The mapper is also checked on every fixture
//! without a server; `tests/fuzz` throws mutated bodies at it.

mod support;

use support::start_dispatcher as start;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use statushook::app::Running;
use statushook::event::StatusEvent;
use statushook::testing::meta::sign;
use statushook::testing::meta::{BotLookup, BotRef, Envelope, Mapped, map};
use support::receiver::Receiver;
use support::redis::RedisServer;

const VERIFY_TOKEN: &str = "meta-verify-token";
/// Two app secrets: the old one of a rotation, and the current one.
const OLD_SECRET: &str = "0ld-app-secret-5f1c0e7a9b2d4c6e";
const APP_SECRET: &str = "app-secret-8e2b4f6a1c3d5e7f9a0b";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Helpers.

fn fixture(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/meta/{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Two bots, with different phone number ids and different plugins.
fn config_text(redis: &RedisServer, base: &str, meta: bool) -> String {
    let meta = if meta {
        format!(
            "[meta]\nverify_token = \"{VERIFY_TOKEN}\"\napp_secrets = [\"{OLD_SECRET}\", \"{APP_SECRET}\"]\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
ingest_tokens = ["ingest-secret"]
max_body_bytes = 65536

[queue]
backend = "redis"
url = "{url}"
prefix = "m{port}"

[delivery]
timeout = "2s"
retry_schedule = ["100ms"]
allow_private_networks = true

{meta}

[[bots]]
id = "acme"
channel_name = "Acme Support"
phone_number_ids = ["1099887766"]

  [[bots.webhooks]]
  name = "crm"
  url = "{base}/acme/jelou"
  events = ["all"]
  plugin = "jelou"

[[bots]]
id = "globex"
phone_number_ids = ["2000111222", "2000111333"]

  [[bots.webhooks]]
  name = "status"
  url = "{base}/globex/connectly"
  events = ["all"]
  plugin = "connectly"

  [[bots.webhooks]]
  name = "replies"
  url = "{base}/globex/replies"
  events = ["replied"]
  plugin = "jelou"
"#,
        url = redis.url(),
        port = support::redis::free_port(),
    )
}

fn url(running: &Running) -> String {
    format!("http://{}/v1/meta/webhook", running.addr())
}

/// POSTs `body` with `signature` (if any) as `X-Hub-Signature-256`.
async fn post(
    running: &Running,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut request = support::http_client()
        .post(url(running))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        retry_after,
    )
}

/// POSTs `body` signed as Meta would with `secret`.
async fn post_signed(running: &Running, body: &[u8], secret: &str) -> (u16, Value) {
    let signature = sign(secret.as_bytes(), body);
    let (status, body, _) = post(running, body, Some(&signature)).await;
    (status, body)
}

/// GETs the webhook route with `query`: (status, content type, body).
async fn get(running: &Running, query: &str) -> (u16, String, String) {
    let response = support::http_client()
        .get(format!("{}?{query}", url(running)))
        .send()
        .await
        .expect("get");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.text().await.expect("text"))
}

async fn depth(running: &Running) -> u64 {
    running.queue().depth().await.expect("depth").pending
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str, mentions: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{mentions:?} not in {message:?}"
    );
}

// Message ids of multi.json.
const W_A1: &str = "wamid.HBgLMTU1NTAwMDIyMjIVAgARGBIzRjU4RkE1QjMyRDg0QTk2QTEA";
const W_A2: &str = "wamid.HBgLMTU1NTAwMDMzMzMVAgARGBJGNjE0QjM5QkE3RjgwMjY5NzQA";
const W_A3: &str = "wamid.HBgLMTU1NTAwMDQ0NDQVAgARGBI3QjJBMUU5RDhDNTQ0RjMyMEQA";
const W_G1: &str = "wamid.HBgLMTU1NTA2NjY3Nzc3FQIAERgSOUI4RDdBRTRBQTJGMzE1QjZDAA==";
const W_G2: &str = "wamid.HBgLMTU1NTA4ODg5OTk5FQIAERgSNzc1MkE0OTkzRTFCMDQyMzg2AA==";
const W_G3: &str = "wamid.HBgSMTIwMzYzNDA0MTIzNDU2Nzg5FQIAERgSQzFBRjMyMzQ1QjY3ODlEMEU1AA==";

/// The eleven deliveries multi.json must become: (receiver path, body).
fn expected_multi_deliveries() -> Vec<(&'static str, Value)> {
    let party = |id: &str| json!({"id": id, "channelType": "whatsapp"});
    let connectly = |ts: &str, to: &str, id: &str, status: &str, error: Value| {
        json!({"topic": "delivery_status", "timestamp": ts, "sender": party("+15557770000"),
               "recipient": party(to), "statusUpdate": {"id": id, "status": status, "error": error}})
    };
    vec![
        // acme, Jelou format, every status: the campaign and template come
        // from biz_opaque_callback_data; `played` is READ and final.
        (
            "/acme/jelou",
            json!({"id": W_A1, "status": "DELIVERED_CHANNEL", "timestamp": "1750857300", "campaignId": "c-42",
                               "destination": "15550002222", "isFinalEvent": false, "template": "promo_1"}),
        ),
        (
            "/acme/jelou",
            json!({"id": W_A1, "status": "DELIVERED_USER", "timestamp": "1750857305", "campaignId": "c-42",
                               "destination": "15550002222", "isFinalEvent": false, "template": "promo_1"}),
        ),
        (
            "/acme/jelou",
            json!({"id": W_A1, "status": "READ", "timestamp": "1750857360", "campaignId": "c-42",
                               "destination": "15550002222", "isFinalEvent": true, "template": "promo_1"}),
        ),
        (
            "/acme/jelou",
            json!({"id": W_A2, "status": "FAILED", "timestamp": "1750857384", "campaignId": "c-42",
                               "destination": "15550003333", "isFinalEvent": true, "error": "Message undeliverable"}),
        ),
        (
            "/acme/jelou",
            json!({"id": W_A3, "status": "READ", "timestamp": "1750857390",
                               "destination": "15550004444", "isFinalEvent": true}),
        ),
        (
            "/acme/jelou",
            json!({"id": W_A1, "status": "REPLY", "timestamp": "1750857420",
                               "destination": "15550002222", "isFinalEvent": true, "reply": "Stop promotions"}),
        ),
        // globex, Connectly format (drops replies), sender from display_phone_number.
        (
            "/globex/connectly",
            connectly("1750860000", "+15550667777", W_G1, "delivered", Value::Null),
        ),
        (
            "/globex/connectly",
            connectly(
                "1750860010",
                "+15550889999",
                W_G2,
                "delivery_failed",
                json!({
            "message": "Re-engagement message", "type": "ERROR_TYPE_DELIVERY_FAILED", "code": "131047",
            "userTitle": "Re-engagement message",
            "userMessage": "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
            "cntTraceId": format!("meta:{W_G2}:failed"), "details": {}}),
            ),
        ),
        (
            "/globex/connectly",
            connectly(
                "1750860020",
                "+120363041234567890",
                W_G3,
                "read",
                Value::Null,
            ),
        ),
        // globex's replies, Jelou format: button_reply and list_reply titles.
        (
            "/globex/replies",
            json!({"id": W_G1, "status": "REPLY", "timestamp": "1750860100",
                                   "destination": "15550667777", "isFinalEvent": true, "reply": "Reschedule"}),
        ),
        (
            "/globex/replies",
            json!({"id": W_G1, "status": "REPLY", "timestamp": "1750860160",
                                   "destination": "15550667777", "isFinalEvent": true, "reply": "Tomorrow 9-12"}),
        ),
    ]
}

// ---------------------------------------------------------------------------
// End to end.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_body_for_two_bots_becomes_exactly_the_right_deliveries() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let running = start(&config_text(&redis, &receiver.url(), true), dir.path()).await;
    let body = fixture("multi");

    // Signed with the second configured secret (a rotation in progress).
    let (status, answer) = post_signed(&running, &body, APP_SECRET).await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"accepted": 11, "duplicates": 0, "skipped": 6}))
    );

    let got = receiver.wait_for(11, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if receiver.received().len() > got.len() {
        receiver.received()
    } else {
        got
    };
    let mut unmatched: Vec<(String, Value)> =
        got.iter().map(|r| (r.path.clone(), r.json())).collect();
    for (path, expected) in expected_multi_deliveries() {
        let position = unmatched
            .iter()
            .position(|(p, b)| p == path && *b == expected)
            .unwrap_or_else(|| {
                panic!("no delivery to {path} with body {expected:#}; got {unmatched:#?}")
            });
        unmatched.remove(position);
    }
    assert!(
        unmatched.is_empty(),
        "unexpected deliveries: {unmatched:#?}"
    );
    assert!(
        got.iter()
            .all(|r| r.header("content-type") == "application/json")
    );

    let text = support::metrics(&running).await;
    for line in [
        r#"statushook_events_ingested_total{bot="acme"} 6"#,
        r#"statushook_events_ingested_total{bot="globex"} 5"#,
        r#"statushook_ingest_rejected_total{reason="meta_unknown_status"} 1"#,
        r#"statushook_ingest_rejected_total{reason="meta_no_context"} 1"#,
        r#"statushook_ingest_rejected_total{reason="meta_unsupported_message"} 2"#,
        r#"statushook_ingest_rejected_total{reason="meta_ignored_field"} 1"#,
        r#"statushook_ingest_rejected_total{reason="meta_unknown_phone_number_id"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    // Meta re-sends the same body (say our 200 was lost): every event is a
    // duplicate of its deterministic id, and nothing is delivered again.
    let (status, answer) = post_signed(&running, &body, OLD_SECRET).await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"accepted": 0, "duplicates": 11, "skipped": 6}))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        11,
        "a re-send delivers nothing new"
    );
    assert_eq!(depth(&running).await, 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_bodies_are_refused_and_queue_nothing() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let running = start(&config_text(&redis, &receiver.url(), true), dir.path()).await;
    let body = fixture("multi");
    let good = sign(APP_SECRET.as_bytes(), &body);

    // Missing, malformed, wrong secret, signature of another body.
    let (status, answer, _) = post(&running, &body, None).await;
    assert_error(
        status,
        &answer,
        401,
        "unauthorized",
        "missing X-Hub-Signature-256",
    );
    for malformed in [
        "",
        "sha1=0123",
        good.trim_start_matches("sha256="),
        &good[..good.len() - 1],
        &format!("{good}00"),
        "sha256=zz",
    ] {
        let (status, answer, _) = post(&running, &body, Some(malformed)).await;
        assert_error(
            status,
            &answer,
            401,
            "unauthorized",
            "malformed X-Hub-Signature-256",
        );
    }
    let wrong_secret = sign(b"not-the-app-secret", &body);
    let (status, answer, _) = post(&running, &body, Some(&wrong_secret)).await;
    assert_error(status, &answer, 401, "unauthorized", "does not match");
    let mut altered = body.clone();
    altered.extend_from_slice(b"\n");
    let (status, answer, _) = post(&running, &altered, Some(&good)).await;
    assert_error(status, &answer, 401, "unauthorized", "does not match");
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    assert_eq!(post(&running, &body, Some(&flipped)).await.0, 401);

    // Verified, but not a WhatsApp webhook.
    let cases: [(&[u8], &str); 5] = [
        (
            b"{\"object\": \"whatsapp_business_account\", \"entry\": [",
            "not valid JSON",
        ),
        (b"not json at all", "not valid JSON"),
        (
            b"[{\"object\": \"whatsapp_business_account\"}]",
            "not a JSON object",
        ),
        (&fixture("instagram"), "\"instagram\""),
        (
            b"{\"object\": \"whatsapp_business_account\", \"entry\": {}}",
            "\"entry\"",
        ),
    ];
    for (bad, mentions) in cases {
        let (status, answer) = post_signed(&running, bad, APP_SECRET).await;
        assert_error(status, &answer, 400, "not_a_whatsapp_webhook", mentions);
    }
    // Over max_body_bytes, as for /v1/events.
    let big = format!(
        r#"{{"object": "whatsapp_business_account", "entry": [], "pad": "{}"}}"#,
        "x".repeat(70_000)
    );
    let (status, answer) = post_signed(&running, big.as_bytes(), APP_SECRET).await;
    assert_error(status, &answer, 413, "body_too_large", "max_body_bytes");
    // Another method on the route.
    let put = support::http_client()
        .put(url(&running))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status().as_u16(), 405);

    assert_eq!(depth(&running).await, 0, "nothing was queued");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty(), "nothing was delivered");

    // A verified body whose only change is not about messages is acknowledged.
    let (status, answer) = post_signed(&running, &fixture("account_update"), APP_SECRET).await;
    assert_eq!(
        (status, answer),
        (200, json!({"accepted": 0, "duplicates": 0, "skipped": 1}))
    );
    let text = support::metrics(&running).await;
    for line in [
        r#"statushook_ingest_rejected_total{reason="meta_unauthorized"} 10"#,
        r#"statushook_ingest_rejected_total{reason="meta_not_a_whatsapp_webhook"} 5"#,
        r#"statushook_ingest_rejected_total{reason="meta_body_too_large"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_handshake_both_ways() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let running = start(&config_text(&redis, "http://127.0.0.1:9", true), dir.path()).await;
    let (status, content_type, text) = get(
        &running,
        &format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"),
    )
    .await;
    assert_eq!((status, text.as_str()), (200, "1158201444"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");

    for refused in [
        "hub.mode=subscribe&hub.verify_token=wrong-token&hub.challenge=1158201444".to_string(),
        format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
        "hub.mode=subscribe&hub.challenge=1".to_string(),
        String::new(),
    ] {
        let (status, content_type, text) = get(&running, &refused).await;
        assert_eq!(status, 403, "{refused}");
        assert_eq!(content_type, "application/json");
        let body: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(body["error"]["code"], "forbidden", "{text}");
        assert!(!text.contains("1158201444"), "the challenge is not echoed");
    }
    running.shutdown().await;

    // Without [meta], both routes say so.
    let running = start(
        &config_text(&redis, "http://127.0.0.1:9", false),
        dir.path(),
    )
    .await;
    let (status, _, text) = get(
        &running,
        &format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
    )
    .await;
    let body: Value = serde_json::from_str(&text).expect("JSON error");
    assert_error(status, &body, 404, "meta_not_configured", "[meta]");
    let (status, body) = post_signed(&running, &fixture("status_sent"), APP_SECRET).await;
    assert_error(status, &body, 404, "meta_not_configured", "[meta]");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_outage_answers_503_and_metas_resend_delivers() {
    let mut redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let running = start(&config_text(&redis, &receiver.url(), true), dir.path()).await;
    let body = fixture("status_failed");

    redis.kill();
    let signature = sign(APP_SECRET.as_bytes(), &body);
    let (status, answer, retry_after) = post(&running, &body, Some(&signature)).await;
    assert_error(
        status,
        &answer,
        503,
        "queue_unavailable",
        "nothing was queued",
    );
    assert_eq!(retry_after.as_deref(), Some("5"));
    // A body with nothing to queue needs no queue.
    assert_eq!(
        post_signed(&running, &fixture("account_update"), APP_SECRET)
            .await
            .0,
        200
    );

    redis.restart();
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        let (status, answer) = post_signed(&running, &body, APP_SECRET).await;
        if status == 200 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "ingest did not recover: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        answer,
        json!({"accepted": 1, "duplicates": 0, "skipped": 0})
    );
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/acme/jelou");
    assert_eq!(got[0].json()["status"], "FAILED");
    assert_eq!(got[0].json()["error"], "Message undeliverable");
    running.shutdown().await;
}

// ---------------------------------------------------------------------------
// The mapper on every fixture (no server).

/// The bots of the end-to-end config, with acme's channel name.
struct Bots;

impl BotLookup for Bots {
    fn owner_of(&self, phone_number_id: &str) -> Option<BotRef<'_>> {
        match phone_number_id {
            "1099887766" => Some(BotRef {
                id: "acme",
                channel_name: Some("Acme Support"),
            }),
            "2000111222" | "2000111333" => Some(BotRef {
                id: "globex",
                channel_name: None,
            }),
            _ => None,
        }
    }
}

fn map_bytes(body: &[u8]) -> Option<Mapped> {
    Envelope::parse(body)
        .ok()
        .map(|envelope| map(&envelope, &Bots))
}

#[test]
fn every_fixture_maps_as_documented() {
    let summary = |name: &str| -> Option<(Vec<String>, Vec<&'static str>)> {
        let mapped = map_bytes(&fixture(name))?;
        let events = mapped
            .events
            .iter()
            .map(|e| format!("{}:{}:{}", e.bot_id, e.status, e.is_final))
            .collect();
        Some((
            events,
            mapped.skipped.iter().map(|s| s.reason.as_str()).collect(),
        ))
    };
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary("multi"),
        Some((
            strings(&[
                "acme:sent:false",
                "acme:delivered:false",
                "acme:read:true",
                "acme:failed:true",
                "acme:read:true",
                "acme:replied:true",
                "globex:delivered:false",
                "globex:failed:true",
                "globex:read:true",
                "globex:replied:true",
                "globex:replied:true",
            ]),
            vec![
                "unknown_status",
                "no_context",
                "ignored_field",
                "unsupported_message",
                "unsupported_message",
                "unknown_phone_number_id"
            ],
        ))
    );
    assert_eq!(
        summary("status_sent"),
        Some((strings(&["acme:sent:false"]), vec![]))
    );
    assert_eq!(
        summary("status_failed"),
        Some((strings(&["acme:failed:true"]), vec![]))
    );
    assert_eq!(
        summary("change_errors"),
        Some((strings(&["acme:failed:true"]), vec!["no_updates"]))
    );
    assert_eq!(
        summary("replies"),
        Some((
            strings(&["globex:replied:true", "globex:replied:true"]),
            vec!["unsupported_message", "no_context"]
        ))
    );
    assert_eq!(
        summary("account_update"),
        Some((vec![], vec!["ignored_field"]))
    );
    assert_eq!(summary("instagram"), None, "not a WhatsApp webhook");

    // Field by field where the fixtures differ from the unit tests.
    let failed = &map_bytes(&fixture("change_errors")).expect("maps").events[0];
    let error = failed
        .error
        .as_ref()
        .expect("value.errors[0] is the fallback");
    assert_eq!(
        (error.code.as_str(), error.details.as_deref()),
        (
            "131000",
            Some("Message failed to send due to an unknown error.")
        )
    );
    let multi = map_bytes(&fixture("multi")).expect("maps");
    assert_eq!(
        multi.events[0].channel_name.as_deref(),
        Some("Acme Support")
    );
    assert_eq!(multi.events[0].id, format!("meta:{W_A1}:sent"));
    assert_eq!(multi.events[4].id, format!("meta:{W_A3}:played"));
    let group = &multi.events[8];
    assert_eq!(
        (group.recipient.as_deref(), group.template.as_deref()),
        (Some("120363041234567890"), Some("group_digest"))
    );
    let text_reply = &map_bytes(&fixture("replies")).expect("maps").events[1];
    assert_eq!(
        text_reply.reply.as_deref(),
        Some("Can we make it 10am instead?")
    );
    assert_eq!(text_reply.sender.as_deref(), Some("15557770000"));
}

#[test]
fn mapped_events_for_unknown_phone_numbers_are_never_produced() {
    // A quick sanity check of the lookup contract with a plain map.
    let bots: HashMap<String, String> =
        HashMap::from([("2000111222".to_string(), "globex".to_string())]);
    let envelope = Envelope::parse(&fixture("multi")).expect("envelope");
    let mapped = map(&envelope, &bots);
    assert!(
        mapped
            .events
            .iter()
            .all(|e: &StatusEvent| e.bot_id == "globex")
    );
    assert_eq!(mapped.events.len(), 5);
    assert_eq!(
        mapped
            .events
            .iter()
            .filter(|e| e.channel_name.is_some())
            .count(),
        0
    );
}
