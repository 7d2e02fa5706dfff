-- berth-store schema, version 2 (PostgreSQL): runs may be `awaiting_approval` (a run into a
-- protected environment, held until a deployer approves it).
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check CHECK (state IN ('queued',
    'awaiting_approval', 'running', 'succeeded', 'failed', 'rolled_back', 'cancelled',
    'superseded', 'interrupted'));
