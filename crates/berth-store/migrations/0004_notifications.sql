-- berth-store schema, version 4: the outbox of run notifications. A run writes each message
-- here before it is sent; the server's sender delivers it with retries, across restarts.
-- The receiver's URL and signing key are not stored: only the names of the server's
-- variables that hold them, read again at each attempt.

CREATE TABLE notifications (
    id          @ID@,
    delivery    TEXT NOT NULL UNIQUE,
    run_id      TEXT NOT NULL,
    receiver    TEXT NOT NULL,
    url_env     TEXT NOT NULL,
    key_env     TEXT,
    event       TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    next_at     TEXT NOT NULL,
    last_error  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX notifications_due ON notifications (state, next_at)
