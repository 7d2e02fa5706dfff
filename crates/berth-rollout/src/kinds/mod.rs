//! One module per kind, each with `readiness(&Value) -> Readiness` and its own tests.

pub(crate) mod crd;
pub(crate) mod daemonset;
pub(crate) mod deployment;
pub(crate) mod generic;
pub(crate) mod hpa;
pub(crate) mod ingress;
pub(crate) mod job;
pub(crate) mod pod;
pub(crate) mod pvc;
pub(crate) mod replicaset;
pub(crate) mod service;
pub(crate) mod statefulset;

use crate::obj::int_at;
use serde_json::Value;

/// For built-in controllers: the message to wait with while the controller has not yet seen the
/// current spec. Until then every other status field describes the previous spec, and reading
/// them would report the old rollout as this one.
pub(crate) fn spec_not_observed(obj: &Value) -> Option<String> {
    let generation = int_at(obj, &["metadata", "generation"])?;
    let observed = int_at(obj, &["status", "observedGeneration"]).unwrap_or(0);
    (observed < generation).then(|| {
        format!("waiting for the controller to observe generation {generation} (seen: {observed})")
    })
}

/// `spec.replicas`, which the API defaults to 1.
pub(crate) fn desired_replicas(obj: &Value) -> i64 {
    int_at(obj, &["spec", "replicas"]).unwrap_or(1)
}
