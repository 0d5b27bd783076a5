//! Meta's WhatsApp Cloud API webhooks (docs/meta.md): `GET` and
//! `POST /v1/meta/webhook`.
//!
//! A delivery from Meta goes through four steps, one module each:
//!
//! 1. [`signature`]: `X-Hub-Signature-256` is checked on the raw body bytes,
//!    before anything is parsed, against every configured app secret, in
//!    constant time;
//! 2. [`envelope`]: the verified bytes must be a WhatsApp Business Account
//!    webhook (`object` and an `entry` array); the walk down to each change
//!    is lenient, since Meta adds fields and variants over time;
//! 3. [`mapping`]: every status and inbound reply of every change becomes a
//!    canonical [`StatusEvent`](crate::event::StatusEvent) with a
//!    deterministic id, or is skipped with a [`SkipReason`](mapping::SkipReason);
//! 4. [`handler`]: the HTTP side. It answers the verification handshake, and
//!    queues the events of one body whole or not at all (through
//!    [`queue_events`](super::events::queue_events)) before answering `200`.
//!
//! A body that verifies is never refused for one bad update: updates that
//! cannot become a valid event are skipped and counted in
//! `statushook_ingest_rejected_total{reason="meta_..."}`, so Meta does not
//! re-send them forever.

pub mod envelope;
pub mod handler;
pub mod mapping;
pub mod signature;

pub use envelope::Envelope;
pub use mapping::{BotLookup, BotRef, Mapped, map};
pub use signature::Signature;
