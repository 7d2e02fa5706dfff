//! `berth deploy`, `diff`, `history`, `rollback` end to end: the real binary against the real
//! API server, controllers and kwok nodes of the test environment.

use std::process::{Command, Stdio};
use std::time::Duration;

use berth_cluster::ObjectKey;
use berth_testkit::{TestContext, TestEnv};
use serde_json::Value;

use crate::common::{
    ANY_FIELDS, Crd, Dir, berth, berth_cmd, config_map_yaml, deployment, deployment_yaml, history,
    image_of, live, run, text,
};

fn job(name: &str, hook: Option<&str>, simulate: Option<&str>) -> String {
    let hook = hook
        .map(|h| format!("  annotations: {{berth.dev/hook: {h}}}\n"))
        .unwrap_or_default();
    let sim = simulate
        .map(|s| format!("      annotations: {{berth.dev/simulate: {s}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
{hook}spec:
  backoffLimit: 0
  template:
    metadata:
{sim}      labels: {{job: {name}}}
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: docker.io/library/busybox:latest
        command: [\"true\"]
"
    )
}

async fn live_image(ctx: &TestContext, name: &str) -> String {
    image_of(&deployment(ctx, name).await)
}

fn statuses(ctx: &TestContext, release: &str) -> Vec<String> {
    history(ctx, release)
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

/// The digest of busybox:latest in the environment's registry, as a pinned reference.
async fn pinned_busybox() -> String {
    let env = TestEnv::get();
    let image: berth_types::ImageRef = format!("{}/library/busybox:1.35", env.registry_host())
        .parse()
        .unwrap();
    let (_, _, digest) = env
        .registry()
        .pull_manifest(&image)
        .await
        .expect("busybox manifest");
    format!("{}/library/busybox@{digest}", env.registry_host())
}

#[tokio::test]
async fn install_upgrade_with_a_new_digest_and_noop_redeploy() {
    let ctx = TestContext::new("deploy-basic").await;
    let dir = Dir::new();
    dir.write("cm.yaml", &config_map_yaml("settings", "one"));
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 2, None),
    );
    let d = dir.path();

    let first = run(&ctx, &["deploy", "-r", "shop", "-f", &d]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(
        first.stdout.contains("revision 1 deployed"),
        "{}",
        first.all()
    );
    let dep = live(&ctx, "apps/v1", "Deployment", "web").await.unwrap();
    assert_eq!(dep["status"]["availableReplicas"], 2);
    assert_eq!(
        dep["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "berth"
    );
    assert_eq!(dep["metadata"]["annotations"]["berth.dev/revision"], "1");

    // Upgrade: the same manifests with the image pinned to a digest.
    let pinned = pinned_busybox().await;
    let pin = format!("docker.io/library/busybox={pinned}");
    let second = run(
        &ctx,
        &[
            "deploy", "-r", "shop", "-f", &d, "--image", &pin, "--commit", "abc123",
        ],
    );
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(
        second.stdout.contains("revision 2 deployed"),
        "{}",
        second.all()
    );
    assert_eq!(live_image(&ctx, "web").await, pinned);

    // No-op: nothing is applied, the objects keep their resourceVersion.
    let rv = |v: &Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = rv(&live(&ctx, "apps/v1", "Deployment", "web").await.unwrap());
    let third = run(
        &ctx,
        &[
            "deploy", "-r", "shop", "-f", &d, "--image", &pin, "--commit", "abc123",
        ],
    );
    assert_eq!(third.code, 0, "{}", third.all());
    assert!(
        third.stdout.contains("up to date at revision 2"),
        "{}",
        third.all()
    );
    assert_eq!(
        rv(&live(&ctx, "apps/v1", "Deployment", "web").await.unwrap()),
        before
    );

    let h = history(&ctx, "shop");
    assert_eq!(statuses(&ctx, "shop"), ["superseded", "deployed"]);
    assert_eq!(h[1]["commit"], "abc123");
    assert_eq!(h[1]["images"]["docker.io/library/busybox"], pinned.as_str());
}

async fn assert_rolled_back(simulate: &str, timeout: &str, expect_in_output: &str) {
    let ctx = TestContext::new(&format!("deploy-{simulate}")).await;
    let dir = Dir::new();
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 2, None),
    );
    let d = dir.path();
    let ok = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(ok.code, 0, "{}", ok.all());

    let pinned = pinned_busybox().await;
    dir.write(
        "web.yaml",
        &deployment_yaml("web", &pinned, 2, Some(simulate)),
    );
    let bad = run(
        &ctx,
        &["deploy", "-r", "app", "-f", &d, "--timeout", timeout],
    );
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(
        bad.stderr.contains("rolled back to revision 1"),
        "{}",
        bad.all()
    );
    assert!(bad.stderr.contains(expect_in_output), "{}", bad.all());
    // The previous digest runs again, and every replica is available.
    assert_eq!(
        live_image(&ctx, "web").await,
        "docker.io/library/busybox:latest"
    );
    let dep = live(&ctx, "apps/v1", "Deployment", "web").await.unwrap();
    assert!(
        dep["spec"]["template"]["metadata"]["annotations"]["berth.dev/simulate"].is_null(),
        "{dep}"
    );
    assert_eq!(statuses(&ctx, "app"), ["deployed", "failed"]);
    let h = history(&ctx, "app");
    assert!(
        h[1]["description"]
            .as_str()
            .unwrap()
            .contains(expect_in_output),
        "{h:?}"
    );
}

#[tokio::test]
async fn crash_loop_rolls_back_at_once_with_the_diagnosis() {
    assert_rolled_back("crash-loop", "5m", "crash-looping").await;
}

#[tokio::test]
async fn image_pull_error_rolls_back_at_once_with_the_diagnosis() {
    assert_rolled_back("image-pull-error", "5m", "ImagePullBackOff").await;
}

#[tokio::test]
async fn never_ready_rolls_back_at_the_deadline() {
    assert_rolled_back("never-ready", "4s", "not ready after 4s").await;
}

/// The bug: five minutes without a line while one object was not ready. Now every wait
/// longer than 10 s says what it still awaits and for how long, on the terminal and in the
/// JSON event stream alike.
#[tokio::test]
async fn a_long_wait_says_what_it_still_awaits_instead_of_staying_silent() {
    let ctx = TestContext::new("deploy-heartbeat").await;
    let dir = Dir::new();
    let d = dir.path();
    let pinned = pinned_busybox().await;
    dir.write(
        "web.yaml",
        &deployment_yaml("web", &pinned, 1, Some("never-ready")),
    );

    let people = run(&ctx, &["deploy", "-r", "app", "-f", &d, "--timeout", "25s"]);
    assert_eq!(people.code, 1, "{}", people.all());
    let beats: Vec<&str> = people
        .stderr
        .lines()
        .filter(|l| l.contains("Deployment/web") && l.contains("still waiting"))
        .collect();
    assert!(
        beats.iter().any(|l| l.contains("(10 s of 25s)"))
            && beats.iter().any(|l| l.contains("(20 s of 25s)")),
        "a heartbeat at 10 s and 20 s naming the Deployment:\n{}",
        people.all()
    );
    assert!(
        beats.iter().all(|l| l.contains("waiting ")),
        "{}",
        people.all()
    );

    let machines = run(
        &ctx,
        &[
            "deploy",
            "-r",
            "app",
            "-f",
            &d,
            "--timeout",
            "15s",
            "-o",
            "json",
        ],
    );
    assert_eq!(machines.code, 1, "{}", machines.all());
    let events: Vec<Value> = machines
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let beat = events
        .iter()
        .find(|e| e["event"] == "object_state" && e["state"] == "waiting")
        .unwrap_or_else(|| panic!("no waiting event in:\n{}", machines.all()));
    assert_eq!(beat["object"], "Deployment/web", "{beat}");
    assert!(
        beat["message"]
            .as_str()
            .unwrap()
            .starts_with("still waiting (10 s of 15s): "),
        "{beat}"
    );
}

/// The bug: the rollback waited a hard-coded 120 s for the restored revision, whatever
/// `--timeout` said. Here the restored revision cannot start a pod (a ResourceQuota allows
/// none and its old pod is gone), so the rollback's wait is what ends the command.
#[tokio::test]
async fn the_rollback_waits_as_long_as_the_deploy_timeout_not_a_fixed_two_minutes() {
    let ctx = TestContext::new("deploy-rollback-deadline").await;
    let dir = Dir::new();
    let d = dir.path();
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 1, None),
    );
    let ok = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(ok.code, 0, "{}", ok.all());

    ctx.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}},
    }))
    .await;
    let pods = ctx
        .cluster
        .list("v1", "Pod", &ctx.namespace, Some("app=web"))
        .await
        .unwrap();
    for p in &pods {
        ctx.cluster
            .delete(&ObjectKey::of(p).unwrap())
            .await
            .unwrap();
    }

    let pinned = pinned_busybox().await;
    dir.write("web.yaml", &deployment_yaml("web", &pinned, 1, None));
    let bad = run(&ctx, &["deploy", "-r", "app", "-f", &d, "--timeout", "8s"]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(
        bad.stderr.contains("rolling back to revision 1"),
        "{}",
        bad.all()
    );
    let waits: Vec<&str> = bad.stderr.matches("not ready after 8s").collect();
    assert!(
        waits.len() >= 2 && !bad.stderr.contains("not ready after 120s"),
        "the deploy and its rollback each waited --timeout (8s):\n{}",
        bad.all()
    );
}

#[tokio::test]
async fn failing_job_in_the_release_rolls_back() {
    let ctx = TestContext::new("deploy-jobfail").await;
    let dir = Dir::new();
    dir.write("cm.yaml", &config_map_yaml("settings", "one"));
    let d = dir.path();
    assert_eq!(run(&ctx, &["deploy", "-r", "app", "-f", &d]).code, 0);
    dir.write("job.yaml", &job("load", None, Some("exit-nonzero")));
    let bad = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.stderr.contains("Job/load"), "{}", bad.all());
    assert!(
        bad.stderr.contains("rolled back to revision 1"),
        "{}",
        bad.all()
    );
    // The Job the failed revision added is gone again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = live(&ctx, "batch/v1", "Job", "load").await;
    assert!(
        job.is_none() || !job.as_ref().unwrap()["metadata"]["deletionTimestamp"].is_null(),
        "{job:?}"
    );
}

#[tokio::test]
async fn pre_deploy_hook_runs_first_and_its_failure_changes_nothing() {
    let ctx = TestContext::new("deploy-hooks").await;
    let dir = Dir::new();
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 1, None),
    );
    dir.write("migrate.yaml", &job("migrate", Some("pre-deploy"), None));
    let d = dir.path();
    let ok = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    let hook = live(&ctx, "batch/v1", "Job", "migrate")
        .await
        .expect("hook Job ran");
    assert_eq!(hook["status"]["succeeded"], 1);
    // The hook finished before the Deployment was created.
    let done = hook["status"]["completionTime"]
        .as_str()
        .unwrap()
        .to_string();
    let dep = live(&ctx, "apps/v1", "Deployment", "web").await.unwrap();
    let created = dep["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        done <= created,
        "hook done {done}, deployment created {created}"
    );

    // A failing pre-hook: the Deployment keeps its old image.
    let pinned = pinned_busybox().await;
    dir.write("web.yaml", &deployment_yaml("web", &pinned, 1, None));
    dir.write(
        "migrate.yaml",
        &job("migrate", Some("pre-deploy"), Some("exit-nonzero")),
    );
    let bad = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(
        bad.stderr.contains("pre-deploy hook failed"),
        "{}",
        bad.all()
    );
    assert_eq!(
        live_image(&ctx, "web").await,
        "docker.io/library/busybox:latest"
    );
    assert_eq!(statuses(&ctx, "app"), ["deployed", "failed"]);
}

#[tokio::test]
async fn prune_deletes_what_the_release_dropped_and_nothing_else() {
    let ctx = TestContext::new("deploy-prune").await;
    ctx.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "not-berths"}, "data": {"a": "b"}
    }))
    .await;
    let dir = Dir::new();
    dir.write("a.yaml", &config_map_yaml("keep", "1"));
    dir.write("b.yaml", &config_map_yaml("drop", "1"));
    let d = dir.path();
    assert_eq!(run(&ctx, &["deploy", "-r", "app", "-f", &d]).code, 0);
    std::fs::remove_file(dir.0.join("b.yaml")).unwrap();
    let r = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("1 pruned"), "{}", r.all());
    assert!(live(&ctx, "v1", "ConfigMap", "keep").await.is_some());
    assert!(live(&ctx, "v1", "ConfigMap", "drop").await.is_none());
    assert!(live(&ctx, "v1", "ConfigMap", "not-berths").await.is_some());
}

#[tokio::test]
async fn rollback_to_an_earlier_revision_and_diff() {
    let ctx = TestContext::new("deploy-rollback").await;
    let dir = Dir::new();
    let f = dir.file("cm.yaml");
    dir.write("cm.yaml", &config_map_yaml("settings", "one"));
    assert_eq!(run(&ctx, &["deploy", "-r", "app", "-f", &f]).code, 0);
    dir.write("cm.yaml", &config_map_yaml("settings", "two"));

    let diff = run(&ctx, &["diff", "-r", "app", "-f", &f]);
    assert_eq!(diff.code, 1, "{}", diff.all());
    assert!(diff.stdout.contains("-  value: one"), "{}", diff.all());
    assert!(diff.stdout.contains("+  value: two"), "{}", diff.all());

    assert_eq!(run(&ctx, &["deploy", "-r", "app", "-f", &f]).code, 0);
    let same = run(&ctx, &["diff", "-r", "app", "-f", &f]);
    assert_eq!(same.code, 0, "{}", same.all());

    let back = run(&ctx, &["rollback", "-r", "app", "--to", "1"]);
    assert_eq!(back.code, 0, "{}", back.all());
    assert!(
        back.stdout.contains("revision 3 deployed"),
        "{}",
        back.all()
    );
    let cm = live(&ctx, "v1", "ConfigMap", "settings").await.unwrap();
    assert_eq!(cm["data"]["value"], "one");
    assert_eq!(
        statuses(&ctx, "app"),
        ["superseded", "superseded", "deployed"]
    );

    let none = run(&ctx, &["rollback", "-r", "app", "--to", "9"]);
    assert_eq!(none.code, 1, "{}", none.all());
    assert!(none.stderr.contains("has no revision 9"), "{}", none.all());
}

#[tokio::test]
async fn diff_redacts_secret_values() {
    let ctx = TestContext::new("deploy-secret").await;
    let dir = Dir::new();
    let f = dir.file("s.yaml");
    dir.write(
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2-first\n",
    );
    assert_eq!(run(&ctx, &["deploy", "-r", "app", "-f", &f]).code, 0);
    dir.write(
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter2-second\n",
    );
    let diff = run(&ctx, &["diff", "-r", "app", "-f", &f]);
    assert_eq!(
        diff.code,
        1,
        "a value-only change is a difference: {}",
        diff.all()
    );
    assert!(
        diff.stdout.contains("+  password: <redacted, changed>"),
        "{}",
        diff.all()
    );
    assert!(!diff.all().contains("hunter2"), "{}", diff.all());
    assert!(
        !diff.all().contains("aHVudGVy"),
        "base64 of the value leaked: {}",
        diff.all()
    );
}

/// A Secret once applied with client-side `kubectl apply` carries the annotation
/// `kubectl.kubernetes.io/last-applied-configuration`, a copy of the whole object: `berth diff`
/// printed it, and the secret with it.
#[tokio::test]
async fn diff_does_not_print_the_secret_in_kubectls_last_applied_annotation() {
    let ctx = TestContext::new("deploy-last-applied").await;
    let dir = Dir::new();
    let f = dir.file("s.yaml");
    dir.write(
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: s3cret-by-kubectl\n",
    );
    let out = Command::new(ctx.env.bin_dir().join("kubectl"))
        .env("KUBECONFIG", ctx.env.kubeconfig())
        .args(["apply", "-n", &ctx.namespace, "-f", &f])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.write(
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: s3cret-by-berth\n",
    );
    let diff = run(&ctx, &["diff", "-r", "app", "-f", &f]);
    assert_eq!(diff.code, 1, "{}", diff.all());
    assert!(
        diff.stdout
            .contains("last-applied-configuration: <redacted>"),
        "{}",
        diff.all()
    );
    assert!(!diff.all().contains("s3cret"), "{}", diff.all());
    assert!(
        !diff.all().contains("czNjcmV0"),
        "base64 leaked: {}",
        diff.all()
    );
}

#[tokio::test]
async fn crd_and_custom_resource_in_one_release() {
    let ctx = TestContext::new("deploy-crd").await;
    let crd = Crd::new(&ctx, "widgets", "Widget");
    let dir = Dir::new();
    dir.write(
        "crd.yaml",
        &format!(
            "{}---
apiVersion: {}
kind: Widget
metadata:
  name: gear
spec:
  teeth: 12
",
            crd.yaml(ANY_FIELDS),
            crd.api_version()
        ),
    );
    let d = dir.path();
    let r = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    let widget = crd.get(&ctx, "gear").await;
    crd.delete(&ctx).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        widget.expect("get widget").expect("widget exists")["spec"]["teeth"],
        12
    );
}

#[tokio::test]
async fn a_second_deploy_waits_and_a_killed_deploy_frees_its_lock() {
    let ctx = TestContext::new("deploy-lock").await;
    let dir = Dir::new();
    let f = dir.file("web.yaml");
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 1, None),
    );
    assert_eq!(run(&ctx, &["deploy", "-r", "app", "-f", &f]).code, 0);

    // A deploy that hangs on a never-ready pod, holding the lock.
    let slow = Dir::new();
    let sf = slow.file("web.yaml");
    slow.write(
        "web.yaml",
        &deployment_yaml(
            "web",
            "docker.io/library/busybox:1.35",
            1,
            Some("never-ready"),
        ),
    );
    let mut hung = berth_cmd(
        &ctx,
        &[
            "deploy",
            "-r",
            "app",
            "-f",
            &sf,
            "--timeout",
            "120s",
            "--lock-ttl",
            "3s",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until it holds the lock.
    let lease = ObjectKey::new(
        "coordination.k8s.io/v1",
        "Lease",
        Some(&ctx.namespace),
        "berth-lock-app",
    );
    ctx.cluster
        .wait_until(&lease, Duration::from_secs(30), |_| true)
        .await
        .expect("the first deploy takes the lock");

    let blocked = run(
        &ctx,
        &["deploy", "-r", "app", "-f", &f, "--lock-timeout", "1s"],
    );
    assert_eq!(blocked.code, 1, "{}", blocked.all());
    assert!(
        blocked.stderr.contains("is being deployed by"),
        "{}",
        blocked.all()
    );

    // SIGKILL: no cleanup runs; the lock must free itself after its 3 s TTL.
    hung.kill().unwrap();
    hung.wait().unwrap();
    let after = run(
        &ctx,
        &["deploy", "-r", "app", "-f", &f, "--lock-timeout", "30s"],
    );
    assert_eq!(after.code, 0, "{}", after.all());
    assert!(
        after.stdout.contains("revision 3 deployed"),
        "{}",
        after.all()
    );
    assert_eq!(
        statuses(&ctx, "app"),
        ["superseded", "interrupted", "deployed"]
    );
    assert_eq!(
        live_image(&ctx, "web").await,
        "docker.io/library/busybox:latest"
    );
}

#[tokio::test]
async fn concurrent_deploys_run_one_after_the_other() {
    let ctx = TestContext::new("deploy-concurrent").await;
    let dir = Dir::new();
    let f = dir.file("cm.yaml");
    dir.write("cm.yaml", &config_map_yaml("settings", "x"));
    let spawn = || {
        berth_cmd(&ctx, &["deploy", "-r", "app", "-f", &f])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    // Both asked for the same content: one deployed it, the other found it up to date.
    let h = statuses(&ctx, "app");
    assert_eq!(h, ["deployed"], "{h:?}");
}

#[tokio::test]
async fn field_conflicts_name_the_other_manager_until_forced() {
    let ctx = TestContext::new("deploy-conflict").await;
    ctx.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"}, "data": {"value": "theirs"}
    }))
    .await;
    let dir = Dir::new();
    let f = dir.file("cm.yaml");
    dir.write("cm.yaml", &config_map_yaml("settings", "ours"));
    let r = run(&ctx, &["deploy", "-r", "app", "-f", &f]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("berth-test"),
        "names the other manager: {}",
        r.all()
    );
    assert!(r.stderr.contains("--force-conflicts"), "{}", r.all());
    assert_eq!(
        live(&ctx, "v1", "ConfigMap", "settings").await.unwrap()["data"]["value"],
        "theirs"
    );
    let forced = run(
        &ctx,
        &["deploy", "-r", "app", "-f", &f, "--force-conflicts"],
    );
    assert_eq!(forced.code, 0, "{}", forced.all());
    assert_eq!(
        live(&ctx, "v1", "ConfigMap", "settings").await.unwrap()["data"]["value"],
        "ours"
    );
}

#[tokio::test]
async fn malformed_yaml_fails_with_file_and_line_and_applies_nothing() {
    let ctx = TestContext::new("deploy-badyaml").await;
    let dir = Dir::new();
    dir.write("a.yaml", &config_map_yaml("first", "1"));
    dir.write(
        "b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\ndata:\n  key: [unclosed\n",
    );
    let d = dir.path();
    let r = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("b.yaml:"),
        "points at the file: {}",
        r.all()
    );
    assert!(
        live(&ctx, "v1", "ConfigMap", "first").await.is_none(),
        "nothing applied"
    );
    assert!(history(&ctx, "app").is_empty());
}

#[test]
fn render_prints_pinned_images_and_berth_labels_in_a_stable_order() {
    let env = TestEnv::get();
    let dir = Dir::new();
    dir.write("web.yaml", &deployment_yaml("web", "busybox", 1, None));
    dir.write("cm.yaml", &config_map_yaml("settings", "x"));
    let pin = "busybox=registry.example/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let render = || {
        berth(env)
            .args(["render", "--release", "shop", "-n", "prod", "-f"])
            .arg(&dir.0)
            .args(["--image", pin])
            .output()
            .unwrap()
    };
    let out = render();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.contains("image: registry.example/busybox@sha256:0000"),
        "{yaml}"
    );
    assert!(
        yaml.contains("app.kubernetes.io/managed-by: berth"),
        "{yaml}"
    );
    assert!(yaml.contains("namespace: prod"), "{yaml}");
    // ConfigMaps come before workloads, whatever the file order.
    assert!(yaml.find("kind: ConfigMap").unwrap() < yaml.find("kind: Deployment").unwrap());
    assert_eq!(render().stdout, yaml.as_bytes(), "same output twice");
}

#[tokio::test]
async fn an_object_timeout_annotation_shortens_its_deadline() {
    let ctx = TestContext::new("deploy-objtimeout").await;
    let dir = Dir::new();
    let f = dir.file("web.yaml");
    let slow = deployment_yaml(
        "web",
        "docker.io/library/busybox:latest",
        1,
        Some("never-ready"),
    )
    .replacen(
        "  name: web\n",
        "  name: web\n  annotations: {berth.dev/timeout: 2s}\n",
        1,
    );
    dir.write("web.yaml", &slow);
    let r = run(&ctx, &["deploy", "-r", "app", "-f", &f, "--timeout", "5m"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("not ready after 2s"), "{}", r.all());

    let bad = slow.replace("berth.dev/timeout: 2s", "berth.dev/timeout: soon");
    dir.write("web.yaml", &bad);
    let r = run(&ctx, &["deploy", "-r", "app", "-f", &f]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("berth.dev/timeout: `soon`"),
        "{}",
        r.all()
    );
    assert!(
        r.stderr.contains("web.yaml:1"),
        "names the file: {}",
        r.all()
    );
}

/// A seed Job (`berth.dev/hook-run: once`) runs in the first revision only, and the release
/// history says so in every revision after: which seed, run in which revision.
#[tokio::test]
async fn seed_jobs_run_once_and_the_history_says_in_which_revision() {
    let ctx = TestContext::new("deploy-seeds").await;
    let dir = Dir::new();
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 1, None),
    );
    let seed = job("seed", Some("post-deploy"), None).replacen(
        "  annotations: {berth.dev/hook: post-deploy}\n",
        "  annotations: {berth.dev/hook: post-deploy, berth.dev/hook-run: once}\n",
        1,
    );
    assert!(seed.contains("hook-run: once"));
    dir.write("seed.yaml", &seed);
    let d = dir.path();
    let first = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(first.code, 0, "{}", first.all());
    let uid = live(&ctx, "batch/v1", "Job", "seed").await.unwrap()["metadata"]["uid"].clone();

    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:1", 1, None),
    );
    let second = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(second.code, 0, "{}", second.all());
    let job = live(&ctx, "batch/v1", "Job", "seed").await.unwrap();
    assert_eq!(job["metadata"]["uid"], uid, "the seed did not run again");

    let h = history(&ctx, "app");
    let seeds = |rev: u64| {
        h.iter()
            .find(|r| r["revision"] == rev)
            .unwrap_or_else(|| panic!("no revision {rev}: {h:?}"))["seeds"]
            .clone()
    };
    assert_eq!(
        seeds(1),
        serde_json::json!([{"job": "Job/seed", "revision": 1, "ran": true}])
    );
    assert_eq!(
        seeds(2),
        serde_json::json!([{"job": "Job/seed", "revision": 1, "ran": false}])
    );
    let table = run(&ctx, &["history", "-r", "app"]);
    assert!(
        table.stdout.contains("seed Job/seed ran in this revision")
            && table
                .stdout
                .contains("seed Job/seed skipped: succeeded in revision 1"),
        "{}",
        table.stdout
    );
}

/// Deploys revision 1, kills the deploy of a second one at `point` (`BERTH_TEST_CRASH_AT`
/// aborts the process there, as `kill -9` would), then proves that a failing deploy rolls back
/// to the last good revision without deleting live objects and that a good one converges.
async fn crash_at(point: &str) {
    let ctx = TestContext::new(&format!("deploy-crash-{point}")).await;
    let dir = Dir::new();
    let d = dir.path();
    dir.write("keep.yaml", &config_map_yaml("keep", "1"));
    dir.write("drop.yaml", &config_map_yaml("drop", "1"));
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 1, None),
    );
    // At `hooks` the deploy dies while its post-deploy hook runs.
    let hooked = point == "hooks";
    if hooked {
        dir.write("notify.yaml", &job("notify", Some("post-deploy"), None));
    }
    let first = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(first.code, 0, "{}", first.all());

    // Revision 2: a new image, `drop` dropped, `added` added. At `rollback` it must fail, to
    // reach the rollback.
    std::fs::remove_file(dir.0.join("drop.yaml")).unwrap();
    dir.write("added.yaml", &config_map_yaml("added", "2"));
    let simulate = (point == "rollback").then_some("crash-loop");
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:1.35", 1, simulate),
    );
    let crashed = berth_cmd(&ctx, &["deploy", "-r", "app", "-f", &d])
        .env("BERTH_TEST_CRASH_AT", point)
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.code(),
        None,
        "the deploy dies at {point}: {}",
        String::from_utf8_lossy(&crashed.stderr)
    );

    // A failing deploy after the crash rolls back; it never deletes what history owns.
    dir.write(
        "web.yaml",
        &deployment_yaml(
            "web",
            "docker.io/library/busybox:1.35",
            1,
            Some("crash-loop"),
        ),
    );
    let failing = run(
        &ctx,
        &["deploy", "-r", "app", "-f", &d, "--lock-timeout", "60s"],
    );
    assert_eq!(failing.code, 1, "{}", failing.all());
    assert!(
        failing.all().contains("rolled back to revision"),
        "{}",
        failing.all()
    );
    assert!(live(&ctx, "apps/v1", "Deployment", "web").await.is_some());
    assert!(live(&ctx, "v1", "ConfigMap", "keep").await.is_some());

    // And a good deploy converges to what was rendered.
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:1.35", 1, None),
    );
    let good = run(&ctx, &["deploy", "-r", "app", "-f", &d]);
    assert_eq!(good.code, 0, "{}", good.all());
    assert_eq!(
        live_image(&ctx, "web").await,
        "docker.io/library/busybox:1.35"
    );
    assert!(live(&ctx, "v1", "ConfigMap", "keep").await.is_some());
    assert!(live(&ctx, "v1", "ConfigMap", "added").await.is_some());
    assert!(live(&ctx, "v1", "ConfigMap", "drop").await.is_none());
    // One live revision (at `recording` the crashed one, whose content the good deploy
    // equals: it is then unchanged), nothing left pending.
    let st = statuses(&ctx, "app");
    assert!(!st.iter().any(|s| s == "pending"), "{st:?}");
    assert_eq!(st.iter().filter(|s| *s == "deployed").count(), 1, "{st:?}");
    if hooked {
        let hook = live(&ctx, "batch/v1", "Job", "notify")
            .await
            .expect("the good deploy ran its post-deploy hook again");
        assert_eq!(hook["status"]["succeeded"], 1, "{hook}");
    }
}

#[tokio::test]
async fn a_kill_before_apply_is_recovered_by_the_next_deploy() {
    crash_at("before-apply").await;
}

#[tokio::test]
async fn a_kill_mid_apply_is_recovered_by_the_next_deploy() {
    crash_at("mid-apply").await;
}

#[tokio::test]
async fn a_kill_while_tracking_is_recovered_by_the_next_deploy() {
    crash_at("tracking").await;
}

#[tokio::test]
async fn a_kill_during_post_deploy_hooks_is_recovered_by_the_next_deploy() {
    crash_at("hooks").await;
}

#[tokio::test]
async fn a_kill_after_pruning_is_recovered_by_the_next_deploy() {
    crash_at("pruning").await;
}

#[tokio::test]
async fn a_kill_between_record_writes_does_not_lose_the_live_revision() {
    crash_at("recording").await;
}

#[tokio::test]
async fn a_kill_during_rollback_is_recovered_by_the_next_deploy() {
    crash_at("rollback").await;
}

#[tokio::test]
async fn a_deploy_that_lost_its_lock_stops_at_once() {
    let ctx = TestContext::new("deploy-lost-lock").await;
    let dir = Dir::new();
    let f = dir.file("web.yaml");
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 1, None),
    );
    assert_eq!(run(&ctx, &["deploy", "-r", "app", "-f", &f]).code, 0);
    dir.write(
        "web.yaml",
        &deployment_yaml(
            "web",
            "docker.io/library/busybox:1.35",
            1,
            Some("never-ready"),
        ),
    );
    let started = std::time::Instant::now();
    let hung = berth_cmd(
        &ctx,
        &[
            "deploy",
            "-r",
            "app",
            "-f",
            &f,
            "--timeout",
            "120s",
            "--lock-ttl",
            "3s",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Once it tracks (the new image is applied), a second holder steals the Lease.
    let web = ObjectKey::new("apps/v1", "Deployment", Some(&ctx.namespace), "web");
    ctx.cluster
        .wait_until(&web, Duration::from_secs(30), |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                == "docker.io/library/busybox:1.35"
        })
        .await
        .expect("the deploy applies revision 2");
    let lease = ObjectKey::new(
        "coordination.k8s.io/v1",
        "Lease",
        Some(&ctx.namespace),
        "berth-lock-app",
    );
    loop {
        let mut l = ctx.cluster.get(&lease).await.unwrap().expect("the lease");
        l["spec"]["holderIdentity"] = "thief@elsewhere".into();
        if ctx.cluster.replace(&l).await.is_ok() {
            break;
        }
    }
    let out = hung.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lost the lock on environment") && stderr.contains("thief@elsewhere"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stopped at once, not at the deadline"
    );
    // Nothing applied after the loss: no rollback re-applied revision 1's image.
    assert_eq!(
        live_image(&ctx, "web").await,
        "docker.io/library/busybox:1.35"
    );
}

#[tokio::test]
async fn a_release_of_the_same_name_in_another_namespace_cannot_prune_its_cluster_role() {
    let a = TestContext::new("deploy-crole-a").await;
    let b = TestContext::new("deploy-crole-b").await;
    let role_name = format!("t-{}", a.namespace);
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role_name}\nrules: []\n"
    );
    let (da, db) = (Dir::new(), Dir::new());
    db.write("cm.yaml", &config_map_yaml("c", "1"));
    db.write("role.yaml", &role);
    da.write("role.yaml", &role);
    let (pa, pb) = (da.path(), db.path());
    assert_eq!(run(&b, &["deploy", "-r", "prod", "-f", &pb]).code, 0);
    assert_eq!(run(&a, &["deploy", "-r", "prod", "-f", &pa]).code, 0);
    // B drops the role that A now owns: B leaves it alone.
    std::fs::remove_file(db.0.join("role.yaml")).unwrap();
    let r = run(&b, &["deploy", "-r", "prod", "-f", &pb]);
    assert_eq!(r.code, 0, "{}", r.all());
    let key = ObjectKey::new(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        None,
        &role_name,
    );
    let live = a.cluster.get(&key).await.unwrap();
    assert!(live.is_some(), "B pruned A's ClusterRole: {}", r.all());
    // A, its owner, can prune it.
    da.write("cm.yaml", &config_map_yaml("c", "1"));
    std::fs::remove_file(da.0.join("role.yaml")).unwrap();
    let r = run(&a, &["deploy", "-r", "prod", "-f", &pa]);
    assert_eq!(r.code, 0, "{}", r.all());
    let gone = a.cluster.get(&key).await.unwrap();
    let _ = a.cluster.delete(&key).await;
    assert!(gone.is_none(), "{}", r.all());
}
