/*
 * msg_header: the header block of an RFC 5322 message, as byte ranges into
 * the caller's buffer.  Nothing is copied or normalised, so a stage can
 * rewrite some fields and pass every other byte through untouched.
 *
 * Tolerant by design: a line with no colon ends the header block only when
 * it is blank; otherwise it is counted in bad_lines and kept as a field of
 * empty name (so it is passed through).  Line ends may be CRLF, bare LF or
 * mixed; a CR not followed by LF is an ordinary byte of the line.  A
 * buffer with no blank line is all header.
 *
 * A field of empty name (name_len 0, value = the whole first line) is also
 * made for a line whose name would be empty or hold bytes outside
 * printable ASCII (e.g. an mbox "From " line), and for a continuation
 * line with no field before it.  Continuation lines (starting with SP or
 * HTAB) always belong to the field before them; a line of only WSP is a
 * continuation, not the blank line.
 */
#ifndef QUIRE_MSG_HEADER_H
#define QUIRE_MSG_HEADER_H

#include <stddef.h>

struct msg_field {
	const char	*raw;		/* whole field, folding and line end */
	size_t		 raw_len;
	const char	*name;		/* before the colon, no trailing WSP */
	size_t		 name_len;	/* 0 for a line with no colon */
	const char	*value;		/* after the colon, to the final EOL */
	size_t		 value_len;	/* folding kept, final line end not */
};

struct msg_headers {
	struct msg_field *fields;
	size_t		 nfields;
	size_t		 cap;
	size_t		 header_len;	/* fields only, blank line excluded */
	size_t		 body_offset;	/* first byte after the blank line */
	int		 crlf;		/* 1 if the first line ends in CRLF */
	size_t		 bad_lines;	/* lines with no colon or NUL bytes */
	size_t		 longest_line;	/* octets, line end excluded */
};

/* 0 on success, -1 only when out of memory (the struct is then left
 * empty).  Any bytes parse.  The struct is overwritten, not reused: free a
 * parsed one with msg_headers_free first.  The fields point into the
 * buffer, which must outlive them.  bad_lines counts physical lines. */
int	msg_headers_parse(const char *, size_t, struct msg_headers *);
/* Frees the fields and zeroes the struct; safe on a zeroed struct. */
void	msg_headers_free(struct msg_headers *);

/* Index of the first field named `name' (case-insensitive) at or after
 * `from', or -1. */
long	msg_headers_find(const struct msg_headers *, const char *name,
	    size_t from);

/* The field's value unfolded (CR/LF of folds removed, leading WSP of the
 * value removed, trailing WSP removed), NUL-terminated, malloc'd.  NUL
 * bytes and bare CRs in the value become spaces, so the result holds no
 * CR, LF or NUL.  NULL on ENOMEM. */
char	*msg_field_unfold(const struct msg_field *);

/* Unfolded value of the first field `name', malloc'd, or NULL (absent,
 * or ENOMEM). */
char	*msg_headers_get(const struct msg_headers *, const char *name);

#endif
