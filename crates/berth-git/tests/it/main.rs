//! berth-git against real git: bare repositories in temporary directories, reached by path,
//! `file://` and smart HTTP (`git http-backend` behind Basic auth).

mod cache;
mod http;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use berth_types::{Event, EventSink};

/// Runs git for test setup; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Dana Ortiz")
        .env("GIT_AUTHOR_EMAIL", "dana@acme.example")
        .env("GIT_COMMITTER_NAME", "Berth Test")
        .env("GIT_COMMITTER_EMAIL", "test@berth.invalid")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare "upstream" repository and a working clone that pushes to it.
pub struct Upstream {
    /// Holds both repositories.
    pub dir: tempfile::TempDir,
    /// The bare repository (what a git host serves).
    pub bare: PathBuf,
    /// The working clone that commits and pushes.
    pub work: PathBuf,
}

impl Upstream {
    /// `name.git` under a fresh temporary directory, with one commit on `main`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join(format!("{name}.git"));
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).unwrap();
        git(
            &bare,
            &["init", "--bare", "--quiet", "--initial-branch=main"],
        );
        git(
            dir.path(),
            &["init", "--quiet", "--initial-branch=main", "work"],
        );
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let up = Upstream { dir, bare, work };
        up.commit("README.md", "hello\n", "Initial commit");
        up.push(&["main"]);
        up
    }

    /// Writes `path` and commits it; returns the new commit id.
    pub fn commit(&self, path: &str, content: &str, message: &str) -> String {
        let file = self.work.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(file, content).unwrap();
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        self.head()
    }

    /// The working clone's HEAD commit.
    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// `git push origin ARGS...` from the working clone.
    pub fn push(&self, args: &[&str]) {
        let mut all = vec!["push", "--quiet", "origin"];
        all.extend_from_slice(args);
        git(&self.work, &all);
    }
}

/// Collects events, for checking what the library reported.
#[derive(Default, Clone)]
pub struct Events(pub Arc<Mutex<Vec<Event>>>);

impl EventSink for Events {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Events {
    /// Every event's Debug form, one per line.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| format!("{e:?}\n"))
            .collect()
    }
}
