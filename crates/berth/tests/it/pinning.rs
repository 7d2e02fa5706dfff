//! Image references that cannot miss (issue 14): a built image is deployed pinned to its
//! digest wherever the manifests name it (Skaffold-style short names, Helm charts composing
//! the image from values), or the run fails before anything is built or pushed.

use berth_testkit::TestContext;

use crate::common::{
    ANY_FIELDS, Crd, Dir, Repo, berth, deployment, git_init, live, result, run, success, tags,
};

const DOCKERFILE: &str = "FROM docker.io/library/busybox:latest\nCOPY index.html /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// A git repository with `files` (berth.yaml's `REGISTRY` and `PREFIX` replaced by the
/// environment's registry host and the test's repository) and a buildable `web/`.
fn project(ctx: &TestContext, files: &[(&str, &str)]) -> Repo {
    let p = Repo::new("pinning");
    let all = [
        ("web/Dockerfile", DOCKERFILE),
        ("web/index.html", "<h1>pinned</h1>\n"),
    ];
    for (path, text) in all.iter().chain(files) {
        let text = text
            .replace("REGISTRY", ctx.env.registry_host())
            .replace("PREFIX", &ctx.repository);
        p.write(path, &text);
    }
    git_init(&p.dir, "main");
    p
}

/// `berth ARGS -n <the test's namespace> -c berth.yaml`.
fn berth_in(ctx: &TestContext, p: &Repo, args: &[&str]) -> std::process::Output {
    let mut args = args.to_vec();
    args.extend(["-n", &ctx.namespace]);
    p.berth(ctx, &args)
}

/// `berth run -o json`, which must succeed: its result document.
fn run_ok(ctx: &TestContext, p: &Repo, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", "-o", "json"];
    args.extend(extra);
    result(&berth_in(ctx, p, &args))
}

/// `berth run`, which must fail: its stderr.
fn run_fails(ctx: &TestContext, p: &Repo) -> String {
    let out = berth_in(ctx, p, &["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the run succeeded:\n{stderr}");
    stderr
}

const SKAFFOLD_STYLE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      initContainers:
      - name: warm
        image: docker.io/team/web:v1
        command: [\"true\"]
      containers:
      - name: web
        image: team/web
";

/// The issue's first bug: the manifests named the image `team/web` (as Skaffold projects
/// do), berth built and pushed it, then deployed `team/web` untouched — the stale public image.
#[tokio::test]
async fn manifests_naming_the_short_image_name_are_deployed_with_the_pushed_digest() {
    let ctx = TestContext::new("pin-short").await;
    let p = project(
        &ctx,
        &[
            (
                "berth.yaml",
                "registry:\n  prefix: PREFIX\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: web\n    build: {context: web}\n    image: team/web\n    manifests: {path: [k8s]}\nenvironments:\n  - name: dev\n    namespace: dev\n",
            ),
            ("k8s/web.yaml", SKAFFOLD_STYLE),
        ],
    );
    let first = run_ok(&ctx, &p, &[]);
    let web = first["built"]["web"].as_str().expect("web was built");
    assert!(
        web.starts_with(&format!("{}/team/web@sha256:", ctx.repository)),
        "{first}"
    );
    let d = deployment(&ctx, "web").await;
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["image"], web, "{spec}");
    assert_eq!(spec["initContainers"][0]["image"], web, "{spec}");
    assert!(
        !tags(&format!("{}/team/web", ctx.repository))
            .await
            .is_empty()
    );

    // Unchanged: the service keeps the deployed digest under the new keying; no new revision.
    let again = run_ok(&ctx, &p, &[]);
    assert_eq!(again["kept"], serde_json::json!(["web"]), "{again}");
    assert_eq!(again["revision"], first["revision"], "{again}");

    // `--default-repo` wins over registry.prefix; the manifests still say `team/web`.
    let other = format!("{}/other", ctx.repository);
    let moved = run_ok(&ctx, &p, &["--default-repo", &other]);
    let web2 = moved["built"]["web"]
        .as_str()
        .expect("rebuilt for the new repository");
    assert!(
        web2.starts_with(&format!("{other}/team/web@sha256:")),
        "{moved}"
    );
    let d = deployment(&ctx, "web").await;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        web2
    );
}

/// `registry.flatten`: registries without nested repositories get `<prefix>/team_web`.
#[tokio::test]
async fn flattened_short_names_are_pushed_as_one_component_and_still_pinned() {
    let ctx = TestContext::new("pin-flat").await;
    let p = project(
        &ctx,
        &[
            (
                "berth.yaml",
                "registry:\n  prefix: PREFIX\n  flatten: true\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: web\n    build: {context: web}\n    image: team/web\n    manifests: {path: [k8s]}\nenvironments:\n  - name: dev\n    namespace: dev\n",
            ),
            ("k8s/web.yaml", SKAFFOLD_STYLE),
        ],
    );
    let out = run_ok(&ctx, &p, &[]);
    let web = out["built"]["web"].as_str().expect("web was built");
    assert!(
        web.starts_with(&format!("{}/team_web@sha256:", ctx.repository)),
        "{out}"
    );
    let d = deployment(&ctx, "web").await;
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], web);
}

/// A built image that no manifest names was pushed and the manifests deployed whatever they
/// named, silently; now the run stops before the build, naming what the manifests do use.
#[tokio::test]
async fn a_built_image_no_manifest_references_fails_the_run_before_any_push() {
    let ctx = TestContext::new("pin-unref").await;
    let p = project(
        &ctx,
        &[
            (
                "berth.yaml",
                "registry:\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: web\n    build: {context: web}\n    image: PREFIX/web\n    manifests: {path: [k8s]}\nenvironments:\n  - name: dev\n    namespace: dev\n",
            ),
            (
                "k8s/web.yaml",
                &SKAFFOLD_STYLE
                    .replace("image: team/web\n", "image: PREFIX/wbe:1\n")
                    .replace("docker.io/team/web:v1", "docker.io/library/busybox:latest"),
            ),
        ],
    );
    let stderr = run_fails(&ctx, &p);
    assert!(
        stderr.contains("no rendered object references its built image")
            && stderr.contains("nothing was built or pushed")
            && stderr.contains("docker.io/library/busybox:latest")
            && stderr.contains(&format!("the closest is `{}/wbe:1`", ctx.repository)),
        "{stderr}"
    );
    assert!(!stderr.contains("building web"), "{stderr}");
    assert_eq!(
        tags(&format!("{}/web", ctx.repository)).await,
        Vec::<String>::new()
    );
    let none = live(&ctx, "apps/v1", "Deployment", "web").await;
    assert!(none.is_none(), "deployed: {none:?}");
}

/// A malformed template failed only after the images had been built and pushed.
#[tokio::test]
async fn a_malformed_template_fails_the_run_before_anything_is_built() {
    let ctx = TestContext::new("pin-tmpl").await;
    let p = project(
        &ctx,
        &[
            (
                "berth.yaml",
                "registry:\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: web\n    build: {context: web}\n    image: PREFIX/web\n    manifests: {template: [k8s]}\nenvironments:\n  - name: dev\n    namespace: dev\n",
            ),
            (
                "k8s/web.yaml.j2",
                &SKAFFOLD_STYLE.replace("image: team/web\n", "image: {{ image \n"),
            ),
        ],
    );
    let stderr = run_fails(&ctx, &p);
    assert!(
        stderr.contains("web.yaml.j2") && stderr.contains("nothing was built or pushed"),
        "{stderr}"
    );
    assert!(!stderr.contains("building web"), "{stderr}");
    assert_eq!(
        tags(&format!("{}/web", ctx.repository)).await,
        Vec::<String>::new()
    );
}

const CHART_TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
      - name: web
        image: \"IMAGE\"
";

fn chart(name: &str, values: &str, image: &str) -> [(String, String); 3] {
    [
        (
            format!("charts/{name}/Chart.yaml"),
            format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n"),
        ),
        (format!("charts/{name}/values.yaml"), values.to_string()),
        (
            format!("charts/{name}/templates/deployment.yaml"),
            CHART_TEMPLATE.replace("IMAGE", image),
        ),
    ]
}

/// Runs `berth_yaml` with `charts` and checks that each of `services` (its Helm release's
/// Deployment) runs the pushed digest, composed by the chart as `repo:pinned@sha256:...`; a
/// second run renders the same pod templates (no new revision).
async fn helm_deploys_pinned(ctx: TestContext, berth_yaml: &str, charts: &[[(String, String); 3]]) {
    let mut files: Vec<(&str, &str)> = vec![("berth.yaml", berth_yaml)];
    for c in charts {
        files.extend(c.iter().map(|(p, t)| (p.as_str(), t.as_str())));
    }
    let p = project(&ctx, &files);
    let out = run_ok(&ctx, &p, &[]);
    let built = out["built"].as_object().unwrap();
    assert!(!built.is_empty(), "{out}");
    for (service, image) in built {
        let (repo, digest) = image.as_str().unwrap().split_once('@').unwrap();
        let d = deployment(&ctx, service).await;
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            format!("{repo}:pinned@{digest}"),
            "{service}"
        );
    }
    let again = run_ok(&ctx, &p, &[]);
    assert_eq!(again["revision"], out["revision"], "{again}");
}

/// Helm charts composing `{{ .Values.image.repository }}:{{ .Values.image.tag }}` were
/// deployed with the chart's own `team/web:1.0`, silently; berth now detects the layout in
/// values.yaml (`image.repository`/`image.tag`, and `image.registry`), sets the values and
/// checks the rendered output.
#[tokio::test]
async fn helm_chart_composing_the_image_from_values_is_deployed_pinned_by_detection() {
    // On the real node: containerd really pulls `repo:pinned@sha256:...` (by the digest).
    helm_deploys_pinned(
        TestContext::on_real_node("pin-helm-detect").await,
        "registry:\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: plain\n    build: {context: web}\n    image: PREFIX/plain\n    manifests:\n      helm: {chart: charts/plain}\n  - name: split\n    build: {context: web}\n    image: PREFIX/split\n    manifests:\n      helm: {chart: charts/split}\nenvironments:\n  - name: dev\n    namespace: dev\n",
        &[
            chart(
                "plain",
                "image:\n  repository: team/web\n  tag: \"1.0\"\n  pullPolicy: IfNotPresent\n",
                "{{ .Values.image.repository }}:{{ .Values.image.tag }}",
            ),
            chart(
                "split",
                "image:\n  registry: docker.io\n  repository: team/web\n  tag: \"1.0\"\n",
                "{{ .Values.image.registry }}/{{ .Values.image.repository }}:{{ .Values.image.tag }}",
            ),
        ],
    )
    .await;
}

/// The same with values of the chart's own naming, mapped by `helm.image-values`.
#[tokio::test]
async fn helm_chart_composing_the_image_from_values_is_deployed_pinned_with_image_values() {
    helm_deploys_pinned(
        TestContext::new("pin-helm-mapped").await,
        "registry:\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: mapped\n    build: {context: web}\n    image: PREFIX/mapped\n    manifests:\n      helm:\n        chart: charts/mapped\n        image-values: {repository: app.picture.repo, tag: app.picture.version}\nenvironments:\n  - name: dev\n    namespace: dev\n",
        &[chart(
            "mapped",
            "app:\n  picture:\n    repo: team/web\n    version: \"1.0\"\n",
            "{{ .Values.app.picture.repo }}:{{ .Values.app.picture.version }}",
        )],
    )
    .await;
}

/// A chart whose image values berth cannot find renders its own image: the run stops before
/// any build, saying what the chart rendered and how to map its values.
#[tokio::test]
async fn a_helm_chart_whose_image_values_berth_cannot_find_fails_before_any_build() {
    let ctx = TestContext::new("pin-helm-none").await;
    let [a, b, c] = chart(
        "odd",
        "picture:\n  name: team/web\n",
        "{{ .Values.picture.name }}:1",
    );
    let p = project(
        &ctx,
        &[
            (
                "berth.yaml",
                "registry:\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: odd\n    build: {context: web}\n    image: PREFIX/odd\n    manifests:\n      helm: {chart: charts/odd}\nenvironments:\n  - name: dev\n    namespace: dev\n",
            ),
            (&a.0, &a.1),
            (&b.0, &b.1),
            (&c.0, &c.1),
        ],
    );
    let stderr = run_fails(&ctx, &p);
    assert!(
        stderr.contains("no rendered object references its built image")
            && stderr.contains("berth found no image values")
            && stderr.contains("the closest is `team/web:1`")
            && stderr.contains("helm.image-values"),
        "{stderr}"
    );
    assert_eq!(
        tags(&format!("{}/odd", ctx.repository)).await,
        Vec::<String>::new()
    );
}

/// `berth render` shows what a run would deploy: from berth.yaml, the short name pinned in
/// the pushed repository (placeholder digest), `--default-repo` winning over the prefix.
#[tokio::test]
async fn render_from_berth_yaml_shows_the_short_name_pinned_where_it_is_pushed() {
    let ctx = TestContext::new("pin-render").await;
    let p = project(
        &ctx,
        &[
            (
                "berth.yaml",
                "registry:\n  prefix: PREFIX\nservices:\n  - name: web\n    build: {context: web}\n    image: team/web\n    manifests: {path: [k8s]}\nenvironments:\n  - name: dev\n    namespace: dev\n",
            ),
            ("k8s/web.yaml", SKAFFOLD_STYLE),
        ],
    );
    let render = |extra: &[&str]| {
        success(
            &berth(ctx.env)
                .arg("render")
                .args(extra)
                .current_dir(&p.dir)
                .output()
                .unwrap(),
        )
    };
    let zeros = "0".repeat(64);
    let text = render(&[]);
    let want = format!("image: {}/team/web@sha256:{zeros}", ctx.repository);
    assert_eq!(text.matches(&want).count(), 2, "{text}");
    assert!(
        !text.contains("image: team/web") && !text.contains("team/web:v1"),
        "{text}"
    );
    let text = render(&["--default-repo", "127.0.0.1:5999/else"]);
    assert_eq!(
        text.matches(&format!(
            "image: 127.0.0.1:5999/else/team/web@sha256:{zeros}"
        ))
        .count(),
        2,
        "{text}"
    );
}

/// Build once, deploy many, with short names: a promotion renders the target with the source's
/// digest, rewriting `team/web` as the run did; nothing is rebuilt.
#[tokio::test]
async fn promotion_of_a_short_named_image_deploys_the_source_digest() {
    let dev = TestContext::new("pin-promote-dev").await;
    let prod = TestContext::new("pin-promote-prod").await;
    let p = project(
        &dev,
        &[
            (
                "berth.yaml",
                "registry:\n  prefix: PREFIX\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: web\n    build: {context: web}\n    image: team/web\n    manifests: {path: [k8s]}\nenvironments:\n  - name: dev\n    namespace: dev\n  - name: prod\n    namespace: prod\n    promotion: manual\n    from: dev\n",
            ),
            ("k8s/web.yaml", SKAFFOLD_STYLE),
        ],
    );
    let first = run_ok(&dev, &p, &["-e", "dev"]);
    let web = first["built"]["web"].as_str().expect("built").to_string();
    let doc = result(&p.berth(
        &prod,
        &[
            "promote",
            "-o",
            "json",
            "--from",
            "dev",
            "--from-namespace",
            &dev.namespace,
            "--to",
            "prod",
            "-n",
            &prod.namespace,
        ],
    ));
    assert!(doc["built"].as_object().unwrap().is_empty(), "{doc}");
    assert_eq!(doc["kept"], serde_json::json!(["web"]), "{doc}");
    let d = deployment(&prod, "web").await;
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["image"], web.as_str(), "{spec}");
    assert_eq!(spec["initContainers"][0]["image"], web.as_str(), "{spec}");
}

/// `berth deploy -f` deployed `docker.io/library/busybox:latest` by tag without a word; now
/// every image left to a tag is named in a warning (a `warning` message event with `-o json`)
/// saying how to pin it, and a pinned one is not.
#[tokio::test]
async fn deploy_of_prerendered_manifests_warns_about_each_image_deployed_by_tag_only() {
    let ctx = TestContext::new("pin-deploy-tag").await;
    let dir = Dir::new();
    let pinned = format!("{}/pinned@sha256:{}", ctx.repository, "0".repeat(64));
    dir.write(
        "app.yaml",
        &SKAFFOLD_STYLE
            .replace("docker.io/team/web:v1", &pinned)
            .replace(
                "image: team/web\n",
                "image: docker.io/library/busybox:latest\n",
            ),
    );
    let r = run(
        &ctx,
        &["deploy", "-r", "tagged", "-f", &dir.file("app.yaml")],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let stderr = r.stderr;
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(
            "`docker.io/library/busybox:latest` (Deployment.apps web) is deployed by tag only"
        ) && warnings[0].contains(
            "--image docker.io/library/busybox:latest=docker.io/library/busybox@sha256:<digest>"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("`{pinned}`")), "{stderr}");
}

/// Operators name their workload's image in a custom resource (`spec.image`); such a field
/// was left as written, tag and all, while berth reported the build deployed. A CRD of the
/// same release defines the kind. (Short names in such fields: the unit tests of
/// berth-render's `images`.)
#[tokio::test]
async fn custom_resource_image_fields_naming_the_built_image_are_pinned() {
    let ctx = TestContext::new("pin-cr").await;
    let crd = Crd::new(&ctx, "apps", "App");
    let crd_and_app = format!(
        "{}---
apiVersion: {}
kind: App
metadata:
  name: web
spec:
  image: PREFIX/web:1.0
  replicas: 1
",
        crd.yaml(ANY_FIELDS),
        crd.api_version()
    );
    let p = project(
        &ctx,
        &[
            (
                "berth.yaml",
                "registry:\n  insecure: [REGISTRY]\n  mirrors: {docker.io: REGISTRY}\nservices:\n  - name: web\n    build: {context: web}\n    image: PREFIX/web\n    manifests: {path: [k8s]}\nenvironments:\n  - name: dev\n    namespace: dev\n",
            ),
            ("k8s/app.yaml", &crd_and_app),
        ],
    );
    let out = berth_in(&ctx, &p, &["run", "-o", "json"]);
    let app = crd.get(&ctx, "web").await;
    crd.delete(&ctx).await;
    let doc = result(&out);
    let web = doc["built"]["web"].as_str().expect("built");
    assert!(
        web.starts_with(&format!("{}/web@sha256:", ctx.repository)),
        "{doc}"
    );
    assert_eq!(
        app.unwrap().expect("the App exists")["spec"]["image"],
        web,
        "the custom resource runs the pushed digest"
    );
}
