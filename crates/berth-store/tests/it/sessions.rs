//! Sign-in sessions: apart from tokens, stored as hashes, ended by sign-out, by revoking their
//! token, by idling and by their absolute expiry.

use std::time::Duration;

use berth_store::Role;

use crate::support::{Db, on_both};

on_both!(
    a_deleted_session_is_refused,
    a_session_dies_with_its_token_and_follows_its_role,
    an_idle_or_expired_session_is_refused_and_purged,
    a_token_is_not_a_session_and_a_session_is_not_a_token,
);

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3600);

async fn a_deleted_session_is_refused(db: Db) {
    let store = db.open().await;
    store.create_token("alice", Role::Deployer).await.unwrap();
    let (opened, id) = store
        .create_session("alice", DAY)
        .await
        .unwrap()
        .expect("alice exists");
    assert_eq!(
        (opened.token.name.as_str(), opened.token.role),
        ("alice", Role::Deployer)
    );
    assert!(opened.expires_at > opened.created_at);
    let plain = id.expose();
    assert_eq!(plain.len(), 64, "256 random bits in hex");
    assert_eq!(format!("{id:?}"), "Secret([redacted])");
    let (_, other) = store.create_session("alice", DAY).await.unwrap().unwrap();
    assert_ne!(other.expose(), plain, "every sign-in gets its own id");

    let found = store.session(plain, HOUR).await.unwrap().expect("open");
    assert_eq!(found.token.name, "alice");
    assert!(store.delete_session(plain).await.unwrap());
    assert_eq!(store.session(plain, HOUR).await.unwrap(), None);
    assert!(!store.delete_session(plain).await.unwrap(), "already gone");
    assert!(
        store.session(other.expose(), HOUR).await.unwrap().is_some(),
        "signing out ends that session only"
    );
    assert_eq!(store.create_session("nobody", DAY).await.unwrap(), None);
    // Only the hash is stored.
    if let Db::Postgres(pg) = &db {
        let dump = pg.dump();
        assert!(
            !dump.contains(other.expose()),
            "a session id in the database"
        );
    }
}

async fn a_session_dies_with_its_token_and_follows_its_role(db: Db) {
    let store = db.open().await;
    store.create_token("bob", Role::Admin).await.unwrap();
    let (_, id) = store.create_session("bob", DAY).await.unwrap().unwrap();
    assert!(store.revoke_token("bob").await.unwrap());
    assert_eq!(store.session(id.expose(), HOUR).await.unwrap(), None);
    // A new token of the same name does not revive the old session.
    store.create_token("bob", Role::Viewer).await.unwrap();
    assert_eq!(store.session(id.expose(), HOUR).await.unwrap(), None);
    let (_, id) = store.create_session("bob", DAY).await.unwrap().unwrap();
    let s = store.session(id.expose(), HOUR).await.unwrap().unwrap();
    assert_eq!(s.token.role, Role::Viewer);
}

async fn an_idle_or_expired_session_is_refused_and_purged(db: Db) {
    let store = db.open().await;
    store.create_token("carol", Role::Viewer).await.unwrap();
    let (_, idle) = store.create_session("carol", DAY).await.unwrap().unwrap();
    let (_, short) = store
        .create_session("carol", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    let (_, kept) = store.create_session("carol", DAY).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Past its absolute expiry, however recently used.
    assert_eq!(store.session(short.expose(), HOUR).await.unwrap(), None);
    // Idle longer than allowed.
    assert_eq!(
        store
            .session(idle.expose(), Duration::from_millis(100))
            .await
            .unwrap(),
        None
    );
    assert!(
        !store.delete_session(idle.expose()).await.unwrap(),
        "an expired session is deleted when it is presented"
    );
    assert!(store.session(kept.expose(), HOUR).await.unwrap().is_some());
    let (_, stale) = store.create_session("carol", DAY).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store
            .purge_sessions(Duration::from_millis(100))
            .await
            .unwrap(),
        2,
        "kept and stale were idle for 100 ms"
    );
    assert_eq!(store.session(stale.expose(), HOUR).await.unwrap(), None);
}

async fn a_token_is_not_a_session_and_a_session_is_not_a_token(db: Db) {
    let store = db.open().await;
    let (_, token) = store.create_token("dave", Role::Admin).await.unwrap();
    let (_, id) = store.create_session("dave", DAY).await.unwrap().unwrap();
    assert_eq!(store.session(token.expose(), HOUR).await.unwrap(), None);
    assert_eq!(store.token(id.expose()).await.unwrap(), None);
    assert_eq!(store.session("", HOUR).await.unwrap(), None);
    assert_eq!(store.session(&"z".repeat(64), HOUR).await.unwrap(), None);
}
