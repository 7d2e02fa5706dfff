//! `apps/v1` ReplicaSet: enough available replicas for the observed spec.

use super::{desired_replicas, spec_not_observed};
use crate::Readiness;
use crate::obj::{condition, count};
use serde_json::Value;

pub(crate) fn readiness(r: &Value) -> Readiness {
    if let Some(wait) = spec_not_observed(r) {
        return Readiness::progressing(wait);
    }
    let want = desired_replicas(r);
    let available = count(r, &["status", "availableReplicas"]);
    if available >= want {
        return Readiness::ready(format!("{available} of {want} replicas available"));
    }
    let waiting = format!("{available} of {want} replicas available");
    match condition(r, "ReplicaFailure") {
        Some(c) if c.is_true() => Readiness::progressing(format!("{waiting}; {}", c.describe())),
        _ => Readiness::progressing(waiting),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-7d9c", "generation": 1},
            "spec": {"replicas": 2},
            "status": status
        })
    }

    #[test]
    fn available_replicas_make_it_ready() {
        let r = rs(
            json!({"observedGeneration": 1, "replicas": 2, "fullyLabeledReplicas": 2,
                          "readyReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(readiness(&r), Readiness::ready("2 of 2 replicas available"));
    }

    #[test]
    fn replica_failure_is_reported() {
        let r = rs(
            json!({"observedGeneration": 1, "replicas": 0, "conditions": [{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "pods \"web-7d9c-x\" is forbidden: error looking up service account default/app: serviceaccount \"app\" not found"}]}),
        );
        let r = readiness(&r);
        assert!(matches!(r, Readiness::Progressing { .. }));
        assert!(
            r.message()
                .starts_with("0 of 2 replicas available; FailedCreate: ")
        );
    }
}
