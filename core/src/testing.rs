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

/// The queue's stored records, decoded as the stores decode them: what the
/// fuzz targets (`tests/fuzz`) throw bytes at.
pub mod records {
    use crate::queue::{Attempt, Delivery, QueueError};

    /// Decodes a job record of the embedded store and encodes it again.
    pub fn embedded_job(bytes: &[u8]) -> Result<Vec<u8>, QueueError> {
        crate::queue::embedded::reencode_job(bytes)
    }

    /// Decodes a delivery's stored metadata (JSON in both stores).
    pub fn delivery(meta: &[u8]) -> Result<Delivery, QueueError> {
        Delivery::from_parts("fuzz", meta, Vec::new())
    }

    /// The metadata as both stores write it.
    pub fn delivery_meta(delivery: &Delivery) -> Result<Vec<u8>, QueueError> {
        delivery.meta_json()
    }

    /// Decodes a stored attempt (JSON in both stores).
    pub fn attempt(bytes: &[u8]) -> Result<Attempt, QueueError> {
        Attempt::from_json("fuzz", 0, bytes)
    }
}

pub use crate::deliver::client::build as build_client;
pub use crate::metrics::Metrics;
pub use crate::reload::{Outcome, Reloader, compose};
pub use crate::route::Snapshot;
