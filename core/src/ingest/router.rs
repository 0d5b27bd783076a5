//! Maps each request to its handler.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::response::{ApiError, HttpResponse, bearer_token, json, text};
use super::{Ingest, admin, deliveries, events, meta};
use crate::console;

/// The OpenAPI 3.1 description of every route (`docs/openapi.json`),
/// served at `/openapi.json` with the admin routes (on `admin_listen` when
/// that is set). `tests/openapi.rs` checks
/// real answers against it, so it cannot drift from the code.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Every route: the one listener when `[server] admin_listen` is unset.
    All,
    /// What senders need: events, Meta's webhook, `/healthz`, and
    /// `/readyz` without the backend's error text.
    Ingest,
    /// What operators need (`admin_listen`): `/metrics`, `/readyz` with
    /// detail, `/healthz` and the admin routes.
    Operations,
}

/// Routes one request that came in through `door`.
pub async fn route(ingest: &Ingest, request: Request<Incoming>, door: Door) -> HttpResponse {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let senders = door != Door::Operations;
    let operators = door != Door::Ingest;
    match (segments.as_slice(), &method) {
        (["v1", ..], _) if !senders && matches!(segments.get(1), Some(&"events" | &"meta")) => {
            not_found(&method, &path)
        }
        (["metrics"] | ["openapi.json"] | ["console", ..], _)
        | (["v1", "bots", ..] | ["v1", "config"], _)
            if !operators =>
        {
            not_found(&method, &path)
        }
        (["console", ..], &Method::GET) => {
            console::asset(&path).unwrap_or_else(|| not_found(&method, &path))
        }
        (["readyz"], &Method::GET) => ready(ingest, operators).await,
        (["v1", "events"], &Method::POST) => events::post(ingest, request).await,
        (["v1", "meta", "webhook"], &Method::GET) => meta::handler::verify(ingest, &request),
        (["v1", "meta", "webhook"], &Method::POST) => meta::handler::post(ingest, request).await,
        (["healthz"], &Method::GET) => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        (["openapi.json"], &Method::GET) => {
            text(StatusCode::OK, OPENAPI.as_bytes(), "application/json")
        }
        (["metrics"], &Method::GET) => metrics(ingest, &request).await,
        (["v1", "bots", bot, "dead-letters"], &Method::GET) => {
            admin::list(ingest, request, bot).await
        }
        (["v1", "bots", bot, "dead-letters", "replay"], &Method::POST) => {
            admin::replay(ingest, request, bot).await
        }
        (["v1", "bots", bot, "deliveries"], &Method::GET) => {
            deliveries::list(ingest, request, bot).await
        }
        (["v1", "bots", bot, "deliveries", id], &Method::GET) => {
            deliveries::show(ingest, request, bot, id).await
        }
        (["v1", "bots", bot, "deliveries", id, "resend"], &Method::POST) => {
            deliveries::resend(ingest, request, bot, id).await
        }
        (["v1", "bots"], &Method::GET) => console::bots(ingest, request).await,
        (["v1", "config"], &Method::GET) => console::config(ingest, request).await,
        (["v1", "bots", bot, "webhooks", webhook, "preview"], &Method::POST) => {
            console::preview(ingest, request, bot, webhook).await
        }
        (
            ["v1", "events"]
            | ["v1", "meta", "webhook"]
            | ["healthz"]
            | ["readyz"]
            | ["metrics"]
            | ["openapi.json"],
            _,
        )
        | (["v1", "bots", _, "dead-letters"], _)
        | (["v1", "bots", _, "dead-letters", "replay"], _)
        | (["v1", "bots", _, "deliveries"], _)
        | (["v1", "bots", _, "deliveries", _], _)
        | (["v1", "bots", _, "deliveries", _, "resend"], _)
        | (["v1", "bots"] | ["v1", "config"], _)
        | (["v1", "bots", _, "webhooks", _, "preview"], _) => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not supported on {path}"),
        )
        .into_response(),
        _ => not_found(&method, &path),
    }
}

fn not_found(method: &Method, path: &str) -> HttpResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {method} {path}"),
    )
    .into_response()
}

/// `200` when config is loaded and the queue answers, else `503`.
/// With `detail`, a failure says why (the backend's error text); without
/// (the public side of a split listener) only that the queue is not ready.
async fn ready(ingest: &Ingest, detail: bool) -> HttpResponse {
    match tokio::time::timeout(Duration::from_secs(2), ingest.queue.ping()).await {
        Ok(Ok(())) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
        Ok(Err(_)) if !detail => ApiError::unavailable("the queue is not ready").into_response(),
        Ok(Err(e)) => ApiError::unavailable(e.to_string()).into_response(),
        Err(_) => ApiError::unavailable("the queue did not answer within 2 s").into_response(),
    }
}

/// Prometheus text, with the queue depth read at scrape time; behind a
/// bearer token when `[server] metrics_tokens` lists any (the metrics name
/// every bot and webhook).
async fn metrics(ingest: &Ingest, request: &Request<Incoming>) -> HttpResponse {
    let routes = ingest.routes.load();
    if routes.metrics_need_token() {
        let allowed = bearer_token(request.headers()).is_some_and(|t| routes.may_read_metrics(t));
        if !allowed {
            return ApiError::unauthorized(
                "/metrics needs Authorization: Bearer <a metrics token or server-wide admin token>",
            )
            .into_response();
        }
    }
    drop(routes);
    if let Ok(Ok(depth)) = tokio::time::timeout(Duration::from_secs(2), ingest.queue.depth()).await
    {
        ingest
            .metrics
            .queue_pending
            .set(i64::try_from(depth.pending).unwrap_or(i64::MAX));
        ingest
            .metrics
            .queue_due
            .set(i64::try_from(depth.due).unwrap_or(i64::MAX));
    }
    let (instances, bytes) = ingest.host.warm_usage();
    let metrics = &ingest.metrics;
    metrics
        .plugin_warm_instances
        .set(i64::try_from(instances).unwrap_or(i64::MAX));
    metrics
        .plugin_warm_memory_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    text(
        StatusCode::OK,
        ingest.metrics.encode(),
        // prometheus-client writes OpenMetrics text (it ends with `# EOF`).
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}
