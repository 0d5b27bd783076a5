//! Failures inside a store operation, turned into [`QueueError`]s at the edge.

use std::fmt::Display;

use crate::queue::QueueError;

/// A failed store operation: what the caller will see as a [`QueueError`].
///
/// Exists so that `?` works on every redb error inside an operation; the
/// conversions are private to this backend, not part of [`QueueError`].
#[derive(Debug)]
pub(super) struct Fault(pub(super) QueueError);

impl From<QueueError> for Fault {
    fn from(error: QueueError) -> Self {
        Fault(error)
    }
}

impl From<Fault> for QueueError {
    fn from(fault: Fault) -> Self {
        fault.0
    }
}

/// Every redb failure (I/O, a full disk, a poisoned transaction) means the
/// store cannot take the operation now: nothing was committed.
macro_rules! store_failures {
    ($($error:ty),* $(,)?) => {
        $(
            impl From<$error> for Fault {
                fn from(error: $error) -> Self {
                    Fault(QueueError::unavailable("embedded queue store", error))
                }
            }
        )*
    };
}

store_failures!(
    redb::Error,
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::SetDurabilityError,
);

/// A record of job `id` that this version cannot read.
impl Fault {
    /// Whether the fault is a record this version cannot read (rather than
    /// the store failing): such a record is set aside, not retried.
    pub(super) fn is_corrupt(&self) -> bool {
        matches!(self.0, QueueError::Corrupt { .. })
    }
}

pub(super) fn corrupt(id: &str, reason: impl Display) -> Fault {
    Fault(QueueError::Corrupt {
        id: id.to_string(),
        reason: reason.to_string(),
    })
}
