/*
 * libFuzzer target for msg_header, msg_encword and msg_subject.
 *
 * The input is parsed as a message; every field value, and the input
 * itself as one value, goes through the decoder, both encoders and the
 * subject prefixer.  Besides crashes and sanitizer reports it aborts when
 * a property fails: fields tile the header block, unfolded values hold no
 * CR or LF, decoding yields UTF-8, encoded text decodes back to itself
 * within the line limits, and a prefixed subject decodes to the prefix
 * plus the stripped subject and cannot start a new header line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg_encword.h"
#include "msg_header.h"
#include "msg_subject.h"

#define CHECK(x)	do { if (!(x)) { fprintf(stderr, \
	"fuzz_header: check failed: %s (line %d)\n", #x, __LINE__); \
	abort(); } } while (0)

#define PREFIX		"[Bench] "

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* 1 if s is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
static int
fz_utf8_ok(const unsigned char *s)
{
	unsigned int	 cp;
	size_t		 n, i;

	while (*s != '\0') {
		if (*s < 0x80) {
			s++;
			continue;
		}
		if (*s >= 0xc2 && *s <= 0xdf)
			n = 2, cp = *s & 0x1f;
		else if (*s >= 0xe0 && *s <= 0xef)
			n = 3, cp = *s & 0x0f;
		else if (*s >= 0xf0 && *s <= 0xf4)
			n = 4, cp = *s & 0x07;
		else
			return 0;
		for (i = 1; i < n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		s += n;
	}
	return 1;
}

/* Every LF is the end of a CRLF that a WSP follows, and every CR starts
 * one: the value cannot end its field early. */
static void
fz_check_folding(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\r') {
			CHECK(s[1] == '\n' && (s[2] == ' ' || s[2] == '\t'));
		} else if (*s == '\n') {
			CHECK(s[-1] == '\r');
		}
	}
}

/* Lines of an encoded value within 78 columns and words within 75. */
static void
fz_check_lines(const char *s, size_t used)
{
	size_t	 col = used, word = 0;

	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n') {
			col = word = 0;
			continue;
		}
		col++;
		word = *s == ' ' ? 0 : word + 1;
		CHECK(col <= 78);
		CHECK(word <= 75);
	}
}

/* Decoded text of a value written with "\r\n" folds. */
static char *
fz_read_back(const char *s)
{
	char	*u = strdup(s), *p, *q, *d;

	if (u == NULL)
		return NULL;
	for (p = q = u; *p != '\0'; p++)
		if (*p != '\r' && *p != '\n')
			*q++ = *p;
	*q = '\0';
	d = msg_encword_decode(u);
	free(u);
	return d;
}

static void
fz_round_trip(const char *d, char *(*enc)(const char *, size_t,
    const char *), size_t used)
{
	char	*e, *back;

	if ((e = enc(d, used, "\r\n")) == NULL)
		return;
	fz_check_folding(e);
	if (strcmp(e, d) != 0 && used <= 54)
		fz_check_lines(e, used);
	if ((back = fz_read_back(e)) != NULL)
		CHECK(strcmp(back, d) == 0);
	free(back);
	free(e);
}

static void
fz_subject(const char *v, const char *prefix, long number,
    const char *expanded)
{
	char	*s, *st = NULL, *back, *want;
	size_t	 n;

	if ((s = msg_subject_prefix(v, prefix, number, "\r\n", &st)) == NULL)
		return;
	fz_check_folding(s);
	CHECK(st != NULL && fz_utf8_ok((const unsigned char *)st));
	/* Raw CR or LF in the input goes out encoded, and reads back as a
	 * space, so the comparison only holds without them. */
	if (strpbrk(st, "\r\n") == NULL &&
	    (back = fz_read_back(s)) != NULL) {
		n = strlen(expanded) + strlen(st) + 1;
		if ((want = malloc(n)) != NULL) {
			snprintf(want, n, "%s%s", expanded, st);
			CHECK(strcmp(back, want) == 0);
			free(want);
		}
		free(back);
	}
	free(st);
	free(s);
}

static void
fz_value(const char *v)
{
	char	*d;

	if ((d = msg_encword_decode(v)) == NULL)
		return;
	CHECK(fz_utf8_ok((const unsigned char *)d));
	if (strpbrk(d, "\r\n") == NULL) {
		if (strstr(d, "=?") == NULL)
			fz_round_trip(d, msg_encword_encode, 9);
		fz_round_trip(d, msg_encword_encode_all, 0);
		fz_round_trip(d, msg_encword_encode_all, 40);
		fz_round_trip(d, msg_encword_encode_all, 77);
	}
	free(d);
	fz_subject(v, PREFIX, 7, PREFIX);
	fz_subject(v, "[L %03d] ", 7, "[L 007] ");
}

static void
fz_headers(const char *buf, size_t size)
{
	struct msg_headers	 h;
	size_t			 i, total = 0;
	char			*v;

	if (msg_headers_parse(buf, size, &h) != 0)
		return;
	CHECK(h.header_len <= h.body_offset && h.body_offset <= size);
	CHECK(h.longest_line <= h.header_len);
	for (i = 0; i < h.nfields; i++) {
		const struct msg_field *f = &h.fields[i];

		CHECK(f->raw == buf + total);
		CHECK(f->raw_len > 0);
		total += f->raw_len;
		CHECK(f->value >= f->raw &&
		    f->value + f->value_len <= f->raw + f->raw_len);
		CHECK(f->name == f->raw && f->name + f->name_len <= f->value);
		CHECK(memchr(f->name, ':', f->name_len) == NULL);
		if ((v = msg_field_unfold(f)) == NULL)
			continue;
		CHECK(strpbrk(v, "\r\n") == NULL);
		CHECK(strlen(v) <= f->value_len);
		if (i < 8)
			fz_value(v);
		free(v);
	}
	CHECK(total == h.header_len);
	if ((v = msg_headers_get(&h, "Subject")) != NULL) {
		CHECK(msg_headers_find(&h, "subject", 0) >= 0);
		fz_value(v);
		free(v);
	}
	msg_headers_free(&h);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s;

	fz_headers((const char *)data, size);
	/* The whole input as one value, up to its first NUL. */
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	fz_value(s);
	free(s);
	return 0;
}
