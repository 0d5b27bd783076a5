//! The Connectly `delivery_status` webhook format (docs/formats.md, "Connectly").
//!
//! Connectly hears about the delivery statuses only: `replied`, `queued`,
//! `created` and `disconnected` are dropped. Connectly-style receivers verify
//! `x-connectly-hmac-sha256`; that signature is the host's `hmac` signer's job,
//! never this plugin's (plugins never see secrets).

use statushook_plugin::serde_json::{Map, Value};
use statushook_plugin::{
    Outgoing, Plugin, Settings, Status, StatusEvent, json_body, string_or_null,
};

/// The Connectly plugin.
pub struct Connectly;

impl Plugin for Connectly {
    fn format(event: StatusEvent, _settings: Settings) -> Result<Option<Outgoing>, String> {
        Ok(render(&event).map(|body| json_body(&body)))
    }
}

#[cfg(target_arch = "wasm32")]
statushook_plugin::export_plugin!(Connectly);

/// Connectly's `statusUpdate.status` for a canonical status, or `None` when Connectly has none.
fn connectly_status(status: Status) -> Option<&'static str> {
    Some(match status {
        Status::Sent => "sent",
        Status::Delivered => "delivered",
        Status::Read => "read",
        Status::Failed | Status::NumberNotFound | Status::Expired => "delivery_failed",
        Status::Queued | Status::Created | Status::Replied | Status::Disconnected => {
            return None;
        }
    })
}

/// Connectly's error code for a failure without a canonical `error.code`.
fn default_error_code(status: Status) -> &'static str {
    match status {
        Status::NumberNotFound => "ERROR_CODE_NUMBER_NOT_FOUND",
        Status::Expired => "ERROR_CODE_MESSAGE_EXPIRED",
        _ => "ERROR_CODE_UNKNOWN",
    }
}

/// The body for `event`, or `None` when the event is dropped.
pub fn render(event: &StatusEvent) -> Option<Value> {
    let status = connectly_status(event.status)?;
    let mut body = Map::new();
    body.insert("topic".into(), "delivery_status".into());
    body.insert("timestamp".into(), event.timestamp.to_string().into());
    if let Some(sender) = &event.sender {
        body.insert("sender".into(), party(Some(sender)));
    }
    body.insert("recipient".into(), party(event.recipient.as_deref()));

    let mut update = Map::new();
    update.insert("id".into(), string_or_null(&event.message_id));
    update.insert("status".into(), status.into());
    let error = if event.status.is_failure() {
        failure(event)
    } else {
        Value::Null
    };
    update.insert("error".into(), error);
    body.insert("statusUpdate".into(), Value::Object(update));
    Some(Value::Object(body))
}

/// The `error` object of a `delivery_failed` update.
fn failure(event: &StatusEvent) -> Value {
    let error = event.error.as_ref();
    // `m`: the message, else the title, else the default text for the status.
    let text = event.failure_text();
    let type_ = error
        .and_then(|e| e.type_.clone())
        .unwrap_or_else(|| "ERROR_TYPE_DELIVERY_FAILED".to_string());
    let code = error
        .map(|e| e.code.clone())
        .unwrap_or_else(|| default_error_code(event.status).to_string());
    let title = error
        .and_then(|e| e.title.clone())
        .unwrap_or_else(|| text.clone());
    let user_message = error
        .and_then(|e| e.details.clone())
        .unwrap_or_else(|| text.clone());
    let trace = error
        .and_then(|e| e.trace_id.clone())
        .unwrap_or_else(|| event.id.clone());

    let mut object = Map::new();
    object.insert("message".into(), text.into());
    object.insert("type".into(), type_.into());
    object.insert("code".into(), code.into());
    object.insert("userTitle".into(), title.into());
    object.insert("userMessage".into(), user_message.into());
    object.insert("cntTraceId".into(), trace.into());
    object.insert("details".into(), Value::Object(Map::new()));
    Value::Object(object)
}

/// A `{"id", "channelType"}` party: phone numbers (all digits) get a leading `+`.
fn party(id: Option<&str>) -> Value {
    let id = match id {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            Value::String(format!("+{id}"))
        }
        Some(id) => Value::String(id.to_string()),
        // The host guarantees a recipient for every status this format sends.
        None => Value::Null,
    };
    let mut object = Map::new();
    object.insert("id".into(), id);
    object.insert("channelType".into(), "whatsapp".into());
    Value::Object(object)
}
