/*
 * log.c — leveled log lines on stderr (see log.h).  Control characters in
 * messages (libpq's multi-line errors, client-supplied text) are written
 * as spaces, so that every event stays one readable line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static LogLevel log_threshold = LOG_INFO;

static const char *const log_names[] = {"debug", "info", "warn", "error"};

int
log_parse_level(const char *name)
{
	int			i;

	for (i = 0; i < 4; i++)
		if (strcmp(name, log_names[i]) == 0)
			return i;
	return -1;
}

void
log_set_level(LogLevel level)
{
	log_threshold = level;
}

void
log_line(LogLevel level, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	log_vline(level, fmt, args);
	va_end(args);
}

void
log_vline(LogLevel level, const char *fmt, va_list args)
{
	char		message[1024];
	size_t		len;
	size_t		i;

	if (level < log_threshold)
		return;
	vsnprintf(message, sizeof(message), fmt, args);
	len = strlen(message);
	while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == ' '))
		message[--len] = '\0';
	for (i = 0; i < len; i++)
		if ((unsigned char) message[i] < 0x20 || message[i] == 0x7f)
			message[i] = ' ';
	fprintf(stderr, "comet-bridge: %s: %s\n", log_names[level], message);
}
