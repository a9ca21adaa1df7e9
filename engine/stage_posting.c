/*
 * stage_posting: who may post.  For now the chain is short: emergency
 * moderation, the list's size limit, then the sender's own moderation
 * action or the list's default for members or nonmembers.
 *
 * XXX The rest of Mailman's posting chain (approved, administrivia,
 * implicit destination, max recipients, header matches, bans, DMARC)
 * belongs to the rule-chain work; its seam is posting_decide().  XXX No
 * notice goes out for a hold (admin_immed_notify, respond_to_post_requests)
 * until Quire writes notices of its own.
 */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "post.h"
#include "stage.h"

/* The action for this post and, unless it is accept, the reason. */
static const char *
posting_decide(const struct post *p, const struct list_conf *l,
    char *reason, size_t len)
{
	const char	*action;

	if (p->raw_len == 0) {
		snprintf(reason, len, "the message is empty");
		return "hold";
	}
	if (l->emergency) {
		snprintf(reason, len, "emergency moderation is on");
		return "hold";
	}
	if (l->max_message_size > 0 &&
	    p->raw_len > (size_t)l->max_message_size * 1024) {
		snprintf(reason, len, "message size %zu KB is over the "
		    "list's max_message_size of %d KB",
		    (p->raw_len + 1023) / 1024, l->max_message_size);
		return "hold";
	}
	if (p->sender == NULL) {
		snprintf(reason, len, "the message names no sender");
		return "hold";
	}
	action = *p->sender_action ? p->sender_action : p->sender_is_member ?
	    l->default_member_action : l->default_nonmember_action;
	if (strcmp(action, "defer") == 0)
		action = p->sender_is_member ? "accept" : "hold";
	snprintf(reason, len, "%s by %s %s", strcmp(action, "accept") == 0 ?
	    "accepted" : "moderated", p->sender_is_member ? "member" :
	    "nonmember",
	    p->sender);
	/* XXX reject needs the bounce notice to the sender, which comes
	 * with the notices work; until then a rejected post is held, so
	 * nothing is lost. */
	if (strcmp(action, "reject") == 0)
		return "hold";
	return action;
}

static int
posting_accept(struct stage_ctx *ctx, int list_id)
{
	struct db_params p;
	char		 lid[24], pid[24];

	db_params_init(&p);
	db_param_int(&p, pid, ctx->post_id);
	db_param_int(&p, lid, list_id);
	if (stage_write(ctx,
	    "WITH n AS (UPDATE quire.list SET post_id = post_id + 1,"
	    "   last_post_at = now() WHERE id = $2 RETURNING post_id - 1 AS n)"
	    " UPDATE quire.post SET post_number = n.n FROM n WHERE id = $1",
	    &p) == -1)
		return -1;
	return stage_advance(ctx, "decorate");
}

int
stage_posting(struct stage_ctx *ctx)
{
	struct post	*p = ctx->post;
	const char	*action;
	char		 reason[512];

	/* Mail to -owner skips the posting rules, as in Mailman. */
	if (strcmp(p->subaddress, "owner") == 0)
		return stage_advance(ctx, "decorate");
	action = posting_decide(p, ctx->list, reason, sizeof(reason));
	if (strcmp(action, "accept") == 0)
		return posting_accept(ctx, p->list_id);
	if (strcmp(action, "discard") == 0)
		return stage_settle(ctx, "discarded", reason);
	return stage_settle(ctx, "held", reason);
}
