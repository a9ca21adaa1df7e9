/*
 * quire-sink: an SMTP sink for tests and for the benchmark's ceiling
 * beside Postfix's smtp-sink.
 *
 *   quire-sink [--listen ADDR] [--port N] [--dir DIR] [--xverp]
 *              [--no-pipelining] [--reply-rcpt PATTERN=CODE]...
 *              [--reply-data PATTERN=CODE]... [--count-file F]
 *              [--delay-data SECONDS [--delay-count N]]
 *
 * --listen takes an IPv4 address (127.0.0.1 by default); --port 0 (the
 * default) picks a port; "port=N" is printed once listening.  With --dir
 * every delivered copy becomes DIR/NNNNNN.eml (the message as received,
 * dot-unstuffed) and a line "seq, mail_from, rcpt, file, size" in
 * DIR/index.tsv, flushed before the 250 goes out; with XVERP the sender
 * recorded is the recipient's VERP address.  Without --dir it only
 * counts.  --reply-rcpt answers RCPTs whose local part
 * starts with PATTERN with CODE; --reply-data does the same for the final
 * dot of a transaction holding such a recipient (SMTP has one reply
 * there).  A 421 closes the connection.  --count-file gets the totals on
 * SIGUSR1 and at exit; SIGTERM and SIGINT end it cleanly.  --delay-data
 * holds the reply to the final dot (the copies are stored already) for
 * SECONDS, for the first N transactions only with --delay-count: a relay
 * that has taken a message but not yet said so.
 *
 * Speed comes from handling every complete line of a read before
 * replying, so a pipelined group gets its replies in one send written
 * straight from the read callback, and from passing DATA on in runs
 * between dots at line starts instead of line by line.
 *
 * XXX --no-pipelining only stops advertising PIPELINING; a client that
 * pipelines anyway is served, where a strict relay might not be.
 * XXX with --dir a message is held in memory whole (up to SIZE) before
 * its files are written.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "verp.h"

#define SINK_NAME		"quire-sink"
#define SINK_LINE_MAX		4096		/* command line */
#define SINK_SIZE_MAX		104857600UL	/* advertised SIZE */
#define SINK_RCPTS_MAX		100000
#define SINK_IDLE_TIMEOUT	300
#define SINK_ADDR_MAX		1024

struct sink_pattern {
	const char	*prefix;
	size_t		 len;
	int		 code;
};

struct sink_opts {
	struct in_addr		 listen;
	int			 port;
	const char		*dir;
	int			 xverp;
	int			 pipelining;
	struct sink_pattern	 rcpt[32];
	size_t			 nrcpt;
	struct sink_pattern	 data[32];
	size_t			 ndata;
	const char		*count_file;
	int			 delay_data;	/* seconds, or 0 */
	long			 delay_count;	/* 0: every transaction */
};

struct sink_counts {
	unsigned long	 connections;
	unsigned long	 messages;	/* transactions answered 250 */
	unsigned long	 deliveries;	/* recipient copies */
	unsigned long	 bytes;		/* message bytes, once per message */
	unsigned long	 rcpt_refused;
	unsigned long	 data_refused;
};

struct sink {
	struct event_base	*base;
	struct evconnlistener	*listener;
	struct event		*sig_term, *sig_int, *sig_usr1, *resume;
	struct sink_opts	 opts;
	struct sink_counts	 n;
	FILE			*index;
	unsigned long		 seq;
	long			 delayed;	/* transactions held so far */
	int			 keep_rcpts;
	char			 ehlo[512];
	struct sink_session	*sessions;
};

enum sink_state {
	SINK_CMD,
	SINK_DATA,
	SINK_CLOSING		/* reply queued, then close */
};

struct sink_session {
	struct sink		*sink;
	struct bufferevent	*bev;
	struct sink_session	*prev, *next;
	enum sink_state		 state;
	int			 has_mail;
	int			 xverp;
	char			*mail_from;
	char			**rcpts;
	size_t			 nrcpts, cap;	/* rcpts kept if keep_rcpts */
	size_t			 accepted;
	int			 data_code;	/* scripted dot reply, or 0 */
	int			 bol;		/* DATA: at a line start */
	size_t			 msg_size;
	struct evbuffer		*msg;		/* only with --dir */
	struct evbuffer		*out;		/* replies not yet sent */
	struct event		*delay;		/* holds out's replies */
};

static void	sink_session_free(struct sink_session *);
static void	sink_flush(struct sink_session *);
static void	sink_readcb(struct bufferevent *, void *);

static void
sink_enter(struct sink_session *s, enum sink_state state)
{
	s->state = state;
	if (state == SINK_CLOSING)
		bufferevent_disable(s->bev, EV_READ);
}

static void
sink_reply(struct sink_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
sink_reply(struct sink_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(s->out, fmt, ap);
	va_end(ap);
}

static void
sink_txn_reset(struct sink_session *s)
{
	size_t i;

	for (i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	s->nrcpts = 0;
	s->accepted = 0;
	s->has_mail = 0;
	s->xverp = 0;
	s->data_code = 0;
	free(s->mail_from);
	s->mail_from = NULL;
	if (s->msg != NULL)
		evbuffer_drain(s->msg, evbuffer_get_length(s->msg));
	s->msg_size = 0;
}

/* A scripted code for this address's local part, or 0. */
static int
sink_pattern_code(const struct sink_pattern *p, size_t n, const char *addr)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strncasecmp(addr, p[i].prefix, p[i].len) == 0)
			return p[i].code;
	return 0;
}

/* "<addr>" after "MAIL FROM:" or "RCPT TO:"; the rest in *params. */
static int
sink_path(char *arg, char **addr, char **params)
{
	char *end;

	while (*arg == ' ')
		arg++;
	if (*arg != '<' || (end = strchr(arg, '>')) == NULL)
		return -1;
	*end = '\0';
	if (end - arg - 1 > SINK_ADDR_MAX)
		return -1;
	*addr = arg + 1;
	*params = end + 1;
	return 0;
}

/* Bytes fit for one field of index.tsv. */
static void
sink_tsv_field(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

static int
sink_mail_params(struct sink_session *s, char *params)
{
	char *tok, *save = NULL;

	for (tok = strtok_r(params, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		if (strcasecmp(tok, "XVERP") == 0 && s->sink->opts.xverp)
			s->xverp = 1;
		else if (strncasecmp(tok, "SIZE=", 5) == 0) {
			if (strtoul(tok + 5, NULL, 10) > SINK_SIZE_MAX) {
				sink_reply(s, "552 5.3.4 Message size exceeds "
				    "fixed limit\r\n");
				return -1;
			}
		} else if (strncasecmp(tok, "BODY=", 5) != 0) {
			sink_reply(s, "555 5.5.4 Unsupported option: %s\r\n",
			    tok);
			return -1;
		}
	}
	return 0;
}

static void
sink_cmd_mail(struct sink_session *s, char *arg)
{
	char *addr, *params;

	if (s->has_mail) {
		sink_reply(s, "503 5.5.1 Error: nested MAIL command\r\n");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0 ||
	    sink_path(arg + 5, &addr, &params) < 0) {
		sink_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
		return;
	}
	s->xverp = 0;
	if (sink_mail_params(s, params) < 0)
		return;
	if ((s->mail_from = strdup(addr)) == NULL)
		abort();
	s->has_mail = 1;
	sink_reply(s, "250 2.1.0 Ok\r\n");
}

static void
sink_rcpt_keep(struct sink_session *s, const char *addr)
{
	char **r;

	if (s->nrcpts == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		if ((r = realloc(s->rcpts, s->cap * sizeof(*r))) == NULL)
			abort();
		s->rcpts = r;
	}
	if ((s->rcpts[s->nrcpts++] = strdup(addr)) == NULL)
		abort();
}

static void
sink_cmd_rcpt(struct sink_session *s, char *arg)
{
	struct sink *sink = s->sink;
	char *addr, *params;
	int code;

	if (!s->has_mail) {
		sink_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0 ||
	    sink_path(arg + 3, &addr, &params) < 0 || *addr == '\0') {
		sink_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
		return;
	}
	if (s->accepted >= SINK_RCPTS_MAX) {
		sink_reply(s, "452 4.5.3 Error: too many recipients\r\n");
		return;
	}
	code = sink_pattern_code(sink->opts.rcpt, sink->opts.nrcpt, addr);
	if (code != 0 && code / 100 != 2) {
		sink->n.rcpt_refused++;
		sink_reply(s, "%d %d.0.0 <%s>: scripted by " SINK_NAME "\r\n",
		    code, code / 100, addr);
		if (code == 421)
			sink_enter(s, SINK_CLOSING);
		return;
	}
	if (s->data_code == 0)
		s->data_code = sink_pattern_code(sink->opts.data,
		    sink->opts.ndata, addr);
	if (sink->keep_rcpts)
		sink_rcpt_keep(s, addr);
	s->accepted++;
	sink_reply(s, "250 2.1.5 Ok\r\n");
}

static void
sink_cmd_data(struct sink_session *s)
{
	if (!s->has_mail)
		sink_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
	else if (s->accepted == 0)
		sink_reply(s, "554 5.5.1 Error: no valid recipients\r\n");
	else {
		sink_reply(s, "354 End data with <CR><LF>.<CR><LF>\r\n");
		s->bol = 1;
		s->msg_size = 0;
		sink_enter(s, SINK_DATA);
	}
}

static int
sink_verb_is(const char *line, const char *verb)
{
	size_t n = strlen(verb);

	return strncasecmp(line, verb, n) == 0 &&
	    (line[n] == '\0' || line[n] == ' ');
}

static void
sink_command(struct sink_session *s, char *line)
{
	if (sink_verb_is(line, "EHLO")) {
		sink_txn_reset(s);
		sink_reply(s, "%s", s->sink->ehlo);
	} else if (sink_verb_is(line, "HELO")) {
		sink_txn_reset(s);
		sink_reply(s, "250 " SINK_NAME "\r\n");
	} else if (sink_verb_is(line, "MAIL"))
		sink_cmd_mail(s, line + 5);
	else if (sink_verb_is(line, "RCPT"))
		sink_cmd_rcpt(s, line + 5);
	else if (sink_verb_is(line, "DATA"))
		sink_cmd_data(s);
	else if (sink_verb_is(line, "RSET")) {
		sink_txn_reset(s);
		sink_reply(s, "250 2.0.0 Ok\r\n");
	} else if (sink_verb_is(line, "NOOP"))
		sink_reply(s, "250 2.0.0 Ok\r\n");
	else if (sink_verb_is(line, "QUIT")) {
		sink_reply(s, "221 2.0.0 Bye\r\n");
		sink_enter(s, SINK_CLOSING);
	} else
		sink_reply(s, "502 5.5.2 Error: command not recognized\r\n");
}

/* Deliveries. */

static int
sink_write_file(const char *path, const char *p, size_t n)
{
	ssize_t w;
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
		return -1;
	while (n > 0) {
		if ((w = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return close(fd);
}

/* One file per copy: the first is written, the others are links to it,
 * which keeps a 1000-recipient message cheap to record. */
static int
sink_store(struct sink_session *s)
{
	struct sink *sink = s->sink;
	size_t len = evbuffer_get_length(s->msg), i;
	const char *p = (const char *)evbuffer_pullup(s->msg, -1);
	char first[4096], path[4096], verp[2048];
	const char *from;

	for (i = 0; i < s->nrcpts; i++) {
		snprintf(path, sizeof(path), "%s/%06lu.eml", sink->opts.dir,
		    sink->seq + 1);
		if ((i == 0 || link(first, path) < 0) &&
		    sink_write_file(path, len ? p : "", len) < 0) {
			fprintf(stderr, SINK_NAME ": %s: %s\n", path,
			    strerror(errno));
			return -1;
		}
		if (i == 0)
			snprintf(first, sizeof(first), "%s", path);
		from = s->mail_from;
		if (s->xverp && verp_encode(s->mail_from, s->rcpts[i], verp,
		    sizeof(verp)) > 0)
			from = verp;
		fprintf(sink->index, "%lu\t", ++sink->seq);
		sink_tsv_field(sink->index, from);
		fputc('\t', sink->index);
		sink_tsv_field(sink->index, s->rcpts[i]);
		fprintf(sink->index, "\t%06lu.eml\t%zu\n", sink->seq, len);
	}
	if (fflush(sink->index) != 0)
		return -1;
	return 0;
}

/* --delay-data: keep this reply, and stop reading, until the timer. */
static void
sink_hold(struct sink_session *s)
{
	struct sink *sink = s->sink;
	struct timeval tv = { sink->opts.delay_data, 0 };

	if (sink->opts.delay_data == 0 || (sink->opts.delay_count > 0 &&
	    sink->delayed >= sink->opts.delay_count))
		return;
	sink->delayed++;
	bufferevent_disable(s->bev, EV_READ);
	evtimer_add(s->delay, &tv);
}

static int
sink_holding(const struct sink_session *s)
{
	return evtimer_pending(s->delay, NULL);
}

/* The held reply goes out; what the client sent meanwhile is read. */
static void
sink_release(evutil_socket_t fd, short what, void *arg)
{
	struct sink_session *s = arg;

	(void)fd;
	(void)what;
	bufferevent_enable(s->bev, EV_READ);
	sink_readcb(s->bev, s);
}

static void
sink_message_end(struct sink_session *s)
{
	struct sink *sink = s->sink;
	int code = s->data_code;

	sink_enter(s, SINK_CMD);
	if (code != 0 && code / 100 != 2) {
		sink->n.data_refused++;
		sink_reply(s, "%d %d.0.0 scripted by " SINK_NAME "\r\n", code,
		    code / 100);
		if (code == 421)
			sink_enter(s, SINK_CLOSING);
	} else if (s->msg_size > SINK_SIZE_MAX)
		sink_reply(s, "552 5.3.4 Message size exceeds fixed limit\r\n");
	else if (sink->opts.dir != NULL && sink_store(s) < 0)
		sink_reply(s, "451 4.3.0 Error: cannot store\r\n");
	else {
		if (sink->opts.dir == NULL)
			sink->seq += s->accepted;
		sink->n.messages++;
		sink->n.deliveries += s->accepted;
		sink->n.bytes += s->msg_size;
		sink_reply(s, "250 2.0.0 Ok: queued as %lu\r\n", sink->seq);
		sink_hold(s);
	}
	sink_txn_reset(s);
}

static void
sink_data_add(struct sink_session *s, const char *p, size_t n)
{
	s->msg_size += n;
	if (s->msg != NULL && s->msg_size <= SINK_SIZE_MAX)
		evbuffer_add(s->msg, p, n);
}

/*
 * DATA bytes in p[0..len): returns how many were used.  Runs between
 * line starts that hold a '.' are passed on whole; a '.' at a line start
 * is either the end or a stuffed dot, which is dropped.
 */
static size_t
sink_data(struct sink_session *s, const char *p, size_t len)
{
	size_t off = 0, run = 0;
	const char *nl;

	while (off < len) {
		if (s->bol && p[off] == '.') {
			if (len - off < 2 || (p[off + 1] == '\r' &&
			    len - off < 3))
				break;		/* end or not: wait */
			sink_data_add(s, p + run, off - run);
			if (p[off + 1] == '\n' ||
			    (p[off + 1] == '\r' && p[off + 2] == '\n')) {
				off += p[off + 1] == '\n' ? 2 : 3;
				sink_message_end(s);
				return off;
			}
			run = ++off;
		}
		s->bol = 0;
		if ((nl = memchr(p + off, '\n', len - off)) == NULL) {
			off = len;
			break;
		}
		off = (size_t)(nl - p) + 1;
		s->bol = 1;
	}
	sink_data_add(s, p + run, off - run);
	return off;
}

/* Command lines in p[0..len): returns how many bytes were used, or -1
 * after a line too long. */
static long
sink_commands(struct sink_session *s, char *p, size_t len)
{
	size_t off = 0, n;
	char *nl;

	while (off < len && s->state == SINK_CMD) {
		if ((nl = memchr(p + off, '\n', len - off)) == NULL) {
			if (len - off <= SINK_LINE_MAX)
				break;
			sink_reply(s, "500 5.5.0 Error: line too long\r\n");
			sink_enter(s, SINK_CLOSING);
			return -1;
		}
		n = (size_t)(nl - (p + off));
		if (n > 0 && p[off + n - 1] == '\r')
			n--;
		p[off + n] = '\0';
		sink_command(s, p + off);
		off = (size_t)(nl - p) + 1;
	}
	return (long)off;
}

/*
 * Send the replies of one read at once.  Writing here rather than from a
 * write event saves the two epoll_ctl calls and the extra wake-up that a
 * bufferevent spends on every reply.  Replies wait in s->out, not in the
 * bufferevent's output, which only the bufferevent may drain; that one
 * gets what the socket did not take, and its write event finishes it.
 */
static void
sink_flush(struct sink_session *s)
{
	struct evbuffer *pending = bufferevent_get_output(s->bev);

	if (sink_holding(s))
		return;
	if (evbuffer_get_length(pending) == 0 &&
	    evbuffer_get_length(s->out) > 0 &&
	    evbuffer_write(s->out, bufferevent_getfd(s->bev)) < 0 &&
	    errno != EAGAIN && errno != EINTR) {
		sink_session_free(s);
		return;
	}
	if (evbuffer_get_length(s->out) > 0) {
		evbuffer_add_buffer(pending, s->out);
		bufferevent_enable(s->bev, EV_WRITE);
	} else if (evbuffer_get_length(pending) == 0 &&
	    s->state == SINK_CLOSING)
		sink_session_free(s);
}

static void
sink_readcb(struct bufferevent *bev, void *arg)
{
	struct sink_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), off = 0, used;
	char *p = (char *)evbuffer_pullup(in, -1);
	long r;

	while (off < len && s->state != SINK_CLOSING && !sink_holding(s)) {
		if (s->state == SINK_DATA)
			used = sink_data(s, p + off, len - off);
		else if ((r = sink_commands(s, p + off, len - off)) < 0)
			break;
		else
			used = (size_t)r;
		if (used == 0)
			break;
		off += used;
	}
	evbuffer_drain(in, s->state == SINK_CLOSING ? len : off);
	sink_flush(s);
}

/* Output drained after a short write: back to writing directly. */
static void
sink_writecb(struct bufferevent *bev, void *arg)
{
	struct sink_session *s = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	bufferevent_disable(bev, EV_WRITE);
	if (s->state == SINK_CLOSING)
		sink_session_free(s);
}

static void
sink_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct sink_session *s = arg;

	(void)bev;
	if ((what & BEV_EVENT_TIMEOUT) && s->state != SINK_CLOSING) {
		sink_reply(s, "421 4.4.2 " SINK_NAME " Error: timeout\r\n");
		sink_enter(s, SINK_CLOSING);
		sink_flush(s);
		return;
	}
	sink_session_free(s);
}

static void
sink_session_free(struct sink_session *s)
{
	sink_txn_reset(s);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		s->sink->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	bufferevent_free(s->bev);
	if (s->delay != NULL)
		event_free(s->delay);
	if (s->msg != NULL)
		evbuffer_free(s->msg);
	evbuffer_free(s->out);
	free(s->rcpts);
	free(s);
}

static void
sink_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct sink *sink = arg;
	struct sink_session *s;
	struct timeval idle = { SINK_IDLE_TIMEOUT, 0 };
	int one = 1;

	(void)l;
	(void)sa;
	(void)salen;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		return;
	}
	s->sink = sink;
	s->bev = bufferevent_socket_new(sink->base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->out = evbuffer_new();
	s->delay = evtimer_new(sink->base, sink_release, s);
	if (s->bev == NULL || s->out == NULL || s->delay == NULL) {
		if (s->bev != NULL)
			bufferevent_free(s->bev);
		else
			close(fd);
		if (s->out != NULL)
			evbuffer_free(s->out);
		if (s->delay != NULL)
			event_free(s->delay);
		free(s);
		return;
	}
	if (sink->opts.dir != NULL)
		s->msg = evbuffer_new();
	s->next = sink->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	sink->sessions = s;
	sink->n.connections++;
	bufferevent_setcb(s->bev, sink_readcb, sink_writecb, sink_eventcb, s);
	bufferevent_set_timeouts(s->bev, &idle, &idle);
	bufferevent_enable(s->bev, EV_READ);
	sink_reply(s, "220 " SINK_NAME " ESMTP\r\n");
	sink_flush(s);
}

/* Out of descriptors: pause accepting instead of spinning on EMFILE. */
static void
sink_accept_error(struct evconnlistener *l, void *arg)
{
	struct sink *sink = arg;
	struct timeval tv = { 0, 100000 };

	fprintf(stderr, SINK_NAME ": accept: %s\n", strerror(errno));
	evconnlistener_disable(l);
	evtimer_add(sink->resume, &tv);
}

static void
sink_resume(evutil_socket_t fd, short what, void *arg)
{
	struct sink *sink = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(sink->listener);
}

static void
sink_write_counts(const struct sink *sink)
{
	char tmp[4096];
	FILE *f;

	if (sink->opts.count_file == NULL)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", sink->opts.count_file);
	if ((f = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, SINK_NAME ": %s: %s\n", tmp, strerror(errno));
		return;
	}
	fprintf(f, "connections=%lu\nmessages=%lu\ndeliveries=%lu\n"
	    "bytes=%lu\nrcpt_refused=%lu\ndata_refused=%lu\n",
	    sink->n.connections, sink->n.messages, sink->n.deliveries,
	    sink->n.bytes, sink->n.rcpt_refused, sink->n.data_refused);
	if (fclose(f) != 0 || rename(tmp, sink->opts.count_file) != 0)
		fprintf(stderr, SINK_NAME ": %s: %s\n", sink->opts.count_file,
		    strerror(errno));
}

static void
sink_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sink *sink = arg;

	(void)what;
	if (sig == SIGUSR1)
		sink_write_counts(sink);
	else
		event_base_loopbreak(sink->base);
}

/* Set-up. */

static void
sink_usage(void)
{
	fprintf(stderr, "usage: " SINK_NAME " [--listen ADDR] [--port N] "
	    "[--dir DIR] [--xverp]\n"
	    "       [--no-pipelining] [--reply-rcpt PATTERN=CODE]...\n"
	    "       [--reply-data PATTERN=CODE]... [--count-file FILE]\n"
	    "       [--delay-data SECONDS [--delay-count N]]\n");
	exit(2);
}

static void
sink_add_pattern(struct sink_pattern *p, size_t *n, char *arg)
{
	char *eq = strrchr(arg, '='), *end;
	long code;

	if (eq == NULL || *n >= 32)
		sink_usage();
	*eq = '\0';
	code = strtol(eq + 1, &end, 10);
	if (*end != '\0' || code < 200 || code > 599)
		sink_usage();
	p[*n].prefix = arg;
	p[*n].len = strlen(arg);
	p[*n].code = (int)code;
	(*n)++;
}

static void
sink_parse_args(struct sink_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "dir", required_argument, NULL, 'd' },
		{ "xverp", no_argument, NULL, 'x' },
		{ "no-pipelining", no_argument, NULL, 'n' },
		{ "reply-rcpt", required_argument, NULL, 'r' },
		{ "reply-data", required_argument, NULL, 'D' },
		{ "count-file", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "delay-data", required_argument, NULL, 'w' },
		{ "delay-count", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 }
	};
	char *end;
	int c;

	o->pipelining = 1;
	o->listen.s_addr = htonl(INADDR_LOOPBACK);
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o->port = (int)strtol(optarg, &end, 10);
			if (*end != '\0' || o->port < 0 || o->port > 65535)
				sink_usage();
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'x':
			o->xverp = 1;
			break;
		case 'n':
			o->pipelining = 0;
			break;
		case 'r':
			sink_add_pattern(o->rcpt, &o->nrcpt, optarg);
			break;
		case 'D':
			sink_add_pattern(o->data, &o->ndata, optarg);
			break;
		case 'c':
			o->count_file = optarg;
			break;
		case 'l':
			if (inet_pton(AF_INET, optarg, &o->listen) != 1)
				sink_usage();
			break;
		case 'w':
			o->delay_data = (int)strtol(optarg, &end, 10);
			if (*end != '\0' || o->delay_data < 0 ||
			    o->delay_data > 3600)
				sink_usage();
			break;
		case 'C':
			o->delay_count = strtol(optarg, &end, 10);
			if (*end != '\0' || o->delay_count < 0)
				sink_usage();
			break;
		default:
			sink_usage();
		}
	}
	if (optind != argc)
		sink_usage();
}

static void
sink_build_ehlo(struct sink *sink)
{
	snprintf(sink->ehlo, sizeof(sink->ehlo), "250-" SINK_NAME "\r\n"
	    "%s250-SIZE %lu\r\n250-8BITMIME\r\n%s250 ENHANCEDSTATUSCODES\r\n",
	    sink->opts.pipelining ? "250-PIPELINING\r\n" : "",
	    SINK_SIZE_MAX, sink->opts.xverp ? "250-XVERP\r\n" : "");
}

/* Continue the numbering of an earlier run in the same directory. */
static int
sink_open_dir(struct sink *sink)
{
	char path[4096];
	FILE *f;
	int c;

	if (mkdir(sink->opts.dir, 0755) < 0 && errno != EEXIST)
		return -1;
	snprintf(path, sizeof(path), "%s/index.tsv", sink->opts.dir);
	if ((f = fopen(path, "r")) != NULL) {
		while ((c = getc(f)) != EOF)
			if (c == '\n')
				sink->seq++;
		fclose(f);
	}
	sink->index = fopen(path, "a");
	return sink->index != NULL ? 0 : -1;
}

static int
sink_listen(struct sink *sink)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr = sink->opts.listen;
	sin.sin_port = htons((unsigned short)sink->opts.port);
	sink->listener = evconnlistener_new_bind(sink->base, sink_accept,
	    sink, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	    LEV_OPT_CLOSE_ON_EXEC, 1024, (struct sockaddr *)&sin, sizeof(sin));
	if (sink->listener == NULL)
		return -1;
	evconnlistener_set_error_cb(sink->listener, sink_accept_error);
	getsockname(evconnlistener_get_fd(sink->listener),
	    (struct sockaddr *)&sin, &len);
	printf("port=%d\n", ntohs(sin.sin_port));
	fflush(stdout);
	return 0;
}

/* Many benchmark connections need more than the usual 1024 files. */
static void
sink_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
sink_free(struct sink *sink)
{
	while (sink->sessions != NULL)
		sink_session_free(sink->sessions);
	if (sink->listener != NULL)
		evconnlistener_free(sink->listener);
	event_free(sink->sig_term);
	event_free(sink->sig_int);
	event_free(sink->sig_usr1);
	event_free(sink->resume);
	if (sink->index != NULL)
		fclose(sink->index);
	event_base_free(sink->base);
}

int
main(int argc, char **argv)
{
	struct sink sink;

	memset(&sink, 0, sizeof(sink));
	sink_parse_args(&sink.opts, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	sink_raise_nofile();
	sink.keep_rcpts = sink.opts.dir != NULL;
	sink_build_ehlo(&sink);
	if (sink.opts.dir != NULL && sink_open_dir(&sink) < 0) {
		fprintf(stderr, SINK_NAME ": %s: %s\n", sink.opts.dir,
		    strerror(errno));
		return 1;
	}
	sink.base = event_base_new();
	sink.sig_term = evsignal_new(sink.base, SIGTERM, sink_signal, &sink);
	sink.sig_int = evsignal_new(sink.base, SIGINT, sink_signal, &sink);
	sink.sig_usr1 = evsignal_new(sink.base, SIGUSR1, sink_signal, &sink);
	sink.resume = evtimer_new(sink.base, sink_resume, &sink);
	evsignal_add(sink.sig_term, NULL);
	evsignal_add(sink.sig_int, NULL);
	evsignal_add(sink.sig_usr1, NULL);
	if (sink_listen(&sink) < 0) {
		fprintf(stderr, SINK_NAME ": listen on %s:%d: %s\n",
		    inet_ntoa(sink.opts.listen), sink.opts.port,
		    strerror(errno));
		return 1;
	}
	event_base_dispatch(sink.base);
	sink_write_counts(&sink);
	sink_free(&sink);
	return 0;
}
