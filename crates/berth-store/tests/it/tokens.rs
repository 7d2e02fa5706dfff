//! API tokens: created once in plaintext, found by hash, listed, revoked.

use berth_store::{Role, StoreError, TOKEN_PREFIX};

use crate::support::{Db, on_both};

on_both!(token_lifecycle);

async fn token_lifecycle(db: Db) {
    let store = db.open().await;
    let (admin, admin_token) = store.create_token("ops-admin", Role::Admin).await.unwrap();
    let (_, viewer_token) = store.create_token("dashboard", Role::Viewer).await.unwrap();
    assert_eq!((admin.role, admin.last_used_at), (Role::Admin, None));
    let plain = admin_token.expose();
    assert!(
        plain.starts_with(TOKEN_PREFIX) && plain.len() == TOKEN_PREFIX.len() + 64,
        "{plain}"
    );
    assert_ne!(plain, viewer_token.expose());
    assert_eq!(
        format!("{admin_token:?} {admin_token}"),
        "Secret([redacted]) [redacted]"
    );

    let found = store
        .token(plain)
        .await
        .unwrap()
        .expect("the token is known");
    assert_eq!(
        (found.name.as_str(), found.role),
        ("ops-admin", Role::Admin)
    );
    assert!(found.last_used_at.unwrap() >= found.created_at);
    // Used again within the minute: the recorded use stays (no write per request).
    let again = store.token(plain).await.unwrap().unwrap();
    assert_eq!(again.last_used_at, found.last_used_at);
    let listed = store.tokens().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .find(|t| t.name == "ops-admin")
            .unwrap()
            .last_used_at,
        found.last_used_at
    );
    assert!(found.role >= Role::Deployer);
    let viewer = store.token(viewer_token.expose()).await.unwrap().unwrap();
    assert!(viewer.role < Role::Deployer);

    // Near misses and garbage are unknown.
    let mut wrong = plain.to_string();
    wrong.replace_range(
        wrong.len() - 1..,
        if plain.ends_with('0') { "1" } else { "0" },
    );
    assert_eq!(store.token(&wrong).await.unwrap(), None);
    assert_eq!(store.token("").await.unwrap(), None);
    assert_eq!(
        store.token(&plain[TOKEN_PREFIX.len()..]).await.unwrap(),
        None
    );

    let names: Vec<_> = store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["dashboard", "ops-admin"]);

    let dup = store
        .create_token("ops-admin", Role::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::TokenExists { .. }), "{dup}");
    let bad = store
        .create_token("has space", Role::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(bad, StoreError::InvalidTokenName { .. }), "{bad}");

    assert!(store.revoke_token("ops-admin").await.unwrap());
    assert_eq!(store.token(plain).await.unwrap(), None);
    assert!(!store.revoke_token("ops-admin").await.unwrap());
    // The name is free again, with a new secret.
    let (_, again) = store
        .create_token("ops-admin", Role::Deployer)
        .await
        .unwrap();
    assert_ne!(again.expose(), plain);
    assert_eq!(store.token(plain).await.unwrap(), None);
    assert_eq!(
        store.token(again.expose()).await.unwrap().unwrap().role,
        Role::Deployer
    );
}
