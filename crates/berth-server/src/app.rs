//! The server's state and its entry points. The scheduler (`scheduler`), the life of one run
//! (`lifecycle`), polling (`poller`) and a run's event sink (`run_sink`) are modules of their
//! own, each an `impl Server` block or the types it needs.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_store::{NewRun, Run, RunId, RunState, Store, StoredEvent, Trigger};
use berth_types::{CancelToken, Event, EventSink, Level, Step, StepOf};
use tokio::sync::{Notify, broadcast};

use crate::config::{GitCredentials, Repository, ServeConfig};
use crate::executor::{Action, Checkout, Executor, Failure, Job, Outcome};
use crate::metrics::Metrics;
use crate::queue;

mod lifecycle;
mod poller;
mod run_sink;
mod scheduler;

pub(crate) use run_sink::*;

/// Why the server could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] berth_store::StoreError),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}; choose another with --listen HOST:PORT")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The git cache could not be prepared.
    #[error("git cache: {0}")]
    Git(#[from] berth_git::GitError),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// A run in progress: how to stop it, and whether it may still be stopped (the token knows:
/// the engine closes it when the run's first step that is not cancellable starts).
struct Active {
    lane: String,
    cancel: CancelToken,
}

pub(crate) struct Inner {
    pub(crate) config: ServeConfig,
    pub(crate) store: Store,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) git: berth_git::GitCache,
    pub(crate) metrics: Metrics,
    /// Live events of running runs, by run.
    live: Mutex<HashMap<RunId, broadcast::Sender<StoredEvent>>>,
    active: Mutex<HashMap<RunId, Active>>,
    wake: Notify,
    /// The last commit run (or fetched) per repository: the berth.yaml the UI reads.
    views: tokio::sync::Mutex<HashMap<String, ViewCheckout>>,
    /// Webhook requests being read and verified (unauthenticated until their signature is).
    pub(crate) webhook_slots: Arc<tokio::sync::Semaphore>,
}

struct ViewCheckout {
    checkout: Checkout,
    _worktree: berth_git::Worktree,
    /// Branch -> environment, as this commit's berth.yaml says (read once per branch: a
    /// webhook must not parse berth.yaml to be answered).
    branches: HashMap<String, Option<String>>,
}

/// The server: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

impl Server {
    /// Opens the store, marks runs left running by a crash as interrupted, and prepares the
    /// git cache. Does not listen yet: see [`Server::serve`].
    pub async fn open(
        config: ServeConfig,
        executor: Arc<dyn Executor>,
    ) -> Result<Server, ServerError> {
        for dir in [
            config.data_dir.clone(),
            config.data_dir.join("git"),
            config.data_dir.join("work"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| ServerError::DataDir {
                path: dir.clone(),
                source,
            })?;
        }
        let store = Store::open(config.database_url().expose()).await?;
        let interrupted = store.interrupt_running().await?;
        for id in &interrupted {
            tracing::warn!(run = %id, "run was running when the server stopped: marked interrupted");
        }
        // Leftover worktrees of runs that died with the last process.
        let _ = std::fs::remove_dir_all(config.data_dir.join("work"));
        let _ = std::fs::create_dir_all(config.data_dir.join("work"));
        let git = berth_git::GitCache::new(config.data_dir.join("git"))?;
        let webhook_slots = Arc::new(tokio::sync::Semaphore::new(config.webhook_concurrency));
        Ok(Server {
            inner: Arc::new(Inner {
                webhook_slots,
                config,
                store,
                executor,
                git,
                metrics: Metrics::default(),
                live: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                views: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    /// The HTTP application (API, webhooks, metrics, UI).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .merge(crate::api::routes())
            .merge(crate::webhooks::routes())
            .merge(crate::ui::routes())
            .merge(crate::metrics::routes())
            .with_state(self.clone())
    }

    /// Listens on the configured address, runs the scheduler and the pollers, and serves
    /// until `shutdown` resolves. `on_listening` gets the bound address (port 0 picks one).
    pub async fn serve(
        self,
        on_listening: impl FnOnce(std::net::SocketAddr),
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = self.inner.config.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, source })?;
        let local = listener.local_addr().map_err(ServerError::Serve)?;
        let scheduler = tokio::spawn(self.clone().schedule());
        // Read each repository's berth.yaml early, so the first webhook already knows which
        // environment its branch deploys (the webhook itself never waits for git).
        for r in self.inner.config.repositories.clone() {
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.view(&r).await {
                    tracing::info!(repository = %r.name, "not read yet: {e}");
                }
            });
        }
        let mut pollers = Vec::new();
        for r in self
            .inner
            .config
            .repositories
            .iter()
            .filter(|r| r.poll.is_some())
        {
            pollers.push(tokio::spawn(self.clone().poll(r.clone())));
        }
        on_listening(local);
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve);
        scheduler.abort();
        for p in pollers {
            p.abort();
        }
        result
    }
}

fn lane_of(r: &Run) -> String {
    let env = if r.environment.is_empty() {
        format!("branch:{}", r.branch)
    } else {
        r.environment.clone()
    };
    queue::lane(&r.repository, &env)
}

fn short(c: &str) -> &str {
    &c[..12.min(c.len())]
}

/// Who a run acts for, as the release records it.
pub(crate) fn trigger_user(t: &Trigger) -> String {
    match t {
        Trigger::Webhook { provider, .. } => format!("webhook:{provider}"),
        Trigger::Poll => "poll".into(),
        Trigger::Manual { who } => who.clone(),
        Trigger::Rerun { .. } => "rerun".into(),
        Trigger::Rollback => "rollback".into(),
        Trigger::Promote { .. } => "promote".into(),
    }
}

pub(crate) fn remote_of(repo: &Repository) -> berth_git::Remote {
    berth_git::Remote {
        url: repo.url.clone(),
        credentials: repo.credentials.as_ref().map(|c| match c {
            GitCredentials::Token { username, token } => berth_git::Credentials::Token {
                username: username.clone(),
                token: token.clone(),
            },
            GitCredentials::SshKey { path } => {
                berth_git::Credentials::SshKey { path: path.clone() }
            }
        }),
    }
}
