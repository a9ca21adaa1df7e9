/*
 * decorate_headers: the header block a list sends, byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "decorate.h"

static struct decorate_list
bench(void)
{
	struct decorate_list l = {
		.name = "bench", .host = "example.org", .description = "",
		.subject_prefix = "[Bench] ", .archive_url = "",
		.reply_goes_to_list = "no_munging", .reply_to_address = "",
		.first_strip_reply_to = 0, .include_rfc2369_headers = 1,
		.allow_list_posts = 1, .archived = 1,
	};
	return l;
}

#define LIST_FIELDS(eol) \
	"X-BeenThere: bench@example.org" eol \
	"Precedence: list" eol \
	"List-Help: <mailto:bench-request@example.org?subject=help>" eol \
	"List-Id: <bench.example.org>" eol \
	"List-Owner: <mailto:bench-owner@example.org>" eol \
	"List-Post: <mailto:bench@example.org>" eol \
	"List-Subscribe: <mailto:bench-join@example.org>" eol \
	"List-Unsubscribe: <mailto:bench-leave@example.org>" eol

static void
check(const struct decorate_list *l, const char *in, const char *want,
    size_t want_body)
{
	struct buf	 out = { 0 };
	size_t		 body = 0;

	assert_int_equal(decorate_headers(l, in, strlen(in), 7,
	    "seed@example.org", &out, &body), 0);
	assert_non_null(out.p);
	assert_string_equal(out.p, want);
	assert_int_equal(body, want_body);
	buf_free(&out);
}

static void
test_plain_post(void **state)
{
	struct decorate_list l = bench();
	const char *in =
	    "From: Anne <anne@example.com>\r\n"
	    "Subject: Re: [Bench] Re: hello\r\n"
	    "Message-ID: <1@example.com>\r\n"
	    "X-Folded: a\r\n  b\r\n"
	    "\r\n"
	    "body\r\n";

	(void)state;
	check(&l, in,
	    "From: Anne <anne@example.com>\r\n"
	    "Subject: [Bench] Re: hello\r\n"
	    "Message-ID: <1@example.com>\r\n"
	    "X-Folded: a\r\n  b\r\n"
	    LIST_FIELDS("\r\n")
	    "\r\n", strlen(in) - strlen("body\r\n"));
}

/* Old list fields and approval fields go; a Precedence stays as sent;
 * a missing Message-ID and Subject are added; LF stays LF. */
static void
test_cleansed_and_completed(void **state)
{
	struct decorate_list l = bench();
	const char *in =
	    "List-Id: <other.example.net>\n"
	    "From: anne@example.com\n"
	    "Approved: password\n"
	    "List-Post: <mailto:other@example.net>\n"
	    "Precedence: bulk\n"
	    "\n"
	    "body\n";

	(void)state;
	check(&l, in,
	    "From: anne@example.com\n"
	    "Precedence: bulk\n"
	    "Subject: [Bench] (no subject)\n"
	    "Message-ID: <seed@example.org>\n"
	    "X-BeenThere: bench@example.org\n"
	    "List-Help: <mailto:bench-request@example.org?subject=help>\n"
	    "List-Id: <bench.example.org>\n"
	    "List-Owner: <mailto:bench-owner@example.org>\n"
	    "List-Post: <mailto:bench@example.org>\n"
	    "List-Subscribe: <mailto:bench-join@example.org>\n"
	    "List-Unsubscribe: <mailto:bench-leave@example.org>\n"
	    "\n", strlen(in) - strlen("body\n"));
}

static void
test_list_id_description_and_archive(void **state)
{
	struct decorate_list l = bench();
	struct buf	 out = { 0 };

	(void)state;
	l.description = "Bench, the list";
	assert_int_equal(decorate_list_id(&l, &out), 0);
	assert_string_equal(out.p, "\"Bench, the list\" <bench.example.org>");
	buf_free(&out);
	l.description = "Grüße";
	assert_int_equal(decorate_list_id(&l, &out), 0);
	assert_string_equal(out.p, "=?utf-8?b?R3LDvMOfZQ==?= "
	    "<bench.example.org>");
	buf_free(&out);

	l.description = "";
	l.archive_url = "https://lists.example.org/bench/";
	l.allow_list_posts = 0;
	l.subject_prefix = "";
	check(&l, "Subject: x\n\nb\n",
	    "Subject: x\n"
	    "Message-ID: <seed@example.org>\n"
	    "X-BeenThere: bench@example.org\n"
	    "Precedence: list\n"
	    "List-Archive: <https://lists.example.org/bench/>\n"
	    "List-Help: <mailto:bench-request@example.org?subject=help>\n"
	    "List-Id: <bench.example.org>\n"
	    "List-Owner: <mailto:bench-owner@example.org>\n"
	    "List-Post: NO\n"
	    "List-Subscribe: <mailto:bench-join@example.org>\n"
	    "List-Unsubscribe: <mailto:bench-leave@example.org>\n"
	    "\n", 12);
}

static void
test_reply_to_munging(void **state)
{
	struct decorate_list l = bench();

	(void)state;
	l.subject_prefix = "";
	l.include_rfc2369_headers = 0;
	l.reply_goes_to_list = "point_to_list";
	check(&l, "Message-ID: <m>\nReply-To: a@example.com\n\n",
	    "Message-ID: <m>\n"
	    "Reply-To: a@example.com, bench@example.org\n"
	    "X-BeenThere: bench@example.org\n"
	    "Precedence: list\n"
	    "\n", 41);
	l.first_strip_reply_to = 1;
	l.reply_goes_to_list = "explicit_header";
	l.reply_to_address = "talk@example.org";
	check(&l, "Message-ID: <m>\nReply-To: a@example.com\n\n",
	    "Message-ID: <m>\n"
	    "Reply-To: talk@example.org\n"
	    "X-BeenThere: bench@example.org\n"
	    "Precedence: list\n"
	    "\n", 41);
}

/* Duplicates are whole addresses: "olddev" is not "bench"'s list, and
 * "b@example.com" is not "bob@example.com".  A long Reply-To is capped
 * and folded. */
static void
test_reply_to_whole_addresses(void **state)
{
	struct decorate_list l = bench();
	struct buf	 in = { 0 }, out = { 0 };
	size_t		 body;
	char		*rt;

	(void)state;
	l.subject_prefix = "";
	l.include_rfc2369_headers = 0;
	l.reply_goes_to_list = "point_to_list";
	check(&l, "Message-ID: <m>\nReply-To: oldbench@example.org\n\n",
	    "Message-ID: <m>\n"
	    "Reply-To: oldbench@example.org, bench@example.org\n"
	    "X-BeenThere: bench@example.org\n"
	    "Precedence: list\n"
	    "\n", 48);
	l.reply_goes_to_list = "explicit_header";
	l.reply_to_address = "bob@example.com";
	check(&l, "Message-ID: <m>\nReply-To: B@example.com\n\n",
	    "Message-ID: <m>\n"
	    "Reply-To: bob@example.com, B@example.com\n"
	    "X-BeenThere: bench@example.org\n"
	    "Precedence: list\n"
	    "\n", 41);
	buf_adds(&in, "Message-ID: <m>\nReply-To: a0@example.com");
	for (int i = 1; i < 5000; i++)
		buf_addf(&in, ",\n a%d@example.com", i);
	buf_adds(&in, "\n\nbody\n");
	l.reply_goes_to_list = "point_to_list";
	assert_int_equal(decorate_headers(&l, in.p, in.len, 1, "s@x", &out,
	    &body), 0);
	rt = strstr(out.p, "Reply-To: ");
	assert_non_null(rt);
	assert_non_null(strstr(rt, "a62@example.com, bench@example.org\n"));
	assert_null(strstr(rt, "a63@example.com"));
	for (char *line = rt; line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');
		assert_non_null(nl);
		assert_true(nl - line <= 78);
		line = nl + 1;
	}
	buf_free(&in);
	buf_free(&out);
}

/* Hostile shapes: no blank line, a last field with no line end, no
 * header at all, NUL and 8-bit bytes kept as they came. */
static void
test_hostile(void **state)
{
	struct decorate_list l = bench();
	static const char nul_in[] = "X-A: a\0b\xff\r\nMessage-ID: <m>\r\n"
	    "Subject: s\r\n\r\n";
	struct buf	 out = { 0 };
	size_t		 body;

	(void)state;
	l.include_rfc2369_headers = 0;
	check(&l, "Message-ID: <m>\nSubject: x",
	    "Message-ID: <m>\n"
	    "Subject: [Bench] x\n"
	    "X-BeenThere: bench@example.org\n"
	    "Precedence: list\n"
	    "\n", 26);
	check(&l, "",
	    "Subject: [Bench] (no subject)\n"
	    "Message-ID: <seed@example.org>\n"
	    "X-BeenThere: bench@example.org\n"
	    "Precedence: list\n"
	    "\n", 0);
	assert_int_equal(decorate_headers(&l, nul_in, sizeof(nul_in) - 1, 1,
	    "s@x", &out, &body), 0);
	assert_int_equal(body, sizeof(nul_in) - 1);
	assert_memory_equal(out.p, "X-A: a\0b\xff\r\n", 11);
	buf_free(&out);
}

static void
test_no_archive(void **state)
{
	(void)state;
	assert_int_equal(decorate_no_archive("X-No-Archive: yes\n\n", 19), 1);
	assert_int_equal(decorate_no_archive("X-Archive: No\n\n", 15), 1);
	assert_int_equal(decorate_no_archive("X-Archive: yes\n\n", 16), 0);
	assert_int_equal(decorate_no_archive("Subject: x\n\n", 12), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_post),
		cmocka_unit_test(test_cleansed_and_completed),
		cmocka_unit_test(test_list_id_description_and_archive),
		cmocka_unit_test(test_reply_to_munging),
		cmocka_unit_test(test_reply_to_whole_addresses),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_no_archive),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
