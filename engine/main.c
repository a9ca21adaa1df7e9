/*
 * quire: the mailing-list engine and its admin commands, one binary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "log.h"
#include "migrate.h"


static const struct {
	const char	*name;
	int		(*fn)(struct cli *);
} commands[] = {
	{ "migrate", cli_migrate },
	{ "run", cli_run },
	{ "domain", cli_domain },
	{ "list", cli_list },
	{ "member", cli_member },
	{ "inject", cli_inject },
	{ "queue", cli_queue },
	{ "held", cli_held },
	{ "archive", cli_archive },
	{ "status", cli_status },
};

int
main(int argc, char **argv)
{
	struct cli	 cli = { 0 };
	int		 i = 1;

	log_init("cli");
	cli.conninfo = getenv("QUIRE_DB");
	while (i < argc && strncmp(argv[i], "--", 2) == 0) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
			cli.conninfo = argv[i + 1];
			i += 2;
		} else if (strncmp(argv[i], "--db=", 5) == 0)
			cli.conninfo = argv[i++] + 5;
		else if (strcmp(argv[i], "--help") == 0) {
			fputs(cli_usage_text, stdout);
			return 0;
		}
		else
			return cli_usage("unknown option");
	}
	if (i >= argc)
		return cli_usage(NULL);
	for (size_t c = 0; c < sizeof(commands) / sizeof(*commands); c++) {
		if (strcmp(argv[i], commands[c].name) != 0)
			continue;
		cli.argc = argc - i - 1;
		cli.argv = argv + i + 1;
		return commands[c].fn(&cli);
	}
	return cli_usage("unknown command");
}
