//! The console in a real browser: a dispatcher with two tenants and real
//! receivers, driven by Playwright (PyPI) in Debian's headless Chromium by
//! `tests/console/browser.py`. The script signs in as a tenant, finds a
//! delivery by `message_id` and reads its attempts, replays a dead letter,
//! looks for the other tenant everywhere, runs the playground, and tries a
//! wrong token. Screenshots of every page go to
//! `target/console-screenshots/` (a CI artifact, not committed).

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::receiver::{Receiver, Reply};
use support::{http_client, post_event, start_dispatcher};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Fails, saying what to install, when the browser or Playwright is missing.
fn require_browser() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "the console tests need Debian's Chromium at {CHROMIUM}: apt-get install chromium"
    );
    let playwright = std::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .status();
    assert!(
        playwright.is_ok_and(|s| s.success()),
        "the console tests need Playwright for Python: pip install playwright==1.49.1 \
         (the browser is Debian's chromium; `playwright install` is not needed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    require_browser();
    let crm = Receiver::with(|_, n| {
        if n < 2 {
            Reply::answering(503, "busy, try later")
        } else {
            Reply::answering(200, "{\"ok\":true}")
        }
    })
    .await;
    let gone = Receiver::with(|_, _| Reply::answering(410, "no such customer")).await;
    let other = Receiver::with(|_, _| Reply::answering(200, "ok")).await;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
ingest_tokens = ["ingest"]
admin_tokens = ["server-admin"]
[queue]
backend = "embedded"
path = "queue"
[delivery]
timeout = "2s"
retry_schedule = ["50ms", "50ms", "50ms"]
allow_private_networks = true
[[bots]]
id = "acme"
admin_tokens = ["acme-admin"]
  [[bots.webhooks]]
  name = "crm"
  url = "{crm}"
  events = ["all"]
  plugin = "jelou"
  auth = {{ type = "bearer", token = "crm-secret-token" }}
  [[bots.webhooks]]
  name = "archive"
  url = "{gone}"
  events = ["read"]
  plugin = "wpp"
[[bots]]
id = "globex"
admin_tokens = ["globex-admin"]
  [[bots.webhooks]]
  name = "globex-hook"
  url = "{other}"
  events = ["all"]
  plugin = "engage"
"#,
        crm = crm.url(),
        gone = gone.url(),
        other = other.url(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start_dispatcher(&config, dir.path()).await;
    let addr = running.addr();
    let client = http_client();
    let event = |id: &str, bot: &str, message: &str| {
        json!({"id": id, "bot_id": bot, "message_id": message, "status": "read",
               "timestamp": 1_777_000_000u64, "recipient": "593991234567", "final": false})
    };
    let events = json!([
        event("c1", "acme", "wamid.CONSOLE"),
        event("g1", "globex", "wamid.GLOBEX")
    ]);
    assert_eq!(post_event(&client, addr, "ingest", &events).await, 202);
    crm.wait_for(3, Duration::from_secs(20)).await;
    gone.wait_for(1, Duration::from_secs(20)).await;
    other.wait_for(1, Duration::from_secs(20)).await;
    // Wait for the log to show every outcome before the browser looks.
    let settled = || {
        let client = client.clone();
        async move {
            let page: Value = client
                .get(format!("http://{addr}/v1/bots/acme/deliveries"))
                .bearer_auth("server-admin")
                .send()
                .await
                .expect("log")
                .json()
                .await
                .expect("JSON");
            page["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["outcome"] != "pending"))
        }
    };
    let mut ready = false;
    for _ in 0..500 {
        if settled().await {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "acme's two deliveries settle");
    // The archive comes back: a replayed dead letter is delivered.
    gone.respond(|_, _| Reply::answering(200, "archived"));

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser.py");
    let shots_for_script = shots.clone();
    // The browser runs in another process; this runtime keeps serving it.
    let run = move || {
        std::process::Command::new("python3")
            .arg(&script)
            .env("CONSOLE_URL", format!("http://{addr}/console"))
            .env("TENANT_TOKEN", "acme-admin")
            .env("TENANT_BOT", "acme")
            .env("OTHER_BOT", "globex")
            .env("MESSAGE_ID", "wamid.CONSOLE")
            .env("SCREENSHOTS", &shots_for_script)
            .env("CHROMIUM", CHROMIUM)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("python3 runs")
    };
    let output = tokio::task::spawn_blocking(run)
        .await
        .expect("browser task");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the browser script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{stdout}");

    // The replay in the browser reached the receiver.
    let replayed = gone.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(
        replayed[1].header("webhook-id"),
        replayed[0].header("webhook-id"),
        "a replay keeps its webhook-id"
    );
    for name in [
        "sign-in-refused",
        "overview",
        "bot-search",
        "delivery",
        "dead-letters-replayed",
        "playground",
        "config",
        "overview-phone",
    ] {
        let shot = shots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
            "screenshot {} was saved",
            shot.display()
        );
    }
    running.shutdown().await;
}
