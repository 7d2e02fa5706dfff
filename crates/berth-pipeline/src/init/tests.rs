//! Unit tests of the planner on small trees; the realistic layouts are in
//! `tests/layouts/` (`tests/init_layouts.rs`).

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

const DEPLOY: &str =
    "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n";

#[test]
fn dockerfiles_and_their_manifests_become_services() {
    let d = tree(&[
        ("web/Dockerfile", "FROM busybox\n"),
        ("api/Dockerfile", "FROM busybox\n"),
        (
            "api/k8s/deploy.yaml",
            &format!("{DEPLOY}      - image: reg.example/team/api:1.0\n"),
        ),
        (
            "k8s/web.yaml",
            &format!("{DEPLOY}      - image: \"reg.example/team/web\"\n"),
        ),
    ]);
    let plan = plan(d.path(), "reg.example/default", "shop-dev").unwrap();
    assert!(plan.yaml.contains("  - name: api\n    build:\n      context: api\n    image: reg.example/team/api\n    manifests:\n      path: [api/k8s]\n"), "{}", plan.yaml);
    assert!(plan.yaml.contains("  - name: web\n    build:\n      context: web\n    image: reg.example/team/web\n    manifests:\n      path: [k8s/web.yaml]\n"), "{}", plan.yaml);
    assert!(
        plan.choices
            .iter()
            .any(|c| c.to_string().contains("already names it")),
        "{:#?}",
        plan.choices
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
            .contains("    manifests:\n      kustomize: k8s/overlays/dev\n"),
        "{}",
        plan.yaml
    );
    assert!(plan.yaml.contains("context: app"), "{}", plan.yaml);
    let k = tree(&[
        ("Dockerfile", "FROM busybox\n"),
        ("k8s/base/kustomization.yaml", "resources: []\n"),
        (
            "k8s/overlays/dev/kustomization.yaml",
            "resources: [../../base]\n",
        ),
        (
            "k8s/overlays/prod/kustomization.yaml",
            "resources: [../../base]\n",
        ),
    ]);
    let plan = plan_with(k.path());
    assert!(
        plan.yaml.contains("      kustomize: k8s/overlays/dev\n"),
        "{}",
        plan.yaml
    );
    assert!(
        plan.yaml
            .contains("# other overlays exist (k8s/overlays/prod)"),
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
        (
            "k8s/service.yaml.j2",
            "apiVersion: v1\nkind: Pod\nimage: {{ image }}\n",
        ),
        ("k8s/ingress.yaml", "apiVersion: v1\nkind: Ingress\n"),
    ]);
    let p = plan(d.path(), "reg.example/shop", "shop").unwrap();
    assert_eq!(
        p.yaml.lines().skip(2).collect::<Vec<_>>(),
        [
            "registry:",
            "  prefix: reg.example/shop",
            "services:",
            "  - discover: \"*/Dockerfile\"",
            "    manifests:",
            "      template: [k8s/service.yaml.j2]",
            "  - name: ingress",
            "    manifests:",
            "      path: [k8s/ingress.yaml]",
            "environments:",
            "  - name: dev",
            "    namespace: shop",
        ]
    );
    assert!(
        p.choices[0].reason.contains("the generic-template layout"),
        "{:?}",
        p.choices
    );
    let config = berth_config::parse(&p.yaml, "berth.yaml", d.path()).unwrap();
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["home", "kids", "mens", "ingress"]);

    // One folder with manifests of its own: not the generic layout, one entry each.
    let d = tree(&[
        ("svc/home/Dockerfile", "FROM busybox\n"),
        ("svc/kids/Dockerfile", "FROM busybox\n"),
        (
            "svc/kids/k8s/deploy.yaml",
            "apiVersion: apps/v1\nkind: Deployment\n",
        ),
        (
            "k8s/service.yaml.j2",
            "apiVersion: v1\nkind: Pod\nimage: {{ image }}\n",
        ),
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
            &format!("{DEPLOY}      - image: secret.example.com/internal/leak:1\n"),
        ),
        ("svc/Dockerfile", "FROM busybox\n"),
        ("svc/package.json", "{\"name\": \"outside\"}\n"),
    ]);
    let d = tree(&[
        ("Dockerfile", "FROM busybox\n"),
        ("k8s/app.yaml", "apiVersion: v1\nkind: ConfigMap\n"),
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
    let text: Vec<String> = plan.choices.iter().map(|c| c.to_string()).collect();
    let text = text.join("\n");
    assert!(
        !text.contains("secret.example.com") && !text.contains("service svc"),
        "{text}"
    );
}

#[test]
fn an_empty_repository_says_what_to_do() {
    let d = tree(&[("README.md", "hi")]);
    let e = plan(d.path(), "r", "dev").unwrap_err().to_string();
    assert!(e.contains("Add a Dockerfile"), "{e}");
}

#[test]
fn buildx_platforms_are_read_from_a_flag_or_its_variable() {
    use super::skaffold::buildx_platforms;
    assert_eq!(
        buildx_platforms("docker buildx build --platform linux/amd64,linux/arm64 -t $IMAGE ."),
        ["linux/amd64", "linux/arm64"]
    );
    assert_eq!(
        buildx_platforms(
            "PLATFORMS=linux/amd64,linux/arm64/v8\ndocker buildx build --platform=\"$PLATFORMS\" ."
        ),
        ["linux/amd64", "linux/arm64/v8"]
    );
    assert!(buildx_platforms("docker build .").is_empty());
}
