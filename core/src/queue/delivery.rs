//! The records the queue holds: deliveries, attempts and dead letters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::QueueError;
use crate::event::Status;

/// One rendered request for one webhook: what every attempt sends.
///
/// Rendered once at fan-out and stored whole, so every attempt sends the
/// same bytes with the same `webhook-id`. URL, auth and secrets are not
/// stored: they come from the live config at send time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique delivery id; sent as `webhook-id`.
    pub id: String,
    /// The bot the event belongs to.
    pub bot: String,
    /// The webhook's name within the bot.
    pub webhook: String,
    /// The canonical event's id.
    pub event_id: String,
    /// The canonical status, for logs and dead-letter listings.
    pub status: Status,
    /// The event's `message_id`, for finding the delivery in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The event's `recipient`, for finding the delivery in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// When the delivery was created, unix ms.
    pub created_ms: u64,
    /// How this webhook's deliveries of one message go out: set from the
    /// webhook's `order` when the delivery is made, and kept with it.
    #[serde(default, skip_serializing_if = "Order::is_any")]
    pub order: Order,
    /// The plugin's content type.
    pub content_type: String,
    /// The plugin's extra headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The body: stored beside the metadata, not inside its JSON.
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// How a webhook's deliveries of one message go out (`[[bots.webhooks]]
/// order` and `suppress_regressions`).
///
/// Ordered deliveries of one `message_id` to one webhook go out one at a
/// time: the others wait, and of those waiting, the earliest in the
/// message's lifecycle ([`Status::lifecycle_rank`]) goes next, so statuses
/// that arrive out of order close together go out in order. A delivery
/// without a `message_id` (a connection status) is never held back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Each delivery on its own, as soon as it can go (the default).
    #[default]
    Any,
    /// One at a time per message, earliest lifecycle status first.
    PerMessage,
    /// As [`Order::PerMessage`], and a status that comes after a later one
    /// of the same message was delivered (`delivered` after `read`) is
    /// suppressed instead of sent, so the receiver never sees a message go
    /// backwards.
    PerMessageNoRegressions,
}

impl Order {
    /// Whether this is the default, [`Order::Any`].
    pub fn is_any(&self) -> bool {
        *self == Order::Any
    }

    /// How the queue stores it: `""`, `"p"` or `"s"` (as `lua/` reads it).
    pub(crate) fn code(self) -> &'static str {
        match self {
            Order::Any => "",
            Order::PerMessage => "p",
            Order::PerMessageNoRegressions => "s",
        }
    }
}

/// The reason a suppressed delivery is given.
pub const SUPPRESSED: &str =
    "suppressed: a later status of this message was already delivered to this webhook";

impl Delivery {
    /// The queue lane this delivery waits in: see [`lane`].
    pub fn lane(&self) -> String {
        lane(&self.bot, &self.webhook)
    }

    /// The message whose ordering this delivery takes part in, if any: its
    /// `message_id` when its webhook orders per message.
    pub fn ordered_message(&self) -> Option<&str> {
        (!self.order.is_any())
            .then_some(self.message_id.as_deref())
            .flatten()
    }

    /// The metadata as JSON (everything but the body).
    pub(crate) fn meta_json(&self) -> Result<Vec<u8>, QueueError> {
        serde_json::to_vec(self).map_err(|source| QueueError::Encode {
            id: self.id.clone(),
            source,
        })
    }

    /// Rebuilds a delivery from its stored metadata and body.
    pub(crate) fn from_parts(id: &str, meta: &[u8], body: Vec<u8>) -> Result<Self, QueueError> {
        let mut delivery: Delivery =
            serde_json::from_slice(meta).map_err(|e| QueueError::Corrupt {
                id: id.to_string(),
                reason: e.to_string(),
            })?;
        delivery.body = body;
        Ok(delivery)
    }
}

/// The queue lane of `webhook` of `bot`: `<bot>/<webhook>`.
///
/// Each webhook's deliveries wait in a lane of their own, and claims take
/// from the lanes whose oldest job is oldest, a few jobs per lane: one
/// webhook with a deep backlog, or one whose endpoint is down and whose lane
/// is [held](super::Queue::hold), does not delay the others. Unambiguous:
/// webhook names cannot contain `/`.
pub fn lane(bot: &str, webhook: &str) -> String {
    format!("{bot}/{webhook}")
}

/// A fresh delivery id: `msg_` and a time-ordered UUIDv7, as Standard
/// Webhooks ids look (`msg_...`). Unique across dispatchers.
pub fn new_delivery_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

/// The current time in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// How the reason of a delivery dead at birth begins: its plugin failed, so
/// it has no body, and replaying it would send nothing; replay leaves it.
/// (`lua/replay.lua` spells the same prefix.)
pub const BORN_DEAD: &str = "plugin failed:";

/// A delivery for the queue: due now, or dead at birth (its plugin failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewDelivery {
    /// To be sent.
    Pending(Delivery),
    /// Not sendable: the plugin failed; stored as a dead letter with the reason.
    Dead(Delivery, String),
}

impl NewDelivery {
    /// The delivery, whichever state it is born in.
    pub fn delivery(&self) -> &Delivery {
        match self {
            NewDelivery::Pending(d) | NewDelivery::Dead(d, _) => d,
        }
    }
}

/// One accepted event and the deliveries it fans out to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The event's bot: with `event_id`, the dedup key.
    pub bot: String,
    /// The canonical event id.
    pub event_id: String,
    /// Its deliveries: one per subscribed webhook whose plugin did not drop it.
    pub deliveries: Vec<NewDelivery>,
}

/// `attempt` (if any) of the job leased as `id`, as stored JSON.
pub(crate) fn attempt_json(
    id: &str,
    attempt: Option<&Attempt>,
) -> Result<Option<Vec<u8>>, QueueError> {
    attempt
        .map(|attempt| {
            serde_json::to_vec(attempt).map_err(|source| QueueError::Encode {
                id: id.to_string(),
                source,
            })
        })
        .transpose()
}

/// `duration` in whole milliseconds, as the stores keep times.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What happened on one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When the attempt started, unix ms.
    pub at_ms: u64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// The HTTP status, or why there was none.
    #[serde(flatten)]
    pub outcome: AttemptOutcome,
    /// The start of the receiver's answer (at most [`RESPONSE_EXCERPT`]
    /// bytes, as lossy UTF-8), when it answered with a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// How much of a receiver's answer an attempt keeps: enough for an error
/// message, not a whole page.
pub const RESPONSE_EXCERPT: usize = 1024;

impl Attempt {
    /// Reads an attempt as both stores keep it (JSON); `id` and `seq` (the
    /// attempt's number) name it in the error.
    pub(crate) fn from_json(id: &str, seq: usize, bytes: &[u8]) -> Result<Self, QueueError> {
        serde_json::from_slice(bytes).map_err(|e| QueueError::Corrupt {
            id: id.to_string(),
            reason: format!("attempt {seq}: {e}"),
        })
    }
}

/// The result of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The endpoint answered with this status code.
    Status(u16),
    /// No answer: timeout, connection error, refused address...
    Error(String),
}

/// A claimed job: the delivery, its lease and how many attempts it has had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// What to send.
    pub delivery: Delivery,
    /// The lease to ack or retry with.
    pub lease: Lease,
    /// Attempts made so far (since creation or the last replay).
    pub attempts: u32,
}

/// Proof of a claim: the job id and the fencing token of this claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The delivery id.
    pub id: String,
    /// The fencing token; only the latest claim's token is honoured.
    pub token: u64,
}

/// A delivery that ran out of attempts, or could not be sent at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The delivery (its body is listed by length only).
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Body length in bytes.
    pub body_bytes: usize,
    /// Why it is dead: "ran out of attempts", "410 Gone", "plugin failed: ...",
    /// "webhook removed".
    pub reason: String,
    /// When it died, unix ms.
    pub dead_ms: u64,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
}
