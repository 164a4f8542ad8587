/*
 * mem.h — the bridge's allocation functions.
 *
 * Running out of memory aborts the process with a message: the bridge
 * bounds every input it keeps (--max-body, --max-pending, --max-sessions),
 * so there is no request it could still answer sensibly without memory.
 */
#ifndef COMET_MEM_H
#define COMET_MEM_H

#include <stddef.h>

/* Zeroed memory. */
void	   *mem_alloc(size_t size);
void	   *mem_realloc(void *ptr, size_t size);
/* A copy of s, or NULL when s is NULL. */
char	   *mem_strdup(const char *s);
/* Say so on stderr and abort. */
void		mem_exhausted(void) __attribute__((noreturn));

#endif							/* COMET_MEM_H */
