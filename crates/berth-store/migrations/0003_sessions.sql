-- berth-store schema, version 2: sign-in sessions of the web UI, apart from API tokens.
-- A session acts for the token it was opened with (its role is read through the join, so a
-- changed or revoked token changes or ends its sessions at once); only the SHA-256 of the
-- session id is stored, like tokens.

CREATE TABLE sessions (
    id_sha256    TEXT PRIMARY KEY,
    token_name   TEXT NOT NULL REFERENCES api_tokens (name) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX sessions_by_token ON sessions (token_name);
CREATE INDEX sessions_by_expiry ON sessions (expires_at)
