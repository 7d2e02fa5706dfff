//! Manifest sources: plain files and directories, templates, kustomize and helm.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::template::{is_template, load_template};
use crate::{ImageRewrite, ImagesExt, Object, ObjectSet, Ownership, RenderContext, RenderError};

/// Where manifests come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestSource {
    /// A file or a directory. Directories are walked recursively in sorted order, skipping
    /// entries whose name starts with `.`; `*.yaml`, `*.yml` and `*.json` are plain manifests,
    /// `*.yaml.j2`, `*.yml.j2` and `*.json.j2` are templates (see [`crate::template`]), other
    /// files are ignored. A directory holding a `kustomization.yaml` or a `Chart.yaml` is an
    /// error: declare it as [`ManifestSource::Kustomize`] or [`ManifestSource::Helm`].
    Path(PathBuf),
    /// A template file of any extension (`deployment.yml` with Jinja markers, as Ansible roles
    /// keep them), or a directory walked like [`ManifestSource::Path`] whose every `*.yaml`,
    /// `*.yml`, `*.json` and `*.j2` manifest is a template. Each is rendered (see
    /// [`crate::template`]), then parsed as YAML; confined like a plain path.
    Template(PathBuf),
    /// A kustomization directory, rendered with `kustomize build <dir>`.
    Kustomize(PathBuf),
    /// A Helm chart, rendered with `helm template`.
    Helm(HelmChart),
}

/// A Helm chart to render with `helm template <release> <chart> --namespace <ns>
/// --include-crds --skip-tests [--version v] -f <values>... --set <expr>...`.
///
/// CRDs in the chart's `crds/` directory are included, as `helm install` would install them;
/// test pods (`helm.sh/hook: test`) are not. Other hooks are rendered like any object (their
/// `helm.sh/hook` annotations are left for the deploy layer). berth's own values are not passed
/// to the chart: give the chart its values files and `--set` overrides here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelmChart {
    /// Release name, as Helm's `.Release.Name`.
    pub release: String,
    /// A chart directory, packaged chart, or `repo/chart` reference.
    pub chart: String,
    /// The namespace (`.Release.Namespace`).
    pub namespace: String,
    /// `--version`, for a chart from a repository.
    pub version: Option<String>,
    /// `-f` values files, in order.
    pub values_files: Vec<PathBuf>,
    /// `--set` overrides, in order.
    pub set: Vec<String>,
}

/// Where the external tools are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    /// The kustomize program; default `kustomize` (looked up on PATH).
    pub kustomize: PathBuf,
    /// The helm program; default `helm` (looked up on PATH).
    pub helm: PathBuf,
    /// How long one run of either may take (a chart repository that never answers must not
    /// hold a deploy); default [`Tools::DEFAULT_DEADLINE`].
    pub deadline: std::time::Duration,
}

impl Tools {
    /// Five minutes: `helm template` of a chart with remote dependencies included.
    pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);
}

impl Default for Tools {
    fn default() -> Tools {
        Tools {
            kustomize: "kustomize".into(),
            helm: "helm".into(),
            deadline: Tools::DEFAULT_DEADLINE,
        }
    }
}

/// Loads a file or directory of plain manifests and templates (see [`ManifestSource::Path`]).
///
/// With [`RenderContext::root`] set, the path and every link under it must resolve inside the
/// root ([`crate::confine`]).
pub fn load_path(path: &Path, ctx: &RenderContext) -> Result<Vec<Object>, RenderError> {
    load_tree(path, ctx, false)
}

/// Loads a template file or a directory of templates (see [`ManifestSource::Template`]),
/// confined like [`load_path`].
pub fn load_templates(path: &Path, ctx: &RenderContext) -> Result<Vec<Object>, RenderError> {
    load_tree(path, ctx, true)
}

/// `templates`: every manifest file is a template, not only `*.j2` ones.
fn load_tree(
    path: &Path,
    ctx: &RenderContext,
    templates: bool,
) -> Result<Vec<Object>, RenderError> {
    let meta = std::fs::metadata(path).map_err(|source| RenderError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(root) = &ctx.root {
        let root = crate::confine::canonical_root(root)?;
        if meta.is_dir() {
            crate::confine::check_tree(&root, path, true)?;
        } else {
            crate::confine::resolve_inside(&root, path, &path.display().to_string())?;
        }
    }
    let mut out = Vec::new();
    if meta.is_dir() {
        walk(path, ctx, templates, &mut out)?;
    } else {
        load_file(path, ctx, templates, &mut out)?;
    }
    Ok(out)
}

fn walk(
    dir: &Path,
    ctx: &RenderContext,
    templates: bool,
    out: &mut Vec<Object>,
) -> Result<(), RenderError> {
    let read_err = |source| RenderError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    for p in &entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let tool = match name {
            "kustomization.yaml" | "kustomization.yml" | "Kustomization" => Some("kustomize"),
            "Chart.yaml" => Some("helm"),
            _ => None,
        };
        if let Some(tool) = tool {
            return Err(RenderError::NestedToolDir {
                path: p.clone(),
                tool,
            });
        }
    }
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            walk(&p, ctx, templates, out)?;
        } else if is_template(&p)
            || [".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
        {
            load_file(&p, ctx, templates, out)?;
        }
    }
    Ok(())
}

fn load_file(
    path: &Path,
    ctx: &RenderContext,
    template: bool,
    out: &mut Vec<Object>,
) -> Result<(), RenderError> {
    if template || is_template(path) {
        out.extend(load_template(path, ctx)?);
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    let objects = if path.extension().is_some_and(|e| e == "json") {
        crate::yaml::parse_json(&text, &origin)?
    } else {
        crate::yaml::parse_yaml(&text, &origin)?
    };
    out.extend(objects);
    Ok(())
}

/// Runs `kustomize build --load-restrictor=LoadRestrictionsRootOnly <dir>` and parses its
/// output. Remote bases are fetched over https or ssh only (`GIT_ALLOW_PROTOCOL`).
pub fn kustomize_build(tools: &Tools, dir: &Path) -> Result<Vec<Object>, RenderError> {
    // `--` ends the flags: a directory named `--load-restrictor=...` stays a directory. The
    // restrictor is kustomize's default; passed explicitly so that no other default applies.
    let args = vec![
        "build".to_string(),
        "--load-restrictor=LoadRestrictionsRootOnly".into(),
        "--".into(),
        dir.display().to_string(),
    ];
    let out = run("kustomize", &tools.kustomize, &args, tools.deadline)?;
    crate::yaml::parse_yaml(&out, &format!("kustomize build {}", dir.display()))
}

/// Runs `helm template` (see [`HelmChart`]) and parses its output; each object's source names
/// the chart template from Helm's `# Source:` comment.
pub fn helm_template(tools: &Tools, chart: &HelmChart) -> Result<Vec<Object>, RenderError> {
    // Every value is glued to its flag (`--set=...`) and the positionals follow `--`, so a
    // value starting with `-` (`release: --post-renderer=/bin/sh`) can never become a flag.
    let mut args = vec![
        "template".to_string(),
        format!("--namespace={}", chart.namespace),
        "--include-crds".into(),
        "--skip-tests".into(),
    ];
    if let Some(v) = &chart.version {
        args.push(format!("--version={v}"));
    }
    for f in &chart.values_files {
        args.push(format!("--values={}", f.display()));
    }
    for s in &chart.set {
        args.push(format!("--set={s}"));
    }
    args.extend(["--".into(), chart.release.clone(), chart.chart.clone()]);
    let out = run("helm", &tools.helm, &args, tools.deadline)?;
    let command = format!("helm template {} {}", chart.release, chart.chart);
    let mut objects = crate::yaml::parse_yaml(&out, &command)?;
    let sources: Vec<(u64, &str)> = out
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            l.strip_prefix("# Source: ")
                .map(|s| (i as u64 + 1, s.trim()))
        })
        .collect();
    for o in &mut objects {
        let line = o.source().line;
        if let Some((_, template)) = sources.iter().rev().find(|(l, _)| *l < line) {
            o.source_mut().origin = format!("{command} ({template})");
        }
    }
    Ok(objects)
}

fn run(
    tool: &'static str,
    program: &Path,
    args: &[String],
    deadline: std::time::Duration,
) -> Result<String, RenderError> {
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let output = berth_process::output(
        Command::new(program)
            .args(args)
            .env("GIT_ALLOW_PROTOCOL", "https:ssh"),
        None,
        deadline,
    )
    .map_err(|e| {
        if e.is_not_found() {
            RenderError::ToolMissing {
                tool,
                program: program.to_path_buf(),
            }
        } else {
            RenderError::ToolFailed {
                command: command.clone(),
                status: e.to_string(),
                stderr: String::new(),
            }
        }
    })?;
    if !output.status.success() {
        return Err(RenderError::ToolFailed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    String::from_utf8(output.stdout).map_err(|_| RenderError::ToolFailed {
        command,
        status: "its output is not UTF-8".into(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// The checks of [`crate::confine`] for a kustomize or helm source (plain paths are checked by
/// [`load_path`]).
fn confine_tool_source(root: &Path, source: &ManifestSource) -> Result<(), RenderError> {
    match source {
        ManifestSource::Path(_) | ManifestSource::Template(_) => Ok(()),
        ManifestSource::Kustomize(dir) => crate::confine::check_kustomization(root, dir),
        ManifestSource::Helm(chart) => {
            for f in &chart.values_files {
                crate::confine::resolve_inside(root, f, &f.display().to_string())?;
            }
            let local = Path::new(&chart.chart);
            if local.symlink_metadata().is_err() {
                // A `repo/chart` reference: helm fetches it, nothing local is read.
                return Ok(());
            }
            let real = crate::confine::resolve_inside(root, local, &chart.chart)?;
            if real.is_dir() {
                crate::confine::check_tree(root, local, false)?;
            }
            Ok(())
        }
    }
}

/// Loads every source, in order, into one set (duplicates across sources are errors). With
/// [`RenderContext::root`] set, every source is first checked to stay inside it
/// ([`crate::confine`]).
/// Images are not substituted and no labels are added: see [`render`] for the whole step.
pub fn load(
    sources: &[ManifestSource],
    ctx: &RenderContext,
    tools: &Tools,
) -> Result<ObjectSet, RenderError> {
    let mut set = ObjectSet::new();
    if let Some(root) = &ctx.root {
        let root = crate::confine::canonical_root(root)?;
        for s in sources {
            confine_tool_source(&root, s)?;
        }
    }
    for s in sources {
        let objects = match s {
            ManifestSource::Path(p) => load_path(p, ctx)?,
            ManifestSource::Template(p) => load_templates(p, ctx)?,
            ManifestSource::Kustomize(dir) => kustomize_build(tools, dir)?,
            ManifestSource::Helm(chart) => helm_template(tools, chart)?,
        };
        set.extend(objects)?;
    }
    Ok(set)
}

/// The result of [`render`].
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The final objects.
    pub objects: ObjectSet,
    /// Every image reference that was replaced by a pinned one.
    pub image_rewrites: Vec<ImageRewrite>,
}

/// The render step: load every source, substitute `ctx.images`, then label the objects and put
/// them into the environment's namespace for `owner`.
pub fn render(
    sources: &[ManifestSource],
    ctx: &RenderContext,
    tools: &Tools,
    owner: &Ownership,
) -> Result<Rendered, RenderError> {
    let mut objects = load(sources, ctx, tools)?;
    let image_rewrites = objects.substitute_images(&ctx.images);
    objects.apply_ownership(owner)?;
    Ok(Rendered {
        objects,
        image_rewrites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_says_what_to_do() {
        let tools = Tools {
            kustomize: "/nonexistent/kustomize".into(),
            helm: "/nonexistent/helm".into(),
            ..Tools::default()
        };
        let e = kustomize_build(&tools, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("`kustomize` not found (looked for `/nonexistent/kustomize`)"),
            "{e}"
        );
        assert!(e.contains("berth doctor"), "{e}");
        let e = helm_template(&tools, &HelmChart::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("`helm` not found"), "{e}");
    }

    #[test]
    fn a_template_named_deployment_yml_in_a_template_source_is_rendered_not_read_as_yaml() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("roles/web/templates");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("deployment.yml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ service }}\n{% if image is defined %}  labels: {app: {{ service }}}\n{% endif %}",
        )
        .unwrap();
        let ctx = RenderContext::new(serde_json::json!({}))
            .with_service("web", "r.io/web")
            .with_root(d.path());
        for source in [
            ManifestSource::Template(dir.clone()),
            ManifestSource::Template(dir.join("deployment.yml")),
        ] {
            let set = load(std::slice::from_ref(&source), &ctx, &Tools::default())
                .unwrap_or_else(|e| panic!("{source:?}: {e}"));
            assert_eq!(set.to_yaml().matches("name: web").count(), 1, "{source:?}");
        }
        // `path:` semantics are unchanged: a `.yml` there is plain YAML.
        let e = load(
            &[ManifestSource::Path(dir.clone())],
            &ctx,
            &Tools::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("malformed YAML"), "{e}");
    }

    #[test]
    fn a_template_source_with_a_link_out_of_the_repository_is_not_rendered() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(
            outside.path().join("stolen.yml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\n",
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("templates");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(outside.path().join("stolen.yml"), dir.join("s.yml")).unwrap();
        let ctx = RenderContext::new(serde_json::json!({})).with_root(d.path());
        for source in [
            ManifestSource::Template(dir.clone()),
            ManifestSource::Template(dir.join("s.yml")),
        ] {
            let e = load(std::slice::from_ref(&source), &ctx, &Tools::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("s.yml") && e.contains("outside the repository"),
                "{e}"
            );
        }
    }

    #[test]
    fn failing_tool_carries_its_stderr() {
        // `sh -c` stands in for a tool here: the failure path does not depend on which tool.
        let e = run(
            "kustomize",
            Path::new("sh"),
            &[
                "-c".into(),
                "echo 'Error: no kustomization' >&2; exit 3".into(),
            ],
            Tools::DEFAULT_DEADLINE,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.ends_with("Error: no kustomization"), "{e}");
    }

    /// The bug: a chart repository that never answered held `berth run` forever.
    #[test]
    fn a_tool_that_hangs_is_stopped_at_its_deadline() {
        let e = run(
            "helm",
            Path::new("sh"),
            &["-c".into(), "sleep 60".into()],
            std::time::Duration::from_millis(200),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sh did not finish within 0s and was stopped"),
            "{e}"
        );
    }
}
