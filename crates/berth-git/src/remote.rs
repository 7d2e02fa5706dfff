//! Where a repository is fetched from and what the host is asked without fetching: [`Remote`],
//! [`Credentials`], the transport allow-list, `ls-remote`.

use super::*;

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
    pub(crate) fn effective(&self) -> Result<(String, Option<Credentials>), GitError> {
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

impl GitCache {
    /// The commit `branch` points at on the remote, or `None` if the branch does not exist.
    /// `branch` is a branch name (`main`) or a full ref (`refs/tags/v1`).
    pub async fn ls_remote(
        &self,
        remote: &Remote,
        branch: &str,
    ) -> Result<Option<String>, GitError> {
        check_rev(branch)?;
        let full = if branch.starts_with("refs/") {
            branch.to_string()
        } else {
            format!("refs/heads/{branch}")
        };
        let refs = self.remote_refs(remote, None, Some(&full)).await?;
        Ok(refs
            .into_iter()
            .find_map(|(sha, r)| (r == full).then_some(sha)))
    }

    /// Every branch of the remote and the commit it points at, in one round-trip: what a
    /// poller compares with what it saw last time.
    pub async fn ls_remote_branches(
        &self,
        remote: &Remote,
    ) -> Result<std::collections::BTreeMap<String, String>, GitError> {
        let refs = self.remote_refs(remote, Some("--heads"), None).await?;
        Ok(refs
            .into_iter()
            .filter_map(|(sha, r)| Some((r.strip_prefix("refs/heads/")?.to_string(), sha)))
            .collect())
    }

    /// `git ls-remote [FLAG] -- URL [PATTERN]`: every `(commit, ref)` the remote lists.
    async fn remote_refs(
        &self,
        remote: &Remote,
        flag: Option<&str>,
        pattern: Option<&str>,
    ) -> Result<Vec<(String, String)>, GitError> {
        let (url, credentials) = remote.effective()?;
        let safe = remote.safe_url();
        let mut args = vec![os("ls-remote")];
        args.extend(flag.map(os));
        args.extend([os("--"), os(&url)]);
        args.extend(pattern.map(os));
        let out = self
            .git(
                credentials.as_ref(),
                &self.inner.root,
                &args,
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
                Some((sha.to_string(), r.to_string()))
            })
            .collect())
    }
}
