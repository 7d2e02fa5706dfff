//! Canary releases with plain Deployments: no CRD, no controller in the cluster, no traffic
//! router.
//!
//! A weight is approximated by pods. For each Deployment whose pod template changes, the new
//! template runs as a second Deployment, `NAME-canary`. Its pods carry the stable pods' labels
//! plus `berth.dev/track: canary`, so the Services that select the stable pods spread
//! requests over both. At weight `w` of `total` pods, the canary runs `ceil(total * w / 100)`
//! of them and the stable Deployment the rest: the canary is scaled up and ready before the
//! stable one is scaled down, so capacity never drops. A Deployment's own ReplicaSets select
//! by `pod-template-hash`, so the stable Deployment never adopts the canary's pods.
//!
//! Before the first step, every other object of the new revision is applied (the canary's
//! pods may read a new ConfigMap), as Argo Rollouts does. After the last step the deploy goes
//! on as without a canary: the whole revision is applied (the stable Deployment rolls to the
//! new template at full size) and, once it is ready, the canary Deployments are deleted.
//!
//! A failed check, a pause that timed out, or `berth promote --resume ENV --abort` aborts:
//! the canaries are deleted and the previous revision is re-applied as in a rollback, and the
//! revision is recorded `aborted` with the check's evidence. A canary pod that crashes or
//! never becomes ready is a rollout failure like any other (`failed`, rolled back).
//!
//! Limits: persistent connections (websockets, HTTP/2, gRPC) stay on the pods they were opened
//! to; a HorizontalPodAutoscaler on the Deployment would fight the stable scaling; the
//! weight is as fine as the replica count allows (two pods: 50 % at least).

use std::collections::BTreeMap;
use std::time::Duration;

use berth_cluster::ObjectKey;
use berth_objects::ownership::RELEASE_LABEL;
use berth_types::Level;
use berth_types::canary::{
    Canary, CanaryStep, Check, CheckKind, NoData, PAUSED_ANNOTATION, RESUME_ANNOTATION,
    TRACK_LABEL, canary_pods,
};
use berth_types::duration::human;
use serde_json::Value;

use crate::plan::key_of;
use crate::release::Release;
use crate::{DeployError, Deployer, FIELD_MANAGER, Failure, Lock, track};

/// How often a pause or a check looks at the canary pods and the resume annotation.
const TICK: Duration = Duration::from_secs(1);
/// How many matching lines a failed log check keeps as evidence.
const EVIDENCE_LINES: usize = 10;

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

/// One Deployment under a canary: the new object and the live revision's.
pub(crate) struct Target {
    new: Value,
    old: Value,
    total: u32,
}

impl Target {
    /// Its key.
    pub(crate) fn key(&self) -> ObjectKey {
        key_of(&self.new)
    }

    fn name(&self) -> &str {
        self.new["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// The canary Deployment of `new` at `replicas` pods, noting the step it is paused at.
pub(crate) fn canary_object(new: &Value, replicas: u32, paused_at: Option<usize>) -> Value {
    let mut c = new.clone();
    let name = format!(
        "{}-canary",
        new["metadata"]["name"].as_str().unwrap_or_default()
    );
    c["metadata"]["name"] = name.into();
    c["metadata"]["labels"][TRACK_LABEL] = "canary".into();
    if let Some(step) = paused_at {
        c["metadata"]["annotations"][PAUSED_ANNOTATION] = step.to_string().into();
    }
    c["spec"]["replicas"] = replicas.into();
    c["spec"]["selector"]["matchLabels"][TRACK_LABEL] = "canary".into();
    c["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] = "canary".into();
    c
}

/// The Deployments of `main` whose pod template differs from the live revision's.
fn targets(main: &[Value], current: &Release) -> Vec<(Value, Value)> {
    let old: BTreeMap<ObjectKey, &Value> = current.objects.iter().map(|o| (key_of(o), o)).collect();
    main.iter()
        .filter(|o| o["kind"] == "Deployment" && o["apiVersion"] == "apps/v1")
        .filter_map(|o| {
            let before = old.get(&key_of(o))?;
            (before["spec"]["template"] != o["spec"]["template"])
                .then(|| (o.clone(), (*before).clone()))
        })
        .collect()
}

/// The selector of the release's canary Deployments and pods.
pub(crate) fn canary_selector(release: &str) -> String {
    format!("{RELEASE_LABEL}={release},{TRACK_LABEL}=canary")
}

/// Answers the paused canary of `release` in `namespace`: lets it go on, or (`abort`) aborts
/// it. Returns the step it was paused at. The deploy that runs the canary sees the answer
/// within a second.
pub async fn resume(
    cluster: &berth_cluster::Cluster,
    namespace: &str,
    release: &str,
    abort: bool,
) -> Result<usize, DeployError> {
    let live = cluster
        .list(
            "apps/v1",
            "Deployment",
            namespace,
            Some(&canary_selector(release)),
        )
        .await?;
    let paused: Vec<(&Value, usize)> = live
        .iter()
        .filter_map(|d| {
            let at = d["metadata"]["annotations"][PAUSED_ANNOTATION].as_str()?;
            let at: usize = at.parse().ok()?;
            let answered = d["metadata"]["annotations"][RESUME_ANNOTATION].as_str();
            (answered != Some(at.to_string().as_str())).then_some((d, at))
        })
        .collect();
    let Some(&(_, at)) = paused.first() else {
        return Err(DeployError::NotPaused {
            release: release.into(),
            namespace: namespace.into(),
            canaries: live.len(),
        });
    };
    let answer = if abort {
        "abort".to_string()
    } else {
        at.to_string()
    };
    for (d, _) in &paused {
        // Its own field manager: berth's next apply of the canary leaves the answer alone.
        let patch = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": d["metadata"]["name"], "namespace": namespace,
                         "annotations": {RESUME_ANNOTATION: answer}},
        });
        cluster.apply(&patch, RESUME_MANAGER, true).await?;
    }
    Ok(at)
}

/// The field manager of `berth promote --resume`'s answers.
pub const RESUME_MANAGER: &str = "berth-resume";

impl Deployer {
    /// Deletes the release's canary Deployments (what a killed deploy may have left too);
    /// how many there were.
    pub(crate) async fn remove_canaries(
        &self,
        namespace: &str,
        release: &str,
    ) -> Result<usize, DeployError> {
        let live = self
            .cluster
            .list(
                "apps/v1",
                "Deployment",
                namespace,
                Some(&canary_selector(release)),
            )
            .await?;
        for d in &live {
            self.cluster.delete(&key_of(d)).await?;
        }
        Ok(live.len())
    }

    /// The Deployments of `main` that change their pod template, with the pods they run now:
    /// empty when nothing a canary could run changes.
    pub(crate) async fn canary_targets(
        &self,
        main: &[Value],
        current: &Release,
    ) -> Result<Vec<Target>, DeployError> {
        let mut out = Vec::new();
        for (new, old) in targets(main, current) {
            let live = self.cluster.get(&key_of(&new)).await?;
            let replicas = |v: &Value| v["spec"]["replicas"].as_u64();
            let total = replicas(&new)
                .or_else(|| live.as_ref().and_then(replicas))
                .unwrap_or(1) as u32;
            out.push(Target { new, old, total });
        }
        Ok(out)
    }

    /// Runs the canary's steps for `targets` (from [`Deployer::canary_targets`], not empty),
    /// after the caller applied the revision's other objects.
    #[expect(clippy::too_many_arguments, reason = "the deploy's context")]
    pub(crate) async fn run_canary(
        &self,
        canary: &Canary,
        targets: &[Target],
        release: &str,
        namespace: &str,
        tracker: &track::Tracker<'_>,
        lock: &Lock,
        timeout: Duration,
    ) -> Result<CanaryEnd, DeployError> {
        let names: Vec<&str> = targets.iter().map(Target::name).collect();
        self.message(
            Level::Info,
            format!(
                "canary: {} step(s) for Deployment(s) {}",
                canary.steps.len(),
                names.join(", ")
            ),
        );
        let n = canary.steps.len();
        let mut weight = 0u8;
        for (i, step) in canary.steps.iter().enumerate() {
            let at = i + 1;
            lock.check()?;
            let end = match step {
                CanaryStep::Weight(w) => {
                    weight = *w;
                    self.scale(targets, weight, None, tracker, lock, timeout, at, n)
                        .await?
                }
                CanaryStep::Pause(Some(d)) => {
                    self.message(
                        Level::Info,
                        format!("canary step {at}/{n}: pause {}", human(*d)),
                    );
                    self.watch_canary(release, namespace, *d, lock, None)
                        .await?
                }
                CanaryStep::Pause(None) => {
                    self.pause(
                        targets,
                        weight,
                        release,
                        namespace,
                        canary.pause_timeout,
                        tracker,
                        lock,
                        timeout,
                        at,
                        n,
                        "a manual pause",
                    )
                    .await?
                }
                CanaryStep::Check(checks) => {
                    let mut end = None;
                    for c in checks {
                        match self.run_check(c, release, namespace, lock, at, n).await? {
                            Verdict::Pass => {}
                            Verdict::Stop(e) => {
                                end = Some(e);
                                break;
                            }
                            Verdict::Inconclusive(why) => {
                                self.message(Level::Warning, why);
                                end = self
                                    .pause(
                                        targets,
                                        weight,
                                        release,
                                        namespace,
                                        canary.pause_timeout,
                                        tracker,
                                        lock,
                                        timeout,
                                        at,
                                        n,
                                        "an inconclusive check",
                                    )
                                    .await?;
                                if end.is_some() {
                                    break;
                                }
                            }
                        }
                    }
                    end
                }
            };
            if let Some(end) = end {
                return Ok(end);
            }
        }
        self.message(
            Level::Info,
            format!(
                "canary: every step passed; promoting the new revision to all pods of {}",
                names.join(", ")
            ),
        );
        Ok(CanaryEnd::Promote)
    }

    /// Scales every target to `weight`: canary up and ready first, then the stable one down.
    #[expect(clippy::too_many_arguments, reason = "the step's context")]
    async fn scale(
        &self,
        targets: &[Target],
        weight: u8,
        paused_at: Option<usize>,
        tracker: &track::Tracker<'_>,
        lock: &Lock,
        timeout: Duration,
        at: usize,
        n: usize,
    ) -> Result<Option<CanaryEnd>, DeployError> {
        let mut shares = Vec::new();
        for phase in [true, false] {
            let mut keys = Vec::new();
            let mut applied = BTreeMap::new();
            for t in targets {
                let pods = canary_pods(t.total, weight);
                let object = if phase {
                    canary_object(&t.new, pods, paused_at)
                } else {
                    let mut stable = t.old.clone();
                    stable["spec"]["replicas"] = (t.total - pods).into();
                    shares.push(format!(
                        "{}: {pods} new, {} stable",
                        t.name(),
                        t.total - pods
                    ));
                    stable
                };
                lock.check()?;
                let live = self.cluster.apply(&object, FIELD_MANAGER, true).await?;
                keys.push(key_of(&object));
                applied.insert(key_of(&object), live);
            }
            let waited = self
                .guarded(lock, tracker.wait(&keys, &applied, timeout))
                .await?;
            if let Err(f) = waited {
                return Ok(Some(CanaryEnd::Failed(f)));
            }
        }
        if paused_at.is_none() {
            self.message(
                Level::Info,
                format!(
                    "canary step {at}/{n}: weight {weight}% — {}",
                    shares.join("; ")
                ),
            );
        }
        Ok(None)
    }

    /// Waits at a manual pause (or after an inconclusive check) for `berth promote --resume`,
    /// at most `limit`.
    #[expect(clippy::too_many_arguments, reason = "the step's context")]
    async fn pause(
        &self,
        targets: &[Target],
        weight: u8,
        release: &str,
        namespace: &str,
        limit: Duration,
        tracker: &track::Tracker<'_>,
        lock: &Lock,
        timeout: Duration,
        at: usize,
        n: usize,
        why: &str,
    ) -> Result<Option<CanaryEnd>, DeployError> {
        // The annotation tells `berth promote --resume` which step waits.
        if let Some(end) = self
            .scale(targets, weight, Some(at), tracker, lock, timeout, at, n)
            .await?
        {
            return Ok(Some(end));
        }
        self.message(
            Level::Warning,
            format!(
                "canary step {at}/{n}: paused at weight {weight}% by {why}; resume with \
                 `berth promote --resume {release}` (or abort with `--abort`) within {}",
                human(limit)
            ),
        );
        let end = self
            .watch_canary(release, namespace, limit, lock, Some(at))
            .await?;
        match end {
            Some(end) => Ok(Some(end)),
            None if self.resumed(release, namespace, at).await?.is_some() => {
                // Resumed; the next scale drops the paused annotation.
                self.message(Level::Info, format!("canary step {at}/{n}: resumed"));
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

    /// `Some(true)` when the canary paused at step `at` was told to go on, `Some(false)` when
    /// told to abort, `None` when nobody answered yet.
    async fn resumed(
        &self,
        release: &str,
        namespace: &str,
        at: usize,
    ) -> Result<Option<bool>, DeployError> {
        let live = self
            .cluster
            .list(
                "apps/v1",
                "Deployment",
                namespace,
                Some(&canary_selector(release)),
            )
            .await?;
        for d in &live {
            match d["metadata"]["annotations"][RESUME_ANNOTATION].as_str() {
                Some("abort") => return Ok(Some(false)),
                Some(s) if s == at.to_string() => return Ok(Some(true)),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Watches the canary pods for `how_long`: a restart ends the wait as a rollout failure.
    /// With `resume_at`, an answer to the pause at that step ends it too: `None` when resumed
    /// (or the time is up; the caller tells which), an abort when aborted.
    async fn watch_canary(
        &self,
        release: &str,
        namespace: &str,
        how_long: Duration,
        lock: &Lock,
        resume_at: Option<usize>,
    ) -> Result<Option<CanaryEnd>, DeployError> {
        let until = tokio::time::Instant::now() + how_long;
        loop {
            if let Some(f) = self.canary_health(release, namespace).await? {
                return Ok(Some(CanaryEnd::Failed(f)));
            }
            if let Some(at) = resume_at {
                match self.resumed(release, namespace, at).await? {
                    Some(true) => return Ok(None),
                    Some(false) => {
                        return Ok(Some(CanaryEnd::Aborted(Failure {
                            object: "canary".into(),
                            reason: format!(
                                "aborted at step {at} by `berth promote --resume {release} --abort`"
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
            self.guarded(lock, tokio::time::sleep((until - now).min(TICK)))
                .await?;
        }
    }

    /// A canary pod that restarted or failed, as a rollout failure (always checked).
    async fn canary_health(
        &self,
        release: &str,
        namespace: &str,
    ) -> Result<Option<Failure>, DeployError> {
        let pods = self
            .cluster
            .list("v1", "Pod", namespace, Some(&canary_selector(release)))
            .await?;
        for p in &pods {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let statuses = p["status"]["containerStatuses"].as_array();
            for c in statuses.into_iter().flatten() {
                let restarts = c["restartCount"].as_u64().unwrap_or(0);
                if restarts > 0 {
                    let container = c["name"].as_str().unwrap_or_default();
                    let logs = self
                        .cluster
                        .pod_logs(namespace, name, Some(container), 20, true)
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
    async fn run_check(
        &self,
        check: &Check,
        release: &str,
        namespace: &str,
        lock: &Lock,
        at: usize,
        n: usize,
    ) -> Result<Verdict, DeployError> {
        let what = check.kind.describe(check.interval);
        let mut failed = 0u32;
        for m in 1..=check.count {
            if let Some(end) = self
                .watch_canary(release, namespace, check.interval, lock, None)
                .await?
            {
                return Ok(Verdict::Stop(end));
            }
            let measured = self.measure(check, release, namespace).await?;
            let outcome = match (&measured, check.no_data) {
                (Measured::NoData, NoData::Pass) => true,
                (Measured::NoData, NoData::Fail) => false,
                (Measured::NoData, NoData::Inconclusive) => {
                    return Ok(Verdict::Inconclusive(format!(
                        "canary step {at}/{n}: check {what} is inconclusive: the canary pods \
                         wrote no log line in {} (set `no-data: pass` if that is expected)",
                        human(check.interval)
                    )));
                }
                (Measured::Lines { matched, .. }, _) => matched.len() as u64 <= check_max(check),
            };
            self.message(
                if outcome { Level::Info } else { Level::Warning },
                format!(
                    "canary step {at}/{n}: check {what}, measurement {m}/{}: {} — {}",
                    check.count,
                    measured.summary(),
                    if outcome { "passed" } else { "failed" }
                ),
            );
            if !outcome {
                failed += 1;
                if failed > check.failure_limit {
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
                    };
                    return Ok(Verdict::Stop(CanaryEnd::Aborted(Failure {
                        object: "canary".into(),
                        reason,
                        logs,
                    })));
                }
            }
        }
        Ok(Verdict::Pass)
    }

    /// One measurement: the canary pods' log lines of the last interval.
    async fn measure(
        &self,
        check: &Check,
        release: &str,
        namespace: &str,
    ) -> Result<Measured, DeployError> {
        let CheckKind::Logs { pattern, .. } = &check.kind;
        // Checked when berth.yaml was read.
        let re = regex_lite::Regex::new(pattern).map_err(|e| DeployError::BadCheck {
            pattern: pattern.clone(),
            reason: e.to_string(),
        })?;
        let since = check.interval.as_secs_f64().ceil().max(1.0) as i64;
        let pods = self
            .cluster
            .list("v1", "Pod", namespace, Some(&canary_selector(release)))
            .await?;
        let mut lines = 0u64;
        let mut matched = Vec::new();
        for p in &pods {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let containers = p["spec"]["containers"].as_array();
            for c in containers.into_iter().flatten() {
                let container = c["name"].as_str().unwrap_or_default();
                let Ok(log) = self
                    .cluster
                    .pod_logs_since(namespace, name, container, since)
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
    }
}

/// What a check concluded.
enum Verdict {
    Pass,
    Stop(CanaryEnd),
    Inconclusive(String),
}

/// One measurement of a log check.
enum Measured {
    NoData,
    Lines {
        lines: u64,
        matched: Vec<String>,
        pods: usize,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{canary_object, targets};
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
        let c = canary_object(&deployment("web@sha256:2"), 2, Some(3));
        assert_eq!(c["metadata"]["name"], "web-canary");
        assert_eq!(c["spec"]["replicas"], 2);
        assert_eq!(c["metadata"]["annotations"]["berth.dev/paused-at"], "3");
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
        let unpaused = canary_object(&deployment("web@sha256:2"), 2, None);
        assert!(unpaused["metadata"]["annotations"].is_null());
    }

    #[test]
    fn only_deployments_whose_pod_template_changes_get_a_canary() {
        let current = Release {
            name: "prod".into(),
            namespace: "shop".into(),
            revision: 1,
            status: Status::Deployed,
            content_hash: String::new(),
            commit: None,
            user: String::new(),
            started_at: String::new(),
            finished_at: None,
            description: String::new(),
            images: Default::default(),
            objects: vec![deployment("web@sha256:1")],
            seeds: Vec::new(),
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
        assert_eq!(
            t[0].1["spec"]["template"]["spec"]["containers"][0]["image"],
            "web@sha256:1"
        );
    }
}
