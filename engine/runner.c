/*
 * runner: the wake-up and claim cycle of the in-database stages.
 *
 * The process LISTENs on the channel of each stage it serves and sleeps
 * in the event loop.  A notification marks its stage dirty; a dirty
 * stage is drained batch by batch, each batch one round trip to claim
 * and one to commit:
 *
 *	BEGIN; quire.queue_claim: count a try of up to N due rows, mark
 *	       them with the batch's token, hold them for --claim-lease;
 *	COMMIT;
 *	BEGIN; lock the rows carrying the token, with their posts;
 *	run the stage on each (it deletes its row, inserts the next);
 *	COMMIT
 *
 * The try is counted in a transaction of its own, before the stage
 * runs, because a stage that kills the process or its database session
 * takes its own transaction down with it.  A row still carrying a token
 * whose claiming session is gone (the server pid it recorded no longer
 * exists: at once after a kill, after the keepalives for a lost host) or
 * whose lease has run out (a pooler kept the session alive) was being
 * worked when its runner died: the next claim, usually the restarted
 * runner's first scan, counts that as a crash and tries the row alone,
 * so that the other rows of the dead batch are not blamed a second
 * time, and shunts it instead once its tries are spent.  The claim's
 * commit need not wait for the disk (the session runs with
 * synchronous_commit off): a count lost in a server crash is lost with
 * everything after it, and costs one more try at most.
 *
 * Several runners on several hosts can serve the same stage: the claim
 * takes due rows FOR UPDATE SKIP LOCKED and skips rows whose claim is
 * still live, so each row is counted by one claim, and the batch locks
 * only rows that still carry its own token, so a row is worked by one
 * runner.  If a stage fails on a row, the batch is rolled back and the
 * failure recorded on that row alone (quire.queue_fail), which retries
 * it later with backoff and shunts it at the limit; the other rows are
 * handed back uncounted (quire.queue_release) and claimed again at once.
 *
 * Rows that must wait (a retry's not_before, a crashed row's lease)
 * wake the runner through one timer set to the earliest of them; with
 * nothing due there is no timer, and an idle runner makes no system
 * calls.  After every (re)connect the runner LISTENs first and then
 * scans every stage it serves, because notifications sent while it was
 * away are lost (runner_scanned logs the rows that first round did).
 *
 * Rows a runner on a lost host had claimed are free once the server
 * ends its session (keepalives, tcp_user_timeout), and nothing announces
 * that: so while a row of its stages is due but held by another
 * session, a runner looks again every --claim-lease.  A lost host's
 * rows are thus taken over within the server's detection time plus
 * --claim-lease, also when no new post comes.
 *
 * SIGTERM (stop.h) is looked at between transactions: the runner ends
 * the one it is in, so a stop leaves no commit whose outcome is unknown.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/event.h>

#include "buf.h"
#include "db.h"
#include "log.h"
#include "post.h"
#include "runner.h"
#include "stage.h"
#include "stop.h"

struct runner {
	const struct runner_config *cfg;
	struct event_base *base;
	struct db	*db;
	struct event	*ev_db;
	struct event	*ev_due;
	struct db_batch	*writes;	/* deferred to the COMMIT */
	unsigned	 dirty;
	int		 scanning;	/* first drain since connecting */
	int		 scanned;	/* rows it has done */
	const char	*channels[STAGE_COUNT];
	int		 channel_stage[STAGE_COUNT];
	int		 nchannels;
};

static void	runner_drain(struct runner *);

/* Mark dirty the stages whose channels (bits of mask) were notified. */
static void
runner_mark(struct runner *r, long mask)
{
	for (int i = 0; i < r->nchannels; i++)
		if (mask & (1L << i))
			r->dirty |= 1u << r->channel_stage[i];
}

static void
runner_connect(struct runner *r)
{
	if (r->ev_db != NULL) {
		event_free(r->ev_db);
		r->ev_db = NULL;
	}
	db_close(r->db);
	for (;;) {
		r->db = db_connect_retry(r->cfg->conninfo, r->cfg->appname,
		    &stop_requested);
		/* Asked to stop with no connection: nothing is in flight. */
		if (r->db == NULL)
			_exit(0);
		/* Each hop is redone safely if its commit is lost in a
		 * crash, so it need not wait for the WAL flush (DESIGN,
		 * queue rules); nothing this process commits is a promise
		 * to the outside world. */
		if (db_cmd(r->db, "SET synchronous_commit = off", NULL) == 0 &&
		    db_listen(r->db, r->channels, r->nchannels) == 0)
			break;
		log_warn("runner_listen_failed", "reason=%s",
		    log_q(db_error(r->db)));
		db_close(r->db);
		if (stop_requested)
			_exit(0);
	}
	r->dirty = r->cfg->stages;
	r->scanning = 1;
	r->scanned = 0;
	log_info("runner_ready", "app=%s", log_q(r->cfg->appname));
}

/* Each batch's claim has its own token; only the batch that made a
 * claim finds its rows by it. */
static long long
runner_token(void)
{
	uint64_t	 t;

	if (getrandom(&t, sizeof(t), 0) != sizeof(t)) {
		log_error("runner_token_failed", "reason=getrandom");
		abort();
	}
	return (long long)(t >> 1);
}

/* A stage failed on one row: roll back, record it on that row, hand the
 * rest of the batch back uncounted, log it. */
static void
runner_fail_row(struct runner *r, int stage, struct stage_ctx *ctx,
    long long token)
{
	struct db_params p, t;
	const struct db_params *params[] = { NULL, &p, &t };
	const char	*sql[] = { "ROLLBACK",
	    "SELECT quire.queue_fail($1, $2, $3, $4)",
	    "SELECT quire.queue_release($1)" };
	struct db_res	*res[3];
	char		 id[24], max[24], backoff[32], tok[24];

	db_params_init(&p);
	db_param_int(&p, id, ctx->queue_id);
	db_param_text(&p, ctx->error);
	db_param_int(&p, max, r->cfg->max_attempts);
	snprintf(backoff, sizeof(backoff), "%.3f seconds",
	    r->cfg->retry_backoff);
	db_param_text(&p, backoff);
	db_params_init(&t);
	db_param_int(&t, tok, token);
	if (db_exec_pipeline_each(r->db, 3, sql, params, DB_TEXT, res) == -1) {
		if (db_ok(r->db))
			log_error("stage_fail_unrecorded", "stage=%s "
			    "queue=%lld reason=%s", stage_defs[stage].name,
			    ctx->queue_id, log_q(db_error(r->db)));
		return;
	}
	if (strcmp(db_res_value(res[1], 0, 0), "shunt") == 0)
		log_error("post_shunted", "stage=%s queue=%lld post=%lld "
		    "attempts=%d reason=%s", stage_defs[stage].name,
		    ctx->queue_id, ctx->post_id, ctx->attempts,
		    log_q(ctx->error));
	else
		log_warn("stage_failed", "stage=%s queue=%lld post=%lld "
		    "attempt=%d reason=%s", stage_defs[stage].name,
		    ctx->queue_id, ctx->post_id, ctx->attempts,
		    log_q(ctx->error));
	for (int k = 0; k < 3; k++)
		db_res_free(res[k]);
}

/* A claim in its own transaction (see the top of the file); the rows it
 * shunted or took after a crash come back for the log. */
static const char runner_claim_sql[] =
    "SELECT row_id, row_post, row_attempts, row_crashes, outcome, reason"
    "  FROM quire.queue_claim($1, $2, $3, $4, $5, $6)";

/* The rows the claim took, locked, with everything the stages read:
 * the post, its message (when not large), its list's settings and its
 * sender's standing on the list.  The claim leaves their ids in a
 * session setting, which ties both transactions to one server session
 * (as LISTEN already does: no transaction pooler in between); the token
 * check leaves out a row that another runner claimed after this claim's
 * lease ran out. */
static const char runner_claimed_sql[] =
    "SELECT q.id, q.attempts, " POST_COLUMNS ", " LIST_COLUMNS
    "  FROM quire.queue q JOIN quire.post p ON p.id = q.post_id"
    "  JOIN quire.message m ON m.id = p.message_id"
    "  JOIN quire.list_settings ls ON ls.id = p.list_id"
    POST_SENDER_JOIN
    " WHERE q.id = ANY (nullif(current_setting('quire.claimed', true),"
    "   '')::bigint[])"
    "   AND q.claim_token = $1"
    " ORDER BY q.id FOR UPDATE OF q";

/* Every row of the batch moves at once: deleted, and re-inserted in its
 * next stage unless it has none. */
static const char runner_move_sql[] =
    "WITH m AS (SELECT * FROM unnest($1::bigint[], $2::text[])"
    "   AS m(id, next)),"
    " gone AS (DELETE FROM quire.queue q USING m WHERE q.id = m.id"
    "   RETURNING q.id, q.post_id)"
    " INSERT INTO quire.queue (post_id, stage)"
    " SELECT g.post_id, m.next FROM gone g JOIN m ON m.id = g.id"
    "  WHERE m.next IS NOT NULL";

/* Claim and lock a batch in one round trip; the rows to work are
 * returned, the claim's own report (rows shunted or taken after a
 * crash) is left in *report.  NULL when the connection broke. */
static struct db_res *
runner_claim(struct runner *r, int stage, int limit, long long token,
    struct db_res **report)
{
	struct db_params claim, lock;
	const struct db_params *params[] = { NULL, &claim, NULL, NULL, &lock };
	const char	*sql[] = { "BEGIN", runner_claim_sql, "COMMIT", "BEGIN",
	    runner_claimed_sql };
	struct db_res	*res[5];
	char		 lim[24], tok[24], lease[32], max[24];

	/* A lease that ran out at once would let another runner count
	 * the same try. */
	snprintf(lease, sizeof(lease), "%d seconds",
	    r->cfg->claim_lease > 1 ? r->cfg->claim_lease : 1);
	db_params_init(&claim);
	db_param_text(&claim, stage_defs[stage].name);
	db_param_int(&claim, lim, limit);
	db_param_int(&claim, tok, token);
	db_param_text(&claim, r->cfg->appname);
	db_param_text(&claim, lease);
	db_param_int(&claim, max, r->cfg->max_attempts);
	db_params_init(&lock);
	db_param_int(&lock, tok, token);
	if (db_exec_pipeline_each(r->db, 5, sql, params, DB_BINARY,
	    res) == -1)
		return NULL;
	db_res_free(res[0]);
	db_res_free(res[2]);
	db_res_free(res[3]);
	*report = res[1];
	return res[4];
}

/* Log what the claim did besides taking rows; 1 if it shunted a row or
 * took one alone after a crash, when more rows may be due. */
static int
runner_claim_report(int stage, struct db_res *report)
{
	int	 more = 0;

	for (int i = 0; i < db_res_rows(report); i++) {
		const char *outcome = db_res_value(report, i, 4);

		if (strcmp(outcome, "shunted") == 0)
			log_error("post_shunted", "stage=%s queue=%lld "
			    "post=%lld attempts=%lld crashes=%lld reason=%s",
			    stage_defs[stage].name, db_res_int(report, i, 0),
			    db_res_int(report, i, 1), db_res_int(report, i, 2),
			    db_res_int(report, i, 3),
			    log_q(db_res_value(report, i, 5)));
		else if (strcmp(outcome, "crashed") == 0)
			log_warn("stage_crashed", "stage=%s queue=%lld "
			    "post=%lld attempt=%lld crashes=%lld",
			    stage_defs[stage].name, db_res_int(report, i, 0),
			    db_res_int(report, i, 1), db_res_int(report, i, 2),
			    db_res_int(report, i, 3));
		else
			continue;
		more = 1;
	}
	return more;
}

static int
runner_commit(struct runner *r, struct buf *ids, struct buf *nexts)
{
	struct db_params p;

	if (buf_adds(ids, "}") == -1 || buf_adds(nexts, "}") == -1)
		return -1;
	db_params_init(&p);
	db_param_text(&p, ids->p);
	db_param_text(&p, nexts->p);
	if (db_batch_add(r->writes, runner_move_sql, &p) == -1)
		return -1;
	return db_batch_run(r->db, r->writes, "COMMIT");
}

/* Run the stage on row i of the claim; 0, or -1 with ctx->error set. */
static int
runner_row(struct runner *r, int stage, struct db_res *rows, int i,
    struct stage_ctx *ctx)
{
	struct post	 post;
	struct list_conf list;
	int		 rc;

	post_from_res(rows, i, 2, &post);
	list_conf_from_res(rows, i, 2 + POST_NCOLUMNS, post.list_id, &list);
	memset(ctx, 0, sizeof(*ctx));
	ctx->db = r->db;
	ctx->queue_id = db_res_int(rows, i, 0);
	ctx->attempts = (int)db_res_int(rows, i, 1);
	ctx->post_id = post.id;
	ctx->post = &post;
	ctx->list = &list;
	ctx->writes = r->writes;
	rc = stage_defs[stage].run(ctx);
	post_free(&post);
	ctx->post = NULL;
	ctx->list = NULL;
	return rc;
}

/* One batch of up to `limit' rows: returns the rows done (the limit
 * when more may be due), 0 when none was due, or -1 when the connection
 * broke. */
static int
runner_batch(struct runner *r, int stage, int limit)
{
	struct db_res	*rows, *report;
	struct stage_ctx ctx;
	struct buf	 ids = { 0 }, nexts = { 0 };
	struct runner_done {
		long long	 post;
		const char	*next;
		const char	*event;
		char		 fields[sizeof(ctx.event_fields)];
	} *done;
	long long	 token = runner_token();
	int		 n, i, more, rc = 0;

	if ((rows = runner_claim(r, stage, limit, token, &report)) == NULL)
		return -1;
	more = runner_claim_report(stage, report);
	db_res_free(report);
	if ((n = db_res_rows(rows)) == 0) {
		db_res_free(rows);
		if (db_cmd(r->db, "COMMIT", NULL) == -1)
			return -1;
		return more ? limit : 0;
	}
	if ((done = calloc(n, sizeof(*done))) == NULL) {
		log_error("runner_out_of_memory", "stage=%s rows=%d",
		    stage_defs[stage].name, n);
		db_res_free(rows);
		(void)db_cmd(r->db, "ROLLBACK", NULL);
		return -1;
	}
	rc |= buf_adds(&ids, "{");
	rc |= buf_adds(&nexts, "{");
	for (i = 0; i < n && rc == 0; i++) {
		if (runner_row(r, stage, rows, i, &ctx) == -1)
			break;
		rc |= buf_addf(&ids, "%s%lld", i ? "," : "", ctx.queue_id);
		rc |= buf_addf(&nexts, "%s%s", i ? "," : "",
		    ctx.next ? ctx.next : "NULL");
		done[i].post = ctx.post_id;
		done[i].next = ctx.next ? ctx.next : "-";
		done[i].event = ctx.event;
		memcpy(done[i].fields, ctx.event_fields,
		    sizeof(done[i].fields));
	}
	db_res_free(rows);
	if (i == n && rc == 0)
		rc = runner_commit(r, &ids, &nexts);
	buf_free(&ids);
	buf_free(&nexts);
	/* Only once committed: a batch rolled back is done again, and a
	 * line per row that took effect is what a reader counts on. */
	for (int k = 0; i == n && rc == 0 && k < n; k++) {
		if (done[k].event != NULL)
			log_info(done[k].event, "%s", done[k].fields);
		log_debug("stage_done", "stage=%s post=%lld next=%s",
		    stage_defs[stage].name, done[k].post, done[k].next);
	}
	free(done);
	if (i == n && rc == 0)
		return more ? limit : n;
	db_batch_reset(r->writes);
	if (!db_ok(r->db))
		return -1;
	if (i == n && n > 1) {
		/* A deferred statement failed and it is not known whose:
		 * hand the rows back and go through them one by one to
		 * find out. */
		struct db_params p;
		const struct db_params *params[] = { NULL, &p };
		const char *sql[] = { "ROLLBACK",
		    "SELECT quire.queue_release($1)" };
		struct db_res *res;
		char tok[24];

		db_params_init(&p);
		db_param_int(&p, tok, token);
		if ((res = db_exec_pipeline(r->db, 2, sql, params,
		    DB_TEXT)) == NULL)
			return -1;
		db_res_free(res);
		for (int k = 0; k < n; k++)
			if (runner_batch(r, stage, 1) == -1)
				return -1;
		return limit;
	}
	if (i == n)
		stage_errorf(&ctx, "%s", db_error(r->db));
	runner_fail_row(r, stage, &ctx, token);
	/* The rest of the batch was rolled back and is due now: report a
	 * full batch so that the caller claims again. */
	return db_ok(r->db) ? limit : -1;
}

static void
runner_arm_timer(struct runner *r)
{
	struct db_params p;
	struct db_res	*res;
	struct buf_names { char s[128]; } names;
	char		 recheck[32];
	struct timeval	 tv;
	double		 due;
	size_t		 o = 0;

	o += snprintf(names.s, sizeof(names.s), "{");
	for (int s = 0; s < STAGE_COUNT; s++)
		if (r->cfg->stages & (1u << s))
			o += snprintf(names.s + o, sizeof(names.s) - o, "%s%s",
			    o > 1 ? "," : "", stage_defs[s].name);
	snprintf(names.s + o, sizeof(names.s) - o, "}");
	/* Rows due but held by another session are looked at again
	 * after a claim's lease: they may be a lost host's. */
	snprintf(recheck, sizeof(recheck), "%d seconds",
	    r->cfg->claim_lease > 1 ? r->cfg->claim_lease : 1);
	db_params_init(&p);
	db_param_text(&p, names.s);
	db_param_text(&p, recheck);
	res = db_exec(r->db, "SELECT quire.queue_next_due($1, $2)", &p,
	    DB_TEXT);
	if (res == NULL)
		return;
	evtimer_del(r->ev_due);
	if (!db_res_isnull(res, 0, 0)) {
		due = strtod(db_res_value(res, 0, 0), NULL);
		if (due < 0)
			due = 0;
		tv.tv_sec = (long)due;
		tv.tv_usec = (long)((due - (double)tv.tv_sec) * 1e6) + 1000;
		evtimer_add(r->ev_due, &tv);
	}
	db_res_free(res);
}

static void
runner_on_db(evutil_socket_t fd, short what, void *arg)
{
	struct runner	*r = arg;
	long		 mask;

	(void)fd;
	(void)what;
	if ((mask = db_notifications(r->db)) == -1) {
		log_warn("runner_db_lost", "reason=%s", log_q(db_error(r->db)));
		runner_connect(r);
		mask = 0;
	}
	runner_mark(r, mask);
	runner_drain(r);
}

static void
runner_on_due(evutil_socket_t fd, short what, void *arg)
{
	struct runner	*r = arg;

	(void)fd;
	(void)what;
	r->dirty = r->cfg->stages;
	runner_drain(r);
}

static void
runner_watch(struct runner *r)
{
	if (r->ev_db == NULL) {
		r->ev_db = event_new(r->base, db_socket(r->db),
		    EV_READ | EV_PERSIST, runner_on_db, r);
		event_add(r->ev_db, NULL);
	}
}

static void
runner_count_scan(struct runner *r, int rows)
{
	if (r->scanning && rows > 0)
		r->scanned += rows;
}

/* Work every dirty stage until it has nothing due.  Our own commits
 * notify the next stage, so the loop picks that up in its next round
 * without waiting for the event loop. */
static void
runner_drain(struct runner *r)
{
	long	 mask;
	int	 n, lost;

again:
	while (r->dirty != 0) {
		lost = 0;
		for (int s = 0; s < STAGE_COUNT; s++) {
			if (stop_requested)
				return;
			if (!(r->dirty & (1u << s)))
				continue;
			r->dirty &= ~(1u << s);
			/* A short batch drained what was due; rows that come
			 * later arrive with their own notification. */
			while ((n = runner_batch(r, s, r->cfg->batch)) ==
			    r->cfg->batch && !stop_requested)
				runner_count_scan(r, n);
			runner_count_scan(r, n);
			if (n == -1) {
				log_warn("runner_db_lost", "reason=%s",
				    log_q(db_error(r->db)));
				runner_connect(r);
				lost = 1;
				break;
			}
		}
		/* The first round since connecting was the scan. */
		if (r->scanning && !lost) {
			log_info("runner_scanned", "app=%s rows=%d",
			    log_q(r->cfg->appname), r->scanned);
			r->scanning = 0;
		}
		if ((mask = db_notifications(r->db)) == -1)
			continue;
		runner_mark(r, mask);
	}
	runner_watch(r);
	runner_arm_timer(r);
	/* libpq reads notifications off the socket during any statement,
	 * the timer's query included; one read there leaves the socket
	 * quiet, so look before going back to sleep. */
	if ((mask = db_notifications(r->db)) == -1) {
		log_warn("runner_db_lost", "reason=%s", log_q(db_error(r->db)));
		runner_connect(r);
		goto again;
	}
	runner_mark(r, mask);
	if (r->dirty != 0)
		goto again;
	/* Asleep: what the last batches freed goes back to the system. */
	malloc_trim(0);
}

static void
runner_on_stop(void *arg)
{
	struct runner	*r = arg;

	event_base_loopbreak(r->base);
}

int
runner_main(const struct runner_config *cfg)
{
	struct runner	 r;

	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	for (int s = 0; s < STAGE_COUNT; s++) {
		if (!(cfg->stages & (1u << s)))
			continue;
		r.channels[r.nchannels] = stage_defs[s].channel;
		r.channel_stage[r.nchannels++] = s;
	}
	if ((r.base = event_base_new()) == NULL)
		return -1;
	r.ev_due = evtimer_new(r.base, runner_on_due, &r);
	if ((r.writes = db_batch_new()) == NULL ||
	    stop_watch(r.base, runner_on_stop, &r) == -1)
		return -1;
	runner_connect(&r);
	runner_drain(&r);
	event_base_dispatch(r.base);
	return stop_requested ? 0 : -1;
}
