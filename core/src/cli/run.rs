//! `statushook run`: the dispatcher.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::app;
use crate::config;

use super::EXIT_FAILURE;

/// `statushook run --help` ends with this: what a person running it as a
/// service needs beyond the flags.
pub(super) const AFTER_HELP: &str = "\
The config file says where it listens ([server] listen, default 127.0.0.1:8080)
and where deliveries wait ([queue]: an embedded store in `data/queue` beside
the config, or Redis). `statushook check` validates a config without running it.

Signals:
  SIGHUP           reload config.toml and plugins (edits are also picked up by themselves)
  SIGTERM, SIGINT  stop accepting, let in-flight sends finish (up to the delivery
                   timeout + 5 s), return the rest to the queue, exit 0

Environment:
  STATUSHOOK_LOG         log filter, default `info` (e.g. `statushook=debug`)
  STATUSHOOK_LOG_FORMAT  `text` (default) or `json`, one JSON object per line
  NO_COLOR               any value: no colour even on a terminal
  ${NAME} in config.toml is read from the environment at load and reload.

Exit codes: 0 stopped cleanly, 1 could not start (bad config, port taken,
queue unavailable: the reason is printed), 2 bad arguments.";

/// Arguments of `statushook run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, value_name = "PATH", default_value = "config.toml")]
    config: PathBuf,
}

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub fn run(args: Args) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            for problem in &error.problems {
                eprintln!("statushook: {problem}");
            }
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // TOKIO_WORKER_THREADS, when set, is tokio's to read.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(async_workers());
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("statushook: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async {
        let path = config.path.clone();
        let running = match app::start(config).await {
            Ok(running) => running,
            Err(e) => {
                eprintln!("statushook: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        tracing::info!(addr = %running.addr(), config = %path.display(), "statushook is running");
        wait_for_stop_signal().await;
        tracing::info!("stopping: no new requests; finishing in-flight deliveries");
        running.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Async worker threads: half the cores, at least one.
///
/// The async side of a delivery is short steps between I/O waits; spread
/// over every core, each step more often wakes a second worker to steal it
/// than it saves. On the 2-core test machine one async worker (renders of
/// batches and the embedded store on the blocking pool, the other core free
/// for Redis and the partners' receivers) delivered 62 % more one-event
/// requests per second than two and cost a quarter less CPU per delivery at
/// 300 events/s (BENCHMARKS.md, "Cost at ordinary load").
fn async_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
