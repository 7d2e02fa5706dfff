//! What can stop a logical copy.

/// Everything that can stop `berth data copy`. Each message says what to do about it; none
/// contains a password (URLs are shown redacted, child stderr has the password cut out).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// No masking key: fakes without a secret key could be reversed by hashing guesses.
    #[error(
        "no masking key: set {var} to a secret of at least 16 bytes (the same one for every copy \
         whose masked values must agree, e.g. from a Kubernetes Secret)"
    )]
    NoKey {
        /// The environment variable read.
        var: String,
    },
    /// A database URL berth cannot use.
    #[error("database URL `{url}`: {reason}")]
    BadUrl {
        /// The URL, redacted.
        url: berth_types::SafeUrl,
        /// What is wrong with it.
        reason: String,
    },
    /// The dump or restore tool could not be started.
    #[error("cannot run `{tool}`: {source}; install the database client tools (Debian: {package})")]
    Spawn {
        /// The program.
        tool: String,
        /// The Debian package that has it.
        package: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// The dump tool failed; nothing was committed to the target.
    #[error(
        "`{tool}` of the source failed ({status}); nothing was written to the target:\n{stderr}"
    )]
    DumpFailed {
        /// The program.
        tool: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The restore tool failed; its transaction was rolled back.
    #[error(
        "`{tool}` into the target failed ({status}); its transaction was rolled back:\n{stderr}"
    )]
    RestoreFailed {
        /// The program.
        tool: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Reading the dump stream failed.
    #[error("reading the dump failed: {0}")]
    DumpRead(#[source] std::io::Error),
    /// Writing the restore stream failed (usually: the restore tool exited early).
    #[error("writing to the restore failed: {0}")]
    RestoreWrite(#[source] std::io::Error),
    /// The dump is not what the masker expects.
    #[error("dump line {line}: {reason}")]
    Dump {
        /// 1-based line of the dump.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A masked column is not in the dump: a typo must never leave real data unmasked, so the
    /// copy stops and the target's transaction is rolled back.
    #[error(
        "masked column `{column}` is not in the dump ({found}); fix the rule, nothing was \
         committed to the target"
    )]
    NoSuchColumn {
        /// The rule's column, as written.
        column: String,
        /// What the dump has instead.
        found: String,
    },
    /// MySQL/MariaDB: the source has views or triggers, which the staging swap cannot move.
    #[error(
        "database `{database}` has {objects}: berth copies MySQL/MariaDB tables through a staging \
         database swapped in with one RENAME TABLE, and views and triggers cannot be renamed \
         across databases; copy a database with tables only, or drop them from the copy's \
         source; nothing was written to the target"
    )]
    MysqlNotTablesOnly {
        /// The source database.
        database: String,
        /// `view v, trigger t`.
        objects: String,
    },
    /// Strict mode: a column that looks personal has no rule.
    #[error(
        "column `{column}` looks personal but has no masking rule (strict mode); give it one, or \
         `keep` if it is not personal; nothing was committed to the target"
    )]
    Unmasked {
        /// `schema.table.column`.
        column: String,
    },
    /// A copy Job failed or did not finish.
    #[error("copy Job `{namespace}/{name}` {reason}; see `kubectl -n {namespace} logs job/{name}`")]
    JobFailed {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What happened.
        reason: String,
    },
    /// The Kubernetes API refused or failed a request (Job form).
    #[error(transparent)]
    Cluster(#[from] berth_cluster::ClusterError),
}
