//! Templates as teams write them (issue 14): an Ansible-style repository whose Jinja templates
//! are named `deployment.yml`, use their own variable names (`service_name`, `image_id`) and
//! live in one folder per service (`roles/<service>/templates/`). Before, berth refused them as
//! "not a template" (and, declared as plain manifests, as malformed YAML); now `berth run`
//! builds both services, renders each folder through `{service}`, and deploys Deployments that
//! carry the pushed images by digest.

use berth_testkit::TestContext;

use crate::common::{Repo, deployment, git, git_init, live, result, write};

const DOCKERFILE: &str = "FROM docker.io/library/busybox:latest\nCOPY index.html /www/index.html\nUSER 65534\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// Jinja as Ansible roles write it: markers where YAML cannot parse them unrendered
/// (`name: {{ ... }}` is a flow mapping to a YAML parser), `{% if %}` blocks, own names.
const WEB_DEPLOYMENT: &str = r#"# roles/web/templates/deployment.yml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ service_name }}
  labels: {app: {{ service_name }}, tier: {{ tier }}}
spec:
  replicas: {{ replicas }}
  selector:
    matchLabels: {app: {{ service_name }}}
  template:
    metadata:
      labels: {app: {{ service_name }}}
    spec:
      containers:
        - name: {{ service_name }}
          image: {{ image_id }}
{% if verbose | default(false) %}
          env: [{name: DEBUG, value: "1"}]
{% endif %}
          ports:
            - containerPort: 8080
"#;

const WEB_SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: {{ service_name }}
spec:
  selector: {app: {{ service_name }}}
  ports:
    - port: 80
      targetPort: 8080
"#;

/// The other service's template takes its image from a value that references a variable.
const API_DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ service_name }}
  labels: {app: {{ app_label }}, tier: {{ tier }}}
spec:
  replicas: {{ replicas }}
  selector:
    matchLabels: {app: {{ app_label }}}
  template:
    metadata:
      labels: {app: {{ app_label }}}
    spec:
      containers:
        - name: api
          image: {{ image_ref }}
"#;

fn ansible_repo(ctx: &TestContext) -> Repo {
    let repo = Repo::new("templates");
    let dir = &repo.dir;
    let berth_yaml = format!(
        r#"registry:
  prefix: {repository}
  insecure: [127.0.0.1:15000]
  mirrors: {{docker.io: 127.0.0.1:15000}}
services:
  - discover: "apps/*/Dockerfile"
    manifests:
      template: ["roles/{{service}}/templates/*.yml"]
      vars: {{service_name: service, image_id: image}}
      values:
        image_ref: "{{{{ image_id }}}}"
        app_label: "{{{{ service }}}}-app"
        tier: backend
environments:
  - name: dev
    namespace: dev
    values: {{replicas: 2}}
"#,
        repository = ctx.repository
    );
    write(dir, "berth.yaml", &berth_yaml);
    for service in ["web", "api"] {
        write(dir, &format!("apps/{service}/Dockerfile"), DOCKERFILE);
        write(
            dir,
            &format!("apps/{service}/index.html"),
            &format!("<h1>{service}</h1>\n"),
        );
    }
    write(dir, "roles/web/templates/deployment.yml", WEB_DEPLOYMENT);
    write(dir, "roles/web/templates/service.yml", WEB_SERVICE);
    write(dir, "roles/api/templates/deployment.yml", API_DEPLOYMENT);
    // Not a manifest: Ansible's defaults beside the templates are left alone.
    write(dir, "roles/web/defaults/main.yml", "replicas: 1\n");
    git_init(dir, "main");
    repo
}

#[tokio::test]
async fn ansible_style_templates_named_deployment_yml_with_their_own_variable_names_deploy_pinned()
{
    let ctx = TestContext::new("templates").await;
    let repo = ansible_repo(&ctx);
    let summary = result(&repo.berth(&ctx, &["run", "-o", "json", "-n", &ctx.namespace]));
    for (service, app) in [("web", "web"), ("api", "api-app")] {
        let built = summary["built"][service]
            .as_str()
            .unwrap_or_else(|| panic!("{service} was not built: {summary}"));
        assert!(
            built.starts_with(&format!("{}/{service}@sha256:", ctx.repository)),
            "{built}"
        );
        let d = deployment(&ctx, service).await;
        let pod = &d["spec"]["template"];
        assert_eq!(pod["spec"]["containers"][0]["image"], built, "{d}");
        assert_eq!(pod["metadata"]["labels"]["app"], app, "{d}");
        assert_eq!(d["metadata"]["labels"]["tier"], "backend", "{d}");
        // The environment's values are merged over the service's.
        assert_eq!(d["spec"]["replicas"], 2, "{d}");
    }
    let web = deployment(&ctx, "web").await;
    assert!(
        web["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none(),
        "{web}"
    );
    let svc = live(&ctx, "v1", "Service", "web").await;
    assert!(svc.is_some(), "the web role's service.yml was not deployed");
}

#[tokio::test]
async fn an_undefined_template_variable_fails_the_run_naming_the_template_line_not_deploying_blanks()
 {
    let ctx = TestContext::new("templates-undef").await;
    let repo = ansible_repo(&ctx);
    // A template using a name nobody provides: today's strict mode must name file:line.
    write(
        &repo.dir,
        "roles/api/templates/deployment.yml",
        &API_DEPLOYMENT.replace("{{ tier }}", "{{ teir }}"),
    );
    git(&repo.dir, &["commit", "-q", "-am", "typo"]);
    let out = repo.berth(&ctx, &["run", "-n", &ctx.namespace]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("roles/api/templates/deployment.yml:5: template error: undefined value")
            && stderr.contains("`teir` is undefined"),
        "{stderr}"
    );
    let api = live(&ctx, "apps/v1", "Deployment", "api").await;
    assert!(api.is_none(), "deployed: {api:?}");
}
