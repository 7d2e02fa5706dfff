//! The records the store keeps: runs and their states and triggers, stored events, webhook
//! deliveries, API tokens and their roles. Plain data with serde, no IO.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The id of a run: a positive integer assigned by the database, increasing with creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for RunId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(RunId)
    }
}

/// Where a run is in its life. Stored as the snake_case text of the variant.
///
/// ```text
/// awaiting_approval ──> queued (approved by a deployer) | cancelled (rejected) | superseded
/// queued ──> running ──> succeeded | failed | rolled_back | cancelled
///   │           └──────> interrupted (server stopped mid-run) ──> queued (resume)
///   └──> superseded (a newer push to the same branch and environment) | cancelled
/// ```
///
/// The store does not police the arrows: [`crate::Store::transition`] is a compare-and-set,
/// and the server decides which moves it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Persisted, waiting for a worker.
    Queued,
    /// A run into a protected environment, held until a deployer approves (it becomes
    /// `queued`) or rejects it (it becomes `cancelled`). The scheduler never starts it.
    AwaitingApproval,
    /// A worker is executing it.
    Running,
    /// Finished, deployed and verified.
    Succeeded,
    /// Finished with an error before or without a rollback.
    Failed,
    /// The deploy failed and the environment was rolled back to the last good release.
    RolledBack,
    /// Stopped by a person.
    Cancelled,
    /// Never ran: a newer run for the same repository, branch and environment replaced it.
    Superseded,
    /// Was running when the server stopped; its events are kept. Can be re-queued.
    Interrupted,
}

impl RunState {
    /// Every state, in the order of the declaration.
    pub const ALL: [RunState; 9] = [
        RunState::Queued,
        RunState::AwaitingApproval,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::RolledBack,
        RunState::Cancelled,
        RunState::Superseded,
        RunState::Interrupted,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::RolledBack => "rolled_back",
            RunState::Cancelled => "cancelled",
            RunState::Superseded => "superseded",
            RunState::Interrupted => "interrupted",
        }
    }

    /// Whether the run is over (its `finished_at` is set when it enters such a state).
    /// `interrupted` counts as over: nothing works on it until it is queued again.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            RunState::Queued | RunState::AwaitingApproval | RunState::Running
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no [`RunState`] or [`Role`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?}; expected one of: {expected}")]
pub struct UnknownName {
    /// `run state` or `role`.
    pub what: &'static str,
    /// The text given.
    pub text: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

impl FromStr for RunState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "run state",
                text: s.to_string(),
                expected: "queued, awaiting_approval, running, succeeded, failed, rolled_back, cancelled, superseded, interrupted",
            })
    }
}

/// What started a run. Stored as JSON with a `kind` tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// A verified push webhook.
    Webhook {
        /// `github`, `gitea`, `gogs`, `gitlab`.
        provider: String,
        /// The provider's delivery id (GitHub `X-GitHub-Delivery`, ...).
        delivery: String,
    },
    /// The polling fallback saw a new commit.
    Poll,
    /// Started by a person through the API or UI.
    Manual {
        /// The token name or user that asked.
        who: String,
    },
    /// A re-run of an earlier run.
    Rerun {
        /// The run it repeats.
        of: RunId,
    },
    /// A rollback of the environment to an earlier release.
    Rollback,
    /// A promotion of what runs in another environment (same digests, never rebuilt).
    Promote {
        /// The environment promoted from.
        from: String,
    },
}

/// A run to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRun {
    /// Repository name as configured (not a URL with credentials).
    pub repository: String,
    /// Branch, without `refs/heads/`.
    pub branch: String,
    /// Full commit id.
    pub commit: String,
    /// Target environment.
    pub environment: String,
    /// What asked for it.
    pub trigger: Trigger,
    /// Created in `awaiting_approval` instead of `queued` (a protected environment).
    #[serde(default)]
    pub needs_approval: bool,
}

/// A stored run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// Repository name as configured.
    pub repository: String,
    /// Branch.
    pub branch: String,
    /// Full commit id.
    pub commit: String,
    /// Target environment.
    pub environment: String,
    /// What started it.
    pub trigger: Trigger,
    /// Current state.
    pub state: RunState,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it last entered `running`.
    pub started_at: Option<Timestamp>,
    /// When it entered a terminal state.
    pub finished_at: Option<Timestamp>,
    /// The last note given with a transition (an error for failed runs).
    pub note: Option<String>,
    /// Outcome summary set by the worker (digests, revision, diagnosis).
    pub result: Option<serde_json::Value>,
    /// For a superseded run: the run that replaced it.
    pub superseded_by: Option<RunId>,
}

/// Which runs [`crate::Store::runs`] returns: all conditions given must hold. Newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Only this repository.
    pub repository: Option<String>,
    /// Only this branch.
    pub branch: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs older than this one (the next page after the last id of a page).
    pub before: Option<RunId>,
    /// At most this many; `None` means [`RunFilter::DEFAULT_LIMIT`], capped at
    /// [`RunFilter::MAX_LIMIT`].
    pub limit: Option<u32>,
}

impl RunFilter {
    /// Page size when none is given.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// Largest page.
    pub const MAX_LIMIT: u32 = 1000;
}

/// An event as stored with its run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the run: 1, 2, 3... without gaps; the cursor for catching up.
    pub seq: u64,
    /// The run it belongs to.
    pub run: RunId,
    /// When it was stored.
    pub at: Timestamp,
    /// The event.
    pub event: berth_types::Event,
}

/// A webhook delivery to record: the provider and its delivery id identify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// `github`, `gitea`, `gogs`, `gitlab`.
    pub provider: String,
    /// The provider's delivery id.
    pub delivery_id: String,
}

/// What [`crate::Store::accept_delivery`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Accepted {
    /// First time this delivery was seen: these runs were created (possibly none).
    New(Vec<Run>),
    /// Seen before; nothing was created.
    Duplicate {
        /// When it was first recorded.
        first_seen: Timestamp,
        /// The runs its first delivery created.
        runs: Vec<RunId>,
    },
}

/// What an API token may do. Ordered: `Viewer < Deployer < Admin`, so a check is
/// `token.role >= Role::Deployer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads runs, logs, releases.
    Viewer,
    /// Also triggers, re-runs, cancels, rolls back, promotes.
    Deployer,
    /// Also manages tokens.
    Admin,
}

impl Role {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Role::Viewer, Role::Deployer, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "role",
                text: s.to_string(),
                expected: "viewer, deployer, admin",
            })
    }
}

/// An API token as the store knows it: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Unique name, chosen at creation.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last presented successfully.
    pub last_used_at: Option<Timestamp>,
}

/// A sign-in session of the web UI as the store knows it: never its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The token it acts for (name and current role).
    pub token: TokenInfo,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it was last used (to [`crate::SESSION_SEEN_GRANULARITY`]).
    pub last_seen_at: Timestamp,
    /// When it ends however much it is used.
    pub expires_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_text() {
        for st in RunState::ALL {
            assert_eq!(st.as_str().parse::<RunState>().unwrap(), st);
            assert_eq!(
                serde_json::to_value(st).unwrap(),
                serde_json::Value::String(st.as_str().into())
            );
        }
        let err = "done".parse::<RunState>().unwrap_err().to_string();
        assert!(err.contains("unknown run state \"done\""), "{err}");
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Viewer < Role::Deployer && Role::Deployer < Role::Admin);
        assert_eq!("deployer".parse::<Role>().unwrap(), Role::Deployer);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn triggers_carry_a_kind_tag() {
        let t = Trigger::Webhook {
            provider: "github".into(),
            delivery: "abc".into(),
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "webhook", "provider": "github", "delivery": "abc"})
        );
        let back: Trigger = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
        assert_eq!(
            serde_json::to_value(Trigger::Rerun { of: RunId(7) }).unwrap(),
            serde_json::json!({"kind": "rerun", "of": 7})
        );
    }

    #[test]
    fn only_queued_awaiting_and_running_are_live() {
        let live: Vec<_> = RunState::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        assert_eq!(
            live,
            [
                RunState::Queued,
                RunState::AwaitingApproval,
                RunState::Running
            ]
        );
    }
}
