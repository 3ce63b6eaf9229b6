/*
 * bandit.h
 *	  Beta-Bernoulli Thompson sampling for choosing offers, and its offline
 *	  evaluation on logged bandit feedback.
 *
 * Random numbers.  CdpRng is xoshiro256** (Blackman & Vigna 2018) seeded by
 * splitmix64, so a seed gives the same integer sequence on every platform;
 * the floating-point draws use only +, *, /, sqrt, log and exp, so they
 * agree wherever the C library's log and exp do.  The state is a plain
 * struct of four integers that the caller owns: no global state, every
 * function is reentrant.  cdp_hash64 mixes two integers (a seed and a
 * profile id, say) into a seed, so that each decision can have its own
 * reproducible stream.
 *
 * Thompson sampling.  Each arm (offer) has a Beta(alpha, beta) posterior of
 * its success rate: the prior's parameters plus the successes and the
 * failures seen.  A round draws a rate p from each eligible arm's posterior
 * and picks the arm of highest p * value - cost.  The draws are stable for
 * parameters from about 1e-3 up to 1e9 and beyond: gamma variates of shapes
 * below 1 are combined in log space, so a beta draw is never NaN.
 *
 * Offline evaluation.  cdp_evaluate_thompson replays a log of decisions
 * taken by another (logging) policy and estimates the reward per decision
 * that Thompson sampling would have had, learning as it goes, by replay
 * (Li et al. 2011), inverse propensity weighting (IPW) and self-normalized
 * IPW (SNIPW).
 *
 * Nothing here allocates memory: the evaluator works in a scratch array
 * that the caller provides.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#ifndef CDP_BANDIT_H
#define CDP_BANDIT_H

#include <stdint.h>

/* Results of cdp_thompson_choose that are not an arm's index. */
#define CDP_BANDIT_NONE (-1)	/* no arm is eligible */
#define CDP_BANDIT_EBADARG (-2) /* n < 0, or an eligible arm is invalid */

/* The state of the generator; seed it with cdp_rng_seed. */
typedef struct CdpRng
{
	uint64_t	s[4];
} CdpRng;

/* Seeds the generator: its state is four outputs of splitmix64(seed). */
extern void cdp_rng_seed(CdpRng *r, uint64_t seed);

/* The next 64 random bits (xoshiro256**). */
extern uint64_t cdp_rng_next(CdpRng *r);

/* A uniform draw in (0, 1), never 0 or 1: (k + 0.5) / 2^53 for 53 bits k. */
extern double cdp_rng_uniform(CdpRng *r);

/* A standard normal draw (Marsaglia's polar method). */
extern double cdp_rng_normal(CdpRng *r);

/*
 * A Gamma(shape, 1) draw, for shape > 0: Marsaglia and Tsang's method, and
 * for shape < 1 a Gamma(shape + 1) draw times U^(1/shape).  For very small
 * shapes the result may underflow to 0 (the exact draw is below the
 * smallest double); NaN when shape is not a positive finite number.
 */
extern double cdp_rng_gamma(CdpRng *r, double shape);

/*
 * A Beta(a, b) draw in [0, 1] (0 or 1 only when the exact draw rounds to
 * them), for a, b > 0; NaN when a or b is not a positive finite number.
 */
extern double cdp_rng_beta(CdpRng *r, double a, double b);

/* Mixes two values (a seed and a profile id, say) into a seed. */
extern uint64_t cdp_hash64(uint64_t a, uint64_t b);

/* One arm (offer) of the bandit. */
typedef struct CdpArm
{
	double		alpha;			/* prior + successes, > 0 */
	double		beta;			/* prior + failures, > 0 */
	double		value;			/* value (times weight) of a success */
	double		cost;			/* cost of the contact, subtracted from the
								 * score */
	int			eligible;		/* 0: the arm does not compete */
} CdpArm;

/*
 * One Thompson round: draws p_i ~ Beta(alpha_i, beta_i) for each eligible
 * arm, in index order, and scores it p_i * value_i - cost_i; writes
 * sample[i] and score[i] (NaN for ineligible arms; either array may be
 * NULL).  Returns the index of the highest score (ties: the lowest index),
 * CDP_BANDIT_NONE when no arm is eligible, or CDP_BANDIT_EBADARG when
 * n < 0 or an eligible arm has alpha or beta not a positive finite number,
 * or value or cost not finite (nothing drawn then).
 *
 * If action_prob is not NULL, it receives an estimate of the probability
 * that the policy picks the chosen arm: with draws > 0, `draws` more
 * independent rounds are run and *action_prob = (wins + 1) / (draws + 1),
 * the real round counting as one win, so it lies in (0, 1]; exactly 1 when
 * a single arm is eligible; NaN when draws <= 0 or no arm is chosen.
 */
extern int	cdp_thompson_choose(const CdpArm *arms, int n, CdpRng *rng, int draws,
								double *sample, double *score, double *action_prob);

/*
 * The Wilson score interval of a Bernoulli rate from successes out of
 * trials, z the normal quantile (1.96 for 95%).  [0, 1] when trials is 0;
 * NaN bounds when trials < 0, successes is outside [0, trials], z < 0, or
 * any of them is not finite.
 */
extern void cdp_wilson_interval(double successes, double trials, double z,
								double *low, double *high);

/* One logged decision. */
typedef struct CdpLogged
{
	int			arm;			/* the arm taken, in [0, n_arms) */
	int			context;		/* its segment, in [0, n_contexts) */
	double		reward;			/* in [0, 1] */
	double		propensity;		/* in (0, 1]: the logging policy's
								 * probability of taking that arm */
} CdpLogged;

/* An estimate of the reward per decision. */
typedef struct CdpEstimate
{
	double		value;			/* the estimate; NaN when no row counted */
	double		low;			/* its 95% interval */
	double		high;
	long		used;			/* rows that contributed */
} CdpEstimate;

/*
 * Offline evaluation of Bernoulli Thompson sampling (one posterior per arm
 * and context, all starting at Beta(a0, b0); in each context the policy
 * offers only the arms logged in that context; a reward r adds r to alpha and
 * 1 - r to beta) on n logged rows, in log order.
 *
 * Replay (Li et al. 2011): for each row, the policy draws its arm from its
 * current posteriors of the row's context; when it is the logged arm, the
 * row counts (its reward is added) and the posterior of that arm and
 * context learns from it, else the row is skipped.  value is the mean
 * reward of the used rows; the interval is Wilson's when all their rewards
 * are 0 or 1, else normal (mean +- 1.96 sd / sqrt(used)).  Unbiased only
 * for uniformly random logging.
 *
 * IPW: for each row, pi_i, the probability that the policy (its posteriors
 * before the row) takes the logged arm, is estimated by `draws` rounds
 * (wins / draws, each round exactly as the policy chooses);
 * term_i = pi_i * reward_i / propensity_i; value is the mean of the terms
 * and the interval mean +- 1.96 sd / sqrt(n).  Then the posterior of the
 * logged arm and context learns from the row: every row does, as the
 * reward of the logged arm is observed.  used = n.
 *
 * SNIPW (self-normalized IPW), from the same pi_i:
 * sum(pi_i r_i / p_i) / sum(pi_i / p_i), its interval by the delta method;
 * used = the rows of pi_i > 0.
 *
 * Each estimator has its own reproducible random stream derived from seed.
 * scratch: 2 * n_arms * n_contexts doubles (the posteriors), provided by
 * the caller.  replay, ipw and snipw may be NULL (not computed).  Returns 0,
 * or -1 on invalid input (nothing written then): n < 0, rows or scratch
 * NULL, n_arms or n_contexts < 1 (or too large), a0 or b0 not positive and
 * finite, draws < 1, or a row's arm or context out of range, reward not in
 * [0, 1] or propensity not in (0, 1].
 */
extern int	cdp_evaluate_thompson(const CdpLogged *rows, long n, int n_arms, int n_contexts,
								  double a0, double b0, int draws, uint64_t seed,
								  double *scratch, CdpEstimate *replay, CdpEstimate *ipw,
								  CdpEstimate *snipw);

#endif							/* CDP_BANDIT_H */
