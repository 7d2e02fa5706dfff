//! The objects a clone creates, and how their status is read: pure, tested on inline JSON.

use serde_json::{Value, json};

/// The snapshot API group and version.
pub const SNAPSHOT_API: &str = "snapshot.storage.k8s.io/v1";
/// Marks every object berth's data clone makes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "berth");
/// The clone run an object belongs to.
pub const RUN_LABEL: &str = "berth.dev/data-run";
/// The PVC an object was cloned from.
pub const SOURCE_PVC_LABEL: &str = "berth.dev/data-source-pvc";
/// The namespace of that PVC.
pub const SOURCE_NAMESPACE_LABEL: &str = "berth.dev/data-source-namespace";
/// What the object is in the clone: [`Role`].
pub const ROLE_LABEL: &str = "berth.dev/data-role";

/// The part an object plays in a clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The VolumeSnapshot of the source PVC, in the source namespace.
    SourceSnapshot,
    /// The pre-provisioned VolumeSnapshotContent that re-exposes it.
    TargetContent,
    /// The VolumeSnapshot bound to that content, in the target namespace.
    TargetSnapshot,
    /// The restored PVC.
    TargetPvc,
    /// The pre-snapshot hook Job.
    Hook,
}

impl Role {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SourceSnapshot => "source-snapshot",
            Role::TargetContent => "target-content",
            Role::TargetSnapshot => "target-snapshot",
            Role::TargetPvc => "target-pvc",
            Role::Hook => "hook",
        }
    }
}

/// One source PVC in one clone run: everything its objects are named and labelled after.
#[derive(Debug, Clone)]
pub struct VolumeClone<'a> {
    /// The run id (sortable: later runs sort after earlier ones).
    pub run: &'a str,
    /// Source namespace.
    pub from: &'a str,
    /// Target namespace.
    pub to: &'a str,
    /// The source PVC's name (the restored PVC gets the same name).
    pub pvc: &'a str,
}

/// The label selector of one role's objects for a source PVC, across runs.
pub fn selector(role: Role, from: &str, pvc: &str) -> String {
    format!(
        "{}={},{ROLE_LABEL}={},{SOURCE_NAMESPACE_LABEL}={from},{SOURCE_PVC_LABEL}={pvc}",
        MANAGED_BY.0,
        MANAGED_BY.1,
        role.as_str()
    )
}

impl VolumeClone<'_> {
    /// The labels of this clone's objects of `role`.
    pub fn labels(&self, role: Role) -> Value {
        json!({
            MANAGED_BY.0: MANAGED_BY.1,
            ROLE_LABEL: role.as_str(),
            RUN_LABEL: self.run,
            SOURCE_NAMESPACE_LABEL: self.from,
            SOURCE_PVC_LABEL: self.pvc,
        })
    }

    /// Name of the VolumeSnapshot, in both namespaces.
    pub fn snapshot_name(&self) -> String {
        format!("{}-berth-{}", self.pvc, self.run)
    }

    /// Name of the cluster-scoped VolumeSnapshotContent made for the target namespace.
    pub fn content_name(&self) -> String {
        let mut n = format!("berth-{}-{}-{}", self.to, self.pvc, self.run);
        n.truncate(253);
        n
    }

    /// The VolumeSnapshot of the source PVC.
    pub fn source_snapshot(&self, class: &str) -> Value {
        json!({
            "apiVersion": SNAPSHOT_API,
            "kind": "VolumeSnapshot",
            "metadata": {
                "name": self.snapshot_name(),
                "namespace": self.from,
                "labels": self.labels(Role::SourceSnapshot),
            },
            "spec": {
                "volumeSnapshotClassName": class,
                "source": {"persistentVolumeClaimName": self.pvc},
            },
        })
    }

    /// The pre-provisioned VolumeSnapshotContent for the target namespace: the same
    /// storage-side snapshot (`handle`), retained when the object goes (the source
    /// snapshot owns the data), bound ahead to [`VolumeClone::target_snapshot`].
    pub fn target_content(&self, driver: &str, handle: &str, class: &str, mode: &str) -> Value {
        json!({
            "apiVersion": SNAPSHOT_API,
            "kind": "VolumeSnapshotContent",
            "metadata": {
                "name": self.content_name(),
                "labels": self.labels(Role::TargetContent),
            },
            "spec": {
                "deletionPolicy": "Retain",
                "driver": driver,
                "source": {"snapshotHandle": handle},
                "sourceVolumeMode": mode,
                "volumeSnapshotClassName": class,
                "volumeSnapshotRef": {"namespace": self.to, "name": self.snapshot_name()},
            },
        })
    }

    /// The VolumeSnapshot in the target namespace, bound to [`VolumeClone::target_content`].
    pub fn target_snapshot(&self, class: &str) -> Value {
        json!({
            "apiVersion": SNAPSHOT_API,
            "kind": "VolumeSnapshot",
            "metadata": {
                "name": self.snapshot_name(),
                "namespace": self.to,
                "labels": self.labels(Role::TargetSnapshot),
            },
            "spec": {
                "volumeSnapshotClassName": class,
                "source": {"volumeSnapshotContentName": self.content_name()},
            },
        })
    }

    /// The restored PVC: the source's name, class, access modes, volume mode and size, with
    /// the target snapshot as its data source.
    pub fn target_pvc(&self, source: &Value, size: &str) -> Value {
        let spec = &source["spec"];
        let mut pvc_spec = json!({
            "accessModes": spec["accessModes"],
            "resources": {"requests": {"storage": size}},
            "dataSource": {
                "apiGroup": "snapshot.storage.k8s.io",
                "kind": "VolumeSnapshot",
                "name": self.snapshot_name(),
            },
        });
        for field in ["storageClassName", "volumeMode"] {
            if let Some(v) = spec[field].as_str() {
                pvc_spec[field] = v.into();
            }
        }
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": self.pvc,
                "namespace": self.to,
                "labels": self.labels(Role::TargetPvc),
            },
            "spec": pvc_spec,
        })
    }
}

/// The size a restored volume must have: the source's provisioned capacity when it is known
/// (a restore may not be smaller than the snapshot), else its request.
pub fn source_size(pvc: &Value) -> Option<&str> {
    pvc["status"]["capacity"]["storage"]
        .as_str()
        .or_else(|| pvc["spec"]["resources"]["requests"]["storage"].as_str())
}

/// Where a VolumeSnapshot stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    /// Not ready yet.
    Pending,
    /// Ready to use, bound to this VolumeSnapshotContent.
    Ready {
        /// `status.boundVolumeSnapshotContentName`.
        content: String,
    },
    /// The snapshotter reported an error.
    Failed {
        /// `status.error.message`.
        message: String,
    },
}

/// Reads a VolumeSnapshot's status. An error wins over readiness: a snapshot that reports
/// one is not to be trusted.
pub fn snapshot_state(snapshot: &Value) -> SnapshotState {
    let status = &snapshot["status"];
    if let Some(error) = status["error"].as_object() {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the snapshotter reported an error without a message");
        return SnapshotState::Failed {
            message: message.into(),
        };
    }
    match (
        status["readyToUse"].as_bool(),
        status["boundVolumeSnapshotContentName"].as_str(),
    ) {
        (Some(true), Some(content)) => SnapshotState::Ready {
            content: content.into(),
        },
        _ => SnapshotState::Pending,
    }
}

/// Where a Job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Still running.
    Running,
    /// Complete.
    Complete,
    /// Failed, with the condition's message.
    Failed(String),
}

/// Reads a Job's conditions.
pub fn job_state(job: &Value) -> JobState {
    let conditions = job["status"]["conditions"].as_array();
    for c in conditions.into_iter().flatten() {
        if c["status"] != "True" {
            continue;
        }
        match c["type"].as_str() {
            Some("Complete") => return JobState::Complete,
            Some("Failed") => {
                let msg = c["message"]
                    .as_str()
                    .or(c["reason"].as_str())
                    .unwrap_or("failed");
                return JobState::Failed(msg.into());
            }
            _ => {}
        }
    }
    JobState::Running
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clone() -> VolumeClone<'static> {
        VolumeClone {
            run: "0019abc",
            from: "prod",
            to: "staging",
            pvc: "data-db-0",
        }
    }

    #[test]
    fn the_source_snapshot_names_the_pvc_and_class() {
        let s = clone().source_snapshot("fast");
        assert_eq!(s["metadata"]["name"], "data-db-0-berth-0019abc");
        assert_eq!(s["metadata"]["namespace"], "prod");
        assert_eq!(
            s["spec"]["source"]["persistentVolumeClaimName"],
            "data-db-0"
        );
        assert_eq!(s["spec"]["volumeSnapshotClassName"], "fast");
        assert_eq!(s["metadata"]["labels"][ROLE_LABEL], "source-snapshot");
        assert_eq!(s["metadata"]["labels"][RUN_LABEL], "0019abc");
    }

    #[test]
    fn content_and_target_snapshot_point_at_each_other() {
        let c = clone();
        let content = c.target_content("a.csi", "snap-123", "fast", "Filesystem");
        let snap = c.target_snapshot("fast");
        assert_eq!(content["spec"]["deletionPolicy"], "Retain");
        assert_eq!(content["spec"]["source"]["snapshotHandle"], "snap-123");
        assert_eq!(content["spec"]["driver"], "a.csi");
        assert_eq!(content["spec"]["volumeSnapshotRef"]["namespace"], "staging");
        assert_eq!(
            content["spec"]["volumeSnapshotRef"]["name"],
            snap["metadata"]["name"]
        );
        assert_eq!(
            snap["spec"]["source"]["volumeSnapshotContentName"],
            content["metadata"]["name"]
        );
        assert_eq!(snap["metadata"]["namespace"], "staging");
        assert!(content["metadata"].get("namespace").is_none());
    }

    #[test]
    fn the_target_pvc_copies_class_modes_and_size() {
        let source = json!({"metadata": {"name": "data-db-0", "labels": {"app": "db"}},
            "spec": {"storageClassName": "ssd", "accessModes": ["ReadWriteOnce"],
                     "volumeMode": "Filesystem", "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"capacity": {"storage": "2Gi"}}});
        assert_eq!(source_size(&source), Some("2Gi"));
        let pvc = clone().target_pvc(&source, "2Gi");
        assert_eq!(pvc["metadata"]["name"], "data-db-0");
        assert_eq!(pvc["metadata"]["namespace"], "staging");
        assert_eq!(pvc["spec"]["storageClassName"], "ssd");
        assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "2Gi");
        assert_eq!(
            pvc["spec"]["dataSource"],
            json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                   "name": "data-db-0-berth-0019abc"})
        );
        let unbound = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(source_size(&unbound), Some("1Gi"));
        assert!(
            clone().target_pvc(&unbound, "1Gi")["spec"]
                .get("storageClassName")
                .is_none()
        );
    }

    #[test]
    fn snapshot_states() {
        assert_eq!(snapshot_state(&json!({})), SnapshotState::Pending);
        assert_eq!(
            snapshot_state(&json!({"status": {"readyToUse": false}})),
            SnapshotState::Pending
        );
        assert_eq!(
            snapshot_state(&json!({"status": {"readyToUse": true,
                "boundVolumeSnapshotContentName": "snapcontent-1"}})),
            SnapshotState::Ready {
                content: "snapcontent-1".into()
            }
        );
        assert_eq!(
            snapshot_state(&json!({"status": {"readyToUse": false,
                "error": {"message": "quota exceeded", "time": "2026-11-25T12:00:00Z"}}})),
            SnapshotState::Failed {
                message: "quota exceeded".into()
            }
        );
    }

    #[test]
    fn job_states() {
        assert_eq!(job_state(&json!({})), JobState::Running);
        assert_eq!(
            job_state(&json!({"status": {"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"}]}})),
            JobState::Complete
        );
        assert_eq!(
            job_state(&json!({"status": {"conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}})),
            JobState::Failed("Job has reached the specified backoff limit".into())
        );
    }

    #[test]
    fn the_selector_finds_one_pvcs_objects_of_a_role() {
        assert_eq!(
            selector(Role::SourceSnapshot, "prod", "db"),
            "app.kubernetes.io/managed-by=berth,berth.dev/data-role=source-snapshot,\
             berth.dev/data-source-namespace=prod,berth.dev/data-source-pvc=db"
        );
    }
}
