//! `berth build` end to end: the binary builds with RUN, pushes, and skopeo reads the result.

use std::process::Command;

use berth_testkit::TestContext;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_pushes_and_reports_json() {
    let ctx = TestContext::new("cli-build").await;
    let dir = std::env::temp_dir().join(format!(
        "berth-cli-build-{}",
        berth_testkit::unique_suffix()
    ));
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    std::fs::write(
        dir.join("ctx/Dockerfile"),
        "FROM busybox\nCOPY msg /msg\nRUN cat /msg > /copied\nCMD [\"cat\", \"/copied\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("ctx/msg"), "hi\n").unwrap();
    let tag = ctx.image("cli", "v1").to_string();
    let run = |extra: &[&str]| {
        let out = ctx
            .env
            .berth(env!("CARGO_BIN_EXE_berth").as_ref())
            .args([
                "build",
                dir.join("ctx").to_str().unwrap(),
                "-t",
                &tag,
                "-o",
                "json",
            ])
            .args(extra)
            .env("BERTH_STORE", dir.join("store"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = run(&[
        "--push",
        "--dest",
        &format!("oci:{}", dir.join("oci").display()),
    ]);
    assert_eq!(first["steps"], 2);
    let again = run(&[]);
    assert_eq!(again["cache_hits"], 2);
    assert_eq!(again["manifest_digest"], first["manifest_digest"]);
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{tag}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["Digest"], first["manifest_digest"]);
    assert!(dir.join("oci/index.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
