//! The HTTP front: where events come in, and where operators look.
//!
//! - [`server`] accepts connections (hyper) and shuts down gracefully;
//! - [`router`] maps routes to handlers: [`events`] (`POST /v1/events`),
//!   [`meta`] (Meta's WhatsApp webhooks, `GET`/`POST /v1/meta/webhook`),
//!   [`admin`] (dead letters), health and metrics;
//! - [`response`] holds the JSON error shape and body reading with a size
//!   limit enforced while reading.
//!
//! Ingest validates, renders (through [`crate::route`]) and queues a whole
//! request in one atomic step before answering `202`.

pub mod admin;
pub mod deliveries;
pub mod events;
pub mod meta;
pub mod response;
pub mod router;
pub mod server;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::route::Snapshot;

/// What the handlers share.
pub struct Ingest {
    /// The live routing table.
    pub(crate) routes: Arc<ArcSwap<Snapshot>>,
    /// The delivery queue.
    pub(crate) queue: Arc<dyn Queue>,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Each bot's `ingest_rate_limit` bucket.
    pub(crate) rate_limits: crate::rate::Buckets,
    /// The delivery side's endpoints (the console shows their breakers).
    pub(crate) endpoints: Arc<crate::deliver::endpoint::Endpoints>,
    /// The plugin host (`/metrics` reports its warm instances).
    pub(crate) host: crate::plugin::PluginHost,
    /// This dispatcher's delivery loop, which takes the deliveries an
    /// enqueue leases to it at once.
    pub(crate) deliverer: Arc<crate::deliver::Deliverer>,
}
