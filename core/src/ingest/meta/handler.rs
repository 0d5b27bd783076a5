//! The HTTP side of Meta's webhook: the verification handshake
//! (`GET /v1/meta/webhook`) and signed deliveries (`POST /v1/meta/webhook`).
//!
//! A delivery is answered `200 {"accepted": N, "duplicates": M, "skipped": K}`
//! only once every event made from it is queued; a body whose updates were
//! all skipped needs no queue and is answered at once. Refusals use the JSON
//! error shape of docs/http-api.md and are counted in
//! `statushook_ingest_rejected_total` with a `meta_` reason, as are the
//! skipped updates (only once the body is accepted, so Meta's re-sends after
//! a `503` are not counted twice).

use std::cell::RefCell;
use std::collections::BTreeSet;

use http::{HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;

use super::envelope::Envelope;
use super::mapping::{BotLookup, BotRef, Mapped, SkipReason, map};
use super::signature::{Signature, SignatureError};
use crate::config::MetaConfig;
use crate::ingest::Ingest;
use crate::ingest::events::queue_events;
use crate::ingest::response::{ApiError, HttpResponse, json, read_body, text};
use crate::metrics::ReasonLabels;
use crate::route::{Scope, Snapshot};

/// Handles `GET /v1/meta/webhook`: answers `hub.challenge` (text/plain) when
/// `hub.mode` is `subscribe` and `hub.verify_token` is the configured one;
/// `403` otherwise, `404` when `[meta]` is not configured.
pub fn verify(ingest: &Ingest, request: &Request<Incoming>) -> HttpResponse {
    let routes = ingest.routes.load();
    match handshake(routes.config.meta.as_ref(), request.uri().query()) {
        Ok(challenge) => {
            let mut response = text(StatusCode::OK, challenge, "text/plain; charset=utf-8");
            response.headers_mut().insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            response
        }
        Err(error) => reject(ingest, error),
    }
}

/// The handshake's answer for a query string: the challenge to echo.
///
/// # Errors
///
/// `404` without `[meta]`; `403` for a wrong mode or token; `400` when the
/// token is right but `hub.challenge` is missing.
pub fn handshake(meta: Option<&MetaConfig>, query: Option<&str>) -> Result<String, ApiError> {
    let meta = meta.ok_or_else(not_configured)?;
    let (mut mode, mut token, mut challenge) = (None, None, None);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "hub.mode" => mode = Some(value),
            "hub.verify_token" => token = Some(value),
            "hub.challenge" => challenge = Some(value),
            _ => {}
        }
    }
    if mode.as_deref() != Some("subscribe") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "hub.mode must be \"subscribe\" for Meta's verification handshake",
        ));
    }
    let token_matches = token
        .as_deref()
        .is_some_and(|t| same_secret(meta.verify_token.as_bytes(), t.as_bytes()));
    if !token_matches {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "hub.verify_token is missing or is not the configured [meta] verify_token",
        ));
    }
    challenge.map(|c| c.into_owned()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "hub.challenge is missing: Meta's handshake sends the value to echo",
        )
    })
}

/// Handles `POST /v1/meta/webhook`.
pub async fn post(ingest: &Ingest, request: Request<Incoming>) -> HttpResponse {
    match accept(ingest, request).await {
        Ok(response) => response,
        Err(error) => reject(ingest, error),
    }
}

async fn accept(ingest: &Ingest, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let routes = ingest.routes.load_full();
    if routes.config.meta.is_none() {
        return Err(not_configured());
    }
    // Refuse an unsigned request before reading its body.
    let signature = Signature::from_headers(request.headers())
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let body = read_body(
        request,
        routes.config.server.max_body_bytes,
        routes.config.server.body_read_timeout,
    )
    .await?;
    let scope = routes
        .meta_signer(&signature, &body)
        .ok_or_else(|| ApiError::unauthorized(SignatureError::Mismatch.to_string()))?;
    let envelope = Envelope::parse(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_whatsapp_webhook",
            format!("not a WhatsApp webhook: {e}"),
        )
    })?;
    let lookup = SignedBy {
        routes: routes.as_ref(),
        scope: &scope,
        refused: RefCell::new(BTreeSet::new()),
    };
    let Mapped {
        events,
        mut skipped,
    } = map(&envelope, &lookup);
    drop(envelope);
    let refused = lookup.refused.into_inner();
    for skip in &mut skipped {
        if skip.reason == SkipReason::UnknownPhoneNumberId
            && skip
                .phone_number_id
                .as_ref()
                .is_some_and(|phone| refused.contains(phone))
        {
            skip.reason = SkipReason::AppNotAllowed;
        }
    }
    if events.is_empty() && !refused.is_empty() {
        // Nothing in it was this app's to send: refuse it whole, so a
        // misconfigured app (or a tenant's leaked secret) is noticed.
        tracing::warn!(phone_number_ids = ?refused, "a Meta body signed by an app that may not speak for its bots was refused; check the bots' meta_app_secrets");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "app_not_allowed",
            format!(
                "signed by a Meta app that may not speak for phone number id(s) {}",
                refused.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let (accepted, duplicates) = if events.is_empty() {
        (0, 0)
    } else {
        queue_events(ingest, routes, events).await?
    };
    record_skips(ingest, &skipped);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"accepted": accepted, "duplicates": duplicates, "skipped": skipped.len()}),
    ))
}

/// The routing table as one Meta app sees it: the phone numbers of bots it
/// may not speak for are not its to map (they are noted, to be told apart
/// from numbers no bot owns).
struct SignedBy<'a> {
    routes: &'a Snapshot,
    scope: &'a Scope,
    refused: RefCell<BTreeSet<String>>,
}

impl BotLookup for SignedBy<'_> {
    fn owner_of(&self, phone_number_id: &str) -> Option<BotRef<'_>> {
        let owner = self.routes.owner_of(phone_number_id)?;
        if self.scope.allows(owner.id) {
            Some(owner)
        } else {
            self.refused
                .borrow_mut()
                .insert(phone_number_id.to_string());
            None
        }
    }
}

/// Counts skipped updates by reason and logs them: unknown phone number ids
/// at `warn` (once per id and body: an operator must add them to a bot or
/// unsubscribe them), the rest at `debug`.
fn record_skips(ingest: &Ingest, skipped: &[super::mapping::Skipped]) {
    let mut unknown_phones = BTreeSet::new();
    for skip in skipped {
        ingest
            .metrics
            .ingest_rejected
            .get_or_create(&ReasonLabels {
                reason: skip.reason.metric_reason().to_string(),
            })
            .inc();
        if skip.reason == SkipReason::UnknownPhoneNumberId {
            unknown_phones.insert(skip.phone_number_id.as_deref().unwrap_or_default());
        } else if skip.reason == SkipReason::AppNotAllowed {
            tracing::warn!(place = %skip.place, phone_number_id = skip.phone_number_id.as_deref(), "a Meta update signed by an app that may not speak for its bot was refused; check the bots' meta_app_secrets");
        } else {
            tracing::debug!(reason = skip.reason.as_str(), place = %skip.place, detail = %skip.detail, "Meta update skipped");
        }
    }
    for phone in unknown_phones {
        let updates = skipped
            .iter()
            .filter(|s| {
                s.reason == SkipReason::UnknownPhoneNumberId
                    && s.phone_number_id.as_deref().unwrap_or_default() == phone
            })
            .count();
        tracing::warn!(
            phone_number_id = phone,
            updates,
            "Meta updates for a phone number id that no bot owns were acknowledged and not queued; add it to a bot's phone_number_ids"
        );
    }
}

/// Counts a refusal and turns it into its response.
fn reject(ingest: &Ingest, error: ApiError) -> HttpResponse {
    ingest
        .metrics
        .ingest_rejected
        .get_or_create(&ReasonLabels {
            reason: format!("meta_{}", error.code),
        })
        .inc();
    let unauthorized = error.status == StatusCode::UNAUTHORIZED;
    let mut response = error.into_response();
    if unauthorized {
        // Not a bearer scheme: say what is expected instead.
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    response
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "meta_not_configured",
        "Meta webhooks are not configured: add a [meta] section with verify_token and app_secrets to the config",
    )
}

/// Compares secrets in time independent of where they differ.
fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    expected.ct_eq(given).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MetaConfig {
        MetaConfig {
            verify_token: "tok-123".into(),
            app_secrets: vec!["s".into()],
        }
    }

    fn status_of(result: Result<String, ApiError>) -> Result<String, u16> {
        result.map_err(|e| e.status.as_u16())
    }

    #[test]
    fn the_handshake_echoes_the_challenge_for_the_right_token_only() {
        let meta = meta();
        let m = Some(&meta);
        assert_eq!(
            status_of(handshake(
                m,
                Some("hub.mode=subscribe&hub.verify_token=tok-123&hub.challenge=1158201444")
            )),
            Ok("1158201444".into())
        );
        assert_eq!(
            status_of(handshake(
                m,
                Some("hub.challenge=a%20b%26c&hub.verify_token=tok%2D123&hub.mode=subscribe")
            )),
            Ok("a b&c".into()),
            "decoded, any order"
        );
        for refused in [
            None,
            Some(""),
            Some("hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1"),
            Some("hub.mode=subscribe&hub.verify_token=tok-1234&hub.challenge=1"),
            Some("hub.mode=subscribe&hub.challenge=1"),
            Some("hub.mode=unsubscribe&hub.verify_token=tok-123&hub.challenge=1"),
        ] {
            assert_eq!(status_of(handshake(m, refused)), Err(403), "{refused:?}");
        }
        assert_eq!(
            status_of(handshake(
                m,
                Some("hub.mode=subscribe&hub.verify_token=tok-123")
            )),
            Err(400)
        );
        let error = handshake(None, Some("hub.mode=subscribe")).expect_err("not configured");
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert!(error.message.contains("[meta]"), "{}", error.message);
    }
}
