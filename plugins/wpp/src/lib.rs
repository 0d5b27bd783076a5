//! The WPP Marketing status webhook format (docs/formats.md, "WPP Marketing").
//!
//! WPP hears about every status except `sent` and `replied`. A `disconnected`
//! event becomes a `connection.logout` event without message fields. Every body
//! carries the canonical event id as `eventId`, because WPP receivers dedupe
//! re-deliveries by message and event identifiers.

use statushook_plugin::serde_json::{Map, Value};
use statushook_plugin::{
    Outgoing, Plugin, Settings, Status, StatusEvent, json_body, rfc3339_utc, string_or_null,
};

/// The WPP plugin.
pub struct Wpp;

impl Plugin for Wpp {
    fn format(event: StatusEvent, _settings: Settings) -> Result<Option<Outgoing>, String> {
        Ok(render(&event).map(|body| json_body(&body)))
    }
}

#[cfg(target_arch = "wasm32")]
statushook_plugin::export_plugin!(Wpp);

/// WPP's word for a canonical status, or `None` when WPP has none.
fn wpp_status(status: Status) -> Option<&'static str> {
    Some(match status {
        Status::Queued => "QUEUED",
        Status::Created => "CREATED",
        Status::Delivered => "DELIVERED",
        Status::Read => "READ",
        Status::Failed => "ERROR",
        Status::NumberNotFound => "NUMBER_NOT_FOUND",
        Status::Expired => "EXPIRED",
        Status::Disconnected => "LOGOUT",
        Status::Sent | Status::Replied => return None,
    })
}

/// The body for `event`, or `None` when the event is dropped.
pub fn render(event: &StatusEvent) -> Option<Value> {
    let status = wpp_status(event.status)?;
    let logout = event.status == Status::Disconnected;
    let mut body = Map::new();
    let kind = if logout {
        "connection.logout"
    } else {
        "message.status"
    };
    body.insert("event".into(), kind.into());
    body.insert("eventId".into(), event.id.clone().into());
    body.insert("status".into(), status.into());
    if !logout {
        body.insert("messageId".into(), string_or_null(&event.message_id));
        body.insert("phone".into(), string_or_null(&event.recipient));
    }
    if let Some(sender) = &event.sender {
        body.insert("instance".into(), sender.clone().into());
    }
    body.insert("timestamp".into(), event.timestamp.into());
    body.insert("occurredAt".into(), rfc3339_utc(event.timestamp).into());

    // Only an event that says why it failed gets an `error` object.
    if event.status.is_failure()
        && let Some(error) = &event.error
    {
        let text = event.failure_text();
        let mut object = Map::new();
        object.insert("code".into(), error.code.clone().into());
        object.insert("message".into(), text.into());
        body.insert("error".into(), Value::Object(object));
    }
    Some(Value::Object(body))
}
