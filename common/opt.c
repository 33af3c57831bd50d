/*
 * opt.c - the options table: defaults, config file, flags, --help and --dump-config.
 *
 * Every value, whatever its source, goes through opt_set_value(), which parses the text
 * for the option's type and checks its bounds or choices at once, so that an error can
 * name the flag or the file and line it came from.
 *
 * Config file syntax, one setting per line:
 *
 *     # a comment
 *     name = value          # unquoted: '#' starts a comment, blanks around are trimmed
 *     name = "a #value "    # quoted: kept as is; escapes \" \\ \n \t
 *
 * flr_opts_dump() quotes a string only when it must (empty, blanks at either end, '#',
 * '"', '\\' or control characters), so that reading a dump back gives the same config.
 *
 * Flags: "--name value" and "--name=value"; a boolean never takes the next argument as
 * its value ("--name" sets it, "--no-name" clears it, "--name=false" also works).  The
 * command line is scanned twice: once to find --config, --help, --version and
 * --dump-config and to reject malformed flags, once more after the file has been read to
 * apply the flags, so that flags override the file wherever they appear.
 */
#include "opt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"

/* How much of an offending value an error message quotes. */
#define OPT_QUOTE_MAX 48

/* Column at which --help starts the help text. */
#define OPT_HELP_COL 32

/* Prepends "prefix: " to the reason already in why. */
static void opt_why_prefix(char *why, size_t whylen, const char *prefix)
{
    char tmp[512];

    if (!why || whylen == 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s", why);
    flr_why(why, whylen, "%s: %s", prefix, tmp);
}

/* An ellipsis when a quoted value is cut short in a message. */
static const char *opt_ell(const char *v)
{
    return strlen(v) > OPT_QUOTE_MAX ? "..." : "";
}

static const struct flr_opt *opt_find(const struct flr_opt *table, const char *name, size_t len)
{
    for (const struct flr_opt *o = table; o->name; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static int opt_has_bounds(const struct flr_opt *o)
{
    return !(o->min == 0 && o->max == 0);
}

static void *opt_field(const struct flr_opt *o, void *cfg)
{
    return (char *)cfg + o->offset;
}

static const void *opt_cfield(const struct flr_opt *o, const void *cfg)
{
    return (const char *)cfg + o->offset;
}

static int opt_parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Formats a numeric bound: integral values without a fraction, others as %g; the 64-bit
 * integer limits read as what they mean. */
static void opt_fmt_bound(char *buf, size_t len, double b)
{
    if (b >= 9.2e18)
        snprintf(buf, len, "max");
    else if (b <= -9.2e18)
        snprintf(buf, len, "min");
    else if (b == floor(b) && fabs(b) < 9.0e15)
        snprintf(buf, len, "%.0f", b);
    else
        snprintf(buf, len, "%g", b);
}

static int opt_range_error(const struct flr_opt *o, const char *v, char *why, size_t whylen)
{
    char lo[32], hi[32];

    opt_fmt_bound(lo, sizeof(lo), o->min);
    opt_fmt_bound(hi, sizeof(hi), o->max);
    flr_why(why, whylen, "%.*s%s is out of range [%s, %s]", OPT_QUOTE_MAX, v, opt_ell(v), lo, hi);
    return FLR_ECONFIG;
}

static int opt_set_int(const struct flr_opt *o, void *cfg, const char *v, char *why, size_t whylen)
{
    char *end;
    long long n;

    /* strtoll() would skip leading blanks and accept an empty string as 0. */
    if (!((v[0] >= '0' && v[0] <= '9') || v[0] == '-' || v[0] == '+'))
        goto not_int;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (end == v || *end != '\0')
        goto not_int;
    if (errno == ERANGE) {
        flr_why(why, whylen, "'%.*s%s' does not fit in a 64-bit integer", OPT_QUOTE_MAX, v,
                opt_ell(v));
        return FLR_ECONFIG;
    }
    if (opt_has_bounds(o) && ((double)n < o->min || (double)n > o->max))
        return opt_range_error(o, v, why, whylen);
    memcpy(opt_field(o, cfg), &n, sizeof(n));
    return 0;
not_int:
    flr_why(why, whylen, "'%.*s%s' is not an integer", OPT_QUOTE_MAX, v, opt_ell(v));
    return FLR_ECONFIG;
}

static int opt_set_double(const struct flr_opt *o, void *cfg, const char *v, char *why,
                          size_t whylen)
{
    char *end;
    double d;

    /* strtod() would skip leading blanks. */
    if (v[0] == '\0' || isspace((unsigned char)v[0]))
        goto not_num;
    errno = 0;
    d = strtod(v, &end);
    if (end == v || *end != '\0')
        goto not_num;
    if (isnan(d))
        goto not_num;
    /* Underflow to a tiny value is harmless; overflow is not a number we can hold. */
    if (errno == ERANGE && isinf(d)) {
        flr_why(why, whylen, "'%.*s%s' is out of range for a double", OPT_QUOTE_MAX, v, opt_ell(v));
        return FLR_ECONFIG;
    }
    if (opt_has_bounds(o)) {
        if (d < o->min || d > o->max)
            return opt_range_error(o, v, why, whylen);
    } else if (isinf(d)) {
        flr_why(why, whylen, "'%s' is not a finite number", v);
        return FLR_ECONFIG;
    }
    memcpy(opt_field(o, cfg), &d, sizeof(d));
    return 0;
not_num:
    flr_why(why, whylen, "'%.*s%s' is not a number", OPT_QUOTE_MAX, v, opt_ell(v));
    return FLR_ECONFIG;
}

static int opt_set_string(const struct flr_opt *o, void *cfg, const char *v, char *why,
                          size_t whylen)
{
    size_t n = strlen(v);

    if (n >= o->size) {
        flr_why(why, whylen, "'%.*s%s' is too long (%zu bytes, at most %zu)", OPT_QUOTE_MAX, v,
                opt_ell(v), n, o->size ? o->size - 1 : 0);
        return FLR_ECONFIG;
    }
    memcpy(opt_field(o, cfg), v, n + 1);
    return 0;
}

static int opt_set_enum(const struct flr_opt *o, void *cfg, const char *v, char *why, size_t whylen)
{
    char list[256];
    size_t used = 0;
    int i;

    for (i = 0; o->choices && o->choices[i]; i++) {
        if (strcmp(o->choices[i], v) == 0) {
            memcpy(opt_field(o, cfg), &i, sizeof(i));
            return 0;
        }
    }
    list[0] = '\0';
    for (i = 0; o->choices && o->choices[i] && used < sizeof(list); i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", o->choices[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    flr_why(why, whylen, "'%.*s%s' is not one of %s", OPT_QUOTE_MAX, v, opt_ell(v), list);
    return FLR_ECONFIG;
}

/* Parses v for o and stores it; on failure leaves the field alone and writes the problem
 * (without any prefix) to why. */
static int opt_set_value(const struct flr_opt *o, void *cfg, const char *v, char *why,
                         size_t whylen)
{
    int b;

    switch (o->type) {
    case FLR_OPT_BOOL:
        if (opt_parse_bool(v, &b) != 0) {
            flr_why(why, whylen, "'%.*s%s' is not a boolean (true/false, yes/no, on/off, 1/0)",
                    OPT_QUOTE_MAX, v, opt_ell(v));
            return FLR_ECONFIG;
        }
        memcpy(opt_field(o, cfg), &b, sizeof(b));
        return 0;
    case FLR_OPT_INT:
        return opt_set_int(o, cfg, v, why, whylen);
    case FLR_OPT_DOUBLE:
        return opt_set_double(o, cfg, v, why, whylen);
    case FLR_OPT_STRING:
        return opt_set_string(o, cfg, v, why, whylen);
    case FLR_OPT_ENUM:
        return opt_set_enum(o, cfg, v, why, whylen);
    }
    flr_why(why, whylen, "option has an unknown type %d", (int)o->type);
    return FLR_ECONFIG;
}

int flr_opts_defaults(const struct flr_opt *table, void *cfg, char *why, size_t whylen)
{
    for (const struct flr_opt *o = table; o->name; o++) {
        int zero = 0;
        long long llzero = 0;
        double dzero = 0;
        int rv;

        if (o->defval) {
            if ((rv = opt_set_value(o, cfg, o->defval, why, whylen)) != 0) {
                char prefix[128];
                snprintf(prefix, sizeof(prefix), "default of %s", o->name);
                opt_why_prefix(why, whylen, prefix);
                return rv;
            }
            continue;
        }
        switch (o->type) {
        case FLR_OPT_BOOL:
        case FLR_OPT_ENUM:
            memcpy(opt_field(o, cfg), &zero, sizeof(zero));
            break;
        case FLR_OPT_INT:
            memcpy(opt_field(o, cfg), &llzero, sizeof(llzero));
            break;
        case FLR_OPT_DOUBLE:
            memcpy(opt_field(o, cfg), &dzero, sizeof(dzero));
            break;
        case FLR_OPT_STRING:
            if (o->size == 0) {
                flr_why(why, whylen, "%s: string option without a buffer size", o->name);
                return FLR_ECONFIG;
            }
            memset(opt_field(o, cfg), 0, o->size);
            break;
        }
    }
    return 0;
}

int flr_opts_set(const struct flr_opt *table, void *cfg, const char *name, const char *value,
                 char *why, size_t whylen)
{
    const struct flr_opt *o = opt_find(table, name, strlen(name));
    int rv;

    if (!o) {
        flr_why(why, whylen, "unknown option '%.*s%s'", OPT_QUOTE_MAX, name, opt_ell(name));
        return FLR_ECONFIG;
    }
    if ((rv = opt_set_value(o, cfg, value, why, whylen)) != 0)
        opt_why_prefix(why, whylen, o->name);
    return rv;
}

/* --- config file ------------------------------------------------------------------------ */

static int opt_isblank(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Splits one line (modified in place) into *name and *value.  Returns 1 for a setting, 0
 * for a blank or comment line, -1 with a reason in why for a malformed line.
 */
static int opt_split_line(char *line, char **name, char **value, char *why, size_t whylen)
{
    char *p = line, *eq, *end, *v, *w;

    while (opt_isblank(*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    eq = strchr(p, '=');
    if (!eq || eq == p) {
        flr_why(why, whylen, "expected 'name = value'");
        return -1;
    }
    end = eq;
    while (end > p && opt_isblank(end[-1]))
        end--;
    *end = '\0';
    *name = p;

    v = eq + 1;
    while (opt_isblank(*v))
        v++;
    if (*v != '"') {
        char *hash = strchr(v, '#');
        end = hash ? hash : v + strlen(v);
        while (end > v && opt_isblank(end[-1]))
            end--;
        *end = '\0';
        *value = v;
        return 1;
    }
    /* Quoted: unescape in place; the result is never longer than the source. */
    w = v;
    for (p = v + 1;; p++) {
        if (*p == '\0') {
            flr_why(why, whylen, "unterminated quoted value");
            return -1;
        }
        if (*p == '"')
            break;
        if (*p != '\\') {
            *w++ = *p;
            continue;
        }
        switch (*++p) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 't':
            *w++ = '\t';
            break;
        default:
            if (*p == '\0')
                flr_why(why, whylen, "unterminated quoted value");
            else
                flr_why(why, whylen, "unknown escape '\\%c' in quoted value", *p);
            return -1;
        }
    }
    for (p++; opt_isblank(*p); p++)
        ;
    if (*p != '\0' && *p != '#') {
        flr_why(why, whylen, "unexpected text after the closing quote");
        return -1;
    }
    *w = '\0';
    *value = v;
    return 1;
}

static int opt_read_file(const struct flr_opt *table, void *cfg, const char *path, char *why,
                         size_t whylen)
{
    FILE *f;
    char *line = NULL, *name, *value;
    size_t cap = 0;
    ssize_t n;
    unsigned lineno = 0;
    int rv = 0;

    if (!(f = fopen(path, "r"))) {
        flr_why(why, whylen, "%s: cannot open: %s", path, strerror(errno));
        return FLR_ECONFIG;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        char prefix[512];
        const struct flr_opt *o;
        int k;

        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        snprintf(prefix, sizeof(prefix), "%s:%u", path, lineno);
        if ((size_t)n != strlen(line)) {
            flr_why(why, whylen, "%s: NUL byte in line", prefix);
            rv = FLR_ECONFIG;
            goto out;
        }
        if ((k = opt_split_line(line, &name, &value, why, whylen)) == 0)
            continue;
        if (k < 0) {
            opt_why_prefix(why, whylen, prefix);
            rv = FLR_ECONFIG;
            goto out;
        }
        if (!(o = opt_find(table, name, strlen(name)))) {
            flr_why(why, whylen, "%s: unknown option '%.*s%s'", prefix, OPT_QUOTE_MAX, name,
                    opt_ell(name));
            rv = FLR_ECONFIG;
            goto out;
        }
        if ((rv = opt_set_value(o, cfg, value, why, whylen)) != 0) {
            snprintf(prefix, sizeof(prefix), "%s:%u: %s", path, lineno, o->name);
            opt_why_prefix(why, whylen, prefix);
            goto out;
        }
    }
    if (ferror(f)) {
        flr_why(why, whylen, "%s: read error: %s", path, strerror(errno));
        rv = FLR_ECONFIG;
    }
out:
    free(line);
    fclose(f);
    return rv;
}

/* --- command line ------------------------------------------------------------------------ */

enum opt_action { OPT_RUN = 0, OPT_HELP, OPT_VERSION };

struct opt_scan {
    const char *config;   /* last --config/-c value, or NULL */
    int dump;             /* --dump-config seen */
    enum opt_action stop; /* --help or --version seen first */
};

/*
 * Walks argv.  With apply == 0 it fills sc and checks the shape of every flag (unknown
 * names, missing values, positional arguments), stopping at --help or --version; with
 * apply != 0 it stores every option value into cfg.
 */
static int opt_scan_args(const struct flr_opt *table, void *cfg, int argc, char **argv, int apply,
                         struct opt_scan *sc, char *why, size_t whylen)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *name, *eq, *value;
        const struct flr_opt *o;
        size_t nlen;
        int negate = 0, rv;

        if (strcmp(arg, "--") == 0) {
            if (i + 1 < argc) {
                flr_why(why, whylen, "unexpected argument '%.*s%s'", OPT_QUOTE_MAX, argv[i + 1],
                        opt_ell(argv[i + 1]));
                return FLR_ECONFIG;
            }
            break;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            sc->stop = OPT_HELP;
            return 0;
        }
        if (strcmp(arg, "--version") == 0) {
            sc->stop = OPT_VERSION;
            return 0;
        }
        if (strcmp(arg, "--dump-config") == 0) {
            sc->dump = 1;
            continue;
        }
        if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
            if (i + 1 >= argc) {
                flr_why(why, whylen, "%s: missing value", arg);
                return FLR_ECONFIG;
            }
            sc->config = argv[++i];
            continue;
        }
        if (strncmp(arg, "--config=", 9) == 0) {
            sc->config = arg + 9;
            continue;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            flr_why(why, whylen, "unexpected argument '%.*s%s'", OPT_QUOTE_MAX, arg, opt_ell(arg));
            return FLR_ECONFIG;
        }
        if (arg[1] != '-') {
            flr_why(why, whylen, "%.*s%s: unknown option", OPT_QUOTE_MAX, arg, opt_ell(arg));
            return FLR_ECONFIG;
        }

        name = arg + 2;
        eq = strchr(name, '=');
        nlen = eq ? (size_t)(eq - name) : strlen(name);
        o = opt_find(table, name, nlen);
        if (!o && nlen > 3 && memcmp(name, "no-", 3) == 0) {
            o = opt_find(table, name + 3, nlen - 3);
            if (o && o->type == FLR_OPT_BOOL)
                negate = 1;
            else
                o = NULL;
        }
        if (!o) {
            flr_why(why, whylen, "--%.*s: unknown option", (int)(nlen < 64 ? nlen : 64), name);
            return FLR_ECONFIG;
        }
        if (negate) {
            if (eq) {
                flr_why(why, whylen, "--%.*s: takes no value", (int)nlen, name);
                return FLR_ECONFIG;
            }
            value = "false";
        } else if (eq) {
            value = eq + 1;
        } else if (o->type == FLR_OPT_BOOL) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            flr_why(why, whylen, "--%s: missing value", o->name);
            return FLR_ECONFIG;
        }
        if (!apply)
            continue;
        if ((rv = opt_set_value(o, cfg, value, why, whylen)) != 0) {
            char prefix[128];
            snprintf(prefix, sizeof(prefix), "--%.*s", (int)(nlen < 64 ? nlen : 64), name);
            opt_why_prefix(why, whylen, prefix);
            return rv;
        }
    }
    return 0;
}

int flr_opts_parse(const struct flr_opt *table, void *cfg, const struct flr_opts_info *info,
                   int argc, char **argv, FILE *out, int *exit_now, char *why, size_t whylen)
{
    struct opt_scan sc = {0};
    int rv;

    *exit_now = 0;
    if ((rv = flr_opts_defaults(table, cfg, why, whylen)) != 0)
        return rv;
    if ((rv = opt_scan_args(table, cfg, argc, argv, 0, &sc, why, whylen)) != 0)
        return rv;
    if (sc.stop == OPT_HELP) {
        flr_opts_help(table, info, out);
        *exit_now = 1;
        return 0;
    }
    if (sc.stop == OPT_VERSION) {
        fprintf(out, "%s %s\n", info && info->prog ? info->prog : "flr",
                info && info->version ? info->version : "");
        *exit_now = 1;
        return 0;
    }
    if (sc.config && (rv = opt_read_file(table, cfg, sc.config, why, whylen)) != 0)
        return rv;
    if ((rv = opt_scan_args(table, cfg, argc, argv, 1, &sc, why, whylen)) != 0)
        return rv;
    if (sc.dump) {
        flr_opts_dump(table, cfg, out);
        *exit_now = 1;
    }
    return 0;
}

/* --- output ------------------------------------------------------------------------------ */

/* Writes the shortest %g form of d that reads back as exactly d. */
static void opt_fmt_double(char *buf, size_t len, double d)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

static int opt_needs_quotes(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || opt_isblank(s[0]) || opt_isblank(s[n - 1]) || s[0] == '"')
        return 1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '#' || *p == '\\' || *p == '"' || *p < 0x20 || *p == 0x7f)
            return 1;
    return 0;
}

static void opt_write_quoted(const char *s, FILE *out)
{
    fputc('"', out);
    for (; *s; s++) {
        switch (*s) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            fputc(*s, out);
        }
    }
    fputc('"', out);
}

void flr_opts_dump(const struct flr_opt *table, const void *cfg, FILE *out)
{
    for (const struct flr_opt *o = table; o->name; o++) {
        const void *f = opt_cfield(o, cfg);
        char buf[64];
        long long ll;
        double d;
        int i;

        fprintf(out, "%s = ", o->name);
        switch (o->type) {
        case FLR_OPT_BOOL:
            memcpy(&i, f, sizeof(i));
            fputs(i ? "true" : "false", out);
            break;
        case FLR_OPT_INT:
            memcpy(&ll, f, sizeof(ll));
            fprintf(out, "%lld", ll);
            break;
        case FLR_OPT_DOUBLE:
            memcpy(&d, f, sizeof(d));
            opt_fmt_double(buf, sizeof(buf), d);
            fputs(buf, out);
            break;
        case FLR_OPT_STRING: {
            /* The buffer may lack a NUL if the program wrote it directly. */
            size_t n = o->size ? strnlen(f, o->size) : 0;
            char *s = malloc(n + 1);
            if (s) {
                memcpy(s, f, n);
                s[n] = '\0';
                if (opt_needs_quotes(s))
                    opt_write_quoted(s, out);
                else
                    fputs(s, out);
                free(s);
            }
            break;
        }
        case FLR_OPT_ENUM: {
            int n = 0;
            memcpy(&i, f, sizeof(i));
            while (o->choices && o->choices[n])
                n++;
            if (i >= 0 && i < n)
                fputs(o->choices[i], out);
            else
                fprintf(out, "%d", i);
            break;
        }
        }
        fputc('\n', out);
    }
}

/* The metavar shown after a flag in --help. */
static void opt_metavar(const struct flr_opt *o, char *buf, size_t len)
{
    size_t used = 0;

    if (o->metavar) {
        snprintf(buf, len, "%s", o->metavar);
        return;
    }
    switch (o->type) {
    case FLR_OPT_BOOL:
        buf[0] = '\0';
        return;
    case FLR_OPT_INT:
        snprintf(buf, len, "N");
        return;
    case FLR_OPT_DOUBLE:
        snprintf(buf, len, "X");
        return;
    case FLR_OPT_STRING:
        snprintf(buf, len, "STRING");
        return;
    case FLR_OPT_ENUM:
        buf[0] = '\0';
        for (int i = 0; o->choices && o->choices[i] && used < len; i++) {
            int n = snprintf(buf + used, len - used, "%s%s", i ? "|" : "", o->choices[i]);
            if (n < 0)
                break;
            used += (size_t)n;
        }
        return;
    }
    buf[0] = '\0';
}

static void opt_help_line(FILE *out, const char *left, const char *help)
{
    int n = fprintf(out, "%s", left);

    if (n >= OPT_HELP_COL - 1) {
        fputc('\n', out);
        n = 0;
    }
    fprintf(out, "%*s%s\n", OPT_HELP_COL - n, "", help);
}

void flr_opts_help(const struct flr_opt *table, const struct flr_opts_info *info, FILE *out)
{
    const char *prog = info && info->prog ? info->prog : "flr";

    fprintf(out, "Usage: %s [OPTIONS]\n", prog);
    if (info && info->summary)
        fprintf(out, "%s\n", info->summary);
    fprintf(out, "\nOptions (also \"name = value\" lines in the --config file):\n");
    for (const struct flr_opt *o = table; o->name; o++) {
        char left[256], mv[160], help[768], lo[32], hi[32];
        const char *def = o->defval;
        int n;

        opt_metavar(o, mv, sizeof(mv));
        if (o->type == FLR_OPT_BOOL)
            snprintf(left, sizeof(left), "  --[no-]%s", o->name);
        else
            snprintf(left, sizeof(left), "  --%s %s", o->name, mv);

        if (!def) {
            switch (o->type) {
            case FLR_OPT_BOOL:
                def = "false";
                break;
            case FLR_OPT_INT:
            case FLR_OPT_DOUBLE:
                def = "0";
                break;
            case FLR_OPT_STRING:
                def = "\"\"";
                break;
            case FLR_OPT_ENUM:
                def = o->choices && o->choices[0] ? o->choices[0] : "";
                break;
            }
        }
        n = snprintf(help, sizeof(help), "%s (", o->help ? o->help : "");
        if (o->type == FLR_OPT_ENUM) {
            n += snprintf(help + n, sizeof(help) - (size_t)n, "one of ");
            for (int i = 0; o->choices && o->choices[i] && (size_t)n < sizeof(help); i++)
                n += snprintf(help + n, sizeof(help) - (size_t)n, "%s%s", i ? ", " : "",
                              o->choices[i]);
            if ((size_t)n < sizeof(help))
                n += snprintf(help + n, sizeof(help) - (size_t)n, "; ");
        }
        if ((size_t)n < sizeof(help))
            n += snprintf(help + n, sizeof(help) - (size_t)n, "default: %s", def);
        if ((o->type == FLR_OPT_INT || o->type == FLR_OPT_DOUBLE) && opt_has_bounds(o) &&
            (size_t)n < sizeof(help)) {
            opt_fmt_bound(lo, sizeof(lo), o->min);
            opt_fmt_bound(hi, sizeof(hi), o->max);
            n += snprintf(help + n, sizeof(help) - (size_t)n, "; range %s..%s", lo, hi);
        }
        if ((size_t)n < sizeof(help))
            snprintf(help + n, sizeof(help) - (size_t)n, ")");
        opt_help_line(out, left, help);
    }
    opt_help_line(out, "  -c, --config FILE", "read options from FILE; flags override it");
    opt_help_line(out, "  --dump-config", "print the effective configuration and exit");
    opt_help_line(out, "  -h, --help", "print this help and exit");
    opt_help_line(out, "  --version", "print the version and exit");
}
