//! Shards: each bot's keys live under one of `shards` hash tags, so every
//! script touches one Redis Cluster slot while the bots together spread over
//! every primary.
//!
//! A bot's shard is a stable hash of its id (FNV-1a, the same on every
//! dispatcher and version), so its dedup marks, lanes, jobs, dead letters and
//! delivery log stay together. With one shard (the default) the tag is
//! `{prefix}`, exactly the keys of versions before sharding. With more, shard
//! `k`'s tag is the first `{prefix:k-j}` (j = 0, 1, ...) whose slot falls in
//! the `k`-th of `shards` equal parts of Redis Cluster's 16,384 slots: with
//! the even split `redis-cli --cluster create` makes, the shards land on the
//! primaries in turn instead of wherever their names happen to hash.
//!
//! Each shard also remembers when it next has work, as far as this
//! dispatcher knows (its own writes, the other dispatchers' wake-ups and its
//! last claim's answer), so a claim asks only the shards that may have some:
//! an idle shard costs one claim a second, not one per wake-up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Redis Cluster's slot count.
const SLOTS: u32 = 16_384;

/// How long a shard's "nothing due before t" stays trusted: a wake-up that
/// got lost (a pub/sub reconnect) costs at most this much latency. The
/// delivery workers' idle poll is no longer, so they come back in time.
pub(super) const RECHECK_MS: u64 = 1_000;

/// The shards of one queue.
pub(super) struct Shards {
    /// Each shard's hash tag with braces, `{...}`: its keys' prefix.
    tags: Vec<String>,
    /// Per shard, the unix ms it next has due work, as far as known
    /// (`u64::MAX`: none known).
    next_due: Vec<AtomicU64>,
    /// Per shard, when it was last claimed from.
    checked: Vec<AtomicU64>,
    /// Where the next claim starts, so no shard is always served last.
    turn: AtomicUsize,
}

impl Shards {
    /// The layout of `count` shards under `prefix` (at least one).
    pub(super) fn new(prefix: &str, count: u16) -> Self {
        let count = u32::from(count.max(1));
        let tags: Vec<String> = if count == 1 {
            vec![format!("{{{prefix}}}")]
        } else {
            (0..count).map(|k| spread_tag(prefix, k, count)).collect()
        };
        Shards {
            next_due: tags.iter().map(|_| AtomicU64::new(0)).collect(),
            checked: tags.iter().map(|_| AtomicU64::new(0)).collect(),
            tags,
            turn: AtomicUsize::new(0),
        }
    }

    /// How many shards there are.
    pub(super) fn len(&self) -> usize {
        self.tags.len()
    }

    /// Shard `shard`'s key prefix, `{...}`.
    pub(super) fn tag(&self, shard: usize) -> &str {
        &self.tags[shard]
    }

    /// Every shard's key prefix, in shard order.
    pub(super) fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The shard of `bot`'s keys.
    pub(super) fn of_bot(&self, bot: &str) -> usize {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bot.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // The remainder is below the shard count, a usize.
        (hash % self.tags.len() as u64) as usize
    }

    /// Where a claim starting now goes first; successive claims start at
    /// successive shards.
    pub(super) fn first_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed) % self.tags.len()
    }

    /// Whether a claim should ask `shard` at `now`: it may have due work, or
    /// it has not been asked for [`RECHECK_MS`].
    pub(super) fn worth_asking(&self, shard: usize, now: u64) -> bool {
        self.next_due[shard].load(Ordering::Relaxed) <= now
            || now.saturating_sub(self.checked[shard].load(Ordering::Relaxed)) >= RECHECK_MS
    }

    /// When `shard` next has due work, as far as known.
    pub(super) fn next_due(&self, shard: usize) -> Option<u64> {
        Some(self.next_due[shard].load(Ordering::Relaxed)).filter(|&due| due != u64::MAX)
    }

    /// A claim of `shard` at `now` answered that its next work is due at
    /// `next` (`None`: it has none).
    pub(super) fn claimed(&self, shard: usize, now: u64, next: Option<u64>) {
        self.checked[shard].store(now, Ordering::Relaxed);
        self.next_due[shard].store(next.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Work in `shard` is (or will be) due at `due_ms`.
    pub(super) fn work_at(&self, shard: usize, due_ms: u64) {
        self.next_due[shard].fetch_min(due_ms, Ordering::Relaxed);
    }
}

/// Shard `k` of `count`'s tag: the first `{prefix:k-j}` in the `k`-th part
/// of the slot space. A part holds at least one slot while `count` is at
/// most [`SLOTS`], and crc16 reaches every slot, so the search ends; it takes
/// about `count` tries per shard.
fn spread_tag(prefix: &str, k: u32, count: u32) -> String {
    let (low, high) = (k * SLOTS / count, (k + 1) * SLOTS / count);
    (0u64..)
        .map(|j| format!("{{{prefix}:{k}-{j}}}"))
        .find(|tag| {
            let slot = u32::from(slot_of(tag));
            (low..high).contains(&slot)
        })
        .unwrap_or_else(|| format!("{{{prefix}:{k}}}"))
}

/// The Redis Cluster slot of `key`: CRC16/XMODEM of its hash tag (the part
/// between the first `{` and the next `}`, when not empty), modulo 16,384.
pub(super) fn slot_of(key: &str) -> u16 {
    let hashed = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    // SLOTS fits in a u16 with room; the remainder is below it.
    (u32::from(crc16::State::<crc16::XMODEM>::calculate(hashed.as_bytes())) % SLOTS) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_keeps_the_keys_of_versions_before_sharding() {
        let shards = Shards::new("statushook", 1);
        assert_eq!(shards.tags(), ["{statushook}"]);
        assert_eq!(shards.of_bot("any"), 0);
    }

    #[test]
    fn shards_take_equal_parts_of_the_slot_space() {
        let shards = Shards::new("statushook", 3);
        let parts: Vec<u32> = shards
            .tags()
            .iter()
            .map(|tag| u32::from(slot_of(tag)) * 3 / SLOTS)
            .collect();
        assert_eq!(parts, [0, 1, 2]);
        // Stable: the same tags every time.
        assert_eq!(Shards::new("statushook", 3).tags(), shards.tags());
    }

    #[test]
    fn slots_are_redis_clusters() {
        // `CLUSTER KEYSLOT foo` answers 12182; a tag hashes alone.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{foo}:lanes"), 12182);
        assert_eq!(slot_of("{}foo"), slot_of("{}foo"));
        assert_ne!(slot_of("{}foo"), slot_of("foo"));
    }

    #[test]
    fn a_bot_always_gets_the_same_shard_and_bots_spread() {
        let shards = Shards::new("p", 4);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let bot = format!("bot-{i}");
            assert_eq!(shards.of_bot(&bot), shards.of_bot(&bot));
            counts[shards.of_bot(&bot)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        // Pinned: a change of hash would strand every queued job.
        assert_eq!(Shards::new("p", 16).of_bot("acme"), fnv_acme() % 16);
    }

    fn fnv_acme() -> usize {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in b"acme" {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % 16) as usize
    }
}
