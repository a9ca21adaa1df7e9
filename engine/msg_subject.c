/*
 * msg_subject: the subject prefix as Mailman 3.3.8 applies it
 * (handlers/subject_prefix.py), worked on the decoded text and encoded
 * again at the end.
 *
 * Deliberate differences from Mailman, each mending a quirk:
 * - the whole decoded subject is searched, not only its first encoded
 *   piece, so a prefix or "Re:" after an encoded word is still found;
 * - the prefix also matches at the very end of the subject without its
 *   trailing whitespace ("Re: [Bench]"), which header unfolding removes;
 * - a subject that is empty once prefix and markers are gone becomes
 *   "(no subject)" (Mailman leaves the bare prefix);
 * - the rest is trimmed, so stray spaces do not pile up after the prefix;
 * - "%%" in a numbered prefix matches a single "%";
 * - the encoded part is always UTF-8, never the list's charset or the
 *   sender's pieces in theirs, which every reader since 2000 decodes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "msg_encword.h"
#include "msg_subject.h"

#define SUBJ_USED	9	/* strlen("Subject: ") */
#define SUBJ_LINE_MAX	78
#define SUBJ_WORD_MIN	24	/* widest encoded word of one character */
#define SUBJ_WIDTH_MAX	32	/* widest %0Nd honoured */

/* XXX Python's \s also matches Unicode spaces (U+00A0 and others) in a
 * decoded subject; only ASCII whitespace is matched here. */
static const char subj_ws[] = " \t\r\n\f\v";

static int
subj_is_ws(char c)
{
	return c != '\0' && strchr(subj_ws, c) != NULL;
}

static int
subj_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Length of a "%d" or "%05d"-style hole at p, or 0. */
static size_t
subj_hole_len(const char *p)
{
	size_t	 i = 1;

	if (p[0] != '%')
		return 0;
	while (subj_is_digit(p[i]))
		i++;
	return p[i] == 'd' ? i + 1 : 0;
}

/* Does the prefix hold a hole?  "%%" is an escaped '%', so "%%d" has
 * none. */
static int
subj_numbered(const char *prefix)
{
	while (*prefix != '\0') {
		if (subj_hole_len(prefix) > 0)
			return 1;
		prefix += prefix[0] == '%' && prefix[1] == '%' ? 2 : 1;
	}
	return 0;
}

/* Width of the hole at p, clamped (atoi would overflow on silly ones). */
static int
subj_hole_width(const char *p)
{
	int	 w = 0;

	for (p++; subj_is_digit(*p); p++)
		if (w <= SUBJ_WIDTH_MAX)
			w = w * 10 + (*p - '0');
	return w > SUBJ_WIDTH_MAX ? SUBJ_WIDTH_MAX : w;
}

/* The prefix as it goes on the subject: holes replaced by the number,
 * "%%" by "%", as Python's `prefix % post_id' does.  Without a hole the
 * prefix is used as written, "%%" included (Python raises, Mailman
 * catches it and keeps the prefix). */
static int
subj_expand(const char *prefix, long number, struct buf *out)
{
	size_t	 hole;
	int	 rc = 0, width;

	if (!subj_numbered(prefix))
		return buf_adds(out, prefix);
	while (*prefix != '\0' && rc == 0) {
		if ((hole = subj_hole_len(prefix)) > 0) {
			width = subj_hole_width(prefix);
			rc = buf_addf(out, prefix[1] == '0' ? "%0*ld" : "%*ld",
			    width, number);
			prefix += hole;
		} else if (prefix[0] == '%' && prefix[1] == '%') {
			rc = buf_add(out, "%", 1);
			prefix += 2;
		} else {
			rc = buf_add(out, prefix++, 1);
		}
	}
	return rc;
}

/*
 * End of the prefix pattern matched at t, or NULL.  A hole matches
 * Mailman's \s*\d+\s*.  Whitespace right after a hole in the pattern is
 * taken as matched by the hole's trailing \s*, so no backtracking is
 * needed.  The regex would demand that whitespace too; real prefixes
 * ("[list %d] ") have none right after the number, so it never shows.
 */
static const char *
subj_match(const char *p, int numbered, const char *t)
{
	size_t	 hole;

	while (*p != '\0') {
		if (numbered && (hole = subj_hole_len(p)) > 0) {
			/* XXX The digits are taken greedily, so a prefix with
			 * a digit right after a hole ("%d0") never matches. */
			t += strspn(t, subj_ws);
			if (!subj_is_digit(*t))
				return NULL;
			t += strspn(t, "0123456789");
			t += strspn(t, subj_ws);
			p += hole;
			p += strspn(p, subj_ws);
			continue;
		}
		if (numbered && p[0] == '%' && p[1] == '%')
			p++;
		if (*p == *t) {
			p++;
			t++;
			continue;
		}
		if (*t == '\0' && p[strspn(p, subj_ws)] == '\0')
			return t;
		return NULL;
	}
	return t;
}

/*
 * Remove every occurrence of the prefix, scanning left to right as
 * re.sub does.  When the pattern starts with a hole and fails, every
 * position inside the digit run just scanned fails the same way (the
 * greedy run ends at the same byte), so skip it: a prefix like "%d: "
 * against a long run of digits stays linear.
 */
static int
subj_remove_prefix(const char *text, const char *prefix, struct buf *out)
{
	int		 numbered = subj_numbered(prefix);
	int		 lead_hole = numbered && subj_hole_len(prefix) > 0;
	const char	*t = text, *e;
	size_t		 skip;
	int		 rc = buf_add(out, "", 0);

	while (*t != '\0' && rc == 0) {
		e = subj_match(prefix, numbered, t);
		if (e != NULL && e > t) {
			t = e;
			continue;
		}
		skip = 1;
		if (lead_hole) {
			skip = strspn(t, subj_ws);
			skip += strspn(t + skip, "0123456789");
			if (skip == 0)
				skip = 1;
		}
		rc = buf_add(out, t, skip);
		t += skip;
	}
	return rc;
}

static int
subj_marker_word(const char *p)
{
	static const char	*words[] = { "re", "aw", "sv", "vs" };
	size_t			 i;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if ((p[0] | 0x20) == words[i][0] &&
		    (p[1] | 0x20) == words[i][1])
			return 1;
	return 0;
}

/* Length of Mailman's RE_PATTERN matched at the start of s, or 0:
 * \s*((RE|AW|SV|VS)(\[\d+\])?\s*:\s*)+ without regard to case. */
static size_t
subj_markers(const char *s)
{
	const char	*p = s + strspn(s, subj_ws), *q, *end = s;
	size_t		 d;

	while (subj_marker_word(p)) {
		q = p + 2;
		if (q[0] == '[' && (d = strspn(q + 1, "0123456789")) > 0 &&
		    q[1 + d] == ']')
			q += d + 2;
		q += strspn(q, subj_ws);
		if (*q != ':')
			break;
		q++;
		p = end = q + strspn(q, subj_ws);
	}
	return (size_t)(end - s);
}

/*
 * Printable ASCII, folded at whitespace so that lines stay within 78
 * columns where the text allows; a fold goes before a whitespace run
 * that is followed by a word, and only where the run and word then fit
 * on the new line.  *colp gets the column after the text.
 */
static int
subj_fold_plain(const char *s, size_t n, size_t col, const char *eol,
    struct buf *out, size_t *colp)
{
	size_t	 i = 0, j, k;
	int	 rc = buf_add(out, "", 0);

	while (i < n && rc == 0) {
		for (j = i; j < n && subj_is_ws(s[j]); j++)
			;
		for (k = j; k < n && !subj_is_ws(s[k]); k++)
			;
		if (eol != NULL && i > 0 && j > i && k > j &&
		    col + (k - i) > SUBJ_LINE_MAX &&
		    k - i <= SUBJ_LINE_MAX) {
			rc |= buf_adds(out, eol);
			col = 0;
		}
		/* XXX A word longer than 998 octets stays whole on its line,
		 * past RFC 5322's hard limit; only encoding it as words
		 * would let it fold, and no real subject has one. */
		rc |= buf_add(out, s + i, k - i);
		col += k - i;
		i = k;
	}
	*colp = col;
	return rc;
}

/*
 * Index of the first byte that cannot go out plain: one outside printable
 * ASCII, or the "=?" of text that a reader would decode (the subject's
 * own decoding can yield it), which must go out encoded to stay text.
 */
static int
subj_first_bad(const char *s, size_t *bad)
{
	const char	*ew;
	char		*dec;
	size_t		 i;

	for (i = 0; s[i] != '\0'; i++)
		if ((s[i] < ' ' || s[i] > '~') && s[i] != '\t')
			break;
	*bad = i;
	if ((ew = strstr(s, "=?")) == NULL || (size_t)(ew - s) >= i)
		return 0;
	if ((dec = msg_encword_decode(s)) == NULL)
		return -1;
	if (strcmp(dec, s) != 0)
		*bad = (size_t)(ew - s);
	free(dec);
	return 0;
}

/*
 * The value as it goes on the wire: plain when it can be, else the
 * leading plain words (the prefix, "Re:") kept as they are and the rest
 * as encoded words.  An encoded word must follow whitespace, so the
 * plain part ends at the last whitespace before the first byte that
 * needs encoding.
 */
static char *
subj_render(const char *s, const char *eol)
{
	struct buf	 out = { 0 };
	size_t		 bad, w, ws, col;
	char		*enc;
	int		 rc;

	if (subj_first_bad(s, &bad) != 0)
		return NULL;
	if (s[bad] == '\0') {
		rc = subj_fold_plain(s, bad, SUBJ_USED, eol, &out, &col);
		return rc == 0 ? out.p : (buf_free(&out), NULL);
	}
	for (w = bad; w > 0 && !subj_is_ws(s[w - 1]); w--)
		;
	if (w == 0)
		return msg_encword_encode_all(s, SUBJ_USED, eol);
	for (ws = w; ws > 0 && subj_is_ws(s[ws - 1]); ws--)
		;
	rc = subj_fold_plain(s, ws, SUBJ_USED, eol, &out, &col);
	if (eol != NULL && ws > 0 &&
	    col + (w - ws) + SUBJ_WORD_MIN > SUBJ_LINE_MAX) {
		rc |= buf_adds(&out, eol);
		col = 0;
	}
	rc |= buf_add(&out, s + ws, w - ws);
	col += w - ws;
	if (rc != 0 ||
	    (enc = msg_encword_encode_all(s + w, col, eol)) == NULL) {
		buf_free(&out);
		return NULL;
	}
	rc = buf_adds(&out, enc);
	free(enc);
	return rc == 0 ? out.p : (buf_free(&out), NULL);
}

static int
subj_blank(const char *s)
{
	return s == NULL || s[strspn(s, subj_ws)] == '\0';
}

/* The subject without prefix: "Re: " if markers led it, then the rest
 * trimmed, or "(no subject)". */
static int
subj_strip(const char *text, const char *prefix, struct buf *out)
{
	struct buf	 t = { 0 };
	const char	*rest;
	size_t		 m, n;
	int		 rc;

	if (subj_remove_prefix(text, prefix, &t) != 0) {
		buf_free(&t);
		return -1;
	}
	m = subj_markers(t.p);
	rest = t.p + m;
	rest += strspn(rest, subj_ws);
	for (n = strlen(rest); n > 0 && subj_is_ws(rest[n - 1]); n--)
		;
	rc = buf_adds(out, m > 0 ? "Re: " : "");
	/* XXX Mailman writes "(no subject)" in the list's language; this is
	 * English only until the engine has message catalogues. */
	if (n == 0)
		rc |= buf_adds(out, "(no subject)");
	else
		rc |= buf_add(out, rest, n);
	buf_free(&t);
	return rc;
}

char *
msg_subject_prefix(const char *raw, const char *prefix, long post_number,
    const char *eol, char **stripped)
{
	struct buf	 full = { 0 }, rest = { 0 };
	char		*text, *res = NULL;
	int		 rc;

	if (stripped != NULL)
		*stripped = NULL;
	if ((text = msg_encword_decode(raw != NULL ? raw : "")) == NULL)
		return NULL;
	if (subj_blank(prefix)) {
		/* Mailman skips the handler: the subject stays as it is. */
		res = strdup(raw != NULL ? raw : "");
		rc = buf_adds(&rest, text);
	} else if ((rc = subj_strip(text, prefix, &rest)) == 0 &&
	    (rc = subj_expand(prefix, post_number, &full)) == 0 &&
	    (rc = buf_adds(&full, rest.p)) == 0) {
		res = subj_render(full.p, eol);
	}
	free(text);
	buf_free(&full);
	if (rc != 0 || res == NULL) {
		free(res);
		buf_free(&rest);
		return NULL;
	}
	if (stripped != NULL)
		*stripped = rest.p;
	else
		buf_free(&rest);
	return res;
}
