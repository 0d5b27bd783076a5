//! The delivery log's admin routes: search a bot's deliveries, show one
//! with the exact request it sends (secrets masked), and send one again.

use base64::Engine as _;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::Ingest;
use super::admin::{authorize, query_param};
use super::response::{ApiError, HttpResponse, json};
use crate::deliver::attempt::shown_headers;
use crate::event::Status;
use crate::queue::{Cursor, Delivery, DeliveryQuery, Outcome, Resend};
use crate::route::Webhook;

/// The most deliveries one page returns.
const MAX_PAGE: usize = 500;
/// Deliveries per page when `limit` is not given.
const DEFAULT_PAGE: usize = 50;

/// `GET /v1/bots/{bot}/deliveries?...`: a page of the bot's log, newest
/// first, with every attempt.
pub async fn list(ingest: &Ingest, request: Request<Incoming>, bot: &str) -> HttpResponse {
    if let Err(e) = authorize(ingest, &request, bot) {
        return e.into_response();
    }
    let query = match read_query(&request) {
        Ok(query) => query,
        Err(e) => return e.into_response(),
    };
    match ingest.queue.deliveries(bot, &query).await {
        Ok(page) => json(
            StatusCode::OK,
            &serde_json::json!({"bot": bot, "deliveries": page.deliveries, "next_cursor": page.next_cursor}),
        ),
        Err(e) => ApiError::unavailable(e.to_string()).into_response(),
    }
}

/// `GET /v1/bots/{bot}/deliveries/{id}`: the delivery, its attempts, and the
/// request an attempt sends (URL and headers from the live config, secrets
/// masked; the stored body).
pub async fn show(
    ingest: &Ingest,
    request: Request<Incoming>,
    bot: &str,
    id: &str,
) -> HttpResponse {
    if let Err(e) = authorize(ingest, &request, bot) {
        return e.into_response();
    }
    let record = match ingest.queue.delivery(bot, id).await {
        Ok(Some(record)) => record,
        Ok(None) => return unknown(bot, id).into_response(),
        Err(e) => return ApiError::unavailable(e.to_string()).into_response(),
    };
    let routes = ingest.routes.load();
    let webhook = routes.webhook(bot, &record.delivery.webhook);
    let request = request_json(webhook, &record.delivery);
    json(
        StatusCode::OK,
        &serde_json::json!({"delivery": record, "request": request}),
    )
}

/// `POST /v1/bots/{bot}/deliveries/{id}/resend`: queues a delivered or dead
/// delivery again (same `webhook-id` and body, a fresh attempt count).
pub async fn resend(
    ingest: &Ingest,
    request: Request<Incoming>,
    bot: &str,
    id: &str,
) -> HttpResponse {
    if let Err(e) = authorize(ingest, &request, bot) {
        return e.into_response();
    }
    match ingest.queue.resend(bot, id).await {
        Ok(Resend::Queued) => {
            tracing::info!(bot, delivery = id, "delivery resent");
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"resent": true, "id": id}),
            )
        }
        Ok(Resend::AlreadyPending) => ApiError::new(
            StatusCode::CONFLICT,
            "already_pending",
            format!("delivery {id:?} is still queued; it will be sent without a resend"),
        )
        .into_response(),
        Ok(Resend::NothingToSend) => ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_send",
            format!("delivery {id:?} has no body: its plugin failed when it was rendered"),
        )
        .into_response(),
        Ok(Resend::NotFound) => unknown(bot, id).into_response(),
        Err(e) => ApiError::unavailable(e.to_string()).into_response(),
    }
}

/// The request an attempt of `delivery` to `webhook` sends, as the log and
/// the console's playground show it: URL and headers from the live config
/// (secrets masked), the stored body as text, or base64 when it is not
/// UTF-8. A webhook removed since has no URL or headers any more.
pub(crate) fn request_json(webhook: Option<&Webhook>, delivery: &Delivery) -> serde_json::Value {
    let body = &delivery.body;
    let (text, base64) = match std::str::from_utf8(body) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(body)),
        ),
    };
    serde_json::json!({
        "method": "POST",
        "url": webhook.map(|w| w.config.url.to_string()),
        "headers": webhook.map(|w| shown_headers(&w.config, delivery)),
        "body": text,
        "body_base64": base64,
    })
}

fn unknown(bot: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_delivery",
        format!("bot {bot:?} has no delivery {id:?} in its log (never, or past its retention)"),
    )
}

/// The query of a listing, each parameter checked.
fn read_query(request: &Request<Incoming>) -> Result<DeliveryQuery, ApiError> {
    let bad = |name: &str, what: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{name} must be {what}"),
        )
    };
    let text = |name: &str| query_param(request, name).filter(|v| !v.is_empty());
    let millis = |name: &str| -> Result<Option<u64>, ApiError> {
        text(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(name, "unix milliseconds, e.g. 1777000000000"))
            })
            .transpose()
    };
    let limit = match text("limit") {
        None => DEFAULT_PAGE,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| bad("limit", &format!("a whole number from 1 to {MAX_PAGE}")))?,
    };
    let status = text("status")
        .map(|s| {
            s.parse::<Status>()
                .map_err(|_| bad("status", "a canonical status such as read or failed"))
        })
        .transpose()?;
    let outcome = text("outcome")
        .map(|o| {
            Outcome::parse(&o)
                .ok_or_else(|| bad("outcome", "pending, delivered, dead or suppressed"))
        })
        .transpose()?;
    let cursor = text("cursor")
        .map(|c| {
            Cursor::decode(&c).ok_or_else(|| bad("cursor", "a next_cursor from a previous page"))
        })
        .transpose()?;
    Ok(DeliveryQuery {
        webhook: text("webhook"),
        message_id: text("message_id"),
        recipient: text("recipient"),
        status,
        outcome,
        since_ms: millis("since")?,
        until_ms: millis("until")?,
        limit,
        cursor,
    })
}
