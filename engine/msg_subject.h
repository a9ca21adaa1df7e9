/*
 * msg_subject: the list's subject prefix, as Mailman 3 applies it.
 */
#ifndef QUIRE_MSG_SUBJECT_H
#define QUIRE_MSG_SUBJECT_H

#include <stddef.h>

/*
 * Given the raw (unfolded, undecoded) Subject value or NULL, the list's
 * prefix (UTF-8, may contain %d or %05d-style for the post number) and the
 * post number, return the new Subject value, ready to write after
 * "Subject: " (RFC 2047-encoded if not ASCII, folded with `eol').
 *
 * Every occurrence of the prefix is removed (any number where %d stands),
 * a leading run of reply markers (Re, Aw, Sv, Vs, each optionally with
 * [n], each followed by ':') becomes one "Re: " after the prefix, and an
 * empty subject becomes "(no subject)".  `stripped', if not NULL, gets the
 * subject without prefix (UTF-8, malloc'd).  malloc'd; NULL on ENOMEM.
 *
 * Details: the subject is decoded (msg_encword_decode) before any of
 * this.  The prefix is matched case-sensitively, as Mailman does, and
 * also at the very end of the subject without its trailing whitespace;
 * markers are matched in any case.  The rest is trimmed, and "(no
 * subject)" follows "Re: " when only markers were left.  `stripped' is
 * that "Re: rest" text.  The result is plain, folded at whitespace to 78
 * columns, when it is printable ASCII and holds no encoded word a reader
 * would decode (decoding can yield one); otherwise its leading plain words
 * (normally the prefix and "Re:") stay plain and the rest becomes UTF-8
 * encoded words (msg_encword_encode).  `eol' NULL: no folding.  A NULL
 * or blank prefix leaves the subject alone (Mailman skips the handler):
 * the result is a copy of `raw' ("" for NULL), `stripped' its decoding.
 */
char	*msg_subject_prefix(const char *raw, const char *prefix,
	    long post_number, const char *eol, char **stripped);

#endif
