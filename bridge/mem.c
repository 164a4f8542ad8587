/*
 * mem.c — allocation that never returns NULL (see mem.h).
 */
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
mem_exhausted(void)
{
	fprintf(stderr, "comet-bridge: out of memory\n");
	abort();
}

void *
mem_alloc(size_t size)
{
	void	   *p = calloc(1, size ? size : 1);

	if (p == NULL)
		mem_exhausted();
	return p;
}

void *
mem_realloc(void *ptr, size_t size)
{
	void	   *p = realloc(ptr, size ? size : 1);

	if (p == NULL)
		mem_exhausted();
	return p;
}

char *
mem_strdup(const char *s)
{
	size_t		len;
	char	   *copy;

	if (s == NULL)
		return NULL;
	len = strlen(s);
	copy = mem_alloc(len + 1);
	memcpy(copy, s, len);
	return copy;
}
