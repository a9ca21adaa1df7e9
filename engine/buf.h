/*
 * buf: a growing byte buffer, and text clean-up for database columns.
 */
#ifndef QUIRE_BUF_H
#define QUIRE_BUF_H

#include <stddef.h>

struct buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};

/* All return 0, or -1 when out of memory (the buffer is left intact). */
int	buf_add(struct buf *, const void *, size_t);
int	buf_adds(struct buf *, const char *);
int	buf_addf(struct buf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
/* s as one element of a PostgreSQL array literal: double-quoted, with
 * '"' and '\\' escaped; preceded by ',' unless it is the first. */
int	buf_add_element(struct buf *, const char *s, int first);
void	buf_free(struct buf *);

/* Length of the well-formed UTF-8 sequence at s (n > 0 bytes there), or
 * 0: overlongs, surrogates and values past U+10FFFF are refused. */
size_t	utf8_len(const unsigned char *s, size_t n);

/* Make s valid UTF-8 text without control bytes, in place: each byte of
 * an invalid sequence and each control byte becomes '?'.  PostgreSQL
 * refuses invalid UTF-8 in text columns, and headers carry anything. */
void	text_clean(char *s);

#endif
