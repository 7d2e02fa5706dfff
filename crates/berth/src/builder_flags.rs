//! Flags shared by every command that builds images (`build`, `run`, `dev`, `promote`).

use std::path::PathBuf;
use std::sync::Arc;

use berth_build::exec::{BuildOptions, Store};
use berth_registry::{Registry, RegistryOptions};
use clap::Args;

/// Where images are stored, how RUN steps run, how registries are reached.
#[derive(Args, Debug, Clone)]
pub struct BuilderFlags {
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
}

impl BuilderFlags {
    /// Builder settings from these flags plus a project's own insecure hosts and mirrors
    /// (berth.yaml's `registry`).
    pub fn options(
        &self,
        mut insecure: Vec<String>,
        mut mirrors: Vec<(String, String)>,
        source_date_epoch: Option<i64>,
        no_cache: bool,
    ) -> Result<BuildOptions, String> {
        insecure.extend(self.insecure_registry.iter().cloned());
        if let Some(m) = &self.registry_mirror {
            mirrors.extend(RegistryOptions::parse_mirrors(m)?);
        }
        let registry = Registry::new(RegistryOptions {
            insecure,
            docker_config: self.docker_config.clone(),
            mirrors,
        })
        .map_err(|e| e.to_string())?;
        let store = Store::open(self.store.clone().unwrap_or_else(Store::default_root))
            .map_err(|e| e.to_string())?;
        let mut opts = BuildOptions::new(store, Arc::new(registry), self.runtime.clone());
        opts.source_date_epoch = source_date_epoch;
        opts.no_cache = no_cache;
        Ok(opts)
    }
}
