//! Raw command-line flags, exactly as clap parses them.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// berth takes an application from `git push` to a verified rollout on Kubernetes: build the
/// image without a Docker daemon, push it, render the manifests, deploy, watch the rollout,
/// roll back on failure, keep the history.
#[derive(Parser, Debug)]
#[command(name = "berth", version, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v, -vv). BERTH_LOG overrides it with a tracing filter.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check that everything berth needs is there: cluster, permissions, registry, OCI runtime,
    /// kustomize and helm. Exits non-zero when something required is missing.
    Doctor(DoctorArgs),
    /// Build an image from a Dockerfile without a Docker daemon; store, export or push it.
    Build(crate::build_cmd::BuildCmdArgs),
}

/// How results are printed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// One JSON document for machines.
    Json,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// kubeconfig context to check (default: the current context).
    #[arg(long, env = "BERTH_CONTEXT")]
    pub context: Option<String>,

    /// Namespace in which berth must be allowed to create Deployments, Jobs and Leases
    /// (default: the context's namespace).
    #[arg(long, short = 'n', env = "BERTH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Registry to check, as host[:port] (e.g. ghcr.io, 127.0.0.1:5000).
    #[arg(long, env = "BERTH_REGISTRY")]
    pub registry: Option<String>,

    /// Registry hosts to reach over plain HTTP instead of HTTPS. Only for registries on this
    /// machine or a trusted network; comma-separated or repeated.
    #[arg(long, env = "BERTH_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,

    /// Docker config with registry credentials (default: $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json).
    #[arg(long, env = "BERTH_DOCKER_CONFIG")]
    pub docker_config: Option<std::path::PathBuf>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}
