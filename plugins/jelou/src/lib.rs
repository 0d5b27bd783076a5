//! The Jelou notification-URL format (docs/formats.md, "Jelou").

use statushook_plugin::serde_json::{Map, Value};
use statushook_plugin::{
    Outgoing, Plugin, Settings, Status, StatusEvent, json_body, string_or_null,
};

/// The Jelou plugin.
pub struct Jelou;

impl Plugin for Jelou {
    fn format(event: StatusEvent, _settings: Settings) -> Result<Option<Outgoing>, String> {
        Ok(render(&event).map(|body| json_body(&body)))
    }
}

#[cfg(target_arch = "wasm32")]
statushook_plugin::export_plugin!(Jelou);

/// Jelou's word for a canonical status, or `None` when Jelou has none.
fn jelou_status(status: Status) -> Option<&'static str> {
    Some(match status {
        Status::Sent => "DELIVERED_CHANNEL",
        Status::Delivered => "DELIVERED_USER",
        Status::Read => "READ",
        Status::Replied => "REPLY",
        Status::Failed | Status::NumberNotFound | Status::Expired => "FAILED",
        Status::Queued | Status::Created | Status::Disconnected => return None,
    })
}

/// The body for `event`, or `None` when the event is dropped.
pub fn render(event: &StatusEvent) -> Option<Value> {
    let status = jelou_status(event.status)?;
    let mut body = Map::new();
    body.insert("id".into(), string_or_null(&event.message_id));
    body.insert("status".into(), status.into());
    body.insert("timestamp".into(), event.timestamp.to_string().into());
    if let Some(campaign) = &event.campaign {
        body.insert("campaignId".into(), campaign.id.clone().into());
    }
    body.insert("destination".into(), string_or_null(&event.recipient));
    body.insert("isFinalEvent".into(), event.final_.into());
    if let Some(template) = &event.template {
        body.insert("template".into(), template.clone().into());
    }
    if event.status.is_failure() {
        body.insert("error".into(), event.failure_text().into());
    }
    if event.status == Status::Replied {
        body.insert("reply".into(), string_or_null(&event.reply));
    }
    Some(Value::Object(body))
}
