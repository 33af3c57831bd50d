/* test_spec.c - job spec: enum names, validation, JSON round trip, strict parsing. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/spec.h"

/* The layout of the spec document, one line per table. */
static const char base_json[] =
    "{\"job\":\"demo-1\",\"model\":\"softmax\",\"consistency\":\"ssp\",\"staleness\":3,"
    "\"num_workers\":4,\"num_servers\":2,\"num_shards\":8,\"recovery\":\"flr\",\"k\":2,"
    "\"seed\":1,\"tables\":["
    "{\"id\":0,\"name\":\"w\",\"kind\":\"dense\",\"rows\":785,\"dim\":10,\"init\":\"zeros\","
    "\"init_scale\":0,\"seed\":7,\"optim\":\"adagrad\",\"lr\":0.1,\"momentum\":0.9,"
    "\"beta1\":0.9,\"beta2\":0.999,\"eps\":1e-8},"
    "{\"id\":1,\"name\":\"emb\",\"kind\":\"sparse\",\"rows\":0,\"dim\":16,\"init\":\"normal\","
    "\"init_scale\":0.01,\"seed\":8,\"optim\":\"adam\",\"lr\":0.001,\"momentum\":0.9,"
    "\"beta1\":0.9,\"beta2\":0.999,\"eps\":1e-8}]}";

static void good_spec(struct flr_job_spec *s)
{
    memset(s, 0, sizeof(*s));
    strcpy(s->job, "job_1.x-y");
    strcpy(s->model, "mlp");
    s->consistency = FLR_SSP;
    s->staleness = 2;
    s->num_workers = 4;
    s->num_servers = 2;
    s->num_shards = 8;
    strcpy(s->recovery, "flr");
    s->k = 2;
    s->seed = UINT64_C(0xfedcba9876543210); /* above 2^53: written as a string */
    s->ntables = 3;

    struct flr_table_spec *t = &s->tables[0];
    t->id = 0;
    strcpy(t->name, "w1");
    t->kind = FLR_TABLE_DENSE;
    t->rows = 785;
    t->dim = 128;
    t->init = FLR_INIT_UNIFORM;
    t->init_scale = 0.05f;
    t->seed = 7;
    t->optim = FLR_OPT_MOMENTUM;
    flr_table_spec_defaults(t);
    t->lr = 0.1f;

    t = &s->tables[1];
    t->id = 1;
    strcpy(t->name, "w2");
    t->kind = FLR_TABLE_DENSE;
    t->rows = (UINT64_C(1) << 48) - 1;
    t->dim = 10;
    t->init = FLR_INIT_NORMAL;
    t->init_scale = 1.0f / 3.0f;
    t->seed = UINT64_MAX;
    t->optim = FLR_OPT_ADAM;
    flr_table_spec_defaults(t);
    t->lr = 3e-4f;

    t = &s->tables[2];
    t->id = 65535;
    strcpy(t->name, "ctr");
    t->kind = FLR_TABLE_SPARSE;
    t->rows = 0;
    t->dim = 1;
    t->init = FLR_INIT_ZEROS;
    t->seed = (UINT64_C(1) << 53) - 1;
    t->optim = FLR_OPT_SGD;
    t->lr = 1.0f;
}

static void assert_table_equal(const struct flr_table_spec *a, const struct flr_table_spec *b)
{
    assert_int_equal(a->id, b->id);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->kind, b->kind);
    assert_true(a->rows == b->rows);
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->init, b->init);
    assert_true(a->init_scale == b->init_scale);
    assert_true(a->seed == b->seed);
    assert_int_equal(a->optim, b->optim);
    assert_true(a->lr == b->lr);
    assert_true(a->momentum == b->momentum);
    assert_true(a->beta1 == b->beta1);
    assert_true(a->beta2 == b->beta2);
    assert_true(a->eps == b->eps);
}

static void assert_spec_equal(const struct flr_job_spec *a, const struct flr_job_spec *b)
{
    assert_string_equal(a->job, b->job);
    assert_string_equal(a->model, b->model);
    assert_int_equal(a->consistency, b->consistency);
    assert_int_equal(a->staleness, b->staleness);
    assert_int_equal(a->num_workers, b->num_workers);
    assert_int_equal(a->num_servers, b->num_servers);
    assert_int_equal(a->num_shards, b->num_shards);
    assert_string_equal(a->recovery, b->recovery);
    assert_int_equal(a->k, b->k);
    assert_true(a->seed == b->seed);
    assert_int_equal(a->ntables, b->ntables);
    for (uint32_t i = 0; i < a->ntables; i++)
        assert_table_equal(&a->tables[i], &b->tables[i]);
}

/* Returns base with the first occurrence of from replaced by to (malloc'd). */
static char *replace(const char *base, const char *from, const char *to)
{
    const char *p = strstr(base, from);
    size_t n;
    char *r;

    assert_non_null(p);
    n = strlen(base) - strlen(from) + strlen(to);
    r = malloc(n + 1);
    assert_non_null(r);
    memcpy(r, base, (size_t)(p - base));
    strcpy(r + (p - base), to);
    strcat(r, p + strlen(from));
    return r;
}

/* Parses json; checks the code and that why contains want. */
static void check_json(const char *json, int want_rv, const char *want_why)
{
    struct flr_job_spec s;
    char why[256] = "";
    int rv;

    memset(&s, 0x77, sizeof(s));
    rv = flr_spec_from_json(&s, json, why, sizeof(why));
    if (rv != want_rv || !strstr(why, want_why))
        fail_msg("'%s': got %d '%s', want %d '%s'", json, rv, why, want_rv, want_why);
    /* A failed parse leaves the output alone. */
    if (want_rv != 0) {
        assert_int_equal(((unsigned char *)&s)[0], 0x77);
        assert_int_equal(s.num_workers, 0x77777777);
    }
}

/* Parses base_json edited by one replacement; checks the code and that why contains want. */
static void check_edit(const char *from, const char *to, int want_rv, const char *want_why)
{
    struct flr_job_spec s;
    char why[256] = "";
    char *json = replace(base_json, from, to);
    int rv;

    memset(&s, 0x77, sizeof(s));
    rv = flr_spec_from_json(&s, json, why, sizeof(why));
    if (rv != want_rv || !strstr(why, want_why))
        fail_msg("edit '%s' -> '%s': got %d '%s', want %d '%s'", from, to, rv, why, want_rv,
                 want_why);
    /* A failed parse leaves the output alone. */
    if (want_rv != 0) {
        assert_int_equal(((unsigned char *)&s)[0], 0x77);
        assert_int_equal(s.num_workers, 0x77777777);
    }
    free(json);
}

static void test_enum_names_round_trip(void **state)
{
    for (int i = 0; i <= FLR_TABLE_SPARSE; i++)
        assert_int_equal(flr_table_kind_parse(flr_table_kind_name(i)), i);
    for (int i = 0; i <= FLR_INIT_NORMAL; i++)
        assert_int_equal(flr_init_parse(flr_init_name(i)), i);
    for (int i = 0; i <= FLR_OPT_ADAM; i++)
        assert_int_equal(flr_optim_parse(flr_optim_name(i)), i);
    for (int i = 0; i <= FLR_ASP; i++)
        assert_int_equal(flr_consistency_parse(flr_consistency_name(i)), i);

    assert_string_equal(flr_table_kind_name(FLR_TABLE_SPARSE), "sparse");
    assert_string_equal(flr_init_name(FLR_INIT_UNIFORM), "uniform");
    assert_string_equal(flr_optim_name(FLR_OPT_ADAGRAD), "adagrad");
    assert_string_equal(flr_consistency_name(FLR_BSP), "bsp");

    assert_int_equal(flr_table_kind_parse("Dense"), -1);
    assert_int_equal(flr_init_parse("ones"), -1);
    assert_int_equal(flr_optim_parse("rmsprop"), -1);
    assert_int_equal(flr_consistency_parse(""), -1);
    assert_int_equal(flr_consistency_parse(NULL), -1);
    assert_string_equal(flr_optim_name((enum flr_optim_kind)99), "unknown");
    assert_string_equal(flr_table_kind_name((enum flr_table_kind) - 1), "unknown");
}

static void test_optim_nslots(void **state)
{
    assert_int_equal(flr_optim_nslots(FLR_OPT_SGD), 0);
    assert_int_equal(flr_optim_nslots(FLR_OPT_MOMENTUM), 1);
    assert_int_equal(flr_optim_nslots(FLR_OPT_ADAGRAD), 1);
    assert_int_equal(flr_optim_nslots(FLR_OPT_ADAM), 2);
}

static void test_table_defaults_leave_lr_alone(void **state)
{
    struct flr_table_spec t;

    memset(&t, 0, sizeof(t));
    t.lr = 0.25f;
    t.dim = 3;
    flr_table_spec_defaults(&t);
    assert_true(t.momentum == 0.9f);
    assert_true(t.beta1 == 0.9f);
    assert_true(t.beta2 == 0.999f);
    assert_true(t.eps == 1e-8f);
    assert_true(t.lr == 0.25f);
    assert_int_equal(t.dim, 3);
}

static void test_round_trip(void **state)
{
    struct flr_job_spec a, b;
    char why[256] = "", *j1 = NULL, *j2 = NULL;

    good_spec(&a);
    assert_int_equal(flr_spec_validate(&a, why, sizeof(why)), 0);
    assert_int_equal(flr_spec_to_json(&a, &j1), 0);
    assert_non_null(j1);
    /* Shortest float forms and a large seed as a string. */
    assert_non_null(strstr(j1, "\"lr\":0.1,"));
    assert_non_null(strstr(j1, "\"eps\":1e-8"));
    assert_non_null(strstr(j1, "\"seed\":\"18364758544493064720\""));
    assert_non_null(strstr(j1, "\"seed\":9007199254740991"));
    assert_non_null(strstr(j1, "\"seed\":\"18446744073709551615\""));
    assert_non_null(strstr(j1, "\"consistency\":\"ssp\""));

    assert_int_equal(flr_spec_from_json(&b, j1, why, sizeof(why)), 0);
    assert_spec_equal(&a, &b);
    assert_int_equal(flr_spec_to_json(&b, &j2), 0);
    assert_string_equal(j1, j2);
    free(j1);
    free(j2);
}

static void test_documented_layout_parses(void **state)
{
    struct flr_job_spec s;
    char why[256] = "";

    assert_int_equal(flr_spec_from_json(&s, base_json, why, sizeof(why)), 0);
    assert_string_equal(s.job, "demo-1");
    assert_string_equal(s.model, "softmax");
    assert_int_equal(s.consistency, FLR_SSP);
    assert_int_equal(s.staleness, 3);
    assert_int_equal(s.num_shards, 8);
    assert_string_equal(s.recovery, "flr");
    assert_int_equal(s.ntables, 2);
    assert_int_equal(s.tables[0].rows, 785);
    assert_int_equal(s.tables[0].optim, FLR_OPT_ADAGRAD);
    assert_true(s.tables[0].lr == 0.1f);
    assert_true(s.tables[0].eps == 1e-8f);
    assert_int_equal(s.tables[1].kind, FLR_TABLE_SPARSE);
    assert_int_equal(s.tables[1].init, FLR_INIT_NORMAL);
    assert_true(s.tables[1].init_scale == 0.01f);
    assert_true(s.tables[1].seed == 8);

    assert_ptr_equal(flr_spec_table(&s, 1), &s.tables[1]);
    assert_ptr_equal(flr_spec_table(&s, 0), &s.tables[0]);
    assert_null(flr_spec_table(&s, 2));
}

static void test_optional_fields_take_defaults(void **state)
{
    struct flr_job_spec s;
    char why[256] = "";
    const char *json = "{\"job\":\"j\",\"num_workers\":1,\"num_servers\":1,\"num_shards\":1,"
                       "\"tables\":[{\"id\":3,\"name\":\"t\",\"kind\":\"dense\",\"rows\":5,"
                       "\"dim\":2,\"optim\":\"adam\",\"lr\":1}]}";

    assert_int_equal(flr_spec_from_json(&s, json, why, sizeof(why)), 0);
    assert_string_equal(s.model, "");
    assert_int_equal(s.consistency, FLR_BSP);
    assert_int_equal(s.staleness, 0);
    assert_string_equal(s.recovery, "none");
    assert_int_equal(s.k, 1);
    assert_true(s.seed == 0);
    assert_int_equal(s.tables[0].init, FLR_INIT_ZEROS);
    assert_true(s.tables[0].init_scale == 0);
    assert_true(s.tables[0].beta2 == 0.999f);
    assert_true(s.tables[0].eps == 1e-8f);
    assert_true(s.tables[0].lr == 1.0f);
}

/* Applies case i's mutation to a good spec; returns the expected start of the reason, or
 * NULL past the last case. */
static const char *mutate(struct flr_job_spec *s, int i)
{
    struct flr_table_spec *t = &s->tables[0];

    switch (i) {
    case 0:
        s->job[0] = '\0';
        return "job: must not be empty";
    case 1:
        strcpy(s->job, "a/b");
        return "job: 'a/b' may hold only";
    case 2:
        memset(s->job, 'a', sizeof(s->job));
        return "job: longer than 63 bytes";
    case 3:
        strcpy(s->model, "bad model");
        return "model: 'bad model' may hold only";
    case 4:
        s->num_workers = 0;
        return "num_workers: 0 is out of range 1..4096";
    case 5:
        s->num_workers = 4097;
        return "num_workers: 4097 is out of range 1..4096";
    case 6:
        s->num_servers = 0;
        return "num_servers: 0 is out of range 1..1024";
    case 7:
        s->num_servers = 1025;
        s->num_shards = 2000;
        return "num_servers: 1025 is out of range 1..1024";
    case 8:
        s->num_shards = 1;
        return "num_shards: 1 is out of range 2..65536";
    case 9:
        s->num_shards = 65537;
        return "num_shards: 65537 is out of range";
    case 10:
        s->ntables = 0;
        return "tables: 0 tables, expected 1..16";
    case 11:
        s->ntables = FLR_MAX_TABLES + 1;
        return "tables: 17 tables, expected 1..16";
    case 12:
        s->tables[1].id = s->tables[0].id;
        return "tables[1].id: 0 is also the id of tables[0]";
    case 13:
        strcpy(s->tables[2].name, "w1");
        return "tables[2].name: 'w1' is also the name of tables[0]";
    case 14:
        t->id = 65536;
        return "tables[0].id: 65536 is out of range 0..65535";
    case 15:
        t->rows = 0;
        return "tables[0].rows: 0 is out of range 1..281474976710655 for a dense table";
    case 16:
        t->rows = UINT64_C(1) << 48;
        return "tables[0].rows: 281474976710656 is out of range";
    case 17:
        s->tables[2].rows = 10;
        return "tables[2].rows: must be 0 for a sparse table";
    case 18:
        t->dim = 0;
        return "tables[0].dim: 0 is out of range 1..4194304";
    case 19:
        t->dim = 4194305;
        return "tables[0].dim: 4194305 is out of range";
    case 20:
        t->lr = 0;
        return "tables[0].lr: 0 is out of range (0, inf)";
    case 21:
        t->lr = -1;
        return "tables[0].lr: -1 is out of range";
    case 22:
        t->lr = NAN;
        return "tables[0].lr: nan is not a finite number";
    case 23:
        t->lr = INFINITY;
        return "tables[0].lr: inf is not a finite number";
    case 24:
        s->staleness = 1000001;
        return "staleness: 1000001 is out of range 0..1000000";
    case 25:
        s->k = 0;
        return "k: 0 is out of range 1..16";
    case 26:
        s->k = 17;
        return "k: 17 is out of range 1..16";
    case 27:
        strcpy(s->recovery, "magic");
        return "recovery: 'magic' is not one of none, flr, checkpoint, chain, cpr";
    case 28:
        memset(s->recovery, 'n', sizeof(s->recovery));
        return "recovery: ";
    case 29:
        t->name[0] = '\0';
        return "tables[0].name: must not be empty";
    case 30:
        strcpy(t->name, "w 1");
        return "tables[0].name: 'w 1' may hold only";
    case 31:
        t->kind = (enum flr_table_kind)5;
        return "tables[0].kind: unknown kind 5";
    case 32:
        t->init = (enum flr_init_kind)5;
        return "tables[0].init: unknown initialiser 5";
    case 33:
        t->optim = (enum flr_optim_kind)9;
        return "tables[0].optim: unknown optimizer 9";
    case 34:
        s->consistency = (enum flr_consistency)3;
        return "consistency: unknown consistency model 3";
    case 35:
        t->init_scale = -1;
        return "tables[0].init_scale: -1 is out of range";
    case 36:
        t->momentum = 1.0f; /* table 0 uses momentum */
        return "tables[0].momentum: 1 is out of range [0, 1)";
    case 37:
        s->tables[1].beta2 = 1.0f; /* table 1 uses adam */
        return "tables[1].beta2: 1 is out of range [0, 1)";
    case 38:
        s->tables[1].eps = 0;
        return "tables[1].eps: 0 is out of range (0, inf)";
    case 39:
        s->tables[2].beta1 = NAN; /* sgd ignores it, but it must be representable */
        return "tables[2].beta1: nan is not a finite number";
    case 40:
        memset(t->name, 'x', sizeof(t->name));
        return "tables[0].name: longer than 31 bytes";
    default:
        return NULL;
    }
}

static void test_each_validation_error(void **state)
{
    const char *want;
    int n = 0;

    for (int i = 0;; i++) {
        struct flr_job_spec s;
        char why[256] = "";

        good_spec(&s);
        if (!(want = mutate(&s, i)))
            break;
        int rv = flr_spec_validate(&s, why, sizeof(why));
        if (rv != FLR_ECONFIG || strncmp(why, want, strlen(want)) != 0)
            fail_msg("case %d: got %d '%s', want '%s'", i, rv, why, want);
        n++;
    }
    assert_int_equal(n, 41);
}

static void test_validation_boundaries_accepted(void **state)
{
    struct flr_job_spec s;
    char why[256] = "";

    good_spec(&s);
    memset(s.job, 'j', sizeof(s.job) - 1);
    s.job[sizeof(s.job) - 1] = '\0';
    s.num_workers = 4096;
    s.num_servers = 1024;
    s.num_shards = 65536;
    s.staleness = 1000000;
    s.k = 16;
    s.tables[0].dim = 4194304;
    strcpy(s.recovery, "cpr");
    memset(s.tables[2].name, 'n', FLR_NAME_MAX - 1);
    s.tables[2].name[FLR_NAME_MAX - 1] = '\0';
    assert_int_equal(flr_spec_validate(&s, why, sizeof(why)), 0);

    s.num_servers = 1;
    s.num_shards = 1;
    s.num_workers = 1;
    s.k = 1;
    assert_int_equal(flr_spec_validate(&s, why, sizeof(why)), 0);
}

static void test_validation_errors_through_json(void **state)
{
    check_edit("\"num_workers\":4", "\"num_workers\":0", FLR_ECONFIG,
               "num_workers: 0 is out of range 1..4096");
    check_edit("\"num_shards\":8", "\"num_shards\":1", FLR_ECONFIG, "num_shards: 1 is out");
    check_edit("\"id\":1", "\"id\":0", FLR_ECONFIG, "tables[1].id: 0 is also the id");
    check_edit("\"rows\":0", "\"rows\":4", FLR_ECONFIG, "tables[1].rows: must be 0");
    check_edit("\"lr\":0.1", "\"lr\":-0.1", FLR_ECONFIG, "tables[0].lr: -0.1 is out of range");
    check_edit("\"tables\":[{\"id\":0", "\"tables\":[],\"x\":[{\"id\":0", FLR_EFORMAT,
               "unknown key 'x'");
    check_edit("\"job\":\"demo-1\"", "\"job\":\"\"", FLR_ECONFIG, "job: must not be empty");
    check_edit("\"recovery\":\"flr\"", "\"recovery\":\"chain\"", 0, "");
}

static void test_malformed_json(void **state)
{
    static const char *const bad[] = {
        "",   "{",        "nul",        "[1,2]",       "null",
        "42", "\"spec\"", "{\"job\":}", "{} trailing", "{\"job\":\"a\",\"job\":\"b\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct flr_job_spec s;
        char why[256] = "";
        int rv = flr_spec_from_json(&s, bad[i], why, sizeof(why));
        if (rv != FLR_EFORMAT || why[0] == '\0')
            fail_msg("'%s': got %d '%s'", bad[i], rv, why);
    }
    struct flr_job_spec s;
    char why[256] = "";
    assert_int_equal(flr_spec_from_json(&s, NULL, why, sizeof(why)), FLR_EFORMAT);
    assert_int_equal(flr_spec_from_json(&s, "{", NULL, 0), FLR_EFORMAT);
}

static void test_wrong_types(void **state)
{
    check_edit("\"num_workers\":4", "\"num_workers\":\"4\"", FLR_EFORMAT,
               "num_workers: expected an integer");
    check_edit("\"num_workers\":4", "\"num_workers\":4.0", FLR_EFORMAT,
               "num_workers: expected an integer");
    check_edit("\"job\":\"demo-1\"", "\"job\":5", FLR_EFORMAT, "job: expected a string");
    check_edit("\"consistency\":\"ssp\"", "\"consistency\":1", FLR_EFORMAT,
               "consistency: expected a string");
    check_json("{\"job\":\"j\",\"num_workers\":1,\"num_servers\":1,\"num_shards\":1,"
               "\"tables\":{}}",
               FLR_EFORMAT, "tables: expected an array");
    check_edit("\"tables\":[", "\"tables\":[7,", FLR_EFORMAT, "tables[0]: expected an object");
    check_edit("\"dim\":10", "\"dim\":1.5", FLR_EFORMAT, "tables[0].dim: expected an integer");
    check_edit("\"lr\":0.1", "\"lr\":\"0.1\"", FLR_EFORMAT, "tables[0].lr: expected a number");
    check_edit("\"seed\":1", "\"seed\":true", FLR_EFORMAT,
               "seed: expected an integer or a decimal string");
    check_edit("\"seed\":1", "\"seed\":-1", FLR_ECONFIG, "seed: -1 is out of range");
    check_edit("\"seed\":1", "\"seed\":\"12x\"", FLR_ECONFIG,
               "seed: '12x' is not a 64-bit unsigned integer");
    check_edit("\"seed\":1", "\"seed\":\"18446744073709551616\"", FLR_ECONFIG,
               "is not a 64-bit unsigned integer");
    check_edit("\"seed\":1", "\"seed\":\"-1\"", FLR_ECONFIG, "is not a 64-bit unsigned integer");
    check_edit("\"seed\":1", "\"seed\":\"18446744073709551615\"", 0, "");
    check_edit("\"num_workers\":4", "\"num_workers\":4294967296", FLR_ECONFIG,
               "num_workers: 4294967296 is out of range 0..4294967295");
    check_edit("\"num_workers\":4", "\"num_workers\":-4", FLR_ECONFIG,
               "num_workers: -4 is out of range");
    check_edit("\"lr\":0.1", "\"lr\":1e300", FLR_ECONFIG, "tables[0].lr: 1e+300 does not fit");
    check_edit("\"name\":\"w\"", "\"name\":\"0123456789012345678901234567890123\"", FLR_ECONFIG,
               "tables[0].name: '01234567890123456789012345678901");
    check_edit("\"name\":\"w\"", "\"name\":null", FLR_EFORMAT, "tables[0].name: expected a string");
}

static void test_missing_and_unknown_keys(void **state)
{
    check_edit("\"job\":\"demo-1\",", "", FLR_EFORMAT, "job: missing");
    check_edit("\"num_shards\":8,", "", FLR_EFORMAT, "num_shards: missing");
    check_edit(",\"tables\":[", ",\"tablez\":[", FLR_EFORMAT, "unknown key 'tablez'");
    check_edit("\"lr\":0.1,", "", FLR_EFORMAT, "tables[0].lr: missing");
    check_edit("\"kind\":\"dense\",", "", FLR_EFORMAT, "tables[0].kind: missing");
    check_edit("\"eps\":1e-8}", "\"eps\":1e-8,\"epsilon\":1}", FLR_EFORMAT,
               "tables[0]: unknown key 'epsilon'");
}

static void test_unknown_enum_names(void **state)
{
    check_edit("\"consistency\":\"ssp\"", "\"consistency\":\"strict\"", FLR_ECONFIG,
               "consistency: 'strict' is not one of bsp, ssp, asp");
    check_edit("\"kind\":\"dense\"", "\"kind\":\"ragged\"", FLR_ECONFIG,
               "tables[0].kind: 'ragged' is not one of dense, sparse");
    check_edit("\"init\":\"zeros\"", "\"init\":\"ones\"", FLR_ECONFIG,
               "tables[0].init: 'ones' is not one of zeros, uniform, normal");
    check_edit("\"optim\":\"adagrad\"", "\"optim\":\"rmsprop\"", FLR_ECONFIG,
               "tables[0].optim: 'rmsprop' is not one of sgd, momentum, adagrad, adam");
    check_edit("\"recovery\":\"flr\"", "\"recovery\":\"magic\"", FLR_ECONFIG,
               "recovery: 'magic' is not one of none, flr, checkpoint, chain, cpr");
    check_edit("\"consistency\":\"ssp\"", "\"consistency\":\"SSP\"", FLR_ECONFIG, "'SSP'");
}

static void test_to_json_rejects_unrepresentable(void **state)
{
    struct flr_job_spec s;
    char *out = (char *)1;

    good_spec(&s);
    s.tables[1].lr = NAN;
    assert_int_equal(flr_spec_to_json(&s, &out), FLR_EINVAL);
    assert_null(out);

    good_spec(&s);
    s.tables[0].optim = (enum flr_optim_kind)7;
    assert_int_equal(flr_spec_to_json(&s, &out), FLR_EINVAL);

    good_spec(&s);
    memset(s.job, 'a', sizeof(s.job));
    assert_int_equal(flr_spec_to_json(&s, &out), FLR_EINVAL);

    good_spec(&s);
    s.ntables = FLR_MAX_TABLES + 1;
    assert_int_equal(flr_spec_to_json(&s, &out), FLR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enum_names_round_trip),
        cmocka_unit_test(test_optim_nslots),
        cmocka_unit_test(test_table_defaults_leave_lr_alone),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_documented_layout_parses),
        cmocka_unit_test(test_optional_fields_take_defaults),
        cmocka_unit_test(test_each_validation_error),
        cmocka_unit_test(test_validation_boundaries_accepted),
        cmocka_unit_test(test_validation_errors_through_json),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_missing_and_unknown_keys),
        cmocka_unit_test(test_unknown_enum_names),
        cmocka_unit_test(test_to_json_rejects_unrepresentable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
