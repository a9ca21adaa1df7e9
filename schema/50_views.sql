-- Views for admins: psql is a console.  Each answers one question.

DROP VIEW IF EXISTS quire.list_settings CASCADE;
CREATE VIEW quire.list_settings AS
SELECT l.*, d.mail_host,
       l.list_name || '@' || d.mail_host AS fqdn_listname,
       l.list_name || '.' || d.mail_host AS list_id_header,
       l.list_name || '@' || d.mail_host AS posting_address,
       l.list_name || '-request@' || d.mail_host AS request_address,
       l.list_name || '-owner@' || d.mail_host AS owner_address,
       l.list_name || '-bounces@' || d.mail_host AS bounces_address,
       l.list_name || '-join@' || d.mail_host AS join_address,
       l.list_name || '-leave@' || d.mail_host AS leave_address,
       'noreply@' || d.mail_host AS no_reply_address
  FROM quire.list l JOIN quire.domain d ON d.id = l.domain_id;
COMMENT ON VIEW quire.list_settings IS
    'every list with its settings and its derived addresses';

DROP VIEW IF EXISTS quire.queue_depth CASCADE;
CREATE VIEW quire.queue_depth AS
SELECT q.stage, count(*) AS rows,
       count(*) FILTER (WHERE q.stage <> 'shunt'
		AND q.not_before <= now() AND NOT coalesce(
		quire.queue_claim_live(q.claimed_until, q.claimed_pid),
		false)) AS due,
       max(now() - q.created_at) AS oldest,
       max(q.attempts) AS most_attempts,
       count(*) FILTER (WHERE quire.queue_claim_live(q.claimed_until,
		q.claimed_pid)) AS in_flight,
       count(*) FILTER (WHERE q.crashes > 0) AS crashed
  FROM quire.queue q GROUP BY q.stage
UNION ALL
SELECT 'out', count(*), count(*) FILTER (WHERE (d.state = 'queued'
		AND d.not_before <= now()) OR (d.state = 'leased'
		AND d.lease_until < now())),
       max(now() - d.created_at), max(d.attempts),
       count(*) FILTER (WHERE d.state = 'leased'
		AND d.lease_until >= now()), NULL
  FROM quire.delivery d HAVING count(*) > 0;
COMMENT ON VIEW quire.queue_depth IS
    'rows waiting per stage (out: copies not yet handed to the relay), '
    'how many are due (a shunted row never is; a copy whose lease ran '
    'out is), the age of the oldest, how many a runner holds now, and '
    'how many had a runner die on them';

DROP VIEW IF EXISTS quire.shunted CASCADE;
CREATE VIEW quire.shunted AS
SELECT q.id AS queue_id, q.post_id, ls.fqdn_listname AS list,
       q.failed_stage, q.attempts, q.crashes, q.last_error, p.sender,
       p.subject, q.created_at, q.claimed_by AS last_claimed_by
  FROM quire.queue q JOIN quire.post p ON p.id = q.post_id
  JOIN quire.list_settings ls ON ls.id = p.list_id
 WHERE q.stage = 'shunt';
COMMENT ON VIEW quire.shunted IS
    'messages a stage failed on too often, with the reason, the tries '
    'and how many of them crashed their runner; '
    'quire.queue_retry(queue_id) sends one back';

DROP VIEW IF EXISTS quire.held CASCADE;
CREATE VIEW quire.held AS
SELECT p.id AS post_id, ls.fqdn_listname AS list, p.sender, p.subject,
       p.reason, p.message_id_header, m.size, p.created_at AS held_since
  FROM quire.post p JOIN quire.message m ON m.id = p.message_id
  JOIN quire.list_settings ls ON ls.id = p.list_id
 WHERE p.status = 'held';
COMMENT ON VIEW quire.held IS
    'posts waiting for a moderator, and why they were held';

DROP VIEW IF EXISTS quire.deliveries CASCADE;
CREATE VIEW quire.deliveries AS
SELECT l.post_id, ls.fqdn_listname AS list, p.message_id_header,
       l.email, l.outcome, l.code, l.reply, l.attempt, l.verp,
       l.finished_at AS at
  FROM quire.delivery_log l JOIN quire.post p ON p.id = l.post_id
  JOIN quire.list_settings ls ON ls.id = p.list_id
UNION ALL
SELECT d.post_id, ls.fqdn_listname, p.message_id_header, d.email,
       CASE d.state WHEN 'leased' THEN 'in flight' ELSE 'waiting' END,
       d.last_code, d.last_reply, d.attempts, d.verp, d.not_before
  FROM quire.delivery d JOIN quire.post p ON p.id = d.post_id
  JOIN quire.list_settings ls ON ls.id = p.list_id;
COMMENT ON VIEW quire.deliveries IS
    'who got which post, when, and what the relay said: every answer '
    'recorded, plus copies still waiting or in flight';

DROP VIEW IF EXISTS quire.processes CASCADE;
CREATE VIEW quire.processes AS
SELECT split_part(a.application_name, '/', 2) AS host,
       split_part(a.application_name, '/', 3) AS pid,
       split_part(a.application_name, '/', 4) AS serves,
       count(*) AS connections,
       count(*) FILTER (WHERE a.state <> 'idle') AS busy,
       min(a.client_addr::text) AS client_addr,
       min(a.backend_start) AS connected_since
  FROM pg_stat_activity a
 WHERE a.application_name LIKE 'quire/%'
   AND a.datname = current_database()
 GROUP BY 1, 2, 3;
COMMENT ON VIEW quire.processes IS
    'live engine processes of this database, from their connections: '
    'each names its host, pid and stages in application_name, so '
    'nothing is written to say it is alive; busy counts connections '
    'inside a query or transaction';

DROP VIEW IF EXISTS quire.totals CASCADE;
CREATE VIEW quire.totals AS
SELECT (SELECT count(*) FROM quire.post WHERE status = 'held') AS held,
       (SELECT count(*) FROM quire.queue WHERE stage = 'shunt') AS shunted,
       (SELECT count(*) FROM quire.delivery) AS copies_waiting,
       (SELECT count(*) FROM quire.delivery_log
	 WHERE outcome = 'sent' AND finished_at > now() - interval '1 minute')
	   AS sent_last_minute,
       (SELECT count(*) FROM quire.delivery_log
	 WHERE outcome = 'deferred'
	   AND finished_at > now() - interval '1 minute')
	   AS deferred_last_minute;
COMMENT ON VIEW quire.totals IS
    'held and shunted posts, copies waiting, and relay answers in the '
    'last minute';

DROP VIEW IF EXISTS quire.stuck CASCADE;
CREATE VIEW quire.stuck AS
SELECT 'shunted'::text AS what, q.failed_stage AS stage, q.post_id,
       ls.fqdn_listname AS list, q.created_at AS since, q.attempts,
       q.last_error AS why
  FROM quire.queue q JOIN quire.post p ON p.id = q.post_id
  JOIN quire.list_settings ls ON ls.id = p.list_id
 WHERE q.stage = 'shunt'
UNION ALL
SELECT 'retrying', q.stage, q.post_id, ls.fqdn_listname, q.created_at,
       q.attempts, q.last_error
  FROM quire.queue q JOIN quire.post p ON p.id = q.post_id
  JOIN quire.list_settings ls ON ls.id = p.list_id
 WHERE q.stage <> 'shunt' AND q.attempts > 0
UNION ALL
SELECT 'held', 'posting', p.id, ls.fqdn_listname, p.created_at, 0,
       p.reason
  FROM quire.post p JOIN quire.list_settings ls ON ls.id = p.list_id
 WHERE p.status = 'held'
UNION ALL
SELECT CASE WHEN d.state = 'leased' THEN 'lease expired'
	    ELSE 'deferred' END, 'out', d.post_id, ls.fqdn_listname,
       d.created_at, d.attempts,
       d.email || ': ' || CASE WHEN d.state = 'leased'
	   THEN 'leased by ' || d.leased_by
	   ELSE concat_ws(' ', nullif(d.last_code, 0), d.last_reply) END
  FROM quire.delivery d JOIN quire.post p ON p.id = d.post_id
  JOIN quire.list_settings ls ON ls.id = p.list_id
 WHERE (d.state = 'queued' AND d.attempts > 0)
    OR (d.state = 'leased' AND d.lease_until < now());
COMMENT ON VIEW quire.stuck IS
    'everything that is not flowing, oldest first when ordered by since: '
    'shunted and retrying stage rows with the error, held posts with the '
    'reason, copies the relay deferred with its answer, and batches '
    'whose lease ran out (their process died or lost the database)';
