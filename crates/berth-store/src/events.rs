//! The events of a run, numbered 1, 2, 3... per run without gaps, and read back in order from
//! any point — the way a live log stream catches up after a reconnect.

use berth_types::Event;

use crate::error::{StoreError, query};
use crate::model::{RunId, StoredEvent};
use crate::{Pools, Store, now, parse_ts, ts_text, with_pool};

/// Largest page [`Store::events`] returns.
pub const MAX_EVENTS_PAGE: u32 = 10_000;

impl Store {
    /// Appends one event to a run and returns its sequence number (1 for the first).
    ///
    /// One short transaction: bump the run's counter, insert the event. See the crate docs for
    /// why this keeps readers from skipping events that commit late.
    pub async fn append_event(&self, run: RunId, event: &Event) -> Result<u64, StoreError> {
        if let Pools::Postgres(p) = &self.inner.pools {
            // One round trip instead of four (BEGIN, UPDATE, INSERT, COMMIT): the UPDATE in the
            // CTE holds the run's row lock until this statement commits, as the transaction
            // does on the general path.
            let text = serde_json::to_string(event).map_err(|source| StoreError::Encode {
                what: "an event",
                source,
            })?;
            let seq: Option<i64> = sqlx::query_scalar(
                "WITH bumped AS \
                   (UPDATE runs SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq) \
                 INSERT INTO run_events (run_id, seq, at, event) \
                 SELECT $1, last_seq, $2, $3 FROM bumped RETURNING seq",
            )
            .bind(run.0)
            .bind(ts_text(now()))
            .bind(&text)
            .fetch_optional(p)
            .await
            .map_err(query("appending an event"))?;
            return seq.map(|s| s as u64).ok_or(StoreError::NoSuchRun(run));
        }
        let seqs = self.append_events(run, std::slice::from_ref(event)).await?;
        Ok(seqs.last().copied().unwrap_or(0))
    }

    /// Appends several events of one run in one transaction (cheaper than one by one when a
    /// step reports a burst). Returns their sequence numbers, in order.
    pub async fn append_events(
        &self,
        run: RunId,
        events: &[Event],
    ) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let texts = events
            .iter()
            .map(|e| {
                serde_json::to_string(e).map_err(|source| StoreError::Encode {
                    what: "an event",
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let at = ts_text(now());
        let op = "appending an event";
        let n = texts.len() as i64;
        let last = with_pool!(self, write, p => {
            let mut tx = p.begin().await.map_err(query(op))?;
            let last: Option<i64> = sqlx::query_scalar(
                "UPDATE runs SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq",
            )
            .bind(run.0)
            .bind(n)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query(op))?;
            let Some(last) = last else {
                return Err(StoreError::NoSuchRun(run));
            };
            for (i, text) in texts.iter().enumerate() {
                sqlx::query("INSERT INTO run_events (run_id, seq, at, event) VALUES ($1, $2, $3, $4)")
                    .bind(run.0)
                    .bind(last - n + 1 + i as i64)
                    .bind(&at)
                    .bind(text)
                    .execute(&mut *tx)
                    .await
                    .map_err(query(op))?;
            }
            tx.commit().await.map_err(query(op))?;
            last
        });
        Ok((last - n + 1..=last).map(|s| s as u64).collect())
    }

    /// The sequence number of the last event of `run` (0 before the first); `None` when there
    /// is no such run. With [`Store::events`]`(last - n, n)` a page reads the newest `n`.
    pub async fn last_event_seq(&self, run: RunId) -> Result<Option<u64>, StoreError> {
        let last: Option<i64> = with_pool!(self, read, p => sqlx::query_scalar(
            "SELECT last_seq FROM runs WHERE id = $1",
        )
        .bind(run.0)
        .fetch_optional(p)
        .await
        .map_err(query("reading the last event of a run"))?);
        Ok(last.map(|s| s.max(0) as u64))
    }

    /// The step events of `run` (`step_started`, `step_finished`), in order, at most `limit`
    /// (capped at [`MAX_EVENTS_PAGE`]): what a stage graph needs, without reading the lines of
    /// output between them into memory.
    pub async fn step_events(
        &self,
        run: RunId,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = i64::from(limit.min(MAX_EVENTS_PAGE));
        // Events are stored as serde_json writes them: the tag comes first (pinned by
        // `step_events_are_found_by_their_stored_prefix`).
        let rows: Vec<(i64, String, String)> = with_pool!(self, read, p => sqlx::query_as(
            "SELECT seq, at, event FROM run_events WHERE run_id = $1 \
             AND (event LIKE '{\"event\":\"step\\_started\"%' ESCAPE '\\' \
               OR event LIKE '{\"event\":\"step\\_finished\"%' ESCAPE '\\') \
             ORDER BY seq LIMIT $2",
        )
        .bind(run.0)
        .bind(limit)
        .fetch_all(p)
        .await
        .map_err(query("reading the steps of a run"))?);
        decode(run, rows)
    }

    /// The newest canary event of `run` (where its canary release stands), if it has one.
    pub async fn last_canary_event(&self, run: RunId) -> Result<Option<StoredEvent>, StoreError> {
        // Found by the stored tag, as `step_events`.
        let rows: Vec<(i64, String, String)> = with_pool!(self, read, p => sqlx::query_as(
            "SELECT seq, at, event FROM run_events WHERE run_id = $1 \
             AND event LIKE '{\"event\":\"canary\"%' ORDER BY seq DESC LIMIT 1",
        )
        .bind(run.0)
        .fetch_all(p)
        .await
        .map_err(query("reading the canary of a run"))?);
        Ok(decode(run, rows)?.pop())
    }

    /// Events of `run` with `seq > after_seq`, in order, at most `limit` (capped at
    /// [`MAX_EVENTS_PAGE`]). Start with `after_seq = 0`; continue from the last `seq` seen.
    pub async fn events(
        &self,
        run: RunId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::from(limit.min(MAX_EVENTS_PAGE));
        let rows: Vec<(i64, String, String)> = with_pool!(self, read, p => sqlx::query_as(
            "SELECT seq, at, event FROM run_events WHERE run_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(run.0)
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await
        .map_err(query("reading the events of a run"))?);
        decode(run, rows)
    }
}

fn decode(run: RunId, rows: Vec<(i64, String, String)>) -> Result<Vec<StoredEvent>, StoreError> {
    rows.into_iter()
        .map(|(seq, at, text)| {
            let event = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                what: "an event",
                detail: format!("run {run}, seq {seq}: {e}"),
            })?;
            Ok(StoredEvent {
                seq: seq as u64,
                run,
                at: parse_ts(&at)?,
                event,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use berth_types::{Event, Level};

    #[test]
    fn step_events_are_found_by_their_stored_prefix() {
        let started = serde_json::to_string(&Event::StepStarted {
            step: berth_types::Step::Build.into(),
        })
        .unwrap();
        let finished = serde_json::to_string(&Event::StepFinished {
            step: berth_types::Step::Build.into(),
            ok: true,
            millis: 1,
            message: String::new(),
        })
        .unwrap();
        let line = serde_json::to_string(&Event::Message {
            step: berth_types::Step::Build.into(),
            level: Level::Info,
            message: r#"{"event":"step_started"}"#.into(),
        })
        .unwrap();
        assert!(
            started.starts_with(r#"{"event":"step_started""#),
            "{started}"
        );
        assert!(
            finished.starts_with(r#"{"event":"step_finished""#),
            "{finished}"
        );
        assert!(line.starts_with(r#"{"event":"message""#), "{line}");
        let canary = serde_json::to_string(&Event::Canary {
            step: 2,
            steps: 5,
            weight: 20,
            state: berth_types::canary::CanaryState::Paused,
            message: String::new(),
        })
        .unwrap();
        assert!(canary.starts_with(r#"{"event":"canary""#), "{canary}");
    }
}
