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
DROP TRIGGER IF EXISTS queue_notify_update ON quire.queue;
CREATE TRIGGER queue_notify_update AFTER UPDATE ON quire.queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quire.queue_notify();

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

-- A stage failed on a row: count it, push it back, or shunt it.
CREATE OR REPLACE FUNCTION quire.queue_fail(queue_id bigint, error text,
    max_attempts integer, backoff interval)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	q	quire.queue;
BEGIN
	UPDATE quire.queue SET attempts = attempts + 1, last_error = error
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

-- Seconds until the earliest future row of the given stages, or NULL.
CREATE OR REPLACE FUNCTION quire.queue_next_due(stages text[])
RETURNS double precision LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT extract(epoch FROM min(q.not_before) - now())
		  FROM quire.queue q
		 WHERE q.stage = ANY (stages) AND q.not_before > now());
END
$$;

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
