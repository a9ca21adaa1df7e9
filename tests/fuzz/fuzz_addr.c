/*
 * libFuzzer target for msg_addr.
 *
 * The input (up to its first NUL) is parsed as an address list, and it
 * and every address found go through msg_addr_first, msg_addr_normalize
 * and msg_addr_split_recipient.  Besides crashes and sanitizer reports it
 * aborts when a property fails: the count matches the list, every entry
 * has an '@' with bytes on both sides, display names are trimmed and
 * non-empty, first agrees with the list, and the outputs of normalize
 * and split are lowercase pieces of their input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg_addr.h"

#define CHECK(x)	do { if (!(x)) { fprintf(stderr, \
	"fuzz_addr: check failed: %s (line %d)\n", #x, __LINE__); \
	abort(); } } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
fz_has_upper(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			return 1;
	return 0;
}

static int
fz_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void
fz_normalize(const char *s)
{
	char	*n = msg_addr_normalize(s);

	if (n == NULL)
		return;
	CHECK(strcasecmp(n, s) == 0 && !fz_has_upper(n));
	CHECK(strchr(n, '@') == strrchr(n, '@') && n[0] != '@');
	free(n);
}

static void
fz_split(const char *s, size_t size)
{
	char	 local[64], suffix[64], domain[64];
	char	*big;
	size_t	 n;

	if (msg_addr_split_recipient(s, local, sizeof(local), suffix,
	    sizeof(suffix), domain, sizeof(domain)) == 0) {
		CHECK(local[0] != '\0' && domain[0] != '\0');
		CHECK(strchr(local, '+') == NULL);
		CHECK(!fz_has_upper(local) && !fz_has_upper(domain));
		n = strlen(local) - strlen(suffix);
		CHECK(strlen(suffix) <= strlen(local));
		CHECK(strcmp(local + n, suffix) == 0);
		CHECK(suffix[0] == '\0' || local[n - 1] == '-');
		CHECK(strchr(suffix, '-') == NULL);
	}
	/* Buffers as big as the input: only "not an address" fails. */
	if ((big = malloc(3 * (size + 1))) == NULL)
		return;
	msg_addr_split_recipient(s, big, size + 1, big + size + 1, size + 1,
	    big + 2 * (size + 1), size + 1);
	free(big);
}

static void
fz_list(const char *s)
{
	struct msg_addr_list	 l;
	size_t			 i, n;
	char			*first;
	int			 count;

	if ((count = msg_addr_parse_list(s, &l)) < 0)
		return;
	CHECK((size_t)count == l.n);
	for (i = 0; i < l.n; i++) {
		const char *a = l.v[i].addr, *d = l.v[i].display;

		/* '@' may also sit in a quoted local part or a literal */
		CHECK(a != NULL && a[0] != '@' && strchr(a, '@') != NULL);
		CHECK(strlen(a) >= 3);
		if (d != NULL) {
			n = strlen(d);
			CHECK(n > 0 && !fz_ws(d[0]) && !fz_ws(d[n - 1]));
		}
		if (i < 8) {
			fz_normalize(a);
			fz_split(a, strlen(a));
		}
	}
	first = msg_addr_first(s);
	if (l.n == 0) {
		CHECK(first == NULL);
	} else if (first != NULL) {
		CHECK(strcasecmp(first, l.v[0].addr) == 0);
		CHECK(!fz_has_upper(first));
	}
	free(first);
	msg_addr_list_free(&l);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	fz_list(s);
	fz_normalize(s);
	fz_split(s, strlen(s));
	free(s);
	return 0;
}
