//! `config.toml`: reading, checking and resolving the dispatcher's config
//! (README.md, "Config reference").
//!
//! [`load`] reads a file and [`parse`] checks text; both return a validated
//! [`Config`] or a [`ConfigError`] listing every [`Problem`] with its file,
//! line and key path, so an operator fixes them all in one pass. Checking is
//! strict: unknown keys are errors (with a suggestion for a typo), `${NAME}`
//! in any string is replaced from the environment (`$${` is a literal `${`),
//! durations are strings with a unit (`"500ms"`, `"10s"`, `"1m"`, `"6h"`),
//! and rules across keys (unique bot ids and webhook names, a phone number id
//! owned by one bot) are enforced here.
//!
//! A config may `include` fragment files of `[[bots]]` (one per tenant, say).
//! [`load`] reads the main file only; [`Fragments`] reads the fragments, each
//! on its own, and decides what each contributes, so that one broken file
//! never holds up the others.
//!
//! This module does not touch anything but the config file: whether a
//! plugin file exists and is a valid component is for the plugin host to say
//! (`statushook check` asks it), and watching the file for changes is the
//! reloader's job. An empty file is reported as such
//! ([`ConfigError::is_empty_file`]) so that a reloader can take it for a
//! write in progress.

mod auth;
mod bots;
mod duration;
mod env;
mod error;
mod fragment;
mod fragments;
mod include;
mod load;
mod model;
mod plugin_refs;
mod queue;
mod reader;
mod redact;
mod validate;
mod webhook;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, Problem};
pub use fragment::{Fragment, load_fragment, parse_fragment};
pub use fragments::{Composition, FileChange, FileOutcome, Fragments, Reread, Scan};
pub use include::{Include, absolute, fragment_files};
pub(crate) use load::read_source;
pub use load::{load, parse};
pub(crate) use model::base_dir_of;
pub use model::{
    Auth, BotConfig, Config, DeliveryConfig, EventFilter, MetaConfig, PluginsConfig, QueueBackend,
    QueueConfig, ServerConfig, Sign, WebhookConfig,
};
pub(crate) use plugin_refs::plugin_refs;
