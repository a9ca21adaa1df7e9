/*
 * libFuzzer target for the LMTP protocol, three ways:
 *
 *   cmd      each line of the input through lmtp_cmd_parse(), checking
 *            that results stay inside the line and agree with the status;
 *   session  the input as a client's byte stream through the socket-free
 *            session core, with an owner whose answers (now, later, or
 *            never before the client goes) the first bytes choose, and
 *            every reply line checked for shape;
 *   data     the input as a message after DATA, in pieces the first byte
 *            sizes, compared with a plain line-by-line reading of RFC
 *            5321 4.5.2: what the owner gets, or the refusal it earns.
 *
 * FUZZ_LMTP_MODE=cmd, =session or =data picks one; unset, the first input
 * byte does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "lmtp.h"
#include "lmtp_cmd.h"
#include "log.h"

static int fuzz_mode = -1;		/* 0 cmd, 1 session, 2 data;
					 * -1 by the first byte */

static void
fuzz_check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "invariant broken: %s\n", what);
		abort();
	}
}

static int
fuzz_inside(const char *p, size_t n, const char *line, size_t len)
{
	return p >= line && p + n <= line + len;
}

static void
fuzz_cmd_line(const char *line, size_t len)
{
	struct lmtp_cmd c;
	enum lmtp_cmd_status st = lmtp_cmd_parse(line, len, &c);

	fuzz_check((st == LMTP_CMD_UNKNOWN) == (c.verb == LMTP_VERB_UNKNOWN),
	    "unknown status iff unknown verb");
	fuzz_check(lmtp_verb_name(c.verb) != NULL, "verb name");
	if (st != LMTP_CMD_OK)
		return;
	if (c.verb == LMTP_VERB_MAIL || c.verb == LMTP_VERB_RCPT) {
		fuzz_check(fuzz_inside(c.path, c.path_len, line, len),
		    "path inside line");
		fuzz_check(c.verb == LMTP_VERB_MAIL || c.path_len > 0,
		    "RCPT path not empty");
		for (size_t i = 0; i < c.path_len; i++)
			fuzz_check((unsigned char)c.path[i] >= 0x20 &&
			    (unsigned char)c.path[i] < 0x7f, "path bytes");
	}
	if (c.arg != NULL)
		fuzz_check(fuzz_inside(c.arg, c.arg_len, line, len),
		    "arg inside line");
	fuzz_check(c.verb == LMTP_VERB_MAIL || (!c.has_size &&
	    c.body == LMTP_BODY_NONE), "params only on MAIL");
}

static void
fuzz_cmd(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	char *copy;

	/* The whole input once, as one line, in its own allocation so ASan
	 * sees any read past its end. */
	copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	fuzz_cmd_line(copy, size);
	free(copy);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		nl = nl != NULL ? nl + 1 : end;
		fuzz_cmd_line(p, (size_t)(nl - p));
		p = nl;
	}
}

/* The session side. */

struct fuzz_owner {
	unsigned	 flags;		/* bit 0: answer inside callbacks */
	unsigned	 seq;
	struct lmtp_txn	*txn;		/* owed an answer */
	size_t		 rcpt;
	int		 data;
	size_t		 max_size;
};

static void
fuzz_answer(struct fuzz_owner *o)
{
	struct lmtp_txn *t = o->txn;
	static const char *const replies[] = {
		"250 2.1.5 OK", "550 5.1.1 No such list", "451 4.3.0 Later",
		"250 2.1.5 OK", "bogus", "250 x\r\n250 y",
	};
	size_t len;

	o->txn = NULL;
	o->seq++;
	if (!o->data) {
		lmtp_txn_set_cookie(t, o->rcpt, (long)o->seq);
		fuzz_check(lmtp_txn_rcpt(t, o->rcpt) != NULL, "rcpt address");
		lmtp_txn_rcpt_done(t, o->rcpt,
		    replies[(o->flags >> 1 ^ o->seq) % 6]);
		return;
	}
	(void)lmtp_txn_data(t, &len);
	fuzz_check(len <= o->max_size, "message within max_size");
	fuzz_check(lmtp_txn_nrcpt(t) > 0, "data with recipients");
	for (size_t i = 0; i < lmtp_txn_nrcpt(t); i++) {
		fuzz_check(lmtp_txn_cookie(t, i) != 0, "cookie kept");
		/* Leave some without a reply: they get the default. */
		if ((o->seq + i) % 3 != 0)
			lmtp_txn_reply(t, i, replies[(o->seq + i) % 6]);
	}
	lmtp_txn_data_done(t);
}

static void
fuzz_rcpt_cb(void *arg, struct lmtp_txn *t, size_t i)
{
	struct fuzz_owner *o = arg;

	fuzz_check(o->txn == NULL, "one question at a time");
	fuzz_check(i == lmtp_txn_nrcpt(t), "rcpt index");
	o->txn = t;
	o->rcpt = i;
	o->data = 0;
	if (o->flags & 1)
		fuzz_answer(o);
}

static void
fuzz_data_cb(void *arg, struct lmtp_txn *t)
{
	struct fuzz_owner *o = arg;

	fuzz_check(o->txn == NULL, "one question at a time");
	o->txn = t;
	o->data = 1;
	if (o->flags & 1)
		fuzz_answer(o);
}

static const struct lmtp_callbacks fuzz_cb = { fuzz_rcpt_cb, fuzz_data_cb };

/* Every reply line: "ddd" then " " or "-", printable, CRLF, <= 512. */
static void
fuzz_check_output(struct evbuffer *out)
{
	size_t len = evbuffer_get_length(out), i = 0, start;
	const unsigned char *p = evbuffer_pullup(out, -1);

	while (i < len) {
		start = i;
		while (i < len && p[i] != '\n')
			i++;
		fuzz_check(i < len, "reply ends with LF");
		fuzz_check(i - start >= 4 && p[i - 1] == '\r', "CRLF");
		fuzz_check(i + 1 - start <= 512, "reply length");
		fuzz_check(p[start] >= '2' && p[start] <= '5' &&
		    p[start + 1] >= '0' && p[start + 1] <= '9' &&
		    p[start + 2] >= '0' && p[start + 2] <= '9',
		    "reply code");
		fuzz_check(i - start == 4 || p[start + 3] == ' ' ||
		    p[start + 3] == '-', "reply separator");
		for (size_t k = start; k + 1 < i; k++)
			fuzz_check(p[k] >= 0x20 && p[k] < 0x7f,
			    "reply bytes");
		i++;
	}
	evbuffer_drain(out, len);
}

/* Feed until the core waits for the client; answer the owner as we go
 * when the owner answers "later", unless it may stay owed.  Returns 0
 * once the session closes, 2 when it waits for the owner. */
static int
fuzz_pump(struct lmtp_session *s, struct evbuffer *in, struct fuzz_owner *o,
    int owe)
{
	for (;;) {
		enum lmtp_want w = lmtp_session_feed(s, in);

		fuzz_check_output(lmtp_session_output(s));
		switch (w) {
		case LMTP_WANT_OWNER:
			fuzz_check(o->txn != NULL, "waiting on no one");
			if (owe)
				return 2;
			fuzz_answer(o);
			break;
		case LMTP_WANT_WRITE:
			break;
		case LMTP_WANT_CLOSE:
			return 0;
		default:
			fuzz_check(o->txn == NULL, "owner owed yet idle");
			return 1;
		}
	}
}

static void
fuzz_session(const uint8_t *data, size_t size)
{
	struct lmtp_config cfg = {
		.hostname = "fuzz.example",
		.max_size = 3000,
		.max_rcpts = 3,
	};
	struct fuzz_owner o = { .max_size = 3000 };
	struct lmtp_session *s;
	struct evbuffer *in;
	size_t off = 0, chunk, step;
	int open = 1;

	if (size < 2)
		return;
	/* flags: bit 0 answer inside callbacks, 0x40 leave the owner owed
	 * at the end, 0x80 time out at the end; step 0: all in one read. */
	o.flags = data[0];
	step = data[1] % 64 == 0 ? size : data[1] % 64;
	data += 2;
	size -= 2;
	in = evbuffer_new();
	s = lmtp_session_new(&cfg, &fuzz_cb, &o, 1, "fuzz:0");
	fuzz_check_output(lmtp_session_output(s));
	while (open == 1 && off < size) {
		chunk = size - off < step ? size - off : step;
		evbuffer_add(in, data + off, chunk);
		off += chunk;
		open = fuzz_pump(s, in, &o, off == size && (o.flags & 0x40));
		/* Waiting for the client, the core has taken every whole
		 * line and every overlong one: what keeps input bounded. */
		fuzz_check(open != 1 || evbuffer_get_length(in) < 1000,
		    "input drained");
	}
	if (open && (o.flags & 0x80)) {
		/* A timeout in a wait state is the driver's mistake, but
		 * it must still leave the owed txn to its owner. */
		lmtp_session_timeout(s);
		open = fuzz_pump(s, in, &o, 1);
		fuzz_check(!open, "closes after timeout");
	}
	/* The client goes, maybe with an answer still owed. */
	lmtp_session_free(s);
	if (o.txn != NULL) {
		fuzz_check(lmtp_txn_client_gone(o.txn), "gone");
		fuzz_answer(&o);
	}
	evbuffer_free(in);
}

/* The data side. */

#define FUZZ_DATA_MAX	20000

struct fuzz_ref {
	char		*msg;		/* what the owner must get */
	size_t		 len;
	size_t		 wire_used;	/* octets up to the terminator */
	int		 bad_header;
};

/* The reference: cut the wire at each CRLF; "." alone ends it, any other
 * line loses a leading dot.  Slow and obvious on purpose. */
static void
fuzz_ref_unstuff(const char *w, size_t n, struct fuzz_ref *r)
{
	size_t pos = 0, end;

	r->msg = malloc(n + 1);
	r->len = 0;
	for (;;) {
		for (end = pos; end + 1 < n; end++)
			if (w[end] == '\r' && w[end + 1] == '\n')
				break;
		fuzz_check(end + 1 < n, "wire holds a terminator");
		if (end - pos == 1 && w[pos] == '.')
			break;
		if (w[pos] == '.' && end > pos)
			pos++;
		memcpy(r->msg + r->len, w + pos, end + 2 - pos);
		r->len += end + 2 - pos;
		pos = end + 2;
	}
	r->wire_used = end + 2;
}

/* Header lines end at any LF; the header ends at a blank line. */
static void
fuzz_ref_header(struct fuzz_ref *r)
{
	size_t line = 0;

	r->bad_header = 0;
	for (size_t i = 0; i < r->len; i++) {
		if (++line > 1000) {
			r->bad_header = 1;
			return;
		}
		if (r->msg[i] != '\n')
			continue;
		if (line == 1 || (line == 2 && r->msg[i - 1] == '\r'))
			return;
		line = 0;
	}
}

struct fuzz_data_owner {
	struct fuzz_ref	*ref;
	int		 called;
};

static void
fuzz_data_rcpt_cb(void *arg, struct lmtp_txn *t, size_t i)
{
	(void)arg;
	lmtp_txn_rcpt_done(t, i, "250 2.1.5 OK");
}

static void
fuzz_data_data_cb(void *arg, struct lmtp_txn *t)
{
	struct fuzz_data_owner *o = arg;
	const char *d;
	size_t len;

	o->called++;
	d = lmtp_txn_data(t, &len);
	fuzz_check(len == o->ref->len, "message length as the reference");
	fuzz_check(len == 0 || memcmp(d, o->ref->msg, len) == 0,
	    "message bytes as the reference");
	lmtp_txn_reply(t, 0, "250 2.0.0 Ok");
	lmtp_txn_data_done(t);
}

static const struct lmtp_callbacks fuzz_msg_cb = {
	fuzz_data_rcpt_cb, fuzz_data_data_cb
};

static void
fuzz_expect(struct lmtp_session *s, const char *want)
{
	struct evbuffer *out = lmtp_session_output(s);
	size_t n = strlen(want);

	fuzz_check(evbuffer_get_length(out) == n &&
	    memcmp(evbuffer_pullup(out, -1), want, n) == 0, want);
	evbuffer_drain(out, n);
}

static void
fuzz_data(const uint8_t *data, size_t size)
{
	static const char start[] = "LHLO x\r\nMAIL FROM:<a@b>\r\n"
	    "RCPT TO:<l@b>\r\nDATA\r\n";
	struct lmtp_config cfg = {
		.hostname = "fuzz.example",
		.max_size = FUZZ_DATA_MAX,
	};
	struct fuzz_ref ref;
	struct fuzz_data_owner o = { &ref, 0 };
	struct lmtp_session *s;
	struct evbuffer *in;
	char *wire;
	size_t step, off = 0, chunk;
	enum lmtp_want w;

	if (size < 1 || size > FUZZ_DATA_MAX)
		return;
	step = data[0] % 32 == 0 ? size : data[0] % 32;
	data++;
	size--;
	wire = malloc(size + 5);
	memcpy(wire, data, size);
	memcpy(wire + size, "\r\n.\r\n", 5);
	fuzz_ref_unstuff(wire, size + 5, &ref);
	fuzz_ref_header(&ref);

	in = evbuffer_new();
	s = lmtp_session_new(&cfg, &fuzz_msg_cb, &o, 1, "fuzz:0");
	evbuffer_add(in, start, sizeof(start) - 1);
	fuzz_check(lmtp_session_feed(s, in) == LMTP_WANT_DATA, "in DATA");
	evbuffer_drain(lmtp_session_output(s),
	    evbuffer_get_length(lmtp_session_output(s)));
	/* Only the message: what follows the terminator is not ours. */
	w = LMTP_WANT_DATA;
	while (w == LMTP_WANT_DATA && off < ref.wire_used) {
		chunk = ref.wire_used - off < step ? ref.wire_used - off : step;
		evbuffer_add(in, wire + off, chunk);
		off += chunk;
		w = lmtp_session_feed(s, in);
	}
	fuzz_check(w == LMTP_WANT_LINE && off == ref.wire_used &&
	    evbuffer_get_length(in) == 0, "message ends at the terminator");
	if (ref.bad_header) {
		fuzz_check(o.called == 0, "bad header kept from the owner");
		fuzz_expect(s, "554 5.6.0 Message header line too long\r\n");
	} else {
		fuzz_check(o.called == 1, "owner called once");
		fuzz_expect(s, "250 2.0.0 Ok\r\n");
	}
	lmtp_session_free(s);
	evbuffer_free(in);
	free(ref.msg);
	free(wire);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *m = getenv("FUZZ_LMTP_MODE");

	(void)argc;
	(void)argv;
	/* Above every level: the harness provokes logged errors on purpose. */
	log_set_level((enum log_level)(LOG_ERROR + 1));
	if (m != NULL && strcmp(m, "cmd") == 0)
		fuzz_mode = 0;
	else if (m != NULL && strcmp(m, "session") == 0)
		fuzz_mode = 1;
	else if (m != NULL && strcmp(m, "data") == 0)
		fuzz_mode = 2;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int mode = fuzz_mode;

	if (mode < 0) {
		if (size == 0)
			return 0;
		mode = data[0] % 3;
		data++;
		size--;
	}
	if (mode == 0)
		fuzz_cmd(data, size);
	else if (mode == 1)
		fuzz_session(data, size);
	else
		fuzz_data(data, size);
	return 0;
}
