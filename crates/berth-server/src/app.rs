//! The server's state, the scheduler loop and the life of one run.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_store::{NewRun, Run, RunId, RunState, Store, StoredEvent, Trigger};
use berth_types::{Event, EventSink, Level};
use tokio::sync::{Notify, broadcast};

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
    /// Webhook requests being read and verified (unauthenticated until their signature is).
    pub(crate) webhook_slots: Arc<tokio::sync::Semaphore>,
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
        let webhook_slots = Arc::new(tokio::sync::Semaphore::new(config.webhook_concurrency));
        Ok(Server {
            inner: Arc::new(Inner {
                webhook_slots,
                config,
                store,
                executor,
                git,
                metrics: Metrics::default(),
                live: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                views: tokio::sync::Mutex::new(HashMap::new()),
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
        let mut was_waiting = false;
        for from in [RunState::Queued, RunState::AwaitingApproval] {
            was_waiting |= self
                .inner
                .store
                .transition(run, from, RunState::Cancelled, Some(&note))
                .await?;
            if was_waiting {
                break;
            }
        }
        if was_waiting {
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

    /// The runs a push of `commit` to `branch` of `repo` creates, or why it creates none
    /// (the server config lets the branch deploy no environment). A run into a protected
    /// environment — or of a branch that may deploy one, when the environment is not known
    /// before the run reads berth.yaml — waits for a deployer's approval.
    pub(crate) async fn runs_for_push(
        &self,
        repo: &Repository,
        branch: &str,
        commit: &str,
        trigger: Trigger,
    ) -> Result<Vec<NewRun>, String> {
        if !repo.branch_may_deploy(branch) {
            return Err(repo.refused_branch(branch));
        }
        let environment = self.environment_for_branch(repo, branch).await;
        if environment.is_none() {
            // The view may be stale: queue it anyway; the run itself reads berth.yaml of the
            // pushed commit, and refuses what the server config does not allow.
            tracing::debug!(repository = %repo.name, branch, "no environment known for the branch yet");
        }
        let needs_approval = match &environment {
            Some(e) => repo.protected(e),
            None => repo
                .environments
                .iter()
                .any(|e| e.protected && e.branches.iter().any(|b| b == branch)),
        };
        Ok(vec![NewRun {
            repository: repo.name.clone(),
            branch: branch.to_string(),
            commit: commit.to_string(),
            environment: environment.unwrap_or_default(),
            trigger,
            needs_approval,
        }])
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
        let context = self
            .authorize(&repo, run, &checkout, environment.as_deref(), &action)
            .await
            .map_err(Failure::msg)?;
        let job = Job {
            run: run.id.to_string(),
            checkout: checkout.clone(),
            environment,
            action,
            user: trigger_user(&run.trigger),
            context,
            allow_host_network: repo.allow_host_network,
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

    /// Holds a run against the server config before anything builds or deploys: the
    /// environment the commit's berth.yaml chose must be one the server lets this repository
    /// and branch deploy, into the namespace and context it pins; a push into a protected
    /// environment must have been approved; and a push must not take an environment back to
    /// an older commit (a replayed webhook: the delivery id is not signed, so a captured push
    /// resent under a new id would redeploy its old commit). Runs a deployer asked for (run,
    /// re-run, rollback, promote) may go back. Returns the kube context the server pins.
    async fn authorize(
        &self,
        repo: &Repository,
        run: &Run,
        checkout: &Checkout,
        environment: Option<&str>,
        action: &Action,
    ) -> Result<Option<String>, String> {
        let Some(environment) = environment else {
            return Ok(None);
        };
        let target = self.inner.executor.target(checkout, environment)?;
        let builds = matches!(action, Action::Run);
        let branch = builds.then_some(run.branch.as_str());
        let context = repo.authorize(environment, branch, &target)?;
        let pushed = matches!(run.trigger, Trigger::Webhook { .. } | Trigger::Poll);
        if !pushed {
            return Ok(context);
        }
        let approved = run
            .result
            .as_ref()
            .and_then(|r| r.get("approved_by"))
            .is_some();
        if repo.protected(environment) && !approved {
            return Err(format!(
                "environment `{environment}` is protected: a push deploys it only once a deployer approves the run (POST /api/runs/{}/approve); re-run it to ask again",
                run.id
            ));
        }
        let live = self
            .inner
            .executor
            .live_commit(checkout, environment, context.as_deref())
            .await
            .map_err(|e| {
                format!("cannot read the release live in `{environment}` to check the push is newer: {e}")
            })?;
        if let Some(live) = live
            && live != checkout.commit
        {
            let force = format!(
                "a deployer can deploy it on purpose with POST /api/repositories/{}/runs {{\"commit\": \"{}\", \"environment\": \"{environment}\"}}",
                repo.name, checkout.commit
            );
            match self
                .inner
                .git
                .is_ancestor(&repo.name, &live, &checkout.commit)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!(
                        "commit {} is not a descendant of {}, which `{environment}` runs now: a push never takes an environment back (a replayed or out-of-order webhook, or a force-push); {force}",
                        short(&checkout.commit),
                        short(&live),
                    ));
                }
                // The live commit is not in this repository (any more): fail closed.
                Err(e) => {
                    return Err(format!(
                        "cannot tell whether commit {} descends from {}, which `{environment}` runs now ({e}); a push never takes an environment back; {force}",
                        short(&checkout.commit),
                        short(&live),
                    ));
                }
            }
        }
        Ok(context)
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
                                .await
                                .unwrap_or_else(|why| {
                                    tracing::info!(repository = %repo.name, "polled commit {commit} not deployed: {why}");
                                    Vec::new()
                                });
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

/// How much of a run's output may wait for the store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SinkLimits {
    /// Events waiting beyond which a line of output is dropped (and counted).
    pub(crate) lines: usize,
    /// Bytes of text waiting beyond which a line of output is dropped (and counted).
    pub(crate) bytes: usize,
    /// Events waiting beyond which any event is dropped (and counted): a bound on memory
    /// whatever the engine reports.
    pub(crate) hard: usize,
    /// Events stored per transaction.
    pub(crate) batch: usize,
}

/// The limits of every run: at most 8 MiB of output (4096 lines) waiting for the store.
pub(crate) const SINK_LIMITS: SinkLimits = SinkLimits {
    lines: 4096,
    bytes: 8 << 20,
    hard: 16_384,
    batch: 256,
};

/// The events of a run waiting for the store.
#[derive(Default)]
struct Pending {
    queue: VecDeque<Event>,
    bytes: usize,
    /// Lines dropped since the last event that got in, and the step of the first of them.
    dropped: u64,
    dropped_step: String,
    closed: bool,
}

/// Where a run's events go: into the store in order, then to live subscribers.
///
/// `emit` never blocks (the engine calls it from synchronous code, often a RUN step's output
/// reader) and the queue is bounded ([`SinkLimits`]). When the store falls behind, lines of
/// output (messages below `error`) that do not fit are dropped, never silently: the next
/// event that gets in is preceded by one warning, `[N lines of output dropped ...]`, in the
/// place where they were, and so is the end of the run. Step events, object states and errors
/// are kept up to the hard bound. One task per run drains the queue in batches of
/// [`SinkLimits::batch`] events per transaction. (A bounded `tokio::sync::mpsc` would drop
/// step events with the lines, or reorder them; this queue keeps both the order and the
/// bound.)
pub(crate) struct RunSink {
    queue: Arc<(Mutex<Pending>, Notify)>,
    limits: SinkLimits,
    drained: Mutex<Option<tokio::task::JoinHandle<()>>>,
    deploying: Arc<AtomicBool>,
    deploy_started: Mutex<Option<Instant>>,
}

fn text_size(event: &Event) -> usize {
    match event {
        Event::StepStarted { step } => step.len(),
        Event::StepFinished { step, message, .. } | Event::Message { step, message, .. } => {
            step.len() + message.len()
        }
        Event::ObjectState {
            object,
            state,
            message,
            ..
        } => object.len() + state.len() + message.len(),
    }
}

fn dropped_marker(n: u64, step: String) -> Event {
    Event::Message {
        step,
        level: Level::Warning,
        message: format!(
            "[{n} line{} of output dropped: written faster than the server could store them]",
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// Up to `max` events off the queue; with the queue closed and emptied, the count of lines
/// dropped at the end. Empty when closed and drained.
fn take_batch(p: &mut Pending, max: usize) -> Vec<Event> {
    let n = p.queue.len().min(max.max(1));
    let mut batch: Vec<Event> = p.queue.drain(..n).collect();
    p.bytes -= batch.iter().map(text_size).sum::<usize>().min(p.bytes);
    if p.queue.is_empty() && p.closed && p.dropped > 0 {
        let step = std::mem::take(&mut p.dropped_step);
        batch.push(dropped_marker(std::mem::take(&mut p.dropped), step));
    }
    batch
}

impl RunSink {
    fn start(
        store: Store,
        run: RunId,
        live: broadcast::Sender<StoredEvent>,
        deploying: Arc<AtomicBool>,
    ) -> RunSink {
        Self::start_with(store, run, live, deploying, SINK_LIMITS)
    }

    pub(crate) fn start_with(
        store: Store,
        run: RunId,
        live: broadcast::Sender<StoredEvent>,
        deploying: Arc<AtomicBool>,
        limits: SinkLimits,
    ) -> RunSink {
        let queue: Arc<(Mutex<Pending>, Notify)> = Arc::default();
        let q = queue.clone();
        let drained = tokio::spawn(async move {
            loop {
                let batch: Option<Vec<Event>> = {
                    let mut p = q.0.lock().expect("sink");
                    if p.queue.is_empty() && !p.closed {
                        None
                    } else {
                        Some(take_batch(&mut p, limits.batch))
                    }
                };
                let Some(batch) = batch else {
                    // A permit stored by `notify_one` meanwhile makes this return at once.
                    q.1.notified().await;
                    continue;
                };
                if batch.is_empty() {
                    break; // closed and drained
                }
                match store.append_events(run, &batch).await {
                    Ok(seqs) => {
                        let at = jiff::Timestamp::now();
                        for (seq, event) in seqs.into_iter().zip(batch) {
                            let _ = live.send(StoredEvent {
                                seq,
                                run,
                                at,
                                event,
                            });
                        }
                    }
                    Err(e) => tracing::error!(
                        run = %run,
                        "storing {} events: {e}",
                        batch.len()
                    ),
                }
            }
        });
        RunSink {
            queue,
            limits,
            drained: Mutex::new(Some(drained)),
            deploying,
            deploy_started: Mutex::new(None),
        }
    }

    fn send(&self, event: Event) {
        let size = text_size(&event);
        let line = matches!(&event, Event::Message { level, .. } if *level != Level::Error);
        let mut p = self.queue.0.lock().expect("sink");
        if p.closed {
            return;
        }
        let len = p.queue.len();
        if len >= self.limits.hard
            || (line && (len >= self.limits.lines || p.bytes + size > self.limits.bytes))
        {
            if p.dropped == 0 {
                p.dropped_step = match &event {
                    Event::StepStarted { step }
                    | Event::StepFinished { step, .. }
                    | Event::Message { step, .. } => step.clone(),
                    Event::ObjectState { .. } => "deploy".into(),
                };
            }
            p.dropped += 1;
            return;
        }
        if p.dropped > 0 {
            let step = std::mem::take(&mut p.dropped_step);
            let marker = dropped_marker(std::mem::take(&mut p.dropped), step);
            p.bytes += text_size(&marker);
            p.queue.push_back(marker);
        }
        p.bytes += size;
        p.queue.push_back(event);
        drop(p);
        self.queue.1.notify_one();
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

    /// Waits until every event emitted so far is stored (and the count of any lines dropped
    /// at the end); later events are ignored.
    pub(crate) async fn finish(&self) {
        self.queue.0.lock().expect("sink").closed = true;
        self.queue.1.notify_one();
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

    fn line(i: usize) -> Event {
        Event::Message {
            step: "web/build".into(),
            level: if i.is_multiple_of(2) {
                Level::Info
            } else {
                Level::Warning
            },
            message: format!("output line {i}"),
        }
    }

    /// The store (a real SQLite database, in memory) cannot run while the engine emits: every
    /// event is emitted before the drain task gets a turn, the worst case of a slow store.
    #[tokio::test]
    async fn output_faster_than_the_store_is_bounded_and_the_dropped_lines_are_counted() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let run = store
            .create_run(NewRun {
                repository: "r".into(),
                branch: "main".into(),
                commit: "c".into(),
                environment: "dev".into(),
                trigger: Trigger::Poll,
                needs_approval: false,
            })
            .await
            .unwrap()
            .id;
        let (live, mut rx) = broadcast::channel(4096);
        let limits = SinkLimits {
            lines: 100,
            bytes: 1 << 20,
            hard: 200,
            batch: 16,
        };
        let sink = RunSink::start_with(
            store.clone(),
            run,
            live,
            Arc::new(AtomicBool::new(false)),
            limits,
        );
        sink.emit(Event::StepStarted {
            step: "web/build".into(),
        });
        for i in 0..10_000 {
            sink.emit(line(i));
        }
        sink.emit(Event::Message {
            step: "web/build".into(),
            level: Level::Error,
            message: "RUN failed".into(),
        });
        sink.emit(Event::StepFinished {
            step: "web/build".into(),
            ok: false,
            millis: 1,
            message: "failed".into(),
        });
        for i in 0..50 {
            sink.emit(line(i)); // dropped too: the queue is still full
        }
        sink.finish().await;

        let stored = store.events(run, 0, 10_000).await.unwrap();
        let texts: Vec<String> = stored
            .iter()
            .map(|e| crate::ui::log_line(&e.event).2)
            .collect();
        // The step start, the 99 lines that fit, then one count in their place, the error and
        // the step's end, and the count of those dropped at the end.
        assert_eq!(stored.len(), 1 + 99 + 1 + 2 + 1, "{texts:#?}");
        assert!(matches!(stored[0].event, Event::StepStarted { .. }));
        assert_eq!(texts[99], "output line 98");
        assert_eq!(
            texts[100],
            "[9901 lines of output dropped: written faster than the server could store them]"
        );
        assert!(
            matches!(&stored[100].event, Event::Message { step, level: Level::Warning, .. } if step == "web/build")
        );
        assert_eq!(texts[101], "RUN failed");
        assert!(matches!(stored[102].event, Event::StepFinished { .. }));
        assert!(
            texts[103].starts_with("[50 lines of output dropped"),
            "{}",
            texts[103]
        );
        // Gapless, in order, and what was stored went live too.
        assert!(
            stored
                .iter()
                .enumerate()
                .all(|(i, e)| e.seq == i as u64 + 1)
        );
        let mut live_seqs = Vec::new();
        while let Ok(e) = rx.try_recv() {
            live_seqs.push(e.seq);
        }
        assert_eq!(live_seqs, (1..=104).collect::<Vec<u64>>());
        // After the end, nothing more is taken.
        sink.emit(line(0));
        assert_eq!(store.last_event_seq(run).await.unwrap(), Some(104));
    }

    #[tokio::test]
    async fn a_store_that_keeps_up_loses_no_line() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let run = store
            .create_run(NewRun {
                repository: "r".into(),
                branch: "main".into(),
                commit: "c".into(),
                environment: "dev".into(),
                trigger: Trigger::Poll,
                needs_approval: false,
            })
            .await
            .unwrap()
            .id;
        let (live, _) = broadcast::channel(16);
        let sink = RunSink::start(store.clone(), run, live, Arc::new(AtomicBool::new(false)));
        for i in 0..20_000 {
            sink.emit(line(i));
            if i % 1000 == 999 {
                // Bursts smaller than the queue, with a store that catches up in between.
                while !sink.queue.0.lock().unwrap().queue.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
        sink.finish().await;
        let mut seen = 0;
        let mut after = 0;
        loop {
            let page = store.events(run, after, 5000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            seen += page.len();
        }
        assert_eq!(seen, 20_000);
    }

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
