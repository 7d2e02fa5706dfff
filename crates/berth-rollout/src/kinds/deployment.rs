//! `apps/v1` Deployment, after `kubectl rollout status`.

use super::{desired_replicas, spec_not_observed};
use crate::obj::{condition, count, flag};
use crate::{FailureReason, Readiness};
use serde_json::Value;

pub(crate) fn readiness(d: &Value) -> Readiness {
    if let Some(wait) = spec_not_observed(d) {
        return Readiness::progressing(wait);
    }
    if let Some(c) = condition(d, "Progressing")
        && c.reason == "ProgressDeadlineExceeded"
    {
        return Readiness::failed(
            FailureReason::ProgressDeadlineExceeded,
            format!(
                "rollout made no progress within spec.progressDeadlineSeconds ({})",
                c.describe()
            ),
        );
    }

    let want = desired_replicas(d);
    let updated = count(d, &["status", "updatedReplicas"]);
    let total = count(d, &["status", "replicas"]);
    let available = count(d, &["status", "availableReplicas"]);
    let waiting = if updated < want {
        format!("{updated} of {want} replicas updated")
    } else if total > updated {
        format!("{} old replicas pending termination", total - updated)
    } else if available < updated {
        format!("{available} of {updated} updated replicas available")
    } else {
        return Readiness::ready(format!("{available} of {want} replicas available"));
    };

    if flag(d, &["spec", "paused"]) {
        return Readiness::failed(
            FailureReason::Paused,
            format!(
                "paused (spec.paused) with the rollout unfinished ({waiting}); Kubernetes will \
                 not continue it until it is resumed (kubectl rollout resume)"
            ),
        );
    }
    // Quota or admission rejections show here long before the progress deadline; they may
    // clear (quota freed, webhook back), so they inform rather than fail.
    match condition(d, "ReplicaFailure") {
        Some(c) if c.is_true() => Readiness::progressing(format!("{waiting}; {}", c.describe())),
        _ => Readiness::progressing(waiting),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, replicas: i64, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "generation": generation},
            "spec": {"replicas": replicas},
            "status": status
        })
    }

    #[test]
    fn complete_rollout_is_ready() {
        // Shape of a real status after `kubectl apply` settled.
        let d = deployment(
            2,
            3,
            json!({
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                "readyReplicas": 3, "availableReplicas": 3,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability."},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": "ReplicaSet \"web-7d9c\" has successfully progressed."}
                ]
            }),
        );
        assert_eq!(readiness(&d), Readiness::ready("3 of 3 replicas available"));
    }

    #[test]
    fn unobserved_generation_waits_even_if_counters_look_done() {
        let d = deployment(
            3,
            1,
            json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                   "availableReplicas": 1}),
        );
        assert_eq!(
            readiness(&d),
            Readiness::progressing("waiting for the controller to observe generation 3 (seen: 2)")
        );
    }

    #[test]
    fn missing_status_waits() {
        let d = json!({"kind": "Deployment", "metadata": {"generation": 1}, "spec": {}});
        assert!(matches!(readiness(&d), Readiness::Progressing { .. }));
    }

    #[test]
    fn waits_for_updates_then_old_replicas_then_availability() {
        let d = deployment(
            2,
            3,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 2,
                   "availableReplicas": 3}),
        );
        assert_eq!(readiness(&d).message(), "2 of 3 replicas updated");
        let d = deployment(
            2,
            3,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3,
                   "availableReplicas": 3}),
        );
        assert_eq!(
            readiness(&d).message(),
            "1 old replicas pending termination"
        );
        let d = deployment(
            2,
            3,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                   "availableReplicas": 1}),
        );
        assert_eq!(readiness(&d).message(), "1 of 3 updated replicas available");
    }

    #[test]
    fn scaled_to_zero_is_ready_with_an_empty_status() {
        // Zero counters are omitted by the API.
        let d = deployment(4, 0, json!({"observedGeneration": 4}));
        assert!(readiness(&d).is_ready());
    }

    #[test]
    fn progress_deadline_exceeded_fails() {
        let d = deployment(
            2,
            2,
            json!({
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
                "availableReplicas": 2, "unavailableReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet \"web-5f7b\" has timed out progressing."}]
            }),
        );
        let Readiness::Failed { reason, message } = readiness(&d) else {
            panic!("expected a failure");
        };
        assert_eq!(reason, FailureReason::ProgressDeadlineExceeded);
        assert!(message.contains("has timed out progressing"), "{message}");
    }

    #[test]
    fn paused_mid_rollout_fails_but_paused_and_settled_is_ready() {
        let mut d = deployment(
            5,
            2,
            json!({"observedGeneration": 5, "replicas": 2, "updatedReplicas": 0,
                   "availableReplicas": 2,
                   "conditions": [{"type": "Progressing", "status": "Unknown",
                                   "reason": "DeploymentPaused"}]}),
        );
        d["spec"]["paused"] = json!(true);
        let r = readiness(&d);
        assert!(matches!(
            r,
            Readiness::Failed {
                reason: FailureReason::Paused,
                ..
            }
        ));
        assert!(r.message().contains("0 of 2 replicas updated"));

        d["status"]["updatedReplicas"] = json!(2);
        assert!(readiness(&d).is_ready());
    }

    #[test]
    fn replica_failure_is_reported_while_progressing() {
        let d = deployment(
            1,
            2,
            json!({"observedGeneration": 1, "conditions": [{
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": "pods \"web-1\" is forbidden: exceeded quota: compute"}]}),
        );
        assert_eq!(
            readiness(&d),
            Readiness::progressing(
                "0 of 2 replicas updated; FailedCreate: pods \"web-1\" is forbidden: \
                 exceeded quota: compute"
            )
        );
    }
}
