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

mod command;
mod error;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_types::{Event, EventSink, Level, SafeUrl, Secret};
use serde::{Deserialize, Serialize};

pub use error::GitError;

use command::{Finished, Tools};

/// A repository to fetch from.
#[derive(Clone)]
pub struct Remote {
    /// Any URL git understands: `https://`, `ssh://`, `git@host:path`, `file://`, a local path.
    /// A `user:password@` in an http(s) URL is taken out and used as a token.
    pub url: String,
    /// How to authenticate, if at all.
    pub credentials: Option<Credentials>,
}

impl Remote {
    /// A remote without credentials.
    pub fn new(url: impl Into<String>) -> Self {
        Remote {
            url: url.into(),
            credentials: None,
        }
    }

    /// A remote with an https token (`username` is what the host expects, e.g. `x-access-token`
    /// on GitHub, `oauth2` on GitLab, or the account name).
    pub fn with_token(url: impl Into<String>, username: impl Into<String>, token: Secret) -> Self {
        Remote {
            url: url.into(),
            credentials: Some(Credentials::Token {
                username: username.into(),
                token,
            }),
        }
    }

    /// A remote reached over ssh with a private key file.
    pub fn with_ssh_key(url: impl Into<String>, key: impl Into<PathBuf>) -> Self {
        Remote {
            url: url.into(),
            credentials: Some(Credentials::SshKey { path: key.into() }),
        }
    }

    /// The URL for display: credentials hidden.
    pub fn safe_url(&self) -> String {
        SafeUrl::new(self.url.clone()).to_string()
    }

    /// The URL to hand git (never with credentials in it) and the credentials to use.
    fn effective(&self) -> Result<(String, Option<Credentials>), GitError> {
        if self.url.starts_with('-') || self.url.trim().is_empty() {
            return Err(GitError::Invalid {
                what: "repository URL",
                value: self.safe_url(),
                why: "it is empty or starts with '-'",
            });
        }
        if let Some(why) = transport_problem(&self.url) {
            return Err(GitError::Invalid {
                what: "repository URL",
                value: self.safe_url(),
                why,
            });
        }
        let lower = self.url.to_ascii_lowercase();
        let Some(rest) = lower
            .starts_with("http://")
            .then(|| &self.url[7..])
            .or_else(|| lower.starts_with("https://").then(|| &self.url[8..]))
        else {
            return Ok((self.url.clone(), self.credentials.clone()));
        };
        let scheme = &self.url[..self.url.len() - rest.len()];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let Some(at) = rest[..authority_end].rfind('@') else {
            return Ok((self.url.clone(), self.credentials.clone()));
        };
        let userinfo = &rest[..at];
        let clean = format!("{scheme}{}", &rest[at + 1..]);
        let credentials = match (&self.credentials, userinfo.split_once(':')) {
            (Some(c), _) => Some(c.clone()),
            (None, Some((user, pass))) => Some(Credentials::Token {
                username: user.to_string(),
                token: Secret::new(pass),
            }),
            (None, None) => Some(Credentials::Token {
                username: userinfo.to_string(),
                token: Secret::new(""),
            }),
        };
        Ok((clean, credentials))
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &SafeUrl::new(self.url.clone()))
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// How git authenticates to a remote.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// https with a username and a token (or password), answered through `GIT_ASKPASS`.
    Token {
        /// The user name the host expects.
        username: String,
        /// The token; redacted in `Debug`.
        token: Secret,
    },
    /// ssh with a private key file (`GIT_SSH_COMMAND=ssh -i KEY -o IdentitiesOnly=yes`).
    SshKey {
        /// The private key's path.
        path: PathBuf,
    },
}

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

/// One commit, read from the mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// The full object id.
    pub id: String,
    /// Parent ids (two or more for a merge).
    pub parents: Vec<String>,
    /// Who wrote it.
    pub author: Signature,
    /// Who committed it.
    pub committer: Signature,
    /// The full message, without the trailing newline.
    pub message: String,
    /// Paths added (relative to the first parent for merges).
    pub added: Vec<String>,
    /// Paths modified (content, type or mode changed).
    pub modified: Vec<String>,
    /// Paths removed.
    pub removed: Vec<String>,
}

impl CommitInfo {
    /// The message's first line.
    pub fn subject(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
}

/// A name, an e-mail address and a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Strict ISO 8601 with the author's offset, e.g. `2026-12-01T10:14:02+01:00`.
    pub time: String,
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
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    timeouts: Timeouts,
}

impl fmt::Debug for GitCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCache")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// A detached checkout of one commit. [`Worktree::remove`] takes it away cleanly; if it is
/// dropped instead, its files are deleted and the mirror forgets it at its next worktree.
#[derive(Debug)]
pub struct Worktree {
    path: PathBuf,
    commit: String,
    mirror: PathBuf,
    removed: bool,
    cache: GitCache,
}

impl Worktree {
    /// The checkout's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The commit checked out (full id).
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// Removes the checkout and its entry in the mirror.
    pub async fn remove(mut self) -> Result<(), GitError> {
        self.removed = true;
        let path = self.path.clone().into_os_string();
        let target = self.path.display().to_string();
        let out = self
            .cache
            .git(
                None,
                &self.mirror,
                &[os("worktree"), os("remove"), os("--force"), &path],
                "worktree remove",
                &target,
                self.cache.inner.timeouts.local,
            )
            .await?;
        if !out.success && self.path.exists() {
            std::fs::remove_dir_all(&self.path)
                .map_err(|e| GitError::io(format!("removing worktree {target}"), e))?;
        }
        Ok(())
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        if !self.removed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The transports berth lets git use, as `GIT_ALLOW_PROTOCOL` (see the `command` module).
pub const ALLOWED_PROTOCOLS: &str = "https:ssh:git:file:http";

/// Why git must not be handed `url`, judged before git runs: only `https://`, `http://`,
/// `ssh://` (and `git+ssh://`), `git://`, `file://`, scp-like `user@host:path` and local paths.
/// `ext::` (runs a command), `fd::` and other `<helper>::` remote helpers, `ftp://` and any
/// other scheme are refused, and so is a host starting with `-` (an ssh option such as
/// `-oProxyCommand=...`). git itself is also told the same list ([`ALLOWED_PROTOCOLS`]).
fn transport_problem(url: &str) -> Option<&'static str> {
    const WHY: &str = "berth fetches over https, http, ssh, git and file only (no `ext::` or other \
         remote helpers, no ftp)";
    let lower = url.to_ascii_lowercase();
    if let Some((scheme, rest)) = lower.split_once("://")
        && !scheme.contains(['/', '@', ':'])
    {
        if !["https", "http", "ssh", "git+ssh", "ssh+git", "git", "file"].contains(&scheme) {
            return Some(WHY);
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.starts_with('-') || authority.starts_with('-') {
            return Some("its host or user starts with '-', which ssh would read as an option");
        }
        return None;
    }
    // `<transport>::<address>` names a remote helper (`ext::sh -c ...` runs a command).
    if let Some((helper, _)) = url.split_once("::")
        && !helper.contains('/')
    {
        return Some(WHY);
    }
    // scp-like `[user@]host:path` (a colon before any slash).
    if let Some((before, _)) = url.split_once(':')
        && !before.contains('/')
    {
        let host = before.rsplit('@').next().unwrap_or_default();
        if host.starts_with('-') || before.starts_with('-') {
            return Some("its host or user starts with '-', which ssh would read as an option");
        }
    }
    None
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
                step: "git".into(),
                level,
                message,
            });
        }
    }

    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(name.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

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

    /// Brings the mirror of `name` up to date with `remote` (creating it the first time) and
    /// returns its path.
    pub async fn fetch(&self, name: &str, remote: &Remote) -> Result<PathBuf, GitError> {
        let dir_name = mirror_dir_name(name)?;
        let (url, credentials) = remote.effective()?;
        if let Some(Credentials::SshKey { path }) = &credentials {
            std::fs::File::open(path).map_err(|source| GitError::SshKeyMissing {
                path: path.display().to_string(),
                url: remote.safe_url(),
                source,
            })?;
        }
        let safe = remote.safe_url();
        let _guard = self.lock(name).await;
        let _file_lock = self.file_lock(&dir_name).await?;
        let started = Instant::now();
        let mirror = self.inner.root.join(&dir_name);
        let first = !mirror.join("HEAD").exists();
        if first {
            // A fresh name each time, so no two attempts ever share a half-made mirror.
            let tmp = tempfile::Builder::new()
                .prefix(&format!(".{dir_name}.tmp-"))
                .tempdir_in(&self.inner.root)
                .map_err(|e| GitError::io("creating a temporary mirror directory", e))?
                .keep();
            let result = self
                .create_mirror(&tmp, &url, credentials.as_ref(), &safe)
                .await;
            match result {
                Ok(()) => {
                    if mirror.exists() {
                        // A directory without HEAD is no mirror: leftovers of something else.
                        std::fs::remove_dir_all(&mirror).map_err(|e| {
                            GitError::io(format!("removing broken mirror {}", mirror.display()), e)
                        })?;
                    }
                    std::fs::rename(&tmp, &mirror).map_err(|e| {
                        GitError::io(format!("moving the new mirror to {}", mirror.display()), e)
                    })?;
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    self.emit(Level::Error, format!("fetching {name} from {safe} failed"));
                    return Err(e);
                }
            }
        } else {
            let current = self
                .git(
                    None,
                    &mirror,
                    &[os("config"), os("--get"), os("remote.origin.url")],
                    "config",
                    name,
                    self.inner.timeouts.local,
                )
                .await?;
            if String::from_utf8_lossy(&current.stdout).trim() != url {
                self.local(
                    &mirror,
                    &[os("config"), os("remote.origin.url"), os(&url)],
                    "config",
                )
                .await?;
            }
            if let Err(e) = self
                .fetch_origin(&mirror, credentials.as_ref(), &safe)
                .await
            {
                self.emit(Level::Error, format!("fetching {name} from {safe} failed"));
                return Err(e);
            }
        }
        self.emit(
            Level::Info,
            format!(
                "{} {name} from {safe} in {} ms",
                if first { "cloned" } else { "fetched" },
                started.elapsed().as_millis()
            ),
        );
        Ok(mirror)
    }

    async fn create_mirror(
        &self,
        tmp: &Path,
        url: &str,
        credentials: Option<&Credentials>,
        safe: &str,
    ) -> Result<(), GitError> {
        let root = &self.inner.root;
        let tmp_os = tmp.as_os_str();
        self.local(
            root,
            &[os("init"), os("--bare"), os("--quiet"), tmp_os],
            "init",
        )
        .await?;
        let settings: [&[&str]; 5] = [
            &["config", "remote.origin.url", url],
            &[
                "config",
                "remote.origin.fetch",
                "+refs/heads/*:refs/heads/*",
            ],
            &[
                "config",
                "--add",
                "remote.origin.fetch",
                "+refs/tags/*:refs/tags/*",
            ],
            // gc in the foreground, inside the lock, never racing the next fetch.
            &["config", "gc.autoDetach", "false"],
            &["config", "core.logAllRefUpdates", "false"],
        ];
        for args in settings {
            let args: Vec<&OsStr> = args.iter().map(|a| os(a)).collect();
            self.local(tmp, &args, "config").await?;
        }
        self.fetch_origin(tmp, credentials, safe).await?;
        // HEAD names the remote's default branch, so `resolve(name, "HEAD")` means what it
        // means on the host. Best effort: an empty repository has no HEAD to follow.
        let out = self
            .git(
                credentials,
                tmp,
                &[os("ls-remote"), os("--symref"), os("origin"), os("HEAD")],
                "ls-remote",
                safe,
                self.inner.timeouts.network,
            )
            .await?;
        let head = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            l.strip_prefix("ref: ")?
                .strip_suffix("\tHEAD")
                .map(str::to_string)
        });
        if let Some(head) = head.filter(|h| h.starts_with("refs/heads/")) {
            self.local(
                tmp,
                &[os("symbolic-ref"), os("HEAD"), os(&head)],
                "symbolic-ref",
            )
            .await?;
        }
        Ok(())
    }

    async fn fetch_origin(
        &self,
        mirror: &Path,
        credentials: Option<&Credentials>,
        safe: &str,
    ) -> Result<(), GitError> {
        let out = self
            .git(
                credentials,
                mirror,
                &[
                    os("fetch"),
                    os("--prune"),
                    os("--quiet"),
                    os("--no-write-fetch-head"),
                    os("origin"),
                ],
                "fetch",
                safe,
                self.inner.timeouts.network,
            )
            .await?;
        if out.success {
            Ok(())
        } else {
            Err(command::network_error("fetch", safe, &out))
        }
    }

    /// The commit `rev` (a branch, a tag, a full or abbreviated id) names in the mirror.
    pub async fn resolve(&self, name: &str, rev: &str) -> Result<String, GitError> {
        check_rev(rev)?;
        let mirror = self.fetched_mirror(name)?;
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .git(
                None,
                &mirror,
                &[
                    os("rev-parse"),
                    os("--verify"),
                    os("--quiet"),
                    os("--end-of-options"),
                    os(&spec),
                ],
                "rev-parse",
                name,
                self.inner.timeouts.local,
            )
            .await?;
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.success && !sha.is_empty() {
            Ok(sha)
        } else {
            Err(GitError::UnknownRevision {
                name: name.to_string(),
                rev: rev.to_string(),
            })
        }
    }

    /// Checks `commit` out, detached, into `dest` (which must not exist, or be empty).
    pub async fn worktree(
        &self,
        name: &str,
        commit: &str,
        dest: &Path,
    ) -> Result<Worktree, GitError> {
        let mirror = self.fetched_mirror(name)?;
        let sha = self.resolve(name, commit).await?;
        if dest.exists() {
            let empty = std::fs::read_dir(dest)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(GitError::DestinationExists {
                    path: dest.display().to_string(),
                });
            }
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| GitError::io(format!("creating {}", parent.display()), e))?;
        }
        let dest_os: OsString = std::path::absolute(dest)
            .map_err(|e| GitError::io(format!("worktree path {}", dest.display()), e))?
            .into_os_string();
        {
            // `worktree prune` and `worktree add` both edit the mirror's list of worktrees, and
            // so may another process sharing the cache.
            let _guard = self.lock(name).await;
            let _file_lock = self.file_lock(&mirror_dir_name(name)?).await?;
            self.local(&mirror, &[os("worktree"), os("prune")], "worktree prune")
                .await?;
            self.local(
                &mirror,
                &[
                    os("worktree"),
                    os("add"),
                    os("--detach"),
                    os("--quiet"),
                    &dest_os,
                    os(&sha),
                ],
                "worktree add",
            )
            .await?;
        }
        Ok(Worktree {
            path: PathBuf::from(dest_os),
            commit: sha,
            mirror,
            removed: false,
            cache: self.clone(),
        })
    }

    /// The commit `branch` points at on the remote, or `None` if the branch does not exist.
    /// `branch` is a branch name (`main`) or a full ref (`refs/tags/v1`).
    pub async fn ls_remote(
        &self,
        remote: &Remote,
        branch: &str,
    ) -> Result<Option<String>, GitError> {
        check_rev(branch)?;
        let (url, credentials) = remote.effective()?;
        let safe = remote.safe_url();
        let full = if branch.starts_with("refs/") {
            branch.to_string()
        } else {
            format!("refs/heads/{branch}")
        };
        let out = self
            .git(
                credentials.as_ref(),
                &self.inner.root,
                &[os("ls-remote"), os("--"), os(&url), os(&full)],
                "ls-remote",
                &safe,
                self.inner.timeouts.network,
            )
            .await?;
        if !out.success {
            return Err(command::network_error("ls-remote", &safe, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let (sha, r) = line.split_once('\t')?;
                (r == full).then(|| sha.to_string())
            }))
    }

    /// Every branch of the remote and the commit it points at, in one round-trip: what a
    /// poller compares with what it saw last time.
    pub async fn ls_remote_branches(
        &self,
        remote: &Remote,
    ) -> Result<std::collections::BTreeMap<String, String>, GitError> {
        let (url, credentials) = remote.effective()?;
        let safe = remote.safe_url();
        let out = self
            .git(
                credentials.as_ref(),
                &self.inner.root,
                &[os("ls-remote"), os("--heads"), os("--"), os(&url)],
                "ls-remote",
                &safe,
                self.inner.timeouts.network,
            )
            .await?;
        if !out.success {
            return Err(command::network_error("ls-remote", &safe, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (sha, r) = line.split_once('\t')?;
                Some((r.strip_prefix("refs/heads/")?.to_string(), sha.to_string()))
            })
            .collect())
    }

    /// Whether `ancestor` is reachable from `descendant` (false after a force-push that
    /// dropped it).
    pub async fn is_ancestor(
        &self,
        name: &str,
        ancestor: &str,
        descendant: &str,
    ) -> Result<bool, GitError> {
        let a = self.resolve(name, ancestor).await?;
        let d = self.resolve(name, descendant).await?;
        let mirror = self.fetched_mirror(name)?;
        let out = self
            .git(
                None,
                &mirror,
                &[os("merge-base"), os("--is-ancestor"), os(&a), os(&d)],
                "merge-base",
                name,
                self.inner.timeouts.local,
            )
            .await?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(GitError::Failed {
                op: "merge-base",
                target: name.to_string(),
                status: out.status(),
                stderr: out.stderr,
            }),
        }
    }

    /// Author, committer, message and changed paths of one commit.
    pub async fn commit_info(&self, name: &str, commit: &str) -> Result<CommitInfo, GitError> {
        let sha = self.resolve(name, commit).await?;
        let mirror = self.fetched_mirror(name)?;
        let format = "--format=%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B";
        let raw = self
            .local(
                &mirror,
                &[os("show"), os("-s"), os(format), os(&sha)],
                "show",
            )
            .await?;
        let text = String::from_utf8_lossy(&raw);
        let f: Vec<&str> = text.splitn(9, '\0').collect();
        if f.len() != 9 {
            return Err(GitError::Failed {
                op: "show",
                target: name.to_string(),
                status: "unexpected output".into(),
                stderr: String::new(),
            });
        }
        let parents: Vec<String> = f[1].split_whitespace().map(str::to_string).collect();
        let mut args: Vec<&OsStr> = vec![
            os("diff-tree"),
            os("-r"),
            os("-z"),
            os("--no-commit-id"),
            os("--name-status"),
            os("--no-renames"),
        ];
        match parents.first() {
            Some(p) => args.push(os(p)),
            None => args.push(os("--root")),
        }
        args.push(os(&sha));
        let diff = self.local(&mirror, &args, "diff-tree").await?;
        let (mut added, mut modified, mut removed) = (vec![], vec![], vec![]);
        let diff = String::from_utf8_lossy(&diff);
        let mut items = diff.split('\0');
        while let (Some(status), Some(path)) = (items.next(), items.next()) {
            let list = match status.chars().next() {
                Some('A') => &mut added,
                Some('D') => &mut removed,
                Some(_) => &mut modified,
                None => continue,
            };
            list.push(path.to_string());
        }
        Ok(CommitInfo {
            id: f[0].to_string(),
            parents,
            author: Signature {
                name: f[2].into(),
                email: f[3].into(),
                time: f[4].into(),
            },
            committer: Signature {
                name: f[5].into(),
                email: f[6].into(),
                time: f[7].into(),
            },
            message: f[8].trim_end_matches('\n').to_string(),
            added,
            modified,
            removed,
        })
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
