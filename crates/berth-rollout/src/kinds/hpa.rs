//! `autoscaling/v2` HorizontalPodAutoscaler: ready unless it cannot reach its target.
//!
//! `ScalingActive=False` is reported, not failed: on a cluster without a metrics server the HPA
//! says `FailedGetResourceMetric` forever, while the workload runs fine at its current size.
//! `autoscaling/v1` objects carry no conditions in `status` and are ready at once.

use crate::Readiness;
use crate::obj::{condition, count};
use serde_json::Value;

pub(crate) fn readiness(h: &Value) -> Readiness {
    if let Some(c) = condition(h, "AbleToScale")
        && c.is_false()
    {
        return Readiness::progressing(format!(
            "cannot scale its target ({}); check spec.scaleTargetRef",
            c.describe()
        ));
    }
    let replicas = format!(
        "{} current, {} desired replicas",
        count(h, &["status", "currentReplicas"]),
        count(h, &["status", "desiredReplicas"])
    );
    match condition(h, "ScalingActive") {
        Some(c) if c.is_false() && c.reason.starts_with("FailedGet") => Readiness::ready(format!(
            "{replicas}; not scaling: metrics unavailable ({}); is a metrics server installed?",
            c.describe()
        )),
        Some(c) if c.is_false() => {
            Readiness::ready(format!("{replicas}; not scaling ({})", c.describe()))
        }
        _ => Readiness::ready(replicas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hpa(conditions: Value) -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "web"},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 2, "maxReplicas": 5},
               "status": {"currentReplicas": 2, "desiredReplicas": 2, "conditions": conditions}})
    }

    #[test]
    fn missing_metrics_is_not_a_failure() {
        let h = hpa(json!([
            {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale",
             "message": "the HPA controller was able to get the target's current scale"},
            {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
             "message": "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API"}
        ]));
        let r = readiness(&h);
        assert!(r.is_ready());
        assert!(
            r.message().contains("FailedGetResourceMetric"),
            "{}",
            r.message()
        );
    }

    #[test]
    fn unreachable_target_progresses() {
        let h = hpa(json!([
            {"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
             "message": "the HPA controller was unable to get the target's current scale: deployments/scale.apps \"web\" not found"}
        ]));
        assert!(matches!(readiness(&h), Readiness::Progressing { .. }));
    }

    #[test]
    fn healthy_hpa_is_ready() {
        let h = hpa(json!([
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
            {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"},
            {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange"}
        ]));
        assert_eq!(
            readiness(&h),
            Readiness::ready("2 current, 2 desired replicas")
        );
    }
}
