/*
 * log: one line per event on stderr.
 *
 *   ts=2026-12-04T18:00:00.123Z level=info event=lmtp_accept pid=42 k=v ...
 *
 * Callers pass the key=value part as a printf format.  Values that may hold
 * spaces, quotes or control bytes go through log_q(), which returns a
 * quoted, escaped copy in a rotating static buffer (valid until eight more
 * log_q calls).
 */
#ifndef QUIRE_LOG_H
#define QUIRE_LOG_H

#include <stddef.h>

enum log_level {
	LOG_DEBUG,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR
};

void		 log_init(const char *process_name);
void		 log_set_level(enum log_level);
int		 log_enabled(enum log_level);
void		 log_event(enum log_level, const char *event, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
const char	*log_q(const char *);
const char	*log_qn(const char *, size_t);

#define log_debug(ev, ...)	do { if (log_enabled(LOG_DEBUG)) \
	log_event(LOG_DEBUG, ev, __VA_ARGS__); } while (0)
#define log_info(ev, ...)	log_event(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)	log_event(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...)	log_event(LOG_ERROR, ev, __VA_ARGS__)

#endif
