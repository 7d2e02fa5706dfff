//! The web UI: server-rendered pages (minijinja templates embedded in the binary, escaped by
//! default: commit messages, branch names and logs are user input) and a little plain
//! JavaScript on the run page that appends live events from the SSE stream. No build step, no
//! CDN.
//!
//! Pages: dashboard (`/`: environment x service matrix per repository, recent runs), run
//! (`/runs/{id}`: stage graph, diagnosis, logs), release history (`/repos/{repo}/envs/{env}`:
//! rollback and promote for deployers). Sign-in is a form that takes an API token and opens a
//! session (see [`crate::auth`]): the cookie holds the session id, never the token; sign-out
//! deletes the session; every POST form, sign-out included, carries the session's CSRF token.
//!
//! The run page shows the newest [`RUN_PAGE_LINES`] lines (with a link to the earlier ones, a
//! page at a time) and the stage graph from the step events alone, so a run with a million
//! lines of output is one bounded page, not a million-line document.

use std::sync::OnceLock;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use berth_store::{Role, RunFilter, RunId, StoredEvent, TokenInfo};
use berth_types::Event;
use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};

use crate::app::Server;
use crate::auth::{self, COOKIE, Caller};

/// Lines of log the run page shows at once.
pub const RUN_PAGE_LINES: u32 = 1000;

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("dashboard.html", include_str!("templates/dashboard.html")),
            ("run.html", include_str!("templates/run.html")),
            (
                "environment.html",
                include_str!("templates/environment.html"),
            ),
            ("error.html", include_str!("templates/error.html")),
        ] {
            env.add_template(name, text)
                .expect("embedded templates are valid");
        }
        env
    })
}

fn v<T: Serialize>(x: T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(x))
}

fn page(name: &str, ctx: minijinja::Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("rendering {name}: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

fn error_page(status: StatusCode, message: &str, who: Option<&Caller>) -> Response {
    let mut r = page(
        "error.html",
        context! {
            status => status.as_u16(), message,
            user => v(who.map(|c| user(&c.info))),
            csrf => who.map(Caller::csrf).unwrap_or_default(),
        },
    );
    *r.status_mut() = status;
    r
}

#[derive(Serialize)]
struct User {
    name: String,
    role: &'static str,
    can_deploy: bool,
}

fn user(t: &TokenInfo) -> User {
    User {
        name: t.name.clone(),
        role: auth::role_name(t.role),
        can_deploy: t.role >= Role::Deployer,
    }
}

/// Signed in with at least `role`, or the response to send instead (the login page for a
/// browser without a session).
async fn signed_in(s: &Server, h: &HeaderMap, role: Role) -> Result<Caller, Response> {
    match auth::caller(s, h, role).await {
        Ok(t) => Ok(t),
        Err(d) if d.status == StatusCode::UNAUTHORIZED => {
            Err(Redirect::to("/login").into_response())
        }
        Err(d) => Err(error_page(d.status, &d.message, None)),
    }
}

/// The routes.
pub fn routes() -> axum::Router<Server> {
    axum::Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/rerun", post(rerun))
        .route("/runs/{id}/approve", post(approve))
        .route("/runs/{id}/reject", post(reject))
        .route("/repos/{repo}/envs/{env}", get(environment_page))
        .route("/repos/{repo}/envs/{env}/rollback", post(rollback))
        .route("/repos/{repo}/envs/{env}/promote", post(promote))
        .route("/repos/{repo}/envs/{env}/resume", post(resume))
        .route(
            "/static/berth.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css")],
                    include_str!("templates/berth.css"),
                )
            }),
        )
        .route(
            "/static/run.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript")],
                    include_str!("templates/run.js"),
                )
            }),
        )
}

async fn login_form() -> Response {
    page("login.html", context! { error => None::<String> })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<Server>, h: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    let opened = match s.store().token(token).await {
        Ok(Some(info)) => {
            if let Err(e) = s.store().purge_sessions(auth::SESSION_IDLE).await {
                tracing::warn!("removing expired sessions: {e}");
            }
            s.store()
                .create_session(&info.name, auth::SESSION_MAX_AGE)
                .await
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match opened {
        Ok(Some((_, id))) => {
            let cookie = auth::session_cookie(id.expose(), auth::secure(&s, &h));
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Ok(None) => {
            let mut r = page(
                "login.html",
                context! { error => "this token is unknown or was revoked" },
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Err(e) => {
            tracing::error!("login: {e}");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not available",
                None,
            )
        }
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session (its row is deleted: the cookie is refused from then on, wherever it was
/// copied to) and clears the cookie. A sign-out posted by another site (no CSRF token) is
/// refused.
async fn logout(State(s): State<Server>, h: HeaderMap, Form(f): Form<LogoutForm>) -> Response {
    let secure = auth::secure(&s, &h);
    if let Some(id) = auth::cookie(&h, COOKIE) {
        if !auth::csrf_matches(&id, &f.csrf) {
            return error_page(
                StatusCode::FORBIDDEN,
                "this sign-out was not sent by this server's page; reload the page and try again",
                None,
            );
        }
        if let Err(e) = s.store().delete_session(&id).await {
            tracing::error!("sign-out: {e}");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not available: you are still signed in; try again",
                None,
            );
        }
    }
    (
        [(header::SET_COOKIE, auth::cleared_cookie(secure))],
        Redirect::to("/login"),
    )
        .into_response()
}

#[derive(Serialize)]
struct RunRow {
    id: String,
    repository: String,
    branch: String,
    commit: String,
    environment: String,
    trigger: String,
    state: String,
    created: String,
    age: String,
}

fn age(t: jiff::Timestamp) -> String {
    let secs = jiff::Timestamp::now().as_second() - t.as_second();
    match secs {
        s if s < 60 => format!("{}s ago", s.max(0)),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

fn row(r: &berth_store::Run) -> RunRow {
    RunRow {
        id: r.id.to_string(),
        repository: r.repository.clone(),
        branch: r.branch.clone(),
        commit: r.commit.chars().take(12).collect(),
        // A run queued before the server knew which environment its branch deploys records
        // the one it chose in its outcome.
        environment: if r.environment.is_empty() {
            r.result
                .as_ref()
                .and_then(|v| v.pointer("/outcome/environment"))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        } else {
            r.environment.clone()
        },
        trigger: crate::app::trigger_user(&r.trigger),
        state: r.state.to_string(),
        created: r.created_at.to_string(),
        age: age(r.created_at),
    }
}

/// `name@sha256:123456789abc` from `registry/path/name@sha256:...`.
fn short_image(i: &str) -> String {
    let (repo, digest) = i.split_once('@').unwrap_or((i, ""));
    let name = repo.rsplit('/').next().unwrap_or(repo);
    if digest.is_empty() {
        name.to_string()
    } else {
        format!("{name}@{}", &digest[..19.min(digest.len())])
    }
}

fn parse_age(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(age)
        .unwrap_or_default()
}

async fn dashboard(State(s): State<Server>, h: HeaderMap) -> Response {
    let who = match signed_in(&s, &h, Role::Viewer).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut repos = Vec::new();
    for repo in &s.config().repositories {
        let (commit, envs, error) = match s.view(repo).await {
            Err(e) => (None, Vec::new(), Some(e)),
            Ok(c) => match s.inner.executor.environments(&c).await {
                Ok(envs) => (Some(c.commit.clone()), envs, None),
                Err(e) => (Some(c.commit.clone()), Vec::new(), Some(e)),
            },
        };
        let mut services: Vec<String> = envs
            .iter()
            .flat_map(|e| e.services.iter().map(|s| s.name.clone()))
            .collect();
        services.sort();
        services.dedup();
        let rows: Vec<_> = envs
            .iter()
            .map(|e| {
                let current = e.current.as_ref();
                let cells: Vec<_> = services
                    .iter()
                    .map(|name| {
                        let svc = e.services.iter().find(|x| &x.name == name);
                        context! {
                            present => svc.is_some(),
                            digest => svc.and_then(|x| x.digest.clone()).map(|d| d.chars().take(19).collect::<String>()),
                            image => svc.and_then(|x| x.image.clone()),
                        }
                    })
                    .collect();
                context! {
                    name => e.name.clone(), namespace => e.namespace.clone(), branch => e.branch.clone(), error => e.error.clone(),
                    revision => current.map(|c| c.revision),
                    status => current.map(|c| c.status.clone()),
                    commit => current.and_then(|c| c.commit.clone()).map(|c| c.chars().take(12).collect::<String>()),
                    age => current.map(|c| parse_age(c.finished_at.as_deref().unwrap_or(&c.started_at))),
                    cells,
                }
            })
            .collect();
        repos.push(context! { name => repo.name.clone(), commit => commit.map(|c| c.chars().take(12).collect::<String>()), services, environments => rows, error });
    }
    let recent: Vec<RunRow> = match s
        .store()
        .runs(&RunFilter {
            limit: Some(20),
            ..RunFilter::default()
        })
        .await
    {
        Ok(runs) => runs.iter().map(row).collect(),
        Err(_) => Vec::new(),
    };
    page(
        "dashboard.html",
        context! { user => v(user(&who.info)), repos, runs => v(recent), csrf => who.csrf() },
    )
}

/// One node of a run's stage graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage {
    /// Step name.
    pub name: String,
    /// `running`, `ok`, `failed`.
    pub state: &'static str,
    /// Wall time, when finished.
    pub millis: Option<u64>,
    /// Its last summary.
    pub message: String,
}

/// The stage graph of a run from its events: one node per StepStarted, closed by the next
/// StepFinished of the same name.
pub fn stages(events: &[StoredEvent]) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::new();
    for e in events {
        match &e.event {
            Event::StepStarted { step } => out.push(Stage {
                name: step.to_string(),
                state: "running",
                millis: None,
                message: String::new(),
            }),
            Event::StepFinished {
                step,
                ok,
                millis,
                message,
            } => {
                match out
                    .iter_mut()
                    .rev()
                    .find(|s| s.name == step.to_string() && s.state == "running")
                {
                    Some(s) => {
                        s.state = if *ok { "ok" } else { "failed" };
                        s.millis = Some(*millis);
                        s.message = message.clone();
                    }
                    None => out.push(Stage {
                        name: step.to_string(),
                        state: if *ok { "ok" } else { "failed" },
                        millis: Some(*millis),
                        message: message.clone(),
                    }),
                }
            }
            _ => {}
        }
    }
    out
}

/// One line of a run's log, as the page and the live script show it.
pub fn log_line(e: &Event) -> (String, String, String) {
    match e {
        Event::StepStarted { step } => (
            step.to_string(),
            "info".into(),
            format!("── {step} started"),
        ),
        Event::StepFinished {
            step,
            ok,
            millis,
            message,
        } => (
            step.to_string(),
            if *ok { "info".into() } else { "error".into() },
            format!(
                "── {step} {} in {:.1}s: {message}",
                if *ok { "finished" } else { "FAILED" },
                *millis as f64 / 1000.0
            ),
        ),
        Event::Message {
            step,
            level,
            message,
        } => (
            step.to_string(),
            format!("{level:?}").to_lowercase(),
            message.clone(),
        ),
        Event::ObjectState {
            object,
            state,
            message,
            ..
        } => (
            "deploy".into(),
            if *state == berth_types::State::Failed {
                "error".into()
            } else {
                "info".into()
            },
            format!("{object} {state} {message}"),
        ),
        Event::Canary { .. } => match e.canary_message() {
            Some(m) => log_line(&m),
            None => unreachable!("a canary event has its message"),
        },
    }
}

#[derive(Deserialize, Default)]
struct RunPageQuery {
    /// Show the lines after this sequence number instead of the newest ones.
    after: Option<u64>,
}

async fn run_page(
    State(s): State<Server>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RunPageQuery>,
) -> Response {
    let who = match signed_in(&s, &h, Role::Viewer).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<RunId>() else {
        return error_page(StatusCode::NOT_FOUND, "no such run", Some(&who));
    };
    let run = match s.store().run(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, &format!("no run {id}"), Some(&who)),
        Err(_) => {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not available",
                Some(&who),
            );
        }
    };
    // One page of lines (the newest, or the one asked for) and the step events of the whole
    // run for the stage graph: never every event.
    let unavailable = || {
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is not available",
            Some(&who),
        )
    };
    let Ok(last) = s
        .store()
        .last_event_seq(id)
        .await
        .map(Option::unwrap_or_default)
    else {
        return unavailable();
    };
    let n = u64::from(RUN_PAGE_LINES);
    let after = q.after.map_or(last.saturating_sub(n), |a| a.min(last));
    let (Ok(events), Ok(steps)) = (
        s.store().events(id, after, RUN_PAGE_LINES).await,
        s.store()
            .step_events(id, berth_store::MAX_EVENTS_PAGE)
            .await,
    ) else {
        return unavailable();
    };
    let shown_last = events.last().map_or(after, |e| e.seq);
    let earlier = (after > 0).then(|| after.saturating_sub(n));
    let later = (shown_last < last).then_some(shown_last);
    let lines: Vec<_> = events
        .iter()
        .map(|e| {
            let (step, level, text) = log_line(&e.event);
            context! { seq => e.seq, step, level, text }
        })
        .collect();
    let result = run.result.clone().unwrap_or(serde_json::Value::Null);
    let error = result
        .get("error")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or(run
            .note
            .clone()
            .filter(|_| run.state.is_terminal() && run.state != berth_store::RunState::Succeeded));
    // The deploy error already quotes its diagnosis; show it apart only when it adds to it.
    let diagnosis = result
        .get("diagnosis")
        .and_then(|v| v.as_str())
        .filter(|d| !error.as_deref().is_some_and(|e| e.contains(d)))
        .map(str::to_string);
    let outcome = result.get("outcome").cloned();
    // Where the run's canary release stands, from its newest canary event.
    let canary = match s.store().last_canary_event(id).await {
        Ok(Some(e)) => {
            let paused = !run.state.is_terminal()
                && matches!(
                    e.event,
                    Event::Canary {
                        state: berth_types::canary::CanaryState::Paused,
                        ..
                    }
                );
            // The event as the stream sends it: step, steps, weight, state, message.
            Some(context! { paused, ..v(&e.event) })
        }
        Ok(None) => None,
        Err(_) => return unavailable(),
    };
    page(
        "run.html",
        context! {
            user => v(user(&who.info)),
            run => v(row(&run)),
            note => run.note,
            rolled_back => run.state == berth_store::RunState::RolledBack,
            active => !run.state.is_terminal(),
            awaiting => run.state == berth_store::RunState::AwaitingApproval,
            // Follow the live stream only from the newest lines.
            live => !run.state.is_terminal() && later.is_none(),
            error, diagnosis, outcome => v(outcome),
            canary,
            stages => v(stages(&steps)),
            lines,
            last_seq => shown_last,
            hidden_before => after,
            earlier, later,
            csrf => who.csrf(),
        },
    )
}

async fn environment_page(
    State(s): State<Server>,
    h: HeaderMap,
    Path((repo, env)): Path<(String, String)>,
) -> Response {
    let who = match signed_in(&s, &h, Role::Viewer).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(r) = s.config().repository(&repo).cloned() else {
        return error_page(
            StatusCode::NOT_FOUND,
            &format!("no repository `{repo}`"),
            Some(&who),
        );
    };
    let checkout = match s.view(&r).await {
        Ok(c) => c,
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, &e, Some(&who)),
    };
    let envs = s
        .inner
        .executor
        .environments(&checkout)
        .await
        .unwrap_or_default();
    let history = match s.inner.executor.history(&checkout, &env).await {
        Ok(h) => h,
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, &e, Some(&who)),
    };
    let live = history
        .iter()
        .rev()
        .find(|x| x.status == "deployed")
        .map(|x| x.revision);
    let releases: Vec<_> = history
        .iter()
        .rev()
        .map(|x| {
            context! {
                revision => x.revision, status => x.status.clone(), user => x.user.clone(),
                commit => x.commit.as_ref().map(|c| c.chars().take(12).collect::<String>()),
                started => x.started_at.clone(), age => parse_age(&x.started_at),
                description => x.description.lines().next().unwrap_or("").to_string(),
                images => x.images.values().map(|i| context! { full => i, short => short_image(i) }).collect::<Vec<_>>(),
                live => Some(x.revision) == live,
                can_roll_back => Some(x.revision) != live && matches!(x.status.as_str(), "superseded" | "deployed"),
            }
        })
        .collect();
    let sources: Vec<String> = envs
        .iter()
        .filter(|e| e.name != env)
        .map(|e| e.name.clone())
        .collect();
    let runs: Vec<RunRow> = s
        .store()
        .runs(&RunFilter {
            repository: Some(repo.clone()),
            environment: Some(env.clone()),
            limit: Some(20),
            ..RunFilter::default()
        })
        .await
        .map(|v| v.iter().map(row).collect())
        .unwrap_or_default();
    page(
        "environment.html",
        context! { user => v(user(&who.info)), repo, env, releases, sources, runs => v(runs), csrf => who.csrf(), live },
    )
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    from: Option<String>,
    /// `resume`: abort instead of going on.
    #[serde(default)]
    abort: Option<String>,
    /// `resume`: the run page to go back to.
    #[serde(default)]
    run: Option<String>,
}

async fn deployer_post(s: &Server, h: &HeaderMap, f: &CsrfForm) -> Result<Caller, Response> {
    let who = signed_in(s, h, Role::Deployer).await?;
    // A bearer caller (a script posting a form) needs no CSRF token; a browser's session does.
    if who
        .session
        .as_deref()
        .is_some_and(|id| !auth::csrf_matches(id, &f.csrf))
    {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "this form is stale or was not sent by this server's page; reload the page and try again",
            Some(&who),
        ));
    }
    Ok(who)
}

async fn rollback(
    State(s): State<Server>,
    h: HeaderMap,
    Path((repo, env)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let who = match deployer_post(&s, &h, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let to = f.to.as_deref().and_then(|t| t.parse().ok());
    match crate::api::queue_rollback(&s, &repo, &env, to, &who.info.name).await {
        Ok(run) => Redirect::to(&format!("/runs/{}", run.id)).into_response(),
        Err(e) => error_page(e.0, &e.2, Some(&who)),
    }
}

async fn promote(
    State(s): State<Server>,
    h: HeaderMap,
    Path((repo, env)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let who = match deployer_post(&s, &h, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(from) = f.from.clone().filter(|x| !x.is_empty()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "choose the environment to promote from",
            Some(&who),
        );
    };
    match crate::api::queue_promote(&s, &repo, &env, &from, &who.info.name).await {
        Ok(run) => Redirect::to(&format!("/runs/{}", run.id)).into_response(),
        Err(e) => error_page(e.0, &e.2, Some(&who)),
    }
}

async fn resume(
    State(s): State<Server>,
    h: HeaderMap,
    Path((repo, env)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let who = match deployer_post(&s, &h, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let abort = f.abort.as_deref() == Some("true");
    match crate::api::answer_pause(&s, &repo, &env, abort, &who.info.name).await {
        Ok(_) => {
            let back = match f.run.as_deref().and_then(|r| r.parse::<RunId>().ok()) {
                Some(run) => format!("/runs/{run}"),
                None => format!("/repos/{repo}/envs/{env}"),
            };
            Redirect::to(&back).into_response()
        }
        Err(e) => error_page(e.0, &e.2, Some(&who)),
    }
}

async fn cancel(
    State(s): State<Server>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let who = match deployer_post(&s, &h, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(rid) = id.parse::<RunId>() else {
        return error_page(StatusCode::NOT_FOUND, "no such run", Some(&who));
    };
    let _ = s.cancel(rid, &who.info.name).await;
    Redirect::to(&format!("/runs/{id}")).into_response()
}

async fn rerun(
    State(s): State<Server>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let who = match deployer_post(&s, &h, &f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(rid) = id.parse::<RunId>() else {
        return error_page(StatusCode::NOT_FOUND, "no such run", Some(&who));
    };
    match crate::api::queue_rerun(&s, rid).await {
        Ok(run) => Redirect::to(&format!("/runs/{}", run.id)).into_response(),
        Err(e) => error_page(e.0, &e.2, Some(&who)),
    }
}

/// The approve and reject buttons of a run awaiting approval.
async fn decide(s: &Server, h: &HeaderMap, id: &str, f: &CsrfForm, approve: bool) -> Response {
    let who = match deployer_post(s, h, f).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(rid) = id.parse::<RunId>() else {
        return error_page(StatusCode::NOT_FOUND, "no such run", Some(&who));
    };
    let decided = if approve {
        crate::api::approve_run(s, rid, &who.info.name).await
    } else {
        crate::api::reject_run(s, rid, &who.info.name).await
    };
    match decided {
        Ok(_) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(e) => error_page(e.0, &e.2, Some(&who)),
    }
}

async fn approve(
    State(s): State<Server>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    decide(&s, &h, &id, &f, true).await
}

async fn reject(
    State(s): State<Server>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    decide(&s, &h, &id, &f, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, event: Event) -> StoredEvent {
        StoredEvent {
            seq,
            run: RunId(1),
            at: jiff::Timestamp::UNIX_EPOCH,
            event,
        }
    }

    #[test]
    fn stages_follow_step_events() {
        let events = [
            ev(
                1,
                Event::StepStarted {
                    step: berth_types::Step::Fetch.into(),
                },
            ),
            ev(
                2,
                Event::StepFinished {
                    step: berth_types::Step::Fetch.into(),
                    ok: true,
                    millis: 20,
                    message: "ok".into(),
                },
            ),
            ev(
                3,
                Event::StepStarted {
                    step: berth_types::Step::Build.into(),
                },
            ),
            ev(
                4,
                Event::Message {
                    step: berth_types::Step::Build.into(),
                    level: berth_types::Level::Info,
                    message: "x".into(),
                },
            ),
            ev(
                5,
                Event::StepFinished {
                    step: berth_types::Step::Build.into(),
                    ok: false,
                    millis: 900,
                    message: "boom".into(),
                },
            ),
            ev(
                6,
                Event::StepStarted {
                    step: berth_types::Step::Deploy.into(),
                },
            ),
        ];
        let s = stages(&events);
        assert_eq!(
            s.iter()
                .map(|x| (x.name.as_str(), x.state))
                .collect::<Vec<_>>(),
            [("fetch", "ok"), ("build", "failed"), ("deploy", "running")]
        );
        assert_eq!(s[1].millis, Some(900));
    }

    #[test]
    fn pages_escape_user_input() {
        let html = templates()
            .get_template("error.html")
            .unwrap()
            .render(context! { status => 400, message => "<script>alert(1)</script>", user => v(None::<User>) })
            .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
