/*
 * sql: the project's SQL files, compiled into the binary in name order.
 * migrations/ are applied once each; schema/ (views, functions,
 * triggers, comments) is re-applied by every migrate.
 */
#ifndef QUIRE_SQL_H
#define QUIRE_SQL_H

struct sql_file {
	const char	*name;
	const char	*text;
};

extern const struct sql_file sql_migrations[];
extern const struct sql_file sql_schema[];

#endif
