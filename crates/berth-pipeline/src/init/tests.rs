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

#[test]
fn a_folder_of_dockerfiles_copying_dot_is_not_the_context() {
    // `COPY . /app` resolves anywhere; a folder holding nothing but Dockerfiles is not what
    // the image is made of.
    let d = tree(&[
        ("docker/Dockerfile", "FROM busybox\nCOPY . /app\n"),
        ("docker/.dockerignore", "*.md\n"),
        ("index.html", "hi\n"),
    ]);
    let (ctx, why, comment) = scan::real_context(d.path(), &d.path().join("docker/Dockerfile"));
    assert_eq!(ctx, ".", "{why}");
    assert!(why.contains("nothing but Dockerfiles"), "{why}");
    assert!(comment.is_none());
    // Sources that exist nowhere: the folder, and a comment saying so.
    let d = tree(&[("api/Dockerfile", "FROM busybox\nCOPY missing/ /app/\n")]);
    let (ctx, _, comment) = scan::real_context(d.path(), &d.path().join("api/Dockerfile"));
    assert_eq!(ctx, "api");
    assert!(
        comment.unwrap().contains("missing"),
        "a comment names the source"
    );
    // `COPY --from=` and variables are not context sources.
    let d = tree(&[
        (
            "svc/Dockerfile",
            "FROM busybox AS b\nRUN true\nFROM busybox\nCOPY --from=b /bin /bin\nCOPY $SRC /x\nCOPY app.txt /\n",
        ),
        ("svc/app.txt", "x"),
    ]);
    let (ctx, why, comment) = scan::real_context(d.path(), &d.path().join("svc/Dockerfile"));
    assert_eq!((ctx.as_str(), comment), ("svc", None), "{why}");
}

#[test]
fn jinja_variables_exclude_loop_targets_and_filters() {
    let d = tree(&[
        ("web/Dockerfile", "FROM busybox\n"),
        (
            "k8s/web/deploy.yml",
            "apiVersion: v1\nkind: ConfigMap\ndata:\n  name: {{ app_name | lower }}\n{% for p in ports %}  p{{ p }}: {{ loop.index }}\n{% endfor %}  i: \"{{ image_ref }}\"\n",
        ),
    ]);
    let p = plan(d.path(), "r", "dev").unwrap();
    let Some(ManifestsPlan::Template { vars, .. }) = &p.service("web").unwrap().manifests else {
        panic!("{}", p.yaml)
    };
    assert_eq!(vars.get("app_name").map(String::as_str), Some("service"));
    assert_eq!(vars.get("image_ref").map(String::as_str), Some("image"));
    assert!(
        !vars.contains_key("p") && !vars.contains_key("loop"),
        "{vars:?}"
    );
    // `ports` has no value anywhere: said, not guessed.
    assert!(
        p.yaml
            .contains("# the templates use ports and no value was found"),
        "{}",
        p.yaml
    );
}

#[test]
fn secret_looking_ansible_values_are_not_copied_into_berth_yaml() {
    let d = tree(&[
        ("web/Dockerfile", "FROM busybox\n"),
        (
            "deploy/templates/web/secret.yml",
            "apiVersion: v1\nkind: Secret\nstringData:\n  db: {{ db_password }}\n  k: {{ signing_key_vaulted }}\n  r: \"{{ replicas }}\"\n",
        ),
        (
            "deploy/group_vars/all.yml",
            "db_password: hunter2-not-for-berth-yaml\nsigning_key_vaulted: \"$ANSIBLE_VAULT;1.1;AES256\\n6162\"\nreplicas: 2\n",
        ),
    ]);
    let p = plan(d.path(), "r", "dev").unwrap();
    assert!(!p.yaml.contains("hunter2"), "{}", p.yaml);
    assert!(!p.yaml.contains("ANSIBLE_VAULT"), "{}", p.yaml);
    assert!(p.yaml.contains("        replicas: 2\n"), "{}", p.yaml);
    assert!(
        p.yaml
            .contains("db_password, signing_key_vaulted, whose values look like secrets"),
        "{}",
        p.yaml
    );
    let all: Vec<String> = p.choices.iter().map(|c| c.to_string()).collect();
    assert!(!all.join("\n").contains("hunter2"));
}

#[test]
fn a_build_context_outside_the_repository_is_not_read() {
    let outside = tree(&[("Dockerfile", "FROM busybox\nCOPY secret-name.txt /\n")]);
    let name = outside
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let d = tree(&[
        (
            "docker-compose.yml",
            &format!("services:\n  web:\n    build: ../{name}\n    image: team/web\n"),
        ),
        (
            "skaffold.yaml",
            &format!(
                "apiVersion: skaffold/v4beta6\nkind: Config\nbuild:\n  artifacts:\n  - image: team/api\n    context: ../{name}\n"
            ),
        ),
        ("app/Dockerfile", "FROM busybox\n"),
    ]);
    // The tempdirs are siblings: `../<name>` is the other one.
    assert_eq!(d.path().parent(), outside.path().parent());
    let p = plan(d.path(), "r", "dev").unwrap();
    assert!(
        p.service("web").is_none() && p.service("api").is_none(),
        "{}",
        p.yaml
    );
    assert!(!p.yaml.contains("secret-name"), "{}", p.yaml);
    assert!(p.yaml.contains("outside the repository"), "{}", p.yaml);
}

#[test]
fn skaffold_multi_document_files_and_v2_artifact_overrides_are_read() {
    let d = tree(&[
        (
            "skaffold.yaml",
            "apiVersion: skaffold/v2beta18\nkind: Config\nmetadata: {name: app}\nbuild:\n  artifacts:\n  - image: web\n    context: web\ndeploy:\n  helm:\n    releases:\n    - name: web-release\n      chartPath: ./charts/web\n      artifactOverrides:\n        image: web\n---\napiVersion: skaffold/v2beta18\nkind: Config\nmetadata: {name: load}\nrequires: [{configs: [app]}]\nbuild:\n  artifacts:\n  - image: loadgen\n    context: loadgen\ndeploy:\n  kubectl:\n    manifests: [./k8s/**.yaml]\n",
        ),
        ("web/Dockerfile", "FROM busybox\n"),
        ("loadgen/Dockerfile", "FROM busybox\n"),
        (
            "charts/web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 1.0.0\n",
        ),
        ("charts/web/values.yaml", "image: web:latest\n"),
        (
            "k8s/sub/loadgen.yaml",
            &format!("{DEPLOY}      - image: loadgen\n"),
        ),
    ]);
    let p = plan(d.path(), "r", "dev").unwrap();
    let Some(ManifestsPlan::Helm(h)) = &p.service("web").unwrap().manifests else {
        panic!("{}", p.yaml)
    };
    assert_eq!(h.chart, "charts/web");
    assert_eq!(h.release.as_deref(), Some("web-release"));
    assert_eq!(
        h.image_values.get("image").map(String::as_str),
        Some("image")
    );
    // `**.yaml` reaches into sub-folders, as Skaffold's globs do.
    assert_eq!(
        p.service("loadgen").unwrap().manifests,
        Some(ManifestsPlan::Path(vec!["k8s/sub/loadgen.yaml".into()]))
    );
}

#[test]
fn compose_args_as_a_list_and_a_plain_build_string_are_read() {
    let d = tree(&[
        (
            "compose.yaml",
            "services:\n  api:\n    build:\n      context: ./api\n      args:\n        - VERSION=1.2\n        - FROM_ENV\n  web:\n    build: web\n",
        ),
        ("api/Dockerfile", "FROM busybox\n"),
        ("web/Dockerfile", "FROM busybox\n"),
    ]);
    let p = plan(d.path(), "r", "dev").unwrap();
    let api = p.service("api").unwrap().build.as_ref().unwrap();
    assert_eq!(api.context, "api");
    assert_eq!(
        api.args.iter().collect::<Vec<_>>(),
        [(&"VERSION".to_string(), &"1.2".to_string())]
    );
    assert_eq!(
        p.service("web").unwrap().build.as_ref().unwrap().context,
        "web"
    );
    // Neither names an image and no manifest exists: a comment, not a silent default.
    assert!(
        p.yaml.contains("# no manifest names an image of api"),
        "{}",
        p.yaml
    );
}
