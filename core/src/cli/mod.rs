//! The `statushook` command line (README.md, "Commands").
//!
//! Exit codes follow one rule everywhere: 0 success, 1 failure, 2 usage
//! (bad arguments or input).

mod check;
mod plugin_test;
mod receive;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What every command's `--help` ends with: the environment it reads and
/// what its exit codes mean.
const ENVIRONMENT_HELP: &str = "\
Environment:
  STATUSHOOK_LOG         log filter, e.g. `info` or `statushook=debug` (RUST_LOG also works)
  STATUSHOOK_LOG_FORMAT  `text` (default) or `json`, one JSON object per line
  NO_COLOR               any value: no colour even on a terminal
  STATUSHOOK_CACHE_DIR   compiled-plugin cache when [plugins] cache_dir is unset
                         (else $XDG_CACHE_HOME/statushook, else ~/.cache/statushook)

Logs go to stderr, in colour only when stderr is a terminal.
Exit codes: 0 success, 1 failure, 2 bad arguments or bad input.";

/// Delivers WhatsApp message status events to partner webhooks, reshaped by
/// WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "statushook", version, about, long_about = None, after_help = ENVIRONMENT_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config, every file it includes, and compile every
    /// plugin they name: exit 0, or 1 with every problem listed (file, line,
    /// key, why). With --file, check one fragment against the rest.
    #[command(after_help = ENVIRONMENT_HELP)]
    Check(check::Args),
    /// Run the dispatcher: ingest HTTP server and delivery workers.
    #[command(after_help = run::AFTER_HELP)]
    Run(run::Args),
    /// A demo webhook receiver: prints each request and checks its
    /// Standard Webhooks signature.
    #[command(after_help = ENVIRONMENT_HELP)]
    Receive(receive::Args),
    /// Run one plugin on one canonical event: the body on stdout, the headers
    /// on stderr.
    #[command(after_help = ENVIRONMENT_HELP)]
    PluginTest(plugin_test::Args),
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The dispatcher reports its life (start, stop, dead letters) at info;
    // one-shot commands print only what went wrong, except that
    // `plugin-test` shows everything the plugin logs: its author is asking.
    let default_filter = match cli.command {
        Command::Run(_) => "info",
        Command::PluginTest(_) => "warn,statushook::plugin::render=debug",
        _ => "warn",
    };
    if let Err(message) = init_logging(default_filter) {
        eprintln!("statushook: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Run(args) => run::run(args),
        Command::Receive(args) => receive::run(args),
        Command::PluginTest(args) => plugin_test::run(args),
    }
}

/// Logs to stderr. `STATUSHOOK_LOG` (or `RUST_LOG`) sets the filter,
/// `STATUSHOOK_LOG_FORMAT=json` switches to one JSON object per line, and
/// colour is used only on a terminal (never with `NO_COLOR` set), so a log
/// file or journal gets plain text.
fn init_logging(default: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let (variable, filter) = ["STATUSHOOK_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().map(|value| (name, value)))
        .unwrap_or(("default", default.into()));
    let filter = EnvFilter::try_new(&filter)
        .map_err(|e| format!("{variable}={filter:?} is not a log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("STATUSHOOK_LOG_FORMAT").as_deref() {
        Ok("json") => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        Ok("text") | Ok("") | Err(_) => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init();
        }
        Ok(other) => {
            return Err(format!(
                "STATUSHOOK_LOG_FORMAT={other:?} is not a log format: use `text` or `json`"
            ));
        }
    }
    Ok(())
}

/// Exit code 1: the operation failed.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code 2: bad arguments or bad input.
pub(crate) const EXIT_USAGE: u8 = 2;
