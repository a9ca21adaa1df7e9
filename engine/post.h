/*
 * post: what the stages read about a post and its list.
 */
#ifndef QUIRE_POST_H
#define QUIRE_POST_H

#include <stddef.h>

struct db;
struct db_res;

struct post {
	long long	 id;
	int		 list_id;
	char		 subaddress[16];
	const char	*raw;		/* message bytes, as received */
	size_t		 raw_len;
	const char	*envelope_from;
	const char	*sender;	/* NULL until the in stage */
	int		 post_number;
	struct db_res	*res;		/* owns the bytes above */
};

struct list_conf {
	int		 id;
	char		*fqdn;
	char		*name;
	char		*host;
	char		*display_name;
	char		*description;
	char		*subject_prefix;
	char		*archive_policy;
	char		*archive_url;
	char		*reply_goes_to_list;
	char		*reply_to_address;
	char		*default_member_action;
	char		*default_nonmember_action;
	char		*personalize;
	int		 include_rfc2369_headers;
	int		 allow_list_posts;
	int		 first_strip_reply_to;
	int		 emergency;
	int		 max_message_size;	/* KB, 0 = none */
	int		 verp_delivery_interval;
	int		 max_recipients;
	int		 anonymous_list;
	struct db_res	*res;
};

int	post_load(struct db *, long long id, struct post *);
void	post_free(struct post *);
int	list_conf_load(struct db *, int id, struct list_conf *);
void	list_conf_free(struct list_conf *);

#endif
