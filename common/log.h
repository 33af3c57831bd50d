/*
 * log.h - one line per event to stderr, syslog levels, a stable message id.
 *
 * Lines look like:  2026-11-21T13:15:43.123Z flr-server[1234] WARN srv.reject shard 3: ...
 * The id ("srv.reject") is stable across releases so that operators can grep and alert on
 * it.  The level is checked before any formatting happens, so a disabled debug line costs
 * one comparison.  Only process top levels log; library code returns errors instead.
 */
#ifndef FLR_LOG_H
#define FLR_LOG_H

#include <syslog.h>

/* Sets the program name shown in each line and the most verbose level printed
 * (LOG_ERR .. LOG_DEBUG). Call once from main before threads start. */
void flr_log_init(const char *prog, int level);

/* Parses "error", "warning", "notice", "info" or "debug"; returns -1 when unknown. */
int flr_log_level_parse(const char *name);

extern int flr_log_level_;

void flr_log_write(int level, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define flr_log(level, id, ...)                                                                    \
    do {                                                                                           \
        if ((level) <= flr_log_level_)                                                             \
            flr_log_write((level), (id), __VA_ARGS__);                                             \
    } while (0)

#define flr_err(id, ...)    flr_log(LOG_ERR, id, __VA_ARGS__)
#define flr_warn(id, ...)   flr_log(LOG_WARNING, id, __VA_ARGS__)
#define flr_notice(id, ...) flr_log(LOG_NOTICE, id, __VA_ARGS__)
#define flr_info(id, ...)   flr_log(LOG_INFO, id, __VA_ARGS__)
#define flr_debug(id, ...)  flr_log(LOG_DEBUG, id, __VA_ARGS__)

#endif
