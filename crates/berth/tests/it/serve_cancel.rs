//! Cancelling a run of `berth serve` through the API, against the real engine: a cancel during
//! a build stops the RUN step in flight (its container is gone, nothing is deployed), and a
//! cancel once the deploy has started is refused with a message saying so — the deploy ends on
//! its own (here: rolled back at its deadline).

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::TestContext;
use serde_json::{Value, json};

use crate::serve::{Api, Rig, hello_deployment};

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Processes of this machine whose command line contains `marker` (the RUN step's shell).
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

async fn events_of(api: &Api, id: &str) -> Vec<Value> {
    let (_, events) = api.get(&format!("/api/runs/{id}/events")).await;
    events.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn cancelling_a_run_during_its_build_stops_the_run_step_and_deploys_nothing() {
    let ctx = TestContext::new("serve-cancel-build").await;
    let rig = Rig::new(&ctx, None, "");
    let marker = format!("cancel-marker-{}", berth_testkit::unique_suffix());
    // A RUN step that would take five minutes; the shell stays the parent of its sleep, so
    // its command line (with the marker) is visible while the step runs.
    replace_in(
        &rig.work.join("web/Dockerfile"),
        "RUN mkdir -p /www\n",
        &format!("RUN mkdir -p /www\nRUN echo {marker} && sleep 300 && echo {marker}-done\n"),
    );
    let deployer = rig.token(&ctx, None, "deployer", "deployer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&deployer));

    let commit = rig.push("a build step that sleeps");
    let id = api.run_for(&commit).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    while processes_with(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the RUN step of run {id} never started: {:?}\n{}",
            events_of(&api, &id).await,
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let asked = Instant::now();
    let (s, body) = api.post(&format!("/api/runs/{id}/cancel"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.to_string().contains("cancelling"),
        "the answer says the run is being cancelled: {body}"
    );
    let run = api.wait_run(&id, &rig).await;
    let took = asked.elapsed();
    assert_eq!(run["state"], "cancelled", "{run}\n{}", rig.log());
    assert!(
        took < Duration::from_secs(120),
        "the cancel stopped the step in flight, not at its end 300 s later: took {took:?}"
    );
    // The step's container went with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = processes_with(&marker);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled RUN step is still running: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let events = events_of(&api, &id).await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !events.iter().any(|e| e["event"]["event"] == "step_started"
            && e["event"]["step"].as_str() == Some("deploy")),
        "a cancelled run never starts its deploy: {text}"
    );
    let deployed = hello_deployment(&ctx).await;
    assert!(
        deployed.is_none(),
        "nothing is deployed by a cancelled run: {deployed:?}"
    );
}

#[tokio::test]
async fn a_cancel_once_the_deploy_started_is_refused_and_the_deploy_ends_on_its_own() {
    let ctx = TestContext::new("serve-cancel-deploy").await;
    let rig = Rig::new(&ctx, None, "");
    // Pods that never become ready (kwok's simulation), and a short rollout deadline.
    replace_in(
        &rig.work.join("k8s/app.yaml"),
        "      labels: {app: hello}\n    spec:\n",
        "      labels: {app: hello}\n      annotations: {berth.dev/simulate: never-ready}\n    spec:\n",
    );
    replace_in(
        &rig.work.join("berth.yaml"),
        "deploy: { timeout: 2m }",
        "deploy: { timeout: 15s }",
    );
    let deployer = rig.token(&ctx, None, "deployer", "deployer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&deployer));

    let commit = rig.push("a deploy that never gets ready");
    let id = api.run_for(&commit).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let events = events_of(&api, &id).await;
        if events.iter().any(|e| {
            e["event"]["event"] == "step_started" && e["event"]["step"].as_str() == Some("deploy")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never reached its deploy: {events:?}\n{}",
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let (s, body) = api.post(&format!("/api/runs/{id}/cancel"), json!({})).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.to_string()
            .contains("its deploy is in progress: it will finish or roll back"),
        "the answer says why the run cannot be cancelled now: {body}"
    );
    let run = api.wait_run(&id, &rig).await;
    // A first install that fails has no release to roll back to: `failed`, never `cancelled`.
    assert!(
        run["state"] == "failed" || run["state"] == "rolled_back",
        "the deploy ran to its deadline and failed (not cancelled): {run}\n{}",
        rig.log()
    );
    let text = serde_json::to_string(&events_of(&api, &id).await).unwrap();
    assert!(
        text.contains("not ready"),
        "the deploy said why it failed: {text}"
    );
}
