/*
 * btyd_fit.c
 *	  Maximum-likelihood fits of the BG/NBD, Pareto/NBD and Gamma-Gamma
 *	  models (see btyd.h).
 *
 * The customers are compressed to distinct rows with weights and indexed
 * by their distinct x, t_x and T, so that one evaluation of the BG/NBD
 * likelihood and gradient costs one exp and one log1p per row with x > 0
 * (the log-gamma terms are per distinct x, the logarithms per distinct
 * time).  Times (spends) are divided by their mean, which makes the scale
 * parameters of order one; the optimizer (btyd_optim.c) works on the
 * logarithms of the parameters, inside [1e-6, 1e6], from two starting
 * points.  A maximum within a factor 10 of that box, a singular
 * information matrix there, or a parameter known only within a large
 * factor (a flat likelihood) is reported as "not identified".
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "btyd_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP CDP_BTYD_MAX_PARAMS

/* Box of the optimizer on log-parameters (rescaled data): [1e-6, 1e6]. */
#define THETA_BOUND 13.815510557964274

/* A fitted log-parameter this close to the box means "not identified". */
#define BOUND_MARGIN 2.302585092994046

/*
 * So does a relative standard error (standard error of the log-parameter)
 * above these, at a maximum and where the optimizer stalled.
 */
#define FLAT_RSE_CONVERGED 5.0
#define FLAT_RSE_STALLED 1.0

/*
 * Compressed customers indexed for fast evaluation.  Rows are sorted by
 * (x, t_x, T); the rows of x group g are xstart[g] .. xstart[g+1]-1.
 * Times are divided by scale.
 */
typedef struct Rfm
{
	size_t		n;				/* rows */
	double		W;				/* total weight */
	double		swx;			/* sum of w x */
	double		scale;			/* mean T: the time unit of the fit */
	double	   *w;
	int		   *iT;				/* row -> index into Tv */
	int		   *itx;			/* row -> index into txv */
	size_t		nx;
	double	   *xv;				/* x of each group */
	double	   *wx;				/* weight of each group */
	size_t	   *xstart;
	size_t		nT;
	size_t		ntx;
	double	   *Tv;				/* distinct T, rescaled, ascending */
	double	   *txv;			/* distinct t_x, rescaled, ascending */
	double	   *buf;			/* scratch: 2 nT + 2 ntx doubles */
	double	   *cache;			/* Pareto/NBD: per-T tail integrals */
	int		   *stamp;			/* ... and the x group they belong to */
} Rfm;

/* Compressed Gamma-Gamma rows, sorted by (x, m), spends divided by scale. */
typedef struct Spend
{
	size_t		n;
	double		W;
	double		scale;			/* mean m */
	double	   *w;
	double	   *lm;				/* log m (rescaled) */
	double	   *mx;				/* m x (rescaled) */
	size_t		nx;
	double	   *xv;
	double	   *wx;
	size_t	   *xstart;
} Spend;

/* What the objective of a fit needs. */
typedef struct FitCtx
{
	Rfm		   *rfm;
	Spend	   *spend;
	int			k;
	double		pscale[MAXP];	/* original parameter = rescaled * pscale */
	double		penalizer;
} FitCtx;

static const char *const bgnbd_names[] = {"r", "alpha", "a", "b"};
static const char *const pareto_names[] = {"r", "alpha", "s", "beta"};
static const char *const gg_names[] = {"p", "q", "gamma"};
static const char *const nbd_names[] = {"r", "alpha"};

/* ---- indexed data for the fits ------------------------------------------- */

/* Orders doubles. */
static int
double_cmp(const void *pa, const void *pb)
{
	double		a = *(const double *) pa;
	double		b = *(const double *) pb;

	return a < b ? -1 : (a > b ? 1 : 0);
}

/* Frees an Rfm's arrays. */
static void
rfm_free(Rfm *d)
{
	free(d->w);
	free(d->iT);
	free(d->itx);
	free(d->xv);
	free(d->wx);
	free(d->xstart);
	free(d->Tv);
	free(d->txv);
	free(d->buf);
	free(d->cache);
	free(d->stamp);
	memset(d, 0, sizeof(*d));
}

/*
 * The distinct T (which = 1) or t_x (which = 0) of n rows, ascending, into
 * a new array *uniq of *nu entries, and each row's index into it in idx.
 */
static int
index_values(const CdpBtydRow *rows, size_t n, int which, double **uniq,
			 size_t *nu, int *idx)
{
	double	   *u = malloc(n * sizeof(double));
	size_t		i,
				k = 0;

	if (u == NULL)
		return CDP_BTYD_ENOMEM;
	for (i = 0; i < n; i++)
		u[i] = which ? rows[i].T : rows[i].tx;
	qsort(u, n, sizeof(double), double_cmp);
	for (i = 0; i < n; i++)
		if (k == 0 || u[k - 1] != u[i])
			u[k++] = u[i];
	for (i = 0; i < n; i++)
	{
		double		v = which ? rows[i].T : rows[i].tx;
		size_t		lo = 0,
					hi = k - 1;

		while (lo < hi)
		{
			size_t		mid = lo + (hi - lo) / 2;

			if (u[mid] < v)
				lo = mid + 1;
			else
				hi = mid;
		}
		idx[i] = (int) lo;
	}
	*uniq = u;
	*nu = k;
	return CDP_BTYD_OK;
}

/* Builds the indexed, rescaled form of n folded rows. */
static int
rfm_build(const CdpBtydRow *rows, size_t n, Rfm *d)
{
	size_t		i,
				g;
	double		sT = 0.0;
	int			st;

	memset(d, 0, sizeof(*d));
	if (n > (size_t) 0x7fffffff)
		return CDP_BTYD_ENOMEM;
	d->n = n;
	d->w = malloc(n * sizeof(double));
	d->iT = malloc(n * sizeof(int));
	d->itx = malloc(n * sizeof(int));
	if (d->w == NULL || d->iT == NULL || d->itx == NULL)
		goto oom;
	d->nx = 0;
	for (i = 0; i < n; i++)
	{
		d->w[i] = rows[i].w;
		d->W += rows[i].w;
		d->swx += rows[i].w * rows[i].x;
		sT += rows[i].w * rows[i].T;
		if (i == 0 || rows[i].x != rows[i - 1].x)
			d->nx++;
	}
	d->scale = sT / d->W;
	d->xv = malloc(d->nx * sizeof(double));
	d->wx = malloc(d->nx * sizeof(double));
	d->xstart = malloc((d->nx + 1) * sizeof(size_t));
	if (d->xv == NULL || d->wx == NULL || d->xstart == NULL)
		goto oom;
	g = 0;
	for (i = 0; i < n; i++)
	{
		if (i == 0 || rows[i].x != rows[i - 1].x)
		{
			d->xv[g] = rows[i].x;
			d->wx[g] = 0.0;
			d->xstart[g++] = i;
		}
		d->wx[g - 1] += rows[i].w;
	}
	d->xstart[g] = n;
	st = index_values(rows, n, 1, &d->Tv, &d->nT, d->iT);
	if (st == CDP_BTYD_OK)
		st = index_values(rows, n, 0, &d->txv, &d->ntx, d->itx);
	if (st != CDP_BTYD_OK)
		goto oom;
	for (i = 0; i < d->nT; i++)
		d->Tv[i] /= d->scale;
	for (i = 0; i < d->ntx; i++)
		d->txv[i] /= d->scale;
	d->buf = malloc((2 * d->nT + 2 * d->ntx) * sizeof(double));
	if (d->buf == NULL)
		goto oom;
	return CDP_BTYD_OK;

oom:
	rfm_free(d);
	return CDP_BTYD_ENOMEM;
}

/* Frees a Spend's arrays. */
static void
spend_free(Spend *d)
{
	free(d->w);
	free(d->lm);
	free(d->mx);
	free(d->xv);
	free(d->wx);
	free(d->xstart);
	memset(d, 0, sizeof(*d));
}

/* Builds the rescaled form of n folded Gamma-Gamma rows. */
static int
spend_build(const CdpBtydSpendRow *rows, size_t n, Spend *d)
{
	size_t		i,
				g;
	double		sm = 0.0;

	memset(d, 0, sizeof(*d));
	d->n = n;
	d->w = malloc(n * sizeof(double));
	d->lm = malloc(n * sizeof(double));
	d->mx = malloc(n * sizeof(double));
	if (d->w == NULL || d->lm == NULL || d->mx == NULL)
		goto oom;
	for (i = 0; i < n; i++)
	{
		d->W += rows[i].w;
		sm += rows[i].w * rows[i].m;
		if (i == 0 || rows[i].x != rows[i - 1].x)
			d->nx++;
	}
	d->scale = sm / d->W;
	d->xv = malloc(d->nx * sizeof(double));
	d->wx = malloc(d->nx * sizeof(double));
	d->xstart = malloc((d->nx + 1) * sizeof(size_t));
	if (d->xv == NULL || d->wx == NULL || d->xstart == NULL)
		goto oom;
	g = 0;
	for (i = 0; i < n; i++)
	{
		double		m = rows[i].m / d->scale;

		if (i == 0 || rows[i].x != rows[i - 1].x)
		{
			d->xv[g] = rows[i].x;
			d->wx[g] = 0.0;
			d->xstart[g++] = i;
		}
		d->wx[g - 1] += rows[i].w;
		d->w[i] = rows[i].w;
		d->lm[i] = log(m);
		d->mx[i] = m * rows[i].x;
	}
	d->xstart[g] = n;
	return CDP_BTYD_OK;

oom:
	spend_free(d);
	return CDP_BTYD_ENOMEM;
}

/* ---- objectives of the fits (rescaled data, log-parameters) -------------- */

/*
 * Adds the penalty pen * sum(original param^2) to f and its gradient in
 * theta to grad (if not NULL); params are the rescaled parameters.
 */
static double
add_penalty(const FitCtx *c, const double *params, double f, double *grad)
{
	int			j;

	if (c->penalizer == 0.0)
		return f;
	for (j = 0; j < c->k; j++)
	{
		double		po = params[j] * c->pscale[j];

		f += c->penalizer * po * po;
		if (grad)
			grad[j] += 2.0 * c->penalizer * po * po;
	}
	return f;
}

/* Mean negative BG/NBD log-likelihood and its gradient in log-parameters. */
static double
obj_bgnbd(const double *theta, double *grad, void *arg)
{
	const FitCtx *c = arg;
	const Rfm  *d = c->rfm;
	double		pr[4];
	double		r,
				al,
				a,
				b;
	double	   *LT = d->buf,
			   *IT = d->buf + d->nT,
			   *LX = d->buf + 2 * d->nT,
			   *IX = d->buf + 2 * d->nT + d->ntx;
	double		lgr,
				psr,
				lab,
				psab,
				lgb,
				psb,
				lal,
				la;
	double		ll = 0.0,
				dr = 0.0,
				dal = 0.0,
				da = 0.0,
				db = 0.0;
	size_t		gi,
				i,
				j;

	for (j = 0; j < 4; j++)
		pr[j] = exp(theta[j]);
	r = pr[0];
	al = pr[1];
	a = pr[2];
	b = pr[3];
	for (j = 0; j < d->nT; j++)
	{
		LT[j] = log(al + d->Tv[j]);
		IT[j] = 1.0 / (al + d->Tv[j]);
	}
	for (j = 0; j < d->ntx; j++)
	{
		LX[j] = log(al + d->txv[j]);
		IX[j] = 1.0 / (al + d->txv[j]);
	}
	lgr = cdp_btyd_lgamma(r);
	psr = cdp_btyd_digamma(r);
	lab = cdp_btyd_lgamma(a + b);
	psab = cdp_btyd_digamma(a + b);
	lgb = cdp_btyd_lgamma(b);
	psb = cdp_btyd_digamma(b);
	lal = log(al);
	la = log(a);

	for (gi = 0; gi < d->nx; gi++)
	{
		double		x = d->xv[gi],
					wx = d->wx[gi],
					rx = r + x;
		size_t		i0 = d->xstart[gi],
					i1 = d->xstart[gi + 1];

		ll += wx * (cdp_btyd_lgamma(rx) - lgr + r * lal + lab +
					cdp_btyd_lgamma(b + x) - lgb - cdp_btyd_lgamma(a + b + x));
		if (grad)
		{
			double		psabx = cdp_btyd_digamma(a + b + x);

			dr += wx * (cdp_btyd_digamma(rx) - psr + lal);
			dal += wx * r / al;
			da += wx * (psab - psabx);
			db += wx * (psab + cdp_btyd_digamma(b + x) - psb - psabx);
		}
		if (x == 0.0)
		{
			double		sL = 0.0,
						sI = 0.0;

			for (i = i0; i < i1; i++)
			{
				sL += d->w[i] * LT[d->iT[i]];
				sI += d->w[i] * IT[d->iT[i]];
			}
			ll -= rx * sL;
			dr -= sL;
			dal -= rx * sI;
		}
		else
		{
			double		c4 = la - log(b + x - 1.0);
			double		sl = 0.0,
						sr = 0.0,
						sa = 0.0,
						s4 = 0.0;

			for (i = i0; i < i1; i++)
			{
				int			jT = d->iT[i],
							jx = d->itx[i];
				double		a3 = -rx * LT[jT];
				double		a4 = c4 - rx * LX[jx];
				double		e,
							lse,
							p4;

				if (a3 >= a4)
				{
					e = exp(a4 - a3);
					lse = a3 + log1p(e);
					p4 = e / (1.0 + e);
				}
				else
				{
					e = exp(a3 - a4);
					lse = a4 + log1p(e);
					p4 = 1.0 / (1.0 + e);
				}
				sl += d->w[i] * lse;
				if (grad)
				{
					double		wp4 = d->w[i] * p4,
								wp3 = d->w[i] - wp4;

					sr += wp3 * LT[jT] + wp4 * LX[jx];
					sa += wp3 * IT[jT] + wp4 * IX[jx];
					s4 += wp4;
				}
			}
			ll += sl;
			dr -= sr;
			dal -= rx * sa;
			da += s4 / a;
			db -= s4 / (b + x - 1.0);
		}
	}
	if (grad)
	{
		grad[0] = -r * dr / d->W;
		grad[1] = -al * dal / d->W;
		grad[2] = -a * da / d->W;
		grad[3] = -b * db / d->W;
	}
	return add_penalty(c, pr, -ll / d->W, grad);
}

/* Mean negative NBD log-likelihood and its gradient in log-parameters. */
static double
obj_nbd(const double *theta, double *grad, void *arg)
{
	const FitCtx *c = arg;
	const Rfm  *d = c->rfm;
	double		pr[2];
	double		r,
				al,
				lgr,
				psr,
				lal;
	double		ll = 0.0,
				dr = 0.0,
				dal = 0.0;
	double	   *LT = d->buf,
			   *IT = d->buf + d->nT;
	size_t		gi,
				i,
				j;

	pr[0] = r = exp(theta[0]);
	pr[1] = al = exp(theta[1]);
	for (j = 0; j < d->nT; j++)
	{
		LT[j] = log(al + d->Tv[j]);
		IT[j] = 1.0 / (al + d->Tv[j]);
	}
	lgr = cdp_btyd_lgamma(r);
	psr = cdp_btyd_digamma(r);
	lal = log(al);
	for (gi = 0; gi < d->nx; gi++)
	{
		double		x = d->xv[gi],
					wx = d->wx[gi],
					rx = r + x,
					sL = 0.0,
					sI = 0.0;

		for (i = d->xstart[gi]; i < d->xstart[gi + 1]; i++)
		{
			sL += d->w[i] * LT[d->iT[i]];
			sI += d->w[i] * IT[d->iT[i]];
		}
		ll += wx * (cdp_btyd_lgamma(rx) - lgr + r * lal) - rx * sL;
		if (grad)
		{
			dr += wx * (cdp_btyd_digamma(rx) - psr + lal) - sL;
			dal += wx * r / al - rx * sI;
		}
	}
	if (grad)
	{
		grad[0] = -r * dr / d->W;
		grad[1] = -al * dal / d->W;
	}
	return add_penalty(c, pr, -ll / d->W, grad);
}

/* Mean negative Pareto/NBD log-likelihood (no gradient). */
static double
obj_pareto(const double *theta, double *grad, void *arg)
{
	const FitCtx *c = arg;
	const Rfm  *d = c->rfm;
	double		pr[4];
	double		r,
				al,
				s,
				be,
				B,
				ls,
				lgr,
				lal,
				lbe;
	double	   *LA = d->buf,
			   *LB = d->buf + d->nT;
	double		ll = 0.0;
	size_t		gi,
				i,
				j;

	(void) grad;
	for (j = 0; j < 4; j++)
		pr[j] = exp(theta[j]);
	r = pr[0];
	al = pr[1];
	s = pr[2];
	be = pr[3];
	B = s + 1.0;
	ls = log(s);
	lgr = cdp_btyd_lgamma(r);
	lal = log(al);
	lbe = log(be);
	for (j = 0; j < d->nT; j++)
	{
		LA[j] = log(al + d->Tv[j]);
		LB[j] = log(be + d->Tv[j]);
		d->stamp[j] = -1;
	}
	for (gi = 0; gi < d->nx; gi++)
	{
		double		x = d->xv[gi],
					A = r + x;
		size_t		i0 = d->xstart[gi],
					i1 = d->xstart[gi + 1];
		int			cur_jx = -1,
					st0 = CDP_BTYD_OK;
		double		li0 = 0.0,
					sl = 0.0;

		ll += d->wx[gi] * (cdp_btyd_lgamma(A) - lgr + r * lal + s * lbe);
		for (i = i0; i < i1; i++)
		{
			int			jT = d->iT[i],
						jx = d->itx[i];
			double		t0 = d->txv[jx],
						t1 = d->Tv[jT];
			double		first = -A * LA[jT] - s * LB[jT];
			double		lj = -INFINITY;
			int			st = CDP_BTYD_ENOCONV;

			if (t1 > t0)
			{
				if (jx != cur_jx)
				{
					st0 = cdp_btyd_pnbd_log_tail(al, be, A, B, t0, &li0);
					cur_jx = jx;
				}
				if (st0 == CDP_BTYD_OK)
				{
					if (d->stamp[jT] != (int) gi)
					{
						double	   *ct = &d->cache[jT];

						if (cdp_btyd_pnbd_log_tail(al, be, A, B, t1, ct) !=
							CDP_BTYD_OK)
							*ct = NAN;
						d->stamp[jT] = (int) gi;
					}
					if (d->cache[jT] - li0 < -0.69314718055994530942)
					{
						lj = li0 + log1p(-exp(d->cache[jT] - li0));
						st = CDP_BTYD_OK;
					}
				}
				if (st != CDP_BTYD_OK)
					st = cdp_btyd_pnbd_log_quad(al, be, A, B, t0, t1, &lj);
				if (st != CDP_BTYD_OK)
					return INFINITY;
				sl += d->w[i] * cdp_btyd_logaddexp(first, ls + lj);
			}
			else
				sl += d->w[i] * first;
		}
		ll += sl;
	}
	return add_penalty(c, pr, -ll / d->W, NULL);
}

/* Mean negative Gamma-Gamma log-likelihood and its gradient. */
static double
obj_gg(const double *theta, double *grad, void *arg)
{
	const FitCtx *c = arg;
	const Spend *d = c->spend;
	double		pr[3];
	double		p,
				q,
				gm,
				lgq,
				psq,
				lgm;
	double		ll = 0.0,
				dp = 0.0,
				dq = 0.0,
				dg = 0.0;
	size_t		gi,
				i,
				j;

	for (j = 0; j < 3; j++)
		pr[j] = exp(theta[j]);
	p = pr[0];
	q = pr[1];
	gm = pr[2];
	lgq = cdp_btyd_lgamma(q);
	psq = cdp_btyd_digamma(q);
	lgm = log(gm);
	for (gi = 0; gi < d->nx; gi++)
	{
		double		x = d->xv[gi],
					wx = d->wx[gi],
					px = p * x,
					lx = log(x);
		double		sl = 0.0,
					sdp = 0.0,
					sdq = 0.0,
					sdg = 0.0;
		size_t		i0 = d->xstart[gi],
					i1 = d->xstart[gi + 1];

		ll += wx * (cdp_btyd_lgamma(px + q) - cdp_btyd_lgamma(px) - lgq +
					q * lgm + px * lx);
		if (grad)
		{
			double		ps = cdp_btyd_digamma(px + q);

			dp += wx * x * (ps - cdp_btyd_digamma(px) + lx);
			dq += wx * (ps - psq + lgm);
			dg += wx * q / gm;
		}
		for (i = i0; i < i1; i++)
		{
			double		L = log(gm + d->mx[i]);

			sl += d->w[i] * ((px - 1.0) * d->lm[i] - (px + q) * L);
			if (grad)
			{
				sdp += d->w[i] * (d->lm[i] - L);
				sdq += d->w[i] * L;
				sdg += d->w[i] / (gm + d->mx[i]);
			}
		}
		ll += sl;
		dp += x * sdp;
		dq -= sdq;
		dg -= (px + q) * sdg;
	}
	if (grad)
	{
		grad[0] = -p * dp / d->W;
		grad[1] = -q * dq / d->W;
		grad[2] = -gm * dg / d->W;
	}
	return add_penalty(c, pr, -ll / d->W, grad);
}

/* ---- the fit driver ------------------------------------------------------ */

/* Prepares *fit for a model: everything unknown. */
static void
fit_init(CdpBtydFit *fit, CdpBtydModel model, int k)
{
	int			j;

	memset(fit, 0, sizeof(*fit));
	fit->model = model;
	fit->nparams = k;
	for (j = 0; j < MAXP; j++)
	{
		fit->params[j] = NAN;
		fit->se[j] = NAN;
	}
	fit->ll = NAN;
}

/* Records status st and a message in fit; returns st. */
static int
fit_status(CdpBtydFit *fit, int st, const char *msg)
{
	fit->status = st;
	snprintf(fit->message, sizeof(fit->message), "%s",
			 msg ? msg : cdp_btyd_strerror(st));
	return st;
}

/*
 * Cholesky factorization h = L L' of the k x k matrix h, L in place; 1, or
 * 0 when a pivot is not clearly positive (relative to the largest diagonal
 * entry), i.e. h is singular or not positive definite.
 */
static int
cholesky(double *h, int k)
{
	double		dmax = 0.0;
	int			i,
				j,
				l;

	for (i = 0; i < k; i++)
		dmax = fmax(dmax, fabs(h[i * k + i]));
	if (!(dmax > 0.0) || !isfinite(dmax))
		return 0;
	for (j = 0; j < k; j++)
	{
		double		s = h[j * k + j];

		for (l = 0; l < j; l++)
			s -= h[j * k + l] * h[j * k + l];
		if (!(s > 1e-10 * dmax))
			return 0;
		h[j * k + j] = sqrt(s);
		for (i = j + 1; i < k; i++)
		{
			double		t = h[i * k + j];

			for (l = 0; l < j; l++)
				t -= h[i * k + l] * h[j * k + l];
			h[i * k + j] = t / h[j * k + j];
		}
	}
	return 1;
}

/* Solves L L' x = b (L from cholesky()) into x. */
static void
cholesky_solve(const double *h, int k, const double *b, double *x)
{
	double		y[MAXP];
	int			i,
				l;

	for (i = 0; i < k; i++)
	{
		double		t = b[i];

		for (l = 0; l < i; l++)
			t -= h[i * k + l] * y[l];
		y[i] = t / h[i * k + i];
	}
	for (i = k - 1; i >= 0; i--)
	{
		double		t = y[i];

		for (l = i + 1; l < k; l++)
			t -= h[l * k + i] * x[l];
		x[i] = t / h[i * k + i];
	}
}

/* The diagonal of the inverse of L L' (L from cholesky()) into diag. */
static void
cholesky_inverse_diag(const double *h, int k, double *diag)
{
	int			c,
				i,
				l;

	for (c = 0; c < k; c++)
	{
		double		y[MAXP];

		/* solve L y = e_c; then (L L')^-1_cc = |y|^2 */
		diag[c] = 0.0;
		for (i = 0; i < k; i++)
		{
			double		t = (i == c) ? 1.0 : 0.0;

			for (l = 0; l < i; l++)
				t -= h[i * k + l] * y[l];
			y[i] = t / h[i * k + i];
			diag[c] += y[i] * y[i];
		}
	}
}

/*
 * Runs the optimizer from each start, keeps the best, checks that the
 * model is identified, and fills fit (params in the original scale, se,
 * counters, status).  ll_shift converts the rescaled log-likelihood to the
 * original one.
 */
static int
fit_run(FitCtx *ctx, CdpBtydProblem *pb, const double (*starts)[MAXP],
		int nstarts, double W, double ll_shift, const char *const *names,
		CdpBtydFit *fit)
{
	CdpBtydMinimum best,
				cur;
	double		hess[MAXP * MAXP],
				var[MAXP],
				pen,
				worst = 0.0;
	char		msg[160];
	int			k = pb->k;
	int			found = 0;
	int			jworst = 0;
	int			i,
				j,
				st;

	memset(&best, 0, sizeof(best));
	for (i = 0; i < nstarts; i++)
	{
		int			rc = cdp_btyd_minimize(pb, starts[i], &cur);

		if (rc == CDP_BTYD_EINTR)
			return fit_status(fit, CDP_BTYD_EINTR, "interrupted");
		if (rc == CDP_BTYD_OK &&
			isfinite(cur.f) && (!found || cur.f < best.f))
		{
			int			its = best.iterations + cur.iterations;
			int			evs = best.evaluations + cur.evaluations;

			best = cur;
			best.iterations = its;
			best.evaluations = evs;
			found = 1;
		}
		else
		{
			best.iterations += cur.iterations;
			best.evaluations += cur.evaluations;
		}
	}
	fit->iterations = best.iterations;
	fit->evaluations = best.evaluations;
	if (!found)
		return fit_status(fit, CDP_BTYD_ENOCONV,
						  "the likelihood is not finite at any starting point");
	for (j = 0; j < k; j++)
		fit->params[j] = exp(best.theta[j]) * ctx->pscale[j];
	fit->converged = best.converged;

	/* unpenalized log-likelihood in the original scale */
	pen = ctx->penalizer;
	ctx->penalizer = 0.0;
	fit->ll = -pb->fn(best.theta, NULL, pb->arg) * W - ll_shift;
	ctx->penalizer = pen;

	for (j = 0; j < k; j++)
	{
		if (best.theta[j] < pb->lo + BOUND_MARGIN ||
			best.theta[j] > pb->hi - BOUND_MARGIN)
		{
			snprintf(msg, sizeof(msg),
					 "the data do not identify the model: %s runs to %s (%g)",
					 names[j], best.theta[j] < 0.0 ? "0" : "infinity",
					 fit->params[j]);
			return fit_status(fit, CDP_BTYD_ENOTIDENT, msg);
		}
	}
	st = cdp_btyd_hessian(pb, best.theta, hess, &fit->evaluations);
	if (pb->interrupted != NULL && pb->interrupted(pb->interrupt_arg))
		return fit_status(fit, CDP_BTYD_EINTR, "interrupted");
	if (st != CDP_BTYD_OK || !cholesky(hess, k))
		return fit_status(fit, CDP_BTYD_ENOTIDENT,
						  "the data do not identify the model: the likelihood is flat at its maximum");
	cholesky_inverse_diag(hess, k, var);
	for (j = 0; j < k; j++)
	{
		/* relative standard error = that of the log-parameter */
		double		rse = sqrt(var[j] / W);

		fit->se[j] = fit->params[j] * rse;
		if (rse > worst)
		{
			worst = rse;
			jworst = j;
		}
	}

	/*
	 * When BFGS stopped on rounding noise above its gradient tolerance, the
	 * estimate still counts as converged if the Newton step from it would
	 * move no parameter by more than a relative 1e-6 or a hundredth of its
	 * standard error (a move the estimate's precision cannot see: large
	 * data sets in fine time units stop there).  When it stopped on a plateau
	 * that the Newton step would leave by more than a factor e, the maximum
	 * lies out toward the bounds.
	 */
	if (!best.converged)
	{
		double		step[MAXP],
					smax = 0.0;
		int			jmax = 0;
		int			small = 1;

		cholesky_solve(hess, k, best.grad, step);
		for (j = 0; j < k; j++)
		{
			if (fabs(step[j]) > smax)
			{
				smax = fabs(step[j]);
				jmax = j;
			}
			if (fabs(step[j]) > fmax(1e-6, 0.01 * sqrt(var[j] / W)))
				small = 0;
		}
		if (small)
			best.converged = 1;
		else if (smax >= 1.0)
		{
			snprintf(msg, sizeof(msg),
					 "the data do not identify the model: the likelihood is flat as %s runs to %s",
					 names[jmax], step[jmax] > 0.0 ? "0" : "infinity");
			return fit_status(fit, CDP_BTYD_ENOTIDENT, msg);
		}
	}
	fit->converged = best.converged;

	/*
	 * A parameter known only within a large factor is not identified: at a
	 * maximum, within e^5 ~ 150; where the optimizer stalled, within e.
	 */
	if (worst > (best.converged ? FLAT_RSE_CONVERGED : FLAT_RSE_STALLED))
	{
		snprintf(msg, sizeof(msg),
				 "the data do not identify the model: the likelihood is flat in %s (relative standard error %.3g)",
				 names[jworst], worst);
		return fit_status(fit, CDP_BTYD_ENOTIDENT, msg);
	}
	if (!best.converged)
	{
		snprintf(msg, sizeof(msg),
				 "the optimizer did not converge (largest gradient %.3g)",
				 best.gnorm);
		return fit_status(fit, CDP_BTYD_ENOCONV, msg);
	}
	return fit_status(fit, CDP_BTYD_OK, "ok");
}

/* Reads the options, with defaults for NULL or zero fields. */
static int
read_options(const CdpBtydOptions *opt, double gtol_default,
			 CdpBtydProblem *pb, FitCtx *ctx)
{
	pb->lo = -THETA_BOUND;
	pb->hi = THETA_BOUND;
	pb->max_iter = 500;
	pb->gtol = gtol_default;
	ctx->penalizer = 0.0;
	if (opt == NULL)
		return CDP_BTYD_OK;
	if (!isfinite(opt->penalizer) || opt->penalizer < 0.0 ||
		opt->max_iter < 0 || !isfinite(opt->gtol) || opt->gtol < 0.0)
		return CDP_BTYD_EINVAL;
	ctx->penalizer = opt->penalizer;
	pb->interrupted = opt->interrupted;
	pb->interrupt_arg = opt->interrupt_arg;
	if (opt->max_iter > 0)
		pb->max_iter = opt->max_iter;
	if (opt->gtol > 0.0)
		pb->gtol = opt->gtol;
	return CDP_BTYD_OK;
}

/*
 * The set-up of every fit: *fit initialized for a model of k parameters, the
 * problem (objective fn, analytic gradient or not) and its context cleared
 * and wired, the options read.
 */
static int
fit_begin(CdpBtydFit *fit, CdpBtydModel model, int k, const CdpBtydOptions *opt,
		  double gtol_default, CdpBtydObjective fn, int analytic_grad,
		  CdpBtydProblem *pb, FitCtx *ctx)
{
	if (fit == NULL)
		return CDP_BTYD_EINVAL;
	fit_init(fit, model, k);
	memset(ctx, 0, sizeof(*ctx));
	memset(pb, 0, sizeof(*pb));
	ctx->k = k;
	pb->k = k;
	pb->fn = fn;
	pb->arg = ctx;
	pb->analytic_grad = analytic_grad;
	if (read_options(opt, gtol_default, pb, ctx) != CDP_BTYD_OK)
		return fit_status(fit, CDP_BTYD_EINVAL, "invalid options");
	return CDP_BTYD_OK;
}

/* Counts the rows and customers of a fit; an error status if too few. */
static int
fit_count(CdpBtydFit *fit, double customers, size_t rows, const char *who)
{
	char		msg[160];

	fit->n_customers = customers;
	fit->n_rows = rows;
	if (customers >= CDP_BTYD_MIN_CUSTOMERS)
		return CDP_BTYD_OK;
	snprintf(msg, sizeof(msg), "too few %s (%g); at least %d are needed",
			 who, customers, CDP_BTYD_MIN_CUSTOMERS);
	return fit_status(fit, CDP_BTYD_ETOOFEW, msg);
}

/* Shared part of the BG/NBD, Pareto/NBD and NBD fits. */
static int
fit_rfm(CdpBtydModel model, const double *x, const double *t_x,
		const double *T, const double *weight, size_t n,
		const CdpBtydOptions *opt, CdpBtydFit *fit)
{
	CdpBtydProblem pb;
	FitCtx		ctx;
	Rfm			d;
	CdpBtydRow *rows;
	size_t		m;
	double		starts[2][MAXP],
				rate;
	int			pareto = (model == CDP_BTYD_PARETO_NBD);
	int			k = (model == CDP_BTYD_NBD) ? 2 : 4;
	int			st;

	st = fit_begin(fit, model, k, opt, pareto ? 1e-7 : 1e-8,
				   pareto ? obj_pareto : model == CDP_BTYD_NBD ? obj_nbd : obj_bgnbd,
				   !pareto, &pb, &ctx);
	if (st != CDP_BTYD_OK)
		return st;
	st = cdp_btyd_collect_rows(x, t_x, T, weight, n, &rows, &m);
	if (st != CDP_BTYD_OK)
		return fit_status(fit, st, st == CDP_BTYD_EINVAL ?
						  "invalid customer data (NaN, negative, fractional x, or t_x outside [0, T])" : NULL);
	st = m > 0 ? rfm_build(rows, m, &d) : CDP_BTYD_OK;
	free(rows);
	if (st != CDP_BTYD_OK)
		return fit_status(fit, st, NULL);
	if (m == 0)
		memset(&d, 0, sizeof(d));
	if (fit_count(fit, d.W, m, "customers") != CDP_BTYD_OK)
	{
		rfm_free(&d);
		return fit->status;
	}
	if (d.swx == 0.0)
	{
		rfm_free(&d);
		return fit_status(fit, CDP_BTYD_ENOREPEAT,
						  "no customer made a repeat purchase (all x = 0)");
	}
	if (pareto)
	{
		d.cache = malloc(d.nT * sizeof(double));
		d.stamp = malloc(d.nT * sizeof(int));
		if (d.cache == NULL || d.stamp == NULL)
		{
			rfm_free(&d);
			return fit_status(fit, CDP_BTYD_ENOMEM, NULL);
		}
	}
	ctx.rfm = &d;
	ctx.pscale[0] = 1.0;
	ctx.pscale[1] = d.scale;
	ctx.pscale[2] = 1.0;
	ctx.pscale[3] = pareto ? d.scale : 1.0;

	/* repeat purchases per unit of (rescaled) time */
	rate = d.swx / d.W;
	starts[0][0] = 0.0;
	starts[0][1] = -log(rate);
	starts[0][2] = 0.0;
	starts[0][3] = 0.0;
	starts[1][0] = log(0.3);
	starts[1][1] = log(0.3 / rate);
	starts[1][2] = log(pareto ? 0.5 : 0.7);
	starts[1][3] = log(pareto ? 2.0 : 3.0);

	st = fit_run(&ctx, &pb, (const double (*)[MAXP]) starts, 2, d.W,
				 d.swx * log(d.scale),
				 pareto ? pareto_names : k == 2 ? nbd_names : bgnbd_names, fit);
	rfm_free(&d);
	return st;
}

/* Fits the BG/NBD model (see btyd.h). */
int
cdp_btyd_fit_bgnbd(const double *x, const double *t_x, const double *T,
				   const double *weight, size_t n,
				   const CdpBtydOptions *opt, CdpBtydFit *fit)
{
	return fit_rfm(CDP_BTYD_BGNBD, x, t_x, T, weight, n, opt, fit);
}

/* Fits the Pareto/NBD model (see btyd.h). */
int
cdp_btyd_fit_pareto(const double *x, const double *t_x, const double *T,
					const double *weight, size_t n,
					const CdpBtydOptions *opt, CdpBtydFit *fit)
{
	return fit_rfm(CDP_BTYD_PARETO_NBD, x, t_x, T, weight, n, opt, fit);
}

/* Fits the NBD model (see btyd.h). */
int
cdp_btyd_fit_nbd(const double *x, const double *t_x, const double *T,
				 const double *weight, size_t n,
				 const CdpBtydOptions *opt, CdpBtydFit *fit)
{
	return fit_rfm(CDP_BTYD_NBD, x, t_x, T, weight, n, opt, fit);
}

/* Fits the Gamma-Gamma model (see btyd.h). */
int
cdp_btyd_fit_gg(const double *x, const double *m, const double *weight,
				size_t n, const CdpBtydOptions *opt, CdpBtydFit *fit)
{
	CdpBtydProblem pb;
	FitCtx		ctx;
	Spend		d;
	CdpBtydSpendRow *rows;
	size_t		k;
	double		starts[2][MAXP] = {{0.0}};
	int			st;

	st = fit_begin(fit, CDP_BTYD_GAMMA_GAMMA, 3, opt, 1e-8, obj_gg, 1, &pb, &ctx);
	if (st != CDP_BTYD_OK)
		return st;
	st = cdp_btyd_collect_spend(x, m, weight, n, &rows, &k);
	if (st != CDP_BTYD_OK)
		return fit_status(fit, st, st == CDP_BTYD_EINVAL ?
						  "invalid spend data (NaN, negative, or fractional x)" : NULL);
	st = k > 0 ? spend_build(rows, k, &d) : CDP_BTYD_OK;
	free(rows);
	if (st != CDP_BTYD_OK)
		return fit_status(fit, st, NULL);
	if (k == 0)
		memset(&d, 0, sizeof(d));
	if (fit_count(fit, d.W, k, "customers with x > 0 and m > 0") != CDP_BTYD_OK)
	{
		spend_free(&d);
		return fit->status;
	}
	ctx.spend = &d;
	ctx.pscale[0] = 1.0;
	ctx.pscale[1] = 1.0;
	ctx.pscale[2] = d.scale;

	/* both starts put the mean spend p gamma / (q - 1) at 1 */
	starts[0][0] = 0.0;
	starts[0][1] = log(2.0);
	starts[0][2] = 0.0;
	starts[1][0] = log(5.0);
	starts[1][1] = log(4.0);
	starts[1][2] = log(0.6);

	st = fit_run(&ctx, &pb, (const double (*)[MAXP]) starts, 2, d.W,
				 d.W * log(d.scale), gg_names, fit);
	spend_free(&d);
	return st;
}
