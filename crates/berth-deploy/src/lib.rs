//! berth's deploy engine: put a rendered set of objects into an environment's namespace, prove
//! it came up, and undo it cleanly when it did not.
//!
//! One deploy, in order:
//!
//! 1. **Lock** the release ([`lock`]: a Lease with a TTL, renewed while working).
//! 2. **History** ([`release`]): the live revision, the next number; records left `pending` by
//!    a killed process are marked `interrupted`.
//! 3. **Plan** ([`plan`]): hooks apart, content hash; if it equals the live revision's and
//!    every object is live and ready, nothing is applied (`Unchanged`).
//! 4. **Preflight** ([`preflight`]): discovery of every kind (CRDs of the set count), then a
//!    server-side dry-run apply of every object; if anything would be refused, every refusal
//!    is reported together (object, file:line, the API server's message) and nothing is
//!    applied or recorded.
//! 5. Record the new revision as `pending`, then run **pre-deploy hooks** (Jobs, re-created each
//!    time) and wait for them; a failed pre-hook stops before any workload changes.
//! 6. **Apply** with server-side apply (field manager `berth`) phase by phase — Namespaces,
//!    CRDs (waited until Established), access, config, storage, Services, workloads, exposure,
//!    custom resources — objects of one phase in parallel.
//! 7. **Track** readiness by watches ([`track`]), with live diagnosis of the release's pods.
//! 8. **Post-deploy hooks**, then **prune** objects the previous revisions had and this one does
//!    not (only objects labelled as this release's — and, if cluster-scoped, this namespace's),
//!    then record `deployed` (one write: the commit point, see [`release`]), then mark the
//!    previous one `superseded` and drop records beyond `history_max`.
//! 9. On failure: **roll back** to the live revision (re-apply its recorded objects, delete what
//!    the failed one added), or remove a failed first install (no record at all before it);
//!    record `failed` with the diagnosis; return an error that carries it. `rollback: false`
//!    keeps the failure in place.
//!
//! A lost lock ([`lock`]) stops the deploy where it is: nothing more is applied, pruned,
//! rolled back or recorded, since another process now owns the release.
//!
//! The engine never prints: it reports [`berth_types::Event`]s to an [`EventSink`].
//!
//! **Test-only crash points.** When the environment variable `BERTH_TEST_CRASH_AT` names one
//! of [`CRASH_POINTS`], the process aborts (`std::process::abort`: no destructor, no lock
//! release, like `kill -9`) at that point, so tests can prove that a deploy killed anywhere is
//! recovered by the next one. Unset (always, outside berth's own tests) it does nothing.

pub mod canary;
pub mod diff;
pub mod heartbeat;
pub mod lock;
pub mod plan;
pub mod preflight;
pub mod release;
mod steps;
pub mod track;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cluster::{Cluster, ClusterError, ObjectKey};
use berth_objects::{ObjectError, ObjectSet, Ownership, deploy_order};
use berth_types::{EventSink, Level, State};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use serde_json::Value;

pub use lock::{Lock, LockOptions};
pub use preflight::Refusal;
pub use release::{History, Release, SeedRun, Status};
pub use steps::{ClusterObjects, Held};
pub use track::Failure;

use crate::plan::{HookWhen, Recovery, hook_of, key_of};
use crate::steps::Steps;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "berth";

/// How many objects of one phase are applied at once.
const PARALLEL_APPLIES: usize = 8;

/// The points where `BERTH_TEST_CRASH_AT` aborts a deploy (see the [crate docs](crate)):
/// after the pending record is written and before anything is applied; after the first phase
/// of objects is applied; while tracking readiness; while post-deploy hooks run; after pruning;
/// between writing the new `deployed` record and superseding the old one; during a rollback,
/// after the old objects are re-applied; in a canary, once its first weight step is reached.
pub const CRASH_POINTS: &[&str] = &[
    "before-apply",
    "mid-apply",
    "tracking",
    "hooks",
    "pruning",
    "recording",
    "rollback",
    "canary",
];

/// Runs `futures`, at most `n` at once; results in completion order.
///
/// The futures come boxed (`.boxed()`, which also proves each one `Send`) so that the caller
/// holds no closure type across its await: rustc cannot prove a stream of closures over
/// borrowed items `Send` for every lifetime ("implementation of `FnOnce` is not general
/// enough", rust-lang/rust#110338), and `berth serve` spawns deploys on its multi-threaded
/// runtime.
pub(crate) async fn at_most<T>(n: usize, futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    futures::stream::iter(futures)
        .buffer_unordered(n)
        .collect()
        .await
}

/// Aborts the process if `BERTH_TEST_CRASH_AT` names `point` (test-only; inert unless set).
pub(crate) fn crash_point(point: &str) {
    debug_assert!(CRASH_POINTS.contains(&point));
    if std::env::var_os("BERTH_TEST_CRASH_AT").is_some_and(|p| p == point) {
        std::process::abort();
    }
}

/// Everything that can stop a deploy.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The cluster refused or failed a call.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The objects could not be prepared (ownership labels, namespaces).
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// A release record could not be read or written.
    #[error("release history: {0}")]
    Record(String),
    /// Another deploy holds the release's lock.
    #[error(
        "release `{release}` in namespace `{namespace}` is being deployed by {holder} (lock renewed \
         {renewed}, expires {ttl}s after its last renewal). Wait for it to finish, or raise \
         --lock-timeout; a lock left by a killed process frees itself after {ttl}s"
    )]
    Locked {
        /// Release name.
        release: String,
        /// Namespace.
        namespace: String,
        /// Who holds it.
        holder: String,
        /// Its last renewal.
        renewed: String,
        /// Its TTL in seconds.
        ttl: i64,
    },
    /// An object carries an unknown hook annotation value.
    #[error("{object} has annotation berth.dev/hook: `{value}`; use `pre-deploy` or `post-deploy`")]
    BadHook {
        /// `Kind/name`.
        object: String,
        /// What it said.
        value: String,
    },
    /// An object carries an unknown `berth.dev/hook-run` value.
    #[error("{object} has annotation berth.dev/hook-run: `{value}`; use `once` or `always`")]
    BadHookRun {
        /// `Kind/name (file:line)`.
        object: String,
        /// What it said.
        value: String,
    },
    /// An object carries an unreadable `berth.dev/timeout` annotation.
    #[error("{object} has annotation berth.dev/timeout: `{value}`: {reason}")]
    BadTimeout {
        /// `Kind/name (file:line)`.
        object: String,
        /// What it said.
        value: String,
        /// Why it is not a duration, and how to write one.
        reason: String,
    },
    /// A pre-deploy hook failed; nothing else was changed.
    #[error("revision {revision}: pre-deploy hook failed, nothing else was changed — {failure}")]
    PreHookFailed {
        /// The revision that was attempted.
        revision: u64,
        /// What failed.
        failure: Failure,
    },
    /// The deploy failed and the environment was rolled back.
    #[error("revision {revision} failed and was rolled back to revision {to} — {failure}")]
    RolledBack {
        /// The failed revision.
        revision: u64,
        /// The revision live again.
        to: u64,
        /// What failed.
        failure: Failure,
    },
    /// The canary was aborted (a check failed, a pause timed out, or a person aborted it): its
    /// pods were removed and the previous revision serves every pod again.
    #[error(
        "revision {revision} was aborted at its canary and revision {to} serves every pod again \
         — {failure}"
    )]
    Aborted {
        /// The aborted revision.
        revision: u64,
        /// The revision live again.
        to: u64,
        /// Why, with the check's evidence.
        failure: Failure,
    },
    /// `berth promote --resume` found no canary waiting at a pause.
    #[error(
        "release `{release}` in namespace `{namespace}` has no canary paused for an answer \
         ({canaries} canary Deployment(s) live); `berth history` shows where its last deploy \
         stands"
    )]
    NotPaused {
        /// Release.
        release: String,
        /// Namespace.
        namespace: String,
        /// How many canary Deployments there are.
        canaries: usize,
    },
    /// A canary check's pattern does not compile (berth.yaml's check should have refused it).
    #[error("canary check: `{pattern}` is not a regular expression: {reason}")]
    BadCheck {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// The deploy failed and there was nothing to roll back to: the objects it created were
    /// removed.
    #[error("revision {revision} (first install) failed; its objects were removed — {failure}")]
    FirstInstallFailed {
        /// The failed revision.
        revision: u64,
        /// What failed.
        failure: Failure,
    },
    /// The deploy failed and was left in place (`--no-rollback`).
    #[error(
        "revision {revision} failed and was left in place for debugging (--no-rollback) — {failure}"
    )]
    FailedKept {
        /// The failed revision.
        revision: u64,
        /// What failed.
        failure: Failure,
    },
    /// The deploy failed, and so did the rollback.
    #[error(
        "revision {revision} failed — {failure}; rolling back to revision {to} failed too — \
         {rollback}. Inspect the namespace, then `berth rollback --to {to}`"
    )]
    RollbackFailed {
        /// The failed revision.
        revision: u64,
        /// The revision we tried to restore.
        to: u64,
        /// What failed first.
        failure: Failure,
        /// What failed during the rollback.
        rollback: String,
    },
    /// `rollback --to N` named a revision that does not exist or never deployed.
    #[error("release `{release}` has no revision {revision} to roll back to; see `berth history`")]
    NoSuchRevision {
        /// Release.
        release: String,
        /// Asked for.
        revision: u64,
    },
    /// Another process took the lock while we worked, or we could not renew it for its TTL;
    /// the deploy stopped at once.
    #[error(
        "lost the lock on environment `{namespace}` (release `{release}`) to {holder}; berth \
         stopped at once and applied nothing more. Check what it deployed with `berth history`, \
         then deploy again"
    )]
    LostLock {
        /// The environment's namespace.
        namespace: String,
        /// Release name.
        release: String,
        /// Who holds the lock now.
        holder: String,
    },
    /// The preflight found objects the cluster would refuse; nothing was applied or recorded.
    #[error(
        "preflight: {} of {checked} objects would be refused by the cluster; nothing was \
         applied:{}",
        refusals.len(),
        refusals.iter().map(|r| format!("\n  {r}")).collect::<String>()
    )]
    Preflight {
        /// Every refusal, in deploy order.
        refusals: Vec<Refusal>,
        /// How many objects the release has.
        checked: usize,
    },
    /// The deploy failed, and no earlier revision was ever deployed (earlier ones were
    /// interrupted or failed): objects only this revision had were removed, the rest kept.
    #[error(
        "revision {revision} failed and no earlier revision of this release was ever deployed; \
         objects that only it had were removed, objects earlier revisions also had were kept — \
         {failure}"
    )]
    FailedWithoutGoodRevision {
        /// The failed revision.
        revision: u64,
        /// What failed.
        failure: Failure,
    },
}

/// One deploy.
#[derive(Clone)]
pub struct DeployRequest {
    /// Release name (unique in the namespace).
    pub release: String,
    /// The environment's namespace; created if missing.
    pub namespace: String,
    /// Rendered objects, images already pinned, no ownership labels yet.
    pub objects: ObjectSet,
    /// Image digests deployed, for the record.
    pub images: BTreeMap<String, String>,
    /// Source commit.
    pub commit: Option<String>,
    /// Who deploys (user@host).
    pub user: String,
    /// Deadline for the whole rollout (hooks, readiness).
    pub timeout: Duration,
    /// Roll back on failure (default); false keeps the failure for debugging.
    pub rollback: bool,
    /// Take over fields owned by other field managers.
    pub force_conflicts: bool,
    /// Lock settings.
    pub lock: LockOptions,
    /// Release records to keep (0: all); the live one is always kept.
    pub history_max: usize,
    /// Canary steps for Deployments whose pod template changes (see [`canary`]); `None`, or a
    /// first install, moves every pod at once.
    pub canary: Option<berth_types::canary::Canary>,
}

/// How a successful deploy ended.
#[derive(Clone, Debug, PartialEq)]
pub enum DeployOutcome {
    /// A new revision is live.
    Deployed {
        /// Its number.
        revision: u64,
        /// Objects applied.
        applied: usize,
        /// Objects of the previous revision deleted.
        pruned: usize,
    },
    /// The live revision already is what was asked for, and it is ready.
    Unchanged {
        /// The live revision.
        revision: u64,
    },
}

/// The engine: a cluster connection and where events go.
pub struct Deployer {
    cluster: Cluster,
    sink: Arc<dyn EventSink>,
}

impl Deployer {
    /// An engine over `cluster` reporting to `sink`.
    pub fn new(cluster: Cluster, sink: Arc<dyn EventSink>) -> Self {
        Deployer { cluster, sink }
    }

    fn message(&self, level: Level, message: String) {
        steps::message(&self.sink, level, message);
    }

    fn object_state(&self, t0: Instant, object: &str, state: State, message: &str) {
        steps::object_state(&self.sink, t0, object, state, message);
    }

    /// The steps over single objects (see [`steps`]), on this engine's cluster.
    fn steps(&self, t0: Instant) -> Steps<'_, Cluster> {
        Steps {
            cluster: &self.cluster,
            sink: &self.sink,
            t0,
        }
    }

    /// Deploys `req`; see the [crate docs](crate) for the steps.
    pub async fn deploy(&self, req: DeployRequest) -> Result<DeployOutcome, DeployError> {
        Self::check(&req)?;
        let lock = self.lock(&req).await?;
        self.deploy_under(req, lock).await
    }

    /// Takes the release's lock for `req` (creating its namespace first), for a caller that
    /// has work to do under it before the deploy — the engine's data step — and then calls
    /// [`Deployer::deploy_holding`].
    pub async fn lock(&self, req: &DeployRequest) -> Result<Lock, DeployError> {
        self.cluster.ensure_namespace(&req.namespace).await?;
        Lock::acquire(
            &self.cluster,
            &req.namespace,
            &req.release,
            &req.lock,
            &self.sink,
        )
        .await
    }

    /// [`Deployer::deploy`] under a lock the caller took with [`Deployer::lock`]; releases it.
    pub async fn deploy_holding(
        &self,
        req: DeployRequest,
        lock: Lock,
    ) -> Result<DeployOutcome, DeployError> {
        if let Err(e) = Self::check(&req) {
            lock.release().await?;
            return Err(e);
        }
        self.deploy_under(req, lock).await
    }

    /// The checked deploy under `lock`, which it releases; a lock lost meanwhile is the error.
    async fn deploy_under(
        &self,
        req: DeployRequest,
        lock: Lock,
    ) -> Result<DeployOutcome, DeployError> {
        let result = self.deploy_locked(&req, &lock).await;
        let lost = lock.lost_to();
        let lost_error = lost.map(|holder| lock.lost_error(holder));
        lock.release().await?;
        match (result, lost_error) {
            (Ok(_), Some(e)) => Err(e),
            (r, _) => r,
        }
    }

    /// Refuses annotations berth cannot read before anything happens.
    fn check(req: &DeployRequest) -> Result<(), DeployError> {
        for o in req.objects.iter() {
            let object = || format!("{}/{} ({})", o.key().kind, o.key().name, o.source());
            if let Some(value) = plan::invalid_hook_run(o.value()) {
                return Err(DeployError::BadHookRun {
                    object: object(),
                    value,
                });
            }
            if let Some(value) = plan::invalid_hook(o.value()) {
                return Err(DeployError::BadHook {
                    object: object(),
                    value,
                });
            }
            if let Some(t) =
                o.value()["metadata"]["annotations"][track::TIMEOUT_ANNOTATION].as_str()
                && let Err(reason) = berth_types::duration::parse(t)
            {
                return Err(DeployError::BadTimeout {
                    object: object(),
                    value: t.into(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Runs `work` unless the lock is lost first; a loss ends it at once.
    async fn guarded<T>(
        &self,
        lock: &Lock,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, DeployError> {
        lock.check()?;
        tokio::select! {
            out = work => Ok(out),
            holder = lock.lost() => Err(lock.lost_error(holder)),
        }
    }

    async fn deploy_locked(
        &self,
        req: &DeployRequest,
        lock: &Lock,
    ) -> Result<DeployOutcome, DeployError> {
        let t0 = Instant::now();
        let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
        let mut history = History::load(&self.cluster, &req.namespace, &req.release).await?;
        for u in &history.unreadable {
            self.message(
                Level::Warning,
                format!("skipped an unreadable release record: {}", u.error),
            );
        }
        for r in history.releases.iter_mut() {
            if history.superseded_on_read.contains(&r.revision) {
                // A deploy killed after recording its successor: finish its last write.
                release::save(&self.cluster, r).await?;
            }
            if r.status == Status::Pending {
                // We hold the lock, so whoever left this pending is gone.
                r.status = Status::Interrupted;
                r.description = format!("{} (the deploying process stopped)", r.description);
                release::save(&self.cluster, r).await?;
                self.message(
                    Level::Warning,
                    format!(
                        "revision {} was interrupted; marked interrupted",
                        r.revision
                    ),
                );
            }
        }
        // Canary Deployments of a deploy that was killed mid-canary: the stable pods are
        // scaled back by this deploy's apply (or by the unchanged check below failing).
        let leftover = self.remove_canaries(&req.namespace, &req.release).await?;
        if leftover > 0 {
            self.message(
                Level::Warning,
                format!("removed {leftover} canary Deployment(s) left by an interrupted deploy"),
            );
        }
        let preflight_started = Instant::now();
        let discovery = preflight::discover(&self.cluster, &req.objects).await?;
        for w in &discovery.warnings {
            self.message(Level::Warning, w.clone());
        }
        let missing = discovery.missing(&req.objects);
        let hash = plan::content_hash(&req.objects);
        let current = history.current().cloned();
        // What may be live beyond the current revision: objects of revisions after it that
        // were interrupted or kept failed.
        let mut previous: Vec<Value> = current.iter().flat_map(|c| c.objects.clone()).collect();
        for r in &history.releases {
            if current.as_ref().is_none_or(|c| r.revision > c.revision) {
                previous.extend(r.objects.iter().cloned());
            }
        }
        if let Some(cur) = &current
            && leftover == 0
            && missing.is_empty()
            && cur.content_hash == hash
            && self.steps(t0).all_live_and_ready(cur).await?
        {
            self.message(
                Level::Info,
                format!(
                    "revision {} is live and ready; nothing to apply",
                    cur.revision
                ),
            );
            return Ok(DeployOutcome::Unchanged {
                revision: cur.revision,
            });
        }

        let revision = history.last_revision() + 1;
        let mut objects = req.objects.clone();
        let mut owner = Ownership::new(&req.release, revision, &req.namespace);
        if let Some(c) = &req.commit {
            owner = owner.with_commit(c);
        }
        objects.apply_ownership(&owner)?;
        let values: Vec<Value> = objects
            .sorted()
            .into_iter()
            .map(|o| o.value().clone())
            .collect();
        let mut record = Release {
            name: req.release.clone(),
            namespace: req.namespace.clone(),
            revision,
            status: Status::Pending,
            content_hash: hash,
            commit: req.commit.clone(),
            user: req.user.clone(),
            started_at: release::now(),
            finished_at: None,
            description: "deploying".into(),
            images: req.images.clone(),
            objects: values.clone(),
            seeds: Vec::new(),
        };
        let deferred = discovery.deferred();
        self.preflight(
            &objects,
            &discovery,
            missing,
            req.force_conflicts,
            preflight_started,
        )
        .await?;
        release::save(&self.cluster, &record).await?;
        crash_point("before-apply");
        self.message(
            Level::Info,
            format!(
                "deploying revision {revision} of `{}` to namespace `{}` ({} objects)",
                req.release,
                req.namespace,
                values.len()
            ),
        );

        let tracker = track::Tracker {
            cluster: &self.cluster,
            namespace: &req.namespace,
            selector: format!(
                "{}={}",
                berth_objects::ownership::RELEASE_LABEL,
                req.release
            ),
            sink: &self.sink,
            started: t0,
            pods_since: since,
        };
        // A canary's steps may pause for hours: each of its rollouts, and what follows its
        // last step, gets the whole timeout anew (see `canary`).
        let deadline = std::sync::Mutex::new(tokio::time::Instant::now() + req.timeout);
        let remaining = || {
            let until = *deadline.lock().expect("the deadline is never poisoned");
            until.saturating_duration_since(tokio::time::Instant::now())
        };

        // Pre-deploy hooks.
        let pre: Vec<&Value> = values
            .iter()
            .filter(|o| hook_of(o) == Some(HookWhen::PreDeploy))
            .collect();
        // The release's ConfigMaps and Secrets those hooks read go first (see
        // plan::hook_inputs); once they are applied, a failed hook rolls back like any other
        // failure instead of "nothing else was changed".
        let inputs = plan::hook_inputs(&pre, &values);
        // Applies a subset of the release's objects phase by phase and tracks it.
        let apply = async |subset: &[Value]| {
            self.apply_and_track(
                &objects,
                subset,
                &deferred,
                req.force_conflicts,
                &tracker,
                lock,
                t0,
                remaining(),
            )
            .await
        };
        let inputs_applied = if inputs.is_empty() {
            Ok(0)
        } else {
            apply(&inputs).await?
        };
        let pre_run = match inputs_applied {
            Ok(_) => {
                self.run_hooks(
                    &pre,
                    &tracker,
                    lock,
                    t0,
                    remaining(),
                    revision,
                    &mut record.seeds,
                )
                .await?
            }
            Err(failure) => Err(failure),
        };
        // Whether canary Deployments ran, and whether a check (or a person) aborted them.
        let mut canaried = false;
        let mut aborted = false;
        let mut outcome = match pre_run {
            Err(failure) if inputs.is_empty() => {
                record.status = Status::Failed;
                record.description = format!("pre-deploy hook failed: {failure}");
                record.finished_at = Some(release::now());
                lock.check()?;
                release::save(&self.cluster, &record).await?;
                return Err(DeployError::PreHookFailed { revision, failure });
            }
            Err(failure) => Err(failure),
            Ok(_) => {
                // Apply and track.
                let main: Vec<Value> = values
                    .iter()
                    .filter(|o| hook_of(o).is_none())
                    .cloned()
                    .collect();
                let targets = match (&req.canary, &current) {
                    (Some(_), Some(cur)) => self.canary_targets(&main, cur).await?,
                    _ => Vec::new(),
                };
                match &req.canary {
                    Some(c) if !targets.is_empty() => {
                        canaried = true;
                        let keys: Vec<ObjectKey> = targets.iter().map(|t| t.key()).collect();
                        let others: Vec<Value> = main
                            .iter()
                            .filter(|o| !keys.contains(&key_of(o)))
                            .cloned()
                            .collect();
                        match apply(&others).await? {
                            Err(f) => Err(f),
                            Ok(_) => match (canary::CanaryRun {
                                deployer: self,
                                canary: c,
                                targets: &targets,
                                release: &req.release,
                                namespace: &req.namespace,
                                revision,
                                tracker: &tracker,
                                lock,
                                timeout: req.timeout,
                                weight: Default::default(),
                                logs_read: Default::default(),
                            })
                            .run()
                            .await?
                            {
                                canary::CanaryEnd::Promote => {
                                    *deadline.lock().expect("the deadline is never poisoned") =
                                        tokio::time::Instant::now() + req.timeout;
                                    apply(&main).await?
                                }
                                canary::CanaryEnd::Failed(f) => Err(f),
                                canary::CanaryEnd::Aborted(f) => {
                                    aborted = true;
                                    Err(f)
                                }
                            },
                        }
                    }
                    canary => {
                        if canary.is_some() && current.is_some() {
                            self.message(
                                Level::Info,
                                "canary: no Deployment changes its pod template; the revision \
                                 moves at once"
                                    .into(),
                            );
                        }
                        apply(&main).await?
                    }
                }
            }
        };
        if outcome.is_ok() {
            let post: Vec<&Value> = values
                .iter()
                .filter(|o| hook_of(o) == Some(HookWhen::PostDeploy))
                .collect();
            let applied = outcome.as_ref().copied().unwrap_or(0);
            outcome = self
                .run_hooks(
                    &post,
                    &tracker,
                    lock,
                    t0,
                    remaining(),
                    revision,
                    &mut record.seeds,
                )
                .await?
                .map(|hooks| applied + hooks);
        }

        match outcome {
            Ok(applied) => {
                if canaried {
                    self.remove_canaries(&req.namespace, &req.release).await?;
                }
                let pruned = self
                    .steps(t0)
                    .prune(&previous, &values, &req.release, &req.namespace, lock)
                    .await?;
                crash_point("pruning");
                record.status = Status::Deployed;
                record.description = format!("{applied} objects applied, {pruned} pruned");
                record.finished_at = Some(release::now());
                // The commit point: from this one write on, this revision is the live one.
                lock.check()?;
                release::save(&self.cluster, &record).await?;
                crash_point("recording");
                if let Some(mut cur) = current {
                    cur.status = Status::Superseded;
                    release::save(&self.cluster, &cur).await?;
                }
                self.trim_history(req, revision).await?;
                Ok(DeployOutcome::Deployed {
                    revision,
                    applied,
                    pruned,
                })
            }
            Err(failure) => {
                self.message(
                    Level::Error,
                    format!("revision {revision} failed: {failure}"),
                );
                record.finished_at = Some(release::now());
                record.description = failure.to_string();
                record.status = if aborted {
                    Status::Aborted
                } else {
                    Status::Failed
                };
                if canaried && (req.rollback || aborted) {
                    let removed = self.remove_canaries(&req.namespace, &req.release).await?;
                    self.message(
                        Level::Warning,
                        format!("canary: removed {removed} canary Deployment(s)"),
                    );
                }
                // An abort always restores the stable pods, --no-rollback or not: the canary
                // did what it is for. A canary that failed otherwise is kept with the rest.
                let result = match plan::recovery(&history, req.rollback || aborted) {
                    Recovery::Keep => {
                        record.status = Status::FailedKept;
                        lock.check()?;
                        release::save(&self.cluster, &record).await?;
                        self.trim_history(req, revision).await?;
                        return Err(DeployError::FailedKept { revision, failure });
                    }
                    Recovery::RollBack(cur) => {
                        self.message(
                            Level::Warning,
                            format!("rolling back to revision {}", cur.revision),
                        );
                        let restored = self
                            .restore(
                                &cur,
                                &values,
                                &req.namespace,
                                &tracker,
                                lock,
                                t0,
                                req.timeout,
                            )
                            .await;
                        lock.check()?;
                        release::save(&self.cluster, &record).await?;
                        match restored {
                            Ok(()) if aborted => Err(DeployError::Aborted {
                                revision,
                                to: cur.revision,
                                failure,
                            }),
                            Ok(()) => Err(DeployError::RolledBack {
                                revision,
                                to: cur.revision,
                                failure,
                            }),
                            Err(rollback) => Err(DeployError::RollbackFailed {
                                revision,
                                to: cur.revision,
                                failure,
                                rollback,
                            }),
                        }
                    }
                    Recovery::RemoveAll => {
                        self.message(
                            Level::Warning,
                            "first install failed; removing its objects".into(),
                        );
                        self.steps(t0)
                            .prune(&values, &[], &req.release, &req.namespace, lock)
                            .await?;
                        release::save(&self.cluster, &record).await?;
                        Err(DeployError::FirstInstallFailed { revision, failure })
                    }
                    Recovery::RemoveNew { keep } => {
                        // Records exist but none deployed (interrupted or failed ones, or
                        // unreadable ones): objects they own may be in use, keep those.
                        self.message(
                            Level::Warning,
                            "no earlier revision was ever deployed; removing only the objects \
                             no earlier revision had"
                                .into(),
                        );
                        // No `keep` when a record is unreadable: it may own anything, remove
                        // nothing.
                        let kept = keep.unwrap_or_else(|| values.clone());
                        self.steps(t0)
                            .prune(&values, &kept, &req.release, &req.namespace, lock)
                            .await?;
                        release::save(&self.cluster, &record).await?;
                        Err(DeployError::FailedWithoutGoodRevision { revision, failure })
                    }
                };
                self.trim_history(req, revision).await?;
                result
            }
        }
    }

    /// The preflight's second pass (see [`preflight`]): dry-runs `objects` as they will be
    /// applied; `missing` are the discovery refusals. Every refusal together, or nothing.
    async fn preflight(
        &self,
        objects: &ObjectSet,
        discovery: &preflight::Discovery,
        missing: Vec<Refusal>,
        force: bool,
        started: Instant,
    ) -> Result<(), DeployError> {
        use preflight::Verdict;
        let mut skipped: Vec<String> = Vec::new();
        let mut check: Vec<(&berth_objects::Object, &Value)> = Vec::new();
        for o in objects.sorted() {
            let v = o.value();
            let name = || format!("{}/{} ({})", o.key().kind, o.key().name, o.source());
            match discovery.verdict(v) {
                Verdict::Missing(_) => continue,
                Verdict::DefinedInSet | Verdict::RedefinedInSet => {
                    skipped.push(format!(
                        "{}: its CustomResourceDefinition is in this release, so it is \
                         dry-run right after the CRD phase",
                        name()
                    ));
                    continue;
                }
                Verdict::Served => {}
            }
            if hook_of(v).is_some() && self.cluster.get(&key_of(v)).await?.is_some() {
                skipped.push(format!(
                    "{}: a hook Job from an earlier run, deleted and re-created when the hook \
                     runs (a dry run over the old Job would be refused for its immutable \
                     template)",
                    name()
                ));
                continue;
            }
            check.push((o, v));
        }
        let mut refusals = missing;
        refusals.extend(preflight::dry_run(&self.cluster, &check, force).await?);
        if !refusals.is_empty() {
            return Err(DeployError::Preflight {
                refusals,
                checked: objects.len(),
            });
        }
        self.message(
            Level::Info,
            format!(
                "preflight: {} objects passed discovery and a server-side dry run in {} ms{}",
                check.len(),
                started.elapsed().as_millis(),
                match discovery.version.as_deref() {
                    Some(v) => format!(" (cluster {v})"),
                    None => String::new(),
                }
            ),
        );
        for s in skipped {
            self.message(Level::Info, format!("preflight: not dry-run yet: {s}"));
        }
        Ok(())
    }

    /// Drops the oldest release records beyond `req.history_max`, keeping the live one and
    /// `revision`.
    async fn trim_history(&self, req: &DeployRequest, revision: u64) -> Result<(), DeployError> {
        let dropped = release::prune_history(
            &self.cluster,
            &req.namespace,
            &req.release,
            req.history_max,
            revision,
        )
        .await?;
        if !dropped.is_empty() {
            self.message(
                Level::Info,
                format!(
                    "history: kept the newest {} records (--history-max), deleted revisions {}",
                    req.history_max,
                    dropped
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        Ok(())
    }

    /// Applies `main` phase by phase and waits for readiness. `Ok(Err(..))` is a rollout
    /// failure (to be rolled back); `Err(..)` an error talking to the cluster.
    #[expect(
        clippy::too_many_arguments,
        reason = "the lock joined the arguments; issue 15 restructures deploy_locked"
    )]
    async fn apply_and_track(
        &self,
        set: &ObjectSet,
        main: &[Value],
        deferred: &BTreeSet<(String, String)>,
        force: bool,
        tracker: &track::Tracker<'_>,
        lock: &Lock,
        t0: Instant,
        timeout: Duration,
    ) -> Result<Result<usize, Failure>, DeployError> {
        // Every wait below (CRDs Established, their kinds served, readiness) ends at the
        // caller's deadline.
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let by_key: BTreeMap<ObjectKey, &Value> = main.iter().map(|o| (key_of(o), o)).collect();
        let mut applied: BTreeMap<ObjectKey, Value> = BTreeMap::new();
        for phase in deploy_order(set) {
            let batch: Vec<&Value> = phase
                .objects
                .iter()
                .filter_map(|k| {
                    let v = set.get(k)?.value();
                    by_key.get(&key_of(v)).copied()
                })
                .collect();
            lock.check()?;
            let applies = batch
                .into_iter()
                .map(|o| {
                    async move {
                        // Checked before each apply: a lost lock stops the rest at once.
                        lock.check().ok()?;
                        Some((key_of(o), self.cluster.apply(o, FIELD_MANAGER, force).await))
                    }
                    .boxed()
                })
                .collect();
            let results: Vec<Option<(ObjectKey, Result<Value, ClusterError>)>> =
                at_most(PARALLEL_APPLIES, applies).await;
            lock.check()?;
            for (k, r) in results.into_iter().flatten() {
                match r {
                    Ok(live) => {
                        self.object_state(
                            t0,
                            &format!("{}/{}", k.kind, k.name),
                            State::Applied,
                            "",
                        );
                        applied.insert(k, live);
                    }
                    Err(
                        e @ (ClusterError::Unreachable { .. } | ClusterError::Unauthorized { .. }),
                    ) => {
                        return Err(e.into());
                    }
                    Err(e) => {
                        return Ok(Err(Failure {
                            object: format!("{}/{}", k.kind, k.name),
                            reason: e.to_string(),
                            logs: None,
                        }));
                    }
                }
            }
            if phase.phase == berth_objects::Phase::Definitions {
                for k in applied
                    .keys()
                    .filter(|k| k.kind == "CustomResourceDefinition")
                {
                    let established = self
                        .cluster
                        .wait_until(k, left(), |crd| {
                            crd["status"]["conditions"].as_array().is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Established" && c["status"] == "True")
                            })
                        })
                        .await;
                    if let Err(e) = established {
                        return Ok(Err(Failure {
                            object: format!("CustomResourceDefinition/{}", k.name),
                            reason: format!("not Established: {e}"),
                            logs: None,
                        }));
                    }
                }
                // Custom resources of this release's CRDs: dry-run now, against the CRDs
                // just applied, before any other phase (see preflight).
                let late: Vec<(&berth_objects::Object, &Value)> = set
                    .sorted()
                    .into_iter()
                    .filter(|o| deferred.contains(&preflight::kind_of(o.value())))
                    .filter_map(|o| Some((o, *by_key.get(&key_of(o.value()))?)))
                    .collect();
                if !late.is_empty() {
                    let kinds: BTreeSet<preflight::Kind> =
                        late.iter().map(|(_, v)| preflight::kind_of(v)).collect();
                    let unserved = preflight::wait_served(&self.cluster, &kinds, left()).await?;
                    let (unserved, late): (Vec<_>, Vec<_>) = late
                        .into_iter()
                        .partition(|(_, v)| unserved.contains(&preflight::kind_of(v)));
                    let mut refusals: Vec<Refusal> = unserved
                        .iter()
                        .map(|(o, _)| Refusal {
                            object: format!("{}/{}", o.key().kind, o.key().name),
                            source: o.source().clone(),
                            message: "its CustomResourceDefinition is Established, but the API \
                                      server did not serve the kind within the deploy's deadline \
                                      (--timeout)"
                                .into(),
                        })
                        .collect();
                    refusals.extend(preflight::dry_run(&self.cluster, &late, force).await?);
                    if !refusals.is_empty() {
                        return Ok(Err(Failure {
                            object: "preflight".into(),
                            reason: format!(
                                "the API server refused custom resources in a dry run right \
                                 after their CustomResourceDefinitions were applied (nothing \
                                 else was applied yet): {}",
                                refusals
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            ),
                            logs: None,
                        }));
                    }
                    self.message(
                        Level::Info,
                        format!(
                            "preflight: {} custom resource(s) of this release's CRDs passed a \
                             server-side dry run",
                            late.len()
                        ),
                    );
                }
            }
            if !applied.is_empty() {
                crash_point("mid-apply");
            }
        }
        let keys: Vec<ObjectKey> = applied.keys().cloned().collect();
        let waited = self
            .guarded(lock, async {
                crash_point("tracking");
                tracker.wait(&keys, &applied, left()).await
            })
            .await?;
        Ok(waited.map(|()| keys.len()))
    }

    /// Runs hook Jobs (deleting earlier runs of the same name first) and waits for them.
    /// Run-once hooks are noted in `seeds`: run in `revision`, or skipped with the revision
    /// that ran them (the live Job's `berth.dev/revision`).
    #[expect(
        clippy::too_many_arguments,
        reason = "the lock joined the arguments; issue 15 restructures deploy_locked"
    )]
    async fn run_hooks(
        &self,
        hooks: &[&Value],
        tracker: &track::Tracker<'_>,
        lock: &Lock,
        t0: Instant,
        timeout: Duration,
        revision: u64,
        seeds: &mut Vec<release::SeedRun>,
    ) -> Result<Result<usize, Failure>, DeployError> {
        if hooks.is_empty() {
            return Ok(Ok(0));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let applied = match self
            .steps(t0)
            .start_hooks(hooks, lock, deadline, revision, seeds)
            .await?
        {
            Ok(applied) => applied,
            Err(failure) => return Ok(Err(failure)),
        };
        let keys: Vec<ObjectKey> = applied.keys().cloned().collect();
        let waited = self
            .guarded(lock, async {
                if hook_of(hooks[0]) == Some(HookWhen::PostDeploy) {
                    crash_point("hooks");
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                tracker.wait(&keys, &applied, left).await
            })
            .await?;
        Ok(waited.map(|()| keys.len()))
    }

    /// Restores revision `to` after `failed` objects were applied, waiting up to `timeout`
    /// for it to be ready again (the deploy's own: what was ready before gets as long to be
    /// ready again as the deploy had).
    #[allow(clippy::too_many_arguments)]
    async fn restore(
        &self,
        to: &Release,
        failed: &[Value],
        namespace: &str,
        tracker: &track::Tracker<'_>,
        lock: &Lock,
        t0: Instant,
        timeout: Duration,
    ) -> Result<(), String> {
        let since = jiff::Timestamp::now();
        let main: Vec<&Value> = to.objects.iter().filter(|o| hook_of(o).is_none()).collect();
        let mut applied = BTreeMap::new();
        for o in &main {
            let k = key_of(o);
            lock.check().map_err(|e| e.to_string())?;
            let live = self
                .cluster
                .apply(o, FIELD_MANAGER, true)
                .await
                .map_err(|e| e.to_string())?;
            self.object_state(t0, &format!("{}/{}", k.kind, k.name), State::RolledBack, "");
            applied.insert(k, live);
        }
        crash_point("rollback");
        let restored: Vec<Value> = main.into_iter().cloned().collect();
        self.steps(t0)
            .prune(failed, &restored, &to.name, namespace, lock)
            .await
            .map_err(|e| e.to_string())?;
        let keys: Vec<ObjectKey> = applied.keys().cloned().collect();
        // The failed revision's pods linger while their ReplicaSet scales down, still showing
        // the fault that caused the rollback; diagnosing them would fail the rollback itself.
        // Only pods created since the restore began belong to the restored revision.
        let tracker = track::Tracker {
            selector: tracker.selector.clone(),
            pods_since: since,
            ..*tracker
        };
        self.guarded(lock, tracker.wait(&keys, &applied, timeout))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|f| f.to_string())
    }

    /// Re-deploys revision `to` (or the one before the live one) as a new revision.
    pub async fn rollback(
        &self,
        namespace: &str,
        release_name: &str,
        to: Option<u64>,
        base: DeployRequest,
    ) -> Result<(DeployOutcome, u64), DeployError> {
        let history = History::load(&self.cluster, namespace, release_name).await?;
        let target = plan::rollback_target(&history, to)
            .ok_or(DeployError::NoSuchRevision {
                release: release_name.into(),
                revision: to.unwrap_or(0),
            })?
            .clone();
        let mut objects = ObjectSet::new();
        for (i, v) in target.objects.iter().enumerate() {
            let mut v = v.clone();
            strip_ownership(&mut v);
            let source = berth_objects::Source {
                origin: format!("revision {}", target.revision),
                line: i as u64 + 1,
            };
            objects.insert(berth_objects::Object::new(v, source)?)?;
        }
        let req = DeployRequest {
            objects,
            images: target.images.clone(),
            commit: target.commit.clone(),
            ..base
        };
        let outcome = self.deploy(req).await?;
        Ok((outcome, target.revision))
    }
}

/// Removes berth's per-revision annotations so a recorded object can be re-owned by a new
/// revision.
fn strip_ownership(v: &mut Value) {
    use berth_objects::ownership::{COMMIT_ANNOTATION, REVISION_ANNOTATION};
    if let Some(a) = v["metadata"]["annotations"].as_object_mut() {
        a.remove(REVISION_ANNOTATION);
        a.remove(COMMIT_ANNOTATION);
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// `berth serve` spawns runs on its multi-threaded runtime: the engine's futures must be
    /// `Send`. A compile-time check; it never runs a deploy.
    #[test]
    fn deploy_and_rollback_futures_are_send() {
        let _ = |d: &Deployer, req: DeployRequest| {
            assert_send(&d.deploy(req.clone()));
            assert_send(&d.rollback("ns", "app", None, req));
        };
    }
}
