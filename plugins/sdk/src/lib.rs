//! Helpers for writing a statushook payload plugin in Rust.
//!
//! A plugin is a WebAssembly component (target `wasm32-wasip2`) that exports
//! `statushook:plugin/formatter@0.1.0`. This crate generates the bindings from
//! the WIT it carries (`wit/plugin.wit`, the same as the project's `wit/`) and adds the few things every plugin needs, so
//! that a plugin is a struct, one [`Plugin`] impl and one [`export_plugin!`]:
//!
//! ```ignore
//! use statushook_plugin::{export_plugin, json_body, Outgoing, Plugin, Settings, Status, StatusEvent};
//!
//! struct Minimal;
//!
//! impl Plugin for Minimal {
//!     fn format(event: StatusEvent, _settings: Settings) -> Result<Option<Outgoing>, String> {
//!         if event.status == Status::Queued {
//!             return Ok(None); // dropped: nothing is sent
//!         }
//!         Ok(Some(json_body(&serde_json::json!({
//!             "id": event.message_id,
//!             "status": event.status.as_str(),
//!         }))))
//!     }
//! }
//!
//! export_plugin!(Minimal);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to name in `config.toml`.
//!
//! The crate also compiles for the host target, so a plugin's mapping can be
//! unit-tested and benchmarked natively; only [`log`] needs the real host.

#![deny(missing_docs)]

#[doc(hidden)]
pub mod bindings {
    //! Generated from the crate's own `wit/plugin.wit` (a copy of the
    //! project's `wit/`, checked identical by `core/tests/sdk.rs`). Use the
    //! re-exports at the crate root.
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "wit",
        world: "statushook:plugin/plugin",
        pub_export_macro: true,
        export_macro_name: "__export_formatter",
        default_bindings_module: "statushook_plugin::bindings",
        // So a plugin's unit tests can compare whole results.
        additional_derives: [PartialEq],
    });
}

pub use bindings::exports::statushook::plugin::formatter::Guest as Formatter;
pub use bindings::statushook::plugin::types::{Campaign, ErrorInfo, Outgoing, Status, StatusEvent};
#[doc(hidden)]
pub use serde_json;

/// A payload plugin: turns one status event into one request body, or drops it.
pub trait Plugin {
    /// Render `event` for one webhook, with that webhook's `settings`.
    ///
    /// Return `Ok(None)` to drop the event, `Ok(Some(outgoing))` to send it.
    ///
    /// # Errors
    ///
    /// Return `Err(reason)` when the event cannot be rendered; the host makes
    /// that delivery a dead letter carrying `reason`, and other webhooks are
    /// unaffected.
    fn format(event: StatusEvent, settings: Settings) -> Result<Option<Outgoing>, String>;
}

/// Exports a [`Plugin`] implementation as the component's `formatter`.
///
/// Use it once per plugin crate, at the crate root.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __StatushookExport;

        impl $crate::Formatter for __StatushookExport {
            fn format(
                event: $crate::StatusEvent,
                settings: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<::std::option::Option<$crate::Outgoing>, ::std::string::String>
            {
                <$plugin as $crate::Plugin>::format(event, $crate::Settings::new(settings))
            }
        }

        $crate::bindings::__export_formatter!(__StatushookExport with_types_in $crate::bindings);
    };
}

/// A webhook's `settings` table from config.toml: string keys to string values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(Vec<(String, String)>);

impl Settings {
    /// Wraps the key/value pairs the host passed.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Settings(pairs)
    }

    /// The value of `key`, if the operator set it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, in the order the host passed them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl Status {
    /// Every status, in the order of the vocabulary table.
    pub const ALL: [Status; 10] = [
        Status::Queued,
        Status::Created,
        Status::Sent,
        Status::Delivered,
        Status::Read,
        Status::Replied,
        Status::Failed,
        Status::NumberNotFound,
        Status::Expired,
        Status::Disconnected,
    ];

    /// The status with canonical name `name` (`"number_not_found"`), if any.
    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The canonical name of the status, as in the JSON form (`"number_not_found"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Created => "created",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read => "read",
            Status::Replied => "replied",
            Status::Failed => "failed",
            Status::NumberNotFound => "number_not_found",
            Status::Expired => "expired",
            Status::Disconnected => "disconnected",
        }
    }

    /// Whether the status is one of the failure statuses
    /// (`failed`, `number_not_found`, `expired`).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Status::Failed | Status::NumberNotFound | Status::Expired
        )
    }
}

impl StatusEvent {
    /// The human text of a failure: `error.message`, else `error.title`, else
    /// a default for the status ("Number not found on WhatsApp", "Message
    /// expired", "Message failed"). The default texts are Jelou's, which
    /// docs/formats.md reuses for the other formats.
    pub fn failure_text(&self) -> String {
        self.error
            .as_ref()
            .and_then(|e| e.message.clone().or_else(|| e.title.clone()))
            .unwrap_or_else(|| {
                match self.status {
                    Status::NumberNotFound => "Number not found on WhatsApp",
                    Status::Expired => "Message expired",
                    _ => "Message failed",
                }
                .to_string()
            })
    }
}

/// A JSON string for `value`, or `null` when it is absent.
pub fn string_or_null(value: &Option<String>) -> serde_json::Value {
    value
        .clone()
        .map(serde_json::Value::String)
        .unwrap_or(serde_json::Value::Null)
}

/// An `application/json` request with `value` as its body and no extra headers.
pub fn json_body(value: &serde_json::Value) -> Outgoing {
    Outgoing {
        content_type: "application/json".to_string(),
        headers: Vec::new(),
        // Serialising a `Value` cannot fail: its keys are always strings.
        body: serde_json::to_vec(value).unwrap_or_default(),
    }
}

pub mod time;
pub use time::rfc3339_utc;

/// Logging into the host's log; each line is tagged with the bot and webhook.
///
/// The host truncates long lines and caps how much one call may log. On a
/// native build (unit tests, benchmarks) lines go nowhere.
pub mod log {
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::statushook::plugin::log::Level;

    /// Logs `message` at debug level.
    pub fn debug(message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::statushook::plugin::log::log(Level::Debug, message);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = message;
    }

    /// Logs `message` at info level.
    pub fn info(message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::statushook::plugin::log::log(Level::Info, message);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = message;
    }

    /// Logs `message` at warn level.
    pub fn warn(message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::statushook::plugin::log::log(Level::Warn, message);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = message;
    }

    /// Logs `message` at error level.
    pub fn error(message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::statushook::plugin::log::log(Level::Error, message);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = message;
    }
}

#[cfg(test)]
mod tests {
    use super::{Outgoing, json_body};

    #[test]
    fn a_plugin_test_can_compare_whole_requests() {
        assert_eq!(
            json_body(&serde_json::json!({"a": 1})),
            Outgoing {
                content_type: "application/json".into(),
                headers: Vec::new(),
                body: b"{\"a\":1}".to_vec(),
            }
        );
    }
}
