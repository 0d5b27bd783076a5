//! Queue failures.

/// A queue operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The store cannot be reached or did not answer in time. Nothing was
    /// changed (operations are atomic); retry later.
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// The store holds a record this version cannot read.
    #[error("corrupt queue record {id}: {reason}")]
    Corrupt {
        /// The record's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening or setting up the store failed.
    #[error("cannot open the queue: {0}")]
    Open(String),
}

impl QueueError {
    /// Whether the error is the store being unreachable (a `503`, retry
    /// later) rather than a fault in the data.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}
