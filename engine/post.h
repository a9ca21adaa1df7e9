/*
 * post: what the stages read about a post and its list.
 *
 * The runner's claim query selects POST_COLUMNS and LIST_COLUMNS next to
 * each queue row (binary results), so a stage starts with everything it
 * reads already in memory; the fields point into that result.  Message
 * bytes over POST_INLINE_MAX are left out of the claim, so a batch of
 * large messages cannot fill memory, and fetched by post_raw() when a
 * stage needs them.
 */
#ifndef QUIRE_POST_H
#define QUIRE_POST_H

#include <stddef.h>

struct db;
struct db_res;

#define POST_INLINE_MAX	"1048576"

/* FROM quire.post p JOIN quire.message m ... POST_SENDER_JOIN */
#define POST_COLUMNS \
	"p.id, p.list_id, p.subaddress," \
	" CASE WHEN length(m.raw) <= " POST_INLINE_MAX " THEN m.raw END," \
	" length(m.raw), m.envelope_from, p.sender," \
	" coalesce(p.post_number, 0), coalesce(sm.is_member, 0)," \
	" coalesce(sm.action, '')"
#define POST_NCOLUMNS	10

/* The sender's standing on the list: a poster may hold several roles,
 * and the most trusted one counts. */
#define POST_SENDER_JOIN \
	" LEFT JOIN LATERAL (SELECT (m.role <> 'nonmember')::int AS is_member," \
	"   coalesce(m.moderation_action, '') AS action" \
	"   FROM quire.member m JOIN quire.address a ON a.id = m.address_id" \
	"  WHERE m.list_id = p.list_id AND a.email = p.sender" \
	"  ORDER BY array_position(ARRAY['owner', 'moderator', 'member'," \
	"    'nonmember'], m.role) LIMIT 1) sm ON true"

#define LIST_COLUMNS \
	"ls.fqdn_listname, ls.list_name, ls.mail_host, ls.display_name," \
	" ls.description, ls.subject_prefix, ls.archive_policy," \
	" ls.archive_url, ls.reply_goes_to_list, ls.reply_to_address," \
	" ls.default_member_action, ls.default_nonmember_action," \
	" ls.personalize, ls.include_rfc2369_headers::int," \
	" ls.allow_list_posts::int, ls.first_strip_reply_to::int," \
	" ls.emergency::int, ls.max_message_size, ls.verp_delivery_interval," \
	" ls.max_recipients, ls.anonymous_list::int"
#define LIST_NCOLUMNS	21

struct post {
	long long	 id;
	int		 list_id;
	char		 subaddress[16];
	const char	*raw;		/* message bytes, or NULL: post_raw */
	size_t		 raw_len;
	const char	*envelope_from;
	const char	*sender;	/* NULL until the in stage */
	int		 post_number;
	int		 sender_is_member; /* member, owner or moderator */
	const char	*sender_action;	/* their own moderation action, or "" */
	struct db_res	*raw_res;	/* owns raw when post_raw fetched it */
};

struct list_conf {
	int		 id;
	const char	*fqdn;
	const char	*name;
	const char	*host;
	const char	*display_name;
	const char	*description;
	const char	*subject_prefix;
	const char	*archive_policy;
	const char	*archive_url;
	const char	*reply_goes_to_list;
	const char	*reply_to_address;
	const char	*default_member_action;
	const char	*default_nonmember_action;
	const char	*personalize;
	int		 include_rfc2369_headers;
	int		 allow_list_posts;
	int		 first_strip_reply_to;
	int		 emergency;
	int		 max_message_size;	/* KB, 0 = none */
	int		 verp_delivery_interval;
	int		 max_recipients;
	int		 anonymous_list;
};

/* Fill from a claim result row, columns starting at `col'. */
void	post_from_res(const struct db_res *, int row, int col, struct post *);
void	list_conf_from_res(const struct db_res *, int row, int col,
	    int list_id, struct list_conf *);
/* Make p->raw available (fetching it if the claim left it out): 0/-1. */
int	post_raw(struct db *, struct post *);
void	post_free(struct post *);

#endif
