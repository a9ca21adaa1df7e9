/*
 * smtp_client against a scripted relay on a loopback socket in the same
 * event_base.  Each step of a script names the exact bytes the client
 * must send and the bytes the relay answers, and may require that the
 * bytes come in one write (a pipelined group) or that the client waits
 * for the answer before sending more (lock-step, DATA before 354).
 */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "smtp.h"

#define S_WHOLE	0x01	/* the expected bytes arrive in one read */
#define S_WAIT	0x02	/* nothing more arrives before our reply */
#define S_CLOSE	0x04	/* close the connection after the reply */
#define S_STALL	0x08	/* then read on and never answer */

#define GREETING	{ NULL, "220 relay.test ESMTP\r\n", 0 }
#define EHLO_PIPELINING	{ "EHLO client.test\r\n", \
	"250-relay.test\r\n250 PIPELINING\r\n", S_WAIT }

struct step {
	const char	*expect;	/* NULL: sent on accept (a greeting) */
	const char	*reply;
	int		 flags;
};

struct relay {
	struct event_base	*base;
	struct evconnlistener	*listener;
	struct bufferevent	*bev;
	const struct step	*steps;
	size_t			 nsteps, at;
	int			 port;
	int			 accepts;
	int			 client_closed;
	int			 stalled;
	char			 err[2048];
};

struct run {
	int			 calls;
	int			 free_conn;	/* free it in the callback */
	struct smtp_conn	*conn;
};

struct fixture {
	struct event_base	*base;
	struct relay		 relay;
	struct smtp_config	 cfg;
	struct run		 run;
};


/* Printable form of bytes for failure messages. */
static const char *
esc(const char *p, size_t n)
{
	static char buf[4][1024];
	static int k;
	char *b = buf[k++ & 3];
	size_t i, o = 0;

	for (i = 0; i < n && o < sizeof(buf[0]) - 8; i++) {
		if (p[i] == '\r')
			o += sprintf(b + o, "\\r");
		else if (p[i] == '\n')
			o += sprintf(b + o, "\\n");
		else if ((unsigned char)p[i] < 0x20 ||
		    (unsigned char)p[i] >= 0x7f)
			o += sprintf(b + o, "\\x%02x", (unsigned char)p[i]);
		else
			b[o++] = p[i];
	}
	b[o] = '\0';
	return b;
}

static void
relay_fail(struct relay *r, const char *fmt, ...)
{
	va_list ap;

	if (r->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
}

static void
relay_send(struct relay *r, const char *s)
{
	if (s != NULL && send(bufferevent_getfd(r->bev), s, strlen(s),
	    MSG_NOSIGNAL) != (ssize_t)strlen(s))
		relay_fail(r, "relay could not send %s", esc(s, strlen(s)));
}

static void
relay_close(struct relay *r)
{
	if (r->bev != NULL)
		bufferevent_free(r->bev);
	r->bev = NULL;
}

/* Bytes the kernel holds for us still: a bufferevent reads a large
 * write in pieces, and that is no split on the client's side. */
static int
relay_queued(const struct relay *r)
{
	int n = 0;

	ioctl(bufferevent_getfd(r->bev), FIONREAD, &n);
	return n > 0;
}

/* Answer the current step; false once the connection is gone. */
static int
relay_answer(struct relay *r)
{
	const struct step *st = &r->steps[r->at++];

	relay_send(r, st->reply);
	if (st->flags & S_STALL)
		r->stalled = 1;
	if (st->flags & S_CLOSE) {
		relay_close(r);
		return 0;
	}
	return 1;
}

static void
relay_readcb(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	const struct step *st;
	size_t len, need;
	const char *p;

	for (;;) {
		len = evbuffer_get_length(in);
		if (len == 0)
			return;
		p = (const char *)evbuffer_pullup(in, -1);
		if (r->stalled || r->err[0] != '\0') {
			evbuffer_drain(in, len);
			return;
		}
		if (r->at >= r->nsteps || r->steps[r->at].expect == NULL) {
			relay_fail(r, "step %zu: unexpected %s", r->at,
			    esc(p, len));
			return;
		}
		st = &r->steps[r->at];
		need = strlen(st->expect);
		if (len < need && (st->flags & S_WHOLE) && !relay_queued(r))
			relay_fail(r, "step %zu: split write, got %s", r->at,
			    esc(p, len));
		if (len < need)
			return;
		if (memcmp(p, st->expect, need) != 0) {
			relay_fail(r, "step %zu: want %s got %s", r->at,
			    esc(st->expect, need), esc(p, len));
			return;
		}
		if ((st->flags & S_WAIT) && len > need) {
			relay_fail(r, "step %zu: did not wait, sent %s", r->at,
			    esc(p + need, len - need));
			return;
		}
		evbuffer_drain(in, need);
		if (!relay_answer(r))
			return;
	}
}

static void
relay_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct relay *r = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		r->client_closed++;
		relay_close(r);
	}
}

static void
relay_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct relay *r = arg;

	(void)l;
	(void)sa;
	(void)salen;
	relay_close(r);
	r->accepts++;
	r->stalled = 0;
	r->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(r->bev, relay_readcb, NULL, relay_eventcb, r);
	bufferevent_enable(r->bev, EV_READ);
	if (r->at < r->nsteps && r->steps[r->at].expect == NULL)
		relay_answer(r);
}

static void
relay_start(struct relay *r, struct event_base *base)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(r, 0, sizeof(*r));
	r->base = base;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->listener = evconnlistener_new_bind(base, relay_accept, r,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	    (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(r->listener);
	getsockname(evconnlistener_get_fd(r->listener),
	    (struct sockaddr *)&sin, &len);
	r->port = ntohs(sin.sin_port);
}

static void
relay_script(struct relay *r, const struct step *steps, size_t n)
{
	r->steps = steps;
	r->nsteps = n;
	r->at = 0;
	r->stalled = 0;
}

#define SCRIPT(f, s)	\
	relay_script(&(f)->relay, (s), sizeof(s) / sizeof((s)[0]))

static void
relay_done(const struct relay *r)
{
	if (r->err[0] != '\0')
		fail_msg("relay: %s", r->err);
	assert_int_equal(r->at, r->nsteps);
}

/* Loop driver. */

static void
on_expire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

static void
loop_until(struct event_base *base, const int *flag, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	int expired = 0;
	struct event *t = evtimer_new(base, on_expire, &expired);

	evtimer_add(t, &tv);
	while ((flag == NULL || !*flag) && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
}

static void
on_done(void *arg, struct smtp_txn *txns, size_t ntxns)
{
	struct run *run = arg;

	(void)txns;
	(void)ntxns;
	run->calls++;
	if (run->free_conn) {
		smtp_conn_free(run->conn);
		run->conn = NULL;
	}
}

/* Run one batch to its callback; checks it was not called early. */
static void
send_batch(struct fixture *f, struct smtp_conn *conn, struct smtp_txn *t,
    size_t n)
{
	int before = f->run.calls, want = before + 1;

	f->run.conn = conn;
	assert_int_equal(smtp_conn_send(conn, t, n, on_done, &f->run), 0);
	assert_int_equal(f->run.calls, before);
	assert_true(smtp_conn_busy(conn));
	while (f->run.calls < want) {
		int expired = 0;
		struct timeval tv = { 5, 0 };
		struct event *e = evtimer_new(f->base, on_expire, &expired);

		evtimer_add(e, &tv);
		while (f->run.calls < want && !expired)
			event_base_loop(f->base, EVLOOP_ONCE);
		event_free(e);
		if (expired)
			fail_msg("no done callback within 5 s");
	}
	assert_int_equal(f->run.calls, want);
	if (f->relay.err[0] != '\0')
		fail_msg("relay: %s", f->relay.err);
}

static void
want_result(const struct smtp_result *res, int code, const char *text)
{
	assert_int_equal(res->code, code);
	assert_string_equal(res->text, text);
}

static void
txn_init(struct smtp_txn *t, const char *from, const char **rcpts,
    size_t n, struct smtp_result *res, const char *data)
{
	static struct iovec pool[64];
	static int k;
	struct iovec *v = &pool[k++ & 63];

	memset(t, 0, sizeof(*t));
	t->mail_from = from;
	t->rcpts = rcpts;
	t->nrcpts = n;
	t->results = res;
	v->iov_base = (void *)data;
	v->iov_len = strlen(data);
	t->data = v;
	t->ndata = 1;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->base = event_base_new();
	relay_start(&f->relay, f->base);
	f->cfg.host = "127.0.0.1";
	f->cfg.port = f->relay.port;
	f->cfg.helo = "client.test";
	f->cfg.connect_timeout = 1;
	f->cfg.reply_timeout = 1;
	f->cfg.data_timeout = 1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	relay_close(&f->relay);
	evconnlistener_free(f->relay.listener);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* Tests. */

static void
test_pipelined_one_txn(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<list-bounces@example.org>\r\n"
		  "RCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
		  "RCPT TO:<c@x.test>\r\nDATA\r\n",
		  "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
		  "550 5.1.1 <b@x.test>: unknown\r\n250 2.1.5 Ok\r\n"
		  "354 go\r\n", S_WHOLE | S_WAIT },
		{ "Subject: t\r\n\r\n..hidden\r\nline\r\n...two\r\nend\r\n"
		  ".\r\n", "250 2.0.0 Ok: queued as A1\r\n",
		  S_WHOLE | S_WAIT },
		{ "QUIT\r\n", NULL, 0 },
	};
	const char *rcpts[] = { "a@x.test", "b@x.test", "c@x.test" };
	struct smtp_result res[3];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	assert_false(smtp_conn_connected(conn));
	txn_init(&t, "list-bounces@example.org", rcpts, 3, res,
	    "Subject: t\n\n.hidden\nline\r\n..two\nend");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 250, "2.0.0 Ok: queued as A1");
	want_result(&res[1], 550, "5.1.1 <b@x.test>: unknown");
	want_result(&res[2], 250, "2.0.0 Ok: queued as A1");
	assert_true(smtp_conn_connected(conn));
	assert_true(smtp_conn_has_pipelining(conn));
	assert_false(smtp_conn_has_xverp(conn));
	assert_false(smtp_conn_busy(conn));
	smtp_conn_free(conn);
	loop_until(f->base, &f->relay.client_closed, 2000);
	relay_done(&f->relay);
}

static void
test_pipelined_groups_follow_dot(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		/* The next group rides behind the dot. */
		{ "one\r\n.\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r1@x>\r\n"
		  "RCPT TO:<r2@x>\r\nDATA\r\n",
		  "250 2.0.0 queued\r\n250 ok\r\n451 4.7.1 later\r\n"
		  "550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n",
		  S_WHOLE | S_WAIT },
		/* Nobody accepted: RSET in front of the next group. */
		{ "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<z@x>\r\nDATA\r\n",
		  "250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n",
		  S_WHOLE | S_WAIT },
		{ "three\r\n.\r\n", "250 2.0.0 queued 3\r\n",
		  S_WHOLE | S_WAIT },
		/* The kept connection: no greeting, no EHLO, no RSET. */
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<q@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		{ "again\r\n.\r\n", "250 2.0.0 q4\r\n", S_WAIT },
	};
	const char *r1[] = { "a@x" }, *r2[] = { "r1@x", "r2@x" };
	const char *r3[] = { "z@x" }, *r4[] = { "q@x" };
	struct smtp_result res1[1], res2[2], res3[1], res4[1];
	struct smtp_txn t[3], t4;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t[0], "s@x", r1, 1, res1, "one\n");
	txn_init(&t[1], "s@x", r2, 2, res2, "two\n");
	txn_init(&t[2], "s@x", r3, 1, res3, "three\n");
	send_batch(f, conn, t, 3);
	want_result(&res1[0], 250, "2.0.0 queued");
	want_result(&res2[0], 451, "4.7.1 later");
	want_result(&res2[1], 550, "5.1.1 no");
	want_result(&res3[0], 250, "2.0.0 queued 3");
	txn_init(&t4, "s@x", r4, 1, res4, "again");
	send_batch(f, conn, &t4, 1);
	want_result(&res4[0], 250, "2.0.0 q4");
	assert_int_equal(f->relay.accepts, 1);
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_pipelined_all_rejected_354(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<r1@x>\r\nDATA\r\n",
		  "250 ok\r\n550 5.1.1 no\r\n354 go\r\n", S_WHOLE | S_WAIT },
		/* An empty message ends it; the next group follows. */
		{ ".\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r2@x>\r\nDATA\r\n",
		  "554 5.5.1 empty\r\n250 ok\r\n550 5.1.1 no2\r\n"
		  "554 5.5.1 no valid recipients\r\n", S_WHOLE | S_WAIT },
		/* The RSET owed from the last batch opens the next one. */
		{ "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<ok@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
		  S_WHOLE | S_WAIT },
		{ "y\r\n.\r\n", "250 fine\r\n", S_WAIT },
	};
	const char *r1[] = { "r1@x" }, *r2[] = { "r2@x" }, *r3[] = { "ok@x" };
	struct smtp_result res1[1], res2[1], res3[1];
	struct smtp_txn t[2], t3;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t[0], "s@x", r1, 1, res1, "x\n");
	txn_init(&t[1], "s@x", r2, 1, res2, "x\n");
	send_batch(f, conn, t, 2);
	want_result(&res1[0], 550, "5.1.1 no");
	want_result(&res2[0], 550, "5.1.1 no2");
	txn_init(&t3, "s@x", r3, 1, res3, "y\n");
	send_batch(f, conn, &t3, 1);
	want_result(&res3[0], 250, "fine");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_lockstep(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		{ "EHLO client.test\r\n", "250-relay.test\r\n250 SIZE 1000\r\n",
		  S_WAIT },
		{ "MAIL FROM:<s@x> SIZE=4\r\n", "250 ok\r\n", S_WAIT },
		{ "RCPT TO:<a@x>\r\n", "250 ok\r\n", S_WAIT },
		{ "RCPT TO:<b@x>\r\n", "451 4.2.0 busy\r\n", S_WAIT },
		{ "DATA\r\n", "354 go\r\n", S_WAIT },
		{ "hi\r\n.\r\n", "250 2.0.0 done\r\n", S_WAIT },
		/* Nobody accepted: no DATA, and RSET before the next. */
		{ "MAIL FROM:<s@x> SIZE=0\r\n", "250 ok\r\n", S_WAIT },
		{ "RCPT TO:<c@x>\r\n", "550 5.1.1 no\r\n", S_WAIT },
		{ "RSET\r\n", "250 ok\r\n", S_WAIT },
		{ "MAIL FROM:<s@x> SIZE=0\r\n", "553 5.1.8 bad sender\r\n",
		  S_WAIT },
		{ "RSET\r\n", "250 ok\r\n", S_WAIT },
		{ "MAIL FROM:<s@x> SIZE=3\r\n", "250 ok\r\n", S_WAIT },
		{ "RCPT TO:<f@x>\r\n", "250 ok\r\n", S_WAIT },
		{ "DATA\r\n", "354 go\r\n", S_WAIT },
		{ "..\r\n.\r\n", "250 ok f\r\n", S_WAIT },
	};
	const char *r1[] = { "a@x", "b@x" }, *r2[] = { "c@x" };
	const char *r3[] = { "d@x", "e@x" }, *r4[] = { "f@x" };
	struct smtp_result res1[2], res2[1], res3[2], res4[1];
	struct smtp_txn t[4];
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t[0], "s@x", r1, 2, res1, "hi\n");
	txn_init(&t[1], "s@x", r2, 1, res2, "");
	txn_init(&t[2], "s@x", r3, 2, res3, "");
	txn_init(&t[3], "s@x", r4, 1, res4, ".\n");
	send_batch(f, conn, t, 4);
	want_result(&res1[0], 250, "2.0.0 done");
	want_result(&res1[1], 451, "4.2.0 busy");
	want_result(&res2[0], 550, "5.1.1 no");
	want_result(&res3[0], 553, "5.1.8 bad sender");
	want_result(&res3[1], 553, "5.1.8 bad sender");
	want_result(&res4[0], 250, "ok f");
	assert_false(smtp_conn_has_pipelining(conn));
	assert_int_equal(smtp_conn_caps(conn), SMTP_CAP_SIZE);
	assert_int_equal(smtp_conn_size_max(conn), 1000);
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_helo_fallback(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		{ NULL, "220 relay.test SMTP\r\n", 0 },
		{ "EHLO client.test\r\n", "502 5.5.2 what\r\n", S_WAIT },
		{ "HELO client.test\r\n", "250 hi\r\n", S_WAIT },
		{ "MAIL FROM:<>\r\n", "250 ok\r\n", S_WAIT },
		{ "RCPT TO:<a@x>\r\n", "250 ok\r\n", S_WAIT },
		{ "DATA\r\n", "354 go\r\n", S_WAIT },
		{ "m\r\n.\r\n", "250 sent\r\n", S_WAIT },
	};
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "", r, 1, res, "m\r\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 250, "sent");
	assert_int_equal(smtp_conn_caps(conn), 0);
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_xverp_size_8bitmime(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		{ "EHLO client.test\r\n", "250-relay.test\r\n250-PIPELINING\r\n"
		  "250-XVERP\r\n250-8BITMIME\r\n250 SIZE\r\n", S_WAIT },
		{ "MAIL FROM:<l-bounces@x> XVERP SIZE=7 BODY=8BITMIME\r\n"
		  "RCPT TO:<a@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		{ "caf\xc3\xa9\r\n.\r\nMAIL FROM:<l-bounces@x> SIZE=2\r\n"
		  "RCPT TO:<b@x>\r\nDATA\r\n",
		  "250 ok 1\r\n250 ok\r\n250 ok\r\n354 go\r\n",
		  S_WHOLE | S_WAIT },
		{ "\r\n.\r\n", "250 ok 2\r\n", S_WAIT },
	};
	const char *r1[] = { "a@x" }, *r2[] = { "b@x" };
	struct smtp_result res1[1], res2[1];
	struct smtp_txn t[2];
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t[0], "l-bounces@x", r1, 1, res1, "caf\xc3\xa9\n");
	t[0].xverp = 1;
	txn_init(&t[1], "l-bounces@x", r2, 1, res2, "\n");
	send_batch(f, conn, t, 2);
	want_result(&res1[0], 250, "ok 1");
	want_result(&res2[0], 250, "ok 2");
	assert_true(smtp_conn_has_xverp(conn));
	assert_int_equal(smtp_conn_caps(conn), SMTP_CAP_PIPELINING |
	    SMTP_CAP_XVERP | SMTP_CAP_8BITMIME | SMTP_CAP_SIZE);
	assert_int_equal(smtp_conn_size_max(conn), 0);
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_xverp_not_offered(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<l@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		{ "b\r\n.\r\n", "250 ok b\r\n", S_WAIT },
	};
	const char *r1[] = { "a@x" }, *r2[] = { "b@x" };
	struct smtp_result res1[1], res2[1];
	struct smtp_txn t[2];
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t[0], "l@x", r1, 1, res1, "a\n");
	t[0].xverp = 1;
	txn_init(&t[1], "l@x", r2, 1, res2, "b\n");
	send_batch(f, conn, t, 2);
	want_result(&res1[0], 0, "relay does not offer XVERP; not sent");
	want_result(&res2[0], 250, "ok b");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_body_encoding_across_parts(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		/* A bare CR is a line end too (RFC 5321 2.3.8), also one
		 * whose line starts with a dot, and one that ends a part. */
		{ "a\r\nb\r\n..x\r\n..\r\nc\r\nd\r\n..e\r\nf\r\n.\r\n",
		  "250 ok\r\n", S_WHOLE | S_WAIT },
	};
	static const char *parts[] = { "a\r", "\nb\n", ".", "x\n.", "\n",
	    "c\rd\r.e\r", "f" };
	struct iovec iov[7];
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;
	int i;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "");
	for (i = 0; i < 7; i++) {
		iov[i].iov_base = (void *)parts[i];
		iov[i].iov_len = strlen(parts[i]);
	}
	t.data = iov;
	t.ndata = 7;
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 250, "ok");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_many_recipients(void **state)
{
	struct fixture *f = *state;
	enum { N = 300 };
	static char names[N][16];
	static char group[N * 24 + 64], replies[N * 8 + 64];
	struct step s[4] = {
		GREETING,
		EHLO_PIPELINING,
		{ group, replies, S_WHOLE | S_WAIT },
		{ "m\r\n.\r\n", "250 all\r\n", S_WAIT },
	};
	const char *rcpts[N];
	struct smtp_result res[N];
	struct smtp_txn t;
	struct smtp_conn *conn;
	size_t g, r;
	int i;

	g = (size_t)sprintf(group, "MAIL FROM:<s@x>\r\n");
	r = (size_t)sprintf(replies, "250 ok\r\n");
	for (i = 0; i < N; i++) {
		sprintf(names[i], "m%d@x", i);
		rcpts[i] = names[i];
		g += (size_t)sprintf(group + g, "RCPT TO:<%s>\r\n", names[i]);
		r += (size_t)sprintf(replies + r, i % 7 ? "250 ok\r\n" :
		    "450 no\r\n");
	}
	sprintf(group + g, "DATA\r\n");
	sprintf(replies + r, "354 go\r\n");
	relay_script(&f->relay, s, 4);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", rcpts, N, res, "m\n");
	send_batch(f, conn, &t, 1);
	for (i = 0; i < N; i++)
		want_result(&res[i], i % 7 ? 250 : 450, i % 7 ? "all" : "no");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_421_mid_session_then_reconnect(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
		  "RCPT TO:<c@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n",
		  S_WHOLE | S_CLOSE },
		/* The next batch opens a new connection. */
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<d@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		{ "2\r\n.\r\n", "250 ok 2\r\n", S_WAIT },
	};
	const char *r1[] = { "a@x", "b@x", "c@x" }, *r2[] = { "d@x" };
	const char *why =
	    "relay closed the connection: 421 4.3.2 shutting down";
	struct smtp_result res1[3], res2[1], res3[1];
	struct smtp_txn t[2], t3;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t[0], "s@x", r1, 3, res1, "1\n");
	txn_init(&t[1], "s@x", r2, 1, res2, "1\n");
	send_batch(f, conn, t, 2);
	want_result(&res1[0], 0, why);
	want_result(&res1[1], 421, "4.3.2 shutting down");
	want_result(&res1[2], 0, why);
	want_result(&res2[0], 0, why);
	assert_false(smtp_conn_connected(conn));
	txn_init(&t3, "s@x", r2, 1, res3, "2\n");
	send_batch(f, conn, &t3, 1);
	want_result(&res3[0], 250, "ok 2");
	assert_int_equal(f->relay.accepts, 2);
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_connection_drop(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		{ "x\r\n.\r\n", NULL, S_CLOSE },
	};
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0,
	    "connection closed by relay waiting for reply to end of data");
	assert_false(smtp_conn_connected(conn));
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
test_stall_rcpt(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
		  "DATA\r\n", "250 ok\r\n250 ok\r\n", S_WHOLE | S_STALL },
	};
	const char *r[] = { "a@x", "b@x" };
	struct smtp_result res[2];
	struct smtp_txn t;
	struct smtp_conn *conn;
	double t0 = now_s(), dt;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 2, res, "x\n");
	send_batch(f, conn, &t, 1);
	dt = now_s() - t0;
	want_result(&res[0], 0, "timeout waiting for reply to RCPT");
	want_result(&res[1], 0, "timeout waiting for reply to RCPT");
	assert_true(dt > 0.9 && dt < 3.0);
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_stall_end_of_data(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
		  "DATA\r\n", "250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n",
		  S_WHOLE | S_WAIT },
		{ "x\r\n.\r\n", NULL, S_STALL },
	};
	const char *r[] = { "a@x", "b@x" };
	struct smtp_result res[2];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 2, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0, "timeout waiting for reply to end of data");
	want_result(&res[1], 550, "no");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_stall_greeting(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		{ NULL, NULL, S_STALL },
	};
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0, "timeout waiting for greeting");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_connection_refused(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	const char *r[] = { "a@x", "b@x" };
	struct smtp_result res[2];
	struct smtp_txn t;
	struct smtp_conn *conn;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* A port that was free a moment ago. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	close(fd);
	f->cfg.port = ntohs(sin.sin_port);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 2, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0, "connection refused");
	want_result(&res[1], 0, "connection refused");
	assert_false(smtp_conn_connected(conn));
	smtp_conn_free(conn);
}

static void
test_connect_timeout(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;
	int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[4], i;

	/* A listener whose accept queue is full drops new SYNs, so the
	 * client's connect neither completes nor fails. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	getsockname(lfd, (struct sockaddr *)&sin, &len);
	for (i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fill[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	usleep(100000);
	f->cfg.port = ntohs(sin.sin_port);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0, "timeout connecting");
	smtp_conn_free(conn);
	for (i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);
}

static void
test_greeting_refused(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		{ NULL, "554 5.3.2 go away\r\n", 0 },
	};
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0, "relay greeting: 554 5.3.2 go away");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_malformed_reply(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		{ "EHLO client.test\r\n", "HTTP/1.0 200 OK\r\n", S_WAIT },
	};
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0,
	    "protocol error: malformed reply waiting for reply to EHLO");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_unexpected_reply(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n250 ok\r\n", S_WHOLE | S_WAIT },
	};
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0,
	    "protocol error: unexpected reply to DATA: 250 ok");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

/* A 250 for the dot that comes with the 354, before the message could
 * have been read: not a delivery. */
static void
test_reply_before_data(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n",
		  S_WHOLE | S_WAIT },
	};
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 0, "protocol error: reply to end of data "
	    "before the data was sent: 250 2.0.0 queued");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_idle_close_by_relay(void **state)
{
	struct fixture *f = *state;
	struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		{ "x\r\n.\r\n", "250 ok\r\n", S_WAIT },
		GREETING,
		{ "EHLO client.test\r\n", "250 relay.test\r\n", S_WAIT },
	};
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;
	struct smtp_conn *conn;

	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	assert_true(smtp_conn_connected(conn));
	/* The relay's idle timeout: 421, then it hangs up. */
	relay_send(&f->relay, "421 4.4.2 idle too long\r\n");
	relay_close(&f->relay);
	loop_until(f->base, NULL, 200);
	assert_false(smtp_conn_connected(conn));
	/* Nothing sendable: the batch ends without MAIL but after EHLO. */
	r[0] = "bad\r\n@x";
	txn_init(&t, "s@x", r, 1, res, "x\n");
	send_batch(f, conn, &t, 1);
	want_result(&res[0], 553,
	    "local: recipient has control bytes or is too long");
	relay_done(&f->relay);
	smtp_conn_free(conn);
}

static void
test_local_rejects_and_free_in_callback(void **state)
{
	struct fixture *f = *state;
	static const struct step s[] = {
		GREETING,
		EHLO_PIPELINING,
		{ "MAIL FROM:<s@x>\r\nRCPT TO:<ok@x>\r\nDATA\r\n",
		  "250 ok\r\n250 ok\r\n354 go\r\n", S_WHOLE | S_WAIT },
		{ "x\r\n.\r\n", "250 ok\r\n", S_WAIT },
		{ "QUIT\r\n", NULL, 0 },
	};
	char longaddr[300];
	const char *r1[] = { "evil@x>\r\nRSET", "ok@x", longaddr };
	const char *r2[] = { "a@x" };
	struct smtp_result res1[3], res2[1];
	struct smtp_txn t[2];
	struct smtp_conn *conn;

	memset(longaddr, 'l', sizeof(longaddr) - 1);
	longaddr[sizeof(longaddr) - 1] = '\0';
	SCRIPT(f, s);
	conn = smtp_conn_new(f->base, &f->cfg);
	txn_init(&t[0], "s@x", r1, 3, res1, "x\n");
	txn_init(&t[1], "s\n@x", r2, 1, res2, "x\n");
	f->run.free_conn = 1;
	send_batch(f, conn, t, 2);
	want_result(&res1[0], 553,
	    "local: recipient has control bytes or is too long");
	want_result(&res1[1], 250, "ok");
	want_result(&res1[2], 553,
	    "local: recipient has control bytes or is too long");
	want_result(&res2[0], 553,
	    "local: sender has control bytes or is too long");
	assert_null(f->run.conn);
	loop_until(f->base, &f->relay.client_closed, 2000);
	relay_done(&f->relay);
}

static void
test_send_rejects_misuse(void **state)
{
	struct fixture *f = *state;
	struct smtp_config bad = f->cfg;
	struct smtp_conn *conn = smtp_conn_new(f->base, &f->cfg);
	const char *r[] = { "a@x" };
	struct smtp_result res[1];
	struct smtp_txn t;

	txn_init(&t, "s@x", r, 1, res, "x\n");
	assert_int_equal(smtp_conn_send(conn, &t, 0, on_done, &f->run), -1);
	assert_int_equal(smtp_conn_send(conn, NULL, 1, on_done, &f->run), -1);
	assert_int_equal(smtp_conn_send(conn, &t, 1, on_done, &f->run), 0);
	assert_int_equal(smtp_conn_send(conn, &t, 1, on_done, &f->run), -1);
	/* Freed while busy: no callback, no leak. */
	smtp_conn_free(conn);
	loop_until(f->base, NULL, 100);
	assert_int_equal(f->run.calls, 0);
	bad.helo = "bad\r\nname";
	assert_null(smtp_conn_new(f->base, &bad));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn)	cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_pipelined_one_txn),
		T(test_pipelined_groups_follow_dot),
		T(test_pipelined_all_rejected_354),
		T(test_lockstep),
		T(test_helo_fallback),
		T(test_xverp_size_8bitmime),
		T(test_xverp_not_offered),
		T(test_body_encoding_across_parts),
		T(test_many_recipients),
		T(test_421_mid_session_then_reconnect),
		T(test_connection_drop),
		T(test_stall_rcpt),
		T(test_stall_end_of_data),
		T(test_stall_greeting),
		T(test_connection_refused),
		T(test_connect_timeout),
		T(test_greeting_refused),
		T(test_malformed_reply),
		T(test_unexpected_reply),
		T(test_reply_before_data),
		T(test_idle_close_by_relay),
		T(test_local_rejects_and_free_in_callback),
		T(test_send_rejects_misuse),
#undef T
	};

	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_ERROR);
	log_init("test_smtp_client");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
