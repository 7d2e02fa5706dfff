//! The validated configuration. Paths are kept relative to the directory of berth.yaml, as
//! written (lexically normalised); [`Config::path`] makes them absolute.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use berth_types::ImageRef;

use crate::Location;

/// A loaded and validated berth.yaml.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The directory holding berth.yaml; relative paths are relative to it.
    pub dir: PathBuf,
    /// The file's name as shown in messages (usually `berth.yaml`).
    pub file: String,
    /// Registry settings.
    pub registry: Registry,
    /// Deploy defaults (each environment has its merged copy in [`Environment::deploy`]).
    pub deploy: DeploySettings,
    /// Paths whose change affects every service.
    pub shared: Vec<PathBuf>,
    /// The services, in file order.
    pub services: Vec<Service>,
    /// The environments, in file order.
    pub environments: Vec<Environment>,
}

impl Config {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The environment named `name`.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The environments that a push to `branch` deploys to automatically.
    pub fn environments_for_branch(&self, branch: &str) -> Vec<&Environment> {
        self.environments
            .iter()
            .filter(|e| e.promotion == Promotion::Auto && e.branch.as_deref() == Some(branch))
            .collect()
    }

    /// A path from the configuration made absolute (joined to [`Config::dir`]).
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.dir.join(relative)
    }
}

/// Registry settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    /// Default repository prefix (`registry.example.com/shop`): a built service without `image`
    /// is pushed to `<prefix>/<name>`, one with `image: team/web` (no registry host) to
    /// `<prefix>/team/web` ([`ImageNaming`]).
    pub prefix: Option<String>,
    /// `registry.flatten`: `image: team/web` is pushed to `<prefix>/team_web`.
    pub flatten: bool,
    /// Registry hosts (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Registry host -> mirror host (`docker.io` -> `127.0.0.1:15000`).
    pub mirrors: BTreeMap<String, String>,
}

/// How deploys behave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploySettings {
    /// Deadline for a whole rollout, hooks included.
    pub timeout: Duration,
    /// Roll back to the last good release when a rollout fails.
    pub rollback: bool,
    /// `pull-secret`: the dockerconfigjson Secret berth creates from its own registry
    /// credentials and adds to pod templates that need one (`None`: berth only checks).
    pub pull_secret: Option<String>,
    /// `node-credentials`: the nodes pull with credentials of their own, so a pod without a
    /// pull secret is not refused.
    pub node_credentials: bool,
}

impl Default for DeploySettings {
    fn default() -> DeploySettings {
        DeploySettings {
            timeout: Duration::from_secs(300),
            rollback: true,
            pull_secret: None,
            node_credentials: false,
        }
    }
}

/// One service.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Name (a DNS-1123 label).
    pub name: String,
    /// How to build it; `None` deploys [`Service::image`] as it is.
    pub build: Option<Build>,
    /// For a built service, the repository pushed to (no tag, no digest); otherwise the image
    /// deployed as written. `None` for a manifests-only service (neither `build` nor `image`):
    /// it deploys objects shared by the other services, such as one Ingress in front of them.
    pub image: Option<ImageRef>,
    /// How a built service's repository was named (and so how `--default-repo` renames it).
    pub naming: ImageNaming,
    /// Test run in the freshly built image.
    pub test: Option<Test>,
    /// Paths that belong to the service, for change detection. Default: the build context;
    /// empty for a service without `build`.
    pub paths: Vec<PathBuf>,
    /// Where its manifests come from.
    pub manifests: Option<Manifests>,
    /// Jobs around the rollout.
    pub hooks: Hooks,
    /// Where the service starts in berth.yaml (for a discovered service: its `discover`).
    pub location: Location,
    /// The `discover` pattern that found the service's folder; `None` for a named entry.
    pub discovered_by: Option<String>,
}

/// How a service's image repository was named in berth.yaml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ImageNaming {
    /// `image:` with a registry host, or a service that is not built: used as written.
    #[default]
    Written,
    /// `image: team/web` without a registry host on a built service: the name its manifests
    /// use. Pushed to `<prefix>/team/web` (flattened: `<prefix>/team_web`), or as written
    /// (Docker Hub) without a prefix; rendered references to `team/web` are pinned to it.
    ManifestName(String),
    /// A built service without `image:`: `<prefix>/<service name>`.
    ServiceName,
}

impl ImageNaming {
    /// The repository a built service named this way is pushed to, given the registry prefix.
    /// `None` for [`ImageNaming::Written`] (the written image is the repository) and for
    /// [`ImageNaming::ServiceName`] without a prefix.
    pub fn repository(
        &self,
        service: &str,
        prefix: Option<&str>,
        flatten: bool,
    ) -> Option<Result<ImageRef, berth_types::ImageRefError>> {
        match (self, prefix) {
            (ImageNaming::Written, _) => None,
            (ImageNaming::ManifestName(name), None) => Some(name.parse()),
            (ImageNaming::ManifestName(name), Some(p)) => Some(
                if flatten {
                    format!("{p}/{}", name.replace(['/', '.'], "_"))
                } else {
                    format!("{p}/{name}")
                }
                .parse(),
            ),
            (ImageNaming::ServiceName, Some(p)) => Some(format!("{p}/{service}").parse()),
            (ImageNaming::ServiceName, None) => None,
        }
    }
}

impl Service {
    /// The name the service's manifests use for its built image when it is not the pushed
    /// repository itself (`team/web` of `image: team/web`), normalised.
    pub fn manifest_name(&self) -> Option<ImageRef> {
        match &self.naming {
            ImageNaming::ManifestName(n) => n.parse().ok(),
            _ => None,
        }
    }
}

impl Config {
    /// `--default-repo`: re-derives the repository of every built service named by its service
    /// name or by a name without registry host from `prefix` instead of `registry.prefix`.
    pub fn set_default_repo(&mut self, prefix: &str) -> Result<(), String> {
        let p = prefix.trim_end_matches('/');
        crate::validate::check_prefix(p).map_err(|reason| {
            format!("--default-repo `{prefix}` is not a repository prefix: {reason}")
        })?;
        self.registry.prefix = Some(p.to_string());
        for s in self.services.iter_mut().filter(|s| s.build.is_some()) {
            if let Some(r) = s.naming.repository(&s.name, Some(p), self.registry.flatten) {
                s.image = Some(r.map_err(|e| {
                    format!("--default-repo `{prefix}`: service `{}`: {e}", s.name)
                })?);
            }
        }
        Ok(())
    }
}

/// How to build a service's image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Build {
    /// Build context directory.
    pub context: PathBuf,
    /// Dockerfile relative to the context. `None`: `Dockerfile` in the context if present,
    /// otherwise buildpack-style detection on the context.
    pub dockerfile: Option<PathBuf>,
    /// Target stage.
    pub target: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
    /// Base image for buildpack-style detection.
    pub base: Option<String>,
    /// Containment of its RUN steps and tests, as berth.yaml asks (`None`: not set).
    pub sandbox: BuildSandbox,
}

/// A service's `build:` containment settings; unset ones are the builder's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildSandbox {
    /// `build.network`.
    pub network: Option<BuildNetwork>,
    /// `build.pids`.
    pub pids: Option<u32>,
    /// `build.memory`, in bytes.
    pub memory: Option<u64>,
    /// `build.step-timeout`.
    pub step_timeout: Option<Duration>,
    /// `build.ca`: CA certificate files, relative to [`Config::dir`] (checked to exist inside
    /// the repository).
    pub ca: Vec<PathBuf>,
}

/// `build.network`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildNetwork {
    /// A namespace of its own with outbound access through slirp4netns.
    Isolated,
    /// The host's network namespace.
    Host,
    /// Only a loopback interface.
    None,
}

/// A service's test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Test {
    /// Run with `sh -c` in the freshly built image.
    pub command: String,
    /// Its deadline (`None`: the builder's, `--test-timeout`).
    pub timeout: Option<Duration>,
}

/// Where a service's manifests come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Manifests {
    /// Plain files or directories (`*.j2` files among them are rendered as templates).
    Path {
        /// Files or directories.
        paths: Vec<PathBuf>,
        /// Values for any templates among them.
        values: serde_json::Map<String, serde_json::Value>,
        /// Template name -> berth variable (`service_name` -> `service`), see
        /// [`TEMPLATE_VARIABLES`].
        vars: BTreeMap<String, String>,
    },
    /// Templates of any extension: every file listed, every manifest file in a directory
    /// listed, every file a glob matched (expanded here, sorted, `{service}` replaced).
    Template {
        /// Files or directories.
        paths: Vec<PathBuf>,
        /// For each glob, the folder it was expanded in (its segments before the first
        /// wildcard): a file added to or removed from there may change what the glob matches,
        /// which change detection must see although `paths` no longer names a removed file.
        glob_bases: Vec<PathBuf>,
        /// Values (an environment's values are merged over them).
        values: serde_json::Map<String, serde_json::Value>,
        /// Template name -> berth variable (`service_name` -> `service`), see
        /// [`TEMPLATE_VARIABLES`].
        vars: BTreeMap<String, String>,
    },
    /// A kustomization directory.
    Kustomize {
        /// The directory.
        dir: PathBuf,
    },
    /// A Helm chart.
    Helm(Helm),
}

/// The variables berth gives templates, as `vars:` may name them (defined once in
/// berth-types, which berth-render provides them from).
pub use berth_types::TEMPLATE_VARIABLES;

/// A Helm chart source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helm {
    /// Chart directory (relative), packaged chart, or `repo/chart`.
    pub chart: String,
    /// Release name (default: the service's name).
    pub release: String,
    /// Chart version.
    pub version: Option<String>,
    /// `-f` values files, in order.
    pub values: Vec<PathBuf>,
    /// `--set` overrides, in order.
    pub set: Vec<String>,
    /// `image-values`: which chart values compose the built image (`None`: detect them from
    /// the chart's values.yaml).
    pub image_values: Option<ImageValues>,
}

/// `helm.image-values`: dotted paths of the chart values that compose an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageValues {
    /// The whole reference.
    pub image: Option<String>,
    /// The registry host.
    pub registry: Option<String>,
    /// The repository (with `registry`: the path on the host).
    pub repository: Option<String>,
    /// The tag.
    pub tag: Option<String>,
    /// The digest.
    pub digest: Option<String>,
}

/// Hooks of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Before the rollout; a failure stops the deploy before any workload changes.
    pub pre_deploy: Vec<Hook>,
    /// After the rollout is ready.
    pub post_deploy: Vec<Hook>,
}

/// One hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// Name (names the Job).
    pub name: String,
    /// What it runs.
    pub action: HookAction,
    /// Its own deadline, if any.
    pub timeout: Option<Duration>,
}

/// What a hook runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookAction {
    /// `sh -c <command>` in the service's image, as a Job.
    Command(String),
    /// A Job manifest file.
    Manifest(PathBuf),
}

/// How an environment receives deploys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Promotion {
    /// On a push to its branch, or after its `from` environment deployed.
    #[default]
    Auto,
    /// Only by `berth promote`.
    Manual,
}

/// One environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    /// Name.
    pub name: String,
    /// Namespace deployed into.
    pub namespace: String,
    /// kubeconfig context (`None`: the current one).
    pub context: Option<String>,
    /// Branch that deploys here automatically.
    pub branch: Option<String>,
    /// Values merged over every service's values.
    pub values: serde_json::Map<String, serde_json::Value>,
    /// Auto or manual.
    pub promotion: Promotion,
    /// The environment promoted from.
    pub from: Option<String>,
    /// Deploy settings (top-level ones with this environment's overrides).
    pub deploy: DeploySettings,
    /// Where its data comes from before each deploy.
    pub data: Option<crate::data::DataStep>,
    /// Who is told of its runs.
    pub notify: Vec<crate::notify::Notification>,
    /// `strategy.canary`: the steps a new revision takes to reach every pod (`None`: all at
    /// once).
    pub canary: Option<berth_types::canary::Canary>,
    /// Where the environment starts in berth.yaml.
    pub location: Location,
}

/// Lexical normalisation: drops `.` components and folds `a/..`; keeps leading `..`.
/// `""` and `"."` both become `"."`.
pub(crate) fn normalize(path: &str) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}
