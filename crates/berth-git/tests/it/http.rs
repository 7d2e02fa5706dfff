//! An https-style remote with a token: `git http-backend` behind Basic auth, served by a small
//! Python CGI server started here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_git::{GitCache, GitError, Remote};
use berth_types::Secret;

use crate::{Events, Upstream};

const USER: &str = "ci-bot";
const TOKEN: &str = "tok-9f3b2e7c41d05a86";

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(root: &Path, slow: Option<&str>) -> Server {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/git_http_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(root)
            .env("BERTH_TEST_GIT_USER", USER)
            .env("BERTH_TEST_GIT_TOKEN", TOKEN)
            .stdout(Stdio::piped());
        if let Some(s) = slow {
            cmd.env("BERTH_TEST_GIT_SLOW", s);
        }
        let mut child = cmd
            .spawn()
            .expect("python3 must be installed to run the smart-HTTP git server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the git HTTP server did not start: {line:?}"));
        Server { child, port }
    }

    fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process's command line, read from /proc while `running` is set; returns those that
/// mention `needle` and how many git processes were seen at all.
fn watch_cmdlines(
    running: Arc<AtomicBool>,
    needle: &'static str,
) -> std::thread::JoinHandle<(Vec<String>, usize)> {
    std::thread::spawn(move || {
        let mut leaks = Vec::new();
        let mut git_seen = std::collections::HashSet::new();
        while running.load(Ordering::Relaxed) {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                    continue;
                };
                let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
                if cmdline.contains(needle) {
                    leaks.push(cmdline.clone());
                }
                if cmdline.starts_with("git ") || cmdline.contains("git-remote-http") {
                    git_seen.insert(entry.file_name());
                }
            }
        }
        (leaks, git_seen.len())
    })
}

#[tokio::test]
async fn a_token_fetches_over_http_and_never_shows() {
    let up = Upstream::new("board");
    let server = Server::start(up.dir.path(), Some("0.3"));
    let dir = tempfile::tempdir().unwrap();
    let events = Events::default();
    let cache = GitCache::new(dir.path())
        .unwrap()
        .with_events(Arc::new(events.clone()));
    let remote = Remote::with_token(server.url("board.git"), USER, Secret::new(TOKEN));

    let running = Arc::new(AtomicBool::new(true));
    let watcher = watch_cmdlines(running.clone(), TOKEN);
    let fetched = cache.fetch("acme/board", &remote).await;
    let polled = cache.ls_remote(&remote, "main").await;
    running.store(false, Ordering::Relaxed);
    let (leaks, git_seen) = watcher.join().unwrap();

    fetched.unwrap();
    assert_eq!(
        cache.resolve("acme/board", "main").await.unwrap(),
        up.head()
    );
    assert_eq!(polled.unwrap(), Some(up.head()));
    assert!(
        leaks.is_empty(),
        "the token is on a command line: {leaks:?}"
    );
    assert!(git_seen > 0, "no git process was seen while fetching");
    // Nor in the mirror's configuration, nor in what was reported.
    let config =
        std::fs::read_to_string(cache.mirror_path("acme/board").unwrap().join("config")).unwrap();
    assert!(!config.contains(TOKEN), "{config}");
    assert!(!events.text().contains(TOKEN));

    // Later pushes arrive through the same credentials.
    let next = up.commit("b.txt", "b\n", "second");
    up.push(&["main"]);
    cache.fetch("acme/board", &remote).await.unwrap();
    assert_eq!(cache.resolve("acme/board", "main").await.unwrap(), next);
}

#[tokio::test]
async fn a_wrong_token_says_to_check_the_credentials_and_hides_it() {
    let up = Upstream::new("board");
    let server = Server::start(up.dir.path(), None);
    let dir = tempfile::tempdir().unwrap();
    let events = Events::default();
    let cache = GitCache::new(dir.path())
        .unwrap()
        .with_events(Arc::new(events.clone()));
    let wrong = "tok-wrong-5be1c0";
    let remote = Remote::with_token(server.url("board.git"), USER, Secret::new(wrong));

    let e = cache.fetch("acme/board", &remote).await.unwrap_err();
    assert!(matches!(e, GitError::AuthFailed { .. }), "{e}");
    let shown = format!("{e}\n{e:?}");
    assert!(
        shown.contains("check the repository's credentials in the server config"),
        "{shown}"
    );
    assert!(!shown.contains(wrong) && !shown.contains(TOKEN), "{shown}");
    assert!(!events.text().contains(wrong));
    assert!(!cache.mirror_path("acme/board").unwrap().exists());

    let e = cache.ls_remote(&remote, "main").await.unwrap_err();
    assert!(matches!(e, GitError::AuthFailed { .. }), "{e}");

    // The token in the URL itself is taken out of it and never echoed either.
    let in_url = Remote::new(format!(
        "http://{USER}:{wrong}@127.0.0.1:{}/board.git",
        server.port
    ));
    let e = cache.fetch("acme/board", &in_url).await.unwrap_err();
    assert!(matches!(e, GitError::AuthFailed { .. }), "{e}");
    assert!(!format!("{e}\n{e:?}").contains(wrong), "{e:?}");
    let right_in_url = Remote::new(format!(
        "http://{USER}:{TOKEN}@127.0.0.1:{}/board.git",
        server.port
    ));
    cache.fetch("acme/board", &right_in_url).await.unwrap();
    let config =
        std::fs::read_to_string(cache.mirror_path("acme/board").unwrap().join("config")).unwrap();
    assert!(!config.contains(TOKEN), "{config}");
}

#[tokio::test]
async fn no_credentials_fail_at_once_instead_of_prompting() {
    let up = Upstream::new("board");
    let server = Server::start(up.dir.path(), None);
    let dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(dir.path()).unwrap();
    let e = cache
        .fetch("acme/board", &Remote::new(server.url("board.git")))
        .await
        .unwrap_err();
    assert!(matches!(e, GitError::AuthFailed { .. }), "{e}");
}
