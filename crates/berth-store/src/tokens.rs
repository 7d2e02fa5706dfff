//! API tokens. Only the SHA-256 of a token is stored; the plaintext leaves
//! [`Store::create_token`] once, inside a [`Secret`], and is never logged or kept.

use berth_types::Secret;
use sha2::{Digest, Sha256};

use crate::error::{StoreError, query};
use crate::model::{Role, TokenInfo};
use crate::{Store, now, parse_opt_ts, parse_ts, ts_text, with_pool};

/// Every token starts with this, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "berth_";

/// How exactly [`TokenInfo::last_used_at`] follows use.
pub const LAST_USED_GRANULARITY: std::time::Duration = std::time::Duration::from_secs(60);

type TokenRow = (String, String, String, Option<String>);

fn token_from_row((name, role, created, used): TokenRow) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        role: role.parse().map_err(|e| StoreError::Corrupt {
            what: "a token role",
            detail: format!("token {name:?}: {e}"),
        })?,
        name,
        created_at: parse_ts(&created)?,
        last_used_at: parse_opt_ts(used)?,
    })
}

pub(crate) fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Store {
    /// Creates a token named `name` (unique; 1-64 of `A-Z a-z 0-9 - _ .`) with `role`, and
    /// returns its plaintext — the only time it is available: `berth_` and 64 hex digits
    /// (256 random bits).
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
    ) -> Result<(TokenInfo, Secret), StoreError> {
        if !valid_name(name) {
            return Err(StoreError::InvalidTokenName { name: name.into() });
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Random(e.to_string()))?;
        let token = Secret::new(format!("{TOKEN_PREFIX}{}", hex(&raw)));
        let created = now();
        let inserted = with_pool!(self, write, p => sqlx::query(
            "INSERT INTO api_tokens (name, token_sha256, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(sha256_hex(token.expose()))
        .bind(role.as_str())
        .bind(ts_text(created))
        .execute(p)
        .await
        .map(|done| done.rows_affected()));
        match inserted {
            Ok(_) => Ok((
                TokenInfo {
                    name: name.into(),
                    role,
                    created_at: created,
                    last_used_at: None,
                },
                token,
            )),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::TokenExists { name: name.into() })
            }
            Err(source) => Err(StoreError::Query {
                op: "creating an API token",
                source,
            }),
        }
    }

    /// The token `presented` (as sent by a client), if it exists; records that it was used.
    ///
    /// `last_used_at` is kept to the minute ([`LAST_USED_GRANULARITY`]): a token used again
    /// within a minute is only read, so API requests do not queue behind event writes for the
    /// one SQLite writer.
    pub async fn token(&self, presented: &str) -> Result<Option<TokenInfo>, StoreError> {
        if !presented.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = sha256_hex(presented);
        let row: Option<TokenRow> = with_pool!(self, read, p => sqlx::query_as(
            "SELECT name, role, created_at, last_used_at FROM api_tokens WHERE token_sha256 = $1",
        )
        .bind(&hash)
        .fetch_optional(p)
        .await
        .map_err(query("checking an API token"))?);
        let Some(info) = row.map(token_from_row).transpose()? else {
            return Ok(None);
        };
        let at = now();
        let fresh = info.last_used_at.is_some_and(|used| {
            at.duration_since(used).as_secs() < LAST_USED_GRANULARITY.as_secs() as i64
        });
        if fresh {
            return Ok(Some(info));
        }
        // Revoked in the meantime: the UPDATE finds nothing and the token is refused.
        let row: Option<TokenRow> = with_pool!(self, write, p => sqlx::query_as(
            "UPDATE api_tokens SET last_used_at = $2 WHERE token_sha256 = $1 \
             RETURNING name, role, created_at, last_used_at",
        )
        .bind(&hash)
        .bind(ts_text(at))
        .fetch_optional(p)
        .await
        .map_err(query("recording the use of an API token"))?);
        row.map(token_from_row).transpose()
    }

    /// Every token, by name.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows: Vec<TokenRow> = with_pool!(self, read, p => sqlx::query_as(
            "SELECT name, role, created_at, last_used_at FROM api_tokens ORDER BY name",
        )
        .fetch_all(p)
        .await
        .map_err(query("listing API tokens"))?);
        rows.into_iter().map(token_from_row).collect()
    }

    /// Deletes the token named `name`; `false` if there was none. It stops working at once.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, write, p => sqlx::query("DELETE FROM api_tokens WHERE name = $1")
            .bind(name)
            .execute(p)
            .await
            .map_err(query("revoking an API token"))?
            .rows_affected());
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_names_are_short_and_plain() {
        assert!(valid_name("ci-deployer_1.prod"));
        for bad in ["", "a b", "ünï", &"x".repeat(65), "a/b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
