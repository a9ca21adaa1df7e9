/*
 * lmtp_server: RFC 2033 LMTP over libevent bufferevents.  See lmtp.h.
 *
 * Two layers.  The session core (lmtp_session_*) is the protocol: a state
 * machine over an input evbuffer and an output evbuffer, with no socket
 * and no timer, so the fuzzer can drive it with arbitrary bytes.  The
 * driver (lmtp_conn_*) owns the socket, the timeouts and the listener,
 * and only moves bytes between the bufferevent and the core.
 *
 * Pipelining.  The core takes one command at a time from the input and
 * stops when it must wait for the owner; commands that arrive meanwhile
 * stay in the input buffer, unparsed, so no reply can overtake another.
 * The driver holds the replies while the core waits for the owner and
 * hands them to the socket when the core needs more input, so the
 * replies to a pipelined group leave in one send.
 *
 * Memory per connection, bounded before anything is allocated:
 *   input		LMTP_IN_HIWAT (bufferevent read high watermark;
 *			the kernel keeps the rest), plus one read chunk
 *   output		2 * LMTP_OUT_HIWAT (the core's replies stop at one,
 *			the socket's queue is fed below one) plus the
 *			replies of one command: max_rcpts * LMTP_REPLY_MAX
 *			after DATA
 *   message		max_size (stored unstuffed; past it nothing more is
 *			stored, and the rest is read and dropped), and all
 *			messages together at most max_buffered: the pool
 *			below, shared by the server's sessions
 *   recipients		max_rcpts * (LMTP_LINE_MAX + LMTP_REPLY_MAX)
 *   fixed		the session, the bufferevent and an event: ~2 KiB
 * which is about 50 KiB + max_size + max_rcpts * 2 KiB, and for a server
 * max_clients * (50 KiB + max_rcpts * 2 KiB) + max_buffered.  A command
 * line is never buffered past LMTP_LINE_MAX: a longer one is answered and
 * drained as it comes.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <malloc.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "lmtp.h"
#include "lmtp_cmd.h"
#include "log.h"

#define LMTP_IN_HIWAT	(16 * 1024)
#define LMTP_OUT_HIWAT	(16 * 1024)
#define LMTP_REPLY_MAX	512		/* RFC 5321 4.5.3.1.5, with CRLF */
#define LMTP_PEER_MAX	64
#define LMTP_MAX_ERRORS	20		/* then 421: the client is lost */
#define LMTP_DATA_CHUNK	(16 * 1024)	/* first message buffer */
#define LMTP_BACKLOG	128

#define LMTP_DEF_SIZE	(10 * 1024 * 1024)
#define LMTP_DEF_RCPTS	1000
#define LMTP_DEF_CLIENTS 100
#define LMTP_DEF_IDLE	300
#define LMTP_DEF_DATA	600
#define LMTP_DEF_BUFFERED(max_size)	(4 * (max_size))

enum lmtp_state {
	LMTP_S_INIT,			/* greeted, no LHLO yet */
	LMTP_S_READY,			/* LHLO done, no transaction */
	LMTP_S_MAIL,			/* MAIL taken, RCPTs come */
	LMTP_S_RCPT_WAIT,		/* the owner judges a RCPT */
	LMTP_S_DATA,			/* reading the message */
	LMTP_S_DATA_WAIT,		/* the owner has the message */
	LMTP_S_CLOSING			/* last reply queued */
};

static const char *const lmtp_state_names[] = {
	"init", "ready", "mail", "rcpt_wait", "data", "data_wait", "closing"
};

/* What the transaction waits for from its owner. */
enum lmtp_pend {
	LMTP_PEND_NONE,
	LMTP_PEND_RCPT,
	LMTP_PEND_DATA
};

/* Where the DATA reader stands within a line of the message. */
enum lmtp_dot {
	LMTP_DOT_BOL,			/* at the start of a line */
	LMTP_DOT_DOT,			/* a "." opened the line */
	LMTP_DOT_DOTCR,			/* ".\r" opened the line */
	LMTP_DOT_MID,			/* inside a line */
	LMTP_DOT_CR			/* after a CR inside a line */
};

/*
 * The message bytes every session of a server holds at once, counted by
 * the capacity of their buffers.  Without it max_clients clients each
 * sending max_size would need max_clients * max_size.  Transactions hold
 * a reference, since the owner may keep one after its session and even
 * its server are gone.
 */
struct lmtp_pool {
	size_t		 used;
	size_t		 max;
	size_t		 refs;
};

struct lmtp_rcpt {
	char		*addr;
	char		*reply;		/* the owner's, after DATA */
	long		 cookie;
};

struct lmtp_txn {
	struct lmtp_session *sess;	/* NULL once the client is gone */
	unsigned long	 id;
	char		 peer[LMTP_PEER_MAX];
	char		*mail_from;
	struct lmtp_rcpt *rcpt;		/* nrcpt accepted, +1 being asked */
	size_t		 nrcpt;
	size_t		 rcpt_cap;
	enum lmtp_pend	 pend;
	int		 rcpt_limit_logged;
	char		*data;		/* the message, unstuffed */
	size_t		 len;
	size_t		 data_cap;	/* counted in pool */
	struct lmtp_pool *pool;
};

struct lmtp_reader {
	enum lmtp_dot	 dot;
	int		 done;
	int		 in_header;
	size_t		 hline;		/* octets of this header line */
	char		 hlast;		/* and its last one */
	size_t		 seen;		/* message octets, kept or not */
	int		 too_big;
	int		 bad_header;
	int		 no_memory;
	int		 over_budget;	/* the pool is full */
};

struct lmtp_session {
	struct lmtp_config cfg;
	const struct lmtp_callbacks *cb;
	void		*arg;
	void		(*wake)(void *);
	void		*wake_arg;
	unsigned long	 id;
	char		 peer[LMTP_PEER_MAX];
	enum lmtp_state	 state;
	struct evbuffer	*out;
	struct lmtp_txn	*txn;
	struct lmtp_reader rd;
	struct lmtp_pool *pool;
	int		 skip_line;	/* draining an overlong command */
	int		 in_owner;	/* inside an owner callback */
	int		 stopping;	/* 421 at the next command */
	unsigned	 errors;
	const char	*close_reason;
};

static void	lmtp_enter(struct lmtp_session *, enum lmtp_state);

/* An owner broke the contract in lmtp.h: carrying on would send wrong
 * replies or touch freed memory, so stop here where the cause is. */
static void
lmtp_misuse(const char *call)
{
	log_error("lmtp_misuse", "call=%s", call);
	abort();
}

static void
lmtp_config_fill(struct lmtp_config *cfg)
{
	if (cfg->host == NULL)
		cfg->host = "127.0.0.1";
	if (cfg->hostname == NULL)
		cfg->hostname = "localhost";
	if (cfg->max_size == 0)
		cfg->max_size = LMTP_DEF_SIZE;
	if (cfg->max_size > SIZE_MAX / 8)
		cfg->max_size = SIZE_MAX / 8;
	if (cfg->max_buffered == 0)
		cfg->max_buffered = LMTP_DEF_BUFFERED(cfg->max_size);
	if (cfg->max_buffered < cfg->max_size)
		cfg->max_buffered = cfg->max_size;
	if (cfg->max_rcpts == 0)
		cfg->max_rcpts = LMTP_DEF_RCPTS;
	if (cfg->max_clients == 0)
		cfg->max_clients = LMTP_DEF_CLIENTS;
	if (cfg->idle_timeout <= 0)
		cfg->idle_timeout = LMTP_DEF_IDLE;
	if (cfg->data_timeout <= 0)
		cfg->data_timeout = LMTP_DEF_DATA;
}

/* The message pool. */

static struct lmtp_pool *
lmtp_pool_new(size_t max)
{
	struct lmtp_pool *p = calloc(1, sizeof(*p));

	if (p != NULL) {
		p->max = max;
		p->refs = 1;
	}
	return p;
}

static struct lmtp_pool *
lmtp_pool_ref(struct lmtp_pool *p)
{
	p->refs++;
	return p;
}

static void
lmtp_pool_unref(struct lmtp_pool *p)
{
	if (p != NULL && --p->refs == 0)
		free(p);
}

/* Transactions. */

static char *
lmtp_strndup(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s != NULL) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

static void	lmtp_txn_data_discard(struct lmtp_txn *);

static struct lmtp_txn *
lmtp_txn_new(struct lmtp_session *s, const char *from, size_t len)
{
	struct lmtp_txn *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	if ((t->mail_from = lmtp_strndup(from, len)) == NULL) {
		free(t);
		return NULL;
	}
	t->sess = s;
	t->pool = lmtp_pool_ref(s->pool);
	t->id = s->id;
	memcpy(t->peer, s->peer, sizeof(t->peer));
	return t;
}

static void
lmtp_txn_free(struct lmtp_txn *t)
{
	size_t n = t->nrcpt + (t->pend == LMTP_PEND_RCPT);

	for (size_t i = 0; i < n && i < t->rcpt_cap; i++) {
		free(t->rcpt[i].addr);
		free(t->rcpt[i].reply);
	}
	free(t->rcpt);
	free(t->mail_from);
	lmtp_txn_data_discard(t);
	lmtp_pool_unref(t->pool);
	free(t);
}

/* Room for one more recipient at index nrcpt. */
static int
lmtp_txn_add_rcpt(struct lmtp_txn *t, const char *addr, size_t len)
{
	struct lmtp_rcpt *r;
	size_t cap;

	if (t->nrcpt == t->rcpt_cap) {
		cap = t->rcpt_cap ? t->rcpt_cap * 2 : 4;
		r = realloc(t->rcpt, cap * sizeof(*r));
		if (r == NULL)
			return 0;
		t->rcpt = r;
		t->rcpt_cap = cap;
	}
	r = &t->rcpt[t->nrcpt];
	memset(r, 0, sizeof(*r));
	return (r->addr = lmtp_strndup(addr, len)) != NULL;
}

static void
lmtp_txn_data_discard(struct lmtp_txn *t)
{
	t->pool->used -= t->data_cap;
	free(t->data);
	t->data = NULL;
	t->len = t->data_cap = 0;
}

/* The session lets go of its transaction: freed, or, if the owner still
 * owes an answer, left to the owner until it gives it. */
static void
lmtp_txn_drop(struct lmtp_session *s)
{
	struct lmtp_txn *t = s->txn;

	if (t == NULL)
		return;
	s->txn = NULL;
	if (t->pend != LMTP_PEND_NONE) {
		t->sess = NULL;
		return;
	}
	lmtp_txn_free(t);
}

const char *
lmtp_txn_mail_from(const struct lmtp_txn *t)
{
	return t->mail_from;
}

size_t
lmtp_txn_nrcpt(const struct lmtp_txn *t)
{
	return t->nrcpt;
}

static int
lmtp_txn_has(const struct lmtp_txn *t, size_t i)
{
	return i < t->nrcpt || (i == t->nrcpt && t->pend == LMTP_PEND_RCPT);
}

const char *
lmtp_txn_rcpt(const struct lmtp_txn *t, size_t i)
{
	return lmtp_txn_has(t, i) ? t->rcpt[i].addr : NULL;
}

void
lmtp_txn_set_cookie(struct lmtp_txn *t, size_t i, long cookie)
{
	if (!lmtp_txn_has(t, i))
		lmtp_misuse("lmtp_txn_set_cookie");
	t->rcpt[i].cookie = cookie;
}

long
lmtp_txn_cookie(const struct lmtp_txn *t, size_t i)
{
	return lmtp_txn_has(t, i) ? t->rcpt[i].cookie : 0;
}

const char *
lmtp_txn_data(const struct lmtp_txn *t, size_t *len)
{
	if (len != NULL)
		*len = t->len;
	return t->data != NULL ? t->data : "";
}

const char *
lmtp_txn_peer(const struct lmtp_txn *t)
{
	return t->peer;
}

unsigned long
lmtp_txn_session_id(const struct lmtp_txn *t)
{
	return t->id;
}

int
lmtp_txn_client_gone(const struct lmtp_txn *t)
{
	return t->sess == NULL;
}

/* Replies. */

/* RFC 5321 4.5.3.1.5 caps a reply line; a longer one (an owner quoting
 * a long address) is cut rather than refused, as it is still one line. */
static void
lmtp_reply_line(struct lmtp_session *s, const char *line)
{
	evbuffer_add(s->out, line, strnlen(line, LMTP_REPLY_MAX - 2));
	evbuffer_add(s->out, "\r\n", 2);
}

static void
lmtp_reply(struct lmtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
lmtp_reply(struct lmtp_session *s, const char *fmt, ...)
{
	char line[LMTP_REPLY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	lmtp_reply_line(s, line);
}

/* One line, "ddd" or "ddd text", printable ASCII, code 200-599: anything
 * else from the owner could split into two replies on the wire. */
static int
lmtp_reply_valid(const char *r)
{
	size_t n;

	if (r == NULL || (n = strlen(r)) < 3)
		return 0;
	if (r[0] < '2' || r[0] > '5' || r[1] < '0' || r[1] > '9' ||
	    r[2] < '0' || r[2] > '9' || (r[3] != '\0' && r[3] != ' '))
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)r[i] < 0x20 || (unsigned char)r[i] >= 0x7f)
			return 0;
	return 1;
}

static const char *
lmtp_reply_checked(const struct lmtp_session *s, const char *r)
{
	if (lmtp_reply_valid(r))
		return r;
	log_error("lmtp_owner_reply", "session=%lu error=invalid reply=%s",
	    s->id, log_q(r));
	return "451 4.3.0 Internal error";
}

static void
lmtp_reply_all(struct lmtp_session *s, const char *line)
{
	for (size_t i = 0; i < s->txn->nrcpt; i++)
		lmtp_reply_line(s, line);
}

/* The client's fault: answer, log, and give up on a client that keeps
 * erring, since it is not going to recover. */
static void
lmtp_protocol_error(struct lmtp_session *s, const char *what,
    const char *reply)
{
	log_info("lmtp_protocol", "session=%lu peer=%s state=%s error=%s",
	    s->id, s->peer, lmtp_state_names[s->state], what);
	lmtp_reply_line(s, reply);
	if (++s->errors < LMTP_MAX_ERRORS)
		return;
	log_info("lmtp_limit", "session=%lu peer=%s limit=errors max=%d",
	    s->id, s->peer, LMTP_MAX_ERRORS);
	lmtp_reply(s, "421 4.7.0 %s Too many errors, closing connection",
	    s->cfg.hostname);
	s->close_reason = "too_many_errors";
	lmtp_enter(s, LMTP_S_CLOSING);
}

static void
lmtp_wake(struct lmtp_session *s)
{
	if (!s->in_owner && s->wake != NULL)
		s->wake(s->wake_arg);
}

/* The only place the state changes; entering a state also sets up what
 * it needs, so no state is entered half-prepared. */
static void
lmtp_enter(struct lmtp_session *s, enum lmtp_state st)
{
	log_debug("lmtp_state", "session=%lu from=%s to=%s", s->id,
	    lmtp_state_names[s->state], lmtp_state_names[st]);
	switch (st) {
	case LMTP_S_INIT:
	case LMTP_S_READY:
	case LMTP_S_CLOSING:
		lmtp_txn_drop(s);
		break;
	case LMTP_S_DATA:
		memset(&s->rd, 0, sizeof(s->rd));
		s->rd.dot = LMTP_DOT_BOL;
		s->rd.in_header = 1;
		break;
	default:
		break;
	}
	s->state = st;
}

/* Owner answers. */

void
lmtp_txn_rcpt_done(struct lmtp_txn *t, size_t i, const char *reply)
{
	struct lmtp_session *s = t->sess;

	if (t->pend != LMTP_PEND_RCPT || i != t->nrcpt)
		lmtp_misuse("lmtp_txn_rcpt_done");
	t->pend = LMTP_PEND_NONE;
	if (s == NULL) {
		free(t->rcpt[i].addr);
		lmtp_txn_free(t);
		return;
	}
	reply = lmtp_reply_checked(s, reply);
	if (reply[0] == '2')
		t->nrcpt++;
	else {
		free(t->rcpt[i].addr);
		t->rcpt[i].addr = NULL;
	}
	lmtp_reply_line(s, reply);
	lmtp_enter(s, LMTP_S_MAIL);
	lmtp_wake(s);
}

void
lmtp_txn_reply(struct lmtp_txn *t, size_t i, const char *reply)
{
	if (i >= t->nrcpt || reply == NULL)
		lmtp_misuse("lmtp_txn_reply");
	free(t->rcpt[i].reply);
	t->rcpt[i].reply = strndup(reply, LMTP_REPLY_MAX - 2);
}

void
lmtp_txn_data_done(struct lmtp_txn *t)
{
	struct lmtp_session *s = t->sess;
	const char *r;

	if (t->pend != LMTP_PEND_DATA)
		lmtp_misuse("lmtp_txn_data_done");
	t->pend = LMTP_PEND_NONE;
	if (s == NULL) {
		lmtp_txn_free(t);
		return;
	}
	for (size_t i = 0; i < t->nrcpt; i++) {
		r = t->rcpt[i].reply;
		lmtp_reply_line(s, r == NULL ?
		    "451 4.3.0 No answer for this recipient" :
		    lmtp_reply_checked(s, r));
	}
	lmtp_enter(s, LMTP_S_READY);
	lmtp_wake(s);
}

/* Commands.  Each verb names the state it needs; the check comes before
 * the syntax, so a client out of sequence hears about the sequence. */

enum lmtp_need {
	LMTP_NEED_NONE,
	LMTP_NEED_LHLO,
	LMTP_NEED_MAIL
};

static int
lmtp_need_ok(struct lmtp_session *s, enum lmtp_need need)
{
	if (need >= LMTP_NEED_LHLO && s->state == LMTP_S_INIT) {
		lmtp_protocol_error(s, "bad_sequence",
		    "503 5.5.1 Send LHLO first");
		return 0;
	}
	if (need == LMTP_NEED_MAIL && s->state != LMTP_S_MAIL) {
		lmtp_protocol_error(s, "bad_sequence",
		    "503 5.5.1 Need MAIL command");
		return 0;
	}
	return 1;
}

static int
lmtp_status_ok(struct lmtp_session *s, const struct lmtp_cmd *c,
    enum lmtp_cmd_status st)
{
	switch (st) {
	case LMTP_CMD_OK:
		return 1;
	case LMTP_CMD_BAD_PATH:
		lmtp_protocol_error(s, "bad_path", c->verb == LMTP_VERB_MAIL ?
		    "501 5.1.7 Bad sender address syntax" :
		    "501 5.1.3 Bad recipient address syntax");
		return 0;
	case LMTP_CMD_BAD_PARAM:
		lmtp_protocol_error(s, "bad_param",
		    "555 5.5.4 Unsupported parameter");
		return 0;
	default:
		lmtp_protocol_error(s, "syntax",
		    "501 5.5.4 Syntax error in parameters or arguments");
		return 0;
	}
}

static void
lmtp_do_lhlo(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	(void)c;
	lmtp_reply(s, "250-%s", s->cfg.hostname);
	lmtp_reply_line(s, "250-PIPELINING");
	lmtp_reply_line(s, "250-ENHANCEDSTATUSCODES");
	lmtp_reply_line(s, "250-8BITMIME");
	lmtp_reply(s, "250 SIZE %zu", s->cfg.max_size);
	lmtp_enter(s, LMTP_S_READY);
}

static void
lmtp_do_helo(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	(void)c;
	lmtp_protocol_error(s, "not_lhlo", "500 5.5.1 Use LHLO for LMTP");
}

static void
lmtp_do_mail(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	if (s->state == LMTP_S_MAIL) {
		lmtp_protocol_error(s, "bad_sequence",
		    "503 5.5.1 Nested MAIL command");
		return;
	}
	if (c->has_size && c->size > s->cfg.max_size) {
		log_info("lmtp_limit", "session=%lu peer=%s limit=size "
		    "declared=%zu max=%zu", s->id, s->peer, c->size,
		    s->cfg.max_size);
		lmtp_reply_line(s,
		    "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if ((s->txn = lmtp_txn_new(s, c->path, c->path_len)) == NULL) {
		lmtp_reply_line(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	lmtp_reply_line(s, "250 2.1.0 OK");
	lmtp_enter(s, LMTP_S_MAIL);
}

static void
lmtp_do_rcpt(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	struct lmtp_txn *t = s->txn;

	if (t->nrcpt >= s->cfg.max_rcpts) {
		if (!t->rcpt_limit_logged)
			log_info("lmtp_limit", "session=%lu peer=%s "
			    "limit=rcpts max=%zu", s->id, s->peer,
			    s->cfg.max_rcpts);
		t->rcpt_limit_logged = 1;
		lmtp_reply_line(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (!lmtp_txn_add_rcpt(t, c->path, c->path_len)) {
		lmtp_reply_line(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	t->pend = LMTP_PEND_RCPT;
	lmtp_enter(s, LMTP_S_RCPT_WAIT);
	s->in_owner = 1;
	s->cb->rcpt(s->arg, t, t->nrcpt);
	s->in_owner = 0;
}

static void
lmtp_do_data(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	(void)c;
	if (s->txn->nrcpt == 0) {
		/* Normal when every RCPT of a pipelined group was refused,
		 * so it is not counted as the client's error. */
		lmtp_reply_line(s, "503 5.5.1 No valid recipients");
		return;
	}
	lmtp_reply_line(s, "354 Start mail input; end with <CRLF>.<CRLF>");
	lmtp_enter(s, LMTP_S_DATA);
}

static void
lmtp_do_rset(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	(void)c;
	lmtp_reply_line(s, "250 2.0.0 OK");
	lmtp_enter(s, s->state == LMTP_S_INIT ? LMTP_S_INIT : LMTP_S_READY);
}

static void
lmtp_do_noop(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	(void)c;
	lmtp_reply_line(s, "250 2.0.0 OK");
}

static void
lmtp_do_quit(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	(void)c;
	lmtp_reply(s, "221 2.0.0 %s closing connection", s->cfg.hostname);
	s->close_reason = "quit";
	lmtp_enter(s, LMTP_S_CLOSING);
}

static void
lmtp_do_vrfy(struct lmtp_session *s, const struct lmtp_cmd *c)
{
	(void)c;
	lmtp_reply_line(s,
	    "252 2.5.0 Cannot VRFY user, but will accept message");
}

static const struct lmtp_verb_op {
	enum lmtp_need	 need;
	void		(*run)(struct lmtp_session *, const struct lmtp_cmd *);
} lmtp_verb_ops[LMTP_VERB_COUNT] = {
	[LMTP_VERB_LHLO] = { LMTP_NEED_NONE, lmtp_do_lhlo },
	[LMTP_VERB_HELO] = { LMTP_NEED_NONE, lmtp_do_helo },
	[LMTP_VERB_EHLO] = { LMTP_NEED_NONE, lmtp_do_helo },
	[LMTP_VERB_MAIL] = { LMTP_NEED_LHLO, lmtp_do_mail },
	[LMTP_VERB_RCPT] = { LMTP_NEED_MAIL, lmtp_do_rcpt },
	[LMTP_VERB_DATA] = { LMTP_NEED_MAIL, lmtp_do_data },
	[LMTP_VERB_RSET] = { LMTP_NEED_NONE, lmtp_do_rset },
	[LMTP_VERB_NOOP] = { LMTP_NEED_NONE, lmtp_do_noop },
	[LMTP_VERB_QUIT] = { LMTP_NEED_NONE, lmtp_do_quit },
	[LMTP_VERB_VRFY] = { LMTP_NEED_NONE, lmtp_do_vrfy },
};

static void
lmtp_command(struct lmtp_session *s, const char *line, size_t len)
{
	const struct lmtp_verb_op *op;
	enum lmtp_cmd_status st;
	struct lmtp_cmd c;

	st = lmtp_cmd_parse(line, len, &c);
	if (c.verb == LMTP_VERB_UNKNOWN) {
		lmtp_protocol_error(s, "unknown_command",
		    "500 5.5.2 Command unrecognized");
		return;
	}
	log_debug("lmtp_command", "session=%lu verb=%s", s->id,
	    lmtp_verb_name(c.verb));
	op = &lmtp_verb_ops[c.verb];
	if (lmtp_need_ok(s, op->need) && lmtp_status_ok(s, &c, st))
		op->run(s, &c);
}

/*
 * Take one command line from the input, or drain part of an overlong one.
 * Returns 0 when a whole line is not there yet.  The search stops at
 * LMTP_LINE_MAX octets, so a flood without LF costs a bounded scan.
 */
static int
lmtp_line_read(struct lmtp_session *s, struct evbuffer *in)
{
	char line[LMTP_LINE_MAX];
	struct evbuffer_ptr p, end;
	size_t len = evbuffer_get_length(in);

	if (len == 0)
		return 0;
	if (s->skip_line) {
		p = evbuffer_search(in, "\n", 1, NULL);
		evbuffer_drain(in, p.pos < 0 ? len : (size_t)p.pos + 1);
		s->skip_line = p.pos < 0;
		return p.pos >= 0;
	}
	if (evbuffer_ptr_set(in, &end, len < LMTP_LINE_MAX ? len :
	    LMTP_LINE_MAX, EVBUFFER_PTR_SET) != 0)
		lmtp_misuse("evbuffer_ptr_set");
	p = evbuffer_search_range(in, "\n", 1, NULL, &end);
	if (p.pos >= 0) {
		evbuffer_remove(in, line, (size_t)p.pos + 1);
		lmtp_command(s, line, (size_t)p.pos + 1);
		return 1;
	}
	if (len < LMTP_LINE_MAX)
		return 0;
	s->skip_line = 1;
	lmtp_protocol_error(s, "line_too_long", "500 5.5.2 Line too long");
	return 1;
}

/* The message. */

/* RFC 5322 2.1.1 caps a header line at 1000 octets with its CRLF; any LF
 * ends a line here, as it does for the message parser downstream. */
static void
lmtp_header_scan(struct lmtp_reader *r, const char *p, size_t n)
{
	for (size_t i = 0; i < n && r->in_header; i++) {
		if (++r->hline > LMTP_LINE_MAX) {
			r->bad_header = 1;
			r->in_header = 0;
		} else if (p[i] == '\n') {
			/* A blank line, "\n" or "\r\n", ends the header. */
			if (r->hline == 1 || (r->hline == 2 &&
			    r->hlast == '\r'))
				r->in_header = 0;
			r->hline = 0;
		}
		r->hlast = p[i];
	}
}

/* 1 when need octets fit, 0 when out of memory, -1 when the pool has
 * no room for them. */
static int
lmtp_data_grow(struct lmtp_txn *t, size_t need, size_t max)
{
	struct lmtp_pool *pool = t->pool;
	size_t cap;
	char *p;

	if (need <= t->data_cap)
		return 1;
	cap = t->data_cap > max / 2 ? max : t->data_cap * 2;
	if (cap < LMTP_DATA_CHUNK)
		cap = LMTP_DATA_CHUNK < max ? LMTP_DATA_CHUNK : max;
	if (cap < need)
		cap = need;
	if (cap - t->data_cap > pool->max - pool->used)
		return -1;
	if ((p = realloc(t->data, cap)) == NULL)
		return 0;
	pool->used += cap - t->data_cap;
	t->data = p;
	t->data_cap = cap;
	return 1;
}

/* Unstuffed message bytes: checked, counted, and kept while the message
 * can still be passed on.  A refused one is only counted. */
static void
lmtp_data_put(struct lmtp_session *s, const char *p, size_t n)
{
	struct lmtp_reader *r = &s->rd;
	struct lmtp_txn *t = s->txn;

	if (n == 0)
		return;
	if (r->in_header)
		lmtp_header_scan(r, p, n);
	r->seen = n > SIZE_MAX - r->seen ? SIZE_MAX : r->seen + n;
	if (r->seen > s->cfg.max_size)
		r->too_big = 1;
	if (!r->too_big && !r->bad_header && !r->no_memory &&
	    !r->over_budget) {
		switch (lmtp_data_grow(t, t->len + n, s->cfg.max_size)) {
		case 0:
			r->no_memory = 1;
			break;
		case -1:
			/* Logged now: the client may never reach the end. */
			log_info("lmtp_limit", "session=%lu peer=%s "
			    "limit=buffered size=%zu buffered=%zu max=%zu",
			    s->id, s->peer, r->seen, s->pool->used,
			    s->pool->max);
			r->over_budget = 1;
			break;
		}
	}
	if (r->too_big || r->bad_header || r->no_memory || r->over_budget) {
		lmtp_txn_data_discard(t);
		return;
	}
	memcpy(t->data + t->len, p, n);
	t->len += n;
}

/* Bytes inside a line up to the next CR, in one copy. */
static size_t
lmtp_data_span(struct lmtp_session *s, const char *b, size_t n)
{
	const char *cr = memchr(b, '\r', n);
	size_t k = cr != NULL ? (size_t)(cr - b) + 1 : n;

	lmtp_data_put(s, b, k);
	if (cr != NULL)
		s->rd.dot = LMTP_DOT_CR;
	return k;
}

/*
 * RFC 5321 4.5.2: a line "." ends the message; any other line opening
 * with "." loses it.  Lines end with CRLF only, so a bare LF or CR is
 * message content and can never end the message early (the inconsistent
 * reading of bare LF is what SMTP smuggling exploits).  Returns octets
 * used; sets rd.done after the terminator's LF.
 */
static size_t
lmtp_data_scan(struct lmtp_session *s, const char *b, size_t n)
{
	struct lmtp_reader *r = &s->rd;
	size_t i = 0;

	while (i < n) {
		switch (r->dot) {
		case LMTP_DOT_BOL:
			r->dot = b[i] == '.' ? LMTP_DOT_DOT : LMTP_DOT_MID;
			i += b[i] == '.';
			break;
		case LMTP_DOT_DOT:
			r->dot = b[i] == '\r' ? LMTP_DOT_DOTCR : LMTP_DOT_MID;
			i += b[i] == '\r';
			break;
		case LMTP_DOT_DOTCR:
			if (b[i] == '\n') {
				r->done = 1;
				return i + 1;
			}
			lmtp_data_put(s, "\r", 1);
			r->dot = LMTP_DOT_CR;
			break;
		case LMTP_DOT_CR:
			if (b[i] == '\n') {
				lmtp_data_put(s, "\n", 1);
				r->dot = LMTP_DOT_BOL;
				i++;
			} else
				r->dot = LMTP_DOT_MID;
			break;
		case LMTP_DOT_MID:
			i += lmtp_data_span(s, b + i, n - i);
			break;
		}
	}
	return i;
}

static void
lmtp_data_end(struct lmtp_session *s)
{
	struct lmtp_reader *r = &s->rd;
	struct lmtp_txn *t = s->txn;
	const char *refusal = NULL;

	if (r->too_big) {
		log_info("lmtp_limit", "session=%lu peer=%s limit=size "
		    "size=%zu max=%zu", s->id, s->peer, r->seen,
		    s->cfg.max_size);
		refusal = "552 5.3.4 Message size exceeds fixed limit";
	} else if (r->bad_header) {
		log_info("lmtp_limit", "session=%lu peer=%s limit=header_line "
		    "max=%d", s->id, s->peer, LMTP_LINE_MAX);
		refusal = "554 5.6.0 Message header line too long";
	} else if (r->no_memory) {
		log_error("lmtp_memory", "session=%lu size=%zu", s->id,
		    r->seen);
		refusal = "452 4.3.1 Insufficient system storage";
	} else if (r->over_budget)
		refusal = "452 4.3.1 Insufficient system storage, try again "
		    "later";
	if (refusal != NULL) {
		lmtp_reply_all(s, refusal);
		lmtp_enter(s, LMTP_S_READY);
		return;
	}
	t->pend = LMTP_PEND_DATA;
	lmtp_enter(s, LMTP_S_DATA_WAIT);
	s->in_owner = 1;
	s->cb->data(s->arg, t);
	s->in_owner = 0;
}

/* Returns 1 once the message is complete; 0 when the input ran out.
 * Everything present is consumed, so DATA never stalls the socket. */
static int
lmtp_data_read(struct lmtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec v[4];
	size_t used;
	int n;

	while (evbuffer_get_length(in) > 0) {
		n = evbuffer_peek(in, -1, NULL, v, 4);
		used = 0;
		for (int i = 0; i < n && i < 4 && !s->rd.done; i++)
			used += lmtp_data_scan(s, v[i].iov_base, v[i].iov_len);
		evbuffer_drain(in, used);
		if (s->rd.done) {
			lmtp_data_end(s);
			return 1;
		}
		if (used == 0)	/* empty leading chains: make one whole */
			evbuffer_pullup(in, 1);
	}
	return 0;
}

/* The session core's interface. */

/* pool: the server's, or NULL for one of the session's own. */
static struct lmtp_session *
lmtp_session_create(const struct lmtp_config *cfg,
    const struct lmtp_callbacks *cb, void *arg, unsigned long id,
    const char *peer, struct lmtp_pool *pool)
{
	struct lmtp_session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cfg = *cfg;
	lmtp_config_fill(&s->cfg);
	s->pool = pool != NULL ? lmtp_pool_ref(pool) :
	    lmtp_pool_new(s->cfg.max_buffered);
	if (s->pool == NULL || (s->out = evbuffer_new()) == NULL) {
		lmtp_pool_unref(s->pool);
		free(s);
		return NULL;
	}
	s->cb = cb;
	s->arg = arg;
	s->id = id;
	snprintf(s->peer, sizeof(s->peer), "%s", peer != NULL ? peer : "-");
	s->state = LMTP_S_INIT;
	lmtp_reply(s, "220 %s LMTP Quire ready", s->cfg.hostname);
	return s;
}

struct lmtp_session *
lmtp_session_new(const struct lmtp_config *cfg,
    const struct lmtp_callbacks *cb, void *arg, unsigned long id,
    const char *peer)
{
	return lmtp_session_create(cfg, cb, arg, id, peer, NULL);
}

void
lmtp_session_set_wake(struct lmtp_session *s, void (*fn)(void *), void *arg)
{
	s->wake = fn;
	s->wake_arg = arg;
}

/* Between transactions, so nothing accepted is cut: the client sends
 * the rest again to the next server.  XXX A client that pipelined
 * commands just then may see a reset instead of the 421: the socket is
 * closed with its input unread. */
static void
lmtp_stop_reply(struct lmtp_session *s)
{
	lmtp_reply(s, "421 4.3.2 %s Service shutting down, closing "
	    "connection", s->cfg.hostname);
	s->close_reason = "stopping";
	lmtp_enter(s, LMTP_S_CLOSING);
}

void
lmtp_session_stop(struct lmtp_session *s)
{
	s->stopping = 1;
}

enum lmtp_want
lmtp_session_feed(struct lmtp_session *s, struct evbuffer *in)
{
	for (;;) {
		switch (s->state) {
		case LMTP_S_RCPT_WAIT:
		case LMTP_S_DATA_WAIT:
			return LMTP_WANT_OWNER;
		case LMTP_S_CLOSING:
			return LMTP_WANT_CLOSE;
		case LMTP_S_DATA:
			if (!lmtp_data_read(s, in))
				return LMTP_WANT_DATA;
			break;
		default:
			if (evbuffer_get_length(s->out) >= LMTP_OUT_HIWAT)
				return LMTP_WANT_WRITE;
			if (s->stopping) {
				lmtp_stop_reply(s);
				break;
			}
			if (!lmtp_line_read(s, in))
				return LMTP_WANT_LINE;
			break;
		}
	}
}

struct evbuffer *
lmtp_session_output(struct lmtp_session *s)
{
	return s->out;
}

void
lmtp_session_timeout(struct lmtp_session *s)
{
	if (s->state == LMTP_S_CLOSING)
		return;
	s->close_reason = s->state == LMTP_S_DATA ? "data_timeout" :
	    "idle_timeout";
	lmtp_reply(s, "421 4.4.2 %s Timeout exceeded, closing connection",
	    s->cfg.hostname);
	lmtp_enter(s, LMTP_S_CLOSING);
}

const char *
lmtp_session_close_reason(const struct lmtp_session *s)
{
	return s->close_reason;
}

const char *
lmtp_session_state(const struct lmtp_session *s)
{
	return lmtp_state_names[s->state];
}

size_t
lmtp_session_buffered(const struct lmtp_session *s)
{
	size_t n = evbuffer_get_length(s->out);

	if (s->txn != NULL)
		n += s->txn->data_cap;
	return n;
}

void
lmtp_session_free(struct lmtp_session *s)
{
	if (s == NULL)
		return;
	lmtp_txn_drop(s);
	evbuffer_free(s->out);
	lmtp_pool_unref(s->pool);
	free(s);
}

/* The driver: sockets, timeouts, the listener. */

struct lmtp_conn {
	LIST_ENTRY(lmtp_conn) entry;
	struct lmtp_server *srv;
	struct bufferevent *bev;
	struct event	*resume;	/* run the core after an owner answer */
	struct lmtp_session *sess;
	enum lmtp_want	 want;
	int		 want_set;
	unsigned long	 id;
	char		 peer[LMTP_PEER_MAX];
};

struct lmtp_server {
	struct event_base *base;
	struct evconnlistener *lev;
	struct event	*accept_retry;
	struct lmtp_config cfg;		/* strings point at the copies below */
	struct lmtp_callbacks cb;
	void		*arg;
	char		*host;
	char		*hostname;
	struct lmtp_pool *pool;		/* every session's messages */
	size_t		 nclients;
	unsigned long	 next_id;
	LIST_HEAD(, lmtp_conn) conns;
	struct event	*stopped_ev;	/* set once stopping */
	void		(*stopped)(void *);	/* the last client gone */
	void		*stopped_arg;
};

static void
lmtp_conn_close(struct lmtp_conn *c, const char *reason)
{
	struct lmtp_server *srv = c->srv;

	log_info("lmtp_disconnect", "session=%lu peer=%s reason=%s state=%s",
	    c->id, c->peer, reason != NULL ? reason : "-",
	    lmtp_session_state(c->sess));
	LIST_REMOVE(c, entry);
	srv->nclients--;
	lmtp_session_free(c->sess);
	event_free(c->resume);
	bufferevent_free(c->bev);
	free(c);
	if (srv->stopped_ev != NULL && srv->nclients == 0)
		event_active(srv->stopped_ev, EV_TIMEOUT, 1);
	/* The last client gone: its messages' buffers go back to the
	 * system rather than stay at the peak of the busiest hour. */
	if (srv->nclients == 0)
		malloc_trim(0);
}

/*
 * Timeouts follow what the core waits for: none while the owner thinks,
 * because the client is then waiting for us, not we for it.
 *
 * XXX The timeouts are per read, as in most MTAs: a client that sends a
 * byte just inside every idle_timeout (or streams an endless overlong
 * line, which is drained as it comes) keeps its slot for ever, costing a
 * connection but no memory.  A deadline per command would close that.
 */
static void
lmtp_conn_want(struct lmtp_conn *c, enum lmtp_want w)
{
	struct timeval idle = { c->srv->cfg.idle_timeout, 0 };
	struct timeval data = { c->srv->cfg.data_timeout, 0 };

	if (c->want_set && c->want == w)
		return;
	c->want = w;
	c->want_set = 1;
	switch (w) {
	case LMTP_WANT_LINE:
		bufferevent_set_timeouts(c->bev, &idle, &idle);
		break;
	case LMTP_WANT_DATA:
		bufferevent_set_timeouts(c->bev, &data, &idle);
		break;
	case LMTP_WANT_CLOSE:
		bufferevent_disable(c->bev, EV_READ);
		bufferevent_set_timeouts(c->bev, NULL, &idle);
		break;
	default:
		bufferevent_set_timeouts(c->bev, NULL, &idle);
		break;
	}
}

/* Run the core on what has arrived and pass its replies on.  May free c,
 * so callers return right after. */
static void
lmtp_conn_drive(struct lmtp_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	enum lmtp_want w;

	if (evbuffer_get_length(out) >= LMTP_OUT_HIWAT)
		w = LMTP_WANT_WRITE;
	else
		w = lmtp_session_feed(c->sess, bufferevent_get_input(c->bev));
	if (w != LMTP_WANT_OWNER)
		evbuffer_add_buffer(out, lmtp_session_output(c->sess));
	lmtp_conn_want(c, w);
	if (w == LMTP_WANT_CLOSE && evbuffer_get_length(out) == 0)
		lmtp_conn_close(c, lmtp_session_close_reason(c->sess));
}

static void
lmtp_conn_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	lmtp_conn_drive(arg);
}

/* The output has drained. */
static void
lmtp_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct lmtp_conn *c = arg;

	(void)bev;
	if (c->want == LMTP_WANT_WRITE || c->want == LMTP_WANT_CLOSE)
		lmtp_conn_drive(c);
}

static void
lmtp_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lmtp_conn *c = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
		lmtp_session_timeout(c->sess);
		lmtp_conn_drive(c);
	} else if (what & BEV_EVENT_TIMEOUT)
		lmtp_conn_close(c, "write_timeout");
	/* XXX EOF counts as the client gone, even when it only shut its
	 * sending side after pipelining its last commands: replies still
	 * owed to such a client are lost and the MTA retries.  No MTA we
	 * know half-closes an LMTP session. */
	else if (what & BEV_EVENT_EOF)
		lmtp_conn_close(c, "eof");
	else {
		log_info("lmtp_socket", "session=%lu error=%s", c->id,
		    log_q(evutil_socket_error_to_string(err)));
		lmtp_conn_close(c, "error");
	}
}

static void
lmtp_conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	lmtp_conn_drive(arg);
}

/* An owner answered from outside the loop's call into the core: go on
 * from the loop, not from inside the owner's call stack. */
static void
lmtp_conn_wake(void *arg)
{
	struct lmtp_conn *c = arg;

	event_active(c->resume, EV_TIMEOUT, 1);
}

static void
lmtp_peer_name(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		evutil_inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		evutil_inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else
		snprintf(buf, len, "unknown");
}

static struct lmtp_conn *
lmtp_conn_new(struct lmtp_server *srv, evutil_socket_t fd, const char *peer)
{
	struct lmtp_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->srv = srv;
	c->id = ++srv->next_id;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->resume = event_new(srv->base, -1, 0, lmtp_conn_resume_cb, c);
	c->sess = lmtp_session_create(&srv->cfg, &srv->cb, srv->arg, c->id,
	    peer, srv->pool);
	if (c->bev == NULL || c->resume == NULL || c->sess == NULL) {
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		if (c->resume != NULL)
			event_free(c->resume);
		lmtp_session_free(c->sess);
		free(c);
		return NULL;
	}
	lmtp_session_set_wake(c->sess, lmtp_conn_wake, c);
	bufferevent_setcb(c->bev, lmtp_conn_read_cb, lmtp_conn_write_cb,
	    lmtp_conn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, LMTP_IN_HIWAT);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	LIST_INSERT_HEAD(&srv->conns, c, entry);
	srv->nclients++;
	return c;
}

/* Over max_clients: one line on the fresh socket, which has an empty
 * send buffer, so a plain non-blocking send does it without a session. */
static void
lmtp_refuse(struct lmtp_server *srv, evutil_socket_t fd, const char *peer)
{
	char line[LMTP_REPLY_MAX];
	int n;

	n = snprintf(line, sizeof(line), "421 4.3.2 %s Too many connections,"
	    " try again later\r\n", srv->cfg.hostname);
	if (n > 0 && (size_t)n < sizeof(line))
		(void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	log_info("lmtp_refused", "peer=%s reason=max_clients clients=%zu",
	    peer, srv->nclients);
	evutil_closesocket(fd);
}

static void
lmtp_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct lmtp_server *srv = arg;
	char peer[LMTP_PEER_MAX];
	struct lmtp_conn *c;
	int one = 1;

	(void)lev;
	(void)salen;
	lmtp_peer_name(sa, peer, sizeof(peer));
	/* Nagle meeting delayed ACKs costs tens of ms per reply group. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (srv->nclients >= srv->cfg.max_clients) {
		lmtp_refuse(srv, fd, peer);
		return;
	}
	if ((c = lmtp_conn_new(srv, fd, peer)) == NULL) {
		log_error("lmtp_connect", "peer=%s error=no_memory", peer);
		return;
	}
	log_info("lmtp_connect", "session=%lu peer=%s clients=%zu", c->id,
	    peer, srv->nclients);
	lmtp_conn_drive(c);
}

/* accept() failing with EMFILE and the like leaves the connection queued,
 * so the listener would fire again at once; pause it for a second. */
static void
lmtp_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct lmtp_server *srv = arg;
	struct timeval second = { 1, 0 };
	int err = EVUTIL_SOCKET_ERROR();

	log_warn("lmtp_accept", "error=%s",
	    log_q(evutil_socket_error_to_string(err)));
	evconnlistener_disable(lev);
	event_add(srv->accept_retry, &second);
}

static void
lmtp_accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lmtp_server *srv = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(srv->lev);
}

static int
lmtp_listen(struct lmtp_server *srv)
{
	struct addrinfo hints, *ai;
	char port[16];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", srv->cfg.port);
	if ((rc = getaddrinfo(srv->host, port, &hints, &ai)) != 0) {
		log_error("lmtp_listen", "host=%s error=%s", log_q(srv->host),
		    log_q(gai_strerror(rc)));
		return -1;
	}
	srv->lev = evconnlistener_new_bind(srv->base, lmtp_accept_cb, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    LMTP_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (srv->lev == NULL) {
		rc = EVUTIL_SOCKET_ERROR();
		log_error("lmtp_listen", "host=%s port=%d error=%s",
		    log_q(srv->host), srv->cfg.port,
		    log_q(evutil_socket_error_to_string(rc)));
		return -1;
	}
	evconnlistener_set_error_cb(srv->lev, lmtp_accept_error_cb);
	return 0;
}

static char *
lmtp_default_hostname(void)
{
	char name[256];

	if (gethostname(name, sizeof(name)) != 0)
		return strdup("localhost");
	name[sizeof(name) - 1] = '\0';
	return strdup(name);
}

struct lmtp_server *
lmtp_server_new(struct event_base *base, const struct lmtp_config *cfg,
    const struct lmtp_callbacks *cb, void *arg)
{
	struct lmtp_server *srv;

	if (cb == NULL || cb->rcpt == NULL || cb->data == NULL) {
		log_error("lmtp_listen", "error=missing_callbacks");
		return NULL;
	}
	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		return NULL;
	LIST_INIT(&srv->conns);
	srv->base = base;
	srv->cfg = *cfg;
	srv->cb = *cb;
	srv->arg = arg;
	srv->host = strdup(cfg->host != NULL ? cfg->host : "127.0.0.1");
	srv->hostname = cfg->hostname != NULL ? strdup(cfg->hostname) :
	    lmtp_default_hostname();
	srv->cfg.host = srv->host;
	srv->cfg.hostname = srv->hostname;
	lmtp_config_fill(&srv->cfg);
	srv->pool = lmtp_pool_new(srv->cfg.max_buffered);
	srv->accept_retry = evtimer_new(base, lmtp_accept_retry_cb, srv);
	if (srv->host == NULL || srv->hostname == NULL || srv->pool == NULL ||
	    srv->accept_retry == NULL || lmtp_listen(srv) != 0) {
		lmtp_server_free(srv);
		return NULL;
	}
	/* The owner logs that it listens; the limits are mechanics. */
	log_debug("lmtp_listen", "host=%s port=%d max_clients=%zu "
	    "max_size=%zu max_buffered=%zu", log_q(srv->host),
	    lmtp_server_port(srv), srv->cfg.max_clients, srv->cfg.max_size,
	    srv->cfg.max_buffered);
	return srv;
}

int
lmtp_server_port(const struct lmtp_server *srv)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (srv->lev == NULL || getsockname(evconnlistener_get_fd(srv->lev),
	    (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

size_t
lmtp_server_nclients(const struct lmtp_server *srv)
{
	return srv->nclients;
}

size_t
lmtp_server_buffered(const struct lmtp_server *srv)
{
	const struct lmtp_conn *c;
	size_t n = 0;

	LIST_FOREACH(c, &srv->conns, entry) {
		n += evbuffer_get_length(bufferevent_get_input(c->bev));
		n += evbuffer_get_length(bufferevent_get_output(c->bev));
		n += lmtp_session_buffered(c->sess);
	}
	return n;
}

static void
lmtp_stopped_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lmtp_server *srv = arg;

	(void)fd;
	(void)what;
	if (srv->nclients == 0 && srv->stopped != NULL)
		srv->stopped(srv->stopped_arg);
}

int
lmtp_server_stop(struct lmtp_server *srv, void (*stopped)(void *),
    void *arg)
{
	struct lmtp_conn *c;

	if (srv->stopped_ev != NULL)
		return 0;
	srv->stopped_ev = event_new(srv->base, -1, 0, lmtp_stopped_cb, srv);
	if (srv->stopped_ev == NULL)
		return -1;
	srv->stopped = stopped;
	srv->stopped_arg = arg;
	if (srv->lev != NULL) {
		evconnlistener_free(srv->lev);
		srv->lev = NULL;
	}
	event_del(srv->accept_retry);
	/* Each goes on from the loop: driving one here may free it. */
	LIST_FOREACH(c, &srv->conns, entry) {
		lmtp_session_stop(c->sess);
		event_active(c->resume, EV_TIMEOUT, 1);
	}
	if (srv->nclients == 0)
		event_active(srv->stopped_ev, EV_TIMEOUT, 1);
	return 0;
}

void
lmtp_server_free(struct lmtp_server *srv)
{
	if (srv == NULL)
		return;
	srv->stopped = NULL;
	while (!LIST_EMPTY(&srv->conns))
		lmtp_conn_close(LIST_FIRST(&srv->conns), "server_free");
	if (srv->lev != NULL)
		evconnlistener_free(srv->lev);
	if (srv->accept_retry != NULL)
		event_free(srv->accept_retry);
	if (srv->stopped_ev != NULL)
		event_free(srv->stopped_ev);
	lmtp_pool_unref(srv->pool);
	free(srv->host);
	free(srv->hostname);
	free(srv);
}
