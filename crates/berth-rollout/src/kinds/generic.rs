//! Any other kind: the `Ready` condition convention if the object follows it, else existence.

use crate::obj::{condition, int_at};
use crate::{FailureReason, Readiness};
use serde_json::Value;

pub(crate) fn readiness(o: &Value) -> Readiness {
    let generation = int_at(o, &["metadata", "generation"]);
    // Unlike built-in controllers, custom controllers need not report observedGeneration, so
    // only a present one that lags means "not seen yet".
    if let (Some(generation), Some(observed)) =
        (generation, int_at(o, &["status", "observedGeneration"]))
        && observed < generation
    {
        return Readiness::progressing(format!(
            "waiting for its controller to observe generation {generation} (seen: {observed})"
        ));
    }
    if let Some(stalled) = condition(o, "Stalled")
        && stalled.is_true()
    {
        return Readiness::failed(
            FailureReason::Stalled,
            format!(
                "stalled ({}); its controller needs a change to the spec",
                stalled.describe()
            ),
        );
    }
    let Some(ready) = condition(o, "Ready") else {
        return Readiness::ready("exists (reports no readiness)");
    };
    if let (Some(generation), Some(seen)) = (generation, ready.observed_generation)
        && seen < generation
    {
        return Readiness::progressing(format!(
            "Ready condition is for generation {seen}, waiting for generation {generation}"
        ));
    }
    let what = ready.describe();
    match (ready.is_true(), what.is_empty()) {
        (true, true) => Readiness::ready("Ready"),
        (true, false) => Readiness::ready(what),
        (false, true) => Readiness::progressing(format!("not ready (Ready={})", ready.status)),
        (false, false) => Readiness::progressing(format!("not ready ({what})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn certificate(generation: i64, status: Value) -> Value {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
               "metadata": {"name": "web-tls", "generation": generation},
               "spec": {"secretName": "web-tls", "dnsNames": ["web.example"]},
               "status": status})
    }

    #[test]
    fn ready_condition_true_is_ready() {
        let c = certificate(
            1,
            json!({"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1,
                "reason": "Ready", "message": "Certificate is up to date and has not expired"}],
                "notAfter": "2027-01-31T10:00:00Z"}),
        );
        assert_eq!(
            readiness(&c),
            Readiness::ready("Ready: Certificate is up to date and has not expired")
        );
    }

    #[test]
    fn ready_condition_false_progresses() {
        let c = certificate(
            1,
            json!({"conditions": [{"type": "Ready", "status": "False", "observedGeneration": 1,
                "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist"}]}),
        );
        assert_eq!(
            readiness(&c),
            Readiness::progressing(
                "not ready (DoesNotExist: Issuing certificate as Secret does not exist)"
            )
        );
    }

    #[test]
    fn stale_ready_condition_waits_for_the_new_generation() {
        let c = certificate(
            3,
            json!({"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 2}]}),
        );
        assert!(matches!(readiness(&c), Readiness::Progressing { .. }));
        let c = certificate(
            3,
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert!(matches!(readiness(&c), Readiness::Progressing { .. }));
    }

    #[test]
    fn stalled_fails() {
        // A Flux Kustomization that cannot build.
        let k = json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "conditions": [
                {"type": "Ready", "status": "False", "reason": "BuildFailed",
                 "message": "kustomize build failed: accumulating resources"},
                {"type": "Stalled", "status": "True", "reason": "BuildFailed",
                 "message": "kustomize build failed: accumulating resources"}]}});
        assert!(matches!(
            readiness(&k),
            Readiness::Failed {
                reason: FailureReason::Stalled,
                ..
            }
        ));
    }

    #[test]
    fn no_status_yet_counts_as_existing() {
        assert!(readiness(&certificate(1, json!({}))).is_ready());
    }
}
