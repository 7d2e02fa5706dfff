//! Canary releases with plain Deployments and StatefulSets: no CRD, no controller in the
//! cluster, no traffic router.
//!
//! A weight is approximated by pods: at weight `w` of `total` pods, `ceil(total * w / 100)` of
//! them (one at least) run the new revision.
//!
//! - **Deployments.** For each Deployment whose pod template changes, the new template runs as
//!   a second Deployment, `NAME-canary`. Its pods carry the stable pods' labels plus
//!   `berth.dev/track: canary`, so the Services that select the stable pods spread requests
//!   over both. The canary is scaled up and ready before the stable Deployment is scaled down
//!   to the rest, so capacity never drops. A Deployment's own ReplicaSets select by
//!   `pod-template-hash`, so the stable Deployment never adopts the canary's pods.
//! - **StatefulSets** (`RollingUpdate`) take the new template with a `partition`: the pods at
//!   the highest ordinals are the canary, each keeping its own volume. A StatefulSet with
//!   `OnDelete` moves at once, as without a canary.
//!
//! Before the first step, every other object of the new revision is applied (the canary's
//! pods may read a new ConfigMap), as Argo Rollouts does. After the last step the deploy goes
//! on as without a canary: the whole revision is applied (the stable Deployment rolls to the
//! new template at full size, a StatefulSet loses its partition) and, once it is ready, the
//! canary Deployments are deleted.
//!
//! A failed check, a pause that timed out, or `berth promote --resume ENV --abort` aborts:
//! the canaries are deleted and the previous revision is re-applied as in a rollback (a
//! StatefulSet's canary pods go back to the old template), and the revision is recorded
//! `aborted` with the check's evidence. A canary pod that crashes or never becomes ready is a
//! rollout failure like any other (`failed`, rolled back).
//!
//! A pause is noted on each canaried object as `berth.dev/paused-at: REVISION.STEP`;
//! `berth promote --resume` answers it with `berth.dev/resume: REVISION.STEP` (or `abort`)
//! under a field manager of its own, so an answer never matches a later pause.
//!
//! Limits: persistent connections (websockets, HTTP/2, gRPC) stay on the pods they were opened
//! to; a HorizontalPodAutoscaler on the Deployment would fight the stable scaling; the
//! weight is as fine as the replica count allows (two pods: 50 % at least).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use berth_cluster::{Cluster, ObjectKey};
use berth_objects::ownership::RELEASE_LABEL;
use berth_types::canary::{
    Canary, CanaryState, CanaryStep, Check, CheckKind, NoData, PAUSED_ANNOTATION,
    RESUME_ANNOTATION, TRACK_LABEL, canary_pods, canary_pods_beside,
};
use berth_types::duration::human;
use berth_types::{Event, Level};
use serde_json::Value;

use crate::plan::key_of;
use crate::release::Release;
use crate::{DeployError, Deployer, FIELD_MANAGER, Failure, Lock, track};

/// How often a pause or a check looks at the canary pods and the resume annotation.
const TICK: Duration = Duration::from_secs(1);
/// How many matching lines a failed log check keeps as evidence.
const EVIDENCE_LINES: usize = 10;
/// The annotation on a StatefulSet while a canary partition is on it: the revision.
pub const CANARY_ANNOTATION: &str = "berth.dev/canary";
/// The field manager of `berth promote --resume`'s answers.
pub const RESUME_MANAGER: &str = "berth-resume";

/// How the canary steps ended.
#[derive(Debug)]
pub(crate) enum CanaryEnd {
    /// Every step passed: apply the whole revision.
    Promote,
    /// A rollout failure (a canary pod crashed, never became ready): roll back.
    Failed(Failure),
    /// A check failed, a pause timed out, or a person aborted: the evidence.
    Aborted(Failure),
}

/// What kind of workload a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Deployment,
    StatefulSet,
}

/// One workload under a canary: the new object and the live revision's.
pub(crate) struct Target {
    workload: Workload,
    new: Value,
    old: Value,
    total: u32,
    /// A HorizontalPodAutoscaler of the release scales this Deployment: its stable pods keep
    /// their number and the canary runs beside them.
    autoscaled: bool,
}

impl Target {
    /// Its key.
    pub(crate) fn key(&self) -> ObjectKey {
        key_of(&self.new)
    }

    fn name(&self) -> &str {
        self.new["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// How many pods run the new revision at `weight`.
    fn canary_pods(&self, weight: u8) -> u32 {
        if self.autoscaled {
            canary_pods_beside(self.total, weight)
        } else {
            canary_pods(self.total, weight)
        }
    }

    /// What a weight step did, for people.
    fn share(&self, pods: u32) -> String {
        let name = self.name();
        let stable = self.total - pods.min(self.total);
        match (self.workload, self.autoscaled) {
            (Workload::StatefulSet, _) => {
                format!("{name}: {pods} new (ordinals {stable} and up), {stable} stable")
            }
            (Workload::Deployment, true) => format!(
                "{name}: {pods} new beside {} stable (their number is the autoscaler's)",
                self.total
            ),
            (Workload::Deployment, false) => format!("{name}: {pods} new, {stable} stable"),
        }
    }

    /// The objects to apply for `pods` canary pods: the canary first, then (Deployments) the
    /// stable one scaled to the rest, unless an autoscaler sizes it.
    fn objects(&self, pods: u32, mark: &Mark) -> (Value, Option<Value>) {
        match self.workload {
            Workload::Deployment if self.autoscaled => (canary_object(&self.new, pods, mark), None),
            Workload::Deployment => {
                let mut stable = self.old.clone();
                stable["spec"]["replicas"] = (self.total - pods).into();
                (canary_object(&self.new, pods, mark), Some(stable))
            }
            Workload::StatefulSet => (partitioned(&self.new, self.total - pods, mark), None),
        }
    }
}

/// What a canaried object carries: the revision, and the step it is paused at.
pub(crate) struct Mark {
    revision: u64,
    paused_at: Option<usize>,
}

impl Mark {
    fn put(&self, object: &mut Value) {
        if let Some(step) = self.paused_at {
            object["metadata"]["annotations"][PAUSED_ANNOTATION] =
                format!("{}.{step}", self.revision).into();
        }
    }
}

/// The canary Deployment of `new` at `replicas` pods.
pub(crate) fn canary_object(new: &Value, replicas: u32, mark: &Mark) -> Value {
    let mut c = new.clone();
    let name = format!(
        "{}-canary",
        new["metadata"]["name"].as_str().unwrap_or_default()
    );
    c["metadata"]["name"] = name.into();
    c["metadata"]["labels"][TRACK_LABEL] = "canary".into();
    mark.put(&mut c);
    c["spec"]["replicas"] = replicas.into();
    c["spec"]["selector"]["matchLabels"][TRACK_LABEL] = "canary".into();
    c["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] = "canary".into();
    c
}

/// The new StatefulSet with the pods below ordinal `partition` kept on the old template.
fn partitioned(new: &Value, partition: u32, mark: &Mark) -> Value {
    let mut s = new.clone();
    s["spec"]["updateStrategy"]["type"] = "RollingUpdate".into();
    s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = partition.into();
    s["metadata"]["annotations"][CANARY_ANNOTATION] = mark.revision.to_string().into();
    mark.put(&mut s);
    s
}

/// The workloads of `main` whose pod template differs from the live revision's: Deployments,
/// and StatefulSets that roll (not `OnDelete`).
fn targets(main: &[Value], current: &Release) -> Vec<(Workload, Value, Value)> {
    let old: BTreeMap<ObjectKey, &Value> = current.objects.iter().map(|o| (key_of(o), o)).collect();
    main.iter()
        .filter_map(|o| {
            if o["apiVersion"] != "apps/v1" {
                return None;
            }
            let workload = match o["kind"].as_str()? {
                "Deployment" => Workload::Deployment,
                "StatefulSet" if o["spec"]["updateStrategy"]["type"] != "OnDelete" => {
                    Workload::StatefulSet
                }
                _ => return None,
            };
            let before = old.get(&key_of(o))?;
            (before["spec"]["template"] != o["spec"]["template"])
                .then(|| (workload, o.clone(), (*before).clone()))
        })
        .collect()
}

/// The selector of the release's canary Deployments and their pods.
pub(crate) fn canary_selector(release: &str) -> String {
    format!("{RELEASE_LABEL}={release},{TRACK_LABEL}=canary")
}

/// The release's objects that may carry a pause: its canary Deployments and its StatefulSets.
async fn marked(
    cluster: &Cluster,
    namespace: &str,
    release: &str,
) -> Result<Vec<Value>, DeployError> {
    let mut out = Vec::new();
    for (kind, selector) in [
        ("Deployment", canary_selector(release)),
        ("StatefulSet", format!("{RELEASE_LABEL}={release}")),
    ] {
        match cluster
            .list("apps/v1", kind, namespace, Some(&selector))
            .await
        {
            Ok(found) => out.extend(found),
            // An identity that may not list a kind deploys none of it: none is a canary.
            Err(berth_cluster::ClusterError::Api { code: 403, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// The pause an object waits at (`REVISION.STEP`) with its step, unless it was answered.
fn waiting(object: &Value) -> Option<(String, usize)> {
    let a = &object["metadata"]["annotations"];
    let at = a[PAUSED_ANNOTATION].as_str()?;
    let step = at.rsplit('.').next()?.parse().ok()?;
    (a[RESUME_ANNOTATION].as_str() != Some(at) && a[RESUME_ANNOTATION] != "abort")
        .then(|| (at.to_string(), step))
}

/// Answers the paused canary of `release` in `namespace`: lets it go on, or (`abort`) aborts
/// it. Returns the step it was paused at. The deploy that runs the canary sees the answer
/// within a second.
pub async fn resume(
    cluster: &Cluster,
    namespace: &str,
    release: &str,
    abort: bool,
) -> Result<usize, DeployError> {
    let live = marked(cluster, namespace, release).await?;
    let paused: Vec<(&Value, String, usize)> = live
        .iter()
        .filter_map(|o| waiting(o).map(|(at, step)| (o, at, step)))
        .collect();
    let Some((_, _, step)) = paused.first() else {
        return Err(DeployError::NotPaused {
            release: release.into(),
            namespace: namespace.into(),
            canaries: live
                .iter()
                .filter(|o| {
                    o["kind"] == "Deployment"
                        || !o["metadata"]["annotations"][CANARY_ANNOTATION].is_null()
                })
                .count(),
        });
    };
    let step = *step;
    for (o, at, _) in &paused {
        let answer = if abort {
            "abort".to_string()
        } else {
            at.clone()
        };
        // Its own field manager: berth's next apply of the object leaves the answer alone.
        let patch = serde_json::json!({
            "apiVersion": "apps/v1", "kind": o["kind"],
            "metadata": {"name": o["metadata"]["name"], "namespace": namespace,
                         "annotations": {RESUME_ANNOTATION: answer}},
        });
        cluster.apply(&patch, RESUME_MANAGER, true).await?;
    }
    Ok(step)
}

impl Deployer {
    /// Deletes the release's canary Deployments (what a killed deploy may have left too) and
    /// counts its StatefulSets still partitioned by a canary: how many there were of both.
    pub(crate) async fn remove_canaries(
        &self,
        namespace: &str,
        release: &str,
    ) -> Result<usize, DeployError> {
        let live = marked(&self.cluster, namespace, release).await?;
        let mut n = 0;
        for o in &live {
            if o["kind"] == "Deployment" {
                self.cluster.delete(&key_of(o)).await?;
                n += 1;
            } else if !o["metadata"]["annotations"][CANARY_ANNOTATION].is_null() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The workloads of `main` that change their pod template, with the pods they run now:
    /// empty when nothing a canary could run changes.
    pub(crate) async fn canary_targets(
        &self,
        main: &[Value],
        current: &Release,
    ) -> Result<Vec<Target>, DeployError> {
        let mut out = Vec::new();
        let scaled: Vec<&str> = main
            .iter()
            .filter(|o| o["kind"] == "HorizontalPodAutoscaler")
            .filter(|h| h["spec"]["scaleTargetRef"]["kind"] == "Deployment")
            .filter_map(|h| h["spec"]["scaleTargetRef"]["name"].as_str())
            .collect();
        for (workload, new, old) in targets(main, current) {
            let live = self.cluster.get(&key_of(&new)).await?;
            let replicas = |v: &Value| v["spec"]["replicas"].as_u64();
            let total = replicas(&new)
                .or_else(|| live.as_ref().and_then(replicas))
                .unwrap_or(1) as u32;
            let autoscaled = workload == Workload::Deployment
                && new["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| scaled.contains(&n));
            out.push(Target {
                workload,
                new,
                old,
                total,
                autoscaled,
            });
        }
        Ok(out)
    }
}

/// One canary in progress: the deploy's context.
pub(crate) struct CanaryRun<'a> {
    pub(crate) deployer: &'a Deployer,
    pub(crate) canary: &'a Canary,
    pub(crate) targets: &'a [Target],
    pub(crate) release: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) revision: u64,
    pub(crate) tracker: &'a track::Tracker<'a>,
    pub(crate) lock: &'a Lock,
    /// The deadline of each step's rollout.
    pub(crate) timeout: Duration,
    /// The weight reached (percent), for the events.
    pub(crate) weight: AtomicU8,
    /// Up to when the canary pods' logs were read: a measurement counts the lines since (the
    /// first after a weight step, since that step began, so start-up lines count).
    pub(crate) logs_read: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl CanaryRun<'_> {
    fn say(&self, level: Level, message: String) {
        self.deployer.message(level, message);
    }

    /// Reports where the canary stands at step `step`.
    fn report(&self, step: usize, state: CanaryState, message: String) {
        self.deployer.sink.emit(Event::Canary {
            step,
            steps: self.canary.steps.len(),
            weight: self.weight.load(Ordering::Relaxed),
            state,
            message,
        });
    }

    /// Runs the steps (the caller applied the revision's other objects).
    pub(crate) async fn run(&self) -> Result<CanaryEnd, DeployError> {
        let names: Vec<&str> = self.targets.iter().map(Target::name).collect();
        let n = self.canary.steps.len();
        self.say(
            Level::Info,
            format!("canary: {n} step(s) for {}", names.join(", ")),
        );
        let mut weight = 0u8;
        for (i, step) in self.canary.steps.iter().enumerate() {
            let at = i + 1;
            self.lock.check()?;
            let end = match step {
                CanaryStep::Weight(w) => {
                    weight = *w;
                    *self.logs_read.lock().expect("never poisoned") =
                        Some(tokio::time::Instant::now());
                    let end = self.scale(weight, None, at).await?;
                    crate::crash_point("canary");
                    end
                }
                CanaryStep::Pause(Some(d)) => {
                    self.report(at, CanaryState::Waiting, format!("pause {}", human(*d)));
                    self.watch(*d, None).await?
                }
                CanaryStep::Pause(None) => self.pause(weight, at, "a manual pause").await?,
                CanaryStep::Check(checks) => self.checks(checks, weight, at).await?,
            };
            if let Some(end) = end {
                let (state, f) = match &end {
                    CanaryEnd::Aborted(f) => (CanaryState::Aborted, f),
                    CanaryEnd::Failed(f) => (CanaryState::Failed, f),
                    CanaryEnd::Promote => {
                        unreachable!("a step ends the canary only by stopping it")
                    }
                };
                self.report(at, state, f.to_string());
                return Ok(end);
            }
        }
        self.report(
            n,
            CanaryState::Promoted,
            format!(
                "every step passed; promoting the new revision to all pods of {}",
                names.join(", ")
            ),
        );
        Ok(CanaryEnd::Promote)
    }

    async fn checks(
        &self,
        checks: &[Check],
        weight: u8,
        at: usize,
    ) -> Result<Option<CanaryEnd>, DeployError> {
        for c in checks {
            match self.check(c, at).await? {
                Verdict::Pass => {}
                Verdict::Stop(e) => return Ok(Some(e)),
                Verdict::Inconclusive(why) => {
                    self.report(at, CanaryState::Inconclusive, why);
                    if let Some(end) = self.pause(weight, at, "an inconclusive check").await? {
                        return Ok(Some(end));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Moves every target to `weight`: canary up and ready first, then the stable
    /// Deployments down.
    async fn scale(
        &self,
        weight: u8,
        paused_at: Option<usize>,
        at: usize,
    ) -> Result<Option<CanaryEnd>, DeployError> {
        let mark = Mark {
            revision: self.revision,
            paused_at,
        };
        let mut shares = Vec::new();
        let mut phases: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
        for t in self.targets {
            let pods = t.canary_pods(weight);
            let (canary, stable) = t.objects(pods, &mark);
            phases[0].push(canary);
            phases[1].extend(stable);
            shares.push(t.share(pods));
        }
        for objects in phases {
            let mut keys = Vec::new();
            let mut applied = BTreeMap::new();
            for o in &objects {
                self.lock.check()?;
                let live = self.deployer.cluster.apply(o, FIELD_MANAGER, true).await?;
                keys.push(key_of(o));
                applied.insert(key_of(o), live);
            }
            let waited = self
                .deployer
                .guarded(self.lock, self.tracker.wait(&keys, &applied, self.timeout))
                .await?;
            if let Err(f) = waited {
                return Ok(Some(CanaryEnd::Failed(f)));
            }
        }
        self.weight.store(weight, Ordering::Relaxed);
        if paused_at.is_none() {
            self.report(at, CanaryState::Weight, shares.join("; "));
        }
        Ok(None)
    }

    /// Waits at a manual pause (or after an inconclusive check) for `berth promote --resume`,
    /// at most `pause_timeout`.
    async fn pause(
        &self,
        weight: u8,
        at: usize,
        why: &str,
    ) -> Result<Option<CanaryEnd>, DeployError> {
        // The annotation tells `berth promote --resume` which step waits.
        if let Some(end) = self.scale(weight, Some(at), at).await? {
            return Ok(Some(end));
        }
        let limit = self.canary.pause_timeout;
        self.report(
            at,
            CanaryState::Paused,
            format!(
                "paused by {why}; resume with `berth promote --resume {}` (or abort with \
                 `--abort`) within {}",
                self.release,
                human(limit)
            ),
        );
        match self.watch(limit, Some(at)).await? {
            Some(end) => Ok(Some(end)),
            None if self.answer(at).await? == Some(true) => {
                // Resumed; the next weight step drops the pause annotation.
                self.report(at, CanaryState::Resumed, "resumed".into());
                Ok(None)
            }
            None => Ok(Some(CanaryEnd::Aborted(Failure {
                object: "canary".into(),
                reason: format!(
                    "paused at step {at} ({why}) for {} without `berth promote --resume`; \
                     aborted",
                    human(limit)
                ),
                logs: None,
            }))),
        }
    }

    /// `Some(true)` when the pause at step `at` was told to go on, `Some(false)` when told to
    /// abort, `None` when nobody answered yet.
    async fn answer(&self, at: usize) -> Result<Option<bool>, DeployError> {
        let mine = format!("{}.{at}", self.revision);
        let live = marked(&self.deployer.cluster, self.namespace, self.release).await?;
        for o in &live {
            let a = &o["metadata"]["annotations"];
            if a[PAUSED_ANNOTATION] != mine.as_str() {
                continue;
            }
            match a[RESUME_ANNOTATION].as_str() {
                Some("abort") => return Ok(Some(false)),
                Some(s) if s == mine => return Ok(Some(true)),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Watches the canary pods for `how_long`: a restart ends the wait as a rollout failure.
    /// With `resume_at`, an answer to the pause at that step ends it too: `None` when resumed
    /// (or the time is up; the caller tells which), an abort when aborted.
    async fn watch(
        &self,
        how_long: Duration,
        resume_at: Option<usize>,
    ) -> Result<Option<CanaryEnd>, DeployError> {
        let until = tokio::time::Instant::now() + how_long;
        loop {
            if let Some(f) = self.health().await? {
                return Ok(Some(CanaryEnd::Failed(f)));
            }
            if let Some(at) = resume_at {
                match self.answer(at).await? {
                    Some(true) => return Ok(None),
                    Some(false) => {
                        return Ok(Some(CanaryEnd::Aborted(Failure {
                            object: "canary".into(),
                            reason: format!(
                                "aborted at step {at} by `berth promote --resume {} --abort`",
                                self.release
                            ),
                            logs: None,
                        })));
                    }
                    None => {}
                }
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(None);
            }
            self.deployer
                .guarded(self.lock, tokio::time::sleep((until - now).min(TICK)))
                .await?;
        }
    }

    /// The pods running the new revision: the canary Deployments' pods, and the pods of
    /// each StatefulSet at its update revision.
    async fn canary_pods(&self) -> Result<Vec<Value>, DeployError> {
        let cluster = &self.deployer.cluster;
        let mut pods = cluster
            .list(
                "v1",
                "Pod",
                self.namespace,
                Some(&canary_selector(self.release)),
            )
            .await?;
        for t in self
            .targets
            .iter()
            .filter(|t| t.workload == Workload::StatefulSet)
        {
            let Some(live) = cluster.get(&t.key()).await? else {
                continue;
            };
            let Some(update) = live["status"]["updateRevision"].as_str() else {
                continue;
            };
            let selector = format!("controller-revision-hash={update}");
            let of_set = cluster
                .list("v1", "Pod", self.namespace, Some(&selector))
                .await?;
            pods.extend(of_set.into_iter().filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|os| os.iter().any(|o| o["name"] == t.name()))
            }));
        }
        Ok(pods)
    }

    /// A canary pod that restarted, as a rollout failure (always checked).
    async fn health(&self) -> Result<Option<Failure>, DeployError> {
        for p in &self.canary_pods().await? {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let statuses = p["status"]["containerStatuses"].as_array();
            for c in statuses.into_iter().flatten() {
                let restarts = c["restartCount"].as_u64().unwrap_or(0);
                if restarts > 0 {
                    let container = c["name"].as_str().unwrap_or_default();
                    let logs = self
                        .deployer
                        .cluster
                        .pod_logs(self.namespace, name, Some(container), 20, true)
                        .await
                        .ok()
                        .filter(|l| !l.trim().is_empty());
                    return Ok(Some(Failure {
                        object: format!("Pod/{name}"),
                        reason: format!(
                            "canary container `{container}` restarted {restarts} time(s)"
                        ),
                        logs,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Runs one check: `count` measurements of `interval` each.
    async fn check(&self, check: &Check, at: usize) -> Result<Verdict, DeployError> {
        let what = check.kind.describe(check.interval);
        let mut failed = 0u32;
        // A log check reads what an interval brought; a probe runs at once, then each interval.
        let logs = matches!(check.kind, CheckKind::Logs { .. });
        for m in 1..=check.count {
            if (logs || m > 1)
                && let Some(end) = self.watch(check.interval, None).await?
            {
                return Ok(Verdict::Stop(end));
            }
            let measured = match &check.kind {
                CheckKind::Logs { .. } => self.measure(check).await?,
                CheckKind::Http { .. } => http_probe(&check.kind).await,
                CheckKind::Job { command } => self.job_probe(command, at, m).await?,
            };
            let passed = match (&measured, check.no_data) {
                (Measured::NoData, NoData::Pass) => true,
                (Measured::NoData, NoData::Fail) => false,
                (Measured::NoData, NoData::Inconclusive) => {
                    return Ok(Verdict::Inconclusive(format!(
                        "check {what} is inconclusive: the canary pods wrote no log line in {} \
                         (set `no-data: pass` if that is expected)",
                        human(check.interval)
                    )));
                }
                (Measured::Lines { matched, .. }, _) => matched.len() as u64 <= check_max(check),
                (Measured::Probe { passed, .. }, _) => *passed,
            };
            self.report(
                at,
                if passed {
                    CanaryState::Checked
                } else {
                    CanaryState::CheckFailed
                },
                format!(
                    "check {what}, measurement {m}/{}: {} — {}",
                    check.count,
                    measured.summary(),
                    if passed { "passed" } else { "failed" }
                ),
            );
            if passed {
                continue;
            }
            failed += 1;
            if failed <= check.failure_limit {
                continue;
            }
            let (reason, logs) = match measured {
                Measured::NoData => (
                    format!(
                        "check {what} failed: no log line in {} (`no-data: fail`)",
                        human(check.interval)
                    ),
                    None,
                ),
                Measured::Lines { lines, matched, .. } => (
                    format!(
                        "check {what} failed: {} of {lines} log line(s) in {} matched",
                        matched.len(),
                        human(check.interval)
                    ),
                    Some(
                        matched
                            .iter()
                            .take(EVIDENCE_LINES)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                ),
                Measured::Probe {
                    summary, evidence, ..
                } => (format!("check {what} failed: {summary}"), evidence),
            };
            return Ok(Verdict::Stop(CanaryEnd::Aborted(Failure {
                object: "canary".into(),
                reason,
                logs,
            })));
        }
        Ok(Verdict::Pass)
    }

    /// One run of a `job` check: a Job running `command` in the first canaried workload's new
    /// image, with its container's environment; exit 0 passes, the pod's last log lines are
    /// the evidence.
    async fn job_probe(&self, command: &str, at: usize, m: u32) -> Result<Measured, DeployError> {
        let Some(t) = self.targets.first() else {
            return Ok(Measured::Probe {
                passed: false,
                summary: "no canaried workload to take the image from".into(),
                evidence: None,
            });
        };
        let pod = &t.new["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let mut name = format!("{}-check-{}-{at}-{m}", self.release, self.revision);
        name.truncate(63);
        let name = name.trim_end_matches('-').to_string();
        let mut container = serde_json::json!({
            "name": "check", "image": c["image"],
            "command": ["sh", "-c", command],
        });
        for k in ["env", "envFrom"] {
            if !c[k].is_null() {
                container[k] = c[k].clone();
            }
        }
        let mut spec = serde_json::json!({"restartPolicy": "Never", "containers": [container]});
        for k in ["imagePullSecrets", "serviceAccountName", "securityContext"] {
            if !pod[k].is_null() {
                spec[k] = pod[k].clone();
            }
        }
        let job = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": self.namespace,
                         "labels": {RELEASE_LABEL: self.release, TRACK_LABEL: "check"}},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 600,
                     "activeDeadlineSeconds": self.timeout.as_secs().max(1),
                     "template": {"metadata": {"labels": {TRACK_LABEL: "check"}}, "spec": spec}},
        });
        let key = key_of(&job);
        let cluster = &self.deployer.cluster;
        cluster.delete(&key).await?;
        self.lock.check()?;
        cluster.apply(&job, FIELD_MANAGER, true).await?;
        let finished = |j: &Value| {
            j["status"]["succeeded"].as_u64().unwrap_or(0) > 0
                || j["status"]["failed"].as_u64().unwrap_or(0) > 0
        };
        let done = self
            .deployer
            .guarded(
                self.lock,
                cluster.wait_until(&key, self.timeout + Duration::from_secs(5), finished),
            )
            .await?;
        let logs = match cluster
            .list(
                "v1",
                "Pod",
                self.namespace,
                Some(&format!("job-name={name}")),
            )
            .await?
            .first()
            .and_then(|p| p["metadata"]["name"].as_str().map(String::from))
        {
            Some(p) => cluster
                .pod_logs(self.namespace, &p, None, 20, false)
                .await
                .ok()
                .filter(|l| !l.trim().is_empty()),
            None => None,
        };
        Ok(match done {
            Ok(j) if j["status"]["succeeded"].as_u64().unwrap_or(0) > 0 => Measured::Probe {
                passed: true,
                summary: format!("Job/{name} exited 0"),
                evidence: None,
            },
            Ok(_) => Measured::Probe {
                passed: false,
                summary: format!("Job/{name} failed"),
                evidence: logs,
            },
            Err(e) => Measured::Probe {
                passed: false,
                summary: format!("Job/{name} did not finish: {e}"),
                evidence: logs,
            },
        })
    }

    /// One measurement: the canary pods' log lines of the last interval.
    async fn measure(&self, check: &Check) -> Result<Measured, DeployError> {
        let CheckKind::Logs { pattern, .. } = &check.kind else {
            unreachable!("measure reads logs only");
        };
        // Checked when berth.yaml was read.
        let re = regex_lite::Regex::new(pattern).map_err(|e| DeployError::BadCheck {
            pattern: pattern.clone(),
            reason: e.to_string(),
        })?;
        let now = tokio::time::Instant::now();
        let from = self
            .logs_read
            .lock()
            .expect("never poisoned")
            .replace(now)
            .unwrap_or(now - check.interval);
        let since = (now - from).as_secs_f64().ceil().max(1.0) as i64;
        let pods = self.canary_pods().await?;
        let mut lines = 0u64;
        let mut matched = Vec::new();
        for p in &pods {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let containers = p["spec"]["containers"].as_array();
            for c in containers.into_iter().flatten() {
                let container = c["name"].as_str().unwrap_or_default();
                let Ok(log) = self
                    .deployer
                    .cluster
                    .pod_logs_since(self.namespace, name, container, since)
                    .await
                else {
                    // A pod still starting has no log yet: no data from it.
                    continue;
                };
                for l in log.lines() {
                    lines += 1;
                    if re.is_match(l) {
                        matched.push(format!("{name}/{container}: {l}"));
                    }
                }
            }
        }
        Ok(if lines == 0 {
            Measured::NoData
        } else {
            Measured::Lines {
                lines,
                matched,
                pods: pods.len(),
            }
        })
    }
}

fn check_max(check: &Check) -> u64 {
    match &check.kind {
        CheckKind::Logs { max, .. } => *max,
        _ => 0,
    }
}

/// One GET of an `http` check's URL from here.
async fn http_probe(kind: &CheckKind) -> Measured {
    let CheckKind::Http {
        url,
        status,
        body,
        latency,
    } = kind
    else {
        unreachable!("an http check");
    };
    let fail = |summary: String, evidence: Option<String>| Measured::Probe {
        passed: false,
        summary,
        evidence,
    };
    let client = match reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .timeout(latency.map_or(PROBE_TIMEOUT, |l| l.max(Duration::from_secs(1)) * 2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("no HTTP client: {e}"), None),
    };
    let started = std::time::Instant::now();
    let answer = match client.get(url).send().await {
        Ok(a) => a,
        // The error's text can hold the URL's password: only its kind is said.
        Err(e) if e.is_timeout() => return fail("no answer in time".into(), None),
        Err(e) if e.is_connect() => {
            return fail("connection refused or unreachable".into(), None);
        }
        Err(_) => return fail("the request failed".into(), None),
    };
    let got = answer.status().as_u16();
    let text = answer.text().await.unwrap_or_default();
    let took = started.elapsed();
    let head: String = text.chars().take(400).collect();
    let evidence = Some(format!("HTTP {got} in {} ms: {head}", took.as_millis()));
    if got != *status {
        return fail(format!("answered {got}, not {status}"), evidence);
    }
    if let Some(b) = body {
        let re = regex_lite::Regex::new(b).ok();
        if !re.is_some_and(|re| re.is_match(&text)) {
            return fail(format!("the body does not match /{b}/"), evidence);
        }
    }
    if let Some(l) = latency
        && took > *l
    {
        return fail(
            format!("answered in {} ms, above {}", took.as_millis(), human(*l)),
            evidence,
        );
    }
    Measured::Probe {
        passed: true,
        summary: format!("HTTP {got} in {} ms", took.as_millis()),
        evidence: None,
    }
}

/// How long an `http` check's GET may take when it sets no `latency`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a check concluded.
enum Verdict {
    Pass,
    Stop(CanaryEnd),
    Inconclusive(String),
}

/// One measurement of a check.
enum Measured {
    /// A log check found no line.
    NoData,
    /// A log check's lines.
    Lines {
        lines: u64,
        matched: Vec<String>,
        pods: usize,
    },
    /// An `http` or `job` check's outcome.
    Probe {
        passed: bool,
        summary: String,
        evidence: Option<String>,
    },
}

impl Measured {
    fn summary(&self) -> String {
        match self {
            Measured::NoData => "no log line".into(),
            Measured::Lines {
                lines,
                matched,
                pods,
            } => format!(
                "{} of {lines} line(s) from {pods} pod(s) matched",
                matched.len()
            ),
            Measured::Probe { summary, .. } => summary.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Mark, Workload, canary_object, partitioned, targets, waiting};
    use crate::release::{Release, Status};

    fn deployment(image: &str) -> serde_json::Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "shop",
                            "labels": {"berth.dev/release": "prod"}},
               "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    #[test]
    fn the_canary_runs_the_new_template_beside_the_stable_pods_and_apart_from_them() {
        let paused = Mark {
            revision: 7,
            paused_at: Some(3),
        };
        let c = canary_object(&deployment("web@sha256:2"), 2, &paused);
        assert_eq!(c["metadata"]["name"], "web-canary");
        assert_eq!(c["spec"]["replicas"], 2);
        assert_eq!(c["metadata"]["annotations"]["berth.dev/paused-at"], "7.3");
        assert_eq!(waiting(&c), Some(("7.3".into(), 3)));
        let mut answered = c.clone();
        answered["metadata"]["annotations"]["berth.dev/resume"] = "7.3".into();
        assert_eq!(waiting(&answered), None);
        // An answer to an earlier deploy's pause at the same step is no answer to this one.
        answered["metadata"]["annotations"]["berth.dev/resume"] = "6.3".into();
        assert_eq!(waiting(&answered), Some(("7.3".into(), 3)));
        // Its selector is the stable one narrowed to the canary pods, so each Deployment
        // counts only its own pods, while the Service (app=web) selects both.
        assert_eq!(
            c["spec"]["selector"]["matchLabels"],
            json!({"app": "web", "berth.dev/track": "canary"})
        );
        assert_eq!(
            c["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web", "berth.dev/track": "canary"})
        );
        assert_eq!(
            c["spec"]["template"]["spec"]["containers"][0]["image"],
            "web@sha256:2"
        );
        let running = Mark {
            revision: 7,
            paused_at: None,
        };
        let unpaused = canary_object(&deployment("web@sha256:2"), 2, &running);
        assert!(unpaused["metadata"]["annotations"].is_null());
    }

    #[test]
    fn only_workloads_whose_pod_template_changes_get_a_canary() {
        let current = Release {
            objects: vec![
                deployment("web@sha256:1"),
                statefulset("db@sha256:1", None),
                statefulset("cache@sha256:1", Some("OnDelete")),
            ],
            ..crate::plan::tests::release(1, Status::Deployed, &[])
        };
        let mut scaled = deployment("web@sha256:1");
        scaled["spec"]["replicas"] = 9.into();
        assert!(
            targets(&[scaled], &current).is_empty(),
            "a scale is no new revision of pods"
        );
        let mut renamed = deployment("web@sha256:2");
        renamed["metadata"]["name"] = "api".into();
        assert!(
            targets(&[renamed], &current).is_empty(),
            "a new Deployment has no stable pods"
        );
        let t = targets(&[deployment("web@sha256:2")], &current);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0, Workload::Deployment);
        assert_eq!(
            t[0].2["spec"]["template"]["spec"]["containers"][0]["image"],
            "web@sha256:1"
        );
        let sets = targets(
            &[
                statefulset("db@sha256:2", None),
                statefulset("cache@sha256:2", Some("OnDelete")),
            ],
            &current,
        );
        assert_eq!(
            sets.len(),
            1,
            "an OnDelete StatefulSet moves when its pods are deleted"
        );
        assert_eq!(sets[0].0, Workload::StatefulSet);
    }

    fn statefulset(image: &str, strategy: Option<&str>) -> serde_json::Value {
        let name = image.split('@').next().unwrap();
        let mut s = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": name, "namespace": "shop"},
               "spec": {"replicas": 4, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": name, "image": image}]}}}});
        if let Some(t) = strategy {
            s["spec"]["updateStrategy"] = json!({"type": t});
        }
        s
    }

    #[test]
    fn a_statefulset_canary_is_the_new_template_above_a_partition() {
        let mark = Mark {
            revision: 4,
            paused_at: Some(2),
        };
        let s = partitioned(&statefulset("db@sha256:2", None), 3, &mark);
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 3}})
        );
        assert_eq!(
            s["metadata"]["name"], "db",
            "the StatefulSet itself, no second one"
        );
        assert_eq!(s["metadata"]["annotations"]["berth.dev/canary"], "4");
        assert_eq!(s["metadata"]["annotations"]["berth.dev/paused-at"], "4.2");
    }
}
