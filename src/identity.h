/*
 * identity.h
 *	  What the identity glue files share: the rules of cdp.identity_rules as
 *	  cached by identity.c, identifier normalization, and the stitching of
 *	  events into the graph (stitch.c).
 */
#ifndef CDP_IDENTITY_H
#define CDP_IDENTITY_H

#include "cdp.h"
#include "idgraph.h"

#include "utils/jsonb.h"
#include "utils/timestamp.h"

/*
 * Key of the transaction-level advisory lock that serializes stitching and
 * rebuilds ("cdp", "id").
 */
#define STITCH_LOCK_KEY1 0x636470
#define STITCH_LOCK_KEY2 0x6964

/* One rule of cdp.identity_rules. */
typedef struct CdpRule
{
	char	   *kind;
	int			priority;
	int			limit;			/* max_per_profile, 0: none */
	int			normalizer;		/* CDP_NORM_* */
	bool		merges;
} CdpRule;

#define CDP_NORM_EMAIL	0
#define CDP_NORM_PHONE	1
#define CDP_NORM_TRIM	2
#define CDP_NORM_LOWER	3

/* Rules sorted by kind (C collation), loaded if stale; *n gets their number. */
extern const CdpRule *cdp_identity_rules(int *n);

/* Whether an unmerge in force keeps some identifiers apart. */
extern bool cdp_identity_has_unmerges(void);

/* Index of the rule of a kind (len bytes), or -1. */
extern int	cdp_identity_find_rule(const char *kind, int len);

/* Normalized value of an identifier under its rule, or NULL with *why. */
extern char *cdp_identity_normalize(int rule_index, const char *raw, int len, const char **why);
extern bool cdp_identity_erased(const char *kind, int kind_len, const char *raw, int len);

/* An empty graph under the current rules, freed with the memory context. */
extern CdpIdGraph *cdp_identity_graph(CdpNewLabel new_label, void *arg);

/* Stitches events given in event_id order (stitch.c). */
extern void cdp_stitch_events(int n, const int64 *event_ids, const TimestampTz *occurred,
							  Jsonb *const *identifiers);

/* qsort comparator of int64 values. */
extern int	cdp_compare_int64(const void *a, const void *b);


#endif							/* CDP_IDENTITY_H */
