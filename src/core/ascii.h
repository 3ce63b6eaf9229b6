/*
 * ascii.h
 *	  ASCII character classes shared by the pure-C core (locale-independent,
 *	  unlike <ctype.h>; bytes of UTF-8 sequences are never in these classes).
 */
#ifndef CDP_ASCII_H
#define CDP_ASCII_H

/* True for the ASCII white space characters. */
static inline int
cdp_is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* True for ASCII control characters (C0 and DEL). */
static inline int
cdp_is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* True for an ASCII digit. */
static inline int
cdp_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

#endif							/* CDP_ASCII_H */
