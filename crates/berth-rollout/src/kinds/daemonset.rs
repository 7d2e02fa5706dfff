//! `apps/v1` DaemonSet, after `kubectl rollout status`.

use super::spec_not_observed;
use crate::Readiness;
use crate::obj::{count, str_at};
use serde_json::Value;

pub(crate) fn readiness(d: &Value) -> Readiness {
    if let Some(wait) = spec_not_observed(d) {
        return Readiness::progressing(wait);
    }
    let desired = count(d, &["status", "desiredNumberScheduled"]);
    let updated = count(d, &["status", "updatedNumberScheduled"]);
    let available = count(d, &["status", "numberAvailable"]);
    let on_delete = str_at(d, &["spec", "updateStrategy", "type"]) == Some("OnDelete");

    if !on_delete && updated < desired {
        return Readiness::progressing(format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return Readiness::progressing(format!("{available} of {desired} pods available"));
    }
    if desired == 0 {
        return Readiness::ready(
            "no node matches its node selector and tolerations; no pods to run",
        );
    }
    if on_delete {
        return Readiness::ready(format!(
            "{available} of {desired} pods available; updateStrategy OnDelete: pods take the new \
             revision only when deleted"
        ));
    }
    Readiness::ready(format!("{available} of {desired} pods available"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(strategy: &str, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "generation": 3},
            "spec": {"updateStrategy": {"type": strategy}},
            "status": status
        })
    }

    #[test]
    fn all_nodes_updated_and_available_is_ready() {
        let d = ds(
            "RollingUpdate",
            json!({"observedGeneration": 3, "currentNumberScheduled": 4,
                   "desiredNumberScheduled": 4, "numberAvailable": 4, "numberMisscheduled": 0,
                   "numberReady": 4, "updatedNumberScheduled": 4}),
        );
        assert_eq!(readiness(&d), Readiness::ready("4 of 4 pods available"));
    }

    #[test]
    fn waits_for_updates_then_availability() {
        let d = ds(
            "RollingUpdate",
            json!({"observedGeneration": 3, "desiredNumberScheduled": 4,
                   "numberAvailable": 4, "updatedNumberScheduled": 2}),
        );
        assert_eq!(readiness(&d).message(), "2 of 4 pods updated");
        let d = ds(
            "RollingUpdate",
            json!({"observedGeneration": 3, "desiredNumberScheduled": 4,
                   "numberAvailable": 3, "updatedNumberScheduled": 4,
                   "numberUnavailable": 1}),
        );
        assert_eq!(readiness(&d).message(), "3 of 4 pods available");
    }

    #[test]
    fn on_delete_ignores_updates() {
        let d = ds(
            "OnDelete",
            json!({"observedGeneration": 3, "desiredNumberScheduled": 2,
                   "numberAvailable": 2, "updatedNumberScheduled": 0}),
        );
        assert!(readiness(&d).is_ready());
    }

    #[test]
    fn no_matching_nodes_is_ready() {
        let d = ds("RollingUpdate", json!({"observedGeneration": 3}));
        assert!(readiness(&d).is_ready());
    }

    #[test]
    fn unobserved_spec_waits() {
        let d = ds("RollingUpdate", json!({"observedGeneration": 2}));
        assert!(matches!(readiness(&d), Readiness::Progressing { .. }));
    }
}
