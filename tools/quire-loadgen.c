/*
 * quire-loadgen: the benchmark's load generator and its timestamping SMTP
 * sink (tools/bench drives them; see tools/bench.py).
 *
 *   quire-loadgen sink  [--port N] [--events FILE]
 *   quire-loadgen lmtp  --port N --to ADDR --count N [--conns C]
 *                       [--from ADDR] [--size BYTES] [--tag TAG]
 *                       [--serial] [--gap-ms MS] [--events FILE --copies K]
 *                       [--stall-ms MS] [--timeout S] [--log FILE]
 *   quire-loadgen smtp  --port N [--seconds S] [--conns C] [--rcpts R]
 *                       [--size BYTES]
 *   quire-loadgen greet --port N [--timeout S] -- COMMAND [ARG]...
 *
 * sink: an SMTP server on 127.0.0.1 that keeps nothing but, for every
 * transaction it accepts, one line "SECONDS.NANOS RCPTS MESSAGE-ID" in
 * FILE, written when the final dot arrived (before the 250 goes out).
 * It prints "port=N" once listening; SIGTERM ends it.
 *
 * lmtp: posts COUNT messages of about BYTES to ADDR over C pipelined
 * LMTP connections, back to back.  Each message has the Message-ID
 * <SEQ.TAG@loadgen.invalid>.  With --events and --copies it then follows
 * the sink's FILE (inotify, no polling) until every post has K copies
 * there.  --serial sends one post at a time and waits for its copies
 * (and GAP more milliseconds) before the next: the latency run.  With
 * --stall-ms a post whose copies are not all in that long after its 250
 * counts as stalled: a serial run goes on with the next post (a late
 * copy still counts), and any run stops waiting once nothing has moved
 * for that long after the last post.  TIMEOUT bounds the whole run.  The
 * summary is key=value lines on stdout; --log gets one line a post.
 *
 * smtp: a fast SMTP client for the sink's own rate: C connections send
 * messages with R recipients each (one pipelined group MAIL, RCPTs, DATA
 * when the server offers PIPELINING) for S seconds.
 *
 * greet: forks and execs COMMAND, then connects to 127.0.0.1:N every
 * 0.2 ms until a 220 greeting arrives; prints the time from just before
 * the exec, then ends COMMAND with SIGTERM.
 *
 * All times are CLOCK_REALTIME, so the sink's and the client's stamps
 * compare across processes on one host.
 */
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LG_NAME		"quire-loadgen"
#define LG_LINE_MAX	8192
#define LG_HDR_MAX	16384
#define LG_EVENTS_MAX	256

static volatile sig_atomic_t lg_stop;

static void
lg_die(const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, LG_NAME ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int64_t
lg_now(void)
{
	struct timespec	 t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static double
lg_ms(int64_t ns)
{
	return (double)ns / 1e6;
}

static void
lg_on_signal(int sig)
{
	(void)sig;
	lg_stop = 1;
}

static void
lg_raise_nofile(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Byte buffers. */

struct lg_buf {
	char	*p;
	size_t	 len, cap, off;		/* off: consumed from the front */
};

static void
lg_buf_reserve(struct lg_buf *b, size_t more)
{
	size_t	 cap;

	if (b->off > 0 && (b->off == b->len || b->off > b->cap / 2)) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + more <= b->cap)
		return;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	if ((b->p = realloc(b->p, cap)) == NULL)
		lg_die("out of memory");
	b->cap = cap;
}

static void
lg_buf_add(struct lg_buf *b, const void *p, size_t n)
{
	lg_buf_reserve(b, n + 1);
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
lg_buf_addf(struct lg_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
lg_buf_addf(struct lg_buf *b, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	lg_buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static size_t
lg_buf_avail(const struct lg_buf *b)
{
	return b->len - b->off;
}

static char *
lg_buf_data(const struct lg_buf *b)
{
	return b->p + b->off;
}

static void
lg_buf_free(struct lg_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Sockets and the event loop. */

static int	 lg_epfd = -1;

static void
lg_nonblock(int fd)
{
	int	 fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		lg_die("fcntl: %s", strerror(errno));
}

static void
lg_nodelay(int fd)
{
	int	 one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
lg_loopback(struct sockaddr_in *sin, int port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons((unsigned short)port);
}

static void
lg_watch(int op, int fd, uint32_t events, void *ptr)
{
	struct epoll_event	 ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = ptr;
	if (epoll_ctl(lg_epfd, op, fd, &ev) == -1)
		lg_die("epoll_ctl: %s", strerror(errno));
}

/*
 * A connection: what came in not yet used, what is to go out, and
 * whether EPOLLOUT is wanted.  Writes are tried at once; the rest waits
 * for the socket.
 */
struct lg_conn {
	int		 fd;
	int		 kind;		/* which handler owns it */
	int		 want_out;
	int		 dead;
	struct lg_buf	 in, out;
};

enum { LG_KIND_LISTEN = 1, LG_KIND_SINK, LG_KIND_CLIENT, LG_KIND_INOTIFY };

static void
lg_conn_flush(struct lg_conn *c)
{
	ssize_t	 n;
	int	 want;

	while (lg_buf_avail(&c->out) > 0) {
		n = send(c->fd, lg_buf_data(&c->out), lg_buf_avail(&c->out),
		    MSG_NOSIGNAL);
		if (n > 0) {
			c->out.off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		c->dead = 1;
		return;
	}
	if (lg_buf_avail(&c->out) == 0)
		c->out.off = c->out.len = 0;
	want = lg_buf_avail(&c->out) > 0;
	if (want != c->want_out) {
		c->want_out = want;
		lg_watch(EPOLL_CTL_MOD, c->fd, EPOLLIN | (want ? EPOLLOUT : 0),
		    c);
	}
}

/* Read what is there; 0 on EOF or error. */
static int
lg_conn_read(struct lg_conn *c)
{
	ssize_t	 n;

	for (;;) {
		lg_buf_reserve(&c->in, 65536);
		n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1,
		    0);
		if (n > 0) {
			c->in.len += (size_t)n;
			c->in.p[c->in.len] = '\0';
			if ((size_t)n < c->in.cap - c->in.len - 1)
				return 1;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		return 0;
	}
}

/* The next complete line of c->in, NUL-terminated without CRLF. */
static char *
lg_conn_line(struct lg_conn *c)
{
	char	*start = lg_buf_data(&c->in), *nl;
	size_t	 n;

	nl = memchr(start, '\n', lg_buf_avail(&c->in));
	if (nl == NULL)
		return NULL;
	n = (size_t)(nl - start);
	c->in.off += n + 1;
	if (n > 0 && start[n - 1] == '\r')
		n--;
	start[n] = '\0';
	return start;
}

/* The message a client sends. */

static const char *const lg_words[] = {
	"list", "engine", "queue", "commit", "member", "digest", "archive",
	"moderation", "bounce", "delivery", "header", "subject", "reply",
	"thread", "posting", "postgres", "notify", "listen", "stage", "row",
	"lease", "retry", "batch", "recipient", "domain", "owner", "relay",
	"the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on",
	"with", "as", "was", "at", "by", "this", "from", "or", "an", "be",
};

static void
lg_message(struct lg_buf *b, unsigned long seq, const char *tag,
    const char *from, const char *to, size_t size)
{
	uint64_t	 rnd = 0x9e3779b97f4a7c15ULL ^ (seq * 0xbf58476d1ce4e5b9ULL);
	size_t		 start = b->len, line;
	char		 date[64];
	time_t		 now = time(NULL);
	struct tm	 tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	lg_buf_addf(b, "From: Bench Poster <%s>\r\nTo: %s\r\n"
	    "Subject: bench post %lu\r\nDate: %s\r\n"
	    "Message-ID: <%lu.%s@loadgen.invalid>\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
	    from, to, seq, date, seq, tag);
	/* Words, so the body is text (compressible as mail is), different
	 * in every message, and no line starts with a dot. */
	while (b->len - start < size) {
		line = 0;
		while (line < 66) {
			const char *w;

			rnd ^= rnd << 13;
			rnd ^= rnd >> 7;
			rnd ^= rnd << 17;
			w = lg_words[rnd % (sizeof(lg_words) /
			    sizeof(*lg_words))];
			lg_buf_addf(b, "%s%s", line ? " " : "", w);
			line += strlen(w) + (line ? 1 : 0);
		}
		lg_buf_add(b, "\r\n", 2);
	}
	lg_buf_add(b, ".\r\n", 3);
}

/* Replies: a complete reply is a line whose fourth byte is a space (or
 * that has only three digits).  Returns its code, 0 if incomplete. */
static int
lg_reply(struct lg_conn *c, char *text, size_t len)
{
	char	*line;

	while ((line = lg_conn_line(c)) != NULL) {
		if (strlen(line) < 3)
			return 999;
		if (line[3] == '-')
			continue;
		if (text != NULL)
			snprintf(text, len, "%s", line);
		return atoi(line) > 0 ? atoi(line) : 999;
	}
	return 0;
}

/* ---------------------------------------------------------------- sink */

struct sink_session {
	struct lg_conn	 c;		/* first: the epoll pointer */
	int		 in_data;
	int		 has_mail;
	size_t		 rcpts;
	int		 in_headers;
	struct lg_buf	 hdr;
	struct sink_session *next;
};

struct sink {
	int		 events_fd;
	unsigned long	 connections, messages, deliveries, seq;
	struct sink_session *sessions;
};

static struct sink	 sink;

static void
sink_reply(struct sink_session *s, const char *text)
{
	lg_buf_add(&s->c.out, text, strlen(text));
}

/* The Message-ID in a header block (unfolded, trimmed), or "-". */
static void
sink_message_id(const char *h, size_t len, char *out, size_t outlen)
{
	size_t	 i = 0, o = 0;

	snprintf(out, outlen, "-");
	while (i < len) {
		if ((i == 0 || h[i - 1] == '\n') && len - i > 11 &&
		    strncasecmp(h + i, "Message-ID:", 11) == 0) {
			i += 11;
			while (i < len) {
				char ch = h[i++];

				if (ch == '\r' || ch == '\n') {
					if (i < len && ch == '\r' &&
					    h[i] == '\n')
						i++;
					if (i < len && (h[i] == ' ' ||
					    h[i] == '\t'))
						continue;
					break;
				}
				if ((ch == ' ' || ch == '\t') && o == 0)
					continue;
				if (ch == ' ' || ch == '\t')
					continue;
				if (o + 1 < outlen)
					out[o++] = ch;
			}
			if (o > 0)
				out[o] = '\0';
			return;
		}
		i++;
	}
}

static void
sink_txn_reset(struct sink_session *s)
{
	s->has_mail = 0;
	s->rcpts = 0;
	s->in_data = 0;
	s->hdr.off = s->hdr.len = 0;
}

static void
sink_message_end(struct sink_session *s)
{
	char	 id[512], line[700];
	int64_t	 t = lg_now();
	int	 n;

	sink.messages++;
	sink.deliveries += s->rcpts;
	sink.seq++;
	if (sink.events_fd >= 0) {
		sink_message_id(s->hdr.p ? s->hdr.p : "", s->hdr.len, id,
		    sizeof(id));
		n = snprintf(line, sizeof(line), "%lld.%09lld %zu %s\n",
		    (long long)(t / 1000000000), (long long)(t % 1000000000),
		    s->rcpts, id);
		if (write(sink.events_fd, line, (size_t)n) != n)
			lg_die("events: %s", strerror(errno));
	}
	lg_buf_addf(&s->c.out, "250 2.0.0 Ok: queued as %lu\r\n", sink.seq);
	sink_txn_reset(s);
}

static void
sink_command(struct sink_session *s, char *line)
{
	if (strncasecmp(line, "EHLO", 4) == 0) {
		sink_txn_reset(s);
		sink_reply(s, "250-" LG_NAME "\r\n250-PIPELINING\r\n"
		    "250-SIZE 104857600\r\n250-8BITMIME\r\n"
		    "250 ENHANCEDSTATUSCODES\r\n");
	} else if (strncasecmp(line, "HELO", 4) == 0) {
		sink_txn_reset(s);
		sink_reply(s, "250 " LG_NAME "\r\n");
	} else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
		sink_txn_reset(s);
		s->has_mail = 1;
		sink_reply(s, "250 2.1.0 Ok\r\n");
	} else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
		if (!s->has_mail)
			sink_reply(s, "503 5.5.1 Error: need MAIL\r\n");
		else {
			s->rcpts++;
			sink_reply(s, "250 2.1.5 Ok\r\n");
		}
	} else if (strncasecmp(line, "DATA", 4) == 0) {
		if (!s->has_mail || s->rcpts == 0)
			sink_reply(s, "554 5.5.1 Error: no valid recipients"
			    "\r\n");
		else {
			s->in_data = 1;
			s->in_headers = 1;
			sink_reply(s, "354 End data with <CR><LF>.<CR><LF>"
			    "\r\n");
		}
	} else if (strncasecmp(line, "RSET", 4) == 0) {
		sink_txn_reset(s);
		sink_reply(s, "250 2.0.0 Ok\r\n");
	} else if (strncasecmp(line, "NOOP", 4) == 0)
		sink_reply(s, "250 2.0.0 Ok\r\n");
	else if (strncasecmp(line, "QUIT", 4) == 0) {
		sink_reply(s, "221 2.0.0 Bye\r\n");
		s->c.dead = 2;		/* after the reply is out */
	} else
		sink_reply(s, "502 5.5.2 Error: command not recognized\r\n");
}

/* DATA: whole lines only; the header block is kept for the Message-ID. */
static int
sink_data(struct sink_session *s)
{
	char	*p = lg_buf_data(&s->c.in), *nl;
	size_t	 avail = lg_buf_avail(&s->c.in), n;

	while ((nl = memchr(p, '\n', avail)) != NULL) {
		n = (size_t)(nl - p) + 1;
		if ((n == 3 && p[0] == '.' && p[1] == '\r') ||
		    (n == 2 && p[0] == '.')) {
			s->c.in.off += n;
			sink_message_end(s);
			return 1;
		}
		if (s->in_headers) {
			if (n <= 2 && (p[0] == '\r' || p[0] == '\n'))
				s->in_headers = 0;
			else if (s->hdr.len + n < LG_HDR_MAX)
				lg_buf_add(&s->hdr, p, n);
		}
		s->c.in.off += n;
		p += n;
		avail -= n;
	}
	return 0;
}

static void
sink_session_input(struct sink_session *s)
{
	char	*line;

	for (;;) {
		if (s->in_data) {
			if (!sink_data(s))
				break;
			continue;
		}
		if ((line = lg_conn_line(&s->c)) == NULL) {
			if (lg_buf_avail(&s->c.in) > LG_LINE_MAX) {
				sink_reply(s, "500 5.5.0 line too long\r\n");
				s->c.dead = 2;
			}
			break;
		}
		sink_command(s, line);
		if (s->c.dead)
			break;
	}
	lg_conn_flush(&s->c);
}

static void
sink_session_free(struct sink_session *s)
{
	struct sink_session **pp;

	for (pp = &sink.sessions; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	epoll_ctl(lg_epfd, EPOLL_CTL_DEL, s->c.fd, NULL);
	close(s->c.fd);
	lg_buf_free(&s->c.in);
	lg_buf_free(&s->c.out);
	lg_buf_free(&s->hdr);
	free(s);
}

static void
sink_accept(struct lg_conn *l)
{
	struct sink_session *s;
	int		 fd;

	while ((fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK |
	    SOCK_CLOEXEC)) >= 0) {
		lg_nodelay(fd);
		if ((s = calloc(1, sizeof(*s))) == NULL)
			lg_die("out of memory");
		s->c.fd = fd;
		s->c.kind = LG_KIND_SINK;
		s->next = sink.sessions;
		sink.sessions = s;
		sink.connections++;
		lg_watch(EPOLL_CTL_ADD, fd, EPOLLIN, s);
		sink_reply(s, "220 " LG_NAME " ESMTP\r\n");
		lg_conn_flush(&s->c);
	}
}

static int
lg_listen(int port, int *bound)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	int			 fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		lg_die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	lg_loopback(&sin, port);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(fd, 1024) == -1)
		lg_die("listen on 127.0.0.1:%d: %s", port, strerror(errno));
	getsockname(fd, (struct sockaddr *)&sin, &len);
	*bound = ntohs(sin.sin_port);
	return fd;
}

static int
sink_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "events", required_argument, NULL, 'e' },
		{ NULL, 0, NULL, 0 }
	};
	struct epoll_event	 evs[LG_EVENTS_MAX];
	struct lg_conn		 listener;
	const char		*events = NULL;
	int			 port = 0, c, n, i;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'p')
			port = atoi(optarg);
		else if (c == 'e')
			events = optarg;
		else
			return 2;
	}
	sink.events_fd = -1;
	if (events != NULL && (sink.events_fd = open(events, O_WRONLY |
	    O_CREAT | O_APPEND | O_CLOEXEC, 0644)) == -1)
		lg_die("%s: %s", events, strerror(errno));
	memset(&listener, 0, sizeof(listener));
	listener.kind = LG_KIND_LISTEN;
	listener.fd = lg_listen(port, &port);
	lg_epfd = epoll_create1(EPOLL_CLOEXEC);
	lg_watch(EPOLL_CTL_ADD, listener.fd, EPOLLIN, &listener);
	printf("port=%d\n", port);
	fflush(stdout);
	while (!lg_stop) {
		n = epoll_wait(lg_epfd, evs, LG_EVENTS_MAX, -1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			lg_die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++) {
			struct lg_conn *cn = evs[i].data.ptr;
			struct sink_session *s = (struct sink_session *)cn;

			if (cn->kind == LG_KIND_LISTEN) {
				sink_accept(cn);
				continue;
			}
			if (evs[i].events & EPOLLOUT)
				lg_conn_flush(cn);
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			    && !cn->dead) {
				if (!lg_conn_read(cn))
					cn->dead = 1;
				else
					sink_session_input(s);
			}
			if (cn->dead == 1 || (cn->dead == 2 &&
			    lg_buf_avail(&cn->out) == 0))
				sink_session_free(s);
		}
	}
	fprintf(stderr, LG_NAME " sink: connections=%lu messages=%lu "
	    "deliveries=%lu\n", sink.connections, sink.messages,
	    sink.deliveries);
	return 0;
}

/* ------------------------------------------------------------- clients */

static int
lg_connect(int port)
{
	struct sockaddr_in	 sin;
	int			 fd;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		lg_die("socket: %s", strerror(errno));
	lg_loopback(&sin, port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		return -1;
	}
	lg_nodelay(fd);
	return fd;
}

static double
lg_pct(double *v, size_t n, double p)
{
	size_t	 k;

	if (n == 0)
		return -1;
	k = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

static int
lg_cmp_double(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
lg_print_dist(const char *name, double *v, size_t n)
{
	qsort(v, n, sizeof(*v), lg_cmp_double);
	printf("%s_n=%zu\n", name, n);
	if (n == 0)
		return;
	printf("%s_p50_ms=%.3f\n%s_p90_ms=%.3f\n%s_p99_ms=%.3f\n"
	    "%s_max_ms=%.3f\n", name, lg_pct(v, n, 50), name, lg_pct(v, n, 90),
	    name, lg_pct(v, n, 99), name, v[n - 1]);
}

/* ---------------------------------------------------------------- lmtp */

enum lc_state {
	LC_GREETING,		/* waiting for 220 */
	LC_LHLO,		/* waiting for the LHLO reply */
	LC_READY,
	LC_MAIL,		/* MAIL, RCPT, DATA sent; 3 replies due */
	LC_DOT,			/* message sent; 1 reply due */
	LC_DONE
};

struct lmtp_client {
	struct lg_conn	 c;
	enum lc_state	 state;
	int		 pipelining;
	int		 replies;	/* of the current group */
	long		 seq;		/* the post in flight, or -1 */
};

struct lmtp_post {
	int64_t		 t_start, t_dot, t_accept, t_first, t_last;
	int		 code;
	unsigned	 copies;
	int		 stalled;
};

struct lmtp_run {
	int		 port;
	const char	*to, *from, *tag;
	long		 count;
	int		 conns;
	size_t		 size;
	int		 serial;
	int		 gap_ms;
	unsigned	 copies;	/* wanted per post, 0: do not wait */
	double		 timeout;
	int		 stall_ms;
	long		 stalled;
	int64_t		 t_progress;	/* last 250 or copy */
	struct lmtp_post *posts;
	long		 next;		/* next post to send */
	long		 accepted, failed, complete;
	long		 waiting;	/* serial: the post awaited, or -1 */
	int64_t		 resume_at;	/* serial: gap until then */
	unsigned long	 total_copies, foreign;
	int		 ev_fd;		/* the events file */
	off_t		 ev_off;
	struct lg_buf	 ev_buf;
	struct lg_conn	 ino;
	char		 lasterr[256];
	struct lmtp_client *clients;
};

static struct lmtp_run	 run;

static void
lmtp_send_post(struct lmtp_client *cl)
{
	struct lmtp_post *p;

	cl->seq = run.next++;
	if (run.serial)
		run.waiting = cl->seq;	/* until its copies are in */
	p = &run.posts[cl->seq];
	p->t_start = lg_now();
	cl->replies = 0;
	lg_buf_addf(&cl->c.out, "MAIL FROM:<%s>\r\n", run.from);
	if (cl->pipelining)
		lg_buf_addf(&cl->c.out, "RCPT TO:<%s>\r\nDATA\r\n", run.to);
	cl->state = LC_MAIL;
	lg_conn_flush(&cl->c);
}

static int
lmtp_may_send(void)
{
	if (run.next >= run.count)
		return 0;
	if (!run.serial)
		return 1;
	return run.waiting < 0 && lg_now() >= run.resume_at;
}

static void
lmtp_post_done(long seq)
{
	run.complete++;
	if (run.serial && run.waiting == seq) {
		run.waiting = -1;
		run.resume_at = lg_now() + (int64_t)run.gap_ms * 1000000;
	}
}

static void
lmtp_client_input(struct lmtp_client *cl)
{
	char	 text[256];
	int	 code;

	while ((code = lg_reply(&cl->c, text, sizeof(text))) != 0) {
		switch (cl->state) {
		case LC_GREETING:
			if (code != 220)
				lg_die("LMTP greeting: %s", text);
			lg_buf_addf(&cl->c.out, "LHLO loadgen.invalid\r\n");
			cl->state = LC_LHLO;
			break;
		case LC_LHLO:
			if (code != 250)
				lg_die("LHLO: %s", text);
			cl->state = LC_READY;
			break;
		case LC_MAIL:
			cl->replies++;
			if (!cl->pipelining && cl->replies == 1)
				lg_buf_addf(&cl->c.out, "RCPT TO:<%s>\r\n",
				    run.to);
			else if (!cl->pipelining && cl->replies == 2)
				lg_buf_addf(&cl->c.out, "DATA\r\n");
			if (cl->replies < 3)
				break;
			if (code == 354) {
				struct lmtp_post *p = &run.posts[cl->seq];

				lg_message(&cl->c.out, (unsigned long)cl->seq,
				    run.tag, run.from, run.to, run.size);
				p->t_dot = lg_now();
				cl->state = LC_DOT;
				break;
			}
			snprintf(run.lasterr, sizeof(run.lasterr), "%s", text);
			run.posts[cl->seq].code = code;
			run.failed++;
			lmtp_post_done(cl->seq);
			lg_buf_addf(&cl->c.out, "RSET\r\n");
			cl->state = LC_READY;
			cl->replies = -1;	/* the RSET reply to skip */
			break;
		case LC_DOT: {
			struct lmtp_post *p = &run.posts[cl->seq];

			p->t_accept = lg_now();
			run.t_progress = p->t_accept;
			p->code = code;
			if (code / 100 == 2) {
				run.accepted++;
				if (run.copies == 0 ||
				    p->copies >= run.copies)
					lmtp_post_done(cl->seq);
			} else {
				snprintf(run.lasterr, sizeof(run.lasterr),
				    "%s", text);
				run.failed++;
				lmtp_post_done(cl->seq);
			}
			cl->seq = -1;
			cl->replies = 0;
			cl->state = LC_READY;
			break;
		}
		case LC_READY:
			if (cl->replies == -1) {	/* RSET */
				cl->replies = 0;
				break;
			}
			/* FALLTHROUGH */
		default:
			lg_die("LMTP: unexpected reply %s", text);
		}
	}
	if (cl->state == LC_READY && cl->replies == 0 && lmtp_may_send())
		lmtp_send_post(cl);
	lg_conn_flush(&cl->c);
}

/* Parse "<SEQ.TAG@loadgen.invalid>"; -1 if it is not one of ours. */
static long
lmtp_seq_of(const char *id)
{
	const char	*dot, *at;
	size_t		 tl = strlen(run.tag);
	char		*end;
	long		 seq;

	if (*id++ != '<')
		return -1;
	seq = strtol(id, &end, 10);
	dot = end;
	if (end == id || *dot != '.' || strncmp(dot + 1, run.tag, tl) != 0)
		return -1;
	at = dot + 1 + tl;
	if (strcmp(at, "@loadgen.invalid>") != 0)
		return -1;
	return seq >= 0 && seq < run.count ? seq : -1;
}

static void
lmtp_events_line(char *line)
{
	char		*sp1, *sp2;
	long long	 sec, nsec;
	unsigned long	 n;
	long		 seq;
	struct lmtp_post *p;
	int64_t		 t;

	if ((sp1 = strchr(line, ' ')) == NULL ||
	    (sp2 = strchr(sp1 + 1, ' ')) == NULL)
		return;
	if (sscanf(line, "%lld.%lld", &sec, &nsec) != 2)
		return;
	t = (int64_t)sec * 1000000000 + nsec;
	n = strtoul(sp1 + 1, NULL, 10);
	if ((seq = lmtp_seq_of(sp2 + 1)) < 0) {
		run.foreign += n;
		return;
	}
	p = &run.posts[seq];
	run.t_progress = lg_now();
	if (p->copies == 0 || t < p->t_first)
		p->t_first = t;
	if (t > p->t_last)
		p->t_last = t;
	p->copies += (unsigned)n;
	run.total_copies += n;
	if (p->copies >= run.copies && p->copies - n < run.copies &&
	    p->t_accept != 0 && p->code / 100 == 2)
		lmtp_post_done(seq);
}

static void
lmtp_events_read(void)
{
	char	*nl, *line;
	ssize_t	 n;

	for (;;) {
		lg_buf_reserve(&run.ev_buf, 65536);
		n = pread(run.ev_fd, run.ev_buf.p + run.ev_buf.len,
		    run.ev_buf.cap - run.ev_buf.len - 1, run.ev_off);
		if (n <= 0)
			break;
		run.ev_off += n;
		run.ev_buf.len += (size_t)n;
		run.ev_buf.p[run.ev_buf.len] = '\0';
	}
	while ((nl = memchr(lg_buf_data(&run.ev_buf), '\n',
	    lg_buf_avail(&run.ev_buf))) != NULL) {
		line = lg_buf_data(&run.ev_buf);
		*nl = '\0';
		run.ev_buf.off += (size_t)(nl - line) + 1;
		lmtp_events_line(line);
	}
}

static int
lmtp_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "to", required_argument, NULL, 't' },
		{ "from", required_argument, NULL, 'f' },
		{ "count", required_argument, NULL, 'n' },
		{ "conns", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "tag", required_argument, NULL, 'T' },
		{ "serial", no_argument, NULL, 'S' },
		{ "gap-ms", required_argument, NULL, 'g' },
		{ "events", required_argument, NULL, 'e' },
		{ "copies", required_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 'o' },
		{ "log", required_argument, NULL, 'l' },
		{ "stall-ms", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 }
	};
	struct epoll_event	 evs[LG_EVENTS_MAX];
	const char		*events = NULL, *logpath = NULL;
	char			 deftag[32];
	int64_t			 t0, deadline, t_end_accept = 0, t_last = 0;
	int			 c, i, n, wait_ms, ready = 0;
	double			*lat, *commit;
	size_t			 nlat = 0, ncommit = 0;
	long			 k;

	memset(&run, 0, sizeof(run));
	snprintf(deftag, sizeof(deftag), "%ld", (long)getpid());
	run.from = "poster@sender.example";
	run.tag = deftag;
	run.conns = 1;
	run.size = 4096;
	run.timeout = 120;
	run.waiting = -1;
	run.ev_fd = -1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': run.port = atoi(optarg); break;
		case 't': run.to = optarg; break;
		case 'f': run.from = optarg; break;
		case 'n': run.count = atol(optarg); break;
		case 'c': run.conns = atoi(optarg); break;
		case 's': run.size = (size_t)atol(optarg); break;
		case 'T': run.tag = optarg; break;
		case 'S': run.serial = 1; break;
		case 'g': run.gap_ms = atoi(optarg); break;
		case 'e': events = optarg; break;
		case 'k': run.copies = (unsigned)atoi(optarg); break;
		case 'o': run.timeout = atof(optarg); break;
		case 'l': logpath = optarg; break;
		case 'x': run.stall_ms = atoi(optarg); break;
		default: return 2;
		}
	}
	if (run.port <= 0 || run.to == NULL || run.count <= 0 ||
	    run.conns <= 0 || (run.copies > 0 && events == NULL) ||
	    strchr(run.tag, '@') != NULL || strchr(run.tag, '>') != NULL)
		lg_die("lmtp: --port, --to, --count needed (--copies needs "
		    "--events)");
	if (run.serial)
		run.conns = 1;
	if ((run.posts = calloc((size_t)run.count, sizeof(*run.posts))) ==
	    NULL || (run.clients = calloc((size_t)run.conns,
	    sizeof(*run.clients))) == NULL)
		lg_die("out of memory");
	lg_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (events != NULL) {
		struct stat st;

		if ((run.ev_fd = open(events, O_RDONLY | O_CLOEXEC)) == -1 ||
		    fstat(run.ev_fd, &st) == -1)
			lg_die("%s: %s", events, strerror(errno));
		run.ev_off = st.st_size;	/* only what comes now */
		if ((run.ino.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) ==
		    -1 || inotify_add_watch(run.ino.fd, events, IN_MODIFY) ==
		    -1)
			lg_die("inotify %s: %s", events, strerror(errno));
		run.ino.kind = LG_KIND_INOTIFY;
		lg_watch(EPOLL_CTL_ADD, run.ino.fd, EPOLLIN, &run.ino);
	}
	for (i = 0; i < run.conns; i++) {
		struct lmtp_client *cl = &run.clients[i];

		if ((cl->c.fd = lg_connect(run.port)) == -1)
			lg_die("connect 127.0.0.1:%d: %s", run.port,
			    strerror(errno));
		lg_nonblock(cl->c.fd);
		cl->c.kind = LG_KIND_CLIENT;
		cl->state = LC_GREETING;
		cl->pipelining = 1;
		cl->seq = -1;
		lg_watch(EPOLL_CTL_ADD, cl->c.fd, EPOLLIN, cl);
	}
	/* Sessions first, so that connecting is not in the figures. */
	while (ready < run.conns) {
		n = epoll_wait(lg_epfd, evs, LG_EVENTS_MAX, 10000);
		if (n <= 0)
			lg_die("LMTP: no greeting");
		for (i = 0; i < n; i++) {
			struct lmtp_client *cl = evs[i].data.ptr;

			if (cl->c.kind != LG_KIND_CLIENT)
				continue;
			if (!lg_conn_read(&cl->c))
				lg_die("LMTP: connection closed");
			while (cl->state < LC_READY) {
				char text[256];
				int code = lg_reply(&cl->c, text,
				    sizeof(text));

				if (code == 0)
					break;
				if (cl->state == LC_GREETING) {
					if (code != 220)
						lg_die("greeting: %s", text);
					lg_buf_addf(&cl->c.out,
					    "LHLO loadgen.invalid\r\n");
					cl->state = LC_LHLO;
				} else if (code != 250)
					lg_die("LHLO: %s", text);
				else {
					cl->state = LC_READY;
					ready++;
				}
				lg_conn_flush(&cl->c);
			}
		}
	}
	t0 = lg_now();
	run.t_progress = t0;
	deadline = t0 + (int64_t)(run.timeout * 1e9);
	for (i = 0; i < run.conns; i++)
		if (lmtp_may_send())
			lmtp_send_post(&run.clients[i]);
	while (run.complete < run.count && !lg_stop) {
		int64_t now = lg_now(), stall = (int64_t)run.stall_ms * 1000000;

		if (now >= deadline)
			break;
		wait_ms = (int)((deadline - now) / 1000000) + 1;
		if (run.serial && run.waiting < 0 && run.next < run.count) {
			int64_t d = run.resume_at - now;

			wait_ms = d <= 0 ? 0 : (int)(d / 1000000) + 1;
		}
		if (stall > 0) {
			struct lmtp_post *w = run.waiting >= 0 ?
			    &run.posts[run.waiting] : NULL;
			int idle = 1;

			/* Serial: give up on this post, go on with the next. */
			if (w != NULL && w->t_accept != 0 &&
			    now - w->t_accept > stall) {
				w->stalled = 1;
				run.stalled++;
				run.waiting = -1;
				run.resume_at = now;
				wait_ms = 0;
			}
			for (i = 0; i < run.conns; i++)
				if (run.clients[i].seq != -1)
					idle = 0;
			/* Everything sent and answered, nothing moving. */
			if (run.next >= run.count && run.waiting < 0 && idle &&
			    now - run.t_progress > stall)
				break;
			if (wait_ms > run.stall_ms / 4 + 1)
				wait_ms = run.stall_ms / 4 + 1;
		}
		n = epoll_wait(lg_epfd, evs, LG_EVENTS_MAX, wait_ms);
		if (n == -1 && errno != EINTR)
			lg_die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++) {
			struct lg_conn *cn = evs[i].data.ptr;

			if (cn->kind == LG_KIND_INOTIFY) {
				char b[4096];

				while (read(cn->fd, b, sizeof(b)) > 0)
					;
				lmtp_events_read();
				continue;
			}
			if (evs[i].events & EPOLLOUT)
				lg_conn_flush(cn);
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				if (!lg_conn_read(cn))
					lg_die("LMTP: connection closed "
					    "(last reply: %s)", run.lasterr);
				lmtp_client_input((struct lmtp_client *)cn);
			}
		}
		/* Serial: the gap after the last copy has passed. */
		if (run.serial && run.clients[0].state == LC_READY &&
		    run.clients[0].replies == 0 && lmtp_may_send())
			lmtp_send_post(&run.clients[0]);
	}
	for (k = 0; k < run.count; k++) {
		if (run.posts[k].t_accept > t_end_accept)
			t_end_accept = run.posts[k].t_accept;
		if (run.posts[k].t_last > t_last)
			t_last = run.posts[k].t_last;
	}
	lat = calloc((size_t)run.count + 1, sizeof(double));
	commit = calloc((size_t)run.count + 1, sizeof(double));
	if (lat == NULL || commit == NULL)
		lg_die("out of memory");
	for (k = 0; k < run.count; k++) {
		struct lmtp_post *p = &run.posts[k];

		if (p->code / 100 != 2 || p->t_accept == 0)
			continue;
		commit[ncommit++] = lg_ms(p->t_accept - p->t_dot);
		if (run.copies > 0 && p->copies >= run.copies)
			lat[nlat++] = lg_ms(p->t_last - p->t_accept);
	}
	printf("posts=%ld\nsent=%ld\naccepted=%ld\nfailed=%ld\n"
	    "complete=%ld\n", run.count, run.next, run.accepted, run.failed,
	    run.complete);
	printf("copies=%lu\ncopies_expected=%lu\nforeign_copies=%lu\n",
	    run.total_copies, (unsigned long)run.count * run.copies,
	    run.foreign);
	printf("timed_out=%d\n", run.complete < run.count);
	for (k = 0; k < run.count; k++)
		if (!run.posts[k].stalled && run.posts[k].code / 100 == 2 &&
		    run.copies > 0 && run.posts[k].copies < run.copies)
			run.stalled++;		/* never complete */
	printf("stalled=%ld\n", run.stalled);
	if (run.lasterr[0])
		printf("last_error=%s\n", run.lasterr);
	printf("start=%.6f\n", (double)t0 / 1e9);
	if (t_end_accept > t0)
		printf("accept_s=%.6f\naccept_rate=%.1f\n",
		    (double)(t_end_accept - t0) / 1e9, (double)run.accepted /
		    ((double)(t_end_accept - t0) / 1e9));
	if (t_last > t0) {
		double s = (double)(t_last - t0) / 1e9;

		printf("e2e_s=%.6f\ne2e_post_rate=%.1f\ndelivery_rate=%.1f\n",
		    s, (double)run.accepted / s, (double)run.total_copies / s);
	}
	lg_print_dist("latency", lat, nlat);
	lg_print_dist("commit", commit, ncommit);
	if (logpath != NULL) {
		FILE *f = fopen(logpath, "w");

		if (f == NULL)
			lg_die("%s: %s", logpath, strerror(errno));
		fprintf(f, "seq\tstart\tdot\taccept\tcode\tcopies\tfirst\t"
		    "last\n");
		for (k = 0; k < run.count; k++) {
			struct lmtp_post *p = &run.posts[k];

			fprintf(f, "%ld\t%.6f\t%.6f\t%.6f\t%d\t%u\t%.6f\t%.6f"
			    "\n", k, p->t_start / 1e9, p->t_dot / 1e9,
			    p->t_accept / 1e9, p->code, p->copies,
			    p->t_first / 1e9, p->t_last / 1e9);
		}
		fclose(f);
	}
	for (i = 0; i < run.conns; i++) {
		(void)!write(run.clients[i].c.fd, "QUIT\r\n", 6);
		close(run.clients[i].c.fd);
	}
	free(lat);
	free(commit);
	return run.complete < run.count ? 3 : 0;
}

/* ---------------------------------------------------------------- smtp */

enum sc_state {
	SC_GREETING,
	SC_EHLO,
	SC_READY,
	SC_GROUP,		/* MAIL, RCPTs, DATA: replies due */
	SC_DOT,
	SC_QUIT
};

struct smtp_client {
	struct lg_conn	 c;
	enum sc_state	 state;
	int		 pipelining;
	int		 replies, want;
};

static struct {
	int		 port, conns, rcpts;
	size_t		 size;
	double		 seconds;
	int64_t		 stop_at, last_done;
	unsigned long	 messages, deliveries, failed, seq;
	struct lg_buf	 group;		/* MAIL, RCPTs, DATA */
	struct lg_buf	 msg;		/* one message, dot included */
	int		 open;
} sc;

static void
smtp_send_group(struct smtp_client *cl)
{
	if (lg_now() >= sc.stop_at) {
		lg_buf_addf(&cl->c.out, "QUIT\r\n");
		cl->state = SC_QUIT;
		return;
	}
	cl->replies = 0;
	cl->want = sc.rcpts + 2;
	if (cl->pipelining)
		lg_buf_add(&cl->c.out, sc.group.p, sc.group.len);
	else
		lg_buf_addf(&cl->c.out, "MAIL FROM:<sink-rate@loadgen.invalid>"
		    "\r\n");
	cl->state = SC_GROUP;
}

static void
smtp_client_input(struct smtp_client *cl)
{
	char	 text[256];
	int	 code;

	while ((code = lg_reply(&cl->c, text, sizeof(text))) != 0) {
		switch (cl->state) {
		case SC_GREETING:
			if (code != 220)
				lg_die("SMTP greeting: %s", text);
			lg_buf_addf(&cl->c.out, "EHLO loadgen.invalid\r\n");
			cl->state = SC_EHLO;
			break;
		case SC_EHLO:
			/* lg_reply skipped the continuation lines; look at
			 * what was read for PIPELINING instead. */
			if (code != 250)
				lg_die("EHLO: %s", text);
			cl->state = SC_READY;
			sc.open++;
			break;
		case SC_GROUP:
			cl->replies++;
			if (!cl->pipelining) {
				if (cl->replies <= sc.rcpts)
					lg_buf_addf(&cl->c.out,
					    "RCPT TO:<r%d@dest.example>\r\n",
					    cl->replies);
				else if (cl->replies == sc.rcpts + 1)
					lg_buf_addf(&cl->c.out, "DATA\r\n");
			}
			if (cl->replies < cl->want)
				break;
			if (code != 354)
				lg_die("SMTP DATA: %s", text);
			lg_buf_add(&cl->c.out, sc.msg.p, sc.msg.len);
			cl->state = SC_DOT;
			break;
		case SC_DOT:
			if (code / 100 == 2) {
				sc.messages++;
				sc.deliveries += (unsigned long)sc.rcpts;
			} else
				sc.failed++;
			sc.last_done = lg_now();
			smtp_send_group(cl);
			break;
		case SC_QUIT:
			cl->c.dead = 1;
			break;
		default:
			lg_die("SMTP: unexpected reply %s", text);
		}
	}
	lg_conn_flush(&cl->c);
}

static int
smtp_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'c' },
		{ "rcpts", required_argument, NULL, 'r' },
		{ "size", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 }
	};
	struct epoll_event	 evs[LG_EVENTS_MAX];
	struct smtp_client	*cls;
	int64_t			 t0;
	int			 c, i, n, alive;

	sc.conns = 2;
	sc.rcpts = 1;
	sc.size = 4096;
	sc.seconds = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': sc.port = atoi(optarg); break;
		case 'c': sc.conns = atoi(optarg); break;
		case 'r': sc.rcpts = atoi(optarg); break;
		case 's': sc.size = (size_t)atol(optarg); break;
		case 'S': sc.seconds = atof(optarg); break;
		default: return 2;
		}
	}
	if (sc.port <= 0 || sc.conns <= 0 || sc.rcpts <= 0)
		lg_die("smtp: --port needed");
	lg_buf_addf(&sc.group, "MAIL FROM:<sink-rate@loadgen.invalid>\r\n");
	for (i = 0; i < sc.rcpts; i++)
		lg_buf_addf(&sc.group, "RCPT TO:<r%d@dest.example>\r\n", i + 1);
	lg_buf_addf(&sc.group, "DATA\r\n");
	lg_message(&sc.msg, 0, "sinkrate", "sink-rate@loadgen.invalid",
	    "r1@dest.example", sc.size);
	if ((cls = calloc((size_t)sc.conns, sizeof(*cls))) == NULL)
		lg_die("out of memory");
	lg_epfd = epoll_create1(EPOLL_CLOEXEC);
	for (i = 0; i < sc.conns; i++) {
		if ((cls[i].c.fd = lg_connect(sc.port)) == -1)
			lg_die("connect 127.0.0.1:%d: %s", sc.port,
			    strerror(errno));
		lg_nonblock(cls[i].c.fd);
		cls[i].c.kind = LG_KIND_CLIENT;
		lg_watch(EPOLL_CTL_ADD, cls[i].c.fd, EPOLLIN, &cls[i]);
	}
	/* Greeting and EHLO on every connection before the clock starts. */
	sc.stop_at = INT64_MAX;
	while (sc.open < sc.conns) {
		if ((n = epoll_wait(lg_epfd, evs, LG_EVENTS_MAX, 10000)) <= 0)
			lg_die("SMTP: no greeting");
		for (i = 0; i < n; i++) {
			struct smtp_client *cl = evs[i].data.ptr;
			char *p;

			if (!lg_conn_read(&cl->c))
				lg_die("SMTP: connection closed");
			p = lg_buf_data(&cl->c.in);
			if (cl->state == SC_EHLO && strcasestr(p,
			    "PIPELINING") != NULL)
				cl->pipelining = 1;
			smtp_client_input(cl);
		}
	}
	t0 = lg_now();
	sc.stop_at = t0 + (int64_t)(sc.seconds * 1e9);
	for (i = 0; i < sc.conns; i++) {
		smtp_send_group(&cls[i]);
		lg_conn_flush(&cls[i].c);
	}
	for (alive = sc.conns; alive > 0 && !lg_stop;) {
		if ((n = epoll_wait(lg_epfd, evs, LG_EVENTS_MAX, 30000)) <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			lg_die("SMTP: no reply for 30 s");
		}
		for (i = 0; i < n; i++) {
			struct smtp_client *cl = evs[i].data.ptr;

			if (cl->c.dead)
				continue;
			if (evs[i].events & EPOLLOUT)
				lg_conn_flush(&cl->c);
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				if (!lg_conn_read(&cl->c)) {
					if (cl->state != SC_QUIT)
						lg_die("SMTP: connection "
						    "closed");
					cl->c.dead = 1;
				} else
					smtp_client_input(cl);
			}
			if (cl->c.dead) {
				epoll_ctl(lg_epfd, EPOLL_CTL_DEL, cl->c.fd,
				    NULL);
				close(cl->c.fd);
				alive--;
			}
		}
	}
	{
		double s = (double)(sc.last_done - t0) / 1e9;

		printf("messages=%lu\ndeliveries=%lu\nfailed=%lu\n"
		    "seconds=%.6f\npipelining=%d\n", sc.messages,
		    sc.deliveries, sc.failed, s, cls[0].pipelining);
		if (s > 0)
			printf("message_rate=%.1f\ndelivery_rate=%.1f\n",
			    (double)sc.messages / s,
			    (double)sc.deliveries / s);
	}
	return 0;
}

/* --------------------------------------------------------------- greet */

static int
greet_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 }
	};
	struct timespec	 pause = { 0, 200000 };
	double		 timeout = 20;
	int64_t		 t0, t_conn = 0, t_greet = 0, deadline;
	int		 port = 0, c, fd = -1, status;
	char		 b[512];
	size_t		 got = 0;
	pid_t		 pid;

	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 'p')
			port = atoi(optarg);
		else if (c == 'o')
			timeout = atof(optarg);
		else
			return 2;
	}
	if (port <= 0 || optind >= argc)
		lg_die("greet: --port N -- COMMAND ...");
	t0 = lg_now();
	if ((pid = fork()) == -1)
		lg_die("fork: %s", strerror(errno));
	if (pid == 0) {
		execvp(argv[optind], argv + optind);
		_exit(127);
	}
	deadline = t0 + (int64_t)(timeout * 1e9);
	while (lg_now() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			lg_die("greet: %s exited before greeting",
			    argv[optind]);
		if ((fd = lg_connect(port)) >= 0)
			break;
		nanosleep(&pause, NULL);
	}
	if (fd >= 0) {
		struct timeval tv = { 5, 0 };
		ssize_t n;

		t_conn = lg_now();
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		while (got < sizeof(b) - 1 && (n = recv(fd, b + got,
		    sizeof(b) - 1 - got, 0)) > 0) {
			got += (size_t)n;
			b[got] = '\0';
			if (strchr(b, '\n') != NULL)
				break;
		}
		if (got >= 4 && strncmp(b, "220", 3) == 0)
			t_greet = lg_now();
		(void)!write(fd, "QUIT\r\n", 6);
		close(fd);
	}
	kill(pid, SIGTERM);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			pid = 0;
			break;
		}
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	if (pid != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	if (t_greet == 0)
		lg_die("greet: no 220 greeting on 127.0.0.1:%d within %.0f s",
		    port, timeout);
	printf("connect_ms=%.3f\ngreet_ms=%.3f\n", lg_ms(t_conn - t0),
	    lg_ms(t_greet - t0));
	return 0;
}

int
main(int argc, char **argv)
{
	struct sigaction sa;

	if (argc < 2) {
		fprintf(stderr, "usage: " LG_NAME " sink|lmtp|smtp|greet "
		    "[OPTION]...\n(see the comment at the top of "
		    "tools/quire-loadgen.c)\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = lg_on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	lg_raise_nofile();
	if (strcmp(argv[1], "sink") == 0)
		return sink_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "lmtp") == 0)
		return lmtp_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "smtp") == 0)
		return smtp_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "greet") == 0)
		return greet_main(argc - 1, argv + 1);
	fprintf(stderr, LG_NAME ": unknown mode %s\n", argv[1]);
	return 2;
}
