-- 0002: a claim of a queue row is counted before the stage runs, in a
-- transaction of its own, so that a stage that kills its process or its
-- database session still uses up an attempt and its message reaches the
-- shunt queue (see engine/runner.c).

ALTER TABLE quire.queue
	ADD COLUMN crashes integer NOT NULL DEFAULT 0,
	ADD COLUMN claim_token bigint,
	ADD COLUMN claimed_by text,
	ADD COLUMN claimed_pid integer,
	ADD COLUMN claimed_until timestamptz;

COMMENT ON COLUMN quire.queue.attempts IS
    'tries so far, each counted when the row is claimed (before the '
    'stage runs, so a try that crashed counts too); at the limit the row '
    'goes to stage shunt';
COMMENT ON COLUMN quire.queue.crashes IS
    'tries that ended with neither a commit nor a recorded failure: the '
    'runner died or lost its database session while on this row';
COMMENT ON COLUMN quire.queue.claim_token IS
    'set by a claim, cleared when the try ends in a recorded failure; a '
    'row still carrying one after its claim ran out was being worked '
    'when its runner died';
COMMENT ON COLUMN quire.queue.claimed_by IS
    'application_name of the runner that claimed the row last';
COMMENT ON COLUMN quire.queue.claimed_pid IS
    'server pid of the claiming session: once that session is gone the '
    'claim is void at once, without waiting for claimed_until';
COMMENT ON COLUMN quire.queue.claimed_until IS
    'no other runner claims the row before this while the claiming '
    'session lives; after a crash seen only by its lease (a pooler kept '
    'the session, or the pid was reused) it is when the row is tried '
    'again';
