//! `statushook plugin-test`: run one plugin on one event, as a partner would
//! while writing a plugin.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::event::parse_event;
use crate::plugin::{HostOptions, LoadError, PluginHost, Settings};

use super::{EXIT_FAILURE, EXIT_USAGE};

/// Arguments of `statushook plugin-test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A built-in plugin (jelou, engage, connectly, wpp) or a path to a .wasm
    /// component.
    #[arg(long, value_name = "NAME_OR_PATH")]
    plugin: String,
    /// A canonical event as JSON, or `-` to read it from stdin.
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// A webhook setting handed to the plugin; repeat for several.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
}

fn parse_setting(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {arg:?}")),
    }
}

/// Runs the command: exit 0 rendered or dropped, 1 the plugin failed, 2 bad
/// arguments or an invalid event.
pub fn run(args: Args) -> ExitCode {
    let event = match read_event(&args.event) {
        Ok(event) => event,
        Err(message) => return fail(EXIT_USAGE, &message),
    };
    let host = match PluginHost::new(HostOptions::default()) {
        Ok(host) => host,
        Err(e) => return fail(EXIT_FAILURE, &e.to_string()),
    };
    let plugin = match host.load(&args.plugin, Path::new(".")) {
        Ok(plugin) => plugin,
        Err(e @ (LoadError::UnknownBuiltin(_) | LoadError::Read { .. })) => {
            return fail(EXIT_USAGE, &e.to_string());
        }
        Err(e) => return fail(EXIT_FAILURE, &e.to_string()),
    };
    let settings: Settings = args.settings.into_iter().collect();
    match plugin.render(&event, &settings) {
        Ok(Some(outgoing)) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "Content-Type: {}", outgoing.content_type);
            for (name, value) in &outgoing.headers {
                let _ = writeln!(stderr, "{name}: {value}");
            }
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(&outgoing.body)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(EXIT_FAILURE);
            }
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("dropped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILURE, &e.to_string()),
    }
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
