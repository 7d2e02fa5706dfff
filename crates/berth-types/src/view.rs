//! What the server's API and web UI show of an environment, as the engine reads it from the
//! cluster ([`EnvironmentView`]) and from its release history ([`ReleaseView`]).

use std::collections::BTreeMap;

use serde::Serialize;

/// One revision of an environment's release, as the API and UI show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReleaseView {
    /// Revision number.
    pub revision: u64,
    /// `deployed`, `superseded`, `failed`, ...
    pub status: String,
    /// Commit deployed.
    pub commit: Option<String>,
    /// Who deployed it.
    pub user: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// What happened.
    pub description: String,
    /// Image repository -> pinned reference.
    pub images: BTreeMap<String, String>,
}

/// A service of an environment and what runs of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceView {
    /// Service name.
    pub name: String,
    /// The image repository it builds or uses, if any.
    pub repository: Option<String>,
    /// The pinned image live in the environment.
    pub image: Option<String>,
    /// Its digest.
    pub digest: Option<String>,
}

/// An environment, its services and its live revision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnvironmentView {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The branch that deploys it automatically.
    pub branch: Option<String>,
    /// The environment it is promoted from.
    pub from: Option<String>,
    /// Services.
    pub services: Vec<ServiceView>,
    /// The live (or last) revision.
    pub current: Option<ReleaseView>,
    /// Set when the cluster could not be asked.
    pub error: Option<String>,
}
