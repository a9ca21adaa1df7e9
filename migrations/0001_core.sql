-- 0001: the core tables.  Append-only: later changes go in new files.

CREATE SCHEMA IF NOT EXISTS quire;

CREATE TABLE quire.domain (
	id serial PRIMARY KEY,
	mail_host text NOT NULL UNIQUE
	    CHECK (mail_host = lower(mail_host) AND mail_host ~ '^[^@\s]+$'),
	description text,
	alias_domain text UNIQUE
	    CHECK (alias_domain = lower(alias_domain)),
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE quire.domain IS
    'Mail domains that host lists.';
COMMENT ON COLUMN quire.domain.alias_domain IS
    'another host the MTA maps to this domain: mail for x@alias_domain '
    'is mail for x@mail_host';

CREATE TABLE quire.list (
	id serial PRIMARY KEY,
	domain_id integer NOT NULL REFERENCES quire.domain ON DELETE CASCADE,
	-- A dot-atom local part (RFC 5322) without '+', the VERP delimiter.
	list_name text NOT NULL
	    CHECK (list_name ~ '^[a-z0-9!#$%&''*/=?^_`{|}~-]+'
		'(\.[a-z0-9!#$%&''*/=?^_`{|}~-]+)*$'),
	acceptable_aliases text[] NOT NULL DEFAULT '{}',
	accept_these_nonmembers text[] NOT NULL DEFAULT '{}',
	admin_immed_notify boolean NOT NULL DEFAULT true,
	admin_notify_mchanges boolean NOT NULL DEFAULT false,
	administrivia boolean NOT NULL DEFAULT true,
	advertised boolean NOT NULL DEFAULT true,
	allow_list_posts boolean NOT NULL DEFAULT true,
	anonymous_list boolean NOT NULL DEFAULT false,
	archive_policy text NOT NULL DEFAULT 'public'
	    CHECK (archive_policy IN ('never', 'private', 'public')),
	archive_rendering_mode text NOT NULL DEFAULT 'text'
	    CHECK (archive_rendering_mode IN ('text', 'markdown')),
	autorespond_owner text NOT NULL DEFAULT 'none'
	    CHECK (autorespond_owner IN (
		'none', 'respond_and_discard', 'respond_and_continue')),
	autorespond_postings text NOT NULL DEFAULT 'none'
	    CHECK (autorespond_postings IN (
		'none', 'respond_and_discard', 'respond_and_continue')),
	autorespond_requests text NOT NULL DEFAULT 'none'
	    CHECK (autorespond_requests IN (
		'none', 'respond_and_discard', 'respond_and_continue')),
	autoresponse_grace_period interval NOT NULL DEFAULT '90 days',
	autoresponse_owner_text text NOT NULL DEFAULT '',
	autoresponse_postings_text text NOT NULL DEFAULT '',
	autoresponse_request_text text NOT NULL DEFAULT '',
	bounce_info_stale_after interval NOT NULL DEFAULT '7 days',
	bounce_notify_owner_on_bounce_increment boolean NOT NULL DEFAULT false,
	bounce_notify_owner_on_disable boolean NOT NULL DEFAULT true,
	bounce_notify_owner_on_removal boolean NOT NULL DEFAULT true,
	bounce_score_threshold integer NOT NULL DEFAULT 5
	    CHECK (bounce_score_threshold >= 0),
	bounce_you_are_disabled_warnings integer NOT NULL DEFAULT 3
	    CHECK (bounce_you_are_disabled_warnings >= 0),
	bounce_you_are_disabled_warnings_interval
	    interval NOT NULL DEFAULT '7 days',
	collapse_alternatives boolean NOT NULL DEFAULT true,
	convert_html_to_plaintext boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	default_member_action text NOT NULL DEFAULT 'defer'
	    CHECK (default_member_action IN (
		'hold', 'reject', 'discard', 'accept', 'defer')),
	default_nonmember_action text NOT NULL DEFAULT 'hold'
	    CHECK (default_nonmember_action IN (
		'hold', 'reject', 'discard', 'accept', 'defer')),
	description text NOT NULL DEFAULT '',
	digest_last_sent_at timestamptz,
	digest_send_periodic boolean NOT NULL DEFAULT true,
	digest_size_threshold double precision NOT NULL DEFAULT 30.0,
	digest_volume_frequency text NOT NULL DEFAULT 'monthly'
	    CHECK (digest_volume_frequency IN (
		'yearly', 'monthly', 'quarterly', 'weekly', 'daily')),
	digests_enabled boolean NOT NULL DEFAULT true,
	discard_these_nonmembers text[] NOT NULL DEFAULT '{}',
	display_name text NOT NULL,
	dmarc_mitigate_action text NOT NULL DEFAULT 'no_mitigation'
	    CHECK (dmarc_mitigate_action IN (
		'no_mitigation', 'munge_from', 'wrap_message', 'reject',
		'discard')),
	dmarc_mitigate_unconditionally boolean NOT NULL DEFAULT false,
	dmarc_moderation_notice text NOT NULL DEFAULT '',
	dmarc_wrapped_message_text text NOT NULL DEFAULT '',
	emergency boolean NOT NULL DEFAULT false,
	filter_action text NOT NULL DEFAULT 'discard'
	    CHECK (filter_action IN (
		'hold', 'reject', 'discard', 'accept', 'defer', 'forward',
		'preserve')),
	filter_content boolean NOT NULL DEFAULT false,
	filter_extensions text[] NOT NULL DEFAULT '{}',
	filter_types text[] NOT NULL DEFAULT '{}',
	first_strip_reply_to boolean NOT NULL DEFAULT false,
	forward_unrecognized_bounces_to text NOT NULL DEFAULT 'administrators'
	    CHECK (forward_unrecognized_bounces_to IN (
		'discard', 'administrators', 'site_owner')),
	gateway_to_mail boolean NOT NULL DEFAULT false,
	gateway_to_news boolean NOT NULL DEFAULT false,
	hold_these_nonmembers text[] NOT NULL DEFAULT '{}',
	include_rfc2369_headers boolean NOT NULL DEFAULT true,
	info text NOT NULL DEFAULT '',
	last_post_at timestamptz,
	linked_newsgroup text NOT NULL DEFAULT '',
	max_days_to_hold integer NOT NULL DEFAULT 0
	    CHECK (max_days_to_hold >= 0),
	max_message_size integer NOT NULL DEFAULT 40
	    CHECK (max_message_size >= 0),
	max_num_recipients integer NOT NULL DEFAULT 10
	    CHECK (max_num_recipients >= 0),
	member_roster_visibility text NOT NULL DEFAULT 'moderators'
	    CHECK (member_roster_visibility IN (
		'public', 'members', 'moderators')),
	moderator_password text,
	newsgroup_moderation text NOT NULL DEFAULT 'none'
	    CHECK (newsgroup_moderation IN (
		'none', 'open_moderated', 'moderated')),
	next_digest_number integer NOT NULL DEFAULT 1,
	nntp_prefix_subject_too boolean NOT NULL DEFAULT true,
	pass_extensions text[] NOT NULL DEFAULT '{}',
	pass_types text[] NOT NULL DEFAULT '{}',
	personalize text NOT NULL DEFAULT 'none'
	    CHECK (personalize IN ('none', 'individual', 'full')),
	post_id integer NOT NULL DEFAULT 1,
	posting_pipeline text NOT NULL DEFAULT 'default-posting-pipeline',
	preferred_language text NOT NULL DEFAULT 'en',
	process_bounces boolean NOT NULL DEFAULT true,
	reject_these_nonmembers text[] NOT NULL DEFAULT '{}',
	reply_goes_to_list text NOT NULL DEFAULT 'no_munging'
	    CHECK (reply_goes_to_list IN (
		'no_munging', 'point_to_list', 'explicit_header',
		'explicit_header_only')),
	reply_to_address text NOT NULL DEFAULT '',
	require_explicit_destination boolean NOT NULL DEFAULT true,
	respond_to_post_requests boolean NOT NULL DEFAULT true,
	send_goodbye_message boolean NOT NULL DEFAULT true,
	send_welcome_message boolean NOT NULL DEFAULT true,
	subject_prefix text NOT NULL,
	subscription_policy text NOT NULL DEFAULT 'confirm'
	    CHECK (subscription_policy IN (
		'open', 'confirm', 'moderate', 'confirm_then_moderate')),
	unsubscription_policy text NOT NULL DEFAULT 'confirm'
	    CHECK (unsubscription_policy IN (
		'open', 'confirm', 'moderate', 'confirm_then_moderate')),
	usenet_watermark bigint,
	volume integer NOT NULL DEFAULT 1
,
	-- Quire's own knobs
	max_recipients integer NOT NULL DEFAULT 500 CHECK (max_recipients > 0),
	verp_delivery_interval integer NOT NULL DEFAULT 0
	    CHECK (verp_delivery_interval >= 0),
	accept_size_limit integer NOT NULL DEFAULT 10240
	    CHECK (accept_size_limit >= 0),
	archive_url text NOT NULL DEFAULT '',
	UNIQUE (domain_id, list_name)
);
-- Settings that go into header fields are single lines, so that no
-- setting can add a field of its own to every post.
ALTER TABLE quire.list
    ADD CONSTRAINT list_header_values_one_line CHECK (
	display_name !~ '[\r\n]' AND description !~ '[\r\n]' AND
	subject_prefix !~ '[\r\n]' AND reply_to_address !~ '[\r\n]' AND
	archive_url !~ '[\r\n]');
COMMENT ON TABLE quire.list IS
    'Mailing lists: one row a list, one column a setting.  Settings are '
    'named as in the Mailman 3 REST API.';
COMMENT ON COLUMN quire.list.list_name IS
    'the local part of the posting address';
COMMENT ON COLUMN quire.list.max_recipients IS
    'most recipients in one SMTP transaction of a plain (non-VERP) '
    'delivery';
COMMENT ON COLUMN quire.list.verp_delivery_interval IS
    '0: never VERP; 1: every post; N: every Nth post (by post_id).  A '
    'VERP post goes in one SMTP transaction a recipient, with '
    'list-bounces+member=host@domain as envelope sender';
COMMENT ON COLUMN quire.list.accept_size_limit IS
    'KB; the LMTP server refuses larger messages with 552 (0: no limit '
    'but the server''s own).  max_message_size holds, this refuses';
COMMENT ON COLUMN quire.list.archive_url IS
    'URL of the list''s web archive, for List-Archive; empty: none';
COMMENT ON COLUMN quire.list.acceptable_aliases IS
    'extra addresses/regexps accepted as explicit destination';
COMMENT ON COLUMN quire.list.accept_these_nonmembers IS
    'nonmember senders that skip nonmember moderation';
COMMENT ON COLUMN quire.list.admin_immed_notify IS
    'notify moderators at once of held posts/requests';
COMMENT ON COLUMN quire.list.admin_notify_mchanges IS
    'notify owners of joins/leaves';
COMMENT ON COLUMN quire.list.administrivia IS
    'hold posts that look like email commands';
COMMENT ON COLUMN quire.list.advertised IS
    'shown in public list indexes';
COMMENT ON COLUMN quire.list.allow_list_posts IS
    'List-Post header value or NO';
COMMENT ON COLUMN quire.list.anonymous_list IS
    'strip sender identity';
COMMENT ON COLUMN quire.list.archive_policy IS
    'archiving on/off and archive visibility';
COMMENT ON COLUMN quire.list.archive_rendering_mode IS
    'hint for archivers';
COMMENT ON COLUMN quire.list.autorespond_owner IS
    'auto-reply to -owner mail';
COMMENT ON COLUMN quire.list.autorespond_postings IS
    'auto-reply to posts';
COMMENT ON COLUMN quire.list.autorespond_requests IS
    'auto-reply to -request mail';
COMMENT ON COLUMN quire.list.autoresponse_grace_period IS
    'minimum interval between auto-replies to one sender';
COMMENT ON COLUMN quire.list.autoresponse_owner_text IS
    'text of the auto-reply to -owner mail';
COMMENT ON COLUMN quire.list.autoresponse_postings_text IS
    'text of the auto-reply to posts';
COMMENT ON COLUMN quire.list.autoresponse_request_text IS
    'text of the auto-reply to -request mail';
COMMENT ON COLUMN quire.list.bounce_info_stale_after IS
    'bounce score resets after this quiet time';
COMMENT ON COLUMN quire.list.bounce_notify_owner_on_bounce_increment IS
    'tell the owners each time a member''s bounce score rises';
COMMENT ON COLUMN quire.list.bounce_notify_owner_on_disable IS
    'tell the owners when bounces disable a member''s delivery';
COMMENT ON COLUMN quire.list.bounce_notify_owner_on_removal IS
    'tell the owners when bounces remove a member';
COMMENT ON COLUMN quire.list.bounce_score_threshold IS
    'score at which delivery is disabled';
COMMENT ON COLUMN quire.list.bounce_you_are_disabled_warnings IS
    'warnings before removal';
COMMENT ON COLUMN quire.list.bounce_you_are_disabled_warnings_interval IS
    'spacing of warnings';
COMMENT ON COLUMN quire.list.collapse_alternatives IS
    'keep first part of multipart/alternative when filtering';
COMMENT ON COLUMN quire.list.convert_html_to_plaintext IS
    'convert text/html when filtering';
COMMENT ON COLUMN quire.list.created_at IS
    'when the list was created';
COMMENT ON COLUMN quire.list.default_member_action IS
    'action for posts by members without their own action';
COMMENT ON COLUMN quire.list.default_nonmember_action IS
    'action for posts by nonmembers';
COMMENT ON COLUMN quire.list.description IS
    'short description; used in List-Id';
COMMENT ON COLUMN quire.list.digest_last_sent_at IS
    'when the last digest went out (read-only)';
COMMENT ON COLUMN quire.list.digest_send_periodic IS
    'periodic (cron) digest sending';
COMMENT ON COLUMN quire.list.digest_size_threshold IS
    'send digest when collected mailbox reaches this size';
COMMENT ON COLUMN quire.list.digest_volume_frequency IS
    'when the volume number increments';
COMMENT ON COLUMN quire.list.digests_enabled IS
    'whether digests are collected';
COMMENT ON COLUMN quire.list.discard_these_nonmembers IS
    'nonmember senders (addresses or ^regexps) whose posts are discarded';
COMMENT ON COLUMN quire.list.display_name IS
    'human name of the list; the default subject prefix is it in brackets';
COMMENT ON COLUMN quire.list.dmarc_mitigate_action IS
    'what to do with posts from domains whose DMARC policy is reject or '
    'quarantine';
COMMENT ON COLUMN quire.list.dmarc_mitigate_unconditionally IS
    'apply munge/wrap to all posts';
COMMENT ON COLUMN quire.list.dmarc_moderation_notice IS
    'text of DMARC rejections';
COMMENT ON COLUMN quire.list.dmarc_wrapped_message_text IS
    'text part added when wrapping';
COMMENT ON COLUMN quire.list.emergency IS
    'hold every post not already approved';
COMMENT ON COLUMN quire.list.filter_action IS
    'fate of messages rejected by content filtering (only discard, reject, '
    'forward, preserve are meaningful)';
COMMENT ON COLUMN quire.list.filter_content IS
    'enables MIME filtering';
COMMENT ON COLUMN quire.list.filter_extensions IS
    'attachment extensions removed';
COMMENT ON COLUMN quire.list.filter_types IS
    'parts removed';
COMMENT ON COLUMN quire.list.first_strip_reply_to IS
    'drop original Reply-To before munging';
COMMENT ON COLUMN quire.list.forward_unrecognized_bounces_to IS
    'where bounces that name no member go';
COMMENT ON COLUMN quire.list.gateway_to_mail IS
    'news to mail gateway';
COMMENT ON COLUMN quire.list.gateway_to_news IS
    'mail to news gateway';
COMMENT ON COLUMN quire.list.hold_these_nonmembers IS
    'nonmember senders (addresses or ^regexps) whose posts are held';
COMMENT ON COLUMN quire.list.include_rfc2369_headers IS
    'add List-* headers';
COMMENT ON COLUMN quire.list.info IS
    'long description';
COMMENT ON COLUMN quire.list.last_post_at IS
    'time of the last accepted post (read-only)';
COMMENT ON COLUMN quire.list.linked_newsgroup IS
    'the newsgroup gatewayed with this list';
COMMENT ON COLUMN quire.list.max_days_to_hold IS
    'stored only; no Core 3.3.8 code acts on it';
COMMENT ON COLUMN quire.list.max_message_size IS
    'hold posts larger than this; 0 = no limit';
COMMENT ON COLUMN quire.list.max_num_recipients IS
    'hold posts with this many or more To+Cc addresses; 0 = no limit';
COMMENT ON COLUMN quire.list.member_roster_visibility IS
    'who may see the roster (email who, web UI)';
COMMENT ON COLUMN quire.list.moderator_password IS
    'password for Approved: headers';
COMMENT ON COLUMN quire.list.newsgroup_moderation IS
    'moderation of the linked newsgroup';
COMMENT ON COLUMN quire.list.next_digest_number IS
    'number of the next digest in this volume (read-only)';
COMMENT ON COLUMN quire.list.nntp_prefix_subject_too IS
    'keep the subject prefix on posts gatewayed to news';
COMMENT ON COLUMN quire.list.pass_extensions IS
    'if non-empty, only these extensions pass';
COMMENT ON COLUMN quire.list.pass_types IS
    'if non-empty, only these types pass';
COMMENT ON COLUMN quire.list.personalize IS
    'per-recipient copies; full also rewrites To';
COMMENT ON COLUMN quire.list.post_id IS
    'number of the next post, used by %d in subject_prefix (read-only)';
COMMENT ON COLUMN quire.list.posting_pipeline IS
    'name of the pipeline posts run through';
COMMENT ON COLUMN quire.list.preferred_language IS
    'the list''s language code';
COMMENT ON COLUMN quire.list.process_bounces IS
    'whether bounces are scored for this list';
COMMENT ON COLUMN quire.list.reject_these_nonmembers IS
    'nonmember senders (addresses or ^regexps) whose posts are rejected';
COMMENT ON COLUMN quire.list.reply_goes_to_list IS
    'Reply-To munging';
COMMENT ON COLUMN quire.list.reply_to_address IS
    'explicit Reply-To';
COMMENT ON COLUMN quire.list.require_explicit_destination IS
    'hold posts not addressed To/Cc the list or an alias';
COMMENT ON COLUMN quire.list.respond_to_post_requests IS
    'tell senders their post was held';
COMMENT ON COLUMN quire.list.send_goodbye_message IS
    'send a goodbye message to members who leave';
COMMENT ON COLUMN quire.list.send_welcome_message IS
    'send a welcome message to new members';
COMMENT ON COLUMN quire.list.subject_prefix IS
    'prefix put in front of every post''s Subject; %d or %05d stands for '
    'post_id';
COMMENT ON COLUMN quire.list.subscription_policy IS
    'join workflow';
COMMENT ON COLUMN quire.list.unsubscription_policy IS
    'leave workflow';
COMMENT ON COLUMN quire.list.usenet_watermark IS
    'last article number gated from news (read-only)';
COMMENT ON COLUMN quire.list.volume IS
    'digest volume number (read-only)';

CREATE TABLE quire.address (
	id bigserial PRIMARY KEY,
	-- No brackets, quotes, separators or spaces: the address goes into
	-- SMTP paths and VERP senders as it is.
	email text NOT NULL UNIQUE
	    CHECK (email = lower(email)
		AND email ~ '^[^@\s<>()\[\],;:"\\]+@[^@\s<>()\[\],;:"\\]+$'),
	display_name text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE quire.address IS
    'Every address Quire knows: members, owners, nonmember senders.';

CREATE TABLE quire.member (
	id bigserial PRIMARY KEY,
	member_key uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
	list_id integer NOT NULL REFERENCES quire.list ON DELETE CASCADE,
	address_id bigint NOT NULL REFERENCES quire.address,
	role text NOT NULL DEFAULT 'member'
	    CHECK (role IN ('member', 'owner', 'moderator', 'nonmember')),
	display_name text NOT NULL DEFAULT '',
	delivery_mode text NOT NULL DEFAULT 'regular'
	    CHECK (delivery_mode IN ('regular', 'plaintext_digests',
		'mime_digests', 'summary_digests')),
	delivery_status text NOT NULL DEFAULT 'enabled'
	    CHECK (delivery_status IN ('enabled', 'by_user', 'by_bounces',
		'by_moderator', 'unknown')),
	moderation_action text
	    CHECK (moderation_action IN ('hold', 'reject', 'discard',
		'accept', 'defer')),
	receive_own_postings boolean NOT NULL DEFAULT true,
	receive_list_copy boolean NOT NULL DEFAULT true,
	acknowledge_posts boolean NOT NULL DEFAULT false,
	bounce_score integer NOT NULL DEFAULT 0,
	last_bounce_received timestamptz,
	last_warning_sent timestamptz,
	total_warnings_sent integer NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (list_id, address_id, role)
);
CREATE INDEX member_address_idx ON quire.member (address_id);
COMMENT ON TABLE quire.member IS
    'Who is on which list in which role.';
COMMENT ON COLUMN quire.member.moderation_action IS
    'this member''s own posting action; NULL: the list''s '
    'default_member_action (or default_nonmember_action) applies';
COMMENT ON COLUMN quire.member.delivery_status IS
    'enabled, or why delivery is off (by_user, by_bounces, ...)';

CREATE TABLE quire.message (
	id bigserial PRIMARY KEY,
	raw bytea NOT NULL,
	size integer NOT NULL,
	envelope_from text NOT NULL DEFAULT '',
	peer text,
	received_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE quire.message IS
    'Messages exactly as received, stored once however many lists they '
    'were sent to.';
COMMENT ON COLUMN quire.message.raw IS
    'the bytes as received over LMTP (dot-unstuffed), never changed';

CREATE TABLE quire.post (
	id bigserial PRIMARY KEY,
	message_id bigint NOT NULL REFERENCES quire.message ON DELETE CASCADE,
	list_id integer NOT NULL REFERENCES quire.list ON DELETE CASCADE,
	subaddress text NOT NULL DEFAULT 'post'
	    CHECK (subaddress IN ('post', 'bounces', 'confirm', 'join',
		'leave', 'request', 'owner')),
	recipient text NOT NULL DEFAULT '',
	digest bytea NOT NULL,
	message_id_header text,
	sender text,
	subject text,
	status text NOT NULL DEFAULT 'queued'
	    CHECK (status IN ('queued', 'held', 'accepted', 'discarded',
		'shunted')),
	reason text,
	post_number integer,
	headers bytea,
	body_offset integer,
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (list_id, subaddress, digest)
);
CREATE INDEX post_message_idx ON quire.post (message_id);
CREATE INDEX post_held_idx ON quire.post (list_id) WHERE status = 'held';
COMMENT ON TABLE quire.post IS
    'A message as it travels one list: its fate, and the header block '
    'the list sends.  The body is never copied: it is message.raw from '
    'body_offset on.';
COMMENT ON COLUMN quire.post.digest IS
    'sha256 of the raw message; a retried LMTP delivery of the same '
    'bytes to the same list is recognised by it and not posted twice';
COMMENT ON COLUMN quire.post.headers IS
    'the header block as delivered (after the decorate stage), blank '
    'line included';
COMMENT ON COLUMN quire.post.recipient IS
    'the envelope recipient as the MTA gave it (a VERP bounce keeps the '
    'member in it)';
COMMENT ON COLUMN quire.post.reason IS
    'why the post was held, discarded or shunted';

CREATE TABLE quire.queue (
	id bigserial PRIMARY KEY,
	post_id bigint NOT NULL REFERENCES quire.post ON DELETE CASCADE,
	stage text NOT NULL
	    CHECK (stage IN ('in', 'posting', 'decorate', 'archive',
		'command', 'bounces', 'shunt')),
	attempts integer NOT NULL DEFAULT 0,
	not_before timestamptz NOT NULL DEFAULT now(),
	failed_stage text,
	last_error text,
	created_at timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
	autovacuum_vacuum_insert_threshold = 500);
CREATE INDEX queue_stage_idx ON quire.queue (stage, not_before, id);
COMMENT ON TABLE quire.queue IS
    'Work waiting for a pipeline stage: a row is claimed with FOR UPDATE '
    'SKIP LOCKED, worked and deleted in one transaction.';
COMMENT ON COLUMN quire.queue.attempts IS
    'failed tries so far; at the limit the row goes to stage shunt';
COMMENT ON COLUMN quire.queue.failed_stage IS
    'for a shunted row: the stage it failed in (where retry sends it)';
COMMENT ON COLUMN quire.queue.last_error IS
    'why the last try failed';

-- No foreign key on post_id: a fan-out inserts a row per member, and a
-- key check per row was most of its cost; quire.post_delete_copies
-- (schema/) removes the copies of deleted posts instead.
CREATE TABLE quire.delivery (
	id bigserial PRIMARY KEY,
	post_id bigint NOT NULL,
	email text NOT NULL,
	domain text NOT NULL,
	verp boolean NOT NULL DEFAULT false,
	state text NOT NULL DEFAULT 'queued'
	    CHECK (state IN ('queued', 'leased')),
	attempts integer NOT NULL DEFAULT 0,
	not_before timestamptz NOT NULL DEFAULT now(),
	lease_token uuid,
	lease_until timestamptz,
	leased_by text,
	last_code integer,
	last_reply text,
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (post_id, email)
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
	autovacuum_vacuum_insert_threshold = 2000);
CREATE INDEX delivery_ready_idx ON quire.delivery (not_before, post_id)
    WHERE state = 'queued';
CREATE INDEX delivery_lease_idx ON quire.delivery (lease_until)
    WHERE state = 'leased';
CREATE INDEX delivery_token_idx ON quire.delivery (lease_token)
    WHERE lease_token IS NOT NULL;
COMMENT ON TABLE quire.delivery IS
    'Copies still to hand to the relay, one row a recipient.  A row '
    'leaves when the relay accepts or refuses the copy for good; its '
    'outcome is then in delivery_log.';
COMMENT ON COLUMN quire.delivery.lease_token IS
    'set while an outgoing runner has the copy in flight; the result is '
    'recorded only if the token still matches';
COMMENT ON COLUMN quire.delivery.lease_until IS
    'after this, another runner may take the copy over (and the relay '
    'may get it twice: the one case Quire can send a copy twice)';

CREATE TABLE quire.delivery_log (
	delivery_id bigint NOT NULL,
	post_id bigint NOT NULL,
	email text NOT NULL,
	outcome text NOT NULL
	    CHECK (outcome IN ('sent', 'deferred', 'bounced', 'expired')),
	code integer,
	reply text,
	attempt integer NOT NULL,
	verp boolean NOT NULL,
	runner text,
	finished_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (finished_at);
CREATE TABLE quire.delivery_log_default PARTITION OF quire.delivery_log
    DEFAULT;
CREATE INDEX delivery_log_post_idx ON quire.delivery_log (post_id, email);
COMMENT ON TABLE quire.delivery_log IS
    'Every relay answer for every copy: who got which post, when, and '
    'what the relay said.  Partitioned by month; drop old partitions to '
    'forget.';

CREATE TABLE quire.bounce_event (
	id bigserial PRIMARY KEY,
	list_id integer NOT NULL REFERENCES quire.list ON DELETE CASCADE,
	email text NOT NULL,
	post_id bigint REFERENCES quire.post ON DELETE SET NULL,
	code integer,
	reply text,
	source text NOT NULL DEFAULT 'smtp',
	processed boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bounce_event_pending_idx ON quire.bounce_event (list_id)
    WHERE NOT processed;
COMMENT ON TABLE quire.bounce_event IS
    'Permanent delivery failures, for bounce scoring.';

CREATE TABLE quire.archive (
	id bigserial PRIMARY KEY,
	list_id integer NOT NULL REFERENCES quire.list ON DELETE CASCADE,
	post_id bigint NOT NULL UNIQUE REFERENCES quire.post ON DELETE CASCADE,
	archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX archive_list_idx ON quire.archive (list_id, id);
COMMENT ON TABLE quire.archive IS
    'Each accepted post of each archived list, in archive order.';
