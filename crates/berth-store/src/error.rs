//! The one error type of the store. Database URLs appear only as [`SafeUrl`], so a password in
//! `postgres://user:password@host/db` never reaches a message.

use std::path::PathBuf;

use berth_types::SafeUrl;

use crate::model::RunId;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://`.
    #[error(
        "unsupported database URL {url}: use sqlite:PATH (a file, created if missing) or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    UnsupportedUrl {
        /// The URL, credentials redacted.
        url: SafeUrl,
    },
    /// The URL has the right scheme but cannot be parsed.
    #[error("invalid database URL {url}")]
    InvalidUrl {
        /// The URL, credentials redacted.
        url: SafeUrl,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The directory of a SQLite file could not be created.
    #[error("cannot create the directory {} for the SQLite database", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or opened.
    #[error(
        "cannot open the database {url}; check that it is running, reachable and that the credentials are right"
    )]
    Connect {
        /// The URL, credentials redacted.
        url: SafeUrl,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// A schema migration failed; the database is left at the previous version.
    #[error("applying schema migration {version} ({description}) failed")]
    Migrate {
        /// The migration's version.
        version: i64,
        /// What it does.
        description: &'static str,
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },
    /// The database was written by a newer berth.
    #[error(
        "the database schema is at version {found}, newer than this berth knows ({known}); upgrade berth, or point it at another database"
    )]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A query failed.
    #[error("database error while {op}")]
    Query {
        /// What the store was doing, e.g. `creating a run`.
        op: &'static str,
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },
    /// The run does not exist.
    #[error("run {0} does not exist")]
    NoSuchRun(RunId),
    /// A token with this name exists.
    #[error("an API token named {name:?} already exists; revoke it first or choose another name")]
    TokenExists {
        /// The name.
        name: String,
    },
    /// The token name is empty, too long or has odd characters.
    #[error("invalid API token name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    InvalidTokenName {
        /// The name given.
        name: String,
    },
    /// The operating system's random source failed (tokens cannot be made without it).
    #[error("cannot get random bytes for a token from the operating system: {0}")]
    Random(String),
    /// A value could not be encoded as JSON.
    #[error("cannot encode {what} as JSON")]
    Encode {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The database holds a value this build cannot read (edited by hand, or written by a
    /// newer berth).
    #[error("the database holds {what} that berth cannot read: {detail}")]
    Corrupt {
        /// What, e.g. `a run state`.
        what: &'static str,
        /// The value and the reason.
        detail: String,
    },
}

/// `map_err` helper: a failed query while doing `op`.
pub(crate) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}
