//! A detached checkout of one commit per run, sharing the mirror's objects.

use super::*;

/// A detached checkout of one commit. [`Worktree::remove`] takes it away cleanly; if it is
/// dropped instead, its files are deleted and the mirror forgets it at its next worktree.
#[derive(Debug)]
pub struct Worktree {
    name: String,
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
        // Under the mirror's lock: a fetch or an add meeting the half-removed entry fails.
        let _state = self.cache.lock(&self.name).await;
        let _file_lock = self.cache.file_lock(&mirror_dir_name(&self.name)?).await?;
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

/// How often a cache prunes a mirror's list of worktrees at most (besides after a failed add).
const PRUNE_EVERY: Duration = Duration::from_secs(600);

impl GitCache {
    /// `git worktree prune`, under the mirror's lock (`state`), which records when. First the
    /// entries of adds that were killed (kill -9 of berth or of its git) go: git leaves such an
    /// entry locked, its prune keeps locked entries, and every later fetch failed on it ("did
    /// not send all necessary objects"). berth never locks a worktree and makes entries only
    /// under this lock, so a locked entry seen here is such a leftover.
    pub(crate) async fn prune(
        &self,
        mirror: &Path,
        state: &mut MirrorState,
    ) -> Result<(), GitError> {
        if let Ok(entries) = std::fs::read_dir(mirror.join("worktrees")) {
            for e in entries.flatten() {
                if e.path().join("locked").exists() {
                    std::fs::remove_dir_all(e.path()).map_err(|err| {
                        GitError::io(format!("removing {}", e.path().display()), err)
                    })?;
                }
            }
        }
        self.local(mirror, &[os("worktree"), os("prune")], "worktree prune")
            .await?;
        state.pruned = Some(Instant::now());
        Ok(())
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
        // Entries of checkouts deleted without `worktree remove` (a dropped Worktree, a killed
        // process) are pruned the first time, then every PRUNE_EVERY, and whenever an add
        // fails: not before every add. Only the entry is made under the lock (see
        // MirrorState); the files are checked out after it.
        let add = [
            os("worktree"),
            os("add"),
            os("--detach"),
            os("--no-checkout"),
            os("--quiet"),
            dest_os.as_os_str(),
            os(&sha),
        ];
        {
            let mut state = self.lock(name).await;
            let _file_lock = self.file_lock(&mirror_dir_name(name)?).await?;
            let due = state.pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            if due {
                self.prune(&mirror, &mut state).await?;
            }
            if let Err(e) = self.local(&mirror, &add, "worktree add").await {
                if due {
                    return Err(e);
                }
                self.prune(&mirror, &mut state).await?;
                self.local(&mirror, &add, "worktree add").await?;
            }
        }
        let worktree = Worktree {
            name: name.to_string(),
            path: PathBuf::from(&dest_os),
            commit: sha.clone(),
            mirror: mirror.clone(),
            removed: false,
            cache: self.clone(),
        };
        // Dropped on a failure: its files go, and the entry at the next prune.
        self.local(
            worktree.path(),
            &[os("reset"), os("--hard"), os("--quiet"), os(&sha)],
            "checkout",
        )
        .await?;
        Ok(worktree)
    }
}
