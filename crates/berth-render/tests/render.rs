//! Snapshot tests over the fixtures in `tests/fixtures/`: plain manifests, the generic
//! per-service template of scenario 4, and (with the test environment's binaries) a Kustomize
//! base + overlay and a Helm chart.
//!
//! kustomize and helm come from berth's test environment (`$BERTH_TESTENV_BIN`, else
//! `~/.cache/berth-testenv/*/bin/`). A test that needs one and cannot find it fails: it is
//! never skipped silently.

use std::path::{Path, PathBuf};

use berth_render::{
    HelmChart, ImageMap, ImagesExt, ManifestSource, ObjectError, ObjectSet, Ownership,
    RenderContext, RenderError, Tools, deploy_order, load, load_path, render,
};
use serde_json::json;

const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

fn fixture(p: &str) -> PathBuf {
    Path::new("tests/fixtures").join(p)
}

fn pinned(repo: &str) -> String {
    format!("127.0.0.1:15000/shop/{repo}@{DIGEST}")
}

/// A kustomize/helm binary from berth's test environment; fails the test when it is missing.
fn testenv_tool(name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(bin) = std::env::var_os("BERTH_TESTENV_BIN") {
        candidates.push(PathBuf::from(bin).join(name));
    }
    let home = std::env::var_os("BERTH_TESTENV_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("berth-testenv"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/berth-testenv"))
        });
    if let Some(home) = home
        && let Ok(entries) = std::fs::read_dir(&home)
    {
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        candidates.extend(dirs.into_iter().rev().map(|d| d.join("bin").join(name)));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` from berth's test environment is not built (looked in $BERTH_TESTENV_BIN \
                 and ~/.cache/berth-testenv/*/bin/).\nstart it with: testenv/berth-testenv up"
            )
        })
}

fn with_kustomize() -> Tools {
    Tools {
        kustomize: testenv_tool("kustomize"),
        ..Tools::default()
    }
}

fn with_helm() -> Tools {
    Tools {
        helm: testenv_tool("helm"),
        ..Tools::default()
    }
}

fn owner() -> Ownership {
    Ownership::new("shop", 4, "dev").with_commit("0123abcd")
}

fn phases(set: &ObjectSet) -> String {
    deploy_order(set)
        .iter()
        .map(|p| {
            let keys: Vec<String> = p.objects.iter().map(ToString::to_string).collect();
            format!("{:?}: {}", p.phase, keys.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn plain_directory() {
    let ctx = RenderContext::default()
        .with_images(ImageMap::from_pairs([("web", pinned("web").as_str())]).unwrap());
    let out = render(
        &[ManifestSource::Path(fixture("plain"))],
        &ctx,
        &Tools::default(),
        &owner(),
    )
    .unwrap();
    let rewrites: Vec<String> = out
        .image_rewrites
        .iter()
        .map(|r| format!("{} {} {}", r.object, r.pointer, r.from))
        .collect();
    insta::assert_snapshot!("plain_rewrites", rewrites.join("\n"));
    insta::assert_snapshot!("plain_phases", phases(&out.objects));
    insta::assert_snapshot!("plain", out.objects.to_yaml());
}

#[test]
fn render_is_byte_stable() {
    let ctx = RenderContext::default();
    let a = load(
        &[ManifestSource::Path(fixture("plain"))],
        &ctx,
        &Tools::default(),
    )
    .unwrap();
    let b = load(
        &[ManifestSource::Path(fixture("plain"))],
        &ctx,
        &Tools::default(),
    )
    .unwrap();
    assert_eq!(a.to_yaml(), b.to_yaml());
}

#[test]
fn plain_file_with_a_missing_name_points_at_the_document() {
    let dir = std::env::temp_dir().join(format!("berth-render-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.yaml");
    std::fs::write(&f, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\n# no name\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n").unwrap();
    let e = load_path(&f, &RenderContext::default()).unwrap_err();
    assert!(
        matches!(e, RenderError::Object(ObjectError::NotAnObject { .. })),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(&format!(
            "{}:7: not a Kubernetes object: `metadata.name` is missing",
            f.display()
        )),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plain_directory_refuses_a_nested_kustomization() {
    let e = load_path(&fixture("kustomize"), &RenderContext::default()).unwrap_err();
    assert!(
        matches!(
            e,
            RenderError::NestedToolDir {
                tool: "kustomize",
                ..
            }
        ),
        "{e}"
    );
}

/// Scenario 4: one generic Deployment + Service template rendered per service, one Ingress.
#[test]
fn template_per_service() {
    let values = RenderContext::from_values(
        &[
            fixture("template/values/base.yaml"),
            fixture("template/values/dev.yaml"),
        ],
        &["port=9090".into()],
    )
    .unwrap()
    .with_env("dev", "dev");
    let services = ["home", "kids", "mens"];
    let images = ImageMap::from_pairs(
        services
            .iter()
            .map(|s| (*s, pinned(s)))
            .collect::<Vec<_>>()
            .iter()
            .map(|(s, p)| (*s, p.as_str())),
    )
    .unwrap();
    let mut set = ObjectSet::new();
    for s in services {
        // The template names the service's image by its plain name; substitution pins it.
        let ctx = values.clone().with_service(s, s);
        set.extend(load_path(&fixture("template/service.yaml.j2"), &ctx).unwrap())
            .unwrap();
    }
    set.extend(load_path(&fixture("template/ingress.yaml.j2"), &values).unwrap())
        .unwrap();
    let rewrites = set.substitute_images(&images);
    assert_eq!(rewrites.len(), 3);
    set.apply_ownership(&owner()).unwrap();
    insta::assert_snapshot!("template_phases", phases(&set));
    insta::assert_snapshot!("template", set.to_yaml());
}

#[test]
fn template_undefined_value_is_an_error_with_file_and_line() {
    // `image` and `service` are not set: the first undefined one is reported.
    let ctx = RenderContext::from_values(&[fixture("template/values/base.yaml")], &[]).unwrap();
    let e = load_path(&fixture("template/service.yaml.j2"), &ctx).unwrap_err();
    let RenderError::Template { file, line, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(file, &fixture("template/service.yaml.j2"));
    assert_eq!(*line, Some(4), "{e}");
    assert!(e.to_string().contains("`service` is undefined"), "{e}");
}

#[test]
fn template_rendering_the_same_service_twice_is_a_duplicate() {
    let ctx = RenderContext::from_values(&[fixture("template/values/base.yaml")], &[])
        .unwrap()
        .with_env("dev", "dev")
        .with_service("home", "home");
    let mut set = ObjectSet::new();
    set.extend(load_path(&fixture("template/service.yaml.j2"), &ctx).unwrap())
        .unwrap();
    let e = set
        .extend(load_path(&fixture("template/service.yaml.j2"), &ctx).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("Deployment.apps home is defined twice"),
        "{e}"
    );
}

#[test]
fn kustomize_base_and_overlay() {
    let tools = with_kustomize();
    let ctx = RenderContext::default()
        .with_images(ImageMap::from_pairs([("web", pinned("web").as_str())]).unwrap());
    let base = render(
        &[ManifestSource::Kustomize(fixture("kustomize/base"))],
        &ctx,
        &tools,
        &owner(),
    )
    .unwrap();
    insta::assert_snapshot!("kustomize_base", base.objects.to_yaml());
    let dev = render(
        &[ManifestSource::Kustomize(fixture("kustomize/overlays/dev"))],
        &ctx,
        &tools,
        &owner(),
    )
    .unwrap();
    assert_eq!(dev.image_rewrites.len(), 1);
    insta::assert_snapshot!("kustomize_overlay_dev", dev.objects.to_yaml());
}

#[test]
fn kustomize_failure_carries_stderr() {
    let e = load(
        &[ManifestSource::Kustomize(fixture("kustomize/broken"))],
        &RenderContext::default(),
        &with_kustomize(),
    )
    .unwrap_err();
    let RenderError::ToolFailed {
        command, stderr, ..
    } = &e
    else {
        panic!("{e}")
    };
    assert!(
        command.ends_with(
            "build --load-restrictor=LoadRestrictionsRootOnly -- tests/fixtures/kustomize/broken"
        ),
        "{command}"
    );
    assert!(stderr.contains("missing.yaml"), "{stderr}");
}

#[test]
fn helm_chart() {
    let tools = with_helm();
    let chart = HelmChart {
        release: "shop".into(),
        chart: fixture("helm/web").display().to_string(),
        namespace: "dev".into(),
        values_files: vec![fixture("helm/dev-values.yaml")],
        set: vec!["image.tag=v2".into()],
        ..HelmChart::default()
    };
    let ctx = RenderContext::default()
        .with_images(ImageMap::from_pairs([("web", pinned("web").as_str())]).unwrap());
    let out = render(&[ManifestSource::Helm(chart)], &ctx, &tools, &owner()).unwrap();
    assert_eq!(out.image_rewrites.len(), 1);
    let deployment = out
        .objects
        .iter()
        .find(|o| o.key().kind == "Deployment")
        .unwrap();
    assert_eq!(deployment.value()["spec"]["replicas"], json!(3));
    assert!(
        deployment
            .source()
            .origin
            .ends_with("(web/templates/deployment.yaml)"),
        "{}",
        deployment.source()
    );
    assert!(
        out.objects.iter().all(|o| o.key().kind != "Pod"),
        "helm test pods are not deployed"
    );
    insta::assert_snapshot!("helm_phases", phases(&out.objects));
    insta::assert_snapshot!("helm", out.objects.to_yaml());
}

#[test]
fn helm_failure_carries_stderr() {
    let chart = HelmChart {
        release: "shop".into(),
        chart: fixture("helm/nonexistent").display().to_string(),
        namespace: "dev".into(),
        ..HelmChart::default()
    };
    let e = load(
        &[ManifestSource::Helm(chart)],
        &RenderContext::default(),
        &with_helm(),
    )
    .unwrap_err();
    assert!(matches!(e, RenderError::ToolFailed { .. }), "{e}");
    assert!(e.to_string().contains("nonexistent"), "{e}");
}

/// `release: "--post-renderer=<script>"` reached `helm template` as a flag and ran the script
/// on the host. The release now follows `--`, so helm sees a (bad) release name and nothing runs.
#[test]
fn helm_release_starting_with_dash_cannot_inject_a_post_renderer() {
    let dir = std::env::temp_dir().join(format!("berth-render-inject-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("marker");
    let script = dir.join("post.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\ncat\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chart = HelmChart {
        release: format!("--post-renderer={}", script.display()),
        chart: fixture("helm/web").display().to_string(),
        namespace: "dev".into(),
        values_files: vec![fixture("helm/dev-values.yaml")],
        ..HelmChart::default()
    };
    let result = load(
        &[ManifestSource::Helm(chart)],
        &RenderContext::default(),
        &with_helm(),
    );
    let injected = marker.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!injected, "the post-renderer ran: {result:?}");
    assert!(
        result.is_err(),
        "helm must refuse the release name: {result:?}"
    );
}

/// A repository and a directory outside it holding what an attacker wants rendered: a
/// kustomization, a secret-looking ConfigMap and a values file.
struct Escape {
    _repo: tempfile::TempDir,
    outside: tempfile::TempDir,
    root: PathBuf,
}

const OUTSIDE_CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\ndata:\n  kubeconfig: SECRET-OUTSIDE\n";

impl Escape {
    fn new() -> Escape {
        let outside = tempfile::tempdir().unwrap();
        let o = outside.path();
        std::fs::write(o.join("stolen.yaml"), OUTSIDE_CM).unwrap();
        std::fs::write(o.join("kustomization.yaml"), "resources: [stolen.yaml]\n").unwrap();
        std::fs::write(o.join("values.yaml"), "greeting: SECRET-OUTSIDE\n").unwrap();
        std::fs::write(o.join("secret.txt"), "SECRET-OUTSIDE").unwrap();
        std::fs::create_dir(o.join("plain")).unwrap();
        std::fs::write(o.join("plain/stolen.yaml"), OUTSIDE_CM).unwrap();
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().canonicalize().unwrap();
        Escape {
            _repo: repo,
            outside,
            root,
        }
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn link(&self, rel: &str, target: &Path) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    fn ctx(&self) -> RenderContext {
        RenderContext::default().with_root(&self.root)
    }

    /// A chart `chart/` with one ConfigMap template showing `.Values.greeting`.
    fn chart(&self) -> HelmChart {
        self.write(
            "chart/Chart.yaml",
            "apiVersion: v2\nname: c\nversion: 0.1.0\n",
        );
        self.write(
            "chart/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  g: {{ .Values.greeting | quote }}\n",
        );
        HelmChart {
            release: "shop".into(),
            chart: self.root.join("chart").display().to_string(),
            namespace: "dev".into(),
            ..HelmChart::default()
        }
    }
}

/// The error must name the offending path and say it leaves the repository; nothing from
/// outside may be rendered.
fn assert_refused(result: Result<ObjectSet, RenderError>, names: &str) {
    match result {
        Ok(set) => panic!(
            "rendered what lies outside the repository:\n{}",
            set.to_yaml()
        ),
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("leads outside the repository") && e.contains(names),
                "{e}"
            );
            assert!(!e.contains("SECRET-OUTSIDE"), "{e}");
        }
    }
}

#[test]
fn a_link_in_a_manifests_dir_to_a_file_outside_the_repository_is_not_rendered() {
    let x = Escape::new();
    x.write("k8s/ok.yaml", &OUTSIDE_CM.replace("stolen", "ok"));
    x.link(
        "k8s/sub/kubeconfig.yaml",
        &x.outside.path().join("stolen.yaml"),
    );
    let r = load(
        &[ManifestSource::Path(x.root.join("k8s"))],
        &x.ctx(),
        &Tools::default(),
    );
    assert_refused(r, "k8s/sub/kubeconfig.yaml");
}

#[test]
fn a_linked_directory_in_a_manifests_dir_leading_outside_is_not_rendered() {
    let x = Escape::new();
    x.write("k8s/ok.yaml", &OUTSIDE_CM.replace("stolen", "ok"));
    x.link("k8s/host", &x.outside.path().join("plain"));
    let r = load(
        &[ManifestSource::Path(x.root.join("k8s"))],
        &x.ctx(),
        &Tools::default(),
    );
    assert_refused(r, "k8s/host");
}

#[test]
fn a_template_including_a_link_outside_the_repository_is_not_rendered() {
    let x = Escape::new();
    x.write(
        "k8s/cm.yaml.j2",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\ndata:\n  x: \"{% include 'part.j2' %}\"\n",
    );
    x.link("part.j2", &x.outside.path().join("secret.txt"));
    // The template itself is a file at the repository root: its directory holds the link.
    std::fs::rename(x.root.join("k8s/cm.yaml.j2"), x.root.join("cm.yaml.j2")).unwrap();
    let r = load(
        &[ManifestSource::Path(x.root.join("cm.yaml.j2"))],
        &x.ctx(),
        &Tools::default(),
    );
    assert_refused(r, "part.j2");
}

#[test]
fn kustomize_resources_outside_the_repository_are_not_rendered() {
    let x = Escape::new();
    let up = x.outside.path().display().to_string();
    x.write(
        "deploy/overlay/kustomization.yaml",
        &format!("resources:\n- ../base\n- {up}\n"),
    );
    x.write("deploy/base/kustomization.yaml", "resources: [cm.yaml]\n");
    x.write("deploy/base/cm.yaml", &OUTSIDE_CM.replace("stolen", "ok"));
    let r = load(
        &[ManifestSource::Kustomize(x.root.join("deploy/overlay"))],
        &x.ctx(),
        &with_kustomize(),
    );
    assert_refused(r, "resources entry");
}

#[test]
fn kustomize_dot_dot_resources_leaving_the_repository_are_not_rendered() {
    let x = Escape::new();
    // `../../..` from deploy/overlay: a relative reference climbing out of the repository.
    let rel = pathdiff(x.outside.path(), &x.root.join("deploy/overlay"));
    x.write(
        "deploy/overlay/kustomization.yaml",
        &format!("resources:\n- {rel}\n"),
    );
    let r = load(
        &[ManifestSource::Kustomize(x.root.join("deploy/overlay"))],
        &x.ctx(),
        &with_kustomize(),
    );
    assert_refused(r, &format!("resources entry `{rel}`"));
}

#[test]
fn a_link_in_a_kustomize_dir_to_a_file_outside_the_repository_is_not_rendered() {
    let x = Escape::new();
    x.write("deploy/kustomization.yaml", "resources: [cm.yaml]\n");
    x.link("deploy/cm.yaml", &x.outside.path().join("stolen.yaml"));
    let r = load(
        &[ManifestSource::Kustomize(x.root.join("deploy"))],
        &x.ctx(),
        &with_kustomize(),
    );
    assert_refused(r, "deploy/cm.yaml");
}

#[test]
fn kustomize_bases_inside_the_repository_still_render() {
    let x = Escape::new();
    x.write(
        "deploy/overlay/kustomization.yaml",
        "resources: [../base, ../linked]\n",
    );
    x.write("deploy/base/kustomization.yaml", "resources: [cm.yaml]\n");
    x.write("deploy/base/cm.yaml", &OUTSIDE_CM.replace("stolen", "ok"));
    x.write("other/kustomization.yaml", "resources: [cm.yaml]\n");
    x.write("other/cm.yaml", &OUTSIDE_CM.replace("stolen", "other"));
    x.link("deploy/linked", Path::new("../other"));
    let set = load(
        &[ManifestSource::Kustomize(x.root.join("deploy/overlay"))],
        &x.ctx(),
        &with_kustomize(),
    )
    .unwrap();
    let names: Vec<String> = set.iter().map(|o| o.key().name.clone()).collect();
    assert_eq!(names, ["ok", "other"]);
}

#[test]
fn a_helm_chart_with_a_template_linked_outside_the_repository_is_not_rendered() {
    let x = Escape::new();
    let chart = x.chart();
    x.link(
        "chart/templates/stolen.yaml",
        &x.outside.path().join("stolen.yaml"),
    );
    let r = load(&[ManifestSource::Helm(chart)], &x.ctx(), &with_helm());
    assert_refused(r, "chart/templates/stolen.yaml");
}

#[test]
fn a_helm_values_file_linked_outside_the_repository_is_not_rendered() {
    let x = Escape::new();
    let mut chart = x.chart();
    x.link("values.yaml", &x.outside.path().join("values.yaml"));
    chart.values_files = vec![x.root.join("values.yaml")];
    let r = load(&[ManifestSource::Helm(chart)], &x.ctx(), &with_helm());
    assert_refused(r, "values.yaml");
}

#[test]
fn a_helm_chart_inside_the_repository_still_renders() {
    let x = Escape::new();
    let mut chart = x.chart();
    x.write("values/dev.yaml", "greeting: hello\n");
    x.link("chart/dev.yaml", Path::new("../values/dev.yaml"));
    chart.values_files = vec![x.root.join("chart/dev.yaml")];
    let set = load(&[ManifestSource::Helm(chart)], &x.ctx(), &with_helm()).unwrap();
    assert!(set.to_yaml().contains("g: hello"), "{}", set.to_yaml());
}

/// `to` relative to `from` (both absolute, canonical): `../../x`.
fn pathdiff(to: &Path, from: &Path) -> String {
    let to: Vec<_> = to.components().collect();
    let from: Vec<_> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// A `file://` "remote" base made kustomize `git fetch` a repository on the server's disk
/// (another project's mirror, say) into the render; kustomize now runs with
/// `GIT_ALLOW_PROTOCOL=https:ssh`.
#[test]
fn kustomize_file_url_base_cannot_read_a_repository_on_the_host() {
    let x = Escape::new();
    let other = x.outside.path().join("other-repo");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cm.yaml"), OUTSIDE_CM).unwrap();
    std::fs::write(other.join("kustomization.yaml"), "resources: [cm.yaml]\n").unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&other)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "other project"]);
    x.write(
        "deploy/kustomization.yaml",
        &format!("resources:\n- file://{}\n", other.display()),
    );
    let r = load(
        &[ManifestSource::Kustomize(x.root.join("deploy"))],
        &x.ctx(),
        &with_kustomize(),
    );
    match r {
        Ok(set) => panic!("rendered another repository:\n{}", set.to_yaml()),
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("transport 'file' not allowed"), "{e}");
        }
    }
}
