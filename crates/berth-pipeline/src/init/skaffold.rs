//! skaffold.yaml (`skaffold/v1*` to `v4beta*`, every document of the file): artifacts and the
//! manifests Skaffold deploys.
//!
//! Skaffold's model is berth's: an artifact's `image` is the name the manifests use, and the
//! deployer rewrites it to what was pushed. So an artifact `team/web` becomes `image: team/web`
//! (pushed under `registry.prefix`), never a name the manifests must be changed to.
//!
//! Where the two schemas differ: v2 keeps manifests under `deploy` (`kubectl.manifests`,
//! `kustomize.paths`, `helm.releases`); v3/v4 under `manifests` (`rawYaml`, `kustomize.paths`,
//! `helm.releases`), and v4 still accepts `deploy.helm`. Helm releases name the image values
//! with `setValueTemplates` (`image.repository: "{{.IMAGE_REPO_team_web}}"`), v2's
//! `artifactOverrides` (`image: team/web`) with the whole reference.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::scan::ManifestIndex;
use super::{
    BuildPlan, HelmPlan, InitError, ManifestsPlan, Planner, ServicePlan, Svc, clean, free_name,
    join, short_name, slug,
};

/// What skaffold.yaml deploys.
#[derive(Debug, Default)]
pub(super) struct Deploys {
    /// rawYaml / kubectl manifests (globs as written).
    raw: Vec<String>,
    /// kustomize paths.
    kustomize: Vec<String>,
    /// helm releases.
    helm: Vec<Release>,
}

#[derive(Debug)]
struct Release {
    name: String,
    chart: String,
    values_files: Vec<String>,
    templates: BTreeMap<String, String>,
    set_values: BTreeMap<String, String>,
    overrides: BTreeMap<String, String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `{{.IMAGE_REPO_x}}` key of an artifact: Skaffold replaces every character other than
/// letters, digits and `_` with `_`.
fn template_key(image: &str) -> String {
    image
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

pub(super) fn read(p: &mut Planner<'_>) -> Result<Option<Deploys>, InitError> {
    let path = p.root.join("skaffold.yaml");
    if !path.is_file() {
        return Ok(None);
    }
    let text = p.read_text(&path)?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| InitError::Read {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    p.read.push("skaffold.yaml".into());
    let mut deploys = Deploys::default();
    for doc in &docs {
        let version = doc["apiVersion"].as_str().unwrap_or("");
        if !version.starts_with("skaffold/") {
            p.comments.push(format!(
                "skaffold.yaml has a document with apiVersion {version:?}, not skaffold/*: skipped"
            ));
            continue;
        }
        if let Some(profiles) = doc["profiles"].as_array().filter(|a| !a.is_empty()) {
            let names: Vec<&str> = profiles.iter().filter_map(|p| p["name"].as_str()).collect();
            p.comments.push(format!(
                "skaffold.yaml has profiles ({}); init read its default configuration: give a \
                 profile's manifests to an environment of its own",
                names.join(", ")
            ));
        }
        let global_platforms = strings(doc.pointer("/build/platforms"));
        for a in doc
            .pointer("/build/artifacts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            artifact(p, a, &global_platforms, version);
        }
        // Skaffold v2 (`deploy:`) and v4 (`manifests:`) spellings of the same two lists.
        for ptr in ["/deploy/kubectl/manifests", "/manifests/rawYaml"] {
            deploys.raw.extend(strings(doc.pointer(ptr)));
        }
        for ptr in ["/deploy/kustomize/paths", "/manifests/kustomize/paths"] {
            deploys.kustomize.extend(strings(doc.pointer(ptr)));
        }
        for ptr in ["/deploy/helm/releases", "/manifests/helm/releases"] {
            for r in doc
                .pointer(ptr)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(chart) = r["chartPath"].as_str().or(r["remoteChart"].as_str()) else {
                    continue;
                };
                let mut values_files = strings(r.get("valuesFiles"));
                values_files.iter_mut().for_each(|v| *v = clean(v));
                deploys.helm.push(Release {
                    name: r["name"].as_str().unwrap_or("").to_string(),
                    chart: clean(chart),
                    values_files,
                    templates: map(r.get("setValueTemplates")),
                    set_values: map(r.get("setValues")),
                    overrides: map(r.get("artifactOverrides")),
                });
            }
        }
    }
    if deploys.raw.is_empty() && deploys.kustomize.is_empty() && deploys.helm.is_empty() {
        // Skaffold's default: kubectl with k8s/*.yaml.
        if p.root.join("k8s").is_dir() {
            deploys.raw.push("k8s/*.yaml".into());
        }
    }
    Ok(Some(deploys))
}

fn artifact(p: &mut Planner<'_>, a: &Value, global_platforms: &[String], version: &str) {
    let Some(image) = a["image"].as_str().or(a["imageName"].as_str()) else {
        return;
    };
    let context = clean(
        a["context"]
            .as_str()
            .or(a["workspace"].as_str())
            .unwrap_or("."),
    );
    let name = slug(image.rsplit('/').next().unwrap_or("app"));
    let subject = format!("service {name}");
    if !super::inside(p.root, &p.root.join(&context)) {
        p.comments.push(format!(
            "skaffold.yaml builds {image} from {context}, outside the repository (or missing): \
             berth builds only inside the repository, so it is not a service here"
        ));
        return;
    }
    let mut build = BuildPlan {
        context: context.clone(),
        ..BuildPlan::default()
    };
    let mut comments = Vec::new();
    let mut platforms: Vec<String> = strings(a.get("platforms"));
    let mut platform_source = "its `platforms`".to_string();
    if platforms.is_empty() && !global_platforms.is_empty() {
        platforms = global_platforms.to_vec();
        platform_source = "build.platforms".into();
    }
    let how;
    if let Some(d) = a.get("docker") {
        build.dockerfile = d["dockerfile"]
            .as_str()
            .map(|f| f.trim_start_matches("./").to_string())
            .filter(|f| f != "Dockerfile");
        build.target = d["target"].as_str().map(String::from);
        for (k, v) in map(d.get("buildArgs")) {
            if v.contains("{{") {
                comments.push(format!(
                    "skaffold passes build arg {k} from a template ({v}); berth.yaml has only \
                     fixed values: add it under build.args if the build needs it"
                ));
            } else {
                build.args.insert(k, v);
            }
        }
        how = format!("skaffold.yaml ({version}) docker artifact {image}, context {context}");
    } else if let Some(c) = a.get("custom") {
        let command = c["buildCommand"].as_str().unwrap_or("");
        let script = script_of(p.root, &context, command);
        let text = script
            .as_ref()
            .and_then(|s| std::fs::read_to_string(p.root.join(s)).ok())
            .unwrap_or_else(|| command.to_string());
        let found = buildx_platforms(&text);
        if platforms.is_empty() && !found.is_empty() {
            platforms = found;
            platform_source = format!(
                "the custom build command's --platform ({})",
                script.as_deref().unwrap_or(command)
            );
        }
        if let Some(f) = flag_value(&text, &["-f", "--file"]) {
            build.dockerfile =
                Some(f.trim_start_matches("./").to_string()).filter(|f| f != "Dockerfile");
        }
        how = format!(
            "skaffold.yaml custom artifact {image} (`{command}`), context {context}: berth builds \
             its Dockerfile itself"
        );
    } else if let Some(b) = a.get("buildpacks") {
        let builder = b["builder"].as_str().unwrap_or("?");
        comments.push(format!(
            "skaffold builds {image} with the buildpacks builder {builder}; berth detects the \
             stack itself (Node, Python, Ruby, static, binary) or builds a Dockerfile you add"
        ));
        how = format!("skaffold.yaml buildpacks artifact {image}, context {context}");
    } else {
        how = format!("skaffold.yaml artifact {image}, context {context}");
    }
    if !platforms.is_empty() {
        comments.push(format!(
            "skaffold asks for platforms {} ({platform_source}); berth.yaml has no platforms \
             key yet: `berth run` builds for the build host's platform, `berth build --platform \
             {}` builds them all",
            platforms.join(", "),
            platforms.join(",")
        ));
    }
    build.platforms = platforms;
    let dockerfile = p
        .root
        .join(&context)
        .join(build.dockerfile.as_deref().unwrap_or("Dockerfile"));
    if dockerfile.is_file()
        && let Some(missing) = super::scan::missing_sources(p.root, &dockerfile, &context)
    {
        comments.push(format!(
            "skaffold builds {image} from {context}, where {missing} does not exist: check the context"
        ));
    }
    p.choose(
        &subject,
        format!(
            "build context {context}{}",
            build
                .dockerfile
                .as_deref()
                .map(|d| format!(", dockerfile {d}"))
                .unwrap_or_default()
        ),
        how,
    );
    // The same image from compose: skaffold adds what compose does not say.
    if let Some(existing) = p.services.iter_mut().find(|s| {
        s.named
            .as_ref()
            .is_some_and(|(n, _)| short_name(n) == short_name(image))
    }) {
        if let Some(b) = existing.plan.build.as_mut()
            && b.platforms.is_empty()
        {
            b.platforms = build.platforms.clone();
        }
        existing.plan.comments.extend(comments);
        return;
    }
    let home = if context == "." {
        build
            .dockerfile
            .as_deref()
            .and_then(|d| Path::new(d).parent())
            .map(|d| clean(&d.to_string_lossy()))
            .unwrap_or_else(|| ".".into())
    } else {
        context
    };
    let name = free_name(p, &name);
    p.services.push(Svc {
        plan: ServicePlan {
            name,
            discover: None,
            build: Some(build),
            image: None,
            paths: Vec::new(),
            manifests: None,
            comments,
        },
        home,
        named: Some((image.to_string(), "skaffold.yaml's artifact name".into())),
    });
}

/// The script a custom build command runs (`sh build.sh`, `./hack/buildx.sh`), relative to the
/// root, when it exists.
fn script_of(root: &Path, context: &str, command: &str) -> Option<String> {
    command
        .split_whitespace()
        .filter(|w| !matches!(*w, "sh" | "bash" | "-c" | "-e" | "-x"))
        .map(|w| join(context, w))
        .find(|w| root.join(w).is_file() && super::inside(root, &root.join(w)))
}

/// The platforms of every `--platform` in a build script (`--platform linux/amd64,linux/arm64`,
/// `--platform=$PLATFORMS` with `PLATFORMS=...` set in the script).
pub(super) fn buildx_platforms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(v) = flag_value(text, &["--platform"]) {
        let v = v.trim_matches(['"', '\'']);
        let v = if let Some(var) = v.strip_prefix('$') {
            let var = var.trim_matches(['{', '}']);
            let var = var.split(":-").next().unwrap_or(var);
            text.lines()
                .filter_map(|l| {
                    let l = l.trim().trim_start_matches("export ");
                    l.strip_prefix(var)?.strip_prefix('=').map(String::from)
                })
                .next()
                .or_else(|| {
                    // ${PLATFORMS:-linux/amd64,linux/arm64}
                    v.split_once(":-")
                        .map(|(_, d)| d.trim_end_matches('}').to_string())
                })
                .unwrap_or_default()
        } else {
            v.to_string()
        };
        out.extend(
            v.trim_matches(['"', '\''])
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    out
}

/// The value after the first of `flags` in a shell text (`--flag v` or `--flag=v`).
fn flag_value(text: &str, flags: &[&str]) -> Option<String> {
    let words: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .collect();
    for (i, w) in words.iter().enumerate() {
        for f in flags {
            if let Some(v) = w.strip_prefix(&format!("{f}=")) {
                return Some(v.to_string());
            }
            if w == f {
                return words.get(i + 1).map(|s| s.to_string());
            }
        }
    }
    None
}

/// Gives Skaffold's manifests to the services.
pub(super) fn assign(p: &mut Planner<'_>, sk: &Deploys, index: &ManifestIndex) {
    // Helm releases: matched by the artifact their image values name.
    for r in &sk.helm {
        let mut image_values = BTreeMap::new();
        let mut set = Vec::new();
        let mut owner: Option<String> = None;
        let mut comments = Vec::new();
        for (value, template) in &r.templates {
            let part = [
                ("IMAGE_FULLY_QUALIFIED_", "image"),
                ("IMAGE_REPO_NO_DOMAIN_", "repository"),
                ("IMAGE_DOMAIN_", "registry"),
                ("IMAGE_REPO_", "repository"),
                ("IMAGE_TAG_", "tag"),
                ("IMAGE_DIGEST_", "digest"),
            ]
            .iter()
            .find_map(|(marker, part)| {
                let at = template.find(marker)?;
                let key: String = template[at + marker.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                Some((*part, key))
            });
            match part {
                Some((part, key)) => {
                    if let Some(s) = p.services.iter().find(|s| {
                        s.named
                            .as_ref()
                            .is_some_and(|(n, _)| template_key(n) == key)
                    }) {
                        owner.get_or_insert(s.plan.name.clone());
                    }
                    if part == "tag" && template.contains("IMAGE_DIGEST_") {
                        comments.push(format!(
                            "skaffold set {value} to \"{template}\" (tag@digest); berth sets \
                             it to `pinned@sha256:…`, the pushed digest"
                        ));
                    }
                    image_values.insert(part.to_string(), value.clone());
                }
                None => comments.push(format!(
                    "skaffold sets {value} from the template \"{template}\"; berth.yaml has no \
                     value templates: set it under helm.set if the chart needs it"
                )),
            }
        }
        for (value, image) in &r.overrides {
            if let Some(s) = p
                .services
                .iter()
                .find(|s| s.named.as_ref().is_some_and(|(n, _)| n == image))
            {
                owner.get_or_insert(s.plan.name.clone());
                image_values.insert("image".into(), value.clone());
            }
        }
        for (k, v) in &r.set_values {
            set.push(format!("{k}={v}"));
        }
        let owner = owner.or_else(|| {
            p.services
                .iter()
                .find(|s| s.plan.manifests.is_none())
                .map(|s| s.plan.name.clone())
        });
        let Some(owner) = owner else { continue };
        let reason = if image_values.is_empty() {
            format!(
                "skaffold.yaml deploys the chart {} as release {}",
                r.chart, r.name
            )
        } else {
            format!(
                "skaffold.yaml deploys the chart {} as release {}, its setValueTemplates put the \
                 image in {}",
                r.chart,
                r.name,
                image_values
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let helm = HelmPlan {
            chart: r.chart.clone(),
            release: (!r.name.is_empty() && r.name != owner).then(|| r.name.clone()),
            values: r.values_files.clone(),
            set,
            image_values,
        };
        p.choose(
            format!("service {owner}"),
            format!("manifests: Helm chart {}", r.chart),
            reason,
        );
        if let Some(s) = p.by_name(&owner) {
            s.plan.manifests = Some(ManifestsPlan::Helm(helm));
            s.plan.comments.extend(comments);
        }
    }
    // Kustomize paths: the service whose image the overlay names.
    for k in &sk.kustomize {
        let k = clean(k);
        let names = index.kustomize_names(p.root, &k);
        let owner = p
            .services
            .iter()
            .filter(|s| s.plan.manifests.is_none())
            .find(|s| {
                s.named
                    .as_ref()
                    .is_some_and(|(n, _)| names.iter().any(|m| short_name(m) == short_name(n)))
            })
            .or_else(|| p.services.iter().find(|s| s.plan.manifests.is_none()))
            .map(|s| s.plan.name.clone());
        let Some(owner) = owner else {
            p.comments.push(format!(
                "skaffold.yaml also deploys the kustomization {k}; every service has manifests \
                 already: add it to one of them"
            ));
            continue;
        };
        p.choose(
            format!("service {owner}"),
            format!("manifests: kustomize {k}"),
            "skaffold.yaml's kustomize paths",
        );
        if let Some(s) = p.by_name(&owner) {
            s.plan.manifests = Some(ManifestsPlan::Kustomize(k));
        }
    }
    // rawYaml / kubectl: file by file, to the service whose image each names.
    if !sk.raw.is_empty() {
        let files = index.expand(p.root, &sk.raw);
        super::scan::split_files(p, index, &files, "skaffold.yaml's manifests");
    }
}
