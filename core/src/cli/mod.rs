//! The `statushook` command line (interfaces.md, "Command line").
//!
//! Exit codes follow one rule everywhere: 0 success, 1 failure, 2 usage
//! (bad arguments or input).

mod check;
mod plugin_test;
mod receive;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Delivers WhatsApp message status events to partner webhooks, reshaped by
/// WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "statushook", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and compile every plugin it names: exit 0, or 1
    /// with every problem listed (file, line, key, why).
    Check(check::Args),
    /// Run the dispatcher: ingest HTTP server and delivery workers.
    Run(run::Args),
    /// A demo webhook receiver: prints each request and checks its
    /// Standard Webhooks signature.
    Receive(receive::Args),
    /// Run one plugin on one canonical event: the body on stdout, the headers
    /// on stderr.
    PluginTest(plugin_test::Args),
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The dispatcher reports its life (start, stop, dead letters) at info;
    // one-shot commands print only what went wrong.
    init_logging(if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    });
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Run(args) => run::run(args),
        Command::Receive(args) => receive::run(args),
        Command::PluginTest(args) => plugin_test::run(args),
    }
}

/// Logs to stderr; `STATUSHOOK_LOG` (or `RUST_LOG`) sets the filter, e.g.
/// `STATUSHOOK_LOG=statushook=debug`.
fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("STATUSHOOK_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}

/// Exit code 1: the operation failed.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code 2: bad arguments or bad input.
pub(crate) const EXIT_USAGE: u8 = 2;
