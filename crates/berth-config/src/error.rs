//! The errors of this crate: one [`ConfigError`] holding [`Diagnostic`]s that point at
//! `berth.yaml:LINE:COLUMN` and say what to do.

use std::fmt;
use std::path::PathBuf;

/// A 1-based line and column (in characters) in `berth.yaml`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl Location {
    /// A location from a line and a column.
    pub fn new(line: u32, column: u32) -> Location {
        Location { line, column }
    }

    pub(crate) fn of<T>(spanned: &serde_saphyr::Spanned<T>) -> Location {
        Location::from_saphyr(&spanned.referenced)
    }

    pub(crate) fn from_saphyr(l: &serde_saphyr::Location) -> Location {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).max(1);
        Location::new(clamp(l.line()), clamp(l.column()))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why `berth.yaml` could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read {}: {source}; run berth in the directory that holds berth.yaml, or create one with `berth init`",
        path.display()
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration. Holds every problem found (a YAML
    /// or type error stops at the first one; semantic checks report them all), in file order.
    #[error("{}", DisplayAll(diagnostics))]
    Invalid {
        /// The problems, in the order of their location.
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// The diagnostics, empty for [`ConfigError::Read`].
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid { diagnostics } => diagnostics,
            ConfigError::Read { .. } => &[],
        }
    }
}

struct DisplayAll<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayAll<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// One problem at one place in the file.
///
/// Displays as `<problem> at <file>:<line>:<column><help>`, e.g.
/// ``unknown key `imgae` at berth.yaml:7:5, did you mean `image`?``.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as shown to the user (`berth.yaml`, or the path it was loaded from).
    pub file: String,
    /// Where the problem is.
    pub location: Location,
    /// What the problem is.
    pub problem: Problem,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}:{}", self.problem, self.file, self.location)?;
        match self.problem.help() {
            Some(Help::Suggest(s)) => write!(f, ", did you mean `{s}`?"),
            Some(Help::Text(t)) => write!(f, "; {t}"),
            None => Ok(()),
        }
    }
}

pub(crate) enum Help {
    Suggest(String),
    Text(String),
}

/// What is wrong. The `Display` is the headline; [`Diagnostic`] adds the place and the advice.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Not well-formed YAML (or a YAML feature berth refuses, like a duplicate key).
    #[error("{message}")]
    Syntax {
        /// The parser's message.
        message: String,
    },
    /// The file holds no document.
    #[error("berth.yaml is empty")]
    Empty,
    /// A mapping key that the model does not have.
    #[error("unknown key `{key}`")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The keys allowed at that place.
        expected: Vec<String>,
        /// The closest allowed key, if one is close.
        suggestion: Option<String>,
    },
    /// A value outside a fixed set (`promotion: manul`).
    #[error("unknown value `{value}`")]
    UnknownValue {
        /// The value as written.
        value: String,
        /// The allowed values.
        expected: Vec<String>,
        /// The closest allowed value, if one is close.
        suggestion: Option<String>,
    },
    /// A required key is absent. The location is the start of the mapping that lacks it for
    /// keys checked after parsing (`namespace`), a place inside that mapping for the others.
    #[error("missing key `{key}`")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A value of the wrong YAML type (a list where a string belongs...).
    #[error("{message}")]
    WrongType {
        /// The parser's message.
        message: String,
    },
    /// `services:` is empty.
    #[error("no services")]
    NoServices,
    /// A name used twice.
    #[error("duplicate {what} name `{name}` (first defined at line {})", first.line)]
    Duplicate {
        /// `service`, `environment` or `hook`.
        what: &'static str,
        /// The name.
        name: String,
        /// Where it was first defined.
        first: Location,
    },
    /// A service or environment name that cannot be a Kubernetes name.
    #[error("invalid {what} name `{name}`")]
    InvalidName {
        /// `service`, `environment` or `hook`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A service with none of `build`, `image` and `manifests`.
    #[error("service `{service}` has neither `build`, `image` nor `manifests`")]
    NothingToDeploy {
        /// The service.
        service: String,
    },
    /// A built service whose image repository cannot be known.
    #[error("service `{service}` is built but has no image repository")]
    NoRepository {
        /// The service.
        service: String,
    },
    /// `image` of a built service carries a tag or digest.
    #[error("image `{image}` of built service `{service}` has a tag or digest")]
    TaggedBuildImage {
        /// The service.
        service: String,
        /// The value.
        image: String,
    },
    /// A `helm.image-values` entry that is not a dotted values path, or a mapping without a
    /// repository, image or digest.
    #[error("helm image-values: `{key}: {path}` is not a values path")]
    InvalidImageValues {
        /// The key (`image`, `registry`, `repository`, `tag`, `digest`).
        key: &'static str,
        /// The path as written (empty: missing).
        path: String,
    },
    /// A `helm.image-values` mapping that names none of `repository`, `image`, `digest`.
    #[error("helm image-values maps none of `repository`, `image` and `digest`")]
    ImageValuesWithoutImage,
    /// An image reference or repository that breaks the distribution grammar.
    #[error("invalid image `{value}`: {reason}")]
    InvalidImage {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A path that must exist does not.
    #[error("`{key}: {path}` does not exist (looked for {})", resolved.display())]
    PathNotFound {
        /// The key holding the path.
        key: &'static str,
        /// The path as written.
        path: String,
        /// Where it was looked for.
        resolved: PathBuf,
    },
    /// A path that is written wrongly (absolute, empty).
    #[error("invalid path `{path}` in `{key}`: {reason}")]
    InvalidPath {
        /// The key holding the path.
        key: &'static str,
        /// The path as written.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A duration like `5x`.
    #[error("invalid duration `{value}`: {reason}")]
    InvalidDuration {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A memory size like `lots`.
    #[error("invalid size `{value}`: {reason}")]
    InvalidSize {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// `build.pids` out of range.
    #[error(
        "invalid `pids` {value}: give how many processes a RUN step may run at once, 1 to 4194304"
    )]
    InvalidPids {
        /// The value.
        value: i64,
    },
    /// A registry host (mirror or insecure host) written wrongly.
    #[error("invalid registry host `{value}`: {reason}")]
    InvalidHost {
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// `manifests` must have exactly one source.
    #[error("`manifests` of service `{service}` has {}", describe_sources(found))]
    ManifestSources {
        /// The service.
        service: String,
        /// The sources found (`path`, `template`, `kustomize`, `helm`).
        found: Vec<&'static str>,
    },
    /// A `template` glob pattern written wrongly.
    #[error("invalid `template` pattern `{pattern}`: {reason}")]
    InvalidTemplatePattern {
        /// The pattern as written.
        pattern: String,
        /// Why.
        reason: &'static str,
    },
    /// A `template` glob pattern that matches no file.
    #[error(
        "`template: {pattern}` matches no file{} (looked in {})",
        if expanded == pattern { String::new() } else { format!(" (`{expanded}` for this service)") },
        looked_in.display()
    )]
    TemplateMatchedNothing {
        /// The pattern as written.
        pattern: String,
        /// The pattern with `{service}` replaced.
        expanded: String,
        /// The directory of berth.yaml.
        looked_in: PathBuf,
    },
    /// `vars` names a variable berth does not provide.
    #[error(
        "`vars: {{{name}: {target}}}`: berth has no template variable `{target}` (it has: {})",
        crate::model::TEMPLATE_VARIABLES.join(", ")
    )]
    UnknownTemplateVariable {
        /// The name the templates use.
        name: String,
        /// The berth variable as written.
        target: String,
        /// The closest berth variable, if one is close.
        suggestion: Option<String>,
    },
    /// A `vars` name that cannot be a template variable, or that is one of berth's own.
    #[error("`vars` name `{name}` {reason}")]
    InvalidTemplateName {
        /// The name as written.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// `vars` with a source that is not rendered by berth's template engine.
    #[error(
        "`vars` cannot be used with `{source_key}`: only `path` and `template` manifests are berth templates"
    )]
    VarsWithoutTemplates {
        /// `kustomize` or `helm`.
        source_key: &'static str,
    },
    /// `values` that is not a mapping.
    #[error("`values` must be a mapping")]
    ValuesNotMapping,
    /// A hook needs exactly one of `command` and `manifest`.
    #[error("hook `{hook}` must have exactly one of `command` and `manifest`")]
    HookAction {
        /// The hook's name.
        hook: String,
    },
    /// `from` names an environment that does not exist.
    #[error("unknown environment `{name}` in `from`")]
    UnknownEnvironment {
        /// The name.
        name: String,
        /// The closest environment name, if one is close.
        suggestion: Option<String>,
    },
    /// `data:` with neither `clone` nor `copy`.
    #[error("`data` has neither `clone` nor `copy`")]
    EmptyData,
    /// `data.clone` needs exactly one of `pvcs` and `selector`.
    #[error("`data.clone` must have exactly one of `pvcs` and `selector`")]
    ClonePvcs,
    /// `keep: 0`.
    #[error("`keep` must be at least 1")]
    InvalidKeep,
    /// A value that must name an environment variable.
    #[error("`{value}` is not an environment variable name")]
    InvalidEnvVar {
        /// The value.
        value: String,
    },
    /// A `notify` entry with none or more than one of `webhook`, `slack`, `github`, `gitlab`.
    #[error(
        "a `notify` entry must have exactly one of `webhook`, `slack`, `github`, `gitlab` and `email`"
    )]
    NotifyTarget,
    /// A `notify.webhook` with neither or both of `url` and `url-env`.
    #[error("`webhook` must have exactly one of `url` and `url-env`")]
    WebhookUrl,
    /// A webhook `url` that is not http(s), or holds a user or password (never repeated).
    #[error("`url` must be an http:// or https:// URL with no user or password in it")]
    InvalidUrl,
    /// A canary step with none or more than one of `weight`, `pause` and `check`.
    #[error("a canary step must have exactly one of `weight`, `pause` and `check`")]
    CanaryStep,
    /// A canary weight outside 1..=100, or not above the weight before it.
    #[error("`weight: {value}` must be 1 to 100 and above the step's before it ({before})")]
    CanaryWeight {
        /// The weight as written.
        value: u64,
        /// The weight of the last weight step before it (0 at the start).
        before: u64,
    },
    /// `strategy.canary` with no step.
    #[error("`strategy.canary.steps` is empty")]
    CanarySteps,
    /// A check with none or more than one kind of measurement.
    #[error("a check must have exactly one of `logs`, `http` and `job`")]
    CheckKind,
    /// A regular expression that does not compile.
    #[error("`{pattern}` is not a regular expression: {reason}")]
    InvalidRegex {
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
    /// A `notify.email` address that is not one plain `local@domain`.
    #[error("`{value}` is not an e-mail address")]
    InvalidAddress {
        /// As written.
        value: String,
    },
    /// A `notify.github.repository` that is not `owner/name` (or a GitLab project that is a
    /// URL).
    #[error("`{value}` is not a repository name")]
    InvalidRepository {
        /// As written.
        value: String,
    },
    /// A `mask` key that is not `table.column` or `schema.table.column`.
    #[error("`{column}` in `mask` is not a column")]
    InvalidMaskColumn {
        /// The key as written.
        column: String,
    },
    /// A `services` entry with both `name` and `discover`.
    #[error("a service entry has both `name` and `discover`")]
    NameAndDiscover,
    /// A key that a `discover` entry (or, for `exclude`, a named entry) cannot have.
    #[error("`{key}` cannot be used here: {reason}")]
    NotWithDiscover {
        /// The key.
        key: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A `discover` pattern written wrongly.
    #[error("invalid `discover` pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// Why.
        reason: &'static str,
    },
    /// A `discover` pattern that matches no file.
    #[error("`discover: {pattern}` matches no file (looked in {})", looked_in.display())]
    DiscoveredNothing {
        /// The pattern as written.
        pattern: String,
        /// The directory of berth.yaml.
        looked_in: PathBuf,
    },
    /// A discovered folder whose name cannot be a service name.
    #[error("folder `{}` found by `discover` cannot name a service", folder.display())]
    DiscoveredName {
        /// The folder, relative to berth.yaml.
        folder: PathBuf,
    },
    /// `exclude` names a folder that `discover` did not find.
    #[error("`exclude: {name}` is not a folder that `discover` found (found: {})", found.join(", "))]
    UnknownExclude {
        /// The name as written.
        name: String,
        /// The folder names found.
        found: Vec<String>,
        /// The closest folder name, if one is close.
        suggestion: Option<String>,
    },
    /// A value passed to helm, kubectl or git as an argument that starts with `-` (it could be
    /// read as a flag: `release: "--post-renderer=/bin/sh"`).
    #[error("{what} `{value}` starts with `-`")]
    LooksLikeFlag {
        /// What the value is (`helm chart`, `context`...).
        what: &'static str,
        /// The value.
        value: String,
    },
    /// `from` chains that loop.
    #[error("promotion loop: {}", chain.join(" <- "))]
    PromotionCycle {
        /// The environments in the loop, starting and ending with the same one.
        chain: Vec<String>,
    },
}

fn describe_sources(found: &[&str]) -> String {
    if found.is_empty() {
        "no source".into()
    } else {
        format!("several sources: {}", found.join(", "))
    }
}

impl Problem {
    pub(crate) fn help(&self) -> Option<Help> {
        use Problem::*;
        let text = |s: &str| Some(Help::Text(s.to_string()));
        match self {
            Syntax { .. } => text("fix the YAML at that position"),
            Empty => text("start with a `services:` list (`berth init` writes one)"),
            UnknownKey {
                suggestion: Some(s),
                ..
            }
            | UnknownValue {
                suggestion: Some(s),
                ..
            }
            | UnknownEnvironment {
                suggestion: Some(s),
                ..
            }
            | UnknownExclude {
                suggestion: Some(s),
                ..
            }
            | UnknownTemplateVariable {
                suggestion: Some(s),
                ..
            } => Some(Help::Suggest(s.clone())),
            UnknownKey { expected, .. } => Some(Help::Text(format!(
                "remove it; allowed here: {}",
                expected.join(", ")
            ))),
            UnknownValue { expected, .. } => {
                Some(Help::Text(format!("use one of: {}", expected.join(", "))))
            }
            UnknownEnvironment { .. } => text("name an environment defined under `environments`"),
            MissingKey { key } => Some(Help::Text(missing_key_help(key))),
            WrongType { .. } => text("see `berth schema` for the expected shape"),
            NoServices => text("add at least one service under `services:`"),
            Duplicate { .. } => text("names must be unique; rename or remove one"),
            InvalidName { .. } => text(
                "use lowercase letters, digits and `-`, starting with a letter, at most 63 characters",
            ),
            NothingToDeploy { .. } => text(
                "add `build:` (with `context:`) to build it from source, `image:` to deploy an existing image, or `manifests:` to deploy objects without an image of their own (e.g. an Ingress)",
            ),
            NoRepository { .. } => {
                text("add `image: <registry>/<repository>` or set `registry.prefix`")
            }
            TaggedBuildImage { .. } => text(
                "write the repository only: berth tags built images with the commit and deploys them by digest",
            ),
            InvalidImageValues { .. } | ImageValuesWithoutImage => text(
                "map at least `repository` (or `image`, or `digest`) to a dotted path into the chart's values, e.g. `{repository: image.repository, tag: image.tag}`",
            ),
            InvalidImage { .. } => {
                text("write `[registry/]repository[:tag]`, e.g. `registry.example.com/shop/web`")
            }
            PathNotFound { .. } => text("paths are relative to the directory of berth.yaml"),
            InvalidPath { .. } => text(
                "write it relative to the directory of berth.yaml, without `..`: paths cannot leave the repository",
            ),
            InvalidDuration { .. } => {
                text("write a number with a unit: `500ms`, `30s`, `5m`, `1h`, or `1m30s`")
            }
            InvalidHost { .. } => text("write `host[:port]`, e.g. `127.0.0.1:15000`"),
            InvalidSize { .. } => {
                text("write bytes or a number with `k`, `m` or `g`: `512m`, `4g`")
            }
            InvalidPids { .. } => text(
                "a limit cannot be switched off from berth.yaml; `--pids-limit 0` on the command line does that",
            ),
            ManifestSources { .. } => {
                text("use exactly one of `path`, `template`, `kustomize` and `helm`")
            }
            InvalidTemplatePattern { .. } => text(
                "write it relative to berth.yaml: `*` matches within one folder level, `**` any number of levels, e.g. `k8s/**/*.yml` or `roles/{service}/templates/*.yml`",
            ),
            TemplateMatchedNothing { .. } => text(
                "check the spelling and the depth: `*` stays within one folder, `**` crosses folders; hidden files and folders are skipped",
            ),
            UnknownTemplateVariable {
                suggestion: None, ..
            } => text(
                "map the name your templates use to one of berth's variables, e.g. `service_name: service`",
            ),
            InvalidTemplateName { .. } => text(
                "use letters, digits and `_`, starting with a letter or `_`; berth's own variables need no alias",
            ),
            VarsWithoutTemplates { .. } => text(
                "kustomize and helm take their own inputs (helm: `values`/`set`); remove `vars`",
            ),
            ValuesNotMapping => text("write `key: value` pairs"),
            HookAction { .. } => text(
                "`command:` runs in the service's image as a Job; `manifest:` applies your own Job",
            ),
            PromotionCycle { .. } => text("`from` must form a chain that starts somewhere"),
            EmptyData => text(
                "add `clone:` (CSI snapshots of claims) or `copy:` (a masked database copy), or remove `data`",
            ),
            ClonePvcs => text(
                "list the claims in `pvcs: [name, ...]` or select them with `selector: app=db`",
            ),
            InvalidKeep => {
                text("keep at least the snapshot just made, or leave `keep` out to keep all")
            }
            InvalidEnvVar { .. } => text(
                "write the name of the variable that holds the URL (letters, digits, `_`), e.g. `PROD_DB_URL`; never the URL itself",
            ),
            NotifyTarget => text(
                "write `webhook: { url-env: VAR }` (a JSON POST per event), `slack: { url-env: VAR }` (an incoming webhook), `github: { repository: owner/name, token-env: VAR }` or `gitlab: { project: group/name, token-env: VAR }`, one per entry",
            ),
            WebhookUrl => text(
                "write `url: https://...` for a URL that holds no secret, or `url-env: VAR` naming the variable that holds it",
            ),
            InvalidUrl => text(
                "a URL holding a password or token belongs in an environment variable: write `url-env: VAR` instead",
            ),
            CanaryStep => text(
                "write one step per entry: `- weight: 20`, `- pause: 2m` (or `pause: manual`), `- check: [...]`",
            ),
            CanaryWeight { .. } => text(
                "weights are the percentage of pods running the new revision and go up step by step, e.g. 20, 50, 100",
            ),
            CanarySteps => text(
                "list steps, e.g. `steps: [{weight: 20}, {pause: manual}, {weight: 100}]`, or remove `strategy`",
            ),
            CheckKind => text(
                "write `logs: { pattern: \"ERROR\", max: 0 }` (the canary pods' log lines), `http: { url: https://..., status: 200 }` (a GET from where berth runs) or `job: { command: ... }` (a command in the new image, in the cluster)",
            ),
            InvalidRegex { .. } => text(
                "write a regular expression in Rust's `regex` syntax, e.g. `ERROR|panic`; escape `(`, `[` and `.` with `\\` to match them literally",
            ),
            InvalidAddress { .. } => text(
                "write one plain address per entry, e.g. `ops@example.com` (no name, no angle brackets, no comma)",
            ),
            InvalidRepository { .. } => text(
                "write GitHub's `owner/name` (e.g. `team/shop`), or GitLab's `group/name` or numeric project id, not a URL",
            ),
            InvalidMaskColumn { .. } => {
                text("write `table.column` or `schema.table.column`, e.g. `users.email`")
            }
            NameAndDiscover => text(
                "keep `discover` to find one service per folder, or `name` for one service; an entry with the name of a discovered folder overrides that folder",
            ),
            NotWithDiscover { .. } => text("remove it"),
            InvalidPattern { .. } => text(
                "write a path relative to berth.yaml with `*` for the folder names, e.g. `*/Dockerfile` or `services/*/Dockerfile`",
            ),
            DiscoveredNothing { .. } => text(
                "`*` matches within one folder level, e.g. `*/Dockerfile` finds home/Dockerfile and kids/Dockerfile; check the spelling and the depth",
            ),
            DiscoveredName { .. } => text(
                "rename the folder (lowercase letters, digits and `-`, starting with a letter), or list it under `exclude`",
            ),
            UnknownExclude { .. } => text("list folder names that `discover` finds"),
            LooksLikeFlag { .. } => {
                text("write the value itself; a leading `-` would be read as a command-line flag")
            }
        }
    }
}

fn missing_key_help(key: &str) -> String {
    match key {
        "namespace" => {
            "add `namespace:` with the Kubernetes namespace this environment deploys into".into()
        }
        "name" => "add `name:`; it names the objects and the release".into(),
        "services" => "add a `services:` list".into(),
        "chart" => "add `chart:` with a chart directory or `repo/chart`".into(),
        other => format!("add `{other}:`"),
    }
}
