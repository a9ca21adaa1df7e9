/*
 * smtp_client: the outgoing stage's SMTP client (RFC 5321, pipelining
 * per RFC 2920).
 *
 * A relay answers commands in the order they were sent, pipelined or
 * not, so every command written pushes an entry on a FIFO of expected
 * replies, and every reply read pops one and is handled by the entry's
 * command.  Lock-step and pipelined sessions differ only in when the
 * next commands are written: lock-step writes one command when the
 * previous reply is in; pipelining writes a transaction's MAIL, RCPTs
 * and DATA as one group, and the next group right behind the previous
 * message's final dot.  Everything written in one callback leaves in one
 * send, because the bufferevent writes only when the loop runs.
 *
 * Results: a recipient's code is 0 until its RCPT is answered, the RCPT
 * reply while accepted (2xx) or refused, and the final reply once its
 * transaction ends.  A failure of the connection therefore only has to
 * overwrite the 0s and the 2xx of unfinished transactions.
 *
 * A transaction that ends without its final dot (MAIL refused, no
 * recipient accepted, DATA refused) leaves the relay's state unknown, so
 * an RSET goes out in front of the next MAIL, possibly in the next batch.
 *
 * XXX no STARTTLS and no AUTH: the relay is expected to be a local MTA
 * that accepts us by address, as Mailman's default setup has it.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "smtp.h"

#define SMTP_ADDR_MAX		256	/* RFC 5321 4.5.3.1.3 path */
#define SMTP_CONNECT_TIMEOUT	30
#define SMTP_REPLY_TIMEOUT	300
#define SMTP_DATA_TIMEOUT	600

enum smtp_state {
	SMTP_CLOSED,		/* no socket; the next send connects */
	SMTP_BROKEN,		/* no socket since a failure; likewise */
	SMTP_CONNECTING,
	SMTP_GREETING,		/* connected, waiting for 220 */
	SMTP_HELLO,		/* EHLO or HELO sent */
	SMTP_READY,		/* connected, between batches */
	SMTP_SENDING		/* running a batch */
};

static const char *const smtp_state_names[] = {
	"closed", "broken", "connecting", "greeting", "hello", "ready",
	"sending"
};

enum smtp_cmd {
	SMTP_CMD_GREETING,
	SMTP_CMD_EHLO,
	SMTP_CMD_HELO,
	SMTP_CMD_RSET,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_DOT
};

/* What a failure text says the client was waiting for. */
static const char *const smtp_cmd_waits[] = {
	"greeting", "reply to EHLO", "reply to HELO", "reply to RSET",
	"reply to MAIL", "reply to RCPT", "reply to DATA",
	"reply to end of data"
};

static const char *const smtp_cmd_names[] = {
	"greeting", "EHLO", "HELO", "RSET", "MAIL", "RCPT", "DATA", "."
};

struct smtp_expect {
	enum smtp_cmd	 cmd;
	size_t		 txn;
	size_t		 rcpt;
	size_t		 wire_end;	/* out_added once it was written */
};

struct smtp_tstate {
	size_t		 accepted;	/* RCPTs answered 2xx */
	int		 mail_failed;	/* results already hold MAIL's reply */
	int		 finished;	/* every result is final */
};

struct smtp_conn {
	struct event_base	*base;
	struct smtp_config	 cfg;		/* host and helo are ours */
	unsigned		 id;		/* names it in logs */
	enum smtp_state		 state;
	struct bufferevent	*bev;
	struct event		*timer;		/* the head reply's deadline */
	struct event		*done_ev;	/* runs the done callback */
	unsigned		 caps;
	unsigned long		 size_max;
	int			 need_rset;

	struct smtp_expect	*fifo;		/* ring of expected replies */
	size_t			 fhead, flen, fcap;
	size_t			 out_added;	/* octets ever put in the
						 * socket's output */

	struct smtp_txn		*txns;
	size_t			 ntxns;
	size_t			 next;		/* first txn not yet begun */
	struct smtp_tstate	*ts;
	struct evbuffer		*body;		/* data awaiting a 354 */
	size_t			 body_size;	/* RFC 1870 size of body */
	int			 body_8bit;
	smtp_done_fn		 done;
	void			*done_arg;
	int			 busy;
};

static unsigned smtp_conn_ids;

static void	smtp_conn_fail(struct smtp_conn *, const char *,
		    const char *, ...) __attribute__((format(printf, 3, 4)));
static void	smtp_txn_next(struct smtp_conn *);

/* The only place the state changes. */
static void
smtp_conn_enter(struct smtp_conn *conn, enum smtp_state state)
{
	log_debug("smtp_state", "conn=%u from=%s to=%s", conn->id,
	    smtp_state_names[conn->state], smtp_state_names[state]);
	conn->state = state;
}

static int
smtp_pipelining(const struct smtp_conn *conn)
{
	return (conn->caps & SMTP_CAP_PIPELINING) != 0;
}

static int
smtp_code_class(const struct smtp_reply *r)
{
	return r->code / 100;
}

static int
smtp_code_failed(const struct smtp_reply *r)
{
	return smtp_code_class(r) == 4 || smtp_code_class(r) == 5;
}

static void
smtp_result_set(struct smtp_result *res, int code, const char *text)
{
	res->code = code;
	snprintf(res->text, sizeof(res->text), "%s", text);
}

/* Addresses go on a command line: no byte may end or break that line. */
static int
smtp_addr_ok(const char *a)
{
	size_t i;

	for (i = 0; a[i] != '\0'; i++)
		if (i >= SMTP_ADDR_MAX || (unsigned char)a[i] < 0x20 ||
		    a[i] == 0x7f)
			return 0;
	return 1;
}

/* Expected replies. */

static const struct smtp_expect *
smtp_fifo_head(const struct smtp_conn *conn)
{
	return conn->flen > 0 ? &conn->fifo[conn->fhead] : NULL;
}

static void
smtp_conn_arm(struct smtp_conn *conn)
{
	const struct smtp_expect *e = smtp_fifo_head(conn);
	struct timeval tv = { 0, 0 };

	if (conn->state == SMTP_CONNECTING)
		tv.tv_sec = conn->cfg.connect_timeout;
	else if (e == NULL) {
		evtimer_del(conn->timer);
		return;
	} else if (e->cmd == SMTP_CMD_DOT)
		tv.tv_sec = conn->cfg.data_timeout;
	else
		tv.tv_sec = conn->cfg.reply_timeout;
	evtimer_add(conn->timer, &tv);
}

/* Room is reserved by smtp_conn_send, so this cannot fail. */
static void
smtp_fifo_push(struct smtp_conn *conn, enum smtp_cmd cmd, size_t txn,
    size_t rcpt)
{
	struct smtp_expect *e;

	if (conn->flen == conn->fcap) {
		log_error("smtp_bug", "conn=%u reply fifo full", conn->id);
		abort();
	}
	e = &conn->fifo[(conn->fhead + conn->flen) % conn->fcap];
	e->cmd = cmd;
	e->txn = txn;
	e->rcpt = rcpt;
	e->wire_end = conn->out_added;
	if (conn->flen++ == 0)
		smtp_conn_arm(conn);
}

static int
smtp_fifo_pop(struct smtp_conn *conn, struct smtp_expect *e)
{
	if (conn->flen == 0)
		return 0;
	*e = conn->fifo[conn->fhead];
	conn->fhead = (conn->fhead + 1) % conn->fcap;
	conn->flen--;
	return 1;
}

static int
smtp_fifo_reserve(struct smtp_conn *conn, size_t need)
{
	struct smtp_expect *f;

	conn->fhead = conn->flen = 0;
	if (need <= conn->fcap)
		return 0;
	if ((f = realloc(conn->fifo, need * sizeof(*f))) == NULL)
		return -1;
	conn->fifo = f;
	conn->fcap = need;
	return 0;
}

/* Writing. */

static void
smtp_conn_write(struct smtp_conn *conn, const void *p, size_t n)
{
	evbuffer_add(bufferevent_get_output(conn->bev), p, n);
	conn->out_added += n;
}

/* Whether the command of e has left for the relay in full. */
static int
smtp_expect_written(const struct smtp_conn *conn,
    const struct smtp_expect *e)
{
	size_t queued = evbuffer_get_length(bufferevent_get_output(
	    conn->bev));

	return conn->out_added - queued >= e->wire_end;
}

static void
smtp_conn_cmd(struct smtp_conn *conn, enum smtp_cmd cmd, size_t txn,
    size_t rcpt, const char *fmt, ...)
{
	char line[SMTP_ADDR_MAX + 128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Addresses and our name were checked against SMTP_ADDR_MAX. */
	if (n < 2 || (size_t)n >= sizeof(line)) {
		log_error("smtp_bug", "conn=%u command too long", conn->id);
		abort();
	}
	smtp_conn_write(conn, line, (size_t)n);
	log_debug("smtp_cmd", "conn=%u cmd=%s", conn->id,
	    log_qn(line, (size_t)n - 2));
	smtp_fifo_push(conn, cmd, txn, rcpt);
}

/* How the body encoder stands between iovec parts. */
struct smtp_body_state {
	int		 bol;		/* next byte starts a line */
	int		 cr;		/* a CR seen, not yet written */
	size_t		 size;
};

static void
smtp_body_eol(struct evbuffer *out, struct smtp_body_state *bs)
{
	evbuffer_add(out, "\r\n", 2);
	bs->size += 2;
	bs->bol = 1;
}

/*
 * Copy one part of the message in SMTP's canonical form: every line end
 * (CR LF, bare LF or bare CR; RFC 5321 2.3.8 allows only CR LF on the
 * wire) becomes CR LF, and a line that starts with '.' gets another.  A
 * CR at the end of a part waits for the next part's first byte.
 */
static void
smtp_body_part(struct evbuffer *out, struct smtp_body_state *bs,
    const char *p, size_t n)
{
	size_t	 i, run = 0;

	for (i = 0; i < n; i++) {
		char	 c = p[i];

		if (c != '\r' && c != '\n' && !bs->cr &&
		    !(bs->bol && c == '.')) {
			bs->bol = 0;
			continue;
		}
		evbuffer_add(out, p + run, i - run);
		bs->size += i - run;
		run = i + 1;
		if (bs->cr) {
			bs->cr = 0;
			smtp_body_eol(out, bs);
			if (c == '\n')
				continue;
		}
		if (c == '\r')
			bs->cr = 1;
		else if (c == '\n')
			smtp_body_eol(out, bs);
		else if (bs->bol && c == '.') {
			/* The stuffed dot is not counted in SIZE. */
			evbuffer_add(out, "..", 2);
			bs->size++;
			bs->bol = 0;
		} else {
			evbuffer_add(out, &c, 1);
			bs->size++;
			bs->bol = 0;
		}
	}
	evbuffer_add(out, p + run, n - run);
	bs->size += n - run;
}

static int
smtp_body_has_8bit(const struct iovec *iov, int n)
{
	const unsigned char *p;
	size_t j;
	int i;

	for (i = 0; i < n; i++)
		for (p = iov[i].iov_base, j = 0; j < iov[i].iov_len; j++)
			if (p[j] & 0x80)
				return 1;
	return 0;
}

/*
 * The DATA phase's bytes: every line end becomes CR LF, lines starting
 * with '.' get another, and the end is CR LF "." CR LF.  Built before MAIL, so
 * that MAIL can give the exact SIZE (which counts neither the stuffed
 * dots nor the final ".").
 */
/* XXX each transaction's body is a full copy of the message: cheap at
 * list-post sizes, a waste for multi-megabyte posts sent in many
 * transactions, where evbuffer references to the caller's bytes and a
 * second pass for SIZE would do. */
static void
smtp_body_build(struct smtp_conn *conn, const struct smtp_txn *t)
{
	struct smtp_body_state bs = { 1, 0, 0 };
	int i;

	evbuffer_drain(conn->body, evbuffer_get_length(conn->body));
	for (i = 0; i < t->ndata; i++)
		smtp_body_part(conn->body, &bs, t->data[i].iov_base,
		    t->data[i].iov_len);
	if (bs.cr) {
		bs.cr = 0;
		smtp_body_eol(conn->body, &bs);
	}
	if (!bs.bol) {
		evbuffer_add(conn->body, "\r\n", 2);
		bs.size += 2;
	}
	evbuffer_add(conn->body, ".\r\n", 3);
	conn->body_size = bs.size;
	conn->body_8bit = (conn->caps & SMTP_CAP_8BITMIME) &&
	    smtp_body_has_8bit(t->data, t->ndata);
}

/* Transactions. */

static size_t
smtp_rcpt_next(const struct smtp_txn *t, size_t from)
{
	while (from < t->nrcpts && !smtp_addr_ok(t->rcpts[from]))
		from++;
	return from;
}

/* Refuse locally what must not be sent; true if anything is left. */
static int
smtp_txn_sendable(struct smtp_conn *conn, struct smtp_txn *t)
{
	const char *why = NULL;
	size_t j, n = 0;
	int code = 553;

	if (!smtp_addr_ok(t->mail_from))
		why = "local: sender has control bytes or is too long";
	else if (t->xverp && !(conn->caps & SMTP_CAP_XVERP)) {
		code = 0;
		why = "relay does not offer XVERP; not sent";
	}
	for (j = 0; j < t->nrcpts; j++) {
		if (why != NULL)
			smtp_result_set(&t->results[j], code, why);
		else if (!smtp_addr_ok(t->rcpts[j]))
			smtp_result_set(&t->results[j], 553, "local: "
			    "recipient has control bytes or is too long");
		else
			n++;
	}
	return n > 0;
}

static void
smtp_txn_mail(struct smtp_conn *conn, size_t i)
{
	const struct smtp_txn *t = &conn->txns[i];
	char size[32] = "";

	if (conn->caps & SMTP_CAP_SIZE)
		snprintf(size, sizeof(size), " SIZE=%zu", conn->body_size);
	smtp_conn_cmd(conn, SMTP_CMD_MAIL, i, 0, "MAIL FROM:<%s>%s%s%s\r\n",
	    t->mail_from, t->xverp ? " XVERP" : "", size,
	    conn->body_8bit ? " BODY=8BITMIME" : "");
}

static void
smtp_txn_rcpt(struct smtp_conn *conn, size_t i, size_t j)
{
	smtp_conn_cmd(conn, SMTP_CMD_RCPT, i, j, "RCPT TO:<%s>\r\n",
	    conn->txns[i].rcpts[j]);
}

/* Pipelining: the whole group; lock-step: its first command. */
static void
smtp_txn_start(struct smtp_conn *conn, size_t i)
{
	const struct smtp_txn *t = &conn->txns[i];
	size_t j;

	smtp_body_build(conn, t);
	if (conn->need_rset) {
		conn->need_rset = 0;
		smtp_conn_cmd(conn, SMTP_CMD_RSET, i, 0, "RSET\r\n");
		if (!smtp_pipelining(conn))
			return;
	}
	smtp_txn_mail(conn, i);
	if (!smtp_pipelining(conn))
		return;
	for (j = smtp_rcpt_next(t, 0); j < t->nrcpts;
	    j = smtp_rcpt_next(t, j + 1))
		smtp_txn_rcpt(conn, i, j);
	smtp_conn_cmd(conn, SMTP_CMD_DATA, i, 0, "DATA\r\n");
}

static void
smtp_txn_next(struct smtp_conn *conn)
{
	size_t i;

	while (conn->next < conn->ntxns) {
		i = conn->next++;
		if (smtp_txn_sendable(conn, &conn->txns[i])) {
			smtp_txn_start(conn, i);
			return;
		}
		conn->ts[i].finished = 1;
	}
}

/* A transaction over without its final dot. */
static void
smtp_txn_abandon(struct smtp_conn *conn, size_t i)
{
	conn->ts[i].finished = 1;
	conn->need_rset = 1;
	evbuffer_drain(conn->body, evbuffer_get_length(conn->body));
	smtp_txn_next(conn);
}

/* Give every accepted recipient of transaction i the reply r. */
static void
smtp_txn_final(struct smtp_conn *conn, size_t i, const struct smtp_reply *r)
{
	struct smtp_txn *t = &conn->txns[i];
	size_t j;

	for (j = 0; j < t->nrcpts; j++)
		if (t->results[j].code / 100 == 2)
			smtp_result_set(&t->results[j], r->code, r->text);
	conn->ts[i].finished = 1;
}

/* The batch. */

static void
smtp_batch_check(struct smtp_conn *conn)
{
	if (conn->state != SMTP_SENDING || conn->next < conn->ntxns ||
	    conn->flen > 0)
		return;
	smtp_conn_enter(conn, SMTP_READY);
	event_active(conn->done_ev, EV_TIMEOUT, 1);
}

/* Every result not yet final says why it never will be. */
static void
smtp_batch_fail(struct smtp_conn *conn, const char *why)
{
	struct smtp_txn *t;
	size_t i, j;
	int code;

	for (i = 0; i < conn->ntxns; i++) {
		if (conn->ts[i].finished)
			continue;
		t = &conn->txns[i];
		for (j = 0; j < t->nrcpts; j++) {
			code = t->results[j].code;
			if (code == 0 || code / 100 == 2)
				smtp_result_set(&t->results[j], 0, why);
		}
		conn->ts[i].finished = 1;
	}
	conn->next = conn->ntxns;
}

static void
smtp_conn_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_conn *conn = arg;
	struct smtp_txn *txns = conn->txns;
	size_t ntxns = conn->ntxns;
	smtp_done_fn done = conn->done;
	void *done_arg = conn->done_arg;

	(void)fd;
	(void)what;
	conn->busy = 0;
	conn->txns = NULL;
	conn->ntxns = 0;
	conn->done = NULL;
	/* Last: the callback may send again or free conn. */
	done(done_arg, txns, ntxns);
}

/* Connection. */

static void
smtp_conn_drop(struct smtp_conn *conn, enum smtp_state state)
{
	if (conn->bev != NULL)
		bufferevent_free(conn->bev);
	conn->bev = NULL;
	evtimer_del(conn->timer);
	conn->fhead = conn->flen = 0;
	conn->caps = 0;
	conn->size_max = 0;
	conn->need_rset = 0;
	evbuffer_drain(conn->body, evbuffer_get_length(conn->body));
	smtp_conn_enter(conn, state);
}

static void
smtp_conn_close(struct smtp_conn *conn, const char *reason)
{
	log_info("smtp_close", "conn=%u relay=%s:%d reason=%s", conn->id,
	    conn->cfg.host, conn->cfg.port, log_q(reason));
	smtp_conn_drop(conn, SMTP_CLOSED);
}

static void
smtp_conn_fail(struct smtp_conn *conn, const char *event,
    const char *fmt, ...)
{
	char why[sizeof(((struct smtp_result *)0)->text)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warn(event, "conn=%u relay=%s:%d state=%s reason=%s", conn->id,
	    conn->cfg.host, conn->cfg.port, smtp_state_names[conn->state],
	    log_q(why));
	if (conn->busy)
		smtp_batch_fail(conn, why);
	smtp_conn_drop(conn, SMTP_BROKEN);
	if (conn->busy)
		event_active(conn->done_ev, EV_TIMEOUT, 1);
}

static const char *
smtp_conn_waiting(const struct smtp_conn *conn)
{
	const struct smtp_expect *e = smtp_fifo_head(conn);

	return e != NULL ? smtp_cmd_waits[e->cmd] : "reply";
}

static void
smtp_conn_fail_connect(struct smtp_conn *conn, int err)
{
	if (err == ECONNREFUSED)
		smtp_conn_fail(conn, "smtp_connect_fail", "connection refused");
	else
		smtp_conn_fail(conn, "smtp_connect_fail", "connect failed: %s",
		    strerror(err));
}

/* Reply handlers: 0, or -1 once the connection is gone. */

static int
smtp_on_greeting(struct smtp_conn *conn, const struct smtp_reply *r)
{
	if (r->code != 220) {
		smtp_conn_fail(conn, "smtp_refused", "relay greeting: %d %s",
		    r->code, r->text);
		return -1;
	}
	smtp_conn_enter(conn, SMTP_HELLO);
	smtp_conn_cmd(conn, SMTP_CMD_EHLO, 0, 0, "EHLO %s\r\n",
	    conn->cfg.helo);
	return 0;
}

static void
smtp_conn_ready(struct smtp_conn *conn)
{
	log_debug("smtp_hello", "conn=%u caps=0x%x size_max=%lu", conn->id,
	    conn->caps, conn->size_max);
	smtp_conn_enter(conn, SMTP_SENDING);
	smtp_txn_next(conn);
}

static int
smtp_on_hello(struct smtp_conn *conn, const struct smtp_expect *e,
    const char *raw, size_t n, const struct smtp_reply *r)
{
	if (smtp_code_class(r) == 2) {
		if (e->cmd == SMTP_CMD_EHLO)
			conn->caps = smtp_ehlo_caps(raw, n, &conn->size_max);
		smtp_conn_ready(conn);
		return 0;
	}
	/* RFC 5321 4.1.4: a relay that does not know EHLO says 5xx. */
	if (e->cmd == SMTP_CMD_EHLO && smtp_code_class(r) == 5) {
		smtp_conn_cmd(conn, SMTP_CMD_HELO, 0, 0, "HELO %s\r\n",
		    conn->cfg.helo);
		return 0;
	}
	smtp_conn_fail(conn, "smtp_refused", "%s refused: %d %s",
	    smtp_cmd_names[e->cmd], r->code, r->text);
	return -1;
}

static int
smtp_on_rset(struct smtp_conn *conn, const struct smtp_expect *e,
    const struct smtp_reply *r)
{
	if (smtp_code_class(r) != 2) {
		smtp_conn_fail(conn, "smtp_refused", "RSET refused: %d %s",
		    r->code, r->text);
		return -1;
	}
	if (!smtp_pipelining(conn))
		smtp_txn_mail(conn, e->txn);
	return 0;
}

static int
smtp_unexpected(struct smtp_conn *conn, const struct smtp_expect *e,
    const struct smtp_reply *r)
{
	smtp_conn_fail(conn, "smtp_protocol_error", "protocol error: "
	    "unexpected reply to %s: %d %s", smtp_cmd_names[e->cmd],
	    r->code, r->text);
	return -1;
}

static int
smtp_on_mail(struct smtp_conn *conn, const struct smtp_expect *e,
    const struct smtp_reply *r)
{
	struct smtp_txn *t = &conn->txns[e->txn];
	size_t j;

	if (smtp_code_class(r) == 2) {
		if (!smtp_pipelining(conn))
			smtp_txn_rcpt(conn, e->txn, smtp_rcpt_next(t, 0));
		return 0;
	}
	if (!smtp_code_failed(r))
		return smtp_unexpected(conn, e, r);
	/* The RCPTs' "need MAIL" replies would tell less than this. */
	conn->ts[e->txn].mail_failed = 1;
	for (j = 0; j < t->nrcpts; j++)
		if (t->results[j].code == 0)
			smtp_result_set(&t->results[j], r->code, r->text);
	if (!smtp_pipelining(conn))
		smtp_txn_abandon(conn, e->txn);
	return 0;
}

static int
smtp_on_rcpt(struct smtp_conn *conn, const struct smtp_expect *e,
    const struct smtp_reply *r)
{
	struct smtp_txn *t = &conn->txns[e->txn];
	struct smtp_tstate *ts = &conn->ts[e->txn];
	size_t j;

	if (smtp_code_class(r) != 2 && !smtp_code_failed(r))
		return smtp_unexpected(conn, e, r);
	if (!ts->mail_failed) {
		smtp_result_set(&t->results[e->rcpt], r->code, r->text);
		if (smtp_code_class(r) == 2)
			ts->accepted++;
	}
	if (smtp_pipelining(conn))
		return 0;
	if ((j = smtp_rcpt_next(t, e->rcpt + 1)) < t->nrcpts)
		smtp_txn_rcpt(conn, e->txn, j);
	else if (ts->accepted > 0)
		smtp_conn_cmd(conn, SMTP_CMD_DATA, e->txn, 0, "DATA\r\n");
	else
		smtp_txn_abandon(conn, e->txn);
	return 0;
}

static int
smtp_on_data(struct smtp_conn *conn, const struct smtp_expect *e,
    const struct smtp_reply *r)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	const struct smtp_tstate *ts = &conn->ts[e->txn];
	size_t n;

	if (smtp_code_failed(r)) {
		smtp_txn_final(conn, e->txn, r);
		smtp_txn_abandon(conn, e->txn);
		return 0;
	}
	if (r->code != 354)
		return smtp_unexpected(conn, e, r);
	/* With nothing accepted a pipelining relay may still say 354;
	 * an empty message ends that transaction cleanly. */
	if (ts->accepted == 0 || ts->mail_failed) {
		evbuffer_drain(conn->body, evbuffer_get_length(conn->body));
		smtp_conn_write(conn, ".\r\n", 3);
	} else {
		n = evbuffer_get_length(conn->body);
		evbuffer_add_buffer(out, conn->body);
		conn->out_added += n;
	}
	log_debug("smtp_cmd", "conn=%u cmd=. txn=%zu", conn->id, e->txn);
	smtp_fifo_push(conn, SMTP_CMD_DOT, e->txn, 0);
	/* RFC 2920 3.1: the next group may follow the final dot. */
	if (smtp_pipelining(conn))
		smtp_txn_next(conn);
	return 0;
}

static int
smtp_on_dot(struct smtp_conn *conn, const struct smtp_expect *e,
    const struct smtp_reply *r)
{
	if (smtp_code_class(r) != 2 && !smtp_code_failed(r))
		return smtp_unexpected(conn, e, r);
	if (!conn->ts[e->txn].mail_failed)
		smtp_txn_final(conn, e->txn, r);
	conn->ts[e->txn].finished = 1;
	if (!smtp_pipelining(conn))
		smtp_txn_next(conn);
	return 0;
}

static int
smtp_on_unsolicited(struct smtp_conn *conn, const struct smtp_reply *r)
{
	char why[sizeof(r->text) + 32];

	snprintf(why, sizeof(why), "%d %s", r->code, r->text);
	/* A relay ending an idle session (its timeout, a shutdown). */
	if (r->code == 421 && conn->state == SMTP_READY) {
		smtp_conn_close(conn, why);
		return -1;
	}
	smtp_conn_fail(conn, "smtp_protocol_error",
	    "protocol error: reply without a command: %s", why);
	return -1;
}

static int
smtp_on_reply(struct smtp_conn *conn, const char *raw, size_t n,
    const struct smtp_reply *r)
{
	struct smtp_expect e;
	int rc = 0;

	if (!smtp_fifo_pop(conn, &e))
		return smtp_on_unsolicited(conn, r);
	/* A relay cannot have read a message it answers before the final
	 * dot left us: its 250 then proves nothing, and counting it would
	 * mark as sent copies the relay never had. */
	if (e.cmd == SMTP_CMD_DOT && !smtp_expect_written(conn, &e)) {
		smtp_conn_fail(conn, "smtp_protocol_error", "protocol error: "
		    "reply to end of data before the data was sent: %d %s",
		    r->code, r->text);
		return -1;
	}
	log_debug("smtp_reply", "conn=%u cmd=%s code=%d text=%s", conn->id,
	    smtp_cmd_names[e.cmd], r->code, log_q(r->text));
	switch (e.cmd) {
	case SMTP_CMD_GREETING:
		rc = smtp_on_greeting(conn, r);
		break;
	case SMTP_CMD_EHLO:
	case SMTP_CMD_HELO:
		rc = smtp_on_hello(conn, &e, raw, n, r);
		break;
	case SMTP_CMD_RSET:
		rc = smtp_on_rset(conn, &e, r);
		break;
	case SMTP_CMD_MAIL:
		rc = smtp_on_mail(conn, &e, r);
		break;
	case SMTP_CMD_RCPT:
		rc = smtp_on_rcpt(conn, &e, r);
		break;
	case SMTP_CMD_DATA:
		rc = smtp_on_data(conn, &e, r);
		break;
	case SMTP_CMD_DOT:
		rc = smtp_on_dot(conn, &e, r);
		break;
	}
	if (rc < 0)
		return -1;
	/* RFC 5321 3.8: 421 means the relay is closing; it was this
	 * command's reply, and nothing after it will be answered. */
	if (r->code == 421) {
		smtp_conn_fail(conn, "smtp_lost", "relay closed the "
		    "connection: 421 %s", r->text);
		return -1;
	}
	smtp_batch_check(conn);
	return 0;
}

static void
smtp_conn_readcb(struct bufferevent *bev, void *arg)
{
	struct smtp_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), off = 0;
	const char *p = (const char *)evbuffer_pullup(in, -1);
	struct smtp_reply r;
	long n;

	while (off < len) {
		n = smtp_reply_parse(p + off, len - off, &r);
		if (n == 0)
			break;
		if (n < 0) {
			log_warn("smtp_bad_reply", "conn=%u bytes=%s", conn->id,
			    log_qn(p + off, len - off < 64 ? len - off : 64));
			smtp_conn_fail(conn, "smtp_protocol_error",
			    "protocol error: malformed reply waiting for %s",
			    smtp_conn_waiting(conn));
			return;
		}
		if (smtp_on_reply(conn, p + off, (size_t)n, &r) < 0)
			return;
		off += (size_t)n;
	}
	evbuffer_drain(in, off);
	if (off > 0)
		smtp_conn_arm(conn);
}

/* Output drained: the final reply's deadline counts from here. */
static void
smtp_conn_writecb(struct bufferevent *bev, void *arg)
{
	struct smtp_conn *conn = arg;
	const struct smtp_expect *e = smtp_fifo_head(conn);

	(void)bev;
	if (e != NULL && e->cmd == SMTP_CMD_DOT)
		smtp_conn_arm(conn);
}

static void
smtp_on_connected(struct smtp_conn *conn)
{
	struct timeval tv = { conn->cfg.reply_timeout, 0 };

	log_info("smtp_connect", "conn=%u relay=%s:%d", conn->id,
	    conn->cfg.host, conn->cfg.port);
	smtp_conn_enter(conn, SMTP_GREETING);
	/* A relay that stops reading stalls our writes: bound that too. */
	bufferevent_set_timeouts(conn->bev, NULL, &tv);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	smtp_fifo_push(conn, SMTP_CMD_GREETING, 0, 0);
}

static void
smtp_conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_conn *conn = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		smtp_on_connected(conn);
	else if (conn->state == SMTP_CONNECTING)
		smtp_conn_fail_connect(conn, err);
	else if (what & BEV_EVENT_TIMEOUT)
		smtp_conn_fail(conn, "smtp_timeout", "timeout sending to relay"
		    " waiting for %s", smtp_conn_waiting(conn));
	else if ((what & BEV_EVENT_EOF) && conn->state == SMTP_READY)
		smtp_conn_close(conn, "closed by relay");
	else if (what & BEV_EVENT_EOF)
		smtp_conn_fail(conn, "smtp_lost", "connection closed by relay "
		    "waiting for %s", smtp_conn_waiting(conn));
	else
		smtp_conn_fail(conn, "smtp_lost", "connection error waiting "
		    "for %s: %s", smtp_conn_waiting(conn), strerror(err));
}

static void
smtp_conn_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_conn *conn = arg;

	(void)fd;
	(void)what;
	if (conn->state == SMTP_CONNECTING)
		smtp_conn_fail(conn, "smtp_timeout", "timeout connecting");
	else
		smtp_conn_fail(conn, "smtp_timeout", "timeout waiting for %s",
		    smtp_conn_waiting(conn));
}

static struct addrinfo *
smtp_conn_resolve(struct smtp_conn *conn)
{
	struct addrinfo hints, *ai = NULL;
	char port[16];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", conn->cfg.port);
	rc = getaddrinfo(conn->cfg.host, port, &hints, &ai);
	if (rc == EAI_NONAME) {
		/* XXX a relay given by name is resolved with a blocking
		 * lookup that stalls the whole loop while DNS is slow;
		 * configure an address, or move this to evdns. */
		hints.ai_flags = AI_NUMERICSERV;
		rc = getaddrinfo(conn->cfg.host, port, &hints, &ai);
	}
	if (rc != 0) {
		smtp_conn_fail(conn, "smtp_connect_fail", "cannot resolve "
		    "relay %s: %s", conn->cfg.host, gai_strerror(rc));
		return NULL;
	}
	return ai;
}

/*
 * The socket is ours, not libevent's, so that TCP_NODELAY is set before
 * the first byte and an immediate connect error keeps its errno.
 * XXX only the first address of a name is tried.
 */
static void
smtp_conn_connect(struct smtp_conn *conn)
{
	struct addrinfo *ai;
	int fd, one = 1, err;

	if ((ai = smtp_conn_resolve(conn)) == NULL)
		return;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
	    sizeof(one)) < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
	    errno != EINPROGRESS)) {
		err = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		smtp_conn_fail_connect(conn, err);
		return;
	}
	freeaddrinfo(ai);
	conn->bev = bufferevent_socket_new(conn->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev == NULL) {
		close(fd);
		smtp_conn_fail(conn, "smtp_connect_fail", "out of memory");
		return;
	}
	bufferevent_setcb(conn->bev, smtp_conn_readcb, smtp_conn_writecb,
	    smtp_conn_eventcb, conn);
	smtp_conn_enter(conn, SMTP_CONNECTING);
	smtp_conn_arm(conn);
	if (bufferevent_socket_connect(conn->bev, NULL, 0) < 0)
		smtp_conn_fail(conn, "smtp_connect_fail", "connect failed");
}

/* Public interface. */

struct smtp_conn *
smtp_conn_new(struct event_base *base, const struct smtp_config *cfg)
{
	struct smtp_conn *conn;

	if (cfg->helo != NULL && !smtp_addr_ok(cfg->helo))
		return NULL;
	if ((conn = calloc(1, sizeof(*conn))) == NULL)
		return NULL;
	conn->base = base;
	conn->cfg = *cfg;
	conn->cfg.host = strdup(cfg->host != NULL ? cfg->host : "127.0.0.1");
	conn->cfg.helo = strdup(cfg->helo != NULL ? cfg->helo : "localhost");
	if (conn->cfg.connect_timeout <= 0)
		conn->cfg.connect_timeout = SMTP_CONNECT_TIMEOUT;
	if (conn->cfg.reply_timeout <= 0)
		conn->cfg.reply_timeout = SMTP_REPLY_TIMEOUT;
	if (conn->cfg.data_timeout <= 0)
		conn->cfg.data_timeout = SMTP_DATA_TIMEOUT;
	conn->id = ++smtp_conn_ids;
	conn->state = SMTP_CLOSED;
	conn->timer = evtimer_new(base, smtp_conn_timercb, conn);
	conn->done_ev = event_new(base, -1, 0, smtp_conn_done_cb, conn);
	conn->body = evbuffer_new();
	if (conn->cfg.host == NULL || conn->cfg.helo == NULL ||
	    conn->timer == NULL || conn->done_ev == NULL ||
	    conn->body == NULL) {
		smtp_conn_free(conn);
		return NULL;
	}
	return conn;
}

static int
smtp_batch_setup(struct smtp_conn *conn, struct smtp_txn *txns,
    size_t ntxns)
{
	size_t i, j, most = 0;

	for (i = 0; i < ntxns; i++) {
		if (txns[i].nrcpts > most)
			most = txns[i].nrcpts;
		for (j = 0; j < txns[i].nrcpts; j++)
			smtp_result_set(&txns[i].results[j], 0, "");
	}
	/* In flight at most: a dot, RSET, MAIL, the RCPTs, DATA, and the
	 * greeting and hellos before them. */
	if (smtp_fifo_reserve(conn, most + 8) < 0)
		return -1;
	free(conn->ts);
	if ((conn->ts = calloc(ntxns, sizeof(*conn->ts))) == NULL)
		return -1;
	return 0;
}

int
smtp_conn_send(struct smtp_conn *conn, struct smtp_txn *txns, size_t ntxns,
    smtp_done_fn done, void *arg)
{
	if (conn->busy || txns == NULL || ntxns == 0 || done == NULL)
		return -1;
	if (smtp_batch_setup(conn, txns, ntxns) < 0)
		return -1;
	conn->txns = txns;
	conn->ntxns = ntxns;
	conn->next = 0;
	conn->done = done;
	conn->done_arg = arg;
	conn->busy = 1;
	/* XXX a relay that closes a kept connection just as a batch starts
	 * fails the whole batch with code 0 (retried later by the caller)
	 * instead of reconnecting once; seen only if its idle timeout and
	 * our batch coincide. */
	if (conn->state == SMTP_READY) {
		smtp_conn_enter(conn, SMTP_SENDING);
		smtp_txn_next(conn);
		smtp_batch_check(conn);
	} else
		smtp_conn_connect(conn);
	return 0;
}

int
smtp_conn_busy(const struct smtp_conn *conn)
{
	return conn->busy;
}

int
smtp_conn_has_pipelining(const struct smtp_conn *conn)
{
	return smtp_pipelining(conn);
}

int
smtp_conn_has_xverp(const struct smtp_conn *conn)
{
	return (conn->caps & SMTP_CAP_XVERP) != 0;
}

int
smtp_conn_connected(const struct smtp_conn *conn)
{
	return conn->state >= SMTP_GREETING;
}

unsigned
smtp_conn_caps(const struct smtp_conn *conn)
{
	return conn->caps;
}

unsigned long
smtp_conn_size_max(const struct smtp_conn *conn)
{
	return conn->size_max;
}

void
smtp_conn_free(struct smtp_conn *conn)
{
	if (conn == NULL)
		return;
	if (conn->state == SMTP_READY && !conn->busy) {
		/* Idle, so nothing waits in the output: the few bytes fit
		 * the socket buffer and the 221 is not worth a round trip. */
		(void)send(bufferevent_getfd(conn->bev), "QUIT\r\n", 6,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		smtp_conn_close(conn, "quit");
	} else if (conn->bev != NULL)
		smtp_conn_close(conn, "freed while busy");
	if (conn->timer != NULL)
		event_free(conn->timer);
	if (conn->done_ev != NULL)
		event_free(conn->done_ev);
	if (conn->body != NULL)
		evbuffer_free(conn->body);
	free(conn->fifo);
	free(conn->ts);
	free((char *)conn->cfg.host);
	free((char *)conn->cfg.helo);
	free(conn);
}
