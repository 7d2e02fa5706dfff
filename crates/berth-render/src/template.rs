//! minijinja templates: `*.yaml.j2`, `*.yml.j2`, `*.json.j2` in a plain manifest source, and
//! every file of a [`crate::ManifestSource::Template`] source, whatever its extension.
//!
//! In a plain source ([`crate::ManifestSource::Path`]) the `.j2` suffix is the switch: a file
//! named so is rendered, then parsed as YAML; any other manifest file is never passed through
//! the template engine, so `{{ }}` in plain YAML (e.g. in an alerting rule) stays as written.
//! A template source declares its files templates instead (`deployment.yml`, as Ansible roles
//! keep them). Other `*.j2` files are not manifests but can be pulled in with
//! `{% include %}`/`{% import %}`; names resolve relative to the directory of the template
//! being rendered.
//!
//! Undefined variables are errors (minijinja's strict mode), reported with the template's
//! file:line. Use `{% if x is defined %}` or `x | default(...)` for optional values. A
//! rendered template that is not YAML is reported with the template's file and the rendered
//! line ([`RenderError::RenderedNotYaml`]).
//!
//! What a template sees:
//! - every top-level key of [`RenderContext::values`] as a variable; berth sets `service`
//!   (the service name), `env` (`{name, namespace}`) and `image` (the service's pinned image)
//!   there, see [`RenderContext::with_service`] and [`RenderContext::with_env`]. String values
//!   holding `{{`, `{%` or `{#` are first rendered themselves with berth's variables and the
//!   aliases (not with other values), so `image_ref: "{{ image }}"` is the pinned image;
//! - the aliases of [`RenderContext::aliases`] (`service_name` -> `service`), see
//!   [`VARIABLES`];
//! - `images`: the image map as given (name -> pinned reference), unless values define it;
//! - `pinned(name)`: the pinned reference for an image name, matched like image substitution
//!   (`pinned("redis")` finds an entry `docker.io/library/redis`); an unknown name is an error;
//! - filters `b64encode` (for Secret `data`) and `tojson` (JSON is valid YAML, so
//!   `{{ x | tojson }}` embeds any value safely).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value, json};

use crate::{ImageMap, Object, RenderError};

/// What templates are rendered with: the environment's values and the built images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderContext {
    /// A mapping: values files merged deep (later wins), then `--set` overrides, then what berth
    /// adds (`service`, `env`, `image`).
    pub values: Value,
    /// Images to substitute into every object and to offer templates as `images`/`pinned()`.
    pub images: ImageMap,
    /// The repository every source must stay inside, links resolved (see [`crate::confine`]);
    /// `None` for paths given on berth's command line, which the user chose.
    pub root: Option<PathBuf>,
    /// Other names for berth's variables, as templates use them: name -> one of
    /// [`VARIABLES`] (`service_name` -> `service`, `ns` -> `env.namespace`).
    pub aliases: BTreeMap<String, String>,
    /// Where the values come from, for errors in templated values (`berth.yaml:12 (...)`);
    /// `None`: `values`.
    pub values_origin: Option<String>,
}

/// The variables berth provides to templates, as [`RenderContext::aliases`] may name them
/// (the same list berth-config checks `vars:` against).
pub use berth_types::TEMPLATE_VARIABLES as VARIABLES;

impl RenderContext {
    /// A context with these values (a mapping; anything else counts as empty) and no images.
    pub fn new(values: Value) -> RenderContext {
        let values = if values.is_object() {
            values
        } else {
            Value::Object(Map::new())
        };
        RenderContext {
            values,
            images: ImageMap::new(),
            root: None,
            aliases: BTreeMap::new(),
            values_origin: None,
        }
    }

    /// Loads values files in order (later wins, merged deep) and applies `--set` overrides.
    pub fn from_values(files: &[PathBuf], sets: &[String]) -> Result<RenderContext, RenderError> {
        let mut values = Value::Object(Map::new());
        for f in files {
            crate::values::merge(&mut values, crate::values::load_values_file(f)?);
        }
        for s in sets {
            crate::values::apply_set(&mut values, s)?;
        }
        Ok(RenderContext::new(values))
    }

    /// The same with these images.
    pub fn with_images(mut self, images: ImageMap) -> RenderContext {
        self.images = images;
        self
    }

    /// The same, confined to the repository at `root` (see [`crate::confine`]).
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> RenderContext {
        self.root = Some(root.into());
        self
    }

    /// Sets `service` and `image` for a per-service template (scenario 4: one generic template
    /// rendered once per service).
    pub fn with_service(mut self, service: &str, image: &str) -> RenderContext {
        self.set("service", service.into());
        self.set("image", image.into());
        self
    }

    /// Sets `service` only, for a service without an image of its own (objects shared by the
    /// other services, such as an Ingress); `image` stays undefined.
    pub fn with_service_name(mut self, service: &str) -> RenderContext {
        self.set("service", service.into());
        self
    }

    /// Sets `env` to `{name, namespace}`.
    pub fn with_env(mut self, name: &str, namespace: &str) -> RenderContext {
        self.set("env", json!({"name": name, "namespace": namespace}));
        self
    }

    /// The same with these aliases (template name -> one of [`VARIABLES`]).
    pub fn with_aliases(mut self, aliases: BTreeMap<String, String>) -> RenderContext {
        self.aliases = aliases;
        self
    }

    /// The same, naming where the values come from in errors.
    pub fn with_values_origin(mut self, origin: impl Into<String>) -> RenderContext {
        self.values_origin = Some(origin.into());
        self
    }

    /// berth's variables (those of [`VARIABLES`] that are set) plus the aliases.
    fn variables(&self) -> Result<Map<String, Value>, RenderError> {
        let mut vars = Map::new();
        for key in ["service", "image", "env"] {
            if let Some(v) = self.values.get(key) {
                vars.insert(key.into(), v.clone());
            }
        }
        let images = match self.values.get("images") {
            Some(v) => v.clone(),
            None => json!(self.images.entries()),
        };
        vars.insert("images".into(), images);
        let mut aliased = Map::new();
        for (name, target) in &self.aliases {
            if !VARIABLES.contains(&target.as_str()) {
                return Err(RenderError::Values {
                    origin: format!("vars `{name}: {target}`"),
                    message: format!(
                        "berth has no template variable `{target}` (it has: {})",
                        VARIABLES.join(", ")
                    ),
                });
            }
            let mut v = Some(&Value::Object(vars.clone()));
            for segment in target.split('.') {
                v = v.and_then(|v| v.get(segment));
            }
            // Unset (`image` of a service without one): the alias stays undefined, and a
            // template using it fails as for any undefined name.
            if let Some(v) = v {
                aliased.insert(name.clone(), v.clone());
            }
        }
        vars.extend(aliased);
        Ok(vars)
    }

    /// What a template sees: the values (string values rendered with the variables), the
    /// aliases, `images`.
    fn globals(&self) -> Result<Map<String, Value>, RenderError> {
        let vars = self.variables()?;
        let origin = self.values_origin.as_deref().unwrap_or("values");
        let mut globals = match crate::values::render_values(&self.values, &vars, origin)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for name in self.aliases.keys() {
            if let Some(v) = vars.get(name) {
                globals.insert(name.clone(), v.clone());
            }
        }
        if !globals.contains_key("images") {
            globals.insert("images".into(), json!(self.images.entries()));
        }
        Ok(globals)
    }

    fn set(&mut self, key: &str, value: Value) {
        if let Value::Object(m) = &mut self.values {
            m.insert(key.into(), value);
        }
    }
}

/// Whether a file name is a manifest template (`*.yaml.j2`, `*.yml.j2`, `*.json.j2`).
pub fn is_template(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    [".yaml.j2", ".yml.j2", ".json.j2"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Renders a template file to text.
pub fn render_template(path: &Path, ctx: &RenderContext) -> Result<String, RenderError> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| RenderError::Template {
            file: path.to_path_buf(),
            line: None,
            message: "the file name is not UTF-8".into(),
        })?
        .to_string();
    if !path.is_file() {
        return Err(RenderError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such template file"),
        });
    }
    let globals = ctx.globals()?;
    let mut env = engine();
    let root = ctx
        .root
        .as_deref()
        .map(crate::confine::canonical_root)
        .transpose()?;
    env.set_loader(confined_loader(dir.clone(), root));
    let images = Arc::new(ctx.images.clone());
    env.add_function("pinned", move |name: &str| {
        images.lookup(name).map(str::to_string).ok_or_else(|| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "no built image matches `{name}` (pinned images: {:?})",
                    images.entries()
                ),
            )
        })
    });
    let result = env
        .get_template(&name)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&globals))));
    result.map_err(|e| template_error(&e, &dir, path))
}

/// The template engine as every template and templated value gets it: undefined names are
/// errors, nothing is escaped, `b64encode` is there.
pub(crate) fn engine() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("b64encode", |s: &str| {
        base64::engine::general_purpose::STANDARD.encode(s)
    });
    env
}

/// minijinja's `path_loader` (names with a `.`-segment or a backslash are not found), refusing
/// an included template that resolves outside `root` through a link.
fn confined_loader(
    dir: PathBuf,
    root: Option<PathBuf>,
) -> impl for<'a> Fn(&'a str) -> Result<Option<minijinja::TemplateSource>, minijinja::Error>
+ Send
+ Sync
+ 'static {
    let load = minijinja::path_loader(dir.clone());
    move |name| {
        if let Some(root) = &root
            && name
                .split('/')
                .all(|s| !s.starts_with('.') && !s.contains('\\'))
        {
            let path = dir.join(name);
            if path.symlink_metadata().is_ok() {
                crate::confine::resolve_inside(root, &path, &path.display().to_string()).map_err(
                    |e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()),
                )?;
            }
        }
        load(name)
    }
}

fn template_error(e: &minijinja::Error, dir: &Path, path: &Path) -> RenderError {
    // An error inside an included template arrives wrapped in "could not render include" errors
    // at each include site: report the innermost place, and where it was included from.
    let mut chain = vec![e];
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        match c.downcast_ref::<minijinja::Error>() {
            Some(m) => chain.push(m),
            None => break,
        }
        cause = c.source();
    }
    let inner = *chain.last().expect("never empty");
    let place = |m: &minijinja::Error| m.name().map_or_else(|| path.to_path_buf(), |n| dir.join(n));
    let mut message = inner.kind().to_string();
    if let Some(d) = inner.detail() {
        message.push_str(": ");
        message.push_str(d);
    }
    if let Some(c) = cause {
        message.push_str(&format!(": {c}"));
    }
    for outer in chain[..chain.len() - 1].iter().rev() {
        message.push_str(&format!("\n  included from {}", place(outer).display()));
        if let Some(l) = outer.line() {
            message.push_str(&format!(":{l}"));
        }
    }
    RenderError::Template {
        file: place(inner),
        line: inner.line(),
        message,
    }
}

/// Renders a template and parses the result as YAML. Sources read `<file> (rendered)` with the
/// line in the rendered text.
pub fn load_template(path: &Path, ctx: &RenderContext) -> Result<Vec<Object>, RenderError> {
    let text = render_template(path, ctx)?;
    crate::yaml::parse_yaml(&text, &format!("{} (rendered)", path.display())).map_err(|e| match e {
        RenderError::Syntax {
            line,
            column,
            message,
            ..
        } => RenderError::RenderedNotYaml {
            template: path.to_path_buf(),
            line,
            column,
            rendered: text
                .lines()
                .nth((line as usize).saturating_sub(1))
                .unwrap_or_default()
                .to_string(),
            message,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-render-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn undefined_variables_are_errors_with_file_and_line() {
        let d = tmp("undef");
        let p = write(
            &d,
            "cm.yaml.j2",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ servce }}\n",
        );
        let e = render_template(&p, &RenderContext::new(json!({"service": "home"}))).unwrap_err();
        let RenderError::Template { file, line, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((file, *line), (&p, Some(4)));
        assert!(
            e.to_string()
                .contains("cm.yaml.j2:4: template error: undefined value"),
            "{e}"
        );
    }

    #[test]
    fn errors_in_included_files_name_that_file() {
        let d = tmp("include");
        write(&d, "_labels.j2", "app: {{ service }}\nteam: {{ team }}\n");
        let p = write(
            &d,
            "cm.yaml.j2",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels:\n    {% filter indent(4) %}{% include \"_labels.j2\" %}{% endfilter %}\n",
        );
        let e = render_template(&p, &RenderContext::new(json!({"service": "home"}))).unwrap_err();
        let RenderError::Template { file, line, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((file, *line), (&d.join("_labels.j2"), Some(2)), "{e}");
        assert!(e.to_string().contains("`team` is undefined"), "{e}");
        assert!(e.to_string().contains("included from"), "{e}");
    }

    #[test]
    fn pinned_and_b64encode() {
        let d = tmp("pinned");
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let images = ImageMap::from_pairs([(
            "docker.io/library/redis",
            format!("r.io/redis@{digest}").as_str(),
        )])
        .unwrap();
        let ctx = RenderContext::new(json!({})).with_images(images);
        let p = write(
            &d,
            "x.yaml.j2",
            "a: {{ pinned('redis:latest') }}\nb: {{ 'hunter2' | b64encode }}\n",
        );
        assert_eq!(
            render_template(&p, &ctx).unwrap(),
            format!("a: r.io/redis@{digest}\nb: aHVudGVyMg==")
        );
        let p = write(&d, "y.yaml.j2", "a: {{ pinned('postgres') }}\n");
        let e = render_template(&p, &ctx).unwrap_err().to_string();
        assert!(
            e.contains("y.yaml.j2:1") && e.contains("no built image matches `postgres`"),
            "{e}"
        );
    }

    #[test]
    fn aliases_give_berth_variables_the_names_templates_use() {
        let d = tmp("aliases");
        let p = write(
            &d,
            "deployment.yml",
            "name: {{ service_name }}\nimage: {{ image_id }}\nns: {{ ns }}\nref: {{ image_ref }}\n",
        );
        let aliases = [
            ("service_name", "service"),
            ("image_id", "image"),
            ("ns", "env.namespace"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .into();
        let ctx = RenderContext::new(json!({"image_ref": "{{ image_id }}"}))
            .with_service("web", "r.io/web@sha256:00")
            .with_env("dev", "shop-dev")
            .with_aliases(aliases);
        assert_eq!(
            render_template(&p, &ctx).unwrap(),
            "name: web\nimage: r.io/web@sha256:00\nns: shop-dev\nref: r.io/web@sha256:00"
        );
        // A service without an image: its alias is undefined, an error with file:line.
        let ctx = RenderContext::new(json!({}))
            .with_service_name("ingress")
            .with_aliases([("image_id".to_string(), "image".to_string())].into());
        let p = write(&d, "x.yml", "a: 1\nb: {{ image_id }}\n");
        let e = render_template(&p, &ctx).unwrap_err().to_string();
        assert!(
            e.contains("x.yml:2: template error: undefined value"),
            "{e}"
        );
        let ctx = RenderContext::new(json!({}))
            .with_aliases([("x".to_string(), "imagee".to_string())].into());
        let e = render_template(&p, &ctx).unwrap_err().to_string();
        assert!(
            e.contains("berth has no template variable `imagee` (it has: service, image,"),
            "{e}"
        );
    }

    #[test]
    fn values_files_merge_then_set_wins() {
        let d = tmp("values");
        let a = write(
            &d,
            "base.yaml",
            "replicas: 1\nresources:\n  cpu: 100m\n  memory: 64Mi\n",
        );
        let b = write(&d, "dev.yaml", "resources:\n  cpu: 200m\n");
        let ctx = RenderContext::from_values(&[a, b], &["replicas=2".into()]).unwrap();
        assert_eq!(
            ctx.values,
            json!({"replicas": 2, "resources": {"cpu": "200m", "memory": "64Mi"}})
        );
        let bad = write(&d, "list.yaml", "- a\n");
        let e = RenderContext::from_values(&[bad], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("list.yaml:1: invalid values"), "{e}");
    }
}
