//! The check: every webhook an accepted event matched either got it (a 2xx
//! answer at least once) or holds a dead letter for it with a reason, and
//! every repeat came with the same `webhook-id` and the same bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::chaos::Cluster;
use super::layout::{self, ADMIN_TOKEN, BOTS, HOOKS};
use super::load::{Event, State};
use super::receivers::Record;

/// The most dead letters one listing returns (core/src/ingest/admin.rs).
const MAX_LIST: usize = 1000;

#[derive(Debug, Clone)]
pub struct Dead {
    pub event: usize,
    pub bot: usize,
    pub hook: usize,
    pub reason: String,
}

/// The dead letters of every bot, gathered by polling the admin API (a
/// listing holds the newest 1000, so it is read often enough that no bot
/// gains 1000 between two reads).
#[derive(Default)]
pub struct DeadLetters {
    pub by_id: HashMap<String, Dead>,
    /// Listings that were full and whose oldest entry was new: older ones
    /// may have been missed.
    pub possible_gaps: Vec<String>,
    pub malformed: Vec<String>,
    pub failed_polls: u64,
}

impl DeadLetters {
    /// Reads every bot's dead letters once.
    pub async fn poll(&mut self, cluster: &Cluster) {
        for bot in 0..BOTS {
            match list(cluster, &layout::bot_name(bot)).await {
                Some(letters) => self.add(bot, letters),
                None => self.failed_polls += 1,
            }
        }
    }

    fn add(&mut self, bot: usize, letters: Vec<serde_json::Value>) {
        let full = letters.len() >= MAX_LIST;
        let mut oldest_new = false;
        for (i, letter) in letters.iter().enumerate() {
            let id = letter["id"].as_str().unwrap_or("").to_string();
            let event = letter["event_id"]
                .as_str()
                .and_then(|e| e.strip_prefix("soak-"))
                .and_then(|n| n.parse::<usize>().ok());
            let hook = letter["webhook"].as_str().and_then(layout::hook_index);
            let named = letter["bot"].as_str().and_then(layout::bot_index);
            let reason = letter["reason"].as_str().unwrap_or("").to_string();
            let (Some(event), Some(hook), Some(named), false) = (event, hook, named, id.is_empty())
            else {
                if self.malformed.len() < 10 {
                    self.malformed.push(letter.to_string());
                }
                continue;
            };
            if named != bot && self.malformed.len() < 10 {
                self.malformed
                    .push(format!("listed under {}: {letter}", layout::bot_name(bot)));
            }
            let new = !self.by_id.contains_key(&id);
            if i + 1 == letters.len() {
                oldest_new = new;
            }
            self.by_id.entry(id).or_insert(Dead {
                event,
                bot: named,
                hook,
                reason,
            });
        }
        if full && oldest_new {
            self.possible_gaps.push(format!(
                "{}: a full listing ({MAX_LIST}) whose oldest entry was new",
                layout::bot_name(bot)
            ));
        }
    }
}

/// `GET /v1/bots/{bot}/dead-letters?limit=1000` from whichever dispatcher
/// answers (a few tries over about 10 s).
async fn list(cluster: &Cluster, bot: &str) -> Option<Vec<serde_json::Value>> {
    for attempt in 0..10 {
        let port = cluster.ports[(attempt + usize::from(!cluster.up(0))) % 2];
        let sent = cluster
            .client
            .get(format!(
                "http://127.0.0.1:{port}/v1/bots/{bot}/dead-letters?limit={MAX_LIST}"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(response) = sent
            && response.status().as_u16() == 200
            && let Ok(body) = response.json::<serde_json::Value>().await
            && let Some(letters) = body["dead_letters"].as_array()
        {
            return Some(letters.clone());
        }
        tokio::time::sleep(Duration::from_millis(500 + 100 * attempt as u64)).await;
    }
    None
}

/// A dead letter's reason without its particulars: `410 Gone`, `ran out
/// of attempts`.
pub fn reason_kind(reason: &str) -> String {
    let end = reason.find([':', '(']).unwrap_or(reason.len());
    reason[..end].trim().to_string()
}

/// What the check found.
#[derive(Default)]
pub struct Outcome {
    pub events: usize,
    pub accepted: usize,
    pub accepted_earlier: usize,
    pub gave_up: usize,
    pub pending: usize,
    pub expected: usize,
    /// Expected deliveries a receiver answered 2xx at least once.
    pub delivered: usize,
    /// Expected deliveries with a dead letter and no 2xx.
    pub dead_only: usize,
    /// Both: a 2xx the dispatcher did not see (answered after its timeout,
    /// or its ack lost), then a dead letter on a later attempt.
    pub delivered_and_dead: usize,
    pub lost: usize,
    pub lost_examples: Vec<String>,
    /// Deliveries answered 2xx more than once, and the extra 2xx copies.
    pub duplicated: usize,
    pub duplicate_copies: usize,
    /// Requests beyond the first of each `webhook-id`, any answer.
    pub resends: usize,
    pub inconsistent: usize,
    pub inconsistent_examples: Vec<String>,
    /// Deliveries of an accepted event to a webhook it should not reach.
    pub unexpected: usize,
    pub unexpected_examples: Vec<String>,
    /// Deliveries of events never confirmed accepted (allowed).
    pub unconfirmed_delivered: usize,
    pub dead_by_reason: BTreeMap<String, usize>,
    pub dead_without_reason: usize,
}

impl Outcome {
    /// Expected deliveries not yet received nor dead-lettered.
    pub fn outstanding(&self) -> usize {
        self.lost
    }
}

/// Checks what arrived and what died against what was accepted.
pub fn check(events: &[Event], record: &Record, dead: &DeadLetters) -> Outcome {
    let mut out = Outcome {
        events: events.len(),
        ..Outcome::default()
    };
    // (event, hook) -> the webhook-ids received, and whether any got a 2xx.
    let mut received: HashMap<(usize, usize), (Vec<&str>, bool)> = HashMap::new();
    for (id, seen) in &record.by_id {
        out.resends += (seen.requests as usize).saturating_sub(1);
        if seen.ok > 1 {
            out.duplicated += 1;
            out.duplicate_copies += seen.ok as usize - 1;
        }
        let entry = received.entry((seen.event, seen.hook)).or_default();
        entry.0.push(id);
        entry.1 |= seen.ok > 0;
    }
    let mut died: HashMap<(usize, usize), Vec<(&str, &Dead)>> = HashMap::new();
    for (id, letter) in &dead.by_id {
        died.entry((letter.event, letter.hook))
            .or_default()
            .push((id, letter));
    }
    out.inconsistent = record.inconsistent.len();
    out.inconsistent_examples
        .extend(record.inconsistent.iter().take(5).cloned());
    let inconsistent = |out: &mut Outcome, what: String| {
        out.inconsistent += 1;
        if out.inconsistent_examples.len() < 10 {
            out.inconsistent_examples.push(what);
        }
    };
    let mut counted_dead: HashSet<&str> = HashSet::new();
    for (n, event) in events.iter().enumerate() {
        match event.state {
            State::Accepted => out.accepted += 1,
            State::AcceptedEarlier => {
                out.accepted += 1;
                out.accepted_earlier += 1;
            }
            State::GaveUp => out.gave_up += 1,
            State::Pending => out.pending += 1,
        }
        let bot = usize::from(event.bot);
        for (hook, hook_name) in HOOKS.iter().enumerate() {
            let got = received.get(&(n, hook));
            let gone = died.get(&(n, hook));
            if !event.accepted() {
                if got.is_some() {
                    out.unconfirmed_delivered += 1;
                }
                continue;
            }
            let expected = layout::expected(bot, hook, event.status());
            if !expected {
                if got.is_some() || gone.is_some() {
                    out.unexpected += 1;
                    if out.unexpected_examples.len() < 10 {
                        out.unexpected_examples.push(format!(
                            "event {n} ({} {}) reached webhook {} ({}), whose filter or format excludes it",
                            layout::bot_name(bot),
                            event.status(),
                            hook_name,
                            layout::PLUGINS[layout::plugin_of(bot, hook)]
                        ));
                    }
                }
                continue;
            }
            out.expected += 1;
            let ok = got.is_some_and(|g| g.1);
            // One delivery per (event, webhook): one webhook-id, received
            // and dead-lettered alike.
            let mut ids: Vec<&str> = got.map(|g| g.0.clone()).unwrap_or_default();
            if let Some(letters) = gone {
                for &(id, letter) in letters {
                    counted_dead.insert(id);
                    ids.push(id);
                    *out.dead_by_reason
                        .entry(reason_kind(&letter.reason))
                        .or_default() += 1;
                    if letter.reason.trim().is_empty() {
                        out.dead_without_reason += 1;
                    }
                    if letter.bot != bot {
                        inconsistent(
                            &mut out,
                            format!("dead letter {id} of event {n} is listed under another bot"),
                        );
                    }
                }
            }
            ids.sort_unstable();
            ids.dedup();
            if ids.len() > 1 {
                inconsistent(
                    &mut out,
                    format!(
                        "event {n} ({} {}) webhook {}: {} webhook-ids {ids:?}",
                        layout::bot_name(bot),
                        event.status(),
                        hook_name,
                        ids.len()
                    ),
                );
            }
            match (ok, gone.is_some()) {
                (true, false) => out.delivered += 1,
                (true, true) => {
                    out.delivered += 1;
                    out.delivered_and_dead += 1;
                }
                (false, true) => out.dead_only += 1,
                (false, false) => {
                    out.lost += 1;
                    if out.lost_examples.len() < 10 {
                        let seen = got.map_or_else(
                            || "never arrived".to_string(),
                            |g| {
                                let answers: Vec<String> =
                                    g.0.iter()
                                        .filter_map(|id| record.by_id.get(*id))
                                        .map(|s| format!("{:?}", s.answers))
                                        .collect();
                                format!("arrived as {:?}, answered {}", g.0, answers.join(" "))
                            },
                        );
                        out.lost_examples.push(format!(
                            "event {n} (soak-{n}, {} {}, accepted {:?}) webhook {} ({}): {seen}, no dead letter",
                            layout::bot_name(bot),
                            event.status(),
                            event.state,
                            hook_name,
                            layout::PLUGINS[layout::plugin_of(bot, hook)]
                        ));
                    }
                }
            }
        }
    }
    for (id, letter) in &dead.by_id {
        if !counted_dead.contains(id.as_str())
            && events.get(letter.event).is_some_and(|e| !e.accepted())
        {
            *out.dead_by_reason
                .entry(format!(
                    "{} (event never confirmed)",
                    reason_kind(&letter.reason)
                ))
                .or_default() += 1;
        }
    }
    out
}
