/*
 * mbox: mboxrd writing.  Quoting is decided at each line start, which may
 * fall in any part, so the parts are scanned as one stream.
 */
#include <string.h>

#include "mbox.h"

struct mbox_state {
	int	 at_line_start;
	char	 last;
};

/* At a line start: does ">>>From " (any number of '>') begin here?  The
 * look-ahead may cross into the next parts. */
static int
mbox_needs_quote(const struct iovec *parts, int nparts, int part, size_t off)
{
	static const char from[] = "From ";
	size_t	 matched = 0;
	int	 seen_from = 0;

	for (int p = part; p < nparts; p++, off = 0) {
		const char *b = parts[p].iov_base;

		for (size_t i = off; i < parts[p].iov_len; i++) {
			if (!seen_from && matched == 0 && b[i] == '>')
				continue;
			seen_from = 1;
			if (b[i] != from[matched])
				return 0;
			if (++matched == sizeof(from) - 1)
				return 1;
		}
	}
	return 0;
}

int
mbox_write(FILE *f, const char *sender, time_t when,
    const struct iovec *parts, int nparts)
{
	struct mbox_state st = { 1, '\n' };
	struct tm	 tm;
	char		 date[32];

	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	if (fprintf(f, "From %s %s\n", sender && *sender ? sender :
	    "MAILER-DAEMON", date) < 0)
		return -1;
	for (int p = 0; p < nparts; p++) {
		const char *b = parts[p].iov_base;
		size_t	 start = 0;

		for (size_t i = 0; i < parts[p].iov_len; i++) {
			if (st.at_line_start &&
			    mbox_needs_quote(parts, nparts, p, i)) {
				if (fwrite(b + start, 1, i - start, f) !=
				    i - start || fputc('>', f) == EOF)
					return -1;
				start = i;
			}
			st.at_line_start = b[i] == '\n';
		}
		if (fwrite(b + start, 1, parts[p].iov_len - start, f) !=
		    parts[p].iov_len - start)
			return -1;
		if (parts[p].iov_len > 0)
			st.last = b[parts[p].iov_len - 1];
	}
	if (st.last != '\n' && fputc('\n', f) == EOF)
		return -1;
	return fputc('\n', f) == EOF ? -1 : 0;
}
