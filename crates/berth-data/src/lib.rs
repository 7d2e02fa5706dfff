//! Stateful delivery: copy an environment's data into another.
//!
//! [`clone()`] copies PersistentVolumeClaims from one namespace into another through CSI volume
//! snapshots, with no downtime for the source and no dump/restore:
//!
//! 1. resolve the PVCs (by name or label selector) in the source namespace;
//! 2. find the VolumeSnapshotClass for each PVC's StorageClass provisioner (the class whose
//!    `driver` is the provisioner; the default-class annotation decides among several);
//! 3. optionally run a pre-snapshot hook Job (make the database consistent) and wait for it;
//! 4. snapshot every PVC and wait until each snapshot is `readyToUse` (an error reported by the
//!    snapshotter fails the clone at once);
//! 5. re-expose each snapshot in the target namespace — a PVC's `dataSource` can only name a
//!    snapshot in its own namespace, so berth pre-provisions a VolumeSnapshotContent with the
//!    snapshot's storage handle (`deletionPolicy: Retain`) and a VolumeSnapshot bound to it —
//!    and create a PVC of the same name, class, access modes and size restored from it;
//! 6. with `keep`, delete berth's older snapshots of each PVC beyond the newest `keep`, with
//!    the contents and snapshots that re-exposed them.
//!
//! [`copy::copy`] is the logical copy with masking: `pg_dump` streamed through berth's masker
//! (which rewrites the configured columns of every `COPY` row with deterministic fakes) into
//! `psql` of the target, committed only when everything succeeded; [`copy::job`] runs the same
//! copy as a Kubernetes Job.
//!
//! Everything goes through [`berth_cluster::Cluster`] as plain JSON; the choices (which class,
//! which objects, what is expired, what a status means) are pure functions in [`class`],
//! [`objects`] and [`retention`], unit-tested on inline JSON. The library never prints: it
//! reports [`berth_types::Event`]s.
//!
//! ```text
//!   berth (cli: `berth data clone`)
//!        │
//!   berth-data ── class, objects, retention (pure)
//!        │
//!   berth-cluster ── berth-types
//! ```

pub mod class;
pub mod copy;
mod error;
pub mod objects;
pub mod retention;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_cluster::{Cluster, ClusterError, ObjectKey};
use berth_types::{Event, EventSink, Level, State, Step};
use serde_json::Value;

pub use error::DataError;
use objects::{JobState, Role, SNAPSHOT_API, SnapshotState, VolumeClone};

const STEP: Step = Step::DataClone;

/// Which PVCs of the source namespace to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvcSelector {
    /// These claims, each of which must exist.
    Names(Vec<String>),
    /// The claims matching a label selector (`app=db,tier=data`); at least one must.
    Labels(String),
}

impl std::fmt::Display for PvcSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PvcSelector::Names(n) => write!(f, "names {}", n.join(", ")),
            PvcSelector::Labels(s) => write!(f, "label selector `{s}`"),
        }
    }
}

/// What to clone, where, and how long to wait.
pub struct CloneRequest {
    /// The namespace whose data is copied (e.g. `prod`).
    pub from_namespace: String,
    /// The namespace that receives the copies (created if missing, e.g. `staging`).
    pub to_namespace: String,
    /// Which PVCs.
    pub pvcs: PvcSelector,
    /// The VolumeSnapshotClass to use; `None` picks it per PVC from its provisioner.
    pub snapshot_class: Option<String>,
    /// Keep only the newest `keep` berth snapshots per source PVC (at least the one just
    /// made); `None` keeps all.
    pub keep: Option<usize>,
    /// Deadline for the whole clone: hook, snapshots, restores.
    pub timeout: Duration,
    /// A batch/v1 Job run to completion in the source namespace before the snapshots are
    /// taken (e.g. to flush and lock a database). Its name gets the run id appended.
    pub pre_snapshot_hook: Option<Value>,
    /// The run id labelled on every object; `None` makes one from the clock (sortable).
    pub run_id: Option<String>,
    /// Replace target claims that an earlier berth clone restored (label `berth.dev/data-role:
    /// target-pvc`): each is deleted, once its new snapshot is ready, and restored afresh. A
    /// target claim berth did not make is never touched ([`DataError::TargetExists`]). The
    /// pipeline's data step sets this, so every run refreshes staging.
    pub replace: bool,
    /// Where progress goes.
    pub sink: Arc<dyn EventSink>,
}

/// One PVC, cloned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClonedVolume {
    /// The source PVC's name, also the restored PVC's name.
    pub pvc: String,
    /// The VolumeSnapshot's name (the same in both namespaces).
    pub snapshot: String,
    /// The VolumeSnapshotClass used.
    pub snapshot_class: String,
    /// The pre-provisioned VolumeSnapshotContent behind the target snapshot.
    pub content: String,
    /// The restored PVC's requested size.
    pub size: String,
}

/// What a clone did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneOutcome {
    /// The run id on every object made.
    pub run_id: String,
    /// The volumes, in the order of the source PVCs' names.
    pub volumes: Vec<ClonedVolume>,
    /// Objects deleted by retention (`Kind/name`).
    pub deleted: Vec<String>,
}

/// A run id from the clock: milliseconds since 1970 in fixed-width hex, so ids sort by time.
pub fn new_run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{millis:011x}")
}

struct Run<'a> {
    cluster: &'a Cluster,
    req: &'a CloneRequest,
    run: String,
    started: Instant,
    deadline: Instant,
}

impl Run<'_> {
    fn say(&self, message: String) {
        self.req.sink.emit(Event::Message {
            step: STEP.into(),
            level: Level::Info,
            message,
        });
    }

    fn state(&self, object: String, state: State, message: String) {
        self.req.sink.emit(Event::ObjectState {
            object,
            state,
            message,
            millis: self.started.elapsed().as_millis() as u64,
        });
    }

    /// Waits for `key` until `done`, within what is left of the deadline.
    async fn wait(
        &self,
        key: &ObjectKey,
        what: &str,
        done: impl Fn(&Value) -> bool + Send + 'static,
    ) -> Result<Value, DataError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = || DataError::Timeout {
            what: what.into(),
            seconds: self.req.timeout.as_secs(),
        };
        if left.is_zero() {
            return Err(timeout());
        }
        match self.cluster.wait_until(key, left, done).await {
            Err(ClusterError::Timeout { .. }) => Err(timeout()),
            other => Ok(other?),
        }
    }
}

/// Clones the selected PVCs of `req.from_namespace` into `req.to_namespace` through CSI
/// snapshots, as described in the [crate docs](crate).
pub async fn clone(cluster: &Cluster, req: CloneRequest) -> Result<CloneOutcome, DataError> {
    let started = Instant::now();
    req.sink.emit(Event::StepStarted { step: STEP.into() });
    let run = Run {
        cluster,
        req: &req,
        run: req.run_id.clone().unwrap_or_else(new_run_id),
        started,
        deadline: started + req.timeout,
    };
    let result = run_clone(&run).await;
    req.sink.emit(Event::StepFinished {
        step: STEP.into(),
        ok: result.is_ok(),
        millis: started.elapsed().as_millis() as u64,
        message: match &result {
            Ok(o) => format!(
                "cloned {} volume(s) from {} into {} (run {})",
                o.volumes.len(),
                req.from_namespace,
                req.to_namespace,
                o.run_id
            ),
            Err(e) => e.to_string(),
        },
    });
    result
}

/// A source PVC with the class chosen for it.
struct Plan {
    pvc: Value,
    name: String,
    class: String,
    size: String,
}

async fn run_clone(run: &Run<'_>) -> Result<CloneOutcome, DataError> {
    let (cluster, req) = (run.cluster, run.req);
    let from = req.from_namespace.as_str();
    let to = req.to_namespace.as_str();

    let pvcs = resolve_pvcs(cluster, from, &req.pvcs).await?;
    let storage_classes = cluster
        .list("storage.k8s.io/v1", "StorageClass", "", None)
        .await?;
    let snapshot_classes = cluster
        .list(SNAPSHOT_API, "VolumeSnapshotClass", "", None)
        .await
        .map_err(|e| match e {
            ClusterError::UnknownKind { .. } => DataError::NoSnapshotApi,
            e => DataError::Cluster(e),
        })?;
    let mut plans = Vec::new();
    for pvc in pvcs {
        let name = pvc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let sc = class::storage_class_of(from, &pvc, &storage_classes)?;
        let sc_name = sc["metadata"]["name"].as_str().unwrap_or_default();
        let provisioner = sc["provisioner"].as_str().unwrap_or_default();
        let class = class::pick_snapshot_class(
            &name,
            sc_name,
            provisioner,
            &snapshot_classes,
            req.snapshot_class.as_deref(),
        )?;
        let size = objects::source_size(&pvc)
            .ok_or_else(|| DataError::InvalidPvc {
                namespace: from.into(),
                name: name.clone(),
                reason: "it has neither a capacity nor a storage request".into(),
            })?
            .to_string();
        let target = ObjectKey::new("v1", "PersistentVolumeClaim", Some(to), &name);
        if let Some(existing) = cluster.get(&target).await?
            && !(req.replace
                && existing["metadata"]["labels"][objects::ROLE_LABEL] == Role::TargetPvc.as_str())
        {
            return Err(DataError::TargetExists {
                namespace: to.into(),
                name,
            });
        }
        run.say(format!(
            "{from}/{name}: StorageClass {sc_name} (provisioner {provisioner}), \
             VolumeSnapshotClass {class}, {size}"
        ));
        plans.push(Plan {
            pvc,
            name,
            class,
            size,
        });
    }

    cluster.ensure_namespace(to).await?;
    if let Some(hook) = &req.pre_snapshot_hook {
        run_hook(run, hook).await?;
    }

    // Take every snapshot before waiting for any, so they are as close in time as the
    // snapshotter allows.
    for p in &plans {
        let c = volume(run, &p.name);
        cluster.create(&c.source_snapshot(&p.class)).await?;
        run.state(
            format!("VolumeSnapshot/{}", c.snapshot_name()),
            State::Applied,
            format!("snapshot of {from}/{} requested", p.name),
        );
    }

    let mut volumes = Vec::new();
    for p in &plans {
        let c = volume(run, &p.name);
        let key = ObjectKey::new(
            SNAPSHOT_API,
            "VolumeSnapshot",
            Some(from),
            &c.snapshot_name(),
        );
        let what = format!("VolumeSnapshot {} in {from} to be ready", c.snapshot_name());
        let snap = run
            .wait(&key, &what, |v| {
                objects::snapshot_state(v) != SnapshotState::Pending
            })
            .await?;
        let content = match objects::snapshot_state(&snap) {
            SnapshotState::Ready { content } => content,
            SnapshotState::Failed { message } => {
                run.state(key_text(&key), State::Failed, message.clone());
                return Err(DataError::SnapshotFailed {
                    namespace: from.into(),
                    name: c.snapshot_name(),
                    message,
                });
            }
            SnapshotState::Pending => unreachable!("the wait ends on a settled state"),
        };
        run.state(key_text(&key), State::Ready, format!("bound to {content}"));

        let content_key = ObjectKey::new(SNAPSHOT_API, "VolumeSnapshotContent", None, &content);
        let bound = run
            .wait(
                &content_key,
                &format!("VolumeSnapshotContent {content} to report its snapshot handle"),
                |v| v["status"]["snapshotHandle"].is_string(),
            )
            .await?;
        let handle = bound["status"]["snapshotHandle"]
            .as_str()
            .ok_or_else(|| DataError::NoSnapshotHandle(content.clone()))?;
        let driver = bound["spec"]["driver"].as_str().unwrap_or_default();
        let mode = p.pvc["spec"]["volumeMode"].as_str().unwrap_or("Filesystem");

        cluster
            .create(&c.target_content(driver, handle, &p.class, mode))
            .await?;
        cluster.create(&c.target_snapshot(&p.class)).await?;
        if req.replace {
            replace_claim(run, to, &p.name).await?;
        }
        cluster.create(&c.target_pvc(&p.pvc, &p.size)).await?;
        run.state(
            format!("PersistentVolumeClaim/{}", p.name),
            State::Applied,
            format!(
                "{to}/{} restored from {from}/{} ({})",
                p.name,
                c.snapshot_name(),
                p.size
            ),
        );
        volumes.push(ClonedVolume {
            pvc: p.name.clone(),
            snapshot: c.snapshot_name(),
            snapshot_class: p.class.clone(),
            content: c.content_name(),
            size: p.size.clone(),
        });
    }

    let mut deleted = Vec::new();
    if let Some(keep) = req.keep {
        for p in &plans {
            deleted.extend(prune(run, &p.name, keep).await?);
        }
    }
    Ok(CloneOutcome {
        run_id: run.run.clone(),
        volumes,
        deleted,
    })
}

fn volume<'a>(run: &'a Run<'_>, pvc: &'a str) -> VolumeClone<'a> {
    VolumeClone {
        run: &run.run,
        from: &run.req.from_namespace,
        to: &run.req.to_namespace,
        pvc,
    }
}

fn key_text(key: &ObjectKey) -> String {
    format!("{}/{}", key.kind, key.name)
}

async fn resolve_pvcs(
    cluster: &Cluster,
    namespace: &str,
    selector: &PvcSelector,
) -> Result<Vec<Value>, DataError> {
    let mut pvcs = match selector {
        PvcSelector::Names(names) => {
            let mut out = Vec::new();
            for name in names.iter().collect::<BTreeSet<_>>() {
                let key = ObjectKey::new("v1", "PersistentVolumeClaim", Some(namespace), name);
                match cluster.get(&key).await? {
                    Some(pvc) => out.push(pvc),
                    None => {
                        return Err(DataError::PvcNotFound {
                            namespace: namespace.into(),
                            name: name.clone(),
                        });
                    }
                }
            }
            out
        }
        PvcSelector::Labels(sel) => {
            cluster
                .list("v1", "PersistentVolumeClaim", namespace, Some(sel))
                .await?
        }
    };
    if pvcs.is_empty() {
        return Err(DataError::NoPvcs {
            namespace: namespace.into(),
            selector: selector.to_string(),
        });
    }
    pvcs.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    Ok(pvcs)
}

async fn run_hook(run: &Run<'_>, hook: &Value) -> Result<(), DataError> {
    let from = run.req.from_namespace.as_str();
    if hook["kind"] != "Job" || hook["apiVersion"] != "batch/v1" {
        return Err(DataError::InvalidHook(format!(
            "got {} {}",
            hook["apiVersion"], hook["kind"]
        )));
    }
    let base = hook["metadata"]["name"]
        .as_str()
        .ok_or_else(|| DataError::InvalidHook("it has no metadata.name".into()))?;
    // Job names are label values too: at most 63 characters. Shorten the base, keep the run.
    let room = 62usize.saturating_sub(run.run.len());
    let short: String = base.chars().take(room).collect();
    let name = format!("{}-{}", short.trim_end_matches('-'), run.run);
    let mut job = hook.clone();
    job["metadata"]["name"] = name.clone().into();
    job["metadata"]["namespace"] = from.into();
    let labels = volume(run, "").labels(Role::Hook);
    let mut merged = job["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in labels.as_object().into_iter().flatten() {
        if k != objects::SOURCE_PVC_LABEL {
            merged.insert(k.clone(), v.clone());
        }
    }
    job["metadata"]["labels"] = merged.into();
    run.cluster.create(&job).await?;
    let key = ObjectKey::new("batch/v1", "Job", Some(from), &name);
    run.state(
        key_text(&key),
        State::Applied,
        "pre-snapshot hook started".into(),
    );
    let done = run
        .wait(
            &key,
            &format!("pre-snapshot hook Job {name} in {from}"),
            |v| objects::job_state(v) != JobState::Running,
        )
        .await?;
    match objects::job_state(&done) {
        JobState::Failed(message) => {
            run.state(key_text(&key), State::Failed, message.clone());
            Err(DataError::HookFailed {
                namespace: from.into(),
                name,
                message,
            })
        }
        _ => {
            run.state(
                key_text(&key),
                State::Ready,
                "pre-snapshot hook complete".into(),
            );
            run.cluster.delete(&key).await?;
            Ok(())
        }
    }
}

/// Deletes the berth-restored claim `name` in `to`, if there, and waits until it is gone (a
/// claim mounted by a pod stays until the pod goes: the timeout then says so).
async fn replace_claim(run: &Run<'_>, to: &str, name: &str) -> Result<(), DataError> {
    let key = ObjectKey::new("v1", "PersistentVolumeClaim", Some(to), name);
    if !run.cluster.delete(&key).await? {
        return Ok(());
    }
    run.state(
        key_text(&key),
        State::Deleted,
        "replaced by a fresh clone".into(),
    );
    while run.cluster.get(&key).await?.is_some() {
        if Instant::now() >= run.deadline {
            return Err(DataError::Timeout {
                what: format!(
                    "the old claim {to}/{name} to be deleted (stop the pods that mount it)"
                ),
                seconds: run.req.timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Deletes `pvc`'s berth snapshots beyond the newest `keep`, and for each the content and
/// target snapshot that re-exposed it in any namespace.
async fn prune(run: &Run<'_>, pvc: &str, keep: usize) -> Result<Vec<String>, DataError> {
    let cluster = run.cluster;
    let from = run.req.from_namespace.as_str();
    let snapshots = cluster
        .list(
            SNAPSHOT_API,
            "VolumeSnapshot",
            from,
            Some(&objects::selector(Role::SourceSnapshot, from, pvc)),
        )
        .await?;
    let expired = retention::expired(&snapshots, keep, &run.run);
    if expired.is_empty() {
        return Ok(Vec::new());
    }
    let runs: BTreeSet<&str> = expired
        .iter()
        .filter_map(|s| s["metadata"]["labels"][objects::RUN_LABEL].as_str())
        .collect();
    let contents = cluster
        .list(
            SNAPSHOT_API,
            "VolumeSnapshotContent",
            "",
            Some(&objects::selector(Role::TargetContent, from, pvc)),
        )
        .await?;
    let mut deleted = Vec::new();
    for content in &contents {
        let content_run = content["metadata"]["labels"][objects::RUN_LABEL].as_str();
        if !content_run.is_some_and(|r| runs.contains(r)) {
            continue;
        }
        let r = &content["spec"]["volumeSnapshotRef"];
        if let (Some(ns), Some(name)) = (r["namespace"].as_str(), r["name"].as_str()) {
            let key = ObjectKey::new(SNAPSHOT_API, "VolumeSnapshot", Some(ns), name);
            if cluster.delete(&key).await? {
                deleted.push(format!("VolumeSnapshot/{name} in {ns}"));
            }
        }
        let key = ObjectKey::of(content)?;
        if cluster.delete(&key).await? {
            deleted.push(key.to_string());
        }
    }
    for snap in expired {
        let key = ObjectKey::of(snap)?;
        if cluster.delete(&key).await? {
            deleted.push(key.to_string());
        }
    }
    for d in &deleted {
        run.say(format!("retention (keep {keep}): deleted {d}"));
    }
    Ok(deleted)
}
