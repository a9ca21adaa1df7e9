/*
 * msg_header: the header block of an RFC 5322 message, as byte ranges into
 * the caller's buffer.  Nothing is copied or normalised, so a stage can
 * rewrite some fields and pass every other byte through untouched.
 *
 * Tolerant by design: a line with no colon ends the header block only when
 * it is blank; otherwise it is counted in bad_lines and kept as a field of
 * empty name (so it is passed through).  Line ends may be CRLF, bare LF or
 * mixed.  A buffer with no blank line is all header.
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
	size_t		 header_len;	/* bytes of fields, blank line excluded */
	size_t		 body_offset;	/* first byte after the blank line */
	int		 crlf;		/* 1 if the first line ends in CRLF */
	size_t		 bad_lines;	/* lines with no colon or NUL bytes */
	size_t		 longest_line;
};

/* 0 on success, -1 only when out of memory.  Any bytes parse. */
int	msg_headers_parse(const char *, size_t, struct msg_headers *);
void	msg_headers_free(struct msg_headers *);

/* Index of the first field named `name' (case-insensitive) at or after
 * `from', or -1. */
long	msg_headers_find(const struct msg_headers *, const char *name,
	    size_t from);

/* The field's value unfolded (CR/LF of folds removed, leading WSP of the
 * value removed, trailing WSP removed), NUL-terminated, malloc'd.  NUL
 * bytes in the value become spaces. */
char	*msg_field_unfold(const struct msg_field *);

/* Unfolded value of the first field `name', malloc'd, or NULL. */
char	*msg_headers_get(const struct msg_headers *, const char *name);

#endif
