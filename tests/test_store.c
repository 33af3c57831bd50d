/*
 * test_store.c - a shard's slices: placement, initial rows, checks, updates, accumulation,
 * growth and accounting.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/spec.h"
#include "common/util.h"
#include "common/shardmap.h"
#include "server/optim.h"
#include "server/store.h"

#define TOL 1e-6

/* ---- helpers -------------------------------------------------------------------------- */

static void table_set(struct flr_table_spec *t, uint32_t id, const char *name,
                      enum flr_table_kind kind, uint64_t rows, uint32_t dim,
                      enum flr_optim_kind optim)
{
    memset(t, 0, sizeof(*t));
    t->id = id;
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->kind = kind;
    t->rows = kind == FLR_TABLE_DENSE ? rows : 0;
    t->dim = dim;
    t->init = FLR_INIT_UNIFORM;
    t->init_scale = 0.1f;
    t->seed = 1000 + id;
    t->optim = optim;
    t->lr = 0.1f;
    t->momentum = 0.9f;
    t->beta1 = 0.9f;
    t->beta2 = 0.999f;
    t->eps = 1e-8f;
}

static void job_set(struct flr_job_spec *s, uint32_t nshards)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->job, sizeof(s->job), "test");
    snprintf(s->model, sizeof(s->model), "none");
    s->consistency = FLR_BSP;
    s->num_workers = 3;
    s->num_servers = 1;
    s->num_shards = nshards;
    snprintf(s->recovery, sizeof(s->recovery), "none");
    s->k = 1;
    s->seed = 7;
}

/* A job with one table. */
static void job_one(struct flr_job_spec *s, uint32_t nshards, enum flr_table_kind kind,
                    uint64_t rows, uint32_t dim, enum flr_optim_kind optim)
{
    job_set(s, nshards);
    s->ntables = 1;
    table_set(&s->tables[0], 1, kind == FLR_TABLE_DENSE ? "w" : "emb", kind, rows, dim, optim);
}

static struct flr_store *store_new(const struct flr_job_spec *spec, uint32_t shard)
{
    struct flr_store *s = NULL;

    assert_int_equal(flr_store_alloc(&s, spec, shard), 0);
    assert_non_null(s);
    return s;
}

/* The documented placement of a sparse key. */
static uint32_t sparse_shard(uint64_t key, uint32_t nshards)
{
    return (uint32_t)(flr_mix64(key) % nshards);
}

/* The next sparse key of table at or after *row that the placement gives shard. */
static uint64_t sparse_key_in(uint32_t table, uint32_t nshards, uint32_t shard, uint64_t *row)
{
    for (;; (*row)++)
        if (sparse_shard(flr_key(table, *row), nshards) == shard)
            return flr_key(table, (*row)++);
}

/* Deterministic test gradients. */
static float grad_at(uint32_t worker, uint64_t row, uint32_t col)
{
    return (float)((int)((worker * 31 + row * 7 + col * 3) % 17) - 8) * 0.125f;
}

/* A copy of every listed row: value, slots, stamp, steps. */
struct snap {
    size_t n, width;
    float *vals;
    uint64_t *stamps;
    uint32_t *steps;
    int *present;
};

static void snap_take(struct snap *sn, const struct flr_tshard *t, const uint64_t *rows, size_t n)
{
    const struct flr_table_spec *sp = flr_tshard_spec(t);

    sn->n = n;
    sn->width = (size_t)(1 + flr_optim_nslots(sp->optim)) * sp->dim;
    sn->vals = calloc(n * sn->width, sizeof(float));
    sn->stamps = calloc(n, sizeof(uint64_t));
    sn->steps = calloc(n, sizeof(uint32_t));
    sn->present = calloc(n, sizeof(int));
    assert_non_null(sn->vals);
    assert_non_null(sn->stamps);
    assert_non_null(sn->steps);
    assert_non_null(sn->present);
    for (size_t i = 0; i < n; i++) {
        const float *r = flr_tshard_peek(t, rows[i], &sn->stamps[i], &sn->steps[i]);
        sn->present[i] = r != NULL;
        if (r != NULL)
            memcpy(sn->vals + i * sn->width, r, sn->width * sizeof(float));
    }
}

static int snap_equal(const struct snap *a, const struct snap *b)
{
    return a->n == b->n && a->width == b->width &&
           memcmp(a->vals, b->vals, a->n * a->width * sizeof(float)) == 0 &&
           memcmp(a->stamps, b->stamps, a->n * sizeof(uint64_t)) == 0 &&
           memcmp(a->steps, b->steps, a->n * sizeof(uint32_t)) == 0 &&
           memcmp(a->present, b->present, a->n * sizeof(int)) == 0;
}

static void snap_free(struct snap *sn)
{
    free(sn->vals);
    free(sn->stamps);
    free(sn->steps);
    free(sn->present);
}

/* ---- placement and initial values ------------------------------------------------------ */

static void dense_slices_follow_placement(void **state)
{
    static const uint32_t shard_counts[] = {1, 2, 3, 4, 7, 800};
    const uint64_t n = 785;
    struct flr_job_spec spec;

    for (size_t c = 0; c < sizeof(shard_counts) / sizeof(shard_counts[0]); c++) {
        uint32_t nshards = shard_counts[c];
        uint64_t *owner = calloc(n, sizeof(*owner));
        assert_non_null(owner);

        job_one(&spec, nshards, FLR_TABLE_DENSE, n, 2, FLR_OPT_SGD);
        for (uint32_t sh = 0; sh < nshards; sh++) {
            struct flr_store *s = store_new(&spec, sh);
            struct flr_tshard *t = flr_store_table(s, 1);
            uint64_t held = 0;

            assert_non_null(t);
            for (uint64_t r = 0; r <= n; r++) {
                int expect = r < n && r * nshards / n == sh;
                const float *row = flr_tshard_peek(t, r, NULL, NULL);
                assert_int_equal(row != NULL, expect);
                if (row != NULL) {
                    owner[r]++;
                    held++;
                }
            }
            assert_int_equal(flr_store_rows(s), held);
            flr_store_free(s);
        }
        /* Every row is held by exactly one shard. */
        for (uint64_t r = 0; r < n; r++)
            assert_int_equal(owner[r], 1);
        free(owner);
    }
}

static void dense_rows_start_from_the_initialiser(void **state)
{
    struct flr_job_spec one, four;

    job_one(&one, 1, FLR_TABLE_DENSE, 100, 5, FLR_OPT_ADAM);
    job_one(&four, 4, FLR_TABLE_DENSE, 100, 5, FLR_OPT_ADAM);
    struct flr_store *a = store_new(&one, 0), *b = store_new(&four, 2);
    struct flr_tshard *ta = flr_store_table(a, 1), *tb = flr_store_table(b, 1);
    int nonzero = 0;

    /* Shard 2 of 4 holds rows [50, 75). */
    for (uint64_t r = 50; r < 75; r++) {
        uint64_t stamp = 1;
        uint32_t steps = 1;
        const float *x = flr_tshard_peek(ta, r, NULL, NULL);
        const float *y = flr_tshard_peek(tb, r, &stamp, &steps);
        float init[5];

        assert_non_null(x);
        assert_non_null(y);
        flr_table_init_row(&one.tables[0], r, init);
        assert_memory_equal(x, init, sizeof(init));
        assert_memory_equal(y, init, sizeof(init));
        for (int j = 0; j < 5; j++) {
            assert_true(init[j] >= -0.1f && init[j] < 0.1f);
            nonzero += init[j] != 0.0f;
        }
        /* Slots and metadata start at zero. */
        for (int j = 5; j < 15; j++)
            assert_true(y[j] == 0.0f);
        assert_int_equal(stamp, 0);
        assert_int_equal(steps, 0);
    }
    assert_true(nonzero > 100);
    flr_store_free(a);
    flr_store_free(b);
}

/* A slice big enough to be faulted in ahead (flr_prefault) starts from the initialiser
 * like a small one, and prefaulting keeps what a buffer holds. */
static void large_dense_slices_are_prefaulted_and_initialised(void **state)
{
    struct flr_job_spec spec;
    const uint32_t dim = 1u << 16; /* 64 rows x 256 KiB x (value + Adam's two slots) */
    float *init = malloc(dim * sizeof(float));
    unsigned char *buf = malloc((size_t)3 << 20);

    (void)state;
    assert_non_null(init);
    assert_non_null(buf);
    job_one(&spec, 1, FLR_TABLE_DENSE, 64, dim, FLR_OPT_ADAM);
    struct flr_store *s = store_new(&spec, 0);
    struct flr_tshard *t = flr_store_table(s, 1);
    for (uint64_t r = 0; r < 64; r += 21) {
        const float *x = flr_tshard_peek(t, r, NULL, NULL);
        assert_non_null(x);
        flr_table_init_row(&spec.tables[0], r, init);
        assert_memory_equal(x, init, dim * sizeof(float));
        for (uint32_t j = dim; j < 3 * dim; j += 4099)
            assert_true(x[j] == 0.0f);
    }
    flr_store_free(s);

    for (size_t i = 0; i < ((size_t)3 << 20); i++)
        buf[i] = (unsigned char)(i * 7);
    flr_prefault(buf + 5, ((size_t)3 << 20) - 9); /* unaligned both ends */
    flr_prefault(buf, 100);                       /* less than a page: nothing to do */
    for (size_t i = 0; i < ((size_t)3 << 20); i++)
        if (buf[i] != (unsigned char)(i * 7))
            fail_msg("byte %zu changed", i);
    free(buf);
    free(init);
}

static void initialisers_are_deterministic_per_row(void **state)
{
    struct flr_table_spec t;
    float a[64], b[64];
    double sum = 0, sumsq = 0;
    const int rows = 500;

    table_set(&t, 1, "x", FLR_TABLE_SPARSE, 0, 64, FLR_OPT_SGD);

    t.init = FLR_INIT_ZEROS;
    memset(a, 0xff, sizeof(a));
    flr_table_init_row(&t, 3, a);
    for (int j = 0; j < 64; j++)
        assert_true(a[j] == 0.0f);

    t.init = FLR_INIT_UNIFORM;
    t.init_scale = 0.5f;
    flr_table_init_row(&t, 3, a);
    flr_table_init_row(&t, 3, b);
    assert_memory_equal(a, b, sizeof(a));
    flr_table_init_row(&t, 4, b);
    assert_memory_not_equal(a, b, sizeof(a));
    t.seed++;
    flr_table_init_row(&t, 3, b);
    assert_memory_not_equal(a, b, sizeof(a));
    t.seed--;

    t.init = FLR_INIT_NORMAL;
    t.init_scale = 2.0f;
    for (int r = 0; r < rows; r++) {
        flr_table_init_row(&t, (uint64_t)r, a);
        for (int j = 0; j < 64; j++) {
            assert_true(isfinite(a[j]));
            sum += a[j];
            sumsq += (double)a[j] * a[j];
        }
    }
    /* 32000 draws: the mean is within a few standard errors (2 / sqrt(32000) = 0.011) of 0
     * and the standard deviation close to 2. */
    double mean = sum / (rows * 64), sd = sqrt(sumsq / (rows * 64) - mean * mean);
    assert_true(fabs(mean) < 0.06);
    assert_true(fabs(sd - 2.0) < 0.05);
}

static void sparse_first_touch_creates_the_same_row_everywhere(void **state)
{
    struct flr_job_spec spec;
    uint64_t next = 0, key, stamp = 9;
    uint32_t steps = 9;
    float va[8], vb[8], init[8];

    job_one(&spec, 3, FLR_TABLE_SPARSE, 0, 8, FLR_OPT_ADAM);
    key = sparse_key_in(1, 3, 1, &next);
    struct flr_store *a = store_new(&spec, 1), *b = store_new(&spec, 1);
    struct flr_tshard *ta = flr_store_table(a, 1), *tb = flr_store_table(b, 1);

    assert_int_equal(flr_store_rows(a), 0);
    assert_null(flr_tshard_peek(ta, flr_key_row(key), NULL, NULL));
    assert_int_equal(flr_tshard_check_keys(ta, &key, 1, NULL, 0), 0);
    assert_int_equal(flr_tshard_read(ta, &key, 1, va), 0);
    assert_int_equal(flr_store_rows(a), 1);
    assert_int_equal(flr_tshard_read(tb, &key, 1, vb), 0);
    assert_memory_equal(va, vb, sizeof(va));
    flr_table_init_row(&spec.tables[0], flr_key_row(key), init);
    assert_memory_equal(va, init, sizeof(va));

    const float *row = flr_tshard_peek(ta, flr_key_row(key), &stamp, &steps);
    assert_non_null(row);
    assert_memory_equal(row, init, sizeof(init));
    for (int j = 8; j < 24; j++)
        assert_true(row[j] == 0.0f);
    assert_int_equal(stamp, 0);
    assert_int_equal(steps, 0);

    /* Reading again finds the row rather than creating another. */
    assert_int_equal(flr_tshard_read(ta, &key, 1, va), 0);
    assert_int_equal(flr_store_rows(a), 1);
    assert_memory_equal(va, init, sizeof(va));
    flr_store_free(a);
    flr_store_free(b);
}

/* ---- checks ----------------------------------------------------------------------------- */

/* Table w: dense, 785 rows, dim 10; table emb: sparse, dim 4; 4 shards, this is shard 2,
 * which holds dense rows [393, 589) (393 * 4 / 785 = 2.003, 392 * 4 / 785 = 1.997). */
static struct flr_store *checks_store(struct flr_job_spec *spec)
{
    job_set(spec, 4);
    spec->ntables = 2;
    table_set(&spec->tables[0], 1, "w", FLR_TABLE_DENSE, 785, 10, FLR_OPT_SGD);
    table_set(&spec->tables[1], 2, "emb", FLR_TABLE_SPARSE, 0, 4, FLR_OPT_ADAGRAD);
    return store_new(spec, 2);
}

static void check_keys_accepts_own_keys(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s = checks_store(&spec);
    struct flr_tshard *w = flr_store_table(s, 1), *emb = flr_store_table(s, 2);
    uint64_t dense[3] = {flr_key(1, 393), flr_key(1, 400), flr_key(1, 588)};
    uint64_t sparse[3], next = 0;
    unsigned char unaligned[3 * 8 + 1];
    char why[128] = "";

    for (int i = 0; i < 3; i++)
        sparse[i] = sparse_key_in(2, 4, 2, &next);
    assert_int_equal(flr_tshard_check_keys(w, dense, 3, why, sizeof(why)), 0);
    assert_int_equal(flr_tshard_check_keys(emb, sparse, 3, why, sizeof(why)), 0);
    assert_int_equal(flr_tshard_check_keys(w, NULL, 0, why, sizeof(why)), 0);
    /* Key blobs carry no alignment. */
    memcpy(unaligned + 1, dense, sizeof(dense));
    assert_int_equal(flr_tshard_check_keys(w, unaligned + 1, 3, why, sizeof(why)), 0);
    assert_int_equal(flr_store_rows(s), 589 - 393);
    flr_store_free(s);
}

static void check_keys_rejects_foreign_keys(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s = checks_store(&spec);
    struct flr_tshard *w = flr_store_table(s, 1), *emb = flr_store_table(s, 2);
    uint64_t keys[3], next = 0;
    char why[160];

    /* Beyond the table. */
    keys[0] = flr_key(1, 400);
    keys[1] = flr_key(1, 900);
    keys[2] = flr_key(1, 1000);
    assert_int_equal(flr_tshard_check_keys(w, keys, 3, why, sizeof(why)), FLR_EKEY_RANGE);
    assert_string_equal(why, "key 0x0001000000000384 (row 900) is outside rows [0, 785) of "
                             "table w");

    /* In the table, on another shard: 700 * 4 / 785 = 3.57, 392 * 4 / 785 = 1.997. */
    keys[1] = flr_key(1, 700);
    assert_int_equal(flr_tshard_check_keys(w, keys, 2, why, sizeof(why)), FLR_EKEY_RANGE);
    assert_non_null(strstr(why, "(row 700)"));
    assert_non_null(strstr(why, "belongs to shard 3, not 2"));
    keys[1] = flr_key(1, 392);
    assert_int_equal(flr_tshard_check_keys(w, keys, 2, why, sizeof(why)), FLR_EKEY_RANGE);
    assert_non_null(strstr(why, "belongs to shard 1, not 2"));
    keys[1] = flr_key(1, 589);
    assert_int_equal(flr_tshard_check_keys(w, keys, 2, why, sizeof(why)), FLR_EKEY_RANGE);
    assert_non_null(strstr(why, "belongs to shard 3, not 2"));

    /* Another table's key. */
    keys[1] = flr_key(2, 400);
    assert_int_equal(flr_tshard_check_keys(w, keys, 2, why, sizeof(why)), FLR_EKEY_RANGE);
    assert_non_null(strstr(why, "0x0002000000000190"));
    keys[0] = sparse_key_in(2, 4, 2, &next);
    keys[1] = flr_key(1, sparse_key_in(2, 4, 2, &next) & FLR_KEY_ROW_MASK);
    assert_int_equal(flr_tshard_check_keys(emb, keys, 2, why, sizeof(why)), FLR_EKEY_RANGE);
    assert_non_null(strstr(why, "table"));

    /* A sparse key that the placement gives another shard. */
    next = 0;
    keys[1] = sparse_key_in(2, 4, 0, &next);
    assert_int_equal(flr_tshard_check_keys(emb, keys, 2, why, sizeof(why)), FLR_EKEY_RANGE);
    assert_non_null(strstr(why, "belongs to shard 0, not 2"));

    /* No reason buffer: still the code. */
    assert_int_equal(flr_tshard_check_keys(emb, keys, 2, NULL, 0), FLR_EKEY_RANGE);

    /* No such table. */
    assert_null(flr_store_table(s, 9));
    assert_int_equal(flr_tshard_check_keys(flr_store_table(s, 9), keys, 1, why, sizeof(why)),
                     FLR_EUNKNOWN_TABLE);

    /* Checking created no rows. */
    assert_int_equal(flr_store_rows(s), 589 - 393);
    flr_store_free(s);
}

static void check_push_rejects_bad_values(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s = checks_store(&spec);
    struct flr_tshard *w = flr_store_table(s, 1);
    uint64_t keys[3] = {flr_key(1, 393), flr_key(1, 394), flr_key(1, 395)};
    float vals[30];
    unsigned char unaligned[sizeof(vals) + 1];
    char why[160];

    for (int i = 0; i < 30; i++)
        vals[i] = (float)i - 15.0f;
    assert_int_equal(flr_tshard_check_push(w, keys, 3, vals, sizeof(vals), why, sizeof(why)), 0);
    memcpy(unaligned + 1, vals, sizeof(vals));
    assert_int_equal(
        flr_tshard_check_push(w, keys, 3, unaligned + 1, sizeof(vals), why, sizeof(why)), 0);

    /* Wrong length. */
    assert_int_equal(flr_tshard_check_push(w, keys, 3, vals, 40, why, sizeof(why)), FLR_EVALUE_LEN);
    assert_string_equal(why, "values are 40 bytes, expected 3 keys x dim 10 x 4 = 120");
    assert_int_equal(flr_tshard_check_push(w, keys, 3, vals, 124, why, sizeof(why)),
                     FLR_EVALUE_LEN);

    /* Keys are checked first. */
    keys[2] = flr_key(1, 900);
    assert_int_equal(flr_tshard_check_push(w, keys, 3, vals, 40, why, sizeof(why)), FLR_EKEY_RANGE);
    keys[2] = flr_key(1, 395);

    /* NaN in key 394, column 3. */
    vals[13] = NAN;
    assert_int_equal(flr_tshard_check_push(w, keys, 3, vals, sizeof(vals), why, sizeof(why)),
                     FLR_ENAN_GRAD);
    assert_string_equal(why, "key 0x000100000000018a column 3: gradient is NaN");
    vals[13] = 0.0f;

    /* Infinities, also unaligned. */
    vals[29] = INFINITY;
    assert_int_equal(flr_tshard_check_push(w, keys, 3, vals, sizeof(vals), why, sizeof(why)),
                     FLR_ENAN_GRAD);
    assert_string_equal(why, "key 0x000100000000018b column 9: gradient is infinite");
    vals[29] = -INFINITY;
    memcpy(unaligned + 1, vals, sizeof(vals));
    assert_int_equal(
        flr_tshard_check_push(w, keys, 3, unaligned + 1, sizeof(vals), why, sizeof(why)),
        FLR_ENAN_GRAD);

    /* Extremes that are finite pass. */
    vals[29] = 3.4028235e38f;
    vals[0] = -1e-45f;
    assert_int_equal(flr_tshard_check_push(w, keys, 3, vals, sizeof(vals), why, sizeof(why)), 0);
    flr_store_free(s);
}

/* Dense keys just inside and just outside the slice [393, 589) of table 1, alone and after
 * good keys. */
static void check_keys_holds_at_the_slice_edges(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s = checks_store(&spec);
    struct flr_tshard *w = flr_store_table(s, 1);
    const uint64_t good[2] = {flr_key(1, 393), flr_key(1, 588)};
    const uint64_t bad[] = {flr_key(1, 392),
                            flr_key(1, 589),
                            flr_key(0, 400),
                            flr_key(2, 400),
                            flr_key(0, 588),
                            flr_key(2, 393),
                            flr_key(1, FLR_KEY_ROW_MASK),
                            0,
                            UINT64_MAX};
    uint64_t keys[3];
    char why[160], expect[32];

    assert_int_equal(flr_tshard_check_keys(w, good, 2, why, sizeof(why)), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(expect, sizeof(expect), "key 0x%016" PRIx64, bad[i]);
        assert_int_equal(flr_tshard_check_keys(w, &bad[i], 1, why, sizeof(why)), FLR_EKEY_RANGE);
        assert_non_null(strstr(why, expect));
        keys[0] = good[0];
        keys[1] = good[1];
        keys[2] = bad[i];
        assert_int_equal(flr_tshard_check_keys(w, keys, 3, why, sizeof(why)), FLR_EKEY_RANGE);
        assert_non_null(strstr(why, expect));
    }
    flr_store_free(s);
}

/* Sparse placement is computed in the key check itself: it must agree with the documented
 * placement for every shard count, powers of two or not. */
static void check_keys_follows_sparse_placement_for_any_shard_count(void **state)
{
    static const uint32_t counts[] = {1, 2, 3, 4, 5, 8, 12};
    enum { NKEYS = 200 };
    uint64_t keys[NKEYS];
    char why[160], expect[64];

    for (uint64_t i = 0; i < NKEYS; i++)
        keys[i] = flr_key(1, flr_mix64(i) & FLR_KEY_ROW_MASK);
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        const uint32_t nshards = counts[c];
        struct flr_job_spec spec;
        uint64_t mine[NKEYS + 1];

        job_one(&spec, nshards, FLR_TABLE_SPARSE, 0, 2, FLR_OPT_SGD);
        for (uint32_t sh = 0; sh < nshards; sh++) {
            struct flr_store *s = store_new(&spec, sh);
            struct flr_tshard *t = flr_store_table(s, 1);
            uint32_t n = 0;

            for (uint32_t i = 0; i < NKEYS; i++) {
                uint32_t owner = sparse_shard(keys[i], nshards);
                int rv = flr_tshard_check_keys(t, &keys[i], 1, why, sizeof(why));
                if (owner == sh) {
                    assert_int_equal(rv, 0);
                    mine[n++] = keys[i];
                    continue;
                }
                assert_int_equal(rv, FLR_EKEY_RANGE);
                snprintf(expect, sizeof(expect), "belongs to shard %" PRIu32 ", not %" PRIu32,
                         owner, sh);
                assert_non_null(strstr(why, expect));
            }
            /* All of the shard's keys at once pass; one more key of another shard fails. */
            assert_int_equal(flr_tshard_check_keys(t, mine, n, why, sizeof(why)), 0);
            if (nshards > 1) {
                for (uint32_t i = 0; i < NKEYS; i++)
                    if (sparse_shard(keys[i], nshards) != sh) {
                        mine[n] = keys[i];
                        break;
                    }
                assert_int_equal(flr_tshard_check_keys(t, mine, n + 1, why, sizeof(why)),
                                 FLR_EKEY_RANGE);
                snprintf(expect, sizeof(expect), "key 0x%016" PRIx64, mine[n]);
                assert_non_null(strstr(why, expect));
            }
            flr_store_free(s);
        }
    }
}

/* The check scans the whole value blob at once; a value that is not finite is still found
 * wherever it is (first float, vector part, the tail of a row, last float), at any
 * alignment of the blob, and named by its key and column. */
static void check_push_names_a_bad_value_anywhere_in_a_large_push(void **state)
{
    enum { ROWS = 150, DIM = 1001 };
    const size_t nv = (size_t)ROWS * DIM;
    const size_t at[] = {0, 1, 7, 8, DIM - 1, DIM, 77 * DIM + 500, nv - 9, nv - 8, nv - 2, nv - 1};
    static const struct {
        uint32_t bits;
        const char *what;
    } bad[] = {
        {0x7fc00000u, "NaN"}, {0xffc00000u, "NaN"},      {0x7f800001u, "NaN"},
        {0xffffffffu, "NaN"}, {0x7f800000u, "infinite"}, {0xff800000u, "infinite"},
    };
    struct flr_job_spec spec;
    uint64_t keys[ROWS];
    float *vals = malloc(nv * sizeof(float));
    unsigned char *buf = malloc(nv * sizeof(float) + 3);
    char why[160], expect[160];

    assert_non_null(vals);
    assert_non_null(buf);
    job_one(&spec, 1, FLR_TABLE_DENSE, ROWS, DIM, FLR_OPT_SGD);
    struct flr_store *s = store_new(&spec, 0);
    struct flr_tshard *t = flr_store_table(s, 1);
    for (uint32_t i = 0; i < ROWS; i++)
        keys[i] = flr_key(1, i);
    for (size_t j = 0; j < nv; j++)
        vals[j] = grad_at(0, j / DIM, (uint32_t)(j % DIM));
    /* Finite extremes pass. */
    vals[2] = FLT_MAX;
    vals[3] = -FLT_MAX;
    vals[4] = FLT_MIN / 4;
    vals[5] = -0.0f;
    vals[nv - 1] = -FLT_MAX;

    for (size_t off = 0; off < 4; off++) {
        unsigned char *v = buf + off;

        memcpy(v, vals, nv * sizeof(float));
        assert_int_equal(flr_tshard_check_push(t, keys, ROWS, v, nv * 4, why, sizeof(why)), 0);
        for (size_t p = 0; p < sizeof(at) / sizeof(at[0]); p++) {
            for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
                memcpy(v + at[p] * 4, &bad[b].bits, 4);
                assert_int_equal(flr_tshard_check_push(t, keys, ROWS, v, nv * 4, why, sizeof(why)),
                                 FLR_ENAN_GRAD);
                snprintf(expect, sizeof(expect), "key 0x%016" PRIx64 " column %zu: gradient is %s",
                         keys[at[p] / DIM], at[p] % DIM, bad[b].what);
                assert_string_equal(why, expect);
                memcpy(v + at[p] * 4, &vals[at[p]], 4);
            }
        }
        /* Of two bad values, the first is named. */
        memcpy(v + (nv - 1) * 4, &bad[4].bits, 4);
        memcpy(v + (77 * DIM + 500) * 4, &bad[0].bits, 4);
        assert_int_equal(flr_tshard_check_push(t, keys, ROWS, v, nv * 4, why, sizeof(why)),
                         FLR_ENAN_GRAD);
        assert_string_equal(why, "key 0x000100000000004d column 500: gradient is NaN");
    }
    free(vals);
    free(buf);
    flr_store_free(s);
}

/* The server's push path: check, then apply only when the check passed. */
static int push(struct flr_tshard *t, const uint64_t *keys, uint32_t n, const float *vals,
                uint64_t stamp)
{
    char why[160];
    int rv;

    if ((rv = flr_tshard_check_push(t, keys, n, vals, (uint64_t)n * flr_tshard_spec(t)->dim * 4,
                                    why, sizeof(why))) != 0)
        return rv;
    return flr_tshard_apply(t, keys, n, vals, stamp);
}

static void push_with_one_nan_changes_nothing(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s;
    uint64_t dense_rows[196], sparse_keys[4], sparse_rows[4], next = 0;
    float g[4 * 10];
    struct snap before_w, after_w, before_e, after_e;

    s = checks_store(&spec);
    struct flr_tshard *w = flr_store_table(s, 1), *emb = flr_store_table(s, 2);
    for (int i = 0; i < 196; i++)
        dense_rows[i] = 393 + (uint64_t)i;
    for (int i = 0; i < 4; i++) {
        sparse_keys[i] = sparse_key_in(2, 4, 2, &next);
        sparse_rows[i] = flr_key_row(sparse_keys[i]);
    }
    /* Give the rows some history first. */
    for (int i = 0; i < 40; i++)
        g[i] = 0.25f;
    assert_int_equal(push(emb, sparse_keys, 2, g, 1), 0);
    snap_take(&before_w, w, dense_rows, 196);
    snap_take(&before_e, emb, sparse_rows, 4);
    size_t bytes = flr_store_bytes(s);
    uint64_t rows = flr_store_rows(s);

    uint64_t dk[4] = {flr_key(1, 400), flr_key(1, 401), flr_key(1, 402), flr_key(1, 500)};
    g[35] = NAN;
    assert_int_equal(push(w, dk, 4, g, 2), FLR_ENAN_GRAD);
    g[35] = 0.25f;
    g[15] = NAN;
    assert_int_equal(push(emb, sparse_keys, 4, g, 2), FLR_ENAN_GRAD);

    snap_take(&after_w, w, dense_rows, 196);
    snap_take(&after_e, emb, sparse_rows, 4);
    assert_true(snap_equal(&before_w, &after_w));
    assert_true(snap_equal(&before_e, &after_e));
    /* The untouched sparse rows of the failed push were not created. */
    assert_false(after_e.present[2]);
    assert_false(after_e.present[3]);
    assert_int_equal(flr_store_bytes(s), bytes);
    assert_int_equal(flr_store_rows(s), rows);
    snap_free(&before_w);
    snap_free(&after_w);
    snap_free(&before_e);
    snap_free(&after_e);
    flr_store_free(s);
}

/* ---- reads and updates ----------------------------------------------------------------- */

static void read_after_apply_returns_updated_values(void **state)
{
    static const enum flr_optim_kind kinds[] = {FLR_OPT_SGD, FLR_OPT_MOMENTUM};

    for (size_t k = 0; k < 2; k++) {
        struct flr_job_spec spec;
        job_one(&spec, 2, FLR_TABLE_DENSE, 40, 3, kinds[k]);
        struct flr_store *s = store_new(&spec, 1); /* rows [20, 40) */
        struct flr_tshard *t = flr_store_table(s, 1);
        /* Runs and gaps, so that both the run copy and single rows are read. */
        const uint64_t rows[6] = {20, 21, 22, 25, 26, 39};
        uint64_t keys[6];
        float g[18], init[6][3], out[18];
        unsigned char kbuf[6 * 8 + 3], gbuf[18 * 4 + 3], obuf[18 * 4 + 3];

        for (int i = 0; i < 6; i++) {
            keys[i] = flr_key(1, rows[i]);
            flr_table_init_row(&spec.tables[0], rows[i], init[i]);
            for (int j = 0; j < 3; j++)
                g[i * 3 + j] = grad_at(0, rows[i], (uint32_t)j);
        }
        memcpy(kbuf + 3, keys, sizeof(keys));
        memcpy(gbuf + 1, g, sizeof(g));
        assert_int_equal(flr_tshard_apply(t, kbuf + 3, 6, gbuf + 1, 11), 0);
        assert_int_equal(flr_tshard_read(t, kbuf + 3, 6, obuf + 2), 0);
        memcpy(out, obuf + 2, sizeof(out));
        for (int i = 0; i < 6; i++) {
            uint64_t stamp;
            const float *r = flr_tshard_peek(t, rows[i], &stamp, NULL);
            assert_int_equal(stamp, 11);
            for (int j = 0; j < 3; j++) {
                /* sgd: w = init - 0.1 g;  momentum from u = 0: u = g, w = init - 0.1 g. */
                float expect = init[i][j] - 0.1f * g[i * 3 + j];
                assert_float_equal(out[i * 3 + j], expect, TOL);
                assert_float_equal(r[j], expect, TOL);
                if (kinds[k] == FLR_OPT_MOMENTUM)
                    assert_float_equal(r[3 + j], g[i * 3 + j], 0.0);
            }
        }
        /* A row not pushed still reads as its initial value. */
        uint64_t other = flr_key(1, 30);
        float o[3], i30[3];
        flr_table_init_row(&spec.tables[0], 30, i30);
        assert_int_equal(flr_tshard_read(t, &other, 1, o), 0);
        assert_memory_equal(o, i30, sizeof(o));

        /* One call reading the whole slice is one run. */
        uint64_t all[20];
        float vals[60];
        for (int i = 0; i < 20; i++)
            all[i] = flr_key(1, 20 + (uint64_t)i);
        assert_int_equal(flr_tshard_read(t, all, 20, vals), 0);
        for (int i = 0; i < 20; i++)
            assert_memory_equal(vals + i * 3, flr_tshard_peek(t, 20 + (uint64_t)i, NULL, NULL),
                                3 * sizeof(float));
        flr_store_free(s);
    }
}

/* Consecutive dense rows are applied as runs, and a gradient blob is used in place when it
 * is aligned.  The result must be, bit for bit, the optimizer's own update of each row from
 * an aligned gradient: for every optimizer, for runs and single rows, for rows narrower and
 * wider than a copy block, and at every alignment of the blob. */
static void dense_runs_apply_like_each_row_alone(void **state)
{
    static const enum flr_optim_kind kinds[] = {FLR_OPT_SGD, FLR_OPT_MOMENTUM, FLR_OPT_ADAGRAD,
                                                FLR_OPT_ADAM};
    static const uint32_t dims[] = {1, 3, 8, 1500};
    /* Shard 1 of 2 holds rows [20, 40): a single row, a run of five, another single row and a
     * run that ends the slice. */
    static const uint64_t rows[] = {20, 22, 23, 24, 25, 26, 30, 37, 38, 39};
    enum { N = 10, ROUNDS = 3 };

    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        const struct flr_optim_ops *ops = flr_optim_ops(kinds[k]);
        for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
            const uint32_t dim = dims[d];
            const size_t width = (size_t)(1 + ops->nslots) * dim;
            struct flr_job_spec spec;
            uint64_t keys[N];
            float *g = malloc((size_t)N * dim * sizeof(float));
            float *ref = calloc((size_t)N * width, sizeof(float));
            unsigned char *buf = malloc((size_t)N * dim * sizeof(float) + 3);
            uint32_t ref_steps[N] = {0};

            assert_non_null(g);
            assert_non_null(ref);
            assert_non_null(buf);
            job_one(&spec, 2, FLR_TABLE_DENSE, 40, dim, kinds[k]);
            for (uint32_t i = 0; i < N; i++) {
                keys[i] = flr_key(1, rows[i]);
                flr_table_init_row(&spec.tables[0], rows[i], ref + i * width);
            }
            struct flr_store *s[4];
            for (int off = 0; off < 4; off++)
                s[off] = store_new(&spec, 1);
            for (uint64_t round = 0; round < ROUNDS; round++) {
                for (uint32_t i = 0; i < N; i++) {
                    for (uint32_t j = 0; j < dim; j++)
                        g[(size_t)i * dim + j] = grad_at((uint32_t)round, rows[i], j);
                    ops->apply(&spec.tables[0], ref + i * width, &ref_steps[i], g + (size_t)i * dim,
                               dim);
                }
                for (int off = 0; off < 4; off++) {
                    memcpy(buf + off, g, (size_t)N * dim * sizeof(float));
                    assert_int_equal(flr_tshard_apply(flr_store_table(s[off], 1), keys, N,
                                                      buf + off, 10 + round),
                                     0);
                }
            }
            for (int off = 0; off < 4; off++) {
                struct flr_tshard *t = flr_store_table(s[off], 1);
                for (uint64_t r = 20, i = 0; r < 40; r++) {
                    uint64_t stamp;
                    uint32_t steps;
                    const float *row = flr_tshard_peek(t, r, &stamp, &steps);
                    assert_non_null(row);
                    if (i < N && rows[i] == r) {
                        assert_memory_equal(row, ref + i * width, width * sizeof(float));
                        assert_int_equal(steps, ref_steps[i]);
                        assert_int_equal(stamp, 10 + ROUNDS - 1);
                        i++;
                    } else {
                        assert_int_equal(stamp, 0);
                        assert_int_equal(steps, 0);
                    }
                }
                flr_store_free(s[off]);
            }
            free(g);
            free(ref);
            free(buf);
        }
    }
}

static void sparse_apply_creates_and_updates_rows(void **state)
{
    struct flr_job_spec spec;
    uint64_t next = 0, keys[3];
    float g[12], out[12], init[4];

    job_one(&spec, 2, FLR_TABLE_SPARSE, 0, 4, FLR_OPT_SGD);
    struct flr_store *s = store_new(&spec, 0);
    struct flr_tshard *t = flr_store_table(s, 1);
    for (int i = 0; i < 3; i++)
        keys[i] = sparse_key_in(1, 2, 0, &next);
    for (int i = 0; i < 12; i++)
        g[i] = grad_at(1, (uint64_t)i, 0);
    assert_int_equal(flr_tshard_apply(t, keys, 3, g, 4), 0);
    assert_int_equal(flr_store_rows(s), 3);
    assert_int_equal(flr_tshard_read(t, keys, 3, out), 0);
    for (int i = 0; i < 3; i++) {
        uint64_t stamp;
        flr_table_init_row(&spec.tables[0], flr_key_row(keys[i]), init);
        assert_non_null(flr_tshard_peek(t, flr_key_row(keys[i]), &stamp, NULL));
        assert_int_equal(stamp, 4);
        for (int j = 0; j < 4; j++)
            assert_float_equal(out[i * 4 + j], init[j] - 0.1f * g[i * 4 + j], TOL);
    }
    flr_store_free(s);
}

static void stamps_record_the_last_update(void **state)
{
    struct flr_job_spec spec;
    float g[2 * 5] = {0};

    job_one(&spec, 1, FLR_TABLE_DENSE, 10, 5, FLR_OPT_SGD);
    struct flr_store *s = store_new(&spec, 0);
    struct flr_tshard *t = flr_store_table(s, 1);
    uint64_t k13[2] = {flr_key(1, 1), flr_key(1, 3)}, k3 = flr_key(1, 3), stamp;

    assert_int_equal(flr_tshard_apply(t, k13, 2, g, 7), 0);
    assert_int_equal(flr_tshard_apply(t, &k3, 1, g, 9), 0);
    assert_non_null(flr_tshard_peek(t, 1, &stamp, NULL));
    assert_int_equal(stamp, 7);
    assert_non_null(flr_tshard_peek(t, 3, &stamp, NULL));
    assert_int_equal(stamp, 9);
    assert_non_null(flr_tshard_peek(t, 2, &stamp, NULL));
    assert_int_equal(stamp, 0);
    flr_store_free(s);
}

static void adam_rows_count_their_own_steps(void **state)
{
    struct flr_job_spec spec;
    uint64_t next = 0, a, b, c, stamp;
    uint32_t steps;
    float g[4] = {1, 2, 3, 4}, out[4], init[4];

    job_one(&spec, 1, FLR_TABLE_SPARSE, 0, 4, FLR_OPT_ADAM);
    struct flr_store *s = store_new(&spec, 0);
    struct flr_tshard *t = flr_store_table(s, 1);
    a = sparse_key_in(1, 1, 0, &next);
    b = sparse_key_in(1, 1, 0, &next);
    c = sparse_key_in(1, 1, 0, &next);
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(flr_tshard_apply(t, &a, 1, g, i), 0);
    assert_int_equal(flr_tshard_apply(t, &b, 1, g, 4), 0);
    assert_int_equal(flr_tshard_read(t, &c, 1, out), 0);

    assert_non_null(flr_tshard_peek(t, flr_key_row(a), &stamp, &steps));
    assert_int_equal(steps, 3);
    assert_int_equal(stamp, 3);
    const float *rb = flr_tshard_peek(t, flr_key_row(b), &stamp, &steps);
    assert_int_equal(steps, 1);
    assert_int_equal(stamp, 4);
    /* First Adam step of b: the update is lr * g / (|g| + eps), about 0.1 per column. */
    flr_table_init_row(&spec.tables[0], flr_key_row(b), init);
    for (int j = 0; j < 4; j++)
        assert_float_equal(rb[j], init[j] - 0.1f, 1e-5);
    assert_non_null(flr_tshard_peek(t, flr_key_row(c), &stamp, &steps));
    assert_int_equal(steps, 0);
    assert_int_equal(stamp, 0);
    flr_store_free(s);
}

/* ---- moving a shard ------------------------------------------------------------------------ */

/* Exports every row of a table a few rows at a time and imports them into a fresh store;
 * both must then hold the same values, slots, stamps and step counts. */
static void move_table(struct flr_tshard *from, struct flr_tshard *to, uint32_t per_call)
{
    size_t rb = flr_tshard_row_bytes(from);
    uint64_t *keys = malloc(per_call * 8), cursor = 0, next;
    unsigned char *rows = malloc(per_call * rb);

    assert_non_null(keys);
    assert_non_null(rows);
    while (cursor != UINT64_MAX) {
        uint32_t n = flr_tshard_export(from, cursor, per_call, keys, rows, &next);
        assert_true(n <= per_call);
        assert_int_equal(flr_tshard_import(to, keys, n, rows), 0);
        cursor = next;
    }
    free(keys);
    free(rows);
}

static void export_import_moves_rows_slots_and_stamps(void **state)
{
    struct flr_job_spec spec;
    uint64_t next = 0, keys[40], stamp1, stamp2;
    uint32_t steps1, steps2, n = 0;
    float g[40 * 4];

    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        enum flr_table_kind k = kind ? FLR_TABLE_SPARSE : FLR_TABLE_DENSE;
        job_one(&spec, 2, k, 50, 4, FLR_OPT_ADAM);
        struct flr_store *a = store_new(&spec, 1), *b = store_new(&spec, 1);
        struct flr_tshard *ta = flr_store_table(a, 1), *tb = flr_store_table(b, 1);
        uint64_t lo, hi;
        flr_shard_dense_range(&spec, &spec.tables[0], 1, &lo, &hi);
        n = 0;
        for (uint32_t i = 0; i < 40; i++) {
            if (k == FLR_TABLE_SPARSE)
                keys[n++] = sparse_key_in(1, 2, 1, &next);
            else if (lo + i < hi)
                keys[n++] = flr_key(1, lo + i);
        }
        for (uint32_t i = 0; i < n * 4; i++)
            g[i] = (float)(i % 7) - 3.0f;
        assert_int_equal(flr_tshard_apply(ta, keys, n, g, 5), 0);
        assert_int_equal(flr_tshard_apply(ta, keys, n / 2, g, 6), 0);
        move_table(ta, tb, 3);
        assert_int_equal(flr_store_rows(b), flr_store_rows(a));
        for (uint32_t i = 0; i < n; i++) {
            uint64_t row = flr_key_row(keys[i]);
            const float *ra = flr_tshard_peek(ta, row, &stamp1, &steps1);
            const float *rbp = flr_tshard_peek(tb, row, &stamp2, &steps2);
            assert_non_null(ra);
            assert_non_null(rbp);
            assert_memory_equal(ra, rbp, 3 * 4 * sizeof(float)); /* value, m, v */
            assert_int_equal(stamp1, stamp2);
            assert_int_equal(steps1, steps2);
        }
        /* A key of another table is refused. */
        {
            uint64_t bad = flr_key(2, flr_key_row(keys[0]));
            unsigned char row[256] = {0};
            assert_int_equal(flr_tshard_import(tb, &bad, 1, row), FLR_EKEY_RANGE);
        }
        flr_store_free(a);
        flr_store_free(b);
    }
}

/* ---- BSP accumulation -------------------------------------------------------------------- */

/* Three workers push overlapping rows; worker 0 pushes the highest row first so that the
 * touched list starts out of order. */
#define NW 3
static const uint64_t worker_rows[NW][3] = {{7, 0, 0}, {1, 4, 9}, {1, 4, 0}};
static const uint32_t worker_n[NW] = {1, 3, 2};
static const uint64_t union_rows[4] = {1, 4, 7, 9};

static void worker_push(uint32_t w, uint32_t dim, const uint64_t *row_keys, uint64_t *keys,
                        float *g)
{
    for (uint32_t i = 0; i < worker_n[w]; i++) {
        keys[i] = row_keys[worker_rows[w][i]];
        for (uint32_t j = 0; j < dim; j++)
            g[i * dim + j] = grad_at(w, worker_rows[w][i], j);
    }
}

/* The same sums as the accumulator forms: worker 0 + worker 1 + worker 2, in that order. */
static void summed_push(uint32_t dim, const uint64_t *row_keys, uint64_t *keys, float *g)
{
    for (uint32_t i = 0; i < 4; i++) {
        keys[i] = row_keys[union_rows[i]];
        for (uint32_t j = 0; j < dim; j++) {
            float sum = 0.0f;
            for (uint32_t w = 0; w < NW; w++)
                for (uint32_t k = 0; k < worker_n[w]; k++)
                    if (worker_rows[w][k] == union_rows[i])
                        sum += grad_at(w, union_rows[i], j);
            g[i * dim + j] = sum;
        }
    }
}

/* by_ref: the pushes go in by reference (flr_tshard_accumulate_ref), each from a buffer of
 * its own, as a shard's held messages are; the sums must not change. */
static void accumulate_equals_one_summed_apply(enum flr_table_kind kind, int by_ref)
{
    enum { DIM = 6 };
    struct flr_job_spec spec;
    uint64_t row_keys[10], rows[10], keys[4], wkeys[NW][3], next = 0;
    float g[4 * DIM], wg[NW][3 * DIM];

    job_one(&spec, 2, kind, 20, DIM, FLR_OPT_MOMENTUM);
    for (int r = 0; r < 10; r++) {
        row_keys[r] =
            kind == FLR_TABLE_DENSE ? flr_key(1, 10 + (uint64_t)r) : sparse_key_in(1, 2, 1, &next);
        rows[r] = flr_key_row(row_keys[r]);
    }
    struct flr_store *acc = store_new(&spec, 1), *sum = store_new(&spec, 1),
                     *each = store_new(&spec, 1);
    struct flr_tshard *ta = flr_store_table(acc, 1), *ts = flr_store_table(sum, 1),
                      *te = flr_store_table(each, 1);
    struct snap sa, ss, se;

    for (int round = 0; round < 2; round++) {
        uint64_t stamp = 5 + (uint64_t)round;
        for (uint32_t w = 0; w < NW; w++) {
            worker_push(w, DIM, row_keys, wkeys[w], wg[w]);
            if (by_ref)
                assert_int_equal(flr_tshard_accumulate_ref(ta, wkeys[w], worker_n[w], wg[w]), 0);
            else
                assert_int_equal(flr_tshard_accumulate(ta, wkeys[w], worker_n[w], wg[w]), 0);
            assert_int_equal(flr_tshard_apply(te, wkeys[w], worker_n[w], wg[w], stamp), 0);
        }
        assert_int_equal(flr_tshard_apply_accumulated(ta, stamp), 0);
        summed_push(DIM, row_keys, keys, g);
        assert_int_equal(flr_tshard_apply(ts, keys, 4, g, stamp), 0);

        snap_take(&sa, ta, rows, 10);
        snap_take(&ss, ts, rows, 10);
        snap_take(&se, te, rows, 10);
        assert_true(snap_equal(&sa, &ss));
        /* Applying each push on its own moves momentum rows differently. */
        assert_false(snap_equal(&sa, &se));
        for (int r = 0; r < 10; r++) {
            int touched = r == 1 || r == 4 || r == 7 || r == 9;
            assert_int_equal(sa.stamps[r], touched ? stamp : 0);
        }
        snap_free(&sa);
        snap_free(&ss);
        snap_free(&se);
    }

    /* The accumulator is empty after applying: another apply changes nothing. */
    snap_take(&ss, ta, rows, 10);
    assert_int_equal(flr_tshard_apply_accumulated(ta, 99), 0);
    snap_take(&sa, ta, rows, 10);
    assert_true(snap_equal(&sa, &ss));
    snap_free(&sa);
    snap_free(&ss);

    flr_store_free(acc);
    flr_store_free(sum);
    flr_store_free(each);
}

static void dense_accumulate_equals_one_summed_apply(void **state)
{
    accumulate_equals_one_summed_apply(FLR_TABLE_DENSE, 0);
}

static void sparse_accumulate_equals_one_summed_apply(void **state)
{
    accumulate_equals_one_summed_apply(FLR_TABLE_SPARSE, 0);
}

static void accumulated_by_reference_sums_the_same(void **state)
{
    accumulate_equals_one_summed_apply(FLR_TABLE_DENSE, 1);
    accumulate_equals_one_summed_apply(FLR_TABLE_SPARSE, 1);
}

/* Every row of a dense slice set to -0.0 (value and slots): where the sign of a zero sum
 * shows. */
static void rows_negative_zero(struct flr_tshard *t, uint64_t nrows)
{
    const size_t rb = flr_tshard_row_bytes(t), width = (rb - 12) / sizeof(float);
    unsigned char *blob = calloc(nrows, rb);
    uint64_t *keys = malloc(nrows * sizeof(*keys));
    const float nz = -0.0f;

    assert_non_null(blob);
    assert_non_null(keys);
    for (uint64_t r = 0; r < nrows; r++) {
        keys[r] = flr_key(1, r);
        for (size_t j = 0; j < width; j++)
            memcpy(blob + r * rb + j * sizeof(float), &nz, sizeof(nz));
    }
    assert_int_equal(flr_tshard_import(t, keys, (uint32_t)nrows, blob), 0);
    free(blob);
    free(keys);
}

/* n gradient rows for rows [first, first + n) at dst (which need not be aligned), with
 * signed zeros among them. */
static void push_make(unsigned char *dst, uint64_t *keys, uint64_t first, uint32_t n, uint32_t dim)
{
    for (uint32_t i = 0; i < n; i++) {
        keys[i] = flr_key(1, first + i);
        for (uint32_t j = 0; j < dim; j++) {
            float v = j == 0 ? -0.0f : j == 1 ? 0.0f : grad_at(2, first + i, j);
            memcpy(dst + ((size_t)i * dim + j) * sizeof(float), &v, sizeof(v));
        }
    }
}

/*
 * A clock whose pushes name each row once (a worker's push cut into parts, then another
 * worker's rows above them) is applied from the pushes themselves: bit for bit what the
 * accumulator gives, zeros' signs included, and without allocating it.  A push that
 * overlaps earlier ones moves them into the accumulator, with the same outcome.
 */
static void distinct_rows_by_reference_apply_as_summed(void **state)
{
    enum { DIM = 5, ROWS = 64 };
    static const enum flr_optim_kind optims[] = {FLR_OPT_SGD, FLR_OPT_MOMENTUM, FLR_OPT_ADAM};
    /* {first row, rows}: three distinct parts, then a part overlapping the first two. */
    static const uint64_t parts[4][2] = {{0, 10}, {10, 10}, {30, 10}, {5, 10}};

    for (size_t o = 0; o < sizeof(optims) / sizeof(optims[0]); o++) {
        for (int overlap = 0; overlap < 2; overlap++) {
            struct flr_job_spec spec;
            unsigned char grads[4][10 * DIM * sizeof(float) + 1];
            uint64_t keys[4][10], rows[ROWS];
            struct snap sa, sr, sp;
            const uint32_t nparts = overlap ? 4 : 3;

            job_one(&spec, 1, FLR_TABLE_DENSE, ROWS, DIM, optims[o]);
            struct flr_store *a = store_new(&spec, 0), *r = store_new(&spec, 0),
                             *p = store_new(&spec, 0);
            struct flr_tshard *ta = flr_store_table(a, 1), *tr = flr_store_table(r, 1),
                              *tp = flr_store_table(p, 1);
            for (uint64_t i = 0; i < ROWS; i++)
                rows[i] = i;
            rows_negative_zero(ta, ROWS);
            rows_negative_zero(tr, ROWS);
            rows_negative_zero(tp, ROWS);
            const size_t before = flr_store_bytes(r);

            for (uint32_t k = 0; k < nparts; k++) {
                unsigned char *g = grads[k] + (k % 2); /* odd parts misaligned, as on the wire */
                push_make(g, keys[k], parts[k][0], (uint32_t)parts[k][1], DIM);
                assert_int_equal(flr_tshard_accumulate(ta, keys[k], (uint32_t)parts[k][1], g), 0);
                assert_int_equal(flr_tshard_accumulate_ref(tr, keys[k], (uint32_t)parts[k][1], g),
                                 0);
                if (!overlap)
                    assert_int_equal(flr_tshard_apply(tp, keys[k], (uint32_t)parts[k][1], g, 7), 0);
            }
            if (!overlap) /* nothing summed, nothing allocated */
                assert_int_equal(flr_store_bytes(r), before);
            assert_int_equal(flr_tshard_apply_accumulated(ta, 7), 0);
            assert_int_equal(flr_tshard_apply_accumulated(tr, 7), 0);
            snap_take(&sa, ta, rows, ROWS);
            snap_take(&sr, tr, rows, ROWS);
            snap_take(&sp, tp, rows, ROWS);
            assert_true(snap_equal(&sa, &sr));
            for (uint64_t i = 0; i < ROWS; i++)
                assert_int_equal(sr.stamps[i], (i < 20 || (i >= 30 && i < 40)) ? 7 : 0);
            /* Applying the gradients as they are turns some -0.0 into +0.0 with SGD: the
             * data does test the sign of zero. */
            if (!overlap && optims[o] == FLR_OPT_SGD)
                assert_false(snap_equal(&sa, &sp));
            snap_free(&sa);
            snap_free(&sr);
            snap_free(&sp);
            flr_store_free(a);
            flr_store_free(r);
            flr_store_free(p);
        }
    }
}

/* A clock dropped (its accumulating failed) leaves nothing behind for the next apply. */
static void dropped_accumulation_changes_nothing(void **state)
{
    enum { DIM = 3, ROWS = 16 };
    struct flr_job_spec spec;
    unsigned char grads[2][4 * DIM * sizeof(float)];
    uint64_t keys[2][4], rows[ROWS];
    struct snap s0, s1;

    job_one(&spec, 1, FLR_TABLE_DENSE, ROWS, DIM, FLR_OPT_SGD);
    struct flr_store *st = store_new(&spec, 0);
    struct flr_tshard *t = flr_store_table(st, 1);
    for (uint64_t i = 0; i < ROWS; i++)
        rows[i] = i;
    snap_take(&s0, t, rows, ROWS);
    push_make(grads[0], keys[0], 0, 4, DIM);
    push_make(grads[1], keys[1], 4, 4, DIM);
    for (int summed = 0; summed < 2; summed++) {
        if (summed) /* into the accumulator, and so the second push too */
            assert_int_equal(flr_tshard_accumulate(t, keys[0], 4, grads[0]), 0);
        else /* deferred, and so the second push too */
            assert_int_equal(flr_tshard_accumulate_ref(t, keys[0], 4, grads[0]), 0);
        assert_int_equal(flr_tshard_accumulate_ref(t, keys[1], 4, grads[1]), 0);
        flr_tshard_drop_accumulated(t);
        assert_int_equal(flr_tshard_apply_accumulated(t, 3), 0);
        snap_take(&s1, t, rows, ROWS);
        assert_true(snap_equal(&s0, &s1));
        snap_free(&s1);
    }
    snap_free(&s0);
    flr_store_free(st);
}

/* ---- growth and accounting ----------------------------------------------------------------- */

static void sparse_growth_keeps_every_row(void **state)
{
    enum { ROWS = 100000, BATCH = 1000, DIM = 3 };
    struct flr_job_spec spec;
    uint64_t *keys = malloc(ROWS * sizeof(*keys));
    float *g = malloc((size_t)BATCH * DIM * sizeof(float)), *out = malloc(BATCH * DIM * 4);
    float init[DIM];

    assert_non_null(keys);
    assert_non_null(g);
    assert_non_null(out);
    job_one(&spec, 1, FLR_TABLE_SPARSE, 0, DIM, FLR_OPT_SGD);
    struct flr_store *s = store_new(&spec, 0);
    struct flr_tshard *t = flr_store_table(s, 1);

    /* Multiplying by an odd constant is a bijection on 48-bit rows: distinct, spread. */
    for (uint64_t i = 0; i < ROWS; i++)
        keys[i] = flr_key(1, (i * 0x9e3779b97f4bULL) & FLR_KEY_ROW_MASK);
    for (uint32_t b = 0; b < ROWS / BATCH; b++) {
        for (uint32_t i = 0; i < BATCH; i++)
            for (uint32_t j = 0; j < DIM; j++)
                g[i * DIM + j] = grad_at(j, (uint64_t)b * BATCH + i, j);
        assert_int_equal(flr_tshard_apply(t, keys + (size_t)b * BATCH, BATCH, g, b + 1), 0);
        assert_int_equal(flr_store_rows(s), (uint64_t)(b + 1) * BATCH);
    }
    for (uint32_t b = 0; b < ROWS / BATCH; b++) {
        assert_int_equal(flr_tshard_read(t, keys + (size_t)b * BATCH, BATCH, out), 0);
        for (uint32_t i = 0; i < BATCH; i++) {
            uint64_t row = flr_key_row(keys[(size_t)b * BATCH + i]), stamp;
            flr_table_init_row(&spec.tables[0], row, init);
            assert_non_null(flr_tshard_peek(t, row, &stamp, NULL));
            assert_int_equal(stamp, b + 1);
            for (uint32_t j = 0; j < DIM; j++) {
                float expect = init[j] - 0.1f * grad_at(j, (uint64_t)b * BATCH + i, j);
                assert_float_equal(out[i * DIM + j], expect, TOL);
            }
        }
    }
    assert_int_equal(flr_store_rows(s), ROWS);
    free(keys);
    free(g);
    free(out);
    flr_store_free(s);
}

static void bytes_and_rows_follow_the_slices(void **state)
{
    struct flr_job_spec spec;
    const size_t dense_row = 12 * sizeof(float) + 8 + 4;     /* adam: 3 x dim 4, stamp, steps */
    const size_t sparse_row = 2 * 8 * sizeof(float) + 8 + 4; /* adagrad: 2 x dim 8 */
    uint64_t next = 0, keys[64];
    float vals[64 * 8];

    job_set(&spec, 2);
    spec.ntables = 2;
    table_set(&spec.tables[0], 1, "w", FLR_TABLE_DENSE, 1000, 4, FLR_OPT_ADAM);
    table_set(&spec.tables[1], 2, "emb", FLR_TABLE_SPARSE, 0, 8, FLR_OPT_ADAGRAD);
    struct flr_store *s = store_new(&spec, 0);
    struct flr_tshard *w = flr_store_table(s, 1), *emb = flr_store_table(s, 2);

    assert_int_equal(flr_store_rows(s), 500);
    size_t b0 = flr_store_bytes(s);
    assert_true(b0 >= 500 * dense_row);
    assert_true(b0 < 500 * dense_row + 64 * 1024);

    /* Sparse rows add their own room. */
    for (uint32_t round = 0; round < 100; round++) {
        for (int i = 0; i < 64; i++)
            keys[i] = sparse_key_in(2, 2, 0, &next);
        assert_int_equal(flr_tshard_read(emb, keys, 64, vals), 0);
    }
    assert_int_equal(flr_store_rows(s), 500 + 6400);
    size_t b1 = flr_store_bytes(s);
    assert_true(b1 >= b0 + 6400 * sparse_row);
    /* Index at load <= 0.7 with 16-byte slots, chunks of 4096 rows: bounded overhead. */
    assert_true(b1 < b0 + 8192 * sparse_row + 16384 * 16 + 64 * 1024);

    /* The accumulator is counted too. */
    uint64_t dk[2] = {flr_key(1, 0), flr_key(1, 499)};
    memset(vals, 0, sizeof(vals));
    assert_int_equal(flr_tshard_accumulate(w, dk, 2, vals), 0);
    size_t b2 = flr_store_bytes(s);
    assert_true(b2 >= b1 + 500 * 4 * sizeof(float));
    assert_int_equal(flr_tshard_apply_accumulated(w, 1), 0);
    assert_int_equal(flr_store_rows(s), 500 + 6400);
    flr_store_free(s);
}

static void alloc_rejects_bad_arguments(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s = (struct flr_store *)&spec;

    job_one(&spec, 2, FLR_TABLE_DENSE, 10, 3, FLR_OPT_SGD);
    assert_int_equal(flr_store_alloc(&s, &spec, 2), FLR_EINVAL);
    assert_ptr_equal(s, (struct flr_store *)&spec);
    spec.tables[0].dim = 0;
    assert_int_equal(flr_store_alloc(&s, &spec, 0), FLR_EINVAL);
    assert_ptr_equal(s, (struct flr_store *)&spec);

    /* A shard may hold no dense rows at all. */
    job_one(&spec, 8, FLR_TABLE_DENSE, 3, 3, FLR_OPT_SGD);
    s = store_new(&spec, 1);
    assert_int_equal(flr_store_rows(s), 0);
    assert_null(flr_tshard_peek(flr_store_table(s, 1), 0, NULL, NULL));
    assert_int_equal(flr_tshard_apply_accumulated(flr_store_table(s, 1), 1), 0);
    flr_store_free(s);
    flr_store_free(NULL);
}

/* ---- copies: holders and the dirty list ----------------------------------------------- */

/* Pushes a gradient of ones to the given rows of table t at stamp. */
static void touch_rows(struct flr_tshard *t, uint32_t table, const uint64_t *rows, uint32_t n,
                       uint64_t stamp)
{
    uint64_t keys[16];
    float g[16 * 4];
    uint32_t dim = flr_tshard_spec(t)->dim;

    assert_true(n <= 16 && dim <= 4);
    for (uint32_t i = 0; i < n; i++)
        keys[i] = flr_key(table, rows[i]);
    for (uint32_t i = 0; i < n * dim; i++)
        g[i] = 1.0f;
    assert_int_equal(flr_tshard_apply(t, keys, n, g, stamp), 0);
}

static void hold_rows(struct flr_tshard *t, uint32_t table, const uint64_t *rows, uint32_t n,
                      uint32_t worker)
{
    uint64_t keys[16];

    for (uint32_t i = 0; i < n; i++)
        keys[i] = flr_key(table, rows[i]);
    flr_tshard_hold(t, keys, n, worker);
}

/* Pops every listed short row into rows[] (their row ids) and since[]; returns the count. */
static size_t drain_dirty(struct flr_store *s, uint64_t *rows, uint64_t *since, size_t max)
{
    const struct flr_dirty *d;
    size_t n = 0;

    while ((d = flr_store_dirty_head(s)) != NULL) {
        assert_true(n < max);
        rows[n] = flr_key_row(d->key);
        since[n++] = d->since;
        flr_store_dirty_pop(s);
    }
    return n;
}

static void untracked_store_lists_nothing(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s;
    const uint64_t rows[2] = {1, 2};

    job_one(&spec, 1, FLR_TABLE_DENSE, 10, 2, FLR_OPT_SGD);
    s = store_new(&spec, 0);
    touch_rows(flr_store_table(s, 1), 1, rows, 2, 1);
    assert_null(flr_store_dirty_head(s));
    assert_int_equal(flr_store_holder_bytes(s), 0);
    assert_int_equal(flr_store_short_rows(s), 0);
    flr_store_free(s);
}

static void changed_rows_lose_their_holders_and_are_listed_once_in_order(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s;
    struct flr_tshard *t;
    const uint64_t held[4] = {0, 1, 2, 3}, a[2] = {2, 3}, b[2] = {3, 5};
    uint64_t rows[16], since[16], key = flr_key(1, 7);
    unsigned char row7[2 * 4 + 12] = {0};
    uint32_t who[2];
    const struct flr_dirty *d;

    job_one(&spec, 1, FLR_TABLE_DENSE, 10, 2, FLR_OPT_SGD);
    s = store_new(&spec, 0);
    t = flr_store_table(s, 1);
    assert_int_equal(flr_store_track_copies(s, 2, 2), 0);
    assert_true(flr_store_holder_bytes(s) >= 10 * 2 * sizeof(uint16_t));

    /* Initial rows need no copy: a rebuild recreates them. */
    hold_rows(t, 1, held, 4, 0);
    hold_rows(t, 1, held, 4, 1);
    hold_rows(t, 1, held, 4, 2); /* no room for a third holder */
    assert_null(flr_store_dirty_head(s));

    touch_rows(t, 1, a, 2, 1);
    touch_rows(t, 1, b, 2, 2);
    assert_int_equal(flr_store_short_rows(s), 3);
    d = flr_store_dirty_head(s);
    assert_non_null(d);
    assert_int_equal(d->key, flr_key(1, 2));
    assert_int_equal(d->since, 1);
    assert_int_equal(flr_store_row_holders(s, d, who), 0);

    /* A row that got its holders back leaves the head; one holder of two is short. */
    hold_rows(t, 1, a, 1, 0);
    hold_rows(t, 1, a, 1, 1);
    hold_rows(t, 1, b, 1, 1);
    d = flr_store_dirty_head(s);
    assert_int_equal(d->key, flr_key(1, 3));
    assert_int_equal(flr_store_row_holders(s, d, who), 1);
    assert_int_equal(who[0], 1);

    /* Imported rows are not changes. */
    assert_int_equal(flr_tshard_import(t, &key, 1, row7), 0);
    assert_int_equal(drain_dirty(s, rows, since, 16), 2);
    assert_int_equal(rows[0], 3);
    assert_int_equal(since[0], 1); /* its oldest change, not its last */
    assert_int_equal(rows[1], 5);
    assert_int_equal(since[1], 2);

    /* Popped rows are listed again by their next change. */
    touch_rows(t, 1, b, 1, 3);
    d = flr_store_dirty_head(s);
    assert_int_equal(d->key, flr_key(1, 3));
    assert_int_equal(d->since, 3);
    flr_store_free(s);
}

static void only_slot_free_rows_are_held_by_pulls_but_replicas_hold_any(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s;
    struct flr_tshard *t;
    const uint64_t r[1] = {4};
    uint32_t who[1];
    const struct flr_dirty *d;
    unsigned char out[2 * 3 * 4 + 12];
    uint64_t stamp;

    job_one(&spec, 1, FLR_TABLE_DENSE, 10, 2, FLR_OPT_ADAM);
    s = store_new(&spec, 0);
    t = flr_store_table(s, 1);
    assert_int_equal(flr_store_track_copies(s, 1, 1), 0);
    touch_rows(t, 1, r, 1, 5);
    hold_rows(t, 1, r, 1, 0);
    d = flr_store_dirty_head(s);
    assert_non_null(d);
    assert_int_equal(flr_store_row_holders(s, d, who), 0);

    /* A replica read at stamp 4 predates the change; one read at 5 holds it. */
    assert_int_equal(flr_store_row_add_holder(s, d, 0, 4), 0);
    assert_int_equal(flr_store_row_add_holder(s, d, 0, 5), 1);
    assert_int_equal(flr_store_row_holders(s, d, who), 1);
    assert_false(flr_store_row_short(s, d));

    /* The export carries value, slots and steps, with the replica's stamp. */
    flr_store_row_export(s, d, 9, out);
    memcpy(&stamp, out + 2 * 3 * 4, 8);
    assert_int_equal(stamp, 9);
    assert_memory_equal(out, flr_tshard_peek(t, 4, NULL, NULL), 2 * 3 * 4);
    assert_null(flr_store_dirty_head(s));
    flr_store_free(s);
}

static void dropped_worker_relists_the_rows_it_held_at_the_given_stamp(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s;
    struct flr_tshard *t;
    const uint64_t r[3] = {1, 2, 3};
    uint64_t rows[16], since[16];

    job_one(&spec, 1, FLR_TABLE_DENSE, 10, 2, FLR_OPT_SGD);
    s = store_new(&spec, 0);
    t = flr_store_table(s, 1);
    assert_int_equal(flr_store_track_copies(s, 2, 2), 0);
    touch_rows(t, 1, r, 3, 1);
    hold_rows(t, 1, r, 2, 0);
    hold_rows(t, 1, r, 3, 1);
    assert_int_equal(drain_dirty(s, rows, since, 16), 1); /* row 3: one holder */
    assert_int_equal(rows[0], 3);
    assert_null(flr_store_dirty_head(s));

    assert_int_equal(flr_store_drop_holder(s, 0, 7), 0);
    assert_int_equal(drain_dirty(s, rows, since, 16), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(since[i], 7);

    /* With one live worker left a single holder is enough... */
    hold_rows(t, 1, r, 3, 1);
    assert_int_equal(flr_store_set_need(s, 1, 8), 0);
    assert_null(flr_store_dirty_head(s));
    /* ...until a second one is back. */
    assert_int_equal(flr_store_set_need(s, 2, 9), 0);
    assert_int_equal(drain_dirty(s, rows, since, 16), 3);
    assert_int_equal(since[0], 9);
    flr_store_free(s);
}

static void accumulated_and_sparse_changes_are_listed_and_rebuilds_list_all(void **state)
{
    struct flr_job_spec spec;
    struct flr_store *s;
    struct flr_tshard *t;
    uint64_t row = 0, keys[2], rows[16], since[16];
    const float g[4] = {1, 1, 1, 1};

    job_one(&spec, 1, FLR_TABLE_SPARSE, 0, 2, FLR_OPT_SGD);
    s = store_new(&spec, 0);
    t = flr_store_table(s, 1);
    assert_int_equal(flr_store_track_copies(s, 1, 1), 0);
    keys[0] = sparse_key_in(1, 1, 0, &row);
    keys[1] = sparse_key_in(1, 1, 0, &row);
    assert_int_equal(flr_tshard_accumulate(t, keys, 2, g), 0);
    assert_null(flr_store_dirty_head(s));
    assert_int_equal(flr_tshard_apply_accumulated(t, 4), 0);
    assert_int_equal(drain_dirty(s, rows, since, 16), 2);
    assert_int_equal(since[0], 4);
    assert_int_equal(since[1], 4);

    flr_tshard_hold(t, keys, 2, 0);
    assert_int_equal(flr_store_mark_all_dirty(s, 6), 0);
    assert_int_equal(flr_store_short_rows(s), 2);
    assert_int_equal(drain_dirty(s, rows, since, 16), 2);
    assert_int_equal(since[1], 6);
    flr_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dense_slices_follow_placement),
        cmocka_unit_test(dense_rows_start_from_the_initialiser),
        cmocka_unit_test(large_dense_slices_are_prefaulted_and_initialised),
        cmocka_unit_test(initialisers_are_deterministic_per_row),
        cmocka_unit_test(sparse_first_touch_creates_the_same_row_everywhere),
        cmocka_unit_test(check_keys_accepts_own_keys),
        cmocka_unit_test(check_keys_rejects_foreign_keys),
        cmocka_unit_test(check_push_rejects_bad_values),
        cmocka_unit_test(check_keys_holds_at_the_slice_edges),
        cmocka_unit_test(check_keys_follows_sparse_placement_for_any_shard_count),
        cmocka_unit_test(check_push_names_a_bad_value_anywhere_in_a_large_push),
        cmocka_unit_test(push_with_one_nan_changes_nothing),
        cmocka_unit_test(read_after_apply_returns_updated_values),
        cmocka_unit_test(dense_runs_apply_like_each_row_alone),
        cmocka_unit_test(sparse_apply_creates_and_updates_rows),
        cmocka_unit_test(stamps_record_the_last_update),
        cmocka_unit_test(adam_rows_count_their_own_steps),
        cmocka_unit_test(dense_accumulate_equals_one_summed_apply),
        cmocka_unit_test(sparse_accumulate_equals_one_summed_apply),
        cmocka_unit_test(accumulated_by_reference_sums_the_same),
        cmocka_unit_test(distinct_rows_by_reference_apply_as_summed),
        cmocka_unit_test(dropped_accumulation_changes_nothing),
        cmocka_unit_test(sparse_growth_keeps_every_row),
        cmocka_unit_test(bytes_and_rows_follow_the_slices),
        cmocka_unit_test(alloc_rejects_bad_arguments),
        cmocka_unit_test(export_import_moves_rows_slots_and_stamps),
        cmocka_unit_test(untracked_store_lists_nothing),
        cmocka_unit_test(changed_rows_lose_their_holders_and_are_listed_once_in_order),
        cmocka_unit_test(only_slot_free_rows_are_held_by_pulls_but_replicas_hold_any),
        cmocka_unit_test(dropped_worker_relists_the_rows_it_held_at_the_given_stamp),
        cmocka_unit_test(accumulated_and_sparse_changes_are_listed_and_rebuilds_list_all),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
