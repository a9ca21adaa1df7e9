/*
 * verp_encode and verp_decode: Mailman's format, round trips, and the
 * addresses either must refuse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "verp.h"

static void
test_encode(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(verp_encode("bench-bounces@example.org",
	    "anne@example.com", out, sizeof(out)), 42);
	assert_string_equal(out, "bench-bounces+anne=example.com@example.org");
}

static void
test_decode(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(verp_decode(
	    "bench-bounces+anne=example.com@example.org", out, sizeof(out)),
	    16);
	assert_string_equal(out, "anne@example.com");
	/* The domain is lowercased, the local part is not. */
	assert_int_equal(verp_decode("l-bounces+Anne.X=Example.COM@h.org",
	    out, sizeof(out)), 18);
	assert_string_equal(out, "Anne.X@example.com");
}

static void
test_round_trips(void **state)
{
	static const char *members[] = {
		"anne@example.com",
		"a=b@example.com",		/* '=' in the local part */
		"x+tag@example.com",		/* '+' in the local part */
		"==@d.example",
		"a.b-c_d@sub.example.co.uk",
		"\"q\"@example.net",
	};
	char enc[256], dec[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
		assert_true(verp_encode("list-bounces@lists.example.org",
		    members[i], enc, sizeof(enc)) > 0);
		assert_int_equal(verp_decode(enc, dec, sizeof(dec)),
		    (int)strlen(members[i]));
		assert_string_equal(dec, members[i]);
	}
}

static void
test_encode_rejects(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(verp_encode("b@x.org", "anne", out, 64), -1);
	assert_int_equal(verp_encode("b@x.org", "@example.com", out, 64), -1);
	assert_int_equal(verp_encode("b@x.org", "anne@", out, 64), -1);
	assert_int_equal(verp_encode("bounces", "a@b", out, 64), -1);
	assert_int_equal(verp_encode("@x.org", "a@b", out, 64), -1);
	assert_int_equal(verp_encode("b+x@x.org", "a@b", out, 64), -1);
	assert_int_equal(verp_encode("b@x.org", "a b@c", out, 64), -1);
	assert_int_equal(verp_encode("b@x.org", "a\r\n@c", out, 64), -1);
	/* "b+a=c@x.org" is 11 bytes: it needs 12 with the NUL. */
	assert_int_equal(verp_encode("b@x.org", "a@c", out, 11), -1);
	assert_int_equal(verp_encode("b@x.org", "a@c", out, 12), 11);
	assert_string_equal(out, "b+a=c@x.org");
}

static void
test_decode_rejects(void **state)
{
	static const char *bad[] = {
		"",
		"bench-bounces@example.org",	/* no '+' */
		"anne+tag@example.org",		/* no '=' */
		"+anne=example.com@example.org",	/* no list part */
		"b+=example.com@example.org",	/* no member local part */
		"b+anne=@example.org",		/* no member domain */
		"b+anne=example.com@",		/* no list domain */
		"b+anne=example.com",		/* no '@' */
		"b+a@x=example.com@example.org",	/* two '@' */
		"b+anne=exa mple.com@example.org",
		"b+anne=example.com\r\n@example.org",
		"b@x+anne=example.com",		/* '+' after '@' */
	};
	char out[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(verp_decode(bad[i], out, sizeof(out)), -1);
	/* "anne@example.com" needs 17 bytes. */
	assert_int_equal(verp_decode("b+anne=example.com@x", out, 16), -1);
	assert_int_equal(verp_decode("b+anne=example.com@x", out, 17), 16);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_decode_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
