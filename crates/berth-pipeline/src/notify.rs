//! Telling an environment's receivers (`environments[].notify`) of a run: started, a
//! canary's pauses and promotion, succeeded, failed, rolled back, aborted. Webhooks and Slack
//! get a message per event, e-mail goes over SMTP (lettre); GitHub and GitLab get commit
//! statuses (and GitHub deployments), each forge's requests in order from a task of its own.
//!
//! Each event goes once to each receiver that wants it. A delivery is retried with backoff
//! (after 1, 2, 4, 8, 16 and 32 s) on a transport error, a timeout, 408, 429 or a 5xx, and
//! carries the same `X-Berth-Delivery` id on every attempt, so a receiver that got an attempt
//! whose answer was lost can tell the retry is the same message. Other answers (400, 401,
//! 404...) are final: berth says so and does not retry. Deliveries run beside the run; the run
//! waits for them at its end ([`Notifier::finish`]), so a receiver that is down for up to about
//! a minute still gets every event. A receiver never fails a run.
//!
//! Messages and errors name a receiver by [`Notification::describe`]: a URL read from an
//! environment variable (it holds a token) is never printed.

use std::sync::Arc;
use std::time::Duration;

use berth_config::{Environment, Notification, NotifyTarget, UrlFrom};
use berth_types::{Event, EventSink, Level, NotifyEvent, Outbox, Queued, Secret, Step};
use serde_json::json;

/// The waits between attempts of one delivery.
const BACKOFF: [u64; 6] = [1, 2, 4, 8, 16, 32];
/// One attempt's deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A new run's id (16 hex digits), for `berth run` and `berth promote`; the server's runs
/// have their own.
pub fn new_run_id() -> String {
    let mut raw = [0u8; 8];
    match getrandom::fill(&mut raw) {
        Ok(()) => hex::encode(raw),
        // No randomness from the kernel: the time is unique enough for one machine's runs.
        Err(_) => format!("{:016x}", jiff::Timestamp::now().as_nanosecond() as u64),
    }
}

/// What every message of one run says about it.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// The run's id.
    pub run: String,
    /// The environment.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The commit, if known.
    pub commit: Option<String>,
    /// Who started the run.
    pub user: String,
}

struct Receiver {
    name: String,
    slack: bool,
    url: Secret,
    key: Option<Secret>,
    on: Vec<NotifyEvent>,
    /// A forge's statuses (`url` is then its API's base): told in order, by one task.
    forge: Option<Forge>,
    /// The variables of its URL and key, when both come from variables (what an outbox keeps).
    vars: Option<(String, Option<String>)>,
    /// E-mail over SMTP (`url` is then the SMTP URL): to whom, from whom.
    email: Option<(Vec<String>, String)>,
}

/// A forge berth writes statuses to.
#[derive(Clone)]
enum Forge {
    GitHub {
        repository: String,
        token: Secret,
        deployments: bool,
    },
    GitLab {
        project: String,
        token: Secret,
    },
}

/// One event for a forge's task.
struct ForgeEvent {
    event: NotifyEvent,
    revision: Option<u64>,
    message: String,
}

/// The receivers of one run, and its deliveries in flight.
pub struct Notifier {
    receivers: Vec<Receiver>,
    facts: RunFacts,
    client: Option<reqwest::Client>,
    sink: Arc<dyn EventSink>,
    sent: Vec<(NotifyEvent, Option<usize>)>,
    deliveries: Vec<tokio::task::JoinHandle<()>>,
    /// The queue of each forge receiver's task, by receiver index.
    forges: Vec<(usize, tokio::sync::mpsc::UnboundedSender<ForgeEvent>)>,
    /// The host's outbox: webhook and Slack messages go there instead of out.
    outbox: Option<Arc<dyn Outbox>>,
}

fn warn(sink: &dyn EventSink, message: String) {
    sink.emit(Event::Message {
        step: Step::Notify.into(),
        level: Level::Warning,
        message,
    });
}

impl Notifier {
    /// The receivers of `env` for a run described by `facts`, their URLs and keys read now,
    /// as `host` allows. A receiver whose variable is unset or refused, or whose literal URL
    /// the host does not take, is left out with a warning saying why.
    pub fn for_run(
        env: &Environment,
        facts: RunFacts,
        sink: Arc<dyn EventSink>,
        host: Host,
        outbox: Option<Arc<dyn Outbox>>,
    ) -> Notifier {
        let mut receivers = Vec::new();
        for n in &env.notify {
            if let Some(r) = resolve(n, host, &*sink) {
                receivers.push(r);
            }
        }
        let client = if receivers.is_empty() {
            None
        } else {
            match reqwest::Client::builder()
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .timeout(ATTEMPT_TIMEOUT)
                // A receiver's redirect could send the signed body anywhere: not followed.
                .redirect(reqwest::redirect::Policy::none())
                .build()
            {
                Ok(c) => Some(c),
                Err(e) => {
                    warn(
                        &*sink,
                        format!("notifications are off for this run: no HTTP client ({e})"),
                    );
                    None
                }
            }
        };
        let mut n = Notifier {
            receivers,
            facts,
            client,
            sink,
            sent: Vec::new(),
            deliveries: Vec::new(),
            forges: Vec::new(),
            outbox,
        };
        if let Some(client) = n.client.clone() {
            for (i, r) in n.receivers.iter().enumerate() {
                let Some(forge) = r.forge.clone() else {
                    continue;
                };
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let task = ForgeTask {
                    client: client.clone(),
                    api: r.url.clone(),
                    name: r.name.clone(),
                    forge,
                    facts: n.facts.clone(),
                    sink: n.sink.clone(),
                };
                n.deliveries.push(tokio::spawn(task.run(rx)));
                n.forges.push((i, tx));
            }
        }
        n
    }

    /// Sends `event` (once per run: a second call for the same event does nothing) with the
    /// live `revision` and a one-paragraph `message`, to each receiver that wants it.
    pub fn send(&mut self, event: NotifyEvent, revision: Option<u64>, message: &str) {
        self.send_at(event, None, revision, message);
    }

    /// [`Notifier::send`] for an event a run can have more than once (`paused`): once per
    /// `step`, its delivery id `RUN.EVENT.STEP.N`.
    pub fn send_at(
        &mut self,
        event: NotifyEvent,
        step: Option<usize>,
        revision: Option<u64>,
        message: &str,
    ) {
        if self.sent.contains(&(event, step)) {
            return;
        }
        self.sent.push((event, step));
        let Some(client) = &self.client else { return };
        let at = jiff::Timestamp::now().to_string();
        for (i, r) in self.receivers.iter().enumerate() {
            if !r.on.contains(&event) {
                continue;
            }
            if let Some((to, from)) = &r.email {
                let mail = Mail {
                    url: r.url.clone(),
                    to: to.clone(),
                    from: from.clone(),
                    subject: format!(
                        "berth: {} {event} (run {})",
                        self.facts.environment, self.facts.run
                    ),
                    text: format!(
                        "{}\n\n{message}\n\nrun {}, environment {} (namespace {}), commit {}, by {}\n",
                        slack_text(&self.facts, event, revision, message),
                        self.facts.run,
                        self.facts.environment,
                        self.facts.namespace,
                        self.facts.commit.as_deref().unwrap_or("-"),
                        self.facts.user,
                    ),
                };
                let name = r.name.clone();
                let sink = self.sink.clone();
                self.deliveries.push(tokio::spawn(async move {
                    mail.send(&name, event, &*sink).await;
                }));
                continue;
            }
            if r.forge.is_some() {
                if let Some((_, tx)) = self.forges.iter().find(|(f, _)| *f == i) {
                    let _ = tx.send(ForgeEvent {
                        event,
                        revision,
                        message: message.to_string(),
                    });
                }
                continue;
            }
            let body = if r.slack {
                json!({ "text": slack_text(&self.facts, event, revision, message) })
            } else {
                json!({
                    "event": event.as_str(),
                    "run": self.facts.run,
                    "environment": self.facts.environment,
                    "namespace": self.facts.namespace,
                    "commit": self.facts.commit,
                    "user": self.facts.user,
                    "revision": revision,
                    "message": message,
                    "at": at,
                })
            };
            let body = serde_json::to_vec(&body).expect("a JSON value serialises");
            let delivery = match step {
                None => format!("{}.{}.{i}", self.facts.run, event.as_str()),
                Some(step) => format!("{}.{}.{step}.{i}", self.facts.run, event.as_str()),
            };
            let request = webhook_request(
                client,
                &r.url,
                r.key.as_ref(),
                &delivery,
                event,
                body.clone(),
            );
            let name = r.name.clone();
            let sink = self.sink.clone();
            let kept = match (&self.outbox, &r.vars) {
                (Some(outbox), Some((url_env, key_env))) => Some((
                    outbox.clone(),
                    Queued {
                        delivery,
                        run: self.facts.run.clone(),
                        receiver: name.clone(),
                        url_env: url_env.clone(),
                        key_env: key_env.clone(),
                        event,
                        body: String::from_utf8(body).expect("JSON is UTF-8"),
                    },
                )),
                _ => None,
            };
            self.deliveries.push(tokio::spawn(async move {
                if let Some((outbox, queued)) = kept {
                    match outbox.put(queued).await {
                        Ok(()) => return,
                        Err(e) => warn(
                            &*sink,
                            format!("notify: the outbox did not keep the {event} message for {name} ({e}); sending it now"),
                        ),
                    }
                }
                deliver(request, &name, event, &*sink).await;
            }));
        }
    }

    /// Moves the receivers, what was sent and the deliveries in flight out, leaving a notifier
    /// that tells no one (for the sink that held it during the run).
    pub fn take(&mut self) -> Notifier {
        Notifier {
            receivers: std::mem::take(&mut self.receivers),
            facts: self.facts.clone(),
            client: self.client.take(),
            sink: self.sink.clone(),
            sent: std::mem::take(&mut self.sent),
            deliveries: std::mem::take(&mut self.deliveries),
            forges: std::mem::take(&mut self.forges),
            outbox: self.outbox.clone(),
        }
    }

    /// Waits for every delivery to end: sent, refused, or out of retries (about a minute).
    pub async fn finish(self) {
        // A forge's task ends once its queue is closed and empty.
        drop(self.forges);
        for d in self.deliveries {
            let _ = d.await;
        }
    }
}

/// Where the run happens, which decides what a berth.yaml's receivers may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// A person's own `berth run`: any variable of the process, any URL.
    Process,
    /// `berth serve`: whoever can push writes berth.yaml. It may read only the server's
    /// variables made for it ([`SERVER_PREFIX`]), never its database URL or git tokens (sent
    /// as a URL, or as an HMAC key whose signatures could be brute-forced), and may not
    /// write a URL itself: the server's operator decides where it posts, not a pusher (a
    /// literal URL could aim it at an address inside the server's network).
    Server,
}

/// The prefix of the variables a repository's berth.yaml may name on `berth serve`.
pub const SERVER_PREFIX: &str = "BERTH_NOTIFY_";

impl Host {
    /// Reads variable `name` for a receiver: its value (`None`: unset), or why not.
    fn read(self, name: &str) -> Result<Option<String>, String> {
        if self == Host::Server && !name.starts_with(SERVER_PREFIX) {
            return Err(format!(
                "on berth serve a repository may only name variables starting with {SERVER_PREFIX}; set {SERVER_PREFIX}... on the server and name that"
            ));
        }
        Ok(std::env::var(name).ok())
    }
}

fn resolve(n: &Notification, host: Host, sink: &dyn EventSink) -> Option<Receiver> {
    let skip = |why: String| warn(sink, format!("notify: {} is skipped: {why}", n.describe()));
    let var = |v: &str| {
        let why = match host.read(v) {
            Ok(Some(value)) if !value.is_empty() => return Some(Secret::new(value)),
            Ok(_) => format!(
                "environment variable `{v}` is not set (or empty); export it where berth runs"
            ),
            Err(why) => format!("`{v}`: {why}"),
        };
        skip(why);
        None
    };
    let api_url = |url: &Option<UrlFrom>, default: &str| -> Option<Secret> {
        match url {
            None => Some(Secret::new(default.to_string())),
            Some(UrlFrom::Literal(_)) if host == Host::Server => {
                skip(format!(
                    "on berth serve an API URL other than the default comes from a variable the server sets: write `api-url-env: {SERVER_PREFIX}...`"
                ));
                None
            }
            Some(UrlFrom::Literal(u)) => Some(Secret::new(u.clone())),
            Some(UrlFrom::Env(v)) => var(v),
        }
    };
    let mut forge = None;
    let mut vars = None;
    let mut email = None;
    let (slack, url, key) = match &n.target {
        NotifyTarget::Email {
            to,
            from,
            smtp_url_env,
        } => {
            email = Some((to.clone(), from.clone()));
            (false, var(smtp_url_env)?, None)
        }
        NotifyTarget::GitHub {
            repository,
            token_env,
            api_url: u,
            deployments,
        } => {
            let token = var(token_env)?;
            forge = Some(Forge::GitHub {
                repository: repository.clone(),
                token,
                deployments: *deployments,
            });
            (false, api_url(u, "https://api.github.com")?, None)
        }
        NotifyTarget::GitLab {
            project,
            token_env,
            api_url: u,
        } => {
            let token = var(token_env)?;
            forge = Some(Forge::GitLab {
                project: project.clone(),
                token,
            });
            (false, api_url(u, "https://gitlab.com")?, None)
        }
        NotifyTarget::Webhook { url, secret_env } => {
            let key = match secret_env {
                Some(v) => Some(var(v)?),
                None => None,
            };
            let url_var = match url {
                UrlFrom::Env(v) => Some(v.clone()),
                UrlFrom::Literal(_) => None,
            };
            vars = url_var.map(|u| (u, secret_env.clone()));
            let url = match url {
                UrlFrom::Literal(_) if host == Host::Server => {
                    skip(format!(
                        "on berth serve a receiver's URL comes from a variable the server sets: write `url-env: {SERVER_PREFIX}...`"
                    ));
                    return None;
                }
                UrlFrom::Literal(u) => Secret::new(u.clone()),
                UrlFrom::Env(v) => var(v)?,
            };
            (false, url, key)
        }
        NotifyTarget::Slack { url_env } => {
            vars = Some((url_env.clone(), None));
            (true, var(url_env)?, None)
        }
    };
    let u = url.expose();
    if email.is_some() {
        if !(u.starts_with("smtp://") || u.starts_with("smtps://")) {
            skip("its URL is not smtp:// or smtps://".into());
            return None;
        }
    } else if !(u.starts_with("https://") || u.starts_with("http://")) {
        skip("its URL is not http:// or https://".into());
        return None;
    }
    Some(Receiver {
        name: n.describe(),
        slack,
        url,
        key,
        on: n.on.clone(),
        forge,
        vars,
        email,
    })
}

/// A webhook's (or Slack's) POST of `body`.
fn webhook_request(
    client: &reqwest::Client,
    url: &Secret,
    key: Option<&Secret>,
    delivery: &str,
    event: NotifyEvent,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url.expose())
        .header("content-type", "application/json")
        .header("x-berth-event", event.as_str())
        .header("x-berth-delivery", delivery);
    if let Some(key) = key {
        request = request.header(
            "x-berth-signature-256",
            berth_hooks::webhook::github_signature(key, &body),
        );
    }
    request.body(body)
}

/// How one attempt of an outbox's message ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered,
    /// Worth another attempt (no connection, a timeout, 408, 429, 5xx): why.
    Retry(String),
    /// Final (another answer, or the receiver cannot be read): why.
    Final(String),
}

/// The waits between attempts of an outbox's message: as a run's own, then every 5 minutes;
/// `None` once it is time to give up (after about an hour).
pub fn outbox_wait(attempts: u32) -> Option<Duration> {
    const WAITS: [u64; 9] = [1, 2, 4, 8, 16, 32, 60, 120, 300];
    match attempts {
        0 => Some(Duration::ZERO),
        n if n < 20 => Some(Duration::from_secs(
            WAITS[(n as usize - 1).min(WAITS.len() - 1)],
        )),
        _ => None,
    }
}

/// Sends outbox messages for `berth serve` (its sender loop keeps the schedule).
pub struct OutboxSender {
    client: reqwest::Client,
}

impl OutboxSender {
    /// A sender with the run's own client settings (no redirects, 10 s per attempt).
    pub fn new() -> Result<OutboxSender, String> {
        reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(|client| OutboxSender { client })
            .map_err(|e| e.to_string())
    }

    /// One attempt of `m`, its URL and key read now from the server's variables (under the
    /// server's rules: only `BERTH_NOTIFY_` ones).
    pub async fn attempt(&self, m: &Queued) -> Attempt {
        let read = |v: &str| match Host::Server.read(v) {
            Ok(Some(value)) if !value.is_empty() => Ok(Secret::new(value)),
            Ok(_) => Err(format!("the server's variable `{v}` is not set")),
            Err(why) => Err(format!("`{v}`: {why}")),
        };
        let url = match read(&m.url_env) {
            Ok(u) => u,
            Err(why) => return Attempt::Final(why),
        };
        let key = match m.key_env.as_deref().map(read).transpose() {
            Ok(k) => k,
            Err(why) => return Attempt::Final(why),
        };
        let request = webhook_request(
            &self.client,
            &url,
            key.as_ref(),
            &m.delivery,
            m.event,
            m.body.clone().into_bytes(),
        );
        match request.send().await {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) if retryable(Some(r.status())) => Attempt::Retry(format!("HTTP {}", r.status())),
            Ok(r) => Attempt::Final(format!("HTTP {}", r.status())),
            // The error's text can hold the URL: only its kind is kept.
            Err(e) if e.is_timeout() => Attempt::Retry("no answer in time".into()),
            Err(e) if e.is_connect() => Attempt::Retry("connection refused or unreachable".into()),
            Err(_) => Attempt::Retry("the request failed".into()),
        }
    }
}

/// Whether an answer (or its absence) is worth another attempt.
fn retryable(status: Option<reqwest::StatusCode>) -> bool {
    match status {
        None => true,
        Some(s) => s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429,
    }
}

async fn deliver(
    request: reqwest::RequestBuilder,
    name: &str,
    event: NotifyEvent,
    sink: &dyn EventSink,
) -> Option<serde_json::Value> {
    let mut waits = BACKOFF.iter();
    loop {
        let attempt = request.try_clone()?;
        let (status, why) = match attempt.send().await {
            Ok(r) if r.status().is_success() => {
                sink.emit(Event::Message {
                    step: Step::Notify.into(),
                    level: Level::Info,
                    message: format!("notify: {name} told of {event}"),
                });
                return Some(r.json().await.unwrap_or(serde_json::Value::Null));
            }
            Ok(r) => (Some(r.status()), format!("HTTP {}", r.status())),
            // The error's text can hold the URL: only its kind is shown.
            Err(e) if e.is_timeout() => (None, "no answer in time".to_string()),
            Err(e) if e.is_connect() => (None, "connection refused or unreachable".to_string()),
            Err(_) => (None, "the request failed".to_string()),
        };
        match waits.next() {
            Some(wait) if retryable(status) => {
                tokio::time::sleep(Duration::from_secs(*wait)).await;
            }
            _ => {
                warn(
                    sink,
                    if retryable(status) {
                        format!(
                            "notify: {name} was not told of {event}: {why}, after {} attempts",
                            BACKOFF.len() + 1
                        )
                    } else {
                        format!("notify: {name} refused the {event} message: {why}; not retried")
                    },
                );
                return None;
            }
        }
    }
}

/// One e-mail of an event.
struct Mail {
    url: Secret,
    to: Vec<String>,
    from: String,
    subject: String,
    text: String,
}

impl Mail {
    /// Sends it over SMTP, with the webhooks' retries on a connection failure or a
    /// transient (4xx) answer; a permanent (5xx) one is final.
    async fn send(self, name: &str, event: NotifyEvent, sink: &dyn EventSink) {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let refused = |why: String| {
            warn(
                sink,
                format!("notify: {name} refused the {event} message: {why}; not retried"),
            );
        };
        let mut builder = Message::builder().subject(self.subject);
        match self.from.parse() {
            Ok(a) => builder = builder.from(a),
            Err(e) => return refused(format!("the sender's address: {e}")),
        }
        for t in &self.to {
            match t.parse() {
                Ok(a) => builder = builder.to(a),
                Err(e) => return refused(format!("the address {t}: {e}")),
            }
        }
        let message = match builder
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(self.text)
        {
            Ok(m) => m,
            Err(e) => return refused(e.to_string()),
        };
        // The URL holds the password: its errors are never shown, only their kind.
        let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(self.url.expose()) {
            Ok(t) => t.timeout(Some(ATTEMPT_TIMEOUT)).build(),
            Err(_) => return refused("its SMTP URL cannot be read".into()),
        };
        let mut waits = BACKOFF.iter();
        loop {
            let why = match transport.send(message.clone()).await {
                Ok(_) => {
                    sink.emit(Event::Message {
                        step: Step::Notify.into(),
                        level: Level::Info,
                        message: format!("notify: {name} told of {event}"),
                    });
                    return;
                }
                Err(e) if e.is_permanent() => {
                    return refused(format!(
                        "the server answered {}",
                        e.status().map_or("an error".into(), |c| c.to_string())
                    ));
                }
                Err(e) => match e.status() {
                    Some(c) => format!("the server answered {c}"),
                    None => "no connection or no answer".to_string(),
                },
            };
            match waits.next() {
                Some(wait) => tokio::time::sleep(Duration::from_secs(*wait)).await,
                None => {
                    warn(
                        sink,
                        format!(
                            "notify: {name} was not told of {event}: {why}, after {} attempts",
                            BACKOFF.len() + 1
                        ),
                    );
                    return;
                }
            }
        }
    }
}

/// A forge receiver's task: its events in order (a GitHub deployment's statuses need the id
/// its creation answered).
struct ForgeTask {
    client: reqwest::Client,
    api: Secret,
    name: String,
    forge: Forge,
    facts: RunFacts,
    sink: Arc<dyn EventSink>,
}

/// GitHub's commit status and deployment status for an event.
fn github_states(event: NotifyEvent) -> (&'static str, &'static str) {
    match event {
        NotifyEvent::Started | NotifyEvent::Paused | NotifyEvent::Promoted => {
            ("pending", "in_progress")
        }
        NotifyEvent::Succeeded => ("success", "success"),
        NotifyEvent::Failed | NotifyEvent::RolledBack | NotifyEvent::Aborted => {
            ("failure", "failure")
        }
    }
}

/// GitLab's commit status for an event; `None` for the canary's steps (GitLab refuses a
/// status that does not change).
fn gitlab_state(event: NotifyEvent) -> Option<&'static str> {
    match event {
        NotifyEvent::Started => Some("running"),
        NotifyEvent::Succeeded => Some("success"),
        NotifyEvent::Failed | NotifyEvent::RolledBack | NotifyEvent::Aborted => Some("failed"),
        NotifyEvent::Paused | NotifyEvent::Promoted => None,
    }
}

/// A status description: GitHub takes at most 140 characters.
fn description(
    facts: &RunFacts,
    event: NotifyEvent,
    revision: Option<u64>,
    message: &str,
) -> String {
    let text = match (event, revision) {
        (NotifyEvent::Started, _) => format!("berth is deploying to {}", facts.environment),
        (NotifyEvent::Succeeded, Some(r)) => {
            format!("revision {r} is live in {}", facts.environment)
        }
        _ => format!("{event}: {message}"),
    };
    let mut out: String = text.chars().take(140).collect();
    if out.len() < text.len() {
        out.pop();
        out.push('…');
    }
    out
}

/// `group/name` as one path segment.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ForgeTask {
    async fn run(self, mut rx: tokio::sync::mpsc::UnboundedReceiver<ForgeEvent>) {
        let mut deployment: Option<u64> = None;
        let mut warned = false;
        while let Some(e) = rx.recv().await {
            let Some(sha) = self.facts.commit.clone() else {
                if !warned {
                    warned = true;
                    warn(
                        &*self.sink,
                        format!(
                            "notify: {} is skipped: the run has no commit to set a status on",
                            self.name
                        ),
                    );
                }
                continue;
            };
            let text = description(&self.facts, e.event, e.revision, &e.message);
            let api = self.api.expose().trim_end_matches('/').to_string();
            let context = format!("berth/{}", self.facts.environment);
            match &self.forge {
                Forge::GitHub {
                    repository,
                    token,
                    deployments,
                } => {
                    let (state, deploy_state) = github_states(e.event);
                    let post = |path: String, body: serde_json::Value| {
                        self.client
                            .post(format!("{api}/repos/{repository}/{path}"))
                            .bearer_auth(token.expose())
                            .header("accept", "application/vnd.github+json")
                            .header("x-github-api-version", "2022-11-28")
                            .json(&body)
                    };
                    let status = post(
                        format!("statuses/{sha}"),
                        json!({"state": state, "description": text, "context": context}),
                    );
                    deliver(status, &self.name, e.event, &*self.sink).await;
                    if !deployments {
                        continue;
                    }
                    if deployment.is_none() {
                        let create = post(
                            "deployments".into(),
                            json!({
                                "ref": sha, "environment": self.facts.environment,
                                "description": text, "auto_merge": false,
                                "required_contexts": [],
                                "payload": {"run": self.facts.run, "namespace": self.facts.namespace},
                            }),
                        );
                        deployment = deliver(create, &self.name, e.event, &*self.sink)
                            .await
                            .and_then(|v| v["id"].as_u64());
                    }
                    if let Some(id) = deployment {
                        let status = post(
                            format!("deployments/{id}/statuses"),
                            json!({"state": deploy_state, "description": text,
                                   "environment": self.facts.environment}),
                        );
                        deliver(status, &self.name, e.event, &*self.sink).await;
                    }
                }
                Forge::GitLab { project, token } => {
                    let Some(state) = gitlab_state(e.event) else {
                        continue;
                    };
                    let request = self
                        .client
                        .post(format!(
                            "{api}/api/v4/projects/{}/statuses/{sha}",
                            path_segment(project)
                        ))
                        .header("private-token", token.expose())
                        .json(&json!({"state": state, "name": context, "description": text}));
                    deliver(request, &self.name, e.event, &*self.sink).await;
                }
            }
        }
    }
}

/// One line for a chat channel.
fn slack_text(
    facts: &RunFacts,
    event: NotifyEvent,
    revision: Option<u64>,
    message: &str,
) -> String {
    let what = match event {
        NotifyEvent::Started => "started".to_string(),
        NotifyEvent::Succeeded => match revision {
            Some(r) => format!("succeeded: revision {r} is live"),
            None => "succeeded".to_string(),
        },
        NotifyEvent::Failed => format!("failed: {message}"),
        NotifyEvent::RolledBack => format!("was rolled back: {message}"),
        NotifyEvent::Aborted => format!("was aborted at its canary: {message}"),
        NotifyEvent::Paused => format!("is paused at its canary: {message}"),
        NotifyEvent::Promoted => format!("passed its canary steps: {message}"),
    };
    let commit = facts
        .commit
        .as_deref()
        .map(|c| format!(" of {}", &c[..c.len().min(12)]))
        .unwrap_or_default();
    format!(
        "berth: run {}{commit} to {} ({}) by {} {what}",
        facts.run, facts.environment, facts.namespace, facts.user
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slack_line_names_the_run_commit_environment_and_what_happened() {
        let facts = RunFacts {
            run: "r1".into(),
            environment: "production".into(),
            namespace: "shop".into(),
            commit: Some("0123456789abcdef0123".into()),
            user: "alice".into(),
        };
        assert_eq!(
            slack_text(&facts, NotifyEvent::RolledBack, Some(3), "web not ready"),
            "berth: run r1 of 0123456789ab to production (shop) by alice was rolled back: web not ready"
        );
        assert_eq!(
            slack_text(&facts, NotifyEvent::Succeeded, Some(4), ""),
            "berth: run r1 of 0123456789ab to production (shop) by alice succeeded: revision 4 is live"
        );
    }

    #[test]
    fn only_transport_errors_timeouts_and_server_trouble_are_retried() {
        use reqwest::StatusCode;
        assert!(retryable(None));
        for s in [500, 502, 503, 408, 429] {
            assert!(retryable(Some(StatusCode::from_u16(s).unwrap())), "{s}");
        }
        for s in [400, 401, 403, 404, 410] {
            assert!(!retryable(Some(StatusCode::from_u16(s).unwrap())), "{s}");
        }
    }

    /// A hostile berth.yaml on the server can neither send the server's own secrets
    /// anywhere nor aim the server at an address of its choosing.
    #[test]
    fn on_the_server_only_berth_notify_variables_and_no_literal_urls() {
        use std::sync::Mutex;
        let said = Arc::new(Mutex::new(Vec::new()));
        let s = said.clone();
        let sink = move |e: Event| {
            if let Event::Message { message, .. } = e {
                s.lock().unwrap().push(message);
            }
        };
        let slack = |var: &str| Notification {
            target: NotifyTarget::Slack {
                url_env: var.into(),
            },
            on: NotifyEvent::ALL.to_vec(),
            location: berth_config::Location::new(1, 1),
        };
        let webhook = |url: UrlFrom, secret: Option<&str>| Notification {
            target: NotifyTarget::Webhook {
                url,
                secret_env: secret.map(Into::into),
            },
            ..slack("x")
        };
        let internal = || UrlFrom::Literal("http://169.254.169.254/latest".into());
        assert!(resolve(&slack("BERTH_DATABASE_URL"), Host::Server, &sink).is_none());
        assert!(
            resolve(
                &webhook(UrlFrom::Env("BERTH_NOTIFY_HOOK".into()), Some("GIT_TOKEN")),
                Host::Server,
                &sink
            )
            .is_none(),
            "not even as a signing key"
        );
        assert!(resolve(&webhook(internal(), None), Host::Server, &sink).is_none());
        let said = said.lock().unwrap().clone();
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(
            said[..2]
                .iter()
                .all(|m| m.contains("may only name variables starting with BERTH_NOTIFY_")),
            "{said:?}"
        );
        assert!(
            said[2].contains("write `url-env: BERTH_NOTIFY_...`"),
            "{said:?}"
        );
        let r = resolve(&webhook(internal(), None), Host::Process, &sink)
            .expect("a person's own run may post anywhere");
        assert_eq!(r.url.expose(), "http://169.254.169.254/latest");
    }

    #[test]
    fn run_ids_are_sixteen_hex_digits_and_differ() {
        let (a, b) = (new_run_id(), new_run_id());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
