//! Secrets stay out of the database and out of messages: token plaintexts are never stored
//! (the database file, or a full dump, is scanned for them), and the database password never
//! appears in errors or `Debug`.

use berth_store::{Role, Store};
use berth_testkit::Postgres;
use sha2::{Digest, Sha256};

use crate::support::{Db, chain, new_run, on_both};

on_both!(tokens_are_stored_as_hashes_only);

/// Everything the database holds, as bytes to scan.
async fn contents(db: &Db) -> Vec<u8> {
    match db {
        Db::Sqlite { path, .. } => {
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                if let Ok(bytes) = std::fs::read(&p) {
                    all.extend(bytes);
                }
            }
            all
        }
        Db::Postgres(pg) => pg.dump().into_bytes(),
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn tokens_are_stored_as_hashes_only(db: Db) {
    let store = db.open().await;
    let mut plaintexts = Vec::new();
    for (i, role) in [Role::Viewer, Role::Deployer, Role::Admin]
        .into_iter()
        .enumerate()
    {
        let (_, secret) = store.create_token(&format!("t{i}"), role).await.unwrap();
        store.token(secret.expose()).await.unwrap().unwrap();
        plaintexts.push(secret.expose().to_string());
    }
    // Some other data too, so the scan is over a database in use.
    let run = store
        .create_run(new_run("shop", "main", "prod", "x"))
        .await
        .unwrap();
    store
        .append_event(
            run.id,
            &berth_types::Event::StepStarted {
                step: berth_types::Step::Build.into(),
            },
        )
        .await
        .unwrap();
    let bytes = contents(&db).await;
    for plain in &plaintexts {
        let hash: String = Sha256::digest(plain.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // The scan sees what is stored: the hash is there, the token (or its random part) not.
        assert!(
            contains(&bytes, &hash),
            "the scan does not see the token table"
        );
        assert!(
            !contains(&bytes, plain),
            "token plaintext found in the database"
        );
        assert!(
            !contains(&bytes, &plain[plain.len() - 32..]),
            "token suffix found in the database"
        );
    }
}

/// PostgreSQL only: SQLite URLs have no credentials.
#[tokio::test]
async fn database_password_never_in_errors_or_debug() {
    let admin = Postgres::admin_url();
    let (_, host_db) = admin
        .rsplit_once('@')
        .expect("user:password@host in the test URL");
    let password = "Wr0ng-pass-5ecret";
    let wrong = format!("postgres://berth:{password}@{host_db}");
    let err = Store::open(&wrong).await.unwrap_err();
    let shown = format!("{} | {err:?} | {}", chain(&err), err);
    assert!(!shown.contains(password), "{shown}");
    assert!(shown.contains("password authentication failed"), "{shown}");

    let unreachable = format!("postgres://berth:{password}@127.0.0.1:1/postgres");
    let err = Store::open(&unreachable).await.unwrap_err();
    let shown = format!("{} | {err:?}", chain(&err));
    assert!(!shown.contains(password), "{shown}");
    assert!(shown.contains("127.0.0.1:1"), "says where: {shown}");

    let other = format!("mysql://root:{password}@db/app");
    let err = Store::open(&other).await.unwrap_err();
    let shown = format!("{} | {err:?}", chain(&err));
    assert!(
        !shown.contains(password) && shown.contains("unsupported database URL"),
        "{shown}"
    );

    let pg = Postgres::fresh("debug-redacts").await;
    let store = Store::open(&pg.url).await.unwrap();
    let (userinfo, _) = pg.url.rsplit_once('@').unwrap();
    let debug = format!("{store:?} {}", store.url());
    assert!(!debug.contains(userinfo), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
}
