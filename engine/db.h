/*
 * db: the one module that speaks libpq.
 *
 * Two ways to talk, one per kind of process:
 *
 *  - Blocking: db_exec() runs one statement and waits.  Stage runners use
 *    it; a runner serves only its stages, so waiting is all it would do.
 *  - Asynchronous: db_send() queues a statement on a connection driven by
 *    the libevent loop; the callback runs when its result (or failure)
 *    is known.  The LMTP server uses it so that a slow database never
 *    stalls other SMTP sessions.  An asynchronous connection reconnects
 *    by itself with backoff; statements queued while it is away fail at
 *    once so the LMTP client gets a 451.
 *
 * Results are wrapped so that no other module includes libpq-fe.h.  A
 * result holds its values in text form unless the statement asked for
 * binary results (used to fetch message bytes without escaping).
 */
#ifndef QUIRE_DB_H
#define QUIRE_DB_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct db;
struct db_res;

#define DB_TEXT		0
#define DB_BINARY	1

struct db_params {
	int		 n;
	const char	*values[16];
	int		 lengths[16];
	int		 formats[16];
};

/* Build parameter lists: text values, or binary bytes (bytea). */
void		 db_params_init(struct db_params *);
void		 db_param_text(struct db_params *, const char *);
void		 db_param_bytes(struct db_params *, const void *, size_t);
void		 db_param_int(struct db_params *, char buf[24], long long);

/*
 * Connect, blocking.  `conninfo' is any libpq conninfo or URI (NULL or ""
 * means libpq's defaults: PG* variables); `appname' becomes
 * application_name, which is how `quire status' finds live processes.
 * Returns NULL and logs on failure.
 */
struct db	*db_connect(const char *conninfo, const char *appname);
/* Retry db_connect with backoff until it succeeds or *stop is set. */
struct db	*db_connect_retry(const char *conninfo, const char *appname,
		    volatile sig_atomic_t *stop);
void		 db_close(struct db *);
/* Name the connection whose statement db_cancel_from_signal() cancels
 * (NULL: none); db_cancel_from_signal() may run in a signal handler. */
void		 db_cancel_from_signal_on(struct db *);
void		 db_cancel_from_signal(void);
/* Connection usable: not broken, and no commit on it left unconfirmed
 * by the synchronous standby (whose outcome is as unknown as a broken
 * connection's). */
int		 db_ok(struct db *);
const char	*db_error(struct db *);		/* last error, one line */
/* The last error as a person reads it: the server's message and its
 * hint, without the detail and context lines. */
const char	*db_error_brief(struct db *);
const char	*db_sqlstate(struct db *);	/* of the last failure */
int		 db_socket(struct db *);

/* Blocking statement; NULL on failure (reason in db_error). */
struct db_res	*db_exec(struct db *, const char *sql,
		    const struct db_params *, int result_format);
/* Several statements in one round trip (libpq pipeline mode), run in
 * order; after a failure the rest are skipped.  Returns the result of
 * the last one, or NULL (reason in db_error). */
struct db_res	*db_exec_pipeline(struct db *, int n, const char *const *sql,
		    const struct db_params *const *params, int result_format);
/* The same, keeping every statement's result in results[0..n): 0, or -1
 * with every result NULL. */
int		 db_exec_pipeline_each(struct db *, int n,
		    const char *const *sql,
		    const struct db_params *const *params, int result_format,
		    struct db_res **results);
/* Statements whose results are not needed, kept (with copies of their
 * parameters) to be sent later in one round trip. */
struct db_batch;

struct db_batch	*db_batch_new(void);
/* 0, or -1 when out of memory. */
int		 db_batch_add(struct db_batch *, const char *sql,
		    const struct db_params *);
int		 db_batch_len(const struct db_batch *);
/* Send every statement, then `last' if not NULL, in one pipeline; the
 * batch is emptied.  0, or -1 (reason in db_error). */
int		 db_batch_run(struct db *, struct db_batch *, const char *last);
/* Forget the statements kept (after a rollback). */
void		 db_batch_reset(struct db_batch *);
void		 db_batch_free(struct db_batch *);

/* Blocking run of a whole SQL file (several statements, no
 * parameters): only for the project's own migrations and schema. */
int		 db_script(struct db *, const char *sql);
/* Blocking statement whose rows are not needed: 0 or -1. */
int		 db_cmd(struct db *, const char *sql, const struct db_params *);

int		 db_res_rows(const struct db_res *);
int		 db_res_cols(const struct db_res *);
const char	*db_res_colname(const struct db_res *, int col);
int		 db_res_isnull(const struct db_res *, int row, int col);
const char	*db_res_value(const struct db_res *, int row, int col);
size_t		 db_res_length(const struct db_res *, int row, int col);
long long	 db_res_int(const struct db_res *, int row, int col);
const char	*db_res_cmd_tuples(const struct db_res *);
void		 db_res_free(struct db_res *);

/* LISTEN: subscribe, then after the socket turns readable call
 * db_notifications(), which consumes input and returns a bitmask of the
 * channels (by index in the listen call) that were notified, or -1 if
 * the connection broke. */
int		 db_listen(struct db *, const char *const *channels, int n);
long		 db_notifications(struct db *);

/* Asynchronous connections. */
typedef void	(*db_result_fn)(void *arg, struct db_res *, const char *err);

struct db	*db_async_new(struct event_base *, const char *conninfo,
		    const char *appname, int commit_timeout);
/* Queue a statement.  The callback gets the result (freed after the
 * callback returns) or err != NULL.  A result that carried the warning
 * that a synchronous commit was cancelled before the standby confirmed
 * it is reported as an error. */
void		 db_send(struct db *, const char *sql,
		    const struct db_params *, int result_format,
		    db_result_fn, void *arg);
void		 db_async_free(struct db *);

#endif
