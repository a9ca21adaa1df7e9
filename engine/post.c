/*
 * post: a post and its list's settings, from the claim's result.
 */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "post.h"

static const char *
res_text(const struct db_res *r, int row, int col)
{
	return db_res_isnull(r, row, col) ? NULL : db_res_value(r, row, col);
}

void
post_from_res(const struct db_res *r, int row, int col, struct post *p)
{
	memset(p, 0, sizeof(*p));
	p->id = db_res_int(r, row, col);
	p->list_id = (int)db_res_int(r, row, col + 1);
	snprintf(p->subaddress, sizeof(p->subaddress), "%s",
	    db_res_value(r, row, col + 2));
	p->raw = res_text(r, row, col + 3);
	p->raw_len = (size_t)db_res_int(r, row, col + 4);
	p->envelope_from = db_res_value(r, row, col + 5);
	p->sender = res_text(r, row, col + 6);
	p->post_number = (int)db_res_int(r, row, col + 7);
	p->sender_is_member = (int)db_res_int(r, row, col + 8);
	p->sender_action = db_res_value(r, row, col + 9);
}

void
list_conf_from_res(const struct db_res *r, int row, int col, int list_id,
    struct list_conf *l)
{
	const char	**text[] = {
		&l->fqdn, &l->name, &l->host, &l->display_name,
		&l->description, &l->subject_prefix, &l->archive_policy,
		&l->archive_url, &l->reply_goes_to_list, &l->reply_to_address,
		&l->default_member_action, &l->default_nonmember_action,
		&l->personalize
	};
	int		*ints[] = {
		&l->include_rfc2369_headers, &l->allow_list_posts,
		&l->first_strip_reply_to, &l->emergency,
		&l->max_message_size, &l->verp_delivery_interval,
		&l->max_recipients, &l->anonymous_list
	};
	size_t		 i, ntext = sizeof(text) / sizeof(*text);

	memset(l, 0, sizeof(*l));
	l->id = list_id;
	for (i = 0; i < ntext; i++)
		*text[i] = db_res_value(r, row, col + (int)i);
	for (i = 0; i < sizeof(ints) / sizeof(*ints); i++)
		*ints[i] = (int)db_res_int(r, row, col + (int)(ntext + i));
}

int
post_raw(struct db *db, struct post *p)
{
	struct db_params prm;
	char		 id[24];

	if (p->raw != NULL)
		return 0;
	db_params_init(&prm);
	db_param_int(&prm, id, p->id);
	p->raw_res = db_exec(db, "SELECT m.raw FROM quire.post p"
	    " JOIN quire.message m ON m.id = p.message_id WHERE p.id = $1",
	    &prm, DB_BINARY);
	if (p->raw_res == NULL || db_res_rows(p->raw_res) != 1) {
		db_res_free(p->raw_res);
		p->raw_res = NULL;
		return -1;
	}
	p->raw = db_res_value(p->raw_res, 0, 0);
	p->raw_len = db_res_length(p->raw_res, 0, 0);
	return 0;
}

void
post_free(struct post *p)
{
	db_res_free(p->raw_res);
	p->raw_res = NULL;
}
