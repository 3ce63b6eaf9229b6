/*
 * cdp_demo_gen.c -- deterministic synthetic retailer for the "cdp" extension.
 *
 * Writes customer interaction events as CSV for
 *   COPY ... FROM ... (FORMAT csv, HEADER true)
 * plus an optional ground-truth file (every identifier value as written in
 * the events -> its true person) and an optional persons file.  The model
 * and the file formats are described in README.md beside this file.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -o cdp-demo-gen cdp_demo_gen.c -lm
 *
 * Design notes
 * - Every person is a pure function of (seed, person_id): its profile comes
 *   from one random stream, its events from another.  Persons are generated
 *   one after the other until exactly N events have been written, so the
 *   output for a smaller N is a prefix of the output for a larger N.
 * - Events of one person are built as complete CSV rows in an arena, sorted
 *   by time and copied to a large output buffer.
 * - Identifier values are derived deterministically from the person (unique
 *   by construction: bijections of the person id), so the ground truth only
 *   needs a bit mask per person telling which raw forms were written; the
 *   strings are re-derived at the end.  Memory is O(persons).
 * - Person ids come in pairs (2k-1, 2k).  A hash of (seed, k) alone decides
 *   whether a pair is two drive-by visitors (one short anonymous session
 *   each) or two persons of the full model, so the full-model persons are the
 *   same as with --visitor-share 0, only with the visitors' ids left out.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "cdp-demo-gen"
#define DAY_S 86400
#define WEEK_S 604800.0
#define MAX_PID 89999999u
#define NEVER INT64_MAX

/* ---- model parameters (documented in README.md) ------------------------ */
#define BG_R 0.5          /* purchase rate lambda ~ Gamma(shape r, rate alpha) / week */
#define BG_ALPHA 4.0
#define BG_A 0.8          /* dropout p ~ Beta(a, b), applied after each purchase */
#define BG_B 3.2
#define VISITOR_SHARE 0.85 /* default share of person ids that are drive-by visitors */
#define P_VISITOR_APP 0.3 /* visitors on the app (the others on the web) */
#define P_ANON 0.15       /* full-model persons who never identify themselves */
#define P_PHONE 0.88      /* of identified persons */
#define P_LOYALTY 0.706   /* of identified persons (about 60 % of non-visitors) */
#define P_ACCOUNT 0.588   /* of identified persons (about 50 % of non-visitors) */
#define P_HH_SHARE 0.04   /* pairs of persons (2k-1, 2k) sharing a device/cookie */
#define BROWSE_BASE 0.15  /* browse sessions / week = engage * (BASE + K * lambda) */
#define BROWSE_K 2.0
#define DEAD_BROWSE 0.08  /* browsing rate multiplier after dropout */
#define P_JUNK_COOKIE 0.005
#define P_EMAIL_REACH 0.05 /* share of opted-in persons in each e-mail campaign (was 0.35) */

/* ---- random numbers: splitmix64 seeding, xoshiro256** ------------------ */
typedef struct { uint64_t s[4]; } rng_t;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t x = mix64(seed + 0x9E3779B97F4A7C15ULL)
               ^ mix64(a * 0xD1B54A32D192ED03ULL + 0x632BE59BD9B4E019ULL)
               ^ mix64(b * 0x8CB92BA72F3D8DD7ULL + 0x2545F4914F6CDD1DULL);
    for (int i = 0; i < 4; i++) {
        x += 0x9E3779B97F4A7C15ULL;
        r->s[i] = mix64(x);
    }
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rnext(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}

/* uniform [0,1) */
static inline double ru(rng_t *r) { return (double)(rnext(r) >> 11) * (1.0 / 9007199254740992.0); }
/* uniform integer [0,n) */
static inline uint32_t rb(rng_t *r, uint32_t n) { return (uint32_t)(((rnext(r) >> 32) * (uint64_t)n) >> 32); }
static inline int ri(rng_t *r, int n) { return (int)rb(r, (uint32_t)n); }
static inline int rp(rng_t *r, double p) { return ru(r) < p; }
static double rexp(rng_t *r) { return -log(1.0 - ru(r)); }

static double rnorm(rng_t *r)
{
    double u1 = 1.0 - ru(r), u2 = ru(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Gamma(shape a, scale 1), Marsaglia-Tsang */
static double rgamma(rng_t *r, double a)
{
    if (a < 1.0) {
        double u = 1.0 - ru(r);
        return rgamma(r, a + 1.0) * pow(u, 1.0 / a);
    }
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do { x = rnorm(r); v = 1.0 + c * x; } while (v <= 0.0);
        v = v * v * v;
        double u = ru(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

static double rbeta(rng_t *r, double a, double b)
{
    double x = rgamma(r, a), y = rgamma(r, b);
    return x / (x + y);
}

static int wpick(rng_t *r, const int *w, int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++) sum += w[i];
    int x = ri(r, sum);
    for (int i = 0; i < n; i++) {
        if (x < w[i]) return i;
        x -= w[i];
    }
    return n - 1;
}

/* ---- static data --------------------------------------------------------- */
static const char *const FIRST[] = {
    "Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Muhammad", "Thomas", "Oscar",
    "William", "James", "Leo", "Alfie", "Henry", "Joshua", "Freddie", "Archie", "Ethan", "Isaac",
    "Daniel", "Samuel", "Joseph", "Adam", "Lucas", "David", "Michael", "Paul", "Mark", "Peter",
    "Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophia", "Grace", "Mia", "Poppy", "Ella",
    "Lily", "Evie", "Isabella", "Sophie", "Chloe", "Jessica", "Ruby", "Sarah", "Emma", "Hannah",
    "Laura", "Rebecca", "Charlotte", "Lucy", "Zara", "Aisha", "Priya", "Anna", "Kate", "Helen"};
#define NFIRST ((int)(sizeof FIRST / sizeof FIRST[0]))

static const char *const LAST[] = {
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson",
    "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall",
    "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill",
    "Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen",
    "James", "Scott", "Phillips", "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths",
    "Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy",
    "Khan", "Ali", "Singh", "Nowak", "Kowalski", "Popescu"};
#define NLAST ((int)(sizeof LAST / sizeof LAST[0]))

typedef struct { const char *name; const char *areas[6]; int nareas, weight, nstores, maxdist; } city_t;
static const city_t CITIES[] = {
    {"London", {"E", "N", "SE", "SW", "W", "NW"}, 6, 300, 20, 20},
    {"Birmingham", {"B"}, 1, 60, 6, 45},
    {"Manchester", {"M"}, 1, 60, 6, 40},
    {"Leeds", {"LS"}, 1, 40, 4, 29},
    {"Glasgow", {"G"}, 1, 40, 4, 80},
    {"Liverpool", {"L"}, 1, 35, 3, 38},
    {"Bristol", {"BS"}, 1, 35, 3, 49},
    {"Sheffield", {"S"}, 1, 30, 3, 36},
    {"Edinburgh", {"EH"}, 1, 30, 3, 55},
    {"Cardiff", {"CF"}, 1, 25, 2, 24},
    {"Leicester", {"LE"}, 1, 25, 2, 19},
    {"Nottingham", {"NG"}, 1, 25, 2, 25},
    {"Newcastle", {"NE"}, 1, 25, 2, 30},
    {"Brighton", {"BN"}, 1, 20, 2, 45},
    {"Southampton", {"SO"}, 1, 20, 2, 53},
    {"Belfast", {"BT"}, 1, 20, 2, 49},
    {"Oxford", {"OX"}, 1, 15, 1, 29},
    {"Cambridge", {"CB"}, 1, 15, 1, 25},
    {"York", {"YO"}, 1, 15, 1, 62},
    {"Norwich", {"NR"}, 1, 15, 1, 35}};
#define NCITY ((int)(sizeof CITIES / sizeof CITIES[0]))
static int city_w[NCITY], city_store0[NCITY], g_nstores;

static const char *const LANGS[] = {"en", "pl", "ro", "ur", "pa", "es", "fr", "it"};
static const int LANG_W[] = {880, 30, 20, 20, 15, 15, 10, 10};
#define NLANG 8

static const char *const DOMAINS[] = {"gmail.com", "hotmail.co.uk", "outlook.com", "yahoo.co.uk",
                                      "icloud.com", "btinternet.com", "sky.com"};
static const int DOMAIN_W[] = {35, 15, 12, 12, 10, 8, 8};
#define NDOMAIN 7

typedef struct { const char *name; double median; int weight; const char *q[3]; } cat_t;
static const cat_t CATS[] = {
    {"tv", 450, 6, {"4k tv", "oled tv", "smart tv"}},
    {"laptop", 650, 6, {"laptop", "gaming laptop", "macbook"}},
    {"phone", 420, 7, {"iphone", "samsung galaxy", "5g phone"}},
    {"tablet", 300, 4, {"ipad", "android tablet", "tablet"}},
    {"headphones", 80, 7, {"wireless earbuds", "noise cancelling headphones", "headphones"}},
    {"speakers", 90, 4, {"bluetooth speaker", "soundbar", "speaker"}},
    {"camera", 380, 2, {"mirrorless camera", "camera", "action camera"}},
    {"gaming", 55, 6, {"ps5 games", "xbox controller", "nintendo switch"}},
    {"smart_home", 70, 4, {"smart plug", "video doorbell", "smart speaker"}},
    {"wearables", 160, 4, {"smartwatch", "fitness tracker", "apple watch"}},
    {"kitchen", 35, 7, {"air fryer", "kettle", "toaster"}},
    {"appliances", 280, 4, {"washing machine", "fridge freezer", "dishwasher"}},
    {"vacuum", 170, 3, {"cordless vacuum", "robot vacuum", "vacuum cleaner"}},
    {"coffee", 110, 3, {"coffee machine", "espresso", "coffee grinder"}},
    {"toys", 25, 6, {"lego", "toys", "board games"}},
    {"garden", 45, 3, {"lawn mower", "garden hose", "bbq"}},
    {"beauty", 30, 4, {"hair dryer", "electric toothbrush", "shaver"}},
    {"sports", 40, 3, {"yoga mat", "dumbbells", "bike light"}},
    {"office", 25, 3, {"printer ink", "office chair", "desk lamp"}},
    {"accessories", 15, 8, {"usb c cable", "phone charger", "hdmi cable"}}};
#define NCAT ((int)(sizeof CATS / sizeof CATS[0]))
static int cat_w[NCAT];

#define NPROD 2000
static int prod_cat[NPROD];
static int64_t prod_price[NPROD]; /* cents */
static char prod_id[NPROD][8];
static int cat_first[NCAT], cat_n[NCAT], cat_prods[NPROD];
static uint32_t cat_cum[NPROD]; /* cumulative popularity inside a category */

static const char *const MISC_PAGES[] = {"/deals", "/stores", "/help/delivery", "/help/returns",
                                         "/guides/buying-guide", "/account/orders"};
#define NMISC 6

/* hour-of-day weights (UTC, UK retailer) */
enum { TK_ONLINE, TK_STORE, TK_CALL };
static const int HOUR_W[3][24] = {
    {10, 6, 4, 3, 3, 4, 8, 15, 25, 30, 32, 33, 35, 34, 32, 32, 33, 36, 42, 48, 50, 45, 32, 20},
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 35, 45, 55, 55, 50, 50, 55, 60, 45, 25, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 0, 0, 30, 50, 55, 50, 40, 45, 45, 40, 35, 30, 20, 10, 0, 0, 0, 0}};

/* junk identifier values shared by many persons */
static const char *const JUNK_EMAIL[] = {"test@test.com", "noemail@none.com", "a@a.com"};
static const char *const JUNK_PHONE[] = {"0000000000", "1234567890", "00000 000000"};
static const char *const JUNK_LOYALTY = "0000000000";
static const char *const JUNK_COOKIE[] = {"undefined", "null"};
/* junk bits: 0-2 e-mail, 3-5 phone, 6 loyalty card, 7-8 cookie */
#define NJUNK 9

/* ---- growable byte buffer ------------------------------------------------ */
typedef struct { char *p; size_t len, cap; } sb_t;

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(1);
    }
    return q;
}

static void sb_reserve(sb_t *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 65536;
        while (c < b->len + n) c *= 2;
        b->p = xrealloc(b->p, c);
        b->cap = c;
    }
}

static inline void sb_put(sb_t *b, const char *s, size_t n) { memcpy(b->p + b->len, s, n); b->len += n; }
static inline void sb_c(sb_t *b, char c) { b->p[b->len++] = c; }
static inline void sb_s(sb_t *b, const char *s) { sb_put(b, s, strlen(s)); }
#define SBL(b, lit) sb_put((b), (lit), sizeof(lit) - 1)

static inline void sb_u(sb_t *b, uint64_t v)
{
    char t[24];
    int i = 24;
    do { t[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    sb_put(b, t + i, (size_t)(24 - i));
}

static inline void sb_2(sb_t *b, unsigned v)
{
    b->p[b->len] = (char)('0' + v / 10);
    b->p[b->len + 1] = (char)('0' + v % 10);
    b->len += 2;
}

static inline void sb_money(sb_t *b, int64_t c)
{
    if (c < 0) { sb_c(b, '-'); c = -c; }
    sb_u(b, (uint64_t)(c / 100));
    sb_c(b, '.');
    sb_2(b, (unsigned)(c % 100));
}

/* ---- dates ----------------------------------------------------------------- */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t dd = doy - (153 * mp + 2) / 5 + 1;
    int64_t mm = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400 + (mm <= 2));
    *m = (int)mm;
    *d = (int)dd;
}

/* ---- global configuration ------------------------------------------------ */
static uint64_t g_seed = 42;
static int64_t g_start, g_end; /* epoch seconds, [start, end) */
static int g_days = 365, g_start_year;
static char (*g_daystr)[12];   /* "YYYY-MM-DD " for every day of the window */
static uint64_t g_ckey, g_dkey, g_ph_b, g_loy_b, g_cust_b;
static uint32_t g_hh_thresh;
static double g_visitor_share = VISITOR_SHARE;

static inline void sb_ts(sb_t *b, int64_t t)
{
    int64_t off = t - g_start;
    int day = (int)(off / DAY_S);
    unsigned s = (unsigned)(off % DAY_S);
    sb_put(b, g_daystr[day], 11);
    sb_2(b, s / 3600); sb_c(b, ':');
    sb_2(b, (s / 60) % 60); sb_c(b, ':');
    sb_2(b, s % 60);
    SBL(b, "+00");
}

static int hour_pick(rng_t *r, int kind) { return wpick(r, HOUR_W[kind], 24); }

/* ---- catalogue --------------------------------------------------------------- */
static void build_catalogue(void)
{
    rng_t r;
    rng_seed(&r, g_seed, 0, 100);
    for (int c = 0; c < NCAT; c++) cat_w[c] = CATS[c].weight;
    for (int c = 0; c < NCITY; c++) {
        city_w[c] = CITIES[c].weight;
        city_store0[c] = g_nstores;
        g_nstores += CITIES[c].nstores;
    }
    for (int i = 0; i < NPROD; i++) {
        int c = wpick(&r, cat_w, NCAT);
        double price = exp(log(CATS[c].median) + 0.6 * rnorm(&r));
        if (price < 5.0) price = 5.0;
        if (price > 1999.0) price = 1999.0;
        prod_cat[i] = c;
        prod_price[i] = (int64_t)floor(price) * 100 + 99;
        prod_id[i][0] = 'P';
        for (int k = 0, v = i; k < 5; k++, v /= 10) prod_id[i][5 - k] = (char)('0' + v % 10);
        prod_id[i][6] = 0;
        cat_n[c]++;
    }
    int pos = 0;
    for (int c = 0; c < NCAT; c++) { cat_first[c] = pos; pos += cat_n[c]; }
    int fill[NCAT] = {0};
    for (int i = 0; i < NPROD; i++) {
        int c = prod_cat[i];
        int k = fill[c]++;
        cat_prods[cat_first[c] + k] = i;
        /* Zipf-like popularity by rank inside the category */
        uint32_t w = (uint32_t)(100000.0 / pow(k + 1.0, 0.9)) + 1;
        cat_cum[cat_first[c] + k] = (k ? cat_cum[cat_first[c] + k - 1] : 0) + w;
    }
}

static int pick_prod_in(rng_t *r, int c)
{
    int lo = cat_first[c], hi = cat_first[c] + cat_n[c] - 1;
    if (cat_n[c] == 0) return ri(r, NPROD);
    uint32_t x = rb(r, cat_cum[hi]);
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cat_cum[mid] > x) hi = mid; else lo = mid + 1;
    }
    return cat_prods[lo];
}

/* ---- persons --------------------------------------------------------------- */
enum { SH_NONE, SH_OWN_COOKIE, SH_OWN_DEVICE, SH_USE_COOKIE, SH_USE_DEVICE };

typedef struct {
    uint32_t pid;
    int visitor;     /* drive-by visitor: one anonymous session, nothing else */
    int anon, fn, ln, ln2, city, city2, lang, by, bm, bd;
    char pc[32], pc2[32];
    int64_t move_t, rename_t, acq_t;
    int acq_app;
    int has_email, has_phone, has_loy, has_cust, nck, ndv;
    char ck[3][20], dv[2][20];
    int share;       /* SH_* */
    char shv[20];    /* value of the shared cookie/device (partner only) */
    char em[5][112];  /* e-mail: clean + 4 messy forms */
    char ph[5][24];  /* phone: E.164 clean + 4 messy forms */
    char loy[12], cust[12];
    int esp_em, sms_ph; /* form used by the e-mail / SMS provider lists */
    double lambda, pdrop, mu, engage;
    int email_optin, sms_optin, push_optin;
    int fav[3], home_store;
} person_t;

static int household_shares(uint32_t owner_pid)
{
    return (uint32_t)(mix64(g_seed ^ mix64((uint64_t)owner_pid * 0xA24BAED4963EE407ULL + 77)) >> 32) < g_hh_thresh;
}

/* Both ids of a pair (2k-1, 2k) are visitors or neither is, so households
 * (always such a pair) are as frequent among the other persons as without
 * visitors, and the other persons are unchanged. */
static int is_visitor(uint32_t pid)
{
    uint64_t k = ((uint64_t)pid + 1) >> 1;
    uint64_t h = mix64(g_seed ^ mix64(k * 0xC2B2AE3D27D4EB4FULL + 0x165667B19E3779F9ULL));
    return (double)(h >> 11) * (1.0 / 9007199254740992.0) < g_visitor_share;
}

static void make_postcode(rng_t *r, int city, char *out)
{
    static const char L[] = "ABDEFGHJLNPQRSTUWXYZ";
    const city_t *c = &CITIES[city];
    const char *area = c->areas[ri(r, c->nareas)];
    int dist = 1 + ri(r, c->maxdist), sec = ri(r, 10);
    /* random draws are kept in separate statements throughout: the order in
     * which function arguments or operands are evaluated is unspecified (the
     * order chosen everywhere is the one gcc used, so its output is unchanged) */
    char l2 = L[ri(r, 20)], l1 = L[ri(r, 20)];
    snprintf(out, 32, "%s%d %d%c%c", area, dist, sec, l1, l2);
}

static void lower_copy(char *dst, const char *src)
{
    while (*src) {
        char c = *src++;
        *dst++ = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    *dst = 0;
}

static char upc(char c) { return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c; }

static void hex16(char *out, const char *prefix, uint64_t v)
{
    static const char H[] = "0123456789abcdef";
    size_t n = strlen(prefix);
    memcpy(out, prefix, n);
    for (int i = 0; i < 16; i++) out[n + i] = H[(v >> (60 - 4 * i)) & 15];
    out[n + 16] = 0;
}

/* a drive-by visitor: a fresh cookie (web) or device id (app), no profile */
static void make_visitor(uint32_t pid, person_t *p)
{
    rng_t r;
    rng_seed(&r, g_seed, pid, 11);
    p->visitor = p->anon = 1;
    p->acq_app = rp(&r, P_VISITOR_APP);
    if (p->acq_app) {
        p->ndv = 1;
        hex16(p->dv[0], "d-", mix64(((uint64_t)pid << 3) ^ g_dkey));
    } else {
        p->nck = 1;
        hex16(p->ck[0], "c-", mix64(((uint64_t)pid << 3) ^ g_ckey));
    }
    p->lambda = 0.0;
    p->pdrop = 1.0;
    for (int i = 0; i < 3; i++) p->fav[i] = wpick(&r, cat_w, NCAT);
    int day = ri(&r, g_days), hour = hour_pick(&r, TK_ONLINE);
    p->acq_t = g_start + (int64_t)day * DAY_S + hour * 3600 + ri(&r, 3600);
    p->move_t = p->rename_t = NEVER;
}

static void make_person(uint32_t pid, person_t *p)
{
    rng_t r;
    person_t own;
    int hh_owner = 0, hh_partner = 0;
    memset(p, 0, sizeof *p);
    p->pid = pid;
    if (is_visitor(pid)) { make_visitor(pid, p); return; }
    if (pid & 1) hh_owner = household_shares(pid);
    else hh_partner = household_shares(pid - 1);
    if (hh_partner) make_person(pid - 1, &own);
    rng_seed(&r, g_seed, pid, 11);

    p->anon = (hh_owner || hh_partner) ? 0 : rp(&r, P_ANON);
    p->fn = ri(&r, NFIRST);
    p->ln = ri(&r, NLAST);
    if (hh_partner && rp(&r, 0.6)) p->ln = own.ln;
    int age = 18 + ri(&r, 34) + ri(&r, 34);
    p->by = g_start_year - age;
    p->bm = 1 + ri(&r, 12);
    p->bd = 1 + ri(&r, 28);
    p->city = wpick(&r, city_w, NCITY);
    make_postcode(&r, p->city, p->pc);
    if (hh_partner) { p->city = own.city; memcpy(p->pc, own.pc, sizeof p->pc); }
    p->lang = wpick(&r, LANG_W, NLANG);

    int known = !p->anon;
    p->has_email = known;
    p->has_phone = known && rp(&r, P_PHONE);
    p->has_loy = known && rp(&r, P_LOYALTY);
    p->has_cust = known && rp(&r, P_ACCOUNT);
    if (hh_owner || hh_partner) p->has_cust = 1;
    double u = ru(&r);
    p->nck = u < 0.6 ? 1 : u < 0.9 ? 2 : 3;
    u = ru(&r);
    if (p->anon) p->ndv = u < 0.1 ? 1 : 0;
    else p->ndv = u < 0.55 ? 0 : u < 0.9 ? 1 : 2;
    for (int i = 0; i < p->nck; i++)
        hex16(p->ck[i], "c-", mix64((((uint64_t)pid << 3) | (uint64_t)i) ^ g_ckey));
    for (int i = 0; i < p->ndv; i++)
        hex16(p->dv[i], "d-", mix64((((uint64_t)pid << 3) | (uint64_t)i) ^ g_dkey));
    if (hh_owner) p->share = (p->ndv > 0 && rp(&r, 0.5)) ? SH_OWN_DEVICE : SH_OWN_COOKIE;
    if (hh_partner) {
        p->share = own.share == SH_OWN_DEVICE ? SH_USE_DEVICE : SH_USE_COOKIE;
        memcpy(p->shv, own.share == SH_OWN_DEVICE ? own.dv[0] : own.ck[0], sizeof p->shv);
    }

    if (p->has_email) {
        char f[32], l[32], local[72];
        lower_copy(f, FIRST[p->fn]);
        lower_copy(l, LAST[p->ln]);
        int style = ri(&r, 100);
        if (style < 60) snprintf(local, sizeof local, "%s.%s%u", f, l, pid);
        else if (style < 75) snprintf(local, sizeof local, "%s%s%u", f, l, pid);
        else if (style < 85) snprintf(local, sizeof local, "%c.%s%u", f[0], l, pid);
        else if (style < 95) snprintf(local, sizeof local, "%s_%s%u", f, l, pid);
        else snprintf(local, sizeof local, "%s.%s%u", l, f, pid);
        const char *dom = DOMAINS[wpick(&r, DOMAIN_W, NDOMAIN)];
        char *e0 = p->em[0], *e1 = p->em[1], *e2 = p->em[2];
        snprintf(e0, 112, "%s@%s", local, dom);
        size_t n = strlen(e0);
        for (size_t i = 0; i <= n; i++) e1[i] = upc(e0[i]);          /* UPPER */
        for (size_t i = 0; i <= n; i++)                              /* Capitalised.Parts@Domain */
            e2[i] = (i == 0 || e0[i - 1] == '.' || e0[i - 1] == '_' || e0[i - 1] == '@') ? upc(e0[i]) : e0[i];
        p->em[3][0] = ' ';                                           /* surrounding spaces */
        memcpy(p->em[3] + 1, e0, n);
        memcpy(p->em[3] + 1 + n, " ", 2);
        memcpy(p->em[4], e0, n);                                     /* Capital + trailing space */
        p->em[4][0] = upc(e0[0]);
        memcpy(p->em[4] + n, " ", 2);
        p->esp_em = rp(&r, 0.12) ? 1 + ri(&r, 4) : 0;
    }
    if (p->has_phone) {
        static const char FD[] = "12345789";
        uint64_t v = ((uint64_t)pid * 27182819ULL + g_ph_b) % 100000000ULL;
        char nat[16]; /* 07dxxxxxxxx */
        snprintf(nat, sizeof nat, "07%c%08llu", FD[ri(&r, 8)], (unsigned long long)v);
        snprintf(p->ph[0], 24, "+44%s", nat + 1);                                    /* +447700900123 */
        snprintf(p->ph[1], 24, "%.5s %s", nat, nat + 5);                             /* 07700 900123 */
        snprintf(p->ph[2], 24, "+44 %.4s %s", nat + 1, nat + 5);                     /* +44 7700 900123 */
        snprintf(p->ph[3], 24, "0044 %.4s-%.3s-%s", nat + 1, nat + 5, nat + 8);      /* 0044 7700-900-123 */
        snprintf(p->ph[4], 24, "(%.5s) %s", nat, nat + 5);                           /* (07700) 900123 */
        p->sms_ph = rp(&r, 0.08) ? 1 + ri(&r, 4) : 0;
    }
    if (p->has_loy)
        snprintf(p->loy, sizeof p->loy, "L%010llu",
                 (unsigned long long)(((uint64_t)pid * 7364981633ULL + g_loy_b) % 10000000000ULL));
    if (p->has_cust)
        snprintf(p->cust, sizeof p->cust, "C%llu",
                 (unsigned long long)(10000000ULL + ((uint64_t)pid * 48271ULL + g_cust_b) % 90000000ULL));

    p->lambda = rgamma(&r, BG_R) / BG_ALPHA;
    p->pdrop = rbeta(&r, BG_A, BG_B);
    if (p->anon) p->lambda = 0.0;
    p->engage = rgamma(&r, 2.0) / 2.0;
    p->mu = p->anon ? p->engage * 0.6 : p->engage * (BROWSE_BASE + BROWSE_K * p->lambda);

    int day = ri(&r, g_days);
    int kind = TK_ONLINE;
    if (!p->anon && !p->has_cust && p->has_loy) kind = TK_STORE;
    p->acq_app = kind == TK_ONLINE && p->ndv > 0 && rp(&r, p->anon ? 0.5 : 0.25);
    int hour = hour_pick(&r, kind);
    p->acq_t = g_start + (int64_t)day * DAY_S + hour * 3600 + ri(&r, 3600);

    p->email_optin = p->has_email && rp(&r, 0.7);
    p->sms_optin = p->has_phone && rp(&r, 0.3);
    p->push_optin = (p->ndv > 0 || p->share == SH_USE_DEVICE) && rp(&r, 0.5);
    for (int i = 0; i < 3; i++) p->fav[i] = wpick(&r, cat_w, NCAT);
    p->home_store = city_store0[p->city] + ri(&r, CITIES[p->city].nstores);

    p->move_t = p->rename_t = NEVER;
    p->city2 = p->city; p->ln2 = p->ln;
    memcpy(p->pc2, p->pc, sizeof p->pc2);
    int64_t rest = g_end - p->acq_t - 2 * DAY_S;
    if (known && rp(&r, 0.04) && rest > 0) {
        p->move_t = p->acq_t + DAY_S + (int64_t)(ru(&r) * (double)rest);
        do { p->city2 = wpick(&r, city_w, NCITY); } while (p->city2 == p->city);
        make_postcode(&r, p->city2, p->pc2);
    }
    if (known && rp(&r, 0.01) && rest > 0) {
        p->rename_t = p->acq_t + DAY_S + (int64_t)(ru(&r) * (double)rest);
        do { p->ln2 = ri(&r, NLAST); } while (p->ln2 == p->ln);
    }
}

/* ---- events --------------------------------------------------------------- */
enum { CH_WEB, CH_APP, CH_STORE, CH_CALL, CH_EMAIL, CH_SMS, CH_PUSH, CH_MAIL };
static const char *const CH_NAME[] = {"web", "app", "store", "call_center", "email", "sms", "push", "mail"};
enum {
    T_PAGE_VIEW, T_PRODUCT_VIEW, T_SEARCH, T_ADD, T_REMOVE, T_CHECKOUT, T_PURCHASE, T_RETURN,
    T_LOGIN, T_SIGNUP, T_PROFILE, T_STORE_VISIT, T_CALL, T_COMPLAINT, T_EMAIL_SENT, T_EMAIL_OPEN,
    T_EMAIL_CLICK, T_SMS_SENT, T_SMS_CLICK, T_PUSH_OPEN, T_WISHLIST
};
static const char *const T_NAME[] = {
    "page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "checkout_start",
    "purchase", "return", "login", "signup", "profile_update", "store_visit", "call", "complaint",
    "email_sent", "email_open", "email_click", "sms_sent", "sms_click", "push_open", "wishlist_add"};
enum { S_WEB, S_APP, S_POS, S_CRM, S_ESP, S_CALL };
static const char *const SRC_NAME[] = {"web-sdk", "app-sdk", "pos", "crm", "esp", "call-center"};

/* per-person usage bits (which raw identifier forms were written) */
#define B_COOKIE(i) (1u << (i))        /* bits 0-2 */
#define B_DEVICE(i) (1u << (3 + (i)))  /* bits 3-4 */
#define B_EMAIL(v) (1u << (5 + (v)))   /* bits 5-9 */
#define B_PHONE(v) (1u << (10 + (v)))  /* bits 10-14 */
#define B_LOY (1u << 15)
#define B_CUST (1u << 16)
#define B_SHARED (1u << 17)            /* partner used the owner's shared cookie/device */
#define B_SHDEV (1u << 18)             /* marker: the person's shared value is a device id */
#define B_USAGE_MASK 0x1FFFFu

/* identifier set of one event; -1 = absent */
enum { CK_SHARED = 3, CK_JUNK = 4 };    /* cookie: 0-2 own slot, 3 shared, 4-5 junk */
enum { DV_SHARED = 2 };                 /* device: 0-1 own slot, 2 shared */
enum { EM_JUNK = 5 };                   /* email / phone: 0-4 form, 5-7 junk */
typedef struct { int cookie, device, email, phone, loyalty, cust; } ids_t;

static void ids_none(ids_t *d) { d->cookie = d->device = d->email = d->phone = d->loyalty = -1; d->cust = 0; }

typedef struct { uint64_t key; uint32_t off, len, bits, junk; } ev_t;

typedef struct {
    const person_t *p;
    rng_t r;
    sb_t sb;
    ev_t *ev;
    size_t nev, cap;
    uint32_t seq, order_seq;
    int64_t death_t, min_t;
    /* event being built */
    size_t cur_off;
    int64_t cur_t;
    uint32_t cur_bits, cur_junk;
    int pfirst;
} gen_t;

static void put_ids(gen_t *g, const ids_t *d)
{
    sb_t *b = &g->sb;
    const person_t *p = g->p;
    int first = 1;
#define IDK(k) do { if (!first) sb_c(b, ','); first = 0; SBL(b, "\"\"" k "\"\":\"\""); } while (0)
    SBL(b, "\"{");
    if (d->cookie >= 0) {
        IDK("cookie");
        if (d->cookie < 3) { sb_s(b, p->ck[d->cookie]); g->cur_bits |= B_COOKIE(d->cookie); }
        else if (d->cookie == CK_SHARED) { sb_s(b, p->shv); g->cur_bits |= B_SHARED; }
        else { sb_s(b, JUNK_COOKIE[d->cookie - CK_JUNK]); g->cur_junk |= 1u << (7 + d->cookie - CK_JUNK); }
        SBL(b, "\"\"");
    }
    if (d->device >= 0) {
        IDK("device_id");
        if (d->device < 2) { sb_s(b, p->dv[d->device]); g->cur_bits |= B_DEVICE(d->device); }
        else { sb_s(b, p->shv); g->cur_bits |= B_SHARED; }
        SBL(b, "\"\"");
    }
    if (d->email >= 0) {
        IDK("email");
        if (d->email < EM_JUNK) { sb_s(b, p->em[d->email]); g->cur_bits |= B_EMAIL(d->email); }
        else { sb_s(b, JUNK_EMAIL[d->email - EM_JUNK]); g->cur_junk |= 1u << (d->email - EM_JUNK); }
        SBL(b, "\"\"");
    }
    if (d->phone >= 0) {
        IDK("phone");
        if (d->phone < EM_JUNK) { sb_s(b, p->ph[d->phone]); g->cur_bits |= B_PHONE(d->phone); }
        else { sb_s(b, JUNK_PHONE[d->phone - EM_JUNK]); g->cur_junk |= 1u << (3 + d->phone - EM_JUNK); }
        SBL(b, "\"\"");
    }
    if (d->loyalty >= 0) {
        IDK("loyalty_card");
        if (d->loyalty == 0) { sb_s(b, p->loy); g->cur_bits |= B_LOY; }
        else { sb_s(b, JUNK_LOYALTY); g->cur_junk |= 1u << 6; }
        SBL(b, "\"\"");
    }
    if (d->cust) {
        IDK("customer_id");
        sb_s(b, p->cust);
        g->cur_bits |= B_CUST;
        SBL(b, "\"\"");
    }
#undef IDK
    SBL(b, "}\"");
}

static void ev_begin(gen_t *g, int64_t t, int ch, int type, const ids_t *d)
{
    sb_t *b = &g->sb;
    sb_reserve(b, 4096); /* a row is far shorter than this */
    g->cur_off = b->len;
    g->cur_t = t;
    g->cur_bits = g->cur_junk = 0;
    if (t >= g_start && t < g_end) sb_ts(b, t);
    sb_c(b, ',');
    sb_s(b, CH_NAME[ch]);
    sb_c(b, ',');
    sb_s(b, T_NAME[type]);
    sb_c(b, ',');
    put_ids(g, d);
    SBL(b, ",\"{");
    g->pfirst = 1;
}

#define NO_AMOUNT INT64_MIN
static void ev_end(gen_t *g, int64_t cents, int src)
{
    sb_t *b = &g->sb;
    SBL(b, "}\",");
    if (cents != NO_AMOUNT) sb_money(b, cents);
    sb_c(b, ',');
    sb_s(b, SRC_NAME[src]);
    sb_c(b, '\n');
    if (g->cur_t < g_start || g->cur_t >= g_end) { b->len = g->cur_off; return; }
    if (g->nev == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 1024;
        g->ev = xrealloc(g->ev, g->cap * sizeof *g->ev);
    }
    ev_t *e = &g->ev[g->nev++];
    e->key = ((uint64_t)(g->cur_t - g_start) << 32) | g->seq++;
    e->off = (uint32_t)g->cur_off;
    e->len = (uint32_t)(b->len - g->cur_off);
    e->bits = g->cur_bits;
    e->junk = g->cur_junk;
}

/* property writers (JSON inside a CSV-quoted field: quotes are doubled) */
static inline void pk_raw(gen_t *g, const char *k, size_t n)
{
    if (!g->pfirst) sb_c(&g->sb, ',');
    g->pfirst = 0;
    sb_put(&g->sb, k, n);
}
#define PK(g, k) pk_raw((g), "\"\"" k "\"\":", sizeof("\"\"" k "\"\":") - 1)
#define PSTR(g, k, v) do { PK(g, k); SBL(&(g)->sb, "\"\""); sb_s(&(g)->sb, (v)); SBL(&(g)->sb, "\"\""); } while (0)
#define PINT(g, k, v) do { PK(g, k); sb_u(&(g)->sb, (uint64_t)(v)); } while (0)
#define PMONEY(g, k, v) do { PK(g, k); sb_money(&(g)->sb, (v)); } while (0)

static void p_prod(gen_t *g, int prod)
{
    PSTR(g, "product_id", prod_id[prod]);
    PSTR(g, "category", CATS[prod_cat[prod]].name);
    PMONEY(g, "price", prod_price[prod]);
}

/* order ids: a bijection of (person, order number), so unique and not in time order */
static uint64_t g_okey;
static void p_order(gen_t *g, uint32_t oid)
{
    static const char H[] = "0123456789ABCDEF";
    uint64_t v = mix64((((uint64_t)g->p->pid << 28) | (oid & 0xFFFFFFFu)) ^ g_okey);
    PK(g, "order_id");
    SBL(&g->sb, "\"\"O");
    for (int i = 0; i < 16; i++) sb_c(&g->sb, H[(v >> (60 - 4 * i)) & 15]);
    SBL(&g->sb, "\"\"");
}

static void p_items(gen_t *g, const int *items, int n)
{
    PK(g, "items");
    sb_c(&g->sb, '[');
    for (int i = 0; i < n; i++) {
        if (i) sb_c(&g->sb, ',');
        SBL(&g->sb, "\"\"");
        sb_put(&g->sb, prod_id[items[i]], 6);
        SBL(&g->sb, "\"\"");
    }
    sb_c(&g->sb, ']');
}

static void p_store(gen_t *g, int store)
{
    int s = store + 1;
    PK(g, "store_id");
    SBL(&g->sb, "\"\"S");
    sb_c(&g->sb, (char)('0' + s / 100 % 10));
    sb_2(&g->sb, (unsigned)(s % 100));
    SBL(&g->sb, "\"\"");
}

static void p_traits(gen_t *g, int64_t t)
{
    const person_t *p = g->p;
    sb_t *b = &g->sb;
    int ln = t >= p->rename_t ? p->ln2 : p->ln;
    int moved = t >= p->move_t;
    PK(g, "traits");
    SBL(b, "{\"\"first_name\"\":\"\"");
    sb_s(b, FIRST[p->fn]);
    SBL(b, "\"\",\"\"last_name\"\":\"\"");
    sb_s(b, LAST[ln]);
    SBL(b, "\"\",\"\"birth_date\"\":\"\"");
    sb_u(b, (uint64_t)p->by); sb_c(b, '-'); sb_2(b, (unsigned)p->bm); sb_c(b, '-'); sb_2(b, (unsigned)p->bd);
    SBL(b, "\"\",\"\"postal_code\"\":\"\"");
    sb_s(b, moved ? p->pc2 : p->pc);
    SBL(b, "\"\",\"\"city\"\":\"\"");
    sb_s(b, CITIES[moved ? p->city2 : p->city].name);
    SBL(b, "\"\",\"\"language\"\":\"\"");
    sb_s(b, LANGS[p->lang]);
    SBL(b, "\"\"}");
}

/* ---- identifier helpers ---------------------------------------------------- */
static int form(gen_t *g, double messy) { return rp(&g->r, messy) ? 1 + ri(&g->r, 4) : 0; }
static int app_access(const person_t *p) { return p->ndv > 0 || p->share == SH_USE_DEVICE; }
static int alive(const gen_t *g, int64_t t) { return t < g->death_t; }

static int64_t retime(gen_t *g, int64_t t, int kind)
{
    int64_t day = (t - g_start) / DAY_S;
    if (day < 0) day = 0;
    int64_t hour = hour_pick(&g->r, kind);
    int64_t nt = g_start + day * DAY_S + hour * 3600 + ri(&g->r, 3600);
    while (nt < g->min_t) nt += DAY_S;
    return nt;
}

static int pick_cat(gen_t *g)
{
    double u = ru(&g->r);
    if (u < 0.35) return g->p->fav[0];
    if (u < 0.55) return g->p->fav[1];
    if (u < 0.68) return g->p->fav[2];
    return wpick(&g->r, cat_w, NCAT);
}

static int pick_prod(gen_t *g) { return pick_prod_in(&g->r, pick_cat(g)); }

static int pick_basket(gen_t *g, int *items)
{
    double u = ru(&g->r);
    int n = u < 0.70 ? 1 : u < 0.90 ? 2 : 3 + ri(&g->r, 2);
    for (int i = 0; i < n; i++) {
        int tries = 0, dup;
        do {
            items[i] = pick_prod(g);
            dup = 0;
            for (int j = 0; j < i; j++) dup |= items[j] == items[i];
        } while (dup && ++tries < 10);
    }
    return n;
}

/* ---- web / app sessions -------------------------------------------------- */
enum { M_BROWSE, M_RESEARCH, M_CART, M_CHECKOUT, M_PURCHASE, M_SIGNUP, M_ACCOUNT };
enum { E_DIRECT, E_ORGANIC, E_CPC, E_SOCIAL, E_REFERRAL, E_EMAIL, E_SMS, E_PUSH };
enum { F_ACCOUNT, F_NEWSLETTER };

typedef struct {
    int app, ck, dv, logged, entry;
    const char *camp;
    int64_t t, cart;
} sess_t;

static void sess_ids(gen_t *g, const sess_t *s, ids_t *d)
{
    ids_none(d);
    if (s->app) d->device = s->dv;
    else {
        d->cookie = s->ck;
        if (rp(&g->r, P_JUNK_COOKIE)) d->cookie = CK_JUNK + ri(&g->r, 2);
    }
    if (s->logged) {
        d->cust = 1;
        if (rp(&g->r, 0.2)) d->email = form(g, 0.15);
    }
}

static void step(gen_t *g, sess_t *s, double mean)
{
    s->t += 3 + (int64_t)(rexp(&g->r) * mean);
}

static int sess_ch(const sess_t *s) { return s->app ? CH_APP : CH_WEB; }
static int sess_src(const sess_t *s) { return s->app ? S_APP : S_WEB; }

static void ev_page(gen_t *g, sess_t *s, const char *page, const char *page2, int landing)
{
    ids_t d;
    sess_ids(g, s, &d);
    ev_begin(g, s->t, sess_ch(s), T_PAGE_VIEW, &d);
    PK(g, "page");
    SBL(&g->sb, "\"\"");
    sb_s(&g->sb, page);
    if (page2) sb_s(&g->sb, page2);
    SBL(&g->sb, "\"\"");
    if (landing && !s->app) {
        rng_t *r = &g->r;
        switch (s->entry) {
        case E_ORGANIC:
            if (rp(r, 0.85)) {
                PSTR(g, "utm_source", "google"); PSTR(g, "utm_medium", "organic");
                PSTR(g, "referrer", "https://www.google.com/");
            } else {
                PSTR(g, "utm_source", "bing"); PSTR(g, "utm_medium", "organic");
                PSTR(g, "referrer", "https://www.bing.com/");
            }
            break;
        case E_CPC:
            PSTR(g, "utm_source", "google"); PSTR(g, "utm_medium", "cpc");
            PSTR(g, "utm_campaign", rp(r, 0.4) ? "brand" : "generic");
            PSTR(g, "referrer", "https://www.google.com/");
            break;
        case E_SOCIAL: {
            static const char *const SRC[] = {"facebook", "instagram", "tiktok"};
            static const char *const REF[] = {"https://l.facebook.com/", "https://l.instagram.com/",
                                              "https://www.tiktok.com/"};
            int k = ri(r, 3);
            PSTR(g, "utm_source", SRC[k]); PSTR(g, "utm_medium", "social");
            PSTR(g, "utm_campaign", "social-ads");
            PSTR(g, "referrer", REF[k]);
            break;
        }
        case E_REFERRAL: {
            static const char *const REF[] = {"https://www.hotukdeals.com/", "https://www.which.co.uk/",
                                              "https://www.reddit.com/"};
            PSTR(g, "referrer", REF[ri(r, 3)]);
            break;
        }
        case E_EMAIL:
            PSTR(g, "utm_source", "newsletter"); PSTR(g, "utm_medium", "email");
            PSTR(g, "utm_campaign", s->camp);
            break;
        case E_SMS:
            PSTR(g, "utm_source", "sms"); PSTR(g, "utm_medium", "sms");
            PSTR(g, "utm_campaign", s->camp);
            break;
        default:
            break;
        }
    }
    if (!s->app && rp(&g->r, 0.008)) PSTR(g, "error", rp(&g->r, 0.6) ? "page_timeout" : "not_found");
    ev_end(g, NO_AMOUNT, sess_src(s));
}

static void ev_product(gen_t *g, sess_t *s, int type, int prod)
{
    ids_t d;
    sess_ids(g, s, &d);
    ev_begin(g, s->t, sess_ch(s), type, &d);
    p_prod(g, prod);
    if (type == T_ADD || type == T_REMOVE) PMONEY(g, "cart_value", s->cart);
    ev_end(g, NO_AMOUNT, sess_src(s));
}

static void ev_login(gen_t *g, sess_t *s)
{
    ids_t d;
    sess_ids(g, s, &d);
    d.cust = 1;
    d.email = form(g, 0.15);
    ev_begin(g, s->t, sess_ch(s), T_LOGIN, &d);
    double u = ru(&g->r);
    PSTR(g, "method", u < 0.8 ? "password" : u < 0.92 ? "google" : "apple");
    ev_end(g, NO_AMOUNT, sess_src(s));
    s->logged = 1;
}

static void browse_steps(gen_t *g, sess_t *s, int n)
{
    for (int i = 0; i < n; i++) {
        step(g, s, 40);
        double u = ru(&g->r);
        if (u < 0.55) {
            int prod = pick_prod(g);
            ev_product(g, s, T_PRODUCT_VIEW, prod);
            if (s->logged && rp(&g->r, 0.04)) { step(g, s, 10); ev_product(g, s, T_WISHLIST, prod); }
        } else if (u < 0.75) {
            ev_page(g, s, "/c/", CATS[pick_cat(g)].name, 0);
        } else if (u < 0.88) {
            int c = pick_cat(g);
            ids_t d;
            sess_ids(g, s, &d);
            ev_begin(g, s->t, sess_ch(s), T_SEARCH, &d);
            PSTR(g, "query", CATS[c].q[ri(&g->r, 3)]);
            PINT(g, "results", rp(&g->r, 0.03) ? 0 : 1 + ri(&g->r, 80));
            ev_end(g, NO_AMOUNT, sess_src(s));
            step(g, s, 20);
            ev_product(g, s, T_PRODUCT_VIEW, pick_prod_in(&g->r, c));
        } else {
            ev_page(g, s, MISC_PAGES[ri(&g->r, NMISC)], NULL, 0);
        }
    }
}

static void email_event(gen_t *g, int64_t t, int type, int emform, const char *camp, uint32_t oid, int ck)
{
    ids_t d;
    ids_none(&d);
    d.email = emform;
    d.cookie = ck;
    ev_begin(g, t, CH_EMAIL, type, &d);
    PSTR(g, "campaign_id", camp);
    if (oid) p_order(g, oid);
    ev_end(g, NO_AMOUNT, S_ESP);
}

/* one web or app session; returns the time of its last event */
static int64_t session(gen_t *g, int64_t t, int mode, int app, int entry, const char *camp,
                       const int *items, int nitems, uint32_t oid, int form_kind)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    sess_t s;
    memset(&s, 0, sizeof s);
    s.t = t;
    s.app = app;
    s.entry = entry;
    s.camp = camp;
    int shared = 0;
    if (app) {
        if (p->share == SH_USE_DEVICE && (p->ndv == 0 || rp(r, 0.6))) s.dv = DV_SHARED;
        else s.dv = (p->ndv > 1 && rp(r, 0.3)) ? 1 : 0;
        shared = s.dv == DV_SHARED || (p->share == SH_OWN_DEVICE && s.dv == 0);
    } else {
        if (p->share == SH_USE_COOKIE && rp(r, 0.4)) s.ck = CK_SHARED;
        else {
            double u = ru(r);
            s.ck = p->nck == 1 ? 0 : p->nck == 2 ? (u < 0.7 ? 0 : 1) : (u < 0.6 ? 0 : u < 0.85 ? 1 : 2);
        }
        shared = s.ck == CK_SHARED || (p->share == SH_OWN_COOKIE && s.ck == 0);
    }
    if (p->has_cust && mode != M_SIGNUP)
        s.logged = rp(r, shared ? 0.7 : app ? 0.85 : 0.35);
    int login_now = p->has_cust && !s.logged && mode != M_SIGNUP &&
                    (mode == M_ACCOUNT || rp(r, 0.08) || (shared && rp(r, 0.5)));

    /* entry events */
    if (entry == E_EMAIL) {
        email_event(g, s.t, T_EMAIL_CLICK, p->esp_em, camp, 0, s.ck);
        step(g, &s, 4);
    } else if (entry == E_SMS) {
        ids_t d;
        ids_none(&d);
        d.phone = p->sms_ph;
        ev_begin(g, s.t, CH_SMS, T_SMS_CLICK, &d);
        PSTR(g, "campaign_id", camp);
        ev_end(g, NO_AMOUNT, S_ESP);
        step(g, &s, 6);
    } else if (entry == E_PUSH) {
        ids_t d;
        ids_none(&d);
        d.device = s.dv;
        d.cust = s.logged;
        ev_begin(g, s.t, CH_PUSH, T_PUSH_OPEN, &d);
        PSTR(g, "campaign_id", camp);
        ev_end(g, NO_AMOUNT, S_ESP);
        step(g, &s, 3);
    }
    /* landing page */
    {
        double u = ru(r);
        if (app) ev_page(g, &s, "/home", NULL, 1);
        else if (nitems > 0 && u < 0.3) ev_page(g, &s, "/c/", CATS[prod_cat[items[0]]].name, 1);
        else if (u < 0.55) ev_page(g, &s, "/", NULL, 1);
        else if (u < 0.85) ev_page(g, &s, "/c/", CATS[pick_cat(g)].name, 1);
        else ev_page(g, &s, "/deals", NULL, 1);
    }
    if (login_now) { step(g, &s, 20); ev_login(g, &s); }

    if (mode == M_SIGNUP) {
        step(g, &s, 30);
        ev_page(g, &s, form_kind == F_ACCOUNT ? "/account/register" : "/newsletter", NULL, 0);
        step(g, &s, 60);
        ids_t d;
        sess_ids(g, &s, &d);
        if (form_kind == F_ACCOUNT) {
            d.email = form(g, 0.15);
            d.cust = 1;
            if (p->has_loy && rp(r, 0.5)) d.loyalty = 0;
            if (p->has_phone && rp(r, 0.5)) d.phone = form(g, 0.15);
        } else {
            d.email = rp(r, 0.02) ? EM_JUNK : form(g, 0.15);
        }
        ev_begin(g, s.t, sess_ch(&s), T_SIGNUP, &d);
        PSTR(g, "form", form_kind == F_ACCOUNT ? "account" : "newsletter");
        p_traits(g, s.t);
        ev_end(g, NO_AMOUNT, sess_src(&s));
        if (form_kind == F_ACCOUNT) s.logged = 1;
        browse_steps(g, &s, 1 + (int)(rexp(r) * 2.0));
        return s.t;
    }
    if (mode == M_ACCOUNT) {
        step(g, &s, 20);
        ev_page(g, &s, "/account", NULL, 0);
        step(g, &s, 90);
        ids_t d;
        sess_ids(g, &s, &d);
        d.cust = 1;
        if (d.email < 0 && rp(r, 0.5)) d.email = form(g, 0.15);
        ev_begin(g, s.t, sess_ch(&s), T_PROFILE, &d);
        p_traits(g, s.t);
        ev_end(g, NO_AMOUNT, sess_src(&s));
        return s.t;
    }

    int nb = mode == M_BROWSE ? 1 + (int)(rexp(r) * 3.5) : (int)(rexp(r) * 1.5);
    if (nb > 60) nb = 60;
    browse_steps(g, &s, nb);

    int carting = mode == M_CART || mode == M_CHECKOUT || mode == M_PURCHASE;
    int added = 0;
    for (int i = 0; i < nitems; i++) {
        step(g, &s, 40);
        ev_product(g, &s, T_PRODUCT_VIEW, items[i]);
        if (carting || (mode == M_RESEARCH && rp(r, 0.5))) {
            step(g, &s, 20);
            s.cart += prod_price[items[i]];
            ev_product(g, &s, T_ADD, items[i]);
            added++;
        }
    }
    if (carting && rp(r, 0.1)) { /* add an extra product and change one's mind */
        int extra = pick_prod(g);
        step(g, &s, 30);
        ev_product(g, &s, T_PRODUCT_VIEW, extra);
        step(g, &s, 15);
        s.cart += prod_price[extra];
        ev_product(g, &s, T_ADD, extra);
        step(g, &s, 60);
        s.cart -= prod_price[extra];
        ev_product(g, &s, T_REMOVE, extra);
    }
    if (!(mode == M_CHECKOUT || mode == M_PURCHASE) || added == 0) return s.t;

    /* checkout */
    if (p->has_cust && !s.logged && (mode == M_PURCHASE ? rp(r, 0.85) : rp(r, 0.4))) {
        step(g, &s, 20);
        ev_login(g, &s);
    }
    int guest = !s.logged;
    int gem = -1, gph = -1;
    if (guest && p->has_email) gem = rp(r, 0.03) ? EM_JUNK : form(g, 0.15);
    if (p->has_phone && rp(r, guest ? 0.4 : 0.3))
        gph = rp(r, 0.06) ? EM_JUNK + ri(r, 2) : form(g, 0.15);
    int error = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        step(g, &s, 60);
        ids_t d;
        sess_ids(g, &s, &d);
        if (guest) d.email = gem;
        else if (rp(r, 0.5)) d.email = form(g, 0.15);
        if (gph >= 0) d.phone = gph;
        ev_begin(g, s.t, sess_ch(&s), T_CHECKOUT, &d);
        p_order(g, oid);
        p_items(g, items, nitems);
        PMONEY(g, "cart_value", s.cart);
        error = 0;
        if (attempt == 0) {
            double u = ru(r);
            if (u < 0.05) { PSTR(g, "error", "payment_declined"); error = 1; }
            else if (u < 0.07) { PSTR(g, "error", "address_invalid"); error = 1; }
        }
        ev_end(g, NO_AMOUNT, sess_src(&s));
        if (!error) break;
    }
    if (mode != M_PURCHASE) return s.t;

    step(g, &s, 90);
    ids_t d;
    sess_ids(g, &s, &d);
    int em = guest ? gem : form(g, 0.15);
    d.email = em;
    if (gph >= 0) d.phone = gph;
    ev_begin(g, s.t, sess_ch(&s), T_PURCHASE, &d);
    p_order(g, oid);
    p_items(g, items, nitems);
    double u = ru(r);
    PSTR(g, "payment", u < 0.65 ? "card" : u < 0.85 ? "paypal" : "apple_pay");
    int cc = rp(r, 0.25);
    PSTR(g, "delivery", cc ? "click_collect" : "home");
    if (cc) p_store(g, p->home_store);
    int64_t total = 0;
    for (int i = 0; i < nitems; i++) total += prod_price[items[i]];
    ev_end(g, total, sess_src(&s));
    if (p->has_email)
        email_event(g, s.t + 30 + ri(r, 240), T_EMAIL_SENT, p->esp_em, "tx-order", oid, -1);
    return s.t;
}

static int pick_entry(gen_t *g)
{
    double u = ru(&g->r);
    return u < 0.35 ? E_DIRECT : u < 0.62 ? E_ORGANIC : u < 0.77 ? E_CPC : u < 0.88 ? E_SOCIAL : E_REFERRAL;
}

/* the only session of a drive-by visitor: 1 to 8 events, never identified */
static const int VISIT_LEN_W[8] = {50, 16, 10, 8, 6, 4, 3, 3}; /* 1..8 events, mean 2.43 */

static void visitor_session(gen_t *g, int64_t t)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    sess_t s;
    memset(&s, 0, sizeof s);
    s.t = t;
    s.app = p->acq_app;
    s.entry = s.app ? E_DIRECT : pick_entry(g);
    int n = 1 + wpick(r, VISIT_LEN_W, 8);
    double u = ru(r);
    if (s.app) ev_page(g, &s, "/home", NULL, 1);
    else if (u < 0.45) ev_page(g, &s, "/", NULL, 1);
    else if (u < 0.85) ev_page(g, &s, "/c/", CATS[pick_cat(g)].name, 1);
    else ev_page(g, &s, "/deals", NULL, 1);
    int prod = -1, qcat = -1;
    for (int k = 1; k < n; k++) {
        step(g, &s, 40);
        if (prod >= 0) { /* act on the product just viewed: cart (abandoned) or, rarely, wishlist */
            double a = ru(r);
            if (a < 0.1) {
                s.cart += prod_price[prod];
                ev_product(g, &s, T_ADD, prod);
                prod = -1;
                continue;
            }
            if (a < 0.104) {
                ev_product(g, &s, T_WISHLIST, prod);
                prod = -1;
                continue;
            }
        }
        prod = -1;
        u = ru(r);
        if (u < 0.55) {
            prod = qcat >= 0 && rp(r, 0.7) ? pick_prod_in(r, qcat) : pick_prod(g);
            ev_product(g, &s, T_PRODUCT_VIEW, prod);
        } else if (u < 0.72) {
            ids_t d;
            qcat = pick_cat(g);
            sess_ids(g, &s, &d);
            ev_begin(g, s.t, sess_ch(&s), T_SEARCH, &d);
            PSTR(g, "query", CATS[qcat].q[ri(r, 3)]);
            PINT(g, "results", rp(r, 0.03) ? 0 : 1 + ri(r, 80));
            ev_end(g, NO_AMOUNT, sess_src(&s));
        } else if (u < 0.9) {
            ev_page(g, &s, "/c/", CATS[pick_cat(g)].name, 0);
        } else {
            ev_page(g, &s, MISC_PAGES[ri(r, NMISC)], NULL, 0);
        }
    }
}

/* ---- store, call centre, returns ------------------------------------------- */
static int pick_store(gen_t *g)
{
    return rp(&g->r, 0.8) ? g->p->home_store : ri(&g->r, g_nstores);
}

static void store_visit(gen_t *g, int64_t t, int prod)
{
    const person_t *p = g->p;
    if (!p->has_loy) return;
    ids_t d;
    ids_none(&d);
    d.loyalty = 0;
    if (p->has_phone && rp(&g->r, 0.05)) d.phone = form(g, 0.3);
    ev_begin(g, t, CH_STORE, T_STORE_VISIT, &d);
    p_store(g, pick_store(g));
    if (prod >= 0) { PSTR(g, "product_id", prod_id[prod]); PSTR(g, "category", CATS[prod_cat[prod]].name); }
    ev_end(g, NO_AMOUNT, S_POS);
}

/* identifiers captured by a till; returns 0 when nothing would be captured */
static int till_ids(gen_t *g, ids_t *d, double p_receipt, double p_phone)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    ids_none(d);
    if (p->has_loy) { if (rp(r, 0.92)) d->loyalty = 0; }
    else if (rp(r, 0.3)) d->loyalty = 1; /* the shop's own "house card" */
    if (p->has_email && rp(r, p_receipt)) d->email = rp(r, 0.08) ? EM_JUNK + 1 : form(g, 0.25);
    if (p->has_phone && rp(r, p_phone)) d->phone = rp(r, 0.1) ? EM_JUNK + ri(r, 2) : form(g, 0.3);
    if (d->loyalty != 0 && d->email < 0 && d->phone < 0) { /* e-receipt as fallback */
        if (p->has_email) d->email = form(g, 0.25);
        else if (p->has_phone) d->phone = form(g, 0.3);
    }
    return d->loyalty >= 0 || d->email >= 0 || d->phone >= 0;
}

static void store_purchase(gen_t *g, int64_t t, const int *items, int n, uint32_t oid, int store)
{
    ids_t d;
    if (!till_ids(g, &d, 0.25, 0.10)) return;
    ev_begin(g, t, CH_STORE, T_PURCHASE, &d);
    p_store(g, store);
    p_order(g, oid);
    p_items(g, items, n);
    PSTR(g, "payment", rp(&g->r, 0.85) ? "card" : "cash");
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += prod_price[items[i]];
    ev_end(g, total, S_POS);
}

static void do_return(gen_t *g, int64_t t, const int *items, int n, uint32_t oid, int in_store)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    static const char *const REASON[] = {"faulty", "changed_mind", "damaged", "not_as_described", "wrong_item"};
    int k = ri(r, n);
    int64_t refund = prod_price[items[k]];
    if (n == 1 && rp(r, 0.3)) refund = refund * (20 + ri(r, 30)) / 100; /* partial refund */
    if (refund < 1) refund = 1;
    ids_t d;
    int ch, src;
    if (in_store || (p->has_loy && rp(r, 0.3))) {
        if (!till_ids(g, &d, 0.3, 0.05)) return;
        t = retime(g, t, TK_STORE);
        ch = CH_STORE; src = S_POS;
    } else {
        ids_none(&d);
        d.cust = p->has_cust;
        d.email = p->has_email ? form(g, 0.1) : -1;
        if (d.email < 0 && !d.cust) return;
        t = retime(g, t, TK_CALL);
        ch = rp(r, 0.5) ? CH_MAIL : CH_WEB; src = S_CRM;
    }
    ev_begin(g, t, ch, T_RETURN, &d);
    p_order(g, oid);
    p_items(g, &items[k], 1);
    PSTR(g, "reason", REASON[ri(r, 5)]);
    if (ch == CH_STORE) p_store(g, pick_store(g));
    ev_end(g, -refund, src);
}

static void call_centre(gen_t *g, int64_t t, int complaint, uint32_t oid)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    static const char *const CALL_R[] = {"order_status", "delivery_delay", "product_question", "billing",
                                         "account_help"};
    static const char *const COMP_R[] = {"damaged_item", "late_delivery", "wrong_item", "refund_delay",
                                         "poor_service"};
    ids_t d;
    ids_none(&d);
    if (p->has_phone && rp(r, 0.9)) d.phone = form(g, 0.1);
    else if (rp(r, 0.5)) d.phone = EM_JUNK + 2; /* withheld number */
    if (p->has_cust && rp(r, 0.45)) d.cust = 1;
    if (p->has_email && rp(r, 0.15)) d.email = rp(r, 0.05) ? EM_JUNK + 2 : form(g, 0.15);
    if (d.phone < 0 && !d.cust && d.email < 0) return;
    t = retime(g, t, TK_CALL);
    const char *reason = complaint ? COMP_R[ri(r, 5)] : CALL_R[ri(r, 5)];
    ev_begin(g, t, CH_CALL, T_CALL, &d);
    PSTR(g, "reason", reason);
    PINT(g, "duration_s", 60 + (int)(rexp(r) * 300));
    if (oid) p_order(g, oid);
    ev_end(g, NO_AMOUNT, S_CALL);
    if (complaint) {
        ev_begin(g, t + 120 + ri(r, 900), CH_CALL, T_COMPLAINT, &d);
        PSTR(g, "reason", reason);
        if (oid) p_order(g, oid);
        ev_end(g, NO_AMOUNT, S_CALL);
    }
}

/* ---- occasions ------------------------------------------------------------ */
static void purchase_occasion(gen_t *g, int64_t tp)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    int items[4];
    int n = pick_basket(g, items);
    uint32_t oid = ++g->order_seq;
    int w[3] = {45, app_access(p) ? 22 : 0, p->has_loy ? 45 : 10};
    int ch = wpick(r, w, 3);
    int in_store = ch == 2;
    if (in_store) {
        tp = retime(g, tp, TK_STORE);
        if (rp(r, 0.3)) { /* research online, buy offline */
            int64_t tr = tp - 3600 - (int64_t)(rexp(r) * 1.5 * DAY_S);
            if (tr > g->min_t) {
                tr = retime(g, tr, TK_ONLINE);
                if (tr < tp - 1800) {
                    int app = app_access(p) && rp(r, 0.3);
                    session(g, tr, M_RESEARCH, app, app ? E_DIRECT : pick_entry(g), NULL, items, 1, 0, 0);
                }
            }
        }
        store_purchase(g, tp, items, n, oid, pick_store(g));
    } else {
        tp = retime(g, tp, TK_ONLINE);
        int app = ch == 1;
        if (p->has_loy && rp(r, 0.15)) { /* showrooming: saw it in a store first */
            int64_t ts = tp - DAY_S - (int64_t)(ru(r) * 9 * DAY_S);
            if (ts > g->min_t) {
                ts = retime(g, ts, TK_STORE);
                if (ts < tp - 3600) store_visit(g, ts, items[0]);
            }
        }
        int entry = app ? E_DIRECT : pick_entry(g);
        const char *camp = NULL;
        if (rp(r, 0.25)) { /* abandoned cart, recovered later */
            int64_t ta = tp - 7200 - (int64_t)(rexp(r) * 20 * 3600);
            if (ta > g->min_t) ta = retime(g, ta, TK_ONLINE);
            if (ta > g->min_t && ta < tp - 3600) {
                int aapp = app_access(p) && rp(r, 0.3);
                uint32_t aoid = ++g->order_seq;
                int aentry = aapp ? E_DIRECT : pick_entry(g);
                int amode = rp(r, 0.4) ? M_CHECKOUT : M_CART;
                int64_t te = session(g, ta, amode, aapp, aentry, NULL, items, n, aoid, 0);
                if (p->has_email && p->email_optin && rp(r, 0.5)) {
                    int64_t tm = te + 3600 + ri(r, 3 * 3600);
                    if (tm < tp - 600) {
                        email_event(g, tm, T_EMAIL_SENT, p->esp_em, "tx-cart", 0, -1);
                        if (!app && rp(r, 0.4)) { entry = E_EMAIL; camp = "tx-cart"; tp = tm + 300 + ri(r, 7200); }
                    }
                }
            }
        }
        session(g, tp, M_PURCHASE, app, entry, camp, items, n, oid, 0);
    }
    if (rp(r, 0.09)) do_return(g, tp + 2 * DAY_S + (int64_t)(ru(r) * 28 * DAY_S), items, n, oid, in_store);
    if (rp(r, 0.06)) call_centre(g, tp + DAY_S + (int64_t)(ru(r) * 13 * DAY_S), 0, oid);
    if (rp(r, 0.02)) call_centre(g, tp + DAY_S + (int64_t)(ru(r) * 20 * DAY_S), 1, oid);
}

static void browse_occasion(gen_t *g, int64_t t)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    t = retime(g, t, TK_ONLINE);
    int app = app_access(p) && rp(r, 0.4);
    double u = ru(r);
    int mode = u < 0.74 ? M_BROWSE : u < 0.93 ? M_CART : M_CHECKOUT;
    if (p->anon && mode == M_CHECKOUT) mode = M_CART;
    int items[4], n = 0;
    uint32_t oid = 0;
    if (mode != M_BROWSE) {
        items[n++] = pick_prod(g);
        if (rp(r, 0.2)) items[n++] = pick_prod(g);
        if (n == 2 && items[0] == items[1]) n = 1;
        if (mode == M_CHECKOUT) oid = ++g->order_seq;
    }
    session(g, t, mode, app, app ? E_DIRECT : pick_entry(g), NULL, items, n, oid, 0);
    if (!p->anon && rp(r, 0.004)) {
        int complaint = rp(r, 0.2);
        call_centre(g, t + ri(r, 3 * DAY_S), complaint, 0);
    }
}

static void profile_change(gen_t *g, int64_t t)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    double u = ru(r);
    if (p->has_cust && u < 0.6) {
        int app = app_access(p) && rp(r, 0.3);
        session(g, retime(g, t, TK_ONLINE), M_ACCOUNT, app, E_DIRECT, NULL, NULL, 0, 0, 0);
        return;
    }
    ids_t d;
    ids_none(&d);
    int ch, src;
    if (p->has_loy && u >= 0.85) {
        d.loyalty = 0;
        t = retime(g, t, TK_STORE);
        ch = CH_STORE; src = S_POS;
    } else {
        if (p->has_phone) d.phone = form(g, 0.1);
        d.cust = p->has_cust;
        if (p->has_email && (d.phone < 0 || rp(r, 0.3))) d.email = form(g, 0.15);
        if (d.phone < 0 && d.email < 0 && !d.cust) return;
        t = retime(g, t, TK_CALL);
        ch = CH_CALL; src = S_CRM;
    }
    ev_begin(g, t, ch, T_PROFILE, &d);
    if (ch == CH_STORE) p_store(g, pick_store(g));
    p_traits(g, t);
    ev_end(g, NO_AMOUNT, src);
}

/* ---- campaigns -------------------------------------------------------------- */
typedef struct { int64_t t; char id[16]; } camp_t;
static camp_t *g_em_camp, *g_sms_camp, *g_push_camp;
static int g_nem, g_nsms, g_npush;

static camp_t *make_campaigns(rng_t *r, int *n, double every_days, int hour, const char *prefix)
{
    int cap = (int)(g_days / every_days) + 2, k = 0;
    camp_t *c = xrealloc(NULL, (size_t)cap * sizeof *c);
    double day = ru(r) * every_days;
    while (day < g_days && k < cap) {
        c[k].t = g_start + (int64_t)day * DAY_S + hour * 3600 + ri(r, 1800);
        snprintf(c[k].id, sizeof c[k].id, "%s-%03d", prefix, k + 1);
        k++;
        day += every_days * (0.75 + 0.5 * ru(r));
    }
    *n = k;
    return c;
}

static void campaigns(gen_t *g)
{
    const person_t *p = g->p;
    rng_t *r = &g->r;
    int64_t from = p->acq_t + DAY_S;
    double eng = p->engage > 2.0 ? 2.0 : p->engage;
    if (p->email_optin) {
        for (int i = 0; i < g_nem; i++) {
            const camp_t *c = &g_em_camp[i];
            if (c->t < from || !rp(r, P_EMAIL_REACH)) continue;
            int64_t t = c->t + ri(r, 7200);
            email_event(g, t, T_EMAIL_SENT, p->esp_em, c->id, 0, -1);
            int live = alive(g, t);
            if (!rp(r, (live ? 0.22 : 0.05) * eng)) continue;
            t += 60 + (int64_t)(rexp(r) * 5 * 3600);
            email_event(g, t, T_EMAIL_OPEN, p->esp_em, c->id, 0, -1);
            if (!rp(r, live ? 0.15 : 0.05)) continue;
            t += 5 + ri(r, 120);
            session(g, t, rp(r, 0.9) ? M_BROWSE : M_CART, 0, E_EMAIL, c->id, NULL, 0, 0, 0);
        }
    }
    if (p->sms_optin) {
        for (int i = 0; i < g_nsms; i++) {
            const camp_t *c = &g_sms_camp[i];
            if (c->t < from || !rp(r, 0.6)) continue;
            int64_t t = c->t + ri(r, 600);
            ids_t d;
            ids_none(&d);
            d.phone = p->sms_ph;
            ev_begin(g, t, CH_SMS, T_SMS_SENT, &d);
            PSTR(g, "campaign_id", c->id);
            ev_end(g, NO_AMOUNT, S_ESP);
            if (!rp(r, alive(g, t) ? 0.05 : 0.01)) continue;
            session(g, t + 30 + (int64_t)(rexp(r) * 1800), M_BROWSE, 0, E_SMS, c->id, NULL, 0, 0, 0);
        }
    }
    if (p->push_optin) {
        for (int i = 0; i < g_npush; i++) {
            const camp_t *c = &g_push_camp[i];
            if (c->t < from) continue;
            int64_t t = c->t + ri(r, 900);
            if (!rp(r, (alive(g, t) ? 0.08 : 0.015) * eng)) continue;
            session(g, t + (int64_t)(rexp(r) * 3600), M_BROWSE, 1, E_PUSH, c->id, NULL, 0, 0, 0);
        }
    }
}

/* ---- one person's life ------------------------------------------------------- */
static void gen_person(gen_t *g, const person_t *p)
{
    rng_t *r = &g->r;
    g->p = p;
    g->sb.len = 0;
    g->nev = 0;
    g->seq = 0;
    g->order_seq = 0;
    g->death_t = NEVER;
    g->min_t = p->acq_t + 1800;
    rng_seed(r, g_seed, p->pid, 22);
    if (p->visitor) {
        visitor_session(g, p->acq_t);
        return;
    }

    /* acquisition */
    if (p->anon) {
        session(g, p->acq_t, M_BROWSE, p->acq_app, p->acq_app ? E_DIRECT : pick_entry(g), NULL, NULL, 0, 0, 0);
    } else if (p->has_cust) {
        session(g, p->acq_t, M_SIGNUP, p->acq_app, p->acq_app ? E_DIRECT : pick_entry(g), NULL, NULL, 0, 0,
                F_ACCOUNT);
    } else if (p->has_loy) {
        ids_t d;
        ids_none(&d);
        d.loyalty = 0;
        double u = ru(r);
        d.email = u < 0.03 ? EM_JUNK + 2 : u < 0.05 ? EM_JUNK + 1 : form(g, 0.25);
        if (p->has_phone && rp(r, 0.6)) d.phone = form(g, 0.3);
        ev_begin(g, p->acq_t, CH_STORE, T_SIGNUP, &d);
        PSTR(g, "form", "loyalty");
        p_store(g, p->home_store);
        p_traits(g, p->acq_t);
        ev_end(g, NO_AMOUNT, S_POS);
    } else {
        session(g, p->acq_t, M_SIGNUP, 0, pick_entry(g), NULL, NULL, 0, 0, F_NEWSLETTER);
    }

    if (p->anon) { /* a few visits, then gone */
        double t = (double)p->acq_t;
        while (!rp(r, 0.4)) {
            t += 3600.0 + rexp(r) * 5.0 * DAY_S;
            if (t >= (double)g_end) break;
            int app = p->ndv > 0 && rp(r, 0.5);
            int entry = app ? E_DIRECT : pick_entry(g);
            int mode = rp(r, 0.9) ? M_BROWSE : M_CART;
            session(g, retime(g, (int64_t)t, TK_ONLINE), mode, app, entry, NULL, NULL, 0, 0, 0);
        }
        return;
    }

    /* BG/NBD purchase process: Poisson(lambda) purchases, dropout with prob p after each */
    if (p->lambda > 0) {
        double t = (double)p->acq_t;
        for (;;) {
            t += rexp(r) / p->lambda * WEEK_S;
            if (t >= (double)g_end) break;
            purchase_occasion(g, (int64_t)t);
            if (rp(r, p->pdrop)) { g->death_t = (int64_t)t; break; }
        }
    }
    /* browsing: Poisson(mu) sessions while alive, mu * DEAD_BROWSE after dropout */
    {
        double t = (double)g->min_t, death = (double)g->death_t;
        for (;;) {
            int live = t < death;
            double rate = live ? p->mu : p->mu * DEAD_BROWSE;
            if (rate < 1e-9) break;
            double nt = t + rexp(r) / rate * WEEK_S;
            if (live && nt > death) { t = death; continue; }
            t = nt;
            if (t >= (double)g_end) break;
            browse_occasion(g, (int64_t)t);
        }
    }
    /* store visits without a purchase */
    if (p->has_loy) {
        double t = (double)g->min_t, rate = 0.03 * p->engage;
        for (;;) {
            t += rexp(r) / rate * WEEK_S;
            if (t >= (double)g_end || t >= (double)g->death_t) break;
            int prod = rp(r, 0.5) ? pick_prod(g) : -1;
            store_visit(g, retime(g, (int64_t)t, TK_STORE), prod);
        }
    }
    campaigns(g);
    if (p->move_t != NEVER) profile_change(g, p->move_t);
    if (p->rename_t != NEVER) profile_change(g, p->rename_t);
    if (p->has_cust && rp(r, 0.05)) profile_change(g, g->min_t + (int64_t)(ru(r) * (double)(g_end - g->min_t)));
}

/* ---- output ------------------------------------------------------------------ */
typedef struct { FILE *f; const char *name; char *buf; size_t len, cap; } out_t;

static void die_io(const char *what, const char *name)
{
    int e = errno ? errno : EIO;
    fprintf(stderr, PROG ": %s %s: %s\n", what, name, strerror(e));
    exit(1);
}

static void out_flush(out_t *o)
{
    if (o->len) {
        errno = 0;
        if (fwrite(o->buf, 1, o->len, o->f) != o->len) die_io("cannot write", o->name);
        o->len = 0;
    }
}

static inline void out_put(out_t *o, const char *s, size_t n)
{
    if (o->len + n > o->cap) {
        out_flush(o);
        if (n > o->cap) {
            errno = 0;
            if (fwrite(s, 1, n, o->f) != n) die_io("cannot write", o->name);
            return;
        }
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void out_str(out_t *o, const char *s) { out_put(o, s, strlen(s)); }

static void out_open(out_t *o, const char *path)
{
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        o->name = "<stdout>";
    } else {
        errno = 0;
        o->f = fopen(path, "wb");
        if (!o->f) die_io("cannot open", path);
        o->name = path;
    }
    o->cap = (size_t)1 << 20;
    o->len = 0;
    o->buf = xrealloc(NULL, o->cap);
}

static void out_close(out_t *o)
{
    out_flush(o);
    errno = 0;
    if (fflush(o->f) != 0 || ferror(o->f)) die_io("cannot write", o->name);
    if (o->f != stdout) {
        errno = 0;
        if (fclose(o->f) != 0) die_io("cannot close", o->name);
    }
    free(o->buf);
    o->buf = NULL;
}

static void out_csv_value(out_t *o, const char *v)
{
    if (strpbrk(v, " ,\"")) {
        out_put(o, "\"", 1);
        out_str(o, v); /* values never contain a double quote */
        out_put(o, "\"", 1);
    } else {
        out_str(o, v);
    }
}

static void truth_row(out_t *o, const char *kind, const char *val, uint32_t pid, const char *flag)
{
    char num[16];
    out_str(o, kind);
    out_put(o, ",", 1);
    out_csv_value(o, val);
    out_put(o, ",", 1);
    if (pid) {
        snprintf(num, sizeof num, "%u", pid);
        out_str(o, num);
    }
    out_put(o, ",", 1);
    out_str(o, flag);
    out_put(o, "\n", 1);
}

static int ev_cmp(const void *a, const void *b)
{
    uint64_t x = ((const ev_t *)a)->key, y = ((const ev_t *)b)->key;
    return (x > y) - (x < y);
}

static int popcount32(uint32_t x)
{
    int n = 0;
    while (x) { x &= x - 1; n++; }
    return n;
}

/* ---- command line ------------------------------------------------------------ */
static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " [--events N] [--seed S] [--start YYYY-MM-DD] [--days D]\n"
               "                    [--visitor-share F] [--events-out FILE] [--truth-out FILE]\n"
               "                    [--persons-out FILE]\n");
}

static void bad_arg(const char *arg, const char *why)
{
    fprintf(stderr, PROG ": invalid argument %s: %s\n", arg, why);
    usage(stderr);
    exit(2);
}

static uint64_t parse_u64(const char *opt, const char *v, uint64_t max)
{
    if (!v || !*v || *v < '0' || *v > '9') bad_arg(opt, "expected a non-negative integer");
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end) bad_arg(opt, "expected a non-negative integer");
    if (x > max) bad_arg(opt, "value out of range");
    return (uint64_t)x;
}

int main(int argc, char **argv)
{
    uint64_t n_events = 10000;
    const char *start = "2025-01-01", *events_out = "-", *truth_out = NULL, *persons_out = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char name[32];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(stdout); return 0; }
        const char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) == 0 && eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            v = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        int known = !strcmp(name, "--events") || !strcmp(name, "--seed") || !strcmp(name, "--start") ||
                    !strcmp(name, "--days") || !strcmp(name, "--events-out") || !strcmp(name, "--truth-out") ||
                    !strcmp(name, "--persons-out") || !strcmp(name, "--visitor-share");
        if (!known) bad_arg(a, "unknown option");
        if (!v) {
            if (i + 1 >= argc) bad_arg(name, "missing value");
            v = argv[++i];
        }
        if (!strcmp(name, "--events")) n_events = parse_u64(name, v, 100000000000ULL);
        else if (!strcmp(name, "--seed")) g_seed = parse_u64(name, v, UINT64_MAX);
        else if (!strcmp(name, "--days")) {
            g_days = (int)parse_u64(name, v, 36500);
            if (g_days < 1) bad_arg(name, "must be between 1 and 36500");
        } else if (!strcmp(name, "--visitor-share")) {
            char *end;
            double x = 0.0;
            if (((*v >= '0' && *v <= '9') || *v == '.') && !strpbrk(v, "xX")) x = strtod(v, &end);
            else end = (char *)v;
            if (end == v || *end) bad_arg(name, "expected a number between 0 and 1");
            if (!(x >= 0.0 && x <= 1.0)) bad_arg(name, "must be between 0 and 1");
            g_visitor_share = x;
        } else if (!strcmp(name, "--start")) start = v;
        else if (!*v) bad_arg(name, "empty file name");
        else if (!strcmp(name, "--events-out")) events_out = v;
        else if (!strcmp(name, "--truth-out")) truth_out = v;
        else persons_out = v;
    }

    /* window */
    {
        int y, m, d, y2, m2, d2;
        if (strlen(start) != 10 || start[4] != '-' || start[7] != '-') bad_arg("--start", "expected YYYY-MM-DD");
        for (int i = 0; i < 10; i++)
            if (i != 4 && i != 7 && (start[i] < '0' || start[i] > '9')) bad_arg("--start", "expected YYYY-MM-DD");
        y = atoi(start); m = atoi(start + 5); d = atoi(start + 8);
        int64_t day0 = days_from_civil(y, m, d);
        civil_from_days(day0, &y2, &m2, &d2);
        if (y2 != y || m2 != m || d2 != d) bad_arg("--start", "not a valid date");
        if (y < 1970) bad_arg("--start", "year must be 1970 or later");
        civil_from_days(day0 + g_days, &y2, &m2, &d2);
        if (y2 > 9999) bad_arg("--days", "window ends after year 9999");
        g_start = day0 * DAY_S;
        g_end = g_start + (int64_t)g_days * DAY_S;
        g_start_year = y;
        g_daystr = xrealloc(NULL, (size_t)g_days * sizeof *g_daystr);
        for (int i = 0; i < g_days; i++) {
            civil_from_days(day0 + i, &y2, &m2, &d2);
            snprintf(g_daystr[i], sizeof g_daystr[i], "%04d-%02d-%02d ", y2, m2, d2);
        }
    }

    /* seed-dependent constants */
    g_ckey = mix64(g_seed ^ 0x636F6F6B69650000ULL);
    g_dkey = mix64(g_seed ^ 0x6465766963650000ULL);
    g_okey = mix64(g_seed ^ 0x6F72646572000000ULL);
    g_ph_b = mix64(g_seed + 1) % 100000000ULL;
    g_loy_b = mix64(g_seed + 2) % 10000000000ULL;
    g_cust_b = mix64(g_seed + 3) % 90000000ULL;
    g_hh_thresh = (uint32_t)(P_HH_SHARE * 4294967296.0);
    build_catalogue();
    {
        rng_t r;
        rng_seed(&r, g_seed, 0, 200);
        g_em_camp = make_campaigns(&r, &g_nem, 3.5, 8, "em");
        g_sms_camp = make_campaigns(&r, &g_nsms, 14.0, 12, "sms");
        g_push_camp = make_campaigns(&r, &g_npush, 5.0, 17, "push");
    }

    out_t eo, to, po;
    out_open(&eo, events_out);
    if (truth_out) { out_open(&to, truth_out); out_str(&to, "kind,value,person_id,flag\n"); }
    if (persons_out) {
        out_open(&po, persons_out);
        out_str(&po, "person_id,first_name,last_name,email,phone,loyalty_card,customer_id,lambda,p_dropout,acquired_at\n");
    }
    out_str(&eo, "occurred_at,channel,type,identifiers,properties,amount,source\n");

    gen_t g;
    memset(&g, 0, sizeof g);
    person_t per;
    uint32_t *usage = NULL;
    size_t ucap = 0;
    uint32_t npers = 0, junk = 0;
    uint64_t written = 0;
    while (written < n_events) {
        if (npers >= MAX_PID) {
            fprintf(stderr, PROG ": too many persons (more than %u); use fewer events\n", MAX_PID);
            return 1;
        }
        uint32_t pid = ++npers;
        make_person(pid, &per);
        gen_person(&g, &per);
        qsort(g.ev, g.nev, sizeof *g.ev, ev_cmp);
        if (pid + 2 > ucap) {
            size_t nc = ucap ? 2 * ucap : 1 << 16;
            usage = xrealloc(usage, nc * sizeof *usage);
            memset(usage + ucap, 0, (nc - ucap) * sizeof *usage);
            ucap = nc;
        }
        uint64_t take = g.nev;
        if (take > n_events - written) take = n_events - written;
        uint32_t bits = 0;
        for (uint64_t i = 0; i < take; i++) {
            const ev_t *e = &g.ev[i];
            out_put(&eo, g.sb.p + e->off, e->len);
            bits |= e->bits;
            junk |= e->junk;
        }
        usage[pid] = bits | (per.share == SH_USE_DEVICE ? B_SHDEV : 0);
        written += take;
    }
    out_close(&eo);

    /* ground truth and persons */
    uint64_t nids = (uint64_t)popcount32(junk);
    for (uint32_t pid = 1; pid <= npers; pid++) {
        uint32_t bits = usage[pid];
        nids += (uint64_t)popcount32(bits & B_USAGE_MASK);
        /* a shared cookie/device is listed with its owner, unless only the partner used it */
        if ((bits & B_SHARED) && !(usage[pid - 1] & ((bits & B_SHDEV) ? B_DEVICE(0) : B_COOKIE(0)))) nids++;
        if (!truth_out && !persons_out) continue;
        make_person(pid, &per);
        const person_t *p = &per;
        if (truth_out) {
            uint32_t pbits = (p->share == SH_OWN_COOKIE || p->share == SH_OWN_DEVICE) ? usage[pid + 1] : 0;
            for (int i = 0; i < p->nck; i++) {
                int ou = (bits & B_COOKIE(i)) != 0;
                int pu = p->share == SH_OWN_COOKIE && i == 0 && (pbits & B_SHARED);
                if (ou && pu) truth_row(&to, "cookie", p->ck[i], 0, "shared");
                else if (ou) truth_row(&to, "cookie", p->ck[i], pid, "");
                else if (pu) truth_row(&to, "cookie", p->ck[i], pid + 1, "");
            }
            for (int i = 0; i < p->ndv; i++) {
                int ou = (bits & B_DEVICE(i)) != 0;
                int pu = p->share == SH_OWN_DEVICE && i == 0 && (pbits & B_SHARED);
                if (ou && pu) truth_row(&to, "device_id", p->dv[i], 0, "shared");
                else if (ou) truth_row(&to, "device_id", p->dv[i], pid, "");
                else if (pu) truth_row(&to, "device_id", p->dv[i], pid + 1, "");
            }
            for (int v = 0; v < 5; v++)
                if (bits & B_EMAIL(v)) truth_row(&to, "email", p->em[v], pid, "");
            for (int v = 0; v < 5; v++)
                if (bits & B_PHONE(v)) truth_row(&to, "phone", p->ph[v], pid, "");
            if (bits & B_LOY) truth_row(&to, "loyalty_card", p->loy, pid, "");
            if (bits & B_CUST) truth_row(&to, "customer_id", p->cust, pid, "");
        }
        if (persons_out) {
            char ts[32], line[512];
            sb_t tb = {ts, 0, sizeof ts};
            sb_ts(&tb, p->acq_t);
            ts[tb.len] = 0;
            int n = snprintf(line, sizeof line, "%u,%s,%s,%s,%s,%s,%s,%.6f,%.6f,%s\n",
                             pid, p->visitor ? "" : FIRST[p->fn], p->visitor ? "" : LAST[p->ln],
                             p->has_email ? p->em[0] : "", p->has_phone ? p->ph[0] : "", p->loy, p->cust,
                             p->lambda, p->pdrop, ts);
            out_put(&po, line, (size_t)n);
        }
    }
    if (truth_out) {
        static const char *const JK[NJUNK] = {"email", "email", "email", "phone", "phone", "phone",
                                              "loyalty_card", "cookie", "cookie"};
        const char *JV[NJUNK] = {JUNK_EMAIL[0], JUNK_EMAIL[1], JUNK_EMAIL[2], JUNK_PHONE[0], JUNK_PHONE[1],
                                 JUNK_PHONE[2], JUNK_LOYALTY, JUNK_COOKIE[0], JUNK_COOKIE[1]};
        for (int j = 0; j < NJUNK; j++)
            if (junk & (1u << j)) truth_row(&to, JK[j], JV[j], 0, "junk");
        out_close(&to);
    }
    if (persons_out) out_close(&po);

    fprintf(stderr, PROG ": %llu events, %u persons, %llu identifiers (seed %llu)\n",
            (unsigned long long)written, npers, (unsigned long long)nids, (unsigned long long)g_seed);
    free(usage);
    free(g.ev);
    free(g.sb.p);
    free(g_daystr);
    free(g_em_camp);
    free(g_sms_camp);
    free(g_push_camp);
    return 0;
}
