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

/// The branches a repository deploys from when the server config names none (no `branches:`
/// and no `environments:`): the usual names of a default branch. A pusher to any other branch
/// cannot deploy by editing berth.yaml; a repository whose default branch has another name
/// lists it in `branches:`.
pub const DEFAULT_BRANCHES: [&str; 2] = ["main", "master"];

/// One environment a repository may deploy, as the server config says (`environments:` of a
/// repository): from which branches, into which namespace and kube context, with or without
/// approval. A pushed berth.yaml cannot widen any of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentRule {
    /// The environment's name in berth.yaml.
    pub name: String,
    /// Branches whose pushes (and manual runs) may deploy it; empty: none, it is reached only
    /// by promotion or rollback.
    pub branches: Vec<String>,
    /// The namespace it must deploy into (`None`: berth.yaml's).
    pub namespace: Option<String>,
    /// The kube context it must deploy through (`None`: berth.yaml's, else the server's).
    pub context: Option<String>,
    /// Runs from pushes wait in `awaiting_approval` until a deployer approves them.
    pub protected: bool,
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
    /// The environments it may deploy (empty: every environment of its berth.yaml, only from
    /// `branches`, else from [`DEFAULT_BRANCHES`]).
    pub environments: Vec<EnvironmentRule>,
    /// Where it is configured, for messages (`berth-serve.yaml:7`, `--repo hello`).
    pub origin: String,
    /// Its berth.yaml may give RUN steps and tests the host's network (`build.network:
    /// host`); off by default: anyone who can push would reach the server's loopback services.
    pub allow_host_network: bool,
}

/// Where an environment of a pushed berth.yaml would deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its namespace.
    pub namespace: String,
    /// Its kube context, if berth.yaml names one.
    pub context: Option<String>,
}

impl Repository {
    /// The rule for `environment`, when the server config lists environments.
    pub fn rule(&self, environment: &str) -> Option<&EnvironmentRule> {
        self.environments.iter().find(|e| e.name == environment)
    }

    /// Whether runs of `environment` from pushes wait for a deployer's approval.
    pub fn protected(&self, environment: &str) -> bool {
        self.rule(environment).is_some_and(|r| r.protected)
    }

    /// The branches that may deploy `environment`; `None`: it may not be deployed at all.
    pub fn branches_for(&self, environment: &str) -> Option<Vec<String>> {
        if self.environments.is_empty() {
            return Some(self.default_branches());
        }
        self.rule(environment).map(|r| r.branches.clone())
    }

    fn default_branches(&self) -> Vec<String> {
        if self.branches.is_empty() {
            DEFAULT_BRANCHES.iter().map(|b| b.to_string()).collect()
        } else {
            self.branches.clone()
        }
    }

    /// Whether a push to `branch` may deploy some environment (checked again, for the
    /// environment the pushed berth.yaml chooses, when the run starts).
    pub fn branch_may_deploy(&self, branch: &str) -> bool {
        if !self.branches.is_empty() && !self.branches.iter().any(|b| b == branch) {
            return false;
        }
        if self.environments.is_empty() {
            return self.default_branches().iter().any(|b| b == branch);
        }
        self.environments
            .iter()
            .any(|e| e.branches.iter().any(|b| b == branch))
    }

    /// What the server config allows this repository, for people: `dev from main; prod from
    /// main (protected, namespace shop)`.
    pub fn allowed(&self) -> String {
        if self.environments.is_empty() {
            return format!(
                "every environment of its berth.yaml, from branch {} only",
                or_list(&self.default_branches())
            );
        }
        self.environments
            .iter()
            .map(|e| {
                let mut s = if e.branches.is_empty() {
                    format!("{} by promotion or rollback only", e.name)
                } else {
                    format!("{} from {}", e.name, or_list(&e.branches))
                };
                let mut notes = Vec::new();
                if e.protected {
                    notes.push("protected".to_string());
                }
                if let Some(n) = &e.namespace {
                    notes.push(format!("namespace {n}"));
                }
                if let Some(c) = &e.context {
                    notes.push(format!("context {c}"));
                }
                if !notes.is_empty() {
                    s.push_str(&format!(" ({})", notes.join(", ")));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn change_hint(&self) -> String {
        format!(
            "the server config allows repository `{}`: {}. Change that in `environments:` of the repository ({}), not in berth.yaml",
            self.name,
            self.allowed(),
            self.origin
        )
    }

    /// Why a push to `branch` queues nothing, for the git host's delivery log.
    pub fn refused_branch(&self, branch: &str) -> String {
        format!(
            "branch `{branch}` may deploy no environment; {}",
            self.change_hint()
        )
    }

    /// Whether `environment` may be deployed at all, and from `branch` (`None`: by a rollback
    /// or a promotion, which build nothing); an error, for people, when not.
    pub fn may_deploy(&self, environment: &str, branch: Option<&str>) -> Result<(), String> {
        let Some(branches) = self.branches_for(environment) else {
            return Err(format!(
                "environment `{environment}` may not be deployed from this server; {}",
                self.change_hint()
            ));
        };
        if let Some(b) = branch
            && !branches.iter().any(|x| x == b)
        {
            return Err(format!(
                "branch `{b}` may not deploy environment `{environment}`; {}",
                self.change_hint()
            ));
        }
        Ok(())
    }

    /// Checks a run into `environment`, which the commit's berth.yaml deploys to `target`.
    /// `branch` is the branch a build deploys from (`None` for a rollback or a promotion, which
    /// build nothing). Returns the kube context to deploy through when the server config pins
    /// one; an error, for people, when the server config does not allow it.
    pub fn authorize(
        &self,
        environment: &str,
        branch: Option<&str>,
        target: &Target,
    ) -> Result<Option<String>, String> {
        self.may_deploy(environment, branch)?;
        let Some(rule) = self.rule(environment) else {
            return Ok(None);
        };
        if let Some(ns) = &rule.namespace
            && *ns != target.namespace
        {
            return Err(format!(
                "berth.yaml deploys environment `{environment}` into namespace `{}`, but the server config pins it to `{ns}`; write `namespace: {ns}` in berth.yaml, or change the server config: {}",
                target.namespace,
                self.change_hint()
            ));
        }
        if let Some(ctx) = &rule.context {
            if let Some(named) = &target.context
                && named != ctx
            {
                return Err(format!(
                    "berth.yaml deploys environment `{environment}` through kube context `{named}`, but the server config pins it to `{ctx}`; remove `context:` from berth.yaml or write `context: {ctx}`, or change the server config: {}",
                    self.change_hint()
                ));
            }
            return Ok(Some(ctx.clone()));
        }
        Ok(None)
    }
}

fn or_list(items: &[String]) -> String {
    match items {
        [] => "none".into(),
        [one] => format!("`{one}`"),
        _ => {
            let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
            format!(
                "{} or {}",
                quoted[..quoted.len() - 1].join(", "),
                quoted[quoted.len() - 1]
            )
        }
    }
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
    /// Webhook requests read and verified at once (the unauthenticated door); beyond it the
    /// server answers 503 with `Retry-After`.
    pub webhook_concurrency: usize,
    /// The largest webhook body read, in bytes (`webhook_max_body`).
    pub webhook_max_body: usize,
    /// The URL people open (`public_url: https://berth.example.com`); an `https` one makes the
    /// session cookie `Secure` even when the proxy in front sends no `X-Forwarded-Proto`.
    pub public_url: Option<String>,
}

/// The default of [`ServeConfig::webhook_concurrency`].
pub const DEFAULT_WEBHOOK_CONCURRENCY: usize = 16;

/// The default of [`ServeConfig::webhook_max_body`], 1 MiB. GitHub caps payloads at 25 MB,
/// but a push payload lists at most 20 commits (GitLab 20, Gitea 10 by default) and berth
/// reads only its ref and head commit: real pushes stay far below this, and an anonymous
/// sender cannot make the server buffer 25 MB per request.
pub const DEFAULT_WEBHOOK_MAX_BODY: usize = 1024 * 1024;

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
            webhook_concurrency: DEFAULT_WEBHOOK_CONCURRENCY,
            webhook_max_body: DEFAULT_WEBHOOK_MAX_BODY,
            public_url: None,
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
            environments: Vec::new(),
            origin: format!("--repo {spec}; give it in a --config file to choose its environments"),
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
    webhook_concurrency: Option<Spanned<i64>>,
    webhook_max_body: Option<Spanned<i64>>,
    public_url: Option<Spanned<String>>,
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
    environments: Vec<Spanned<RawEnvironment>>,
    #[serde(default)]
    allow_host_network: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    name: Spanned<String>,
    #[serde(default)]
    branches: Vec<String>,
    namespace: Option<String>,
    context: Option<String>,
    #[serde(default)]
    protected: bool,
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

/// Reads the file at `path` for what opening the server's store needs: `data_dir` and
/// `database`. The whole file must still parse, but no other secret is read, so `berth serve
/// token create|list|revoke` works in a shell that has the database's variable and none of the
/// webhook or git secrets. The other fields keep their defaults: do not serve with the result.
pub fn load_store(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_scoped(&text, &path.display().to_string(), env, Scope::Store)
}

/// Parses and checks configuration text; `file` names it in messages.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServeConfig, ConfigError> {
    parse_scoped(text, file, env, Scope::All)
}

/// How much of the file [`parse_scoped`] resolves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Everything: the server's configuration.
    All,
    /// `data_dir` and `database` only (see [`load_store`]).
    Store,
}

fn parse_scoped(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    scope: Scope,
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
    if scope == Scope::Store {
        return Ok(config);
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
    if let Some(c) = raw.webhook_concurrency {
        if c.value < 1 || c.value > 4096 {
            return Err(invalid(
                &c.referenced,
                format!(
                    "webhook_concurrency: {} is out of range; give how many webhook requests may be read at once (1 to 4096)",
                    c.value
                ),
            ));
        }
        config.webhook_concurrency = c.value as usize;
    }
    if let Some(m) = raw.webhook_max_body {
        let most = berth_hooks::DEFAULT_MAX_BODY as i64;
        if m.value < 1024 || m.value > most {
            return Err(invalid(
                &m.referenced,
                format!(
                    "webhook_max_body: {} is out of range; give the largest webhook body to read in bytes (1024 to {most}, GitHub's own cap)",
                    m.value
                ),
            ));
        }
        config.webhook_max_body = m.value as usize;
    }
    if let Some(u) = raw.public_url {
        let lower = u.value.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://"))
            || has_password(&u.value)
        {
            return Err(invalid(
                &u.referenced,
                format!(
                    "public_url: `{}` is not a URL people open; write it like https://berth.example.com",
                    u.value
                ),
            ));
        }
        config.public_url = Some(u.value);
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
        let mut environments: Vec<EnvironmentRule> = Vec::new();
        for e in r.environments {
            let eat = &e.value.name.referenced;
            let name = e.value.name.value.clone();
            if name.is_empty() {
                return Err(invalid(
                    eat,
                    "environments: `name` is empty; give the name of an environment of berth.yaml"
                        .into(),
                ));
            }
            if environments.iter().any(|x| x.name == name) {
                return Err(invalid(
                    eat,
                    format!("environments: `{name}` is listed twice; give each environment once"),
                ));
            }
            environments.push(EnvironmentRule {
                name,
                branches: e.value.branches,
                namespace: e.value.namespace,
                context: e.value.context,
                protected: e.value.protected,
            });
        }
        config.repositories.push(Repository {
            name: r.name.value,
            url: r.url.value,
            credentials,
            config: r.config.unwrap_or_else(|| PathBuf::from("berth.yaml")),
            branches: r.branches,
            webhook,
            poll,
            environments,
            origin: format!("{file}:{}", at.line().max(1)),
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
    fn the_store_alone_needs_only_the_databases_secret() {
        let text = "database: { env: DB }\nrepositories:\n  - name: a\n    url: /x\n    webhook: { provider: github, secret_env: NOPE }\n";
        let with_db = |k: &str| (k == "DB").then(|| "postgres://berth@db:5432/berth".to_string());
        let e = parse(text, "serve.yaml", &with_db).unwrap_err().to_string();
        assert!(e.contains("`NOPE` is not set"), "{e}");
        let c = parse_scoped(text, "serve.yaml", &with_db, Scope::Store).unwrap();
        assert_eq!(c.database_url().expose(), "postgres://berth@db:5432/berth");
        assert!(
            c.repositories.is_empty(),
            "nothing beyond the store is read"
        );
        let e = parse_scoped(text, "serve.yaml", &env, Scope::Store)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`DB` is not set"),
            "the store's own secret is still needed: {e}"
        );
        let e = parse_scoped("listen: [1\n", "serve.yaml", &env, Scope::Store).unwrap_err();
        assert!(e.to_string().starts_with("serve.yaml:"), "{e}");
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
            ("webhook_concurrency: 0\n", "1 to 4096"),
            ("webhook_max_body: 100000000\n", "GitHub's own cap"),
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

    fn shop(extra: &str) -> Repository {
        parse(
            &format!("repositories:\n  - name: shop\n    url: /x\n{extra}"),
            "serve.yaml",
            &env,
        )
        .unwrap()
        .repositories
        .remove(0)
    }

    fn at(namespace: &str, context: Option<&str>) -> Target {
        Target {
            namespace: namespace.into(),
            context: context.map(str::to_string),
        }
    }

    #[test]
    fn a_repository_the_server_config_says_nothing_about_deploys_only_its_default_branch() {
        let r = shop("");
        assert!(r.branch_may_deploy("main") && r.branch_may_deploy("master"));
        assert!(!r.branch_may_deploy("feature"));
        let e = r.authorize("production", Some("feature"), &at("shop", None));
        let e = e.unwrap_err();
        assert!(
            e.contains("branch `feature` may not deploy environment `production`"),
            "{e}"
        );
        assert!(
            e.contains("serve.yaml:2") && e.contains("`main` or `master`"),
            "{e}"
        );
        assert_eq!(
            r.authorize("production", Some("main"), &at("x", None)),
            Ok(None)
        );
        // `branches:` alone widens (or narrows) the default.
        let r = shop("    branches: [trunk]\n");
        assert!(r.branch_may_deploy("trunk") && !r.branch_may_deploy("main"));
    }

    #[test]
    fn the_server_config_pins_environments_branches_namespaces_and_contexts() {
        let r = shop(
            "    environments:\n      - name: staging\n        branches: [main, develop]\n      - name: production\n        branches: [main]\n        namespace: shop\n        context: prod\n        protected: true\n      - name: preview\n",
        );
        assert!(r.branch_may_deploy("develop") && !r.branch_may_deploy("feature"));
        assert!(r.protected("production") && !r.protected("staging"));
        assert_eq!(
            r.authorize("production", Some("main"), &at("shop", None)),
            Ok(Some("prod".into())),
            "the pinned context is used when berth.yaml names none"
        );
        for (env, branch, target, want) in [
            (
                "production",
                Some("develop"),
                at("shop", None),
                "branch `develop` may not deploy",
            ),
            (
                "production",
                Some("main"),
                at("other", None),
                "pins it to `shop`",
            ),
            (
                "production",
                Some("main"),
                at("shop", Some("dev")),
                "pins it to `prod`",
            ),
            (
                "qa",
                Some("main"),
                at("qa", None),
                "`qa` may not be deployed",
            ),
            ("preview", Some("main"), at("p", None), "may not deploy"),
        ] {
            let e = r.authorize(env, branch, &target).unwrap_err();
            assert!(e.contains(want), "{env} {branch:?}: {e}");
            assert!(
                e.contains("production from `main` (protected, namespace shop, context prod)"),
                "{e}"
            );
        }
        // A rollback or a promotion builds from no branch, but still goes where the server says.
        assert_eq!(r.authorize("preview", None, &at("p", None)), Ok(None));
        assert!(
            r.authorize("production", None, &at("elsewhere", None))
                .is_err()
        );
    }

    #[test]
    fn an_environment_listed_twice_is_refused() {
        let e = parse(
            "repositories:\n  - name: a\n    url: /x\n    environments:\n      - name: p\n      - name: p\n",
            "f",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("f:6:") && e.contains("twice"), "{e}");
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
