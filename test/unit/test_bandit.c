/*
 * test_bandit.c
 *	  Unit tests of src/core/bandit.c: the generator against the reference
 *	  splitmix64 and xoshiro256** outputs, the moments (and a probability)
 *	  of the uniform, normal, gamma and beta draws on 200,000 draws with
 *	  tolerances of five standard errors, beta draws at extreme parameters,
 *	  Thompson rounds (eligibility, dominance, ties, cost, the estimated
 *	  action probability against a long simulation), learning on a simulated
 *	  5-arm bandit, the Wilson interval, and the offline evaluator (replay,
 *	  IPW and SNIPW) on uniformly random logs against the value of the
 *	  evaluated policy computed directly.
 *
 * Every random stream has a fixed seed, so the results never vary.
 */
#include "unit.h"
#include "bandit.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

const char *unit_suite = "bandit";

#define CHECK_NEAR(a, b, tol) \
	do { \
		double a_ = (a), b_ = (b), t_ = (tol); \
		if (!(fabs(a_ - b_) <= t_)) { \
			fprintf(stderr, "  %s:%d: %s == %.12g, expected %.12g (+- %g)\n", \
					__FILE__, __LINE__, #a, a_, b_, t_); \
			unit_failures++; \
		} \
	} while (0)

#define N_DRAWS 200000
#define N_ROWS 200000

/* Mean and variance accumulated by Welford's method. */
typedef struct Moments
{
	long		n;
	double		mean;
	double		m2;
} Moments;

static void
add(Moments *m, double x)
{
	double		d = x - m->mean;

	m->n++;
	m->mean += d / (double) m->n;
	m->m2 += d * (x - m->mean);
}

static double
variance(const Moments *m)
{
	return m->m2 / (double) (m->n - 1);
}

/*
 * Checks sample moments against the distribution's mean, variance and
 * excess kurtosis: within five standard errors (the variance's standard
 * error from the kurtosis, with a floor of 1% for near-two-point laws).
 */
static void
check_moments(const Moments *m, double mean, double var, double exkurt)
{
	double		n = (double) m->n;
	double		var_se = var * sqrt(fmax(exkurt + 2.0, 0.0) / n);

	CHECK_NEAR(m->mean, mean, 5.0 * sqrt(var / n));
	CHECK_NEAR(variance(m), var, 5.0 * var_se + 0.01 * var);
}

UNIT_TEST(generator_matches_the_reference)
{
	CdpRng		r;
	CdpRng		q = {{1, 2, 3, 4}};
	CdpRng		a;
	CdpRng		b;
	int			i;
	int			same = 1;

	/* splitmix64 from 0: its published first four outputs. */
	cdp_rng_seed(&r, 0);
	CHECK(r.s[0] == UINT64_C(0xE220A8397B1DCDAF));
	CHECK(r.s[1] == UINT64_C(0x6E789E6AA1B965F4));
	CHECK(r.s[2] == UINT64_C(0x06C45D188009454F));
	CHECK(r.s[3] == UINT64_C(0xF88BB8A8724C81EC));

	/* xoshiro256** from the state {1, 2, 3, 4}: the reference outputs. */
	CHECK(cdp_rng_next(&q) == UINT64_C(11520));
	CHECK(cdp_rng_next(&q) == UINT64_C(0));
	CHECK(cdp_rng_next(&q) == UINT64_C(1509978240));
	CHECK(cdp_rng_next(&q) == UINT64_C(1215971899390074240));

	/* Seed 42: recorded from this implementation. */
	cdp_rng_seed(&r, 42);
	CHECK(cdp_rng_next(&r) == UINT64_C(0x15780B2E0C2EC716));
	CHECK(cdp_rng_next(&r) == UINT64_C(0x6104D9866D113A7E));
	CHECK(cdp_rng_next(&r) == UINT64_C(0xAE17533239E499A1));

	/* The same seed gives the same sequence, another seed another one. */
	cdp_rng_seed(&a, 12345);
	cdp_rng_seed(&b, 12345);
	for (i = 0; i < 1000; i++)
		if (cdp_rng_next(&a) != cdp_rng_next(&b))
			same = 0;
	CHECK(same);
	CHECK(cdp_rng_beta(&a, 2.5, 0.7) == cdp_rng_beta(&b, 2.5, 0.7));
	cdp_rng_seed(&b, 12346);
	CHECK(cdp_rng_next(&a) != cdp_rng_next(&b));

	/* cdp_hash64 is deterministic, asymmetric and sensitive to both values. */
	CHECK(cdp_hash64(1, 2) == UINT64_C(0x5EE239B9D5AEA74C));
	CHECK(cdp_hash64(1, 2) != cdp_hash64(2, 1));
	CHECK(cdp_hash64(1, 2) != cdp_hash64(1, 3));
	CHECK(cdp_hash64(0, 0) != 0);
}

UNIT_TEST(uniform_is_open_and_flat)
{
	CdpRng		q = {{1, 2, 3, 4}};
	CdpRng		r;
	Moments		m = {0};
	long		below_tenth = 0;
	int			inside = 1;
	long		i;
	double		u;

	/* The second output from {1, 2, 3, 4} is 0: still above 0. */
	u = cdp_rng_uniform(&q);
	CHECK(u > 0.0 && u < 1.0);
	u = cdp_rng_uniform(&q);
	CHECK(u > 0.0 && u < 1e-15);

	cdp_rng_seed(&r, 1);
	for (i = 0; i < N_DRAWS; i++)
	{
		u = cdp_rng_uniform(&r);
		if (!(u > 0.0 && u < 1.0))
			inside = 0;
		if (u < 0.1)
			below_tenth++;
		add(&m, u);
	}
	CHECK(inside);
	check_moments(&m, 0.5, 1.0 / 12.0, -1.2);
	CHECK_NEAR((double) below_tenth / N_DRAWS, 0.1, 5.0 * sqrt(0.09 / N_DRAWS));
}

UNIT_TEST(normal_moments)
{
	CdpRng		r;
	Moments		m = {0};
	long		within_one = 0;
	long		i;

	cdp_rng_seed(&r, 2);
	for (i = 0; i < N_DRAWS; i++)
	{
		double		x = cdp_rng_normal(&r);

		if (fabs(x) < 1.0)
			within_one++;
		add(&m, x);
	}
	check_moments(&m, 0.0, 1.0, 0.0);
	CHECK_NEAR((double) within_one / N_DRAWS, 0.682689492,
			   5.0 * sqrt(0.6827 * 0.3173 / N_DRAWS));
}

UNIT_TEST(gamma_moments)
{
	static const double shapes[] = {0.1, 0.5, 1.0, 3.7, 1000.0};
	CdpRng		r;
	int			k;

	cdp_rng_seed(&r, 3);
	for (k = 0; k < (int) (sizeof(shapes) / sizeof(shapes[0])); k++)
	{
		double		shape = shapes[k];
		Moments		m = {0};
		long		small = 0;
		int			valid = 1;
		long		i;

		for (i = 0; i < N_DRAWS; i++)
		{
			double		g = cdp_rng_gamma(&r, shape);

			if (!(g >= 0.0 && isfinite(g)))
				valid = 0;
			if (2.0 * g < 1.0)
				small++;
			add(&m, g);
		}
		CHECK(valid);
		/* Gamma(k, 1): mean k, variance k, excess kurtosis 6 / k. */
		check_moments(&m, shape, shape, 6.0 / shape);
		/* 2 Gamma(1/2) is chi-square(1): P(2G < 1) = P(|Z| < 1). */
		if (shape == 0.5)
			CHECK_NEAR((double) small / N_DRAWS, 0.682689492,
					   5.0 * sqrt(0.6827 * 0.3173 / N_DRAWS));
		/* Gamma(1) is exponential: P(2G < 1) = 1 - exp(-1/2). */
		if (shape == 1.0)
			CHECK_NEAR((double) small / N_DRAWS, 1.0 - exp(-0.5),
					   5.0 * sqrt(0.3935 * 0.6065 / N_DRAWS));
	}

	/* Invalid shapes give NaN; tiny ones a finite draw >= 0. */
	CHECK(isnan(cdp_rng_gamma(&r, 0.0)));
	CHECK(isnan(cdp_rng_gamma(&r, -1.0)));
	CHECK(isnan(cdp_rng_gamma(&r, NAN)));
	CHECK(isnan(cdp_rng_gamma(&r, INFINITY)));
	CHECK(cdp_rng_gamma(&r, 1e-3) >= 0.0);
}

UNIT_TEST(beta_moments)
{
	static const double ab[][2] = {
		{0.5, 0.5}, {2.0, 5.0}, {0.1, 3.0}, {1.0, 1.0}, {100.0, 900.0}, {0.001, 0.001}
	};
	CdpRng		r;
	int			k;

	cdp_rng_seed(&r, 4);
	for (k = 0; k < (int) (sizeof(ab) / sizeof(ab[0])); k++)
	{
		double		a = ab[k][0];
		double		b = ab[k][1];
		double		s = a + b;
		double		var = a * b / (s * s * (s + 1.0));
		double		exkurt = 6.0 * ((a - b) * (a - b) * (s + 1.0) - a * b * (s + 2.0)) /
			(a * b * (s + 2.0) * (s + 3.0));
		Moments		m = {0};
		int			valid = 1;
		long		i;

		for (i = 0; i < N_DRAWS; i++)
		{
			double		x = cdp_rng_beta(&r, a, b);

			if (!(x >= 0.0 && x <= 1.0))
				valid = 0;
			add(&m, x);
		}
		CHECK(valid);
		check_moments(&m, a / s, var, exkurt);
	}
	CHECK(isnan(cdp_rng_beta(&r, 0.0, 1.0)));
	CHECK(isnan(cdp_rng_beta(&r, 1.0, -2.0)));
	CHECK(isnan(cdp_rng_beta(&r, NAN, 1.0)));
	CHECK(isnan(cdp_rng_beta(&r, 1.0, INFINITY)));
}

UNIT_TEST(beta_at_extreme_parameters)
{
	CdpRng		r;
	Moments		m = {0};
	int			near = 1;
	int			valid = 1;
	long		i;

	/* Beta(1e6, 1e8): mean 0.00990099, standard deviation 9.85e-6. */
	cdp_rng_seed(&r, 5);
	for (i = 0; i < 20000; i++)
	{
		double		x = cdp_rng_beta(&r, 1e6, 1e8);

		if (!(fabs(x - 0.00990099) < 1e-4))
			near = 0;
		add(&m, x);
	}
	CHECK(near);
	CHECK_NEAR(m.mean, 1e6 / (1e6 + 1e8), 5.0 * 9.85e-6 / sqrt(20000.0));
	CHECK_NEAR(sqrt(variance(&m)), 9.85e-6, 0.3e-6);

	/* Every mix of tiny and huge parameters gives a draw in [0, 1]. */
	{
		static const double p[] = {1e-3, 0.01, 0.3, 1.0, 7.0, 1e4, 1e9};
		int			j;
		int			k;

		for (j = 0; j < 7; j++)
			for (k = 0; k < 7; k++)
				for (i = 0; i < 2000; i++)
				{
					double		x = cdp_rng_beta(&r, p[j], p[k]);

					if (!(x >= 0.0 && x <= 1.0))
						valid = 0;
				}
		CHECK(valid);
	}

	/* Beta(1e9, 1e-3) is 1 and Beta(1e-3, 1e9) 0, to the double. */
	CHECK(cdp_rng_beta(&r, 1e9, 1e-3) > 1.0 - 1e-9);
	CHECK(cdp_rng_beta(&r, 1e-3, 1e9) < 1e-9);
}

/* A valid arm. */
static CdpArm
arm(double alpha, double beta, double value, double cost, int eligible)
{
	CdpArm		a;

	a.alpha = alpha;
	a.beta = beta;
	a.value = value;
	a.cost = cost;
	a.eligible = eligible;
	return a;
}

UNIT_TEST(choose_eligibility_and_errors)
{
	CdpArm		arms[4];
	double		sample[4];
	double		score[4];
	double		prob;
	CdpRng		r;
	int			never_ineligible = 1;
	int			i;

	cdp_rng_seed(&r, 6);
	arms[0] = arm(1, 1, 1, 0, 0);
	arms[1] = arm(1, 1, 1, 0, 0);
	CHECK_EQ_INT(cdp_thompson_choose(arms, 2, &r, 10, sample, score, &prob), CDP_BANDIT_NONE);
	CHECK(isnan(prob));
	CHECK(isnan(sample[0]) && isnan(score[1]));
	CHECK_EQ_INT(cdp_thompson_choose(arms, 0, &r, 10, NULL, NULL, &prob), CDP_BANDIT_NONE);
	CHECK_EQ_INT(cdp_thompson_choose(arms, -1, &r, 10, NULL, NULL, &prob), CDP_BANDIT_EBADARG);

	/* The ineligible arms are far better, yet never chosen. */
	arms[0] = arm(1000, 1, 1, 0, 0);
	arms[1] = arm(1, 50, 1, 0, 1);
	arms[2] = arm(1000, 1, 1, 0, 0);
	arms[3] = arm(2, 50, 1, 0, 1);
	for (i = 0; i < 2000; i++)
	{
		int			c = cdp_thompson_choose(arms, 4, &r, 0, sample, score, NULL);

		if (c != 1 && c != 3)
			never_ineligible = 0;
	}
	CHECK(never_ineligible);
	CHECK(isnan(sample[0]) && isnan(score[0]) && isnan(sample[2]) && isnan(score[2]));
	CHECK(sample[1] > 0.0 && sample[1] < 1.0 && score[1] == sample[1]);
	CHECK(sample[3] > 0.0 && sample[3] < 1.0 && score[3] == sample[3]);

	/* A single eligible arm is chosen with probability 1. */
	arms[3].eligible = 0;
	CHECK_EQ_INT(cdp_thompson_choose(arms, 4, &r, 100, NULL, NULL, &prob), 1);
	CHECK(prob == 1.0);
	/* draws <= 0: no estimate. */
	CHECK_EQ_INT(cdp_thompson_choose(arms, 4, &r, 0, NULL, NULL, &prob), 1);
	CHECK(isnan(prob));

	/* An invalid eligible arm is an error; an invalid ineligible one is not. */
	arms[1].alpha = 0.0;
	CHECK_EQ_INT(cdp_thompson_choose(arms, 4, &r, 0, NULL, NULL, NULL), CDP_BANDIT_EBADARG);
	arms[1].alpha = 1.0;
	arms[1].beta = NAN;
	CHECK_EQ_INT(cdp_thompson_choose(arms, 4, &r, 0, NULL, NULL, NULL), CDP_BANDIT_EBADARG);
	arms[1].beta = 1.0;
	arms[1].cost = INFINITY;
	CHECK_EQ_INT(cdp_thompson_choose(arms, 4, &r, 0, NULL, NULL, NULL), CDP_BANDIT_EBADARG);
	arms[1].cost = 0.0;
	arms[0].alpha = -5.0;
	CHECK_EQ_INT(cdp_thompson_choose(arms, 4, &r, 0, NULL, NULL, NULL), 1);
}

UNIT_TEST(choose_dominance_ties_and_cost)
{
	CdpArm		arms[3];
	double		score[3];
	double		sample[3];
	CdpRng		r;
	long		wins[3] = {0, 0, 0};
	int			scores_right = 1;
	int			i;

	cdp_rng_seed(&r, 7);
	/* A dominant arm: Beta(900, 100) against Beta(100, 900). */
	arms[0] = arm(100, 900, 1, 0, 1);
	arms[1] = arm(900, 100, 1, 0, 1);
	arms[2] = arm(100, 900, 1, 0, 1);
	for (i = 0; i < 10000; i++)
		wins[cdp_thompson_choose(arms, 3, &r, 0, NULL, NULL, NULL)]++;
	CHECK_EQ_INT(wins[1], 10000);

	/* Two equal arms share the rounds evenly. */
	wins[0] = wins[1] = 0;
	arms[0] = arm(10, 10, 1, 0, 1);
	arms[1] = arm(10, 10, 1, 0, 1);
	for (i = 0; i < 100000; i++)
		wins[cdp_thompson_choose(arms, 2, &r, 0, NULL, NULL, NULL)]++;
	CHECK_NEAR((double) wins[0] / 100000.0, 0.5, 5.0 * sqrt(0.25 / 100000.0));

	/* Exact ties go to the lowest index: worthless arms all score 0. */
	arms[0] = arm(3, 3, 0, 0, 0);
	arms[1] = arm(3, 3, 0, 0, 1);
	arms[2] = arm(30, 3, 0, 0, 1);
	CHECK_EQ_INT(cdp_thompson_choose(arms, 3, &r, 0, NULL, NULL, NULL), 1);

	/*
	 * Cost is subtracted: Beta(50, 50) worth 1 at cost 0.3 scores about
	 * 0.2, Beta(30, 70) worth 1 for free about 0.3.
	 */
	wins[0] = wins[1] = 0;
	arms[0] = arm(50, 50, 1, 0.3, 1);
	arms[1] = arm(30, 70, 1, 0, 1);
	for (i = 0; i < 10000; i++)
	{
		wins[cdp_thompson_choose(arms, 2, &r, 0, sample, score, NULL)]++;
		if (score[0] != sample[0] - 0.3 || score[1] != sample[1])
			scores_right = 0;
	}
	CHECK(scores_right);
	CHECK(wins[1] > 9000);
	/* Without the cost the expensive arm is the better one. */
	wins[0] = wins[1] = 0;
	arms[0].cost = 0.0;
	for (i = 0; i < 10000; i++)
		wins[cdp_thompson_choose(arms, 2, &r, 0, NULL, NULL, NULL)]++;
	CHECK(wins[0] > 9000);
	/* Value scales the sample: worth 3, Beta(30, 70) beats Beta(50, 50). */
	wins[0] = wins[1] = 0;
	arms[1].value = 3.0;
	for (i = 0; i < 10000; i++)
		wins[cdp_thompson_choose(arms, 2, &r, 0, NULL, NULL, NULL)]++;
	CHECK(wins[1] > 9000);
}

UNIT_TEST(action_probability_matches_simulation)
{
	CdpArm		arms[2];
	CdpRng		r;
	long		wins1 = 0;
	double		p1;
	int			seen[2] = {0, 0};
	int			i;

	arms[0] = arm(50, 50, 1, 0, 1);
	arms[1] = arm(55, 45, 1, 0, 1);

	/* The reference: how often arm 1 wins in 400,000 rounds (about 0.76). */
	cdp_rng_seed(&r, 8);
	for (i = 0; i < 400000; i++)
		if (cdp_thompson_choose(arms, 2, &r, 0, NULL, NULL, NULL) == 1)
			wins1++;
	p1 = (double) wins1 / 400000.0;
	CHECK(p1 > 0.74 && p1 < 0.78);

	/* Estimates from 20,000 draws: within 0.015 (five standard errors). */
	for (i = 0; i < 12; i++)
	{
		double		prob = NAN;
		int			c = cdp_thompson_choose(arms, 2, &r, 20000, NULL, NULL, &prob);

		CHECK(c == 0 || c == 1);
		CHECK(prob > 0.0 && prob <= 1.0);
		if (c == 1 || c == 0)
			seen[c] = 1;
		CHECK_NEAR(prob, c == 1 ? p1 : 1.0 - p1, 0.015);
	}
	CHECK(seen[1]);

	/* With one extra round the estimate is 1/2 or 1: never 0. */
	for (i = 0; i < 100; i++)
	{
		double		prob = NAN;

		cdp_thompson_choose(arms, 2, &r, 1, NULL, NULL, &prob);
		CHECK(prob == 0.5 || prob == 1.0);
	}
}

UNIT_TEST(learning_finds_the_best_arm)
{
	static const double rates[5] = {0.02, 0.04, 0.05, 0.08, 0.10};
	CdpArm		arms[5];
	CdpRng		r;
	CdpRng		env;
	long		best_late = 0;
	int			t;
	int			i;

	cdp_rng_seed(&r, 9);
	cdp_rng_seed(&env, 10);
	for (i = 0; i < 5; i++)
		arms[i] = arm(1, 1, 1, 0, 1);
	for (t = 0; t < 20000; t++)
	{
		int			c = cdp_thompson_choose(arms, 5, &r, 0, NULL, NULL, NULL);

		if (cdp_rng_uniform(&env) < rates[c])
			arms[c].alpha += 1.0;
		else
			arms[c].beta += 1.0;
		if (t >= 19000 && c == 4)
			best_late++;
	}
	CHECK(best_late >= 800);
	/* The best arm was tried most, and the worst least. */
	for (i = 0; i < 4; i++)
		CHECK(arms[4].alpha + arms[4].beta > arms[i].alpha + arms[i].beta);
	CHECK(arms[0].alpha + arms[0].beta < arms[3].alpha + arms[3].beta);
}

UNIT_TEST(wilson_interval_values)
{
	double		lo;
	double		hi;

	cdp_wilson_interval(5, 100, 1.96, &lo, &hi);
	CHECK_NEAR(lo, 0.02154, 5e-5);
	CHECK_NEAR(hi, 0.11175, 5e-5);
	/* 0 / 10 and 10 / 10: the closed ends are exact. */
	cdp_wilson_interval(0, 10, 1.96, &lo, &hi);
	CHECK(lo == 0.0);
	CHECK_NEAR(hi, 0.27753, 5e-5);
	cdp_wilson_interval(10, 10, 1.96, &lo, &hi);
	CHECK(hi == 1.0);
	CHECK_NEAR(lo, 0.72247, 5e-5);
	/* 50 / 100: symmetric around 1/2. */
	cdp_wilson_interval(50, 100, 1.96, &lo, &hi);
	CHECK_NEAR(lo, 0.40383, 5e-5);
	CHECK_NEAR(lo + hi, 1.0, 1e-12);
	/* z = 0: the point estimate. */
	cdp_wilson_interval(3, 12, 0.0, &lo, &hi);
	CHECK_NEAR(lo, 0.25, 1e-15);
	CHECK_NEAR(hi, 0.25, 1e-15);
	/* No trials: anything; invalid input: NaN. */
	cdp_wilson_interval(0, 0, 1.96, &lo, &hi);
	CHECK(lo == 0.0 && hi == 1.0);
	cdp_wilson_interval(11, 10, 1.96, &lo, &hi);
	CHECK(isnan(lo) && isnan(hi));
	cdp_wilson_interval(-1, 10, 1.96, &lo, &hi);
	CHECK(isnan(lo) && isnan(hi));
	cdp_wilson_interval(1, 10, -1.0, &lo, &hi);
	CHECK(isnan(lo) && isnan(hi));
	cdp_wilson_interval(1, NAN, 1.96, &lo, &hi);
	CHECK(isnan(lo) && isnan(hi));
}

static const double log_rates[5] = {0.01, 0.02, 0.03, 0.04, 0.05};

/* A uniformly random log of the five log_rates arms, one context. */
static void
make_log(CdpLogged *rows, long n, uint64_t seed)
{
	CdpRng		r;
	long		i;

	cdp_rng_seed(&r, seed);
	for (i = 0; i < n; i++)
	{
		int			a = (int) (cdp_rng_next(&r) % 5);

		rows[i].arm = a;
		rows[i].context = 0;
		rows[i].reward = cdp_rng_uniform(&r) < log_rates[a] ? 1.0 : 0.0;
		rows[i].propensity = 0.2;
	}
}

/*
 * What IPW and SNIPW estimate, computed directly: the expected reward of
 * the policy's choice at each row, its posteriors learning from every
 * logged row (one choice per row suffices: the mean of 200,000 is exact
 * enough).
 */
static double
ipw_target(const CdpLogged *rows, long n)
{
	CdpArm		arms[5];
	CdpRng		r;
	double		sum = 0.0;
	long		i;
	int			k;

	cdp_rng_seed(&r, 11);
	for (k = 0; k < 5; k++)
		arms[k] = arm(1, 1, 1, 0, 1);
	for (i = 0; i < n; i++)
	{
		sum += log_rates[cdp_thompson_choose(arms, 5, &r, 0, NULL, NULL, NULL)];
		arms[rows[i].arm].alpha += rows[i].reward;
		arms[rows[i].arm].beta += 1.0 - rows[i].reward;
	}
	return sum / (double) n;
}

/*
 * What replay estimates, computed directly: the mean reward of Thompson
 * sampling run online for `rounds` rounds on the true arms, over `runs`
 * runs; *se receives its standard error.
 */
static double
replay_target(long rounds, int runs, double *se)
{
	CdpRng		r;
	CdpRng		env;
	Moments		m = {0};
	int			run;

	cdp_rng_seed(&r, 12);
	cdp_rng_seed(&env, 13);
	for (run = 0; run < runs; run++)
	{
		CdpArm		arms[5];
		double		sum = 0.0;
		long		t;
		int			k;

		for (k = 0; k < 5; k++)
			arms[k] = arm(1, 1, 1, 0, 1);
		for (t = 0; t < rounds; t++)
		{
			int			c = cdp_thompson_choose(arms, 5, &r, 0, NULL, NULL, NULL);

			if (cdp_rng_uniform(&env) < log_rates[c])
			{
				sum += 1.0;
				arms[c].alpha += 1.0;
			}
			else
				arms[c].beta += 1.0;
		}
		add(&m, sum / (double) rounds);
	}
	*se = sqrt(variance(&m) / runs);
	return m.mean;
}

UNIT_TEST(evaluator_on_uniform_logs)
{
	CdpLogged  *rows = malloc(sizeof(CdpLogged) * N_ROWS);
	double		scratch[10];
	CdpEstimate rep;
	CdpEstimate ipw;
	CdpEstimate snipw;
	CdpEstimate again;
	double		target;
	double		se;

	if (rows == NULL)
	{
		CHECK(rows != NULL);
		return;
	}
	make_log(rows, N_ROWS, 14);
	CHECK_EQ_INT(cdp_evaluate_thompson(rows, N_ROWS, 5, 1, 1.0, 1.0, 5, 99, scratch,
									   &rep, &ipw, &snipw), 0);

	/*
	 * IPW and SNIPW: the policy learns from all 200,000 rows and is soon
	 * near the best arm's 0.05, far above the uniform logger's 0.03.
	 */
	target = ipw_target(rows, N_ROWS);
	CHECK(target > 0.0485 && target < 0.05);
	CHECK_EQ_INT(ipw.used, N_ROWS);
	CHECK(ipw.low <= target && target <= ipw.high);
	CHECK(ipw.low > 0.03 && ipw.high - ipw.low < 0.01);
	CHECK(snipw.low <= target && target <= snipw.high);
	CHECK(snipw.low > 0.03 && snipw.high - snipw.low < 0.01);
	CHECK(snipw.used > 0 && snipw.used < N_ROWS);

	/*
	 * Replay: about a fifth of the rows match, and the policy learns from
	 * those only, so it is Thompson sampling run online for that many
	 * rounds: still clearly better than uniform, and a little below 0.05
	 * (the regret of learning from 40,000 rounds of bandit feedback).
	 */
	CHECK(rep.used > 30000 && rep.used < 50000);
	target = replay_target(rep.used, 8, &se);
	CHECK(target > 0.04 && target < 0.05);
	CHECK(rep.low - 3.0 * se <= target && target <= rep.high + 3.0 * se);
	CHECK(rep.low > 0.035 && rep.low <= rep.value && rep.value <= rep.high);

	/* The same seed gives the same estimates. */
	CHECK_EQ_INT(cdp_evaluate_thompson(rows, 20000, 5, 1, 1.0, 1.0, 5, 99, scratch,
									   &again, NULL, NULL), 0);
	CHECK_EQ_INT(cdp_evaluate_thompson(rows, 20000, 5, 1, 1.0, 1.0, 5, 99, scratch,
									   &rep, NULL, NULL), 0);
	CHECK(again.value == rep.value && again.used == rep.used);

	free(rows);
}

UNIT_TEST(evaluator_contexts_and_fractional_rewards)
{
	CdpLogged  *rows = malloc(sizeof(CdpLogged) * 40000);
	double		scratch[2 * 2 * 2];
	CdpEstimate rep;
	CdpEstimate ipw;
	CdpEstimate snipw;
	CdpRng		r;
	long		i;

	if (rows == NULL)
	{
		CHECK(rows != NULL);
		return;
	}

	/*
	 * Two segments that prefer opposite arms (0.8 against 0.2), logged at
	 * random with propensity 1/2, rewards the rate itself (fractional): a
	 * policy that learns per segment earns nearly 0.8.
	 */
	cdp_rng_seed(&r, 15);
	for (i = 0; i < 40000; i++)
	{
		int			c = (int) (cdp_rng_next(&r) & 1);
		int			a = (int) (cdp_rng_next(&r) & 1);

		rows[i].context = c;
		rows[i].arm = a;
		rows[i].reward = a == c ? 0.8 : 0.2;
		rows[i].propensity = 0.5;
	}
	CHECK_EQ_INT(cdp_evaluate_thompson(rows, 40000, 2, 2, 1.0, 1.0, 8, 3, scratch,
									   &rep, &ipw, &snipw), 0);
	CHECK(rep.used > 18000 && rep.used < 21000);
	CHECK(rep.value > 0.78 && rep.value < 0.8);
	CHECK(rep.low < rep.value && rep.value < rep.high && rep.high - rep.low < 0.01);
	CHECK(ipw.low < 0.8 && ipw.high > 0.78);
	CHECK(snipw.value > 0.78 && snipw.value < 0.8);

	/* No rows: nothing counted. */
	CHECK_EQ_INT(cdp_evaluate_thompson(rows, 0, 2, 2, 1.0, 1.0, 8, 3, scratch,
									   &rep, &ipw, &snipw), 0);
	CHECK(rep.used == 0 && isnan(rep.value) && isnan(rep.low));
	CHECK(ipw.used == 0 && isnan(ipw.value));
	CHECK(snipw.used == 0 && isnan(snipw.value));
	free(rows);
}

/*
 * Two campaigns with disjoint items in one log: in each context the policy
 * offers only the arms logged there.  Were the other campaign's arms
 * offered on their prior (mean 0.5) they would win against the learnt
 * rates (about 0.05) and the logged arm would almost never be drawn: IPW
 * would estimate about 0.
 */
UNIT_TEST(evaluator_offers_only_the_arms_of_a_context)
{
	static CdpLogged rows[40000];
	static double scratch[2 * 4 * 2];
	CdpEstimate replay, ipw, snipw;
	CdpRng		rng;
	long		i;

	cdp_rng_seed(&rng, 77);
	for (i = 0; i < 40000; i++)
	{
		int			ctx = (int) (i % 2);
		int			arm = ctx * 2 + (int) (cdp_rng_next(&rng) % 2);

		rows[i].arm = arm;
		rows[i].context = ctx;
		rows[i].propensity = 0.5;
		rows[i].reward = cdp_rng_uniform(&rng) < (arm % 2 == 0 ? 0.02 : 0.08) ? 1.0 : 0.0;
	}
	CHECK(cdp_evaluate_thompson(rows, 40000, 4, 2, 1.0, 1.0, 50, 5, scratch, &replay, &ipw, &snipw) == 0);
	CHECK(ipw.value > 0.06 && ipw.value < 0.09);
	CHECK(snipw.value > 0.06 && snipw.value < 0.09);
	CHECK(replay.used > 10000);
	CHECK(ipw.low >= 0.0 && snipw.low >= 0.0 && snipw.high <= 1.0);
}

UNIT_TEST(evaluator_rejects_invalid_input)
{
	CdpLogged	rows[3] = {{0, 0, 1.0, 0.5}, {1, 1, 0.0, 0.5}, {1, 0, 0.5, 1.0}};
	CdpLogged	bad[3];
	double		scratch[8];
	CdpEstimate rep;
	CdpEstimate ipw;
	CdpEstimate snipw;

#define EVAL(r, n, arms, ctx, a0, b0, draws, s) \
	cdp_evaluate_thompson(r, n, arms, ctx, a0, b0, draws, 1, s, &rep, &ipw, &snipw)

	CHECK_EQ_INT(EVAL(rows, 3, 2, 2, 1.0, 1.0, 4, scratch), 0);
	CHECK_EQ_INT(ipw.used, 3);
	CHECK_EQ_INT(EVAL(rows, -1, 2, 2, 1.0, 1.0, 4, scratch), -1);
	CHECK_EQ_INT(EVAL(NULL, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	CHECK_EQ_INT(EVAL(rows, 3, 2, 2, 1.0, 1.0, 4, NULL), -1);
	CHECK_EQ_INT(EVAL(rows, 3, 0, 2, 1.0, 1.0, 4, scratch), -1);
	CHECK_EQ_INT(EVAL(rows, 3, 2, 0, 1.0, 1.0, 4, scratch), -1);
	CHECK_EQ_INT(EVAL(rows, 3, 2, 2, 0.0, 1.0, 4, scratch), -1);
	CHECK_EQ_INT(EVAL(rows, 3, 2, 2, 1.0, NAN, 4, scratch), -1);
	CHECK_EQ_INT(EVAL(rows, 3, 2, 2, 1.0, 1.0, 0, scratch), -1);
	/* Arm and context out of range. */
	CHECK_EQ_INT(EVAL(rows, 3, 1, 2, 1.0, 1.0, 4, scratch), -1);
	CHECK_EQ_INT(EVAL(rows, 3, 2, 1, 1.0, 1.0, 4, scratch), -1);
	memcpy(bad, rows, sizeof(rows));
	bad[2].arm = -1;
	CHECK_EQ_INT(EVAL(bad, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	memcpy(bad, rows, sizeof(rows));
	bad[1].context = -1;
	CHECK_EQ_INT(EVAL(bad, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	/* Rewards outside [0, 1], propensities outside (0, 1]. */
	memcpy(bad, rows, sizeof(rows));
	bad[0].reward = 1.5;
	CHECK_EQ_INT(EVAL(bad, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	bad[0].reward = NAN;
	CHECK_EQ_INT(EVAL(bad, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	memcpy(bad, rows, sizeof(rows));
	bad[2].propensity = 0.0;
	CHECK_EQ_INT(EVAL(bad, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	bad[2].propensity = -0.5;
	CHECK_EQ_INT(EVAL(bad, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	bad[2].propensity = 1.5;
	CHECK_EQ_INT(EVAL(bad, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	/* The estimates are left alone on error. */
	rep.used = -7;
	CHECK_EQ_INT(EVAL(bad, 3, 2, 2, 1.0, 1.0, 4, scratch), -1);
	CHECK_EQ_INT(rep.used, -7);
#undef EVAL
}

const unit_case unit_tests[] = {
	UNIT_CASE(generator_matches_the_reference),
	UNIT_CASE(uniform_is_open_and_flat),
	UNIT_CASE(normal_moments),
	UNIT_CASE(gamma_moments),
	UNIT_CASE(beta_moments),
	UNIT_CASE(beta_at_extreme_parameters),
	UNIT_CASE(choose_eligibility_and_errors),
	UNIT_CASE(choose_dominance_ties_and_cost),
	UNIT_CASE(action_probability_matches_simulation),
	UNIT_CASE(learning_finds_the_best_arm),
	UNIT_CASE(wilson_interval_values),
	UNIT_CASE(evaluator_on_uniform_logs),
	UNIT_CASE(evaluator_contexts_and_fractional_rewards),
	UNIT_CASE(evaluator_offers_only_the_arms_of_a_context),
	UNIT_CASE(evaluator_rejects_invalid_input),
	UNIT_END
};
