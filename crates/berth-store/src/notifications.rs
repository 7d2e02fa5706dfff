//! The outbox of run notifications: a run writes each message here before it is sent, and
//! the server's sender delivers what is due, with retries, across restarts of the server.
//!
//! A row holds the message's body and the names of the server's variables with the
//! receiver's URL and signing key, never their values: a URL can hold a token (Slack's is
//! one), and the database is not where secrets live. One row per delivery id
//! (`RUN.EVENT.N`): a message written twice is kept once.

use jiff::Timestamp;

use crate::error::{StoreError, query};
use crate::{Store, now, parse_ts, ts_text, with_pool};

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    /// `RUN.EVENT.N`, the `X-Berth-Delivery` header: unique.
    pub delivery: String,
    /// The run's id.
    pub run: String,
    /// The receiver, for messages (`webhook $VAR`).
    pub receiver: String,
    /// The server's variable holding the URL.
    pub url_env: String,
    /// The server's variable holding the HMAC key, if the message is signed.
    pub key_env: Option<String>,
    /// The event (`started`...).
    pub event: String,
    /// The exact JSON body.
    pub body: String,
}

/// A message whose next attempt is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueNotification {
    /// The row.
    pub id: i64,
    /// What was written.
    pub message: NewNotification,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was written.
    pub created_at: Timestamp,
}

/// Where a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationState {
    /// Not delivered yet; tried again at its next time.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: a final answer, or out of attempts.
    Failed,
}

impl NotificationState {
    fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Delivered => "delivered",
            NotificationState::Failed => "failed",
        }
    }
}

type DueRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    String,
);

impl Store {
    /// Writes `n` to the outbox, due at once; `false` when its delivery id is there already.
    pub async fn enqueue_notification(&self, n: &NewNotification) -> Result<bool, StoreError> {
        let at = ts_text(now());
        let added = with_pool!(self, write, p => sqlx::query(
            "INSERT INTO notifications (delivery, run_id, receiver, url_env, key_env, event, body, \
             state, attempts, next_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) \
             ON CONFLICT (delivery) DO NOTHING",
        )
        .bind(&n.delivery)
        .bind(&n.run)
        .bind(&n.receiver)
        .bind(&n.url_env)
        .bind(&n.key_env)
        .bind(&n.event)
        .bind(&n.body)
        .bind(&at)
        .execute(p)
        .await
        .map(|done| done.rows_affected()))
        .map_err(query("writing a notification"))?;
        Ok(added == 1)
    }

    /// Pending messages whose next attempt is due, oldest first, at most `limit`: of one
    /// run's messages to one receiver only the oldest pending one, so that a receiver gets a
    /// run's events in the order they happened (`started` before `succeeded`).
    pub async fn due_notifications(&self, limit: u32) -> Result<Vec<DueNotification>, StoreError> {
        let rows: Vec<DueRow> = with_pool!(self, read, p => sqlx::query_as(
            "SELECT n.id, n.delivery, n.run_id, n.receiver, n.url_env, n.key_env, n.event, \
             n.body, n.attempts, n.created_at FROM notifications n \
             WHERE n.state = 'pending' AND n.next_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM notifications o WHERE o.state = 'pending' \
               AND o.run_id = n.run_id AND o.url_env = n.url_env AND o.id < n.id) \
             ORDER BY n.id LIMIT $2",
        )
        .bind(ts_text(now()))
        .bind(i64::from(limit))
        .fetch_all(p)
        .await
        .map_err(query("reading due notifications"))?);
        rows.into_iter()
            .map(
                |(
                    id,
                    delivery,
                    run,
                    receiver,
                    url_env,
                    key_env,
                    event,
                    body,
                    attempts,
                    created,
                )| {
                    Ok(DueNotification {
                        id,
                        message: NewNotification {
                            delivery,
                            run,
                            receiver,
                            url_env,
                            key_env,
                            event,
                            body,
                        },
                        attempts: attempts.max(0) as u32,
                        created_at: parse_ts(&created)?,
                    })
                },
            )
            .collect()
    }

    /// Records an attempt of message `id`: it now stands at `state` (`Pending`: tried again
    /// at `next`), with `error` when it failed.
    pub async fn notification_attempted(
        &self,
        id: i64,
        state: NotificationState,
        next: Timestamp,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        with_pool!(self, write, p => sqlx::query(
            "UPDATE notifications SET state = $2, attempts = attempts + 1, next_at = $3, \
             last_error = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(ts_text(next))
        .bind(error)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(query("recording a notification's attempt"))?;
        Ok(())
    }

    /// How many messages stand at `state` (for tests and the doctor).
    pub async fn count_notifications(&self, state: NotificationState) -> Result<u64, StoreError> {
        let (n,): (i64,) = with_pool!(self, read, p => sqlx::query_as(
            "SELECT COUNT(*) FROM notifications WHERE state = $1",
        )
        .bind(state.as_str())
        .fetch_one(p)
        .await
        .map_err(query("counting notifications"))?);
        Ok(n.max(0) as u64)
    }
}
