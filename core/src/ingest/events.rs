//! `POST /v1/events`: canonical events from the operator's own platform.

use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::Ingest;
use super::response::{ApiError, HttpResponse, bearer_token, is_json, json, read_body};
use crate::event::{StatusEvent, parse_batch};
use crate::metrics::{self, BotLabels, ReasonLabels};
use crate::queue::NewEvent;
use crate::route::{Access, FanOutReport, Snapshot, fan_out};

/// Handles `POST /v1/events`: one event or a batch of 1 to 1000, queued
/// whole or not at all.
pub async fn post(ingest: &Ingest, request: Request<Incoming>) -> HttpResponse {
    match accept(ingest, request).await {
        Ok(response) => response,
        Err(error) => {
            ingest
                .metrics
                .ingest_rejected
                .get_or_create(&ReasonLabels {
                    reason: error.code.to_string(),
                })
                .inc();
            error.into_response()
        }
    }
}

async fn accept(ingest: &Ingest, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let routes = ingest.routes.load_full();
    let token = bearer_token(request.headers())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing bearer token: send Authorization: Bearer <ingest token>",
            )
        })?
        .to_string();
    if !routes.is_ingest_token(&token) {
        return Err(ApiError::unauthorized(
            "the bearer token is not a valid ingest token",
        ));
    }
    if !is_json(request.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the events as Content-Type: application/json",
        ));
    }
    let body = read_body(
        request,
        routes.config.server.max_body_bytes,
        routes.config.server.body_read_timeout,
    )
    .await?;
    let events = parse_batch(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            format!("invalid event: {e}"),
        )
    })?;
    check_bots(&routes, &token, &events)?;
    let outcome = queue_events(ingest, routes, events).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"accepted": outcome.0, "duplicates": outcome.1}),
    ))
}

/// Every event's bot must exist (`422`) and be open to this token (`403`).
fn check_bots(routes: &Snapshot, token: &str, events: &[StatusEvent]) -> Result<(), ApiError> {
    let batched = events.len() > 1;
    for (index, event) in events.iter().enumerate() {
        let place = if batched {
            format!("[{index}].bot_id")
        } else {
            "bot_id".to_string()
        };
        // A bot-scoped token learns nothing of bots it may not post for:
        // one that does not exist is answered as one that belongs to
        // someone else. Only a server-wide token gets the precise 422.
        let access = routes.ingest_access(token, &event.bot_id);
        if access == Access::AnyBot && routes.bot(&event.bot_id).is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_bot",
                format!("{place}: no bot {:?} is configured", event.bot_id),
            ));
        }
        if !access.is_allowed() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{place}: this token may not post events for bot {:?}",
                    event.bot_id
                ),
            ));
        }
    }
    Ok(())
}

/// Renders and queues validated events; returns (accepted, duplicates).
///
/// Shared by every ingest source (canonical events, Meta webhooks).
///
/// # Errors
///
/// `503` when the queue cannot be reached: nothing was queued.
/// The longest a request's renders may be expected to take and still run on
/// the async thread that read it: within what tokio's guidance allows
/// between two awaits.
const INLINE_RENDER_BUDGET: Duration = Duration::from_micros(200);

pub async fn queue_events(
    ingest: &Ingest,
    routes: std::sync::Arc<Snapshot>,
    events: Vec<StatusEvent>,
) -> Result<(usize, usize), ApiError> {
    within_rate_limits(ingest, &routes, &events)?;
    // A built-in render costs tens of microseconds: a request whose renders
    // are known to be that cheap renders right here, which at a moderate
    // rate saves two thread hand-offs per request (most of what a delivery
    // cost then). Batches, slow plugins (JavaScript, Python) and plugins not
    // yet measured go to the blocking pool, so they never hold up the other
    // connections.
    let cheap = routes
        .render_cost(&events)
        .is_some_and(|cost| cost <= INLINE_RENDER_BUDGET);
    let (new_events, report) = if cheap {
        fan_out(&routes, &events)
    } else {
        let render_routes = std::sync::Arc::clone(&routes);
        tokio::task::spawn_blocking(move || fan_out(&render_routes, &events))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("rendering failed: {e}"),
                )
            })?
    };
    record_render(ingest, &report);
    // Room for this dispatcher to take the new deliveries at once, leased
    // in the enqueue itself, when nothing else is waiting for a worker.
    let (reserved, handoff) = ingest.deliverer.reserve(&new_events);
    let mut outcome = ingest
        .queue
        .enqueue_leasing(&new_events, routes.config.queue.dedup_window, handoff)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e}; nothing was queued, retry later")))?;
    ingest
        .deliverer
        .take_over(std::mem::take(&mut outcome.leased), reserved);
    count_events(ingest, &new_events, &outcome.duplicate);
    Ok((outcome.accepted, outcome.duplicates))
}

/// Takes each bot's events from its `ingest_rate_limit` bucket; `429` with
/// `Retry-After` (and nothing queued) when a bot is over its limit.
fn within_rate_limits(
    ingest: &Ingest,
    routes: &Snapshot,
    events: &[StatusEvent],
) -> Result<(), ApiError> {
    // Only bots with a limit are counted: most have none, and a batch may
    // carry a thousand bots.
    let mut limited: Vec<(&str, crate::rate::Rate, u32)> = Vec::new();
    for event in events {
        let Some(rate) = routes
            .bot(&event.bot_id)
            .and_then(|b| b.config.ingest_rate_limit)
        else {
            continue;
        };
        match limited.iter_mut().find(|(bot, ..)| *bot == event.bot_id) {
            Some((.., n)) => *n += 1,
            None => limited.push((&event.bot_id, rate, 1)),
        }
    }
    let now = std::time::Instant::now();
    for (bot, rate, n) in limited {
        if let Err(wait) = ingest.rate_limits.take(bot, rate, n, now) {
            return Err(ApiError::rate_limited(
                format!(
                    "bot {bot:?} is over its ingest_rate_limit of {rate}; nothing was queued, send again later"
                ),
                wait,
            ));
        }
    }
    Ok(())
}

fn record_render(ingest: &Ingest, report: &FanOutReport) {
    let m = &ingest.metrics;
    for (bot, webhook, per_event) in &report.render_per_event {
        m.plugin_render_seconds
            .get_or_create(&metrics::webhook(bot, webhook))
            .observe(per_event.as_secs_f64());
    }
    for (bot, webhook) in &report.dropped {
        m.plugin_dropped
            .get_or_create(&metrics::webhook(bot, webhook))
            .inc();
    }
    for (bot, webhook, error) in &report.failed {
        m.plugin_errors
            .get_or_create(&metrics::webhook_reason(bot, webhook, error.code()))
            .inc();
        m.deliveries_dead_lettered
            .get_or_create(&metrics::webhook_reason(bot, webhook, "plugin_failed"))
            .inc();
        m.activity
            .failed(bot, webhook, &format!("plugin failed: {error}"));
        m.activity.dead(bot, webhook);
    }
}

fn count_events(ingest: &Ingest, events: &[NewEvent], duplicate: &[bool]) {
    let m = &ingest.metrics;
    for (event, &duplicate) in events.iter().zip(duplicate) {
        let labels = BotLabels {
            bot: event.bot.clone(),
        };
        if duplicate {
            m.events_duplicate.get_or_create(&labels).inc();
        } else {
            m.events_ingested.get_or_create(&labels).inc();
            m.activity.events(&event.bot, 1);
        }
    }
}
