//! The URL forms `Store::open` accepts, and the errors for the ones it cannot use.

use berth_store::{Backend, RunFilter, Store, StoreError};
use berth_testkit::Postgres;

use crate::support::{chain, new_run};

#[tokio::test]
async fn sqlite_url_forms_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/berth.db");
    let first = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(first.backend(), Backend::Sqlite);
    first
        .create_run(new_run("shop", "main", "prod", "c"))
        .await
        .unwrap();
    first.close().await;
    assert!(
        path.is_file(),
        "sqlite:PATH creates the file and its directories"
    );
    // sqlite:///ABSOLUTE is the same file.
    let second = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(second.runs(&RunFilter::default()).await.unwrap().len(), 1);

    let memory = Store::open("sqlite::memory:").await.unwrap();
    memory
        .create_run(new_run("shop", "main", "prod", "c"))
        .await
        .unwrap();
    assert_eq!(memory.queued().await.unwrap().len(), 1);
}

#[tokio::test]
async fn unusable_urls_say_what_to_do() {
    let err = Store::open("/var/lib/berth.db").await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    assert!(err.to_string().contains("use sqlite:PATH"), "{err}");

    // A directory that cannot be created (its parent is a file).
    let file = tempfile::NamedTempFile::new().unwrap();
    let url = format!("sqlite:{}/sub/berth.db", file.path().display());
    let err = Store::open(&url).await.unwrap_err();
    assert!(
        matches!(err, StoreError::CreateDir { .. }),
        "{}",
        chain(&err)
    );
    assert!(
        err.to_string().contains(&file.path().display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn postgresql_scheme_and_missing_database() {
    let pg = Postgres::fresh("scheme").await;
    let url = pg.url.replacen("postgres://", "postgresql://", 1);
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    store.close().await;

    let missing = format!("{}_missing", pg.url);
    let err = Store::open(&missing).await.unwrap_err();
    let shown = chain(&err);
    assert!(matches!(err, StoreError::Connect { .. }), "{shown}");
    assert!(shown.contains("does not exist"), "{shown}");
}

#[tokio::test]
async fn tls_to_postgres_verifies_the_server() {
    let pg = Postgres::fresh("tls").await;
    let ca = Postgres::ca_file();
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url,
        ca.display()
    );
    let store = Store::open(&verified)
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    store
        .create_run(new_run("shop", "main", "prod", "c"))
        .await
        .unwrap();
    store.close().await;

    // The public roots did not sign the environment's certificate: the handshake is refused.
    let wrong_ca = format!(
        "{}?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt",
        pg.url
    );
    let err = Store::open(&wrong_ca).await.unwrap_err();
    let shown = chain(&err);
    assert!(matches!(err, StoreError::Connect { .. }), "{shown}");
    assert!(shown.to_lowercase().contains("certificate"), "{shown}");
}
