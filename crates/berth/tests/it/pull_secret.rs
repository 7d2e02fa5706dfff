//! Pull secrets on the real node: `examples/hello` pushed to the environment's registry that
//! requires a login (htpasswd, `BERTH_TEST_PRIVATE_REGISTRY`), which the node's containerd pulls
//! from with the pods' `imagePullSecrets` only. berth checks, before applying anything, that
//! every pod whose image needs a login has a pull secret the registry accepts, or creates one
//! (`deploy.pull-secret` / `--pull-secret`) from the login it pushed with.
//! An image it cannot check (not pushed by it, no login) that the registry refuses during the
//! rollout is named as refused credentials.

use std::path::PathBuf;

use berth_testkit::TestContext;

use crate::common::{Dir, Run, berth, deployment, image_of, live, text};
use crate::examples::Example;
use crate::real_node::{failed_and_rolled_back, hello_deployed, page, served};

/// `examples/hello` whose image goes to the private registry, with a docker config holding the
/// registry's login for berth's pushes; its page carries `marker`.
struct Private {
    ex: Example,
    docker_config: PathBuf,
    host: String,
    password: String,
}

impl Private {
    fn new(ctx: &TestContext, marker: &str) -> Private {
        let (host, user, password) = ctx.env.private_registry();
        let repository = ctx.repository.replacen(ctx.env.registry_host(), host, 1);
        let ex = Example::new(
            "hello",
            "main",
            &["berth.yaml", "k8s/app.yaml"],
            "127.0.0.1:15000/examples/hello-web",
            &format!("{repository}/web"),
        );
        ex.edit(
            "berth.yaml",
            "insecure: [127.0.0.1:15000]",
            &format!("insecure: [127.0.0.1:15000, {host}]"),
        );
        ex.write("web/index.html", &page(marker));
        ex.commit(marker);
        let docker_config = std::env::temp_dir().join(format!(
            "berth-pull-config-{}.json",
            berth_testkit::unique_suffix()
        ));
        std::fs::write(
            &docker_config,
            serde_json::json!({"auths": {host: {"username": user, "password": password}}})
                .to_string(),
        )
        .unwrap();
        Private {
            ex,
            docker_config,
            host: host.to_string(),
            password: password.to_string(),
        }
    }

    fn run(&self, ctx: &TestContext, extra: &[&str]) -> Run {
        let mut args = vec!["--docker-config", self.docker_config.to_str().unwrap()];
        args.extend(extra);
        let run = self.ex.run_with(ctx, &args);
        assert!(
            !run.to_string().contains(&self.password),
            "no output shows the registry password: {run}"
        );
        run
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.docker_config);
    }
}

#[tokio::test]
async fn image_on_a_registry_that_wants_a_login_without_a_pull_secret_is_refused_before_apply() {
    let ctx = TestContext::on_real_node("pull-none").await;
    let p = Private::new(&ctx, "never served");
    let failed = p.run(&ctx, &[]);
    assert!(!failed.ok, "{failed}");
    let error = failed.error();
    for want in [
        "k8s/app.yaml:8): image".to_string(),
        format!("image {}/", p.host),
        format!("registry {}, which refuses anonymous pulls", p.host),
        "no pull secret of the pod holds a login".to_string(),
        "nothing was applied".to_string(),
        "`deploy: {pull-secret: NAME}`".to_string(),
        format!("kubectl -n {} create secret docker-registry", ctx.namespace),
    ] {
        assert!(
            error.contains(&want),
            "the error says {want:?}: {error}\n{failed}"
        );
    }
    assert!(
        live(&ctx, "apps/v1", "Deployment", "hello").await.is_none()
            && live(&ctx, "v1", "ConfigMap", "hello-config")
                .await
                .is_none(),
        "nothing was applied: {failed}"
    );
}

#[tokio::test]
async fn pull_secret_berth_creates_from_its_push_login_lets_the_real_node_pull_and_serve() {
    let ctx = TestContext::on_real_node("pull-create").await;
    let mark = format!("private build {}", berth_testkit::unique_suffix());
    let p = Private::new(&ctx, &mark);
    p.ex.edit(
        "berth.yaml",
        "deploy: { timeout: 2m }",
        "deploy: { timeout: 2m, pull-secret: berth-pull }",
    );
    p.ex.commit("berth manages the pull secret");
    let run = p.run(&ctx, &[]);
    assert!(run.ok, "{run}");
    served(&ctx, "hello", "/", &mark).await;
    let secret = live(&ctx, "v1", "Secret", "berth-pull")
        .await
        .expect("berth created Secret berth-pull");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let d = deployment(&ctx, "hello").await;
    assert_eq!(
        d["spec"]["template"]["spec"]["imagePullSecrets"],
        serde_json::json!([{"name": "berth-pull"}]),
        "the pod template names it: {d}"
    );
    assert!(image_of(&d).starts_with(&p.host), "{d}");
    // `--pull-secret` wins over berth.yaml, and a second deploy updates the same way.
    let two = format!("private build two {}", berth_testkit::unique_suffix());
    p.ex.write("web/index.html", &page(&two));
    p.ex.commit("two");
    let again = p.run(&ctx, &["--pull-secret", "from-flag"]);
    assert!(again.ok, "{again}");
    served(&ctx, "hello", "/", &two).await;
    assert!(live(&ctx, "v1", "Secret", "from-flag").await.is_some());
}

/// The team's own pull secret `team-pull` holding `password` for the private registry.
async fn team_pull(ctx: &TestContext, host: &str, password: &str) {
    let (_, user, _) = ctx.env.private_registry();
    let config = serde_json::json!({"auths": {host: {"username": user, "password": password}}});
    ctx.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "team-pull"},
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .await;
}

#[tokio::test]
async fn pull_secret_with_a_wrong_password_is_named_before_apply_and_nothing_changes() {
    let ctx = TestContext::on_real_node("pull-wrong").await;
    let one = format!("private good {}", berth_testkit::unique_suffix());
    let p = Private::new(&ctx, &one);
    let (_, user, password) = ctx.env.private_registry();
    // The manifests name the team's own Secret; first with the right login.
    team_pull(&ctx, &p.host, password).await;
    p.ex.edit(
        "k8s/app.yaml",
        "    spec:\n      containers:",
        "    spec:\n      imagePullSecrets: [{name: team-pull}]\n      containers:",
    );
    p.ex.commit("the team's pull secret");
    let first = p.run(&ctx, &[]);
    assert!(first.ok, "{first}");
    served(&ctx, "hello", "/", &one).await;
    let before = deployment(&ctx, "hello").await;

    // Then someone rotates the password and the Secret keeps the old one.
    team_pull(&ctx, &p.host, "not-the-password").await;
    p.ex.write("web/index.html", &page("never served"));
    p.ex.commit("a new build");
    let failed = p.run(&ctx, &[]);
    assert!(!failed.ok, "{failed}");
    let error = failed.error();
    assert!(
        error.contains(&format!(
            "registry {} refuses the login in pull secret team-pull (user {user})",
            p.host
        )) && error.contains("nothing was applied"),
        "{error}\n{failed}"
    );
    assert!(!error.contains("not-the-password"), "{error}");
    let after = deployment(&ctx, "hello").await;
    assert_eq!(
        after["metadata"]["generation"], before["metadata"]["generation"],
        "the Deployment was not touched"
    );
    assert_eq!(image_of(&after), image_of(&before));
    served(&ctx, "hello", "/", &one).await;
}

#[tokio::test]
async fn pull_secret_of_the_service_account_counts_and_berth_adds_none() {
    let ctx = TestContext::on_real_node("pull-sa").await;
    let mark = format!("via the service account {}", berth_testkit::unique_suffix());
    let p = Private::new(&ctx, &mark);
    let (_, _, password) = ctx.env.private_registry();
    team_pull(&ctx, &p.host, password).await;
    // The API server copies a ServiceAccount's imagePullSecrets into its pods.
    ctx.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default"},
        "imagePullSecrets": [{"name": "team-pull"}],
    }))
    .await;
    // berth would add its own only where no pull secret of the pod holds the registry.
    let run = p.run(&ctx, &["--pull-secret", "berth-pull"]);
    assert!(run.ok, "{run}");
    served(&ctx, "hello", "/", &mark).await;
    let d = deployment(&ctx, "hello").await;
    assert!(
        d["spec"]["template"]["spec"]["imagePullSecrets"].is_null(),
        "the template is left as written: {d}"
    );
    assert!(live(&ctx, "v1", "Secret", "berth-pull").await.is_none());
}

/// An image berth neither pushed nor has a login for is not checked before apply: the kubelet's
/// 401 is then named for what it is during the rollout, not as a generic pull error.
#[tokio::test]
async fn registry_refusing_the_pull_during_rollout_is_named_as_refused_credentials_not_a_generic_pull_error()
 {
    let ctx = TestContext::on_real_node("pull-rollout").await;
    let (ex, one) = hello_deployed(&ctx).await;
    let (host, _, _) = ctx.env.private_registry();
    let sidecar = format!("{host}/someone-else/sidecar:1");
    ex.edit(
        "k8s/app.yaml",
        "        ports:\n        - containerPort: 8080\n",
        &format!(
            "        ports:\n        - containerPort: 8080\n      - name: sidecar\n        image: {sidecar}\n"
        ),
    );
    ex.commit("a sidecar from a registry that wants a login");
    let t0 = std::time::Instant::now();
    let failed = ex.run(&ctx);
    let took = t0.elapsed();
    failed_and_rolled_back(
        &failed,
        &[
            &format!(
                "container sidecar: registry refused the credentials for {sidecar} (no pull secret"
            ),
            "401 Unauthorized",
        ],
    );
    assert!(
        took < std::time::Duration::from_secs(30),
        "at once, not at the 60 s deadline: {took:?}"
    );
    served(&ctx, "hello", "/", &one).await;
}

/// The bug: `berth run` checked pull secrets before applying, `berth deploy` of rendered
/// manifests did not — a pod whose image needs a login was applied and failed at the kubelet.
#[tokio::test]
async fn berth_deploy_of_rendered_manifests_checks_pull_secrets_before_apply_too() {
    let ctx = TestContext::on_real_node("pull-deploy-src").await;
    let p = Private::new(&ctx, "pushed for berth deploy");
    let pushed = p.run(&ctx, &["--pull-secret", "berth-pull"]);
    assert!(pushed.ok, "{pushed}");
    let image = image_of(&deployment(&ctx, "hello").await);

    let to = TestContext::new("pull-deploy").await;
    let dir = Dir::new();
    dir.write(
        "app.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: copy}}\nspec:\n  \
             selector: {{matchLabels: {{app: copy}}}}\n  template:\n    metadata: {{labels: \
             {{app: copy}}}}\n    spec:\n      containers:\n      - {{name: web, image: \
             '{image}'}}\n"
        ),
    );
    let deploy = |extra: &[&str]| {
        let out = berth(to.env)
            .args(["deploy", "-r", "copy", "-n", &to.namespace, "-f"])
            .arg(&dir.0)
            .args(["--docker-config", p.docker_config.to_str().unwrap()])
            .args(["--insecure-registry", &p.host, "--timeout", "2m"])
            .args(extra)
            .output()
            .unwrap();
        let text = text(&out);
        assert!(
            !text.contains(&p.password),
            "no output shows the password: {text}"
        );
        (out.status.success(), text)
    };

    let (ok, refused) = deploy(&[]);
    assert!(!ok, "{refused}");
    for want in [
        "Deployment/copy (",
        "which refuses anonymous pulls",
        "nothing was applied",
        "--pull-secret NAME",
    ] {
        assert!(refused.contains(want), "says {want:?}: {refused}");
    }
    assert!(
        live(&to, "apps/v1", "Deployment", "copy").await.is_none(),
        "nothing was applied: {refused}"
    );

    let (ok, deployed) = deploy(&["--pull-secret", "team-pull"]);
    assert!(ok, "{deployed}");
    assert!(
        deployed.contains("pull secret team-pull: applied"),
        "{deployed}"
    );
    let d = live(&to, "apps/v1", "Deployment", "copy").await.unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["imagePullSecrets"],
        serde_json::json!([{"name": "team-pull"}]),
        "{d}"
    );
    let secret = live(&to, "v1", "Secret", "team-pull").await.unwrap();
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
}
