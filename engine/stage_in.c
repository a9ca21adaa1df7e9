/*
 * stage_in: the incoming stage.  Parses the stored message once, keeps
 * what later stages and admins look at (sender, subject, Message-ID),
 * and stops loops before anything else sees the post.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "db.h"
#include "log.h"
#include "msg_addr.h"
#include "msg_encword.h"
#include "msg_header.h"
#include "post.h"
#include "stage.h"

struct in_facts {
	char	*sender;
	char	*subject;
	char	*message_id;
	int	 loop;
};

/* The sender as Mailman picks it: From, then the envelope sender. */
static char *
in_sender(const struct msg_headers *h, const char *envelope_from)
{
	char	*from = msg_headers_get(h, "From");
	char	*addr = NULL;

	if (from != NULL) {
		addr = msg_addr_first(from);
		free(from);
	}
	if (addr == NULL && envelope_from != NULL && *envelope_from != '\0')
		addr = msg_addr_normalize(envelope_from);
	if (addr != NULL)
		text_clean(addr);
	return addr;
}

/* Our own X-BeenThere on an incoming post means it came round again. */
static int
in_is_loop(const struct msg_headers *h, const char *posting)
{
	long	 i = -1;
	char	*v;
	int	 loop = 0;

	while (!loop && (i = msg_headers_find(h, "X-BeenThere", i + 1)) >= 0) {
		char	*addr;

		if ((v = msg_field_unfold(&h->fields[i])) == NULL)
			continue;
		/* The whole value names the list, not a part of it: a list
		 * "olddev" must not look like "dev". */
		addr = msg_addr_first(v);
		loop = addr != NULL && strcasecmp(addr, posting) == 0;
		free(addr);
		free(v);
	}
	return loop;
}

static int
in_parse(const struct post *p, const char *posting, struct in_facts *f)
{
	struct msg_headers	 h;
	char			*raw_subject;

	memset(f, 0, sizeof(*f));
	if (msg_headers_parse(p->raw, p->raw_len, &h) == -1)
		return -1;
	f->sender = in_sender(&h, p->envelope_from);
	if ((raw_subject = msg_headers_get(&h, "Subject")) != NULL) {
		f->subject = msg_encword_decode(raw_subject);
		free(raw_subject);
		if (f->subject != NULL)
			text_clean(f->subject);
	}
	if ((f->message_id = msg_headers_get(&h, "Message-ID")) != NULL)
		text_clean(f->message_id);
	f->loop = in_is_loop(&h, posting);
	msg_headers_free(&h);
	return 0;
}

static void
in_facts_free(struct in_facts *f)
{
	free(f->sender);
	free(f->subject);
	free(f->message_id);
}

static int
in_store(struct stage_ctx *ctx, const struct in_facts *f)
{
	struct db_params p;
	char		 id[24];

	db_params_init(&p);
	db_param_int(&p, id, ctx->post_id);
	db_param_text(&p, f->sender);
	db_param_text(&p, f->subject);
	db_param_text(&p, f->message_id);
	return stage_write(ctx, "UPDATE quire.post SET sender = $2,"
	    " subject = $3, message_id_header = $4 WHERE id = $1", &p);
}

int
stage_in(struct stage_ctx *ctx)
{
	struct in_facts	 f;
	int		 rc;

	if (post_raw(ctx->db, ctx->post) == -1)
		return stage_db_error(ctx, "load message");
	if (in_parse(ctx->post, ctx->list->fqdn, &f) == -1)
		return stage_errorf(ctx, "out of memory parsing the message");
	rc = in_store(ctx, &f);
	if (rc == 0 && f.loop)
		rc = stage_settle(ctx, "held",
		    "loop: the post already carries this list's X-BeenThere");
	else if (rc == 0)
		rc = stage_advance(ctx, "posting");
	in_facts_free(&f);
	return rc;
}
