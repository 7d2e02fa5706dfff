//! The Job form of a copy: the same `berth data copy` run inside the cluster, in an image that
//! has berth and the database client tools, so the data never leaves the cluster's network.
//!
//! Credentials reach the Job only by reference: the source URL, the target URL and the masking
//! key are `secretKeyRef`s in the container's environment, and the command line names the
//! variables (`--from-url-env`), never the values. The object is built by a pure function
//! ([`copy_job`]); [`run_copy_job`] creates it and follows it to Complete or Failed.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_cluster::{Cluster, ClusterError, ObjectKey};
use berth_types::{ColumnRef, Event, EventSink, Level, MaskRule, State, Step};
use serde_json::{Value, json};

use super::CopyError;
use crate::objects::{self, JobState, MANAGED_BY, ROLE_LABEL, RUN_LABEL};

/// A key of a Kubernetes Secret in the Job's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key in its data.
    pub key: String,
}

impl std::str::FromStr for SecretKeyRef {
    type Err = String;

    /// `secret/key`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((n, k)) if !n.is_empty() && !k.is_empty() && !k.contains('/') => {
                Ok(SecretKeyRef {
                    name: n.into(),
                    key: k.into(),
                })
            }
            _ => Err(format!("`{s}`: expected SECRET/KEY, e.g. prod-db/url")),
        }
    }
}

/// What the copy Job runs.
#[derive(Debug, Clone)]
pub struct CopyJob {
    /// Namespace of the Job (the target environment's); the Secrets live there too.
    pub namespace: String,
    /// Job name (at most 63 characters).
    pub name: String,
    /// An image with `berth`, `pg_dump` and `psql` on its PATH.
    pub image: String,
    /// The source database URL.
    pub source_url: SecretKeyRef,
    /// The target database URL.
    pub target_url: SecretKeyRef,
    /// The masking key.
    pub mask_key: SecretKeyRef,
    /// Column -> rule.
    pub rules: Vec<(ColumnRef, MaskRule)>,
    /// Strict mode.
    pub strict: bool,
    /// The run id label.
    pub run_id: String,
    /// Extra pod annotations.
    pub pod_annotations: BTreeMap<String, String>,
}

/// The environment variables the Job's container reads its Secrets into.
pub const SOURCE_ENV: &str = "BERTH_SOURCE_URL";
/// See [`SOURCE_ENV`].
pub const TARGET_ENV: &str = "BERTH_TARGET_URL";

/// The `batch/v1` Job for `spec`: no retries (a half-done copy is rolled back; rerunning is a
/// new run), a deadline, and the rules as `--mask` arguments.
pub fn copy_job(spec: &CopyJob, deadline: Duration) -> Value {
    let mut args = vec![
        "data".to_string(),
        "copy".into(),
        "--from-url-env".into(),
        SOURCE_ENV.into(),
        "--to-url-env".into(),
        TARGET_ENV.into(),
    ];
    for (col, rule) in &spec.rules {
        args.push("--mask".into());
        args.push(format!("{col}={rule}"));
    }
    if spec.strict {
        args.push("--strict".into());
    }
    let env_ref = |name: &str, r: &SecretKeyRef| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": r.name, "key": r.key}}});
    let labels = json!({
        MANAGED_BY.0: MANAGED_BY.1,
        ROLE_LABEL: "copy",
        RUN_LABEL: spec.run_id,
    });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline.as_secs().max(1),
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels, "annotations": spec.pod_annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "copy",
                        "image": spec.image,
                        "command": ["berth"],
                        "args": args,
                        "env": [
                            env_ref(SOURCE_ENV, &spec.source_url),
                            env_ref(TARGET_ENV, &spec.target_url),
                            env_ref(super::KEY_ENV, &spec.mask_key),
                        ],
                    }],
                },
            },
        },
    })
}

/// How a copy Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// `namespace/name`.
    pub job: String,
    /// Wall time in milliseconds.
    pub millis: u64,
}

/// Creates the copy Job and waits until it is Complete (Ok) or Failed (the error carries the
/// Job's failure message). A Job of the same name must not exist.
pub async fn run_copy_job(
    cluster: &Cluster,
    spec: &CopyJob,
    timeout: Duration,
    sink: &dyn EventSink,
) -> Result<JobOutcome, CopyError> {
    let started = std::time::Instant::now();
    sink.emit(Event::StepStarted {
        step: Step::DataCopyJob.into(),
    });
    cluster.ensure_namespace(&spec.namespace).await?;
    cluster.create(&copy_job(spec, timeout)).await?;
    let key = ObjectKey::new("batch/v1", "Job", Some(&spec.namespace), &spec.name);
    let object = format!("Job/{}", spec.name);
    sink.emit(Event::ObjectState {
        object: object.clone(),
        state: State::Applied,
        message: format!("copy Job in {} (image {})", spec.namespace, spec.image),
        millis: started.elapsed().as_millis() as u64,
    });
    let failed = |reason: String| CopyError::JobFailed {
        namespace: spec.namespace.clone(),
        name: spec.name.clone(),
        reason,
    };
    // A little longer than the Job's own deadline, so the Job reports DeadlineExceeded itself.
    let waited = cluster
        .wait_until(&key, timeout + Duration::from_secs(30), |v| {
            objects::job_state(v) != JobState::Running
        })
        .await;
    let millis = started.elapsed().as_millis() as u64;
    let result = match waited {
        Err(ClusterError::Timeout { seconds, .. }) => {
            Err(failed(format!("did not finish within {seconds}s")))
        }
        Err(e) => Err(e.into()),
        Ok(done) => match objects::job_state(&done) {
            JobState::Failed(message) => Err(failed(format!("failed: {message}"))),
            _ => Ok(JobOutcome {
                job: format!("{}/{}", spec.namespace, spec.name),
                millis,
            }),
        },
    };
    sink.emit(Event::ObjectState {
        object,
        state: if result.is_ok() {
            State::Ready
        } else {
            State::Failed
        },
        message: match &result {
            Ok(_) => "copy Job complete".into(),
            Err(e) => e.to_string(),
        },
        millis,
    });
    sink.emit(Event::StepFinished {
        step: Step::DataCopyJob.into(),
        ok: result.is_ok(),
        millis,
        message: match &result {
            Ok(o) => format!("copy Job {} complete", o.job),
            Err(e) => e.to_string(),
        },
    });
    if result.is_err() {
        sink.emit(Event::Message {
            step: Step::DataCopyJob.into(),
            level: Level::Info,
            message: format!(
                "the Job is kept for its logs: kubectl -n {} logs job/{}",
                spec.namespace, spec.name
            ),
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_names_secrets_and_never_holds_a_value() {
        let spec = CopyJob {
            namespace: "staging".into(),
            name: "copy-1".into(),
            image: "registry/berth-tools:1".into(),
            source_url: "prod-db/url".parse().unwrap(),
            target_url: "staging-db/url".parse().unwrap(),
            mask_key: "mask/key".parse().unwrap(),
            rules: vec![("users.email".parse().unwrap(), MaskRule::Email)],
            strict: true,
            run_id: "0019abc".into(),
            pod_annotations: BTreeMap::new(),
        };
        let job = copy_job(&spec, Duration::from_secs(600));
        let c = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["args"],
            json!([
                "data",
                "copy",
                "--from-url-env",
                "BERTH_SOURCE_URL",
                "--to-url-env",
                "BERTH_TARGET_URL",
                "--mask",
                "users.email=email",
                "--strict"
            ])
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"],
            json!({"name": "prod-db", "key": "url"})
        );
        assert_eq!(c["env"][2]["name"], "BERTH_MASK_KEY");
        assert!(
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e.get("value").is_none())
        );
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["metadata"]["labels"]["berth.dev/data-role"], "copy");
        assert!("nokey".parse::<SecretKeyRef>().is_err());
    }
}
