//! One delivery attempt: build the request from the stored delivery and the
//! live webhook config, send it, and classify the answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{backoff, sign, ssrf};
use crate::config::{Auth, Sign, WebhookConfig};
use crate::queue::{Delivery, RESPONSE_EXCERPT};

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: delivered.
    Delivered(u16),
    /// 410 Gone: the receiver asks never to be sent this again.
    Gone,
    /// Another status: retry on the schedule. `retry_after` when a 429/503
    /// said how long to wait; `endpoint_down` when the status says the
    /// endpoint itself is failing (5xx, 429), for the circuit breaker.
    Rejected {
        /// The status code.
        status: u16,
        /// The receiver's `Retry-After`, if given with a 429 or 503.
        retry_after: Option<Duration>,
        /// Whether the answer counts against the endpoint's health.
        endpoint_down: bool,
    },
    /// No answer at all: timeout, refused connection, TLS failure.
    Failed(String),
    /// Not sent, and no send to this URL can succeed under the current
    /// config: its host is (or resolves only to) a private address while
    /// `allow_private_networks` is off. Retrying would only repeat it.
    Refused(String),
}

/// What one send came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The answer, classified.
    pub answer: Answer,
    /// The start of the response body, for the delivery log (at most
    /// [`RESPONSE_EXCERPT`] bytes, lossy UTF-8); `None` without one.
    pub response: Option<String>,
}

impl From<Answer> for Sent {
    fn from(answer: Answer) -> Self {
        Sent {
            answer,
            response: None,
        }
    }
}

/// Sends `delivery` to `webhook` once. Signs with the webhook's current
/// secret and `webhook-timestamp` of now; the body and `webhook-id` are the
/// stored ones, identical on every attempt.
pub async fn send(
    client: &reqwest::Client,
    webhook: &WebhookConfig,
    delivery: &Delivery,
    timeout: Duration,
    allow_private_networks: bool,
) -> Sent {
    if let Err(e) = ssrf::check_url(&webhook.url, allow_private_networks) {
        return Answer::Refused(e.to_string()).into();
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut request = client
        .post(webhook.url.clone())
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, &delivery.content_type)
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp);
    for (name, value) in &delivery.headers {
        // Refused at render time; this catches a delivery rendered before
        // a reload gave the webhook an auth or signature header of this name.
        if webhook.owns_header(name) {
            tracing::warn!(header = %name, "the plugin set a header this webhook's auth or signature sets; the plugin's value is dropped");
            continue;
        }
        request = request.header(name, value);
    }
    request = match &webhook.sign {
        Sign::None => request,
        // One `v1,` signature per key, space-separated, as the spec allows:
        // a receiver rolling its secret accepts either.
        Sign::StandardWebhooks { secrets } => request.header(
            "webhook-signature",
            secrets
                .iter()
                .map(|secret| {
                    sign::standard_webhooks(secret, &delivery.id, timestamp, &delivery.body)
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Sign::Hmac {
            secret,
            header,
            encoding,
            prefix,
        } => request.header(
            header,
            sign::hmac(secret, &delivery.body, *encoding, prefix),
        ),
    };
    request = match &webhook.auth {
        Auth::None => request,
        Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        Auth::Bearer { token } => request.bearer_auth(token),
        Auth::Header { name, value } => request.header(name, value),
    };
    let response = match request.body(delivery.body.clone()).send().await {
        Ok(response) => response,
        Err(error) => {
            return match refusal(&error) {
                Some(refused) => Answer::Refused(refused.to_string()),
                None => Answer::Failed(describe(&error)),
            }
            .into();
        }
    };
    let status = response.status().as_u16();
    let retry_after = if status == 429 || status == 503 {
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| backoff::parse_retry_after(v, SystemTime::now()))
    } else {
        None
    };
    let response = drain(response).await;
    let answer = match status {
        200..=299 => Answer::Delivered(status),
        410 => Answer::Gone,
        _ => Answer::Rejected {
            status,
            retry_after,
            endpoint_down: status >= 500 || status == 429,
        },
    };
    Sent { answer, response }
}

/// What a secret is shown as.
const MASKED: &str = "****";

/// The headers an attempt of `delivery` to `webhook` sends, in the order
/// [`send`] sets them, with every secret masked: what the delivery log and
/// `plugin-test` show. `webhook-timestamp` and signatures change with each
/// attempt; they are described, not computed.
pub fn shown_headers(webhook: &WebhookConfig, delivery: &Delivery) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Content-Type".to_string(), delivery.content_type.clone()),
        (
            "User-Agent".to_string(),
            super::client::USER_AGENT.to_string(),
        ),
        ("webhook-id".to_string(), delivery.id.clone()),
        (
            "webhook-timestamp".to_string(),
            "<unix seconds of the attempt>".to_string(),
        ),
    ];
    for (name, value) in &delivery.headers {
        if !webhook.owns_header(name) {
            headers.push((name.clone(), value.clone()));
        }
    }
    match &webhook.sign {
        Sign::None => {}
        Sign::StandardWebhooks { secrets } => headers.push((
            "webhook-signature".to_string(),
            vec![format!("v1,{MASKED}"); secrets.len()].join(" "),
        )),
        Sign::Hmac { header, prefix, .. } => {
            headers.push((header.clone(), format!("{prefix}{MASKED}")));
        }
    }
    match &webhook.auth {
        Auth::None => {}
        Auth::Basic { .. } => {
            headers.push(("Authorization".to_string(), format!("Basic {MASKED}")))
        }
        Auth::Bearer { .. } => {
            headers.push(("Authorization".to_string(), format!("Bearer {MASKED}")));
        }
        Auth::Header { name, .. } => headers.push((name.clone(), MASKED.to_string())),
    }
    headers
}

/// Reads (a bounded part of) the response so the connection can be reused,
/// keeping its first [`RESPONSE_EXCERPT`] bytes.
async fn drain(mut response: reqwest::Response) -> Option<String> {
    let mut excerpt = Vec::new();
    let mut read = 0usize;
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = RESPONSE_EXCERPT.saturating_sub(excerpt.len());
        excerpt.extend_from_slice(&chunk[..room.min(chunk.len())]);
        read += chunk.len();
        if read > 64 << 10 {
            break;
        }
    }
    (!excerpt.is_empty()).then(|| String::from_utf8_lossy(&excerpt).into_owned())
}

/// The SSRF guard's refusal behind a failed request, if that is what it was
/// (the resolver found only private addresses). A name that resolves to
/// nothing is not one: DNS may recover, so that is retried.
fn refusal(error: &reqwest::Error) -> Option<&ssrf::SsrfError> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<ssrf::SsrfError>() {
            return (!matches!(refused, ssrf::SsrfError::NoAddresses { .. })).then_some(refused);
        }
        source = cause.source();
    }
    None
}

/// A one-line reason for a failed request, with its cause chain.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut message = kind.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
