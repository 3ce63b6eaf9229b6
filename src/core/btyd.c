/*
 * btyd.c
 *	  The BG/NBD, Pareto/NBD and Gamma-Gamma models (see btyd.h): input
 *	  checks, compression of identical customers into weights, and the
 *	  log-likelihoods.  The fits are in btyd_fit.c, the quantities derived
 *	  from fitted parameters in btyd_apply.c, the special functions in
 *	  btyd_math.c.
 *
 * Formulas.
 *	  BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy
 *	  way"), per customer:
 *		  L = B(a, b+x)/B(a, b) Gamma(r+x) alpha^r / Gamma(r)
 *			  * [ (alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+t_x)^-(r+x) ]
 *	  Pareto/NBD (Fader & Hardie 2005, "A note on deriving the Pareto/NBD
 *	  model and related expressions"):
 *		  L = Gamma(r+x) alpha^r beta^s / Gamma(r)
 *			  * [ (alpha+T)^-(r+x) (beta+T)^-s
 *				  + s int_{t_x}^T (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau ]
 *	  where the integral is the note's s/(r+s+x) A0 with its 2F1 terms
 *	  (btyd_math.c).  Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV";
 *	  Fader & Hardie 2013), the density of the mean spend m of x
 *	  transactions:
 *		  log L = log Gamma(px+q) - log Gamma(px) - log Gamma(q) + q log gamma
 *				  + (px-1) log m + px log x - (px+q) log(gamma + m x).
 *	  All are evaluated as sums of logarithms, with log-sum-exp for the sums.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "btyd_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAXP CDP_BTYD_MAX_PARAMS

/* A short description of a status code. */
const char *
cdp_btyd_strerror(int status)
{
	switch (status)
	{
		case CDP_BTYD_OK:
			return "ok";
		case CDP_BTYD_EINVAL:
			return "invalid argument";
		case CDP_BTYD_ENOMEM:
			return "out of memory";
		case CDP_BTYD_ETOOFEW:
			return "too few customers";
		case CDP_BTYD_ENOREPEAT:
			return "no customer with a repeat purchase";
		case CDP_BTYD_ENOTIDENT:
			return "the data do not identify the model";
		case CDP_BTYD_ENOCONV:
			return "no convergence";
		case CDP_BTYD_EDOMAIN:
			return "undefined for these parameters";
		case CDP_BTYD_EINTR:
			return "interrupted";
	}
	return "unknown status";
}

/* ---- input checks and compression ---------------------------------------- */

/* Checks one customer (x, t_x, T). */
int
cdp_btyd_check_customer(double x, double t_x, double T)
{
	if (!isfinite(x) || !isfinite(t_x) || !isfinite(T))
		return CDP_BTYD_EINVAL;
	if (x < 0.0 || x != floor(x) || !(T > 0.0) || t_x < 0.0 || t_x > T)
		return CDP_BTYD_EINVAL;
	return CDP_BTYD_OK;
}

/* Checks k parameters: finite and positive (see btyd_internal.h). */
int
cdp_btyd_check_params(const double *p, int k)
{
	int			i;

	if (p == NULL)
		return CDP_BTYD_EINVAL;
	for (i = 0; i < k; i++)
		if (!isfinite(p[i]) || !(p[i] > 0.0))
			return CDP_BTYD_EINVAL;
	return CDP_BTYD_OK;
}

/* Checks a weight: finite and >= 0. */
static int
check_weight(double w)
{
	return (isfinite(w) && w >= 0.0) ? CDP_BTYD_OK : CDP_BTYD_EINVAL;
}

/* Orders rows by (x, t_x, T). */
static int
row_cmp(const void *pa, const void *pb)
{
	const CdpBtydRow *a = pa;
	const CdpBtydRow *b = pb;

	if (a->x != b->x)
		return a->x < b->x ? -1 : 1;
	if (a->tx != b->tx)
		return a->tx < b->tx ? -1 : 1;
	if (a->T != b->T)
		return a->T < b->T ? -1 : 1;
	return 0;
}

/* Orders spend rows by (x, m). */
static int
spend_cmp(const void *pa, const void *pb)
{
	const CdpBtydSpendRow *a = pa;
	const CdpBtydSpendRow *b = pb;

	if (a->x != b->x)
		return a->x < b->x ? -1 : 1;
	if (a->m != b->m)
		return a->m < b->m ? -1 : 1;
	return 0;
}

/*
 * Sorts n rows of size bytes by cmp and folds identical ones into the first,
 * adding up their weights (the double at w_offset); returns the number left.
 */
static size_t
fold(void *rows, size_t n, size_t size, int (*cmp) (const void *, const void *), size_t w_offset)
{
	char	   *r = rows;
	size_t		i,
				m = 0;

	if (n == 0)
		return 0;
	qsort(rows, n, size, cmp);
	for (i = 0; i < n; i++)
	{
		if (m > 0 && cmp(r + (m - 1) * size, r + i * size) == 0)
			*(double *) (r + (m - 1) * size + w_offset) += *(double *) (r + i * size + w_offset);
		else
		{
			if (m != i)
				memcpy(r + m * size, r + i * size, size);
			m++;
		}
	}
	return m;
}

/* Copies, checks, sorts and folds customer rows (see btyd_internal.h). */
int
cdp_btyd_collect_rows(const double *x, const double *t_x, const double *T,
					  const double *weight, size_t n, CdpBtydRow **out,
					  size_t *n_out)
{
	CdpBtydRow *rows;
	size_t		i,
				m = 0;

	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return CDP_BTYD_OK;
	if (x == NULL || t_x == NULL || T == NULL)
		return CDP_BTYD_EINVAL;
	rows = n <= SIZE_MAX / sizeof(CdpBtydRow) ?
		malloc(n * sizeof(CdpBtydRow)) : NULL;
	if (rows == NULL)
		return CDP_BTYD_ENOMEM;
	for (i = 0; i < n; i++)
	{
		double		w = weight ? weight[i] : 1.0;

		if (cdp_btyd_check_customer(x[i], t_x[i], T[i]) != CDP_BTYD_OK ||
			check_weight(w) != CDP_BTYD_OK)
		{
			free(rows);
			return CDP_BTYD_EINVAL;
		}
		if (w == 0.0)
			continue;
		rows[m].x = x[i];
		rows[m].tx = x[i] > 0.0 ? t_x[i] : 0.0;
		rows[m].T = T[i];
		rows[m].w = w;
		m++;
	}
	m = fold(rows, m, sizeof(CdpBtydRow), row_cmp, offsetof(CdpBtydRow, w));
	if (m == 0)
	{
		free(rows);
		rows = NULL;
	}
	*out = rows;
	*n_out = m;
	return CDP_BTYD_OK;
}

/* The same for Gamma-Gamma rows: only x > 0 and m > 0 are kept. */
int
cdp_btyd_collect_spend(const double *x, const double *mv,
					   const double *weight, size_t n,
					   CdpBtydSpendRow **out, size_t *n_out)
{
	CdpBtydSpendRow *rows;
	size_t		i,
				k = 0;

	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return CDP_BTYD_OK;
	if (x == NULL || mv == NULL)
		return CDP_BTYD_EINVAL;
	rows = n <= SIZE_MAX / sizeof(CdpBtydSpendRow) ?
		malloc(n * sizeof(CdpBtydSpendRow)) : NULL;
	if (rows == NULL)
		return CDP_BTYD_ENOMEM;
	for (i = 0; i < n; i++)
	{
		double		w = weight ? weight[i] : 1.0;

		if (!isfinite(x[i]) || x[i] < 0.0 || x[i] != floor(x[i]) ||
			!isfinite(mv[i]) || mv[i] < 0.0 || check_weight(w) != CDP_BTYD_OK)
		{
			free(rows);
			return CDP_BTYD_EINVAL;
		}
		if (w == 0.0 || x[i] == 0.0 || mv[i] == 0.0)
			continue;
		rows[k].x = x[i];
		rows[k].m = mv[i];
		rows[k].w = w;
		k++;
	}
	k = fold(rows, k, sizeof(CdpBtydSpendRow), spend_cmp, offsetof(CdpBtydSpendRow, w));
	if (k == 0)
	{
		free(rows);
		rows = NULL;
	}
	*out = rows;
	*n_out = k;
	return CDP_BTYD_OK;
}

/* Compresses customer rows in place (see btyd.h). */
int
cdp_btyd_compress(double *x, double *t_x, double *T, double *weight,
				  size_t n, size_t *n_out)
{
	CdpBtydRow *rows;
	size_t		i,
				m;
	int			st;

	if (n_out == NULL || (n > 0 && weight == NULL))
		return CDP_BTYD_EINVAL;
	*n_out = 0;
	st = cdp_btyd_collect_rows(x, t_x, T, weight, n, &rows, &m);
	if (st != CDP_BTYD_OK)
		return st;
	for (i = 0; i < m; i++)
	{
		x[i] = rows[i].x;
		t_x[i] = rows[i].tx;
		T[i] = rows[i].T;
		weight[i] = rows[i].w;
	}
	free(rows);
	*n_out = m;
	return CDP_BTYD_OK;
}

/* Compresses Gamma-Gamma rows in place (see btyd.h). */
int
cdp_btyd_compress_spend(double *x, double *m, double *weight, size_t n,
						size_t *n_out)
{
	CdpBtydSpendRow *rows;
	size_t		i,
				k;
	int			st;

	if (n_out == NULL || (n > 0 && weight == NULL))
		return CDP_BTYD_EINVAL;
	*n_out = 0;
	st = cdp_btyd_collect_spend(x, m, weight, n, &rows, &k);
	if (st != CDP_BTYD_OK)
		return st;
	for (i = 0; i < k; i++)
	{
		x[i] = rows[i].x;
		m[i] = rows[i].m;
		weight[i] = rows[i].w;
	}
	free(rows);
	*n_out = k;
	return CDP_BTYD_OK;
}

/* ---- per-customer log-likelihoods ---------------------------------------- */

/*
 * BG/NBD log-likelihood of one customer; g (if not NULL) receives the
 * derivatives in r, alpha, a, b.
 */
static double
bgnbd_row(const double *p, double x, double tx, double T, double *g)
{
	double		r = p[0],
				al = p[1],
				a = p[2],
				b = p[3];
	double		rx = r + x;
	double		a12,
				a3,
				a4,
				lse,
				p4 = 0.0;

	a12 = cdp_btyd_lgamma(rx) - cdp_btyd_lgamma(r) + r * log(al) +
		cdp_btyd_lgamma(a + b) + cdp_btyd_lgamma(b + x) -
		cdp_btyd_lgamma(b) - cdp_btyd_lgamma(a + b + x);
	a3 = -rx * log(al + T);
	lse = a3;
	if (x > 0.0)
	{
		a4 = log(a) - log(b + x - 1.0) - rx * log(al + tx);
		lse = cdp_btyd_logaddexp(a3, a4);
		p4 = exp(a4 - lse);
	}
	if (g != NULL)
	{
		double		p3 = 1.0 - p4;
		double		psabx = cdp_btyd_digamma(a + b + x);

		g[0] = cdp_btyd_digamma(rx) - cdp_btyd_digamma(r) + log(al) -
			p3 * log(al + T) - (x > 0.0 ? p4 * log(al + tx) : 0.0);
		g[1] = r / al - rx * (p3 / (al + T) + (x > 0.0 ? p4 / (al + tx) : 0.0));
		g[2] = cdp_btyd_digamma(a + b) - psabx + p4 / a;
		g[3] = cdp_btyd_digamma(a + b) + cdp_btyd_digamma(b + x) -
			cdp_btyd_digamma(b) - psabx -
			(x > 0.0 ? p4 / (b + x - 1.0) : 0.0);
	}
	return a12 + lse;
}

/* The two parts of the Pareto/NBD likelihood, in logs (btyd_internal.h). */
int
cdp_btyd_pareto_parts(const double *p, double x, double tx, double T,
					  double *first, double *second)
{
	double		r = p[0],
				al = p[1],
				s = p[2],
				be = p[3];
	double		lj;
	int			st;

	*first = -(r + x) * log(al + T) - s * log(be + T);
	st = cdp_btyd_pnbd_log_integral(al, be, r + x, s + 1.0,
									x > 0.0 ? tx : 0.0, T, &lj);
	*second = log(s) + lj;
	return st;
}

/* Pareto/NBD log-likelihood of one customer. */
static int
pareto_row(const double *p, double x, double tx, double T, double *ll)
{
	double		first,
				second;
	int			st = cdp_btyd_pareto_parts(p, x, tx, T, &first, &second);

	if (st != CDP_BTYD_OK)
		return st;
	*ll = cdp_btyd_lgamma(p[0] + x) - cdp_btyd_lgamma(p[0]) +
		p[0] * log(p[1]) + p[2] * log(p[3]) +
		cdp_btyd_logaddexp(first, second);
	return CDP_BTYD_OK;
}

/* Gamma-Gamma log-likelihood of one customer (x > 0, m > 0), with g. */
static double
gg_row(const double *par, double x, double m, double *g)
{
	double		p = par[0],
				q = par[1],
				gm = par[2];
	double		px = p * x;
	double		L = log(gm + m * x);

	if (g != NULL)
	{
		double		ps = cdp_btyd_digamma(px + q);

		g[0] = x * (ps - cdp_btyd_digamma(px) + log(m) + log(x) - L);
		g[1] = ps - cdp_btyd_digamma(q) + log(gm) - L;
		g[2] = q / gm - (px + q) / (gm + m * x);
	}
	return cdp_btyd_lgamma(px + q) - cdp_btyd_lgamma(px) -
		cdp_btyd_lgamma(q) + q * log(gm) + (px - 1.0) * log(m) +
		px * log(x) - (px + q) * L;
}

/* BG/NBD log-likelihood of n customers (see btyd.h). */
int
cdp_btyd_bgnbd_ll(const double *params, const double *x, const double *t_x,
				  const double *T, const double *weight, size_t n,
				  double *ll, double *grad)
{
	double		sum = 0.0,
				gs[MAXP] = {0.0, 0.0, 0.0, 0.0};
	size_t		i;
	int			j;

	if (ll != NULL)
		*ll = NAN;
	if (ll == NULL || cdp_btyd_check_params(params, 4) != CDP_BTYD_OK ||
		(n > 0 && (x == NULL || t_x == NULL || T == NULL)))
		return CDP_BTYD_EINVAL;
	for (i = 0; i < n; i++)
	{
		double		w = weight ? weight[i] : 1.0;
		double		g[MAXP];

		if (cdp_btyd_check_customer(x[i], t_x[i], T[i]) != CDP_BTYD_OK ||
			check_weight(w) != CDP_BTYD_OK)
			return CDP_BTYD_EINVAL;
		if (w == 0.0)
			continue;
		sum += w * bgnbd_row(params, x[i], t_x[i], T[i], grad ? g : NULL);
		if (grad)
			for (j = 0; j < 4; j++)
				gs[j] += w * g[j];
	}
	if (!isfinite(sum))
		return CDP_BTYD_EDOMAIN;
	*ll = sum;
	if (grad)
		memcpy(grad, gs, sizeof(gs));
	return CDP_BTYD_OK;
}

/* Pareto/NBD log-likelihood of n customers (see btyd.h). */
int
cdp_btyd_pareto_ll(const double *params, const double *x, const double *t_x,
				   const double *T, const double *weight, size_t n,
				   double *ll)
{
	double		sum = 0.0;
	size_t		i;

	if (ll != NULL)
		*ll = NAN;
	if (ll == NULL || cdp_btyd_check_params(params, 4) != CDP_BTYD_OK ||
		(n > 0 && (x == NULL || t_x == NULL || T == NULL)))
		return CDP_BTYD_EINVAL;
	for (i = 0; i < n; i++)
	{
		double		w = weight ? weight[i] : 1.0;
		double		l;
		int			st;

		if (cdp_btyd_check_customer(x[i], t_x[i], T[i]) != CDP_BTYD_OK ||
			check_weight(w) != CDP_BTYD_OK)
			return CDP_BTYD_EINVAL;
		if (w == 0.0)
			continue;
		st = pareto_row(params, x[i], t_x[i], T[i], &l);
		if (st != CDP_BTYD_OK)
			return st;
		sum += w * l;
	}
	if (!isfinite(sum))
		return CDP_BTYD_EDOMAIN;
	*ll = sum;
	return CDP_BTYD_OK;
}

/* Gamma-Gamma log-likelihood of n customers (see btyd.h). */
int
cdp_btyd_gg_ll(const double *params, const double *x, const double *m,
			   const double *weight, size_t n, double *ll, double *grad)
{
	double		sum = 0.0,
				gs[3] = {0.0, 0.0, 0.0};
	size_t		i;
	int			j;

	if (ll != NULL)
		*ll = NAN;
	if (ll == NULL || cdp_btyd_check_params(params, 3) != CDP_BTYD_OK ||
		(n > 0 && (x == NULL || m == NULL)))
		return CDP_BTYD_EINVAL;
	for (i = 0; i < n; i++)
	{
		double		w = weight ? weight[i] : 1.0;
		double		g[3];

		if (!isfinite(x[i]) || x[i] < 0.0 || x[i] != floor(x[i]) ||
			!isfinite(m[i]) || m[i] < 0.0 || check_weight(w) != CDP_BTYD_OK)
			return CDP_BTYD_EINVAL;
		if (w == 0.0 || x[i] == 0.0 || m[i] == 0.0)
			continue;
		sum += w * gg_row(params, x[i], m[i], grad ? g : NULL);
		if (grad)
			for (j = 0; j < 3; j++)
				gs[j] += w * g[j];
	}
	if (!isfinite(sum))
		return CDP_BTYD_EDOMAIN;
	*ll = sum;
	if (grad)
		memcpy(grad, gs, sizeof(gs));
	return CDP_BTYD_OK;
}
