/*
 * msg_encword: RFC 2047 encoded words, decoded to UTF-8 and encoded from
 * it.
 *
 * Decoding follows what mail readers do rather than the letter of the RFC,
 * because that is what senders test against: an encoded word is
 * recognised anywhere, not only between whitespace; its encoded text may
 * hold spaces (broken mailers emit them); and adjacent words of one
 * charset are joined as bytes before conversion, because senders split
 * multibyte characters across words.  Anything that does not decode
 * stays as it was written, so no input is lost.
 */
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "msg_encword.h"

#define EW_CHARSET_MAX	40	/* longest charset name we hand to iconv */
#define EW_FIELD_MAX	80	/* longest charset field, language included */
#define EW_OVERHEAD	12	/* "=?utf-8?q?" and "?=" */
#define EW_WORD_MAX	75	/* RFC 2047 section 2 */
#define EW_LINE_MAX	78	/* RFC 5322 section 2.1.1 */

static const char ew_fffd[] = "\xef\xbf\xbd";
static const char ew_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Output with a sticky failure flag, so that the coders need not check
 * every append; ew_finish drops the result if any append failed. */
struct ew_out {
	struct buf	 b;
	int		 oom;
};

static void
ew_put(struct ew_out *o, const char *s, size_t n)
{
	if (!o->oom && buf_add(&o->b, s, n) == -1)
		o->oom = 1;
}

static void
ew_putc(struct ew_out *o, char c)
{
	ew_put(o, &c, 1);
}

static char *
ew_finish(struct ew_out *o)
{
	ew_put(o, "", 0);	/* allocates and terminates an empty one */
	if (o->oom) {
		buf_free(&o->b);
		return NULL;
	}
	return o->b.p;
}

/*
 * Append bytes that should be UTF-8, each byte of a malformed sequence
 * becoming U+FFFD.  Decoded text (`decoded') has NUL, CR and LF turned
 * into spaces: they would cut a C string or start a new header line for
 * a caller that writes the text back, and no reader wants them.
 */
static void
ew_put_utf8(struct ew_out *b, const char *s, size_t n, int decoded)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 i = 0, j, k;

	while (i < n) {
		/* Plain ASCII, the usual case, goes in one piece. */
		for (j = i; j < n && u[j] < 0x80 && (!decoded ||
		    (u[j] != '\0' && u[j] != '\r' && u[j] != '\n')); j++)
			;
		if (j > i) {
			ew_put(b, s + i, j - i);
			i = j;
			continue;
		}
		k = utf8_len(u + i, n - i);
		if (k == 0) {
			ew_put(b, ew_fffd, 3);
			i++;
		} else if (k == 1 && decoded &&
		    (u[i] == '\0' || u[i] == '\r' || u[i] == '\n')) {
			ew_putc(b, ' ');
			i++;
		} else {
			ew_put(b, s + i, k);
			i += k;
		}
	}
}

/* One encoded word as found in the text. */
struct ew_word {
	const char	*cs;		/* charset, RFC 2231 language cut off */
	size_t		 cs_len;
	char		 enc;		/* 'b' or 'q' */
	const char	*text;
	size_t		 text_len;
	size_t		 len;		/* of the whole word */
};

/* 1 if an encoded word starts at s.  Scanning stops at the third '?', so
 * repeated attempts over hostile text stay linear. */
static int
ew_scan(const char *s, struct ew_word *w)
{
	const char	*p = s + 2, *q, *star;
	unsigned char	 c;

	if (s[0] != '=' || s[1] != '?')
		return 0;
	for (q = p; *q != '?'; q++) {
		c = (unsigned char)*q;
		if (c <= ' ' || c >= 0x7f || q - p >= EW_FIELD_MAX)
			return 0;
	}
	w->cs = p;
	w->cs_len = (size_t)(q - p);
	if ((star = memchr(p, '*', w->cs_len)) != NULL)
		w->cs_len = (size_t)(star - p);
	if (w->cs_len == 0 || w->cs_len > EW_CHARSET_MAX)
		return 0;
	q++;
	if (*q != 'b' && *q != 'B' && *q != 'q' && *q != 'Q')
		return 0;
	w->enc = (char)(*q | 0x20);
	if (*++q != '?')
		return 0;
	w->text = ++q;
	for (; *q != '?'; q++) {
		c = (unsigned char)*q;
		if (c < ' ' || c >= 0x7f)
			return 0;
	}
	if (q[1] != '=')
		return 0;
	w->text_len = (size_t)(q - w->text);
	w->len = (size_t)(q + 2 - s);
	return 1;
}

static int
ew_b64_value(char c)
{
	const char	*p;

	if (c == '\0' || (p = strchr(ew_b64, c)) == NULL)
		return -1;
	return (int)(p - ew_b64);
}

/* Base64 with missing padding tolerated (Postel: many senders drop it);
 * any other defect makes the word undecodable. */
static int
ew_decode_b(const char *s, size_t n, struct ew_out *out)
{
	unsigned int	 acc = 0;
	size_t		 i, data = 0, pad = 0;
	int		 bits = 0, v;

	for (i = 0; i < n; i++) {
		if (s[i] == '=') {
			pad++;
			continue;
		}
		if (pad > 0 || (v = ew_b64_value(s[i])) < 0)
			return -1;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		data++;
		if (bits >= 8) {
			bits -= 8;
			ew_putc(out, (char)(acc >> bits));
			acc &= (1u << bits) - 1;
		}
	}
	if (data % 4 == 1 || pad > 2 || (pad > 0 && (data + pad) % 4 != 0))
		return -1;
	return 0;
}

static int
ew_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Q never fails: an '=' without two hex digits is kept as written. */
static void
ew_decode_q(const char *s, size_t n, struct ew_out *out)
{
	size_t	 i;
	int	 hi, lo;

	for (i = 0; i < n; i++) {
		if (s[i] == '_') {
			ew_putc(out, ' ');
		} else if (s[i] == '=' && i + 2 < n &&
		    (hi = ew_hex_value(s[i + 1])) >= 0 &&
		    (lo = ew_hex_value(s[i + 2])) >= 0) {
			ew_putc(out, (char)(hi << 4 | lo));
			i += 2;
		} else {
			ew_putc(out, s[i]);
		}
	}
}

enum ew_kind {
	EW_NONE,	/* no charset looked up yet */
	EW_UTF8,
	EW_ASCII,
	EW_ICONV,
	EW_UNKNOWN
};

/*
 * The run of adjacent encoded words being joined: their decoded bytes,
 * still in their charset.  The converter stays open across runs of the
 * same charset, since opening one costs more than most words.
 */
struct ew_run {
	char		 cs[EW_CHARSET_MAX + 1];
	enum ew_kind	 kind;
	iconv_t		 cd;
	struct ew_out	 bytes;
};

/* Charset names go to iconv_open; refuse anything that could carry an
 * iconv option ("//TRANSLIT") or a path. */
static int
ew_charset_name_ok(const char *cs)
{
	return cs[strspn(cs, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789._:+-()")] == '\0';
}

static void
ew_run_close(struct ew_run *r)
{
	if (r->kind == EW_ICONV)
		iconv_close(r->cd);
	r->kind = EW_NONE;
}

static enum ew_kind
ew_run_lookup(struct ew_run *r, const char *cs, size_t len)
{
	if (r->kind != EW_NONE && strlen(r->cs) == len &&
	    strncasecmp(r->cs, cs, len) == 0)
		return r->kind;
	ew_run_close(r);
	memcpy(r->cs, cs, len);
	r->cs[len] = '\0';
	if (strcasecmp(r->cs, "utf-8") == 0 || strcasecmp(r->cs, "utf8") == 0)
		r->kind = EW_UTF8;
	else if (strcasecmp(r->cs, "us-ascii") == 0 ||
	    strcasecmp(r->cs, "ascii") == 0)
		r->kind = EW_ASCII;
	else if (ew_charset_name_ok(r->cs) &&
	    (r->cd = iconv_open("UTF-8", r->cs)) != (iconv_t)-1)
		r->kind = EW_ICONV;
	else
		r->kind = EW_UNKNOWN;
	return r->kind;
}

/* Convert with iconv; an invalid or truncated sequence costs one U+FFFD
 * per byte skipped, the rest of the text still converts. */
static void
ew_iconv(iconv_t cd, const char *s, size_t n, struct ew_out *out)
{
	char	 tmp[256], *ip = (char *)s, *op;
	size_t	 ol, r;

	iconv(cd, NULL, NULL, NULL, NULL);
	while (n > 0) {
		op = tmp;
		ol = sizeof(tmp);
		r = iconv(cd, &ip, &n, &op, &ol);
		ew_put_utf8(out, tmp, (size_t)(op - tmp), 1);
		if (r != (size_t)-1 || (errno == E2BIG && op != tmp))
			continue;
		ew_put(out, ew_fffd, 3);
		ip++;
		n--;
	}
	op = tmp;
	ol = sizeof(tmp);
	iconv(cd, NULL, NULL, &op, &ol);
	ew_put_utf8(out, tmp, (size_t)(op - tmp), 1);
}

static void
ew_run_flush(struct ew_run *r, struct ew_out *out)
{
	const char	*s = r->bytes.b.p;
	size_t		 n = r->bytes.b.len, i;

	if (n == 0)
		return;
	switch (r->kind) {
	case EW_UTF8:
		ew_put_utf8(out, s, n, 1);
		break;
	case EW_ASCII:
		for (i = 0; i < n; i++) {
			if (s[i] & 0x80)
				ew_put(out, ew_fffd, 3);
			else
				ew_put_utf8(out, s + i, 1, 1);
		}
		break;
	case EW_ICONV:
		ew_iconv(r->cd, s, n, out);
		break;
	default:
		break;
	}
	r->bytes.b.len = 0;
}

/*
 * Add word `w' to the run, flushing the run first if it is in another
 * charset.  -1 when the word does not decode (unknown charset, bad
 * base64); it is then to be copied literally.
 */
static int
ew_run_add(struct ew_run *r, const struct ew_word *w, struct ew_out *out)
{
	size_t	 mark;

	if (r->kind == EW_NONE || strlen(r->cs) != w->cs_len ||
	    strncasecmp(r->cs, w->cs, w->cs_len) != 0)
		ew_run_flush(r, out);
	if (ew_run_lookup(r, w->cs, w->cs_len) == EW_UNKNOWN)
		return -1;
	mark = r->bytes.b.len;
	if (w->enc == 'q') {
		ew_decode_q(w->text, w->text_len, &r->bytes);
	} else if (ew_decode_b(w->text, w->text_len, &r->bytes) != 0) {
		r->bytes.b.len = mark;
		return -1;
	}
	return 0;
}

char *
msg_encword_decode(const char *value)
{
	struct ew_out	 out = { 0 };
	struct ew_run	 run = { .kind = EW_NONE };
	struct ew_word	 w;
	const char	*s = value, *held = NULL;
	size_t		 held_len = 0, n;

	while (*s != '\0') {
		if (ew_scan(s, &w) && ew_run_add(&run, &w, &out) == 0) {
			/* Whitespace after a word is dropped if another
			 * word follows it, so hold it until we know. */
			s += w.len;
			held_len = strspn(s, " \t\r\n");
			held = held_len > 0 ? s : NULL;
			s += held_len;
			continue;
		}
		ew_run_flush(&run, &out);
		if (held != NULL)
			ew_put(&out, held, held_len);
		held = NULL;
		/* Up to the next '=': that cannot cut a UTF-8 sequence. */
		n = 1 + strcspn(s + 1, "=");
		ew_put_utf8(&out, s, n, 0);
		s += n;
	}
	ew_run_flush(&run, &out);
	if (held != NULL)
		ew_put(&out, held, held_len);
	ew_run_close(&run);
	buf_free(&run.bytes.b);
	if (run.bytes.oom)
		out.oom = 1;
	return ew_finish(&out);
}

/* Printable ASCII (and HTAB) goes out as it is. */
static int
ew_is_plain(const char *s)
{
	for (; *s != '\0'; s++)
		if ((*s < ' ' || *s > '~') && *s != '\t')
			return 0;
	return 1;
}

/* Bytes allowed as themselves in Q in any header context (RFC 2047
 * section 5, rule 3); a space is written "_". */
static int
ew_q_safe(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '!' || c == '*' || c == '+' ||
	    c == '-' || c == '/' || c == ' ';
}

static size_t
ew_q_cost(const char *s, size_t n)
{
	size_t	 i, cost = 0;

	for (i = 0; i < n; i++)
		cost += ew_q_safe((unsigned char)s[i]) ? 1 : 3;
	return cost;
}

static void
ew_encode_q(const char *s, size_t n, struct ew_out *out)
{
	static const char	 hex[] = "0123456789ABCDEF";
	unsigned char		 c;
	size_t			 i;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == ' ') {
			ew_putc(out, '_');
		} else if (ew_q_safe(c)) {
			ew_putc(out, (char)c);
		} else {
			ew_putc(out, '=');
			ew_putc(out, hex[c >> 4]);
			ew_putc(out, hex[c & 15]);
		}
	}
}

static void
ew_encode_b(const char *s, size_t n, struct ew_out *out)
{
	const unsigned char	*u = (const unsigned char *)s;
	unsigned long		 v;
	size_t			 i;

	for (i = 0; i + 2 < n; i += 3) {
		v = (unsigned long)u[i] << 16 | u[i + 1] << 8 | u[i + 2];
		ew_putc(out, ew_b64[v >> 18 & 63]);
		ew_putc(out, ew_b64[v >> 12 & 63]);
		ew_putc(out, ew_b64[v >> 6 & 63]);
		ew_putc(out, ew_b64[v & 63]);
	}
	if (i < n) {
		v = (unsigned long)u[i] << 16;
		if (i + 1 < n)
			v |= (unsigned long)u[i + 1] << 8;
		ew_putc(out, ew_b64[v >> 18 & 63]);
		ew_putc(out, ew_b64[v >> 12 & 63]);
		ew_putc(out, i + 1 < n ? ew_b64[v >> 6 & 63] : '=');
		ew_putc(out, '=');
	}
}

static size_t
ew_b_cost(size_t n)
{
	return (n + 2) / 3 * 4;
}

/* Octets of the next word's text from s (n left), which fit in a word of
 * at most `room' octets; at least one character, never half of one. */
static size_t
ew_chunk(const char *s, size_t n, int b, size_t room)
{
	size_t	 i = 0, k, qlen = 0, cost;

	while (i < n) {
		k = utf8_len((const unsigned char *)s + i, n - i);
		if (k == 0)
			k = 1;	/* cannot happen on cleaned text */
		if (b)
			cost = EW_OVERHEAD + ew_b_cost(i + k);
		else
			cost = EW_OVERHEAD + qlen + ew_q_cost(s + i, k);
		if (cost > room && i > 0)
			break;
		qlen = cost - EW_OVERHEAD;
		i += k;
	}
	return i;
}

static void
ew_encode_words(const char *s, size_t n, size_t used, const char *eol,
    struct ew_out *out)
{
	size_t	 room, i = 0, k;
	int	 b;

	b = ew_b_cost(n) < ew_q_cost(s, n);
	room = used < EW_LINE_MAX ? EW_LINE_MAX - used : 0;
	if (room > EW_WORD_MAX)
		room = EW_WORD_MAX;
	while (i < n) {
		if (i > 0) {
			if (eol != NULL)
				ew_put(out, eol, strlen(eol));
			ew_putc(out, ' ');
		}
		k = ew_chunk(s + i, n - i, b, room);
		ew_put(out, b ? "=?utf-8?b?" : "=?utf-8?q?", 10);
		if (b)
			ew_encode_b(s + i, k, out);
		else
			ew_encode_q(s + i, k, out);
		ew_put(out, "?=", 2);
		i += k;
		/* Later lines start with one space. */
		room = EW_WORD_MAX;
	}
}

char *
msg_encword_encode(const char *utf8, size_t used, const char *eol)
{
	if (ew_is_plain(utf8))
		return strdup(utf8);
	return msg_encword_encode_all(utf8, used, eol);
}

char *
msg_encword_encode_all(const char *utf8, size_t used, const char *eol)
{
	struct ew_out	 clean = { 0 }, out = { 0 };

	ew_put_utf8(&clean, utf8, strlen(utf8), 0);
	if (clean.oom) {
		buf_free(&clean.b);
		return NULL;
	}
	ew_encode_words(clean.b.p, clean.b.len, used, eol, &out);
	buf_free(&clean.b);
	return ew_finish(&out);
}
