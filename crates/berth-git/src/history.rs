//! What the mirror knows about commits: [`CommitInfo`], ancestry.

use super::*;

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

impl GitCache {
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
