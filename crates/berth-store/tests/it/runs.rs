//! Run lifecycle: creation, compare-and-set transitions, listing, superseding, interruption at
//! restart, the polling fallback's last seen commits.

use berth_store::{RunFilter, RunId, RunState, StoreError};

use crate::support::{Db, new_run, on_both};

on_both!(
    lifecycle,
    transition_is_compare_and_set,
    listing_filters_and_pages
);
on_both!(
    supersede_older_queued_runs,
    interrupt_running_at_restart,
    last_seen_commits
);
on_both!(metrics_count_runs_by_state_in_the_database_not_by_loading_the_run_table);

async fn metrics_count_runs_by_state_in_the_database_not_by_loading_the_run_table(db: Db) {
    let store = db.open().await;
    // More runs than one page of `runs()` (the old scrape loaded at most MAX_LIMIT of them).
    let n = RunFilter::MAX_LIMIT as usize + 5;
    let mut first = None;
    for i in 0..n {
        let r = store
            .create_run(new_run("shop", "main", "staging", &format!("c{i:06}")))
            .await
            .unwrap();
        first.get_or_insert(r.id);
    }
    let first = first.unwrap();
    assert!(
        store
            .transition(first, RunState::Queued, RunState::Cancelled, None)
            .await
            .unwrap()
    );
    let counts = store.count_by_state().await.unwrap();
    assert_eq!(
        counts,
        vec![(RunState::Cancelled, 1), (RunState::Queued, n as u64 - 1)]
    );
}

async fn lifecycle(db: Db) {
    let store = db.open().await;
    let run = store
        .create_run(new_run("shop", "main", "staging", "c0ffee1"))
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Queued);
    assert_eq!((run.started_at, run.finished_at), (None, None));
    assert_eq!(store.run(run.id).await.unwrap().as_ref(), Some(&run));

    assert!(
        store
            .transition(run.id, RunState::Queued, RunState::Running, None)
            .await
            .unwrap()
    );
    let running = store.run(run.id).await.unwrap().unwrap();
    assert_eq!(running.state, RunState::Running);
    let started = running.started_at.expect("started_at set on running");
    assert!(started >= run.created_at);

    let result = serde_json::json!({"digests": {"web": "sha256:abc"}, "revision": 3});
    store.set_result(run.id, &result).await.unwrap();
    assert!(
        store
            .transition(
                run.id,
                RunState::Running,
                RunState::Failed,
                Some("deploy failed: web never became ready")
            )
            .await
            .unwrap()
    );
    let done = store.run(run.id).await.unwrap().unwrap();
    assert_eq!(done.state, RunState::Failed);
    assert_eq!(
        done.note.as_deref(),
        Some("deploy failed: web never became ready")
    );
    assert_eq!(done.result.as_ref(), Some(&result));
    assert!(done.finished_at.unwrap() >= started);
    assert_eq!(done.started_at, Some(started));

    assert_eq!(store.run(RunId(run.id.0 + 1000)).await.unwrap(), None);
    let missing = store
        .set_result(RunId(run.id.0 + 1000), &result)
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NoSuchRun(_)), "{missing}");
}

async fn transition_is_compare_and_set(db: Db) {
    let store = db.open().await;
    let run = store
        .create_run(new_run("shop", "main", "prod", "1"))
        .await
        .unwrap();
    // Twenty workers race for one queued run: exactly one takes it.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move {
                s.transition(run.id, RunState::Queued, RunState::Running, None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    // Wrong `from`: nothing changes.
    assert!(
        !store
            .transition(run.id, RunState::Queued, RunState::Cancelled, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.run(run.id).await.unwrap().unwrap().state,
        RunState::Running
    );
    // Unknown run: false, not an error.
    assert!(
        !store
            .transition(RunId(9_999_999), RunState::Queued, RunState::Running, None)
            .await
            .unwrap()
    );
}

async fn listing_filters_and_pages(db: Db) {
    let store = db.open().await;
    let mut ids = Vec::new();
    for i in 0..12u32 {
        let env = if i.is_multiple_of(2) {
            "staging"
        } else {
            "prod"
        };
        let branch = if i.is_multiple_of(3) {
            "feature"
        } else {
            "main"
        };
        let repo = if i < 10 { "shop" } else { "blog" };
        ids.push(
            store
                .create_run(new_run(repo, branch, env, &format!("c{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    store
        .transition(ids[4], RunState::Queued, RunState::Running, None)
        .await
        .unwrap();

    let all = store.runs(&RunFilter::default()).await.unwrap();
    let got: Vec<_> = all.iter().map(|r| r.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);

    let staging = store
        .runs(&RunFilter {
            environment: Some("staging".into()),
            repository: Some("shop".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        staging.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[8], ids[6], ids[4], ids[2], ids[0]]
    );
    let feature_prod = store
        .runs(&RunFilter {
            branch: Some("feature".into()),
            environment: Some("prod".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        feature_prod.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[9], ids[3]]
    );
    let running = store
        .runs(&RunFilter {
            state: Some(RunState::Running),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, ids[4]);

    // Pages of 5, following `before`.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .runs(&RunFilter {
                before,
                limit: Some(5),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.id);
        pages.push(page.len());
    }
    assert_eq!(pages, [5, 5, 2]);

    // The queue: oldest first, only queued.
    let queued: Vec<_> = store
        .queued()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let expected: Vec<_> = ids.iter().copied().filter(|id| *id != ids[4]).collect();
    assert_eq!(queued, expected);
}

async fn supersede_older_queued_runs(db: Db) {
    let store = db.open().await;
    let a1 = store
        .create_run(new_run("shop", "main", "prod", "a1"))
        .await
        .unwrap();
    let a2 = store
        .create_run(new_run("shop", "main", "prod", "a2"))
        .await
        .unwrap();
    let other_branch = store
        .create_run(new_run("shop", "dev", "prod", "b"))
        .await
        .unwrap();
    let other_env = store
        .create_run(new_run("shop", "main", "staging", "c"))
        .await
        .unwrap();
    let other_repo = store
        .create_run(new_run("blog", "main", "prod", "d"))
        .await
        .unwrap();
    let a3 = store
        .create_run(new_run("shop", "main", "prod", "a3"))
        .await
        .unwrap();
    let a4 = store
        .create_run(new_run("shop", "main", "prod", "a4"))
        .await
        .unwrap();
    // a2 already runs: it is not superseded (cancelling it is the server's call).
    store
        .transition(a2.id, RunState::Queued, RunState::Running, None)
        .await
        .unwrap();

    let gone = store.supersede_older(a4.id).await.unwrap();
    assert_eq!(gone, [a1.id, a3.id]);
    for id in [a1.id, a3.id] {
        let r = store.run(id).await.unwrap().unwrap();
        assert_eq!(r.state, RunState::Superseded);
        assert_eq!(r.superseded_by, Some(a4.id));
        assert!(r.finished_at.is_some());
    }
    for (id, state) in [
        (a2.id, RunState::Running),
        (other_branch.id, RunState::Queued),
        (other_env.id, RunState::Queued),
        (other_repo.id, RunState::Queued),
        (a4.id, RunState::Queued),
    ] {
        assert_eq!(
            store.run(id).await.unwrap().unwrap().state,
            state,
            "run {id}"
        );
    }
    // Nothing left to supersede; an unknown run supersedes nothing.
    assert!(store.supersede_older(a4.id).await.unwrap().is_empty());
    assert!(
        store
            .supersede_older(RunId(9_999_999))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn interrupt_running_at_restart(db: Db) {
    let first = db.open().await;
    let running = first
        .create_run(new_run("shop", "main", "prod", "r"))
        .await
        .unwrap();
    let waiting = first
        .create_run(new_run("shop", "main", "prod", "w"))
        .await
        .unwrap();
    first
        .transition(running.id, RunState::Queued, RunState::Running, None)
        .await
        .unwrap();
    for i in 0..5 {
        first
            .append_event(
                running.id,
                &berth_types::Event::StepStarted {
                    step: berth_types::StepOf::service(&format!("s{i}"), berth_types::Step::Build),
                },
            )
            .await
            .unwrap();
    }
    // The "crashed" server never closes its store; a new process opens the same database.
    let second = db.open().await;
    assert_eq!(second.interrupt_running().await.unwrap(), [running.id]);
    let r = second.run(running.id).await.unwrap().unwrap();
    assert_eq!(r.state, RunState::Interrupted);
    assert!(r.finished_at.is_some());
    assert!(r.note.unwrap().contains("interrupted"));
    assert_eq!(second.events(running.id, 0, 100).await.unwrap().len(), 5);
    assert_eq!(
        second.run(waiting.id).await.unwrap().unwrap().state,
        RunState::Queued
    );
    assert!(second.interrupt_running().await.unwrap().is_empty());
    // Resume: back to the queue, times cleared, events still there.
    assert!(
        second
            .transition(running.id, RunState::Interrupted, RunState::Queued, None)
            .await
            .unwrap()
    );
    let r = second.run(running.id).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.started_at, r.finished_at),
        (RunState::Queued, None, None)
    );
    let next = second
        .append_event(
            running.id,
            &berth_types::Event::StepStarted {
                step: berth_types::Step::Run.into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(next, 6);
}

async fn last_seen_commits(db: Db) {
    let store = db.open().await;
    assert_eq!(store.last_seen("shop", "main").await.unwrap(), None);
    store.set_last_seen("shop", "main", "aaa").await.unwrap();
    store.set_last_seen("shop", "dev", "bbb").await.unwrap();
    store.set_last_seen("shop", "main", "ccc").await.unwrap();
    assert_eq!(
        store.last_seen("shop", "main").await.unwrap().as_deref(),
        Some("ccc")
    );
    assert_eq!(
        store.last_seen("shop", "dev").await.unwrap().as_deref(),
        Some("bbb")
    );
    assert_eq!(store.last_seen("blog", "main").await.unwrap(), None);
}
