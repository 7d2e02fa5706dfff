//! Sign-in sessions of the web UI, kept apart from API tokens.
//!
//! Signing in with a token opens a session: a fresh random 256-bit id goes to the browser (in
//! a cookie); the store keeps only its SHA-256, the token it acts for, and when it was opened
//! and last used. A session ends when it is deleted (sign-out), when its token is revoked
//! (the row goes with it), when it was idle too long, or at its absolute expiry — so a cookie
//! lifted from a browser is worth far less than the long-lived API token, and is dead after
//! sign-out.

use std::time::Duration;

use berth_types::Secret;
use jiff::Timestamp;

use crate::error::{StoreError, query};
use crate::model::{Session, TokenInfo};
use crate::tokens::{hex, sha256_hex};
use crate::{Store, now, parse_opt_ts, parse_ts, ts_text, with_pool};

/// How exactly [`Session::last_seen_at`] follows use: a session used again within this long is
/// only read, so page views do not queue behind event writes for the one SQLite writer.
pub const SESSION_SEEN_GRANULARITY: Duration = Duration::from_secs(60);

/// created, last seen, expires; the token's name, role, created, last used.
type SessionRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
);

const SELECT: &str = "SELECT s.created_at, s.last_seen_at, s.expires_at, \
     t.name, t.role, t.created_at, t.last_used_at \
     FROM sessions s JOIN api_tokens t ON t.name = s.token_name WHERE s.id_sha256 = $1";

fn session_from_row(
    (created, seen, expires, name, role, token_created, token_used): SessionRow,
) -> Result<Session, StoreError> {
    Ok(Session {
        token: TokenInfo {
            role: role.parse().map_err(|e| StoreError::Corrupt {
                what: "a token role",
                detail: format!("token {name:?}: {e}"),
            })?,
            name,
            created_at: parse_ts(&token_created)?,
            last_used_at: parse_opt_ts(token_used)?,
        },
        created_at: parse_ts(&created)?,
        last_seen_at: parse_ts(&seen)?,
        expires_at: parse_ts(&expires)?,
    })
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_add(span).unwrap_or(Timestamp::MAX)
}

fn before(t: Timestamp, d: Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_sub(span).unwrap_or(Timestamp::MIN)
}

impl Store {
    /// Opens a session for the token named `token_name`, valid for at most `max_age`; returns
    /// the session id — the only time it is available (64 hex digits, 256 random bits) — or
    /// `None` when no such token exists (revoked in the meantime).
    pub async fn create_session(
        &self,
        token_name: &str,
        max_age: Duration,
    ) -> Result<Option<(Session, Secret)>, StoreError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Random(e.to_string()))?;
        let id = Secret::new(hex(&raw));
        let created = now();
        let expires = after(created, max_age);
        // INSERT ... SELECT: a token revoked between its check and here opens nothing.
        let inserted = with_pool!(self, write, p => sqlx::query(
            "INSERT INTO sessions (id_sha256, token_name, created_at, last_seen_at, expires_at) \
             SELECT $1, name, $3, $3, $4 FROM api_tokens WHERE name = $2",
        )
        .bind(sha256_hex(id.expose()))
        .bind(token_name)
        .bind(ts_text(created))
        .bind(ts_text(expires))
        .execute(p)
        .await
        .map_err(query("opening a session"))?
        .rows_affected());
        if inserted == 0 {
            return Ok(None);
        }
        Ok(self
            .session(id.expose(), max_age)
            .await?
            .map(|session| (session, id)))
    }

    /// The session whose id is `presented` (as sent by a browser), if it exists, has not
    /// expired and was used within `idle`; records that it was used. An expired session is
    /// deleted.
    pub async fn session(
        &self,
        presented: &str,
        idle: Duration,
    ) -> Result<Option<Session>, StoreError> {
        if presented.len() != 64 || !presented.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let hash = sha256_hex(presented);
        let row: Option<SessionRow> = with_pool!(self, read, p => sqlx::query_as(SELECT)
        .bind(&hash)
        .fetch_optional(p)
        .await
        .map_err(query("checking a session"))?);
        let Some(session) = row.map(session_from_row).transpose()? else {
            return Ok(None);
        };
        let at = now();
        if at >= session.expires_at || at >= after(session.last_seen_at, idle) {
            self.delete_session(presented).await?;
            return Ok(None);
        }
        if at.duration_since(session.last_seen_at).as_secs()
            < SESSION_SEEN_GRANULARITY.as_secs() as i64
        {
            return Ok(Some(session));
        }
        // Deleted (signed out, token revoked) in the meantime: the UPDATE finds nothing.
        let n = with_pool!(self, write, p => sqlx::query(
            "UPDATE sessions SET last_seen_at = $2 WHERE id_sha256 = $1",
        )
        .bind(&hash)
        .bind(ts_text(at))
        .execute(p)
        .await
        .map_err(query("recording the use of a session"))?
        .rows_affected());
        Ok((n > 0).then_some(Session {
            last_seen_at: at,
            ..session
        }))
    }

    /// Ends the session whose id is `presented`; `false` if there was none. Its cookie is
    /// refused from then on.
    pub async fn delete_session(&self, presented: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, write, p => sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1")
            .bind(sha256_hex(presented))
            .execute(p)
            .await
            .map_err(query("ending a session"))?
            .rows_affected());
        Ok(n > 0)
    }

    /// Deletes every session past its expiry or idle longer than `idle`; returns how many.
    pub async fn purge_sessions(&self, idle: Duration) -> Result<u64, StoreError> {
        let at = now();
        let n = with_pool!(self, write, p => sqlx::query(
            "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2",
        )
        .bind(ts_text(at))
        .bind(ts_text(before(at, idle)))
        .execute(p)
        .await
        .map_err(query("removing expired sessions"))?
        .rows_affected());
        Ok(n)
    }
}
