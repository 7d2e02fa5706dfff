//! Raw file -> [`Config`]: defaults and every check that YAML types alone cannot express.
//! All problems are collected, so one run of `berth` shows them all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_types::ImageRef;
use serde_saphyr::Spanned;

use crate::duration::parse_duration;
use crate::model::{
    Build, BuildSandbox, Config, DeploySettings, Environment, Helm, Hook, HookAction, Hooks,
    ImageNaming, ImageValues, Manifests, Registry, Service, Test, normalize,
};
use crate::raw::{RawConfig, RawDeploy, RawEnvironment, RawHook, RawManifests, RawService};
use crate::suggest::suggest;
use crate::{Diagnostic, Location, Problem};

pub(crate) struct Checker<'a> {
    file: &'a str,
    dir: &'a Path,
    pub diagnostics: Vec<Diagnostic>,
}

type Values = serde_json::Map<String, serde_json::Value>;

/// What a `services` entry is.
enum Identity {
    /// One service, by `name`.
    Named,
    /// One service per folder matching this pattern.
    Discover(Spanned<String>),
    /// Neither or both (reported).
    Invalid,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a str, dir: &'a Path) -> Checker<'a> {
        Checker {
            file,
            dir,
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn report(&mut self, location: Location, problem: Problem) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_string(),
            location,
            problem,
        });
    }

    pub fn config(&mut self, raw: RawConfig) -> Config {
        let registry = self.registry(raw.registry.unwrap_or_default());
        let deploy = self.deploy(DeploySettings::default(), raw.deploy.as_ref());
        let shared = raw
            .shared
            .iter()
            .filter_map(|p| self.relative_path("shared", p))
            .collect();
        if raw.services.is_empty() {
            self.report(Location::new(1, 1), Problem::NoServices);
        }
        // Entries with a name win over a discovered folder of the same name (per-folder
        // overrides), wherever they appear in the list.
        let named: HashSet<String> = raw
            .services
            .iter()
            .filter(|s| s.value.discover.is_none())
            .filter_map(|s| s.value.name.as_ref().map(|n| n.value.clone()))
            .collect();
        let mut seen = HashMap::new();
        let mut services = Vec::new();
        for s in raw.services {
            let entries = match self.identity(&s) {
                Identity::Named => vec![(s, None)],
                Identity::Discover(pattern) => self
                    .discover(s, &pattern, &named)
                    .into_iter()
                    .map(|e| (e, Some(pattern.value.clone())))
                    .collect(),
                Identity::Invalid => continue,
            };
            for (entry, discovered_by) in entries {
                let name = entry.value.name.clone().expect("identity checked the name");
                self.unique("service", &name, &mut seen);
                if let Some(mut service) = self.service(entry, &registry) {
                    service.discovered_by = discovered_by;
                    services.push(service);
                }
            }
        }
        let environments = self.environments(raw.environments, deploy.clone());
        self.diagnostics.sort_by_key(|d| d.location);
        // A problem in a `discover` entry's shared keys shows once, not once per folder.
        self.diagnostics.dedup();
        Config {
            dir: self.dir.to_path_buf(),
            file: self.file.to_string(),
            registry,
            deploy,
            shared,
            services,
            environments,
        }
    }

    fn unique(
        &mut self,
        what: &'static str,
        name: &Spanned<String>,
        seen: &mut HashMap<String, Location>,
    ) {
        let at = Location::of(name);
        if !is_dns_label(&name.value) {
            self.report(
                at,
                Problem::InvalidName {
                    what,
                    name: name.value.clone(),
                },
            );
        }
        if let Some(first) = seen.get(&name.value) {
            self.report(
                at,
                Problem::Duplicate {
                    what,
                    name: name.value.clone(),
                    first: *first,
                },
            );
        } else {
            seen.insert(name.value.clone(), at);
        }
    }

    /// Whether an entry is one named service or a `discover` entry; reports entries with both
    /// or neither.
    fn identity(&mut self, s: &Spanned<RawService>) -> Identity {
        let at = Location::of(s);
        match (&s.value.name, &s.value.discover) {
            (Some(_), None) => {
                if let Some(first) = s.value.exclude.first() {
                    self.report(
                        Location::of(first),
                        Problem::NotWithDiscover {
                            key: "exclude",
                            reason: "it lists folders a `discover` entry skips",
                        },
                    );
                }
                Identity::Named
            }
            (None, Some(pattern)) => Identity::Discover(pattern.clone()),
            (Some(name), Some(_)) => {
                self.report(Location::of(name), Problem::NameAndDiscover);
                Identity::Invalid
            }
            (None, None) => {
                self.report(at, Problem::MissingKey { key: "name".into() });
                Identity::Invalid
            }
        }
    }

    /// Expands a `discover` entry into one named entry per folder found (skipping excluded
    /// folders and those that a named entry overrides). Each copy points at the entry.
    fn discover(
        &mut self,
        entry: Spanned<RawService>,
        pattern: &Spanned<String>,
        named: &HashSet<String>,
    ) -> Vec<Spanned<RawService>> {
        let at = Location::of(pattern);
        let raw = &entry.value;
        let forbidden = [
            (
                raw.image.as_ref().map(Location::of),
                "image",
                "discovered services are pushed to `<registry.prefix>/<folder name>`; set `registry.prefix`, or override one folder with an entry of its name",
            ),
            (
                raw.paths.as_ref().and_then(|p| p.first()).map(Location::of),
                "paths",
                "each discovered service's paths are its folder; add shared paths to the top-level `shared`",
            ),
            (
                raw.build
                    .as_ref()
                    .and_then(|b| b.value.context.as_ref())
                    .map(Location::of),
                "context",
                "each discovered service is built with its folder as context",
            ),
            (
                raw.hooks
                    .pre_deploy
                    .first()
                    .or(raw.hooks.post_deploy.first())
                    .map(Location::of),
                "hooks",
                "hooks name one Job; give them to one service with an entry of its name",
            ),
        ];
        let mut ok = true;
        for (location, key, reason) in forbidden {
            if let Some(location) = location {
                self.report(location, Problem::NotWithDiscover { key, reason });
                ok = false;
            }
        }
        if let Some(reason) = crate::discover::pattern_problem(&pattern.value) {
            self.report(
                at,
                Problem::InvalidPattern {
                    pattern: pattern.value.clone(),
                    reason,
                },
            );
            return Vec::new();
        }
        let (folders, escaped) = crate::discover::folders(self.dir, &pattern.value);
        for path in &escaped {
            self.report(
                at,
                Problem::InvalidPath {
                    key: "discover",
                    path: path.display().to_string(),
                    reason: "a symlink leads it outside the repository; discover does not follow it",
                },
            );
        }
        if !escaped.is_empty() {
            return Vec::new();
        }
        if folders.is_empty() {
            self.report(
                at,
                Problem::DiscoveredNothing {
                    pattern: pattern.value.clone(),
                    looked_in: self.dir.to_path_buf(),
                },
            );
            return Vec::new();
        }
        let name_of = |f: &PathBuf| {
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let names: Vec<String> = folders.iter().map(name_of).collect();
        for x in &raw.exclude {
            if !names.contains(&x.value) {
                self.report(
                    Location::of(x),
                    Problem::UnknownExclude {
                        name: x.value.clone(),
                        found: names.clone(),
                        suggestion: suggest(&x.value, names.iter().map(String::as_str)),
                    },
                );
            }
        }
        if !ok {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (folder, name) in folders.iter().zip(names) {
            if raw.exclude.iter().any(|x| x.value == name) || named.contains(&name) {
                continue;
            }
            if !is_dns_label(&name) {
                self.report(
                    at,
                    Problem::DiscoveredName {
                        folder: folder.clone(),
                    },
                );
                continue;
            }
            let here = |value: String| Spanned::new(value, pattern.referenced, pattern.defined);
            let mut copy = entry.clone();
            copy.value.discover = None;
            copy.value.exclude.clear();
            copy.value.name = Some(here(name));
            let build = copy.value.build.get_or_insert_with(|| {
                Spanned::new(
                    crate::raw::RawBuild::default(),
                    pattern.referenced,
                    pattern.defined,
                )
            });
            build.value.context = Some(here(folder.to_string_lossy().into_owned()));
            out.push(copy);
        }
        out
    }

    fn registry(&mut self, raw: crate::raw::RawRegistry) -> Registry {
        let mut out = Registry {
            flatten: raw.flatten.unwrap_or(false),
            ..Registry::default()
        };
        if let Some(prefix) = raw.prefix {
            let p = prefix.value.trim_end_matches('/');
            match check_prefix(p) {
                Ok(()) => out.prefix = Some(p.to_string()),
                Err(reason) => self.report(
                    Location::of(&prefix),
                    Problem::InvalidImage {
                        value: prefix.value.clone(),
                        reason,
                    },
                ),
            }
        }
        for host in raw.insecure {
            if self.host(&host) {
                out.insecure.push(host.value);
            }
        }
        for (from, to) in raw.mirrors {
            if let Some(reason) = host_problem(&from) {
                // The key's own location is not kept by the parser; point at its value.
                self.report(
                    Location::of(&to),
                    Problem::InvalidHost {
                        value: from.clone(),
                        reason,
                    },
                );
            } else if self.host(&to) {
                out.mirrors.insert(from, to.value);
            }
        }
        out
    }

    fn host(&mut self, host: &Spanned<String>) -> bool {
        match host_problem(&host.value) {
            Some(reason) => {
                self.report(
                    Location::of(host),
                    Problem::InvalidHost {
                        value: host.value.clone(),
                        reason,
                    },
                );
                false
            }
            None => true,
        }
    }

    pub(crate) fn duration(&mut self, text: &Spanned<String>) -> Option<Duration> {
        match parse_duration(&text.value) {
            Ok(d) => Some(d),
            Err(reason) => {
                self.report(
                    Location::of(text),
                    Problem::InvalidDuration {
                        value: text.value.clone(),
                        reason,
                    },
                );
                None
            }
        }
    }

    fn deploy(&mut self, base: DeploySettings, raw: Option<&RawDeploy>) -> DeploySettings {
        let mut out = base;
        if let Some(raw) = raw {
            if let Some(t) = &raw.timeout
                && let Some(d) = self.duration(t)
            {
                out.timeout = d;
            }
            if let Some(r) = raw.rollback {
                out.rollback = r;
            }
            if let Some(n) = raw.node_credentials {
                out.node_credentials = n;
            }
            if let Some(name) = &raw.pull_secret {
                if is_dns_subdomain(&name.value) {
                    out.pull_secret = Some(name.value.clone());
                } else {
                    self.report(
                        Location::of(name),
                        Problem::InvalidName {
                            what: "deploy.pull-secret Secret",
                            name: name.value.clone(),
                        },
                    );
                }
            }
        }
        out
    }

    /// A relative path, normalised; absolute or empty paths are reported.
    fn relative_path(&mut self, key: &'static str, path: &Spanned<String>) -> Option<PathBuf> {
        self.relative_str(key, &path.value, Location::of(path))
    }

    fn relative_str(&mut self, key: &'static str, path: &str, at: Location) -> Option<PathBuf> {
        let reason = if path.trim().is_empty() {
            Some("it is empty")
        } else if Path::new(path).is_absolute() {
            Some("it is absolute")
        } else if Path::new(path)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            Some("`..` leaves the repository; every path must stay inside it")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.report(
                at,
                Problem::InvalidPath {
                    key,
                    path: path.to_string(),
                    reason,
                },
            );
            return None;
        }
        Some(normalize(path))
    }

    /// A relative path that must exist.
    fn existing(&mut self, key: &'static str, path: &str, at: Location) -> Option<PathBuf> {
        let rel = self.relative_str(key, path, at)?;
        let resolved = self.dir.join(&rel);
        if resolved.exists() {
            // A symlink in the repository (`manifests -> /root/.kube`) must not lead out of it.
            let inside = match (resolved.canonicalize(), self.dir.canonicalize()) {
                (Ok(target), Ok(root)) => target.starts_with(root),
                _ => false,
            };
            if !inside {
                self.report(
                    at,
                    Problem::InvalidPath {
                        key,
                        path: path.to_string(),
                        reason: "a symlink leads it outside the repository",
                    },
                );
                return None;
            }
            Some(rel)
        } else {
            self.report(
                at,
                Problem::PathNotFound {
                    key,
                    path: path.to_string(),
                    resolved,
                },
            );
            None
        }
    }

    fn values(&mut self, raw: Option<Spanned<serde_json::Value>>) -> Values {
        match raw {
            None => Values::new(),
            Some(Spanned {
                value: serde_json::Value::Object(map),
                ..
            }) => map,
            Some(Spanned {
                value: serde_json::Value::Null,
                ..
            }) => Values::new(),
            Some(other) => {
                self.report(Location::of(&other), Problem::ValuesNotMapping);
                Values::new()
            }
        }
    }

    fn service(&mut self, raw: Spanned<RawService>, registry: &Registry) -> Option<Service> {
        let location = Location::of(&raw);
        let raw = raw.value;
        let name = raw
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_default();
        let build = raw.build.map(|b| {
            let b = b.value;
            let context = match &b.context {
                Some(c) => self
                    .existing("context", &c.value, Location::of(c))
                    .unwrap_or_else(|| normalize(&c.value)),
                None => PathBuf::from("."),
            };
            let dockerfile = b.dockerfile.as_ref().and_then(|d| {
                let rel = self.relative_path("dockerfile", d)?;
                let resolved = self.dir.join(&context).join(&rel);
                if !resolved.is_file() {
                    self.report(
                        Location::of(d),
                        Problem::PathNotFound {
                            key: "dockerfile",
                            path: d.value.clone(),
                            resolved,
                        },
                    );
                }
                Some(rel)
            });
            let base = b
                .base
                .filter(|base| self.image(&base.value, base).is_some())
                .map(|base| base.value);
            let ca =
                b.ca.iter()
                    .filter_map(|c| {
                        let rel = self.existing("ca", &c.value, Location::of(c))?;
                        if !self.dir.join(&rel).is_file() {
                            self.report(
                                Location::of(c),
                                Problem::InvalidPath {
                                    key: "ca",
                                    path: c.value.clone(),
                                    reason: "it is not a file (a PEM file of CA certificates)",
                                },
                            );
                            return None;
                        }
                        Some(rel)
                    })
                    .collect();
            let memory = b.memory.as_ref().and_then(|m| {
                berth_types::size::parse_size(&m.value)
                    .map_err(|reason| {
                        self.report(
                            Location::of(m),
                            Problem::InvalidSize {
                                value: m.value.clone(),
                                reason,
                            },
                        )
                    })
                    .ok()
            });
            let pids = b.pids.as_ref().and_then(|p| match u32::try_from(p.value) {
                Ok(n) if (1..=4_194_304).contains(&n) => Some(n),
                _ => {
                    self.report(Location::of(p), Problem::InvalidPids { value: p.value });
                    None
                }
            });
            let step_timeout = b.step_timeout.as_ref().and_then(|t| self.duration(t));
            Build {
                context,
                dockerfile,
                target: b.target,
                args: b.args,
                base,
                sandbox: BuildSandbox {
                    network: b.network,
                    pids,
                    memory,
                    step_timeout,
                    ca,
                },
            }
        });
        let test = raw.test.and_then(|t| match t.value {
            crate::raw::RawTest::Command(command) => Some(Test {
                command,
                timeout: None,
            }),
            crate::raw::RawTest::Full(full) => {
                let timeout = match &full.timeout {
                    None => None,
                    Some(text) => {
                        let spanned = Spanned::new(text.clone(), t.referenced, t.defined);
                        Some(self.duration(&spanned)?)
                    }
                };
                Some(Test {
                    command: full.command,
                    timeout,
                })
            }
        });
        let mut naming = ImageNaming::Written;
        // Outer `None`: a problem was reported; `Some(None)`: a manifests-only service.
        let image: Option<Option<ImageRef>> = match (&raw.image, &build) {
            (Some(img), Some(_)) => {
                if has_tag_or_digest(&img.value) {
                    self.report(
                        Location::of(img),
                        Problem::TaggedBuildImage {
                            service: name.clone(),
                            image: img.value.clone(),
                        },
                    );
                    None
                } else if !has_registry_host(&img.value) && self.image(&img.value, img).is_some() {
                    // The name the manifests use (Skaffold's model): pushed under the prefix.
                    naming = ImageNaming::ManifestName(img.value.clone());
                    match naming.repository(&name, registry.prefix.as_deref(), registry.flatten) {
                        Some(Ok(r)) => Some(Some(r)),
                        Some(Err(e)) => {
                            self.report(
                                Location::of(img),
                                Problem::InvalidImage {
                                    value: img.value.clone(),
                                    reason: e.to_string(),
                                },
                            );
                            None
                        }
                        None => None,
                    }
                } else if has_registry_host(&img.value) {
                    self.image(&img.value, img).map(Some)
                } else {
                    None // reported by `image` above
                }
            }
            (Some(img), None) => self.image(&img.value, img).map(Some),
            (None, Some(_)) => match &registry.prefix {
                Some(prefix) => {
                    naming = ImageNaming::ServiceName;
                    format!("{prefix}/{name}").parse().ok().map(Some)
                }
                None => {
                    self.report(
                        location,
                        Problem::NoRepository {
                            service: name.clone(),
                        },
                    );
                    None
                }
            },
            // Objects shared by the other services (one Ingress in front of them): no image.
            (None, None) if raw.manifests.is_some() => Some(None),
            (None, None) => {
                self.report(
                    location,
                    Problem::NothingToDeploy {
                        service: name.clone(),
                    },
                );
                None
            }
        };
        let paths = match &raw.paths {
            Some(paths) => paths
                .iter()
                .filter_map(|p| self.relative_path("paths", p))
                .collect(),
            None => build.iter().map(|b| b.context.clone()).collect(),
        };
        let manifests = raw.manifests.and_then(|m| self.manifests(&name, m));
        let hooks = Hooks {
            pre_deploy: self.hooks(raw.hooks.pre_deploy),
            post_deploy: self.hooks(raw.hooks.post_deploy),
        };
        Some(Service {
            name,
            build,
            image: image?,
            naming,
            test,
            paths,
            manifests,
            hooks,
            location,
            discovered_by: None,
        })
    }

    fn image(&mut self, value: &str, at: &Spanned<String>) -> Option<ImageRef> {
        match value.parse::<ImageRef>() {
            Ok(r) => Some(r),
            Err(e) => {
                self.report(
                    Location::of(at),
                    Problem::InvalidImage {
                        value: value.to_string(),
                        reason: e.to_string(),
                    },
                );
                None
            }
        }
    }

    fn paths_of(
        &mut self,
        key: &'static str,
        list: Spanned<crate::raw::OneOrMany>,
    ) -> Vec<PathBuf> {
        let at = Location::of(&list);
        list.value
            .into_vec()
            .iter()
            .filter_map(|p| self.existing(key, p, at))
            .collect()
    }

    fn manifests(&mut self, service: &str, raw: Spanned<RawManifests>) -> Option<Manifests> {
        let at = Location::of(&raw);
        let m = raw.value;
        let found: Vec<&'static str> = [
            ("path", m.path.is_some()),
            ("template", m.template.is_some()),
            ("kustomize", m.kustomize.is_some()),
            ("helm", m.helm.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        if found.len() != 1 {
            self.report(
                at,
                Problem::ManifestSources {
                    service: service.to_string(),
                    found,
                },
            );
            return None;
        }
        let values = self.values(m.values);
        let vars = self.vars(&m.vars);
        let not_templates = if m.kustomize.is_some() {
            Some("kustomize")
        } else if m.helm.is_some() {
            Some("helm")
        } else {
            None
        };
        if let (Some(source_key), Some(first)) = (not_templates, m.vars.values().next()) {
            self.report(
                Location::of(first),
                Problem::VarsWithoutTemplates { source_key },
            );
        }
        if let Some(p) = m.path {
            return Some(Manifests::Path {
                paths: self.paths_of("path", p),
                values,
                vars,
            });
        }
        if let Some(t) = m.template {
            let at = Location::of(&t);
            let mut paths = Vec::new();
            let mut glob_bases = Vec::new();
            for p in t.value.into_vec() {
                // Overlapping patterns (`k8s/*.yml`, `k8s/**/*.yml`) name a file once.
                for file in self.template_entry(service, &p, at, &mut glob_bases) {
                    if !paths.contains(&file) {
                        paths.push(file);
                    }
                }
            }
            return Some(Manifests::Template {
                paths,
                glob_bases,
                values,
                vars,
            });
        }
        if let Some(k) = m.kustomize {
            let dir = self.existing("kustomize", &k.value, Location::of(&k))?;
            return Some(Manifests::Kustomize { dir });
        }
        let h = m.helm?;
        let h = h.value;
        let chart = h.chart.value.clone();
        let looks_local = chart.starts_with('.')
            || chart.starts_with('/')
            || chart.ends_with(".tgz")
            || self.dir.join(&chart).exists()
            || chart.split('/').count() != 2;
        if looks_local {
            self.existing("chart", &chart, Location::of(&h.chart))?;
        }
        let release = h.release.unwrap_or_else(|| service.to_string());
        if !is_dns_label(&release) {
            self.report(
                Location::of(&h.chart),
                Problem::InvalidName {
                    what: "helm release",
                    name: release.clone(),
                },
            );
        }
        for (what, value) in [
            ("helm chart", Some(&chart)),
            ("helm version", h.version.as_ref()),
        ]
        .into_iter()
        .chain(h.set.iter().map(|s| ("helm set", Some(s))))
        {
            if let Some(v) = value
                && v.starts_with('-')
            {
                self.report(
                    Location::of(&h.chart),
                    Problem::LooksLikeFlag {
                        what,
                        value: v.clone(),
                    },
                );
            }
        }
        let values_files = h
            .values
            .iter()
            .filter_map(|v| self.existing("values", &v.value, Location::of(v)))
            .collect();
        let image_values = h.image_values.as_ref().map(|iv| {
            let v = &iv.value;
            for (key, path) in [
                ("image", &v.image),
                ("registry", &v.registry),
                ("repository", &v.repository),
                ("tag", &v.tag),
                ("digest", &v.digest),
            ] {
                if let Some(p) = path
                    && (p.is_empty() || p.split('.').any(str::is_empty) || p.contains(['=', ',']))
                {
                    self.report(
                        Location::of(iv),
                        Problem::InvalidImageValues {
                            key,
                            path: p.clone(),
                        },
                    );
                }
            }
            if v.image.is_none() && v.repository.is_none() && v.digest.is_none() {
                self.report(Location::of(iv), Problem::ImageValuesWithoutImage);
            }
            ImageValues {
                image: v.image.clone(),
                registry: v.registry.clone(),
                repository: v.repository.clone(),
                tag: v.tag.clone(),
                digest: v.digest.clone(),
            }
        });
        Some(Manifests::Helm(Helm {
            chart,
            release,
            version: h.version,
            values: values_files,
            set: h.set,
            image_values,
        }))
    }

    /// One `template` entry: `{service}` replaced, then a glob expanded to the files it
    /// matches (sorted), or a file or directory that must exist. Either way nothing may lead
    /// out of the repository.
    fn template_entry(
        &mut self,
        service: &str,
        entry: &str,
        at: Location,
        glob_bases: &mut Vec<PathBuf>,
    ) -> Vec<PathBuf> {
        let expanded = entry.replace("{service}", service);
        if !crate::discover::is_glob(&expanded) {
            return self
                .existing("template", &expanded, at)
                .into_iter()
                .collect();
        }
        if let Some(reason) = crate::discover::glob_problem(&expanded) {
            self.report(
                at,
                Problem::InvalidTemplatePattern {
                    pattern: entry.to_string(),
                    reason,
                },
            );
            return Vec::new();
        }
        let base: PathBuf = expanded
            .split('/')
            .take_while(|s| !crate::discover::is_glob(s))
            .collect();
        glob_bases.push(if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        });
        let (files, escaped) = crate::discover::glob_files(self.dir, &expanded);
        for path in &escaped {
            self.report(
                at,
                Problem::InvalidPath {
                    key: "template",
                    path: path.display().to_string(),
                    reason: "a symlink leads it outside the repository; a template pattern does not follow it",
                },
            );
        }
        if !escaped.is_empty() {
            return Vec::new();
        }
        if files.is_empty() {
            self.report(
                at,
                Problem::TemplateMatchedNothing {
                    pattern: entry.to_string(),
                    expanded,
                    looked_in: self.dir.to_path_buf(),
                },
            );
        }
        files
    }

    /// `vars`: names the templates use -> berth's variables.
    fn vars(&mut self, raw: &BTreeMap<String, Spanned<String>>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, target) in raw {
            let at = Location::of(target);
            let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let base = ["service", "image", "env", "images"];
            if !identifier {
                self.report(
                    at,
                    Problem::InvalidTemplateName {
                        name: name.clone(),
                        reason: "is not a template variable name",
                    },
                );
            } else if base.contains(&name.as_str()) {
                self.report(
                    at,
                    Problem::InvalidTemplateName {
                        name: name.clone(),
                        reason: "is one of berth's own variables; choose another name",
                    },
                );
            } else if !crate::model::TEMPLATE_VARIABLES.contains(&target.value.as_str()) {
                self.report(
                    at,
                    Problem::UnknownTemplateVariable {
                        name: name.clone(),
                        target: target.value.clone(),
                        suggestion: suggest(
                            &target.value,
                            crate::model::TEMPLATE_VARIABLES.iter().copied(),
                        ),
                    },
                );
            } else {
                out.insert(name.clone(), target.value.clone());
            }
        }
        out
    }

    fn hooks(&mut self, raw: Vec<Spanned<RawHook>>) -> Vec<Hook> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for h in raw {
            let at = Location::of(&h);
            let h = h.value;
            self.unique("hook", &h.name, &mut seen);
            let timeout = h.timeout.as_ref().and_then(|t| self.duration(t));
            let action = match (h.command, h.manifest) {
                (Some(c), None) => Some(HookAction::Command(c)),
                (None, Some(m)) => self
                    .existing("manifest", &m.value, Location::of(&m))
                    .map(HookAction::Manifest),
                _ => {
                    self.report(
                        at,
                        Problem::HookAction {
                            hook: h.name.value.clone(),
                        },
                    );
                    None
                }
            };
            if let Some(action) = action {
                out.push(Hook {
                    name: h.name.value,
                    action,
                    timeout,
                });
            }
        }
        out
    }

    fn environments(
        &mut self,
        raw: Vec<Spanned<RawEnvironment>>,
        deploy: DeploySettings,
    ) -> Vec<Environment> {
        let mut seen = HashMap::new();
        for e in &raw {
            self.unique("environment", &e.value.name, &mut seen);
        }
        let names: Vec<String> = raw.iter().map(|e| e.value.name.value.clone()).collect();
        let mut from_of: BTreeMap<String, (String, Location)> = BTreeMap::new();
        let namespaces: BTreeMap<String, String> = raw
            .iter()
            .map(|e| {
                let ns = e.value.namespace.as_ref().map(|n| n.value.clone());
                (e.value.name.value.clone(), ns.unwrap_or_default())
            })
            .collect();
        let mut out = Vec::new();
        for e in raw {
            let location = Location::of(&e);
            let e = e.value;
            if let Some(from) = &e.from {
                if names.contains(&from.value) && from.value != e.name.value {
                    from_of.insert(
                        e.name.value.clone(),
                        (from.value.clone(), Location::of(from)),
                    );
                } else if from.value == e.name.value {
                    self.report(
                        Location::of(from),
                        Problem::PromotionCycle {
                            chain: vec![from.value.clone(), from.value.clone()],
                        },
                    );
                } else {
                    self.report(
                        Location::of(from),
                        Problem::UnknownEnvironment {
                            name: from.value.clone(),
                            suggestion: suggest(&from.value, names.iter().map(String::as_str)),
                        },
                    );
                }
            }
            let namespace = match e.namespace {
                None => {
                    self.report(
                        location,
                        Problem::MissingKey {
                            key: "namespace".into(),
                        },
                    );
                    String::new()
                }
                Some(ns) => {
                    if !is_dns_label(&ns.value) {
                        self.report(
                            Location::of(&ns),
                            Problem::InvalidName {
                                what: "namespace",
                                name: ns.value.clone(),
                            },
                        );
                    }
                    ns.value
                }
            };
            for (what, value) in [("context", &e.context), ("branch", &e.branch)] {
                if let Some(v) = value
                    && v.starts_with('-')
                {
                    self.report(
                        location,
                        Problem::LooksLikeFlag {
                            what,
                            value: v.clone(),
                        },
                    );
                }
            }
            let values = self.values(e.values);
            let deploy = self.deploy(deploy.clone(), e.deploy.as_ref());
            let data = e
                .data
                .and_then(|d| self.data(&e.name.value, d, &namespaces));
            let notify = e
                .notify
                .into_iter()
                .filter_map(|n| self.notify(n))
                .collect();
            let canary = e.strategy.and_then(|s| self.strategy(s));
            out.push(Environment {
                name: e.name.value,
                namespace,
                context: e.context,
                branch: e.branch,
                values,
                promotion: e.promotion.unwrap_or_default(),
                from: e.from.map(|f| f.value),
                deploy,
                data,
                notify,
                canary,
                location,
            });
        }
        // Loops through `from` (a <- b <- a): report once, at the first member in file order.
        let mut reported: Vec<String> = Vec::new();
        for start in &names {
            let mut chain = vec![start.clone()];
            let mut cur = start.clone();
            while let Some((next, _)) = from_of.get(&cur) {
                if let Some(pos) = chain.iter().position(|c| c == next) {
                    let cycle: Vec<String> = chain[pos..].to_vec();
                    if pos == 0 && !cycle.iter().any(|c| reported.contains(c)) {
                        reported.extend(cycle.iter().cloned());
                        let mut shown = cycle.clone();
                        shown.push(next.clone());
                        let at = from_of[start].1;
                        self.report(at, Problem::PromotionCycle { chain: shown });
                    }
                    break;
                }
                chain.push(next.clone());
                cur = next.clone();
            }
        }
        out
    }
}

/// Whether `p` (without trailing `/`) can prefix repositories: `<p>/x` is an image name.
pub(crate) fn check_prefix(p: &str) -> Result<(), String> {
    match format!("{p}/x").parse::<ImageRef>() {
        Ok(_) if !p.contains('@') && !p.rsplit('/').next().unwrap_or("").contains(':') => Ok(()),
        Ok(_) => Err("a prefix has no tag or digest".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether an image name starts with a registry host (`ghcr.io/x`, `localhost:5000/x`), as
/// Docker decides it: a first component with `.` or `:`, or `localhost`.
fn has_registry_host(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

fn has_tag_or_digest(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    image.contains('@') || last.contains(':')
}

/// A DNS-1123 subdomain (lowercase labels joined by dots), as Secret names must be.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// A DNS-1123 label that starts with a letter (RFC 1035), as Service names must.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn host_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        Some("it is empty")
    } else if host.contains("://") {
        Some("no scheme: berth chooses https, or http for `registry.insecure` hosts")
    } else if host.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else if let Some((_, port)) = host.split('/').next().unwrap_or("").rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        Some("the port is not a number")
    } else {
        None
    }
}
