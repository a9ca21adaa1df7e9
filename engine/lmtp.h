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
 * lines of the message), message size, recipients per transaction, idle
 * and DATA timeouts, and the number of clients.
 */
#ifndef QUIRE_LMTP_H
#define QUIRE_LMTP_H

#include <stddef.h>

struct event_base;
struct lmtp_server;
struct lmtp_txn;

struct lmtp_config {
	const char	*host;		/* listen address, "127.0.0.1" */
	int		 port;		/* 8024 */
	const char	*hostname;	/* greeting and LHLO reply */
	size_t		 max_size;	/* octets; advertised as SIZE */
	size_t		 max_rcpts;	/* per transaction */
	size_t		 max_clients;
	int		 idle_timeout;	/* seconds between commands */
	int		 data_timeout;	/* seconds between DATA reads */
};

struct lmtp_callbacks {
	/* A RCPT was given: answer with lmtp_txn_rcpt_done(). */
	void	(*rcpt)(void *arg, struct lmtp_txn *, size_t rcpt);
	/* The message of a transaction is complete: answer every accepted
	 * recipient with lmtp_txn_reply() and then lmtp_txn_data_done(). */
	void	(*data)(void *arg, struct lmtp_txn *);
};

struct lmtp_server *lmtp_server_new(struct event_base *,
		    const struct lmtp_config *, const struct lmtp_callbacks *,
		    void *arg);
/* The bound port (useful with port 0), or -1. */
int		 lmtp_server_port(const struct lmtp_server *);
void		 lmtp_server_free(struct lmtp_server *);

/* Transaction accessors. */
const char	*lmtp_txn_mail_from(const struct lmtp_txn *);
size_t		 lmtp_txn_nrcpt(const struct lmtp_txn *);
const char	*lmtp_txn_rcpt(const struct lmtp_txn *, size_t);
/* Per-recipient owner data (e.g. a list id), set during rcpt. */
void		 lmtp_txn_set_cookie(struct lmtp_txn *, size_t, long);
long		 lmtp_txn_cookie(const struct lmtp_txn *, size_t);
/* The message as received, dot-unstuffed, CRLF kept. */
const char	*lmtp_txn_data(const struct lmtp_txn *, size_t *len);
const char	*lmtp_txn_peer(const struct lmtp_txn *);
unsigned long	 lmtp_txn_session_id(const struct lmtp_txn *);
int		 lmtp_txn_client_gone(const struct lmtp_txn *);

/* Answer the pending RCPT with a full reply line without CRLF, for
 * example "250 2.1.5 OK" or "550 5.1.1 No such list".  Only a 2xx reply
 * adds the recipient to the transaction. */
void		 lmtp_txn_rcpt_done(struct lmtp_txn *, size_t, const char *);
/* Set the reply for accepted recipient i after DATA. */
void		 lmtp_txn_reply(struct lmtp_txn *, size_t, const char *);
/* Send the replies, in recipient order, and end the transaction. */
void		 lmtp_txn_data_done(struct lmtp_txn *);

#endif
