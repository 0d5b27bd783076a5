//! `statushook check`: validate the config and compile every plugin it
//! names, as an operator does before deploying or after editing.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config, Problem};
use crate::plugin::{HostOptions, PluginHost};

use super::EXIT_FAILURE;

/// Arguments of `statushook check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file to check.
    #[arg(long, value_name = "PATH", default_value = "config.toml")]
    config: PathBuf,
}

/// Runs the command: exit 0 with a one-line summary on stdout, or 1 with
/// every problem on stderr, one per line (`file:line: key: why`).
///
/// Plugins are compiled even when the config has other problems, so one run
/// lists everything to fix.
pub fn run(args: Args) -> ExitCode {
    let path = &args.config;
    let env = |name: &str| std::env::var(name).ok();
    let text = match config::read_source(path) {
        Ok(text) => text,
        Err(e) => return report(e.problems),
    };
    let (config, mut problems) = match config::parse(&text, path, &env) {
        Ok(config) => (Some(config), Vec::new()),
        Err(e) if e.is_empty_file() => return report(e.problems),
        Err(e) => (None, e.problems),
    };

    let plugins = config::plugin_refs(&text, &env);
    if !plugins.is_empty() {
        let host = match PluginHost::new(host_options(config.as_ref())) {
            Ok(host) => host,
            Err(e) => {
                eprintln!("statushook: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let base_dir = config::base_dir_of(path);
        for plugin in &plugins {
            if let Err(e) = host.load(&plugin.plugin, base_dir) {
                problems.push(Problem::new(
                    path,
                    Some(plugin.line),
                    plugin.key.as_str(),
                    e.to_string(),
                ));
            }
        }
    }

    let config = match config {
        Some(config) if problems.is_empty() => config,
        _ => {
            problems.sort_by_key(|problem| problem.line);
            return report(problems);
        }
    };
    let webhooks = config.bots.iter().map(|bot| bot.webhooks.len()).sum();
    println!(
        "{}: ok ({}, {}, {})",
        path.display(),
        count(config.bots.len(), "bot"),
        count(webhooks, "webhook"),
        count(plugins.len(), "plugin"),
    );
    ExitCode::SUCCESS
}

/// The host `statushook run` would create: the config's limits and its
/// `cache_dir`, else (or for a config with problems) the defaults.
fn host_options(config: Option<&Config>) -> HostOptions {
    let defaults = HostOptions::default();
    match config {
        Some(config) => HostOptions {
            limits: config.plugins.limits.clone(),
            cache_dir: config.plugins.cache_dir.clone().or(defaults.cache_dir),
            ..defaults
        },
        None => defaults,
    }
}

fn report(problems: Vec<Problem>) -> ExitCode {
    for problem in problems {
        eprintln!("statushook: {problem}");
    }
    ExitCode::from(EXIT_FAILURE)
}

/// `1 bot`, `2 bots`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
