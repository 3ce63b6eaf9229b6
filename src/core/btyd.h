/*
 * btyd.h
 *	  "Buy till you die" customer-lifetime-value models: the BG/NBD and
 *	  Pareto/NBD models of repeat purchasing, the Gamma-Gamma model of spend,
 *	  their log-likelihoods, a maximum-likelihood fitter, and the quantities
 *	  derived from fitted parameters (P(alive), expected purchases, expected
 *	  spend, discounted CLV).
 *
 * Data.  A customer is summarised by
 *	  x	   the number of repeat purchases (an integer >= 0),
 *	  t_x  the time of the last purchase, counted from the first purchase
 *		   (0 <= t_x <= T; ignored, i.e. taken as 0, when x = 0),
 *	  T	   the customer's age: time from the first purchase to the end of
 *		   the calibration period (T > 0),
 * all times in one unit of the caller's choice (days, weeks); fitted scale
 * parameters (alpha, beta) are in that unit, and every later call must use
 * it too.  An optional weight[] counts identical customers (NULL = 1 each);
 * cdp_btyd_compress() sorts and folds identical (x, t_x, T) rows into
 * weights, which makes fits on whole-day data fast.  The Gamma-Gamma model
 * takes x and the mean value m of the repeat transactions; only customers
 * with x > 0 and m > 0 take part.
 *
 * Parameters are passed as arrays, in the order of the literature:
 *	  BG/NBD		{r, alpha, a, b}		(Fader, Hardie & Lee 2005)
 *	  Pareto/NBD	{r, alpha, s, beta}		(Schmittlein et al. 1987, in the
 *											 formulation of Fader & Hardie 2005)
 *	  Gamma-Gamma	{p, q, gamma}			(Fader, Hardie & Lee 2005, "RFM and
 *											 CLV"; lifetimes calls gamma "v")
 *	  NBD			{r, alpha}				(Ehrenberg 1959: Poisson purchases
 *											 at a gamma-distributed rate, no
 *											 dropout; the limit of BG/NBD as
 *											 a -> 0 and of Pareto/NBD as
 *											 s -> 0)
 *
 * Every function returns a CdpBtydStatus (0 = CDP_BTYD_OK) and writes its
 * result through a pointer; nothing aborts or exits.  There is no global
 * state, so all functions are reentrant and thread-safe.  The fitters and
 * cdp_btyd_compress allocate scratch memory with malloc and free it before
 * returning.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#ifndef CDP_BTYD_H
#define CDP_BTYD_H

#include <stddef.h>

/* At most this many parameters in any model. */
#define CDP_BTYD_MAX_PARAMS 4

/* A fit needs customers of total weight at least this. */
#define CDP_BTYD_MIN_CUSTOMERS 5

typedef enum CdpBtydModel
{
	CDP_BTYD_BGNBD = 1,			/* {r, alpha, a, b} */
	CDP_BTYD_PARETO_NBD,		/* {r, alpha, s, beta} */
	CDP_BTYD_GAMMA_GAMMA,		/* {p, q, gamma} */
	CDP_BTYD_NBD				/* {r, alpha}: BG/NBD or Pareto/NBD without
								 * dropout (a -> 0, s -> 0) */
} CdpBtydModel;

typedef enum CdpBtydStatus
{
	CDP_BTYD_OK = 0,
	CDP_BTYD_EINVAL,			/* bad argument: NULL, NaN/inf, x < 0 or not
								 * whole, T <= 0, t_x outside [0, T], weight <
								 * 0, parameter <= 0 */
	CDP_BTYD_ENOMEM,			/* out of memory */
	CDP_BTYD_ETOOFEW,			/* total weight below CDP_BTYD_MIN_CUSTOMERS */
	CDP_BTYD_ENOREPEAT,			/* no customer with a repeat purchase */
	CDP_BTYD_ENOTIDENT,			/* the data do not identify the model: the
								 * likelihood is flat or its maximum lies at
								 * the parameter bounds */
	CDP_BTYD_ENOCONV,			/* an iteration (optimizer, series,
								 * quadrature) did not converge */
	CDP_BTYD_EDOMAIN,			/* the quantity is undefined or infinite for
								 * these parameters (e.g. the Gamma-Gamma mean
								 * spend when q <= 1) */
	CDP_BTYD_EINTR				/* the caller's interrupted() asked to stop */
} CdpBtydStatus;

/* Options of a fit; a NULL pointer or zero fields mean the defaults. */
typedef struct CdpBtydOptions
{
	double		penalizer;		/* adds penalizer * sum(param^2) to the mean
								 * negative log-likelihood per customer, as
								 * lifetimes' penalizer_coef; default 0 */
	int			max_iter;		/* BFGS iterations per start; default 500 */
	double		gtol;			/* stop when every component of the gradient
								 * of the mean negative log-likelihood in
								 * log-parameters is below this; default
								 * 1e-8 (1e-7 for Pareto/NBD, whose gradient
								 * is numerical) */
	int			(*interrupted) (void *arg);	/* if set, asked before every
												 * likelihood evaluation: a
												 * nonzero answer stops the
												 * fit with EINTR */
	void	   *interrupt_arg;
} CdpBtydOptions;

/* The result of a fit. */
typedef struct CdpBtydFit
{
	CdpBtydModel model;
	int			status;			/* CdpBtydStatus, as returned */
	int			nparams;		/* 4, or 3 for Gamma-Gamma */
	double		params[CDP_BTYD_MAX_PARAMS];	/* the estimates, in the order
												 * above; when status is not OK
												 * only the last iterate, for
												 * diagnosis */
	double		se[CDP_BTYD_MAX_PARAMS];	/* asymptotic standard errors
											 * (inverse observed information,
											 * delta method); NaN if unknown */
	double		ll;				/* log-likelihood at params (unpenalized) */
	double		n_customers;	/* sum of the weights used */
	size_t		n_rows;			/* distinct rows after compression */
	int			iterations;		/* optimizer iterations over all starts */
	int			evaluations;	/* likelihood evaluations over all starts */
	int			converged;		/* 1 if the optimizer met its tolerance */
	char		message[160];	/* what went wrong, or "ok" */
} CdpBtydFit;

/* A short description of a status code (a static string). */
extern const char *cdp_btyd_strerror(int status);

/* ---- data ---------------------------------------------------------------- */

/*
 * Checks one customer (x, t_x, T): finite, x a whole number >= 0, T > 0,
 * 0 <= t_x <= T.  Returns CDP_BTYD_OK or CDP_BTYD_EINVAL.
 */
extern int	cdp_btyd_check_customer(double x, double t_x, double T);

/*
 * Sorts the n rows (x, t_x, T, weight) in place by (x, t_x, T), folds
 * identical rows into one whose weight is the sum, drops rows of weight 0,
 * and stores the number of rows left in *n_out.  weight must hold n weights
 * (1.0 for plain customers).  t_x is set to 0 where x = 0.  Returns EINVAL
 * if a row is invalid (see cdp_btyd_check_customer) or a weight is negative
 * or not finite, ENOMEM if scratch memory is short.
 */
extern int	cdp_btyd_compress(double *x, double *t_x, double *T, double *weight,
							  size_t n, size_t *n_out);

/*
 * The same for Gamma-Gamma data (x, m, weight): keeps the rows with x > 0
 * and m > 0, folds identical (x, m).  EINVAL if a value is not finite or
 * negative, or x is not whole.
 */
extern int	cdp_btyd_compress_spend(double *x, double *m, double *weight,
									size_t n, size_t *n_out);

/* ---- log-likelihoods (sums over customers, weighted) --------------------- */

/*
 * BG/NBD log-likelihood of n customers; grad, if not NULL, receives the 4
 * partial derivatives d LL / d {r, alpha, a, b}.
 */
extern int	cdp_btyd_bgnbd_ll(const double *params, const double *x,
							  const double *t_x, const double *T,
							  const double *weight, size_t n,
							  double *ll, double *grad);

/* Pareto/NBD log-likelihood of n customers. */
extern int	cdp_btyd_pareto_ll(const double *params, const double *x,
							   const double *t_x, const double *T,
							   const double *weight, size_t n, double *ll);

/*
 * Gamma-Gamma log-likelihood of the customers with x > 0 and m > 0 (the
 * density of the observed mean spend m given x); grad as for BG/NBD.
 */
extern int	cdp_btyd_gg_ll(const double *params, const double *x,
						   const double *m, const double *weight, size_t n,
						   double *ll, double *grad);

/* ---- fitting ------------------------------------------------------------- */

/*
 * Maximum-likelihood fits.  The data need not be compressed (they are
 * copied and compressed internally); weight may be NULL.  Times (and, for
 * Gamma-Gamma, spends) are rescaled by their mean internally; the search
 * runs over log-parameters, each bounded to [1e-6, 1e6] on that scale, by
 * BFGS with a backtracking line search from two starting points, with a
 * Nelder-Mead fallback (analytic gradients for BG/NBD and Gamma-Gamma,
 * central differences for Pareto/NBD).  Returns OK, or EINVAL, ENOMEM,
 * ETOOFEW, ENOREPEAT (BG/NBD, Pareto/NBD), ENOTIDENT or ENOCONV;
 * fit->status and fit->message say the same.  ENOTIDENT means that at the
 * best point found a parameter is within a factor 10 of its bound, or the
 * observed information matrix is singular, or a parameter's relative
 * standard error exceeds 5 (1 where the optimizer stalled), i.e. the
 * likelihood is flat, typically because a parameter runs to 0 or
 * infinity.  opt may be NULL.
 */
extern int	cdp_btyd_fit_bgnbd(const double *x, const double *t_x,
							   const double *T, const double *weight,
							   size_t n, const CdpBtydOptions *opt,
							   CdpBtydFit *fit);
extern int	cdp_btyd_fit_pareto(const double *x, const double *t_x,
								const double *T, const double *weight,
								size_t n, const CdpBtydOptions *opt,
								CdpBtydFit *fit);
/*
 * The NBD fit: the purchase model without dropout, the limit both models
 * above reach when the data do not identify their dropout (a or s runs to
 * 0).  Its log-likelihood is the BG/NBD one at a = 0:
 *	  sum_i lnG(r + x) - lnG(r) + r ln alpha - (r + x) ln(alpha + T).
 */
extern int	cdp_btyd_fit_nbd(const double *x, const double *t_x,
							 const double *T, const double *weight,
							 size_t n, const CdpBtydOptions *opt,
							 CdpBtydFit *fit);
extern int	cdp_btyd_fit_gg(const double *x, const double *m,
							const double *weight, size_t n,
							const CdpBtydOptions *opt, CdpBtydFit *fit);

/* ---- applying fitted models ---------------------------------------------- */

/* BG/NBD: probability that a customer with history (x, t_x, T) is alive. */
extern int	cdp_btyd_bgnbd_p_alive(const double *params, double x, double t_x,
								   double T, double *out);

/*
 * BG/NBD: expected number of purchases in (T, T + t] of a customer with
 * history (x, t_x, T) (FHL 2005 eq. 10).
 */
extern int	cdp_btyd_bgnbd_expected(const double *params, double x,
									double t_x, double T, double t,
									double *out);

/* BG/NBD: expected purchases E[X(t)] of a new customer in (0, t]. */
extern int	cdp_btyd_bgnbd_expected_new(const double *params, double t,
										double *out);

/* BG/NBD: P(X(t) = k), k repeat purchases by a new customer in (0, t]. */
extern int	cdp_btyd_bgnbd_prob(const double *params, double t, double k,
								double *out);

/*
 * NBD: expected purchases in (T, T + t] of a customer with x purchases
 * after the first in T, t (r + x) / (alpha + T); nobody drops out, so its
 * P(alive) is 1.
 */
extern int	cdp_btyd_nbd_expected(const double *params, double x, double t_x,
								  double T, double t, double *out);

/* Pareto/NBD: probability that a customer with history (x, t_x, T) is alive. */
extern int	cdp_btyd_pareto_p_alive(const double *params, double x,
									double t_x, double T, double *out);

/* Pareto/NBD: expected number of purchases in (T, T + t]. */
extern int	cdp_btyd_pareto_expected(const double *params, double x,
									 double t_x, double T, double t,
									 double *out);

/* Pareto/NBD: expected purchases E[X(t)] of a new customer in (0, t]. */
extern int	cdp_btyd_pareto_expected_new(const double *params, double t,
										 double *out);

/*
 * Gamma-Gamma: expected value of a customer's future transactions given x
 * repeat transactions of mean value m,
 *	  E[M | x, m] = p (gamma + x m) / (p x + q - 1);
 * for x = 0 the population mean p gamma / (q - 1).  EDOMAIN when the
 * denominator is not positive.
 */
extern int	cdp_btyd_gg_expected_value(const double *params, double x,
									   double m, double *out);

/*
 * Customer lifetime value: the discounted margin of the purchases expected
 * over the next `periods` periods of length `period_length` (model time
 * units; e.g. 30 for months when the model is in days):
 *
 *	  CLV = sum_{k=1..periods} margin * value * (E[Y(k L)] - E[Y((k-1) L)])
 *								/ (1 + discount_rate)^k
 *
 * where E[Y(t)] is the model's conditional expected number of purchases in
 * (T, T + t] for the customer (x, t_x, T), L = period_length, value the
 * expected value of a transaction (e.g. from cdp_btyd_gg_expected_value)
 * and margin the share of it that is profit (1 for revenue).  This is
 * lifetimes' customer_lifetime_value with a margin factor.  model is
 * CDP_BTYD_BGNBD, CDP_BTYD_PARETO_NBD or CDP_BTYD_NBD; periods >= 0 (at most 100000);
 * discount_rate > -1 per period.
 */
extern int	cdp_btyd_clv(CdpBtydModel model, const double *params, double x,
						 double t_x, double T, double value, double margin,
						 int periods, double period_length,
						 double discount_rate, double *out);

/* ---- special functions --------------------------------------------------- */

/*
 * The Gauss hypergeometric function 2F1(a, b; c; z) for real z < 1, as
 * log|2F1| in *log_abs and its sign (+1, -1, or 0 when it is 0) in *sign.
 * For z < 0 it uses the Pfaff transformation (argument z / (z - 1) in
 * (0, 1)), for 0 <= z < 1 the Euler transformation when that shortens the
 * series; the series is summed with rescaling, so values far beyond the
 * range of a double are fine.  EDOMAIN if z >= 1 or c is a whole number
 * <= 0, ENOCONV if 200,000 terms do not reach full precision (|z| very
 * close to 1).
 */
extern int	cdp_btyd_log_hyp2f1(double a, double b, double c, double z,
								double *log_abs, int *sign);

#endif							/* CDP_BTYD_H */
