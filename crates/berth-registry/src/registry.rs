use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_types::{Digest, ImageRef, SafeUrl};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};

use crate::credentials::{CredentialStore, CredentialsError};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts (`host:port`) that are spoken to over plain HTTP. Only ever what the user named.
    pub insecure: Vec<String>,
    /// Docker config to read credentials from; `None` uses the default location.
    pub docker_config: Option<PathBuf>,
}

/// What a successful `/v2/` ping learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The endpoint that answered.
    pub url: String,
    /// `anonymous`, or the user name the registry accepted.
    pub identity: String,
    /// The auth scheme the registry asked for, if any (`Bearer`, `Basic`).
    pub scheme: Option<String>,
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Credentials could not be loaded.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Nothing answered at the address.
    #[error(
        "registry {url} is not reachable: {reason}. Check the address, that the registry is \
         running, and for a plain-HTTP registry pass --insecure-registry {host}"
    )]
    Unreachable {
        /// The URL tried (credentials redacted).
        url: SafeUrl,
        /// The host, for the suggestion.
        host: String,
        /// The transport error.
        reason: String,
    },
    /// The registry refused the credentials (or wants some and there are none).
    #[error(
        "registry {host} refused access{who}: {detail}. Run `docker login {host}` or fix {config}"
    )]
    Unauthorized {
        /// Registry host.
        host: String,
        /// ` as <user>` or empty for anonymous.
        who: String,
        /// What the registry said.
        detail: String,
        /// The docker config consulted.
        config: String,
    },
    /// The endpoint answered, but not like a Distribution registry.
    #[error("{url} answered HTTP {status}, which is not what an OCI registry answers: {body}")]
    Unexpected {
        /// The URL (redacted).
        url: SafeUrl,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A pulled blob or manifest did not match its digest.
    #[error("content of {reference} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was pulled.
        reference: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// An error from the distribution protocol layer.
    #[error("registry operation `{operation}` on {reference} failed: {message}")]
    Protocol {
        /// push-blob, pull-manifest, ...
        operation: &'static str,
        /// The image reference.
        reference: String,
        /// The error text.
        message: String,
    },
}

/// A Distribution API client with berth's credential lookup and insecure-host policy.
pub struct Registry {
    http: reqwest::Client,
    oci: oci_client::Client,
    credentials: CredentialStore,
    insecure: Vec<String>,
}

/// sha256 of `bytes` as a [`Digest`].
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::sha256_from_bytes(&Sha256::digest(bytes).into())
}

impl Registry {
    /// A client. Requires a rustls crypto provider to be installed (the binary installs ring).
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        let path = options.docker_config.or_else(CredentialStore::default_path);
        let credentials = match path {
            Some(p) => CredentialStore::load(&p)?,
            None => CredentialStore::default(),
        };
        Ok(Self::with_credentials(credentials, options.insecure))
    }

    /// A client with an explicit credential store.
    pub fn with_credentials(credentials: CredentialStore, insecure: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("a reqwest client with static settings builds");
        let oci = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.clone()),
            ..Default::default()
        });
        Registry {
            http,
            oci,
            credentials,
            insecure,
        }
    }

    fn scheme(&self, host: &str) -> &'static str {
        if self.insecure.iter().any(|h| h == host) {
            "http"
        } else {
            "https"
        }
    }

    fn auth_for(&self, host: &str) -> Result<RegistryAuth, RegistryError> {
        Ok(match self.credentials.get(host)? {
            Some(c) => RegistryAuth::Basic(c.username, c.secret.expose().to_string()),
            None => RegistryAuth::Anonymous,
        })
    }

    /// `GET /v2/` and, when challenged, the token or basic-auth step with the stored
    /// credentials: proves the registry is there and accepts who we are.
    pub async fn ping(&self, host: &str) -> Result<Ping, RegistryError> {
        let url = format!("{}://{}/v2/", self.scheme(host), host);
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            url: SafeUrl::new(url.clone()),
            host: host.into(),
            reason: error_chain(&e),
        };
        let resp = self.http.get(&url).send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(Ping {
                url,
                identity: "anonymous".into(),
                scheme: None,
            });
        }
        if status != 401 {
            return Err(unexpected(&url, resp).await);
        }
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (scheme, params) = parse_challenge(&challenge);
        let cred = self.credentials.get(host)?;
        let who = cred
            .as_ref()
            .map(|c| format!(" as {}", c.username))
            .unwrap_or_default();
        let denied = |detail: String| RegistryError::Unauthorized {
            host: host.into(),
            who: who.clone(),
            detail,
            config: self.credentials.source().display().to_string(),
        };
        let authed = match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let Some(c) = &cred else {
                    return Err(denied("it requires a login and there is none".into()));
                };
                self.http
                    .get(&url)
                    .basic_auth(&c.username, Some(c.secret.expose()))
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| denied("bearer challenge without realm".into()))?;
                let mut req = self.http.get(realm);
                if let Some(service) = params.get("service") {
                    req = req.query(&[("service", service)]);
                }
                if let Some(c) = &cred {
                    req = req.basic_auth(&c.username, Some(c.secret.expose()));
                }
                let token_resp = req.send().await.map_err(|e| RegistryError::Unreachable {
                    url: SafeUrl::new(realm.clone()),
                    host: host.into(),
                    reason: error_chain(&e),
                })?;
                if !token_resp.status().is_success() {
                    return Err(denied(format!(
                        "token service answered HTTP {}",
                        token_resp.status()
                    )));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = token_resp
                    .json()
                    .await
                    .map_err(|e| denied(format!("unreadable token answer: {e}")))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| denied("no token in answer".into()))?;
                self.http.get(&url).bearer_auth(token)
            }
            _ => return Err(denied(format!("unsupported auth challenge `{challenge}`"))),
        };
        let resp = authed.send().await.map_err(unreachable)?;
        match resp.status().as_u16() {
            200 => Ok(Ping {
                url,
                identity: cred
                    .map(|c| c.username)
                    .unwrap_or_else(|| "anonymous".into()),
                scheme: Some(scheme),
            }),
            401 | 403 => Err(denied(format!("HTTP {}", resp.status()))),
            _ => Err(unexpected(&url, resp).await),
        }
    }

    fn reference(image: &ImageRef) -> Reference {
        Reference::with_tag(
            image.registry().into(),
            image.repository().into(),
            image.reference(),
        )
    }

    async fn authenticate(
        &self,
        image: &ImageRef,
        op: RegistryOperation,
    ) -> Result<Reference, RegistryError> {
        let r = Self::reference(image);
        let auth = self.auth_for(image.registry())?;
        self.oci
            .auth(&r, &auth, op)
            .await
            .map_err(|e| protocol("auth", image, e))?;
        Ok(r)
    }

    /// Whether the repository of `image` already has the blob.
    pub async fn blob_exists(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let r = self.authenticate(image, RegistryOperation::Pull).await?;
        self.oci
            .blob_exists(&r, &digest.to_string())
            .await
            .map_err(|e| protocol("head-blob", image, e))
    }

    /// Uploads a blob into the repository of `image` unless it is there already.
    pub async fn push_blob(
        &self,
        image: &ImageRef,
        data: Vec<u8>,
    ) -> Result<Digest, RegistryError> {
        let digest = sha256(&data);
        let r = self.authenticate(image, RegistryOperation::Push).await?;
        if self
            .oci
            .blob_exists(&r, &digest.to_string())
            .await
            .unwrap_or(false)
        {
            return Ok(digest);
        }
        self.oci
            .push_blob(&r, data, &digest.to_string())
            .await
            .map_err(|e| protocol("push-blob", image, e))?;
        Ok(digest)
    }

    /// Downloads a blob and checks it against its digest.
    pub async fn pull_blob(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Vec<u8>, RegistryError> {
        let r = self.authenticate(image, RegistryOperation::Pull).await?;
        let mut out = Vec::new();
        self.oci
            .pull_blob(&r, digest.to_string().as_str(), &mut out)
            .await
            .map_err(|e| protocol("pull-blob", image, e))?;
        check(image, digest, &out)?;
        Ok(out)
    }

    /// Uploads a manifest under the tag (or digest) of `image`; returns its digest.
    pub async fn push_manifest(
        &self,
        image: &ImageRef,
        body: Vec<u8>,
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let digest = sha256(&body);
        let r = self.authenticate(image, RegistryOperation::Push).await?;
        let content_type = media_type.parse().map_err(|_| RegistryError::Protocol {
            operation: "push-manifest",
            reference: image.to_string(),
            message: format!("invalid media type `{media_type}`"),
        })?;
        self.oci
            .push_manifest_raw(&r, body, content_type)
            .await
            .map_err(|e| protocol("push-manifest", image, e))?;
        Ok(digest)
    }

    /// Downloads the manifest of `image` (by digest if it has one, else by tag): its bytes,
    /// media type and digest. A digest reference is verified.
    pub async fn pull_manifest(
        &self,
        image: &ImageRef,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let r = Self::reference(image);
        let auth = self.auth_for(image.registry())?;
        let accepted = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ];
        let (bytes, _digest_header) = self
            .oci
            .pull_manifest_raw(&r, &auth, &accepted)
            .await
            .map_err(|e| protocol("pull-manifest", image, e))?;
        let actual = sha256(&bytes);
        if let Some(expected) = image.digest() {
            check(image, expected, &bytes)?;
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(String::from)
            })
            .unwrap_or_else(|| accepted[0].into());
        Ok((bytes.to_vec(), media_type, actual))
    }
}

fn check(image: &ImageRef, expected: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
    let actual = sha256(bytes);
    if &actual != expected {
        return Err(RegistryError::DigestMismatch {
            reference: image.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

fn protocol(
    operation: &'static str,
    image: &ImageRef,
    e: oci_client::errors::OciDistributionError,
) -> RegistryError {
    RegistryError::Protocol {
        operation,
        reference: image.to_string(),
        message: e.to_string(),
    }
}

async fn unexpected(url: &str, resp: reqwest::Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    RegistryError::Unexpected {
        url: SafeUrl::new(url),
        status,
        body,
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Parses `Bearer realm="https://auth",service="reg",scope="x"` into the scheme and parameters.
fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key, value.to_string());
        rest = remainder.trim_start_matches(',').trim();
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.example.com/token");
        assert_eq!(p["service"], "registry.example.com");
        assert_eq!(p["scope"], "repository:a/b:pull");
    }

    #[test]
    fn parses_basic_challenge() {
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            sha256(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
