//! A run: commit + environment -> changed services built and pushed -> manifests rendered
//! with pinned digests -> one deploy of the environment's release.
//!
//! - The release is the environment's: one release per environment, named after the
//!   environment, holding every service's objects, so a run is one atomic, rollback-able step.
//! - What changed is decided against the commit recorded by the environment's live revision
//!   ([`crate::changes`]); services that did not change keep the digests recorded there — no
//!   rebuild, no restart.
//! - Builds of changed services run in parallel, at most `jobs` at once (default: the number
//!   of cores), each as its own task so that CPU work overlaps too. Their events are
//!   attributed to the service (`kids/build`, `kids/test`: [`berth_types::StepOf`]).
//! - Two passes, so that nothing is pushed unless everything built: first every changed
//!   service is built into the local store and tested; the first failure aborts the builds
//!   still running (their RUN processes are killed, their scratch space removed) and the run
//!   stops with that failure. Only when all succeeded is each image pushed (the same build
//!   again, every step a cache hit, reported as the service's `push` step), then deployed.
//!   (A run that builds one service without tests builds and pushes in one pass: its failure
//!   is the run's, so nothing else could have been pushed.)
//! - The result does not depend on which build finishes first: images are keyed by service.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_build::exec::{BuildOptions, BuildRequest};
use berth_cluster::Cluster;
use berth_config::{Config, Environment, ImageNaming, Manifests, Service};
use berth_deploy::{DeployOutcome, DeployRequest, Deployer, History, LockOptions};
use berth_render::{
    HelmChart, ImageMap, ImageValuePaths, ImagesExt, ManifestSource, ObjectSet, RenderContext,
    Tools,
};
use berth_types::{CancelToken, Cancelled, Event, EventSink, ForService, ImageRef, Level, Step};

use crate::changes::{ChangeError, changed_services};
use crate::executor::StepExecutor;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No environment was named and none could be chosen.
    #[error("{0}")]
    NoEnvironment(String),
    /// git could not say what changed.
    #[error(transparent)]
    Changes(#[from] ChangeError),
    /// A service's image failed to build or push; nothing was deployed.
    #[error("building service `{service}` failed; nothing was deployed: {source}")]
    Build {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: Box<berth_build::exec::BuildError>,
    },
    /// A service's manifests failed to render; nothing was deployed.
    #[error("rendering service `{service}` failed; nothing was deployed: {source}")]
    Render {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: Box<berth_render::RenderError>,
    },
    /// Rendering with placeholder digests failed, before anything was built.
    #[error("rendering service `{service}` failed; nothing was built or pushed: {source}")]
    Prerender {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: Box<berth_render::RenderError>,
    },
    /// A built service's image is referenced by no rendered object.
    #[error("{0}")]
    Unreferenced(Box<Unreferenced>),
    /// A promotion was refused.
    #[error("{0}")]
    Promotion(String),
    /// The environment's data step (clone, masked copy) failed; nothing was deployed.
    #[error("{0}; nothing was deployed")]
    Data(String),
    /// A service's tests failed in its freshly built image; nothing was pushed or deployed.
    #[error("the tests of service `{service}` failed; nothing was pushed or deployed: {reason}")]
    Test {
        /// The service.
        service: String,
        /// The command's exit and last output.
        reason: String,
    },
    /// A service's image name cannot take the commit as tag.
    #[error("{0}")]
    Image(String),
    /// A pod lacks a working pull secret; nothing was applied.
    #[error(transparent)]
    PullSecret(#[from] Box<crate::pull_secret::PullSecretError>),
    /// The deploy failed (and was rolled back, unless asked not to).
    #[error(transparent)]
    Deploy(#[from] Box<berth_deploy::DeployError>),
    /// The run was cancelled ([`RunRequest::cancel`]) before its data step and deploy.
    #[error("{0}; nothing was deployed")]
    Cancelled(#[from] Cancelled),
    /// A service's containment settings (`build.network`, ...) were refused; nothing was
    /// built.
    #[error("{file}:{location}: service `{service}`: {reason}; nothing was built or deployed")]
    Sandbox {
        /// berth.yaml.
        file: String,
        /// Where the service starts in it.
        location: berth_config::Location,
        /// The service.
        service: String,
        /// Why.
        reason: String,
    },
}

/// What a service's berth.yaml asks of the sandbox of its RUN steps and tests.
fn sandbox_request(config: &Config, s: &Service) -> berth_build::exec::runtime::SandboxRequest {
    use berth_build::exec::runtime::{Network, SandboxRequest};
    let mut req = SandboxRequest {
        test_timeout: s.test.as_ref().and_then(|t| t.timeout),
        ..SandboxRequest::default()
    };
    if let Some(b) = &s.build {
        let sb = &b.sandbox;
        req.network = sb.network.map(|n| match n {
            berth_config::BuildNetwork::Isolated => Network::Isolated,
            berth_config::BuildNetwork::Host => Network::Host,
            berth_config::BuildNetwork::None => Network::None,
        });
        req.pids_limit = sb.pids;
        req.memory = sb.memory;
        req.step_timeout = sb.step_timeout;
        req.ca_certs = sb.ca.iter().map(|c| config.path(c)).collect();
    }
    req
}

/// One run.
pub struct RunRequest {
    /// The environment to deploy to.
    pub environment: String,
    /// Overrides the environment's namespace (e.g. a developer's own).
    pub namespace: Option<String>,
    /// Commit being deployed (`git rev-parse HEAD` of the repository), if it is one.
    pub commit: Option<String>,
    /// Who runs it.
    pub user: String,
    /// Lock settings.
    pub lock: LockOptions,
    /// kustomize and helm binaries.
    pub tools: Tools,
    /// Release records to keep (0: all); the live one is always kept.
    pub history_max: usize,
    /// `--pull-secret`: wins over the environment's `deploy.pull-secret`.
    pub pull_secret: Option<String>,
    /// `--force-conflicts`: take over fields another field manager owns (once, when moving a
    /// release from Helm or kubectl to berth).
    pub force_conflicts: bool,
    /// Checked at every step boundary, and stops a cancellable step under way: a cancelled
    /// run ends with [`RunError::Cancelled`] before its data step and deploy, which close it
    /// ([`Step::cancellable`]).
    pub cancel: CancelToken,
}

/// What a run did.
#[derive(Debug)]
pub struct RunOutcome {
    /// The release (the environment's name) and namespace deployed.
    pub release: String,
    /// Namespace.
    pub namespace: String,
    /// Services rebuilt, with their pinned images.
    pub built: BTreeMap<String, String>,
    /// Services that kept their deployed images.
    pub kept: Vec<String>,
    /// The deploy's outcome.
    pub deploy: DeployOutcome,
}

/// Picks the environment: the named one, the only one, or the one whose branch is `branch`.
pub fn choose_environment<'a>(
    config: &'a Config,
    named: Option<&str>,
    branch: Option<&str>,
) -> Result<&'a Environment, RunError> {
    let names = || {
        config
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(n) = named {
        return config.environment(n).ok_or_else(|| {
            RunError::NoEnvironment(format!(
                "{} has no environment `{n}`; it has: {}",
                config.file,
                names()
            ))
        });
    }
    if config.environments.len() == 1 {
        return Ok(&config.environments[0]);
    }
    if let Some(b) = branch {
        let matching = config.environments_for_branch(b);
        if matching.len() == 1 {
            return Ok(matching[0]);
        }
    }
    Err(RunError::NoEnvironment(format!(
        "choose an environment with --env ({}); none deploys branch `{}` automatically",
        names(),
        branch.unwrap_or("?")
    )))
}

/// The engine's parts.
pub struct Pipeline {
    /// The project.
    pub config: Config,
    /// Builder settings (store, registry, runtime).
    pub build: BuildOptions,
    /// The cluster.
    pub cluster: Cluster,
    /// Where events go.
    pub sink: Arc<dyn EventSink>,
    /// Where builds and tests run ([`crate::executor::InProcess`] unless the caller says).
    pub executor: Arc<dyn StepExecutor>,
}

impl Pipeline {
    fn renderer(&self) -> Renderer<'_> {
        Renderer {
            config: &self.config,
        }
    }

    fn say(&self, level: Level, message: String) {
        self.sink.emit(Event::Message {
            step: Step::Run.into(),
            level,
            message,
        });
    }

    /// Runs `req` with as many parallel builds as there are cores: see the module docs.
    pub async fn run(&self, req: RunRequest) -> Result<RunOutcome, RunError> {
        self.run_with_jobs(req, default_jobs()).await
    }

    /// Runs `req` with at most `jobs` builds at once: see the module docs.
    pub async fn run_with_jobs(
        &self,
        req: RunRequest,
        jobs: NonZeroUsize,
    ) -> Result<RunOutcome, RunError> {
        req.cancel.enter(Step::Run)?;
        let env = self.config.environment(&req.environment).ok_or_else(|| {
            RunError::NoEnvironment(format!("no environment `{}`", req.environment))
        })?;
        let namespace = req
            .namespace
            .clone()
            .unwrap_or_else(|| env.namespace.clone());
        let release = env.name.clone();
        let history = History::load(&self.cluster, &namespace, &release)
            .await
            .map_err(Box::new)?;
        let current = history.current();
        let last_commit = current.and_then(|r| r.commit.clone());
        let deployed_images = current.map(|r| r.images.clone()).unwrap_or_default();

        let repo = &self.config.dir;
        let to_build: Vec<&Service> = match (&req.commit, &last_commit) {
            (Some(to), from) => {
                let changes = changed_services(repo, from.as_deref(), to, &self.config)?;
                for c in &changes {
                    self.say(
                        Level::Info,
                        format!(
                            "{}: changed ({:?}), rebuild: {}",
                            c.service, c.reason, c.rebuild
                        ),
                    );
                }
                self.config
                    .services
                    .iter()
                    .filter(|s| s.build.is_some())
                    .filter(|s| {
                        changes.iter().any(|c| c.service == s.name && c.rebuild)
                            || !deployed_images.contains_key(&repository(s))
                    })
                    .collect()
            }
            (None, _) => self
                .config
                .services
                .iter()
                .filter(|s| s.build.is_some())
                .collect(),
        };

        // Before any build: render every service with placeholder digests for the images about
        // to be built (the deployed ones for the rest), so that a template or YAML error, or a
        // built image that no rendered object references, stops the run with nothing built.
        let mut planned: BTreeMap<String, String> = BTreeMap::new();
        for s in self.config.services.iter().filter(|s| s.build.is_some()) {
            let key = repository(s);
            if to_build.iter().any(|b| b.name == s.name) {
                planned.insert(key.clone(), placeholder(&key));
            } else if let Some(img) = deployed_images.get(&key) {
                planned.insert(key, img.clone());
            }
        }
        req.cancel.enter(Step::Prerender)?;
        self.prerender(env, &namespace, &planned, &req)?;

        // Build and push what changed; keep the rest.
        let mut pinned: BTreeMap<String, String> = BTreeMap::new();
        let mut kept = Vec::new();
        let built = req
            .cancel
            .during(
                Step::Build,
                self.build_all(&to_build, req.commit.as_deref(), jobs, &req.cancel),
            )
            .await?;
        for s in self.config.services.iter().filter(|s| s.build.is_some()) {
            let key = repository(s);
            if let Some(image) = built.get(&s.name) {
                pinned.insert(key, image.clone());
            } else if let Some(img) = deployed_images.get(&key) {
                kept.push(s.name.clone());
                pinned.insert(key, img.clone());
            }
        }

        let outcome = self
            .render_and_deploy(env, &namespace, &release, pinned, req.commit.clone(), &req)
            .await?;
        Ok(RunOutcome {
            release,
            namespace,
            built,
            kept,
            deploy: outcome,
        })
    }

    /// Deploys to `to` exactly the digests live in `from` (build once, deploy many), rendered
    /// with `to`'s values. Refuses when `from`'s last deploy did not succeed.
    pub async fn promote(
        &self,
        from: &str,
        from_namespace: Option<String>,
        req: RunRequest,
    ) -> Result<RunOutcome, RunError> {
        req.cancel.enter(Step::Run)?;
        let source = self
            .config
            .environment(from)
            .ok_or_else(|| RunError::NoEnvironment(format!("no environment `{from}`")))?;
        let env = self.config.environment(&req.environment).ok_or_else(|| {
            RunError::NoEnvironment(format!("no environment `{}`", req.environment))
        })?;
        let source_ns = from_namespace.unwrap_or_else(|| source.namespace.clone());
        let history = History::load(&self.cluster, &source_ns, &source.name)
            .await
            .map_err(Box::new)?;
        let last = history.releases.last().ok_or_else(|| {
            RunError::Promotion(format!(
                "environment `{from}` (namespace `{source_ns}`) has never been deployed; run `berth run -e {from}` first"
            ))
        })?;
        if last.status != berth_deploy::Status::Deployed {
            return Err(RunError::Promotion(format!(
                "the last deploy of `{from}` (revision {}) is {}, not deployed: {}. Fix `{from}` first; berth promotes only what is live and verified",
                last.revision,
                last.status,
                last.description.lines().next().unwrap_or("")
            )));
        }
        self.say(
            Level::Info,
            format!(
                "promoting revision {} of `{from}` (commit {}) to `{}`",
                last.revision,
                last.commit.as_deref().unwrap_or("unknown"),
                env.name
            ),
        );
        let namespace = req
            .namespace
            .clone()
            .unwrap_or_else(|| env.namespace.clone());
        let pinned = last.images.clone();
        let outcome = self
            .render_and_deploy(
                env,
                &namespace,
                &env.name,
                pinned.clone(),
                last.commit.clone(),
                &req,
            )
            .await?;
        Ok(RunOutcome {
            release: env.name.clone(),
            namespace,
            built: BTreeMap::new(),
            kept: self
                .config
                .services
                .iter()
                .filter(|s| {
                    s.image
                        .as_ref()
                        .is_some_and(|i| pinned.contains_key(&i.name()))
                })
                .map(|s| s.name.clone())
                .collect(),
            deploy: outcome,
        })
    }

    /// The check before any build: every service rendered with `planned` (placeholder digests
    /// for what is about to be built), and every built image referenced.
    fn prerender(
        &self,
        env: &Environment,
        namespace: &str,
        planned: &BTreeMap<String, String>,
        req: &RunRequest,
    ) -> Result<(), RunError> {
        let started = std::time::Instant::now();
        self.sink.emit(Event::StepStarted {
            step: Step::Prerender.into(),
        });
        let checked = self
            .renderer()
            .render_all(env, namespace, planned, &req.tools)
            .and_then(|set| {
                self.renderer()
                    .check_references(&set, planned, Stage::BeforeBuild)
                    .map(|()| set.len())
            })
            .map_err(|e| match e {
                RunError::Render { service, source } => RunError::Prerender { service, source },
                other => other,
            });
        self.sink.emit(Event::StepFinished {
            step: Step::Prerender.into(),
            ok: checked.is_ok(),
            millis: started.elapsed().as_millis() as u64,
            message: match &checked {
                Ok(n) => format!("{n} objects render; every built image is referenced"),
                Err(e) => e.to_string(),
            },
        });
        checked.map(|_| ())
    }

    async fn render_and_deploy(
        &self,
        env: &Environment,
        namespace: &str,
        release: &str,
        pinned: BTreeMap<String, String>,
        commit: Option<String>,
        req: &RunRequest,
    ) -> Result<DeployOutcome, RunError> {
        // Render every service with the pinned images.
        req.cancel.enter(Step::Render)?;
        let rendering = std::time::Instant::now();
        self.sink.emit(Event::StepStarted {
            step: Step::Render.into(),
        });
        let objects = self
            .renderer()
            .render_all(env, namespace, &pinned, &req.tools);
        self.sink.emit(Event::StepFinished {
            step: Step::Render.into(),
            ok: objects.is_ok(),
            millis: rendering.elapsed().as_millis() as u64,
            message: match &objects {
                Ok(set) => format!("{} objects", set.len()),
                Err(e) => e.to_string(),
            },
        });
        let objects = objects?;
        self.renderer()
            .check_references(&objects, &pinned, Stage::BeforeDeploy)?;

        // Pull secrets before anything is applied (see `pull_secret`).
        let pull_secret = req
            .pull_secret
            .as_deref()
            .or(env.deploy.pull_secret.as_deref());
        let (objects, ensured) = crate::pull_secret::PullSecrets {
            cluster: &self.cluster,
            registry: &self.build.registry,
            namespace,
            pushed_hosts: crate::pull_secret::hosts_of(pinned.values()),
            pull_secret,
            node_credentials: env.deploy.node_credentials,
        }
        .ensure(objects)
        .await
        .map_err(Box::new)?;
        if let Some(line) = ensured.summary("berth's") {
            self.say(Level::Info, line);
        }

        let deployer = Deployer::new(self.cluster.clone(), self.sink.clone());
        let request = DeployRequest {
            release: release.to_string(),
            namespace: namespace.to_string(),
            objects,
            images: pinned,
            commit,
            user: req.user.clone(),
            timeout: env.deploy.timeout,
            rollback: env.deploy.rollback,
            force_conflicts: req.force_conflicts,
            lock: req.lock.clone(),
            history_max: req.history_max,
            canary: env.canary.clone(),
        };
        // The environment's data step runs under the release's lock, held on into the deploy:
        // no other deploy of the environment runs while its data is replaced.
        let held = match &env.data {
            None => None,
            Some(data) => {
                // The point of no return: from here the run ends on its own.
                req.cancel.enter(if data.clone.is_some() {
                    Step::DataClone
                } else {
                    Step::DataCopy
                })?;
                let lock = deployer.lock(&request).await.map_err(Box::new)?;
                let data =
                    crate::data_step::run(&self.cluster, env, namespace, self.sink.clone()).await;
                if let Err(e) = data {
                    if let Err(unlock) = lock.release().await {
                        self.say(
                            Level::Warning,
                            format!("releasing the lock after the data step failed: {unlock}"),
                        );
                    }
                    return Err(RunError::Data(e));
                }
                Some(lock)
            }
        };

        req.cancel.enter(Step::Deploy)?;
        let deploying = std::time::Instant::now();
        self.sink.emit(Event::StepStarted {
            step: Step::Deploy.into(),
        });
        let outcome = match held {
            Some(lock) => deployer.deploy_holding(request, lock).await,
            None => deployer.deploy(request).await,
        };
        self.sink.emit(Event::StepFinished {
            step: Step::Deploy.into(),
            ok: outcome.is_ok(),
            millis: deploying.elapsed().as_millis() as u64,
            message: match &outcome {
                Ok(DeployOutcome::Deployed { revision, .. }) => format!("revision {revision}"),
                Ok(DeployOutcome::Unchanged { revision }) => {
                    format!("unchanged, revision {revision}")
                }
                Err(e) => e.to_string(),
            },
        });
        Ok(outcome.map_err(Box::new)?)
    }

    /// Builds and tests `services` (at most `jobs` at once), then pushes them all; returns
    /// service -> `repo@digest`. See the module docs for the two passes.
    async fn build_all(
        &self,
        services: &[&Service],
        commit: Option<&str>,
        jobs: NonZeroUsize,
        cancel: &CancelToken,
    ) -> Result<BTreeMap<String, String>, RunError> {
        if services.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut planned = Vec::new();
        for s in services {
            planned.push(Arc::new(self.job(s, commit)?));
        }
        if planned.len() > 1 {
            self.say(
                Level::Info,
                format!(
                    "building {} services, at most {jobs} at once",
                    planned.len()
                ),
            );
        }
        // One service without tests: its build is the whole run's, so it may push at once.
        if let [job] = planned.as_slice()
            && job.test.is_none()
        {
            let image = job.build_and_push(&job.sink).await?;
            return Ok(BTreeMap::from([(job.service.clone(), image)]));
        }
        let tested = run_bounded(&planned, jobs, |job| async move {
            job.build_and_test().await.map(|_| ())
        })
        .await;
        if let Err((service, e)) = tested {
            if planned.len() > 1 {
                self.say(
                    Level::Error,
                    format!(
                        "{service} failed: builds still running were stopped; nothing was pushed"
                    ),
                );
            }
            return Err(e);
        }
        cancel.enter(Step::Push)?;
        let mut out = BTreeMap::new();
        let pushed = run_bounded(&planned, jobs, |job| async move { job.push().await }).await;
        for (service, image) in pushed.map_err(|(_, e)| e)? {
            out.insert(service, image);
        }
        Ok(out)
    }

    /// What building `s` takes, owned, so that it can run on its own task.
    fn job(&self, s: &Service, commit: Option<&str>) -> Result<BuildJob, RunError> {
        let b = s.build.as_ref().expect("only built services are built");
        let tag = commit
            .map(|c| c.chars().take(12).collect::<String>())
            .unwrap_or_else(|| "latest".into());
        let target: ImageRef = s
            .image
            .as_ref()
            .expect("a built service has an image repository")
            .with_tag(&tag)
            .map_err(|e| RunError::Image(format!("service `{}`: {e}", s.name)))?;
        let context = self.config.path(&b.context);
        let dockerfile = match &b.dockerfile {
            Some(d) => Some(context.join(d)),
            None if context.join("Dockerfile").exists() => None,
            None => Some(self.detected_dockerfile(s, &context)?),
        };
        let request = BuildRequest {
            dockerfile,
            context,
            target: b.target.clone(),
            build_args: b.args.clone(),
            platform: None,
            tags: vec![target.clone()],
            push: true,
            oci_dest: None,
        };
        let mut opts = self.build.clone();
        opts.sandbox = self
            .build
            .sandbox
            .for_repo(&sandbox_request(&self.config, s))
            .map_err(|reason| RunError::Sandbox {
                file: self.config.file.clone(),
                location: s.location,
                service: s.name.clone(),
                reason,
            })?;
        Ok(BuildJob {
            service: s.name.clone(),
            test: s.test.as_ref().map(|t| t.command.clone()),
            target,
            request,
            opts,
            executor: self.executor.clone(),
            sink: Arc::new(ForService::new(&s.name, self.sink.clone())),
            push_sink: Arc::new(PushPass(Arc::new(
                ForService::new(&s.name, self.sink.clone()).renaming(&[(Step::Build, Step::Push)]),
            ))),
        })
    }

    /// Buildpack-style: detects the stack of a context without a Dockerfile and writes the
    /// Dockerfile to build it with next to berth's store, not into the user's tree.
    fn detected_dockerfile(&self, s: &Service, context: &Path) -> Result<PathBuf, RunError> {
        let base = match &s.build.as_ref().and_then(|b| b.base.clone()) {
            Some(img) => crate::detect::Base::Debian(img.clone()),
            None => crate::detect::Base::Default,
        };
        let detection = crate::detect::detect(context, &base)
            .map_err(|e| RunError::Image(format!("service `{}`: {e}", s.name)))?
            .ok_or_else(|| {
                RunError::Image(format!(
                    "service `{}`: {} has no Dockerfile and no stack berth recognises (Node, \
                     Python, Ruby, static site, prebuilt binary); add a Dockerfile",
                    s.name,
                    context.display()
                ))
            })?;
        self.say(
            Level::Info,
            format!(
                "{}: no Dockerfile; detected {:?} from {} (base {})",
                s.name,
                detection.detector,
                detection.evidence.display(),
                detection.base_image
            ),
        );
        crate::detect::write_detected(&self.build.store, &s.name, &detection.dockerfile).map_err(
            |e| RunError::Image(format!("service `{}`: writing its Dockerfile: {e}", s.name)),
        )
    }
}

/// The render step, which needs berth.yaml only: used by runs (before the builds with
/// placeholder digests, after them with the pushed ones) and by `berth render`.
pub struct Renderer<'a> {
    /// The project.
    pub config: &'a Config,
}

impl Renderer<'_> {
    /// What `berth render -c berth.yaml` shows: every service rendered for `env` as a run
    /// would deploy it, each built image pinned to a [`placeholder`] digest in its pushed
    /// repository, and checked as a run checks before its builds (every built image
    /// referenced).
    pub fn preview(
        &self,
        env: &Environment,
        namespace: &str,
        tools: &Tools,
    ) -> Result<ObjectSet, RunError> {
        let planned: BTreeMap<String, String> = self
            .config
            .services
            .iter()
            .filter(|s| s.build.is_some())
            .map(|s| {
                let key = repository(s);
                let p = placeholder(&key);
                (key, p)
            })
            .collect();
        let set = self.render_all(env, namespace, &planned, tools)?;
        self.check_references(&set, &planned, Stage::BeforeBuild)?;
        Ok(set)
    }

    /// Every built service whose image is in `pinned` must be referenced by some rendered
    /// object, pinned: otherwise the manifests would deploy some other image (a stale public
    /// `team/web`, a hand-written tag) while berth reports the build as deployed.
    fn check_references(
        &self,
        objects: &ObjectSet,
        pinned: &BTreeMap<String, String>,
        stage: Stage,
    ) -> Result<(), RunError> {
        let refs: Vec<ImageRef> = pinned.values().filter_map(|p| p.parse().ok()).collect();
        for s in self.config.services.iter().filter(|s| s.build.is_some()) {
            let key = repository(s);
            let Some(mine) = pinned.get(&key).and_then(|p| p.parse::<ImageRef>().ok()) else {
                continue;
            };
            if objects.references(&mine) {
                continue;
            }
            // What the objects do name, other than the other services' pinned images.
            let mut found: Vec<String> = objects
                .image_references()
                .into_iter()
                .map(|u| u.image)
                .filter(|i| {
                    !refs
                        .iter()
                        .any(|r| berth_render::images::is_same_pinned(i, r))
                })
                .collect();
            found.sort();
            found.dedup();
            let wanted = match &s.naming {
                ImageNaming::ManifestName(n) => n.clone(),
                _ => key.clone(),
            };
            let closest = found
                .iter()
                .min_by_key(|f| berth_config::suggest::distance(strip_tag(f), &wanted))
                .cloned();
            let helm = match &s.manifests {
                Some(Manifests::Helm(h)) => Some(
                    self.helm_image_overrides(h, &mine)
                        .map(|(how, set)| format!("{how}: berth set {}", set.join(", ")))
                        .unwrap_or_else(|| {
                            "berth found no image values in the chart's values.yaml".into()
                        }),
                ),
                _ => None,
            };
            return Err(RunError::Unreferenced(Box::new(Unreferenced {
                service: s.name.clone(),
                image: wanted,
                pushed: key,
                found,
                closest,
                helm,
                stage,
            })));
        }
        Ok(())
    }

    /// The `--set` overrides that make `h` compose `pinned`, and where their paths came from:
    /// `helm.image-values`, or the layout detected in the chart's (or a values file's) values.
    fn helm_image_overrides(
        &self,
        h: &berth_config::Helm,
        pinned: &ImageRef,
    ) -> Option<(String, Vec<String>)> {
        let (how, paths) = match &h.image_values {
            Some(v) => (
                format!("helm.image-values of {}", self.config.file),
                ImageValuePaths {
                    image: v.image.clone(),
                    registry: v.registry.clone(),
                    repository: v.repository.clone(),
                    tag: v.tag.clone(),
                    digest: v.digest.clone(),
                },
            ),
            None => {
                let chart_values = self.config.path(Path::new(&h.chart)).join("values.yaml");
                std::iter::once(chart_values)
                    .chain(h.values.iter().map(|v| self.config.path(v)))
                    .find_map(|file| {
                        let text = std::fs::read_to_string(&file).ok()?;
                        let origin = file.display().to_string();
                        let docs = berth_render::yaml::parse_yaml_values(&text, &origin).ok()?;
                        let found = ImageValuePaths::detect(&docs.first()?.0)?;
                        Some((format!("detected in {origin}"), found))
                    })?
            }
        };
        Some((how, paths.overrides(pinned)))
    }

    /// Every service's objects, rendered with the pinned images.
    fn render_all(
        &self,
        env: &Environment,
        namespace: &str,
        pinned: &BTreeMap<String, String>,
        tools: &Tools,
    ) -> Result<ObjectSet, RunError> {
        let mut objects = ObjectSet::new();
        for s in &self.config.services {
            let Some(m) = &s.manifests else { continue };
            // A manifests-only service has no image of its own: its templates see no `image`.
            let image = s.image.as_ref().map(|i| {
                pinned
                    .get(&i.name())
                    .cloned()
                    .unwrap_or_else(|| i.to_string())
            });
            let set = self
                .render_service(s, m, env, namespace, image.as_deref(), pinned, tools)
                .map_err(|source| RunError::Render {
                    service: s.name.clone(),
                    source: Box::new(source),
                })?;
            for o in set.into_objects() {
                objects.insert(o).map_err(|source| RunError::Render {
                    service: s.name.clone(),
                    source: Box::new(source.into()),
                })?;
            }
        }
        Ok(objects)
    }

    #[allow(clippy::too_many_arguments)]
    fn render_service(
        &self,
        s: &Service,
        m: &Manifests,
        env: &Environment,
        namespace: &str,
        image: Option<&str>,
        pinned: &BTreeMap<String, String>,
        tools: &Tools,
    ) -> Result<ObjectSet, berth_render::RenderError> {
        let mut images = ImageMap::new();
        for (name, reference) in pinned {
            images.insert(name, reference)?;
        }
        // Services named by the name their manifests use (`image: team/web`): that name, with
        // any tag, is their pushed image too.
        for other in &self.config.services {
            if let (ImageNaming::ManifestName(name), Some(repo)) = (&other.naming, &other.image)
                && let Some(reference) = pinned.get(&repo.name())
                && repo.name()
                    != name
                        .parse::<ImageRef>()
                        .map(|r| r.name())
                        .unwrap_or_default()
            {
                images.insert(name, reference)?;
            }
        }
        let mut values = serde_json::Map::new();
        let mut aliases = BTreeMap::new();
        let source: Vec<ManifestSource> = match m {
            Manifests::Path {
                paths: p,
                values: v,
                vars,
            } => {
                values.extend(v.clone());
                aliases.clone_from(vars);
                p.iter()
                    .map(|x| ManifestSource::Path(self.config.path(x)))
                    .collect()
            }
            Manifests::Template {
                paths: p,
                values: v,
                vars,
                ..
            } => {
                values.extend(v.clone());
                aliases.clone_from(vars);
                p.iter()
                    .map(|x| ManifestSource::Template(self.config.path(x)))
                    .collect()
            }
            Manifests::Kustomize { dir } => vec![ManifestSource::Kustomize(self.config.path(dir))],
            Manifests::Helm(h) => vec![ManifestSource::Helm(HelmChart {
                release: h.release.clone(),
                chart: if Path::new(&h.chart).is_relative()
                    && self.config.path(Path::new(&h.chart)).exists()
                {
                    self.config.path(Path::new(&h.chart)).display().to_string()
                } else {
                    h.chart.clone()
                },
                namespace: namespace.into(),
                version: h.version.clone(),
                values_files: h.values.iter().map(|v| self.config.path(v)).collect(),
                // The built image, composed by the chart from values berth sets: after the
                // user's overrides, so that the pushed digest wins.
                set: h
                    .set
                    .iter()
                    .cloned()
                    .chain(
                        image
                            .filter(|_| s.build.is_some())
                            .and_then(|i| i.parse::<ImageRef>().ok())
                            .and_then(|i| self.helm_image_overrides(h, &i))
                            .map(|(_, set)| set)
                            .unwrap_or_default(),
                    )
                    .collect(),
            })],
        };
        let mut merged = serde_json::Value::Object(values);
        berth_render::values::merge(&mut merged, serde_json::Value::Object(env.values.clone()));
        // Confined to the directory of berth.yaml, the repository as validation knows it: what
        // lies inside manifests directories, kustomizations and charts is checked here.
        let ctx = RenderContext::new(merged)
            .with_images(images.clone())
            .with_root(&self.config.dir)
            .with_aliases(aliases)
            .with_values_origin(format!(
                "{}:{} (service `{}`: `manifests.values`, with environment `{}`'s `values` merged over them)",
                self.config.file, s.location.line, s.name, env.name
            ));
        let ctx = match image {
            Some(image) => ctx.with_service(&s.name, image),
            None => ctx.with_service_name(&s.name),
        }
        .with_env(&env.name, namespace);
        let mut set = berth_render::load(&source, &ctx, tools)?;
        set.substitute_images(&images);
        Ok(set)
    }
}

/// The default number of parallel builds: the cores this process may use.
pub fn default_jobs() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// Runs `work` on every job, each on its own task, at most `jobs` at once. Returns the
/// results keyed by service, or the first failure (by time), after aborting the tasks still
/// running and waiting until they are gone (their child processes are killed on drop), so
/// that nothing of theirs runs on once the caller moves on.
async fn run_bounded<J, T, F, Fut>(
    planned: &[J],
    jobs: NonZeroUsize,
    work: F,
) -> Result<BTreeMap<String, T>, (String, RunError)>
where
    J: Named + Clone,
    T: Send + 'static,
    F: Fn(J) -> Fut,
    Fut: std::future::Future<Output = Result<T, RunError>> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(jobs.get()));
    let mut set = tokio::task::JoinSet::new();
    for job in planned {
        let permits = permits.clone();
        let service = job.name().to_string();
        let fut = work(job.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            (service, fut.await)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        let (service, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err((
                    "a build".into(),
                    RunError::Image(format!("a build task failed: {e}")),
                ));
            }
        };
        match result {
            Ok(v) => {
                out.insert(service, v);
            }
            Err(e) => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err((service, e));
            }
        }
    }
    Ok(out)
}

/// What [`run_bounded`] keys results by.
trait Named {
    fn name(&self) -> &str;
}

impl Named for Arc<BuildJob> {
    fn name(&self) -> &str {
        &self.service
    }
}

/// Passes the publishing build's messages on and drops its step events: [`BuildJob::push`]
/// reports the step itself, with what was pushed.
struct PushPass(Arc<dyn EventSink>);

impl EventSink for PushPass {
    fn emit(&self, event: Event) {
        if !matches!(
            event,
            Event::StepStarted { .. } | Event::StepFinished { .. }
        ) {
            self.0.emit(event);
        }
    }
}

/// One service's build, owned by its task.
struct BuildJob {
    service: String,
    test: Option<String>,
    target: ImageRef,
    request: BuildRequest,
    opts: BuildOptions,
    executor: Arc<dyn StepExecutor>,
    /// Events attributed to the service.
    sink: Arc<dyn EventSink>,
    /// The same, for the publishing pass: its messages belong to the service's `push` step,
    /// its own `build` step events are dropped (the pass is reported as `push`).
    push_sink: Arc<dyn EventSink>,
}

impl BuildJob {
    fn say(&self, message: String) {
        self.sink.emit(Event::Message {
            step: Step::Build.into(),
            level: Level::Info,
            message,
        });
    }

    /// Builds into the local store (nothing is pushed) and runs the service's tests in it.
    async fn build_and_test(&self) -> Result<berth_types::Digest, RunError> {
        self.say(format!("building {} -> {}", self.service, self.target));
        let local = BuildRequest {
            tags: Vec::new(),
            push: false,
            ..self.request.clone()
        };
        let image = self
            .executor
            .build(&self.opts, &local, self.sink.as_ref())
            .await
            .map_err(|source| RunError::Build {
                service: self.service.clone(),
                source: Box::new(source),
            })?;
        if let Some(test) = &self.test {
            let started = std::time::Instant::now();
            self.sink.emit(Event::StepStarted {
                step: Step::Test.into(),
            });
            let result = self
                .executor
                .test(
                    &self.opts,
                    &self.service,
                    test,
                    &image.manifest_digest,
                    self.sink.clone(),
                )
                .await;
            self.sink.emit(Event::StepFinished {
                step: Step::Test.into(),
                ok: result.is_ok(),
                millis: started.elapsed().as_millis() as u64,
                message: match &result {
                    Ok(()) => format!("`{test}` passed"),
                    Err(e) => e.to_string(),
                },
            });
            result?;
        }
        Ok(image.manifest_digest)
    }

    /// Pushes the image built by [`BuildJob::build_and_test`]: the same build again (every step
    /// a cache hit) with its tag, so that base layers are mounted across repositories.
    async fn push(&self) -> Result<String, RunError> {
        let started = std::time::Instant::now();
        self.sink.emit(Event::StepStarted {
            step: Step::Push.into(),
        });
        let result = self.build_and_push(&self.push_sink).await;
        self.sink.emit(Event::StepFinished {
            step: Step::Push.into(),
            ok: result.is_ok(),
            millis: started.elapsed().as_millis() as u64,
            message: match &result {
                Ok(image) => format!("pushed {image}"),
                Err(e) => e.to_string(),
            },
        });
        result
    }

    /// The build with its tag, pushed; returns `repo@digest`.
    async fn build_and_push(&self, sink: &Arc<dyn EventSink>) -> Result<String, RunError> {
        let image = self
            .executor
            .build(&self.opts, &self.request, sink.as_ref())
            .await
            .map_err(|source| RunError::Build {
                service: self.service.clone(),
                source: Box::new(source),
            })?;
        Ok(format!("{}@{}", self.target.name(), image.manifest_digest))
    }
}

/// A built service whose image no rendered object references ([`RunError::Unreferenced`]).
#[derive(Debug)]
pub struct Unreferenced {
    /// The service.
    pub service: String,
    /// Its image as the manifests should name it.
    pub image: String,
    /// The repository it is pushed to.
    pub pushed: String,
    /// The image references the rendered objects hold (other services' aside).
    pub found: Vec<String>,
    /// The one closest to `image` by name.
    pub closest: Option<String>,
    /// For a Helm chart: which values berth set, or that it found none.
    pub helm: Option<String>,
    /// When it was found.
    pub stage: Stage,
}

impl std::fmt::Display for Unreferenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Unreferenced {
            service,
            image,
            pushed,
            found,
            closest,
            helm,
            stage,
        } = self;
        let mut m =
            format!("service `{service}`: no rendered object references its built image `{image}`");
        if image != pushed {
            m.push_str(&format!(" (pushed to `{pushed}`)"));
        }
        m.push_str(&format!("; {stage}. "));
        if found.is_empty() {
            m.push_str("The rendered objects name no image at all. ");
        } else {
            let list: Vec<String> = found.iter().map(|f| format!("`{f}`")).collect();
            m.push_str(&format!(
                "Image references in the rendered objects: {}",
                list.join(", ")
            ));
            if let Some(c) = closest {
                m.push_str(&format!("; the closest is `{c}`"));
                if c.contains('@') {
                    m.push_str(" (a reference with a digest is left as written: drop the digest)");
                }
            }
            m.push_str(". ");
        }
        if let Some(h) = helm {
            m.push_str(&format!("({h}.) "));
        }
        m.push_str(&format!(
            "Name the image `{image}` (any tag) in a container or a custom resource's `image` \
             field, write `{{{{ image }}}}` in a template"
        ));
        if helm.is_some() {
            m.push_str(
                ", or map the chart values that compose it with `helm.image-values: {repository: ..., tag: ...}`",
            );
        }
        f.write_str(&m)
    }
}

/// When [`RunError::Unreferenced`] was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// In the render with placeholder digests, before any build.
    BeforeBuild,
    /// In the render with the pushed digests, before anything was applied.
    BeforeDeploy,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::BeforeBuild => "nothing was built or pushed",
            Stage::BeforeDeploy => "nothing was deployed",
        })
    }
}

/// A digest no image has (all zeros): stands for an image not built yet, in the render before
/// the builds and in `berth render`.
pub fn placeholder(repository: &str) -> String {
    format!("{repository}@sha256:{:064}", 0)
}

/// `name` of `name:tag` or `name@digest`.
fn strip_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => &image[..last_slash + i],
        None => image,
    }
}

/// A built service's repository (validation gives every built service one).
fn repository(s: &Service) -> String {
    s.image
        .as_ref()
        .expect("a built service has an image repository")
        .name()
}

/// The environment variable-free defaults for a run's lock.
pub fn default_lock(holder: String) -> LockOptions {
    LockOptions {
        ttl: Duration::from_secs(30),
        wait: Duration::from_secs(120),
        holder,
    }
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    #[test]
    fn names_are_compared_without_tag_or_digest() {
        assert_eq!(strip_tag("team/web:v1"), "team/web");
        assert_eq!(
            strip_tag("127.0.0.1:5000/team/web"),
            "127.0.0.1:5000/team/web"
        );
        assert_eq!(
            strip_tag("127.0.0.1:5000/web:1@sha256:ab"),
            "127.0.0.1:5000/web"
        );
        assert_eq!(
            placeholder("r.io/web"),
            format!("r.io/web@sha256:{}", "0".repeat(64))
        );
        assert!(placeholder("r.io/web").parse::<ImageRef>().is_ok());
    }

    #[test]
    fn an_unreferenced_image_names_what_was_found_and_the_closest() {
        let e = RunError::Unreferenced(Box::new(Unreferenced {
            service: "web".into(),
            image: "team/web".into(),
            pushed: "r.io/shop/team/web".into(),
            found: vec!["busybox".into(), "teams/web:1".into()],
            closest: Some("teams/web:1".into()),
            helm: Some(
                "detected in chart/values.yaml: berth set image.repository=r.io/shop/team/web"
                    .into(),
            ),
            stage: Stage::BeforeBuild,
        }))
        .to_string();
        for part in [
            "service `web`: no rendered object references its built image `team/web` (pushed to `r.io/shop/team/web`); nothing was built or pushed",
            "`busybox`, `teams/web:1`; the closest is `teams/web:1`",
            "(detected in chart/values.yaml: berth set image.repository=r.io/shop/team/web.)",
            "`{{ image }}`",
            "helm.image-values",
        ] {
            assert!(e.contains(part), "{part}\n{e}");
        }
        let pinned_by_hand = RunError::Unreferenced(Box::new(Unreferenced {
            service: "web".into(),
            image: "team/web".into(),
            pushed: "r.io/shop/team/web".into(),
            found: vec![format!("team/web@sha256:{}", "1".repeat(64))],
            closest: Some(format!("team/web@sha256:{}", "1".repeat(64))),
            helm: None,
            stage: Stage::BeforeDeploy,
        }))
        .to_string();
        for part in [
            "nothing was deployed",
            "(a reference with a digest is left as written: drop the digest)",
        ] {
            assert!(pinned_by_hand.contains(part), "{part}\n{pinned_by_hand}");
            assert!(
                !pinned_by_hand.contains("helm.image-values"),
                "{pinned_by_hand}"
            );
        }
    }
}

#[cfg(test)]
mod bounded_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Clone)]
    struct Job(&'static str, u64, bool);

    impl Named for Job {
        fn name(&self) -> &str {
            self.0
        }
    }

    /// Counts tasks alive; a task dropped before its end (aborted) still leaves.
    struct Alive(Arc<AtomicUsize>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn go(
        jobs: &[Job],
        limit: usize,
    ) -> (
        Result<BTreeMap<String, u64>, (String, RunError)>,
        usize,
        usize,
    ) {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let (r, p, f) = (running.clone(), peak.clone(), finished.clone());
        let result = run_bounded(jobs, NonZeroUsize::new(limit).unwrap(), move |job| {
            let (running, peak, finished) = (r.clone(), p.clone(), f.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                let _alive = Alive(running.clone());
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(job.1)).await;
                if job.2 {
                    return Err(RunError::Image(format!("{} broke", job.0)));
                }
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(job.1)
            }
        })
        .await;
        assert_eq!(
            running.load(Ordering::SeqCst),
            0,
            "no task outlives the call"
        );
        (
            result,
            peak.load(Ordering::SeqCst),
            finished.load(Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn builds_run_at_most_jobs_at_once_and_results_are_keyed_by_service() {
        let jobs = [
            Job("mens", 30, false),
            Job("home", 10, false),
            Job("kids", 20, false),
            Job("ladies", 5, false),
        ];
        let (result, peak, finished) = go(&jobs, 2).await;
        assert_eq!(peak, 2);
        assert_eq!(finished, 4);
        let result = result.ok().unwrap();
        let order: Vec<&str> = result.keys().map(String::as_str).collect();
        assert_eq!(order, ["home", "kids", "ladies", "mens"]);
        assert_eq!(result["mens"], 30);
        let (_, peak, _) = go(&jobs, 8).await;
        assert_eq!(peak, 4);
    }

    #[tokio::test]
    async fn the_first_failure_stops_the_builds_still_running() {
        let jobs = [
            Job("home", 1000, false),
            Job("kids", 10, true),
            Job("mens", 1000, false),
            Job("ladies", 1000, false),
        ];
        let (result, _, finished) = go(&jobs, 3).await;
        let (service, error) = result.err().unwrap();
        assert_eq!(service, "kids");
        assert!(error.to_string().contains("kids broke"), "{error}");
        assert_eq!(finished, 0, "the others were stopped, not waited for");
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// `berth serve` spawns runs on its multi-threaded runtime: the engine's futures must be
    /// `Send`. A compile-time check; it never runs anything.
    #[test]
    fn run_promote_and_data_futures_are_send() {
        let _ = |p: &Pipeline, req: RunRequest| assert_send(&p.run(req));
        let _ = |p: &Pipeline, req: RunRequest| assert_send(&p.promote("staging", None, req));
        let _ = |p: &Pipeline, env: &Environment| {
            assert_send(&crate::data_step::run(
                &p.cluster,
                env,
                "ns",
                p.sink.clone(),
            ));
        };
    }
}
