/*
 * log.h — the bridge's log: one line per event on stderr,
 * "comet-bridge: LEVEL: message", filtered by --log-level.
 *
 * The level is the one piece of process-wide state outside the event
 * loop's owners; it is set once, at start-up, by main.c.
 */
#ifndef COMET_LOG_H
#define COMET_LOG_H

#include <stdarg.h>

typedef enum LogLevel
{
	LOG_DEBUG,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR
} LogLevel;

/* "debug", "info", "warn" or "error"; returns -1 for anything else. */
int			log_parse_level(const char *name);
void		log_set_level(LogLevel level);
/* One line; a trailing newline in the message is dropped. */
void		log_line(LogLevel level, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		log_vline(LogLevel level, const char *fmt, va_list args) __attribute__((format(printf, 2, 0)));

#define log_debug(...) log_line(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_line(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_line(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_line(LOG_ERROR, __VA_ARGS__)

#endif							/* COMET_LOG_H */
