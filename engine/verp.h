/*
 * verp: variable envelope return paths in Mailman's default format,
 * "{list}-bounces+{local}={domain}@{list domain}".
 */
#ifndef QUIRE_VERP_H
#define QUIRE_VERP_H

#include <stddef.h>

/* Encode: bounces is "list-bounces@example.org", rcpt the member.
 * Returns the length written (not counting NUL), or -1 if it does not fit,
 * either address lacks a local part or domain, the bounces local part
 * holds '+', or either holds a space or control byte. */
int	verp_encode(const char *bounces, const char *rcpt, char *out, size_t);

/* Decode a VERP address back to the member address; -1 if `addr' is not a
 * VERP address (no '+' after a non-empty list part, no '=' after it with
 * text on both sides, more than one '@', a space or control byte) or the
 * member does not fit.  The member's domain is lowercased, its local part
 * kept as written.  Returns the length written. */
int	verp_decode(const char *addr, char *member, size_t);

#endif
