//! Waiting for objects to become ready, driven by watches.
//!
//! One watch per kind (filtered by the release label, so a 200-object release needs a handful
//! of connections, not 200), plus one watch on the release's pods for diagnosis: a fatal
//! diagnosis (image cannot be pulled, crash loop) fails the wait the moment it shows, instead of
//! at the deadline. Readiness rules and diagnoses are `berth-rollout`'s pure functions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cluster::{Cluster, ObjectKey, Watched};
use berth_rollout::{Diagnosis, DiagnosisKind, Readiness, diagnose_pod, readiness};
use berth_types::{Event, EventSink, Level, State, Step};

use crate::heartbeat::Heartbeat;
use futures::StreamExt;
use serde_json::Value;

/// Annotation giving one object a shorter deadline than the deploy's (`90s`, `2m`).
pub const TIMEOUT_ANNOTATION: &str = "berth.dev/timeout";

/// Why a wait failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The object that failed (`Kind/name`), or the pod a diagnosis is about.
    pub object: String,
    /// What happened and what to check.
    pub reason: String,
    /// The last log lines of the failing container, when there are any.
    pub logs: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.reason)?;
        if let Some(logs) = &self.logs {
            write!(f, "\n  last log lines:")?;
            for l in logs.lines() {
                write!(f, "\n    {l}")?;
            }
        }
        Ok(())
    }
}

/// What the tracker needs to know about the deploy.
pub struct Tracker<'a> {
    /// The cluster.
    pub cluster: &'a Cluster,
    /// The release's namespace.
    pub namespace: &'a str,
    /// Label selector matching the release's objects and pods.
    pub selector: String,
    /// Where events go.
    pub sink: &'a Arc<dyn EventSink>,
    /// Deploy start, for event timings and to ignore pods older than this deploy.
    pub started: Instant,
    /// Pods created before this instant are not diagnosed (they belong to earlier revisions).
    pub pods_since: jiff::Timestamp,
}

/// How long a Service of type LoadBalancer may wait for its address before berth asks whether
/// anything in the cluster assigns one. Cloud load balancers take 20-60 s to report an
/// address, but their controller records an Event within seconds.
pub const LB_SILENCE: Duration = Duration::from_secs(30);

/// How many objects a heartbeat names one by one.
const SHOWN: usize = 5;

fn is_load_balancer(service: &Value) -> bool {
    service["kind"] == "Service" && service["spec"]["type"] == "LoadBalancer"
}

fn short(key: &ObjectKey) -> String {
    format!("{}/{}", key.kind, key.name)
}

impl Tracker<'_> {
    fn emit(&self, object: &str, state: State, message: &str) {
        self.sink.emit(Event::ObjectState {
            object: object.into(),
            state,
            message: message.into(),
            millis: self.started.elapsed().as_millis() as u64,
        });
    }

    /// Waits until every object in `keys` is ready, one is failed, a pod shows a fatal
    /// diagnosis, or `timeout` passes. `initial` holds states already known (from apply
    /// responses) so objects that are ready at once need no watch.
    pub async fn wait(
        &self,
        keys: &[ObjectKey],
        initial: &BTreeMap<ObjectKey, Value>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let mut pending: BTreeMap<ObjectKey, String> = BTreeMap::new();
        for k in keys {
            match initial.get(k).map(readiness) {
                Some(Readiness::Ready { message }) => self.emit(&short(k), State::Ready, &message),
                Some(Readiness::Failed { message, .. }) => {
                    return Err(Failure {
                        object: short(k),
                        reason: message,
                        logs: None,
                    });
                }
                Some(Readiness::Progressing { message }) => {
                    pending.insert(k.clone(), message);
                }
                None => {
                    pending.insert(k.clone(), "waiting".into());
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let kinds: BTreeSet<(String, String, Option<String>)> = pending
            .keys()
            .map(|k| (k.api_version.clone(), k.kind.clone(), k.namespace.clone()))
            .collect();
        let mut streams = Vec::new();
        for (api_version, kind, ns) in &kinds {
            let s = self
                .cluster
                .watch(api_version, kind, ns.as_deref(), None, Some(&self.selector))
                .await
                .map_err(|e| Failure {
                    object: kind.clone(),
                    reason: e.to_string(),
                    logs: None,
                })?;
            streams.push(s.map(|e| (false, e)).boxed());
        }
        let pods = self
            .cluster
            .watch(
                "v1",
                "Pod",
                Some(self.namespace),
                None,
                Some(&self.selector),
            )
            .await
            .map_err(|e| Failure {
                object: "pods".into(),
                reason: e.to_string(),
                logs: None,
            })?;
        streams.push(pods.map(|e| (true, e)).boxed());
        let mut all = futures::stream::select_all(streams);
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        // The latest non-fatal finding of each new pod, told with a timeout: "not ready" alone
        // does not say that a probe fails or a Secret is missing.
        let mut findings: BTreeMap<String, Diagnosis> = BTreeMap::new();
        let start = tokio::time::Instant::now();
        // Each object waits until the deploy's deadline, or its own `berth.dev/timeout` when
        // that is shorter.
        let deadlines: BTreeMap<ObjectKey, (tokio::time::Instant, Duration)> = pending
            .keys()
            .map(|k| {
                let own = initial
                    .get(k)
                    .and_then(|o| o["metadata"]["annotations"][TIMEOUT_ANNOTATION].as_str())
                    .and_then(|t| berth_types::duration::parse(t).ok())
                    .filter(|d| *d < timeout)
                    .unwrap_or(timeout);
                (k.clone(), (start + own, own))
            })
            .collect();
        // Services of type LoadBalancer: after LB_SILENCE without an address, ask whether
        // anything in the cluster works on them at all (see `load_balancer_silence`).
        let mut lb_check: Option<tokio::time::Instant> = pending
            .keys()
            .any(|k| initial.get(k).is_some_and(is_load_balancer))
            .then(|| start + LB_SILENCE);
        // Never silent: what is still awaited, every so often (see `heartbeat`).
        let mut heartbeat = Heartbeat::new(start, timeout);
        loop {
            let (first_key, (deadline, allowed)) = pending
                .keys()
                .map(|k| (k, deadlines[k]))
                .min_by_key(|(_, (d, _))| *d)
                .expect("pending is not empty");
            let first_key = first_key.clone();
            let wake = lb_check
                .map_or(deadline, |c| c.min(deadline))
                .min(heartbeat.next());
            let next = tokio::time::timeout_at(wake, all.next()).await;
            let now = tokio::time::Instant::now();
            if next.is_err()
                && now < deadline
                && lb_check.is_none_or(|c| now < c)
                && let Some(waited) = heartbeat.beat(now)
            {
                self.still_waiting(&pending, &waited);
                continue;
            }
            if next.is_err() && lb_check.is_some_and(|c| c <= deadline) {
                lb_check = None;
                for k in pending.keys() {
                    if k.kind == "Service"
                        && let Some(reason) = self.load_balancer_silence(k).await
                    {
                        self.emit(&short(k), State::Failed, &reason);
                        return Err(Failure {
                            object: short(k),
                            reason,
                            logs: None,
                        });
                    }
                }
                continue;
            }
            let (is_pod, event) = match next {
                Err(_) => {
                    let msg = &pending[&first_key];
                    let others = pending.len() - 1;
                    let pods = self.told_findings(&findings).await;
                    return Err(Failure {
                        object: short(&first_key),
                        reason: format!(
                            "not ready after {}s: {msg}{}{pods}",
                            allowed.as_secs_f64().ceil() as u64,
                            if others > 0 {
                                format!(" (and {others} more objects not ready)")
                            } else {
                                String::new()
                            }
                        ),
                        logs: None,
                    });
                }
                Ok(None) => {
                    return Err(Failure {
                        object: "watch".into(),
                        reason: "the watch ended unexpectedly".into(),
                        logs: None,
                    });
                }
                Ok(Some(e)) => e,
            };
            let obj = match event {
                Ok(Watched::Applied(o)) => o,
                Ok(Watched::Deleted(o)) => {
                    if is_pod && let Some(name) = o["metadata"]["name"].as_str() {
                        findings.remove(name);
                    }
                    if !is_pod
                        && let Ok(k) = ObjectKey::of(&o)
                        && pending.contains_key(&k)
                    {
                        return Err(Failure {
                            object: short(&k),
                            reason: "was deleted while berth waited for it".into(),
                            logs: None,
                        });
                    }
                    continue;
                }
                Err(e) => {
                    tracing::debug!("watch: {e}");
                    continue;
                }
            };
            if is_pod {
                self.diagnose(&obj, &mut seen, &mut findings).await?;
                continue;
            }
            let Ok(k) = ObjectKey::of(&obj) else { continue };
            let Some(last) = pending.get(&k).cloned() else {
                continue;
            };
            match readiness(&obj) {
                Readiness::Ready { message } => {
                    pending.remove(&k);
                    self.emit(&short(&k), State::Ready, &message);
                    if pending.is_empty() {
                        return Ok(());
                    }
                }
                Readiness::Failed { message, .. } => {
                    self.emit(&short(&k), State::Failed, &message);
                    let logs = self.logs_of_failed_job(&k, &obj).await;
                    return Err(Failure {
                        object: short(&k),
                        reason: message,
                        logs,
                    });
                }
                Readiness::Progressing { message } => {
                    if message != last {
                        self.emit(&short(&k), State::Progressing, &message);
                        pending.insert(k, message);
                    }
                }
            }
        }
    }

    /// The heartbeat of a wait: one `waiting` state per object still awaited (the first
    /// [`SHOWN`]; the rest counted), with how long berth has waited and may wait.
    fn still_waiting(&self, pending: &BTreeMap<ObjectKey, String>, waited: &str) {
        for (k, message) in pending.iter().take(SHOWN) {
            self.emit(
                &short(k),
                State::Waiting,
                &format!("still waiting {waited}: {message}"),
            );
        }
        if pending.len() > SHOWN {
            self.sink.emit(Event::Message {
                step: Step::Deploy.into(),
                level: Level::Info,
                message: format!(
                    "still waiting {waited}: and {} more objects not ready",
                    pending.len() - SHOWN
                ),
            });
        }
    }

    /// For a Service of type LoadBalancer still without an address: `Some(why)` when waiting
    /// on is pointless — no load-balancer controller has said anything about it (cloud
    /// controllers and MetalLB record Events such as `EnsuringLoadBalancer` or `IPAllocated`),
    /// or one said it cannot (a Warning Event). `None` while a controller is at work.
    async fn load_balancer_silence(&self, key: &ObjectKey) -> Option<String> {
        let live = self.cluster.get(key).await.ok().flatten()?;
        if !is_load_balancer(&live) || !live["status"]["loadBalancer"]["ingress"].is_null() {
            return None;
        }
        let events = self
            .cluster
            .events_about(self.namespace, "Service", &key.name)
            .await
            .ok()?;
        let secs = LB_SILENCE.as_secs();
        if let Some(w) = events.iter().rev().find(|e| e["type"] == "Warning") {
            return Some(format!(
                "no load-balancer address after {secs}s; {}: {}",
                w["reason"].as_str().unwrap_or("Warning"),
                w["message"].as_str().unwrap_or("").trim()
            ));
        }
        if !events.is_empty() {
            return None;
        }
        let class = live["spec"]["loadBalancerClass"]
            .as_str()
            .map(|c| format!(" of loadBalancerClass `{c}`"))
            .unwrap_or_default();
        Some(format!(
            "nothing assigns load-balancer addresses in this cluster: no address and no event \
             from a load-balancer controller{class} after {secs}s. Install one (MetalLB, the \
             cloud's controller manager, cloud-provider-kind on kind, `minikube tunnel` on \
             minikube), or expose the Service as type ClusterIP behind an Ingress, or NodePort"
        ))
    }

    /// "; pod P: <finding> (last probe: ...)" for up to three pods, for a timeout's message.
    async fn told_findings(&self, findings: &BTreeMap<String, Diagnosis>) -> String {
        let mut out = String::new();
        for (pod, d) in findings.iter().take(3) {
            out.push_str(&format!("; pod {pod}: {}", d.message));
            if d.kind == DiagnosisKind::ReadinessProbeFailed
                && let Some(probe) = self.last_probe_failure(pod).await
            {
                out.push_str(&format!(" (last probe: {probe})"));
            }
        }
        if findings.len() > 3 {
            out.push_str(&format!("; and {} more pods", findings.len() - 3));
        }
        out
    }

    /// The message of the newest `Unhealthy` Event of `pod` (the kubelet's probe result, e.g.
    /// "Readiness probe failed: HTTP probe failed with statuscode: 404"): a pod's status says
    /// only that it is not ready.
    async fn last_probe_failure(&self, pod: &str) -> Option<String> {
        let events = self
            .cluster
            .events_about(self.namespace, "Pod", pod)
            .await
            .ok()?;
        events
            .iter()
            .filter(|e| e["reason"] == "Unhealthy")
            .max_by_key(|e| {
                e["lastTimestamp"]
                    .as_str()
                    .or(e["eventTime"].as_str())
                    .unwrap_or("")
                    .to_string()
            })
            .and_then(|e| e["message"].as_str())
            .map(|m| m.trim().to_string())
    }

    async fn diagnose(
        &self,
        pod: &Value,
        seen: &mut BTreeSet<(String, String)>,
        findings: &mut BTreeMap<String, Diagnosis>,
    ) -> Result<(), Failure> {
        let created = pod["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if created.is_some_and(|c| c < self.pods_since) {
            return Ok(());
        }
        let name = pod["metadata"]["name"].as_str().unwrap_or("?").to_string();
        let owned_by_job = pod["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|o| o.iter().any(|r| r["kind"] == "Job"));
        let found = diagnose_pod(pod);
        match found.first() {
            Some(d) => findings.insert(name.clone(), d.clone()),
            None => findings.remove(&name),
        };
        for d in found {
            // A Job retries failed pods up to its backoffLimit; the Job's own readiness says
            // when it has given up.
            let fatal =
                d.fatal && !(owned_by_job && d.kind == DiagnosisKind::ContainerExitedNonZero);
            // A container that has just started is not ready until its probe has passed: no
            // warning before the probe has had its chance (the finding still explains a
            // timeout).
            if d.kind == DiagnosisKind::ReadinessProbeFailed
                && !fatal
                && within_readiness_grace(pod, d.container.as_deref(), jiff::Timestamp::now())
            {
                continue;
            }
            if seen.insert((name.clone(), d.message.clone())) {
                self.sink.emit(Event::Message {
                    step: Step::Deploy.into(),
                    level: if fatal { Level::Error } else { Level::Warning },
                    message: format!("pod {name}: {}", d.message),
                });
            }
            if fatal {
                let logs = if matches!(d.kind, DiagnosisKind::CrashLoop | DiagnosisKind::OomKilled)
                {
                    self.logs(&name, d.container.as_deref(), true).await
                } else {
                    None
                };
                return Err(Failure {
                    object: format!("Pod/{name}"),
                    reason: d.message,
                    logs,
                });
            }
        }
        Ok(())
    }

    async fn logs(&self, pod: &str, container: Option<&str>, previous: bool) -> Option<String> {
        let got = self
            .cluster
            .pod_logs(self.namespace, pod, container, 20, previous)
            .await;
        match got {
            Ok(text) if !text.trim().is_empty() => Some(text),
            Ok(_) => None,
            Err(e) => Some(format!("(logs unavailable: {e})")),
        }
    }

    async fn logs_of_failed_job(&self, key: &ObjectKey, job: &Value) -> Option<String> {
        if key.kind != "Job" {
            return None;
        }
        let uid = job["metadata"]["uid"].as_str()?;
        let pods = self
            .cluster
            .list(
                "v1",
                "Pod",
                self.namespace,
                Some(&format!("controller-uid={uid}")),
            )
            .await
            .ok()?;
        let pod = pods.last()?;
        let name = pod["metadata"]["name"].as_str()?;
        self.logs(name, None, false).await
    }
}

/// Whether `container` of `pod` started recently enough that its readiness probe has not had
/// its chance yet: its initial delay plus the failures that make the kubelet call it unready
/// (Kubernetes' defaults: 10 s period, 3 failures), at least 5 s.
fn within_readiness_grace(pod: &Value, container: Option<&str>, now: jiff::Timestamp) -> bool {
    let Some(container) = container else {
        return false;
    };
    let started = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .and_then(|c| c["state"]["running"]["startedAt"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let Some(started) = started else {
        return false;
    };
    let probe = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .map(|c| &c["readinessProbe"]);
    let field = |key: &str, default: i64| {
        probe
            .and_then(|p| p[key].as_i64())
            .unwrap_or(default)
            .max(0)
    };
    let grace = match probe {
        Some(p) if p.is_object() => {
            field("initialDelaySeconds", 0)
                + field("periodSeconds", 10) * field("failureThreshold", 3)
        }
        _ => 5,
    }
    .max(5);
    now.duration_since(started).as_secs() < grace
}

#[cfg(test)]
mod grace_tests {
    use super::within_readiness_grace;
    use serde_json::json;

    fn pod(probe: serde_json::Value) -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "web", "readinessProbe": probe}]},
            "status": {"containerStatuses": [{"name": "web",
                "state": {"running": {"startedAt": "2026-12-03T13:00:00Z"}}}]}})
    }

    /// Found by the getting-started guide: every healthy rollout with a readiness probe
    /// warned "running but not ready" a second after its pod started.
    #[test]
    fn a_just_started_container_gets_its_probes_time_before_a_warning() {
        let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
        // periodSeconds 2, failureThreshold 3 (default): 6 s.
        let p = pod(json!({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 2}));
        assert!(within_readiness_grace(
            &p,
            Some("web"),
            at("2026-12-03T13:00:01Z")
        ));
        assert!(!within_readiness_grace(
            &p,
            Some("web"),
            at("2026-12-03T13:00:07Z")
        ));
        // Kubernetes' defaults: 30 s, plus the initial delay.
        let p = pod(json!({"tcpSocket": {"port": 8080}, "initialDelaySeconds": 15}));
        assert!(within_readiness_grace(
            &p,
            Some("web"),
            at("2026-12-03T13:00:44Z")
        ));
        assert!(!within_readiness_grace(
            &p,
            Some("web"),
            at("2026-12-03T13:00:46Z")
        ));
        // No probe: 5 s.
        let p = pod(serde_json::Value::Null);
        assert!(within_readiness_grace(
            &p,
            Some("web"),
            at("2026-12-03T13:00:04Z")
        ));
        assert!(!within_readiness_grace(
            &p,
            Some("web"),
            at("2026-12-03T13:00:06Z")
        ));
        assert!(!within_readiness_grace(
            &p,
            None,
            at("2026-12-03T13:00:01Z")
        ));
    }
}
