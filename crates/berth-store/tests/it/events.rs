//! Events of a run: gap-free numbering per run, paging, and a live follower catching up the
//! way the SSE stream does.

use std::time::Duration;

use berth_store::{RunId, StoreError};
use berth_types::{Event, Level, Step};

use crate::support::{Db, new_run, on_both};

on_both!(
    ordering_and_catch_up,
    follower_sees_every_event_in_order,
    the_newest_page_and_the_steps_are_read_without_the_rest,
);

fn message(i: usize) -> Event {
    Event::Message {
        step: Step::Deploy.into(),
        level: if i.is_multiple_of(7) {
            Level::Warning
        } else {
            Level::Info
        },
        message: format!("line {i}"),
    }
}

async fn ordering_and_catch_up(db: Db) {
    let store = db.open().await;
    let a = store
        .create_run(new_run("shop", "main", "prod", "a"))
        .await
        .unwrap()
        .id;
    let b = store
        .create_run(new_run("shop", "main", "prod", "b"))
        .await
        .unwrap()
        .id;
    // Interleaved runs keep separate counters.
    for i in 0..250 {
        assert_eq!(
            store.append_event(a, &message(i)).await.unwrap(),
            i as u64 + 1
        );
        if i.is_multiple_of(5) {
            store.append_event(b, &message(i)).await.unwrap();
        }
    }
    let batch: Vec<_> = (250..260).map(message).collect();
    assert_eq!(
        store.append_events(a, &batch).await.unwrap(),
        (251..=260).collect::<Vec<u64>>()
    );
    assert!(store.append_events(a, &[]).await.unwrap().is_empty());

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events(a, after, 100).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 100);
        after = page.last().unwrap().seq;
        seen.extend(page);
    }
    assert_eq!(seen.len(), 260);
    for (i, e) in seen.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.run, a);
        assert_eq!(e.event, message(i));
    }
    assert!(seen.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(store.events(b, 0, 1000).await.unwrap().len(), 50);
    assert_eq!(store.events(b, 49, 1000).await.unwrap()[0].seq, 50);
    assert!(store.events(a, 260, 10).await.unwrap().is_empty());

    let err = store
        .append_event(RunId(9_999_999), &message(0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NoSuchRun(RunId(9_999_999))),
        "{err}"
    );
}

/// A writer appends while a reader polls from its last `seq`: the reader gets every event once,
/// in order, with no gap.
async fn follower_sees_every_event_in_order(db: Db) {
    let store = db.open().await;
    let run = store
        .create_run(new_run("shop", "main", "prod", "f"))
        .await
        .unwrap()
        .id;
    const N: usize = 400;
    let writer = {
        let s = store.clone();
        tokio::spawn(async move {
            for i in 0..N {
                s.append_event(run, &message(i)).await.unwrap();
                if i.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let mut got = Vec::new();
    let mut after = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "follower stuck at {after}"
        );
        let page = store.events(run, after, 37).await.unwrap();
        for e in page {
            assert_eq!(e.seq, after + 1, "gap or repeat after {after}");
            after = e.seq;
            got.push(e.event);
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(got, (0..N).map(message).collect::<Vec<_>>());
}

/// What the run page reads: the newest lines only, and the step events of the whole run.
async fn the_newest_page_and_the_steps_are_read_without_the_rest(db: Db) {
    let store = db.open().await;
    let run = store
        .create_run(new_run("shop", "main", "prod", "a"))
        .await
        .unwrap()
        .id;
    assert_eq!(store.last_event_seq(run).await.unwrap(), Some(0));
    assert_eq!(
        store.last_event_seq(RunId(run.0 + 100)).await.unwrap(),
        None
    );
    let mut events = vec![Event::StepStarted {
        step: Step::Build.into(),
    }];
    events.extend((0..3000).map(message));
    // A line that looks like a step event is still a line.
    events.push(Event::Message {
        step: Step::Build.into(),
        level: Level::Info,
        message: r#"{"event":"step_started","step":"fake"}"#.into(),
    });
    events.push(Event::StepFinished {
        step: Step::Build.into(),
        ok: true,
        millis: 5,
        message: "built".into(),
    });
    store.append_events(run, &events).await.unwrap();
    let last = store.last_event_seq(run).await.unwrap().unwrap();
    assert_eq!(last, 3003);
    let newest = store.events(run, last - 100, 100).await.unwrap();
    assert_eq!(newest.len(), 100);
    assert_eq!(newest.last().unwrap().seq, last);
    let steps = store.step_events(run, 1000).await.unwrap();
    assert_eq!(
        steps.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 3003],
        "{steps:?}"
    );
}
