//! The JSON API under `/api` (described by `docs/api/openapi.yaml`, served at
//! `/api/openapi.yaml`). Every route checks the caller's token and role: viewer reads,
//! deployer runs/cancels/rolls back/promotes, admin manages tokens. A state-changing call
//! signed in by the UI's session cookie must carry the session's CSRF token
//! ([`auth::csrf_guard`]); bearer calls need none.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use berth_store::{NewRun, Role, RunFilter, RunId, RunState, Trigger};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Server;
use crate::auth::{self, Denied};

/// The OpenAPI description, embedded.
pub const OPENAPI: &str = include_str!("../../../docs/api/openapi.yaml");

/// The routes.
pub fn routes() -> axum::Router<Server> {
    axum::Router::new()
        .route("/api/openapi.yaml", get(openapi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/repositories", get(repositories))
        .route("/api/repositories/{repo}/environments", get(environments))
        .route(
            "/api/repositories/{repo}/environments/{env}/releases",
            get(releases),
        )
        .route(
            "/api/repositories/{repo}/environments/{env}/rollback",
            post(rollback),
        )
        .route(
            "/api/repositories/{repo}/environments/{env}/promote",
            post(promote),
        )
        .route(
            "/api/repositories/{repo}/environments/{env}/resume",
            post(resume),
        )
        .route("/api/repositories/{repo}/runs", post(run_now))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/events", get(events))
        .route("/api/runs/{id}/stream", get(stream))
        .route("/api/runs/{id}/cancel", post(cancel))
        .route("/api/runs/{id}/rerun", post(rerun))
        .route("/api/runs/{id}/approve", post(approve))
        .route("/api/runs/{id}/reject", post(reject))
        .route("/api/tokens", get(tokens).post(create_token))
        .route("/api/tokens/{name}", delete(revoke_token))
        .layer(axum::middleware::from_fn(auth::csrf_guard))
}

/// Events per page of `/api/runs/{id}/events` when `limit` is not given.
pub const EVENTS_PAGE: u32 = 1000;
/// The largest page of `/api/runs/{id}/events`.
pub const EVENTS_PAGE_MAX: u32 = 5000;

/// An API error: status + `{"error": code, "message": ...}`.
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1, "message": self.2}))).into_response()
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        let code = if d.status == StatusCode::FORBIDDEN {
            "forbidden"
        } else {
            "unauthorized"
        };
        ApiError(d.status, code, d.message)
    }
}

impl From<berth_store::StoreError> for ApiError {
    fn from(e: berth_store::StoreError) -> Self {
        tracing::error!("store: {e}");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            "the database is not available".into(),
        )
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

fn not_found(what: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "not_found", what)
}

fn parse_id(id: &str) -> Result<RunId, ApiError> {
    id.parse().map_err(|_| not_found(format!("no run `{id}`")))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}

fn repo_of<'a>(server: &'a Server, name: &str) -> Result<&'a crate::config::Repository, ApiError> {
    server
        .config()
        .repository(name)
        .ok_or_else(|| not_found(format!("no repository `{name}` is configured")))
}

/// A repository as the API shows it: its URL through [`berth_types::SafeUrl`], so a token
/// given as `https://TOKEN@host/...` (or as a password) never reaches a viewer.
fn repository_json(r: &crate::config::Repository) -> Value {
    json!({
        "name": r.name, "url": berth_types::SafeUrl::new(r.url.clone()).to_string(),
        "config": r.config, "branches": r.branches,
        "webhook": r.webhook.as_ref().map(|w| w.provider.id()),
        "poll_seconds": r.poll.map(|p| p.as_secs()),
    })
}

async fn repositories(State(s): State<Server>, h: HeaderMap) -> ApiResult {
    auth::require(&s, &h, Role::Viewer).await?;
    let repos: Vec<Value> = s
        .config()
        .repositories
        .iter()
        .map(repository_json)
        .collect();
    ok(json!(repos))
}

async fn environments(
    State(s): State<Server>,
    h: HeaderMap,
    Path(repo): Path<String>,
) -> ApiResult {
    auth::require(&s, &h, Role::Viewer).await?;
    let r = repo_of(&s, &repo)?.clone();
    let checkout = s
        .view(&r)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "git", e))?;
    let envs = s
        .inner
        .executor
        .environments(&checkout)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "engine", e))?;
    ok(json!({"commit": checkout.commit, "environments": envs}))
}

async fn releases(
    State(s): State<Server>,
    h: HeaderMap,
    Path((repo, env)): Path<(String, String)>,
) -> ApiResult {
    auth::require(&s, &h, Role::Viewer).await?;
    let r = repo_of(&s, &repo)?.clone();
    let checkout = s
        .view(&r)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "git", e))?;
    let history = s
        .inner
        .executor
        .history(&checkout, &env)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "engine", e))?;
    ok(json!(history))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to: Option<u64>,
}

/// Queues a rollback of `env` (to `to`, else the revision before the live one).
pub(crate) async fn queue_rollback(
    s: &Server,
    repo: &str,
    env: &str,
    to: Option<u64>,
    who: &str,
) -> Result<berth_store::Run, ApiError> {
    // The target revision rides in the result document until the run replaces it.
    let request = json!({"to": to, "requested_by": who});
    queue_manual(s, repo, env, Trigger::Rollback, request).await
}

/// Queues a promotion of `from`'s live digests to `env`.
pub(crate) async fn queue_promote(
    s: &Server,
    repo: &str,
    env: &str,
    from: &str,
    who: &str,
) -> Result<berth_store::Run, ApiError> {
    let trigger = Trigger::Promote {
        from: from.to_string(),
    };
    queue_manual(s, repo, env, trigger, json!({"requested_by": who})).await
}

/// Queues a run of `env` at the repository's current view with `trigger`, recording who asked
/// (and what for) in its result document, and wakes the scheduler.
async fn queue_manual(
    s: &Server,
    repo: &str,
    env: &str,
    trigger: Trigger,
    request: Value,
) -> Result<berth_store::Run, ApiError> {
    let r = repo_of(s, repo)?.clone();
    r.may_deploy(env, None)
        .map_err(|m| ApiError(StatusCode::FORBIDDEN, "not_allowed", m))?;
    let checkout = s
        .view(&r)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "git", e))?;
    let run = s
        .inner
        .store
        .create_run(NewRun {
            repository: r.name.clone(),
            branch: checkout.branch.clone().unwrap_or_default(),
            commit: checkout.commit.clone(),
            environment: env.to_string(),
            trigger,
            needs_approval: false,
        })
        .await?;
    s.inner.store.set_result(run.id, &request).await?;
    s.wake();
    Ok(run)
}

async fn rollback(
    State(s): State<Server>,
    h: HeaderMap,
    Path((repo, env)): Path<(String, String)>,
    body: Option<Json<RollbackBody>>,
) -> ApiResult {
    let who = auth::require(&s, &h, Role::Deployer).await?;
    let to = body.map(|b| b.0.to).unwrap_or_default();
    let run = queue_rollback(&s, &repo, &env, to, &who.name).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(run))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    from: String,
}

async fn promote(
    State(s): State<Server>,
    h: HeaderMap,
    Path((repo, env)): Path<(String, String)>,
    Json(body): Json<PromoteBody>,
) -> ApiResult {
    let who = auth::require(&s, &h, Role::Deployer).await?;
    let run = queue_promote(&s, &repo, &env, &body.from, &who.name).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(run))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    #[serde(default)]
    abort: bool,
}

/// Answers the environment's paused canary: its deploy goes on (or, with `abort`, restores
/// the previous revision). Immediate: the run that waits at the pause sees it within a second.
pub(crate) async fn answer_pause(
    s: &Server,
    repo: &str,
    env: &str,
    abort: bool,
    who: &str,
) -> Result<usize, ApiError> {
    let r = repo_of(s, repo)?.clone();
    let forbidden = |m| ApiError(StatusCode::FORBIDDEN, "not_allowed", m);
    r.may_deploy(env, None).map_err(forbidden)?;
    let checkout = s
        .view(&r)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "git", e))?;
    let target = s
        .inner
        .executor
        .target(&checkout, env)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, "not_found", e))?;
    let context = r.authorize(env, None, &target).map_err(forbidden)?;
    let step = s
        .inner
        .executor
        .answer_pause(&checkout, env, context.as_deref(), abort)
        .await
        .map_err(|e| ApiError(StatusCode::CONFLICT, "not_paused", e))?;
    tracing::info!(
        "{who} {} the canary of {repo}/{env} paused at step {step}",
        if abort { "aborted" } else { "resumed" }
    );
    Ok(step)
}

async fn resume(
    State(s): State<Server>,
    h: HeaderMap,
    Path((repo, env)): Path<(String, String)>,
    body: Option<Json<ResumeBody>>,
) -> ApiResult {
    let who = auth::require(&s, &h, Role::Deployer).await?;
    let abort = body.map(|b| b.0.abort).unwrap_or_default();
    let step = answer_pause(&s, &repo, &env, abort, &who.name).await?;
    let answer = if abort { "abort" } else { "resume" };
    Ok(
        Json(json!({"environment": env, "step": step, "answer": answer, "by": who.name}))
            .into_response(),
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunBody {
    branch: Option<String>,
    commit: Option<String>,
    environment: Option<String>,
}

async fn run_now(
    State(s): State<Server>,
    h: HeaderMap,
    Path(repo): Path<String>,
    body: Option<Json<RunBody>>,
) -> ApiResult {
    let who = auth::require(&s, &h, Role::Deployer).await?;
    let r = repo_of(&s, &repo)?.clone();
    let body = body.map(|b| b.0).unwrap_or_default();
    let checkout = s
        .view(&r)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "git", e))?;
    let branch = body.branch.or(checkout.branch.clone()).unwrap_or_default();
    let commit = match body.commit {
        Some(c) => c,
        None if !branch.is_empty() => branch.clone(),
        None => checkout.commit.clone(),
    };
    let environment = match body.environment {
        Some(e) => e,
        None => s
            .inner
            .executor
            .environment_for_branch(&checkout, &branch)
            .unwrap_or_default(),
    };
    if !environment.is_empty() {
        r.may_deploy(&environment, Some(&branch))
            .map_err(|m| ApiError(StatusCode::FORBIDDEN, "not_allowed", m))?;
    }
    let run = s
        .enqueue(NewRun {
            repository: r.name.clone(),
            branch,
            commit,
            environment,
            trigger: Trigger::Manual {
                who: who.name.clone(),
            },
            needs_approval: false,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!(run))).into_response())
}

#[derive(Deserialize, Default)]
struct RunsQuery {
    repository: Option<String>,
    environment: Option<String>,
    branch: Option<String>,
    state: Option<String>,
    before: Option<RunId>,
    limit: Option<u32>,
}

async fn runs(State(s): State<Server>, h: HeaderMap, Query(q): Query<RunsQuery>) -> ApiResult {
    auth::require(&s, &h, Role::Viewer).await?;
    let state = match q.state.as_deref() {
        None => None,
        Some(x) => Some(x.parse::<RunState>().map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "bad_state",
                format!("unknown run state `{x}`"),
            )
        })?),
    };
    let filter = RunFilter {
        repository: q.repository,
        environment: q.environment,
        branch: q.branch,
        state,
        before: q.before,
        limit: q.limit,
    };
    ok(json!(s.store().runs(&filter).await?))
}

async fn run(State(s): State<Server>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    auth::require(&s, &h, Role::Viewer).await?;
    let id = parse_id(&id)?;
    match s.store().run(id).await? {
        Some(r) => ok(json!(r)),
        None => Err(not_found(format!("no run `{id}`"))),
    }
}

#[derive(Deserialize, Default)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

async fn events(
    State(s): State<Server>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult {
    auth::require(&s, &h, Role::Viewer).await?;
    let id = parse_id(&id)?;
    if s.store().run(id).await?.is_none() {
        return Err(not_found(format!("no run `{id}`")));
    }
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(EVENTS_PAGE).clamp(1, EVENTS_PAGE_MAX);
    let events = s.store().events(id, after, limit).await?;
    let mut response = Json(json!(events)).into_response();
    // A full page: there may be more, after its last event.
    if events.len() == limit as usize
        && let Some(last) = events.last()
        && let Ok(link) = format!(
            "</api/runs/{id}/events?after={}&limit={limit}>; rel=\"next\"",
            last.seq
        )
        .parse()
    {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn stream(
    State(s): State<Server>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult {
    auth::require(&s, &h, Role::Viewer).await?;
    let id = parse_id(&id)?;
    if s.store().run(id).await?.is_none() {
        return Err(not_found(format!("no run `{id}`")));
    }
    let after = h
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(q.after)
        .unwrap_or(0);
    Ok(crate::sse::stream(s.clone(), id, after).into_response())
}

async fn cancel(State(s): State<Server>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let who = auth::require(&s, &h, Role::Deployer).await?;
    let id = parse_id(&id)?;
    if s.store().run(id).await?.is_none() {
        return Err(not_found(format!("no run `{id}`")));
    }
    let message = s.cancel(id, &who.name).await?;
    ok(json!({"run": id.to_string(), "message": message}))
}

/// Queues a new run of the same commit and environment as `of`.
pub(crate) async fn queue_rerun(s: &Server, of: RunId) -> Result<berth_store::Run, ApiError> {
    let old = s
        .store()
        .run(of)
        .await?
        .ok_or_else(|| not_found(format!("no run `{of}`")))?;
    if matches!(
        old.state,
        RunState::Queued | RunState::AwaitingApproval | RunState::Running
    ) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "active",
            format!("run {of} is still {}; cancel it first", old.state),
        ));
    }
    let trigger = match &old.trigger {
        Trigger::Rollback | Trigger::Promote { .. } => old.trigger.clone(),
        _ => Trigger::Rerun { of },
    };
    let run = s
        .enqueue(NewRun {
            repository: old.repository.clone(),
            branch: old.branch.clone(),
            commit: old.commit.clone(),
            environment: old.environment.clone(),
            trigger,
            needs_approval: false,
        })
        .await?;
    if matches!(old.trigger, Trigger::Rollback)
        && let Some(to) = old.result.as_ref().and_then(|r| r.get("to")).cloned()
    {
        s.store().set_result(run.id, &json!({"to": to})).await?;
    }
    Ok(run)
}

async fn rerun(State(s): State<Server>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    auth::require(&s, &h, Role::Deployer).await?;
    let id = parse_id(&id)?;
    let run = queue_rerun(&s, id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(run))).into_response())
}

/// Lets a run into a protected environment go: `awaiting_approval -> queued`, recording who
/// approved it (the run checks that before it deploys).
pub(crate) async fn approve_run(s: &Server, id: RunId, who: &str) -> Result<Value, ApiError> {
    let run = awaiting(s, id).await?;
    let mut result = run.result.clone().unwrap_or_else(|| json!({}));
    result["approved_by"] = json!(who);
    s.store().set_result(id, &result).await?;
    let note = format!("approved by {who}");
    if !s
        .store()
        .transition(
            id,
            RunState::AwaitingApproval,
            RunState::Queued,
            Some(&note),
        )
        .await?
    {
        return Err(not_awaiting(s, id).await);
    }
    s.wake();
    Ok(json!({"run": id.to_string(), "message": note}))
}

/// Refuses a run into a protected environment: `awaiting_approval -> cancelled`.
pub(crate) async fn reject_run(s: &Server, id: RunId, who: &str) -> Result<Value, ApiError> {
    awaiting(s, id).await?;
    let note = format!("rejected by {who}");
    if !s
        .store()
        .transition(
            id,
            RunState::AwaitingApproval,
            RunState::Cancelled,
            Some(&note),
        )
        .await?
    {
        return Err(not_awaiting(s, id).await);
    }
    Ok(json!({"run": id.to_string(), "message": note}))
}

async fn awaiting(s: &Server, id: RunId) -> Result<berth_store::Run, ApiError> {
    let run = s
        .store()
        .run(id)
        .await?
        .ok_or_else(|| not_found(format!("no run `{id}`")))?;
    if run.state != RunState::AwaitingApproval {
        return Err(not_awaiting(s, id).await);
    }
    Ok(run)
}

async fn not_awaiting(s: &Server, id: RunId) -> ApiError {
    let state = match s.store().run(id).await {
        Ok(Some(r)) => r.state.to_string(),
        _ => "gone".into(),
    };
    ApiError(
        StatusCode::CONFLICT,
        "not_awaiting_approval",
        format!("run {id} is {state}, not awaiting approval"),
    )
}

async fn approve(State(s): State<Server>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let who = auth::require(&s, &h, Role::Deployer).await?;
    let id = parse_id(&id)?;
    ok(approve_run(&s, id, &who.name).await?)
}

async fn reject(State(s): State<Server>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let who = auth::require(&s, &h, Role::Deployer).await?;
    let id = parse_id(&id)?;
    ok(reject_run(&s, id, &who.name).await?)
}

async fn tokens(State(s): State<Server>, h: HeaderMap) -> ApiResult {
    auth::require(&s, &h, Role::Admin).await?;
    ok(json!(s.store().tokens().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
}

async fn create_token(
    State(s): State<Server>,
    h: HeaderMap,
    Json(body): Json<NewToken>,
) -> ApiResult {
    auth::require(&s, &h, Role::Admin).await?;
    let (info, secret) = s
        .store()
        .create_token(&body.name, body.role)
        .await
        .map_err(|e| ApiError(StatusCode::CONFLICT, "token", e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": secret.expose(), "info": info})),
    )
        .into_response())
}

async fn revoke_token(
    State(s): State<Server>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    auth::require(&s, &h, Role::Admin).await?;
    if s.store().revoke_token(&name).await? {
        ok(json!({"revoked": name}))
    } else {
        Err(not_found(format!("no token `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_in_the_repo_url_never_reaches_the_api() {
        let mut c = crate::config::ServeConfig::defaults("/d".into());
        c.add_repo_flag("a=https://ghp_tokenasuser@git.example.com/team/a.git")
            .unwrap();
        c.add_repo_flag("b=https://x-access-token:ghp_pass@git.example.com/team/b.git")
            .unwrap();
        for r in &c.repositories {
            let shown = repository_json(r).to_string();
            assert!(!shown.contains("ghp_"), "{shown}");
            assert!(shown.contains("git.example.com/team/"), "{shown}");
        }
    }

    /// The documented `Step` schema names exactly the steps events carry: a step added to
    /// berth_types::Step without its line in docs/api/openapi.yaml fails here.
    #[test]
    fn the_openapi_step_schema_names_every_step() {
        let schema = OPENAPI
            .split("\n    Step:\n")
            .nth(1)
            .expect("a Step schema in docs/api/openapi.yaml");
        let pattern = schema
            .lines()
            .find_map(|l| l.trim().strip_prefix("pattern: "))
            .expect("the Step schema has a pattern");
        let names = pattern
            .split_once("(fetch")
            .map(|(_, rest)| format!("fetch{}", rest.split_once(')').unwrap().0))
            .expect("the pattern's alternation");
        let documented: Vec<&str> = names.split('|').collect();
        let steps: Vec<&str> = berth_types::Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(documented, steps, "{pattern}");
        let description = schema.split("pattern:").next().unwrap().replace("\n", " ");
        for step in steps {
            assert!(description.contains(step), "{step} in {description}");
        }
    }
}
