//! Fetch, resolve, worktrees, polling and force-pushes on local repositories.

use std::sync::Arc;

use berth_git::{GitCache, GitError, Remote};

use crate::{Events, Upstream, git};

fn cache() -> (tempfile::TempDir, GitCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(dir.path().join("cache")).unwrap();
    (dir, cache)
}

#[tokio::test]
async fn fetch_by_path_and_by_file_url() {
    let up = Upstream::new("board");
    let (_d, cache) = cache();
    let events = Events::default();
    let cache = cache.with_events(Arc::new(events.clone()));

    let by_path = Remote::new(up.bare.to_str().unwrap());
    let mirror = cache.fetch("acme/board", &by_path).await.unwrap();
    assert!(mirror.join("HEAD").exists());
    assert_eq!(mirror, cache.mirror_path("acme/board").unwrap());
    assert_eq!(
        cache.resolve("acme/board", "main").await.unwrap(),
        up.head()
    );

    let by_url = Remote::new(format!("file://{}", up.bare.display()));
    cache.fetch("acme/board-url", &by_url).await.unwrap();
    assert_eq!(
        cache.resolve("acme/board-url", "main").await.unwrap(),
        up.head()
    );
    // Only branches and tags are mirrored; no temporary directories are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(cache.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let text = events.text();
    assert!(text.contains("cloned acme/board from"), "{text}");
}

#[tokio::test]
async fn a_second_push_is_seen_by_the_next_fetch() {
    let up = Upstream::new("board");
    let (_d, cache) = cache();
    let remote = Remote::new(up.bare.to_str().unwrap());
    cache.fetch("board", &remote).await.unwrap();
    let first = up.head();
    let second = up.commit("src/app.js", "console.log(1)\n", "Add the app");
    up.push(&["main"]);
    assert_eq!(cache.resolve("board", "main").await.unwrap(), first);
    cache.fetch("board", &remote).await.unwrap();
    assert_eq!(cache.resolve("board", "main").await.unwrap(), second);
    assert_eq!(cache.resolve("board", &second[..10]).await.unwrap(), second);
    assert!(cache.is_ancestor("board", &first, "main").await.unwrap());
}

#[tokio::test]
async fn two_worktrees_of_different_commits_at_once() {
    let up = Upstream::new("board");
    let v1 = up.commit("VERSION", "1\n", "v1");
    let v2 = up.commit("VERSION", "2\n", "v2");
    up.push(&["main"]);
    let (dir, cache) = cache();
    cache
        .fetch("board", &Remote::new(up.bare.to_str().unwrap()))
        .await
        .unwrap();

    let runs = dir.path().join("runs");
    let (run1, run2) = (runs.join("run-1"), runs.join("run-2"));
    let (a, b) = tokio::join!(
        cache.worktree("board", &v1, &run1),
        cache.worktree("board", &v2, &run2),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.commit(), v1);
    assert_eq!(b.commit(), v2);
    assert_eq!(
        std::fs::read_to_string(a.path().join("VERSION")).unwrap(),
        "1\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.path().join("VERSION")).unwrap(),
        "2\n"
    );
    // Detached: no branch is checked out, so the same commit can be checked out twice.
    let c = cache
        .worktree("board", &v2, &runs.join("run-3"))
        .await
        .unwrap();
    assert_eq!(git(c.path(), &["rev-parse", "HEAD"]), v2);

    let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
    a.remove().await.unwrap();
    assert!(!pa.exists());
    drop(b);
    assert!(!pb.exists());
    drop(c);
    // The dropped worktrees are pruned before the next one; its name may be reused.
    let again = cache
        .worktree("board", "main", &runs.join("run-2"))
        .await
        .unwrap();
    assert_eq!(again.commit(), v2);
    let mirror = cache.mirror_path("board").unwrap();
    let listed = git(&mirror, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 2, "{listed}");

    let busy = cache
        .worktree("board", "main", again.path())
        .await
        .unwrap_err();
    assert!(matches!(busy, GitError::DestinationExists { .. }), "{busy}");
}

#[tokio::test]
async fn ls_remote_polls_a_branch_without_fetching() {
    let up = Upstream::new("board");
    let (_d, cache) = cache();
    let remote = Remote::new(format!("file://{}", up.bare.display()));
    assert_eq!(
        cache.ls_remote(&remote, "main").await.unwrap(),
        Some(up.head())
    );
    assert_eq!(cache.ls_remote(&remote, "nope").await.unwrap(), None);
    // A branch whose name ends like another's is not mistaken for it.
    git(&up.work, &["checkout", "--quiet", "-b", "feature/main"]);
    let feature = up.commit("f", "x\n", "feature");
    up.push(&["feature/main"]);
    assert_eq!(
        cache.ls_remote(&remote, "main").await.unwrap().as_deref(),
        Some(git(&up.work, &["rev-parse", "main"]).as_str())
    );
    assert_eq!(
        cache
            .ls_remote(&remote, "refs/heads/feature/main")
            .await
            .unwrap(),
        Some(feature)
    );
    let all = cache.ls_remote_branches(&remote).await.unwrap();
    assert_eq!(
        all.keys().map(String::as_str).collect::<Vec<_>>(),
        ["feature/main", "main"]
    );
    assert_eq!(
        all["feature/main"],
        git(&up.work, &["rev-parse", "feature/main"])
    );
    assert!(!cache.mirror_path("board").unwrap().exists());
}

#[tokio::test]
async fn the_mirror_head_follows_the_remote_default_branch() {
    let up = Upstream::new("board");
    git(&up.work, &["checkout", "--quiet", "-b", "trunk"]);
    let trunk = up.commit("t", "t\n", "trunk");
    up.push(&["trunk"]);
    git(&up.bare, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    let (_d, cache) = cache();
    cache
        .fetch("board", &Remote::new(up.bare.to_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(cache.resolve("board", "HEAD").await.unwrap(), trunk);
    // An empty repository has no HEAD to follow and fetches all the same.
    let empty = up.dir.path().join("empty.git");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "--bare", "--quiet"]);
    cache
        .fetch("empty", &Remote::new(empty.to_str().unwrap()))
        .await
        .unwrap();
    let e = cache.resolve("empty", "HEAD").await.unwrap_err();
    assert!(matches!(e, GitError::UnknownRevision { .. }), "{e}");
}

#[tokio::test]
async fn a_force_push_replaces_the_branch_and_deleted_branches_go() {
    let up = Upstream::new("board");
    let base = up.head();
    let doomed = up.commit("bad.txt", "oops\n", "A commit to be force-pushed away");
    up.push(&["main"]);
    git(&up.work, &["checkout", "--quiet", "-b", "topic"]);
    up.commit("topic.txt", "t\n", "topic");
    up.push(&["topic"]);
    let (_d, cache) = cache();
    let remote = Remote::new(up.bare.to_str().unwrap());
    cache.fetch("board", &remote).await.unwrap();
    assert_eq!(cache.resolve("board", "main").await.unwrap(), doomed);

    git(&up.work, &["checkout", "--quiet", "main"]);
    git(&up.work, &["reset", "--quiet", "--hard", &base]);
    let replacement = up.commit("good.txt", "fine\n", "The replacement");
    up.push(&["--force", "main"]);
    git(
        &up.work,
        &["push", "--quiet", "origin", "--delete", "topic"],
    );

    cache.fetch("board", &remote).await.unwrap();
    assert_eq!(cache.resolve("board", "main").await.unwrap(), replacement);
    assert!(!cache.is_ancestor("board", &doomed, "main").await.unwrap());
    let gone = cache.resolve("board", "topic").await.unwrap_err();
    assert!(matches!(gone, GitError::UnknownRevision { .. }), "{gone}");
    assert!(gone.to_string().contains("force-pushed away"), "{gone}");
    let unknown = cache
        .resolve("board", "0123456789abcdef0123456789abcdef01234567")
        .await
        .unwrap_err();
    assert!(matches!(unknown, GitError::UnknownRevision { .. }));
}

#[tokio::test]
async fn concurrent_fetches_of_one_repository_are_serialised() {
    let up = Upstream::new("board");
    let (_d, cache) = cache();
    let remote = Remote::new(up.bare.to_str().unwrap());
    let fetches = (0..4).map(|_| {
        let (cache, remote) = (cache.clone(), remote.clone());
        tokio::spawn(async move { cache.fetch("board", &remote).await })
    });
    for f in fetches {
        f.await.unwrap().unwrap();
    }
    assert_eq!(cache.resolve("board", "main").await.unwrap(), up.head());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_worktrees_at_once_beside_fetches_of_new_pushes_all_check_out() {
    // The runs of one push check out at once while later pushes are fetched: git fails an add
    // that meets another's half-made entry, and a fetch too ("bad object worktrees/X/HEAD").
    // None may fail or get another's files.
    let up = Arc::new(Upstream::new("board"));
    let v1 = up.commit("VERSION", "1\n", "v1");
    up.push(&["main"]);
    let (dir, cache) = cache();
    let remote = Remote::new(up.bare.to_str().unwrap());
    cache.fetch("board", &remote).await.unwrap();
    let runs = dir.path().join("runs");
    let pusher = {
        let up = up.clone();
        std::thread::spawn(move || {
            for i in 2..10 {
                up.commit("NEXT", &format!("{i}\n"), "next");
                up.push(&["main"]);
            }
        })
    };
    let fetches: Vec<_> = (0..8)
        .map(|_| {
            let (cache, remote) = (cache.clone(), remote.clone());
            tokio::spawn(async move {
                for _ in 0..4 {
                    cache.fetch("board", &remote).await?;
                }
                Ok::<_, GitError>(())
            })
        })
        .collect();
    let adds: Vec<_> = (0..16)
        .map(|i| {
            let (cache, dest, v1) = (cache.clone(), runs.join(format!("run-{i}")), v1.clone());
            tokio::spawn(async move { cache.worktree("board", &v1, &dest).await })
        })
        .collect();
    let mut trees = Vec::new();
    for a in adds {
        trees.push(a.await.unwrap().unwrap());
    }
    for f in fetches {
        f.await.unwrap().unwrap();
    }
    pusher.join().unwrap();
    for (i, t) in trees.iter().enumerate() {
        assert_eq!(t.path(), runs.join(format!("run-{i}")));
        assert_eq!(git(t.path(), &["rev-parse", "HEAD"]), v1);
        assert_eq!(git(t.path(), &["status", "--porcelain"]), "");
        assert_eq!(
            std::fs::read_to_string(t.path().join("VERSION")).unwrap(),
            "1\n"
        );
    }
    let mirror = cache.mirror_path("board").unwrap();
    let listed = git(&mirror, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 17, "{listed}");
    let removes: Vec<_> = trees
        .into_iter()
        .map(|t| tokio::spawn(t.remove()))
        .collect();
    let again = (cache.clone(), remote.clone());
    let last = tokio::spawn(async move { again.0.fetch("board", &again.1).await });
    for r in removes {
        r.await.unwrap().unwrap();
    }
    last.await.unwrap().unwrap();
    let listed = git(&mirror, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 1, "{listed}");
}

#[tokio::test]
async fn a_worktree_add_killed_half_way_does_not_break_the_next_process() {
    // What `git worktree add` leaves when it is killed between making its entry and finishing
    // it: the entry, still locked, its HEAD not yet a commit. git's own prune keeps it, and a
    // fetch then fails on it. A restarted server (a new cache on the same directory) must fetch
    // and check out as before.
    let up = Upstream::new("board");
    let dir = tempfile::tempdir().unwrap();
    let remote = Remote::new(up.bare.to_str().unwrap());
    let killed = GitCache::new(dir.path()).unwrap();
    let mirror = killed.fetch("board", &remote).await.unwrap();
    let entry = mirror.join("worktrees/run-9");
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("locked"), "initializing\n").unwrap();
    std::fs::write(
        entry.join("gitdir"),
        format!("{}/run-9/.git\n", dir.path().display()),
    )
    .unwrap();
    std::fs::write(entry.join("HEAD"), format!("{}\n", "0".repeat(40))).unwrap();
    drop(killed);
    let next = up.commit("VERSION", "2\n", "v2");
    up.push(&["main"]);

    let restarted = GitCache::new(dir.path()).unwrap();
    restarted.fetch("board", &remote).await.unwrap();
    assert_eq!(restarted.resolve("board", "main").await.unwrap(), next);
    assert!(!entry.exists(), "the killed add's entry is gone");
    let tree = restarted
        .worktree("board", "main", &dir.path().join("runs/run-1"))
        .await
        .unwrap();
    assert_eq!(git(tree.path(), &["rev-parse", "HEAD"]), next);
}

#[tokio::test]
async fn fetches_asked_for_while_one_runs_are_answered_by_the_next_not_repeated() {
    let up = Upstream::new("board");
    let (_d, cache) = cache();
    let events = Events::default();
    let cache = cache.with_events(Arc::new(events.clone()));
    let remote = Remote::new(up.bare.to_str().unwrap());
    cache.fetch("board", &remote).await.unwrap();
    let pushed = up.commit("VERSION", "2\n", "v2");
    up.push(&["main"]);
    // Eight runs of one push ask at once: the first fetch starts after all of them asked,
    // so it answers them all (the scheduler runs the tasks in turn on this one thread).
    let fetches: Vec<_> = (0..8)
        .map(|_| {
            let (cache, remote) = (cache.clone(), remote.clone());
            tokio::spawn(async move { cache.fetch("board", &remote).await })
        })
        .collect();
    for f in fetches {
        f.await.unwrap().unwrap();
    }
    assert_eq!(cache.resolve("board", "main").await.unwrap(), pushed);
    let fetched = |text: &str| text.matches("fetched board from").count();
    let text = events.text();
    assert!(
        (1..=2).contains(&fetched(&text)),
        "eight concurrent fetches ran {} times:\n{text}",
        fetched(&text)
    );
    // A fetch asked for after the last one finished always fetches: it sees a new push.
    let later = up.commit("VERSION", "3\n", "v3");
    up.push(&["main"]);
    cache.fetch("board", &remote).await.unwrap();
    assert_eq!(cache.resolve("board", "main").await.unwrap(), later);
    assert_eq!(fetched(&events.text()), fetched(&text) + 1);
}

#[tokio::test]
async fn commit_info_reads_author_message_and_paths() {
    let up = Upstream::new("board");
    up.commit("old.txt", "old\n", "Add old");
    std::fs::remove_file(up.work.join("old.txt")).unwrap();
    std::fs::write(up.work.join("README.md"), "hello again\n").unwrap();
    let id = up.commit(
        "src/new.js",
        "new\n",
        "Rework the board\n\nOld page removed.",
    );
    up.push(&["main"]);
    let (_d, cache) = cache();
    cache
        .fetch("board", &Remote::new(up.bare.to_str().unwrap()))
        .await
        .unwrap();
    let info = cache.commit_info("board", "main").await.unwrap();
    assert_eq!(info.id, id);
    assert_eq!(info.parents.len(), 1);
    assert_eq!(info.author.name, "Dana Ortiz");
    assert_eq!(info.author.email, "dana@acme.example");
    assert_eq!(info.committer.name, "Berth Test");
    assert_eq!(info.subject(), "Rework the board");
    assert_eq!(info.message, "Rework the board\n\nOld page removed.");
    assert_eq!(info.added, ["src/new.js"]);
    assert_eq!(info.modified, ["README.md"]);
    assert_eq!(info.removed, ["old.txt"]);
    let root = cache
        .commit_info("board", &format!("{id}~2"))
        .await
        .unwrap();
    assert!(root.parents.is_empty());
    assert_eq!(root.added, ["README.md"]);
}

#[tokio::test]
async fn clear_errors_for_unknown_repositories_and_unfetched_names() {
    let (dir, cache) = cache();
    let missing = dir.path().join("nope.git");
    let e = cache
        .fetch("nope", &Remote::new(missing.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(e, GitError::RepositoryNotFound { .. }), "{e}");
    assert!(e.to_string().contains("check the repository's URL"), "{e}");
    // A failed first fetch leaves nothing behind.
    assert!(!cache.mirror_path("nope").unwrap().exists());
    let e = cache.resolve("nope", "main").await.unwrap_err();
    assert!(matches!(e, GitError::NotFetched { .. }), "{e}");
    let e = cache
        .fetch("../escape", &Remote::new("/tmp"))
        .await
        .unwrap_err();
    assert!(matches!(e, GitError::Invalid { .. }), "{e}");
    let e = cache
        .fetch(
            "x",
            &Remote::with_ssh_key("ssh://git@127.0.0.1:1/x.git", dir.path().join("no-key")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, GitError::SshKeyMissing { .. }), "{e}");
}

#[tokio::test]
async fn a_deadline_stops_a_hanging_git() {
    // A listener that accepts and never answers: git hangs until its deadline.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = berth_git::GitCache::with_timeouts(
        dir.path(),
        berth_git::Timeouts {
            network: std::time::Duration::from_millis(800),
            local: std::time::Duration::from_secs(30),
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let e = cache
        .ls_remote(
            &Remote::new(format!("http://127.0.0.1:{port}/r.git")),
            "main",
        )
        .await
        .unwrap_err();
    assert!(matches!(e, GitError::Timeout { .. }), "{e}");
    assert!(e.is_transient());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_on_one_root_take_turns() {
    // Two caches over the same directory share no mutex (as two server processes would not):
    // their first clones and fetches still all succeed and agree.
    let up = Upstream::new("board");
    let dir = tempfile::tempdir().unwrap();
    let a = GitCache::new(dir.path()).unwrap();
    let b = GitCache::new(dir.path()).unwrap();
    let remote = Remote::new(up.bare.to_str().unwrap());
    let runs = (0..6).map(|i| {
        let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
        let remote = remote.clone();
        tokio::spawn(async move { cache.fetch("acme/board", &remote).await })
    });
    for r in runs {
        r.await.unwrap().unwrap();
    }
    assert_eq!(a.resolve("acme/board", "main").await.unwrap(), up.head());
    assert_eq!(b.resolve("acme/board", "main").await.unwrap(), up.head());
}

/// Every way an attacker-chosen URL or branch could make git run a command: none may leave a
/// trace, and each is refused by berth before git runs.
#[tokio::test]
async fn hostile_urls_and_branches_run_no_command() {
    let up = Upstream::new("board");
    let (d, cache) = cache();
    let marker = d.path().join("pwned");
    let m = marker.display().to_string();
    let urls = [
        // The `ext::` remote helper runs its argument (`%20` is a space).
        format!("ext::sh -c touch% {m}"),
        format!("-oProxyCommand=touch {m}"),
        format!("ssh://-oProxyCommand=touch%20{m}/r.git"),
        "git@-oProxyCommand=sh:r.git".to_string(),
        "fd::3".to_string(),
        "ftp://127.0.0.1:1/r.git".to_string(),
    ];
    for url in &urls {
        let remote = Remote::new(url.as_str());
        let fetched = cache.fetch("hostile", &remote).await;
        assert!(
            matches!(fetched, Err(GitError::Invalid { .. })),
            "{url}: {fetched:?}"
        );
        let polled = cache.ls_remote(&remote, "main").await;
        assert!(
            matches!(polled, Err(GitError::Invalid { .. })),
            "{url}: {polled:?}"
        );
        assert!(!marker.exists(), "{url} ran a command");
    }
    // A branch named like an option (from a webhook or a poller's settings).
    let remote = Remote::new(up.bare.to_str().unwrap());
    cache.fetch("board", &remote).await.unwrap();
    for branch in [
        format!("--upload-pack=touch {m}"),
        format!("--output={m}"),
        "-h".to_string(),
    ] {
        let polled = cache.ls_remote(&remote, &branch).await;
        assert!(
            matches!(polled, Err(GitError::Invalid { .. })),
            "{branch}: {polled:?}"
        );
        let resolved = cache.resolve("board", &branch).await;
        assert!(
            matches!(resolved, Err(GitError::Invalid { .. })),
            "{branch}: {resolved:?}"
        );
        assert!(!marker.exists(), "{branch} ran a command or wrote a file");
    }
}
