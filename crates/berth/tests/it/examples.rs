//! The bundled examples end to end: each is copied into a fresh git repository, its images
//! pointed at the test's own repository, and deployed with `berth run` into the test's own
//! namespace(s); then a change, and one induced failure per example that must roll back.
//!
//! - `examples/shop` (scenario 4): three services from one generic template behind one
//!   Ingress; adding `ladies` builds only `ladies`; a change to one service builds only it, a
//!   change to the template builds nothing; an image that cannot be pulled rolls back.
//! - `examples/rails` (scenario 5): the migration Job completes before the Deployment changes;
//!   branches map to environments; a crash-looping release rolls back and is recorded failed.

use std::path::Path;

use berth_testkit::TestContext;
use serde_json::Value;

use crate::common::{Repo, Run, copy_dir, deployment, get, git, git_init, history, image_of};

/// An example in a temporary git repository, with its own build store.
pub(crate) struct Example(Repo);

impl std::ops::Deref for Example {
    type Target = Repo;
    fn deref(&self) -> &Repo {
        &self.0
    }
}

impl Example {
    /// `examples/<name>` committed on `branch`, with `from` replaced by `to` in `files`.
    pub(crate) fn new(name: &str, branch: &str, files: &[&str], from: &str, to: &str) -> Example {
        let ex = Repo::new(&format!("example-{name}"));
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        copy_dir(&example, &ex.dir);
        for f in files {
            ex.edit(f, from, to);
        }
        git_init(&ex.dir, branch);
        Example(ex)
    }

    /// `berth run -o json -n <the test's namespace>`: whether it succeeded, its events and its
    /// result (the last line).
    pub(crate) fn run(&self, ctx: &TestContext) -> Run {
        self.run_with(ctx, &[])
    }

    /// [`Example::run`] with more arguments.
    pub(crate) fn run_with(&self, ctx: &TestContext, extra: &[&str]) -> Run {
        let mut args = vec!["run", "-o", "json", "-n", &ctx.namespace];
        args.extend(extra);
        Run::of(&self.berth(ctx, &args))
    }

    /// `berth run` that must succeed.
    pub(crate) fn run_ok(&self, ctx: &TestContext) -> Run {
        let run = self.run(ctx);
        assert!(run.ok, "{run}");
        assert_eq!(run.result["result"], "ok", "{run}");
        run
    }

    /// `berth history -o json` of `release` in the test's namespace.
    pub(crate) fn history(&self, ctx: &TestContext, release: &str) -> Vec<Value> {
        history(ctx, release)
    }
}

async fn ingress_paths(ctx: &TestContext) -> Vec<(String, String)> {
    let ingress = get(ctx, "networking.k8s.io/v1", "Ingress", "shop").await;
    ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["backend"]["service"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

pub(crate) fn shop(ctx: &TestContext) -> Example {
    Example::new(
        "shop",
        "main",
        &["berth.yaml"],
        "127.0.0.1:15000/examples/shop",
        &ctx.repository,
    )
}

pub(crate) const SHOP: [&str; 3] = ["home", "kids", "mens"];

#[tokio::test]
async fn shop_deploys_three_services_behind_one_ingress_and_adds_ladies_alone() {
    let ctx = TestContext::new("ex-shop").await;
    let ex = shop(&ctx);

    let first = ex.run_ok(&ctx);
    assert_eq!(first.built(), ["home", "kids", "mens"], "{first}");
    for s in SHOP {
        let d = deployment(&ctx, s).await;
        assert_eq!(image_of(&d), first.image(s));
        assert!(
            first
                .image(s)
                .starts_with(&format!("{}/{s}@sha256:", ctx.repository)),
            "{}",
            first.image(s)
        );
        let rolling = &d["spec"]["strategy"]["rollingUpdate"];
        assert_eq!(rolling["maxSurge"], 1, "{d}");
        assert_eq!(rolling["maxUnavailable"], 0, "{d}");
        get(&ctx, "v1", "Service", s).await;
    }
    let paths: Vec<(String, String)> = SHOP
        .iter()
        .map(|s| (format!("/{s}"), s.to_string()))
        .collect();
    assert_eq!(ingress_paths(&ctx).await, paths);

    // A fourth service is a new folder and its path in the Ingress: berth.yaml is untouched.
    let config_before = std::fs::read(ex.path("berth.yaml")).unwrap();
    copy_dir(&ex.path("home"), &ex.path("ladies"));
    std::fs::remove_dir_all(ex.path("ladies/www/home")).unwrap();
    ex.write("ladies/www/ladies/index.html", "<h1>shop: ladies</h1>\n");
    let ingress = std::fs::read_to_string(ex.path("k8s/ingress.yaml")).unwrap();
    ex.write(
        "k8s/ingress.yaml",
        &format!(
            "{ingress}      - path: /ladies\n        pathType: Prefix\n        backend: {{service: {{name: ladies, port: {{number: 80}}}}}}\n"
        ),
    );
    ex.commit("ladies");
    assert_eq!(
        std::fs::read(ex.path("berth.yaml")).unwrap(),
        config_before,
        "adding a service does not touch berth.yaml"
    );
    let changed = std::process::Command::new("git")
        .arg("-C")
        .arg(&ex.dir)
        .args(["diff", "--name-only", "HEAD~1", "HEAD"])
        .output()
        .unwrap();
    let changed = String::from_utf8_lossy(&changed.stdout);
    let changed: Vec<&str> = changed.lines().collect();
    assert_eq!(
        changed,
        [
            "k8s/ingress.yaml",
            "ladies/Dockerfile",
            "ladies/www/ladies/index.html"
        ],
        "the new folder and the Ingress path, nothing else"
    );

    let second = ex.run_ok(&ctx);
    assert_eq!(second.result["revision"], 2, "{second}");
    assert_eq!(second.built(), ["ladies"], "only ladies is built: {second}");
    let mut kept: Vec<String> = serde_json::from_value(second.result["kept"].clone()).unwrap();
    kept.sort();
    assert_eq!(kept, SHOP, "{second}");
    for s in SHOP {
        assert_eq!(image_of(&deployment(&ctx, s).await), first.image(s), "{s}");
    }
    assert_eq!(
        image_of(&deployment(&ctx, "ladies").await),
        second.image("ladies")
    );
    let mut paths = paths;
    paths.push(("/ladies".into(), "ladies".into()));
    assert_eq!(ingress_paths(&ctx).await, paths);
}

#[tokio::test]
async fn shop_rebuilds_only_the_changed_service_and_no_service_for_a_template_change() {
    let ctx = TestContext::new("ex-shop-chg").await;
    let ex = shop(&ctx);
    let first = ex.run_ok(&ctx);

    // One service's source: only it is built and rolled.
    ex.write("kids/www/kids/index.html", "<h1>kids, new</h1>\n");
    ex.commit("kids page");
    let second = ex.run_ok(&ctx);
    assert_eq!(second.result["revision"], 2, "{second}");
    assert_eq!(second.built(), ["kids"], "{second}");
    assert_eq!(second.result["kept"], serde_json::json!(["home", "mens"]));
    assert_ne!(second.image("kids"), first.image("kids"));
    for s in ["home", "mens"] {
        assert_eq!(image_of(&deployment(&ctx, s).await), first.image(s), "{s}");
    }

    // The generic template: every service redeployed with its live digest, nothing built.
    ex.edit(
        "k8s/service.yaml.j2",
        "  template:\n    metadata:\n      labels: {app: shop, service: {{ service }}}",
        "  template:\n    metadata:\n      labels: {app: shop, service: {{ service }}, tier: web}",
    );
    ex.commit("template: a tier label on every pod");
    let third = ex.run_ok(&ctx);
    assert_eq!(third.result["revision"], 3, "{third}");
    assert!(third.built().is_empty(), "{third}");
    assert_eq!(
        third.result["kept"],
        serde_json::json!(["home", "kids", "mens"])
    );
    for s in SHOP {
        let d = deployment(&ctx, s).await;
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["tier"], "web");
        let expected = if s == "kids" {
            second.image(s)
        } else {
            first.image(s)
        };
        assert_eq!(image_of(&d), expected, "{s}");
    }
}

#[tokio::test]
async fn shop_image_pull_failure_in_one_service_rolls_back_with_a_diagnosis() {
    let ctx = TestContext::new("ex-shop-fail").await;
    let ex = shop(&ctx);
    let first = ex.run_ok(&ctx);

    // A new kids page whose pods cannot pull their image.
    ex.write("kids/www/kids/index.html", "<h1>kids, new</h1>\n");
    // A per-folder override: an entry named `kids` replaces the discovered one.
    ex.edit(
        "berth.yaml",
        "  - name: ingress",
        "  - name: kids\n    build: { context: kids }\n    manifests:\n      template: k8s/service.yaml.j2\n      values: { pod_annotations: { berth.dev/simulate: image-pull-error } }\n  - name: ingress",
    );
    ex.commit("kids: a page that cannot be pulled");
    let failed = ex.run(&ctx);
    assert!(!failed.ok, "{failed}");
    assert_eq!(failed.result["result"], "failed", "{failed}");
    let error = failed.error();
    assert!(error.contains("rolled back to revision 1"), "{error}");
    assert!(
        error.contains("container kids: image") && error.contains("cannot be pulled"),
        "names the failing service and says its image cannot be pulled: {error}"
    );

    for s in SHOP {
        let d = deployment(&ctx, s).await;
        assert_eq!(image_of(&d), first.image(s), "{s} runs its first digest");
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["berth.dev/simulate"].is_null(),
            "{d}"
        );
    }
    let history = ex.history(&ctx, "dev");
    let statuses: Vec<&str> = history
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.last(), Some(&"failed"), "{history:#?}");
    assert!(statuses.contains(&"deployed"), "{history:#?}");
}

pub(crate) fn rails(ctx: &TestContext) -> Example {
    Example::new(
        "rails",
        "master",
        &["berth.yaml", "k8s/web.yaml", "k8s/migrate.yaml"],
        "127.0.0.1:15000/examples/rails-web",
        &format!("{}/web", ctx.repository),
    )
}

/// The migration hook completed before the Deployment was applied, in `run`'s events.
fn migrated_before_rollout(run: &Run) {
    let migrated = run
        .position("Job/migrate", "ready")
        .unwrap_or_else(|| panic!("the migration Job completed: {run}"));
    let applied = run
        .position("Deployment/web", "applied")
        .unwrap_or_else(|| panic!("the Deployment was applied: {run}"));
    assert!(
        migrated < applied,
        "migration completes before the Deployment changes: {run}"
    );
}

#[tokio::test]
async fn rails_migrates_before_each_rollout_and_maps_branches_to_environments() {
    let staging = TestContext::new("ex-rails-stg").await;
    let production = TestContext::new("ex-rails-prod").await;
    let ex = rails(&staging);

    // Branch master: staging, chosen from the branch (no --env).
    let first = ex.run_ok(&staging);
    assert_eq!(first.result["release"], "staging", "{first}");
    migrated_before_rollout(&first);
    let job = get(&staging, "batch/v1", "Job", "migrate").await;
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert_eq!(
        image_of(&get(&staging, "batch/v1", "Job", "migrate").await),
        first.image("web"),
        "the migration runs the new image"
    );
    assert_eq!(
        image_of(&deployment(&staging, "web").await),
        first.image("web")
    );
    get(&staging, "v1", "Service", "web").await;
    get(&staging, "v1", "Secret", "rails-db").await;
    get(&staging, "autoscaling/v2", "HorizontalPodAutoscaler", "web").await;

    // A new release: the migration runs again, to completion, before the update.
    ex.write(
        "app/public/index.html",
        "<h1>rails stand-in: posts v2</h1>\n",
    );
    ex.commit("v2");
    let second = ex.run_ok(&staging);
    assert_eq!(second.result["revision"], 2, "{second}");
    migrated_before_rollout(&second);
    assert_ne!(second.image("web"), first.image("web"));
    assert_eq!(
        image_of(&deployment(&staging, "web").await),
        second.image("web")
    );

    // Branch production: the production environment (its own release).
    git(&ex.dir, &["checkout", "-q", "-b", "production"]);
    let prod = ex.run_ok(&production);
    assert_eq!(prod.result["release"], "production", "{prod}");
    migrated_before_rollout(&prod);
    assert!(
        image_of(&deployment(&production, "web").await)
            .starts_with(&format!("{}/web@sha256:", staging.repository))
    );
    assert_eq!(ex.history(&production, "production").len(), 1);
}

#[tokio::test]
async fn rails_crash_looping_release_rolls_back_and_is_recorded_failed() {
    let ctx = TestContext::new("ex-rails-fail").await;
    let ex = rails(&ctx);
    let first = ex.run_ok(&ctx);
    let good = first.image("web");

    // A new build whose pods crash.
    ex.write("app/public/index.html", "<h1>broken release</h1>\n");
    ex.edit(
        "k8s/web.yaml",
        "      labels: {app: rails}\n    spec:",
        "      labels: {app: rails}\n      annotations: {berth.dev/simulate: crash-loop}\n    spec:",
    );
    ex.commit("a release that crashes");
    let failed = ex.run(&ctx);
    assert!(!failed.ok, "{failed}");
    assert_eq!(failed.result["result"], "failed", "{failed}");
    let error = failed.error();
    assert!(error.contains("rolled back to revision 1"), "{error}");
    assert!(
        error.contains("container web: crash-looping"),
        "diagnoses the crash loop: {error}"
    );
    assert!(failed.stderr.contains("error:"), "{}", failed.stderr);

    let d = deployment(&ctx, "web").await;
    assert_eq!(image_of(&d), good, "the previous digest stays live");
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["berth.dev/simulate"].is_null(),
        "{d}"
    );
    let history = ex.history(&ctx, "staging");
    let last = history.last().unwrap();
    assert_eq!(last["status"], "failed", "{history:#?}");
    assert_eq!(last["revision"], 2, "{history:#?}");
    assert!(
        last["description"]
            .as_str()
            .unwrap()
            .contains("crash-looping"),
        "{history:#?}"
    );
}

pub(crate) fn flask(ctx: &TestContext) -> Example {
    Example::new(
        "flask",
        "main",
        &["berth.yaml", "k8s/base/web.yaml", "k8s/base/load-data.yaml"],
        "127.0.0.1:15000/examples/flask-web",
        &format!("{}/web", ctx.repository),
    )
}

#[tokio::test]
async fn flask_overlay_statefulset_and_a_data_load_that_runs_once() {
    let ctx = TestContext::new("ex-flask").await;
    let ex = flask(&ctx);
    let first = ex.run(&ctx);
    assert!(first.ok, "{first}");
    let web = first.image("web");
    // The dev overlay: one web replica; the database's three members are ready.
    let dep = deployment(&ctx, "web").await;
    assert_eq!(dep["spec"]["replicas"], 1, "{dep}");
    assert_eq!(image_of(&dep), web);
    let db = get(&ctx, "apps/v1", "StatefulSet", "mongo").await;
    assert_eq!(db["status"]["readyReplicas"], 3, "{db}");
    // The data load ran after the rollout, in the new image, and succeeded.
    let job = get(&ctx, "batch/v1", "Job", "load-data").await;
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        web.as_str()
    );
    let loaded = first
        .position("Job/load-data", "ready")
        .expect("load-data ran");
    let rolled = first
        .position("Deployment/web", "ready")
        .expect("web ready");
    assert!(rolled < loaded, "post-deploy: {first}");
    let uid = job["metadata"]["uid"].clone();

    // A new page: web is rebuilt and rolled out; the data load is not run again.
    ex.write("web/static/index.html", "<h1>changed</h1>\n");
    ex.commit("new page");
    let second = ex.run(&ctx);
    assert!(second.ok, "{second}");
    assert_ne!(image_of(&deployment(&ctx, "web").await), web);
    let job = get(&ctx, "batch/v1", "Job", "load-data").await;
    assert_eq!(
        job["metadata"]["uid"], uid,
        "the succeeded data load was kept, not re-run"
    );
    assert!(
        second.stderr.contains("succeeded before")
            || second.events.iter().any(|e| {
                e["object"] == "Job/load-data"
                    && e["message"].as_str().unwrap_or("").contains("once")
            }),
        "{second}"
    );
}

pub(crate) fn board(ctx: &TestContext) -> Example {
    Example::new(
        "board",
        "main",
        &["berth.yaml", "chart/values.yaml"],
        "127.0.0.1:15000/examples/board-web",
        &format!("{}/web", ctx.repository),
    )
}

#[tokio::test]
async fn board_helm_release_redeploys_every_rebuild_and_rolls_back_a_crash() {
    let ctx = TestContext::new("ex-board").await;
    let ex = board(&ctx);
    let first = ex.run(&ctx);
    assert!(first.ok, "{first}");
    assert!(
        first.events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 test passed"))),
        "the app's test ran in the image: {first}"
    );
    let v1 = first.image("web");
    assert_eq!(image_of(&deployment(&ctx, "board").await), v1);

    // A code change under the same tag scheme still reaches the cluster: pinned by digest.
    ex.edit("app/server.js", "slice(0, 500)", "slice(0, 280)");
    ex.commit("shorter messages");
    let second = ex.run(&ctx);
    assert!(second.ok, "{second}");
    let v2 = second.image("web");
    assert_ne!(v2, v1);
    assert_eq!(image_of(&deployment(&ctx, "board").await), v2);

    // A release whose pods crash-loop: rolled back to v2 with the diagnosis.
    ex.edit(
        "chart/values.yaml",
        "podAnnotations: {}",
        "podAnnotations: {berth.dev/simulate: crash-loop}",
    );
    ex.commit("crash");
    let bad = ex.run(&ctx);
    assert!(!bad.ok, "{bad}");
    assert!(bad.error().contains("rolled back to revision 2"), "{bad}");
    assert!(bad.error().contains("crash-looping"), "{bad}");
    let dep = deployment(&ctx, "board").await;
    assert_eq!(image_of(&dep), v2);
    assert!(dep["spec"]["template"]["metadata"]["annotations"]["berth.dev/simulate"].is_null());
}

/// `berth init` on an example whose berth.yaml was removed writes one that deploys it.
async fn init_then_run(name: &str, make: fn(&TestContext) -> Example, workload: &str) {
    let ctx = TestContext::new(&format!("init-{name}")).await;
    let ex = make(&ctx);
    std::fs::remove_file(ex.path("berth.yaml")).unwrap();
    ex.commit("no berth.yaml");
    let out = ctx
        .env
        .berth(env!("CARGO_BIN_EXE_berth").as_ref())
        .args(["init", "-n", &ctx.namespace])
        .arg(&ex.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {stderr}");
    ex.commit("berth init");
    if name == "shop" {
        let written = std::fs::read_to_string(ex.path("berth.yaml")).unwrap();
        assert!(
            written.contains("- discover: \"*/Dockerfile\""),
            "the generic-template layout is proposed as discovery: {written}"
        );
        assert!(stderr.contains("generic-template layout"), "{stderr}");
    }
    let run = ex.run(&ctx);
    assert!(run.ok, "{name}: {stderr}\n{run}");
    assert!(!run.built().is_empty(), "{name}: {run}");
    let image = image_of(&deployment(&ctx, workload).await);
    assert!(
        image.contains("@sha256:"),
        "{name}: the manifests' image is pinned: {image}"
    );
}

#[tokio::test]
async fn init_writes_a_working_berth_yaml_for_rails_flask_and_board() {
    init_then_run("rails", rails, "web").await;
    init_then_run("flask", flask, "web").await;
    init_then_run("board", board, "app").await;
}

#[tokio::test]
async fn init_proposes_discovery_for_shop_and_it_deploys() {
    init_then_run("shop", shop, "home").await;
}

/// Most builds under way at once, from the step events (`<service>/build` started, not yet
/// finished).
fn peak_parallel_builds(run: &Run) -> usize {
    let (mut now, mut peak) = (0usize, 0usize);
    for (event, step) in run.steps() {
        if !step.ends_with("/build") {
            continue;
        }
        if event == "step_started" {
            now += 1;
            peak = peak.max(now);
        } else {
            now -= 1;
        }
    }
    peak
}

#[tokio::test]
async fn shop_builds_changed_services_in_parallel_and_a_failure_stops_them_before_any_push() {
    let ctx = TestContext::new("ex-shop-par").await;
    let ex = shop(&ctx);

    // Three services at once, three jobs: every build is attributed to its service, they
    // overlap, and each is pushed only after all three built.
    let first = ex.run_with(&ctx, &["--jobs", "3"]);
    assert!(first.ok, "{first}");
    assert_eq!(first.built(), SHOP, "{first}");
    let steps = first.steps();
    for s in SHOP {
        for step in ["build", "push"] {
            let name = format!("{s}/{step}");
            assert!(
                steps
                    .iter()
                    .any(|(e, n)| e == "step_finished" && *n == name),
                "{name} finished: {first}"
            );
        }
    }
    let last_build = steps
        .iter()
        .rposition(|(e, n)| e == "step_finished" && n.ends_with("/build"))
        .unwrap();
    let first_push = steps
        .iter()
        .position(|(_, n)| n.ends_with("/push"))
        .unwrap();
    assert!(
        last_build < first_push,
        "all built before any push: {first}"
    );
    assert!(peak_parallel_builds(&first) >= 2, "builds overlap: {first}");

    // --jobs 1 is one after another.
    for s in SHOP {
        ex.write(
            &format!("{s}/www/{s}/index.html"),
            &format!("<h1>{s} v2</h1>\n"),
        );
    }
    ex.commit("every page");
    let second = ex.run_with(&ctx, &["--jobs", "1"]);
    assert!(second.ok, "{second}");
    assert_eq!(second.built(), SHOP, "{second}");
    assert_eq!(peak_parallel_builds(&second), 1, "{second}");

    // All three change again, one of them cannot build: the run stops, nothing is pushed
    // (not even the services that built), nothing is deployed.
    for s in SHOP {
        ex.write(
            &format!("{s}/www/{s}/index.html"),
            &format!("<h1>{s} v3</h1>\n"),
        );
    }
    ex.edit(
        "mens/Dockerfile",
        "COPY www /www",
        "COPY www /www\nRUN exit 3",
    );
    ex.commit("every page, mens broken");
    let failed = ex.run_with(&ctx, &["--jobs", "3"]);
    assert!(!failed.ok, "{failed}");
    assert!(failed.error().contains("mens"), "{failed}");
    assert!(
        !failed.steps().iter().any(|(_, n)| n.ends_with("/push")),
        "nothing pushed: {failed}"
    );
    let head = {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&ex.dir)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim()[..12].to_string()
    };
    for s in SHOP {
        let tag = ctx.image(s, &head);
        assert!(
            ctx.env.registry().pull_manifest(&tag).await.is_err(),
            "{tag} was not pushed"
        );
        assert_eq!(
            image_of(&deployment(&ctx, s).await),
            second.image(s),
            "{s} still runs its second digest"
        );
    }
    assert_eq!(ex.history(&ctx, "dev").len(), 2, "no release was attempted");
}

#[tokio::test]
async fn a_failed_build_kills_the_run_steps_of_the_builds_it_stops() {
    let ctx = TestContext::new("ex-shop-stop").await;
    let ex = shop(&ctx);
    // home sleeps in a RUN step while mens fails at once: home's build is stopped mid-RUN.
    let marker = "sleep 41.37";
    ex.edit(
        "home/Dockerfile",
        "COPY www /www",
        &format!("COPY www /www\nRUN {marker}"),
    );
    ex.edit(
        "mens/Dockerfile",
        "COPY www /www",
        "COPY www /www\nRUN exit 3",
    );
    ex.commit("home sleeps, mens fails");
    let child = ctx
        .env
        .berth(env!("CARGO_BIN_EXE_berth").as_ref())
        .args([
            "run",
            "-o",
            "json",
            "--jobs",
            "3",
            "-n",
            &ctx.namespace,
            "-c",
        ])
        .arg(ex.path("berth.yaml"))
        .env("BERTH_STORE", &ex.store)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("building service `mens` failed"),
        "{stdout}"
    );
    // Whether home's RUN had started or not, nothing of it is left running.
    let running = std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .unwrap();
    assert!(
        running.stdout.is_empty(),
        "the stopped build's RUN step still runs: pids {}",
        String::from_utf8_lossy(&running.stdout)
    );
    let containers = std::process::Command::new("runc")
        .args(["list", "-q"])
        .output()
        .unwrap();
    let prefix = format!("berth-{pid}-");
    let left: Vec<String> = String::from_utf8_lossy(&containers.stdout)
        .lines()
        .filter(|id| id.starts_with(&prefix))
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "containers left behind: {left:?}");
}
