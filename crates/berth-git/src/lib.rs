//! Git access for the delivery server: a cache of bare mirrors, a worktree per run, polling.
//!
//! Everything goes through the `git` binary (no git library): it speaks every transport and
//! credential scheme the hosts do, and its behaviour is the one users know.
//!
//! - [`GitCache::fetch`] keeps one bare mirror per repository under the cache root (branches
//!   and tags only, so GitHub's `refs/pull/*` are not downloaded): created in a temporary
//!   directory and renamed into place, so a crash never leaves half a mirror; then
//!   `fetch --prune`, which follows force-pushes and deletions. Fetches of one repository are
//!   serialised, within the process (a mutex) and across processes (a file lock).
//! - [`GitCache::worktree`] checks one commit out, detached, into a directory of its own
//!   (`git worktree add`, sharing the mirror's objects); several runs may hold worktrees of the
//!   same repository at once. [`Worktree::remove`] cleans up; dropping it removes the files.
//!   The mirror's `HEAD` names the remote's default branch (as it was when the mirror was
//!   made).
//! - [`GitCache::ls_remote`] reads a branch's head without fetching, and
//!   [`GitCache::ls_remote_branches`] every branch at once, for polling hosts that cannot send
//!   webhooks.
//!
//! Credentials ([`Credentials`]) are handed to git through its environment, never on a command
//! line or in a URL (see the `command` module); every git call has a deadline; git's stderr is
//! redacted before it reaches a [`GitError`] or an [`Event`].
//!
//! Modules: `remote` (where from, with what credentials, which transports; `ls-remote`),
//! `mirror` (making and fetching the bare mirrors, resolving revisions), `worktree` (a checkout
//! per run), `history` (commit details and ancestry), `command` (running git: environment,
//! deadlines, redaction). This file holds the cache itself and what they share.

mod command;
mod error;
mod history;
mod mirror;
mod remote;
mod worktree;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_types::{Event, EventSink, Level, SafeUrl, Secret, Step};
use serde::{Deserialize, Serialize};

pub use error::GitError;
pub use history::{CommitInfo, Signature};
pub use remote::{ALLOWED_PROTOCOLS, Credentials, Remote};
pub use worktree::Worktree;

use command::{Finished, Tools};

/// Deadlines for git calls.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Clone, fetch, ls-remote: anything that talks to the host. Default 10 minutes.
    pub network: Duration,
    /// Local work on the mirror (rev-parse, worktree add, show). Default 2 minutes.
    pub local: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            network: Duration::from_secs(600),
            local: Duration::from_secs(120),
        }
    }
}

/// One bare mirror per repository under a root directory. Cheap to clone; share one per
/// server.
#[derive(Clone)]
pub struct GitCache {
    inner: Arc<Inner>,
    events: Option<Arc<dyn EventSink>>,
}

struct Inner {
    root: PathBuf,
    // Holds the askpass script; removed with the cache.
    tools: tempfile::TempDir,
    known_hosts: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<MirrorState>>>>,
    timeouts: Timeouts,
}

/// What this cache knows of one mirror, kept under its lock. Fetches and edits of the
/// mirror's list of worktrees take turns, here and against any other process sharing the
/// directory (the lock file of [`GitCache::file_lock`]): git reads every worktree's entry in
/// both, and fails on one half made ("bad object worktrees/X/HEAD" in a fetch, "failed to read
/// worktrees/X/commondir" in an add). Only the entry is made under the lock; a worktree's
/// files are checked out after it, side by side with the other runs'.
#[derive(Debug, Default)]
struct MirrorState {
    /// When the last successful fetch by this cache started, and from which URL. A fetch
    /// asked for before that moment is answered by it: it saw everything the remote had when
    /// the caller asked (fifty runs of one push fetch once, not fifty times in a row).
    fetched: Option<(Instant, String)>,
    /// When this cache last pruned the mirror's list of worktrees.
    pruned: Option<Instant>,
}

impl fmt::Debug for GitCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCache")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// A cache name that is also a safe directory name: `acme/board` -> `acme~board.git`.
fn mirror_dir_name(name: &str) -> Result<String, GitError> {
    let invalid = |why| GitError::Invalid {
        what: "repository name",
        value: name.chars().take(100).collect(),
        why,
    };
    if name.is_empty() || name.len() > 200 {
        return Err(invalid("it must have 1 to 200 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
    {
        return Err(invalid(
            "only letters, digits, '.', '_', '-' and '/' are allowed",
        ));
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == ".." || part.starts_with('-'))
    {
        return Err(invalid(
            "each '/'-separated part must be non-empty, not '.' or '..', and not start with '-'",
        ));
    }
    Ok(format!("{}.git", name.replace('/', "~")))
}

fn check_rev(rev: &str) -> Result<(), GitError> {
    if rev.is_empty()
        || rev.len() > 256
        || rev.starts_with('-')
        || rev.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(GitError::Invalid {
            what: "revision",
            value: rev.chars().take(100).collect(),
            why: "it must be 1 to 256 characters, not start with '-', and have no spaces",
        });
    }
    Ok(())
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

impl GitCache {
    /// A cache under `root` (created if missing) with default deadlines.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, GitError> {
        Self::with_timeouts(root, Timeouts::default())
    }

    /// A cache with its own deadlines.
    pub fn with_timeouts(root: impl Into<PathBuf>, timeouts: Timeouts) -> Result<Self, GitError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| GitError::io(format!("creating git cache {}", root.display()), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| GitError::io(format!("git cache {}", root.display()), e))?;
        // A private directory (0700) for the askpass script; the script itself holds no secret.
        let tools = tempfile::Builder::new()
            .prefix("berth-git-")
            .tempdir()
            .map_err(|e| GitError::io("creating a private temporary directory", e))?;
        let askpass = tools.path().join("askpass");
        std::fs::write(&askpass, command::ASKPASS)
            .and_then(|()| {
                std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| GitError::io("writing the askpass script", e))?;
        Ok(GitCache {
            inner: Arc::new(Inner {
                known_hosts: root.join("known_hosts"),
                root,
                tools,
                locks: Mutex::new(HashMap::new()),
                timeouts,
            }),
            events: None,
        })
    }

    /// Reports fetches as [`Event::Message`]s (step `git`) to `sink`.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where the mirror of `name` lives (whether or not it was fetched yet).
    pub fn mirror_path(&self, name: &str) -> Result<PathBuf, GitError> {
        Ok(self.inner.root.join(mirror_dir_name(name)?))
    }

    fn tools(&self) -> (PathBuf, &Path) {
        (
            self.inner.tools.path().join("askpass"),
            &self.inner.known_hosts,
        )
    }

    fn emit(&self, level: Level, message: String) {
        if let Some(sink) = &self.events {
            sink.emit(Event::Message {
                step: Step::Git.into(),
                level,
                message,
            });
        }
    }

    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<MirrorState> {
        let m = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(name.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Locks `{dir_name}.lock` (under the cache's root) against other processes sharing it.
    async fn file_lock(&self, dir_name: &str) -> Result<std::fs::File, GitError> {
        let path = self.inner.root.join(format!("{dir_name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| GitError::io(format!("opening lock {}", path.display()), e))?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| GitError::io("waiting for the mirror lock", std::io::Error::other(e)))?
            .map_err(|e| GitError::io(format!("locking {}", path.display()), e))
    }

    async fn git(
        &self,
        credentials: Option<&Credentials>,
        cwd: &Path,
        args: &[&OsStr],
        op: &'static str,
        target: &str,
        timeout: Duration,
    ) -> Result<Finished, GitError> {
        let (askpass, known_hosts) = self.tools();
        let tools = Tools {
            askpass: &askpass,
            known_hosts,
        };
        command::run(&tools, credentials, cwd, args, op, target, timeout).await
    }

    /// A local git command on a mirror that must succeed.
    async fn local(
        &self,
        cwd: &Path,
        args: &[&OsStr],
        op: &'static str,
    ) -> Result<Vec<u8>, GitError> {
        let target = cwd.display().to_string();
        let out = self
            .git(None, cwd, args, op, &target, self.inner.timeouts.local)
            .await?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(GitError::Failed {
                op,
                target,
                status: out.status(),
                stderr: out.stderr,
            })
        }
    }

    fn fetched_mirror(&self, name: &str) -> Result<PathBuf, GitError> {
        let mirror = self.mirror_path(name)?;
        if mirror.join("HEAD").exists() {
            Ok(mirror)
        } else {
            Err(GitError::NotFetched {
                name: name.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_distinct_safe_directories() {
        assert_eq!(mirror_dir_name("acme/board").unwrap(), "acme~board.git");
        assert_eq!(mirror_dir_name("board").unwrap(), "board.git");
        assert_ne!(
            mirror_dir_name("a/b").unwrap(),
            mirror_dir_name("a-b").unwrap()
        );
        for bad in ["", "../x", "a//b", "/abs", "a/./b", "-x", "a b", "a~b", "é"] {
            assert!(mirror_dir_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn revisions_that_look_like_options_are_refused() {
        assert!(check_rev("main").is_ok());
        assert!(check_rev("v1.2^{commit}").is_ok());
        for bad in ["", "--upload-pack=evil", "a b", "x\n"] {
            assert!(check_rev(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn userinfo_moves_out_of_the_url() {
        let r = Remote::new("https://bob:tok3n@git.example.com/acme/board.git");
        let (url, creds) = r.effective().unwrap();
        assert_eq!(url, "https://git.example.com/acme/board.git");
        match creds {
            Some(Credentials::Token { username, token }) => {
                assert_eq!(username, "bob");
                assert_eq!(token.expose(), "tok3n");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{r:?}").contains("tok3n"));
        assert!(!r.safe_url().contains("tok3n"));
        // ssh user names are part of the address, not credentials.
        let r = Remote::new("ssh://git@git.example.com/acme/board.git");
        assert_eq!(r.effective().unwrap().0, r.url);
        assert!(Remote::new("--upload-pack=x").effective().is_err());
    }

    #[test]
    fn remote_helper_and_unlisted_transports_are_refused_before_git_runs() {
        for bad in [
            "ext::sh -c touch% /tmp/pwned",
            "fd::17",
            "testgit::/tmp/x",
            "ftp://127.0.0.1/r.git",
            "ftps://127.0.0.1/r.git",
            "rsync://h/r.git",
            "ssh://-oProxyCommand=touch%20x/r.git",
            "ssh://git@-oProxyCommand=x/r.git",
            "git@-oProxyCommand=x:r.git",
        ] {
            let e = Remote::new(bad).effective().err();
            assert!(
                matches!(e, Some(GitError::Invalid { .. })),
                "{bad:?} accepted: {e:?}"
            );
        }
        for good in [
            "https://git.example.com/a/b.git",
            "http://127.0.0.1:8080/b.git",
            "ssh://git@git.example.com:22/a/b.git",
            "git+ssh://git@h/a.git",
            "git://h/a.git",
            "file:///srv/git/a.git",
            "git@github.com:acme/board.git",
            "/srv/git/a.git",
            "relative/dir",
        ] {
            assert!(Remote::new(good).effective().is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn debug_of_a_token_remote_redacts() {
        let r = Remote::with_token("https://h/r.git", "ci", Secret::new("p4ss"));
        let shown = format!("{r:?}");
        assert!(!shown.contains("p4ss"), "{shown}");
        assert!(shown.contains("ci"));
    }
}
