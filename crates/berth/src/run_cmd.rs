//! `berth run`: build what changed, push, render, deploy — one environment, one command.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use berth_cluster::Cluster;
use berth_pipeline::engine::{Action, Engine, EngineError, Request};
use berth_types::{CancelToken, EventSink};
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

    /// Builds at most this many services at once, and at most this many platforms of each
    /// (default: the number of cores).
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
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    pub from: Option<String>,

    /// Answer the paused canary of this environment instead: its deploy goes on to the next
    /// step (or, with --abort, restores the previous revision). Nothing is built or promoted.
    #[arg(long, value_name = "ENV")]
    pub resume: Option<String>,

    /// With --resume: abort the paused canary instead of letting it go on.
    #[arg(long, requires = "resume")]
    pub abort: bool,

    /// Namespace of the source environment, if not its configured one.
    #[arg(long)]
    pub from_namespace: Option<String>,

    /// The target environment (`--to`) and how to reach it.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs `berth run`.
pub async fn run(args: RunArgs) -> Result<ExitCode, String> {
    drive(args, None, true).await.map(|(code, _)| code)
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
    // A developer's rebuilds on save are not releases: nobody is told of them, and every pod
    // moves at once (no canary steps).
    drive(args, None, false).await
}

/// Runs `berth promote`.
pub async fn promote(args: PromoteArgs) -> Result<ExitCode, String> {
    if let Some(env) = &args.resume {
        return resume(&args.run, env, args.abort).await;
    }
    let (Some(from), Some(_)) = (args.from, &args.run.env) else {
        return Err("say which environment to promote to: --to ENV".into());
    };
    drive(args.run, Some((from, args.from_namespace)), true)
        .await
        .map(|(code, _)| code)
}

/// `berth promote --resume ENV [--abort]`: answers the environment's paused canary.
async fn resume(args: &RunArgs, name: &str, abort: bool) -> Result<ExitCode, String> {
    let config = berth_config::load(&args.config).map_err(|e| e.to_string())?;
    let Some(env) = config.environments.iter().find(|e| e.name == name) else {
        let names: Vec<&str> = config
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        return Err(format!(
            "{} defines no environment `{name}` (it has: {})",
            args.config.display(),
            names.join(", ")
        ));
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| env.namespace.clone());
    let cluster = Cluster::connect(&berth_cluster::ConnectOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone().or_else(|| env.context.clone()),
    })
    .await
    .map_err(|e| e.to_string())?;
    let at = berth_deploy::canary::resume(&cluster, &namespace, &env.name, abort)
        .await
        .map_err(|e| e.to_string())?;
    if abort {
        eprintln!(
            "aborted the canary of `{name}` paused at step {at}; its deploy restores the \
             previous revision"
        );
    } else {
        eprintln!("resumed the canary of `{name}` at step {at}; its deploy goes on");
    }
    Ok(ExitCode::SUCCESS)
}

async fn drive(
    args: RunArgs,
    promote_from: Option<(String, Option<String>)>,
    // A release (notified, canary steps run); false for `berth dev`'s rebuilds on save.
    release: bool,
) -> Result<(ExitCode, Option<Ran>), String> {
    let mut config = berth_config::load(&args.config).map_err(|e| e.to_string())?;
    if let Some(repo) = &args.default_repo {
        config.set_default_repo(repo)?;
    }
    let berth_pipeline::changes::WorkingTree { commit, branch } =
        berth_pipeline::changes::working_tree(&config.dir);
    let json = args.output == OutputFormat::Json;
    // Spinners with per-step timings for a person at a terminal; plain lines for logs.
    let sink: Arc<dyn EventSink> = if !json && std::io::stderr().is_terminal() {
        Arc::new(crate::progress::Terminal::new())
    } else {
        Arc::new(Printer { json })
    };
    let mut builder = args.builder.clone();
    builder.platform_jobs = args.jobs;
    let engine = Engine::new(
        args.kubeconfig.clone(),
        args.context.clone(),
        args.tools.tools(),
        Arc::new(builder),
    );
    let user = crate::output::user();
    let request = Request {
        config,
        commit,
        branch,
        environment: args.env.clone(),
        context: None,
        namespace: args.namespace.clone(),
        action: match promote_from {
            None => Action::Run { jobs: args.jobs },
            Some((from, from_namespace)) => Action::Promote {
                from,
                from_namespace,
            },
        },
        user: user.clone(),
        lock_holder: format!("{user} (pid {})", std::process::id()),
        history_max: args.history_max,
        pull_secret: args.pull_secret.clone(),
        force_conflicts: args.force_conflicts,
        containment: None,
        cancel: CancelToken::new(),
        notify: release.then(berth_pipeline::notify::new_run_id),
        canary: release,
        // `berth run` sends its messages itself and waits for them at its end.
        outbox: None,
    };
    match engine.execute(request, sink).await {
        Ok(out) => {
            let revision = out.revision;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"result": "ok", "release": out.environment, "namespace": out.namespace,
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
                    out.environment, out.namespace
                );
            }
            let ran = Ran {
                cluster: out.cluster,
                namespace: out.namespace,
                release: out.environment,
                built: out.built,
            };
            Ok((ExitCode::SUCCESS, Some(ran)))
        }
        // Before the run: what a wrong flag or an unreachable cluster says, as any command's.
        Err(EngineError::Setup(e)) => Err(e),
        Err(e) => Ok((crate::output::failed(json, &e), None)),
    }
}
