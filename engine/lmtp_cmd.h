/*
 * lmtp_cmd: the parser of one LMTP command line (RFC 2033 on the syntax of
 * RFC 5321, with the SIZE and BODY parameters of RFC 1870 and RFC 6152).
 *
 * Pure: no sockets, no allocation, no state.  Results point into the
 * caller's line, which may hold any bytes (NUL included); nothing is
 * copied or unescaped, so the caller sees a path exactly as it was sent.
 * Sequence rules (MAIL before RCPT and so on) are the session's business.
 */
#ifndef QUIRE_LMTP_CMD_H
#define QUIRE_LMTP_CMD_H

#include <stddef.h>

/* RFC 5321 4.5.3.1.4 and 4.5.3.1.6: a command line, and a text line of a
 * message, is at most 1000 octets counting the CRLF. */
#define LMTP_LINE_MAX	1000

enum lmtp_verb {
	LMTP_VERB_UNKNOWN,
	LMTP_VERB_LHLO,
	LMTP_VERB_HELO,
	LMTP_VERB_EHLO,
	LMTP_VERB_MAIL,
	LMTP_VERB_RCPT,
	LMTP_VERB_DATA,
	LMTP_VERB_RSET,
	LMTP_VERB_NOOP,
	LMTP_VERB_QUIT,
	LMTP_VERB_VRFY,
	LMTP_VERB_COUNT
};

enum lmtp_body {
	LMTP_BODY_NONE,			/* no BODY= given */
	LMTP_BODY_7BIT,
	LMTP_BODY_8BITMIME
};

/* What is wrong with a line; each maps to one reply in the session. */
enum lmtp_cmd_status {
	LMTP_CMD_OK,
	LMTP_CMD_UNKNOWN,		/* 500 5.5.2: no such verb */
	LMTP_CMD_SYNTAX,		/* 501 5.5.4: arguments malformed */
	LMTP_CMD_BAD_PATH,		/* 501 5.1.7 (MAIL) or 5.1.3 (RCPT) */
	LMTP_CMD_BAD_PARAM		/* 555 5.5.4: parameter not offered,
					 * or a BODY other than ours */
};

struct lmtp_cmd {
	enum lmtp_verb	 verb;		/* set even when the status is not OK */
	const char	*arg;		/* LHLO/HELO/EHLO/VRFY/NOOP text */
	size_t		 arg_len;
	const char	*path;		/* MAIL/RCPT: inside the brackets, */
	size_t		 path_len;	/* source route dropped; "" for <> */
	int		 has_size;
	size_t		 size;		/* SIZE=, saturated at SIZE_MAX */
	enum lmtp_body	 body;
};

/*
 * Parse one line, with or without its line end (CRLF or LF).  Trailing
 * blanks are ignored and so are extra spaces between words, because MTAs
 * in the wild send them; everything else follows RFC 5321.  A path must be
 * in angle brackets, may hold a quoted local part, and holds no control or
 * 8-bit bytes (SMTPUTF8 is not offered).  An empty path is valid for MAIL
 * only.
 */
enum lmtp_cmd_status lmtp_cmd_parse(const char *line, size_t len,
		    struct lmtp_cmd *);

/* "LHLO", ..., or "?" for LMTP_VERB_UNKNOWN. */
const char	*lmtp_verb_name(enum lmtp_verb);

#endif
