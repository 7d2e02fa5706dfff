use berth_cluster::ClusterError;

/// Everything that can stop a data clone. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The Kubernetes API refused or failed a request.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The cluster does not serve the `snapshot.storage.k8s.io/v1` CRDs at all.
    #[error(
        "the cluster has no CSI snapshot API (VolumeSnapshot in snapshot.storage.k8s.io/v1); \
         install the external-snapshotter CRDs and snapshot controller, and a CSI driver with \
         snapshot support"
    )]
    NoSnapshotApi,
    /// The selector matched no PersistentVolumeClaim.
    #[error(
        "no PersistentVolumeClaim in namespace `{namespace}` matches {selector}; list them with \
         `kubectl -n {namespace} get pvc --show-labels`"
    )]
    NoPvcs {
        /// The source namespace.
        namespace: String,
        /// The selector, for people (`names a, b` or `label selector app=db`).
        selector: String,
    },
    /// A PVC named on the command line does not exist.
    #[error("PersistentVolumeClaim `{name}` does not exist in namespace `{namespace}`")]
    PvcNotFound {
        /// The source namespace.
        namespace: String,
        /// The claim.
        name: String,
    },
    /// A source PVC lacks something a clone needs (its size, its class).
    #[error("PersistentVolumeClaim `{name}` in `{namespace}` cannot be cloned: {reason}")]
    InvalidPvc {
        /// The source namespace.
        namespace: String,
        /// The claim.
        name: String,
        /// What is missing.
        reason: String,
    },
    /// The PVC's StorageClass does not exist.
    #[error(
        "StorageClass `{class}` of PersistentVolumeClaim `{pvc}` does not exist, so its CSI \
         driver is unknown"
    )]
    StorageClassNotFound {
        /// The claim.
        pvc: String,
        /// The class it names.
        class: String,
    },
    /// No VolumeSnapshotClass exists for the StorageClass's provisioner.
    #[error(
        "StorageClass `{class}` (provisioner `{provisioner}`) has no snapshot support: no \
         VolumeSnapshotClass has driver `{provisioner}`{}. Create one (apiVersion \
         snapshot.storage.k8s.io/v1, kind VolumeSnapshotClass, driver: {provisioner}, \
         deletionPolicy: Delete) if the driver supports snapshots; otherwise move the data to a \
         StorageClass whose CSI driver does",
        if known_drivers.is_empty() { String::new() } else { format!(" (classes exist for: {})", known_drivers.join(", ")) }
    )]
    NoSnapshotSupport {
        /// The StorageClass.
        class: String,
        /// Its provisioner (the CSI driver name).
        provisioner: String,
        /// Drivers that do have a VolumeSnapshotClass.
        known_drivers: Vec<String>,
    },
    /// Several VolumeSnapshotClasses fit and none is marked default.
    #[error(
        "several VolumeSnapshotClasses have driver `{provisioner}` ({}) and none is the default \
         (annotation snapshot.storage.k8s.io/is-default-class: \"true\"); pick one with \
         --snapshot-class",
        candidates.join(", ")
    )]
    AmbiguousSnapshotClass {
        /// The driver.
        provisioner: String,
        /// The classes that fit.
        candidates: Vec<String>,
    },
    /// The VolumeSnapshotClass asked for does not exist.
    #[error(
        "VolumeSnapshotClass `{0}` does not exist; list them with `kubectl get volumesnapshotclass`"
    )]
    SnapshotClassNotFound(String),
    /// The VolumeSnapshotClass asked for belongs to another driver.
    #[error(
        "VolumeSnapshotClass `{class}` is for driver `{driver}`, but PersistentVolumeClaim \
         `{pvc}` is provisioned by `{provisioner}`; pick a class with driver `{provisioner}`"
    )]
    SnapshotClassMismatch {
        /// The class asked for.
        class: String,
        /// Its driver.
        driver: String,
        /// The claim.
        pvc: String,
        /// The claim's provisioner.
        provisioner: String,
    },
    /// The snapshotter reported an error for a snapshot.
    #[error(
        "VolumeSnapshot `{name}` in `{namespace}` failed: {message} (see `kubectl -n {namespace} \
         describe volumesnapshot {name}` and the CSI driver's logs)"
    )]
    SnapshotFailed {
        /// The source namespace.
        namespace: String,
        /// The snapshot.
        name: String,
        /// `status.error.message`.
        message: String,
    },
    /// A ready snapshot's content carries no snapshot handle to restore from.
    #[error(
        "VolumeSnapshotContent `{0}` is ready but has no status.snapshotHandle, so the snapshot \
         cannot be used in another namespace; check the snapshot controller"
    )]
    NoSnapshotHandle(String),
    /// A PVC of that name already exists in the target namespace.
    #[error(
        "PersistentVolumeClaim `{name}` already exists in `{namespace}`; berth does not overwrite \
         data. Delete it first (stop the pods that use it, then `kubectl -n {namespace} delete \
         pvc {name}`) or clone into a fresh namespace"
    )]
    TargetExists {
        /// The target namespace.
        namespace: String,
        /// The claim.
        name: String,
    },
    /// The pre-snapshot hook is not a usable Job manifest.
    #[error("the pre-snapshot hook must be a batch/v1 Job with metadata.name: {0}")]
    InvalidHook(String),
    /// The pre-snapshot hook Job failed.
    #[error(
        "pre-snapshot hook Job `{name}` in `{namespace}` failed: {message}; no snapshot was \
         taken. Its pods are kept: `kubectl -n {namespace} logs job/{name}`"
    )]
    HookFailed {
        /// The source namespace.
        namespace: String,
        /// The Job.
        name: String,
        /// The Job's Failed condition message.
        message: String,
    },
    /// A wait passed the clone's deadline.
    #[error(
        "timed out after {seconds}s waiting for {what}; raise --timeout, or check the snapshot \
         controller and the CSI driver (`kubectl get volumesnapshot,volumesnapshotcontent`)"
    )]
    Timeout {
        /// What was waited for.
        what: String,
        /// The clone's whole deadline.
        seconds: u64,
    },
}
