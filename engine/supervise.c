/*
 * supervise: `quire run'.  The stages named by --stages are split over
 * worker processes by how they wait: the LMTP server (asynchronous
 * database calls, many clients), the in-database stages (one runner,
 * blocking calls, nothing else to do meanwhile), and the outgoing stage
 * (SMTP connections).  Each worker is one single-threaded event loop with
 * its own database connection; none depends on another being alive.
 *
 * The supervisor only starts workers and starts them again when they
 * die, after a pause that grows while they keep dying young, up to
 * --restart-max seconds (0: at once, for tests that kill workers on
 * purpose and would otherwise wait half a minute a kill).  It waits
 * in sigwaitinfo(), so an idle engine makes no wake-ups here either.
 * A worker gets SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).
 *
 * On SIGTERM the supervisor passes it on and waits: the runners stop
 * between transactions and batches, and the LMTP worker closes its
 * port and lets each client finish the transaction it is in, for up to
 * ten seconds (stop.h, intake.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "intake.h"
#include "log.h"
#include "out.h"
#include "runner.h"
#include "stage.h"

enum worker_kind {
	WORKER_LMTP,
	WORKER_PIPELINE,
	WORKER_OUT,
	WORKER_KINDS
};

/* A worker exits with this when starting it again cannot help. */
#define WORKER_EXIT_FATAL	78

static const char *const worker_names[WORKER_KINDS] = {
	"lmtp", "pipeline", "out"
};

struct engine {
	struct intake_config	 intake;
	struct runner_config	 runner;
	struct out_config	 out;
	int			 want[WORKER_KINDS];
	pid_t			 pid[WORKER_KINDS];
	time_t			 started[WORKER_KINDS];
	int			 pause[WORKER_KINDS];	/* seconds */
	int			 pause_max;
	char			 host[64];
	char			 appname[WORKER_KINDS][96];
	char			 stages[128];
};

static int
parse_hostport(const char *s, const char **host, int *port)
{
	static char	 buf[2][256];
	static int	 which;
	char		*b = buf[which++ % 2];
	char		*colon;

	snprintf(b, sizeof(buf[0]), "%s", s);
	if ((colon = strrchr(b, ':')) == NULL)
		return -1;
	*colon = '\0';
	*host = b;
	if (colon[1] == '\0' || colon[1 + strspn(colon + 1, "0123456789")] !=
	    '\0' || strlen(colon + 1) > 5 || (*port = atoi(colon + 1)) >
	    65535 || *port == 0 || *b == '\0')
		return -1;
	return 0;
}

/* The name in the LMTP greeting and the SMTP EHLO: one word of
 * printable characters. */
static int
hostname_ok(const char *h)
{
	size_t	 n = strlen(h);

	if (n == 0 || n > 255)
		return 0;
	for (; *h != '\0'; h++)
		if (*h <= ' ' || *h >= 0x7f)
			return 0;
	return 1;
}

static int
parse_stages(struct engine *e, const char *list)
{
	char	 copy[256], *tok, *save;

	snprintf(copy, sizeof(copy), "%s", list);
	snprintf(e->stages, sizeof(e->stages), "%s", list);
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		int s = stage_lookup(tok);

		if (strcmp(tok, "lmtp") == 0)
			e->want[WORKER_LMTP] = 1;
		else if (strcmp(tok, "out") == 0)
			e->want[WORKER_OUT] = 1;
		else if (s >= 0) {
			e->want[WORKER_PIPELINE] = 1;
			e->runner.stages |= 1u << s;
		} else {
			fprintf(stderr, "quire: unknown stage %s (stages: "
			    "lmtp,in,posting,decorate,archive,out)\n", tok);
			return -1;
		}
	}
	if (!e->want[WORKER_LMTP] && !e->want[WORKER_PIPELINE] &&
	    !e->want[WORKER_OUT]) {
		fprintf(stderr, "quire: --stages names no stage (stages: "
		    "lmtp,in,posting,decorate,archive,out)\n");
		return -1;
	}
	return 0;
}

/* A whole number of option `name', else of environment variable `env',
 * else `def'; out of [min, max] or not a number is an error, said on
 * stderr: a typo must not become a zero lease or a zero timeout. */
static int
opt_num(struct cli *c, const char *name, const char *env, long def,
    long min, long max, long *out)
{
	const char	*v = cli_opt(c, name, NULL), *from = name;
	char		*end;
	long		 n;

	if (v == NULL && env != NULL && (v = getenv(env)) != NULL &&
	    *v != '\0')
		from = env;
	else if (v == NULL) {
		*out = def;
		return 0;
	}
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < min || n > max ||
	    !(*v == '-' || (*v >= '0' && *v <= '9'))) {
		fprintf(stderr, "quire: %s takes a whole number from %ld to "
		    "%ld, not \"%s\"\n", from, min, max, v);
		return -1;
	}
	*out = n;
	return 0;
}

#define DAY	86400L
#define GIB	(1024L * 1024 * 1024)

static int
opt_int(struct cli *c, const char *name, const char *env, long def,
    long min, long max, int *out)
{
	long	 n;

	if (opt_num(c, name, env, def, min, max, &n) == -1)
		return -1;
	*out = (int)n;
	return 0;
}

static int
opt_size(struct cli *c, const char *name, const char *env, long def,
    long min, long max, size_t *out)
{
	long	 n;

	if (opt_num(c, name, env, def, min, max, &n) == -1)
		return -1;
	*out = (size_t)n;
	return 0;
}

static int
engine_numbers(struct engine *e, struct cli *c)
{
	int	 bad = 0, backoff = 0;

	bad |= opt_size(c, "--max-size", "QUIRE_MAX_SIZE", 50L << 20, 1, GIB,
	    &e->intake.max_size);
	bad |= opt_size(c, "--max-rcpts", NULL, 100, 1, 100000,
	    &e->intake.max_rcpts);
	bad |= opt_size(c, "--max-clients", NULL, 1000, 1, 1000000,
	    &e->intake.max_clients);
	bad |= opt_size(c, "--max-buffered", NULL, 0, 0, 64 * GIB,
	    &e->intake.max_buffered);
	bad |= opt_int(c, "--idle-timeout", NULL, 300, 1, DAY,
	    &e->intake.idle_timeout);
	bad |= opt_int(c, "--data-timeout", NULL, 300, 1, DAY,
	    &e->intake.data_timeout);
	bad |= opt_int(c, "--commit-timeout", NULL, 10, 1, 3600,
	    &e->intake.commit_timeout);
	bad |= opt_int(c, "--lmtp-db-connections", NULL, 4, 1, 64,
	    &e->intake.db_connections);
	bad |= opt_int(c, "--max-attempts", NULL, 5, 1, 1000,
	    &e->runner.max_attempts);
	bad |= opt_int(c, "--batch", NULL, 32, 1, 10000, &e->runner.batch);
	bad |= opt_int(c, "--stage-backoff", NULL, 1, 0, DAY, &backoff);
	bad |= opt_int(c, "--claim-lease", NULL, 10, 1, DAY,
	    &e->runner.claim_lease);
	bad |= opt_int(c, "--out-connections", NULL, 4, 1, OUT_MAX_CONNS,
	    &e->out.connections);
	bad |= opt_int(c, "--lease", "QUIRE_LEASE", 600, 1, 7 * DAY,
	    &e->out.lease);
	bad |= opt_int(c, "--retry-base", "QUIRE_RETRY_BASE", 60, 1, DAY,
	    &e->out.retry_base);
	bad |= opt_int(c, "--retry-max", NULL, 3600, 1, 7 * DAY,
	    &e->out.retry_max);
	bad |= opt_int(c, "--give-up", NULL, 5 * DAY, 0, 365 * DAY,
	    &e->out.give_up);
	bad |= opt_int(c, "--smtp-timeout", NULL, 60, 1, 3600,
	    &e->out.smtp_timeout);
	bad |= opt_int(c, "--restart-max", NULL, 30, 0, 3600, &e->pause_max);
	if (bad)
		return -1;
	e->runner.retry_backoff = backoff;
	if (e->out.retry_max < e->out.retry_base) {
		fprintf(stderr, "quire: --retry-max (%d) is less than "
		    "--retry-base (%d)\n", e->out.retry_max,
		    e->out.retry_base);
		return -1;
	}
	return 0;
}

static int
engine_configure(struct engine *e, struct cli *c)
{
	const char	*lmtp, *relay, *stages;

	stages = cli_opt(c, "--stages", getenv("QUIRE_STAGES"));
	lmtp = cli_opt(c, "--lmtp", getenv("QUIRE_LMTP"));
	relay = cli_opt(c, "--relay", getenv("QUIRE_RELAY"));
	if (gethostname(e->host, sizeof(e->host)) == -1)
		snprintf(e->host, sizeof(e->host), "localhost");
	e->host[20] = '\0';
	if (parse_stages(e, stages ? stages :
	    "lmtp,in,posting,decorate,archive,out") == -1)
		return -1;
	if (parse_hostport(lmtp ? lmtp : "127.0.0.1:8024", &e->intake.host,
	    &e->intake.port) == -1 || parse_hostport(relay ? relay :
	    "127.0.0.1:25", &e->out.relay_host, &e->out.relay_port) == -1) {
		fprintf(stderr, "quire: --lmtp and --relay take HOST:PORT\n");
		return -1;
	}
	e->intake.hostname = cli_opt(c, "--hostname", e->host);
	if (!hostname_ok(e->intake.hostname)) {
		fprintf(stderr, "quire: --hostname takes one word of printable "
		    "characters, not \"%s\"\n", e->intake.hostname);
		return -1;
	}
	e->out.helo = e->intake.hostname;
	if (engine_numbers(e, c) == -1)
		return -1;
	return cli_no_options(c);
}

static void
engine_child(struct engine *e, enum worker_kind k)
{
	char	 role[40] = "";
	int	 rc = -1;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* A peer that closes early is an error on the write, not a death. */
	signal(SIGPIPE, SIG_IGN);
	log_init(worker_names[k]);
	/* application_name: how quire status finds this process. */
	if (k == WORKER_PIPELINE) {
		for (int s = 0; s < STAGE_COUNT; s++)
			if (e->runner.stages & (1u << s))
				snprintf(role + strlen(role),
				    sizeof(role) - strlen(role), "%s%s",
				    *role ? "," : "", stage_defs[s].name);
	} else
		snprintf(role, sizeof(role), "%s", worker_names[k]);
	snprintf(e->appname[k], sizeof(e->appname[k]), "quire/%.16s/%ld/%.30s",
	    e->host, (long)getpid(), role);
	e->intake.appname = e->runner.appname = e->out.appname = e->appname[k];
	switch (k) {
	case WORKER_LMTP:
		if ((rc = intake_main(&e->intake)) == INTAKE_CANNOT_LISTEN)
			_exit(WORKER_EXIT_FATAL);
		break;
	case WORKER_PIPELINE:
		rc = runner_main(&e->runner);
		break;
	case WORKER_OUT:
		rc = out_main(&e->out);
		break;
	default:
		break;
	}
	_exit(rc == 0 ? 0 : 1);
}

static void
engine_start(struct engine *e, enum worker_kind k, const sigset_t *mask)
{
	pid_t	 pid = fork();

	if (pid == -1) {
		log_error("worker_fork_failed", "worker=%s reason=%s",
		    worker_names[k], log_q(strerror(errno)));
		return;
	}
	if (pid == 0) {
		sigprocmask(SIG_UNBLOCK, mask, NULL);
		engine_child(e, k);
	}
	e->pid[k] = pid;
	e->started[k] = time(NULL);
	log_info("worker_started", "worker=%s worker_pid=%ld",
	    worker_names[k], (long)pid);
}

/* Returns 1 if a worker died in a way restarting cannot mend. */
static int
engine_reap(struct engine *e)
{
	int	 status, fatal = 0;
	pid_t	 pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int k = 0; k < WORKER_KINDS; k++) {
			if (e->pid[k] != pid)
				continue;
			e->pid[k] = 0;
			/* A worker that dies young waits longer each time. */
			if (time(NULL) - e->started[k] < 10)
				e->pause[k] = e->pause[k] ? e->pause[k] * 2 : 1;
			else
				e->pause[k] = 0;
			if (e->pause[k] > e->pause_max)
				e->pause[k] = e->pause_max;
			if (WIFEXITED(status) &&
			    WEXITSTATUS(status) == WORKER_EXIT_FATAL) {
				log_error("worker_failed", "worker=%s "
				    "worker_pid=%ld reason=\"cannot start; "
				    "see its last error\"", worker_names[k],
				    (long)pid);
				fatal = 1;
				continue;
			}
			log_warn("worker_exited", "worker=%s worker_pid=%ld "
			    "status=%d signal=%d restart_in=%d",
			    worker_names[k], (long)pid,
			    WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			    WIFSIGNALED(status) ? WTERMSIG(status) : 0,
			    e->pause[k]);
		}
	}
	return fatal;
}

static void
engine_stop(struct engine *e)
{
	for (int k = 0; k < WORKER_KINDS; k++)
		if (e->pid[k] > 0)
			kill(e->pid[k], SIGTERM);
	for (int k = 0; k < WORKER_KINDS; k++)
		if (e->pid[k] > 0)
			waitpid(e->pid[k], NULL, 0);
	log_info("quire_stopped", "host=%s", e->host);
}

/* Start what is missing; return the seconds until the next restart is
 * due, or -1 if nothing waits. */
static int
engine_fill(struct engine *e, const sigset_t *mask, time_t *due)
{
	time_t	 now = time(NULL);
	int	 wait = -1;

	for (int k = 0; k < WORKER_KINDS; k++) {
		if (!e->want[k] || e->pid[k] != 0)
			continue;
		if (due[k] == 0)
			due[k] = now + e->pause[k];
		if (due[k] <= now) {
			due[k] = 0;
			engine_start(e, k, mask);
		} else if (wait == -1 || due[k] - now < wait)
			wait = (int)(due[k] - now);
	}
	return wait;
}

int
cli_run(struct cli *c)
{
	struct engine	 e;
	sigset_t	 mask;
	siginfo_t	 si;
	time_t		 due[WORKER_KINDS] = { 0 };
	int		 wait, sig, rc = 0;

	memset(&e, 0, sizeof(e));
	log_init("quire");
	e.intake.conninfo = e.runner.conninfo = e.out.conninfo = c->conninfo;
	if (engine_configure(&e, c) == -1)
		return 2;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	log_info("quire_started", "host=%s stages=%s lmtp=%s:%d relay=%s:%d",
	    e.host, e.stages, e.intake.host, e.intake.port,
	    e.out.relay_host, e.out.relay_port);
	for (;;) {
		wait = engine_fill(&e, &mask, due);
		if (wait >= 0) {
			struct timespec ts = { wait, 0 };
			sig = sigtimedwait(&mask, &si, &ts);
		} else
			sig = sigwaitinfo(&mask, &si);
		if (sig == SIGCHLD && engine_reap(&e)) {
			rc = 1;
			break;
		} else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
			break;
	}
	engine_stop(&e);
	return rc;
}
