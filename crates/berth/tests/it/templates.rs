//! Templates as teams write them (issue 14): an Ansible-style repository whose Jinja templates
//! are named `deployment.yml`, use their own variable names (`service_name`, `image_id`) and
//! live in one folder per service (`roles/<service>/templates/`). Before, berth refused them as
//! "not a template" (and, declared as plain manifests, as malformed YAML); now `berth run`
//! builds both services, renders each folder through `{service}`, and deploys Deployments that
//! carry the pushed images by digest.

use std::path::{Path, PathBuf};

use berth_cluster::ObjectKey;
use berth_testkit::TestContext;

use crate::run::git;

struct Repo {
    dir: PathBuf,
    store: PathBuf,
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

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
    let suffix = berth_testkit::unique_suffix();
    let dir = std::env::temp_dir().join(format!("berth-templates-{suffix}"));
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
    write(&dir, "berth.yaml", &berth_yaml);
    for service in ["web", "api"] {
        write(&dir, &format!("apps/{service}/Dockerfile"), DOCKERFILE);
        write(
            &dir,
            &format!("apps/{service}/index.html"),
            &format!("<h1>{service}</h1>\n"),
        );
    }
    write(&dir, "roles/web/templates/deployment.yml", WEB_DEPLOYMENT);
    write(&dir, "roles/web/templates/service.yml", WEB_SERVICE);
    write(&dir, "roles/api/templates/deployment.yml", API_DEPLOYMENT);
    // Not a manifest: Ansible's defaults beside the templates are left alone.
    write(&dir, "roles/web/defaults/main.yml", "replicas: 1\n");
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "first"]);
    Repo {
        dir,
        store: std::env::temp_dir().join(format!("berth-templates-store-{suffix}")),
    }
}

async fn deployment(ctx: &TestContext, name: &str) -> serde_json::Value {
    ctx.cluster
        .get(&ObjectKey::new(
            "apps/v1",
            "Deployment",
            Some(&ctx.namespace),
            name,
        ))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("Deployment {name} was not deployed"))
}

#[tokio::test]
async fn ansible_style_templates_named_deployment_yml_with_their_own_variable_names_deploy_pinned()
{
    let ctx = TestContext::new("templates").await;
    let repo = ansible_repo(&ctx);
    let out = ctx
        .env
        .berth(env!("CARGO_BIN_EXE_berth").as_ref())
        .args(["run", "-o", "json", "-n", &ctx.namespace, "-c"])
        .arg(repo.dir.join("berth.yaml"))
        .env("BERTH_STORE", &repo.store)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
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
    let svc = ctx
        .cluster
        .get(&ObjectKey::new(
            "v1",
            "Service",
            Some(&ctx.namespace),
            "web",
        ))
        .await
        .unwrap();
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
    let out = ctx
        .env
        .berth(env!("CARGO_BIN_EXE_berth").as_ref())
        .args(["run", "-n", &ctx.namespace, "-c"])
        .arg(repo.dir.join("berth.yaml"))
        .env("BERTH_STORE", &repo.store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("roles/api/templates/deployment.yml:5: template error: undefined value")
            && stderr.contains("`teir` is undefined"),
        "{stderr}"
    );
    let api = ctx
        .cluster
        .get(&ObjectKey::new(
            "apps/v1",
            "Deployment",
            Some(&ctx.namespace),
            "api",
        ))
        .await
        .unwrap();
    assert!(api.is_none(), "deployed: {api:?}");
}
