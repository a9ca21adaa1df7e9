/*
 * migrate: bring a database to the schema this binary was built with.
 *
 * Numbered files of migrations/ are applied once each, in order, each in
 * its own transaction with its row in quire.schema_migration; then every
 * file of schema/ is re-applied in one transaction.  An advisory lock
 * makes engines on several hosts that migrate at once take turns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "migrate.h"
#include "sql.h"

#define MIGRATE_LOCK	"7418323"	/* any constant, shared by all */

static const char migrate_bootstrap[] =
    "CREATE SCHEMA IF NOT EXISTS quire;"
    "CREATE TABLE IF NOT EXISTS quire.schema_migration ("
    "  version integer PRIMARY KEY,"
    "  name text NOT NULL,"
    "  applied_at timestamptz NOT NULL DEFAULT now());"
    "COMMENT ON TABLE quire.schema_migration IS"
    "  'migrations/ files applied to this database';";

static int
migrate_applied(struct db *db, int version)
{
	struct db_params p;
	struct db_res	*r;
	char		 v[24];
	int		 n;

	db_params_init(&p);
	db_param_int(&p, v, version);
	r = db_exec(db, "SELECT 1 FROM quire.schema_migration "
	    "WHERE version = $1", &p, DB_TEXT);
	if (r == NULL)
		return -1;
	n = db_res_rows(r);
	db_res_free(r);
	return n > 0;
}

static int
migrate_one(struct db *db, const struct sql_file *f)
{
	struct db_params p;
	char		 v[24];
	int		 version = atoi(f->name);

	switch (migrate_applied(db, version)) {
	case 1:
		return 0;
	case -1:
		return -1;
	}
	db_params_init(&p);
	db_param_int(&p, v, version);
	db_param_text(&p, f->name);
	if (db_cmd(db, "BEGIN", NULL) == -1 || db_script(db, f->text) == -1 ||
	    db_cmd(db, "INSERT INTO quire.schema_migration (version, name) "
	    "VALUES ($1, $2)", &p) == -1 || db_cmd(db, "COMMIT", NULL) == -1) {
		log_error("migrate_failed", "file=%s reason=%s", f->name,
		    log_q(db_error(db)));
		(void)db_cmd(db, "ROLLBACK", NULL);
		return -1;
	}
	log_info("migrate_applied", "file=%s", f->name);
	return 0;
}

static int
migrate_schema(struct db *db)
{
	if (db_cmd(db, "BEGIN", NULL) == -1)
		return -1;
	for (const struct sql_file *f = sql_schema; f->name; f++) {
		if (db_script(db, f->text) == -1) {
			log_error("migrate_failed", "file=%s reason=%s",
			    f->name, log_q(db_error(db)));
			(void)db_cmd(db, "ROLLBACK", NULL);
			return -1;
		}
	}
	return db_cmd(db, "COMMIT", NULL);
}

int
migrate_run(struct db *db)
{
	int	 rc = -1;

	if (db_cmd(db, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", NULL)) {
		log_error("migrate_failed", "reason=%s", log_q(db_error(db)));
		return -1;
	}
	if (db_script(db, migrate_bootstrap) == -1) {
		log_error("migrate_failed", "reason=%s", log_q(db_error(db)));
		goto out;
	}
	for (const struct sql_file *f = sql_migrations; f->name; f++)
		if (migrate_one(db, f) == -1)
			goto out;
	if (migrate_schema(db) == -1)
		goto out;
	rc = 0;
out:
	(void)db_cmd(db, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")", NULL);
	return rc;
}
