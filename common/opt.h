/*
 * opt.h - one table of options drives the config file, the command-line flags, --help
 * and the config dump.
 *
 * A program declares a static array of struct flr_opt, terminated by an entry whose name
 * is NULL, each pointing (by offset) at a field of its config struct.  flr_opts_parse()
 * then:
 *   1. applies every default;
 *   2. reads the file named by --config FILE (or -c FILE), if any: lines "name = value",
 *      '#' comments, blank lines; unknown names and bad values are errors that name the
 *      file and line;
 *   3. applies the command-line flags "--name value" or "--name=value" (booleans also as
 *      "--name" and "--no-name"), which override the file;
 *   4. checks bounds and choices.
 * --help prints the generated usage, --version the version, --dump-config the effective
 * configuration in config-file syntax; each sets *exit_now so that main returns 0.
 */
#ifndef FLR_OPT_H
#define FLR_OPT_H

#include <stddef.h>
#include <stdio.h>

enum flr_opt_type {
    FLR_OPT_BOOL,   /* int: 0/1; values true/false/yes/no/on/off/1/0 */
    FLR_OPT_INT,    /* long long, bounds min..max */
    FLR_OPT_DOUBLE, /* double, bounds min..max */
    FLR_OPT_STRING, /* char[size] inline buffer */
    FLR_OPT_ENUM    /* int: index into choices */
};

struct flr_opt {
    const char *name; /* config key and --flag ("session-timeout") */
    enum flr_opt_type type;
    size_t offset;              /* offsetof(struct cfg, field) */
    size_t size;                /* FLR_OPT_STRING: buffer size */
    const char *defval;         /* default as text, NULL = zero/empty */
    double min, max;            /* numeric bounds (ignored when min == max == 0) */
    const char *const *choices; /* FLR_OPT_ENUM: NULL-terminated names */
    const char *metavar;        /* shown in --help, e.g. "HOST:PORT" */
    const char *help;           /* one line */
};

/* Convenience initialisers (designated, so tables read like documentation). */
#define FLR_OPT_B(nm, st, fld, def, hlp)                                                           \
    {                                                                                              \
        .name = nm, .type = FLR_OPT_BOOL, .offset = offsetof(st, fld), .defval = def, .help = hlp  \
    }
#define FLR_OPT_I(nm, st, fld, def, lo, hi, mv, hlp)                                               \
    {                                                                                              \
        .name = nm, .type = FLR_OPT_INT, .offset = offsetof(st, fld), .defval = def, .min = lo,    \
        .max = hi, .metavar = mv, .help = hlp                                                      \
    }
#define FLR_OPT_D(nm, st, fld, def, lo, hi, mv, hlp)                                               \
    {                                                                                              \
        .name = nm, .type = FLR_OPT_DOUBLE, .offset = offsetof(st, fld), .defval = def, .min = lo, \
        .max = hi, .metavar = mv, .help = hlp                                                      \
    }
#define FLR_OPT_S(nm, st, fld, def, mv, hlp)                                                       \
    {                                                                                              \
        .name = nm, .type = FLR_OPT_STRING, .offset = offsetof(st, fld),                           \
        .size = sizeof(((st *)0)->fld), .defval = def, .metavar = mv, .help = hlp                  \
    }
#define FLR_OPT_E(nm, st, fld, def, ch, hlp)                                                       \
    {                                                                                              \
        .name = nm, .type = FLR_OPT_ENUM, .offset = offsetof(st, fld), .defval = def,              \
        .choices = ch, .help = hlp                                                                 \
    }

struct flr_opts_info {
    const char *prog;    /* "flr-server" */
    const char *summary; /* one line shown at the top of --help */
    const char *version; /* shown by --version */
};

/*
 * Parses as described above into cfg.  Returns 0 on success (check *exit_now), or
 * FLR_ECONFIG with a one-line reason in why ("--staleness: 'x' is not an integer",
 * "job.conf:7: unknown option 'stalenes'").  Positional arguments are errors.
 * out receives --help/--version/--dump-config output (stdout in programs).
 */
int flr_opts_parse(const struct flr_opt *table, void *cfg, const struct flr_opts_info *info,
                   int argc, char **argv, FILE *out, int *exit_now, char *why, size_t whylen);

/* Applies the defaults only (for tests and embedders). */
int flr_opts_defaults(const struct flr_opt *table, void *cfg, char *why, size_t whylen);

/* Sets one option from text, as the file parser and the flags do. */
int flr_opts_set(const struct flr_opt *table, void *cfg, const char *name, const char *value,
                 char *why, size_t whylen);

/* Writes the effective configuration in config-file syntax. */
void flr_opts_dump(const struct flr_opt *table, const void *cfg, FILE *out);

/* Writes the generated usage. */
void flr_opts_help(const struct flr_opt *table, const struct flr_opts_info *info, FILE *out);

#endif
