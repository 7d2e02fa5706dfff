//! `POST /hooks/{repo}`: a git host's push, verified with the repository's own secret,
//! persisted with its runs in one transaction, then answered.
//!
//! Answers: 202 with the queued run ids; 200 for a ping, an ignored event or a
//! push no environment deploys; 409 for a replayed delivery id (nothing queued; the answer
//! names the runs of the first delivery); 401/400/413/415
//! from [`berth_hooks::HookError::status`] with a message for the sender's admin (never the
//! secret nor the expected signature); 404 for an unknown repository or one without webhook.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_hooks::{DEFAULT_MAX_BODY, Hook, Request};
use berth_store::{Accepted, NewDelivery, Trigger};
use serde_json::json;

use crate::app::Server;

/// The routes.
pub fn routes() -> axum::Router<Server> {
    axum::Router::new()
        .route("/hooks/{repo}", post(receive))
        // Bodies above the webhook cap are refused by `check_size` with a clear 413; the
        // transport limit sits just above it so that check gets to speak.
        .layer(axum::extract::DefaultBodyLimit::max(DEFAULT_MAX_BODY + 1))
}

fn answer(server: &Server, status: StatusCode, body: serde_json::Value) -> Response {
    server.inner.metrics.webhook(status.as_u16());
    (status, Json(body)).into_response()
}

async fn receive(
    State(server): State<Server>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Bytes,
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
    let hook = match Request::new(&headers, &body).receive_from(
        webhook.provider,
        &webhook.secret,
        DEFAULT_MAX_BODY,
    ) {
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
    let runs = match (push.branch.as_deref(), push.commit()) {
        (Some(branch), Some(commit)) => {
            server
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
        }
        _ => Vec::new(), // tags and deleted branches deploy nothing
    };
    let delivery = NewDelivery {
        provider: provider.clone(),
        delivery_id: push.delivery_id.clone(),
    };
    match server.store().accept_delivery(delivery, runs).await {
        Ok(Accepted::New(runs)) => {
            if runs.is_empty() {
                return answer(
                    &server,
                    StatusCode::OK,
                    json!({"result": "nothing to run", "ref": push.git_ref}),
                );
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
