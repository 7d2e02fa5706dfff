//! The seam between the server and the engine: what a run, a rollback or a promotion does is
//! behind [`Executor`], implemented where the engine's wiring already lives (the `berth`
//! binary's `serve_cmd.rs`: config load, cluster connect, builder options, tools). The server
//! stays free of the CLI and of the cluster client; tests of the server's own logic can drive
//! it with any implementation, and the end-to-end tests drive the real one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_types::EventSink;
use futures::future::BoxFuture;
use serde::Serialize;

pub use crate::config::Target;
pub use berth_types::view::{EnvironmentView, ReleaseView, ServiceView};

/// A checked-out commit of a repository.
#[derive(Clone, Debug)]
pub struct Checkout {
    /// The worktree's root.
    pub dir: PathBuf,
    /// berth.yaml inside it (absolute).
    pub config: PathBuf,
    /// The commit checked out.
    pub commit: String,
    /// The branch it came from, if any.
    pub branch: Option<String>,
    /// The server's name of the repository (unique on the server): builds of this checkout
    /// use cache mounts of this repository only.
    pub repository: String,
}

/// What to do with a checkout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Build what changed and deploy (`berth run`).
    Run,
    /// Re-deploy an earlier revision of the environment (`berth rollback`).
    Rollback {
        /// The revision; `None`: the one before the live one.
        to: Option<u64>,
    },
    /// Deploy the digests live in another environment (`berth promote`).
    Promote {
        /// The source environment.
        from: String,
    },
}

/// One unit of work.
#[derive(Clone, Debug)]
pub struct Job {
    /// The server's run id (for lock holders and logs).
    pub run: String,
    /// The commit to work from.
    pub checkout: Checkout,
    /// The environment (`None`: the one the branch deploys).
    pub environment: Option<String>,
    /// What to do.
    pub action: Action,
    /// Who asked (a token name, `webhook:github`, `poll`).
    pub user: String,
    /// The kube context the server config pins for the environment: the engine deploys
    /// through it, whatever berth.yaml or the server's `--context` say.
    pub context: Option<String>,
    /// The repository's berth.yaml may ask for the host's network (`build.network: host`):
    /// its `allow_host_network` in the server's configuration.
    pub allow_host_network: bool,
    /// The run's cancel: the engine checks it at each step boundary (and stops a cancellable
    /// step under way), and closes it when its first step that is not cancellable (the data
    /// step, the deploy) starts, after which the server refuses cancels.
    pub cancel: berth_types::CancelToken,
}

/// What a successful job did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// The environment deployed.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The live revision after the job.
    pub revision: Option<u64>,
    /// Whether a new revision was made (false: the live one was already this).
    pub changed: bool,
    /// Services rebuilt, with their pinned images.
    pub built: BTreeMap<String, String>,
    /// Services that kept their live images.
    pub kept: Vec<String>,
}

/// Why a job failed.
#[derive(Clone, Debug, PartialEq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The error, for people.
    pub message: String,
    /// The deploy failed and the environment was rolled back.
    pub rolled_back: bool,
    /// The failure diagnosis (why pods did not become ready), when the engine has one.
    pub diagnosis: Option<String>,
}

impl From<berth_types::Cancelled> for Failure {
    fn from(c: berth_types::Cancelled) -> Failure {
        Failure::msg(c.to_string())
    }
}

impl Failure {
    /// A failure with only a message.
    pub fn msg(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            rolled_back: false,
            diagnosis: None,
        }
    }
}

/// Runs jobs and reads environments: the engine, seen from the server.
pub trait Executor: Send + Sync + 'static {
    /// Runs `job`, reporting to `sink`. A cancel arrives through `job.cancel`: the job then
    /// ends with an error before (or during) its next cancellable step.
    fn execute(
        &self,
        job: Job,
        sink: Arc<dyn EventSink>,
    ) -> BoxFuture<'_, Result<Outcome, Failure>>;

    /// The environments of `checkout`'s berth.yaml with their live state.
    fn environments<'a>(
        &'a self,
        checkout: &'a Checkout,
    ) -> BoxFuture<'a, Result<Vec<EnvironmentView>, String>>;

    /// The release history of `environment`, oldest first.
    fn history<'a>(
        &'a self,
        checkout: &'a Checkout,
        environment: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ReleaseView>, String>>;

    /// The environment a push to `branch` deploys, if one does.
    fn environment_for_branch(&self, checkout: &Checkout, branch: &str) -> Option<String>;

    /// Where `environment` of `checkout`'s berth.yaml deploys (read from the file only), for
    /// the server to hold against its own configuration before anything runs.
    fn target(&self, checkout: &Checkout, environment: &str) -> Result<Target, String>;

    /// The commit of the release live in `environment` (`None`: nothing deployed yet), read
    /// through kube context `context` when given, else berth.yaml's.
    fn live_commit<'a>(
        &'a self,
        checkout: &'a Checkout,
        environment: &'a str,
        context: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;

    /// Answers the canary paused in `environment` (`berth promote --resume`): go on, or
    /// (`abort`) restore the previous revision; the step it was paused at. Through kube
    /// context `context` when given, else berth.yaml's.
    fn answer_pause<'a>(
        &'a self,
        checkout: &'a Checkout,
        environment: &'a str,
        context: Option<&'a str>,
        abort: bool,
    ) -> BoxFuture<'a, Result<usize, String>>;
}
