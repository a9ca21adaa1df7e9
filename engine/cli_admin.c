/*
 * cli_admin: domains, lists and members.  Each command is a call of one
 * SQL function of schema/10_admin.sql, so psql users get the same rules.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "msg_addr.h"

static int
cli_sub(struct cli *c, const char *want)
{
	if (c->argc > 0 && strcmp(c->argv[0], want) == 0) {
		c->argc--;
		c->argv++;
		return 1;
	}
	return 0;
}

int
cli_domain(struct cli *c)
{
	struct db_params p;
	struct db	*db;
	const char	*descr, *alias;
	int		 rc;

	if (cli_sub(c, "add")) {
		descr = cli_opt(c, "--description", NULL);
		alias = cli_opt(c, "--alias", NULL);
		if (cli_no_options(c) || c->argc != 1)
			return cli_usage("domain add HOST [--description D] "
			    "[--alias HOST]");
		if ((db = cli_connect(c)) == NULL)
			return 1;
		db_params_init(&p);
		db_param_text(&p, c->argv[0]);
		db_param_text(&p, descr);
		db_param_text(&p, alias);
		rc = cli_run_sql(db, "SELECT quire.domain_add($1, $2, $3)",
		    &p, 0);
		if (rc == 0)
			printf("domain %s added\n", c->argv[0]);
	} else if (cli_sub(c, "list")) {
		if ((db = cli_connect(c)) == NULL)
			return 1;
		rc = cli_run_sql(db, "SELECT mail_host, description, "
		    "alias_domain FROM quire.domain ORDER BY mail_host", NULL,
		    1);
	} else
		return cli_usage("domain add|list");
	db_close(db);
	return rc;
}

static int
cli_list_create(struct cli *c, struct db *db)
{
	struct db_params p;
	const char	*display = cli_opt(c, "--display-name", NULL);
	int		 rc;

	if (cli_no_options(c) || c->argc != 1 || strchr(c->argv[0], '@') ==
	    NULL)
		return cli_usage("list create LIST@HOST [--display-name N]");
	db_params_init(&p);
	db_param_text(&p, c->argv[0]);
	db_param_text(&p, display);
	rc = cli_run_sql(db, "SELECT quire.list_create($1, $2)", &p, 0);
	if (rc == 0)
		printf("list %s created\n", c->argv[0]);
	return rc;
}

static int
cli_list_delete(struct cli *c, struct db *db)
{
	struct db_params p;
	struct db_res	*r;
	int		 n;

	if (c->argc != 1)
		return cli_usage("list delete LIST");
	db_params_init(&p);
	db_param_text(&p, c->argv[0]);
	r = db_exec(db, "DELETE FROM quire.list WHERE id ="
	    " quire.list_lookup($1)", &p, DB_TEXT);
	if (r == NULL) {
		fprintf(stderr, "quire: %s\n", db_error_brief(db));
		return 1;
	}
	n = atoi(db_res_cmd_tuples(r));
	db_res_free(r);
	if (n == 0) {
		fprintf(stderr, "quire: no such list: %s\n", c->argv[0]);
		return 1;
	}
	printf("list %s deleted\n", c->argv[0]);
	return 0;
}

/* One setting a line, as "name<TAB>value". */
static int
cli_list_show(struct cli *c, struct db *db)
{
	struct db_params p;
	struct db_res	*r;

	if (c->argc != 1)
		return cli_usage("list show LIST");
	db_params_init(&p);
	db_param_text(&p, c->argv[0]);
	r = db_exec(db, "SELECT * FROM quire.list_settings WHERE id ="
	    " quire.list_lookup($1)", &p, DB_TEXT);
	if (r == NULL || db_res_rows(r) != 1) {
		if (r == NULL)
			fprintf(stderr, "quire: %s\n", db_error_brief(db));
		else
			fprintf(stderr, "quire: no such list: %s\n",
			    c->argv[0]);
		db_res_free(r);
		return 1;
	}
	for (int col = 0; col < db_res_cols(r); col++)
		printf("%s\t%s\n", db_res_colname(r, col),
		    db_res_isnull(r, 0, col) ? "" : db_res_value(r, 0, col));
	db_res_free(r);
	return 0;
}

static int
cli_list_set(struct cli *c, struct db *db)
{
	struct db_params p;

	if (c->argc != 3)
		return cli_usage("list set LIST SETTING VALUE");
	db_params_init(&p);
	for (int i = 0; i < 3; i++)
		db_param_text(&p, c->argv[i]);
	return cli_run_sql(db, "SELECT quire.list_set($1, $2, $3)", &p, 0);
}

int
cli_list(struct cli *c)
{
	struct db	*db;
	int		 rc;

	if (c->argc == 0)
		return cli_usage("list create|delete|show|list|set");
	if ((db = cli_connect(c)) == NULL)
		return 1;
	if (cli_sub(c, "create"))
		rc = cli_list_create(c, db);
	else if (cli_sub(c, "delete"))
		rc = cli_list_delete(c, db);
	else if (cli_sub(c, "show"))
		rc = cli_list_show(c, db);
	else if (cli_sub(c, "set"))
		rc = cli_list_set(c, db);
	else if (cli_sub(c, "list"))
		rc = cli_run_sql(db, "SELECT ls.fqdn_listname AS list,"
		    " ls.display_name, (SELECT count(*) FROM quire.member m"
		    "  WHERE m.list_id = ls.id AND m.role = 'member')"
		    " AS members"
		    " FROM quire.list_settings ls ORDER BY 1", NULL, 1);
	else
		rc = cli_usage("list create|delete|show|list|set");
	db_close(db);
	return rc;
}

/* One line of a members file, as Mailman's addmembers reads them:
 * "anne@example.com", "Anne <anne@example.com>" or
 * "anne@example.com (Anne)".  Returns 0 for a blank or comment line. */
static int
cli_member_line(const char *line, char *addr, size_t alen, char *name,
    size_t nlen)
{
	struct msg_addr_list	 l = { 0 };
	const char		*p = line;

	while (*p == ' ' || *p == '\t')
		p++;
	*name = '\0';
	if (*p == '\0' || *p == '#')
		return 0;
	if (msg_addr_parse_list(p, &l) == 1 && l.v[0].addr != NULL) {
		snprintf(addr, alen, "%s", l.v[0].addr);
		if (l.v[0].display != NULL)
			snprintf(name, nlen, "%s", l.v[0].display);
	} else
		snprintf(addr, alen, "%s", p);
	msg_addr_list_free(&l);
	return 1;
}

/* Addresses from the arguments and from --file (one a line; blank lines
 * and lines starting with '#' skipped), each added or removed in its own
 * statement so one bad address does not stop the rest. */
static int
cli_member_each(struct cli *c, struct db *db, const char *sql,
    const char *role, const char *name, const char *verb)
{
	const char	*file = cli_opt(c, "--file", NULL);
	struct db_params p;
	struct db_res	*r;
	char		*line = NULL, parsed[1024], display[1024];
	size_t		 cap = 0;
	const char	*given_name = name;
	FILE		*f = NULL;
	int		 i = 1, failed = 0;

	if (file != NULL && (f = strcmp(file, "-") ? fopen(file, "r") :
	    stdin) == NULL) {
		fprintf(stderr, "quire: %s: %s\n", file, strerror(errno));
		return 1;
	}
	for (;;) {
		const char *addr;

		name = given_name;
		if (i < c->argc)
			addr = c->argv[i++];
		else if (f != NULL && getline(&line, &cap, f) != -1) {
			line[strcspn(line, "\r\n")] = '\0';
			/* Whole lines only: a long one is refused, never cut
			 * into pieces that read as addresses of their own. */
			if (strlen(line) >= sizeof(parsed)) {
				fprintf(stderr, "quire: %s: line too long\n",
				    file);
				failed++;
				continue;
			}
			if (cli_member_line(line, parsed, sizeof(parsed),
			    display, sizeof(display)) == 0)
				continue;
			addr = parsed;
			if (*display != '\0')
				name = display;
		} else
			break;
		db_params_init(&p);
		db_param_text(&p, c->argv[0]);
		db_param_text(&p, addr);
		db_param_text(&p, role);
		if (name != NULL)
			db_param_text(&p, name);
		if ((r = db_exec(db, sql, &p, DB_TEXT)) == NULL) {
			fprintf(stderr, "quire: %s: %s\n", addr,
			    db_error_brief(db));
			failed++;
			continue;
		}
		if (db_res_value(r, 0, 0)[0] == '\0' ||
		    db_res_value(r, 0, 0)[0] == 'f')
			printf("%s %s\n", addr, *verb == 'a' ?
			    "was already on the list in that role" :
			    "was not on the list in that role");
		else
			printf("%s %s\n", addr, verb);
		db_res_free(r);
	}
	if (f != NULL && ferror(f)) {
		fprintf(stderr, "quire: %s: %s\n", file, strerror(errno));
		failed++;
	}
	if (f != NULL && f != stdin)
		fclose(f);
	free(line);
	return failed ? 1 : 0;
}

/* 1 if the list exists; otherwise says so and returns 0 (-1: error). */
int
cli_list_exists(struct db *db, const char *list)
{
	struct db_params p;
	struct db_res	*r;
	int		 found;

	db_params_init(&p);
	db_param_text(&p, list);
	if ((r = db_exec(db, "SELECT quire.list_lookup($1)", &p, DB_TEXT)) ==
	    NULL) {
		fprintf(stderr, "quire: %s\n", db_error_brief(db));
		return -1;
	}
	found = !db_res_isnull(r, 0, 0);
	db_res_free(r);
	if (!found)
		fprintf(stderr, "quire: no such list: %s\n", list);
	return found;
}

int
cli_member(struct cli *c)
{
	struct db_params p;
	struct db	*db;
	const char	*role, *name;
	int		 rc, add = 0, rm = 0, ls = 0;

	if (!(add = cli_sub(c, "add")) && !(rm = cli_sub(c, "remove")) &&
	    !(ls = cli_sub(c, "list")))
		return cli_usage("member add|remove|list");
	role = cli_opt(c, "--role", "member");
	name = cli_opt(c, "--name", "");
	if (strcmp(role, "--role") == 0 || strncmp(role, "--", 2) == 0)
		return cli_usage("--role takes member, owner, moderator or "
		    "nonmember");
	if (c->argc < 1)
		return cli_usage("member add|remove|list LIST ...");
	if ((db = cli_connect(c)) == NULL)
		return 1;
	if (cli_list_exists(db, c->argv[0]) != 1)
		rc = 1;
	else if (add)
		rc = cli_member_each(c, db, "SELECT coalesce(quire.member_add("
		    "$1, $2, $3, $4)::text, '')", role, name, "added");
	else if (rm)
		rc = cli_member_each(c, db, "SELECT quire.member_remove($1, $2,"
		    " $3)", role, NULL, "removed");
	else {
		db_params_init(&p);
		db_param_text(&p, c->argv[0]);
		db_param_text(&p, role);
		rc = cli_run_sql(db, "SELECT a.email, m.display_name, m.role,"
		    " m.delivery_status FROM quire.member m"
		    " JOIN quire.address a ON a.id = m.address_id"
		    " WHERE m.list_id = quire.list_lookup($1) AND m.role = $2"
		    " ORDER BY a.email", &p, 1);
	}
	db_close(db);
	return rc;
}
