//! Webhook deliveries: recorded and turned into runs in one transaction, duplicates create
//! nothing — also when they arrive at the same moment.

use berth_store::{Accepted, NewDelivery, RunFilter, Trigger};

use crate::support::{Db, new_run, on_both};

on_both!(
    duplicate_delivery_creates_nothing,
    concurrent_duplicates_create_one_run
);

fn delivery(provider: &str, id: &str) -> NewDelivery {
    NewDelivery {
        provider: provider.into(),
        delivery_id: id.into(),
    }
}

fn webhook_run(env: &str, id: &str) -> berth_store::NewRun {
    let mut r = new_run("shop", "main", env, "abc123");
    r.trigger = Trigger::Webhook {
        provider: "github".into(),
        delivery: id.into(),
    };
    r
}

async fn duplicate_delivery_creates_nothing(db: Db) {
    let store = db.open().await;
    let first = store
        .accept_delivery(
            delivery("github", "d-1"),
            vec![webhook_run("staging", "d-1"), webhook_run("prod", "d-1")],
        )
        .await
        .unwrap();
    let Accepted::New(runs) = first else {
        panic!("first delivery: {first:?}")
    };
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[0].trigger,
        Trigger::Webhook {
            provider: "github".into(),
            delivery: "d-1".into()
        }
    );
    let again = store
        .accept_delivery(
            delivery("github", "d-1"),
            vec![webhook_run("staging", "d-1")],
        )
        .await
        .unwrap();
    let Accepted::Duplicate {
        first_seen,
        runs: ids,
    } = again
    else {
        panic!("replayed delivery: {again:?}")
    };
    assert_eq!(ids, runs.iter().map(|r| r.id).collect::<Vec<_>>());
    assert!(first_seen <= runs[0].created_at);
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 2);

    // The same id from another provider is another delivery.
    let gitea = store
        .accept_delivery(
            delivery("gitea", "d-1"),
            vec![webhook_run("staging", "d-1")],
        )
        .await
        .unwrap();
    assert!(
        matches!(gitea, Accepted::New(ref r) if r.len() == 1),
        "{gitea:?}"
    );
    // A delivery that asks for no run (a push to an unwatched branch) is still remembered.
    assert_eq!(
        store
            .accept_delivery(delivery("github", "d-2"), vec![])
            .await
            .unwrap(),
        Accepted::New(vec![])
    );
    assert!(matches!(
        store.accept_delivery(delivery("github", "d-2"), vec![webhook_run("prod", "d-2")]).await.unwrap(),
        Accepted::Duplicate { ref runs, .. } if runs.is_empty()
    ));
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 3);
}

async fn concurrent_duplicates_create_one_run(db: Db) {
    let store = db.open().await;
    // A second store too: on SQLite that is a second writer connection to the file.
    let other = db.open().await;
    let tasks: Vec<_> = (0..24u32)
        .map(|i| {
            let s = if i.is_multiple_of(2) {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                s.accept_delivery(
                    delivery("github", "same"),
                    vec![webhook_run("prod", "same")],
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut new = 0;
    let mut dup = 0;
    for t in tasks {
        match t.await.unwrap() {
            Accepted::New(r) => {
                assert_eq!(r.len(), 1);
                new += 1
            }
            Accepted::Duplicate { runs, .. } => {
                assert_eq!(runs.len(), 1);
                dup += 1
            }
        }
    }
    assert_eq!((new, dup), (1, 23));
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 1);
}
