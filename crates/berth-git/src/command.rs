//! Running `git`: a clean environment, credentials through the environment only, a deadline
//! on every call, and stderr with credentials removed.
//!
//! Credentials never reach a command line (visible to every user through `ps` and
//! `/proc/<pid>/cmdline`) nor a URL that git could echo: an https token goes through
//! `GIT_ASKPASS`, a script without secrets of its own that prints `$BERTH_GIT_USERNAME` /
//! `$BERTH_GIT_TOKEN` from the git process's environment; an ssh key through `GIT_SSH_COMMAND`.
//! Stored credential helpers and terminal prompts are switched off, so a missing credential
//! fails at once instead of hanging the server.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::{Credentials, GitError};

/// The askpass script: answers git's "Username for ..." and "Password for ..." prompts.
pub(crate) const ASKPASS: &str = "#!/bin/sh\n\
case \"$1\" in\n\
  Username*) printf '%s\\n' \"$BERTH_GIT_USERNAME\" ;;\n\
  *) printf '%s\\n' \"$BERTH_GIT_TOKEN\" ;;\n\
esac\n";

/// Where git's helpers live for one cache.
pub(crate) struct Tools<'a> {
    pub askpass: &'a Path,
    pub known_hosts: &'a Path,
}

/// One finished git command.
pub(crate) struct Finished {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    /// Already redacted.
    pub stderr: String,
}

impl Finished {
    pub fn status(&self) -> String {
        match self.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        }
    }
}

/// Environment variables that would point git at another repository than the one we name
/// (set, for instance, when berth itself runs from inside a git hook).
const REPO_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
    "GIT_NAMESPACE",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
];

/// The environment berth gives every git process, as (name, value) pairs; `None` removes.
pub(crate) fn environment(
    tools: &Tools<'_>,
    credentials: Option<&Credentials>,
) -> Vec<(&'static str, Option<String>)> {
    let mut env: Vec<(&'static str, Option<String>)> = vec![
        ("GIT_TERMINAL_PROMPT", Some("0".into())),
        // Overrides any `protocol.*.allow` configuration: no `ext::` helper, no ftp, whatever
        // the host's git config says (and submodules or redirects get the same list).
        ("GIT_ALLOW_PROTOCOL", Some(crate::ALLOWED_PROTOCOLS.into())),
        ("GCM_INTERACTIVE", Some("never".into())),
        ("LC_ALL", Some("C".into())),
        ("LANGUAGE", None),
        ("GIT_ASKPASS", None),
        ("SSH_ASKPASS", None),
        ("BERTH_GIT_USERNAME", None),
        ("BERTH_GIT_TOKEN", None),
        // `-c credential.helper=` without a command line: no stored credentials are used.
        ("GIT_CONFIG_COUNT", Some("2".into())),
        ("GIT_CONFIG_KEY_0", Some("credential.helper".into())),
        ("GIT_CONFIG_VALUE_0", Some(String::new())),
        ("GIT_CONFIG_KEY_1", Some("core.askPass".into())),
        ("GIT_CONFIG_VALUE_1", Some(String::new())),
    ];
    env.extend(REPO_ENV.iter().map(|k| (*k, None)));
    let known_hosts = shell_quote(&tools.known_hosts.to_string_lossy());
    let ssh_base = format!(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known_hosts}"
    );
    match credentials {
        Some(Credentials::Token { username, token }) => {
            env.retain(|(k, _)| {
                !matches!(*k, "GIT_ASKPASS" | "BERTH_GIT_USERNAME" | "BERTH_GIT_TOKEN")
            });
            env.push((
                "GIT_ASKPASS",
                Some(tools.askpass.to_string_lossy().into_owned()),
            ));
            env.push(("BERTH_GIT_USERNAME", Some(username.clone())));
            env.push(("BERTH_GIT_TOKEN", Some(token.expose().to_string())));
            env.push(("GIT_SSH_COMMAND", Some(ssh_base)));
        }
        Some(Credentials::SshKey { path }) => {
            let key = shell_quote(&path.to_string_lossy());
            env.push((
                "GIT_SSH_COMMAND",
                Some(format!("{ssh_base} -o IdentitiesOnly=yes -i {key}")),
            ));
        }
        None => env.push(("GIT_SSH_COMMAND", Some(ssh_base))),
    }
    env
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `git <args>` in `cwd` with a deadline. A non-zero exit is not an error here: the
/// caller decides what it means.
pub(crate) async fn run(
    tools: &Tools<'_>,
    credentials: Option<&Credentials>,
    cwd: &Path,
    args: &[&OsStr],
    op: &'static str,
    target: &str,
    timeout: Duration,
) -> Result<Finished, GitError> {
    let mut cmd = Command::new("git");
    cmd.current_dir(cwd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in environment(tools, credentials) {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if !cwd.exists() => {
            GitError::io(format!("working directory {}", cwd.display()), e)
        }
        std::io::ErrorKind::NotFound => GitError::NotInstalled(e),
        _ => GitError::io("starting git", e),
    })?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| GitError::io("waiting for git", e))?,
        // Dropping the future kills git (kill_on_drop).
        Err(_) => {
            return Err(GitError::Timeout {
                op,
                target: target.to_string(),
                after: timeout,
            });
        }
    };
    let secrets: Vec<&str> = match credentials {
        Some(Credentials::Token { token, .. }) => vec![token.expose()],
        _ => vec![],
    };
    Ok(Finished {
        success: out.status.success(),
        code: out.status.code(),
        stdout: out.stdout,
        stderr: redact(&String::from_utf8_lossy(&out.stderr), &secrets),
    })
}

/// Turns a failed network command into the error that says what to do.
pub(crate) fn network_error(op: &'static str, url: &str, out: &Finished) -> GitError {
    let e = out.stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| e.contains(n));
    let url = url.to_string();
    let stderr = out.stderr.clone();
    if has(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "permission denied (publickey",
        "http basic: access denied",
        "returned error: 401",
        "returned error: 403",
        "invalid username or password",
    ]) {
        GitError::AuthFailed { url, stderr }
    } else if has(&[
        "repository not found",
        "does not appear to be a git repository",
        "returned error: 404",
        "not a git repository",
        "project you were looking for could not be found",
    ]) {
        GitError::RepositoryNotFound { url, stderr }
    } else if has(&[
        "could not resolve host",
        "could not resolve hostname",
        "connection refused",
        "failed to connect",
        "connection timed out",
        "network is unreachable",
        "no route to host",
        "connection reset",
        "empty reply from server",
    ]) {
        GitError::Unreachable { url, stderr }
    } else {
        GitError::Failed {
            op,
            target: url,
            status: out.status(),
            stderr,
        }
    }
}

const MAX_STDERR: usize = 4000;

/// Removes every `user:password@` from URLs in `text` and every occurrence of a secret.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut s = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        s = s.replace(secret, "[redacted]");
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace() || "'\"<>".contains(c))
            .unwrap_or(rest.len());
        match rest[..end].rfind('@') {
            Some(at) => {
                out.push_str("[redacted]");
                out.push_str(&rest[at..end]);
            }
            None => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    let out = out.trim_end();
    if out.len() > MAX_STDERR {
        let mut cut = MAX_STDERR;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &out[..cut])
    } else {
        out.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::Secret;
    use std::path::PathBuf;

    #[test]
    fn redact_strips_userinfo_and_secrets() {
        let text = "fatal: unable to access 'https://bob:hunter2@git.example.com/r.git/': \
                    The requested URL returned error: 403\nremote: token hunter2 refused";
        let r = redact(text, &["hunter2"]);
        assert!(!r.contains("hunter2"), "{r}");
        assert!(!r.contains("bob"), "{r}");
        assert!(
            r.contains("https://[redacted]@git.example.com/r.git/"),
            "{r}"
        );
        assert_eq!(
            redact("ssh://git.example.com/x", &[]),
            "ssh://git.example.com/x"
        );
        assert_eq!(redact("x".repeat(5000).as_str(), &[]).len(), MAX_STDERR + 3);
    }

    #[test]
    fn token_travels_only_in_the_environment() {
        let tools = Tools {
            askpass: Path::new("/run/berth/askpass"),
            known_hosts: Path::new("/var/cache/berth/known_hosts"),
        };
        let creds = Credentials::Token {
            username: "ci".into(),
            token: Secret::new("tok-123"),
        };
        let env = environment(&tools, Some(&creds));
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(get("GIT_ASKPASS").as_deref(), Some("/run/berth/askpass"));
        assert_eq!(get("BERTH_GIT_TOKEN").as_deref(), Some("tok-123"));
        assert_eq!(get("GIT_TERMINAL_PROMPT").as_deref(), Some("0"));
        assert_eq!(
            get("GIT_CONFIG_KEY_0").as_deref(),
            Some("credential.helper")
        );
        assert_eq!(get("GIT_CONFIG_VALUE_0").as_deref(), Some(""));
        assert!(!ASKPASS.contains("tok-123"));
        assert_eq!(
            get("GIT_ALLOW_PROTOCOL").as_deref(),
            Some("https:ssh:git:file:http"),
            "git itself refuses ext:: and other transports"
        );
        // Exactly one value per variable, so the order of `env` calls cannot matter.
        let mut names: Vec<_> = env.iter().map(|(k, _)| *k).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn ssh_key_goes_through_git_ssh_command() {
        let tools = Tools {
            askpass: Path::new("/a"),
            known_hosts: Path::new("/cache/known_hosts"),
        };
        let creds = Credentials::SshKey {
            path: PathBuf::from("/keys/deploy key's"),
        };
        let env = environment(&tools, Some(&creds));
        let ssh = env
            .iter()
            .find(|(k, _)| *k == "GIT_SSH_COMMAND")
            .and_then(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(
            ssh,
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
             -o UserKnownHostsFile='/cache/known_hosts' -o IdentitiesOnly=yes \
             -i '/keys/deploy key'\\''s'"
        );
        assert!(env.iter().any(|(k, v)| *k == "GIT_ASKPASS" && v.is_none()));
    }

    #[test]
    fn failures_are_classified_with_hints() {
        let fin = |stderr: &str| Finished {
            success: false,
            code: Some(128),
            stdout: vec![],
            stderr: stderr.into(),
        };
        let e = network_error(
            "fetch",
            "https://h/r.git",
            &fin("fatal: Authentication failed for 'https://h/r.git/'"),
        );
        assert!(matches!(e, GitError::AuthFailed { .. }));
        assert!(e.to_string().contains("check the repository's credentials"));
        let e = network_error(
            "fetch",
            "https://h/r.git",
            &fin("fatal: could not read Username for 'https://h': terminal prompts disabled"),
        );
        assert!(matches!(e, GitError::AuthFailed { .. }));
        let e = network_error(
            "fetch",
            "/srv/nope.git",
            &fin("fatal: '/srv/nope.git' does not appear to be a git repository"),
        );
        assert!(matches!(e, GitError::RepositoryNotFound { .. }));
        let e = network_error(
            "fetch",
            "https://nohost/r.git",
            &fin("fatal: unable to access 'https://nohost/r.git/': Could not resolve host: nohost"),
        );
        assert!(matches!(e, GitError::Unreachable { .. }));
        assert!(e.is_transient());
        let e = network_error("fetch", "u", &fin("fatal: something else"));
        assert!(matches!(e, GitError::Failed { .. }));
    }
}
