/*
 * bandit.c
 *	  Beta-Bernoulli Thompson sampling and its offline evaluation (see
 *	  bandit.h): the random generator, gamma and beta draws, one Thompson
 *	  round, the Wilson interval, and the replay / IPW / SNIPW evaluator.
 *
 * No allocation anywhere: a round works in the caller's arrays, the
 * evaluator in the caller's scratch array.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "bandit.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define GOLDEN UINT64_C(0x9E3779B97F4A7C15)

/* The normal quantile of the 95% intervals of the evaluator. */
#define Z95 1.959963984540054

/* Rotates x left by k bits (0 < k < 64). */
static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* The splitmix64 output function: a bijective mix of 64 bits. */
static inline uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Seeds the generator with four splitmix64 outputs (never all zero). */
void
cdp_rng_seed(CdpRng *r, uint64_t seed)
{
	int			i;

	for (i = 0; i < 4; i++)
	{
		seed += GOLDEN;
		r->s[i] = mix64(seed);
	}
}

/* xoshiro256**: the next 64 bits. */
uint64_t
cdp_rng_next(CdpRng *r)
{
	uint64_t   *s = r->s;
	uint64_t	result = rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* A uniform draw in (0, 1): the top 53 bits plus one half, over 2^53. */
double
cdp_rng_uniform(CdpRng *r)
{
	return ((double) (cdp_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* A standard normal draw by Marsaglia's polar method (one of the pair). */
double
cdp_rng_normal(CdpRng *r)
{
	double		u;
	double		v;
	double		s;

	do
	{
		u = 2.0 * cdp_rng_uniform(r) - 1.0;
		v = 2.0 * cdp_rng_uniform(r) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	return u * sqrt(-2.0 * log(s) / s);
}

/*
 * A Gamma(shape, 1) draw for shape >= 1, by Marsaglia and Tsang (2000):
 * always positive and finite.
 */
static double
gamma_large(CdpRng *r, double shape)
{
	double		d = shape - 1.0 / 3.0;
	double		c = 1.0 / sqrt(9.0 * d);

	for (;;)
	{
		double		x;
		double		v;
		double		u;

		do
		{
			x = cdp_rng_normal(r);
			v = 1.0 + c * x;
		} while (v <= 0.0);
		v = v * v * v;
		u = cdp_rng_uniform(r);
		if (u < 1.0 - 0.0331 * (x * x) * (x * x))
			return d * v;
		if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return d * v;
	}
}

/*
 * The logarithm of a Gamma(shape, 1) draw, shape > 0: finite even when the
 * draw itself underflows (shape < 1: log G(shape + 1) + log(U) / shape).
 */
static double
log_gamma_draw(CdpRng *r, double shape)
{
	if (shape >= 1.0)
		return log(gamma_large(r, shape));
	return log(gamma_large(r, shape + 1.0)) + log(cdp_rng_uniform(r)) / shape;
}

/* Whether x is a positive finite number. */
static inline int
positive(double x)
{
	return isfinite(x) && x > 0.0;
}

/* A Gamma(shape, 1) draw; see bandit.h. */
double
cdp_rng_gamma(CdpRng *r, double shape)
{
	if (!positive(shape))
		return NAN;
	if (shape >= 1.0)
		return gamma_large(r, shape);
	return exp(log_gamma_draw(r, shape));
}

/*
 * A Beta(a, b) draw for valid a, b: Ga / (Ga + Gb), directly when both
 * shapes are at least 1 (then neither gamma draw can underflow), else from
 * the logarithms, 1 / (1 + exp(lb - la)) written so that exp never
 * overflows.
 */
static double
beta_draw(CdpRng *r, double a, double b)
{
	double		la;
	double		lb;
	double		e;

	if (a >= 1.0 && b >= 1.0)
	{
		double		ga = gamma_large(r, a);
		double		gb = gamma_large(r, b);

		return ga / (ga + gb);
	}
	la = log_gamma_draw(r, a);
	lb = log_gamma_draw(r, b);
	if (la >= lb)
		return 1.0 / (1.0 + exp(lb - la));
	e = exp(la - lb);
	return e / (1.0 + e);
}

/* A Beta(a, b) draw; see bandit.h. */
double
cdp_rng_beta(CdpRng *r, double a, double b)
{
	if (!positive(a) || !positive(b))
		return NAN;
	return beta_draw(r, a, b);
}

/* Mixes two values into a seed: not symmetric in a and b. */
uint64_t
cdp_hash64(uint64_t a, uint64_t b)
{
	uint64_t	h = mix64(a + GOLDEN);

	return mix64(h ^ (b + 2 * GOLDEN) ^ rotl(b, 29));
}

/*
 * The arm of one round over the eligible arms, without writing anything:
 * the highest p * value - cost, ties to the lowest index.
 */
static int
round_winner(const CdpArm *arms, int n, CdpRng *rng)
{
	int			best = -1;
	double		best_score = 0.0;
	int			i;

	for (i = 0; i < n; i++)
	{
		double		s;

		if (!arms[i].eligible)
			continue;
		s = beta_draw(rng, arms[i].alpha, arms[i].beta) * arms[i].value - arms[i].cost;
		if (best < 0 || s > best_score)
		{
			best = i;
			best_score = s;
		}
	}
	return best;
}

/* One Thompson round; see bandit.h. */
int
cdp_thompson_choose(const CdpArm *arms, int n, CdpRng *rng, int draws,
					double *sample, double *score, double *action_prob)
{
	int			best = -1;
	int			n_eligible = 0;
	double		best_score = 0.0;
	int			i;

	if (action_prob != NULL)
		*action_prob = NAN;
	if (n < 0 || (n > 0 && arms == NULL))
		return CDP_BANDIT_EBADARG;
	for (i = 0; i < n; i++)
	{
		if (!arms[i].eligible)
			continue;
		if (!positive(arms[i].alpha) || !positive(arms[i].beta) ||
			!isfinite(arms[i].value) || !isfinite(arms[i].cost))
			return CDP_BANDIT_EBADARG;
		n_eligible++;
	}

	for (i = 0; i < n; i++)
	{
		double		p = NAN;
		double		s = NAN;

		if (arms[i].eligible)
		{
			p = beta_draw(rng, arms[i].alpha, arms[i].beta);
			s = p * arms[i].value - arms[i].cost;
			if (best < 0 || s > best_score)
			{
				best = i;
				best_score = s;
			}
		}
		if (sample != NULL)
			sample[i] = p;
		if (score != NULL)
			score[i] = s;
	}
	if (best < 0)
		return CDP_BANDIT_NONE;

	if (action_prob != NULL && draws > 0)
	{
		long		wins = 0;
		int			k;

		if (n_eligible == 1)
			wins = draws;
		else
			for (k = 0; k < draws; k++)
				if (round_winner(arms, n, rng) == best)
					wins++;
		*action_prob = ((double) wins + 1.0) / ((double) draws + 1.0);
	}
	return best;
}

/* The Wilson score interval; see bandit.h. */
void
cdp_wilson_interval(double successes, double trials, double z, double *low, double *high)
{
	double		p;
	double		z2;
	double		denom;
	double		center;
	double		half;

	if (!isfinite(successes) || !isfinite(trials) || !isfinite(z) || z < 0.0 ||
		trials < 0.0 || successes < 0.0 || successes > trials)
	{
		*low = NAN;
		*high = NAN;
		return;
	}
	if (trials == 0.0)
	{
		*low = 0.0;
		*high = 1.0;
		return;
	}
	p = successes / trials;
	z2 = z * z;
	denom = 1.0 + z2 / trials;
	center = (p + z2 / (2.0 * trials)) / denom;
	half = z * sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials)) / denom;
	*low = successes == 0.0 ? 0.0 : fmax(0.0, center - half);
	*high = successes == trials ? 1.0 : fmin(1.0, center + half);
}

/*
 * The policy's arm for one context: a Beta draw per arm from the
 * posteriors post[2 * arm] (alpha) and post[2 * arm + 1] (beta), the
 * highest wins, ties to the lowest index (as cdp_thompson_choose with
 * value 1 and cost 0).
 */
static int
policy_arm(const double *post, int n_arms, CdpRng *rng)
{
	int			best = 0;
	double		best_p = -1.0;
	int			i;

	for (i = 0; i < n_arms; i++)
	{
		double		p;

		if (post[2 * i] <= 0.0)
			continue;			/* never logged in this context: not offered */
		p = beta_draw(rng, post[2 * i], post[2 * i + 1]);

		if (p > best_p)
		{
			best = i;
			best_p = p;
		}
	}
	return best;
}

/*
 * Sets the posterior of every arm logged in a context to the prior, and
 * marks the others (alpha -1): the policy offers in a context only the
 * arms the log shows there, so that arms of another campaign or segment,
 * never tried there, do not win on their prior alone.
 */
static void
reset_posteriors(double *post, size_t cells, int n_arms, const CdpLogged *rows, long n,
				 double a0, double b0)
{
	size_t		i;
	long		r;

	for (i = 0; i < cells; i++)
	{
		post[2 * i] = -1.0;
		post[2 * i + 1] = -1.0;
	}
	for (r = 0; r < n; r++)
	{
		size_t		c = (size_t) rows[r].context * (size_t) n_arms + (size_t) rows[r].arm;

		post[2 * c] = a0;
		post[2 * c + 1] = b0;
	}
}

/* The mean and its normal 95% interval from a count, sum and sum of squares. */
static void
normal_estimate(long n, double sum, double sumsq, CdpEstimate *e)
{
	double		mean;
	double		var;
	double		half;

	e->used = n;
	if (n <= 0)
	{
		e->value = e->low = e->high = NAN;
		return;
	}
	mean = sum / (double) n;
	var = n > 1 ? (sumsq - sum * mean) / (double) (n - 1) : 0.0;
	if (!(var > 0.0))
		var = 0.0;
	half = Z95 * sqrt(var / (double) n);
	e->value = mean;
	e->low = mean - half > 0.0 ? mean - half : 0.0;	/* rewards are not negative */
	e->high = mean + half;
}

/* The replay estimate (see bandit.h), in post. */
static void
evaluate_replay(const CdpLogged *rows, long n, int n_arms, double *post, CdpRng *rng,
				CdpEstimate *e)
{
	long		used = 0;
	long		binary = 1;
	double		sum = 0.0;
	double		sumsq = 0.0;
	long		i;

	for (i = 0; i < n; i++)
	{
		const CdpLogged *row = &rows[i];
		double	   *cp = post + (size_t) 2 * n_arms * row->context;
		double		r = row->reward;

		if (policy_arm(cp, n_arms, rng) != row->arm)
			continue;
		used++;
		sum += r;
		sumsq += r * r;
		if (r != 0.0 && r != 1.0)
			binary = 0;
		cp[2 * row->arm] += r;
		cp[2 * row->arm + 1] += 1.0 - r;
	}
	if (used > 0 && binary)
	{
		e->used = used;
		e->value = sum / (double) used;
		cdp_wilson_interval(sum, (double) used, Z95, &e->low, &e->high);
	}
	else
		normal_estimate(used, sum, sumsq, e);
}

/* The IPW and SNIPW estimates (see bandit.h), in post. */
static void
evaluate_ipw(const CdpLogged *rows, long n, int n_arms, int draws, double *post,
			 CdpRng *rng, CdpEstimate *ipw, CdpEstimate *snipw)
{
	double		sum_t = 0.0;	/* sum of pi r / p */
	double		sum_tt = 0.0;	/* sum of (pi r / p)^2 */
	double		sum_w = 0.0;	/* sum of pi / p */
	double		sum_ww = 0.0;	/* sum of (pi / p)^2 */
	double		sum_wwr = 0.0;	/* sum of (pi / p)^2 r */
	double		sum_wwrr = 0.0; /* sum of (pi / p)^2 r^2 */
	long		positive_rows = 0;
	long		i;

	for (i = 0; i < n; i++)
	{
		const CdpLogged *row = &rows[i];
		double	   *cp = post + (size_t) 2 * n_arms * row->context;
		double		r = row->reward;
		double		pi;
		double		w;
		long		wins = 0;
		int			k;

		if (n_arms == 1)
			wins = draws;
		else
			for (k = 0; k < draws; k++)
				if (policy_arm(cp, n_arms, rng) == row->arm)
					wins++;
		pi = (double) wins / (double) draws;
		w = pi / row->propensity;
		sum_t += w * r;
		sum_tt += (w * r) * (w * r);
		sum_w += w;
		sum_ww += w * w;
		sum_wwr += w * w * r;
		sum_wwrr += w * w * r * r;
		if (wins > 0)
			positive_rows++;
		cp[2 * row->arm] += r;
		cp[2 * row->arm + 1] += 1.0 - r;
	}
	if (ipw != NULL)
		normal_estimate(n, sum_t, sum_tt, ipw);
	if (snipw != NULL)
	{
		snipw->used = positive_rows;
		if (sum_w > 0.0)
		{
			double		v = sum_t / sum_w;

			/* sum of w^2 (r - v)^2, the delta method's numerator */
			double		ss = sum_wwrr - 2.0 * v * sum_wwr + v * v * sum_ww;
			double		half = Z95 * sqrt(ss > 0.0 ? ss : 0.0) / sum_w;

			snipw->value = v;
			snipw->low = v - half > 0.0 ? v - half : 0.0;	/* a mean of rewards in [0, 1] */
			snipw->high = v + half < 1.0 ? v + half : 1.0;
		}
		else
			snipw->value = snipw->low = snipw->high = NAN;
	}
}

/* Offline evaluation of Thompson sampling; see bandit.h. */
int
cdp_evaluate_thompson(const CdpLogged *rows, long n, int n_arms, int n_contexts,
					  double a0, double b0, int draws, uint64_t seed,
					  double *scratch, CdpEstimate *replay, CdpEstimate *ipw,
					  CdpEstimate *snipw)
{
	size_t		cells;
	CdpRng		rng;
	long		i;

	if (n < 0 || (n > 0 && rows == NULL) || scratch == NULL ||
		n_arms < 1 || n_contexts < 1 || !positive(a0) || !positive(b0) || draws < 1)
		return -1;
	if ((size_t) n_arms > SIZE_MAX / 2 / sizeof(double) / (size_t) n_contexts)
		return -1;
	cells = (size_t) n_arms * (size_t) n_contexts;
	for (i = 0; i < n; i++)
	{
		const CdpLogged *row = &rows[i];

		if (row->arm < 0 || row->arm >= n_arms ||
			row->context < 0 || row->context >= n_contexts ||
			!(row->reward >= 0.0 && row->reward <= 1.0) ||
			!(row->propensity > 0.0 && row->propensity <= 1.0))
			return -1;
	}

	if (replay != NULL)
	{
		reset_posteriors(scratch, cells, n_arms, rows, n, a0, b0);
		cdp_rng_seed(&rng, cdp_hash64(seed, 1));
		evaluate_replay(rows, n, n_arms, scratch, &rng, replay);
	}
	if (ipw != NULL || snipw != NULL)
	{
		reset_posteriors(scratch, cells, n_arms, rows, n, a0, b0);
		cdp_rng_seed(&rng, cdp_hash64(seed, 2));
		evaluate_ipw(rows, n, n_arms, draws, scratch, &rng, ipw, snipw);
	}
	return 0;
}
