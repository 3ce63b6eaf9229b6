/*
 * btyd_optim.c
 *	  A small bounded minimizer for the BTYD fits: BFGS on at most
 *	  CDP_BTYD_MAX_PARAMS variables with a backtracking (Armijo) line search
 *	  inside a box, an active set for components held at a bound, numerical
 *	  gradients by central differences when the objective has no analytic
 *	  one, a Nelder-Mead fallback when BFGS stalls, and a finite-difference
 *	  Hessian for standard errors and identification checks.
 *
 * All state lives on the stack of the caller; reentrant.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "btyd_internal.h"

#include <math.h>
#include <string.h>

#define MAXP CDP_BTYD_MAX_PARAMS

/* Step of the central-difference gradient (in theta). */
#define GRAD_STEP 1e-5

/* Step of the Hessian differences (gradient-based, function-based). */
#define HESS_STEP_G 1e-4
#define HESS_STEP_F 1e-3

/* No BFGS step moves a component of theta by more than this. */
#define MAX_STEP 2.0

/* Evaluation context: the problem and an evaluation counter. */
typedef struct Eval
{
	const CdpBtydProblem *pb;
	int			evals;
	int			stopped;		/* the caller asked to stop */
} Eval;

/* Whether the caller asks to stop; once it has, every evaluation fails. */
static int
stopping(Eval *ev)
{
	if (!ev->stopped && ev->pb->interrupted != NULL && ev->pb->interrupted(ev->pb->interrupt_arg))
		ev->stopped = 1;
	return ev->stopped;
}

/* f at theta, +inf outside the box or where the objective is not finite. */
static double
eval_f(Eval *ev, const double *theta)
{
	double		f;
	int			i;

	for (i = 0; i < ev->pb->k; i++)
		if (!(theta[i] >= ev->pb->lo && theta[i] <= ev->pb->hi))
			return INFINITY;
	if (stopping(ev))
		return INFINITY;
	ev->evals++;
	f = ev->pb->fn(theta, NULL, ev->pb->arg);
	return isfinite(f) ? f : INFINITY;
}

/* f and its gradient (analytic, or central differences within the box). */
static double
eval_fg(Eval *ev, const double *theta, double *g)
{
	const CdpBtydProblem *pb = ev->pb;
	double		f;
	double		t[MAXP];
	int			i;

	if (stopping(ev))
		return INFINITY;

	for (i = 0; i < pb->k; i++)
		if (!(theta[i] >= pb->lo && theta[i] <= pb->hi))
			return INFINITY;
	if (pb->analytic_grad)
	{
		ev->evals++;
		f = pb->fn(theta, g, pb->arg);
		if (!isfinite(f))
			return INFINITY;
		for (i = 0; i < pb->k; i++)
			if (!isfinite(g[i]))
				return INFINITY;
		return f;
	}
	f = eval_f(ev, theta);
	if (!isfinite(f))
		return INFINITY;
	memcpy(t, theta, sizeof(double) * pb->k);
	for (i = 0; i < pb->k; i++)
	{
		double		hp = fmin(GRAD_STEP, pb->hi - theta[i]);
		double		hm = fmin(GRAD_STEP, theta[i] - pb->lo);
		double		fp = f,
					fm = f;

		if (hp > 0.0)
		{
			t[i] = theta[i] + hp;
			fp = eval_f(ev, t);
		}
		if (hm > 0.0)
		{
			t[i] = theta[i] - hm;
			fm = eval_f(ev, t);
		}
		t[i] = theta[i];
		if (!isfinite(fp) || !isfinite(fm) || hp + hm <= 0.0)
			return INFINITY;
		g[i] = (fp - fm) / (hp + hm);
	}
	return f;
}

/*
 * Marks the components held at a bound with the gradient pushing outward,
 * and returns the largest |g| over the others.
 */
static double
free_gnorm(const CdpBtydProblem *pb, const double *x, const double *g,
		   int *held)
{
	double		gn = 0.0;
	int			i;

	for (i = 0; i < pb->k; i++)
	{
		held[i] = (x[i] <= pb->lo + 1e-12 && g[i] > 0.0) ||
			(x[i] >= pb->hi - 1e-12 && g[i] < 0.0);
		if (!held[i])
			gn = fmax(gn, fabs(g[i]));
	}
	return gn;
}

/* Sets the k x k matrix h to the identity. */
static void
set_identity(double *h, int k)
{
	int			i;

	memset(h, 0, sizeof(double) * k * k);
	for (i = 0; i < k; i++)
		h[i * k + i] = 1.0;
}

/*
 * BFGS from x (updated in place, with f and g); returns 1 if the gradient
 * tolerance was met.  *iters counts the iterations.
 */
static int
bfgs(Eval *ev, double *x, double *f, double *g, int *iters)
{
	const CdpBtydProblem *pb = ev->pb;
	int			k = pb->k;
	double		H[MAXP * MAXP];
	int			held[MAXP];
	int			fresh = 1;		/* H is the identity */
	int			flat = 0;
	int			it;

	set_identity(H, k);
	for (it = 0; it < pb->max_iter && !ev->stopped; it++)
	{
		double		p[MAXP],
					xn[MAXP],
					gn[MAXP],
					s[MAXP],
					y[MAXP];
		double		gp = 0.0,
					pmax = 0.0,
					amax = 1.0,
					a,
					fn = INFINITY,
					sy = 0.0,
					ss = 0.0,
					yy = 0.0;
		int			i,
					j,
					ls,
					ok = 0;

		if (free_gnorm(pb, x, g, held) <= pb->gtol)
			return 1;
		for (i = 0; i < k; i++)
		{
			p[i] = 0.0;
			if (held[i])
				continue;
			for (j = 0; j < k; j++)
				if (!held[j])
					p[i] -= H[i * k + j] * g[j];
		}
		for (i = 0; i < k; i++)
			gp += p[i] * g[i];
		if (!(gp < 0.0))
		{
			/* not a descent direction: restart from steepest descent */
			set_identity(H, k);
			fresh = 1;
			gp = 0.0;
			for (i = 0; i < k; i++)
			{
				p[i] = held[i] ? 0.0 : -g[i];
				gp += p[i] * g[i];
			}
			if (!(gp < 0.0))
				return 0;
		}
		for (i = 0; i < k; i++)
			pmax = fmax(pmax, fabs(p[i]));
		if (pmax > MAX_STEP)
		{
			for (i = 0; i < k; i++)
				p[i] *= MAX_STEP / pmax;
			gp *= MAX_STEP / pmax;
		}
		/* stay in the box */
		for (i = 0; i < k; i++)
		{
			if (p[i] > 0.0)
				amax = fmin(amax, (pb->hi - x[i]) / p[i]);
			else if (p[i] < 0.0)
				amax = fmin(amax, (pb->lo - x[i]) / p[i]);
		}
		a = amax;
		for (ls = 0; ls < 60 && a > 0.0; ls++)
		{
			for (i = 0; i < k; i++)
				xn[i] = fmin(pb->hi, fmax(pb->lo, x[i] + a * p[i]));
			fn = eval_f(ev, xn);
			if (isfinite(fn) && fn <= *f + 1e-4 * a * gp)
			{
				ok = 1;
				break;
			}
			if (isfinite(fn))
			{
				/* minimum of the quadratic through f, f'(0) and fn */
				double		q = -gp * a * a / (2.0 * (fn - *f - gp * a));

				a = fmin(0.5 * a, fmax(0.1 * a, q));
			}
			else
				a *= 0.25;
		}
		if (ok)
			fn = eval_fg(ev, xn, gn);
		if (!ok || !isfinite(fn))
		{
			if (fresh)
				return 0;		/* stalled even along steepest descent */
			set_identity(H, k);
			fresh = 1;
			continue;
		}
		for (i = 0; i < k; i++)
		{
			s[i] = xn[i] - x[i];
			y[i] = gn[i] - g[i];
			sy += s[i] * y[i];
			ss += s[i] * s[i];
			yy += y[i] * y[i];
		}
		/* update only where the curvature condition holds */
		if (sy > 1e-12 * sqrt(ss * yy))
		{
			double		Hy[MAXP];
			double		yHy = 0.0;
			double		rho = 1.0 / sy;

			if (fresh)
			{
				/* scale the initial matrix to the curvature just seen */
				set_identity(H, k);
				for (i = 0; i < k; i++)
					H[i * k + i] = sy / yy;
				fresh = 0;
			}
			for (i = 0; i < k; i++)
			{
				Hy[i] = 0.0;
				for (j = 0; j < k; j++)
					Hy[i] += H[i * k + j] * y[j];
				yHy += y[i] * Hy[i];
			}
			for (i = 0; i < k; i++)
				for (j = 0; j < k; j++)
					H[i * k + j] += (1.0 + rho * yHy) * rho * s[i] * s[j] -
						rho * (Hy[i] * s[j] + s[i] * Hy[j]);
		}
		flat = (*f - fn <= 1e-15 * (1.0 + fabs(*f))) ? flat + 1 : 0;
		memcpy(x, xn, sizeof(double) * k);
		memcpy(g, gn, sizeof(double) * k);
		*f = fn;
		(*iters)++;
		if (flat >= 4)
			return free_gnorm(pb, x, g, held) <= pb->gtol;
	}
	return free_gnorm(pb, x, g, held) <= pb->gtol;
}

/* Nelder-Mead from x (updated in place with its f) within the box. */
static void
nelder_mead(Eval *ev, double *x, double *f, int max_evals)
{
	const CdpBtydProblem *pb = ev->pb;
	int			k = pb->k;
	double		v[MAXP + 1][MAXP];
	double		fv[MAXP + 1];
	int			start = ev->evals;
	int			iter;
	int			i,
				j;

	memcpy(v[0], x, sizeof(double) * k);
	fv[0] = *f;
	for (i = 1; i <= k; i++)
	{
		memcpy(v[i], x, sizeof(double) * k);
		v[i][i - 1] += (x[i - 1] + 0.5 <= pb->hi) ? 0.5 : -0.5;
		fv[i] = eval_f(ev, v[i]);
	}
	/* points outside the box cost no evaluation: bound the iterations too */
	for (iter = 0; iter < max_evals && ev->evals - start < max_evals && !ev->stopped; iter++)
	{
		double		c[MAXP],
					xr[MAXP],
					xe[MAXP],
					fr,
					fe,
					size = 0.0;
		int			lo = 0,
					hi = 0,
					nh = 0;

		for (i = 0; i <= k; i++)
		{
			if (fv[i] < fv[lo])
				lo = i;
			if (fv[i] > fv[hi])
				hi = i;
		}
		nh = (hi == 0) ? 1 : 0;
		for (i = 0; i <= k; i++)
			if (i != hi && fv[i] > fv[nh])
				nh = i;
		for (i = 0; i <= k; i++)
			for (j = 0; j < k; j++)
				size = fmax(size, fabs(v[i][j] - v[lo][j]));
		if (isfinite(fv[hi]) &&
			fv[hi] - fv[lo] <= 1e-14 * (1.0 + fabs(fv[lo])) && size < 1e-8)
			break;
		for (j = 0; j < k; j++)
		{
			c[j] = 0.0;
			for (i = 0; i <= k; i++)
				if (i != hi)
					c[j] += v[i][j] / k;
			xr[j] = c[j] + (c[j] - v[hi][j]);
		}
		fr = eval_f(ev, xr);
		if (fr < fv[lo])
		{
			for (j = 0; j < k; j++)
				xe[j] = c[j] + 2.0 * (c[j] - v[hi][j]);
			fe = eval_f(ev, xe);
			if (fe < fr)
			{
				memcpy(v[hi], xe, sizeof(double) * k);
				fv[hi] = fe;
			}
			else
			{
				memcpy(v[hi], xr, sizeof(double) * k);
				fv[hi] = fr;
			}
		}
		else if (fr < fv[nh])
		{
			memcpy(v[hi], xr, sizeof(double) * k);
			fv[hi] = fr;
		}
		else
		{
			/* contract toward the better of the worst point and xr */
			int			outside = fr < fv[hi];

			for (j = 0; j < k; j++)
				xe[j] = c[j] + 0.5 * ((outside ? xr[j] : v[hi][j]) - c[j]);
			fe = eval_f(ev, xe);
			if (fe < (outside ? fr : fv[hi]))
			{
				memcpy(v[hi], xe, sizeof(double) * k);
				fv[hi] = fe;
			}
			else
			{
				/* shrink toward the best vertex */
				for (i = 0; i <= k; i++)
				{
					if (i == lo)
						continue;
					for (j = 0; j < k; j++)
						v[i][j] = v[lo][j] + 0.5 * (v[i][j] - v[lo][j]);
					fv[i] = eval_f(ev, v[i]);
				}
			}
		}
	}
	j = 0;
	for (i = 1; i <= k; i++)
		if (fv[i] < fv[j])
			j = i;
	if (fv[j] < *f)
	{
		memcpy(x, v[j], sizeof(double) * k);
		*f = fv[j];
	}
}

/* Minimizes pb->fn from theta0: BFGS, then Nelder-Mead and BFGS if stalled. */
int
cdp_btyd_minimize(const CdpBtydProblem *pb, const double *theta0,
				  CdpBtydMinimum *min)
{
	Eval		ev;
	double		x[MAXP],
				g[MAXP],
				f;
	int			held[MAXP];
	int			iters = 0;
	int			conv;
	int			i;

	memset(min, 0, sizeof(*min));
	if (pb->k < 1 || pb->k > MAXP)
		return CDP_BTYD_EINVAL;
	ev.pb = pb;
	ev.evals = 0;
	ev.stopped = 0;
	for (i = 0; i < pb->k; i++)
		x[i] = fmin(pb->hi, fmax(pb->lo, theta0[i]));
	f = eval_fg(&ev, x, g);
	if (!isfinite(f))
	{
		min->f = INFINITY;
		min->evaluations = ev.evals;
		memcpy(min->theta, x, sizeof(double) * pb->k);
		return ev.stopped ? CDP_BTYD_EINTR : CDP_BTYD_EDOMAIN;
	}
	conv = bfgs(&ev, x, &f, g, &iters);
	/* a stall with a gradient this small is rounding, not a bad direction */
	if (!conv && free_gnorm(pb, x, g, held) > 1e3 * pb->gtol)
	{
		double		fold = f;

		nelder_mead(&ev, x, &f, 400 * pb->k);
		if (f < fold || free_gnorm(pb, x, g, held) > pb->gtol)
		{
			f = eval_fg(&ev, x, g);
			if (isfinite(f))
				conv = bfgs(&ev, x, &f, g, &iters);
		}
	}
	memcpy(min->theta, x, sizeof(double) * pb->k);
	memcpy(min->grad, g, sizeof(double) * pb->k);
	min->f = f;
	min->gnorm = free_gnorm(pb, x, g, held);
	min->iterations = iters;
	min->evaluations = ev.evals;
	min->converged = conv;
	return ev.stopped ? CDP_BTYD_EINTR : CDP_BTYD_OK;
}

/* The Hessian of pb->fn at theta by central differences. */
int
cdp_btyd_hessian(const CdpBtydProblem *pb, const double *theta,
				 double *hess, int *evals)
{
	Eval		ev;
	double		t[MAXP];
	int			k = pb->k;
	int			i,
				j;

	ev.pb = pb;
	ev.evals = 0;
	ev.stopped = 0;
	memcpy(t, theta, sizeof(double) * k);
	if (pb->analytic_grad)
	{
		double		gp[MAXP],
					gm[MAXP];
		double		h = HESS_STEP_G;

		for (j = 0; j < k; j++)
		{
			t[j] = theta[j] + h;
			if (!isfinite(eval_fg(&ev, t, gp)))
				goto fail;
			t[j] = theta[j] - h;
			if (!isfinite(eval_fg(&ev, t, gm)))
				goto fail;
			t[j] = theta[j];
			for (i = 0; i < k; i++)
				hess[i * k + j] = (gp[i] - gm[i]) / (2.0 * h);
		}
		for (i = 0; i < k; i++)
			for (j = 0; j < i; j++)
				hess[i * k + j] = hess[j * k + i] =
					0.5 * (hess[i * k + j] + hess[j * k + i]);
	}
	else
	{
		double		h = HESS_STEP_F;
		double		f0 = eval_f(&ev, theta);

		if (!isfinite(f0))
			goto fail;
		for (i = 0; i < k; i++)
		{
			double		fp,
						fm;

			t[i] = theta[i] + h;
			fp = eval_f(&ev, t);
			t[i] = theta[i] - h;
			fm = eval_f(&ev, t);
			t[i] = theta[i];
			if (!isfinite(fp) || !isfinite(fm))
				goto fail;
			hess[i * k + i] = (fp - 2.0 * f0 + fm) / (h * h);
			for (j = 0; j < i; j++)
			{
				double		f4[4];
				int			q;

				for (q = 0; q < 4; q++)
				{
					t[i] = theta[i] + ((q & 1) ? -h : h);
					t[j] = theta[j] + ((q & 2) ? -h : h);
					f4[q] = eval_f(&ev, t);
					if (!isfinite(f4[q]))
						goto fail;
				}
				t[i] = theta[i];
				t[j] = theta[j];
				hess[i * k + j] = hess[j * k + i] =
					(f4[0] - f4[1] - f4[2] + f4[3]) / (4.0 * h * h);
			}
		}
	}
	*evals += ev.evals;
	return CDP_BTYD_OK;

fail:
	*evals += ev.evals;
	return CDP_BTYD_EDOMAIN;
}
