//! Logical copy with masking: dump the source database, rewrite the masked columns on the fly,
//! restore into the target — one stream, never the whole dump in memory or on disk.
//!
//! ```text
//!   pg_dump --format=plain ──stdout──▶ Masker (COPY rows) ──stdin──▶ psql --single-transaction
//!        stderr ─▶ tail                                                 stderr ─▶ tail
//! ```
//!
//! The restore runs in one transaction that is committed only when the restore tool reads the
//! end of its input. So berth closes that input only after the dump tool exited successfully
//! *and* every masking rule matched a column; on any failure it kills the restore tool first,
//! and the target is left exactly as it was. That is what makes a typo in a rule safe: the
//! copy fails naming the column, and no unmasked row is ever committed.
//!
//! MySQL/MariaDB goes the same way (`mariadb-dump --complete-insert | masker | mariadb`, see
//! [`mysql`]), except that MySQL commits DDL implicitly: there the rules are checked against
//! the source's `information_schema` before the first byte is written.
//!
//! **Test-only pause point.** When the environment variable `BERTH_TEST_PAUSE_AT` is
//! `copy-mid-stream`, the masker flushes what it wrote and stops for good after the first
//! table's data (PostgreSQL: after `DROP`/`CREATE` and one `COPY` block went to psql inside
//! berth's transaction; MySQL: after one `INSERT` into the staging database), so a test can
//! kill berth (SIGTERM, SIGKILL) at a known place mid-stream. Unset (always, outside berth's
//! own tests) it does nothing.
//!
//! Passwords go to the tools through their environment (`PGPASSWORD`, `MYSQL_PWD`), never
//! their command line, and are cut out of any stderr berth reports. The fakes are deterministic per input
//! and key (see [`fake`]); the key comes from a Secret ([`KEY_ENV`]).

mod error;
pub mod fake;
pub mod job;
pub mod mysql;
pub mod pgcopy;
pub mod url;

use std::io::{BufRead, BufReader, BufWriter, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use berth_types::{ColumnRef, Event, EventSink, Level, MaskRule, Secret, Step};

pub use error::CopyError;
pub use pgcopy::{MaskStats, Masker, TableStats};
pub use url::DbUrl;

/// The environment variable that holds the masking key.
pub const KEY_ENV: &str = "BERTH_MASK_KEY";

const STEP: Step = Step::DataCopy;
/// Bytes of each tool's stderr kept for the error message (the end of it).
const STDERR_TAIL: usize = 16 * 1024;
/// The pipe buffers on either side of the masker.
const BUFFER: usize = 1 << 20;

/// What to copy where, masked how.
pub struct CopyRequest {
    /// The source database (read with the dump tool).
    pub source: DbUrl,
    /// The target database; objects of the same names are replaced.
    pub target: DbUrl,
    /// Column -> rule.
    pub rules: Vec<(ColumnRef, MaskRule)>,
    /// Refuse personal-looking columns without a rule.
    pub strict: bool,
    /// The masking key.
    pub key: Secret,
    /// Receives progress.
    pub sink: Arc<dyn EventSink>,
}

/// Stops the copy for good at `point` if `BERTH_TEST_PAUSE_AT` names it, after flushing `out`
/// (test-only, see the [module docs](self)).
fn pause_point(point: &str, out: &mut impl std::io::Write) {
    if std::env::var_os("BERTH_TEST_PAUSE_AT").is_some_and(|p| p == point) {
        let _ = out.flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyOutcome {
    /// Rows, bytes and masked cells.
    pub stats: MaskStats,
    /// Wall time in milliseconds.
    pub millis: u64,
}

/// Reads the masking key from [`KEY_ENV`]; at least 16 bytes.
pub fn key_from_env() -> Result<Secret, CopyError> {
    match std::env::var(KEY_ENV) {
        Ok(k) if k.len() >= 16 => Ok(Secret::new(k)),
        _ => Err(CopyError::NoKey {
            var: KEY_ENV.into(),
        }),
    }
}

/// Copies `source` into `target` with masking. Blocking work runs on tokio's blocking pool.
pub async fn copy(req: CopyRequest) -> Result<CopyOutcome, CopyError> {
    tokio::task::spawn_blocking(move || copy_blocking(req))
        .await
        .expect("the copy thread does not panic")
}

/// [`copy`], on the calling thread.
pub fn copy_blocking(req: CopyRequest) -> Result<CopyOutcome, CopyError> {
    let started = Instant::now();
    req.sink.emit(Event::StepStarted { step: STEP.into() });
    let result = copy_inner(&req);
    let millis = started.elapsed().as_millis() as u64;
    match &result {
        Ok(stats) => {
            for (table, t) in &stats.tables {
                if !t.masked.is_empty() {
                    req.sink.emit(Event::Message {
                        step: STEP.into(),
                        level: Level::Info,
                        message: format!(
                            "{table}: {} rows, masked {}",
                            t.rows,
                            t.masked.join(", ")
                        ),
                    });
                }
            }
            req.sink.emit(Event::StepFinished {
                step: STEP.into(),
                ok: true,
                millis,
                message: format!(
                    "copied {} rows of {} tables ({} masked cells, {:.1} MB) from {} to {}",
                    stats.rows,
                    stats.tables.len(),
                    stats.masked_cells,
                    stats.bytes_out as f64 / 1e6,
                    req.source.original,
                    req.target.original
                ),
            });
        }
        Err(e) => req.sink.emit(Event::StepFinished {
            step: STEP.into(),
            ok: false,
            millis,
            message: e.to_string(),
        }),
    }
    result.map(|stats| CopyOutcome { stats, millis })
}

fn copy_inner(req: &CopyRequest) -> Result<MaskStats, CopyError> {
    if req.source.is_postgres() != req.target.is_postgres() {
        return Err(CopyError::BadUrl {
            url: req.target.original.clone(),
            reason: format!(
                "the source is {} and the target {}: both must be the same kind of database",
                req.source.scheme, req.target.scheme
            ),
        });
    }
    let masker = Masker::new(req.key.expose().as_bytes(), req.rules.clone(), req.strict);
    let secrets: Vec<String> = [req.source.password(), req.target.password()]
        .into_iter()
        .flatten()
        .map(str::to_string)
        .collect();
    if !req.source.is_postgres() {
        return copy_mysql(req, &masker, &secrets);
    }
    let tables = pg_source_tables(&req.source, &secrets)?;
    pgcopy::preflight(&masker, &tables)?;
    pipe(
        Tool::new("pg_dump", "postgresql-client", pg_dump_command(&req.source)),
        Tool::new("psql", "postgresql-client", psql_command(&req.target)),
        &secrets,
        Markers {
            begin: b"BEGIN;\n",
            commit: b"COMMIT;\n",
        },
        |r, w| masker.mask_dump(r, w),
    )
}

/// The source's ordinary and partitioned tables with their columns, from its catalog (as JSON,
/// so no identifier can break the parsing).
fn pg_source_tables(
    source: &DbUrl,
    secrets: &[String],
) -> Result<Vec<(String, String, Vec<String>)>, CopyError> {
    let mut q = Command::new("psql");
    q.args([
        "--no-psqlrc",
        "--quiet",
        "--tuples-only",
        "--no-align",
        "--set=ON_ERROR_STOP=1",
    ])
    .arg(
        "--command=SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, a.attname) \
             ORDER BY n.nspname, c.relname, a.attnum), '[]') FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
    )
    .arg(format!("--dbname={}", source.libpq_url()));
    pg_env(&mut q, source);
    let out = run_query(q, "psql", "postgresql-client", secrets)?;
    let rows: Vec<(String, String, String)> =
        serde_json::from_slice(out.trim_ascii()).map_err(|e| CopyError::DumpFailed {
            tool: "psql".into(),
            status: "unreadable catalog answer".into(),
            stderr: e.to_string(),
        })?;
    let mut tables: Vec<(String, String, Vec<String>)> = Vec::new();
    for (s, t, c) in rows {
        match tables.last_mut() {
            Some((ls, lt, cols)) if *ls == s && *lt == t => cols.push(c),
            _ => tables.push((s, t, vec![c])),
        }
    }
    Ok(tables)
}

/// Runs a catalog query of the source; its stdout, or the tool's error without passwords.
fn run_query(
    mut q: Command,
    tool: &'static str,
    package: &'static str,
    secrets: &[String],
) -> Result<Vec<u8>, CopyError> {
    run_on(&mut q, tool, package, secrets, false)
}

/// Runs one client command; its stdout, or its error (of the source, or of the target when
/// `target`) without passwords.
fn run_on(
    q: &mut Command,
    tool: &'static str,
    package: &'static str,
    secrets: &[String],
    target: bool,
) -> Result<Vec<u8>, CopyError> {
    let out = q
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CopyError::Spawn {
            tool: tool.into(),
            package: package.into(),
            source,
        })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            stderr = stderr.replace(s.as_str(), "[redacted]");
        }
        let (tool, status) = (tool.into(), out.status.to_string());
        return Err(if target {
            CopyError::RestoreFailed {
                tool,
                status,
                stderr,
            }
        } else {
            CopyError::DumpFailed {
                tool,
                status,
                stderr,
            }
        });
    }
    Ok(out.stdout)
}

/// The dump command: plain SQL with `COPY` blocks, dropping the target's objects of the same
/// names first (`--clean --if-exists`) so a copy refreshes an existing staging database, and
/// without owners or grants, which name roles the target need not have.
pub fn pg_dump_command(source: &DbUrl) -> Command {
    let mut c = Command::new("pg_dump");
    c.args([
        "--format=plain",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
    ])
    .arg(format!("--dbname={}", source.libpq_url()));
    pg_env(&mut c, source);
    c
}

/// The restore command: stop at the first error. Not `--single-transaction`: psql commits
/// that one at the end of its input, and the end of input is also what it sees when berth is
/// killed mid-stream. berth sends `BEGIN` first and `COMMIT` last instead, so a cut stream
/// leaves the transaction open when psql exits, and the server rolls it back.
pub fn psql_command(target: &DbUrl) -> Command {
    let mut c = Command::new("psql");
    c.args([
        "--no-psqlrc",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        "--file=-",
    ])
    .arg(format!("--dbname={}", target.libpq_url()));
    pg_env(&mut c, target);
    c
}

/// MySQL/MariaDB: check the rules against the source's columns, then
/// `mariadb-dump | masker | mariadb` into a staging database, and swap its tables into the
/// target with one atomic `RENAME TABLE` (see [`mysql`] for why).
fn copy_mysql(
    req: &CopyRequest,
    masker: &Masker,
    secrets: &[String],
) -> Result<MaskStats, CopyError> {
    let database = req.source.database.clone();
    for url in [&req.source, &req.target] {
        if url.database.is_empty() {
            return Err(CopyError::BadUrl {
                url: url.original.clone(),
                reason: "name the database: mysql://user@host:port/DATABASE".into(),
            });
        }
    }
    let (client, dumper) = mysql_tools();
    let query = |url: &DbUrl, sql: &str, target: bool| -> Result<String, CopyError> {
        let mut q = mysql_command(client, url);
        q.args(["--batch", "--skip-column-names", "-e"]).arg(sql);
        run_on(&mut q, client, "mariadb-client", secrets, target)
            .map(|o| String::from_utf8_lossy(&o).into_owned())
    };
    let mut columns: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let listed = query(
        &req.source,
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION",
        false,
    )?;
    for line in listed.lines() {
        if let Some((t, c)) = line.split_once('\t') {
            columns.entry(t.into()).or_default().push(c.into());
        }
    }
    mysql::preflight(masker, &database, &columns)?;
    let others = query(
        &req.source,
        "SELECT CONCAT('view ', TABLE_NAME) FROM information_schema.VIEWS \
         WHERE TABLE_SCHEMA = DATABASE() UNION ALL \
         SELECT CONCAT('trigger ', TRIGGER_NAME) FROM information_schema.TRIGGERS \
         WHERE TRIGGER_SCHEMA = DATABASE()",
        false,
    )?;
    let others: Vec<&str> = others.lines().filter(|l| !l.is_empty()).collect();
    if !others.is_empty() {
        return Err(CopyError::MysqlNotTablesOnly {
            database,
            objects: others.join(", "),
        });
    }

    let (stage, old) = mysql::staging_databases(&req.target.database);
    query(
        &req.target,
        &format!(
            "DROP DATABASE IF EXISTS {s}; DROP DATABASE IF EXISTS {o}; \
             CREATE DATABASE {s} CHARACTER SET utf8mb4",
            s = mysql::quote(&stage),
            o = mysql::quote(&old)
        ),
        true,
    )?;
    let mut staged = req.target.clone();
    staged.database = stage.clone();
    let mut dump = mysql_command(dumper, &req.source);
    dump.args([
        "--single-transaction",
        "--complete-insert",
        "--hex-blob",
        "--skip-comments",
        "--skip-dump-date",
        "--default-character-set=utf8mb4",
    ])
    .arg(&database);
    let mut restore = mysql_command(client, &staged);
    restore.args(["--batch", "--default-character-set=utf8mb4"]);
    let drop_stage = || {
        let _ = query(
            &req.target,
            &format!("DROP DATABASE IF EXISTS {}", mysql::quote(&stage)),
            true,
        );
    };
    let stats = match pipe(
        Tool::new(dumper, "mariadb-client", dump),
        Tool::new(client, "mariadb-client", restore),
        secrets,
        Markers {
            begin: b"",
            commit: b"",
        },
        |r, w| masker.mask_mysql_dump(&database, r, w),
    ) {
        Ok(s) => s,
        Err(e) => {
            drop_stage();
            return Err(e);
        }
    };
    let tables = |db: &str| -> Result<Vec<String>, CopyError> {
        Ok(query(
            &req.target,
            &format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}'",
                db.replace('\\', "\\\\").replace('\'', "''")
            ),
            true,
        )?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
    };
    let swap = tables(&stage).and_then(|new| {
        let existing = tables(&req.target.database)?;
        let script = mysql::swap_script(&req.target.database, &stage, &old, &new, &existing);
        query(&req.target, &script, true)
    });
    if let Err(e) = swap {
        drop_stage();
        return Err(e);
    }
    Ok(stats)
}

/// `mariadb`/`mariadb-dump` when on PATH (MariaDB's names), else `mysql`/`mysqldump`.
fn mysql_tools() -> (&'static str, &'static str) {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if on_path("mariadb-dump") || !on_path("mysqldump") {
        ("mariadb", "mariadb-dump")
    } else {
        ("mysql", "mysqldump")
    }
}

/// A MySQL client command for `url`: host, port, user and database as flags, the password in
/// `MYSQL_PWD`, no option files.
fn mysql_command(program: &str, url: &DbUrl) -> Command {
    let mut c = Command::new(program);
    c.arg("--no-defaults").arg("--protocol=TCP").arg(format!(
        "--host={}",
        url.host.trim_start_matches('[').trim_end_matches(']')
    ));
    if let Some(p) = url.port {
        c.arg(format!("--port={p}"));
    }
    if let Some(u) = &url.user {
        c.arg(format!("--user={u}"));
    }
    if program == "mariadb" || program == "mysql" {
        c.arg(format!("--database={}", url.database));
    }
    c.env_remove("MYSQL_PWD");
    if let Some(p) = url.password() {
        c.env("MYSQL_PWD", p);
    }
    c
}

fn pg_env(c: &mut Command, url: &DbUrl) {
    c.env_remove("PGPASSWORD");
    if let Some(p) = url.password() {
        c.env("PGPASSWORD", p);
    }
}

/// One child program of the pipe.
struct Tool {
    name: &'static str,
    package: &'static str,
    command: Command,
}

impl Tool {
    fn new(name: &'static str, package: &'static str, command: Command) -> Self {
        Tool {
            name,
            package,
            command,
        }
    }

    fn spawn(&mut self, stdin: Stdio, stdout: Stdio) -> Result<Child, CopyError> {
        self.command
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CopyError::Spawn {
                tool: self.name.into(),
                package: self.package.into(),
                source,
            })
    }
}

/// Keeps the end of a child's stderr.
fn tail(child: &mut Child) -> JoinHandle<Vec<u8>> {
    let mut err = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * STDERR_TAIL {
                kept.drain(..kept.len() - STDERR_TAIL);
            }
        }
        if kept.len() > STDERR_TAIL {
            kept.drain(..kept.len() - STDERR_TAIL);
        }
        kept
    })
}

fn stderr_text(h: JoinHandle<Vec<u8>>, secrets: &[String]) -> String {
    let mut s = String::from_utf8_lossy(&h.join().unwrap_or_default())
        .trim_end()
        .to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        s = s.replace(secret.as_str(), "[redacted]");
    }
    s
}

/// What berth writes to the restore before the dump and after it (PostgreSQL: `BEGIN`,
/// `COMMIT`); the end marker only when everything succeeded.
struct Markers {
    begin: &'static [u8],
    commit: &'static [u8],
}

/// Runs `dump | mask | restore`, committing only when everything succeeded (see the module
/// docs for the order of events).
fn pipe(
    mut dump: Tool,
    mut restore: Tool,
    secrets: &[String],
    markers: Markers,
    mask: impl FnOnce(
        &mut BufReader<std::process::ChildStdout>,
        &mut BufWriter<std::process::ChildStdin>,
    ) -> Result<MaskStats, CopyError>,
) -> Result<MaskStats, CopyError> {
    let mut restore_child = restore.spawn(Stdio::piped(), Stdio::null())?;
    let mut dump_child = match dump.spawn(Stdio::null(), Stdio::piped()) {
        Ok(c) => c,
        Err(e) => {
            let _ = restore_child.kill();
            let _ = restore_child.wait();
            return Err(e);
        }
    };
    let restore_err = tail(&mut restore_child);
    let dump_err = tail(&mut dump_child);
    let mut reader =
        BufReader::with_capacity(BUFFER, dump_child.stdout.take().expect("stdout is piped"));
    let mut writer =
        BufWriter::with_capacity(BUFFER, restore_child.stdin.take().expect("stdin is piped"));
    let masked = match std::io::Write::write_all(&mut writer, markers.begin) {
        Ok(()) => mask(&mut reader, &mut writer),
        Err(e) => Err(CopyError::RestoreWrite(e)),
    };

    let dump_failed = |child: &mut Child, err: JoinHandle<Vec<u8>>| -> Option<CopyError> {
        let status = child.wait().ok()?;
        (!status.success()).then(|| CopyError::DumpFailed {
            tool: dump.name.into(),
            status: status.to_string(),
            stderr: stderr_text(err, secrets),
        })
    };
    let restore_failed = |child: &mut Child, err: JoinHandle<Vec<u8>>| -> CopyError {
        let status = child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        CopyError::RestoreFailed {
            tool: restore.name.into(),
            status,
            stderr: stderr_text(err, secrets),
        }
    };

    match masked {
        Err(CopyError::RestoreWrite(_)) => {
            // The restore tool went away (its error is the story); stop the dump.
            drop(reader);
            let _ = dump_child.kill();
            let _ = dump_child.wait();
            drop(writer);
            Err(restore_failed(&mut restore_child, restore_err))
        }
        Err(e) => {
            // Kill the restore before its input ends: the transaction never commits.
            let _ = restore_child.kill();
            let _ = restore_child.wait();
            drop(writer);
            // At the end of the dump's output the dump has exited or is exiting, and its own
            // failure (a refused connection...) is the real story. Mid-stream, stop it.
            let at_end = matches!(reader.fill_buf().map(|b| b.is_empty()), Ok(true));
            drop(reader);
            if !at_end {
                let _ = dump_child.kill();
                let _ = dump_child.wait();
                return Err(e);
            }
            Err(dump_failed(&mut dump_child, dump_err).unwrap_or(e))
        }
        Ok(stats) => {
            drop(reader);
            if let Some(e) = dump_failed(&mut dump_child, dump_err) {
                let _ = restore_child.kill();
                let _ = restore_child.wait();
                return Err(e);
            }
            // Everything matched and the dump is complete: send the end marker (it commits)
            // and end the input.
            let closed = std::io::Write::write_all(&mut writer, markers.commit)
                .map_err(drop)
                .and_then(|()| writer.into_inner().map(drop).map_err(drop));
            let status = restore_child.wait();
            match (closed, status) {
                (Ok(()), Ok(s)) if s.success() => Ok(stats),
                _ => Err(restore_failed(&mut restore_child, restore_err)),
            }
        }
    }
}
