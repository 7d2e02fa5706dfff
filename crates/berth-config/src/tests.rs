//! Unit tests on inline YAML: one per kind of error, each pinning the exact line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Config, ConfigError, HookAction, Location, Manifests, Problem, Promotion, parse};

/// A directory with the files that the full example refers to.
fn example_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in [
        "web/Dockerfile",
        "web/k8s/app.yaml.j2",
        "k8s/app.yaml.j2",
        "k8s/smoke-job.yaml",
        "k8s/mongo.yaml",
        "k8s/mongo-service.yaml",
        "k8s/ingress.yaml",
        "api/package.json",
        "api/overlays/dev/kustomization.yaml",
        "board/index.html",
        "charts/board/Chart.yaml",
        "charts/board/values-test.yaml",
        "hooks/job.yaml",
        "certs/proxy-ca.pem",
    ] {
        let p = d.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }
    dir
}

fn ok(yaml: &str) -> Config {
    let dir = example_dir();
    parse(yaml, "berth.yaml", dir.path()).unwrap_or_else(|e| panic!("{e}"))
}

/// Every diagnostic of `yaml`, which must be refused (used by the modules' own tests too).
pub(crate) fn errors(yaml: &str) -> Vec<(Location, Problem, String)> {
    let dir = example_dir();
    match parse(yaml, "berth.yaml", dir.path()) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(ConfigError::Invalid { diagnostics }) => diagnostics
            .into_iter()
            .map(|d| (d.location, d.problem.clone(), d.to_string()))
            .collect(),
        Err(e) => panic!("unexpected {e}"),
    }
}

fn one_error(yaml: &str) -> (Location, Problem, String) {
    let mut all = errors(yaml);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

fn at(line: u32, column: u32) -> Location {
    Location::new(line, column)
}

const MINIMAL: &str = "services:\n  - name: web\n    image: registry.example.com/web\n";

#[test]
fn full_example_parses() {
    let c = ok(include_str!("../berth.example.yaml"));
    assert_eq!(
        c.registry.prefix.as_deref(),
        Some("registry.example.com/shop")
    );
    assert_eq!(c.registry.mirrors["docker.io"], "127.0.0.1:15000");
    assert_eq!(c.registry.insecure, ["127.0.0.1:5000"]);
    assert_eq!(c.deploy.timeout, Duration::from_secs(300));
    assert_eq!(c.shared, [Path::new("lib")]);
    let names: Vec<_> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "api", "board", "mongo", "ingress"]);

    let web = c.service("web").unwrap();
    let build = web.build.as_ref().unwrap();
    assert_eq!(build.context, Path::new("web"));
    assert_eq!(build.dockerfile.as_deref(), Some(Path::new("Dockerfile")));
    assert_eq!(build.target.as_deref(), Some("runtime"));
    assert_eq!(build.args["NODE_ENV"], "production");
    assert_eq!(
        web.image.as_ref().unwrap().name(),
        "registry.example.com/shop/web"
    );
    assert_eq!(
        web.test.as_ref().map(|t| t.command.as_str()),
        Some("npm test")
    );
    assert_eq!(web.paths, [Path::new("web"), Path::new("proto")]);
    match web.manifests.as_ref().unwrap() {
        Manifests::Template { paths, values, .. } => {
            assert_eq!(paths, &[Path::new("k8s/app.yaml.j2")]);
            assert_eq!(values["port"], 8080);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(web.hooks.pre_deploy[0].name, "migrate");
    assert_eq!(
        web.hooks.pre_deploy[0].action,
        HookAction::Command("npm run migrate".into())
    );
    assert_eq!(
        web.hooks.pre_deploy[0].timeout,
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        web.hooks.post_deploy[0].action,
        HookAction::Manifest("k8s/smoke-job.yaml".into())
    );
    assert_eq!(web.location, at(11, 5));

    let api = c.service("api").unwrap();
    assert_eq!(
        api.image.as_ref().unwrap().name(),
        "registry.example.com/shop/api"
    );
    assert_eq!(api.paths, [Path::new("api")]);
    assert_eq!(api.build.as_ref().unwrap().dockerfile, None);
    assert!(matches!(api.manifests, Some(Manifests::Kustomize { .. })));

    match c.service("board").unwrap().manifests.as_ref().unwrap() {
        Manifests::Helm(h) => {
            assert_eq!(h.chart, "charts/board");
            assert_eq!(h.release, "board");
            assert_eq!(h.set, ["replicaCount=2"]);
        }
        other => panic!("{other:?}"),
    }
    let mongo = c.service("mongo").unwrap();
    assert!(mongo.build.is_none());
    assert!(mongo.paths.is_empty());
    assert_eq!(
        mongo.image.as_ref().unwrap().to_string(),
        "docker.io/library/mongo:7"
    );
    let ingress = c.service("ingress").unwrap();
    assert!(ingress.build.is_none() && ingress.image.is_none());

    let test = c.environment("test").unwrap();
    assert_eq!(test.namespace, "shop-test");
    assert_eq!(test.context.as_deref(), Some("kind-dev"));
    assert_eq!(test.promotion, Promotion::Auto);
    assert_eq!(test.values["replicas"], 1);
    let prod = c.environment("prod").unwrap();
    assert_eq!(prod.promotion, Promotion::Manual);
    assert_eq!(prod.from.as_deref(), Some("test"));
    assert_eq!(prod.deploy.timeout, Duration::from_secs(600));
    assert!(prod.deploy.rollback);
    assert_eq!(prod.deploy.pull_secret.as_deref(), Some("regcred"));
    assert_eq!(test.deploy.pull_secret, None);
    let on_master: Vec<_> = c
        .environments_for_branch("master")
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(on_master, ["test"]);
}

#[test]
fn pull_secret_that_cannot_be_a_secret_name_points_at_its_line() {
    let (loc, problem, text) = one_error(
        "services:\n  - name: web\n    image: r.example/web:1\ndeploy:\n  pull-secret: Reg_Cred\n",
    );
    assert_eq!(loc, at(5, 16), "{text}");
    assert!(matches!(problem, Problem::InvalidName { .. }), "{text}");
    assert!(text.contains("Reg_Cred"), "{text}");
}

/// A cluster whose nodes pull from a private registry with credentials of their own (EKS's
/// ECR, GKE's Artifact Registry, AKS's attached ACR) needs no pull secret: berth refused its
/// deploys until it could be told so.
#[test]
fn node_credentials_say_the_nodes_pull_without_a_pull_secret() {
    let c = ok(
        "services:\n  - name: web\n    image: r.example/web:1\ndeploy:\n  node-credentials: true\n",
    );
    assert!(c.deploy.node_credentials);
    assert!(!ok(MINIMAL).deploy.node_credentials, "off by default");
}

#[test]
fn minimal_config_gets_defaults() {
    let c = ok(MINIMAL);
    assert_eq!(c.deploy, crate::DeploySettings::default());
    assert!(c.environments.is_empty());
    assert!(c.services[0].build.is_none());
}

#[test]
fn build_defaults_to_the_current_directory() {
    let c = ok("registry: {prefix: r.example.com/x}\nservices:\n  - name: web\n    build: {}\n");
    let s = &c.services[0];
    assert_eq!(s.build.as_ref().unwrap().context, Path::new("."));
    assert_eq!(s.paths, [Path::new(".")]);
    assert_eq!(s.image.as_ref().unwrap().name(), "r.example.com/x/web");
}

#[test]
fn unknown_key_suggests_the_closest() {
    let (loc, problem, text) =
        one_error("services:\n  - name: web\n    imgae: registry.example.com/web\n");
    assert_eq!(loc, at(3, 5));
    assert!(matches!(problem, Problem::UnknownKey { ref key, .. } if key == "imgae"));
    assert_eq!(
        text,
        "unknown key `imgae` at berth.yaml:3:5, did you mean `image`?"
    );
}

#[test]
fn unknown_key_without_a_close_match_lists_the_allowed_ones() {
    let (loc, _, text) = one_error(&format!("{MINIMAL}colour: blue\n"));
    assert_eq!(loc, at(4, 1));
    assert!(text.starts_with("unknown key `colour` at berth.yaml:4:1; remove it; allowed here: registry, deploy, shared, services, environments"), "{text}");
}

#[test]
fn unknown_key_in_a_nested_mapping() {
    let yaml =
        "services:\n  - name: web\n    build:\n      contxt: .\n    image: r.example.com/web\n";
    let (loc, _, text) = one_error(yaml);
    assert_eq!(loc, at(4, 7));
    assert!(text.ends_with("did you mean `context`?"), "{text}");
}

#[test]
fn unknown_value_suggests_the_closest() {
    let yaml = format!(
        "{MINIMAL}environments:\n  - name: prod\n    namespace: prod\n    promotion: manul\n"
    );
    let (loc, problem, text) = one_error(&yaml);
    assert_eq!(loc, at(7, 16));
    assert!(matches!(problem, Problem::UnknownValue { .. }));
    assert!(text.ends_with("did you mean `manual`?"), "{text}");
}

#[test]
fn missing_namespace_points_at_the_environment() {
    let yaml = format!("{MINIMAL}environments:\n  - name: prod\n    branch: main\n");
    let (loc, problem, text) = one_error(&yaml);
    assert_eq!(loc, at(5, 5));
    assert_eq!(
        problem,
        Problem::MissingKey {
            key: "namespace".into()
        }
    );
    assert!(text.contains("add `namespace:`"), "{text}");
}

#[test]
fn missing_services() {
    let (loc, problem, _) = one_error("deploy:\n  timeout: 5m\n");
    assert_eq!(loc, at(1, 1));
    assert_eq!(
        problem,
        Problem::MissingKey {
            key: "services".into()
        }
    );
}

#[test]
fn empty_file_and_empty_services() {
    let (loc, problem, _) = one_error("# nothing yet\n");
    assert_eq!((loc, problem), (at(1, 1), Problem::Empty));
    let (loc, problem, _) = one_error("services: []\n");
    assert_eq!((loc, problem), (at(1, 1), Problem::NoServices));
}

#[test]
fn wrong_type() {
    let (loc, problem, _) = one_error("services:\n  - name: [web]\n    image: x\n");
    assert_eq!(loc, at(2, 11));
    assert!(matches!(problem, Problem::WrongType { .. }), "{problem:?}");
    let (loc, problem, _) = one_error("services:\n  name: web\n");
    assert_eq!(loc, at(2, 3));
    assert!(matches!(problem, Problem::WrongType { .. }), "{problem:?}");
}

#[test]
fn parser_messages_are_reworded_for_people() {
    let (_, problem, text) = one_error("services: 3\n");
    assert_eq!(
        problem,
        Problem::WrongType {
            message: "expected a list (`- ` items)".into()
        }
    );
    assert_eq!(
        text,
        "expected a list (`- ` items) at berth.yaml:1:11; see `berth schema` for the expected shape"
    );
    let yaml = "services:\n  - name: web\n    image: x\n    manifests:\n      path: {a: 1}\n";
    let (loc, problem, _) = one_error(yaml);
    assert_eq!(loc, at(5, 13));
    assert_eq!(
        problem,
        Problem::WrongType {
            message: "expected a path or a list of paths".into()
        }
    );
    let (_, problem, _) = one_error(&format!("deploy:\n  rollback: maybe\n{MINIMAL}"));
    assert_eq!(
        problem,
        Problem::WrongType {
            message: "expected `true` or `false`".into()
        }
    );
}

#[test]
fn malformed_yaml() {
    let (loc, problem, text) = one_error("services:\n  - name: web\n   image: x\n");
    assert!(matches!(problem, Problem::Syntax { .. }), "{problem:?}");
    assert_eq!(loc.line, 3, "{text}");
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let (loc, problem, _) = one_error("services:\n  - name: web\n    name: api\n    image: x\n");
    assert_eq!(loc, at(3, 5));
    assert!(matches!(problem, Problem::Syntax { .. }));
}

#[test]
fn duplicate_service_names() {
    let yaml = "services:\n  - name: web\n    image: x\n  - name: web\n    image: y\n";
    let (loc, problem, _) = one_error(yaml);
    assert_eq!(loc, at(4, 11));
    assert_eq!(
        problem,
        Problem::Duplicate {
            what: "service",
            name: "web".into(),
            first: at(2, 11)
        }
    );
}

#[test]
fn duplicate_environment_names() {
    let yaml = format!(
        "{MINIMAL}environments:\n  - name: dev\n    namespace: a\n  - name: dev\n    namespace: b\n"
    );
    let (loc, problem, _) = one_error(&yaml);
    assert_eq!(loc, at(7, 11));
    assert!(matches!(
        problem,
        Problem::Duplicate {
            what: "environment",
            ..
        }
    ));
}

#[test]
fn invalid_names() {
    let (loc, problem, _) = one_error("services:\n  - name: Web_1\n    image: x\n");
    assert_eq!(loc, at(2, 11));
    assert!(matches!(
        problem,
        Problem::InvalidName {
            what: "service",
            ..
        }
    ));
    let yaml = format!("{MINIMAL}environments:\n  - name: dev\n    namespace: My_NS\n");
    let (loc, problem, _) = one_error(&yaml);
    assert_eq!(loc, at(6, 16));
    assert!(matches!(
        problem,
        Problem::InvalidName {
            what: "namespace",
            ..
        }
    ));
}

#[test]
fn service_with_neither_build_nor_image() {
    let (loc, problem, text) = one_error("services:\n  - name: web\n    test: make test\n");
    assert_eq!(loc, at(2, 5));
    assert_eq!(
        problem,
        Problem::NothingToDeploy {
            service: "web".into()
        }
    );
    assert!(text.contains("add `build:`"), "{text}");
}

#[test]
fn manifests_only_service_has_no_image() {
    let c = ok("services:\n  - name: ingress\n    manifests:\n      path: k8s/ingress.yaml\n");
    let s = c.service("ingress").unwrap();
    assert_eq!(s.image, None);
    assert!(s.build.is_none());
    assert!(s.paths.is_empty());
    assert!(matches!(s.manifests, Some(Manifests::Path { .. })));
}

#[test]
fn manifests_only_service_with_missing_manifests_is_reported() {
    let (loc, problem, _) =
        one_error("services:\n  - name: ingress\n    manifests:\n      path: k8s/nope.yaml\n");
    assert_eq!(loc, at(4, 13));
    assert!(
        matches!(problem, Problem::PathNotFound { key: "path", .. }),
        "{problem:?}"
    );
}

#[test]
fn built_service_without_repository() {
    let (loc, problem, _) = one_error("services:\n  - name: web\n    build: {context: web}\n");
    assert_eq!(loc, at(2, 5));
    assert_eq!(
        problem,
        Problem::NoRepository {
            service: "web".into()
        }
    );
}

#[test]
fn built_service_image_with_a_tag() {
    let yaml =
        "services:\n  - name: web\n    build: {context: web}\n    image: r.example.com/web:1.0\n";
    let (loc, problem, _) = one_error(yaml);
    assert_eq!(loc, at(4, 12));
    assert!(matches!(problem, Problem::TaggedBuildImage { .. }));
}

#[test]
fn bad_repository_names() {
    let (loc, problem, text) =
        one_error("services:\n  - name: web\n    image: r.example.com/Web\n");
    assert_eq!(loc, at(3, 12));
    assert!(matches!(problem, Problem::InvalidImage { .. }), "{text}");
    let (loc, _, _) = one_error(
        "registry:\n  prefix: Registry.example.com/UP\nservices:\n  - name: web\n    image: x\n",
    );
    assert_eq!(loc, at(2, 11));
}

#[test]
fn manifests_paths_must_exist() {
    let yaml =
        "services:\n  - name: web\n    image: x\n    manifests:\n      path: k8s/nope.yaml\n";
    let (loc, problem, text) = one_error(yaml);
    assert_eq!(loc, at(5, 13));
    assert!(matches!(problem, Problem::PathNotFound { key: "path", .. }));
    assert!(
        text.contains("relative to the directory of berth.yaml"),
        "{text}"
    );

    let yaml =
        "services:\n  - name: web\n    image: x\n    manifests:\n      kustomize: overlays/prod\n";
    assert_eq!(one_error(yaml).0, at(5, 18));
    let yaml = "services:\n  - name: web\n    image: x\n    manifests:\n      helm:\n        chart: ./charts/none\n";
    assert_eq!(one_error(yaml).0, at(6, 16));
    let yaml = "services:\n  - name: web\n    image: x\n    manifests:\n      helm:\n        chart: charts/board\n        values: [nope.yaml]\n";
    assert_eq!(one_error(yaml).0, at(7, 18));
}

#[test]
fn remote_helm_chart_need_not_exist() {
    let c = ok(
        "services:\n  - name: web\n    image: x\n    manifests:\n      helm: {chart: bitnami/redis, version: 19.0.0}\n",
    );
    match &c.services[0].manifests {
        Some(Manifests::Helm(h)) => assert_eq!(h.version.as_deref(), Some("19.0.0")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn build_context_and_dockerfile_must_exist() {
    let yaml =
        "services:\n  - name: web\n    build:\n      context: nope\n    image: r.example.com/web\n";
    assert_eq!(one_error(yaml).0, at(4, 16));
    let yaml = "services:\n  - name: web\n    build:\n      context: web\n      dockerfile: Dockerfile.prod\n    image: r.example.com/web\n";
    let (loc, problem, _) = one_error(yaml);
    assert_eq!(loc, at(5, 19));
    assert!(matches!(
        problem,
        Problem::PathNotFound {
            key: "dockerfile",
            ..
        }
    ));
}

#[test]
fn absolute_paths_are_refused() {
    let yaml = "services:\n  - name: web\n    image: x\n    paths: [/etc]\n";
    let (loc, problem, _) = one_error(yaml);
    assert_eq!(loc, at(4, 13));
    assert!(matches!(problem, Problem::InvalidPath { .. }));
}

#[test]
fn manifests_need_exactly_one_source() {
    let yaml = "services:\n  - name: web\n    image: x\n    manifests:\n      path: k8s/mongo.yaml\n      kustomize: api/overlays/dev\n";
    let (loc, problem, _) = one_error(yaml);
    assert_eq!(loc, at(5, 7));
    assert!(
        matches!(problem, Problem::ManifestSources { ref found, .. } if found == &["path", "kustomize"])
    );
    let yaml = "services:\n  - name: web\n    image: x\n    manifests:\n      values: {a: 1}\n";
    assert_eq!(one_error(yaml).0, at(5, 7));
}

/// A repository laid out as Ansible roles keep templates: `roles/<service>/templates/*.yml`.
fn roles_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "roles/web/templates/deployment.yml",
        "roles/web/templates/service.yml",
        "roles/web/templates/.hidden.yml",
        "roles/api/templates/deployment.yml",
        "roles/api/templates/extra/config.yml",
        "web/Dockerfile",
        "api/Dockerfile",
    ] {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }
    dir
}

fn parse_roles(yaml: &str) -> Result<Config, Vec<String>> {
    let dir = roles_dir();
    parse(yaml, "berth.yaml", dir.path())
        .map_err(|e| e.diagnostics().iter().map(ToString::to_string).collect())
}

fn template_paths(c: &Config, service: &str) -> Vec<PathBuf> {
    match c.service(service).unwrap().manifests.as_ref().unwrap() {
        Manifests::Template { paths, .. } => paths.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_jinja_template_named_deployment_yml_is_accepted_not_refused_for_lacking_j2() {
    let c = ok(
        "services:\n  - name: web\n    image: x\n    manifests:\n      template: k8s/mongo.yaml\n",
    );
    assert_eq!(template_paths(&c, "web"), [PathBuf::from("k8s/mongo.yaml")]);
}

#[test]
fn a_template_glob_is_expanded_to_every_file_it_matches_at_any_depth_once_hidden_ones_skipped() {
    let c = parse_roles(
        "services:\n  - name: web\n    image: x\n    manifests:\n      template: [\"roles/*/templates/*.yml\", \"roles/api/**/*.yml\"]\n",
    )
    .unwrap();
    assert_eq!(
        template_paths(&c, "web"),
        [
            "roles/api/templates/deployment.yml",
            "roles/web/templates/deployment.yml",
            "roles/web/templates/service.yml",
            "roles/api/templates/extra/config.yml",
        ]
        .map(PathBuf::from)
    );
}

#[test]
fn a_template_glob_matching_nothing_is_an_error_naming_the_pattern_and_its_line() {
    let e = parse_roles(
        "services:\n  - name: web\n    image: x\n    manifests:\n      template: \"roles/*/templates/*.j2\"\n",
    )
    .unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("`template: roles/*/templates/*.j2` matches no file")
            && e[0].contains("at berth.yaml:5:17"),
        "{e:?}"
    );
}

#[test]
fn a_per_service_template_path_uses_the_service_name_also_in_discover_entries() {
    let c = parse_roles(
        "registry: {prefix: r.example.com/shop}\nservices:\n  - discover: \"*/Dockerfile\"\n    manifests: {template: \"roles/{service}/templates/*.yml\"}\n  - name: web\n    build: {context: web}\n    manifests: {template: \"roles/{service}/templates/deployment.yml\"}\n",
    )
    .unwrap();
    assert_eq!(
        template_paths(&c, "api"),
        [PathBuf::from("roles/api/templates/deployment.yml")]
    );
    assert_eq!(
        template_paths(&c, "web"),
        [PathBuf::from("roles/web/templates/deployment.yml")]
    );
    // A folder without templates of its own: the error names the service's expansion.
    let e = parse_roles(
        "services:\n  - name: docs\n    image: x\n    manifests: {template: \"roles/{service}/templates/*.yml\"}\n",
    )
    .unwrap_err();
    assert!(
        e[0].contains("(`roles/docs/templates/*.yml` for this service)")
            && e[0].contains("berth.yaml:4:27"),
        "{e:?}"
    );
}

#[test]
fn a_template_glob_does_not_lead_or_follow_a_link_out_of_the_repository() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yml"), "").unwrap();
    let dir = roles_dir();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("roles/web/templates/host"))
        .unwrap();
    let yaml = "services:\n  - name: web\n    image: x\n    manifests: {template: \"roles/web/**/*.yml\"}\n";
    let e = parse(yaml, "berth.yaml", dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("roles/web/templates/host") && e.contains("outside the repository"),
        "{e}"
    );
    for bad in ["../*/x.yml", "/etc/*.yml", "k8s/a**/x.yml"] {
        let yaml = format!(
            "services:\n  - name: web\n    image: x\n    manifests: {{template: \"{bad}\"}}\n"
        );
        let e = parse(&yaml, "berth.yaml", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid `template` pattern"), "{bad}: {e}");
    }
}

#[test]
fn vars_rename_berth_variables_and_an_unknown_one_names_those_that_exist() {
    let c = ok(
        "services:\n  - name: web\n    image: x\n    manifests:\n      template: k8s/app.yaml.j2\n      vars: {service_name: service, image_id: image, ns: env.namespace}\n",
    );
    let m = format!("{:?}", c.service("web").unwrap().manifests);
    assert!(
        m.contains(
            r#"vars: {"image_id": "image", "ns": "env.namespace", "service_name": "service"}"#
        ),
        "{m}"
    );
    let (loc, _, text) = one_error(
        "services:\n  - name: web\n    image: x\n    manifests:\n      template: k8s/app.yaml.j2\n      vars: {image_id: imagee}\n",
    );
    assert_eq!(loc, at(6, 24));
    assert!(
        text.contains("berth has no template variable `imagee` (it has: service, image, env, env.name, env.namespace, images)")
            && text.ends_with("did you mean `image`?"),
        "{text}"
    );
    let (_, _, text) = one_error(
        "services:\n  - name: web\n    image: x\n    manifests:\n      kustomize: api/overlays/dev\n      vars: {a: service}\n",
    );
    assert!(
        text.contains("`vars` cannot be used with `kustomize`"),
        "{text}"
    );
}

#[test]
fn values_must_be_a_mapping() {
    let yaml = "services:\n  - name: web\n    image: x\n    manifests:\n      template: k8s/app.yaml.j2\n      values: [1, 2]\n";
    assert_eq!(
        one_error(yaml),
        (at(6, 15), Problem::ValuesNotMapping, one_error(yaml).2)
    );
}

#[test]
fn invalid_durations() {
    let (loc, problem, text) = one_error(&format!("deploy:\n  timeout: 300\n{MINIMAL}"));
    assert_eq!(loc, at(2, 12));
    assert!(matches!(problem, Problem::InvalidDuration { .. }));
    assert!(text.contains("`300` has no unit"), "{text}");
    let yaml = format!(
        "{MINIMAL}environments:\n  - name: dev\n    namespace: dev\n    deploy: {{timeout: five minutes}}\n"
    );
    assert_eq!(one_error(&yaml).0, at(7, 23));
    let yaml = "services:\n  - name: web\n    image: x\n    hooks:\n      pre-deploy:\n        - name: m\n          command: true\n          timeout: 0s\n";
    assert_eq!(one_error(yaml).0, at(8, 20));
}

#[test]
fn hooks_need_exactly_one_action() {
    let yaml = "services:\n  - name: web\n    image: x\n    hooks:\n      pre-deploy:\n        - name: migrate\n";
    let (loc, problem, _) = one_error(yaml);
    assert_eq!(loc, at(6, 11));
    assert_eq!(
        problem,
        Problem::HookAction {
            hook: "migrate".into()
        }
    );
    let yaml = "services:\n  - name: web\n    image: x\n    hooks:\n      post-deploy:\n        - name: a\n          manifest: hooks/job.yaml\n        - name: a\n          command: x\n";
    assert!(matches!(
        one_error(yaml).1,
        Problem::Duplicate { what: "hook", .. }
    ));
}

#[test]
fn registry_hosts() {
    let yaml =
        format!("registry:\n  mirrors:\n    docker.io: https://mirror.example.com\n{MINIMAL}");
    let (loc, problem, _) = one_error(&yaml);
    assert_eq!(loc, at(3, 16));
    assert!(matches!(problem, Problem::InvalidHost { .. }));
    let yaml = format!("registry:\n  insecure: [\"localhost:port\"]\n{MINIMAL}");
    assert_eq!(one_error(&yaml).0, at(2, 14));
}

#[test]
fn from_must_name_an_environment() {
    let yaml = format!(
        "{MINIMAL}environments:\n  - name: staging\n    namespace: s\n  - name: prod\n    namespace: p\n    from: stagin\n"
    );
    let (loc, problem, text) = one_error(&yaml);
    assert_eq!(loc, at(9, 11));
    assert!(matches!(problem, Problem::UnknownEnvironment { .. }));
    assert!(text.ends_with("did you mean `staging`?"), "{text}");
}

#[test]
fn promotion_loops_are_refused() {
    let yaml = format!(
        "{MINIMAL}environments:\n  - name: a\n    namespace: a\n    from: b\n  - name: b\n    namespace: b\n    from: a\n"
    );
    let (loc, problem, _) = one_error(&yaml);
    assert_eq!(loc, at(7, 11));
    assert_eq!(
        problem,
        Problem::PromotionCycle {
            chain: vec!["a".into(), "b".into(), "a".into()]
        }
    );
    let yaml = format!("{MINIMAL}environments:\n  - name: a\n    namespace: a\n    from: a\n");
    assert!(matches!(one_error(&yaml).1, Problem::PromotionCycle { .. }));
}

#[test]
fn semantic_errors_are_all_reported_in_file_order() {
    let yaml = "services:\n  - name: web\n  - name: web\n    image: Bad\n";
    let all = errors(yaml);
    let locations: Vec<_> = all.iter().map(|e| e.0).collect();
    assert_eq!(locations, [at(2, 5), at(3, 11), at(4, 12)]);
}

#[test]
fn load_reads_the_file_and_resolves_against_its_directory() {
    let dir = example_dir();
    let file = dir.path().join("berth.yaml");
    std::fs::write(
        &file,
        "services:\n  - name: web\n    image: x\n    manifests: {path: k8s/mongo.yaml}\n",
    )
    .unwrap();
    let c = crate::load(&file).unwrap();
    assert_eq!(c.dir, dir.path());
    assert!(c.path(Path::new("k8s/mongo.yaml")).is_file());
    let err = crate::load(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("berth init"));
}

#[test]
fn schema_lists_the_same_keys_as_the_parser() {
    let schema = crate::json_schema();
    let top: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec!["registry", "deploy", "shared", "services", "environments"];
    expected.sort();
    let mut top = top;
    top.sort();
    assert_eq!(top, expected);
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], serde_json::json!(["services"]));
    assert_eq!(
        schema["$defs"]["Environment"]["required"],
        serde_json::json!(["name", "namespace"])
    );
    let text = schema.to_string();
    for key in [
        "pre-deploy",
        "post-deploy",
        "kustomize",
        "mirrors",
        "promotion",
        "dockerfile",
        "flatten",
        "image-values",
    ] {
        assert!(
            text.contains(&format!("\"{key}\"")),
            "{key} missing from schema"
        );
    }
}

#[test]
fn dot_dot_path_leaving_the_repository_is_refused() {
    let (location, problem, text) = one_error(
        "services:\n  - name: web\n    image: r.example.com/web:1\n    manifests:\n      kustomize: ../../root/.kube\n",
    );
    assert_eq!(location, at(5, 18));
    assert!(
        matches!(
            problem,
            Problem::InvalidPath {
                key: "kustomize",
                ..
            }
        ),
        "{problem:?}"
    );
    assert!(text.contains("without `..`"), "{text}");
    assert!(text.contains("berth.yaml:5:18"), "{text}");
}

#[test]
fn absolute_path_is_refused() {
    let (_, problem, text) = one_error(
        "services:\n  - name: web\n    image: r.example.com/web:1\n    manifests:\n      path: /root/.kube/config\n",
    );
    assert!(
        matches!(problem, Problem::InvalidPath { .. }),
        "{problem:?}"
    );
    assert!(text.contains("it is absolute"), "{text}");
}

#[test]
fn helm_release_starting_with_dash_is_refused() {
    let (_, problem, text) = one_error(
        "services:\n  - name: web\n    image: r.example.com/web:1\n    manifests:\n      helm:\n        chart: charts/board\n        release: \"--post-renderer=/tmp/x\"\n",
    );
    assert!(
        matches!(&problem, Problem::InvalidName { what: "helm release", name } if name == "--post-renderer=/tmp/x"),
        "{problem:?}"
    );
    assert!(text.contains("lowercase letters"), "{text}");
}

#[test]
fn helm_set_and_context_starting_with_dash_are_refused() {
    let all = errors(
        "services:\n  - name: web\n    image: r.example.com/web:1\n    manifests:\n      helm:\n        chart: charts/board\n        set: [\"--post-renderer=/bin/sh\"]\nenvironments:\n  - name: prod\n    namespace: prod\n    context: \"--kubeconfig=/root/.kube/config\"\n",
    );
    let flags: Vec<&Problem> = all
        .iter()
        .map(|(_, p, _)| p)
        .filter(|p| matches!(p, Problem::LooksLikeFlag { .. }))
        .collect();
    assert_eq!(flags.len(), 2, "{all:#?}");
}

#[test]
fn symlink_leading_out_of_the_repository_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("config.yaml"), "").unwrap();
    let dir = example_dir();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("manifests")).unwrap();
    let yaml = "services:\n  - name: web\n    image: r.example.com/web:1\n    manifests:\n      path: manifests\n";
    let Err(ConfigError::Invalid { diagnostics }) = parse(yaml, "berth.yaml", dir.path()) else {
        panic!("a symlink out of the repository must be refused")
    };
    let text = diagnostics[0].to_string();
    assert!(
        text.contains("a symlink leads it outside the repository"),
        "{text}"
    );
    assert!(text.contains("berth.yaml:5:"), "{text}");
}

#[test]
fn build_containment_settings_and_test_timeout_are_read() {
    let c = ok(include_str!("../berth.example.yaml"));
    let web = c.service("web").unwrap();
    let sandbox = &web.build.as_ref().unwrap().sandbox;
    assert_eq!(sandbox.memory, Some(2 << 30));
    assert_eq!(sandbox.pids, Some(1024));
    assert_eq!(sandbox.network, Some(crate::BuildNetwork::Isolated));
    assert_eq!(sandbox.step_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(sandbox.ca, vec![PathBuf::from("certs/proxy-ca.pem")]);
    assert_eq!(web.test.as_ref().unwrap().timeout, None);
    let api = c.service("api").unwrap();
    let test = api.test.as_ref().unwrap();
    assert_eq!(
        (test.command.as_str(), test.timeout),
        ("npm test", Some(Duration::from_secs(300)))
    );
}

#[test]
fn ca_file_outside_the_repository_is_refused() {
    let (location, problem, text) = one_error(
        "services:\n  - name: web\n    image: r.example.com/web\n    build:\n      context: web\n      ca: [../../etc/ssl/private/key.pem]\n",
    );
    assert_eq!(location, at(6, 12));
    assert!(
        matches!(problem, Problem::InvalidPath { key: "ca", .. }),
        "{problem:?}"
    );
    assert!(text.contains("without `..`"), "{text}");
    // Through a symlink, too.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("ca.pem"), "").unwrap();
    let dir = example_dir();
    std::os::unix::fs::symlink(outside.path().join("ca.pem"), dir.path().join("ca.pem")).unwrap();
    let yaml = "services:\n  - name: web\n    image: r.example.com/web\n    build:\n      context: web\n      ca: [ca.pem]\n";
    let Err(ConfigError::Invalid { diagnostics }) = parse(yaml, "berth.yaml", dir.path()) else {
        panic!("a CA file linked from outside the repository must be refused")
    };
    let text = diagnostics[0].to_string();
    assert!(
        text.contains("a symlink leads it outside the repository"),
        "{text}"
    );
}

#[test]
fn bad_build_limits_point_at_the_value() {
    let all = errors(
        "services:\n  - name: web\n    image: r.example.com/web\n    build:\n      context: web\n      memory: lots\n      pids: 0\n      step-timeout: 10\n    test: { command: make test, timeout: forever }\n",
    );
    let texts: Vec<&str> = all.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(all.len(), 4, "{texts:#?}");
    assert!(
        texts[0].contains("berth.yaml:6:15") && texts[0].contains("512m"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].contains("berth.yaml:7:13") && texts[1].contains("--pids-limit 0"),
        "{}",
        texts[1]
    );
    assert!(
        texts[2].contains("berth.yaml:8:21") && texts[2].contains("has no unit"),
        "{}",
        texts[2]
    );
    assert!(
        texts[3].contains("berth.yaml:9:11") && texts[3].contains("forever"),
        "{}",
        texts[3]
    );
    let (_, problem, _) = one_error(
        "services:\n  - name: web\n    image: r.example.com/web\n    build:\n      context: web\n      network: hots\n",
    );
    assert!(
        matches!(&problem, Problem::UnknownValue { suggestion: Some(s), .. } if s == "host"),
        "{problem:?}"
    );
}

#[test]
fn the_schema_offers_berths_template_variables_for_vars() {
    let schema = crate::json_schema();
    let m = &schema["$defs"]["Manifests"]["properties"];
    assert_eq!(
        m["vars"]["additionalProperties"]["enum"],
        serde_json::json!(crate::TEMPLATE_VARIABLES)
    );
    let template = m["template"]["description"].as_str().unwrap();
    assert!(
        template.contains("whatever their extension") && template.contains("{service}"),
        "{template}"
    );
}

#[test]
fn image_without_registry_host_is_the_manifest_name_pushed_under_the_prefix() {
    let yaml = "registry:\n  prefix: 127.0.0.1:15000/shop/\nservices:\n  - name: web\n    build: {context: web}\n    image: team/web\n  - name: api\n    build: {context: web}\n  - name: board\n    build: {context: web}\n    image: ghcr.io/team/board\n";
    let c = ok(yaml);
    let web = c.service("web").unwrap();
    assert_eq!(
        web.image.as_ref().unwrap().name(),
        "127.0.0.1:15000/shop/team/web"
    );
    assert_eq!(
        web.naming,
        crate::ImageNaming::ManifestName("team/web".into())
    );
    assert_eq!(web.manifest_name().unwrap().name(), "docker.io/team/web");
    assert_eq!(
        c.service("api").unwrap().image.as_ref().unwrap().name(),
        "127.0.0.1:15000/shop/api"
    );
    let board = c.service("board").unwrap();
    assert_eq!(board.image.as_ref().unwrap().name(), "ghcr.io/team/board");
    assert_eq!(board.manifest_name(), None);

    let flat = ok(&yaml.replace("prefix:", "flatten: true\n  prefix:"));
    assert_eq!(
        flat.service("web").unwrap().image.as_ref().unwrap().name(),
        "127.0.0.1:15000/shop/team_web"
    );

    // Without a prefix the name is pushed as written (Docker Hub), as before.
    let hub = ok("services:\n  - name: web\n    build: {context: web}\n    image: team/web\n");
    assert_eq!(
        hub.service("web").unwrap().image.as_ref().unwrap().name(),
        "docker.io/team/web"
    );
}

#[test]
fn default_repo_overrides_the_prefix_of_derived_names_only() {
    let mut c = ok(
        "registry:\n  prefix: old.example.com/shop\nservices:\n  - name: web\n    build: {context: web}\n    image: team/web\n  - name: api\n    build: {context: web}\n  - name: board\n    build: {context: web}\n    image: ghcr.io/team/board\n  - name: db\n    image: postgres:16\n",
    );
    c.set_default_repo("127.0.0.1:15000/me").unwrap();
    let name = |s: &str| c.service(s).unwrap().image.as_ref().unwrap().to_string();
    assert_eq!(name("web"), "127.0.0.1:15000/me/team/web:latest");
    assert_eq!(name("api"), "127.0.0.1:15000/me/api:latest");
    assert_eq!(name("board"), "ghcr.io/team/board:latest");
    assert_eq!(name("db"), "docker.io/library/postgres:16");
    let e = c.set_default_repo("r.example.com/x:1").unwrap_err();
    assert!(e.contains("is not a repository prefix"), "{e}");
}

#[test]
fn helm_image_values_are_read_and_checked() {
    let c = ok(
        "services:\n  - name: board\n    build: {context: web}\n    image: r.example.com/board\n    manifests:\n      helm:\n        chart: charts/board\n        image-values: {repository: image.repository, tag: image.tag}\n",
    );
    let Some(Manifests::Helm(h)) = &c.service("board").unwrap().manifests else {
        panic!("helm")
    };
    let v = h.image_values.as_ref().unwrap();
    assert_eq!(v.repository.as_deref(), Some("image.repository"));
    assert_eq!(v.tag.as_deref(), Some("image.tag"));
    assert_eq!(v.digest, None);
    let (loc, problem, text) = one_error(
        "services:\n  - name: board\n    build: {context: web}\n    image: r.example.com/board\n    manifests:\n      helm:\n        chart: charts/board\n        image-values: {repository: image..repository}\n",
    );
    assert_eq!(loc.line, 8, "{text}");
    assert!(
        matches!(problem, Problem::InvalidImageValues { .. }),
        "{text}"
    );
    let (_, problem, _) = one_error(
        "services:\n  - name: board\n    build: {context: web}\n    image: r.example.com/board\n    manifests:\n      helm:\n        chart: charts/board\n        image-values: {tag: image.tag}\n",
    );
    assert_eq!(problem, Problem::ImageValuesWithoutImage);
}
