/*
 * out: the outgoing runner, from delivery rows to the relay.
 */
#ifndef QUIRE_OUT_H
#define QUIRE_OUT_H

/* SMTP connections one out worker keeps to the relay, at most. */
#define OUT_MAX_CONNS	16

struct out_config {
	const char	*conninfo;
	const char	*appname;
	const char	*relay_host;
	int		 relay_port;
	const char	*helo;
	int		 connections;	/* kept SMTP connections */
	int		 lease;		/* seconds a batch may be in flight */
	int		 retry_base;	/* seconds before the first retry */
	int		 retry_max;	/* longest wait between retries */
	int		 give_up;	/* seconds after which 4xx is final */
	int		 smtp_timeout;	/* seconds per reply */
};

/* Runs until SIGTERM (0, once the batches in flight are recorded) or a
 * fatal error (-1). */
int	out_main(const struct out_config *);

#endif
