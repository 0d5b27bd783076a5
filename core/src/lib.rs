//! statushook: delivers WhatsApp message status events to partner webhooks.
//!
//! Events flow through the modules in this order:
//!
//! - [`event`]: the canonical status event and its strict JSON parsing;
//! - [`plugin`]: the WebAssembly host that renders an event into a partner's
//!   request body with the webhook's plugin;
//! - [`cli`]: the `statushook` command line.

#![deny(missing_docs)]

pub mod cli;
pub mod event;
pub mod plugin;
