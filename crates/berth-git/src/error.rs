//! What can go wrong talking to git, each with what to do about it.

use std::time::Duration;

/// A git operation that failed. Messages name the repository by its redacted URL or cache name
/// and end with a hint; git's own stderr is attached with every `user:password@` and token
/// removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The `git` binary is not on PATH.
    #[error("git is not installed (or not on PATH); install it (Debian: apt-get install git)")]
    NotInstalled(#[source] std::io::Error),

    /// A git command ran longer than its deadline and was killed.
    #[error(
        "`git {op}` for {target} took longer than {after:?} and was stopped; is the git host reachable and the repository a reasonable size?"
    )]
    Timeout {
        /// The git subcommand.
        op: &'static str,
        /// The redacted URL or cache name it worked on.
        target: String,
        /// The deadline.
        after: Duration,
    },

    /// The host refused the credentials (or wanted some and had none).
    #[error(
        "git could not authenticate to {url}: check the repository's credentials in the server config\n{stderr}"
    )]
    AuthFailed {
        /// The redacted URL.
        url: String,
        /// git's redacted stderr.
        stderr: String,
    },

    /// The host answered, but has no such repository.
    #[error(
        "there is no git repository at {url}: check the repository's URL in the server config\n{stderr}"
    )]
    RepositoryNotFound {
        /// The redacted URL.
        url: String,
        /// git's redacted stderr.
        stderr: String,
    },

    /// The host could not be reached at all.
    #[error("git could not reach {url}: check the host name, the network and any proxy\n{stderr}")]
    Unreachable {
        /// The redacted URL.
        url: String,
        /// git's redacted stderr.
        stderr: String,
    },

    /// A revision is not in the cached mirror.
    #[error(
        "`{rev}` is not a commit of {name} (as last fetched): was it force-pushed away, or is the fetch older than the push?"
    )]
    UnknownRevision {
        /// The cache name.
        name: String,
        /// The revision asked for.
        rev: String,
    },

    /// `resolve`, `worktree` or `commit_info` on a repository that was never fetched.
    #[error("{name} has not been fetched into the git cache yet; fetch it first")]
    NotFetched {
        /// The cache name.
        name: String,
    },

    /// A cache name or revision berth refuses to pass to git.
    #[error("`{value}` is not a valid {what}: {why}")]
    Invalid {
        /// What it was meant to be: `repository name`, `revision`, `branch`.
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },

    /// The ssh key named in the credentials is missing.
    #[error(
        "the ssh key {path} for {url} does not exist or cannot be read: fix its path in the server config"
    )]
    SshKeyMissing {
        /// The key's path.
        path: String,
        /// The redacted URL.
        url: String,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },

    /// The worktree destination already exists.
    #[error("cannot check out into {path}: it already exists; pick a fresh directory per run")]
    DestinationExists {
        /// The destination.
        path: String,
    },

    /// Any other git failure.
    #[error("`git {op}` for {target} failed ({status})\n{stderr}")]
    Failed {
        /// The git subcommand.
        op: &'static str,
        /// The redacted URL or cache name.
        target: String,
        /// The exit status.
        status: String,
        /// git's redacted stderr.
        stderr: String,
    },

    /// Reading or writing the cache directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What berth was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        GitError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether trying again later may help (network trouble, a timeout).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GitError::Timeout { .. } | GitError::Unreachable { .. }
        )
    }
}
