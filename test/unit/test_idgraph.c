/*
 * test_idgraph.c
 *	  Unit tests of src/core/idgraph.c: the linking rules, and that
 *	  incremental work on stored profiles gives the same partition as a
 *	  full replay.
 */
#include "unit.h"
#include "idgraph.h"

#include <stdint.h>
#include <stdlib.h>

const char *unit_suite = "idgraph";

enum
{
	CUSTOMER, EMAIL, COOKIE, IP, N_KINDS
};

static const int limits[N_KINDS] = {1, 2, 0, 0};
static const unsigned char merges[N_KINDS] = {1, 1, 1, 0};

static int64_t next_label;

/* Labels 100, 101, ... in order of need. */
static int64_t
counter(void *arg)
{
	(void) arg;
	return next_label++;
}

static CdpIdGraph *
new_graph(void)
{
	next_label = 100;
	return cdp_idgraph_create(N_KINDS, limits, merges, counter, NULL);
}

UNIT_TEST(create_checks_arguments)
{
	int			lim[1] = {0};
	unsigned char m[1] = {1};

	CHECK(cdp_idgraph_create(0, lim, m, counter, NULL) == NULL);
	CHECK(cdp_idgraph_create(CDP_IDGRAPH_MAX_KINDS + 1, lim, m, counter, NULL) == NULL);
	CHECK(cdp_idgraph_create(1, lim, m, NULL, NULL) == NULL);
}

UNIT_TEST(new_identifier_joins_anchor)
{
	CdpIdGraph *g = new_graph();
	int32_t		email = cdp_idgraph_add_node(g, EMAIL);
	int32_t		cookie = cdp_idgraph_add_node(g, COOKIE);
	CdpLink		l;

	CHECK_EQ_INT(cdp_idgraph_profile(g, email), 0);
	CHECK_EQ_INT(cdp_idgraph_ensure_profile(g, email), 100);
	CHECK_EQ_INT(cdp_idgraph_ensure_profile(g, email), 100);
	l = cdp_idgraph_link(g, email, cookie);
	CHECK_EQ_INT(l.outcome, CDP_LINK_JOINED);
	CHECK_EQ_INT(l.survivor, 100);
	CHECK_EQ_INT(cdp_idgraph_profile(g, cookie), 100);
	CHECK_EQ_INT(cdp_idgraph_count(g, email, COOKIE), 1);
	CHECK_EQ_INT(cdp_idgraph_count(g, email, EMAIL), 1);
	l = cdp_idgraph_link(g, email, cookie);
	CHECK_EQ_INT(l.outcome, CDP_LINK_SAME);
	CHECK_EQ_INT(cdp_idgraph_count(g, email, COOKIE), 1);
	cdp_idgraph_free(g);
}

UNIT_TEST(anonymous_profile_merges_at_login)
{
	CdpIdGraph *g = new_graph();
	int32_t		cookie = cdp_idgraph_add_node(g, COOKIE);
	int32_t		email = cdp_idgraph_add_node(g, EMAIL);
	CdpLink		l;

	/* browsing first: the cookie's own profile is the older one */
	CHECK_EQ_INT(cdp_idgraph_ensure_profile(g, cookie), 100);
	CHECK_EQ_INT(cdp_idgraph_ensure_profile(g, email), 101);
	l = cdp_idgraph_link(g, email, cookie);
	CHECK_EQ_INT(l.outcome, CDP_LINK_MERGED);
	CHECK_EQ_INT(l.survivor, 100);
	CHECK_EQ_INT(l.absorbed, 101);
	CHECK_EQ_INT(cdp_idgraph_profile(g, email), 100);
	CHECK_EQ_INT(cdp_idgraph_profile(g, cookie), 100);
	CHECK_EQ_INT(cdp_idgraph_count(g, cookie, EMAIL), 1);
	CHECK_EQ_INT(cdp_idgraph_count(g, cookie, COOKIE), 1);
	cdp_idgraph_free(g);
}

UNIT_TEST(limit_keeps_a_new_identifier_apart)
{
	CdpIdGraph *g = new_graph();
	int32_t		c1 = cdp_idgraph_add_node(g, CUSTOMER);
	int32_t		c2 = cdp_idgraph_add_node(g, CUSTOMER);
	CdpLink		l;

	cdp_idgraph_ensure_profile(g, c1);
	l = cdp_idgraph_link(g, c1, c2);
	CHECK_EQ_INT(l.outcome, CDP_LINK_LIMIT);
	CHECK_EQ_INT(l.kind, CUSTOMER);
	CHECK_EQ_INT(l.other, 101);
	CHECK_EQ_INT(cdp_idgraph_profile(g, c2), 101);
	CHECK_EQ_INT(cdp_idgraph_profile(g, c1), 100);
	cdp_idgraph_free(g);
}

UNIT_TEST(shared_device_does_not_merge_two_customers)
{
	CdpIdGraph *g = new_graph();
	int32_t		c1 = cdp_idgraph_add_node(g, CUSTOMER);
	int32_t		c2 = cdp_idgraph_add_node(g, CUSTOMER);
	int32_t		tablet = cdp_idgraph_add_node(g, COOKIE);
	CdpLink		l;

	cdp_idgraph_ensure_profile(g, c1);
	CHECK_EQ_INT(cdp_idgraph_link(g, c1, tablet).outcome, CDP_LINK_JOINED);
	cdp_idgraph_ensure_profile(g, c2);
	l = cdp_idgraph_link(g, c2, tablet);
	CHECK_EQ_INT(l.outcome, CDP_LINK_LIMIT);
	CHECK_EQ_INT(l.kind, CUSTOMER);
	CHECK_EQ_INT(l.survivor, 101);
	CHECK_EQ_INT(l.other, 100);
	CHECK(cdp_idgraph_profile(g, c1) != cdp_idgraph_profile(g, c2));
	cdp_idgraph_free(g);
}

UNIT_TEST(limit_counts_both_profiles)
{
	CdpIdGraph *g = new_graph();
	int32_t		e1 = cdp_idgraph_add_node(g, EMAIL);
	int32_t		e2 = cdp_idgraph_add_node(g, EMAIL);
	int32_t		e3 = cdp_idgraph_add_node(g, EMAIL);
	int32_t		k1 = cdp_idgraph_add_node(g, COOKIE);

	cdp_idgraph_ensure_profile(g, e1);
	CHECK_EQ_INT(cdp_idgraph_link(g, e1, e2).outcome, CDP_LINK_JOINED);	/* 2 e-mails: at limit */
	CHECK_EQ_INT(cdp_idgraph_link(g, e1, e3).outcome, CDP_LINK_LIMIT);	/* a third is kept apart */
	CHECK_EQ_INT(cdp_idgraph_link(g, e3, k1).outcome, CDP_LINK_JOINED);
	/* the cookie's profile has 1 e-mail; merging would make 3 */
	CHECK_EQ_INT(cdp_idgraph_link(g, e1, k1).outcome, CDP_LINK_LIMIT);
	CHECK_EQ_INT(cdp_idgraph_count(g, e1, EMAIL), 2);
	CHECK_EQ_INT(cdp_idgraph_count(g, e3, EMAIL), 1);
	cdp_idgraph_free(g);
}

UNIT_TEST(kind_that_may_not_merge)
{
	CdpIdGraph *g = new_graph();
	int32_t		e1 = cdp_idgraph_add_node(g, EMAIL);
	int32_t		e2 = cdp_idgraph_add_node(g, EMAIL);
	int32_t		ip = cdp_idgraph_add_node(g, IP);

	cdp_idgraph_ensure_profile(g, e1);
	cdp_idgraph_ensure_profile(g, e2);
	/* a new ip joins, but an ip never merges two profiles */
	CHECK_EQ_INT(cdp_idgraph_link(g, e1, ip).outcome, CDP_LINK_JOINED);
	CHECK_EQ_INT(cdp_idgraph_link(g, e2, ip).outcome, CDP_LINK_NO_MERGE);
	CHECK(cdp_idgraph_profile(g, e1) != cdp_idgraph_profile(g, e2));
	cdp_idgraph_free(g);
}

UNIT_TEST(forced_profile_still_takes_other_kinds)
{
	CdpIdGraph *g = new_graph();
	int32_t		c1 = cdp_idgraph_add_node(g, CUSTOMER);
	int32_t		c2 = cdp_idgraph_add_node(g, CUSTOMER);
	int32_t		c3 = cdp_idgraph_add_node(g, CUSTOMER);
	int32_t		k1 = cdp_idgraph_add_node(g, COOKIE);
	int32_t		k2 = cdp_idgraph_add_node(g, COOKIE);
	CdpLink		l;

	/* by hand: two customer ids are over the limit of 1 unless forced */
	l = cdp_idgraph_merge(g, c1, c2, 0);
	CHECK_EQ_INT(l.outcome, CDP_LINK_LIMIT);
	CHECK_EQ_INT(l.kind, CUSTOMER);
	l = cdp_idgraph_merge(g, c1, c2, 1);
	CHECK_EQ_INT(l.outcome, CDP_LINK_MERGED);
	CHECK_EQ_INT(l.survivor, 100);
	CHECK_EQ_INT(l.absorbed, 101);
	CHECK_EQ_INT(cdp_idgraph_count(g, c1, CUSTOMER), 2);
	/* the forced profile takes cookies and cookie-only profiles ... */
	CHECK_EQ_INT(cdp_idgraph_link(g, c1, k1).outcome, CDP_LINK_JOINED);
	cdp_idgraph_ensure_profile(g, k2);
	CHECK_EQ_INT(cdp_idgraph_link(g, c1, k2).outcome, CDP_LINK_MERGED);
	/* ... but no third customer id, by link or by hand */
	CHECK_EQ_INT(cdp_idgraph_link(g, c1, c3).outcome, CDP_LINK_LIMIT);
	CHECK_EQ_INT(cdp_idgraph_merge(g, c3, k1, 0).outcome, CDP_LINK_LIMIT);
	CHECK_EQ_INT(cdp_idgraph_merge(g, c1, k2, 0).outcome, CDP_LINK_SAME);
	cdp_idgraph_free(g);
}

UNIT_TEST(merge_by_hand_ignores_merge_switches)
{
	CdpIdGraph *g = new_graph();
	int32_t		e1 = cdp_idgraph_add_node(g, EMAIL);
	int32_t		ip = cdp_idgraph_add_node(g, IP);

	cdp_idgraph_ensure_profile(g, e1);
	cdp_idgraph_ensure_profile(g, ip);
	CHECK_EQ_INT(cdp_idgraph_link(g, e1, ip).outcome, CDP_LINK_NO_MERGE);
	CHECK_EQ_INT(cdp_idgraph_merge(g, ip, e1, 0).outcome, CDP_LINK_MERGED);
	CHECK_EQ_INT(cdp_idgraph_profile(g, ip), 100);	/* the older survives */
	CHECK_EQ_INT(cdp_idgraph_merge(g, -1, e1, 0).outcome, CDP_LINK_NO_MERGE);
	cdp_idgraph_free(g);
}

UNIT_TEST(pairs_kept_apart_stay_apart)
{
	CdpIdGraph *g = new_graph();
	int32_t		e1 = cdp_idgraph_add_node(g, EMAIL);
	int32_t		e2 = cdp_idgraph_add_node(g, EMAIL);
	int32_t		k1 = cdp_idgraph_add_node(g, COOKIE);
	int32_t		k2 = cdp_idgraph_add_node(g, COOKIE);
	int32_t		k3 = cdp_idgraph_add_node(g, COOKIE);
	CdpLink		l;

	CHECK_EQ_INT(cdp_idgraph_keep_apart(g, e1, e2), 1);
	CHECK_EQ_INT(cdp_idgraph_keep_apart(g, e1, e1), 0);
	/* a node in no profile cannot join the profile it is kept apart from */
	cdp_idgraph_ensure_profile(g, e1);
	l = cdp_idgraph_link(g, e1, e2);
	CHECK_EQ_INT(l.outcome, CDP_LINK_APART);
	CHECK_EQ_INT(l.other, 101);
	/* the pair moves with its profiles as they grow */
	CHECK_EQ_INT(cdp_idgraph_link(g, e1, k1).outcome, CDP_LINK_JOINED);
	CHECK_EQ_INT(cdp_idgraph_link(g, e2, k2).outcome, CDP_LINK_JOINED);
	cdp_idgraph_ensure_profile(g, k3);
	CHECK_EQ_INT(cdp_idgraph_link(g, k3, k1).outcome, CDP_LINK_MERGED);
	CHECK_EQ_INT(cdp_idgraph_link(g, k3, k2).outcome, CDP_LINK_APART);
	CHECK_EQ_INT(cdp_idgraph_link(g, k2, k1).outcome, CDP_LINK_APART);
	/* not even by hand, forced */
	CHECK_EQ_INT(cdp_idgraph_merge(g, k1, k2, 1).outcome, CDP_LINK_APART);
	CHECK(cdp_idgraph_profile(g, e1) != cdp_idgraph_profile(g, e2));
	/* a pair already together cannot be declared apart */
	CHECK_EQ_INT(cdp_idgraph_keep_apart(g, e1, k3), 0);
	cdp_idgraph_free(g);
}

UNIT_TEST(misuse_changes_nothing)
{
	CdpIdGraph *g = new_graph();
	int32_t		a = cdp_idgraph_add_node(g, EMAIL);
	int32_t		b = cdp_idgraph_add_node(g, COOKIE);

	/* the anchor has no profile */
	CHECK_EQ_INT(cdp_idgraph_link(g, a, b).outcome, CDP_LINK_NO_MERGE);
	CHECK_EQ_INT(cdp_idgraph_profile(g, b), 0);
	CHECK_EQ_INT(cdp_idgraph_add_node(g, N_KINDS), -1);
	CHECK_EQ_INT(cdp_idgraph_add_node(g, -1), -1);
	CHECK_EQ_INT(cdp_idgraph_profile(g, 12345), 0);
	CHECK_EQ_INT(cdp_idgraph_size(g), 2);
	cdp_idgraph_free(g);
}

/* --- incremental work on stored profiles equals a full replay ------------ */

#define N_IDS 400
#define N_EVENTS 3000
#define MAX_PER_EVENT 4
#define N_APART 12

typedef struct Event
{
	int			n;
	int			ids[MAX_PER_EVENT];	/* identifier numbers, anchor first */
} Event;

static uint64_t rng_state;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t) (rng_state >> 16);
}

/* Kind of identifier number i; lower kinds have higher priority. */
static int
kind_of(int i)
{
	return i % N_KINDS;
}

/* Random events whose anchor is the identifier of highest priority. */
static void
make_events(Event *ev)
{
	int			e;

	for (e = 0; e < N_EVENTS; e++)
	{
		int			i;
		int			best = 0;

		ev[e].n = 1 + (int) (rng() % MAX_PER_EVENT);
		for (i = 0; i < ev[e].n; i++)
			ev[e].ids[i] = (int) (rng() % N_IDS);
		for (i = 1; i < ev[e].n; i++)
			if (kind_of(ev[e].ids[i]) < kind_of(ev[e].ids[best]))
				best = i;
		i = ev[e].ids[0];
		ev[e].ids[0] = ev[e].ids[best];
		ev[e].ids[best] = i;
	}
}

/* Replays events on a graph whose nodes are node[identifier]. */
static void
replay(CdpIdGraph *g, const Event *ev, int from, int to, const int32_t *node)
{
	int			e;
	int			i;

	for (e = from; e < to; e++)
	{
		cdp_idgraph_ensure_profile(g, node[ev[e].ids[0]]);
		for (i = 1; i < ev[e].n; i++)
			cdp_idgraph_link(g, node[ev[e].ids[0]], node[ev[e].ids[i]]);
	}
}

UNIT_TEST(incremental_equals_full_replay)
{
	static Event ev[N_EVENTS];
	int64_t		full[N_IDS];
	int64_t		stored[N_IDS];	/* profile label of each identifier, 0 = unseen */
	int			apart[N_APART][2];	/* pairs kept apart (odd rounds) */
	int			round;

	for (round = 0; round < 20; round++)
	{
		CdpIdGraph *g;
		int32_t		node[N_IDS];
		int			i;
		int			from;
		int			chunk = 1 + round * 37;

		int			n_apart = round % 2 ? N_APART : 0;

		rng_state = 0x9E3779B97F4A7C15ULL + round;
		make_events(ev);
		for (i = 0; i < n_apart; i++)
		{
			apart[i][0] = (int) (rng() % N_IDS);
			apart[i][1] = (int) (rng() % N_IDS);
		}

		/* full replay, pairs apart from the start */
		g = new_graph();
		for (i = 0; i < N_IDS; i++)
			node[i] = cdp_idgraph_add_node(g, kind_of(i));
		for (i = 0; i < n_apart; i++)
			cdp_idgraph_keep_apart(g, node[apart[i][0]], node[apart[i][1]]);
		replay(g, ev, 0, N_EVENTS, node);
		for (i = 0; i < N_IDS; i++)
			full[i] = cdp_idgraph_profile(g, node[i]);
		cdp_idgraph_free(g);

		/* chunks, each on a small graph loaded from the stored state */
		next_label = 100;
		memset(stored, 0, sizeof(stored));
		for (from = 0; from < N_EVENTS; from += chunk)
		{
			int			to = from + chunk < N_EVENTS ? from + chunk : N_EVENTS;
			int64_t		saved = next_label;
			int32_t		prof_node[N_IDS];
			int			e;
			int			j;

			g = cdp_idgraph_create(N_KINDS, limits, merges, counter, NULL);
			next_label = saved;
			for (i = 0; i < N_IDS; i++)
				node[i] = prof_node[i] = -1;
			for (e = from; e < to; e++)
			{
				for (j = 0; j < ev[e].n; j++)
				{
					int			id = ev[e].ids[j];
					int			counts[N_KINDS] = {0};
					int			x;

					if (node[id] >= 0)
						continue;
					node[id] = cdp_idgraph_add_node(g, kind_of(id));
					if (stored[id] == 0)
						continue;
					/* bring in its stored profile once, with its counts */
					for (x = 0; x < N_IDS; x++)
						if (stored[x] == stored[id] && prof_node[x] >= 0)
							break;
					if (x == N_IDS)
					{
						for (x = 0; x < N_IDS; x++)
							if (stored[x] == stored[id])
								counts[kind_of(x)]++;
						prof_node[id] = cdp_idgraph_add_profile(g, stored[id], counts);
						x = id;
					}
					cdp_idgraph_place(g, node[id], prof_node[x]);
				}
			}
			/* a pair counts where both sides are in the small graph */
			for (i = 0; i < n_apart; i++)
			{
				int32_t		side[2];

				for (j = 0; j < 2; j++)
				{
					int			id = apart[i][j];
					int			x;

					side[j] = node[id];
					for (x = 0; x < N_IDS && side[j] < 0 && stored[id] != 0; x++)
						if (stored[x] == stored[id] && prof_node[x] >= 0)
							side[j] = prof_node[x];
				}
				if (side[0] >= 0 && side[1] >= 0)
					cdp_idgraph_keep_apart(g, side[0], side[1]);
			}
			replay(g, ev, from, to, node);
			/* write back: identifiers of the chunk, and merges of stored ones */
			for (i = 0; i < N_IDS; i++)
			{
				int64_t		now;

				if (node[i] < 0)
					continue;
				now = cdp_idgraph_profile(g, node[i]);
				if (stored[i] != 0 && stored[i] != now)
				{
					int64_t		old = stored[i];

					for (j = 0; j < N_IDS; j++)
						if (stored[j] == old)
							stored[j] = now;
				}
				stored[i] = now;
			}
			cdp_idgraph_free(g);
		}
		for (i = 0; i < N_IDS; i++)
			CHECK_EQ_INT(stored[i], full[i]);
	}
}

const unit_case unit_tests[] = {
	UNIT_CASE(create_checks_arguments),
	UNIT_CASE(new_identifier_joins_anchor),
	UNIT_CASE(anonymous_profile_merges_at_login),
	UNIT_CASE(limit_keeps_a_new_identifier_apart),
	UNIT_CASE(shared_device_does_not_merge_two_customers),
	UNIT_CASE(limit_counts_both_profiles),
	UNIT_CASE(kind_that_may_not_merge),
	UNIT_CASE(forced_profile_still_takes_other_kinds),
	UNIT_CASE(merge_by_hand_ignores_merge_switches),
	UNIT_CASE(pairs_kept_apart_stay_apart),
	UNIT_CASE(misuse_changes_nothing),
	UNIT_CASE(incremental_equals_full_replay),
	UNIT_END
};
