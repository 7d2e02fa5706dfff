//! Building images end to end.

use std::process::Command;

use berth_build::exec::file_digest;
use berth_registry::PlatformSpec;
use berth_testkit::TestContext;

use crate::support::*;

/// COPY on busybox, pushed, pulled back and compared; cross-checked with skopeo and umoci; the
/// image runs under runc and prints the copied file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_image_pushes_pulls_back_and_runs() {
    let ctx = TestContext::new("build-copy").await;
    let rig = Rig::new();
    let dir = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY hello.txt /srv/hello.txt\nWORKDIR /srv\nCMD [\"cat\", \"hello.txt\"]\n",
        ),
        ("hello.txt", "hello from berth\n"),
    ]);
    let oci = tempfile::tempdir().unwrap();
    let tag = ctx.image("copy", "v1");
    let mut req = request(dir.path());
    req.tags = vec![tag.clone()];
    req.push = true;
    req.oci_dest = Some(oci.path().join("layout"));
    let (built, _) = rig.build(&req).await;
    assert_eq!(built.pushed.len(), 1);

    // Pull back and compare.
    let registry = ctx.env.registry();
    let (bytes, media_type, digest) = registry.pull_manifest(&tag).await.unwrap();
    assert_eq!(digest, built.manifest_digest);
    assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        bytes,
        std::fs::read(rig.opts.store.blob_path(&built.manifest_digest)).unwrap()
    );
    let config = registry
        .pull_blob(&tag, &built.config_digest)
        .await
        .unwrap();
    assert_eq!(
        config,
        std::fs::read(rig.opts.store.blob_path(&built.config_digest)).unwrap()
    );
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "hello.txt"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        built.layers.len()
    );
    let last = built.layers.last().unwrap();
    assert_eq!(
        rig.layer_entries(&last.digest),
        vec!["d srv", "f srv/hello.txt"]
    );

    // skopeo reads what the registry holds.
    let out = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{tag}"),
    ]));
    let inspect: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspect["Digest"], built.manifest_digest.to_string());
    assert_eq!(
        inspect["Layers"].as_array().unwrap().len(),
        built.layers.len()
    );

    // umoci unpacks the OCI layout; runc runs the bundle.
    let bundle = oci.path().join("bundle");
    sh(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:v1", oci.path().join("layout").display()),
        bundle.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/srv/hello.txt")).unwrap(),
        "hello from berth\n"
    );
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!(["cat", "hello.txt"])
    );
    spec["process"]["terminal"] = false.into();
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let id = format!("berth-it-{}", &built.manifest_digest.hex()[..12]);
    let out = Command::new("runc")
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from berth\n");

    // And berth's own unpack + runc agree.
    assert_eq!(
        rig.run_image(&built.manifest_digest).await,
        vec!["hello from berth"]
    );
}

/// A RUN in one stage, COPY --from into another; the result runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_stage_copy_from() {
    let _ctx = TestContext::new("build-multistage").await;
    let rig = Rig::new();
    let dir = context(&[(
        "Dockerfile",
        "FROM busybox:1.35 AS build\nARG GREETING=built\nRUN mkdir -p /out && echo \"$GREETING in stage\" > /out/msg\n\
         FROM busybox\nCOPY --from=build /out/msg /msg\nENTRYPOINT [\"cat\"]\nCMD [\"/msg\"]\n",
    )]);
    let (built, _) = rig.build(&request(dir.path())).await;
    let last = built.layers.last().unwrap();
    assert_eq!(rig.layer_entries(&last.digest), vec!["f msg"]);
    assert_eq!(
        rig.run_image(&built.manifest_digest).await,
        vec!["built in stage"]
    );
}

/// RUN on Debian: the layer holds the new file and whiteouts for what was deleted; a
/// directory deleted and made again is opaque; the image runs and shows the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_layer_has_new_file_whiteouts_and_opaque_dir() {
    let _ctx = TestContext::new("build-run").await;
    let rig = Rig::new();
    let dir = context(&[(
        "Dockerfile",
        "FROM debian:bookworm-slim\n\
         RUN echo hi > /hello && rm -rf /var/cache/debconf /etc/apt/sources.list\n\
         RUN rm -rf /etc/apt/apt.conf.d && mkdir /etc/apt/apt.conf.d && echo x > /etc/apt/apt.conf.d/new\n\
         CMD [\"sh\", \"-c\", \"ls /etc/apt/apt.conf.d; test ! -e /var/cache/debconf && cat /hello\"]\n",
    )]);
    let (built, _) = rig.build(&request(dir.path())).await;
    let n = built.layers.len();
    let first = rig.layer_entries(&built.layers[n - 2].digest);
    assert!(first.contains(&"f hello".to_string()), "{first:?}");
    assert!(
        first.contains(&"f var/cache/.wh.debconf".to_string()),
        "{first:?}"
    );
    assert!(
        first.contains(&"f etc/apt/.wh.sources.list".to_string()),
        "{first:?}"
    );
    assert!(
        !first
            .iter()
            .any(|e| e.contains("proc/") || e.contains("resolv.conf")),
        "{first:?}"
    );
    assert_eq!(
        rig.layer_file(&built.layers[n - 2].digest, "hello")
            .as_deref(),
        Some("hi\n")
    );
    let second = rig.layer_entries(&built.layers[n - 1].digest);
    // Deleted and made again: opaque — unless the new directory got the old one's inode
    // number back (the file system reuses freed inodes; seen twice under a loaded suite), in
    // which case each removed entry gets its own whiteout. Both give the same file system.
    let opaque = second.contains(&"f etc/apt/apt.conf.d/.wh..wh..opq".to_string());
    let each = ["01autoremove", "70debconf"]
        .iter()
        .all(|f| second.contains(&format!("f etc/apt/apt.conf.d/.wh.{f}")));
    assert!(opaque || each, "{second:?}");
    assert!(
        second.contains(&"f etc/apt/apt.conf.d/new".to_string()),
        "{second:?}"
    );
    assert_eq!(
        rig.run_image(&built.manifest_digest).await,
        vec!["new", "hi"]
    );
}

/// A failing RUN names the Dockerfile line and exit code and shows the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_run_names_line_and_exit_code() {
    let _ctx = TestContext::new("build-run-fails").await;
    let rig = Rig::new();
    let dir = context(&[(
        "Dockerfile",
        "FROM busybox\n\nRUN echo about to fail && exit 3\n",
    )]);
    let err = berth_build::exec::build(&rig.opts, &request(dir.path()), &Recorder::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("Dockerfile:3:1:"), "{err}");
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("about to fail"), "{err}");
}

/// `apt-get install` inside RUN, through the host network and deb.debian.org.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_installs_a_debian_package() {
    let _ctx = TestContext::new("build-apt").await;
    let rig = Rig::new();
    let dir = context(&[(
        "Dockerfile",
        "FROM debian:bookworm-slim\n\
         RUN apt-get update && apt-get install -y --no-install-recommends busybox && rm -rf /var/lib/apt/lists/*\n\
         CMD [\"busybox\", \"echo\", \"installed\"]\n",
    )]);
    let (built, _) = rig.build(&request(dir.path())).await;
    let entries = rig.layer_entries(&built.layers.last().unwrap().digest);
    assert!(
        entries.contains(&"f usr/bin/busybox".to_string()),
        "{entries:?}"
    );
    assert_eq!(
        rig.run_image(&built.manifest_digest).await,
        vec!["installed"]
    );
}

/// .dockerignore keeps a file out of `COPY .`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerignore_excludes_files() {
    let _ctx = TestContext::new("build-ignore").await;
    let rig = Rig::new();
    let dir = context(&[
        ("Dockerfile", "FROM busybox\nCOPY . /app/\n"),
        (".dockerignore", "secret.txt\n**/*.log\nDockerfile\n"),
        ("keep.txt", "keep"),
        ("secret.txt", "secret"),
        ("sub/debug.log", "log"),
        ("sub/code.sh", "echo"),
    ]);
    let (built, _) = rig.build(&request(dir.path())).await;
    let entries = rig.layer_entries(&built.layers.last().unwrap().digest);
    assert_eq!(
        entries,
        vec![
            "d app",
            "f app/.dockerignore",
            "f app/keep.txt",
            "d app/sub",
            "f app/sub/code.sh"
        ]
    );
}

/// Two builds with two empty stores give the same digest (COPY and RUN layers alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_are_stable_across_empty_stores() {
    let _ctx = TestContext::new("build-stable").await;
    let dir = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY app /app\nRUN mkdir /data && echo run > /data/x && chmod 600 /data/x\nLABEL a=b\n",
        ),
        ("app/a.txt", "a"),
        ("app/b/c.txt", "c"),
    ]);
    let one = Rig::new().build(&request(dir.path())).await.0;
    // Different mtimes on the context must not matter.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_files(dir.path(), &[("app/a.txt", "a")]);
    let two = Rig::new().build(&request(dir.path())).await.0;
    assert_eq!(one.manifest_digest, two.manifest_digest);
    assert_eq!(one.layers, two.layers);

    let mut rig = Rig::new();
    rig.opts.source_date_epoch = Some(1_700_000_000);
    let three = rig.build(&request(dir.path())).await.0;
    assert_ne!(three.manifest_digest, one.manifest_digest);
}

/// After a one-file change, every step before the changed COPY comes from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_reuses_steps_before_a_one_file_change() {
    let _ctx = TestContext::new("build-cache").await;
    let rig = Rig::new();
    let dir = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY deps.txt /deps.txt\nRUN cp /deps.txt /installed\nCOPY src /src\nRUN cat /installed /src/main > /result\nCMD [\"cat\", \"/result\"]\n",
        ),
        ("deps.txt", "deps\n"),
        ("src/main", "v1\n"),
    ]);
    let (first, _) = rig.build(&request(dir.path())).await;
    assert_eq!((first.steps, first.cache_hits), (4, 0));
    let (again, _) = rig.build(&request(dir.path())).await;
    assert_eq!((again.steps, again.cache_hits), (4, 4));
    assert_eq!(again.manifest_digest, first.manifest_digest);

    write_files(dir.path(), &[("src/main", "v2\n")]);
    let started = std::time::Instant::now();
    let (changed, rec) = rig.build(&request(dir.path())).await;
    let rebuild = started.elapsed();
    assert_eq!((changed.steps, changed.cache_hits), (4, 2));
    let msgs = rec.messages();
    assert!(
        msgs.iter().any(|m| m.contains("CACHED COPY deps.txt")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("CACHED RUN")), "{msgs:?}");
    assert_eq!(
        changed.layers[..changed.layers.len() - 2],
        first.layers[..first.layers.len() - 2]
    );
    assert_ne!(changed.manifest_digest, first.manifest_digest);
    assert_eq!(
        rig.run_image(&changed.manifest_digest).await,
        vec!["deps", "v2"]
    );
    eprintln!("one-file rebuild took {rebuild:?}");
}

/// Pulling `busybox` resolves docker.io/library/busybox through the mirror, blobs verified,
/// and a second pull downloads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_mirror_into_store() {
    let ctx = TestContext::new("build-pull").await;
    let rig = Rig::new();
    let image = "busybox".parse().unwrap();
    let platform = PlatformSpec {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    let rec = Recorder::default();
    let img = rig
        .opts
        .store
        .pull(&ctx.env.registry(), &image, &platform, &rec)
        .await
        .unwrap();
    assert!(!img.layers.is_empty());
    for l in &img.layers {
        let (d, size) = file_digest(&rig.opts.store.blob_path(&l.digest)).unwrap();
        assert_eq!((d, size), (l.digest.clone(), l.size));
    }
    let pulls = rec.messages().len();
    assert!(pulls >= 1);
    rig.opts
        .store
        .pull(&ctx.env.registry(), &image, &platform, &rec)
        .await
        .unwrap();
    assert_eq!(rec.messages().len(), pulls, "second pull downloaded again");
}

/// An image index (two platforms) in the registry: resolving picks the host's entry and a
/// build FROM the index uses that manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_index_resolves_to_the_platform() {
    let ctx = TestContext::new("build-index").await;
    let rig = Rig::new();
    let dir = context(&[("Dockerfile", "FROM busybox\nLABEL which=amd64\n")]);
    let single = ctx.image("multi", "amd64");
    let mut req = request(dir.path());
    req.tags = vec![single.clone()];
    req.push = true;
    let (built, _) = rig.build(&req).await;
    let size = std::fs::metadata(rig.opts.store.blob_path(&built.manifest_digest))
        .unwrap()
        .len();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": built.manifest_digest.to_string(), "size": size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": built.manifest_digest.to_string(), "size": size,
             "platform": {"os": "linux", "architecture": "amd64"}}
        ]
    });
    let index_ref = ctx.image("multi", "index");
    let registry = ctx.env.registry();
    registry
        .push_manifest(
            &index_ref,
            serde_json::to_vec(&index).unwrap(),
            "application/vnd.oci.image.index.v1+json",
        )
        .await
        .unwrap();
    let platform = PlatformSpec {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    let resolved = registry
        .resolve_manifest(&index_ref, &platform)
        .await
        .unwrap();
    assert_eq!(resolved.digest, built.manifest_digest);
    let missing = PlatformSpec {
        architecture: "s390x".into(),
        ..platform
    };
    let err = registry
        .resolve_manifest(&index_ref, &missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("linux/arm64, linux/amd64"), "{err}");

    let dir2 = context(&[("Dockerfile", &format!("FROM {index_ref}\nCMD [\"true\"]\n"))]);
    let (from_index, _) = rig.build(&request(dir2.path())).await;
    assert_eq!(from_index.layers, built.layers);
}

/// A one-file change rebuild takes the root filesystem the previous build kept, rewinds the
/// steps after the cache hit (a COPY and a RUN that only added files) and gives the image a
/// build in an empty store gives — a file deleted from the context is gone from it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_rewinds_a_kept_root_filesystem_to_the_same_digest() {
    let _ctx = TestContext::new("build-kept-rootfs").await;
    let rig = Rig::new();
    let dir = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY deps /app/deps\nRUN echo deps > /app/deps.done\nCOPY src /app/src\nRUN cat /app/src/main > /app/out && ls /app/src >> /app/out\nCMD [\"cat\", \"/app/out\"]\n",
        ),
        ("deps/a", "a\n"),
        ("deps/b/c", "c\n"),
        ("src/main", "v1\n"),
        ("src/old", "old\n"),
    ]);
    let (first, rec) = rig.build(&request(dir.path())).await;
    assert!(!rec.messages().iter().any(|m| m.contains("kept root")));
    std::fs::remove_file(dir.path().join("src/old")).unwrap();
    write_files(dir.path(), &[("src/main", "v2\n")]);
    let (second, rec) = rig.build(&request(dir.path())).await;
    assert_eq!((second.steps, second.cache_hits), (4, 2));
    assert!(
        rec.messages()
            .iter()
            .any(|m| m.contains("reusing a kept root filesystem")),
        "{:?}",
        rec.messages()
    );
    assert_ne!(first.manifest_digest, second.manifest_digest);
    let fresh = Rig::new();
    let (clean, _) = fresh.build(&request(dir.path())).await;
    assert_eq!(second.manifest_digest, clean.manifest_digest);
    assert_eq!(
        rig.run_image(&second.manifest_digest).await,
        vec!["v2", "main"]
    );
}

/// `COPY --exclude` leaves out matching paths below a source directory and matching source
/// files, with `.dockerignore` syntax (`**`, `!`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_exclude_leaves_out_matching_paths() {
    let _ctx = TestContext::new("build-copy-exclude").await;
    let rig = Rig::new();
    let dir = context(&[
        (
            "Dockerfile",
            "FROM busybox\n\
             COPY --exclude=**/*.log --exclude=tmp --exclude=!keep.log app /app\n\
             COPY --exclude=*.txt a.txt b.md /top/\n",
        ),
        ("app/main", "m\n"),
        ("app/debug.log", "x\n"),
        ("app/keep.log", "k\n"),
        ("app/sub/deep.log", "x\n"),
        ("app/sub/ok", "o\n"),
        ("app/tmp/t", "t\n"),
        ("a.txt", "a\n"),
        ("b.md", "b\n"),
    ]);
    let (built, _) = rig.build(&request(dir.path())).await;
    let n = built.layers.len();
    let mut app = rig.layer_entries(&built.layers[n - 2].digest);
    app.sort();
    assert_eq!(
        app,
        vec![
            "d app",
            "d app/sub",
            "f app/keep.log",
            "f app/main",
            "f app/sub/ok"
        ]
    );
    let top = rig.layer_entries(&built.layers[n - 1].digest);
    assert!(top.contains(&"f top/b.md".to_string()), "{top:?}");
    assert!(!top.iter().any(|e| e.contains("a.txt")), "{top:?}");
}

/// A SIGKILLed build leaves its runc bundle (whose `config.json` holds `env=` secrets) and its
/// secret files in the store's scratch directory. The next build removes the entries of
/// processes that are gone — and of a pid reused by a process started later — while the
/// entries of a live build sharing the store stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_left_by_a_killed_build_are_removed_by_the_next_build() {
    let _ctx = TestContext::new("build-stale-tmp").await;
    let rig = Rig::new();
    let tmp = rig.opts.store.root().join("berth/tmp");
    let mut done = Command::new("true").spawn().unwrap();
    let dead = done.id();
    done.wait().unwrap();
    let mut live = Command::new("sleep").arg("120").spawn().unwrap();
    let plant_bundle = |name: String| {
        let p = tmp.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("config.json"), r#"{"env":["API_TOKEN=s3cr3t"]}"#).unwrap();
        p
    };
    let stale_bundle = plant_bundle(format!("bundle-{dead}-1a2b-0"));
    let stale_secret = tmp.join(format!("secret-{dead}-1a2b-1"));
    std::fs::write(&stale_secret, "s3cr3t").unwrap();
    let live_bundle = plant_bundle(format!("bundle-{}-1a2b-2", live.id()));
    // The live process's pid on an entry written before it started: the pid was reused.
    let reused = plant_bundle(format!("bundle-{}-1a2b-3", live.id()));
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&reused)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();

    let dir = context(&[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "x")]);
    let (_, events) = rig.build(&request(dir.path())).await;
    let gone = |p: &std::path::Path| !p.exists();
    let stays = live_bundle.join("config.json").exists();
    live.kill().unwrap();
    live.wait().unwrap();
    assert!(
        gone(&stale_bundle),
        "the dead build's bundle is still there"
    );
    assert!(
        gone(&stale_secret),
        "the dead build's secret file is still there"
    );
    assert!(gone(&reused), "an entry of a reused pid is still there");
    assert!(stays, "the live build's bundle was removed");
    assert!(
        events
            .messages()
            .iter()
            .any(|m| m.contains("removed 3 scratch entries")),
        "{:?}",
        events.messages()
    );
}
