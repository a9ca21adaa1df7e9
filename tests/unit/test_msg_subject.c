/*
 * Units for msg_subject: Mailman 3.3.8's prefixing rules (and our
 * documented differences) as a table of exact values, then folding and
 * hostile input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "msg_encword.h"
#include "msg_subject.h"

#define B	"[Bench] "
#define GRUSSE	"Gr\xc3\xbc\xc3\x9f" "e"
#define GRUSSE_B "=?utf-8?b?R3LDvMOfZQ==?="

struct subj_case {
	const char	*raw;
	const char	*prefix;
	long		 number;
	const char	*out;
	const char	*stripped;
};

static const struct subj_case subj_cases[] = {
	{ "hello", B, 1, B "hello", "hello" },
	{ "Re: [Bench] Re: [Bench] hello", B, 1, B "Re: hello", "Re: hello" },
	{ "AW: Sv: [Bench] x", B, 1, B "Re: x", "Re: x" },
	{ "re: RE: Re[2]: vs: x", B, 1, B "Re: x", "Re: x" },
	{ "Re[2]: x", B, 1, B "Re: x", "Re: x" },
	{ "RE : x", B, 1, B "Re: x", "Re: x" },
	{ "  Re:x", B, 1, B "Re: x", "Re: x" },
	{ "Re: Re: ", B, 1, B "Re: (no subject)", "Re: (no subject)" },
	{ NULL, B, 1, B "(no subject)", "(no subject)" },
	{ "", B, 1, B "(no subject)", "(no subject)" },
	{ " \t ", B, 1, B "(no subject)", "(no subject)" },
	{ "[Bench]", B, 1, B "(no subject)", "(no subject)" },
	{ "Re: [Bench]", B, 1, B "Re: (no subject)", "Re: (no subject)" },
	{ "[Bench] hello", B, 1, B "hello", "hello" },
	{ "hello [Bench] world", B, 1, B "hello world", "hello world" },
	{ "[Bench]hello", B, 1, B "[Bench]hello", "[Bench]hello" },
	{ "[bench] hello", B, 1, B "[bench] hello", "[bench] hello" },
	{ "[Be[Bench] nch] x", B, 1, B "[Bench] x", "[Bench] x" },
	{ "Reply: x", B, 1, B "Reply: x", "Reply: x" },
	{ "Re[]: x", B, 1, B "Re[]: x", "Re[]: x" },
	{ "Re[2: x", B, 1, B "Re[2: x", "Re[2: x" },
	{ "Fwd: Re: x", B, 1, B "Fwd: Re: x", "Fwd: Re: x" },
	{ "x Re: y", B, 1, B "x Re: y", "x Re: y" },
	{ "R", B, 1, B "R", "R" },
	{ "Re", B, 1, B "Re", "Re" },
	{ "  hello  world  ", B, 1, B "hello  world", "hello  world" },
	/* encoded subjects are decoded first */
	{ "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", B, 1, B GRUSSE_B, GRUSSE },
	{ "Re: =?utf-8?q?Gr=C3=BC=C3=9Fe?=", B, 1, B "Re: " GRUSSE_B,
	  "Re: " GRUSSE },
	{ "=?UTF-8?Q?Re=3A_=5BBench=5D_hi?=", B, 1, B "Re: hi", "Re: hi" },
	{ "=?iso-8859-1?q?[Bench]_caf=E9?=", B, 1, B "=?utf-8?b?Y2Fmw6k=?=",
	  "caf\xc3\xa9" },
	{ "Re: hello " GRUSSE, B, 1, B "Re: hello " GRUSSE_B,
	  "Re: hello " GRUSSE },
	{ GRUSSE " Re: x", B, 1,
	  B "=?utf-8?b?R3LDvMOfZSBSZTogeA==?=", GRUSSE " Re: x" },
	{ "caf\xe9", B, 1, B "=?utf-8?b?Y2Fm77+9?=", "caf\xef\xbf\xbd" },
	{ "=?utf-8?q?abc", B, 1, B "=?utf-8?q?abc", "=?utf-8?q?abc" },
	{ "=?x-unknown?q?abc?=", B, 1, B "=?x-unknown?q?abc?=",
	  "=?x-unknown?q?abc?=" },
	/* decoding yields text a reader would decode again: encode it */
	{ "hi =?utf-8?q?=3D=3Futf-8=3Fq=3Fx=3F=3D?=", B, 1,
	  B "hi =?utf-8?b?PT91dGYtOD9xP3g/PQ==?=", "hi =?utf-8?q?x?=" },
	{ "=?utf-8?q?a?= =?x?q?b?=", B, 1, B "a =?x?q?b?=", "a =?x?q?b?=" },
	/* CR or LF in a value must not start a new header line */
	{ "a\r\nb", B, 1, B "=?utf-8?q?a=0D=0Ab?=", "a\r\nb" },
	{ "=?utf-8?q?a=0D=0Ab?=", B, 1, B "a  b", "a  b" },
	/* numbered prefixes */
	{ "Re: [list 41] hi", "[list %d] ", 42, "[list 42] Re: hi", "Re: hi" },
	{ "x", "[list %05d] ", 42, "[list 00042] x", "x" },
	{ "[list 00041] x", "[list %05d] ", 42, "[list 00042] x", "x" },
	{ "[list  7 ] x", "[list %05d] ", 42, "[list 00042] x", "x" },
	{ "[list ] x", "[list %d] ", 42, "[list 42] [list ] x", "[list ] x" },
	{ "x", "[list %3d] ", 7, "[list   7] x", "x" },
	{ "12: hi", "%d: ", 42, "42: hi", "hi" },
	{ "x", "50%% off ", 1, "50%% off x", "x" },
	{ "[4%] x", "[%d%%] ", 5, "[5%] x", "x" },
	{ "[4] x", "[%d] ", -3, "[-3] x", "x" },
	{ "x", "%%d ", 5, "%%d x", "x" },
	{ "x", "[%%%d] ", 5, "[%5] x", "x" },
	{ "x", "[%99999999999999999999d] ", 5,
	  "[                               5] x", "x" },
	/* non-ASCII prefix: no plain part to keep */
	{ "hi", "[Gr\xc3\xbc\xc3\x9f" "e] ", 1, "=?utf-8?b?W0dyw7zDn2VdIGhp?=",
	  "hi" },
	/* blank prefix: Mailman leaves the subject alone */
	{ "Re: hi", "  ", 1, "Re: hi", "Re: hi" },
	{ "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "", 1, "=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
	  GRUSSE },
	{ NULL, NULL, 1, "", "" },
};

static void
test_table(void **state)
{
	size_t	 i;
	char	*s, *st;

	(void)state;
	for (i = 0; i < sizeof(subj_cases) / sizeof(subj_cases[0]); i++) {
		const struct subj_case *c = &subj_cases[i];

		s = msg_subject_prefix(c->raw, c->prefix, c->number, "\r\n",
		    &st);
		assert_non_null(s);
		if (strcmp(s, c->out) != 0 || strcmp(st, c->stripped) != 0)
			print_message("case %zu: got \"%s\" / \"%s\"\n", i, s,
			    st);
		assert_string_equal(s, c->out);
		assert_string_equal(st, c->stripped);
		free(s);
		free(st);
	}
	/* stripped is optional */
	s = msg_subject_prefix("Re: x", B, 1, "\r\n", NULL);
	assert_string_equal(s, B "Re: x");
	free(s);
}

/* Drop every eol, as an unfolding reader does. */
static char *
unfold(const char *s)
{
	char	*u = strdup(s), *p, *q;

	for (p = q = u; *p != '\0'; p++)
		if (*p != '\r' && *p != '\n')
			*q++ = *p;
	*q = '\0';
	return u;
}

/* Lines within 78 columns after "Subject: ", and a reader gets the text
 * back. */
static void
check_folded(const char *out, const char *want, int fits)
{
	const char	*line = out, *e;
	size_t		 col = 9;
	char		*u, *d;

	while (1) {
		e = strstr(line, "\r\n");
		if (fits)
			assert_true(col + (e ? (size_t)(e - line) :
			    strlen(line)) <= 78);
		if (e == NULL)
			break;
		assert_true(e[2] == ' ' || e[2] == '\t');
		line = e + 2;
		col = 0;
	}
	u = unfold(out);
	d = msg_encword_decode(u);
	assert_string_equal(d, want);
	free(d);
	free(u);
}

static void
test_folding(void **state)
{
	char	 raw[4096], want[4200];
	char	*s;
	size_t	 i, len;

	(void)state;
	for (i = len = 0; i < 40; i++)
		len += sprintf(raw + len, "%sword%02zu", i ? " " : "", i);
	snprintf(want, sizeof(want), B "%s", raw);
	s = msg_subject_prefix(raw, B, 1, "\r\n", NULL);
	assert_non_null(strstr(s, "\r\n "));
	check_folded(s, want, 1);
	free(s);
	s = msg_subject_prefix(raw, B, 1, NULL, NULL);
	assert_string_equal(s, want);
	free(s);

	/* non-ASCII over many lines */
	for (i = len = 0; i < 100; i++)
		len += sprintf(raw + len, "%s\xc3\xa9t\xc3\xa9", i ? " " : "");
	snprintf(want, sizeof(want), B "%s", raw);
	s = msg_subject_prefix(raw, B, 1, "\r\n", NULL);
	assert_memory_equal(s, B "=?utf-8?", 16);
	check_folded(s, want, 1);
	free(s);

	/* a long plain run before the first non-ASCII word: the fold goes
	 * before the space that precedes the encoded words */
	memset(raw, 'x', 60);
	strcpy(raw + 60, " " GRUSSE);
	snprintf(want, sizeof(want), B "%s", raw);
	s = msg_subject_prefix(raw, B, 1, "\r\n", NULL);
	assert_int_equal(strlen(s), 8 + 60 + 3 + strlen(GRUSSE_B));
	assert_string_equal(s + 68, "\r\n " GRUSSE_B);
	check_folded(s, want, 1);
	free(s);

	/* one word too long to fold stays whole */
	memset(raw, 'y', 200);
	raw[200] = '\0';
	s = msg_subject_prefix(raw, B, 1, "\r\n", NULL);
	assert_int_equal(strlen(s), 208);
	free(s);
}

/* Big and hostile subjects: all linear, none crash. */
static void
test_huge(void **state)
{
	const size_t	 n = 100000;
	char		*raw, *s, *st;
	size_t		 i;

	(void)state;
	raw = malloc(n * 8 + 1);
	assert_non_null(raw);
	for (i = 0; i < n; i++)
		memcpy(raw + i * 8, B, 8);
	raw[n * 8] = '\0';
	s = msg_subject_prefix(raw, B, 1, "\r\n", &st);
	assert_string_equal(s, B "(no subject)");
	assert_string_equal(st, "(no subject)");
	free(s);
	free(st);

	/* a digit run against a prefix that starts with a hole */
	memset(raw, '1', n * 8);
	s = msg_subject_prefix(raw, "%d: ", 3, "\r\n", &st);
	assert_int_equal(strlen(st), n * 8);
	free(s);
	free(st);

	for (i = 0; i < n; i++)
		memcpy(raw + i * 8, "Re[1]:  ", 8);
	s = msg_subject_prefix(raw, B, 1, "\r\n", NULL);
	assert_string_equal(s, B "Re: (no subject)");
	free(s);

	for (i = 0; i < n; i++)
		memcpy(raw + i * 8, "=?x?q?a ", 8);
	s = msg_subject_prefix(raw, B, 1, "\r\n", &st);
	assert_int_equal(strlen(st), n * 8 - 1);
	free(s);
	free(st);
	free(raw);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_folding),
		cmocka_unit_test(test_huge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
