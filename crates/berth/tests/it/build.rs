//! `berth build` end to end: the binary builds with RUN, pushes, and skopeo reads the result.

use std::process::Command;

use berth_testkit::TestContext;
use serde_json::Value;

use crate::common::{berth, text};

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
        let out = berth(ctx.env)
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

/// `--store` given as a relative path: the RUN step finds its root filesystem (the runtime ran
/// the bundle from elsewhere and the relative rootfs path named nothing: "invalid rootfs").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_with_a_relative_store_runs_its_run_steps() {
    let ctx = TestContext::new("cli-build-relstore").await;
    let dir = std::env::temp_dir().join(format!(
        "berth-cli-build-relstore-{}",
        berth_testkit::unique_suffix()
    ));
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    std::fs::write(
        dir.join("ctx/Dockerfile"),
        "FROM busybox\nRUN echo relative > /made\n",
    )
    .unwrap();
    let out = berth(ctx.env)
        .current_dir(&dir)
        .args(["build", "ctx", "--store", "store", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["steps"], 1, "{built}");
    assert!(dir.join("store/index.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Scenario 2's build service: `berth build --push --registry-secret NS/NAME` pushes to a
/// private registry (htpasswd auth) with the credentials of a `kubernetes.io/dockerconfigjson`
/// Secret read from the real API server. Without the Secret the push is refused; a missing
/// Secret or one of another type is a clear error. The password never appears in any output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_pushes_with_credentials_from_a_dockerconfigjson_secret() {
    let ctx = TestContext::new("cli-registry-secret").await;
    let password = format!("pw-{}", berth_testkit::unique_suffix());
    let private = berth_testkit::OwnRegistry::start_with_auth("builder", &password);
    let config = serde_json::json!({"auths": {private.host.clone():
        {"username": "builder", "password": password}}});
    ctx.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred"},
        "stringData": {".dockerconfigjson": config.to_string()}
    }))
    .await;
    ctx.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "plain"}, "stringData": {"password": password}
    }))
    .await;
    let dir = std::env::temp_dir().join(format!(
        "berth-cli-regsecret-{}",
        berth_testkit::unique_suffix()
    ));
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    std::fs::write(dir.join("ctx/Dockerfile"), "FROM busybox\nCOPY msg /msg\n").unwrap();
    std::fs::write(dir.join("ctx/msg"), "private\n").unwrap();
    let tag = format!("{}/team/app:v1", private.host);
    let insecure = format!("{},{}", ctx.env.registry_host(), private.host);
    let run = |extra: &[&str]| {
        let out = berth(ctx.env)
            .args(["build", dir.join("ctx").to_str().unwrap(), "-t", &tag])
            .args(["--push", "-o", "json", "--insecure-registry", &insecure])
            .args(extra)
            .env("BERTH_STORE", dir.join("store"))
            .env("BERTH_DOCKER_CONFIG", dir.join("no-docker-config.json"))
            .output()
            .unwrap();
        let text = text(&out);
        assert!(!text.contains(&password), "the password leaked: {text}");
        (out.status.success(), text)
    };
    let (ok, text) = run(&[]);
    assert!(!ok, "pushed without credentials: {text}");
    assert!(text.contains("--registry-secret NAMESPACE/NAME"), "{text}");
    let secret = format!("{}/regcred", ctx.namespace);
    let (ok, text) = run(&["--registry-secret", &secret]);
    assert!(ok, "{text}");
    // stdout (the JSON result) comes first in `text`.
    let json_end = text.find("\n}").unwrap() + 2;
    let built: Value = serde_json::from_str(&text[..json_end]).unwrap();
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            &format!("builder:{password}"),
            &format!("docker://{tag}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["Digest"], built["manifest_digest"]);

    let (ok, text) = run(&["--registry-secret", &format!("{}/nope", ctx.namespace)]);
    assert!(!ok);
    assert!(
        text.contains("no Secret nope in namespace")
            && text.contains("create secret docker-registry"),
        "{text}"
    );
    let (ok, text) = run(&["--registry-secret", &format!("{}/plain", ctx.namespace)]);
    assert!(!ok);
    assert!(text.contains("has type \"Opaque\""), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `berth build --platform linux/amd64,linux/arm64` prints the index and one line per
/// platform; the arm64 RUN goes through qemu-user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_for_two_platforms_reports_the_index() {
    let ctx = TestContext::new("cli-multiarch").await;
    let dir = std::env::temp_dir().join(format!(
        "berth-cli-multiarch-{}",
        berth_testkit::unique_suffix()
    ));
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    std::fs::write(
        dir.join("ctx/Dockerfile"),
        "FROM busybox:multiarch\nRUN uname -m > /arch\n",
    )
    .unwrap();
    let tag = ctx.image("cli-multi", "v1").to_string();
    let out = berth(ctx.env)
        .args([
            "build",
            dir.join("ctx").to_str().unwrap(),
            "-t",
            &tag,
            "--push",
        ])
        .args(["--platform", "linux/amd64,linux/arm64"])
        .env("BERTH_STORE", dir.join("store"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("index     sha256:"), "{stdout}");
    assert!(
        stdout.contains("linux/amd64") && stdout.contains("RUN native"),
        "{stdout}"
    );
    assert!(
        stdout.contains("linux/arm64") && stdout.contains("RUN binfmt:"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `BERTH_QEMU=explicit`: berth leaves binfmt_misc alone and runs the arm64 RUN's process
/// under the static qemu binary, mounted on the container's /dev (so no layer holds it); PATH
/// lookup of an exec-form command is done by berth, since qemu-user does not search PATH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_qemu_runs_an_arm64_step_without_binfmt() {
    let ctx = TestContext::new("cli-qemu-explicit").await;
    let dir =
        std::env::temp_dir().join(format!("berth-cli-qemu-{}", berth_testkit::unique_suffix()));
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    std::fs::write(
        dir.join("ctx/Dockerfile"),
        "FROM busybox:multiarch\nRUN [\"busybox\", \"sh\", \"-c\", \"uname -m > /arch\"]\n",
    )
    .unwrap();
    let out = berth(ctx.env)
        .args(["build", dir.join("ctx").to_str().unwrap(), "-o", "json"])
        .args(["--platform", "linux/arm64", "--dest"])
        .arg(format!("oci:{}", dir.join("oci").display()))
        .env("BERTH_STORE", dir.join("store"))
        .env("BERTH_QEMU", "explicit")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("under /usr/bin/qemu-aarch64-static because BERTH_QEMU=explicit"),
        "{stderr}"
    );
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        built["platforms"][0]["emulation"],
        "qemu:/usr/bin/qemu-aarch64-static"
    );
    let bundle = dir.join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", dir.join("oci").display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "{}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/arch")).unwrap(),
        "aarch64\n"
    );
    assert!(!bundle.join("rootfs/dev/.berth-qemu").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
