//! `berth data clone` against the real API server and the real snapshot CRDs.
//!
//! The environment has no CSI driver and no snapshot controller, so [`FakeSnapshotter`] plays
//! the external snapshotter: for each VolumeSnapshot berth creates it makes a bound
//! VolumeSnapshotContent with a snapshot handle and marks the snapshot ready (or failed),
//! through the status subresource with the environment's kubectl. Everything berth does goes
//! through the API server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_cluster::{Cluster, ObjectKey, Watched};
use berth_data::{CloneRequest, DataError, PvcSelector};
use berth_testkit::{TestContext, TestEnv, unique_suffix};
use berth_types::Event;
use futures::StreamExt;
use serde_json::{Value, json};

const SNAP: &str = "snapshot.storage.k8s.io/v1";
const OWNER: &str = "berth-test/owner";

/// Cluster-scoped objects of one test (StorageClass, VolumeSnapshotClass, contents), labelled
/// with the test's namespace and deleted on drop — berth's own contents too.
struct ClusterScoped {
    namespace: String,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let env = TestEnv::get();
        for selector in [
            format!("{OWNER}={}", self.namespace),
            format!("berth.dev/data-source-namespace={}", self.namespace),
        ] {
            let _ = std::process::Command::new(env.bin_dir().join("kubectl"))
                .env("KUBECONFIG", env.kubeconfig())
                .args([
                    "delete",
                    "volumesnapshotcontents,volumesnapshotclasses,storageclasses",
                    "-l",
                    &selector,
                    "--wait=false",
                    "--ignore-not-found",
                ])
                .output();
        }
    }
}

/// A StorageClass with a made-up CSI driver, optionally a VolumeSnapshotClass for it, and a
/// 1Gi PVC `data` of that class in the test's namespace.
struct Storage {
    class: String,
    driver: String,
    snapshot_class: String,
    _cleanup: ClusterScoped,
}

async fn storage(ctx: &TestContext, with_snapshot_class: bool) -> Storage {
    let id = unique_suffix();
    let driver = format!("fake-{id}.csi.berth.test");
    let class = format!("t-sc-{id}");
    let snapshot_class = format!("t-vsc-{id}");
    let cleanup = ClusterScoped {
        namespace: ctx.namespace.clone(),
    };
    let labels = json!({OWNER: ctx.namespace});
    ctx.cluster
        .create(
            &json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": class, "labels": labels}, "provisioner": driver,
            "volumeBindingMode": "WaitForFirstConsumer"}),
        )
        .await
        .expect("create StorageClass");
    if with_snapshot_class {
        ctx.cluster
            .create(&json!({"apiVersion": SNAP, "kind": "VolumeSnapshotClass",
                "metadata": {"name": snapshot_class, "labels": labels},
                "driver": driver, "deletionPolicy": "Delete"}))
            .await
            .expect("create VolumeSnapshotClass");
    }
    ctx.apply(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "labels": {"app": "db"}},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}))
        .await;
    Storage {
        class,
        driver,
        snapshot_class,
        _cleanup: cleanup,
    }
}

/// What the fake snapshotter does with each new snapshot.
#[derive(Clone)]
enum Outcome {
    Ready,
    Fail(&'static str),
}

/// Plays the external snapshotter for berth's snapshots in one namespace until dropped.
struct FakeSnapshotter(tokio::task::JoinHandle<()>);

impl Drop for FakeSnapshotter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn kubectl(args: &[&str]) {
    let env = TestEnv::get();
    let out = tokio::process::Command::new(env.bin_dir().join("kubectl"))
        .env("KUBECONFIG", env.kubeconfig())
        .args(args)
        .output()
        .await
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn fake_snapshotter(
    cluster: &Cluster,
    namespace: &str,
    driver: &str,
    outcome: Outcome,
) -> FakeSnapshotter {
    let mut stream = cluster
        .watch(
            SNAP,
            "VolumeSnapshot",
            Some(namespace),
            None,
            Some("berth.dev/data-role=source-snapshot"),
        )
        .await
        .expect("watch VolumeSnapshots");
    let (ns, driver) = (namespace.to_string(), driver.to_string());
    let cluster = cluster.clone();
    FakeSnapshotter(tokio::spawn(async move {
        while let Some(Ok(Watched::Applied(vs))) = stream.next().await {
            if vs.get("status").is_some_and(|s| !s.is_null()) {
                continue;
            }
            let name = vs["metadata"]["name"].as_str().unwrap().to_string();
            let uid = vs["metadata"]["uid"].as_str().unwrap().to_string();
            let status = match &outcome {
                Outcome::Fail(message) => json!({"status": {"readyToUse": false,
                    "error": {"message": message, "time": "2026-11-25T12:00:00Z"}}}),
                Outcome::Ready => {
                    let content = format!("t-snapcontent-{uid}");
                    cluster
                        .create(&json!({"apiVersion": SNAP, "kind": "VolumeSnapshotContent",
                            "metadata": {"name": content, "labels": {OWNER: ns}},
                            "spec": {"deletionPolicy": "Delete", "driver": driver,
                                "volumeSnapshotClassName": vs["spec"]["volumeSnapshotClassName"],
                                "source": {"volumeHandle": "vol-1"},
                                "volumeSnapshotRef": {"apiVersion": SNAP, "kind": "VolumeSnapshot",
                                    "namespace": ns, "name": name, "uid": uid}}}))
                        .await
                        .expect("create the bound VolumeSnapshotContent");
                    let patch = json!({"status": {"readyToUse": true, "restoreSize": 1073741824_i64,
                        "snapshotHandle": format!("handle-{name}")}});
                    kubectl(&[
                        "patch",
                        "volumesnapshotcontent",
                        &content,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        &patch.to_string(),
                    ])
                    .await;
                    json!({"status": {"readyToUse": true, "restoreSize": "1Gi",
                        "boundVolumeSnapshotContentName": content}})
                }
            };
            kubectl(&[
                "patch",
                "volumesnapshot",
                "-n",
                &ns,
                &name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ])
            .await;
        }
    }))
}

fn request(from: &str, to: &str) -> CloneRequest {
    CloneRequest {
        from_namespace: from.into(),
        to_namespace: to.into(),
        pvcs: PvcSelector::Names(vec!["data".into()]),
        snapshot_class: None,
        keep: None,
        timeout: Duration::from_secs(60),
        pre_snapshot_hook: None,
        run_id: None,
        replace: false,
        sink: Arc::new(|_| {}),
    }
}

async fn get(cluster: &Cluster, api: &str, kind: &str, ns: Option<&str>, name: &str) -> Value {
    cluster
        .get(&ObjectKey::new(api, kind, ns, name))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{kind}/{name} in {ns:?} does not exist"))
}

async fn exists(cluster: &Cluster, api: &str, kind: &str, ns: Option<&str>, name: &str) -> bool {
    let key = ObjectKey::new(api, kind, ns, name);
    // Deletion is in the background; an object on its way out counts as gone.
    cluster
        .get(&key)
        .await
        .unwrap()
        .is_some_and(|o| o["metadata"]["deletionTimestamp"].is_null())
}

#[tokio::test(flavor = "multi_thread")]
async fn data_clone_restores_a_pvc_into_another_namespace() {
    let prod = TestContext::new("data-clone-prod").await;
    let staging = TestContext::new("data-clone-staging").await;
    let st = storage(&prod, true).await;
    let _snapshotter =
        fake_snapshotter(&prod.cluster, &prod.namespace, &st.driver, Outcome::Ready).await;

    let env = TestEnv::get();
    let out = tokio::process::Command::from(env.berth(env!("CARGO_BIN_EXE_berth").as_ref()))
        .args([
            "data",
            "clone",
            "--from",
            &prod.namespace,
            "--to",
            &staging.namespace,
        ])
        .args(["-l", "app=db", "--timeout", "60s", "-o", "json"])
        .output()
        .await
        .expect("run berth data clone");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let doc: Value = serde_json::from_str(stdout.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(doc["ok"], true, "{doc}");
    let volume = &doc["volumes"][0];
    assert_eq!(volume["pvc"], "data");
    assert_eq!(volume["snapshot_class"], st.snapshot_class.as_str());
    let snapshot = volume["snapshot"].as_str().unwrap();
    let content_name = volume["content"].as_str().unwrap();

    // The source snapshot, taken with the driver's class.
    let source = get(
        &prod.cluster,
        SNAP,
        "VolumeSnapshot",
        Some(&prod.namespace),
        snapshot,
    )
    .await;
    assert_eq!(
        source["spec"]["source"]["persistentVolumeClaimName"],
        "data"
    );
    assert_eq!(
        source["spec"]["volumeSnapshotClassName"],
        st.snapshot_class.as_str()
    );

    // Re-exposed in the target namespace through a pre-provisioned content.
    let content = get(
        &prod.cluster,
        SNAP,
        "VolumeSnapshotContent",
        None,
        content_name,
    )
    .await;
    assert_eq!(
        content["spec"]["source"]["snapshotHandle"],
        format!("handle-{snapshot}")
    );
    assert_eq!(content["spec"]["deletionPolicy"], "Retain");
    assert_eq!(content["spec"]["driver"], st.driver.as_str());
    assert_eq!(
        content["spec"]["volumeSnapshotRef"],
        json!({"namespace": staging.namespace, "name": snapshot})
    );
    let target = get(
        &prod.cluster,
        SNAP,
        "VolumeSnapshot",
        Some(&staging.namespace),
        snapshot,
    )
    .await;
    assert_eq!(
        target["spec"]["source"]["volumeSnapshotContentName"],
        content_name
    );

    // The restored claim: same name, class, modes and size, the target snapshot as source.
    let pvc = get(
        &prod.cluster,
        "v1",
        "PersistentVolumeClaim",
        Some(&staging.namespace),
        "data",
    )
    .await;
    assert_eq!(pvc["spec"]["storageClassName"], st.class.as_str());
    assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(
        pvc["spec"]["dataSource"],
        json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot})
    );

    // A second clone into the same namespace refuses to overwrite the claim.
    let again =
        berth_data::clone(&prod.cluster, request(&prod.namespace, &staging.namespace)).await;
    assert!(
        matches!(&again, Err(DataError::TargetExists { name, .. }) if name == "data"),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_clone_without_a_snapshot_class_says_which_storage_class_lacks_support() {
    let prod = TestContext::new("data-noclass").await;
    let st = storage(&prod, false).await;
    let err = berth_data::clone(
        &prod.cluster,
        request(&prod.namespace, &format!("{}-to", prod.namespace)),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "StorageClass `{}` (provisioner `{}`) has no snapshot support",
            st.class, st.driver
        )),
        "{text}"
    );
    assert!(text.contains("VolumeSnapshotClass"), "{text}");
    // Nothing was snapshotted.
    let snaps = prod
        .cluster
        .list(SNAP, "VolumeSnapshot", &prod.namespace, None)
        .await
        .unwrap();
    assert!(snaps.is_empty(), "{snaps:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_clone_fails_with_the_snapshotters_error_message() {
    let prod = TestContext::new("data-snap-error").await;
    let staging = TestContext::new("data-snap-error-to").await;
    let st = storage(&prod, true).await;
    let _snapshotter = fake_snapshotter(
        &prod.cluster,
        &prod.namespace,
        &st.driver,
        Outcome::Fail("Failed to create snapshot: quota exceeded for snapshots"),
    )
    .await;
    let mut req = request(&prod.namespace, &staging.namespace);
    // Long enough that only the reported error can end the wait.
    req.timeout = Duration::from_secs(600);
    let err = berth_data::clone(&prod.cluster, req).await.unwrap_err();
    assert!(matches!(err, DataError::SnapshotFailed { .. }), "{err:?}");
    assert!(
        err.to_string().contains("quota exceeded for snapshots"),
        "{err}"
    );
    // No claim was made in the target.
    let pvcs = prod
        .cluster
        .list("v1", "PersistentVolumeClaim", &staging.namespace, None)
        .await
        .unwrap();
    assert!(pvcs.is_empty(), "{pvcs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_clone_retention_deletes_the_oldest_snapshot_and_its_copies() {
    let prod = TestContext::new("data-keep").await;
    let targets = [
        TestContext::new("data-keep-a").await,
        TestContext::new("data-keep-b").await,
        TestContext::new("data-keep-c").await,
    ];
    let st = storage(&prod, true).await;
    let _snapshotter =
        fake_snapshotter(&prod.cluster, &prod.namespace, &st.driver, Outcome::Ready).await;
    let mut outcomes = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let mut req = request(&prod.namespace, &target.namespace);
        req.keep = Some(2);
        req.run_id = Some(format!("run{i}"));
        outcomes.push(berth_data::clone(&prod.cluster, req).await.unwrap());
    }
    assert!(outcomes[0].deleted.is_empty() && outcomes[1].deleted.is_empty());
    let first = &outcomes[0].volumes[0];
    let c = &prod.cluster;
    assert!(
        !exists(
            c,
            SNAP,
            "VolumeSnapshot",
            Some(&prod.namespace),
            &first.snapshot
        )
        .await
    );
    assert!(
        !exists(
            c,
            SNAP,
            "VolumeSnapshot",
            Some(&targets[0].namespace),
            &first.snapshot
        )
        .await
    );
    assert!(!exists(c, SNAP, "VolumeSnapshotContent", None, &first.content).await);
    assert_eq!(outcomes[2].deleted.len(), 3, "{:?}", outcomes[2].deleted);
    // The claim restored from it stays: retention is about snapshots only.
    assert!(
        exists(
            c,
            "v1",
            "PersistentVolumeClaim",
            Some(&targets[0].namespace),
            "data"
        )
        .await
    );
    for (o, t) in outcomes[1..].iter().zip(&targets[1..]) {
        let v = &o.volumes[0];
        assert!(
            exists(
                c,
                SNAP,
                "VolumeSnapshot",
                Some(&prod.namespace),
                &v.snapshot
            )
            .await
        );
        assert!(exists(c, SNAP, "VolumeSnapshot", Some(&t.namespace), &v.snapshot).await);
        assert!(exists(c, SNAP, "VolumeSnapshotContent", None, &v.content).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn data_clone_runs_the_pre_snapshot_hook_before_snapshotting() {
    let prod = TestContext::new("data-hook").await;
    let staging = TestContext::new("data-hook-to").await;
    let st = storage(&prod, true).await;
    let _snapshotter =
        fake_snapshotter(&prod.cluster, &prod.namespace, &st.driver, Outcome::Ready).await;
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let mut req = request(&prod.namespace, &staging.namespace);
    let seen = events.clone();
    req.sink = Arc::new(move |e| seen.lock().unwrap().push(e));
    req.pre_snapshot_hook = Some(json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "fsync-lock"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "lock", "image": "busybox", "command": ["sync"]}]}}}}));
    berth_data::clone(&prod.cluster, req).await.unwrap();
    let states: Vec<(String, String)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ObjectState { object, state, .. } => {
                Some((object.clone(), state.name().to_string()))
            }
            _ => None,
        })
        .collect();
    let hook_done = states
        .iter()
        .position(|(o, s)| o.starts_with("Job/fsync-lock-") && s == "ready")
        .unwrap_or_else(|| panic!("{states:?}"));
    let snapshot = states
        .iter()
        .position(|(o, _)| o.starts_with("VolumeSnapshot/"))
        .unwrap_or_else(|| panic!("{states:?}"));
    assert!(hook_done < snapshot, "{states:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_clone_stops_when_the_pre_snapshot_hook_fails() {
    let prod = TestContext::new("data-hook-fail").await;
    let staging = TestContext::new("data-hook-fail-to").await;
    let _st = storage(&prod, true).await;
    let mut req = request(&prod.namespace, &staging.namespace);
    req.pre_snapshot_hook = Some(json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "fsync-lock"},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": {"berth.dev/simulate": "exit-nonzero"}},
            "spec": {"restartPolicy": "Never",
                "containers": [{"name": "lock", "image": "busybox", "command": ["false"]}]}}}}));
    let err = berth_data::clone(&prod.cluster, req).await.unwrap_err();
    assert!(matches!(err, DataError::HookFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("no snapshot was taken"), "{err}");
    let snaps = prod
        .cluster
        .list(SNAP, "VolumeSnapshot", &prod.namespace, None)
        .await
        .unwrap();
    assert!(snaps.is_empty(), "{snaps:?}");
}

/// `berth run` into an environment with a `data` step: the claims are cloned from production
/// and the database copied with masking before the deploy; the next run replaces the clone
/// with a fresh one and retention keeps one snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn berth_run_clones_and_copies_before_the_deploy_and_refreshes_on_the_next_run() {
    use crate::copy::{Db, seed};

    let prod = TestContext::new("run-data-prod").await;
    let staging = TestContext::new("run-data-staging").await;
    let st = storage(&prod, true).await;
    let _snapshotter =
        fake_snapshotter(&prod.cluster, &prod.namespace, &st.driver, Outcome::Ready).await;
    let source = Db::new("runsrc");
    let target = Db::new("rundst");
    seed(&source, 30);

    let project = StagingProject::new(
        "berth-run-data",
        &prod.namespace,
        &staging.namespace,
        "\x20     clone: { from: production, pvcs: [data], keep: 1, timeout: 60s }\n",
        "users.email: email, orders.customer_email: email, users.name: name",
    );
    let run = || project.run(&source, &target, "run-data-step-masking-key");
    let out = run().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("data: cloned 1 from production"),
        "{stdout}"
    );
    assert!(
        stdout.contains("data: copied") && stdout.contains("masked cells"),
        "{stdout}"
    );
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["revision"], 1, "{last}");

    // The deploy happened after the data step, onto the clone and the masked copy.
    let pvc = get(
        &prod.cluster,
        "v1",
        "PersistentVolumeClaim",
        Some(&staging.namespace),
        "data",
    )
    .await;
    assert_eq!(
        pvc["metadata"]["labels"]["berth.dev/data-role"],
        "target-pvc"
    );
    let first_run = pvc["metadata"]["labels"]["berth.dev/data-run"].clone();
    assert!(
        exists(
            &prod.cluster,
            "v1",
            "ConfigMap",
            Some(&staging.namespace),
            "settings"
        )
        .await
    );
    let (s, t) = (source.rows("users"), target.rows("users"));
    assert_eq!(s.len(), t.len());
    for (id, row) in &s {
        assert_ne!(row["email"], t[id]["email"], "user {id}");
    }

    // The next run refreshes: a new snapshot, the claim replaced, the old snapshot expired.
    source.sql("INSERT INTO users (id, email, created) VALUES (1000, 'new@example.org', now())");
    let out = run().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("retention deleted"), "{stdout}");
    let pvc = get(
        &prod.cluster,
        "v1",
        "PersistentVolumeClaim",
        Some(&staging.namespace),
        "data",
    )
    .await;
    assert_ne!(pvc["metadata"]["labels"]["berth.dev/data-run"], first_run);
    let snaps = prod
        .cluster
        .list(
            SNAP,
            "VolumeSnapshot",
            &prod.namespace,
            Some("berth.dev/data-role=source-snapshot"),
        )
        .await
        .unwrap();
    let live: Vec<_> = snaps
        .iter()
        .filter(|s| s["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert_eq!(live.len(), 1, "keep: 1");
    let t2 = target.rows("users");
    assert_eq!(t2.len(), s.len() + 1, "the copy is fresh");
    assert_ne!(t2[&1000]["email"], "new@example.org");
    assert_eq!(
        t2[&1]["email"], t[&1]["email"],
        "the same key masks alike run after run"
    );
}

/// The bug: the data step ran before the deploy took the release's lock, so a run replaced
/// staging's data while another deploy of staging was still going. Now the data step waits
/// for the lock and holds it into the deploy.
#[tokio::test]
async fn the_data_step_waits_for_the_release_lock_another_deploy_holds() {
    use crate::copy::{Db, seed};

    let staging = TestContext::new("run-data-lock").await;
    let source = Db::new("locksrc");
    let target = Db::new("lockdst");
    seed(&source, 10);
    let prod_namespace = format!("{}-prod", staging.namespace);
    let project = StagingProject::new(
        "berth-run-data-lock",
        &prod_namespace,
        &staging.namespace,
        "",
        "users.email: email, orders.customer_email: email",
    );
    // Another deploy of staging holds the release's lock (a Lease that will not expire).
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "berth-lock-staging"},
        "spec": {"holderIdentity": "another deploy (pid 1)", "leaseDurationSeconds": 3600,
                 "acquireTime": "2026-12-02T00:00:00.000000Z",
                 "renewTime": "2026-12-02T00:00:00.000000Z"}
    });
    staging.apply(lease).await;

    let mut cmd = project.run(&source, &target, "run-data-lock-masking-key");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let running = cmd.spawn().unwrap();

    // While the other deploy holds the lock, staging's database is not touched.
    let untouched =
        || target.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'users'") == "0";
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            untouched(),
            "the data step ran while another deploy held the lock"
        );
    }
    staging
        .cluster
        .delete(&ObjectKey::new(
            "coordination.k8s.io/v1",
            "Lease",
            Some(&staging.namespace),
            "berth-lock-staging",
        ))
        .await
        .unwrap();
    let out = running.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("data: copied"), "{stdout}");
    assert_eq!(target.rows("users").len(), 10);
}

/// A repository with one manifests-only service and environments `production` and `staging`,
/// whose data step copies (masked by `mask`) and, with `clone` (a berth.yaml line), clones
/// from production. Removed on drop.
struct StagingProject {
    dir: std::path::PathBuf,
}

impl StagingProject {
    fn new(tag: &str, prod: &str, staging: &str, clone: &str, mask: &str) -> StagingProject {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", unique_suffix()));
        std::fs::create_dir_all(dir.join("k8s")).unwrap();
        std::fs::write(
            dir.join("k8s/config.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: staging}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("berth.yaml"),
            format!(
                "services:\n  - name: settings\n    manifests: {{ path: [k8s] }}\n\
                 environments:\n  - name: production\n    namespace: {prod}\n\
                 \x20 - name: staging\n    namespace: {staging}\n    deploy: {{ timeout: 1m }}\n\
                 \x20   data:\n{clone}\
                 \x20     copy:\n\
                 \x20       from: production\n\
                 \x20       source-url-env: PROD_DB_URL\n\
                 \x20       target-url-env: STAGING_DB_URL\n\
                 \x20       mask: {{ {mask} }}\n"
            ),
        )
        .unwrap();
        StagingProject { dir }
    }

    /// `berth run -e staging -o json` of the project, copying `source` into `target`.
    fn run(
        &self,
        source: &crate::copy::Db,
        target: &crate::copy::Db,
        key: &str,
    ) -> tokio::process::Command {
        let env = TestEnv::get();
        let mut cmd =
            tokio::process::Command::from(env.berth(env!("CARGO_BIN_EXE_berth").as_ref()));
        cmd.args(["run", "-e", "staging", "-o", "json", "-c"])
            .arg(self.dir.join("berth.yaml"))
            .env("PROD_DB_URL", &source.url)
            .env("STAGING_DB_URL", &target.url)
            .env("BERTH_MASK_KEY", key)
            .env("BERTH_STORE", self.dir.join("store"));
        cmd
    }
}

impl Drop for StagingProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
