//! `berth serve`: the delivery server, and `berth serve token create|list|revoke`.
//!
//! The server itself is `berth-server`; this file gives it the engine `berth run` uses
//! ([`EngineExecutor`], a thin adapter of [`berth_pipeline::engine::Engine`]) and turns flags
//! into its configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use berth_pipeline::engine::{Action, Containment, Engine, Request};
use berth_server::executor::{
    Action as ServerAction, Checkout, EnvironmentView, Executor, Failure, Job, Outcome,
    ReleaseView, Target,
};
use berth_server::{ServeConfig, Server};
use berth_types::{EventSink, Outbox, Queued};
use clap::{Args, Subcommand};
use futures::future::BoxFuture;

/// `berth serve`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    /// Token management instead of serving.
    #[command(subcommand)]
    pub command: Option<ServeCommand>,

    /// The server's configuration file (berth-serve.yaml): listen address, data directory,
    /// database, repositories with their webhooks and credentials. Without one, the defaults
    /// and the flags below are enough.
    #[arg(long, short = 'c', env = "BERTH_SERVE_CONFIG")]
    pub config: Option<PathBuf>,

    /// A repository to deliver: a local path or a git URL, optionally NAME=PATH_OR_URL.
    /// Repeatable. Added to the file's repositories.
    #[arg(long = "repo", value_name = "PATH_OR_URL")]
    pub repos: Vec<String>,

    /// Listen address (default 127.0.0.1:8080).
    #[arg(long, env = "BERTH_SERVE_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,

    /// Data directory: SQLite database, git cache, run worktrees
    /// (default ~/.local/share/berth-serve).
    #[arg(long, env = "BERTH_SERVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database URL: sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB (default: SQLite in
    /// the data directory). Prefer the environment variable for a URL with a password.
    #[arg(long, env = "BERTH_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,

    /// Runs at once over all environments (one per environment at a time regardless).
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// Keep queued older runs of a branch when a newer push arrives (default: they are
    /// superseded).
    #[arg(long)]
    pub no_supersede: bool,

    /// kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// kubeconfig context (default: each environment's `context`, else the current one).
    #[arg(long, env = "BERTH_CONTEXT")]
    pub context: Option<String>,

    /// Store, runtime and registry access (added to each berth.yaml's `registry`).
    #[command(flatten)]
    pub builder: crate::builder_flags::BuilderFlags,

    /// kustomize and helm binaries.
    #[command(flatten)]
    pub tools: crate::cli::ToolFlags,
}

/// `berth serve token ...`.
#[derive(Subcommand, Debug)]
pub enum ServeCommand {
    /// API tokens for the server's API and web UI (stored as SHA-256 hashes).
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `berth serve token create|list|revoke`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it once (it cannot be shown again).
    Create {
        /// A name for it (who or what uses it).
        name: String,
        /// viewer (read), deployer (run, cancel, roll back, promote) or admin (tokens).
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens: names, roles, last use (never the tokens).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by name.
    Revoke {
        /// Its name.
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Which database the token commands use.
#[derive(Args, Debug)]
pub struct DbArgs {
    /// The server's configuration file (for its data directory and database).
    #[arg(long, short = 'c', env = "BERTH_SERVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (default ~/.local/share/berth-serve).
    #[arg(long, env = "BERTH_SERVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (default: SQLite in the data directory).
    #[arg(long, env = "BERTH_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
}

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn base_config(
    file: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
) -> Result<ServeConfig, String> {
    config_with(file, data_dir, database, berth_server::config::load)
}

/// Where the store is, for the token commands: the file's other secrets are not read.
fn store_config(db: DbArgs) -> Result<ServeConfig, String> {
    config_with(
        db.config.as_ref(),
        db.data_dir,
        db.database,
        berth_server::config::load_store,
    )
}

type Loader = fn(
    &std::path::Path,
    &dyn Fn(&str) -> Option<String>,
) -> Result<ServeConfig, berth_server::config::ConfigError>;

fn config_with(
    file: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
    load: Loader,
) -> Result<ServeConfig, String> {
    let mut config = match file {
        Some(f) => load(f, &env_lookup).map_err(|e| e.to_string())?,
        None => ServeConfig::defaults(berth_server::config::default_data_dir()),
    };
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    if let Some(db) = database {
        config.database = Some(berth_types::Secret::new(db));
    }
    Ok(config)
}

async fn open_store(config: &ServeConfig) -> Result<berth_store::Store, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
    berth_store::Store::open(config.database_url().expose())
        .await
        .map_err(|e| e.to_string())
}

/// Runs `berth serve`.
pub async fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    if let Some(ServeCommand::Token(t)) = args.command {
        return token(t).await;
    }
    let mut config = base_config(
        args.config.as_ref(),
        args.data_dir.clone(),
        args.database.clone(),
    )?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(c) = args.concurrency {
        if c == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        config.concurrency = c;
    }
    if args.no_supersede {
        config.supersede = false;
    }
    for r in &args.repos {
        config.add_repo_flag(r).map_err(|e| e.to_string())?;
    }
    if config.repositories.is_empty() {
        return Err(
            "no repositories to deliver: give --repo PATH_OR_URL or a --config file with `repositories:`"
                .into(),
        );
    }
    let outbox: Arc<std::sync::OnceLock<Arc<dyn Outbox>>> = Arc::default();
    let executor = Arc::new(EngineExecutor(
        Arc::new(Engine::new(
            args.kubeconfig.clone(),
            args.context.clone(),
            args.tools.tools(),
            Arc::new(args.builder.clone()),
        )),
        outbox.clone(),
    ));
    let server = Server::open(config, executor)
        .await
        .map_err(|e| e.to_string())?;
    // The runs' webhook and Slack messages go through the store, sent from here with retries:
    // a restart of the server loses none.
    let store = server.store().clone();
    let _ = outbox.set(Arc::new(StoreOutbox(store.clone())));
    let sender = berth_pipeline::notify::OutboxSender::new()?;
    tokio::spawn(send_outbox(store, sender));
    let repos: Vec<String> = server
        .config()
        .repositories
        .iter()
        .map(|r| format!("{} ({})", r.name, berth_types::SafeUrl::new(r.url.clone())))
        .collect();
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    server
        .serve(
            |addr| {
                // Machines (tests, scripts) read this line for the port.
                println!("listening on http://{addr}");
                for r in &repos {
                    println!("repository {r}");
                }
            },
            shutdown,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

async fn token(cmd: TokenCommand) -> Result<ExitCode, String> {
    match cmd {
        TokenCommand::Create { name, role, db } => {
            let role: berth_store::Role = role
                .parse()
                .map_err(|e: berth_store::UnknownName| e.to_string())?;
            let store = open_store(&store_config(db)?).await?;
            let (info, secret) = store
                .create_token(&name, role)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "created token `{}` with role {}; it is shown once:",
                info.name, info.role
            );
            println!("{}", secret.expose());
        }
        TokenCommand::List { db } => {
            let store = open_store(&store_config(db)?).await?;
            println!("{:<24}{:<10}{:<28}LAST USED", "NAME", "ROLE", "CREATED");
            for t in store.tokens().await.map_err(|e| e.to_string())? {
                println!(
                    "{:<24}{:<10}{:<28}{}",
                    t.name,
                    t.role,
                    t.created_at,
                    t.last_used_at
                        .map(|x| x.to_string())
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
        TokenCommand::Revoke { name, db } => {
            let store = open_store(&store_config(db)?).await?;
            if !store.revoke_token(&name).await.map_err(|e| e.to_string())? {
                return Err(format!(
                    "no token named `{name}`; see `berth serve token list`"
                ));
            }
            eprintln!("revoked token `{name}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The engine as the server sees it: [`berth_pipeline::engine::Engine`], the same as
/// `berth run`'s, with the server's containment of the repositories it delivers.
pub struct EngineExecutor(Arc<Engine>, Arc<std::sync::OnceLock<Arc<dyn Outbox>>>);

/// The server's store as the runs' outbox.
struct StoreOutbox(berth_store::Store);

impl Outbox for StoreOutbox {
    fn put(
        &self,
        m: Queued,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            self.0
                .enqueue_notification(&berth_store::NewNotification {
                    delivery: m.delivery,
                    run: m.run,
                    receiver: m.receiver,
                    url_env: m.url_env,
                    key_env: m.key_env,
                    event: m.event.as_str().to_string(),
                    body: m.body,
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Sends what is due in the store's outbox, for as long as the server runs: each message
/// until it is delivered, refused, or out of attempts (about an hour).
async fn send_outbox(store: berth_store::Store, sender: berth_pipeline::notify::OutboxSender) {
    use berth_pipeline::notify::{Attempt, outbox_wait};
    use berth_store::NotificationState;
    loop {
        let due = match store.due_notifications(50).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("notify: reading the outbox: {e}");
                Vec::new()
            }
        };
        for d in due {
            let Ok(event) = d.message.event.parse::<berth_types::NotifyEvent>() else {
                continue;
            };
            let queued = Queued {
                delivery: d.message.delivery.clone(),
                run: d.message.run.clone(),
                receiver: d.message.receiver.clone(),
                url_env: d.message.url_env.clone(),
                key_env: d.message.key_env.clone(),
                event,
                body: d.message.body.clone(),
            };
            let now = jiff::Timestamp::now();
            let (state, next, error) = match sender.attempt(&queued).await {
                Attempt::Delivered => {
                    tracing::info!(
                        "notify: {} told of {event} (run {})",
                        queued.receiver,
                        queued.run
                    );
                    (NotificationState::Delivered, now, None)
                }
                Attempt::Retry(why) => match outbox_wait(d.attempts + 1) {
                    Some(wait) => (
                        NotificationState::Pending,
                        now + jiff::SignedDuration::try_from(wait).unwrap_or_default(),
                        Some(why),
                    ),
                    None => {
                        tracing::warn!(
                            "notify: {} was not told of {event} (run {}): {why}, after {} attempts",
                            queued.receiver,
                            queued.run,
                            d.attempts + 1
                        );
                        (NotificationState::Failed, now, Some(why))
                    }
                },
                Attempt::Final(why) => {
                    tracing::warn!(
                        "notify: {} refused the {event} message (run {}): {why}; not retried",
                        queued.receiver,
                        queued.run
                    );
                    (NotificationState::Failed, now, Some(why))
                }
            };
            if let Err(e) = store
                .notification_attempted(d.id, state, next, error.as_deref())
                .await
            {
                tracing::warn!("notify: recording an attempt in the outbox: {e}");
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// A job of the server as a run of the engine.
fn request(job: Job, outbox: Option<Arc<dyn Outbox>>) -> Result<Request, Failure> {
    let config =
        berth_config::load(&job.checkout.config).map_err(|e| Failure::msg(e.to_string()))?;
    let action = match job.action {
        ServerAction::Run => Action::Run { jobs: None },
        ServerAction::Promote { from } => Action::Promote {
            from,
            from_namespace: None,
        },
        ServerAction::Rollback { to } => Action::Rollback { to },
    };
    Ok(Request {
        config,
        commit: Some(job.checkout.commit.clone()),
        branch: job.checkout.branch.clone(),
        environment: job.environment,
        context: job.context,
        namespace: None,
        action,
        user: job.user,
        lock_holder: format!("berth serve (run {}, pid {})", job.run, std::process::id()),
        history_max: berth_deploy::release::DEFAULT_HISTORY_MAX,
        // berth.yaml's `deploy.pull-secret` decides on the server.
        pull_secret: None,
        // A server never takes fields over on its own: a person does, once, with berth run.
        force_conflicts: false,
        containment: Some(Containment {
            allow_host_network: job.allow_host_network,
            cache_scope: format!("repository {}", job.checkout.repository),
        }),
        cancel: job.cancel,
        notify: Some(job.run.to_string()),
        canary: true,
        outbox,
    })
}

async fn execute_job(
    engine: &Engine,
    job: Job,
    outbox: Option<Arc<dyn Outbox>>,
    sink: Arc<dyn EventSink>,
) -> Result<Outcome, Failure> {
    match engine.execute(request(job, outbox)?, sink).await {
        Ok(out) => Ok(Outcome {
            environment: out.environment,
            namespace: out.namespace,
            revision: Some(out.revision),
            changed: out.changed,
            built: out.built,
            kept: out.kept,
        }),
        Err(e) => Err(Failure {
            message: e.to_string(),
            rolled_back: e.rolled_back(),
            diagnosis: e.diagnosis(),
        }),
    }
}

impl Executor for EngineExecutor {
    fn execute(
        &self,
        job: Job,
        sink: Arc<dyn EventSink>,
    ) -> BoxFuture<'_, Result<Outcome, Failure>> {
        // The job runs as a task of its own on the server's runtime, so runs proceed in
        // parallel on its worker threads (the engine's futures are `Send`; compile-time tests
        // in berth-pipeline and berth-deploy keep them so). The server cancels through
        // `job.cancel`, which the engine checks at step boundaries; dropping the returned
        // future (the server shutting down) drops `cancel`, which ends the task there too.
        let engine = self.0.clone();
        let outbox = self.1.get().cloned();
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tokio::select! {
                r = execute_job(&engine, job, outbox, sink) => r,
                _ = cancelled => Err(Failure::msg("cancelled")),
            }
        });
        Box::pin(async move {
            let _cancel = cancel;
            task.await
                .unwrap_or_else(|e| Err(Failure::msg(format!("the run's engine task failed: {e}"))))
        })
    }

    fn environments<'a>(
        &'a self,
        checkout: &'a Checkout,
    ) -> BoxFuture<'a, Result<Vec<EnvironmentView>, String>> {
        Box::pin(self.0.environments(&checkout.config))
    }

    fn history<'a>(
        &'a self,
        checkout: &'a Checkout,
        environment: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ReleaseView>, String>> {
        Box::pin(self.0.history(&checkout.config, environment))
    }

    fn environment_for_branch(&self, checkout: &Checkout, branch: &str) -> Option<String> {
        let config = berth_config::load(&checkout.config).ok()?;
        let envs = config.environments_for_branch(branch);
        (envs.len() == 1).then(|| envs[0].name.clone())
    }

    fn target(&self, checkout: &Checkout, environment: &str) -> Result<Target, String> {
        let config = berth_config::load(&checkout.config).map_err(|e| e.to_string())?;
        let env = config
            .environment(environment)
            .ok_or_else(|| format!("{} has no environment `{environment}`", config.file))?;
        Ok(Target {
            namespace: env.namespace.clone(),
            context: env.context.clone(),
        })
    }

    fn live_commit<'a>(
        &'a self,
        checkout: &'a Checkout,
        environment: &'a str,
        context: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(self.0.live_commit(&checkout.config, environment, context))
    }

    fn answer_pause<'a>(
        &'a self,
        checkout: &'a Checkout,
        environment: &'a str,
        context: Option<&'a str>,
        abort: bool,
    ) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(
            self.0
                .answer_pause(&checkout.config, environment, context, abort),
        )
    }
}
