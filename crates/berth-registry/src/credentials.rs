//! Registry credentials from docker's `config.json` format, read from a file or from a
//! Kubernetes Secret of type `kubernetes.io/dockerconfigjson` (or the older
//! `kubernetes.io/dockercfg`), given as the JSON object the API server returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use berth_types::Secret;

/// A user name and password (or token) for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// User name; `<token>` when the secret is an identity token.
    pub username: String,
    /// Password or token. Never printed.
    pub secret: Secret,
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The config file exists but could not be read.
    #[error("cannot read registry credentials from {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The config file is not valid JSON of the expected shape.
    #[error("{path}:{line}:{column}: invalid docker config: {message}")]
    Parse {
        /// The file (or `<secret>` for a Kubernetes Secret).
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde said.
        message: String,
    },
    /// An `auth` entry is not base64 of `user:password`.
    #[error(
        "{path}: the `auth` entry for `{registry}` is not base64 of `user:password`; \
         log in again with `docker login {registry}`"
    )]
    BadAuthField {
        /// The file.
        path: PathBuf,
        /// The registry key.
        registry: String,
    },
    /// A Kubernetes Secret does not hold registry credentials.
    #[error("Secret {secret}: {message}")]
    Secret {
        /// `namespace/name`.
        secret: String,
        /// What is wrong with it and what to do (never its data).
        message: String,
    },
    /// A credential helper could not be run or answered badly.
    #[error("credential helper `docker-credential-{helper}` failed for `{registry}`: {message}")]
    Helper {
        /// Helper suffix, e.g. `pass`.
        helper: String,
        /// The registry asked for.
        registry: String,
        /// What went wrong (never the secret).
        message: String,
    },
}

#[derive(serde::Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// The credentials berth knows, keyed by normalised registry host.
#[derive(Debug, Default, Clone)]
pub struct CredentialStore {
    entries: BTreeMap<String, Credential>,
    helpers: BTreeMap<String, String>,
    default_helper: Option<String>,
    source: PathBuf,
}

/// `https://index.docker.io/v1/` -> `docker.io`; `ghcr.io` -> `ghcr.io`.
pub fn normalize_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        h => h.to_string(),
    }
}

impl CredentialStore {
    /// The docker config berth reads by default: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Reads a docker config file; a missing file is an empty store (anonymous access).
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(&bytes, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialStore {
                source: path.into(),
                ..Default::default()
            }),
            Err(source) => Err(CredentialsError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// Parses docker config JSON (also the `.dockerconfigjson` key of a Kubernetes Secret);
    /// `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self, CredentialsError> {
        let cfg: DockerConfig =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::Parse {
                path: origin.into(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        let mut entries = BTreeMap::new();
        for (key, entry) in cfg.auths {
            let host = normalize_host(&key);
            let cred = if let Some(token) = entry.identity_token.filter(|t| !t.is_empty()) {
                Some(Credential {
                    username: "<token>".into(),
                    secret: Secret::new(token),
                })
            } else if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let bad = || CredentialsError::BadAuthField {
                    path: origin.into(),
                    registry: key.clone(),
                };
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| bad())?;
                let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
                let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
                Some(Credential {
                    username: u.into(),
                    secret: Secret::new(p),
                })
            } else {
                match (entry.username, entry.password) {
                    (Some(u), Some(p)) => Some(Credential {
                        username: u,
                        secret: Secret::new(p),
                    }),
                    _ => None,
                }
            };
            if let Some(c) = cred {
                entries.insert(host, c);
            }
        }
        let helpers = cfg
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (normalize_host(&k), v))
            .collect();
        Ok(CredentialStore {
            entries,
            helpers,
            default_helper: cfg.creds_store,
            source: origin.into(),
        })
    }

    /// Reads the credentials of a Kubernetes Secret (`kubernetes.io/dockerconfigjson`, key
    /// `.dockerconfigjson`; or `kubernetes.io/dockercfg`, key `.dockercfg`, which holds only the
    /// `auths` map). `secret` is the object as the API returns it (`data` base64-encoded);
    /// `name` is `namespace/name`, for messages.
    pub fn from_kubernetes_secret(
        secret: &serde_json::Value,
        name: &str,
    ) -> Result<Self, CredentialsError> {
        let fail = |message: String| CredentialsError::Secret {
            secret: name.into(),
            message,
        };
        let kind = secret.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let (key, legacy) = match kind {
            "kubernetes.io/dockerconfigjson" => (".dockerconfigjson", false),
            "kubernetes.io/dockercfg" => (".dockercfg", true),
            other => {
                return Err(fail(format!(
                    "has type {other:?}, not kubernetes.io/dockerconfigjson; create it with \
                     `kubectl create secret docker-registry NAME --docker-server=... \
                     --docker-username=... --docker-password=...`"
                )));
            }
        };
        let encoded = secret
            .get("data")
            .and_then(|d| d.get(key))
            .and_then(|v| v.as_str())
            .ok_or_else(|| fail(format!("has no data key {key}")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| fail(format!("data key {key} is not base64")))?;
        let bytes = if legacy {
            let auths: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                fail(format!(
                    "{key} is not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            serde_json::to_vec(&serde_json::json!({ "auths": auths })).expect("JSON")
        } else {
            bytes
        };
        // serde's message can quote the input; name only the position.
        Self::parse(&bytes, Path::new(&format!("Secret {name}"))).map_err(|e| match e {
            CredentialsError::Parse {
                path, line, column, ..
            } => CredentialsError::Parse {
                path,
                line,
                column,
                message: "not a docker config (expected {\"auths\": {HOST: {\"auth\": ...}}})"
                    .into(),
            },
            other => other,
        })
    }

    /// Adds every credential and helper of `other`, replacing those for the same hosts.
    pub fn merge(&mut self, other: CredentialStore) {
        self.entries.extend(other.entries);
        self.helpers.extend(other.helpers);
        if other.default_helper.is_some() {
            self.default_helper = other.default_helper;
        }
    }

    /// The hosts with a stored credential (for reports; never the credentials).
    pub fn hosts(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// Where these credentials came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Adds or replaces the credential for `host`.
    pub fn insert(&mut self, host: &str, credential: Credential) {
        self.entries.insert(normalize_host(host), credential);
    }

    /// The credential for `host`: a per-registry helper first, then a stored entry, then the
    /// default helper (`credsStore`), as docker does. `None` means anonymous.
    pub fn get(&self, host: &str) -> Result<Option<Credential>, CredentialsError> {
        let host = normalize_host(host);
        if let Some(helper) = self.helpers.get(&host) {
            return run_helper(helper, &host);
        }
        if let Some(c) = self.entries.get(&host) {
            return Ok(Some(c.clone()));
        }
        match &self.default_helper {
            Some(helper) => run_helper(helper, &host),
            None => Ok(None),
        }
    }
}

/// The `.dockerconfigjson` of a Kubernetes pull secret holding `entries` (host, credential):
/// `{"auths": {HOST: {"username", "password", "auth"}}}`, as `kubectl create secret
/// docker-registry` writes it. The bytes hold the secrets: send them, never show them.
pub fn docker_config_json<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Credential)>,
) -> Vec<u8> {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .into_iter()
        .map(|(host, c)| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c.username,
                c.secret.expose()
            ));
            (
                normalize_host(host),
                serde_json::json!({
                    "username": c.username,
                    "password": c.secret.expose(),
                    "auth": auth,
                }),
            )
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "auths": auths })).expect("JSON")
}

/// How long a credential helper may take to answer.
const HELPER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

fn run_helper(helper: &str, host: &str) -> Result<Option<Credential>, CredentialsError> {
    let fail = |message: String| CredentialsError::Helper {
        helper: helper.into(),
        registry: host.into(),
        message,
    };
    let server = if host == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    let out = berth_process::output(
        Command::new(format!("docker-credential-{helper}")).arg("get"),
        Some(server.as_bytes()),
        HELPER_DEADLINE,
    )
    .map_err(|e| match e {
        berth_process::ProcessError::Spawn { source, .. } => fail(format!(
            "cannot start it ({source}); install it or remove it from config.json"
        )),
        berth_process::ProcessError::TimedOut { .. } => fail(format!(
            "it did not answer within {}s (a keychain waiting for a prompt?) and was stopped; \
             unlock it, or remove it from config.json",
            HELPER_DEADLINE.as_secs()
        )),
        other => fail(other.to_string()),
    })?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        // Helpers answer "credentials not found in native keychain" when there is nothing.
        if text.contains("not found") {
            return Ok(None);
        }
        return Err(fail(format!("exit status {}", out.status)));
    }
    #[derive(serde::Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    Ok(Some(Credential {
        username: answer.username,
        secret: Secret::new(answer.secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(json: &str) -> CredentialStore {
        CredentialStore::parse(json.as_bytes(), Path::new("config.json")).unwrap()
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn k8s_secret(kind: &str, key: &str, payload: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": "regcred", "namespace": "ci"},
            "data": {key: b64(payload)}})
    }

    #[test]
    fn dockerconfigjson_secret_gives_its_credentials() {
        let cfg = format!(
            r#"{{"auths": {{"registry.example:5000": {{"auth": "{}"}}}}}}"#,
            b64("builder:s3cr3t-pw")
        );
        let s = k8s_secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", &cfg);
        let c = CredentialStore::from_kubernetes_secret(&s, "ci/regcred").unwrap();
        let got = c.get("registry.example:5000").unwrap().unwrap();
        assert_eq!(got.username, "builder");
        assert_eq!(got.secret.expose(), "s3cr3t-pw");
        assert!(!format!("{c:?}").contains("s3cr3t-pw"));
        assert_eq!(c.hosts(), vec!["registry.example:5000"]);
    }

    #[test]
    fn docker_config_json_is_read_back_as_the_same_credential() {
        let c = Credential {
            username: "ci".into(),
            secret: Secret::new("pa:ss"),
        };
        let json = docker_config_json([("127.0.0.1:15001", &c)]);
        let s = k8s_secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            std::str::from_utf8(&json).unwrap(),
        );
        let back = CredentialStore::from_kubernetes_secret(&s, "ns/pull").unwrap();
        assert_eq!(back.get("127.0.0.1:15001").unwrap(), Some(c));
    }

    #[test]
    fn legacy_dockercfg_secret_is_read_too() {
        let cfg = format!(
            r#"{{"https://index.docker.io/v1/": {{"auth": "{}"}}}}"#,
            b64("u:p")
        );
        let s = k8s_secret("kubernetes.io/dockercfg", ".dockercfg", &cfg);
        let c = CredentialStore::from_kubernetes_secret(&s, "ci/old").unwrap();
        assert_eq!(c.get("docker.io").unwrap().unwrap().username, "u");
    }

    #[test]
    fn wrong_secrets_are_named_without_their_data() {
        let opaque = k8s_secret("Opaque", "password", "hunter2");
        let e = CredentialStore::from_kubernetes_secret(&opaque, "ci/pw")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Secret ci/pw") && e.contains("\"Opaque\""),
            "{e}"
        );
        assert!(e.contains("kubectl create secret docker-registry"), "{e}");
        let broken = k8s_secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            "{\"auths\": \"hunter2",
        );
        let e = CredentialStore::from_kubernetes_secret(&broken, "ci/bad")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("Secret ci/bad:1:"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let bad_auth = k8s_secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            r#"{"auths": {"r.example": {"auth": "hunter2"}}}"#,
        );
        let e = CredentialStore::from_kubernetes_secret(&bad_auth, "ci/auth")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let mut missing = k8s_secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", "{}");
        missing["data"] = serde_json::json!({});
        let e = CredentialStore::from_kubernetes_secret(&missing, "ci/empty")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no data key .dockerconfigjson"), "{e}");
    }

    #[test]
    fn merged_credentials_win_for_their_hosts() {
        let mut local = store(&format!(
            r#"{{"auths": {{"a.example": {{"auth": "{}"}}, "b.example": {{"auth": "{}"}}}}}}"#,
            b64("local:1"),
            b64("local:2")
        ));
        local.merge(store(&format!(
            r#"{{"auths": {{"b.example": {{"auth": "{}"}}}}}}"#,
            b64("secret:3")
        )));
        assert_eq!(local.get("a.example").unwrap().unwrap().username, "local");
        assert_eq!(local.get("b.example").unwrap().unwrap().username, "secret");
    }

    #[test]
    fn reads_auth_and_username_password_entries() {
        let s = store(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"Ym9iOnMzY3IzdA=="},
                "127.0.0.1:5000":{"username":"ci","password":"pw"}}}"#,
        );
        let hub = s.get("docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "bob");
        assert_eq!(hub.secret.expose(), "s3cr3t");
        assert_eq!(
            s.get("http://127.0.0.1:5000").unwrap().unwrap().username,
            "ci"
        );
        assert!(s.get("ghcr.io").unwrap().is_none());
    }

    #[test]
    fn parse_errors_point_at_line_and_column() {
        let err = CredentialStore::parse(b"{\n  \"auths\": [\n", Path::new("/x/config.json"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/x/config.json:2:"), "{err}");
    }

    #[test]
    fn bad_auth_field_never_echoes_the_value() {
        let err = CredentialStore::parse(
            br#"{"auths":{"r.io":{"auth":"bm9jb2xvbg=="}}}"#,
            Path::new("c"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("r.io") && !err.contains("bm9jb2xvbg") && !err.contains("nocolon"));
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let s = store(r#"{"credHelpers":{"ecr.example.com":"berth-no-such-helper"}}"#);
        let err = s.get("ecr.example.com").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-berth-no-such-helper"),
            "{err}"
        );
    }

    #[test]
    fn normalises_hosts() {
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("http://localhost:5000/"), "localhost:5000");
    }

    #[test]
    fn missing_file_is_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let s = CredentialStore::load(&dir.path().join("nope.json")).unwrap();
        assert!(s.get("docker.io").unwrap().is_none());
    }
}
