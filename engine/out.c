/*
 * out: SMTP delivery under a lease.
 *
 * Sending cannot be one transaction with the database, so each batch
 * goes through three steps:
 *
 *  1. claim: quire.delivery_claim leases up to max_recipients due copies
 *     of one post, with a fresh token (committed, so another runner
 *     skips them);
 *  2. send: one SMTP transaction for the batch, or one a recipient for
 *     VERP (pipelined on the kept connection; one transaction with XVERP
 *     when the relay offers it);
 *  3. record: quire.delivery_record stores every recipient's reply,
 *     durably, but only where the token still matches.
 *
 * A crash between 1 and 3 leaves the batch leased; when the lease
 * expires another runner sends it again.  That is the one case a member
 * can get a copy twice, and it is bounded by one batch.  Nothing else is
 * re-sent: finished copies have left the delivery table.  A worker that
 * only lost the database keeps the relay's answers of its batches (and
 * of a record whose commit it could not confirm): back, it renews their
 * leases first, then finds each record in delivery_log by its token or
 * makes it again.
 *
 * While a batch is in flight its worker renews the lease every third of
 * --lease, so a relay that is slow but within --smtp-timeout (a VERP
 * batch is up to 50 transactions, each with its own timeouts) does not
 * let another runner, or this one's next slot, take the batch over and
 * send it again while its answer is still coming.  A worker that dies,
 * is frozen or is cut off renews nothing, and its lease runs out.
 *
 * The process sleeps on LISTEN quire_out and on one timer for the
 * earliest retry or lease expiry.  On SIGTERM (stop.h) it claims no
 * more and returns once the batches in flight are recorded, so a stop
 * leaves no lease to run out.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "buf.h"
#include "db.h"
#include "log.h"
#include "out.h"
#include "smtp.h"
#include "stop.h"
#include "verp.h"

struct out_msg {
	long long	 post_id;
	int		 refs;
	struct db_res	*res;		/* owns the bytes */
	struct iovec	 iov[2];	/* header block, body */
	const char	*bounces;	/* list-bounces@host */
	const char	*list;
};

struct out_batch {
	struct out_msg	*msg;
	char		 token[37];
	int		 n;
	long long	*ids;
	char		**rcpts;
	char		**senders;	/* VERP envelope senders */
	int		 verp;
	struct smtp_txn	*txns;
	size_t		 ntxns;
	struct smtp_result *results;
	struct timespec	 started;
};

struct out_slot {
	struct out	*out;
	struct smtp_conn *conn;
	struct out_batch *batch;
};

struct out {
	const struct out_config *cfg;
	struct event_base *base;
	struct db	*db;
	struct event	*ev_db;
	struct event	*ev_due;
	struct event	*ev_pump;	/* claim for the next idle slot */
	struct event	*ev_renew;	/* leases of the batches in flight */
	struct out_msg	*cache;
	struct out_slot	 slots[OUT_MAX_CONNS];
	int		 nslots;
	/* Sent, but the record's commit has an unknown outcome: the
	 * database went away.  Recorded again once it is back. */
	struct out_batch *pending[OUT_MAX_CONNS];
	int		 npending;
	int		 scanning;	/* no empty claim since connecting */
	int		 scanned;	/* batches claimed meanwhile */
	struct smtp_config smtp;
};

static void	out_pump(struct out *);

static void
out_token(char t[37])
{
	unsigned char	 b[16];

	if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
		log_error("out_token_failed", "reason=getrandom");
		abort();
	}
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(t, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static double
out_ms_since(const struct timespec *t0)
{
	struct timespec	 t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1e3 + (t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
out_msg_unref(struct out *o, struct out_msg *m)
{
	if (m == NULL || --m->refs > 0)
		return;
	if (o->cache == m)
		o->cache = NULL;
	db_res_free(m->res);
	free(m);
}

static void
out_msg_cache(struct out *o, struct out_msg *m)
{
	if (o->cache != NULL)
		out_msg_unref(o, o->cache);
	o->cache = m;
	m->refs = 2;		/* the cache's and the caller's */
}

/* What a message is made of, for a WHERE naming the post. */
#define OUT_MSG_SELECT \
    "SELECT p.id, p.headers, m.raw, p.body_offset, ls.bounces_address," \
    "       ls.fqdn_listname" \
    "  FROM quire.post p JOIN quire.message m ON m.id = p.message_id" \
    "  JOIN quire.list_settings ls ON ls.id = p.list_id"

/* A message from a row of OUT_MSG_SELECT, which it then owns. */
static struct out_msg *
out_msg_new(struct out *o, long long post_id, struct db_res *r)
{
	struct out_msg	*m;
	size_t		 raw_len, off;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	raw_len = db_res_length(r, 0, 2);
	off = (size_t)db_res_int(r, 0, 3);
	if (off > raw_len)
		off = raw_len;
	m->res = r;
	m->post_id = post_id;
	m->iov[0].iov_base = (void *)db_res_value(r, 0, 1);
	m->iov[0].iov_len = db_res_length(r, 0, 1);
	m->iov[1].iov_base = (char *)db_res_value(r, 0, 2) + off;
	m->iov[1].iov_len = raw_len - off;
	m->bounces = db_res_value(r, 0, 4);
	m->list = db_res_value(r, 0, 5);
	out_msg_cache(o, m);
	return m;
}

/* The bytes of a post by a query of their own. */
static struct out_msg *
out_msg_fetch(struct out *o, long long post_id)
{
	struct db_params p;
	struct db_res	*r;
	struct out_msg	*m;
	char		 id[24];

	db_params_init(&p);
	db_param_int(&p, id, post_id);
	r = db_exec(o->db, OUT_MSG_SELECT
	    " WHERE p.id = $1 AND p.headers IS NOT NULL", &p, DB_BINARY);
	if (r == NULL || db_res_rows(r) != 1 ||
	    (m = out_msg_new(o, post_id, r)) == NULL) {
		db_res_free(r);
		return NULL;
	}
	return m;
}

/* The bytes of a post, shared by all its batches in flight; the last one
 * loaded is kept, since a large list's batches come one after another.
 * `f' is the fetch that came with the claim: empty when the cache has
 * the post, else the post's row, which the message then owns. */
static struct out_msg *
out_msg_from_fetch(struct out *o, long long post_id, struct db_res *f,
    int *taken)
{
	struct out_msg	*m;

	*taken = 0;
	if (o->cache != NULL && o->cache->post_id == post_id) {
		o->cache->refs++;
		return o->cache;
	}
	if (db_res_rows(f) != 1 || db_res_int(f, 0, 0) != post_id) {
		log_warn("out_bytes_refetched", "post=%lld rows=%d", post_id,
		    db_res_rows(f));
		return out_msg_fetch(o, post_id);
	}
	if ((m = out_msg_new(o, post_id, f)) != NULL)
		*taken = 1;
	return m;
}

static void
out_batch_free(struct out *o, struct out_batch *b)
{
	for (int i = 0; i < b->n; i++) {
		free(b->rcpts[i]);
		if (b->senders)
			free(b->senders[i]);
	}
	free(b->ids);
	free(b->rcpts);
	free(b->senders);
	free(b->txns);
	free(b->results);
	out_msg_unref(o, b->msg);
	free(b);
}

/* The SMTP transactions of a batch: one for all, or one each (VERP). */
static int
out_batch_txns(struct out_batch *b, int xverp)
{
	struct out_msg	*m = b->msg;
	char		 v[1024];

	b->results = calloc(b->n, sizeof(*b->results));
	int	 each = b->verp && !xverp;

	b->ntxns = each ? (size_t)b->n : 1;
	b->txns = calloc(b->ntxns, sizeof(*b->txns));
	if (b->results == NULL || b->txns == NULL)
		return -1;
	if (!each) {
		b->txns[0].mail_from = m->bounces;
		b->txns[0].xverp = b->verp && xverp;
		b->txns[0].rcpts = (const char **)b->rcpts;
		b->txns[0].nrcpts = b->n;
		b->txns[0].data = m->iov;
		b->txns[0].ndata = 2;
		b->txns[0].results = b->results;
		return 0;
	}
	if ((b->senders = calloc(b->n, sizeof(char *))) == NULL)
		return -1;
	for (int i = 0; i < b->n; i++) {
		/* An address too long for a path of its own (RFC 5321: 256
		 * octets) goes with the plain sender, unVERPed. */
		if (verp_encode(m->bounces, b->rcpts[i], v, sizeof(v)) < 0 ||
		    strlen(v) > 254)
			snprintf(v, sizeof(v), "%s", m->bounces);
		if ((b->senders[i] = strdup(v)) == NULL)
			return -1;
		b->txns[i].mail_from = b->senders[i];
		b->txns[i].rcpts = (const char **)&b->rcpts[i];
		b->txns[i].nrcpts = 1;
		b->txns[i].data = m->iov;
		b->txns[i].ndata = 2;
		b->txns[i].results = &b->results[i];
	}
	return 0;
}

/* Lease a batch, and in the same round trip fetch its post's bytes
 * unless they are the cached post's.  Two statements, not one: a
 * statement's joins read the snapshot taken when it began, while
 * delivery_claim (plpgsql) sees rows committed since, so a single query
 * could lease the copies of a post committed a moment ago and still read
 * that post's row from before it was decorated. */
static const char out_claim_sql[] =
    "SELECT id, post_id, email, verp::int"
    "  FROM quire.delivery_claim($1, $2, $3, $4)";

/* The tokens of this worker's batches in flight or waiting to be
 * recorded, as an array literal; their number, or -1. */
static int
out_tokens(const struct out *o, struct buf *tokens)
{
	int	 n = 0, rc = 0;

	rc |= buf_adds(tokens, "{");
	for (int i = 0; i < o->nslots; i++)
		if (o->slots[i].batch != NULL)
			rc |= buf_addf(tokens, "%s%s", n++ ? "," : "",
			    o->slots[i].batch->token);
	for (int i = 0; i < o->npending; i++)
		rc |= buf_addf(tokens, "%s%s", n++ ? "," : "",
		    o->pending[i]->token);
	rc |= buf_adds(tokens, "}");
	return rc ? -1 : n;
}

static const char out_fetch_sql[] = OUT_MSG_SELECT
    " WHERE p.id = (SELECT d.post_id FROM quire.delivery d"
    "                WHERE d.lease_token = $1 LIMIT 1)"
    "   AND p.id <> $2 AND p.headers IS NOT NULL";

static struct out_batch *
out_claim(struct out *o)
{
	struct db_params claim, fetch;
	const struct db_params *params[] = { &claim, &fetch };
	const char	*sql[] = { out_claim_sql, out_fetch_sql };
	struct db_res	*res[2];
	struct out_batch *b;
	struct buf	 keep = { 0 };
	char		 lease[32], cached[24];
	int		 n, taken = 0;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	if (out_tokens(o, &keep) == -1) {
		buf_free(&keep);
		free(b);
		return NULL;
	}
	out_token(b->token);
	snprintf(lease, sizeof(lease), "%d seconds", o->cfg->lease);
	db_params_init(&claim);
	db_param_text(&claim, b->token);
	db_param_text(&claim, lease);
	db_param_text(&claim, o->cfg->appname);
	db_param_text(&claim, keep.p);
	db_params_init(&fetch);
	db_param_text(&fetch, b->token);
	db_param_int(&fetch, cached, o->cache ? o->cache->post_id : 0);
	n = db_exec_pipeline_each(o->db, 2, sql, params, DB_BINARY, res);
	buf_free(&keep);
	if (n == -1) {
		log_warn("out_claim_failed", "reason=%s",
		    log_q(db_error(o->db)));
		free(b);
		return NULL;
	}
	if ((n = db_res_rows(res[0])) == 0) {
		db_res_free(res[0]);
		db_res_free(res[1]);
		free(b);
		return NULL;
	}
	b->n = n;
	b->ids = calloc(n, sizeof(*b->ids));
	b->rcpts = calloc(n, sizeof(*b->rcpts));
	for (int i = 0; b->ids && b->rcpts && i < n; i++) {
		b->ids[i] = db_res_int(res[0], i, 0);
		b->rcpts[i] = strdup(db_res_value(res[0], i, 2));
	}
	b->verp = db_res_int(res[0], 0, 3) == 1;
	/* With the token on the batch's record line, this tells which
	 * batches a dead worker left in flight: the ones sent again when
	 * their lease runs out. */
	log_info("delivery_leased", "post=%lld token=%s rcpts=%d",
	    db_res_int(res[0], 0, 1), b->token, n);
	b->msg = out_msg_from_fetch(o, db_res_int(res[0], 0, 1), res[1],
	    &taken);
	if (b->msg == NULL)
		log_error("out_message_missing", "post=%lld reason=%s",
		    db_res_int(res[0], 0, 1), log_q(db_error(o->db)));
	db_res_free(res[0]);
	if (!taken)
		db_res_free(res[1]);
	clock_gettime(CLOCK_MONOTONIC, &b->started);
	return b;
}

static int
out_array_text(struct buf *ids, struct buf *codes, struct buf *replies,
    const struct out_batch *b)
{
	int	 rc = 0;

	rc |= buf_adds(ids, "{");
	rc |= buf_adds(codes, "{");
	rc |= buf_adds(replies, "{");
	for (int i = 0; i < b->n; i++) {
		char text[sizeof(b->results[i].text)];

		snprintf(text, sizeof(text), "%s", b->results[i].text);
		text_clean(text);
		rc |= buf_addf(ids, "%s%lld", i ? "," : "", b->ids[i]);
		rc |= buf_addf(codes, "%s%d", i ? "," : "",
		    b->results[i].code);
		rc |= buf_add_element(replies, text, i == 0);
	}
	rc |= buf_adds(ids, "}");
	rc |= buf_adds(codes, "}");
	rc |= buf_adds(replies, "}");
	return rc ? -1 : 0;
}

static void
out_log_batch(const struct out_batch *b, const char *sent,
    const char *deferred, const char *bounced, const char *expired,
    const char *stale, int late)
{
	log_info("delivery_batch", "post=%lld token=%s list=%s rcpts=%d "
	    "txns=%zu verp=%d sent=%s deferred=%s bounced=%s expired=%s "
	    "stale=%s late=%d code=%d reply=%s ms=%.1f", b->msg->post_id,
	    b->token, b->msg->list, b->n, b->ntxns, b->verp, sent, deferred,
	    bounced, expired, stale, late, b->results[0].code,
	    log_q(b->results[0].text), out_ms_since(&b->started));
	if (atoi(stale) > 0)
		log_warn("delivery_lease_lost", "post=%lld stale=%s",
		    b->msg->post_id, stale);
}

/* A batch given up unrecorded: its lease runs out and it is sent
 * again. */
static void
out_log_unrecorded(const struct out_batch *b, const char *reason)
{
	log_error("delivery_unrecorded", "post=%lld token=%s rcpts=%d "
	    "reason=%s", b->msg->post_id, b->token, b->n, log_q(reason));
}

/* Record the relay's answers under the batch's token: 0 when done (or
 * refused for good, logged), -1 when the connection was lost on the
 * way, so that the outcome is unknown and the batch is kept. */
static int
out_record(struct out *o, struct out_batch *b, int late)
{
	struct buf	 ids = { 0 }, codes = { 0 }, replies = { 0 };
	struct db_params p;
	struct db_res	*r = NULL;
	char		 base[32], max[32], giveup[32];
	int		 rc = 0;

	snprintf(base, sizeof(base), "%d seconds", o->cfg->retry_base);
	snprintf(max, sizeof(max), "%d seconds", o->cfg->retry_max);
	snprintf(giveup, sizeof(giveup), "%d seconds", o->cfg->give_up);
	if (out_array_text(&ids, &codes, &replies, b) == 0) {
		db_params_init(&p);
		db_param_text(&p, b->token);
		db_param_text(&p, ids.p);
		db_param_text(&p, codes.p);
		db_param_text(&p, replies.p);
		db_param_text(&p, o->cfg->appname);
		db_param_text(&p, base);
		db_param_text(&p, max);
		db_param_text(&p, giveup);
		r = db_exec(o->db, "SELECT * FROM quire.delivery_record($1,"
		    " $2, $3, $4, $5, $6, $7, $8)", &p, DB_TEXT);
	}
	if (r != NULL)
		out_log_batch(b, db_res_value(r, 0, 0), db_res_value(r, 0, 1),
		    db_res_value(r, 0, 2), db_res_value(r, 0, 3),
		    db_res_value(r, 0, 4), late);
	else if (!db_ok(o->db))
		rc = -1;
	else
		out_log_unrecorded(b, db_error(o->db));
	db_res_free(r);
	buf_free(&ids);
	buf_free(&codes);
	buf_free(&replies);
	return rc;
}

/* Keep a batch whose record could not be known to have committed. */
static void
out_keep_pending(struct out *o, struct out_batch *b)
{
	if (o->npending == OUT_MAX_CONNS) {
		out_log_unrecorded(b, "database connection lost");
		out_batch_free(o, b);
		return;
	}
	log_warn("delivery_record_pending", "post=%lld token=%s rcpts=%d",
	    b->msg->post_id, b->token, b->n);
	o->pending[o->npending++] = b;
}

/* A pending batch's record, if its commit landed before the database
 * went away: 1 (logged), 0 if it did not, -1 if the connection broke.
 * The record may stand on this server alone (its wait for the
 * synchronous standby cut short): the row locks write WAL, so that this
 * commit waits for the standby too, and found means on both. */
static int
out_record_landed(struct out *o, struct out_batch *b)
{
	struct db_params p;
	struct db_res	*r;
	char		 post[24], stale[24];
	int		 rc;

	db_params_init(&p);
	db_param_int(&p, post, b->msg->post_id);
	db_param_text(&p, b->token);
	r = db_exec(o->db, "SELECT count(*) FILTER (WHERE outcome = 'sent'),"
	    " count(*) FILTER (WHERE outcome = 'deferred'),"
	    " count(*) FILTER (WHERE outcome = 'bounced'),"
	    " count(*) FILTER (WHERE outcome = 'expired'), count(*)"
	    " FROM (SELECT l.outcome FROM quire.delivery_log l"
	    "        WHERE l.post_id = $1 AND l.lease_token = $2::uuid"
	    "          FOR KEY SHARE) l", &p, DB_TEXT);
	if (r == NULL)
		return db_ok(o->db) ? 0 : -1;
	rc = atoi(db_res_value(r, 0, 4)) > 0;
	if (rc) {
		snprintf(stale, sizeof(stale), "%d",
		    b->n - atoi(db_res_value(r, 0, 4)));
		out_log_batch(b, db_res_value(r, 0, 0), db_res_value(r, 0, 1),
		    db_res_value(r, 0, 2), db_res_value(r, 0, 3), stale, 1);
	}
	db_res_free(r);
	return rc;
}

/* Back on the database: each pending batch is found recorded, or is
 * recorded now under its token (still its own unless another runner
 * took it over once its lease ran out: then counted stale). */
static void
out_record_pending(struct out *o)
{
	int	 i, rc;

	for (i = 0; i < o->npending; i++) {
		struct out_batch *b = o->pending[i];

		if ((rc = out_record_landed(o, b)) == 0)
			rc = out_record(o, b, 1);
		if (rc == -1)
			break;
		out_batch_free(o, b);
	}
	memmove(o->pending, o->pending + i,
	    (size_t)(o->npending - i) * sizeof(o->pending[0]));
	o->npending -= i;
}

/* Stopping with the database away: the leases will run out, and these
 * batches go again. */
static void
out_abandon_pending(struct out *o)
{
	for (int i = 0; i < o->nslots; i++)
		if (o->slots[i].batch != NULL)
			out_log_unrecorded(o->slots[i].batch,
			    "stopped with the database away");
	for (int i = 0; i < o->npending; i++) {
		out_log_unrecorded(o->pending[i],
		    "stopped with the database away");
		out_batch_free(o, o->pending[i]);
	}
	o->npending = 0;
}

static int
out_in_flight(const struct out *o)
{
	int	 n = 0;

	for (int i = 0; i < o->nslots; i++)
		n += o->slots[i].batch != NULL;
	return n;
}

/* Every third of --lease while a batch is in flight. */
static void
out_renew_arm(struct out *o)
{
	struct timeval	 tv;

	tv.tv_sec = o->cfg->lease / 3;
	tv.tv_usec = o->cfg->lease % 3 * 333333;
	if (tv.tv_sec == 0 && tv.tv_usec == 0)
		tv.tv_usec = 333333;
	evtimer_add(o->ev_renew, &tv);
}

/* Push out the lease of every batch in flight, under its own token: a
 * lease another runner took over after it ran out stays theirs. */
static void
out_renew(evutil_socket_t fd, short what, void *arg)
{
	struct out	*o = arg;
	struct buf	 tokens = { 0 };
	struct db_params p;
	char		 lease[32];
	int		 n;

	(void)fd;
	(void)what;
	n = out_tokens(o, &tokens);
	if (n > 0 && o->db != NULL && db_ok(o->db)) {
		snprintf(lease, sizeof(lease), "%d seconds", o->cfg->lease);
		db_params_init(&p);
		db_param_text(&p, tokens.p);
		db_param_text(&p, lease);
		if (db_cmd(o->db, "UPDATE quire.delivery"
		    " SET lease_until = now() + $2::interval"
		    " WHERE lease_token = ANY ($1::uuid[])"
		    "   AND state = 'leased'", &p) == -1)
			log_warn("delivery_lease_unrenewed", "batches=%d "
			    "reason=%s", n, log_q(db_error(o->db)));
	}
	buf_free(&tokens);
	if (n > 0)
		out_renew_arm(o);
}

static void
out_on_sent(void *arg, struct smtp_txn *txns, size_t ntxns)
{
	struct out_slot	*s = arg;
	struct out	*o = s->out;
	struct out_batch *b = s->batch;

	(void)txns;
	(void)ntxns;
	s->batch = NULL;
	if (!db_ok(o->db)) {
		db_close(o->db);
		o->db = NULL;
	}
	if (o->db != NULL && out_record(o, b, 0) == 0)
		out_batch_free(o, b);
	else
		out_keep_pending(o, b);
	/* An idle worker sleeps without a timer. */
	if (out_in_flight(o) == 0)
		evtimer_del(o->ev_renew);
	out_pump(o);
}

static void
out_release_unsendable(struct out *o, struct out_batch *b)
{
	struct db_params p;

	/* Nothing was sent: give the copies back for a later try rather
	 * than let them wait for the lease to run out. */
	db_params_init(&p);
	db_param_text(&p, b->token);
	if (db_cmd(o->db, "UPDATE quire.delivery SET state = 'queued',"
	    " lease_token = NULL, lease_until = NULL, leased_by = NULL,"
	    " not_before = now() + interval '5 seconds'"
	    " WHERE lease_token = $1", &p) == -1)
		log_error("out_release_failed", "token=%s reason=%s", b->token,
		    log_q(db_error(o->db)));
	log_error("out_batch_skipped", "rcpts=%d token=%s", b->n, b->token);
	out_batch_free(o, b);
}

static int
out_start(struct out *o, struct out_slot *s)
{
	struct out_batch *b = out_claim(o);
	int		 xverp;

	if (b == NULL)
		return 0;
	if (b->msg == NULL || b->ids == NULL || b->rcpts == NULL) {
		out_release_unsendable(o, b);
		return 0;
	}
	xverp = smtp_conn_connected(s->conn) && smtp_conn_has_xverp(s->conn);
	if (out_batch_txns(b, xverp) == -1) {
		out_release_unsendable(o, b);
		return 0;
	}
	s->batch = b;
	if (smtp_conn_send(s->conn, b->txns, b->ntxns, out_on_sent, s) == -1) {
		log_error("smtp_send_failed", "post=%lld token=%s",
		    b->msg->post_id, b->token);
		s->batch = NULL;
		out_batch_free(o, b);
		return 0;
	}
	if (!evtimer_pending(o->ev_renew, NULL))
		out_renew_arm(o);
	return 1;
}

static void
out_arm_timer(struct out *o)
{
	struct db_res	*r;
	struct timeval	 tv;
	double		 due;

	evtimer_del(o->ev_due);
	r = db_exec(o->db, "SELECT quire.delivery_next_due()", NULL, DB_TEXT);
	if (r == NULL)
		return;
	if (!db_res_isnull(r, 0, 0)) {
		due = strtod(db_res_value(r, 0, 0), NULL);
		/* Due but not claimable: another runner is claiming it. */
		if (due <= 0)
			due = 0.5;
		tv.tv_sec = (long)due;
		tv.tv_usec = (long)((due - (double)tv.tv_sec) * 1e6) + 1000;
		evtimer_add(o->ev_due, &tv);
	}
	db_res_free(r);
}

static void	out_on_db(evutil_socket_t, short, void *);

/* A connection, with retries; NULL once a stop is asked for, unless
 * batches wait to be recorded: then it goes on trying for
 * --smtp-timeout, so that a stop during a database restart does not
 * leave them to be sent again. */
static struct db *
out_connect_db(struct out *o)
{
	struct db	*db;
	struct timespec	 t0;

	db = db_connect_retry(o->cfg->conninfo, o->cfg->appname,
	    &stop_requested);
	if (db != NULL || out_in_flight(o) + o->npending == 0)
		return db;
	log_info("out_stop_waits_for_db", "batches=%d seconds=%d",
	    out_in_flight(o) + o->npending, o->cfg->smtp_timeout);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (out_ms_since(&t0) < o->cfg->smtp_timeout * 1000.0) {
		usleep(250 * 1000);
		if ((db = db_connect(o->cfg->conninfo, o->cfg->appname)) !=
		    NULL)
			return db;
	}
	return NULL;
}

/* Blocks the loop until the database is back: the relay's answers to
 * the batches in flight wait unread meanwhile.  Their leases are renewed
 * first thing after the reconnect, before any claim, so that an outage
 * longer than --lease does not hand this worker its own batches to send
 * again; another host's worker back first leaves them alone for 10 s
 * after the server's restart, crash restart or promotion
 * (quire.server_epoch). */
static void
out_connect(struct out *o)
{
	static const char *const chan[] = { "quire_out" };

	if (o->ev_db != NULL) {
		event_free(o->ev_db);
		o->ev_db = NULL;
	}
	db_close(o->db);
	for (;;) {
		o->db = out_connect_db(o);
		/* Asked to stop, and the database stayed away: what is in
		 * flight cannot be recorded, and its lease will run out. */
		if (o->db == NULL) {
			out_abandon_pending(o);
			_exit(0);
		}
		if (db_listen(o->db, chan, 1) == 0)
			break;
		db_close(o->db);
	}
	db_cancel_from_signal_on(o->db);
	out_renew(-1, 0, o);
	out_record_pending(o);
	o->ev_db = event_new(o->base, db_socket(o->db), EV_READ | EV_PERSIST,
	    out_on_db, o);
	event_add(o->ev_db, NULL);
	o->scanning = 1;
	o->scanned = 0;
	log_info("runner_ready", "app=%s", log_q(o->cfg->appname));
}

/* Fill every idle connection with a batch, then sleep until the next
 * notification, completion or due time. */
static void
out_pump(struct out *o)
{
	int	 idle;
	long	 mask;

again:
	if (stop_requested) {
		for (int i = 0; i < o->nslots; i++)
			if (o->slots[i].batch != NULL)
				return;
		event_base_loopbreak(o->base);
		return;
	}
	idle = 0;
	if (o->db == NULL || !db_ok(o->db)) {
		/* Found closed by a send's callback, or by a read that
		 * failed nothing (the server's farewell came as a notice). */
		log_warn("runner_db_lost", "reason=%s", log_q(o->db == NULL ?
		    "lost while sending" : *db_error(o->db) ? db_error(o->db) :
		    "closed by the server"));
		out_connect(o);
	}
	for (int i = 0; i < o->nslots; i++) {
		struct out_slot *s = &o->slots[i];

		if (s->batch != NULL)
			continue;
		if (!out_start(o, s)) {
			idle = 1;
			break;
		}
		if (o->scanning)
			o->scanned++;
		/* Let this batch's first write leave before claiming the
		 * next: come back from the event loop for the other slots. */
		for (int j = i + 1; j < o->nslots; j++)
			if (o->slots[j].batch == NULL) {
				event_active(o->ev_pump, EV_TIMEOUT, 0);
				return;
			}
		break;
	}
	if (!db_ok(o->db)) {
		log_warn("runner_db_lost", "reason=%s", log_q(db_error(o->db)));
		/* Claim again at once: notifications sent meanwhile are
		 * gone, and the timer would only come after a due check. */
		out_connect(o);
		goto again;
	}
	if (!idle)
		return;
	if (o->scanning) {
		log_info("runner_scanned", "app=%s batches=%d",
		    log_q(o->cfg->appname), o->scanned);
		o->scanning = 0;
	}
	out_arm_timer(o);
	/* A notification read off the socket by any statement above would
	 * otherwise wait for the next unrelated wake-up. */
	if ((mask = db_notifications(o->db)) != 0)
		goto again;
	/* Asleep with nothing in flight: hand the batches' freed buffers
	 * back, or an idle worker keeps the size of its busiest moment. */
	if (out_in_flight(o) + o->npending == 0)
		malloc_trim(0);
}

static void
out_on_db(evutil_socket_t fd, short what, void *arg)
{
	struct out	*o = arg;

	(void)fd;
	(void)what;
	if (db_notifications(o->db) == -1) {
		log_warn("runner_db_lost", "reason=%s", log_q(db_error(o->db)));
		out_connect(o);
	}
	out_pump(o);
}

static void
out_on_due(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	out_pump(arg);
}

static void
out_on_stop(void *arg)
{
	out_pump(arg);
}

int
out_main(const struct out_config *cfg)
{
	struct out	 o;

	memset(&o, 0, sizeof(o));
	o.cfg = cfg;
	if ((o.base = event_base_new()) == NULL)
		return -1;
	o.smtp.host = cfg->relay_host;
	o.smtp.port = cfg->relay_port;
	o.smtp.helo = cfg->helo;
	o.smtp.connect_timeout = cfg->smtp_timeout;
	o.smtp.reply_timeout = cfg->smtp_timeout;
	o.smtp.data_timeout = cfg->smtp_timeout * 2;
	o.nslots = cfg->connections < 1 ? 1 :
	    cfg->connections > OUT_MAX_CONNS ? OUT_MAX_CONNS : cfg->connections;
	for (int i = 0; i < o.nslots; i++) {
		o.slots[i].out = &o;
		o.slots[i].conn = smtp_conn_new(o.base, &o.smtp);
		if (o.slots[i].conn == NULL)
			return -1;
	}
	o.ev_due = evtimer_new(o.base, out_on_due, &o);
	o.ev_pump = event_new(o.base, -1, 0, out_on_due, &o);
	o.ev_renew = evtimer_new(o.base, out_renew, &o);
	/* A commit waiting for a synchronous standby that is away would
	 * hold a stop for as long; the batches it leaves stay pending and
	 * are given up as unrecorded (their leases run out). */
	if (stop_watch(o.base, out_on_stop, &o) == -1 ||
	    stop_cancel_after(cfg->smtp_timeout, db_cancel_from_signal) == -1)
		return -1;
	out_connect(&o);
	out_pump(&o);
	event_base_dispatch(o.base);
	out_abandon_pending(&o);
	return stop_requested ? 0 : -1;
}
