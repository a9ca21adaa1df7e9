/*
 * Unit tests for lmtp_cmd: one table of lines and what the parser must
 * make of them, then the cases that need more than a table row.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lmtp_cmd.h"

struct cmd_case {
	const char		*line;
	enum lmtp_cmd_status	 st;
	enum lmtp_verb		 verb;
	const char		*path;	/* NULL: not checked */
	const char		*arg;	/* NULL: not checked */
};

static const struct cmd_case cmd_cases[] = {
	{ "LHLO mx.example\r\n", LMTP_CMD_OK, LMTP_VERB_LHLO, NULL,
	    "mx.example" },
	{ "lhlo mx.example", LMTP_CMD_OK, LMTP_VERB_LHLO, NULL, "mx.example" },
	{ "LHLO\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_LHLO, NULL, NULL },
	{ "LHLO  \r\n", LMTP_CMD_SYNTAX, LMTP_VERB_LHLO, NULL, NULL },
	{ "HELO x\r\n", LMTP_CMD_OK, LMTP_VERB_HELO, NULL, "x" },
	{ "EHLO x\n", LMTP_CMD_OK, LMTP_VERB_EHLO, NULL, "x" },
	{ "MAIL FROM:<a@b.example>\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL,
	    "a@b.example", NULL },
	{ "mail from:<a@b>", LMTP_CMD_OK, LMTP_VERB_MAIL, "a@b", NULL },
	{ "MAIL FROM: <a@b>  \r\n", LMTP_CMD_OK, LMTP_VERB_MAIL, "a@b", NULL },
	{ "MAIL  FROM:<a@b>\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL, "a@b", NULL },
	{ "MAIL FROM:<>\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL, "", NULL },
	{ "MAIL FROM:a@b\r\n", LMTP_CMD_BAD_PATH, LMTP_VERB_MAIL, NULL, NULL },
	{ "MAIL FROM:<a@b\r\n", LMTP_CMD_BAD_PATH, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a b@c>\r\n", LMTP_CMD_BAD_PATH, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a<b@c>\r\n", LMTP_CMD_BAD_PATH, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<\"a b>c\"@d>\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL,
	    "\"a b>c\"@d", NULL },
	{ "MAIL FROM:<\"a\\\"b\"@d>\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL,
	    "\"a\\\"b\"@d", NULL },
	{ "MAIL FROM:<\"unterminated@d>\r\n", LMTP_CMD_BAD_PATH,
	    LMTP_VERB_MAIL, NULL, NULL },
	{ "MAIL FROM:<@r1,@r2:u@d>\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL, "u@d",
	    NULL },
	{ "MAIL FROM:<@r1>\r\n", LMTP_CMD_BAD_PATH, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a\x80@b>\r\n", LMTP_CMD_BAD_PATH, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a\x01@b>\r\n", LMTP_CMD_BAD_PATH, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL TO:<a@b>\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL, NULL },
	{ "MAIL\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL, NULL },
	{ "MAIL FROM:<a@b>x\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a@b> SIZE=100\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL, "a@b",
	    NULL },
	{ "MAIL FROM:<a@b> SIZE=\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a@b> SIZE\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a@b> SIZE=1x\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL,
	    NULL, NULL },
	{ "MAIL FROM:<a@b> SIZE=1 SIZE=2\r\n", LMTP_CMD_SYNTAX,
	    LMTP_VERB_MAIL, NULL, NULL },
	{ "MAIL FROM:<a@b> BODY=8BITMIME\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL,
	    "a@b", NULL },
	{ "MAIL FROM:<a@b> body=7bit\r\n", LMTP_CMD_OK, LMTP_VERB_MAIL,
	    "a@b", NULL },
	{ "MAIL FROM:<a@b> BODY=BINARYMIME\r\n", LMTP_CMD_BAD_PARAM,
	    LMTP_VERB_MAIL, NULL, NULL },
	{ "MAIL FROM:<a@b> BODY\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a@b> SMTPUTF8\r\n", LMTP_CMD_BAD_PARAM, LMTP_VERB_MAIL,
	    NULL, NULL },
	{ "MAIL FROM:<a@b> RET=FULL\r\n", LMTP_CMD_BAD_PARAM, LMTP_VERB_MAIL,
	    NULL, NULL },
	{ "MAIL FROM:<a@b> -X=1\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a@b> X==1\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "MAIL FROM:<a@b> =1\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_MAIL, NULL,
	    NULL },
	{ "RCPT TO:<list@lists.example>\r\n", LMTP_CMD_OK, LMTP_VERB_RCPT,
	    "list@lists.example", NULL },
	{ "RCPT TO:<Postmaster>\r\n", LMTP_CMD_OK, LMTP_VERB_RCPT,
	    "Postmaster", NULL },
	{ "RCPT TO:<>\r\n", LMTP_CMD_BAD_PATH, LMTP_VERB_RCPT, NULL, NULL },
	{ "RCPT TO:<a@b> SIZE=1\r\n", LMTP_CMD_BAD_PARAM, LMTP_VERB_RCPT,
	    NULL, NULL },
	{ "RCPT TO:<a@b> NOTIFY=NEVER\r\n", LMTP_CMD_BAD_PARAM,
	    LMTP_VERB_RCPT, NULL, NULL },
	{ "RCPT FROM:<a@b>\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_RCPT, NULL, NULL },
	{ "DATA\r\n", LMTP_CMD_OK, LMTP_VERB_DATA, NULL, NULL },
	{ "data \r\n", LMTP_CMD_OK, LMTP_VERB_DATA, NULL, NULL },
	{ "DATA x\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_DATA, NULL, NULL },
	{ "RSET\r\n", LMTP_CMD_OK, LMTP_VERB_RSET, NULL, NULL },
	{ "QUIT\r\n", LMTP_CMD_OK, LMTP_VERB_QUIT, NULL, NULL },
	{ "NOOP\r\n", LMTP_CMD_OK, LMTP_VERB_NOOP, NULL, "" },
	{ "NOOP hello there\r\n", LMTP_CMD_OK, LMTP_VERB_NOOP, NULL,
	    "hello there" },
	{ "VRFY bob\r\n", LMTP_CMD_OK, LMTP_VERB_VRFY, NULL, "bob" },
	{ "VRFY\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_VRFY, NULL, NULL },
	{ "NOOP a\rb\r\n", LMTP_CMD_SYNTAX, LMTP_VERB_NOOP, NULL, NULL },
	{ "\r\n", LMTP_CMD_UNKNOWN, LMTP_VERB_UNKNOWN, NULL, NULL },
	{ "", LMTP_CMD_UNKNOWN, LMTP_VERB_UNKNOWN, NULL, NULL },
	{ " DATA\r\n", LMTP_CMD_UNKNOWN, LMTP_VERB_UNKNOWN, NULL, NULL },
	{ "DAT\r\n", LMTP_CMD_UNKNOWN, LMTP_VERB_UNKNOWN, NULL, NULL },
	{ "DATAX\r\n", LMTP_CMD_UNKNOWN, LMTP_VERB_UNKNOWN, NULL, NULL },
	{ "EXPN list\r\n", LMTP_CMD_UNKNOWN, LMTP_VERB_UNKNOWN, NULL, NULL },
	{ "STARTTLS\r\n", LMTP_CMD_UNKNOWN, LMTP_VERB_UNKNOWN, NULL, NULL },
};

static void
test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(*cmd_cases); i++) {
		const struct cmd_case *k = &cmd_cases[i];
		struct lmtp_cmd c;
		enum lmtp_cmd_status st;

		st = lmtp_cmd_parse(k->line, strlen(k->line), &c);
		if (st != k->st || c.verb != k->verb)
			fail_msg("case %zu \"%s\": status %d verb %d", i,
			    k->line, st, c.verb);
		if (k->path != NULL && (c.path_len != strlen(k->path) ||
		    memcmp(c.path, k->path, c.path_len) != 0))
			fail_msg("case %zu \"%s\": path \"%.*s\"", i, k->line,
			    (int)c.path_len, c.path);
		if (k->arg != NULL && (c.arg_len != strlen(k->arg) ||
		    memcmp(c.arg, k->arg, c.arg_len) != 0))
			fail_msg("case %zu \"%s\": arg \"%.*s\"", i, k->line,
			    (int)c.arg_len, c.arg);
	}
}

static void
test_params(void **state)
{
	struct lmtp_cmd c;
	const char *l = "MAIL FROM:<a@b> BODY=8BITMIME SIZE=12345\r\n";

	(void)state;
	assert_int_equal(lmtp_cmd_parse(l, strlen(l), &c), LMTP_CMD_OK);
	assert_true(c.has_size);
	assert_int_equal(c.size, 12345);
	assert_int_equal(c.body, LMTP_BODY_8BITMIME);

	l = "MAIL FROM:<a@b> BODY=7BIT\r\n";
	assert_int_equal(lmtp_cmd_parse(l, strlen(l), &c), LMTP_CMD_OK);
	assert_false(c.has_size);
	assert_int_equal(c.body, LMTP_BODY_7BIT);

	l = "MAIL FROM:<a@b>\r\n";
	assert_int_equal(lmtp_cmd_parse(l, strlen(l), &c), LMTP_CMD_OK);
	assert_int_equal(c.body, LMTP_BODY_NONE);
}

/* A SIZE past what size_t holds is "too big", never a wrapped small
 * number that would pass the limit check. */
static void
test_size_saturates(void **state)
{
	struct lmtp_cmd c;
	const char *l =
	    "MAIL FROM:<a@b> SIZE=99999999999999999999999999999999\r\n";

	(void)state;
	assert_int_equal(lmtp_cmd_parse(l, strlen(l), &c), LMTP_CMD_OK);
	assert_true(c.size == SIZE_MAX);
	l = "MAIL FROM:<a@b> SIZE=18446744073709551616\r\n";
	assert_int_equal(lmtp_cmd_parse(l, strlen(l), &c), LMTP_CMD_OK);
	assert_true(c.size == SIZE_MAX);
	l = "MAIL FROM:<a@b> SIZE=0\r\n";
	assert_int_equal(lmtp_cmd_parse(l, strlen(l), &c), LMTP_CMD_OK);
	assert_int_equal(c.size, 0);
}

/* NUL bytes must not end the line early: "DATA\0junk" is not DATA. */
static void
test_nul_bytes(void **state)
{
	struct lmtp_cmd c;
	static const char data[] = "DATA\0junk\r\n";
	static const char rcpt[] = "RCPT TO:<a\0@b>\r\n";
	static const char noop[] = "NOOP a\0b\r\n";

	(void)state;
	assert_int_equal(lmtp_cmd_parse(data, sizeof(data) - 1, &c),
	    LMTP_CMD_UNKNOWN);
	assert_int_equal(lmtp_cmd_parse(rcpt, sizeof(rcpt) - 1, &c),
	    LMTP_CMD_BAD_PATH);
	assert_int_equal(lmtp_cmd_parse(noop, sizeof(noop) - 1, &c),
	    LMTP_CMD_SYNTAX);
}

/* The parser reads only the bytes it is given. */
static void
test_bounded_read(void **state)
{
	struct lmtp_cmd c;
	const char *l = "RCPT TO:<a@b>\r\nRCPT TO:<c@d>\r\n";

	(void)state;
	assert_int_equal(lmtp_cmd_parse(l, 15, &c), LMTP_CMD_OK);
	assert_int_equal(c.path_len, 3);
	assert_memory_equal(c.path, "a@b", 3);
	assert_int_equal(lmtp_cmd_parse(l, 12, &c), LMTP_CMD_BAD_PATH);
	assert_int_equal(lmtp_cmd_parse(l, 2, &c), LMTP_CMD_UNKNOWN);
}

static void
test_verb_names(void **state)
{
	(void)state;
	assert_string_equal(lmtp_verb_name(LMTP_VERB_LHLO), "LHLO");
	assert_string_equal(lmtp_verb_name(LMTP_VERB_VRFY), "VRFY");
	assert_string_equal(lmtp_verb_name(LMTP_VERB_UNKNOWN), "?");
	assert_string_equal(lmtp_verb_name(LMTP_VERB_COUNT), "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_size_saturates),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_bounded_read),
		cmocka_unit_test(test_verb_names),
	};

	return cmocka_run_group_tests_name("lmtp_cmd", tests, NULL, NULL);
}
