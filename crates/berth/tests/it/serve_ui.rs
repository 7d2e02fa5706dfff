//! The web UI in real Chromium (Debian's chromium + chromedriver over WebDriver): sign in,
//! watch a run's log arrive live, see the dashboard, roll back from the release history.
//! Saves screenshots of the main pages under the target directory, or over the ones in
//! docs/screenshots/ with `BERTH_UPDATE_SCREENSHOTS=1` (so a test run leaves the tree clean).

use std::path::PathBuf;
use std::time::Duration;

use berth_testkit::TestContext;
use berth_testkit::webdriver::Browser;

use crate::serve::{Api, Rig};

fn screenshot(name: &str) -> PathBuf {
    let dir = if std::env::var_os("BERTH_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir.join(format!("{name}.png"))
}

#[tokio::test]
async fn the_ui_shows_live_logs_and_rolls_back_in_chromium() {
    let ctx = TestContext::new("serve-ui").await;
    let rig = Rig::new(&ctx, None, "");
    let deployer = rig.token(&ctx, None, "alice", "deployer");
    let _server = rig.serve(&ctx, None);
    let api = Api::new(&rig, Some(&deployer));
    let browser = Browser::start().await;

    // Sign in with the token.
    browser.goto(&rig.url("/")).await;
    let field = browser.wait_for("#token", Duration::from_secs(10)).await;
    browser.type_text(&field, &deployer).await;
    let button = browser.wait_for("#sign-in", Duration::from_secs(5)).await;
    browser.click(&button).await;
    browser.wait_for("#runs", Duration::from_secs(10)).await;

    // A push; open its run page while it runs and watch lines arrive without a reload.
    let first = rig.push("first");
    let id = api.run_for(&first).await;
    browser.goto(&rig.url(&format!("/runs/{id}"))).await;
    browser.wait_for("#log", Duration::from_secs(10)).await;
    let initial = browser.source().await.matches("class=\"line").count();
    let marker = browser.find("#log").await.unwrap();
    let text = browser
        .wait_text("#log", Duration::from_secs(300), |t| {
            t.contains("deploy") && t.lines().count() > initial + 3
        })
        .await;
    assert!(text.contains("fetch"), "{text}");
    // The same element, updated in place: the lines came over SSE, not by reloading.
    assert!(!browser.text(&marker).await.is_empty());
    browser
        .wait_text("#run-state", Duration::from_secs(300), |t| t == "succeeded")
        .await;
    browser.wait_for("#outcome", Duration::from_secs(15)).await;
    browser.screenshot(&screenshot("run")).await;

    // The dashboard: the environment with its digest.
    browser.goto(&rig.url("/")).await;
    let dash = browser
        .wait_text("#env-dev", Duration::from_secs(20), |t| {
            t.contains("deployed")
        })
        .await;
    assert!(dash.contains("sha256:"), "{dash}");
    browser.screenshot(&screenshot("dashboard")).await;

    // A second revision, then roll back to the first from the release history.
    std::fs::write(rig.work.join("web/index.html"), "<h1>second</h1>\n").unwrap();
    let second = rig.push("second");
    let id2 = api.run_for(&second).await;
    assert_eq!(
        api.wait_run(&id2, &rig).await["state"],
        "succeeded",
        "{}",
        rig.log()
    );
    browser.goto(&rig.url("/repos/hello/envs/dev")).await;
    let rollback = browser
        .wait_for("#rollback-1", Duration::from_secs(20))
        .await;
    browser.screenshot(&screenshot("releases")).await;
    browser.click(&rollback).await;
    // The rollback is a run of its own; its page follows it to the end.
    browser
        .wait_text("#run-state", Duration::from_secs(300), |t| t == "succeeded")
        .await;
    let revision = browser
        .wait_text("#revision", Duration::from_secs(20), |t| !t.is_empty())
        .await;
    assert_eq!(revision, "3", "the rollback is a new revision");
    browser.goto(&rig.url("/repos/hello/envs/dev")).await;
    let live = browser
        .wait_text("#release-3", Duration::from_secs(20), |t| {
            t.contains("deployed")
        })
        .await;
    assert!(
        live.contains(&first[..12]),
        "revision 3 runs the first commit again: {live}"
    );

    // A bad commit: the run page says it rolled back, and why.
    let app = rig.work.join("k8s/app.yaml");
    let text = std::fs::read_to_string(&app).unwrap().replace(
        "      labels: {app: hello}\n",
        "      labels: {app: hello}\n      annotations: {berth.dev/simulate: crash-loop}\n",
    );
    std::fs::write(&app, text).unwrap();
    let bad = rig.push("crash");
    let id3 = api.run_for(&bad).await;
    assert_eq!(
        api.wait_run(&id3, &rig).await["state"],
        "rolled_back",
        "{}",
        rig.log()
    );
    browser.goto(&rig.url(&format!("/runs/{id3}"))).await;
    let why = browser
        .wait_text("#diagnosis", Duration::from_secs(20), |t| !t.is_empty())
        .await;
    assert!(why.contains("rolled back"), "{why}");
    browser.screenshot(&screenshot("run-rolled-back")).await;
    browser.quit().await;
}
