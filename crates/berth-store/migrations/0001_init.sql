-- berth-store schema, version 1. One text for SQLite and PostgreSQL: @ID@ becomes the
-- backend's auto-increment primary key, everything else is common SQL. Timestamps are RFC 3339
-- UTC text with microseconds (fixed width, so text order is time order); JSON is text.

CREATE TABLE runs (
    id            @ID@,
    repository    TEXT NOT NULL,
    branch        TEXT NOT NULL,
    commit_id     TEXT NOT NULL,
    environment   TEXT NOT NULL,
    trigger_info  TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed',
                      'rolled_back', 'cancelled', 'superseded', 'interrupted')),
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    note          TEXT,
    result        TEXT,
    superseded_by BIGINT REFERENCES runs (id),
    last_seq      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_state ON runs (state, id);
CREATE INDEX runs_by_target ON runs (repository, branch, environment, state, id);
CREATE INDEX runs_by_environment ON runs (environment, id);

CREATE TABLE run_events (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    seq    BIGINT NOT NULL,
    at     TEXT NOT NULL,
    event  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE deliveries (
    provider    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);

CREATE TABLE delivery_runs (
    provider    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    run_id      BIGINT NOT NULL REFERENCES runs (id),
    PRIMARY KEY (provider, delivery_id, run_id),
    FOREIGN KEY (provider, delivery_id) REFERENCES deliveries (provider, delivery_id)
);

CREATE TABLE api_tokens (
    name         TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'deployer', 'admin')),
    created_at   TEXT NOT NULL,
    last_used_at TEXT
);

CREATE TABLE last_seen (
    repository TEXT NOT NULL,
    branch     TEXT NOT NULL,
    commit_id  TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (repository, branch)
);
