//! `[[bots.webhooks]]`: a notification URL, the statuses it receives, its
//! plugin and settings. Its `auth` and `sign` tables are in `auth.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use toml::Spanned;
use toml::de::DeValue;

use super::auth::{auth, sign};
use super::model::{Auth, EventFilter, Sign, WebhookConfig};
use super::reader::{Need, Reader, Table, Value};
use crate::event::Status;
use crate::plugin::BUILTIN_NAMES;
use crate::queue::Order;

/// The keys of a webhook table.
pub(super) const WEBHOOK_KEYS: &[&str] = &[
    "name",
    "url",
    "events",
    "plugin",
    "auth",
    "sign",
    "settings",
    "rate_limit",
    "order",
    "suppress_regressions",
];

/// One webhook; `names` holds the names (and key paths) of the bot's
/// webhooks so far. `None` when any problem was recorded.
pub(super) fn webhook(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    names: &mut HashMap<String, String>,
) -> Option<WebhookConfig> {
    let name = r
        .field(t, "name", Need::Required, Reader::string)
        .and_then(|name| unique_name(r, t, name, names));
    let url = r
        .field(t, "url", Need::Required, Reader::string)
        .and_then(|url| webhook_url(r, &t.key("url"), url));
    let events = match t.get("events") {
        Some(value) => events(r, &t.key("events"), value),
        None => {
            r.missing(
                t,
                "events",
                "required key is missing; list statuses, e.g. [\"read\", \"failed\"], or [\"all\"]",
            );
            None
        }
    };
    let plugin = r
        .field(t, "plugin", Need::Required, Reader::string)
        .and_then(|plugin| plugin_name(r, &t.key("plugin"), plugin));
    let auth = match t.get("auth") {
        Some(value) => auth(r, &t.key("auth"), value),
        None => Some(Auth::None),
    };
    let sign = match t.get("sign") {
        Some(value) => sign(r, &t.key("sign"), value),
        None => Some(Sign::None),
    };
    let settings = match t.get("settings") {
        Some(value) => settings(r, &t.key("settings"), value),
        None => Some(BTreeMap::new()),
    };
    let rate_limit = rate(r, t, "rate_limit");
    let order = order(r, t);
    Some(WebhookConfig {
        rate_limit: rate_limit?,
        order: order?,
        name: name?,
        url: url?,
        events: events?,
        plugin: plugin?,
        auth: auth?,
        sign: sign?,
        settings: settings?,
    })
}

/// An optional rate under `key` (`"N/s"` or `"N/m"`): `Some(None)` when
/// absent, `None` when invalid (and recorded).
pub(super) fn rate(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    key: &str,
) -> Option<Option<crate::rate::Rate>> {
    match r.field(t, key, Need::Optional, Reader::string) {
        Some(text) => match crate::rate::Rate::parse(text.get_ref()) {
            Ok(rate) => Some(Some(rate)),
            Err(why) => {
                r.problem(&t.key(key), Some(text.span()), why);
                None
            }
        },
        None if t.has(key) => None,
        None => Some(None),
    }
}

/// `order` and `suppress_regressions`; `None` when invalid (and recorded).
fn order(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Order> {
    let order = r.field(t, "order", Need::Optional, Reader::string);
    let suppress = r.field(t, "suppress_regressions", Need::Optional, Reader::boolean);
    let per_message = match &order {
        Some(order) if order.get_ref() == "per-message" => true,
        Some(order) => {
            r.problem(
                &t.key("order"),
                Some(order.span()),
                format!(
                    "unknown order {:?}; the one order is \"per-message\" (leave it out to send each delivery on its own)",
                    order.get_ref()
                ),
            );
            return None;
        }
        None if t.has("order") => return None,
        None => false,
    };
    match (per_message, suppress) {
        (_, None) if t.has("suppress_regressions") => None,
        (true, Some(true)) => Some(Order::PerMessageNoRegressions),
        (true, _) => Some(Order::PerMessage),
        (false, Some(true)) => {
            r.problem(
                &t.key("suppress_regressions"),
                t.get("suppress_regressions").map(|v| v.span()),
                "needs order = \"per-message\": only ordered deliveries know what was delivered before them",
            );
            None
        }
        (false, _) => Some(Order::Any),
    }
}

/// A non-blank name no earlier webhook of the bot has.
fn unique_name(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    name: Spanned<String>,
    names: &mut HashMap<String, String>,
) -> Option<String> {
    let path = t.key("name");
    if name.get_ref().trim().is_empty() {
        r.problem(&path, Some(name.span()), "must not be blank");
        return None;
    }
    if let Some(first) = names.get(name.get_ref()) {
        r.problem(
            &path,
            Some(name.span()),
            format!(
                "duplicate webhook name {:?}; {first} already has it, and names are unique within a bot",
                name.get_ref()
            ),
        );
        return None;
    }
    names.insert(name.get_ref().clone(), t.path().to_string());
    Some(name.into_inner())
}

/// An absolute `http` or `https` URL with a host. Messages do not repeat the
/// URL: its query may hold a token.
fn webhook_url(r: &mut Reader<'_>, path: &str, url: Spanned<String>) -> Option<url::Url> {
    let message = match url::Url::parse(url.get_ref()) {
        Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => format!(
            "the URL scheme must be http or https, not {:?}",
            parsed.scheme()
        ),
        Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => {
            "the URL has no host".to_string()
        }
        Ok(parsed) => return Some(parsed),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            "not an absolute URL; expected e.g. \"https://crm.example.com/whatsapp/status\""
                .to_string()
        }
        Err(e) => format!("not a valid URL: {e}"),
    };
    r.problem(path, Some(url.span()), message);
    None
}

/// `events`: canonical status names, or `["all"]`.
fn events(r: &mut Reader<'_>, path: &str, value: &Value<'_>) -> Option<EventFilter> {
    let count = value.get_ref().as_array().map(|items| items.len());
    let items = r.strings(path, value)?;
    if count == Some(0) {
        r.problem(
            path,
            Some(value.span()),
            "must list at least one status, e.g. [\"read\", \"failed\"], or [\"all\"]",
        );
        return None;
    }
    let mut valid = count == Some(items.len());
    let mut statuses = BTreeSet::new();
    let mut all = None;
    for (item_path, name) in &items {
        if name.get_ref() == "all" {
            all = Some((item_path, name.span()));
            continue;
        }
        match name.get_ref().parse::<Status>() {
            Ok(status) => {
                statuses.insert(status);
            }
            Err(unknown) => {
                r.problem(
                    item_path,
                    Some(name.span()),
                    format!("{unknown}; or [\"all\"] for every status"),
                );
                valid = false;
            }
        }
    }
    if let Some((item_path, span)) = all {
        if items.len() > 1 {
            r.problem(
                item_path,
                Some(span),
                "\"all\" already means every status: write events = [\"all\"] alone",
            );
            return None;
        }
        return valid.then_some(EventFilter::All);
    }
    valid.then_some(EventFilter::Only(statuses))
}

/// A built-in plugin name, or a path (it has a `/` or ends with `.wasm`).
/// Whether the file exists and is a plugin is for `statushook check` and the
/// loader to say.
fn plugin_name(r: &mut Reader<'_>, path: &str, plugin: Spanned<String>) -> Option<String> {
    let name = plugin.get_ref();
    if is_plugin_name(name) {
        return Some(plugin.into_inner());
    }
    r.problem(
        path,
        Some(plugin.span()),
        format!(
            "unknown plugin {name:?}: the built-in plugins are {}; a custom plugin is a path to a .wasm component, relative to the config file's folder",
            BUILTIN_NAMES.join(", ")
        ),
    );
    None
}

/// Whether `plugin` is a built-in name or a path (as the plugin host tells
/// them apart).
pub(super) fn is_plugin_name(plugin: &str) -> bool {
    BUILTIN_NAMES.contains(&plugin) || plugin.contains('/') || plugin.ends_with(".wasm")
}

/// `settings`: string key/values for the plugin.
fn settings(r: &mut Reader<'_>, path: &str, value: &Value<'_>) -> Option<BTreeMap<String, String>> {
    let t = r.table(path, value, None)?;
    let mut settings = BTreeMap::new();
    let mut valid = true;
    for (key, _, value) in t.entries() {
        let key_path = t.key(key);
        let text = match value.get_ref() {
            DeValue::String(_) => r.string(&key_path, value),
            _ => {
                r.problem(
                    &key_path,
                    Some(value.span()),
                    "settings are string key/values: quote the value, e.g. \"3\" or \"true\"",
                );
                None
            }
        };
        match text {
            Some(text) => {
                settings.insert(key.to_string(), text.into_inner());
            }
            None => valid = false,
        }
    }
    valid.then_some(settings)
}
