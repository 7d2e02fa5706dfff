//! The one run engine: `berth run`, `berth dev`, `berth promote` and `berth serve` all go
//! through [`Engine::execute`].
//!
//! A run request names a project (its loaded berth.yaml), the commit checked out, which
//! environment, and what to do (build and deploy what changed, promote from another
//! environment, roll back). The engine picks the environment, connects to its cluster (one
//! connection per kube context, kept for the next run and for the server's pages), gets the
//! builder settings for the project ([`BuildSettings`]: the caller's flags merged with
//! berth.yaml's `registry`), applies the server's containment when asked, and drives
//! [`Pipeline`]. Callers keep what differs: how flags become settings, where events are shown
//! and how the result is printed.
//!
//! ```text
//!  Request { config, commit, environment, action, cancel, containment }
//!    -> choose the environment -> cluster (cached per context) -> BuildOptions
//!    -> Pipeline::run | Pipeline::promote | Deployer::rollback  -> Outcome | EngineError
//! ```
//!
//! Builds and tests run behind [`StepExecutor`] ([`InProcess`] unless the caller says), and the
//! run's [`CancelToken`] is checked at each step boundary.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_build::exec::BuildOptions;
use berth_build::exec::runtime::RepoPolicy;
use berth_cluster::{Cluster, ConnectOptions};
use berth_config::Config;
use berth_deploy::{DeployError, DeployOutcome, DeployRequest, Deployer, History};
use berth_render::{ObjectSet, Tools};
use berth_types::canary::CanaryState;
use berth_types::view::{EnvironmentView, ReleaseView, ServiceView};
use berth_types::{CancelToken, Event, EventSink, NotifyEvent, Step};

use crate::executor::{InProcess, StepExecutor, StepFuture};
use crate::run::{Pipeline, RunError, RunRequest, choose_environment, default_jobs, default_lock};

/// Builder settings for one run: the caller's own (flags, store, runtime) merged with the
/// project's `registry` (insecure hosts, mirrors), with `cluster` to read registry Secrets
/// from.
pub trait BuildSettings: Send + Sync {
    /// The settings for a run of `config` deploying through `cluster`.
    fn options<'a>(
        &'a self,
        config: &'a Config,
        cluster: &'a Cluster,
    ) -> StepFuture<'a, Result<BuildOptions, String>>;
}

/// What a run does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Build what changed and deploy (`berth run`), at most `jobs` builds at once (default:
    /// the number of cores).
    Run {
        /// Parallel builds.
        jobs: Option<NonZeroUsize>,
    },
    /// Deploy the digests live in another environment (`berth promote`).
    Promote {
        /// The source environment.
        from: String,
        /// Its namespace, if not its configured one.
        from_namespace: Option<String>,
    },
    /// Re-deploy an earlier revision of the environment.
    Rollback {
        /// The revision; `None`: the one before the live one.
        to: Option<u64>,
    },
}

/// What the delivery server imposes on a run of a repository it does not trust: whoever can
/// push writes berth.yaml, which may only tighten this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Containment {
    /// The repository may ask for the host's network (`build.network: host`).
    pub allow_host_network: bool,
    /// `RUN --mount=type=cache` is scoped to this (the repository's name on the server), so
    /// that one repository's cache is never seen, or poisoned, by another's.
    pub cache_scope: String,
}

/// One run.
pub struct Request {
    /// The project, loaded from the checkout.
    pub config: Config,
    /// The commit checked out, if the project is a git repository.
    pub commit: Option<String>,
    /// Its branch, to choose the environment by when none is named.
    pub branch: Option<String>,
    /// The environment (`None`: the only one, or the one deploying `branch`).
    pub environment: Option<String>,
    /// A kube context that wins over [`Engine`]'s and the environment's (the server config's
    /// pin for the environment).
    pub context: Option<String>,
    /// Deploy into this namespace instead of the environment's.
    pub namespace: Option<String>,
    /// What to do.
    pub action: Action,
    /// Who runs it (release records).
    pub user: String,
    /// Who holds the release's lock, for people who find it held.
    pub lock_holder: String,
    /// Release records to keep (0: all).
    pub history_max: usize,
    /// `--pull-secret`, winning over the environment's `deploy.pull-secret`.
    pub pull_secret: Option<String>,
    /// Take over fields another field manager owns.
    pub force_conflicts: bool,
    /// The server's containment of an untrusted repository (`None`: the caller's settings
    /// as they are, for a person's own checkout).
    pub containment: Option<Containment>,
    /// The run's cancel, checked at each step boundary.
    pub cancel: CancelToken,
    /// The run's id for the environment's `notify` receivers (`None`: tell nobody, as for
    /// `berth dev`'s rebuilds). Runs and promotions notify; rollbacks do not.
    pub notify: Option<String>,
    /// Whether the environment's canary steps run (`strategy.canary`). `berth dev`'s rebuilds
    /// on save move every pod at once: a pause there would hold the developer's loop.
    pub canary: bool,
    /// The host's outbox for the run's webhook and Slack messages (`berth serve`'s store);
    /// `None`: the run sends them itself and waits for them at its end.
    pub outbox: Option<Arc<dyn berth_types::Outbox>>,
}

/// What a successful run did.
pub struct Outcome {
    /// The environment (and release) deployed.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The live revision after the run.
    pub revision: u64,
    /// Whether a new revision was made (false: the live one was already this).
    pub changed: bool,
    /// Services rebuilt, with their pinned images.
    pub built: BTreeMap<String, String>,
    /// Services that kept their live images.
    pub kept: Vec<String>,
    /// The cluster deployed to (for `berth dev` to follow the new pods' logs).
    pub cluster: Cluster,
}

/// Why a run did not happen or failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Before the run started: the environment could not be chosen, the cluster could not be
    /// reached, or the builder settings are wrong.
    #[error("{0}")]
    Setup(String),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The rollback failed.
    #[error(transparent)]
    Rollback(Box<DeployError>),
}

impl EngineError {
    /// The deploy's failure, when the run got that far.
    pub fn deploy_error(&self) -> Option<&DeployError> {
        match self {
            EngineError::Run(RunError::Deploy(e)) | EngineError::Rollback(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the deploy failed and the environment was rolled back.
    pub fn rolled_back(&self) -> bool {
        matches!(
            self.deploy_error(),
            Some(DeployError::RolledBack { .. } | DeployError::Aborted { .. })
        )
    }

    /// Why the deploy failed (which objects did not become ready), when it did.
    pub fn diagnosis(&self) -> Option<String> {
        match self.deploy_error()? {
            DeployError::RolledBack { failure, .. }
            | DeployError::Aborted { failure, .. }
            | DeployError::FirstInstallFailed { failure, .. }
            | DeployError::FailedWithoutGoodRevision { failure, .. }
            | DeployError::FailedKept { failure, .. }
            | DeployError::PreHookFailed { failure, .. }
            | DeployError::RollbackFailed { failure, .. } => Some(failure.to_string()),
            _ => None,
        }
    }

    /// Whether the run was cancelled before its deploy.
    pub fn cancelled(&self) -> bool {
        matches!(self, EngineError::Run(RunError::Cancelled(_)))
    }
}

/// What the engine keeps between runs. See the module docs.
pub struct Engine {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    tools: Tools,
    build: Arc<dyn BuildSettings>,
    executor: Arc<dyn StepExecutor>,
    /// One connection per kube context, reused across runs and page views.
    clusters: Mutex<HashMap<Option<String>, Cluster>>,
}

impl Engine {
    /// An engine reaching clusters through `kubeconfig` (default: $KUBECONFIG, else
    /// ~/.kube/config, else in-cluster) and `context` (winning over each environment's),
    /// rendering with `tools`, building with the settings `build` gives, in process.
    pub fn new(
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        tools: Tools,
        build: Arc<dyn BuildSettings>,
    ) -> Engine {
        Engine {
            kubeconfig,
            context,
            tools,
            build,
            executor: Arc::new(InProcess),
            clusters: Mutex::new(HashMap::new()),
        }
    }

    /// Runs builds and tests through `executor` instead of in this process.
    pub fn with_executor(mut self, executor: Arc<dyn StepExecutor>) -> Engine {
        self.executor = executor;
        self
    }

    /// The cluster of `pinned`, else of the engine's context, else of `env_context`
    /// (berth.yaml's), else the current one; connected once per context.
    pub async fn cluster(
        &self,
        pinned: Option<&str>,
        env_context: Option<&str>,
    ) -> Result<Cluster, String> {
        let context = pinned
            .map(str::to_string)
            .or(self.context.clone())
            .or(env_context.map(str::to_string));
        if let Some(c) = self.clusters.lock().expect("clusters").get(&context) {
            return Ok(c.clone());
        }
        let c = Cluster::connect(&ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: context.clone(),
        })
        .await
        .map_err(|e| e.to_string())?;
        self.clusters
            .lock()
            .expect("clusters")
            .insert(context, c.clone());
        Ok(c)
    }

    /// Runs `req`, reporting to `sink`.
    pub async fn execute(
        &self,
        req: Request,
        sink: Arc<dyn EventSink>,
    ) -> Result<Outcome, EngineError> {
        let notifier = match (&req.notify, &req.action) {
            (_, Action::Rollback { .. }) | (None, _) => None,
            (Some(run), _) => choose_environment(
                &req.config,
                req.environment.as_deref(),
                req.branch.as_deref(),
            )
            .ok()
            .filter(|env| !env.notify.is_empty())
            .map(|env| {
                let facts = crate::notify::RunFacts {
                    run: run.clone(),
                    environment: env.name.clone(),
                    namespace: req
                        .namespace
                        .clone()
                        .unwrap_or_else(|| env.namespace.clone()),
                    commit: req.commit.clone(),
                    user: req.user.clone(),
                };
                let host = if req.containment.is_some() {
                    crate::notify::Host::Server
                } else {
                    crate::notify::Host::Process
                };
                crate::notify::Notifier::for_run(env, facts, sink.clone(), host, req.outbox.clone())
            }),
        };
        let Some(mut notifier) = notifier else {
            return self.execute_one(req, sink).await;
        };
        notifier.send(NotifyEvent::Started, None, "");
        // The canary's pauses and its promotion are told as they happen.
        let notifier = Arc::new(std::sync::Mutex::new(notifier));
        let canary_told: Arc<dyn EventSink> = Arc::new(CanaryNotices {
            inner: sink,
            notifier: notifier.clone(),
        });
        let result = self.execute_one(req, canary_told).await;
        let mut notifier = notifier
            .lock()
            .expect("the notifier is never poisoned")
            .take();
        match &result {
            Ok(o) => {
                let live = if o.changed {
                    format!("revision {} is live", o.revision)
                } else {
                    format!("revision {} was already live; nothing changed", o.revision)
                };
                notifier.send(NotifyEvent::Succeeded, Some(o.revision), &live);
            }
            Err(e) => {
                let (event, revision) = match e {
                    EngineError::Run(RunError::Deploy(d)) => match &**d {
                        DeployError::RolledBack { to, .. } => (NotifyEvent::RolledBack, Some(*to)),
                        DeployError::Aborted { to, .. } => (NotifyEvent::Aborted, Some(*to)),
                        _ => (NotifyEvent::Failed, None),
                    },
                    _ => (NotifyEvent::Failed, None),
                };
                notifier.send(event, revision, &one_paragraph(&e.to_string()));
            }
        }
        notifier.finish().await;
        result
    }

    async fn execute_one(
        &self,
        req: Request,
        sink: Arc<dyn EventSink>,
    ) -> Result<Outcome, EngineError> {
        let Request {
            config,
            commit,
            branch,
            environment,
            context,
            namespace,
            action,
            user,
            lock_holder,
            history_max,
            pull_secret,
            force_conflicts,
            containment,
            cancel,
            notify: _,
            canary,
            outbox: _,
        } = req;
        let mut env = choose_environment(&config, environment.as_deref(), branch.as_deref())
            .map_err(|e| EngineError::Setup(e.to_string()))?
            .clone();
        if !canary {
            env.canary = None;
        }
        // On the server a pushed berth.yaml writes the checks: a GET from the server could aim
        // it at its own network, as a literal notify URL could.
        let http_check = env.canary.iter().flat_map(|c| &c.steps).any(|s| {
            matches!(s, berth_types::canary::CanaryStep::Check(cs)
                if cs.iter().any(|c| matches!(c.kind, berth_types::canary::CheckKind::Http { .. })))
        });
        if containment.is_some() && http_check {
            return Err(EngineError::Setup(format!(
                "environment `{}`: on berth serve, canary `http` checks are not run (a pushed \
                 berth.yaml could aim the server at addresses inside its network); write a \
                 `job` check instead, which runs its command in the cluster, e.g. \
                 `job: {{ command: \"wget -qO- http://SERVICE/healthz\" }}`",
                env.name
            )));
        }
        let cluster = self
            .cluster(context.as_deref(), env.context.as_deref())
            .await
            .map_err(EngineError::Setup)?;
        let lock = default_lock(lock_holder);
        if let Action::Rollback { to } = action {
            return rollback(cluster, sink, &env, to, user, lock, &cancel).await;
        }
        let mut build = self
            .build
            .options(&config, &cluster)
            .await
            .map_err(EngineError::Setup)?;
        if let Some(c) = containment {
            // Whoever can push writes berth.yaml: it may only tighten the server's containment.
            build.sandbox.repo = RepoPolicy::Untrusted {
                allow_host_network: c.allow_host_network,
            };
            build.cache_scope = Some(c.cache_scope);
        }
        let pipeline = Pipeline {
            config,
            build,
            cluster: cluster.clone(),
            sink,
            executor: self.executor.clone(),
        };
        let request = RunRequest {
            environment: env.name.clone(),
            namespace,
            commit,
            user,
            lock,
            tools: self.tools.clone(),
            history_max,
            pull_secret,
            force_conflicts,
            cancel,
        };
        let out = match action {
            Action::Promote {
                from,
                from_namespace,
            } => pipeline.promote(&from, from_namespace, request).await,
            Action::Run { jobs } => {
                pipeline
                    .run_with_jobs(request, jobs.unwrap_or_else(default_jobs))
                    .await
            }
            Action::Rollback { .. } => unreachable!("handled above"),
        }?;
        Ok(Outcome {
            environment: out.release,
            namespace: out.namespace,
            revision: revision(&out.deploy),
            changed: matches!(out.deploy, DeployOutcome::Deployed { .. }),
            built: out.built,
            kept: out.kept,
            cluster,
        })
    }

    /// The environments of the berth.yaml at `config`, each with its live (or last)
    /// revision and what runs of each service; an environment whose cluster cannot be asked
    /// says why.
    pub async fn environments(&self, config: &Path) -> Result<Vec<EnvironmentView>, String> {
        let config = berth_config::load(config).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for env in &config.environments {
            let (current, error) = match self.cluster(None, env.context.as_deref()).await {
                Err(e) => (None, Some(e)),
                Ok(cluster) => match History::load(&cluster, &env.namespace, &env.name).await {
                    Ok(h) => (h.current().or(h.releases.last()).map(release_view), None),
                    Err(e) => (None, Some(e.to_string())),
                },
            };
            let services = config
                .services
                .iter()
                .map(|s| {
                    let repository = s.image.as_ref().map(|i| i.name());
                    let image = repository
                        .as_ref()
                        .and_then(|r| current.as_ref().and_then(|c| c.images.get(r).cloned()));
                    let digest = image
                        .as_ref()
                        .and_then(|i| i.split_once('@').map(|(_, d)| d.to_string()));
                    ServiceView {
                        name: s.name.clone(),
                        repository,
                        image,
                        digest,
                    }
                })
                .collect();
            out.push(EnvironmentView {
                name: env.name.clone(),
                namespace: env.namespace.clone(),
                branch: env.branch.clone(),
                from: env.from.clone(),
                services,
                current,
                error,
            });
        }
        Ok(out)
    }

    /// The release history of `environment` of the berth.yaml at `config`, oldest first.
    pub async fn history(
        &self,
        config: &Path,
        environment: &str,
    ) -> Result<Vec<ReleaseView>, String> {
        let (env, cluster) = self.environment(config, environment, None).await?;
        let h = History::load(&cluster, &env.namespace, &env.name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(h.releases.iter().map(release_view).collect())
    }

    /// The commit of the release live in `environment` (`None`: nothing deployed yet), read
    /// through kube context `context` when given.
    pub async fn live_commit(
        &self,
        config: &Path,
        environment: &str,
        context: Option<&str>,
    ) -> Result<Option<String>, String> {
        let (env, cluster) = self.environment(config, environment, context).await?;
        let h = History::load(&cluster, &env.namespace, &env.name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(h.current().and_then(|r| r.commit.clone()))
    }

    /// Answers the canary paused in `environment` (see [`berth_deploy::canary::resume`]),
    /// through kube context `context` when given, else berth.yaml's; the step it waited at.
    pub async fn answer_pause(
        &self,
        config: &Path,
        environment: &str,
        context: Option<&str>,
        abort: bool,
    ) -> Result<usize, String> {
        let (env, cluster) = self.environment(config, environment, context).await?;
        berth_deploy::canary::resume(&cluster, &env.namespace, &env.name, abort)
            .await
            .map_err(|e| e.to_string())
    }

    async fn environment(
        &self,
        config: &Path,
        environment: &str,
        pinned: Option<&str>,
    ) -> Result<(berth_config::Environment, Cluster), String> {
        let config = berth_config::load(config).map_err(|e| e.to_string())?;
        let env = config
            .environment(environment)
            .ok_or_else(|| format!("{} has no environment `{environment}`", config.file))?
            .clone();
        let cluster = self.cluster(pinned, env.context.as_deref()).await?;
        Ok((env, cluster))
    }
}

/// The run's sink, telling the environment's receivers of its canary's pauses and promotion.
struct CanaryNotices {
    inner: Arc<dyn EventSink>,
    notifier: Arc<std::sync::Mutex<crate::notify::Notifier>>,
}

impl EventSink for CanaryNotices {
    fn emit(&self, event: Event) {
        if let Event::Canary {
            step,
            steps,
            weight,
            state,
            message,
        } = &event
        {
            let told = match state {
                CanaryState::Paused => Some((NotifyEvent::Paused, Some(*step))),
                CanaryState::Promoted => Some((NotifyEvent::Promoted, None)),
                _ => None,
            };
            if let Some((e, at)) = told {
                let line = Event::canary_line(*step, *steps, *weight, *state, message);
                self.notifier
                    .lock()
                    .expect("the notifier is never poisoned")
                    .send_at(e, at, None, &line);
            }
        }
        self.inner.emit(event);
    }
}

/// Re-deploys revision `to` (default: the one before the live one) of `env`'s release.
async fn rollback(
    cluster: Cluster,
    sink: Arc<dyn EventSink>,
    env: &berth_config::Environment,
    to: Option<u64>,
    user: String,
    lock: berth_deploy::LockOptions,
    cancel: &CancelToken,
) -> Result<Outcome, EngineError> {
    cancel.enter(Step::Deploy).map_err(RunError::from)?;
    let deployer = Deployer::new(cluster.clone(), sink);
    let base = DeployRequest {
        release: env.name.clone(),
        namespace: env.namespace.clone(),
        objects: ObjectSet::new(),
        images: Default::default(),
        commit: None,
        user,
        timeout: env.deploy.timeout,
        rollback: env.deploy.rollback,
        force_conflicts: false,
        lock,
        history_max: berth_deploy::release::DEFAULT_HISTORY_MAX,
        // A rollback never runs canary steps: it restores what was live.
        canary: None,
    };
    let (outcome, _from) = deployer
        .rollback(&env.namespace, &env.name, to, base)
        .await
        .map_err(|e| EngineError::Rollback(Box::new(e)))?;
    Ok(Outcome {
        environment: env.name.clone(),
        namespace: env.namespace.clone(),
        revision: revision(&outcome),
        changed: matches!(outcome, DeployOutcome::Deployed { .. }),
        built: BTreeMap::new(),
        kept: Vec::new(),
        cluster,
    })
}

/// A message for a receiver: the first 1000 characters, on one line.
fn one_paragraph(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(1000) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

fn revision(o: &DeployOutcome) -> u64 {
    match o {
        DeployOutcome::Deployed { revision, .. } | DeployOutcome::Unchanged { revision } => {
            *revision
        }
    }
}

fn release_view(r: &berth_deploy::Release) -> ReleaseView {
    ReleaseView {
        revision: r.revision,
        status: r.status.as_str().to_string(),
        commit: r.commit.clone(),
        user: r.user.clone(),
        started_at: r.started_at.clone(),
        finished_at: r.finished_at.clone(),
        description: r.description.clone(),
        images: r.images.clone(),
    }
}
