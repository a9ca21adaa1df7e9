/*
 * stage: the in-database pipeline stages.
 *
 * A stage is a function from one claimed queue row to SQL effects, run
 * inside the runner's transaction.  It finds the post and its list in
 * ctx, already loaded by the claim; it says where the row goes next with
 * stage_advance() or stage_finish(), and the runner moves every row of
 * the batch in one statement just before COMMIT.  It returns 0, or -1
 * with ctx->error set, after which the runner rolls the transaction back
 * and counts the failure against the row (see quire.queue_fail).
 */
#ifndef QUIRE_STAGE_H
#define QUIRE_STAGE_H

struct db;
struct db_batch;
struct db_params;
struct list_conf;
struct post;

enum stage_id {
	STAGE_IN,
	STAGE_POSTING,
	STAGE_DECORATE,
	STAGE_ARCHIVE,
	STAGE_COUNT
};

struct stage_ctx {
	struct db	*db;
	long long	 queue_id;
	long long	 post_id;
	int		 attempts;	/* tries of the row, this one too */
	struct post	*post;
	struct list_conf *list;
	const char	*next;		/* next stage, or NULL: done */
	struct db_batch	*writes;	/* sent with the COMMIT */
	char		 error[256];
	/* What the row's outcome was, logged by the runner only once the
	 * batch has committed: a batch rolled back is done again. */
	const char	*event;
	char		 event_fields[192];
};

typedef int	(*stage_fn)(struct stage_ctx *);

struct stage_def {
	const char	*name;		/* the queue.stage value */
	const char	*channel;	/* its NOTIFY channel */
	stage_fn	 run;
};

extern const struct stage_def stage_defs[STAGE_COUNT];

/* Index of a stage by name, or -1. */
int	stage_lookup(const char *);

/* Log event, with key=value fields, if and when the batch commits. */
void	stage_event(struct stage_ctx *, const char *event, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));

/* The row moves to stage `next' at commit. */
int	stage_advance(struct stage_ctx *, const char *next);
/* The post has reached its end here: the row is deleted at commit. */
int	stage_finish(struct stage_ctx *);
/* A statement whose result the stage does not need: it is sent with the
 * batch's COMMIT, in the same round trip, in order. */
int	stage_write(struct stage_ctx *, const char *sql,
	    const struct db_params *);
/* Set the post's status and reason (held, discarded) and finish. */
int	stage_settle(struct stage_ctx *, const char *status,
	    const char *reason);
/* Record the database's error as the stage's and return -1. */
int	stage_db_error(struct stage_ctx *, const char *what);
int	stage_errorf(struct stage_ctx *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

int	stage_in(struct stage_ctx *);
int	stage_posting(struct stage_ctx *);
int	stage_decorate(struct stage_ctx *);
int	stage_archive(struct stage_ctx *);

#endif
