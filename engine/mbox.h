/*
 * mbox: writing messages in mboxrd form.
 */
#ifndef QUIRE_MBOX_H
#define QUIRE_MBOX_H

#include <stddef.h>
#include <stdio.h>
#include <sys/uio.h>
#include <time.h>

/*
 * Write one message made of the given parts: a "From " separator line
 * (sender, or MAILER-DAEMON if empty; the date in asctime form, UTC),
 * then the message with CRLF line ends written as LF (mbox is a Unix
 * format, and formail and mail readers expect LF), every line matching
 * ^>*From  given one more '>', a line end if the message lacks a final
 * one, and a blank line.  Returns 0, or -1 on a write error.
 */
int	mbox_write(FILE *, const char *sender, time_t when,
	    const struct iovec *parts, int nparts);

#endif
