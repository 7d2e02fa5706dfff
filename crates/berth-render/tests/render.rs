//! Snapshot tests over the fixtures in `tests/fixtures/`: plain manifests, the generic
//! per-service template of scenario 4, and (with the test environment's binaries) a Kustomize
//! base + overlay and a Helm chart.
//!
//! kustomize and helm come from berth's test environment (`$BERTH_TESTENV_BIN`, else
//! `~/.cache/berth-testenv/*/bin/`). A test that needs one and cannot find it fails: it is
//! never skipped silently.

use std::path::{Path, PathBuf};

use berth_render::{
    HelmChart, ImageMap, ManifestSource, ObjectSet, Ownership, RenderContext, RenderError, Tools,
    deploy_order, load, load_path, render,
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
    insta::assert_snapshot!("plain_redacted", out.objects.redacted().to_yaml());
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
    assert!(matches!(e, RenderError::NotAnObject { .. }), "{e}");
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
        command.ends_with("build -- tests/fixtures/kustomize/broken"),
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
