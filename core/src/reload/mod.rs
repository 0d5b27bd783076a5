//! Hot reload of `config.toml` and plugin files, with nothing dropped.
//!
//! - [`watch`] notices changes: a watcher on the config file's folder (editors
//!   save by rename) and on the folder of every plugin file, debounced, plus
//!   SIGHUP;
//! - [`Reloader`] applies one: parse and validate the file, compile changed
//!   plugins (unchanged ones are reused by hash), then swap the whole routing
//!   snapshot at once. A broken file changes nothing: the old snapshot keeps
//!   serving, the error is logged with its location and counted.
//! - [`compose`] adds the files the config includes, each standing alone: a
//!   broken or clashing file is refused and its last good version keeps
//!   serving, while the other files' changes apply.
//!
//! Work in flight keeps the snapshot it started with; the next request or
//! attempt sees the new one. Settings that cannot change while running
//! (`listen`, the queue, engine limits, worker counts) are reported as
//! needing a restart and keep their running values: never half-applied.

mod apply;
mod compose;
mod diff;
pub mod watch;

pub use apply::{Outcome, Reloader};
pub use compose::{ComposeError, Composed, compose};
pub use diff::Changes;
