/*
 * lmtp: an RFC 2033 server over libevent bufferevents.
 *
 * The server knows nothing of lists or SQL.  It asks its owner about each
 * recipient and about each completed message through two asynchronous
 * callbacks; the owner answers later (after a database round trip) with
 * lmtp_txn_rcpt_done() and lmtp_txn_data_done().  A transaction stays
 * valid until its pending answer is given, even if the client has gone;
 * lmtp_txn_client_gone() tells the owner that nobody will read the reply.
 *
 * Limits are enforced here, before anything reaches the owner: line length
 * (RFC 5321: 1000 octets with CRLF for commands, and the same for header
 * lines of the message), message size, the bytes of all messages being
 * received, recipients per transaction, idle and DATA timeouts, and the
 * number of clients.
 *
 * The owner's callbacks run from the event loop; an answer may be given
 * inside the callback or any time later.  The process must ignore SIGPIPE
 * (a client may close while a reply is being written).
 *
 * Memory per connection is bounded by about 50 KiB of buffers and state,
 * plus max_size (the message), plus max_rcpts * 2 KiB (addresses and
 * replies), and the messages of all connections together by max_buffered;
 * see lmtp_server.c.  The session core below is what the server
 * drives; it has no socket and no event base, so tests and the fuzzer run
 * it on plain buffers.
 */
#ifndef QUIRE_LMTP_H
#define QUIRE_LMTP_H

#include <stddef.h>

struct event_base;
struct lmtp_server;
struct lmtp_txn;

/* A zero or NULL field takes the default shown (the port has none);
 * lmtp_server_new() copies the strings. */
struct lmtp_config {
	const char	*host;		/* listen address, "127.0.0.1" */
	int		 port;		/* 8024 usually; 0 = any free port */
	const char	*hostname;	/* greeting, LHLO; gethostname() */
	size_t		 max_size;	/* octets; advertised as SIZE; 10 MiB */
	size_t		 max_rcpts;	/* per transaction; 1000 */
	size_t		 max_clients;	/* 100 */
	size_t		 max_buffered;	/* message octets all clients hold
					 * at once; 4 * max_size, and never
					 * below max_size.  Past it a message
					 * is read, dropped and answered
					 * 452 4.3.1 */
	int		 idle_timeout;	/* seconds between commands; 300 */
	int		 data_timeout;	/* seconds between DATA reads; 600 */
};

struct lmtp_callbacks {
	/* A RCPT was given: answer with lmtp_txn_rcpt_done().  The address
	 * is lmtp_txn_rcpt(txn, rcpt); rcpt == lmtp_txn_nrcpt(txn), the
	 * number accepted so far.  Both callbacks are required. */
	void	(*rcpt)(void *arg, struct lmtp_txn *, size_t rcpt);
	/* The message of a transaction is complete: answer every accepted
	 * recipient with lmtp_txn_reply() and then lmtp_txn_data_done(). */
	void	(*data)(void *arg, struct lmtp_txn *);
};

/* Binds and listens at once; NULL (and a logged reason) on failure. */
struct lmtp_server *lmtp_server_new(struct event_base *,
		    const struct lmtp_config *, const struct lmtp_callbacks *,
		    void *arg);
/* The bound port (useful with port 0), or -1. */
int		 lmtp_server_port(const struct lmtp_server *);
/* Takes no more connections; each client is answered 421 4.3.2 at its
 * next command, once the transaction it is in has its replies, and
 * closed.  stopped(arg) runs from the loop once the last is gone (at
 * once if there is none).  0, or -1 if out of memory. */
int		 lmtp_server_stop(struct lmtp_server *,
		    void (*stopped)(void *), void *arg);
/* Closes every connection; a transaction waiting for its owner's answer
 * stays valid (client gone) until that answer.  Not from inside one of
 * the server's callbacks. */
void		 lmtp_server_free(struct lmtp_server *);
/* Open connections, and the bytes they buffer (input, output, messages
 * being received): for monitoring, and for tests of the memory bound. */
size_t		 lmtp_server_nclients(const struct lmtp_server *);
size_t		 lmtp_server_buffered(const struct lmtp_server *);

/* Transaction accessors.  The reverse path is "" for MAIL FROM:<>;
 * paths are as sent, without brackets or source route.  nrcpt counts
 * accepted recipients; lmtp_txn_rcpt() also gives the one being asked
 * about in the rcpt callback, and NULL past the end. */
const char	*lmtp_txn_mail_from(const struct lmtp_txn *);
size_t		 lmtp_txn_nrcpt(const struct lmtp_txn *);
const char	*lmtp_txn_rcpt(const struct lmtp_txn *, size_t);
/* Per-recipient owner data (e.g. a list id), set during rcpt. */
void		 lmtp_txn_set_cookie(struct lmtp_txn *, size_t, long);
long		 lmtp_txn_cookie(const struct lmtp_txn *, size_t);
/* The message as received, dot-unstuffed, CRLF kept: len octets, not
 * NUL-terminated, valid from the data callback to lmtp_txn_data_done. */
const char	*lmtp_txn_data(const struct lmtp_txn *, size_t *len);
const char	*lmtp_txn_peer(const struct lmtp_txn *);
unsigned long	 lmtp_txn_session_id(const struct lmtp_txn *);
int		 lmtp_txn_client_gone(const struct lmtp_txn *);

/* Answer the pending RCPT with a full reply line without CRLF, for
 * example "250 2.1.5 OK" or "550 5.1.1 No such list".  Only a 2xx reply
 * adds the recipient to the transaction.  A reply that is not one line
 * of printable ASCII starting with a code 200-599 is logged and sent as
 * "451 4.3.0 Internal error"; one over 510 octets is cut.  If the client
 * is gone, this frees the transaction. */
void		 lmtp_txn_rcpt_done(struct lmtp_txn *, size_t, const char *);
/* Set the reply for accepted recipient i after DATA (copied).  A
 * recipient left without one is answered 451 4.3.0. */
void		 lmtp_txn_reply(struct lmtp_txn *, size_t, const char *);
/* Send the replies, in recipient order, and end the transaction; the
 * txn is freed and must not be used again. */
void		 lmtp_txn_data_done(struct lmtp_txn *);

/*
 * The session core: the protocol state machine of one connection over
 * byte buffers, with no socket and no timers.  The caller feeds it the
 * client's input; it consumes what it can, leaves pipelined commands it
 * cannot take yet in the input buffer, and appends replies to its own
 * output buffer, which the caller sends (or, for tests, reads).
 */
struct evbuffer;
struct lmtp_session;

/* Why lmtp_session_feed() stopped: what it waits for. */
enum lmtp_want {
	LMTP_WANT_LINE,			/* a command: idle timeout applies */
	LMTP_WANT_DATA,			/* message bytes: DATA timeout */
	LMTP_WANT_OWNER,		/* an owner answer: no timeout; the
					 * output is better held, since the
					 * pipelined group is not done */
	LMTP_WANT_WRITE,		/* the output to drain */
	LMTP_WANT_CLOSE			/* send the output, then close */
};

/* The greeting is in the output at once.  cfg is copied, but its
 * strings and cb must outlive the session; peer is copied. */
struct lmtp_session *lmtp_session_new(const struct lmtp_config *,
		    const struct lmtp_callbacks *, void *arg,
		    unsigned long id, const char *peer);
/* Called when an owner answer given outside a callback lets the session
 * go on: the caller should feed it again (from the event loop, not from
 * inside the hook). */
void		 lmtp_session_set_wake(struct lmtp_session *,
		    void (*)(void *), void *);
enum lmtp_want	 lmtp_session_feed(struct lmtp_session *, struct evbuffer *);
struct evbuffer	*lmtp_session_output(struct lmtp_session *);
/* The server stops: 421 4.3.2 at the next command, after the replies
 * of the transaction in progress. */
void		 lmtp_session_stop(struct lmtp_session *);
/* The client stalled: queue 421 4.4.2 and drop any partial message. */
void		 lmtp_session_timeout(struct lmtp_session *);
/* Why the session wants to close ("quit", "idle_timeout", ...), or NULL. */
const char	*lmtp_session_close_reason(const struct lmtp_session *);
/* Bytes held by the session (output and message), for the bound. */
size_t		 lmtp_session_buffered(const struct lmtp_session *);
/* The protocol state as a word for the log: "init", "data", ... */
const char	*lmtp_session_state(const struct lmtp_session *);
/* The client is gone.  A transaction waiting for its owner stays valid
 * until the answer; anything else is freed now. */
void		 lmtp_session_free(struct lmtp_session *);

#endif
