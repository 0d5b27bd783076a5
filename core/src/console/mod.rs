//! The operator console: a web page at `/console` on the operations
//! listener, and the three JSON routes only it needs (the rest of what it
//! shows comes from the admin API it sits on).
//!
//! The page is plain HTML, CSS and one script, embedded in the binary (no
//! build step, no CDN: it works offline and is served in one request
//! each). The script signs in with an admin token, kept in the tab's
//! `sessionStorage`, and calls the same routes with the same scopes as any
//! API client: a tenant's token sees its own bots and nothing else.
//!
//! - `GET /v1/bots[?bot=ID]`: the bots the token may see (or just that
//!   one), with each webhook's health (breaker, lane held or not, pending
//!   deliveries, last success and failure) and recent activity;
//! - `GET /v1/config`: the effective config, secrets redacted, and the
//!   recent reloads (the whole config and reloads for server-wide tokens;
//!   a tenant gets its own bots' sections);
//! - `POST /v1/bots/{bot}/webhooks/{webhook}/preview`: the playground;
//!   the exact request the webhook's plugin makes of an event, sent
//!   nowhere.

use std::time::Instant;

use http::{Request, StatusCode};
use hyper::body::Incoming;

use crate::ingest::Ingest;
use crate::ingest::admin::{authorize, query_param};
use crate::ingest::deliveries::request_json;
use crate::ingest::response::{ApiError, HttpResponse, bearer_token, json, read_body, text};
use crate::queue::now_ms;
use crate::route::{Preview, Scope, Snapshot};

const PAGE: &str = include_str!("assets/console.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// `GET /console` and its two assets; `None` for another path.
pub fn asset(path: &str) -> Option<HttpResponse> {
    let (body, content_type) = match path {
        "/console" | "/console/" => (PAGE, "text/html; charset=utf-8"),
        "/console/console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/console/console.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut response = text(StatusCode::OK, body.as_bytes(), content_type);
    let headers = response.headers_mut();
    // Everything the page loads is its own: no inline script, no other origin.
    headers.insert(
        "content-security-policy",
        http::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

/// The bots the request's admin token may see: every configured bot for
/// a server-wide token, its own for a tenant's.
fn visible<'s>(
    snapshot: &'s Snapshot,
    request: &Request<Incoming>,
) -> Result<(bool, Vec<&'s crate::route::Bot>), ApiError> {
    let token = bearer_token(request.headers()).ok_or_else(|| {
        ApiError::unauthorized("missing bearer token: send Authorization: Bearer <admin token>")
    })?;
    match snapshot.admin_scope(token) {
        None => Err(ApiError::unauthorized(
            "the bearer token is not an admin token",
        )),
        Some(Scope::AnyBot) => Ok((true, snapshot.bots().collect())),
        Some(Scope::Bots(ids)) => Ok((
            false,
            snapshot
                .bots()
                .filter(|b| ids.contains(&b.config.id))
                .collect(),
        )),
    }
}

/// `GET /v1/bots`.
pub async fn bots(ingest: &Ingest, request: Request<Incoming>) -> HttpResponse {
    let snapshot = ingest.routes.load();
    let (server_wide, mut bots) = match visible(&snapshot, &request) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    if let Some(id) = query_param(&request, "bot") {
        bots.retain(|b| b.config.id == id);
    }
    // Every shown webhook's lane in one queue round trip.
    let pairs: Vec<(&str, &str)> = bots
        .iter()
        .flat_map(|b| {
            b.webhooks
                .iter()
                .map(|w| (b.config.id.as_str(), w.config.name.as_str()))
        })
        .collect();
    let mut lanes = match ingest.queue.lanes(&pairs).await {
        Ok(lanes) => lanes.into_iter(),
        Err(e) => return ApiError::unavailable(e.to_string()).into_response(),
    };
    let activity = &ingest.metrics.activity;
    let now = Instant::now();
    let list: Vec<serde_json::Value> = bots
        .iter()
        .map(|bot| {
            let id = &bot.config.id;
            let mut pending = 0;
            let webhooks: Vec<serde_json::Value> = bot
                .webhooks
                .iter()
                .map(|w| {
                    let (breaker, in_flight) = ingest.endpoints.breaker(&w.endpoint, now);
                    let lane = lanes.next().unwrap_or_default();
                    pending += lane.pending;
                    serde_json::json!({
                        "name": w.config.name,
                        "url": shown_url(&w.config.url),
                        "events": w.config.events.to_string(),
                        "plugin": w.plugin.name(),
                        "endpoint": w.endpoint,
                        "breaker": breaker,
                        "in_flight": in_flight,
                        "pending": lane.pending,
                        "held_until_ms": lane.held_until_ms,
                        "activity": activity.webhook_view(id, &w.config.name),
                    })
                })
                .collect();
            serde_json::json!({
                "id": id,
                "channel_name": bot.config.channel_name,
                "pending": pending,
                "activity": activity.bot_view(id),
                "webhooks": webhooks,
            })
        })
        .collect();
    // The queue's depth counts every tenant's work: server-wide tokens only.
    let queue = if server_wide {
        match ingest.queue.depth().await {
            Ok(depth) => serde_json::json!({"pending": depth.pending, "due": depth.due}),
            Err(_) => serde_json::Value::Null,
        }
    } else {
        serde_json::Value::Null
    };
    json(
        StatusCode::OK,
        &serde_json::json!({
            "server_wide": server_wide,
            "now_ms": now_ms(),
            "since_ms": activity.started_ms(),
            "queue": queue,
            "bots": list,
        }),
    )
}

/// A URL as the console shows it: any password in it masked.
fn shown_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("****"));
    }
    shown.to_string()
}

/// `GET /v1/config`.
pub async fn config(ingest: &Ingest, request: Request<Incoming>) -> HttpResponse {
    let snapshot = ingest.routes.load();
    let (server_wide, bots) = match visible(&snapshot, &request) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    // The config types' Debug masks every secret (config/redact.rs).
    let (text, reloads) = if server_wide {
        (
            format!("{:#?}", snapshot.config),
            serde_json::to_value(ingest.metrics.activity.reloads()).ok(),
        )
    } else {
        // Reloads name every tenant's bots: a tenant sees its own sections.
        let sections: Vec<String> = bots.iter().map(|b| format!("{:#?}", b.config)).collect();
        (sections.join("\n"), None)
    };
    json(
        StatusCode::OK,
        &serde_json::json!({"config": text, "reloads": reloads}),
    )
}

/// `POST /v1/bots/{bot}/webhooks/{webhook}/preview`: renders the event in
/// the body (its `bot_id` is taken to be `bot`) with the webhook's plugin.
pub async fn preview(
    ingest: &Ingest,
    request: Request<Incoming>,
    bot: &str,
    webhook: &str,
) -> HttpResponse {
    if let Err(e) = authorize(ingest, &request, bot) {
        return e.into_response();
    }
    let snapshot = ingest.routes.load_full();
    let Some(hook) = snapshot.webhook(bot, webhook).cloned() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_webhook",
            format!("bot {bot:?} has no webhook {webhook:?}"),
        )
        .into_response();
    };
    let server = &snapshot.config.server;
    let body = match read_body(request, server.max_body_bytes, server.body_read_timeout).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let event = match crate::event::parse_event(&body) {
        Ok(event) => event,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string())
                .into_response();
        }
    };
    // On a blocking thread, like ingest's renders.
    let bot = bot.to_string();
    let rendered = tokio::task::spawn_blocking(move || {
        let preview = crate::route::preview(&snapshot, &bot, &hook, event);
        (preview, hook)
    })
    .await;
    let answer = match rendered {
        Ok((Preview::Rendered(delivery), hook)) => serde_json::json!({
            "outcome": "rendered",
            "request": request_json(Some(&hook), &delivery),
        }),
        Ok((Preview::NotSubscribed(message), _)) => {
            serde_json::json!({"outcome": "not_subscribed", "message": message})
        }
        Ok((Preview::Failed(reason), _)) => {
            serde_json::json!({"outcome": "failed", "message": reason})
        }
        Ok((Preview::Dropped, _)) => serde_json::json!({
            "outcome": "dropped",
            "message": "the plugin dropped this event: its format has nothing to send for it",
        }),
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("rendering crashed: {e}"),
            )
            .into_response();
        }
    };
    json(StatusCode::OK, &answer)
}
