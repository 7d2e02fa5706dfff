//! Failure diagnosis for pods, as pure functions over the JSON objects the Kubernetes API
//! returns. No IO and no Kubernetes client: `berth-cluster` fetches, `berth-deploy` decides.

mod diagnose;
mod obj;

pub use diagnose::{Diagnosis, DiagnosisKind, FATAL_RESTARTS, diagnose_pod};
