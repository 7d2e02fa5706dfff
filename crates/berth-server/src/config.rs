//! The server's own configuration file (`berth-serve.yaml`): where it listens, where it keeps
//! its data, which repositories it delivers, how their webhooks are verified.
//!
//! Parsed like `berth.yaml`: unknown keys are refused, and every error names
//! `file:line:column` and says what to write instead. Secrets (git tokens, webhook secrets)
//! are never written in the file itself: it names an environment variable or a file, which is
//! read at load time into a [`Secret`], so the file can be committed and shown.
//!
//! With no file at all, [`ServeConfig::defaults`] gives a working server: SQLite in the data
//! directory, `127.0.0.1:8080`, and the repositories given on the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_types::Secret;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Why the server configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid server configuration.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file, as named on the command line.
        file: String,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What is wrong and what to do.
        message: String,
    },
    /// A setting given on the command line is wrong.
    #[error("{0}")]
    Flag(String),
}

pub use berth_hooks::Provider;

/// A repository's webhook settings.
#[derive(Clone, Debug)]
pub struct Webhook {
    /// Who sends it.
    pub provider: Provider,
    /// The shared secret (HMAC key or GitLab token).
    pub secret: Secret,
}

/// Git credentials for a repository.
#[derive(Clone, Debug)]
pub enum GitCredentials {
    /// HTTPS with a token (as the password).
    Token {
        /// User name sent with it.
        username: String,
        /// The token.
        token: Secret,
    },
    /// SSH with a private key file.
    SshKey {
        /// The key file.
        path: PathBuf,
    },
}

/// One delivered repository.
#[derive(Clone, Debug)]
pub struct Repository {
    /// Name in URLs (`/hooks/{name}`) and the UI; a DNS label.
    pub name: String,
    /// Where to fetch from: a URL or a local path.
    pub url: String,
    /// Credentials for fetching.
    pub credentials: Option<GitCredentials>,
    /// The path of berth.yaml inside the repository.
    pub config: PathBuf,
    /// Branches that trigger runs (empty: every branch an environment deploys).
    pub branches: Vec<String>,
    /// The webhook, if the host sends one.
    pub webhook: Option<Webhook>,
    /// Poll the remote this often (for hosts that cannot send webhooks).
    pub poll: Option<Duration>,
    /// Its berth.yaml may give RUN steps and tests the host's network (`build.network:
    /// host`); off by default: anyone who can push would reach the server's loopback services.
    pub allow_host_network: bool,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory (database, git cache, worktrees).
    pub data_dir: PathBuf,
    /// Database URL (`sqlite:PATH` or `postgres://...`); default: SQLite in the data dir.
    pub database: Option<Secret>,
    /// Runs at once, over all environments.
    pub concurrency: usize,
    /// Newer pushes to a branch supersede queued older runs.
    pub supersede: bool,
    /// Delivered repositories.
    pub repositories: Vec<Repository>,
    /// `/metrics` answers without a token (`metrics: {anonymous: true}`); off by default:
    /// the counters tell an outsider how often and how well this server deploys.
    pub metrics_anonymous: bool,
}

impl ServeConfig {
    /// The embedded defaults: no repositories, SQLite under `data_dir`.
    pub fn defaults(data_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            listen: DEFAULT_LISTEN.parse().expect("default listen address"),
            data_dir,
            database: None,
            concurrency: 2,
            supersede: true,
            repositories: Vec::new(),
            metrics_anonymous: false,
        }
    }

    /// The database URL to open.
    pub fn database_url(&self) -> Secret {
        self.database.clone().unwrap_or_else(|| {
            Secret::new(format!(
                "sqlite:{}",
                self.data_dir.join("berth.db").display()
            ))
        })
    }

    /// A repository by name.
    pub fn repository(&self, name: &str) -> Option<&Repository> {
        self.repositories.iter().find(|r| r.name == name)
    }

    /// Adds a repository given as `--repo PATH_OR_URL` (name from its last path component).
    pub fn add_repo_flag(&mut self, spec: &str) -> Result<(), ConfigError> {
        let (name, url) = match spec.split_once('=') {
            Some((n, u)) if is_label(n) => (n.to_string(), u.to_string()),
            _ => {
                let base = spec
                    .trim_end_matches('/')
                    .rsplit(['/', ':'])
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(".git")
                    .to_ascii_lowercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
                let base = base.trim_matches('-').to_string();
                if !is_label(&base) {
                    return Err(ConfigError::Flag(format!(
                        "--repo {spec}: cannot make a repository name from it; write NAME=PATH_OR_URL"
                    )));
                }
                (base, spec.to_string())
            }
        };
        let url = if !url.contains("://") && !url.contains('@') && Path::new(&url).exists() {
            std::fs::canonicalize(&url)
                .map(|p| p.display().to_string())
                .unwrap_or(url)
        } else {
            url
        };
        if self.repository(&name).is_some() {
            return Err(ConfigError::Flag(format!(
                "--repo {spec}: a repository named `{name}` is already configured"
            )));
        }
        self.repositories.push(Repository {
            name,
            url,
            credentials: None,
            config: PathBuf::from("berth.yaml"),
            branches: Vec::new(),
            webhook: None,
            poll: None,
            allow_host_network: false,
        });
        Ok(())
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    data_dir: Option<PathBuf>,
    database: Option<Spanned<RawSecret>>,
    concurrency: Option<Spanned<i64>>,
    supersede: Option<bool>,
    #[serde(default)]
    repositories: Vec<Spanned<RawRepository>>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default)]
    anonymous: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    name: Spanned<String>,
    url: Spanned<String>,
    credentials: Option<Spanned<RawCredentials>>,
    config: Option<PathBuf>,
    #[serde(default)]
    branches: Vec<String>,
    webhook: Option<Spanned<RawWebhook>>,
    poll: Option<Spanned<String>>,
    #[serde(default)]
    allow_host_network: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    username: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    ssh_key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    provider: Provider,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
}

/// A secret given as a literal (only for a URL without a password), an env var or a file.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSecret {
    Literal(String),
    From {
        env: Option<String>,
        file: Option<PathBuf>,
    },
}

/// Reads and checks the file at `path`; `env` looks up environment variables (the process's
/// environment in production; a map in tests).
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<ServeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string(), env)
}

/// Parses and checks configuration text; `file` names it in messages.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServeConfig, ConfigError> {
    let invalid = |at: &serde_saphyr::Location, message: String| ConfigError::Invalid {
        file: file.to_string(),
        line: at.line().max(1),
        column: at.column().max(1),
        message,
    };
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let raw: RawConfig = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let e = e.without_snippet();
        let mut message = e.to_string();
        let (line, column) = e.location().map_or((1, 1), |at| (at.line(), at.column()));
        message = message
            .replace(&format!(" at line {line}, column {column}"), "")
            .replace(&format!("line {line} column {column}: "), "");
        ConfigError::Invalid {
            file: file.to_string(),
            line: line.max(1),
            column: column.max(1),
            message,
        }
    })?;
    let secret = |at: &serde_saphyr::Location,
                  what: &str,
                  var: &Option<String>,
                  path: &Option<PathBuf>|
     -> Result<Secret, ConfigError> {
        match (var, path) {
            (Some(v), None) => env(v).filter(|s| !s.is_empty()).map(Secret::new).ok_or_else(|| {
                invalid(at, format!("{what}: environment variable `{v}` is not set (or empty); export it before starting the server"))
            }),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
                .map_err(|e| invalid(at, format!("{what}: cannot read {}: {e}", p.display()))),
            _ => Err(invalid(at, format!("{what}: give exactly one of `*_env` (an environment variable) or `*_file` (a file holding it); secrets are never written in this file"))),
        }
    };

    let data_dir = raw.data_dir.unwrap_or_else(default_data_dir);
    let mut config = ServeConfig::defaults(data_dir);
    if let Some(l) = raw.listen {
        config.listen = l.value.parse().map_err(|_| {
            invalid(
                &l.referenced,
                format!(
                    "listen: `{}` is not an address; write HOST:PORT like {DEFAULT_LISTEN}",
                    l.value
                ),
            )
        })?;
    }
    if let Some(d) = raw.database {
        let url = match &d.value {
            RawSecret::Literal(u) => {
                if has_password(u) {
                    return Err(invalid(
                        &d.referenced,
                        "database: this URL holds a password; move it out of the file: `database: { env: BERTH_DATABASE_URL }`".into(),
                    ));
                }
                Secret::new(u.clone())
            }
            RawSecret::From { env: v, file: p } => secret(&d.referenced, "database", v, p)?,
        };
        let u = url.expose();
        if !(u.starts_with("sqlite:")
            || u.starts_with("postgres://")
            || u.starts_with("postgresql://"))
        {
            return Err(invalid(
                &d.referenced,
                "database: use `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`".into(),
            ));
        }
        config.database = Some(url);
    }
    if let Some(c) = raw.concurrency {
        if c.value < 1 || c.value > 1024 {
            return Err(invalid(
                &c.referenced,
                format!(
                    "concurrency: {} is out of range; give how many runs may go at once (1 to 1024)",
                    c.value
                ),
            ));
        }
        config.concurrency = c.value as usize;
    }
    if let Some(s) = raw.supersede {
        config.supersede = s;
    }
    if let Some(m) = raw.metrics {
        config.metrics_anonymous = m.anonymous;
    }
    for r in raw.repositories {
        let at = &r.referenced;
        let r = r.value;
        if !is_label(&r.name.value) {
            return Err(invalid(
                &r.name.referenced,
                format!(
                    "name: `{}` is not a valid repository name; use lowercase letters, digits and `-`, starting with a letter",
                    r.name.value
                ),
            ));
        }
        if config.repository(&r.name.value).is_some() {
            return Err(invalid(
                &r.name.referenced,
                format!("name: repository `{}` is configured twice", r.name.value),
            ));
        }
        if r.url.value.trim().is_empty() || has_password(&r.url.value) {
            return Err(invalid(
                &r.url.referenced,
                "url: give the clone URL without credentials; put a token under `credentials: { token_env: VAR }`".into(),
            ));
        }
        let credentials = match r.credentials {
            None => None,
            Some(c) => {
                let cat = &c.referenced;
                let c = c.value;
                match (&c.ssh_key, &c.token_env, &c.token_file) {
                    (Some(k), None, None) => Some(GitCredentials::SshKey { path: k.clone() }),
                    (None, _, _) => Some(GitCredentials::Token {
                        username: c.username.clone().unwrap_or_else(|| "git".into()),
                        token: secret(cat, "credentials", &c.token_env, &c.token_file)?,
                    }),
                    _ => {
                        return Err(invalid(
                            cat,
                            "credentials: give either `ssh_key: PATH` or `token_env`/`token_file`, not both".into(),
                        ));
                    }
                }
            }
        };
        let webhook = match r.webhook {
            None => None,
            Some(w) => Some(Webhook {
                provider: w.value.provider,
                secret: secret(
                    &w.referenced,
                    "webhook",
                    &w.value.secret_env,
                    &w.value.secret_file,
                )?,
            }),
        };
        let poll = match r.poll {
            None => None,
            Some(p) => Some(
                berth_config::duration::parse_duration(&p.value)
                    .map_err(|e| invalid(&p.referenced, format!("poll: {e}")))?,
            ),
        };
        if webhook.is_none() && poll.is_none() {
            tracing::debug!(repository = %r.name.value, "no webhook and no polling: manual runs only");
        }
        let _ = at;
        config.repositories.push(Repository {
            name: r.name.value,
            url: r.url.value,
            credentials,
            config: r.config.unwrap_or_else(|| PathBuf::from("berth.yaml")),
            branches: r.branches,
            webhook,
            poll,
            allow_host_network: r.allow_host_network,
        });
    }
    Ok(config)
}

fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `$XDG_DATA_HOME/berth-serve`, else `~/.local/share/berth-serve`, else `./berth-serve`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("berth-serve");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/berth-serve");
    }
    PathBuf::from("berth-serve")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOOK" => Some("s3cret".into()),
            "TOKEN" => Some("t0ken".into()),
            _ => None,
        }
    }

    #[test]
    fn a_full_file_parses() {
        let c = parse(
            "listen: 0.0.0.0:9000\ndata_dir: /tmp/x\nconcurrency: 3\nsupersede: false\nrepositories:\n  - name: shop\n    url: https://git.example.com/shop.git\n    credentials: { token_env: TOKEN }\n    branches: [main]\n    webhook: { provider: github, secret_env: HOOK }\n    poll: 1m\n",
            "serve.yaml",
            &env,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.concurrency, 3);
        assert!(!c.supersede);
        let r = &c.repositories[0];
        assert_eq!(r.webhook.as_ref().unwrap().secret.expose(), "s3cret");
        assert_eq!(r.poll, Some(Duration::from_secs(60)));
        assert!(
            matches!(&r.credentials, Some(GitCredentials::Token { token, .. }) if token.expose() == "t0ken")
        );
        assert_eq!(
            c.database_url().expose(),
            "sqlite:/tmp/x/berth.db",
            "SQLite in the data dir by default"
        );
    }

    #[test]
    fn host_network_for_a_repository_is_off_unless_the_file_allows_it() {
        let c = parse(
            "repositories:\n  - name: a\n    url: /a\n  - name: b\n    url: /b\n    allow_host_network: true\n",
            "serve.yaml",
            &env,
        )
        .unwrap();
        assert!(!c.repositories[0].allow_host_network);
        assert!(c.repositories[1].allow_host_network);
        let mut flags = ServeConfig::defaults("/tmp/x".into());
        flags.add_repo_flag("/c").unwrap();
        assert!(!flags.repositories[0].allow_host_network);
    }

    #[test]
    fn an_unknown_key_points_at_its_line() {
        let e = parse(
            "listen: 127.0.0.1:1\nrepositories:\n  - name: a\n    url: /x\n    brnches: [main]\n",
            "serve.yaml",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("serve.yaml:5:"), "{e}");
        assert!(e.contains("brnches"), "{e}");
    }

    #[test]
    fn a_missing_secret_variable_is_named_and_its_value_never_shown() {
        let e = parse(
            "repositories:\n  - name: a\n    url: /x\n    webhook: { provider: gitlab, secret_env: NOPE }\n",
            "serve.yaml",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("serve.yaml:4:"), "{e}");
        assert!(e.contains("`NOPE` is not set"), "{e}");
    }

    #[test]
    fn passwords_in_urls_are_refused() {
        let e = parse("database: postgres://u:pw@h/db\n", "serve.yaml", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds a password") && !e.contains("pw@"), "{e}");
        let e = parse(
            "repositories:\n  - name: a\n    url: https://u:tok@h/r.git\n",
            "serve.yaml",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("serve.yaml:3:") && !e.contains("tok@"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_a_hint() {
        for (text, want) in [
            ("listen: nowhere\n", "HOST:PORT"),
            ("concurrency: 0\n", "1 to 1024"),
            (
                "repositories:\n  - name: Bad_Name\n    url: /x\n",
                "lowercase",
            ),
            (
                "repositories:\n  - name: a\n    url: /x\n  - name: a\n    url: /y\n",
                "twice",
            ),
            (
                "repositories:\n  - name: a\n    url: /x\n    poll: soon\n",
                "poll:",
            ),
        ] {
            let e = parse(text, "f", &env).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn metrics_need_a_token_unless_the_file_says_anonymous() {
        assert!(!parse("", "f", &env).unwrap().metrics_anonymous);
        assert!(
            parse("metrics: {anonymous: true}\n", "f", &env)
                .unwrap()
                .metrics_anonymous
        );
    }

    #[test]
    fn repo_flags_get_names() {
        let mut c = ServeConfig::defaults("/d".into());
        c.add_repo_flag("https://git.example.com/team/My.Shop.git")
            .unwrap();
        c.add_repo_flag("web=ssh://git@h/x").unwrap();
        assert_eq!(c.repositories[0].name, "my-shop");
        assert_eq!(c.repositories[1].name, "web");
        assert!(c.add_repo_flag("https://h/web").is_err());
    }
}
