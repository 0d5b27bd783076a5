//! The plugin host: runs a webhook's payload plugin, a sandboxed WebAssembly
//! component, to turn a canonical event into the partner's request body.
//!
//! - [`PluginHost`] owns the one wasmtime `Engine` and `Linker` of the process,
//!   the watchdog that enforces time limits, the concurrency cap and the
//!   on-disk cache of compiled plugins. It loads plugins.
//! - [`Plugin`] is one loaded, pre-instantiated component. Each render runs in
//!   an instance of its own with memory, time and output limits (kept warm
//!   for the same webhook's next render, never shared between webhooks: the
//!   `warm` module); a guest that traps,
//!   loops, exhausts its memory or returns something malformed fails that one
//!   render with a [`RenderError`] and harms nothing else.
//! - [`Outgoing`] is what a render produces: content type, extra headers and
//!   body, already checked against the header deny-list.
//!
//! This module does not sign, authenticate or send anything: the delivery
//! stage does, with secrets a plugin never sees.

mod bindings;
mod builtin;
mod cache;
mod engine;
mod error;
mod host;
mod limits;
mod mismatch;
mod outgoing;
mod render;
mod warm;
mod watchdog;

pub use builtin::{BUILTIN_NAMES, builtin_wasm};
pub use error::{LoadError, RenderError};
pub use host::{HostError, HostOptions, PluginHost, PluginSource};
pub use limits::PluginLimits;
pub use outgoing::{Outgoing, is_forbidden_header};
pub use render::{Plugin, Settings};
