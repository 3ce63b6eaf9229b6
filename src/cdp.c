/*
 * cdp.c
 *	  Entry point of the cdp extension: module magic and settings.
 *
 * The library may be loaded on demand or through shared_preload_libraries,
 * which registers the background worker (worker.c).  All settings are
 * defined here, in alphabetical order.
 */
#include "cdp.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "normalize.h"
#include "pgtime.h"
#include "utils/acl.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

static bool		cdp_consent_required = false;
char	   *cdp_default_country = NULL;
static char	   *cdp_default_timezone = NULL;
static bool		cdp_mask_contact_points = true;
double		cdp_max_amount = 1e12;
int			cdp_max_clock_skew = 86400;
static double		cdp_offer_prior_alpha = 1;
static double		cdp_offer_prior_beta = 1;
static int			cdp_offer_seed = -1;
static int			cdp_offer_success = 0;
static int			cdp_propensity_draws = 32;
int			cdp_session_timeout = 1800;
bool		cdp_stitch_on_ingest = true;
bool		cdp_refuse_erased = true;
static int			cdp_outbox_retention = 7 * 86400;
static int			cdp_outbox_max_attempts = 5;
static int			cdp_outbox_retry_delay = 60;
int			cdp_stitch_defer_rows = 10000;
int			cdp_unknown_event_types = CDP_UNKNOWN_TYPES_WARN;

static const struct config_enum_entry unknown_type_options[] = {
	{"accept", CDP_UNKNOWN_TYPES_ACCEPT, false},
	{"warn", CDP_UNKNOWN_TYPES_WARN, false},
	{"quarantine", CDP_UNKNOWN_TYPES_QUARANTINE, false},
	{NULL, 0, false}
};

static const struct config_enum_entry offer_success_options[] = {
	{"converted", 0, false},
	{"clicked", 1, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/* Accepts an empty country or one the phone normalizer knows. */
static bool
check_default_country(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || cdp_phone_country_known(*newval))
		return true;
	GUC_check_errdetail("\"%s\" is not an ISO 3166 alpha-2 country code that cdp knows.", *newval);
	return false;
}

/* Accepts a time zone name PostgreSQL knows. */
static bool
check_default_timezone(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] != '\0' && pg_tzset(*newval) != NULL)
		return true;
	GUC_check_errdetail("\"%s\" is not a time zone name PostgreSQL knows (see pg_timezone_names).",
						*newval == NULL ? "" : *newval);
	return false;
}

/* Defines the settings of the cdp.* namespace. */
void
_PG_init(void)
{
	DefineCustomBoolVariable("cdp.consent_required",
							 gettext_noop("Marketing contacts need a recorded opt-in (cdp.consents)."),
							 gettext_noop("Off: contact is allowed until revoked (opt-out). Transactional and mandatory messages never need an opt-in."),
							 &cdp_consent_required,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("cdp.default_country",
							   gettext_noop("Country of phone numbers written without a country code (ISO 3166 alpha-2)."),
							   gettext_noop("Empty: such numbers are refused. Set it for the whole database: identity resolution must normalize alike in every session."),
							   &cdp_default_country,
							   "",
							   PGC_SUSET,
							   0,
							   check_default_country, NULL, NULL);

	DefineCustomStringVariable("cdp.default_timezone",
							   gettext_noop("Time zone of quiet hours for a person without a valid timezone trait."),
							   NULL,
							   &cdp_default_timezone,
							   "UTC",
							   PGC_USERSET,
							   0,
							   check_default_timezone, NULL, NULL);

	DefineCustomBoolVariable("cdp.mask_contact_points",
							 gettext_noop("Views that show identifiers mask them for roles other than cdp_admin and cdp_app."),
							 gettext_noop("As a***@orange.fr or +33*******78, for a caller who is not a superuser and not a member of cdp_admin or cdp_app (an analyst). Off: every caller sees them raw. Only a superuser may change it, for a role with ALTER ROLE ... SET."),
							 &cdp_mask_contact_points,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("cdp.max_amount",
							 gettext_noop("Largest absolute amount an event may carry."),
							 gettext_noop("Events with a larger purchase value or refund are rejected as amount_out_of_range."),
							 &cdp_max_amount,
							 1e12, 1, 1e15,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.max_clock_skew",
							gettext_noop("How far in the future of its arrival an event may have occurred."),
							gettext_noop("Events further in the future are rejected as future_occurred_at."),
							&cdp_max_clock_skew,
							86400, 0, 366 * 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomRealVariable("cdp.offer_prior_alpha",
							 gettext_noop("Alpha of the Beta prior of every offer's conversion rate (pseudo-successes)."),
							 NULL,
							 &cdp_offer_prior_alpha,
							 1, 0.001, 1e6,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("cdp.offer_prior_beta",
							 gettext_noop("Beta of the Beta prior of every offer's conversion rate (pseudo-failures)."),
							 NULL,
							 &cdp_offer_prior_beta,
							 1, 0.001, 1e6,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.offer_seed",
							gettext_noop("Seed of the Thompson draws of offer decisions; -1 for random draws."),
							gettext_noop("With a seed, a decision's draws depend only on it, the profile, the channel, the time and what learning knows: reproducible."),
							&cdp_offer_seed,
							-1, -1, PG_INT32_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("cdp.offer_success",
							 gettext_noop("Outcome that counts as a success in offer learning: converted or clicked."),
							 NULL,
							 &cdp_offer_success,
							 0,
							 offer_success_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.propensity_draws",
							gettext_noop("Extra Thompson rounds that estimate the probability of each decision (cdp.contacts.action_prob); 0: not estimated."),
							NULL,
							&cdp_propensity_draws,
							32, 0, 10000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.session_timeout",
							gettext_noop("Inactivity after which a profile's next event on a channel starts a new session."),
							gettext_noop("Used by cdp.sessions and cdp.session_no; a pause of exactly this long starts a new session."),
							&cdp_session_timeout,
							1800, 1, 7 * 86400,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("cdp.stitch_on_ingest",
							 gettext_noop("Stitch identities as events are stored."),
							 gettext_noop("Off: events are stored without identity work; run cdp.rebuild_identities() later."),
							 &cdp_stitch_on_ingest,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("cdp.unknown_event_types",
							 gettext_noop("What happens to an event whose type is not registered in cdp.event_types."),
							 gettext_noop("accept: stored silently; warn: stored, with one warning per statement naming the types; quarantine: rejected as unknown_type."),
							 &cdp_unknown_event_types,
							 CDP_UNKNOWN_TYPES_WARN,
							 unknown_type_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("cdp.worker_database",
							   gettext_noop("Database the cdp background worker works in."),
							   gettext_noop("On a change (reload), the worker restarts connected to it; the worker exists only when cdp is in shared_preload_libraries."),
							   &cdp_worker_database,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("cdp.worker_enabled",
							 gettext_noop("The cdp background worker stitches bulk loads and keeps the profile store and journeys current."),
							 gettext_noop("Off: the worker waits; loads stitch their own events, the store and journeys advance when cdp.sync and cdp.detect_journey_breaks run. Needs cdp in shared_preload_libraries."),
							 &cdp_worker_enabled,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.worker_naptime",
							gettext_noop("How long the cdp background worker sleeps when no new events wake it."),
							gettext_noop("A transaction that stitched events wakes it at commit; due journey transitions are applied within this time."),
							&cdp_worker_naptime,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.worker_batch_size",
							gettext_noop("Events the cdp background worker folds into the profile store per transaction."),
							gettext_noop("Whole stitch batches are taken until they hold this many events (at least one batch)."),
							&cdp_worker_batch_size,
							100000, 1000, 100000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.worker_stitch_batch",
							gettext_noop("Events of bulk loads the cdp background worker stitches per transaction."),
							gettext_noop("Each such transaction holds the stitching lock, which cdp.track and small loads wait for: small units keep them fast. Queue rows hold at most 5,000 events and are taken whole."),
							&cdp_worker_stitch_batch,
							5000, 1000, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.stitch_defer_rows",
							gettext_noop("A loading statement that stores at least this many events leaves their stitching to the cdp background worker."),
							gettext_noop("Only while the worker serves the database; the statement then never waits for the stitching lock, and its events are stitched after its commit, in short transactions. 0: every statement stitches its own events."),
							&cdp_stitch_defer_rows,
							10000, 0, PG_INT32_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("cdp.refuse_erased",
							 gettext_noop("Quarantine events that carry an identifier erased by cdp.forget."),
							 gettext_noop("Their reason_code is erased. Off, such events are stored and the person is collected again: only after new consent."),
							 &cdp_refuse_erased,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.outbox_retention",
							gettext_noop("How long delivered and dead messages stay in cdp.outbox."),
							gettext_noop("cdp.purge_outbox deletes them once older than this (the cdp-outbox job of cdp.schedule_jobs runs it); pending and claimed messages are never deleted."),
							&cdp_outbox_retention,
							7 * 86400, 60, PG_INT32_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.outbox_max_attempts",
							gettext_noop("Deliveries of an outbox message tried before it is dead."),
							gettext_noop("cdp.mark_failed makes a message dead (dead-letter) after this many attempts, and pending again before."),
							&cdp_outbox_max_attempts,
							5, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp.outbox_retry_delay",
							gettext_noop("Wait before an outbox message that failed is handed out again."),
							gettext_noop("Doubled at each further attempt (exponential backoff), at most a day."),
							&cdp_outbox_retry_delay,
							60, 0, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("cdp");

	if (process_shared_preload_libraries_in_progress)
		cdp_worker_register();
}

/* Whether the calling role is a member (with its privileges) of a role
 * named name; false when no such role exists. */
static bool
has_privs_of_named_role(const char *name)
{
	Oid			role = get_role_oid(name, true);

	return OidIsValid(role) && has_privs_of_role(GetUserId(), role);
}

PG_FUNCTION_INFO_V1(cdp_contact_points_visible);

/*
 * cdp.contact_points_visible(): whether the views that show identifiers
 * show them raw to the current role.  In C so that calling it loads the
 * library, which defines cdp.mask_contact_points (PGC_SUSET) and drops a
 * value an unprivileged role set before the load.
 */
Datum
cdp_contact_points_visible(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(!cdp_mask_contact_points || superuser() ||
				   has_privs_of_named_role("cdp_admin") || has_privs_of_named_role("cdp_app"));
}
