//! Flags shared by every command that builds images (`build`, `run`, `dev`, `promote`).

use std::path::PathBuf;
use std::sync::Arc;

use berth_build::Platform;
use berth_build::exec::{BuildOptions, Compression, Secrets, Store};
use berth_cluster::{Cluster, ConnectOptions, ObjectKey};
use berth_registry::{CredentialStore, Registry, RegistryOptions};
use clap::Args;

/// Where images are stored, how RUN steps run, how registries are reached.
#[derive(Args, Debug, Clone)]
pub struct BuilderFlags {
    /// Platforms of one image built at once: the command's `--jobs` (default: the cores).
    #[arg(skip)]
    pub platform_jobs: Option<std::num::NonZeroUsize>,

    /// The content store and build cache (an OCI layout; default ~/.cache/berth/store).
    #[arg(long, env = "BERTH_STORE")]
    pub store: Option<PathBuf>,

    /// The OCI runtime for RUN steps and tests.
    #[arg(long, env = "BERTH_RUNTIME", default_value = "runc")]
    pub runtime: String,

    /// Registry hosts to reach over plain HTTP (comma-separated or repeated).
    #[arg(long, env = "BERTH_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,

    /// Pull mirrors, registry=host (e.g. docker.io=mirror.local:5000); `;`-separated.
    #[arg(long, env = "BERTH_REGISTRY_MIRROR")]
    pub registry_mirror: Option<String>,

    /// Docker config with registry credentials.
    #[arg(long, env = "BERTH_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,

    /// Registry credentials from a Kubernetes Secret of type kubernetes.io/dockerconfigjson,
    /// NAMESPACE/NAME (repeatable; read through the kubeconfig or in-cluster config; they win
    /// over --docker-config for the same registry).
    #[arg(long, env = "BERTH_REGISTRY_SECRET", value_name = "NAMESPACE/NAME")]
    pub registry_secret: Vec<String>,

    /// Target platforms os/arch[/variant], comma-separated (default: this machine's). Two or
    /// more build one image per platform and push an image index; RUN steps of a foreign
    /// architecture run through qemu-user (Debian's qemu-user-static).
    #[arg(long, env = "BERTH_PLATFORM", value_delimiter = ',')]
    pub platform: Vec<String>,

    /// Compression of the layers berth writes: gzip (default) or zstd.
    #[arg(long, env = "BERTH_COMPRESSION", default_value = "gzip")]
    pub compression: String,

    /// A secret for `RUN --mount=type=secret`: id=ID,src=FILE or id=ID,env=VAR (repeatable).
    /// Mounted at /run/secrets/ID; never stored in a layer or the build cache.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secret: Vec<String>,

    /// Network of RUN steps and tests: `isolated` (default: a namespace of their own with
    /// outbound access through slirp4netns; the host's own addresses and 169.254.0.0/16 are
    /// unreachable), `none` or `host`. `RUN --network=host|none` still wins for its step.
    /// Wins over berth.yaml's `build.network` (on `berth serve`, berth.yaml can only narrow it).
    #[arg(long, env = "BERTH_NETWORK", value_name = "isolated|none|host")]
    pub network: Option<String>,

    /// Most processes alive at once in a RUN step or test (default 4096; 0: no limit). Wins
    /// over berth.yaml's `build.pids`.
    #[arg(long, env = "BERTH_PIDS_LIMIT")]
    pub pids_limit: Option<u32>,

    /// Memory limit of a RUN step or test, e.g. 4g (default: half of this machine's memory).
    /// Wins over berth.yaml's `build.memory`.
    #[arg(long, env = "BERTH_MEMORY", value_parser = berth_build::exec::runtime::parse_memory)]
    pub memory: Option<u64>,

    /// Deadline of one RUN step (default 1h); the step is killed after it. Wins over
    /// berth.yaml's `build.step-timeout`.
    #[arg(long, env = "BERTH_STEP_TIMEOUT", value_parser = crate::cli::parse_duration)]
    pub step_timeout: Option<std::time::Duration>,

    /// Deadline of one service's `test` command (default 15m). Wins over berth.yaml's
    /// `test: {command, timeout}`.
    #[arg(long, env = "BERTH_TEST_TIMEOUT", value_parser = crate::cli::parse_duration)]
    pub test_timeout: Option<std::time::Duration>,

    /// Extra CA certificates (PEM file) trusted by RUN steps and tests (repeatable), e.g. a
    /// TLS-intercepting proxy's; mounted read-only for the step, never stored in a layer.
    /// berth.yaml's `build.ca` files are trusted as well.
    #[arg(long = "ca-cert", env = "BERTH_CA_CERT", value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
}

impl BuilderFlags {
    /// The `--platform` list, parsed.
    pub fn platforms(&self) -> Result<Vec<Platform>, String> {
        self.platform
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| Platform::parse(p.trim()).map_err(|e| format!("--platform {p}: {e}")))
            .collect()
    }

    /// Builder settings from these flags plus a project's own insecure hosts and mirrors
    /// (berth.yaml's `registry`). `cluster` is used to read `--registry-secret`s; without one,
    /// berth connects with the default kubeconfig (or in-cluster config) when a secret is named.
    pub async fn options(
        &self,
        mut insecure: Vec<String>,
        mut mirrors: Vec<(String, String)>,
        source_date_epoch: Option<i64>,
        no_cache: bool,
        cluster: Option<&Cluster>,
    ) -> Result<BuildOptions, String> {
        insecure.extend(self.insecure_registry.iter().cloned());
        if let Some(m) = &self.registry_mirror {
            mirrors.extend(RegistryOptions::parse_mirrors(m)?);
        }
        let mut registry = Registry::new(RegistryOptions {
            insecure,
            docker_config: self.docker_config.clone(),
            mirrors,
        })
        .map_err(|e| e.to_string())?;
        if !self.registry_secret.is_empty() {
            let connected;
            let cluster = match cluster {
                Some(c) => c,
                None => {
                    connected = Cluster::connect(&ConnectOptions::default())
                        .await
                        .map_err(|e| format!("--registry-secret: {e}"))?;
                    &connected
                }
            };
            for name in &self.registry_secret {
                registry.add_credentials(registry_secret(cluster, name).await?);
            }
        }
        let store = Store::open(self.store.clone().unwrap_or_else(Store::default_root))
            .map_err(|e| e.to_string())?;
        let mut opts = BuildOptions::new(store, Arc::new(registry), self.runtime.clone());
        opts.source_date_epoch = source_date_epoch;
        opts.no_cache = no_cache;
        opts.platforms = self.platforms()?;
        if let Some(jobs) = self.platform_jobs {
            opts.platform_jobs = jobs;
        }
        opts.compression = self
            .compression
            .parse::<Compression>()
            .map_err(|e| format!("--compression: {e}"))?;
        let mut secrets = Secrets::default();
        for s in &self.secret {
            let (id, source) = Secrets::parse_flag(s)?;
            secrets.insert(id, source);
        }
        opts.secrets = secrets;
        use berth_build::exec::runtime::{Network, Pinned, RepoPolicy};
        if let Some(n) = &self.network {
            opts.sandbox.network = match n.as_str() {
                "isolated" => Network::Isolated,
                "none" => Network::None,
                "host" => Network::Host,
                other => return Err(format!("--network {other}: write isolated, none or host")),
            };
        }
        if let Some(p) = self.pids_limit {
            opts.sandbox.pids_limit = p;
        }
        if self.memory.is_some() {
            opts.sandbox.memory = self.memory;
        }
        if self.step_timeout.is_some() {
            opts.sandbox.step_timeout = self.step_timeout;
        }
        if self.test_timeout.is_some() {
            opts.sandbox.test_timeout = self.test_timeout;
        }
        // `berth serve` replaces this with `RepoPolicy::Untrusted`.
        opts.sandbox.repo = RepoPolicy::Trusted {
            pinned: Pinned {
                network: self.network.is_some(),
                pids_limit: self.pids_limit.is_some(),
                memory: self.memory.is_some(),
                step_timeout: self.step_timeout.is_some(),
                test_timeout: self.test_timeout.is_some(),
            },
        };
        for f in &self.ca_cert {
            if !f.is_file() {
                return Err(format!("--ca-cert {}: no such file", f.display()));
            }
        }
        opts.sandbox.ca_certs = self.ca_cert.clone();
        Ok(opts)
    }
}

/// Reads the registry credentials of the Secret `NAMESPACE/NAME`.
async fn registry_secret(cluster: &Cluster, name: &str) -> Result<CredentialStore, String> {
    let (namespace, secret) = name
        .split_once('/')
        .filter(|(n, s)| !n.is_empty() && !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| format!("--registry-secret {name}: write NAMESPACE/NAME"))?;
    let key = ObjectKey::new("v1", "Secret", Some(namespace), secret);
    let object = cluster
        .get(&key)
        .await
        .map_err(|e| format!("--registry-secret {name}: {e}"))?
        .ok_or_else(|| {
            format!(
                "--registry-secret {name}: no Secret {secret} in namespace {namespace} (context {}); \
                 create it with `kubectl -n {namespace} create secret docker-registry {secret} \
                 --docker-server=HOST --docker-username=USER --docker-password=...`",
                cluster.context()
            )
        })?;
    CredentialStore::from_kubernetes_secret(&object, name).map_err(|e| e.to_string())
}

/// The engine's builder settings for a run: these flags plus the project's own `registry`
/// (insecure hosts, mirrors), registry Secrets read through the run's cluster.
impl berth_pipeline::engine::BuildSettings for BuilderFlags {
    fn options<'a>(
        &'a self,
        config: &'a berth_config::Config,
        cluster: &'a Cluster,
    ) -> berth_pipeline::executor::StepFuture<'a, Result<BuildOptions, String>> {
        let mirrors: Vec<(String, String)> = config
            .registry
            .mirrors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Box::pin(BuilderFlags::options(
            self,
            config.registry.insecure.clone(),
            mirrors,
            None,
            false,
            Some(cluster),
        ))
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// `berth serve` spawns runs, builder settings included, on its multi-threaded runtime.
    /// A compile-time check; it never builds anything.
    #[test]
    fn builder_options_future_is_send() {
        let _ = |f: &BuilderFlags, cluster: &Cluster| {
            assert_send(&f.options(Vec::new(), Vec::new(), None, false, Some(cluster)));
        };
    }
}
