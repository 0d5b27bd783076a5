//! The rules every canonical event obeys, whatever its source.
//!
//! They live here once: [`parse_event`](super::parse_event) applies them field
//! by field to JSON a sender posted, and [`check`] applies them to an event
//! built in code (the Meta mapper), so the two sources cannot drift apart.
//! `docs/canonical-event.md` states them for people.

use super::{FieldError, Status, StatusEvent};

/// Longest `id`, in bytes.
pub const MAX_ID: usize = 256;
/// Longest `bot_id`, in bytes.
pub const MAX_BOT_ID: usize = 128;
/// Longest `message_id`, in bytes.
pub const MAX_MESSAGE_ID: usize = 512;
/// Longest `recipient`, in bytes (after a leading `+` is dropped).
pub const MAX_RECIPIENT: usize = 64;
/// One past the latest `timestamp`: unix seconds stay below 2^40.
pub const TIMESTAMP_END: u64 = 1 << 40;

/// Why a string of at most `max` bytes is not acceptable, if it is not.
pub(crate) fn length(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        Err("must not be empty".into())
    } else if value.len() > max {
        Err(format!(
            "is {} bytes long; at most {max} are allowed",
            value.len()
        ))
    } else {
        Ok(())
    }
}

/// An event id is printable ASCII: it travels in `webhook-id`-like headers
/// and log lines unescaped.
pub(crate) fn id_characters(id: &str) -> Result<(), &'static str> {
    if id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err("must be printable ASCII")
    }
}

/// A bot id is `[A-Za-z0-9_.-]`: it appears in URLs, Redis keys and metric
/// labels.
pub(crate) fn bot_id_characters(bot_id: &str) -> Result<(), &'static str> {
    if bot_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Ok(())
    } else {
        Err("may contain only letters, digits, '_', '.' and '-'")
    }
}

/// Whether `timestamp` is within the unix seconds an event may carry.
pub(crate) fn timestamp_in_range(timestamp: u64) -> bool {
    (1..TIMESTAMP_END).contains(&timestamp)
}

/// The reply rule: `reply` is present exactly when the status is `replied`.
pub(crate) fn reply_matches(status: Status, has_reply: bool) -> Result<(), String> {
    match (status, has_reply) {
        (Status::Replied, false) => Err("is required when status is \"replied\"".into()),
        (other, true) if other != Status::Replied => Err(format!(
            "is only allowed when status is \"replied\", not {:?}",
            other.as_str()
        )),
        _ => Ok(()),
    }
}

/// Checks an event built in code against every rule [`parse_event`]
/// applies to JSON, naming the first field that breaks one.
///
/// [`parse_event`]: super::parse_event
pub fn check(event: &StatusEvent) -> Result<(), FieldError> {
    let problem = |field: &str, message: String| FieldError {
        field: field.to_string(),
        message,
    };
    length(&event.id, MAX_ID).map_err(|m| problem("id", m))?;
    id_characters(&event.id).map_err(|m| problem("id", m.into()))?;
    length(&event.bot_id, MAX_BOT_ID).map_err(|m| problem("bot_id", m))?;
    bot_id_characters(&event.bot_id).map_err(|m| problem("bot_id", m.into()))?;
    let about_a_message = event.status.is_about_a_message();
    for (field, value, max) in [
        ("message_id", &event.message_id, MAX_MESSAGE_ID),
        ("recipient", &event.recipient, MAX_RECIPIENT),
    ] {
        match value {
            Some(value) => length(value, max).map_err(|m| problem(field, m))?,
            None if about_a_message => return Err(problem(field, "is required".into())),
            None => {}
        }
    }
    if !timestamp_in_range(event.timestamp) {
        return Err(problem(
            "timestamp",
            format!(
                "must be whole unix seconds between 1 and 2^40-1, not {}",
                event.timestamp
            ),
        ));
    }
    if event.campaign.as_ref().is_some_and(|c| c.id.is_empty()) {
        return Err(problem("campaign.id", "must not be empty".into()));
    }
    if event.error.as_ref().is_some_and(|e| e.code.is_empty()) {
        return Err(problem("error.code", "must not be empty".into()));
    }
    reply_matches(event.status, event.reply.is_some()).map_err(|m| problem("reply", m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;

    fn event() -> StatusEvent {
        parse_event(
            br#"{"id":"e1","bot_id":"acme","message_id":"wamid.1","status":"read",
                 "timestamp":1750857384,"recipient":"15550002222"}"#,
        )
        .expect("valid")
    }

    /// Each broken event must fail `check` on the same field that
    /// `parse_event` names for its JSON: the two paths share one rule book.
    #[test]
    fn check_and_parse_agree_on_every_rule() {
        type Breaks = fn(&mut StatusEvent);
        let cases: Vec<(&str, Breaks)> = vec![
            ("id", |e| e.id = "x".repeat(MAX_ID + 1)),
            ("id", |e| e.id = "tab\there".into()),
            ("id", |e| e.id.clear()),
            ("bot_id", |e| e.bot_id = "a b".into()),
            ("bot_id", |e| e.bot_id = "b".repeat(MAX_BOT_ID + 1)),
            ("message_id", |e| {
                e.message_id = Some("m".repeat(MAX_MESSAGE_ID + 1))
            }),
            ("message_id", |e| e.message_id = None),
            ("recipient", |e| {
                e.recipient = Some("1".repeat(MAX_RECIPIENT + 1))
            }),
            ("timestamp", |e| e.timestamp = TIMESTAMP_END),
            ("timestamp", |e| e.timestamp = 0),
            ("reply", |e| e.reply = Some("hi".into())),
            ("reply", |e| e.status = Status::Replied),
        ];
        for (field, break_it) in cases {
            let mut e = event();
            break_it(&mut e);
            let checked = check(&e).expect_err(field);
            assert_eq!(checked.field, field, "{checked}");
            let json = serde_json::to_vec(&e).expect("serialise");
            let parsed = parse_event(&json).expect_err(field);
            assert_eq!(parsed.first_field(), Some(field), "{parsed}");
        }
        check(&event()).expect("the valid event passes");
    }
}
