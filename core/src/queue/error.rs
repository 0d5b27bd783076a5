//! Queue failures.

use std::error::Error;

/// The underlying failure behind a [`QueueError`]: a Redis or redb error, an
/// I/O error, or a message where there is nothing underneath.
pub type Cause = Box<dyn Error + Send + Sync>;

/// A queue operation that failed.
///
/// The message names what failed and ends with the cause's own message, so
/// a log line is complete on its own; the cause is also the error's
/// [`source`](Error::source), for callers that walk the chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The store cannot be reached or did not answer in time. Nothing was
    /// changed (operations are atomic); retry later.
    #[error("the queue is unavailable: {context}{}", suffix(source))]
    Unavailable {
        /// What could not be done, or which store.
        context: String,
        /// Why, when something underneath failed.
        #[source]
        source: Option<Cause>,
    },
    /// The store holds a record this version cannot read.
    #[error("corrupt queue record {id}: {reason}")]
    Corrupt {
        /// The record's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A record could not be written as JSON; nothing was stored.
    #[error("cannot encode queue record {id}: {source}")]
    Encode {
        /// The record's id.
        id: String,
        /// Why.
        source: serde_json::Error,
    },
    /// Opening or setting up the store failed.
    #[error("cannot open the queue: {context}{}", suffix(source))]
    Open {
        /// What could not be opened or set up, and what to do about it.
        context: String,
        /// Why, when something underneath failed.
        #[source]
        source: Option<Cause>,
    },
}

/// `": <cause>"`, or nothing.
fn suffix(source: &Option<Cause>) -> String {
    source
        .as_ref()
        .map(|cause| format!(": {cause}"))
        .unwrap_or_default()
}

impl QueueError {
    /// The store is unreachable: `context` names it or the operation.
    pub(crate) fn unavailable(context: impl Into<String>, source: impl Into<Cause>) -> Self {
        QueueError::Unavailable {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// The store is unusable for a reason of its own (no underlying error).
    pub(crate) fn unavailable_because(context: impl Into<String>) -> Self {
        QueueError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// Opening failed because `source` failed while doing `context`.
    pub(crate) fn open(context: impl Into<String>, source: impl Into<Cause>) -> Self {
        QueueError::Open {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// Opening was refused for a reason `context` explains in full.
    pub(crate) fn open_refused(context: impl Into<String>) -> Self {
        QueueError::Open {
            context: context.into(),
            source: None,
        }
    }

    /// Whether the error is the store being unreachable (a `503`, retry
    /// later) rather than a fault in the data.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}
