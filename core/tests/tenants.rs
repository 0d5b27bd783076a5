//! Many tenants in one deployment: every route under every kind of token,
//! and Meta apps tied to the bots they may speak for.
//!
//! A dispatcher runs in-process on the embedded queue; the requests are real
//! HTTP on loopback.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use statushook::testing::meta::sign;
use support::receiver::{Receiver, Reply};
use support::{http_client, post_event, start_dispatcher};

/// A bound for a stuck test, not a speed check.
const WAIT: Duration = Duration::from_secs(20);

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
ingest_tokens = ["server-ingest"]
admin_tokens = ["server-admin"]
metrics_tokens = ["scrape"]
[queue]
backend = "embedded"
path = "queue"
[meta]
verify_token = "verify"
app_secrets = ["shared-app"]
[[bots]]
id = "acme"
phone_number_ids = ["1000000001"]
ingest_tokens = ["acme-ingest"]
admin_tokens = ["acme-admin"]
meta_app_secrets = ["acme-app"]
[[bots]]
id = "globex"
phone_number_ids = ["1000000002"]
ingest_tokens = ["globex-ingest"]
admin_tokens = ["globex-admin"]
meta_app_secrets = ["globex-app"]
"#;

/// A status and the machine word of its error, if any.
type Answer = (u16, Option<String>);

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: String,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let mut request = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the dispatcher answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    (status, code)
}

fn ok(status: u16) -> Answer {
    (status, None)
}

fn refused(status: u16, code: &str) -> Answer {
    (status, Some(code.to_string()))
}

fn event(bot: &str, n: usize) -> Value {
    json!({"id": format!("evt-{bot}-{n}"), "bot_id": bot, "message_id": "wamid.T",
           "status": "read", "timestamp": 1_777_000_000u64, "recipient": "15550001111", "final": false})
}

/// The tokens a request may carry, by who holds them.
const TOKENS: [(&str, Option<&str>); 6] = [
    ("server-wide admin", Some("server-admin")),
    ("acme's admin", Some("acme-admin")),
    ("globex's admin", Some("globex-admin")),
    ("acme's ingest (wrong kind)", Some("acme-ingest")),
    ("unknown", Some("nobody")),
    ("none", None),
];

#[tokio::test]
async fn every_admin_route_checks_the_bot_scope_and_never_tells_a_tenant_what_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_dispatcher(CONFIG, dir.path()).await;
    let addr = running.addr();
    let client = http_client();

    // Every admin route, and what a token allowed on the bot gets.
    let missing = || refused(404, "unknown_delivery");
    let routes = [
        ("GET", "dead-letters", ok(200)),
        ("POST", "dead-letters/replay", ok(202)),
        ("GET", "deliveries", ok(200)),
        ("GET", "deliveries/msg_0000", missing()),
        ("POST", "deliveries/msg_0000/resend", missing()),
    ];
    // The bot asked about → what each token gets, in TOKENS order.
    let forbidden = || refused(403, "forbidden");
    let unauthorized = || refused(401, "unauthorized");
    let expected = |bot: &str, fine: Answer| -> [Answer; 6] {
        match bot {
            "acme" => [
                fine.clone(),
                fine,
                forbidden(),
                unauthorized(),
                unauthorized(),
                unauthorized(),
            ],
            "globex" => [
                fine.clone(),
                forbidden(),
                fine,
                unauthorized(),
                unauthorized(),
                unauthorized(),
            ],
            // A bot that does not exist: the server-wide token may still
            // read and replay its leftovers; tenants get what they get for
            // another tenant's bot.
            _ => [
                fine,
                forbidden(),
                forbidden(),
                unauthorized(),
                unauthorized(),
                unauthorized(),
            ],
        }
    };
    let mut table = Vec::new();
    for (method, route, fine) in routes {
        for bot in ["acme", "globex", "no-such-bot"] {
            let want = expected(bot, fine.clone());
            for ((who, token), want) in TOKENS.iter().zip(want) {
                let url = format!("http://{addr}/v1/bots/{bot}/{route}");
                let got = call(&client, method, url, *token, None).await;
                table.push(format!("{method} {route} of {bot} with {who}: {got:?}"));
                assert_eq!(got, want, "{method} /v1/bots/{bot}/{route} with {who}");
            }
        }
    }
    // The tenants' answers for someone else's bot and for no bot are alike
    // in every byte but the bot id the caller sent.
    let body = |bot: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}/v1/bots/{bot}/dead-letters"))
                .bearer_auth("acme-admin")
                .send()
                .await
                .expect("answers")
                .text()
                .await
                .expect("text")
                .replace(bot, "BOT")
        }
    };
    assert_eq!(body("globex").await, body("ghost").await);
    eprintln!("{}", table.join("\n"));
    running.shutdown().await;
}

#[tokio::test]
async fn ingest_tokens_post_for_their_bots_and_metrics_need_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_dispatcher(CONFIG, dir.path()).await;
    let addr = running.addr();
    let client = http_client();
    let url = || format!("http://{addr}/v1/events");
    let cases: [(&str, Option<&str>, &str, Answer); 10] = [
        ("server-wide", Some("server-ingest"), "acme", ok(202)),
        ("server-wide", Some("server-ingest"), "globex", ok(202)),
        // Only a server-wide token learns that a bot does not exist.
        (
            "server-wide",
            Some("server-ingest"),
            "ghost",
            refused(422, "unknown_bot"),
        ),
        ("acme's", Some("acme-ingest"), "acme", ok(202)),
        (
            "acme's",
            Some("acme-ingest"),
            "globex",
            refused(403, "forbidden"),
        ),
        (
            "acme's",
            Some("acme-ingest"),
            "ghost",
            refused(403, "forbidden"),
        ),
        (
            "globex's",
            Some("globex-ingest"),
            "acme",
            refused(403, "forbidden"),
        ),
        (
            "an admin token",
            Some("server-admin"),
            "acme",
            refused(401, "unauthorized"),
        ),
        (
            "unknown",
            Some("nobody"),
            "acme",
            refused(401, "unauthorized"),
        ),
        ("no", None, "acme", refused(401, "unauthorized")),
    ];
    for (n, (who, token, bot, want)) in cases.into_iter().enumerate() {
        let got = call(&client, "POST", url(), token, Some(&event(bot, n))).await;
        assert_eq!(got, want, "POST /v1/events for {bot} with {who} token");
    }

    let metrics = |token: Option<&'static str>| {
        let client = client.clone();
        async move {
            call(
                &client,
                "GET",
                format!("http://{addr}/metrics"),
                token,
                None,
            )
            .await
        }
    };
    assert_eq!(metrics(None).await, refused(401, "unauthorized"));
    assert_eq!(metrics(Some("nobody")).await, refused(401, "unauthorized"));
    // A tenant's admin token may not: the metrics name every bot.
    assert_eq!(
        metrics(Some("acme-admin")).await,
        refused(401, "unauthorized")
    );
    assert_eq!(metrics(Some("scrape")).await, ok(200));
    assert_eq!(metrics(Some("server-admin")).await, ok(200));
    running.shutdown().await;
}

/// A Meta status update for `phone` (a bot's phone number id).
fn meta_body(updates: &[(&str, &str)]) -> Vec<u8> {
    let changes: Vec<Value> = updates
        .iter()
        .map(|(phone, wamid)| {
            json!({"field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone},
                "statuses": [{"id": wamid, "status": "delivered", "timestamp": "1777000000",
                              "recipient_id": "15550001111"}]}})
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": changes}]})
        .to_string()
        .into_bytes()
}

async fn post_meta(
    client: &reqwest::Client,
    addr: SocketAddr,
    secret: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let response = client
        .post(format!("http://{addr}/v1/meta/webhook"))
        .header("X-Hub-Signature-256", sign(secret.as_bytes(), &body))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_meta_app_speaks_only_for_the_bots_that_list_its_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_dispatcher(CONFIG, dir.path()).await;
    let addr = running.addr();
    let client = http_client();
    const ACME: &str = "1000000001";
    const GLOBEX: &str = "1000000002";

    // Its own bot's number: accepted.
    let (status, answer) =
        post_meta(&client, addr, "acme-app", meta_body(&[(ACME, "wamid.A1")])).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (200, json!(1)),
        "{answer}"
    );
    // Another tenant's number, signed with acme's app: refused whole.
    let (status, answer) = post_meta(
        &client,
        addr,
        "acme-app",
        meta_body(&[(GLOBEX, "wamid.G1")]),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "app_not_allowed");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(GLOBEX),
        "{answer}"
    );
    // Both in one body: acme's update is queued, globex's is not.
    let (status, answer) = post_meta(
        &client,
        addr,
        "acme-app",
        meta_body(&[(ACME, "wamid.A2"), (GLOBEX, "wamid.G2")]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["accepted"].clone(), answer["skipped"].clone()),
        (json!(1), json!(1))
    );
    // The server-wide app speaks for anyone.
    let (status, answer) = post_meta(
        &client,
        addr,
        "shared-app",
        meta_body(&[(GLOBEX, "wamid.G3")]),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (200, json!(1)),
        "{answer}"
    );
    // A secret nobody configured: the signature does not verify.
    let (status, _) = post_meta(
        &client,
        addr,
        "stranger-app",
        meta_body(&[(ACME, "wamid.A3")]),
    )
    .await;
    assert_eq!(status, 401);

    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .bearer_auth("scrape")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let count = |reason: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("statushook_ingest_rejected_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    // One refused body, one refused update in the mixed body.
    assert_eq!(
        count("meta_app_not_allowed").as_deref(),
        Some("2"),
        "{metrics}"
    );
    running.shutdown().await;
}

/// "Did partner X get the `read` status of message Y, and what did their
/// server answer?", asked of the delivery log after real sends: one
/// receiver refuses the first tries, another says gone.
#[tokio::test]
async fn the_delivery_log_answers_what_became_of_a_message_and_forgets_it_after_retention() {
    let crm = Receiver::with(|_, n| {
        if n < 2 {
            Reply::answering(503, "busy: try again later")
        } else {
            Reply::answering(200, &format!("accepted #{n}"))
        }
    })
    .await;
    let bi = Receiver::with(|_, _| Reply::answering(410, "this endpoint is gone")).await;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_tokens = ["server-admin"]
[queue]
backend = "embedded"
path = "queue"
[delivery]
timeout = "2s"
retry_schedule = ["50ms", "50ms", "50ms"]
allow_private_networks = true
[history]
retention = "8s"
[[bots]]
id = "acme"
ingest_tokens = ["acme-ingest"]
admin_tokens = ["acme-admin"]
  [[bots.webhooks]]
  name = "crm"
  url = "{crm}"
  events = ["all"]
  plugin = "jelou"
  auth = {{ type = "bearer", token = "crm-secret-token" }}
  [[bots.webhooks]]
  name = "bi"
  url = "{bi}"
  events = ["read"]
  plugin = "jelou"
[[bots]]
id = "globex"
admin_tokens = ["globex-admin"]
"#,
        crm = crm.url(),
        bi = bi.url(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_dispatcher(&config, dir.path()).await;
    let addr = running.addr();
    let client = http_client();
    let status = |id: &str, message: &str, status: &str| {
        json!({"id": id, "bot_id": "acme", "message_id": message, "status": status,
               "timestamp": 1_777_000_000u64, "recipient": "593991234567", "final": false})
    };
    let events = json!([
        status("e1", "wamid.Y", "sent"),
        status("e2", "wamid.Y", "read"),
        status("e3", "wamid.Z", "read")
    ]);
    assert_eq!(post_event(&client, addr, "acme-ingest", &events).await, 202);
    // crm: 2 refusals, then 3 deliveries; bi: the two reads, gone.
    crm.wait_for(5, WAIT).await;
    bi.wait_for(2, WAIT).await;

    let get = |path: String, token: &'static str| {
        let client = client.clone();
        async move {
            let response = client
                .get(format!("http://{addr}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    // Attempts are logged as they end: wait for the last outcomes to land.
    let mut page = Value::Null;
    for _ in 0..300 {
        let (code, body) = get(
            "/v1/bots/acme/deliveries?message_id=wamid.Y".into(),
            "acme-admin",
        )
        .await;
        assert_eq!(code, 200, "{body}");
        page = body;
        let settled = page["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 3 && d.iter().all(|d| d["outcome"] != "pending"));
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = page["deliveries"].as_array().expect("deliveries");
    assert_eq!(found.len(), 3, "sent → crm, read → crm and bi: {page}");
    assert!(found.iter().all(|d| d["message_id"] == "wamid.Y"));
    let read_to_crm = found
        .iter()
        .find(|d| d["status"] == "read" && d["webhook"] == "crm")
        .expect("the read status to crm");
    assert_eq!(read_to_crm["outcome"], "delivered", "{read_to_crm}");
    let attempts = read_to_crm["attempts"].as_array().expect("attempts");
    let last = attempts.last().expect("an attempt");
    assert_eq!(last["status"], 200, "{read_to_crm}");
    assert!(
        last["response"]
            .as_str()
            .is_some_and(|r| r.starts_with("accepted #")),
        "the receiver's answer is kept: {last}"
    );
    // Together the two crm deliveries met both refusals, each logged with
    // the receiver's words.
    let refusals: Vec<&Value> = found
        .iter()
        .filter(|d| d["webhook"] == "crm")
        .flat_map(|d| d["attempts"].as_array().into_iter().flatten())
        .filter(|a| a["status"] == 503)
        .collect();
    assert_eq!(refusals.len(), 2, "{page}");
    assert!(
        refusals
            .iter()
            .all(|a| a["response"] == "busy: try again later" && a["duration_ms"].is_u64())
    );
    let to_bi = found
        .iter()
        .find(|d| d["webhook"] == "bi")
        .expect("the read status to bi");
    assert_eq!(to_bi["outcome"], "dead");
    assert_eq!(to_bi["attempts"][0]["status"], 410);
    assert_eq!(to_bi["attempts"][0]["response"], "this endpoint is gone");

    // Narrower: by webhook and status; by recipient across messages.
    let (_, narrow) = get(
        "/v1/bots/acme/deliveries?message_id=wamid.Y&webhook=crm&status=read".into(),
        "acme-admin",
    )
    .await;
    assert_eq!(narrow["deliveries"].as_array().map(Vec::len), Some(1));
    let (_, by_phone) = get(
        "/v1/bots/acme/deliveries?recipient=593991234567&outcome=delivered".into(),
        "acme-admin",
    )
    .await;
    assert_eq!(
        by_phone["deliveries"].as_array().map(Vec::len),
        Some(3),
        "{by_phone}"
    );

    // One delivery: the exact request, the auth token masked.
    let id = read_to_crm["id"].as_str().expect("id");
    let (code, shown) = get(format!("/v1/bots/acme/deliveries/{id}"), "acme-admin").await;
    assert_eq!(code, 200, "{shown}");
    let sent = crm
        .received()
        .into_iter()
        .find(|r| r.header("webhook-id") == id)
        .expect("crm got it");
    assert_eq!(shown["request"]["url"], format!("{}/", crm.url()));
    assert_eq!(
        shown["request"]["body"].as_str().map(str::as_bytes),
        Some(&sent.body[..]),
        "the body shown is the bytes sent"
    );
    let text = shown.to_string();
    assert!(
        !text.contains("crm-secret-token"),
        "secrets are masked: {text}"
    );
    let header = |name: &str| {
        shown["request"]["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].clone())
    };
    assert_eq!(header("Authorization"), Some(json!("Bearer ****")));
    assert_eq!(header("webhook-id"), Some(json!(id)));
    // Another tenant learns nothing about it.
    let (code, _) = get(format!("/v1/bots/acme/deliveries/{id}"), "globex-admin").await;
    assert_eq!(code, 403);
    let (code, body) = get(format!("/v1/bots/globex/deliveries/{id}"), "globex-admin").await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (404, &json!("unknown_delivery"))
    );

    // Resend: the same id and bytes again.
    let resent = client
        .post(format!("http://{addr}/v1/bots/acme/deliveries/{id}/resend"))
        .bearer_auth("acme-admin")
        .send()
        .await
        .expect("answers");
    assert_eq!(resent.status().as_u16(), 202);
    let again = crm.wait_for(6, WAIT).await;
    assert_eq!(again[5].header("webhook-id"), id);
    assert_eq!(again[5].body, sent.body);

    // Past the retention the log has forgotten it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = get("/v1/bots/acme/deliveries".into(), "acme-admin").await;
        if page["deliveries"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still logged: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, _) = get(format!("/v1/bots/acme/deliveries/{id}"), "acme-admin").await;
    assert_eq!(code, 404);
    running.shutdown().await;
}
