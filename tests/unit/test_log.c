/*
 * log_q and log_qn: values as a grep for key=value reads them, and the
 * bound on what one value may take.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"

static void
test_quoting(void **state)
{
	(void)state;
	assert_string_equal(log_q("plain"), "plain");
	assert_string_equal(log_q(NULL), "-");
	assert_string_equal(log_q(""), "\"\"");
	assert_string_equal(log_q("two words"), "\"two words\"");
	assert_string_equal(log_q("a=b"), "\"a=b\"");
	assert_string_equal(log_q("q\"b\\"), "\"q\\\"b\\\\\"");
	assert_string_equal(log_q("cr\r\nl\xc3\xa9"),
	    "\"cr\\x0d\\x0al\\xc3\\xa9\"");
	assert_string_equal(log_qn("a\0b", 3), "\"a\\x00b\"");
}

/* Long values are cut with "..." inside the slot, whatever the escapes
 * at the cut: 8-bit bytes take four octets each. */
static void
test_bound(void **state)
{
	char	 in[2000];
	size_t	 fill;

	(void)state;
	for (fill = 490; fill < 520; fill++) {
		memset(in, 'a', fill);
		memset(in + fill, 0xe9, sizeof(in) - fill);
		for (int k = 0; k < 9; k++) {
			const char *q = log_qn(in, sizeof(in));
			size_t n = strlen(q);

			assert_true(n <= 511);
			assert_string_equal(q + n - 4, "...\"");
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
