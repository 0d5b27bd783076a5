//! Signing request bodies, so a receiver can check a body is genuine.
//!
//! Two schemes, chosen by a webhook's `sign` setting:
//!
//! - [`standard_webhooks`]: the `webhook-signature` header of the Standard
//!   Webhooks spec, an HMAC-SHA256 over `"{msg_id}.{timestamp}.{body}"`;
//! - [`hmac()`]: a plain HMAC-SHA256 of the exact body bytes, hex or base64,
//!   with an optional prefix (GitHub's `sha256=`, Connectly's bare base64).
//!
//! The host signs, never the plugin: secrets stay out of plugins. Both
//! functions sign the bytes exactly as sent, never a re-serialised body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How an `hmac` signature is encoded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lowercase hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The prefix of a Standard Webhooks secret as written in the config.
pub const WHSEC_PREFIX: &str = "whsec_";

/// Decodes a Standard Webhooks secret (`whsec_` + standard base64, padded or
/// not) into the key bytes [`standard_webhooks`] takes. The prefix is
/// optional, as in the reference libraries.
///
/// # Errors
///
/// The base64 error when the part after the prefix is not base64.
pub fn decode_whsec(secret: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let encoded = secret.strip_prefix(WHSEC_PREFIX).unwrap_or(secret);
    STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
}

/// HMAC-SHA256 of the concatenation of `parts` under `secret`.
fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The `webhook-signature` header value for one attempt:
/// `v1,<base64 of HMAC-SHA256(secret, "{msg_id}.{timestamp}.{body}")>`.
///
/// `secret` is the decoded key (the base64 after `whsec_`, see
/// [`decode_whsec`]), `msg_id` the `webhook-id` header, `timestamp` the
/// `webhook-timestamp` header (unix seconds of this attempt), and `body` the
/// exact bytes sent.
pub fn standard_webhooks(secret: &[u8], msg_id: &str, timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let tag = hmac_sha256(
        secret,
        &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(tag))
}

/// A plain HMAC-SHA256 signature of the exact body bytes: `prefix` followed by
/// the tag in `encoding` (lowercase hex or padded standard base64).
pub fn hmac(secret: &[u8], body: &[u8], encoding: Encoding, prefix: &str) -> String {
    let tag = hmac_sha256(secret, &[body]);
    let encoded = match encoding {
        Encoding::Hex => hex::encode(tag),
        Encoding::Base64 => STANDARD.encode(tag),
    };
    format!("{prefix}{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    use http::{HeaderMap, HeaderValue};
    use standardwebhooks::Webhook;

    /// The secret used in the Standard Webhooks spec's own examples.
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    }

    fn headers(id: &str, timestamp: u64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_str(id).expect("id"));
        headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
        headers.insert(
            "webhook-signature",
            HeaderValue::from_str(signature).expect("signature"),
        );
        headers
    }

    #[test]
    fn standard_webhooks_verifies_with_the_reference_crate() {
        let key = decode_whsec(WHSEC).expect("valid secret");
        let body = br#"{"status":"read","id":"wamid.HBgL"}"#;
        let ts = now();
        let signature = standard_webhooks(&key, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", ts, body);
        assert!(signature.starts_with("v1,"));
        let wh = Webhook::new(WHSEC).expect("reference crate accepts secret");
        wh.verify(
            body,
            &headers("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", ts, &signature),
        )
        .expect("signature verifies");
    }

    #[test]
    fn standard_webhooks_rejects_a_changed_body_id_or_timestamp() {
        let key = decode_whsec(WHSEC).expect("valid secret");
        let body = br#"{"status":"read"}"#;
        let ts = now();
        let signature = standard_webhooks(&key, "msg_1", ts, body);
        let wh = Webhook::new(WHSEC).expect("reference crate accepts secret");
        assert!(
            wh.verify(br#"{"status":"sent"}"#, &headers("msg_1", ts, &signature))
                .is_err()
        );
        assert!(wh.verify(body, &headers("msg_2", ts, &signature)).is_err());
        assert!(
            wh.verify(body, &headers("msg_1", ts - 1, &signature))
                .is_err()
        );
        let other = Webhook::new("whsec_c2VjcmV0LXR3by1kaWZmZXJlbnQ=").expect("other secret");
        assert!(
            other
                .verify(body, &headers("msg_1", ts, &signature))
                .is_err()
        );
    }

    #[test]
    fn standard_webhooks_matches_the_reference_sign() {
        // Fixed timestamp, so this pins the exact output, not just a round trip.
        let key = decode_whsec(WHSEC).expect("valid secret");
        let wh = Webhook::new(WHSEC).expect("reference crate accepts secret");
        let body = br#"{"test": 2432232314}"#;
        let expected = wh
            .sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
            .expect("reference signs");
        assert_eq!(
            standard_webhooks(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            expected
        );
        // The spec's published example signature for these inputs.
        assert_eq!(expected, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn standard_webhooks_signs_non_utf8_bodies() {
        let key = decode_whsec(WHSEC).expect("valid secret");
        let a = standard_webhooks(&key, "id", 1, &[0xff, 0xfe]);
        let b = standard_webhooks(&key, "id", 1, &[0xff, 0xfd]);
        assert_ne!(a, b);
    }

    #[test]
    fn decode_whsec_with_and_without_prefix() {
        assert_eq!(decode_whsec("whsec_c2VjcmV0").expect("ok"), b"secret");
        assert_eq!(decode_whsec("c2VjcmV0").expect("ok"), b"secret");
        assert!(decode_whsec("whsec_not base64!").is_err());
    }

    // RFC 4231 test case 2.
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const TAG_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const TAG_B64: &str = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";

    #[test]
    fn hmac_rfc4231_hex_and_base64() {
        assert_eq!(hmac(KEY, DATA, Encoding::Hex, ""), TAG_HEX);
        assert_eq!(hmac(KEY, DATA, Encoding::Base64, ""), TAG_B64);
        assert_eq!(
            STANDARD.decode(TAG_B64).expect("b64"),
            hex::decode(TAG_HEX).expect("hex")
        );
    }

    #[test]
    fn hmac_connectly_style_base64_without_prefix() {
        // x-connectly-hmac-sha256: bare base64 of the body's HMAC-SHA256.
        let sig = hmac(KEY, DATA, Encoding::Base64, "");
        assert_eq!(sig, TAG_B64);
        assert!(!sig.starts_with("sha256="));
    }

    #[test]
    fn hmac_github_style_sha256_hex_prefix() {
        let sig = hmac(KEY, DATA, Encoding::Hex, "sha256=");
        assert_eq!(sig, format!("sha256={TAG_HEX}"));
    }

    #[test]
    fn hmac_depends_on_every_body_byte() {
        assert_ne!(
            hmac(KEY, b"{\"a\":1}", Encoding::Hex, ""),
            hmac(KEY, b"{\"a\": 1}", Encoding::Hex, "")
        );
    }
}
