//! `berth init`'s planner on the layouts corpus: realistic repository layouts under
//! `tests/layouts/`, each modelled on a common public pattern (docker/awesome-compose,
//! Skaffold's examples, GoogleCloudPlatform/microservices-demo, Ansible k8s roles, Helm
//! charts). Each test asserts the choices that matter — context, dockerfile, image, manifests
//! source, the reason given, the comments written — and is named after the bug it pins where
//! one applies. The same layouts are deployed end to end by `crates/berth/tests/it/init_layouts.rs`.
//!
//! These tests read files only: no cluster, no registry, no spawned tool.

use std::path::{Path, PathBuf};

use berth_pipeline::init::{InitPlan, ManifestsPlan, ServicePlan, plan};

fn layout(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/layouts")
        .join(name)
}

fn plan_of(name: &str) -> InitPlan {
    plan(&layout(name), "127.0.0.1:15000/shop", "shop-dev")
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn service<'a>(p: &'a InitPlan, name: &str) -> &'a ServicePlan {
    p.service(name)
        .unwrap_or_else(|| panic!("no service {name} in\n{}", p.yaml))
}

/// The reasons given for `service`, one string.
fn reasons(p: &InitPlan, service: &str) -> String {
    p.choices
        .iter()
        .filter(|c| c.subject == format!("service {service}"))
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_yaml(p: &InitPlan, snippet: &str) {
    assert!(p.yaml.contains(snippet), "no\n{snippet}\nin\n{}", p.yaml);
}

fn no_choice_asks_to_change_the_manifests(p: &InitPlan) {
    let all: Vec<String> = p.choices.iter().map(|c| c.to_string()).collect();
    assert!(
        !all.iter().any(|c| c.contains("make the manifests use")),
        "{all:#?}"
    );
}

#[test]
fn compose_context_and_dockerfile_win_over_the_dockerfile_s_folder() {
    // The bug: init took `docker/` as the build context of docker/Dockerfile, which copies
    // `src/` from the repository root, although docker-compose.yml said `context: .`.
    let p = plan_of("compose-k8s");
    let web = service(&p, "web");
    let b = web.build.as_ref().unwrap();
    assert_eq!(b.context, ".");
    assert_eq!(b.dockerfile.as_deref(), Some("docker/Dockerfile"));
    assert_eq!(b.target.as_deref(), Some("prod"));
    assert_eq!(
        b.args.get("APP_ENV").map(String::as_str),
        Some("production")
    );
    assert_eq!(web.image.as_deref(), Some("team/web"));
    assert_yaml(
        &p,
        "  - name: web\n    build:\n      context: .\n      dockerfile: docker/Dockerfile\n      target: prod\n      args:\n        APP_ENV: \"production\"\n    image: team/web\n",
    );
    assert_eq!(
        web.manifests,
        Some(ManifestsPlan::Path(vec!["k8s/web.yaml".into()]))
    );
    // The ConfigMap names no image: a manifests-only service, not the first service's.
    let config = service(&p, "config");
    assert!(config.build.is_none() && config.image.is_none());
    let r = reasons(&p, "web");
    assert!(r.contains("docker-compose.yml: build.context ."), "{r}");
    assert!(r.contains("k8s/web.yaml already uses it"), "{r}");
    assert!(r.contains("ports 8080:8080"), "{r}");
    // Only what the Dockerfile copies belongs to the service.
    assert_eq!(web.paths, ["docker/Dockerfile", "src"]);
    // compose's redis is not built: said so, not made a service.
    assert!(p.service("cache").is_none(), "{}", p.yaml);
    assert!(
        p.choices
            .iter()
            .any(|c| c.subject == "compose service cache" && c.reason.contains("without building")),
        "{:#?}",
        p.choices
    );
    no_choice_asks_to_change_the_manifests(&p);
}

#[test]
fn dockerfile_under_docker_copying_src_from_the_root_is_built_from_the_root() {
    let p = plan_of("docker-context-root");
    assert_eq!(p.services.len(), 1, "{}", p.yaml);
    let s = &p.services[0];
    let b = s.build.as_ref().unwrap();
    assert_eq!(b.context, ".", "{}", p.yaml);
    assert_eq!(b.dockerfile.as_deref(), Some("docker/Dockerfile"));
    assert_yaml(
        &p,
        "      context: .\n      dockerfile: docker/Dockerfile\n",
    );
    let r = reasons(&p, &s.name);
    assert!(r.contains("exist only from ./ (not from docker/)"), "{r}");
    // The manifests name the image acme/api: that is its image, as written (no registry host).
    assert_eq!(s.image.as_deref(), Some("acme/api"));
    assert_yaml(&p, "    image: acme/api\n");
    assert_eq!(s.paths, ["config/site.conf", "docker/Dockerfile", "src"]);
}

#[test]
fn skaffold_v2_deploy_kustomize_paths_are_not_ignored() {
    let p = plan_of("skaffold-kustomize");
    let web = service(&p, "web");
    assert_eq!(
        web.manifests,
        Some(ManifestsPlan::Kustomize("k8s/overlays/staging".into()))
    );
    assert_yaml(
        &p,
        "    manifests:\n      kustomize: k8s/overlays/staging\n",
    );
    assert!(
        reasons(&p, "web").contains("skaffold.yaml's kustomize paths"),
        "{}",
        reasons(&p, "web")
    );
    // The prod profile's overlay is not silently dropped: a comment says what init read.
    assert_yaml(&p, "# skaffold.yaml has profiles (prod)");
}

#[test]
fn image_named_by_the_manifests_under_the_skaffold_name_is_not_asked_to_change() {
    // The bug: init said "make the manifests use this name" although the manifests already
    // used the Skaffold artifact's name, team/web.
    let p = plan_of("skaffold-kustomize");
    let web = service(&p, "web");
    assert_eq!(web.image.as_deref(), Some("team/web"));
    assert_yaml(&p, "    image: team/web\n");
    let r = reasons(&p, "web");
    assert!(
        r.contains(
            "skaffold.yaml's artifact name, and kustomize k8s/overlays/staging already uses it"
        ),
        "{r}"
    );
    no_choice_asks_to_change_the_manifests(&p);
    for s in &p.services {
        assert!(s.comments.is_empty(), "{}: {:?}", s.name, s.comments);
    }
    // microservices-demo keeps them in kubernetes-manifests/, a folder name init did not
    // look in: each artifact's name is still the one its manifest uses.
    let p = plan_of("microservices-kubectl");
    for name in ["frontend", "cartservice"] {
        assert_eq!(service(&p, name).image.as_deref(), Some(name));
        let r = reasons(&p, name);
        assert!(
            r.contains(&format!("kubernetes-manifests/{name}.yaml already uses it")),
            "{r}"
        );
    }
    no_choice_asks_to_change_the_manifests(&p);
}

#[test]
fn skaffold_custom_buildx_platforms_become_a_comment() {
    // The bug: init ignored the custom build command's platforms; berth.yaml has no key for
    // them yet, so the written file says what Skaffold asked for.
    let p = plan_of("buildx-multiarch");
    let s = service(&p, "hello");
    let b = s.build.as_ref().unwrap();
    assert_eq!(b.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(b.context, ".");
    assert_yaml(
        &p,
        "  - name: hello\n    # skaffold asks for platforms linux/amd64, linux/arm64 (the custom build command's --platform (buildx.sh)); berth.yaml has no platforms key yet",
    );
    assert_eq!(s.image.as_deref(), Some("multiarch/hello"));
    // Skaffold's default manifests (k8s/*.yaml) without a deploy section.
    assert_eq!(
        s.manifests,
        Some(ManifestsPlan::Path(vec!["k8s/hello.yaml".into()]))
    );
}

#[test]
fn skaffold_helm_set_value_templates_become_image_values() {
    let p = plan_of("skaffold-helm");
    let api = service(&p, "api");
    let Some(ManifestsPlan::Helm(h)) = &api.manifests else {
        panic!("{}", p.yaml)
    };
    assert_eq!(h.chart, "charts/api");
    assert_eq!(h.values, ["charts/api/values-dev.yaml"]);
    assert_eq!(h.set, ["replicaCount=1"]);
    assert_eq!(
        h.image_values.get("repository").unwrap(),
        "image.repository"
    );
    assert_eq!(h.image_values.get("tag").unwrap(), "image.tag");
    assert_eq!(api.image.as_deref(), Some("team/api"));
    assert_yaml(
        &p,
        "      helm:\n        chart: charts/api\n        values: [charts/api/values-dev.yaml]\n        set: [\"replicaCount=1\"]\n        image-values: {repository: image.repository, tag: image.tag}\n",
    );
    assert!(
        reasons(&p, "api")
            .contains("setValueTemplates put the image in image.repository, image.tag"),
        "{}",
        reasons(&p, "api")
    );
    // skaffold's tag@digest template is explained, not copied.
    assert!(
        api.comments.iter().any(|c| c.contains("tag@digest")),
        "{:?}",
        api.comments
    );
}

#[test]
fn chart_with_a_composed_image_gets_image_values_for_each_part() {
    let p = plan_of("helm-chart");
    let app = service(&p, "app");
    let Some(ManifestsPlan::Helm(h)) = &app.manifests else {
        panic!("{}", p.yaml)
    };
    assert_eq!(h.chart, "chart");
    assert_eq!(
        h.image_values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        [
            "registry=image.registry",
            "repository=image.repository",
            "tag=image.tag"
        ]
    );
    // docker.io/acme/board is the chart's default: pushed under the prefix as acme/board.
    assert_eq!(app.image.as_deref(), Some("acme/board"));
    assert_yaml(
        &p,
        "        image-values: {registry: image.registry, repository: image.repository, tag: image.tag}\n",
    );
    assert!(app.comments.is_empty(), "{:?}", app.comments);
}

#[test]
fn jinja_templates_folder_is_not_plain_manifests_of_the_first_service() {
    // The bug: a folder of Jinja templates named deployment.yml was given, whole, as plain
    // manifests to the first service.
    let p = plan_of("ansible-jinja");
    for name in ["web", "worker"] {
        let s = service(&p, name);
        let Some(ManifestsPlan::Template {
            globs,
            vars,
            values,
        }) = &s.manifests
        else {
            panic!("{name}: {}", p.yaml)
        };
        assert_eq!(globs, &["deploy/templates/{service}/*.yml"]);
        assert_eq!(
            vars.get("service_name").map(String::as_str),
            Some("service")
        );
        assert_eq!(vars.get("image_id").map(String::as_str), Some("image"));
        // Values from the Ansible group_vars, for the names berth does not provide.
        assert_eq!(values.get("replicas"), Some(&serde_json::json!(1)));
        assert_eq!(values.get("team"), Some(&serde_json::json!("shop")));
        assert_eq!(values.get("expose"), Some(&serde_json::json!(true)));
        assert!(s.image.is_none(), "the template renders {{{{ image_id }}}}");
        assert!(
            reasons(&p, name).contains("holds Jinja markers"),
            "{}",
            reasons(&p, name)
        );
    }
    assert!(!p.yaml.contains("path: [deploy"), "{}", p.yaml);
    assert_yaml(
        &p,
        "      template: [\"deploy/templates/{service}/*.yml\"]\n      vars: {image_id: image, service_name: service}\n",
    );
}

#[test]
fn monorepo_services_build_from_the_root_with_their_own_paths() {
    let p = plan_of("monorepo");
    for name in ["api", "worker"] {
        let s = service(&p, name);
        let b = s.build.as_ref().unwrap();
        assert_eq!(b.context, ".");
        assert_eq!(
            b.dockerfile.as_deref(),
            Some(format!("services/{name}/Dockerfile").as_str())
        );
        assert_eq!(s.image.as_deref(), Some(format!("mono/{name}").as_str()));
        // A change to the shared lib rebuilds both, a change to one service only it.
        assert_eq!(s.paths, ["lib".to_string(), format!("services/{name}")]);
        assert_eq!(
            s.manifests,
            Some(ManifestsPlan::Path(vec![format!("k8s/{name}.yaml")]))
        );
    }
}

#[test]
fn procfile_app_without_a_dockerfile_is_detected_and_keeps_the_manifests_name() {
    let p = plan_of("procfile");
    assert_eq!(p.services.len(), 1, "{}", p.yaml);
    let s = &p.services[0];
    let b = s.build.as_ref().unwrap();
    assert_eq!(b.context, ".");
    assert_eq!(b.dockerfile, None);
    let r = reasons(&p, &s.name);
    assert!(
        r.contains("detected python") && r.contains("python3 app.py"),
        "{r}"
    );
    assert_eq!(s.image.as_deref(), Some("shop-app"));
    assert_eq!(
        s.manifests,
        Some(ManifestsPlan::Path(vec!["k8s/app.yaml".into()]))
    );
}

#[test]
fn kustomize_images_transformer_new_name_is_the_image_pinned() {
    // The base names `frontend`; the overlay's images: entry renames it: the rendered objects
    // say acme/shop-frontend, so that is the name berth must pin.
    let p = plan_of("kustomize-images");
    let s = &p.services[0];
    assert_eq!(
        s.manifests,
        Some(ManifestsPlan::Kustomize("k8s/overlays/dev".into()))
    );
    assert_eq!(s.image.as_deref(), Some("acme/shop-frontend"));
    let r = reasons(&p, &s.name);
    assert!(
        r.contains("images: entry renames frontend to acme/shop-frontend"),
        "{r}"
    );
}

#[test]
fn skaffold_kubectl_manifests_are_split_by_the_image_each_names() {
    let p = plan_of("microservices-kubectl");
    assert_eq!(
        service(&p, "frontend").manifests,
        Some(ManifestsPlan::Path(vec![
            "kubernetes-manifests/frontend.yaml".into()
        ]))
    );
    let cart = service(&p, "cartservice");
    assert_eq!(
        cart.manifests,
        Some(ManifestsPlan::Path(vec![
            "kubernetes-manifests/cartservice.yaml".into()
        ]))
    );
    assert_eq!(cart.image.as_deref(), Some("cartservice"));
    // A templated build arg is a comment, never copied as a literal.
    let b = cart.build.as_ref().unwrap();
    assert_eq!(b.args.get("CART_STORE").map(String::as_str), Some("redis"));
    assert!(!b.args.contains_key("BUILD_TOKEN"));
    assert!(
        cart.comments.iter().any(|c| c.contains("BUILD_TOKEN")),
        "{:?}",
        cart.comments
    );
    // redis is not built: its manifest is a manifests-only service.
    let redis = service(&p, "redis");
    assert!(redis.build.is_none());
    assert_eq!(
        redis.manifests,
        Some(ManifestsPlan::Path(vec![
            "kubernetes-manifests/redis.yaml".into()
        ]))
    );
    no_choice_asks_to_change_the_manifests(&p);
}

/// Every layout of the corpus: the berth.yaml `berth init` writes for it validates.
const VALIDATED_HERE: &[&str] = &[
    "compose-k8s",
    "docker-context-root",
    "skaffold-kustomize",
    "skaffold-helm",
    "helm-chart",
    "ansible-jinja",
    "monorepo",
    "procfile",
    "kustomize-images",
    "buildx-multiarch",
    "microservices-kubectl",
];

#[test]
fn written_berth_yaml_is_valid_for_every_layout() {
    for name in VALIDATED_HERE {
        let p = plan_of(name);
        if let Err(e) = berth_config::parse(&p.yaml, "berth.yaml", &layout(name)) {
            panic!("{name}:\n{}\n{e}", p.yaml);
        }
    }
}

#[test]
fn the_corpus_has_every_layout_of_the_issue() {
    let mut found: Vec<String> = std::fs::read_dir(layout(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "ansible-jinja",
            "buildx-multiarch",
            "compose-k8s",
            "docker-context-root",
            "helm-chart",
            "kustomize-images",
            "microservices-kubectl",
            "monorepo",
            "procfile",
            "skaffold-helm",
            "skaffold-kustomize",
        ]
    );
    // Every layout plans without error and every built service has manifests.
    for name in &found {
        let p = plan_of(name);
        for s in &p.services {
            assert!(
                s.manifests.is_some(),
                "{name}: {} has no manifests\n{}",
                s.name,
                p.yaml
            );
        }
    }
}
