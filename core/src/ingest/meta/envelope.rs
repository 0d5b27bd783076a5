//! The envelope of a Meta webhook body, and the walk down to its changes.
//!
//! ```json
//! {"object": "whatsapp_business_account",
//!  "entry": [{"id": "<WABA id>",
//!    "changes": [{"field": "messages",
//!      "value": {"metadata": {"display_phone_number": "...", "phone_number_id": "..."},
//!                "statuses": [...], "messages": [...], "contacts": [...], "errors": [...]}}]}]}
//! ```
//!
//! Only three things make a verified body "not a WhatsApp webhook" (`400`):
//! it is not JSON, it is not an object whose `object` is
//! `whatsapp_business_account`, or it has no `entry` array. Below that the
//! walk is lenient: unknown fields are ignored (Meta adds fields), and an
//! entry or change of an unexpected shape is reported as [`Malformed`] for
//! the mapper to skip and count, so one odd change never costs the others.
//!
//! The body is parsed into a [`serde_json::Value`] rather than derived
//! structs: a wrong type anywhere then stays local to the update it is in
//! (serde cannot resume a stream after a field failed to deserialize), and
//! serde_json's recursion limit bounds deep nesting.

use serde_json::{Map, Value};

/// The `object` of WhatsApp Business Account webhooks.
pub const OBJECT: &str = "whatsapp_business_account";

/// The `field` of changes that carry statuses and inbound messages.
pub const MESSAGES_FIELD: &str = "messages";

/// Why a verified body is not a WhatsApp webhook (`400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAWebhook {
    /// The body does not parse as JSON.
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error(
        "the body is not a JSON object; a WhatsApp webhook is {{\"object\": \"{OBJECT}\", \"entry\": [...]}}"
    )]
    NotAnObject,
    /// `object` is missing or names another product (Instagram, Page, ...).
    #[error(
        "\"object\" is {0}, not \"{OBJECT}\": only WhatsApp Business Account webhooks are accepted here"
    )]
    WrongObject(String),
    /// `entry` is missing or not an array.
    #[error("\"entry\" is {0}, not an array of entries")]
    NoEntries(String),
}

/// A part of the envelope of an unexpected shape: skipped, not fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Where it is, e.g. `entry[0].changes[2].value`.
    pub place: String,
    /// What is wrong with it (`is not an object`).
    pub problem: &'static str,
}

/// A parsed WhatsApp Business Account webhook body.
#[derive(Debug, Clone)]
pub struct Envelope {
    entries: Vec<Value>,
}

/// One change of one entry: the unit a phone number id is attached to.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// Where it is in the body, for logs: `(entry index, change index)`.
    pub position: (usize, usize),
    /// `field`: only [`MESSAGES_FIELD`] carries statuses and messages.
    pub field: Option<&'a str>,
    /// `value`.
    pub value: &'a Map<String, Value>,
}

impl Envelope {
    /// Parses and checks the envelope of a (verified) body.
    ///
    /// # Errors
    ///
    /// [`NotAWebhook`] saying which of the three checks failed.
    pub fn parse(body: &[u8]) -> Result<Self, NotAWebhook> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| NotAWebhook::NotJson(e.to_string()))?;
        let Value::Object(mut root) = value else {
            return Err(NotAWebhook::NotAnObject);
        };
        match root.get("object") {
            Some(Value::String(object)) if object == OBJECT => {}
            Some(Value::String(object)) => {
                return Err(NotAWebhook::WrongObject(format!("{:?}", shorten(object))));
            }
            other => return Err(NotAWebhook::WrongObject(describe(other).to_string())),
        }
        match root.remove("entry") {
            Some(Value::Array(entries)) => Ok(Envelope { entries }),
            other => Err(NotAWebhook::NoEntries(describe(other.as_ref()).to_string())),
        }
    }

    /// How many entries the body has.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Every change of every entry, in body order; a malformed entry or
    /// change comes out as [`Malformed`] in its place.
    pub fn changes(&self) -> impl Iterator<Item = Result<Change<'_>, Malformed>> {
        self.entries
            .iter()
            .enumerate()
            .flat_map(|(e, entry)| entry_changes(e, entry))
    }
}

/// The changes of entry number `e`.
fn entry_changes(e: usize, entry: &Value) -> Vec<Result<Change<'_>, Malformed>> {
    let Value::Object(entry) = entry else {
        return vec![Err(malformed(format!("entry[{e}]"), "is not an object"))];
    };
    let changes = match entry.get("changes") {
        Some(Value::Array(changes)) => changes,
        None | Some(Value::Null) => return Vec::new(),
        Some(_) => {
            return vec![Err(malformed(
                format!("entry[{e}].changes"),
                "is not an array",
            ))];
        }
    };
    changes
        .iter()
        .enumerate()
        .map(|(c, change)| {
            let Value::Object(change) = change else {
                return Err(malformed(
                    format!("entry[{e}].changes[{c}]"),
                    "is not an object",
                ));
            };
            let field = change.get("field").and_then(Value::as_str);
            match change.get("value") {
                Some(Value::Object(value)) => Ok(Change {
                    position: (e, c),
                    field,
                    value,
                }),
                _ => Err(malformed(
                    format!("entry[{e}].changes[{c}].value"),
                    "is missing or not an object",
                )),
            }
        })
        .collect()
}

impl<'a> Change<'a> {
    /// Whether the change carries statuses and messages (`field` is
    /// `messages`).
    pub fn is_messages(&self) -> bool {
        self.field == Some(MESSAGES_FIELD)
    }

    /// `metadata.phone_number_id`: which business number it is about.
    pub fn phone_number_id(&self) -> Option<&'a str> {
        self.metadata("phone_number_id")
    }

    /// `metadata.display_phone_number`: the business number, as shown.
    pub fn display_phone_number(&self) -> Option<&'a str> {
        self.metadata("display_phone_number")
    }

    fn metadata(&self, key: &str) -> Option<&'a str> {
        self.value.get("metadata")?.get(key)?.as_str()
    }

    /// `statuses[]`.
    ///
    /// # Errors
    ///
    /// [`Malformed`] when present but not an array.
    pub fn statuses(&self) -> Result<&'a [Value], Malformed> {
        self.array("statuses")
    }

    /// `messages[]`: inbound messages.
    ///
    /// # Errors
    ///
    /// [`Malformed`] when present but not an array.
    pub fn messages(&self) -> Result<&'a [Value], Malformed> {
        self.array("messages")
    }

    /// `errors[]`: errors about the change as a whole.
    pub fn errors(&self) -> &'a [Value] {
        self.array("errors").unwrap_or_default()
    }

    /// The array at `key`; absent and `null` are empty.
    fn array(&self, key: &'static str) -> Result<&'a [Value], Malformed> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => {
                let (e, c) = self.position;
                Err(malformed(
                    format!("entry[{e}].changes[{c}].value.{key}"),
                    "is not an array",
                ))
            }
        }
    }
}

fn malformed(place: String, problem: &'static str) -> Malformed {
    Malformed { place, problem }
}

/// A value's kind, for error messages (`missing`, `a number`).
fn describe(value: Option<&Value>) -> &'static str {
    match value {
        None => "missing",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    }
}

/// At most 64 characters of a sender-chosen string, for messages and logs.
pub(super) fn shorten(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Envelope, NotAWebhook> {
        Envelope::parse(body.as_bytes())
    }

    #[test]
    fn only_three_things_make_a_body_not_a_webhook() {
        assert!(matches!(parse("{not json"), Err(NotAWebhook::NotJson(_))));
        assert_eq!(parse("[1]").map(|_| ()), Err(NotAWebhook::NotAnObject));
        let error = parse(r#"{"object": "instagram", "entry": []}"#).expect_err("instagram");
        assert!(error.to_string().contains("\"instagram\""), "{error}");
        assert!(matches!(
            parse(r#"{"entry": []}"#),
            Err(NotAWebhook::WrongObject(_))
        ));
        let error = parse(r#"{"object": "whatsapp_business_account"}"#).expect_err("no entry");
        assert_eq!(error, NotAWebhook::NoEntries("missing".into()));
        let error = parse(r#"{"object": "whatsapp_business_account", "entry": {}}"#)
            .expect_err("entry object");
        assert_eq!(error, NotAWebhook::NoEntries("an object".into()));
        let empty = parse(r#"{"object": "whatsapp_business_account", "entry": [], "new": 1}"#)
            .expect("unknown fields are fine");
        assert_eq!(empty.changes().count(), 0);
    }

    #[test]
    fn odd_entries_and_changes_are_reported_in_place() {
        let body = r#"{"object": "whatsapp_business_account", "entry": [
            5,
            {"id": "1", "changes": "no"},
            {"id": "2"},
            {"id": "3", "changes": [
                {"field": "messages", "value": {"metadata": {"phone_number_id": "77", "display_phone_number": "1555"}, "statuses": [{}], "messages": {}}},
                {"field": "messages"},
                [],
                {"field": "account_update", "value": {}}
            ]}
        ]}"#;
        let envelope = parse(body).expect("envelope");
        assert_eq!(envelope.entry_count(), 4);
        let changes: Vec<_> = envelope.changes().collect();
        let places: Vec<String> = changes
            .iter()
            .filter_map(|c| c.as_ref().err().map(|m| m.place.clone()))
            .collect();
        assert_eq!(
            places,
            [
                "entry[0]",
                "entry[1].changes",
                "entry[3].changes[1].value",
                "entry[3].changes[2]"
            ]
        );
        let good: Vec<_> = changes.iter().filter_map(|c| c.as_ref().ok()).collect();
        assert_eq!(good.len(), 2);
        assert!(good[0].is_messages());
        assert_eq!(good[0].phone_number_id(), Some("77"));
        assert_eq!(good[0].display_phone_number(), Some("1555"));
        assert_eq!(good[0].statuses().map(<[_]>::len), Ok(1));
        assert!(good[0].messages().is_err());
        assert!(good[0].errors().is_empty());
        assert!(!good[1].is_messages());
    }
}
