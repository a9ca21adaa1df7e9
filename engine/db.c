/*
 * db: libpq behind a small interface; see db.h.
 *
 * Connection parameters: the caller's conninfo (any form libpq takes,
 * including multi-host "host=a,b target_session_attrs=read-write") is
 * expanded after Quire's defaults, so anything it names wins.  The
 * defaults keep a dead peer from holding a runner for long: TCP
 * keepalives after 10 s idle, probes every 5 s, and a connect timeout.
 * Keepalives only run while nothing sent is unacknowledged, so a
 * statement sent into a dead link would wait out the kernel's
 * retransmissions (about 15 minutes); tcp_user_timeout ends that after
 * 30 s.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "db.h"
#include "log.h"

/* Statements prepared per connection: a runner repeats the same few
 * dozen, and planning them each time cost more than running them.
 * XXX A migration that changes a view's columns under a running engine
 * makes its cached plans fail ("cached plan must not change result
 * type") until the worker reconnects; the cache should be dropped on
 * that error. */
#define DB_STMT_CACHE	64
#define DB_STMT_NAME	24

/* Waits between connection attempts: 100 ms, doubling to 1 s.  The cap
 * is how long after a failover or a restart the engine may take to find
 * the database again once it takes writes; the LMTP server answers 451
 * until then, and an MTA that gets one may keep the message for its
 * own retry schedule (minutes).  An attempt costs a server at most a
 * backend start, so one a second per connection is cheap, and a
 * healthy connection makes none. */
#define DB_RETRY_FIRST_MS	100
#define DB_RETRY_MAX_MS		1000

enum db_state {
	DB_DOWN,
	DB_CONNECTING,
	DB_READY
};

struct db_req {
	struct db_req	*next;
	char		*sql;
	struct db_params params;
	char		*buf[16];	/* owned copies of the values */
	int		 result_format;
	db_result_fn	 cb;
	void		*arg;
};

struct db_res {
	PGresult	*pg;
};

struct db {
	PGconn		*conn;
	char		*conninfo;
	char		*appname;
	char		 error[512];
	char		 brief[512];
	char		 sqlstate[6];
	char		*channels[16];	/* LISTENed: the notify mask */
	int		 nchannels;
	struct db_stmt {
		unsigned	 hash;
		char		*sql;
	}		 stmts[DB_STMT_CACHE];
	int		 nstmts;

	/* asynchronous connections only */
	struct event_base *base;
	enum db_state	 state;
	struct event	*ev_read;
	struct event	*ev_write;
	struct event	*ev_timer;	/* reconnect or commit timeout */
	struct db_req	*head, *tail, *inflight;
	PGresult	*pending;	/* result of the inflight request */
	int		 sync_warning;	/* standby did not confirm */
	int		 unconfirmed;	/* since then, as good as lost */
	int		 commit_timeout;
	int		 backoff_ms;
	int		 connect_wait;	/* seconds an attempt may take */
};

static void	db_async_connect(struct db *);
static void	db_async_pump(struct db *);

void
db_params_init(struct db_params *p)
{
	memset(p, 0, sizeof(*p));
}

void
db_param_text(struct db_params *p, const char *v)
{
	p->values[p->n] = v;
	p->lengths[p->n] = 0;
	p->formats[p->n] = 0;
	p->n++;
}

void
db_param_bytes(struct db_params *p, const void *v, size_t len)
{
	p->values[p->n] = v;
	p->lengths[p->n] = (int)len;
	p->formats[p->n] = 1;
	p->n++;
}

/* dst gets src with every value copied into bufs[i] (the caller frees
 * them), so it outlives the caller's buffers.  0, or -1 when out of
 * memory, with the copies made so far left in bufs. */
static int
db_params_copy(struct db_params *dst, char **bufs,
    const struct db_params *src)
{
	*dst = *src;
	for (int i = 0; i < src->n; i++) {
		size_t len;

		bufs[i] = NULL;
		if (src->values[i] == NULL)
			continue;
		len = src->formats[i] ? (size_t)src->lengths[i] :
		    strlen(src->values[i]) + 1;
		if ((bufs[i] = malloc(len ? len : 1)) == NULL)
			return -1;
		memcpy(bufs[i], src->values[i], len);
		dst->values[i] = bufs[i];
	}
	return 0;
}

void
db_param_int(struct db_params *p, char buf[24], long long v)
{
	snprintf(buf, 24, "%lld", v);
	db_param_text(p, buf);
}

static void
db_set_error(struct db *db, const char *msg, const PGresult *res)
{
	const char	*state = NULL;
	size_t		 n;

	snprintf(db->error, sizeof(db->error), "%s", msg ? msg : "error");
	n = strlen(db->error);
	while (n > 0 && (db->error[n - 1] == '\n' || db->error[n - 1] == ' '))
		db->error[--n] = '\0';
	for (char *c = db->error; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	snprintf(db->brief, sizeof(db->brief), "%s", db->error);
	if (res != NULL) {
		const char *primary = PQresultErrorField(res,
		    PG_DIAG_MESSAGE_PRIMARY);
		const char *hint = PQresultErrorField(res,
		    PG_DIAG_MESSAGE_HINT);

		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (primary != NULL)
			snprintf(db->brief, sizeof(db->brief), "%s%s%s%s",
			    primary, hint ? " (" : "", hint ? hint : "",
			    hint ? ")" : "");
	}
	snprintf(db->sqlstate, sizeof(db->sqlstate), "%s",
	    state ? state : "");
}

#define DB_UNCONFIRMED	"commit not confirmed by the synchronous standby"

/* A commit the standby did not confirm stands on this server alone, and
 * a failover would undo it: its caller must treat it as a commit whose
 * outcome is unknown, the same as one whose connection broke, and so
 * the connection counts as lost (db_ok) until it is made anew. */
static void
db_commit_unconfirmed(struct db *db)
{
	db_set_error(db, DB_UNCONFIRMED, NULL);
	db->unconfirmed = 1;
}

/* libpq reports notices through this; the one that matters is the warning
 * that a wait for synchronous replication was cancelled, after which the
 * commit is local only and must not be acknowledged. */
static void
db_notice(void *arg, const PGresult *res)
{
	struct db	*db = arg;
	const char	*msg;

	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (msg != NULL && strstr(msg, "synchronous replication") != NULL) {
		db->sync_warning = 1;
		log_warn("db_sync_commit_unconfirmed", "reason=%s", log_q(msg));
	} else if (msg != NULL)
		log_debug("db_notice", "text=%s", log_q(msg));
}

static PGconn *
db_start(const char *conninfo, const char *appname, int async)
{
	const char *keys[] = {
		"connect_timeout", "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "tcp_user_timeout",
		"dbname", "application_name", NULL
	};
	const char *vals[] = {
		"5", "1", "10", "5", "3", "30000",
		conninfo != NULL && *conninfo != '\0' ? conninfo : NULL,
		appname, NULL
	};

	/* A NULL value ends the arrays early, so drop an empty dbname. */
	if (vals[6] == NULL) {
		keys[6] = "application_name";
		vals[6] = appname;
		keys[7] = NULL;
	}
	if (async)
		return PQconnectStartParams(keys, vals, 1);
	return PQconnectdbParams(keys, vals, 1);
}

/* Settings for every session: a runner that hangs inside a transaction
 * must not keep its rows locked for ever. */
static int
db_session_setup(struct db *db)
{
	return db_cmd(db, "SELECT pg_catalog.set_config("
	    "'idle_in_transaction_session_timeout', '60s', false)", NULL);
}

struct db *
db_connect(const char *conninfo, const char *appname)
{
	struct db	*db;

	if ((db = calloc(1, sizeof(*db))) == NULL)
		return NULL;
	db->conn = db_start(conninfo, appname, 0);
	if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
		db_set_error(db, db->conn ? PQerrorMessage(db->conn) :
		    "out of memory", NULL);
		log_warn("db_connect_failed", "reason=%s", log_q(db->error));
		db_close(db);
		return NULL;
	}
	PQsetNoticeReceiver(db->conn, db_notice, db);
	if (db_session_setup(db) == -1) {
		log_warn("db_connect_failed", "reason=%s", log_q(db->error));
		db_close(db);
		return NULL;
	}
	log_debug("db_connected", "app=%s", log_q(appname));
	return db;
}

static int
db_retry_next(int ms)
{
	return ms == 0 ? DB_RETRY_FIRST_MS :
	    ms * 2 < DB_RETRY_MAX_MS ? ms * 2 : DB_RETRY_MAX_MS;
}

struct db *
db_connect_retry(const char *conninfo, const char *appname,
    volatile sig_atomic_t *stop)
{
	struct db	*db;
	int		 wait_ms = 0;

	while ((db = db_connect(conninfo, appname)) == NULL) {
		if (stop != NULL && *stop)
			return NULL;
		wait_ms = db_retry_next(wait_ms);
		usleep((useconds_t)wait_ms * 1000);
	}
	return db;
}

void
db_close(struct db *db)
{
	if (db == NULL)
		return;
	if (db->conn != NULL)
		PQfinish(db->conn);
	for (int i = 0; i < db->nchannels; i++)
		free(db->channels[i]);
	for (int i = 0; i < db->nstmts; i++)
		free(db->stmts[i].sql);
	free(db->conninfo);
	free(db->appname);
	free(db);
}

/* The one connection of this process that a signal handler may cancel
 * the statement of (PQcancel is async-signal-safe). */
static PGcancel *volatile db_signal_cancel;

void
db_cancel_from_signal_on(struct db *db)
{
	PGcancel	*old, *new = db != NULL && db->conn != NULL ?
			    PQgetCancel(db->conn) : NULL;
	sigset_t	 alarm, saved;

	sigemptyset(&alarm);
	sigaddset(&alarm, SIGALRM);
	sigprocmask(SIG_BLOCK, &alarm, &saved);
	old = db_signal_cancel;
	db_signal_cancel = new;
	sigprocmask(SIG_SETMASK, &saved, NULL);
	PQfreeCancel(old);
}

void
db_cancel_from_signal(void)
{
	char		 err[256];

	if (db_signal_cancel != NULL)
		(void)PQcancel(db_signal_cancel, err, sizeof(err));
}

int
db_ok(struct db *db)
{
	return db != NULL && db->conn != NULL && !db->unconfirmed &&
	    PQstatus(db->conn) == CONNECTION_OK;
}

const char *
db_error(struct db *db)
{
	return db->error;
}

const char *
db_error_brief(struct db *db)
{
	return db->brief;
}

const char *
db_sqlstate(struct db *db)
{
	return db->sqlstate;
}

int
db_socket(struct db *db)
{
	return db->conn ? PQsocket(db->conn) : -1;
}

static int
db_result_ok(PGresult *res)
{
	ExecStatusType	 st = PQresultStatus(res);

	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static unsigned
db_hash(const char *s)
{
	unsigned h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

/* Only these can be prepared; BEGIN, COMMIT, SET and LISTEN cannot. */
static int
db_preparable(const char *sql)
{
	static const char *const verbs[] = {
		"SELECT", "WITH", "INSERT", "UPDATE", "DELETE", NULL
	};

	while (*sql == ' ' || *sql == '\n' || *sql == '\t')
		sql++;
	for (int i = 0; verbs[i] != NULL; i++)
		if (strncasecmp(sql, verbs[i], strlen(verbs[i])) == 0)
			return 1;
	return 0;
}

/* The name of sql's prepared statement, preparing it on first use; 0 if
 * it is run unprepared (not preparable, cache full, or refused: the
 * unprepared run then reports the error). */
static int
db_prepared(struct db *db, const char *sql, const struct db_params *p,
    char name[DB_STMT_NAME])
{
	unsigned	 h;
	PGresult	*res;
	int		 i, ok;

	if (!db_preparable(sql))
		return 0;
	h = db_hash(sql);
	for (i = 0; i < db->nstmts; i++)
		if (db->stmts[i].hash == h &&
		    strcmp(db->stmts[i].sql, sql) == 0)
			break;
	snprintf(name, DB_STMT_NAME, "quire_%d", i);
	if (i < db->nstmts)
		return 1;
	if (db->nstmts == DB_STMT_CACHE)
		return 0;
	res = PQprepare(db->conn, name, sql, p ? p->n : 0, NULL);
	ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	if (!ok || (db->stmts[i].sql = strdup(sql)) == NULL)
		return 0;
	db->stmts[i].hash = h;
	db->nstmts++;
	return 1;
}

struct db_res *
db_exec(struct db *db, const char *sql, const struct db_params *p,
    int result_format)
{
	PGresult	*res;
	struct db_res	*r;
	char		 name[DB_STMT_NAME];

	db->sync_warning = 0;
	if (db_prepared(db, sql, p, name))
		res = PQexecPrepared(db->conn, name, p ? p->n : 0,
		    p ? p->values : NULL, p ? p->lengths : NULL,
		    p ? p->formats : NULL, result_format);
	else
		res = PQexecParams(db->conn, sql, p ? p->n : 0, NULL,
		    p ? p->values : NULL, p ? p->lengths : NULL,
		    p ? p->formats : NULL, result_format);
	if (res == NULL || !db_result_ok(res)) {
		db_set_error(db, res ? PQresultErrorMessage(res) :
		    PQerrorMessage(db->conn), res);
		if (res != NULL && *db->error == '\0')
			db_set_error(db, PQerrorMessage(db->conn), res);
		PQclear(res);
		return NULL;
	}
	if (db->sync_warning) {
		db_commit_unconfirmed(db);
		PQclear(res);
		return NULL;
	}
	if ((r = malloc(sizeof(*r))) == NULL) {
		PQclear(res);
		db_set_error(db, "out of memory", NULL);
		return NULL;
	}
	r->pg = res;
	return r;
}

/* Collect the results of a pipeline: one result (then NULL) a statement,
 * then the sync.  Each statement's result goes to out[i]; after the
 * first failure (kept in db_error) the rest are NULL.  0 or -1. */
static int
db_pipeline_results(struct db *db, int n, PGresult **out)
{
	PGresult	*res;
	int		 failed = 0, synced = 0;

	for (int i = 0; i < n; i++) {
		out[i] = NULL;
		while ((res = PQgetResult(db->conn)) != NULL) {
			ExecStatusType st = PQresultStatus(res);

			if (!failed && st != PGRES_PIPELINE_ABORTED &&
			    !db_result_ok(res)) {
				db_set_error(db,
				    PQresultErrorMessage(res), res);
				failed = 1;
			}
			if (!failed && out[i] == NULL)
				out[i] = res;
			else
				PQclear(res);
		}
	}
	/* The sync point, where the statements' implicit transaction
	 * commits: their rows came before it, so without it (the session
	 * lost during the commit, or the standby's confirmation given up)
	 * those rows describe a transaction that may never have been. */
	while ((res = PQgetResult(db->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);

		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			synced = 1;
			break;
		}
		if (!failed && !db_result_ok(res)) {
			db_set_error(db, PQresultErrorMessage(res), res);
			failed = 1;
		}
		PQclear(res);
	}
	if (!failed && !synced) {
		db_set_error(db, *PQerrorMessage(db->conn) ?
		    PQerrorMessage(db->conn) : "no answer to the commit", NULL);
		failed = 1;
	}
	if (!failed && db->sync_warning) {
		db_commit_unconfirmed(db);
		failed = 1;
	}
	if (failed)
		for (int i = 0; i < n; i++) {
			PQclear(out[i]);
			out[i] = NULL;
		}
	return failed ? -1 : 0;
}

static int
db_pipeline_send(struct db *db, int n, const char *const *sql,
    const struct db_params *const *params, int result_format)
{
	char		 name[DB_STMT_NAME];

	/* Prepare first: PQprepare waits for its answer, which pipeline
	 * mode does not allow.  (A statement prepared now stays cached,
	 * so the second look-up below finds it.) */
	for (int i = 0; i < n; i++)
		(void)db_prepared(db, sql[i], params ? params[i] : NULL, name);
	if (!PQenterPipelineMode(db->conn))
		return -1;
	for (int i = 0; i < n; i++) {
		const struct db_params *p = params ? params[i] : NULL;
		int sent = db_prepared(db, sql[i], p, name) ?
		    PQsendQueryPrepared(db->conn, name, p ? p->n : 0,
		    p ? p->values : NULL, p ? p->lengths : NULL,
		    p ? p->formats : NULL, result_format) :
		    PQsendQueryParams(db->conn, sql[i], p ? p->n : 0, NULL,
		    p ? p->values : NULL, p ? p->lengths : NULL,
		    p ? p->formats : NULL, result_format);

		if (!sent)
			return i;
	}
	return n;
}

int
db_exec_pipeline_each(struct db *db, int n, const char *const *sql,
    const struct db_params *const *params, int result_format,
    struct db_res **results)
{
	PGresult	**res;
	int		 sent, rc = -1;

	db->sync_warning = 0;
	for (int i = 0; i < n; i++)
		results[i] = NULL;
	if (n < 1 || (res = calloc((size_t)n, sizeof(*res))) == NULL) {
		db_set_error(db, "out of memory", NULL);
		return -1;
	}
	if ((sent = db_pipeline_send(db, n, sql, params, result_format)) < 0) {
		db_set_error(db, PQerrorMessage(db->conn), NULL);
		free(res);
		return -1;
	}
	if (sent < n)
		db_set_error(db, PQerrorMessage(db->conn), NULL);
	if (PQpipelineSync(db->conn)) {
		rc = db_pipeline_results(db, sent, res);
		if (sent < n)
			rc = -1;
	} else
		db_set_error(db, PQerrorMessage(db->conn), NULL);
	(void)PQexitPipelineMode(db->conn);
	for (int i = 0; i < sent; i++) {
		if (res[i] != NULL && rc == 0 &&
		    (results[i] = malloc(sizeof(**results))) != NULL) {
			results[i]->pg = res[i];
			continue;
		}
		if (res[i] != NULL && rc == 0)
			rc = -1;
		PQclear(res[i]);
	}
	free(res);
	if (rc == -1)
		for (int i = 0; i < n; i++) {
			db_res_free(results[i]);
			results[i] = NULL;
		}
	return rc;
}

struct db_res *
db_exec_pipeline(struct db *db, int n, const char *const *sql,
    const struct db_params *const *params, int result_format)
{
	struct db_res	**results;
	struct db_res	*last = NULL;

	if (n < 1 || (results = calloc(n, sizeof(*results))) == NULL)
		return NULL;
	if (db_exec_pipeline_each(db, n, sql, params, result_format,
	    results) == 0) {
		last = results[n - 1];
		for (int i = 0; i < n - 1; i++)
			db_res_free(results[i]);
	}
	free(results);
	return last;
}

struct db_batch {
	int		 n, cap;
	char		**sql;
	struct db_params *params;
	char		***bufs;	/* owned parameter copies */
};

struct db_batch *
db_batch_new(void)
{
	return calloc(1, sizeof(struct db_batch));
}

int
db_batch_len(const struct db_batch *b)
{
	return b->n;
}

static void
db_batch_clear(struct db_batch *b)
{
	for (int i = 0; i < b->n; i++) {
		for (int j = 0; j < b->params[i].n; j++)
			free(b->bufs[i][j]);
		free(b->bufs[i]);
		free(b->sql[i]);
	}
	b->n = 0;
}

int
db_batch_add(struct db_batch *b, const char *sql, const struct db_params *p)
{
	struct db_params	 empty = { 0 };
	char			**copies;

	if (b->n == b->cap) {
		int cap = b->cap ? b->cap * 2 : 16;
		char **s = realloc(b->sql, cap * sizeof(*s));
		struct db_params *ps;
		char ***bs;

		if (s == NULL)
			return -1;
		b->sql = s;
		if ((ps = realloc(b->params, cap * sizeof(*ps))) == NULL)
			return -1;
		b->params = ps;
		if ((bs = realloc(b->bufs, cap * sizeof(*bs))) == NULL)
			return -1;
		b->bufs = bs;
		b->cap = cap;
	}
	if (p == NULL)
		p = &empty;
	if ((copies = calloc(p->n ? p->n : 1, sizeof(char *))) == NULL)
		return -1;
	if (db_params_copy(&b->params[b->n], copies, p) == -1 ||
	    (b->sql[b->n] = strdup(sql)) == NULL)
		goto fail;
	b->bufs[b->n++] = copies;
	return 0;
fail:
	for (int i = 0; i < p->n; i++)
		free(copies[i]);
	free(copies);
	return -1;
}

int
db_batch_run(struct db *db, struct db_batch *b, const char *last)
{
	const char		**sql;
	const struct db_params	**params;
	struct db_res		*r = NULL;
	int			 n = b->n + (last != NULL);

	sql = calloc(n ? n : 1, sizeof(*sql));
	params = calloc(n ? n : 1, sizeof(*params));
	if (sql != NULL && params != NULL) {
		for (int i = 0; i < b->n; i++) {
			sql[i] = b->sql[i];
			params[i] = &b->params[i];
		}
		if (last != NULL)
			sql[b->n] = last;
		r = n > 0 ? db_exec_pipeline(db, n, sql, params, DB_TEXT) :
		    NULL;
	} else
		db_set_error(db, "out of memory", NULL);
	free(sql);
	free(params);
	db_batch_clear(b);
	if (r == NULL && n > 0)
		return -1;
	db_res_free(r);
	return 0;
}

void
db_batch_reset(struct db_batch *b)
{
	db_batch_clear(b);
}

void
db_batch_free(struct db_batch *b)
{
	if (b == NULL)
		return;
	db_batch_clear(b);
	free(b->sql);
	free(b->params);
	free(b->bufs);
	free(b);
}

int
db_cmd(struct db *db, const char *sql, const struct db_params *p)
{
	struct db_res	*r = db_exec(db, sql, p, DB_TEXT);

	if (r == NULL)
		return -1;
	db_res_free(r);
	return 0;
}

int
db_script(struct db *db, const char *sql)
{
	PGresult	*res = PQexec(db->conn, sql);

	if (res == NULL || !db_result_ok(res)) {
		db_set_error(db, res ? PQresultErrorMessage(res) :
		    PQerrorMessage(db->conn), res);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

int
db_res_rows(const struct db_res *r)
{
	return PQntuples(r->pg);
}

int
db_res_cols(const struct db_res *r)
{
	return PQnfields(r->pg);
}

const char *
db_res_colname(const struct db_res *r, int col)
{
	return PQfname(r->pg, col);
}

int
db_res_isnull(const struct db_res *r, int row, int col)
{
	return PQgetisnull(r->pg, row, col);
}

const char *
db_res_value(const struct db_res *r, int row, int col)
{
	return PQgetvalue(r->pg, row, col);
}

size_t
db_res_length(const struct db_res *r, int row, int col)
{
	return (size_t)PQgetlength(r->pg, row, col);
}

/* Integers in binary results are big-endian of their column's width. */
long long
db_res_int(const struct db_res *r, int row, int col)
{
	const unsigned char *v;
	int		 len;
	unsigned long long x = 0;

	if (PQgetisnull(r->pg, row, col))
		return 0;
	if (PQfformat(r->pg, col) == 0)
		return strtoll(PQgetvalue(r->pg, row, col), NULL, 10);
	v = (const unsigned char *)PQgetvalue(r->pg, row, col);
	len = PQgetlength(r->pg, row, col);
	for (int i = 0; i < len; i++)
		x = (x << 8) | v[i];
	if (len == 4)
		return (int32_t)x;
	if (len == 2)
		return (int16_t)x;
	if (len == 1)
		return v[0];
	return (long long)x;
}

const char *
db_res_cmd_tuples(const struct db_res *r)
{
	return PQcmdTuples(r->pg);
}

void
db_res_free(struct db_res *r)
{
	if (r == NULL)
		return;
	PQclear(r->pg);
	free(r);
}

/* Channel names are Quire's own constants; LISTEN takes no parameters,
 * so each name is quoted with libpq's identifier escaping. */
int
db_listen(struct db *db, const char *const *channels, int n)
{
	char		 sql[128];
	char		*id;
	int		 rc;

	for (int i = 0; i < n; i++) {
		id = PQescapeIdentifier(db->conn, channels[i],
		    strlen(channels[i]));
		if (id == NULL)
			return -1;
		snprintf(sql, sizeof(sql), "LISTEN %s", id);
		PQfreemem(id);
		rc = db_cmd(db, sql, NULL);
		if (rc == -1)
			return -1;
		if (db->nchannels < 16 &&
		    (db->channels[db->nchannels] = strdup(channels[i])) != NULL)
			db->nchannels++;
	}
	return 0;
}

long
db_notifications(struct db *db)
{
	PGnotify	*nt;
	long		 mask = 0;

	if (!PQconsumeInput(db->conn)) {
		db_set_error(db, PQerrorMessage(db->conn), NULL);
		return -1;
	}
	while ((nt = PQnotifies(db->conn)) != NULL) {
		for (int i = 0; i < db->nchannels; i++)
			if (strcmp(nt->relname, db->channels[i]) == 0)
				mask |= 1L << i;
		PQfreemem(nt);
	}
	return mask;
}

/*
 * Asynchronous connections.
 *
 * One statement is in flight at a time; others wait in a FIFO.  A
 * statement that has not finished after commit_timeout seconds is
 * cancelled: with a synchronous standby that is away, a COMMIT would
 * otherwise wait for ever.  The cancelled commit comes back with a
 * warning and is reported as a failure, so the MTA is told 4xx and
 * retries (the accept function recognises the retry).
 */

static void
db_req_free(struct db_req *rq)
{
	for (int i = 0; i < rq->params.n; i++)
		free(rq->buf[i]);
	free(rq->sql);
	free(rq);
}

static void
db_req_finish(struct db_req *rq, PGresult *res, const char *err)
{
	struct db_res	 r = { res };

	rq->cb(rq->arg, err ? NULL : &r, err);
	db_req_free(rq);
}

/* Fail every request: the connection is gone and their outcome is, for
 * the inflight one, unknown. */
static void
db_async_fail_all(struct db *db, const char *why)
{
	struct db_req	*rq;

	if (db->inflight != NULL) {
		rq = db->inflight;
		db->inflight = NULL;
		PQclear(db->pending);
		db->pending = NULL;
		db_req_finish(rq, NULL, why);
	}
	while ((rq = db->head) != NULL) {
		db->head = rq->next;
		db_req_finish(rq, NULL, why);
	}
	db->tail = NULL;
}

static void
db_async_drop(struct db *db, const char *reason)
{
	char	 why[512];

	/* The reason may live in the connection about to be freed. */
	snprintf(why, sizeof(why), "%s", reason);
	db_set_error(db, why, NULL);
	if (db->ev_read)
		event_free(db->ev_read);
	if (db->ev_write)
		event_free(db->ev_write);
	db->ev_read = db->ev_write = NULL;
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->state = DB_DOWN;
	log_warn("db_disconnected", "app=%s reason=%s", log_q(db->appname),
	    log_q(db->error));
	db_async_fail_all(db, db->error);
	db->backoff_ms = db_retry_next(db->backoff_ms);
	struct timeval tv = { db->backoff_ms / 1000,
	    (db->backoff_ms % 1000) * 1000 };
	evtimer_add(db->ev_timer, &tv);
}

static void
db_async_on_io(evutil_socket_t fd, short what, void *arg);

static void
db_async_watch(struct db *db, int want_write)
{
	int fd = PQsocket(db->conn);

	if (db->ev_read == NULL || event_get_fd(db->ev_read) != fd) {
		if (db->ev_read)
			event_free(db->ev_read);
		if (db->ev_write)
			event_free(db->ev_write);
		db->ev_read = event_new(db->base, fd, EV_READ | EV_PERSIST,
		    db_async_on_io, db);
		db->ev_write = event_new(db->base, fd, EV_WRITE,
		    db_async_on_io, db);
	}
	event_add(db->ev_read, NULL);
	if (want_write)
		event_add(db->ev_write, NULL);
}

static void
db_async_poll_connect(struct db *db)
{
	switch (PQconnectPoll(db->conn)) {
	case PGRES_POLLING_READING:
		db_async_watch(db, 0);
		if (db->ev_write)
			event_del(db->ev_write);
		return;
	case PGRES_POLLING_WRITING:
		db_async_watch(db, 1);
		return;
	case PGRES_POLLING_FAILED:
		db_async_drop(db, PQerrorMessage(db->conn));
		return;
	case PGRES_POLLING_OK:
	default:
		break;
	}
	if (PQsetnonblocking(db->conn, 1) != 0) {
		db_async_drop(db, "cannot make connection non-blocking");
		return;
	}
	PQsetNoticeReceiver(db->conn, db_notice, db);
	evtimer_del(db->ev_timer);
	db->state = DB_READY;
	db->backoff_ms = 0;
	db_async_watch(db, 0);
	log_info("db_connected", "app=%s", log_q(db->appname));
	db_async_pump(db);
}

static void
db_async_connect(struct db *db)
{
	db->conn = db_start(db->conninfo, db->appname, 1);
	if (db->conn == NULL || PQstatus(db->conn) == CONNECTION_BAD) {
		db_async_drop(db, db->conn ? PQerrorMessage(db->conn) :
		    "out of memory");
		return;
	}
	db->state = DB_CONNECTING;
	/* libpq applies no connect_timeout to an asynchronous connection:
	 * a server that accepts and never answers would hold it, and every
	 * RCPT waiting for it, for as long as the socket lives.
	 * XXX The next attempt starts again from the first host of a
	 * multi-host conninfo, so a silent first host is never got past. */
	struct timeval wait = { db->connect_wait, 0 };
	evtimer_add(db->ev_timer, &wait);
	db_async_poll_connect(db);
}

/* connect_timeout from the conninfo, as libpq's blocking connect takes
 * it (at least 2 s), or 10 s. */
static int
db_connect_wait(const char *conninfo)
{
	PQconninfoOption *opts, *o;
	int		 wait = 10, given;

	if ((opts = PQconninfoParse(conninfo, NULL)) == NULL)
		return wait;
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "connect_timeout") == 0 &&
		    o->val != NULL && (given = atoi(o->val)) > 0)
			wait = given < 2 ? 2 : given;
	PQconninfoFree(opts);
	return wait;
}

static void
db_async_result_done(struct db *db)
{
	struct db_req	*rq = db->inflight;
	PGresult	*res = db->pending;
	const char	*err = NULL;

	db->inflight = NULL;
	db->pending = NULL;
	evtimer_del(db->ev_timer);
	if (res == NULL)
		err = "no result";
	else if (!db_result_ok(res))
		err = PQresultErrorMessage(res);
	else if (db->sync_warning)
		err = DB_UNCONFIRMED;
	if (err != NULL)
		db_set_error(db, err, res);
	db_req_finish(rq, res, err ? db->error : NULL);
	PQclear(res);
	db_async_pump(db);
}

static void
db_async_read(struct db *db)
{
	PGresult	*res;

	if (!PQconsumeInput(db->conn)) {
		db_async_drop(db, PQerrorMessage(db->conn));
		return;
	}
	while (db->inflight != NULL && !PQisBusy(db->conn)) {
		res = PQgetResult(db->conn);
		if (res == NULL) {
			db_async_result_done(db);
			if (db->state != DB_READY)
				return;
			continue;
		}
		/* Keep the first error, else the last result. */
		if (db->pending != NULL && !db_result_ok(db->pending))
			PQclear(res);
		else {
			PQclear(db->pending);
			db->pending = res;
		}
	}
	if (PQstatus(db->conn) == CONNECTION_BAD)
		db_async_drop(db, PQerrorMessage(db->conn));
}

static void
db_async_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct db	*db = arg;

	(void)fd;
	if (db->state == DB_CONNECTING) {
		db_async_poll_connect(db);
		return;
	}
	if (db->state != DB_READY)
		return;
	if (what & EV_WRITE) {
		int rc = PQflush(db->conn);
		if (rc == -1) {
			db_async_drop(db, PQerrorMessage(db->conn));
			return;
		}
		if (rc == 1)
			event_add(db->ev_write, NULL);
	}
	if (what & EV_READ)
		db_async_read(db);
}

static void
db_async_cancel(struct db *db)
{
	PGcancel	*c = PQgetCancel(db->conn);
	char		 err[256];

	log_warn("db_statement_timeout", "app=%s seconds=%d",
	    log_q(db->appname), db->commit_timeout);
	if (c != NULL) {
		if (!PQcancel(c, err, sizeof(err)))
			log_warn("db_cancel_failed", "reason=%s", log_q(err));
		PQfreeCancel(c);
	}
}

static void
db_async_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct db	*db = arg;

	(void)fd;
	(void)what;
	if (db->state == DB_DOWN)
		db_async_connect(db);
	else if (db->state == DB_CONNECTING)
		db_async_drop(db, "no answer from the server within "
		    "connect_timeout");
	else if (db->state == DB_READY && db->inflight != NULL)
		db_async_cancel(db);
}

static void
db_async_pump(struct db *db)
{
	struct db_req	*rq;
	int		 rc;

	if (db->state != DB_READY || db->inflight != NULL || !db->head)
		return;
	rq = db->head;
	db->head = rq->next;
	if (db->head == NULL)
		db->tail = NULL;
	db->sync_warning = 0;
	if (!PQsendQueryParams(db->conn, rq->sql, rq->params.n, NULL,
	    rq->params.values, rq->params.lengths, rq->params.formats,
	    rq->result_format)) {
		db->inflight = rq;
		db_async_drop(db, PQerrorMessage(db->conn));
		return;
	}
	db->inflight = rq;
	if (db->commit_timeout > 0) {
		struct timeval tv = { db->commit_timeout, 0 };
		evtimer_add(db->ev_timer, &tv);
	}
	rc = PQflush(db->conn);
	if (rc == -1)
		db_async_drop(db, PQerrorMessage(db->conn));
	else if (rc == 1)
		event_add(db->ev_write, NULL);
}

struct db *
db_async_new(struct event_base *base, const char *conninfo,
    const char *appname, int commit_timeout)
{
	struct db	*db;

	if ((db = calloc(1, sizeof(*db))) == NULL)
		return NULL;
	db->base = base;
	db->conninfo = strdup(conninfo ? conninfo : "");
	db->appname = strdup(appname ? appname : "quire");
	db->commit_timeout = commit_timeout;
	db->connect_wait = db_connect_wait(db->conninfo);
	db->ev_timer = evtimer_new(base, db_async_on_timer, db);
	if (!db->conninfo || !db->appname || !db->ev_timer) {
		db_async_free(db);
		return NULL;
	}
	db_async_connect(db);
	return db;
}

struct db_deferred {
	db_result_fn	 cb;
	void		*arg;
};

static void
db_deferred_fail(evutil_socket_t fd, short what, void *arg)
{
	struct db_deferred *d = arg;

	(void)fd;
	(void)what;
	d->cb(d->arg, NULL, "database unavailable");
	free(d);
}

void
db_send(struct db *db, const char *sql, const struct db_params *p,
    int result_format, db_result_fn cb, void *arg)
{
	struct db_req	*rq;
	struct timeval	 now = { 0, 0 };

	/* While (re)connecting, statements wait for the connection; only a
	 * connection known to be down fails them at once. */
	if (db->state == DB_DOWN || (rq = calloc(1, sizeof(*rq))) == NULL) {
		/* Answer later, never from inside the caller. */
		struct db_deferred *d = malloc(sizeof(*d));
		if (d == NULL)
			abort();
		d->cb = cb;
		d->arg = arg;
		event_base_once(db->base, -1, EV_TIMEOUT, db_deferred_fail, d,
		    &now);
		return;
	}
	rq->sql = strdup(sql);
	rq->result_format = result_format;
	rq->cb = cb;
	rq->arg = arg;
	if (p != NULL && db_params_copy(&rq->params, rq->buf, p) == -1)
		abort();
	if (rq->sql == NULL)
		abort();
	if (db->tail)
		db->tail->next = rq;
	else
		db->head = rq;
	db->tail = rq;
	db_async_pump(db);
}

void
db_async_free(struct db *db)
{
	if (db == NULL)
		return;
	db_async_fail_all(db, "shutting down");
	if (db->ev_read)
		event_free(db->ev_read);
	if (db->ev_write)
		event_free(db->ev_write);
	if (db->ev_timer)
		event_free(db->ev_timer);
	db->ev_read = db->ev_write = db->ev_timer = NULL;
	db_close(db);
}
