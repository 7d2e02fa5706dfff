//! The steps of a run, as events name them.

use serde::{Deserialize, Serialize};

/// A step of a run (or of a command that reports like one). On the wire (the JSON stream of
/// `-o json`, the server's stored events, SSE, the web UI's script) each is its stable name,
/// [`Step::name`]: `fetch`, `checkout`, `git`, `run`, `prerender`, `build`, `pull`, `test`,
/// `push`, `render`, `data-clone`, `data-copy`, `data-copy-job`, `deploy`, `notify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The server fetches the repository.
    Fetch,
    /// The server checks the run's commit out.
    Checkout,
    /// A git fetch's progress.
    Git,
    /// The run as a whole (what changed, what it decided), and a build's RUN output.
    Run,
    /// Every service rendered with placeholder digests, before anything is built.
    Prerender,
    /// A service's image is built into the local store.
    Build,
    /// A base image is pulled.
    Pull,
    /// A service's tests run in its freshly built image.
    Test,
    /// A service's image is pushed to its registry.
    Push,
    /// Every service rendered with the pushed digests.
    Render,
    /// The environment's volumes are cloned from their snapshots (`data.clone`).
    DataClone,
    /// The environment's database is copied and masked (`data.copy`).
    DataCopy,
    /// The masked copy, run as a Kubernetes Job.
    DataCopyJob,
    /// The release is applied, tracked, and rolled back on failure.
    Deploy,
    /// The environment's receivers are told of the run (`notify`).
    Notify,
}

impl Step {
    /// Every step, in the order a run goes through them.
    pub const ALL: [Step; 15] = [
        Step::Fetch,
        Step::Checkout,
        Step::Git,
        Step::Run,
        Step::Prerender,
        Step::Build,
        Step::Pull,
        Step::Test,
        Step::Push,
        Step::Render,
        Step::DataClone,
        Step::DataCopy,
        Step::DataCopyJob,
        Step::Deploy,
        Step::Notify,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Step::Fetch => "fetch",
            Step::Checkout => "checkout",
            Step::Git => "git",
            Step::Run => "run",
            Step::Prerender => "prerender",
            Step::Build => "build",
            Step::Pull => "pull",
            Step::Test => "test",
            Step::Push => "push",
            Step::Render => "render",
            Step::DataClone => "data-clone",
            Step::DataCopy => "data-copy",
            Step::DataCopyJob => "data-copy-job",
            Step::Deploy => "deploy",
            Step::Notify => "notify",
        }
    }

    /// Whether a run may be cancelled before or during this step: every step before the
    /// environment's data step and deploy. Those change the environment itself (its volumes,
    /// its database, its objects) under the release's lock; stopping one half-way would leave
    /// the environment neither as it was nor as the run wanted it, so from the first of them
    /// on a run ends on its own (the deploy finishes or rolls back). Everything before them
    /// only builds, tests, pushes (content-addressed images, harmless to leave) and renders;
    /// `notify` tells of what the run did, after its deploy.
    pub fn cancellable(self) -> bool {
        !matches!(
            self,
            Step::DataClone | Step::DataCopy | Step::DataCopyJob | Step::Deploy | Step::Notify
        )
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Step {
    type Err = UnknownStep;

    fn from_str(s: &str) -> Result<Step, UnknownStep> {
        Step::ALL
            .into_iter()
            .find(|step| step.name() == s)
            .ok_or_else(|| UnknownStep(s.to_string()))
    }
}

/// A step name no [`Step`] has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown step `{0}`")]
pub struct UnknownStep(pub String);

/// The step an event belongs to: one of the whole run (`deploy`) or one done for a service
/// (`kids/build`). Services build in parallel, so their events interleave; the service keeps
/// each attributed. On the wire it is one string, `<service>/<step>` or `<step>` (service
/// names never contain `/`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct StepOf {
    /// The service it was done for, if any.
    pub service: Option<String>,
    /// The step.
    pub step: Step,
}

impl StepOf {
    /// `step` done for `service`.
    pub fn service(service: &str, step: Step) -> StepOf {
        StepOf {
            service: Some(service.to_string()),
            step,
        }
    }
}

impl From<Step> for StepOf {
    fn from(step: Step) -> StepOf {
        StepOf {
            service: None,
            step,
        }
    }
}

impl PartialEq<Step> for StepOf {
    fn eq(&self, other: &Step) -> bool {
        self.service.is_none() && self.step == *other
    }
}

impl std::fmt::Display for StepOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.service {
            Some(service) => write!(f, "{service}/{}", self.step),
            None => write!(f, "{}", self.step),
        }
    }
}

impl std::str::FromStr for StepOf {
    type Err = UnknownStep;

    fn from_str(s: &str) -> Result<StepOf, UnknownStep> {
        match s.split_once('/') {
            Some((service, step)) => Ok(StepOf::service(service, step.parse()?)),
            None => Ok(s.parse::<Step>()?.into()),
        }
    }
}

impl From<StepOf> for String {
    fn from(step: StepOf) -> String {
        step.to_string()
    }
}

impl TryFrom<String> for StepOf {
    type Error = UnknownStep;

    fn try_from(s: String) -> Result<StepOf, UnknownStep> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire names are what the JSON stream, the server's stored events and the web UI's
    /// script read (old runs' events are read back from the store): a rename of a variant
    /// must not change them.
    #[test]
    fn steps_keep_their_wire_names() {
        let names = [
            "fetch",
            "checkout",
            "git",
            "run",
            "prerender",
            "build",
            "pull",
            "test",
            "push",
            "render",
            "data-clone",
            "data-copy",
            "data-copy-job",
            "deploy",
            "notify",
        ];
        assert_eq!(Step::ALL.len(), names.len());
        for (step, name) in Step::ALL.into_iter().zip(names) {
            assert_eq!(step.name(), name);
            let json = serde_json::to_value(step).unwrap();
            assert_eq!(json, serde_json::json!(name));
            assert_eq!(serde_json::from_value::<Step>(json).unwrap(), step);
            assert_eq!(name.parse::<Step>().unwrap(), step);
            let of = serde_json::to_value(StepOf::from(step)).unwrap();
            assert_eq!(of, serde_json::json!(name));
            let kids = serde_json::to_value(StepOf::service("kids", step)).unwrap();
            assert_eq!(kids, serde_json::json!(format!("kids/{name}")));
            assert_eq!(
                serde_json::from_value::<StepOf>(kids).unwrap(),
                StepOf::service("kids", step)
            );
        }
        assert!("deploys".parse::<StepOf>().is_err());
        assert!(serde_json::from_str::<StepOf>(r#""kids/bild""#).is_err());
    }

    #[test]
    fn only_the_steps_before_data_and_deploy_are_cancellable() {
        let cancellable: Vec<&str> = Step::ALL
            .into_iter()
            .filter(|s| s.cancellable())
            .map(Step::name)
            .collect();
        assert_eq!(
            cancellable,
            [
                "fetch",
                "checkout",
                "git",
                "run",
                "prerender",
                "build",
                "pull",
                "test",
                "push",
                "render"
            ]
        );
    }
}
