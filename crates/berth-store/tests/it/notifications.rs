//! The outbox of run notifications: kept once per delivery id, due in order per run and
//! receiver, attempted until delivered or given up, and holding no secret.

use berth_store::{NewNotification, NotificationState};

use crate::support::{Db, on_both};

on_both!(
    a_message_is_kept_once_and_a_receiver_gets_a_runs_messages_in_order,
    a_retried_message_waits_for_its_time_and_a_failed_one_is_never_due,
);

fn message(run: &str, event: &str, url_env: &str) -> NewNotification {
    NewNotification {
        delivery: format!("{run}.{event}.{url_env}"),
        run: run.into(),
        receiver: format!("webhook ${url_env}"),
        url_env: url_env.into(),
        key_env: Some("BERTH_NOTIFY_KEY".into()),
        event: event.into(),
        body: format!(r#"{{"event":"{event}","run":"{run}"}}"#),
    }
}

async fn a_message_is_kept_once_and_a_receiver_gets_a_runs_messages_in_order(db: Db) {
    let store = db.open().await;
    let started = message("7", "started", "BERTH_NOTIFY_A");
    assert!(store.enqueue_notification(&started).await.unwrap());
    assert!(
        !store.enqueue_notification(&started).await.unwrap(),
        "the same delivery id twice is one message"
    );
    store
        .enqueue_notification(&message("7", "succeeded", "BERTH_NOTIFY_A"))
        .await
        .unwrap();
    store
        .enqueue_notification(&message("7", "started", "BERTH_NOTIFY_B"))
        .await
        .unwrap();
    let due = store.due_notifications(10).await.unwrap();
    let got: Vec<(&str, &str)> = due
        .iter()
        .map(|d| (d.message.event.as_str(), d.message.url_env.as_str()))
        .collect();
    // `succeeded` to A waits for `started` to A; B's own message is due beside it.
    assert_eq!(
        got,
        [("started", "BERTH_NOTIFY_A"), ("started", "BERTH_NOTIFY_B")],
        "{due:#?}"
    );
    assert_eq!(due[0].message, started);
    assert_eq!(due[0].attempts, 0);
    store
        .notification_attempted(
            due[0].id,
            NotificationState::Delivered,
            jiff::Timestamp::now(),
            None,
        )
        .await
        .unwrap();
    let due = store.due_notifications(10).await.unwrap();
    assert_eq!(due.len(), 2, "{due:#?}");
    assert_eq!(due[0].message.event, "succeeded");
    assert_eq!(
        store
            .count_notifications(NotificationState::Delivered)
            .await
            .unwrap(),
        1
    );
}

async fn a_retried_message_waits_for_its_time_and_a_failed_one_is_never_due(db: Db) {
    let store = db.open().await;
    store
        .enqueue_notification(&message("8", "started", "BERTH_NOTIFY_A"))
        .await
        .unwrap();
    let due = store.due_notifications(10).await.unwrap();
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    store
        .notification_attempted(
            due[0].id,
            NotificationState::Pending,
            later,
            Some("connection refused or unreachable"),
        )
        .await
        .unwrap();
    assert!(
        store.due_notifications(10).await.unwrap().is_empty(),
        "not before its time"
    );
    store
        .enqueue_notification(&message("9", "started", "BERTH_NOTIFY_A"))
        .await
        .unwrap();
    let due = store.due_notifications(10).await.unwrap();
    assert_eq!(
        due.len(),
        1,
        "another run's message is not held up: {due:#?}"
    );
    store
        .notification_attempted(
            due[0].id,
            NotificationState::Failed,
            jiff::Timestamp::now(),
            Some("HTTP 404"),
        )
        .await
        .unwrap();
    assert!(store.due_notifications(10).await.unwrap().is_empty());
    assert_eq!(
        store
            .count_notifications(NotificationState::Failed)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .count_notifications(NotificationState::Pending)
            .await
            .unwrap(),
        1
    );
}
