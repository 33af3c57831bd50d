/*
 * test_copies.c - the worker's store for lossless recovery: which copy of a row is kept,
 * the row format, frontier records and their collection, the update log's pseqs, order
 * and truncation rules, pages and cursors, and the byte counters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "worker/copies.h"

#define SGD  1 /* sparse, dim 2, no slots */
#define ADAM 2 /* dense, dim 3, two slots */
#define W    3 /* workers */
#define INC  ((uint64_t)1000 << 22)

static void build_spec(struct flr_job_spec *s)
{
    memset(s, 0, sizeof(*s));
    strcpy(s->job, "cp");
    s->num_workers = W;
    s->num_servers = 1;
    s->num_shards = 2;
    strcpy(s->recovery, "flr");
    s->ntables = 2;
    s->tables[0] = (struct flr_table_spec){
        .id = SGD, .name = "s", .kind = FLR_TABLE_SPARSE, .dim = 2, .optim = FLR_OPT_SGD};
    s->tables[1] = (struct flr_table_spec){.id = ADAM,
                                           .name = "d",
                                           .kind = FLR_TABLE_DENSE,
                                           .rows = 100,
                                           .dim = 3,
                                           .optim = FLR_OPT_ADAM};
}

/* ---- the copies, copied out (what the keeper encodes straight into its replies) ------- */

/* page_out's sink: the keys and rows into malloc'd buffers. */
struct cp_page_out {
    uint64_t *keys;
    void *rows;
};

static void *cp_page_sink(void *arg, const uint64_t *keys, uint32_t n, size_t bytes, uint64_t next)
{
    struct cp_page_out *o = arg;

    (void)next;
    if (n == 0)
        return o; /* nothing to write, and not a failure */
    if (!(o->keys = malloc((size_t)n * sizeof(uint64_t))) || !(o->rows = malloc(bytes))) {
        free(o->keys);
        o->keys = NULL;
        return NULL;
    }
    memcpy(o->keys, keys, (size_t)n * sizeof(uint64_t));
    return o->rows;
}

/* A page of copies from cursor on (no end); *keys and *rows malloc'd, NULL when *n is 0. */
static int page_out(struct flr_copies *cs, uint32_t shard, uint32_t table, uint64_t cursor,
                    uint32_t max_rows, size_t max_bytes, uint64_t **keys, void **rows, uint32_t *n,
                    uint64_t *next)
{
    struct cp_page_out o = {0};
    int rv = flr_copies_page_into(cs, shard, table, cursor, 0, max_rows, max_bytes, cp_page_sink,
                                  &o, n, next);

    *keys = o.keys;
    *rows = o.rows;
    return rv;
}

static void entry_fini(struct flr_copies_entry *e)
{
    free(e->keys);
    free(e->grads);
    e->keys = NULL;
    e->grads = NULL;
}

/* log_next's callback: copies the entry out. */
struct cp_log_out {
    struct flr_copies_entry *e;
    uint64_t *next;
};

static int cp_log_copy(void *arg, const struct flr_copies_entry *src, uint64_t next)
{
    struct cp_log_out *o = arg;
    size_t kb, gb;

    if (!src)
        return FLR_ENOT_FOUND;
    kb = (size_t)src->nkeys * sizeof(uint64_t);
    gb = (size_t)src->nkeys * src->dim * sizeof(float);
    *o->e = *src;
    o->e->keys = malloc(kb ? kb : 1);
    o->e->grads = malloc(gb ? gb : 1);
    if (!o->e->keys || !o->e->grads) {
        entry_fini(o->e);
        return FLR_ENOMEM;
    }
    memcpy(o->e->keys, src->keys, kb);
    memcpy(o->e->grads, src->grads, gb);
    *o->next = next;
    return 0;
}

/* The shard's first entry with pseq > cursor, copied out (free with entry_fini); *next its
 * pseq, or UINT64_MAX when it is the last.  FLR_ENOT_FOUND when there is none. */
static int log_next(struct flr_copies *cs, uint32_t shard, uint64_t cursor,
                    struct flr_copies_entry *e, uint64_t *next)
{
    struct cp_log_out o = {.e = e, .next = next};

    memset(e, 0, sizeof(*e));
    *next = UINT64_MAX;
    return flr_copies_log_into(cs, shard, cursor, 0, -1, cp_log_copy, &o);
}

static int setup(void **state)
{
    struct flr_job_spec spec;
    struct flr_copies *cs;

    build_spec(&spec);
    if (flr_copies_alloc(&cs, &spec, INC) != 0)
        return -1;
    *state = cs;
    return 0;
}

static int teardown(void **state)
{
    flr_copies_free(*state);
    return 0;
}

static uint64_t row_stamp(const unsigned char *row, size_t rb)
{
    return flr_load_u64(row + rb - 12);
}

static uint32_t row_steps(const unsigned char *row, size_t rb)
{
    uint32_t v;
    memcpy(&v, row + rb - 4, 4);
    return v;
}

static void test_row_bytes_follow_the_optimizer(void **state)
{
    struct flr_job_spec spec;

    (void)state;
    build_spec(&spec);
    assert_int_equal(flr_copies_row_bytes(&spec.tables[0]), 2 * 4 + 12);
    assert_int_equal(flr_copies_row_bytes(&spec.tables[1]), 3 * 3 * 4 + 12);
}

static void test_newer_copy_wins(void **state)
{
    struct flr_copies *cs = *state;
    uint64_t key = flr_key(SGD, 7);
    float a[2] = {1, 2}, b[2] = {3, 4}, c[2] = {5, 6};
    unsigned char row[20];

    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &key, 1, a, 5, 1, NULL), 0);
    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &key, 1, b, 3, 1, NULL), 0);
    assert_int_equal(flr_copies_get(cs, 0, SGD, key, row), 0);
    assert_memory_equal(row, a, sizeof(a));
    assert_int_equal(row_stamp(row, sizeof(row)), 5);
    assert_int_equal(row_steps(row, sizeof(row)), 0);

    /* The same stamp is the same version: nothing changes. */
    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &key, 1, b, 5, 1, NULL), 0);
    assert_int_equal(flr_copies_get(cs, 0, SGD, key, row), 0);
    assert_memory_equal(row, a, sizeof(a));

    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &key, 1, c, 9, 2, NULL), 0);
    assert_int_equal(flr_copies_get(cs, 0, SGD, key, row), 0);
    assert_memory_equal(row, c, sizeof(c));
    assert_int_equal(row_stamp(row, sizeof(row)), 9);

    /* Shards are separate stores. */
    assert_int_equal(flr_copies_get(cs, 1, SGD, key, row), FLR_ENOT_FOUND);
    assert_int_equal(flr_copies_get(cs, 0, SGD, flr_key(SGD, 8), row), FLR_ENOT_FOUND);
}

static void test_full_rows_keep_slots_and_steps(void **state)
{
    struct flr_copies *cs = *state;
    uint64_t keys[2] = {flr_key(ADAM, 1), flr_key(ADAM, 2)};
    unsigned char rows[2][48], got[48];
    uint64_t wrong = 77;
    uint32_t steps = 12;
    float pulled[3] = {0};

    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < 9; i++) {
            float f = (float)(r * 10 + i);
            memcpy(rows[r] + 4 * i, &f, 4);
        }
        memcpy(rows[r] + 36, &wrong, 8); /* the message's S is what counts */
        memcpy(rows[r] + 44, &steps, 4);
    }
    assert_int_equal(flr_copies_put_rows(cs, 1, ADAM, keys, 2, rows, 40, 3, NULL), 0);
    assert_int_equal(flr_copies_get(cs, 1, ADAM, keys[1], got), 0);
    assert_memory_equal(got, rows[1], 36);
    assert_int_equal(row_stamp(got, 48), 40);
    assert_int_equal(row_steps(got, 48), 12);

    /* A pulled row of a table with slots is not a qualified copy. */
    assert_int_equal(flr_copies_put_pulled(cs, 1, ADAM, keys, 1, pulled, 50, 3, NULL), FLR_EINVAL);
    assert_int_equal(flr_copies_put_rows(cs, 2, ADAM, keys, 1, rows, 50, 3, NULL), FLR_EINVAL);
    assert_int_equal(flr_copies_put_rows(cs, 0, 9, keys, 1, rows, 50, 3, NULL), FLR_EUNKNOWN_TABLE);
}

static void test_records_are_sorted_and_merged(void **state)
{
    struct flr_copies *cs = *state;
    uint64_t k1 = flr_key(SGD, 1), k2 = flr_key(SGD, 2), k3 = flr_key(SGD, 3);
    uint64_t v1[W] = {INC + 4, 0, 9}, v2[W] = {INC + 2, 5, 10};
    float x[2] = {0};
    struct flr_copies_manifest m;

    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &k1, 1, x, 20, 4, v1), 0);
    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &k2, 1, x, 10, -1, NULL), 0);
    /* Same stamp, another reading of the same state: the union of both claims. */
    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &k3, 1, x, 20, 3, v2), 0);

    assert_int_equal(flr_copies_manifest(cs, 0, 0, 0, &m), 0);
    assert_int_equal(m.nrecords, 2);
    assert_int_equal(m.records[0], 10);
    assert_int_equal((int64_t)m.records[1], -1);
    assert_int_equal(m.records[2], 0);
    assert_int_equal(m.records[5], 20);
    assert_int_equal(m.records[6], 4);
    assert_int_equal(m.records[7], INC + 4);
    assert_int_equal(m.records[8], 5);
    assert_int_equal(m.records[9], 10);
    assert_int_equal(m.rows, 3);
    free(m.records);

    /* A put that stores nothing refers to nothing: no record. */
    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &k1, 1, x, 15, 4, v1), 0);
    assert_int_equal(flr_copies_manifest(cs, 0, 0, 0, &m), 0);
    assert_int_equal(m.nrecords, 2);
    free(m.records);
}

static void test_unreferenced_records_are_collected(void **state)
{
    struct flr_copies *cs = *state;
    uint64_t keys[2] = {flr_key(SGD, 1), flr_key(SGD, 2)};
    float x[4] = {0};
    struct flr_copies_manifest m;
    struct flr_copies_stats st;

    /* Row 1 stays at stamp 1; row 2 is re-read at every later stamp. */
    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, keys, 2, x, 1, 0, NULL), 0);
    for (uint64_t S = 2; S <= 1000; S++) {
        assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &keys[1], 1, x, S, 0, NULL), 0);
        flr_copies_stats(cs, &st);
        assert_true(st.records <= 2 * 2 + 8 + 1);
    }
    assert_int_equal(flr_copies_manifest(cs, 0, 0, 0, &m), 0);
    assert_true(m.nrecords >= 2);
    assert_int_equal(m.records[0], 1);                             /* still referenced */
    assert_int_equal(m.records[(m.nrecords - 1) * (2 + W)], 1000); /* the newest */
    for (size_t i = 1; i + 1 < m.nrecords; i++)
        assert_true(m.records[i * (2 + W)] > 1 && m.records[i * (2 + W)] < 1000);
    free(m.records);
}

static void append(struct flr_copies *cs, uint32_t shard, int64_t clock, uint32_t n,
                   uint64_t first_row, uint64_t *pseq)
{
    uint64_t keys[8];
    float grads[16];

    for (uint32_t i = 0; i < n; i++) {
        keys[i] = flr_key(SGD, first_row + i);
        grads[2 * i] = (float)(first_row + i);
        grads[2 * i + 1] = -(float)(first_row + i);
    }
    assert_int_equal(flr_copies_log_append(cs, shard, clock, SGD, keys, n, grads, pseq), 0);
}

static void test_log_assigns_pseqs_per_shard_in_order(void **state)
{
    struct flr_copies *cs = *state;
    struct flr_copies_entry e;
    struct flr_copies_manifest m;
    uint64_t p[4], next, cursor = 0;
    int64_t clocks[3] = {0, 0, 1};

    assert_int_equal(flr_copies_manifest(cs, 0, 0, 0, &m), 0);
    assert_int_equal(m.pseq_sent, INC); /* nothing sent yet */
    assert_int_equal(m.pseq_truncated, 0);
    free(m.records);

    append(cs, 0, 0, 2, 10, &p[0]);
    append(cs, 1, 0, 1, 20, &p[3]);
    append(cs, 0, 0, 1, 30, &p[1]);
    append(cs, 0, 1, 3, 40, &p[2]);
    assert_int_equal(p[0], INC + 1);
    assert_int_equal(p[1], INC + 2);
    assert_int_equal(p[2], INC + 3);
    assert_int_equal(p[3], INC + 1);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(log_next(cs, 0, cursor, &e, &next), 0);
        assert_int_equal(e.pseq, p[i]);
        assert_int_equal(e.clock, clocks[i]);
        assert_int_equal(e.table, SGD);
        assert_int_equal(e.dim, 2);
        assert_int_equal(e.acked, 0);
        assert_int_equal(e.stamp, 0);
        assert_true(e.keys[0] == flr_key(SGD, i == 0 ? 10 : i == 1 ? 30 : 40));
        assert_true(e.grads[1] == -(float)flr_key_row(e.keys[0]));
        assert_int_equal(next, i < 2 ? p[i] : UINT64_MAX);
        cursor = e.pseq;
        entry_fini(&e);
    }
    assert_int_equal(log_next(cs, 0, cursor, &e, &next), FLR_ENOT_FOUND);
    assert_int_equal(next, UINT64_MAX);

    assert_int_equal(flr_copies_manifest(cs, 0, 0, 0, &m), 0);
    assert_int_equal(m.pseq_sent, INC + 3);
    assert_int_equal(m.log_entries, 3);
    assert_int_equal(m.log_bytes, (2 + 1 + 3) * (8 + 8));
    free(m.records);
}

static void test_cursor_survives_appends_and_truncation(void **state)
{
    struct flr_copies *cs = *state;
    struct flr_copies_entry e;
    uint64_t p[3], next;

    append(cs, 0, 0, 1, 1, &p[0]);
    append(cs, 0, 0, 1, 2, &p[1]);
    assert_int_equal(log_next(cs, 0, 0, &e, &next), 0);
    assert_int_equal(e.pseq, p[0]);
    entry_fini(&e);
    /* Meanwhile: the first entry is covered, and a new push is logged. */
    assert_int_equal(flr_copies_log_ack(cs, 0, p[0], 5), 0);
    flr_copies_log_truncate(cs, 0, p[0]);
    append(cs, 0, 0, 1, 3, &p[2]);
    assert_int_equal(log_next(cs, 0, next, &e, &next), 0);
    assert_int_equal(e.pseq, p[1]);
    entry_fini(&e);
    assert_int_equal(log_next(cs, 0, next, &e, &next), 0);
    assert_int_equal(e.pseq, p[2]);
    assert_int_equal(next, UINT64_MAX);
    entry_fini(&e);
}

static void test_truncation_drops_only_acked_covered_prefix(void **state)
{
    struct flr_copies *cs = *state;
    struct flr_copies_entry e;
    struct flr_copies_manifest m;
    uint64_t p[4], next;

    for (int i = 0; i < 4; i++)
        append(cs, 0, 0, 1, (uint64_t)i, &p[i]);
    assert_int_equal(flr_copies_log_ack(cs, 0, p[0], 11), 0);
    assert_int_equal(flr_copies_log_ack(cs, 0, p[1], 12), 0);
    assert_int_equal(flr_copies_log_ack(cs, 0, p[3], 14), 0);
    assert_int_equal(flr_copies_log_ack(cs, 0, INC + 99, 1), FLR_ENOT_FOUND);

    /* Covered up to the last, but the third is not acknowledged: it and what follows stay. */
    flr_copies_log_truncate(cs, 0, p[3]);
    assert_int_equal(flr_copies_manifest(cs, 0, 0, 0, &m), 0);
    assert_int_equal(m.log_entries, 2);
    assert_int_equal(m.pseq_truncated, p[1]);
    free(m.records);
    assert_int_equal(log_next(cs, 0, 0, &e, &next), 0);
    assert_int_equal(e.pseq, p[2]);
    assert_int_equal(e.acked, 0);
    entry_fini(&e);

    /* A lower covered pseq (an older reply) truncates nothing. */
    assert_int_equal(flr_copies_log_ack(cs, 0, p[2], 13), 0);
    flr_copies_log_truncate(cs, 0, p[1]);
    assert_int_equal(flr_copies_manifest(cs, 0, 0, 0, &m), 0);
    assert_int_equal(m.log_entries, 2);
    free(m.records);

    /* Acknowledged but not covered stays too. */
    flr_copies_log_truncate(cs, 0, p[2]);
    assert_int_equal(log_next(cs, 0, 0, &e, &next), 0);
    assert_int_equal(e.pseq, p[3]);
    assert_int_equal(e.acked, 1);
    assert_int_equal(e.stamp, 14);
    entry_fini(&e);

    flr_copies_log_truncate(cs, 0, UINT64_MAX);
    assert_int_equal(flr_copies_manifest(cs, 0, 0, 0, &m), 0);
    assert_int_equal(m.log_entries, 0);
    assert_int_equal(m.log_bytes, 0);
    assert_int_equal(m.pseq_truncated, p[3]);
    assert_int_equal(m.pseq_sent, p[3]);
    free(m.records);
    assert_int_equal(log_next(cs, 0, 0, &e, &next), FLR_ENOT_FOUND);
}

static void test_cancel_and_drop(void **state)
{
    struct flr_copies *cs = *state;
    struct flr_copies_entry e;
    uint64_t p[3], q, next;

    append(cs, 1, 0, 1, 1, &p[0]);
    append(cs, 1, 0, 1, 2, &p[1]);
    assert_int_equal(flr_copies_log_cancel(cs, 1, p[0]), FLR_EINVAL); /* not the newest */
    assert_int_equal(flr_copies_log_cancel(cs, 1, p[1]), 0);
    append(cs, 1, 0, 1, 3, &q);
    assert_int_equal(q, p[1]); /* no gap */
    append(cs, 1, 0, 1, 4, &p[2]);

    assert_int_equal(flr_copies_log_drop(cs, 1, q), 0);
    assert_int_equal(flr_copies_log_drop(cs, 1, q), FLR_ENOT_FOUND);
    assert_int_equal(log_next(cs, 1, p[0], &e, &next), 0);
    assert_int_equal(e.pseq, p[2]);
    entry_fini(&e);
}

static void test_pages_are_sorted_and_resumable(void **state)
{
    struct flr_copies *cs = *state;
    uint64_t rows[] = {50, 3, 17, 99, 1, 42, 8};
    uint64_t *keys, cursor = 0, next, seen = 0, last = 0;
    void *data;
    uint32_t n;
    float x[2];
    int pages = 0;

    assert_int_equal(page_out(cs, 0, SGD, 0, 10, 1 << 20, &keys, &data, &n, &next), 0);
    assert_int_equal(n, 0);
    assert_int_equal(next, UINT64_MAX);

    for (size_t i = 0; i < FLR_ARRAY_LEN(rows); i++) {
        uint64_t k = flr_key(SGD, rows[i]);
        x[0] = (float)rows[i];
        assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &k, 1, x, 1, 0, NULL), 0);
    }
    do {
        assert_int_equal(page_out(cs, 0, SGD, cursor, 3, 1 << 20, &keys, &data, &n, &next), 0);
        assert_true(n >= 1 && n <= 3);
        for (uint32_t i = 0; i < n; i++) {
            float v;
            assert_true(keys[i] >= cursor && (seen == 0 || keys[i] > last));
            memcpy(&v, (unsigned char *)data + (size_t)i * 20, 4);
            assert_true(v == (float)flr_key_row(keys[i]));
            last = keys[i];
            seen++;
        }
        free(keys);
        free(data);
        if (pages++ == 0) {
            /* A key added behind the cursor is not sent again; one ahead of it is. */
            uint64_t k = flr_key(SGD, 0), k2 = flr_key(SGD, 70);
            x[0] = 0;
            assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &k, 1, x, 2, 0, NULL), 0);
            x[0] = 70;
            assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, &k2, 1, x, 2, 0, NULL), 0);
        }
        cursor = next;
    } while (next != UINT64_MAX);
    assert_int_equal(seen, FLR_ARRAY_LEN(rows) + 1);
    assert_int_equal(flr_key_row(last), 99);

    /* The byte budget bounds a page too, but a page holds at least one row. */
    assert_int_equal(page_out(cs, 0, SGD, 0, 100, 2 * 28, &keys, &data, &n, &next), 0);
    assert_int_equal(n, 2);
    free(keys);
    free(data);
    assert_int_equal(page_out(cs, 0, SGD, 0, 100, 1, &keys, &data, &n, &next), 0);
    assert_int_equal(n, 1);
    free(keys);
    free(data);
}

static void test_stats_count_bytes(void **state)
{
    struct flr_copies *cs = *state;
    struct flr_copies_stats st;
    uint64_t keys[3] = {flr_key(SGD, 1), flr_key(SGD, 2), flr_key(SGD, 3)}, p[2];
    float x[6] = {0};

    flr_copies_stats(cs, &st);
    assert_int_equal(st.rows + st.copy_bytes + st.log_entries + st.log_bytes + st.records, 0);
    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, keys, 3, x, 4, 0, NULL), 0);
    assert_int_equal(flr_copies_put_pulled(cs, 1, SGD, keys, 1, x, 4, 0, NULL), 0);
    assert_int_equal(flr_copies_put_pulled(cs, 0, SGD, keys, 2, x, 5, 0, NULL), 0); /* replaces */
    flr_copies_stats(cs, &st);
    assert_int_equal(st.rows, 4);
    assert_int_equal(st.copy_bytes, 4 * (8 + 20));
    assert_int_equal(st.records, 3);

    append(cs, 0, 0, 3, 1, &p[0]);
    append(cs, 1, 0, 2, 1, &p[1]);
    flr_copies_stats(cs, &st);
    assert_int_equal(st.log_entries, 2);
    assert_int_equal(st.log_bytes, 5 * (8 + 8));
    assert_int_equal(flr_copies_log_ack(cs, 0, p[0], 1), 0);
    flr_copies_log_truncate(cs, 0, p[0]);
    flr_copies_stats(cs, &st);
    assert_int_equal(st.log_entries, 1);
    assert_int_equal(st.log_bytes, 2 * (8 + 8));
}

struct writer {
    struct flr_copies *cs;
    uint32_t shard;
};

static void *writer_run(void *arg)
{
    struct writer *w = arg;
    float x[2] = {1, 1};

    for (uint64_t i = 0; i < 20000; i++) {
        uint64_t k = flr_key(SGD, i % 500), p;
        if (flr_copies_put_pulled(w->cs, w->shard, SGD, &k, 1, x, i + 1, 0, NULL) != 0)
            return (void *)1;
        if (flr_copies_log_append(w->cs, w->shard, 0, SGD, &k, 1, x, &p) != 0 ||
            flr_copies_log_ack(w->cs, w->shard, p, i + 1) != 0)
            return (void *)1;
        flr_copies_log_truncate(w->cs, w->shard, p);
    }
    return NULL;
}

static void test_concurrent_writers_and_readers(void **state)
{
    struct flr_copies *cs = *state;
    struct writer w[2] = {{cs, 0}, {cs, 1}};
    pthread_t th[2];
    struct flr_copies_stats st;
    void *res;

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer_run, &w[i]), 0);
    for (int round = 0; round < 200; round++) {
        uint64_t *keys, next;
        void *data;
        uint32_t n;
        struct flr_copies_manifest m;
        assert_int_equal(page_out(cs, round % 2, SGD, 0, 64, 1 << 20, &keys, &data, &n, &next), 0);
        free(keys);
        free(data);
        assert_int_equal(flr_copies_manifest(cs, round % 2, 0, 0, &m), 0);
        free(m.records);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_null(res);
    }
    flr_copies_stats(cs, &st);
    assert_int_equal(st.rows, 1000);
    assert_int_equal(st.log_entries, 0);
    assert_int_equal(st.log_bytes, 0);
}

/* The binary search the store's sorted arrays share: plain keys and strided records. */
static void test_lower_bound_over_keys_and_records(void **state)
{
    const uint64_t keys[] = {2, 4, 4, 9};
    const uint64_t recs[][3] = {{1, 70, 71}, {5, 0, 0}, {8, 9, 9}}; /* searched on [0] */

    (void)state;
    assert_int_equal(flr_lower_bound_u64(keys, 0, 8, 3), 0);
    assert_int_equal(flr_lower_bound_u64(keys, 4, 8, 0), 0);
    assert_int_equal(flr_lower_bound_u64(keys, 4, 8, 2), 0);
    assert_int_equal(flr_lower_bound_u64(keys, 4, 8, 3), 1);
    assert_int_equal(flr_lower_bound_u64(keys, 4, 8, 4), 1); /* the first of equal keys */
    assert_int_equal(flr_lower_bound_u64(keys, 4, 8, 5), 3);
    assert_int_equal(flr_lower_bound_u64(keys, 4, 8, 10), 4);
    assert_int_equal(flr_lower_bound_u64(recs, 3, sizeof(recs[0]), 5), 1);
    assert_int_equal(flr_lower_bound_u64(recs, 3, sizeof(recs[0]), 6), 2);
    assert_int_equal(flr_lower_bound_u64(recs, 3, sizeof(recs[0]), 71), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lower_bound_over_keys_and_records),
        cmocka_unit_test(test_row_bytes_follow_the_optimizer),
        cmocka_unit_test_setup_teardown(test_newer_copy_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_rows_keep_slots_and_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_are_sorted_and_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreferenced_records_are_collected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_assigns_pseqs_per_shard_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_survives_appends_and_truncation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncation_drops_only_acked_covered_prefix, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_are_sorted_and_resumable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_count_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers_and_readers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
