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
 * between transactions and batches (stop.h).
 * XXX The LMTP worker still ends at once; a conversation cut there is
 * sent again by the MTA (a retry of a committed one is recognised), but
 * it should stop accepting and finish the transactions it has.
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
	    65535 || *b == '\0')
		return -1;
	return 0;
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

static int
env_int(const char *name, int def)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? atoi(v) : def;
}

static int
opt_int(struct cli *c, const char *name, int def)
{
	const char *v = cli_opt(c, name, NULL);

	return v != NULL ? atoi(v) : def;
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
	e->intake.max_size = (size_t)opt_int(c, "--max-size",
	    env_int("QUIRE_MAX_SIZE", 50 * 1024 * 1024));
	e->intake.max_rcpts = (size_t)opt_int(c, "--max-rcpts", 100);
	e->intake.max_clients = (size_t)opt_int(c, "--max-clients", 1000);
	e->intake.max_buffered = (size_t)opt_int(c, "--max-buffered", 0);
	e->intake.idle_timeout = opt_int(c, "--idle-timeout", 300);
	e->intake.data_timeout = opt_int(c, "--data-timeout", 300);
	e->intake.commit_timeout = opt_int(c, "--commit-timeout", 10);
	e->intake.db_connections = opt_int(c, "--lmtp-db-connections", 4);
	e->runner.max_attempts = opt_int(c, "--max-attempts", 5);
	e->runner.batch = opt_int(c, "--batch", 32);
	e->runner.retry_backoff = opt_int(c, "--stage-backoff", 1);
	e->runner.claim_lease = opt_int(c, "--claim-lease", 10);
	e->out.helo = e->intake.hostname;
	e->out.connections = opt_int(c, "--out-connections", 4);
	e->out.lease = opt_int(c, "--lease", env_int("QUIRE_LEASE", 600));
	e->out.retry_base = opt_int(c, "--retry-base",
	    env_int("QUIRE_RETRY_BASE", 60));
	e->out.retry_max = opt_int(c, "--retry-max", 3600);
	e->out.give_up = opt_int(c, "--give-up", 5 * 24 * 3600);
	e->out.smtp_timeout = opt_int(c, "--smtp-timeout", 60);
	e->pause_max = opt_int(c, "--restart-max", 30);
	if (e->pause_max < 0) {
		fprintf(stderr, "quire: --restart-max takes seconds, 0 or "
		    "more\n");
		return -1;
	}
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
