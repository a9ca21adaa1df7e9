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
 * encoded word that cannot be decoded is kept literally.  malloc'd, NULL
 * on ENOMEM.
 *
 * Details: words are found anywhere, not only between whitespace, as
 * mail readers do; adjacent words of one charset are converted together,
 * so a character split across words survives; bytes invalid in the
 * word's charset become U+FFFD; NUL, CR and LF produced by decoding
 * become spaces (raw ones pass through).  "Cannot be decoded" means an
 * unknown charset, a name with bytes other than [A-Za-z0-9._:+()-], or
 * malformed base64 (missing padding is accepted). */
char	*msg_encword_decode(const char *value);

/* Encode UTF-8 text for a header: returned as is when it is printable
 * ASCII, else as UTF-8 encoded words ("=?utf-8?q?...?=" or "?b?", the
 * shorter), each at most 75 octets, separated by `eol' and one space so
 * that the field stays within 78 columns given `used' octets already on
 * the first line (e.g. "Subject: ").  malloc'd.
 *
 * Printable ASCII includes HTAB; plain text is neither folded nor
 * checked for "=?".  One encoding serves the whole text (Q on a tie),
 * and Q uses only the characters RFC 2047 allows in a phrase, so the
 * words are safe in a display name too.  No character is split between
 * words; invalid UTF-8 is encoded as U+FFFD.  When `used' leaves no room
 * the first word holds one character and runs past 78 columns.  `eol'
 * NULL separates the words with a single space.  NULL on ENOMEM. */
char	*msg_encword_encode(const char *utf8, size_t used, const char *eol);

/* As msg_encword_encode, but always as encoded words, even for printable
 * ASCII (e.g. text holding "=?", which a reader would try to decode);
 * "" stays "".  malloc'd, NULL on ENOMEM. */
char	*msg_encword_encode_all(const char *utf8, size_t used,
	    const char *eol);

#endif
