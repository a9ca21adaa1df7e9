/*
 * cli: the admin subcommands of the quire binary.
 */
#ifndef QUIRE_CLI_H
#define QUIRE_CLI_H

struct db;
struct db_res;
struct db_params;

struct cli {
	const char	*conninfo;
	int		 argc;
	char		**argv;	/* after the subcommand's own words */
	int		 bad;	/* an option given twice or without a value */
};

/* Remove "--name value" (or "--name=value") from the arguments; the value
 * or `def'.  cli_flag removes a bare "--name" and says if it was there.
 * An option given twice or without its value is said on stderr, and
 * cli_no_options fails. */
const char	*cli_opt(struct cli *, const char *name, const char *def);
int		 cli_flag(struct cli *, const char *name);
/* An unknown option left over: complain and return -1. */
int		 cli_no_options(struct cli *);

struct db	*cli_connect(struct cli *);
/* Print a result as a tab-separated table with a header line. */
void		 cli_print(const struct db_res *);
extern const char cli_usage_text[];
int		 cli_usage(const char *);
/* Run a statement; print its rows (if print) or its error.  0 or 1. */
int		 cli_run_sql(struct db *, const char *sql,
		    const struct db_params *, int print);

int		 cli_list_exists(struct db *, const char *list);

int	cli_migrate(struct cli *);
int	cli_held(struct cli *);
int	cli_domain(struct cli *);
int	cli_list(struct cli *);
int	cli_member(struct cli *);
int	cli_inject(struct cli *);
int	cli_queue(struct cli *);
int	cli_archive(struct cli *);
int	cli_status(struct cli *);
int	cli_run(struct cli *);

#endif
