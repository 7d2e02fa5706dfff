//! Runs: creation, lookup, compare-and-set state transitions, superseding, interruption at
//! restart; webhook deliveries that create runs; the commits the polling fallback has seen.

use jiff::Timestamp;

use crate::error::{StoreError, query};
use crate::model::{Accepted, NewDelivery, NewRun, Run, RunFilter, RunId, RunState, Trigger};
use crate::{Store, now, parse_opt_ts, parse_ts, ts_text, with_pool};

/// Columns of a run, in the order of [`RunRow`].
const RUN_COLS: &str = "id, repository, branch, commit_id, environment, trigger_info, state, \
     created_at, started_at, finished_at, note, result, superseded_by";

/// A run as the database returns it.
type RunRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

const INSERT_RUN: &str = "INSERT INTO runs \
     (repository, branch, commit_id, environment, trigger_info, state, created_at) \
     VALUES ($1, $2, $3, $4, $5, $7, $6) \
     RETURNING id, repository, branch, commit_id, environment, trigger_info, state, \
     created_at, started_at, finished_at, note, result, superseded_by";

fn run_from_row(row: RunRow) -> Result<Run, StoreError> {
    let (id, repository, branch, commit, environment, trigger, state, created, started, finished) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9,
    );
    let trigger: Trigger = serde_json::from_str(&trigger).map_err(|e| StoreError::Corrupt {
        what: "a run trigger",
        detail: format!("run {id}: {trigger:?}: {e}"),
    })?;
    let state: RunState = state.parse().map_err(|e| StoreError::Corrupt {
        what: "a run state",
        detail: format!("run {id}: {e}"),
    })?;
    let result = row
        .11
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                what: "a run result",
                detail: format!("run {id}: {e}"),
            })
        })
        .transpose()?;
    Ok(Run {
        id: RunId(id),
        repository,
        branch,
        commit,
        environment,
        trigger,
        state,
        created_at: parse_ts(&created)?,
        started_at: parse_opt_ts(started)?,
        finished_at: parse_opt_ts(finished)?,
        note: row.10,
        result,
        superseded_by: row.12.map(RunId),
    })
}

/// A value bound to a dynamically built query.
enum Bind {
    Text(String),
    Int(i64),
}

/// The bound values of a new run, in the order of [`INSERT_RUN`].
struct RunValues {
    repository: String,
    branch: String,
    commit: String,
    environment: String,
    trigger: String,
    created_at: String,
    state: &'static str,
}

impl RunValues {
    fn new(new: NewRun, at: Timestamp) -> Result<RunValues, StoreError> {
        let trigger = serde_json::to_string(&new.trigger).map_err(|source| StoreError::Encode {
            what: "a run trigger",
            source,
        })?;
        Ok(RunValues {
            repository: new.repository,
            branch: new.branch,
            commit: new.commit,
            environment: new.environment,
            trigger,
            created_at: ts_text(at),
            state: if new.needs_approval {
                RunState::AwaitingApproval.as_str()
            } else {
                RunState::Queued.as_str()
            },
        })
    }
}

/// `INSERT_RUN` with the values of `$v`, returning a `RunRow` from executor `$e`.
macro_rules! insert_run {
    ($e:expr, $v:expr) => {
        sqlx::query_as::<_, RunRow>(INSERT_RUN)
            .bind($v.repository)
            .bind($v.branch)
            .bind($v.commit)
            .bind($v.environment)
            .bind($v.trigger)
            .bind($v.created_at)
            .bind($v.state)
            .fetch_one($e)
            .await
            .map_err(query("creating a run"))
    };
}

impl Store {
    /// Persists a new run in state `queued` (`awaiting_approval` when it
    /// [`NewRun::needs_approval`]). Returns it with its id.
    pub async fn create_run(&self, new: NewRun) -> Result<Run, StoreError> {
        let v = RunValues::new(new, now())?;
        let row = with_pool!(self, write, p => insert_run!(p, v)?);
        run_from_row(row)
    }

    /// One run, if it exists.
    pub async fn run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        let sql = format!("SELECT {RUN_COLS} FROM runs WHERE id = $1");
        let row = with_pool!(self, read, p => sqlx::query_as::<_, RunRow>(&sql)
            .bind(id.0)
            .fetch_optional(p)
            .await
            .map_err(query("reading a run"))?);
        row.map(run_from_row).transpose()
    }

    /// Runs matching `filter`, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let mut sql = format!("SELECT {RUN_COLS} FROM runs WHERE 1 = 1");
        let mut binds = Vec::new();
        let mut cond = |sql: &mut String, column: &str, op: &str, value: Bind| {
            binds.push(value);
            sql.push_str(&format!(" AND {column} {op} ${}", binds.len()));
        };
        if let Some(r) = &filter.repository {
            cond(&mut sql, "repository", "=", Bind::Text(r.clone()));
        }
        if let Some(b) = &filter.branch {
            cond(&mut sql, "branch", "=", Bind::Text(b.clone()));
        }
        if let Some(e) = &filter.environment {
            cond(&mut sql, "environment", "=", Bind::Text(e.clone()));
        }
        if let Some(s) = filter.state {
            cond(&mut sql, "state", "=", Bind::Text(s.as_str().into()));
        }
        if let Some(before) = filter.before {
            cond(&mut sql, "id", "<", Bind::Int(before.0));
        }
        let limit = filter
            .limit
            .unwrap_or(RunFilter::DEFAULT_LIMIT)
            .min(RunFilter::MAX_LIMIT);
        binds.push(Bind::Int(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", binds.len()));
        let rows = with_pool!(self, read, p => {
            let mut q = sqlx::query_as::<_, RunRow>(&sql);
            for b in &binds {
                q = match b {
                    Bind::Text(s) => q.bind(s.clone()),
                    Bind::Int(i) => q.bind(*i),
                };
            }
            q.fetch_all(p).await.map_err(query("listing runs"))?
        });
        rows.into_iter().map(run_from_row).collect()
    }

    /// How many runs are in each state, counted by the database (one `GROUP BY`; `/metrics`
    /// calls it on every scrape, so it must not load runs).
    pub async fn count_by_state(&self) -> Result<Vec<(RunState, u64)>, StoreError> {
        let sql = "SELECT state, COUNT(*) FROM runs GROUP BY state ORDER BY state";
        let rows: Vec<(String, i64)> = with_pool!(self, read, p => sqlx::query_as(sql)
            .fetch_all(p)
            .await
            .map_err(query("counting runs by state"))?);
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((s.parse::<RunState>().ok()?, n.max(0) as u64)))
            .collect())
    }

    /// Queued runs, oldest first: the work queue.
    pub async fn queued(&self) -> Result<Vec<Run>, StoreError> {
        let sql = format!("SELECT {RUN_COLS} FROM runs WHERE state = 'queued' ORDER BY id");
        let rows = with_pool!(self, read, p => sqlx::query_as::<_, RunRow>(&sql)
            .fetch_all(p)
            .await
            .map_err(query("listing queued runs"))?);
        rows.into_iter().map(run_from_row).collect()
    }

    /// Compare-and-set of a run's state: moves it from `from` to `to` only if it is in `from`,
    /// and returns whether it did. `false` means another worker took it, it was cancelled or
    /// superseded, or it does not exist.
    ///
    /// Entering `running` sets `started_at`; entering a terminal state sets `finished_at`;
    /// re-entering `queued` clears both. A `note` replaces the run's note (give the error when
    /// failing); `None` keeps it.
    pub async fn transition(
        &self,
        id: RunId,
        from: RunState,
        to: RunState,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (times, stamp) = match to {
            RunState::Queued => ("started_at = NULL, finished_at = NULL", None),
            RunState::Running => ("started_at = $5, finished_at = NULL", Some(ts_text(now()))),
            _ => ("finished_at = $5", Some(ts_text(now()))),
        };
        let sql = format!(
            "UPDATE runs SET state = $3, {times}, note = COALESCE($4, note) \
             WHERE id = $1 AND state = $2"
        );
        let done = with_pool!(self, write, p => {
            let mut q = sqlx::query(&sql)
                .bind(id.0)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(note);
            if let Some(t) = stamp.clone() {
                q = q.bind(t);
            }
            q.execute(p)
                .await
                .map_err(query("changing the state of a run"))?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Queued (or awaiting approval) runs of the same repository, branch and environment as
    /// `newer`, and older than it, become `superseded` with `superseded_by = newer`. Returns
    /// their ids, oldest first.
    pub async fn supersede_older(&self, newer: RunId) -> Result<Vec<RunId>, StoreError> {
        let note = format!("superseded by run {newer}");
        let mut ids: Vec<i64> = with_pool!(self, write, p => sqlx::query_scalar(
            "UPDATE runs SET state = 'superseded', superseded_by = $1, finished_at = $2, note = $3 \
             WHERE state IN ('queued', 'awaiting_approval') AND id < $1 \
               AND repository = (SELECT repository FROM runs WHERE id = $1) \
               AND branch = (SELECT branch FROM runs WHERE id = $1) \
               AND environment = (SELECT environment FROM runs WHERE id = $1) \
             RETURNING id",
        )
        .bind(newer.0)
        .bind(ts_text(now()))
        .bind(&note)
        .fetch_all(p)
        .await
        .map_err(query("superseding older runs"))?);
        ids.sort_unstable();
        Ok(ids.into_iter().map(RunId).collect())
    }

    /// For a server that starts: every `running` run was cut off by the previous process and
    /// becomes `interrupted`, keeping its events. Returns their ids, oldest first.
    pub async fn interrupt_running(&self) -> Result<Vec<RunId>, StoreError> {
        let mut ids: Vec<i64> = with_pool!(self, write, p => sqlx::query_scalar(
            "UPDATE runs SET state = 'interrupted', finished_at = $1, \
               note = 'interrupted: the server stopped while this run was running' \
             WHERE state = 'running' RETURNING id",
        )
        .bind(ts_text(now()))
        .fetch_all(p)
        .await
        .map_err(query("marking running runs interrupted"))?);
        ids.sort_unstable();
        Ok(ids.into_iter().map(RunId).collect())
    }

    /// Stores the outcome summary of a run (digests, revision, diagnosis), replacing any.
    pub async fn set_result(
        &self,
        id: RunId,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(result).map_err(|source| StoreError::Encode {
            what: "a run result",
            source,
        })?;
        let n = with_pool!(self, write, p => sqlx::query("UPDATE runs SET result = $2 WHERE id = $1")
            .bind(id.0)
            .bind(&text)
            .execute(p)
            .await
            .map_err(query("storing the result of a run"))?
            .rows_affected());
        if n == 0 {
            return Err(StoreError::NoSuchRun(id));
        }
        Ok(())
    }

    /// Records webhook delivery `(provider, delivery_id)` and creates `runs`, atomically. A
    /// delivery seen before creates nothing and returns [`Accepted::Duplicate`] with the runs
    /// its first delivery created. Concurrent deliveries of one id create runs exactly once.
    pub async fn accept_delivery(
        &self,
        d: NewDelivery,
        runs: Vec<NewRun>,
    ) -> Result<Accepted, StoreError> {
        let at = now();
        let values = runs
            .into_iter()
            .map(|r| RunValues::new(r, at))
            .collect::<Result<Vec<_>, _>>()?;
        let op = "recording a webhook delivery";
        let outcome = with_pool!(self, write, p => {
            let mut tx = p.begin().await.map_err(query(op))?;
            let fresh: Option<String> = sqlx::query_scalar(
                "INSERT INTO deliveries (provider, delivery_id, first_seen) VALUES ($1, $2, $3) \
                 ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING first_seen",
            )
            .bind(&d.provider)
            .bind(&d.delivery_id)
            .bind(ts_text(at))
            .fetch_optional(&mut *tx)
            .await
            .map_err(query(op))?;
            if fresh.is_none() {
                let first: String = sqlx::query_scalar(
                    "SELECT first_seen FROM deliveries WHERE provider = $1 AND delivery_id = $2",
                )
                .bind(&d.provider)
                .bind(&d.delivery_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(query(op))?;
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT run_id FROM delivery_runs WHERE provider = $1 AND delivery_id = $2 \
                     ORDER BY run_id",
                )
                .bind(&d.provider)
                .bind(&d.delivery_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(query(op))?;
                tx.rollback().await.map_err(query(op))?;
                Err((first, ids))
            } else {
                let mut rows = Vec::with_capacity(values.len());
                for v in values {
                    let row = insert_run!(&mut *tx, v)?;
                    sqlx::query(
                        "INSERT INTO delivery_runs (provider, delivery_id, run_id) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(&d.provider)
                    .bind(&d.delivery_id)
                    .bind(row.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(query(op))?;
                    rows.push(row);
                }
                tx.commit().await.map_err(query(op))?;
                Ok(rows)
            }
        });
        match outcome {
            Ok(rows) => Ok(Accepted::New(
                rows.into_iter()
                    .map(run_from_row)
                    .collect::<Result<_, _>>()?,
            )),
            Err((first, ids)) => Ok(Accepted::Duplicate {
                first_seen: parse_ts(&first)?,
                runs: ids.into_iter().map(RunId).collect(),
            }),
        }
    }

    /// The last commit the polling fallback saw on `repo`/`branch`.
    pub async fn last_seen(&self, repo: &str, branch: &str) -> Result<Option<String>, StoreError> {
        with_pool!(self, read, p => sqlx::query_scalar(
            "SELECT commit_id FROM last_seen WHERE repository = $1 AND branch = $2",
        )
        .bind(repo)
        .bind(branch)
        .fetch_optional(p)
        .await
        .map_err(query("reading the last seen commit")))
    }

    /// Records the last commit seen on `repo`/`branch`, replacing the previous one.
    pub async fn set_last_seen(
        &self,
        repo: &str,
        branch: &str,
        commit: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, write, p => sqlx::query(
            "INSERT INTO last_seen (repository, branch, commit_id, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repository, branch) \
             DO UPDATE SET commit_id = excluded.commit_id, updated_at = excluded.updated_at",
        )
        .bind(repo)
        .bind(branch)
        .bind(commit)
        .bind(ts_text(now()))
        .execute(p)
        .await
        .map_err(query("recording the last seen commit"))?
        .rows_affected());
        Ok(())
    }
}
