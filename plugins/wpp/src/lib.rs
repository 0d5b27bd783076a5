//! The WPP Marketing status webhook format (docs/formats.md, "WPP Marketing").
//!
//! WPP hears about every status except `sent` and `replied`. A `disconnected`
//! event becomes a `connection.logout` event without message fields. Every body
//! carries the canonical event id as `eventId`, because WPP receivers dedupe
//! re-deliveries by message and event identifiers.

use statushook_plugin::serde_json::{Map, Value};
use statushook_plugin::{
    Outgoing, Plugin, Settings, Status, StatusEvent, json_body, string_or_null,
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

/// `unix_seconds` as an RFC 3339 UTC timestamp with whole seconds and `Z`,
/// e.g. `2026-04-27T21:40:02Z`.
///
/// Years past 9999 (never reached: the host caps timestamps below 2^40) would
/// print with more than four digits.
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01.
///
/// Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>),
/// specialised to non-negative day counts so it needs no signed arithmetic.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097; // 400-year eras
    let doe = z - era * 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, [0, 365]
    let mp = (5 * doy + 2) / 153; // March-based month, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::rfc3339_utc;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_777_326_002), "2026-04-27T21:40:02Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(253_402_300_799), "9999-12-31T23:59:59Z");
    }
}
