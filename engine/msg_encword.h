/*
 * msg_encword: RFC 2047 encoded words.
 */
#ifndef QUIRE_MSG_ENCWORD_H
#define QUIRE_MSG_ENCWORD_H

#include <stddef.h>

/* Decode an unfolded header value to UTF-8: encoded words are decoded
 * (B and Q, any charset iconv knows; RFC 2231 language tags ignored),
 * whitespace between adjacent encoded words is dropped, raw 8-bit bytes
 * that are valid UTF-8 pass through, invalid bytes become U+FFFD, and an
 * encoded word that cannot be decoded is kept literally.  malloc'd. */
char	*msg_encword_decode(const char *value);

/* Encode UTF-8 text for a header: returned as is when it is printable
 * ASCII, else as UTF-8 encoded words ("=?utf-8?q?...?=" or "?b?", the
 * shorter), each at most 75 octets, separated by `eol' and one space so
 * that the field stays within 78 columns given `used' octets already on
 * the first line (e.g. "Subject: ").  malloc'd. */
char	*msg_encword_encode(const char *utf8, size_t used, const char *eol);

#endif
