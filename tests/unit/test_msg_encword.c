/*
 * Units for msg_encword: decode and encode tables with exact bytes, the
 * round trip, line limits, and hostile or huge input.
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

#define FFFD	"\xef\xbf\xbd"

struct dec_case {
	const char	*in;
	const char	*out;
};

static const struct dec_case dec_cases[] = {
	{ "", "" },
	{ "hello world", "hello world" },
	{ "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "=?UTF-8?Q?Gr=c3=bc=c3=9fe?=", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "=?utf-8?b?R3LDvMOfZQ==?=", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "=?Utf-8?B?R3LDvMOfZQ?=", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "=?iso-8859-1?q?Gr=FC=DFe?=", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "=?ISO-8859-1?Q?Gr=FC=DFe?=", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "=?windows-1252?q?=80?=", "\xe2\x82\xac" },
	{ "=?iso-2022-jp?b?GyRCRnxLXDhsGyhC?=",
	  "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
	/* joining */
	{ "=?utf-8?q?a?= =?utf-8?q?b?=", "ab" },
	{ "=?utf-8?q?a?=\r\n\t =?utf-8?q?b?=", "ab" },
	{ "=?utf-8?q?a?==?utf-8?q?b?=", "ab" },
	{ "=?utf-8?q?a?= b", "a b" },
	{ "a =?utf-8?q?b?=", "a b" },
	{ "a =?utf-8?q?b?= c", "a b c" },
	{ "=?utf-8?q?a?=  ", "a  " },
	{ "foo=?utf-8?q?bar?=baz", "foobarbaz" },
	{ "=?utf-8?q?=C3?= =?utf-8?q?=A9?=", "\xc3\xa9" },
	{ "=?utf-8?b?w6k=?= =?utf-8?q?=C3=A9?=", "\xc3\xa9\xc3\xa9" },
	{ "=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", "\xc3\xa9\xc3\xa9" },
	{ "=?iso-8859-1?q?=E9?= x =?iso-8859-1?q?=E9?=",
	  "\xc3\xa9 x \xc3\xa9" },
	/* Q details */
	{ "=?utf-8?q?a_b?=", "a b" },
	{ "=?utf-8?q?a b?=", "a b" },
	{ "=?utf-8?q?a=ZZb=?=", "a=ZZb=" },
	{ "=?utf-8?q?=4?=", "=4" },
	{ "=?utf-8?q?" "?=", "" },
	{ "=?utf-8?b?" "?=", "" },
	{ "=?utf-8?q?a=00b=0D=0Ac?=", "a b  c" },
	{ "=?utf-8?q?a=09b?=", "a\tb" },
	/* RFC 2231 language */
	{ "=?utf-8*en?q?hi?=", "hi" },
	{ "=?iso-8859-1*fr-CA?Q?=E9t=E9?=", "\xc3\xa9t\xc3\xa9" },
	{ "=?*en?q?hi?=", "=?*en?q?hi?=" },
	/* cannot be decoded: kept as written, with the space before it */
	{ "=?x-unknown?q?abc?=", "=?x-unknown?q?abc?=" },
	{ "=?x-unknown?q?a?= =?utf-8?q?b?=", "=?x-unknown?q?a?= b" },
	{ "=?utf-8?q?a?= =?x-unknown?q?b?=", "a =?x-unknown?q?b?=" },
	{ "=?utf-8//TRANSLIT?q?a?=", "=?utf-8//TRANSLIT?q?a?=" },
	{ "=?utf-8,x?q?a?=", "=?utf-8,x?q?a?=" },
	{ "=?utf-8?b?!!!!?=", "=?utf-8?b?!!!!?=" },
	{ "=?utf-8?b?QUJDR?=", "=?utf-8?b?QUJDR?=" },
	{ "=?utf-8?b?QQ=A?=", "=?utf-8?b?QQ=A?=" },
	{ "=?utf-8?b?QQ===?=", "=?utf-8?b?QQ===?=" },
	{ "=?utf-8?b?QUI=?=", "AB" },
	{ "=?utf-8?b?QQ==?= =?utf-8?b?*?=", "A =?utf-8?b?*?=" },
	{ "=?utf-8?x?a?=", "=?utf-8?x?a?=" },
	{ "=??q?a?=", "=??q?a?=" },
	{ "=?utf-8?q?a\tb?=", "=?utf-8?q?a\tb?=" },
	{ "=?utf 8?q?a?=", "=?utf 8?q?a?=" },
	/* unterminated */
	{ "=?utf-8?q?abc", "=?utf-8?q?abc" },
	{ "=?utf-8?q?abc?", "=?utf-8?q?abc?" },
	{ "=?utf-8?q", "=?utf-8?q" },
	{ "=?utf-8?", "=?utf-8?" },
	{ "=?", "=?" },
	{ "=", "=" },
	{ "a=?b", "a=?b" },
	{ "=?utf-8?q?a?= =?utf-8?q?b", "a =?utf-8?q?b" },
	/* raw bytes */
	{ "Gr\xc3\xbc\xc3\x9f" "e", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "Gr\xfc\xdf" "e", "Gr" FFFD FFFD "e" },
	{ "\xc0\xaf", FFFD FFFD },			/* overlong */
	{ "\xed\xa0\x80", FFFD FFFD FFFD },		/* surrogate */
	{ "\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD },	/* past U+10FFFF */
	{ "\xe2\x82", FFFD FFFD },			/* truncated */
	{ "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },
	{ "=?utf-8?q?=FF?=", FFFD },
	{ "=?us-ascii?q?a=E9?=", "a" FFFD },
	{ "=?euc-jp?q?a=A4?=", "a" FFFD },
};

static void
test_decode_table(void **state)
{
	size_t	 i;
	char	*s;

	(void)state;
	for (i = 0; i < sizeof(dec_cases) / sizeof(dec_cases[0]); i++) {
		s = msg_encword_decode(dec_cases[i].in);
		assert_non_null(s);
		if (strcmp(s, dec_cases[i].out) != 0)
			print_message("case %zu: \"%s\"\n", i, dec_cases[i].in);
		assert_string_equal(s, dec_cases[i].out);
		free(s);
	}
}

struct enc_case {
	const char	*in;
	size_t		 used;
	const char	*eol;
	const char	*out;
};

static const struct enc_case enc_cases[] = {
	{ "", 9, "\r\n", "" },
	{ "hello world", 9, "\r\n", "hello world" },
	{ "tab\tok", 9, "\r\n", "tab\tok" },
	/* B is shorter here, Q below (a tie would go to Q) */
	{ "Gr\xc3\xbc\xc3\x9f" "e", 9, "\r\n", "=?utf-8?b?R3LDvMOfZQ==?=" },
	{ "Gr\xc3\xbc\xc3\x9f" "e und mehr Text hier", 9, "\r\n",
	  "=?utf-8?q?Gr=C3=BC=C3=9Fe_und_mehr_Text_hier?=" },
	{ "a\x01" "b c", 9, "\r\n", "=?utf-8?q?a=01b_c?=" },
	{ "x=?_ and more plain words \xc3\xa9", 9, "\n",
	  "=?utf-8?q?x=3D=3F=5F_and_more_plain_words_=C3=A9?=" },
	{ "\xff", 9, "\r\n", "=?utf-8?b?77+9?=" },
	{ "line\r\nbreak", 9, "\r\n", "=?utf-8?q?line=0D=0Abreak?=" },
	/* the first line already full: one character, then a fold */
	{ "\xc3\xa9\xc3\xa9", 78, "\r\n",
	  "=?utf-8?b?w6k=?=\r\n =?utf-8?b?w6k=?=" },
	{ "\xc3\xa9\xc3\xa9", 200, NULL,
	  "=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=" },
	{ "\xc3\xa9\xc3\xa9", 66, "\n",
	  "=?utf-8?b?w6k=?=\n =?utf-8?b?w6k=?=" },
	{ "\xc3\xa9\xc3\xa9", 54, "\n", "=?utf-8?b?w6nDqQ==?=" },
	{ "\xc3\xa9" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 60, "\n",
	  "=?utf-8?q?=C3=A9?=\n =?utf-8?q?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?=" },
};

static void
test_encode_table(void **state)
{
	size_t	 i;
	char	*s;

	(void)state;
	s = msg_encword_encode_all("abc", 9, "\r\n");
	assert_string_equal(s, "=?utf-8?q?abc?=");
	free(s);
	s = msg_encword_encode_all("=?x?q?y?=", 9, "\r\n");
	assert_string_equal(s, "=?utf-8?b?PT94P3E/eT89?=");
	free(s);
	s = msg_encword_encode_all("", 9, "\r\n");
	assert_string_equal(s, "");
	free(s);
	for (i = 0; i < sizeof(enc_cases) / sizeof(enc_cases[0]); i++) {
		const struct enc_case *c = &enc_cases[i];

		s = msg_encword_encode(c->in, c->used, c->eol);
		assert_non_null(s);
		if (strcmp(s, c->out) != 0)
			print_message("case %zu: got \"%s\"\n", i, s);
		assert_string_equal(s, c->out);
		free(s);
	}
}

/* Every line within 78 columns (the first after `used' octets), every
 * word within 75, every word decodable on its own (no character split
 * across words), and the whole decodes back to the input. */
static void
check_encoding(const char *in, size_t used)
{
	char	*enc, *dec, *line, *save, *word, *wsave, *one;
	size_t	 col;

	enc = msg_encword_encode(in, used, "\r\n");
	assert_non_null(enc);
	dec = msg_encword_decode(enc);
	assert_string_equal(dec, in);
	free(dec);
	if (strcmp(enc, in) == 0) {	/* plain: not folded */
		free(enc);
		return;
	}
	col = used;
	for (line = strtok_r(enc, "\r\n", &save); line != NULL;
	    line = strtok_r(NULL, "\r\n", &save)) {
		assert_true(col + strlen(line) <= 78);
		col = 0;
		for (word = strtok_r(line, " ", &wsave); word != NULL;
		    word = strtok_r(NULL, " ", &wsave)) {
			assert_true(strlen(word) <= 75);
			one = msg_encword_decode(word);
			assert_null(strstr(one, FFFD));
			assert_null(strstr(one, "=?"));
			free(one);
		}
	}
	free(enc);
}

static void
test_round_trip(void **state)
{
	static const char *unit[] = {
		"a", " ", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80",
		"=", "?", "_", "\t", "x y",
	};
	char	 buf[2048];
	size_t	 u, reps, len, used;

	(void)state;
	for (u = 0; u < sizeof(unit) / sizeof(unit[0]); u++) {
		for (reps = 1; reps < 120; reps += 7) {
			buf[0] = '\0';
			len = 0;
			while (len / strlen(unit[u]) < reps) {
				strcat(buf, unit[u]);
				strcat(buf, u % 2 ? "\xc3\xa9" : "");
				len = strlen(buf);
			}
			for (used = 0; used <= 54; used += 9)
				check_encoding(buf, used);
		}
	}
}

/* Ten thousand adjacent words join into one run; a hundred thousand
 * openers that never close are literal and cost linear time. */
static void
test_huge(void **state)
{
	const size_t	 n = 10000;
	char		*in, *out;
	size_t		 i, len = 0;

	(void)state;
	in = malloc(n * 32 + 1);
	assert_non_null(in);
	for (i = 0; i < n; i++)
		len += sprintf(in + len, "=?utf-8?q?=C3?= =?utf-8?q?=A9?=");
	out = msg_encword_decode(in);
	assert_int_equal(strlen(out), 2 * n);
	assert_memory_equal(out, "\xc3\xa9\xc3\xa9", 4);
	free(out);
	free(in);

	in = malloc(100000 * 10 + 1);
	assert_non_null(in);
	in[0] = '\0';
	for (i = len = 0; i < 100000; i++)
		len += sprintf(in + len, "=?utf-8?q?");
	out = msg_encword_decode(in);
	assert_string_equal(out, in);
	free(out);
	out = msg_encword_encode(in, 9, "\r\n");
	assert_string_equal(out, in);	/* printable ASCII: as is */
	free(out);
	memset(in, 'x', len);
	memcpy(in, "\xc3\xa9", 2);
	check_encoding(in, 9);
	free(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_encode_table),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_huge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
