//! What berth deploys really runs: the bundled examples on the test environment's real node
//! (containerd pulling from the registry, kubelet running the processes and probing them,
//! kube-proxy forwarding Services, CoreDNS), each fetched over HTTP through its Service from
//! this host after `berth run`; and the failures users meet on their first real cluster — a
//! process that exits, an image that cannot be pulled, a readiness probe that never passes, a
//! container killed for its memory — each diagnosed, rolled back, and the previous build still
//! answering.
//!
//! Every test here uses `TestContext::on_real_node`: its namespace's pods go to the real node;
//! nothing in the examples' manifests changes for it.

use std::time::{Duration, Instant};

use berth_testkit::TestContext;

use crate::common::{Run, deployment, image_of};
use crate::examples::{Example, SHOP, board, flask, rails, shop};

/// `examples/hello` in a fresh repository, its images in the test's repository and its page
/// carrying `marker`.
pub(crate) fn hello(ctx: &TestContext, marker: &str) -> Example {
    let ex = Example::new(
        "hello",
        "main",
        &["berth.yaml", "k8s/app.yaml"],
        "127.0.0.1:15000/examples/hello-web",
        &format!("{}/web", ctx.repository),
    );
    ex.write("web/index.html", &page(marker));
    ex.edit(
        "berth.yaml",
        "deploy: { timeout: 2m }",
        "deploy: { timeout: 60s }",
    );
    ex.commit(marker);
    ex
}

pub(crate) fn page(marker: &str) -> String {
    format!("<!doctype html>\n<h1>{marker}</h1>\n")
}

/// Polls `GET path` of `service` until five answers in a row contain `want`: every pod
/// still answering is of the new build. The Service's endpoints follow a rollout a moment
/// after the Deployment reports it complete (the pods it replaced leave the EndpointSlice once
/// the controller manager sees them terminating, then kube-proxy resyncs), so an old page may
/// still come back briefly.
pub(crate) async fn served(ctx: &TestContext, service: &str, path: &str, want: &str) {
    // Generous: a first install's Service rules reach kube-proxy late on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut in_a_row = 0;
    let mut last = (0, String::new());
    while in_a_row < 5 {
        assert!(
            Instant::now() < deadline,
            "Service {service}{path} serves {want:?} five times in a row within 60 s; last: {last:?}"
        );
        last = ctx.get_through_service(service, 80, path).await;
        if last.0 == 200 && last.1.contains(want) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A failed `berth run` rolled back to revision 1, with `what` in its error.
pub(crate) fn failed_and_rolled_back(run: &Run, what: &[&str]) {
    assert!(!run.ok, "{run}");
    assert_eq!(run.result["result"], "failed", "{run}");
    let error = run.error();
    assert!(
        error.contains("rolled back to revision 1"),
        "{error}\n{run}"
    );
    for w in what {
        assert!(error.contains(w), "the error says {w:?}: {error}\n{run}");
    }
}

#[tokio::test]
async fn hello_answers_over_http_with_each_new_build_on_the_real_node() {
    let ctx = TestContext::on_real_node("real-hello").await;
    let one = format!("hello build one {}", berth_testkit::unique_suffix());
    let ex = hello(&ctx, &one);
    let first = ex.run_ok(&ctx);
    assert_eq!(
        image_of(&deployment(&ctx, "hello").await),
        first.image("web")
    );
    served(&ctx, "hello", "/", &one).await;

    let two = format!("hello build two {}", berth_testkit::unique_suffix());
    ex.write("web/index.html", &page(&two));
    ex.commit("two");
    let second = ex.run_ok(&ctx);
    assert_ne!(second.image("web"), first.image("web"));
    served(&ctx, "hello", "/", &two).await;
}

#[tokio::test]
async fn shop_services_answer_over_http_on_the_real_node() {
    let ctx = TestContext::on_real_node("real-shop").await;
    let ex = shop(&ctx);
    let mark = berth_testkit::unique_suffix();
    for s in SHOP {
        ex.write(
            &format!("{s}/www/{s}/index.html"),
            &page(&format!("{s} {mark}")),
        );
    }
    ex.commit("pages");
    ex.run_ok(&ctx);
    for s in SHOP {
        served(&ctx, s, &format!("/{s}/"), &format!("{s} {mark}")).await;
    }
}

#[tokio::test]
async fn rails_migrates_then_answers_over_http_on_the_real_node() {
    let ctx = TestContext::on_real_node("real-rails").await;
    let ex = rails(&ctx);
    let mark = format!("posts {}", berth_testkit::unique_suffix());
    ex.write("app/public/index.html", &page(&mark));
    ex.commit("page");
    let run = ex.run_ok(&ctx);
    assert!(
        run.position("Job/migrate", "ready").is_some(),
        "the migration Job really ran to completion: {run}"
    );
    served(&ctx, "web", "/", &mark).await;
}

#[tokio::test]
async fn flask_answers_over_http_and_its_data_load_really_ran_on_the_real_node() {
    let ctx = TestContext::on_real_node("real-flask").await;
    let ex = flask(&ctx);
    let mark = format!("flask {}", berth_testkit::unique_suffix());
    ex.write("web/static/index.html", &page(&mark));
    ex.commit("page");
    let run = ex.run(&ctx);
    assert!(run.ok, "{run}");
    served(&ctx, "web", "/", &mark).await;
    // The data load's process really ran and printed what it loaded.
    let logs = ctx
        .cluster
        .pod_logs(
            &ctx.namespace,
            &job_pod(&ctx, "load-data").await,
            None,
            20,
            false,
        )
        .await
        .expect("the data load's pod has logs");
    assert!(
        logs.contains("loading") && logs.contains("rows into"),
        "{logs}"
    );
}

#[tokio::test]
async fn board_helm_release_answers_over_http_on_the_real_node() {
    let ctx = TestContext::on_real_node("real-board").await;
    let ex = board(&ctx);
    let run = ex.run(&ctx);
    assert!(run.ok, "{run}");
    // The Node app keeps posted messages in memory: post one and read it back, through the
    // Service, from the pod berth deployed.
    let svc = ctx
        .cluster
        .get(&berth_cluster::ObjectKey::new(
            "v1",
            "Service",
            Some(&ctx.namespace),
            "board",
        ))
        .await
        .unwrap()
        .expect("the chart's Service");
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let msg = format!("hello board {}", berth_testkit::unique_suffix());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // On a first install the Service's rules reach kube-proxy a moment after the rollout
    // completes ("connection refused", or a reset while the rules change, until then); on a
    // machine busy with the whole suite that moment has taken over 20 s. (Before the test
    // environment fenced cluster addresses in, a ClusterIP without rules yet was routed to the
    // network's gateway, which answered 404 for the whole minute.) A POST repeated after a
    // transport error at most posts the message twice, which the check below allows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let posted = loop {
        match client
            .post(format!("http://{ip}/"))
            .body(msg.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("POST to the board, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            Err(e) => panic!("POST to the board within 60 s: {e:?}"),
        }
    };
    assert_eq!(posted.status().as_u16(), 201);
    served(&ctx, "board", "/", &msg).await;
}

/// A Service address kube-proxy has no rule for is refused on this machine at once: it never
/// follows the default route out to the network (whose gateway answered such requests).
#[tokio::test]
async fn a_cluster_address_without_rules_is_refused_here_not_sent_out() {
    let _env = berth_testkit::TestEnv::get();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // The top of the Service range (10.96.0.0/16), which the allocator hands out last, a
    // LoadBalancer address berth-lb has not given, and a kwok pod's made-up address.
    for addr in ["10.96.255.254", "198.18.0.250", "10.244.255.254"] {
        let started = Instant::now();
        let answer = client
            .get(format!("http://{addr}/"))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        assert!(answer.is_err(), "{addr} answered: {answer:?}");
        let err = answer.unwrap_err();
        assert!(err.is_connect() && !err.is_timeout(), "{addr}: {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{addr}: refused only after {:?}",
            started.elapsed()
        );
    }
}

/// The name of a pod of Job `job`.
async fn job_pod(ctx: &TestContext, job: &str) -> String {
    let pods = ctx
        .cluster
        .list(
            "v1",
            "Pod",
            &ctx.namespace,
            Some(&format!("job-name={job}")),
        )
        .await
        .expect("list pods");
    pods.first()
        .and_then(|p| p["metadata"]["name"].as_str())
        .unwrap_or_else(|| panic!("Job {job} has a pod"))
        .to_string()
}

/// hello deployed once (revision 1, serving `one`), for the failure tests below.
pub(crate) async fn hello_deployed(ctx: &TestContext) -> (Example, String) {
    let one = format!("good build {}", berth_testkit::unique_suffix());
    let ex = hello(ctx, &one);
    ex.run_ok(ctx);
    served(ctx, "hello", "/", &one).await;
    (ex, one)
}

/// Adds `lines` to hello's web container, after its ports.
fn add_to_container(ex: &Example, lines: &str) {
    const PORTS: &str = "        ports:\n        - containerPort: 8080\n";
    ex.edit("k8s/app.yaml", PORTS, &format!("{PORTS}{lines}"));
}

/// Commits the change as `message` and runs: the run fails with `what` in its error, rolls
/// back to revision 1, and the good build (`one`) still answers.
async fn fails_and_the_good_build_answers(
    ctx: &TestContext,
    ex: &Example,
    message: &str,
    what: &[&str],
    one: &str,
) -> Run {
    ex.commit(message);
    let failed = ex.run(ctx);
    failed_and_rolled_back(&failed, what);
    served(ctx, "hello", "/", one).await;
    failed
}

#[tokio::test]
async fn crash_looping_process_on_the_real_node_is_diagnosed_with_its_last_log_lines_and_rolled_back()
 {
    let ctx = TestContext::on_real_node("real-crash").await;
    let (ex, one) = hello_deployed(&ctx).await;
    ex.edit(
        "web/Dockerfile",
        r#"CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]"#,
        r#"CMD ["sh", "-c", "echo 'fatal: /etc/hello/greeting.conf is missing' >&2; exit 1"]"#,
    );
    let failed = fails_and_the_good_build_answers(
        &ctx,
        &ex,
        "a build whose process exits",
        &["crash-looping"],
        &one,
    )
    .await;
    assert!(
        failed.to_string().contains("greeting.conf is missing"),
        "the container's real last log line is shown: {failed}"
    );
}

#[tokio::test]
async fn unpullable_image_on_the_real_node_is_diagnosed_and_rolled_back() {
    let ctx = TestContext::on_real_node("real-pull").await;
    let (ex, one) = hello_deployed(&ctx).await;
    // A sidecar whose image does not exist in the registry the node pulls from.
    let missing = format!("{}/no-such-image:1", ctx.repository);
    add_to_container(
        &ex,
        &format!("      - name: sidecar\n        image: {missing}\n"),
    );
    fails_and_the_good_build_answers(
        &ctx,
        &ex,
        "a sidecar that cannot be pulled",
        &["container sidecar: image", "cannot be pulled"],
        &one,
    )
    .await;
}

#[tokio::test]
async fn readiness_probe_that_never_passes_on_the_real_node_times_out_and_rolls_back() {
    let ctx = TestContext::on_real_node("real-probe").await;
    let (ex, one) = hello_deployed(&ctx).await;
    ex.edit(
        "berth.yaml",
        "deploy: { timeout: 60s }",
        "deploy: { timeout: 25s }",
    );
    add_to_container(
        &ex,
        "        readinessProbe:\n          httpGet: {path: /healthz, port: 8080}\n          periodSeconds: 2\n",
    );
    fails_and_the_good_build_answers(
        &ctx,
        &ex,
        "a probe on a path the app does not serve",
        &["readiness", "statuscode: 404"],
        &one,
    )
    .await;
}

#[tokio::test]
async fn oom_killed_container_on_the_real_node_is_diagnosed_and_rolled_back() {
    let ctx = TestContext::on_real_node("real-oom").await;
    let (ex, one) = hello_deployed(&ctx).await;
    // A shell that doubles a string until the 16 MiB limit kills it.
    ex.edit(
        "web/Dockerfile",
        r#"CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]"#,
        r#"CMD ["sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"]"#,
    );
    // With a readiness probe, as a real app has: without one, a container between two OOM
    // kills counts as ready, and on a machine slow enough that both new pods ran at once the
    // rollout completed (seen once in the whole suite here).
    add_to_container(
        &ex,
        "        resources:\n          limits: {memory: 16Mi}\n        readinessProbe:\n          tcpSocket: {port: 8080}\n          periodSeconds: 1\n",
    );
    fails_and_the_good_build_answers(
        &ctx,
        &ex,
        "a build that eats its memory",
        &["OOMKilled"],
        &one,
    )
    .await;
}

#[tokio::test]
async fn board_chart_as_a_load_balancer_gets_its_address_and_answers_on_it() {
    let ctx = TestContext::on_real_node("real-lb").await;
    let ex = board(&ctx);
    ex.edit("chart/values.yaml", "type: ClusterIP", "type: LoadBalancer");
    ex.commit("a load balancer");
    let run = ex.run(&ctx);
    assert!(run.ok, "{run}");
    assert!(
        run.events.iter().any(|e| e["object"] == "Service/board"
            && e["state"] == "ready"
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("load balancer at")),
        "the Service became ready with its address: {run}"
    );
    let svc = ctx
        .cluster
        .get(&berth_cluster::ObjectKey::new(
            "v1",
            "Service",
            Some(&ctx.namespace),
            "board",
        ))
        .await
        .unwrap()
        .unwrap();
    let ip = svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("an address: {svc}"))
        .to_string();
    // The address answers on this host, as a cloud load balancer answers its clients — once
    // kube-proxy has its rules, a moment after the address is assigned; until then the
    // connection is refused here (the environment fences cluster addresses in). Any answer
    // is the board's. A new connection per request, as a client of a cloud load balancer
    // retrying would open.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let msg = format!("via the load balancer {}", berth_testkit::unique_suffix());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client
            .post(format!("http://{ip}/"))
            .body(msg.clone())
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 201 => break,
            Ok(r) => panic!(
                "POST http://{ip}/ (the load-balancer address) answered {}",
                r.status()
            ),
            Err(e) if Instant::now() > deadline => {
                panic!("POST http://{ip}/ (the load-balancer address): {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    let mut seen = false;
    for _ in 0..10 {
        let body = client
            .get(format!("http://{ip}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Two replicas keep their messages each: the one that took the POST shows it.
        seen |= body.contains(&msg);
    }
    assert!(
        seen,
        "the message posted through the load balancer is read back through it"
    );
}

#[tokio::test]
async fn load_balancer_nothing_implements_is_named_within_a_minute_not_at_the_deadline() {
    let ctx = TestContext::on_real_node("real-nolb").await;
    let ex = hello(&ctx, "unreachable");
    ex.edit(
        "berth.yaml",
        "deploy: { timeout: 60s }",
        "deploy: { timeout: 5m }",
    );
    // A class no controller here implements (berth-lb, like cloud controllers, serves only
    // Services without a class): the same silence as a cluster without any load balancer.
    ex.edit(
        "k8s/app.yaml",
        "spec:\n  selector: {app: hello}",
        "spec:\n  type: LoadBalancer\n  loadBalancerClass: example.com/not-installed\n  selector: {app: hello}",
    );
    ex.commit("a load balancer of a class nothing implements");
    let t0 = Instant::now();
    let failed = ex.run(&ctx);
    let took = t0.elapsed();
    assert!(!failed.ok, "{failed}");
    let error = failed.error();
    assert!(
        error.contains("nothing assigns load-balancer addresses in this cluster")
            && error.contains("example.com/not-installed")
            && error.contains("MetalLB"),
        "names the missing implementation and what to do: {error}"
    );
    assert!(
        took < Duration::from_secs(60),
        "told within a minute, not at the 5 minute deadline: {took:?}"
    );
}

#[tokio::test]
async fn dev_streams_the_real_output_of_the_new_pods_on_the_real_node() {
    let ctx = TestContext::on_real_node("real-dev-logs").await;
    let ex = hello(&ctx, "first page");
    // The container says what it serves when it starts: its own output, nothing the test
    // writes for it.
    ex.edit(
        "web/Dockerfile",
        r#"CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]"#,
        r#"CMD ["sh", "-c", "echo \"serving $(sed -n 2p /www/index.html)\"; exec httpd -f -p 8080 -h /www"]"#,
    );
    ex.commit("say what is served");
    let (mut child, results_rx, logs_rx) =
        crate::run::start_dev(&ctx, &ex.path("berth.yaml"), &ex.store);
    let result = |what: &str| {
        results_rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("berth dev reported no result for {what}"))
    };
    let logged = |text: &str| -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut pods = Vec::new();
        // Both replicas of the new ReplicaSet say it.
        while pods.len() < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            let doc = logs_rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no two pods logged {text:?}; got {pods:?}"));
            if doc["line"].as_str().is_some_and(|l| l.contains(text)) {
                assert_eq!(doc["container"], "web", "{doc}");
                let pod = doc["pod"].as_str().unwrap().to_string();
                if !pods.contains(&pod) {
                    pods.push(pod);
                }
            }
        }
        pods
    };
    let first = result("the first run");
    assert_eq!(first["result"], "ok", "{first}");
    let first_pods = logged("serving <h1>first page</h1>");

    std::fs::write(ex.path("web/index.html"), page("saved page")).unwrap();
    let second = result("the save");
    assert_eq!(second["result"], "ok", "{second}");
    let second_pods = logged("serving <h1>saved page</h1>");
    for p in &second_pods {
        assert!(!first_pods.contains(p), "{p} is a new pod: {first_pods:?}");
    }
    served(&ctx, "hello", "/", "saved page").await;

    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
