/*
 * stage_decorate: write the header block the list sends, then release
 * the post to its recipients: one delivery row each, made by one
 * INSERT ... SELECT from the member tables in this same transaction, and
 * an archive row when the list keeps an archive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "db.h"
#include "decorate.h"
#include "log.h"
#include "msg_header.h"
#include "post.h"
#include "stage.h"

/* Regular members with delivery on; a poster who does not want their own
 * posts back is left out. */
static const char fanout_members_sql[] =
    "INSERT INTO quire.delivery (post_id, email, domain, verp)"
    " SELECT $1, a.email, split_part(a.email, '@', 2), $3"
    "   FROM quire.member m JOIN quire.address a ON a.id = m.address_id"
    "  WHERE m.list_id = $2 AND m.role = 'member'"
    "    AND m.delivery_status = 'enabled' AND m.delivery_mode = 'regular'"
    "    AND NOT (a.email = $4 AND NOT m.receive_own_postings)"
    " ON CONFLICT (post_id, email) DO NOTHING";

/* Mail to -owner goes to owners and moderators, always VERPed so that a
 * bounce names the address. */
static const char fanout_owners_sql[] =
    "INSERT INTO quire.delivery (post_id, email, domain, verp)"
    " SELECT DISTINCT $1::bigint, a.email, split_part(a.email, '@', 2),"
    "   $3::boolean"
    "   FROM quire.member m JOIN quire.address a ON a.id = m.address_id"
    "  WHERE m.list_id = $2 AND m.role IN ('owner', 'moderator')"
    "    AND m.delivery_status = 'enabled' AND $4::text IS NOT NULL"
    " ON CONFLICT (post_id, email) DO NOTHING";

static int
decorate_verp(const struct list_conf *l, int post_number, int owner)
{
	if (owner)
		return 1;
	if (strcmp(l->personalize, "none") != 0)
		return 1;
	if (l->verp_delivery_interval == 0)
		return 0;
	return post_number % l->verp_delivery_interval == 0;
}

/* Queue a copy for each recipient; the number queued, or -1. */
static long
decorate_fanout(struct stage_ctx *ctx, const struct post *p,
    const struct list_conf *l, int owner)
{
	struct db_params prm;
	struct db_res	*r;
	char		 pid[24], lid[24];
	long		 n;

	db_params_init(&prm);
	db_param_int(&prm, pid, ctx->post_id);
	db_param_int(&prm, lid, l->id);
	db_param_text(&prm, decorate_verp(l, p->post_number, owner) ?
	    "true" : "false");
	db_param_text(&prm, p->sender ? p->sender : "");
	r = db_exec(ctx->db, owner ? fanout_owners_sql : fanout_members_sql,
	    &prm, DB_TEXT);
	if (r == NULL)
		return stage_db_error(ctx, "fan out");
	n = atol(db_res_cmd_tuples(r));
	stage_event(ctx, "post_released", "post=%lld list=%s recipients=%ld",
	    ctx->post_id, l->fqdn, n);
	db_res_free(r);
	return n;
}

static int
decorate_store(struct stage_ctx *ctx, const struct buf *headers,
    size_t body_offset)
{
	struct db_params p;
	char		 pid[24], off[24];

	db_params_init(&p);
	db_param_int(&p, pid, ctx->post_id);
	db_param_bytes(&p, headers->p, headers->len);
	db_param_int(&p, off, (long long)body_offset);
	return stage_write(ctx, "UPDATE quire.post SET headers = $2,"
	    " body_offset = $3, status = 'accepted' WHERE id = $1", &p);
}

static int
decorate_to_archive(struct stage_ctx *ctx, const struct post *p,
    const struct list_conf *l)
{
	struct db_params prm;
	char		 pid[24];

	if (strcmp(l->archive_policy, "never") == 0 ||
	    decorate_no_archive(p->raw, p->raw_len))
		return 0;
	db_params_init(&prm);
	db_param_int(&prm, pid, ctx->post_id);
	return stage_write(ctx, "INSERT INTO quire.queue (post_id, stage)"
	    " VALUES ($1, 'archive')", &prm);
}

static void
decorate_list_from_conf(const struct list_conf *l, struct decorate_list *d)
{
	d->name = l->name;
	d->host = l->host;
	d->description = l->description;
	d->subject_prefix = l->subject_prefix;
	d->archive_url = l->archive_url;
	d->reply_goes_to_list = l->reply_goes_to_list;
	d->reply_to_address = l->reply_to_address;
	d->first_strip_reply_to = l->first_strip_reply_to;
	d->include_rfc2369_headers = l->include_rfc2369_headers;
	d->allow_list_posts = l->allow_list_posts;
	d->archived = strcmp(l->archive_policy, "never") != 0;
}

/* Owner mail keeps its header block as it came. */
static int
decorate_owner_headers(const struct post *p, struct buf *out,
    size_t *body_offset)
{
	struct msg_headers	 h;
	int			 rc;

	if (msg_headers_parse(p->raw, p->raw_len, &h) == -1)
		return -1;
	*body_offset = h.body_offset;
	rc = buf_add(out, p->raw, h.body_offset);
	/* A message that is all header gets the blank line it lacked. */
	if (rc == 0 && h.body_offset == h.header_len) {
		if (out->len > 0 && out->p[out->len - 1] != '\n')
			rc = buf_adds(out, h.crlf ? "\r\n" : "\n");
		if (rc == 0)
			rc = buf_adds(out, h.crlf ? "\r\n" : "\n");
	}
	msg_headers_free(&h);
	return rc;
}

static int
decorate_run(struct stage_ctx *ctx, const struct post *p,
    const struct list_conf *l)
{
	struct decorate_list d;
	struct buf	 headers = { 0 };
	size_t		 body_offset;
	char		 seed[256];
	int		 owner = strcmp(p->subaddress, "owner") == 0;
	int		 rc;
	long		 fanned = 0;

	decorate_list_from_conf(l, &d);
	snprintf(seed, sizeof(seed), "quire.%lld.%lld@%s", ctx->post_id,
	    (long long)time(NULL), l->host);
	rc = owner ? decorate_owner_headers(p, &headers, &body_offset) :
	    decorate_headers(&d, p->raw, p->raw_len, p->post_number, seed,
	    &headers, &body_offset);
	if (rc == -1) {
		buf_free(&headers);
		return stage_errorf(ctx, "out of memory decorating");
	}
	rc = decorate_store(ctx, &headers, body_offset);
	buf_free(&headers);
	if (rc == 0 && (fanned = decorate_fanout(ctx, p, l, owner)) == -1)
		rc = -1;
	/* Mail for the owners that no one would get waits where an
	 * admin sees it, to be approved once the list has an owner. */
	if (rc == 0 && owner && fanned == 0)
		return stage_settle(ctx, "held", "no owner or moderator of "
		    "the list gets mail");
	if (rc == 0 && !owner)
		rc = decorate_to_archive(ctx, p, l);
	if (rc == 0)
		rc = stage_finish(ctx);
	return rc;
}

int
stage_decorate(struct stage_ctx *ctx)
{
	if (post_raw(ctx->db, ctx->post) == -1)
		return stage_db_error(ctx, "load message");
	return decorate_run(ctx, ctx->post, ctx->list);
}
