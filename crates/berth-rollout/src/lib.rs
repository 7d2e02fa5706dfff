//! Readiness per Kubernetes kind, and failure diagnosis for pods, as pure functions.
//!
//! Everything here works on `serde_json::Value` objects in the shape the Kubernetes API returns
//! them (a GET or a watch event, `apiVersion` and `kind` included). There is no IO and no
//! Kubernetes client: `berth-cluster` fetches and watches, `berth-deploy` decides what to wait for
//! and when to give up, and this crate only answers two questions about one object at a time:
//!
//! - [`readiness`]: is this object where its spec says it should be? [`Readiness::Ready`],
//!   [`Readiness::Progressing`] (keep waiting) or [`Readiness::Failed`] (waiting cannot help; the
//!   deploy engine rolls back at once).
//! - [`diagnose_pod`]: what is wrong with this pod, in one line a person can act on, and is it
//!   [fatal](Diagnosis::fatal) for a rollout?
//!
//! # Design
//!
//! One module per kind under `kinds`, each a single `readiness(&Value) -> Readiness`, after kapp's
//! `resourcesmisc` and `kubectl rollout status`. States and failure reasons are enums, messages
//! are for people. Controllers ([`readiness`] of a Deployment, StatefulSet, ...) are judged from
//! their own status only; they never look at their pods. The tracker (to come, in `berth-deploy`)
//! is meant to list the pods of a workload that is still progressing and call [`diagnose_pod`] on
//! each: that is how a crash loop can fail a Deployment in seconds instead of at its deadline.
//!
//! Objects are matched on API group and kind, never version (`apps/v1` and the old
//! `extensions/v1beta1` Deployment read the same). Kinds without specific rules fall back to the
//! common conventions: a `Ready` condition in `status.conditions` if there is one, otherwise
//! existing is being ready.
//!
//! # Decisions worth knowing
//!
//! - **Paused Deployment**: [`Failed`](Readiness::Failed) with [`FailureReason::Paused`] when the
//!   rollout is unfinished, because Kubernetes stops both the rollout and its progress deadline
//!   while paused; waiting could only end in a timeout. A paused Deployment whose pods already
//!   match the spec is ready.
//! - **Suspended Job**: [`Progressing`](Readiness::Progressing). Unlike a paused Deployment,
//!   suspension is a normal step of a Job's life: queue controllers such as Kueue create Jobs
//!   suspended and resume them when admitted.
//! - **Ingress**: always ready, with the load-balancer address in the message when there is one.
//!   Argo CD waits for `status.loadBalancer.ingress`, but many ingress controllers never publish
//!   it (and a cluster may have no controller for the class at all), so waiting would fail good
//!   deploys. Traffic is verified by the workload's readiness, not by the Ingress object.
//! - **Service of type LoadBalancer**: progressing until `status.loadBalancer.ingress` is set. The
//!   user asked for an external address; a cluster without a load-balancer implementation never
//!   assigns one, and the message says so when the deadline comes.
//! - **HorizontalPodAutoscaler**: ready even with `ScalingActive=False`. On a cluster without a
//!   metrics server the reason is `FailedGetResourceMetric`; the workload runs fine at its current
//!   size, so the message carries the warning instead of failing the deploy. `AbleToScale=False`
//!   (usually a wrong or not yet created `scaleTargetRef`) keeps it progressing.
//! - **Custom resources**: `Ready=False` is progressing, not failed: controllers report it while
//!   they work (cert-manager's `Issuing`, Flux's `Progressing`). Only the kstatus convention
//!   `Stalled=True` fails at once. A custom resource whose controller has not written any status
//!   yet counts as ready, as in kstatus: nothing in the object says otherwise.
//! - **PersistentVolumeClaim**: `Pending` is progressing. With a `WaitForFirstConsumer` storage
//!   class a claim binds only once a pod using it is scheduled, so the engine must track claims
//!   together with their workloads, never wait for them before applying the workloads.
//!
//! ```
//! use berth_rollout::{readiness, Readiness};
//! use serde_json::json;
//!
//! let pvc = json!({
//!     "apiVersion": "v1", "kind": "PersistentVolumeClaim",
//!     "metadata": {"name": "data"},
//!     "status": {"phase": "Bound"}
//! });
//! assert!(readiness(&pvc).is_ready());
//! ```

mod diagnose;
mod kinds;
mod obj;

use serde::Serialize;
use serde_json::Value;

pub use diagnose::{Diagnosis, DiagnosisKind, FATAL_RESTARTS, diagnose_pod};

/// Where an object stands relative to its spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Readiness {
    /// The object has reached the state its spec asks for.
    Ready {
        /// What "ready" amounted to, e.g. "3 of 3 replicas available".
        message: String,
    },
    /// Not there yet; worth waiting for, up to the deploy's deadline.
    Progressing {
        /// What is being waited for, e.g. "1 of 3 replicas updated".
        message: String,
    },
    /// The object will not become ready without a change; waiting cannot help.
    Failed {
        /// Why, for machines.
        reason: FailureReason,
        /// Why, for people, with the cluster's own words where it gave any.
        message: String,
    },
}

impl Readiness {
    /// Whether the object is ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready { .. })
    }

    /// Whether the object has failed for good.
    pub fn is_failed(&self) -> bool {
        matches!(self, Readiness::Failed { .. })
    }

    /// The one-line message of any state.
    pub fn message(&self) -> &str {
        match self {
            Readiness::Ready { message }
            | Readiness::Progressing { message }
            | Readiness::Failed { message, .. } => message,
        }
    }

    pub(crate) fn ready(message: impl Into<String>) -> Self {
        Readiness::Ready {
            message: message.into(),
        }
    }

    pub(crate) fn progressing(message: impl Into<String>) -> Self {
        Readiness::Progressing {
            message: message.into(),
        }
    }

    pub(crate) fn failed(reason: FailureReason, message: impl Into<String>) -> Self {
        Readiness::Failed {
            reason,
            message: message.into(),
        }
    }
}

/// Why an object is [`Readiness::Failed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// A Deployment's `Progressing` condition has reason `ProgressDeadlineExceeded`: the
    /// controller gave up after `spec.progressDeadlineSeconds`.
    ProgressDeadlineExceeded,
    /// A Deployment is paused (`spec.paused`) with its rollout unfinished.
    Paused,
    /// A Job has the `Failed` (or the earlier `FailureTarget`) condition, e.g.
    /// `BackoffLimitExceeded` or `DeadlineExceeded`.
    JobFailed,
    /// A Pod is in phase `Failed`: none of its containers will be restarted.
    PodFailed,
    /// A PersistentVolumeClaim is in phase `Lost`: its volume is gone.
    ClaimLost,
    /// A CustomResourceDefinition's names conflict with another (`NamesAccepted=False`), so it
    /// will never be established.
    CrdNamesNotAccepted,
    /// A resource reports `Stalled=True` (the kstatus convention): its controller has stopped
    /// trying until the spec changes.
    Stalled,
}

/// Readiness of any Kubernetes object, dispatching on its API group and kind.
///
/// `obj` must carry `apiVersion` and `kind`, as objects from a GET or a watch do. Items of a
/// list response often do not; an object without them falls back to the generic rules (a
/// `Ready` condition, else existence) and so may be reported ready too early.
pub fn readiness(obj: &Value) -> Readiness {
    let group = obj::str_at(obj, &["apiVersion"])
        .and_then(|v| v.rsplit_once('/'))
        .map_or("", |(group, _version)| group);
    let kind = obj::str_at(obj, &["kind"]).unwrap_or("");
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => kinds::deployment::readiness(obj),
        ("apps", "StatefulSet") => kinds::statefulset::readiness(obj),
        ("apps" | "extensions", "DaemonSet") => kinds::daemonset::readiness(obj),
        ("apps" | "extensions", "ReplicaSet") => kinds::replicaset::readiness(obj),
        ("", "Pod") => kinds::pod::readiness(obj),
        ("batch", "Job") => kinds::job::readiness(obj),
        ("", "PersistentVolumeClaim") => kinds::pvc::readiness(obj),
        ("", "Service") => kinds::service::readiness(obj),
        ("networking.k8s.io" | "extensions", "Ingress") => kinds::ingress::readiness(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => kinds::hpa::readiness(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => kinds::crd::readiness(obj),
        _ => kinds::generic::readiness(obj),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dispatch_ignores_the_version() {
        let old = json!({
            "apiVersion": "extensions/v1beta1", "kind": "Deployment",
            "metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1}
        });
        assert_eq!(
            readiness(&old),
            Readiness::progressing("0 of 1 replicas updated")
        );
    }

    #[test]
    fn kinds_without_rules_are_ready_when_they_exist() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert!(readiness(&cm).is_ready());
    }

    #[test]
    fn a_core_kind_name_in_another_group_is_not_the_core_kind() {
        // A CRD named Pod in some group must not be judged by pod rules.
        let cr = json!({
            "apiVersion": "example.com/v1", "kind": "Pod",
            "status": {"phase": "Failed"}
        });
        assert!(readiness(&cr).is_ready());
    }

    #[test]
    fn readiness_serializes_with_a_state_tag() {
        let r = Readiness::failed(FailureReason::JobFailed, "BackoffLimitExceeded");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"state": "failed", "reason": "job_failed", "message": "BackoffLimitExceeded"})
        );
        assert_eq!(r.message(), "BackoffLimitExceeded");
        assert!(r.is_failed() && !r.is_ready());
    }
}
