/*
 * mbox: mboxrd writing.  The parts are joined first, because a line, a
 * CRLF pair or a "From " may straddle two of them.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mbox.h"

/* At a line start: does ">>>From " (any number of '>') begin here? */
static int
mbox_needs_quote(const char *p, size_t len)
{
	size_t	 i = 0;

	while (i < len && p[i] == '>')
		i++;
	return len - i >= 5 && memcmp(p + i, "From ", 5) == 0;
}

static int
mbox_body(FILE *f, const char *p, size_t len)
{
	size_t	 start = 0, i;

	for (i = 0; i < len; i++) {
		int line_start = i == 0 || p[i - 1] == '\n';

		if (line_start && mbox_needs_quote(p + i, len - i)) {
			if (fwrite(p + start, 1, i - start, f) != i - start ||
			    fputc('>', f) == EOF)
				return -1;
			start = i;
		}
		/* CRLF becomes LF: drop the CR. */
		if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') {
			if (fwrite(p + start, 1, i - start, f) != i - start)
				return -1;
			start = i + 1;
		}
	}
	if (fwrite(p + start, 1, len - start, f) != len - start)
		return -1;
	if ((len == 0 || p[len - 1] != '\n') && fputc('\n', f) == EOF)
		return -1;
	return 0;
}

int
mbox_write(FILE *f, const char *sender, time_t when,
    const struct iovec *parts, int nparts)
{
	struct buf	 msg = { 0 };
	struct tm	 tm;
	char		 date[32];
	int		 rc = 0;

	for (int i = 0; i < nparts && rc == 0; i++)
		rc = buf_add(&msg, parts[i].iov_base, parts[i].iov_len);
	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	if (rc == 0 && fprintf(f, "From %s %s\n", sender && *sender ? sender :
	    "MAILER-DAEMON", date) < 0)
		rc = -1;
	if (rc == 0)
		rc = mbox_body(f, msg.p ? msg.p : "", msg.len);
	if (rc == 0 && fputc('\n', f) == EOF)
		rc = -1;
	buf_free(&msg);
	return rc;
}
