//! `berth run` end to end on a copy of the bundled example in a real git repository: build
//! without a daemon, push to the real registry, deploy to the real cluster; then rebuild only
//! what changed.

use std::path::Path;
use std::process::Command;

use berth_testkit::TestContext;

use crate::common::{Repo, berth, deployment, get, git, hello_project, image_of, live, result};

/// examples/hello in a fresh git repository, its image in the test's own repository.
fn project(ctx: &TestContext) -> Repo {
    hello_project(ctx, "run", |text| text)
}

/// `berth run -o json` in the test's namespace, which must succeed: its result document.
fn run(ctx: &TestContext, p: &Repo) -> serde_json::Value {
    result(&p.berth(ctx, &["run", "-o", "json", "-n", &ctx.namespace]))
}

async fn live_image(ctx: &TestContext) -> String {
    image_of(&deployment(ctx, "hello").await)
}

#[tokio::test]
async fn run_builds_pushes_deploys_and_rebuilds_only_what_changed() {
    let ctx = TestContext::new("run-hello").await;
    let p = project(&ctx);

    let first = run(&ctx, &p);
    assert_eq!(first["revision"], 1, "{first}");
    let web = first["built"]["web"]
        .as_str()
        .expect("web was built")
        .to_string();
    assert!(
        web.starts_with(&format!("{}/web@sha256:", ctx.repository)),
        "{web}"
    );
    assert_eq!(live_image(&ctx).await, web);

    // Nothing changed: nothing built, nothing applied.
    let again = run(&ctx, &p);
    assert_eq!(again["revision"], 1, "{again}");
    assert_eq!(again["kept"], serde_json::json!(["web"]), "{again}");
    assert!(again["built"].as_object().unwrap().is_empty(), "{again}");

    // A change to the page: a new digest, deployed as revision 2.
    std::fs::write(p.dir.join("web/index.html"), "<h1>changed</h1>\n").unwrap();
    git(&p.dir, &["commit", "-q", "-am", "new page"]);
    let second = run(&ctx, &p);
    assert_eq!(second["revision"], 2, "{second}");
    let web2 = second["built"]["web"].as_str().unwrap().to_string();
    assert_ne!(web2, web);
    assert_eq!(live_image(&ctx).await, web2);

    // A change to the manifests only: the image is kept, the release moves on.
    let app = p.dir.join("k8s/app.yaml");
    let text = std::fs::read_to_string(&app)
        .unwrap()
        .replace("replicas: 2", "replicas: 3");
    std::fs::write(&app, text).unwrap();
    git(&p.dir, &["commit", "-q", "-am", "three replicas"]);
    let third = run(&ctx, &p);
    assert_eq!(third["revision"], 3, "{third}");
    assert_eq!(third["kept"], serde_json::json!(["web"]), "{third}");
    assert_eq!(live_image(&ctx).await, web2);
}

#[tokio::test]
async fn promote_deploys_the_live_digests_and_refuses_a_failed_source() {
    let test = TestContext::new("promote-test").await;
    let prod = TestContext::new("promote-prod").await;
    let p = project(&test);
    let cfg = p.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + "  - name: prod\n    namespace: shop-prod\n    promotion: manual\n    from: dev\n";
    std::fs::write(&cfg, text).unwrap();
    git(&p.dir, &["commit", "-q", "-am", "prod"]);

    let first = run(&test, &p);
    let web = first["built"]["web"].as_str().unwrap().to_string();

    let promote = |extra: &[&str]| {
        let mut args = vec![
            "promote",
            "--from",
            "dev",
            "--from-namespace",
            &test.namespace,
            "--to",
            "prod",
            "-n",
            &prod.namespace,
        ];
        args.extend_from_slice(extra);
        p.berth(&prod, &args)
    };
    let doc = result(&promote(&["-o", "json"]));
    assert!(
        doc["built"].as_object().unwrap().is_empty(),
        "nothing rebuilt: {doc}"
    );
    assert_eq!(live_image(&prod).await, web, "prod runs test's digest");

    // A failing deploy of the source: promotion is refused.
    let app = p.dir.join("k8s/app.yaml");
    let text = std::fs::read_to_string(&app).unwrap().replace(
        "      labels: {app: hello}\n",
        "      labels: {app: hello}\n      annotations: {berth.dev/simulate: crash-loop}\n",
    );
    std::fs::write(&app, text).unwrap();
    git(&p.dir, &["commit", "-q", "-am", "crash"]);
    let failed = p.berth(&test, &["run", "-n", &test.namespace]);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let refused = promote(&[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("is failed, not deployed"), "{err}");
    assert_eq!(live_image(&prod).await, web, "prod untouched");
}

#[test]
fn schema_describes_berth_yaml() {
    let env = berth_testkit::TestEnv::get();
    let out = berth(env).arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = schema.to_string();
    for key in ["services", "environments", "registry", "manifests"] {
        assert!(text.contains(key), "schema mentions {key}");
    }
}

/// `berth dev -o json -n <the test's namespace> -c config` with its own build store: the
/// process, its run results and its `pod_log` events, each as they come.
pub(crate) fn start_dev(
    ctx: &TestContext,
    config: &Path,
    store: &Path,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    use std::io::BufRead;
    let mut child = berth(ctx.env)
        .args(["dev", "-o", "json", "-n", &ctx.namespace, "-c"])
        .arg(config)
        .env("BERTH_STORE", store)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (results, results_rx) = std::sync::mpsc::channel();
    let (logs, logs_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if doc.get("result").is_some() {
                let _ = results.send(doc);
            } else if doc["event"] == "pod_log" {
                let _ = logs.send(doc);
            }
        }
    });
    (child, results_rx, logs_rx)
}

#[tokio::test]
async fn dev_redeploys_on_save_and_stops_cleanly_on_ctrl_c() {
    let ctx = TestContext::new("dev-loop").await;
    let p = project(&ctx);
    let (mut child, rx, _logs) = start_dev(&ctx, &p.dir.join("berth.yaml"), &p.store);
    let wait = |what: &str| {
        rx.recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("berth dev reported no result for {what}"))
    };
    let first = wait("the first run");
    assert_eq!(first["result"], "ok", "{first}");
    let before = first["built"]["web"].as_str().unwrap().to_string();

    std::fs::write(p.dir.join("web/index.html"), "<h1>saved</h1>\n").unwrap();
    let second = wait("the save");
    assert_eq!(second["result"], "ok", "{second}");
    let after = second["built"]["web"].as_str().unwrap().to_string();
    assert_ne!(after, before, "a new digest after the save");
    assert_eq!(live_image(&ctx).await, after);

    // Ctrl-C: berth dev stops with success.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Found by the getting-started guide: `berth dev > dev.log 2>&1` with the log inside the
/// project started a run for every line berth dev wrote to it, for good. The file its output
/// goes to is not a change.
#[tokio::test]
async fn dev_writing_its_log_inside_the_project_does_not_rerun_for_it() {
    let ctx = TestContext::new("dev-own-log").await;
    let p = project(&ctx);
    let log = p.dir.join("dev.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = berth(ctx.env)
        .args(["dev", "-o", "json", "--no-logs", "-n", &ctx.namespace, "-c"])
        .arg(p.dir.join("berth.yaml"))
        .env("BERTH_STORE", &p.store)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let results = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with('{') && l.contains("\"result\""))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while results() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "berth dev reported no first run:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Well past the 150 ms debounce: a run caused by its own output would have finished.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(results(), 1, "berth dev ran again for its own log:\n{text}");
}

#[tokio::test]
async fn a_service_without_dockerfile_is_built_by_detection() {
    let ctx = TestContext::new("run-detect").await;
    let p = project(&ctx);
    std::fs::remove_file(p.dir.join("web/Dockerfile")).unwrap();
    // The detected image serves from /app, so the example's test (of /www) goes too.
    let cfg = p.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("test:"))
        .collect();
    std::fs::write(&cfg, kept.join("\n") + "\n").unwrap();
    git(
        &p.dir,
        &["commit", "-q", "-am", "no Dockerfile: a static site"],
    );
    let out = p.berth(&ctx, &["run", "-n", &ctx.namespace]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("detected Static from index.html"),
        "{stderr}"
    );
    assert!(live_image(&ctx).await.contains("/web@sha256:"));
}

#[tokio::test]
async fn init_writes_a_berth_yaml_that_deploys_the_example() {
    let ctx = TestContext::new("run-init").await;
    let p = project(&ctx);
    std::fs::remove_file(p.dir.join("berth.yaml")).unwrap();
    git(&p.dir, &["commit", "-q", "-am", "no berth.yaml"]);
    let out = berth(ctx.env)
        .args(["init", "-n", &ctx.namespace])
        .arg(&p.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("service web: build context web — every COPY/ADD source of web/Dockerfile"),
        "{stderr}"
    );
    assert!(
        stderr.contains("berth pins it there to each build's digest, no manifest changes"),
        "{stderr}"
    );
    git(&p.dir, &["add", "-A"]);
    git(&p.dir, &["commit", "-q", "-m", "berth init"]);
    let run = run(&ctx, &p);
    assert_eq!(run["revision"], 1, "{run}");
    let web = run["built"]["web"].as_str().unwrap().to_string();
    assert_eq!(live_image(&ctx).await, web);
}

#[tokio::test]
async fn failing_tests_in_the_built_image_stop_the_run_before_any_push() {
    let ctx = TestContext::new("run-tests").await;
    let p = project(&ctx);
    let first = run(&ctx, &p);
    let web = first["built"]["web"].as_str().unwrap().to_string();

    let cfg = p.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let test_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("test:"))
        .unwrap()
        .to_string();
    std::fs::write(
        &cfg,
        text.replace(&test_line, "    test: grep -q goodbye /www/index.html"),
    )
    .unwrap();
    std::fs::write(p.dir.join("web/index.html"), "<h1>hello again</h1>\n").unwrap();
    git(&p.dir, &["commit", "-q", "-am", "a page the test rejects"]);
    let out = p.berth(&ctx, &["run", "-n", &ctx.namespace]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the tests of service `web` failed; nothing was pushed or deployed"),
        "{stderr}"
    );
    assert!(stderr.contains("exited with code 1"), "{stderr}");
    assert_eq!(live_image(&ctx).await, web, "the old digest still runs");
    // Nothing was pushed under the new commit's tag.
    let head = Command::new("git")
        .arg("-C")
        .arg(&p.dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    let tag: String = String::from_utf8_lossy(&head.stdout)
        .trim()
        .chars()
        .take(12)
        .collect();
    let image: berth_types::ImageRef = format!("{}/web:{tag}", ctx.repository).parse().unwrap();
    assert!(
        ctx.env.registry().pull_manifest(&image).await.is_err(),
        "{image} must not exist"
    );
}

/// Appends a line to the log file that every container on kwok-logs-0 serves (CRI format).
fn log_line(ctx: &TestContext, text: &str) {
    use std::io::Write;
    let file = ctx.env.vars.get("BERTH_TESTENV_LOGS_FILE").unwrap_or_else(|| {
        panic!(
            "the test environment serves no container logs (no BERTH_TESTENV_LOGS_FILE in {}); start it with: {}",
            ctx.env.file.display(),
            berth_testkit::START_HINT
        )
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", now.as_secs_f64()),
            "+%Y-%m-%dT%H:%M:%S.%NZ",
        ])
        .output()
        .unwrap();
    let ts = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    writeln!(f, "{ts} stdout F {text}").unwrap();
}

#[tokio::test]
async fn dev_streams_the_new_pods_logs_and_follows_them_across_a_rebuild() {
    let ctx = TestContext::new("dev-logs").await;
    let p = project(&ctx);
    // The pods go to the node that serves container logs.
    let app = p.dir.join("k8s/app.yaml");
    let text = std::fs::read_to_string(&app).unwrap().replace(
        "    spec:\n      containers:\n",
        "    spec:\n      nodeSelector: {kubernetes.io/hostname: kwok-logs-0}\n      tolerations: [{key: berth.dev/logs, operator: Exists, effect: NoSchedule}]\n      containers:\n",
    );
    std::fs::write(&app, text).unwrap();
    git(&p.dir, &["commit", "-q", "-am", "on the logs node"]);

    let (mut child, results_rx, logs_rx) = start_dev(&ctx, &p.dir.join("berth.yaml"), &p.store);
    let result = |what: &str| {
        results_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("berth dev reported no result for {what}"))
    };
    // Waits for `text` in the log of a pod of another ReplicaSet than `not_from`'s pods
    // (`hello-<replicaset hash>-<suffix>`); returns that pod.
    let logged = |text: &str, not_from: &[String]| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let doc = logs_rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no pod logged {text:?}"));
            let pod = doc["pod"].as_str().unwrap().to_string();
            let replica_set = |p: &str| p.rsplit_once('-').map(|(rs, _)| rs.to_string());
            if doc["line"] == text
                && !not_from
                    .iter()
                    .any(|old| replica_set(old) == replica_set(&pod))
            {
                assert_eq!(doc["container"], "web", "{doc}");
                assert!(pod.starts_with("hello-"), "{doc}");
                return pod;
            }
        }
    };
    let first = result("the first run");
    assert_eq!(first["result"], "ok", "{first}");
    let one = format!("{} line one", ctx.namespace);
    log_line(&ctx, &one);
    let first_pod = logged(&one, &[]);

    // A save rebuilds: the new pods' logs are followed (the old pods are gone).
    std::fs::write(p.dir.join("web/index.html"), "<h1>saved</h1>\n").unwrap();
    let second = result("the save");
    assert_eq!(second["result"], "ok", "{second}");
    let two = format!("{} line two", ctx.namespace);
    log_line(&ctx, &two);
    let second_pod = logged(&two, std::slice::from_ref(&first_pod));
    assert_ne!(second_pod, first_pod, "a pod of the new ReplicaSet");

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Processes on this host whose command line starts with `prefix`.
fn processes_starting(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with(prefix))
        .collect()
}

/// Before: berth.yaml could not give a test a deadline (`test:` took only a command), so a
/// hanging test held the run until --test-timeout's 15 minutes. Now `test: {command, timeout}`
/// ends it at its own deadline with everything it started, the run fails before any push, and
/// --test-timeout still wins over berth.yaml.
#[tokio::test]
async fn a_test_past_its_berth_yaml_timeout_fails_the_run_and_leaves_no_process_behind() {
    let ctx = TestContext::new("run-test-timeout").await;
    let p = project(&ctx);
    let cfg = p.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let test_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("test:"))
        .unwrap()
        .to_string();
    std::fs::write(
        &cfg,
        text.replace(
            &test_line,
            "    test: { command: \"echo testing; sleep 1003 & sleep 1004\", timeout: 3s }",
        ),
    )
    .unwrap();
    git(&p.dir, &["commit", "-q", "-am", "a test that hangs"]);
    let started = std::time::Instant::now();
    let out = p.berth(&ctx, &["run", "-n", &ctx.namespace]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the tests of service `web` failed; nothing was pushed or deployed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did not finish within 3s and was killed with every process it started"),
        "{stderr}"
    );
    assert!(stderr.contains("test: {command, timeout}"), "{stderr}");
    assert!(stderr.contains("testing"), "{stderr}");
    assert!(took < std::time::Duration::from_secs(120), "took {took:?}");
    let left = processes_starting("sleep 100");
    assert!(left.is_empty(), "left running: {left:?}");
    let deployed = live(&ctx, "apps/v1", "Deployment", "hello").await;
    assert!(deployed.is_none(), "nothing may be deployed");

    // The flag wins over berth.yaml.
    let out = p.berth(&ctx, &["run", "-n", &ctx.namespace, "--test-timeout", "2s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not finish within 2s"), "{stderr}");
    assert!(processes_starting("sleep 100").is_empty());
}

/// Before: a repository could not set its RUN steps' memory limit: only `--memory` did. Now
/// `build.memory` applies (the step is OOM-killed with an error naming the limit) and the
/// flag still wins.
#[tokio::test]
async fn berth_yaml_build_memory_limits_run_steps_and_the_memory_flag_wins() {
    let ctx = TestContext::new("run-memory").await;
    let p = project(&ctx);
    let cfg = p.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "    build:\n      context: web\n",
            "    build:\n      context: web\n      memory: 64m\n",
        ),
    )
    .unwrap();
    let dockerfile = p.dir.join("web/Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    std::fs::write(
        &dockerfile,
        text.replace(
            "RUN mkdir -p /www\n",
            "RUN mkdir -p /www && dd if=/dev/zero of=/dev/null bs=200M count=1\n",
        ),
    )
    .unwrap();
    git(
        &p.dir,
        &["commit", "-q", "-am", "a step that needs 200 MiB"],
    );
    let out = p.berth(&ctx, &["run", "-n", &ctx.namespace]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("building service `web` failed"), "{stderr}");
    assert!(
        stderr.contains("was killed by the kernel's OOM killer at its memory limit of 64m"),
        "{stderr}"
    );
    assert!(stderr.contains("Dockerfile:3:1: RUN step 1"), "{stderr}");

    let out = p.berth(
        &ctx,
        &["run", "-o", "json", "-n", &ctx.namespace, "--memory", "1g"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// berth.yaml's paths were checked when it was loaded, not what lies inside them: a link in a
/// manifests directory to a file outside the repository was read and deployed by `berth run`.
#[tokio::test]
async fn run_does_not_deploy_a_manifest_linked_outside_the_repository() {
    let ctx = TestContext::new("run-confine").await;
    let p = Repo::new("run-confine");
    let outside = std::env::temp_dir().join(format!(
        "berth-run-outside-{}",
        berth_testkit::unique_suffix()
    ));
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("stolen.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\ndata:\n  kubeconfig: SECRET-OUTSIDE\n",
    )
    .unwrap();
    let dir = &p.dir;
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    std::fs::write(
        dir.join("berth.yaml"),
        "services:\n  - name: cfg\n    manifests: { path: [k8s] }\nenvironments:\n  - name: dev\n    namespace: dev\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("k8s/ok.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\ndata: {}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("stolen.yaml"), dir.join("k8s/kubeconfig.yaml"))
        .unwrap();
    let out = p.berth(&ctx, &["run", "-n", &ctx.namespace]);
    let _ = std::fs::remove_dir_all(&outside);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("k8s/kubeconfig.yaml") && stderr.contains("leads outside the repository"),
        "{stderr}"
    );
    assert!(!stderr.contains("SECRET-OUTSIDE"), "{stderr}");
    let stolen = live(&ctx, "v1", "ConfigMap", "stolen").await;
    assert!(stolen.is_none(), "deployed: {stolen:?}");
}

/// Moving a release from Helm or kubectl to berth: `berth run` had no way to take over fields
/// the previous tool owned (only `berth deploy` had `--force-conflicts`).
#[tokio::test]
async fn a_run_names_the_field_manager_it_conflicts_with_and_takes_over_with_force_conflicts() {
    let ctx = TestContext::new("run-conflicts").await;
    let p = project(&ctx);
    ctx.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "hello-config"}, "data": {"GREETING": "hello from helm"}
    }))
    .await;
    let cm =
        || async { get(&ctx, "v1", "ConfigMap", "hello-config").await["data"]["GREETING"].clone() };
    let refused = p.berth(&ctx, &["run", "-n", &ctx.namespace]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("berth-test") && stderr.contains("--force-conflicts"),
        "names the other manager and the way out: {stderr}"
    );
    assert_eq!(cm().await, "hello from helm");
    let forced = p.berth(&ctx, &["run", "-n", &ctx.namespace, "--force-conflicts"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(cm().await, "hello from berth");
}
