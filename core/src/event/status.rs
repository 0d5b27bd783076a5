//! The status vocabulary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What happened to a message (docs/canonical-event.md, "Status vocabulary").
///
/// The host's one list of statuses. The WIT enum `status` is the plugins'
/// contract; `plugin/bindings.rs` converts with an exhaustive match, and a
/// test there checks the names agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Entered the sender's processing queue.
    Queued,
    /// Created in the flow and given an id for tracking.
    Created,
    /// Accepted by WhatsApp (one grey tick).
    Sent,
    /// Reached the user's device (two grey ticks).
    Delivered,
    /// Read by the user, or a voice message's first play.
    Read,
    /// The user replied to the message.
    Replied,
    /// Could not be sent or delivered.
    Failed,
    /// The number is not on WhatsApp.
    NumberNotFound,
    /// The message expired before it was delivered.
    Expired,
    /// The sending connection was closed or logged out (no message).
    Disconnected,
}

impl Status {
    /// Where the status stands in a message's life, for per-message order:
    /// queued and created 0, sent 1, delivered 2, read 3, replied 4, and the
    /// ends (failed, number not found, expired, disconnected) 5.
    pub fn lifecycle_rank(self) -> u8 {
        match self {
            Status::Queued | Status::Created => 0,
            Status::Sent => 1,
            Status::Delivered => 2,
            Status::Read => 3,
            Status::Replied => 4,
            Status::Failed | Status::NumberNotFound | Status::Expired | Status::Disconnected => 5,
        }
    }

    /// Every status, in the order of the vocabulary table.
    pub const ALL: [Status; 10] = [
        Status::Queued,
        Status::Created,
        Status::Sent,
        Status::Delivered,
        Status::Read,
        Status::Replied,
        Status::Failed,
        Status::NumberNotFound,
        Status::Expired,
        Status::Disconnected,
    ];

    /// The canonical name (`"number_not_found"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Created => "created",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read => "read",
            Status::Replied => "replied",
            Status::Failed => "failed",
            Status::NumberNotFound => "number_not_found",
            Status::Expired => "expired",
            Status::Disconnected => "disconnected",
        }
    }

    /// Whether the status concerns a message (everything but `disconnected`),
    /// so that `message_id` and `recipient` are required.
    pub fn is_about_a_message(self) -> bool {
        self != Status::Disconnected
    }

    /// The valid names, comma-separated, for error messages.
    pub fn names() -> String {
        Status::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name outside the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}; valid statuses are: {names}", names = Status::names())]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| UnknownStatus(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    /// The guest SDK cannot depend on the host crate, so it keeps its own
    /// names for the WIT enum; this keeps the two (and so `FromStr` on both
    /// sides of the plugin boundary) in step.
    #[test]
    fn the_plugin_sdk_names_statuses_as_the_host_does() {
        let host: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        let sdk: Vec<&str> = statushook_plugin::Status::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(host, sdk);
        for status in Status::ALL {
            let json = serde_json::to_string(&status).expect("serialise");
            assert_eq!(json, format!("\"{status}\""));
        }
    }
}
