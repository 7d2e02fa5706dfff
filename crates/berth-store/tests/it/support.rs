//! One database per test, on either backend, and a macro that runs a test on both.

use berth_store::{NewRun, Store, Trigger};
use berth_testkit::{PgDatabase, Postgres};

/// A test's own database. Dropping it removes it.
pub enum Db {
    /// A file in a temporary directory.
    Sqlite {
        /// `sqlite:<dir>/store.db`.
        url: String,
        /// The file.
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    },
    /// A fresh database on the environment's PostgreSQL.
    Postgres(PgDatabase),
}

impl Db {
    pub async fn sqlite(_name: &str) -> Db {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // A directory that does not exist yet: open creates it.
        let path = dir.path().join("data/store.db");
        Db::Sqlite {
            url: format!("sqlite:{}", path.display()),
            path,
            _dir: dir,
        }
    }

    pub async fn postgres(name: &str) -> Db {
        Db::Postgres(Postgres::fresh(name).await)
    }

    pub fn url(&self) -> &str {
        match self {
            Db::Sqlite { url, .. } => url,
            Db::Postgres(pg) => &pg.url,
        }
    }

    /// A new store on this database (a second call opens a second, independent store, as a
    /// restarted server would).
    pub async fn open(&self) -> Store {
        Store::open(self.url())
            .await
            .unwrap_or_else(|e| panic!("open {}: {}", self.url(), chain(&e)))
    }
}

/// An error with its causes, for assertion messages.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub fn new_run(repo: &str, branch: &str, env: &str, commit: &str) -> NewRun {
    NewRun {
        repository: repo.into(),
        branch: branch.into(),
        commit: commit.into(),
        environment: env.into(),
        trigger: Trigger::Manual { who: "test".into() },
        needs_approval: false,
    }
}

/// `on_both!(name)` turns `async fn name(db: Db)` of the current module into the tests
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::support::Db::sqlite(stringify!($name)).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::support::Db::postgres(stringify!($name)).await).await
            }
        }
    )+};
}
pub(crate) use on_both;
