//! An example statushook payload plugin: a generic CRM's JSON event.
//!
//! Copy this crate to write a plugin for your own receiver. It shows the three
//! things a plugin can do besides shaping the body:
//!
//! - drop events, here by the webhook's `settings` in config.toml:
//!   - `templates`: comma-separated template names. When set, only events whose
//!     template is in the list are sent (events without a template, such as
//!     `disconnected`, are dropped too).
//!   - `drop_statuses`: comma-separated canonical status names (`read`,
//!     `number_not_found`, ...) that are never sent. A name that is not a status
//!     is an error, so a typo cannot silently let events through.
//! - add its own headers (`X-CRM-Event-Type`); the host refuses headers it owns
//!   (`Authorization`, `Host`, `webhook-*`, ...), since auth and signing are its job;
//! - log into the host's log (`statushook_plugin::log`).
//!
//! The body looks like this (absent canonical fields give absent keys):
//!
//! ```json
//! {"type": "whatsapp.message.failed", "messageId": "wamid.HBg...", "botId": "acme-support",
//!  "contact": {"phone": "5939800000000"}, "occurredAt": 1777325700,
//!  "channel": {"name": "Acme Support", "sender": "16044441111"},
//!  "campaign": {"id": "69efd6834d469ea6", "name": "November promo"},
//!  "template": "promo_1", "error": {"code": "131026", "message": "..."},
//!  "final": true, "source": "statushook"}
//! ```
//!
//! A `disconnected` event is about the channel, not a message: its type is
//! `whatsapp.channel.disconnected` and it has no `messageId` or `contact`.

use statushook_plugin::serde_json::{Map, Value};
use statushook_plugin::{Outgoing, Plugin, Settings, Status, StatusEvent, json_body};

/// The CRM plugin.
pub struct Crm;

impl Plugin for Crm {
    fn format(event: StatusEvent, settings: Settings) -> Result<Option<Outgoing>, String> {
        let Some(body) = render(&event, &settings)? else {
            return Ok(None);
        };
        let event_type = event_type(event.status);
        let mut outgoing = json_body(&body);
        // Lets the receiver route the request without parsing the body.
        outgoing
            .headers
            .push(("X-CRM-Event-Type".to_string(), event_type));
        Ok(Some(outgoing))
    }
}

// The component export exists only in the wasm build; natively the crate is
// plain Rust, so `render` can be unit-tested with `cargo test`.
#[cfg(target_arch = "wasm32")]
statushook_plugin::export_plugin!(Crm);

/// The CRM event type for a status, e.g. `whatsapp.message.read`.
pub fn event_type(status: Status) -> String {
    if status == Status::Disconnected {
        "whatsapp.channel.disconnected".to_string()
    } else {
        format!("whatsapp.message.{}", status.as_str())
    }
}

/// The body for `event` under `settings`, or `None` when the settings drop it.
///
/// # Errors
///
/// Fails when `drop_statuses` names something that is not a canonical status.
pub fn render(event: &StatusEvent, settings: &Settings) -> Result<Option<Value>, String> {
    if let Some(reason) = dropped_by(event, settings)? {
        statushook_plugin::log::debug(&format!("event {} dropped: {reason}", event.id));
        return Ok(None);
    }

    let mut body = Map::new();
    body.insert("type".into(), event_type(event.status).into());
    if let Some(message_id) = &event.message_id {
        body.insert("messageId".into(), message_id.clone().into());
    }
    body.insert("botId".into(), event.bot_id.clone().into());
    if let Some(phone) = &event.recipient {
        body.insert("contact".into(), object([("phone", phone.clone().into())]));
    }
    body.insert("occurredAt".into(), event.timestamp.into());

    let mut channel = Map::new();
    if let Some(name) = &event.channel_name {
        channel.insert("name".into(), name.clone().into());
    }
    if let Some(sender) = &event.sender {
        channel.insert("sender".into(), sender.clone().into());
    }
    if !channel.is_empty() {
        body.insert("channel".into(), Value::Object(channel));
    }

    if let Some(campaign) = &event.campaign {
        let mut object = Map::new();
        object.insert("id".into(), campaign.id.clone().into());
        if let Some(name) = &campaign.name {
            object.insert("name".into(), name.clone().into());
        }
        body.insert("campaign".into(), Value::Object(object));
    }
    if let Some(template) = &event.template {
        body.insert("template".into(), template.clone().into());
    }
    if let Some(reply) = &event.reply {
        body.insert("reply".into(), reply.clone().into());
    }
    if let Some(error) = &event.error {
        let mut object = Map::new();
        object.insert("code".into(), error.code.clone().into());
        let fields = [
            ("title", &error.title),
            ("message", &error.message),
            ("details", &error.details),
            ("type", &error.type_),
            ("traceId", &error.trace_id),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                object.insert(key.into(), value.clone().into());
            }
        }
        body.insert("error".into(), Value::Object(object));
    }
    body.insert("final".into(), event.final_.into());
    body.insert("source".into(), "statushook".into());
    Ok(Some(Value::Object(body)))
}

/// Why the settings drop `event`, or `None` when it is sent.
fn dropped_by(event: &StatusEvent, settings: &Settings) -> Result<Option<String>, String> {
    if let Some(list) = settings.get("drop_statuses") {
        for name in split_list(list) {
            let status = Status::from_name(name).ok_or_else(|| {
                let valid: Vec<&str> = Status::ALL.iter().map(Status::as_str).collect();
                format!(
                    "setting drop_statuses: {name:?} is not a status; valid: {}",
                    valid.join(", ")
                )
            })?;
            if status == event.status {
                return Ok(Some(format!("status {name} is in drop_statuses")));
            }
        }
    }
    if let Some(list) = settings.get("templates") {
        let mut allowed = split_list(list).peekable();
        // An empty `templates = ""` filters nothing, like an absent one.
        if allowed.peek().is_some() {
            let template = event.template.as_deref();
            if !allowed.any(|name| Some(name) == template) {
                let shown = template.unwrap_or("(none)");
                return Ok(Some(format!("template {shown} is not in templates")));
            }
        }
    }
    Ok(None)
}

/// The non-empty, trimmed items of a comma-separated setting.
fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A JSON object from key/value pairs.
fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: Status, template: Option<&str>) -> StatusEvent {
        StatusEvent {
            id: "evt-1".into(),
            bot_id: "acme-support".into(),
            message_id: Some("wamid.1".into()),
            status,
            timestamp: 1_777_325_700,
            recipient: Some("5939800000000".into()),
            sender: None,
            channel_name: Some("Acme Support".into()),
            campaign: None,
            template: template.map(str::to_string),
            reply: None,
            error: None,
            final_: true,
        }
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn renders_without_settings() {
        let body = render(&event(Status::Read, Some("promo_1")), &settings(&[]));
        let body = body.expect("renders").expect("not dropped");
        assert_eq!(body["type"], "whatsapp.message.read");
        assert_eq!(body["contact"]["phone"], "5939800000000");
        assert_eq!(body["channel"], serde_json::json!({"name": "Acme Support"}));
        assert_eq!(body["source"], "statushook");
        assert!(body.get("campaign").is_none());
    }

    #[test]
    fn templates_filter() {
        let only = settings(&[("templates", "promo_1, promo_2")]);
        let kept = render(&event(Status::Read, Some("promo_2")), &only);
        assert!(matches!(kept, Ok(Some(_))));
        let other = render(&event(Status::Read, Some("welcome")), &only);
        assert_eq!(other, Ok(None));
        let none = render(&event(Status::Read, None), &only);
        assert_eq!(none, Ok(None));
    }

    #[test]
    fn drop_statuses_filter() {
        let drop = settings(&[("drop_statuses", "sent,number_not_found")]);
        let dropped = render(&event(Status::NumberNotFound, None), &drop);
        assert_eq!(dropped, Ok(None));
        let kept = render(&event(Status::Failed, None), &drop);
        assert!(matches!(kept, Ok(Some(_))));
        let typo = render(
            &event(Status::Read, None),
            &settings(&[("drop_statuses", "sen")]),
        );
        assert!(typo.is_err_and(|e| e.contains("\"sen\"")));
    }

    /// The exact bytes README.md shows for `examples/events/read.json`.
    #[test]
    fn readme_example_output() {
        let mut read = event(Status::Read, Some("promo_1"));
        read.message_id = Some("wamid.HBgMNTkzOTgwMDAwMDAwFQIAERgSQkQ3".into());
        read.timestamp = 1_777_325_700;
        read.sender = Some("16044441111".into());
        read.campaign = Some(statushook_plugin::Campaign {
            id: "69efd6834d469ea6".into(),
            name: Some("November promo".into()),
        });
        read.final_ = false;
        let out = Crm::format(read, settings(&[("templates", "promo_1")]));
        let out = out.expect("renders").expect("not dropped");
        let expected = r#"{"botId":"acme-support","campaign":{"id":"69efd6834d469ea6","name":"November promo"},"channel":{"name":"Acme Support","sender":"16044441111"},"contact":{"phone":"5939800000000"},"final":false,"messageId":"wamid.HBgMNTkzOTgwMDAwMDAwFQIAERgSQkQ3","occurredAt":1777325700,"source":"statushook","template":"promo_1","type":"whatsapp.message.read"}"#;
        assert_eq!(String::from_utf8_lossy(&out.body), expected);
    }

    #[test]
    fn adds_event_type_header() {
        let out = Crm::format(event(Status::Delivered, None), settings(&[]));
        let out = out.expect("renders").expect("not dropped");
        let header = (
            "X-CRM-Event-Type".to_string(),
            "whatsapp.message.delivered".to_string(),
        );
        assert_eq!(out.headers, vec![header]);
        assert_eq!(out.content_type, "application/json");
    }
}
