//! Many writers at once: no "database is locked", no lost or duplicated event numbers.

use std::collections::BTreeSet;

use berth_store::RunState;
use berth_types::Event;

use crate::support::{Db, chain, new_run, on_both};

on_both!(fifty_concurrent_event_writers, fifty_writers_on_one_run);

const WRITERS: usize = 50;
const EACH: usize = 40;

fn event(w: usize, i: usize) -> Event {
    Event::ObjectState {
        object: format!("Deployment/w{w}"),
        state: berth_types::State::Progressing,
        message: format!("event {i}"),
        millis: i as u64,
    }
}

/// 50 runs written at once, each by its own task, through two stores (two processes' worth of
/// connections on SQLite): every append succeeds.
async fn fifty_concurrent_event_writers(db: Db) {
    let stores = [db.open().await, db.open().await];
    let mut runs = Vec::new();
    for w in 0..WRITERS {
        runs.push(
            stores[0]
                .create_run(new_run("shop", "main", &format!("env{w}"), "c"))
                .await
                .unwrap()
                .id,
        );
    }
    let tasks: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(w, &run)| {
            let s = stores[w % 2].clone();
            tokio::spawn(async move {
                assert!(
                    s.transition(run, RunState::Queued, RunState::Running, None)
                        .await
                        .unwrap()
                );
                for i in 0..EACH {
                    if let Err(e) = s.append_event(run, &event(w, i)).await {
                        panic!("writer {w}, event {i}: {}", chain(&e));
                    }
                }
                s.transition(run, RunState::Running, RunState::Succeeded, None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    for (w, &run) in runs.iter().enumerate() {
        let events = stores[1].events(run, 0, 1000).await.unwrap();
        assert_eq!(events.len(), EACH);
        for (i, e) in events.iter().enumerate() {
            assert_eq!((e.seq, &e.event), (i as u64 + 1, &event(w, i)));
        }
        assert_eq!(
            stores[0].run(run).await.unwrap().unwrap().state,
            RunState::Succeeded
        );
    }
}

/// 50 tasks append to the same run at once: the numbers are 1..=N, each used once.
async fn fifty_writers_on_one_run(db: Db) {
    let store = db.open().await;
    let run = store
        .create_run(new_run("shop", "main", "prod", "c"))
        .await
        .unwrap()
        .id;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..10 {
                    seqs.push(s.append_event(run, &event(w, i)).await.unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for t in tasks {
        for seq in t.await.unwrap() {
            assert!(all.insert(seq), "seq {seq} given twice");
        }
    }
    let n = (WRITERS * 10) as u64;
    assert_eq!(all, (1..=n).collect::<BTreeSet<_>>());
    let stored = store.events(run, 0, 10_000).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
}
