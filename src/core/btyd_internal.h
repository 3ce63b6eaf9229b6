/*
 * btyd_internal.h
 *	  Declarations shared by the btyd*.c files and visible to the unit
 *	  test: customer rows, input checks, special functions (log-gamma,
 *	  digamma, the Pareto/NBD integral) and the bounded minimizer.  Not part
 *	  of the API.
 *
 * Pure C, no PostgreSQL headers.
 */
#ifndef CDP_BTYD_INTERNAL_H
#define CDP_BTYD_INTERNAL_H

#include "btyd.h"

/* ---- btyd.c -------------------------------------------------------------- */

/* A customer row (x, t_x, T) with its weight. */
typedef struct CdpBtydRow
{
	double		x;
	double		tx;
	double		T;
	double		w;
} CdpBtydRow;

/* A Gamma-Gamma row (x, m) with its weight. */
typedef struct CdpBtydSpendRow
{
	double		x;
	double		m;
	double		w;
} CdpBtydSpendRow;

/* OK if the k parameters are finite and positive, else EINVAL. */
extern int	cdp_btyd_check_params(const double *p, int k);

/*
 * Copies the valid rows of weight > 0 into a new malloc'd array (t_x = 0
 * where x = 0), sorted by (x, t_x, T) and folded; *out is NULL when no row
 * is left.  EINVAL on an invalid row, ENOMEM.
 */
extern int	cdp_btyd_collect_rows(const double *x, const double *t_x,
								  const double *T, const double *weight,
								  size_t n, CdpBtydRow **out, size_t *n_out);

/* The same for Gamma-Gamma rows: only x > 0 and m > 0 are kept. */
extern int	cdp_btyd_collect_spend(const double *x, const double *m,
								   const double *weight, size_t n,
								   CdpBtydSpendRow **out, size_t *n_out);

/*
 * The two parts of the Pareto/NBD likelihood of one customer, in logs:
 * *first = log[(alpha+T)^-(r+x) (beta+T)^-s], *second = log[s J].
 */
extern int	cdp_btyd_pareto_parts(const double *p, double x, double tx,
								  double T, double *first, double *second);

/* ---- btyd_math.c --------------------------------------------------------- */

/* log Gamma(x) for x > 0 (no signgam, so reentrant). */
extern double cdp_btyd_lgamma(double x);

/* The digamma function psi(x) = d/dx log Gamma(x), x > 0. */
extern double cdp_btyd_digamma(double x);

/* log(exp(u) + exp(v)), exact for infinite arguments. */
extern double cdp_btyd_logaddexp(double u, double v);

/*
 * log of the Pareto/NBD integral
 *	  J = int_{t0}^{t1} (alpha + tau)^-A (beta + tau)^-B d tau,
 * A > 0, B > 0, A + B > 1, 0 <= t0 <= t1 (t1 may be +inf): by the 2F1
 * series when its argument is small enough, else by quadrature.  -inf
 * when t0 == t1.
 */
extern int	cdp_btyd_pnbd_log_integral(double alpha, double beta, double A,
									   double B, double t0, double t1,
									   double *log_j);

/*
 * log of the tail int_t^inf of the same integrand, from the 2F1 series;
 * returns ENOCONV without trying when the series argument exceeds the
 * threshold at which quadrature is preferred.
 */
extern int	cdp_btyd_pnbd_log_tail(double alpha, double beta, double A,
								   double B, double t, double *log_i);

/* The same integral over [t0, t1] (finite) by Gauss-Legendre quadrature. */
extern int	cdp_btyd_pnbd_log_quad(double alpha, double beta, double A,
								   double B, double t0, double t1,
								   double *log_j);

/* ---- btyd_optim.c -------------------------------------------------------- */

/*
 * An objective: returns f(theta) (+inf or NaN where undefined) and, when
 * grad is not NULL and the problem has an analytic gradient, df/dtheta.
 */
typedef double (*CdpBtydObjective) (const double *theta, double *grad,
									void *arg);

typedef struct CdpBtydProblem
{
	CdpBtydObjective fn;
	void	   *arg;
	int			k;				/* dimension, 1..CDP_BTYD_MAX_PARAMS */
	int			analytic_grad;	/* else central differences */
	double		lo;				/* box on every component of theta */
	double		hi;
	int			max_iter;
	double		gtol;
	int			(*interrupted) (void *arg);	/* see CdpBtydOptions */
	void	   *interrupt_arg;
} CdpBtydProblem;

typedef struct CdpBtydMinimum
{
	double		theta[CDP_BTYD_MAX_PARAMS];
	double		f;
	double		grad[CDP_BTYD_MAX_PARAMS];
	double		gnorm;			/* max |grad| over components not held at a
								 * bound */
	int			iterations;
	int			evaluations;
	int			converged;
} CdpBtydMinimum;

/*
 * Minimizes pb->fn from theta0 (inside the box) by BFGS with a backtracking
 * line search, falling back to Nelder-Mead when BFGS stalls; returns OK
 * (converged or not: see min->converged) or EDOMAIN when f is not finite at
 * theta0.
 */
extern int	cdp_btyd_minimize(const CdpBtydProblem *pb, const double *theta0,
							  CdpBtydMinimum *min);

/*
 * The Hessian of pb->fn at theta (k x k, row-major) by central differences
 * of the gradient (analytic or numerical); adds the evaluations to *evals.
 */
extern int	cdp_btyd_hessian(const CdpBtydProblem *pb, const double *theta,
							 double *hess, int *evals);

#endif							/* CDP_BTYD_INTERNAL_H */
