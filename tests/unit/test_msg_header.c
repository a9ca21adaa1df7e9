/*
 * Units for msg_header: a table of whole header blocks, each with every
 * figure the parser reports, plus the long and hostile inputs that need
 * building at run time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "msg_header.h"

#define MAXF	4

struct hdr_case {
	const char	*what;
	const char	*in;
	size_t		 len;		/* 0: strlen(in) */
	size_t		 nfields;
	size_t		 header_len;
	size_t		 body_offset;
	int		 crlf;
	size_t		 bad_lines;
	size_t		 longest_line;
	/* name ("" for a bad line) and unfolded value of each field */
	const char	*f[MAXF][2];
};

static const struct hdr_case hdr_cases[] = {
	{ "empty", "", 0, 0, 0, 0, 0, 0, 0, { { 0 } } },
	{ "crlf", "From: a@b\r\nSubject: hi\r\n\r\nbody", 0,
	  2, 24, 26, 1, 0, 11,
	  { { "From", "a@b" }, { "Subject", "hi" } } },
	{ "bare lf", "A: 1\nB: 2\n\nbody\n", 0,
	  2, 10, 11, 0, 0, 4, { { "A", "1" }, { "B", "2" } } },
	{ "mixed line ends", "A: 1\r\nB: 2\n\r\nx", 0,
	  2, 11, 13, 1, 0, 4, { { "A", "1" }, { "B", "2" } } },
	{ "bare cr inside a line", "A: x\ry\nB: 2\n\n", 0,
	  2, 12, 13, 0, 0, 6, { { "A", "x y" }, { "B", "2" } } },
	{ "nul byte", "A: x\0y\nB: 2\n\n", 13,
	  2, 12, 13, 0, 1, 6, { { "A", "x y" }, { "B", "2" } } },
	{ "line with no colon", "A: 1\njunk line\nB: 2\n\n", 0,
	  3, 20, 21, 0, 1, 9,
	  { { "A", "1" }, { "", "junk line" }, { "B", "2" } } },
	{ "no colon and nul counts once", "x\0y\n\n", 5,
	  1, 4, 5, 0, 1, 3, { { "", "x y" } } },
	{ "folded", "Subject: a\n b\n\tc\nX: y\n\n", 0,
	  2, 22, 23, 0, 0, 10, { { "Subject", "a b\tc" }, { "X", "y" } } },
	{ "folded crlf", "Subject: a\r\n b\r\n\r\n", 0,
	  1, 16, 18, 1, 0, 10, { { "Subject", "a b" } } },
	{ "continuation first", " lead\n more\nA: 1\n\n", 0,
	  2, 17, 18, 0, 1, 5, { { "", "lead more" }, { "A", "1" } } },
	{ "no blank line", "A: 1\nB: 2", 0,
	  2, 9, 9, 0, 0, 4, { { "A", "1" }, { "B", "2" } } },
	{ "blank line first", "\r\nbody", 0, 0, 0, 2, 1, 0, 0, { { 0 } } },
	{ "lone lf", "\n", 0, 0, 0, 1, 0, 0, 0, { { 0 } } },
	{ "mbox from line", "From a@b Mon Jan  1 00:00:00 2024\nA: 1\n\n", 0,
	  2, 39, 40, 0, 1, 33,
	  { { "", "From a@b Mon Jan  1 00:00:00 2024" }, { "A", "1" } } },
	{ "wsp before colon", "Subject \t: hi \n\n", 0,
	  1, 15, 16, 0, 0, 14, { { "Subject", "hi" } } },
	{ "empty name", ": x\n\n", 0, 1, 4, 5, 0, 1, 3, { { "", ": x" } } },
	{ "space in name", "Bad Name: x\n\n", 0,
	  1, 12, 13, 0, 1, 11, { { "", "Bad Name: x" } } },
	{ "wsp-only line continues", "A: 1\n \nB: 2\n\n", 0,
	  2, 12, 13, 0, 0, 4, { { "A", "1" }, { "B", "2" } } },
	{ "8-bit kept", "Subject: Gr\xfc\xdf" "e\n\n", 0,
	  1, 15, 16, 0, 0, 14, { { "Subject", "Gr\xfc\xdf" "e" } } },
	{ "cr-only line is not blank", "A: 1\n\r\r\nB", 0,
	  3, 9, 9, 0, 2, 4, { { "A", "1" }, { "", "" }, { "", "B" } } },
	{ "trailing lone cr", "A: 1\r\n\r", 0,
	  2, 7, 7, 1, 1, 4, { { "A", "1" }, { "", "" } } },
	{ "empty value", "A:\nB:  \n\n", 0,
	  2, 8, 9, 0, 0, 4, { { "A", "" }, { "B", "" } } },
	{ "colon in value", "Date: 12:00:01\n\n", 0,
	  1, 15, 16, 0, 0, 14, { { "Date", "12:00:01" } } },
	{ "body keeps its blank lines", "A: 1\n\n\n\nb", 0,
	  1, 5, 6, 0, 0, 4, { { "A", "1" } } },
};

static void
check_case(const struct hdr_case *c)
{
	struct msg_headers	 h;
	size_t			 len = c->len ? c->len : strlen(c->in);
	size_t			 i, raw_total = 0;
	char			*v;

	print_message("case: %s\n", c->what);
	assert_int_equal(msg_headers_parse(c->in, len, &h), 0);
	assert_int_equal(h.nfields, c->nfields);
	assert_int_equal(h.header_len, c->header_len);
	assert_int_equal(h.body_offset, c->body_offset);
	assert_int_equal(h.crlf, c->crlf);
	assert_int_equal(h.bad_lines, c->bad_lines);
	assert_int_equal(h.longest_line, c->longest_line);
	for (i = 0; i < h.nfields; i++) {
		const struct msg_field *f = &h.fields[i];

		/* Fields tile the header block exactly: nothing is lost. */
		assert_ptr_equal(f->raw, c->in + raw_total);
		raw_total += f->raw_len;
		if (i < MAXF) {
			assert_int_equal(f->name_len, strlen(c->f[i][0]));
			assert_memory_equal(f->name, c->f[i][0], f->name_len);
			v = msg_field_unfold(f);
			assert_non_null(v);
			assert_string_equal(v, c->f[i][1]);
			free(v);
		}
	}
	assert_int_equal(raw_total, h.header_len);
	msg_headers_free(&h);
	assert_null(h.fields);
	assert_int_equal(h.nfields, 0);
}

static void
test_table(void **state)
{
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof(hdr_cases) / sizeof(hdr_cases[0]); i++)
		check_case(&hdr_cases[i]);
}

static void
test_ranges(void **state)
{
	const char		*in =
	    "From: a@b\r\nSubject: one\r\n two\r\n\r\n";
	struct msg_headers	 h;
	const struct msg_field	*f;

	(void)state;
	assert_int_equal(msg_headers_parse(in, strlen(in), &h), 0);
	assert_int_equal(h.nfields, 2);
	f = &h.fields[1];
	assert_ptr_equal(f->raw, in + 11);
	assert_int_equal(f->raw_len, 20);
	assert_ptr_equal(f->name, in + 11);
	assert_int_equal(f->name_len, 7);
	assert_ptr_equal(f->value, in + 19);
	assert_int_equal(f->value_len, 10);
	assert_memory_equal(f->value, " one\r\n two", 10);
	msg_headers_free(&h);
}

static void
test_find_get(void **state)
{
	const char		*in = "To: a\nX: 1\nto: b\njunk\nTO: c\n\n";
	struct msg_headers	 h;
	char			*v;

	(void)state;
	assert_int_equal(msg_headers_parse(in, strlen(in), &h), 0);
	assert_int_equal(msg_headers_find(&h, "to", 0), 0);
	assert_int_equal(msg_headers_find(&h, "To", 1), 2);
	assert_int_equal(msg_headers_find(&h, "tO", 3), 4);
	assert_int_equal(msg_headers_find(&h, "to", 5), -1);
	assert_int_equal(msg_headers_find(&h, "to", 99), -1);
	assert_int_equal(msg_headers_find(&h, "T", 0), -1);
	assert_int_equal(msg_headers_find(&h, "Tox", 0), -1);
	/* A bad line's empty name is never found. */
	assert_int_equal(msg_headers_find(&h, "", 0), -1);
	v = msg_headers_get(&h, "TO");
	assert_string_equal(v, "a");
	free(v);
	assert_null(msg_headers_get(&h, "Cc"));
	msg_headers_free(&h);
	msg_headers_free(&h);	/* a second free is harmless */
}

/* A 100 KB Subject folded over thousands of lines: one field, every fold
 * kept in raw, and linear work (a quadratic parser takes minutes here
 * under the sanitizers, so a regression shows as a hung test). */
static void
test_long_folded(void **state)
{
	const size_t		 folds = 20000;
	size_t			 len = 0, i;
	struct msg_headers	 h;
	char			*buf, *v;

	(void)state;
	buf = malloc(16 + folds * 7 + 16);
	assert_non_null(buf);
	len += sprintf(buf, "Subject: x");
	for (i = 0; i < folds; i++)
		len += sprintf(buf + len, "\r\n word");
	len += sprintf(buf + len, "\r\n\r\nbody");
	assert_true(len > 100000);
	assert_int_equal(msg_headers_parse(buf, len, &h), 0);
	assert_int_equal(h.nfields, 1);
	assert_int_equal(h.header_len, len - 6);
	assert_int_equal(h.body_offset, len - 4);
	assert_int_equal(h.longest_line, 10);
	assert_int_equal(h.bad_lines, 0);
	v = msg_field_unfold(&h.fields[0]);
	assert_non_null(v);
	assert_int_equal(strlen(v), 1 + folds * 5);
	assert_memory_equal(v, "x word word", 11);
	free(v);
	msg_headers_free(&h);
	free(buf);
}

/* Many short fields: the array grows by doubling. */
static void
test_many_fields(void **state)
{
	const size_t		 n = 100000;
	size_t			 len = 0, i;
	struct msg_headers	 h;
	char			*buf;

	(void)state;
	buf = malloc(n * 5 + 1);
	assert_non_null(buf);
	for (i = 0; i < n; i++)
		len += sprintf(buf + len, "A: b\n");
	assert_int_equal(msg_headers_parse(buf, len, &h), 0);
	assert_int_equal(h.nfields, n);
	assert_int_equal(h.header_len, len);
	assert_int_equal(h.body_offset, len);
	assert_true(h.cap >= n && h.cap < 2 * n + 64);
	assert_int_equal(msg_headers_find(&h, "a", n - 1), (long)(n - 1));
	msg_headers_free(&h);
	free(buf);
}

/* One megabyte with no line end at all, and one of only NULs. */
static void
test_huge_lines(void **state)
{
	const size_t		 n = 1 << 20;
	struct msg_headers	 h;
	char			*buf, *v;

	(void)state;
	buf = malloc(n);
	assert_non_null(buf);
	memset(buf, 'a', n);
	buf[10] = ':';
	assert_int_equal(msg_headers_parse(buf, n, &h), 0);
	assert_int_equal(h.nfields, 1);
	assert_int_equal(h.longest_line, n);
	assert_int_equal(h.fields[0].name_len, 10);
	msg_headers_free(&h);

	memset(buf, '\0', n);
	assert_int_equal(msg_headers_parse(buf, n, &h), 0);
	assert_int_equal(h.nfields, 1);
	assert_int_equal(h.bad_lines, 1);
	v = msg_field_unfold(&h.fields[0]);
	assert_non_null(v);
	assert_int_equal(strlen(v), 0);	/* all spaces, trimmed */
	free(v);
	msg_headers_free(&h);
	free(buf);
}

/* Every single byte value alone and followed by a line end. */
static void
test_all_bytes(void **state)
{
	struct msg_headers	 h;
	char			 b[2];
	int			 c;

	(void)state;
	for (c = 0; c < 256; c++) {
		b[0] = (char)c;
		b[1] = '\n';
		assert_int_equal(msg_headers_parse(b, 1, &h), 0);
		assert_int_equal(h.header_len + h.body_offset,
		    c == '\n' ? 1 : 2);
		msg_headers_free(&h);
		assert_int_equal(msg_headers_parse(b, 2, &h), 0);
		assert_true(h.body_offset == 2 || (c == '\n' &&
		    h.body_offset == 1));
		msg_headers_free(&h);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_find_get),
		cmocka_unit_test(test_long_folded),
		cmocka_unit_test(test_many_fields),
		cmocka_unit_test(test_huge_lines),
		cmocka_unit_test(test_all_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
