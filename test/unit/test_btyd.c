/*
 * test_btyd.c
 *	  Unit tests of src/core/btyd*.c: special functions, likelihood
 *	  gradients, the published CDNOW estimates and figures of the BG/NBD,
 *	  Pareto/NBD and Gamma-Gamma models, robustness on degenerate input,
 *	  compression and weights, and the time of a 1,000,000-customer fit
 *	  (printed only).
 *
 * The CDNOW summary is read from $CDP_SHARED_DATA/cdnow/... when that is
 * set, else from ../shared/data/cdnow/... (relative to the working
 * directory, normally the repository root); the cases that need it are
 * counted as skipped when it is absent.
 */
#include "unit.h"
#include "btyd.h"
#include "btyd_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

const char *unit_suite = "btyd";

#define CDNOW_FILE "cdnow/cdnow_customers_summary_with_transactions.csv"

#define CHECK_NEAR(a, b, tol) \
	do { \
		double a_ = (a), b_ = (b), t_ = (tol); \
		if (!(fabs(a_ - b_) <= t_)) { \
			fprintf(stderr, "  %s:%d: %s == %.12g, expected %.12g (+- %g)\n", \
					__FILE__, __LINE__, #a, a_, b_, t_); \
			unit_failures++; \
		} \
	} while (0)

/* relative tolerance */
#define CHECK_REL(a, b, rel) CHECK_NEAR(a, b, fabs(b) * (rel))

/* a call returns CDP_BTYD_OK */
#define CHECK_OK(call) CHECK_EQ_INT(call, CDP_BTYD_OK)

/* ---- data ---------------------------------------------------------------- */

typedef struct Cdnow
{
	size_t		n;
	double	   *x;
	double	   *tx;
	double	   *T;
	double	   *m;
} Cdnow;

/* Frees the arrays of a Cdnow. */
static void
cdnow_free(Cdnow *c)
{
	free(c->x);
	free(c->tx);
	free(c->T);
	free(c->m);
}

/*
 * Loads the CDNOW summary into *c; 0 (after marking the case skipped) when
 * the file is not found.
 */
static int
cdnow_load(Cdnow *c)
{
	char		path[1024];
	const char *env = getenv("CDP_SHARED_DATA");
	FILE	   *f = NULL;
	char		line[256];
	size_t		cap = 4096;

	memset(c, 0, sizeof(*c));
	snprintf(path, sizeof(path), "%s/%s",
			 env != NULL && env[0] != '\0' ? env : "../shared/data", CDNOW_FILE);
	f = fopen(path, "r");
	if (f == NULL)
	{
		UNIT_SKIP("%s not found", path);
		return 0;
	}
	c->x = malloc(cap * sizeof(double));
	c->tx = malloc(cap * sizeof(double));
	c->T = malloc(cap * sizeof(double));
	c->m = malloc(cap * sizeof(double));
	if (fgets(line, sizeof(line), f) == NULL)	/* header */
		line[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL && c->n < cap)
	{
		double		id,
					x,
					tx,
					T,
					m;

		if (sscanf(line, "%lf,%lf,%lf,%lf,%lf", &id, &x, &tx, &T, &m) != 5)
			continue;
		c->x[c->n] = x;
		c->tx[c->n] = tx;
		c->T[c->n] = T;
		c->m[c->n] = m;
		c->n++;
	}
	fclose(f);
	return 1;
}

/* splitmix64: a small PRNG with its state in the caller. */
static uint64_t
rng_next(uint64_t *s)
{
	uint64_t	z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform on (0, 1). */
static double
rng_unif(uint64_t *s)
{
	return ((rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller). */
static double
rng_norm(uint64_t *s)
{
	return sqrt(-2.0 * log(rng_unif(s))) * cos(6.283185307179586 * rng_unif(s));
}

/* Gamma(shape, rate 1) by Marsaglia-Tsang. */
static double
rng_gamma(uint64_t *s, double shape)
{
	double		d,
				c;

	if (shape < 1.0)
		return rng_gamma(s, shape + 1.0) * pow(rng_unif(s), 1.0 / shape);
	d = shape - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;)
	{
		double		z = rng_norm(s),
					v = 1.0 + c * z,
					u;

		if (v <= 0.0)
			continue;
		v = v * v * v;
		u = rng_unif(s);
		if (log(u) < 0.5 * z * z + d - d * v + d * log(v))
			return d * v;
	}
}

/*
 * n customers from the BG/NBD process with params {r, alpha, a, b} (time
 * unit days), ages T uniform on 1..tmax whole days, purchase times
 * rounded down to whole days; spends m ~ Gamma-Gamma(6, 4, 15) means.
 */
static void
simulate(uint64_t seed, size_t n, const double *par, int tmax, double *x,
		 double *tx, double *T, double *m)
{
	uint64_t	s = seed;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		double		lambda = rng_gamma(&s, par[0]) / par[1];
		double		ga = rng_gamma(&s, par[2]);
		double		p = ga / (ga + rng_gamma(&s, par[3]));
		double		age = (double) (1 + rng_next(&s) % (uint64_t) tmax);
		double		t = 0.0,
					last = 0.0,
					k = 0.0;

		for (;;)
		{
			t += -log(rng_unif(&s)) / lambda;
			if (t > age)
				break;
			k += 1.0;
			last = t;
			if (rng_unif(&s) < p)
				break;
		}
		x[i] = k;
		tx[i] = k > 0.0 ? floor(last) : 0.0;
		T[i] = age;
		if (m != NULL)
		{
			double		nu = rng_gamma(&s, 4.0) / 15.0;
			double		sum = 0.0;
			double		j;

			for (j = 0.0; j < k; j += 1.0)
				sum += rng_gamma(&s, 6.0) / nu;
			m[i] = k > 0.0 ? sum / k : 0.0;
		}
	}
}

static const double BG_PUBLISHED[4] = {0.2426, 4.4136, 0.7929, 2.4259};
static const double BG_PAPER[4] = {0.243, 4.414, 0.793, 2.426};
static const double PNBD_PUBLISHED[4] = {0.5532, 10.5763, 0.6063, 11.6715};
static const double GG_PUBLISHED[3] = {6.25, 3.74, 15.44};

/* ---- special functions --------------------------------------------------- */

UNIT_TEST(lgamma_and_digamma)
{
	static const double xs[] = {1e-8, 0.001, 0.3, 0.5, 1.0, 1.5, 2.0, 3.7,
	14.99, 15.0, 40.5, 1234.5, 1e7};
	size_t		i;

	for (i = 0; i < sizeof(xs) / sizeof(xs[0]); i++)
	{
		double		x = xs[i];
		double		h = 1e-5 * x;

		CHECK_NEAR(cdp_btyd_lgamma(x), lgamma(x), 1e-13 * fmax(1.0, fabs(lgamma(x))));
		if (x > 0.01)
			CHECK_NEAR(cdp_btyd_digamma(x),
					   (lgamma(x + h) - lgamma(x - h)) / (2.0 * h),
					   1e-6 * fmax(1.0, fabs(cdp_btyd_digamma(x))));
	}
	CHECK_NEAR(cdp_btyd_digamma(1.0), -0.57721566490153286, 1e-14);
	CHECK_NEAR(cdp_btyd_digamma(0.5), -1.9635100260214235, 1e-14);
	CHECK(isnan(cdp_btyd_lgamma(0.0)));
	CHECK(isnan(cdp_btyd_digamma(-1.0)));
	CHECK_NEAR(cdp_btyd_logaddexp(-INFINITY, 2.0), 2.0, 0.0);
	CHECK_NEAR(cdp_btyd_logaddexp(1000.0, 1000.0), 1000.0 + log(2.0), 1e-12);
}

/* exp of cdp_btyd_log_hyp2f1, or NaN on error. */
static double
hyp(double a, double b, double c, double z)
{
	double		l;
	int			sign;

	if (cdp_btyd_log_hyp2f1(a, b, c, z, &l, &sign) != CDP_BTYD_OK)
		return NAN;
	return sign * exp(l);
}

UNIT_TEST(hyp2f1_values)
{
	double		l;
	int			sign;

	/* closed forms */
	CHECK_NEAR(hyp(1, 1, 2, 0.5), 2.0 * log(2.0), 1e-14);
	CHECK_NEAR(hyp(1, 1, 2, -0.5), log(1.5) / 0.5, 1e-14);
	CHECK_NEAR(hyp(1, 1, 2, -100.0), log(101.0) / 100.0, 1e-14);
	CHECK_NEAR(hyp(2.5, 1.7, 1.7, 0.3), pow(0.7, -2.5), 1e-13);
	CHECK_NEAR(hyp(-3, 2, 1, 0.4), 1 - 3 * 2 * 0.4 + 3 * 2 * 3 * 0.16 / 2 -
			   1.0 * 2 * 3 * 4 * 0.064 / 6, 1e-14);
	/* against mpmath */
	CHECK_REL(hyp(0.7, 2.3, 3.1, 0.6), 1.5553097842999423139, 1e-13);
	CHECK_REL(hyp(0.7, 2.3, 3.1, -3.5), 0.42286314400369020690, 1e-13);
	CHECK_REL(hyp(-2.5, 1.5, 0.5, 0.3), -0.46852961485908227900, 1e-13);
	CHECK_REL(hyp(3.2, -1.7, 4.4, -0.95), 2.4593338468256895074, 1e-13);
	CHECK_OK(cdp_btyd_log_hyp2f1(50.5, 40.25, 12.5, 0.7, &l, &sign));
	CHECK_REL(l, 115.94422602959204081, 1e-13);
	CHECK_EQ_INT(sign, 1);
	/* far beyond the range of a double */
	CHECK_OK(cdp_btyd_log_hyp2f1(10000.3, 10000.7, 5.5, 0.5, &l, &sign));
	CHECK_REL(l, 24511.791671104605504, 1e-12);
	CHECK_OK(cdp_btyd_log_hyp2f1(1000, 1000, 1000, 0.5, &l, &sign));
	CHECK_REL(l, 1000.0 * log(2.0), 1e-13);
	/* errors */
	CHECK_EQ_INT(cdp_btyd_log_hyp2f1(1, 1, 2, 1.0, &l, &sign), CDP_BTYD_EDOMAIN);
	CHECK_EQ_INT(cdp_btyd_log_hyp2f1(1, 1, -2.0, 0.5, &l, &sign), CDP_BTYD_EDOMAIN);
	CHECK_EQ_INT(cdp_btyd_log_hyp2f1(NAN, 1, 2, 0.5, &l, &sign), CDP_BTYD_EINVAL);
	CHECK_EQ_INT(cdp_btyd_log_hyp2f1(0.5, 0.5, 0.7, 1.0 - 1e-12, &l, &sign),
				 CDP_BTYD_ENOCONV);
}

UNIT_TEST(pareto_integral_series_and_quadrature)
{
	static const double cases[][6] = {
		/* alpha, beta, A, B, t0, t1 */
		{10.5763, 11.6715, 2.5532, 1.6063, 30.43, 38.86},
		{11.6715, 10.5763, 0.5532, 1.6063, 0.0, 38.86},
		{3.0, 7.0, 1.5, 1.6, 0.0, 20.0},
		{7.0, 3.0, 1.5, 1.6, 5.0, 60.0},
		{4.0, 4.0, 0.2, 1.1, 0.0, 10.0},
		{2.0, 9.0, 40.3, 1.9, 1.0, 3.0},
		{9.0, 2.0, 40.3, 1.9, 1.0, 300.0},
		{1.0, 1.5, 0.3, 1.01, 0.0, 1e4},
	};
	double		lj,
				lq,
				l0,
				l1;
	size_t		i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		const double *c = cases[i];

		CHECK_OK(cdp_btyd_pnbd_log_tail(c[0], c[1], c[2], c[3], c[4], &l0));
		CHECK_OK(cdp_btyd_pnbd_log_tail(c[0], c[1], c[2], c[3], c[5], &l1));
		CHECK_OK(cdp_btyd_pnbd_log_quad(c[0], c[1], c[2], c[3], c[4], c[5], &lq));
		CHECK_NEAR(l0 + log1p(-exp(l1 - l0)), lq, 1e-11);
		CHECK_OK(cdp_btyd_pnbd_log_integral(c[0], c[1], c[2], c[3], c[4], c[5], &lj));
		CHECK_NEAR(lj, lq, 1e-11);
		/* the tail to infinity by quadrature too */
		CHECK_OK(cdp_btyd_pnbd_log_quad(c[0], c[1], c[2], c[3], c[4], INFINITY, &lq));
		CHECK_NEAR(l0, lq, 1e-11);
	}
	/* against mpmath quadrature; the first two need quadrature (z ~ 1) */
	CHECK_OK(cdp_btyd_pnbd_log_integral(0.001, 50, 0.3, 1.5, 0, 100, &lj));
	CHECK_NEAR(lj, -2.9825578440231721758, 1e-12);
	CHECK_OK(cdp_btyd_pnbd_log_integral(50, 0.001, 0.3, 1.5, 0, 100, &lj));
	CHECK_NEAR(lj, 2.9688185968980641117, 1e-12);
	CHECK_OK(cdp_btyd_pnbd_log_integral(3, 7, 10000.5, 1.6, 30, 31, &lj));
	CHECK_REL(lj, -34978.315262616224387, 1e-14);
	CHECK_OK(cdp_btyd_pnbd_log_integral(3, 7, 1.5, 1.6, 0, INFINITY, &lj));
	CHECK_NEAR(lj, -4.0130424519613037723, 1e-12);
	CHECK_OK(cdp_btyd_pnbd_log_integral(3, 7, 1.5, 1.6, 5, 5, &lj));
	CHECK(lj == -INFINITY);
}

/* ---- likelihoods --------------------------------------------------------- */

UNIT_TEST(gradients_match_differences)
{
	static const double bg[4] = {0.37, 3.2, 0.81, 2.9};
	static const double gg[3] = {5.1, 3.3, 14.0};
	double		x[200],
				tx[200],
				T[200],
				m[200],
				w[200];
	double		g[4],
				ll,
				lp,
				lm;
	int			i,
				j;

	simulate(7, 200, bg, 60, x, tx, T, m);
	for (i = 0; i < 200; i++)
		w[i] = 1.0 + i % 3;
	CHECK_OK(cdp_btyd_bgnbd_ll(bg, x, tx, T, w, 200, &ll, g));
	for (j = 0; j < 4; j++)
	{
		double		p[4];
		double		h = 1e-6 * bg[j];

		memcpy(p, bg, sizeof(p));
		p[j] = bg[j] + h;
		CHECK_OK(cdp_btyd_bgnbd_ll(p, x, tx, T, w, 200, &lp, NULL));
		p[j] = bg[j] - h;
		CHECK_OK(cdp_btyd_bgnbd_ll(p, x, tx, T, w, 200, &lm, NULL));
		CHECK_NEAR(g[j], (lp - lm) / (2 * h), 1e-5 * fmax(1.0, fabs(g[j])));
	}
	CHECK_OK(cdp_btyd_gg_ll(gg, x, m, w, 200, &ll, g));
	for (j = 0; j < 3; j++)
	{
		double		p[3];
		double		h = 1e-6 * gg[j];

		memcpy(p, gg, sizeof(p));
		p[j] = gg[j] + h;
		CHECK_OK(cdp_btyd_gg_ll(p, x, m, w, 200, &lp, NULL));
		p[j] = gg[j] - h;
		CHECK_OK(cdp_btyd_gg_ll(p, x, m, w, 200, &lm, NULL));
		CHECK_NEAR(g[j], (lp - lm) / (2 * h), 1e-5 * fmax(1.0, fabs(g[j])));
	}
}

UNIT_TEST(weights_and_compression)
{
	static const double bg[4] = {0.3, 20.0, 0.8, 2.5};
	static const double pn[4] = {0.5, 20.0, 0.6, 30.0};
	static const double gg[3] = {6.0, 4.0, 15.0};
	enum
	{
		N = 300
	};
	double		x[N],
				tx[N],
				T[N],
				m[N],
				w[N];
	double	   *dx,
			   *dtx,
			   *dT,
			   *dm;
	double		cx[N],
				ctx[N],
				cT[N],
				cw[N];
	double		l1,
				l2,
				l3;
	size_t		nd = 0,
				nc;
	int			i,
				k;
	CdpBtydFit	f1,
				f2;

	simulate(11, N, bg, 90, x, tx, T, m);
	for (i = 0; i < N; i++)
		w[i] = 1 + (i * 7) % 4;
	dx = malloc(4 * N * sizeof(double));
	dtx = malloc(4 * N * sizeof(double));
	dT = malloc(4 * N * sizeof(double));
	dm = malloc(4 * N * sizeof(double));
	for (i = 0; i < N; i++)
		for (k = 0; k < (int) w[i]; k++)
		{
			dx[nd] = x[i];
			dtx[nd] = tx[i];
			dT[nd] = T[i];
			dm[nd] = m[i];
			nd++;
		}

	/* weights = duplicated rows, for every likelihood */
	CHECK_OK(cdp_btyd_bgnbd_ll(bg, x, tx, T, w, N, &l1, NULL));
	CHECK_OK(cdp_btyd_bgnbd_ll(bg, dx, dtx, dT, NULL, nd, &l2, NULL));
	CHECK_REL(l1, l2, 1e-12);
	CHECK_OK(cdp_btyd_pareto_ll(pn, x, tx, T, w, N, &l1));
	CHECK_OK(cdp_btyd_pareto_ll(pn, dx, dtx, dT, NULL, nd, &l2));
	CHECK_REL(l1, l2, 1e-12);
	CHECK_OK(cdp_btyd_gg_ll(gg, x, m, w, N, &l1, NULL));
	CHECK_OK(cdp_btyd_gg_ll(gg, dx, dm, NULL, nd, &l2, NULL));
	CHECK_REL(l1, l2, 1e-12);

	/* compression keeps the likelihood */
	memcpy(cx, x, sizeof(x));
	memcpy(ctx, tx, sizeof(tx));
	memcpy(cT, T, sizeof(T));
	memcpy(cw, w, sizeof(w));
	CHECK_OK(cdp_btyd_compress(cx, ctx, cT, cw, N, &nc));
	CHECK(nc < N);
	for (i = 1; i < (int) nc; i++)
		CHECK(cx[i - 1] < cx[i] || (cx[i - 1] == cx[i] &&
									(ctx[i - 1] < ctx[i] ||
									 (ctx[i - 1] == ctx[i] && cT[i - 1] < cT[i]))));
	CHECK_OK(cdp_btyd_bgnbd_ll(bg, x, tx, T, w, N, &l1, NULL));
	CHECK_OK(cdp_btyd_bgnbd_ll(bg, cx, ctx, cT, cw, nc, &l2, NULL));
	CHECK_REL(l1, l2, 1e-12);
	CHECK_OK(cdp_btyd_pareto_ll(pn, x, tx, T, w, N, &l1));
	CHECK_OK(cdp_btyd_pareto_ll(pn, cx, ctx, cT, cw, nc, &l2));
	CHECK_REL(l1, l2, 1e-12);

	/* the fits see the same data either way, and report the same LL */
	CHECK_OK(cdp_btyd_fit_bgnbd(x, tx, T, w, N, NULL, &f1));
	CHECK_OK(cdp_btyd_fit_bgnbd(dx, dtx, dT, NULL, nd, NULL, &f2));
	CHECK_NEAR(f1.n_customers, (double) nd, 0.0);
	CHECK_NEAR(f2.n_customers, (double) nd, 0.0);
	CHECK_EQ_INT(f1.n_rows, f2.n_rows);
	for (k = 0; k < 4; k++)
		CHECK_REL(f1.params[k], f2.params[k], 1e-6);
	CHECK_OK(cdp_btyd_bgnbd_ll(f1.params, dx, dtx, dT, NULL, nd, &l3, NULL));
	CHECK_REL(f1.ll, l3, 1e-10);
	CHECK_REL(f2.ll, l3, 1e-10);

	/* compress_spend drops x = 0 and m = 0 rows */
	{
		double		sx[5] = {0, 2, 2, 3, 1};
		double		sm[5] = {0, 10.5, 10.5, 0, 4};
		double		sw[5] = {1, 1, 2, 1, 1};

		CHECK_OK(cdp_btyd_compress_spend(sx, sm, sw, 5, &nc));
		CHECK_EQ_INT(nc, 2);
		CHECK_NEAR(sx[0], 1, 0);
		CHECK_NEAR(sx[1], 2, 0);
		CHECK_NEAR(sw[1], 3, 0);
	}
	free(dx);
	free(dtx);
	free(dT);
	free(dm);
}

/* ---- CDNOW: published estimates ------------------------------------------ */

/* Prints a fit against published values. */
static void
print_fit(const char *what, const CdpBtydFit *f, const double *pub,
		  const char *const *names, double pub_ll)
{
	int			j;

	printf("  %s: status %d (%s), %d iterations, %d evaluations\n", what,
		   f->status, f->message, f->iterations, f->evaluations);
	for (j = 0; j < f->nparams; j++)
		printf("    %-6s %10.6f (se %.6f)  published %8.4f  rel. err %+.4f%%\n",
			   names[j], f->params[j], f->se[j], pub[j],
			   100.0 * (f->params[j] - pub[j]) / pub[j]);
	if (!isnan(pub_ll))
		printf("    LL     %.4f  published %.2f\n", f->ll, pub_ll);
	else
		printf("    LL     %.4f\n", f->ll);
}

UNIT_TEST(cdnow_bgnbd)
{
	static const char *const names[] = {"r", "alpha", "a", "b"};
	static const double ts[6] = {0.1429, 1, 3, 31.8571, 32, 78};
	static const double ex[6] = {0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576};
	Cdnow		c;
	CdpBtydFit	f;
	double		ll,
				e;
	int			j;

	if (!cdnow_load(&c))
		return;
	CHECK_EQ_INT(c.n, 2357);
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(c.x, c.tx, c.T, NULL, c.n, NULL, &f), CDP_BTYD_OK);
	print_fit("BG/NBD", &f, BG_PUBLISHED, names, -9582.43);
	CHECK(f.converged);
	CHECK_NEAR(f.n_customers, 2357, 0);
	for (j = 0; j < 4; j++)
		CHECK_REL(f.params[j], BG_PUBLISHED[j], 0.005);
	CHECK_NEAR(f.ll, -9582.43, 0.01);
	/* the fit's LL is the reference LL at its estimates */
	CHECK_OK(cdp_btyd_bgnbd_ll(f.params, c.x, c.tx, c.T, NULL, c.n, &ll, NULL));
	CHECK_REL(f.ll, ll, 1e-10);
	/* lifetimes' standard errors: 0.012557, 0.378221, 0.185719, 0.705345 */
	CHECK_REL(f.se[0], 0.012557, 0.05);
	CHECK_REL(f.se[1], 0.378221, 0.05);
	CHECK_REL(f.se[2], 0.185719, 0.05);
	CHECK_REL(f.se[3], 0.705345, 0.05);
	/* FHL 2005: customer x=2, t_x=30.43, T=38.86 expects 1.226 in 39 weeks */
	CHECK_OK(cdp_btyd_bgnbd_expected(f.params, 2, 30.43, 38.86, 39, &e));
	printf("    E[Y(39) | 2, 30.43, 38.86] = %.4f (published 1.226)\n", e);
	CHECK_NEAR(e, 1.226, 0.0005);
	/* Hardie's spreadsheet (lifetimes tests): E[X(t)] at the fitted params */
	printf("    E[X(t)]:");
	for (j = 0; j < 6; j++)
	{
		CHECK_OK(cdp_btyd_bgnbd_expected_new(f.params, ts[j], &e));
		printf(" %.4f (%.4f)", e, ex[j]);
		CHECK_NEAR(e, ex[j], 0.0005);
	}
	printf("\n");
	cdnow_free(&c);
}

UNIT_TEST(cdnow_pareto)
{
	static const char *const names[] = {"r", "alpha", "s", "beta"};
	Cdnow		c;
	CdpBtydFit	f;
	double		ll,
				e;
	int			j;

	if (!cdnow_load(&c))
		return;
	CHECK_EQ_INT(cdp_btyd_fit_pareto(c.x, c.tx, c.T, NULL, c.n, NULL, &f), CDP_BTYD_OK);
	print_fit("Pareto/NBD", &f, PNBD_PUBLISHED, names, -9594.98);
	CHECK(f.converged);
	for (j = 0; j < 4; j++)
		CHECK_REL(f.params[j], PNBD_PUBLISHED[j], 0.005);
	CHECK_NEAR(f.ll, -9594.98, 0.01);
	CHECK_OK(cdp_btyd_pareto_ll(f.params, c.x, c.tx, c.T, NULL, c.n, &ll));
	CHECK_REL(f.ll, ll, 1e-10);
	/* BTYD walkthrough: pnbd.Expectation(params, t = 52) = 1.473434 */
	CHECK_OK(cdp_btyd_pareto_expected_new(f.params, 52, &e));
	printf("    E[X(52)] = %.6f (BTYD 1.473434)\n", e);
	CHECK_REL(e, 1.473434, 0.001);
	cdnow_free(&c);
}

UNIT_TEST(cdnow_gamma_gamma)
{
	static const char *const names[] = {"p", "q", "gamma"};
	/* lifetimes Quickstart: conditional expected average profit, customers 1..10 */
	static const double expect[10] = {24.658619, 18.911489, 35.170981, 35.170981,
		35.170981, 71.462843, 18.911489, 35.170981, 27.282408, 35.170981};
	Cdnow		c;
	CdpBtydFit	f;
	double		ll,
				e;
	int			j;

	if (!cdnow_load(&c))
		return;
	CHECK_EQ_INT(cdp_btyd_fit_gg(c.x, c.m, NULL, c.n, NULL, &f), CDP_BTYD_OK);
	print_fit("Gamma-Gamma", &f, GG_PUBLISHED, names, NAN);
	CHECK_NEAR(f.n_customers, 946, 0);
	CHECK(f.converged);
	for (j = 0; j < 3; j++)
		CHECK_REL(f.params[j], GG_PUBLISHED[j], 0.005);
	CHECK_OK(cdp_btyd_gg_ll(f.params, c.x, c.m, NULL, c.n, &ll, NULL));
	CHECK_REL(f.ll, ll, 1e-10);
	for (j = 0; j < 10; j++)
	{
		CHECK_OK(cdp_btyd_gg_expected_value(f.params, c.x[j], c.m[j], &e));
		CHECK_REL(e, expect[j], 0.001);
	}
	cdnow_free(&c);
}

/* ---- published figures of the applied models ----------------------------- */

UNIT_TEST(bgnbd_published_figures)
{
	/* E[X(t)] at the paper's params, by mpmath from FHL 2005 eq. 9 */
	static const double ts[6] = {0.1429, 1, 3, 31.8571, 32, 78};
	static const double ex[6] = {0.0078283475160721570, 0.053267891171658639,
		0.15086523089304623, 1.0419960608522113, 1.0452433283744403,
	1.8605190579427653};
	double		e,
				p,
				sum = 0.0,
				mean = 0.0;
	int			i;

	for (i = 0; i < 6; i++)
	{
		CHECK_OK(cdp_btyd_bgnbd_expected_new(BG_PAPER, ts[i], &e));
		CHECK_REL(e, ex[i], 1e-11);
	}
	/* lifetimes tests (Hardie's spreadsheet), at the paper's params */
	CHECK_OK(cdp_btyd_bgnbd_prob(BG_PAPER, 2, 10, &p));
	CHECK_REL(p, 1.07869e-07, 1e-4);
	CHECK_OK(cdp_btyd_bgnbd_prob(BG_PAPER, 39, 0, &p));
	CHECK_NEAR(p, 0.5737864, 1e-6);
	/* the distribution sums to 1 and its mean is E[X(t)] */
	for (i = 0; i < 400; i++)
	{
		CHECK_OK(cdp_btyd_bgnbd_prob(BG_PAPER, 39, i, &p));
		sum += p;
		mean += i * p;
	}
	CHECK_OK(cdp_btyd_bgnbd_expected_new(BG_PAPER, 39, &e));
	CHECK_NEAR(sum, 1.0, 1e-9);
	CHECK_REL(mean, e, 1e-8);
	/* the conditional expectation at the paper's params (mpmath, eq. 10) */
	CHECK_OK(cdp_btyd_bgnbd_expected(BG_PAPER, 2, 30.43, 38.86, 39, &e));
	CHECK_REL(e, 1.2260281747671405111, 1e-11);
	/* P(alive): 1 without repeat purchases, high for a recent buyer */
	CHECK_OK(cdp_btyd_bgnbd_p_alive(BG_PAPER, 0, 0, 38, &p));
	CHECK_NEAR(p, 1.0, 0.0);
	CHECK_OK(cdp_btyd_bgnbd_p_alive(BG_PAPER, 5, 38, 38, &p));
	CHECK(p > 0.7 && p < 1.0);
	CHECK_OK(cdp_btyd_bgnbd_p_alive(BG_PAPER, 5, 2, 38, &p));
	CHECK(p > 0.0 && p < 0.1);
	/* a = 1 exactly: the (a-1) in the formula's denominator cancels */
	{
		double		pa[4] = {0.243, 4.414, 1.0, 2.426};
		double		lo[4] = {0.243, 4.414, 1.0 - 1e-7, 2.426};
		double		e2;

		CHECK_OK(cdp_btyd_bgnbd_expected(pa, 2, 30.43, 38.86, 39, &e));
		CHECK_OK(cdp_btyd_bgnbd_expected(lo, 2, 30.43, 38.86, 39, &e2));
		CHECK_REL(e, e2, 1e-6);
		CHECK_OK(cdp_btyd_bgnbd_expected_new(pa, 39, &e));
		CHECK_OK(cdp_btyd_bgnbd_expected_new(lo, 39, &e2));
		CHECK_REL(e, e2, 1e-6);
	}
}

UNIT_TEST(pareto_published_figures)
{
	/* lifetimes test, from the BTYD vignette */
	static const double pn[4] = {0.5534, 10.5802, 0.6061, 11.6562};
	double		p,
				e,
				e1,
				e2;

	CHECK_OK(cdp_btyd_pareto_p_alive(pn, 26, 30.86, 31, &p));
	CHECK_NEAR(p, 0.9979, 0.00005);
	CHECK_REL(p, 0.99791776655190678137, 1e-11);	/* mpmath */
	/* 25.46 in lifetimes' test (with its own fit; tolerance 0.01) */
	CHECK_OK(cdp_btyd_pareto_expected(pn, 26, 30.86, 31, 52, &e));
	CHECK_NEAR(e, 25.46, 0.01);
	CHECK_REL(e, 25.454913511499720226, 1e-10);	/* mpmath */
	/* a customer with no repeat purchase: P(alive) in (0, 1) */
	CHECK_OK(cdp_btyd_pareto_p_alive(pn, 0, 0, 31, &p));
	CHECK(p > 0.0 && p < 1.0);
	/* s = 1 exactly has a finite limit */
	{
		double		s1[4] = {0.5534, 10.5802, 1.0, 11.6562};
		double		s1e[4] = {0.5534, 10.5802, 1.0 + 1e-9, 11.6562};

		CHECK_OK(cdp_btyd_pareto_expected_new(s1, 52, &e1));
		CHECK_OK(cdp_btyd_pareto_expected_new(s1e, 52, &e2));
		CHECK_REL(e1, e2, 1e-7);
	}
}

UNIT_TEST(gamma_gamma_and_clv)
{
	static const double gg[3] = {6.25, 3.74, 15.44};
	double		e,
				clv,
				e12,
				manual = 0.0,
				prev = 0.0;
	int			k;

	CHECK_OK(cdp_btyd_gg_expected_value(gg, 0, 0, &e));
	CHECK_REL(e, 6.25 * 15.44 / 2.74, 1e-14);
	CHECK_OK(cdp_btyd_gg_expected_value(gg, 2, 22.35, &e));
	CHECK_REL(e, 6.25 * (15.44 + 2 * 22.35) / (12.5 + 2.74), 1e-14);
	{
		double		bad[3] = {1.0, 0.5, 1.0};

		CHECK_EQ_INT(cdp_btyd_gg_expected_value(bad, 0, 0, &e), CDP_BTYD_EDOMAIN);
	}

	/* undiscounted CLV = margin * value * E[Y(periods * length)] */
	CHECK_OK(cdp_btyd_clv(CDP_BTYD_BGNBD, BG_PAPER, 2, 30.43, 38.86, 30.0, 0.2, 12,
					   4.345, 0.0, &clv));
	CHECK_OK(cdp_btyd_bgnbd_expected(BG_PAPER, 2, 30.43, 38.86, 12 * 4.345, &e12));
	CHECK_REL(clv, 0.2 * 30.0 * e12, 1e-12);
	/* discounted: sum of the period increments */
	CHECK_OK(cdp_btyd_clv(CDP_BTYD_PARETO_NBD, PNBD_PUBLISHED, 3, 20, 35, 40.0, 1.0,
					   24, 4.345, 0.01, &clv));
	for (k = 1; k <= 24; k++)
	{
		CHECK_OK(cdp_btyd_pareto_expected(PNBD_PUBLISHED, 3, 20, 35, k * 4.345, &e));
		manual += 40.0 * (e - prev) / pow(1.01, k);
		prev = e;
	}
	CHECK_REL(clv, manual, 1e-12);
	CHECK_OK(cdp_btyd_clv(CDP_BTYD_BGNBD, BG_PAPER, 2, 30, 38, 30.0, 1.0, 0, 4.345,
					   0.01, &clv));
	CHECK_NEAR(clv, 0.0, 0.0);
	CHECK_EQ_INT(cdp_btyd_clv(CDP_BTYD_GAMMA_GAMMA, gg, 2, 30, 38, 30.0, 1.0, 12,
							  4.345, 0.01, &clv), CDP_BTYD_EINVAL);
	CHECK_EQ_INT(cdp_btyd_clv(CDP_BTYD_BGNBD, BG_PAPER, 2, 30, 38, 30.0, 1.0, 12,
							  4.345, -1.0, &clv), CDP_BTYD_EINVAL);
}

/*
 * NBD, the no-dropout limit: on customers who never drop out (Poisson
 * purchases at gamma rates, observed for various ages) BG/NBD's a runs to 0
 * and the NBD fits; its log-likelihood is BG/NBD's at a -> 0, its estimate
 * meets the first-order condition sum (r + x) / (alpha + T) = W r / alpha,
 * and its expectation and CLV are t (r + x) / (alpha + T) per period.
 */
UNIT_TEST(nbd_no_dropout_limit)
{
	enum
	{
		N = 3000
	};
	static double x[N],
				t_x[N],
				T[N];
	double		bg[4],
				sum = 0.0,
				ll,
				e,
				clv;
	uint64_t	seed = 12345;
	CdpBtydFit	f,
				fb;
	int			i;

	for (i = 0; i < N; i++)
	{
		/* rate ~ Gamma(2, 60) per day, no dropout */
		double		lambda = rng_gamma(&seed, 2.0) / 60.0,
					t = 0.0;

		T[i] = 100 + i % 265;
		x[i] = 0;
		t_x[i] = 0;
		for (;;)
		{
			t += -log(rng_unif(&seed)) / lambda;
			if (t > T[i])
				break;
			x[i]++;
			t_x[i] = floor(t);
		}
	}
	CHECK_OK(cdp_btyd_fit_nbd(x, t_x, T, NULL, N, NULL, &f));
	CHECK_EQ_INT(f.nparams, 2);
	CHECK(f.converged);
	CHECK(f.params[0] > 1.5 && f.params[0] < 2.7);
	CHECK(f.params[1] > 45 && f.params[1] < 80);
	for (i = 0; i < N; i++)
		sum += (f.params[0] + x[i]) / (f.params[1] + T[i]);
	CHECK_REL(sum, N * f.params[0] / f.params[1], 1e-5);
	bg[0] = f.params[0];
	bg[1] = f.params[1];
	bg[2] = 1e-12;
	bg[3] = 1.0;
	CHECK_OK(cdp_btyd_bgnbd_ll(bg, x, t_x, T, NULL, N, &ll, NULL));
	CHECK_REL(ll, f.ll, 1e-8);
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, t_x, T, NULL, N, NULL, &fb), CDP_BTYD_ENOTIDENT);
	CHECK(strstr(fb.message, "a runs to 0") != NULL);
	CHECK(fb.params[0] > 0.99 * f.params[0] && fb.params[0] < 1.01 * f.params[0]);

	CHECK_OK(cdp_btyd_nbd_expected(f.params, 4, 200, 300, 30, &e));
	CHECK_REL(e, 30 * (f.params[0] + 4) / (f.params[1] + 300), 1e-14);
	CHECK_OK(cdp_btyd_clv(CDP_BTYD_NBD, f.params, 4, 200, 300, 50.0, 1.0, 12, 30, 0.0, &clv));
	CHECK_REL(clv, 50.0 * 12 * e, 1e-12);
	CHECK_OK(cdp_btyd_clv(CDP_BTYD_NBD, f.params, 4, 200, 300, 50.0, 1.0, 2, 30, 0.1, &clv));
	CHECK_REL(clv, 50.0 * e * (1 / 1.1 + 1 / 1.21), 1e-12);
	CHECK_EQ_INT(cdp_btyd_nbd_expected(f.params, 4, 400, 300, 30, &e), CDP_BTYD_EINVAL);
}

/* ---- robustness ---------------------------------------------------------- */

UNIT_TEST(degenerate_data)
{
	double		x[20],
				tx[20],
				T[20];
	CdpBtydFit	f;
	int			i;

	for (i = 0; i < 20; i++)
	{
		x[i] = 0;
		tx[i] = 0;
		T[i] = 10 + i;
	}
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, NULL, 20, NULL, &f), CDP_BTYD_ENOREPEAT);
	CHECK_EQ_INT(f.status, CDP_BTYD_ENOREPEAT);
	CHECK(strlen(f.message) > 0);
	CHECK_EQ_INT(cdp_btyd_fit_pareto(x, tx, T, NULL, 20, NULL, &f), CDP_BTYD_ENOREPEAT);
	CHECK_EQ_INT(cdp_btyd_fit_gg(x, tx, NULL, 20, NULL, &f), CDP_BTYD_ETOOFEW);

	/* a single customer */
	x[0] = 3;
	tx[0] = 5;
	T[0] = 10;
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, NULL, 1, NULL, &f), CDP_BTYD_ETOOFEW);
	CHECK_EQ_INT(cdp_btyd_fit_pareto(x, tx, T, NULL, 1, NULL, &f), CDP_BTYD_ETOOFEW);
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, NULL, 0, NULL, &f), CDP_BTYD_ETOOFEW);
	CHECK(isnan(f.params[0]));

	/* twenty identical customers: not enough to identify four parameters */
	for (i = 0; i < 20; i++)
	{
		x[i] = 2;
		tx[i] = 5;
		T[i] = 10;
	}
	i = cdp_btyd_fit_bgnbd(x, tx, T, NULL, 20, NULL, &f);
	printf("  identical customers, BG/NBD: %s\n", f.message);
	CHECK(i == CDP_BTYD_ENOTIDENT);
	i = cdp_btyd_fit_pareto(x, tx, T, NULL, 20, NULL, &f);
	printf("  identical customers, Pareto/NBD: %s\n", f.message);
	CHECK(i == CDP_BTYD_ENOTIDENT);
	i = cdp_btyd_fit_gg(x, tx, NULL, 20, NULL, &f);
	printf("  identical spends, Gamma-Gamma: %s\n", f.message);
	CHECK(i == CDP_BTYD_ENOTIDENT);
}

UNIT_TEST(invalid_input)
{
	double		x[6] = {1, 0, 2, 3, 0, 1};
	double		tx[6] = {2, 0, 3, 4, 0, 1};
	double		T[6] = {5, 5, 6, 7, 8, 9};
	double		w[6] = {1, 1, 1, 1, 1, 1};
	double		ll,
				out;
	size_t		nc;
	CdpBtydFit	f;

	CHECK_OK(cdp_btyd_bgnbd_ll(BG_PAPER, x, tx, T, NULL, 6, &ll, NULL));
	tx[2] = NAN;
	CHECK_EQ_INT(cdp_btyd_bgnbd_ll(BG_PAPER, x, tx, T, NULL, 6, &ll, NULL), CDP_BTYD_EINVAL);
	CHECK_EQ_INT(cdp_btyd_pareto_ll(PNBD_PUBLISHED, x, tx, T, NULL, 6, &ll), CDP_BTYD_EINVAL);
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, NULL, 6, NULL, &f), CDP_BTYD_EINVAL);
	CHECK_EQ_INT(f.status, CDP_BTYD_EINVAL);
	CHECK_EQ_INT(cdp_btyd_compress(x, tx, T, w, 6, &nc), CDP_BTYD_EINVAL);
	tx[2] = 7;					/* t_x > T */
	CHECK_EQ_INT(cdp_btyd_fit_pareto(x, tx, T, NULL, 6, NULL, &f), CDP_BTYD_EINVAL);
	tx[2] = 3;
	x[1] = 0.5;					/* fractional count */
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, NULL, 6, NULL, &f), CDP_BTYD_EINVAL);
	x[1] = 0;
	w[3] = -1;
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, w, 6, NULL, &f), CDP_BTYD_EINVAL);
	w[3] = NAN;
	CHECK_EQ_INT(cdp_btyd_fit_gg(x, tx, w, 6, NULL, &f), CDP_BTYD_EINVAL);
	T[0] = 0;
	CHECK_EQ_INT(cdp_btyd_check_customer(1, 0, 0), CDP_BTYD_EINVAL);
	CHECK_EQ_INT(cdp_btyd_check_customer(1, 0, INFINITY), CDP_BTYD_EINVAL);
	CHECK_EQ_INT(cdp_btyd_check_customer(-1, 0, 1), CDP_BTYD_EINVAL);
	{
		double		badp[4] = {0.2, NAN, 0.8, 2.4};
		double		negp[4] = {0.2, 4, -0.8, 2.4};

		CHECK_EQ_INT(cdp_btyd_bgnbd_p_alive(badp, 1, 1, 2, &out), CDP_BTYD_EINVAL);
		CHECK_EQ_INT(cdp_btyd_pareto_p_alive(negp, 1, 1, 2, &out), CDP_BTYD_EINVAL);
		CHECK_EQ_INT(cdp_btyd_bgnbd_expected(BG_PAPER, 1, 1, 2, NAN, &out), CDP_BTYD_EINVAL);
		CHECK_EQ_INT(cdp_btyd_bgnbd_prob(BG_PAPER, 2, 1.5, &out), CDP_BTYD_EINVAL);
	}
	{
		CdpBtydOptions o = {-1.0, 0, 0.0, NULL, NULL};

		CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, NULL, 6, &o, &f), CDP_BTYD_EINVAL);
	}
	CHECK(strcmp(cdp_btyd_strerror(CDP_BTYD_ENOTIDENT), "the data do not identify the model") == 0);
}

UNIT_TEST(huge_values)
{
	static const double pn[4] = {0.5534, 10.5802, 0.6061, 11.6562};
	double		ll,
				p,
				e;
	double		x[3] = {10000, 10000, 50},
				tx[3] = {9000, 1e6, 1},
				T[3] = {1e6, 1e6, 1e7};
	double		g[4];
	int			i;

	CHECK_OK(cdp_btyd_bgnbd_ll(BG_PAPER, x, tx, T, NULL, 3, &ll, g));
	CHECK(isfinite(ll) && isfinite(g[0]) && isfinite(g[1]) && isfinite(g[2]) && isfinite(g[3]));
	CHECK_OK(cdp_btyd_pareto_ll(pn, x, tx, T, NULL, 3, &ll));
	CHECK(isfinite(ll));
	for (i = 0; i < 3; i++)
	{
		CHECK_OK(cdp_btyd_bgnbd_p_alive(BG_PAPER, x[i], tx[i], T[i], &p));
		CHECK(p >= 0.0 && p <= 1.0);
		CHECK_OK(cdp_btyd_bgnbd_expected(BG_PAPER, x[i], tx[i], T[i], 52, &e));
		CHECK(isfinite(e) && e >= 0.0);
		CHECK_OK(cdp_btyd_pareto_p_alive(pn, x[i], tx[i], T[i], &p));
		CHECK(p >= 0.0 && p <= 1.0);
		CHECK_OK(cdp_btyd_pareto_expected(pn, x[i], tx[i], T[i], 52, &e));
		CHECK(isfinite(e) && e >= 0.0);
	}
	/* still alive after 10,000 purchases up to today: about 1 */
	CHECK_OK(cdp_btyd_bgnbd_p_alive(BG_PAPER, 10000, 1e6, 1e6, &p));
	CHECK_NEAR(p, 1.0, 1e-3);
	CHECK_OK(cdp_btyd_pareto_p_alive(pn, 10000, 1e6, 1e6, &p));
	CHECK_NEAR(p, 1.0, 1e-3);
	/* gone quiet long ago after 10,000 purchases: about 0 */
	CHECK_OK(cdp_btyd_bgnbd_p_alive(BG_PAPER, 10000, 9000, 1e6, &p));
	CHECK(p < 1e-100);
	CHECK_OK(cdp_btyd_pareto_p_alive(pn, 10000, 9000, 1e6, &p));
	CHECK(p < 1e-100);
	/* probabilities with a huge count */
	CHECK_OK(cdp_btyd_bgnbd_prob(BG_PAPER, 1e5, 5000, &p));
	CHECK(isfinite(p) && p >= 0.0 && p < 1.0);

	/* a fit with a few extreme customers among ordinary ones still works */
	{
		enum
		{
			N = 500
		};
		static const double bg[4] = {0.3, 20.0, 0.8, 2.5};
		double		sx[N],
					stx[N],
					sT[N];
		CdpBtydFit	f;

		simulate(5, N, bg, 200, sx, stx, sT, NULL);
		sx[0] = 10000;
		stx[0] = 190;
		sT[0] = 200;
		sx[1] = 5000;
		stx[1] = 3;
		sT[1] = 200;
		CHECK_EQ_INT(cdp_btyd_fit_bgnbd(sx, stx, sT, NULL, N, NULL, &f), CDP_BTYD_OK);
		printf("  BG/NBD with extreme customers: %s, r %.4g alpha %.4g a %.4g b %.4g\n",
			   f.message, f.params[0], f.params[1], f.params[2], f.params[3]);
		/* s may run to infinity here (no heterogeneity in dropout left) */
		i = cdp_btyd_fit_pareto(sx, stx, sT, NULL, N, NULL, &f);
		printf("  Pareto/NBD with extreme customers: %s, r %.4g alpha %.4g s %.4g beta %.4g\n",
			   f.message, f.params[0], f.params[1], f.params[2], f.params[3]);
		CHECK(i == CDP_BTYD_OK || i == CDP_BTYD_ENOTIDENT);
		CHECK(isfinite(f.ll));
	}
}

UNIT_TEST(penalizer_shrinks)
{
	static const double bg[4] = {0.3, 20.0, 0.8, 2.5};
	enum
	{
		N = 2000
	};
	double	   *x = malloc(N * sizeof(double)),
			   *tx = malloc(N * sizeof(double)),
			   *T = malloc(N * sizeof(double));
	CdpBtydOptions o = {0.01, 0, 0.0, NULL, NULL};
	CdpBtydFit	f0,
				f1;
	double		s0 = 0.0,
				s1 = 0.0;
	int			j;

	simulate(3, N, bg, 120, x, tx, T, NULL);
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, NULL, N, NULL, &f0), CDP_BTYD_OK);
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, tx, T, NULL, N, &o, &f1), CDP_BTYD_OK);
	for (j = 0; j < 4; j++)
	{
		s0 += f0.params[j] * f0.params[j];
		s1 += f1.params[j] * f1.params[j];
	}
	CHECK(s1 < s0);
	CHECK(f1.ll <= f0.ll);
	free(x);
	free(tx);
	free(T);
}

/* ---- the optimizer on its own -------------------------------------------- */

/* Rosenbrock's function, with its gradient when asked. */
static double
rosenbrock(const double *t, double *g, void *arg)
{
	double		a = 1.0 - t[0],
				b = t[1] - t[0] * t[0];

	(void) arg;
	if (g != NULL)
	{
		g[0] = -2.0 * a - 400.0 * t[0] * b;
		g[1] = 200.0 * b;
	}
	return a * a + 100.0 * b * b;
}

UNIT_TEST(minimizer)
{
	CdpBtydProblem pb = {rosenbrock, NULL, 2, 1, -10.0, 10.0, 500, 1e-10, NULL, NULL};
	CdpBtydMinimum m;
	double		t0[2] = {-1.2, 1.0};

	CHECK_OK(cdp_btyd_minimize(&pb, t0, &m));
	CHECK(m.converged);
	CHECK_NEAR(m.theta[0], 1.0, 1e-6);
	CHECK_NEAR(m.theta[1], 1.0, 1e-6);
	pb.analytic_grad = 0;
	pb.gtol = 1e-7;
	CHECK_OK(cdp_btyd_minimize(&pb, t0, &m));
	CHECK_NEAR(m.theta[0], 1.0, 1e-4);
	CHECK_NEAR(m.theta[1], 1.0, 1e-4);
	/* the minimum outside the box: held at the bound */
	pb.analytic_grad = 1;
	pb.hi = 0.5;
	CHECK_OK(cdp_btyd_minimize(&pb, t0, &m));
	CHECK_NEAR(m.theta[0], 0.5, 1e-9);
	CHECK_NEAR(m.theta[1], 0.25, 1e-6);
}

/* ---- performance (printed, not asserted) --------------------------------- */

UNIT_TEST(million_customers_timing)
{
	static const double truth[4] = {0.25, 30.0, 0.8, 2.5};
	enum
	{
		N = 1000000
	};
	double	   *x = malloc(N * sizeof(double)),
			   *tx = malloc(N * sizeof(double)),
			   *T = malloc(N * sizeof(double));
	CdpBtydFit	f;
	clock_t		t0,
				t1;
	int			st;

	if (x == NULL || tx == NULL || T == NULL)
	{
		UNIT_SKIP("out of memory");
		free(x);
		free(tx);
		free(T);
		return;
	}
	simulate(2024, N, truth, 365, x, tx, T, NULL);
	t0 = clock();
	st = cdp_btyd_fit_bgnbd(x, tx, T, NULL, N, NULL, &f);
	t1 = clock();
	printf("  BG/NBD fit of %d customers (%zu distinct rows) incl. compression: %.3f s CPU, "
		   "%d iterations, %d evaluations\n", N, f.n_rows,
		   (double) (t1 - t0) / CLOCKS_PER_SEC,
		   f.iterations, f.evaluations);
	printf("    r %.4f alpha %.3f a %.4f b %.4f (simulated with %.2f %.1f %.2f %.2f, "
		   "times rounded down to days)\n", f.params[0], f.params[1],
		   f.params[2], f.params[3], truth[0], truth[1], truth[2], truth[3]);
	CHECK_EQ_INT(st, CDP_BTYD_OK);
	CHECK_REL(f.params[0], truth[0], 0.1);
	CHECK_REL(f.params[2], truth[2], 0.2);
	free(x);
	free(tx);
	free(T);
}

/* Counts down; asks to stop when it reaches zero. */
static int
stop_after(void *arg)
{
	int		   *left = arg;

	return --*left < 0;
}

UNIT_TEST(fit_can_be_interrupted)
{
	enum
	{
		N = 3000
	};
	static double x[N],
				t_x[N],
				T[N];
	CdpBtydOptions opt;
	CdpBtydFit	fit;
	int			left;
	int			i;

	for (i = 0; i < N; i++)
	{
		x[i] = i % 5;
		T[i] = 50 + i % 40;
		t_x[i] = x[i] > 0 ? T[i] * (1 + i % 7) / 8.0 : 0;
	}
	memset(&opt, 0, sizeof(opt));
	opt.interrupted = stop_after;
	opt.interrupt_arg = &left;
	left = 5;
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, t_x, T, NULL, N, &opt, &fit), CDP_BTYD_EINTR);
	CHECK_EQ_STR(fit.message, "interrupted");
	left = 5;
	CHECK_EQ_INT(cdp_btyd_fit_pareto(x, t_x, T, NULL, N, &opt, &fit), CDP_BTYD_EINTR);
	left = 5;
	CHECK_EQ_INT(cdp_btyd_fit_gg(x, T, NULL, N, &opt, &fit), CDP_BTYD_EINTR);
	CHECK_EQ_STR(cdp_btyd_strerror(CDP_BTYD_EINTR), "interrupted");
	/* never asked to stop: the fit ends as it does without the callback */
	left = 1000000;
	CHECK_EQ_INT(cdp_btyd_fit_bgnbd(x, t_x, T, NULL, N, &opt, &fit),
				 cdp_btyd_fit_bgnbd(x, t_x, T, NULL, N, NULL, &fit));
	CHECK(left < 1000000);
}

const unit_case unit_tests[] = {
	UNIT_CASE(fit_can_be_interrupted),
	UNIT_CASE(lgamma_and_digamma),
	UNIT_CASE(hyp2f1_values),
	UNIT_CASE(pareto_integral_series_and_quadrature),
	UNIT_CASE(gradients_match_differences),
	UNIT_CASE(weights_and_compression),
	UNIT_CASE(cdnow_bgnbd),
	UNIT_CASE(cdnow_pareto),
	UNIT_CASE(cdnow_gamma_gamma),
	UNIT_CASE(bgnbd_published_figures),
	UNIT_CASE(pareto_published_figures),
	UNIT_CASE(gamma_gamma_and_clv),
	UNIT_CASE(nbd_no_dropout_limit),
	UNIT_CASE(degenerate_data),
	UNIT_CASE(invalid_input),
	UNIT_CASE(huge_values),
	UNIT_CASE(penalizer_shrinks),
	UNIT_CASE(minimizer),
	UNIT_CASE(million_customers_timing),
	UNIT_END
};
