use super::*;
use serde_json::json;

/// A pod named `web-1` with one container `app`, the given spec extras and status.
fn pod(restart_policy: &str, container: Value, status: Value) -> Value {
    let mut container = container;
    container["name"] = json!("app");
    if container.get("image").is_none() {
        container["image"] = json!("registry.example/app@sha256:abc");
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"restartPolicy": restart_policy, "containers": [container]},
        "status": status
    })
}

fn only(d: Vec<Diagnosis>) -> Diagnosis {
    assert_eq!(d.len(), 1, "{d:#?}");
    d.into_iter().next().unwrap()
}

// The four shapes kwok produces in the test environment.

#[test]
fn kwok_crash_loop_is_fatal() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 5, "started": false,
            "image": "registry.example/app@sha256:abc",
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                "message": "back-off 2m40s restarting failed container=app pod=web-1_default"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::CrashLoop);
    assert_eq!(d.container.as_deref(), Some("app"));
    assert!(d.fatal);
    assert_eq!(
        d.message,
        "container app: crash-looping, restarted 5 times, last run exited with code 1 (Error); check \
         its logs (kubectl logs web-1 -c app --previous)"
    );
}

#[test]
fn kwok_never_ready_is_not_fatal() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-02T10:00:00Z"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::ReadinessProbeFailed);
    assert!(!d.fatal);
    assert_eq!(
        d.message,
        "container app: running since 2026-11-02T10:00:00Z but not ready; check the readiness \
         probe, the port the app listens on and its logs (kubectl logs web-1 -c app)"
    );
}

#[test]
fn kwok_image_pull_error_is_fatal() {
    let p = pod(
        "Always",
        json!({"image": "x"}),
        json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0, "image": "x",
            "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"x\": not found"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::ImagePullError);
    assert!(d.fatal);
    assert_eq!(
        d.message,
        "container app: image x cannot be pulled (ImagePullBackOff: Back-off pulling image \
         \"x\": not found); check the image name and the registry credentials (imagePullSecrets)"
    );
}

#[test]
fn kwok_exit_non_zero_in_a_failed_pod_is_fatal() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Failed", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::ContainerExitedNonZero);
    assert!(d.fatal);
    assert_eq!(
        d.message,
        "container app: exited with code 1 (Error); check its logs (kubectl logs web-1 -c app)"
    );
}

// Real-world shapes.

#[test]
fn healthy_pod_has_no_diagnosis() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"},
                           {"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{
                "name": "app", "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-02T10:00:00Z"}}}]}),
    );
    assert!(diagnose_pod(&p).is_empty());
}

#[test]
fn young_crash_loop_is_not_yet_fatal() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 1,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 2, "reason": "Error",
                "message": "Error: connect ECONNREFUSED 10.96.4.2:5432\n    at TCPConnectWrap"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::CrashLoop);
    assert!(!d.fatal);
    assert!(
        d.message.contains(
            "last run exited with code 2 (Error): Error: connect ECONNREFUSED 10.96.4.2:5432;"
        ),
        "{}",
        d.message
    );
}

#[test]
fn crash_loop_from_oom_is_reported_as_oom() {
    let p = pod(
        "Always",
        json!({"resources": {"limits": {"memory": "128Mi"}}}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                "startedAt": "2026-11-02T10:01:00Z", "finishedAt": "2026-11-02T10:01:03Z"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::OomKilled);
    assert!(d.fatal);
    assert!(d.message.contains("memory limit of 128Mi"), "{}", d.message);
}

#[test]
fn past_oom_of_a_running_container_is_a_warning() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": true, "restartCount": 1,
            "state": {"running": {"startedAt": "2026-11-02T10:02:00Z"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::OomKilled);
    assert!(!d.fatal);
}

#[test]
fn exit_non_zero_that_will_be_restarted_is_not_fatal() {
    for policy in ["Always", "OnFailure"] {
        let p = pod(
            policy,
            json!({}),
            json!({"phase": "Running", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}),
        );
        let d = only(diagnose_pod(&p));
        assert_eq!(d.kind, DiagnosisKind::ContainerExitedNonZero);
        assert!(!d.fatal, "{policy}");
        assert!(
            d.message.contains("(Error, killed by SIGKILL"),
            "{}",
            d.message
        );
    }
}

#[test]
fn exit_non_zero_with_restart_policy_never_is_fatal() {
    let p = pod(
        "Never",
        json!({}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 127, "reason": "Error"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert!(d.fatal);
    assert!(d.message.contains("command not found"), "{}", d.message);
}

#[test]
fn exit_zero_is_fine() {
    let p = pod(
        "Never",
        json!({}),
        json!({"phase": "Succeeded", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    assert!(diagnose_pod(&p).is_empty());
}

#[test]
fn invalid_image_name_is_fatal() {
    let p = pod(
        "Always",
        json!({"image": "registry.example/App:Latest"}),
        json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "image": "registry.example/App:Latest",
            "state": {"waiting": {"reason": "InvalidImageName",
                "message": "Failed to apply default image tag \"registry.example/App:Latest\": couldn't parse image name \"registry.example/App:Latest\": invalid reference format: repository name must be lowercase"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::ImagePullError);
    assert!(d.fatal);
    assert!(
        d.message.ends_with("check the image reference"),
        "{}",
        d.message
    );
}

#[test]
fn err_image_pull_with_unauthorized_registry() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "image": "registry.example/app@sha256:abc",
            "state": {"waiting": {"reason": "ErrImagePull",
                "message": "failed to pull and unpack image \"registry.example/app@sha256:abc\": failed to resolve reference: pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert!(d.fatal);
    assert!(
        d.message.starts_with(
            "container app: registry refused the credentials for registry.example/app@sha256:abc \
             (no pull secret: the pod has no imagePullSecrets) (ErrImagePull: "
        ),
        "{}",
        d.message
    );
    assert!(
        d.message.contains("a login for registry.example"),
        "{}",
        d.message
    );
}

/// The status the real node's kubelet (v1.33, containerd 1.6) wrote for a pod whose pull
/// secret holds a wrong password for the test environment's htpasswd registry.
#[test]
fn pull_refused_with_401_by_the_registry_names_the_pull_secret_not_a_generic_pull_error() {
    for (reason, message) in [
        (
            "ErrImagePull",
            "failed to pull and unpack image \"127.0.0.1:15001/t/pull-wrong-c02ce9460/web@sha256:d4dc239af5ca8593a61b28a5329502eb878480d83b2b1f5daec2cc7f3f0b05fa\": failed to \
             resolve reference \"127.0.0.1:15001/t/pull-wrong-c02ce9460/web@sha256:d4dc239af5ca8593a61b28a5329502eb878480d83b2b1f5daec2cc7f3f0b05fa\": pulling from host \
             127.0.0.1:15001 failed with status code [manifests 1]: 401 Unauthorized",
        ),
        (
            "ImagePullBackOff",
            "Back-off pulling image \"127.0.0.1:15001/t/pull-wrong-c02ce9460/web@sha256:d4dc239af5ca8593a61b28a5329502eb878480d83b2b1f5daec2cc7f3f0b05fa\": ErrImagePull: failed \
             to pull and unpack image \"127.0.0.1:15001/t/pull-wrong-c02ce9460/web@sha256:d4dc239af5ca8593a61b28a5329502eb878480d83b2b1f5daec2cc7f3f0b05fa\": failed to resolve \
             reference \"127.0.0.1:15001/t/pull-wrong-c02ce9460/web@sha256:d4dc239af5ca8593a61b28a5329502eb878480d83b2b1f5daec2cc7f3f0b05fa\": pulling from host 127.0.0.1:15001 \
             failed with status code [manifests 1]: 401 Unauthorized",
        ),
    ] {
        let mut p = pod(
            "Always",
            json!({"image": "127.0.0.1:15001/t/pull-wrong-c02ce9460/web@sha256:d4dc239af5ca8593a61b28a5329502eb878480d83b2b1f5daec2cc7f3f0b05fa"}),
            json!({"phase": "Pending", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0,
                "image": "127.0.0.1:15001/t/pull-wrong-c02ce9460/web@sha256:d4dc239af5ca8593a61b28a5329502eb878480d83b2b1f5daec2cc7f3f0b05fa",
                "state": {"waiting": {"reason": reason, "message": message}}}]}),
        );
        p["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
        let d = only(diagnose_pod(&p));
        assert!(d.fatal);
        assert_eq!(d.kind, DiagnosisKind::ImagePullError);
        assert!(
            d.message.starts_with(
                "container app: registry refused the credentials for \
                 127.0.0.1:15001/t/pull-wrong-c02ce9460/web@sha256:d4dc239af5ca8593a61b28a5329502eb878480d83b2b1f5daec2cc7f3f0b05fa (pull secret regcred) ("
            ),
            "{}",
            d.message
        );
        assert!(
            d.message.contains(&format!("({reason}: 401 Unauthorized)"))
                && d.message.contains("for 127.0.0.1:15001"),
            "{}",
            d.message
        );
    }
}

#[test]
fn missing_repository_is_not_called_a_refused_login() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull",
                "message": "failed to pull and unpack image \"docker.io/library/nope:1\": failed to resolve reference: pull access denied, repository does not exist or may require authorization: server message: insufficient_scope"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert!(d.message.contains("cannot be pulled"), "{}", d.message);
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError",
                "message": "secret \"db-credentials\" not found"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::CreateContainerConfigError);
    assert!(!d.fatal);
    assert!(
        d.message
            .starts_with("container app: cannot be created (CreateContainerConfigError: secret \"db-credentials\" not found)"),
        "{}",
        d.message
    );
}

#[test]
fn run_container_error_is_a_create_error() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "RunContainerError",
                "message": "failed to create containerd task: exec: \"/app/server\": stat /app/server: no such file or directory"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::CreateContainerError);
    assert!(!d.fatal);
}

#[test]
fn container_creating_is_not_a_problem() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    );
    assert!(diagnose_pod(&p).is_empty());
}

#[test]
fn unschedulable_carries_the_scheduler_message() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "lastTransitionTime": "2026-11-02T10:00:00Z",
            "message": "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient memory. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::Unschedulable);
    assert_eq!(d.container, None);
    assert!(!d.fatal);
    assert!(
        d.message
            .starts_with("pod cannot be scheduled (0/3 nodes are available: 1 node(s)"),
        "{}",
        d.message
    );
}

#[test]
fn evicted_pod_is_one_pod_level_finding() {
    let p = pod(
        "Always",
        json!({}),
        json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 91Mi. Container app was using 1.2Gi, request is 256Mi, has larger consumption of memory.",
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::Evicted);
    assert!(!d.fatal);
    assert!(
        d.message
            .starts_with("pod stopped by its node (Evicted: The node was low on resource: memory.")
    );
}

#[test]
fn terminating_pods_are_not_diagnosed() {
    let mut p = pod(
        "Always",
        json!({}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 143, "reason": "Error"}}}]}),
    );
    p["metadata"]["deletionTimestamp"] = json!("2026-11-02T10:05:00Z");
    assert!(diagnose_pod(&p).is_empty());
}

#[test]
fn readiness_probe_is_described_from_the_spec() {
    let p = pod(
        "Always",
        json!({"readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                  "periodSeconds": 5}}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-02T10:00:00Z"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert!(
        d.message
            .contains("not ready: readiness probe (HTTP GET /healthz on port http) not passing;"),
        "{}",
        d.message
    );
}

#[test]
fn pending_startup_probe_is_named() {
    let p = pod(
        "Always",
        json!({"startupProbe": {"tcpSocket": {"port": 5432}}}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "started": false, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-02T10:00:00Z"}}}]}),
    );
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::ReadinessProbeFailed);
    assert!(
        d.message
            .contains("startup probe (TCP connect to port 5432) has not passed yet"),
        "{}",
        d.message
    );
}

#[test]
fn init_container_crash_loop_is_diagnosed_and_main_container_is_not() {
    let p = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "app:1"}],
            "containers": [{"name": "app", "image": "app:1"}]
        },
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{
                "name": "migrate", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                    "message": "relation \"users\" already exists"}}}],
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]
        }
    });
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::CrashLoop);
    assert_eq!(d.container.as_deref(), Some("migrate"));
    assert!(d.fatal);
    assert!(
        d.message
            .starts_with("init container migrate: crash-looping, restarted 3 times")
    );
    assert!(d.message.contains("relation \"users\" already exists"));
}

#[test]
fn running_init_container_is_not_unready() {
    let p = json!({
        "kind": "Pod", "metadata": {"name": "web-1"},
        "spec": {"initContainers": [{"name": "wait-db"}], "containers": [{"name": "app"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{
            "name": "wait-db", "ready": false, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-02T10:00:00Z"}}}]}
    });
    assert!(diagnose_pod(&p).is_empty());
}

#[test]
fn sidecar_init_container_has_readiness_and_restarts() {
    let p = json!({
        "kind": "Pod", "metadata": {"name": "web-1"},
        "spec": {"restartPolicy": "Never",
                 "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                 "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "initContainerStatuses": [{
            "name": "proxy", "ready": false, "started": true, "restartCount": 0,
            "state": {"running": {}}}]}
    });
    let d = only(diagnose_pod(&p));
    assert_eq!(d.kind, DiagnosisKind::ReadinessProbeFailed);

    let p = json!({
        "kind": "Pod", "metadata": {"name": "web-1"},
        "spec": {"restartPolicy": "Never",
                 "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                 "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "initContainerStatuses": [{
            "name": "proxy", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}
    });
    assert!(!only(diagnose_pod(&p)).fatal);
}

#[test]
fn diagnosis_serializes_for_events() {
    let d = Diagnosis {
        kind: DiagnosisKind::OomKilled,
        container: Some("app".into()),
        fatal: true,
        message: "m".into(),
    };
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"kind": "oom_killed", "container": "app", "fatal": true, "message": "m"})
    );
}

/// Found by the 200-object benchmark on the real node: 50 pods starting at once met the
/// kubelet's pull rate limit, and berth rolled a healthy release back.
#[test]
fn kubelets_pull_rate_limit_is_waited_for_not_fatal() {
    let pod = json!({"metadata": {"name": "svc35-86ccdd5474-mwjj6"},
        "spec": {"containers": [{"name": "web", "image": "docker.io/library/busybox:latest"}]},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "web",
            "image": "docker.io/library/busybox:latest", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "pull QPS exceeded"}}}]}});
    let found = diagnose_pod(&pod);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!found[0].fatal, "{found:?}");
    assert!(found[0].message.contains("pull rate limit"), "{found:?}");
}

/// Found by the getting-started guide: an image pushed to `localhost:5000`, which the build
/// host reaches and the node resolves to itself. The cause (connection refused) is at the end
/// of the kubelet's message and must survive the cut; the hint names the address trap.
#[test]
fn a_registry_the_node_cannot_reach_is_named_with_its_cause() {
    let image = format!("localhost:5000/hello@sha256:{}", "a".repeat(64));
    let message = format!(
        "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": \
         failed to do request: Head \"http://localhost:5000/v2/hello/manifests/sha256:{}\": dial \
         tcp [::1]:5000: connect: connection refused",
        "a".repeat(64)
    );
    let pod = json!({"metadata": {"name": "hello-5d9c7b8f6-x2x9q"},
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "web",
            "image": image, "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}]}});
    let found = diagnose_pod(&pod);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].fatal, "{found:?}");
    assert!(found[0].message.contains("connection refused"), "{found:?}");
    assert!(
        found[0]
            .message
            .contains("cannot reach the registry at that address"),
        "{found:?}"
    );
}
