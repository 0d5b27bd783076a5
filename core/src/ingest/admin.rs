//! The admin API: a bot's dead letters, and replaying them.

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::Ingest;
use super::response::{ApiError, HttpResponse, bearer_token, json};
use crate::route::Access;

/// The most dead letters one listing returns.
const MAX_LIST: usize = 1000;

/// Checks that the request's admin token may act for `bot`.
///
/// A server-wide token may act for any bot id, configured or not (dead
/// letters of a bot removed from the config stay readable and
/// replayable). A bot's own token gets the same `403` for another tenant's
/// bot and for one that does not exist, so it cannot enumerate bot ids.
pub fn authorize(ingest: &Ingest, request: &Request<Incoming>, bot: &str) -> Result<(), ApiError> {
    let token = bearer_token(request.headers()).ok_or_else(|| {
        ApiError::unauthorized("missing bearer token: send Authorization: Bearer <admin token>")
    })?;
    match ingest.routes.load().admin_access(token, bot) {
        Access::AnyBot | Access::OwnBot => Ok(()),
        Access::NotThisBot => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token may not act for bot {bot:?}"),
        )),
        Access::Invalid => Err(ApiError::unauthorized(
            "the bearer token is not an admin token",
        )),
    }
}

/// A query parameter's value, percent-decoded (`?id=msg%5F1` is `msg_1`).
pub fn query_param(request: &Request<Incoming>, name: &str) -> Option<String> {
    form_urlencoded::parse(request.uri().query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `GET /v1/bots/{bot}/dead-letters[?limit=N]`: newest first, with every
/// attempt (time, status code or error, duration).
pub async fn list(ingest: &Ingest, request: Request<Incoming>, bot: &str) -> HttpResponse {
    if let Err(e) = authorize(ingest, &request, bot) {
        return e.into_response();
    }
    let limit = match query_param(&request, "limit").map(|n| n.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIST).contains(&n) => n,
        Some(_) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_limit",
                format!("limit must be a whole number from 1 to {MAX_LIST}"),
            )
            .into_response();
        }
    };
    match ingest.queue.dead_letters(bot, limit).await {
        Ok(dead) => json(
            StatusCode::OK,
            &serde_json::json!({"bot": bot, "dead_letters": dead}),
        ),
        Err(e) => ApiError::unavailable(e.to_string()).into_response(),
    }
}

/// `POST /v1/bots/{bot}/dead-letters/replay[?id=ID]`: queues them again.
pub async fn replay(ingest: &Ingest, request: Request<Incoming>, bot: &str) -> HttpResponse {
    if let Err(e) = authorize(ingest, &request, bot) {
        return e.into_response();
    }
    let id = query_param(&request, "id").filter(|id| !id.is_empty());
    match ingest.queue.replay(bot, id.as_deref()).await {
        Ok(replayed) => {
            tracing::info!(bot, id, replayed, "dead letters replayed");
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"replayed": replayed}),
            )
        }
        Err(e) => ApiError::unavailable(e.to_string()).into_response(),
    }
}
