-- berth-store schema, version 2 (SQLite): runs may be `awaiting_approval` (a run into a
-- protected environment, held until a deployer approves it). SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt with its rows, ids and indexes. Foreign keys
-- into `runs` (run_events, delivery_runs, superseded_by) are deferred to the commit, by which
-- time every referenced id exists again; the id sequence continues from the copied rows.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE runs_v1_copy AS SELECT * FROM runs;
DROP TABLE runs;
CREATE TABLE runs (
    id            @ID@,
    repository    TEXT NOT NULL,
    branch        TEXT NOT NULL,
    commit_id     TEXT NOT NULL,
    environment   TEXT NOT NULL,
    trigger_info  TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'awaiting_approval', 'running',
                      'succeeded', 'failed', 'rolled_back', 'cancelled', 'superseded',
                      'interrupted')),
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    note          TEXT,
    result        TEXT,
    superseded_by BIGINT REFERENCES runs (id),
    last_seq      BIGINT NOT NULL DEFAULT 0
);
INSERT INTO runs (id, repository, branch, commit_id, environment, trigger_info, state,
    created_at, started_at, finished_at, note, result, superseded_by, last_seq)
    SELECT id, repository, branch, commit_id, environment, trigger_info, state,
    created_at, started_at, finished_at, note, result, superseded_by, last_seq
    FROM runs_v1_copy ORDER BY id;
DROP TABLE runs_v1_copy;
CREATE INDEX runs_by_state ON runs (state, id);
CREATE INDEX runs_by_target ON runs (repository, branch, environment, state, id);
CREATE INDEX runs_by_environment ON runs (environment, id);
