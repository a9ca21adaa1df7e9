/*
 * intake: the LMTP process, joining the protocol server to the database.
 */
#ifndef QUIRE_INTAKE_H
#define QUIRE_INTAKE_H

#include <stddef.h>

struct intake_config {
	const char	*conninfo;
	const char	*appname;
	const char	*host;
	int		 port;
	const char	*hostname;
	size_t		 max_size;	/* octets */
	size_t		 max_rcpts;
	size_t		 max_clients;
	size_t		 max_buffered;	/* octets of all messages; 0: 4x */
	int		 idle_timeout;
	int		 data_timeout;
	int		 commit_timeout;
	int		 db_connections;	/* database connections */
};

/* Runs until killed; returns only on a fatal error: -1, or
 * INTAKE_CANNOT_LISTEN when the address cannot be bound (another
 * process has it, or it is not ours), which restarting will not mend. */
#define INTAKE_CANNOT_LISTEN	78	/* EX_CONFIG */
int	intake_main(const struct intake_config *);

#endif
