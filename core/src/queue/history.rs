//! The delivery log: every delivery and its attempts, kept for a retention
//! window after it was created, searchable per bot.
//!
//! Both backends keep the log in the queue's own records: a delivered job
//! is not deleted at its ack but kept until `created + retention` (pending
//! and dead jobs live as long as they are pending or dead), and each bot
//! has an index by creation time, plus one per `message_id` and per
//! `recipient`, the two questions asked most ("what became of message Y?",
//! "what did we send about this customer?"). The other filters (webhook,
//! status, outcome) are applied while walking an index, by
//! [`DeliveryQuery::matches`], the same for both backends; a walk examines
//! at most [`SCAN_LIMIT`] entries per page and hands back a cursor to go on.

use std::time::Duration;

use serde::Serialize;

use super::{Attempt, Delivery};
use crate::event::Status;

/// How long, and how much, the log keeps (`[history]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// How long after its creation a delivery stays in the log
    /// (`retention`; zero turns the log off: a delivered job is deleted at
    /// once, as before the log existed).
    pub retention: Duration,
    /// The most deliveries one bot's log indexes (`max_per_bot`); past it
    /// the oldest leave the log first.
    pub max_per_bot: usize,
}

impl History {
    /// No log: delivered jobs are deleted at their ack.
    pub const OFF: History = History {
        retention: Duration::ZERO,
        max_per_bot: 0,
    };

    /// Whether deliveries are logged at all.
    pub fn is_on(&self) -> bool {
        !self.retention.is_zero() && self.max_per_bot > 0
    }

    /// The oldest creation time (unix ms) the log still shows at `now`:
    /// entries past their retention are gone to readers at once, whenever
    /// the store gets round to removing them.
    pub(crate) fn floor_ms(&self, now: u64) -> u64 {
        if self.is_on() {
            now.saturating_sub(super::delivery::millis(self.retention))
        } else {
            u64::MAX
        }
    }
}

/// The most index entries one page may examine: a filter that matches
/// little returns a short (or empty) page and a cursor rather than walking
/// a bot's whole log in one request.
pub const SCAN_LIMIT: usize = 5_000;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Queued, being sent, or waiting for a retry.
    Pending,
    /// A `2xx` answer was received.
    Delivered,
    /// A dead letter.
    Dead,
    /// Not sent: a later status of its message had already been delivered
    /// to the webhook (`suppress_regressions`).
    Suppressed,
}

impl Outcome {
    /// Reads `pending`, `delivered`, `dead` or `suppressed`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Outcome::Pending),
            "delivered" => Some(Outcome::Delivered),
            "dead" => Some(Outcome::Dead),
            "suppressed" => Some(Outcome::Suppressed),
            _ => None,
        }
    }
}

/// One delivery as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// The delivery; its body is only filled in by
    /// [`Queue::delivery`](super::Queue::delivery).
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The body's length in bytes.
    pub body_bytes: usize,
    /// Where it stands.
    pub outcome: Outcome,
    /// Why it is dead, for a dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was delivered or died, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

/// A position in a bot's log: the creation time and id of the last entry
/// a page examined. Shown to clients as `<ms>.<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Creation time of the entry, unix ms.
    pub created_ms: u64,
    /// Its delivery id.
    pub id: String,
}

impl Cursor {
    /// The text form, `<ms>.<id>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_ms, self.id)
    }

    /// Reads the text form; `None` if it is not one.
    pub fn decode(text: &str) -> Option<Self> {
        let (ms, id) = text.split_once('.')?;
        Some(Cursor {
            created_ms: ms.parse().ok()?,
            id: id.to_string(),
        })
        .filter(|c| !c.id.is_empty())
    }
}

/// What to look for in a bot's log. Every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only this webhook's deliveries.
    pub webhook: Option<String>,
    /// Only deliveries of events about this message.
    pub message_id: Option<String>,
    /// Only deliveries of events about this recipient.
    pub recipient: Option<String>,
    /// Only deliveries of events with this status.
    pub status: Option<Status>,
    /// Only deliveries that stand so.
    pub outcome: Option<Outcome>,
    /// Created at or after, unix ms.
    pub since_ms: Option<u64>,
    /// Created at or before, unix ms.
    pub until_ms: Option<u64>,
    /// The most deliveries in the page.
    pub limit: usize,
    /// Go on after this entry (from a previous page's `next_cursor`).
    pub cursor: Option<Cursor>,
}

impl DeliveryQuery {
    /// Whether `record` passes every filter (the time range and the cursor
    /// are the index walk's to apply).
    pub fn matches(&self, record: &DeliveryRecord) -> bool {
        let d = &record.delivery;
        self.webhook.as_ref().is_none_or(|w| *w == d.webhook)
            && self
                .message_id
                .as_ref()
                .is_none_or(|m| d.message_id.as_ref() == Some(m))
            && self
                .recipient
                .as_ref()
                .is_none_or(|r| d.recipient.as_ref() == Some(r))
            && self.status.is_none_or(|s| s == d.status)
            && self.outcome.is_none_or(|o| o == record.outcome)
    }

    /// This query without what `history` no longer keeps at `now`.
    pub(crate) fn kept(&self, history: History, now: u64) -> DeliveryQuery {
        let floor = history.floor_ms(now);
        DeliveryQuery {
            since_ms: Some(self.since_ms.map_or(floor, |since| since.max(floor))),
            ..self.clone()
        }
    }

    /// The newest creation time the walk starts from, and the id to go on
    /// after at that time (`None`: from the top of the range).
    pub(crate) fn start(&self) -> (u64, Option<&str>) {
        let until = self.until_ms.unwrap_or(u64::MAX);
        match &self.cursor {
            Some(c) if c.created_ms <= until => (c.created_ms, Some(c.id.as_str())),
            Some(_) | None => (until, None),
        }
    }
}

/// One page of a bot's log, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryPage {
    /// The deliveries found.
    pub deliveries: Vec<DeliveryRecord>,
    /// Where the next page starts; `None` when the walk reached the end.
    pub next_cursor: Option<String>,
}

/// Builds a page from the entries of an index walk, newest first: each
/// entry is offered in turn until the page is full or the walk has
/// examined [`SCAN_LIMIT`] entries.
pub(crate) struct Pager<'q> {
    query: &'q DeliveryQuery,
    page: DeliveryPage,
    examined: usize,
}

impl<'q> Pager<'q> {
    /// An empty page for `query`.
    pub(crate) fn new(query: &'q DeliveryQuery) -> Self {
        Pager {
            query,
            page: DeliveryPage::default(),
            examined: 0,
        }
    }

    /// Offers the entry (`created_ms`, `id`) and its record (`None` when
    /// the index outlived the job). `false` once the page is complete: the
    /// walk stops, and the page's cursor points after this entry.
    pub(crate) fn offer(
        &mut self,
        created_ms: u64,
        id: &str,
        record: Option<DeliveryRecord>,
    ) -> bool {
        self.examined += 1;
        if let Some(record) = record
            && self.query.matches(&record)
        {
            self.page.deliveries.push(record);
        }
        if self.page.deliveries.len() >= self.query.limit.max(1) || self.examined >= SCAN_LIMIT {
            self.page.next_cursor = Some(
                Cursor {
                    created_ms,
                    id: id.to_string(),
                }
                .encode(),
            );
            return false;
        }
        true
    }

    /// The page; the walk is over.
    pub(crate) fn finish(self) -> DeliveryPage {
        self.page
    }
}

/// What a resend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Queued again, due now, with a fresh attempt count.
    Queued,
    /// Still pending: it will be sent anyway.
    AlreadyPending,
    /// Its plugin failed: there is nothing to send.
    NothingToSend,
    /// Not in the log (never, or no longer).
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_write() {
        let cursor = Cursor {
            created_ms: 1_777_000_000_123,
            id: "msg_0190.x".to_string(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "12", "x.msg_1", "12.", ".msg_1"] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }
}
