//! The embedded schema: applied once, idempotent on every later open, also when several
//! servers open a fresh database at once; a database from a newer berth is refused.

use berth_store::{Backend, RunFilter, SCHEMA_VERSION, Store, StoreError};

use crate::support::{Db, new_run, on_both};

on_both!(
    open_twice_is_idempotent,
    concurrent_first_opens,
    newer_schema_is_refused
);

async fn open_twice_is_idempotent(db: Db) {
    let store = db.open().await;
    let expected = match db {
        Db::Sqlite { .. } => Backend::Sqlite,
        Db::Postgres(_) => Backend::Postgres,
    };
    assert_eq!(store.backend(), expected);
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let run = store
        .create_run(new_run("shop", "main", "prod", "c"))
        .await
        .unwrap();
    store.close().await;
    for _ in 0..2 {
        let again = db.open().await;
        assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);
        assert_eq!(again.run(run.id).await.unwrap().unwrap(), run);
        again.close().await;
    }
}

async fn concurrent_first_opens(db: Db) {
    let url = db.url().to_string();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    for o in opens {
        let store = o.await.unwrap().expect("every concurrent open succeeds");
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    }
    let store = db.open().await;
    store
        .create_run(new_run("shop", "main", "prod", "c"))
        .await
        .unwrap();
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 1);
}

async fn newer_schema_is_refused(db: Db) {
    db.open().await.close().await;
    let future = SCHEMA_VERSION + 1;
    let sql = format!(
        "INSERT INTO berth_schema (version, description, applied_at) \
         VALUES ({future}, 'from the future', '2030-01-01T00:00:00.000000Z')"
    );
    match &db {
        Db::Sqlite { path, .. } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
                .await
                .unwrap();
            sqlx::query(&sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Db::Postgres(pg) => {
            berth_testkit::psql(&pg.url, &sql).unwrap();
        }
    }
    let err = Store::open(db.url()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, known } if found == future && known == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade berth"), "{err}");
}
