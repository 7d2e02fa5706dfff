//! Canary releases on the test environment's real node: `examples/hello` with
//! `strategy.canary` steps, its pods counted at each step, a manual pause answered with
//! `berth promote --resume`, and a new build whose log says `ERROR` aborted at its log check
//! while the stable pods go on answering.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::TestContext;
use berth_testkit::webdriver::Browser;
use serde_json::Value;

use crate::common::{Repo, Run, deployment, git, hello_project, history, image_of, live, run};
use crate::examples::{Example, rails};
use crate::notify::{KEY, Receiver, events_of, openssl_signature};
use crate::real_node::{hello, page, served};
use crate::serve::{Api, Rig};

/// The hello example at `replicas` pods with `steps` (YAML flow list) as its canary, telling
/// `receiver` of its runs.
fn canary_hello(
    ctx: &TestContext,
    marker: &str,
    replicas: u32,
    steps: &str,
    receiver: &Receiver,
) -> Example {
    let ex = hello(ctx, marker);
    ex.edit(
        "k8s/app.yaml",
        "replicas: 2",
        &format!("replicas: {replicas}"),
    );
    ex.edit(
        "berth.yaml",
        "    deploy: { timeout: 60s }\n",
        &format!(
            "    deploy: {{ timeout: 60s }}\n    strategy:\n      canary:\n        steps: {steps}\n    notify:\n      - webhook: {{ url: \"http://127.0.0.1:{}/hook\" }}\n",
            receiver.port
        ),
    );
    ex.commit("canary");
    ex
}

/// `berth run -o json` started in the background.
fn start_run(ex: &Repo, ctx: &TestContext) -> Child {
    ex.command(ctx, &["run", "-o", "json", "-n", &ctx.namespace])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start berth run")
}

async fn finish(child: Child) -> Run {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    Run::of(&out)
}

/// Ready pods, not being deleted, matching `selector`, and the images they run.
async fn ready_pods(ctx: &TestContext, selector: &str) -> Vec<String> {
    let pods = ctx
        .cluster
        .list("v1", "Pod", &ctx.namespace, Some(selector))
        .await
        .unwrap();
    pods.iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

const CANARY_PODS: &str = "app=hello,berth.dev/track=canary";
const STABLE_PODS: &str = "app=hello,!berth.dev/track";

/// Waits until the canary pauses at `step` with `new` canary and `stable` stable pods ready,
/// the canary's pods on `image` and the stable ones on `stable_image`.
async fn paused_at(
    ctx: &TestContext,
    child: &mut Child,
    step: usize,
    (new, stable): (usize, usize),
    (image, stable_image): (&str, &str),
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = String::new();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("berth run ended ({status}) before step {step} paused; last: {last}");
        }
        assert!(
            Instant::now() < deadline,
            "the canary pauses at step {step} with {new} new and {stable} stable pods within \
             180 s; last: {last}"
        );
        let canary = live(ctx, "apps/v1", "Deployment", "hello-canary").await;
        let at = canary
            .as_ref()
            .and_then(|c| c["metadata"]["annotations"]["berth.dev/paused-at"].as_str())
            .map(String::from);
        let canary_pods = ready_pods(ctx, CANARY_PODS).await;
        let stable_pods = ready_pods(ctx, STABLE_PODS).await;
        last =
            format!("paused at {at:?}, canary pods {canary_pods:?}, stable pods {stable_pods:?}");
        // Revision 2 paused at `step`.
        if at.as_deref() == Some(&format!("2.{step}"))
            && canary_pods.len() == new
            && stable_pods.len() == stable
        {
            assert!(canary_pods.iter().all(|i| i == image), "{last}");
            assert!(stable_pods.iter().all(|i| i == stable_image), "{last}");
            let d = deployment(ctx, "hello").await;
            assert_eq!(d["spec"]["replicas"], stable as u64, "{d}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_healthy_canary_goes_20_50_100_with_its_pods_counted_and_manual_pauses_resumed() {
    let ctx = TestContext::on_real_node("canary-steps").await;
    let one = format!("canary one {}", berth_testkit::unique_suffix());
    let receiver = Receiver::start();
    let ex = canary_hello(
        &ctx,
        &one,
        5,
        "[{weight: 20}, {pause: manual}, {weight: 50}, {pause: manual}, {weight: 100}]",
        &receiver,
    );
    // A first install has no stable pods to compare with: every pod at once.
    let first = ex.run_ok(&ctx);
    assert!(
        live(&ctx, "apps/v1", "Deployment", "hello-canary")
            .await
            .is_none(),
        "{first}"
    );
    let old = first.image("web");

    let nothing = run(
        &ctx,
        &[
            "promote",
            "--resume",
            "dev",
            "-c",
            &ex.config().to_string_lossy(),
        ],
    );
    assert_ne!(nothing.code, 0, "{}", nothing.all());
    assert!(
        nothing.stderr.contains("has no canary paused"),
        "{}",
        nothing.all()
    );

    let two = format!("canary two {}", berth_testkit::unique_suffix());
    ex.write("web/index.html", &page(&two));
    ex.commit("two");
    let mut child = start_run(&ex, &ctx);
    // The new image is the canary's; find it on the canary Deployment once it exists.
    let deadline = Instant::now() + Duration::from_secs(180);
    let new = loop {
        if let Some(c) = live(&ctx, "apps/v1", "Deployment", "hello-canary").await {
            break image_of(&c);
        }
        assert!(Instant::now() < deadline, "a canary Deployment appears");
        assert!(child.try_wait().unwrap().is_none(), "berth run still runs");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_ne!(new, old);

    paused_at(&ctx, &mut child, 2, (1, 4), (&new, &old)).await;
    let config = ex.config().to_string_lossy().to_string();
    let resumed = run(&ctx, &["promote", "--resume", "dev", "-c", &config]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
    assert!(resumed.stderr.contains("at step 2"), "{}", resumed.all());

    paused_at(&ctx, &mut child, 4, (3, 2), (&new, &old)).await;
    let resumed = run(&ctx, &["promote", "--resume", "dev", "-c", &config]);
    assert_eq!(resumed.code, 0, "{}", resumed.all());

    let second = finish(child).await;
    assert!(second.ok, "{second}");
    assert_eq!(second.image("web"), new);
    let d = deployment(&ctx, "hello").await;
    assert_eq!(image_of(&d), new);
    assert_eq!(d["spec"]["replicas"], 5);
    assert!(
        live(&ctx, "apps/v1", "Deployment", "hello-canary")
            .await
            .is_none(),
        "the canary is removed once every pod runs the new revision"
    );
    served(&ctx, "hello", "/", &two).await;
    let h = history(&ctx, "dev");
    assert_eq!(h.last().unwrap()["status"], "deployed", "{h:#?}");
    // Each pause is told once, the promotion once, with a delivery id of its own.
    let got = receiver.got();
    assert_eq!(
        events_of(&got),
        [
            "started",
            "succeeded",
            "started",
            "paused",
            "paused",
            "promoted",
            "succeeded"
        ],
        "{got:#?}"
    );
    let ids: Vec<&str> = got.iter().map(|g| g.header("x-berth-delivery")).collect();
    assert!(
        ids[3].ends_with(".paused.2.0") && ids[4].ends_with(".paused.4.0"),
        "{ids:?}"
    );
}

#[tokio::test]
async fn a_canary_that_logs_errors_is_aborted_at_its_log_check_while_the_stable_pods_serve() {
    let ctx = TestContext::on_real_node("canary-abort").await;
    let one = format!("canary stable {}", berth_testkit::unique_suffix());
    let receiver = Receiver::start();
    let ex = canary_hello(
        &ctx,
        &one,
        4,
        "[{weight: 25}, {check: [{logs: {pattern: 'ERROR|panic', max: 0}, interval: 5s, count: 2}]}, {weight: 100}]",
        &receiver,
    );
    let first = ex.run_ok(&ctx);
    let old = first.image("web");
    served(&ctx, "hello", "/", &one).await;

    // The new build serves its page but logs an error every second.
    let two = format!("canary broken {}", berth_testkit::unique_suffix());
    ex.write("web/index.html", &page(&two));
    ex.edit(
        "web/Dockerfile",
        r#"CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]"#,
        r#"CMD ["sh", "-c", "while true; do echo 'ERROR: payment backend refused the call'; sleep 1; done & exec httpd -f -p 8080 -h /www"]"#,
    );
    ex.commit("broken");
    let child = start_run(&ex, &ctx);
    let done = tokio::spawn(finish(child));
    // Every answer during the canary comes from a pod that serves: the stable ones, or the
    // canary's own.
    let mut answers = 0;
    while !done.is_finished() {
        let (status, body) = ctx.get_through_service("hello", 80, "/").await;
        assert!(
            status == 200 && (body.contains(&one) || body.contains(&two)),
            "answer {answers}: {status} {body}"
        );
        answers += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = done.await.unwrap();
    assert!(
        answers > 10,
        "the Service was asked during the canary: {answers}"
    );
    assert!(!second.ok, "{second}");
    let error = second.error();
    assert!(
        error.contains("aborted at its canary") && error.contains("revision 1 serves every pod"),
        "{error}"
    );
    assert!(
        error.contains("ERROR: payment backend refused the call"),
        "the evidence is in the error: {error}"
    );
    let h = history(&ctx, "dev");
    let aborted: &Value = h.last().unwrap();
    assert_eq!(aborted["status"], "aborted", "{h:#?}");
    assert!(
        aborted["description"]
            .as_str()
            .unwrap()
            .contains("ERROR: payment backend refused the call"),
        "the record keeps the matching lines: {aborted}"
    );
    assert_eq!(h[0]["status"], "deployed", "{h:#?}");
    let d = deployment(&ctx, "hello").await;
    assert_eq!(image_of(&d), old);
    assert_eq!(
        d["spec"]["replicas"], 4,
        "the stable pods are back to full size"
    );
    assert!(
        live(&ctx, "apps/v1", "Deployment", "hello-canary")
            .await
            .is_none()
    );
    served(&ctx, "hello", "/", &one).await;
    let got = receiver.got();
    assert_eq!(
        events_of(&got),
        ["started", "succeeded", "started", "aborted"],
        "{got:#?}"
    );
    let aborted = got[3].json();
    assert_eq!(aborted["revision"], 1, "the revision live again: {aborted}");
    assert!(
        aborted["message"]
            .as_str()
            .unwrap()
            .contains("payment backend refused"),
        "{aborted}"
    );
}

const STATEFULSET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 4
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: web
        image: IMAGE
";

/// The names of the StatefulSet `db`'s pods at its update revision, and the pause it notes.
async fn updated_pods(ctx: &TestContext) -> (Vec<String>, Option<String>, Value) {
    let set = live(ctx, "apps/v1", "StatefulSet", "db").await.unwrap();
    let update = set["status"]["updateRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let pods = ctx
        .cluster
        .list("v1", "Pod", &ctx.namespace, Some("app=db"))
        .await
        .unwrap();
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["metadata"]["labels"]["controller-revision-hash"] == update.as_str())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let paused = set["metadata"]["annotations"]["berth.dev/paused-at"]
        .as_str()
        .map(String::from);
    (names, paused, set)
}

#[tokio::test]
async fn a_statefulset_canary_moves_its_highest_ordinals_first_by_partition() {
    let ctx = TestContext::new("canary-sts").await;
    let p = hello_project(&ctx, "canary-sts", |y| {
        y.replace(
            "    deploy: { timeout: 2m }\n",
            "    deploy: { timeout: 2m }\n    strategy:\n      canary:\n        steps: [{weight: 25}, {pause: manual}, {weight: 50}, {pause: manual}]\n",
        )
    });
    p.write(
        "k8s/app.yaml",
        &STATEFULSET.replace("IMAGE", &format!("{}/web", ctx.repository)),
    );
    p.commit("a StatefulSet");
    let first = Run::of(&p.berth(&ctx, &["run", "-o", "json", "-n", &ctx.namespace]));
    assert!(first.ok, "{first}");

    p.write("web/index.html", "<h1>two</h1>\n");
    p.commit("two");
    let mut child = start_run(&p, &ctx);
    let config = p.config().to_string_lossy().to_string();
    for (step, want) in [(2, vec!["db-3"]), (4, vec!["db-2", "db-3"])] {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("berth run ended ({status}) before step {step} paused");
            }
            let (updated, paused, set) = updated_pods(&ctx).await;
            if paused.as_deref() == Some(&format!("2.{step}")) && updated == want {
                let partition = 4 - want.len();
                assert_eq!(
                    set["spec"]["updateStrategy"]["rollingUpdate"]["partition"], partition,
                    "{set}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "step {step} pauses with {want:?} on the new revision; now {updated:?}, paused \
                 at {paused:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let resumed = run(&ctx, &["promote", "--resume", "dev", "-c", &config]);
        assert_eq!(resumed.code, 0, "{}", resumed.all());
        assert!(
            resumed.stderr.contains(&format!("at step {step}")),
            "{}",
            resumed.all()
        );
    }
    let second = finish(child).await;
    assert!(second.ok, "{second}");
    let (updated, paused, set) = updated_pods(&ctx).await;
    assert_eq!(updated, ["db-0", "db-1", "db-2", "db-3"], "{set}");
    assert_eq!(paused, None, "{set}");
    assert!(
        set["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
            .as_u64()
            .unwrap_or(0)
            == 0,
        "the promoted StatefulSet keeps no partition: {set}"
    );
    assert!(
        set["metadata"]["annotations"]["berth.dev/canary"].is_null(),
        "{set}"
    );
}

#[tokio::test]
async fn a_paused_canary_of_the_server_is_resumed_through_the_api_and_the_ui_by_a_deployer_only() {
    let ctx = TestContext::new("canary-serve").await;
    let rig = Rig::new(&ctx, None, "");
    let config = rig.work.join("berth.yaml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "    deploy: { timeout: 2m }\n",
        "    deploy: { timeout: 2m }\n    strategy:\n      canary:\n        steps: [{weight: 50}, {pause: manual}, {pause: manual}]\n",
    );
    std::fs::write(&config, text).unwrap();
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let deployer_token = rig.token(&ctx, None, "release-manager", "deployer");
    let _server = rig.serve(&ctx, None);
    let viewer = Api::new(&rig, Some(&viewer));
    let deployer = Api::new(&rig, Some(&deployer_token));
    let resume = "/api/repositories/hello/environments/dev/resume";

    let first = rig.push("first");
    let id = viewer.run_for(&first).await;
    let run = viewer.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    let (s, body) = deployer.post(resume, serde_json::json!({})).await;
    assert_eq!(s, 409, "nothing is paused: {body}");
    assert_eq!(body["error"], "not_paused", "{body}");

    std::fs::write(rig.work.join("web/index.html"), "<h1>two</h1>\n").unwrap();
    let second = rig.push("second");
    let id = viewer.run_for(&second).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let canary = live(&ctx, "apps/v1", "Deployment", "hello-canary").await;
        let paused = canary
            .as_ref()
            .and_then(|c| c["metadata"]["annotations"]["berth.dev/paused-at"].as_str())
            .map(String::from);
        if paused.as_deref() == Some("2.2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server's run pauses at step 2 within 120 s; now {paused:?}\n{}",
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (s, body) = viewer.post(resume, serde_json::json!({})).await;
    assert_eq!(s, 403, "a viewer may not answer: {body}");
    let (_, run) = viewer.get(&format!("/api/runs/{id}")).await;
    assert_eq!(run["state"], "running", "{run}");

    let (s, body) = deployer.post(resume, serde_json::json!({})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["step"], 2, "{body}");
    assert_eq!(body["answer"], "resume", "{body}");
    assert_eq!(body["by"], "release-manager", "{body}");

    // The second pause, answered with the run page's button in Chromium.
    let browser = Browser::start().await;
    browser.goto(&rig.url("/")).await;
    let field = browser.wait_for("#token", Duration::from_secs(10)).await;
    browser.type_text(&field, &deployer_token).await;
    let button = browser.wait_for("#sign-in", Duration::from_secs(5)).await;
    browser.click(&button).await;
    browser.wait_for("#runs", Duration::from_secs(10)).await;
    browser.goto(&rig.url(&format!("/runs/{id}"))).await;
    let panel = browser
        .wait_text("#canary", Duration::from_secs(60), |t| {
            t.contains("step 3 of 3") && t.contains("paused")
        })
        .await;
    assert!(panel.contains("50% of the pods"), "{panel}");
    let resume_button = browser
        .wait_for("#canary-resume", Duration::from_secs(10))
        .await;
    assert!(browser.find("#canary-abort").await.is_some());
    browser.click(&resume_button).await;
    browser
        .wait_text("#run-state", Duration::from_secs(120), |t| t == "succeeded")
        .await;
    let panel = browser
        .wait_text("#canary", Duration::from_secs(20), |t| {
            t.contains("promoted")
        })
        .await;
    assert!(browser.find("#canary-resume").await.is_none(), "{panel}");
    browser.quit().await;
    let run = viewer.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    assert!(
        live(&ctx, "apps/v1", "Deployment", "hello-canary")
            .await
            .is_none()
    );
    let (_, events) = viewer.get(&format!("/api/runs/{id}/events")).await;
    let canary: Vec<(u64, u64, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event"])
        .filter(|e| e["event"] == "canary")
        .map(|e| {
            (
                e["step"].as_u64().unwrap(),
                e["weight"].as_u64().unwrap(),
                e["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        canary,
        [
            (1, 50, "weight"),
            (2, 50, "paused"),
            (2, 50, "resumed"),
            (3, 50, "paused"),
            (3, 50, "resumed"),
            (3, 50, "promoted")
        ],
        "the run's events tell where the canary stood: {events}"
    );
}

/// `berth run --env production` of the rails example, telling `receiver` (signed).
fn rails_production(ex: &Example, ctx: &TestContext, receiver: &Receiver) -> Run {
    let out = ex
        .command(
            ctx,
            &[
                "run",
                "-o",
                "json",
                "-n",
                &ctx.namespace,
                "--env",
                "production",
            ],
        )
        .env(
            "RELEASES_WEBHOOK_URL",
            format!("http://127.0.0.1:{}/releases", receiver.port),
        )
        .env("RELEASES_WEBHOOK_SECRET", KEY)
        .output()
        .unwrap();
    Run::of(&out)
}

#[tokio::test]
async fn rails_production_aborts_a_release_whose_canary_logs_an_error_and_tells_the_webhook() {
    let ctx = TestContext::on_real_node("canary-rails").await;
    let receiver = Receiver::start();
    let ex = rails(&ctx);
    git(&ex.dir, &["checkout", "-q", "-b", "production"]);
    let first = rails_production(&ex, &ctx, &receiver);
    assert!(first.ok, "{first}");
    assert!(
        first.events.iter().any(|e| e["event"] == "message"
            && e["level"] == "warning"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("RELEASES_SLACK_URL")),
        "an unset receiver is skipped with a warning naming its variable: {first}"
    );
    let good = first.image("web");

    // A release whose server logs an error at start.
    ex.edit(
        "app/bin/rails",
        "    exec httpd -f",
        "    echo \"ERROR: could not connect to the cache at redis://cache:6379\"\n    exec httpd -f",
    );
    ex.commit("a release that cannot reach its cache");
    let second = rails_production(&ex, &ctx, &receiver);
    assert!(!second.ok, "{second}");
    let error = second.error();
    assert!(
        error.contains("aborted at its canary") && error.contains("could not connect to the cache"),
        "{error}"
    );
    // The migration ran (a pre-deploy hook), the canary beside the autoscaled pods was
    // removed, and the live release keeps its pods and their number.
    assert!(
        second.position("Job/migrate", "ready").is_some(),
        "{second}"
    );
    let d = deployment(&ctx, "web").await;
    assert_eq!(image_of(&d), good);
    // berth never wrote the autoscaled Deployment's replicas (the HPA may have, to its
    // minimum, meanwhile).
    let berth_owns_replicas = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["manager"] == "berth")
        .any(|m| !m["fieldsV1"]["f:spec"]["f:replicas"].is_null());
    assert!(
        !berth_owns_replicas,
        "the autoscaler's number is left alone: {d}"
    );
    assert!(
        live(&ctx, "apps/v1", "Deployment", "web-canary")
            .await
            .is_none()
    );
    let canary: Vec<String> = second
        .events
        .iter()
        .filter(|e| e["event"] == "canary")
        .map(|e| format!("{} {}", e["state"].as_str().unwrap(), e["message"]))
        .collect();
    assert!(
        canary[0].starts_with("weight") && canary[0].contains("beside"),
        "{canary:#?}"
    );

    let got = receiver.got();
    assert_eq!(
        events_of(&got),
        ["started", "succeeded", "started", "aborted"],
        "{got:#?}"
    );
    for g in &got {
        assert_eq!(
            g.header("x-berth-signature-256"),
            openssl_signature(&g.body)
        );
    }
    assert_eq!(
        ex.history(&ctx, "production").last().unwrap()["status"],
        "aborted"
    );
}

#[tokio::test]
async fn a_deploy_killed_mid_canary_is_undone_by_the_next_one_even_with_the_live_content() {
    let ctx = TestContext::new("canary-crash").await;
    let p = hello_project(&ctx, "canary-crash", |y| {
        y.replace(
            "    deploy: { timeout: 2m }\n",
            "    deploy: { timeout: 2m }\n    strategy:\n      canary:\n        steps: [{weight: 50}, {pause: 1s}]\n",
        )
    });
    p.edit("k8s/app.yaml", "replicas: 2", "replicas: 4");
    p.commit("four pods");
    let args = ["run", "-o", "json", "-n", &ctx.namespace];
    let first = Run::of(&p.berth(&ctx, &args));
    assert!(first.ok, "{first}");
    let old = first.image("web");

    p.write("web/index.html", "<h1>two</h1>\n");
    p.commit("two");
    let killed = p
        .command(&ctx, &args)
        .env("BERTH_TEST_CRASH_AT", "canary")
        .output()
        .unwrap();
    assert_eq!(
        killed.status.code(),
        None,
        "the deploy dies at its first weight: {}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let stable = deployment(&ctx, "hello").await;
    assert_eq!(
        stable["spec"]["replicas"], 2,
        "killed with the stable pods halved"
    );
    assert!(
        live(&ctx, "apps/v1", "Deployment", "hello-canary")
            .await
            .is_some()
    );

    // The live revision's own content: not "unchanged" while a canary is left over.
    git(&p.dir, &["checkout", "-q", "HEAD~1"]);
    let back = Run::of(&p.berth(&ctx, &args));
    assert!(back.ok, "{back}");
    assert!(
        back.events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("left by an interrupted deploy"))),
        "{back}"
    );
    let d = deployment(&ctx, "hello").await;
    assert_eq!(image_of(&d), old);
    assert_eq!(d["spec"]["replicas"], 4, "{d}");
    assert!(
        live(&ctx, "apps/v1", "Deployment", "hello-canary")
            .await
            .is_none()
    );

    // And the new build goes through its canary to the end.
    git(&p.dir, &["checkout", "-q", "main"]);
    let again = Run::of(&p.berth(&ctx, &args));
    assert!(again.ok, "{again}");
    let d = deployment(&ctx, "hello").await;
    assert_ne!(image_of(&d), old);
    assert_eq!(d["spec"]["replicas"], 4, "{d}");
    let st: Vec<String> = history(&ctx, "dev")
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect();
    assert!(st.contains(&"interrupted".to_string()), "{st:?}");
    assert_eq!(st.last().unwrap(), "deployed", "{st:?}");
}

#[tokio::test]
async fn http_and_job_checks_pass_a_good_canary_and_a_failing_job_aborts_with_its_output() {
    let ctx = TestContext::on_real_node("canary-probes").await;
    let receiver = Receiver::start();
    let one = format!("probes one {}", berth_testkit::unique_suffix());
    let ex = canary_hello(
        &ctx,
        &one,
        4,
        "[{weight: 25}, {check: [{http: {url: 'http://SERVICE_IP/', body: '<h1>', latency: 5s}}, {job: {command: 'JOB'}}]}, {weight: 100}]",
        &receiver,
    );
    let first = ex.run_ok(&ctx);
    let svc = live(&ctx, "v1", "Service", "hello").await.unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    ex.edit("berth.yaml", "SERVICE_IP", &ip);
    // In the cluster, through the Service's name: the new image's own wget.
    ex.edit(
        "berth.yaml",
        "'JOB'",
        "'wget -qO- http://hello/ | grep -q \"<h1>\"'",
    );
    ex.write("web/index.html", &page("probes two"));
    ex.commit("two");
    let second = ex.run_ok(&ctx);
    let checked: Vec<String> = second
        .events
        .iter()
        .filter(|e| e["event"] == "canary" && e["state"] == "checked")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        checked
            .iter()
            .any(|m| m.starts_with("check http") && m.contains("HTTP 200"))
            && checked
                .iter()
                .any(|m| m.starts_with("check job") && m.contains("exited 0")),
        "{checked:#?}"
    );
    assert_ne!(
        image_of(&deployment(&ctx, "hello").await),
        first.image("web")
    );

    // A smoke test that fails: aborted, with what it printed.
    ex.edit(
        "berth.yaml",
        "'wget -qO- http://hello/ | grep -q \"<h1>\"'",
        "'echo \"smoke test: checkout answered 500\"; exit 3'",
    );
    ex.write("web/index.html", &page("probes three"));
    ex.commit("three");
    let third = ex.run(&ctx);
    assert!(!third.ok, "{third}");
    let error = third.error();
    assert!(
        error.contains("aborted at its canary")
            && error.contains("failed")
            && error.contains("smoke test: checkout answered 500"),
        "{error}"
    );
    assert_eq!(
        image_of(&deployment(&ctx, "hello").await),
        second.image("web")
    );
    assert_eq!(history(&ctx, "dev").last().unwrap()["status"], "aborted");
}
