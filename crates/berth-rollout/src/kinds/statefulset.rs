//! `apps/v1` StatefulSet, after `kubectl rollout status`.
//!
//! Readiness counts `readyReplicas` as kubectl does. With `RollingUpdate` and a `partition`, only
//! ordinals at or above the partition are updated, so only those must be; with `OnDelete`, pods
//! take the new revision only when someone deletes them, so ready replicas are all there is to
//! wait for.

use super::{desired_replicas, spec_not_observed};
use crate::Readiness;
use crate::obj::{count, int_at, str_at};
use serde_json::Value;

pub(crate) fn readiness(s: &Value) -> Readiness {
    if let Some(wait) = spec_not_observed(s) {
        return Readiness::progressing(wait);
    }
    let want = desired_replicas(s);
    let ready = count(s, &["status", "readyReplicas"]);
    if ready < want {
        return Readiness::progressing(format!("{ready} of {want} replicas ready"));
    }

    let strategy = str_at(s, &["spec", "updateStrategy", "type"]).unwrap_or("RollingUpdate");
    if strategy == "OnDelete" {
        return Readiness::ready(format!(
            "{ready} of {want} replicas ready; updateStrategy OnDelete: pods take the new \
             revision only when deleted"
        ));
    }

    let updated = count(s, &["status", "updatedReplicas"]);
    let partition =
        int_at(s, &["spec", "updateStrategy", "rollingUpdate", "partition"]).unwrap_or(0);
    if partition > 0 {
        let must = (want - partition).max(0);
        return if updated < must {
            Readiness::progressing(format!(
                "{updated} of {must} replicas at ordinal {partition} or above updated"
            ))
        } else {
            Readiness::ready(format!(
                "partitioned rollout complete: {updated} replicas at ordinal {partition} or \
                 above updated"
            ))
        };
    }

    let current = str_at(s, &["status", "currentRevision"]).unwrap_or("");
    let update = str_at(s, &["status", "updateRevision"]).unwrap_or("");
    if current != update {
        return Readiness::progressing(format!(
            "{updated} of {want} replicas updated to revision {update}"
        ));
    }
    Readiness::ready(format!(
        "{ready} of {want} replicas ready at revision {update}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 2},
            "spec": spec,
            "status": status
        })
    }

    #[test]
    fn finished_rolling_update_is_ready() {
        let s = sts(
            json!({"replicas": 3, "updateStrategy": {"type": "RollingUpdate",
                   "rollingUpdate": {"partition": 0}}}),
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
                   "currentReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                   "currentRevision": "db-6f9b8c", "updateRevision": "db-6f9b8c",
                   "collisionCount": 0}),
        );
        assert_eq!(
            readiness(&s),
            Readiness::ready("3 of 3 replicas ready at revision db-6f9b8c")
        );
    }

    #[test]
    fn revision_mismatch_waits() {
        let s = sts(
            json!({"replicas": 3}),
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
                   "updatedReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2"}),
        );
        assert_eq!(
            readiness(&s),
            Readiness::progressing("1 of 3 replicas updated to revision db-2")
        );
    }

    #[test]
    fn not_enough_ready_replicas_waits() {
        let s = sts(
            json!({"replicas": 3}),
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 2}),
        );
        assert_eq!(readiness(&s).message(), "2 of 3 replicas ready");
    }

    #[test]
    fn partition_only_requires_ordinals_at_or_above_it() {
        let spec = json!({"replicas": 5, "updateStrategy": {"type": "RollingUpdate",
                          "rollingUpdate": {"partition": 3}}});
        let s = sts(
            spec.clone(),
            json!({"observedGeneration": 2, "readyReplicas": 5, "updatedReplicas": 1,
                   "currentRevision": "db-1", "updateRevision": "db-2"}),
        );
        assert_eq!(
            readiness(&s).message(),
            "1 of 2 replicas at ordinal 3 or above updated"
        );
        let s = sts(
            spec,
            json!({"observedGeneration": 2, "readyReplicas": 5, "updatedReplicas": 2,
                   "currentRevision": "db-1", "updateRevision": "db-2"}),
        );
        assert!(readiness(&s).is_ready());
    }

    #[test]
    fn on_delete_needs_ready_replicas_only() {
        let s = sts(
            json!({"replicas": 2, "updateStrategy": {"type": "OnDelete"}}),
            json!({"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 0,
                   "currentRevision": "db-1", "updateRevision": "db-2"}),
        );
        let r = readiness(&s);
        assert!(r.is_ready());
        assert!(r.message().contains("OnDelete"));
    }

    #[test]
    fn unobserved_spec_waits() {
        let s = sts(json!({"replicas": 1}), json!({"observedGeneration": 1}));
        assert!(matches!(readiness(&s), Readiness::Progressing { .. }));
    }
}
