//! statushook: delivers WhatsApp message status events to partner webhooks.
//!
//! Events flow through the modules in this order:
//!
//! - [`config`]: `config.toml`, read, checked and resolved into the settings
//!   every other module runs with;
//! - [`event`]: the canonical status event and its strict JSON parsing;
//! - [`plugin`]: the WebAssembly host that renders an event into a partner's
//!   request body with the webhook's plugin;
//! - [`cli`]: the `statushook` command line.

#![deny(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod event;
pub mod ingest;
pub mod metrics;
pub mod plugin;
pub mod queue;
pub mod reload;
pub mod route;
