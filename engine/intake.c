/*
 * intake: each RCPT is looked up with quire.resolve_recipient, and each
 * complete message is stored by quire.accept, one statement and so one
 * transaction for all its lists.  The 250 replies are written only when
 * that statement's result arrives, after COMMIT.  A database that is away
 * or slow gets the MTA a 451 and it retries later; a retry of a message
 * that did commit is recognised by quire.accept and not posted twice.
 */
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "buf.h"
#include "db.h"
#include "intake.h"
#include "lmtp.h"
#include "log.h"
#include "msg_header.h"
#include "stop.h"

#define INTAKE_DEFER \
	"451 4.3.0 Temporary failure storing the message, " \
	"try again later"

static const char *const intake_subaddresses[] = {
	"post", "bounces", "confirm", "join", "leave", "request", "owner", NULL
};

/* Several connections, so that concurrent messages commit together
 * (one WAL flush for many) instead of queueing behind each other. */
#define INTAKE_MAX_DB	16

/* On SIGTERM, how long clients get to finish the transaction they are
 * in; the ones still there then are cut, and their MTAs retry. */
#define INTAKE_STOP_WAIT 10

struct intake {
	const struct intake_config *cfg;
	struct event_base *base;
	struct lmtp_server *srv;
	struct db	*db[INTAKE_MAX_DB];
	int		 ndb;
	unsigned	 next;
};

static struct db *
intake_db(struct intake *in)
{
	return in->db[in->next++ % (unsigned)in->ndb];
}

struct intake_rcpt_q {
	struct intake	*in;
	struct lmtp_txn	*txn;
	size_t		 idx;
};

struct intake_accept_q {
	struct intake	*in;
	struct lmtp_txn	*txn;
	size_t		 n;
	size_t		*map;		/* array index -> recipient */
	char		*message_id;
	size_t		 size;
};

/* A recipient's cookie: list id, sub-address and the list's size limit in
 * KB, so DATA needs no second lookup. */
static long
intake_cookie(long list_id, int sub, long limit_kb)
{
	/* 27 bits of KB is 128 GB, beyond any message LMTP takes; larger
	 * (or negative) limits mean no limit of the list's own. */
	if (limit_kb < 0 || limit_kb >= (1L << 27))
		limit_kb = 0;
	return (long)(((unsigned long)limit_kb << 36) |
	    ((unsigned long)sub << 32) | (unsigned long)list_id);
}

static long
cookie_list(long c)
{
	return c & 0xffffffffL;
}

static int
cookie_sub(long c)
{
	return (int)((c >> 32) & 0xf);
}

static long
cookie_limit(long c)
{
	return (long)((unsigned long)c >> 36);
}

static int
intake_sub_index(const char *name)
{
	for (int i = 0; intake_subaddresses[i] != NULL; i++)
		if (strcmp(intake_subaddresses[i], name) == 0)
			return i;
	return -1;
}

static void
intake_on_rcpt(void *arg, struct db_res *r, const char *err)
{
	struct intake_rcpt_q *q = arg;
	const char	*addr = lmtp_txn_rcpt(q->txn, q->idx);
	char		 reply[480];
	long		 limit;
	int		 sub;

	if (err != NULL) {
		log_warn("lmtp_rcpt_deferred", "session=%lu rcpt=%s reason=%s",
		    lmtp_txn_session_id(q->txn), log_q(addr), log_q(err));
		lmtp_txn_rcpt_done(q->txn, q->idx,
		    "451 4.3.0 Temporary failure looking up the list");
	} else if (db_res_rows(r) != 1 || db_res_isnull(r, 0, 0) ||
	    (sub = intake_sub_index(db_res_value(r, 0, 1))) < 0) {
		log_info("lmtp_rcpt_unknown", "session=%lu rcpt=%s",
		    lmtp_txn_session_id(q->txn), log_q(addr));
		snprintf(reply, sizeof(reply), "550 5.1.1 <%.400s>: no such "
		    "list", addr);
		lmtp_txn_rcpt_done(q->txn, q->idx, reply);
	} else {
		limit = atol(db_res_value(r, 0, 2));
		lmtp_txn_set_cookie(q->txn, q->idx,
		    intake_cookie(atol(db_res_value(r, 0, 0)), sub, limit));
		lmtp_txn_rcpt_done(q->txn, q->idx, "250 2.1.5 OK");
	}
	free(q);
}

static void
intake_rcpt(void *arg, struct lmtp_txn *txn, size_t idx)
{
	struct intake	*in = arg;
	struct intake_rcpt_q *q;
	struct db_params p;

	if ((q = malloc(sizeof(*q))) == NULL) {
		lmtp_txn_rcpt_done(txn, idx, "452 4.3.1 Out of memory");
		return;
	}
	q->in = in;
	q->txn = txn;
	q->idx = idx;
	db_params_init(&p);
	db_param_text(&p, lmtp_txn_rcpt(txn, idx));
	db_send(intake_db(in), "SELECT r.list_id, r.subaddress,"
	    " l.accept_size_limit"
	    "  FROM quire.resolve_recipient($1) r"
	    "  LEFT JOIN quire.list l ON l.id = r.list_id", &p, DB_TEXT,
	    intake_on_rcpt, q);
}

static void
intake_accept_free(struct intake_accept_q *q)
{
	free(q->map);
	free(q->message_id);
	free(q);
}

static void
intake_on_accept(void *arg, struct db_res *r, const char *err)
{
	struct intake_accept_q *q = arg;
	char		 reply[128];

	for (size_t i = 0; err != NULL && i < q->n; i++)
		lmtp_txn_reply(q->txn, q->map[i], INTAKE_DEFER);
	if (err != NULL)
		log_warn("lmtp_deferred", "session=%lu msgid=%s size=%zu "
		    "reason=%s", lmtp_txn_session_id(q->txn),
		    log_q(q->message_id), q->size, log_q(err));
	for (int row = 0; err == NULL && row < db_res_rows(r); row++) {
		size_t	 i = (size_t)atol(db_res_value(r, row, 0)) - 1;
		int	 dup = db_res_value(r, row, 2)[0] == 't';

		if (i >= q->n)
			continue;
		snprintf(reply, sizeof(reply), "250 2.0.0 %s as post %s",
		    dup ? "Already queued" : "Queued", db_res_value(r, row, 1));
		lmtp_txn_reply(q->txn, q->map[i], reply);
		log_info("lmtp_accept", "session=%lu rcpt=%s msgid=%s size=%zu "
		    "post=%s duplicate=%d", lmtp_txn_session_id(q->txn),
		    log_q(lmtp_txn_rcpt(q->txn, q->map[i])),
		    log_q(q->message_id), q->size, db_res_value(r, row, 1),
		    dup);
	}
	lmtp_txn_data_done(q->txn);
	intake_accept_free(q);
}

static char *
intake_message_id(const char *data, size_t len)
{
	struct msg_headers	 h;
	char			*id;

	if (msg_headers_parse(data, len, &h) == -1)
		return NULL;
	id = msg_headers_get(&h, "Message-ID");
	msg_headers_free(&h);
	return id;
}

/* Array literals for quire.accept's parameters. */
static int
intake_arrays(struct intake_accept_q *q, struct buf *rcpts, struct buf *ids,
    struct buf *subs)
{
	int	 rc = buf_adds(rcpts, "{") | buf_adds(ids, "{") |
		    buf_adds(subs, "{");

	for (size_t i = 0; i < q->n; i++) {
		long c = lmtp_txn_cookie(q->txn, q->map[i]);
		const char *a = lmtp_txn_rcpt(q->txn, q->map[i]);

		rc |= buf_add_element(rcpts, a, i == 0);
		rc |= buf_addf(ids, "%s%ld", i ? "," : "", cookie_list(c));
		rc |= buf_addf(subs, "%s%s", i ? "," : "",
		    intake_subaddresses[cookie_sub(c)]);
	}
	rc |= buf_adds(rcpts, "}") | buf_adds(ids, "}") | buf_adds(subs, "}");
	return rc ? -1 : 0;
}

static void
intake_send_accept(struct intake *in, struct intake_accept_q *q,
    const char *data, size_t len)
{
	struct buf	 rcpts = { 0 }, ids = { 0 }, subs = { 0 };
	struct db_params p;

	if (intake_arrays(q, &rcpts, &ids, &subs) == -1) {
		intake_on_accept(q, NULL, "out of memory");
		goto out;
	}
	/* XXX libpq copies the message into its output buffer, which grows
	 * by doubling and never shrinks: each of the db_connections keeps
	 * up to twice the largest message it sent, outside max_buffered. */
	db_params_init(&p);
	db_param_bytes(&p, data, len);
	db_param_text(&p, lmtp_txn_mail_from(q->txn));
	db_param_text(&p, lmtp_txn_peer(q->txn));
	db_param_text(&p, rcpts.p);
	db_param_text(&p, ids.p);
	db_param_text(&p, subs.p);
	db_send(intake_db(in), "SELECT recipient_index, post_id, duplicate"
	    "  FROM quire.accept($1, $2, $3, $4, $5, $6)", &p, DB_TEXT,
	    intake_on_accept, q);
out:
	buf_free(&rcpts);
	buf_free(&ids);
	buf_free(&subs);
}

static void
intake_data(void *arg, struct lmtp_txn *txn)
{
	struct intake	*in = arg;
	struct intake_accept_q *q;
	const char	*data;
	size_t		 len, n = lmtp_txn_nrcpt(txn);

	data = lmtp_txn_data(txn, &len);
	if ((q = calloc(1, sizeof(*q))) == NULL ||
	    (q->map = calloc(n ? n : 1, sizeof(*q->map))) == NULL) {
		free(q);
		for (size_t i = 0; i < n; i++)
			lmtp_txn_reply(txn, i, "452 4.3.1 Out of memory");
		lmtp_txn_data_done(txn);
		return;
	}
	q->in = in;
	q->txn = txn;
	q->size = len;
	q->message_id = intake_message_id(data, len);
	for (size_t i = 0; i < n; i++) {
		long limit = cookie_limit(lmtp_txn_cookie(txn, i));

		if (limit > 0 && len > (size_t)limit * 1024) {
			log_info("lmtp_too_big", "session=%lu rcpt=%s "
			    "size=%zu limit_kb=%ld", lmtp_txn_session_id(txn),
			    log_q(lmtp_txn_rcpt(txn, i)), len, limit);
			lmtp_txn_reply(txn, i, "552 5.3.4 Message is larger "
			    "than this list accepts");
			continue;
		}
		q->map[q->n++] = i;
	}
	if (q->n == 0) {
		lmtp_txn_data_done(txn);
		intake_accept_free(q);
		return;
	}
	intake_send_accept(in, q, data, len);
}

/* Descriptors besides the clients': stdio, the listener, the event
 * loop's own, and the one accept() takes to say 421 to a refused client. */
#define INTAKE_SPARE_FDS	32

/*
 * Every client is a descriptor.  A soft limit below what max_clients
 * needs (1024 is common) would make accept() fail with EMFILE and leave
 * clients queued unanswered, so raise it as far as the hard limit goes,
 * and fit max_clients to what is left, so that the clients past it get
 * their 421 at once.
 */
static size_t
intake_fit_clients(size_t max_clients, int ndb)
{
	rlim_t		 need = (rlim_t)max_clients + (rlim_t)ndb +
			    INTAKE_SPARE_FDS, spare = need - max_clients;
	struct rlimit	 rl;
	size_t		 fit;

	if (max_clients == 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
	    rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return max_clients;
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ?
	    rl.rlim_max : need;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur >= need)
		return max_clients;
	fit = rl.rlim_cur > spare + 1 ? (size_t)(rl.rlim_cur - spare) : 1;
	log_warn("lmtp_limit", "limit=open_files open_files=%llu "
	    "max_clients=%zu wanted=%zu", (unsigned long long)rl.rlim_cur,
	    fit, max_clients);
	return fit;
}

static void
intake_stopped(void *arg)
{
	struct intake	*in = arg;

	event_base_loopbreak(in->base);
}

static void
intake_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct intake	*in = arg;

	(void)fd;
	(void)what;
	log_warn("lmtp_stop_cut", "clients=%zu seconds=%d",
	    lmtp_server_nclients(in->srv), INTAKE_STOP_WAIT);
	event_base_loopbreak(in->base);
}

/* SIGTERM: no new clients; those there finish their transaction. */
static void
intake_on_stop(void *arg)
{
	struct intake	*in = arg;
	struct timeval	 wait = { INTAKE_STOP_WAIT, 0 };

	log_info("lmtp_stopping", "clients=%zu",
	    lmtp_server_nclients(in->srv));
	if (lmtp_server_stop(in->srv, intake_stopped, in) == -1 ||
	    event_base_once(in->base, -1, EV_TIMEOUT, intake_stop_timeout,
	    in, &wait) == -1)
		event_base_loopbreak(in->base);
}

int
intake_main(const struct intake_config *cfg)
{
	struct event_base	*base;
	struct lmtp_server	*srv;
	struct intake		 in;
	struct lmtp_config	 lc;
	struct lmtp_callbacks	 cb = { intake_rcpt, intake_data };

	if ((base = event_base_new()) == NULL)
		return -1;
	memset(&in, 0, sizeof(in));
	in.cfg = cfg;
	in.base = base;
	in.ndb = cfg->db_connections < 1 ? 1 :
	    cfg->db_connections > INTAKE_MAX_DB ? INTAKE_MAX_DB :
	    cfg->db_connections;
	for (int i = 0; i < in.ndb; i++)
		if ((in.db[i] = db_async_new(base, cfg->conninfo, cfg->appname,
		    cfg->commit_timeout)) == NULL)
			return -1;
	memset(&lc, 0, sizeof(lc));
	lc.host = cfg->host;
	lc.port = cfg->port;
	lc.hostname = cfg->hostname;
	lc.max_size = cfg->max_size;
	lc.max_rcpts = cfg->max_rcpts;
	lc.max_clients = intake_fit_clients(cfg->max_clients, in.ndb);
	lc.max_buffered = cfg->max_buffered;
	lc.idle_timeout = cfg->idle_timeout;
	lc.data_timeout = cfg->data_timeout;
	if ((srv = lmtp_server_new(base, &lc, &cb, &in)) == NULL) {
		log_error("lmtp_listen_failed", "host=%s port=%d", cfg->host,
		    cfg->port);
		return INTAKE_CANNOT_LISTEN;
	}
	in.srv = srv;
	if (stop_watch(base, intake_on_stop, &in) == -1)
		return -1;
	log_info("lmtp_listening", "host=%s port=%d", cfg->host,
	    lmtp_server_port(srv));
	event_base_dispatch(base);
	/* A stop asked for, cut or not, is no failure to restart. */
	if (!stop_requested)
		return -1;
	log_info("lmtp_stopped", "clients=%zu", lmtp_server_nclients(srv));
	return 0;
}
