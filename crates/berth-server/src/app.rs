//! The server's state, the scheduler loop and the life of one run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_store::{NewRun, Run, RunId, RunState, Store, StoredEvent, Trigger};
use berth_types::{Event, EventSink, Level};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::config::{GitCredentials, Repository, ServeConfig};
use crate::executor::{Action, Checkout, Executor, Failure, Job, Outcome};
use crate::metrics::Metrics;
use crate::queue;

/// Why the server could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] berth_store::StoreError),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}; choose another with --listen HOST:PORT")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The git cache could not be prepared.
    #[error("git cache: {0}")]
    Git(#[from] berth_git::GitError),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// A run in progress: how to stop it, whether it may still be stopped.
struct Active {
    lane: String,
    cancel: Arc<Notify>,
    cancelled: Arc<AtomicBool>,
    deploying: Arc<AtomicBool>,
}

pub(crate) struct Inner {
    pub(crate) config: ServeConfig,
    pub(crate) store: Store,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) git: berth_git::GitCache,
    pub(crate) metrics: Metrics,
    /// Live events of running runs, by run.
    live: Mutex<HashMap<RunId, broadcast::Sender<StoredEvent>>>,
    active: Mutex<HashMap<RunId, Active>>,
    wake: Notify,
    /// The last commit run (or fetched) per repository: the berth.yaml the UI reads.
    views: tokio::sync::Mutex<HashMap<String, ViewCheckout>>,
    /// Key for CSRF tokens of the UI's forms; random per process.
    pub(crate) csrf_key: [u8; 32],
}

struct ViewCheckout {
    checkout: Checkout,
    _worktree: berth_git::Worktree,
    /// Branch -> environment, as this commit's berth.yaml says (read once per branch: a
    /// webhook must not parse berth.yaml to be answered).
    branches: HashMap<String, Option<String>>,
}

/// The server: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

impl Server {
    /// Opens the store, marks runs left running by a crash as interrupted, and prepares the
    /// git cache. Does not listen yet: see [`Server::serve`].
    pub async fn open(
        config: ServeConfig,
        executor: Arc<dyn Executor>,
    ) -> Result<Server, ServerError> {
        for dir in [
            config.data_dir.clone(),
            config.data_dir.join("git"),
            config.data_dir.join("work"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| ServerError::DataDir {
                path: dir.clone(),
                source,
            })?;
        }
        let store = Store::open(config.database_url().expose()).await?;
        let interrupted = store.interrupt_running().await?;
        for id in &interrupted {
            tracing::warn!(run = %id, "run was running when the server stopped: marked interrupted");
        }
        // Leftover worktrees of runs that died with the last process.
        let _ = std::fs::remove_dir_all(config.data_dir.join("work"));
        let _ = std::fs::create_dir_all(config.data_dir.join("work"));
        let git = berth_git::GitCache::new(config.data_dir.join("git"))?;
        let mut csrf_key = [0u8; 32];
        random(&mut csrf_key);
        Ok(Server {
            inner: Arc::new(Inner {
                config,
                store,
                executor,
                git,
                metrics: Metrics::default(),
                live: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                views: tokio::sync::Mutex::new(HashMap::new()),
                csrf_key,
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    /// The HTTP application (API, webhooks, metrics, UI).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .merge(crate::api::routes())
            .merge(crate::webhooks::routes())
            .merge(crate::ui::routes())
            .merge(crate::metrics::routes())
            .with_state(self.clone())
    }

    /// Listens on the configured address, runs the scheduler and the pollers, and serves
    /// until `shutdown` resolves. `on_listening` gets the bound address (port 0 picks one).
    pub async fn serve(
        self,
        on_listening: impl FnOnce(std::net::SocketAddr),
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = self.inner.config.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, source })?;
        let local = listener.local_addr().map_err(ServerError::Serve)?;
        let scheduler = tokio::spawn(self.clone().schedule());
        // Read each repository's berth.yaml early, so the first webhook already knows which
        // environment its branch deploys (the webhook itself never waits for git).
        for r in self.inner.config.repositories.clone() {
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.view(&r).await {
                    tracing::info!(repository = %r.name, "not read yet: {e}");
                }
            });
        }
        let mut pollers = Vec::new();
        for r in self
            .inner
            .config
            .repositories
            .iter()
            .filter(|r| r.poll.is_some())
        {
            pollers.push(tokio::spawn(self.clone().poll(r.clone())));
        }
        on_listening(local);
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve);
        scheduler.abort();
        for p in pollers {
            p.abort();
        }
        result
    }

    /// Wakes the scheduler (a run was queued or finished).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    async fn schedule(self) {
        loop {
            if let Err(e) = self.start_ready().await {
                tracing::error!("scheduler: {e}");
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                // A safety net: runs queued by another server process on the same database.
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }

    async fn start_ready(&self) -> Result<(), berth_store::StoreError> {
        let queued = self.inner.store.queued().await?;
        self.inner.metrics.set_queue_depth(queued.len());
        let running: Vec<String> = self
            .inner
            .active
            .lock()
            .expect("active")
            .values()
            .map(|a| a.lane.clone())
            .collect();
        let candidates: Vec<queue::Queued<RunId>> = queued
            .iter()
            .map(|r| queue::Queued {
                id: r.id,
                lane: lane_of(r),
            })
            .collect();
        for id in queue::next(&candidates, &running, self.inner.config.concurrency) {
            let run = queued
                .iter()
                .find(|r| r.id == id)
                .expect("picked from the queue")
                .clone();
            if !self
                .inner
                .store
                .transition(id, RunState::Queued, RunState::Running, None)
                .await?
            {
                continue; // cancelled or taken meanwhile
            }
            self.inner.metrics.run_started(&run);
            let active = Active {
                lane: lane_of(&run),
                cancel: Arc::new(Notify::new()),
                cancelled: Arc::new(AtomicBool::new(false)),
                deploying: Arc::new(AtomicBool::new(false)),
            };
            let handles = (
                active.cancel.clone(),
                active.cancelled.clone(),
                active.deploying.clone(),
            );
            self.inner.active.lock().expect("active").insert(id, active);
            let server = self.clone();
            tokio::spawn(async move {
                server.execute(run, handles).await;
                server.inner.active.lock().expect("active").remove(&id);
                server.inner.live.lock().expect("live").remove(&id);
                server.wake();
            });
        }
        Ok(())
    }

    /// Subscribes to the live events of `run` (None when it is not running here).
    pub(crate) fn subscribe(&self, run: RunId) -> Option<broadcast::Receiver<StoredEvent>> {
        self.inner
            .live
            .lock()
            .expect("live")
            .get(&run)
            .map(|s| s.subscribe())
    }

    /// Cancels `run`: a queued one at once, a running one before its deploy starts.
    /// Returns what happened, for people.
    pub async fn cancel(&self, run: RunId, who: &str) -> Result<String, berth_store::StoreError> {
        let note = format!("cancelled by {who}");
        if self
            .inner
            .store
            .transition(run, RunState::Queued, RunState::Cancelled, Some(&note))
            .await?
        {
            self.inner.metrics.run_finished(RunState::Cancelled, None);
            return Ok("cancelled before it started".into());
        }
        let active = self.inner.active.lock().expect("active");
        match active.get(&run) {
            Some(a) if a.deploying.load(Ordering::SeqCst) => Ok(
                "its deploy is in progress: it will finish or roll back; it cannot be stopped half-way".into(),
            ),
            Some(a) => {
                a.cancelled.store(true, Ordering::SeqCst);
                a.cancel.notify_one();
                Ok("cancelling: it stops before its next step".into())
            }
            None => Ok("it is not queued or running".into()),
        }
    }

    /// Queues a run and wakes the scheduler; supersedes older queued runs of its branch when
    /// configured.
    pub async fn enqueue(&self, new: NewRun) -> Result<Run, berth_store::StoreError> {
        let run = self.inner.store.create_run(new).await?;
        self.after_queued(std::slice::from_ref(&run)).await?;
        Ok(run)
    }

    /// What happens after runs are persisted (by [`Server::enqueue`] or a webhook delivery).
    pub(crate) async fn after_queued(&self, runs: &[Run]) -> Result<(), berth_store::StoreError> {
        if self.inner.config.supersede {
            for r in runs
                .iter()
                .filter(|r| matches!(r.trigger, Trigger::Webhook { .. } | Trigger::Poll))
            {
                for old in self.inner.store.supersede_older(r.id).await? {
                    tracing::info!(run = %old, by = %r.id, "superseded by a newer push");
                    self.inner.metrics.run_finished(RunState::Superseded, None);
                }
            }
        }
        self.wake();
        Ok(())
    }

    /// The runs a push of `commit` to `branch` of `repo` creates (none when no environment
    /// deploys the branch, or the branch is filtered out).
    pub(crate) async fn runs_for_push(
        &self,
        repo: &Repository,
        branch: &str,
        commit: &str,
        trigger: Trigger,
    ) -> Vec<NewRun> {
        if !repo.branches.is_empty() && !repo.branches.iter().any(|b| b == branch) {
            return Vec::new();
        }
        let environment = self.environment_for_branch(repo, branch).await;
        if environment.is_none() && repo.branches.is_empty() {
            // No filter and no known environment for it: the view may be stale, so queue it
            // anyway; the run itself says when no environment deploys the branch.
            tracing::debug!(repository = %repo.name, branch, "no environment known for the branch yet");
        }
        vec![NewRun {
            repository: repo.name.clone(),
            branch: branch.to_string(),
            commit: commit.to_string(),
            environment: environment.unwrap_or_default(),
            trigger,
        }]
    }

    async fn environment_for_branch(&self, repo: &Repository, branch: &str) -> Option<String> {
        let mut views = self.inner.views.lock().await;
        let v = views.get_mut(&repo.name)?;
        if let Some(known) = v.branches.get(branch) {
            return known.clone();
        }
        let env = self
            .inner
            .executor
            .environment_for_branch(&v.checkout, branch);
        v.branches.insert(branch.to_string(), env.clone());
        env
    }

    /// The checkout the UI and API read a repository's berth.yaml from: the last commit run,
    /// or the remote's HEAD when nothing ran yet.
    pub(crate) async fn view(&self, repo: &Repository) -> Result<Checkout, String> {
        if let Some(v) = self.inner.views.lock().await.get(&repo.name) {
            return Ok(v.checkout.clone());
        }
        self.refresh_view(repo, None).await
    }

    async fn refresh_view(
        &self,
        repo: &Repository,
        commit: Option<(&str, Option<&str>)>,
    ) -> Result<Checkout, String> {
        let remote = remote_of(repo);
        self.inner
            .git
            .fetch(&repo.name, &remote)
            .await
            .map_err(|e| e.to_string())?;
        let (commit, branch) = match commit {
            Some((c, b)) => (c.to_string(), b.map(str::to_string)),
            None => {
                let mut found = None;
                // The mirror's HEAD may not follow the remote's default branch (a mirror made
                // by `init` + `fetch` points at `master`), and HEAD names no branch, which a
                // polled repository without `branches:` needs: the usual names come first.
                // (Whether the mirror was made before or after the first push decided this,
                // and made polling of such a repository see no branch at all.)
                for rev in repo
                    .branches
                    .iter()
                    .map(String::as_str)
                    .chain(["main", "master", "HEAD"])
                {
                    if let Ok(c) = self.inner.git.resolve(&repo.name, rev).await {
                        found = Some((c, (rev != "HEAD").then(|| rev.to_string())));
                        break;
                    }
                }
                found.ok_or_else(|| format!("repository `{}` has no commits yet", repo.name))?
            }
        };
        let mut views = self.inner.views.lock().await;
        if let Some(v) = views.get(&repo.name)
            && v.checkout.commit == commit
        {
            return Ok(v.checkout.clone());
        }
        let dest = self.inner.config.data_dir.join("views").join(format!(
            "{}-{}",
            repo.name,
            &commit[..12.min(commit.len())]
        ));
        let _ = std::fs::create_dir_all(self.inner.config.data_dir.join("views"));
        let _ = std::fs::remove_dir_all(&dest);
        let worktree = self
            .inner
            .git
            .worktree(&repo.name, &commit, &dest)
            .await
            .map_err(|e| e.to_string())?;
        let checkout = Checkout {
            config: dest.join(&repo.config),
            dir: dest,
            commit,
            branch,
            repository: repo.name.clone(),
        };
        views.insert(
            repo.name.clone(),
            ViewCheckout {
                checkout: checkout.clone(),
                _worktree: worktree,
                branches: HashMap::new(),
            },
        );
        Ok(checkout)
    }

    async fn execute(
        &self,
        run: Run,
        (cancel, cancelled, deploying): (Arc<Notify>, Arc<AtomicBool>, Arc<AtomicBool>),
    ) {
        let started = Instant::now();
        let (tx, _) = broadcast::channel(1024);
        self.inner
            .live
            .lock()
            .expect("live")
            .insert(run.id, tx.clone());
        let sink = Arc::new(RunSink::start(
            self.inner.store.clone(),
            run.id,
            tx,
            deploying.clone(),
        ));
        let work = self.work(&run, sink.clone());
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = cancel.notified() => {
                    if deploying.load(Ordering::SeqCst) {
                        continue; // the deploy finishes or rolls back on its own
                    }
                    break Err(Failure::msg("cancelled"));
                }
            }
        };
        let (state, note, summary) = match &result {
            Ok(outcome) => (
                RunState::Succeeded,
                None,
                serde_json::json!({ "outcome": outcome }),
            ),
            Err(_) if cancelled.load(Ordering::SeqCst) && !deploying.load(Ordering::SeqCst) => (
                RunState::Cancelled,
                Some("cancelled before its deploy started".to_string()),
                serde_json::json!({ "error": "cancelled" }),
            ),
            Err(f) => (
                if f.rolled_back {
                    RunState::RolledBack
                } else {
                    RunState::Failed
                },
                Some(f.message.clone()),
                serde_json::json!({ "error": f.message, "rolled_back": f.rolled_back, "diagnosis": f.diagnosis }),
            ),
        };
        if let Err(f) = &result {
            sink.emit(Event::Message {
                step: "run".into(),
                level: Level::Error,
                message: f.message.clone(),
            });
        }
        sink.finish().await;
        if let Err(e) = self.inner.store.set_result(run.id, &summary).await {
            tracing::error!(run = %run.id, "recording the result: {e}");
        }
        match self
            .inner
            .store
            .transition(run.id, RunState::Running, state, note.as_deref())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(run = %run.id, "run was no longer running when it finished")
            }
            Err(e) => tracing::error!(run = %run.id, "recording the end of the run: {e}"),
        }
        self.inner
            .metrics
            .run_finished(state, Some(started.elapsed()));
    }

    /// fetch -> worktree -> the executor.
    async fn work(&self, run: &Run, sink: Arc<RunSink>) -> Result<Outcome, Failure> {
        let repo = self
            .inner
            .config
            .repository(&run.repository)
            .ok_or_else(|| {
                Failure::msg(format!(
                    "repository `{}` is no longer configured",
                    run.repository
                ))
            })?
            .clone();
        let step = |name: &str| sink.emit(Event::StepStarted { step: name.into() });
        let done = |name: &str, t: Instant, ok: bool, message: String| {
            sink.emit(Event::StepFinished {
                step: name.into(),
                ok,
                millis: t.elapsed().as_millis() as u64,
                message,
            })
        };

        let t = Instant::now();
        step("fetch");
        let fetched = self.inner.git.fetch(&repo.name, &remote_of(&repo)).await;
        let commit = match fetched {
            Ok(_) => match self.inner.git.resolve(&repo.name, &run.commit).await {
                Ok(c) => c,
                Err(e) => {
                    done("fetch", t, false, e.to_string());
                    return Err(Failure::msg(e.to_string()));
                }
            },
            Err(e) => {
                done("fetch", t, false, e.to_string());
                return Err(Failure::msg(e.to_string()));
            }
        };
        done(
            "fetch",
            t,
            true,
            format!("{} at {}", repo.name, short(&commit)),
        );

        let t = Instant::now();
        step("checkout");
        let dest = self
            .inner
            .config
            .data_dir
            .join("work")
            .join(run.id.to_string());
        let _ = std::fs::remove_dir_all(&dest);
        let worktree = match self.inner.git.worktree(&repo.name, &commit, &dest).await {
            Ok(w) => w,
            Err(e) => {
                done("checkout", t, false, e.to_string());
                return Err(Failure::msg(e.to_string()));
            }
        };
        let branch = (!run.branch.is_empty()).then(|| run.branch.clone());
        let checkout = Checkout {
            config: dest.join(&repo.config),
            dir: dest.clone(),
            commit: commit.clone(),
            branch: branch.clone(),
            repository: repo.name.clone(),
        };
        if !checkout.config.exists() {
            let m = format!(
                "commit {} has no {}; add it, or set `config:` of repository `{}` in the server config",
                short(&commit),
                repo.config.display(),
                repo.name
            );
            done("checkout", t, false, m.clone());
            return Err(Failure::msg(m));
        }
        done(
            "checkout",
            t,
            true,
            format!("{} at {}", repo.config.display(), short(&commit)),
        );

        let action = match &run.trigger {
            Trigger::Rollback => Action::Rollback {
                to: run
                    .result
                    .as_ref()
                    .and_then(|r| r.get("to"))
                    .and_then(|v| v.as_u64()),
            },
            Trigger::Promote { from } => Action::Promote { from: from.clone() },
            _ => Action::Run,
        };
        let environment = if run.environment.is_empty() {
            match branch
                .as_deref()
                .and_then(|b| self.inner.executor.environment_for_branch(&checkout, b))
            {
                Some(e) => Some(e),
                None => {
                    let m = format!(
                        "no environment of {} deploys branch `{}`; give one a `branch: {}`",
                        repo.config.display(),
                        run.branch,
                        run.branch
                    );
                    return Err(Failure::msg(m));
                }
            }
        } else {
            Some(run.environment.clone())
        };
        let job = Job {
            run: run.id.to_string(),
            checkout: checkout.clone(),
            environment,
            action,
            user: trigger_user(&run.trigger),
        };
        let result = self
            .inner
            .executor
            .execute(job, sink.clone() as Arc<dyn EventSink>)
            .await;
        sink.end_deploy(result.is_ok());
        drop(worktree);
        if result.is_ok() {
            // What ran last is what the UI reads berth.yaml from.
            let _ = self
                .refresh_view(&repo, Some((&commit, branch.as_deref())))
                .await;
        }
        result
    }

    /// Runs a repository's polling loop: every `poll`, ls-remote each branch and queue a run
    /// for a commit not seen before.
    async fn poll(self, repo: Repository) {
        let every = repo.poll.expect("only polled repositories");
        let remote = remote_of(&repo);
        loop {
            let branches: Vec<String> = if repo.branches.is_empty() {
                match self.view(&repo).await {
                    Ok(c) => c.branch.into_iter().collect(),
                    Err(_) => Vec::new(),
                }
            } else {
                repo.branches.clone()
            };
            for branch in branches {
                match self.inner.git.ls_remote(&remote, &branch).await {
                    Ok(Some(commit)) => {
                        let seen = self
                            .inner
                            .store
                            .last_seen(&repo.name, &branch)
                            .await
                            .ok()
                            .flatten();
                        if seen.as_deref() != Some(commit.as_str()) {
                            let runs = self
                                .runs_for_push(&repo, &branch, &commit, Trigger::Poll)
                                .await;
                            for r in runs {
                                if let Err(e) = self.enqueue(r).await {
                                    tracing::error!(repository = %repo.name, "queueing a polled commit: {e}");
                                }
                            }
                            let _ = self
                                .inner
                                .store
                                .set_last_seen(&repo.name, &branch, &commit)
                                .await;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(repository = %repo.name, branch, "polling: {e}"),
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

fn lane_of(r: &Run) -> String {
    let env = if r.environment.is_empty() {
        format!("branch:{}", r.branch)
    } else {
        r.environment.clone()
    };
    queue::lane(&r.repository, &env)
}

fn short(c: &str) -> &str {
    &c[..12.min(c.len())]
}

/// Who a run acts for, as the release records it.
pub(crate) fn trigger_user(t: &Trigger) -> String {
    match t {
        Trigger::Webhook { provider, .. } => format!("webhook:{provider}"),
        Trigger::Poll => "poll".into(),
        Trigger::Manual { who } => who.clone(),
        Trigger::Rerun { .. } => "rerun".into(),
        Trigger::Rollback => "rollback".into(),
        Trigger::Promote { .. } => "promote".into(),
    }
}

pub(crate) fn remote_of(repo: &Repository) -> berth_git::Remote {
    berth_git::Remote {
        url: repo.url.clone(),
        credentials: repo.credentials.as_ref().map(|c| match c {
            GitCredentials::Token { username, token } => berth_git::Credentials::Token {
                username: username.clone(),
                token: token.clone(),
            },
            GitCredentials::SshKey { path } => {
                berth_git::Credentials::SshKey { path: path.clone() }
            }
        }),
    }
}

/// Fills `buf` from the kernel's random source.
pub(crate) fn random(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("/dev/urandom is readable");
}

/// Where a run's events go: into the store in order, then to live subscribers. `emit` never
/// blocks: events queue on a channel drained by one task per run.
pub(crate) struct RunSink {
    tx: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    drained: Mutex<Option<tokio::task::JoinHandle<()>>>,
    deploying: Arc<AtomicBool>,
    deploy_started: Mutex<Option<Instant>>,
}

impl RunSink {
    fn start(
        store: Store,
        run: RunId,
        live: broadcast::Sender<StoredEvent>,
        deploying: Arc<AtomicBool>,
    ) -> RunSink {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let drained = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match store.append_event(run, &event).await {
                    Ok(seq) => {
                        let _ = live.send(StoredEvent {
                            seq,
                            run,
                            at: jiff::Timestamp::now(),
                            event,
                        });
                    }
                    Err(e) => tracing::error!(run = %run, "storing an event: {e}"),
                }
            }
        });
        RunSink {
            tx: Mutex::new(Some(tx)),
            drained: Mutex::new(Some(drained)),
            deploying,
            deploy_started: Mutex::new(None),
        }
    }

    fn send(&self, event: Event) {
        if let Some(tx) = self.tx.lock().expect("sink").as_ref() {
            let _ = tx.send(event);
        }
    }

    /// Opens a deploy stage for an engine that reports none of its own.
    fn open_deploy(&self) {
        if !self.deploying.swap(true, Ordering::SeqCst) {
            *self.deploy_started.lock().expect("sink") = Some(Instant::now());
            self.send(Event::StepStarted {
                step: "deploy".into(),
            });
        }
    }

    /// Closes the deploy stage if this sink opened it.
    fn end_deploy(&self, ok: bool) {
        if let Some(t) = self.deploy_started.lock().expect("sink").take() {
            self.send(Event::StepFinished {
                step: "deploy".into(),
                ok,
                millis: t.elapsed().as_millis() as u64,
                message: if ok {
                    "deployed".into()
                } else {
                    "failed".into()
                },
            });
        }
    }

    /// Waits until every event emitted so far is stored.
    async fn finish(&self) {
        self.tx.lock().expect("sink").take();
        let handle = self.drained.lock().expect("sink").take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl EventSink for RunSink {
    fn emit(&self, event: Event) {
        // From the deploy step on, the run may not be cancelled. The pipeline reports the step
        // itself; an engine that does not (a bare rollback) is known by its first deploy word,
        // and the stage is opened for it.
        match &event {
            Event::StepStarted { step } if step == "deploy" => {
                self.deploying.store(true, Ordering::SeqCst);
            }
            Event::Message { step, .. } if step == "deploy" => self.open_deploy(),
            Event::ObjectState { .. } => self.open_deploy(),
            _ => {}
        }
        self.send(cap_event(event));
    }
}

/// The longest message (a RUN output line, most often) a run stores: a build printing a
/// megabyte without a newline must not put a megabyte row in the database and on the run page.
pub const MAX_LINE: usize = 16 * 1024;

/// `event` with a message longer than [`MAX_LINE`] cut at a character boundary and marked.
pub(crate) fn cap_event(mut event: Event) -> Event {
    if let Event::Message { message, .. } = &mut event
        && message.len() > MAX_LINE
    {
        let mut end = MAX_LINE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let dropped = message.len() - end;
        message.truncate(end);
        message.push_str(&format!(" … [truncated: {dropped} more bytes]"));
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1_mb_single_output_line_is_capped() {
        let line = "é".repeat(512 * 1024); // 1 MiB, two bytes a character
        let capped = cap_event(Event::Message {
            step: "build".into(),
            level: Level::Info,
            message: line,
        });
        let Event::Message { message, .. } = capped else {
            panic!("still a message")
        };
        assert!(message.len() < MAX_LINE + 64, "{}", message.len());
        assert!(
            message.ends_with(&format!(
                "[truncated: {} more bytes]",
                1024 * 1024 - MAX_LINE
            )),
            "{}",
            &message[message.len() - 60..]
        );
        let short = cap_event(Event::Message {
            step: "build".into(),
            level: Level::Info,
            message: "ok".into(),
        });
        assert!(matches!(short, Event::Message { message, .. } if message == "ok"));
    }
}
