-- Stage bookkeeping: wake-ups, failures, the shunt queue.

-- One notification per stage per statement, with no payload: a runner
-- only needs to know that its stage has work.  It is sent at COMMIT.
CREATE OR REPLACE FUNCTION quire.queue_notify()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('quire_' || s.stage, '')
	   FROM (SELECT DISTINCT n.stage FROM new_rows n
		  WHERE n.stage <> 'shunt') s;
	RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS queue_notify_insert ON quire.queue;
CREATE TRIGGER queue_notify_insert AFTER INSERT ON quire.queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quire.queue_notify();
-- An update wakes the row's stage only when it hands the row back (a
-- failure recorded, a claim released, a retry): a claim, which only
-- marks the row, must not wake every runner of its stage.  Per row, so
-- that WHEN can look at the row; pg_notify folds the repeats of a
-- transaction into one.
CREATE OR REPLACE FUNCTION quire.queue_notify_row()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('quire_' || NEW.stage, '');
	RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS queue_notify_update ON quire.queue;
CREATE TRIGGER queue_notify_update AFTER UPDATE ON quire.queue
    FOR EACH ROW WHEN (NEW.stage <> 'shunt' AND NEW.claim_token IS NULL)
    EXECUTE FUNCTION quire.queue_notify_row();

CREATE OR REPLACE FUNCTION quire.delivery_notify()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('quire_out', '');
	RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS delivery_notify_insert ON quire.delivery;
CREATE TRIGGER delivery_notify_insert AFTER INSERT ON quire.delivery
    FOR EACH STATEMENT EXECUTE FUNCTION quire.delivery_notify();

-- A claim still holds its row: its lease runs and the session that made
-- it lives.  (A claim whose session is gone is void at once.)
CREATE OR REPLACE FUNCTION quire.queue_claim_live(claimed_until timestamptz,
    claimed_pid integer)
RETURNS boolean LANGUAGE sql STABLE AS $$
	SELECT claimed_until > now() AND EXISTS (SELECT 1
	    FROM pg_catalog.pg_stat_get_activity(claimed_pid))
$$;
COMMENT ON FUNCTION quire.queue_claim_live(timestamptz, integer) IS
    'true while a queue row''s claim holds it: its lease runs and its '
    'claiming session lives';

-- Claim up to n due rows of a stage for one batch, in a transaction of
-- its own that commits before the stage runs: each claim counts a try,
-- so a try that kills its runner or its session is counted too.  The
-- claim marks the rows with the batch's token and holds them for
-- `lease', long enough for the batch's own transaction to lock them (in
-- the same round trip); other runners skip them meanwhile.
--
-- A row that still carries a token once its lease has run out was being
-- worked when its runner died: that is a crash.  Such a row is tried
-- again alone, so that the rows that were in the same batch are not
-- blamed for it twice, the fewest crashes first, so that they go through
-- before the row that keeps crashing; once its tries are spent it goes
-- to the shunt queue instead of being run.
--
-- Returns a row for each row claimed ('claimed', or 'crashed' for a
-- row tried again after a crash) or shunted ('shunted', with the
-- reason).  The ids claimed are kept in the session setting
-- quire.claimed, where the batch's transaction finds them.
CREATE OR REPLACE FUNCTION quire.queue_claim(stage_name text, n integer,
    token bigint, claimer text, lease interval, max_attempts integer)
RETURNS TABLE (row_id bigint, row_post bigint, row_attempts integer,
    row_crashes integer, outcome text, reason text)
LANGUAGE plpgsql AS $$
BEGIN
	-- One statement: a plan cached once, no loop.  `kept' is read by
	-- every row taken; with none taken it may not run, and the ids
	-- left from an earlier batch (or none) match no row with this
	-- token.
	RETURN QUERY
	WITH due AS (
		SELECT q.id, q.attempts, q.crashes,
		       q.claim_token IS NOT NULL AS crashed
		  FROM quire.queue q
		 WHERE q.stage = stage_name AND q.not_before <= now()
		   AND (q.claimed_until IS NULL OR q.claimed_until <= now()
		     OR NOT EXISTS (SELECT 1
			   FROM pg_catalog.pg_stat_get_activity(q.claimed_pid)))
		 ORDER BY q.id LIMIT n
		   FOR UPDATE SKIP LOCKED),
	suspect AS (
		SELECT d.id FROM due d
		 WHERE d.crashed AND d.attempts < max_attempts
		 ORDER BY d.crashes, d.id LIMIT 1),
	run AS (
		SELECT s.id, true AS crashed FROM suspect s
		UNION ALL
		SELECT d.id, false FROM due d
		 WHERE NOT d.crashed AND NOT EXISTS (SELECT 1 FROM suspect)),
	shunted AS (
		UPDATE quire.queue q
		   SET crashes = q.crashes + 1, failed_stage = q.stage,
		       stage = 'shunt', claim_token = NULL,
		       claimed_until = NULL,
		       last_error = format('stage %s crashed %s (its runner '
			   'died or lost its database session on this '
			   'message)', q.stage, CASE q.crashes WHEN 0 THEN
			   'once' ELSE q.crashes + 1 || ' times' END)
			   || coalesce('; last error: ' || q.last_error, '')
		  FROM due d
		 WHERE q.id = d.id AND d.crashed
		   AND d.attempts >= max_attempts
		RETURNING q.id, q.post_id, q.attempts, q.crashes,
		    q.last_error),
	noted AS (
		UPDATE quire.post p
		   SET status = 'shunted', reason = s.last_error
		  FROM shunted s WHERE p.id = s.post_id),
	taken AS (
		UPDATE quire.queue q
		   SET attempts = q.attempts + 1,
		       crashes = q.crashes + r.crashed::integer,
		       claim_token = token, claimed_by = claimer,
		       claimed_pid = pg_catalog.pg_backend_pid(),
		       claimed_until = now() + lease
		  FROM run r WHERE q.id = r.id
		RETURNING q.id, q.post_id, q.attempts, q.crashes, r.crashed),
	kept AS (
		SELECT set_config('quire.claimed',
		    coalesce(array_agg(t.id), '{}')::text, false)
		  FROM taken t)
	SELECT s.id, s.post_id, s.attempts, s.crashes, 'shunted'::text,
	       s.last_error
	  FROM shunted s
	UNION ALL
	SELECT t.id, t.post_id, t.attempts, t.crashes,
	       CASE WHEN t.crashed THEN 'crashed' ELSE 'claimed' END, NULL
	  FROM taken t, kept;
END
$$;
COMMENT ON FUNCTION quire.queue_claim(text, integer, bigint, text,
    interval, integer) IS
    'count a try of up to n due rows of a stage and hold them for one '
    'runner''s batch; shunt a row whose tries crashed until spent';

-- The rows of a batch that were rolled back for another row's failure
-- are handed back, their try not counted.
CREATE OR REPLACE FUNCTION quire.queue_release(token bigint)
RETURNS void LANGUAGE sql AS $$
	UPDATE quire.queue q
	   SET attempts = q.attempts - 1, claim_token = NULL,
	       claimed_until = NULL
	 WHERE q.id = ANY (nullif(current_setting('quire.claimed', true),
		'')::bigint[])
	   AND q.claim_token = token
$$;
COMMENT ON FUNCTION quire.queue_release(bigint) IS
    'hand back the rows a batch claimed, uncounted (in the claiming '
    'session only)';

-- A stage failed on a row, whose try its claim counted: record why, and
-- push the row back or shunt it.
CREATE OR REPLACE FUNCTION quire.queue_fail(queue_id bigint, error text,
    max_attempts integer, backoff interval)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	q	quire.queue;
BEGIN
	-- A try claimed by quire.queue_claim was counted then; one claimed
	-- without a token (a runner older than the claim) is counted now.
	UPDATE quire.queue
	   SET attempts = attempts + (claim_token IS NULL)::integer,
	       last_error = error, claim_token = NULL, claimed_until = NULL
	 WHERE id = queue_id RETURNING * INTO q;
	IF q.id IS NULL THEN
		RETURN NULL;
	END IF;
	IF q.attempts >= max_attempts THEN
		UPDATE quire.queue SET failed_stage = stage, stage = 'shunt'
		 WHERE id = queue_id;
		UPDATE quire.post SET status = 'shunted', reason = error
		 WHERE id = q.post_id;
		RETURN 'shunt';
	END IF;
	UPDATE quire.queue
	   SET not_before = now() + backoff * power(2, q.attempts - 1)
	 WHERE id = queue_id;
	RETURN q.stage;
END
$$;
COMMENT ON FUNCTION quire.queue_fail(bigint, text, integer, interval) IS
    'record a failed try; at max_attempts the row moves to stage shunt '
    'and its post is marked shunted with the reason';

-- Seconds until a runner of the given stages should look again, or NULL
-- when nothing there waits: the earliest future row (a retry's backoff,
-- or a claim's lease: a crashed row is tried again when its lease runs
-- out), or `recheck' from now when a row is due but the runner asking
-- could not take it, or is claimed by another runner (whose session
-- may end before its lease, which may be longer than this runner's).  Such a row is held by another session: a batch in
-- progress, or the claim or batch of a runner whose host was cut off,
-- which nobody announces when the server ends that session.  Looking
-- again every `recheck' while such rows exist bounds the takeover of a
-- lost host's rows without any wake-up when the queue is empty.
DROP FUNCTION IF EXISTS quire.queue_next_due(text[]);
CREATE OR REPLACE FUNCTION quire.queue_next_due(stages text[],
    recheck interval DEFAULT NULL)
RETURNS double precision LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT extract(epoch FROM min(CASE
		    WHEN q.not_before > now() THEN q.not_before
		    WHEN q.claimed_until > now()
		    THEN least(q.claimed_until, now() + recheck)
		    ELSE now() + recheck END) - now())
		  FROM quire.queue q
		 WHERE q.stage = ANY (stages));
END
$$;
COMMENT ON FUNCTION quire.queue_next_due(text[], interval) IS
    'seconds until a runner of these stages has something to look at: '
    'the next retry or claim expiry, or recheck when a due row is held '
    'by another session; NULL when none of their rows waits';

-- Copies of a deleted post (a list deleted, say) go with it.
CREATE OR REPLACE FUNCTION quire.post_delete_copies()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM quire.delivery d USING old_rows o WHERE d.post_id = o.id;
	RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS post_delete_copies ON quire.post;
CREATE TRIGGER post_delete_copies AFTER DELETE ON quire.post
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quire.post_delete_copies();
