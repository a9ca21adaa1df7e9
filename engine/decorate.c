/*
 * decorate: RFC 2369 and RFC 2919 headers, Precedence, X-BeenThere, the
 * subject prefix, Reply-To munging, and the approval and receipt fields
 * Mailman's cleanse handler removes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "decorate.h"
#include "msg_addr.h"
#include "msg_encword.h"
#include "msg_header.h"
#include "msg_subject.h"

/* Replaced by the list's own, or removed as Mailman's cleanse does. */
static const char *const decorate_drop[] = {
	"List-Id", "List-Help", "List-Owner", "List-Unsubscribe",
	"List-Subscribe", "List-Post", "List-Archive", "Archived-At",
	"Approved", "Approve", "X-Approved", "X-Approve", "Urgent",
	"Return-Receipt-To", "Disposition-Notification-To",
	"X-Confirm-Reading-To", "X-PMRQC", NULL
};

static int
field_is(const struct msg_field *f, const char *name)
{
	return f->name_len == strlen(name) &&
	    strncasecmp(f->name, name, f->name_len) == 0;
}

static int
field_dropped(const struct msg_field *f, int munge_reply_to)
{
	for (size_t i = 0; decorate_drop[i] != NULL; i++)
		if (field_is(f, decorate_drop[i]))
			return 1;
	return munge_reply_to && field_is(f, "Reply-To");
}

/* A display name goes out as a quoted string when it holds specials, or
 * as encoded words when it is not ASCII. */
static int
add_phrase(struct buf *out, const char *text)
{
	char	*enc;
	int	 rc, special = 0;

	for (const char *c = text; *c; c++) {
		if ((unsigned char)*c >= 0x80) {
			if ((enc = msg_encword_encode(text, 9, NULL)) == NULL)
				return -1;
			rc = buf_adds(out, enc);
			free(enc);
			return rc;
		}
		if (strchr("()<>[]:;@\\,.\"", *c) != NULL)
			special = 1;
	}
	if (!special)
		return buf_adds(out, text);
	if (buf_adds(out, "\"") == -1)
		return -1;
	for (const char *c = text; *c; c++) {
		if ((*c == '"' || *c == '\\') && buf_adds(out, "\\") == -1)
			return -1;
		if (buf_add(out, c, 1) == -1)
			return -1;
	}
	return buf_adds(out, "\"");
}

int
decorate_list_id(const struct decorate_list *l, struct buf *out)
{
	if (l->description[0] != '\0' &&
	    (add_phrase(out, l->description) == -1 || buf_adds(out, " ")))
		return -1;
	return buf_addf(out, "<%s.%s>", l->name, l->host);
}

static int
add_field(struct buf *out, const char *name, const char *value,
    const char *eol)
{
	return buf_addf(out, "%s: %s%s", name, value, eol);
}

static int
add_list_fields(struct buf *out, const struct decorate_list *l,
    const char *eol)
{
	struct buf	 v = { 0 };
	int		 rc = 0;

	if (*l->archive_url != '\0' && l->archived)
		rc |= buf_addf(out, "List-Archive: <%s>%s", l->archive_url,
		    eol);
	rc |= buf_addf(out, "List-Help: <mailto:%s-request@%s?subject=help>%s",
	    l->name, l->host, eol);
	rc |= decorate_list_id(l, &v);
	if (rc == 0)
		rc |= add_field(out, "List-Id", v.p, eol);
	buf_free(&v);
	rc |= buf_addf(out, "List-Owner: <mailto:%s-owner@%s>%s", l->name,
	    l->host, eol);
	if (l->allow_list_posts)
		rc |= buf_addf(out, "List-Post: <mailto:%s@%s>%s", l->name,
		    l->host, eol);
	else
		rc |= add_field(out, "List-Post", "NO", eol);
	rc |= buf_addf(out, "List-Subscribe: <mailto:%s-join@%s>%s", l->name,
	    l->host, eol);
	rc |= buf_addf(out, "List-Unsubscribe: <mailto:%s-leave@%s>%s",
	    l->name, l->host, eol);
	return rc ? -1 : 0;
}

/* Reply-To as Mailman's cook-headers builds it: the explicit address,
 * then the original Reply-To addresses (unless stripped first), then the
 * list; without duplicates (whole addresses, case-insensitive).  At most
 * REPLY_TO_MAX addresses are kept, which bounds the work a hostile
 * Reply-To can cause.  NULL means leave Reply-To alone. */
#define REPLY_TO_MAX	64

struct reply_to {
	const char	*addr[REPLY_TO_MAX];
	size_t		 n;
};

static void
reply_to_add(struct reply_to *r, const char *addr)
{
	if (addr == NULL || *addr == '\0' || r->n == REPLY_TO_MAX)
		return;
	for (size_t i = 0; i < r->n; i++)
		if (strcasecmp(r->addr[i], addr) == 0)
			return;
	r->addr[r->n++] = addr;
}

/* "a, b, c" folded before a line would pass 78 columns. */
static char *
reply_to_join(const struct reply_to *r, const char *display, const char *eol)
{
	struct buf	 v = { 0 };
	size_t		 col = strlen("Reply-To: ");

	for (size_t i = 0; i < r->n; i++) {
		size_t len = strlen(r->addr[i]) + 2;

		if (i > 0 && buf_adds(&v, ",") == -1)
			break;
		if (i > 0 && col + len > 78) {
			buf_addf(&v, "%s ", eol);
			col = 1;
		} else if (i > 0) {
			buf_adds(&v, " ");
			col++;
		}
		if (display != NULL && i == r->n - 1) {
			add_phrase(&v, display);
			buf_addf(&v, " <%s>", r->addr[i]);
		} else
			buf_adds(&v, r->addr[i]);
		col += len;
	}
	return v.p;
}

static char *
reply_to_value(const struct decorate_list *l, const struct msg_headers *h,
    const char *eol)
{
	struct msg_addr_list	 orig = { 0 };
	struct reply_to		 r = { .n = 0 };
	char			 posting[512];
	char			*old, *out;
	int			 explicit, to_list;

	explicit = strcmp(l->reply_goes_to_list, "explicit_header") == 0 ||
	    strcmp(l->reply_goes_to_list, "explicit_header_only") == 0;
	to_list = strcmp(l->reply_goes_to_list, "point_to_list") == 0;
	if (!explicit && !to_list)
		return NULL;
	snprintf(posting, sizeof(posting), "%s@%s", l->name, l->host);
	if (explicit)
		reply_to_add(&r, l->reply_to_address);
	if (!l->first_strip_reply_to &&
	    (old = msg_headers_get(h, "Reply-To")) != NULL) {
		msg_addr_parse_list(old, &orig);
		free(old);
		/* Room stays for the list's own address. */
		for (size_t i = 0; i < orig.n && r.n < REPLY_TO_MAX - 1; i++)
			reply_to_add(&r, orig.v[i].addr);
	}
	if (to_list) {
		size_t before = r.n;

		reply_to_add(&r, posting);
		/* The list last, named by its description, as Mailman does;
		 * unless it was there already. */
		out = reply_to_join(&r, r.n > before && *l->description ?
		    l->description : NULL, eol);
	} else
		out = reply_to_join(&r, NULL, eol);
	msg_addr_list_free(&orig);
	return out;
}

static int
add_subject(struct buf *out, const struct decorate_list *l,
    const struct msg_headers *h, long post_number, const char *eol)
{
	char	*old = msg_headers_get(h, "Subject");
	char	*subj;
	int	 rc;

	subj = msg_subject_prefix(old, l->subject_prefix, post_number, eol,
	    NULL);
	free(old);
	if (subj == NULL)
		return -1;
	rc = add_field(out, "Subject", subj, eol);
	free(subj);
	return rc;
}

static int
copy_fields(struct buf *out, const struct decorate_list *l,
    const struct msg_headers *h, long post_number, const char *eol,
    int munge_reply_to)
{
	int	 subject_done = 0, rc = 0;
	int	 prefixing = *l->subject_prefix != '\0';

	for (size_t i = 0; i < h->nfields && rc == 0; i++) {
		const struct msg_field *f = &h->fields[i];

		if (field_dropped(f, munge_reply_to))
			continue;
		if (prefixing && !subject_done && field_is(f, "Subject")) {
			rc = add_subject(out, l, h, post_number, eol);
			subject_done = 1;
			continue;
		}
		rc = buf_add(out, f->raw, f->raw_len);
		/* A last field with no line end: give it one. */
		if (rc == 0 && (f->raw_len == 0 ||
		    f->raw[f->raw_len - 1] != '\n'))
			rc = buf_adds(out, eol);
	}
	if (rc == 0 && prefixing && !subject_done)
		rc = add_subject(out, l, h, post_number, eol);
	return rc;
}

int
decorate_headers(const struct decorate_list *l, const char *raw, size_t len,
    long post_number, const char *message_id_seed, struct buf *out,
    size_t *body_offset)
{
	struct msg_headers	 h;
	const char		*eol;
	char			*reply_to;
	int			 rc;

	if (msg_headers_parse(raw, len, &h) == -1)
		return -1;
	eol = h.crlf ? "\r\n" : "\n";
	reply_to = reply_to_value(l, &h, eol);
	rc = copy_fields(out, l, &h, post_number, eol, reply_to != NULL);
	if (rc == 0 && reply_to != NULL)
		rc = add_field(out, "Reply-To", reply_to, eol);
	if (rc == 0 && msg_headers_find(&h, "Message-ID", 0) < 0)
		rc = buf_addf(out, "Message-ID: <%s>%s", message_id_seed, eol);
	if (rc == 0)
		rc = buf_addf(out, "X-BeenThere: %s@%s%s", l->name, l->host,
		    eol);
	if (rc == 0 && msg_headers_find(&h, "Precedence", 0) < 0)
		rc = add_field(out, "Precedence", "list", eol);
	if (rc == 0 && l->include_rfc2369_headers)
		rc = add_list_fields(out, l, eol);
	if (rc == 0)
		rc = buf_adds(out, eol);
	*body_offset = h.body_offset;
	free(reply_to);
	msg_headers_free(&h);
	return rc;
}

int
decorate_no_archive(const char *raw, size_t len)
{
	struct msg_headers	 h;
	char			*v;
	int			 no;

	if (msg_headers_parse(raw, len, &h) == -1)
		return 0;
	no = msg_headers_find(&h, "X-No-Archive", 0) >= 0;
	if (!no && (v = msg_headers_get(&h, "X-Archive")) != NULL) {
		no = strncasecmp(v, "no", 2) == 0;
		free(v);
	}
	msg_headers_free(&h);
	return no;
}
