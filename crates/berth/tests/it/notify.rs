//! `environments[].notify` end to end: `berth run` of the bundled example on the real
//! cluster, telling a real HTTP receiver on loopback (a plain socket server in the test: what
//! berth sends is read byte for byte, not through a client library).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_testkit::TestContext;
use serde_json::{Value, json};

use crate::common::{Repo, git, hello_project};

pub(crate) const KEY: &str = "notify-key-3b9d0c1e";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub(crate) path: String,
    headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Got {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// The `event` of each webhook message, in the order they came.
pub(crate) fn events_of(hooks: &[Got]) -> Vec<String> {
    hooks
        .iter()
        .map(|g| g.json()["event"].as_str().unwrap().to_string())
        .collect()
}

/// What a receiver answers a request: status and JSON body.
type Answer = Arc<dyn Fn(&Got) -> (u16, String) + Send + Sync>;

fn ok() -> Answer {
    Arc::new(|_| (200, String::new()))
}

/// A loopback HTTP/1.1 server that records every request and answers 200.
pub(crate) struct Receiver {
    pub(crate) port: u16,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        Receiver::answering(ok())
    }

    /// A receiver listening from now on `port` (one a test kept free).
    pub(crate) fn listen_on(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port");
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || accept(listener, g, ok()));
        Receiver { port, got }
    }

    /// A receiver that answers each request with `answer`'s status and body.
    pub(crate) fn answering(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || accept(listener, g, answer));
        Receiver { port, got }
    }

    /// A receiver on a port that refuses connections for `down`, then listens.
    fn down_for(down: Duration) -> Receiver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let r = Receiver {
            port,
            got: got.clone(),
        };
        std::thread::spawn(move || {
            std::thread::sleep(down);
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port again");
            accept(listener, got, ok());
        });
        r
    }

    pub(crate) fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived to `path` (deliveries run beside the run, but
    /// `berth run` waits for them before it exits, so they are normally there already).
    fn wait_for(&self, path: &str, n: usize) -> Vec<Got> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let got: Vec<Got> = self.got().into_iter().filter(|g| g.path == path).collect();
            if got.len() >= n || Instant::now() > until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn accept(listener: TcpListener, got: Arc<Mutex<Vec<Got>>>, answer: Answer) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (status, body) = match read_request(&stream) {
            Some(g) => {
                let a = answer(&g);
                got.lock().unwrap().push(g);
                a
            }
            None => (400, String::new()),
        };
        let mut s = stream;
        let _ = s.write_all(
            format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}

fn read_request(stream: &TcpStream) -> Option<Got> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Got {
        path,
        headers,
        body,
    })
}

/// examples/hello in a git repository, its environment telling `notify` (YAML list items).
fn project(ctx: &TestContext, notify: &str) -> Repo {
    hello_project(ctx, "notify", |text| text + "    notify:\n" + notify)
}

fn berth_run(ctx: &TestContext, p: &Repo, env: &[(&str, String)]) -> (i32, String) {
    let mut cmd: Command = crate::common::berth(ctx.env);
    cmd.args(["run", "-n", &ctx.namespace, "-c"])
        .arg(p.config())
        .env("BERTH_STORE", &p.store);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Commits a release of the project whose pods crash-loop (on kwok): it is rolled back.
fn crash_loop(p: &Repo) {
    p.edit(
        "k8s/app.yaml",
        "      labels: {app: hello}\n",
        "      labels: {app: hello}\n      annotations: {berth.dev/simulate: crash-loop}\n",
    );
    git(&p.dir, &["commit", "-q", "-am", "crash"]);
}

/// `sha256=HEX` of `body` under KEY, computed by openssl, not by berth's code.
pub(crate) fn openssl_signature(body: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", KEY, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256={}", hex.split_whitespace().next().unwrap())
}

#[tokio::test]
async fn run_tells_each_receiver_once_per_event_signed_and_a_rollback_reaches_slack() {
    let ctx = TestContext::new("notify").await;
    let receiver = Receiver::start();
    let port = receiver.port;
    let p = project(
        &ctx,
        &format!(
            "      - webhook: {{ url: \"http://127.0.0.1:{port}/hook\", secret-env: BERTH_TEST_HOOK_KEY }}\n      - slack: {{ url-env: BERTH_TEST_SLACK_URL }}\n        on: [failed, rolled-back]\n"
        ),
    );
    let env = [
        ("BERTH_TEST_HOOK_KEY", KEY.to_string()),
        (
            "BERTH_TEST_SLACK_URL",
            format!("http://127.0.0.1:{port}/slack/T0/B0/tokenpart"),
        ),
    ];

    let (code, out) = berth_run(&ctx, &p, &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("tokenpart"),
        "the Slack URL read from the environment is never printed: {out}"
    );
    let hooks = receiver.wait_for("/hook", 2);
    let events = events_of(&hooks);
    assert_eq!(events, ["started", "succeeded"], "{hooks:#?}");
    let run_id = hooks[0].json()["run"].as_str().unwrap().to_string();
    for g in &hooks {
        let doc = g.json();
        assert_eq!(doc["run"], run_id.as_str(), "one run: {doc}");
        assert_eq!(doc["environment"], "dev");
        assert_eq!(doc["namespace"], ctx.namespace.as_str());
        assert_eq!(g.header("x-berth-event"), doc["event"].as_str().unwrap());
        assert_eq!(g.header("content-type"), "application/json");
        assert_eq!(
            g.header("x-berth-signature-256"),
            openssl_signature(&g.body),
            "signed over the exact body"
        );
    }
    assert_eq!(hooks[1].json()["revision"], 1);
    assert_ne!(
        hooks[0].header("x-berth-delivery"),
        hooks[1].header("x-berth-delivery")
    );
    assert!(
        receiver.wait_for("/slack/T0/B0/tokenpart", 0).is_empty(),
        "slack wants only failures"
    );

    // A release that crash-loops is rolled back: both receivers hear of it, once.
    crash_loop(&p);
    let (code, out) = berth_run(&ctx, &p, &env);
    assert_eq!(code, 1, "{out}");
    let hooks = receiver.wait_for("/hook", 4);
    let events = events_of(&hooks);
    assert_eq!(
        events,
        ["started", "succeeded", "started", "rolled-back"],
        "{hooks:#?}"
    );
    let rolled = hooks[3].json();
    assert_ne!(rolled["run"], run_id.as_str(), "a second run");
    assert_eq!(rolled["revision"], 1, "the revision live again");
    assert!(
        rolled["message"]
            .as_str()
            .unwrap()
            .contains("rolled back to revision 1"),
        "{rolled}"
    );
    let slack = receiver.wait_for("/slack/T0/B0/tokenpart", 1);
    assert_eq!(slack.len(), 1, "{slack:#?}");
    let text = slack[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("berth: run ")
            && text.contains(&format!("to dev ({})", ctx.namespace))
            && text.contains("was rolled back"),
        "{text}"
    );
    assert!(
        slack[0].header("x-berth-signature-256").is_empty(),
        "no key, no signature"
    );
}

#[tokio::test]
async fn a_receiver_down_when_the_run_starts_gets_the_event_when_it_is_back() {
    let ctx = TestContext::new("notify-down").await;
    let receiver = Receiver::down_for(Duration::from_secs(3));
    let p = project(
        &ctx,
        &format!(
            "      - webhook: {{ url: \"http://127.0.0.1:{}/hook\" }}\n",
            receiver.port
        ),
    );
    let (code, out) = berth_run(&ctx, &p, &[]);
    assert_eq!(code, 0, "{out}");
    let hooks = receiver.wait_for("/hook", 2);
    let events = events_of(&hooks);
    assert_eq!(
        events.iter().filter(|e| *e == "started").count(),
        1,
        "started arrives once, after the receiver is back: {hooks:#?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "succeeded").count(),
        1,
        "{hooks:#?}"
    );
    assert!(!out.contains("was not told"), "no delivery gave up: {out}");
}

#[tokio::test]
async fn a_receiver_whose_variable_is_unset_is_skipped_with_a_warning_and_the_run_goes_on() {
    let ctx = TestContext::new("notify-unset").await;
    let p = project(&ctx, "      - slack: { url-env: BERTH_TEST_UNSET_SLACK }\n");
    let (code, out) = berth_run(&ctx, &p, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("slack $BERTH_TEST_UNSET_SLACK is skipped")
            && out.contains("`BERTH_TEST_UNSET_SLACK` is not set"),
        "{out}"
    );
}

/// The server's runs notify too; a pushed berth.yaml may neither read the server's own
/// variables nor write a URL of its own (whoever can push writes it).
#[tokio::test]
async fn the_servers_runs_notify_only_through_its_berth_notify_variables() {
    use crate::serve::{Api, Rig};
    let ctx = TestContext::new("notify-serve").await;
    let receiver = Receiver::start();
    let port = receiver.port;
    let mut rig = Rig::new(&ctx, None, "");
    let cfg = rig.work.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "    deploy: { timeout: 2m }\n",
        &format!(
            "    deploy: {{ timeout: 2m }}\n    notify:\n      - slack: {{ url-env: BERTH_NOTIFY_TEST_SLACK }}\n      - webhook: {{ url: \"http://127.0.0.1:{port}/literal\" }}\n      - webhook: {{ url-env: BERTH_TEST_SERVER_SECRET_URL }}\n"
        ),
    );
    assert!(text.contains("BERTH_NOTIFY_TEST_SLACK"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    rig.env.push((
        "BERTH_NOTIFY_TEST_SLACK".into(),
        format!("http://127.0.0.1:{port}/slack"),
    ));
    rig.env.push((
        "BERTH_TEST_SERVER_SECRET_URL".into(),
        format!("http://127.0.0.1:{port}/secret"),
    ));
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));

    let commit = rig.push("notify from the server");
    let id = api.run_for(&commit).await;
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    let slack = receiver.wait_for("/slack", 2);
    let texts: Vec<String> = slack
        .iter()
        .map(|g| g.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].ends_with(" started") && texts[1].contains("succeeded: revision 1 is live"),
        "{texts:?}"
    );
    assert!(
        texts.iter().all(|t| t.contains(&id)),
        "the server's run id: {texts:?}"
    );
    let paths: Vec<String> = receiver.got().into_iter().map(|g| g.path).collect();
    assert!(
        paths.iter().all(|p| p == "/slack"),
        "neither the literal URL nor the server's own variable was used: {paths:?}"
    );
    let (_, events) = api.get(&format!("/api/runs/{id}/events")).await;
    let events = events.to_string();
    assert!(
        events.contains("`BERTH_TEST_SERVER_SECRET_URL`: on berth serve a repository may only name variables starting with BERTH_NOTIFY_"),
        "{events}"
    );
    assert!(
        events.contains("comes from a variable the server sets"),
        "{events}"
    );
}

#[tokio::test]
async fn the_servers_messages_wait_in_its_store_for_a_receiver_down_across_a_kill_and_restart() {
    use crate::serve::{Api, Rig};
    let ctx = TestContext::new("notify-outbox").await;
    // A port nothing listens on until the receiver starts, after the server's restart.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut rig = Rig::new(&ctx, None, "");
    let cfg = rig.work.join("berth.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "    deploy: { timeout: 2m }\n",
        "    deploy: { timeout: 2m }\n    notify:\n      - webhook: { url-env: BERTH_NOTIFY_TEST_HOOK, secret-env: BERTH_NOTIFY_TEST_KEY }\n",
    );
    std::fs::write(&cfg, text).unwrap();
    rig.env.push((
        "BERTH_NOTIFY_TEST_HOOK".into(),
        format!("http://127.0.0.1:{port}/hook"),
    ));
    rig.env.push(("BERTH_NOTIFY_TEST_KEY".into(), KEY.into()));
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let mut server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&viewer));
    let commit = rig.push("told later");
    let id = api.run_for(&commit).await;
    let run = api.wait_run(&id, &rig).await;
    assert_eq!(run["state"], "succeeded", "{run}\n{}", rig.log());
    // A few attempts fail while nothing listens; then the server dies as under kill -9.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.kill();
    let receiver = Receiver::listen_on(port);
    let _server = rig.serve(&ctx, None);
    let until = Instant::now() + Duration::from_secs(60);
    let mut hooks = Vec::new();
    while hooks.len() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        hooks = receiver.got();
    }
    assert_eq!(
        events_of(&hooks),
        ["started", "succeeded"],
        "the restarted server sent what its store kept: {hooks:#?}\n{}",
        rig.log()
    );
    for g in &hooks {
        assert_eq!(
            g.header("x-berth-signature-256"),
            openssl_signature(&g.body)
        );
        assert!(
            g.header("x-berth-delivery")
                .starts_with(&format!("{}.", id.trim_matches('"'))),
            "{g:?}"
        );
        assert_eq!(g.json()["run"], id.trim_matches('"'), "{g:?}");
    }
    // Delivered once: nothing more comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.got().len(), 2, "{:#?}", receiver.got());
    assert!(
        !rig.log().contains(&format!("127.0.0.1:{port}")),
        "the receiver's URL is never logged: {}",
        rig.log()
    );
}

/// Answers as GitHub's REST API does for statuses (201) and deployments (201 with an id), and
/// refuses (422, as GitHub's "Validation Failed") a request whose shape its documentation does
/// not allow: this stand-in checks what berth sends, the test then reads what came.
fn github_answer() -> Answer {
    let next = Arc::new(Mutex::new(4242u64));
    Arc::new(move |g: &Got| {
        let body: Value = serde_json::from_slice(&g.body).unwrap_or(Value::Null);
        let headers_ok = g.header("authorization") == "Bearer gh-token-for-test"
            && g.header("accept") == "application/vnd.github+json"
            && g.header("x-github-api-version") == "2022-11-28"
            && g.header("content-type") == "application/json"
            && !g.header("user-agent").is_empty();
        let desc_ok = body["description"]
            .as_str()
            .is_some_and(|d| d.chars().count() <= 140);
        let parts: Vec<&str> = g.path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["repos", "team", "hello", "statuses", sha]
                if headers_ok
                    && desc_ok
                    && sha.len() == 40
                    && ["error", "failure", "pending", "success"]
                        .contains(&body["state"].as_str().unwrap_or(""))
                    && body["context"] == "berth/dev" =>
            {
                (201, json!({"state": body["state"]}).to_string())
            }
            ["repos", "team", "hello", "deployments"]
                if headers_ok
                    && body["ref"].as_str().is_some_and(|r| r.len() == 40)
                    && body["environment"] == "dev"
                    && body["auto_merge"] == false
                    && body["required_contexts"] == json!([]) =>
            {
                let mut n = next.lock().unwrap();
                *n += 1;
                (201, json!({"id": *n - 1, "environment": "dev"}).to_string())
            }
            ["repos", "team", "hello", "deployments", id, "statuses"]
                if headers_ok
                    && desc_ok
                    && id.parse::<u64>().is_ok()
                    && [
                        "error",
                        "failure",
                        "inactive",
                        "in_progress",
                        "queued",
                        "pending",
                        "success",
                    ]
                    .contains(&body["state"].as_str().unwrap_or(""))
                    && body["environment"] == "dev" =>
            {
                (201, json!({"state": body["state"]}).to_string())
            }
            _ => (422, json!({"message": "Validation Failed"}).to_string()),
        }
    })
}

/// As GitLab's `POST /projects/:id/statuses/:sha`.
fn gitlab_answer() -> Answer {
    Arc::new(|g: &Got| {
        let body: Value = serde_json::from_slice(&g.body).unwrap_or(Value::Null);
        let ok = g
            .path
            .starts_with("/api/v4/projects/team%2Fhello/statuses/")
            && g.path.len() == "/api/v4/projects/team%2Fhello/statuses/".len() + 40
            && g.header("private-token") == "gl-token-for-test"
            && ["pending", "running", "success", "failed", "canceled"]
                .contains(&body["state"].as_str().unwrap_or(""))
            && body["name"] == "berth/dev";
        if ok {
            (201, json!({"status": body["state"]}).to_string())
        } else {
            (400, json!({"message": "400 Bad request"}).to_string())
        }
    })
}

/// `(path, state)` of each request a forge got, in order.
fn states(got: &[Got]) -> Vec<(String, String)> {
    got.iter()
        .map(|g| {
            let path = g
                .path
                .rsplit_once("/statuses")
                .map_or(g.path.clone(), |(p, _)| format!("{p}/statuses"));
            (path, g.json()["state"].as_str().unwrap_or("-").to_string())
        })
        .collect()
}

#[tokio::test]
async fn github_gets_commit_and_deployment_statuses_and_gitlab_commit_statuses_in_their_api_shapes()
{
    let ctx = TestContext::new("notify-forges").await;
    let github = Receiver::answering(github_answer());
    let gitlab = Receiver::answering(gitlab_answer());
    let p = project(
        &ctx,
        &format!(
            "      - github: {{ repository: team/hello, token-env: BERTH_TEST_GH_TOKEN, api-url: \"http://127.0.0.1:{}\" }}\n      - gitlab: {{ project: team/hello, token-env: BERTH_TEST_GL_TOKEN, api-url: \"http://127.0.0.1:{}/\" }}\n",
            github.port, gitlab.port
        ),
    );
    let env = [
        ("BERTH_TEST_GH_TOKEN", "gh-token-for-test".to_string()),
        ("BERTH_TEST_GL_TOKEN", "gl-token-for-test".to_string()),
    ];
    let (code, out) = berth_run(&ctx, &p, &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("token-for-test"),
        "tokens are never printed: {out}"
    );
    assert!(
        !out.contains("refused"),
        "every request had the documented shape: {out}"
    );
    let sha = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(&p.dir)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let statuses = "/repos/team/hello/statuses".to_string();
    let deployments = "/repos/team/hello/deployments".to_string();
    let first = "/repos/team/hello/deployments/4242/statuses".to_string();
    let s = |p: &String, st: &str| (p.clone(), st.to_string());
    let got = github.got();
    assert_eq!(
        states(&got),
        [
            s(&statuses, "pending"),
            s(&deployments, "-"),
            s(&first, "in_progress"),
            s(&statuses, "success"),
            s(&first, "success"),
        ],
        "{got:#?}"
    );
    assert!(got[0].path.ends_with(&sha), "the run's commit: {got:#?}");
    assert_eq!(got[1].json()["ref"], sha.as_str());
    assert!(
        got[3].json()["description"]
            .as_str()
            .unwrap()
            .contains("revision 1 is live"),
        "{got:#?}"
    );
    let lab = gitlab.got();
    assert_eq!(
        lab.iter()
            .map(|g| g.json()["state"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        ["running", "success"],
        "{lab:#?}"
    );

    // A release that is rolled back: failures, on a second deployment.
    crash_loop(&p);
    let (code, out) = berth_run(&ctx, &p, &env);
    assert_eq!(code, 1, "{out}");
    let second = "/repos/team/hello/deployments/4243/statuses".to_string();
    let got = github.got();
    assert_eq!(
        states(&got[5..]),
        [
            s(&statuses, "pending"),
            s(&deployments, "-"),
            s(&second, "in_progress"),
            s(&statuses, "failure"),
            s(&second, "failure"),
        ],
        "{got:#?}"
    );
    assert!(
        got[8].json()["description"]
            .as_str()
            .unwrap()
            .starts_with("rolled-back: "),
        "{got:#?}"
    );
    let lab = gitlab.got();
    assert_eq!(lab.len(), 4, "{lab:#?}");
    assert_eq!(lab[3].json()["state"], "failed");
}

/// A loopback SMTP server speaking just enough of RFC 5321 (EHLO, MAIL, RCPT, DATA, QUIT) to
/// take messages, recording each one's envelope and text.
struct Smtp {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

/// One message the SMTP server took: the AUTH PLAIN credentials, sender, recipients, text.
#[derive(Clone, Debug)]
struct Mail {
    auth: String,
    from: String,
    to: Vec<String>,
    text: String,
}

impl Smtp {
    fn start() -> Smtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let m = m.clone();
                std::thread::spawn(move || smtp_session(stream, &m));
            }
        });
        Smtp { port, mails }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn smtp_session(stream: TcpStream, mails: &Mutex<Vec<Mail>>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut say = |s: &str| {
        let _ = out.write_all(format!("{s}\r\n").as_bytes());
    };
    say("220 test-smtp ESMTP");
    let (mut auth, mut from, mut to) = (String::new(), String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say("250-test-smtp");
            say("250-AUTH PLAIN");
            say("250 8BITMIME");
        } else if upper.starts_with("AUTH PLAIN ") {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(line[11..].trim())
                .unwrap_or_default();
            auth = String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .trim()
                .to_string();
            say("235 2.7.0 accepted");
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_string();
            say("250 OK");
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().to_string());
            say("250 OK");
        } else if upper.starts_with("DATA") {
            say("354 end with .");
            let mut text = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                text.push_str(&l);
            }
            mails.lock().unwrap().push(Mail {
                auth: auth.clone(),
                from: from.clone(),
                to: std::mem::take(&mut to),
                text,
            });
            say("250 queued");
        } else if upper.starts_with("QUIT") {
            say("221 bye");
            return;
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            say("250 OK");
        } else {
            say("502 not implemented");
        }
    }
}

#[tokio::test]
async fn email_over_smtp_tells_each_address_once_per_event_it_wants() {
    let ctx = TestContext::new("notify-email").await;
    let smtp = Smtp::start();
    let p = project(
        &ctx,
        "      - email: { to: [ops@example.com, oncall@example.com], from: berth@example.com, smtp-url-env: BERTH_TEST_SMTP_URL }\n        on: [succeeded, rolled-back]\n",
    );
    let env = [(
        "BERTH_TEST_SMTP_URL",
        format!("smtp://mailer:pw-for-test@127.0.0.1:{}", smtp.port),
    )];
    let (code, out) = berth_run(&ctx, &p, &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("pw-for-test"),
        "the SMTP password is never printed: {out}"
    );
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        1,
        "succeeded only, as `on` asks: {mails:#?}\n{out}"
    );
    let Mail {
        auth,
        from,
        to,
        text,
    } = &mails[0];
    assert_eq!(
        auth, "mailer pw-for-test",
        "signed in with the URL's user and password"
    );
    assert_eq!(from, "<berth@example.com>");
    assert_eq!(to, &["<ops@example.com>", "<oncall@example.com>"]);
    assert!(
        text.contains("Subject: berth: dev succeeded (run ")
            && text.contains("From: berth@example.com")
            && text.contains("succeeded: revision 1 is live")
            && text.contains(&format!("namespace {}", ctx.namespace)),
        "{text}"
    );

    crash_loop(&p);
    let (code, out) = berth_run(&ctx, &p, &env);
    assert_eq!(code, 1, "{out}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(
        mails[1].text.contains("Subject: berth: dev rolled-back")
            && mails[1].text.contains("rolled back to revision 1"),
        "{}",
        mails[1].text
    );
}
