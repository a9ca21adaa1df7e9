/*
 * stage: the table of stages and the moves every stage makes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "stage.h"

const struct stage_def stage_defs[STAGE_COUNT] = {
	[STAGE_IN] =		{ "in", "quire_in", stage_in },
	[STAGE_POSTING] =	{ "posting", "quire_posting", stage_posting },
	[STAGE_DECORATE] =	{ "decorate", "quire_decorate",
				  stage_decorate },
	[STAGE_ARCHIVE] =	{ "archive", "quire_archive", stage_archive },
};

int
stage_lookup(const char *name)
{
	for (int i = 0; i < STAGE_COUNT; i++)
		if (strcmp(stage_defs[i].name, name) == 0)
			return i;
	return -1;
}

int
stage_errorf(struct stage_ctx *ctx, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(ctx->error, sizeof(ctx->error), fmt, ap);
	va_end(ap);
	return -1;
}

int
stage_db_error(struct stage_ctx *ctx, const char *what)
{
	return stage_errorf(ctx, "%s: %s", what, db_error(ctx->db));
}

int
stage_advance(struct stage_ctx *ctx, const char *next)
{
	ctx->next = next;
	return 0;
}

void
stage_event(struct stage_ctx *ctx, const char *event, const char *fmt, ...)
{
	va_list	 ap;

	ctx->event = event;
	va_start(ap, fmt);
	vsnprintf(ctx->event_fields, sizeof(ctx->event_fields), fmt, ap);
	va_end(ap);
}

int
stage_finish(struct stage_ctx *ctx)
{
	ctx->next = NULL;
	return 0;
}

int
stage_write(struct stage_ctx *ctx, const char *sql,
    const struct db_params *p)
{
	if (db_batch_add(ctx->writes, sql, p) == -1)
		return stage_errorf(ctx, "out of memory");
	return 0;
}

int
stage_settle(struct stage_ctx *ctx, const char *status, const char *reason)
{
	struct db_params p;
	char		 id[24];

	db_params_init(&p);
	db_param_int(&p, id, ctx->post_id);
	db_param_text(&p, status);
	db_param_text(&p, reason);
	if (stage_write(ctx, "UPDATE quire.post SET status = $2, reason = $3"
	    " WHERE id = $1", &p) == -1)
		return -1;
	stage_event(ctx, strcmp(status, "held") == 0 ? "post_held" :
	    "post_discarded", "post=%lld reason=%s", ctx->post_id,
	    log_q(reason));
	return stage_finish(ctx);
}
