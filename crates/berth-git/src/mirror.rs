//! The bare mirrors: made in a temporary directory and renamed into place, then fetched with
//! `--prune`; revisions resolved in them.

use super::*;

impl GitCache {
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
        let asked = Instant::now();
        let mut state = self.lock(name).await;
        let mirror = self.inner.root.join(&dir_name);
        if let Some((at, from)) = &state.fetched
            && *at > asked
            && *from == url
            && mirror.join("HEAD").exists()
        {
            // Another caller's fetch started after this one asked: it saw all this one would.
            return Ok(mirror);
        }
        let _file_lock = self.file_lock(&dir_name).await?;
        let first = !mirror.join("HEAD").exists();
        if !first && state.pruned.is_none() {
            // The first use of the mirror by this cache (a restarted server): clear what a
            // killed process left in its worktree list before the fetch reads it.
            self.prune(&mirror, &mut state).await?;
        }
        let started = Instant::now();
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
        state.fetched = Some((started, url));
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
}
