/*
 * test_keeper.c - the worker's recovery endpoint: REPLICATE stores qualified copies and
 * refuses bad input with a reason, MANIFEST reports the store, REBUILD_STREAM pages
 * through copies and log entries; all with real encoded messages, and once over a real
 * socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/shardmap.h"
#include "common/transport.h"
#include "common/util.h"
#include "worker/keeper.h"

#define SGD  1 /* sparse, dim 2, no slots */
#define ADAM 2 /* dense, 100 rows, dim 3, two slots: rows of 48 bytes */
#define W    3
#define INC  ((uint64_t)77 << 22)
#define ROWB 48

struct fixture {
    struct flr_job_spec spec;
    struct flr_copies *cs;
    struct flr_keeper_ctx ctx;
    msgpack_zone zone;
    nng_msg *held[4]; /* replies decoded into flr_msg, freed at teardown */
    int nheld;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    strcpy(f->spec.job, "kp");
    f->spec.num_workers = W;
    f->spec.num_servers = 1;
    f->spec.num_shards = 2;
    strcpy(f->spec.recovery, "flr");
    f->spec.ntables = 2;
    f->spec.tables[0] = (struct flr_table_spec){
        .id = SGD, .name = "s", .kind = FLR_TABLE_SPARSE, .dim = 2, .optim = FLR_OPT_SGD};
    f->spec.tables[1] = (struct flr_table_spec){.id = ADAM,
                                                .name = "d",
                                                .kind = FLR_TABLE_DENSE,
                                                .rows = 100,
                                                .dim = 3,
                                                .optim = FLR_OPT_ADAM};
    if (flr_copies_alloc(&f->cs, &f->spec, INC) != 0)
        return -1;
    f->ctx = (struct flr_keeper_ctx){.copies = f->cs,
                                     .spec = &f->spec,
                                     .worker_id = 1,
                                     .page_bytes = FLR_KEEPER_PAGE_BYTES,
                                     .max_keys = 1 << 20};
    msgpack_zone_init(&f->zone, 1024);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    for (int i = 0; i < f->nheld; i++)
        nng_msg_free(f->held[i]);
    msgpack_zone_destroy(&f->zone);
    flr_copies_free(f->cs);
    free(f);
    return 0;
}

static void request(struct flr_msg *m, int type, uint32_t shard)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->job = "kp";
    m->job_len = 2;
    m->sender = 0;
    m->shard = shard;
    m->shard_epoch = 3;
    m->request_id = 42;
    m->reason = "";
}

/* Encodes req, decodes it as the endpoint would, answers it, and decodes the answer into
 * rep (valid until teardown). */
static void exchange(struct fixture *f, const struct flr_msg *req, struct flr_msg *rep)
{
    struct flr_proto_limits lim;
    struct flr_msg in;
    nng_msg *wire, *out;
    char why[256];
    msgpack_zone z;

    flr_proto_limits_default(&lim);
    assert_int_equal(flr_msg_to_nng(&wire, req, NULL), 0);
    msgpack_zone_init(&z, 1024);
    assert_int_equal(
        flr_msg_decode(&in, nng_msg_body(wire), nng_msg_len(wire), &lim, &z, why, sizeof(why)), 0);
    assert_int_equal(flr_keeper_handle(&f->ctx, &in, &out), 0);
    msgpack_zone_destroy(&z);
    nng_msg_free(wire);
    if (f->nheld == 4) {
        nng_msg_free(f->held[0]);
        memmove(f->held, f->held + 1, 3 * sizeof(*f->held));
        f->nheld--;
    }
    f->held[f->nheld++] = out;
    assert_int_equal(
        flr_msg_decode(rep, nng_msg_body(out), nng_msg_len(out), &lim, &f->zone, why, sizeof(why)),
        0);
    assert_int_equal(rep->type, flr_reply_type(req->type));
    assert_int_equal(rep->request_id, 42);
    assert_int_equal(rep->sender, 1);
    assert_int_equal(rep->shard, req->shard);
}

/* Full ADAM rows: floats r*100 + i, stamp field 0, steps r. */
static void adam_rows(unsigned char *rows, const uint64_t *keys, uint32_t n)
{
    for (uint32_t r = 0; r < n; r++) {
        uint64_t zero = 0;
        uint32_t steps = (uint32_t)flr_key_row(keys[r]);
        for (int i = 0; i < 9; i++) {
            float v = (float)(flr_key_row(keys[r]) * 100 + (uint64_t)i);
            memcpy(rows + (size_t)r * ROWB + 4 * i, &v, 4);
        }
        memcpy(rows + (size_t)r * ROWB + 36, &zero, 8);
        memcpy(rows + (size_t)r * ROWB + 44, &steps, 4);
    }
}

static void test_replicate_stores_qualified_copies(void **state)
{
    struct fixture *f = *state;
    uint64_t keys[3] = {flr_key(ADAM, 50), flr_key(ADAM, 51), flr_key(ADAM, 90)};
    uint64_t V[W] = {INC + 1, 7, 0};
    unsigned char rows[3 * ROWB], got[ROWB];
    struct flr_msg m, r;
    struct flr_copies_manifest man;

    adam_rows(rows, keys, 3);
    request(&m, FLR_MSG_REPLICATE, 1); /* rows 50..99 are shard 1 */
    m.table = ADAM;
    m.stamp = 30;
    m.clock = 4;
    m.keys = keys;
    m.nkeys = 3;
    m.vals = rows;
    m.vals_len = sizeof(rows);
    m.extra = V;
    m.extra_len = sizeof(V);
    exchange(f, &m, &r);
    assert_int_equal(r.type, FLR_MSG_REPLICATE_ACK);
    assert_int_equal(r.status, 0);

    assert_int_equal(flr_copies_get(f->cs, 1, ADAM, keys[2], got), 0);
    assert_memory_equal(got, rows + 2 * ROWB, 36);
    assert_int_equal(flr_load_u64(got + 36), 30);
    assert_int_equal(got[44], 90);
    assert_int_equal(flr_copies_manifest(f->cs, 1, 0, 0, &man), 0);
    assert_int_equal(man.nrecords, 1);
    assert_int_equal(man.records[0], 30);
    assert_int_equal(man.records[1], 4);
    assert_memory_equal(man.records + 2, V, sizeof(V));
    free(man.records);

    /* An older replica does not replace a newer copy; no frontier means zeros. */
    rows[0] = 0x55;
    m.stamp = 20;
    m.extra = NULL;
    m.extra_len = 0;
    exchange(f, &m, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(flr_copies_get(f->cs, 1, ADAM, keys[0], got), 0);
    assert_int_equal(flr_load_u64(got + 36), 30);
    assert_int_not_equal(got[0], 0x55);
}

static void expect_refused(struct fixture *f, const struct flr_msg *m, int status)
{
    struct flr_msg r;
    struct flr_copies_stats st;

    exchange(f, m, &r);
    assert_int_equal(r.type, FLR_MSG_REPLICATE_ACK);
    assert_int_equal(r.status, status);
    assert_true(r.reason_len > 0);
    flr_copies_stats(f->cs, &st);
    assert_int_equal(st.rows, 0);
}

static void test_replicate_refuses_bad_input(void **state)
{
    struct fixture *f = *state;
    uint64_t keys[2] = {flr_key(ADAM, 1), flr_key(ADAM, 2)}, V[W] = {0};
    unsigned char rows[2 * ROWB];
    struct flr_msg m;

    adam_rows(rows, keys, 2);
    request(&m, FLR_MSG_REPLICATE, 0);
    m.table = ADAM;
    m.stamp = 5;
    m.keys = keys;
    m.nkeys = 2;
    m.vals = rows;
    m.vals_len = sizeof(rows);

    m.job = "other";
    m.job_len = 5;
    expect_refused(f, &m, FLR_EWRONG_JOB);
    m.job = "kp";
    m.job_len = 2;

    m.shard = 2;
    expect_refused(f, &m, FLR_EBAD_REQUEST);
    m.shard = 1; /* the keys belong to shard 0 */
    expect_refused(f, &m, FLR_EBAD_REQUEST);
    m.shard = 0;

    m.table = 9;
    expect_refused(f, &m, FLR_EBAD_REQUEST);
    m.table = SGD; /* rows of the wrong width, and keys of another table */
    expect_refused(f, &m, FLR_EBAD_REQUEST);
    m.table = ADAM;

    m.vals_len = sizeof(rows) - 8; /* whole floats per key, but not whole rows */
    expect_refused(f, &m, FLR_EBAD_REQUEST);
    m.vals_len = sizeof(rows);

    m.extra = V;
    m.extra_len = 16;
    expect_refused(f, &m, FLR_EBAD_REQUEST);
    m.extra_len = sizeof(V);

    keys[0] = flr_key(ADAM, 3); /* 3 then 2: not sorted */
    expect_refused(f, &m, FLR_EBAD_REQUEST);
    keys[0] = flr_key(ADAM, 1);
    keys[1] = flr_key(ADAM, 100); /* beyond the table's rows */
    expect_refused(f, &m, FLR_EBAD_REQUEST);
}

static void test_manifest_reports_the_shard(void **state)
{
    struct fixture *f = *state;
    uint64_t k = flr_key(ADAM, 5), p[3];
    float x[3] = {1, 2, 3};
    unsigned char rows[ROWB];
    struct flr_msg m, r;
    json_t *doc;
    json_error_t err;

    adam_rows(rows, &k, 1);
    assert_int_equal(flr_copies_put_rows(f->cs, 0, ADAM, &k, 1, rows, 9, -1, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(flr_copies_log_append(f->cs, 0, 2, ADAM, &k, 1, x, &p[i]), 0);
    assert_int_equal(flr_copies_log_ack(f->cs, 0, p[0], 3), 0);
    flr_copies_log_truncate(f->cs, 0, p[0]);
    flr_copies_set_clock(f->cs, 6);

    request(&m, FLR_MSG_MANIFEST_REQ, 0);
    exchange(f, &m, &r);
    assert_int_equal(r.type, FLR_MSG_MANIFEST);
    assert_int_equal(r.status, 0);
    doc = json_loadb(r.text, r.text_len, 0, &err);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "worker")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "clock")), 6);
    assert_true((uint64_t)json_integer_value(json_object_get(doc, "incarnation")) == INC);
    assert_true((uint64_t)json_integer_value(json_object_get(doc, "pseq_sent")) == INC + 3);
    assert_true((uint64_t)json_integer_value(json_object_get(doc, "pseq_truncated")) == INC + 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "rows")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "log_entries")), 2);
    assert_int_equal(json_integer_value(json_object_get(doc, "log_bytes")), 2 * (8 + 12));
    assert_int_equal(json_integer_value(json_object_get(doc, "records")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "pages")), 1);
    json_decref(doc);
    /* One record (S, C, V), then one page: the table and the key it starts at. */
    assert_int_equal(r.extra_len, (2 + W) * 8 + 16);
    assert_int_equal(flr_load_u64(r.extra), 9);
    assert_true((int64_t)flr_load_u64((const unsigned char *)r.extra + 8) == -1);
    assert_int_equal(flr_load_u64((const unsigned char *)r.extra + (2 + W) * 8), ADAM);
    assert_true(flr_load_u64((const unsigned char *)r.extra + (2 + W) * 8 + 8) == k);

    /* Another shard: nothing sent, nothing held. */
    request(&m, FLR_MSG_MANIFEST_REQ, 1);
    exchange(f, &m, &r);
    doc = json_loadb(r.text, r.text_len, 0, &err);
    assert_non_null(doc);
    assert_true((uint64_t)json_integer_value(json_object_get(doc, "pseq_sent")) == INC);
    assert_int_equal(json_integer_value(json_object_get(doc, "pseq_truncated")), 0);
    json_decref(doc);
    assert_int_equal(r.extra_len, 0);
}

static void test_rebuild_pages_through_copies(void **state)
{
    struct fixture *f = *state;
    uint64_t keys[40], cursor = 0, expect = 0;
    unsigned char rows[40 * ROWB];
    struct flr_msg m, r;
    int pages = 0;

    for (int i = 0; i < 40; i++)
        keys[i] = flr_key(ADAM, (uint64_t)i);
    adam_rows(rows, keys, 40);
    assert_int_equal(flr_copies_put_rows(f->cs, 0, ADAM, keys, 40, rows, 11, 0, NULL), 0);
    f->ctx.page_bytes = 7 * (8 + ROWB);
    do {
        request(&m, FLR_MSG_REBUILD_REQ, 0);
        m.table = ADAM;
        m.aux = cursor;
        exchange(f, &m, &r);
        assert_int_equal(r.type, FLR_MSG_REBUILD_STREAM);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.table, ADAM);
        assert_true(r.nkeys >= 1 && r.nkeys <= 7);
        assert_int_equal(r.vals_len, (uint64_t)r.nkeys * ROWB);
        for (uint32_t i = 0; i < r.nkeys; i++, expect++) {
            const unsigned char *row = (const unsigned char *)r.vals + (size_t)i * ROWB;
            assert_int_equal(flr_load_u64((const unsigned char *)r.keys + 8 * i), keys[expect]);
            assert_memory_equal(row, rows + expect * ROWB, 36);
            assert_int_equal(flr_load_u64(row + 36), 11);
        }
        cursor = r.aux;
        pages++;
    } while (cursor != UINT64_MAX);
    assert_int_equal(expect, 40);
    assert_int_equal(pages, 6);

    /* A table the shard has no copies of: one empty, final page. */
    request(&m, FLR_MSG_REBUILD_REQ, 1);
    m.table = SGD;
    exchange(f, &m, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nkeys, 0);
    assert_true(r.aux == UINT64_MAX);

    request(&m, FLR_MSG_REBUILD_REQ, 0);
    m.table = 12;
    exchange(f, &m, &r);
    assert_int_equal(r.status, FLR_EBAD_REQUEST);
}

static void test_rebuild_streams_the_log_one_entry_each(void **state)
{
    struct fixture *f = *state;
    uint64_t keys[2] = {flr_key(SGD, 4), flr_key(SGD, 9)}, p[3], cursor = 0;
    float g[4] = {0.5f, 1.5f, 2.5f, 3.5f};
    struct flr_msg m, r;

    request(&m, FLR_MSG_REBUILD_REQ, 1);
    m.table = FLR_REBUILD_LOG;
    exchange(f, &m, &r); /* empty log */
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nkeys, 0);
    assert_true(r.aux == UINT64_MAX);

    assert_int_equal(flr_copies_log_append(f->cs, 1, 3, SGD, keys, 2, g, &p[0]), 0);
    assert_int_equal(flr_copies_log_append(f->cs, 1, 4, SGD, keys, 1, g, &p[1]), 0);
    assert_int_equal(flr_copies_log_ack(f->cs, 1, p[0], 17), 0);
    for (int i = 0; i < 3; i++) {
        if (i == 1) {
            /* Pushed while the rebuild reads: the cursor still finds it. */
            assert_int_equal(flr_copies_log_append(f->cs, 1, 5, SGD, keys + 1, 1, g + 2, &p[2]), 0);
        }
        m.aux = cursor;
        exchange(f, &m, &r);
        assert_int_equal(r.type, FLR_MSG_REBUILD_STREAM);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.table, SGD);
        assert_int_equal(r.seq, p[i]);
        assert_int_equal(r.clock, 3 + i);
        assert_int_equal(r.stamp, i == 0 ? 17 : 0);
        assert_int_equal(r.nkeys, i == 0 ? 2 : 1);
        assert_int_equal(flr_load_u64(r.keys), i == 2 ? keys[1] : keys[0]);
        assert_true(flr_load_f32(r.vals) == (i == 2 ? 2.5f : 0.5f));
        assert_int_equal(r.vals_len, (uint64_t)r.nkeys * 8);
        if (i < 2)
            assert_int_equal(r.aux, p[i]);
        else
            assert_true(r.aux == UINT64_MAX);
        cursor = r.aux;
    }
}

/*
 * The ranges a rebuild asks for at once: the manifest lists where each page starts, and
 * a request for [start i, start i+1) answers exactly that page; a range cut short names
 * where to go on, and a log range (lo, hi) holds the entries strictly between.
 */
static void test_rebuild_ranges_follow_the_manifest_pages(void **state)
{
    struct fixture *f = *state;
    uint64_t keys[20], starts[8], p[3];
    unsigned char rows[20 * ROWB];
    float g[3] = {1, 2, 3};
    struct flr_msg m, r;
    json_t *doc;
    size_t npages, rec = (2 + W) * 8;

    for (int i = 0; i < 20; i++)
        keys[i] = flr_key(ADAM, (uint64_t)(3 * i + 1));
    adam_rows(rows, keys, 20);
    assert_int_equal(flr_copies_put_rows(f->cs, 0, ADAM, keys, 20, rows, 11, 0, NULL), 0);
    f->ctx.page_bytes = 6 * (8 + ROWB);

    request(&m, FLR_MSG_MANIFEST_REQ, 0);
    exchange(f, &m, &r);
    doc = json_loadb(r.text, r.text_len, 0, NULL);
    npages = (size_t)json_integer_value(json_object_get(doc, "pages"));
    json_decref(doc);
    assert_int_equal(npages, 4); /* 6 + 6 + 6 + 2 */
    assert_int_equal(r.extra_len, rec + npages * 16);
    for (size_t i = 0; i < npages; i++) {
        assert_int_equal(flr_load_u64((const unsigned char *)r.extra + rec + 16 * i), ADAM);
        starts[i] = flr_load_u64((const unsigned char *)r.extra + rec + 16 * i + 8);
        assert_int_equal(starts[i], keys[6 * i]);
    }
    for (size_t i = 0; i < npages; i++) {
        request(&m, FLR_MSG_REBUILD_REQ, 0);
        m.table = ADAM;
        m.aux = starts[i];
        m.seq = i + 1 < npages ? starts[i + 1] : 0;
        exchange(f, &m, &r);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.nkeys, i + 1 < npages ? 6 : 2);
        assert_int_equal(flr_load_u64(r.keys), keys[6 * i]);
        assert_true(r.aux == UINT64_MAX);
    }
    /* A range that holds more than a page: cut, with the cursor to go on from. */
    request(&m, FLR_MSG_REBUILD_REQ, 0);
    m.table = ADAM;
    m.aux = 0;
    m.seq = keys[9];
    exchange(f, &m, &r);
    assert_int_equal(r.nkeys, 6);
    assert_int_equal(r.aux, keys[6]);
    m.aux = r.aux;
    exchange(f, &m, &r);
    assert_int_equal(r.nkeys, 3); /* keys 6, 7, 8: the end is exclusive */
    assert_true(r.aux == UINT64_MAX);

    for (int i = 0; i < 3; i++)
        assert_int_equal(flr_copies_log_append(f->cs, 0, i, ADAM, keys, 1, g, &p[i]), 0);
    request(&m, FLR_MSG_REBUILD_REQ, 0);
    m.table = FLR_REBUILD_LOG;
    m.aux = p[1] - 1;
    m.seq = p[1] + 1;
    exchange(f, &m, &r);
    assert_int_equal(r.seq, p[1]);
    assert_true(r.aux == UINT64_MAX); /* p[2] is outside the range */
    m.aux = p[0];
    m.seq = 0;
    exchange(f, &m, &r);
    assert_int_equal(r.seq, p[1]);
    assert_int_equal(r.aux, p[1]);
    m.aux = p[2];
    exchange(f, &m, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nkeys, 0);
    assert_true(r.aux == UINT64_MAX);
}

/*
 * A logged push this worker's own copies contain (BSP: their record's closed clock is past
 * the push's) goes as its header only, once a manifest has described those records; a
 * push the copies do not contain, or one touching a key without a copy, goes whole.
 */
static void test_rebuild_log_leaves_out_what_the_copies_contain(void **state)
{
    struct fixture *f = *state;
    uint64_t k = flr_key(ADAM, 7), k2 = flr_key(ADAM, 8), both[2] = {k, k2}, p[3];
    unsigned char rows[ROWB];
    float g[6] = {1, 2, 3, 4, 5, 6};
    struct flr_msg m, r;

    adam_rows(rows, &k, 1);
    assert_int_equal(flr_copies_put_rows(f->cs, 0, ADAM, &k, 1, rows, 20, 5, NULL), 0);
    assert_int_equal(flr_copies_log_append(f->cs, 0, 4, ADAM, &k, 1, g, &p[0]), 0);
    assert_int_equal(flr_copies_log_append(f->cs, 0, 5, ADAM, &k, 1, g, &p[1]), 0);
    assert_int_equal(flr_copies_log_append(f->cs, 0, 3, ADAM, both, 2, g, &p[2]), 0);

    request(&m, FLR_MSG_REBUILD_REQ, 0);
    m.table = FLR_REBUILD_LOG;
    m.aux = p[0] - 1;
    exchange(f, &m, &r); /* no manifest yet: nothing is known to be contained */
    assert_int_equal(r.seq, p[0]);
    assert_int_equal(r.nkeys, 1);

    request(&m, FLR_MSG_MANIFEST_REQ, 0);
    exchange(f, &m, &r);
    request(&m, FLR_MSG_REBUILD_REQ, 0);
    m.table = FLR_REBUILD_LOG;
    m.aux = p[0] - 1;
    exchange(f, &m, &r); /* clock 4 < C 5: contained */
    assert_int_equal(r.status, 0);
    assert_int_equal(r.seq, p[0]);
    assert_int_equal(r.nkeys, 0);
    assert_int_equal(r.vals_len, 0);
    assert_int_equal(r.aux, p[0]);
    m.aux = p[0];
    exchange(f, &m, &r); /* clock 5: not contained */
    assert_int_equal(r.seq, p[1]);
    assert_int_equal(r.nkeys, 1);
    m.aux = p[1];
    exchange(f, &m, &r); /* k2 has no copy */
    assert_int_equal(r.seq, p[2]);
    assert_int_equal(r.nkeys, 2);
    assert_true(r.aux == UINT64_MAX);

    /* A copy that arrives after the manifest is not the server's: no longer contained. */
    adam_rows(rows, &k, 1);
    assert_int_equal(flr_copies_put_rows(f->cs, 0, ADAM, &k, 1, rows, 30, 9, NULL), 0);
    m.aux = p[0] - 1;
    exchange(f, &m, &r);
    assert_int_equal(r.seq, p[0]);
    assert_int_equal(r.nkeys, 1);
}

static void test_endpoint_answers_over_a_socket(void **state)
{
    struct fixture *f = *state;
    struct flr_keeper *k;
    struct flr_conn *conn;
    struct flr_proto_limits lim;
    struct flr_msg m, r;
    nng_msg *req, *rep;
    char why[256];

    flr_proto_limits_default(&lim);
    assert_int_equal(
        flr_keeper_open(&k, "tcp://127.0.0.1:0", &f->ctx, (size_t)1 << 20, why, sizeof(why)), 0);
    assert_int_not_equal(strcmp(flr_keeper_url(k), "tcp://127.0.0.1:0"), 0);
    assert_int_equal(flr_conn_open(&conn, flr_keeper_url(k), (size_t)1 << 20, why, sizeof(why)), 0);

    request(&m, FLR_MSG_MANIFEST_REQ, 1);
    assert_int_equal(flr_msg_to_nng(&req, &m, NULL), 0);
    assert_int_equal(flr_call_sync(conn, req, 5000, &rep), 0);
    assert_int_equal(
        flr_msg_decode(&r, nng_msg_body(rep), nng_msg_len(rep), &lim, &f->zone, why, sizeof(why)),
        0);
    assert_int_equal(r.type, FLR_MSG_MANIFEST);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.request_id, 42);
    nng_msg_free(rep);

    /* Garbage gets an answer that says why, not a crash. */
    assert_int_equal(nng_msg_alloc(&req, 0), 0);
    assert_int_equal(nng_msg_append(req, "\x93\x01\x02\x03", 4), 0);
    assert_int_equal(flr_call_sync(conn, req, 5000, &rep), 0);
    assert_int_equal(
        flr_msg_decode(&r, nng_msg_body(rep), nng_msg_len(rep), &lim, &f->zone, why, sizeof(why)),
        0);
    assert_int_equal(r.type, FLR_MSG_ERROR_REPLY);
    assert_int_equal(r.status, FLR_EBAD_REQUEST);
    assert_true(r.reason_len > 0);
    nng_msg_free(rep);

    /* A request a worker does not serve. */
    request(&m, FLR_MSG_PULL, 0);
    assert_int_equal(flr_msg_to_nng(&req, &m, NULL), 0);
    assert_int_equal(flr_call_sync(conn, req, 5000, &rep), 0);
    assert_int_equal(
        flr_msg_decode(&r, nng_msg_body(rep), nng_msg_len(rep), &lim, &f->zone, why, sizeof(why)),
        0);
    assert_int_equal(r.type, FLR_MSG_PULL_REPLY);
    assert_int_equal(r.status, FLR_EBAD_REQUEST);
    nng_msg_free(rep);

    flr_conn_close(conn);
    flr_keeper_close(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replicate_stores_qualified_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replicate_refuses_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_reports_the_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_pages_through_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_streams_the_log_one_entry_each, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_ranges_follow_the_manifest_pages, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_log_leaves_out_what_the_copies_contain, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_endpoint_answers_over_a_socket, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
