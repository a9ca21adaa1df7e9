/*
 * stop: a worker's graceful stop on SIGTERM (what the supervisor sends
 * when it stops, and what PR_SET_PDEATHSIG sends if it dies).  The
 * in-database runner finishes the transaction it is in and the outgoing
 * runner the batches it has in flight, so that a stop neither leaves a
 * commit's outcome unknown nor a lease to run out; each then returns
 * from its loop.
 */
#ifndef QUIRE_STOP_H
#define QUIRE_STOP_H

#include <signal.h>

struct event_base;

/* Set by SIGTERM once stop_watch has run; db_connect_retry's stop. */
extern volatile sig_atomic_t stop_requested;

/* Catch SIGTERM; `on_stop' then runs from base's loop.  0, or -1. */
int	stop_watch(struct event_base *base, void (*on_stop)(void *),
	    void *arg);

/* For a worker that may block in a statement the server cannot finish
 * (a commit waiting for a synchronous standby that is away): `seconds'
 * after SIGTERM, and every second after that, `cancel' runs from the
 * signal handler, so it must be async-signal-safe.  0, or -1. */
int	stop_cancel_after(int seconds, void (*cancel)(void));

#endif
