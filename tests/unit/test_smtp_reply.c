/*
 * smtp_reply_parse and smtp_ehlo_caps: well-formed replies, then what a
 * hostile or broken relay may send.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smtp.h"

static long
parse(const char *s, struct smtp_reply *r)
{
	return smtp_reply_parse(s, strlen(s), r);
}

static void
test_single_line(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse("250 2.0.0 Ok: queued as 4XyZ\r\n", &r), 30);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 1);
	assert_string_equal(r.text, "2.0.0 Ok: queued as 4XyZ");
	assert_string_equal(r.enhanced, "2.0.0");
}

static void
test_multi_line_lf(void **state)
{
	const char *s = "250-mx.example.org\n250-PIPELINING\n250 8BITMIME\n";
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse(s, &r), (long)strlen(s));
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 3);
	assert_string_equal(r.text, "mx.example.org PIPELINING 8BITMIME");
	assert_string_equal(r.enhanced, "");
}

static void
test_stops_at_reply_end(void **state)
{
	const char *s = "550 5.1.1 <a@b>: no\r\n250 2.1.5 Ok\r\n";
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse(s, &r), 21);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.enhanced, "5.1.1");
	assert_int_equal(parse(s + 21, &r), 14);
	assert_int_equal(r.code, 250);
}

static void
test_bare_code_and_empty_texts(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse("354\r\n", &r), 5);
	assert_int_equal(r.code, 354);
	assert_string_equal(r.text, "");
	assert_int_equal(parse("250-\r\n250-x\r\n250 \r\n", &r), 19);
	assert_int_equal(r.nlines, 3);
	assert_string_equal(r.text, "x");
}

static void
test_needs_more(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse("", &r), 0);
	assert_int_equal(parse("2", &r), 0);
	assert_int_equal(parse("250", &r), 0);
	assert_int_equal(parse("250\r", &r), 0);
	assert_int_equal(parse("250 Ok", &r), 0);
	assert_int_equal(parse("250-a\r\n", &r), 0);
	assert_int_equal(parse("250-a\r\n25", &r), 0);
	assert_int_equal(parse("250-a\r\n250 b", &r), 0);
}

static void
test_garbage(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 400 Bad Request\r\n", &r), -1);
	assert_int_equal(parse("H", &r), -1);	/* no need to wait */
	assert_int_equal(parse("\r\n", &r), -1);
	assert_int_equal(parse("\n", &r), -1);
	assert_int_equal(parse("25\r\n", &r), -1);
	assert_int_equal(parse("2500 x\r\n", &r), -1);
	assert_int_equal(parse("250x\r\n", &r), -1);
	assert_int_equal(parse("250\r\r\n", &r), -1);
	assert_int_equal(parse("150 x\r\n", &r), -1);
	assert_int_equal(parse("650 x\r\n", &r), -1);
	assert_int_equal(parse("260 x\r\n", &r), -1);
	assert_int_equal(parse("25a x\r\n", &r), -1);
	assert_int_equal(parse(" 250 x\r\n", &r), -1);
	assert_int_equal(parse("250-a\r\nxyz", &r), -1);
}

static void
test_code_mismatch(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse("250-a\r\n251 b\r\n", &r), -1);
	/* Seen before the second line is complete. */
	assert_int_equal(parse("250-a\r\n550", &r), -1);
	assert_int_equal(parse("250-a\r\n250-b\r\n450-c", &r), -1);
}

static void
test_nul(void **state)
{
	static const char s[] = "250 a\0b\r\n";
	static const char hole[] = "250-a\r\n\0";
	struct smtp_reply r;

	(void)state;
	assert_int_equal(smtp_reply_parse(s, sizeof(s) - 1, &r), -1);
	assert_int_equal(smtp_reply_parse(hole, sizeof(hole) - 1, &r), -1);
}

static void
test_control_and_8bit(void **state)
{
	/* A tab, a bell, a bare CR, DEL, valid UTF-8 (é, €, 😀), a stray
	 * continuation byte, an overlong NUL, a surrogate, a cut sequence. */
	static const char s[] = "550 a\tb\ac\rd\x7f"
	    "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\x80|\xc0\x80|"
	    "\xed\xa0\x80|\xe2\x82\r\n";
	struct smtp_reply r;

	(void)state;
	assert_int_equal(smtp_reply_parse(s, sizeof(s) - 1, &r),
	    (long)sizeof(s) - 1);
	assert_string_equal(r.text, "a b?c?d?\xc3\xa9\xe2\x82\xac"
	    "\xf0\x9f\x98\x80|?|??|???|??");
}

static void
test_long_line_cut(void **state)
{
	size_t n = 10 * 1024, i;
	char *s = malloc(n + 8);
	struct smtp_reply r;

	(void)state;
	memcpy(s, "550 ", 4);
	memset(s + 4, 'x', n);
	memcpy(s + 4 + n, "\r\n", 3);
	assert_int_equal(smtp_reply_parse(s, n + 6, &r), (long)n + 6);
	assert_int_equal(strlen(r.text), 511);
	for (i = 0; i < 511; i++)
		assert_int_equal(r.text[i], 'x');
	/* Without its end, the same line is only more input to wait for. */
	assert_int_equal(smtp_reply_parse(s, n + 4, &r), 0);
	free(s);
}

static void
test_cut_keeps_utf8_whole(void **state)
{
	char s[600];
	struct smtp_reply r;

	(void)state;
	/* 509 ASCII bytes, then a 3-byte sequence that would end at 512. */
	memcpy(s, "550 ", 4);
	memset(s + 4, 'y', 509);
	memcpy(s + 513, "\xe2\x82\xac" "zz\r\n", 7);
	assert_int_equal(smtp_reply_parse(s, 520, &r), 520);
	assert_int_equal(strlen(r.text), 509);
}

static void
test_cut_across_lines(void **state)
{
	char s[2048];
	size_t off = 0;
	int i;
	struct smtp_reply r;

	(void)state;
	for (i = 0; i < 20; i++) {
		memcpy(s + off, i < 19 ? "451-" : "451 ", 4);
		memset(s + off + 4, 'a' + i, 40);
		memcpy(s + off + 44, "\r\n", 2);
		off += 46;
	}
	assert_int_equal(smtp_reply_parse(s, off, &r), (long)off);
	assert_int_equal(r.nlines, 20);
	/* 12 lines of 40 and 11 spaces make 491; the 13th is cut. */
	assert_int_equal(strlen(r.text), 511);
	assert_int_equal(r.text[490], 'l');
	assert_int_equal(r.text[491], ' ');
	assert_int_equal(r.text[510], 'm');
}

static void
test_too_long_reply(void **state)
{
	size_t n = SMTP_REPLY_MAX + 100, off;
	char *s = malloc(n);
	struct smtp_reply r;

	(void)state;
	for (off = 0; off + 8 <= n; off += 8)
		memcpy(s + off, "250-abc\n", 8);
	assert_int_equal(smtp_reply_parse(s, off, &r), -1);
	memset(s + 4, 'a', n - 4);
	assert_int_equal(smtp_reply_parse(s, n, &r), -1);
	free(s);
}

static void
test_enhanced(void **state)
{
	struct smtp_reply r;

	(void)state;
	parse("451 4.7.1 Try later\r\n", &r);
	assert_string_equal(r.enhanced, "4.7.1");
	parse("550 5.123.456\r\n", &r);
	assert_string_equal(r.enhanced, "5.123.456");
	parse("550 4.1.1 class differs\r\n", &r);
	assert_string_equal(r.enhanced, "");
	parse("550 5.1234.1 x\r\n", &r);
	assert_string_equal(r.enhanced, "");
	parse("550 5.1.1x\r\n", &r);
	assert_string_equal(r.enhanced, "");
	parse("550 5.1. x\r\n", &r);
	assert_string_equal(r.enhanced, "");
	parse("550 5..1\r\n", &r);
	assert_string_equal(r.enhanced, "");
	parse("550-x\r\n550 5.1.1 second line only\r\n", &r);
	assert_string_equal(r.enhanced, "");
}

static void
test_boundaries(void **state)
{
	/* Fuzzing (tests/fuzz/fuzz_smtp_reply.c, about 7 million runs)
	 * found no crash; these sit where it spent its time: a final line
	 * cut before its end, a lone digit, a code point past U+10FFFF. */
	static const struct {
		const char	*s;
		size_t		 n;
		long		 want;
	} cases[] = {
		{ "250-\n250", 8, 0 },
		{ "2", 1, 0 },
		{ "550 \xf4\x90\x80\x80\n", 9, 9 },
	};
	struct smtp_reply r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(smtp_reply_parse(cases[i].s, cases[i].n, &r),
		    cases[i].want);
	assert_string_equal(r.text, "????");
}

static void
test_ehlo_caps(void **state)
{
	const char *s = "250-mx.example.org Hello\r\n"
	    "250-pipelining\r\n250-SIZE 10240000\r\n250-XVERP\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 DSN\r\n";
	unsigned long size;

	(void)state;
	assert_int_equal(smtp_ehlo_caps(s, strlen(s), &size),
	    SMTP_CAP_PIPELINING | SMTP_CAP_SIZE | SMTP_CAP_XVERP |
	    SMTP_CAP_ENHANCED | SMTP_CAP_8BITMIME);
	assert_int_equal(size, 10240000);
}

static void
test_ehlo_caps_edges(void **state)
{
	const char *one = "250 PIPELINING\r\n";
	const char *bad = "250-x\n250-SIZE 99999999999999999999999\n"
	    "250-PIPELININGX\n250-XVERPY\n250 SIZE";
	const char *lf = "250-x\n250 SIZE 100";
	unsigned long size = 7;

	(void)state;
	/* A one-line reply has only the relay's name. */
	assert_int_equal(smtp_ehlo_caps(one, strlen(one), &size), 0);
	assert_int_equal(size, 0);
	assert_int_equal(smtp_ehlo_caps(bad, strlen(bad), &size),
	    SMTP_CAP_SIZE);
	assert_int_equal(size, 0);
	/* An unterminated last line is not a line. */
	assert_int_equal(smtp_ehlo_caps(lf, strlen(lf), &size), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_multi_line_lf),
		cmocka_unit_test(test_stops_at_reply_end),
		cmocka_unit_test(test_bare_code_and_empty_texts),
		cmocka_unit_test(test_needs_more),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_code_mismatch),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_control_and_8bit),
		cmocka_unit_test(test_long_line_cut),
		cmocka_unit_test(test_cut_keeps_utf8_whole),
		cmocka_unit_test(test_cut_across_lines),
		cmocka_unit_test(test_too_long_reply),
		cmocka_unit_test(test_enhanced),
		cmocka_unit_test(test_boundaries),
		cmocka_unit_test(test_ehlo_caps),
		cmocka_unit_test(test_ehlo_caps_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
