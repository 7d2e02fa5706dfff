//! What the repository's files say without any tool's configuration: Dockerfiles and the
//! context their `COPY` sources resolve in, manifests (plain, Jinja templates, Kustomize, Helm)
//! and the images they name.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    BuildPlan, HelmPlan, MANIFEST_DIRS, ManifestsPlan, Planner, SKIP, ServicePlan, Svc, clean,
    free_name, has_host, inside, join, rel, repository, short_name, slug,
};

/// Folder names that hold a Dockerfile but are not the service: `docker/Dockerfile`.
const DOCKER_DIRS: &[&str] = &[
    "docker",
    ".docker",
    "dockerfiles",
    "build",
    "container",
    "ci",
];

fn list_dir(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| inside(root, p))
        .collect();
    v.sort();
    v
}

fn skipped(p: &Path) -> bool {
    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    n.starts_with('.') || SKIP.contains(&n)
}

fn find_dockerfiles(root: &Path, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let dockerfile = dir.join("Dockerfile");
    if dockerfile.is_file() && inside(root, &dockerfile) {
        out.push(dockerfile);
    }
    if depth == 0 {
        return;
    }
    for d in list_dir(root, dir) {
        if d.is_dir() && !skipped(&d) {
            find_dockerfiles(root, &d, depth - 1, out);
        }
    }
}

/// The `COPY`/`ADD` sources of a Dockerfile that come from the build context, glob-free part
/// (`src/*.py` -> `src`), as written; `None` when the file cannot be parsed.
fn context_sources(dockerfile: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dockerfile).ok()?;
    let args = berth_build::BuildArgs::new(berth_build::Platform::new("linux", "amd64", None));
    let parsed = berth_build::Dockerfile::parse("Dockerfile", &text, &args).ok()?;
    let mut out = Vec::new();
    for stage in &parsed.stages {
        for i in &stage.instructions {
            let copy = match i {
                berth_build::Instruction::Copy { copy, .. } => copy,
                berth_build::Instruction::Add { add, .. } => &add.copy,
                _ => continue,
            };
            if copy.from.is_some() {
                continue;
            }
            for s in &copy.sources {
                let berth_build::CopySource::Path(s) = s else {
                    continue;
                };
                if s.contains('$') || s.contains("://") {
                    continue;
                }
                let fixed: Vec<&str> = s
                    .trim_start_matches('/')
                    .split('/')
                    .take_while(|seg| !seg.contains(['*', '?', '[']))
                    .collect();
                out.push(clean(&fixed.join("/")));
            }
        }
    }
    Some(out)
}

/// The first `COPY`/`ADD` source of `dockerfile` that does not exist in `context`.
pub(super) fn missing_sources(root: &Path, dockerfile: &Path, context: &str) -> Option<String> {
    let sources = context_sources(dockerfile)?;
    let dir = root.join(context);
    sources
        .into_iter()
        .find(|s| s != "." && !dir.join(s).exists())
}

/// The real context of `dockerfile`: the nearest folder, from its own up to the root, where
/// every `COPY`/`ADD` source exists. Returns the context (relative to the root) and why.
pub(super) fn real_context(root: &Path, dockerfile: &Path) -> (String, String, Option<String>) {
    let own = dockerfile.parent().unwrap_or(root);
    let own_rel = rel(root, own);
    let Some(sources) = context_sources(dockerfile) else {
        return (
            own_rel.clone(),
            format!(
                "{} could not be parsed: its folder is the context",
                rel(root, dockerfile)
            ),
            Some(format!(
                "{} could not be parsed, so its real context is a guess: {own_rel}",
                rel(root, dockerfile)
            )),
        );
    };
    let named: Vec<&String> = sources.iter().filter(|s| *s != ".").collect();
    let shown = |v: &[&String]| {
        v.iter()
            .map(|s| s.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    };
    if named.is_empty() {
        // `COPY . /app` resolves anywhere: a folder holding only Dockerfiles is not the source.
        let only_docker = list_dir(root, own).iter().all(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with("Dockerfile") || n.starts_with('.') || n.ends_with(".dockerfile")
        });
        if only_docker && own != root && !sources.is_empty() {
            return (
                ".".into(),
                format!(
                    "{} copies `.`, and {own_rel}/ holds nothing but Dockerfiles: the repository is the context",
                    rel(root, dockerfile)
                ),
                None,
            );
        }
        return (
            own_rel.clone(),
            if sources.is_empty() {
                format!("{} copies nothing from a context", rel(root, dockerfile))
            } else {
                format!("{} copies `.` from its folder", rel(root, dockerfile))
            },
            None,
        );
    }
    let mut dir = own.to_path_buf();
    loop {
        if named.iter().all(|s| dir.join(s).exists()) {
            let ctx = rel(root, &dir);
            let why = if dir == own {
                format!(
                    "every COPY/ADD source of {} ({}) is in {ctx}/",
                    rel(root, dockerfile),
                    shown(&named)
                )
            } else {
                format!(
                    "{} copies {}, which exist only from {ctx}/ (not from {own_rel}/): that is its real context",
                    rel(root, dockerfile),
                    shown(&named)
                )
            };
            return (ctx, why, None);
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            break;
        }
    }
    let missing: Vec<&String> = named
        .iter()
        .copied()
        .filter(|s| !own.join(s).exists())
        .collect();
    (
        own_rel.clone(),
        format!("no folder holds every source of {}", rel(root, dockerfile)),
        Some(format!(
            "{} copies {}, found neither in {own_rel}/ nor in any folder above it: the context \
             is a guess ({own_rel})",
            rel(root, dockerfile),
            shown(&missing)
        )),
    )
}

/// Services from the Dockerfiles of the repository.
pub(super) fn dockerfiles(p: &mut Planner<'_>) {
    let mut found = Vec::new();
    find_dockerfiles(p.root, p.root, 3, &mut found);
    for df in found {
        let own = df.parent().unwrap_or(p.root).to_path_buf();
        let own_rel = p.rel(&own);
        let (context, why, comment) = real_context(p.root, &df);
        let dockerfile_rel = p.rel(&df);
        let dockerfile = if context == own_rel {
            None
        } else {
            Some(
                df.strip_prefix(p.root.join(&context))
                    .unwrap_or(&df)
                    .to_string_lossy()
                    .to_string(),
            )
        };
        let own_name = own.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let home = if DOCKER_DIRS.contains(&own_name) && context != own_rel {
            own.parent().map(|d| p.rel(d)).unwrap_or_else(|| ".".into())
        } else {
            own_rel.clone()
        };
        let name = if home == "." {
            p.project.clone()
        } else {
            slug(
                Path::new(&home)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("app"),
            )
        };
        let name = free_name(p, &name);
        p.choose(
            format!("service {name}"),
            format!(
                "build context {context}{}",
                dockerfile
                    .as_deref()
                    .map(|d| format!(", dockerfile {d}"))
                    .unwrap_or_default()
            ),
            why,
        );
        let _ = dockerfile_rel;
        p.services.push(Svc {
            plan: ServicePlan {
                name,
                discover: None,
                build: Some(BuildPlan {
                    context,
                    dockerfile,
                    ..BuildPlan::default()
                }),
                image: None,
                paths: Vec::new(),
                manifests: None,
                comments: comment.into_iter().collect(),
            },
            home,
            named: None,
        });
    }
}

/// Services from buildpack-style detection, when there is no Dockerfile.
pub(super) fn buildpacks(p: &mut Planner<'_>) {
    let mut candidates = vec![p.root.to_path_buf()];
    candidates.extend(list_dir(p.root, p.root).into_iter().filter(|d| d.is_dir()));
    for d in candidates {
        let n = d.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if d != p.root && (skipped(&d) || MANIFEST_DIRS.contains(&n)) {
            continue;
        }
        if let Ok(Some(det)) = crate::detect::detect(&d, &crate::detect::Base::Default) {
            let name = if d == p.root {
                p.project.clone()
            } else {
                slug(n)
            };
            let ctx = p.rel(&d);
            p.choose(
                format!("service {name}"),
                format!("build context {ctx}, no Dockerfile"),
                format!(
                    "detected {} from {} — berth generates the Dockerfile (base {}, start `{}`)",
                    det.detector,
                    det.evidence.display(),
                    det.base_image,
                    det.command
                ),
            );
            p.services.push(Svc {
                plan: ServicePlan {
                    name,
                    discover: None,
                    build: Some(BuildPlan {
                        context: ctx.clone(),
                        ..BuildPlan::default()
                    }),
                    image: None,
                    paths: Vec::new(),
                    manifests: None,
                    comments: Vec::new(),
                },
                home: ctx,
                named: None,
            });
            if d == p.root {
                break;
            }
        }
    }
}

/// One manifest file of the repository.
#[derive(Debug, Clone)]
pub(super) struct ManifestFile {
    /// Relative to the root.
    pub path: String,
    /// Jinja markers (`{{ }}`, `{% %}`): a template, whatever its extension.
    pub template: bool,
    /// Images named by `image:` (not templated).
    pub images: Vec<String>,
    /// Variables the template uses.
    pub vars: BTreeSet<String>,
    /// Variables that alone make an `image:` value.
    pub image_vars: BTreeSet<String>,
    /// An `image:` composed of several pieces (`{{ registry }}/{{ name }}:{{ tag }}`).
    pub composed_image: Option<String>,
    /// In a folder with a kustomization (it belongs to Kustomize).
    pub kustomized: bool,
}

/// A Helm chart of the repository.
#[derive(Debug, Clone)]
pub(super) struct Chart {
    pub dir: String,
    pub name: String,
    pub image_values: BTreeMap<String, String>,
    pub image: Option<String>,
    pub why: String,
    pub unconfirmed: Option<String>,
}

/// Every manifest, kustomization and chart of the repository.
#[derive(Debug, Default)]
pub(super) struct ManifestIndex {
    pub files: Vec<ManifestFile>,
    pub kustomizations: Vec<String>,
    pub charts: Vec<Chart>,
}

const KUSTOMIZATION: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];
const EXTENSIONS: &[&str] = &[
    "yaml", "yml", "j2", "jinja", "jinja2", "tpl", "tmpl", "json",
];

fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION
        .iter()
        .map(|k| dir.join(k))
        .find(|p| p.is_file())
}

/// The YAML document of `path`; null when it cannot be read or parsed (the scan proposes, it
/// does not validate).
fn yaml_or_null(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_saphyr::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// What a kustomization includes: its `resources`, `bases` and `components` entries.
fn kustomization_includes(doc: &Value) -> impl Iterator<Item = &str> {
    ["resources", "bases", "components"]
        .into_iter()
        .flat_map(|key| doc[key].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
}

/// Identifiers a Jinja text uses as variables: the first name of each `{{ }}` expression and
/// of `{% if/for ... %}` conditions, minus loop targets and Jinja's own names.
fn jinja_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut defined = BTreeSet::new();
    let ident = |s: &str| -> Option<String> {
        let s = s.trim_start_matches(['-', '+', ' ', '(']).trim_start();
        let id: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!id.is_empty() && !id.starts_with(|c: char| c.is_ascii_digit())).then_some(id)
    };
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        let after = &rest[at + 2..];
        let end = after.find("}}").unwrap_or(after.len());
        if let Some(id) = ident(&after[..end]) {
            out.insert(id);
        }
        rest = &after[end..];
    }
    let mut rest = text;
    while let Some(at) = rest.find("{%") {
        let after = &rest[at + 2..];
        let end = after.find("%}").unwrap_or(after.len());
        let words: Vec<&str> = after[..end]
            .trim_matches(['-', '+', ' '])
            .split_whitespace()
            .collect();
        match words.as_slice() {
            ["for", target, "in", src, ..] => {
                for t in target.split(',') {
                    defined.insert(t.trim().to_string());
                }
                if let Some(id) = ident(src) {
                    out.insert(id);
                }
            }
            ["if" | "elif", cond, ..] => {
                if let Some(id) = ident(cond.trim_start_matches("not")) {
                    out.insert(id);
                }
            }
            ["set", name, ..] => {
                defined.insert(name.trim_end_matches('=').to_string());
            }
            _ => {}
        }
        rest = &after[end..];
    }
    const BUILTIN: &[&str] = &[
        "loop", "range", "true", "false", "none", "True", "False", "None", "lookup", "not",
    ];
    out.into_iter()
        .filter(|v| !defined.contains(v) && !BUILTIN.contains(&v.as_str()))
        .collect()
}

fn is_jinja(text: &str) -> bool {
    // Go templates (`{{ .Values.x }}`) are Helm's, not Jinja.
    let go = text.contains("{{ .") || text.contains("{{- .") || text.contains("{{.");
    (text.contains("{{") || text.contains("{%")) && !go
}

fn index_file(root: &Path, path: &Path, kustomized: bool) -> Option<ManifestFile> {
    let text = std::fs::read_to_string(path).ok()?;
    if !(text.contains("apiVersion") && text.contains("kind")) {
        return None;
    }
    if text.contains("skaffold/") || text.contains("kustomize.config.k8s.io") {
        return None;
    }
    let template = is_jinja(&text);
    let mut images = Vec::new();
    let mut image_vars = BTreeSet::new();
    let mut composed_image = None;
    for line in text.lines() {
        let t = line.trim().trim_start_matches("- ").trim();
        let Some(v) = t.strip_prefix("image:") else {
            continue;
        };
        let v = v
            .split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if v.is_empty() {
            continue;
        }
        if v.contains("{{") {
            let vars = jinja_vars(v);
            let pieces = v.matches("{{").count();
            if pieces == 1 && v.trim().starts_with("{{") && v.trim().ends_with("}}") {
                image_vars.extend(vars);
            } else {
                composed_image = Some(v.to_string());
            }
        } else {
            images.push(v.to_string());
        }
    }
    Some(ManifestFile {
        path: rel(root, path),
        template,
        vars: if template {
            jinja_vars(&text)
        } else {
            BTreeSet::new()
        },
        images,
        image_vars,
        composed_image,
        kustomized,
    })
}

fn chart_info(root: &Path, dir: &Path) -> Option<Chart> {
    let text = std::fs::read_to_string(dir.join("Chart.yaml")).ok()?;
    let meta: Value = serde_saphyr::from_str(&text).ok()?;
    let name = meta["name"].as_str().unwrap_or("").to_string();
    let values = yaml_or_null(&dir.join("values.yaml"));
    let mut image_values = BTreeMap::new();
    let mut image = None;
    let mut why = String::new();
    // image.{registry,repository,tag,digest} at the top or one level down (`web.image`).
    let mut places: Vec<(String, &Value)> = vec![(String::new(), &values)];
    if let Some(m) = values.as_object() {
        places.extend(m.iter().map(|(k, v)| (format!("{k}."), v)));
    }
    for (prefix, v) in places {
        if let Some(img) = v.get("image") {
            match img {
                Value::Object(m) if m.contains_key("repository") => {
                    for part in ["registry", "repository", "tag", "digest"] {
                        if m.contains_key(part) {
                            image_values.insert(part.to_string(), format!("{prefix}image.{part}"));
                        }
                    }
                    let repo = m["repository"].as_str().unwrap_or("");
                    image = Some(match m.get("registry").and_then(Value::as_str) {
                        Some(r) if !r.is_empty() && r != "docker.io" => format!("{r}/{repo}"),
                        _ => repo.to_string(),
                    });
                    why = format!(
                        "values.yaml composes the image from {}",
                        image_values
                            .values()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" + ")
                    );
                }
                Value::String(s) => {
                    image_values.insert("image".into(), format!("{prefix}image"));
                    image = Some(repository(s));
                    why = format!("values.yaml holds the whole image in {prefix}image");
                }
                _ => continue,
            }
            break;
        }
        if prefix.is_empty()
            && let Some(m) = v.as_object()
            && m.contains_key("repository")
        {
            for part in ["registry", "repository", "tag", "digest"] {
                if m.contains_key(part) {
                    image_values.insert(part.to_string(), part.to_string());
                }
            }
            let repo = m["repository"].as_str().unwrap_or("").to_string();
            image = Some(match m.get("registry").and_then(Value::as_str) {
                Some(r) if !r.is_empty() && r != "docker.io" => format!("{r}/{repo}"),
                _ => repo,
            });
            why = "values.yaml composes the image from registry/repository/tag at the top".into();
            break;
        }
    }
    // Confirm in the templates that those values are used.
    let mut used = String::new();
    for f in list_dir(root, &dir.join("templates")) {
        if let Ok(t) = std::fs::read_to_string(&f) {
            used.push_str(&t);
        }
    }
    let unconfirmed = image_values
        .values()
        .find(|v| !used.contains(&format!(".Values.{v}")))
        .map(|v| {
            format!(
                "values.yaml of {} has {v}, but no template reads .Values.{v}: check \
                 helm.image-values",
                rel(root, dir)
            )
        });
    if image_values.is_empty() {
        why = "values.yaml has no image.repository / image / repository values".into();
    }
    Some(Chart {
        dir: rel(root, dir),
        name,
        image_values,
        image: image.filter(|i| !i.is_empty()),
        why,
        unconfirmed,
    })
}

impl ManifestIndex {
    pub fn build(root: &Path) -> ManifestIndex {
        let mut index = ManifestIndex::default();
        let mut seen = HashSet::new();
        index.walk(root, root, 6, &mut seen);
        index
    }

    fn walk(&mut self, root: &Path, dir: &Path, depth: usize, seen: &mut HashSet<PathBuf>) {
        if !inside(root, dir) || !dir.canonicalize().is_ok_and(|c| seen.insert(c)) {
            return;
        }
        if dir.join("Chart.yaml").is_file() {
            if let Some(c) = chart_info(root, dir) {
                self.charts.push(c);
            }
            return;
        }
        let kustomized = kustomization_file(dir).is_some();
        if kustomized {
            self.kustomizations.push(rel(root, dir));
        }
        for p in list_dir(root, dir) {
            if p.is_dir() {
                if depth > 0 && !skipped(&p) {
                    self.walk(root, &p, depth - 1, seen);
                }
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e))
                && let Some(f) = index_file(root, &p, kustomized)
            {
                self.files.push(f);
            }
        }
    }

    fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The files matched by Skaffold-style globs (`k8s/*.yaml`, `./k8s/**.yaml`, a file, a
    /// folder), in index order.
    pub fn expand(&self, _root: &Path, globs: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for g in globs {
            let g = clean(g);
            for f in &self.files {
                if !out.contains(&f.path) && glob_matches(&g, &f.path) {
                    out.push(f.path.clone());
                }
            }
        }
        out
    }

    /// The image names the kustomization in `dir` renders: the names its resources use,
    /// renamed by its (and its bases') `images:` entries. Also returns the renames.
    pub fn kustomize_names(&self, root: &Path, dir: &str) -> Vec<String> {
        self.kustomize_walk(root, dir, 0).0
    }

    pub fn kustomize_renames(&self, root: &Path, dir: &str) -> Vec<(String, String, String)> {
        self.kustomize_walk(root, dir, 0).1
    }

    /// (names, [(from, to, kustomization file)]).
    fn kustomize_walk(
        &self,
        root: &Path,
        dir: &str,
        depth: usize,
    ) -> (Vec<String>, Vec<(String, String, String)>) {
        let mut names = Vec::new();
        let mut renames = Vec::new();
        let d = root.join(dir);
        let Some(k) = kustomization_file(&d) else {
            return (names, renames);
        };
        if depth > 8 || !inside(root, &d) {
            return (names, renames);
        }
        let doc = yaml_or_null(&k);
        for r in kustomization_includes(&doc) {
            let target = d.join(r);
            let Ok(target) = target.canonicalize() else {
                continue;
            };
            let target_rel = rel(&root.canonicalize().unwrap_or(root.to_path_buf()), &target);
            if target.is_dir() {
                let (n, rn) = self.kustomize_walk(root, &target_rel, depth + 1);
                names.extend(n);
                renames.extend(rn);
            } else if let Some(f) = self.file(&target_rel) {
                names.extend(f.images.iter().map(|i| repository(i)));
            }
        }
        let file = rel(root, &k);
        for e in doc["images"].as_array().into_iter().flatten() {
            let Some(from) = e["name"].as_str() else {
                continue;
            };
            if let Some(to) = e["newName"].as_str() {
                let mut hit = false;
                for n in names.iter_mut() {
                    if short_name(n) == short_name(from) {
                        *n = to.to_string();
                        hit = true;
                    }
                }
                if hit {
                    renames.push((from.to_string(), to.to_string(), file.clone()));
                }
            }
        }
        names.sort();
        names.dedup();
        (names, renames)
    }

    /// Kustomizations no other kustomization includes: the ones to deploy.
    fn kustomize_roots(&self, root: &Path) -> Vec<String> {
        let mut included = BTreeSet::new();
        for k in &self.kustomizations {
            let d = root.join(k);
            let Some(file) = kustomization_file(&d) else {
                continue;
            };
            let doc = yaml_or_null(&file);
            for r in kustomization_includes(&doc) {
                if let Ok(t) = d.join(r).canonicalize()
                    && let Ok(root) = root.canonicalize()
                {
                    included.insert(rel(&root, &t));
                }
            }
        }
        self.kustomizations
            .iter()
            .filter(|k| !included.contains(*k))
            .cloned()
            .collect()
    }
}

/// A Skaffold manifest glob against a path: `*` within a segment, `**` any depth (Skaffold's
/// `k8s/**.yaml` is a `**` followed by the rest of the segment). Segments match as Go's
/// `filepath.Match` (Skaffold is a Go program). Each (glob segment, path segment) pair is
/// decided once, so a skaffold.yaml full of `**` cannot make `berth init` take exponential time.
fn glob_matches(glob: &str, path: &str) -> bool {
    use berth_types::glob::{Syntax, segment_matches};
    if glob == path || path.starts_with(&format!("{glob}/")) {
        return true;
    }
    let g: Vec<&str> = glob.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    // memo[gi * (p.len() + 1) + pi]: whether g[gi..] matches p[pi..].
    let mut memo: Vec<Option<bool>> = vec![None; (g.len() + 1) * (p.len() + 1)];
    fn go(g: &[&str], p: &[&str], gi: usize, pi: usize, memo: &mut Vec<Option<bool>>) -> bool {
        let key = gi * (p.len() + 1) + pi;
        if let Some(known) = memo[key] {
            return known;
        }
        let result = match g.get(gi) {
            None => pi == p.len(),
            Some(seg) if seg.starts_with("**") => {
                let tail = format!("*{}", &seg[2..]);
                // `**` alone: any number of segments (none included); `**x`: any number of
                // segments, then one matching `*x`.
                (pi..p.len()).any(|i| {
                    segment_matches(Syntax::Go, &tail, p[i]) && go(g, p, gi + 1, i + 1, memo)
                }) || (seg.len() == 2 && (pi..=p.len()).any(|i| go(g, p, gi + 1, i, memo)))
            }
            Some(seg) => {
                pi < p.len()
                    && segment_matches(Syntax::Go, seg, p[pi])
                    && go(g, p, gi + 1, pi + 1, memo)
            }
        };
        memo[key] = Some(result);
        result
    }
    go(&g, &p, 0, 0, &mut memo)
}

/// Whether `image` (as written in a manifest) is `svc`'s.
fn names_service(svc: &Svc, image: &str) -> bool {
    if let Some((n, _)) = &svc.named {
        return short_name(n) == short_name(image);
    }
    let repo = short_name(image);
    let last = repo.rsplit('/').next().unwrap_or(&repo);
    last == svc.plan.name || last.ends_with(&format!("-{}", svc.plan.name))
}

/// Gives plain manifest `files` to the services whose image each names; the others go to one
/// manifests-only service, never silently to the first service.
pub(super) fn split_files(
    p: &mut Planner<'_>,
    index: &ManifestIndex,
    files: &[String],
    source: &str,
) {
    let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rest = Vec::new();
    for path in files {
        let Some(f) = index.file(path) else { continue };
        let owner = p.services.iter().find(|s| {
            matches!(s.plan.manifests, None | Some(ManifestsPlan::Path(_)))
                && f.images.iter().any(|i| names_service(s, i))
        });
        match owner {
            Some(s) => {
                let image = f
                    .images
                    .iter()
                    .find(|i| names_service(s, i))
                    .cloned()
                    .unwrap_or_default();
                p.choices.push(super::Choice {
                    subject: format!("service {}", s.plan.name),
                    choice: format!("manifests: {path}"),
                    reason: format!("{source}; it names the image {image}"),
                });
                by_service
                    .entry(s.plan.name.clone())
                    .or_default()
                    .push(path.clone());
            }
            None => rest.push(path.clone()),
        }
    }
    // One service, and files that name no image of it: still its (a single-service repository).
    let built_without = built_without_manifests(p);
    if by_service.is_empty()
        && p.services.len() == 1
        && built_without.len() == 1
        && !rest.is_empty()
    {
        let name = built_without[0].clone();
        p.choose(
            format!("service {name}"),
            format!("manifests: {}", rest.join(", ")),
            format!("{source}; the repository's only service"),
        );
        by_service.insert(name, std::mem::take(&mut rest));
    }
    for (name, files) in by_service {
        if let Some(s) = p.by_name(&name) {
            match &mut s.plan.manifests {
                Some(ManifestsPlan::Path(v)) => v.extend(files),
                _ => s.plan.manifests = Some(ManifestsPlan::Path(files)),
            }
        }
    }
    if !rest.is_empty() {
        let stem = |f: &str| {
            slug(
                Path::new(f)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or(""),
            )
        };
        let wanted = match rest.as_slice() {
            [one] if !stem(one).is_empty() => stem(one),
            _ => "shared".to_string(),
        };
        let name = free_name(p, &wanted);
        p.choose(
            format!("service {name}"),
            format!("manifests only: {}", rest.join(", ")),
            format!("{source}; they name no image berth builds, so no built service owns them"),
        );
        p.services.push(manifests_only(name, rest));
    }
}

/// Names a Jinja template uses for berth's `service`.
const SERVICE_VARS: &[&str] = &[
    "service",
    "service_name",
    "svc",
    "svc_name",
    "app",
    "app_name",
    "application",
    "name",
    "component",
    "service_id",
];
/// Names a Jinja template uses for berth's `image`.
const IMAGE_VARS: &[&str] = &[
    "image",
    "image_id",
    "image_ref",
    "image_name",
    "docker_image",
    "container_image",
    "image_uri",
];

/// Values for the variables of Ansible-style templates in `dir`: the nearest `defaults/main.yml`,
/// `vars/main.yml`, `group_vars/all.yml` (or `group_vars/all/*.yml`) above it.
fn ansible_values(root: &Path, dir: &Path) -> (BTreeMap<String, Value>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut files = Vec::new();
    let mut at = dir.to_path_buf();
    loop {
        let mut candidates = vec![
            at.join("defaults/main.yml"),
            at.join("defaults/main.yaml"),
            at.join("vars/main.yml"),
            at.join("vars/main.yaml"),
            at.join("group_vars/all.yml"),
            at.join("group_vars/all.yaml"),
        ];
        candidates.extend(list_dir(root, &at.join("group_vars/all")));
        for c in candidates {
            if !c.is_file() || !inside(root, &c) {
                continue;
            }
            let Some(Value::Object(m)) = std::fs::read_to_string(&c)
                .ok()
                .and_then(|t| serde_saphyr::from_str::<Value>(&t).ok())
            else {
                continue;
            };
            files.push(rel(root, &c));
            for (k, v) in m {
                values.entry(k).or_insert(v);
            }
        }
        if at == root || !at.pop() || !at.starts_with(root) {
            break;
        }
    }
    (values, files)
}

/// Whether a variable's value must not be copied into berth.yaml: its name says it is a
/// secret, or it is Ansible Vault ciphertext.
fn looks_secret(name: &str, value: &Value) -> bool {
    let n = name.to_ascii_lowercase();
    let by_name = [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "private",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w));
    let vault = value
        .as_str()
        .is_some_and(|s| s.trim_start().starts_with("$ANSIBLE_VAULT"));
    by_name || vault
}

/// The template plan for `files` (all in one glob): vars, values, comments.
fn template_plan(
    root: &Path,
    index: &ManifestIndex,
    globs: Vec<String>,
    files: &[&ManifestFile],
    dir: &Path,
) -> (ManifestsPlan, Vec<String>, String) {
    let mut vars = BTreeMap::new();
    let mut comments = Vec::new();
    let used: BTreeSet<String> = files.iter().flat_map(|f| f.vars.iter().cloned()).collect();
    let image_vars: BTreeSet<String> = files
        .iter()
        .flat_map(|f| f.image_vars.iter().cloned())
        .collect();
    let (known, from) = ansible_values(root, dir);
    let mut values = BTreeMap::new();
    let mut unresolved = Vec::new();
    let mut secrets = Vec::new();
    for v in &used {
        if image_vars.contains(v) || IMAGE_VARS.contains(&v.as_str()) {
            if v != "image" {
                vars.insert(v.clone(), "image".to_string());
            }
        } else if SERVICE_VARS.contains(&v.as_str()) && !known.contains_key(v) {
            if v != "service" {
                vars.insert(v.clone(), "service".to_string());
            }
        } else if let Some(val) = known.get(v) {
            if looks_secret(v, val) {
                secrets.push(v.clone());
            } else {
                values.insert(v.clone(), val.clone());
            }
        } else if v != "images" && v != "namespace" && v != "environment" {
            unresolved.push(v.clone());
        }
    }
    if let Some(c) = files.iter().find_map(|f| f.composed_image.as_ref()) {
        comments.push(format!(
            "a template composes its image as {c}: berth pins a whole reference, so write \
             `image: {{{{ image }}}}` (or one variable mapped to image under vars)"
        ));
    }
    if !secrets.is_empty() {
        comments.push(format!(
            "the templates use {}, whose values look like secrets (or are vault-encrypted): \
             not copied into berth.yaml; keep them in a Secret the manifests reference",
            secrets.join(", ")
        ));
    }
    if !unresolved.is_empty() {
        comments.push(format!(
            "the templates use {} and no value was found{}: set them under manifests.values",
            unresolved.join(", "),
            if from.is_empty() {
                String::new()
            } else {
                format!(" in {}", from.join(", "))
            }
        ));
    }
    let _ = index;
    let mut why = format!(
        "{} hold{} Jinja markers ({{{{ }}}} / {{% %}}): templates, not plain manifests",
        files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if files.len() == 1 { "s" } else { "" }
    );
    if !vars.is_empty() {
        why.push_str(&format!(
            "; they name berth's variables {}",
            vars.iter()
                .map(|(k, v)| format!("{k} -> {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !from.is_empty() && !values.is_empty() {
        why.push_str(&format!("; values from {}", from.join(", ")));
    }
    (
        ManifestsPlan::Template {
            globs,
            vars,
            values,
        },
        comments,
        why,
    )
}

/// A service that builds nothing and deploys the manifest files `paths`.
fn manifests_only(name: String, paths: Vec<String>) -> Svc {
    Svc {
        plan: ServicePlan {
            name,
            discover: None,
            build: None,
            image: None,
            paths: Vec::new(),
            manifests: Some(ManifestsPlan::Path(paths)),
            comments: Vec::new(),
        },
        home: ".".into(),
        named: None,
    }
}

/// The services berth builds that no manifests are assigned to yet.
fn built_without_manifests(p: &Planner<'_>) -> Vec<String> {
    p.services
        .iter()
        .filter(|s| s.plan.build.is_some() && s.plan.manifests.is_none())
        .map(|s| s.plan.name.clone())
        .collect()
}

fn glob_for(files: &[&ManifestFile], dir: &str) -> String {
    let exts: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| Path::new(&f.path).extension().and_then(|e| e.to_str()))
        .collect();
    match exts.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => format!("{dir}/*.{one}"),
        _ => format!("{dir}/*"),
    }
}

/// Manifests for the services that have none yet.
pub(super) fn assign_manifests(p: &mut Planner<'_>, index: &ManifestIndex) {
    let root = p.root;
    let taken: BTreeSet<String> = p
        .services
        .iter()
        .filter_map(|s| match &s.plan.manifests {
            Some(ManifestsPlan::Path(v)) => Some(v.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut used_kustomize: BTreeSet<String> = p
        .services
        .iter()
        .filter_map(|s| match &s.plan.manifests {
            Some(ManifestsPlan::Kustomize(k)) => Some(k.clone()),
            _ => None,
        })
        .collect();
    let mut used_charts: BTreeSet<String> = p
        .services
        .iter()
        .filter_map(|s| match &s.plan.manifests {
            Some(ManifestsPlan::Helm(h)) => Some(h.chart.clone()),
            _ => None,
        })
        .collect();
    let mut used_templates: BTreeSet<String> = BTreeSet::new();

    // 1. Helm charts: the service the chart is named after, whose image it holds, or the only one.
    for chart in &index.charts {
        if used_charts.contains(&chart.dir) {
            continue;
        }
        let dir_name = Path::new(&chart.dir)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let without: Vec<&Svc> = p
            .services
            .iter()
            .filter(|s| s.plan.manifests.is_none() && s.plan.build.is_some())
            .collect();
        let owner = without
            .iter()
            .find(|s| {
                s.plan.name == chart.name
                    || s.plan.name == dir_name
                    || chart.image.as_deref().is_some_and(|i| names_service(s, i))
                    || chart.dir.starts_with(&format!("{}/", s.home))
            })
            .copied()
            .or_else(|| (without.len() == 1 && index.charts.len() == 1).then(|| without[0]))
            .map(|s| s.plan.name.clone());
        let Some(owner) = owner else {
            p.comments.push(format!(
                "the Helm chart {} matches no service by name or image: add it to one as \
                 manifests.helm.chart",
                chart.dir
            ));
            continue;
        };
        used_charts.insert(chart.dir.clone());
        let values = ["values.yaml"]
            .iter()
            .map(|v| join(&chart.dir, v))
            .filter(|v| root.join(v).is_file())
            .collect::<Vec<_>>();
        let _ = values;
        p.choose(
            format!("service {owner}"),
            format!("manifests: Helm chart {}", chart.dir),
            chart.why.clone(),
        );
        if let Some(s) = p.by_name(&owner) {
            s.plan.manifests = Some(ManifestsPlan::Helm(HelmPlan {
                chart: chart.dir.clone(),
                release: None,
                values: Vec::new(),
                set: Vec::new(),
                image_values: chart.image_values.clone(),
            }));
            if let Some(c) = &chart.unconfirmed {
                s.plan.comments.push(c.clone());
            }
            if s.named.is_none()
                && let Some(i) = &chart.image
            {
                s.named = Some((
                    i.clone(),
                    format!("the default image of {}/values.yaml", chart.dir),
                ));
            }
        }
    }

    // 2. Kustomize: the roots (overlays nothing else includes); one of a set of siblings.
    let roots = index.kustomize_roots(root);
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in roots {
        if used_kustomize.contains(&r) {
            continue;
        }
        let parent = Path::new(&r)
            .parent()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        groups.entry(parent).or_default().push(r);
    }
    for (_, members) in groups {
        let preferred = ["dev", "development", "local", "default", "staging"];
        let pick = preferred
            .iter()
            .find_map(|name| members.iter().find(|m| m.rsplit('/').next() == Some(name)))
            .unwrap_or(&members[0])
            .clone();
        let names = index.kustomize_names(root, &pick);
        let renames = index.kustomize_renames(root, &pick);
        let owner = p
            .services
            .iter()
            .filter(|s| s.plan.manifests.is_none() && s.plan.build.is_some())
            .find(|s| names.iter().any(|n| names_service(s, n)))
            .or_else(|| {
                let without: Vec<&Svc> = p
                    .services
                    .iter()
                    .filter(|s| s.plan.manifests.is_none() && s.plan.build.is_some())
                    .collect();
                (without.len() == 1).then(|| without[0])
            })
            .map(|s| s.plan.name.clone());
        let Some(owner) = owner else {
            continue;
        };
        used_kustomize.insert(pick.clone());
        let mut why = format!("kustomization {pick}");
        if members.len() > 1 {
            why.push_str(&format!(
                ", the {} of {}",
                pick.rsplit('/').next().unwrap_or(""),
                members.join(", ")
            ));
        }
        let others: Vec<&String> = members.iter().filter(|m| **m != pick).collect();
        p.choose(
            format!("service {owner}"),
            format!("manifests: kustomize {pick}"),
            why,
        );
        if let Some(s) = p.by_name(&owner) {
            s.plan.manifests = Some(ManifestsPlan::Kustomize(pick.clone()));
            if !others.is_empty() {
                s.plan.comments.push(format!(
                    "other overlays exist ({}): deploy them from environments of their own \
                     (manifests per environment are not chosen by init)",
                    others
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some((from, to, file)) = renames.first()
                && s.named.is_none()
            {
                s.named = Some((
                    to.clone(),
                    format!(
                        "{file}'s images: entry renames {from} to {to}, the name the rendered objects use"
                    ),
                ));
            } else if let Some((from, to, file)) = renames.first() {
                // Tooling named `from`, but the objects that reach the cluster say `to`.
                if s.named
                    .as_ref()
                    .is_some_and(|(n, _)| short_name(n) == short_name(from))
                {
                    s.named = Some((
                        to.clone(),
                        format!(
                            "{file}'s images: entry renames {from} to {to}, the name the rendered objects use"
                        ),
                    ));
                }
            }
        }
    }

    // 3. Jinja templates: per-service folders (`deploy/web/*.yml` -> `deploy/{service}/*.yml`),
    //    then folders of templates.
    let templates: Vec<&ManifestFile> = index
        .files
        .iter()
        .filter(|f| f.template && !f.kustomized)
        .collect();
    let names = built_without_manifests(p);
    for name in &names {
        let mine: Vec<&ManifestFile> = templates
            .iter()
            .copied()
            .filter(|f| {
                Path::new(&f.path)
                    .parent()
                    .and_then(|d| d.file_name())
                    .and_then(|n| n.to_str())
                    == Some(name.as_str())
            })
            .collect();
        if mine.is_empty() {
            continue;
        }
        let dir = Path::new(&mine[0].path).parent().unwrap_or(Path::new("."));
        let parent = dir
            .parent()
            .map(|d| d.to_string_lossy().to_string())
            .unwrap_or_default();
        let pattern_dir = if parent.is_empty() {
            "{service}".to_string()
        } else {
            format!("{parent}/{{service}}")
        };
        let glob = glob_for(&mine, &pattern_dir);
        let (plan, comments, why) =
            template_plan(root, index, vec![glob.clone()], &mine, &root.join(dir));
        for f in &mine {
            used_templates.insert(f.path.clone());
        }
        p.choose(
            format!("service {name}"),
            format!("manifests: template {glob}"),
            why,
        );
        if let Some(s) = p.by_name(name) {
            s.plan.manifests = Some(plan);
            s.plan.comments.extend(comments);
        }
    }
    let mut dirs: BTreeMap<String, Vec<&ManifestFile>> = BTreeMap::new();
    for f in templates
        .iter()
        .copied()
        .filter(|f| !used_templates.contains(&f.path))
    {
        let d = Path::new(&f.path)
            .parent()
            .map(|d| d.to_string_lossy().to_string())
            .unwrap_or_default();
        dirs.entry(if d.is_empty() { ".".into() } else { d })
            .or_default()
            .push(f);
    }
    for (dir, files) in dirs {
        let without: Vec<String> = p
            .services
            .iter()
            .filter(|s| s.plan.manifests.is_none() && s.plan.build.is_some())
            .filter(|s| {
                s.home == "."
                    || dir == s.home
                    || dir.starts_with(&format!("{}/", s.home))
                    || !dir.contains('/')
                    || MANIFEST_DIRS.iter().any(|m| dir.starts_with(m))
            })
            .map(|s| s.plan.name.clone())
            .collect();
        if without.is_empty() {
            p.comments.push(format!(
                "the templates in {dir}/ are not deployed by any service: add them to one as \
                 manifests.template"
            ));
            continue;
        }
        let glob = glob_for(&files, &dir);
        let (plan, comments, why) =
            template_plan(root, index, vec![glob.clone()], &files, &root.join(&dir));
        for name in &without {
            p.choose(
                format!("service {name}"),
                format!("manifests: template {glob}"),
                why.clone(),
            );
            if let Some(s) = p.by_name(name) {
                s.plan.manifests = Some(plan.clone());
                s.plan.comments.extend(comments.clone());
                if without.len() > 1 {
                    s.plan.comments.push(format!(
                        "the templates of {dir}/ are rendered for each of {} (each with its own \
                         service and image); keep them only where they belong",
                        without.join(", ")
                    ));
                }
            }
        }
    }

    // 4. Plain manifests: a service folder's own, then the repository's, file by file.
    let plain: Vec<&ManifestFile> = index
        .files
        .iter()
        .filter(|f| !f.template && !f.kustomized && !taken.contains(&f.path))
        .collect();
    let homes: Vec<(String, String)> = p
        .services
        .iter()
        .filter(|s| s.plan.manifests.is_none() && s.plan.build.is_some() && s.home != ".")
        .map(|s| (s.plan.name.clone(), s.home.clone()))
        .collect();
    let mut own_taken = BTreeSet::new();
    for (name, home) in homes {
        let own: Vec<String> = plain
            .iter()
            .filter(|f| {
                MANIFEST_DIRS
                    .iter()
                    .any(|m| f.path.starts_with(&format!("{home}/{m}/")))
            })
            .map(|f| f.path.clone())
            .collect();
        if own.is_empty() {
            continue;
        }
        let dirs: BTreeSet<String> = own
            .iter()
            .filter_map(|f| {
                Path::new(f)
                    .parent()
                    .map(|d| d.to_string_lossy().to_string())
            })
            .collect();
        let shown: Vec<String> = dirs.into_iter().collect();
        p.choose(
            format!("service {name}"),
            format!("manifests: {}", shown.join(", ")),
            format!("the service folder's own manifests ({home}/)"),
        );
        own_taken.extend(own);
        if let Some(s) = p.by_name(&name) {
            s.plan.manifests = Some(ManifestsPlan::Path(shown));
        }
    }
    let repo_files: Vec<String> = plain
        .iter()
        .filter(|f| !own_taken.contains(&f.path))
        .filter(|f| {
            MANIFEST_DIRS
                .iter()
                .any(|m| f.path.starts_with(&format!("{m}/")))
                || p.services.iter().any(|s| {
                    s.home != "."
                        && MANIFEST_DIRS
                            .iter()
                            .any(|m| f.path.starts_with(&format!("{}/{m}/", s.home)))
                })
        })
        .map(|f| f.path.clone())
        .collect();
    if !repo_files.is_empty() {
        split_files(p, index, &repo_files, "plain manifests");
    }
}

/// The image of each built service: the name the manifests already use.
pub(super) fn images(p: &mut Planner<'_>, index: &ManifestIndex) {
    let root = p.root;
    for i in 0..p.services.len() {
        let s = &p.services[i];
        if s.plan.build.is_none() || s.plan.discover.is_some() {
            continue;
        }
        let name = s.plan.name.clone();
        let subject = format!("service {name}");
        // Names the service's own rendered objects will carry.
        let mut seen: Vec<(String, String)> = Vec::new();
        match &s.plan.manifests {
            Some(ManifestsPlan::Path(paths)) => {
                for f in &index.files {
                    if paths.iter().any(|pth| glob_matches(pth, &f.path)) {
                        seen.extend(f.images.iter().map(|im| (repository(im), f.path.clone())));
                    }
                }
            }
            Some(ManifestsPlan::Kustomize(k)) => {
                seen.extend(
                    index
                        .kustomize_names(root, k)
                        .into_iter()
                        .map(|n| (n, format!("kustomize {k}"))),
                );
            }
            _ => {}
        }
        let everywhere: Vec<(String, String)> = index
            .files
            .iter()
            .flat_map(|f| f.images.iter().map(|im| (repository(im), f.path.clone())))
            .collect();
        let template_var = match &s.plan.manifests {
            Some(ManifestsPlan::Template { vars, .. }) => Some(
                vars.iter()
                    .find(|(_, v)| *v == "image")
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| "image".into()),
            ),
            _ => None,
        };
        let helm =
            matches!(&s.plan.manifests, Some(ManifestsPlan::Helm(h)) if !h.image_values.is_empty());
        let (image, reason, comment): (Option<String>, String, Option<String>) = if let Some((
            n,
            source,
        )) = &s.named
        {
            let n = repository(n);
            let found = seen
                .iter()
                .chain(everywhere.iter())
                .find(|(m, _)| short_name(m) == short_name(&n));
            match (found, &template_var, helm) {
                (Some((_, file)), _, _) => (
                    Some(n.clone()),
                    format!(
                        "{source}, and {file} already uses it: berth pins it there to each build's digest, no manifest changes"
                    ),
                    None,
                ),
                (None, Some(var), _) => (
                    Some(n.clone()),
                    format!("{source}; the templates render it through {{{{ {var} }}}}"),
                    None,
                ),
                (None, None, true) => (
                    Some(n.clone()),
                    format!("{source}; berth sets it in the chart's image values"),
                    None,
                ),
                (None, None, false) => (
                    Some(n.clone()),
                    source.clone(),
                    Some(format!(
                        "no manifest found names {n}: berth refuses a run whose built image no object uses; name it in the container's image:"
                    )),
                ),
            }
        } else if let Some(var) = &template_var {
            (
                None,
                format!(
                    "pushed to <registry.prefix>/{name}; the templates render it through {{{{ {var} }}}}"
                ),
                None,
            )
        } else {
            let svc = &p.services[i];
            let matched = seen
                .iter()
                .chain(everywhere.iter())
                .find(|(m, _)| names_service(svc, m))
                .cloned();
            let distinct: BTreeSet<&String> = seen.iter().map(|(m, _)| m).collect();
            match matched {
                Some((m, file)) => (
                    Some(m.clone()),
                    format!(
                        "{file} already names it {m}: berth pins it there to each build's digest, no manifest changes"
                    ),
                    None,
                ),
                None if distinct.len() == 1 => {
                    let (m, file) = seen[0].clone();
                    (
                        Some(m.clone()),
                        format!(
                            "the one image its manifests name ({file}): berth pins it to each build's digest"
                        ),
                        None,
                    )
                }
                None if distinct.len() > 1 => (
                    None,
                    format!("pushed to <registry.prefix>/{name}"),
                    Some(format!(
                        "its manifests name several images ({}): set image: to the one this service builds",
                        distinct.into_iter().cloned().collect::<Vec<_>>().join(", ")
                    )),
                ),
                None => (
                    None,
                    format!("pushed to <registry.prefix>/{name}"),
                    Some(format!(
                        "no manifest names an image of {name}: use `image: {name}` in its container (berth pins it), or set image: here"
                    )),
                ),
            }
        };
        let shown = image
            .clone()
            .unwrap_or_else(|| format!("<registry.prefix>/{name}"));
        let written = image.as_ref().map(|i| {
            if has_host(i) {
                format!("{i} (pushed as written)")
            } else {
                format!("{i} (pushed to <registry.prefix>/{i})")
            }
        });
        p.choose(
            &subject,
            format!("image {}", written.unwrap_or(shown)),
            reason,
        );
        let s = &mut p.services[i];
        s.plan.image = image;
        if let Some(c) = comment {
            s.plan.comments.push(c);
        }
    }
    paths(p);
}

/// `paths:` for a service built from a context wider than its folder (the root context of a
/// `docker/Dockerfile`, a monorepo's shared library): the Dockerfile and what it copies, so a
/// change elsewhere does not rebuild it.
fn paths(p: &mut Planner<'_>) {
    let root = p.root;
    let mut choices = Vec::new();
    for s in p.services.iter_mut() {
        let Some(b) = &s.plan.build else { continue };
        if b.context != "." || s.home == "." && b.dockerfile.is_none() {
            continue;
        }
        let dockerfile = join(&b.context, b.dockerfile.as_deref().unwrap_or("Dockerfile"));
        let Some(sources) = context_sources(&root.join(&dockerfile)) else {
            continue;
        };
        if sources.iter().any(|s| s == ".") || sources.is_empty() {
            continue;
        }
        let mut paths: BTreeSet<String> = sources
            .iter()
            .map(|src| join(&b.context, src))
            .filter(|src| root.join(src).exists())
            .collect();
        paths.insert(dockerfile);
        // `services/api/Dockerfile` is already under `services/api`.
        let all = paths.clone();
        let paths: Vec<String> = paths
            .into_iter()
            .filter(|p| !all.iter().any(|q| p.starts_with(&format!("{q}/"))))
            .collect();
        choices.push(super::Choice {
            subject: format!("service {}", s.plan.name),
            choice: format!("paths {}", paths.join(", ")),
            reason: "its context is the whole repository; only what the Dockerfile copies \
                     changes its image"
                .into(),
        });
        s.plan.paths = paths;
    }
    p.choices.extend(choices);
}

/// The generic-template layout (scenario 4): sibling folders with a Dockerfile each and no
/// manifests of their own, and one repository-level template that renders any of them. Returns
/// the `discover` entry (and a manifests-only service for the folder's other manifests).
pub(super) fn generic_template(p: &mut Planner<'_>) -> Option<Vec<Svc>> {
    let root = p.root;
    let parent = |s: &Svc| {
        s.plan.build.as_ref().and_then(|b| {
            Path::new(&b.context)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
        })
    };
    let first = parent(p.services.first()?)?;
    let siblings = p.services.iter().all(|s| {
        let Some(b) = &s.plan.build else { return false };
        b.context != "."
            && b.dockerfile.is_none()
            && parent(s).as_deref() == Some(first.as_str())
            && Path::new(&b.context).file_name().and_then(|n| n.to_str()) == Some(&s.plan.name)
            && s.plan.name.starts_with(|c: char| c.is_ascii_lowercase())
            && !MANIFEST_DIRS
                .iter()
                .any(|m| root.join(&b.context).join(m).is_dir())
    });
    if !siblings {
        return None;
    }
    let index = ManifestIndex::build(root);
    for dir in MANIFEST_DIRS {
        let in_dir: Vec<&ManifestFile> = index
            .files
            .iter()
            .filter(|f| Path::new(&f.path).parent() == Some(Path::new(dir)))
            .collect();
        let (templates, plain): (Vec<&ManifestFile>, Vec<&ManifestFile>) = in_dir
            .into_iter()
            .partition(|f| f.template || f.path.ends_with(".j2"));
        if templates.len() != 1 {
            continue;
        }
        let names: Vec<String> = p.services.iter().map(|s| s.plan.name.clone()).collect();
        let pattern = if first.is_empty() {
            "*/Dockerfile".to_string()
        } else {
            format!("{first}/*/Dockerfile")
        };
        let template = templates[0].path.clone();
        let (plan, comments, why) = template_plan(
            root,
            &index,
            vec![template.clone()],
            &templates,
            &root.join(dir),
        );
        p.choices.clear();
        p.choose(
            format!("services {}", names.join(", ")),
            format!("discover \"{pattern}\""),
            format!(
                "the generic-template layout: sibling folders with a Dockerfile, no manifests of \
                 their own, one template {template}; adding a microservice is adding a folder"
            ),
        );
        p.choose(
            "discovered services",
            format!("manifests: template {template}"),
            why,
        );
        let mut out = vec![Svc {
            plan: ServicePlan {
                name: names.join(", "),
                discover: Some(pattern),
                build: None,
                image: None,
                paths: Vec::new(),
                manifests: Some(plan),
                comments,
            },
            home: ".".into(),
            named: None,
        }];
        if !plain.is_empty() {
            let stem = |f: &ManifestFile| {
                slug(
                    Path::new(&f.path)
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or(""),
                )
            };
            let name = match plain.as_slice() {
                [one] if !names.contains(&stem(one)) && !stem(one).is_empty() => stem(one),
                _ => "shared".to_string(),
            };
            let paths: Vec<String> = plain.iter().map(|f| f.path.clone()).collect();
            p.choose(
                format!("service {name}"),
                format!("manifests only: {}", paths.join(", ")),
                "the template folder's other manifests, shared by the discovered services",
            );
            out.push(manifests_only(name, paths));
        }
        return Some(out);
    }
    None
}

#[cfg(test)]
mod glob_tests {
    use super::glob_matches;

    #[test]
    fn skaffold_manifest_globs_match_any_depth_and_within_a_segment() {
        assert!(glob_matches("k8s/*.yaml", "k8s/web.yaml"));
        assert!(!glob_matches("k8s/*.yaml", "k8s/base/web.yaml"));
        assert!(glob_matches("k8s/**.yaml", "k8s/base/web.yaml"));
        assert!(glob_matches("k8s/**/*.yaml", "k8s/web.yaml"));
        assert!(glob_matches("k8s/**/*.yaml", "k8s/a/b/web.yaml"));
        assert!(glob_matches("k8s", "k8s/web.yaml"));
        assert!(glob_matches("k8s/[a-w]*.yaml", "k8s/web.yaml"));
        assert!(!glob_matches("k8s/**/*.yaml", "other/web.yaml"));
    }

    #[test]
    fn a_skaffold_yaml_full_of_double_stars_does_not_hang_init() {
        // The recursive matcher this replaces tried every split of the path for each `**`:
        // (2 x 24)^12 combinations here.
        let glob = "**/".repeat(12) + "x.yaml";
        let path = "d/".repeat(24) + "y.yaml";
        assert!(!glob_matches(&glob, &path));
        assert!(glob_matches(&glob, &("d/".repeat(24) + "x.yaml")));
    }
}
