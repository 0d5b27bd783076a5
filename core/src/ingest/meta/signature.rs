//! `X-Hub-Signature-256`: proof that a body comes from Meta.
//!
//! Meta signs every webhook body with HMAC-SHA256 under the app secret and
//! sends `sha256=<hex>`. The check runs on the exact bytes received, before
//! any parsing, against every configured app secret (one operator may have
//! several apps, or be rotating a secret). Each comparison is constant time
//! (`Mac::verify_slice`), and every secret is tried whatever the outcome of
//! the others.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

use crate::deliver::sign::{Encoding, hmac};

/// The header Meta signs with.
pub const HEADER: &str = "x-hub-signature-256";

/// The prefix of the header's value.
const PREFIX: &str = "sha256=";

/// Why a body's signature was refused (`401`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("missing X-Hub-Signature-256 header: Meta signs every webhook with the app secret")]
    Missing,
    /// The header is not `sha256=` and 64 hex digits.
    #[error("malformed X-Hub-Signature-256 header: {0}; expected sha256=<64 hex digits>")]
    Malformed(&'static str),
    /// The signature matches none of the configured app secrets.
    #[error(
        "the X-Hub-Signature-256 signature does not match the body under any configured app secret"
    )]
    Mismatch,
}

/// A parsed `X-Hub-Signature-256` value: the 32-byte HMAC-SHA256 tag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 32]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature(sha256={})", hex::encode(self.0))
    }
}

impl Signature {
    /// Parses a header value: `sha256=` (any case) and 64 hex digits,
    /// surrounding whitespace ignored.
    ///
    /// # Errors
    ///
    /// [`SignatureError::Malformed`] saying what is wrong.
    pub fn parse(value: &str) -> Result<Self, SignatureError> {
        let value = value.trim();
        let hex_digits = value
            .get(..PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(PREFIX))
            .and_then(|_| value.get(PREFIX.len()..))
            .ok_or(SignatureError::Malformed("it does not start with sha256="))?;
        if hex_digits.len() != 64 {
            return Err(SignatureError::Malformed("the digest is not 64 hex digits"));
        }
        let mut tag = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut tag)
            .map_err(|_| SignatureError::Malformed("the digest is not hexadecimal"))?;
        Ok(Signature(tag))
    }

    /// The signature of a request's headers.
    ///
    /// # Errors
    ///
    /// [`SignatureError::Missing`] without the header,
    /// [`SignatureError::Malformed`] when it cannot be read.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, SignatureError> {
        let value = headers.get(HEADER).ok_or(SignatureError::Missing)?;
        let value = value
            .to_str()
            .map_err(|_| SignatureError::Malformed("it is not ASCII"))?;
        Self::parse(value)
    }

    /// Checks the signature against `body` under each of `secrets`.
    ///
    /// # Errors
    ///
    /// [`SignatureError::Mismatch`] when no secret produces it (also when
    /// `secrets` is empty).
    pub fn verify<S: AsRef<[u8]>>(&self, secrets: &[S], body: &[u8]) -> Result<(), SignatureError> {
        let mut matched = false;
        for secret in secrets {
            // No short cut: every secret costs the same, matched or not.
            matched |= self.made_with(secret.as_ref(), body);
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

impl Signature {
    /// Whether this is the signature of `body` under `secret` (compared in
    /// constant time).
    pub fn made_with(&self, secret: &[u8], body: &[u8]) -> bool {
        // HMAC takes keys of any length; this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&self.0).is_ok()
    }
}

/// The `X-Hub-Signature-256` value Meta would send for `body` under
/// `secret`: `sha256=` and the lowercase hex HMAC-SHA256. For tests, tools
/// and benchmarks that play Meta.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hmac(secret, body, Encoding::Hex, PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;

    #[test]
    fn a_signature_made_with_any_configured_secret_verifies() {
        let header = sign(SECRET.as_bytes(), BODY);
        assert!(header.starts_with("sha256="));
        let signature = Signature::parse(&header).expect("well formed");
        signature.verify(&[SECRET], BODY).expect("one secret");
        signature
            .verify(&["old-secret", SECRET], BODY)
            .expect("second of two secrets");
        assert_eq!(
            signature.verify(&["old-secret"], BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            signature.verify::<&str>(&[], BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn every_byte_of_the_body_counts() {
        let signature = Signature::parse(&sign(SECRET.as_bytes(), BODY)).expect("well formed");
        let mut changed = BODY.to_vec();
        changed.push(b' ');
        assert_eq!(
            signature.verify(&[SECRET], &changed),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_header_format_is_checked() {
        let good = sign(SECRET.as_bytes(), BODY);
        let hex_part = good.trim_start_matches("sha256=");
        assert!(Signature::parse(&format!("  SHA256={}  ", hex_part.to_uppercase())).is_ok());
        for bad in [
            "",
            "sha256=",
            "sha1=abc",
            hex_part,
            &format!("sha256={}", &hex_part[..63]),
            &format!("sha256={hex_part}0"),
            &format!("sha256={}zz", &hex_part[..62]),
            "sha256=é",
        ] {
            assert!(
                matches!(Signature::parse(bad), Err(SignatureError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn headers_missing_or_not_ascii() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            Signature::from_headers(&headers),
            Err(SignatureError::Missing)
        );
        headers.insert(
            HEADER,
            http::HeaderValue::from_bytes(b"sha256=\xff").expect("opaque bytes are allowed"),
        );
        assert!(matches!(
            Signature::from_headers(&headers),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn meta_documented_example() {
        // HMAC-SHA256 over the exact bytes, as Meta's docs and SDKs compute it
        // (cross-checked with `openssl dgst -sha256 -hmac`).
        let header = sign(b"key", b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            header,
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
