//! Raw command-line flags, exactly as clap parses them.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// berth takes an application from `git push` to a verified rollout on Kubernetes: build the
/// image without a Docker daemon, push it, render the manifests, deploy, watch the rollout,
/// roll back on failure, keep the history.
#[derive(Parser, Debug)]
#[command(name = "berth", version, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v, -vv). BERTH_LOG overrides it with a tracing filter.
    #[arg(short, long, action = clap::ArgAction::Count)]
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
    /// Read an existing repository (Dockerfiles, k8s folders, Kustomize, Helm charts,
    /// skaffold.yaml) and write a berth.yaml that works, explaining each choice. Sibling
    /// service folders sharing one template get a `discover` entry: a new folder is a new
    /// service.
    Init(crate::init_cmd::InitArgs),
    /// Build what changed since the environment's last deploy (in parallel, `--jobs` at
    /// once), push it, render every service with the new digests and deploy the environment's
    /// release — all from berth.yaml. At a terminal, progress shows one spinner per step and
    /// its time.
    Run(crate::run_cmd::RunArgs),
    /// The inner loop: run, then on every saved change build and deploy again into your own
    /// namespace (default `dev-$USER`), streaming the rebuilt services' pod logs. Ctrl-C
    /// finishes the run in progress, then stops.
    Dev(crate::dev_cmd::DevArgs),
    /// Deploy exactly the digests live in one environment to another, with the target's
    /// values: build once, deploy many. Refuses when the source's last deploy failed.
    Promote(crate::run_cmd::PromoteArgs),
    /// Print the JSON Schema of berth.yaml, for editors; `--markdown` prints the reference of
    /// every key instead (docs/config.md is this output).
    Schema(SchemaArgs),
    /// Print a shell completion script: `berth completions bash > /etc/bash_completion.d/berth`,
    /// `berth completions zsh > "${fpath[1]}/_berth"`,
    /// `berth completions fish > ~/.config/fish/completions/berth.fish`.
    Completions(CompletionsArgs),
    /// Print berth's man page (roff): `berth man > /usr/local/share/man/man1/berth.1`;
    /// `--out-dir DIR` writes one page per command (berth.1, berth-run.1, ...).
    Man(ManArgs),
    /// Render manifests (plain YAML, *.j2 templates, Kustomize, Helm) with pinned images and
    /// berth's labels, and print the final YAML in a stable order. Objects of deprecated or
    /// removed Kubernetes APIs (1.16-1.33) get a warning naming the replacement, against the
    /// cluster's version when known; `--convert` rewrites the mechanical cases.
    Render(RenderCmd),
    /// Deploy manifests into a namespace as a numbered release: apply in order, run hooks,
    /// wait until everything is ready, roll back automatically on failure.
    Deploy(DeployArgs),
    /// Show what `deploy` would change: server-side dry run against the live objects, as a
    /// unified diff (Secret values redacted). Exits 1 when something differs.
    Diff(DeployArgs),
    /// List a release's revisions: status, when, commit, outcome.
    History(HistoryArgs),
    /// Re-deploy an earlier revision (the previous one by default) as a new revision.
    Rollback(RollbackArgs),
    /// Copy data between environments: `berth data clone --from prod --to staging --pvc db`.
    Data(crate::data_cmd::DataArgs),
    /// The delivery server: git webhooks (GitHub, Gitea, Gogs, GitLab) or polling in, queued
    /// runs (one per environment at a time), history, a JSON API with live logs, metrics and a
    /// web UI. `berth serve --repo PATH_OR_URL` works with no configuration (SQLite in the data
    /// directory, 127.0.0.1:8080); `berth serve token create NAME --role deployer` makes an
    /// API token.
    Serve(crate::serve_cmd::ServeArgs),
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// The berth.yaml reference as Markdown: every key with its type, default, an example and
    /// the error a wrong value gives.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write berth.1 and one page per subcommand into this folder instead of printing berth.1.
    #[arg(long)]
    pub out_dir: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Which cluster and namespace.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// kubeconfig context (default: the current context).
    #[arg(long, env = "BERTH_CONTEXT")]
    pub context: Option<String>,

    /// The environment's namespace (default: the context's namespace). `deploy` creates it
    /// when missing; an identity that owns it needs no right to create namespaces.
    #[arg(long, short = 'n', env = "BERTH_NAMESPACE")]
    pub namespace: Option<String>,
}

/// The kustomize and helm binaries that render Kustomize and Helm sources.
#[derive(Args, Debug, Clone)]
pub struct ToolFlags {
    /// kustomize binary.
    #[arg(long, default_value = "kustomize", env = "BERTH_KUSTOMIZE")]
    pub kustomize_bin: std::path::PathBuf,

    /// helm binary.
    #[arg(long, default_value = "helm", env = "BERTH_HELM")]
    pub helm_bin: std::path::PathBuf,

    /// How long one `helm template` or `kustomize build` may take before it is stopped.
    #[arg(long, default_value = "5m", env = "BERTH_TOOL_TIMEOUT", value_parser = crate::cli::parse_duration)]
    pub tool_timeout: std::time::Duration,
}

impl ToolFlags {
    /// The binaries as the renderer takes them.
    pub fn tools(&self) -> berth_render::Tools {
        berth_render::Tools {
            kustomize: self.kustomize_bin.clone(),
            helm: self.helm_bin.clone(),
            deadline: self.tool_timeout,
        }
    }
}

/// Where manifests come from.
#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// A manifest file or directory (recursive: *.yaml, *.yml, *.json; *.yaml.j2 files are
    /// minijinja templates rendered with the values). Repeatable.
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Vec<std::path::PathBuf>,

    /// A Kustomize directory, built with `kustomize build`. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub kustomize: Vec<std::path::PathBuf>,

    /// A Helm chart (directory or packaged), rendered with `helm template`. Repeatable.
    #[arg(long, value_name = "CHART")]
    pub helm: Vec<String>,

    /// Values file for templates and Helm charts; later files win. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub values: Vec<std::path::PathBuf>,

    /// Set a value (a.b=c); wins over values files. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Pin an image: every container image NAME (any tag, or the exact tag given) becomes
    /// REPO@sha256:DIGEST. Repeatable.
    #[arg(long, value_name = "NAME=REPO@sha256:DIGEST")]
    pub image: Vec<String>,

    /// kustomize and helm binaries.
    #[command(flatten)]
    pub tools: ToolFlags,
}

/// `berth render`.
#[derive(Args, Debug)]
pub struct RenderCmd {
    #[command(flatten)]
    pub render: RenderArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Release name for berth's labels.
    #[arg(long)]
    pub release: Option<String>,

    /// Render every service of this berth.yaml as `berth run` would deploy it, each image
    /// about to be built pinned to a placeholder digest (`repo@sha256:000...`), and check that
    /// every built image is referenced. The default when no -f, --kustomize or --helm is given
    /// and ./berth.yaml exists.
    #[arg(long, short = 'c', value_name = "BERTH_YAML")]
    pub config: Option<std::path::PathBuf>,

    /// With berth.yaml: the environment whose values and namespace to render with (default:
    /// the only one).
    #[arg(long, short = 'e')]
    pub env: Option<String>,

    /// With berth.yaml: a repository prefix that wins over `registry.prefix`.
    #[arg(long, env = "BERTH_DEFAULT_REPO", value_name = "REPO")]
    pub default_repo: Option<String>,

    #[command(flatten)]
    pub convert: ConvertFlags,
}

/// `berth render --convert`: objects of removed Kubernetes APIs rewritten into their
/// replacements.
#[derive(Args, Debug, Clone, Default)]
pub struct ConvertFlags {
    /// Rewrite objects of removed or deprecated APIs where the change is mechanical:
    /// Deployment/DaemonSet/ReplicaSet/StatefulSet from extensions/v1beta1 and apps/v1beta1,
    /// v1beta2 to apps/v1 (spec.selector from the pod template's labels when missing);
    /// Ingress to networking.k8s.io/v1 (backend fields, pathType ImplementationSpecific when
    /// absent, the kubernetes.io/ingress.class annotation to spec.ingressClassName); HPA
    /// v2beta1/v2beta2 to autoscaling/v2; CronJob to batch/v1; PodDisruptionBudget to
    /// policy/v1; RBAC, NetworkPolicy, PriorityClass and the other unchanged renames. The
    /// converted YAML is printed on stdout, one line per object converted or left on stderr
    /// (what was changed, what to do by hand: PodSecurityPolicy, CRDs, webhooks...). Exits 1
    /// when something is left to do by hand.
    #[arg(long)]
    pub convert: bool,

    /// With --convert: rewrite the plain manifest files given with -f in place instead of
    /// printing YAML. Documents that need no change are kept byte for byte; a converted
    /// document is rewritten in berth's YAML form (sorted keys, its inner comments lost —
    /// review with `git diff`). Templates, Kustomize and Helm output are never rewritten:
    /// their objects are named with what to change in the source. Images are not pinned
    /// into the files.
    #[arg(long, requires = "convert")]
    pub write: bool,

    /// The Kubernetes version to check deprecated and removed APIs against (e.g. 1.25).
    /// Default: asked from the cluster of the current context (3 s), when an object uses a
    /// deprecated or removed API.
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,
}

/// `berth deploy` and `berth diff`.
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Release name: one per application and namespace; its history and lock hang on it.
    #[arg(long, short = 'r')]
    pub release: String,

    #[command(flatten)]
    pub render: RenderArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Deadline for the rollout: hooks and readiness of every object (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = crate::cli::parse_duration)]
    pub timeout: std::time::Duration,

    /// On failure, leave the failed revision in place for debugging instead of rolling back.
    #[arg(long)]
    pub no_rollback: bool,

    /// Take over fields that another field manager (kubectl, a controller) owns.
    #[arg(long)]
    pub force_conflicts: bool,

    /// How long to wait for another deploy of the same release to finish.
    #[arg(long, default_value = "2m", value_parser = crate::cli::parse_duration)]
    pub lock_timeout: std::time::Duration,

    /// How long the release lock outlives a killed deploy.
    #[arg(long, default_value = "30s", value_parser = crate::cli::parse_duration)]
    pub lock_ttl: std::time::Duration,

    /// Release records to keep (like Helm's --history-max); the live one is always kept,
    /// 0 keeps all.
    #[arg(long, default_value_t = berth_deploy::release::DEFAULT_HISTORY_MAX)]
    pub history_max: usize,

    #[command(flatten)]
    pub pulls: PullCheckArgs,

    /// Source commit to record with the revision.
    #[arg(long, env = "BERTH_COMMIT")]
    pub commit: Option<String>,

    /// Output: progress lines on stderr and a summary (table), or JSON events, one per line,
    /// then a result document (json).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// How `berth deploy` checks, before applying anything, that the cluster's nodes may pull the
/// images: the registries of `--image` pins and those the docker config has a login for are
/// asked, and a pod that needs a login gets a pull secret or the deploy stops.
#[derive(Args, Debug)]
pub struct PullCheckArgs {
    /// A Secret berth creates or updates in the namespace from the docker config's registry
    /// logins, and names in the imagePullSecrets of pod templates whose images need a login
    /// that no pull secret of theirs gives.
    #[arg(long, env = "BERTH_PULL_SECRET", value_name = "NAME")]
    pub pull_secret: Option<String>,

    /// The cluster's nodes pull with credentials of their own (EKS, GKE, AKS credential
    /// providers): a pod without a pull secret is not refused (named ones are still checked).
    #[arg(long)]
    pub node_credentials: bool,

    /// Docker config with registry logins (default: $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json).
    #[arg(long, env = "BERTH_DOCKER_CONFIG")]
    pub docker_config: Option<std::path::PathBuf>,

    /// Registry hosts to reach over plain HTTP (comma-separated or repeated).
    #[arg(long, env = "BERTH_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,
}

/// `berth history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Release name.
    #[arg(long, short = 'r')]
    pub release: String,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `berth rollback`.
#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Revision to restore (default: the one before the live revision).
    #[arg(long)]
    pub to: Option<u64>,

    /// The release and how to deploy the restored revision (manifest flags are not used).
    #[command(flatten)]
    pub deploy: DeployArgs,
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
    /// The cluster and the namespace in which berth must be allowed to create Deployments,
    /// Jobs and Leases.
    #[command(flatten)]
    pub cluster: ClusterArgs,

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

/// Parses a flag's duration: `90s`, `5m`, `1m30s` (berth_types::duration's one grammar).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    berth_types::duration::parse(s)
}
