#ifndef QUIRE_MIGRATE_H
#define QUIRE_MIGRATE_H

struct db;

/* Apply pending migrations and re-apply the schema: 0 or -1 (logged). */
int	migrate_run(struct db *);

#endif
