//! The canonical status event: the one shape every source becomes and every
//! plugin receives (docs/canonical-event.md).
//!
//! [`StatusEvent`] is the validated form; [`parse_event`] and [`parse_batch`]
//! turn the JSON that `POST /v1/events` accepts into it, collecting every
//! problem with the field (and array index) it concerns. This module knows
//! nothing of bots, config or delivery: whether `bot_id` exists is the
//! router's question.

mod parse;
pub mod rules;
mod status;

pub use parse::{FieldError, InvalidEvent, MAX_BATCH, parse_batch, parse_event};
pub use rules::check;
pub use status::{Status, UnknownStatus};

use serde::{Deserialize, Serialize};

/// A validated canonical status event.
///
/// Construct it with [`parse_event`] (from JSON) or from a trusted source that
/// upholds the same rules (the Meta mapper). The JSON form (via `Serialize`) is
/// the canonical JSON of docs/canonical-event.md, with absent fields omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// Unique id of this status update; with `bot_id`, the idempotency key.
    pub id: String,
    /// The tenant bot whose notification URLs receive the event.
    pub bot_id: String,
    /// The provider's id of the message; absent only for `disconnected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// What happened.
    pub status: Status,
    /// When it happened at the source, in unix seconds.
    pub timestamp: u64,
    /// The end user (digits only for a phone number); absent only for `disconnected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The business number or channel sender id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Display name of the sending channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_name: Option<String>,
    /// The campaign the message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Campaign>,
    /// The template the message used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// What the user replied; present exactly when `status` is `replied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Why the message failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// Whether no further status is expected for this message.
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// The campaign a message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// The campaign's id.
    pub id: String,
    /// The campaign's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Why a message failed, as the source reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The source's error code, as a string.
    pub code: String,
    /// A short title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Further details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// The source's error type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A trace id for support requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}
