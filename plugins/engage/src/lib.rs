//! The Aivo Engage webhook format (docs/formats.md, "Aivo Engage").
//!
//! Engage hears about the delivery statuses only: `replied`, `queued`, `created`
//! and `disconnected` are dropped. Authentication (usually a custom header) is
//! the host's job, configured with `auth = { type = "header", .. }`.

use statushook_plugin::serde_json::{Map, Value};
use statushook_plugin::{Outgoing, Plugin, Settings, Status, StatusEvent, json_body};

/// The Engage plugin.
pub struct Engage;

impl Plugin for Engage {
    fn format(event: StatusEvent, _settings: Settings) -> Result<Option<Outgoing>, String> {
        Ok(render(&event).map(|body| json_body(&body)))
    }
}

#[cfg(target_arch = "wasm32")]
statushook_plugin::export_plugin!(Engage);

/// Engage's `message_status` for a canonical status, or `None` when Engage has none.
fn engage_status(status: Status) -> Option<&'static str> {
    Some(match status {
        Status::Sent => "sent",
        Status::Delivered => "delivered",
        Status::Read => "read",
        Status::Failed | Status::NumberNotFound | Status::Expired => "error",
        Status::Queued | Status::Created | Status::Replied | Status::Disconnected => {
            return None;
        }
    })
}

/// The body for `event`, or `None` when the event is dropped.
pub fn render(event: &StatusEvent) -> Option<Value> {
    let status = engage_status(event.status)?;
    let mut body = Map::new();
    body.insert("message_id".into(), opt_string(&event.message_id));
    body.insert("message_status".into(), status.into());

    // `channel` is always sent; its optional members only when known.
    let mut channel = Map::new();
    channel.insert("channel_type".into(), "Whatsapp".into());
    if let Some(name) = &event.channel_name {
        channel.insert("name".into(), name.clone().into());
    }
    if let Some(sender) = &event.sender {
        channel.insert("sender_id".into(), sender.clone().into());
    }
    body.insert("channel".into(), Value::Object(channel));

    if let Some(campaign) = &event.campaign {
        let mut object = Map::new();
        object.insert("id".into(), campaign.id.clone().into());
        if let Some(name) = &campaign.name {
            object.insert("name".into(), name.clone().into());
        }
        body.insert("campaign".into(), Value::Object(object));
    }

    body.insert("event_name".into(), "msg_status".into());
    body.insert("event_timestamp".into(), event.timestamp.to_string().into());
    let mut recipient = Map::new();
    recipient.insert("id".into(), opt_string(&event.recipient));
    body.insert("recipient".into(), Value::Object(recipient));
    Some(Value::Object(body))
}

/// A JSON string, or `null` for a value the host guarantees for these statuses
/// but the type cannot prove.
fn opt_string(value: &Option<String>) -> Value {
    value.clone().map(Value::String).unwrap_or(Value::Null)
}
