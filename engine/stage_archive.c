/*
 * stage_archive: keep each accepted post in the list's archive.
 */
#include "db.h"
#include "stage.h"

int
stage_archive(struct stage_ctx *ctx)
{
	struct db_params p;
	char		 id[24];

	db_params_init(&p);
	db_param_int(&p, id, ctx->post_id);
	if (stage_write(ctx, "INSERT INTO quire.archive (list_id, post_id)"
	    " SELECT list_id, id FROM quire.post WHERE id = $1"
	    " ON CONFLICT (post_id) DO NOTHING", &p) == -1)
		return -1;
	return stage_finish(ctx);
}
