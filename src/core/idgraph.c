/*
 * idgraph.c
 *	  The identity graph (see idgraph.h for the rules).
 *
 * Nodes are numbered 0..n-1.  parent[] is the union-find forest (a root is
 * its own parent); a node in no profile has parent -1.  For each root,
 * size[] is its tree size, label[] the profile label and counts[root *
 * n_kinds + k] the values of kind k.  Arrays grow by doubling.
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
	return top;
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
		if (g->limits[k] > 0 && g->counts[(size_t) p * nk + k] >= g->limits[k])
		{
			res.outcome = CDP_LINK_LIMIT;
			res.kind = k;
			res.other = cdp_idgraph_ensure_profile(g, node);
			return res;
		}
		g->parent[node] = p;
		g->size[p] += 1;
		g->counts[(size_t) p * nk + k] += 1;
		res.outcome = CDP_LINK_JOINED;
		return res;
	}

	res.other = g->label[q];
	if ((g->kind[anchor] != PROFILE_NODE && !g->merges[g->kind[anchor]]) || !g->merges[g->kind[node]])
	{
		res.outcome = CDP_LINK_NO_MERGE;
		return res;
	}
	for (k = 0; k < nk; k++)
	{
		if (g->limits[k] > 0 &&
			(int64_t) g->counts[(size_t) p * nk + k] + g->counts[(size_t) q * nk + k] > g->limits[k])
		{
			res.outcome = CDP_LINK_LIMIT;
			res.kind = k;
			return res;
		}
	}
	res.absorbed = g->label[p] < g->label[q] ? g->label[q] : g->label[p];
	res.survivor = g->label[unite(g, p, q)];
	res.other = 0;
	res.outcome = CDP_LINK_MERGED;
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
