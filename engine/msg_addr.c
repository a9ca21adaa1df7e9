/*
 * msg_addr: RFC 5322 address lists as real mail writes them.
 *
 * The value is cut into tokens first (words, quoted strings, domain
 * literals, comments, and the specials < > @ , ; :), each marked with
 * whether whitespace or a comment came before it.  Entries are then read
 * from the tokens.  Both passes are linear and never fail on bad input:
 * an unterminated quote, comment or literal runs to the end of the value,
 * and an entry that yields no local@domain is skipped.
 *
 * Junk is read the way people meant it where that is cheap: a local part
 * or domain is the run of tokens next to the '@' that touch each other
 * or are joined by dots (so "John Doe jd@example.org" gives the display
 * "John Doe"), an unclosed '<' ends at the next comma unless it holds an
 * obsolete route, and a comment stands in for a missing display name
 * ("jd@example.org (John Doe)"), as Python's email.utils does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "msg_addr.h"

enum addr_kind {
	ADDR_WORD,	/* atoms, dots, and any byte not special */
	ADDR_QUOTED,	/* "..." with its quotes */
	ADDR_LITERAL,	/* [...] with its brackets */
	ADDR_SPECIAL	/* one of < > @ , ; : */
};

struct addr_tok {
	enum addr_kind	 kind;
	const char	*p;
	size_t		 len;
	int		 gap;	/* whitespace or a comment before it */
};

/* A comment, placed before token `pos' (which may be the end). */
struct addr_comment {
	const char	*p;
	size_t		 len;
	size_t		 pos;
};

struct addr_toks {
	struct addr_tok		*v;
	size_t			 n, cap;
	struct addr_comment	*c;
	size_t			 nc, ccap;
};

static const char addr_ws[] = " \t\r\n";

static int
addr_is_ws(char c)
{
	return c != '\0' && strchr(addr_ws, c) != NULL;
}

/* Make room for one more element of `size' bytes, doubling. */
static int
addr_grow(void **v, size_t n, size_t *cap, size_t size)
{
	size_t	 ncap;
	void	*p;

	if (n < *cap)
		return 0;
	ncap = *cap == 0 ? 16 : *cap * 2;
	if (ncap > SIZE_MAX / size || (p = realloc(*v, ncap * size)) == NULL)
		return -1;
	*v = p;
	*cap = ncap;
	return 0;
}

/* Length of a quoted string or domain literal at s, ending after `close'
 * or at the end of the value; a backslash escapes the next byte. */
static size_t
addr_span_delim(const char *s, char close)
{
	size_t	 i = 1;

	while (s[i] != '\0') {
		if (s[i] == '\\' && s[i + 1] != '\0')
			i += 2;
		else if (s[i++] == close)
			break;
	}
	return i;
}

/* Length of a (possibly nested) comment at s. */
static size_t
addr_span_comment(const char *s)
{
	size_t	 i = 1, depth = 1;

	while (s[i] != '\0' && depth > 0) {
		if (s[i] == '\\' && s[i + 1] != '\0')
			i++;
		else if (s[i] == '(')
			depth++;
		else if (s[i] == ')')
			depth--;
		i++;
	}
	return i;
}

static int
addr_add_comment(struct addr_toks *t, const char *p, size_t len)
{
	if (addr_grow((void **)&t->c, t->nc, &t->ccap, sizeof(*t->c)) != 0)
		return -1;
	t->c[t->nc].p = p;
	t->c[t->nc].len = len;
	t->c[t->nc].pos = t->n;
	t->nc++;
	return 0;
}

static int
addr_add_tok(struct addr_toks *t, enum addr_kind kind, const char *p,
    size_t len, int gap)
{
	if (addr_grow((void **)&t->v, t->n, &t->cap, sizeof(*t->v)) != 0)
		return -1;
	t->v[t->n].kind = kind;
	t->v[t->n].p = p;
	t->v[t->n].len = len;
	t->v[t->n].gap = gap;
	t->n++;
	return 0;
}

static int
addr_tokenize(const char *s, struct addr_toks *t)
{
	enum addr_kind	 kind;
	size_t		 len;
	int		 gap = 0;

	while (*s != '\0') {
		if (addr_is_ws(*s) || *s == ')') {	/* stray ')' too */
			gap = 1;
			s++;
			continue;
		}
		if (*s == '(') {
			len = addr_span_comment(s);
			if (addr_add_comment(t, s, len) != 0)
				return -1;
			gap = 1;
			s += len;
			continue;
		}
		if (*s == '"') {
			/* XXX An unterminated quote swallows the rest of the
			 * value, so '"Doe, John <jd@x.org>' yields nothing;
			 * retrying without the stray quote would recover it. */
			kind = ADDR_QUOTED;
			len = addr_span_delim(s, '"');
		} else if (*s == '[') {
			kind = ADDR_LITERAL;
			len = addr_span_delim(s, ']');
		} else if (strchr("<>@,;:", *s) != NULL) {
			kind = ADDR_SPECIAL;
			len = 1;
		} else {
			kind = ADDR_WORD;
			len = strcspn(s, " \t\r\n<>@,;:\"()[");
		}
		if (addr_add_tok(t, kind, s, len, gap) != 0)
			return -1;
		gap = 0;
		s += len;
	}
	return 0;
}

static int
addr_is(const struct addr_tok *t, char special)
{
	return t->kind == ADDR_SPECIAL && *t->p == special;
}

/* Index of the first `special' in [from, to), or `to'. */
static size_t
addr_find(const struct addr_toks *t, size_t from, size_t to, char special)
{
	while (from < to && !addr_is(&t->v[from], special))
		from++;
	return from;
}

/* Two neighbouring tokens of one local part or domain: touching, or
 * joined by a dot (obsolete syntax allows CFWS around dots). */
static int
addr_joined(const struct addr_tok *a, const struct addr_tok *b)
{
	return !b->gap || a->p[a->len - 1] == '.' || b->p[0] == '.';
}

static int
addr_local_kind(const struct addr_tok *t)
{
	return t->kind == ADDR_WORD || t->kind == ADDR_QUOTED;
}

static int
addr_domain_kind(const struct addr_tok *t)
{
	return t->kind == ADDR_WORD || t->kind == ADDR_LITERAL;
}

/* Start of the local part that ends before the '@' at `at' (not before
 * `lo'); `at' itself when there is none. */
static size_t
addr_local_start(const struct addr_toks *t, size_t lo, size_t at)
{
	size_t	 i = at;

	if (i == lo || !addr_local_kind(&t->v[i - 1]))
		return at;
	i--;
	while (i > lo && addr_local_kind(&t->v[i - 1]) &&
	    addr_joined(&t->v[i - 1], &t->v[i]))
		i--;
	return i;
}

/* End of the domain that starts after the '@' at `at' (not past `hi'):
 * one domain literal, or a run of words; never the two mixed. */
static size_t
addr_domain_end(const struct addr_toks *t, size_t at, size_t hi)
{
	size_t	 j = at + 1;

	if (j >= hi || !addr_domain_kind(&t->v[j]))
		return j;
	if (t->v[j].kind == ADDR_LITERAL)
		return j + 1;
	while (j + 1 < hi && t->v[j + 1].kind == ADDR_WORD &&
	    addr_joined(&t->v[j], &t->v[j + 1]))
		j++;
	return j + 1;
}

static char
addr_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 'a' - 'A') : c;
}

/* "local@domain", local part as written, domain lowercased. */
static char *
addr_spec(const struct addr_toks *t, size_t ls, size_t at, size_t de)
{
	struct buf	 b = { 0 };
	size_t		 i, k, mark;
	int		 rc = 0;

	for (i = ls; i < at; i++)
		rc |= buf_add(&b, t->v[i].p, t->v[i].len);
	rc |= buf_add(&b, "@", 1);
	mark = b.len;
	for (i = at + 1; i < de; i++)
		rc |= buf_add(&b, t->v[i].p, t->v[i].len);
	if (rc != 0) {
		buf_free(&b);
		return NULL;
	}
	for (k = mark; k < b.len; k++)
		b.p[k] = addr_lower(b.p[k]);
	return b.p;
}

/* Text of a quoted string or comment without its delimiters (the closing
 * one may be missing) and with backslash escapes resolved.  The spans
 * end at their closing byte, so an unescaped one last is the close. */
static int
addr_unquote(struct buf *b, const char *p, size_t len, char close)
{
	size_t	 i;
	int	 rc = buf_add(b, "", 0);

	for (i = 1; i < len; i++) {
		if (p[i] == '\\' && i + 1 < len)
			i++;
		else if (p[i] == close && i == len - 1)
			break;
		rc |= buf_add(b, p + i, 1);
	}
	return rc;
}

/* Trimmed copy of b's text, or NULL when it is empty; frees b. */
static char *
addr_trimmed(struct buf *b, int *oom)
{
	size_t	 s = 0, e = b->len;
	char	*r = NULL;

	while (s < e && addr_is_ws(b->p[s]))
		s++;
	while (e > s && addr_is_ws(b->p[e - 1]))
		e--;
	if (e > s) {
		if ((r = malloc(e - s + 1)) == NULL) {
			*oom = 1;
		} else {
			memcpy(r, b->p + s, e - s);
			r[e - s] = '\0';
		}
	}
	buf_free(b);
	return r;
}

/* Display name from the phrase tokens [s, e), words separated by one
 * space where the value had whitespace; NULL if empty. */
static char *
addr_phrase(const struct addr_toks *t, size_t s, size_t e, int *oom)
{
	struct buf	 b = { 0 };
	size_t		 i;
	int		 rc = 0;

	for (i = s; i < e; i++) {
		const struct addr_tok *k = &t->v[i];

		if (i > s && k->gap)
			rc |= buf_add(&b, " ", 1);
		if (k->kind == ADDR_QUOTED)
			rc |= addr_unquote(&b, k->p, k->len, '"');
		else
			rc |= buf_add(&b, k->p, k->len);
	}
	if (rc != 0) {
		*oom = 1;
		buf_free(&b);
		return NULL;
	}
	return addr_trimmed(&b, oom);
}

/* The first comment of the entry [s, e), as a display name.  Comments
 * are in value order, so a binary search keeps a list of many commented
 * entries linear. */
static char *
addr_comment_name(const struct addr_toks *t, size_t s, size_t e, int *oom)
{
	struct buf	 b = { 0 };
	size_t		 lo = 0, hi = t->nc, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (t->c[mid].pos < s)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == t->nc || t->c[lo].pos > e)
		return NULL;
	if (addr_unquote(&b, t->c[lo].p, t->c[lo].len, ')') != 0) {
		*oom = 1;
		buf_free(&b);
		return NULL;
	}
	return addr_trimmed(&b, oom);
}

static int
addr_push(struct msg_addr_list *l, size_t *cap, char *display, char *addr)
{
	if (addr_grow((void **)&l->v, l->n, cap, sizeof(*l->v)) != 0)
		return -1;
	l->v[l->n].display = display;
	l->v[l->n].addr = addr;
	l->n++;
	return 0;
}

/*
 * Read one mailbox from the tokens [s, e) and append it if it has an
 * addr-spec.  With angle brackets the phrase before them is the display
 * name and an obsolete route ("<@a,@b:x@y>") is skipped; without them the
 * address is the first '@' with its local part and domain, and the words
 * before the local part are the display name.  -1 on ENOMEM.
 */
static int
addr_entry(const struct addr_toks *t, size_t s, size_t e,
    struct msg_addr_list *l, size_t *cap)
{
	size_t	 lt, lo, hi, at, ls, de;
	char	*display, *addr;
	int	 oom = 0;

	lt = addr_find(t, s, e, '<');
	if (lt < e) {
		lo = lt + 1;
		hi = addr_find(t, lo, e, '>');
		if (lo < hi && addr_is(&t->v[lo], '@'))
			lo = addr_find(t, lo, hi, ':') + 1;
	} else {
		lo = s;
		hi = e;
	}
	if (lo >= hi || (at = addr_find(t, lo, hi, '@')) == hi)
		return 0;
	ls = addr_local_start(t, lo, at);
	de = addr_domain_end(t, at, hi);
	if (ls == at || de == at + 1)
		return 0;
	if ((addr = addr_spec(t, ls, at, de)) == NULL)
		return -1;
	display = addr_phrase(t, s, lt < e ? lt : ls, &oom);
	if (display == NULL && !oom)
		display = addr_comment_name(t, s, e, &oom);
	if (oom || addr_push(l, cap, display, addr) != 0) {
		free(display);
		free(addr);
		return -1;
	}
	return 0;
}

/*
 * Cut the tokens into entries at top-level commas and semicolons; a colon
 * outside angle brackets opens a group, whose name is dropped.  Inside
 * angle brackets nothing cuts, except a comma when the brackets hold no
 * route: that is an unclosed '<', and the comma ends the entry.
 */
static int
addr_entries(const struct addr_toks *t, struct msg_addr_list *l)
{
	size_t	 i, start = 0, cap = 0;
	int	 angle = 0, route = 0, group = 0, rc = 0;
	char	 c;

	for (i = 0; i < t->n && rc == 0; i++) {
		if (t->v[i].kind != ADDR_SPECIAL)
			continue;
		c = *t->v[i].p;
		if (angle) {
			if (c == '>')
				angle = 0;
			if (c != ',' || route)
				continue;
			angle = 0;
		}
		if (c == '<') {
			angle = 1;
			route = i + 1 < t->n && addr_is(&t->v[i + 1], '@');
		} else if (c == ',' || c == ';') {
			rc = addr_entry(t, start, i, l, &cap);
			start = i + 1;
			group = c == ';' ? 0 : group;
		} else if (c == ':' && !group) {
			group = 1;
			start = i + 1;
		}
	}
	if (rc == 0)
		rc = addr_entry(t, start, t->n, l, &cap);
	return rc;
}

int
msg_addr_parse_list(const char *value, struct msg_addr_list *l)
{
	struct addr_toks	 t = { 0 };
	int			 rc;

	l->v = NULL;
	l->n = 0;
	if (value == NULL)
		return 0;
	rc = addr_tokenize(value, &t);
	if (rc == 0)
		rc = addr_entries(&t, l);
	free(t.v);
	free(t.c);
	if (rc != 0) {
		msg_addr_list_free(l);
		return -1;
	}
	return (int)l->n;
}

void
msg_addr_list_free(struct msg_addr_list *l)
{
	size_t	 i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].display);
		free(l->v[i].addr);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void
addr_lower_str(char *s)
{
	for (; *s != '\0'; s++)
		*s = addr_lower(*s);
}

char *
msg_addr_first(const char *value)
{
	struct msg_addr_list	 l;
	char			*r = NULL;

	if (msg_addr_parse_list(value, &l) > 0) {
		r = l.v[0].addr;
		l.v[0].addr = NULL;
		addr_lower_str(r);
	}
	msg_addr_list_free(&l);
	return r;
}

/* 1 if s (n bytes) has exactly one '@', bytes on both sides, and no
 * space or control byte. */
static int
addr_plain_ok(const char *s, size_t n)
{
	const char	*at = memchr(s, '@', n);
	size_t		 i;

	if (at == NULL || at == s || at == s + n - 1 ||
	    memchr(at + 1, '@', (size_t)(s + n - at - 1)) != NULL)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return 0;
	return 1;
}

char *
msg_addr_normalize(const char *s)
{
	char	*r;

	if (s == NULL || !addr_plain_ok(s, strlen(s)))
		return NULL;
	if ((r = strdup(s)) != NULL)
		addr_lower_str(r);
	return r;
}

/* Lowercased copy of n bytes into a buffer of `size'; -1 if too small. */
static int
addr_copy_lower(char *dst, size_t size, const char *s, size_t n)
{
	size_t	 i;

	if (n >= size)
		return -1;
	for (i = 0; i < n; i++)
		dst[i] = addr_lower(s[i]);
	dst[n] = '\0';
	return 0;
}

int
msg_addr_split_recipient(const char *addr, char *local, size_t local_size,
    char *suffix, size_t suffix_size, char *domain, size_t domain_size)
{
	const char	*s = addr, *at, *end, *dash;
	size_t		 n;

	if (addr == NULL)
		return -1;
	n = strlen(addr);
	if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		s++;
		n -= 2;
	}
	if (!addr_plain_ok(s, n))
		return -1;
	at = memchr(s, '@', n);
	if ((end = memchr(s, '+', (size_t)(at - s))) == NULL)
		end = at;
	if (end == s)
		return -1;
	for (dash = end; dash > s && dash[-1] != '-'; dash--)
		;
	if (dash == s)
		dash = end;	/* no '-': empty suffix */
	if (addr_copy_lower(local, local_size, s, (size_t)(end - s)) != 0 ||
	    addr_copy_lower(suffix, suffix_size, dash,
	    (size_t)(end - dash)) != 0 ||
	    addr_copy_lower(domain, domain_size, at + 1,
	    (size_t)(s + n - at - 1)) != 0)
		return -1;
	return 0;
}
