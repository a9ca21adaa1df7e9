/*
 * smtp: an RFC 5321 client over libevent bufferevents, for the outgoing
 * stage.  One smtp_conn is one kept connection to the relay; it runs
 * batches of mail transactions, pipelined when the relay offers
 * PIPELINING, and reports one reply per recipient.  It knows nothing of
 * lists or SQL.
 *
 * The process must ignore SIGPIPE: a relay that closes while we write
 * would otherwise kill it.
 */
#ifndef QUIRE_SMTP_H
#define QUIRE_SMTP_H

#include <stddef.h>
#include <sys/uio.h>

struct event_base;
struct smtp_conn;

/* Timeouts of 0 mean 30, 300 and 600 s.  An address is best for host: a
 * name is looked up with a blocking getaddrinfo. */
struct smtp_config {
	const char	*host;		/* relay, "127.0.0.1" */
	int		 port;		/* 25 */
	const char	*helo;		/* our name for EHLO */
	int		 connect_timeout; /* seconds */
	int		 reply_timeout;	/* seconds per reply */
	int		 data_timeout;	/* seconds for the final "." reply,
					 * counted once the data is sent */
};

/* A reply's text excludes its code; "5.1.1 User unknown".  A recipient
 * refused before anything was sent (an address with control bytes or
 * longer than 256 octets) gets 553 and a text that starts "local:". */
struct smtp_result {
	int		 code;		/* 250, 451, 550; 0 = no reply */
	char		 text[512];	/* the reply, lines joined by ' ' */
};

struct smtp_txn {
	const char	*mail_from;	/* envelope sender, no brackets */
	int		 xverp;		/* add XVERP to MAIL (relay has it;
					 * if not, the transaction is not
					 * sent and gets code 0) */
	const char	**rcpts;
	size_t		 nrcpts;
	const struct iovec *data;	/* message parts, sent in order; */
	int		 ndata;		/* line ends are sent as CRLF and
					 * leading dots stuffed */
	struct smtp_result *results;	/* nrcpts entries, filled in */
};

/* Called once per smtp_conn_send, always from the event loop and never
 * from inside smtp_conn_send; txns' results are filled in.  On a
 * connection or protocol failure every unanswered recipient gets code 0
 * and a text saying what happened ("connection refused", "timeout
 * waiting for reply to RCPT").  The callback may call smtp_conn_send or
 * smtp_conn_free on the connection. */
typedef void	(*smtp_done_fn)(void *arg, struct smtp_txn *, size_t ntxns);

struct smtp_conn *smtp_conn_new(struct event_base *,
		    const struct smtp_config *);
/* Run ntxns transactions on this connection (connecting first if
 * needed).  One call at a time per connection.  txns, their addresses and
 * data must stay valid until the done callback.  Returns 0, or -1 (and
 * no callback) if the connection is busy or the arguments are empty. */
int		 smtp_conn_send(struct smtp_conn *, struct smtp_txn *,
		    size_t ntxns, smtp_done_fn, void *arg);
int		 smtp_conn_busy(const struct smtp_conn *);
/* After a successful EHLO: what the relay offered. */
int		 smtp_conn_has_pipelining(const struct smtp_conn *);
int		 smtp_conn_has_xverp(const struct smtp_conn *);
int		 smtp_conn_connected(const struct smtp_conn *);
/* All SMTP_CAP_* bits the relay offered, and its SIZE limit (0: none). */
unsigned	 smtp_conn_caps(const struct smtp_conn *);
unsigned long	 smtp_conn_size_max(const struct smtp_conn *);
/* QUIT if idle and free; frees at once if broken.  Freeing a busy
 * connection drops its batch without calling the done callback. */
void		 smtp_conn_free(struct smtp_conn *);

/* Reply parsing, pure: a complete reply in buf (one or more lines
 * "250-..." ending with "250 ...", CRLF or LF).  Returns bytes consumed,
 * 0 if more input is needed, -1 if the bytes are not an SMTP reply: a
 * line not starting with a code [2-5][0-5][0-9] and ' ', '-' or the end,
 * codes that differ between lines, a NUL byte, or no complete reply
 * within SMTP_REPLY_MAX bytes.  Garbage is refused as soon as the first
 * bytes of a line show it, without waiting for the line's end.
 *
 * text holds the lines' texts after "250 ", the empty ones skipped, at
 * most 511 bytes and always NUL-terminated.  It is safe to store and log:
 * control bytes and bytes that are not valid UTF-8 become '?', a tab
 * becomes ' ', and a cut never splits a UTF-8 sequence.  enhanced holds
 * the first line's RFC 3463 code when its class matches the reply's. */
#define SMTP_REPLY_MAX	65536
struct smtp_reply {
	int		 code;
	int		 nlines;
	char		 text[512];	/* lines' texts joined by ' ', cut */
	char		 enhanced[16];	/* "5.1.1" if the first line has one */
};
long		 smtp_reply_parse(const char *, size_t, struct smtp_reply *);

/* EHLO keywords, from the lines after the first of a complete EHLO reply
 * (the bytes smtp_reply_parse consumed).  Matching ignores case. */
enum smtp_cap {
	SMTP_CAP_PIPELINING	= 1 << 0,
	SMTP_CAP_XVERP		= 1 << 1,
	SMTP_CAP_SIZE		= 1 << 2,
	SMTP_CAP_8BITMIME	= 1 << 3,
	SMTP_CAP_ENHANCED	= 1 << 4	/* ENHANCEDSTATUSCODES */
};
/* Returns the SMTP_CAP_* bits; *size_max gets SIZE's limit (0: none). */
unsigned	 smtp_ehlo_caps(const char *, size_t, unsigned long *size_max);

#endif
