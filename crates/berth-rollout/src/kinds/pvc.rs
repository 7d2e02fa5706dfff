//! `v1` PersistentVolumeClaim: phase `Bound`.

use crate::obj::str_at;
use crate::{FailureReason, Readiness};
use serde_json::Value;

pub(crate) fn readiness(c: &Value) -> Readiness {
    match str_at(c, &["status", "phase"]).unwrap_or("Pending") {
        "Bound" => Readiness::ready(match str_at(c, &["spec", "volumeName"]) {
            Some(volume) => format!("bound to {volume}"),
            None => "bound".to_owned(),
        }),
        "Lost" => Readiness::failed(
            FailureReason::ClaimLost,
            "its PersistentVolume no longer exists (phase Lost); the data is gone or must be \
             restored by hand",
        ),
        phase => Readiness::progressing(format!(
            "{phase}; a claim of a WaitForFirstConsumer storage class binds only once a pod \
             using it is scheduled"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                        "resources": {"requests": {"storage": "1Gi"}},
                        "volumeName": "pvc-3f1c"},
               "status": status})
    }

    #[test]
    fn bound_is_ready() {
        let c = pvc(json!({"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                           "capacity": {"storage": "1Gi"}}));
        assert_eq!(readiness(&c), Readiness::ready("bound to pvc-3f1c"));
    }

    #[test]
    fn pending_progresses_and_lost_fails() {
        assert!(matches!(
            readiness(&pvc(json!({"phase": "Pending"}))),
            Readiness::Progressing { .. }
        ));
        assert!(readiness(&pvc(json!({"phase": "Lost"}))).is_failed());
    }
}
