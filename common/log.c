#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int flr_log_level_ = LOG_INFO;
static const char *log_prog = "flr";

static const char *const log_names[] = {"EMERG", "ALERT", "CRIT", "ERROR",
                                        "WARN",  "NOTE",  "INFO", "DEBUG"};

void flr_log_init(const char *prog, int level)
{
    if (prog)
        log_prog = prog;
    if (level >= LOG_EMERG && level <= LOG_DEBUG)
        flr_log_level_ = level;
}

int flr_log_level_parse(const char *name)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {{"error", LOG_ERR},     {"warning", LOG_WARNING}, {"warn", LOG_WARNING},
                 {"notice", LOG_NOTICE}, {"info", LOG_INFO},       {"debug", LOG_DEBUG}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(name, names[i].name) == 0)
            return names[i].level;
    return -1;
}

void flr_log_write(int level, const char *id, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03dZ %s[%d] %s %s ",
                          (int)(tv.tv_usec / 1000), log_prog, (int)getpid(), log_names[level & 7],
                          id);
    if (n < sizeof(line)) {
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += (size_t)m;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line so that lines from several threads never interleave. */
    (void)!write(STDERR_FILENO, line, n);
}
