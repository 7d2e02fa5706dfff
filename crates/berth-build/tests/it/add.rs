//! `ADD` of local archives: extracted (plain and gzip tar, recognised by content), other files
//! copied as they are.

use std::process::Command;

use berth_testkit::TestContext;

use crate::support::*;

/// A plain tar and a gzip tar (named without an archive extension) are extracted into the
/// destination directory with their owners and modes; `--unpack=false` and a non-archive
/// `.tar.gz`-named file are copied verbatim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_extracts_local_tar_and_gzip_archives() {
    let _ctx = TestContext::new("build-add-archive").await;
    let rig = Rig::new();
    let dir = context(&[
        ("src/app/bin/run", "#!/bin/sh\necho app\n"),
        ("src/app/conf/a.conf", "a=1\n"),
        ("fake.tar.gz", "not an archive\n"),
        (
            "Dockerfile",
            "FROM busybox\n\
             ADD app.tar /opt\n\
             ADD bundle /srv/\n\
             ADD --unpack=false app.tar /keep/\n\
             ADD fake.tar.gz /fake/\n\
             CMD [\"sh\", \"-c\", \"/opt/app/bin/run; cat /srv/app/conf/a.conf; stat -c '%u %a' /srv/app/conf/a.conf; ls /keep/app.tar /fake/fake.tar.gz\"]\n",
        ),
    ]);
    let src = dir.path().join("src");
    std::fs::set_permissions(
        src.join("app/bin/run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    sh(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["--owner=1000", "--group=1000", "-cf"])
        .arg(dir.path().join("app.tar"))
        .arg("app"));
    sh(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} --owner=1000 --group=1000 -cf - app | gzip -n > {}",
        src.display(),
        dir.path().join("bundle").display()
    )));
    let (built, _) = rig.build(&request(dir.path())).await;
    let n = built.layers.len();
    let opt = rig.layer_entries(&built.layers[n - 4].digest);
    assert!(opt.contains(&"f opt/app/bin/run".to_string()), "{opt:?}");
    assert_eq!(
        rig.layer_file(&built.layers[n - 3].digest, "srv/app/conf/a.conf")
            .as_deref(),
        Some("a=1\n")
    );
    assert_eq!(
        rig.run_image(&built.manifest_digest).await,
        vec![
            "app",
            "a=1",
            "1000 644",
            "/fake/fake.tar.gz",
            "/keep/app.tar"
        ]
    );
}

/// ADD extracts xz, bzip2 and zstd tars too — recognised by content, whatever the file is
/// called — and copies a compressed file that holds no tar as it is, as Docker does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_extracts_xz_bzip2_and_zstd_archives_by_content() {
    let _ctx = TestContext::new("build-add-compressed").await;
    let rig = Rig::new();
    let dir = context(&[
        ("payload/x/f", "from an archive\n"),
        ("plain.txt", "not a tar\n"),
        (
            "Dockerfile",
            "FROM busybox\nADD a.tar.xz /xz/\nADD b.tbz /bz/\nADD c.bin /zst/\nADD plain.txt.xz /raw/\n\
             RUN cat /xz/x/f /bz/x/f /zst/x/f > /out && ls /raw >> /out\nCMD [\"cat\", \"/out\"]\n",
        ),
    ]);
    let tar = |flags: &[&str], out: &str| {
        sh(Command::new("tar")
            .arg("-C")
            .arg(dir.path().join("payload"))
            .args(flags)
            .arg(dir.path().join(out))
            .arg("x"));
    };
    tar(&["-cJf"], "a.tar.xz");
    tar(&["-cjf"], "b.tbz");
    tar(&["--zstd", "-cf"], "c.bin");
    sh(Command::new("xz")
        .arg("-k")
        .arg(dir.path().join("plain.txt")));
    let (built, _) = rig.build(&request(dir.path())).await;
    assert_eq!(
        rig.run_image(&built.manifest_digest).await,
        vec![
            "from an archive",
            "from an archive",
            "from an archive",
            "plain.txt.xz"
        ]
    );
    let entries = rig.layer_entries(&built.layers[1].digest);
    assert_eq!(entries, vec!["d xz", "d xz/x", "f xz/x/f"]);
}

/// `COPY --parents` keeps each source's directories below the destination — for globs, for a
/// `/./` pivot, for a directory and from another stage — where plain COPY flattens them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_parents_keeps_source_directories() {
    let _ctx = TestContext::new("build-copy-parents").await;
    let rig = Rig::new();
    let dir = context(&[
        ("x/a.txt", "a\n"),
        ("y/b.txt", "b\n"),
        ("y/c.txt", "c\n"),
        ("p/q/r.txt", "r\n"),
        ("lib/m.txt", "m\n"),
        (
            "Dockerfile",
            "FROM busybox AS s\nRUN mkdir -p /opt/k && echo k > /opt/k/k.txt\n\
             FROM busybox\n\
             COPY --parents x/a.txt y/*.txt /dst/\n\
             COPY --parents ./p/./q/r.txt /piv/\n\
             COPY --parents lib /l/\n\
             COPY --parents --from=s /opt/k/k.txt /st\n\
             COPY y/*.txt /flat/\n\
             RUN find /dst /piv /l /st /flat -type f | sort > /out\n\
             CMD [\"cat\", \"/out\"]\n",
        ),
    ]);
    let (built, _) = rig.build(&request(dir.path())).await;
    assert_eq!(
        rig.run_image(&built.manifest_digest).await,
        vec![
            "/dst/x/a.txt",
            "/dst/y/b.txt",
            "/dst/y/c.txt",
            "/flat/b.txt",
            "/flat/c.txt",
            "/l/lib/m.txt",
            "/piv/q/r.txt",
            "/st/opt/k/k.txt",
        ]
    );
}
