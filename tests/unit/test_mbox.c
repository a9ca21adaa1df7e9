/*
 * mbox_write: separator, mboxrd quoting across part boundaries, endings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mbox.h"

static char *
render(const char *sender, const char **parts, int n, size_t *len)
{
	struct iovec	 iov[4];
	char		*out = NULL;
	FILE		*f = open_memstream(&out, len);

	for (int i = 0; i < n; i++) {
		iov[i].iov_base = (void *)parts[i];
		iov[i].iov_len = strlen(parts[i]);
	}
	assert_non_null(f);
	/* 2026-12-04 18:00:00 UTC */
	assert_int_equal(mbox_write(f, sender, 1796407200, iov, n), 0);
	fclose(f);
	return out;
}

static void
test_quoting(void **state)
{
	const char *parts[] = {
		"Subject: x\r\n\r\n",
		"From here\r\n>From there\r\nnot From\r\nFrom",
		" split\r\n",
	};
	size_t	 len;
	char	*out;

	(void)state;
	out = render("anne@example.com", parts, 3, &len);
	assert_string_equal(out,
	    "From anne@example.com Fri Dec  4 18:00:00 2026\n"
	    "Subject: x\n\n"
	    ">From here\n>>From there\nnot From\n>From split\n"
	    "\n");
	free(out);
}

static void
test_endings(void **state)
{
	const char *no_end[] = { "Subject: x\n\nlast line" };
	const char *fromish[] = { "Frob: x\n\nFrom\n" };
	const char *crlf_split[] = { "A: b\r", "\n\r", "\nbare\rcr\r" };
	size_t	 len;
	char	*out;

	(void)state;
	out = render("", no_end, 1, &len);
	assert_string_equal(out,
	    "From MAILER-DAEMON Fri Dec  4 18:00:00 2026\n"
	    "Subject: x\n\nlast line\n\n");
	free(out);
	out = render(NULL, fromish, 1, &len);
	assert_string_equal(out,
	    "From MAILER-DAEMON Fri Dec  4 18:00:00 2026\n"
	    "Frob: x\n\nFrom\n\n");
	free(out);
	/* A CRLF split over two parts is still one line end; a bare CR
	 * stays. */
	out = render("a@b", crlf_split, 3, &len);
	assert_string_equal(out,
	    "From a@b Fri Dec  4 18:00:00 2026\n"
	    "A: b\n\nbare\rcr\r\n\n");
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_endings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
