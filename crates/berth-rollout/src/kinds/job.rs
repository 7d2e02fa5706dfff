//! `batch/v1` Job: the `Complete` and `Failed` conditions decide.

use crate::obj::{condition, count, flag, int_at};
use crate::{FailureReason, Readiness};
use serde_json::Value;

pub(crate) fn readiness(j: &Value) -> Readiness {
    // FailureTarget comes first (Kubernetes 1.31+): the Job is already certain to fail and is
    // only waiting for its pods to terminate.
    for type_ in ["Failed", "FailureTarget"] {
        if let Some(c) = condition(j, type_)
            && c.is_true()
        {
            let why = c.describe();
            let why = if why.is_empty() {
                "failed".to_owned()
            } else {
                why
            };
            return Readiness::failed(
                FailureReason::JobFailed,
                format!(
                    "{why} ({} pods failed); check the logs of its failed pods",
                    count(j, &["status", "failed"])
                ),
            );
        }
    }
    let succeeded = count(j, &["status", "succeeded"]);
    if condition(j, "Complete").is_some_and(|c| c.is_true()) {
        return Readiness::ready(format!("completed ({succeeded} pods succeeded)"));
    }
    if condition(j, "SuccessCriteriaMet").is_some_and(|c| c.is_true()) {
        return Readiness::progressing("success criteria met; waiting for its pods to terminate");
    }
    if flag(j, &["spec", "suspend"]) {
        return Readiness::progressing(
            "suspended (spec.suspend); waiting for it to be resumed, e.g. by a queue controller",
        );
    }
    let active = count(j, &["status", "active"]);
    let failed = count(j, &["status", "failed"]);
    let succeeded = match int_at(j, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded} of {completions} succeeded"),
        None => format!("{succeeded} succeeded"),
    };
    Readiness::progressing(format!("{active} active, {succeeded}, {failed} failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
               "spec": spec, "status": status})
    }

    #[test]
    fn complete_condition_is_ready() {
        let j = job(
            json!({"completions": 1, "backoffLimit": 6}),
            json!({"startTime": "2026-11-02T10:00:00Z", "completionTime": "2026-11-02T10:00:09Z",
                   "succeeded": 1, "ready": 0, "terminating": 0,
                   "conditions": [
                       {"type": "SuccessCriteriaMet", "status": "True",
                        "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
                       {"type": "Complete", "status": "True",
                        "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}]}),
        );
        assert_eq!(
            readiness(&j),
            Readiness::ready("completed (1 pods succeeded)")
        );
    }

    #[test]
    fn backoff_limit_exceeded_fails() {
        let j = job(
            json!({"backoffLimit": 2}),
            json!({"failed": 3, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}),
        );
        assert_eq!(
            readiness(&j),
            Readiness::failed(
                FailureReason::JobFailed,
                "BackoffLimitExceeded: Job has reached the specified backoff limit (3 pods \
                 failed); check the logs of its failed pods"
            )
        );
    }

    #[test]
    fn failure_target_alone_already_fails() {
        let j = job(
            json!({"activeDeadlineSeconds": 60}),
            json!({"active": 1, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded",
                 "message": "Job was active longer than specified deadline"}]}),
        );
        assert!(readiness(&j).is_failed());
    }

    #[test]
    fn running_job_progresses() {
        let j = job(
            json!({"completions": 3}),
            json!({"active": 1, "succeeded": 2, "failed": 1}),
        );
        assert_eq!(
            readiness(&j),
            Readiness::progressing("1 active, 2 of 3 succeeded, 1 failed")
        );
    }

    #[test]
    fn suspended_job_progresses() {
        let j = job(
            json!({"suspend": true}),
            json!({"conditions": [{"type": "Suspended", "status": "True",
                                   "reason": "JobSuspended", "message": "Job suspended"}]}),
        );
        let r = readiness(&j);
        assert!(matches!(r, Readiness::Progressing { .. }));
        assert!(r.message().starts_with("suspended"));
    }
}
