/*
 * test_rebuild.c - the rebuild core on in-memory contributions: every update applied
 * exactly once, a BSP rebuild equal bit for bit to the clock closes it replaces, ASP
 * containment by the copies' frontier vectors, optimizer slots taken from copies, the row
 * counts, the pushes of open clocks held with their messages, and bad contributions
 * rejected without a trace; and the whole exchange with fake workers over real sockets and a
 * real ZooKeeper.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/proto.h"
#include "common/shardmap.h"
#include "common/spec.h"
#include "common/transport.h"
#include "common/util.h"
#include "common/zk.h"
#include "server/rebuild.h"
#include "server/shard.h"
#include "server/store.h"
#include "tests/testzk.h"

#define NW     3
#define DENSE  1 /* table id */
#define SPARSE 2 /* table id */
#define DIM    2

/* Worker w's n-th push: its pseq under an incarnation base of its own. */
static uint64_t pseq(uint32_t w, uint64_t n)
{
    return ((uint64_t)(w + 1) << 40) + n;
}

static void table_set(struct flr_table_spec *t, uint32_t id, enum flr_table_kind kind,
                      uint64_t rows, uint32_t dim, enum flr_optim_kind optim,
                      enum flr_init_kind init)
{
    memset(t, 0, sizeof(*t));
    t->id = id;
    snprintf(t->name, sizeof(t->name), "t%u", id);
    t->kind = kind;
    t->rows = kind == FLR_TABLE_DENSE ? rows : 0;
    t->dim = dim;
    t->init = init;
    t->init_scale = 0.5f;
    t->seed = 77 + id;
    t->optim = optim;
    t->lr = 1.0f;
    t->momentum = 0.9f;
    t->beta1 = 0.9f;
    t->beta2 = 0.999f;
    t->eps = 1e-8f;
}

/* A job of NW workers: a dense table of 8 rows and a sparse one, SGD with lr 1 from zeros,
 * so that integer gradients give exact sums. */
static void job_set(struct flr_job_spec *s, enum flr_consistency cons, uint32_t nshards)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->job, sizeof(s->job), "test");
    snprintf(s->model, sizeof(s->model), "none");
    s->consistency = cons;
    s->num_workers = NW;
    s->num_servers = 1;
    s->num_shards = nshards;
    snprintf(s->recovery, sizeof(s->recovery), "flr");
    s->k = 2;
    s->ntables = 2;
    table_set(&s->tables[0], DENSE, FLR_TABLE_DENSE, 8, DIM, FLR_OPT_SGD, FLR_INIT_ZEROS);
    table_set(&s->tables[1], SPARSE, FLR_TABLE_SPARSE, 0, DIM, FLR_OPT_SGD, FLR_INIT_ZEROS);
}

struct fix {
    struct flr_job_spec spec;
    struct flr_store *store;
    struct flr_rebuild *rb;
    uint8_t removed[NW];
    struct flr_rebuild_result r;
};

static void fix_open(struct fix *f, uint32_t shard)
{
    assert_int_equal(flr_store_alloc(&f->store, &f->spec, shard), 0);
    assert_int_equal(flr_rebuild_alloc(&f->rb, &f->spec, f->store, shard, f->removed), 0);
}

static void fix_close(struct fix *f)
{
    flr_rebuild_result_free(&f->r);
    flr_rebuild_free(f->rb);
    flr_store_free(f->store);
}

/* A manifest with nrec records given as {S, C, V[0], ..., V[NW-1]}. */
static void manifest(struct fix *f, uint32_t w, int64_t clock, uint64_t sent, uint64_t trunc,
                     const uint64_t (*recs)[2 + NW], size_t nrec)
{
    struct flr_rebuild_manifest m = {
        .clock = clock, .incarnation = pseq(w, 0), .pseq_sent = sent, .pseq_truncated = trunc};
    char why[256];

    assert_int_equal(
        flr_rebuild_add_manifest(f->rb, w, &m, recs, nrec * sizeof(recs[0]), why, sizeof(why)), 0);
}

/* One copy: width floats, then S and steps, as flr_tshard_export writes a row. */
static int copy_try(struct fix *f, uint32_t w, uint32_t table, uint64_t key, const float *vals,
                    uint64_t s, uint32_t steps)
{
    struct flr_tshard *t = flr_store_table(f->store, table);
    /* An unknown table gets rows of this job's shape: the call must refuse them. */
    size_t rbytes = t ? flr_tshard_row_bytes(t) : DIM * 4 + 12, fb = rbytes - 12;
    unsigned char row[1024];
    char why[256];

    assert_true(rbytes <= sizeof(row));
    memcpy(row, vals, fb);
    memcpy(row + fb, &s, 8);
    memcpy(row + fb + 8, &steps, 4);
    return flr_rebuild_add_copies(f->rb, w, table, &key, 1, row, rbytes, why, sizeof(why));
}

static void copy(struct fix *f, uint32_t w, uint32_t table, uint64_t key, const float *vals,
                 uint64_t s, uint32_t steps)
{
    assert_int_equal(copy_try(f, w, table, key, vals, s, steps), 0);
}

/* A log entry whose keys and gradients live in an nng message, as they arrive. */
static int entry_try(struct fix *f, uint32_t w, uint32_t table, int64_t clock, uint64_t ps,
                     uint64_t acked, const uint64_t *keys, uint32_t n, const float *grads,
                     uint32_t dim)
{
    struct flr_rebuild_entry e = {.table = table, .clock = clock, .pseq = ps, .acked = acked};
    size_t kb = (size_t)n * 8, gb = (size_t)n * dim * sizeof(float);
    nng_msg *msg;
    char why[256];
    int rv;

    assert_int_equal(nng_msg_alloc(&msg, kb + gb), 0);
    memcpy(nng_msg_body(msg), keys, kb);
    memcpy((char *)nng_msg_body(msg) + kb, grads, gb);
    e.keys = nng_msg_body(msg);
    e.nkeys = n;
    e.grads = (char *)nng_msg_body(msg) + kb;
    e.grads_len = gb;
    if ((rv = flr_rebuild_add_entry(f->rb, w, msg, &e, why, sizeof(why))) != 0)
        nng_msg_free(msg);
    return rv;
}

static void entry(struct fix *f, uint32_t w, uint32_t table, int64_t clock, uint64_t ps,
                  uint64_t acked, const uint64_t *keys, uint32_t n, const float *grads)
{
    assert_int_equal(entry_try(f, w, table, clock, ps, acked, keys, n, grads, DIM), 0);
}

/* The value of a row (NULL-safe: a missing sparse row fails the test). */
static const float *row_of(struct fix *f, uint32_t table, uint64_t row, uint64_t *stamp)
{
    const float *v = flr_tshard_peek(flr_store_table(f->store, table), row, stamp, NULL);

    assert_non_null(v);
    return v;
}

static void assert_row(struct fix *f, uint32_t table, uint64_t row, float a, float b)
{
    const float *v = row_of(f, table, row, NULL);

    assert_true(v[0] == a);
    assert_true(v[1] == b);
}

/* ---- ASP: exactly once ------------------------------------------------------------------ */

/*
 * The lost shard applied, at stamps 1 to 5: w0's p1 (rows 0, 1, 4), w1's q1 (row 1), w0's
 * p2 (row 0) and p3 (sparse row 7), w1's q2 (row 4; its acknowledgement was lost).
 * Copies: row 0 read at S = 1, row 1 at S = 2 (and an older copy of it at S = 1).  Every
 * update must end up applied once.
 */
static void asp_every_update_is_applied_exactly_once(void **state)
{
    struct fix f = {0};
    const uint64_t p1 = pseq(0, 1), p2 = pseq(0, 2), p3 = pseq(0, 3), q1 = pseq(1, 1),
                   q2 = pseq(1, 2);
    const uint64_t recs[][2 + NW] = {{1, 0, p1, 0, 0}, {2, 0, p1, q1, 0}};
    const float c0[] = {-1, -1}, c1_new[] = {-11, -11}, c1_old[] = {-1, -1};
    const uint64_t k_p1[] = {flr_key(DENSE, 0), flr_key(DENSE, 1), flr_key(DENSE, 4)};
    const float g_p1[] = {1, 1, 1, 1, 1, 1};
    const uint64_t k_q1[] = {flr_key(DENSE, 1)}, k_q2[] = {flr_key(DENSE, 4)};
    const float g_q1[] = {10, 10}, g_q2[] = {100, 100};
    const uint64_t k_p2[] = {flr_key(DENSE, 0)}, k_p3[] = {flr_key(SPARSE, 7)};
    const float g_p2[] = {2, 2}, g_p3[] = {3, 3};
    uint64_t st;

    (void)state;
    job_set(&f.spec, FLR_ASP, 1);
    fix_open(&f, 0);
    manifest(&f, 0, 5, p3, 0, recs, 0);
    manifest(&f, 1, 6, q2, 0, recs, 1);
    manifest(&f, 2, 7, 0, 0, recs, 2);
    copy(&f, 2, DENSE, flr_key(DENSE, 1), c1_new, 2, 0);
    copy(&f, 1, DENSE, flr_key(DENSE, 1), c1_old, 1, 0);
    copy(&f, 2, DENSE, flr_key(DENSE, 0), c0, 1, 0);
    entry(&f, 1, DENSE, 0, q2, 0, k_q2, 1, g_q2);
    entry(&f, 0, DENSE, 0, p2, 3, k_p2, 1, g_p2);
    entry(&f, 0, SPARSE, 0, p3, 4, k_p3, 1, g_p3);
    entry(&f, 1, DENSE, 0, q1, 2, k_q1, 1, g_q1);
    entry(&f, 0, DENSE, 0, p1, 1, k_p1, 3, g_p1);

    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);
    assert_row(&f, DENSE, 0, -3, -3);
    assert_row(&f, DENSE, 1, -11, -11);
    assert_row(&f, DENSE, 4, -101, -101);
    assert_row(&f, SPARSE, 7, -3, -3);
    for (uint64_t row = 0; row < 8; row++) {
        (void)row_of(&f, DENSE, row, &st);
        assert_true(st < f.r.stamp);
    }
    assert_true(f.r.stamp > 5);
    assert_int_equal(f.r.rows_rebuilt, 2);
    assert_int_equal(f.r.rows_from_log, 2);
    assert_int_equal(f.r.rows_lost, 5);
    assert_int_equal(f.r.entries_replayed, 4);
    assert_int_equal(f.r.entries_skipped, 1);
    assert_int_equal(f.r.workers, 3);
    assert_int_equal(f.r.nworkers, NW);
    assert_int_equal(f.r.clock[0], 5);
    assert_int_equal(f.r.clock[1], 6);
    assert_int_equal(f.r.clock[2], 7);
    assert_int_equal(f.r.frontier[0], p3);
    assert_int_equal(f.r.frontier[1], q2);
    assert_int_equal(f.r.frontier[2], 0);
    assert_int_equal(f.r.nheld, 0);
    assert_int_equal(flr_rebuild_copies_ignored(f.rb), 0);
    fix_close(&f);
}

/* Entries of one worker, pseq 1 to 5, each with a gradient of its own power of two: the
 * value shows exactly which ones a row received. */
static void asp_entry_is_replayed_only_to_rows_whose_copy_lacks_it(void **state)
{
    struct fix f = {0};
    const uint64_t recs[][2 + NW] = {{5, 0, pseq(0, 2), 0, 0}, {7, 0, pseq(0, 4), 0, 0}};
    const uint64_t keys[] = {flr_key(DENSE, 0), flr_key(DENSE, 1), flr_key(DENSE, 2)};
    const float zero[] = {0, 0};

    (void)state;
    job_set(&f.spec, FLR_SSP, 1);
    fix_open(&f, 0);
    manifest(&f, 0, 3, pseq(0, 5), 0, recs, 2);
    copy(&f, 0, DENSE, keys[0], zero, 5, 0);
    copy(&f, 0, DENSE, keys[1], zero, 7, 0);
    /* No manifest names S = 9: this copy cannot say what it contains. */
    assert_int_equal(copy_try(&f, 0, DENSE, keys[2], zero, 9, 0), 0);
    for (uint64_t n = 1; n <= 5; n++) {
        float g = (float)(1u << n), grads[] = {g, g, g, g, g, g};
        entry(&f, 0, DENSE, 0, pseq(0, n), 0, keys, 3, grads);
    }
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);
    assert_row(&f, DENSE, 0, -(8 + 16 + 32), -(8 + 16 + 32));
    assert_row(&f, DENSE, 1, -32, -32);
    assert_row(&f, DENSE, 2, -(2 + 4 + 8 + 16 + 32), -(2 + 4 + 8 + 16 + 32));
    assert_int_equal(flr_rebuild_copies_ignored(f.rb), 1);
    assert_int_equal(f.r.entries_replayed, 5);
    assert_int_equal(f.r.entries_skipped, 0);
    assert_int_equal(f.r.rows_rebuilt, 2);
    assert_int_equal(f.r.rows_from_log, 1);
    /* The workers that did not answer get what the records say of them. */
    assert_int_equal(f.r.frontier[0], pseq(0, 5));
    assert_int_equal(f.r.clock[1], -1);
    assert_int_equal(f.r.clock[2], -1);
    fix_close(&f);
}

/* Acknowledged entries go in the order of their stamps, whatever the worker ids say, then
 * the others in (worker, pseq) order: with Adam the order shows in the values. */
static void asp_order_is_acked_stamp_then_worker_and_pseq(void **state)
{
    struct fix f = {0}, ref = {0};
    const uint64_t key = flr_key(DENSE, 3);
    const float ga[] = {1, -2}, gb[] = {0.5f, 3}, gc[] = {-4, 0.25f}, gd[] = {2, 2};
    struct flr_tshard *t;

    (void)state;
    job_set(&f.spec, FLR_ASP, 1);
    f.spec.tables[0].optim = FLR_OPT_ADAM;
    f.spec.tables[0].lr = 0.1f;
    fix_open(&f, 0);
    entry(&f, 0, DENSE, 0, pseq(0, 1), 9, &key, 1, ga);
    entry(&f, 2, DENSE, 0, pseq(2, 1), 4, &key, 1, gb);
    entry(&f, 0, DENSE, 0, pseq(0, 2), 0, &key, 1, gd);
    entry(&f, 1, DENSE, 0, pseq(1, 1), 0, &key, 1, gc);
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);

    ref.spec = f.spec;
    assert_int_equal(flr_store_alloc(&ref.store, &ref.spec, 0), 0);
    t = flr_store_table(ref.store, DENSE);
    assert_int_equal(flr_tshard_apply(t, &key, 1, gb, 1), 0);
    assert_int_equal(flr_tshard_apply(t, &key, 1, ga, 2), 0);
    assert_int_equal(flr_tshard_apply(t, &key, 1, gd, 3), 0);
    assert_int_equal(flr_tshard_apply(t, &key, 1, gc, 4), 0);
    assert_memory_equal(row_of(&f, DENSE, 3, NULL), row_of(&ref, DENSE, 3, NULL),
                        3 * DIM * sizeof(float));
    assert_true(f.r.stamp > 9);
    flr_store_free(ref.store);
    fix_close(&f);
}

/* ---- BSP -------------------------------------------------------------------------------- */

/* A push of the BSP history. */
struct push {
    uint32_t w;
    int64_t clock;
    uint64_t pseq;
    uint32_t table;
    uint32_t n;
    uint64_t keys[6];
    float grads[6 * 3];
};

static uint32_t table_dim(const struct flr_job_spec *s, uint32_t id)
{
    return flr_spec_table(s, id)->dim;
}

/* Closes clock c on a store exactly as the shard does: summed per row in worker order, then
 * request order, and one step per touched table. */
static void close_clock(struct flr_store *st, const struct flr_job_spec *spec, const struct push *p,
                        size_t np, int64_t c, uint64_t stamp)
{
    int touched[FLR_MAX_TABLES] = {0};

    for (uint32_t w = 0; w < NW; w++)
        for (size_t i = 0; i < np; i++)
            if (p[i].w == w && p[i].clock == c) {
                assert_int_equal(flr_tshard_accumulate(flr_store_table(st, p[i].table), p[i].keys,
                                                       p[i].n, p[i].grads),
                                 0);
                touched[p[i].table == DENSE ? 0 : 1] = 1;
            }
    for (uint32_t k = 0; k < spec->ntables; k++)
        if (touched[k])
            assert_int_equal(
                flr_tshard_apply_accumulated(flr_store_table(st, spec->tables[k].id), stamp), 0);
}

/* Takes a copy of a row of ref as a worker would hold it, read at stamp s. */
static void copy_from(struct fix *f, struct flr_store *ref, uint32_t w, uint32_t table,
                      uint64_t row, uint64_t s)
{
    uint32_t steps;
    const float *v = flr_tshard_peek(flr_store_table(ref, table), row, NULL, &steps);

    assert_non_null(v);
    copy(f, w, table, flr_key(table, row), v, s, steps);
}

/*
 * Clocks 0, 1 and 2 of pushes from every worker, with random gradients of mixed magnitudes
 * (so that summing them in another order changes bits).  The reference closes clocks 0 and
 * 1; workers hold copies read after clock 0 (C = 1) and after clock 1 (C = 2).  The
 * rebuilt shard must equal the reference bit for bit, values, slots and step counts.
 */
static void bsp_rebuild_equals_the_clock_closes_bit_for_bit(void **state)
{
    struct fix f = {0};
    struct flr_store *ref;
    struct push p[27];
    size_t np = 0;
    struct flr_rng rng;
    const uint64_t recs[][2 + NW] = {{1, 1, 0, 0, 0}, {2, 2, 0, 0, 0}};
    uint64_t counters[NW] = {0};

    (void)state;
    job_set(&f.spec, FLR_BSP, 1);
    table_set(&f.spec.tables[0], DENSE, FLR_TABLE_DENSE, 16, 3, FLR_OPT_ADAM, FLR_INIT_UNIFORM);
    f.spec.tables[0].lr = 0.01f;
    table_set(&f.spec.tables[1], SPARSE, FLR_TABLE_SPARSE, 0, 2, FLR_OPT_MOMENTUM,
              FLR_INIT_UNIFORM);
    f.spec.tables[1].lr = 0.05f;
    fix_open(&f, 0);
    assert_int_equal(flr_store_alloc(&ref, &f.spec, 0), 0);

    flr_rng_seed(&rng, 12345);
    for (int64_t c = 0; c < 3; c++)
        for (uint32_t w = 0; w < NW; w++)
            for (int j = 0; j < 3; j++) {
                struct push *x = &p[np++];
                uint64_t row = flr_rng_next(&rng) % 4;
                x->w = w;
                x->clock = c;
                x->pseq = pseq(w, ++counters[w]);
                x->table = j == 2 ? SPARSE : DENSE;
                x->n = 0;
                /* Sorted, distinct rows: a few steps apart from a random start. */
                for (uint32_t k = 0; k < 4; k++, row += 1 + flr_rng_next(&rng) % 3)
                    x->keys[x->n++] = flr_key(x->table, x->table == SPARSE ? row * 7 + 1 : row);
                for (uint32_t k = 0; k < x->n * table_dim(&f.spec, x->table); k++)
                    x->grads[k] = (float)((flr_rng_uniform(&rng) - 0.5) *
                                          pow(10.0, (double)(flr_rng_next(&rng) % 7) - 3.0));
            }

    manifest(&f, 0, 3, 0, 0, recs, 1);
    manifest(&f, 1, 2, 0, 0, recs, 2);
    manifest(&f, 2, 3, 0, 0, recs, 0);
    close_clock(ref, &f.spec, p, np, 0, 1);
    /* Worker 0 holds dense rows 0-3 read now: clock 0 is in them. */
    for (uint64_t row = 0; row < 4; row++)
        copy_from(&f, ref, 0, DENSE, row, 1);
    close_clock(ref, &f.spec, p, np, 1, 2);
    /* Worker 1 holds rows 4-7 and the sparse row 8, read after clock 1. */
    for (uint64_t row = 4; row < 8; row++)
        copy_from(&f, ref, 1, DENSE, row, 2);
    if (flr_tshard_peek(flr_store_table(ref, SPARSE), 8, NULL, NULL))
        copy_from(&f, ref, 1, SPARSE, 8, 2);
    /* The logs arrive in the reverse of every order that matters. */
    for (size_t i = np; i-- > 0;) {
        const struct push *x = &p[i];
        assert_int_equal(entry_try(&f, x->w, x->table, x->clock, x->pseq, 0, x->keys, x->n,
                                   x->grads, table_dim(&f.spec, x->table)),
                         0);
    }
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);

    for (uint64_t row = 0; row < 16; row++) {
        uint32_t s1, s2;
        const float *a = flr_tshard_peek(flr_store_table(f.store, DENSE), row, NULL, &s1);
        const float *b = flr_tshard_peek(flr_store_table(ref, DENSE), row, NULL, &s2);
        assert_memory_equal(a, b, 3 * 3 * sizeof(float));
        assert_int_equal(s1, s2);
    }
    for (uint64_t row = 0; row < 128; row++) {
        const float *b = flr_tshard_peek(flr_store_table(ref, SPARSE), row, NULL, NULL);
        if (b)
            assert_memory_equal(row_of(&f, SPARSE, row, NULL), b, 2 * 2 * sizeof(float));
    }
    /* Clock 2 is open: worker 1 has not finished it.  Its nine pushes are held. */
    assert_int_equal(f.r.nheld, 9);
    for (size_t i = 0; i < f.r.nheld; i++)
        assert_int_equal(f.r.held[i].m.clock, 2);
    assert_int_equal(f.r.entries_replayed + f.r.entries_skipped, 18);
    assert_int_equal(f.r.rows_rebuilt,
                     8 + (flr_tshard_peek(flr_store_table(ref, SPARSE), 8, NULL, NULL) != NULL));
    assert_int_equal(flr_rebuild_copies_ignored(f.rb), 0);
    /* Rows copied after clock 1 needed none of clocks 0 and 1. */
    assert_true(f.r.entries_skipped > 0);
    flr_store_free(ref);
    fix_close(&f);
}

/* Worker clocks 2 and 3 and a removed worker at 0: clocks below 2 are closed, the rest is
 * held as PUSH messages, and the frontier counts only what was applied. */
static void bsp_pushes_of_open_clocks_are_held(void **state)
{
    struct fix f = {0};
    const uint64_t k0[] = {flr_key(DENSE, 0)}, k1[] = {flr_key(DENSE, 1), flr_key(DENSE, 2)};
    const float g0[] = {1, 1}, g1[] = {5, 6, 7, 8};
    const uint64_t a1 = pseq(0, 1), a2 = pseq(0, 2), b1 = pseq(1, 1), b2 = pseq(1, 2);

    (void)state;
    job_set(&f.spec, FLR_BSP, 1);
    f.removed[2] = 1;
    fix_open(&f, 0);
    manifest(&f, 0, 2, a2, 0, NULL, 0);
    manifest(&f, 1, 3, b2, pseq(1, 0), NULL, 0);
    manifest(&f, 2, 0, pseq(2, 1), 0, NULL, 0);
    entry(&f, 0, DENSE, 1, a1, 0, k0, 1, g0);
    entry(&f, 0, DENSE, 2, a2, 0, k1, 2, g1);
    entry(&f, 1, DENSE, 3, b2, 0, k0, 1, g0);
    entry(&f, 1, DENSE, 2, b1, 0, k1, 2, g1);
    entry(&f, 2, DENSE, 0, pseq(2, 1), 0, k0, 1, g0);
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);

    assert_row(&f, DENSE, 0, -2, -2);
    assert_row(&f, DENSE, 1, 0, 0);
    assert_int_equal(f.r.nheld, 3);
    assert_int_equal(f.r.entries_replayed, 2);
    for (size_t i = 0; i < f.r.nheld; i++) {
        const struct flr_msg *m = &f.r.held[i].m;
        const char *body = nng_msg_body(f.r.held[i].msg);
        assert_int_equal(m->type, FLR_MSG_PUSH);
        assert_true((const char *)m->keys >= body &&
                    (const char *)m->vals + m->vals_len <= body + nng_msg_len(f.r.held[i].msg));
        assert_int_equal(m->vals_len, (uint64_t)m->nkeys * DIM * sizeof(float));
        assert_int_equal(m->table, DENSE);
        if (m->seq == a2 || m->seq == b1) {
            assert_int_equal(m->clock, 2);
            assert_int_equal(m->nkeys, 2);
            assert_int_equal(m->sender, m->seq == a2 ? 0 : 1);
            assert_memory_equal(m->vals, g1, sizeof(g1));
        } else {
            assert_int_equal(m->seq, b2);
            assert_int_equal(m->sender, 1);
            assert_int_equal(m->clock, 3);
        }
        assert_int_equal(m->request_id, m->seq);
    }
    assert_int_equal(f.r.frontier[0], a1);
    assert_int_equal(f.r.frontier[1], pseq(1, 0));
    assert_int_equal(f.r.frontier[2], pseq(2, 1));
    assert_int_equal(f.r.clock[2], 0);
    assert_int_equal(f.r.rows_from_log, 3);
    fix_close(&f);
}

/* A copy read with clock 3 closed proves clocks 0-2 closed, even when the workers that
 * answered report less; a clock's entry is kept from rows whose copy contains it. */
static void bsp_copies_close_the_clocks_they_contain(void **state)
{
    struct fix f = {0};
    const uint64_t recs[][2 + NW] = {{6, 3, 0, 0, 0}};
    const uint64_t k[] = {flr_key(DENSE, 0), flr_key(DENSE, 1)};
    const float g[] = {1, 1, 1, 1}, c0[] = {-7, -7};

    (void)state;
    job_set(&f.spec, FLR_BSP, 1);
    fix_open(&f, 0);
    manifest(&f, 0, 1, 0, 0, recs, 1);
    copy(&f, 0, DENSE, k[0], c0, 6, 0);
    entry(&f, 0, DENSE, 2, pseq(0, 1), 0, k, 2, g);
    entry(&f, 0, DENSE, 3, pseq(0, 2), 0, k, 2, g);
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);
    assert_row(&f, DENSE, 0, -7, -7);
    assert_row(&f, DENSE, 1, -1, -1);
    assert_int_equal(f.r.nheld, 1);
    assert_int_equal(f.r.held[0].m.clock, 3);
    assert_true(f.r.stamp > 6);
    fix_close(&f);
}

/* ---- copies ----------------------------------------------------------------------------- */

/* Adam keeps two slots and a step count per row: a copy restores all of them, and an update
 * the copy lacks continues from them as it would have on the lost shard. */
static void adam_slots_and_steps_are_restored_from_copies(void **state)
{
    struct fix f = {0};
    struct flr_store *ref;
    const uint64_t recs[][2 + NW] = {{3, 0, 0, 0, 0}};
    const float vals[] = {0.5f, -0.25f, 0.01f, 0.02f, 0.003f, 0.004f};
    const uint64_t k1 = flr_key(DENSE, 1);
    const float g[] = {0.75f, -1.5f};
    unsigned char row[sizeof(vals) + 12];
    uint64_t s = 3;
    uint32_t steps = 7, got;
    const float *v;

    (void)state;
    job_set(&f.spec, FLR_ASP, 1);
    f.spec.tables[0].optim = FLR_OPT_ADAM;
    f.spec.tables[0].lr = 0.1f;
    fix_open(&f, 0);
    manifest(&f, 0, 1, pseq(0, 1), 0, recs, 1);
    copy(&f, 0, DENSE, flr_key(DENSE, 0), vals, 3, 7);
    copy(&f, 0, DENSE, k1, vals, 3, 7);
    entry(&f, 0, DENSE, 0, pseq(0, 1), 0, &k1, 1, g);
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);

    v = flr_tshard_peek(flr_store_table(f.store, DENSE), 0, NULL, &got);
    assert_memory_equal(v, vals, sizeof(vals));
    assert_int_equal(got, 7);

    assert_int_equal(flr_store_alloc(&ref, &f.spec, 0), 0);
    memcpy(row, vals, sizeof(vals));
    memcpy(row + sizeof(vals), &s, 8);
    memcpy(row + sizeof(vals) + 8, &steps, 4);
    assert_int_equal(flr_tshard_import(flr_store_table(ref, DENSE), &k1, 1, row), 0);
    assert_int_equal(flr_tshard_apply(flr_store_table(ref, DENSE), &k1, 1, g, 4), 0);
    v = flr_tshard_peek(flr_store_table(f.store, DENSE), 1, NULL, &got);
    assert_memory_equal(v, flr_tshard_peek(flr_store_table(ref, DENSE), 1, NULL, NULL),
                        sizeof(vals));
    assert_int_equal(got, 8);
    flr_store_free(ref);
    fix_close(&f);
}

/* Shard 1 of 2 holds dense rows 4-7: rows with neither a copy nor a log entry are lost;
 * sparse rows nobody holds are not known and not counted. */
static void rows_lost_counts_dense_rows_with_neither_copy_nor_log(void **state)
{
    struct fix f = {0};
    const uint64_t recs[][2 + NW] = {{1, 0, 0, 0, 0}};
    const float c[] = {4, 4}, g[] = {1, 1};
    const uint64_t k6 = flr_key(DENSE, 6);
    uint64_t sk = 0;

    (void)state;
    job_set(&f.spec, FLR_ASP, 2);
    fix_open(&f, 1);
    for (uint64_t row = 0;; row++)
        if (flr_shard_of_key(&f.spec, flr_key(SPARSE, row)) == 1) {
            sk = flr_key(SPARSE, row);
            break;
        }
    manifest(&f, 0, 1, pseq(0, 1), 0, recs, 1);
    copy(&f, 0, DENSE, flr_key(DENSE, 4), c, 1, 0);
    copy(&f, 0, SPARSE, sk, c, 1, 0);
    entry(&f, 0, DENSE, 0, pseq(0, 1), 0, &k6, 1, g);
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);
    assert_int_equal(f.r.rows_rebuilt, 2);
    assert_int_equal(f.r.rows_from_log, 1);
    assert_int_equal(f.r.rows_lost, 2);
    assert_row(&f, DENSE, 4, 4, 4);
    assert_row(&f, DENSE, 6, -1, -1);
    assert_row(&f, DENSE, 5, 0, 0);
    assert_row(&f, SPARSE, flr_key_row(sk), 4, 4);
    fix_close(&f);
}

/*
 * A store opened for a rebuild (FLR_STORE_UNINIT) holds whatever its memory held: here,
 * poison.  The rebuild must leave no dense row so: a copied row takes its copy, every other
 * row its initial value (with a logged update replayed on top), as an initialised store
 * would have it.
 */
static void uninitialised_store_ends_with_every_dense_row_filled(void **state)
{
    struct fix f = {0};
    const uint64_t recs[][2 + NW] = {{1, 0, 0, 0, 0}};
    const float c[] = {4, 4}, g[] = {1, 1};
    const uint64_t k6 = flr_key(DENSE, 6);
    uint64_t lo, hi;

    (void)state;
    job_set(&f.spec, FLR_ASP, 2);
    f.spec.tables[0].init = FLR_INIT_NORMAL;
    assert_int_equal(flr_store_alloc_flags(&f.store, &f.spec, 1, FLR_STORE_UNINIT), 0);
    assert_int_equal(flr_rebuild_alloc(&f.rb, &f.spec, f.store, 1, f.removed), 0);
    flr_shard_dense_range(&f.spec, &f.spec.tables[0], 1, &lo, &hi);
    for (uint64_t row = lo; row < hi; row++) {
        struct flr_tshard *t = flr_store_table(f.store, DENSE);
        unsigned char junk[DIM * 4 + 12];
        uint64_t key = flr_key(DENSE, row);
        memset(junk, 0x7f, sizeof(junk));
        assert_int_equal(flr_tshard_import(t, &key, 1, junk), 0);
    }
    manifest(&f, 0, 1, pseq(0, 1), 0, recs, 1);
    copy(&f, 0, DENSE, flr_key(DENSE, 4), c, 1, 0);
    entry(&f, 0, DENSE, 0, pseq(0, 1), 0, &k6, 1, g);
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);
    for (uint64_t row = lo; row < hi; row++) {
        float init[DIM];
        uint64_t stamp;
        const float *v = row_of(&f, DENSE, row, &stamp);
        flr_table_init_row(&f.spec.tables[0], row, init);
        if (row == 4) {
            assert_true(v[0] == 4 && v[1] == 4);
        } else if (row == 6) {
            assert_true(v[0] == init[0] - 1 && v[1] == init[1] - 1);
        } else {
            assert_memory_equal(v, init, sizeof(init));
            assert_int_equal(stamp, 0);
        }
    }
    fix_close(&f);
}

/* ---- bad contributions and retries ------------------------------------------------------ */

static void bad_contributions_are_rejected_and_change_nothing(void **state)
{
    struct fix f = {0};
    const uint64_t recs[][2 + NW] = {{1, 0, 0, 0, 0}};
    const float c[] = {9, 9}, nan_g[] = {NAN, 1}, g[] = {1, 1, 1, 1};
    const uint64_t unsorted[] = {flr_key(DENSE, 2), flr_key(DENSE, 1)};
    const uint64_t other_shard = flr_key(DENSE, 0), k5 = flr_key(DENSE, 5);
    struct flr_rebuild_manifest m = {0};
    unsigned char rows[2 * (DIM * 4 + 12)] = {0};
    char why[256];

    (void)state;
    job_set(&f.spec, FLR_ASP, 2);
    fix_open(&f, 1);
    manifest(&f, 0, 1, 0, 0, recs, 1);
    assert_int_equal(
        flr_rebuild_add_manifest(f.rb, 0, &m, recs, sizeof(recs[0]) - 8, why, sizeof(why)),
        FLR_EBAD_REQUEST);
    assert_int_equal(flr_rebuild_add_manifest(f.rb, NW, &m, recs, 0, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(copy_try(&f, 0, DENSE, other_shard, c, 1, 0), FLR_EKEY_RANGE);
    assert_int_equal(copy_try(&f, 0, 9, flr_key(9, 4), c, 1, 0), FLR_EUNKNOWN_TABLE);
    assert_int_equal(
        flr_rebuild_add_copies(f.rb, 0, DENSE, &k5, 1, rows, sizeof(rows), why, sizeof(why)),
        FLR_EVALUE_LEN);
    assert_int_equal(
        flr_rebuild_add_copies(f.rb, 0, DENSE, unsorted, 2, rows, sizeof(rows), why, sizeof(why)),
        FLR_EUNSORTED);
    assert_int_equal(entry_try(&f, 0, DENSE, 0, 1, 0, &k5, 1, nan_g, DIM), FLR_ENAN_GRAD);
    assert_int_equal(entry_try(&f, 0, DENSE, 0, 1, 0, &other_shard, 1, g, DIM), FLR_EKEY_RANGE);
    assert_int_equal(entry_try(&f, 0, DENSE, 0, 1, 0, &k5, 1, g, 1), FLR_EVALUE_LEN);
    assert_int_equal(entry_try(&f, 0, 9, 0, 1, 0, &k5, 1, g, DIM), FLR_EUNKNOWN_TABLE);
    assert_int_equal(entry_try(&f, NW, DENSE, 0, 1, 0, &k5, 1, g, DIM), FLR_EINVAL);
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);
    assert_row(&f, DENSE, 5, 0, 0);
    assert_int_equal(f.r.rows_rebuilt, 0);
    assert_int_equal(f.r.entries_replayed, 0);
    assert_int_equal(f.r.rows_lost, 4);
    fix_close(&f);
}

/* A worker that failed midway is dropped: its entries go, its copies stay; an entry given
 * twice (a retried stream) is applied once. */
static void dropped_worker_keeps_its_copies_and_duplicates_apply_once(void **state)
{
    struct fix f = {0};
    const uint64_t recs[][2 + NW] = {{2, 0, 0, 0, 0}};
    const float c[] = {3, 3}, g[] = {1, 1};
    const uint64_t k0 = flr_key(DENSE, 0), k1 = flr_key(DENSE, 1);

    (void)state;
    job_set(&f.spec, FLR_ASP, 1);
    fix_open(&f, 0);
    manifest(&f, 1, 4, pseq(1, 1), 0, recs, 1);
    copy(&f, 1, DENSE, k0, c, 2, 0);
    entry(&f, 1, DENSE, 0, pseq(1, 1), 0, &k0, 1, g);
    flr_rebuild_drop_worker(f.rb, 1);
    manifest(&f, 0, 4, pseq(0, 1), 0, NULL, 0);
    entry(&f, 0, DENSE, 0, pseq(0, 1), 0, &k1, 1, g);
    entry(&f, 0, DENSE, 0, pseq(0, 1), 0, &k1, 1, g);
    assert_int_equal(flr_rebuild_finish(f.rb, &f.r), 0);
    assert_row(&f, DENSE, 0, 3, 3);
    assert_row(&f, DENSE, 1, -1, -1);
    assert_int_equal(f.r.clock[1], -1);
    assert_int_equal(f.r.workers, 1);
    assert_int_equal(f.r.entries_replayed, 1);
    fix_close(&f);
}

/* ---- over the network ------------------------------------------------------------------- */

/*
 * Fake workers: each answers MANIFEST_REQ and REBUILD_REQ from the data below, on a REP
 * socket of its own, answering on nng's thread (it only copies).  Worker 0 sends a bad
 * page of copies the first time; worker 2's node names an endpoint where nobody listens,
 * and the lease callback deletes that node after a few calls.
 */
#define NET_EPOCH 5
#define NET_SELF  100

struct keeper {
    uint32_t id;
    struct flr_rep *rep;
    const char *manifest;
    const uint64_t (*recs)[2 + NW];
    size_t nrec;
    const uint64_t *copy_keys; /* dense copies, one page */
    const unsigned char *copy_rows;
    uint32_t ncopies;
    const struct flr_rebuild_entry *log;
    size_t nlog;
    int bad_pages; /* copy pages still to be answered wrongly */
    int manifests; /* MANIFEST_REQs answered */
};

static struct flr_zk *net_zk;
static struct flr_testzk net_tzk;
static int net_lease_calls;

static void keeper_on_request(void *arg, struct flr_req *req, nng_msg *msg)
{
    struct keeper *k = arg;
    struct flr_proto_limits lim;
    msgpack_zone zone;
    struct flr_msg m, r = {0};
    uint64_t swapped[2];
    nng_msg *out = NULL;

    flr_proto_limits_default(&lim);
    msgpack_zone_init(&zone, 1024);
    if (flr_msg_decode(&m, nng_msg_body(msg), nng_msg_len(msg), &lim, &zone, NULL, 0) != 0)
        goto drop;
    r.type = flr_reply_type(m.type);
    r.job = "test";
    r.job_len = 4;
    r.sender = k->id;
    r.shard = m.shard;
    r.shard_epoch = m.shard_epoch;
    r.request_id = m.request_id;
    r.reason = "";
    if (m.type == FLR_MSG_MANIFEST_REQ) {
        k->manifests++;
        r.text = k->manifest;
        r.text_len = (uint32_t)strlen(k->manifest);
        r.extra = k->recs;
        r.extra_len = k->nrec * sizeof(k->recs[0]);
    } else if (m.table == FLR_REBUILD_LOG) {
        size_t i = 0;

        /* The first entry with aux < pseq < seq (seq 0: no end); aux names it when the
         * range holds more. */
        while (i < k->nlog && k->log[i].pseq <= m.aux)
            i++;
        r.table = DENSE;
        r.aux = UINT64_MAX;
        if (i < k->nlog && (m.seq == 0 || k->log[i].pseq < m.seq)) {
            const struct flr_rebuild_entry *e = &k->log[i];
            r.table = e->table;
            r.clock = e->clock;
            r.seq = e->pseq;
            r.stamp = e->acked;
            r.keys = e->keys;
            r.nkeys = e->nkeys;
            r.vals = e->grads;
            r.vals_len = e->grads_len;
            r.aux = i + 1 < k->nlog && (m.seq == 0 || k->log[i + 1].pseq < m.seq) ? e->pseq
                                                                                  : UINT64_MAX;
        }
    } else {
        r.table = m.table;
        r.aux = UINT64_MAX;
        if (m.table == DENSE && k->ncopies > 0) {
            r.keys = k->copy_keys;
            r.nkeys = k->ncopies;
            r.vals = k->copy_rows;
            r.vals_len = (uint64_t)k->ncopies * (DIM * 4 + 12);
            if (k->bad_pages > 0 && k->ncopies >= 2) {
                k->bad_pages--;
                swapped[0] = k->copy_keys[1];
                swapped[1] = k->copy_keys[0];
                r.keys = swapped;
                r.nkeys = 2;
                r.vals_len = 2 * (DIM * 4 + 12);
            }
        }
    }
    if (flr_msg_to_nng(&out, &r, NULL) != 0)
        out = NULL;
drop:
    msgpack_zone_destroy(&zone);
    nng_msg_free(msg);
    flr_rep_reply(req, out);
}

static void keeper_open(struct keeper *k)
{
    char why[256];

    assert_int_equal(flr_rep_open(&k->rep, "tcp://127.0.0.1:0", 8, 1 << 20, keeper_on_request, k,
                                  why, sizeof(why)),
                     0);
}

static void worker_node(uint32_t w, const char *endpoint)
{
    char path[FLR_PATH_MAX], json[256];

    flr_job_node(path, sizeof(path), "test", "workers", w);
    snprintf(json, sizeof(json), "{\"id\":%u,\"endpoint\":\"%s\"}", w, endpoint);
    assert_int_equal(flr_zk_create(net_zk, path, json, (int)strlen(json), 0, NULL, 0), 0);
}

/* The lease callback: counts, and after a few calls takes worker 2's node away. */
static int net_keep_lease(void *arg)
{
    char path[FLR_PATH_MAX];

    (void)arg;
    if (++net_lease_calls == 5) {
        flr_job_node(path, sizeof(path), "test", "workers", 2);
        assert_int_equal(flr_zk_delete(net_zk, path, -1), 0);
    }
    return 0;
}

static void rebuild_over_the_network_retries_a_bad_worker_and_drops_a_gone_one(void **state)
{
    struct flr_job_spec spec;
    struct flr_shard *sh;
    struct flr_rebuild_result r;
    struct flr_proto_limits lim;
    uint8_t removed[NW] = {0};
    const uint64_t p1 = pseq(0, 1), p2 = pseq(0, 2), q1 = pseq(1, 1);
    const uint64_t recs0[][2 + NW] = {{1, 0, p1, 0, 0}};
    const uint64_t ckeys[] = {flr_key(DENSE, 0), flr_key(DENSE, 1)};
    unsigned char crows[2 * (DIM * 4 + 12)];
    const float c0[] = {-1, -1}, c1[] = {0, 0};
    const uint64_t s1 = 1;
    const uint32_t steps = 0;
    const uint64_t k_p1[] = {flr_key(DENSE, 0), flr_key(DENSE, 4)}, k4 = flr_key(DENSE, 4),
                   k5 = flr_key(DENSE, 5);
    const float g_p1[] = {1, 1, 1, 1}, g_p2[] = {2, 2}, g_q1[] = {10, 10};
    const struct flr_rebuild_entry log0[] = {{.table = DENSE,
                                              .pseq = p1,
                                              .acked = 1,
                                              .keys = k_p1,
                                              .nkeys = 2,
                                              .grads = g_p1,
                                              .grads_len = sizeof(g_p1)},
                                             {.table = DENSE,
                                              .pseq = p2,
                                              .keys = &k4,
                                              .nkeys = 1,
                                              .grads = g_p2,
                                              .grads_len = sizeof(g_p2)}};
    const struct flr_rebuild_entry log1[] = {{.table = DENSE,
                                              .pseq = q1,
                                              .acked = 2,
                                              .keys = &k5,
                                              .nkeys = 1,
                                              .grads = g_q1,
                                              .grads_len = sizeof(g_q1)}};
    char man0[256], man1[256];
    struct keeper k0 = {.id = 0,
                        .recs = recs0,
                        .nrec = 1,
                        .copy_keys = ckeys,
                        .copy_rows = crows,
                        .ncopies = 2,
                        .log = log0,
                        .nlog = 2,
                        .bad_pages = 1};
    struct keeper k1 = {.id = 1, .log = log1, .nlog = 1};
    struct flr_rebuild_cfg cfg = {0};
    const float *v;

    (void)state;
    job_set(&spec, FLR_ASP, 1);
    memcpy(crows, c0, sizeof(c0));
    memcpy(crows + 8, &s1, 8);
    memcpy(crows + 16, &steps, 4);
    memcpy(crows + 20, c1, sizeof(c1));
    memcpy(crows + 28, &s1, 8);
    memcpy(crows + 36, &steps, 4);
    snprintf(man0, sizeof(man0),
             "{\"worker\":0,\"clock\":4,\"incarnation\":%llu,\"pseq_sent\":%llu,"
             "\"pseq_truncated\":0,\"rows\":2,\"log_entries\":2,\"log_bytes\":40}",
             (unsigned long long)pseq(0, 0), (unsigned long long)p2);
    snprintf(man1, sizeof(man1),
             "{\"worker\":1,\"clock\":3,\"incarnation\":%llu,\"pseq_sent\":%llu,"
             "\"pseq_truncated\":0,\"rows\":0,\"log_entries\":1,\"log_bytes\":16}",
             (unsigned long long)pseq(1, 0), (unsigned long long)q1);
    k0.manifest = man0;
    k1.manifest = man1;
    keeper_open(&k0);
    keeper_open(&k1);
    assert_int_equal(flr_zk_mkdirs(net_zk, "/flr/test/workers"), 0);
    worker_node(0, flr_rep_url(k0.rep));
    worker_node(1, flr_rep_url(k1.rep));
    worker_node(2, "tcp://127.0.0.1:1");

    assert_int_equal(flr_shard_open(&sh, &spec, 0, NET_EPOCH, NET_SELF), 0);
    flr_proto_limits_default(&lim);
    cfg.zk = net_zk;
    cfg.job = "test";
    cfg.self = NET_SELF;
    cfg.shard = 0;
    cfg.spec = &spec;
    cfg.removed = removed;
    cfg.lim = &lim;
    cfg.call_timeout_ms = 200;
    cfg.retry_ms = 50;
    cfg.timeout_ms = 20000;
    cfg.keep_lease = net_keep_lease;
    assert_int_equal(flr_rebuild_shard(sh, &cfg, &r), 0);

    v = flr_tshard_peek(flr_store_table(flr_shard_store(sh), DENSE), 0, NULL, NULL);
    assert_true(v[0] == -1 && v[1] == -1);
    v = flr_tshard_peek(flr_store_table(flr_shard_store(sh), DENSE), 4, NULL, NULL);
    assert_true(v[0] == -3 && v[1] == -3);
    v = flr_tshard_peek(flr_store_table(flr_shard_store(sh), DENSE), 5, NULL, NULL);
    assert_true(v[0] == -10 && v[1] == -10);
    assert_int_equal(k0.manifests, 2); /* asked again after its bad page */
    assert_int_equal(r.workers, 2);
    assert_int_equal(r.clock[0], 4);
    assert_int_equal(r.clock[1], 3);
    assert_int_equal(r.clock[2], -1);
    assert_int_equal(r.frontier[0], p2);
    assert_int_equal(r.frontier[1], q1);
    assert_int_equal(r.rows_rebuilt, 2);
    assert_int_equal(r.rows_from_log, 2);
    assert_int_equal(r.entries_replayed, 3);
    assert_true(r.bytes > 0);
    assert_true(net_lease_calls >= 5);
    flr_rebuild_result_free(&r);
    flr_shard_close(sh);
    flr_rep_close(k0.rep);
    flr_rep_close(k1.rep);
    assert_int_equal(flr_zk_delete_tree(net_zk, "/flr/test"), 0);
}

static int net_stop_calls;

/* Asks the rebuild to stop on its third call. */
static int net_stop_soon(void *arg)
{
    (void)arg;
    return ++net_stop_calls >= 3;
}

/* A worker that never answers holds the rebuild only until the server wants to stop. */
static void rebuild_stops_when_the_lease_callback_says_so(void **state)
{
    struct flr_job_spec spec;
    struct flr_shard *sh;
    struct flr_rebuild_result r;
    struct flr_proto_limits lim;
    struct flr_rebuild_cfg cfg = {0};
    int64_t t0;

    (void)state;
    job_set(&spec, FLR_BSP, 1);
    assert_int_equal(flr_zk_mkdirs(net_zk, "/flr/test/workers"), 0);
    worker_node(0, "tcp://127.0.0.1:1");
    assert_int_equal(flr_shard_open(&sh, &spec, 0, NET_EPOCH, NET_SELF), 0);
    flr_proto_limits_default(&lim);
    cfg.zk = net_zk;
    cfg.job = "test";
    cfg.self = NET_SELF;
    cfg.spec = &spec;
    cfg.lim = &lim;
    cfg.call_timeout_ms = 60000;
    cfg.retry_ms = 50;
    cfg.keep_lease = net_stop_soon;
    t0 = flr_now_ms();
    assert_int_equal(flr_rebuild_shard(sh, &cfg, &r), FLR_ESHUTDOWN);
    assert_true(flr_now_ms() - t0 < 10000);
    assert_null(r.clock);
    assert_int_equal(r.nheld, 0);
    flr_shard_close(sh);
    assert_int_equal(flr_zk_delete_tree(net_zk, "/flr/test"), 0);
}

static int net_setup(void **state)
{
    char why[256];

    (void)state;
    if (flr_testzk_start(&net_tzk) != 0)
        return -1;
    if (flr_zk_open(&net_zk, net_tzk.hosts, 4000, 5000, why, sizeof(why)) != 0) {
        fprintf(stderr, "setup: %s\n", why);
        flr_testzk_stop(&net_tzk);
        return -1;
    }
    return 0;
}

static int net_teardown(void **state)
{
    (void)state;
    flr_zk_close(net_zk);
    flr_testzk_stop(&net_tzk);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(asp_every_update_is_applied_exactly_once),
        cmocka_unit_test(asp_entry_is_replayed_only_to_rows_whose_copy_lacks_it),
        cmocka_unit_test(asp_order_is_acked_stamp_then_worker_and_pseq),
        cmocka_unit_test(bsp_rebuild_equals_the_clock_closes_bit_for_bit),
        cmocka_unit_test(bsp_pushes_of_open_clocks_are_held),
        cmocka_unit_test(bsp_copies_close_the_clocks_they_contain),
        cmocka_unit_test(adam_slots_and_steps_are_restored_from_copies),
        cmocka_unit_test(rows_lost_counts_dense_rows_with_neither_copy_nor_log),
        cmocka_unit_test(uninitialised_store_ends_with_every_dense_row_filled),
        cmocka_unit_test(bad_contributions_are_rejected_and_change_nothing),
        cmocka_unit_test(dropped_worker_keeps_its_copies_and_duplicates_apply_once),
    };

    const struct CMUnitTest net_tests[] = {
        cmocka_unit_test(rebuild_over_the_network_retries_a_bad_worker_and_drops_a_gone_one),
        cmocka_unit_test(rebuild_stops_when_the_lease_callback_says_so),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    return failed + cmocka_run_group_tests(net_tests, net_setup, net_teardown);
}
