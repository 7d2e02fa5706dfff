//! `berth run`: build what changed, push, render, deploy — one environment, one command.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use berth_cluster::{Cluster, ConnectOptions};
use berth_deploy::DeployOutcome;
use berth_pipeline::run::{Pipeline, RunRequest, choose_environment, default_lock};
use berth_types::EventSink;
use clap::Args;

use crate::cli::OutputFormat;
use crate::output::Printer;

/// `berth run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The project's berth.yaml.
    #[arg(long, short = 'c', default_value = "berth.yaml", env = "BERTH_CONFIG")]
    pub config: PathBuf,

    /// Environment to deploy to (default: the only one, or the one whose `branch` is the
    /// current git branch).
    #[arg(long, short = 'e', env = "BERTH_ENV", visible_alias = "to")]
    pub env: Option<String>,

    /// Deploy into this namespace instead of the environment's (e.g. your own).
    #[arg(long, short = 'n', env = "BERTH_NAMESPACE")]
    pub namespace: Option<String>,

    /// kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// kubeconfig context (default: the environment's `context`, else the current one).
    #[arg(long, env = "BERTH_CONTEXT")]
    pub context: Option<String>,

    /// Store, runtime and registry access (added to berth.yaml's `registry`).
    #[command(flatten)]
    pub builder: crate::builder_flags::BuilderFlags,

    /// kustomize and helm binaries.
    #[command(flatten)]
    pub tools: crate::cli::ToolFlags,

    /// Release records to keep (like Helm's --history-max); the live one is always kept,
    /// 0 keeps all.
    #[arg(long, default_value_t = berth_deploy::release::DEFAULT_HISTORY_MAX)]
    pub history_max: usize,

    /// A Secret berth creates or updates in the namespace from the registry credentials it
    /// pushed with, and names in the imagePullSecrets of pod templates whose images need a
    /// login that no pull secret of theirs gives. Wins over berth.yaml's `deploy.pull-secret`.
    #[arg(long, env = "BERTH_PULL_SECRET", value_name = "NAME")]
    pub pull_secret: Option<String>,

    /// Take over fields that another field manager (helm, kubectl, a controller) owns — once,
    /// when a release moves to berth from Helm or kubectl.
    #[arg(long)]
    pub force_conflicts: bool,

    /// Repository prefix that wins over berth.yaml's `registry.prefix` (Skaffold's
    /// --default-repo): built services without `image`, or whose `image` has no registry host
    /// (`team/web`), are pushed under it.
    #[arg(long, env = "BERTH_DEFAULT_REPO", value_name = "REPO")]
    pub default_repo: Option<String>,

    /// Builds at most this many services at once (default: the number of cores).
    #[arg(long, short = 'j', env = "BERTH_JOBS")]
    pub jobs: Option<std::num::NonZeroUsize>,

    /// Output: progress lines and a summary (table), or JSON events then a result (json).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `berth promote`.
#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// Environment whose live digests are promoted.
    #[arg(long)]
    pub from: String,

    /// Namespace of the source environment, if not its configured one.
    #[arg(long)]
    pub from_namespace: Option<String>,

    /// The target environment (`--to`) and how to reach it.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs `berth run`.
pub async fn run(args: RunArgs) -> Result<ExitCode, String> {
    drive(args, None).await.map(|(code, _)| code)
}

/// What a successful run left behind, for `berth dev` to follow the new pods' logs.
pub struct Ran {
    /// The cluster it deployed to.
    pub cluster: Cluster,
    /// Namespace and release deployed.
    pub namespace: String,
    /// The release (the environment's name).
    pub release: String,
    /// Service -> image (`repo@sha256:...`) of the services it built.
    pub built: std::collections::BTreeMap<String, String>,
}

/// Runs `berth run` for `berth dev`: also returns what the run deployed, if it did.
pub async fn run_for_dev(args: RunArgs) -> Result<(ExitCode, Option<Ran>), String> {
    drive(args, None).await
}

/// Runs `berth promote`.
pub async fn promote(args: PromoteArgs) -> Result<ExitCode, String> {
    if args.run.env.is_none() {
        return Err("say which environment to promote to: --to ENV".into());
    }
    drive(args.run, Some((args.from, args.from_namespace)))
        .await
        .map(|(code, _)| code)
}

async fn drive(
    args: RunArgs,
    promote_from: Option<(String, Option<String>)>,
) -> Result<(ExitCode, Option<Ran>), String> {
    let mut config = berth_config::load(&args.config).map_err(|e| e.to_string())?;
    if let Some(repo) = &args.default_repo {
        config.set_default_repo(repo)?;
    }
    let dir = config.dir.clone();
    let berth_pipeline::changes::WorkingTree { commit, branch } =
        berth_pipeline::changes::working_tree(&dir);
    let env = choose_environment(&config, args.env.as_deref(), branch.as_deref())
        .map_err(|e| e.to_string())?
        .clone();

    let cluster = Cluster::connect(&ConnectOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone().or(env.context.clone()),
    })
    .await
    .map_err(|e| e.to_string())?;

    let mirrors: Vec<(String, String)> = config
        .registry
        .mirrors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let build = args
        .builder
        .options(
            config.registry.insecure.clone(),
            mirrors,
            None,
            false,
            Some(&cluster),
        )
        .await?;
    let json = args.output == OutputFormat::Json;
    // Spinners with per-step timings for a person at a terminal; plain lines for logs.
    let sink: Arc<dyn EventSink> = if !json && std::io::stderr().is_terminal() {
        Arc::new(crate::progress::Terminal::new())
    } else {
        Arc::new(Printer { json })
    };
    let pipeline = Pipeline {
        config,
        build,
        cluster,
        sink,
    };
    let user = crate::output::user();
    let request = RunRequest {
        environment: env.name.clone(),
        namespace: args.namespace.clone(),
        commit,
        user: user.clone(),
        lock: default_lock(format!("{user} (pid {})", std::process::id())),
        tools: args.tools.tools(),
        history_max: args.history_max,
        pull_secret: args.pull_secret.clone(),
        force_conflicts: args.force_conflicts,
    };
    let result = match promote_from {
        None => {
            let jobs = args.jobs.unwrap_or_else(berth_pipeline::run::default_jobs);
            pipeline.run_with_jobs(request, jobs).await
        }
        Some((from, ns)) => pipeline.promote(&from, ns, request).await,
    };
    match result {
        Ok(out) => {
            let revision = match out.deploy {
                DeployOutcome::Deployed { revision, .. }
                | DeployOutcome::Unchanged { revision } => revision,
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"result": "ok", "release": out.release, "namespace": out.namespace,
                        "revision": revision, "built": out.built, "kept": out.kept})
                );
            } else {
                for (service, image) in &out.built {
                    println!("built    {service}: {image}");
                }
                for service in &out.kept {
                    println!("kept     {service} (its live digest)");
                }
                println!(
                    "release `{}` in namespace `{}` at revision {revision}",
                    out.release, out.namespace
                );
            }
            let ran = Ran {
                cluster: pipeline.cluster.clone(),
                namespace: out.namespace,
                release: out.release,
                built: out.built,
            };
            Ok((ExitCode::SUCCESS, Some(ran)))
        }
        Err(e) => Ok((crate::output::failed(json, &e), None)),
    }
}
