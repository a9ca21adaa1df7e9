/*
 * runner: a process serving some of the in-database stages.
 */
#ifndef QUIRE_RUNNER_H
#define QUIRE_RUNNER_H

struct runner_config {
	const char	*conninfo;
	const char	*appname;
	unsigned	 stages;	/* bit (1 << enum stage_id) */
	int		 max_attempts;	/* tries before the shunt */
	int		 batch;		/* rows claimed per transaction */
	double		 retry_backoff;	/* seconds, doubled per failure */
	int		 claim_lease;	/* seconds a claim holds its rows,
					 * and a crashed row waits */
};

/* Runs until SIGTERM (0, between transactions) or a fatal error (-1). */
int	runner_main(const struct runner_config *);

#endif
