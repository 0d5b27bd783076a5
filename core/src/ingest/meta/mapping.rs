//! Meta updates to canonical events (docs/meta.md, "Statuses" and "Replies"; "statuses[] →
//! canonical" and "messages[] → replied").
//!
//! [`map`] turns every status and every inbound reply of every change into a
//! [`StatusEvent`], or into a [`Skipped`] with a fixed [`SkipReason`]. Ids are
//! deterministic (`meta:<wamid>:<status>`, `meta:<message id>:replied`), so
//! Meta's re-sends are duplicates, not new events.
//!
//! Every event built here is checked against the rules of canonical events
//! (lengths, printable ids, timestamp range, `reply` exactly on `replied`)
//! before it is returned: an update that cannot become a valid event is
//! skipped with [`SkipReason::Invalid`], never passed on and never a reason to
//! refuse the whole body. The property test in `tests/meta.rs` holds this
//! check to [`parse_event`](crate::event::parse_event): every event produced
//! must parse back to itself.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::envelope::{Change, Envelope, Malformed, shorten};
use crate::event::{self, Campaign, ErrorInfo, Status, StatusEvent};
use crate::route::Snapshot;

/// The bot that owns a phone number id, as the mapper needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotRef<'a> {
    /// The bot's id (`bot_id` of the events).
    pub id: &'a str,
    /// The bot's configured channel name, if any (`channel_name`).
    pub channel_name: Option<&'a str>,
}

/// Which bot owns a Meta phone number id: the routing table in production,
/// a plain map in tests and benchmarks.
pub trait BotLookup {
    /// The bot that lists `phone_number_id` in its `phone_number_ids`.
    fn owner_of(&self, phone_number_id: &str) -> Option<BotRef<'_>>;
}

impl BotLookup for Snapshot {
    fn owner_of(&self, phone_number_id: &str) -> Option<BotRef<'_>> {
        self.bot_for_phone(phone_number_id).map(|bot| BotRef {
            id: &bot.config.id,
            channel_name: bot.config.channel_name.as_deref(),
        })
    }
}

/// Phone number id → bot id, with no channel names.
impl BotLookup for HashMap<String, String> {
    fn owner_of(&self, phone_number_id: &str) -> Option<BotRef<'_>> {
        self.get(phone_number_id).map(|id| BotRef {
            id,
            channel_name: None,
        })
    }
}

/// Why an update (or a whole change) was acknowledged but not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// `metadata.phone_number_id` is owned by no bot.
    UnknownPhoneNumberId,
    /// The change's `field` is not `messages` (account updates, template
    /// status, ...): one per change.
    IgnoredField,
    /// A status other than `sent`, `delivered`, `read`, `played`, `failed`.
    UnknownStatus,
    /// An inbound reply-able message without `context.id`: the user wrote
    /// first, it answers nothing the business sent.
    NoContext,
    /// An inbound message that is not a reply (image, reaction, location,
    /// flow response, ...).
    UnsupportedMessage,
    /// A `messages` change with neither statuses nor messages (only
    /// `errors` or `contacts`): one per change.
    NoUpdates,
    /// An entry, change or update of an unexpected shape.
    Malformed,
    /// An update that cannot become a valid canonical event (missing or
    /// mistyped id, timestamp or recipient; a value out of bounds).
    Invalid,
    /// The phone number id belongs to a bot the signing Meta app may not
    /// speak for (its secret is another bot's `meta_app_secrets`).
    AppNotAllowed,
}

impl SkipReason {
    /// The machine word (`unknown_phone_number_id`).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::UnknownPhoneNumberId => "unknown_phone_number_id",
            SkipReason::IgnoredField => "ignored_field",
            SkipReason::UnknownStatus => "unknown_status",
            SkipReason::NoContext => "no_context",
            SkipReason::UnsupportedMessage => "unsupported_message",
            SkipReason::NoUpdates => "no_updates",
            SkipReason::Malformed => "malformed",
            SkipReason::Invalid => "invalid_update",
            SkipReason::AppNotAllowed => "app_not_allowed",
        }
    }

    /// The `reason` label of `statushook_ingest_rejected_total` for it
    /// (`meta_unknown_phone_number_id`).
    pub fn metric_reason(self) -> &'static str {
        match self {
            SkipReason::UnknownPhoneNumberId => "meta_unknown_phone_number_id",
            SkipReason::IgnoredField => "meta_ignored_field",
            SkipReason::UnknownStatus => "meta_unknown_status",
            SkipReason::NoContext => "meta_no_context",
            SkipReason::UnsupportedMessage => "meta_unsupported_message",
            SkipReason::NoUpdates => "meta_no_updates",
            SkipReason::Malformed => "meta_malformed",
            SkipReason::Invalid => "meta_invalid_update",
            SkipReason::AppNotAllowed => "meta_app_not_allowed",
        }
    }
}

/// One update (or change) that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Why.
    pub reason: SkipReason,
    /// Where in the body: `entry[0].changes[1].value.statuses[2]`.
    pub place: String,
    /// The change's `metadata.phone_number_id`, when it has one.
    pub phone_number_id: Option<String>,
    /// What exactly, for the log line.
    pub detail: String,
}

/// What one body maps to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    /// Valid canonical events, in body order.
    pub events: Vec<StatusEvent>,
    /// Updates and changes acknowledged but not queued.
    pub skipped: Vec<Skipped>,
}

/// Maps every change of `envelope` with `bots` telling which bot owns each
/// phone number id.
pub fn map<B: BotLookup + ?Sized>(envelope: &Envelope, bots: &B) -> Mapped {
    let mut mapped = Mapped::default();
    for change in envelope.changes() {
        match change {
            Ok(change) => map_change(&change, bots, &mut mapped),
            Err(Malformed { place, problem }) => mapped.skipped.push(Skipped {
                reason: SkipReason::Malformed,
                place,
                phone_number_id: None,
                detail: problem.to_string(),
            }),
        }
    }
    mapped
}

/// What every update of one change shares.
struct Source<'a> {
    bot: BotRef<'a>,
    sender: Option<&'a str>,
    change_errors: &'a [Value],
}

fn map_change<B: BotLookup + ?Sized>(change: &Change<'_>, bots: &B, out: &mut Mapped) {
    let (e, c) = change.position;
    let place = format!("entry[{e}].changes[{c}]");
    let phone = change.phone_number_id();
    let skip = |reason, place: String, detail: String| Skipped {
        reason,
        place,
        phone_number_id: phone.map(str::to_string),
        detail,
    };
    if !change.is_messages() {
        let detail = match change.field {
            Some(field) => format!("field {:?} is not \"messages\"", shorten(field)),
            None => "the change has no field".to_string(),
        };
        out.skipped
            .push(skip(SkipReason::IgnoredField, place, detail));
        return;
    }
    let mut updates: Vec<(&str, &[Value])> = Vec::with_capacity(2);
    for (key, items) in [
        ("statuses", change.statuses()),
        ("messages", change.messages()),
    ] {
        match items {
            Ok(items) => updates.push((key, items)),
            Err(m) => out
                .skipped
                .push(skip(SkipReason::Malformed, m.place, m.problem.to_string())),
        }
    }
    if updates.iter().all(|(_, items)| items.is_empty()) {
        out.skipped.push(skip(
            SkipReason::NoUpdates,
            place,
            "the change has no statuses and no messages".to_string(),
        ));
        return;
    }
    let owner = phone.and_then(|p| bots.owner_of(p));
    let Some(bot) = owner else {
        let (reason, detail) = match phone {
            Some(p) => (
                SkipReason::UnknownPhoneNumberId,
                format!("no bot owns phone number id {:?}", shorten(p)),
            ),
            None => (
                SkipReason::Malformed,
                "metadata.phone_number_id is missing or not a string".to_string(),
            ),
        };
        for (key, items) in updates {
            for i in 0..items.len() {
                out.skipped.push(skip(
                    reason,
                    format!("{place}.value.{key}[{i}]"),
                    detail.clone(),
                ));
            }
        }
        return;
    };
    let source = Source {
        bot,
        sender: change.display_phone_number().map(strip_plus),
        change_errors: change.errors(),
    };
    for (key, items) in updates {
        for (i, item) in items.iter().enumerate() {
            let result = if key == "statuses" {
                map_status(item, &source)
            } else {
                map_message(item, &source)
            };
            match result {
                Ok(event) => out.events.push(event),
                Err((reason, detail)) => {
                    out.skipped
                        .push(skip(reason, format!("{place}.value.{key}[{i}]"), detail));
                }
            }
        }
    }
}

type Skip = (SkipReason, String);

fn invalid(detail: impl Into<String>) -> Skip {
    (SkipReason::Invalid, detail.into())
}

/// One `statuses[]` item.
fn map_status(item: &Value, source: &Source<'_>) -> Result<StatusEvent, Skip> {
    let Value::Object(s) = item else {
        return Err((SkipReason::Malformed, "the status is not an object".into()));
    };
    let name = text(s, "status").ok_or_else(|| invalid("status is missing or not a string"))?;
    let status = match name {
        "sent" => Status::Sent,
        "delivered" => Status::Delivered,
        "read" | "played" => Status::Read,
        "failed" => Status::Failed,
        other => {
            return Err((
                SkipReason::UnknownStatus,
                format!("status {:?} has no canonical counterpart", shorten(other)),
            ));
        }
    };
    let wamid = text(s, "id").ok_or_else(|| invalid("id is missing or not a string"))?;
    let timestamp = timestamp(s)?;
    let recipient = text(s, "recipient_id")
        .or_else(|| text(s, "recipient_user_id"))
        .ok_or_else(|| invalid("recipient_id is missing or not a string"))?;
    let error = s
        .get("errors")
        .and_then(first_error)
        .or_else(|| source.change_errors.first().and_then(error_info));
    let (campaign, template) = callback_data(s.get("biz_opaque_callback_data"));
    let event = StatusEvent {
        id: format!("meta:{wamid}:{name}"),
        bot_id: source.bot.id.to_string(),
        message_id: Some(wamid.to_string()),
        status,
        timestamp,
        recipient: Some(strip_plus(recipient).to_string()),
        sender: source.sender.map(str::to_string),
        channel_name: source.bot.channel_name.map(str::to_string),
        campaign,
        template,
        reply: None,
        error,
        is_final: matches!(status, Status::Read | Status::Failed),
    };
    event::check(&event).map_err(|e| invalid(e.to_string()))?;
    Ok(event)
}

/// One `messages[]` item: a `replied` event when it answers a business
/// message with a button, list choice or text.
fn map_message(item: &Value, source: &Source<'_>) -> Result<StatusEvent, Skip> {
    let Value::Object(m) = item else {
        return Err((SkipReason::Malformed, "the message is not an object".into()));
    };
    let reply = reply_text(m).ok_or_else(|| {
        let kind = text(m, "type").map_or("untyped", shorten);
        (
            SkipReason::UnsupportedMessage,
            format!("a {kind:?} message is not a button, list or text reply"),
        )
    })?;
    let context_id = m
        .get("context")
        .and_then(|c| c.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            (
                SkipReason::NoContext,
                "the message has no context.id: it answers no message the business sent".into(),
            )
        })?;
    let id = text(m, "id").ok_or_else(|| invalid("id is missing or not a string"))?;
    let timestamp = timestamp(m)?;
    let from = text(m, "from")
        .or_else(|| text(m, "from_user_id"))
        .ok_or_else(|| invalid("from is missing or not a string"))?;
    let event = StatusEvent {
        id: format!("meta:{id}:replied"),
        bot_id: source.bot.id.to_string(),
        message_id: Some(context_id.to_string()),
        status: Status::Replied,
        timestamp,
        recipient: Some(strip_plus(from).to_string()),
        sender: source.sender.map(str::to_string),
        channel_name: source.bot.channel_name.map(str::to_string),
        campaign: None,
        template: None,
        reply: Some(reply.to_string()),
        error: None,
        is_final: true,
    };
    event::check(&event).map_err(|e| invalid(e.to_string()))?;
    Ok(event)
}

/// `button.text` (template quick reply), `interactive.button_reply.title`,
/// `interactive.list_reply.title` or `text.body`, whichever is there.
fn reply_text(m: &Map<String, Value>) -> Option<&str> {
    let at = |outer: &str, inner: &str| m.get(outer)?.get(inner)?.as_str();
    let interactive = |kind: &str| m.get("interactive")?.get(kind)?.get("title")?.as_str();
    at("button", "text")
        .or_else(|| interactive("button_reply"))
        .or_else(|| interactive("list_reply"))
        .or_else(|| at("text", "body"))
}

/// `timestamp`: unix seconds, as Meta's string (or, leniently, a number).
fn timestamp(o: &Map<String, Value>) -> Result<u64, Skip> {
    match o.get("timestamp") {
        Some(Value::String(s)) => s
            .parse::<u64>()
            .map_err(|_| invalid(format!("timestamp {:?} is not unix seconds", shorten(s)))),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| invalid(format!("timestamp {n} is not unix seconds"))),
        _ => Err(invalid("timestamp is missing or not a string")),
    }
}

/// The first error of an `errors` array, if it has a usable code.
fn first_error(errors: &Value) -> Option<ErrorInfo> {
    errors.as_array()?.first().and_then(error_info)
}

/// A Meta error object: `code` (as a string), `title`, `message`,
/// `error_data.details`. `None` without a usable code (the canonical error
/// requires one): the event then carries no error rather than being lost.
fn error_info(error: &Value) -> Option<ErrorInfo> {
    let e = error.as_object()?;
    let code = match e.get("code")? {
        Value::Number(n) => n.to_string(),
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => return None,
    };
    let details = e
        .get("error_data")
        .and_then(|d| d.get("details"))
        .and_then(Value::as_str);
    Some(ErrorInfo {
        code,
        title: text(e, "title").map(str::to_string),
        message: text(e, "message").map(str::to_string),
        details: details.map(str::to_string),
        kind: None,
        trace_id: None,
    })
}

/// Campaign and template from `biz_opaque_callback_data`, when it is a JSON
/// object with `campaign_id` (and optionally `campaign_name`) or `template`.
fn callback_data(data: Option<&Value>) -> (Option<Campaign>, Option<String>) {
    let Some(Value::String(raw)) = data else {
        return (None, None);
    };
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(raw) else {
        return (None, None);
    };
    let campaign_id = match o.get("campaign_id") {
        Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(Value::Number(id)) => Some(id.to_string()),
        _ => None,
    };
    let campaign = campaign_id.map(|id| Campaign {
        id,
        name: non_empty(&o, "campaign_name"),
    });
    (campaign, non_empty(&o, "template"))
}

fn non_empty(o: &Map<String, Value>, key: &str) -> Option<String> {
    text(o, key).filter(|s| !s.is_empty()).map(str::to_string)
}

fn text<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

/// Phone numbers are digits only: one leading `+` is dropped, as canonical
/// ingest does.
fn strip_plus(s: &str) -> &str {
    s.strip_prefix('+').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WAMID: &str = "wamid.HBgLMTU1NTAwMDIyMjIVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA";

    fn bots() -> HashMap<String, String> {
        HashMap::from([
            ("1099887766".to_string(), "acme".to_string()),
            ("2000111222".to_string(), "globex".to_string()),
        ])
    }

    fn body(phone: &str, statuses: Value, messages: Value) -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "waba-1", "changes": [{
            "field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone},
                      "statuses": statuses, "messages": messages}}]}]})
    }

    fn run(value: &Value) -> Mapped {
        let envelope = Envelope::parse(value.to_string().as_bytes()).expect("envelope");
        map(&envelope, &bots())
    }

    fn status(name: &str) -> Value {
        json!({"id": WAMID, "status": name, "timestamp": "1750857384", "recipient_id": "15550002222"})
    }

    fn reasons(mapped: &Mapped) -> Vec<&'static str> {
        mapped.skipped.iter().map(|s| s.reason.as_str()).collect()
    }

    #[test]
    fn the_spec_example_maps_field_by_field() {
        let failed = json!({
            "id": WAMID, "status": "failed", "timestamp": "1750857384", "recipient_id": "15550002222",
            "biz_opaque_callback_data": "{\"campaign_id\":\"c-42\",\"campaign_name\":\"Spring\",\"template\":\"promo_1\"}",
            "pricing": {"billable": true, "pricing_model": "PMP", "category": "marketing", "type": "regular"},
            "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                        "error_data": {"details": "Message could not be delivered"}}]});
        let mapped = run(&body("1099887766", json!([failed]), Value::Null));
        assert!(mapped.skipped.is_empty(), "{:?}", mapped.skipped);
        let event = &mapped.events[0];
        assert_eq!(event.id, format!("meta:{WAMID}:failed"));
        assert_eq!(event.bot_id, "acme");
        assert_eq!(event.message_id.as_deref(), Some(WAMID));
        assert_eq!(event.status, Status::Failed);
        assert_eq!(event.timestamp, 1750857384);
        assert_eq!(event.recipient.as_deref(), Some("15550002222"));
        assert_eq!(event.sender.as_deref(), Some("15550001111"));
        assert_eq!(
            event.campaign,
            Some(Campaign {
                id: "c-42".into(),
                name: Some("Spring".into())
            })
        );
        assert_eq!(event.template.as_deref(), Some("promo_1"));
        let error = event.error.as_ref().expect("error");
        assert_eq!(error.code, "131026");
        assert_eq!(error.title.as_deref(), Some("Message undeliverable"));
        assert_eq!(error.message.as_deref(), Some("Message undeliverable"));
        assert_eq!(
            error.details.as_deref(),
            Some("Message could not be delivered")
        );
        assert!(event.is_final);
        assert_eq!(event.reply, None);
    }

    #[test]
    fn statuses_map_to_canonical_with_final_per_the_table() {
        let statuses = json!([
            status("sent"),
            status("delivered"),
            status("read"),
            status("played"),
            status("failed"),
            status("deleted"),
            status("warning")
        ]);
        let mapped = run(&body("1099887766", statuses, Value::Null));
        let got: Vec<(Status, bool, String)> = mapped
            .events
            .iter()
            .map(|e| {
                (
                    e.status,
                    e.is_final,
                    e.id.rsplit(':').next().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Status::Sent, false, "sent".to_string()),
                (Status::Delivered, false, "delivered".to_string()),
                (Status::Read, true, "read".to_string()),
                (Status::Read, true, "played".to_string()),
                (Status::Failed, true, "failed".to_string()),
            ]
        );
        assert_eq!(reasons(&mapped), ["unknown_status", "unknown_status"]);
        assert_eq!(
            mapped.skipped[0].place,
            "entry[0].changes[0].value.statuses[5]"
        );
    }

    #[test]
    fn the_change_error_is_the_fallback_and_a_codeless_error_is_dropped() {
        let mut value = body("1099887766", json!([status("failed")]), Value::Null);
        value["entry"][0]["changes"][0]["value"]["errors"] =
            json!([{"code": "131000", "title": "Something went wrong"}]);
        let mapped = run(&value);
        let error = mapped.events[0].error.as_ref().expect("fallback error");
        assert_eq!(
            (error.code.as_str(), error.details.as_deref()),
            ("131000", None)
        );

        let mut codeless = status("failed");
        codeless["errors"] = json!([{"title": "no code"}]);
        let mapped = run(&body("1099887766", json!([codeless]), Value::Null));
        assert_eq!(mapped.events[0].error, None);
        assert_eq!(mapped.events[0].status, Status::Failed);
    }

    #[test]
    fn callback_data_that_is_not_a_campaign_object_is_ignored() {
        for (data, campaign, template) in [
            (json!("plain text"), None, None),
            (json!("[1,2]"), None, None),
            (json!("{\"campaign_name\":\"no id\"}"), None, None),
            (json!("{\"template\":\"t1\"}"), None, Some("t1")),
            (json!("{\"campaign_id\":7}"), Some("7"), None),
            (
                json!("{\"campaign_id\":\"\",\"template\":\"\"}"),
                None,
                None,
            ),
            (json!({"campaign_id": "not a string"}), None, None),
        ] {
            let mut s = status("read");
            s["biz_opaque_callback_data"] = data.clone();
            let mapped = run(&body("1099887766", json!([s]), Value::Null));
            let event = &mapped.events[0];
            assert_eq!(
                event.campaign.as_ref().map(|c| c.id.as_str()),
                campaign,
                "{data}"
            );
            assert_eq!(event.template.as_deref(), template, "{data}");
        }
    }

    fn message(extra: Value) -> Value {
        let mut m = json!({"from": "+15550002222", "id": "wamid.IN1", "timestamp": "1750857400",
                           "context": {"from": "15550001111", "id": WAMID}});
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        m
    }

    #[test]
    fn replies_from_buttons_lists_and_text() {
        let messages = json!([
            message(json!({"type": "button", "button": {"payload": "p-yes", "text": "Yes"}})),
            message(
                json!({"type": "interactive", "interactive": {"type": "button_reply",
                "button_reply": {"id": "b1", "title": "Change"}}})
            ),
            message(
                json!({"type": "interactive", "interactive": {"type": "list_reply",
                "list_reply": {"id": "r1", "title": "Tomorrow", "description": "9-12"}}})
            ),
            message(json!({"type": "text", "text": {"body": "thanks!"}})),
        ]);
        let mapped = run(&body("2000111222", Value::Null, messages));
        assert!(mapped.skipped.is_empty(), "{:?}", mapped.skipped);
        let replies: Vec<&str> = mapped
            .events
            .iter()
            .filter_map(|e| e.reply.as_deref())
            .collect();
        assert_eq!(replies, ["Yes", "Change", "Tomorrow", "thanks!"]);
        let event = &mapped.events[0];
        assert_eq!(event.id, "meta:wamid.IN1:replied");
        assert_eq!(event.bot_id, "globex");
        assert_eq!(event.message_id.as_deref(), Some(WAMID));
        assert_eq!(
            event.recipient.as_deref(),
            Some("15550002222"),
            "+ stripped"
        );
        assert_eq!(event.status, Status::Replied);
        assert_eq!(event.timestamp, 1750857400);
        assert!(event.is_final);
    }

    #[test]
    fn messages_that_are_not_replies_are_skipped_with_their_reason() {
        let mut first = message(json!({"type": "text", "text": {"body": "hello"}}));
        if let Some(m) = first.as_object_mut() {
            m.remove("context");
        }
        let messages = json!([
            first,
            message(json!({"type": "image", "image": {"id": "media-1", "mime_type": "image/jpeg"}})),
            {"from": "15550002222", "id": "wamid.R", "timestamp": "1750857401", "type": "reaction",
             "reaction": {"message_id": WAMID, "emoji": "👍"}},
            message(json!({"type": "interactive", "interactive": {"type": "nfm_reply",
                "nfm_reply": {"response_json": "{}", "body": "Sent", "name": "flow"}}})),
            "not an object",
            {"type": "text", "text": {"body": "x"}, "context": {"id": WAMID}, "timestamp": "1"},
        ]);
        let mapped = run(&body("1099887766", Value::Null, messages));
        assert!(mapped.events.is_empty());
        assert_eq!(
            reasons(&mapped),
            [
                "no_context",
                "unsupported_message",
                "unsupported_message",
                "unsupported_message",
                "malformed",
                "invalid_update"
            ]
        );
    }

    #[test]
    fn unknown_phone_numbers_and_other_fields_are_skipped_and_counted() {
        let mapped = run(&body(
            "999",
            json!([status("read"), status("sent")]),
            json!([message(json!({"text": {"body": "x"}}))]),
        ));
        assert!(mapped.events.is_empty());
        assert_eq!(reasons(&mapped), ["unknown_phone_number_id"; 3]);
        assert_eq!(mapped.skipped[0].phone_number_id.as_deref(), Some("999"));

        let mut value = body("1099887766", json!([status("read")]), Value::Null);
        value["entry"][0]["changes"][0]["field"] = json!("message_template_status_update");
        assert_eq!(reasons(&run(&value)), ["ignored_field"]);

        let only_errors = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{
            "field": "messages", "value": {"metadata": {"phone_number_id": "1099887766"},
            "errors": [{"code": 131000}]}}]}]});
        assert_eq!(reasons(&run(&only_errors)), ["no_updates"]);
    }

    #[test]
    fn updates_that_cannot_be_valid_events_are_skipped_not_fatal() {
        let mut cases = Vec::new();
        for (field, value) in [
            ("id", json!(5)),
            ("id", json!("w".repeat(300))),
            ("id", json!("wamid.tab\there")),
            ("id", json!("")),
            ("timestamp", json!("yesterday")),
            ("timestamp", json!("0")),
            ("timestamp", json!(1u64 << 40)),
            ("timestamp", json!(-5)),
            ("timestamp", json!(1.5)),
            ("recipient_id", json!("1".repeat(65))),
            ("recipient_id", json!("+")),
            ("recipient_id", json!(null)),
            ("status", json!(["read"])),
        ] {
            let mut s = status("read");
            s[field] = value;
            cases.push(s);
        }
        let count = cases.len();
        let mut statuses = cases;
        statuses.push(status("delivered"));
        let mapped = run(&body("1099887766", Value::Array(statuses), Value::Null));
        assert_eq!(reasons(&mapped), vec!["invalid_update"; count]);
        assert_eq!(mapped.events.len(), 1, "the good status still maps");
    }

    #[test]
    fn recipient_user_id_stands_in_for_a_missing_recipient_id() {
        let mut s = status("read");
        if let Some(o) = s.as_object_mut() {
            o.remove("recipient_id");
            o.insert("recipient_user_id".into(), json!("US.13491208655302741918"));
        }
        let mapped = run(&body("1099887766", json!([s]), Value::Null));
        assert_eq!(
            mapped.events[0].recipient.as_deref(),
            Some("US.13491208655302741918")
        );
    }
}
