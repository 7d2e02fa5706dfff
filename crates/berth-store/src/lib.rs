//! Persistence for `berth serve`: runs and their states, the events and logs of each run, webhook
//! deliveries (for deduplication), API tokens and sign-in sessions (hashes only) and the commits
//! the polling fallback has seen. SQLite by default (one file, no server), PostgreSQL by URL for teams and HA.
//!
//! ```text
//! berth-server ──> Store ──┬── SQLite: writer pool (1 connection) + reader pool, WAL
//!                          └── PostgreSQL: one pool
//! ```
//!
//! # Why an enum of pools and not `sqlx::Any`
//!
//! Each backend keeps its own native driver ([`sqlx::SqlitePool`], [`sqlx::PgPool`]) behind one
//! private enum, and every query is written once: a macro expands the same body for both, with
//! `$1`-style parameters that both accept. `sqlx::Any` would hide the SQLite settings this store
//! depends on (WAL, `synchronous=NORMAL`, busy timeout, a single writer connection), maps types
//! through a lowest common denominator, and needs drivers installed at runtime; the enum costs a
//! `match` per call and nothing else.
//!
//! # Design decisions where they bite
//!
//! - **SQLite writes go through one connection.** Writers queue in the pool instead of
//!   fighting over the file lock, so 50 concurrent writers never see "database is locked";
//!   the 30 s busy timeout covers a second process (or a second [`Store`]) on the same file.
//!   Reads use their own pool and, thanks to WAL, never wait for writers.
//! - **Events are numbered per run without gaps.** [`Store::append_event`] bumps the run's
//!   `last_seq` and inserts the event in one transaction; on PostgreSQL the row lock on the run
//!   makes concurrent appends commit in `seq` order, so a reader following
//!   [`Store::events`]`(after_seq)` (an SSE stream catching up) never skips an event that
//!   commits late. On PostgreSQL a single event goes in one statement (a data-modifying CTE,
//!   one round trip); with `synchronous=NORMAL` a SQLite commit does not fsync.
//! - **Webhook deliveries are deduplicated inside the transaction that creates their runs**
//!   ([`Store::accept_delivery`]): the delivery's primary key decides, so two concurrent
//!   deliveries of the same id create runs exactly once on both backends.
//! - **Tokens are stored as SHA-256 hashes.** The plaintext exists once, in the [`Secret`]
//!   returned by [`Store::create_token`]. Lookups are by hash, so comparing in constant time is
//!   not needed: the timing of an index lookup says nothing about the token.
//! - **Sessions are not tokens.** The web UI's cookie holds a session id of its own (random,
//!   stored as a SHA-256 like tokens, idle and absolute expiry, deleted at sign-out, gone with
//!   its token): the long-lived API token never leaves the sign-in form.
//! - **Timestamps are RFC 3339 UTC text with microseconds** on both backends: one decoding path,
//!   and text order is time order.
//! - **Migrations are embedded** and applied at [`Store::open`], in one transaction, under an
//!   advisory lock on PostgreSQL and `BEGIN IMMEDIATE` on SQLite, so servers starting together
//!   do not race. A database from a newer berth is refused, not modified.
//! - **The database URL is only kept as a [`SafeUrl`]**: its password never reaches an error
//!   or `Debug`.
//! - [`Store::interrupt_running`] assumes one server per database: with several servers on one
//!   PostgreSQL, the one starting would mark the others' runs interrupted.
//!
//! [`Secret`]: berth_types::Secret

mod error;
mod events;
mod migrate;
mod model;
mod notifications;
mod runs;
mod sessions;
mod tokens;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use berth_types::SafeUrl;
use jiff::Timestamp;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use error::StoreError;
pub use events::MAX_EVENTS_PAGE;
pub use migrate::SCHEMA_VERSION;
pub use model::{
    Accepted, NewDelivery, NewRun, Role, Run, RunFilter, RunId, RunState, Session, StoredEvent,
    TokenInfo, Trigger, UnknownName,
};
pub use notifications::{DueNotification, NewNotification, NotificationState};
pub use sessions::SESSION_SEEN_GRANULARITY;
pub use tokens::{LAST_USED_GRANULARITY, TOKEN_PREFIX};

/// Which database a [`Store`] writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// How long a SQLite connection waits for another process's write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections of the PostgreSQL pool (and of the SQLite reader pool).
const PG_MAX_CONNECTIONS: u32 = 10;
const SQLITE_READERS: u32 = 4;

/// The run store. Cheap to clone (an `Arc`); share one per process.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pools: Pools,
    url: SafeUrl,
}

enum Pools {
    Sqlite {
        /// The one connection that writes.
        write: SqlitePool,
        /// Readers; the same pool as `write` for an in-memory database.
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the pool for `write` or `read`, once per backend: the body
/// is written once and type-checked against each driver.
macro_rules! with_pool {
    ($store:expr, $kind:ident, $p:ident => $body:expr) => {
        match &$store.inner.pools {
            $crate::Pools::Sqlite { $kind: $p, .. } => $body,
            $crate::Pools::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Store {
    /// Opens (and creates, for SQLite) the database and brings its schema up to date.
    ///
    /// - `sqlite:PATH`, `sqlite://PATH` (relative), `sqlite:///ABSOLUTE/PATH`: the file and its
    ///   directory are created if missing; WAL journal, `synchronous=NORMAL`.
    ///   `sqlite::memory:` gives a private in-memory database (for tests of other crates).
    /// - `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (or `postgresql://`): the database must
    ///   exist. `?sslmode=require` uses rustls.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let safe = SafeUrl::new(url);
        let pools = if url.starts_with("sqlite:") {
            open_sqlite(url, &safe).await?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts =
                PgConnectOptions::from_str(url).map_err(|source| StoreError::InvalidUrl {
                    url: safe.clone(),
                    source,
                })?;
            // One plain attempt first: the pool retries refused connections until its acquire
            // timeout, and a wrong host or port should fail at once.
            let probe =
                PgConnection::connect_with(&opts)
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: safe.clone(),
                        source,
                    })?;
            let _ = probe.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(PG_MAX_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await
                .map_err(|source| StoreError::Connect {
                    url: safe.clone(),
                    source,
                })?;
            Pools::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl { url: safe });
        };
        let store = Store {
            inner: Arc::new(Inner { pools, url: safe }),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self.inner.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL it was opened with, password redacted.
    pub fn url(&self) -> &SafeUrl {
        &self.inner.url
    }

    /// Closes every connection, waiting for the ones in use. Clones of this store fail
    /// afterwards. Not needed before exit, but it lets SQLite fold its WAL back into the file.
    pub async fn close(&self) {
        match &self.inner.pools {
            Pools::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }
}

async fn open_sqlite(url: &str, safe: &SafeUrl) -> Result<Pools, StoreError> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|source| StoreError::InvalidUrl {
            url: safe.clone(),
            source,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory
        && let Some(dir) = opts.get_filename().parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let connect = |source| StoreError::Connect {
        url: safe.clone(),
        source,
    };
    // Queued writers wait for the one connection; give them longer than the busy timeout.
    let writer = || {
        let o = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(120));
        if in_memory {
            // The database lives as long as its one connection: never let the pool close it.
            o.min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            o
        }
    };
    let write = connect_sqlite(writer, &opts).await.map_err(connect)?;
    let read = if in_memory {
        write.clone()
    } else {
        let reader = || {
            SqlitePoolOptions::new()
                .max_connections(SQLITE_READERS)
                .acquire_timeout(Duration::from_secs(30))
        };
        connect_sqlite(reader, &opts).await.map_err(connect)?
    };
    Ok(Pools::Sqlite { write, read })
}

/// Connects a pool, retrying while the file is locked. The first connections to a new file
/// switch it to WAL, which needs the file to themselves: SQLite answers "database is locked"
/// at once, without waiting out the busy timeout, when several processes (or stores) open a
/// new database together.
async fn connect_sqlite(
    pool: impl Fn() -> SqlitePoolOptions,
    opts: &SqliteConnectOptions,
) -> Result<SqlitePool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        match pool().connect_with(opts.clone()).await {
            Err(sqlx::Error::Database(e))
                if is_locked(e.code().as_deref()) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), extended codes included.
fn is_locked(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// Now, to the microsecond (what the database keeps).
pub(crate) fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

/// The stored text of a timestamp: RFC 3339, UTC, six fractional digits.
pub(crate) fn ts_text(t: Timestamp) -> String {
    format!("{t:.6}")
}

pub(crate) fn parse_ts(text: &str) -> Result<Timestamp, StoreError> {
    text.parse().map_err(|e| StoreError::Corrupt {
        what: "a timestamp",
        detail: format!("{text:?}: {e}"),
    })
}

pub(crate) fn parse_opt_ts(text: Option<String>) -> Result<Option<Timestamp>, StoreError> {
    text.as_deref().map(parse_ts).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_utc_text() {
        let t: Timestamp = "2026-12-02T03:04:05Z".parse().unwrap();
        assert_eq!(ts_text(t), "2026-12-02T03:04:05.000000Z");
        let t: Timestamp = "2026-12-02T03:04:05.123456789Z".parse().unwrap();
        assert_eq!(ts_text(t), "2026-12-02T03:04:05.123456Z");
        let n = now();
        assert_eq!(parse_ts(&ts_text(n)).unwrap(), n);
    }

    /// Compiles only if every public future is `Send`, so callers can `tokio::spawn` them.
    #[allow(dead_code, clippy::let_underscore_future)]
    fn futures_are_send(s: Store, run: RunId, e: berth_types::Event, v: serde_json::Value) {
        fn send<T: Send>(t: T) -> T {
            t
        }
        let new = || NewRun {
            repository: String::new(),
            branch: String::new(),
            commit: String::new(),
            environment: String::new(),
            trigger: Trigger::Poll,
            needs_approval: false,
        };
        let d = NewDelivery {
            provider: String::new(),
            delivery_id: String::new(),
        };
        let _ = send(Store::open(""));
        let _ = send(s.create_run(new()));
        let _ = send(s.run(run));
        let _ = send(s.runs(&RunFilter::default()));
        let _ = send(s.transition(run, RunState::Queued, RunState::Running, None));
        let _ = send(s.supersede_older(run));
        let _ = send(s.interrupt_running());
        let _ = send(s.queued());
        let _ = send(s.set_result(run, &v));
        let _ = send(s.append_event(run, &e));
        let _ = send(s.append_events(run, std::slice::from_ref(&e)));
        let _ = send(s.events(run, 0, 10));
        let _ = send(s.accept_delivery(d, vec![new()]));
        let _ = send(s.create_token("", Role::Admin));
        let _ = send(s.token(""));
        let _ = send(s.tokens());
        let _ = send(s.revoke_token(""));
        let _ = send(s.create_session("", Duration::ZERO));
        let _ = send(s.session("", Duration::ZERO));
        let _ = send(s.delete_session(""));
        let _ = send(s.purge_sessions(Duration::ZERO));
        let _ = send(s.last_event_seq(run));
        let _ = send(s.step_events(run, 10));
        let _ = send(s.last_seen("", ""));
        let _ = send(s.set_last_seen("", "", ""));
        let _ = send(s.schema_version());
        let _ = send(s.close());
    }

    #[test]
    fn busy_and_locked_codes_are_retried() {
        for code in ["5", "6", "517", "261"] {
            assert!(is_locked(Some(code)), "{code}");
        }
        for code in [None, Some("1"), Some("19"), Some("2067"), Some("x")] {
            assert!(!is_locked(code), "{code:?}");
        }
    }

    #[test]
    fn unreadable_timestamps_are_named() {
        let e = parse_ts("yesterday").unwrap_err().to_string();
        assert!(e.contains("a timestamp") && e.contains("yesterday"), "{e}");
    }
}
