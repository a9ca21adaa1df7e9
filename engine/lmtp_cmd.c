/*
 * lmtp_cmd: parse one LMTP command line.  See lmtp_cmd.h.
 *
 * Everything works on (pointer, end) pairs because the line may hold NUL
 * bytes; a C-string function here would stop early and accept a line the
 * peer meant differently.
 */
#include <stdint.h>
#include <string.h>

#include "lmtp_cmd.h"

static const char *const lmtp_verb_names[LMTP_VERB_COUNT] = {
	[LMTP_VERB_UNKNOWN] = "?",
	[LMTP_VERB_LHLO] = "LHLO",
	[LMTP_VERB_HELO] = "HELO",
	[LMTP_VERB_EHLO] = "EHLO",
	[LMTP_VERB_MAIL] = "MAIL",
	[LMTP_VERB_RCPT] = "RCPT",
	[LMTP_VERB_DATA] = "DATA",
	[LMTP_VERB_RSET] = "RSET",
	[LMTP_VERB_NOOP] = "NOOP",
	[LMTP_VERB_QUIT] = "QUIT",
	[LMTP_VERB_VRFY] = "VRFY",
};

const char *
lmtp_verb_name(enum lmtp_verb v)
{
	if (v <= LMTP_VERB_UNKNOWN || v >= LMTP_VERB_COUNT)
		return "?";
	return lmtp_verb_names[v];
}

static int
lmtp_upper(int c)
{
	return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

/* Case-insensitive match of [p, end) against the upper-case word w. */
static int
lmtp_word_is(const char *p, const char *end, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(end - p) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (lmtp_upper((unsigned char)p[i]) != w[i])
			return 0;
	return 1;
}

/* Same, but w need only be a prefix; returns the byte after it or NULL. */
static const char *
lmtp_prefix(const char *p, const char *end, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(end - p) < n)
		return NULL;
	return lmtp_word_is(p, p + n, w) ? p + n : NULL;
}

static int
lmtp_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static enum lmtp_verb
lmtp_verb_find(const char *p, const char *end)
{
	for (int v = LMTP_VERB_UNKNOWN + 1; v < LMTP_VERB_COUNT; v++)
		if (lmtp_word_is(p, end, lmtp_verb_names[v]))
			return (enum lmtp_verb)v;
	return LMTP_VERB_UNKNOWN;
}

/* One line end, then the blanks before it. */
static const char *
lmtp_trim_end(const char *p, const char *end)
{
	if (end > p && end[-1] == '\n')
		end--;
	if (end > p && end[-1] == '\r')
		end--;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	return end;
}

static const char *
lmtp_skip_sp(const char *p, const char *end)
{
	while (p < end && *p == ' ')
		p++;
	return p;
}

/*
 * A route "@a,@b:" before the mailbox is obsolete; RFC 5321 4.1.1.3 says
 * accept it and ignore it, which also keeps it away from the owner.
 */
static enum lmtp_cmd_status
lmtp_path_drop_route(struct lmtp_cmd *c)
{
	const char *colon;

	if (c->path_len == 0 || c->path[0] != '@')
		return LMTP_CMD_OK;
	colon = memchr(c->path, ':', c->path_len);
	if (colon == NULL)
		return LMTP_CMD_BAD_PATH;
	c->path_len -= (size_t)(colon + 1 - c->path);
	c->path = colon + 1;
	return LMTP_CMD_OK;
}

/*
 * "<...>" at *pp.  The path ends at the first ">" outside a quoted string,
 * so "<\"a>b\"@x>" is one path.  Spaces are allowed only when quoted.
 */
static enum lmtp_cmd_status
lmtp_path_scan(const char **pp, const char *end, struct lmtp_cmd *c)
{
	const char *p = *pp, *start;
	int quoted = 0;

	if (p == end || *p != '<')
		return LMTP_CMD_BAD_PATH;
	start = ++p;
	for (; p < end; p++) {
		unsigned char ch = *p;

		if (lmtp_is_ctl(ch) || ch >= 0x80)
			return LMTP_CMD_BAD_PATH;
		if (quoted && ch == '\\') {
			if (++p == end || lmtp_is_ctl(*p) ||
			    (unsigned char)*p >= 0x80)
				return LMTP_CMD_BAD_PATH;
		} else if (ch == '"')
			quoted = !quoted;
		else if (quoted)
			continue;
		else if (ch == '>')
			break;
		else if (ch == ' ' || ch == '<')
			return LMTP_CMD_BAD_PATH;
	}
	if (p == end)
		return LMTP_CMD_BAD_PATH;
	c->path = start;
	c->path_len = (size_t)(p - start);
	*pp = p + 1;
	return lmtp_path_drop_route(c);
}

static enum lmtp_cmd_status
lmtp_param_size(struct lmtp_cmd *c, const char *v, const char *vend)
{
	size_t n = 0;

	if (c->has_size || v == NULL)
		return LMTP_CMD_SYNTAX;
	for (const char *p = v; p < vend; p++) {
		unsigned d = (unsigned char)*p - '0';

		if (d > 9)
			return LMTP_CMD_SYNTAX;
		/* Any number past our limit is refused as too big, so
		 * saturating loses nothing the session needs. */
		n = n > (SIZE_MAX - d) / 10 ? SIZE_MAX : n * 10 + d;
	}
	c->has_size = 1;
	c->size = n;
	return LMTP_CMD_OK;
}

static enum lmtp_cmd_status
lmtp_param_body(struct lmtp_cmd *c, const char *v, const char *vend)
{
	if (c->body != LMTP_BODY_NONE || v == NULL)
		return LMTP_CMD_SYNTAX;
	if (lmtp_word_is(v, vend, "7BIT"))
		c->body = LMTP_BODY_7BIT;
	else if (lmtp_word_is(v, vend, "8BITMIME"))
		c->body = LMTP_BODY_8BITMIME;
	else
		return LMTP_CMD_BAD_PARAM;
	return LMTP_CMD_OK;
}

static int
lmtp_keyword_ok(const char *p, const char *end)
{
	if (p == end)
		return 0;
	for (const char *q = p; q < end; q++) {
		unsigned char ch = *q;
		int alnum = (ch >= '0' && ch <= '9') ||
		    (lmtp_upper(ch) >= 'A' && lmtp_upper(ch) <= 'Z');

		if (!alnum && (q == p || ch != '-'))
			return 0;
	}
	return 1;
}

/* esmtp-value: 1*(%d33-60 / %d62-126) */
static int
lmtp_value_ok(const char *p, const char *end)
{
	if (p == end)
		return 0;
	for (; p < end; p++) {
		unsigned char ch = *p;

		if (ch < 33 || ch > 126 || ch == '=')
			return 0;
	}
	return 1;
}

static enum lmtp_cmd_status
lmtp_param(struct lmtp_cmd *c, const char *kw, const char *kwend,
    const char *v, const char *vend)
{
	if (!lmtp_keyword_ok(kw, kwend))
		return LMTP_CMD_SYNTAX;
	if (v != NULL && !lmtp_value_ok(v, vend))
		return LMTP_CMD_SYNTAX;
	if (c->verb != LMTP_VERB_MAIL)
		return LMTP_CMD_BAD_PARAM;
	if (lmtp_word_is(kw, kwend, "SIZE"))
		return lmtp_param_size(c, v, vend);
	if (lmtp_word_is(kw, kwend, "BODY"))
		return lmtp_param_body(c, v, vend);
	return LMTP_CMD_BAD_PARAM;
}

/* " KEY[=VALUE]" repeated, up to end. */
static enum lmtp_cmd_status
lmtp_params(struct lmtp_cmd *c, const char *p, const char *end)
{
	enum lmtp_cmd_status st;
	const char *kw, *kwend, *v, *vend;

	while (p < end) {
		if (*p != ' ')
			return LMTP_CMD_SYNTAX;
		p = lmtp_skip_sp(p, end);
		kw = p;
		while (p < end && *p != ' ' && *p != '=')
			p++;
		kwend = p;
		v = vend = NULL;
		if (p < end && *p == '=') {
			v = ++p;
			while (p < end && *p != ' ')
				p++;
			vend = p;
		}
		if ((st = lmtp_param(c, kw, kwend, v, vend)) != LMTP_CMD_OK)
			return st;
	}
	return LMTP_CMD_OK;
}

/* "FROM:<path> params" or "TO:<path> params". */
static enum lmtp_cmd_status
lmtp_path_cmd(struct lmtp_cmd *c, const char *p, const char *end,
    const char *word)
{
	enum lmtp_cmd_status st;

	if ((p = lmtp_prefix(p, end, word)) == NULL)
		return LMTP_CMD_SYNTAX;
	p = lmtp_skip_sp(p, end);
	if ((st = lmtp_path_scan(&p, end, c)) != LMTP_CMD_OK)
		return st;
	if (c->path_len == 0 && c->verb == LMTP_VERB_RCPT)
		return LMTP_CMD_BAD_PATH;
	return lmtp_params(c, p, end);
}

/* Free text after the verb: required or not, no control bytes. */
static enum lmtp_cmd_status
lmtp_text_arg(struct lmtp_cmd *c, const char *p, const char *end,
    int required)
{
	if (required && p == end)
		return LMTP_CMD_SYNTAX;
	for (const char *q = p; q < end; q++)
		if (lmtp_is_ctl(*q))
			return LMTP_CMD_SYNTAX;
	c->arg = p;
	c->arg_len = (size_t)(end - p);
	return LMTP_CMD_OK;
}

enum lmtp_cmd_status
lmtp_cmd_parse(const char *line, size_t len, struct lmtp_cmd *c)
{
	const char *p = line, *end, *sp;

	memset(c, 0, sizeof(*c));
	end = lmtp_trim_end(line, line + len);
	sp = memchr(p, ' ', (size_t)(end - p));
	if (sp == NULL)
		sp = end;
	if ((c->verb = lmtp_verb_find(p, sp)) == LMTP_VERB_UNKNOWN)
		return LMTP_CMD_UNKNOWN;
	p = lmtp_skip_sp(sp, end);
	switch (c->verb) {
	case LMTP_VERB_MAIL:
		return lmtp_path_cmd(c, p, end, "FROM:");
	case LMTP_VERB_RCPT:
		return lmtp_path_cmd(c, p, end, "TO:");
	case LMTP_VERB_LHLO:
	case LMTP_VERB_HELO:
	case LMTP_VERB_EHLO:
	case LMTP_VERB_VRFY:
		return lmtp_text_arg(c, p, end, 1);
	case LMTP_VERB_NOOP:
		return lmtp_text_arg(c, p, end, 0);
	default:
		return p == end ? LMTP_CMD_OK : LMTP_CMD_SYNTAX;
	}
}
