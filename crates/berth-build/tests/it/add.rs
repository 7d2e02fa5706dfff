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

/// An xz archive is refused with the Dockerfile line and what to do, never copied silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_of_an_xz_archive_is_a_clear_error() {
    let _ctx = TestContext::new("build-add-xz").await;
    let rig = Rig::new();
    let dir = context(&[
        ("f", "x\n"),
        ("Dockerfile", "FROM busybox\n\nADD f.tar.xz /x/\n"),
    ]);
    sh(Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-cJf")
        .arg(dir.path().join("f.tar.xz"))
        .arg("f"));
    let err = berth_build::exec::build(&rig.opts, &request(dir.path()), &Recorder::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("Dockerfile:3:1:"), "{err}");
    assert!(err.contains("xz-compressed"), "{err}");
}
