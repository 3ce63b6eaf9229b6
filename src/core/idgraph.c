/*
 * idgraph.c
 *	  The identity graph (see idgraph.h for the rules).
 *
 * Nodes are numbered 0..n-1.  parent[] is the union-find forest (a root is
 * its own parent); a node in no profile has parent -1.  For each root,
 * size[] is its tree size, label[] the profile label and counts[root *
 * n_kinds + k] the values of kind k.  Arrays grow by doubling.
 *
 * Pairs declared apart are kept as lists of entries (the other node of the
 * pair), one list per root (or per node in no profile), concatenated when
 * two roots unite; each pair has an entry on both sides, so checking one
 * side's list finds every pair between two profiles.  The lists are
 * allocated with the first pair: most graphs have none.
 */
#include "idgraph.h"

#include <stdlib.h>
#include <string.h>

struct CdpIdGraph
{
	int			n_kinds;
	int			limits[CDP_IDGRAPH_MAX_KINDS];
	unsigned char merges[CDP_IDGRAPH_MAX_KINDS];
	CdpNewLabel new_label;
	void	   *arg;
	int32_t		n;
	int32_t		cap;
	int32_t    *parent;
	int32_t    *size;
	unsigned char *kind;		/* kind of an identifier node; 255 for a profile stand-in */
	int64_t    *label;
	int32_t    *counts;
	int32_t    *apart_head;		/* per node: first entry of its list, -1 */
	int32_t    *apart_tail;		/* per node: last entry of its list, -1 */
	struct
	{
		int32_t		other;		/* the node it must stay apart from */
		int32_t		next;		/* next entry of the list, -1 */
	}		   *apart;
	int32_t		n_apart;
	int32_t		cap_apart;
};

#define PROFILE_NODE 255

/* Creates an empty graph. */
CdpIdGraph *
cdp_idgraph_create(int n_kinds, const int *limits, const unsigned char *merges,
				   CdpNewLabel new_label, void *arg)
{
	CdpIdGraph *g;

	if (n_kinds < 1 || n_kinds > CDP_IDGRAPH_MAX_KINDS || new_label == NULL)
		return NULL;
	g = calloc(1, sizeof(CdpIdGraph));
	if (g == NULL)
		return NULL;
	g->n_kinds = n_kinds;
	memcpy(g->limits, limits, sizeof(int) * n_kinds);
	memcpy(g->merges, merges, n_kinds);
	g->new_label = new_label;
	g->arg = arg;
	return g;
}

/* Frees a graph. */
void
cdp_idgraph_free(CdpIdGraph *g)
{
	if (g == NULL)
		return;
	free(g->parent);
	free(g->size);
	free(g->kind);
	free(g->label);
	free(g->counts);
	free(g->apart_head);
	free(g->apart_tail);
	free(g->apart);
	free(g);
}

/* Makes room for one more node; 0 when out of memory. */
static int
grow(CdpIdGraph *g)
{
	int32_t		cap;
	void	   *p;

	if (g->n < g->cap)
		return 1;
	if (g->cap >= INT32_MAX / 2)
		return 0;
	cap = g->cap == 0 ? 1024 : g->cap * 2;
#define GROW(field, type, count) \
	do { \
		p = realloc(g->field, sizeof(type) * (size_t) (count)); \
		if (p == NULL) \
			return 0; \
		g->field = p; \
	} while (0)
	GROW(parent, int32_t, cap);
	GROW(size, int32_t, cap);
	GROW(kind, unsigned char, cap);
	GROW(label, int64_t, cap);
	GROW(counts, int32_t, (size_t) cap * g->n_kinds);
	if (g->apart_head != NULL)
	{
		GROW(apart_head, int32_t, cap);
		GROW(apart_tail, int32_t, cap);
	}
#undef GROW
	g->cap = cap;
	return 1;
}

/* Appends a node; -1 when out of memory. */
static int32_t
new_node(CdpIdGraph *g, unsigned char kind)
{
	int32_t		v;

	if (!grow(g))
		return -1;
	v = g->n++;
	g->parent[v] = -1;
	g->size[v] = 1;
	g->kind[v] = kind;
	g->label[v] = 0;
	memset(&g->counts[(size_t) v * g->n_kinds], 0, sizeof(int32_t) * g->n_kinds);
	if (g->apart_head != NULL)
		g->apart_head[v] = g->apart_tail[v] = -1;
	return v;
}

/* Adds an identifier node in no profile. */
int32_t
cdp_idgraph_add_node(CdpIdGraph *g, int kind)
{
	if (kind < 0 || kind >= g->n_kinds)
		return -1;
	return new_node(g, (unsigned char) kind);
}

/* Root of a node's profile, or -1 if it has none (path halving). */
static int32_t
find(CdpIdGraph *g, int32_t v)
{
	if (v < 0 || v >= g->n || g->parent[v] < 0)
		return -1;
	while (g->parent[v] != v)
	{
		g->parent[v] = g->parent[g->parent[v]];
		v = g->parent[v];
	}
	return v;
}

/* Appends the apart list of node from to that of node to. */
static void
move_apart(CdpIdGraph *g, int32_t to, int32_t from)
{
	if (g->apart_head == NULL || g->apart_head[from] < 0 || to == from)
		return;
	if (g->apart_head[to] < 0)
		g->apart_head[to] = g->apart_head[from];
	else
		g->apart[g->apart_tail[to]].next = g->apart_head[from];
	g->apart_tail[to] = g->apart_tail[from];
	g->apart_head[from] = g->apart_tail[from] = -1;
}

/* Whether a node on owner's apart list is in the profile rooted at root. */
static int
kept_apart(CdpIdGraph *g, int32_t owner, int32_t root)
{
	int32_t		e;

	if (g->apart_head == NULL)
		return 0;
	for (e = g->apart_head[owner]; e >= 0; e = g->apart[e].next)
		if (find(g, g->apart[e].other) == root)
			return 1;
	return 0;
}

/* Adds an entry "apart from other" to owner's list; 0 when out of memory. */
static int
add_apart(CdpIdGraph *g, int32_t owner, int32_t other)
{
	int32_t		e;

	if (g->n_apart == g->cap_apart)
	{
		int32_t		cap = g->cap_apart == 0 ? 16 : g->cap_apart * 2;
		void	   *p = realloc(g->apart, sizeof(*g->apart) * (size_t) cap);

		if (p == NULL || cap <= g->cap_apart)
			return 0;
		g->apart = p;
		g->cap_apart = cap;
	}
	e = g->n_apart++;
	g->apart[e].other = other;
	g->apart[e].next = -1;
	if (g->apart_head[owner] < 0)
		g->apart_head[owner] = e;
	else
		g->apart[g->apart_tail[owner]].next = e;
	g->apart_tail[owner] = e;
	return 1;
}

/* Declares two nodes apart. */
int
cdp_idgraph_keep_apart(CdpIdGraph *g, int32_t a, int32_t b)
{
	int32_t		ra = find(g, a);
	int32_t		rb = find(g, b);

	if (a < 0 || a >= g->n || b < 0 || b >= g->n || a == b || (ra >= 0 && ra == rb))
		return 0;
	if (g->apart_head == NULL)
	{
		int32_t		v;

		g->apart_head = malloc(sizeof(int32_t) * (size_t) g->cap);
		g->apart_tail = malloc(sizeof(int32_t) * (size_t) g->cap);
		if (g->apart_head == NULL || g->apart_tail == NULL)
		{
			free(g->apart_head);
			free(g->apart_tail);
			g->apart_head = g->apart_tail = NULL;
			return 0;
		}
		for (v = 0; v < g->n; v++)
			g->apart_head[v] = g->apart_tail[v] = -1;
	}
	return add_apart(g, ra >= 0 ? ra : a, b) && add_apart(g, rb >= 0 ? rb : b, a);
}

/* Brings in a stored profile with its label and counts. */
int32_t
cdp_idgraph_add_profile(CdpIdGraph *g, int64_t label, const int *counts)
{
	int32_t		v = new_node(g, PROFILE_NODE);
	int			k;

	if (v < 0)
		return -1;
	g->parent[v] = v;
	g->label[v] = label;
	for (k = 0; k < g->n_kinds; k++)
		g->counts[(size_t) v * g->n_kinds + k] = counts[k];
	return v;
}

/* Puts a node in no profile under a profile's root, without counting it. */
void
cdp_idgraph_place(CdpIdGraph *g, int32_t node, int32_t profile_node)
{
	int32_t		r = find(g, profile_node);

	if (r < 0 || node < 0 || node >= g->n || g->parent[node] >= 0)
		return;
	g->parent[node] = r;
	g->size[r] += 1;
	move_apart(g, r, node);
}

/* Gives a node in no profile a profile of its own. */
int64_t
cdp_idgraph_ensure_profile(CdpIdGraph *g, int32_t node)
{
	int32_t		r = find(g, node);

	if (r >= 0)
		return g->label[r];
	if (node < 0 || node >= g->n)
		return 0;
	g->parent[node] = node;
	g->label[node] = g->new_label(g->arg);
	if (g->kind[node] != PROFILE_NODE)
		g->counts[(size_t) node * g->n_kinds + g->kind[node]] = 1;
	return g->label[node];
}

/* Joins two roots: the larger tree takes the other; the older label survives. */
static int32_t
unite(CdpIdGraph *g, int32_t a, int32_t b)
{
	int64_t		keep = g->label[a] < g->label[b] ? g->label[a] : g->label[b];
	int32_t		top = a;
	int32_t		sub = b;
	int			k;

	if (g->size[b] > g->size[a])
	{
		top = b;
		sub = a;
	}
	g->parent[sub] = top;
	g->size[top] += g->size[sub];
	g->label[top] = keep;
	for (k = 0; k < g->n_kinds; k++)
		g->counts[(size_t) top * g->n_kinds + k] += g->counts[(size_t) sub * g->n_kinds + k];
	move_apart(g, top, sub);
	return top;
}

/*
 * Merges the profiles rooted at p (the anchor's) and q unless a pair kept
 * apart or (without force) a limit forbids it.  A kind only one of them
 * holds cannot break a limit: a forced profile over a limit can still take
 * profiles without values of that kind.
 */
static void
merge_roots(CdpIdGraph *g, int32_t p, int32_t q, int force, CdpLink *res)
{
	int			nk = g->n_kinds;
	int			k;

	res->other = g->label[q];
	if (kept_apart(g, p, q))
	{
		res->outcome = CDP_LINK_APART;
		return;
	}
	for (k = 0; k < nk && !force; k++)
	{
		int32_t		cp = g->counts[(size_t) p * nk + k];
		int32_t		cq = g->counts[(size_t) q * nk + k];

		if (g->limits[k] > 0 && cp > 0 && cq > 0 && (int64_t) cp + cq > g->limits[k])
		{
			res->outcome = CDP_LINK_LIMIT;
			res->kind = k;
			return;
		}
	}
	res->absorbed = g->label[p] < g->label[q] ? g->label[q] : g->label[p];
	res->survivor = g->label[unite(g, p, q)];
	res->other = 0;
	res->outcome = CDP_LINK_MERGED;
}

/* Links node to the anchor's profile under the rules. */
CdpLink
cdp_idgraph_link(CdpIdGraph *g, int32_t anchor, int32_t node)
{
	CdpLink		res = {CDP_LINK_SAME, 0, 0, 0, -1};
	int32_t		p = find(g, anchor);
	int32_t		q;
	int			nk = g->n_kinds;
	int			k;

	if (p < 0 || node < 0 || node >= g->n || g->kind[node] == PROFILE_NODE)
	{
		res.outcome = CDP_LINK_NO_MERGE;	/* misuse: nothing is changed */
		return res;
	}
	res.survivor = g->label[p];
	q = find(g, node);
	if (q == p)
		return res;

	if (q < 0)
	{
		k = g->kind[node];
		if (kept_apart(g, node, p))
			res.outcome = CDP_LINK_APART;
		else if (g->limits[k] > 0 && g->counts[(size_t) p * nk + k] >= g->limits[k])
		{
			res.outcome = CDP_LINK_LIMIT;
			res.kind = k;
		}
		else
		{
			g->parent[node] = p;
			g->size[p] += 1;
			g->counts[(size_t) p * nk + k] += 1;
			move_apart(g, p, node);
			res.outcome = CDP_LINK_JOINED;
			return res;
		}
		res.other = cdp_idgraph_ensure_profile(g, node);
		return res;
	}

	if ((g->kind[anchor] != PROFILE_NODE && !g->merges[g->kind[anchor]]) || !g->merges[g->kind[node]])
	{
		res.other = g->label[q];
		res.outcome = CDP_LINK_NO_MERGE;
		return res;
	}
	merge_roots(g, p, q, 0, &res);
	return res;
}

/* Merges two nodes' profiles by hand. */
CdpLink
cdp_idgraph_merge(CdpIdGraph *g, int32_t a, int32_t b, int force)
{
	CdpLink		res = {CDP_LINK_SAME, 0, 0, 0, -1};
	int32_t		p;
	int32_t		q;

	if (a < 0 || a >= g->n || b < 0 || b >= g->n)
	{
		res.outcome = CDP_LINK_NO_MERGE;	/* misuse: nothing is changed */
		return res;
	}
	cdp_idgraph_ensure_profile(g, a);
	cdp_idgraph_ensure_profile(g, b);
	p = find(g, a);
	q = find(g, b);
	res.survivor = g->label[p];
	if (p != q)
		merge_roots(g, p, q, force, &res);
	return res;
}

/* Label of a node's profile, 0 if none. */
int64_t
cdp_idgraph_profile(CdpIdGraph *g, int32_t node)
{
	int32_t		r = find(g, node);

	return r < 0 ? 0 : g->label[r];
}

/* Values of a kind in a node's profile. */
int
cdp_idgraph_count(CdpIdGraph *g, int32_t node, int kind)
{
	int32_t		r = find(g, node);

	if (r < 0 || kind < 0 || kind >= g->n_kinds)
		return 0;
	return g->counts[(size_t) r * g->n_kinds + kind];
}

/* Number of nodes. */
int32_t
cdp_idgraph_size(const CdpIdGraph *g)
{
	return g->n;
}
