/*
 * libFuzzer target for smtp_reply_parse and smtp_ehlo_caps.  Beyond not
 * crashing, it checks the promises smtp.h makes about the result, since
 * the outgoing stage stores and logs the text without looking at it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

/* The text is printable ASCII or whole, valid UTF-8 sequences. */
static void
check_text(const char *t)
{
	const unsigned char *u = (const unsigned char *)t;
	size_t i = 0, k, j;

	if (strlen(t) > 511)
		abort();
	while (u[i] != '\0') {
		if (u[i] < 0x20 || u[i] == 0x7f)
			abort();
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if (u[i] >= 0xc2 && u[i] <= 0xdf)
			k = 2;
		else if (u[i] >= 0xe0 && u[i] <= 0xef)
			k = 3;
		else if (u[i] >= 0xf0 && u[i] <= 0xf4)
			k = 4;
		else
			abort();
		for (j = 1; j < k; j++)
			if (u[i + j] < 0x80 || u[i + j] > 0xbf)
				abort();
		i += k;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct smtp_reply r, again;
	unsigned long size_max;
	long n;

	n = smtp_reply_parse(s, size, &r);
	if (n < -1 || n > (long)size)
		abort();
	if (n <= 0)
		return 0;
	if (r.code < 200 || r.code > 559 || r.nlines < 1)
		abort();
	check_text(r.text);
	if (strlen(r.enhanced) > 9 ||
	    (r.enhanced[0] != '\0' && r.enhanced[0] - '0' != r.code / 100))
		abort();
	/* A reply ends where it ends: more bytes after it change nothing. */
	if (smtp_reply_parse(s, (size_t)n, &again) != n ||
	    again.code != r.code || strcmp(again.text, r.text) != 0)
		abort();
	(void)smtp_ehlo_caps(s, (size_t)n, &size_max);
	return 0;
}
