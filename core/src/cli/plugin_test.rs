//! `statushook plugin-test`: run a plugin on an event, as a partner would
//! while writing one, without a dispatcher.
//!
//! Three ways:
//! - `--plugin P --event FILE`: the body on stdout (exactly its bytes), the
//!   plugin's content type and headers on stderr;
//! - `--config FILE --bot B --webhook W --event FILE`: the exact request
//!   that webhook's receiver would get, rendered the way `run` renders
//!   (the same routing table, channel name and host-owned headers): method,
//!   URL and every header on stderr with secrets masked, the body on stdout;
//! - `--plugin P --cases FILE`: a table of events and expected bodies, a
//!   diff for each mismatch, exit 1 on any.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use crate::event::{StatusEvent, parse_event};
use crate::plugin::{HostOptions, LoadError, Plugin, PluginHost, Settings};
use crate::route::Preview;

use super::{EXIT_FAILURE, EXIT_USAGE};

/// Arguments of `statushook plugin-test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A built-in plugin (jelou, engage, connectly, wpp) or a path to a .wasm
    /// component.
    #[arg(long, value_name = "NAME_OR_PATH", required_unless_present = "config")]
    plugin: Option<String>,
    /// A canonical event as JSON, or `-` to read it from stdin.
    #[arg(long, value_name = "FILE", required_unless_present = "cases")]
    event: Option<PathBuf>,
    /// A webhook setting handed to the plugin; repeat for several.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Render for a configured webhook instead: its config file...
    #[arg(long, value_name = "FILE", requires_all = ["bot", "webhook"], conflicts_with_all = ["plugin", "cases"])]
    config: Option<PathBuf>,
    /// ...the bot (its `id`)...
    #[arg(long, value_name = "ID", requires = "config")]
    bot: Option<String>,
    /// ...and the webhook (its `name`).
    #[arg(long, value_name = "NAME", requires = "config")]
    webhook: Option<String>,
    /// A JSON array of cases, `{"name", "event", "settings"?, "expect"}`
    /// (`expect`: the body as JSON, or `null` for dropped), run against
    /// `--plugin`.
    #[arg(long, value_name = "FILE", conflicts_with = "event")]
    cases: Option<PathBuf>,
}

fn parse_setting(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {arg:?}")),
    }
}

/// Runs the command: exit 0 rendered or dropped (every case as expected), 1
/// the plugin failed (or a case did not match), 2 bad arguments or an
/// invalid event.
pub fn run(args: Args) -> ExitCode {
    if let (Some(config), Some(bot), Some(webhook)) = (&args.config, &args.bot, &args.webhook) {
        let event = match args.event.as_deref().map(read_event) {
            Some(Ok(event)) => event,
            Some(Err(message)) => return fail(EXIT_USAGE, &message),
            None => return fail(EXIT_USAGE, "--config needs --event"),
        };
        return for_webhook(config, bot, webhook, event);
    }
    let Some(name) = &args.plugin else {
        return fail(
            EXIT_USAGE,
            "give --plugin, or --config with --bot and --webhook",
        );
    };
    let plugin = match load_plugin(name, HostOptions::default()) {
        Ok(plugin) => plugin,
        Err(code) => return code,
    };
    let settings: Settings = args.settings.into_iter().collect();
    if let Some(cases) = &args.cases {
        return run_cases(&plugin, cases, &settings);
    }
    let event = match args.event.as_deref().map(read_event) {
        Some(Ok(event)) => event,
        Some(Err(message)) => return fail(EXIT_USAGE, &message),
        None => return fail(EXIT_USAGE, "give --event or --cases"),
    };
    match plugin.render("plugin-test", &event, &settings) {
        Ok(Some(outgoing)) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "Content-Type: {}", outgoing.content_type);
            for (name, value) in &outgoing.headers {
                let _ = writeln!(stderr, "{name}: {value}");
            }
            write_body(&outgoing.body)
        }
        Ok(None) => {
            eprintln!("dropped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILURE, &e.to_string()),
    }
}

fn load_plugin(name: &str, options: HostOptions) -> Result<Plugin, ExitCode> {
    let host = PluginHost::new(options).map_err(|e| fail(EXIT_FAILURE, &e.to_string()))?;
    match host.load(name, Path::new(".")) {
        Ok(plugin) => Ok(plugin),
        Err(e @ (LoadError::UnknownBuiltin(_) | LoadError::Read { .. })) => {
            Err(fail(EXIT_USAGE, &e.to_string()))
        }
        Err(e) => Err(fail(EXIT_FAILURE, &e.to_string())),
    }
}

fn write_body(body: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(body).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_FAILURE),
    }
}

/// `--config --bot --webhook`: the config read and composed as `run` does
/// (included files too), the event rendered through the routing table.
fn for_webhook(path: &Path, bot: &str, webhook: &str, event: StatusEvent) -> ExitCode {
    let config = match crate::config::load(path) {
        Ok(config) => config,
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };
    let host = match PluginHost::new(super::check::host_options(Some(&config))) {
        Ok(host) => host,
        Err(e) => return fail(EXIT_FAILURE, &e.to_string()),
    };
    let mut fragments = crate::config::Fragments::new();
    let composed = match crate::reload::compose(
        config,
        &mut fragments,
        crate::config::Reread::All,
        &host,
        None,
    ) {
        Ok(composed) => composed,
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };
    let snapshot = composed.snapshot;
    let Some(hook) = snapshot.webhook(bot, webhook) else {
        let known = snapshot.bot(bot).map(|b| {
            b.webhooks
                .iter()
                .map(|w| w.config.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let message = match known {
            Some(names) => format!("bot {bot:?} has no webhook {webhook:?} (it has: {names})"),
            None => format!(
                "no bot {bot:?} in {} or the files it includes",
                path.display()
            ),
        };
        return fail(EXIT_USAGE, &message);
    };
    match crate::route::preview(&snapshot, bot, hook, event) {
        Preview::Rendered(delivery) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "POST {}", hook.config.url);
            for (name, value) in crate::deliver::attempt::shown_headers(&hook.config, &delivery) {
                let _ = writeln!(stderr, "{name}: {value}");
            }
            let _ = writeln!(stderr);
            write_body(&delivery.body)
        }
        Preview::NotSubscribed(message) => {
            eprintln!("not sent: {message}");
            ExitCode::SUCCESS
        }
        Preview::Failed(reason) => fail(EXIT_FAILURE, &reason),
        Preview::Dropped => {
            eprintln!("dropped");
            ExitCode::SUCCESS
        }
    }
}

/// One row of a `--cases` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    event: serde_json::Value,
    #[serde(default)]
    settings: std::collections::BTreeMap<String, String>,
    expect: serde_json::Value,
}

/// `--cases`: every case rendered, compared as JSON, a diff per mismatch.
fn run_cases(plugin: &Plugin, path: &Path, base: &Settings) -> ExitCode {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) => return fail(EXIT_USAGE, &format!("cannot read {}: {e}", path.display())),
    };
    let cases: Vec<Case> = match serde_json::from_slice(&text) {
        Ok(cases) => cases,
        Err(e) => {
            return fail(
                EXIT_USAGE,
                &format!(
                    "{}: expected a JSON array of {{\"name\", \"event\", \"settings\"?, \"expect\"}}: {e}",
                    path.display()
                ),
            );
        }
    };
    let mut failed = 0;
    for case in &cases {
        let event = match parse_event(case.event.to_string().as_bytes()) {
            Ok(event) => event,
            Err(e) => {
                println!("FAIL {}: its event is invalid: {e}", case.name);
                failed += 1;
                continue;
            }
        };
        let settings: Settings = base
            .pairs()
            .iter()
            .cloned()
            .chain(case.settings.clone())
            .collect();
        let got = match plugin.render("plugin-test", &event, &settings) {
            Ok(Some(outgoing)) => match serde_json::from_slice::<serde_json::Value>(&outgoing.body)
            {
                Ok(body) => body,
                Err(_) => serde_json::Value::String(String::from_utf8_lossy(&outgoing.body).into()),
            },
            Ok(None) => serde_json::Value::Null,
            Err(e) => {
                println!("FAIL {}: the plugin failed: {e}", case.name);
                failed += 1;
                continue;
            }
        };
        if got == case.expect {
            println!("ok   {}", case.name);
        } else {
            failed += 1;
            println!("FAIL {}: the body differs (- expected, + got)", case.name);
            print!("{}", diff(&pretty(&case.expect), &pretty(&got)));
        }
    }
    println!(
        "{} of {} cases as expected",
        cases.len() - failed,
        cases.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A line diff of two short texts: lines only in `expected` as `-`, only
/// in `got` as `+`, shared ones as context (a longest common subsequence;
/// bodies are small).
fn diff(expected: &str, got: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("    {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("  + {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("  - {}\n", a[i]));
            i += 1;
        }
    }
    out
}

fn read_event(path: &Path) -> Result<crate::event::StatusEvent, String> {
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the event from stdin: {e}"))?;
        buf
    } else {
        std::fs::read(path)
            .map_err(|e| format!("cannot read the event file {}: {e}", path.display()))?
    };
    parse_event(&bytes).map_err(|e| format!("invalid event in {}: {e}", path.display()))
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("statushook: {message}");
    ExitCode::from(code)
}
