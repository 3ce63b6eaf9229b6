
-- ---------------------------------------------------------------------------
-- Offers (src/offers.c, src/core/offer_rules.c, src/core/bandit.c): the
-- catalogue, contact-pressure policies, consents and the contact history;
-- the next best offer for a person, a channel and a moment.
--
-- A decision reads the person's facts (profile store, scores, open journey
-- breaks, consents, contacts), removes the offers that a rule, a cap, a
-- consent, a quiet hour or a budget forbids, draws a conversion propensity
-- per remaining offer from its Beta posterior for the person's segment
-- (Thompson sampling), and picks the best propensity x value x weight less
-- the channel's contact cost.  cdp.decide does all of it and records the
-- contact in one transaction, under a per-person lock, so that concurrent
-- decisions never break a cap or a budget.  Contacts are kept per contact
-- point (the identifier reached): caps count the contacts of every
-- identifier the person holds now, so a merge cannot reset them and an
-- unmerge gives each part the contacts made through its own identifiers.
-- ---------------------------------------------------------------------------

CREATE FUNCTION cdp.check_eligibility(rule jsonb) RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_check_eligibility' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION cdp.check_eligibility(jsonb) IS 'Checks an eligibility rule: true, or an error naming the path within the rule and what is wrong';

CREATE TABLE cdp.offers (
	offer_id        text        PRIMARY KEY CHECK (offer_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
	name            text        NOT NULL,
	channels        text[],
	value           numeric     NOT NULL DEFAULT 1 CHECK (value >= 0 AND value < 1e300),
	weight          float8      NOT NULL DEFAULT 1 CHECK (weight >= 0 AND weight < 'infinity'),
	valid_from      timestamptz,
	valid_until     timestamptz,
	max_per_profile integer     CHECK (max_per_profile > 0),
	cap_period      interval    CHECK (cap_period > '0'),
	budget          bigint      CHECK (budget >= 0),
	fallback        boolean     NOT NULL DEFAULT false,
	message_class   text        NOT NULL DEFAULT 'marketing' CHECK (message_class IN ('marketing', 'transactional', 'mandatory')),
	holdout         float8      NOT NULL DEFAULT 0 CHECK (holdout >= 0 AND holdout < 1),
	eligibility     jsonb       CHECK (cdp.check_eligibility(eligibility)),
	payload         jsonb,
	active          boolean     NOT NULL DEFAULT true,
	created_at      timestamptz NOT NULL DEFAULT now(),
	CHECK (valid_until > valid_from),
	CHECK (cap_period IS NULL OR max_per_profile IS NOT NULL)
);
COMMENT ON TABLE cdp.offers IS 'The offer catalogue: what may be proposed, to whom (eligibility), on which channels, when, how often and how many';
COMMENT ON COLUMN cdp.offers.offer_id IS 'Offer key (letters, digits, _ . : -)';
COMMENT ON COLUMN cdp.offers.name IS 'What the offer is';
COMMENT ON COLUMN cdp.offers.channels IS 'Channels it may be sent on (keys of cdp.channels); NULL for every channel';
COMMENT ON COLUMN cdp.offers.value IS 'Value of a conversion (the margin it brings); variants (cdp.offer_variants) have their own';
COMMENT ON COLUMN cdp.offers.weight IS 'Business weight multiplying its score (1: neutral)';
COMMENT ON COLUMN cdp.offers.valid_from IS 'First moment it may be chosen (NULL: always)';
COMMENT ON COLUMN cdp.offers.valid_until IS 'Moment from which it may no longer be chosen (NULL: never ends)';
COMMENT ON COLUMN cdp.offers.max_per_profile IS 'Most times one person may be sent it (within cap_period, or ever); NULL: no limit';
COMMENT ON COLUMN cdp.offers.cap_period IS 'Rolling period of max_per_profile (NULL: ever)';
COMMENT ON COLUMN cdp.offers.budget IS 'Total quantity available (sent offers); NULL: unlimited. cdp.offer_usage counts what is used';
COMMENT ON COLUMN cdp.offers.fallback IS 'Chosen only when no other offer is eligible';
COMMENT ON COLUMN cdp.offers.message_class IS 'marketing (counted and capped, needs consent), transactional (neither counted nor capped; stopped only by an opt-out of purpose all), mandatory (bypasses caps and quiet hours, never an opt-out)';
COMMENT ON COLUMN cdp.offers.holdout IS 'Share of the decisions that choose it which deliberately send nothing (control group for uplift)';
COMMENT ON COLUMN cdp.offers.eligibility IS 'Who may get it: a rule of the JSON language described in the README (validated when written); NULL: everyone';
COMMENT ON COLUMN cdp.offers.payload IS 'What the channel needs to render it (free JSON, returned by cdp.decide)';
COMMENT ON COLUMN cdp.offers.active IS 'False to withdraw it without deleting its history';
COMMENT ON COLUMN cdp.offers.created_at IS 'When it was added';

CREATE TABLE cdp.offer_variants (
	offer_id text    NOT NULL REFERENCES cdp.offers ON UPDATE CASCADE ON DELETE CASCADE,
	variant  text    NOT NULL CHECK (variant ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
	value    numeric NOT NULL CHECK (value >= 0 AND value < 1e300),
	payload  jsonb,
	PRIMARY KEY (offer_id, variant)
);
COMMENT ON TABLE cdp.offer_variants IS 'Variants of an offer, e.g. discount levels, each with its own value (the margin after the discount); learning finds the one that pays best per segment';
COMMENT ON COLUMN cdp.offer_variants.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.offer_variants.variant IS 'Variant key, e.g. 10pct';
COMMENT ON COLUMN cdp.offer_variants.value IS 'Value of a conversion of this variant';
COMMENT ON COLUMN cdp.offer_variants.payload IS 'What the channel needs to render it (merged over the offer''s payload)';

CREATE TABLE cdp.offer_usage (
	offer_id text   PRIMARY KEY REFERENCES cdp.offers ON UPDATE CASCADE ON DELETE CASCADE,
	used     bigint NOT NULL DEFAULT 0 CHECK (used >= 0)
);
COMMENT ON TABLE cdp.offer_usage IS 'Quantity of each budgeted offer used (sent); a decision takes one unit only while used < budget, under the row''s lock';
COMMENT ON COLUMN cdp.offer_usage.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.offer_usage.used IS 'Units used';

CREATE TABLE cdp.contact_policies (
	channel        text     PRIMARY KEY,
	max_contacts   integer  CHECK (max_contacts >= 0),
	per            interval CHECK (per > '0'),
	min_gap        interval CHECK (min_gap > '0'),
	quiet_start    time,
	quiet_end      time,
	max_ignored    integer  CHECK (max_ignored > 0),
	ignored_window interval CHECK (ignored_window > '0'),
	contact_cost   numeric  NOT NULL DEFAULT 0 CHECK (contact_cost >= 0 AND contact_cost < 1e300),
	contact_kinds  text[],
	CHECK ((max_contacts IS NULL) = (per IS NULL)),
	CHECK ((quiet_start IS NULL) = (quiet_end IS NULL) AND quiet_start IS DISTINCT FROM quiet_end OR quiet_start IS NULL),
	CHECK ((max_ignored IS NULL) = (ignored_window IS NULL)),
	CHECK (channel <> '*' OR (contact_cost = 0 AND contact_kinds IS NULL))
);
COMMENT ON TABLE cdp.contact_policies IS 'Contact pressure per channel (channel * for all channels together): caps, minimum gap, quiet hours, suppression after ignored contacts; and the cost of a contact and the identifier kinds that reach a person on the channel';
COMMENT ON COLUMN cdp.contact_policies.channel IS 'A key of cdp.channels, or * for the global policy across all channels';
COMMENT ON COLUMN cdp.contact_policies.max_contacts IS 'Most marketing contacts in any rolling period per (NULL: no cap)';
COMMENT ON COLUMN cdp.contact_policies.per IS 'The rolling period of max_contacts';
COMMENT ON COLUMN cdp.contact_policies.min_gap IS 'Least time between two marketing contacts';
COMMENT ON COLUMN cdp.contact_policies.quiet_start IS 'Start of the quiet hours, in the person''s time zone (trait timezone, else cdp.default_timezone); may wrap midnight';
COMMENT ON COLUMN cdp.contact_policies.quiet_end IS 'End of the quiet hours';
COMMENT ON COLUMN cdp.contact_policies.max_ignored IS 'Marketing is suppressed once this many contacts were ignored within ignored_window';
COMMENT ON COLUMN cdp.contact_policies.ignored_window IS 'The window of max_ignored';
COMMENT ON COLUMN cdp.contact_policies.contact_cost IS 'Cost of one contact on the channel, subtracted from an offer''s expected value (a call or a letter costs far more than an e-mail)';
COMMENT ON COLUMN cdp.contact_policies.contact_kinds IS 'Identifier kinds that reach a person on the channel, in order of preference; NULL: e-mail for email, phone for sms and call_center, device_id for push, any identifier elsewhere';

CREATE SEQUENCE cdp.consents_consent_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.consents_consent_id_seq IS 'Consent record numbers';
CREATE TABLE cdp.consents (
	consent_id  bigint      PRIMARY KEY DEFAULT nextval('cdp.consents_consent_id_seq'),
	kind        text,
	value       text,
	profile_id  bigint,
	channel     text        NOT NULL,
	purpose     text        NOT NULL DEFAULT 'marketing' CHECK (purpose IN ('marketing', 'all')),
	granted     boolean     NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	source      text,
	event_id    bigint,
	CHECK ((kind IS NULL) = (value IS NULL) AND (kind IS NULL) <> (profile_id IS NULL))
);
ALTER SEQUENCE cdp.consents_consent_id_seq OWNED BY cdp.consents.consent_id;
CREATE INDEX ON cdp.consents (kind, value);
CREATE INDEX ON cdp.consents (profile_id) WHERE profile_id IS NOT NULL;
COMMENT ON TABLE cdp.consents IS 'Consent (granted) or opt-out (not granted) per contact point (an identifier) or per profile, channel and purpose, with time and source; the latest record of each contact point or profile counts, and across a person the most restrictive wins';
COMMENT ON COLUMN cdp.consents.consent_id IS 'Record number';
COMMENT ON COLUMN cdp.consents.kind IS 'Identifier kind of the contact point (with value), or NULL for a profile-wide record';
COMMENT ON COLUMN cdp.consents.value IS 'Its normalized value';
COMMENT ON COLUMN cdp.consents.profile_id IS 'Profile of a profile-wide record (it follows merges)';
COMMENT ON COLUMN cdp.consents.channel IS 'A key of cdp.channels, or * for every channel';
COMMENT ON COLUMN cdp.consents.purpose IS 'marketing, or all (transactional messages too)';
COMMENT ON COLUMN cdp.consents.granted IS 'True: opt-in; false: opt-out';
COMMENT ON COLUMN cdp.consents.recorded_at IS 'When it was given or withdrawn';
COMMENT ON COLUMN cdp.consents.source IS 'Where it came from (preference centre, unsubscribe link, call, ...)';
COMMENT ON COLUMN cdp.consents.event_id IS 'The subscribe or unsubscribe event that recorded it, if any';

CREATE SEQUENCE cdp.contacts_contact_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.contacts_contact_id_seq IS 'Contact ids';
CREATE TABLE cdp.contacts (
	contact_id    bigint      PRIMARY KEY DEFAULT nextval('cdp.contacts_contact_id_seq'),
	profile_id    bigint      NOT NULL,
	identifier_id bigint,
	offer_id      text,
	variant       text,
	channel       text        NOT NULL,
	decided_at    timestamptz NOT NULL,
	message_class text,
	status        text        NOT NULL CHECK (status IN ('sent', 'holdout', 'suppressed', 'no_offer')),
	reason        text,
	segment       text        NOT NULL DEFAULT '',
	score         float8,
	propensity    float8,
	action_prob   float8,
	value         numeric,
	campaign_id   bigint,
	outcome       text        CHECK (outcome IN ('shown', 'opened', 'clicked', 'converted', 'ignored', 'complained')),
	outcome_at    timestamptz,
	reward        numeric,
	success       boolean     NOT NULL DEFAULT false
);
ALTER SEQUENCE cdp.contacts_contact_id_seq OWNED BY cdp.contacts.contact_id;
CREATE INDEX ON cdp.contacts (identifier_id, decided_at);
CREATE INDEX ON cdp.contacts (campaign_id) WHERE campaign_id IS NOT NULL;
COMMENT ON TABLE cdp.contacts IS 'Every decision of cdp.decide and cdp.plan_campaign, holdouts and refusals included, and its outcome: the contact history that caps count and learning reads';
COMMENT ON COLUMN cdp.contacts.contact_id IS 'Contact id (pass it to cdp.record_outcome)';
COMMENT ON COLUMN cdp.contacts.profile_id IS 'Live profile decided for';
COMMENT ON COLUMN cdp.contacts.identifier_id IS 'Contact point reached (cdp.identifiers); caps count the contacts of the identifiers a person holds now';
COMMENT ON COLUMN cdp.contacts.offer_id IS 'Offer chosen (NULL when nothing may be sent)';
COMMENT ON COLUMN cdp.contacts.variant IS 'Its variant, if it has variants';
COMMENT ON COLUMN cdp.contacts.channel IS 'Channel';
COMMENT ON COLUMN cdp.contacts.decided_at IS 'Moment of the decision (the at argument)';
COMMENT ON COLUMN cdp.contacts.message_class IS 'The offer''s message class';
COMMENT ON COLUMN cdp.contacts.status IS 'sent; holdout (chosen, deliberately not sent: the control group); suppressed (a pressure rule or consent forbade every offer); no_offer (no offer eligible)';
COMMENT ON COLUMN cdp.contacts.reason IS 'Why this offer, or why nothing';
COMMENT ON COLUMN cdp.contacts.segment IS 'The person''s RFM segment at the decision (the learning context; empty when unscored)';
COMMENT ON COLUMN cdp.contacts.score IS 'propensity x value x weight - contact cost';
COMMENT ON COLUMN cdp.contacts.propensity IS 'Conversion propensity drawn from the offer''s Beta posterior for the segment';
COMMENT ON COLUMN cdp.contacts.action_prob IS 'Probability that the policy chose this offer (Monte Carlo over the posteriors, times 1 - holdout or holdout), for off-policy evaluation';
COMMENT ON COLUMN cdp.contacts.value IS 'Value of a conversion of the offer or variant';
COMMENT ON COLUMN cdp.contacts.campaign_id IS 'The cdp.plan_campaign run that made it';
COMMENT ON COLUMN cdp.contacts.outcome IS 'Last outcome recorded: shown, opened, clicked, converted, ignored or complained';
COMMENT ON COLUMN cdp.contacts.outcome_at IS 'When';
COMMENT ON COLUMN cdp.contacts.reward IS 'Value of the conversion, if given';
COMMENT ON COLUMN cdp.contacts.success IS 'Whether an outcome reached cdp.offer_success (counted once in the offer''s learning)';

CREATE TABLE cdp.offer_stats (
	offer_id  text    NOT NULL,
	variant   text    NOT NULL DEFAULT '',
	segment   text    NOT NULL DEFAULT '',
	shard     integer NOT NULL DEFAULT 0,
	trials    bigint  NOT NULL DEFAULT 0,
	successes bigint  NOT NULL DEFAULT 0,
	PRIMARY KEY (offer_id, variant, segment, shard)
);
COMMENT ON TABLE cdp.offer_stats IS 'What learning knows: per offer, variant and segment, offers sent (trials) and successes; the Beta posterior is (cdp.offer_prior_alpha + successes, cdp.offer_prior_beta + trials - successes). A decision adds to a row no other transaction holds, or to a new shard: concurrent decisions never queue on one row (sum the shards)';
COMMENT ON COLUMN cdp.offer_stats.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.offer_stats.variant IS 'Variant (empty: none)';
COMMENT ON COLUMN cdp.offer_stats.segment IS 'RFM segment (empty: unscored)';
COMMENT ON COLUMN cdp.offer_stats.shard IS 'Shard: the backend id that opened the row (sum over shards)';
COMMENT ON COLUMN cdp.offer_stats.trials IS 'Offers sent';
COMMENT ON COLUMN cdp.offer_stats.successes IS 'Of which reached cdp.offer_success';

CREATE SEQUENCE cdp.campaigns_campaign_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.campaigns_campaign_id_seq IS 'Campaign run numbers';
CREATE TABLE cdp.campaigns (
	campaign_id  bigint      PRIMARY KEY DEFAULT nextval('cdp.campaigns_campaign_id_seq'),
	channel      text,
	audience     jsonb       NOT NULL,
	planned_at   timestamptz NOT NULL,
	started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
	finished_at  timestamptz,
	profiles     bigint,
	chosen       bigint,
	holdouts     bigint,
	suppressed   jsonb,
	without_offer bigint
);
ALTER SEQUENCE cdp.campaigns_campaign_id_seq OWNED BY cdp.campaigns.campaign_id;
COMMENT ON TABLE cdp.campaigns IS 'Runs of cdp.plan_campaign and what they decided';
COMMENT ON COLUMN cdp.campaigns.campaign_id IS 'Run';
COMMENT ON COLUMN cdp.campaigns.channel IS 'Channel (NULL: the best per person)';
COMMENT ON COLUMN cdp.campaigns.audience IS 'The audience as given';
COMMENT ON COLUMN cdp.campaigns.planned_at IS 'The moment decided for (at)';
COMMENT ON COLUMN cdp.campaigns.started_at IS 'When the run started';
COMMENT ON COLUMN cdp.campaigns.finished_at IS 'When it finished';
COMMENT ON COLUMN cdp.campaigns.profiles IS 'People in the audience';
COMMENT ON COLUMN cdp.campaigns.chosen IS 'People sent an offer';
COMMENT ON COLUMN cdp.campaigns.holdouts IS 'People held out (control group)';
COMMENT ON COLUMN cdp.campaigns.suppressed IS 'People suppressed, by reason: {"quiet hours": 12, ...}';
COMMENT ON COLUMN cdp.campaigns.without_offer IS 'People with no eligible offer';

SELECT pg_catalog.pg_extension_config_dump('cdp.offers', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.offer_variants', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.offer_usage', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.contact_policies', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.consents', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.consents_consent_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.contacts', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.contacts_contact_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.offer_stats', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.campaigns', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.campaigns_campaign_id_seq', '');

-- Configuration is checked when written: channels of offers and policies,
-- identifier kinds of policies, the rules (CHECK above, in C).
CREATE FUNCTION cdp.offers_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bad text;
BEGIN
	IF TG_TABLE_NAME = 'offers' THEN
		SELECT c INTO bad FROM unnest(NEW.channels) c
		WHERE c IS NULL OR NOT EXISTS (SELECT FROM cdp.channels k WHERE k.channel = c) LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'offer "%": unknown channel "%"', NEW.offer_id, bad
				USING ERRCODE = 'foreign_key_violation', HINT = 'Channels are the keys of cdp.channels.';
		END IF;
		RETURN NEW;
	END IF;
	-- a contact policy or a consent: a channel, or * for all
	IF NEW.channel <> '*' AND NOT EXISTS (SELECT FROM cdp.channels k WHERE k.channel = NEW.channel) THEN
		RAISE EXCEPTION '%: unknown channel "%"', CASE TG_TABLE_NAME WHEN 'consents' THEN 'consent' ELSE 'contact policy' END, NEW.channel
			USING ERRCODE = 'foreign_key_violation', HINT = 'A key of cdp.channels, or * for all channels.';
	END IF;
	IF TG_TABLE_NAME = 'contact_policies' THEN
		SELECT c INTO bad FROM unnest(NEW.contact_kinds) c
		WHERE c IS NULL OR NOT EXISTS (SELECT FROM cdp.identity_rules r WHERE r.kind = c) LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'contact policy of "%": unknown identifier kind "%"', NEW.channel, bad
				USING ERRCODE = 'foreign_key_violation', HINT = 'Kinds are the keys of cdp.identity_rules.';
		END IF;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cdp.offers_check() IS 'Trigger: refuses an offer, a contact policy or a consent naming an unknown channel, or a policy naming an unknown identifier kind';
CREATE TRIGGER offers_check BEFORE INSERT OR UPDATE ON cdp.offers
	FOR EACH ROW EXECUTE FUNCTION cdp.offers_check();
CREATE TRIGGER contact_policies_check BEFORE INSERT OR UPDATE ON cdp.contact_policies
	FOR EACH ROW EXECUTE FUNCTION cdp.offers_check();

-- usage rows need their offer first: after the row is in
CREATE FUNCTION cdp.offer_usage_open() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.budget IS NOT NULL THEN
		INSERT INTO cdp.offer_usage (offer_id) VALUES (NEW.offer_id) ON CONFLICT DO NOTHING;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.offer_usage_open() IS 'Trigger: opens the usage counter of a budgeted offer';
CREATE TRIGGER offer_usage_open AFTER INSERT OR UPDATE OF budget ON cdp.offers
	FOR EACH ROW EXECUTE FUNCTION cdp.offer_usage_open();

CREATE TRIGGER consents_check BEFORE INSERT OR UPDATE ON cdp.consents
	FOR EACH ROW EXECUTE FUNCTION cdp.offers_check();

-- ---------------------------------------------------------------------------
-- Consent.
-- ---------------------------------------------------------------------------

CREATE FUNCTION cdp.set_consent(kind text, value text, channel text, granted boolean,
	purpose text DEFAULT 'marketing', source text DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	norm text;
	why text;
	id bigint;
BEGIN
	SELECT c.normalized, c.reason INTO norm, why FROM cdp.check_identifier(kind, value) c;
	IF norm IS NULL THEN
		RAISE EXCEPTION 'consent: identifier % "%" is not usable: %', kind, value, coalesce(why, 'invalid')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Give a contact point of a kind in cdp.identity_rules, e.g. (''email'', ''ann@example.org'').';
	END IF;
	IF granted IS NULL OR channel IS NULL THEN
		RAISE EXCEPTION 'consent: channel and granted must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	INSERT INTO cdp.consents (kind, value, channel, purpose, granted, recorded_at, source)
	VALUES (set_consent.kind, norm, set_consent.channel, set_consent.purpose, set_consent.granted,
	        coalesce(at, now()), set_consent.source)
	RETURNING consent_id INTO id;
	RETURN id;
END
$$;
COMMENT ON FUNCTION cdp.set_consent(text, text, text, boolean, text, text, timestamptz) IS 'Records consent (granted) or an opt-out for a contact point (identifier kind and value, normalized as at ingest) on a channel (* for all) and purpose (marketing or all); returns the record id';

CREATE FUNCTION cdp.set_consent(profile_id bigint, channel text, granted boolean,
	purpose text DEFAULT 'marketing', source text DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF NOT EXISTS (SELECT FROM cdp.profiles p WHERE p.profile_id = set_consent.profile_id) THEN
		RAISE EXCEPTION 'consent: profile % does not exist', profile_id
			USING ERRCODE = 'no_data_found', HINT = 'Find the profile with cdp.resolve(kind, value).';
	END IF;
	IF granted IS NULL OR channel IS NULL THEN
		RAISE EXCEPTION 'consent: channel and granted must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	INSERT INTO cdp.consents (profile_id, channel, purpose, granted, recorded_at, source)
	VALUES (set_consent.profile_id, set_consent.channel, set_consent.purpose, set_consent.granted,
	        coalesce(at, now()), set_consent.source)
	RETURNING consent_id INTO id;
	RETURN id;
END
$$;
COMMENT ON FUNCTION cdp.set_consent(bigint, text, boolean, text, text, timestamptz) IS 'Records consent or an opt-out for a whole profile on a channel (* for all) and purpose';

-- Subscribe and unsubscribe events record consent in the transaction that
-- stores them (called at the end of the loading statement, src/event_batch.c):
-- every contact point of the event, on properties.channel or the event's
-- channel, for properties.purpose or marketing.
CREATE FUNCTION cdp.consent_events(event_ids bigint[], occurred_at timestamptz[]) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	INSERT INTO cdp.consents (kind, value, channel, purpose, granted, recorded_at, source, event_id)
	SELECT i.key, c.normalized,
	       CASE WHEN e.properties->>'channel' = '*' OR EXISTS (SELECT FROM cdp.channels k WHERE k.channel = e.properties->>'channel')
	            THEN e.properties->>'channel' ELSE e.channel END,
	       CASE WHEN e.properties->>'purpose' = 'all' THEN 'all' ELSE 'marketing' END,
	       e.type = 'subscribe', e.occurred_at, coalesce(e.source, e.type), e.event_id
	FROM cdp.events e
	CROSS JOIN LATERAL jsonb_each_text(e.identifiers) i
	CROSS JOIN LATERAL cdp.check_identifier(i.key, i.value) c
	-- ids are unique; the times let the scan skip the other partitions
	WHERE e.event_id = ANY (consent_events.event_ids) AND e.occurred_at = ANY (consent_events.occurred_at)
	  AND e.type IN ('subscribe', 'unsubscribe') AND c.normalized IS NOT NULL;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.consent_events(bigint[], timestamptz[]) IS 'Internal, called at the end of a loading statement: records the consents of its subscribe and unsubscribe events';

-- The person's subjects: its identifiers, itself and the profiles merged
-- into it.  Per subject, channel and purpose the latest record counts;
-- then an opt-out anywhere wins.
CREATE FUNCTION cdp.consent_state(profile_id bigint, at timestamptz DEFAULT now())
RETURNS TABLE (channel text, purpose text, granted boolean, recorded_at timestamptz, source text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
RETURN QUERY
SELECT l.channel, l.purpose, bool_and(l.granted), max(l.recorded_at), (array_agg(l.source ORDER BY l.granted, l.recorded_at DESC))[1]
FROM (SELECT DISTINCT ON (coalesce(c.kind || ':' || c.value, c.profile_id::text), c.channel, c.purpose)
             c.channel, c.purpose, c.granted, c.recorded_at, c.source
      FROM (SELECT s.* FROM cdp.identifiers i JOIN cdp.consents s ON (s.kind, s.value) = (i.kind, i.value)
            WHERE i.profile_id = consent_state.profile_id
            UNION ALL
            SELECT s.* FROM cdp.consents s
            WHERE s.profile_id IN (SELECT p.profile_id FROM cdp.profiles p
                                   WHERE p.profile_id = consent_state.profile_id OR p.merged_into = consent_state.profile_id)) c
      WHERE c.recorded_at <= at OR NOT c.granted   -- an opt-out binds once known, whatever its time
      ORDER BY coalesce(c.kind || ':' || c.value, c.profile_id::text), c.channel, c.purpose, c.recorded_at DESC, c.consent_id DESC) l
GROUP BY l.channel, l.purpose;
END
$$;
COMMENT ON FUNCTION cdp.consent_state(bigint, timestamptz) IS 'A live profile''s consent per channel (* for all) and purpose at a time: its contact points'' and its merged profiles'' latest records combined, an opt-out anywhere winning (granted false)';

-- What consent allows per channel and message class, the one place that
-- says it: marketing stops at any opt-out on the channel or on * (and
-- needs an opt-in there under cdp.consent_required), mandatory at any
-- opt-out, transactional only at an opt-out of purpose all.
CREATE FUNCTION cdp.consent_flags(profile_id bigint, at timestamptz DEFAULT now(), only_channel text DEFAULT NULL,
	OUT channel text, OUT marketing boolean, OUT transactional boolean, OUT mandatory boolean, OUT revoked boolean)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
	RETURN QUERY
	WITH s AS MATERIALIZED (SELECT * FROM cdp.consent_state(consent_flags.profile_id, consent_flags.at))
	SELECT k.channel,
	       NOT f.revoked AND (f.opted_in OR NOT current_setting('cdp.consent_required')::boolean),
	       NOT f.revoked_all, NOT f.revoked, f.revoked
	FROM cdp.channels k,
	     LATERAL (SELECT coalesce(bool_or(NOT s.granted), false) AS revoked,
	                     coalesce(bool_or(NOT s.granted AND s.purpose = 'all'), false) AS revoked_all,
	                     coalesce(bool_or(s.granted), false) AS opted_in
	              FROM s WHERE s.channel IN (k.channel, '*')) f
	WHERE consent_flags.only_channel IS NULL OR k.channel = consent_flags.only_channel;
END
$$;
COMMENT ON FUNCTION cdp.consent_flags(bigint, timestamptz, text) IS 'Per channel (every one, or only_channel), whether consent allows a live profile marketing (no opt-out there or on *; an opt-in under cdp.consent_required), transactional (no opt-out of purpose all) and mandatory messages (no opt-out), and whether any opt-out applies';

-- ---------------------------------------------------------------------------
-- Decisions (src/offers.c does the C parts).
-- ---------------------------------------------------------------------------


CREATE FUNCTION cdp.eligible(rule jsonb, facts jsonb, OUT eligible boolean, OUT reason text)
	AS 'MODULE_PATHNAME', 'cdp_eligible' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION cdp.eligible(jsonb, jsonb) IS 'Evaluates an eligibility rule against a facts document (as cdp.offer_facts gives): whether it holds, and if not which condition failed';

CREATE FUNCTION cdp.rank_offers(facts jsonb, seed bigint, draws integer, rules jsonb[], blocked text[],
	fallback boolean[], alpha float8[], beta float8[], value float8[], cost float8[],
	OUT i integer, OUT eligible boolean, OUT reason text, OUT propensity float8, OUT score float8,
	OUT rank integer, OUT action_prob float8)
RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'cdp_rank_offers' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.rank_offers(jsonb, bigint, integer, jsonb[], text[], boolean[], float8[], float8[], float8[], float8[]) IS 'Internal: for each candidate (arrays in the same order), whether it may be chosen (not blocked, its rule holds) and why not; a Thompson draw of its propensity from Beta(alpha, beta), its score propensity x value - cost, its rank among the competing candidates (the fallbacks compete only when nothing else may be chosen), and for rank 1 the probability that the policy picks it';

CREATE FUNCTION cdp.evaluate_thompson(arms integer[], contexts integer[], rewards float8[], propensities float8[],
	prior_alpha float8, prior_beta float8, draws integer, seed bigint,
	OUT method text, OUT value float8, OUT low float8, OUT high float8, OUT used bigint)
RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'cdp_evaluate_thompson_sql' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION cdp.evaluate_thompson(integer[], integer[], float8[], float8[], float8, float8, integer, bigint) IS 'Internal: off-policy estimates (replay, IPW, self-normalized IPW) of Bernoulli Thompson sampling on logged decisions in order';

-- The lock of a person's decisions: one of 1,024 stripes (a two-key
-- advisory lock), so that a campaign over millions of people holds at most
-- 1,024 locks (PostgreSQL's lock table holds a few thousand) while it
-- takes them in stripe order; two decisions for people of one stripe wait
-- for each other, which is rare and short.
--
-- No SET search_path: it would stop the planner from inlining the function
-- (it orders campaigns and the triggers' locks by stripe).  An inlined body
-- is parsed under the caller's search_path, so every function and operator
-- in it is qualified with pg_catalog: none can be shadowed.
CREATE FUNCTION cdp.person_stripe(profile_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (pg_catalog.hashint8(profile_id) OPERATOR(pg_catalog.&) 1023)::integer $$;
COMMENT ON FUNCTION cdp.person_stripe(bigint) IS 'Internal: the lock stripe (0 to 1023) of a live profile''s decisions';

CREATE FUNCTION cdp.lock_person(profile_id bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_advisory_xact_lock(6513775, cdp.person_stripe(profile_id));
END
$$;
COMMENT ON FUNCTION cdp.lock_person(bigint) IS 'Internal: takes the transaction-level lock of a live profile''s decisions (its stripe)';

-- The facts eligibility rules read (the keys are the fact names of the
-- rule language; see the README), only those asked for: a decision asks
-- for what the active offers' rules use (cdp.offer_fact_names).
CREATE FUNCTION cdp.offer_facts(profile_id bigint, at timestamptz DEFAULT now(), needed text[] DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	f jsonb;
	x jsonb;
BEGIN
	-- the segment always: it is the learning's context
	f := jsonb_build_object('rfm_segment', (SELECT r.segment FROM cdp.rfm r WHERE r.profile_id = offer_facts.profile_id));
	IF needed IS NULL OR needed && '{clv,p_alive}' THEN
		SELECT jsonb_build_object('clv', c.clv, 'p_alive', c.p_alive) INTO x FROM cdp.clv c WHERE c.profile_id = offer_facts.profile_id;
		f := f || coalesce(x, '{}');
	END IF;
	IF needed IS NULL OR needed && '{orders,revenue,days_since_last_purchase,last_channel,events}' THEN
		SELECT jsonb_build_object(
		           'orders', coalesce(sum(a.events) FILTER (WHERE a.type = 'purchase'), 0),
		           'revenue', coalesce(sum(a.amount) FILTER (WHERE a.type IN ('purchase', 'return')), 0),
		           'days_since_last_purchase', extract(epoch FROM at - max(a.last_at) FILTER (WHERE a.type = 'purchase')) / 86400,
		           'last_channel', (array_agg(a.channel ORDER BY a.last_at DESC, a.last_event_id DESC))[1],
		           'events', coalesce(jsonb_object_agg(a.type, a.events), '{}'))
		INTO x
		FROM (SELECT y.type, sum(y.events) AS events, sum(y.amount) AS amount, max(y.last_at) AS last_at,
		             (array_agg(y.channel ORDER BY y.last_at DESC, y.last_event_id DESC))[1] AS channel,
		             (array_agg(y.last_event_id ORDER BY y.last_at DESC, y.last_event_id DESC))[1] AS last_event_id
		      FROM cdp.identifiers i JOIN cdp.anchor_activity y ON y.anchor_id = i.identifier_id
		      WHERE i.profile_id = offer_facts.profile_id
		      GROUP BY y.type) a;
		f := f || x;
	END IF;
	IF needed IS NULL OR 'interest' = ANY (needed) THEN
		f := f || jsonb_build_object('interest', coalesce((SELECT jsonb_object_agg(z.category, z.score) FROM (
		              SELECT y.category, round(sum(power(2::float8, GREATEST(y.log2_mass - extract(epoch FROM at)::float8 / 2592000, -1000)))::numeric, 6) AS score
		              FROM cdp.identifiers j JOIN cdp.anchor_interest y ON y.anchor_id = j.identifier_id
		              WHERE j.profile_id = offer_facts.profile_id GROUP BY y.category) z), '{}'));
	END IF;
	IF needed IS NULL OR 'trait' = ANY (needed) THEN
		-- scalar traits only, numbers within double precision: what rules compare
		f := f || jsonb_build_object('traits', coalesce((
			SELECT jsonb_object_agg(t.key, t.value)
			FROM cdp.profile_store s, jsonb_each(s.traits) t
			WHERE s.profile_id = offer_facts.profile_id
			  AND (jsonb_typeof(t.value) IN ('string', 'boolean')
			       OR jsonb_typeof(t.value) = 'number' AND abs(t.value::numeric) < 1e300)), '{}'));
	END IF;
	IF needed IS NULL OR needed && '{open_break,break_products}' THEN
		f := f || jsonb_build_object('open_breaks', coalesce((
		              SELECT jsonb_object_agg(b.funnel_id, b.products)
		              FROM (SELECT jb.funnel_id, coalesce(jsonb_agg(DISTINCT p.value) FILTER (WHERE p.value IS NOT NULL), '[]') AS products
		                    FROM cdp.journey_breaks jb
		                    LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(jb.context->'products') = 'array'
		                                                                THEN jb.context->'products' END) p ON true
		                    WHERE jb.profile_id = offer_facts.profile_id AND jb.status = 'open'
		                    GROUP BY jb.funnel_id) b), '{}'));
	END IF;
	IF needed IS NULL OR 'days_since_last_contact' = ANY (needed) THEN
		SELECT jsonb_build_object('days_since_last_contact', extract(epoch FROM at - max(m.last_at)) / 86400,
		                          'days_since_last_contact_by_channel', jsonb_object_agg(m.channel, extract(epoch FROM at - m.last_at) / 86400))
		INTO x
		FROM (SELECT t.channel, max(t.decided_at) AS last_at
		      FROM cdp.identifiers i JOIN cdp.contacts t ON t.identifier_id = i.identifier_id
		      WHERE i.profile_id = offer_facts.profile_id AND t.status = 'sent' AND t.decided_at <= at
		      GROUP BY t.channel) m;
		f := f || x;
	END IF;
	IF needed IS NULL OR 'consent' = ANY (needed) THEN
		f := f || jsonb_build_object('consent', (
			SELECT jsonb_object_agg(c.channel, c.marketing) FROM cdp.consent_flags(offer_facts.profile_id, at) c));
	END IF;
	RETURN jsonb_strip_nulls(f);
END
$$;
COMMENT ON FUNCTION cdp.offer_facts(bigint, timestamptz, text[]) IS 'The facts about a live profile that eligibility rules read (all, or the fact names needed): rfm_segment, clv, p_alive, orders, revenue, days_since_last_purchase, last_channel, events per type, interest per category at that time (30-day half-life), traits, open_breaks (funnel -> products), days_since_last_contact (overall and per channel), consent per channel (marketing)';

-- The fact names the active offers' rules use, and trait when a policy has
-- quiet hours (the person's time zone is a trait).
CREATE FUNCTION cdp.offer_fact_names() RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(array_agg(DISTINCT n), '{}')
FROM (SELECT jsonb_path_query(o.eligibility, 'strict $.**.fact') #>> '{}' AS n FROM cdp.offers o WHERE o.active
      UNION ALL
      SELECT 'trait' FROM cdp.contact_policies p WHERE p.quiet_start IS NOT NULL) x
$$;
COMMENT ON FUNCTION cdp.offer_fact_names() IS 'Internal: the facts the active offers'' eligibility rules read, and trait when a contact policy has quiet hours';

-- The identifier that reaches a person on a channel (NULL: unreachable).
CREATE FUNCTION cdp.contact_point(profile_id bigint, channel text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
RETURN (SELECT i.identifier_id
FROM cdp.identifiers i,
     (SELECT coalesce((SELECT p.contact_kinds FROM cdp.contact_policies p WHERE p.channel = contact_point.channel),
                      CASE channel WHEN 'email' THEN '{email}'::text[] WHEN 'sms' THEN '{phone}' WHEN 'call_center' THEN '{phone}'
                                   WHEN 'push' THEN '{device_id}' END) AS kinds) k
WHERE i.profile_id = contact_point.profile_id AND (k.kinds IS NULL OR i.kind = ANY (k.kinds))
ORDER BY array_position(k.kinds, i.kind), i.identifier_id
LIMIT 1);
END
$$;
COMMENT ON FUNCTION cdp.contact_point(bigint, text) IS 'The identifier through which a live profile is reached on a channel (the first of the channel''s contact_kinds it holds; any identifier when the channel names none), or NULL when it cannot be reached there';

-- When quiet hours (start to end, local time, possibly across midnight)
-- hold a time in a time zone: the end of those quiet hours, else NULL.
CREATE FUNCTION cdp.quiet_until(t timestamptz, time_zone text, quiet_start time, quiet_end time) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	local_t time := (t AT TIME ZONE time_zone)::time;
	local_d date := (t AT TIME ZONE time_zone)::date;
BEGIN
	IF t IS NULL OR quiet_start IS NULL OR quiet_end IS NULL THEN
		RETURN NULL;
	END IF;
	IF (quiet_start < quiet_end AND local_t >= quiet_start AND local_t < quiet_end)
	   OR (quiet_start > quiet_end AND (local_t >= quiet_start OR local_t < quiet_end)) THEN
		RETURN ((local_d + CASE WHEN local_t >= quiet_end THEN 1 ELSE 0 END) + quiet_end) AT TIME ZONE time_zone;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.quiet_until(timestamptz, text, time, time) IS 'Internal: the end of the quiet hours (local start and end, possibly across midnight) that hold a time in a time zone, or NULL when they do not hold it';

-- Contact pressure on marketing for a person on a channel at a time: the
-- first rule that forbids a contact, and when every rule that forbids it
-- allows it again.  Counts the marketing contacts sent to every identifier
-- the person holds now.
CREATE FUNCTION cdp.contact_pressure(profile_id bigint, channel text, at timestamptz, time_zone text,
	OUT reason text, OUT next_allowed_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
	h record;
	k integer;
	quiet_end timestamptz;
	until timestamptz;
	why text;
BEGIN
	FOR p IN SELECT * FROM cdp.contact_policies c WHERE c.channel IN (contact_pressure.channel, '*')
	         ORDER BY c.channel = '*' LOOP
		-- contacts after at count too (a campaign planned for later, a
		-- decision made for an earlier time): a window of per around at
		SELECT count(*) FILTER (WHERE t.decided_at > at - p.per AND t.decided_at < at + p.per) AS n_per,
		       min(t.decided_at) FILTER (WHERE t.decided_at > at - p.per AND t.decided_at < at + p.per) AS first_per,
		       max(t.decided_at) FILTER (WHERE t.decided_at > at - p.min_gap AND t.decided_at < at + p.min_gap) AS near_at,
		       count(*) FILTER (WHERE t.outcome IN ('ignored', 'complained') AND t.decided_at <= at AND t.decided_at > at - p.ignored_window) AS n_ignored,
		       min(t.decided_at) FILTER (WHERE t.outcome IN ('ignored', 'complained') AND t.decided_at <= at AND t.decided_at > at - p.ignored_window) AS first_ignored
		INTO h
		FROM cdp.identifiers i JOIN cdp.contacts t ON t.identifier_id = i.identifier_id
		WHERE i.profile_id = contact_pressure.profile_id AND t.status = 'sent' AND t.message_class = 'marketing'
		  AND (p.channel = '*' OR t.channel = p.channel)
		  AND t.decided_at > at - GREATEST(p.per, p.min_gap, p.ignored_window, interval '0')
		  AND t.decided_at < at + GREATEST(p.per, p.min_gap, interval '0');
		why := NULL;
		until := NULL;
		IF p.max_contacts IS NOT NULL AND h.n_per >= p.max_contacts THEN
			why := format('cap: %s marketing contacts%s within %s (at most %s)', h.n_per,
			              CASE WHEN p.channel = '*' THEN ' on all channels' ELSE ' on ' || p.channel END, p.per, p.max_contacts);
			until := h.first_per + p.per;
		END IF;
		IF p.min_gap IS NOT NULL AND h.near_at IS NOT NULL THEN
			why := coalesce(why, format('minimum gap: a marketing contact%s at %s, gap %s',
			                            CASE WHEN p.channel = '*' THEN '' ELSE ' on ' || p.channel END, h.near_at, p.min_gap));
			until := GREATEST(until, h.near_at + p.min_gap);
		END IF;
		IF p.max_ignored IS NOT NULL AND h.n_ignored >= p.max_ignored THEN
			why := coalesce(why, format('suppressed: %s contacts%s ignored within %s (at most %s)', h.n_ignored,
			                            CASE WHEN p.channel = '*' THEN '' ELSE ' on ' || p.channel END, p.ignored_window, p.max_ignored));
			until := GREATEST(until, h.first_ignored + p.ignored_window);
		END IF;
		quiet_end := cdp.quiet_until(at, time_zone, p.quiet_start, p.quiet_end);
		IF quiet_end IS NOT NULL THEN
			why := coalesce(why, format('quiet hours: %s to %s in %s%s', p.quiet_start, p.quiet_end, time_zone,
			                            CASE WHEN p.channel = '*' THEN '' ELSE ' on ' || p.channel END));
			until := GREATEST(until, quiet_end);
		END IF;
		IF why IS NOT NULL THEN
			reason := coalesce(reason, why);
			next_allowed_at := GREATEST(next_allowed_at, until);
		END IF;
	END LOOP;
	-- the time allowed again is never in quiet hours (twice: the end of
	-- one policy's may lie in the other's)
	FOR k IN 1..2 LOOP
		FOR p IN SELECT * FROM cdp.contact_policies c
		         WHERE c.channel IN (contact_pressure.channel, '*') AND c.quiet_start IS NOT NULL LOOP
			next_allowed_at := coalesce(cdp.quiet_until(next_allowed_at, time_zone, p.quiet_start, p.quiet_end), next_allowed_at);
		END LOOP;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdp.contact_pressure(bigint, text, timestamptz, text) IS 'Internal: the first contact-pressure rule (cap, minimum gap, ignored contacts, quiet hours in the time zone) of a channel''s policy or the global one that forbids marketing to a live profile at a time, and when all that forbid it allow it again; NULL when nothing forbids. Caps and gaps count the contacts on both sides of the time (within per or min_gap), so that decisions made for other times never add up past a cap';

CREATE FUNCTION cdp.known_time_zone(name text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_known_time_zone' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION cdp.known_time_zone(text) IS 'Whether PostgreSQL knows a time zone name (as AT TIME ZONE takes it)';

-- The time zone of a person: its timezone trait when PostgreSQL knows it,
-- else cdp.default_timezone.
CREATE FUNCTION cdp.person_time_zone(facts jsonb) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
RETURN CASE WHEN cdp.known_time_zone(facts->'traits'->>'timezone') THEN facts->'traits'->>'timezone'
            ELSE current_setting('cdp.default_timezone') END;
END
$$;
COMMENT ON FUNCTION cdp.person_time_zone(jsonb) IS 'Internal: the timezone trait of a facts document if it names a time zone PostgreSQL knows, else cdp.default_timezone';

-- Every offer (and variant) a channel could carry for a person at a time,
-- with what forbids it besides its rule, its posterior and its value.
CREATE FUNCTION cdp.offer_arms(profile_id bigint, channel text, at timestamptz, facts jsonb, only_offers text[],
	OUT offer_id text, OUT variant text, OUT fallback boolean, OUT eligibility jsonb, OUT blocked text,
	OUT next_allowed_at timestamptz, OUT alpha float8, OUT beta float8, OUT value float8, OUT cost float8,
	OUT message_class text, OUT holdout float8, OUT budget bigint, OUT payload jsonb, OUT identifier_id bigint)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	point bigint := cdp.contact_point(profile_id, channel);
	pressure record;
	revoked boolean;
	ok_marketing boolean;
	ok_transactional boolean;
	ok_mandatory boolean;
	seg text := coalesce(facts->>'rfm_segment', '');
	a0 float8 := current_setting('cdp.offer_prior_alpha')::float8;
	b0 float8 := current_setting('cdp.offer_prior_beta')::float8;
	chan_cost float8 := coalesce((SELECT p.contact_cost FROM cdp.contact_policies p WHERE p.channel = offer_arms.channel), 0);
BEGIN
	SELECT * INTO pressure FROM cdp.contact_pressure(profile_id, channel, at, cdp.person_time_zone(facts));
	SELECT c.marketing, c.transactional, c.mandatory, c.revoked
	INTO ok_marketing, ok_transactional, ok_mandatory, revoked
	FROM cdp.consent_flags(profile_id, at, offer_arms.channel) c;
	RETURN QUERY
	SELECT o.offer_id, v.variant, o.fallback, o.eligibility,
	       CASE WHEN point IS NULL THEN format('unreachable: no identifier reaches the person on %s', channel)
	            WHEN NOT CASE o.message_class WHEN 'marketing' THEN ok_marketing
	                                          WHEN 'transactional' THEN ok_transactional ELSE ok_mandatory END
	                 THEN CASE WHEN o.message_class = 'marketing' AND NOT revoked
	                           THEN format('consent: no opt-in for %s on %s (cdp.consent_required)', o.message_class, channel)
	                           ELSE format('consent: opted out of %s on %s', o.message_class, channel) END
	            WHEN o.message_class = 'marketing' AND pressure.reason IS NOT NULL THEN pressure.reason
	            WHEN o.max_per_profile IS NOT NULL AND coalesce(u.sent, 0) >= o.max_per_profile
	                 THEN format('offer cap: sent %s times%s (at most %s)', u.sent,
	                             coalesce(' within ' || o.cap_period::text, ''), o.max_per_profile)
	            WHEN o.budget IS NOT NULL AND coalesce(b.used, 0) >= o.budget
	                 THEN format('budget: all %s used', o.budget)
	       END,
	       CASE WHEN point IS NULL OR NOT CASE o.message_class WHEN 'marketing' THEN ok_marketing
	                                          WHEN 'transactional' THEN ok_transactional ELSE ok_mandatory END THEN NULL
	            WHEN o.message_class = 'marketing' AND pressure.reason IS NOT NULL THEN pressure.next_allowed_at
	            WHEN o.max_per_profile IS NOT NULL AND coalesce(u.sent, 0) >= o.max_per_profile AND o.cap_period IS NOT NULL
	                 THEN u.first_sent + o.cap_period END,
	       a0 + coalesce(st.successes, 0), b0 + GREATEST(coalesce(st.trials, 0) - coalesce(st.successes, 0), 0),
	       coalesce(v.value, o.value)::float8 * o.weight, chan_cost,
	       o.message_class, o.holdout, o.budget,
	       CASE WHEN v.payload IS NULL THEN o.payload ELSE coalesce(o.payload, '{}') || v.payload END, point
	FROM cdp.offers o
	LEFT JOIN cdp.offer_variants v ON v.offer_id = o.offer_id
	LEFT JOIN cdp.offer_usage b ON b.offer_id = o.offer_id
	LEFT JOIN (SELECT t.offer_id, count(*) AS sent, min(t.decided_at) AS first_sent
	           FROM cdp.identifiers i JOIN cdp.contacts t ON t.identifier_id = i.identifier_id
	           JOIN cdp.offers x ON x.offer_id = t.offer_id
	           WHERE i.profile_id = offer_arms.profile_id AND t.status = 'sent' AND x.max_per_profile IS NOT NULL
	             AND (x.cap_period IS NULL OR t.decided_at > at - x.cap_period AND t.decided_at < at + x.cap_period)
	           GROUP BY t.offer_id) u ON u.offer_id = o.offer_id
	LEFT JOIN (SELECT s.offer_id, s.variant, sum(s.trials) AS trials, sum(s.successes) AS successes
	           FROM cdp.offer_stats s WHERE s.segment = seg GROUP BY s.offer_id, s.variant) st
	       ON st.offer_id = o.offer_id AND st.variant = coalesce(v.variant, '')
	WHERE o.active AND (o.channels IS NULL OR channel = ANY (o.channels))
	  AND (only_offers IS NULL OR o.offer_id = ANY (only_offers))
	  AND (o.valid_from IS NULL OR o.valid_from <= at) AND (o.valid_until IS NULL OR o.valid_until > at)
	ORDER BY o.offer_id, v.variant;
END
$$;
COMMENT ON FUNCTION cdp.offer_arms(bigint, text, timestamptz, jsonb, text[]) IS 'Internal: the active offers (one row per variant; only those of only_offers unless it is NULL) a channel may carry at a time, with what forbids them for a live profile besides their rule (reach, consent, contact pressure, offer cap, budget), their Beta posterior for its segment, value x weight and the contact cost';

-- Ranks the arms of one channel (cdp.offer_arms with cdp.rank_offers).
CREATE FUNCTION cdp.offer_ranking(profile_id bigint, channel text, at timestamptz, facts jsonb, seed bigint, only_offers text[],
	OUT offer_id text, OUT variant text, OUT eligible boolean, OUT reason text, OUT rank integer,
	OUT score float8, OUT propensity float8, OUT value float8, OUT action_prob float8, OUT fallback boolean,
	OUT message_class text, OUT holdout float8, OUT budget bigint, OUT payload jsonb, OUT identifier_id bigint,
	OUT next_allowed_at timestamptz, OUT rule_holds boolean, OUT cost float8, OUT worth boolean)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
RETURN QUERY
WITH arms AS (SELECT row_number() OVER () AS n, a.* FROM cdp.offer_arms(profile_id, channel, at, facts, only_offers) a),
r AS (SELECT r.*
      FROM (SELECT array_agg(eligibility ORDER BY n) AS rules, array_agg(blocked ORDER BY n) AS blocked,
                   array_agg(fallback ORDER BY n) AS fallbacks, array_agg(alpha ORDER BY n) AS alphas,
                   array_agg(beta ORDER BY n) AS betas, array_agg(value ORDER BY n) AS vals,
                   array_agg(cost ORDER BY n) AS costs FROM arms) x,
           cdp.rank_offers(facts, seed, current_setting('cdp.propensity_draws')::integer,
                           x.rules, x.blocked, x.fallbacks, x.alphas, x.betas, x.vals, x.costs) r)
SELECT a.offer_id, a.variant, r.eligible, r.reason, r.rank, r.score, r.propensity, a.value, r.action_prob,
       a.fallback, a.message_class, a.holdout, a.budget, a.payload, a.identifier_id,
       CASE WHEN NOT r.eligible THEN a.next_allowed_at END, r.eligible OR a.blocked IS NOT NULL AND r.reason = a.blocked,
       a.cost, r.score > 0 OR a.cost = 0
FROM arms a JOIN r ON r.i = a.n
ORDER BY r.rank NULLS LAST, a.offer_id, a.variant;
END
$$;
COMMENT ON FUNCTION cdp.offer_ranking(bigint, text, timestamptz, jsonb, bigint, text[]) IS 'Internal: every arm (of only_offers, unless NULL) of a channel for a live profile, ranked by a Thompson draw (rank 1 is what the policy picks), with why the others may not be chosen, the contact cost, and whether the expected margin pays for it (worth: a positive score, or a free channel)';

-- The live profile of an id, or an error.
CREATE FUNCTION cdp.live_profile(profile_id bigint) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live bigint;
BEGIN
	SELECT coalesce(p.merged_into, p.profile_id) INTO live FROM cdp.profiles p WHERE p.profile_id = live_profile.profile_id;
	IF live IS NULL THEN
		RAISE EXCEPTION 'profile % does not exist', profile_id
			USING ERRCODE = 'no_data_found', HINT = 'Find the profile with cdp.resolve(kind, value).';
	END IF;
	RETURN live;
END
$$;
COMMENT ON FUNCTION cdp.live_profile(bigint) IS 'Internal: the live profile of a profile id (a merged-away id leads to its survivor), or an error when it does not exist';

-- The seed of one decision: reproducible when cdp.offer_seed is set.
CREATE FUNCTION cdp.decision_seed(profile_id bigint, channel text, at timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
RETURN CASE WHEN current_setting('cdp.offer_seed')::bigint >= 0
            THEN hashtextextended(concat_ws(':', profile_id, channel, extract(epoch FROM at)), current_setting('cdp.offer_seed')::bigint) END;
END
$$;
COMMENT ON FUNCTION cdp.decision_seed(bigint, text, timestamptz) IS 'Internal: the seed of a decision''s draws, from cdp.offer_seed, the profile, the channel and the time (NULL, random draws, when cdp.offer_seed is -1)';

CREATE FUNCTION cdp.channel_check(channel text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF channel IS NOT NULL AND NOT EXISTS (SELECT FROM cdp.channels c WHERE c.channel = channel_check.channel) THEN
		RAISE EXCEPTION 'unknown channel "%"', channel
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Channels are the keys of cdp.channels.';
	END IF;
END
$$;
COMMENT ON FUNCTION cdp.channel_check(text) IS 'Internal: an error unless the channel is NULL or a key of cdp.channels';

-- The channels a decision for a live profile considers: the one given, or
-- (NULL) those where an active offer may go and the person can be reached.
CREATE FUNCTION cdp.decision_channels(profile_id bigint, channel text) RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT k.channel FROM cdp.channels k
	WHERE k.channel = decision_channels.channel
	   OR decision_channels.channel IS NULL
	      AND EXISTS (SELECT FROM cdp.offers o WHERE o.active AND (o.channels IS NULL OR k.channel = ANY (o.channels)))
	      AND cdp.contact_point(decision_channels.profile_id, k.channel) IS NOT NULL
	ORDER BY k.channel;
END
$$;
COMMENT ON FUNCTION cdp.decision_channels(bigint, text) IS 'Internal: the channels a decision considers: the one given, or those where an active offer may go and the person can be reached';

CREATE TYPE cdp.offer_choice AS (offer_id text, score float8, propensity float8, value float8, reason text,
	variant text, channel text, payload jsonb);
COMMENT ON TYPE cdp.offer_choice IS 'An offer cdp.next_best_offers proposes: its score (propensity x value x weight - contact cost), the propensity drawn, value, why, variant, channel and payload';

CREATE FUNCTION cdp.next_best_offers(profile_id bigint, channel text, n integer DEFAULT 1, at timestamptz DEFAULT now())
RETURNS SETOF cdp.offer_choice
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live bigint := cdp.live_profile(profile_id);
	facts jsonb;
BEGIN
	PERFORM cdp.channel_check(next_best_offers.channel);
	IF n IS NULL OR n < 1 THEN
		RAISE EXCEPTION 'n must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	facts := cdp.offer_facts(live, at, cdp.offer_fact_names());
	RETURN QUERY
	SELECT r.offer_id, r.score, r.propensity, r.value,
	       CASE WHEN r.fallback THEN 'fallback: no other offer eligible' ELSE 'eligible' END
	       || format(', propensity %s x value %s', round(r.propensity::numeric, 4), round(r.value::numeric, 2)),
	       r.variant, c.channel, r.payload
	FROM cdp.decision_channels(live, next_best_offers.channel) c(channel),
	     cdp.offer_ranking(live, c.channel, at, facts, cdp.decision_seed(live, c.channel, at), NULL) r
	WHERE r.eligible AND r.rank IS NOT NULL AND (next_best_offers.channel IS NOT NULL OR r.worth)
	ORDER BY r.score DESC, r.offer_id, r.variant
	LIMIT n;
END
$$;
COMMENT ON FUNCTION cdp.next_best_offers(bigint, text, integer, timestamptz) IS 'The n best offers for a person on a channel at a time, ranked by one Thompson draw of score = propensity x value x weight - contact cost, without recording anything; with channel NULL, across every channel where the expected margin pays for the contact';

CREATE FUNCTION cdp.explain_offers(profile_id bigint, channel text, at timestamptz DEFAULT now())
RETURNS TABLE (offer_id text, eligible boolean, reason text, variant text, rule_holds boolean, score float8,
               propensity float8, value float8, rank integer, next_allowed_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live bigint := cdp.live_profile(profile_id);
BEGIN
	IF channel IS NULL THEN
		RAISE EXCEPTION 'explain_offers needs a channel' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM cdp.channel_check(explain_offers.channel);
	RETURN QUERY
	SELECT o.offer_id, coalesce(r.eligible, false),
	       CASE WHEN r.offer_id IS NOT NULL THEN coalesce(r.reason, 'eligible')
	            ELSE CASE WHEN NOT o.active THEN 'withdrawn (active is false)'
	                               WHEN o.channels IS NOT NULL AND NOT channel = ANY (o.channels)
	                                    THEN format('channel: not offered on %s (channels %s)', channel, o.channels)
	                               WHEN o.valid_from > at THEN format('validity: starts at %s', o.valid_from)
	                               ELSE format('validity: ended at %s', o.valid_until) END END,
	       r.variant, r.rule_holds, r.score, r.propensity, r.value, r.rank, r.next_allowed_at
	FROM cdp.offers o
	LEFT JOIN cdp.offer_ranking(live, channel, at, cdp.offer_facts(live, at, cdp.offer_fact_names()), cdp.decision_seed(live, channel, at), NULL) r
	       ON r.offer_id = o.offer_id
	ORDER BY r.rank NULLS LAST, o.offer_id, r.variant;
END
$$;
COMMENT ON FUNCTION cdp.explain_offers(bigint, text, timestamptz) IS 'Every offer for a person on a channel at a time: whether it may be chosen, and if not the exact rule condition, consent, contact-pressure rule, cap, budget, validity or channel that removed it (with when it is allowed again)';

CREATE TYPE cdp.decision AS (contact_id bigint, offer_id text, variant text, channel text, status text, reason text,
	score float8, propensity float8, value float8, payload jsonb, next_allowed_at timestamptz);
COMMENT ON TYPE cdp.decision IS 'What cdp.decide decided: the contact recorded, the offer (NULL when nothing may be sent), channel, status (sent, holdout, suppressed, no_offer), reason, score, propensity, value, payload to send, and for a suppression when contact is allowed again';

-- Counts trials and successes into a row of the offer's statistics that
-- no other transaction holds (SKIP LOCKED), or a new one: concurrent
-- decisions never wait for each other here, so no cycle of waits can go
-- through these rows.  Shards are the backend ids that found every row
-- taken; readers sum them.
CREATE FUNCTION cdp.learn(offer_id text, variant text, segment text, trials bigint, successes bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	row_id tid;
BEGIN
	LOOP
		SELECT s.ctid INTO row_id FROM cdp.offer_stats s
		WHERE s.offer_id = learn.offer_id AND s.variant = coalesce(learn.variant, '') AND s.segment = learn.segment
		LIMIT 1 FOR UPDATE SKIP LOCKED;
		IF FOUND THEN
			UPDATE cdp.offer_stats s SET trials = s.trials + learn.trials, successes = s.successes + learn.successes
			WHERE s.ctid = row_id;
			RETURN;
		END IF;
		INSERT INTO cdp.offer_stats (offer_id, variant, segment, shard, trials, successes)
		VALUES (learn.offer_id, coalesce(learn.variant, ''), learn.segment, pg_backend_pid(), learn.trials, learn.successes)
		ON CONFLICT DO NOTHING;
		IF FOUND THEN
			RETURN;
		END IF;
		-- this backend's own row exists but another transaction holds it
		-- (a backend id reused): take any row again
		PERFORM pg_sleep(0.001);
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdp.learn(text, text, text, bigint, bigint) IS 'Internal: adds trials and successes to an offer''s statistics for a segment, in a row no other transaction holds (or a new one), so that concurrent decisions never wait for each other there';

-- A decision reads the contacts committed before it under the person's
-- lock: READ COMMITTED (each statement sees them) or SERIALIZABLE (a
-- conflict aborts with 40001); REPEATABLE READ would read a snapshot taken
-- before the lock and could break a cap.
CREATE FUNCTION cdp.decision_isolation_check() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF current_setting('transaction_isolation') = 'repeatable read' THEN
		RAISE EXCEPTION 'cdp.decide and cdp.plan_campaign cannot run under REPEATABLE READ'
			USING ERRCODE = 'active_sql_transaction',
			      DETAIL = 'The transaction''s snapshot may predate another decision for the same person, whose contact it would not count against the caps.',
			      HINT = 'Decide under READ COMMITTED, or under SERIALIZABLE and retry on 40001.';
	END IF;
END
$$;
COMMENT ON FUNCTION cdp.decision_isolation_check() IS 'Internal: refuses a decision under REPEATABLE READ, whose snapshot could miss a concurrent decision''s contact';

-- One decision for a live profile, its lock held: the best offer over the
-- channel (or every channel), then the holdout draw, the budget, the
-- contact row and the learning's trial.
CREATE FUNCTION cdp.decide_locked(live bigint, channel text, at timestamptz, facts jsonb, campaign_id bigint DEFAULT NULL,
	only_offers text[] DEFAULT NULL)
RETURNS cdp.decision
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	best record;
	other record;
	block record;
	have_best boolean := false;
	have_block boolean := false;
	ch text;
	st text;
	why text;
	next_at timestamptz;
	u float8;
	tries integer := 0;
	cid bigint;
	seg text := coalesce(facts->>'rfm_segment', '');
BEGIN
	LOOP
		tries := tries + 1;
		have_best := false;
		have_block := false;
		FOR ch IN SELECT * FROM cdp.decision_channels(live, decide_locked.channel) LOOP
			-- the best of the channel, and the offers only pressure,
			-- consent, a cap or a budget forbids (why nothing, if so)
			FOR other IN SELECT r.*, ch AS chan, s.seed
			             FROM (SELECT cdp.decision_seed(live, ch, at) AS seed) s,
			                  cdp.offer_ranking(live, ch, at, facts, s.seed, only_offers) r
			             WHERE r.rank = 1 OR r.rule_holds AND NOT r.eligible LOOP
				IF other.rank IS NULL THEN
					IF NOT have_block THEN
						block := other;
						have_block := true;
					ELSIF other.next_allowed_at < block.next_allowed_at
					      OR other.next_allowed_at IS NOT NULL AND block.next_allowed_at IS NULL THEN
						block := other;	-- the earliest allowed again, else the first
					END IF;
					CONTINUE;
				END IF;
				CONTINUE WHEN decide_locked.channel IS NULL AND NOT other.worth;
				IF NOT have_best THEN
					best := other;
					have_best := true;
				ELSIF other.score > best.score THEN
					best := other;
				END IF;
			END LOOP;
		END LOOP;
		EXIT WHEN NOT have_best;
		u := CASE WHEN best.seed IS NULL THEN random()
		          ELSE ((hashtextextended('holdout', best.seed) & 2147483647)::float8 + 0.5) / 2147483648 END;
		IF u < best.holdout THEN
			st := 'holdout';
			EXIT;
		END IF;
		st := 'sent';
		EXIT WHEN best.budget IS NULL;
		UPDATE cdp.offer_usage b SET used = b.used + 1
		WHERE b.offer_id = best.offer_id AND b.used < best.budget;
		EXIT WHEN FOUND;
		-- another decision took the last unit: rank again (it is committed)
		IF tries >= 5 THEN
			have_best := false;
			EXIT;
		END IF;
	END LOOP;

	IF NOT have_best THEN
		-- why nothing: a rule-eligible offer that pressure, consent, a cap
		-- or a budget forbids (suppressed), else none eligible
		IF have_block THEN
			st := 'suppressed';
			why := block.reason;
			next_at := block.next_allowed_at;
			cid := block.identifier_id;
			ch := block.chan;
		ELSE
			st := 'no_offer';
			why := 'no eligible offer' || coalesce(' on ' || decide_locked.channel, '');
			ch := decide_locked.channel;
			cid := NULL;
			next_at := NULL;
		END IF;
		INSERT INTO cdp.contacts (profile_id, identifier_id, channel, decided_at, status, reason, segment, campaign_id)
		VALUES (live, coalesce(cid, cdp.contact_point(live, coalesce(ch, 'web')), (SELECT min(i.identifier_id) FROM cdp.identifiers i WHERE i.profile_id = live)),
		        coalesce(ch, '*'), at, st, why, seg, campaign_id)
		RETURNING contacts.contact_id INTO cid;
		RETURN ROW(cid, NULL::text, NULL::text, ch, st, why, NULL::float8, NULL::float8, NULL::float8, NULL::jsonb, next_at)::cdp.decision;
	END IF;

	why := CASE WHEN st = 'holdout' THEN format('holdout: chosen, not sent (control group of %s%%)', round(best.holdout::numeric * 100, 1))
	            WHEN best.fallback THEN 'fallback: no other offer eligible'
	            ELSE 'best score' END
	       || format(' (propensity %s x value %s - cost %s)', round(best.propensity::numeric, 4), round(best.value::numeric, 2), best.cost);
	INSERT INTO cdp.contacts (profile_id, identifier_id, offer_id, variant, channel, decided_at, message_class, status,
	                          reason, segment, score, propensity, action_prob, value, campaign_id)
	VALUES (live, best.identifier_id, best.offer_id, best.variant, best.chan, at, best.message_class, st, why, seg,
	        best.score, best.propensity,
	        best.action_prob * CASE WHEN st = 'holdout' THEN best.holdout ELSE 1 - best.holdout END,
	        best.value, campaign_id)
	RETURNING contacts.contact_id INTO cid;
	IF st = 'sent' THEN
		PERFORM cdp.learn(best.offer_id, best.variant, seg, 1, 0);
	END IF;
	RETURN ROW(cid, best.offer_id, best.variant, best.chan, st, why, best.score, best.propensity, best.value,
	           CASE WHEN st = 'sent' THEN best.payload END, NULL::timestamptz)::cdp.decision;
END
$$;
COMMENT ON FUNCTION cdp.decide_locked(bigint, text, timestamptz, jsonb, bigint, text[]) IS 'Internal: cdp.decide once the person''s lock is held (among only_offers, unless NULL: what a trigger may send)';

CREATE FUNCTION cdp.decide(profile_id bigint, channel text DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS cdp.decision
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live bigint := cdp.live_profile(profile_id);
	locked bigint;
BEGIN
	PERFORM cdp.channel_check(decide.channel);
	IF at IS NULL THEN
		RAISE EXCEPTION 'at must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM cdp.decision_isolation_check();
	-- the lock, then the live profile again: a merge may have moved it
	WHILE live IS DISTINCT FROM locked LOOP
		PERFORM cdp.lock_person(live);
		locked := live;
		live := cdp.live_profile(profile_id);
	END LOOP;
	RETURN cdp.decide_locked(live, decide.channel, at, cdp.offer_facts(live, at, cdp.offer_fact_names()));
END
$$;
COMMENT ON FUNCTION cdp.decide(bigint, text, timestamptz) IS 'Chooses the next best offer for a person on a channel (NULL: the channel with the best expected margin) at a time and records it in cdp.contacts, in one transaction under the person''s lock, so that concurrent decisions never break a cap or a budget; status sent, holdout (chosen, not sent), suppressed (reason and next_allowed_at say what forbids a contact) or no_offer';

CREATE FUNCTION cdp.record_outcome(contact_id bigint, outcome text, reward numeric DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS cdp.contacts
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	c cdp.contacts;
	goal text := current_setting('cdp.offer_success');
	hit boolean;
BEGIN
	IF outcome IS NULL OR outcome NOT IN ('shown', 'opened', 'clicked', 'converted', 'ignored', 'complained') THEN
		RAISE EXCEPTION 'unknown outcome "%"', outcome
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'An outcome is shown, opened, clicked, converted, ignored or complained.';
	END IF;
	SELECT * INTO c FROM cdp.contacts t WHERE t.contact_id = record_outcome.contact_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'contact % does not exist', contact_id
			USING ERRCODE = 'no_data_found', HINT = 'Pass a contact_id returned by cdp.decide.';
	END IF;
	IF c.offer_id IS NULL THEN
		RAISE EXCEPTION 'contact % sent no offer (status %)', contact_id, c.status
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Outcomes are recorded for sent offers and holdouts.';
	END IF;
	hit := outcome = 'converted' OR (goal = 'clicked' AND outcome = 'clicked');
	IF hit AND NOT c.success AND c.status = 'sent' THEN
		-- counted once in the offer's learning
		PERFORM cdp.learn(c.offer_id, c.variant, c.segment, 0, 1);
	END IF;
	-- a conversion is final: a later shown, opened or complaint does not undo it
	UPDATE cdp.contacts t SET outcome = CASE WHEN t.outcome = 'converted' THEN t.outcome ELSE record_outcome.outcome END,
	       outcome_at = CASE WHEN t.outcome = 'converted' THEN t.outcome_at ELSE coalesce(at, now()) END,
	       reward = coalesce(record_outcome.reward, t.reward), success = t.success OR hit
	WHERE t.contact_id = c.contact_id
	RETURNING * INTO c;
	RETURN c;
END
$$;
COMMENT ON FUNCTION cdp.record_outcome(bigint, text, numeric, timestamptz) IS 'Records what a contact led to (shown, opened, clicked, converted, ignored, complained) and its reward; the first outcome that reaches cdp.offer_success teaches the offer''s posterior for the segment; ignored and complained contacts count toward suppression (max_ignored)';

-- ---------------------------------------------------------------------------
-- Measurement.
-- ---------------------------------------------------------------------------

-- The 95 % Wilson score interval of a rate (src/core/bandit.c).
CREATE FUNCTION cdp.rate_interval(successes bigint, trials bigint, OUT low float8, OUT high float8)
	AS 'MODULE_PATHNAME', 'cdp_rate_interval' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION cdp.rate_interval(bigint, bigint) IS 'The 95 % Wilson score interval of a rate of successes among trials (NULL bounds without trials)';

CREATE VIEW cdp.offer_performance AS
SELECT x.offer_id, x.channel, x.segment, x.decisions, x.conversions, r.r1 AS conversion_rate,
       w.low AS rate_low, w.high AS rate_high, x.holdouts, x.holdout_conversions, r.r0 AS holdout_rate,
       r.r1 - r.r0 AS uplift,
       r.r1 - r.r0 - 1.959964 * sqrt(r.r1 * (1 - r.r1) / x.decisions + r.r0 * (1 - r.r0) / x.holdouts) AS uplift_low,
       r.r1 - r.r0 + 1.959964 * sqrt(r.r1 * (1 - r.r1) / x.decisions + r.r0 * (1 - r.r0) / x.holdouts) AS uplift_high,
       x.reward
FROM (SELECT c.offer_id, c.channel, c.segment,
             count(*) FILTER (WHERE c.status = 'sent') AS decisions,
             count(*) FILTER (WHERE c.status = 'sent' AND c.outcome = 'converted') AS conversions,
             count(*) FILTER (WHERE c.status = 'holdout') AS holdouts,
             count(*) FILTER (WHERE c.status = 'holdout' AND c.outcome = 'converted') AS holdout_conversions,
             sum(c.reward) FILTER (WHERE c.status = 'sent') AS reward
      FROM cdp.contacts c
      WHERE c.offer_id IS NOT NULL
      GROUP BY c.offer_id, c.channel, c.segment) x
CROSS JOIN LATERAL (SELECT x.conversions::float8 / NULLIF(x.decisions, 0) AS r1,
                           x.holdout_conversions::float8 / NULLIF(x.holdouts, 0) AS r0) r
CROSS JOIN LATERAL cdp.rate_interval(x.conversions, x.decisions) w;
COMMENT ON VIEW cdp.offer_performance IS 'Per offer, channel and segment: offers sent, conversions, conversion rate with its 95 % Wilson interval, the holdout''s decisions and conversions, and the uplift against the holdout with a 95 % normal interval';
COMMENT ON COLUMN cdp.offer_performance.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.offer_performance.channel IS 'Channel';
COMMENT ON COLUMN cdp.offer_performance.segment IS 'RFM segment at the decision (empty: unscored)';
COMMENT ON COLUMN cdp.offer_performance.decisions IS 'Offers sent';
COMMENT ON COLUMN cdp.offer_performance.conversions IS 'Of which converted';
COMMENT ON COLUMN cdp.offer_performance.conversion_rate IS 'conversions / decisions';
COMMENT ON COLUMN cdp.offer_performance.rate_low IS 'Its 95 % interval (Wilson), low end';
COMMENT ON COLUMN cdp.offer_performance.rate_high IS 'High end';
COMMENT ON COLUMN cdp.offer_performance.holdouts IS 'Decisions held out (sent nothing)';
COMMENT ON COLUMN cdp.offer_performance.holdout_conversions IS 'Of which converted anyway (outcomes recorded on holdout contacts)';
COMMENT ON COLUMN cdp.offer_performance.holdout_rate IS 'holdout_conversions / holdouts';
COMMENT ON COLUMN cdp.offer_performance.uplift IS 'conversion_rate - holdout_rate: what sending the offer adds';
COMMENT ON COLUMN cdp.offer_performance.uplift_low IS 'Its 95 % interval (normal approximation), low end';
COMMENT ON COLUMN cdp.offer_performance.uplift_high IS 'High end';
COMMENT ON COLUMN cdp.offer_performance.reward IS 'Sum of the rewards recorded for offers sent';

CREATE VIEW cdp.contact_log AS
SELECT c.contact_id, c.decided_at, c.offer_id || coalesce(':' || c.variant, '') AS arm, c.segment AS context,
       CASE WHEN c.success THEN 1 ELSE 0 END::float8 AS reward, c.action_prob AS propensity
FROM cdp.contacts c
WHERE c.status = 'sent' AND c.action_prob > 0;
COMMENT ON VIEW cdp.contact_log IS 'The logged decisions as cdp.evaluate_policy reads them: arm (offer:variant), context (segment), reward (1 on success) and the logging policy''s probability of the arm';
COMMENT ON COLUMN cdp.contact_log.contact_id IS 'Contact';
COMMENT ON COLUMN cdp.contact_log.decided_at IS 'Its time (the log''s order)';
COMMENT ON COLUMN cdp.contact_log.arm IS 'Offer, and variant after a colon';
COMMENT ON COLUMN cdp.contact_log.context IS 'Segment';
COMMENT ON COLUMN cdp.contact_log.reward IS '1 when the contact reached cdp.offer_success, else 0';
COMMENT ON COLUMN cdp.contact_log.propensity IS 'Probability that the logging policy chose the arm (cdp.contacts.action_prob)';

CREATE FUNCTION cdp.evaluate_policy(logged regclass DEFAULT 'cdp.contact_log', prior_alpha float8 DEFAULT 1,
	prior_beta float8 DEFAULT 1, draws integer DEFAULT 200, seed bigint DEFAULT 1)
RETURNS TABLE (method text, value float8, low float8, high float8, used bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	arms integer[];
	ctxs integer[];
	rewards float8[];
	props float8[];
	n bigint;
	s float8;
BEGIN
	IF draws IS NULL OR draws < 1 OR draws > 100000 THEN
		RAISE EXCEPTION 'draws must be between 1 and 100000' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT (prior_alpha > 0 AND prior_beta > 0) THEN
		RAISE EXCEPTION 'the prior must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	BEGIN
		EXECUTE format($q$
			SELECT array_agg(dense_rank ORDER BY decided_at, ord), array_agg(ctx ORDER BY decided_at, ord),
			       array_agg(reward ORDER BY decided_at, ord), array_agg(propensity ORDER BY decided_at, ord),
			       count(*), sum(reward)
			FROM (SELECT l.decided_at, row_number() OVER () AS ord, l.reward::float8 AS reward, l.propensity::float8 AS propensity,
			             (dense_rank() OVER (ORDER BY l.arm::text) - 1)::integer AS dense_rank,
			             (dense_rank() OVER (ORDER BY coalesce(l.context::text, '')) - 1)::integer AS ctx
			      FROM %s l) x$q$, logged)
		INTO arms, ctxs, rewards, props, n, s;
	EXCEPTION WHEN undefined_column THEN
		RAISE EXCEPTION 'evaluate_policy: % lacks a column of the log: %', logged, SQLERRM
			USING ERRCODE = 'undefined_column',
			      HINT = 'The log needs decided_at, arm, context, reward (0 to 1) and propensity (the logging policy''s probability of the arm), as cdp.contact_log has.';
	END;
	IF n IS NULL OR n = 0 THEN
		RAISE EXCEPTION 'evaluate_policy: % holds no logged decision', logged USING ERRCODE = 'no_data_found';
	END IF;
	IF EXISTS (SELECT FROM unnest(props) p WHERE p IS NULL OR NOT (p > 0 AND p <= 1))
	   OR EXISTS (SELECT FROM unnest(rewards) r WHERE r IS NULL OR r < 0 OR r > 1) THEN
		RAISE EXCEPTION 'evaluate_policy: every propensity must be in (0, 1] and every reward in [0, 1]'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN QUERY SELECT 'logged'::text, s / n, (cdp.rate_interval(round(s)::bigint, n)).low,
	                    (cdp.rate_interval(round(s)::bigint, n)).high, n;
	RETURN QUERY SELECT e.method, e.value, e.low, e.high, e.used
	             FROM cdp.evaluate_thompson(arms, ctxs, rewards, props, prior_alpha, prior_beta, draws, seed) e;
END
$$;
COMMENT ON FUNCTION cdp.evaluate_policy(regclass, float8, float8, integer, bigint) IS 'Estimates offline, on logged decisions in time order (decided_at, arm, context, reward, propensity; cdp.contact_log by default), the reward per decision of Bernoulli Thompson sampling per arm and context with the given prior: replay (unbiased on uniform random logs), inverse propensity weighting and its self-normalized form, each with a 95 % interval, beside the logged policy''s own rate; touches no cap, budget or learning';

-- ---------------------------------------------------------------------------
-- Campaigns.
-- ---------------------------------------------------------------------------

CREATE FUNCTION cdp.campaign_audience(audience jsonb, at timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	names text[];
BEGIN
	IF jsonb_typeof(audience) IS DISTINCT FROM 'object' OR (SELECT count(*) FROM jsonb_object_keys(audience)) <> 1 THEN
		RAISE EXCEPTION 'audience: one of {"all": true}, {"segment": "..."}, {"segments": [...]}, {"profiles": [...]} or {"rule": ...} expected'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	k := (SELECT jsonb_object_keys(audience));
	IF k = 'all' AND audience->'all' = 'true' THEN
		RETURN QUERY SELECT p.profile_id FROM cdp.profiles p WHERE p.merged_into IS NULL ORDER BY 1;
	ELSIF k = 'segment' AND jsonb_typeof(audience->'segment') = 'string' THEN
		RETURN QUERY SELECT r.profile_id FROM cdp.rfm r JOIN cdp.profiles p USING (profile_id)
		             WHERE r.segment = audience->>'segment' AND p.merged_into IS NULL ORDER BY 1;
	ELSIF k = 'segments' AND jsonb_typeof(audience->'segments') = 'array' THEN
		RETURN QUERY SELECT r.profile_id FROM cdp.rfm r JOIN cdp.profiles p USING (profile_id)
		             WHERE r.segment IN (SELECT jsonb_array_elements_text(audience->'segments')) AND p.merged_into IS NULL ORDER BY 1;
	ELSIF k = 'profiles' AND jsonb_typeof(audience->'profiles') = 'array' THEN
		IF EXISTS (SELECT FROM jsonb_array_elements(audience->'profiles') e WHERE jsonb_typeof(e) <> 'number') THEN
			RAISE EXCEPTION 'audience.profiles: profile ids expected' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		RETURN QUERY SELECT DISTINCT coalesce(p.merged_into, p.profile_id)
		             FROM jsonb_array_elements_text(audience->'profiles') e JOIN cdp.profiles p ON p.profile_id = e::bigint ORDER BY 1;
	ELSIF k = 'rule' THEN
		PERFORM cdp.check_eligibility(audience->'rule');
		names := ARRAY(SELECT DISTINCT x #>> '{}' FROM jsonb_path_query(audience->'rule', 'strict $.**.fact') x);
		RETURN QUERY SELECT p.profile_id FROM cdp.profiles p
		             WHERE p.merged_into IS NULL
		               AND (cdp.eligible(audience->'rule', cdp.offer_facts(p.profile_id, at, names))).eligible
		             ORDER BY 1;
	ELSE
		RAISE EXCEPTION 'audience: unknown or malformed "%"', k
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'One of {"all": true}, {"segment": "..."}, {"segments": [...]}, {"profiles": [...]} or {"rule": ...}.';
	END IF;
END
$$;
COMMENT ON FUNCTION cdp.campaign_audience(jsonb, timestamptz) IS 'The live profiles of a campaign audience: {"all": true}, {"segment": s}, {"segments": [...]}, {"profiles": [ids]} or {"rule": an eligibility rule, on the facts at that time}';

CREATE FUNCTION cdp.plan_campaign(channel text, audience jsonb, at timestamptz DEFAULT now())
RETURNS TABLE (campaign_id bigint, profiles bigint, chosen bigint, holdouts bigint, suppressed jsonb, without_offer bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	cid bigint;
	p bigint;
	d record;
	n bigint := 0;
	n_chosen bigint := 0;
	n_hold bigint := 0;
	n_none bigint := 0;
	supp jsonb := '{}';
	k text;
	needed text[] := cdp.offer_fact_names();
BEGIN
	PERFORM cdp.channel_check(plan_campaign.channel);
	INSERT INTO cdp.campaigns (channel, audience, planned_at) VALUES (plan_campaign.channel, coalesce(audience, 'null'), at)
	RETURNING campaigns.campaign_id INTO cid;
	PERFORM cdp.decision_isolation_check();
	CREATE TEMP TABLE cdp_audience ON COMMIT DROP AS
	SELECT a.p AS profile_id, cdp.person_stripe(a.p) AS stripe FROM cdp.campaign_audience(audience, at) a(p);
	-- every stripe of the audience locked first, in order (at most 1,024
	-- locks), before any budget row: the order cdp.decide takes them in,
	-- so that a campaign and decisions never wait for each other in a cycle
	FOR p IN SELECT DISTINCT ON (a.stripe) a.profile_id FROM cdp_audience a ORDER BY a.stripe LOOP
		PERFORM cdp.lock_person(p);
	END LOOP;
	FOR p IN SELECT a.profile_id FROM cdp_audience a ORDER BY a.stripe, a.profile_id LOOP
		SELECT * INTO d FROM cdp.decide_locked(p, plan_campaign.channel, at, cdp.offer_facts(p, at, needed), cid);
		n := n + 1;
		IF d.status = 'sent' THEN
			n_chosen := n_chosen + 1;
		ELSIF d.status = 'holdout' THEN
			n_hold := n_hold + 1;
		ELSIF d.status = 'suppressed' THEN
			k := split_part(d.reason, ':', 1);
			supp := jsonb_set(supp, ARRAY[k], to_jsonb(coalesce((supp->>k)::bigint, 0) + 1));
		ELSE
			n_none := n_none + 1;
		END IF;
	END LOOP;
	UPDATE cdp.campaigns c SET finished_at = clock_timestamp(), profiles = n, chosen = n_chosen, holdouts = n_hold,
	       suppressed = supp, without_offer = n_none
	WHERE c.campaign_id = cid;
	DROP TABLE cdp_audience;
	RETURN QUERY SELECT cid, n, n_chosen, n_hold, supp, n_none;
END
$$;
COMMENT ON FUNCTION cdp.plan_campaign(text, jsonb, timestamptz) IS 'Decides for a whole audience in one transaction, as cdp.decide does for each person (caps, budgets, consent, quiet hours, holdouts; contacts recorded with the campaign id): reports how many people were chosen, held out, suppressed by reason (cap, minimum gap, quiet hours, consent, ...) or left without an offer';
