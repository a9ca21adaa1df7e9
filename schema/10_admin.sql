-- Admin functions: the CLI, psql users and (later) the REST API all call
-- these, so an action does the same thing wherever it comes from.

CREATE OR REPLACE FUNCTION quire.list_lookup(fqdn text)
RETURNS integer LANGUAGE sql STABLE AS $$
	SELECT l.id FROM quire.list l JOIN quire.domain d ON d.id = l.domain_id
	 WHERE l.list_name || '@' || d.mail_host = lower(fqdn)
$$;
COMMENT ON FUNCTION quire.list_lookup(text) IS
    'the id of list name@host, or NULL';

CREATE OR REPLACE FUNCTION quire.domain_add(host text, descr text DEFAULT NULL,
    alias text DEFAULT NULL)
RETURNS integer LANGUAGE sql AS $$
	INSERT INTO quire.domain (mail_host, description, alias_domain)
	VALUES (lower(host), descr, lower(alias))
	RETURNING id
$$;

CREATE OR REPLACE FUNCTION quire.list_create(fqdn text,
    display text DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	name	text := lower(split_part(fqdn, '@', 1));
	host	text := lower(split_part(fqdn, '@', 2));
	dom	integer;
	dname	text;
	id	integer;
BEGIN
	SELECT d.id INTO dom FROM quire.domain d WHERE d.mail_host = host;
	IF dom IS NULL THEN
		RAISE EXCEPTION 'no such domain: %', host
		    USING HINT = 'add it first: quire domain add ' || host;
	END IF;
	dname := coalesce(display, upper(left(name, 1)) || substr(name, 2));
	INSERT INTO quire.list (domain_id, list_name, display_name,
	    subject_prefix)
	VALUES (dom, name, dname, '[' || dname || '] ')
	RETURNING list.id INTO id;
	RETURN id;
END
$$;
COMMENT ON FUNCTION quire.list_create(text, text) IS
    'create list name@host with Mailman''s defaults: display name the '
    'capitalised name, subject prefix it in brackets';

CREATE OR REPLACE FUNCTION quire.member_add(fqdn text, addr text,
    member_role text DEFAULT 'member', name text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	lid	integer := quire.list_lookup(fqdn);
	aid	bigint;
	mid	bigint;
BEGIN
	IF lid IS NULL THEN
		RAISE EXCEPTION 'no such list: %', fqdn;
	END IF;
	INSERT INTO quire.address (email, display_name)
	VALUES (lower(addr), coalesce(name, ''))
	ON CONFLICT (email) DO NOTHING;
	SELECT a.id INTO aid FROM quire.address a WHERE a.email = lower(addr);
	INSERT INTO quire.member (list_id, address_id, role, display_name,
	    moderation_action)
	VALUES (lid, aid, member_role, coalesce(name, ''),
	    CASE WHEN member_role IN ('owner', 'moderator') THEN 'accept' END)
	ON CONFLICT (list_id, address_id, role) DO NOTHING
	RETURNING id INTO mid;
	RETURN mid;
END
$$;
COMMENT ON FUNCTION quire.member_add(text, text, text, text) IS
    'add addr to a list in a role; NULL if it already had that role';

CREATE OR REPLACE FUNCTION quire.member_remove(fqdn text, addr text,
    member_role text DEFAULT 'member')
RETURNS boolean LANGUAGE sql AS $$
	WITH gone AS (
		DELETE FROM quire.member m USING quire.address a
		 WHERE m.address_id = a.id AND a.email = lower(addr)
		   AND m.list_id = quire.list_lookup(fqdn)
		   AND m.role = member_role
		RETURNING 1)
	SELECT count(*) > 0 FROM gone
$$;

CREATE OR REPLACE FUNCTION quire.queue_retry(queue_id bigint)
RETURNS boolean LANGUAGE sql AS $$
	WITH back AS (
		UPDATE quire.queue q
		   SET stage = q.failed_stage, attempts = 0, crashes = 0,
		       failed_stage = NULL, last_error = NULL,
		       claim_token = NULL, claimed_by = NULL,
		       claimed_until = NULL, not_before = now()
		 WHERE q.id = queue_id AND q.stage = 'shunt'
		RETURNING q.post_id),
	post AS (
		UPDATE quire.post p SET status = 'queued', reason = NULL
		  FROM back WHERE p.id = back.post_id
		RETURNING 1)
	SELECT count(*) > 0 FROM back
$$;
COMMENT ON FUNCTION quire.queue_retry(bigint) IS
    'send a shunted row back to the stage it failed in, its tries and '
    'crashes counted from zero again';

-- Set one list setting by name; the name must be a column of quire.list
-- (other than its keys), and the value is cast by PostgreSQL to the
-- column's type, so a bad value fails with the column's own error.
CREATE OR REPLACE FUNCTION quire.list_set(fqdn text, setting text,
    value text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	lid	integer := quire.list_lookup(fqdn);
	coltype	text;
	cname	text;
BEGIN
	IF lid IS NULL THEN
		RAISE EXCEPTION 'no such list: %', fqdn;
	END IF;
	SELECT format_type(a.atttypid, a.atttypmod) INTO coltype
	  FROM pg_attribute a
	 WHERE a.attrelid = 'quire.list'::regclass AND a.attname = setting
	   AND a.attnum > 0 AND NOT a.attisdropped
	   AND setting NOT IN ('id', 'domain_id', 'list_name', 'created_at');
	IF coltype IS NULL THEN
		RAISE EXCEPTION 'unknown or read-only setting: %', setting;
	END IF;
	BEGIN
		EXECUTE format('UPDATE quire.list SET %I = $1::%s WHERE id = $2',
		    setting, coltype) USING value, lid;
	EXCEPTION
		WHEN check_violation THEN
			GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
			RAISE EXCEPTION 'invalid value for %: %', setting, value
			    USING HINT = CASE
				WHEN cname = 'list_header_values_one_line' THEN
				    'it goes into header fields: one line'
				ELSE coalesce((SELECT 'allowed: ' ||
				    pg_get_constraintdef(c.oid)
				    FROM pg_constraint c
				   WHERE c.conrelid = 'quire.list'::regclass
				     AND c.conname = cname), cname) END;
		WHEN invalid_text_representation OR
		    invalid_datetime_format OR numeric_value_out_of_range OR
		    datatype_mismatch OR invalid_parameter_value THEN
			RAISE EXCEPTION 'invalid value for %: % (a % is expected)',
			    setting, value, coltype;
	END;
END
$$;
COMMENT ON FUNCTION quire.list_set(text, text, text) IS
    'change one setting of a list, by column name, from text';

-- Moderation of held posts.  Approving sends a post on as Mailman's
-- moderator accept does: past the rules, numbered, to decoration.
CREATE OR REPLACE FUNCTION quire.post_approve(post bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	lid	integer;
BEGIN
	UPDATE quire.post p SET status = 'queued',
	       reason = 'approved by a moderator'
	 WHERE p.id = post AND p.status = 'held' RETURNING p.list_id INTO lid;
	IF lid IS NULL THEN
		RETURN false;
	END IF;
	WITH n AS (UPDATE quire.list l SET post_id = l.post_id + 1,
			  last_post_at = now()
		    WHERE l.id = lid RETURNING l.post_id - 1 AS n)
	UPDATE quire.post p SET post_number = n.n FROM n WHERE p.id = post;
	INSERT INTO quire.queue (post_id, stage) VALUES (post, 'decorate');
	RETURN true;
END
$$;
COMMENT ON FUNCTION quire.post_approve(bigint) IS
    'release a held post to the list''s members';

CREATE OR REPLACE FUNCTION quire.post_discard(post bigint)
RETURNS boolean LANGUAGE sql AS $$
	WITH d AS (
		UPDATE quire.post p SET status = 'discarded',
		       reason = 'discarded by a moderator'
		 WHERE p.id = post AND p.status = 'held'
		RETURNING 1)
	SELECT count(*) > 0 FROM d
$$;
COMMENT ON FUNCTION quire.post_discard(bigint) IS
    'drop a held post (it stays in quire.post, marked discarded)';
