/*
 * log: key=value event lines on stderr.  The whole line is formatted into
 * one buffer and written with one write(2), so lines from several
 * processes sharing stderr do not interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	4096
#define LOG_Q_SLOTS	8
#define LOG_Q_MAX	512

static const char	*log_process = "quire";
static enum log_level	 log_min = LOG_INFO;

static const char *const log_names[] = {
	"debug", "info", "warn", "error"
};

void
log_init(const char *process_name)
{
	const char *env;

	if (process_name != NULL)
		log_process = process_name;
	env = getenv("QUIRE_LOG_LEVEL");
	if (env == NULL)
		return;
	for (size_t i = 0; i < sizeof(log_names) / sizeof(*log_names); i++)
		if (strcmp(env, log_names[i]) == 0)
			log_min = (enum log_level)i;
}

void
log_set_level(enum log_level level)
{
	log_min = level;
}

int
log_enabled(enum log_level level)
{
	return level >= log_min;
}

void
log_event(enum log_level level, const char *event, const char *fmt, ...)
{
	char		 line[LOG_LINE_MAX];
	struct timespec	 ts;
	struct tm	 tm;
	va_list		 ap;
	int		 n, m;

	if (level < log_min)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
	    "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s "
	    "proc=%s pid=%ld ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, log_names[level],
	    event, log_process, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	while (n > 0 && line[n - 1] == ' ')
		n--;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

/* Values are quoted when they hold anything a grep for k=v would trip on;
 * control bytes and non-ASCII are written as \xNN so a line stays a line. */
const char *
log_qn(const char *s, size_t len)
{
	static char	 slots[LOG_Q_SLOTS][LOG_Q_MAX];
	static int	 next;
	char		*out = slots[next++ % LOG_Q_SLOTS];
	size_t		 o = 0, i;
	int		 plain = len > 0;

	if (s == NULL)
		return "-";
	for (i = 0; i < len && plain; i++) {
		unsigned char c = s[i];
		if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '=')
			plain = 0;
	}
	if (plain && len < LOG_Q_MAX) {
		memcpy(out, s, len);
		out[len] = '\0';
		return out;
	}
	out[o++] = '"';
	/* Room is kept for the longest escape (4), "..." and the closing
	 * quote and NUL (5). */
	for (i = 0; i < len && o + 4 <= LOG_Q_MAX - 5; i++) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = c;
		} else if (c < ' ' || c >= 0x7f) {
			o += snprintf(out + o, LOG_Q_MAX - o, "\\x%02x", c);
		} else
			out[o++] = c;
	}
	if (i < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

const char *
log_q(const char *s)
{
	return log_qn(s, s == NULL ? 0 : strlen(s));
}
