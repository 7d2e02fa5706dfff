//! `berth init` then `berth run` on the layouts corpus (`crates/berth-pipeline/tests/layouts/`:
//! compose, Skaffold v2/v4 with Kustomize, Helm and custom buildx builders, charts with a
//! composed image, Ansible-style Jinja folders, a monorepo, a Procfile app, a kustomize
//! `images:` transformer). Each layout is copied into a fresh git repository, `berth init`
//! writes its berth.yaml (nothing edited by hand), `berth run` deploys it into the test's
//! namespace, and every container of the deployed objects whose image berth built must carry
//! the pushed digest: the image the manifests name under their own name is pinned, never left
//! to the stale tag.

use std::path::{Path, PathBuf};
use std::process::Output;

use berth_testkit::TestContext;

use crate::common::{Run, berth, copy_dir, git_init};

/// A layout in a temporary git repository (its folder keeps the layout's name, so that init
/// names services the same way as on the source tree), with its own build store.
struct Layout {
    parent: PathBuf,
    dir: PathBuf,
    store: PathBuf,
}

impl Drop for Layout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.parent);
    }
}

impl Layout {
    fn new(name: &str) -> Layout {
        let parent =
            std::env::temp_dir().join(format!("berth-layout-{}", berth_testkit::unique_suffix()));
        let dir = parent.join(name);
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../berth-pipeline/tests/layouts")
            .join(name);
        copy_dir(&source, &dir);
        git_init(&dir, "main");
        Layout {
            store: parent.join("store"),
            parent,
            dir,
        }
    }

    fn berth(&self, ctx: &TestContext, args: &[&str]) -> Output {
        berth(ctx.env)
            .args(args)
            .env("BERTH_STORE", &self.store)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }

    /// `berth init` with the test's repository and namespace; returns the file it wrote.
    fn init(&self, ctx: &TestContext) -> String {
        let out = self.berth(
            ctx,
            &[
                "init",
                ".",
                "--registry",
                &ctx.repository,
                "-n",
                &ctx.namespace,
            ],
        );
        let written = std::fs::read_to_string(self.dir.join("berth.yaml")).unwrap_or_default();
        assert!(
            out.status.success(),
            "berth init failed:\n{}\n--- berth.yaml:\n{written}",
            String::from_utf8_lossy(&out.stderr)
        );
        written
    }

    fn run(&self, ctx: &TestContext) -> Run {
        Run::of(&self.berth(ctx, &["run", "-o", "json", "-n", &ctx.namespace]))
    }
}

/// Every container image of the namespace's workloads: `(object, image)`.
async fn deployed_images(ctx: &TestContext) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (api, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
    ] {
        for o in ctx
            .cluster
            .list(api, kind, &ctx.namespace, None)
            .await
            .unwrap()
        {
            let name = format!("{kind}/{}", o["metadata"]["name"].as_str().unwrap_or(""));
            let spec = &o["spec"]["template"]["spec"];
            for key in ["initContainers", "containers"] {
                for c in spec[key].as_array().into_iter().flatten() {
                    if let Some(i) = c["image"].as_str() {
                        out.push((name.clone(), i.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// `berth init` + `berth run` on `layout`, then: every service berth built is deployed by its
/// digest, and no deployed container names a built repository without one.
async fn layout_deploys_pinned(layout: &str, test: &str, expect_built: &[&str]) {
    let ctx = TestContext::new(test).await;
    let l = Layout::new(layout);
    let written = l.init(&ctx);
    let run = l.run(&ctx);
    assert!(run.ok, "{run}\n--- berth.yaml:\n{written}");
    assert_eq!(run.result["result"], "ok", "{run}");
    let mut built = run.built();
    built.sort();
    let mut expected: Vec<String> = expect_built.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(built, expected, "{run}\n--- berth.yaml:\n{written}");
    let images = deployed_images(&ctx).await;
    for service in &built {
        let pinned = run.image(service);
        let (repo, digest) = pinned
            .split_once('@')
            .unwrap_or_else(|| panic!("{service}: {pinned} has no digest"));
        assert!(digest.starts_with("sha256:"), "{service}: {pinned}");
        // `repo@sha256:…`, or `repo:pinned@sha256:…` from a chart composing repository:tag
        // (the tag is ignored by the runtime; the digest is what is pulled).
        let same = |image: &str| {
            image.split_once('@').is_some_and(|(name, d)| {
                d == digest
                    && (name == repo || name.strip_prefix(repo).is_some_and(|t| t.starts_with(':')))
            })
        };
        assert!(
            images.iter().any(|(_, i)| same(i)),
            "{service}'s {pinned} is deployed by no object: {images:#?}\n--- berth.yaml:\n{written}"
        );
        for (object, image) in &images {
            let name = image.split('@').next().unwrap_or(image);
            let name_repo = name
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map_or(name, |(r, _)| r);
            if name_repo == repo {
                assert!(same(image), "{object}: {image} is not {service}'s {pinned}");
            }
        }
    }
    for (object, image) in &images {
        if image.starts_with(&ctx.repository) {
            assert!(
                image.contains("@sha256:"),
                "{object}: {image} is not pinned"
            );
        }
    }
}

#[tokio::test]
async fn compose_k8s_layout_deploys_pinned() {
    layout_deploys_pinned("compose-k8s", "init-compose", &["web"]).await;
}

#[tokio::test]
async fn docker_context_root_layout_deploys_pinned() {
    layout_deploys_pinned(
        "docker-context-root",
        "init-docker-root",
        &["docker-context-root"],
    )
    .await;
}

#[tokio::test]
async fn skaffold_kustomize_layout_deploys_pinned() {
    layout_deploys_pinned("skaffold-kustomize", "init-sk-kustomize", &["web"]).await;
}

#[tokio::test]
async fn skaffold_helm_layout_deploys_pinned() {
    layout_deploys_pinned("skaffold-helm", "init-sk-helm", &["api"]).await;
}

#[tokio::test]
async fn helm_chart_layout_deploys_pinned() {
    layout_deploys_pinned("helm-chart", "init-helm", &["app"]).await;
}

#[tokio::test]
async fn ansible_jinja_layout_deploys_pinned() {
    layout_deploys_pinned("ansible-jinja", "init-jinja", &["web", "worker"]).await;
}

#[tokio::test]
async fn monorepo_layout_deploys_pinned() {
    layout_deploys_pinned("monorepo", "init-monorepo", &["api", "worker"]).await;
}

#[tokio::test]
async fn procfile_layout_deploys_pinned() {
    layout_deploys_pinned("procfile", "init-procfile", &["procfile"]).await;
}

#[tokio::test]
async fn kustomize_images_layout_deploys_pinned() {
    layout_deploys_pinned("kustomize-images", "init-kimages", &["kustomize-images"]).await;
}

#[tokio::test]
async fn buildx_multiarch_layout_deploys_pinned() {
    layout_deploys_pinned("buildx-multiarch", "init-buildx", &["hello"]).await;
}

#[tokio::test]
async fn microservices_kubectl_layout_deploys_pinned() {
    layout_deploys_pinned(
        "microservices-kubectl",
        "init-microservices",
        &["cartservice", "frontend"],
    )
    .await;
}
