use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_types::{Digest, ImageRef, SafeUrl};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};

use std::sync::atomic::{AtomicU64, Ordering};

use oci_client::errors::OciDistributionError;

use crate::credentials::{Credential, CredentialStore, CredentialsError};
use crate::retry::{RetryPolicy, is_transient};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts (`host:port`) that are spoken to over plain HTTP. Only ever what the user named.
    pub insecure: Vec<String>,
    /// Docker config to read credentials from; `None` uses the default location.
    pub docker_config: Option<PathBuf>,
    /// Pull mirrors, `(registry, mirror host)`, e.g. `("docker.io", "127.0.0.1:15000")`, as
    /// containerd's `hosts.toml` and Docker's `registry-mirrors` configure them. Pulls from
    /// `registry` try the mirror first and fall back to the registry itself; pushes never use
    /// a mirror.
    pub mirrors: Vec<(String, String)>,
}

impl RegistryOptions {
    /// Parses mirror specs `registry=host[,host…]` (the form of `BERTH_REGISTRY_MIRROR`,
    /// entries separated by `;` or whitespace) into [`RegistryOptions::mirrors`].
    pub fn parse_mirrors(spec: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for entry in spec
            .split([';', ' ', '\n'])
            .filter(|e| !e.trim().is_empty())
        {
            let (registry, hosts) = entry.trim().split_once('=').ok_or_else(|| {
                format!("invalid mirror `{entry}`: write registry=host, e.g. docker.io=mirror:5000")
            })?;
            for host in hosts.split(',').filter(|h| !h.is_empty()) {
                out.push((registry.trim().to_string(), host.trim().to_string()));
            }
        }
        Ok(out)
    }
}

/// The platform to pick from an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`.
    pub os: String,
    /// OCI architecture name (`amd64`, `arm64`).
    pub architecture: String,
    /// `v7`, `v8`, if any.
    pub variant: Option<String>,
}

/// A manifest resolved for one platform: an image manifest, never an index.
#[derive(Debug, Clone)]
pub struct ResolvedManifest {
    /// Where it was found (the mirror, if one answered): pull the blobs from here.
    pub source: ImageRef,
    /// The manifest bytes, verified against [`ResolvedManifest::digest`].
    pub bytes: Vec<u8>,
    /// Its media type (OCI or Docker schema 2).
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
}

/// OCI and Docker media types berth reads.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// The most bytes berth reads for a manifest or an image index: 4 MiB, containerd's limit
/// (`images.MaxManifestSize`). Real manifests are a few KiB; an index of every platform of a
/// large image stays far below.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The most bytes berth reads into memory for an image config (and any blob pulled with
/// [`Registry::pull_blob`]): 8 MiB. Configs are a few KiB; one with a thousand history
/// entries and a large environment stays under 1 MiB. Layers are streamed to disk instead
/// ([`Registry::pull_blob_to_file`]) and checked against their descriptor's size.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// The most bytes of a token service's answer (a JWT and a few fields).
const MAX_TOKEN_BYTES: u64 = 1 << 20;

/// Deadline of the short requests (ping, token, manifest, config): a server dripping bytes
/// cannot hold them forever. Layer downloads have a read timeout instead (60 s without a
/// byte), so a large layer on a slow link is not cut off.
const SHORT_REQUEST: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// A manifest, image index or in-memory blob (an image config) is larger than berth reads.
    #[error(
        "the {what} `{name}` of {reference} is larger than {limit} bytes, berth's limit for a \
         {what} ({got} bytes announced or received); the image is broken or hostile, berth \
         refuses it"
    )]
    TooLarge {
        /// `manifest` or `config blob`.
        what: &'static str,
        /// What was pulled.
        reference: String,
        /// The tag or digest asked for.
        name: String,
        /// The limit ([`MAX_MANIFEST_BYTES`], [`MAX_CONFIG_BYTES`]).
        limit: u64,
        /// Bytes announced (Content-Length) or received when berth stopped reading.
        got: u64,
    },
    /// A blob's size differs from the one its descriptor in the manifest gives.
    #[error(
        "blob {digest} of {reference}: the registry sent {} bytes where the image's manifest \
         says {expected}; the registry or the image is broken or hostile, berth refuses it",
        if *complete { got.to_string() } else { format!("more than {got}") }
    )]
    SizeMismatch {
        /// What was pulled.
        reference: String,
        /// The blob asked for.
        digest: Digest,
        /// The size its descriptor gives.
        expected: u64,
        /// Bytes received (or announced by Content-Length).
        got: u64,
        /// `false` when berth stopped as soon as more than `expected` arrived (or a
        /// Content-Length announced more): then `got` is `expected`, and more was sent.
        complete: bool,
    },
    /// The registry's token service would receive the credentials in the clear.
    #[error(
        "registry {host} asks for tokens at {realm}: {reason}. berth does not send your \
         credentials there; use the registry's HTTPS token service (for a plain-HTTP registry \
         of your own, named with --insecure-registry, serve the token service on the same host)"
    )]
    InsecureTokenRealm {
        /// The registry.
        host: String,
        /// The token realm it named (redacted).
        realm: SafeUrl,
        /// Why the realm is refused.
        reason: String,
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
///
/// Every call is retried on 5xx answers and broken connections as its [`RetryPolicy`] says;
/// [`Registry::stats`] counts retries, mounts and uploads.
pub struct Registry {
    http: reqwest::Client,
    oci: oci_client::Client,
    credentials: CredentialStore,
    insecure: Vec<String>,
    mirrors: Vec<(String, String)>,
    retry: RetryPolicy,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    retries: AtomicU64,
    mounted: AtomicU64,
    uploaded: AtomicU64,
    present: AtomicU64,
}

/// What the client has done so far (all calls, since it was made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Calls tried again after a transient failure.
    pub retries: u64,
    /// Blobs mounted from another repository instead of uploaded.
    pub mounted: u64,
    /// Blobs uploaded.
    pub uploaded: u64,
    /// Blobs the target repository had already.
    pub present: u64,
}

/// What pushing one blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had it already (HEAD answered 200).
    Present,
    /// The registry mounted it from another repository (`POST …?mount=&from=` answered 201).
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
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
        let mut r = Self::with_credentials(credentials, options.insecure);
        r.mirrors = options.mirrors;
        Ok(r)
    }

    /// A client with an explicit credential store.
    pub fn with_credentials(credentials: CredentialStore, insecure: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .read_timeout(std::time::Duration::from_secs(60))
            // reqwest drops Authorization (and cookies) when a redirect leaves the host, port
            // or scheme: blob downloads redirected to a CDN never carry the registry's token
            // or credentials (`hostile::a_redirect_to_another_host_gets_no_authorization`).
            .redirect(reqwest::redirect::Policy::limited(10))
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
            mirrors: Vec::new(),
            retry: RetryPolicy::default(),
            stats: Counters::default(),
        }
    }

    /// Adds credentials (e.g. from a Kubernetes Secret) over the ones already known: for the
    /// same host, these win.
    pub fn add_credentials(&mut self, credentials: CredentialStore) {
        self.credentials.merge(credentials);
    }

    /// The credential this client sends to `host` (`None`: anonymous), e.g. to give a cluster
    /// the same login as a pull secret.
    pub fn credential(&self, host: &str) -> Result<Option<Credential>, CredentialsError> {
        self.credentials.get(host)
    }

    /// The hosts reached over plain HTTP.
    pub fn insecure_hosts(&self) -> &[String] {
        &self.insecure
    }

    /// Replaces the retry policy (the default is [`RetryPolicy::default`]).
    pub fn set_retry_policy(&mut self, policy: RetryPolicy) {
        self.retry = policy;
    }

    /// Counts of retries, mounts and uploads so far.
    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            retries: self.stats.retries.load(Ordering::Relaxed),
            mounted: self.stats.mounted.load(Ordering::Relaxed),
            uploaded: self.stats.uploaded.load(Ordering::Relaxed),
            present: self.stats.present.load(Ordering::Relaxed),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy's tries are used up.
    async fn retrying<T, F, Fut>(
        &self,
        what: &str,
        mut attempt: F,
    ) -> Result<T, OciDistributionError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut n = 1;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) => match self.retry.delay_after(n) {
                    Some(wait) => {
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "registry {what}: attempt {n} failed ({e}); retrying in {wait:?}"
                        );
                        tokio::time::sleep(wait).await;
                        n += 1;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Where a pull of `image` should be tried, in order: its mirrors, then the registry.
    pub fn pull_sources(&self, image: &ImageRef) -> Vec<ImageRef> {
        pull_sources(&self.mirrors, image)
    }

    fn is_insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host)
    }

    fn scheme(&self, host: &str) -> &'static str {
        if self.is_insecure(host) {
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
        let a = self.authorize(host, host, None).await?;
        let url = format!("{}/v2/", a.base);
        let Some(scheme) = a.scheme.clone() else {
            return Ok(Ping {
                url,
                identity: "anonymous".into(),
                scheme: None,
            });
        };
        let Some(header) = &a.header else {
            return Err(self.denied(host, &a, "it requires a login and there is none".into()));
        };
        let resp = self
            .http
            .get(&url)
            .timeout(SHORT_REQUEST)
            .header(reqwest::header::AUTHORIZATION, header)
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                url: SafeUrl::new(url.clone()),
                host: host.into(),
                reason: error_chain(&e),
            })?;
        match resp.status().as_u16() {
            200 => Ok(Ping {
                url,
                identity: a.user.unwrap_or_else(|| "anonymous".into()),
                scheme: Some(scheme),
            }),
            401 | 403 => Err(self.denied(host, &a, format!("HTTP {}", resp.status()))),
            _ => Err(unexpected(&url, resp).await),
        }
    }

    fn denied(&self, host: &str, a: &Authorized, detail: String) -> RegistryError {
        RegistryError::Unauthorized {
            host: host.into(),
            who: a
                .user
                .as_ref()
                .map(|u| format!(" as {u}"))
                .unwrap_or_default(),
            detail,
            config: self.credentials.source().display().to_string(),
        }
    }

    /// The `/v2/` challenge of the registry at `url_host`: `None` when it answers 200, else
    /// the scheme and parameters of its `WWW-Authenticate` header.
    async fn challenge(&self, url_host: &str) -> Result<Option<Challenge>, RegistryError> {
        let url = format!("{}://{}/v2/", self.scheme(url_host), url_host);
        let resp = self
            .http
            .get(&url)
            .timeout(SHORT_REQUEST)
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                url: SafeUrl::new(url.clone()),
                host: url_host.into(),
                reason: error_chain(&e),
            })?;
        match resp.status().as_u16() {
            200 => Ok(None),
            401 => {
                let raw = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let (scheme, params) = parse_challenge(&raw);
                Ok(Some(Challenge {
                    scheme,
                    params,
                    raw,
                }))
            }
            _ => Err(unexpected(&url, resp).await),
        }
    }

    /// Refuses (before any credential is sent) a bearer challenge whose token realm must not
    /// receive the credentials of `cred_host` ([`credentials_may_go_to`]). Without
    /// credentials there is nothing to protect.
    fn check_realm(
        &self,
        cred_host: &str,
        url_host: &str,
        challenge: &Challenge,
        has_credentials: bool,
    ) -> Result<Option<reqwest::Url>, RegistryError> {
        if !challenge.scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let Some(realm) = challenge.params.get("realm") else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(realm).map_err(|e| RegistryError::InsecureTokenRealm {
            host: cred_host.into(),
            realm: SafeUrl::new(realm.clone()),
            reason: format!("that is not a URL ({e})"),
        })?;
        if has_credentials
            && let Err(reason) = credentials_may_go_to(&url, url_host, self.is_insecure(url_host))
        {
            return Err(RegistryError::InsecureTokenRealm {
                host: cred_host.into(),
                realm: SafeUrl::new(realm.clone()),
                reason,
            });
        }
        Ok(Some(url))
    }

    /// Learns how to authorize requests to the registry at `url_host` (credentials of
    /// `cred_host`): nothing, HTTP basic, or a bearer token from its token service for `scope`
    /// (`repository:NAME:pull`). Credentials go to a token realm only as
    /// [`credentials_may_go_to`] allows.
    async fn authorize(
        &self,
        cred_host: &str,
        url_host: &str,
        scope: Option<&str>,
    ) -> Result<Authorized, RegistryError> {
        let mut out = Authorized {
            base: format!("{}://{}", self.scheme(url_host), url_host),
            header: None,
            scheme: None,
            user: None,
        };
        let Some(challenge) = self.challenge(url_host).await? else {
            return Ok(out);
        };
        let cred = self.credentials.get(cred_host)?;
        out.user = cred.as_ref().map(|c| c.username.clone());
        out.scheme = Some(challenge.scheme.clone());
        match challenge.scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                if let Some(c) = &cred {
                    use base64::Engine as _;
                    let pair = format!("{}:{}", c.username, c.secret.expose());
                    out.header = Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ));
                }
            }
            "bearer" => {
                let Some(realm) =
                    self.check_realm(cred_host, url_host, &challenge, cred.is_some())?
                else {
                    return Err(self.denied(
                        cred_host,
                        &out,
                        "bearer challenge without realm".into(),
                    ));
                };
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(service) = challenge.params.get("service") {
                    query.push(("service", service));
                }
                if let Some(scope) = scope {
                    query.push(("scope", scope));
                }
                let mut req = self
                    .http
                    .get(realm.clone())
                    .timeout(SHORT_REQUEST)
                    .query(&query);
                if let Some(c) = &cred {
                    req = req.basic_auth(&c.username, Some(c.secret.expose()));
                }
                let resp = req.send().await.map_err(|e| RegistryError::Unreachable {
                    url: SafeUrl::new(realm.to_string()),
                    host: cred_host.into(),
                    reason: error_chain(&e),
                })?;
                if !resp.status().is_success() {
                    return Err(self.denied(
                        cred_host,
                        &out,
                        format!("token service answered HTTP {}", resp.status()),
                    ));
                }
                let body = read_limited(resp, MAX_TOKEN_BYTES).await.map_err(|e| {
                    self.denied(cred_host, &out, format!("unreadable token answer: {e}"))
                })?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_slice(&body).map_err(|e| {
                    self.denied(cred_host, &out, format!("unreadable token answer: {e}"))
                })?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| self.denied(cred_host, &out, "no token in answer".into()))?;
                out.header = Some(format!("Bearer {token}"));
            }
            _ => {
                return Err(self.denied(
                    cred_host,
                    &out,
                    format!("unsupported auth challenge `{}`", challenge.raw),
                ));
            }
        }
        Ok(out)
    }

    /// [`Registry::authorize`] for pulling from the repository of `image`, retried like
    /// every call.
    async fn authorize_pull(&self, image: &ImageRef) -> Result<Authorized, RegistryError> {
        let url_host = Self::reference(image).resolve_registry().to_string();
        let scope = format!("repository:{}:pull", image.repository());
        let (h, s) = (&url_host, &scope);
        self.retrying_http("auth", move || async move {
            self.authorize(image.registry(), h, Some(s))
                .await
                .map_err(Fail::classify)
        })
        .await
    }

    /// Runs `attempt` like [`Registry::retrying`], for berth's own HTTP calls.
    async fn retrying_http<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Fail>>,
    {
        let mut n = 1;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Fail::Transient(e)) => match self.retry.delay_after(n) {
                    Some(wait) => {
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "registry {what}: attempt {n} failed ({e}); retrying in {wait:?}"
                        );
                        tokio::time::sleep(wait).await;
                        n += 1;
                    }
                    None => return Err(e),
                },
                Err(Fail::Fatal(e)) => return Err(e),
            }
        }
    }

    /// `GET <base>/v2/<repository>/<path>` with the authorization `a`; any answer but 2xx is
    /// an error (5xx transient). Redirects are followed without the Authorization header
    /// when they leave the host.
    async fn get(
        &self,
        image: &ImageRef,
        a: &Authorized,
        path: &str,
        accept: &str,
        operation: &'static str,
        deadline: Option<std::time::Duration>,
    ) -> Result<reqwest::Response, Fail> {
        let url = format!("{}/v2/{}/{path}", a.base, image.repository());
        let mut req = self.http.get(&url);
        if let Some(d) = deadline {
            req = req.timeout(d);
        }
        if !accept.is_empty() {
            req = req.header(reqwest::header::ACCEPT, accept);
        }
        if let Some(h) = &a.header {
            req = req.header(reqwest::header::AUTHORIZATION, h);
        }
        let resp = req.send().await.map_err(|e| {
            Fail::Transient(RegistryError::Protocol {
                operation,
                reference: image.to_string(),
                message: error_chain(&e),
            })
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(Fail::Fatal(self.denied(
                image.registry(),
                a,
                format!("{operation} answered HTTP {status}"),
            )));
        }
        let body = read_limited(resp, 4096).await.unwrap_or_default();
        let e = RegistryError::Protocol {
            operation,
            reference: image.to_string(),
            message: format!(
                "{} answered HTTP {status}: {}",
                SafeUrl::new(url),
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        };
        Err(if status.is_server_error() {
            Fail::Transient(e)
        } else {
            Fail::Fatal(e)
        })
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
        // oci-client sends the credentials to whatever token realm the registry names: check
        // the realm first. (oci-client asks `/v2/` again; a registry that changes its answer
        // between the two requests is not caught here — pushes go to registries the user
        // chose, pulls do not use oci-client.)
        if !matches!(auth, RegistryAuth::Anonymous) {
            let url_host = r.resolve_registry().to_string();
            let h = &url_host;
            let challenge = self
                .retrying_http("auth", move || async move {
                    self.challenge(h).await.map_err(Fail::classify)
                })
                .await?;
            if let Some(c) = &challenge {
                self.check_realm(image.registry(), &url_host, c, true)?;
            }
        }
        let (rr, auth) = (&r, &auth);
        self.retrying("auth", move || self.oci.auth(rr, auth, op))
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
        let (r, d) = (&r, &digest.to_string());
        self.retrying("head-blob", move || self.oci.blob_exists(r, d))
            .await
            .map_err(|e| protocol("head-blob", image, e))
    }

    /// Whether the blob is in the repository already (counted as present); a failed check
    /// means "upload it", never an error.
    async fn present_before_push(&self, r: &Reference, digest: &str) -> bool {
        let present = self
            .retrying("head-blob", move || self.oci.blob_exists(r, digest))
            .await
            .unwrap_or(false);
        if present {
            self.stats.present.fetch_add(1, Ordering::Relaxed);
        }
        present
    }

    /// Uploads a blob into the repository of `image` unless it is there already.
    pub async fn push_blob(
        &self,
        image: &ImageRef,
        data: Vec<u8>,
    ) -> Result<Digest, RegistryError> {
        let digest = sha256(&data);
        let data = bytes::Bytes::from(data);
        let r = self.authenticate(image, RegistryOperation::Push).await?;
        let (rr, d) = (&r, &digest.to_string());
        if self.present_before_push(rr, d).await {
            return Ok(digest);
        }
        let data = &data;
        self.retrying("push-blob", move || self.oci.push_blob(rr, data.clone(), d))
            .await
            .map_err(|e| protocol("push-blob", image, e))?;
        self.stats.uploaded.fetch_add(1, Ordering::Relaxed);
        Ok(digest)
    }

    /// Downloads a small blob into memory (at most [`MAX_CONFIG_BYTES`]) and checks it against
    /// its digest. Layers go through [`Registry::pull_blob_to_file`].
    pub async fn pull_blob(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Vec<u8>, RegistryError> {
        self.pull_small_blob(image, digest, None).await
    }

    /// Downloads an image config whose descriptor says `size` bytes: refused before any byte
    /// when `size` is over [`MAX_CONFIG_BYTES`], and when the registry sends another size or
    /// content that does not match `digest`.
    pub async fn pull_config(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if size > MAX_CONFIG_BYTES {
            return Err(RegistryError::TooLarge {
                what: "config blob",
                reference: image.to_string(),
                name: digest.to_string(),
                limit: MAX_CONFIG_BYTES,
                got: size,
            });
        }
        self.pull_small_blob(image, digest, Some(size)).await
    }

    async fn pull_small_blob(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Vec<u8>, RegistryError> {
        let a = self.authorize_pull(image).await?;
        let limit = size.unwrap_or(MAX_CONFIG_BYTES);
        let too_large = |got: u64| match size {
            // More than the descriptor's size arrived (or was announced).
            Some(expected) => RegistryError::SizeMismatch {
                reference: image.to_string(),
                digest: digest.clone(),
                expected,
                got: expected,
                complete: false,
            },
            None => RegistryError::TooLarge {
                what: "config blob",
                reference: image.to_string(),
                name: digest.to_string(),
                limit,
                got,
            },
        };
        let (a, path, too_large) = (&a, &format!("blobs/{digest}"), &too_large);
        let out = self
            .retrying_http("pull-blob", move || async move {
                let resp = self
                    .get(image, a, path, "", "pull-blob", Some(SHORT_REQUEST))
                    .await?;
                read_capped(resp, limit, too_large, image, "pull-blob").await
            })
            .await?;
        if let Some(expected) = size
            && out.len() as u64 != expected
        {
            return Err(RegistryError::SizeMismatch {
                reference: image.to_string(),
                digest: digest.clone(),
                expected,
                got: out.len() as u64,
                complete: true,
            });
        }
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
        let content_type: reqwest::header::HeaderValue =
            media_type.parse().map_err(|_| RegistryError::Protocol {
                operation: "push-manifest",
                reference: image.to_string(),
                message: format!("invalid media type `{media_type}`"),
            })?;
        let body = bytes::Bytes::from(body);
        let (r, body, content_type) = (&r, &body, &content_type);
        self.retrying("push-manifest", move || {
            self.oci
                .push_manifest_raw(r, body.to_vec(), content_type.clone())
        })
        .await
        .map_err(|e| protocol("push-manifest", image, e))?;
        Ok(digest)
    }

    /// Downloads the manifest of `image` (by digest if it has one, else by tag): its bytes,
    /// media type and digest. A digest reference is verified; more than
    /// [`MAX_MANIFEST_BYTES`] is refused as soon as they arrive (or are announced).
    pub async fn pull_manifest(
        &self,
        image: &ImageRef,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let accepted = [
            media::OCI_MANIFEST,
            media::OCI_INDEX,
            media::DOCKER_MANIFEST,
            media::DOCKER_LIST,
        ];
        let a = self.authorize_pull(image).await?;
        let name = image.reference();
        let too_large = |got: u64| RegistryError::TooLarge {
            what: "manifest",
            reference: image.to_string(),
            name: name.clone(),
            limit: MAX_MANIFEST_BYTES,
            got,
        };
        let (a, path, accept, too_large) = (
            &a,
            &format!("manifests/{name}"),
            &accepted.join(", "),
            &too_large,
        );
        let (bytes, content_type) = self
            .retrying_http("pull-manifest", move || async move {
                let resp = self
                    .get(image, a, path, accept, "pull-manifest", Some(SHORT_REQUEST))
                    .await?;
                let content_type = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
                let bytes =
                    read_capped(resp, MAX_MANIFEST_BYTES, too_large, image, "pull-manifest")
                        .await?;
                Ok((bytes, content_type))
            })
            .await?;
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
            .or(content_type.filter(|c| accepted.contains(&c.as_str())))
            .unwrap_or_else(|| accepted[0].into());
        Ok((bytes, media_type, actual))
    }
}

impl Registry {
    /// Resolves `image` to an image manifest for `platform`: tries the mirrors of its registry
    /// first, follows an image index (OCI or Docker manifest list) to the platform's entry, and
    /// verifies every digest. The returned [`ResolvedManifest::source`] is where the blobs are.
    pub async fn resolve_manifest(
        &self,
        image: &ImageRef,
        platform: &PlatformSpec,
    ) -> Result<ResolvedManifest, RegistryError> {
        let mut first_err = None;
        for source in self.pull_sources(image) {
            match self.resolve_from(&source, platform).await {
                Ok(m) => return Ok(m),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        Err(first_err.expect("pull_sources is never empty"))
    }

    async fn resolve_from(
        &self,
        source: &ImageRef,
        platform: &PlatformSpec,
    ) -> Result<ResolvedManifest, RegistryError> {
        let (bytes, media_type, digest) = self.pull_manifest(source).await?;
        if media_type != media::OCI_INDEX && media_type != media::DOCKER_LIST {
            return Ok(ResolvedManifest {
                source: source.clone(),
                bytes,
                media_type,
                digest,
            });
        }
        let index: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                operation: "pull-manifest",
                reference: source.to_string(),
                message: format!("unreadable image index: {e}"),
            })?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let matches = |e: &serde_json::Value, variant: bool| {
            let p = &e["platform"];
            p["os"].as_str() == Some(platform.os.as_str())
                && p["architecture"].as_str() == Some(platform.architecture.as_str())
                && (!variant || p["variant"].as_str() == platform.variant.as_deref())
        };
        let chosen = entries
            .iter()
            .find(|e| matches(e, true))
            .or_else(|| entries.iter().find(|e| matches(e, false)))
            .ok_or_else(|| RegistryError::Protocol {
                operation: "pull-manifest",
                reference: source.to_string(),
                message: format!(
                    "the image index has no manifest for {}/{}; it has: {}",
                    platform.os,
                    platform.architecture,
                    entries
                        .iter()
                        .map(|e| format!(
                            "{}/{}",
                            e["platform"]["os"].as_str().unwrap_or("?"),
                            e["platform"]["architecture"].as_str().unwrap_or("?")
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let d: Digest = chosen["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e: berth_types::DigestError| RegistryError::Protocol {
                operation: "pull-manifest",
                reference: source.to_string(),
                message: e.to_string(),
            })?;
        let pinned = source.pinned(d);
        let (bytes, media_type, digest) = self.pull_manifest(&pinned).await?;
        Ok(ResolvedManifest {
            source: pinned,
            bytes,
            media_type,
            digest,
        })
    }

    /// Streams a blob whose descriptor says `size` bytes into the file `dest` (through
    /// `dest.partial`, renamed when complete); the blob is never held in memory. Fails as soon
    /// as more than `size` bytes arrive (or a Content-Length says so), and at the end when the
    /// size or the digest differ ([`RegistryError::SizeMismatch`],
    /// [`RegistryError::DigestMismatch`]). Returns its size.
    pub async fn pull_blob_to_file(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size: u64,
        dest: &std::path::Path,
    ) -> Result<u64, RegistryError> {
        use tokio::io::AsyncWriteExt as _;
        let a = self.authorize_pull(image).await?;
        let partial = dest.with_extension("partial");
        let io = |e: std::io::Error| RegistryError::Protocol {
            operation: "pull-blob",
            reference: image.to_string(),
            message: format!("writing {}: {e}", partial.display()),
        };
        let over = |got: u64, complete: bool| RegistryError::SizeMismatch {
            reference: image.to_string(),
            digest: digest.clone(),
            expected: size,
            got,
            complete,
        };
        let (a, path, part, io, over) = (&a, &format!("blobs/{digest}"), &partial, &io, &over);
        let pulled = self
            .retrying_http("pull-blob", move || async move {
                let mut resp = self.get(image, a, path, "", "pull-blob", None).await?;
                if let Some(announced) = resp.content_length()
                    && announced > size
                {
                    return Err(Fail::Fatal(over(size, false)));
                }
                // Each attempt starts the file again.
                let file = tokio::fs::File::create(part)
                    .await
                    .map_err(|e| Fail::Fatal(io(e)))?;
                let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
                let mut hasher = Sha256::new();
                let mut got = 0u64;
                while let Some(chunk) = resp.chunk().await.map_err(|e| {
                    Fail::Transient(RegistryError::Protocol {
                        operation: "pull-blob",
                        reference: image.to_string(),
                        message: error_chain(&e),
                    })
                })? {
                    got += chunk.len() as u64;
                    if got > size {
                        return Err(Fail::Fatal(over(size, false)));
                    }
                    hasher.update(&chunk);
                    out.write_all(&chunk)
                        .await
                        .map_err(|e| Fail::Fatal(io(e)))?;
                }
                out.flush().await.map_err(|e| Fail::Fatal(io(e)))?;
                Ok((Digest::sha256_from_bytes(&hasher.finalize().into()), got))
            })
            .await;
        let (actual, got) = match pulled {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
        };
        if got != size || &actual != digest {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(if got != size {
                over(got, true)
            } else {
                RegistryError::DigestMismatch {
                    reference: image.to_string(),
                    expected: digest.clone(),
                    actual,
                }
            });
        }
        tokio::fs::rename(&partial, dest).await.map_err(io)?;
        Ok(size)
    }
    /// Uploads the blob in file `path` (whose digest is `digest`) into the repository of
    /// `image`, streaming it in 4 MiB chunks, unless the registry has it already (HEAD).
    /// Returns whether it was uploaded.
    pub async fn push_blob_file(
        &self,
        image: &ImageRef,
        digest: &Digest,
        path: &std::path::Path,
    ) -> Result<bool, RegistryError> {
        Ok(self.push_blob_file_from(image, digest, path, None).await? == BlobPush::Uploaded)
    }

    /// Like [`Registry::push_blob_file`], but first asks the registry to mount the blob from
    /// `mount_from` — another repository of the same registry that has it, typically the base
    /// image's — so its bytes never travel. A registry that cannot mount answers 202 (an upload
    /// session) instead of 201; then, and on any other mount failure, the blob is uploaded.
    pub async fn push_blob_file_from(
        &self,
        image: &ImageRef,
        digest: &Digest,
        path: &std::path::Path,
        mount_from: Option<&ImageRef>,
    ) -> Result<BlobPush, RegistryError> {
        let r = self.authenticate(image, RegistryOperation::Push).await?;
        let (rr, d) = (&r, &digest.to_string());
        if self.present_before_push(rr, d).await {
            return Ok(BlobPush::Present);
        }
        if let Some(from) = mount_from
            && from.registry() == image.registry()
            && from.repository() != image.repository()
        {
            let source = Self::reference(from);
            let source = &source;
            match self
                .retrying("mount-blob", move || self.oci.mount_blob(rr, source, d))
                .await
            {
                Ok(()) => {
                    self.stats.mounted.fetch_add(1, Ordering::Relaxed);
                    return Ok(BlobPush::Mounted);
                }
                Err(e) => tracing::debug!(
                    "mounting {digest} from {from} into {image} failed ({e}); uploading it"
                ),
            }
        }
        let io = |e: std::io::Error| RegistryError::Protocol {
            operation: "push-blob",
            reference: image.to_string(),
            message: format!("reading {}: {e}", path.display()),
        };
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        self.retrying("push-blob", move || async move {
            // Each attempt reads the file from the start.
            let file = tokio::fs::File::open(path).await?;
            self.oci
                .push_blob_stream(rr, file_chunks(file), d, Some(size))
                .await
        })
        .await
        .map_err(|e| protocol("push-blob", image, e))?;
        self.stats.uploaded.fetch_add(1, Ordering::Relaxed);
        Ok(BlobPush::Uploaded)
    }
}

/// How to authorize requests to one registry, learned from its `/v2/` challenge.
struct Authorized {
    /// `scheme://host` of the registry.
    base: String,
    /// The `Authorization` header value, if any.
    header: Option<String>,
    /// The challenge's scheme (`Bearer`, `Basic`); `None` when `/v2/` answered 200.
    scheme: Option<String>,
    /// Whose credentials were used.
    user: Option<String>,
}

/// A parsed `WWW-Authenticate` challenge.
struct Challenge {
    scheme: String,
    params: BTreeMap<String, String>,
    raw: String,
}

/// One failed attempt of berth's own HTTP calls: worth another try or not.
enum Fail {
    Transient(RegistryError),
    Fatal(RegistryError),
}

impl Fail {
    /// An unreachable registry or a 5xx answer may pass; everything else will not.
    fn classify(e: RegistryError) -> Fail {
        match e {
            RegistryError::Unreachable { .. } => Fail::Transient(e),
            RegistryError::Unexpected { status, .. } if status >= 500 => Fail::Transient(e),
            e => Fail::Fatal(e),
        }
    }
}

/// Whether the credentials of the registry at `registry_host` may be sent to the token
/// service `realm`: over HTTPS, yes (Docker Hub's realm is another host, `auth.docker.io`);
/// over plain HTTP only when the user named the registry itself insecure and the realm is on
/// the same host (another port of it, e.g. a token server beside a registry on loopback or a
/// private network): those credentials already travel there in the clear. A registry reached
/// over HTTPS naming a plain-HTTP realm, or a plain-HTTP realm on another host, is refused.
pub(crate) fn credentials_may_go_to(
    realm: &reqwest::Url,
    registry_host: &str,
    registry_insecure: bool,
) -> Result<(), String> {
    match realm.scheme() {
        "https" => Ok(()),
        "http" if !registry_insecure => {
            Err("that is plain HTTP, while the registry itself is reached over HTTPS".to_string())
        }
        "http" => {
            let name = match registry_host.rsplit_once(':') {
                Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
                _ => registry_host,
            };
            if realm.host_str() == Some(name) {
                Ok(())
            } else {
                Err(format!(
                    "that is plain HTTP on another host ({}) than the registry ({name})",
                    realm.host_str().unwrap_or("none")
                ))
            }
        }
        other => Err(format!("`{other}:` is neither HTTPS nor HTTP")),
    }
}

/// At most `limit` bytes of a body (for error texts and token answers).
async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        let room = (limit as usize).saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() as u64 >= limit {
            break;
        }
    }
    Ok(out)
}

/// The whole body, refused with `too_large(bytes so far)` as soon as more than `limit` bytes
/// arrive or a Content-Length announces more.
async fn read_capped(
    mut resp: reqwest::Response,
    limit: u64,
    too_large: &(dyn Fn(u64) -> RegistryError + Sync),
    image: &ImageRef,
    operation: &'static str,
) -> Result<Vec<u8>, Fail> {
    if let Some(announced) = resp.content_length()
        && announced > limit
    {
        return Err(Fail::Fatal(too_large(announced)));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        Fail::Transient(RegistryError::Protocol {
            operation,
            reference: image.to_string(),
            message: error_chain(&e),
        })
    })? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Fail::Fatal(too_large((out.len() + chunk.len()) as u64)));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A file as a stream of 4 MiB chunks.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<bytes::Bytes, OciDistributionError>> {
    futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 4 << 20];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .await
                .map_err(OciDistributionError::IoError)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        Ok(Some((bytes::Bytes::from(buf), file)))
    })
}

/// `image` on each of its registry's mirrors, then `image` itself.
fn pull_sources(mirrors: &[(String, String)], image: &ImageRef) -> Vec<ImageRef> {
    let mut out: Vec<ImageRef> = mirrors
        .iter()
        .filter(|(reg, _)| reg == image.registry())
        .map(|(_, host)| image.with_registry(host))
        .collect();
    out.push(image.clone());
    out
}

/// sha256 and size of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<(Digest, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((Digest::sha256_from_bytes(&h.finalize().into()), size))
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
    let mut message = e.to_string();
    if message.contains("code: 401") || message.contains("code: 403") {
        message.push_str(&format!(
            "; the registry wants other credentials: run `docker login {host}`, or pass \
             --docker-config FILE or --registry-secret NAMESPACE/NAME (a kubernetes.io/dockerconfigjson Secret)",
            host = image.registry()
        ));
    }
    RegistryError::Protocol {
        operation,
        reference: image.to_string(),
        message,
    }
}

async fn unexpected(url: &str, resp: reqwest::Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = read_limited(resp, 4096).await.unwrap_or_default();
    let body: String = String::from_utf8_lossy(&body).chars().take(200).collect();
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
    fn mirrors_parse_and_come_before_the_registry() {
        let m = RegistryOptions::parse_mirrors("docker.io=127.0.0.1:15000,m2:5000;ghcr.io=g:1")
            .unwrap();
        assert_eq!(
            m,
            vec![
                ("docker.io".into(), "127.0.0.1:15000".into()),
                ("docker.io".into(), "m2:5000".into()),
                ("ghcr.io".into(), "g:1".into()),
            ]
        );
        assert!(RegistryOptions::parse_mirrors("nohost").is_err());
        let img: ImageRef = "busybox:1.35".parse().unwrap();
        let sources: Vec<String> = pull_sources(&m, &img)
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            sources,
            vec![
                "127.0.0.1:15000/library/busybox:1.35",
                "m2:5000/library/busybox:1.35",
                "docker.io/library/busybox:1.35"
            ]
        );
    }

    #[test]
    fn credentials_go_to_a_plain_http_token_realm_only_on_the_insecure_registrys_own_host() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        // Docker Hub: HTTPS realm on another host.
        assert!(
            credentials_may_go_to(&url("https://auth.docker.io/token"), "docker.io", false).is_ok()
        );
        // An HTTPS registry naming a plain-HTTP realm (a downgrade), even on its own host.
        let e = credentials_may_go_to(&url("http://reg.example/token"), "reg.example", false);
        assert!(e.unwrap_err().contains("reached over HTTPS"));
        // A plain-HTTP registry the user named: its own host, any port.
        assert!(
            credentials_may_go_to(&url("http://127.0.0.1:5001/t"), "127.0.0.1:5000", true).is_ok()
        );
        assert!(credentials_may_go_to(&url("http://[::1]:5001/t"), "[::1]:5000", true).is_ok());
        // ... but not another host.
        let e = credentials_may_go_to(&url("http://127.0.0.2:5001/t"), "127.0.0.1:5000", true);
        assert!(e.unwrap_err().contains("another host"));
        assert!(credentials_may_go_to(&url("ftp://127.0.0.1/t"), "127.0.0.1:5000", true).is_err());
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            sha256(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
