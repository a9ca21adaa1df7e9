/*
 * buf and text_clean: growth, formatting, and what reaches a text column.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"

static void
test_growth(void **state)
{
	struct buf	 b = { 0 };
	char		 chunk[1000];

	(void)state;
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_add(&b, chunk, sizeof(chunk)), 0);
	assert_int_equal(b.len, 1000000);
	assert_int_equal(b.p[b.len], '\0');
	assert_int_equal(buf_addf(&b, "%d-%s", 42, "z"), 0);
	assert_string_equal(b.p + 1000000, "42-z");
	buf_free(&b);
	assert_null(b.p);
	assert_int_equal(buf_add(&b, "", 0), 0);
	assert_string_equal(b.p, "");
	buf_free(&b);
}

static void
test_text_clean(void **state)
{
	static const struct {
		const char	*in;
		const char	*out;
	} cases[] = {
		{ "plain", "plain" },
		{ "tab\there", "tab?here" },
		{ "Gr\xc3\xbc\xc3\x9f" "e", "Gr\xc3\xbc\xc3\x9f" "e" },
		{ "bad \xff byte", "bad ? byte" },
		{ "cut \xc3", "cut ?" },
		{ "overlong \xc0\xaf", "overlong ??" },
		{ "surrogate \xed\xa0\x80", "surrogate ???" },
		{ "emoji \xf0\x9f\x98\x80", "emoji \xf0\x9f\x98\x80" },
		{ "too high \xf4\x90\x80\x80", "too high ????" },
		{ "del\x7f", "del?" },
	};
	char	 s[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		snprintf(s, sizeof(s), "%s", cases[i].in);
		text_clean(s);
		assert_string_equal(s, cases[i].out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_text_clean),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
