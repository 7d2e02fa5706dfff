//! `berth serve` against hostile pushes and senders (issue 12): the server config, not the
//! pushed commit, decides where a repository deploys; protected environments wait for a
//! deployer; a replayed push cannot take an environment back; webhook bodies and the number
//! of unauthenticated requests are bounded. The real binary, a real bare repository with its
//! signing hook, the real engine and cluster of the test environment.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_cluster::ObjectKey;
use berth_testkit::TestContext;
use berth_types::Secret;
use serde_json::{Value, json};

use crate::common::git;
use crate::serve::{Api, HOOK_SECRET, Rig, github_push, live_image, send_hook};

fn sign(body: &[u8]) -> String {
    berth_hooks::webhook::github_signature(&Secret::new(HOOK_SECRET), body)
}

/// Commits what changed in the working clone on `branch` and pushes that branch (the hook
/// sends its webhook); the clone is back on main afterwards. Returns the commit.
fn push_branch(rig: &Rig, branch: &str, message: &str, edit: impl FnOnce(&Path)) -> String {
    git(&rig.work, &["checkout", "-q", "-B", branch]);
    edit(&rig.work);
    git(&rig.work, &["add", "-A"]);
    git(&rig.work, &["commit", "-q", "-m", message]);
    let out = Command::new("git")
        .arg("-C")
        .arg(&rig.work)
        .args(["push", "-q", "origin", branch])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = Command::new("git")
        .arg("-C")
        .arg(&rig.work)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    git(&rig.work, &["checkout", "-q", "main"]);
    String::from_utf8(head.stdout).unwrap().trim().to_string()
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

async fn runs_of(api: &Api, commit: &str) -> Vec<Value> {
    let (_, runs) = api.get("/api/runs?repository=hello&limit=1000").await;
    runs.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["commit"] == commit)
        .cloned()
        .collect()
}

/// The run's state once it is no longer `queued` (a held run is `awaiting_approval`).
async fn state_of(api: &Api, id: &str) -> Value {
    let (s, run) = api.get(&format!("/api/runs/{id}")).await;
    assert_eq!(s, 200, "{run}");
    run
}

#[tokio::test]
async fn a_feature_branch_push_cannot_deploy_by_naming_its_branch_in_berth_yaml() {
    let ctx = TestContext::new("serve-branch").await;
    let rig = Rig::new(&ctx, None, "");
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));

    // The default branch deploys (the server config says nothing about this repository).
    let first = rig.push("from main");
    let run = api.wait_run(&api.run_for(&first).await, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    let image = live_image(&ctx).await;

    // A feature branch whose berth.yaml claims the environment for itself.
    let feature = push_branch(&rig, "feature", "take over dev", |work| {
        replace_in(&work.join("berth.yaml"), "branch: main", "branch: feature");
        std::fs::write(work.join("web/index.html"), "<h1>feature</h1>\n").unwrap();
    });
    let mut body: Value = serde_json::from_slice(&github_push(&feature)).unwrap();
    body["ref"] = json!("refs/heads/feature");
    let body = serde_json::to_vec(&body).unwrap();
    let (s, answer) = send_hook(&rig, "feature-by-hand", &body, Some(sign(&body))).await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["result"], "nothing to run", "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("branch `feature` may deploy no environment")
            && message.contains("`main` or `master`")
            && message.contains("berth-serve.yaml:"),
        "the answer says what the server allows and where to change it: {answer}"
    );
    // Neither that delivery nor the hook's own one queued anything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        runs_of(&api, &feature).await.is_empty(),
        "a run for the feature commit: {:?}\n{}",
        runs_of(&api, &feature).await,
        rig.log()
    );
    assert_eq!(live_image(&ctx).await, image, "dev still runs main's build");

    // A deployer asking the API for the same is told no at once.
    let deployer = rig.token(&ctx, None, "deployer", "deployer");
    let (s, body) = Api::new(&rig, Some(&deployer))
        .post(
            "/api/repositories/hello/runs",
            json!({"branch": "feature", "environment": "dev"}),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("branch `feature` may not deploy environment `dev`")),
        "{body}"
    );
}

#[tokio::test]
async fn a_pushed_berth_yaml_cannot_move_a_pinned_environment_and_protected_pushes_wait_for_a_deployer()
 {
    let ctx = TestContext::new("serve-pinned").await;
    let elsewhere = TestContext::new("serve-pinned-other").await;
    let rig = Rig::new(&ctx, None, "");
    let config = std::fs::read_to_string(&rig.config).unwrap()
        + &format!(
            "    environments:\n      - name: dev\n        branches: [main]\n        namespace: {}\n        protected: true\n",
            ctx.namespace
        );
    std::fs::write(&rig.config, config).unwrap();
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let deployer = rig.token(&ctx, None, "deployer", "deployer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));
    let as_deployer = Api::new(&rig, Some(&deployer));
    let deployment = ObjectKey::new("apps/v1", "Deployment", Some(&ctx.namespace), "hello");

    // A push into the protected environment is held.
    let first = rig.push("needs approval");
    let id = api.run_for(&first).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let run = state_of(&api, &id).await;
    assert_eq!(run["state"], "awaiting_approval", "{run}\n{}", rig.log());
    assert!(
        ctx.cluster.get(&deployment).await.unwrap().is_none(),
        "nothing deployed before the approval"
    );
    let (s, page) = as_deployer.text(&format!("/runs/{id}")).await;
    assert_eq!(s, 200);
    assert!(
        page.contains(&format!("action=\"/runs/{id}/approve\""))
            && page.contains("awaiting_approval"),
        "the run page offers a deployer the approval: {page}"
    );
    let (s, body) = api
        .post(&format!("/api/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, 403, "a viewer cannot approve: {body}");
    let (s, body) = as_deployer
        .post(&format!("/api/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    assert!(
        run["note"]
            .as_str()
            .is_some_and(|n| n.contains("approved by deployer")),
        "{run}"
    );
    let image = live_image(&ctx).await;

    // A push whose berth.yaml moves the environment to another namespace: refused, even
    // once approved, with what the server allows.
    replace_in(
        &rig.work.join("berth.yaml"),
        &format!("namespace: {}", ctx.namespace),
        &format!("namespace: {}", elsewhere.namespace),
    );
    let moved = rig.push("move dev elsewhere");
    let id = api.run_for(&moved).await;
    let (s, body) = as_deployer
        .post(&format!("/api/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "failed", "{run}\n{}", rig.log());
    let note = run["note"].as_str().unwrap_or_default();
    assert!(
        note.contains(&format!("pins it to `{}`", ctx.namespace))
            && note.contains("berth-serve.yaml:"),
        "{run}"
    );
    let other = ObjectKey::new("apps/v1", "Deployment", Some(&elsewhere.namespace), "hello");
    assert!(
        elsewhere.cluster.get(&other).await.unwrap().is_none(),
        "nothing deployed into the namespace berth.yaml named"
    );

    // A rejected run never runs.
    replace_in(
        &rig.work.join("berth.yaml"),
        &format!("namespace: {}", elsewhere.namespace),
        &format!("namespace: {}", ctx.namespace),
    );
    std::fs::write(rig.work.join("web/index.html"), "<h1>rejected</h1>\n").unwrap();
    let rejected = rig.push("reject me");
    let id = api.run_for(&rejected).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state_of(&api, &id).await["state"], "awaiting_approval");
    let (s, body) = as_deployer
        .post(&format!("/api/runs/{id}/reject"), json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    let run = state_of(&api, &id).await;
    assert_eq!(run["state"], "cancelled", "{run}");
    assert!(
        run["note"]
            .as_str()
            .is_some_and(|n| n.contains("rejected by deployer")),
        "{run}"
    );
    let (s, body) = as_deployer
        .post(&format!("/api/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, 409, "a rejected run cannot be approved: {body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live_image(&ctx).await, image, "the approved build is live");
}

#[tokio::test]
async fn a_replayed_push_of_an_older_commit_does_not_take_the_environment_back() {
    let ctx = TestContext::new("serve-replay").await;
    let rig = Rig::new(&ctx, None, "");
    let deployer = rig.token(&ctx, None, "deployer", "deployer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&deployer));

    let old = rig.push("old");
    let run = api.wait_run(&api.run_for(&old).await, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    let old_image = live_image(&ctx).await;
    std::fs::write(rig.work.join("web/index.html"), "<h1>new</h1>\n").unwrap();
    let new = rig.push("new");
    let run = api.wait_run(&api.run_for(&new).await, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    let new_image = live_image(&ctx).await;
    assert_ne!(old_image, new_image);

    // The old push, captured and sent again under a delivery id never seen: the signature
    // holds (the id is not signed), the run is queued, and refused before it deploys.
    let body = github_push(&old);
    let (s, answer) = send_hook(&rig, "replayed-under-a-new-id", &body, Some(sign(&body))).await;
    assert_eq!(s, 202, "{answer}");
    let id = answer["runs"][0].as_str().unwrap().to_string();
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "failed", "{run}\n{}", rig.log());
    let note = run["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("is not a descendant of") && note.contains("/api/repositories/hello/runs"),
        "{run}"
    );
    assert_eq!(
        live_image(&ctx).await,
        new_image,
        "the newer build stays live"
    );

    // A deployer can still go back on purpose.
    let (s, queued) = api
        .post(
            "/api/repositories/hello/runs",
            json!({"commit": old, "environment": "dev"}),
        )
        .await;
    assert_eq!(s, 202, "{queued}");
    let run = api.wait_run(&queued["id"].to_string(), &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    assert_eq!(
        live_image(&ctx).await,
        old_image,
        "forced back by a deployer"
    );
}

/// Sends `head` (a request line and headers, without the blank line) and `body`, and returns
/// the connection.
fn raw_request(port: u16, head: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("{head}\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    s.write_all(body).unwrap();
    s.flush().unwrap();
    s
}

/// The response's status line and headers, if one arrives within `wait`.
fn response_within(s: &mut TcpStream, wait: Duration) -> Option<String> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (!got.is_empty()).then(|| String::from_utf8_lossy(&got).to_string())
}

#[tokio::test]
async fn webhook_bodies_are_capped_before_reading_and_anonymous_senders_cannot_take_every_slot() {
    let ctx = TestContext::new("serve-flood").await;
    let rig = Rig::new(&ctx, None, "");
    let _server = rig.serve(&ctx, None);
    let port = rig.port;
    let post = |path: &str, length: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: d-{length}\r\nContent-Type: application/json\r\nContent-Length: {length}"
        )
    };

    // An unknown repository: answered at once, the announced 10 MiB never awaited.
    let mut s = raw_request(port, &post("/hooks/nope", 10 << 20), b"{");
    let answer = response_within(&mut s, Duration::from_secs(3));
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 404")),
        "{answer:?}"
    );
    // A known one announcing more than the cap: refused before reading.
    let mut s = raw_request(port, &post("/hooks/hello", 2 << 20), b"{");
    let answer = response_within(&mut s, Duration::from_secs(3));
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 413")),
        "{answer:?}"
    );
    // A correctly signed push padded past the cap: refused, nothing queued.
    let mut padded: Value =
        serde_json::from_slice(&github_push("0123456789abcdef0123456789abcdef01234567")).unwrap();
    padded["padding"] = json!("x".repeat(berth_server::webhooks::MAX_BODY));
    let padded = serde_json::to_vec(&padded).unwrap();
    let (s, answer) = send_hook(&rig, "padded", &padded, Some(sign(&padded))).await;
    assert_eq!(s, 413, "{answer}");

    // Slow senders holding every slot: the next request is told to come back.
    let slots = berth_server::config::DEFAULT_WEBHOOK_CONCURRENCY;
    let mut held: Vec<TcpStream> = (0..slots)
        .map(|_| raw_request(port, &post("/hooks/hello", 1000), b"{\"ref\":"))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = reqwest::Client::new()
        .post(rig.url("/hooks/hello"))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "one-too-many")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "{:?}", r.text().await);
    assert!(r.headers().contains_key("retry-after"));
    // They are cut off after the body deadline, and the door opens again.
    for s in &mut held {
        let answer = response_within(
            s,
            berth_server::webhooks::BODY_DEADLINE + Duration::from_secs(5),
        );
        assert!(
            answer
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 408")),
            "{answer:?}"
        );
    }
    let (s, answer) = send_hook(&rig, "after-the-flood", b"{}", None).await;
    assert_eq!(s, 401, "an unsigned request is judged again: {answer}");
}
