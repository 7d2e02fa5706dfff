//! Push to a bare repository whose post-receive hook sends GitHub's signed push payload.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use berth_hooks::webhook::is_zero_sha;
use berth_hooks::{DEFAULT_MAX_BODY, Hook, Provider, Push, Request, detect, post_receive};
use berth_types::Secret;
use http::{HeaderMap, HeaderName, HeaderValue};

const SECRET: &str = "hook-secret-7c1d9e";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Dana Ortiz")
        .env("GIT_AUTHOR_EMAIL", "dana@acme.example")
        .env("GIT_COMMITTER_NAME", "Berth Test")
        .env("GIT_COMMITTER_EMAIL", "test@berth.invalid")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("BERTH_HOOK_PUSHER", "dortiz")
        .output()
        .expect("git runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "git {args:?} failed: {stderr}");
    // The hook's own report comes back to the pusher as `remote:` lines on stderr.
    format!("{}{stderr}", String::from_utf8_lossy(&out.stdout))
        .trim()
        .to_string()
}

/// One request as the listener received it.
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Accepts requests on a free port, answers 202, and hands each request over.
fn listen() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/github", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let mut headers = HeaderMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap();
                headers.append(
                    HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                    HeaderValue::from_str(v.trim()).unwrap(),
                );
            }
            let len: usize = headers
                .get("content-length")
                .map(|v| v.to_str().unwrap().parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
            if tx
                .send(Received {
                    path,
                    headers,
                    body,
                })
                .is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}

fn next_push(rx: &mpsc::Receiver<Received>) -> Push {
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the post-receive hook sent nothing");
    assert_eq!(r.path, "/hooks/github");
    assert_eq!(detect(&r.headers), Some(Provider::GitHub));
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("GitHub-Hookshot/")
    );
    match Request::new(&r.headers, &r.body)
        .receive(&Secret::new(SECRET), DEFAULT_MAX_BODY)
        .unwrap()
    {
        Hook::Push(p) => *p,
        other => panic!("expected a push, got {other:?}"),
    }
}

#[test]
fn pushes_arrive_as_signed_github_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("acme/board.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(
        &bare,
        &["init", "--bare", "--quiet", "--initial-branch=main"],
    );
    let (url, rx) = listen();
    let hook = post_receive::install(
        &bare,
        &post_receive::Target {
            url,
            secret: Secret::new(SECRET),
            full_name: None,
            clone_url: None,
        },
    )
    .unwrap();
    assert!(hook.ends_with("hooks/post-receive"));
    let conf = bare.join("hooks/berth-webhook.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let work = dir.path().join("work");
    git(
        dir.path(),
        &["clone", "--quiet", bare.to_str().unwrap(), "work"],
    );
    git(&work, &["checkout", "--quiet", "-b", "main"]);
    std::fs::write(work.join("README.md"), "board\n").unwrap();
    std::fs::write(work.join("old.html"), "<p>old</p>\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "Start the board"]);
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("src/server.js"), "listen(8080)\n").unwrap();
    std::fs::write(work.join("README.md"), "board, now with a server\n").unwrap();
    std::fs::remove_file(work.join("old.html")).unwrap();
    git(&work, &["add", "-A"]);
    git(
        &work,
        &[
            "commit",
            "--quiet",
            "-m",
            "Add the server\n\nIt listens on 8080.",
        ],
    );
    let out = git(&work, &["push", "origin", "main"]);
    assert!(out.contains("webhook delivered"), "{out}");

    // 1. A new branch with two commits.
    let p = next_push(&rx);
    let head = git(&work, &["rev-parse", "HEAD"]);
    let first = git(&work, &["rev-parse", "HEAD~1"]);
    assert_eq!(p.repository.full_name, "acme/board");
    assert_eq!(p.repository.name, "board");
    assert_eq!(
        p.repository.clone_url.as_deref(),
        Some(format!("file://{}", bare.canonicalize().unwrap().display()).as_str())
    );
    assert_eq!(p.git_ref, "refs/heads/main");
    assert_eq!(p.branch.as_deref(), Some("main"));
    assert!(p.created && !p.deleted && !p.forced);
    assert!(is_zero_sha(&p.before));
    assert_eq!(p.after, head);
    assert_eq!(p.pusher, "dortiz");
    let ids: Vec<&str> = p.commits.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [first.as_str(), head.as_str()]);
    let c0 = &p.commits[0];
    assert_eq!(c0.message, "Start the board");
    assert_eq!(c0.author.name, "Dana Ortiz");
    assert_eq!(c0.author.email, "dana@acme.example");
    assert_eq!(c0.added, ["README.md", "old.html"]);
    let c1 = &p.commits[1];
    assert_eq!(c1.message, "Add the server\n\nIt listens on 8080.");
    assert_eq!(c1.added, ["src/server.js"]);
    assert_eq!(c1.modified, ["README.md"]);
    assert_eq!(c1.removed, ["old.html"]);
    assert_eq!(p.head_commit.as_ref(), Some(c1));
    assert_eq!(
        c1.timestamp.as_deref(),
        Some(git(&work, &["log", "-1", "--format=%aI"]).as_str())
    );

    // 2. A fast-forward with one commit.
    std::fs::write(work.join("src/server.js"), "listen(8081)\n").unwrap();
    git(&work, &["commit", "--quiet", "-am", "Move to 8081"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    let p = next_push(&rx);
    assert!(!p.created && !p.forced);
    assert_eq!(p.before, head);
    assert_eq!(p.commits.len(), 1);
    assert_eq!(p.commits[0].modified, ["src/server.js"]);
    let moved = p.after.clone();

    // 3. A force-push back to an older commit plus a new one.
    git(&work, &["reset", "--quiet", "--hard", &head]);
    std::fs::write(work.join("NOTES"), "n\n").unwrap();
    git(&work, &["add", "NOTES"]);
    git(&work, &["commit", "--quiet", "-m", "Instead"]);
    git(&work, &["push", "--quiet", "--force", "origin", "main"]);
    let p = next_push(&rx);
    assert!(p.forced, "a force-push must say so");
    assert_eq!(p.before, moved);
    assert_eq!(p.commits.len(), 1);
    assert_eq!(p.commits[0].added, ["NOTES"]);

    // 4. A tag: the tag object moves, the head commit is what it points at.
    git(&work, &["tag", "-a", "v1.0", "-m", "Release 1.0"]);
    git(&work, &["push", "--quiet", "origin", "v1.0"]);
    let p = next_push(&rx);
    assert_eq!(p.tag.as_deref(), Some("v1.0"));
    assert!(p.created);
    assert_eq!(p.after, git(&work, &["rev-parse", "v1.0"]));
    assert_eq!(
        p.head_commit.unwrap().id,
        git(&work, &["rev-parse", "v1.0^{commit}"])
    );
    assert!(p.commits.is_empty(), "no commit is new with the tag");

    // 5. A branch deleted.
    git(
        &work,
        &["push", "--quiet", "origin", "main:refs/heads/topic"],
    );
    let p = next_push(&rx);
    assert!(p.created && p.commits.is_empty());
    git(&work, &["push", "--quiet", "origin", "--delete", "topic"]);
    let p = next_push(&rx);
    assert!(p.deleted);
    assert_eq!(p.branch.as_deref(), Some("topic"));
    assert_eq!(p.commit(), None);
    assert_eq!(p.head_commit, None);

    // Every delivery has its own id.
    assert!(rx.try_recv().is_err(), "one request per pushed ref");
}

#[test]
fn a_push_with_nowhere_to_send_says_so_and_still_lands() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("board.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(
        &bare,
        &["init", "--bare", "--quiet", "--initial-branch=main"],
    );
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    post_receive::install(
        &bare,
        &post_receive::Target {
            url: format!("http://127.0.0.1:{port}/hooks/github"),
            secret: Secret::new(SECRET),
            full_name: Some("acme/board".into()),
            clone_url: Some("https://git.acme.example/acme/board.git".into()),
        },
    )
    .unwrap();
    let work = dir.path().join("work");
    git(
        dir.path(),
        &["init", "--quiet", "--initial-branch=main", "work"],
    );
    std::fs::write(work.join("a"), "a\n").unwrap();
    git(&work, &["add", "a"]);
    git(&work, &["commit", "--quiet", "-m", "a"]);
    let out = git(&work, &["push", bare.to_str().unwrap(), "main"]);
    assert!(out.contains("webhook NOT delivered"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        git(&work, &["rev-parse", "main"])
    );
}
