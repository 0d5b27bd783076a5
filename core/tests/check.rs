//! `statushook check` run as a separate process, the way an operator runs it
//! before deploying a config.

mod support;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `statushook check --config <dir>/config.toml` with a private plugin
/// cache and `env` as the only config variables.
fn check(dir: &Path, env: &[(&str, &str)]) -> Output {
    let cache = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_statushook"))
        .args(["check", "--config"])
        .arg(dir.join("config.toml"))
        .env("STATUSHOOK_CACHE_DIR", cache.path())
        .envs(env.iter().copied())
        .output()
        .expect("run statushook")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A folder holding `config.toml` with `config`, and `plugins/crm.wasm` (a
/// real plugin component) and `plugins/notes.wasm` (a text file).
fn folder(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("plugins")).expect("plugins folder");
    std::fs::copy(
        support::guest("crm_plugin"),
        dir.path().join("plugins/crm.wasm"),
    )
    .expect("copy the example plugin");
    std::fs::write(
        dir.path().join("plugins/notes.wasm"),
        "not a plugin, just notes\n",
    )
    .expect("write a fake plugin");
    std::fs::write(dir.path().join("config.toml"), config).expect("write config");
    dir
}

const GOOD: &str = r#"[server]
listen = "127.0.0.1:8080"
ingest_tokens = ["${CHECK_TEST_INGEST_TOKEN}"]

[[bots]]
id = "acme-support"
phone_number_ids = ["1099887766"]

  [[bots.webhooks]]
  name = "crm"
  url = "https://crm.example.com/whatsapp/status"
  events = ["read", "failed", "replied"]
  plugin = "jelou"
  auth = { type = "bearer", token = "demo-token" }

  [[bots.webhooks]]
  name = "custom"
  url = "https://custom.example.com/hook"
  events = ["all"]
  plugin = "plugins/crm.wasm"
  sign = { type = "hmac", secret = "demo-secret", header = "X-Signature", encoding = "hex", prefix = "sha256=" }

[[bots]]
id = "globex"

  [[bots.webhooks]]
  name = "engage"
  url = "https://engage.example.com/hook"
  events = ["delivered"]
  plugin = "engage"

  [[bots.webhooks]]
  name = "crm-again"
  url = "https://crm.example.com/globex"
  events = ["read"]
  plugin = "jelou"
"#;

#[test]
fn a_valid_config_passes_with_a_summary() {
    let dir = folder(GOOD);
    let out = check(dir.path(), &[("CHECK_TEST_INGEST_TOKEN", "t0ken")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: ok (2 bots, 4 webhooks, 3 plugins)\n",
            dir.path().join("config.toml").display()
        )
    );
}

#[test]
fn a_missing_environment_variable_fails_the_check() {
    let dir = folder(GOOD);
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            ":3: server.ingest_tokens[0]: environment variable CHECK_TEST_INGEST_TOKEN is not set"
        ),
        "{stderr}"
    );
}

#[test]
fn a_typo_a_bad_url_and_a_broken_plugin_are_all_reported_with_their_lines() {
    let config = r#"[[bots]]
id = "acme-support"

  [[bots.webhooks]]
  name = "crm"
  url = "https://crm.example.com/whatsapp/status"
  evnts = ["read"]
  events = ["read"]
  plugin = "jelou"

  [[bots.webhooks]]
  name = "broken"
  url = "htps//crm.example.com"
  events = ["all"]
  plugin = "plugins/notes.wasm"
"#;
    let dir = folder(config);
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let file = dir.path().join("config.toml").display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "statushook: {file}:7: bots[0].webhooks[0].evnts: unknown key"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("statushook: {file}:13: bots[0].webhooks[1].url: ")),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "statushook: {file}:15: bots[0].webhooks[1].plugin: "
        )),
        "{stderr}"
    );
    assert!(lines[2].contains("not a WebAssembly component"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_a_failure_not_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read config file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_empty_config_file_says_so() {
    let dir = folder("\n");
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the config file is empty"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_statushook"))
        .args(["check", "--confg", "x.toml"])
        .output()
        .expect("run statushook");
    assert_eq!(out.status.code(), Some(2));
}

/// A folder whose `config.toml` includes `bots.d/*.toml`, with `files` in
/// `bots.d/`.
fn tenants(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = folder("include = [\"bots.d/*.toml\"]\n\n[[bots]]\nid = \"host-bot\"\n");
    std::fs::create_dir(dir.path().join("bots.d")).expect("bots.d");
    for (name, text) in files {
        std::fs::write(dir.path().join("bots.d").join(name), text).expect("fragment");
    }
    dir
}

fn tenant(bot: &str, plugin: &str) -> String {
    format!(
        "[[bots]]\nid = \"{bot}\"\n\n  [[bots.webhooks]]\n  name = \"crm\"\n  url = \"https://crm.example.com/{bot}\"\n  events = [\"all\"]\n  plugin = \"{plugin}\"\n"
    )
}

fn check_file(dir: &Path, file: &Path, as_path: Option<&Path>) -> Output {
    let cache = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_statushook"));
    command
        .args(["check", "--config"])
        .arg(dir.join("config.toml"))
        .arg("--file")
        .arg(file)
        .env("STATUSHOOK_CACHE_DIR", cache.path());
    if let Some(as_path) = as_path {
        command.arg("--as").arg(as_path);
    }
    command.output().expect("run statushook")
}

#[test]
fn every_included_file_is_checked_and_each_problem_names_its_file_and_line() {
    let dir = tenants(&[
        ("a-first.toml", &tenant("acme", "jelou")),
        ("b-dup.toml", &tenant("acme", "engage")),
        ("c-server.toml", "[server]\nlisten = \"0.0.0.0:1\"\n"),
        ("d-plugin.toml", &tenant("delta", "plugins/notes.wasm")),
        (
            "e-typo.toml",
            &tenant("echo", "wpp").replace("events", "evnts"),
        ),
    ]);
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let bots = dir.path().canonicalize().expect("dir").join("bots.d");
    let expect = [
        format!(
            "{}:2: bots[0].id: duplicate bot id \"acme\": {}:2 already defines it",
            bots.join("b-dup.toml").display(),
            bots.join("a-first.toml").display()
        ),
        format!(
            "{}:1: server: an included file holds [[bots]] only",
            bots.join("c-server.toml").display()
        ),
        format!(
            "{}:8: bots[0].webhooks[0].plugin: ",
            bots.join("d-plugin.toml").display()
        ),
        format!(
            "{}:7: bots[0].webhooks[0].evnts: unknown key",
            bots.join("e-typo.toml").display()
        ),
    ];
    for line in &expect {
        assert!(
            stderr.contains(line.as_str()),
            "missing `{line}` in:\n{stderr}"
        );
    }

    // Fixed, the same folder passes and says how many files it read.
    for name in [
        "b-dup.toml",
        "c-server.toml",
        "d-plugin.toml",
        "e-typo.toml",
    ] {
        std::fs::remove_file(dir.path().join("bots.d").join(name)).expect("remove");
    }
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with(": ok (2 bots, 1 webhook, 1 plugin, 1 included file)\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_file_checks_one_fragment_against_the_rest() {
    let dir = tenants(&[("acme.toml", &tenant("acme", "jelou"))]);
    let bots = dir.path().join("bots.d");

    // A new tenant that takes an existing bot id: refused, naming both.
    let candidate = bots.join(".globex.toml.new");
    std::fs::write(&candidate, tenant("acme", "wpp")).expect("candidate");
    let out = check_file(dir.path(), &candidate, Some(&bots.join("globex.toml")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(".globex.toml.new:2: bots[0].id: duplicate bot id \"acme\"")
            && stderr.contains("acme.toml:2 already defines it"),
        "{stderr}"
    );

    // The same text as acme.toml's next version replaces it: fine.
    let out = check_file(dir.path(), &candidate, Some(&bots.join("acme.toml")));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(": ok (1 bot, 1 webhook)"),
        "{}",
        text(&out.stdout)
    );

    // Where no include pattern looks, it would never load: said so.
    let out = check_file(dir.path(), &candidate, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not matched by any include pattern"),
        "{}",
        text(&out.stderr)
    );

    // Its own problems and its plugins' are reported with its lines.
    std::fs::write(&candidate, tenant("globex", "plugins/notes.wasm")).expect("candidate");
    let out = check_file(dir.path(), &candidate, Some(&bots.join("globex.toml")));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(".globex.toml.new:8: bots[0].webhooks[0].plugin: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn urls_every_send_would_refuse_are_warned_about_without_failing() {
    let config = |delivery: &str| {
        format!(
            "{delivery}\n[[bots]]\nid = \"acme\"\n\n  [[bots.webhooks]]\n  name = \"local\"\n  url = \"http://127.0.0.1:9000/hook\"\n  events = [\"all\"]\n  plugin = \"jelou\"\n\n  [[bots.webhooks]]\n  name = \"named\"\n  url = \"http://localhost:9000/hook\"\n  events = [\"all\"]\n  plugin = \"jelou\"\n"
        )
    };
    let dir = folder(&config(""));
    let out = check(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    for webhook in ["\"local\"", "\"named\""] {
        assert!(
            stderr.lines().any(|l| l.contains("warning")
                && l.contains(webhook)
                && l.contains("will be refused")),
            "{webhook} not warned about: {stderr}"
        );
    }
    let dir = folder(&config("[delivery]\nallow_private_networks = true\n"));
    let out = check(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}
