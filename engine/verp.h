/*
 * verp: variable envelope return paths in Mailman's default format,
 * "{list}-bounces+{local}={domain}@{list domain}".
 */
#ifndef QUIRE_VERP_H
#define QUIRE_VERP_H

#include <stddef.h>

/* Encode: bounces is "list-bounces@example.org", rcpt the member.
 * Returns the length written (not counting NUL), or -1 if it does not fit
 * or rcpt has no domain. */
int	verp_encode(const char *bounces, const char *rcpt, char *out, size_t);

/* Decode a VERP address back to the member address; -1 if `addr' is not a
 * VERP address.  Output lowercased domain kept as written. */
int	verp_decode(const char *addr, char *member, size_t);

#endif
