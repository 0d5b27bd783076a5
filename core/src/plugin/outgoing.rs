//! What a plugin asks the host to send, and the checks it must pass.

use super::bindings::WitOutgoing;
use super::error::RenderError;

/// A rendered request: the plugin's content type, extra headers and body.
///
/// Produced only by a successful render, so it has already passed the
/// deny-list and syntax checks below. The delivery stage adds `webhook-id`,
/// `webhook-timestamp`, signatures, auth and `User-Agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The `Content-Type` of the body.
    pub content_type: String,
    /// Extra headers, in the order the plugin gave them.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes; identical on every attempt of one delivery.
    pub body: Vec<u8>,
}

/// Headers the host owns. A plugin that sets one would forge the transport,
/// the dispatcher's identity or a signature.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "authorization",
    "proxy-authorization",
    "cookie",
    "user-agent",
    "x-hub-signature",
    "x-hub-signature-256",
];
/// Header-name prefixes the host owns: Standard Webhooks headers, proxies and
/// the dispatcher's own.
const FORBIDDEN_PREFIXES: &[&str] = &["webhook-", "proxy-", "x-statushook-"];
/// More headers than this is a plugin bug, not a format.
const MAX_HEADERS: usize = 32;
/// The longest header value a plugin may set.
const MAX_HEADER_VALUE: usize = 8 << 10;

/// Whether a plugin may set the header `name` (case-insensitive).
pub fn is_forbidden_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    FORBIDDEN_HEADERS.contains(&lower.as_str())
        || FORBIDDEN_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// Checks a plugin's output against the limits and the HTTP grammar.
pub(crate) fn check(
    plugin: &str,
    output: WitOutgoing,
    max_body: usize,
) -> Result<Outgoing, RenderError> {
    let malformed = |reason: String| RenderError::MalformedOutput {
        plugin: plugin.to_string(),
        reason,
    };
    if output.body.len() > max_body {
        return Err(RenderError::OutputTooLarge {
            plugin: plugin.to_string(),
            size: output.body.len(),
            limit: max_body,
        });
    }
    if output.headers.len() > MAX_HEADERS {
        return Err(malformed(format!(
            "{} headers; at most {MAX_HEADERS} are allowed",
            output.headers.len()
        )));
    }
    let media_type = output
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !is_header_value(&output.content_type) || !is_media_type(&media_type) {
        return Err(malformed(format!(
            "content type {:?} is not a media type such as \"application/json\"",
            output.content_type
        )));
    }
    for (name, value) in &output.headers {
        if !is_token(name) {
            return Err(malformed(format!(
                "header name {name:?} is not a valid HTTP header name"
            )));
        }
        if is_forbidden_header(name) {
            return Err(RenderError::ForbiddenHeader {
                plugin: plugin.to_string(),
                header: name.clone(),
            });
        }
        if value.len() > MAX_HEADER_VALUE || !is_header_value(value) {
            return Err(malformed(format!(
                "the value of header {name:?} has control characters or is over {MAX_HEADER_VALUE} bytes"
            )));
        }
    }
    let is_json = media_type == "application/json" || media_type.ends_with("+json");
    if is_json && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&output.body) {
        return Err(malformed(format!(
            "content type is {media_type} but the body is not JSON: {e}"
        )));
    }
    Ok(Outgoing {
        content_type: output.content_type,
        headers: output.headers,
        body: output.body,
    })
}

/// An HTTP token (RFC 9110, section 5.6.2): a header name or media type
/// part. A header name is exactly a token, so `http` decides.
fn is_token(s: &str) -> bool {
    http::HeaderName::from_bytes(s.as_bytes()).is_ok()
}

/// `type/subtype`, each a token.
fn is_media_type(s: &str) -> bool {
    s.split_once('/')
        .is_some_and(|(t, sub)| is_token(t) && is_token(sub))
}

/// A header value without CR, LF, NUL or other control characters.
fn is_header_value(s: &str) -> bool {
    http::HeaderValue::from_str(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(content_type: &str, headers: &[(&str, &str)], body: &str) -> WitOutgoing {
        WitOutgoing {
            content_type: content_type.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn accepts_json_with_custom_header() {
        let out = check(
            "t",
            output("application/json; charset=utf-8", &[("X-Crm", "1")], "{}"),
            100,
        );
        assert!(out.is_ok(), "{out:?}");
    }

    #[test]
    fn host_owned_headers_are_refused_in_any_case() {
        for name in [
            "Authorization",
            "webhook-signature",
            "Webhook-Id",
            "HOST",
            "Content-Length",
            "X-Hub-Signature-256",
        ] {
            let err =
                check("t", output("application/json", &[(name, "x")], "{}"), 100).unwrap_err();
            assert_eq!(err.code(), "forbidden_header", "{name}");
        }
    }

    #[test]
    fn header_injection_is_malformed() {
        let err = check("t", output("application/json\r\nX-Evil: 1", &[], "{}"), 100).unwrap_err();
        assert_eq!(err.code(), "malformed_output");
        let err = check(
            "t",
            output("application/json", &[("X-A", "a\nb")], "{}"),
            100,
        )
        .unwrap_err();
        assert_eq!(err.code(), "malformed_output");
        let err = check(
            "t",
            output("application/json", &[("Bad Name", "a")], "{}"),
            100,
        )
        .unwrap_err();
        assert_eq!(err.code(), "malformed_output");
    }

    #[test]
    fn json_content_type_needs_a_json_body() {
        let err = check("t", output("application/json", &[], "{\"a\": "), 100).unwrap_err();
        assert_eq!(err.code(), "malformed_output");
        assert!(check("t", output("text/plain", &[], "{\"a\": "), 100).is_ok());
        assert!(check("t", output("application/vnd.crm+json", &[], "[1]"), 100).is_ok());
    }

    #[test]
    fn body_over_the_limit_is_too_large() {
        let err = check("t", output("text/plain", &[], "12345"), 4).unwrap_err();
        assert_eq!(
            err,
            RenderError::OutputTooLarge {
                plugin: "t".into(),
                size: 5,
                limit: 4
            }
        );
    }
}
