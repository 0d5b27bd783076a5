//! Strict parsing and validation of canonical events from JSON.
//!
//! Validation is by hand over a `serde_json::Value` rather than a derived
//! `Deserialize`, so that every problem is reported at once and names its
//! field (`campaign.id`, `[3].timestamp`) in words a sender can act on.

use std::fmt;

use serde_json::{Map, Value};

use super::rules::{self, MAX_BOT_ID, MAX_ID, MAX_MESSAGE_ID, MAX_RECIPIENT};
use super::{Campaign, ErrorInfo, Status, StatusEvent};

/// The most events one batch may carry (docs/http-api.md, `POST /v1/events`).
pub const MAX_BATCH: usize = 1000;

/// At most this many problems are reported for one body; the rest are counted.
const MAX_REPORTED: usize = 50;

/// One problem with one field of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where the problem is: `status`, `error.code`, `[2].timestamp`; empty for
    /// the body as a whole.
    pub field: String,
    /// What is wrong, as a sentence fragment (`must be a string`).
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// An event (or batch) that failed validation, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidEvent {
    /// The problems, in field order; at most a bounded number.
    pub errors: Vec<FieldError>,
    /// How many further problems were found but not listed.
    pub more: usize,
}

impl InvalidEvent {
    fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidEvent {
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
            more: 0,
        }
    }

    /// The first problem's field, for the error body's machine-readable part.
    pub fn first_field(&self) -> Option<&str> {
        self.errors.first().map(|e| e.field.as_str())
    }
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        if self.more > 0 {
            write!(f, "; and {} more", self.more)?;
        }
        Ok(())
    }
}

/// Parses one canonical event from JSON bytes.
///
/// # Errors
///
/// [`InvalidEvent`] listing every problem: not JSON, not an object, unknown
/// fields, missing or mistyped fields, values out of range.
pub fn parse_event(body: &[u8]) -> Result<StatusEvent, InvalidEvent> {
    let value = parse_json(body)?;
    let mut errors = Collector::default();
    let event = event_from_value(&value, "", &mut errors);
    errors.finish(event)
}

/// Parses what `POST /v1/events` accepts: one event, or an array of 1 to
/// [`MAX_BATCH`] events. The batch is valid only if every event is.
///
/// # Errors
///
/// [`InvalidEvent`] listing every problem, each prefixed by its array index
/// (`[3].status`) in a batch.
pub fn parse_batch(body: &[u8]) -> Result<Vec<StatusEvent>, InvalidEvent> {
    let value = parse_json(body)?;
    let items = match &value {
        Value::Array(items) if items.is_empty() => {
            return Err(InvalidEvent::single(
                "",
                "the batch is empty; send 1 to 1000 events",
            ));
        }
        Value::Array(items) if items.len() > MAX_BATCH => {
            return Err(InvalidEvent::single(
                "",
                format!(
                    "the batch has {} events; at most {MAX_BATCH} are accepted per request",
                    items.len()
                ),
            ));
        }
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    let batched = value.is_array();
    let mut errors = Collector::default();
    let mut events = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let prefix = if batched {
            format!("[{index}].")
        } else {
            String::new()
        };
        if let Some(event) = event_from_value(item, &prefix, &mut errors) {
            events.push(event);
        }
    }
    errors.finish(Some(events))
}

fn parse_json(body: &[u8]) -> Result<Value, InvalidEvent> {
    serde_json::from_slice(body)
        .map_err(|e| InvalidEvent::single("", format!("the body is not valid JSON: {e}")))
}

/// Gathers problems across fields and events.
#[derive(Default)]
struct Collector {
    errors: Vec<FieldError>,
    more: usize,
}

impl Collector {
    fn push(&mut self, field: String, message: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(FieldError {
                field,
                message: message.into(),
            });
        } else {
            self.more += 1;
        }
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, InvalidEvent> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(InvalidEvent {
                errors: self.errors,
                more: self.more,
            }),
        }
    }
}

const EVENT_FIELDS: &[&str] = &[
    "id",
    "bot_id",
    "message_id",
    "status",
    "timestamp",
    "recipient",
    "sender",
    "channel_name",
    "campaign",
    "template",
    "reply",
    "error",
    "final",
];
const CAMPAIGN_FIELDS: &[&str] = &["id", "name"];
const ERROR_FIELDS: &[&str] = &["code", "title", "message", "details", "type", "trace_id"];

/// Reads the fields of one object, recording problems under `prefix`.
struct Fields<'a, 'c> {
    object: &'a Map<String, Value>,
    prefix: &'a str,
    errors: &'c mut Collector,
}

impl<'a, 'c> Fields<'a, 'c> {
    /// Starts reading `value` as an object with exactly the `known` fields.
    fn new(
        value: &'a Value,
        prefix: &'a str,
        known: &[&str],
        errors: &'c mut Collector,
    ) -> Option<Self> {
        let Value::Object(object) = value else {
            let place = prefix.trim_end_matches('.');
            errors.push(
                place.to_string(),
                format!("must be a JSON object, not {}", kind(value)),
            );
            return None;
        };
        for key in object.keys() {
            if !known.contains(&key.as_str()) {
                errors.push(
                    format!("{prefix}{key}"),
                    format!("unknown field; the known fields are: {}", known.join(", ")),
                );
            }
        }
        Some(Fields {
            object,
            prefix,
            errors,
        })
    }

    fn field(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn problem(&mut self, name: &str, message: impl Into<String>) {
        let field = self.field(name);
        self.errors.push(field, message);
    }

    /// The value of `name`, treating `null` as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|v| !v.is_null())
    }

    fn optional_string(&mut self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(name, format!("must be a string, not {}", kind(other)));
                None
            }
        }
    }

    /// A required string of `min..=max` bytes.
    fn required_string(&mut self, name: &str, max: usize) -> Option<String> {
        if self.get(name).is_none() {
            self.problem(name, "is required");
            return None;
        }
        let s = self.optional_string(name)?;
        self.check_length(name, &s, max).then_some(s)
    }

    fn check_length(&mut self, name: &str, s: &str, max: usize) -> bool {
        match rules::length(s, max) {
            Ok(()) => true,
            Err(message) => {
                self.problem(name, message);
                false
            }
        }
    }
}

fn event_from_value(value: &Value, prefix: &str, errors: &mut Collector) -> Option<StatusEvent> {
    let before = errors.errors.len() + errors.more;
    let mut f = Fields::new(value, prefix, EVENT_FIELDS, errors)?;

    let id = f.required_string("id", MAX_ID);
    if let Some(Err(message)) = id.as_deref().map(rules::id_characters) {
        f.problem("id", message);
    }
    let bot_id = f.required_string("bot_id", MAX_BOT_ID);
    if let Some(Err(message)) = bot_id.as_deref().map(rules::bot_id_characters) {
        f.problem("bot_id", message);
    }
    let status = match f.get("status") {
        None => {
            f.problem("status", "is required");
            None
        }
        Some(Value::String(name)) => match name.parse::<Status>() {
            Ok(status) => Some(status),
            Err(e) => {
                f.problem("status", e.to_string());
                None
            }
        },
        Some(other) => {
            f.problem("status", format!("must be a string, not {}", kind(other)));
            None
        }
    };
    let about_a_message = status.is_none_or(Status::is_about_a_message);

    let message_id = if about_a_message {
        f.required_string("message_id", MAX_MESSAGE_ID)
    } else {
        let s = f.optional_string("message_id");
        s.filter(|s| f.check_length("message_id", s, MAX_MESSAGE_ID))
    };

    let timestamp = match f.get("timestamp") {
        None => {
            f.problem("timestamp", "is required");
            None
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(t) if rules::timestamp_in_range(t) => Some(t),
            _ => {
                f.problem(
                    "timestamp",
                    format!("must be whole unix seconds between 1 and 2^40-1, not {n}"),
                );
                None
            }
        },
        Some(other) => {
            f.problem(
                "timestamp",
                format!("must be an integer of unix seconds, not {}", kind(other)),
            );
            None
        }
    };

    let recipient = if about_a_message {
        f.required_string("recipient", usize::MAX).map(strip_plus)
    } else {
        f.optional_string("recipient").map(strip_plus)
    };
    if let Some(r) = &recipient {
        f.check_length("recipient", r, MAX_RECIPIENT);
    }
    let sender = f.optional_string("sender").map(strip_plus);
    let channel_name = f.optional_string("channel_name");
    let template = f.optional_string("template");

    let campaign = f.get("campaign").and_then(|v| {
        let prefix = f.field("campaign.");
        let mut c = Fields::new(v, &prefix, CAMPAIGN_FIELDS, f.errors)?;
        let id = c.required_string("id", usize::MAX);
        let name = c.optional_string("name");
        Some(Campaign { id: id?, name })
    });

    let reply = f.optional_string("reply");
    if let Some(Err(message)) = status.map(|s| rules::reply_matches(s, reply.is_some())) {
        f.problem("reply", message);
    }

    let error = f.get("error").and_then(|v| {
        let prefix = f.field("error.");
        let mut e = Fields::new(v, &prefix, ERROR_FIELDS, f.errors)?;
        let code = e.required_string("code", usize::MAX);
        let info = ErrorInfo {
            code: code.unwrap_or_default(),
            title: e.optional_string("title"),
            message: e.optional_string("message"),
            details: e.optional_string("details"),
            kind: e.optional_string("type"),
            trace_id: e.optional_string("trace_id"),
        };
        Some(info)
    });

    let is_final = match f.get("final") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            f.problem(
                "final",
                format!("must be true or false, not {}", kind(other)),
            );
            true
        }
    };

    // `f` borrows `errors`; its last use is above.
    if errors.errors.len() + errors.more > before {
        return None;
    }
    Some(StatusEvent {
        id: id?,
        bot_id: bot_id?,
        message_id,
        status: status?,
        timestamp: timestamp?,
        recipient,
        sender,
        channel_name,
        campaign,
        template,
        reply,
        error,
        is_final,
    })
}

/// Phone numbers are digits only: a leading `+` is dropped on ingest.
fn strip_plus(s: String) -> String {
    match s.strip_prefix('+') {
        Some(rest) => rest.to_string(),
        None => s,
    }
}

/// A JSON value's kind, for messages such as "must be a string, not a number".
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "id": "evt-2f6c1a",
            "bot_id": "acme-support",
            "message_id": "wamid.HBgM",
            "status": "failed",
            "timestamp": 1777325700u64,
            "recipient": "5939800000000",
            "sender": "16044441111",
            "channel_name": "Acme Support",
            "campaign": {"id": "69efd6834d469ea6", "name": "November promo"},
            "template": "autentica_01",
            "reply": null,
            "error": {"code": "131026", "title": "Message undeliverable", "message": "m",
                      "details": "d", "type": null, "trace_id": null},
            "final": true
        })
    }

    fn parse(value: &Value) -> Result<StatusEvent, InvalidEvent> {
        parse_event(value.to_string().as_bytes())
    }

    fn fields(error: &InvalidEvent) -> Vec<&str> {
        error.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn the_spec_example_parses() {
        let event = parse(&valid()).expect("valid");
        assert_eq!(event.status, Status::Failed);
        assert_eq!(
            event.campaign.as_ref().map(|c| c.id.as_str()),
            Some("69efd6834d469ea6")
        );
        assert_eq!(
            event.error.as_ref().map(|e| e.code.as_str()),
            Some("131026")
        );
        assert!(event.is_final);
    }

    #[test]
    fn unknown_fields_are_rejected_by_path() {
        let mut v = valid();
        v["staus"] = json!("read");
        v["campaign"]["nmae"] = json!("x");
        let error = parse(&v).expect_err("typos must not pass");
        assert_eq!(fields(&error), ["staus", "campaign.nmae"]);
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let v = json!({"id": "", "bot_id": "bad bot!", "status": "seen", "timestamp": "now"});
        let error = parse(&v).expect_err("invalid");
        assert_eq!(
            fields(&error),
            [
                "id",
                "bot_id",
                "status",
                "message_id",
                "timestamp",
                "recipient"
            ]
        );
        assert!(
            error
                .to_string()
                .contains("valid statuses are: queued, created"),
            "{error}"
        );
    }

    #[test]
    fn message_id_and_recipient_are_required_except_for_disconnected() {
        let mut v = valid();
        if let Some(o) = v.as_object_mut() {
            o.remove("message_id");
            o.remove("recipient");
        }
        let error = parse(&v).expect_err("required");
        assert_eq!(fields(&error), ["message_id", "recipient"]);
        v["status"] = json!("disconnected");
        let event = parse(&v).expect("disconnected needs neither");
        assert_eq!(event.message_id, None);
    }

    #[test]
    fn reply_goes_with_replied_only() {
        let mut v = valid();
        v["reply"] = json!("Yes");
        assert_eq!(fields(&parse(&v).expect_err("reply on failed")), ["reply"]);
        v["status"] = json!("replied");
        assert_eq!(parse(&v).expect("replied").reply.as_deref(), Some("Yes"));
        v["reply"] = Value::Null;
        assert_eq!(
            fields(&parse(&v).expect_err("replied needs reply")),
            ["reply"]
        );
    }

    #[test]
    fn limits_and_types_are_checked() {
        let cases = [
            ("timestamp", json!(0)),
            ("timestamp", json!(1u64 << 40)),
            ("timestamp", json!(1.5)),
            ("timestamp", json!(-1)),
            ("id", json!("x".repeat(257))),
            ("id", json!("tab\there")),
            ("bot_id", json!("b".repeat(129))),
            ("message_id", json!("m".repeat(513))),
            ("recipient", json!("1".repeat(65))),
            ("final", json!("yes")),
            ("sender", json!(16044441111u64)),
            ("campaign", json!("c-1")),
            ("error", json!({"title": "no code"})),
        ];
        for (field, value) in cases {
            let mut v = valid();
            v[field] = value.clone();
            let error = parse(&v).expect_err(&format!("{field} = {value}"));
            assert!(
                error.errors.iter().any(|e| e.field.starts_with(field)),
                "{field} = {value}: {error}"
            );
        }
    }

    #[test]
    fn null_is_absent_and_plus_is_stripped() {
        let mut v = valid();
        v["template"] = Value::Null;
        v["final"] = Value::Null;
        v["recipient"] = json!("+5939800000000");
        let event = parse(&v).expect("valid");
        assert_eq!(event.template, None);
        assert!(event.is_final, "final defaults to true");
        assert_eq!(event.recipient.as_deref(), Some("5939800000000"));
    }

    #[test]
    fn batches_are_indexed_and_bounded() {
        let mut bad = valid();
        bad["status"] = json!("nope");
        let body = json!([valid(), bad]).to_string();
        let error = parse_batch(body.as_bytes()).expect_err("one bad event fails the batch");
        assert_eq!(fields(&error), ["[1].status"]);

        assert_eq!(parse_batch(b"[]").expect_err("empty").errors[0].field, "");
        let many = Value::Array(vec![valid(); MAX_BATCH + 1]).to_string();
        assert!(
            parse_batch(many.as_bytes())
                .expect_err("too many")
                .to_string()
                .contains("at most 1000")
        );
        let full = Value::Array(vec![valid(); MAX_BATCH]).to_string();
        assert_eq!(
            parse_batch(full.as_bytes()).expect("1000 is fine").len(),
            MAX_BATCH
        );
        assert_eq!(
            parse_batch(valid().to_string().as_bytes())
                .expect("single")
                .len(),
            1
        );
    }

    #[test]
    fn not_json_and_not_objects_are_clear() {
        let error = parse_event(b"{\"id\": ").expect_err("truncated");
        assert!(
            error.to_string().starts_with("the body is not valid JSON"),
            "{error}"
        );
        let error = parse_batch(b"[1, \"two\"]").expect_err("not objects");
        assert_eq!(fields(&error), ["[0]", "[1]"]);
        assert!(
            error
                .to_string()
                .contains("must be a JSON object, not a number"),
            "{error}"
        );
    }

    #[test]
    fn serializes_back_to_the_canonical_form() {
        let event = parse(&valid()).expect("valid");
        let again =
            parse_event(&serde_json::to_vec(&event).expect("serialize")).expect("round trip");
        assert_eq!(event, again);
    }
}
