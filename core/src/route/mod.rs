//! Routing: which webhooks hear about an event, and what each is sent.
//!
//! - [`Snapshot`] is the routing table built from one validated config: bots,
//!   their webhooks with loaded plugins, and the token and phone-number
//!   indexes. It is immutable; a reload builds a new one and swaps it in.
//! - [`fan_out`] turns accepted events into deliveries: for each webhook whose
//!   `events` match, the plugin renders the body once; a plugin failure
//!   becomes a dead letter for that webhook alone.

mod fanout;
mod scope;
mod snapshot;

pub use fanout::{FanOutReport, Preview, fan_out, preview};
pub use scope::{Access, Scope};
pub use snapshot::{Bot, Snapshot, SnapshotError, Webhook};
