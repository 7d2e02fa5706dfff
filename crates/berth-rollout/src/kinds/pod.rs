//! `v1` Pod: phase and the `Ready` condition; what is wrong comes from [`diagnose_pod`].

use crate::obj::{array, condition, flag, reason_message, str_at};
use crate::{FailureReason, Readiness, diagnose_pod};
use serde_json::Value;

pub(crate) fn readiness(p: &Value) -> Readiness {
    let phase = str_at(p, &["status", "phase"]).unwrap_or("Pending");
    match phase {
        // A pod reaches Succeeded only when it will not run again (restartPolicy Never or
        // OnFailure), which is what "done" means for a run-to-completion pod.
        "Succeeded" => Readiness::ready("completed"),
        "Failed" => {
            let why = diagnose_pod(p)
                .into_iter()
                .next()
                .map(|d| d.message)
                .unwrap_or_else(|| {
                    let pod_level = reason_message(
                        str_at(p, &["status", "reason"]).unwrap_or(""),
                        str_at(p, &["status", "message"]).unwrap_or(""),
                    );
                    if pod_level.is_empty() {
                        "pod failed".to_owned()
                    } else {
                        format!("pod failed: {pod_level}")
                    }
                });
            Readiness::failed(FailureReason::PodFailed, why)
        }
        _ if condition(p, "Ready").is_some_and(|c| c.is_true()) => {
            Readiness::ready("running and ready")
        }
        _ => {
            let statuses = array(p, &["status", "containerStatuses"]);
            let ready = statuses.iter().filter(|c| flag(c, &["ready"])).count();
            let counts = format!("{phase}, {ready} of {} containers ready", statuses.len());
            match diagnose_pod(p).into_iter().next() {
                Some(d) => Readiness::progressing(format!("{counts}; {}", d.message)),
                None => Readiness::progressing(counts),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_condition_makes_it_ready() {
        let p = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "PodScheduled", "status": "True"}]}
        });
        assert!(readiness(&p).is_ready());
    }

    #[test]
    fn succeeded_is_done() {
        let p = json!({"kind": "Pod", "spec": {"restartPolicy": "Never"},
                       "status": {"phase": "Succeeded"}});
        assert_eq!(readiness(&p), Readiness::ready("completed"));
    }

    #[test]
    fn failed_phase_fails_with_the_container_diagnosis() {
        // kwok's "exit non-zero" pod.
        let p = json!({
            "kind": "Pod", "metadata": {"name": "migrate"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "app:1"}]},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0, "image": "app:1",
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}
        });
        let Readiness::Failed { reason, message } = readiness(&p) else {
            panic!("expected a failure")
        };
        assert_eq!(reason, FailureReason::PodFailed);
        assert!(
            message.starts_with("container app: exited with code 1"),
            "{message}"
        );
    }

    #[test]
    fn failed_phase_without_container_statuses_uses_the_pod_reason() {
        let p = json!({"kind": "Pod", "status": {"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}});
        assert_eq!(
            readiness(&p).message(),
            "pod failed: DeadlineExceeded: Pod was active on the node longer than the specified deadline"
        );
    }

    #[test]
    fn not_ready_pod_progresses_with_its_diagnosis() {
        // kwok's "image pull error" pod.
        let p = json!({
            "kind": "Pod", "metadata": {"name": "web-1"},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0, "image": "x",
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"x\": not found"}}}]}
        });
        let r = readiness(&p);
        assert!(matches!(r, Readiness::Progressing { .. }));
        assert!(
            r.message()
                .starts_with("Pending, 0 of 1 containers ready; container app: image x"),
            "{}",
            r.message()
        );
    }
}
