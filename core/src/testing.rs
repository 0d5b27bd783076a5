//! Internals the integration tests (`core/tests/`) and benchmarks
//! (`core/benches/`) drive directly.
//!
//! Not a stable API: these are the dispatcher's own parts, exposed so a test
//! can map a Meta body without a server, time a reload, or build the
//! delivery client. Embedders use [`app::start`](crate::app::start), the
//! [`plugin`](crate::plugin) host and the [`queue`](crate::queue) backends.

/// Meta's webhooks: parsing the envelope, checking the signature, mapping to
/// canonical events.
pub mod meta {
    pub use crate::ingest::meta::signature::{HEADER, sign};
    pub use crate::ingest::meta::{BotLookup, BotRef, Envelope, Mapped, Signature, map};
}

pub use crate::deliver::client::build as build_client;
pub use crate::metrics::Metrics;
pub use crate::reload::{Outcome, Reloader, compose};
pub use crate::route::Snapshot;
