/*
 * msg_addr: addresses in header fields (RFC 5322 address lists, with the
 * obsolete forms real mail still uses) and in SMTP paths.
 */
#ifndef QUIRE_MSG_ADDR_H
#define QUIRE_MSG_ADDR_H

#include <stddef.h>

struct msg_addr {
	char	*display;	/* display name as written, unquoted; or NULL */
	char	*addr;		/* local@domain, domain lowercased; or NULL */
};

struct msg_addr_list {
	struct msg_addr	*v;
	size_t		 n;
};

/* Parse an unfolded header value (From, To, Cc, Reply-To, Sender).
 * Groups are flattened; comments dropped; entries with no usable
 * addr-spec are skipped.  Returns the count found, -1 on ENOMEM.
 *
 * The list is always set (empty for NULL or on ENOMEM); free it with
 * msg_addr_list_free.  Each display and addr is malloc'd.  The display
 * name is unquoted and unescaped, its words joined by one space where the
 * value had whitespace; encoded words stay encoded.  A comment stands in
 * for a missing display name ("a@b (Name)").  Obsolete routes are
 * dropped.  Junk is read as meant where cheap: "Name a@b" gives display
 * "Name"; an unclosed '<' ends at the next comma; unterminated quotes,
 * comments and literals run to the end of the value. */
int	msg_addr_parse_list(const char *value, struct msg_addr_list *);
void	msg_addr_list_free(struct msg_addr_list *);

/* The first address of a header value (as msg_addr_parse_list finds
 * it), lowercased, malloc'd; or NULL (none, or ENOMEM). */
char	*msg_addr_first(const char *value);

/* Lowercase copy of an address; NULL unless it has exactly one '@' with a
 * non-empty local part and domain and no space or control byte. */
char	*msg_addr_normalize(const char *);

/* Split a list recipient "name-suffix+verp@domain" as Mailman does: the
 * address is lowercased, anything from the first '+' in the local part is
 * dropped, and the local part is split at its last '-'.  `local' gets the
 * whole local part (without +tail) and `suffix' the part after the last
 * '-' (empty if none).  Returns 0, or -1 if it is not an address.
 *
 * "Not an address" is as msg_addr_normalize has it, after one enclosing
 * pair of angle brackets is dropped, or an empty local part once the
 * +tail is gone.  A buffer too small for its part also gives -1; each
 * output is NUL-terminated. */
int	msg_addr_split_recipient(const char *addr, char *local, size_t,
	    char *suffix, size_t, char *domain, size_t);

#endif
