//! `berth serve` end to end: the real binary on a free port, a real bare git repository whose
//! `post-receive` hook sends GitHub's signed push payload, the real engine deploying into the
//! test environment — and real Chromium over WebDriver for the web UI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_cluster::ObjectKey;
use berth_testkit::TestContext;
use berth_types::Secret;
use serde_json::{Value, json};

use crate::common::{copy_dir, git};

pub(crate) const HOOK_SECRET: &str = "hook-secret-5f2c9e1d7a";
const RUN_WAIT: Duration = Duration::from_secs(420);
const GIT_TOKEN: &str = "git-token-8d41b7c0e3";

/// A project in a working clone, a bare repository with the hook, a data directory.
pub(crate) struct Rig {
    pub(crate) work: PathBuf,
    pub(crate) bare: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) store: PathBuf,
    pub(crate) port: u16,
    pub(crate) config: PathBuf,
    /// Extra environment for every `berth serve` command (set after the rig's own).
    pub(crate) env: Vec<(String, String)>,
    root: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::env::var_os("BERTH_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Rig {
    /// examples/hello deployed into the test's namespace, pushed through a bare repository
    /// whose post-receive hook signs and sends GitHub's payload to the server. `database`:
    /// None for SQLite in the data directory.
    pub(crate) fn new(ctx: &TestContext, database: Option<&str>, extra_config: &str) -> Rig {
        let root =
            std::env::temp_dir().join(format!("berth-serve-{}", berth_testkit::unique_suffix()));
        let work = root.join("work");
        let bare = root.join("hello.git");
        let data = root.join("data");
        let store = root.join("store");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello"),
            &work,
        );
        let image = format!("{}/web", ctx.repository);
        for f in ["berth.yaml", "k8s/app.yaml"] {
            let p = work.join(f);
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("127.0.0.1:15000/examples/hello-web", &image)
                .replace("namespace: hello", &format!("namespace: {}", ctx.namespace));
            std::fs::write(p, text).unwrap();
        }
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "first <b>commit</b>"]);
        let out = Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare)
            .output()
            .unwrap();
        assert!(out.status.success());
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let port = free_port();
        berth_hooks::post_receive::install(
            &bare,
            &berth_hooks::post_receive::Target {
                url: format!("http://127.0.0.1:{port}/hooks/hello"),
                secret: Secret::new(HOOK_SECRET),
                full_name: Some("team/hello".into()),
                clone_url: None,
            },
        )
        .unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let db = if database.is_some() {
            "database: { env: BERTH_TEST_SERVE_DB }\n"
        } else {
            ""
        };
        let config = root.join("berth-serve.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\n{db}{extra_config}repositories:\n  - name: hello\n    url: {}\n    webhook: {{ provider: github, secret_env: BERTH_TEST_HOOK_SECRET }}\n",
                data.display(),
                bare.display()
            ),
        )
        .unwrap();
        Rig {
            work,
            bare,
            data,
            store,
            port,
            config,
            env: Vec::new(),
            root,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn command(&self, ctx: &TestContext, database: Option<&str>) -> Command {
        let mut c = ctx.env.berth(env!("CARGO_BIN_EXE_berth").as_ref());
        c.env("BERTH_TEST_GIT_TOKEN", GIT_TOKEN);
        c.env("BERTH_TEST_HOOK_SECRET", HOOK_SECRET)
            .env("BERTH_STORE", &self.store)
            .env("BERTH_SERVE_CONFIG", &self.config);
        if let Some(d) = database {
            c.env("BERTH_TEST_SERVE_DB", d).env("BERTH_DATABASE_URL", d);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `berth serve token create NAME --role ROLE`: the plaintext token.
    pub(crate) fn token(
        &self,
        ctx: &TestContext,
        database: Option<&str>,
        name: &str,
        role: &str,
    ) -> String {
        let out = self
            .command(ctx, database)
            .args(["serve", "token", "create", name, "--role", role])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Starts `berth serve` and waits until it listens.
    pub(crate) fn serve(&self, ctx: &TestContext, database: Option<&str>) -> Served {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("serve.log"))
            .unwrap();
        let mut child = self
            .command(ctx, database)
            .args(["-v", "serve"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.starts_with("listening on ") => break,
                Ok(_) => {}
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("berth serve exited with {status}: {}", self.log());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "berth serve did not listen in 30s: {}",
                        self.log()
                    );
                }
            }
        }
        Served { child }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("serve.log")).unwrap_or_default()
    }

    /// Commits everything in the working clone and pushes it (the hook sends the webhook).
    pub(crate) fn push(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args(["push", "-q", "origin", "main"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let head = Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8(head.stdout).unwrap().trim().to_string()
    }
}

/// A running `berth serve`; SIGKILLed on drop.
pub(crate) struct Served {
    pub(crate) child: Child,
}

impl Served {
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An API client with a token.
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub(crate) fn new(rig: &Rig, token: Option<&str>) -> Api {
        berth_testkit::init_crypto();
        Api {
            http: reqwest::Client::new(),
            base: rig.url(""),
            token: token.map(str::to_string),
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn text(&self, path: &str) -> (u16, String) {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until run `id` reaches a final state; returns the run.
    pub(crate) async fn wait_run(&self, id: &str, rig: &Rig) -> Value {
        let deadline = Instant::now() + RUN_WAIT;
        loop {
            let (s, run) = self.get(&format!("/api/runs/{id}")).await;
            assert_eq!(s, 200, "{run}");
            let state = run["state"].as_str().unwrap_or("").to_string();
            if !matches!(state.as_str(), "queued" | "running") {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} still {state} after {RUN_WAIT:?}\n{}",
                rig.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until a run for `commit` exists; returns its id.
    pub(crate) async fn run_for(&self, commit: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, runs) = self.get("/api/runs?repository=hello").await;
            if let Some(r) = runs
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["commit"] == commit)
            {
                return r["id"].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no run for {commit} 30s after the push: {runs}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The example's Deployment `hello` in the test's namespace, if there is one.
pub(crate) async fn hello_deployment(ctx: &TestContext) -> Option<Value> {
    ctx.cluster
        .get(&ObjectKey::new(
            "apps/v1",
            "Deployment",
            Some(&ctx.namespace),
            "hello",
        ))
        .await
        .unwrap()
}

pub(crate) async fn live_image(ctx: &TestContext) -> String {
    let d = hello_deployment(ctx).await.expect("the Deployment exists");
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every file under `dir`, as bytes, searched for `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                // The run worktrees are checkouts of the repository: not the store.
                if !p.ends_with("git") && !p.ends_with("views") && !p.ends_with("work") {
                    stack.push(p);
                }
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(p);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_push_deploys_through_the_server_and_a_bad_commit_rolls_back() {
    let ctx = TestContext::new("serve-e2e").await;
    let rig = Rig::new(&ctx, None, "");
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));

    // A push: the hook sends the signed payload, the server queues, builds, deploys.
    let first = rig.push("deploy me");
    let id = api.run_for(&first).await;
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    assert_eq!(run["trigger"]["kind"], "webhook");
    let built = run["result"]["outcome"]["built"]["web"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"))
        .to_string();
    assert_eq!(
        live_image(&ctx).await,
        built,
        "the Deployment runs the digest the server built"
    );
    let (_, events) = api.get(&format!("/api/runs/{id}/events")).await;
    let steps: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["event"] == "step_started")
        .filter_map(|e| e["event"]["step"].as_str())
        .collect();
    assert!(
        ["fetch", "checkout", "render", "deploy"]
            .iter()
            .all(|s| steps.contains(s))
            && steps.iter().any(|s| s.ends_with("build")),
        "{steps:?}"
    );
    assert_eq!(
        steps.iter().filter(|s| **s == "deploy").count(),
        1,
        "one deploy stage: {steps:?}"
    );

    // The API shows the environment with the digest.
    let (s, envs) = api.get("/api/repositories/hello/environments").await;
    assert_eq!(s, 200, "{envs}");
    let digest = built.split_once('@').unwrap().1;
    assert_eq!(
        envs["environments"][0]["services"][0]["digest"], digest,
        "{envs}"
    );

    // A bad commit: pods crash-loop, the deploy rolls back, the run says why.
    let app = rig.work.join("k8s/app.yaml");
    let text = std::fs::read_to_string(&app).unwrap().replace(
        "      labels: {app: hello}\n",
        "      labels: {app: hello}\n      annotations: {berth.dev/simulate: crash-loop}\n",
    );
    std::fs::write(&app, text).unwrap();
    let bad = rig.push("<script>alert('crash')</script>");
    let id2 = api.run_for(&bad).await;
    let run2 = api.wait_run(&id2, &rig).await;
    assert_eq!(run2["state"], "rolled_back", "{run2}\n{}", rig.log());
    assert!(
        run2["result"]["diagnosis"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{run2}"
    );
    assert_eq!(
        live_image(&ctx).await,
        built,
        "the good digest is live again"
    );
    let (s, page) = api.text(&format!("/runs/{id2}")).await;
    assert_eq!(s, 200);
    assert!(page.contains("Deploy failed and was rolled back"), "{page}");
    let error = run2["result"]["error"].as_str().unwrap();
    assert!(error.contains("was rolled back to revision 1"), "{error}");
    assert!(
        page.contains("was rolled back to revision 1"),
        "the error is on the page: {page}"
    );
    let diagnosis = run2["result"]["diagnosis"].as_str().unwrap();
    let first_words: String = diagnosis
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == ' ')
        .collect();
    assert!(
        page.contains(&first_words),
        "the diagnosis is on the page: {first_words}"
    );

    // The dashboard shows the live digest; the commit message stays escaped.
    let (_, dash) = api.text("/").await;
    assert!(dash.contains(&digest[..19]), "{dash}");
    assert!(!dash.contains("<script>alert"), "escaped");

    // Secrets: neither the webhook secret nor the token is in the store or the API output.
    for secret in [HOOK_SECRET, viewer.as_str()] {
        let hits = files_containing(&rig.data, secret);
        assert!(hits.is_empty(), "a secret is stored in {hits:?}");
        for path in [
            format!("/api/runs/{id}/events"),
            format!("/api/runs/{id2}/events"),
            "/api/runs".to_string(),
        ] {
            let (_, body) = api.text(&path).await;
            assert!(!body.contains(secret), "a secret is in {path}");
        }
    }
}

/// A GitHub push payload for `after` on main, as the provider sends it.
pub(crate) fn github_push(after: &str) -> Vec<u8> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../berth-hooks/tests/fixtures/github-push.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    v["ref"] = json!("refs/heads/main");
    v["after"] = json!(after);
    v["head_commit"]["id"] = json!(after);
    serde_json::to_vec(&v).unwrap()
}

pub(crate) async fn send_hook(
    rig: &Rig,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(rig.url("/hooks/hello"))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", delivery)
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        r = r.header("X-Hub-Signature-256", s);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn rejected_webhooks_queue_nothing_and_roles_are_checked_on_every_route() {
    let ctx = TestContext::new("serve-security").await;
    let rig = Rig::new(&ctx, None, "");
    rig.push("first"); // into the bare repository; no server listens yet, the hook's POST fails
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let deployer = rig.token(&ctx, None, "deployer", "deployer");
    let admin = rig.token(&ctx, None, "admin", "admin");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));
    let count = || async {
        api.get("/api/runs?limit=1000")
            .await
            .1
            .as_array()
            .map_or(0, Vec::len)
    };
    let secret = Secret::new(HOOK_SECRET);
    let sign = |b: &[u8]| berth_hooks::webhook::github_signature(&secret, b);
    // A commit that does not exist: a queued run fails fast at fetch, never builds.
    let body = github_push("0123456789abcdef0123456789abcdef01234567");

    let cases: Vec<(&str, Vec<u8>, Option<String>, u16)> = vec![
        ("unsigned", body.clone(), None, 401),
        (
            "wrong signature",
            body.clone(),
            Some(sign(b"another body")),
            401,
        ),
        (
            "malformed signature",
            body.clone(),
            Some("sha256=zz".into()),
            401,
        ),
        (
            "malformed json",
            b"{\"ref\": ".to_vec(),
            Some(sign(b"{\"ref\": ")),
            400,
        ),
        (
            "oversized",
            vec![b' '; berth_server::webhooks::MAX_BODY + 10],
            None,
            413,
        ),
    ];
    for (i, (what, b, sig, want)) in cases.into_iter().enumerate() {
        let (s, answer) = send_hook(&rig, &format!("bad-{i}"), &b, sig).await;
        assert_eq!(s, want, "{what}: {answer}");
        assert!(
            !answer.to_string().contains(HOOK_SECRET),
            "{what}: the answer echoes the secret"
        );
        assert_eq!(count().await, 0, "{what}: nothing queued");
    }
    // The real thing is accepted, once; its replay is refused.
    let (s, answer) = send_hook(&rig, "good-1", &body, Some(sign(&body))).await;
    assert_eq!(s, 202, "{answer}");
    assert_eq!(count().await, 1);
    let (s, answer) = send_hook(&rig, "good-1", &body, Some(sign(&body))).await;
    assert_eq!(s, 409, "replayed: {answer}");
    assert_eq!(count().await, 1, "a replay queues nothing");
    let (s, _) = reqwest::Client::new()
        .post(rig.url("/hooks/nope"))
        .body("{}")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(s, 404);

    // Roles.
    let anon = Api::new(&rig, None);
    let as_deployer = Api::new(&rig, Some(&deployer));
    let as_admin = Api::new(&rig, Some(&admin));
    let bogus = Api::new(&rig, Some("not-a-token"));
    for path in ["/api/runs", "/api/repositories", "/api/tokens"] {
        assert_eq!(anon.get(path).await.0, 401, "{path} without a token");
        assert_eq!(bogus.get(path).await.0, 401, "{path} with an unknown token");
    }
    assert_eq!(api.get("/api/runs").await.0, 200);
    assert_eq!(
        api.post(
            "/api/repositories/hello/environments/dev/rollback",
            json!({})
        )
        .await
        .0,
        403,
        "viewer cannot roll back"
    );
    assert_eq!(
        api.post("/api/repositories/hello/runs", json!({})).await.0,
        403,
        "viewer cannot run"
    );
    let (s, rb) = as_deployer
        .post(
            "/api/repositories/hello/environments/dev/rollback",
            json!({"to": 1}),
        )
        .await;
    assert_eq!(s, 202, "deployer can roll back: {rb}");
    assert_eq!(
        as_deployer.get("/api/tokens").await.0,
        403,
        "tokens are admin-only"
    );
    assert_eq!(
        as_deployer
            .post("/api/tokens", json!({"name": "x", "role": "admin"}))
            .await
            .0,
        403
    );
    let (s, list) = as_admin.get("/api/tokens").await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert!(
        !list.to_string().contains(&viewer),
        "token list holds no tokens"
    );
    let (s, made) = as_admin
        .post("/api/tokens", json!({"name": "ci", "role": "viewer"}))
        .await;
    assert_eq!(s, 201, "{made}");
    let ci = Api::new(&rig, made["token"].as_str());
    assert_eq!(
        ci.get("/api/runs").await.0,
        200,
        "a new token works at once"
    );
    let r = reqwest::Client::new()
        .delete(rig.url("/api/tokens/ci"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        ci.get("/api/runs").await.0,
        401,
        "a revoked token is refused"
    );
    // Metrics need a token (`metrics: {anonymous: false}` is the default), and count the answers.
    assert_eq!(
        anon.text("/metrics").await.0,
        401,
        "/metrics is refused anonymously"
    );
    let metrics = reqwest::Client::new()
        .get(rig.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_webhooks_total{status=\"401\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_webhooks_total{status=\"409\"} 1"),
        "{metrics}"
    );
    // The UI sends a browser without a session to the sign-in page.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(rig.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
}

#[tokio::test]
async fn a_run_killed_with_the_server_is_interrupted_keeps_its_logs_and_reruns() {
    let ctx = TestContext::new("serve-restart").await;
    // One run at a time, and no superseding: the second push must wait, not replace.
    let rig = Rig::new(&ctx, None, "concurrency: 1\nsupersede: false\n");
    let deployer = rig.token(&ctx, None, "deployer", "deployer");
    let mut server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&deployer));

    let first = rig.push("first");
    let id = api.run_for(&first).await;
    // Wait until the run is building (it has logged something past the checkout).
    let deadline = Instant::now() + Duration::from_secs(120);
    let logged = loop {
        let (_, events) = api.get(&format!("/api/runs/{id}/events")).await;
        let events = events.as_array().cloned().unwrap_or_default();
        if events.iter().any(|e| {
            e["event"]["step"]
                .as_str()
                .is_some_and(|s| s.ends_with("build"))
        }) {
            break events.len();
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never started building: {}",
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A webhook while the run is active: queued behind it.
    std::fs::write(rig.work.join("web/index.html"), "<h1>second</h1>\n").unwrap();
    let second = rig.push("second");
    let id2 = api.run_for(&second).await;
    // A manual run queued behind both, then cancelled before it starts.
    let (s, third) = api
        .post("/api/repositories/hello/runs", json!({"commit": first}))
        .await;
    assert_eq!(s, 202, "{third}");
    let (s, cancelled) = api
        .post(&format!("/api/runs/{}/cancel", third["id"]), json!({}))
        .await;
    assert_eq!(s, 200, "{cancelled}");
    let (_, third) = api.get(&format!("/api/runs/{}", third["id"])).await;
    assert_eq!(third["state"], "cancelled", "{third}");
    server.kill(); // SIGKILL, mid-build

    let _server = rig.serve(&ctx, None);
    // A new client: the old one's pooled connections went down with the server.
    let api = Api::new(&rig, Some(&deployer));
    let (_, run) = api.get(&format!("/api/runs/{id}")).await;
    assert_eq!(run["state"], "interrupted", "{run}");
    let (_, events) = api.get(&format!("/api/runs/{id}/events")).await;
    assert!(
        events.as_array().unwrap().len() >= logged,
        "its logs are kept: {events}"
    );
    // The webhook that arrived during the run was not lost: it runs now.
    let run2 = api.wait_run(&id2, &rig).await;
    assert_eq!(run2["state"], "succeeded", "{run2}\n{}", rig.log());
    // And the interrupted run can be re-run.
    let (s, rerun) = api.post(&format!("/api/runs/{id}/rerun"), json!({})).await;
    assert_eq!(s, 202, "{rerun}");
    assert_eq!(rerun["trigger"]["kind"], "rerun");
    let again = api.wait_run(&rerun["id"].to_string(), &rig).await;
    assert_eq!(again["state"], "succeeded", "{again}\n{}", rig.log());
    assert_eq!(again["commit"], first);
}

#[tokio::test]
async fn the_server_delivers_a_push_on_postgresql() {
    let ctx = TestContext::new("serve-pg").await;
    let db = berth_testkit::Postgres::fresh("serve").await;
    let url = db.url.clone();
    let rig = Rig::new(&ctx, Some(&url), "");
    let viewer = rig.token(&ctx, Some(&url), "viewer", "viewer");
    let _server = rig.serve(&ctx, Some(&url));
    let api = Api::new(&rig, Some(&viewer));
    let commit = rig.push("on postgres");
    let id = api.run_for(&commit).await;
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    let built = run["result"]["outcome"]["built"]["web"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(live_image(&ctx).await, built);
    // Nothing of it went to a SQLite file.
    assert!(
        !rig.data.join("berth.db").exists(),
        "the run was stored in PostgreSQL only"
    );
    let password = url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .and_then(|(u, _)| u.split_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    if password.len() > 5 {
        assert!(
            !rig.log().contains(&password),
            "the database password is not logged"
        );
    }
}

/// berth-git's smart-HTTP test server (`git http-backend` behind Basic auth) over the rig's
/// directory, so the server fetches with a token. Killed on drop.
struct GitHttp {
    child: Child,
    port: u16,
}

impl GitHttp {
    fn start(root: &Path) -> GitHttp {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth-git/tests/it/git_http_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root)
            .env("BERTH_TEST_GIT_USER", "git")
            .env("BERTH_TEST_GIT_TOKEN", GIT_TOKEN)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the smart-HTTP git server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the git HTTP server did not start: {line:?}"));
        GitHttp { child, port }
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Also the registry password: the run pushes to a private registry (htpasswd auth) with the
/// credentials of a docker config.json given through `--docker-config`; base images still come
/// from the shared registry's mirror.
#[tokio::test]
async fn git_tokens_and_webhook_secrets_never_reach_the_store_the_api_or_the_log() {
    let ctx = TestContext::new("serve-secrets").await;
    let mut rig = Rig::new(&ctx, None, "");
    // Fetch over smart HTTP with a token instead of the local path.
    let git = GitHttp::start(rig.bare.parent().unwrap());
    let config = std::fs::read_to_string(&rig.config).unwrap().replace(
        &format!("    url: {}\n", rig.bare.display()),
        &format!(
            "    url: http://127.0.0.1:{}/hello.git\n    credentials: {{ username: git, token_env: BERTH_TEST_GIT_TOKEN }}\n",
            git.port
        ),
    );
    assert!(config.contains("token_env"), "{config}");
    std::fs::write(&rig.config, config).unwrap();
    // Push to a registry that wants a password, given in a docker config.json.
    let password = format!("registry-pw-{}", berth_testkit::unique_suffix());
    let private = berth_testkit::OwnRegistry::start_with_auth("pusher", &password);
    let image = format!("{}/hello/web", private.host);
    for f in ["berth.yaml", "k8s/app.yaml"] {
        let p = rig.work.join(f);
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace(&format!("{}/web", ctx.repository), &image)
            // The registry wants a login to pull too: berth makes the pull secret from its
            // push login (refused before apply otherwise).
            .replace(
                "deploy: { timeout: 2m }",
                "deploy: { timeout: 2m, pull-secret: hello-pull }",
            );
        assert!(text.contains(&image), "{f}: {text}");
        std::fs::write(p, text).unwrap();
    }
    let docker_config = rig.root.join("docker-config.json");
    std::fs::write(
        &docker_config,
        json!({"auths": {private.host.clone(): {"username": "pusher", "password": password}}})
            .to_string(),
    )
    .unwrap();
    rig.env.push((
        "BERTH_DOCKER_CONFIG".into(),
        docker_config.display().to_string(),
    ));
    rig.env.push((
        "BERTH_INSECURE_REGISTRIES".into(),
        format!("{},{}", ctx.env.registry_host(), private.host),
    ));
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));
    let commit = rig.push("over http");
    let id = api.run_for(&commit).await;
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(
        run["state"],
        "succeeded",
        "the token fetched and the password pushed: {run}\n{}",
        rig.log()
    );
    let built = run["result"]["outcome"]["built"]["web"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"));
    assert!(
        built.starts_with(&format!("{image}@sha256:")),
        "pushed to the private registry: {built}"
    );
    // The image is there, behind the password.
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds"])
        .arg(format!("pusher:{password}"))
        .arg(format!("docker://{built}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rig.data.join("berth.db").is_file(),
        "the store is SQLite in the data dir"
    );
    // The scan finds the password where it belongs, the config.json outside the data dir.
    assert_eq!(
        files_containing(&rig.root, &password),
        vec![docker_config.clone()],
        "the scan sees the password only in the docker config"
    );
    for secret in [GIT_TOKEN, HOOK_SECRET, viewer.as_str(), password.as_str()] {
        // Every file of the data dir: berth.db, its -wal and -shm.
        let hits = files_containing(&rig.data, secret);
        assert!(hits.is_empty(), "a secret is stored in {hits:?}");
        assert!(
            !rig.log().contains(secret),
            "a secret is in the server's log"
        );
        for path in [
            format!("/api/runs/{id}/events"),
            format!("/api/runs/{id}"),
            "/api/runs".to_string(),
            "/api/repositories".to_string(),
            "/api/repositories/hello/environments".to_string(),
            format!("/runs/{id}"),
            "/".to_string(),
        ] {
            let (s, body) = api.text(&path).await;
            assert_eq!(s, 200, "{path}: {body}");
            assert!(!body.contains(secret), "a secret is in {path}");
        }
    }
}

/// A host that cannot send webhooks: the repository is polled, the bare repository has no
/// hook, and each push still produces a run (trigger `poll`) within the poll interval.
#[tokio::test]
async fn a_polled_repository_without_a_webhook_runs_each_push() {
    let ctx = TestContext::new("serve-poll").await;
    let rig = Rig::new(&ctx, None, "");
    let hook = rig.bare.join("hooks/post-receive");
    assert!(
        hook.is_file(),
        "the rig installs a hook: {}",
        hook.display()
    );
    std::fs::remove_file(&hook).unwrap();
    let config = std::fs::read_to_string(&rig.config).unwrap().replace(
        "    webhook: { provider: github, secret_env: BERTH_TEST_HOOK_SECRET }\n",
        "    poll: 2s\n",
    );
    assert!(
        config.contains("poll: 2s") && !config.contains("webhook"),
        "{config}"
    );
    std::fs::write(&rig.config, config).unwrap();
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));
    let (_, repos) = api.get("/api/repositories").await;
    assert_eq!(repos[0]["poll_seconds"], 2, "{repos}");

    // The repository was empty when the server started: the first push is seen by a poll.
    let first = rig.push("polled");
    let id = api.run_for(&first).await;
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    assert_eq!(run["trigger"]["kind"], "poll", "{run}");
    let built = run["result"]["outcome"]["built"]["web"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"))
        .to_string();
    assert_eq!(live_image(&ctx).await, built);

    // A second push, again only through polling, and the first commit is not run again.
    std::fs::write(rig.work.join("web/index.html"), "<h1>polled again</h1>\n").unwrap();
    let second = rig.push("polled again");
    let id2 = api.run_for(&second).await;
    let run2 = api.wait_run(&id2, &rig).await;
    assert_eq!(run2["state"], "succeeded", "{run2}\n{}", rig.log());
    assert_eq!(run2["trigger"]["kind"], "poll", "{run2}");
    assert_ne!(run2["result"]["outcome"]["built"]["web"], built.as_str());
    let (_, runs) = api.get("/api/runs?repository=hello").await;
    let for_first = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["commit"] == first.as_str())
        .count();
    assert_eq!(for_first, 1, "one run per polled commit: {runs}");
}

/// One run at a time and a run in progress: two more pushes to main queue behind it, the
/// older of them is superseded by the newer one the moment that is queued, and only the
/// newest deploys after the active run.
#[tokio::test]
async fn a_newer_push_supersedes_the_queued_older_one_while_a_run_is_active() {
    let ctx = TestContext::new("serve-supersede").await;
    let rig = Rig::new(&ctx, None, "concurrency: 1\n");
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));

    // The first commit builds slowly, so the run is still active when the others arrive.
    let dockerfile = rig.work.join("web/Dockerfile");
    let quick = std::fs::read_to_string(&dockerfile).unwrap();
    let slow = quick.replace("RUN mkdir -p /www\n", "RUN mkdir -p /www && sleep 20\n");
    assert_ne!(slow, quick);
    std::fs::write(&dockerfile, &slow).unwrap();
    let first = rig.push("slow");
    let id1 = api.run_for(&first).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, run) = api.get(&format!("/api/runs/{id1}")).await;
        if run["state"] == "running" {
            break;
        }
        assert_eq!(run["state"], "queued", "{run}\n{}", rig.log());
        assert!(
            Instant::now() < deadline,
            "run {id1} never started: {}",
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    std::fs::write(&dockerfile, &quick).unwrap();
    let second = rig.push("older");
    let id2 = api.run_for(&second).await;
    std::fs::write(rig.work.join("web/index.html"), "<h1>newest</h1>\n").unwrap();
    let third = rig.push("newer");
    let id3 = api.run_for(&third).await;

    let (_, run1) = api.get(&format!("/api/runs/{id1}")).await;
    assert_eq!(
        run1["state"], "running",
        "the first run is still active: {run1}"
    );
    let (_, run2) = api.get(&format!("/api/runs/{id2}")).await;
    assert_eq!(run2["state"], "superseded", "{run2}\n{}", rig.log());
    assert_eq!(run2["superseded_by"].to_string(), id3, "{run2}");
    let (_, run3) = api.get(&format!("/api/runs/{id3}")).await;
    assert_eq!(run3["state"], "queued", "behind the active run: {run3}");

    let run1 = api.wait_run(&id1, &rig).await;
    assert_eq!(run1["state"], "succeeded", "{run1}\n{}", rig.log());
    let run3 = api.wait_run(&id3, &rig).await;
    assert_eq!(run3["state"], "succeeded", "{run3}\n{}", rig.log());
    let built = run3["result"]["outcome"]["built"]["web"]
        .as_str()
        .unwrap_or_else(|| panic!("{run3}"));
    assert_eq!(live_image(&ctx).await, built, "the newest commit is live");
    let (_, run2) = api.get(&format!("/api/runs/{id2}")).await;
    assert_eq!(run2["state"], "superseded", "it never ran: {run2}");
    let (_, events) = api.get(&format!("/api/runs/{id2}/events")).await;
    assert!(
        !events
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["event"]["event"] == "step_started"),
        "the superseded run started no step: {events}"
    );
}

/// Build once, deploy many, through the API: a push deploys dev; a manual `prod` environment
/// is left alone until a deployer promotes dev to it, and then runs dev's digest, unbuilt.
#[tokio::test]
async fn promoting_through_the_api_deploys_the_source_environments_digest() {
    let ctx = TestContext::new("serve-promote-dev").await;
    let prod = TestContext::new("serve-promote-prod").await;
    let rig = Rig::new(&ctx, None, "");
    let cfg = rig.work.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!(
            "  - name: prod\n    namespace: {}\n    promotion: manual\n    from: dev\n",
            prod.namespace
        );
    std::fs::write(&cfg, text).unwrap();
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let deployer = rig.token(&ctx, None, "deployer", "deployer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&deployer));

    let commit = rig.push("two environments");
    let id = api.run_for(&commit).await;
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    // A webhook run's environment is chosen from the branch when it starts.
    assert_eq!(run["result"]["outcome"]["environment"], "dev", "{run}");
    let built = run["result"]["outcome"]["built"]["web"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"))
        .to_string();
    let deployment = ObjectKey::new("apps/v1", "Deployment", Some(&prod.namespace), "hello");
    assert!(
        prod.cluster.get(&deployment).await.unwrap().is_none(),
        "a manual environment is not deployed by a push"
    );

    // A viewer may not promote.
    let (s, body) = Api::new(&rig, Some(&viewer))
        .post(
            "/api/repositories/hello/environments/prod/promote",
            json!({"from": "dev"}),
        )
        .await;
    assert_eq!(s, 403, "{body}");

    let (s, queued) = api
        .post(
            "/api/repositories/hello/environments/prod/promote",
            json!({"from": "dev"}),
        )
        .await;
    assert_eq!(s, 202, "{queued}");
    assert_eq!(queued["trigger"]["kind"], "promote", "{queued}");
    assert_eq!(queued["trigger"]["from"], "dev", "{queued}");
    assert_eq!(queued["environment"], "prod", "{queued}");
    let promoted = api.wait_run(&queued["id"].to_string(), &rig).await;
    assert_eq!(promoted["state"], "succeeded", "{promoted}\n{}", rig.log());
    assert_eq!(
        promoted["result"]["outcome"]["namespace"],
        prod.namespace.as_str(),
        "{promoted}"
    );
    assert!(
        promoted["result"]["outcome"]["built"]
            .as_object()
            .is_none_or(|b| b.is_empty()),
        "nothing rebuilt: {promoted}"
    );
    assert_eq!(live_image(&prod).await, built, "prod runs dev's digest");
    assert_eq!(live_image(&ctx).await, built, "dev is unchanged");

    let (s, envs) = api.get("/api/repositories/hello/environments").await;
    assert_eq!(s, 200, "{envs}");
    let digest = built.split_once('@').unwrap().1;
    for name in ["dev", "prod"] {
        let env = envs["environments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {envs}"));
        assert_eq!(env["services"][0]["digest"], digest, "{name}: {envs}");
    }
}

/// Before: a repository could only get the host's network for its RUN steps through the
/// server's own `--network host`; with `build.network` in berth.yaml anyone who can push would
/// reach the server's loopback services (its database, the registry, the kubelet). The server
/// refuses it, and a Dockerfile's `RUN --network=host`, unless its configuration allows it for
/// that repository.
#[tokio::test]
async fn a_pushed_berth_yaml_gets_the_servers_network_only_when_the_server_allows_it() {
    let ctx = TestContext::new("serve-hostnet").await;
    let rig = Rig::new(&ctx, None, "");
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    // A service on the server's loopback that the RUN step asks for.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write as _;
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"loopback-service\n");
        }
    });
    let cfg = rig.work.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "    build:\n      context: web\n",
        "    build:\n      context: web\n      network: host\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let dockerfile = rig.work.join("web/Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap().replace(
        "RUN mkdir -p /www\n",
        &format!(
            "RUN mkdir -p /www && nc -w 3 127.0.0.1 {port} </dev/null | grep loopback-service\n"
        ),
    );
    std::fs::write(&dockerfile, text).unwrap();

    let server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));
    let refused = rig.push("ask for the host's network");
    let run = api.wait_run(&api.run_for(&refused).await, &rig).await;
    assert_eq!(run["state"], "failed", "{run}\n{}", rig.log());
    let error = run["result"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("berth.yaml:8:5: service `web`: berth.yaml asks for `build.network: host`, which this server does not allow"),
        "{run}"
    );
    assert!(error.contains("allow_host_network: true"), "{error}");
    assert!(error.contains("nothing was built"), "{error}");

    // Nor through the Dockerfile: `RUN --network=host` is refused the same way.
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, yaml.replace("      network: host\n", "")).unwrap();
    let text = std::fs::read_to_string(&dockerfile).unwrap().replace(
        "RUN mkdir -p /www &&",
        "RUN --network=host mkdir -p /www &&",
    );
    std::fs::write(&dockerfile, text).unwrap();
    let refused = rig.push("ask for it in the Dockerfile");
    let run = api.wait_run(&api.run_for(&refused).await, &rig).await;
    assert_eq!(run["state"], "failed", "{run}\n{}", rig.log());
    let error = run["result"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`RUN --network=host` asks for the build host's network, which this server does not allow"),
        "{run}"
    );
    std::fs::write(&cfg, yaml).unwrap();
    drop(server);

    // The operator allows it for this repository: the step (host network from berth.yaml and
    // from the Dockerfile) reaches the loopback service.
    let config = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        format!("{config}    allow_host_network: true\n"),
    )
    .unwrap();
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer)); // no kept-alive connection to the old server
    let allowed = rig.push("the same, allowed");
    let run = api.wait_run(&api.run_for(&allowed).await, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
}

/// The bug: `berth serve` wired the pipeline a second time and never ran an environment's
/// `data` step (the masked copy), which `berth run` does. Now both go through the one engine.
#[tokio::test]
async fn a_push_through_the_server_runs_the_environments_data_step_before_the_deploy() {
    use crate::copy::{Db, seed};

    let ctx = TestContext::new("serve-data").await;
    let mut rig = Rig::new(&ctx, None, "");
    let source = Db::new("servesrc");
    let target = Db::new("servedst");
    seed(&source, 20);
    let cfg = rig.work.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "    deploy: { timeout: 2m }\n",
        "    deploy: { timeout: 2m }\n    data:\n      copy:\n        from: production\n        \
         source-url-env: SERVE_SOURCE_DB\n        target-url-env: SERVE_TARGET_DB\n        \
         mask: { users.email: email, orders.customer_email: email, users.name: name }\n",
    );
    assert!(text.contains("SERVE_SOURCE_DB"), "{text}");
    // The environment the data comes from (only its database is used here).
    let text = format!(
        "{text}  - name: production\n    namespace: {}-prod\n    promotion: manual\n",
        ctx.namespace
    );
    std::fs::write(&cfg, text).unwrap();
    rig.env.push(("SERVE_SOURCE_DB".into(), source.url.clone()));
    rig.env.push(("SERVE_TARGET_DB".into(), target.url.clone()));
    rig.env.push((
        "BERTH_MASK_KEY".into(),
        "serve-data-step-masking-key".into(),
    ));
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));

    let commit = rig.push("a data step before the deploy");
    let id = api.run_for(&commit).await;
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    let (_, events) = api.get(&format!("/api/runs/{id}/events")).await;
    let text = events.to_string();
    assert!(
        text.contains("data: copied") && text.contains("masked cells"),
        "the run's events tell the data step: {text}"
    );
    let users = target.rows("users");
    assert_eq!(users.len(), 20, "every row copied");
    assert!(
        users
            .values()
            .all(|u| !u["email"].as_str().unwrap_or("").ends_with("@Example.org")),
        "emails masked: {users:?}"
    );
}

/// The token commands read only the store's part of serve.yaml: a token can be made in a shell
/// that lacks the webhook's secret, which `berth serve` itself still asks for by name.
#[test]
fn token_commands_need_only_the_stores_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serve.yaml");
    std::fs::write(
        &file,
        format!(
            "data_dir: {}\nrepositories:\n  - name: shop\n    url: /nowhere\n    webhook: {{ provider: github, secret_env: BERTH_TEST_UNSET_HOOK }}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let berth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .arg("--config")
            .arg(&file)
            .env_remove("BERTH_TEST_UNSET_HOOK")
            .env_remove("BERTH_DATABASE_URL")
            .env_remove("BERTH_SERVE_DATA_DIR")
            .output()
            .unwrap()
    };
    let out = berth(&["serve", "token", "create", "ci", "--role", "deployer"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().len() >= 32,
        "a token is printed"
    );
    let out = berth(&["serve", "token", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains("ci") && listed.contains("deployer"),
        "{listed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.path().join("data").join("berth.db").is_file(),
        "the token went to the file's data directory"
    );
    let out = berth(&["serve", "--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve starts without its webhook secret"
    );
    assert!(
        stderr.contains("`BERTH_TEST_UNSET_HOOK` is not set"),
        "{stderr}"
    );
}
