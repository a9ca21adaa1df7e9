/*
 * smtp_reply: SMTP replies (RFC 5321 4.2) and EHLO keywords, parsed from
 * bytes.  No sockets, no allocation: the relay's bytes are hostile input,
 * so every length is checked here and the result is a bounded, printable
 * text that the outgoing stage may store and log as it is.
 */
#include <string.h>

#include "smtp.h"

#define REPLY_TEXT_MAX	(sizeof(((struct smtp_reply *)0)->text) - 1)

/* Where the parser is inside one reply. */
struct reply_cursor {
	struct smtp_reply *r;
	size_t		 tlen;		/* bytes in r->text */
	int		 full;		/* text cut; ignore the rest */
};

static int
reply_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Whether the first bytes of a line, complete or not, cannot start a
 * reply line: three digits and a separator.  A CR in the separator's
 * place may still be the line's end, so it is let through here.
 */
static int
reply_head_bad(const char *p, size_t n)
{
	static const char lo[3] = { '2', '0', '0' };
	static const char hi[3] = { '5', '5', '9' };
	size_t i;

	for (i = 0; i < 3 && i < n; i++)
		if (p[i] < lo[i] || p[i] > hi[i])
			return 1;
	return n > 3 && p[3] != ' ' && p[3] != '-' && p[3] != '\r';
}

static int
reply_code(const char *p)
{
	return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* Length of the valid UTF-8 sequence at p (2-4), or 0 if there is none. */
static size_t
reply_utf8_len(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	/* Overlong forms, surrogates and code points past U+10FFFF. */
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

static void
reply_text_put(struct reply_cursor *c, const char *s, size_t n)
{
	if (c->full || c->tlen + n > REPLY_TEXT_MAX) {
		c->full = 1;
		return;
	}
	memcpy(c->r->text + c->tlen, s, n);
	c->tlen += n;
	c->r->text[c->tlen] = '\0';
}

/* Append one line's text, made printable; see smtp.h. */
static void
reply_text_add(struct reply_cursor *c, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, k;

	if (n == 0)
		return;
	if (c->tlen > 0)
		reply_text_put(c, " ", 1);
	for (i = 0; i < n && !c->full; i += k) {
		k = 1;
		if (u[i] == '\t')
			reply_text_put(c, " ", 1);
		else if (u[i] < 0x20 || u[i] == 0x7f)
			reply_text_put(c, "?", 1);
		else if (u[i] < 0x80)
			reply_text_put(c, s + i, 1);
		else if ((k = reply_utf8_len(u + i, n - i)) > 0)
			reply_text_put(c, s + i, k);
		else {
			k = 1;
			reply_text_put(c, "?", 1);
		}
	}
}

/* Digits of one RFC 3463 field: 1 to `max' of them.  Returns the count. */
static size_t
reply_enh_field(const char *p, size_t n, size_t max)
{
	size_t i;

	for (i = 0; i < n && i < max && reply_is_digit(p[i]); i++)
		;
	if (i < n && reply_is_digit(p[i]))
		return 0;
	return i;
}

/* "class.subject.detail" at the start of the first line's text. */
static void
reply_enhanced(struct smtp_reply *r, const char *p, size_t n)
{
	size_t a, b, len;

	r->enhanced[0] = '\0';
	if (n < 5 || p[0] - '0' != r->code / 100 || p[1] != '.')
		return;
	if ((a = reply_enh_field(p + 2, n - 2, 3)) == 0)
		return;
	if (2 + a >= n || p[2 + a] != '.')
		return;
	if ((b = reply_enh_field(p + 3 + a, n - 3 - a, 3)) == 0)
		return;
	len = 3 + a + b;
	if (len < n && p[len] != ' ')
		return;
	memcpy(r->enhanced, p, len);
	r->enhanced[len] = '\0';
}

/* A partial line: refuse garbage now rather than wait for its end. */
static int
reply_partial_bad(const struct smtp_reply *r, const char *p, size_t n)
{
	if (reply_head_bad(p, n))
		return 1;
	return n >= 3 && r->nlines > 0 && reply_code(p) != r->code;
}

long
smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r)
{
	struct reply_cursor c = { r, 0, 0 };
	const char *line, *nl;
	size_t off = 0, avail, n;
	int code;

	r->code = 0;
	r->nlines = 0;
	r->text[0] = '\0';
	r->enhanced[0] = '\0';
	for (;;) {
		line = buf + off;
		avail = len - off;
		nl = memchr(line, '\n', avail);
		if (nl == NULL) {
			if (reply_partial_bad(r, line, avail))
				return -1;
			return len >= SMTP_REPLY_MAX ? -1 : 0;
		}
		if ((size_t)(nl - buf) >= SMTP_REPLY_MAX)
			return -1;
		n = nl - line;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n < 3 || reply_head_bad(line, n) ||
		    (n > 3 && line[3] == '\r'))
			return -1;
		if (memchr(line, '\0', n) != NULL)
			return -1;
		code = reply_code(line);
		if (r->nlines > 0 && code != r->code)
			return -1;
		r->code = code;
		if (n > 4) {
			if (r->nlines == 0)
				reply_enhanced(r, line + 4, n - 4);
			reply_text_add(&c, line + 4, n - 4);
		}
		r->nlines++;
		off = nl - buf + 1;
		if (n == 3 || line[3] == ' ')
			return (long)off;
	}
}

static int
ehlo_word_is(const char *p, size_t n, const char *word)
{
	size_t i;
	char a;

	if (strlen(word) != n)
		return 0;
	for (i = 0; i < n; i++) {
		a = p[i];
		if (a >= 'a' && a <= 'z')
			a -= 'a' - 'A';
		if (a != word[i])
			return 0;
	}
	return 1;
}

/* SIZE's parameter; an absent or silly one means no announced limit. */
static unsigned long
ehlo_size(const char *p, size_t n)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; i < n && reply_is_digit(p[i]); i++) {
		if (v > (~0UL - 9) / 10)
			return 0;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	return i == n ? v : 0;
}

static unsigned
ehlo_line(const char *p, size_t n, unsigned long *size_max)
{
	static const struct {
		const char	*word;
		unsigned	 cap;
	} words[] = {
		{ "PIPELINING", SMTP_CAP_PIPELINING },
		{ "XVERP", SMTP_CAP_XVERP },
		{ "SIZE", SMTP_CAP_SIZE },
		{ "8BITMIME", SMTP_CAP_8BITMIME },
		{ "ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCED },
	};
	const char *sp;
	size_t w, i;

	sp = memchr(p, ' ', n);
	w = sp != NULL ? (size_t)(sp - p) : n;
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (!ehlo_word_is(p, w, words[i].word))
			continue;
		if (words[i].cap == SMTP_CAP_SIZE)
			*size_max = sp != NULL ?
			    ehlo_size(sp + 1, n - w - 1) : 0;
		return words[i].cap;
	}
	return 0;
}

unsigned
smtp_ehlo_caps(const char *buf, size_t len, unsigned long *size_max)
{
	const char *line = buf, *end = buf + len, *nl;
	unsigned caps = 0;
	size_t n;
	int first = 1;

	*size_max = 0;
	for (; line < end; line = nl + 1, first = 0) {
		nl = memchr(line, '\n', end - line);
		if (nl == NULL)
			break;
		n = nl - line;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		/* The first line names the relay, not a keyword. */
		if (first || n <= 4)
			continue;
		caps |= ehlo_line(line + 4, n - 4, size_max);
	}
	return caps;
}
