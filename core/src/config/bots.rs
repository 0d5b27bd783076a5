//! `[[bots]]`: tenant ids, their phone number ids and tokens, and the rules
//! across bots (unique ids, a phone number id owned by one bot).

use std::collections::HashMap;
use std::sync::Arc;

use super::model::BotConfig;
use super::reader::{Need, Reader, Table};
use super::validate::{non_empty_strings, tokens};
use super::webhook::{WEBHOOK_KEYS, webhook};

const BOT_KEYS: &[&str] = &[
    "id",
    "channel_name",
    "phone_number_ids",
    "ingest_tokens",
    "admin_tokens",
    "meta_app_secrets",
    "ingest_rate_limit",
    "webhooks",
];
const MAX_BOT_ID_BYTES: usize = 128;

/// What earlier bots claimed, for the rules across bots.
#[derive(Default)]
struct Claims {
    /// Bot id → the key path of the bot that has it.
    ids: HashMap<String, String>,
    /// Phone number id → how to name the bot that owns it.
    phone_number_ids: HashMap<String, String>,
}

/// Every bot; `None` when any problem was recorded.
pub(super) fn bots(r: &mut Reader<'_>, root: &Table<'_, '_>) -> Option<Vec<Arc<BotConfig>>> {
    let Some(value) = root.get("bots") else {
        return Some(Vec::new());
    };
    let tables = r.tables("bots", value, BOT_KEYS)?;
    let mut claims = Claims::default();
    let built: Vec<Option<BotConfig>> = tables.iter().map(|t| bot(r, t, &mut claims)).collect();
    built.into_iter().map(|bot| bot.map(Arc::new)).collect()
}

fn bot(r: &mut Reader<'_>, t: &Table<'_, '_>, claims: &mut Claims) -> Option<BotConfig> {
    let id = match r.field(t, "id", Need::Required, Reader::string) {
        Some(id) if !is_bot_id(id.get_ref()) => {
            r.problem(
                &t.key("id"),
                Some(id.span()),
                format!(
                    "invalid bot id {:?}: use 1 to {MAX_BOT_ID_BYTES} letters, digits, '_', '.' or '-'",
                    id.get_ref()
                ),
            );
            None
        }
        Some(id) => {
            if let Some(first) = claims.ids.get(id.get_ref()) {
                r.problem(
                    &t.key("id"),
                    Some(id.span()),
                    format!(
                        "duplicate bot id {:?}; {first} already has it",
                        id.get_ref()
                    ),
                );
                None
            } else {
                claims
                    .ids
                    .insert(id.get_ref().clone(), t.path().to_string());
                Some(id.into_inner())
            }
        }
        None => None,
    };
    // How messages about another bot name this one.
    let owner = match &id {
        Some(id) => format!("bot {id:?} ({})", t.path()),
        None => t.path().to_string(),
    };

    let channel_name = match r.field(t, "channel_name", Need::Optional, Reader::string) {
        Some(name) if name.get_ref().trim().is_empty() => {
            r.problem(
                &t.key("channel_name"),
                Some(name.span()),
                "must not be blank; remove the key to leave it unset",
            );
            None
        }
        Some(name) => Some(Some(name.into_inner())),
        None if t.has("channel_name") => None,
        None => Some(None),
    };

    let listed = r
        .field(t, "phone_number_ids", Need::Optional, Reader::strings)
        .unwrap_or_default();
    let mut seen: Vec<&String> = Vec::with_capacity(listed.len());
    for (path, phone) in &listed {
        let number = phone.get_ref();
        if seen.contains(&number) {
            r.problem(
                path,
                Some(phone.span()),
                format!("{number:?} is listed twice"),
            );
        } else if let Some(other) = claims.phone_number_ids.get(number) {
            r.problem(
                path,
                Some(phone.span()),
                format!(
                    "phone number id {number:?} is owned by both {other} and {owner}; each phone number id belongs to one bot"
                ),
            );
        } else if !number.is_empty() {
            claims
                .phone_number_ids
                .insert(number.clone(), owner.clone());
        }
        seen.push(number);
    }
    let phone_number_ids = non_empty_strings(r, listed);

    let ingest_tokens = tokens(r, t, "ingest_tokens");
    let admin_tokens = tokens(r, t, "admin_tokens");
    let meta_app_secrets = tokens(r, t, "meta_app_secrets");
    let ingest_rate_limit = super::webhook::rate(r, t, "ingest_rate_limit");

    let webhooks = match t.get("webhooks") {
        None => Some(Vec::new()),
        Some(value) => r
            .tables(&t.key("webhooks"), value, WEBHOOK_KEYS)
            .and_then(|tables| {
                let mut names = HashMap::new();
                let built: Vec<_> = tables.iter().map(|w| webhook(r, w, &mut names)).collect();
                built.into_iter().collect::<Option<Vec<_>>>()
            }),
    };

    Some(BotConfig {
        id: id?,
        channel_name: channel_name?,
        phone_number_ids,
        ingest_tokens,
        admin_tokens,
        meta_app_secrets,
        ingest_rate_limit: ingest_rate_limit?,
        webhooks: webhooks?,
    })
}

/// `[A-Za-z0-9_.-]{1,128}`, as docs/canonical-event.md defines `bot_id`.
fn is_bot_id(id: &str) -> bool {
    (1..=MAX_BOT_ID_BYTES).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
