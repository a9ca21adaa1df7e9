/*
 * verp: Mailman's VERP format, "bounces-local+member-local=member-domain
 * @bounces-domain".  Decoding splits at the first '+' (a bounces address
 * has none, which encoding checks) and at the last '=' after it, since a
 * member's local part may hold '=' but a domain never does.
 */
#include <string.h>

#include "verp.h"

/* Bytes that never belong in an address we write or accept. */
static int
verp_bad_bytes(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return 1;
	return 0;
}

/* Split at the last '@'; both sides non-empty, or -1. */
static int
verp_split(const char *addr, size_t len, size_t *at)
{
	const char *p;

	p = memrchr(addr, '@', len);
	if (p == NULL || p == addr || p == addr + len - 1)
		return -1;
	*at = p - addr;
	return 0;
}

int
verp_encode(const char *bounces, const char *rcpt, char *out, size_t size)
{
	size_t blen = strlen(bounces), rlen = strlen(rcpt), bat, rat, need;

	if (verp_split(bounces, blen, &bat) < 0 ||
	    verp_split(rcpt, rlen, &rat) < 0)
		return -1;
	if (verp_bad_bytes(bounces, blen) || verp_bad_bytes(rcpt, rlen))
		return -1;
	/* A '+' in the list's part would make decoding ambiguous. */
	if (memchr(bounces, '+', bat) != NULL)
		return -1;
	need = blen + rlen + 1;		/* '+' added, '@' becomes '=' */
	if (need >= size || need > 0x7fffffff)
		return -1;
	memcpy(out, bounces, bat);
	out[bat] = '+';
	memcpy(out + bat + 1, rcpt, rat);
	out[bat + 1 + rat] = '=';
	memcpy(out + bat + 2 + rat, rcpt + rat + 1, rlen - rat - 1);
	memcpy(out + bat + 1 + rlen, bounces + bat, blen - bat);
	out[need] = '\0';
	return (int)need;
}

int
verp_decode(const char *addr, char *member, size_t size)
{
	size_t len = strlen(addr), at, llen, dlen, i;
	const char *plus, *eq, *dom;

	if (verp_split(addr, len, &at) < 0 || verp_bad_bytes(addr, len))
		return -1;
	plus = memchr(addr, '+', at);
	if (plus == NULL || plus == addr)
		return -1;
	eq = memrchr(plus + 1, '=', addr + at - plus - 1);
	if (eq == NULL || eq == plus + 1 || eq == addr + at - 1)
		return -1;
	llen = eq - plus - 1;
	dom = eq + 1;
	dlen = addr + at - dom;
	/* Only one '@': a second one would hide another address. */
	if (memchr(addr, '@', at) != NULL)
		return -1;
	if (llen + 1 + dlen >= size)
		return -1;
	memcpy(member, plus + 1, llen);
	member[llen] = '@';
	for (i = 0; i < dlen; i++) {
		char c = dom[i];

		member[llen + 1 + i] = c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
	}
	member[llen + 1 + dlen] = '\0';
	return (int)(llen + 1 + dlen);
}
