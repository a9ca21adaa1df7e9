-- The outgoing ledger: claiming copies under a lease, and recording what
-- the relay said.

DROP FUNCTION IF EXISTS quire.delivery_claim(uuid, interval, text);

-- What a restart, a crash restart or a promotion of the server makes
-- anew: its start time, the statistics' reset (a crash restart keeps
-- the start time) and the WAL timeline (pg_walfile_name names it first).
DROP FUNCTION IF EXISTS quire.server_epoch_key();
CREATE FUNCTION quire.server_epoch_key(OUT started timestamptz,
    OUT timeline text, OUT stats_reset timestamptz)
LANGUAGE sql AS $$
	SELECT pg_postmaster_start_time(),
	       substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8),
	       coalesce((SELECT b.stats_reset FROM pg_stat_bgwriter b),
			'-infinity')
$$;

-- The grace after the server came back (its first claim since it
-- started, crashed or was promoted): until grace_until, 10 seconds on
-- (the lease, if shorter), a lease that ran out while nobody could renew
-- it is left to its own runner, which renews it first thing when it is
-- back (it reconnects at most a second apart).  Spared are the leases
-- that ran out at most one lease (the caller's) before seen_at, or
-- since: one that ran out long before was free before the server went,
-- so restarts cannot hold it for ever.  A lease granted since seen_at
-- runs out after grace_until unless it is shorter than 10 seconds.
-- XXX A live runner that needs more than 10 seconds to get back (a
-- silent first host in its conninfo) still loses its batch in flight.
DROP FUNCTION IF EXISTS quire.server_epoch_grace(interval);
CREATE FUNCTION quire.server_epoch_grace(lease interval,
    OUT spared_from timestamptz, OUT grace_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
	k	record;
	seen	timestamptz;
BEGIN
	k := quire.server_epoch_key();
	LOOP
		SELECT x.seen_at, x.grace_until INTO seen, grace_until
		  FROM quire.server_epoch x
		 WHERE (x.started, x.timeline, x.stats_reset) =
		       (k.started, k.timeline, k.stats_reset);
		EXIT WHEN FOUND;
		-- The first claim since: this row, or a concurrent one's.
		DELETE FROM quire.server_epoch;
		INSERT INTO quire.server_epoch (started, timeline, stats_reset,
		    grace_until)
		VALUES (k.started, k.timeline, k.stats_reset,
		    now() + least(lease, interval '10 seconds'))
		ON CONFLICT DO NOTHING;
	END LOOP;
	spared_from := seen - lease;
END
$$;
COMMENT ON FUNCTION quire.server_epoch_grace(interval) IS
    'the grace after the server started, crashed or was promoted: until '
    'grace_until (10 s, or the lease if shorter) no lease that ran out at '
    'or after spared_from (one lease before) is taken over';
-- A leased copy another runner may take: its lease ran out, it is not
-- one of the caller's batches in flight (keep: a statement of the
-- caller's that waited longer than the lease must not hand them back to
-- it), and the grace after a restart does not spare it.  Inlined by the
-- planner, so the lease_until index still serves.
CREATE OR REPLACE FUNCTION quire.lease_free(lease_until timestamptz,
    lease_token uuid, keep uuid[], spared_from timestamptz,
    grace_until timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
	SELECT lease_until < now() AND lease_token <> ALL (keep)
	   AND (grace_until <= now() OR lease_until < spared_from)
$$;
COMMENT ON FUNCTION quire.lease_free(timestamptz, uuid, uuid[],
    timestamptz, timestamptz) IS
    'a leased copy another runner may take: run out, not the caller''s '
    '(keep), not spared by the grace after a restart';

CREATE OR REPLACE FUNCTION quire.delivery_claim(token uuid, lease interval,
    runner text, keep uuid[] DEFAULT '{}')
RETURNS TABLE (id bigint, post_id bigint, email text, verp boolean,
    attempts integer)
LANGUAGE plpgsql AS $$
DECLARE
	pid	bigint;
	lim	integer;
	alone	boolean;
	g	record;		-- the grace after a restart
BEGIN
	-- One post a batch: its copies share one message body.  Copies
	-- whose runner died or lost its database mid-send come first:
	-- they have waited a whole lease already, and behind a backlog
	-- that the relay cannot keep up with they would wait on.
	g := quire.server_epoch_grace(lease);
	SELECT d.post_id INTO pid FROM quire.delivery d
	 WHERE d.state = 'leased' AND quire.lease_free(d.lease_until,
	       d.lease_token, keep, g.spared_from, g.grace_until)
	 ORDER BY d.lease_until LIMIT 1 FOR UPDATE SKIP LOCKED;
	IF pid IS NULL THEN
		SELECT d.post_id INTO pid FROM quire.delivery d
		 WHERE d.state = 'queued' AND d.not_before <= now()
		 ORDER BY d.not_before LIMIT 1 FOR UPDATE SKIP LOCKED;
	END IF;
	IF pid IS NULL THEN
		RETURN;
	END IF;
	-- A VERP batch is one SMTP transaction a recipient, each carrying
	-- the whole message, so it is kept smaller.  All copies of a post
	-- share the verp flag.
	SELECT CASE WHEN bool_or(d.verp) THEN least(l.max_recipients, 50)
		    ELSE l.max_recipients END INTO lim
	  FROM quire.post p JOIN quire.list l ON l.id = p.list_id
	  JOIN LATERAL (SELECT x.verp FROM quire.delivery x
			 WHERE x.post_id = p.id LIMIT 1) d ON true
	 WHERE p.id = pid GROUP BY l.max_recipients;
	-- A copy the relay answered 421, closing the connection, goes
	-- alone, after the others: with them, it would fail the same
	-- innocent copies every time.  Other deferred copies go after the
	-- rest of their batch.
	alone := NOT EXISTS (SELECT 1 FROM quire.delivery d
	     WHERE d.post_id = pid AND coalesce(d.last_code, 0) <> 421
	       AND ((d.state = 'queued' AND d.not_before <= now())
		 OR (d.state = 'leased' AND quire.lease_free(d.lease_until,
		     d.lease_token, keep, g.spared_from, g.grace_until))));
	RETURN QUERY
	WITH batch AS (
		SELECT d.id FROM quire.delivery d
		 WHERE d.post_id = pid
		   AND (coalesce(d.last_code, 0) = 421) = alone
		   AND ((d.state = 'queued' AND d.not_before <= now())
		     OR (d.state = 'leased' AND quire.lease_free(
			 d.lease_until, d.lease_token, keep, g.spared_from,
			 g.grace_until)))
		 ORDER BY coalesce(d.last_code, 0) >= 400, d.domain, d.id
		 LIMIT CASE WHEN alone THEN 1 ELSE coalesce(lim, 500) END
		 FOR UPDATE SKIP LOCKED)
	UPDATE quire.delivery d
	   SET state = 'leased', lease_token = token,
	       lease_until = now() + lease, leased_by = runner,
	       attempts = d.attempts + 1
	  FROM batch WHERE d.id = batch.id
	RETURNING d.id, d.post_id, d.email, d.verp, d.attempts;
END
$$;
COMMENT ON FUNCTION quire.delivery_claim(uuid, interval, text, uuid[]) IS
    'lease up to the list''s max_recipients due copies of one post, '
    'ordered by domain, deferred ones last (one alone if the relay '
    'answered it 421), leaving out the caller''s own batches in flight '
    '(keep), and leases that ran out while the server was away until '
    'their runners have had 10 s to come back (server_epoch_grace)';

CREATE OR REPLACE FUNCTION quire.delivery_record(token uuid, ids bigint[],
    codes integer[], replies text[], runner text, retry_base interval,
    retry_max interval, give_up interval,
    OUT sent integer, OUT deferred integer, OUT bounced integer,
    OUT expired integer, OUT stale integer)
LANGUAGE plpgsql AS $$
-- plpgsql, not sql: its plan is cached per session, where a sql function
-- is planned again on every call.
BEGIN
	WITH r AS (
		SELECT * FROM unnest(ids, codes, replies) AS x(id, code, reply)),
	mine AS (
		SELECT d.id, d.post_id, d.email, d.attempts, d.verp, r.code,
		       r.reply,
		       CASE WHEN r.code BETWEEN 200 AND 299 THEN 'sent'
			    WHEN r.code >= 500 AND r.code <> 552 THEN 'bounced'
			    WHEN now() - d.created_at > give_up THEN 'expired'
			    ELSE 'deferred' END AS outcome
		  FROM quire.delivery d JOIN r USING (id)
		 WHERE d.lease_token = token),
	logged AS (
		INSERT INTO quire.delivery_log (delivery_id, post_id, email,
		    outcome, code, reply, attempt, verp, runner, lease_token)
		SELECT m.id, m.post_id, m.email, m.outcome, m.code, m.reply,
		       m.attempts, m.verp, runner, token
		  FROM mine m
		RETURNING 1),
	bounce AS (
		INSERT INTO quire.bounce_event (list_id, email, post_id, code,
		    reply)
		SELECT p.list_id, m.email, m.post_id, m.code, m.reply
		  FROM mine m JOIN quire.post p ON p.id = m.post_id
		 WHERE m.outcome = 'bounced'
		RETURNING 1),
	gone AS (
		DELETE FROM quire.delivery d USING mine m
		 WHERE d.id = m.id AND d.lease_token = token
		   AND m.outcome <> 'deferred'
		RETURNING 1),
	later AS (
		UPDATE quire.delivery d
		   SET state = 'queued', lease_token = NULL, lease_until = NULL,
		       leased_by = NULL, last_code = m.code, last_reply = m.reply,
		       not_before = now() + least(retry_max,
			   retry_base * power(2, least(m.attempts - 1, 20)))
		  FROM mine m
		 WHERE d.id = m.id AND d.lease_token = token
		   AND m.outcome = 'deferred'
		RETURNING 1)
	SELECT count(*) FILTER (WHERE outcome = 'sent')::integer,
	       count(*) FILTER (WHERE outcome = 'deferred')::integer,
	       count(*) FILTER (WHERE outcome = 'bounced')::integer,
	       count(*) FILTER (WHERE outcome = 'expired')::integer,
	       (coalesce(array_length(ids, 1), 0) - count(*))::integer
	  INTO sent, deferred, bounced, expired, stale
	  FROM mine;
END
$$;
COMMENT ON FUNCTION quire.delivery_record(uuid, bigint[], integer[], text[],
    text, interval, interval, interval) IS
    'record the relay''s answer for each leased copy: 2xx sent, 5xx '
    '(but 552) a bounce event, anything else retried with backoff until '
    'give_up has passed since the copy was queued.  Copies whose lease '
    'was taken over are left alone and counted as stale';

CREATE OR REPLACE FUNCTION quire.delivery_next_due()
RETURNS double precision LANGUAGE plpgsql STABLE AS $$
DECLARE
	lease_end	timestamptz;
	spared_from	timestamptz;
	grace_until	timestamptz;
BEGIN
	-- A lease the grace after a restart spares is free when it ends;
	-- which it spares depends on the claimer's lease, unknown here, so
	-- any that runs out before the end wakes the worker then.
	SELECT '-infinity'::timestamptz, x.grace_until
	  INTO spared_from, grace_until
	  FROM quire.server_epoch x, quire.server_epoch_key() k
	 WHERE (x.started, x.timeline, x.stats_reset) =
	       (k.started, k.timeline, k.stats_reset);
	SELECT min(CASE WHEN d.lease_until >= spared_from
			 AND d.lease_until < grace_until
			THEN grace_until ELSE d.lease_until END)
	  INTO lease_end FROM quire.delivery d
	 WHERE d.state = 'leased';
	RETURN extract(epoch FROM least(
	    (SELECT min(d.not_before) FROM quire.delivery d
	      WHERE d.state = 'queued'),
	    lease_end) - now());
END
$$;
COMMENT ON FUNCTION quire.delivery_next_due() IS
    'seconds until the next copy is due or lease expires (negative: '
    'now), NULL if there is none';

-- Monthly partitions of the delivery log, this month and the next two;
-- migrate runs this every time.
CREATE OR REPLACE FUNCTION quire.delivery_log_partitions()
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	m	date;
	name	text;
BEGIN
	FOR i IN 0 .. 2 LOOP
		m := date_trunc('month', now())::date + make_interval(months => i);
		name := 'delivery_log_' || to_char(m, 'YYYYMM');
		IF to_regclass('quire.' || name) IS NULL AND NOT EXISTS (
		    SELECT 1 FROM quire.delivery_log_default l
		     WHERE l.finished_at >= m
		       AND l.finished_at < m + interval '1 month') THEN
			EXECUTE format('CREATE TABLE quire.%I PARTITION OF '
			    'quire.delivery_log FOR VALUES FROM (%L) TO (%L)',
			    name, m, m + interval '1 month');
		END IF;
	END LOOP;
END
$$;
SELECT quire.delivery_log_partitions();
