/*
 * cli_queue: putting messages in (inject), looking at and mending the
 * queues, exporting archives, and the status screen.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "buf.h"
#include "cli.h"
#include "db.h"
#include "mbox.h"

static int
cli_read_file(const char *path, struct buf *b)
{
	FILE	*f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	char	 chunk[65536];
	size_t	 n;

	if (f == NULL) {
		fprintf(stderr, "quire: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (buf_add(b, chunk, n) == -1) {
			fprintf(stderr, "quire: %s: out of memory\n", path);
			n = 0;
			break;
		}
	if (f != stdin)
		fclose(f);
	return 0;
}

/* Like Mailman's inject: into the list's incoming queue, through the
 * same quire.accept the LMTP server uses. */
int
cli_inject(struct cli *c)
{
	const char	*sender = cli_opt(c, "--sender", "");
	struct db_params p;
	struct db	*db;
	struct buf	 raw = { 0 };
	struct db_res	*r;
	struct buf	 rcpt = { 0 };
	char		 ids[32];

	if (cli_no_options(c) || c->argc != 2)
		return cli_usage("inject LIST FILE|- [--sender ADDRESS]");
	if (cli_read_file(c->argv[1], &raw) == -1) {
		buf_free(&raw);
		return 1;
	}
	if (raw.len == 0) {
		fprintf(stderr, "quire: %s: empty message\n", c->argv[1]);
		return 1;
	}
	if ((db = cli_connect(c)) == NULL)
		return 1;
	db_params_init(&p);
	db_param_text(&p, c->argv[0]);
	r = db_exec(db, "SELECT quire.list_lookup($1)", &p, DB_TEXT);
	if (r == NULL || db_res_isnull(r, 0, 0)) {
		fprintf(stderr, "quire: no such list: %s\n", c->argv[0]);
		db_res_free(r);
		db_close(db);
		buf_free(&raw);
		return 1;
	}
	snprintf(ids, sizeof(ids), "{%s}", db_res_value(r, 0, 0));
	db_res_free(r);
	if (buf_adds(&rcpt, "{") == -1 ||
	    buf_add_element(&rcpt, c->argv[0], 1) == -1 ||
	    buf_adds(&rcpt, "}") == -1) {
		fprintf(stderr, "quire: out of memory\n");
		buf_free(&raw);
		db_close(db);
		return 1;
	}
	db_params_init(&p);
	db_param_bytes(&p, raw.p, raw.len);
	db_param_text(&p, sender);
	db_param_text(&p, "inject");
	db_param_text(&p, rcpt.p);
	db_param_text(&p, ids);
	db_param_text(&p, "{post}");
	r = db_exec(db, "SELECT post_id, duplicate FROM quire.accept($1, $2,"
	    " $3, $4, $5, $6)", &p, DB_TEXT);
	buf_free(&raw);
	buf_free(&rcpt);
	if (r == NULL) {
		fprintf(stderr, "quire: %s\n", db_error_brief(db));
		db_close(db);
		return 1;
	}
	printf("%s post %s\n", db_res_value(r, 0, 1)[0] == 't' ?
	    "already queued as" : "queued as", db_res_value(r, 0, 0));
	db_res_free(r);
	db_close(db);
	return 0;
}

/* What a queue row is doing, for a person: a claim that no longer holds
 * with its token still set was most likely cut short by a crash (or is
 * a stage still at work past its lease). */
#define QUEUE_STATE \
	"CASE WHEN q.stage = 'shunt' THEN 'shunted'" \
	" WHEN quire.queue_claim_live(q.claimed_until, q.claimed_pid)" \
	"   THEN 'claimed by ' || q.claimed_by" \
	" WHEN q.claim_token IS NOT NULL THEN 'claim by ' || q.claimed_by" \
	"   || ' ended'" \
	" WHEN q.not_before > now() THEN 'waiting'" \
	" ELSE 'due' END"

/* 1 if `name' is a stage queue rows can be in; otherwise says so. */
static int
cli_queue_stage(const char *name)
{
	static const char *const stages[] = { "in", "posting", "decorate",
	    "archive", "command", "bounces", "shunt" };

	for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
		if (strcmp(name, stages[i]) == 0)
			return 1;
	fprintf(stderr, "quire: no queue stage %s (in, posting, decorate, "
	    "archive, command, bounces, shunt; copies for the relay are in "
	    "quire status and quire.deliveries)\n", name);
	return 0;
}

/* 1 if queue row `id' exists; otherwise says why and returns 0. */
static int
cli_queue_exists(struct db *db, const char *id)
{
	struct db_params p;
	struct db_res	*r;
	int		 n;

	if (id[strspn(id, "0123456789")] != '\0' || *id == '\0') {
		fprintf(stderr, "quire: not a queue row id: %s\n", id);
		return 0;
	}
	db_params_init(&p);
	db_param_text(&p, id);
	if ((r = db_exec(db, "SELECT 1 FROM quire.queue WHERE id = $1", &p,
	    DB_TEXT)) == NULL) {
		fprintf(stderr, "quire: %s\n", db_error_brief(db));
		return 0;
	}
	n = db_res_rows(r);
	db_res_free(r);
	if (n == 0)
		fprintf(stderr, "quire: no queue row %s\n", id);
	return n == 1;
}

static int
cli_queue_show(struct db *db, const char *id)
{
	struct db_params p;
	struct db_res	*r;
	const char	*raw;
	size_t		 len, hdr;

	db_params_init(&p);
	db_param_text(&p, id);
	if (cli_run_sql(db, "SELECT q.id, q.stage, q.post_id, ls.fqdn_listname"
	    " AS list, p.subaddress, p.status, p.sender, p.subject,"
	    " p.message_id_header, " QUEUE_STATE " AS state, q.attempts,"
	    " q.crashes, q.not_before, q.claimed_by, q.claimed_until,"
	    " q.failed_stage, q.last_error, q.created_at FROM quire.queue q"
	    " JOIN quire.post p ON p.id = q.post_id"
	    " JOIN quire.list_settings ls ON ls.id = p.list_id"
	    " WHERE q.id = $1", &p, 1))
		return 1;
	r = db_exec(db, "SELECT m.raw FROM quire.queue q JOIN quire.post p"
	    " ON p.id = q.post_id JOIN quire.message m ON m.id = p.message_id"
	    " WHERE q.id = $1", &p, DB_BINARY);
	if (r == NULL || db_res_rows(r) != 1) {
		db_res_free(r);
		return 1;
	}
	raw = db_res_value(r, 0, 0);
	len = db_res_length(r, 0, 0);
	for (hdr = 0; hdr < len; hdr++)
		if (raw[hdr] == '\n' && (hdr + 1 == len || raw[hdr + 1] ==
		    '\n' || (raw[hdr + 1] == '\r' && hdr + 2 < len &&
		    raw[hdr + 2] == '\n')))
			break;
	printf("\n");
	fwrite(raw, 1, hdr < len ? hdr + 1 : len, stdout);
	db_res_free(r);
	return 0;
}

int
cli_queue(struct cli *c)
{
	struct db_params p;
	struct db	*db;
	const char	*verb = c->argc > 0 ? c->argv[0] : "";
	int		 rc;

	if (cli_no_options(c))
		return 2;
	if ((strcmp(verb, "list") != 0 && c->argc != 2) || c->argc > 2)
		return cli_usage("queue list [STAGE] | show|retry|delete ID");
	if (strcmp(verb, "list") == 0 && c->argc == 2 &&
	    !cli_queue_stage(c->argv[1]))
		return 2;
	if ((db = cli_connect(c)) == NULL)
		return 1;
	db_params_init(&p);
	db_param_text(&p, c->argc > 1 ? c->argv[1] : NULL);
	if (strcmp(verb, "list") != 0 && !cli_queue_exists(db, c->argv[1]))
		rc = 1;
	else if (strcmp(verb, "list") == 0)
		rc = cli_run_sql(db, "SELECT q.id, q.stage, q.post_id,"
		    " ls.fqdn_listname AS list, " QUEUE_STATE " AS state,"
		    " q.attempts, q.crashes,"
		    " date_trunc('second', now() - q.created_at) AS age,"
		    " q.failed_stage, q.last_error, p.subject"
		    " FROM quire.queue q JOIN quire.post p ON p.id = q.post_id"
		    " JOIN quire.list_settings ls ON ls.id = p.list_id"
		    " WHERE $1::text IS NULL OR q.stage = $1 ORDER BY q.id",
		    &p, 1);
	else if (strcmp(verb, "show") == 0)
		rc = cli_queue_show(db, c->argv[1]);
	else if (strcmp(verb, "retry") == 0) {
		struct db_res *r = db_exec(db, "SELECT quire.queue_retry($1)",
		    &p, DB_TEXT);
		rc = r == NULL || db_res_value(r, 0, 0)[0] != 't';
		if (r == NULL)
			fprintf(stderr, "quire: %s\n", db_error_brief(db));
		else
			printf(rc ? "queue row %s is not shunted\n" :
			    "queue row %s sent back\n", c->argv[1]);
		db_res_free(r);
	} else if (strcmp(verb, "delete") == 0) {
		struct db_res *r = db_exec(db, "WITH q AS (DELETE FROM"
		    " quire.queue WHERE id = $1 RETURNING post_id)"
		    " UPDATE quire.post p SET status = 'discarded',"
		    " reason = 'deleted from the queue by an admin'"
		    " FROM q WHERE p.id = q.post_id", &p, DB_TEXT);
		rc = r == NULL || atoi(db_res_cmd_tuples(r)) != 1;
		if (r == NULL)
			fprintf(stderr, "quire: %s\n", db_error_brief(db));
		else
			printf(rc ? "no queue row %s\n" :
			    "queue row %s deleted\n", c->argv[1]);
		db_res_free(r);
	} else
		rc = cli_usage("queue list|show|retry|delete");
	db_close(db);
	return rc;
}

/* Keyset pages, so a large archive is never all in memory. */
static int
cli_archive_page(struct db *db, const char *list, long long *after, FILE *f)
{
	struct db_params p;
	struct db_res	*r;
	struct iovec	 iov[2];
	char		 a[24];
	int		 n;

	db_params_init(&p);
	db_param_text(&p, list);
	db_param_int(&p, a, *after);
	r = db_exec(db, "SELECT a.id, p.headers, m.raw, p.body_offset,"
	    " m.envelope_from, extract(epoch FROM a.archived_at)::bigint"
	    " FROM quire.archive a JOIN quire.post p ON p.id = a.post_id"
	    " JOIN quire.message m ON m.id = p.message_id"
	    " WHERE a.list_id = quire.list_lookup($1) AND a.id > $2"
	    " ORDER BY a.id LIMIT 200", &p, DB_BINARY);
	if (r == NULL) {
		fprintf(stderr, "quire: %s\n", db_error_brief(db));
		return -1;
	}
	n = db_res_rows(r);
	for (int i = 0; i < n; i++) {
		size_t len = db_res_length(r, i, 2);
		size_t off = (size_t)db_res_int(r, i, 3);

		if (off > len)
			off = len;
		iov[0].iov_base = (void *)db_res_value(r, i, 1);
		iov[0].iov_len = db_res_length(r, i, 1);
		iov[1].iov_base = (char *)db_res_value(r, i, 2) + off;
		iov[1].iov_len = len - off;
		if (mbox_write(f, db_res_value(r, i, 4),
		    (time_t)db_res_int(r, i, 5), iov, 2) == -1) {
			fprintf(stderr, "quire: write: %s\n", strerror(errno));
			n = -1;
			break;
		}
		*after = db_res_int(r, i, 0);
	}
	db_res_free(r);
	return n;
}

int
cli_archive(struct cli *c)
{
	struct db	*db;
	FILE		*f = stdout;
	long long	 after = 0;
	int		 n, rc = 0;

	if (cli_no_options(c) || c->argc < 2 || c->argc > 3 ||
	    strcmp(c->argv[0], "export") != 0)
		return cli_usage("archive export LIST [FILE]");
	if ((db = cli_connect(c)) == NULL)
		return 1;
	if (cli_list_exists(db, c->argv[1]) != 1) {
		db_close(db);
		return 1;
	}
	if (c->argc == 3 && (f = fopen(c->argv[2], "wb")) == NULL) {
		fprintf(stderr, "quire: %s: %s\n", c->argv[2], strerror(errno));
		db_close(db);
		return 1;
	}
	while ((n = cli_archive_page(db, c->argv[1], &after, f)) > 0)
		;
	if (n < 0 || fflush(f) != 0)
		rc = 1;
	if (f != stdout && fclose(f) != 0)
		rc = 1;
	db_close(db);
	return rc;
}

/* The status screen: each part is one of the admin views, trimmed to
 * what fits a terminal.  Every stage is listed, idle ones as zero, so a
 * missing line never has to be read as "nothing waiting". */
#define STATUS_STUCK_ROWS "10"
#define STATUS_PROCESSES \
    "SELECT host, pid, serves, connections, busy," \
    " date_trunc('second', connected_since) AS connected_since" \
    " FROM quire.processes ORDER BY host, serves, pid"
#define STATUS_QUEUES \
    "SELECT s.stage, coalesce(d.rows, 0) AS rows," \
    " coalesce(d.due, 0) AS due," \
    " coalesce(d.in_flight, 0) AS in_flight," \
    " date_trunc('second', d.oldest) AS oldest," \
    " coalesce(d.most_attempts, 0) AS most_attempts," \
    " coalesce(d.crashed, 0) AS crashed" \
    " FROM (SELECT * FROM unnest(ARRAY['in', 'posting', 'decorate'," \
    " 'archive', 'out', 'shunt']) WITH ORDINALITY AS k(stage, n)" \
    " UNION ALL SELECT q.stage, 100 FROM quire.queue_depth q" \
    " WHERE q.stage NOT IN ('in', 'posting', 'decorate', 'archive'," \
    " 'out', 'shunt')) s" \
    " LEFT JOIN quire.queue_depth d USING (stage) ORDER BY s.n, s.stage"
#define STATUS_STUCK \
    "SELECT what, stage, post_id, list," \
    " date_trunc('second', now() - since) AS age, attempts," \
    " left(why, 120) AS why FROM quire.stuck ORDER BY since" \
    " LIMIT " STATUS_STUCK_ROWS

int
cli_status(struct cli *c)
{
	struct db	*db;
	int		 rc = 0;

	if (cli_no_options(c))
		return 2;
	if ((db = cli_connect(c)) == NULL)
		return 1;
	printf("processes\n");
	rc |= cli_run_sql(db, STATUS_PROCESSES, NULL, 1);
	printf("\nqueues\n");
	rc |= cli_run_sql(db, STATUS_QUEUES, NULL, 1);
	printf("\ntotals\n");
	rc |= cli_run_sql(db, "SELECT * FROM quire.totals", NULL, 1);
	printf("\nstuck (oldest " STATUS_STUCK_ROWS ")\n");
	rc |= cli_run_sql(db, STATUS_STUCK, NULL, 1);
	db_close(db);
	return rc;
}

/* Held posts: list them, or release or drop one (quire.post_approve,
 * quire.post_discard). */
int
cli_held(struct cli *c)
{
	struct db_params p;
	struct db_res	*r;
	struct db	*db;
	const char	*verb = c->argc > 0 ? c->argv[0] : "";
	int		 rc;

	if (cli_no_options(c) || !((strcmp(verb, "list") == 0 &&
	    c->argc <= 2) || ((strcmp(verb, "approve") == 0 ||
	    strcmp(verb, "discard") == 0) && c->argc == 2)))
		return cli_usage("held list [LIST] | approve ID | discard ID");
	if ((db = cli_connect(c)) == NULL)
		return 1;
	db_params_init(&p);
	db_param_text(&p, c->argc > 1 ? c->argv[1] : NULL);
	if (strcmp(verb, "list") == 0) {
		rc = cli_run_sql(db, "SELECT post_id, list, sender, subject,"
		    " reason, held_since FROM quire.held"
		    " WHERE $1::text IS NULL OR list = lower($1)"
		    " ORDER BY post_id", &p, 1);
		db_close(db);
		return rc;
	}
	r = db_exec(db, strcmp(verb, "approve") == 0 ?
	    "SELECT quire.post_approve($1::bigint)" :
	    "SELECT quire.post_discard($1::bigint)", &p, DB_TEXT);
	if (r == NULL)
		fprintf(stderr, "quire: %s\n", db_error_brief(db));
	else if (db_res_value(r, 0, 0)[0] != 't')
		fprintf(stderr, "quire: post %s is not held\n", c->argv[1]);
	else
		printf("post %s %s\n", c->argv[1], *verb == 'a' ?
		    "approved" : "discarded");
	rc = r == NULL || db_res_value(r, 0, 0)[0] != 't';
	db_res_free(r);
	db_close(db);
	return rc;
}
