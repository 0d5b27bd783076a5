//! A webhook's `auth` (who the dispatcher is to the receiver) and `sign`
//! (proof the body is genuine): inline tables tagged by `type`, whose other
//! keys depend on the type. Messages never repeat a secret.

use toml::Spanned;

use super::model::{Auth, Sign};
use super::reader::{Need, Reader, Table, Value};
use crate::deliver::sign::{Encoding, WHSEC_PREFIX, decode_whsec};

const AUTH_TYPES: &[&str] = &["none", "basic", "bearer", "header"];
const SIGN_TYPES: &[&str] = &["none", "standard-webhooks", "hmac"];

/// `auth = { type = "none" | "basic" | "bearer" | "header", ... }`.
pub(super) fn auth(r: &mut Reader<'_>, path: &str, value: &Value<'_>) -> Option<Auth> {
    let t = r.table(path, value, None)?;
    match tag(r, &t, AUTH_TYPES)?.as_str() {
        "none" => {
            r.unknown_keys(&t, &["type"]);
            Some(Auth::None)
        }
        "basic" => {
            r.unknown_keys(&t, &["type", "username", "password"]);
            let username = r
                .field(&t, "username", Need::Required, Reader::string)
                .and_then(|name| {
                    let problem = if name.get_ref().is_empty() {
                        "must not be empty"
                    } else if name.get_ref().contains(':') {
                        "must not contain ':' (HTTP Basic separates user and password with it)"
                    } else if name.get_ref().chars().any(char::is_control) {
                        "must not contain control characters"
                    } else {
                        return Some(name.into_inner());
                    };
                    r.problem(&t.key("username"), Some(name.span()), problem);
                    None
                });
            let password = r.field(&t, "password", Need::Required, Reader::string);
            Some(Auth::Basic {
                username: username?,
                password: password?.into_inner(),
            })
        }
        "bearer" => {
            r.unknown_keys(&t, &["type", "token"]);
            let token = r
                .field(&t, "token", Need::Required, Reader::string)
                .and_then(|token| header_value(r, &t.key("token"), token));
            Some(Auth::Bearer { token: token? })
        }
        _header => {
            r.unknown_keys(&t, &["type", "name", "value"]);
            let name = r
                .field(&t, "name", Need::Required, Reader::string)
                .and_then(|name| {
                    owned_by_host(
                        r,
                        &t.key("name"),
                        name,
                        &[],
                        "use auth type \"basic\" or \"bearer\" for Authorization, or another header name",
                    )
                })
                .and_then(|name| header_name(r, &t.key("name"), name));
            let value = r
                .field(&t, "value", Need::Required, Reader::string)
                .and_then(|value| header_value(r, &t.key("value"), value));
            Some(Auth::Header {
                name: name?,
                value: value?,
            })
        }
    }
}

/// `sign = { type = "none" | "standard-webhooks" | "hmac", ... }`.
pub(super) fn sign(r: &mut Reader<'_>, path: &str, value: &Value<'_>) -> Option<Sign> {
    let t = r.table(path, value, None)?;
    match tag(r, &t, SIGN_TYPES)?.as_str() {
        "none" => {
            r.unknown_keys(&t, &["type"]);
            Some(Sign::None)
        }
        "standard-webhooks" => {
            r.unknown_keys(&t, &["type", "secret", "secrets"]);
            let secrets = match (t.has("secret"), t.has("secrets")) {
                (true, true) => {
                    r.problem(
                        &t.key("secrets"),
                        t.span(),
                        "give either secret or secrets (while rolling a secret: secrets = [new, old]), not both",
                    );
                    None
                }
                (_, false) => r
                    .field(&t, "secret", Need::Required, Reader::string)
                    .and_then(|secret| standard_webhooks_secret(r, &t.key("secret"), secret))
                    .map(|key| vec![key]),
                (false, true) => r
                    .field(&t, "secrets", Need::Required, Reader::strings)
                    .and_then(|list| {
                        if list.is_empty() {
                            r.problem(&t.key("secrets"), t.span(), "must list at least one secret");
                            return None;
                        }
                        let count = list.len();
                        let keys: Vec<Vec<u8>> = list
                            .into_iter()
                            .filter_map(|(path, secret)| standard_webhooks_secret(r, &path, secret))
                            .collect();
                        (keys.len() == count).then_some(keys)
                    }),
            };
            Some(Sign::StandardWebhooks { secrets: secrets? })
        }
        _hmac => {
            r.unknown_keys(&t, &["type", "secret", "header", "encoding", "prefix"]);
            let secret = r
                .field(&t, "secret", Need::Required, Reader::string)
                .and_then(|secret| {
                    if secret.get_ref().is_empty() {
                        r.problem(&t.key("secret"), Some(secret.span()), "must not be empty");
                        return None;
                    }
                    Some(secret.into_inner().into_bytes())
                });
            let header = r
                .field(&t, "header", Need::Required, Reader::string)
                .and_then(|header| {
                    owned_by_host(
                        r,
                        &t.key("header"),
                        header,
                        SIGNATURE_HEADERS,
                        "the signature needs a header of its own, e.g. \"X-Signature\"",
                    )
                })
                .and_then(|header| header_name(r, &t.key("header"), header));
            let encoding = match r.field(&t, "encoding", Need::Optional, Reader::string) {
                Some(encoding) => match encoding.get_ref().as_str() {
                    "hex" => Some(Encoding::Hex),
                    "base64" => Some(Encoding::Base64),
                    other => {
                        r.problem(
                            &t.key("encoding"),
                            Some(encoding.span()),
                            format!("unknown encoding {other:?}; expected \"hex\" or \"base64\""),
                        );
                        None
                    }
                },
                None if t.has("encoding") => None,
                None => Some(Encoding::Hex),
            };
            let prefix = match r.field(&t, "prefix", Need::Optional, Reader::string) {
                Some(prefix) if prefix.get_ref().is_empty() => Some(String::new()),
                Some(prefix) => header_value(r, &t.key("prefix"), prefix),
                None if t.has("prefix") => None,
                None => Some(String::new()),
            };
            Some(Sign::Hmac {
                secret: secret?,
                header: header?,
                encoding: encoding?,
                prefix: prefix?,
            })
        }
    }
}

/// The `type` of a tagged table, one of `types`.
fn tag(r: &mut Reader<'_>, t: &Table<'_, '_>, types: &[&str]) -> Option<String> {
    let expected = types
        .iter()
        .map(|kind| format!("{kind:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let Some(kind) = r.field(t, "type", Need::Optional, Reader::string) else {
        if !t.has("type") {
            r.missing(
                t,
                "type",
                &format!("required key is missing; expected one of {expected}"),
            );
        }
        return None;
    };
    if types.contains(&kind.get_ref().as_str()) {
        return Some(kind.into_inner());
    }
    r.problem(
        &t.key("type"),
        Some(kind.span()),
        format!(
            "unknown type {:?}; expected one of {expected}",
            kind.get_ref()
        ),
    );
    None
}

/// `whsec_` and the base64 of at least one byte.
fn standard_webhooks_secret(
    r: &mut Reader<'_>,
    path: &str,
    secret: Spanned<String>,
) -> Option<Vec<u8>> {
    let message = match secret.get_ref().strip_prefix(WHSEC_PREFIX) {
        None => "must start with \"whsec_\" followed by base64, as Standard Webhooks secrets do",
        Some(encoded) => match decode_whsec(encoded) {
            Ok(key) if !key.is_empty() => return Some(key),
            Ok(_) => "has no key after \"whsec_\"",
            Err(_) => "the part after \"whsec_\" is not valid base64",
        },
    };
    r.problem(path, Some(secret.span()), message);
    None
}

/// A valid HTTP header name (an RFC 9110 token).
fn header_name(r: &mut Reader<'_>, path: &str, name: Spanned<String>) -> Option<String> {
    if http::HeaderName::from_bytes(name.get_ref().as_bytes()).is_err() {
        r.problem(
            path,
            Some(name.span()),
            format!(
                "{:?} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
                name.get_ref()
            ),
        );
        return None;
    }
    Some(name.into_inner())
}

/// Signature headers plugins may not set precisely so that only a webhook's
/// `sign` can: Meta-style receivers expect the HMAC in them.
const SIGNATURE_HEADERS: &[&str] = &["x-hub-signature", "x-hub-signature-256"];

/// Refuses a header name the host sets itself (`Authorization` belongs to
/// `basic`/`bearer`; transport and `webhook-*` headers to the host), for an
/// auth header or a signature header (but for `allowed`, in lower case);
/// `advice` says what to use instead.
fn owned_by_host(
    r: &mut Reader<'_>,
    path: &str,
    name: Spanned<String>,
    allowed: &[&str],
    advice: &str,
) -> Option<Spanned<String>> {
    let lower = name.get_ref().to_ascii_lowercase();
    if crate::plugin::is_forbidden_header(&lower) && !allowed.contains(&lower.as_str()) {
        r.problem(
            path,
            Some(name.span()),
            format!(
                "{:?} is a header statushook sets itself; {advice}",
                name.get_ref()
            ),
        );
        return None;
    }
    Some(name)
}

/// A non-empty header value of visible ASCII, spaces and tabs.
fn header_value(r: &mut Reader<'_>, path: &str, value: Spanned<String>) -> Option<String> {
    let problem = if value.get_ref().is_empty() {
        "must not be empty"
    } else if http::HeaderValue::from_str(value.get_ref()).is_err() {
        "must be visible ASCII characters and spaces only, to fit in an HTTP header"
    } else {
        return Some(value.into_inner());
    };
    r.problem(path, Some(value.span()), problem);
    None
}
