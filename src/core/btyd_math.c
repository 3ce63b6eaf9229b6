/*
 * btyd_math.c
 *	  Special functions of the BTYD models: log-gamma and digamma for
 *	  positive arguments, the Gauss hypergeometric function 2F1 in log
 *	  space, and the Pareto/NBD integral
 *		  J = int_{t0}^{t1} (alpha + tau)^-A (beta + tau)^-B d tau
 *	  by a 2F1 series or, where that converges slowly, by Gauss-Legendre
 *	  quadrature.
 *
 * Nothing here keeps state (in particular log-gamma does not set the
 * global signgam as lgamma() does), so every function is reentrant.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "btyd_internal.h"

#include <float.h>
#include <math.h>

/* Most terms of a 2F1 series before giving up. */
#define HYP2F1_MAX_TERMS 200000

/* Relative size of the last term (or tail) at which a series stops. */
#define SERIES_EPS 1e-17

/*
 * The Pareto/NBD tail series in z converges like z^k; above this argument
 * quadrature is used instead.
 */
#define PNBD_SERIES_ZMAX 0.9

/* Most quadrature panels before giving up. */
#define QUAD_MAX_PANELS 20000

/* The quadrature ignores where the integrand is below exp(-this) * max. */
#define QUAD_LOG_CUTOFF 50.0

/* Largest change of the log-integrand over one quadrature panel. */
#define QUAD_MAX_RISE 8.0

/* Nodes (positive half) and weights of 20-point Gauss-Legendre on [-1, 1]. */
static const double gl_node[10] = {
	0.076526521133497333755, 0.22778585114164507808, 0.37370608871541956067,
	0.510867001950827098, 0.63605368072651502545, 0.74633190646015079261,
	0.83911697182221882339, 0.91223442825132590587, 0.96397192727791379127,
	0.99312859918509492479
};
static const double gl_weight[10] = {
	0.1527533871307258507, 0.14917298647260374679, 0.14209610931838205133,
	0.1316886384491766269, 0.11819453196151841731, 0.10193011981724043504,
	0.083276741576704748725, 0.06267204833410906357, 0.040601429800386941331,
	0.017614007139152118312
};

/* log Gamma(x), x > 0: upward recurrence to x >= 15, then Stirling's series. */
double
cdp_btyd_lgamma(double x)
{
	double		prod = 1.0;
	double		z,
				z2,
				series;

	if (isnan(x) || x <= 0.0)
		return NAN;
	if (isinf(x))
		return INFINITY;
	while (x < 15.0)
	{
		prod *= x;
		x += 1.0;
	}
	z = 1.0 / x;
	z2 = z * z;
	series = z * (1.0 / 12.0 + z2 * (-1.0 / 360.0 + z2 * (1.0 / 1260.0 +
			 z2 * (-1.0 / 1680.0 + z2 * (1.0 / 1188.0 +
			 z2 * (-691.0 / 360360.0 + z2 * (1.0 / 156.0)))))));
	return (x - 0.5) * log(x) - x + 0.91893853320467274178 + series - log(prod);
}

/* psi(x), x > 0: upward recurrence to x >= 12, then the asymptotic series. */
double
cdp_btyd_digamma(double x)
{
	double		acc = 0.0;
	double		z2,
				series;

	if (isnan(x) || x <= 0.0)
		return NAN;
	if (isinf(x))
		return INFINITY;
	while (x < 12.0)
	{
		acc -= 1.0 / x;
		x += 1.0;
	}
	z2 = 1.0 / (x * x);
	series = z2 * (1.0 / 12.0 - z2 * (1.0 / 120.0 - z2 * (1.0 / 252.0 -
			 z2 * (1.0 / 240.0 - z2 * (1.0 / 132.0 - z2 * (691.0 / 32760.0 -
			 z2 * (1.0 / 12.0)))))));
	return acc + log(x) - 0.5 / x - series;
}

/* log(exp(u) + exp(v)) without overflow. */
double
cdp_btyd_logaddexp(double u, double v)
{
	double		hi,
				lo;

	if (isnan(u) || isnan(v))
		return NAN;
	hi = u > v ? u : v;
	lo = u > v ? v : u;
	if (lo == -INFINITY || hi == INFINITY)
		return hi;
	return hi + log1p(exp(lo - hi));
}

/*
 * Sums the series of 2F1(a, b; c; z) for 0 < z < 1, rescaling as it goes;
 * adds log|sum| to *log_abs and returns the sign in *sign.
 */
static int
hyp2f1_series(double a, double b, double c, double z, double *log_abs,
			  int *sign)
{
	double		sum = 1.0;
	double		term = 1.0;
	double		logscale = 0.0;
	double		kmin;
	int			k;

	/* beyond kmin every factor of the term ratio keeps its sign */
	kmin = fmax(fmax(-a, -b), fmax(-c, 0.0));
	for (k = 0; k < HYP2F1_MAX_TERMS; k++)
	{
		double		ratio = (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;

		term *= ratio;
		sum += term;
		if (term == 0.0)
			break;				/* a or b a whole number <= 0: a polynomial */
		if (!isfinite(sum) || !isfinite(term))
			return CDP_BTYD_ENOCONV;
		if (fabs(sum) > 1e200 || fabs(term) > 1e200)
		{
			double		f = fmax(fabs(sum), fabs(term));

			sum /= f;
			term /= f;
			logscale += log(f);
		}
		if (k + 1.0 > kmin)
		{
			/* bound on every later ratio: each factor tends to 1 monotonely */
			double		j = k + 1.0;
			double		f1 = fabs((a + j) / (c + j));
			double		f2 = fabs((b + j) / (1.0 + j));
			double		rho = z * fmax(f1, 1.0) * fmax(f2, 1.0);

			if (rho < 1.0 &&
				fabs(term) * rho / (1.0 - rho) <= SERIES_EPS * fabs(sum))
				break;
		}
	}
	if (k >= HYP2F1_MAX_TERMS)
		return CDP_BTYD_ENOCONV;
	if (sum == 0.0)
	{
		*log_abs = -INFINITY;
		*sign = 0;
		return CDP_BTYD_OK;
	}
	*log_abs += logscale + log(fabs(sum));
	*sign = sum > 0.0 ? 1 : -1;
	return CDP_BTYD_OK;
}

/* log|2F1(a, b; c; z)| and its sign, for z < 1 (see btyd.h). */
int
cdp_btyd_log_hyp2f1(double a, double b, double c, double z,
					double *log_abs, int *sign)
{
	double		pre = 0.0;

	if (log_abs == NULL || sign == NULL)
		return CDP_BTYD_EINVAL;
	*log_abs = NAN;
	*sign = 0;
	if (!isfinite(a) || !isfinite(b) || !isfinite(c) || isnan(z))
		return CDP_BTYD_EINVAL;
	if (z >= 1.0 || (c <= 0.0 && c == floor(c)))
		return CDP_BTYD_EDOMAIN;
	if (z == 0.0 || a == 0.0 || b == 0.0)
	{
		*log_abs = 0.0;
		*sign = 1;
		return CDP_BTYD_OK;
	}
	if (z < 0.0)
	{
		/* Pfaff: 2F1(a,b;c;z) = (1-z)^-a 2F1(a, c-b; c; z/(z-1)) */
		double		w = z / (z - 1.0);
		double		l1z = log1p(-z);

		if (fabs(b) + fabs(c - a) < fabs(a) + fabs(c - b))
		{
			double		t = a;

			a = b;
			b = t;
		}
		pre = -a * l1z;
		b = c - b;
		z = w;
		if (z >= 1.0)
			return CDP_BTYD_ENOCONV;	/* z so negative that w rounds to 1 */
	}
	else if (fabs(c - a) + fabs(c - b) < fabs(a) + fabs(b))
	{
		/* Euler: 2F1(a,b;c;z) = (1-z)^(c-a-b) 2F1(c-a, c-b; c; z) */
		pre = (c - a - b) * log1p(-z);
		a = c - a;
		b = c - b;
	}
	*log_abs = pre;
	return hyp2f1_series(a, b, c, z, log_abs, sign);
}

/*
 * 2F1(1, b; c; z) for 0 <= z < 1 and c >= b > 0: positive terms whose
 * ratio (b+k) z / (c+k) stays below z, so the tail after a term is at most
 * term * z / (1 - z).
 */
static double
hyp2f1_one(double b, double c, double z)
{
	double		sum = 1.0;
	double		term = 1.0;
	double		tail = z / (1.0 - z);
	int			k;

	for (k = 0; k < HYP2F1_MAX_TERMS; k++)
	{
		term *= (b + k) / (c + k) * z;
		sum += term;
		if (term * tail <= SERIES_EPS * sum)
			break;
	}
	return sum;
}

/* log of int_t^inf (alpha+tau)^-A (beta+tau)^-B d tau by the 2F1 series. */
int
cdp_btyd_pnbd_log_tail(double alpha, double beta, double A, double B,
					   double t, double *log_i)
{
	double		k = A + B - 1.0;	/* r + s + x in the literature */
	double		z;

	if (alpha >= beta)
	{
		/*
		 * (alpha+t)^-k / k * 2F1(k, B; k+1; z), z = (alpha-beta)/(alpha+t),
		 * after Euler's transformation (1-z)^(1-B) 2F1(1, A; A+B; z).
		 */
		z = (alpha - beta) / (alpha + t);
		if (z > PNBD_SERIES_ZMAX)
			return CDP_BTYD_ENOCONV;
		*log_i = -k * log(alpha + t) - log(k) +
			(1.0 - B) * log((beta + t) / (alpha + t)) +
			log(hyp2f1_one(A, A + B, z));
	}
	else
	{
		/* the same with the roles of (alpha, A) and (beta, B) swapped */
		z = (beta - alpha) / (beta + t);
		if (z > PNBD_SERIES_ZMAX)
			return CDP_BTYD_ENOCONV;
		*log_i = -k * log(beta + t) - log(k) +
			(1.0 - A) * log((alpha + t) / (beta + t)) +
			log(hyp2f1_one(B, A + B, z));
	}
	return CDP_BTYD_OK;
}

/*
 * Log of the integrand after the substitution w = log(m + tau), m the
 * smaller of alpha and beta, d the difference, Am and BM the exponents of
 * the smaller and the larger: (1 - Am - BM) w - BM log(1 + d e^-w).  It is
 * concave in w, so the integrand is unimodal.
 */
static inline double
quad_phi(double w, double d, double Am, double BM)
{
	return (1.0 - Am - BM) * w - BM * log1p(d * exp(-w));
}

/* 20-point Gauss-Legendre on [a, b] of exp(phi - shift). */
static double
quad_panel(double a, double b, double d, double Am, double BM, double shift)
{
	double		mid = 0.5 * (a + b);
	double		half = 0.5 * (b - a);
	double		s = 0.0;
	int			i;

	for (i = 0; i < 10; i++)
	{
		double		u = half * gl_node[i];

		s += gl_weight[i] * (exp(quad_phi(mid + u, d, Am, BM) - shift) +
							 exp(quad_phi(mid - u, d, Am, BM) - shift));
	}
	return s * half;
}

/*
 * Integrates exp(phi - shift) from the maximum w_from toward the limit w_to
 * (either direction) in panels over which phi, monotone on this side of its
 * maximum, changes by at most QUAD_MAX_RISE; stops where phi has fallen
 * QUAD_LOG_CUTOFF below the maximum.  Adds to *sum; counts panels.
 */
static int
quad_side(double w_from, double w_to, double d, double Am, double BM,
		  double shift, double *sum, int *panels)
{
	double		dir = w_to > w_from ? 1.0 : -1.0;
	double		a = w_from,
				fa = shift,
				h = 1.0;

	while (dir * (w_to - a) > 0.0)
	{
		double		b = a + dir * h,
					fb;

		if (dir * (b - w_to) > 0.0)
			b = w_to;
		fb = quad_phi(b, d, Am, BM);
		if (fabs(fb - fa) > QUAD_MAX_RISE && b != a && h > 1e-300)
		{
			h = 0.5 * fabs(b - a);
			if (++*panels > QUAD_MAX_PANELS)
				return CDP_BTYD_ENOCONV;
			continue;
		}
		if (b == a)
			break;
		*sum += dir > 0.0 ? quad_panel(a, b, d, Am, BM, shift) :
			quad_panel(b, a, d, Am, BM, shift);
		if (fb < shift - QUAD_LOG_CUTOFF || ++*panels > QUAD_MAX_PANELS)
			break;
		a = b;
		fa = fb;
		h = fmin(4.0, 2.0 * h);
	}
	return *panels > QUAD_MAX_PANELS ? CDP_BTYD_ENOCONV : CDP_BTYD_OK;
}

/* The Pareto/NBD integral over [t0, t1] by quadrature in w = log(m + tau). */
int
cdp_btyd_pnbd_log_quad(double alpha, double beta, double A, double B,
					   double t0, double t1, double *log_j)
{
	double		m,
				d,
				Am,
				BM,
				w0,
				w1,
				ws,
				fmax_,
				sum = 0.0;
	int			panels = 0;

	if (!(t1 > t0))
	{
		*log_j = -INFINITY;
		return CDP_BTYD_OK;
	}
	if (alpha <= beta)
	{
		m = alpha;
		d = beta - alpha;
		Am = A;
		BM = B;
	}
	else
	{
		m = beta;
		d = alpha - beta;
		Am = B;
		BM = A;
	}
	w0 = log(m + t0);
	w1 = log(m + t1);

	/* the maximum of the concave log-integrand, clamped to [w0, w1] */
	ws = w0;
	if (Am < 1.0 && d > 0.0)
	{
		ws = log((1.0 - Am) * d / (Am + BM - 1.0));
		if (ws < w0)
			ws = w0;
		if (ws > w1)
			ws = w1;
	}
	fmax_ = quad_phi(ws, d, Am, BM);
	if (!isfinite(fmax_) ||
		quad_side(ws, w1, d, Am, BM, fmax_, &sum, &panels) != CDP_BTYD_OK ||
		quad_side(ws, w0, d, Am, BM, fmax_, &sum, &panels) != CDP_BTYD_OK)
		return CDP_BTYD_ENOCONV;
	if (!(sum > 0.0) || !isfinite(sum))
		return CDP_BTYD_ENOCONV;
	*log_j = fmax_ + log(sum);
	return CDP_BTYD_OK;
}

/*
 * log of int_{t0}^{t1} (alpha+tau)^-A (beta+tau)^-B d tau: the difference
 * of two series tails when the series converge fast and the difference
 * does not cancel, else quadrature.
 */
int
cdp_btyd_pnbd_log_integral(double alpha, double beta, double A, double B,
						   double t0, double t1, double *log_j)
{
	double		l0,
				l1;

	if (!(t1 > t0))
	{
		*log_j = -INFINITY;
		return CDP_BTYD_OK;
	}
	if (cdp_btyd_pnbd_log_tail(alpha, beta, A, B, t0, &l0) == CDP_BTYD_OK)
	{
		if (isinf(t1))
		{
			*log_j = l0;
			return CDP_BTYD_OK;
		}
		if (cdp_btyd_pnbd_log_tail(alpha, beta, A, B, t1, &l1) == CDP_BTYD_OK &&
			l1 - l0 < -0.69314718055994530942)
		{
			*log_j = l0 + log1p(-exp(l1 - l0));
			return CDP_BTYD_OK;
		}
	}
	return cdp_btyd_pnbd_log_quad(alpha, beta, A, B, t0, t1, log_j);
}
