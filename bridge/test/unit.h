/*
 * unit.h — a few lines of TAP for the bridge's unit tests.
 *
 *   UNIT_CHECK(cond, "what it shows")   prints "ok N - ..." or "not ok N - ..."
 *   return unit_done();                 prints "1..N" and "# all passed" when
 *                                       nothing failed; the exit status
 * Each test file is one program; its cases read as the behaviour they pin.
 */
#ifndef COMET_UNIT_H
#define COMET_UNIT_H

#include <stdio.h>

static int	unit_count;
static int	unit_failed;

#define UNIT_CHECK(cond, ...) \
	do { \
		int			unit_ok_ = !!(cond);	/* evaluated once */ \
		unit_count++; \
		if (unit_ok_) \
			printf("ok %d - ", unit_count); \
		else \
		{ \
			unit_failed++; \
			printf("not ok %d - ", unit_count); \
		} \
		printf(__VA_ARGS__); \
		printf("\n"); \
		if (!unit_ok_) \
			printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	} while (0)

static inline int
unit_done(void)
{
	printf("1..%d\n", unit_count);
	if (unit_failed == 0)
		printf("# all passed\n");
	else
		printf("# %d of %d failed\n", unit_failed, unit_count);
	return unit_failed == 0 ? 0 : 1;
}

#endif							/* COMET_UNIT_H */
