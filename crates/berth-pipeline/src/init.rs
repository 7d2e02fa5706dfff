//! `berth init`: read an existing repository and propose a berth.yaml that works, saying why
//! for each choice.
//!
//! What is looked at, in order:
//! 1. `skaffold.yaml`: its artifacts (image, context, dockerfile) and manifests (rawYaml,
//!    kustomize paths) become services;
//! 2. otherwise every `Dockerfile` (up to three levels down) is a service named after its
//!    folder; with none, buildpack-style detection on the root and its first-level folders;
//! 3. manifests: a service folder's own `k8s/`, `deploy/`, `manifests/` or `kubernetes/`; else
//!    the repository's (a Kustomize overlay `overlays/dev` is preferred over `base`; a Helm
//!    chart in `charts/NAME` or `chart/` goes to the service of that name, or the first one);
//!    When every Dockerfile folder is a sibling without manifests of its own and the
//!    repository's manifests folder holds one template (`*.j2`), the layout is the generic
//!    template one (scenario 4): one `discover` entry finds the folders, so a new folder is a
//!    new service; the folder's other manifests become one manifests-only service;
//! 4. images: when a manifest already names an image whose last path segment is the service's
//!    name, that repository becomes the service's `image`, so berth pins it to the built
//!    digest without any change to the manifests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A proposed berth.yaml and the reasons for it.
#[derive(Debug, Clone)]
pub struct InitPlan {
    /// The file's text.
    pub yaml: String,
    /// One line per decision, for people.
    pub explanations: Vec<String>,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Nothing to build or deploy was found.
    #[error(
        "found nothing berth can build or deploy in {0}: no skaffold.yaml, no Dockerfile, no \
         stack berth recognises. Add a Dockerfile, or write berth.yaml by hand (berth schema)"
    )]
    Nothing(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Svc {
    name: String,
    context: String,
    dockerfile: Option<String>,
    image: String,
    manifests: Option<String>,
}

const SKIP: &[&str] = &[".git", "node_modules", "target", "vendor", ".venv", "dist"];
const MANIFEST_DIRS: &[&str] = &["k8s", "deploy", "manifests", "kubernetes"];

fn rel(root: &Path, p: &Path) -> String {
    let r = p
        .strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .to_string();
    if r.is_empty() { ".".into() } else { r }
}

/// Whether `p` exists and resolves inside `root`: the scan never looks through a link that
/// leads out of the repository (`k8s/host -> /` would have it read every YAML file of the
/// host into the proposal, and a linked service folder make a service of someone else's code).
fn inside(root: &Path, p: &Path) -> bool {
    match (p.canonicalize(), root.canonicalize()) {
        (Ok(target), Ok(root)) => target.starts_with(root),
        _ => false,
    }
}

fn find_dockerfiles(root: &Path, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let dockerfile = dir.join("Dockerfile");
    if dockerfile.is_file() && inside(root, &dockerfile) {
        out.push(dir.to_path_buf());
    }
    if depth == 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && inside(root, p))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !n.starts_with('.') && !SKIP.contains(&n)
        })
        .collect();
    dirs.sort();
    for d in dirs {
        find_dockerfiles(root, &d, depth - 1, out);
    }
}

fn slug(s: &str) -> String {
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
    s.trim_matches('-').to_string()
}

/// The manifests source for `dir`, as a berth.yaml `manifests:` value.
fn manifests_in(root: &Path, dir: &Path) -> Option<(String, String)> {
    for name in MANIFEST_DIRS {
        let d = dir.join(name);
        if !d.is_dir() || !inside(root, &d) {
            continue;
        }
        for overlay in ["overlays/dev", "overlays/development", "overlay/dev"] {
            if d.join(overlay).join("kustomization.yaml").is_file() {
                let p = rel(root, &d.join(overlay));
                return Some((
                    format!("{{ kustomize: {p} }}"),
                    format!("Kustomize overlay {p}"),
                ));
            }
        }
        if d.join("kustomization.yaml").is_file() {
            let p = rel(root, &d);
            return Some((
                format!("{{ kustomize: {p} }}"),
                format!("Kustomize directory {p}"),
            ));
        }
        let p = rel(root, &d);
        return Some((
            format!("{{ path: [{p}] }}"),
            format!("plain manifests in {p}/"),
        ));
    }
    for overlay in ["overlays/dev", "overlay/dev"] {
        if dir.join(overlay).join("kustomization.yaml").is_file() {
            let p = rel(root, &dir.join(overlay));
            return Some((
                format!("{{ kustomize: {p} }}"),
                format!("Kustomize overlay {p}"),
            ));
        }
    }
    None
}

fn chart_for(root: &Path, name: &str) -> Option<(String, String)> {
    for dir in [
        root.join("charts").join(name),
        root.join("chart"),
        root.join("helm"),
    ] {
        if dir.join("Chart.yaml").is_file() {
            let p = rel(root, &dir);
            return Some((
                format!("{{ helm: {{ chart: {p} }} }}"),
                format!("Helm chart {p}"),
            ));
        }
    }
    None
}

/// Every `image:` value in the YAML files under `dir` (inside `root`; each directory once,
/// so a link loop ends).
fn images_in(
    root: &Path,
    dir: &Path,
    seen: &mut std::collections::HashSet<PathBuf>,
    out: &mut BTreeSet<String>,
) {
    if !inside(root, dir) || !dir.canonicalize().is_ok_and(|c| seen.insert(c)) {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            images_in(root, &p, seen, out);
        } else if inside(root, &p)
            && p.extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "j2" || x == "tpl")
            && let Ok(text) = std::fs::read_to_string(&p)
        {
            for line in text.lines() {
                let t = line.trim().trim_start_matches("- ");
                if let Some(v) = t.strip_prefix("image:") {
                    let v = v.split(" #").next().unwrap_or("");
                    let v = v.trim().trim_matches(['"', '\'']);
                    if !v.is_empty() && !v.contains("{{") {
                        out.insert(v.to_string());
                    }
                }
            }
        }
    }
}

fn repository(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_string(),
        _ => no_digest.to_string(),
    }
}

fn from_skaffold(
    root: &Path,
    text: &str,
    explain: &mut Vec<String>,
) -> Result<Vec<Svc>, InitError> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| InitError::Read {
        path: root.join("skaffold.yaml"),
        reason: e.to_string(),
    })?;
    let mut manifests: Vec<String> = Vec::new();
    for key in ["/manifests/rawYaml", "/deploy/kubectl/manifests"] {
        if let Some(a) = doc.pointer(key).and_then(Value::as_array) {
            manifests.extend(a.iter().filter_map(Value::as_str).map(String::from));
        }
    }
    let kustomize: Vec<String> = doc
        .pointer("/manifests/kustomize/paths")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, a) in doc
        .pointer("/build/artifacts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let image = a["image"].as_str().unwrap_or("app").to_string();
        let context = a["context"].as_str().unwrap_or(".").to_string();
        let name = slug(image.rsplit('/').next().unwrap_or("app"));
        let m = if i == 0 {
            if let Some(k) = kustomize.first() {
                Some(format!("{{ kustomize: {k} }}"))
            } else if !manifests.is_empty() {
                // Skaffold globs (k8s/*.yaml) become their directory.
                let dirs: BTreeSet<String> = manifests
                    .iter()
                    .map(|m| {
                        if m.contains('*') {
                            Path::new(m)
                                .parent()
                                .map(|p| p.to_string_lossy().to_string())
                                .unwrap_or(".".into())
                        } else {
                            m.clone()
                        }
                    })
                    .collect();
                Some(format!(
                    "{{ path: [{}] }}",
                    dirs.into_iter().collect::<Vec<_>>().join(", ")
                ))
            } else {
                None
            }
        } else {
            None
        };
        explain.push(format!(
            "service `{name}`: skaffold.yaml artifact `{image}` (context {context}){}",
            if m.is_some() {
                ", with skaffold's manifests"
            } else {
                ""
            }
        ));
        out.push(Svc {
            name,
            context,
            dockerfile: a
                .pointer("/docker/dockerfile")
                .and_then(Value::as_str)
                .map(String::from),
            image,
            manifests: m,
        });
    }
    Ok(out)
}

/// Proposes a berth.yaml for the repository at `root`.
pub fn plan(root: &Path, registry_prefix: &str, namespace: &str) -> Result<InitPlan, InitError> {
    let mut explain = Vec::new();
    let project = slug(
        &std::fs::canonicalize(root)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "app".into()),
    );
    let mut services: Vec<Svc> = Vec::new();
    let skaffold = root.join("skaffold.yaml");
    if skaffold.is_file() {
        let text = std::fs::read_to_string(&skaffold).map_err(|e| InitError::Read {
            path: skaffold.clone(),
            reason: e.to_string(),
        })?;
        services = from_skaffold(root, &text, &mut explain)?;
    }
    if services.is_empty() {
        let mut dirs = Vec::new();
        find_dockerfiles(root, root, 3, &mut dirs);
        for d in dirs {
            let name = if d == root {
                project.clone()
            } else {
                slug(&d.file_name().unwrap().to_string_lossy())
            };
            explain.push(format!("service `{name}`: {}/Dockerfile", rel(root, &d)));
            services.push(Svc {
                name: name.clone(),
                context: rel(root, &d),
                dockerfile: None,
                image: format!("{registry_prefix}/{name}"),
                manifests: None,
            });
        }
    }
    if !services.is_empty()
        && !skaffold.is_file()
        && let Some(generic) = generic_template(root, &services)
    {
        return Ok(generic.plan(registry_prefix, namespace));
    }
    if services.is_empty() {
        let mut candidates = vec![root.to_path_buf()];
        if let Ok(rd) = std::fs::read_dir(root) {
            let mut more: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() && inside(root, p))
                .collect();
            more.sort();
            candidates.extend(more);
        }
        for d in candidates {
            let n = d.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if d != root && (n.starts_with('.') || SKIP.contains(&n) || MANIFEST_DIRS.contains(&n))
            {
                continue;
            }
            if let Ok(Some(det)) = crate::detect::detect(&d, &crate::detect::Base::Default) {
                let name = if d == root { project.clone() } else { slug(n) };
                explain.push(format!(
                    "service `{name}`: no Dockerfile in {}; detected {:?} from {} — berth builds it on {}",
                    rel(root, &d),
                    det.detector,
                    det.evidence.display(),
                    det.base_image
                ));
                services.push(Svc {
                    name: name.clone(),
                    context: rel(root, &d),
                    dockerfile: None,
                    image: format!("{registry_prefix}/{name}"),
                    manifests: None,
                });
                if d == root {
                    break;
                }
            }
        }
    }
    if services.is_empty() {
        return Err(InitError::Nothing(root.to_path_buf()));
    }

    // Manifests: the service's own, else the repository's for the first service.
    let mut shared_used = false;
    for svc in services.iter_mut() {
        if svc.manifests.is_some() {
            continue;
        }
        let dir = root.join(&svc.context);
        let own = if dir != root {
            manifests_in(root, &dir)
        } else {
            None
        };
        let found = own.or_else(|| chart_for(root, &svc.name)).or_else(|| {
            if shared_used {
                None
            } else {
                manifests_in(root, root)
            }
        });
        if let Some((m, why)) = found {
            if !m.contains(&svc.context) && dir != root {
                shared_used = true;
            }
            if dir == root {
                shared_used = true;
            }
            explain.push(format!("service `{}` deploys the {why}", svc.name));
            svc.manifests = Some(m);
        }
    }

    // Images already named in the manifests keep their repository, so pinning needs no edit.
    let mut named = BTreeSet::new();
    let mut seen = std::collections::HashSet::new();
    for d in MANIFEST_DIRS
        .iter()
        .chain(["chart", "charts", "helm"].iter())
        .map(|d| root.join(d))
        .chain(services.iter().map(|s| root.join(&s.context)))
    {
        images_in(root, &d, &mut seen, &mut named);
    }
    // With one service and one image of a private registry in the manifests, that is its image.
    let private: BTreeSet<String> = named
        .iter()
        .map(|i| repository(i))
        .filter(|r| {
            let host = r.split('/').next().unwrap_or("");
            r.contains('/') && (host.contains('.') || host.contains(':')) && host != "docker.io"
        })
        .collect();
    let single = (services.len() == 1 && private.len() == 1)
        .then(|| private.iter().next().cloned())
        .flatten();
    for s in services.iter_mut() {
        if let Some(repo) = &single {
            if *repo != s.image {
                explain.push(format!(
                    "service `{}`: image {repo}, the one image the manifests name (berth pins it to each build's digest)",
                    s.name
                ));
                s.image = repo.clone();
            }
            continue;
        }
        if let Some(img) = named.iter().find(|i| {
            repository(i)
                .rsplit('/')
                .next()
                .is_some_and(|last| last == s.name || last.ends_with(&format!("-{}", s.name)))
        }) {
            let repo = repository(img);
            if repo != s.image {
                explain.push(format!(
                    "service `{}`: image {repo}, as the manifests already name it (berth pins it to each build's digest)",
                    s.name
                ));
                s.image = repo;
            }
        } else {
            explain.push(format!(
                "service `{}`: image {} — make the manifests use this name so berth can pin it",
                s.name, s.image
            ));
        }
    }

    let mut y = String::from(
        "# Written by `berth init`; every choice is explained in its output. Check it, then\n# `berth run`.\nservices:\n",
    );
    for s in &services {
        y.push_str(&format!(
            "  - name: {}\n    build:\n      context: {}\n",
            s.name, s.context
        ));
        if let Some(d) = &s.dockerfile {
            y.push_str(&format!("      dockerfile: {d}\n"));
        }
        y.push_str(&format!("    image: {}\n", s.image));
        if let Some(m) = &s.manifests {
            y.push_str(&format!("    manifests: {m}\n"));
        }
    }
    y.push_str(&format!(
        "environments:\n  - name: dev\n    namespace: {namespace}\n"
    ));
    explain.push(format!(
        "environment `dev` deploys to namespace `{namespace}`"
    ));
    Ok(InitPlan {
        yaml: y,
        explanations: explain,
    })
}

/// The generic-template layout (scenario 4): sibling folders with a Dockerfile each and no
/// manifests of their own, and one repository-level template that renders any of them.
struct Generic {
    /// `*/Dockerfile` or `<parent>/*/Dockerfile`.
    pattern: String,
    /// The folders it finds (service names).
    names: Vec<String>,
    /// The template, relative to the root.
    template: String,
    /// The other manifests of the template's folder: a manifests-only service (name, paths).
    shared: Option<(String, Vec<String>)>,
}

/// Finds the generic-template layout among the Dockerfile services found.
fn generic_template(root: &Path, services: &[Svc]) -> Option<Generic> {
    let parent = |s: &Svc| {
        Path::new(&s.context)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
    };
    let first = parent(services.first()?)?;
    // Every Dockerfile folder is a sibling (so one pattern finds exactly them), named as a
    // service can be, and without manifests of its own.
    let siblings = services.len() >= 2
        && services.iter().all(|s| {
            s.context != "."
                && parent(s).as_deref() == Some(first.as_str())
                && Path::new(&s.context).file_name().and_then(|n| n.to_str()) == Some(&s.name)
                && s.name.starts_with(|c: char| c.is_ascii_lowercase())
                && manifests_in(root, &root.join(&s.context)).is_none()
        });
    if !siblings {
        return None;
    }
    for dir in MANIFEST_DIRS {
        let d = root.join(dir);
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && inside(root, p))
            .collect();
        files.sort();
        let (templates, plain): (Vec<PathBuf>, Vec<PathBuf>) = files
            .into_iter()
            .filter(|p| {
                let n = p.to_string_lossy();
                n.ends_with(".j2")
                    || n.ends_with(".yaml")
                    || n.ends_with(".yml")
                    || n.ends_with(".json")
            })
            .partition(|p| p.extension().is_some_and(|e| e == "j2"));
        if templates.len() != 1 {
            continue;
        }
        let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
        let shared = (!plain.is_empty()).then(|| {
            let stem = |p: &PathBuf| {
                slug(
                    p.file_stem()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                        .as_str(),
                )
            };
            let name = match plain.as_slice() {
                [one] if !names.contains(&stem(one)) && !stem(one).is_empty() => stem(one),
                _ => "shared".to_string(),
            };
            (name, plain.iter().map(|p| rel(root, p)).collect())
        });
        let pattern = if first.is_empty() {
            "*/Dockerfile".to_string()
        } else {
            format!("{first}/*/Dockerfile")
        };
        return Some(Generic {
            pattern,
            names,
            template: rel(root, &templates[0]),
            shared,
        });
    }
    None
}

impl Generic {
    fn plan(&self, registry_prefix: &str, namespace: &str) -> InitPlan {
        let mut explain = vec![format!(
            "services {}: each folder matching `{}` is a service named after it (the generic-template layout: sibling folders with a Dockerfile, no manifests of their own, one template {}), so adding a microservice is adding a folder",
            self.names.join(", "),
            self.pattern,
            self.template
        )];
        explain.push(format!(
            "every discovered service deploys the template {} (it sees `service` and `image`)",
            self.template
        ));
        explain.push(format!(
            "images are pushed to {registry_prefix}/<service> (registry.prefix)"
        ));
        let mut y = format!(
            "# Written by `berth init`; every choice is explained in its output. Check it, then\n# `berth run`.\nregistry:\n  prefix: {registry_prefix}\nservices:\n  - discover: \"{}\"\n    manifests: {{ template: {} }}\n",
            self.pattern, self.template
        );
        if let Some((name, paths)) = &self.shared {
            explain.push(format!(
                "service `{name}`: no image, deploys the shared manifests {}",
                paths.join(", ")
            ));
            y.push_str(&format!(
                "  - name: {name}\n    manifests: {{ path: [{}] }}\n",
                paths.join(", ")
            ));
        }
        y.push_str(&format!(
            "environments:\n  - name: dev\n    namespace: {namespace}\n"
        ));
        explain.push(format!(
            "environment `dev` deploys to namespace `{namespace}`"
        ));
        InitPlan {
            yaml: y,
            explanations: explain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        d
    }

    #[test]
    fn dockerfiles_and_their_manifests_become_services() {
        let d = tree(&[
            ("web/Dockerfile", "FROM busybox\n"),
            ("api/Dockerfile", "FROM busybox\n"),
            ("api/k8s/deploy.yaml", "image: reg.example/team/api:1.0\n"),
            ("k8s/web.yaml", "      - image: \"reg.example/team/web\"\n"),
        ]);
        let plan = plan(d.path(), "reg.example/default", "shop-dev").unwrap();
        assert!(plan.yaml.contains("- name: api\n    build:\n      context: api\n    image: reg.example/team/api\n    manifests: { path: [api/k8s] }"), "{}", plan.yaml);
        assert!(plan.yaml.contains("- name: web\n    build:\n      context: web\n    image: reg.example/team/web\n    manifests: { path: [k8s] }"), "{}", plan.yaml);
        assert!(
            plan.explanations
                .iter()
                .any(|e| e.contains("as the manifests already name it"))
        );
    }

    #[test]
    fn kustomize_overlays_and_skaffold_are_read() {
        let d = tree(&[
            (
                "skaffold.yaml",
                "apiVersion: skaffold/v4beta6\nkind: Config\nbuild:\n  artifacts:\n  - image: flask-app\n    context: app\nmanifests:\n  kustomize:\n    paths: [k8s/overlays/dev]\n",
            ),
            ("app/Dockerfile", "FROM busybox\n"),
        ]);
        let plan = plan(d.path(), "r", "dev").unwrap();
        assert!(
            plan.yaml
                .contains("manifests: { kustomize: k8s/overlays/dev }"),
            "{}",
            plan.yaml
        );
        assert!(plan.yaml.contains("context: app"), "{}", plan.yaml);
        let k = tree(&[
            ("Dockerfile", "FROM busybox\n"),
            ("k8s/base/kustomization.yaml", ""),
            ("k8s/overlays/dev/kustomization.yaml", ""),
        ]);
        let plan = plan_with(k.path());
        assert!(
            plan.yaml
                .contains("manifests: { kustomize: k8s/overlays/dev }"),
            "{}",
            plan.yaml
        );
    }

    fn plan_with(p: &Path) -> InitPlan {
        plan(p, "r", "dev").unwrap()
    }

    #[test]
    fn the_generic_template_layout_becomes_one_discover_entry() {
        let d = tree(&[
            ("home/Dockerfile", "FROM busybox\n"),
            ("kids/Dockerfile", "FROM busybox\n"),
            ("mens/Dockerfile", "FROM busybox\n"),
            ("k8s/service.yaml.j2", "image: {{ image }}\n"),
            ("k8s/ingress.yaml", "kind: Ingress\n"),
        ]);
        let p = plan(d.path(), "reg.example/shop", "shop").unwrap();
        assert_eq!(
            p.yaml.lines().skip(2).collect::<Vec<_>>(),
            [
                "registry:",
                "  prefix: reg.example/shop",
                "services:",
                "  - discover: \"*/Dockerfile\"",
                "    manifests: { template: k8s/service.yaml.j2 }",
                "  - name: ingress",
                "    manifests: { path: [k8s/ingress.yaml] }",
                "environments:",
                "  - name: dev",
                "    namespace: shop",
            ]
        );
        assert!(
            p.explanations[0].contains("the generic-template layout"),
            "{:?}",
            p.explanations
        );
        let config = berth_config::parse(&p.yaml, "berth.yaml", d.path()).unwrap();
        let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["home", "kids", "mens", "ingress"]);

        // One folder with manifests of its own: not the generic layout, one entry each.
        let d = tree(&[
            ("svc/home/Dockerfile", "FROM busybox\n"),
            ("svc/kids/Dockerfile", "FROM busybox\n"),
            ("svc/kids/k8s/deploy.yaml", "kind: Deployment\n"),
            ("k8s/service.yaml.j2", "image: {{ image }}\n"),
        ]);
        let p = plan(d.path(), "r", "dev").unwrap();
        assert!(!p.yaml.contains("discover"), "{}", p.yaml);
        // Nested siblings get their parent in the pattern.
        std::fs::remove_dir_all(d.path().join("svc/kids/k8s")).unwrap();
        let p = plan(d.path(), "r", "dev").unwrap();
        assert!(
            p.yaml.contains("  - discover: \"svc/*/Dockerfile\"\n"),
            "{}",
            p.yaml
        );
    }

    #[test]
    fn init_does_not_scan_through_links_out_of_the_repository() {
        let outside = tree(&[
            (
                "leak.yaml",
                "image: secret.example.com/internal/leak:1
",
            ),
            (
                "svc/Dockerfile",
                "FROM busybox
",
            ),
            ("svc/package.json", "{\"name\": \"outside\"}\n"),
        ]);
        let d = tree(&[
            (
                "Dockerfile",
                "FROM busybox
",
            ),
            (
                "k8s/app.yaml",
                "kind: ConfigMap
",
            ),
        ]);
        let link = |target: &Path, at: &str| {
            std::os::unix::fs::symlink(target, d.path().join(at)).unwrap();
        };
        link(outside.path(), "k8s/host");
        link(&outside.path().join("svc"), "svc");
        link(Path::new("."), "k8s/loop");
        let plan = plan_with(d.path());
        assert!(!plan.yaml.contains("secret.example.com"), "{}", plan.yaml);
        assert!(!plan.yaml.contains("name: svc"), "{}", plan.yaml);
        let text = plan.explanations.join("\n");
        assert!(
            !text.contains("secret.example.com") && !text.contains("svc"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_repository_says_what_to_do() {
        let d = tree(&[("README.md", "hi")]);
        let e = plan(d.path(), "r", "dev").unwrap_err().to_string();
        assert!(e.contains("Add a Dockerfile"), "{e}");
    }
}
