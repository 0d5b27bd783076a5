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
