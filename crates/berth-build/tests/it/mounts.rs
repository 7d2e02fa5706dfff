//! `RUN --mount=type=cache` and `type=tmpfs`.

use berth_testkit::TestContext;

use crate::support::*;

/// A RUN writes into a cache mount; a later build (another Dockerfile, so no build-cache hit)
/// reads it back through the same id — with `sharing=locked` and `private` too — and no layer
/// holds the cache's files or the mount point berth created for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_mount_persists_between_builds_and_stays_out_of_layers() {
    let _ctx = TestContext::new("build-cache-mount").await;
    let rig = Rig::new();
    let dir = context(&[(
        "Dockerfile",
        "FROM busybox\n\
         WORKDIR /app\n\
         RUN --mount=type=cache,target=/cache,id=c1 \\\n\
             echo one > /cache/a && echo two > /cache/b && mkdir -p /cache/d && echo built > /marker\n",
    )]);
    let (first, _) = rig.build(&request(dir.path())).await;
    let entries = rig.layer_entries(&first.layers.last().unwrap().digest);
    assert!(entries.contains(&"f marker".to_string()), "{entries:?}");
    assert!(!entries.iter().any(|e| e.contains("cache")), "{entries:?}");

    let dir2 = context(&[(
        "Dockerfile",
        "FROM busybox\n\
         WORKDIR /app\n\
         RUN --mount=type=cache,target=/app/.cache,id=c1,sharing=locked \\\n\
             ls /app/.cache | wc -l > /count && cat /app/.cache/a /app/.cache/b >> /count \\\n\
             && echo three > /app/.cache/c\n\
         RUN --mount=type=cache,target=/var/cache/x,id=c1,sharing=private \\\n\
             --mount=type=tmpfs,target=/scratch \\\n\
             ls /var/cache/x | wc -l >> /count && echo t > /scratch/t\n\
         CMD [\"cat\", \"/count\"]\n",
    )]);
    let (second, _) = rig.build(&request(dir2.path())).await;
    assert_eq!(second.cache_hits, 0);
    let n = second.layers.len();
    for layer in &second.layers[n - 2..] {
        let entries = rig.layer_entries(&layer.digest);
        assert!(
            !entries
                .iter()
                .any(|e| e.contains("cache") || e.contains("scratch")),
            "{entries:?}"
        );
    }
    assert_eq!(
        rig.run_image(&second.manifest_digest).await,
        vec!["3", "one", "two", "4"]
    );
}

/// The build cache keys a RUN on its mounts: the same command with another cache id runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_mount_spec_is_part_of_the_step_key() {
    let _ctx = TestContext::new("build-cache-mount-key").await;
    let rig = Rig::new();
    let files = |id: &str| {
        format!("FROM busybox\nRUN --mount=type=cache,target=/c,id={id} ls /c | wc -l > /n\n")
    };
    let dir = context(&[("Dockerfile", &files("k1"))]);
    let (a, _) = rig.build(&request(dir.path())).await;
    let (b, _) = rig.build(&request(dir.path())).await;
    assert_eq!((a.cache_hits, b.cache_hits), (0, 1));
    write_files(dir.path(), &[("Dockerfile", &files("k2"))]);
    let (c, _) = rig.build(&request(dir.path())).await;
    assert_eq!(c.cache_hits, 0);
}
