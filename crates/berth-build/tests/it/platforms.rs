//! Multi-platform images (an OCI index over one image per platform, foreign RUN through
//! qemu-user) and zstd layers, against the real registry, runc, qemu-user-static and skopeo.

use std::process::Command;

use berth_build::Platform;
use berth_build::exec::{Compression, build};
use berth_testkit::TestContext;

use crate::support::*;

fn platforms() -> Vec<Platform> {
    vec![
        Platform::parse("linux/amd64").unwrap(),
        Platform::parse("linux/arm64").unwrap(),
    ]
}

/// `--platform linux/amd64,linux/arm64` on `busybox:multiarch` (an index in the test
/// registry): the RUN writes `uname -m`, the arm64 image says `aarch64` (its RUN went through
/// qemu-user), the pushed index lists both platforms, skopeo picks each by architecture, and
/// the arm64 image runs under runc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platform_build_pushes_an_index_and_runs_arm64_under_qemu() {
    let ctx = TestContext::new("build-multiarch").await;
    let mut rig = Rig::new();
    rig.opts.platforms = platforms();
    let dir = context(&[(
        "Dockerfile",
        "FROM busybox:multiarch\nRUN uname -m > /arch\nCMD [\"cat\", \"/arch\"]\n",
    )]);
    let tag = ctx.image("multiarch", "v1");
    let mut req = request(dir.path());
    req.tags = vec![tag.clone()];
    req.push = true;
    let (built, rec) = rig.build(&req).await;
    assert_eq!(built.media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(built.platforms.len(), 2);
    let (amd, arm) = (&built.platforms[0], &built.platforms[1]);
    assert_eq!(
        (amd.platform.as_str(), arm.platform.as_str()),
        ("linux/amd64", "linux/arm64")
    );
    assert_eq!(amd.emulation, "native");
    assert!(arm.emulation.starts_with("binfmt:"), "{:?}", arm.emulation);
    assert!(
        rec.messages()
            .iter()
            .any(|m| m.contains("through qemu-user")),
        "{:?}",
        rec.messages()
    );
    let arch_of = |manifest| {
        let img = rig.opts.store.image(manifest).unwrap();
        (
            img.config.architecture.clone(),
            rig.layer_file(&img.layers.last().unwrap().digest, "arch"),
        )
    };
    assert_eq!(
        arch_of(&amd.manifest_digest),
        ("amd64".into(), Some("x86_64\n".into()))
    );
    assert_eq!(
        arch_of(&arm.manifest_digest),
        ("arm64".into(), Some("aarch64\n".into()))
    );

    let raw = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{tag}"),
    ]));
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("amd64".to_string(), amd.manifest_digest.to_string()),
            ("arm64".to_string(), arm.manifest_digest.to_string()),
        ]
    );
    let inspect = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{tag}"),
    ]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Architecture"], "arm64");
    assert_eq!(inspect["Digest"], built.manifest_digest.to_string());

    assert_eq!(rig.run_image(&arm.manifest_digest).await, vec!["aarch64"]);
    // The index itself unpacks as this machine's image (what `berth run` tests run in).
    assert_eq!(rig.run_image(&built.manifest_digest).await, vec!["x86_64"]);

    // A second build is all cache hits and gives the same index.
    let (again, _) = rig.build(&req).await;
    assert_eq!(again.manifest_digest, built.manifest_digest);
    assert_eq!((again.steps, again.cache_hits), (2, 2));
}

/// Building for arm64 from a base that only has an amd64 manifest is a FROM error naming the
/// line and what to do, not an amd64 image labelled arm64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_platform_from_a_single_platform_base_is_refused() {
    let _ctx = TestContext::new("build-wrong-arch").await;
    let rig = Rig::new();
    let dir = context(&[("Dockerfile", "# base\nFROM busybox\nRUN true\n")]);
    let mut req = request(dir.path());
    req.platform = Some(Platform::parse("linux/arm64").unwrap());
    let err = build(&rig.opts, &req, &Recorder::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("Dockerfile:2:1: FROM"), "{err}");
    assert!(
        err.contains("linux/amd64 only, not for linux/arm64"),
        "{err}"
    );
}

/// `--compression zstd`: new layers are zstd with the OCI media type, the base layer stays
/// gzip, two builds in empty stores give the same digest, the image pulls back (zstd layers
/// read) and runs, skopeo inspects it and recompresses its layers (decoding berth's zstd) into
/// a layout umoci unpacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_layers_are_deterministic_and_read_by_skopeo_and_umoci() {
    let ctx = TestContext::new("build-zstd").await;
    let dockerfile = "FROM busybox\nCOPY a.txt /srv/a.txt\nRUN cat /srv/a.txt > /srv/b.txt\nCMD [\"cat\", \"/srv/b.txt\"]\n";
    let dir = context(&[("Dockerfile", dockerfile), ("a.txt", "zstd!\n")]);
    let tag = ctx.image("zstd", "v1");
    let oci = tempfile::tempdir().unwrap();
    let mut req = request(dir.path());
    req.tags = vec![tag.clone()];
    req.push = true;
    req.oci_dest = Some(oci.path().join("layout"));
    let mut rig = Rig::new();
    rig.opts.compression = Compression::Zstd;
    let (built, _) = rig.build(&req).await;
    let types: Vec<&str> = built.layers.iter().map(|l| l.media_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ]
    );
    let mut other = Rig::new();
    other.opts.compression = Compression::Zstd;
    let (again, _) = other.build(&request(dir.path())).await;
    assert_eq!(again.manifest_digest, built.manifest_digest);
    let gzip = Rig::new();
    let (gz, _) = gzip.build(&request(dir.path())).await;
    assert_ne!(gz.manifest_digest, built.manifest_digest);

    // Pull back into an empty store (zstd layers accepted) and run it.
    let fresh = Rig::new();
    let dir2 = context(&[("Dockerfile", &format!("FROM {tag}\n"))]);
    let (pulled, _) = fresh.build(&request(dir2.path())).await;
    assert_eq!(pulled.layers, built.layers);
    assert_eq!(
        fresh.run_image(&pulled.manifest_digest).await,
        vec!["zstd!"]
    );

    let inspect = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{tag}"),
    ]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], built.manifest_digest.to_string());
    // umoci (0.4.7) reads gzip layers only: skopeo decompresses berth's zstd layers and
    // recompresses them with gzip into an OCI layout, which umoci unpacks.
    let layout = oci.path().join("layout");
    let regz = oci.path().join("regz");
    sh(Command::new("skopeo").args([
        "copy",
        "--dest-compress-format",
        "gzip",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:v1", regz.display()),
    ]));
    let bundle = oci.path().join("bundle");
    sh(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:v1", regz.display()),
        &bundle.display().to_string(),
    ]));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/srv/b.txt")).unwrap(),
        "zstd!\n"
    );
}

/// The Python app of the test below: apt-get and pip for real, written to give the same
/// layers twice (no logs, caches or byte code left in them).
const PYTHON_APP: &str = "FROM debian:bookworm-slim\n\
    ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1\n\
    RUN apt-get update -o Acquire::Retries=3 \\\n\
     && apt-get install -y --no-install-recommends python3-pip \\\n\
     && find /usr -name __pycache__ -prune -exec rm -rf {} + \\\n\
     && rm -rf /var/lib/apt/lists/* /var/log/* /var/cache/* /var/lib/dpkg/*-old\n\
    RUN pip install --break-system-packages --no-compile six==1.16.0\n\
    COPY app.py /app.py\n\
    CMD [\"python3\", \"/app.py\"]\n";

/// Scenario 1's author develops on ARM and ships both architectures: a Python app whose
/// `RUN apt-get install` and `RUN pip install` (six, pure Python, from PyPI through the
/// egress with the host's CA bundle) run for linux/arm64 under qemu-user beside the amd64
/// build, FROM `debian:bookworm-slim` — an index of both platforms in the test registry. Both
/// images run and print their architecture and the package's version, the pushed index lists
/// both, and a second build from an empty store gives the same index digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_app_with_apt_and_pip_builds_for_amd64_and_arm64_and_both_run() {
    let ctx = TestContext::new("build-python-multiarch").await;
    let dir = context(&[
        ("Dockerfile", PYTHON_APP),
        (
            "app.py",
            "import platform, six\nprint(platform.machine(), six.__version__)\n",
        ),
    ]);
    let rig_with_ca = || {
        let mut rig = Rig::new();
        rig.opts.platforms = platforms();
        rig.opts.sandbox.ca_certs = vec!["/etc/ssl/certs/ca-certificates.crt".into()];
        rig
    };
    let rig = rig_with_ca();
    let tag = ctx.image("python-multiarch", "v1");
    let mut req = request(dir.path());
    req.tags = vec![tag.clone()];
    req.push = true;
    let started = std::time::Instant::now();
    let (built, rec) = rig.build(&req).await;
    let cold = started.elapsed();
    let messages = rec.messages();
    // Side by side: the arm64 build's first step starts before the amd64 build has finished.
    assert!(
        messages.iter().any(|m| m.contains("at most 2 at once")),
        "{messages:#?}"
    );
    let first_arm = messages
        .iter()
        .position(|m| m.starts_with("[linux/arm64] "));
    let last_amd = messages
        .iter()
        .rposition(|m| m.starts_with("[linux/amd64] "));
    assert!(
        matches!((first_arm, last_amd), (Some(a), Some(b)) if a < b),
        "the platforms were built one after the other: {messages:#?}"
    );
    assert_eq!(built.media_type, "application/vnd.oci.image.index.v1+json");
    let (amd, arm) = (&built.platforms[0], &built.platforms[1]);
    assert!(arm.emulation.starts_with("binfmt:"), "{:?}", arm.emulation);
    assert_eq!(
        rig.run_image(&amd.manifest_digest).await,
        vec!["x86_64 1.16.0"]
    );
    assert_eq!(
        rig.run_image(&arm.manifest_digest).await,
        vec!["aarch64 1.16.0"]
    );

    let raw = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{tag}"),
    ]));
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["platform"]["architecture"].as_str())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);

    // The same inputs from an empty store: the same index, byte for byte.
    let again = rig_with_ca();
    let (rebuilt, _) = again.build(&request(dir.path())).await;
    assert_eq!(rebuilt.manifest_digest, built.manifest_digest);
    eprintln!("two-platform Python build, cold: {cold:?}");
}

/// One platform's failure stops the other at once, and nothing is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_platform_stops_the_other_and_nothing_is_pushed() {
    let ctx = TestContext::new("build-platform-fails").await;
    let mut rig = Rig::new();
    rig.opts.platforms = platforms();
    // amd64 fails once arm64 has started; arm64 would sleep for over a minute.
    let dir = context(&[(
        "Dockerfile",
        "FROM busybox:multiarch\nRUN if [ \"$(uname -m)\" = x86_64 ]; then sleep 3; exit 3; else sleep 67; fi\n",
    )]);
    let tag = ctx.image("platform-fails", "v1");
    let mut req = request(dir.path());
    req.tags = vec![tag.clone()];
    req.push = true;
    let started = std::time::Instant::now();
    let rec = crate::support::Recorder::default();
    let err = build(&rig.opts, &req, &rec).await.unwrap_err().to_string();
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the arm64 build was not stopped: {:?}",
        started.elapsed()
    );
    // Its RUN step is gone, not left sleeping (pgrep exits 1 when nothing matches).
    let left = Command::new("pgrep")
        .args(["-af", "sleep 67"])
        .output()
        .unwrap();
    assert_eq!(
        left.status.code(),
        Some(1),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let pushed = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{tag}"),
        ])
        .output()
        .unwrap();
    assert!(!pushed.status.success(), "something was pushed to {tag}");
}
