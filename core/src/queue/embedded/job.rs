//! The small, mutable record of one job (the `jobs` table): everything but
//! the delivery itself, which never changes and lives in `payloads`.

use super::fault::{Fault, corrupt};

/// The record format; bumped if the layout ever changes. Version 1 had no
/// webhook (the queue had no lanes); opening such a file fills it in.
/// Version 2 had no per-message order; it reads as unordered.
const VERSION: u8 = 3;
const VERSION_WITHOUT_ORDER: u8 = 2;
const VERSION_WITHOUT_WEBHOOK: u8 = 1;
const PENDING: u8 = 0;
const DEAD: u8 = 1;
const DELIVERED: u8 = 2;
const WAITING: u8 = 3;
const SUPPRESSED: u8 = 4;

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stage {
    /// Queued, due (or leased until) `due_ms`: it has the entry
    /// `(lane, due_ms, id)` in its lane.
    Pending {
        /// When the job is next due, unix ms.
        due_ms: u64,
    },
    /// A dead letter: it has the entry `(bot, dead_ms, id)` in the dead index.
    Dead {
        /// When it died, unix ms.
        dead_ms: u64,
        /// Why.
        reason: String,
    },
    /// Delivered, and kept for the delivery log until its retention ends:
    /// no index entry but its `log_order` one.
    Delivered {
        /// When the successful attempt was recorded, unix ms.
        done_ms: u64,
    },
    /// Ordered, and waiting behind another delivery of its message: it has
    /// the entry `(lane, message, rank, id)` in `waiting`, none in its lane.
    Waiting {
        /// Since when, unix ms.
        since_ms: u64,
    },
    /// Not sent: a later status of its message was delivered first. Kept
    /// for the log like a delivered job.
    Suppressed {
        /// When it was suppressed, unix ms.
        done_ms: u64,
        /// Why.
        reason: String,
    },
}

/// The per-message order a job takes part in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ordered {
    /// Whether a regression is suppressed rather than sent.
    pub(super) suppress: bool,
    /// Its message.
    pub(super) message: String,
    /// Its status's place in the message's lifecycle.
    pub(super) rank: u8,
}

/// The state of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Job {
    /// The bot it belongs to (the dead-letter index is per bot).
    pub(super) bot: String,
    /// The webhook it is for: with the bot, its lane.
    pub(super) webhook: String,
    /// The fencing token of the current lease; 0 when not leased.
    pub(super) token: u64,
    /// How many attempts are recorded: the sequence number of the next one.
    pub(super) attempts: u32,
    /// Attempts recorded before the last replay, not counted by claims.
    pub(super) base: u32,
    /// Pending or dead.
    pub(super) stage: Stage,
    /// Its message's order, when its webhook orders per message.
    pub(super) ordered: Option<Ordered>,
}

impl Job {
    /// A job just enqueued: never leased, no attempts.
    pub(super) fn new(bot: &str, webhook: &str, stage: Stage) -> Self {
        Job {
            bot: bot.to_string(),
            webhook: webhook.to_string(),
            token: 0,
            attempts: 0,
            base: 0,
            stage,
            ordered: None,
        }
    }

    /// The lane its pending entry lives in.
    pub(super) fn lane(&self) -> String {
        crate::queue::lane(&self.bot, &self.webhook)
    }

    /// Whether `token` is the fencing token of this job's current lease.
    pub(super) fn is_leased_with(&self, token: u64) -> bool {
        self.token != 0 && self.token == token
    }

    /// The attempts made since creation or the last replay.
    pub(super) fn attempts_in_cycle(&self) -> u32 {
        self.attempts.saturating_sub(self.base)
    }

    /// The stored bytes: version, stage, token, attempts, base, due or dead
    /// time, then the bot, the webhook and (dead and suppressed only) the
    /// reason, each length-prefixed; then the order: 0 (none), or 1 or 2
    /// (suppressing regressions) followed by the rank and the message.
    pub(super) fn encode(&self) -> Vec<u8> {
        let (tag, at_ms, reason) = match &self.stage {
            Stage::Pending { due_ms } => (PENDING, *due_ms, None),
            Stage::Dead { dead_ms, reason } => (DEAD, *dead_ms, Some(reason.as_str())),
            Stage::Delivered { done_ms } => (DELIVERED, *done_ms, None),
            Stage::Waiting { since_ms } => (WAITING, *since_ms, None),
            Stage::Suppressed { done_ms, reason } => (SUPPRESSED, *done_ms, Some(reason.as_str())),
        };
        let mut out = Vec::with_capacity(
            44 + self.bot.len() + self.webhook.len() + reason.map_or(0, str::len),
        );
        out.push(VERSION);
        out.push(tag);
        out.extend_from_slice(&self.token.to_le_bytes());
        out.extend_from_slice(&self.attempts.to_le_bytes());
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&at_ms.to_le_bytes());
        put_str(&mut out, &self.bot);
        put_str(&mut out, &self.webhook);
        if let Some(reason) = reason {
            put_str(&mut out, reason);
        }
        match &self.ordered {
            None => out.push(0),
            Some(ordered) => {
                out.push(if ordered.suppress { 2 } else { 1 });
                out.push(ordered.rank);
                put_str(&mut out, &ordered.message);
            }
        }
        out
    }

    /// Reads a record written by [`Job::encode`]; `id` names it in errors.
    /// A version 1 record reads with an empty webhook.
    pub(super) fn decode(id: &str, bytes: &[u8]) -> Result<Self, Fault> {
        let mut r = Reader { bytes, id };
        let version = r.u8()?;
        if ![VERSION, VERSION_WITHOUT_ORDER, VERSION_WITHOUT_WEBHOOK].contains(&version) {
            return Err(corrupt(
                id,
                format!("job record version {version}, expected {VERSION}"),
            ));
        }
        let tag = r.u8()?;
        let token = r.u64()?;
        let attempts = r.u32()?;
        let base = r.u32()?;
        let at_ms = r.u64()?;
        let bot = r.string()?;
        let webhook = if version == VERSION_WITHOUT_WEBHOOK {
            String::new()
        } else {
            r.string()?
        };
        let stage = match tag {
            PENDING => Stage::Pending { due_ms: at_ms },
            DEAD => Stage::Dead {
                dead_ms: at_ms,
                reason: r.string()?,
            },
            DELIVERED => Stage::Delivered { done_ms: at_ms },
            WAITING => Stage::Waiting { since_ms: at_ms },
            SUPPRESSED => Stage::Suppressed {
                done_ms: at_ms,
                reason: r.string()?,
            },
            other => return Err(corrupt(id, format!("unknown job stage {other}"))),
        };
        let ordered = if version == VERSION {
            match r.u8()? {
                0 => None,
                mode @ (1 | 2) => Some(Ordered {
                    suppress: mode == 2,
                    rank: r.u8()?,
                    message: r.string()?,
                }),
                other => return Err(corrupt(id, format!("unknown job order {other}"))),
            }
        } else {
            None
        };
        if !r.bytes.is_empty() {
            return Err(corrupt(id, "trailing bytes in the job record"));
        }
        Ok(Job {
            bot,
            webhook,
            token,
            attempts,
            base,
            stage,
            ordered,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Bots and reasons are short; a longer string is cut at the limit rather
    // than written with a length that does not match.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// A cursor over a record's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    id: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        if self.bytes.len() < n {
            return Err(corrupt(self.id, "job record cut short"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Fault> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Fault> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Fault> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, Fault> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| corrupt(self.id, e))
    }
}
