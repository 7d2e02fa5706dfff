//! `POST /hooks/{repo}`: a git host's push, verified with the repository's own secret,
//! persisted with its runs in one transaction, then answered.
//!
//! Answers: 202 with the queued run ids; 200 for a ping, an ignored event or a
//! push no environment deploys (or the server config lets deploy none: the answer says what
//! it allows); 409 for a replayed delivery id (nothing queued; the answer
//! names the runs of the first delivery); 401/400/413/415
//! from [`berth_hooks::HookError::status`] with a message for the sender's admin (never the
//! secret nor the expected signature); 404 for an unknown repository or one without webhook;
//! 408 for a body not sent within [`BODY_DEADLINE`]; 503 with `Retry-After` when
//! [`crate::config::ServeConfig::webhook_concurrency`] requests are being read already.
//!
//! The door is open to anyone until a signature checks out, so what an anonymous sender can
//! make the server hold is bounded: nothing of the body is read before the repository is known
//! to have a webhook; a `Content-Length` over `webhook_max_body` ([`MAX_BODY`] by default) is
//! refused before reading, and the
//! read stops as soon as it passes it; the body must arrive within [`BODY_DEADLINE`]; and only
//! so many requests are read at once.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_hooks::{Hook, Request};
use berth_store::{Accepted, NewDelivery, Trigger};
use futures::StreamExt;
use serde_json::json;

use crate::app::Server;

/// The largest webhook body read by default (`webhook_max_body` changes it); a larger push is
/// answered 413 naming the limit.
pub const MAX_BODY: usize = crate::config::DEFAULT_WEBHOOK_MAX_BODY;

/// How long a sender has to deliver the body once its headers arrived.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// What a sender told to come back later waits, in seconds.
const RETRY_AFTER: &str = "5";

/// The routes.
pub fn routes() -> axum::Router<Server> {
    axum::Router::new().route("/hooks/{repo}", post(receive))
}

/// Why a body was not read.
enum Unread {
    TooLarge(usize),
    Slow,
    Broken(String),
}

/// Reads at most `max` bytes of `body` within [`BODY_DEADLINE`].
async fn read_capped(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>, Unread> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared
        && n > max
    {
        return Err(Unread::TooLarge(n));
    }
    let read = async {
        let mut out = Vec::with_capacity(declared.unwrap_or(0).min(max));
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Unread::Broken(e.to_string()))?;
            if out.len() + chunk.len() > max {
                return Err(Unread::TooLarge(out.len() + chunk.len()));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(BODY_DEADLINE, read)
        .await
        .unwrap_or(Err(Unread::Slow))
}

fn answer(server: &Server, status: StatusCode, body: serde_json::Value) -> Response {
    server.inner.metrics.webhook(status.as_u16());
    (status, Json(body)).into_response()
}

async fn receive(
    State(server): State<Server>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(repository) = server.config().repository(&repo).cloned() else {
        return answer(
            &server,
            StatusCode::NOT_FOUND,
            json!({"error": "unknown_repository", "message": format!("no repository `{repo}` is configured on this server")}),
        );
    };
    let Some(webhook) = repository.webhook.clone() else {
        return answer(
            &server,
            StatusCode::NOT_FOUND,
            json!({"error": "no_webhook", "message": format!("repository `{repo}` has no `webhook:` in the server config")}),
        );
    };
    // From here on the request holds one of the few slots of unauthenticated work, until its
    // signature is checked.
    let Ok(slot) = server.inner.webhook_slots.clone().try_acquire_owned() else {
        server.inner.metrics.webhook(503);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER)],
            Json(json!({"error": "busy", "message": format!("{} webhook requests are being read already; retry in {RETRY_AFTER} s", server.config().webhook_concurrency)})),
        )
            .into_response();
    };
    let max = server.config().webhook_max_body;
    let body = match read_capped(&headers, body, max).await {
        Ok(b) => b,
        Err(Unread::TooLarge(n)) => {
            return answer(
                &server,
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "too_large", "message": format!("the body is {n} bytes or more; this server reads at most {max} bytes of a webhook (`webhook_max_body` in the server config)")}),
            );
        }
        Err(Unread::Slow) => {
            return answer(
                &server,
                StatusCode::REQUEST_TIMEOUT,
                json!({"error": "slow_body", "message": format!("the body did not arrive within {} s", BODY_DEADLINE.as_secs())}),
            );
        }
        Err(Unread::Broken(e)) => {
            return answer(
                &server,
                StatusCode::BAD_REQUEST,
                json!({"error": "body", "message": format!("the body could not be read: {e}")}),
            );
        }
    };
    let received =
        Request::new(&headers, &body).receive_from(webhook.provider, &webhook.secret, max);
    drop(slot);
    let hook = match received {
        Ok(h) => h,
        Err(e) => {
            tracing::info!(repository = %repo, code = e.code(), "webhook refused: {e}");
            return answer(
                &server,
                e.status(),
                json!({"error": e.code(), "message": e.to_string()}),
            );
        }
    };
    let push = match hook {
        Hook::Push(p) => p,
        Hook::Ping { .. } => return answer(&server, StatusCode::OK, json!({"result": "pong"})),
        Hook::Ignored { event, .. } => {
            return answer(
                &server,
                StatusCode::OK,
                json!({"result": "ignored", "event": event}),
            );
        }
    };
    let provider = push.provider.id().to_string();
    let mut refused = None;
    let runs = match (push.branch.as_deref(), push.commit()) {
        (Some(branch), Some(commit)) => server
            .runs_for_push(
                &repository,
                branch,
                commit,
                Trigger::Webhook {
                    provider: provider.clone(),
                    delivery: push.delivery_id.clone(),
                },
            )
            .await
            .unwrap_or_else(|why| {
                refused = Some(why);
                Vec::new()
            }),
        _ => Vec::new(), // tags and deleted branches deploy nothing
    };
    let delivery = NewDelivery {
        provider: provider.clone(),
        delivery_id: push.delivery_id.clone(),
    };
    match server.store().accept_delivery(delivery, runs).await {
        Ok(Accepted::New(runs)) => {
            if runs.is_empty() {
                let mut body = json!({"result": "nothing to run", "ref": push.git_ref});
                if let Some(why) = refused {
                    tracing::info!(repository = %repo, "push not deployed: {why}");
                    body["message"] = json!(why);
                }
                return answer(&server, StatusCode::OK, body);
            }
            if let Err(e) = server.after_queued(&runs).await {
                tracing::error!("after queueing: {e}");
            }
            let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
            answer(
                &server,
                StatusCode::ACCEPTED,
                json!({"result": "queued", "runs": ids}),
            )
        }
        Ok(Accepted::Duplicate { first_seen, runs }) => answer(
            &server,
            StatusCode::CONFLICT,
            json!({"error": "replayed_delivery", "message": "this delivery id was received before; nothing new was queued", "first_seen": first_seen, "runs": runs.iter().map(|r| r.to_string()).collect::<Vec<_>>()}),
        ),
        Err(e) => {
            tracing::error!("storing a delivery: {e}");
            // 503: the sender retries, and the delivery id keeps the retry idempotent.
            answer(
                &server,
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "store", "message": "the server could not record the delivery; it will be accepted when retried"}),
            )
        }
    }
}
