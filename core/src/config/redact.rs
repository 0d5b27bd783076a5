//! `Debug` for the config types that hold secrets: tokens, passwords and
//! keys print as `"<redacted>"`, so a logged config leaks nothing.

use std::fmt;

use super::model::{Auth, BotConfig, MetaConfig, QueueBackend, ServerConfig, Sign};
use crate::queue::redis::{RedisOptions, RedisServers};

const REDACTED: &str = "<redacted>";

/// A list of secrets, shown as one `<redacted>` per item.
struct Secrets(usize);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(std::iter::repeat_n(REDACTED, self.0))
            .finish()
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("ingest_tokens", &Secrets(self.ingest_tokens.len()))
            .field("admin_tokens", &Secrets(self.admin_tokens.len()))
            .field("metrics_tokens", &Secrets(self.metrics_tokens.len()))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl fmt::Debug for QueueBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueBackend::Embedded { path } => {
                f.debug_struct("Embedded").field("path", path).finish()
            }
            QueueBackend::Redis(options) => f
                .debug_struct("Redis")
                .field("servers", &options.servers)
                .field("prefix", &options.prefix)
                .field("shards", &options.shards)
                .field("wait_replicas", &options.wait_replicas)
                .finish(),
        }
    }
}

impl fmt::Debug for RedisServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisServers::Standalone(url) => f
                .debug_tuple("Standalone")
                .field(&redact_url_password(url))
                .finish(),
            RedisServers::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(
                    &urls
                        .iter()
                        .map(|u| redact_url_password(u))
                        .collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&QueueBackend::Redis(self.clone()), f)
    }
}

/// `redis://user:pw@host` as `redis://user:<redacted>@host`.
fn redact_url_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some(REDACTED));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => REDACTED.to_string(),
    }
}

impl fmt::Debug for MetaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaConfig")
            .field("verify_token", &REDACTED)
            .field("app_secrets", &Secrets(self.app_secrets.len()))
            .finish()
    }
}

impl fmt::Debug for BotConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotConfig")
            .field("id", &self.id)
            .field("channel_name", &self.channel_name)
            .field("phone_number_ids", &self.phone_number_ids)
            .field("ingest_tokens", &Secrets(self.ingest_tokens.len()))
            .field("admin_tokens", &Secrets(self.admin_tokens.len()))
            .field("meta_app_secrets", &Secrets(self.meta_app_secrets.len()))
            .field("ingest_rate_limit", &self.ingest_rate_limit)
            .field("webhooks", &self.webhooks)
            .finish()
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &REDACTED)
                .finish(),
            Auth::Bearer { .. } => f.debug_struct("Bearer").field("token", &REDACTED).finish(),
            Auth::Header { name, .. } => f
                .debug_struct("Header")
                .field("name", name)
                .field("value", &REDACTED)
                .finish(),
        }
    }
}

impl fmt::Debug for Sign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sign::None => f.write_str("None"),
            Sign::StandardWebhooks { .. } => f
                .debug_struct("StandardWebhooks")
                .field("secret", &REDACTED)
                .finish(),
            Sign::Hmac {
                header,
                encoding,
                prefix,
                ..
            } => f
                .debug_struct("Hmac")
                .field("secret", &REDACTED)
                .field("header", header)
                .field("encoding", encoding)
                .field("prefix", prefix)
                .finish(),
        }
    }
}
