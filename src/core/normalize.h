/*
 * normalize.h
 *	  Canonical forms of identifier values (e-mail addresses, phone numbers,
 *	  other identifiers), independent of PostgreSQL.
 *
 * Customers and systems write one identifier in many ways: " Ann.Smith@
 * Example.COM " and "ann.smith@example.com", or "07700 900123", "+44 (0)7700
 * 900123" and "0044 7700-900-123".  Identity resolution can only match them
 * once each is written one way.  Every normalizer here either writes that
 * canonical form into a caller buffer and returns its length, or refuses the
 * value, returns -1 and points *why at a short lower-case phrase ("has no @",
 * "is too short for GB") that the caller stores.  A value is never guessed:
 * what cannot be read one way only is refused.
 *
 * All inputs are byte strings of len bytes, NOT NUL-terminated, never read
 * past len (s may be NULL when len is 0); UTF-8 may appear.  Outputs are
 * NUL-terminated.  If outsz cannot hold the output and its NUL, the value is
 * refused with "is too long" (CDP_MAX_NORMALIZED is always enough).  On
 * refusal out holds the empty string when outsz > 0.  why may be NULL.
 *
 * E-mail, cdp_normalize_email()
 *	  Does: trims ASCII white space and no-break spaces (U+00A0) at both
 *	  ends; lower-cases ASCII letters in both parts (CDPs treat addresses
 *	  case-insensitively, as nearly every mail system does); checks a
 *	  practical subset of RFC 5321/5322: exactly one @; a local part of 1..64
 *	  bytes of ASCII letters, digits, !#$%&'*+/=?^_`{|}~- and dots, with no
 *	  leading, trailing or consecutive dot; a domain (at most 252 bytes, as
 *	  the whole address is at most 254, within RFC 5321's 253) of at least
 *	  two labels, each 1..63 bytes of letters, digits and hyphens (not
 *	  at either end), where well-formed UTF-8 letters are allowed for
 *	  internationalized domains and kept as written; a top-level domain of at
 *	  least 2 bytes and not all digits; 254 bytes at most in all.
 *	  Refuses: quoted local parts, IP address literals ([192.0.2.1]), white
 *	  space or control characters inside, non-ASCII local parts (SMTPUTF8),
 *	  malformed UTF-8, and spaces, punctuation and invisible characters
 *	  (no-break space, zero-width space, ideographic full stop...) inside a
 *	  domain.
 *	  Does not: remove dots or +tags (ann.smith+news@gmail.com stays as is:
 *	  which addresses are aliases is a provider's own rule, and guessing it
 *	  would merge different people); strip display names, "mailto:" or <>
 *	  (refused instead); convert between Unicode and punycode ("xn--") domain
 *	  forms, apply IDNA2008 rules or lower-case non-ASCII letters; check that
 *	  the domain exists or accepts mail.
 *
 * Phone, cdp_normalize_phone()
 *	  Output: E.164, "+" then the country calling code and the national
 *	  significant number, digits only ("+447700900123").
 *	  Reads: digits with separators (spaces, tabs, - . / ( ), no-break and
 *	  other Unicode spaces, Unicode hyphens and dashes, invisible formatting
 *	  marks); a single leading "+"; "(0)" right after the country code (or at
 *	  the start of a national number), dropped as in "+44 (0)7700 900123",
 *	  where the trunk prefix is 0 or the calling code has no plan in the
 *	  table (Italy has none: "+39 (0)6..." is refused, not guessed).
 *	  International forms: "+CC...", or the default country's international
 *	  prefix then CC ("00" in most countries, "011" in the North American
 *	  Numbering Plan, "0011" in Australia, "010" in Japan, "810" in Russia and
 *	  Kazakhstan; none for Brazil and Singapore, whose prefixes carry a
 *	  carrier code: write "+" there).  Without a default country, or with one
 *	  not in the table, only "+" and "00" are read as international.
 *	  A trunk 0 written after the country code ("+44 07700 900123") is
 *	  dropped for the countries of the table whose trunk prefix is 0.
 *	  National forms (no + nor international prefix): the default country's
 *	  trunk prefix, if present, is removed ("0" in most of Europe, "1" in the
 *	  NANP, "8" in Russia and Kazakhstan, "06" in Hungary; none in Italy,
 *	  Spain, Portugal, Greece, Denmark, Norway, Luxembourg, Poland, the Czech
 *	  Republic, Mexico, Singapore: there a leading 0 is part of the number),
 *	  then its calling code is prepended.
 *	  Checks: the calling code against the ITU-T E.164 list of assigned codes;
 *	  the length of the national significant number against the numbering
 *	  plan of the countries of the table (with mobile and other ranges of a
 *	  fixed length where the plan has several lengths, so that a GB mobile
 *	  number one digit short is refused); in the NANP, 10 digits with an area
 *	  code and an exchange code not starting with 0 or 1; for other calling
 *	  codes, 8 to 15 digits in all (15 is E.164's maximum), except the 4- to
 *	  7-digit numbers of Saint Helena, Niue and Tokelau, which have plans.
 *	  Default countries (numbering plans of their own): AT AU AX BE BR CH CN
 *	  CZ DE DK ES FI FR GB (also "UK") GG GR HU IE IL IM IN IT JE JP KZ LU MX
 *	  NL NO NZ PL PT RO RU SE SG SK TR VA ZA, and the NANP's AG AI AS BB BM
 *	  BS CA DM DO GD GU JM KN KY LC MP MS PR SX TC TT US VC VG VI.
 *	  Refuses: letters ("has letters"), extensions ("x123", "ext. 123",
 *	  "#123", ";ext=123": "has an extension"), any other character, a + or
 *	  (0) elsewhere, a national number without a (known) default country.
 *	  Does not: check that a number is assigned, in service or a mobile, nor
 *	  whether an NANP area code exists; judge junk such as 0000000000 or
 *	  1234567890 (the identifier blocklist does); read vanity letters,
 *	  non-ASCII digits, carrier selection codes or old dialling formats (the
 *	  Mexican 01/044/045 and +52 1 forms were withdrawn in 2019 and are
 *	  refused as too long).
 *
 * Other identifiers, cdp_normalize_trim()
 *	  Trims ASCII white space and no-break spaces at both ends; refuses empty
 *	  and blank values and control characters (C0, DEL and C1).  Case and
 *	  everything else are kept: customer numbers and device ids are opaque.
 */
#ifndef CDP_NORMALIZE_H
#define CDP_NORMALIZE_H

#include <stddef.h>

/* Size of the output buffer callers pass; always enough. */
#define CDP_MAX_NORMALIZED			320

/* RFC 5321 limits, in bytes. */
#define CDP_MAX_EMAIL_LEN			254
#define CDP_MAX_EMAIL_LOCAL_LEN		64
#define CDP_MAX_EMAIL_LABEL_LEN		63

/* E.164: at most 15 digits after the +. */
#define CDP_MAX_E164_DIGITS			15

/* E-mail: trim, lower-case ASCII letters, check syntax. */
extern int	cdp_normalize_email(const char *s, size_t len, char *out, size_t outsz,
								const char **why);

/*
 * Phone: to E.164 (+ and digits), reading national numbers in the default
 * country (ISO 3166 alpha-2, upper or lower case; NULL or "" for none).
 */
extern int	cdp_normalize_phone(const char *s, size_t len, const char *country,
								char *out, size_t outsz, const char **why);

/* Generic identifier: trim white space; refuse empty values and control characters. */
extern int	cdp_normalize_trim(const char *s, size_t len, char *out, size_t outsz,
							   const char **why);

/* Is the country code one cdp_normalize_phone knows as a default country? 1 or 0. */
extern int	cdp_phone_country_known(const char *country);

#endif							/* CDP_NORMALIZE_H */
