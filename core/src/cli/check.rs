//! `statushook check`: validate the config, every file it includes, and
//! compile every plugin they name, as an operator does before deploying or
//! after editing; or (`--file`) one fragment against the rest, as a
//! provisioning tool does before it moves a tenant's file into place.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, BotConfig, Config, FileChange, Fragments, Problem, Reread};
use crate::plugin::{HostOptions, PluginHost};

use super::EXIT_FAILURE;

/// Arguments of `statushook check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file to check.
    #[arg(long, value_name = "PATH", default_value = "config.toml")]
    config: PathBuf,
    /// Check only this fragment file, against the config and the other
    /// included files as they are now: its own problems, clashes with
    /// other files, and its plugins.
    #[arg(long, value_name = "FRAGMENT")]
    file: Option<PathBuf>,
    /// With --file: where the fragment is to go (it must match an include
    /// pattern); the file now there, if any, is the one it replaces.
    /// Default: the fragment's own path.
    #[arg(long = "as", value_name = "PATH", requires = "file")]
    as_path: Option<PathBuf>,
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
    let mut plugins = Plugins::new(config.as_ref(), config::base_dir_of(path));

    if let Some(fragment) = &args.file {
        let target = args.as_path.as_deref().unwrap_or(fragment);
        let mut fragment_problems =
            check_one(config.as_ref(), fragment, target, &env, &mut plugins);
        if config.is_some() {
            // The main file's own problems are not the fragment's, and a
            // valid main file has none.
            problems.clear();
        }
        problems.append(&mut fragment_problems);
        if !problems.is_empty() {
            return report(problems);
        }
        println!(
            "{}: ok ({}, {}) next to {} and the files it includes",
            fragment.display(),
            count(plugins.bots, "bot"),
            count(plugins.webhooks, "webhook"),
            path.display(),
        );
        return ExitCode::SUCCESS;
    }

    plugins.check_text(&text, path, &env, &mut problems);
    let mut files = 0;
    if let Some(config) = &config {
        let mut fragments = Fragments::new();
        let scan = fragments.scan(&config.include, &config.path, Reread::All);
        problems.extend(scan.problems);
        let composition = fragments.compose(&config.path, &config.bots, &Default::default(), &[]);
        files = fragments.len();
        for outcome in composition.files {
            if let FileChange::Refused {
                problems: found, ..
            } = outcome.change
            {
                problems.extend(found);
            }
            if let Ok(text) = config::read_source(&outcome.file) {
                plugins.check_text(&text, &outcome.file, &env, &mut problems);
            }
        }
        plugins.count(&config.bots);
        plugins.count(&composition.bots);
        if !config.delivery.allow_private_networks {
            for bot in config.bots.iter().chain(&composition.bots) {
                warn_if_refused(bot);
            }
        }
    }

    if config.is_none() || !problems.is_empty() {
        problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return report(problems);
    }
    let included = if files > 0 {
        format!(", {}", count(files, "included file"))
    } else {
        String::new()
    };
    println!(
        "{}: ok ({}, {}, {}{included})",
        path.display(),
        count(plugins.bots, "bot"),
        count(plugins.webhooks, "webhook"),
        count(plugins.checked, "plugin"),
    );
    ExitCode::SUCCESS
}

/// The problems of fragment `file`, checked as if it were at `target`,
/// next to the config and every other included file as they are now.
fn check_one(
    config: Option<&Config>,
    file: &Path,
    target: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    plugins: &mut Plugins,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let text = match config::read_source(file) {
        Ok(text) => text,
        Err(e) => return e.problems,
    };
    let parsed = config::parse_fragment(&text, file, env);
    plugins.check_text(&text, file, env, &mut problems);
    let Some(config) = config else {
        // Without a valid main file, the fragment can only be checked alone.
        if let Err(e) = parsed {
            problems.extend(e.problems);
        }
        return problems;
    };
    let target = config::absolute(target);
    if !config
        .include
        .iter()
        .any(|include| include.matches(&target))
    {
        let patterns: Vec<&str> = config.include.iter().map(|i| i.pattern.as_str()).collect();
        problems.push(Problem::new(
            file,
            None,
            "",
            format!(
                "{} is not matched by any include pattern of {} ({}), so it would not be loaded",
                target.display(),
                config.path.display(),
                if patterns.is_empty() {
                    "it has none".to_string()
                } else {
                    format!("include = {patterns:?}")
                }
            ),
        ));
    }
    // The rest as it runs now, then this file's new version on top.
    let mut fragments = Fragments::new();
    // Unreadable folders are the whole config's problem, not this file's.
    let _ = fragments.scan(&config.include, &config.path, Reread::All);
    let running = fragments.compose(&config.path, &config.bots, &Default::default(), &[]);
    fragments.commit(&running);
    if let Ok(fragment) = &parsed {
        plugins.count(&fragment.bots);
    }
    fragments.set_latest(&target, parsed);
    let composition = fragments.compose(&config.path, &config.bots, &Default::default(), &[]);
    if let Some(outcome) = composition.outcome(&target)
        && let FileChange::Refused {
            problems: found, ..
        } = &outcome.change
    {
        // Named as the operator named it, not where it is going.
        problems.extend(found.iter().cloned().map(|mut problem| {
            if problem.file == target {
                problem.file = file.to_path_buf();
            }
            problem
        }));
    }
    problems.sort_by_key(|problem| problem.line);
    problems
}

/// Compiles the plugins of each checked file, counting what was checked.
struct Plugins {
    host: Option<Result<PluginHost, String>>,
    options: HostOptions,
    base_dir: PathBuf,
    checked: usize,
    bots: usize,
    webhooks: usize,
}

impl Plugins {
    fn new(config: Option<&Config>, base_dir: &Path) -> Self {
        Plugins {
            host: None,
            options: host_options(config),
            base_dir: base_dir.to_path_buf(),
            checked: 0,
            bots: 0,
            webhooks: 0,
        }
    }

    /// Loads every plugin `text` (the file `file`) names; a plugin that
    /// does not load is a problem at the line of the first webhook naming it.
    fn check_text(
        &mut self,
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<Problem>,
    ) {
        for plugin in config::plugin_refs(text, env) {
            let host = self.host.get_or_insert_with(|| {
                PluginHost::new(self.options.clone()).map_err(|e| e.to_string())
            });
            let result = match host {
                Ok(host) => host
                    .load(&plugin.plugin, &self.base_dir)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot start the plugin host: {e}")),
            };
            self.checked += 1;
            if let Err(message) = result {
                problems.push(Problem::new(
                    file,
                    Some(plugin.line),
                    plugin.key.as_str(),
                    message,
                ));
            }
        }
    }

    fn count(&mut self, bots: &[std::sync::Arc<BotConfig>]) {
        self.bots += bots.len();
        self.webhooks += bots.iter().map(|bot| bot.webhooks.len()).sum::<usize>();
    }
}

/// The host `statushook run` would create: the config's limits and its
/// `cache_dir`, else (or for a config with problems) the defaults.
pub(super) fn host_options(config: Option<&Config>) -> HostOptions {
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
/// Warns (on stderr, without failing) about each webhook of `bot` whose URL
/// every send would refuse: a private or local address, literal or what its
/// host name resolves to now, while `allow_private_networks` is off. Such a
/// delivery becomes a dead letter at its first attempt.
fn warn_if_refused(bot: &BotConfig) {
    use std::net::ToSocketAddrs;

    use crate::deliver::ssrf;
    for webhook in &bot.webhooks {
        let url = &webhook.url;
        let why = match ssrf::check_url(url, false) {
            Err(refused) => Some(refused.to_string()),
            Ok(()) => match (url.host_str(), url.port_or_known_default()) {
                // A name that does not resolve here may resolve where it
                // runs: only a name resolving to private addresses alone
                // is certain to be refused.
                (Some(host), Some(port)) => (host, port)
                    .to_socket_addrs()
                    .ok()
                    .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())
                    .filter(|ips| !ips.is_empty() && !ips.iter().any(|ip| ssrf::is_public(*ip)))
                    .map(|_| {
                        format!(
                            "host `{host}` resolves only to private or local addresses; \
                             set allow_private_networks = true in [delivery] to permit it"
                        )
                    }),
                _ => None,
            },
        };
        if let Some(why) = why {
            eprintln!(
                "statushook: warning: bot {:?}, webhook {:?}: every send to {url} will be refused: {why}",
                bot.id, webhook.name
            );
        }
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
