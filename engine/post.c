/*
 * post: loading a post with its message bytes, and a list's settings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "post.h"

/* Binary results, so the message bytes need no unescaping. */
static const char post_sql[] =
    "SELECT p.id, p.list_id, p.subaddress, m.raw, m.envelope_from,"
    "       p.sender, coalesce(p.post_number, 0)"
    "  FROM quire.post p JOIN quire.message m ON m.id = p.message_id"
    " WHERE p.id = $1";

int
post_load(struct db *db, long long id, struct post *p)
{
	struct db_params prm;
	char		 v[24];

	memset(p, 0, sizeof(*p));
	db_params_init(&prm);
	db_param_int(&prm, v, id);
	if ((p->res = db_exec(db, post_sql, &prm, DB_BINARY)) == NULL)
		return -1;
	if (db_res_rows(p->res) != 1) {
		db_res_free(p->res);
		p->res = NULL;
		return -1;
	}
	p->id = db_res_int(p->res, 0, 0);
	p->list_id = (int)db_res_int(p->res, 0, 1);
	snprintf(p->subaddress, sizeof(p->subaddress), "%s",
	    db_res_value(p->res, 0, 2));
	p->raw = db_res_value(p->res, 0, 3);
	p->raw_len = db_res_length(p->res, 0, 3);
	p->envelope_from = db_res_value(p->res, 0, 4);
	p->sender = db_res_isnull(p->res, 0, 5) ? NULL :
	    db_res_value(p->res, 0, 5);
	p->post_number = (int)db_res_int(p->res, 0, 6);
	return 0;
}

void
post_free(struct post *p)
{
	db_res_free(p->res);
	p->res = NULL;
}

static const char list_sql[] =
    "SELECT id, fqdn_listname, list_name, mail_host, display_name,"
    "       description, subject_prefix, archive_policy, archive_url,"
    "       reply_goes_to_list, reply_to_address, default_member_action,"
    "       default_nonmember_action, personalize,"
    "       include_rfc2369_headers::int, allow_list_posts::int,"
    "       first_strip_reply_to::int, emergency::int, max_message_size,"
    "       verp_delivery_interval, max_recipients, anonymous_list::int"
    "  FROM quire.list_settings WHERE id = $1";

int
list_conf_load(struct db *db, int id, struct list_conf *l)
{
	struct db_params prm;
	char		 v[24];
	char		**text[] = {
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
	db_params_init(&prm);
	db_param_int(&prm, v, id);
	if ((l->res = db_exec(db, list_sql, &prm, DB_TEXT)) == NULL)
		return -1;
	if (db_res_rows(l->res) != 1) {
		list_conf_free(l);
		return -1;
	}
	l->id = id;
	for (i = 0; i < ntext; i++)
		*text[i] = (char *)db_res_value(l->res, 0, 1 + i);
	for (i = 0; i < sizeof(ints) / sizeof(*ints); i++)
		*ints[i] = (int)db_res_int(l->res, 0, 1 + ntext + i);
	return 0;
}

void
list_conf_free(struct list_conf *l)
{
	db_res_free(l->res);
	l->res = NULL;
}
