/*
 * smtp: an RFC 5321 client over libevent bufferevents, for the outgoing
 * stage.  One smtp_conn is one kept connection to the relay; it runs
 * batches of mail transactions, pipelined when the relay offers
 * PIPELINING, and reports one reply per recipient.  It knows nothing of
 * lists or SQL.
 */
#ifndef QUIRE_SMTP_H
#define QUIRE_SMTP_H

#include <stddef.h>
#include <sys/uio.h>

struct event_base;
struct smtp_conn;

struct smtp_config {
	const char	*host;		/* relay, "127.0.0.1" */
	int		 port;		/* 25 */
	const char	*helo;		/* our name for EHLO */
	int		 connect_timeout; /* seconds */
	int		 reply_timeout;	/* seconds per reply */
	int		 data_timeout;	/* seconds for the final "." reply */
};

struct smtp_result {
	int		 code;		/* 250, 451, 550; 0 = no reply */
	char		 text[512];	/* the reply, lines joined by ' ' */
};

struct smtp_txn {
	const char	*mail_from;	/* envelope sender, no brackets */
	int		 xverp;		/* add XVERP to MAIL (relay has it) */
	const char	**rcpts;
	size_t		 nrcpts;
	const struct iovec *data;	/* message parts, sent in order; */
	int		 ndata;		/* line ends are sent as CRLF and
					 * leading dots stuffed */
	struct smtp_result *results;	/* nrcpts entries, filled in */
};

/* Called once per smtp_conn_send; txns' results are filled in.  On a
 * connection or protocol failure every unanswered recipient gets code 0
 * and a text saying what happened. */
typedef void	(*smtp_done_fn)(void *arg, struct smtp_txn *, size_t ntxns);

struct smtp_conn *smtp_conn_new(struct event_base *,
		    const struct smtp_config *);
/* Run ntxns transactions on this connection (connecting first if
 * needed).  One call at a time per connection. */
int		 smtp_conn_send(struct smtp_conn *, struct smtp_txn *,
		    size_t ntxns, smtp_done_fn, void *arg);
int		 smtp_conn_busy(const struct smtp_conn *);
/* After a successful EHLO: what the relay offered. */
int		 smtp_conn_has_pipelining(const struct smtp_conn *);
int		 smtp_conn_has_xverp(const struct smtp_conn *);
int		 smtp_conn_connected(const struct smtp_conn *);
/* QUIT if idle and free; frees at once if broken. */
void		 smtp_conn_free(struct smtp_conn *);

/* Reply parsing, pure: a complete reply in buf (one or more lines
 * "250-..." ending with "250 ...", CRLF or LF).  Returns bytes consumed,
 * 0 if more input is needed, -1 if the bytes are not an SMTP reply. */
struct smtp_reply {
	int		 code;
	int		 nlines;
	char		 text[512];	/* lines' texts joined by ' ', cut */
	char		 enhanced[16];	/* "5.1.1" if the first line has one */
};
long		 smtp_reply_parse(const char *, size_t, struct smtp_reply *);

#endif
