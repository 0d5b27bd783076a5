//! A statushook payload plugin, from the Rust template: turns each canonical
//! status event into the JSON your receiver wants.
//!
//! Change [`render`] (and the cases in `cases.json`); keep the rest.
//!
//! ```json
//! {"event": "message.read", "message": "wamid.HBg...", "to": "5939800000000",
//!  "at": "2026-04-27T21:35:00Z", "final": true}
//! ```
//!
//! A failure adds `"error": {"code", "text"}`; `disconnected` events are
//! dropped (this receiver only tracks messages); the webhook setting
//! `prefix` (default `message`) changes the event name's first word.

use statushook_plugin::serde_json::{Value, json};
use statushook_plugin::{Outgoing, Plugin, Settings, Status, StatusEvent, json_body, rfc3339_utc};

/// The plugin.
pub struct MyPlugin;

impl Plugin for MyPlugin {
    fn format(event: StatusEvent, settings: Settings) -> Result<Option<Outgoing>, String> {
        Ok(render(&event, &settings).map(|body| json_body(&body)))
    }
}

// The component export exists in the wasm build only; natively the crate is
// plain Rust, so `render` is unit-tested with `cargo test`.
#[cfg(target_arch = "wasm32")]
statushook_plugin::export_plugin!(MyPlugin);

/// The body for `event`, or `None` to send nothing.
pub fn render(event: &StatusEvent, settings: &Settings) -> Option<Value> {
    if event.status == Status::Disconnected {
        return None;
    }
    let prefix = settings.get("prefix").unwrap_or("message");
    let mut body = json!({
        "event": format!("{prefix}.{}", event.status.as_str()),
        "message": event.message_id,
        "to": event.recipient,
        "at": rfc3339_utc(event.timestamp),
        "final": event.final_,
    });
    if event.status.is_failure() {
        let code = event.error.as_ref().map(|e| e.code.clone());
        body["error"] = json!({"code": code, "text": event.failure_text()});
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: Status) -> StatusEvent {
        StatusEvent {
            id: "evt-1".into(),
            bot_id: "acme".into(),
            message_id: Some("wamid.TEST".into()),
            status,
            timestamp: 1_777_325_700,
            recipient: Some("5939800000000".into()),
            sender: None,
            channel_name: None,
            campaign: None,
            template: None,
            reply: None,
            error: None,
            final_: true,
        }
    }

    #[test]
    fn a_read_status_becomes_a_message_event() {
        let body = render(&event(Status::Read), &Settings::default()).expect("sent");
        assert_eq!(body["event"], "message.read");
        assert_eq!(body["at"], "2026-04-27T21:35:00Z");
        assert!(body.get("error").is_none());
    }

    #[test]
    fn disconnected_is_dropped_and_the_prefix_is_a_setting() {
        assert!(render(&event(Status::Disconnected), &Settings::default()).is_none());
        let settings = Settings::new(vec![("prefix".into(), "wa".into())]);
        let body = render(&event(Status::Sent), &settings).expect("sent");
        assert_eq!(body["event"], "wa.sent");
    }
}
