/*
 * migrate: bring a database to the schema this binary was built with.
 *
 * Numbered files of migrations/ are applied once each, in order, each in
 * its own transaction with its row in quire.schema_migration; then every
 * file of schema/ is re-applied in one transaction.  An advisory lock
 * makes engines on several hosts that migrate at once take turns.
 *
 * Engines may be running meanwhile.  The schema takes its tables' locks
 * one by one (a trigger on quire.queue, then one on quire.post) while an
 * LMTP accept takes them the other way round, so the two can deadlock,
 * and the server may pick the engine's transaction to fail: an LMTP 451,
 * or a stage try counted as failed.  Each transaction here therefore
 * waits for a lock at most MIGRATE_LOCK_WAIT, well under the server's
 * deadlock_timeout (1 s by default), and gives way: it is rolled back
 * and run again, so that the engines' work goes on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "migrate.h"
#include "sql.h"

#define MIGRATE_LOCK	"7418323"	/* any constant, shared by all */
#define MIGRATE_LOCK_WAIT "100ms"
#define MIGRATE_TRIES	200		/* 100 ms apart, and the waits */

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
migrate_begin(struct db *db)
{
	if (db_cmd(db, "BEGIN", NULL) == -1)
		return -1;
	return db_cmd(db, "SET LOCAL lock_timeout = '" MIGRATE_LOCK_WAIT "'",
	    NULL);
}

/* After a failed transaction: 0 when it lost a lock to a running engine
 * (rolled back, to be run again after a pause), -1 otherwise. */
static int
migrate_give_way(struct db *db, const char *file, int tries)
{
	const char	*state = db_sqlstate(db);
	struct timespec	 pause = { 0, 100 * 1000 * 1000 };

	if (tries >= MIGRATE_TRIES || (strcmp(state, "55P03") != 0 &&
	    strcmp(state, "40P01") != 0))
		return -1;
	log_info("migrate_gave_way", "file=%s try=%d reason=%s", file, tries,
	    log_q(db_error(db)));
	if (db_cmd(db, "ROLLBACK", NULL) == -1)
		return -1;
	nanosleep(&pause, NULL);
	return 0;
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
	for (int tries = 1; ; tries++) {
		if (migrate_begin(db) == 0 && db_script(db, f->text) == 0 &&
		    db_cmd(db, "INSERT INTO quire.schema_migration (version, "
		    "name) VALUES ($1, $2)", &p) == 0 &&
		    db_cmd(db, "COMMIT", NULL) == 0)
			break;
		if (migrate_give_way(db, f->name, tries) == 0)
			continue;
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
	for (int tries = 1; ; tries++) {
		const struct sql_file *f = sql_schema;
		int rc = migrate_begin(db);

		while (rc == 0 && f->name != NULL && (rc = db_script(db,
		    f->text)) == 0)
			f++;
		if (rc == 0 && db_cmd(db, "COMMIT", NULL) == 0)
			return 0;
		if (migrate_give_way(db, f->name ? f->name : "schema",
		    tries) == 0)
			continue;
		log_error("migrate_failed", "file=%s reason=%s",
		    f->name ? f->name : "schema", log_q(db_error(db)));
		(void)db_cmd(db, "ROLLBACK", NULL);
		return -1;
	}
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
