-- Intake: how an envelope recipient maps to a list, and the one
-- transaction that stores a message and queues it.

CREATE OR REPLACE FUNCTION quire.resolve_recipient(rcpt text,
    OUT list_id integer, OUT subaddress text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	addr	text := lower(rcpt);
	loc	text;
	host	text;
	base	text;
	suffix	text;
	dash	integer;
BEGIN
	IF addr !~ '^[^@\s]+@[^@\s]+$' THEN
		RETURN;
	END IF;
	loc := split_part(addr, '@', 1);
	SELECT d.mail_host INTO host FROM quire.domain d
	 WHERE d.mail_host = split_part(addr, '@', 2)
	    OR d.alias_domain = split_part(addr, '@', 2)
	 ORDER BY d.mail_host = split_part(addr, '@', 2) DESC LIMIT 1;
	IF host IS NULL THEN
		RETURN;
	END IF;
	-- The VERP delimiter: list-bounces+anne=example.com is list-bounces.
	loc := split_part(loc, '+', 1);
	-- A list named like a sub-address ("a-request") wins.
	SELECT l.id INTO list_id FROM quire.list l
	  JOIN quire.domain d ON d.id = l.domain_id
	 WHERE d.mail_host = host AND l.list_name = loc;
	IF list_id IS NOT NULL THEN
		subaddress := 'post';
		RETURN;
	END IF;
	dash := length(loc) - position('-' IN reverse(loc)) + 1;
	IF position('-' IN loc) = 0 OR dash = 1 THEN
		RETURN;
	END IF;
	base := left(loc, dash - 1);
	suffix := substr(loc, dash + 1);
	subaddress := CASE suffix
		WHEN 'bounces' THEN 'bounces'
		WHEN 'confirm' THEN 'confirm'
		WHEN 'join' THEN 'join'
		WHEN 'subscribe' THEN 'join'
		WHEN 'leave' THEN 'leave'
		WHEN 'unsubscribe' THEN 'leave'
		WHEN 'request' THEN 'request'
		WHEN 'owner' THEN 'owner'
	END;
	IF subaddress IS NULL THEN
		RETURN;
	END IF;
	SELECT l.id INTO list_id FROM quire.list l
	  JOIN quire.domain d ON d.id = l.domain_id
	 WHERE d.mail_host = host AND l.list_name = base;
	IF list_id IS NULL THEN
		subaddress := NULL;
	END IF;
END
$$;
COMMENT ON FUNCTION quire.resolve_recipient(text) IS
    'Mailman 3''s reading of an LMTP recipient: the list and the '
    'sub-address (post, bounces, confirm, join, leave, request, owner), '
    'or NULLs for an unknown list';

CREATE OR REPLACE FUNCTION quire.accept_size_limit(list integer)
RETURNS integer LANGUAGE sql STABLE AS $$
	SELECT l.accept_size_limit FROM quire.list l WHERE l.id = list
$$;

-- The first stage of each sub-address; those with no runner yet wait in
-- their stage for the issue that brings it.
CREATE OR REPLACE FUNCTION quire.first_stage(subaddress text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE subaddress
		WHEN 'post' THEN 'in'
		WHEN 'owner' THEN 'in'
		WHEN 'bounces' THEN 'bounces'
		ELSE 'command'
	END
$$;

CREATE OR REPLACE FUNCTION quire.accept(raw bytea, envelope_from text,
    peer text, recipients text[], list_ids integer[], subaddresses text[])
RETURNS TABLE (recipient_index integer, post_id bigint, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
	msg_digest bytea := sha256(raw);
	msg	bigint;
	pid	bigint;
BEGIN
	FOR i IN 1 .. coalesce(array_length(list_ids, 1), 0) LOOP
		recipient_index := i;
		-- The MTA retries after a 4xx even when our COMMIT had in fact
		-- landed; the same bytes to the same list are that retry.
		SELECT p.id INTO pid FROM quire.post p
		 WHERE p.list_id = list_ids[i]
		   AND p.subaddress = subaddresses[i] AND p.digest = msg_digest;
		IF pid IS NOT NULL THEN
			-- The first try may stand on this server only (its
			-- wait for the synchronous standby given up).  A row
			-- lock writes WAL, so that this commit waits for the
			-- standby too (one that wrote none would not), and
			-- WAL is in order: a 250 for the retry means the
			-- post is on both.
			PERFORM 1 FROM quire.post p WHERE p.id = pid
			    FOR KEY SHARE;
			post_id := pid;
			duplicate := true;
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF msg IS NULL THEN
			INSERT INTO quire.message (raw, size, envelope_from, peer)
			VALUES (raw, length(raw), coalesce(envelope_from, ''), peer)
			RETURNING id INTO msg;
		END IF;
		INSERT INTO quire.post (message_id, list_id, subaddress,
		    recipient, digest)
		VALUES (msg, list_ids[i], subaddresses[i], recipients[i],
		    msg_digest)
		ON CONFLICT DO NOTHING
		RETURNING id INTO pid;
		IF pid IS NULL THEN
			-- A concurrent copy of the same delivery committed first.
			SELECT p.id INTO pid FROM quire.post p
			 WHERE p.list_id = list_ids[i]
			   AND p.subaddress = subaddresses[i]
			   AND p.digest = msg_digest;
			duplicate := true;
		ELSE
			INSERT INTO quire.queue (post_id, stage)
			VALUES (pid, quire.first_stage(subaddresses[i]));
			duplicate := false;
		END IF;
		post_id := pid;
		RETURN NEXT;
	END LOOP;
END
$$;
COMMENT ON FUNCTION quire.accept(bytea, text, text, text[], integer[],
    text[]) IS
    'store a message once and queue one post a recipient list, in one '
    'transaction; a post already stored (same list, sub-address and '
    'bytes) is reported as a duplicate and not queued again';
