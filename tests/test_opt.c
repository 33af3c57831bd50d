/* test_opt.c - the options table: defaults, file, flags, help, dump, errors. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/opt.h"

struct tcfg {
    int verbose;
    int daemon;
    long long staleness;
    long long offset;
    double lr;
    double ratio;
    double anyd;
    char zk[16];
    char tag[8];
    int consistency;
    int level;
};

static const char *const consistency_names[] = {"bsp", "ssp", "asp", NULL};
static const char *const level_names[] = {"low", "high", NULL};

static const struct flr_opt topts[] = {
    FLR_OPT_B("verbose", struct tcfg, verbose, NULL, "print more"),
    FLR_OPT_B("daemon", struct tcfg, daemon, "true", "run in the background"),
    FLR_OPT_I("staleness", struct tcfg, staleness, "3", 0, 1000000, "S", "SSP staleness bound"),
    FLR_OPT_I("offset", struct tcfg, offset, NULL, 0, 0, NULL, "an unbounded integer"),
    FLR_OPT_D("lr", struct tcfg, lr, "0.1", 1e-9, 10, "RATE", "learning rate"),
    FLR_OPT_D("ratio", struct tcfg, ratio, "inf", 0, INFINITY, "R", "a ratio, may be infinite"),
    FLR_OPT_D("anyd", struct tcfg, anyd, NULL, 0, 0, NULL, "an unbounded double"),
    FLR_OPT_S("zk", struct tcfg, zk, "127.0.0.1:2181", "HOST:PORT", "ZooKeeper address"),
    FLR_OPT_S("tag", struct tcfg, tag, NULL, NULL, "a short tag"),
    FLR_OPT_E("consistency", struct tcfg, consistency, "ssp", consistency_names,
              "consistency model"),
    FLR_OPT_E("level", struct tcfg, level, NULL, level_names, "a level"),
    {.name = NULL},
};

static const struct flr_opts_info tinfo = {
    .prog = "flr-test", .summary = "Tests the options table.", .version = "9.8.7"};

/* Runs flr_opts_parse over a NULL-terminated list of arguments; output goes to *outp
 * (malloc'd) when outp is not NULL. */
static int run_parse(struct tcfg *c, int *exit_now, char *why, size_t whylen, char **outp, ...)
{
    char *argv[32];
    int argc = 0;
    const char *a;
    va_list ap;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    int rv;

    assert_non_null(out);
    argv[argc++] = (char *)"flr-test";
    va_start(ap, outp);
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    memset(c, 0x5a, sizeof(*c));
    why[0] = '\0';
    rv = flr_opts_parse(topts, c, &tinfo, argc, argv, out, exit_now, why, whylen);
    fclose(out);
    if (outp)
        *outp = buf;
    else
        free(buf);
    return rv;
}

/* Writes text to a new temporary file; returns its malloc'd path. */
static char *write_temp(const char *text)
{
    char tmpl[] = "/tmp/flr-test-opt-XXXXXX";
    int fd = mkstemp(tmpl);
    FILE *f;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return strdup(tmpl);
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

static void test_defaults_are_applied(void **state)
{
    struct tcfg c;
    char why[256] = "";

    memset(&c, 0x5a, sizeof(c));
    assert_int_equal(flr_opts_defaults(topts, &c, why, sizeof(why)), 0);
    assert_int_equal(c.verbose, 0);
    assert_int_equal(c.daemon, 1);
    assert_int_equal(c.staleness, 3);
    assert_int_equal(c.offset, 0);
    assert_true(c.lr == 0.1);
    assert_true(isinf(c.ratio) && c.ratio > 0);
    assert_true(c.anyd == 0);
    assert_string_equal(c.zk, "127.0.0.1:2181");
    assert_string_equal(c.tag, "");
    assert_int_equal(c.consistency, 1);
    assert_int_equal(c.level, 0);
}

static void test_no_arguments_gives_defaults(void **state)
{
    struct tcfg c;
    char why[256];
    int ex = -1;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, NULL), 0);
    assert_int_equal(ex, 0);
    assert_int_equal(c.staleness, 3);
    assert_string_equal(c.zk, "127.0.0.1:2181");
}

static void test_flag_forms(void **state)
{
    struct tcfg c;
    char why[256];
    int ex = -1;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness", "7", "--lr=0.5",
                               "--zk", "host:1", "--tag=", "--consistency=asp", "--offset", "-42",
                               "--anyd", "-1.5e3", NULL),
                     0);
    assert_int_equal(ex, 0);
    assert_int_equal(c.staleness, 7);
    assert_true(c.lr == 0.5);
    assert_string_equal(c.zk, "host:1");
    assert_string_equal(c.tag, "");
    assert_int_equal(c.consistency, 2);
    assert_int_equal(c.offset, -42);
    assert_true(c.anyd == -1500.0);
}

static void test_bool_flags(void **state)
{
    struct tcfg c;
    char why[256];
    int ex;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--verbose", "--no-daemon", NULL),
                     0);
    assert_int_equal(c.verbose, 1);
    assert_int_equal(c.daemon, 0);

    assert_int_equal(
        run_parse(&c, &ex, why, sizeof(why), NULL, "--verbose=yes", "--daemon=OFF", NULL), 0);
    assert_int_equal(c.verbose, 1);
    assert_int_equal(c.daemon, 0);

    /* A boolean never takes the next argument as its value. */
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--verbose", "false", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "unexpected argument 'false'");

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--verbose=maybe", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why,
                        "--verbose: 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)");

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--no-daemon=1", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--no-daemon: takes no value");

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--no-staleness", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--no-staleness: unknown option");
}

static void test_integer_errors(void **state)
{
    struct tcfg c;
    char why[256];
    int ex;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness", "x", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--staleness: 'x' is not an integer");

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness=5x", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--staleness: '5x' is not an integer");

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness=", NULL), FLR_ECONFIG);
    assert_string_equal(why, "--staleness: '' is not an integer");

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness= 5", NULL),
                     FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness=5 ", NULL),
                     FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness=1.5", NULL),
                     FLR_ECONFIG);

    assert_int_equal(
        run_parse(&c, &ex, why, sizeof(why), NULL, "--offset=99999999999999999999", NULL),
        FLR_ECONFIG);
    assert_string_equal(why, "--offset: '99999999999999999999' does not fit in a 64-bit integer");
    assert_int_equal(
        run_parse(&c, &ex, why, sizeof(why), NULL, "--offset=-99999999999999999999", NULL),
        FLR_ECONFIG);

    assert_int_equal(
        run_parse(&c, &ex, why, sizeof(why), NULL, "--offset=9223372036854775807", NULL), 0);
    assert_true(c.offset == 9223372036854775807LL);
    assert_int_equal(
        run_parse(&c, &ex, why, sizeof(why), NULL, "--offset=-9223372036854775808", NULL), 0);
    assert_true(c.offset == -9223372036854775807LL - 1);

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness=1000001", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--staleness: 1000001 is out of range [0, 1000000]");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness=-1", NULL),
                     FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness=1000000", NULL), 0);
    assert_int_equal(c.staleness, 1000000);
}

static void test_double_errors(void **state)
{
    struct tcfg c;
    char why[256];
    int ex;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--lr", "fast", NULL), FLR_ECONFIG);
    assert_string_equal(why, "--lr: 'fast' is not a number");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--lr", "0.1x", NULL), FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--lr", "nan", NULL), FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--lr", "inf", NULL), FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--lr", "0", NULL), FLR_ECONFIG);
    assert_string_equal(why, "--lr: 0 is out of range [1e-09, 10]");

    /* Unbounded doubles must be finite. */
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--anyd", "inf", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--anyd: 'inf' is not a finite number");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--anyd", "-infinity", NULL),
                     FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--anyd", "NaN", NULL),
                     FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--anyd", "1e999", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--anyd: '1e999' is out of range for a double");

    /* Bounds that reach infinity allow it; NaN never passes. */
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--ratio", "inf", NULL), 0);
    assert_true(isinf(c.ratio));
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--ratio", "nan", NULL),
                     FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--ratio", "-inf", NULL),
                     FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--ratio", "2.5", NULL), 0);
    assert_true(c.ratio == 2.5);
}

static void test_string_too_long_is_an_error(void **state)
{
    struct tcfg c;
    char why[256];
    int ex;

    /* zk holds 15 characters and the NUL. */
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--zk", "123456789012345", NULL),
                     0);
    assert_string_equal(c.zk, "123456789012345");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--zk", "1234567890123456", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--zk: '1234567890123456' is too long (16 bytes, at most 15)");
}

static void test_enum_errors_list_choices(void **state)
{
    struct tcfg c;
    char why[256];
    int ex;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--consistency", "foo", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--consistency: 'foo' is not one of bsp, ssp, asp");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--consistency", "BSP", NULL),
                     FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--consistency", "bsp", NULL), 0);
    assert_int_equal(c.consistency, 0);
}

static void test_malformed_command_lines(void **state)
{
    struct tcfg c;
    char why[256];
    int ex;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--stalenes", "3", NULL),
                     FLR_ECONFIG);
    assert_string_equal(why, "--stalenes: unknown option");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--stalenes=3", NULL), FLR_ECONFIG);
    assert_string_equal(why, "--stalenes: unknown option");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness", NULL), FLR_ECONFIG);
    assert_string_equal(why, "--staleness: missing value");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "extra", NULL), FLR_ECONFIG);
    assert_string_equal(why, "unexpected argument 'extra'");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "-x", NULL), FLR_ECONFIG);
    assert_string_equal(why, "-x: unknown option");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "-", NULL), FLR_ECONFIG);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "-c", NULL), FLR_ECONFIG);
    assert_string_equal(why, "-c: missing value");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--", "pos", NULL), FLR_ECONFIG);
    assert_string_equal(why, "unexpected argument 'pos'");
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--verbose", "--", NULL), 0);

    /* A short why buffer truncates the reason but stays terminated. */
    char small[8];
    assert_int_equal(run_parse(&c, &ex, small, sizeof(small), NULL, "--stalenes", NULL),
                     FLR_ECONFIG);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_config_file_and_flag_precedence(void **state)
{
    char *path = write_temp("# a comment\n"
                            "\n"
                            "   staleness = 11   # trailing comment\n"
                            "lr=0.25\n"
                            "zk = \"a #b\\\\c\\\"\"\n"
                            "verbose = on\r\n"
                            "consistency = bsp\n"
                            "tag = \"\"\n");
    struct tcfg c;
    char why[256];
    int ex;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "-c", path, NULL), 0);
    assert_int_equal(c.staleness, 11);
    assert_true(c.lr == 0.25);
    assert_string_equal(c.zk, "a #b\\c\"");
    assert_int_equal(c.verbose, 1);
    assert_int_equal(c.consistency, 0);
    assert_string_equal(c.tag, "");

    /* Flags override the file wherever they stand on the command line. */
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "--staleness", "12", "--config",
                               path, "--no-verbose", NULL),
                     0);
    assert_int_equal(c.staleness, 12);
    assert_int_equal(c.verbose, 0);
    assert_true(c.lr == 0.25);

    char arg[300];
    snprintf(arg, sizeof(arg), "--config=%s", path);
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, arg, NULL), 0);
    assert_int_equal(c.staleness, 11);
    remove_temp(path);
}

static void check_file_error(const char *text, const char *expect_after_path)
{
    char *path = write_temp(text);
    struct tcfg c;
    char why[512], expect[512];
    int ex;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), NULL, "-c", path, NULL), FLR_ECONFIG);
    snprintf(expect, sizeof(expect), "%s:%s", path, expect_after_path);
    assert_string_equal(why, expect);
    remove_temp(path);
}

static void test_config_file_errors_name_file_and_line(void **state)
{
    check_file_error("# one\n\nstaleness = 3\n\n\n\nstalenes = 4\n",
                     "7: unknown option 'stalenes'");
    check_file_error("staleness = x\n", "1: staleness: 'x' is not an integer");
    check_file_error("lr = 0.1\nstaleness\n", "2: expected 'name = value'");
    check_file_error("= 3\n", "1: expected 'name = value'");
    check_file_error("zk = \"abc\n", "1: unterminated quoted value");
    check_file_error("zk = \"a\\qb\"\n", "1: unknown escape '\\q' in quoted value");
    check_file_error("zk = \"ab\" junk\n", "1: unexpected text after the closing quote");
    check_file_error("zk = 1234567890123456\n",
                     "1: zk: '1234567890123456' is too long (16 bytes, at most 15)");
    check_file_error("consistency = foo\n", "1: consistency: 'foo' is not one of bsp, ssp, asp");
    /* The file's options are only the table's: --config is not one of them. */
    check_file_error("config = other.conf\n", "1: unknown option 'config'");
}

static void test_missing_config_file(void **state)
{
    struct tcfg c;
    char why[256];
    int ex;

    assert_int_equal(
        run_parse(&c, &ex, why, sizeof(why), NULL, "-c", "/nonexistent/flr.conf", NULL),
        FLR_ECONFIG);
    assert_string_equal(why, "/nonexistent/flr.conf: cannot open: No such file or directory");
}

static void test_help_lists_every_option(void **state)
{
    struct tcfg c;
    char why[256], *out = NULL;
    int ex = 0;

    /* --help wins over what follows it, even a bad flag. */
    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), &out, "--help", "--bogus", NULL), 0);
    assert_int_equal(ex, 1);
    assert_non_null(strstr(out, "Usage: flr-test [OPTIONS]"));
    assert_non_null(strstr(out, "Tests the options table."));
    for (const struct flr_opt *o = topts; o->name; o++) {
        assert_non_null(strstr(out, o->name));
        assert_non_null(strstr(out, o->help));
        if (o->metavar)
            assert_non_null(strstr(out, o->metavar));
    }
    assert_non_null(strstr(out, "--[no-]verbose"));
    assert_non_null(strstr(out, "--staleness S"));
    assert_non_null(strstr(out, "default: 3; range 0..1000000"));
    assert_non_null(strstr(out, "--zk HOST:PORT"));
    assert_non_null(strstr(out, "default: 127.0.0.1:2181"));
    assert_non_null(strstr(out, "--consistency bsp|ssp|asp"));
    assert_non_null(strstr(out, "one of bsp, ssp, asp; default: ssp"));
    assert_non_null(strstr(out, "one of low, high; default: low"));
    assert_non_null(strstr(out, "--config FILE"));
    assert_non_null(strstr(out, "--dump-config"));
    assert_non_null(strstr(out, "--version"));
    free(out);

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), &out, "-h", NULL), 0);
    assert_int_equal(ex, 1);
    assert_non_null(strstr(out, "Usage:"));
    free(out);
}

static void test_version(void **state)
{
    struct tcfg c;
    char why[256], *out = NULL;
    int ex = 0;

    assert_int_equal(run_parse(&c, &ex, why, sizeof(why), &out, "--version", NULL), 0);
    assert_int_equal(ex, 1);
    assert_string_equal(out, "flr-test 9.8.7\n");
    free(out);
}

static void test_dump_then_reread_gives_same_config(void **state)
{
    struct tcfg c1, c2;
    char why[256], *out = NULL, *path;
    int ex = 0;

    assert_int_equal(run_parse(&c1, &ex, why, sizeof(why), &out, "--dump-config", "--verbose",
                               "--lr=0.1", "--anyd=1e-300", "--offset=-7", "--zk", " a#\"b\\\n\t ",
                               "--tag=x y", "--level=high", "--ratio=0.3", NULL),
                     0);
    assert_int_equal(ex, 1);
    assert_non_null(strstr(out, "staleness = 3\n"));
    assert_non_null(strstr(out, "lr = 0.1\n"));
    assert_non_null(strstr(out, "verbose = true\n"));
    assert_non_null(strstr(out, "consistency = ssp\n"));
    assert_non_null(strstr(out, "level = high\n"));

    path = write_temp(out);
    free(out);
    assert_int_equal(run_parse(&c2, &ex, why, sizeof(why), NULL, "-c", path, NULL), 0);
    assert_int_equal(ex, 0);
    assert_int_equal(c1.verbose, c2.verbose);
    assert_int_equal(c1.daemon, c2.daemon);
    assert_true(c1.staleness == c2.staleness);
    assert_true(c1.offset == c2.offset);
    assert_true(c1.lr == c2.lr);
    assert_true(c1.ratio == c2.ratio);
    assert_true(c1.anyd == c2.anyd);
    assert_string_equal(c1.zk, c2.zk);
    assert_string_equal(c1.tag, c2.tag);
    assert_int_equal(c1.consistency, c2.consistency);
    assert_int_equal(c1.level, c2.level);

    /* Dumping the re-read config gives the same text. */
    char *d1 = NULL, *d2 = NULL;
    size_t l1, l2;
    FILE *f1 = open_memstream(&d1, &l1), *f2 = open_memstream(&d2, &l2);
    flr_opts_dump(topts, &c1, f1);
    flr_opts_dump(topts, &c2, f2);
    fclose(f1);
    fclose(f2);
    assert_string_equal(d1, d2);
    free(d1);
    free(d2);
    remove_temp(path);
}

static void test_set_one_option(void **state)
{
    struct tcfg c;
    char why[256];

    assert_int_equal(flr_opts_defaults(topts, &c, why, sizeof(why)), 0);
    assert_int_equal(flr_opts_set(topts, &c, "staleness", "9", why, sizeof(why)), 0);
    assert_int_equal(c.staleness, 9);
    assert_int_equal(flr_opts_set(topts, &c, "staleness", "9z", why, sizeof(why)), FLR_ECONFIG);
    assert_string_equal(why, "staleness: '9z' is not an integer");
    assert_int_equal(c.staleness, 9);
    assert_int_equal(flr_opts_set(topts, &c, "nope", "1", why, sizeof(why)), FLR_ECONFIG);
    assert_string_equal(why, "unknown option 'nope'");
    /* A failed set leaves the field as it was. */
    assert_int_equal(flr_opts_set(topts, &c, "zk", "0123456789abcdefgh", why, sizeof(why)),
                     FLR_ECONFIG);
    assert_string_equal(c.zk, "127.0.0.1:2181");
    /* NULL why is allowed. */
    assert_int_equal(flr_opts_set(topts, &c, "lr", "x", NULL, 0), FLR_ECONFIG);
}

static void test_bad_default_is_reported(void **state)
{
    struct tcfg c;
    char why[256];
    static const struct flr_opt bad[] = {
        FLR_OPT_I("n", struct tcfg, staleness, "12", 0, 10, NULL, "n"),
        {.name = NULL},
    };

    assert_int_equal(flr_opts_defaults(bad, &c, why, sizeof(why)), FLR_ECONFIG);
    assert_string_equal(why, "default of n: 12 is out of range [0, 10]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_applied),
        cmocka_unit_test(test_no_arguments_gives_defaults),
        cmocka_unit_test(test_flag_forms),
        cmocka_unit_test(test_bool_flags),
        cmocka_unit_test(test_integer_errors),
        cmocka_unit_test(test_double_errors),
        cmocka_unit_test(test_string_too_long_is_an_error),
        cmocka_unit_test(test_enum_errors_list_choices),
        cmocka_unit_test(test_malformed_command_lines),
        cmocka_unit_test(test_config_file_and_flag_precedence),
        cmocka_unit_test(test_config_file_errors_name_file_and_line),
        cmocka_unit_test(test_missing_config_file),
        cmocka_unit_test(test_help_lists_every_option),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_dump_then_reread_gives_same_config),
        cmocka_unit_test(test_set_one_option),
        cmocka_unit_test(test_bad_default_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
