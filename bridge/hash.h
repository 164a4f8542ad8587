/*
 * hash.h — the hash of names for the bridge's tables (channels, sessions):
 * 64-bit FNV-1a.  The tables are private, so no seed is needed.
 */
#ifndef COMET_HASH_H
#define COMET_HASH_H

#include <stdint.h>

static inline uint64_t
hash_name(const char *name)
{
	uint64_t	h = UINT64_C(14695981039346656037);

	for (; *name; name++)
	{
		h ^= (unsigned char) *name;
		h *= UINT64_C(1099511628211);
	}
	return h;
}

#endif							/* COMET_HASH_H */
