/*
 * msg_header: split a header block into fields, as ranges of the caller's
 * buffer.
 *
 * A line ends at LF, with the CR before it (if any) counted as part of the
 * line end; a CR anywhere else is an ordinary byte, because real mail has
 * bare CRs inside header lines and they must pass through untouched.  The
 * fields array grows by doubling, so a header folded over thousands of
 * lines parses in linear time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg_header.h"

struct hdr_line {
	const char	*p;	/* first byte of the line */
	size_t		 len;	/* octets before the line end */
	size_t		 next;	/* offset of the following line */
	int		 crlf;	/* the line ends in CRLF */
};

static void
hdr_line_at(const char *buf, size_t len, size_t off, struct hdr_line *l)
{
	const char	*lf;
	size_t		 stop;

	lf = memchr(buf + off, '\n', len - off);
	stop = lf != NULL ? (size_t)(lf - buf) : len;
	l->p = buf + off;
	l->len = stop - off;
	l->next = lf != NULL ? stop + 1 : len;
	l->crlf = 0;
	if (lf != NULL && l->len > 0 && l->p[l->len - 1] == '\r') {
		l->len--;
		l->crlf = 1;
	}
}

static int
hdr_is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Length of the field name of a line that does not start with WSP, or 0
 * when the line is not a field: no colon, nothing before it, or bytes
 * outside printable ASCII in the name (an mbox "From " line, a body line
 * run into the header).  WSP before the colon is the obsolete syntax and
 * is allowed, but not part of the name.
 */
static size_t
hdr_name_len(const struct hdr_line *l, const char **colonp)
{
	const char	*colon;
	size_t		 n, i;

	*colonp = colon = memchr(l->p, ':', l->len);
	if (colon == NULL)
		return 0;
	n = (size_t)(colon - l->p);
	while (n > 0 && hdr_is_wsp(l->p[n - 1]))
		n--;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)l->p[i];

		if (c < 33 || c > 126)
			return 0;
	}
	return n;
}

static struct msg_field *
hdr_new_field(struct msg_headers *h)
{
	struct msg_field	*v;
	size_t			 cap;

	if (h->nfields == h->cap) {
		cap = h->cap == 0 ? 32 : h->cap * 2;
		if (cap > SIZE_MAX / sizeof(*v))
			return NULL;
		v = realloc(h->fields, cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		h->fields = v;
		h->cap = cap;
	}
	return &h->fields[h->nfields++];
}

/* Start a field at line `l'; returns 1 if the line is a bad one. */
static int
hdr_start_field(struct msg_field *f, const struct hdr_line *l)
{
	const char	*colon = NULL;
	size_t		 n;

	f->raw = l->p;
	f->name = l->p;
	/* A continuation with nothing to continue has no name either. */
	n = hdr_is_wsp(l->p[0]) ? 0 : hdr_name_len(l, &colon);
	f->name_len = n;
	f->value = n == 0 ? l->p : colon + 1;
	return n == 0;
}

static void
hdr_end_field(struct msg_field *f, const struct hdr_line *l, const char *buf)
{
	f->raw_len = (size_t)(buf + l->next - f->raw);
	f->value_len = (size_t)(l->p + l->len - f->value);
}

int
msg_headers_parse(const char *buf, size_t len, struct msg_headers *h)
{
	struct hdr_line		 l;
	struct msg_field	*f = NULL;
	size_t			 off = 0;
	int			 bad;

	memset(h, 0, sizeof(*h));
	while (off < len) {
		hdr_line_at(buf, len, off, &l);
		if (off == 0)
			h->crlf = l.crlf;
		if (l.len == 0) {
			h->header_len = off;
			h->body_offset = l.next;
			return 0;
		}
		if (l.len > h->longest_line)
			h->longest_line = l.len;
		bad = memchr(l.p, '\0', l.len) != NULL;
		if (f == NULL || !hdr_is_wsp(l.p[0])) {
			if ((f = hdr_new_field(h)) == NULL) {
				msg_headers_free(h);
				return -1;
			}
			bad |= hdr_start_field(f, &l);
		}
		hdr_end_field(f, &l, buf);
		h->bad_lines += bad;
		off = l.next;
	}
	h->header_len = len;
	h->body_offset = len;
	return 0;
}

void
msg_headers_free(struct msg_headers *h)
{
	free(h->fields);
	memset(h, 0, sizeof(*h));
}

long
msg_headers_find(const struct msg_headers *h, const char *name, size_t from)
{
	size_t	 n = strlen(name), i;

	if (n == 0)
		return -1;
	for (i = from; i < h->nfields; i++) {
		const struct msg_field *f = &h->fields[i];

		if (f->name_len == n && strncasecmp(f->name, name, n) == 0)
			return (long)i;
	}
	return -1;
}

char *
msg_field_unfold(const struct msg_field *f)
{
	const char	*s = f->value;
	size_t		 n = f->value_len, i, o = 0, start = 0;
	char		*out, c;

	if ((out = malloc(n + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		c = s[i];
		if (c == '\n' || (c == '\r' && i + 1 < n && s[i + 1] == '\n'))
			continue;
		/* A bare CR or a NUL must not reach a caller that writes the
		 * value into a new header or a C string. */
		if (c == '\r' || c == '\0')
			c = ' ';
		out[o++] = c;
	}
	while (o > 0 && hdr_is_wsp(out[o - 1]))
		o--;
	while (start < o && hdr_is_wsp(out[start]))
		start++;
	memmove(out, out + start, o - start);
	out[o - start] = '\0';
	return out;
}

char *
msg_headers_get(const struct msg_headers *h, const char *name)
{
	long	 i = msg_headers_find(h, name, 0);

	return i < 0 ? NULL : msg_field_unfold(&h->fields[i]);
}
