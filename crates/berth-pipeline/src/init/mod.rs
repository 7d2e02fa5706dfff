//! `berth init`: read an existing repository and propose a berth.yaml that works, with the
//! reason for each choice.
//!
//! The repository's own files are the truth, read in this order, each later source filling
//! only what the earlier ones left open:
//!
//! 1. `docker-compose.yml` / `compose.yaml` ([`compose`]): every service with a `build` is a
//!    service, with its context, dockerfile, target, args and `image:` (the name the manifests
//!    use);
//! 2. `skaffold.yaml` v2/v3/v4 ([`skaffold`]): artifacts (docker, custom and buildpacks
//!    builders, `platforms`, a custom build script's `--platform`), and the manifests: rawYaml /
//!    kubectl globs, kustomize paths, helm releases with `setValueTemplates`;
//! 3. otherwise every `Dockerfile` (up to three levels down), built from its *real* context: the
//!    nearest folder, from the Dockerfile's own up to the root, where every `COPY`/`ADD` source
//!    exists ([`scan::real_context`]) — `docker/Dockerfile` copying `src/` builds from the root;
//!    with no Dockerfile at all, buildpack-style detection;
//! 4. manifests, for services that have none yet: a service folder's own `k8s/` etc., Helm
//!    charts (and which values compose the image, [`scan::chart`]), Kustomize directories (and
//!    their `images:` transformer entries), folders of Jinja templates whatever their extension
//!    (files with `{{ }}`/`{% %}`, with `vars:` for the names they use), and plain manifest
//!    folders, split file by file by the image each names (the rest is a manifests-only
//!    service, never silently the first service's);
//! 5. images: the name the manifests already use (compose's `image:`, a Skaffold artifact, a
//!    Kustomize `newName`, a chart's `repository`), written without a registry host so that
//!    berth pushes it under `registry.prefix` and pins every reference to the digest.
//!
//! The plan is data ([`InitPlan`]: services, [`Choice`]s with reasons, comments); the library
//! never prints — the CLI does. What cannot be decided from the files (platforms berth.yaml has
//! no key for, two candidates for one thing, a variable without a value) becomes a comment in
//! the written file rather than a silent guess.

mod compose;
pub(crate) mod scan;
mod skaffold;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A proposed berth.yaml: what it holds, why, and its text.
#[derive(Debug, Clone)]
pub struct InitPlan {
    /// `registry.prefix`.
    pub registry_prefix: String,
    /// The services, in file order.
    pub services: Vec<ServicePlan>,
    /// The `dev` environment's namespace.
    pub namespace: String,
    /// One entry per decision, with its reason, for people.
    pub choices: Vec<Choice>,
    /// Comments for the top of the file: what init could not decide.
    pub comments: Vec<String>,
    /// The files init read, relative to the root (for the file's header).
    pub read: Vec<String>,
    /// The file's text.
    pub yaml: String,
}

impl InitPlan {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One decision and why it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// What it is about: `service web`, `environment dev`.
    pub subject: String,
    /// What was chosen: `build context .`.
    pub choice: String,
    /// Why: `docker-compose.yml says context: .`.
    pub reason: String,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} — {}", self.subject, self.choice, self.reason)
    }
}

/// One service entry of the proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    /// The service's name (with `discover`, a label for the entry).
    pub name: String,
    /// `discover:` pattern: one service per matching folder.
    pub discover: Option<String>,
    /// How to build it; `None` for a manifests-only service.
    pub build: Option<BuildPlan>,
    /// `image:`; `None`: `<registry.prefix>/<name>`.
    pub image: Option<String>,
    /// `paths:` for change detection, when the context is wider than the service.
    pub paths: Vec<String>,
    /// Where its manifests come from.
    pub manifests: Option<ManifestsPlan>,
    /// Comments written above the entry: what init could not decide.
    pub comments: Vec<String>,
}

/// `build:` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildPlan {
    /// Context, relative to the root.
    pub context: String,
    /// Dockerfile, relative to the context; `None`: `Dockerfile` in the context, or detection.
    pub dockerfile: Option<String>,
    /// Stage to build.
    pub target: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
    /// Platforms the repository asks for (berth.yaml has no key for them yet: written as a
    /// comment).
    pub platforms: Vec<String>,
}

/// `manifests:` of a service.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestsPlan {
    /// Plain files or folders.
    Path(Vec<String>),
    /// Jinja templates: globs, renamed variables, values.
    Template {
        /// Globs relative to the root; `{service}` is the service's name.
        globs: Vec<String>,
        /// Template name -> berth variable (`service`, `image`).
        vars: BTreeMap<String, String>,
        /// Values for the other names the templates use.
        values: BTreeMap<String, Value>,
    },
    /// A kustomization directory.
    Kustomize(String),
    /// A Helm chart.
    Helm(HelmPlan),
}

/// A Helm chart as a manifests source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelmPlan {
    /// Chart directory.
    pub chart: String,
    /// Release name, when it differs from the service's.
    pub release: Option<String>,
    /// Values files.
    pub values: Vec<String>,
    /// `--set` overrides.
    pub set: Vec<String>,
    /// `image-values`: image part (`image`, `registry`, `repository`, `tag`, `digest`) -> the
    /// chart value it goes to.
    pub image_values: BTreeMap<String, String>,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Nothing to build or deploy was found.
    #[error(
        "found nothing berth can build or deploy in {0}: no docker-compose.yml with a build, no \
         skaffold.yaml, no Dockerfile, no stack berth recognises. Add a Dockerfile, or write \
         berth.yaml by hand (berth schema)"
    )]
    Nothing(PathBuf),
    /// A file could not be read or parsed.
    #[error(
        "cannot read {path}: {reason}; fix the file or move it aside, then run berth init again"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

pub(crate) const SKIP: &[&str] = &[".git", "node_modules", "target", "vendor", ".venv", "dist"];
pub(crate) const MANIFEST_DIRS: &[&str] = &["k8s", "deploy", "manifests", "kubernetes"];

/// A service while it is being planned.
#[derive(Debug, Clone)]
pub(crate) struct Svc {
    pub plan: ServicePlan,
    /// The folder that is the service's own (its Dockerfile's), relative to the root.
    pub home: String,
    /// The image name the repository's tooling gives it (compose `image:`, Skaffold artifact),
    /// and where that name comes from.
    pub named: Option<(String, String)>,
}

/// The state of one planning pass.
pub(crate) struct Planner<'a> {
    pub root: &'a Path,
    pub project: String,
    pub services: Vec<Svc>,
    pub choices: Vec<Choice>,
    pub comments: Vec<String>,
    pub read: Vec<String>,
}

impl Planner<'_> {
    pub fn choose(
        &mut self,
        subject: impl Into<String>,
        choice: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.choices.push(Choice {
            subject: subject.into(),
            choice: choice.into(),
            reason: reason.into(),
        });
    }

    pub fn rel(&self, p: &Path) -> String {
        rel(self.root, p)
    }

    pub fn read_text(&self, p: &Path) -> Result<String, InitError> {
        std::fs::read_to_string(p).map_err(|e| InitError::Read {
            path: p.to_path_buf(),
            reason: e.to_string(),
        })
    }

    fn by_name(&mut self, name: &str) -> Option<&mut Svc> {
        self.services.iter_mut().find(|s| s.plan.name == name)
    }
}

pub(crate) fn rel(root: &Path, p: &Path) -> String {
    let r = p
        .strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .to_string();
    let r = r.trim_start_matches("./").trim_end_matches('/').to_string();
    if r.is_empty() { ".".into() } else { r }
}

/// A path as written in a file of the repository (`./k8s/`, `k8s`) in berth.yaml's form.
pub(crate) fn clean(p: &str) -> String {
    let mut s = p.trim();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    let s = s.trim_end_matches('/');
    if s.is_empty() || s == "." {
        ".".into()
    } else {
        s.to_string()
    }
}

/// `a` joined with `b`, both relative to the root, cleaned (`.` + `docker` -> `docker`).
pub(crate) fn join(a: &str, b: &str) -> String {
    if a == "." {
        clean(b)
    } else {
        clean(&format!("{a}/{b}"))
    }
}

/// Whether `p` exists and resolves inside `root`: the scan never looks through a link that
/// leads out of the repository (`k8s/host -> /` would have it read every YAML file of the
/// host into the proposal, and a linked service folder make a service of someone else's code).
pub(crate) fn inside(root: &Path, p: &Path) -> bool {
    match (p.canonicalize(), root.canonicalize()) {
        (Ok(target), Ok(root)) => target.starts_with(root),
        _ => false,
    }
}

pub(crate) fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut out = String::new();
    for c in s.trim_matches('-').chars() {
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// The repository part of an image reference (no tag, no digest).
pub(crate) fn repository(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_string(),
        _ => no_digest.to_string(),
    }
}

/// Whether an image name starts with a registry host (`reg.example/x`, `localhost:5000/x`).
pub(crate) fn has_host(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains(['.', ':']) || first == "localhost",
        None => false,
    }
}

/// The name as Docker reads it: `docker.io/library/web` -> `web`, `docker.io/team/web` ->
/// `team/web`; for comparing names written in different forms.
pub(crate) fn short_name(image: &str) -> String {
    let r = repository(image);
    let r = r
        .strip_prefix("docker.io/")
        .or_else(|| r.strip_prefix("index.docker.io/"))
        .unwrap_or(&r)
        .to_string();
    r.strip_prefix("library/").map(String::from).unwrap_or(r)
}

/// Proposes a berth.yaml for the repository at `root`.
pub fn plan(root: &Path, registry_prefix: &str, namespace: &str) -> Result<InitPlan, InitError> {
    let project = slug(
        &std::fs::canonicalize(root)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "app".into()),
    );
    let mut p = Planner {
        root,
        project: if project.is_empty() {
            "app".into()
        } else {
            project
        },
        services: Vec::new(),
        choices: Vec::new(),
        comments: Vec::new(),
        read: Vec::new(),
    };
    compose::read(&mut p)?;
    let sk = skaffold::read(&mut p)?;
    let from_tooling = !p.services.is_empty();
    if p.services.is_empty() {
        scan::dockerfiles(&mut p);
    }
    if !from_tooling
        && p.services.len() >= 2
        && let Some(generic) = scan::generic_template(&mut p)
    {
        p.services = generic;
        return Ok(finish(p, registry_prefix, namespace));
    }
    if p.services.is_empty() {
        scan::buildpacks(&mut p);
    }
    if p.services.is_empty() {
        return Err(InitError::Nothing(root.to_path_buf()));
    }
    let index = scan::ManifestIndex::build(root);
    if let Some(sk) = &sk {
        skaffold::assign(&mut p, sk, &index);
    }
    scan::assign_manifests(&mut p, &index);
    scan::images(&mut p, &index);
    Ok(finish(p, registry_prefix, namespace))
}

fn finish(mut p: Planner<'_>, registry_prefix: &str, namespace: &str) -> InitPlan {
    p.choose(
        "registry",
        format!("prefix {registry_prefix}"),
        "images named without a registry host are pushed under it (--registry to change)",
    );
    p.choose(
        "environment dev",
        format!("namespace {namespace}"),
        "--namespace, by default the folder's name",
    );
    let services: Vec<ServicePlan> = p.services.into_iter().map(|s| s.plan).collect();
    let mut plan = InitPlan {
        registry_prefix: registry_prefix.to_string(),
        services,
        namespace: namespace.to_string(),
        choices: p.choices,
        comments: p.comments,
        read: p.read,
        yaml: String::new(),
    };
    plan.yaml = write::yaml(&plan);
    plan
}

/// Names already used: a new manifests-only service gets a free one.
pub(crate) fn free_name(p: &Planner<'_>, wanted: &str) -> String {
    let taken: BTreeSet<&str> = p.services.iter().map(|s| s.plan.name.as_str()).collect();
    if !taken.contains(wanted) {
        return wanted.to_string();
    }
    (2..)
        .map(|i| format!("{wanted}-{i}"))
        .find(|n| !taken.contains(n.as_str()))
        .unwrap_or_else(|| wanted.to_string())
}

#[cfg(test)]
mod tests;
