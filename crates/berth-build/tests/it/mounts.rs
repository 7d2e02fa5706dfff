//! `RUN --mount=type=cache`, `tmpfs`, `bind` and `secret`.

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

/// `RUN --mount=type=bind`: from the context (read-only, `.dockerignore` applied), from another
/// stage (one file), and `rw` (writes land in a scratch copy, never in the context). No layer
/// holds a mount point or mounted file, and a change to a bound context file re-runs the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounts_from_context_and_stage_stay_out_of_layers() {
    let _ctx = TestContext::new("build-bind-mount").await;
    let rig = Rig::new();
    let dockerfile = "FROM busybox AS tools\n\
         RUN echo tool > /tool.txt\n\
         FROM busybox\n\
         RUN --mount=type=bind,source=src,target=/mnt/src \\\n\
             cat /mnt/src/a > /out && if touch /mnt/src/x 2>/dev/null; then echo rw >> /out; else echo ro >> /out; fi\n\
         RUN --mount=type=bind,from=tools,source=/tool.txt,target=/t.txt cat /t.txt >> /out\n\
         RUN --mount=type=bind,source=src,target=/w,rw touch /w/new && ls /w >> /out\n\
         CMD [\"cat\", \"/out\"]\n";
    let dir = context(&[
        ("Dockerfile", dockerfile),
        (".dockerignore", "src/ignored\n"),
        ("src/a", "A\n"),
        ("src/ignored", "no\n"),
    ]);
    let (first, _) = rig.build(&request(dir.path())).await;
    assert_eq!(
        rig.run_image(&first.manifest_digest).await,
        vec!["A", "ro", "tool", "a", "new"]
    );
    let n = first.layers.len();
    for layer in &first.layers[n - 3..] {
        // Directories whose mtime the runtime's own mount points touched (/etc) may appear.
        let files: Vec<String> = rig
            .layer_entries(&layer.digest)
            .into_iter()
            .filter(|e| !e.starts_with("d ") || e.contains("mnt") || e.contains('w'))
            .collect();
        assert_eq!(files, vec!["f out"], "only /out changes");
    }
    assert!(!dir.path().join("src/new").exists());
    assert!(!dir.path().join("src/x").exists());

    write_files(dir.path(), &[("src/a", "B\n")]);
    let (second, _) = rig.build(&request(dir.path())).await;
    // tools' RUN is cached; the three RUNs that bind the context (or follow one) run again.
    assert_eq!((second.steps, second.cache_hits), (4, 1));
    assert_eq!(
        rig.run_image(&second.manifest_digest).await,
        vec!["B", "ro", "tool", "a", "new"]
    );
}

/// `RUN --mount=type=secret`: the value is readable at /run/secrets/ID (and as `env=`), and
/// nothing of it — nor the mount point — reaches a layer, the image config or the build
/// cache; a required secret that was not given is an error at the RUN's line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_mount_is_readable_and_never_stored() {
    use berth_build::exec::SecretSource;
    let _ctx = TestContext::new("build-secret-mount").await;
    let mut rig = Rig::new();
    let value = format!("tok-{}", berth_testkit::unique_suffix());
    let secret_file = rig.store_dir.path().join("../secret-value");
    let secret_file =
        secret_file.with_file_name(format!("secret-{}", berth_testkit::unique_suffix()));
    std::fs::write(&secret_file, &value).unwrap();
    rig.opts
        .secrets
        .insert("tok", SecretSource::File(secret_file.clone()));
    rig.opts
        .secrets
        .insert("reg", SecretSource::Env("BERTH_REGISTRY".into()));
    let dockerfile = "FROM busybox\n\
         RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len && ls -l /run/secrets/tok | cut -c1-10 >> /len\n\
         RUN --mount=type=secret,id=tok,env=TOK,target=/etc/tok sh -c 'echo ${#TOK} >> /len; cat /etc/tok | wc -c >> /len'\n\
         RUN --mount=type=secret,id=reg,env=REG sh -c 'echo ${#REG} >> /len'\n\
         RUN --mount=type=secret,id=absent true\n\
         CMD [\"cat\", \"/len\"]\n";
    let dir = context(&[("Dockerfile", dockerfile)]);
    let (built, _) = rig.build(&request(dir.path())).await;
    let registry_len = std::env::var("BERTH_REGISTRY").unwrap().len().to_string();
    let len = value.len().to_string();
    assert_eq!(
        rig.run_image(&built.manifest_digest).await,
        vec![len.as_str(), "-r--------", &len, &len, &registry_len]
    );
    for layer in &built.layers[1..] {
        let entries = rig.layer_entries(&layer.digest);
        assert!(
            !entries
                .iter()
                .any(|e| e.contains("run") || e.contains("secrets") || e.contains("tok")),
            "{entries:?}"
        );
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut rig.layer_reader(&layer.digest), &mut bytes).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&value));
    }
    // Nothing in the store (blobs, cache records, scratch) holds the value.
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", &value, rig.store_dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );
    std::fs::remove_file(&secret_file).unwrap();

    let dir = context(&[(
        "Dockerfile",
        "FROM busybox\n\nRUN --mount=type=secret,id=gone,required=true true\n",
    )]);
    let err = berth_build::exec::build(&rig.opts, &request(dir.path()), &Recorder::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("Dockerfile:3:1: RUN"), "{err}");
    assert!(err.contains("--secret id=gone,src=FILE"), "{err}");
}

/// On a server two repositories' builds share one store: a cache mount id one repository
/// writes must not be what another repository's RUN reads (one project poisoning another's
/// `npm`/`pip` cache). Within one scope the cache still persists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_mounts_of_one_repository_are_not_seen_by_another() {
    let _ctx = TestContext::new("build-cache-scope").await;
    let mut rig = Rig::new();
    rig.opts.cache_scope = Some("repository a".into());
    let dir = context(&[(
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=cache,target=/cache,id=npm echo poisoned > /cache/planted-by-a\n",
    )]);
    rig.build(&request(dir.path())).await;

    let look = |n: &str| {
        format!(
            "FROM busybox\n\
             RUN --mount=type=cache,target=/cache,id=npm ls /cache > /seen-{n}; echo end >> /seen-{n}\n"
        )
    };
    rig.opts.cache_scope = Some("repository b".into());
    let dir_b = context(&[("Dockerfile", &look("b"))]);
    let (b, _) = rig.build(&request(dir_b.path())).await;
    assert_eq!(
        rig.layer_file(&b.layers.last().unwrap().digest, "seen-b")
            .as_deref(),
        Some("end\n"),
        "repository b saw repository a's cache file"
    );

    rig.opts.cache_scope = Some("repository a".into());
    let dir_a = context(&[("Dockerfile", &look("a"))]);
    let (a, _) = rig.build(&request(dir_a.path())).await;
    assert_eq!(
        rig.layer_file(&a.layers.last().unwrap().digest, "seen-a")
            .as_deref(),
        Some("planted-by-a\nend\n"),
        "repository a lost its own cache"
    );
}
