/*
 * cli: argument helpers and output shared by the subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "log.h"
#include "migrate.h"

const char cli_usage_text[] =
"usage: quire [--db CONNINFO] COMMAND ...\n"
"\n"
"  migrate                          create or upgrade the schema\n"
"  run [--stages S] [--lmtp H:P] [--relay H:P] ...\n"
"                                   run the engine in the foreground\n"
"  domain add HOST [--description D] [--alias HOST] | domain list\n"
"  list create LIST@HOST [--display-name N] | delete LIST | show LIST\n"
"  list list | list set LIST SETTING VALUE\n"
"  member add LIST [--role R] [--name N] [--file F] [ADDRESS...]\n"
"  member remove LIST [--role R] ADDRESS... | member list LIST [--role R]\n"
"  inject LIST FILE|-                put a message in as if it came by "
"LMTP\n"
"  queue list [STAGE] | queue show ID | queue retry ID | queue delete ID\n"
"  held list [LIST] | held approve POST | held discard POST\n"
"  archive export LIST [FILE]       the list's archive as an mbox\n"
"  status                           processes, queues, held, shunted\n"
"\n"
"The database: --db, else $QUIRE_DB, else libpq's PG* variables.\n";

static void
cli_drop(struct cli *c, int at, int n)
{
	memmove(&c->argv[at], &c->argv[at + n],
	    (size_t)(c->argc - at - n + 1) * sizeof(char *));
	c->argc -= n;
}

static const char *
cli_take(struct cli *c, const char *name)
{
	size_t	 len = strlen(name);

	for (int i = 0; i < c->argc; i++) {
		const char *a = c->argv[i];

		if (strcmp(a, name) == 0 && i + 1 == c->argc) {
			fprintf(stderr, "quire: %s needs a value\n", name);
			c->bad = 1;
			cli_drop(c, i, 1);
			return NULL;
		}
		if (strcmp(a, name) == 0) {
			const char *v = c->argv[i + 1];
			cli_drop(c, i, 2);
			return v;
		}
		if (strncmp(a, name, len) == 0 && a[len] == '=') {
			cli_drop(c, i, 1);
			return a + len + 1;
		}
	}
	return NULL;
}

const char *
cli_opt(struct cli *c, const char *name, const char *def)
{
	const char	*v = cli_take(c, name);

	if (v == NULL)
		return def;
	if (cli_take(c, name) != NULL) {
		fprintf(stderr, "quire: %s given more than once\n", name);
		c->bad = 1;
		while (cli_take(c, name) != NULL)
			;
	}
	return v;
}

int
cli_flag(struct cli *c, const char *name)
{
	for (int i = 0; i < c->argc; i++) {
		if (strcmp(c->argv[i], name) == 0) {
			cli_drop(c, i, 1);
			return 1;
		}
	}
	return 0;
}

int
cli_no_options(struct cli *c)
{
	if (c->bad)
		return -1;
	for (int i = 0; i < c->argc; i++) {
		if (strncmp(c->argv[i], "--", 2) == 0 && c->argv[i][2]) {
			fprintf(stderr, "quire: unknown option %s\n",
			    c->argv[i]);
			return -1;
		}
	}
	return 0;
}

struct db *
cli_connect(struct cli *c)
{
	struct db	*db = db_connect(c->conninfo, "quire cli");

	if (db == NULL)
		fprintf(stderr, "quire: cannot connect to the database "
		    "(--db, $QUIRE_DB or PG* variables)\n");
	return db;
}

void
cli_print(const struct db_res *r)
{
	int	 cols = db_res_cols(r);

	for (int c = 0; c < cols; c++)
		printf("%s%s", c ? "\t" : "", db_res_colname(r, c));
	putchar('\n');
	for (int row = 0; row < db_res_rows(r); row++) {
		for (int c = 0; c < cols; c++)
			printf("%s%s", c ? "\t" : "", db_res_isnull(r, row, c) ?
			    "" : db_res_value(r, row, c));
		putchar('\n');
	}
}

int
cli_usage(const char *why)
{
	if (why != NULL)
		fprintf(stderr, "quire: %s\n\n", why);
	fputs(cli_usage_text, stderr);
	return 2;
}

int
cli_run_sql(struct db *db, const char *sql, const struct db_params *p,
    int print)
{
	struct db_res	*r = db_exec(db, sql, p, DB_TEXT);

	if (r == NULL) {
		fprintf(stderr, "quire: %s\n", db_error_brief(db));
		return 1;
	}
	if (print)
		cli_print(r);
	db_res_free(r);
	return 0;
}

int
cli_migrate(struct cli *c)
{
	struct db	*db;
	int		 rc;

	if (cli_no_options(c) == -1)
		return 2;
	if ((db = cli_connect(c)) == NULL)
		return 1;
	rc = migrate_run(db);
	db_close(db);
	if (rc == 0)
		printf("schema is up to date\n");
	return rc == 0 ? 0 : 1;
}
