/*
 * Unit tests for the LMTP server: a real event base, the server on a
 * loopback port, and clients that are plain non-blocking sockets driven by
 * the same loop, so every reply line can be checked byte for byte.  The
 * owner is a stub that answers at once, from a zero-timeout event, or not
 * until the test says so.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lmtp.h"
#include "log.h"

#define HOST		"test.example"
#define GREETING	"220 " HOST " LMTP Quire ready\r\n"
#define LHLO_REPLY	"250-" HOST "\r\n250-PIPELINING\r\n" \
			"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n" \
			"250 SIZE 1000000\r\n"
#define MAIL_OK		"250 2.1.0 OK\r\n"
#define RCPT_OK		"250 2.1.5 OK\r\n"
#define RCPT_BAD	"550 5.1.1 No such list\r\n"
#define GO_AHEAD	"354 Start mail input; end with <CRLF>.<CRLF>\r\n"
#define OK		"250 2.0.0 OK\r\n"
#define TOO_LONG	"500 5.5.2 Line too long\r\n"
#define TOO_BIG		"552 5.3.4 Message size exceeds fixed limit\r\n"
#define BAD_HEADER	"554 5.6.0 Message header line too long\r\n"
#define TIMEOUT		"421 4.4.2 " HOST " Timeout exceeded, closing " \
			"connection\r\n"
#define BYE		"221 2.0.0 " HOST " closing connection\r\n"

#define MB		(1024 * 1024)
#define WAIT_MS		10000

enum owner_mode {
	OWNER_SYNC,			/* answer inside the callback */
	OWNER_ASYNC,			/* from a zero-timeout event */
	OWNER_HOLD			/* keep the txn; the test answers */
};

struct fix {
	struct event_base *base;
	struct lmtp_server *srv;
	enum owner_mode	 mode;
	int		 rcpt_calls;
	int		 data_calls;
	struct lmtp_txn	*held;
	size_t		 held_rcpt;
	char		*data;		/* last message passed to the owner */
	size_t		 data_len;
	char		 from[256];
	long		 cookies[8];
	size_t		 ncookies;
};

struct cli {
	struct fix	*f;
	int		 fd;
	struct event	*rev;
	struct event	*wev;
	struct evbuffer	*rx;
	int		 eof;
	int		 nreads;
	/* A generated stream: head, then fill_len bytes of the pattern
	 * fill repeated, then tail, written as the socket takes it. */
	const char	*head;
	size_t		 fill_len;
	const char	*fill;
	const char	*tail;
	size_t		 off;
	size_t		 peak;		/* most lmtp_server_buffered() seen */
};

struct pend {
	struct fix	*f;
	struct lmtp_txn	*t;
	size_t		 i;
	int		 data;
};

/* The owner stub. */

static const char *
owner_rcpt_reply(const char *addr)
{
	static char longer[700];

	if (strncmp(addr, "bad", 3) == 0)
		return "550 5.1.1 No such list";
	if (strncmp(addr, "inject", 6) == 0)
		return "250 ok\r\n250 more";
	if (strncmp(addr, "long", 4) == 0) {
		memset(longer, 'x', sizeof(longer) - 1);
		memcpy(longer, "550 5.1.1 ", 10);
		return longer;
	}
	return "250 2.1.5 OK";
}

static void
owner_answer_rcpt(struct lmtp_txn *t, size_t i)
{
	lmtp_txn_set_cookie(t, i, 100 + (long)i);
	lmtp_txn_rcpt_done(t, i, owner_rcpt_reply(lmtp_txn_rcpt(t, i)));
}

static void
owner_answer_data(struct fix *f, struct lmtp_txn *t)
{
	char reply[300];
	const char *d;
	size_t len;

	d = lmtp_txn_data(t, &len);
	free(f->data);
	f->data = malloc(len + 1);
	memcpy(f->data, d, len);
	f->data_len = len;
	snprintf(f->from, sizeof(f->from), "%s", lmtp_txn_mail_from(t));
	f->ncookies = 0;
	for (size_t i = 0; i < lmtp_txn_nrcpt(t); i++) {
		if (f->ncookies < 8)
			f->cookies[f->ncookies++] = lmtp_txn_cookie(t, i);
		snprintf(reply, sizeof(reply), "250 2.0.0 Ok: %s",
		    lmtp_txn_rcpt(t, i));
		lmtp_txn_reply(t, i, reply);
	}
	lmtp_txn_data_done(t);
}

static void
owner_pend_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pend *p = arg;

	(void)fd;
	(void)what;
	if (p->data)
		owner_answer_data(p->f, p->t);
	else
		owner_answer_rcpt(p->t, p->i);
	free(p);
}

static void
owner_later(struct fix *f, struct lmtp_txn *t, size_t i, int data)
{
	struct timeval zero = { 0, 0 };
	struct pend *p = malloc(sizeof(*p));

	p->f = f;
	p->t = t;
	p->i = i;
	p->data = data;
	assert_int_equal(event_base_once(f->base, -1, EV_TIMEOUT,
	    owner_pend_cb, p, &zero), 0);
}

static void
owner_rcpt(void *arg, struct lmtp_txn *t, size_t i)
{
	struct fix *f = arg;

	f->rcpt_calls++;
	assert_int_equal(i, lmtp_txn_nrcpt(t));
	assert_non_null(lmtp_txn_rcpt(t, i));
	assert_false(lmtp_txn_client_gone(t));
	if (f->mode == OWNER_HOLD) {
		f->held = t;
		f->held_rcpt = i;
	} else if (f->mode == OWNER_ASYNC)
		owner_later(f, t, i, 0);
	else
		owner_answer_rcpt(t, i);
}

static void
owner_data(void *arg, struct lmtp_txn *t)
{
	struct fix *f = arg;

	f->data_calls++;
	if (f->mode == OWNER_HOLD)
		f->held = t;
	else if (f->mode == OWNER_ASYNC)
		owner_later(f, t, 0, 1);
	else
		owner_answer_data(f, t);
}

static const struct lmtp_callbacks owner_cb = { owner_rcpt, owner_data };

/* The fixture. */

static struct lmtp_config
fix_config(void)
{
	struct lmtp_config cfg = {
		.host = "127.0.0.1",
		.port = 0,
		.hostname = HOST,
		.max_size = 1000000,
		.max_rcpts = 10,
		.max_clients = 10,
		.idle_timeout = 30,
		.data_timeout = 30,
	};

	return cfg;
}

static struct fix *
fix_new(const struct lmtp_config *cfg, enum owner_mode mode)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct lmtp_config def = fix_config();

	assert_non_null(f);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->mode = mode;
	f->srv = lmtp_server_new(f->base, cfg != NULL ? cfg : &def,
	    &owner_cb, f);
	assert_non_null(f->srv);
	assert_true(lmtp_server_port(f->srv) > 0);
	return f;
}

static void
fix_run(struct fix *f, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

static void
fix_free(struct fix *f)
{
	lmtp_server_free(f->srv);
	fix_run(f, 1);		/* let pending owner events run out */
	event_base_free(f->base);
	free(f->data);
	free(f);
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Clients. */

static void
cli_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cli *c = arg;
	char buf[65536];
	ssize_t n;

	(void)what;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n > 0) {
		evbuffer_add(c->rx, buf, (size_t)n);
		c->nreads++;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		c->eof = 1;
		event_del(c->rev);
	}
}

/* sockbuf > 0: small kernel buffers, so what the client does not read
 * piles up in the server rather than in the kernel. */
static struct cli *
cli_new_buf(struct fix *f, int sockbuf)
{
	struct cli *c = calloc(1, sizeof(*c));
	struct sockaddr_in sin;

	assert_non_null(c);
	c->f = f;
	c->rx = evbuffer_new();
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	if (sockbuf > 0) {
		assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF,
		    &sockbuf, sizeof(sockbuf)), 0);
		assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF,
		    &sockbuf, sizeof(sockbuf)), 0);
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)lmtp_server_port(f->srv));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* The kernel completes a loopback connect from the backlog, before
	 * the server's accept runs. */
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sin,
	    sizeof(sin)), 0);
	assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
	c->rev = event_new(f->base, c->fd, EV_READ | EV_PERSIST, cli_read_cb,
	    c);
	event_add(c->rev, NULL);
	return c;
}

static struct cli *
cli_new(struct fix *f)
{
	return cli_new_buf(f, 0);
}

static void
cli_free(struct cli *c)
{
	event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	if (c->fd >= 0)
		close(c->fd);
	evbuffer_free(c->rx);
	free(c);
}

/* The client hangs up; the cli stays for its counters. */
static void
cli_close(struct cli *c)
{
	event_del(c->rev);
	close(c->fd);
	c->fd = -1;
}

static void
cli_send_n(struct cli *c, const char *p, size_t n)
{
	long deadline = now_ms() + WAIT_MS;

	while (n > 0) {
		ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);

		if (k < 0) {
			assert_true(errno == EAGAIN || errno == EINTR);
			assert_true(now_ms() < deadline);
			fix_run(c->f, 1);
			continue;
		}
		p += k;
		n -= (size_t)k;
	}
}

static void
cli_send(struct cli *c, const char *s)
{
	cli_send_n(c, s, strlen(s));
}

/* Run the loop until the client holds n bytes, hears EOF, or ms pass. */
static void
cli_wait(struct cli *c, size_t n, int ms)
{
	long deadline = now_ms() + ms;

	while (evbuffer_get_length(c->rx) < n && !c->eof &&
	    now_ms() < deadline)
		fix_run(c->f, 5);
}

static void
cli_expect(struct cli *c, const char *want)
{
	size_t n = strlen(want), len;
	const char *got;

	cli_wait(c, n, WAIT_MS);
	len = evbuffer_get_length(c->rx);
	got = (const char *)evbuffer_pullup(c->rx, -1);
	if (len < n || memcmp(got, want, n) != 0)
		fail_msg("expected:\n%s\ngot %zu bytes:\n%.*s", want, len,
		    (int)(len < 2000 ? len : 2000), got != NULL ? got : "");
	evbuffer_drain(c->rx, n);
}

/* Nothing more arrives within ms. */
static void
cli_expect_quiet(struct cli *c, int ms)
{
	size_t len;

	cli_wait(c, 1, ms);
	len = evbuffer_get_length(c->rx);
	if (len != 0)
		fail_msg("unexpected %zu bytes:\n%.*s", len, (int)len,
		    (const char *)evbuffer_pullup(c->rx, -1));
}

static void
cli_expect_eof(struct cli *c)
{
	long deadline = now_ms() + WAIT_MS;

	while (!c->eof && now_ms() < deadline)
		fix_run(c->f, 5);
	assert_true(c->eof);
	assert_int_equal(evbuffer_get_length(c->rx), 0);
}

static struct cli *
cli_lhlo(struct fix *f)
{
	struct cli *c = cli_new(f);

	cli_expect(c, GREETING);
	cli_send(c, "LHLO client.example\r\n");
	cli_expect(c, LHLO_REPLY);
	return c;
}

static void
fix_wait_clients(struct fix *f, size_t n)
{
	long deadline = now_ms() + WAIT_MS;

	while (lmtp_server_nclients(f->srv) != n && now_ms() < deadline)
		fix_run(f, 5);
	assert_int_equal(lmtp_server_nclients(f->srv), n);
}

/* Generated streams, for the tens of megabytes a test cannot hold. */

static int
cli_stream_step(struct cli *c)
{
	static char chunk[65536];
	size_t hl = strlen(c->head), tl = strlen(c->tail);
	size_t total = hl + c->fill_len + tl, n;
	const char *p;
	ssize_t k;

	if (c->off >= total)
		return 0;
	if (c->off < hl) {
		p = c->head + c->off;
		n = hl - c->off;
	} else if (c->off < hl + c->fill_len) {
		size_t at = c->off - hl, pl = strlen(c->fill);

		n = hl + c->fill_len - c->off;
		if (n > sizeof(chunk))
			n = sizeof(chunk);
		if (pl == 1)
			memset(chunk, c->fill[0], n);
		else
			for (size_t i = 0; i < n; i++)
				chunk[i] = c->fill[(at + i) % pl];
		p = chunk;
	} else {
		p = c->tail + (c->off - hl - c->fill_len);
		n = total - c->off;
	}
	k = send(c->fd, p, n, MSG_NOSIGNAL);
	if (k > 0)
		c->off += (size_t)k;
	else
		assert_true(errno == EAGAIN || errno == EINTR);
	return 1;
}

static void
cli_stream_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cli *c = arg;
	size_t b = lmtp_server_buffered(c->f->srv);

	(void)fd;
	(void)what;
	if (b > c->peak)
		c->peak = b;
	if (!cli_stream_step(c))
		event_del(c->wev);
}

static void
cli_stream_start(struct cli *c, const char *head, size_t fill_len,
    const char *fill, const char *tail)
{
	c->head = head;
	c->fill_len = fill_len;
	c->fill = fill;
	c->tail = tail;
	c->off = 0;
	if (c->wev != NULL)
		event_free(c->wev);
	c->wev = event_new(c->f->base, c->fd, EV_WRITE | EV_PERSIST,
	    cli_stream_cb, c);
	event_add(c->wev, NULL);
}

static void
cli_stream_wait(struct cli *c)
{
	long deadline = now_ms() + 60000;

	while (event_pending(c->wev, EV_WRITE, NULL) && now_ms() < deadline)
		fix_run(c->f, 10);
	assert_false(event_pending(c->wev, EV_WRITE, NULL));
}

static void
cli_stream(struct cli *c, const char *head, size_t fill_len,
    const char *fill, const char *tail)
{
	cli_stream_start(c, head, fill_len, fill, tail);
	cli_stream_wait(c);
}

/* One transaction to a and b: MAIL, two RCPTs, DATA. */
static void
cli_begin(struct cli *c)
{
	cli_send(c, "MAIL FROM:<sender@example.org>\r\n");
	cli_expect(c, MAIL_OK);
	cli_send(c, "RCPT TO:<a@lists.example>\r\n");
	cli_expect(c, RCPT_OK);
	cli_send(c, "RCPT TO:<b@lists.example>\r\n");
	cli_expect(c, RCPT_OK);
	cli_send(c, "DATA\r\n");
	cli_expect(c, GO_AHEAD);
}

#define DELIVERED \
	"250 2.0.0 Ok: a@lists.example\r\n250 2.0.0 Ok: b@lists.example\r\n"

/* Tests. */

static void
test_greeting_lhlo_quit(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);

	(void)state;
	assert_int_equal(lmtp_server_nclients(f->srv), 1);
	cli_send(c, "QUIT\r\n");
	cli_expect(c, BYE);
	cli_expect_eof(c);
	fix_wait_clients(f, 0);
	cli_free(c);
	fix_free(f);
}

static void
test_sequence_errors(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_new(f);

	(void)state;
	cli_expect(c, GREETING);
	cli_send(c, "HELO client.example\r\n");
	cli_expect(c, "500 5.5.1 Use LHLO for LMTP\r\n");
	cli_send(c, "EHLO client.example\r\n");
	cli_expect(c, "500 5.5.1 Use LHLO for LMTP\r\n");
	cli_send(c, "MAIL FROM:<a@b>\r\n");
	cli_expect(c, "503 5.5.1 Send LHLO first\r\n");
	cli_send(c, "RCPT TO:<a@b>\r\n");
	cli_expect(c, "503 5.5.1 Send LHLO first\r\n");
	cli_send(c, "LHLO\r\n");
	cli_expect(c, "501 5.5.4 Syntax error in parameters or "
	    "arguments\r\n");
	cli_send(c, "LHLO client.example\r\n");
	cli_expect(c, LHLO_REPLY);
	cli_send(c, "RCPT TO:<a@b>\r\n");
	cli_expect(c, "503 5.5.1 Need MAIL command\r\n");
	cli_send(c, "DATA\r\n");
	cli_expect(c, "503 5.5.1 Need MAIL command\r\n");
	cli_send(c, "MAIL FROM:<a@b>\r\n");
	cli_expect(c, MAIL_OK);
	cli_send(c, "MAIL FROM:<a@b>\r\n");
	cli_expect(c, "503 5.5.1 Nested MAIL command\r\n");
	cli_send(c, "FROB\r\n");
	cli_expect(c, "500 5.5.2 Command unrecognized\r\n");
	cli_send(c, "VRFY someone\r\n");
	cli_expect(c, "252 2.5.0 Cannot VRFY user, but will accept "
	    "message\r\n");
	cli_send(c, "NOOP\r\n");
	cli_expect(c, OK);
	cli_send(c, "RSET\r\n");
	cli_expect(c, OK);
	cli_send(c, "RCPT TO:<a@b>\r\n");
	cli_expect(c, "503 5.5.1 Need MAIL command\r\n");
	cli_send(c, "MAIL FROM:<a b>\r\n");
	cli_expect(c, "501 5.1.7 Bad sender address syntax\r\n");
	cli_send(c, "MAIL FROM:<a@b>\r\n");
	cli_expect(c, MAIL_OK);
	cli_send(c, "RCPT TO:<>\r\n");
	cli_expect(c, "501 5.1.3 Bad recipient address syntax\r\n");
	cli_expect_quiet(c, 20);
	assert_int_equal(f->rcpt_calls, 0);
	cli_free(c);
	fix_free(f);
}

static void
test_mail_params(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);

	(void)state;
	cli_send(c, "MAIL FROM:<a@b> SIZE=1000001\r\n");
	cli_expect(c, TOO_BIG);
	cli_send(c, "MAIL FROM:<a@b> BODY=BINARYMIME\r\n");
	cli_expect(c, "555 5.5.4 Unsupported parameter\r\n");
	cli_send(c, "MAIL FROM:<a@b> SIZE=x\r\n");
	cli_expect(c, "501 5.5.4 Syntax error in parameters or "
	    "arguments\r\n");
	cli_send(c, "MAIL FROM:<> BODY=8BITMIME SIZE=1000000\r\n");
	cli_expect(c, MAIL_OK);
	cli_send(c, "RCPT TO:<a@b> NOTIFY=NEVER\r\n");
	cli_expect(c, "555 5.5.4 Unsupported parameter\r\n");
	cli_send(c, "RSET\r\nMAIL FROM:<a@b> BODY=7BIT\r\n");
	cli_expect(c, OK MAIL_OK);
	cli_free(c);
	fix_free(f);
}

/* The whole group in one write, an owner answering from the loop later:
 * replies come in command order, all in one send, and the message and
 * the per-recipient replies follow. */
static void
test_pipelined_async(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_ASYNC);
	struct cli *c = cli_lhlo(f);
	int reads;

	(void)state;
	reads = c->nreads;
	cli_send(c, "MAIL FROM:<sender@example.org> BODY=8BITMIME\r\n"
	    "RCPT TO:<a@lists.example>\r\n"
	    "RCPT TO:<bad@lists.example>\r\n"
	    "RCPT TO:<b@lists.example>\r\n"
	    "DATA\r\n");
	cli_expect(c, MAIL_OK RCPT_OK RCPT_BAD RCPT_OK GO_AHEAD);
	assert_int_equal(c->nreads, reads + 1);
	assert_int_equal(f->rcpt_calls, 3);
	cli_send(c, "Subject: hi\r\n\r\nbody\r\n.\r\nNOOP\r\n");
	cli_expect(c, DELIVERED OK);
	cli_expect_quiet(c, 20);
	assert_int_equal(f->data_calls, 1);
	assert_int_equal(f->data_len, strlen("Subject: hi\r\n\r\nbody\r\n"));
	assert_memory_equal(f->data, "Subject: hi\r\n\r\nbody\r\n",
	    f->data_len);
	assert_string_equal(f->from, "sender@example.org");
	/* Cookies follow the accepted recipients, not the RCPT count. */
	assert_int_equal(f->ncookies, 2);
	assert_int_equal(f->cookies[0], 100);
	assert_int_equal(f->cookies[1], 101);
	cli_free(c);
	fix_free(f);
}

/* The same with answers given inside the callbacks, and a second
 * transaction pipelined behind the first message. */
static void
test_pipelined_sync(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);

	(void)state;
	cli_send(c, "MAIL FROM:<s@x>\r\nRCPT TO:<bad@x>\r\nDATA\r\n"
	    "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
	cli_expect(c, MAIL_OK RCPT_BAD "503 5.5.1 No valid recipients\r\n"
	    "503 5.5.1 Nested MAIL command\r\n" RCPT_OK GO_AHEAD);
	cli_send(c, "x\r\n.\r\nQUIT\r\nNOOP\r\n");
	cli_expect(c, "250 2.0.0 Ok: a@x\r\n" BYE);
	cli_expect_eof(c);
	cli_free(c);
	fix_free(f);
}

static void
test_rcpt_rejected_and_limits(void **state)
{
	struct lmtp_config cfg = fix_config();
	struct fix *f;
	struct cli *c;
	char longer[520];

	(void)state;
	cfg.max_rcpts = 2;
	f = fix_new(&cfg, OWNER_ASYNC);
	c = cli_lhlo(f);
	cli_send(c, "MAIL FROM:<s@x>\r\n");
	cli_expect(c, MAIL_OK);
	cli_send(c, "RCPT TO:<bad@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
	    "RCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\n");
	cli_expect(c, RCPT_BAD RCPT_OK RCPT_OK
	    "452 4.5.3 Too many recipients\r\n"
	    "452 4.5.3 Too many recipients\r\n");
	assert_int_equal(f->rcpt_calls, 3);
	/* A reply that would split into two lines never reaches the wire. */
	cli_send(c, "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<inject@x>\r\n");
	cli_expect(c, OK MAIL_OK "451 4.3.0 Internal error\r\n");
	cli_send(c, "DATA\r\n");
	cli_expect(c, "503 5.5.1 No valid recipients\r\n");
	/* A reply over 512 octets with CRLF is cut to that. */
	cli_send(c, "RCPT TO:<long@x>\r\n");
	memset(longer, 'x', 510);
	memcpy(longer, "550 5.1.1 ", 10);
	memcpy(longer + 510, "\r\n", 3);
	cli_expect(c, longer);
	cli_expect_quiet(c, 20);
	cli_free(c);
	fix_free(f);
}

struct unstuff_case {
	const char	*wire;		/* after DATA, terminator included */
	size_t		 wire_len;
	const char	*data;		/* what the owner must get */
	size_t		 data_len;
};

#define UC(w, d)	{ w, sizeof(w) - 1, d, sizeof(d) - 1 }

static const struct unstuff_case unstuff_cases[] = {
	UC(".\r\n", ""),
	UC("a\r\n.\r\n", "a\r\n"),
	UC("..a\r\n.\r\n", ".a\r\n"),
	UC("x\r\n..\r\n.\r\n", "x\r\n.\r\n"),
	UC("x\r\n...\r\n.\r\n", "x\r\n..\r\n"),
	UC("a\nb\r\n.\n.\r\n.\r\n", "a\nb\r\n\n.\r\n"),
	/* A bare LF never starts a line: ".\r\n" after it is content. */
	UC("a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n"),
	UC("\n.\n.\r\n\r\n.\r\n", "\n.\n.\r\n\r\n"),
	UC("a\r.\r\n.\r\n", "a\r.\r\n"),
	UC(".\r.\r\n.\r\n", "\r.\r\n"),
	UC(".\r\r\n.\r\n", "\r\r\n"),
	UC("a\0b\xff\xfe\r\n\0\r\n.\r\n", "a\0b\xff\xfe\r\n\0\r\n"),
	UC("no final newline.\r\n.\r\n", "no final newline.\r\n"),
	UC("\r\n\r\n.\r\n", "\r\n\r\n"),
	UC("a\r\n.\r\r\n.\r\n", "a\r\n\r\r\n"),
	UC("a\r\n. \r\n.\r\n", "a\r\n \r\n"),
};

static void
unstuff_one(struct fix *f, struct cli *c, const struct unstuff_case *k,
    int bytewise)
{
	int calls = f->data_calls;

	cli_begin(c);
	if (!bytewise)
		cli_send_n(c, k->wire, k->wire_len);
	else
		for (size_t i = 0; i < k->wire_len; i++) {
			cli_send_n(c, k->wire + i, 1);
			fix_run(f, 1);
		}
	cli_expect(c, DELIVERED);
	assert_int_equal(f->data_calls, calls + 1);
	if (f->data_len != k->data_len ||
	    memcmp(f->data, k->data, k->data_len) != 0)
		fail_msg("wire \"%s\": got %zu bytes \"%.*s\"", k->wire,
		    f->data_len, (int)f->data_len, f->data);
}

static void
test_dot_unstuffing(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_ASYNC);
	struct cli *c = cli_lhlo(f);
	size_t n = sizeof(unstuff_cases) / sizeof(*unstuff_cases);

	(void)state;
	for (size_t i = 0; i < n; i++)
		unstuff_one(f, c, &unstuff_cases[i], 0);
	/* Every state of the reader, split at every byte. */
	for (size_t i = 0; i < n; i++)
		unstuff_one(f, c, &unstuff_cases[i], 1);
	cli_expect_quiet(c, 20);
	cli_free(c);
	fix_free(f);
}

static void
test_long_command_line(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);
	char line[1300];

	(void)state;
	/* 1000 octets with CRLF is the limit, and allowed. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	memcpy(line + 998, "\r\n", 3);
	cli_send(c, line);
	cli_expect(c, OK);
	memcpy(line + 998, "x\r\n", 4);
	cli_send(c, line);
	cli_expect(c, TOO_LONG);
	memset(line + 5, 'x', sizeof(line) - 5);
	memcpy(line + 1200, "\r\nNOOP\r\n", 9);
	cli_send(c, line);
	cli_expect(c, TOO_LONG OK);
	/* A bare LF ends a command line too. */
	memset(line + 5, 'x', sizeof(line) - 5);
	memcpy(line + 1200, "\nNOOP\n", 7);
	cli_send(c, line);
	cli_expect(c, TOO_LONG OK);
	cli_expect_quiet(c, 20);
	cli_free(c);
	fix_free(f);
}

/* 50 MB with no LF: answered once, drained as it comes, and the server
 * holds no more than its input watermark meanwhile. */
static void
test_flood_without_newline(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);

	(void)state;
	cli_stream(c, "", 50 * MB, "x", "\r\nNOOP\r\n");
	cli_expect(c, TOO_LONG OK);
	cli_expect_quiet(c, 20);
	assert_true(c->peak > 0);
	assert_true(c->peak <= 64 * 1024);
	cli_free(c);
	fix_free(f);
}

/* 50 MB of message with no LF, over max_size: read to the end without
 * being kept, then one 552 per recipient. */
static void
test_message_too_big(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);

	(void)state;
	cli_begin(c);
	cli_stream(c, "Subject: big\r\n\r\n", 50 * MB, "x", "\r\n.\r\n");
	cli_expect(c, TOO_BIG TOO_BIG);
	assert_int_equal(f->data_calls, 0);
	assert_true(c->peak <= 1000000 + 64 * 1024);
	assert_true(lmtp_server_buffered(f->srv) < 64 * 1024);
	/* Exactly max_size is accepted. */
	cli_begin(c);
	cli_stream(c, "Subject: fits\r\n\r\n", 1000000 - 17 - 2, "y",
	    "\r\n.\r\n");
	cli_expect(c, DELIVERED);
	assert_int_equal(f->data_len, 1000000);
	cli_begin(c);
	cli_stream(c, "Subject: fits\r\n\r\n", 1000000 - 17 - 1, "y",
	    "\r\n.\r\n");
	cli_expect(c, TOO_BIG TOO_BIG);
	cli_send(c, "NOOP\r\n");
	cli_expect(c, OK);
	cli_free(c);
	fix_free(f);
}

#define NO_ROOM	"452 4.3.1 Insufficient system storage, try again later\r\n"

/* Two messages of 900 KB each do not fit a pool of 1.5 MB: the second is
 * read, dropped and answered 452 while the first is held, and fits once
 * the first is gone. */
static void
test_message_pool(void **state)
{
	struct lmtp_config cfg = fix_config();
	struct fix *f;
	struct cli *a, *b;
	long deadline;

	(void)state;
	cfg.max_buffered = 1500000;
	f = fix_new(&cfg, OWNER_SYNC);
	a = cli_lhlo(f);
	b = cli_lhlo(f);
	cli_begin(a);
	cli_stream(a, "Subject: a\r\n\r\n", 900000, "a", "");
	deadline = now_ms() + WAIT_MS;
	while (lmtp_server_buffered(f->srv) < 1000000 && now_ms() < deadline)
		fix_run(f, 5);
	assert_int_equal(lmtp_server_buffered(f->srv), 1000000);
	cli_begin(b);
	cli_stream(b, "Subject: b\r\n\r\n", 900000, "b", "\r\n.\r\n");
	cli_expect(b, NO_ROOM NO_ROOM);
	assert_int_equal(f->data_calls, 0);
	cli_stream(a, "", 0, "", "\r\n.\r\n");
	cli_expect(a, DELIVERED);
	assert_int_equal(f->data_len, 14 + 900000 + 2);
	assert_int_equal(lmtp_server_buffered(f->srv), 0);
	cli_begin(b);
	cli_stream(b, "Subject: b\r\n\r\n", 900000, "b", "\r\n.\r\n");
	cli_expect(b, DELIVERED);
	assert_int_equal(f->data_calls, 2);
	cli_free(a);
	cli_free(b);
	fix_free(f);
}

/* A client that sends and does not read: the server stops reading once
 * its replies pile up, rather than buffering them without end. */
static void
test_output_backpressure(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_new_buf(f, 4096);
	size_t n = 100000, want = n * strlen(LHLO_REPLY), got = 0;
	size_t len, k = strlen(LHLO_REPLY);
	long deadline;

	(void)state;
	cli_expect(c, GREETING);
	event_del(c->rev);
	cli_stream_start(c, "", n * 8, "LHLO x\r\n", "");
	for (int i = 0; i < 50; i++) {
		size_t b = lmtp_server_buffered(f->srv);

		if (b > c->peak)
			c->peak = b;
		fix_run(f, 10);
	}
	assert_true(event_pending(c->wev, EV_WRITE, NULL));
	assert_true(c->peak > 32 * 1024);
	assert_true(c->peak <= 50 * 1024);
	event_add(c->rev, NULL);
	deadline = now_ms() + 60000;
	while (got < want && now_ms() < deadline) {
		fix_run(f, 10);
		while ((len = evbuffer_get_length(c->rx)) >= k) {
			assert_memory_equal(evbuffer_pullup(c->rx, k),
			    LHLO_REPLY, k);
			evbuffer_drain(c->rx, k);
			got += k;
		}
	}
	assert_int_equal(got, want);
	cli_stream_wait(c);
	assert_true(c->peak <= 50 * 1024);
	cli_expect_quiet(c, 20);
	cli_free(c);
	fix_free(f);
}

static void
test_header_line_limit(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);
	char hdr[1100];

	(void)state;
	/* 1001 octets with CRLF: refused, the owner never sees it. */
	memset(hdr, 'h', sizeof(hdr));
	memcpy(hdr, "X-Long: ", 8);
	memcpy(hdr + 999, "\r\nSubject: x\r\n\r\nbody\r\n.\r\n", 26);
	cli_begin(c);
	cli_send(c, hdr);
	cli_expect(c, BAD_HEADER BAD_HEADER);
	assert_int_equal(f->data_calls, 0);
	/* 1000 octets: fine. */
	memcpy(hdr + 998, "\r\nSubject: x\r\n\r\nbody\r\n.\r\n", 26);
	cli_begin(c);
	cli_send(c, hdr);
	cli_expect(c, DELIVERED);
	assert_int_equal(f->data_calls, 1);
	assert_int_equal(f->data_len, 1000 + 12 + 2 + 6);
	/* A long body line is not a header line. */
	cli_begin(c);
	cli_stream(c, "Subject: x\r\n\r\n", 5000, "b", "\r\n.\r\n");
	cli_expect(c, DELIVERED);
	assert_int_equal(f->data_calls, 2);
	/* A long line in a message with no body is a header line. */
	cli_begin(c);
	cli_stream(c, "Subject: x\r\n", 5000, "h", "\r\n.\r\n");
	cli_expect(c, BAD_HEADER BAD_HEADER);
	assert_int_equal(f->data_calls, 2);
	cli_free(c);
	fix_free(f);
}

static void
test_drop_during_data(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);

	(void)state;
	cli_begin(c);
	cli_send(c, "Subject: cut\r\n\r\nhalf a mess");
	fix_run(f, 20);
	cli_close(c);
	fix_wait_clients(f, 0);
	assert_int_equal(f->data_calls, 0);
	cli_free(c);
	fix_free(f);
}

/* The client leaves while the owner judges a RCPT: the txn stays valid,
 * says the client is gone, and the answer frees it. */
static void
test_drop_rcpt_pending(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_HOLD);
	struct cli *c = cli_lhlo(f);
	long deadline = now_ms() + WAIT_MS;

	(void)state;
	cli_send(c, "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n");
	while (f->held == NULL && now_ms() < deadline)
		fix_run(f, 5);
	assert_non_null(f->held);
	cli_close(c);
	fix_wait_clients(f, 0);
	assert_true(lmtp_txn_client_gone(f->held));
	assert_string_equal(lmtp_txn_rcpt(f->held, f->held_rcpt), "a@x");
	assert_string_equal(lmtp_txn_mail_from(f->held), "s@x");
	assert_true(lmtp_txn_session_id(f->held) > 0);
	assert_non_null(lmtp_txn_peer(f->held));
	lmtp_txn_rcpt_done(f->held, f->held_rcpt, "250 2.1.5 OK");
	assert_int_equal(f->rcpt_calls, 1);
	cli_free(c);
	fix_free(f);
}

static void
test_drop_data_pending(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);
	long deadline = now_ms() + WAIT_MS;
	const char *d;
	size_t len;

	(void)state;
	cli_begin(c);
	f->mode = OWNER_HOLD;
	cli_send(c, "kept\r\n.\r\n");
	while (f->held == NULL && now_ms() < deadline)
		fix_run(f, 5);
	assert_non_null(f->held);
	cli_close(c);
	fix_wait_clients(f, 0);
	assert_true(lmtp_txn_client_gone(f->held));
	d = lmtp_txn_data(f->held, &len);
	assert_int_equal(len, 6);
	assert_memory_equal(d, "kept\r\n", 6);
	assert_int_equal(lmtp_txn_nrcpt(f->held), 2);
	f->mode = OWNER_SYNC;
	owner_answer_data(f, f->held);
	cli_free(c);
	fix_free(f);
}

/* The server goes away with a txn still owed an answer. */
static void
test_server_free_pending(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_HOLD);
	struct cli *c = cli_lhlo(f);
	long deadline = now_ms() + WAIT_MS;

	(void)state;
	cli_send(c, "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n");
	while (f->held == NULL && now_ms() < deadline)
		fix_run(f, 5);
	assert_non_null(f->held);
	lmtp_server_free(f->srv);
	f->srv = NULL;
	assert_true(lmtp_txn_client_gone(f->held));
	lmtp_txn_rcpt_done(f->held, f->held_rcpt, "550 5.1.1 gone");
	cli_expect_eof(c);
	cli_free(c);
	fix_free(f);
}

static void
test_idle_timeout(void **state)
{
	struct lmtp_config cfg = fix_config();
	struct fix *f;
	struct cli *c;
	long t0;

	(void)state;
	cfg.idle_timeout = 1;
	f = fix_new(&cfg, OWNER_SYNC);
	c = cli_lhlo(f);
	t0 = now_ms();
	cli_expect(c, TIMEOUT);
	assert_true(now_ms() - t0 >= 900);
	cli_expect_eof(c);
	fix_wait_clients(f, 0);
	cli_free(c);
	fix_free(f);
}

static void
test_data_timeout(void **state)
{
	struct lmtp_config cfg = fix_config();
	struct fix *f;
	struct cli *c;

	(void)state;
	cfg.data_timeout = 1;
	f = fix_new(&cfg, OWNER_SYNC);
	c = cli_lhlo(f);
	cli_begin(c);
	cli_send(c, "Subject: slow\r\n");
	cli_expect(c, TIMEOUT);
	cli_expect_eof(c);
	assert_int_equal(f->data_calls, 0);
	cli_free(c);
	fix_free(f);
}

/* An owner slower than the idle timeout: the client is waiting for us,
 * so it must not be timed out. */
static void
test_slow_owner_no_timeout(void **state)
{
	struct lmtp_config cfg = fix_config();
	struct fix *f;
	struct cli *c;

	(void)state;
	cfg.idle_timeout = 1;
	f = fix_new(&cfg, OWNER_HOLD);
	c = cli_lhlo(f);
	cli_send(c, "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nNOOP\r\n");
	fix_run(f, 1500);
	assert_non_null(f->held);
	assert_false(c->eof);
	owner_answer_rcpt(f->held, f->held_rcpt);
	cli_expect(c, MAIL_OK RCPT_OK OK);
	cli_expect(c, TIMEOUT);
	cli_expect_eof(c);
	cli_free(c);
	fix_free(f);
}

static void
test_max_clients(void **state)
{
	struct lmtp_config cfg = fix_config();
	struct fix *f;
	struct cli *a, *b, *c, *d;

	(void)state;
	cfg.max_clients = 2;
	f = fix_new(&cfg, OWNER_SYNC);
	a = cli_lhlo(f);
	b = cli_lhlo(f);
	c = cli_new(f);
	cli_expect(c, "421 4.3.2 " HOST " Too many connections, try again "
	    "later\r\n");
	cli_expect_eof(c);
	cli_send(a, "QUIT\r\n");
	cli_expect(a, BYE);
	cli_expect_eof(a);
	fix_wait_clients(f, 1);
	d = cli_lhlo(f);
	assert_int_equal(lmtp_server_nclients(f->srv), 2);
	cli_free(a);
	cli_free(b);
	cli_free(c);
	cli_free(d);
	fix_free(f);
}

static void
test_too_many_errors(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);

	(void)state;
	for (int i = 0; i < 19; i++) {
		cli_send(c, "BOGUS\r\n");
		cli_expect(c, "500 5.5.2 Command unrecognized\r\n");
	}
	cli_send(c, "BOGUS\r\nNOOP\r\n");
	cli_expect(c, "500 5.5.2 Command unrecognized\r\n"
	    "421 4.7.0 " HOST " Too many errors, closing connection\r\n");
	cli_expect_eof(c);
	cli_free(c);
	fix_free(f);
}

/* The server's end of the client's connection, found by its peer. */
static int
server_fd_of(const struct cli *c)
{
	struct sockaddr_in mine, peer;
	socklen_t len = sizeof(mine);

	assert_int_equal(getsockname(c->fd, (struct sockaddr *)&mine, &len),
	    0);
	for (int fd = 3; fd < 1024; fd++) {
		len = sizeof(peer);
		if (fd != c->fd && getpeername(fd, (struct sockaddr *)&peer,
		    &len) == 0 && peer.sin_family == AF_INET &&
		    peer.sin_port == mine.sin_port &&
		    peer.sin_addr.s_addr == mine.sin_addr.s_addr)
			return fd;
	}
	return -1;
}

static void
test_tcp_nodelay(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *c = cli_lhlo(f);
	int fd = server_fd_of(c), on = 0;
	socklen_t len = sizeof(on);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len),
	    0);
	assert_true(on);
	cli_free(c);
	fix_free(f);
}

/* The core alone, on plain buffers: what each feed waits for, and the
 * replies it leaves, with the owner answering between feeds. */
static void
test_session_core(void **state)
{
	struct lmtp_config cfg = fix_config();
	struct fix f = { .mode = OWNER_HOLD };
	struct lmtp_session *s;
	struct evbuffer *in = evbuffer_new(), *out;
	const char *want;

	(void)state;
	s = lmtp_session_new(&cfg, &owner_cb, &f, 7, "core:1");
	out = lmtp_session_output(s);
	evbuffer_add_printf(in, "LHLO x\r\nMAIL FROM:<s@x>\r\n"
	    "RCPT TO:<a@x>\r\nDATA\r\n");
	assert_int_equal(lmtp_session_feed(s, in), LMTP_WANT_OWNER);
	assert_string_equal(lmtp_session_state(s), "rcpt_wait");
	assert_int_equal(lmtp_txn_session_id(f.held), 7);
	assert_string_equal(lmtp_txn_peer(f.held), "core:1");
	owner_answer_rcpt(f.held, f.held_rcpt);
	assert_int_equal(lmtp_session_feed(s, in), LMTP_WANT_DATA);
	evbuffer_add_printf(in, "..x\r\n.\r\nQUIT\r\n");
	assert_int_equal(lmtp_session_feed(s, in), LMTP_WANT_OWNER);
	assert_string_equal(lmtp_session_state(s), "data_wait");
	f.mode = OWNER_SYNC;
	owner_answer_data(&f, f.held);
	assert_int_equal(f.data_len, 4);
	assert_memory_equal(f.data, ".x\r\n", 4);
	assert_int_equal(lmtp_session_feed(s, in), LMTP_WANT_CLOSE);
	assert_string_equal(lmtp_session_close_reason(s), "quit");
	want = GREETING LHLO_REPLY MAIL_OK RCPT_OK GO_AHEAD
	    "250 2.0.0 Ok: a@x\r\n" BYE;
	assert_int_equal(evbuffer_get_length(out), strlen(want));
	assert_memory_equal(evbuffer_pullup(out, -1), want, strlen(want));
	lmtp_session_free(s);
	evbuffer_free(in);
	free(f.data);
}

#define STOPPING	"421 4.3.2 " HOST " Service shutting down, closing " \
			"connection\r\n"

static void
count_stopped(void *arg)
{
	(*(int *)arg)++;
}

/* A stop cuts no transaction: the idle client and the one between MAIL
 * and DATA hear 421 at once; the one sending its message and the one
 * waiting for its owner get their replies first; no one new gets in. */
static void
test_stop_drains(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	struct cli *idle = cli_lhlo(f), *mail = cli_lhlo(f);
	struct cli *sending = cli_lhlo(f), *owed = cli_lhlo(f);
	struct sockaddr_in sin;
	long deadline = now_ms() + WAIT_MS;
	int port = lmtp_server_port(f->srv), stopped = 0, fd;

	(void)state;
	cli_send(mail, "MAIL FROM:<sender@example.org>\r\n");
	cli_expect(mail, MAIL_OK);
	cli_begin(sending);
	cli_send(sending, "Subject: half\r\n\r\nfirst");
	cli_begin(owed);
	f->mode = OWNER_HOLD;
	cli_send(owed, "whole\r\n.\r\n");
	while (f->held == NULL && now_ms() < deadline)
		fix_run(f, 5);
	assert_non_null(f->held);
	f->mode = OWNER_SYNC;

	assert_int_equal(lmtp_server_stop(f->srv, count_stopped, &stopped),
	    0);
	cli_expect(idle, STOPPING);
	cli_expect_eof(idle);
	cli_expect(mail, STOPPING);
	cli_expect_eof(mail);
	cli_expect_quiet(sending, 100);
	cli_expect_quiet(owed, 1);
	assert_int_equal(lmtp_server_nclients(f->srv), 2);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)),
	    -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(fd);

	owner_answer_data(f, f->held);
	cli_expect(owed, DELIVERED STOPPING);
	cli_expect_eof(owed);
	fix_run(f, 10);
	assert_int_equal(stopped, 0);
	cli_send(sending, " second\r\n.\r\nQUIT\r\n");
	cli_expect(sending, DELIVERED STOPPING);
	cli_expect_eof(sending);
	assert_int_equal(f->data_len, 31);
	assert_memory_equal(f->data, "Subject: half\r\n\r\nfirst second\r\n",
	    31);
	fix_wait_clients(f, 0);
	fix_run(f, 10);
	assert_int_equal(stopped, 1);
	cli_free(idle);
	cli_free(mail);
	cli_free(sending);
	cli_free(owed);
	fix_free(f);
}

/* With no client, the stop is done at once. */
static void
test_stop_idle_server(void **state)
{
	struct fix *f = fix_new(NULL, OWNER_SYNC);
	int stopped = 0;

	(void)state;
	assert_int_equal(lmtp_server_stop(f->srv, count_stopped, &stopped),
	    0);
	assert_int_equal(lmtp_server_stop(f->srv, count_stopped, &stopped),
	    0);
	fix_run(f, 10);
	assert_int_equal(stopped, 1);
	assert_int_equal(lmtp_server_port(f->srv), -1);
	fix_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_lhlo_quit),
		cmocka_unit_test(test_sequence_errors),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_pipelined_async),
		cmocka_unit_test(test_pipelined_sync),
		cmocka_unit_test(test_rcpt_rejected_and_limits),
		cmocka_unit_test(test_dot_unstuffing),
		cmocka_unit_test(test_long_command_line),
		cmocka_unit_test(test_flood_without_newline),
		cmocka_unit_test(test_message_too_big),
		cmocka_unit_test(test_message_pool),
		cmocka_unit_test(test_output_backpressure),
		cmocka_unit_test(test_header_line_limit),
		cmocka_unit_test(test_drop_during_data),
		cmocka_unit_test(test_drop_rcpt_pending),
		cmocka_unit_test(test_drop_data_pending),
		cmocka_unit_test(test_server_free_pending),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_data_timeout),
		cmocka_unit_test(test_slow_owner_no_timeout),
		cmocka_unit_test(test_max_clients),
		cmocka_unit_test(test_too_many_errors),
		cmocka_unit_test(test_tcp_nodelay),
		cmocka_unit_test(test_session_core),
		cmocka_unit_test(test_stop_drains),
		cmocka_unit_test(test_stop_idle_server),
	};

	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_WARN);
	log_init("test_lmtp_server");
	return cmocka_run_group_tests_name("lmtp_server", tests, NULL, NULL);
}
