/*
 * btyd_apply.c
 *	  What fitted BTYD models say about customers (see btyd.h): P(alive),
 *	  conditional and unconditional expected purchases and the BG/NBD
 *	  purchase distribution, the Gamma-Gamma expected spend, and the
 *	  discounted CLV.
 *
 * Formulas of Fader, Hardie & Lee (2005) for the BG/NBD (eqs. 8-10) and of
 * Fader & Hardie (2005) for the Pareto/NBD, rewritten where the published
 * form cancels or divides by zero (a = 1, s = 1, large x).
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "btyd_internal.h"

#include <math.h>

/* Most terms of the series of the BG/NBD expectation. */
#define SERIES_MAX_TERMS 200000

/* Most periods of a CLV sum. */
#define CLV_MAX_PERIODS 100000

/*
 * Checks (params, customer) for the per-customer functions, and sets *out
 * to NaN until there is a result.
 */
static int
check_customer_call(const double *params, double x, double t_x, double T,
					double *out)
{
	if (out == NULL)
		return CDP_BTYD_EINVAL;
	*out = NAN;
	if (cdp_btyd_check_params(params, 4) != CDP_BTYD_OK)
		return CDP_BTYD_EINVAL;
	return cdp_btyd_check_customer(x, x > 0.0 ? t_x : 0.0, T);
}

/* Sets *out (if any) to NaN until there is a result; EINVAL if NULL. */
static int
clear_out(double *out)
{
	if (out == NULL)
		return CDP_BTYD_EINVAL;
	*out = NAN;
	return CDP_BTYD_OK;
}

/* BG/NBD P(alive | x, t_x, T). */
int
cdp_btyd_bgnbd_p_alive(const double *params, double x, double t_x, double T,
					   double *out)
{
	double		r = params ? params[0] : 0.0,
				al = params ? params[1] : 0.0,
				a = params ? params[2] : 0.0,
				b = params ? params[3] : 0.0;
	double		lo;
	int			st = check_customer_call(params, x, t_x, T, out);

	if (st != CDP_BTYD_OK)
		return st;
	if (x == 0.0)
	{
		*out = 1.0;
		return CDP_BTYD_OK;
	}
	/* 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) */
	lo = log(a) - log(b + x - 1.0) + (r + x) * log1p((T - t_x) / (al + t_x));
	*out = exp(-cdp_btyd_logaddexp(0.0, lo));
	return CDP_BTYD_OK;
}

/*
 * (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x)
 *						 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))],
 * the BG/NBD expectation before the P(alive) factor (x = T = 0 gives the
 * unconditional E[X(t)]).  Euler's transformation turns the bracket into
 * 1 - (1-z)^e 2F1(p, e; c; z) with e = a-1, c = a+b+x-1, p = a+b-1-r, and
 * 2F1 = 1 + (e/c) S, so the result is -c expm1(e log(1-z))/e - (1-z)^e S,
 * finite at a = 1 and for c near 0.
 */
static int
bgnbd_core(const double *params, double x, double T, double t, double *out)
{
	double		r = params[0],
				al = params[1],
				a = params[2],
				b = params[3];
	double		e = a - 1.0,
				c = a + b + x - 1.0,
				p = a + b - 1.0 - r;
	double		z,
				L,
				E1,
				sum = 0.0,
				term,
				kmin,
				res;
	int			k;

	if (t == 0.0)
	{
		*out = 0.0;
		return CDP_BTYD_OK;
	}
	z = t / (al + T + t);
	L = -log1p(t / (al + T));
	E1 = (e == 0.0) ? -c * L : -c * expm1(e * L) / e;
	kmin = fmax(fmax(-p, -e), fmax(-c, 0.0));
	term = p * z;
	for (k = 1; k <= SERIES_MAX_TERMS; k++)
	{
		sum += term;
		if (k > kmin)
		{
			double		rho = z * fmax(fabs((p + k) / (c + k)), 1.0) *
				fmax(fabs((e + k) / (1.0 + k)), 1.0);

			if (rho < 1.0 && fabs(term) * rho / (1.0 - rho) <=
				1e-17 * (fabs(sum) + fabs(E1)))
				break;
		}
		term *= (p + k) * (e + k) * z / ((c + k) * (k + 1.0));
		if (term == 0.0)
			break;
	}
	if (k > SERIES_MAX_TERMS)
		return CDP_BTYD_ENOCONV;
	res = E1 - exp(e * L) * sum;
	if (!isfinite(res))
		return CDP_BTYD_EDOMAIN;
	*out = fmax(res, 0.0);
	return CDP_BTYD_OK;
}

/* BG/NBD E[Y(t) | x, t_x, T] (FHL 2005 eq. 10). */
int
cdp_btyd_bgnbd_expected(const double *params, double x, double t_x,
						double T, double t, double *out)
{
	double		pa,
				core;
	int			st;

	if (clear_out(out) != CDP_BTYD_OK)
		return CDP_BTYD_EINVAL;
	st = cdp_btyd_bgnbd_p_alive(params, x, t_x, T, &pa);
	if (st != CDP_BTYD_OK)
		return st;
	if (!isfinite(t) || t < 0.0)
		return CDP_BTYD_EINVAL;
	st = bgnbd_core(params, x, T, t, &core);
	if (st != CDP_BTYD_OK)
		return st;
	*out = pa * core;
	return CDP_BTYD_OK;
}

/* NBD E[Y(t) | x, t_x, T] = t (r + x) / (alpha + T). */
int
cdp_btyd_nbd_expected(const double *params, double x, double t_x, double T,
					  double t, double *out)
{
	if (clear_out(out) != CDP_BTYD_OK ||
		cdp_btyd_check_params(params, 2) != CDP_BTYD_OK ||
		cdp_btyd_check_customer(x, x > 0.0 ? t_x : 0.0, T) != CDP_BTYD_OK ||
		!isfinite(t) || t < 0.0)
		return CDP_BTYD_EINVAL;
	*out = t * (params[0] + x) / (params[1] + T);
	return isfinite(*out) ? CDP_BTYD_OK : CDP_BTYD_EDOMAIN;
}

/* BG/NBD E[X(t)] of a new customer. */
int
cdp_btyd_bgnbd_expected_new(const double *params, double t, double *out)
{
	if (clear_out(out) != CDP_BTYD_OK ||
		cdp_btyd_check_params(params, 4) != CDP_BTYD_OK ||
		!isfinite(t) || t < 0.0)
		return CDP_BTYD_EINVAL;
	return bgnbd_core(params, 0.0, 0.0, t, out);
}

/* log B(u, v). */
static double
lbeta(double u, double v)
{
	return cdp_btyd_lgamma(u) + cdp_btyd_lgamma(v) - cdp_btyd_lgamma(u + v);
}

/*
 * BG/NBD P(X(t) = k) (FHL 2005 eq. 8):
 *	  B(a, b+k)/B(a, b) NB(k) + [k>0] B(a+1, b+k-1)/B(a, b) P(NB >= k),
 * NB the negative binomial with pmf Gamma(r+j)/(Gamma(r) j!) (1-q)^r q^j,
 * q = t/(alpha+t); P(NB >= k) is one minus the head sum, or the tail
 * summed directly when that is small (and the sum converges).
 */
int
cdp_btyd_bgnbd_prob(const double *params, double t, double k, double *out)
{
	double		r,
				al,
				a,
				b,
				lq0,
				lq,
				lnb,
				lbab,
				tail = 0.0;

	if (clear_out(out) != CDP_BTYD_OK ||
		cdp_btyd_check_params(params, 4) != CDP_BTYD_OK ||
		!isfinite(t) || t < 0.0 || !isfinite(k) || k < 0.0 || k != floor(k))
		return CDP_BTYD_EINVAL;
	if (t == 0.0)
	{
		*out = (k == 0.0) ? 1.0 : 0.0;
		return CDP_BTYD_OK;
	}
	if (k > 1e7)
		return CDP_BTYD_EDOMAIN;
	r = params[0];
	al = params[1];
	a = params[2];
	b = params[3];
	lq0 = -r * log1p(t / al);
	lq = log(t) - log(al + t);
	lbab = lbeta(a, b);
	lnb = cdp_btyd_lgamma(r + k) - cdp_btyd_lgamma(r) -
		cdp_btyd_lgamma(k + 1.0) + lq0 + k * lq;
	if (k > 0.0)
	{
		double		lp = lq0,
					lhead = lq0;
		double		j;

		for (j = 1.0; j < k; j += 1.0)
		{
			lp += log((r + j - 1.0) / j) + lq;
			lhead = cdp_btyd_logaddexp(lhead, lp);
		}
		tail = fmax(-expm1(lhead), 0.0);
		if (tail < 1e-3)
		{
			/* sum the tail from the k-th term on */
			double		q = exp(lq),
						term = 1.0,
						sum = 0.0;
			int			n;

			for (n = 0, j = k; n < SERIES_MAX_TERMS; n++, j += 1.0)
			{
				double		ratio = (r + j) / (j + 1.0) * q;
				double		rho = q * fmax((r + j) / (j + 1.0), 1.0);

				sum += term;
				if (rho < 1.0 && term * rho / (1.0 - rho) <= 1e-17 * sum)
					break;
				term *= ratio;
			}
			/* else keep one minus the head, precise enough */
			if (n < SERIES_MAX_TERMS)
				tail = exp(lnb + log(sum));
		}
		tail *= exp(lbeta(a + 1.0, b + k - 1.0) - lbab);
	}
	*out = exp(lbeta(a, b + k) - lbab + lnb) + tail;
	if (!isfinite(*out))
		return CDP_BTYD_EDOMAIN;
	return CDP_BTYD_OK;
}

/* Pareto/NBD P(alive | x, t_x, T): first part / (first + second). */
int
cdp_btyd_pareto_p_alive(const double *params, double x, double t_x,
						double T, double *out)
{
	double		first,
				second;
	int			st = check_customer_call(params, x, t_x, T, out);

	if (st != CDP_BTYD_OK)
		return st;
	st = cdp_btyd_pareto_parts(params, x, t_x, T, &first, &second);
	if (st != CDP_BTYD_OK)
		return st;
	*out = exp(first - cdp_btyd_logaddexp(first, second));
	return CDP_BTYD_OK;
}

/*
 * [1 - (u/(u+t))^(s-1)] / (s-1), written with expm1 so that it is exact
 * near s = 1 (where it tends to log((u+t)/u)).
 */
static double
pareto_horizon(double s, double u, double t)
{
	double		L = -log1p(t / u);

	if (s == 1.0)
		return -L;
	return -expm1((s - 1.0) * L) / (s - 1.0);
}

/*
 * Pareto/NBD E[Y(t) | x, t_x, T] =
 *	  (r+x)(beta+T) / ((alpha+T)(s-1))
 *	  * [1 - ((beta+T)/(beta+T+t))^(s-1)] P(alive).
 */
int
cdp_btyd_pareto_expected(const double *params, double x, double t_x,
						 double T, double t, double *out)
{
	double		pa;
	int			st;

	if (clear_out(out) != CDP_BTYD_OK)
		return CDP_BTYD_EINVAL;
	st = cdp_btyd_pareto_p_alive(params, x, t_x, T, &pa);
	if (st != CDP_BTYD_OK)
		return st;
	if (!isfinite(t) || t < 0.0)
		return CDP_BTYD_EINVAL;
	*out = (params[0] + x) / (params[1] + T) * (params[3] + T) *
		pareto_horizon(params[2], params[3] + T, t) * pa;
	return isfinite(*out) ? CDP_BTYD_OK : CDP_BTYD_EDOMAIN;
}

/* Pareto/NBD E[X(t)] = r beta / (alpha (s-1)) [1 - (beta/(beta+t))^(s-1)]. */
int
cdp_btyd_pareto_expected_new(const double *params, double t, double *out)
{
	if (clear_out(out) != CDP_BTYD_OK ||
		cdp_btyd_check_params(params, 4) != CDP_BTYD_OK ||
		!isfinite(t) || t < 0.0)
		return CDP_BTYD_EINVAL;
	*out = params[0] / params[1] * params[3] *
		pareto_horizon(params[2], params[3], t);
	return isfinite(*out) ? CDP_BTYD_OK : CDP_BTYD_EDOMAIN;
}

/* Gamma-Gamma E[M | x, m] = p (gamma + x m) / (p x + q - 1). */
int
cdp_btyd_gg_expected_value(const double *params, double x, double m,
						   double *out)
{
	double		den;

	if (clear_out(out) != CDP_BTYD_OK ||
		cdp_btyd_check_params(params, 3) != CDP_BTYD_OK ||
		!isfinite(x) || x < 0.0 || x != floor(x) || !isfinite(m) || m < 0.0)
		return CDP_BTYD_EINVAL;
	if (x == 0.0)
		m = 0.0;
	den = params[0] * x + params[1] - 1.0;
	if (!(den > 0.0))
		return CDP_BTYD_EDOMAIN;
	*out = params[0] * (params[2] + x * m) / den;
	return isfinite(*out) ? CDP_BTYD_OK : CDP_BTYD_EDOMAIN;
}

/* Discounted CLV over `periods` periods (see btyd.h for the definition). */
int
cdp_btyd_clv(CdpBtydModel model, const double *params, double x, double t_x,
			 double T, double value, double margin, int periods,
			 double period_length, double discount_rate, double *out)
{
	double		pa,
				prev = 0.0,
				disc = 1.0,
				sum = 0.0,
				pre = 0.0;
	int			k,
				st;

	if (clear_out(out) != CDP_BTYD_OK ||
		!isfinite(value) || !isfinite(margin) ||
		periods < 0 || periods > CLV_MAX_PERIODS ||
		!isfinite(period_length) || !(period_length > 0.0) ||
		!isfinite(discount_rate) || !(discount_rate > -1.0))
		return CDP_BTYD_EINVAL;
	if (model == CDP_BTYD_BGNBD)
		st = cdp_btyd_bgnbd_p_alive(params, x, t_x, T, &pa);
	else if (model == CDP_BTYD_PARETO_NBD)
	{
		st = cdp_btyd_pareto_p_alive(params, x, t_x, T, &pa);
		if (st == CDP_BTYD_OK)
			pre = (params[0] + x) / (params[1] + T) * (params[3] + T) * pa;
	}
	else if (model == CDP_BTYD_NBD)
		st = cdp_btyd_nbd_expected(params, x, t_x, T, period_length, &pre);
	else
		return CDP_BTYD_EINVAL;
	if (st != CDP_BTYD_OK)
		return st;
	for (k = 1; k <= periods; k++)
	{
		double		t = k * period_length,
					e;

		if (model == CDP_BTYD_BGNBD)
		{
			st = bgnbd_core(params, x, T, t, &e);
			if (st != CDP_BTYD_OK)
				return st;
			e *= pa;
		}
		else if (model == CDP_BTYD_NBD)
			e = pre * k;		/* purchases at a constant expected rate */
		else
			e = pre * pareto_horizon(params[2], params[3] + T, t);
		disc /= 1.0 + discount_rate;
		sum += (e - prev) * disc;
		prev = e;
	}
	*out = margin * value * sum;
	return isfinite(*out) ? CDP_BTYD_OK : CDP_BTYD_EDOMAIN;
}
