//! What a reload changed, for its log line and metrics.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::config::{BotConfig, Config, FileChange, FileOutcome};

/// The difference between two configs, by bot and webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Bots added.
    pub bots_added: Vec<String>,
    /// Bots removed (their events are refused from now on).
    pub bots_removed: Vec<String>,
    /// Bots whose settings or webhooks changed.
    pub bots_changed: Vec<String>,
    /// Webhooks added, as `bot/webhook`.
    pub webhooks_added: Vec<String>,
    /// Webhooks removed, as `bot/webhook` (their pending deliveries become
    /// dead letters, reason "webhook removed", when next due).
    pub webhooks_removed: Vec<String>,
    /// Webhooks whose URL, auth, signing, events, plugin or settings changed.
    pub webhooks_changed: Vec<String>,
    /// Plugins compiled by this reload (new or changed bytes).
    pub plugins_compiled: Vec<String>,
    /// Plugins whose new bytes compile in the background: their webhooks
    /// keep the previous build until a reload that follows the compile.
    pub plugins_compiling: Vec<String>,
    /// Settings that changed in the file but need a restart; ignored.
    pub needs_restart: Vec<&'static str>,
    /// Whether anything else outside bots changed (tokens, delivery, meta).
    pub server_settings_changed: bool,
    /// Included files applied, removed, refused or ignored by this reload
    /// (files that did not change are left out).
    pub files: Vec<FileOutcome>,
}

impl Changes {
    /// Compares the bots and webhooks of `old` and `new`.
    pub fn between(old: &Config, new: &Config) -> Self {
        let mut changes = Changes::default();
        // Indexed: a reload of 1,000 bots compares 1,000 pairs, not 1,000².
        let old_bots: HashMap<&str, &BotConfig> =
            old.bots.iter().map(|b| (b.id.as_str(), &**b)).collect();
        let new_bots: HashMap<&str, &BotConfig> =
            new.bots.iter().map(|b| (b.id.as_str(), &**b)).collect();
        let old_ids: BTreeSet<&str> = old_bots.keys().copied().collect();
        let new_ids: BTreeSet<&str> = new_bots.keys().copied().collect();
        for bot in &new.bots {
            match old_bots.get(bot.id.as_str()) {
                None => {
                    changes.bots_added.push(bot.id.clone());
                    changes.webhooks_added.extend(
                        bot.webhooks
                            .iter()
                            .map(|w| format!("{}/{}", bot.id, w.name)),
                    );
                }
                // Shared and so unchanged: no need to compare the fields.
                Some(before) if !std::ptr::eq(*before, &**bot) && **before != **bot => {
                    changes.bots_changed.push(bot.id.clone());
                    webhook_changes(before, bot, &mut changes);
                }
                Some(_) => {}
            }
        }
        for id in old_ids.difference(&new_ids) {
            changes.bots_removed.push((*id).to_string());
            if let Some(bot) = old_bots.get(id) {
                changes
                    .webhooks_removed
                    .extend(bot.webhooks.iter().map(|w| format!("{id}/{}", w.name)));
            }
        }
        changes.server_settings_changed = old.server != new.server
            || old.delivery != new.delivery
            || old.meta != new.meta
            || old.queue.dedup_window != new.queue.dedup_window;
        changes
    }

    /// Whether the reload changed nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

fn webhook_changes(before: &BotConfig, after: &BotConfig, changes: &mut Changes) {
    for webhook in &after.webhooks {
        let key = format!("{}/{}", after.id, webhook.name);
        match before.webhooks.iter().find(|w| w.name == webhook.name) {
            None => changes.webhooks_added.push(key),
            Some(old) if old != webhook => changes.webhooks_changed.push(key),
            Some(_) => {}
        }
    }
    for webhook in &before.webhooks {
        if !after.webhooks.iter().any(|w| w.name == webhook.name) {
            changes
                .webhooks_removed
                .push(format!("{}/{}", after.id, webhook.name));
        }
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing changed");
        }
        let mut parts = Vec::new();
        for (label, list) in [
            ("bots added", &self.bots_added),
            ("bots removed", &self.bots_removed),
            ("bots changed", &self.bots_changed),
            ("webhooks added", &self.webhooks_added),
            ("webhooks removed", &self.webhooks_removed),
            ("webhooks changed", &self.webhooks_changed),
            ("plugins compiled", &self.plugins_compiled),
            (
                "plugins compiling in the background (their webhooks keep the previous build until then)",
                &self.plugins_compiling,
            ),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}: {}", abbreviate(list)));
            }
        }
        if self.server_settings_changed {
            parts.push("server/delivery/meta settings changed".into());
        }
        for (label, wanted) in [
            ("files applied", Kind::Applied),
            ("files removed", Kind::Removed),
            ("files refused", Kind::Refused),
            ("files ignored (empty)", Kind::Ignored),
        ] {
            let list: Vec<String> = self
                .files
                .iter()
                .filter(|f| Kind::of(&f.change) == Some(wanted))
                .map(|f| f.file.display().to_string())
                .collect();
            if !list.is_empty() {
                parts.push(format!("{label}: {}", abbreviate(&list)));
            }
        }
        if !self.needs_restart.is_empty() {
            parts.push(format!(
                "needs a restart (ignored): {}",
                self.needs_restart.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// A [`FileChange`] without its details, to group files in the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Applied,
    Removed,
    Refused,
    Ignored,
}

impl Kind {
    fn of(change: &FileChange) -> Option<Kind> {
        match change {
            FileChange::Applied => Some(Kind::Applied),
            FileChange::Removed => Some(Kind::Removed),
            FileChange::Refused { .. } => Some(Kind::Refused),
            FileChange::Ignored => Some(Kind::Ignored),
            FileChange::Unchanged => None,
        }
    }
}

/// The first few names and a count, so a reload of 1,000 bots logs one line.
fn abbreviate(list: &[String]) -> String {
    const SHOWN: usize = 5;
    if list.len() <= SHOWN {
        list.join(", ")
    } else {
        format!(
            "{} and {} more",
            list[..SHOWN].join(", "),
            list.len() - SHOWN
        )
    }
}
