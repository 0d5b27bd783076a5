//! `docs/openapi.json` against a running dispatcher: every route is called
//! for real (Redis and receivers too, Redis killed for the `503`s), and
//! each answer's status must be one the document lists for that operation
//! and its body must validate, with a JSON Schema 2020-12 validator (the
//! `jsonschema` crate), against the schema listed for it. At the end every
//! operation must have shown a success and every listed status must have
//! been seen, so neither side can drift from the other unnoticed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};
use statushook::testing::meta::sign;
use support::receiver::{Receiver, Reply};
use support::redis::RedisServer;
use support::{http_client, start_dispatcher};

/// Statuses the document lists that no test here provokes, and why.
const NOT_PROVOKED: &[(&str, &str)] = &[(
    "500",
    "a render crashing inside the dispatcher (not the plugin) has no input that causes it",
)];

/// The document, and what the calls have shown so far.
struct Contract {
    spec: Value,
    /// (path, method) → statuses seen.
    seen: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Contract {
    fn new() -> Self {
        let spec: Value = serde_json::from_str(include_str!("../../docs/openapi.json"))
            .expect("openapi.json is JSON");
        assert_eq!(spec["openapi"], "3.1.0");
        Contract {
            spec,
            seen: BTreeMap::new(),
        }
    }

    /// Checks one answer of operation (`path` as the document writes it,
    /// `method`): its status is listed, its content type is the listed
    /// one, and its body validates against the listed schema.
    fn check(&mut self, path: &str, method: &str, status: u16, content_type: &str, body: &[u8]) {
        let what = format!("{} {path} → {status}", method.to_uppercase());
        let operation = &self.spec["paths"][path][method];
        assert!(
            operation.is_object(),
            "{what}: the document has no such operation"
        );
        let code = status.to_string();
        let mut response = &operation["responses"][&code];
        assert!(
            response.is_object(),
            "{what}: status not in the document; body: {}",
            String::from_utf8_lossy(body)
        );
        let mut pointer = format!(
            "/paths/{}/{method}/responses/{code}",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(target) = response["$ref"].as_str() {
            pointer = target.trim_start_matches('#').to_string();
            response = self
                .spec
                .pointer(&pointer)
                .expect("a $ref the document resolves");
        }
        let content = response["content"].as_object().expect("content");
        let (media, declared) = content
            .iter()
            .find(|(media, _)| content_type.starts_with(media.as_str()))
            .unwrap_or_else(|| panic!("{what}: content type {content_type:?} not listed"));
        if media == "application/json" {
            let instance: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
                panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(body))
            });
            assert!(declared["schema"].is_object(), "{what}: no schema");
            // The whole document is the root, so `#/components/...` refs
            // resolve; its own keywords mean nothing to JSON Schema.
            let mut root = self.spec.clone();
            // A fragment is a URI part: `{bot}` must be percent-encoded.
            let fragment = format!("{pointer}/content/{}/schema", media.replace('/', "~1"))
                .replace('{', "%7B")
                .replace('}', "%7D");
            root["$ref"] = json!(format!("#{fragment}"));
            let validator = jsonschema::draft202012::new(&root)
                .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{what}: {errors:#?}\nbody: {instance:#}");
        }
        self.seen
            .entry((path.to_string(), method.to_string()))
            .or_default()
            .insert(code);
    }

    /// Every operation answered with a success, every listed status seen.
    fn assert_covered(&self) {
        let mut missing = Vec::new();
        let mut listed = BTreeSet::new();
        let paths = self.spec["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("path item") {
                let seen = self.seen.get(&(path.clone(), method.clone()));
                let codes = operation["responses"].as_object().expect("responses");
                for code in codes.keys() {
                    listed.insert(code.clone());
                    if code.starts_with('2') && !seen.is_some_and(|s| s.contains(code)) {
                        missing.push(format!("{method} {path} → {code} (a success)"));
                    }
                }
            }
        }
        let all_seen: BTreeSet<&String> = self.seen.values().flatten().collect();
        for code in &listed {
            let exempt = NOT_PROVOKED.iter().any(|(c, _)| c == code);
            if !exempt && !all_seen.contains(code) {
                missing.push(format!("status {code} listed but never seen"));
            }
        }
        assert!(missing.is_empty(), "not covered: {missing:#?}");
    }
}

/// One answer: status, content type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON")
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the dispatcher answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.bytes().await.expect("body").to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// Headers in time, the body never: the raw answer over a socket.
fn slow_body(addr: SocketAddr, path: &str, token: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\""
    )
    .expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: body.as_bytes().to_vec(),
    }
}

fn event(id: &str, bot: &str, status: &str) -> Value {
    json!({"id": id, "bot_id": bot, "message_id": "wamid.OA", "status": status,
           "timestamp": 1_777_000_000u64, "recipient": "593991234567", "final": false})
}

fn meta_body(phone: &str, wamid: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
         "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone},
         "statuses": [{"id": wamid, "status": "delivered", "timestamp": "1777000000",
                       "recipient_id": "593991234567"}]}}]}]})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_a_running_dispatcher_matches_the_openapi_document() {
    let redis = RedisServer::start();
    let ok = Receiver::with(|_, _| Reply::answering(200, "thanks")).await;
    let busy = Receiver::with(|_, _| Reply::answering(503, "busy")).await;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
ingest_tokens = ["ingest"]
admin_tokens = ["admin"]
metrics_tokens = ["scrape"]
max_body_bytes = 4096
body_read_timeout = "1s"
[queue]
backend = "redis"
url = "{redis}"
prefix = "openapi"
[delivery]
timeout = "2s"
retry_schedule = ["1h"]
allow_private_networks = true
[meta]
verify_token = "verify"
app_secrets = ["shared-app"]
[[bots]]
id = "acme"
phone_number_ids = ["1000000001"]
admin_tokens = ["acme-admin"]
  [[bots.webhooks]]
  name = "ok"
  url = "{ok}"
  events = ["all"]
  plugin = "jelou"
  auth = {{ type = "bearer", token = "partner-secret" }}
  [[bots.webhooks]]
  name = "busy"
  url = "{busy}"
  events = ["read"]
  plugin = "jelou"
[[bots]]
id = "paced"
phone_number_ids = ["1000000002"]
meta_app_secrets = ["paced-app"]
ingest_rate_limit = "1/m"
"#,
        redis = redis.url(),
        ok = ok.url(),
        busy = busy.url(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_dispatcher(&config, dir.path()).await;
    let addr = running.addr();
    let client = http_client();
    let url = |path: &str| format!("http://{addr}{path}");
    let mut contract = Contract::new();
    macro_rules! check {
        ($path:expr, $method:expr, $answer:expr) => {{
            let answer: Answer = $answer;
            contract.check(
                $path,
                $method,
                answer.status,
                &answer.content_type,
                &answer.body,
            );
            answer
        }};
    }

    // The document served is the one in the repo.
    let served = check!(
        "/openapi.json",
        "get",
        send(client.get(url("/openapi.json"))).await
    );
    assert_eq!(served.json(), contract.spec);

    // Ingest: a success and every way to be refused.
    let events = "/v1/events";
    let post =
        |body: Value, token: &'static str| client.post(url(events)).bearer_auth(token).json(&body);
    let a = check!(
        events,
        "post",
        send(post(
            json!([event("e1", "acme", "sent"), event("e2", "acme", "read")]),
            "ingest"
        ))
        .await
    );
    assert_eq!(a.status, 202);
    for (body, token, want) in [
        (json!({"id": "bad"}), "ingest", 400),
        (event("e3", "acme", "read"), "wrong", 401),
        (event("e4", "ghost", "read"), "ingest", 422),
        (event("p1", "paced", "read"), "ingest", 202),
        (event("p2", "paced", "read"), "ingest", 429),
    ] {
        let got = check!(events, "post", send(post(body, token)).await);
        assert_eq!(got.status, want, "{}", String::from_utf8_lossy(&got.body));
    }
    let not_json = check!(
        events,
        "post",
        send(client.post(url(events)).bearer_auth("ingest").body("{}")).await
    );
    assert_eq!(not_json.status, 415);
    let too_big = check!(
        events,
        "post",
        send(
            client
                .post(url(events))
                .bearer_auth("ingest")
                .header("content-type", "application/json")
                .body(vec![b' '; 8192])
        )
        .await
    );
    assert_eq!(too_big.status, 413);
    let slow = check!(events, "post", slow_body(addr, events, "ingest"));
    assert_eq!(slow.status, 408);

    // Meta: the handshake and signed bodies.
    let meta = "/v1/meta/webhook";
    let verify = |query: &str| client.get(url(&format!("{meta}?{query}")));
    let shake = check!(
        meta,
        "get",
        send(verify(
            "hub.mode=subscribe&hub.verify_token=verify&hub.challenge=42"
        ))
        .await
    );
    assert_eq!((shake.status, &shake.body[..]), (200, &b"42"[..]));
    for (query, want) in [
        (
            "hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
            403,
        ),
        ("hub.mode=subscribe&hub.verify_token=verify", 400),
    ] {
        assert_eq!(check!(meta, "get", send(verify(query)).await).status, want);
    }
    let signed = |secret: &str, body: Vec<u8>| {
        client
            .post(url(meta))
            .header("X-Hub-Signature-256", sign(secret.as_bytes(), &body))
            .header("content-type", "application/json")
            .body(body)
    };
    for (secret, body, want) in [
        ("shared-app", meta_body("1000000001", "wamid.M1"), 200),
        ("stranger", meta_body("1000000001", "wamid.M2"), 401),
        ("paced-app", meta_body("1000000001", "wamid.M3"), 403),
        ("shared-app", b"{\"object\":\"page\"}".to_vec(), 400),
    ] {
        let got = check!(meta, "post", send(signed(secret, body)).await);
        assert_eq!(got.status, want, "{}", String::from_utf8_lossy(&got.body));
    }

    // Operations.
    check!("/healthz", "get", send(client.get(url("/healthz"))).await);
    assert_eq!(
        check!("/readyz", "get", send(client.get(url("/readyz"))).await).status,
        200
    );
    let metrics = |token: Option<&str>| {
        let request = client.get(url("/metrics"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    assert_eq!(
        check!("/metrics", "get", send(metrics(Some("scrape"))).await).status,
        200
    );
    assert_eq!(
        check!("/metrics", "get", send(metrics(None)).await).status,
        401
    );

    // The admin routes, once the deliveries have had their first attempt:
    // e1 and e2 to `ok` delivered, e2 to `busy` waiting an hour.
    ok.wait_for(3, Duration::from_secs(20)).await;
    busy.wait_for(1, Duration::from_secs(20)).await;
    let admin = |method: &str, path: &str, token: &str| {
        let request = match method {
            "get" => client.get(url(path)),
            _ => client.post(url(path)),
        };
        request.bearer_auth(token.to_string())
    };
    let log = "/v1/bots/{bot}/deliveries";
    let mut all = Value::Null;
    for _ in 0..500 {
        let answer = check!(
            log,
            "get",
            send(admin("get", "/v1/bots/acme/deliveries", "admin")).await
        );
        all = answer.json();
        let attempted = all["deliveries"].as_array().is_some_and(|d| {
            d.len() == 4
                && d.iter()
                    .all(|d| d["attempts"].as_array().is_some_and(|a| !a.is_empty()))
        });
        if attempted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let page = check!(
        log,
        "get",
        send(admin(
            "get",
            "/v1/bots/acme/deliveries?limit=2",
            "acme-admin"
        ))
        .await
    )
    .json();
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    check!(
        log,
        "get",
        send(admin(
            "get",
            &format!("/v1/bots/acme/deliveries?limit=2&cursor={cursor}"),
            "admin"
        ))
        .await
    );
    for (query, token, want) in [
        (
            "?message_id=wamid.OA&webhook=busy&status=read&outcome=pending&since=0&until=99999999999999",
            "admin",
            200,
        ),
        ("?limit=0", "admin", 400),
        ("?status=seen", "admin", 400),
        ("", "globex-or-nobody", 401),
    ] {
        let got = check!(
            log,
            "get",
            send(admin(
                "get",
                &format!("/v1/bots/acme/deliveries{query}"),
                token
            ))
            .await
        );
        assert_eq!(got.status, want);
    }
    let forbidden = check!(
        log,
        "get",
        send(admin("get", "/v1/bots/paced/deliveries", "acme-admin")).await
    );
    assert_eq!(forbidden.status, 403);

    let find = |webhook: &str, outcome: &str| {
        all["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["webhook"] == webhook && d["outcome"] == outcome)
            .and_then(|d| d["id"].as_str())
            .unwrap_or_else(|| panic!("a {outcome} delivery to {webhook}: {all}"))
            .to_string()
    };
    let (delivered, pending) = (find("ok", "delivered"), find("busy", "pending"));
    let one = "/v1/bots/{bot}/deliveries/{id}";
    let shown = check!(
        one,
        "get",
        send(admin(
            "get",
            &format!("/v1/bots/acme/deliveries/{delivered}"),
            "acme-admin"
        ))
        .await
    );
    assert!(!String::from_utf8_lossy(&shown.body).contains("partner-secret"));
    let unknown = check!(
        one,
        "get",
        send(admin("get", "/v1/bots/acme/deliveries/msg_none", "admin")).await
    );
    assert_eq!(unknown.status, 404);
    let resend = "/v1/bots/{bot}/deliveries/{id}/resend";
    let path = |id: &str| format!("/v1/bots/acme/deliveries/{id}/resend");
    assert_eq!(
        check!(
            resend,
            "post",
            send(admin("post", &path(&delivered), "acme-admin")).await
        )
        .status,
        202
    );
    assert_eq!(
        check!(
            resend,
            "post",
            send(admin("post", &path(&pending), "admin")).await
        )
        .status,
        409
    );
    assert_eq!(
        check!(
            resend,
            "post",
            send(admin("post", &path("msg_none"), "admin")).await
        )
        .status,
        404
    );

    let dead = "/v1/bots/{bot}/dead-letters";
    assert_eq!(
        check!(
            dead,
            "get",
            send(admin("get", "/v1/bots/acme/dead-letters?limit=5", "admin")).await
        )
        .status,
        200
    );
    assert_eq!(
        check!(
            dead,
            "get",
            send(admin("get", "/v1/bots/acme/dead-letters?limit=x", "admin")).await
        )
        .status,
        400
    );
    let replay = "/v1/bots/{bot}/dead-letters/replay";
    assert_eq!(
        check!(
            replay,
            "post",
            send(admin(
                "post",
                "/v1/bots/acme/dead-letters/replay",
                "acme-admin"
            ))
            .await
        )
        .status,
        202
    );
    assert_eq!(
        check!(
            replay,
            "post",
            send(admin("post", "/v1/bots/acme/dead-letters/replay", "nobody")).await
        )
        .status,
        401
    );

    // The console and its routes.
    let page = check!("/console", "get", send(client.get(url("/console"))).await);
    assert!(String::from_utf8_lossy(&page.body).contains("/console/console.js"));
    let bots = check!(
        "/v1/bots",
        "get",
        send(admin("get", "/v1/bots", "admin")).await
    )
    .json();
    assert_eq!(bots["bots"].as_array().map(Vec::len), Some(2), "{bots}");
    let own = check!(
        "/v1/bots",
        "get",
        send(admin("get", "/v1/bots", "acme-admin")).await
    )
    .json();
    assert_eq!(own["bots"].as_array().map(Vec::len), Some(1), "{own}");
    assert!(
        own["queue"].is_null(),
        "a tenant does not see the shared queue"
    );
    let single = check!(
        "/v1/bots",
        "get",
        send(admin("get", "/v1/bots?bot=acme", "admin")).await
    )
    .json();
    assert_eq!(single["bots"].as_array().map(Vec::len), Some(1), "{single}");
    assert!(
        single["bots"][0]["webhooks"][0]
            .get("held_until_ms")
            .is_some(),
        "{single}"
    );
    assert_eq!(
        check!(
            "/v1/bots",
            "get",
            send(admin("get", "/v1/bots", "nobody")).await
        )
        .status,
        401
    );
    let config = check!(
        "/v1/config",
        "get",
        send(admin("get", "/v1/config", "admin")).await
    )
    .json();
    assert!(config["reloads"].is_array(), "{config}");
    assert!(
        !config["config"]
            .as_str()
            .unwrap_or("")
            .contains("partner-secret")
    );
    assert_eq!(
        check!(
            "/v1/config",
            "get",
            send(admin("get", "/v1/config", "nobody")).await
        )
        .status,
        401
    );
    let preview = "/v1/bots/{bot}/webhooks/{webhook}/preview";
    let render = |webhook: &str, token: &str, body: Vec<u8>| {
        admin(
            "post",
            &format!("/v1/bots/acme/webhooks/{webhook}/preview"),
            token,
        )
        .header("content-type", "application/json")
        .body(body)
    };
    let sent = |status: &str| event("pv", "acme", status).to_string().into_bytes();
    let rendered = check!(
        preview,
        "post",
        send(render("ok", "acme-admin", sent("read"))).await
    )
    .json();
    assert_eq!(rendered["outcome"], "rendered", "{rendered}");
    let skipped = check!(
        preview,
        "post",
        send(render("busy", "admin", sent("sent"))).await
    )
    .json();
    assert_eq!(skipped["outcome"], "not_subscribed", "{skipped}");
    for (webhook, token, body, want) in [
        ("ok", "admin", b"{".to_vec(), 400),
        ("ok", "nobody", sent("read"), 401),
        ("nope", "admin", sent("read"), 404),
        ("ok", "admin", vec![b' '; 8192], 413),
    ] {
        let got = check!(preview, "post", send(render(webhook, token, body)).await);
        assert_eq!(got.status, want, "{}", String::from_utf8_lossy(&got.body));
    }
    let other = admin("post", "/v1/bots/paced/webhooks/x/preview", "acme-admin").body(sent("read"));
    assert_eq!(check!(preview, "post", send(other).await).status, 403);

    // Redis gone: every route that needs the queue says 503, Retry-After.
    let mut redis = redis;
    redis.kill();
    let down = |answer: &Answer| {
        assert_eq!(
            answer.status,
            503,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    };
    down(&check!(
        "/readyz",
        "get",
        send(client.get(url("/readyz"))).await
    ));
    down(&check!(
        events,
        "post",
        send(post(event("e9", "acme", "read"), "ingest")).await
    ));
    down(&check!(
        meta,
        "post",
        send(signed("shared-app", meta_body("1000000001", "wamid.M9"))).await
    ));
    down(&check!(
        log,
        "get",
        send(admin("get", "/v1/bots/acme/deliveries", "admin")).await
    ));
    down(&check!(
        one,
        "get",
        send(admin(
            "get",
            &format!("/v1/bots/acme/deliveries/{delivered}"),
            "admin"
        ))
        .await
    ));
    down(&check!(
        resend,
        "post",
        send(admin("post", &path(&delivered), "admin")).await
    ));
    down(&check!(
        dead,
        "get",
        send(admin("get", "/v1/bots/acme/dead-letters", "admin")).await
    ));
    down(&check!(
        replay,
        "post",
        send(admin("post", "/v1/bots/acme/dead-letters/replay", "admin")).await
    ));

    down(&check!(
        "/v1/bots",
        "get",
        send(admin("get", "/v1/bots?bot=acme", "admin")).await
    ));

    contract.assert_covered();
    running.shutdown().await;
}
