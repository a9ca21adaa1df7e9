/*
 * stop: SIGTERM as a request.  The handler only sets a flag, which the
 * loops check between transactions, and writes a byte to a pipe, which
 * wakes an idle event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "stop.h"

volatile sig_atomic_t	 stop_requested;

static int		 stop_pipe[2] = { -1, -1 };
static void		(*stop_cb)(void *);
static void		*stop_arg;
static int		 stop_cancel_seconds;
static void		(*stop_cancel)(void);

static void
stop_on_signal(int sig)
{
	int	 saved = errno;

	(void)sig;
	stop_requested = 1;
	(void)!write(stop_pipe[1], "", 1);
	if (stop_cancel != NULL)
		alarm((unsigned)stop_cancel_seconds);
	errno = saved;
}

static void
stop_on_alarm(int sig)
{
	int	 saved = errno;

	(void)sig;
	stop_cancel();
	alarm(1);
	errno = saved;
}

int
stop_cancel_after(int seconds, void (*cancel)(void))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop_on_alarm;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) == -1)
		return -1;
	stop_cancel_seconds = seconds > 0 ? seconds : 1;
	stop_cancel = cancel;
	return 0;
}

static void
stop_on_pipe(evutil_socket_t fd, short what, void *arg)
{
	char	 b[16];

	(void)what;
	(void)arg;
	while (read(fd, b, sizeof(b)) > 0)
		;
	log_info("worker_stopping", "reason=SIGTERM");
	stop_cb(stop_arg);
}

int
stop_watch(struct event_base *base, void (*on_stop)(void *), void *arg)
{
	struct sigaction sa;
	struct event	*ev;

	if (pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		return -1;
	stop_cb = on_stop;
	stop_arg = arg;
	ev = event_new(base, stop_pipe[0], EV_READ | EV_PERSIST, stop_on_pipe,
	    NULL);
	if (ev == NULL || event_add(ev, NULL) == -1)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop_on_signal;
	/* libpq's blocking calls go on across the signal. */
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGTERM, &sa, NULL);
}
