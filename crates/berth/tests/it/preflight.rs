//! The preflight before the first apply (discovery + one server-side dry run of the whole set),
//! and `berth render --convert`, against the real API server of the test environment.
//!
//! "Nothing was applied" is proved by watches opened before the deploy: each watch first sees
//! a sentinel object the test creates (so it is established), and after the deploy a second
//! sentinel (so every event before it was delivered — a watch delivers in order). Anything
//! else a watch saw in between was created by the deploy, even if it was deleted again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_cluster::Watched;
use berth_testkit::TestContext;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::{BUSYBOX, Crd, Dir, deployment_yaml, get, history, run};

/// A watch on one kind in the test namespace that records every object name it sees.
struct Watch {
    api: &'static str,
    kind: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

fn sentinel(api: &str, kind: &str, name: &str) -> Value {
    let mut v = json!({"apiVersion": api, "kind": kind, "metadata": {"name": name}});
    match kind {
        "ConfigMap" => v["data"] = json!({"sentinel": "yes"}),
        "Service" => v["spec"] = json!({"ports": [{"port": 80}]}),
        "Deployment" => {
            v["spec"] = json!({
                "replicas": 0,
                "selector": {"matchLabels": {"sentinel": name}},
                "template": {"metadata": {"labels": {"sentinel": name}},
                    "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:latest"}]}}
            })
        }
        other => panic!("no sentinel for {other}"),
    }
    v
}

impl Watch {
    async fn open(ctx: &TestContext, api: &'static str, kind: &'static str) -> Watch {
        let mut stream = ctx
            .cluster
            .watch(api, kind, Some(&ctx.namespace), None, None)
            .await
            .expect("watch");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                let (what, v) = match ev {
                    Ok(Watched::Applied(v)) => ("applied", v),
                    Ok(Watched::Deleted(v)) => ("deleted", v),
                    Err(_) => continue,
                };
                let name = v["metadata"]["name"].as_str().unwrap_or("?").to_string();
                record.lock().unwrap().push(format!("{what} {name}"));
            }
        });
        let w = Watch {
            api,
            kind,
            seen,
            task,
        };
        w.until_seen(ctx, "sentinel-start").await;
        w
    }

    /// Creates sentinel `name` and waits until the watch saw it.
    async fn until_seen(&self, ctx: &TestContext, name: &str) {
        ctx.apply(sentinel(self.api, self.kind, name)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let wanted = format!("applied {name}");
        while !self.seen.lock().unwrap().contains(&wanted) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the {} watch never saw its sentinel {name}",
                self.kind
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the watch saw between the two sentinels, other than the sentinels.
    async fn between(self, ctx: &TestContext) -> Vec<String> {
        self.until_seen(ctx, "sentinel-end").await;
        self.task.abort();
        let seen = self.seen.lock().unwrap().clone();
        seen.into_iter()
            .filter(|s| !s.ends_with(" sentinel-start") && !s.ends_with(" sentinel-end"))
            .collect()
    }
}

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
";

const OLD_INGRESS: &str = "apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: shop.example
    http:
      paths:
      - path: /
        backend:
          serviceName: web
          servicePort: 80
";

#[tokio::test]
async fn removed_extensions_ingress_applies_nothing_and_names_the_replacement() {
    let ctx = TestContext::new("pf-ingress").await;
    let dir = Dir::new();
    dir.write(
        "app.yaml",
        &format!("{SERVICE}---\n{}", deployment_yaml("web", BUSYBOX, 1, None)),
    );
    dir.write("ingress.yaml", OLD_INGRESS);
    let services = Watch::open(&ctx, "v1", "Service").await;
    let deployments = Watch::open(&ctx, "apps/v1", "Deployment").await;

    let r = run(&ctx, &["deploy", "-r", "shop", "-f", &dir.path()]);

    let created = [
        services.between(&ctx).await,
        deployments.between(&ctx).await,
    ]
    .concat();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        created.is_empty(),
        "the deploy created objects before failing: {created:?}\n{}",
        r.all()
    );
    let err = &r.stderr;
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(err.contains("Ingress/web ("), "{err}");
    assert!(
        err.contains("ingress.yaml:1)"),
        "the source file:line: {err}"
    );
    assert!(
        err.contains(
            "extensions/v1beta1 Ingress was removed in Kubernetes 1.22; use networking.k8s.io/v1"
        ),
        "{err}"
    );
    assert!(
        err.contains("backend.serviceName -> backend.service.name")
            && err.contains("backend.servicePort -> backend.service.port.number")
            && err.contains("pathType is required"),
        "the field changes: {err}"
    );
    assert!(err.contains("berth render --convert"), "{err}");
    assert!(
        history(&ctx, "shop").is_empty(),
        "no release is recorded for a deploy that changed nothing"
    );
}

#[tokio::test]
async fn one_invalid_object_among_many_applies_nothing_and_every_refusal_is_reported() {
    let ctx = TestContext::new("pf-invalid").await;
    let dir = Dir::new();
    dir.write(
        "config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n",
    );
    dir.write(
        "web.yaml",
        &format!("{SERVICE}---\n{}", deployment_yaml("web", BUSYBOX, 2, None)),
    );
    // Two faults the API server's validation finds, in two files: both must be reported.
    dir.write("worker.yaml", &deployment_yaml("worker", BUSYBOX, -1, None));
    dir.write(
        "admin.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: admin}\nspec:\n  ports: [{port: 70000}]\n",
    );
    let configs = Watch::open(&ctx, "v1", "ConfigMap").await;
    let services = Watch::open(&ctx, "v1", "Service").await;
    let deployments = Watch::open(&ctx, "apps/v1", "Deployment").await;

    let r = run(&ctx, &["deploy", "-r", "app", "-f", &dir.path()]);

    let created = [
        configs.between(&ctx).await,
        services.between(&ctx).await,
        deployments.between(&ctx).await,
    ]
    .concat();
    assert_eq!(r.code, 1, "{}", r.all());
    // The namespace's own kube-root-ca.crt ConfigMap is not ours; nothing else may appear.
    let created: Vec<_> = created
        .into_iter()
        .filter(|c| !c.ends_with("kube-root-ca.crt"))
        .collect();
    assert!(
        created.is_empty(),
        "objects were created: {created:?}\n{}",
        r.all()
    );
    let err = &r.stderr;
    assert!(
        err.contains("2 of 5 objects would be refused by the cluster; nothing was applied"),
        "{err}"
    );
    assert!(
        err.contains("Deployment/worker (") && err.contains("worker.yaml:1)"),
        "{err}"
    );
    assert!(
        err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "the API server's message: {err}"
    );
    assert!(
        err.contains("Service/admin (") && err.contains("admin.yaml:1)"),
        "{err}"
    );
    assert!(err.contains("Invalid value: 70000"), "{err}");
    assert!(history(&ctx, "app").is_empty(), "no release recorded");
}

#[tokio::test]
async fn custom_resource_of_a_crd_in_the_same_release_passes_and_a_bad_one_is_refused_before_workloads()
 {
    let ctx = TestContext::new("pf-crd").await;
    let crd = Crd::new(&ctx, "widgets", "Widget");
    let definition = crd.yaml(
        "        properties:
          spec:
            type: object
            properties:
              teeth: {type: integer}
",
    );
    let widget = |teeth: &str| {
        format!(
            "apiVersion: {}/v1\nkind: Widget\nmetadata:\n  name: gear\nspec:\n  teeth: {teeth}\n",
            crd.group
        )
    };
    let dir = Dir::new();
    dir.write("crd.yaml", &definition);
    dir.write("widget.yaml", &widget("12"));
    dir.write("web.yaml", &deployment_yaml("web", BUSYBOX, 1, None));
    let first = run(&ctx, &["deploy", "-r", "app", "-f", &dir.path()]);
    let gear = crd.get(&ctx, "gear").await;

    // Revision 2: the custom resource breaks its schema, and a new Deployment comes along.
    dir.write("widget.yaml", &widget("many"));
    dir.write("extra.yaml", &deployment_yaml("extra", BUSYBOX, 1, None));
    let deployments = Watch::open(&ctx, "apps/v1", "Deployment").await;
    let second = run(&ctx, &["deploy", "-r", "app", "-f", &dir.path()]);
    let created = deployments.between(&ctx).await;

    crd.delete(&ctx).await;

    assert_eq!(first.code, 0, "{}", first.all());
    assert!(
        !created.iter().any(|c| c.ends_with(" extra")),
        "the Deployment of the failed revision was applied: {created:?}\n{}",
        second.all()
    );
    assert!(
        first.stderr.contains("Widget/gear (")
            && first
                .stderr
                .contains("its CustomResourceDefinition is in this release"),
        "the reason it was not dry-run up front: {}",
        first.all()
    );
    assert!(
        first
            .stderr
            .contains("custom resource(s) of this release's CRDs passed a server-side dry run"),
        "{}",
        first.all()
    );
    assert_eq!(
        gear.expect("get widget").expect("widget exists")["spec"]["teeth"],
        12
    );
    assert_eq!(second.code, 1, "{}", second.all());
    assert!(
        second.stderr.contains("rolled back to revision 1"),
        "{}",
        second.all()
    );
    assert!(
        second.stderr.contains("Widget/gear (") && second.stderr.contains("widget.yaml:1)"),
        "{}",
        second.all()
    );
    assert!(second.stderr.contains("spec.teeth"), "{}", second.all());
}

/// Manifests as old tutorials wrote them (Kubernetes 1.8-1.15 era).
const TUTORIAL: &str = "apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  name: guestbook
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: guestbook, tier: frontend}
    spec:
      containers:
      - name: php-redis
        image: docker.io/library/busybox:latest
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: guestbook
spec:
  selector: {app: guestbook, tier: frontend}
  ports: [{port: 80}]
---
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: guestbook
  annotations:
    kubernetes.io/ingress.class: nginx
spec:
  rules:
  - host: guestbook.example
    http:
      paths:
      - path: /
        backend:
          serviceName: guestbook
          servicePort: 80
---
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata:
  name: guestbook
spec:
  scaleTargetRef: {apiVersion: extensions/v1beta1, kind: Deployment, name: guestbook}
  minReplicas: 2
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, targetAverageUtilization: 70}
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: guestbook
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: guestbook}
";

const TUTORIAL_CRON: &str = "apiVersion: batch/v1beta1
kind: CronJob
metadata:
  name: cleanup
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: cleanup
            image: docker.io/library/busybox:latest
            command: [\"true\"]
";

#[tokio::test]
async fn render_convert_turns_old_tutorial_manifests_into_ones_the_cluster_accepts() {
    let ctx = TestContext::new("pf-convert").await;
    let dir = Dir::new();
    dir.write("guestbook.yaml", TUTORIAL);
    dir.write("cron.yaml", TUTORIAL_CRON);

    // As written, the cluster refuses them.
    let refused = run(&ctx, &["deploy", "-r", "old", "-f", &dir.path()]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("5 of 6 objects would be refused by the cluster; nothing was applied"),
        "{}",
        refused.all()
    );

    // `render` names each one (the cluster's version is asked).
    let warned = run(&ctx, &["render", "-f", &dir.path()]);
    assert_eq!(warned.code, 0, "{}", warned.all());
    assert!(
        warned.stderr.contains("warning: CronJob/cleanup (")
            && warned
                .stderr
                .contains("batch/v1beta1 CronJob was removed in Kubernetes 1.25; use batch/v1"),
        "{}",
        warned.all()
    );
    assert!(
        warned.stderr.contains("it refuses this object"),
        "{}",
        warned.all()
    );

    // --convert on stdout: the converted YAML deploys.
    let converted = run(&ctx, &["render", "--convert", "-f", &dir.path()]);
    assert_eq!(converted.code, 0, "{}", converted.all());
    assert!(
        converted.stderr.contains("converted: Ingress/guestbook (")
            && converted
                .stderr
                .contains("extensions/v1beta1 -> networking.k8s.io/v1"),
        "{}",
        converted.all()
    );
    let out = Dir::new();
    out.write("all.yaml", &converted.stdout);
    let deployed = run(&ctx, &["deploy", "-r", "tutorial", "-f", &out.path()]);
    assert_eq!(deployed.code, 0, "{}", deployed.all());
    let ingress = get(&ctx, "networking.k8s.io/v1", "Ingress", "guestbook").await;
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({"name": "guestbook", "port": {"number": 80}})
    );

    // --convert --write: the files themselves, which then deploy as the same release.
    let w = run(&ctx, &["render", "--convert", "--write", "-f", &dir.path()]);
    assert_eq!(w.code, 0, "{}", w.all());
    assert!(w.stdout.is_empty(), "--write prints no YAML: {}", w.stdout);
    let text = std::fs::read_to_string(dir.0.join("cron.yaml")).unwrap();
    assert!(text.starts_with("apiVersion: batch/v1\n"), "{text}");
    let again = run(&ctx, &["render", "--convert", "-f", &dir.path()]);
    assert!(
        again
            .stderr
            .contains("no object uses a removed or deprecated API"),
        "{}",
        again.all()
    );
    let redeployed = run(&ctx, &["deploy", "-r", "tutorial", "-f", &dir.path()]);
    assert_eq!(redeployed.code, 0, "{}", redeployed.all());
}

#[tokio::test]
async fn render_convert_write_never_rewrites_kustomize_output_or_a_linked_file() {
    let ctx = TestContext::new("pf-write").await;
    let outside = Dir::new();
    outside.write("cron.yaml", TUTORIAL_CRON);
    let kustomized = Dir::new();
    kustomized.write("cron.yaml", TUTORIAL_CRON);
    kustomized.write("kustomization.yaml", "resources: [cron.yaml]\n");
    let linked = Dir::new();
    std::os::unix::fs::symlink(outside.0.join("cron.yaml"), linked.0.join("cron.yaml")).unwrap();

    let k = run(
        &ctx,
        &[
            "render",
            "--convert",
            "--write",
            "--kustomize",
            &kustomized.path(),
        ],
    );
    let l = run(
        &ctx,
        &["render", "--convert", "--write", "-f", &linked.path()],
    );

    assert_eq!(k.code, 1, "{}", k.all());
    assert!(
        k.stderr.contains("CronJob/cleanup (") && k.stderr.contains("not rewritten"),
        "{}",
        k.all()
    );
    assert_eq!(
        std::fs::read_to_string(kustomized.0.join("cron.yaml")).unwrap(),
        TUTORIAL_CRON
    );
    assert_eq!(l.code, 1, "{}", l.all());
    assert!(l.stderr.contains("not rewritten"), "{}", l.all());
    assert_eq!(
        std::fs::read_to_string(outside.0.join("cron.yaml")).unwrap(),
        TUTORIAL_CRON,
        "the file behind the link is unchanged"
    );
}

#[tokio::test]
async fn deprecated_but_served_api_deploys_with_a_warning_naming_the_replacement() {
    let ctx = TestContext::new("pf-deprecated").await;
    let dir = Dir::new();
    dir.write(
        "external.yaml",
        "apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db}
subsets:
- addresses: [{ip: 192.0.2.40}]
  ports: [{port: 5432}]
",
    );
    let r = run(&ctx, &["deploy", "-r", "ext", "-f", &dir.path()]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("warning: Endpoints/db (")
            && r.stderr.contains(
                "v1 Endpoints is deprecated since Kubernetes 1.33; use discovery.k8s.io/v1 EndpointSlice"
            )
            && r.stderr.contains("which still serves it"),
        "{}",
        r.all()
    );
}

#[tokio::test]
async fn a_kind_in_a_version_nobody_serves_names_the_versions_the_cluster_has() {
    let ctx = TestContext::new("pf-version").await;
    let dir = Dir::new();
    dir.write(
        "hpa.yaml",
        "apiVersion: autoscaling/v3
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 3
",
    );
    let r = run(&ctx, &["deploy", "-r", "app", "-f", &dir.path()]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("HorizontalPodAutoscaler/web (")
            && r.stderr.contains("hpa.yaml:1)")
            && r.stderr
                .contains("does not serve kind `HorizontalPodAutoscaler` in `autoscaling/v3`")
            && r.stderr.contains(
                "the cluster serves HorizontalPodAutoscaler in autoscaling/v2, autoscaling/v1"
            ),
        "{}",
        r.all()
    );
}

/// `--convert --write` rewrote a file with a plain write: a kill -9 (or a full disk) in the
/// middle left the user's manifest truncated. Now the new text is staged beside it and renamed
/// over it: killed between the two, the file is the old one, whole.
#[tokio::test]
async fn a_kill_during_convert_write_leaves_the_manifest_whole() {
    let ctx = TestContext::new("pf-write-kill").await;
    let d = Dir::new();
    d.write("cron.yaml", TUTORIAL_CRON);
    let file = d.0.join("cron.yaml");
    let staged = d.0.join(".cron.yaml.berth-new");
    let args = [
        "render",
        "--convert",
        "--write",
        "--kube-version",
        "1.33",
        "-f",
        &d.path(),
    ];
    let mut paused = ctx
        .env
        .berth(env!("CARGO_BIN_EXE_berth").as_ref())
        .args(args)
        .env("BERTH_TEST_PAUSE_AT", "rewrite-before-rename")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !staged.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "berth never staged the new text at {}",
            staged.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    paused.kill().unwrap();
    paused.wait().unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), TUTORIAL_CRON);

    let again = run(&ctx, &args);
    assert_eq!(again.code, 0, "{}", again.all());
    let converted = std::fs::read_to_string(&file).unwrap();
    assert!(converted.contains("batch/v1"), "{converted}");
    assert!(!staged.exists(), "the staged file was renamed into place");
}
