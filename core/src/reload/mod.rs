//! Hot reload of `config.toml` and plugin files, with nothing dropped.
//!
//! - [`watch`] notices changes: a watcher on the config file's folder (editors
//!   save by rename) and on the folder of every plugin file, debounced, plus
//!   SIGHUP;
//! - [`Reloader`] applies one: parse and validate the file, compile changed
//!   plugins (unchanged ones are reused by hash), then swap the whole routing
//!   snapshot at once. A broken file changes nothing: the old snapshot keeps
//!   serving, the error is logged with its location and counted.
//!
//! Work in flight keeps the snapshot it started with; the next request or
//! attempt sees the new one. Settings that cannot change while running
//! (`listen`, the queue, engine limits, worker counts) are reported as
//! needing a restart and keep their running values: never half-applied.

mod apply;
mod diff;
pub mod watch;

pub use apply::{Outcome, Reloader};
pub use diff::Changes;
