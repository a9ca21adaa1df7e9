/*
 * decorate: the header block a list sends, built from the one it
 * received.  Pure: no database, no sockets.
 *
 * Fields the list does not change are copied byte for byte, in order;
 * the body is not touched at all (the caller sends it from the stored
 * message), so a DKIM body hash survives.
 */
#ifndef QUIRE_DECORATE_H
#define QUIRE_DECORATE_H

#include <stddef.h>

struct buf;

struct decorate_list {
	const char	*name;		/* "bench" */
	const char	*host;		/* "example.org" */
	const char	*description;	/* for List-Id; may be "" */
	const char	*subject_prefix; /* may be "" */
	const char	*archive_url;	/* "" for no List-Archive */
	const char	*reply_goes_to_list;
	const char	*reply_to_address;
	int		 first_strip_reply_to;
	int		 include_rfc2369_headers;
	int		 allow_list_posts;
	int		 archived;	/* archive_policy is not never */
};

/*
 * Write into out the new header block of message raw[0..len), blank line
 * included; *body_offset gets where the body starts in raw.  post_number
 * feeds %d in the prefix; message_id_seed names a Message-ID to add when
 * the message has none.  Returns 0, or -1 when out of memory.
 */
int	decorate_headers(const struct decorate_list *, const char *raw,
	    size_t len, long post_number, const char *message_id_seed,
	    struct buf *out, size_t *body_offset);

/* 1 if the message asks not to be archived (X-No-Archive, or
 * X-Archive: no). */
int	decorate_no_archive(const char *raw, size_t len);

/* The List-Id value: "Description <name.host>" or "<name.host>". */
int	decorate_list_id(const struct decorate_list *, struct buf *);

#endif
