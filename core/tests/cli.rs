//! The `statushook` command line as interfaces.md specifies it, run as a
//! separate process the way partners and scripts run it.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn statushook(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let cache = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_statushook"))
        .args(args)
        .env("STATUSHOOK_CACHE_DIR", cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run statushook");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("statushook output")
}

fn example(name: &str) -> String {
    format!(
        "{}/../examples/events/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn plugin_test_prints_the_body_on_stdout_and_headers_on_stderr() {
    let out = statushook(
        &[
            "plugin-test",
            "--plugin",
            "jelou",
            "--event",
            &example("read"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is exactly the JSON body");
    assert_eq!(body["status"], "READ");
    assert!(
        text(&out.stderr).contains("Content-Type: application/json"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plugin_test_reads_the_event_from_stdin() {
    let event = std::fs::read(example("failed")).expect("example event");
    let out = statushook(
        &["plugin-test", "--plugin", "connectly", "--event", "-"],
        Some(&event),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON body");
    assert_eq!(body["statusUpdate"]["status"], "delivery_failed");
}

#[test]
fn a_dropped_event_prints_nothing_and_says_dropped() {
    let out = statushook(
        &[
            "plugin-test",
            "--plugin",
            "engage",
            "--event",
            &example("replied"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr).trim(), "dropped");
}

#[test]
fn a_custom_plugin_gets_its_settings() {
    let crm = support::guest("crm_plugin");
    let crm = crm.to_str().expect("utf-8 path");
    let event = example("read");
    let out = statushook(&["plugin-test", "--plugin", crm, "--event", &event], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!out.stdout.is_empty());
    let out = statushook(
        &[
            "plugin-test",
            "--plugin",
            crm,
            "--event",
            &event,
            "--setting",
            "templates=no_such_template",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "filtered out by the templates setting"
    );
    assert!(text(&out.stderr).contains("dropped"));
    // The plugin's own debug line, shown without STATUSHOOK_LOG.
    assert!(
        text(&out.stderr).contains("event evt-example-read dropped: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_failing_plugin_exits_1_with_the_reason() {
    let hostile = support::guest("hostile");
    let args = [
        "plugin-test",
        "--plugin",
        hostile.to_str().expect("utf-8"),
        "--event",
        &example("read"),
        "--setting",
        "mode=trap",
    ];
    let out = statushook(&args, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("deliberate trap"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_arguments_and_invalid_events_exit_2() {
    let out = statushook(
        &[
            "plugin-test",
            "--plugin",
            "jelou",
            "--event",
            "/no/such/file.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = statushook(
        &["plugin-test", "--plugin", "jelou", "--event", "-"],
        Some(b"{\"id\": \"x\"}"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bot_id: is required"),
        "{}",
        text(&out.stderr)
    );
    let out = statushook(
        &[
            "plugin-test",
            "--plugin",
            "nope",
            "--event",
            &example("read"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown plugin"),
        "{}",
        text(&out.stderr)
    );
    let out = statushook(
        &[
            "plugin-test",
            "--plugin",
            "jelou",
            "--event",
            &example("read"),
            "--setting",
            "novalue",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let out = statushook(&["plugin-test", "--event", &example("read")], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn plugin_test_with_a_config_prints_the_exact_request_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = "127.0.0.1:8080"
[queue]
backend = "embedded"
path = "queue"
[[bots]]
id = "acme"
channel_name = "Acme Support"
  [[bots.webhooks]]
  name = "crm"
  url = "https://crm.example.com/hooks/status"
  events = ["read", "failed"]
  plugin = "jelou"
  auth = { type = "bearer", token = "the-crm-secret" }
  sign = { type = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
"#,
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let args = |webhook: &'static str, event: String| {
        vec![
            "plugin-test".to_string(),
            "--config".into(),
            config.to_string(),
            "--bot".into(),
            "acme".into(),
            "--webhook".into(),
            webhook.into(),
            "--event".into(),
            event,
        ]
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        statushook(&args, None)
    };

    let out = run(args("crm", example("read")));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stderr);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines[0], "POST https://crm.example.com/hooks/status",
        "{shown}"
    );
    for header in [
        "Content-Type: application/json",
        "User-Agent: statushook/",
        "webhook-id: msg_",
        "webhook-timestamp: ",
        "webhook-signature: v1,****",
        "Authorization: Bearer ****",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(header)),
            "{header:?} in {shown}"
        );
    }
    assert!(
        !shown.contains("the-crm-secret") && !shown.contains("whsec_"),
        "{shown}"
    );
    // The body is the plugin's bytes, as the plugin alone makes them.
    let alone = statushook(
        &[
            "plugin-test",
            "--plugin",
            "jelou",
            "--event",
            &example("read"),
        ],
        None,
    );
    assert_eq!(text(&out.stdout), text(&alone.stdout));

    // A status the webhook does not take, a webhook or bot not there.
    let skipped = run(args("crm", example("sent")));
    assert_eq!(skipped.status.code(), Some(0));
    assert!(skipped.stdout.is_empty());
    assert!(
        text(&skipped.stderr).contains("does not go to it"),
        "{}",
        text(&skipped.stderr)
    );
    let unknown = run(args("bi", example("read")));
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("has no webhook \"bi\" (it has: crm)"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn plugin_test_cases_report_each_mismatch_with_a_diff() {
    let read = std::fs::read_to_string(example("read")).expect("event");
    let replied = std::fs::read_to_string(example("replied")).expect("event");
    let body = statushook(
        &[
            "plugin-test",
            "--plugin",
            "jelou",
            "--event",
            &example("read"),
        ],
        None,
    );
    let expected: serde_json::Value = serde_json::from_slice(&body.stdout).expect("JSON body");
    let mut wrong = expected.clone();
    wrong["status"] = serde_json::json!("DELIVERED");
    let event = |text: &str| serde_json::from_str::<serde_json::Value>(text).expect("event");
    let cases = serde_json::json!([
        {"name": "read as jelou wants it", "event": event(&read), "expect": expected},
        {"name": "a wrong expectation", "event": event(&read), "expect": wrong},
        {"name": "engage drops replies", "event": event(&replied), "expect": null},
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cases.json");
    std::fs::write(&file, cases.to_string()).expect("write cases");
    let file = file.to_str().expect("utf-8 path");

    let out = statushook(&["plugin-test", "--plugin", "jelou", "--cases", file], None);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("ok   read as jelou wants it"), "{report}");
    assert!(report.contains("FAIL a wrong expectation"), "{report}");
    assert!(
        report.contains("  - ") && report.contains("\"DELIVERED\""),
        "{report}"
    );
    assert!(
        report.contains("  + ") && report.contains("\"READ\""),
        "{report}"
    );
    // jelou sends replies: the null expectation is a mismatch too.
    assert!(report.contains("FAIL engage drops replies"), "{report}");
    assert!(report.contains("1 of 3 cases as expected"), "{report}");

    let engage = statushook(
        &["plugin-test", "--plugin", "engage", "--cases", file],
        None,
    );
    assert!(
        text(&engage.stdout).contains("ok   engage drops replies"),
        "{}",
        text(&engage.stdout)
    );
    let broken = statushook(
        &[
            "plugin-test",
            "--plugin",
            "jelou",
            "--cases",
            &example("read"),
        ],
        None,
    );
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        text(&broken.stderr).contains("expected a JSON array"),
        "{}",
        text(&broken.stderr)
    );
}
