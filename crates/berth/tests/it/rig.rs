//! Proves the test environment itself: real controllers drive workloads on kwok nodes, kwok's
//! failure stages fire on request, and the registry stores and serves content.

use std::time::Duration;

use berth_cluster::ObjectKey;
use berth_testkit::TestContext;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn deployment(name: &str, replicas: u32, simulate: Option<&str>) -> Value {
    let mut annotations = json!({});
    if let Some(s) = simulate {
        annotations["berth.dev/simulate"] = json!(s);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "docker.io/library/busybox:latest"}]}
            }
        }
    })
}

fn job(name: &str, simulate: Option<&str>) -> Value {
    let mut annotations = json!({});
    if let Some(s) = simulate {
        annotations["berth.dev/simulate"] = json!(s);
    }
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "load", "image": "docker.io/library/busybox:latest", "command": ["true"]}]
                }
            }
        }
    })
}

fn int(v: &Value, path: &str) -> i64 {
    v.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

/// The state of the first container of the first pod matching `app=<name>`, once it has one.
async fn first_container_status(ctx: &TestContext, selector: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = ctx
            .cluster
            .list("v1", "Pod", &ctx.namespace, Some(selector))
            .await
            .expect("list pods");
        if let Some(status) = pods
            .iter()
            .find_map(|p| p.pointer("/status/containerStatuses/0").cloned())
        {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pod with container status for {selector} in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn deployment_with_three_replicas_becomes_available() {
    let ctx = TestContext::new("rig-deploy").await;
    ctx.apply(deployment("web", 3, None)).await;
    let key = ObjectKey::new("apps/v1", "Deployment", Some(&ctx.namespace), "web");
    let done = ctx
        .cluster
        .wait_until(&key, WAIT, |d| {
            int(d, "/status/availableReplicas") == 3 && int(d, "/status/updatedReplicas") == 3
        })
        .await
        .expect("the Deployment becomes available");
    assert_eq!(int(&done, "/status/readyReplicas"), 3);
    let pods = ctx
        .cluster
        .list("v1", "Pod", &ctx.namespace, Some("app=web"))
        .await
        .unwrap();
    assert_eq!(pods.len(), 3);
    let nodes: std::collections::BTreeSet<_> = pods
        .iter()
        .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
        .collect();
    assert!(
        nodes.iter().all(|n| n.starts_with("kwok-node-")),
        "scheduled on kwok nodes: {nodes:?}"
    );
}

#[tokio::test]
async fn job_completes() {
    let ctx = TestContext::new("rig-job").await;
    ctx.apply(job("load", None)).await;
    let key = ObjectKey::new("batch/v1", "Job", Some(&ctx.namespace), "load");
    let done = ctx
        .cluster
        .wait_until(&key, WAIT, |j| int(j, "/status/succeeded") == 1)
        .await
        .expect("the Job completes");
    let conditions = done
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True"),
        "Complete condition: {conditions:?}"
    );
}

#[tokio::test]
async fn crash_loop_annotation_shows_crashloopbackoff() {
    let ctx = TestContext::new("rig-crash").await;
    ctx.apply(deployment("crash", 1, Some("crash-loop"))).await;
    let status = first_container_status(&ctx, "app=crash").await;
    assert_eq!(
        status.pointer("/state/waiting/reason"),
        Some(&json!("CrashLoopBackOff")),
        "{status}"
    );
    assert!(int(&status, "/restartCount") > 0);
    assert_eq!(
        status.pointer("/lastState/terminated/exitCode"),
        Some(&json!(1))
    );
}

#[tokio::test]
async fn never_ready_annotation_keeps_pod_unready() {
    let ctx = TestContext::new("rig-unready").await;
    ctx.apply(deployment("slow", 1, Some("never-ready"))).await;
    let status = first_container_status(&ctx, "app=slow").await;
    assert_eq!(status["ready"], json!(false));
    assert!(status.pointer("/state/running").is_some(), "{status}");
}

#[tokio::test]
async fn image_pull_error_annotation_shows_imagepullbackoff() {
    let ctx = TestContext::new("rig-pull").await;
    ctx.apply(deployment("nopull", 1, Some("image-pull-error")))
        .await;
    let status = first_container_status(&ctx, "app=nopull").await;
    assert_eq!(
        status.pointer("/state/waiting/reason"),
        Some(&json!("ImagePullBackOff")),
        "{status}"
    );
}

#[tokio::test]
async fn exit_nonzero_annotation_fails_the_job() {
    let ctx = TestContext::new("rig-jobfail").await;
    ctx.apply(job("bad", Some("exit-nonzero"))).await;
    let key = ObjectKey::new("batch/v1", "Job", Some(&ctx.namespace), "bad");
    let failed = ctx
        .cluster
        .wait_until(&key, WAIT, |j| {
            j.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Failed" && c["status"] == "True")
                })
        })
        .await
        .expect("the Job fails after its backoff limit");
    assert_eq!(
        int(&failed, "/status/failed"),
        2,
        "backoffLimit 1 = two failed pods: {failed}"
    );
}

#[tokio::test]
async fn blob_and_manifest_round_trip_through_the_registry() {
    let env = berth_testkit::TestEnv::get();
    let registry = env.registry();
    let image: berth_types::ImageRef = format!(
        "{}/t/roundtrip-{}:v1",
        env.registry_host(),
        berth_testkit::unique_suffix()
    )
    .parse()
    .unwrap();

    let layer = format!("layer bytes {}", berth_testkit::unique_suffix()).into_bytes();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer_digest = registry
        .push_blob(&image, layer.clone())
        .await
        .expect("push layer");
    let config_digest = registry
        .push_blob(&image, config.clone())
        .await
        .expect("push config");
    assert!(registry.blob_exists(&image, &layer_digest).await.unwrap());

    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}]
    }))
    .unwrap();
    let manifest_digest = registry
        .push_manifest(
            &image,
            manifest.clone(),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await
        .expect("push manifest");

    let (by_tag, media_type, digest) = registry.pull_manifest(&image).await.expect("pull by tag");
    assert_eq!(by_tag, manifest);
    assert_eq!(digest, manifest_digest);
    assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
    let (by_digest, _, _) = registry
        .pull_manifest(&image.pinned(manifest_digest.clone()))
        .await
        .expect("pull by digest");
    assert_eq!(by_digest, manifest);
    assert_eq!(
        registry.pull_blob(&image, &layer_digest).await.unwrap(),
        layer
    );
}

#[tokio::test]
async fn base_images_are_served_under_docker_hub_paths() {
    let env = berth_testkit::TestEnv::get();
    let registry = env.registry();
    for name in ["library/busybox:latest", "library/debian:bookworm-slim"] {
        let image: berth_types::ImageRef =
            format!("{}/{name}", env.registry_host()).parse().unwrap();
        let (bytes, _, _) = registry
            .pull_manifest(&image)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut m: Value = serde_json::from_slice(&bytes).unwrap();
        // debian:bookworm-slim is an index of amd64 and arm64: each platform's manifest too.
        if let Some(platforms) = m["manifests"].as_array() {
            let archs: Vec<&str> = platforms
                .iter()
                .filter_map(|p| p["platform"]["architecture"].as_str())
                .collect();
            assert_eq!(archs, ["amd64", "arm64"], "{name}");
            let repo = name.split(':').next().unwrap();
            let digest = platforms[0]["digest"].as_str().unwrap();
            let by_digest: berth_types::ImageRef =
                format!("{}/{repo}@{digest}", env.registry_host())
                    .parse()
                    .unwrap();
            let (bytes, _, _) = registry.pull_manifest(&by_digest).await.unwrap();
            m = serde_json::from_slice(&bytes).unwrap();
        }
        let layer: berth_types::Digest =
            m["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
        assert!(
            registry.blob_exists(&image, &layer).await.unwrap(),
            "{name} layer present"
        );
    }
}
