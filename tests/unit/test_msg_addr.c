/*
 * Units for msg_addr: address lists as a table of exact (display, addr)
 * pairs, including the obsolete and broken forms real mail carries, then
 * normalisation, Mailman's recipient split, and huge input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "msg_addr.h"

#define MAXA	3

struct list_case {
	const char	*in;
	int		 n;
	const char	*a[MAXA][2];	/* display (NULL: none), addr */
};

static const struct list_case list_cases[] = {
	{ "a@example.org", 1, { { NULL, "a@example.org" } } },
	{ "A.B@Example.ORG", 1, { { NULL, "A.B@example.org" } } },
	{ "John Doe <JD@Example.org>", 1,
	  { { "John Doe", "JD@example.org" } } },
	{ "\"Doe, John\" <jd@x.org>", 1, { { "Doe, John", "jd@x.org" } } },
	{ "\"Doe, John\" <jd@x.org>, b@y.org", 2,
	  { { "Doe, John", "jd@x.org" }, { NULL, "b@y.org" } } },
	{ "jd@x.org (John Doe)", 1, { { "John Doe", "jd@x.org" } } },
	{ "John <jd@x.org> (work)", 1, { { "John", "jd@x.org" } } },
	{ "(c1) jd(c2)@(c3)x.org(c4)", 1, { { "c1", "jd@x.org" } } },
	{ "a@b (x (y) z)", 1, { { "x (y) z", "a@b" } } },
	{ "a@b (x \\) y)", 1, { { "x ) y", "a@b" } } },
	{ "a@b ()", 1, { { NULL, "a@b" } } },
	/* groups */
	{ "undisclosed-recipients:;", 0, { { 0 } } },
	{ "undisclosed-recipients: ;", 0, { { 0 } } },
	{ "Team: a@x.org, B <b@y.org>; c@z.org", 3,
	  { { NULL, "a@x.org" }, { "B", "b@y.org" }, { NULL, "c@z.org" } } },
	{ "List: a@b", 1, { { NULL, "a@b" } } },
	{ "Re: foo <a@b>", 1, { { "foo", "a@b" } } },
	{ "g: a@b, h: c@d;", 2, { { NULL, "a@b" }, { "h:", "c@d" } } },
	/* obsolete route */
	{ "<@relay.example,@r2.example:user@Example.com>", 1,
	  { { NULL, "user@example.com" } } },
	{ "Name <@relay:user@host>, x@y", 2,
	  { { "Name", "user@host" }, { NULL, "x@y" } } },
	{ "<@relay.example>", 0, { { 0 } } },
	/* encoded words are left for the caller */
	{ "=?utf-8?q?J=C3=B6rg?= <j@x.org>", 1,
	  { { "=?utf-8?q?J=C3=B6rg?=", "j@x.org" } } },
	{ "\"=?utf-8?q?J=C3=B6rg?=\" <j@x.org>", 1,
	  { { "=?utf-8?q?J=C3=B6rg?=", "j@x.org" } } },
	{ "J\xc3\xb6rg <j@x.org>", 1, { { "J\xc3\xb6rg", "j@x.org" } } },
	/* phrases */
	{ "A B \t C <a@b>", 1, { { "A B C", "a@b" } } },
	{ "John Q. Public <a@b>", 1, { { "John Q. Public", "a@b" } } },
	{ "\"a\\\"b\" <c@d>", 1, { { "a\"b", "c@d" } } },
	{ "\"\" <a@b>", 1, { { NULL, "a@b" } } },
	{ "\"A\"\"B\" <a@b>", 1, { { "AB", "a@b" } } },
	{ "John Doe jd@x.org", 1, { { "John Doe", "jd@x.org" } } },
	/* addr-specs */
	{ "john . doe @ x . org", 1, { { NULL, "john.doe@x.org" } } },
	{ "\"john doe\"@X.org", 1, { { NULL, "\"john doe\"@x.org" } } },
	{ "a@[192.0.2.1]", 1, { { NULL, "a@[192.0.2.1]" } } },
	{ "a@[IPv6:ABCD::1]", 1, { { NULL, "a@[ipv6:abcd::1]" } } },
	{ "a@b.,c@d", 2, { { NULL, "a@b." }, { NULL, "c@d" } } },
	/* a domain is words or one literal, never both (fuzz finding) */
	{ "a@b[c]", 1, { { NULL, "a@b" } } },
	{ "a@[x]y", 1, { { NULL, "a@[x]" } } },
	{ "?@?B\xff\x11][@", 1, { { NULL, "?@?b\xff\x11]" } } },
	{ "a@[@]", 1, { { NULL, "a@[@]" } } },
	{ "a@b,c@d;e@f", 3,
	  { { NULL, "a@b" }, { NULL, "c@d" }, { NULL, "e@f" } } },
	{ "a@b,\r\n\tc@d", 2, { { NULL, "a@b" }, { NULL, "c@d" } } },
	{ "a\x01" "b@c", 1, { { NULL, "a\x01" "b@c" } } },
	{ "a@b@c", 1, { { NULL, "a@b" } } },
	{ "<<a@b>>", 1, { { NULL, "a@b" } } },
	{ "<a@b> <c@d>", 1, { { NULL, "a@b" } } },
	{ "a@b>", 1, { { NULL, "a@b" } } },
	/* no usable addr-spec */
	{ "", 0, { { 0 } } },
	{ "postmaster", 0, { { 0 } } },
	{ "<>", 0, { { 0 } } },
	{ "<postmaster>", 0, { { 0 } } },
	{ ",,, ;; ::", 0, { { 0 } } },
	{ "@", 0, { { 0 } } },
	{ "a@", 0, { { 0 } } },
	{ "@b", 0, { { 0 } } },
	{ "Name <@>", 0, { { 0 } } },
	{ "junk, B <b@x>", 1, { { "B", "b@x" } } },
	/* unterminated */
	{ "\"Doe, John <jd@x.org>", 0, { { 0 } } },
	{ "a@b, \"Unterminated <c@d>", 1, { { NULL, "a@b" } } },
	{ "a@b (never closed", 1, { { "never closed", "a@b" } } },
	{ "a@b ((nested)", 1, { { "(nested", "a@b" } } },
	{ "Name <a@b, c@d", 2, { { "Name", "a@b" }, { NULL, "c@d" } } },
	{ "Name <a@b", 1, { { "Name", "a@b" } } },
	{ "a@[1.2.3.4", 1, { { NULL, "a@[1.2.3.4" } } },
	{ "\"trailing\\", 0, { { 0 } } },
	{ "a@b (x\\", 1, { { "x\\", "a@b" } } },
	{ ")a@b)", 1, { { NULL, "a@b" } } },
};

static void
test_list_table(void **state)
{
	struct msg_addr_list	 l;
	size_t			 i;
	int			 j, n;

	(void)state;
	for (i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
		const struct list_case *c = &list_cases[i];

		n = msg_addr_parse_list(c->in, &l);
		if (n != c->n)
			print_message("case %zu: %d entries\n", i, n);
		assert_int_equal(n, c->n);
		assert_int_equal(l.n, (size_t)n);
		for (j = 0; j < n && j < MAXA; j++) {
			if (c->a[j][0] == NULL) {
				assert_null(l.v[j].display);
			} else {
				assert_non_null(l.v[j].display);
				assert_string_equal(l.v[j].display,
				    c->a[j][0]);
			}
			assert_string_equal(l.v[j].addr, c->a[j][1]);
		}
		msg_addr_list_free(&l);
		assert_null(l.v);
	}
	assert_int_equal(msg_addr_parse_list(NULL, &l), 0);
	msg_addr_list_free(&l);
}

static void
test_first(void **state)
{
	static const char *cases[][2] = {
		{ "Mixed Case <User@Example.COM>", "user@example.com" },
		{ "junk, B <B@x>", "b@x" },
		{ "a@b, c@d", "a@b" },
		{ "undisclosed-recipients:;", NULL },
		{ "", NULL },
	};
	size_t	 i;
	char	*s;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = msg_addr_first(cases[i][0]);
		if (cases[i][1] == NULL)
			assert_null(s);
		else
			assert_string_equal(s, cases[i][1]);
		free(s);
	}
	assert_null(msg_addr_first(NULL));
}

static void
test_normalize(void **state)
{
	static const char *cases[][2] = {
		{ "A.B@Example.ORG", "a.b@example.org" },
		{ "a+b-c@d", "a+b-c@d" },
		{ "J\xc3\xb6rg@x", "j\xc3\xb6rg@x" },
		{ "a@b@c", NULL },
		{ "@b", NULL },
		{ "a@", NULL },
		{ "ab", NULL },
		{ "", NULL },
		{ "a b@c", NULL },
		{ "a@b\t", NULL },
		{ "a\x01@c", NULL },
		{ "a\x7f@c", NULL },
		{ "a@b\r\n", NULL },
	};
	size_t	 i;
	char	*s;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = msg_addr_normalize(cases[i][0]);
		if (cases[i][1] == NULL)
			assert_null(s);
		else
			assert_string_equal(s, cases[i][1]);
		free(s);
	}
	assert_null(msg_addr_normalize(NULL));
}

struct split_case {
	const char	*in;
	int		 rc;
	const char	*local, *suffix, *domain;
};

static const struct split_case split_cases[] = {
	{ "Bench@Example.org", 0, "bench", "", "example.org" },
	{ "bench-request@example.org", 0, "bench-request", "request",
	  "example.org" },
	{ "My-List-Bounces+user=x.org@Example.org", 0, "my-list-bounces",
	  "bounces", "example.org" },
	{ "bench+tag@example.org", 0, "bench", "", "example.org" },
	{ "bench+tag-owner@example.org", 0, "bench", "", "example.org" },
	{ "bench-join+x+y@example.org", 0, "bench-join", "join",
	  "example.org" },
	{ "-bounces@example.org", 0, "-bounces", "bounces", "example.org" },
	{ "bench-@x", 0, "bench-", "", "x" },
	{ "a--b@x", 0, "a--b", "b", "x" },
	{ "<Bench-Owner@X>", 0, "bench-owner", "owner", "x" },
	{ "+x@d", -1, 0, 0, 0 },
	{ "nodomain", -1, 0, 0, 0 },
	{ "a@b@c", -1, 0, 0, 0 },
	{ "a b@c", -1, 0, 0, 0 },
	{ "a@", -1, 0, 0, 0 },
	{ "@d", -1, 0, 0, 0 },
	{ "<>", -1, 0, 0, 0 },
	{ "", -1, 0, 0, 0 },
};

static void
test_split(void **state)
{
	char	 local[64], suffix[64], domain[64];
	size_t	 i;
	int	 rc;

	(void)state;
	for (i = 0; i < sizeof(split_cases) / sizeof(split_cases[0]); i++) {
		const struct split_case *c = &split_cases[i];

		rc = msg_addr_split_recipient(c->in, local, sizeof(local),
		    suffix, sizeof(suffix), domain, sizeof(domain));
		if (rc != c->rc)
			print_message("case %zu: rc %d\n", i, rc);
		assert_int_equal(rc, c->rc);
		if (rc != 0)
			continue;
		assert_string_equal(local, c->local);
		assert_string_equal(suffix, c->suffix);
		assert_string_equal(domain, c->domain);
	}
	assert_int_equal(msg_addr_split_recipient(NULL, local, 64, suffix, 64,
	    domain, 64), -1);
	/* buffers exactly big enough, and one byte short */
	assert_int_equal(msg_addr_split_recipient("ab-cd@ef", local, 6,
	    suffix, 3, domain, 3), 0);
	assert_string_equal(local, "ab-cd");
	assert_int_equal(msg_addr_split_recipient("ab-cd@ef", local, 5,
	    suffix, 3, domain, 3), -1);
	assert_int_equal(msg_addr_split_recipient("ab-cd@ef", local, 6,
	    suffix, 2, domain, 3), -1);
	assert_int_equal(msg_addr_split_recipient("ab-cd@ef", local, 6,
	    suffix, 3, domain, 2), -1);
}

/* Many entries, each with a comment; and values that are one endless
 * comment, quote, or run of brackets. */
static void
test_huge(void **state)
{
	const size_t		 n = 50000;
	struct msg_addr_list	 l;
	char			*in;
	size_t			 i, len = 0;

	(void)state;
	in = malloc(n * 16 + 1);
	assert_non_null(in);
	for (i = 0; i < n; i++)
		len += sprintf(in + len, "a%zu@B (c), ", i % 10);
	assert_int_equal(msg_addr_parse_list(in, &l), (int)n);
	assert_string_equal(l.v[n - 1].addr, "a9@b");
	assert_string_equal(l.v[n - 1].display, "c");
	msg_addr_list_free(&l);

	memset(in, '(', n * 16);
	in[n * 16] = '\0';
	assert_int_equal(msg_addr_parse_list(in, &l), 0);
	memset(in, '"', n * 16);
	assert_int_equal(msg_addr_parse_list(in, &l), 0);
	memset(in, '<', n * 16);
	assert_int_equal(msg_addr_parse_list(in, &l), 0);
	for (i = 0; i < n * 16; i += 2)
		memcpy(in + i, "<@", 2);
	assert_int_equal(msg_addr_parse_list(in, &l), 0);
	memset(in, '@', n * 16);
	assert_int_equal(msg_addr_parse_list(in, &l), 0);
	memset(in, 'a', n * 16);
	in[n * 8] = '@';
	assert_int_equal(msg_addr_parse_list(in, &l), 1);
	assert_int_equal(strlen(l.v[0].addr), n * 16);
	msg_addr_list_free(&l);
	free(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_table),
		cmocka_unit_test(test_first),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_huge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
