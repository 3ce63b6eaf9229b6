/*
 * idgraph.h
 *	  The identity graph: identifiers grouped into profiles by links, under
 *	  a limit on how many values of each kind one profile may hold, and a
 *	  per-kind switch saying whether a link may merge two profiles.
 *
 * One greedy algorithm serves incremental stitching and the full rebuild,
 * so both give the same partition when they see links in the same order
 * (event_id order).  A link joins an identifier to an anchor's profile:
 *  - an identifier in no profile joins it if the profile holds fewer values
 *	  of its kind than the limit, else it gets a profile of its own (LIMIT);
 *  - an identifier in another profile merges the two if both kinds may merge
 *	  (else NO_MERGE), no kind of which both hold values would exceed its
 *	  limit (else LIMIT), and no pair of nodes declared apart would end in
 *	  one profile (else APART); the profile with the smaller label (the
 *	  older) survives.
 * A merge by hand (cdp_idgraph_merge) ignores the merge switches, and may
 * also be forced past the limits: a forced profile can hold more values of
 * a kind than its limit, and then accepts no further value of that kind.
 * Pairs declared apart (cdp.unmerge) are never joined, by link or by hand.
 * Counts only grow, so a refused link stays refused: replaying the first
 * link of each pair gives the same partition as replaying every event.
 *
 * Profiles are union-find sets of nodes (path halving, union by size); each
 * root carries the profile's label and its count of values per kind.  A
 * stored profile can be brought in with its label and counts and without
 * its nodes, for incremental work on a small part of a large graph.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#ifndef CDP_IDGRAPH_H
#define CDP_IDGRAPH_H

#include <stdint.h>

#define CDP_IDGRAPH_MAX_KINDS 64

typedef struct CdpIdGraph CdpIdGraph;

typedef enum CdpLinkOutcome
{
	CDP_LINK_SAME = 0,			/* already in the anchor's profile */
	CDP_LINK_JOINED,			/* an identifier in no profile joined it */
	CDP_LINK_MERGED,			/* two profiles became one */
	CDP_LINK_LIMIT,				/* refused: a kind would exceed its limit */
	CDP_LINK_NO_MERGE,			/* refused: a kind that may not merge profiles */
	CDP_LINK_APART				/* refused: the two were declared apart */
} CdpLinkOutcome;

typedef struct CdpLink
{
	CdpLinkOutcome outcome;
	int64_t		survivor;		/* the anchor's profile after the link */
	int64_t		absorbed;		/* MERGED: the profile merged away */
	int64_t		other;			/* refused: the identifier's profile (0 if none) */
	int			kind;			/* LIMIT: the kind over its limit */
} CdpLink;

/* Supplies the label of a new profile. */
typedef int64_t (*CdpNewLabel) (void *arg);

/*
 * Creates a graph for n_kinds kinds: limits[k] values of kind k at most per
 * profile (0 or less: no limit), merges[k] nonzero if a link through kind k
 * may merge two profiles.  NULL when out of memory or n_kinds is out of range.
 */
extern CdpIdGraph *cdp_idgraph_create(int n_kinds, const int *limits, const unsigned char *merges,
									  CdpNewLabel new_label, void *arg);
extern void cdp_idgraph_free(CdpIdGraph *g);

/* Adds an identifier of a kind, in no profile yet; its node number, or -1. */
extern int32_t cdp_idgraph_add_node(CdpIdGraph *g, int kind);

/*
 * Brings in a stored profile: its label and its number of values per kind
 * (n_kinds entries).  Returns a node standing for it, or -1.
 */
extern int32_t cdp_idgraph_add_profile(CdpIdGraph *g, int64_t label, const int *counts);

/*
 * Puts a node in no profile into the profile of profile_node without
 * counting it (it is already in that profile's counts).
 */
extern void cdp_idgraph_place(CdpIdGraph *g, int32_t node, int32_t profile_node);

/*
 * Makes sure a node has a profile: one of its own, with a new label, if it
 * has none.  Returns the label.
 */
extern int64_t cdp_idgraph_ensure_profile(CdpIdGraph *g, int32_t node);

/* Links node to the profile of anchor (which must have one). */
extern CdpLink cdp_idgraph_link(CdpIdGraph *g, int32_t anchor, int32_t node);

/*
 * Merges the profiles of nodes a and b by hand (a's profile survives if it
 * is the older); both get a profile first if they have none.  Merge
 * switches do not apply; limits apply unless force is nonzero.
 */
extern CdpLink cdp_idgraph_merge(CdpIdGraph *g, int32_t a, int32_t b, int force);

/*
 * Declares that nodes a and b must never be in one profile.  Returns 0 if
 * they already are (or on bad arguments or out of memory), 1 otherwise.
 */
extern int	cdp_idgraph_keep_apart(CdpIdGraph *g, int32_t a, int32_t b);

/* Label of a node's profile, 0 if it has none. */
extern int64_t cdp_idgraph_profile(CdpIdGraph *g, int32_t node);

/* Number of values of a kind in a node's profile. */
extern int	cdp_idgraph_count(CdpIdGraph *g, int32_t node, int kind);

/* Number of nodes. */
extern int32_t cdp_idgraph_size(const CdpIdGraph *g);

#endif							/* CDP_IDGRAPH_H */
