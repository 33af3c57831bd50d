/*
 * test_proto.c - unit tests for the wire codec (common/proto.c).
 *
 * Messages under test are built two ways: with flr_msg_encode_into(), and with an
 * independent reference packer (struct item below) that writes any sequence of msgpack
 * objects, which is how the malformed corpus is made.  Every buffer handed to the decoder
 * is a heap copy of exactly the message's length so that valgrind sees any read past it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "err.h"
#include "proto.h"
#include "util.h"

#define WHYLEN    256
#define MAX_ITEMS 32

static msgpack_zone *zone;

static const int all_types[] = {
#define T_TYPE(name, code, fields) FLR_MSG_##name,
    FLR_MSG_TYPES(T_TYPE)
#undef T_TYPE
};

/* The body field codes proto.h documents. */
static const char known_codes[] = "tcsrpqkvjix";

static int has(const char *fields, char code)
{
    return strchr(fields, code) != NULL;
}

/* Array index of a body field of a type (the header takes 0..6). */
static unsigned idx_of(int type, char code)
{
    const char *f = flr_msg_fields(type);
    const char *c = strchr(f, code);

    assert_non_null(c);
    return (unsigned)(7 + (c - f));
}

static void *dup_exact(const void *p, size_t len)
{
    void *q = malloc(len ? len : 1);

    assert_non_null(q);
    if (len)
        memcpy(q, p, len);
    return q;
}

/* ---- reference packer ----------------------------------------------------------------- */

enum item_kind { I_UINT, I_INT, I_STR, I_BIN, I_NIL, I_BOOL, I_FLOAT, I_EXT, I_RAW };

struct item {
    enum item_kind kind;
    uint64_t u;
    int64_t i;
    const void *p;
    size_t len;
};

static struct item it_uint(uint64_t u)
{
    return (struct item){.kind = I_UINT, .u = u};
}

static struct item it_int(int64_t i)
{
    return (struct item){.kind = I_INT, .i = i};
}

static struct item it_str(const void *p, size_t len)
{
    return (struct item){.kind = I_STR, .p = p, .len = len};
}

static struct item it_bin(const void *p, size_t len)
{
    return (struct item){.kind = I_BIN, .p = p, .len = len};
}

static struct item it_kind(enum item_kind k)
{
    return (struct item){.kind = k};
}

/* Bytes written as they are, to make headers msgpack-c would not produce. */
static struct item it_raw(const void *p, size_t len)
{
    return (struct item){.kind = I_RAW, .p = p, .len = len};
}

static void pack_item(msgpack_packer *pk, msgpack_sbuffer *sb, const struct item *it)
{
    static const char zeros[4];

    switch (it->kind) {
    case I_UINT:
        msgpack_pack_uint64(pk, it->u);
        break;
    case I_INT:
        msgpack_pack_int64(pk, it->i);
        break;
    case I_STR:
        msgpack_pack_str_with_body(pk, it->p, it->len);
        break;
    case I_BIN:
        msgpack_pack_bin_with_body(pk, it->p, it->len);
        break;
    case I_NIL:
        msgpack_pack_nil(pk);
        break;
    case I_BOOL:
        msgpack_pack_true(pk);
        break;
    case I_FLOAT:
        msgpack_pack_double(pk, 1.5);
        break;
    case I_EXT:
        msgpack_pack_ext_with_body(pk, zeros, sizeof(zeros), 1);
        break;
    case I_RAW:
        msgpack_sbuffer_write(sb, it->p, it->len);
        break;
    }
}

/* Packs an array header claiming array_n elements followed by the n items. */
static void pack_items(msgpack_sbuffer *sb, const struct item *it, size_t n, size_t array_n)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, array_n);
    for (size_t i = 0; i < n; i++)
        pack_item(&pk, sb, &it[i]);
}

/* The items of a message, written from the protocol's description rather than from the
 * codec's tables. */
static size_t msg_items(const struct flr_msg *m, struct item *it)
{
    size_t n = 0;

    it[n++] = it_str("FLR1", 4);
    it[n++] = it_uint((uint64_t)m->type);
    it[n++] = it_str(m->job, m->job_len);
    it[n++] = it_uint(m->sender);
    it[n++] = it_uint(m->shard);
    it[n++] = it_uint(m->shard_epoch);
    it[n++] = it_uint(m->request_id);
    for (const char *c = flr_msg_fields(m->type); *c; c++) {
        switch (*c) {
        case 't':
            it[n++] = it_uint(m->table);
            break;
        case 'c':
            it[n++] = it_int(m->clock);
            break;
        case 's':
            it[n++] = it_int(m->status);
            break;
        case 'r':
            it[n++] = it_str(m->reason, m->reason_len);
            break;
        case 'p':
            it[n++] = it_uint(m->stamp);
            break;
        case 'q':
            it[n++] = it_uint(m->aux);
            break;
        case 'k':
            it[n++] = it_bin(m->keys, (size_t)m->nkeys * 8);
            break;
        case 'v':
            it[n++] = it_bin(m->vals, m->vals_len);
            break;
        case 'j':
            it[n++] = it_str(m->text, m->text_len);
            break;
        case 'i':
            it[n++] = it_uint(m->seq);
            break;
        case 'x':
            it[n++] = it_bin(m->extra, m->extra_len);
            break;
        default:
            fail_msg("unknown field code '%c'", *c);
        }
    }
    return n;
}

/* ---- messages ------------------------------------------------------------------------- */

static const uint64_t base_keys[2] = {10, 20};
static const float base_vals[6] = {1, 2, 3, 4, 5, 6};

/* A valid message of the type, every field set, two keys of width 3. */
static struct flr_msg base_msg(int type)
{
    struct flr_msg m = {0};

    m.type = type;
    m.job = "job-a";
    m.job_len = 5;
    m.sender = 7;
    m.shard = 3;
    m.shard_epoch = 11;
    m.request_id = 99;
    m.table = 2;
    m.clock = 42;
    m.status = FLR_EWRONG_EPOCH;
    m.reason = "stale";
    m.reason_len = 5;
    m.stamp = 1000;
    m.aux = 5;
    m.keys = base_keys;
    m.nkeys = 2;
    m.vals = base_vals;
    m.vals_len = sizeof(base_vals);
    m.text = "{\"a\":1}";
    m.text_len = 7;
    return m;
}

/* Heap blobs for a big or random message. */
struct blobs {
    uint64_t *keys;
    float *vals;
    char *text;
};

static void blobs_free(struct blobs *b)
{
    free(b->keys);
    free(b->vals);
    free(b->text);
    memset(b, 0, sizeof(*b));
}

/* Gives m nkeys sorted random keys, nkeys * width random values and a text of text_len. */
static void blobs_fill(struct flr_msg *m, struct blobs *b, uint32_t nkeys, uint32_t width,
                       uint32_t text_len, struct flr_rng *r)
{
    uint64_t k = 0;
    size_t nvals = (size_t)nkeys * width;

    b->keys = malloc(nkeys ? nkeys * sizeof(uint64_t) : 1);
    b->vals = malloc(nvals ? nvals * sizeof(float) : 1);
    b->text = malloc(text_len ? text_len : 1);
    assert_non_null(b->keys);
    assert_non_null(b->vals);
    assert_non_null(b->text);
    for (uint32_t i = 0; i < nkeys; i++) {
        k += 1 + flr_rng_next(r) % 1000;
        b->keys[i] = k;
    }
    for (size_t i = 0; i < nvals; i++)
        b->vals[i] = (float)flr_rng_normal(r);
    for (uint32_t i = 0; i < text_len; i++)
        b->text[i] = (char)('a' + flr_rng_next(r) % 26);
    m->keys = b->keys;
    m->nkeys = nkeys;
    m->vals = b->vals;
    m->vals_len = nvals * sizeof(float);
    m->text = b->text;
    m->text_len = text_len;
}

static int decode_lim(struct flr_msg *m, const void *buf, size_t len,
                      const struct flr_proto_limits *lim, char *why)
{
    void *copy = dup_exact(buf, len);
    int rv = flr_msg_decode(m, copy, len, lim, zone, why, WHYLEN);

    /* Decoded pointers point into copy; callers that need them decode themselves. */
    free(copy);
    return rv;
}

static int decode_items(struct flr_msg *m, const struct item *it, size_t n, size_t array_n,
                        const struct flr_proto_limits *lim, char *why)
{
    msgpack_sbuffer sb;
    int rv;

    pack_items(&sb, it, n, array_n);
    rv = decode_lim(m, sb.data, sb.size, lim, why);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

static void default_limits(struct flr_proto_limits *lim)
{
    flr_proto_limits_default(lim);
}

/* Encodes m into a fresh buffer of exactly its encoded size. */
static char *encode_alloc(const struct flr_msg *m, size_t *len)
{
    size_t size = flr_msg_encoded_size(m);
    char *buf = malloc(size);
    void *vals_out = NULL;

    assert_non_null(buf);
    assert_int_equal(flr_msg_encode_into(m, buf, &vals_out), size);
    *len = size;
    return buf;
}

static void assert_within(const void *p, size_t n, const void *buf, size_t len)
{
    const char *c = p, *b = buf;

    assert_non_null(p);
    assert_true(c >= b && c <= b + len && n <= (size_t)(b + len - c));
}

static void assert_bytes(const void *got, uint64_t got_len, const void *want, uint64_t want_len)
{
    assert_int_equal(got_len, want_len);
    if (want_len)
        assert_memory_equal(got, want, want_len);
}

/* Checks that out, decoded from buf, carries what in had for the fields of its type and
 * nothing else. */
static void assert_decoded(const struct flr_msg *in, const struct flr_msg *out, const void *buf,
                           size_t len)
{
    const char *f = flr_msg_fields(in->type);

    assert_int_equal(out->type, in->type);
    assert_within(out->job, out->job_len, buf, len);
    assert_bytes(out->job, out->job_len, in->job, in->job_len);
    assert_int_equal(out->sender, in->sender);
    assert_int_equal(out->shard, in->shard);
    assert_int_equal(out->shard_epoch, in->shard_epoch);
    assert_int_equal(out->request_id, in->request_id);

    assert_int_equal(out->table, has(f, 't') ? in->table : 0);
    assert_true(out->clock == (has(f, 'c') ? in->clock : 0));
    assert_true(out->status == (has(f, 's') ? in->status : 0));
    assert_int_equal(out->stamp, has(f, 'p') ? in->stamp : 0);
    assert_int_equal(out->aux, has(f, 'q') ? in->aux : 0);
    if (has(f, 'r')) {
        assert_within(out->reason, out->reason_len, buf, len);
        assert_bytes(out->reason, out->reason_len, in->reason, in->reason_len);
    } else {
        assert_null(out->reason);
        assert_int_equal(out->reason_len, 0);
    }
    if (has(f, 'k')) {
        assert_within(out->keys, (size_t)out->nkeys * 8, buf, len);
        assert_bytes(out->keys, (uint64_t)out->nkeys * 8, in->keys, (uint64_t)in->nkeys * 8);
    } else {
        assert_null(out->keys);
        assert_int_equal(out->nkeys, 0);
    }
    if (has(f, 'v')) {
        assert_within(out->vals, out->vals_len, buf, len);
        assert_bytes(out->vals, out->vals_len, in->vals, in->vals_len);
    } else {
        assert_null(out->vals);
        assert_int_equal(out->vals_len, 0);
    }
    if (has(f, 'j')) {
        assert_within(out->text, out->text_len, buf, len);
        assert_bytes(out->text, out->text_len, in->text, in->text_len);
    } else {
        assert_null(out->text);
        assert_int_equal(out->text_len, 0);
    }
}

/* After a failed decode nothing but the addressing may be set. */
static void assert_body_empty(const struct flr_msg *m)
{
    assert_null(m->job);
    assert_int_equal(m->job_len, 0);
    assert_int_equal(m->table, 0);
    assert_true(m->clock == 0);
    assert_true(m->status == 0);
    assert_null(m->reason);
    assert_int_equal(m->reason_len, 0);
    assert_int_equal(m->stamp, 0);
    assert_int_equal(m->aux, 0);
    assert_null(m->keys);
    assert_int_equal(m->nkeys, 0);
    assert_null(m->vals);
    assert_int_equal(m->vals_len, 0);
    assert_null(m->text);
    assert_int_equal(m->text_len, 0);
}

/* Encodes m, decodes the encoding and compares. */
static void round_trip(const struct flr_msg *m)
{
    struct flr_proto_limits lim;
    struct flr_msg out;
    char why[WHYLEN];
    size_t len;
    char *buf = encode_alloc(m, &len);
    int rv;

    default_limits(&lim);
    rv = flr_msg_decode(&out, buf, len, &lim, zone, why, sizeof(why));
    if (rv != 0)
        fail_msg("%s: decode failed: %s (%s)", flr_msg_type_name(m->type), flr_errname(rv), why);
    assert_decoded(m, &out, buf, len);
    free(buf);
}

/* Expects the decoder to reject the items with rv and a reason containing want_why. */
static void expect_reject(const struct item *it, size_t n, size_t array_n,
                          const struct flr_proto_limits *lim, int want_rv, const char *want_why,
                          const char *what)
{
    struct flr_proto_limits def;
    struct flr_msg m;
    char why[WHYLEN];
    int rv;

    if (!lim) {
        default_limits(&def);
        lim = &def;
    }
    rv = decode_items(&m, it, n, array_n, lim, why);
    if (rv != want_rv)
        fail_msg("%s: got %s (%s), wanted %s", what, flr_errname(rv), rv ? why : "",
                 flr_errname(want_rv));
    if (want_why && !strstr(why, want_why))
        fail_msg("%s: reason \"%s\" lacks \"%s\"", what, why, want_why);
    assert_non_null(memchr(why, '\0', sizeof(why)));
    assert_true(why[0] != '\0');
    assert_null(strchr(why, '\n'));
    assert_body_empty(&m);
}

static void expect_accept(const struct item *it, size_t n, const struct flr_proto_limits *lim,
                          const char *what)
{
    struct flr_proto_limits def;
    struct flr_msg m;
    char why[WHYLEN];
    int rv;

    if (!lim) {
        default_limits(&def);
        lim = &def;
    }
    rv = decode_items(&m, it, n, n, lim, why);
    if (rv != 0)
        fail_msg("%s: rejected: %s (%s)", what, flr_errname(rv), why);
}

/* ---- fixtures ------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    return zone ? 0 : -1;
}

static int group_teardown(void **state)
{
    msgpack_zone_free(zone);
    zone = NULL;
    return 0;
}

/* ---- tables --------------------------------------------------------------------------- */

static void test_limits_default_are_256mib_and_16mi_keys(void **state)
{
    struct flr_proto_limits lim;

    memset(&lim, 0xff, sizeof(lim));
    flr_proto_limits_default(&lim);
    assert_int_equal(lim.max_size, 256u << 20);
    assert_int_equal(lim.max_keys, 16u << 20);
}

static void test_type_names_and_fields_follow_the_table(void **state)
{
    assert_string_equal(flr_msg_type_name(FLR_MSG_PULL), "PULL");
    assert_string_equal(flr_msg_type_name(FLR_MSG_ERROR_REPLY), "ERROR_REPLY");
    assert_string_equal(flr_msg_fields(FLR_MSG_PUSH), "tckvi");
    assert_string_equal(flr_msg_fields(FLR_MSG_STATUS), "");
    for (size_t i = 0; i < FLR_ARRAY_LEN(all_types); i++) {
        assert_string_not_equal(flr_msg_type_name(all_types[i]), "UNKNOWN");
        assert_non_null(flr_msg_fields(all_types[i]));
    }
    assert_string_equal(flr_msg_type_name(FLR_MSG_NONE), "UNKNOWN");
    assert_string_equal(flr_msg_type_name(-1), "UNKNOWN");
    assert_string_equal(flr_msg_type_name(FLR_MSG_COUNT_), "UNKNOWN");
    assert_string_equal(flr_msg_type_name(1000000), "UNKNOWN");
    assert_null(flr_msg_fields(FLR_MSG_NONE));
    assert_null(flr_msg_fields(-7));
    assert_null(flr_msg_fields(FLR_MSG_COUNT_));
}

static void test_field_strings_use_known_codes_once(void **state)
{
    for (size_t i = 0; i < FLR_ARRAY_LEN(all_types); i++) {
        const char *f = flr_msg_fields(all_types[i]);

        for (const char *c = f; *c; c++) {
            assert_non_null(strchr(known_codes, *c));
            assert_ptr_equal(strchr(f, *c), c);
        }
    }
}

/* ---- round trips ---------------------------------------------------------------------- */

static void test_round_trip_every_type(void **state)
{
    for (size_t i = 0; i < FLR_ARRAY_LEN(all_types); i++) {
        struct flr_msg m = base_msg(all_types[i]);

        round_trip(&m);
    }
}

static void test_round_trip_empty_blobs_and_strings(void **state)
{
    for (size_t i = 0; i < FLR_ARRAY_LEN(all_types); i++) {
        struct flr_msg m = base_msg(all_types[i]);

        m.job = NULL;
        m.job_len = 0;
        m.reason = NULL;
        m.reason_len = 0;
        m.keys = NULL;
        m.nkeys = 0;
        m.vals = NULL;
        m.vals_len = 0;
        m.text = "";
        m.text_len = 0;
        /* vals == NULL takes the zero-copy path, which with no bytes has nothing to fill. */
        round_trip(&m);
        m.vals = base_vals;
        round_trip(&m);
    }
}

static void test_round_trip_big_blobs(void **state)
{
    struct flr_rng r;

    flr_rng_seed(&r, 1);
    for (size_t i = 0; i < FLR_ARRAY_LEN(all_types); i++) {
        struct flr_msg m = base_msg(all_types[i]);
        struct blobs b;

        /* 200k keys of width 5: a 1.6 MB key blob and a 4 MB value blob, both with
         * 32-bit msgpack length headers; a text of 70000 bytes, also a str32. */
        blobs_fill(&m, &b, 200000, 5, 70000, &r);
        round_trip(&m);
        blobs_free(&b);
    }
}

static void test_round_trip_extreme_integers_and_longest_strings(void **state)
{
    char job[FLR_JOB_MAX], reason[FLR_REASON_MAX];

    memset(job, 'j', sizeof(job));
    memset(reason, 'r', sizeof(reason));
    for (size_t i = 0; i < FLR_ARRAY_LEN(all_types); i++) {
        struct flr_msg m = base_msg(all_types[i]);

        m.job = job;
        m.job_len = sizeof(job);
        m.reason = reason;
        m.reason_len = sizeof(reason);
        m.sender = UINT32_MAX;
        m.shard = UINT32_MAX;
        m.shard_epoch = UINT64_MAX;
        m.request_id = UINT64_MAX;
        m.table = UINT32_MAX;
        m.clock = INT64_MAX;
        m.status = INT32_MAX;
        m.stamp = UINT64_MAX;
        m.aux = UINT64_MAX;
        round_trip(&m);
        m.clock = INT64_MIN;
        m.status = INT32_MIN;
        m.sender = 0;
        m.shard_epoch = 0;
        round_trip(&m);
        m.clock = -1;
        m.status = -1;
        round_trip(&m);
    }
}

static void test_decoded_pointers_point_into_the_buffer(void **state)
{
    struct flr_msg m = base_msg(FLR_MSG_PUSH), out;
    struct flr_proto_limits lim;
    size_t len;
    char *buf = encode_alloc(&m, &len);

    default_limits(&lim);
    assert_int_equal(flr_msg_decode(&out, buf, len, &lim, zone, NULL, 0), 0);
    /* Zero-copy: the blobs are the encoded bytes themselves, at their place in order
     * (the values, then the one-byte seq 0). */
    assert_ptr_equal(out.vals, buf + len - 1 - sizeof(base_vals));
    /* Two keys, then the values' two-byte bin8 header. */
    assert_ptr_equal((const char *)out.keys + 2 * 8 + 2, out.vals);
    assert_within(out.job, out.job_len, buf, len);
    free(buf);
}

/* ---- encoding ------------------------------------------------------------------------- */

static void test_encode_golden_bytes(void **state)
{
    static const unsigned char status[] = {0x97, 0xa4, 'F',  'L',  'R',  '1', 0x07,
                                           0xa1, 'j',  0x01, 0x02, 0x03, 0x04};
    static const unsigned char clock[] = {0x99, 0xa4, 'F',  'L',  'R',  '1',  0x05, 0xa0, 0xcc,
                                          0x80, 0xcd, 0x01, 0x00, 0x00, 0x00, 0xff, 0x00};
    struct flr_msg m = {0};
    unsigned char buf[64];

    m.type = FLR_MSG_STATUS;
    m.job = "j";
    m.job_len = 1;
    m.sender = 1;
    m.shard = 2;
    m.shard_epoch = 3;
    m.request_id = 4;
    assert_int_equal(flr_msg_encoded_size(&m), sizeof(status));
    assert_int_equal(flr_msg_encode_into(&m, buf, NULL), sizeof(status));
    assert_memory_equal(buf, status, sizeof(status));

    memset(&m, 0, sizeof(m));
    m.type = FLR_MSG_CLOCK;
    m.sender = 128;
    m.shard = 256;
    m.clock = -1;
    assert_int_equal(flr_msg_encoded_size(&m), sizeof(clock));
    assert_int_equal(flr_msg_encode_into(&m, buf, NULL), sizeof(clock));
    assert_memory_equal(buf, clock, sizeof(clock));
}

static void test_encode_matches_reference_packing(void **state)
{
    struct flr_rng r;

    flr_rng_seed(&r, 2);
    for (size_t i = 0; i < FLR_ARRAY_LEN(all_types); i++) {
        struct flr_msg m = base_msg(all_types[i]);
        struct item it[MAX_ITEMS];
        msgpack_sbuffer sb;
        struct blobs b;
        size_t n, len;
        char *buf;

        blobs_fill(&m, &b, 300, 2, 40, &r);
        n = msg_items(&m, it);
        pack_items(&sb, it, n, n);
        buf = encode_alloc(&m, &len);
        assert_int_equal(len, sb.size);
        assert_memory_equal(buf, sb.data, len);
        free(buf);
        msgpack_sbuffer_destroy(&sb);
        blobs_free(&b);
    }
}

/* Encodes m into a buffer with a guard after the encoded size. */
static void check_size_exact(const struct flr_msg *m)
{
    enum { GUARD = 32 };
    size_t size = flr_msg_encoded_size(m);
    unsigned char *buf = malloc(size + GUARD);
    struct flr_proto_limits lim;
    struct flr_msg out;
    char why[WHYLEN];

    assert_non_null(buf);
    memset(buf, 0xab, size + GUARD);
    assert_int_equal(flr_msg_encode_into(m, buf, NULL), size);
    for (size_t i = 0; i < GUARD; i++)
        assert_int_equal(buf[size + i], 0xab);
    default_limits(&lim);
    if (flr_msg_decode(&out, buf, size, &lim, zone, why, sizeof(why)) != 0)
        fail_msg("%s of %zu bytes: %s", flr_msg_type_name(m->type), size, why);
    assert_decoded(m, &out, buf, size);
    free(buf);
}

static void test_encoded_size_is_exact_at_msgpack_boundaries(void **state)
{
    static const uint64_t uints[] = {
        0, 1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, UINT64_C(1) << 32, ~0ULL, 1ULL << 63};
    static const int64_t ints[] = {0,    -1,     -32,       -33,       -128,
                                   -129, -32768, -32769,    INT32_MIN, (int64_t)INT32_MIN - 1,
                                   127,  128,    INT32_MAX, INT64_MAX, INT64_MIN};
    static const uint32_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
    char *text = calloc(1, 70000);
    float *vals = calloc(70000, sizeof(float));
    uint64_t *keys = calloc(70000, sizeof(uint64_t));

    assert_non_null(text);
    assert_non_null(vals);
    assert_non_null(keys);
    for (uint32_t i = 0; i < 70000; i++)
        keys[i] = i;
    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct flr_msg m = base_msg(all_types[t]);
        const char *f = flr_msg_fields(m.type);

        for (size_t i = 0; i < FLR_ARRAY_LEN(uints); i++) {
            m.shard_epoch = m.request_id = m.stamp = m.aux = uints[i];
            m.sender = m.shard = m.table = (uint32_t)uints[i];
            check_size_exact(&m);
        }
        for (size_t i = 0; i < FLR_ARRAY_LEN(ints); i++) {
            m.clock = ints[i];
            m.status = (int32_t)ints[i];
            check_size_exact(&m);
        }
        for (size_t i = 0; i < FLR_ARRAY_LEN(lens); i++) {
            m.job_len = lens[i] <= FLR_JOB_MAX ? lens[i] : FLR_JOB_MAX;
            m.job = text;
            m.reason_len = lens[i] <= FLR_REASON_MAX ? lens[i] : FLR_REASON_MAX;
            m.reason = text;
            m.text = text;
            m.text_len = lens[i];
            /* Blob byte counts equal to the boundary lengths (rounded to whole keys and
             * rows), so bin8, bin16 and bin32 headers all occur. */
            m.nkeys = lens[i] / 8;
            m.keys = keys;
            m.vals = vals;
            m.vals_len = has(f, 'k') ? (uint64_t)m.nkeys * 4 : lens[i] / 4 * 4;
            check_size_exact(&m);
        }
    }
    free(text);
    free(vals);
    free(keys);
}

static void test_zero_copy_reserves_the_values_region(void **state)
{
    struct flr_rng r;

    flr_rng_seed(&r, 3);
    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct flr_msg m = base_msg(all_types[t]), out;
        struct flr_proto_limits lim;
        struct blobs b;
        size_t size, len;
        char *buf, *ref;
        void *vals_out = (void *)&vals_out;

        if (!has(flr_msg_fields(m.type), 'v'))
            continue;
        blobs_fill(&m, &b, 1000, 4, 10, &r);
        ref = encode_alloc(&m, &len);

        m.vals = NULL;
        size = flr_msg_encoded_size(&m);
        assert_int_equal(size, len);
        buf = malloc(size);
        assert_non_null(buf);
        memset(buf, 0, size);
        assert_int_equal(flr_msg_encode_into(&m, buf, &vals_out), size);
        assert_non_null(vals_out);
        assert_within(vals_out, m.vals_len, buf, size);
        memcpy(vals_out, b.vals, m.vals_len);
        assert_memory_equal(buf, ref, size);

        default_limits(&lim);
        assert_int_equal(flr_msg_decode(&out, buf, size, &lim, zone, NULL, 0), 0);
        assert_ptr_equal(out.vals, vals_out);
        m.vals = b.vals;
        assert_decoded(&m, &out, buf, size);
        free(buf);
        free(ref);
        blobs_free(&b);
    }
}

static void test_zero_copy_pointer_is_null_when_values_are_given_or_absent(void **state)
{
    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct flr_msg m = base_msg(all_types[t]);
        char buf[512];
        void *vals_out = buf;

        assert_true(flr_msg_encoded_size(&m) <= sizeof(buf));
        flr_msg_encode_into(&m, buf, &vals_out);
        assert_null(vals_out);
        if (!has(flr_msg_fields(m.type), 'v')) {
            m.vals = NULL;
            vals_out = buf;
            flr_msg_encode_into(&m, buf, &vals_out);
            assert_null(vals_out);
        }
    }
}

/* ---- malformed corpus ----------------------------------------------------------------- */

/* The items of the base message of a type; returns their count. */
static size_t base_items(int type, struct item *it)
{
    struct flr_msg m = base_msg(type);

    return msg_items(&m, it);
}

static void test_base_corpus_message_is_valid(void **state)
{
    /* Guards the corpus below: each case differs from an accepted message in one way. */
    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct item it[MAX_ITEMS];
        size_t n = base_items(all_types[t], it);

        expect_accept(it, n, NULL, flr_msg_type_name(all_types[t]));
    }
}

static void test_reject_empty_input(void **state)
{
    struct flr_proto_limits lim;
    struct flr_msg m;
    char why[WHYLEN];

    default_limits(&lim);
    assert_int_equal(flr_msg_decode(&m, "", 0, &lim, zone, why, sizeof(why)), FLR_EBAD_REQUEST);
    assert_string_equal(why, "message is empty");
    assert_int_equal(flr_msg_decode(&m, NULL, 0, &lim, zone, why, sizeof(why)), FLR_EBAD_REQUEST);
}

static void test_reject_message_that_is_not_an_array(void **state)
{
    static const unsigned char map[] = {0x81, 0x01, 0x02};
    static const unsigned char num[] = {0x07};
    static const unsigned char str[] = {0xa4, 'F', 'L', 'R', '1'};
    struct flr_proto_limits lim;
    struct flr_msg m;
    char why[WHYLEN];

    default_limits(&lim);
    assert_int_equal(decode_lim(&m, map, sizeof(map), &lim, why), FLR_EBAD_REQUEST);
    assert_non_null(strstr(why, "not a msgpack array"));
    assert_int_equal(decode_lim(&m, num, sizeof(num), &lim, why), FLR_EBAD_REQUEST);
    assert_int_equal(decode_lim(&m, str, sizeof(str), &lim, why), FLR_EBAD_REQUEST);
}

static void test_reject_wrong_magic(void **state)
{
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PULL, it);

    it[0] = it_str("FLR2", 4);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 0 (magic)", "FLR2");
    it[0] = it_str("FLR", 3);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 0 (magic)", "FLR");
    it[0] = it_str("FLR1x", 5);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 0 (magic)", "FLR1x");
    it[0] = it_bin("FLR1", 4);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 0 (magic): expected str, got bin",
                  "magic as bin");
}

static void test_reject_unknown_type(void **state)
{
    static const uint64_t bad[] = {0, FLR_MSG_COUNT_, 1000, UINT64_C(1) << 32, UINT64_C(1) << 63};
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_STATUS, it);

    for (size_t i = 0; i < FLR_ARRAY_LEN(bad); i++) {
        it[1] = it_uint(bad[i]);
        expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "unknown message type", "bad type");
    }
    it[1] = it_int(-1);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST,
                  "field 1 (type): expected uint, got negative int", "negative type");
    it[1] = it_str("PULL", 4);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 1 (type): expected uint, got str",
                  "type as str");
}

static void test_reject_wrong_array_length(void **state)
{
    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct item it[MAX_ITEMS];
        size_t n = base_items(all_types[t], it);
        const char *name = flr_msg_type_name(all_types[t]);

        /* One element missing, one extra, and a header too short to hold a type. */
        expect_reject(it, n - 1, n - 1, NULL, FLR_EBAD_REQUEST, "elements", name);
        it[n] = it_uint(0);
        expect_reject(it, n + 1, n + 1, NULL, FLR_EBAD_REQUEST, "elements", name);
        expect_reject(it, 3, 3, NULL, FLR_EBAD_REQUEST, "the header alone needs 7", name);
        expect_reject(it, 0, 0, NULL, FLR_EBAD_REQUEST, "the header alone needs 7", name);
    }
}

static void test_reject_array_claiming_more_elements_than_present(void **state)
{
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PUSH, it);

    expect_reject(it, n, n + 1, NULL, FLR_EBAD_REQUEST, NULL, "one more claimed");
    expect_reject(it, n, UINT32_MAX, NULL, FLR_EBAD_REQUEST, NULL, "four billion claimed");
}

static void test_reject_wrong_msgpack_type_in_every_field(void **state)
{
    static const unsigned char array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char fixarray[] = {0x91, 0x01};
    static const unsigned char fixmap[] = {0x80};
    const struct item wrong[] = {
        it_kind(I_NIL),
        it_kind(I_BOOL),
        it_kind(I_FLOAT),
        it_kind(I_EXT),
        it_raw(array32, sizeof(array32)),
        it_raw(map32, sizeof(map32)),
        it_raw(fixarray, sizeof(fixarray)),
        it_raw(fixmap, sizeof(fixmap)),
    };

    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct item base[MAX_ITEMS];
        size_t n = base_items(all_types[t], base);

        for (size_t idx = 0; idx < n; idx++) {
            for (size_t w = 0; w < FLR_ARRAY_LEN(wrong); w++) {
                struct item it[MAX_ITEMS];
                char want[32], what[64];

                memcpy(it, base, sizeof(it));
                it[idx] = wrong[w];
                snprintf(want, sizeof(want), "field %zu (", idx);
                snprintf(what, sizeof(what), "%s field %zu wrong %zu",
                         flr_msg_type_name(all_types[t]), idx, w);
                expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, want, what);
            }
        }
    }
}

static void test_reject_str_and_bin_swapped(void **state)
{
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PULL, it);

    it[9] = it_str(base_keys, sizeof(base_keys));
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 9 (keys): expected bin, got str",
                  "keys as str");
    n = base_items(FLR_MSG_PULL, it);
    it[2] = it_bin("job-a", 5);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 2 (job): expected str, got bin",
                  "job as bin");
    n = base_items(FLR_MSG_STATUS_REPLY, it);
    it[idx_of(FLR_MSG_STATUS_REPLY, 'j')] = it_bin("{}", 2);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "(text): expected str, got bin", "text as bin");
    n = base_items(FLR_MSG_PULL_REPLY, it);
    it[idx_of(FLR_MSG_PULL_REPLY, 'v')] = it_str(base_vals, sizeof(base_vals));
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "(values): expected bin, got str",
                  "values as str");
}

static void test_reject_u32_fields_beyond_32_bits(void **state)
{
    const uint64_t big = UINT64_C(1) << 32;
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PUSH, it);
    const unsigned idxs[] = {3, 4, idx_of(FLR_MSG_PUSH, 't')}; /* sender, shard, table */

    for (size_t i = 0; i < FLR_ARRAY_LEN(idxs); i++) {
        unsigned idx = idxs[i];
        char what[32];

        snprintf(what, sizeof(what), "field %u", idx);
        n = base_items(FLR_MSG_PUSH, it);
        it[idx] = it_uint(UINT32_MAX);
        expect_accept(it, n, NULL, what);
        it[idx] = it_uint(big);
        expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "4294967296 is larger than 4294967295",
                      what);
        it[idx] = it_int(-1);
        expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "expected uint, got negative int", what);
    }
}

static void test_reject_negative_u64_fields(void **state)
{
    struct item it[MAX_ITEMS];
    const unsigned idxs[] = {5, 6, idx_of(FLR_MSG_PUSH_REPLY, 'p')};

    for (size_t i = 0; i < FLR_ARRAY_LEN(idxs); i++) {
        size_t n = base_items(FLR_MSG_PUSH_REPLY, it);

        it[idxs[i]] = it_uint(UINT64_MAX);
        expect_accept(it, n, NULL, "u64 max");
        it[idxs[i]] = it_int(-1);
        expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "expected uint, got negative int",
                      "negative u64");
    }
}

static void test_reject_clock_beyond_int64(void **state)
{
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_CLOCK, it);
    unsigned c = idx_of(FLR_MSG_CLOCK, 'c');

    it[c] = it_int(-1);
    expect_accept(it, n, NULL, "clock -1");
    it[c] = it_int(INT64_MIN);
    expect_accept(it, n, NULL, "clock min");
    it[c] = it_uint(INT64_MAX);
    expect_accept(it, n, NULL, "clock max");
    it[c] = it_uint((uint64_t)INT64_MAX + 1);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 7 (clock)", "clock 2^63");
    it[c] = it_str("1", 1);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 7 (clock): expected int, got str",
                  "clock as str");
}

static void test_reject_status_beyond_int32(void **state)
{
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PUSH_REPLY, it);
    unsigned s = idx_of(FLR_MSG_PUSH_REPLY, 's');

    it[s] = it_int(INT32_MIN);
    expect_accept(it, n, NULL, "status min");
    it[s] = it_int(INT32_MAX);
    expect_accept(it, n, NULL, "status max");
    it[s] = it_int((int64_t)INT32_MAX + 1);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 7 (status)", "status 2^31");
    it[s] = it_int((int64_t)INT32_MIN - 1);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "is smaller than", "status -2^31-1");
}

static void test_reject_job_longer_than_job_max(void **state)
{
    char job[FLR_JOB_MAX + 1];
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_SHUTDOWN, it);

    memset(job, 'x', sizeof(job));
    it[2] = it_str(job, FLR_JOB_MAX);
    expect_accept(it, n, NULL, "job at the limit");
    it[2] = it_str(job, FLR_JOB_MAX + 1);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 2 (job): 65 bytes", "long job");
}

static void test_reject_reason_longer_than_reason_max(void **state)
{
    char reason[FLR_REASON_MAX + 1];
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_ERROR_REPLY, it);
    unsigned r = idx_of(FLR_MSG_ERROR_REPLY, 'r');

    memset(reason, 'x', sizeof(reason));
    it[r] = it_str(reason, FLR_REASON_MAX);
    expect_accept(it, n, NULL, "reason at the limit");
    it[r] = it_str(reason, FLR_REASON_MAX + 1);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "(reason): 257 bytes", "long reason");
}

static void test_reject_keys_blob_not_a_multiple_of_8(void **state)
{
    static const unsigned char keys[17];
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PULL, it);
    unsigned k = idx_of(FLR_MSG_PULL, 'k');

    for (size_t len = 1; len < sizeof(keys); len++) {
        it[k] = it_bin(keys, len);
        if (len % 8 == 0)
            expect_accept(it, n, NULL, "whole keys");
        else
            expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "not a whole number of u64 keys",
                          "partial key");
    }
}

static void test_reject_more_keys_than_max_keys(void **state)
{
    struct flr_proto_limits lim;
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PUSH, it);

    default_limits(&lim);
    lim.max_keys = 2;
    expect_accept(it, n, &lim, "two keys, limit 2");
    lim.max_keys = 1;
    expect_reject(it, n, n, &lim, FLR_ETOO_BIG, "field 9 (keys): 2 keys", "two keys, limit 1");
    n = base_items(FLR_MSG_PULL, it);
    lim.max_keys = 0;
    expect_reject(it, n, n, &lim, FLR_ETOO_BIG, "keys", "pull, limit 0");
}

static void test_reject_values_blob_not_a_multiple_of_4(void **state)
{
    static const unsigned char vals[24];
    const int types[] = {FLR_MSG_PUSH, FLR_MSG_PULL_REPLY};

    for (size_t t = 0; t < FLR_ARRAY_LEN(types); t++) {
        struct item it[MAX_ITEMS];
        size_t n = base_items(types[t], it);
        unsigned v = idx_of(types[t], 'v');

        for (size_t len = 21; len <= 23; len++) {
            it[v] = it_bin(vals, len);
            expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "not a whole number of float32",
                          flr_msg_type_name(types[t]));
        }
        /* A reply's values have no keys alongside: any whole number of floats will do. */
        it[v] = it_bin(vals, 20);
        if (types[t] == FLR_MSG_PULL_REPLY)
            expect_accept(it, n, NULL, "pull reply of 5 floats");
    }
}

static void test_reject_values_without_keys(void **state)
{
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PUSH, it);

    it[idx_of(FLR_MSG_PUSH, 'k')] = it_bin(base_keys, 0);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "no keys", "values, no keys");
    it[idx_of(FLR_MSG_PUSH, 'v')] = it_bin(base_vals, 0);
    expect_accept(it, n, NULL, "no values, no keys");
}

static void test_reject_values_not_whole_rows(void **state)
{
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PUSH, it);
    unsigned v = idx_of(FLR_MSG_PUSH, 'v');

    /* Two keys: rows of 8 bytes times the width. */
    for (size_t len = 4; len <= sizeof(base_vals); len += 4) {
        it[v] = it_bin(base_vals, len);
        if (len % 8 == 0)
            expect_accept(it, n, NULL, "whole rows");
        else
            expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "not a whole number of rows",
                          "partial row");
    }
}

static void test_reject_trailing_bytes(void **state)
{
    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct item it[MAX_ITEMS];
        size_t n = base_items(all_types[t], it);

        it[n] = it_uint(0);
        expect_reject(it, n + 1, n, NULL, FLR_EBAD_REQUEST, "trailing bytes",
                      flr_msg_type_name(all_types[t]));
    }
}

static void test_reject_message_larger_than_max_size(void **state)
{
    struct flr_msg m = base_msg(FLR_MSG_PUSH), out;
    struct flr_proto_limits lim;
    char why[WHYLEN];
    size_t len;
    char *buf = encode_alloc(&m, &len);

    default_limits(&lim);
    lim.max_size = len;
    assert_int_equal(flr_msg_decode(&out, buf, len, &lim, zone, why, sizeof(why)), 0);
    lim.max_size = len - 1;
    assert_int_equal(flr_msg_decode(&out, buf, len, &lim, zone, why, sizeof(why)), FLR_ETOO_BIG);
    assert_non_null(strstr(why, "bytes"));
    /* The receiver can still address its error reply. */
    assert_int_equal(out.type, FLR_MSG_PUSH);
    assert_int_equal(out.sender, 7);
    assert_int_equal(out.request_id, 99);
    assert_body_empty(&out);
    free(buf);
}

static void test_reject_truncation_at_every_offset(void **state)
{
    struct flr_proto_limits lim;
    struct flr_rng r;

    default_limits(&lim);
    flr_rng_seed(&r, 4);
    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct flr_msg m = base_msg(all_types[t]), out;
        struct blobs b;
        char why[WHYLEN];
        size_t len;
        char *buf;

        blobs_fill(&m, &b, 40, 3, 300, &r);
        buf = encode_alloc(&m, &len);
        for (size_t cut = 0; cut < len; cut++) {
            char *part = dup_exact(buf, cut);
            int rv = flr_msg_decode(&out, part, cut, &lim, zone, why, sizeof(why));

            if (rv != FLR_EBAD_REQUEST)
                fail_msg("%s cut at %zu of %zu: %s", flr_msg_type_name(m.type), cut, len,
                         flr_errname(rv));
            assert_body_empty(&out);
            free(part);
        }
        free(buf);
        blobs_free(&b);
    }
}

static void test_reject_hostile_container_headers_without_allocating(void **state)
{
    static const unsigned char top_array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff,
                                                0xa4, 'F',  'L',  'R',  '1'};
    static const unsigned char top_map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char nested[] = {0xdd, 0xff, 0xff, 0xff, 0xff,
                                           0xdd, 0xff, 0xff, 0xff, 0xff};
    struct flr_proto_limits lim;
    struct flr_msg m;
    char why[WHYLEN];

    default_limits(&lim);
    assert_int_equal(decode_lim(&m, top_array32, sizeof(top_array32), &lim, why), FLR_EBAD_REQUEST);
    assert_int_equal(decode_lim(&m, top_map32, sizeof(top_map32), &lim, why), FLR_EBAD_REQUEST);
    assert_int_equal(decode_lim(&m, nested, sizeof(nested), &lim, why), FLR_EBAD_REQUEST);
    assert_string_equal(why, "field 0 (magic): expected str, got array");
}

static void test_reject_invalid_msgpack_byte(void **state)
{
    static const unsigned char c1[] = {0xc1};
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PULL, it);

    it[4] = it_raw(c1, 1);
    expect_reject(it, n, n, NULL, FLR_EBAD_REQUEST, "field 4 (shard)", "0xc1");
}

/* ---- addressing after failure --------------------------------------------------------- */

static void test_failure_keeps_readable_addressing(void **state)
{
    struct flr_msg m;
    char why[WHYLEN];
    struct item it[MAX_ITEMS];
    struct flr_proto_limits lim;
    size_t n = base_items(FLR_MSG_PUSH, it);

    default_limits(&lim);
    /* A bad field after the header: the whole header is there. */
    it[idx_of(FLR_MSG_PUSH, 'k')] = it_bin(base_keys, 3);
    assert_int_equal(decode_items(&m, it, n, n, &lim, why), FLR_EBAD_REQUEST);
    assert_int_equal(m.type, FLR_MSG_PUSH);
    assert_int_equal(m.sender, 7);
    assert_int_equal(m.shard, 3);
    assert_int_equal(m.shard_epoch, 11);
    assert_int_equal(m.request_id, 99);
    assert_body_empty(&m);

    /* A bad magic does not hide the rest of the header. */
    n = base_items(FLR_MSG_PULL, it);
    it[0] = it_str("XXXX", 4);
    assert_int_equal(decode_items(&m, it, n, n, &lim, why), FLR_EBAD_REQUEST);
    assert_int_equal(m.type, FLR_MSG_PULL);
    assert_int_equal(m.sender, 7);
    assert_int_equal(m.request_id, 99);

    /* An invalid sender reads as 0; what follows it is still taken. */
    n = base_items(FLR_MSG_PULL, it);
    it[3] = it_int(-5);
    assert_int_equal(decode_items(&m, it, n, n, &lim, why), FLR_EBAD_REQUEST);
    assert_int_equal(m.sender, 0);
    assert_int_equal(m.shard, 3);
    assert_int_equal(m.request_id, 99);

    /* An unknown type reads as FLR_MSG_NONE. */
    n = base_items(FLR_MSG_PULL, it);
    it[1] = it_uint(200);
    assert_int_equal(decode_items(&m, it, n, n, &lim, why), FLR_EBAD_REQUEST);
    assert_int_equal(m.type, FLR_MSG_NONE);
    assert_int_equal(m.request_id, 99);
}

static void test_failure_of_truncated_message_keeps_its_header(void **state)
{
    struct flr_msg m = base_msg(FLR_MSG_PUSH), out;
    struct flr_proto_limits lim;
    size_t len;
    char *buf = encode_alloc(&m, &len);

    default_limits(&lim);
    /* Cut inside the value blob. */
    assert_int_equal(flr_msg_decode(&out, buf, len - 3, &lim, zone, NULL, 0), FLR_EBAD_REQUEST);
    assert_int_equal(out.type, FLR_MSG_PUSH);
    assert_int_equal(out.sender, 7);
    assert_int_equal(out.shard, 3);
    assert_int_equal(out.shard_epoch, 11);
    assert_int_equal(out.request_id, 99);
    assert_body_empty(&out);
    free(buf);
}

static void test_failure_with_nothing_readable_leaves_zeros(void **state)
{
    static const unsigned char junk[] = {0xc1, 0x00, 0x01};
    struct flr_proto_limits lim;
    struct flr_msg m;

    default_limits(&lim);
    memset(&m, 0x5a, sizeof(m));
    assert_int_equal(flr_msg_decode(&m, junk, sizeof(junk), &lim, zone, NULL, 0), FLR_EBAD_REQUEST);
    assert_int_equal(m.type, 0);
    assert_int_equal(m.sender, 0);
    assert_int_equal(m.shard, 0);
    assert_int_equal(m.shard_epoch, 0);
    assert_int_equal(m.request_id, 0);
    assert_body_empty(&m);
}

static void test_reason_fits_a_short_why_buffer(void **state)
{
    struct flr_proto_limits lim;
    struct item it[MAX_ITEMS];
    size_t n = base_items(FLR_MSG_PULL, it);
    msgpack_sbuffer sb;
    struct flr_msg m;
    char why[8];

    default_limits(&lim);
    it[9] = it_str("x", 1);
    pack_items(&sb, it, n, n);
    memset(why, 'z', sizeof(why));
    assert_int_equal(flr_msg_decode(&m, sb.data, sb.size, &lim, zone, why, sizeof(why)),
                     FLR_EBAD_REQUEST);
    assert_string_equal(why, "field 9");
    assert_int_equal(flr_msg_decode(&m, sb.data, sb.size, &lim, zone, NULL, 0), FLR_EBAD_REQUEST);
    why[0] = 'q';
    assert_int_equal(flr_msg_decode(&m, sb.data, sb.size, &lim, zone, why, 0), FLR_EBAD_REQUEST);
    assert_int_equal(why[0], 'q');
    msgpack_sbuffer_destroy(&sb);
}

/* ---- fuzzing -------------------------------------------------------------------------- */

/* Whatever the decoder accepted must hold together. */
static void assert_decoded_sane(const struct flr_msg *m, const void *buf, size_t len,
                                const struct flr_proto_limits *lim)
{
    const char *f = flr_msg_fields(m->type);

    assert_non_null(f);
    assert_within(m->job, m->job_len, buf, len);
    assert_true(m->job_len <= FLR_JOB_MAX);
    if (has(f, 'r')) {
        assert_within(m->reason, m->reason_len, buf, len);
        assert_true(m->reason_len <= FLR_REASON_MAX);
    }
    if (has(f, 'j'))
        assert_within(m->text, m->text_len, buf, len);
    if (has(f, 'k')) {
        assert_within(m->keys, (size_t)m->nkeys * 8, buf, len);
        assert_true(m->nkeys <= lim->max_keys);
    }
    if (has(f, 'v')) {
        assert_within(m->vals, m->vals_len, buf, len);
        assert_int_equal(m->vals_len % 4, 0);
    }
    if (has(f, 'k') && has(f, 'v') && m->vals_len)
        assert_true(m->nkeys && m->vals_len % ((uint64_t)m->nkeys * 4) == 0);
}

static void fuzz_one(const char *buf, size_t len, const struct flr_proto_limits *lim,
                     unsigned *accepted)
{
    struct flr_msg m;
    char why[WHYLEN];
    char *copy = dup_exact(buf, len);
    int rv = flr_msg_decode(&m, copy, len, lim, zone, why, sizeof(why));

    if (rv == 0) {
        assert_decoded_sane(&m, copy, len, lim);
        (*accepted)++;
    } else {
        if (rv != FLR_EBAD_REQUEST && rv != FLR_ETOO_BIG)
            fail_msg("unexpected %s: %s", flr_errname(rv), why);
        assert_true(why[0] != '\0');
        assert_null(strchr(why, '\n'));
        assert_body_empty(&m);
    }
    free(copy);
}

static void test_random_byte_flips_never_crash(void **state)
{
    struct flr_proto_limits lim;
    unsigned accepted = 0, total = 0;
    struct flr_rng r;

    default_limits(&lim);
    lim.max_keys = 30;
    flr_rng_seed(&r, 5);
    for (size_t t = 0; t < FLR_ARRAY_LEN(all_types); t++) {
        struct flr_msg m = base_msg(all_types[t]);
        struct blobs b;
        size_t len;
        char *buf, *mut;

        blobs_fill(&m, &b, 20, 2, 20, &r);
        buf = encode_alloc(&m, &len);
        mut = malloc(len);
        assert_non_null(mut);
        for (int iter = 0; iter < 3000; iter++) {
            int flips = 1 + (int)(flr_rng_next(&r) % 4);

            memcpy(mut, buf, len);
            for (int i = 0; i < flips; i++) {
                /* Flips favour the header, where the structure is. */
                size_t at = flr_rng_next(&r) % (i == 0 ? (len < 40 ? len : 40) : len);

                mut[at] ^= (char)(1 + flr_rng_next(&r) % 255);
            }
            fuzz_one(mut, len, &lim, &accepted);
            total++;
        }
        free(mut);
        free(buf);
        blobs_free(&b);
    }
    /* Flips inside blobs leave messages valid, so some must have been accepted, and flips
     * in the header must have been caught. */
    assert_true(accepted > 0 && accepted < total);
}

static void test_random_bytes_never_crash(void **state)
{
    struct flr_proto_limits lim;
    unsigned accepted = 0;
    unsigned char buf[96];
    struct flr_rng r;

    default_limits(&lim);
    flr_rng_seed(&r, 6);
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = flr_rng_next(&r) % sizeof(buf);

        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)flr_rng_next(&r);
        /* Half the time start like a message so the fuzz gets past the first checks. */
        if (len >= 7 && iter % 2) {
            buf[0] = (unsigned char)(0x90 | (7 + flr_rng_next(&r) % 5));
            memcpy(buf + 1,
                   "\xa4"
                   "FLR1",
                   5);
            buf[6] = (unsigned char)(1 + flr_rng_next(&r) % (FLR_MSG_COUNT_ - 1));
        }
        fuzz_one((const char *)buf, len, &lim, &accepted);
    }
}

static void test_random_well_formed_msgpack_never_crashes(void **state)
{
    static const unsigned char c1[] = {0xc1};
    static const unsigned char array16[] = {0xdc, 0xff, 0xff};
    static char blob[64];
    struct flr_proto_limits lim;
    unsigned accepted = 0;
    struct flr_rng r;

    default_limits(&lim);
    lim.max_keys = 4;
    flr_rng_seed(&r, 7);
    for (int iter = 0; iter < 20000; iter++) {
        struct item it[MAX_ITEMS];
        size_t n = 7 + flr_rng_next(&r) % 6;
        msgpack_sbuffer sb;

        for (size_t i = 0; i < n; i++) {
            uint64_t x = flr_rng_next(&r);
            size_t len = (size_t)(x >> 8) % sizeof(blob);

            switch (x % 10) {
            case 0:
                it[i] = it_uint(x >> (x >> 58));
                break;
            case 1:
                it[i] = it_int(-(int64_t)((x >> 4) >> (x >> 58)) - 1);
                break;
            case 2:
            case 3:
                it[i] = it_str(blob, len);
                break;
            case 4:
            case 5:
                it[i] = it_bin(blob, len);
                break;
            case 6:
                it[i] = it_kind((enum item_kind)(I_NIL + (x >> 8) % 4));
                break;
            case 7:
                it[i] = it_raw(c1, 1);
                break;
            case 8:
                it[i] = it_raw(array16, sizeof(array16));
                break;
            default:
                it[i] = it_uint((x >> 8) % 16);
                break;
            }
        }
        if (iter % 2) {
            it[0] = it_str("FLR1", 4);
            it[1] = it_uint(1 + flr_rng_next(&r) % (FLR_MSG_COUNT_ - 1));
        }
        pack_items(&sb, it, n, flr_rng_next(&r) % 8 ? n : flr_rng_next(&r) % 16);
        fuzz_one(sb.data, sb.size, &lim, &accepted);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* ---- sorted keys ---------------------------------------------------------------------- */

static void test_keys_sorted_accepts_strictly_increasing(void **state)
{
    const uint64_t keys[] = {0, 1, 2, 1000, UINT64_C(1) << 63, UINT64_MAX};
    unsigned char unaligned[sizeof(keys) + 1];

    assert_int_equal(flr_keys_check_sorted(NULL, 0), 0);
    assert_int_equal(flr_keys_check_sorted(keys, 1), 0);
    assert_int_equal(flr_keys_check_sorted(keys, FLR_ARRAY_LEN(keys)), 0);
    /* Blobs on the wire carry no alignment. */
    memcpy(unaligned + 1, keys, sizeof(keys));
    assert_int_equal(flr_keys_check_sorted(unaligned + 1, FLR_ARRAY_LEN(keys)), 0);
}

static void test_keys_sorted_rejects_duplicates(void **state)
{
    const uint64_t first[] = {5, 5, 6};
    const uint64_t last[] = {1, 2, 3, 3};

    assert_int_equal(flr_keys_check_sorted(first, 3), FLR_EUNSORTED);
    assert_int_equal(flr_keys_check_sorted(last, 4), FLR_EUNSORTED);
    assert_int_equal(flr_keys_check_sorted(last, 3), 0);
}

static void test_keys_sorted_rejects_decreasing_as_unsigned(void **state)
{
    const uint64_t down[] = {1, 3, 2};
    const uint64_t wrap[] = {UINT64_MAX, 0};
    unsigned char unaligned[sizeof(down) + 3];

    assert_int_equal(flr_keys_check_sorted(down, 3), FLR_EUNSORTED);
    assert_int_equal(flr_keys_check_sorted(wrap, 2), FLR_EUNSORTED);
    memcpy(unaligned + 3, down, sizeof(down));
    assert_int_equal(flr_keys_check_sorted(unaligned + 3, 3), FLR_EUNSORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_default_are_256mib_and_16mi_keys),
        cmocka_unit_test(test_type_names_and_fields_follow_the_table),
        cmocka_unit_test(test_field_strings_use_known_codes_once),
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_round_trip_empty_blobs_and_strings),
        cmocka_unit_test(test_round_trip_big_blobs),
        cmocka_unit_test(test_round_trip_extreme_integers_and_longest_strings),
        cmocka_unit_test(test_decoded_pointers_point_into_the_buffer),
        cmocka_unit_test(test_encode_golden_bytes),
        cmocka_unit_test(test_encode_matches_reference_packing),
        cmocka_unit_test(test_encoded_size_is_exact_at_msgpack_boundaries),
        cmocka_unit_test(test_zero_copy_reserves_the_values_region),
        cmocka_unit_test(test_zero_copy_pointer_is_null_when_values_are_given_or_absent),
        cmocka_unit_test(test_base_corpus_message_is_valid),
        cmocka_unit_test(test_reject_empty_input),
        cmocka_unit_test(test_reject_message_that_is_not_an_array),
        cmocka_unit_test(test_reject_wrong_magic),
        cmocka_unit_test(test_reject_unknown_type),
        cmocka_unit_test(test_reject_wrong_array_length),
        cmocka_unit_test(test_reject_array_claiming_more_elements_than_present),
        cmocka_unit_test(test_reject_wrong_msgpack_type_in_every_field),
        cmocka_unit_test(test_reject_str_and_bin_swapped),
        cmocka_unit_test(test_reject_u32_fields_beyond_32_bits),
        cmocka_unit_test(test_reject_negative_u64_fields),
        cmocka_unit_test(test_reject_clock_beyond_int64),
        cmocka_unit_test(test_reject_status_beyond_int32),
        cmocka_unit_test(test_reject_job_longer_than_job_max),
        cmocka_unit_test(test_reject_reason_longer_than_reason_max),
        cmocka_unit_test(test_reject_keys_blob_not_a_multiple_of_8),
        cmocka_unit_test(test_reject_more_keys_than_max_keys),
        cmocka_unit_test(test_reject_values_blob_not_a_multiple_of_4),
        cmocka_unit_test(test_reject_values_without_keys),
        cmocka_unit_test(test_reject_values_not_whole_rows),
        cmocka_unit_test(test_reject_trailing_bytes),
        cmocka_unit_test(test_reject_message_larger_than_max_size),
        cmocka_unit_test(test_reject_truncation_at_every_offset),
        cmocka_unit_test(test_reject_hostile_container_headers_without_allocating),
        cmocka_unit_test(test_reject_invalid_msgpack_byte),
        cmocka_unit_test(test_failure_keeps_readable_addressing),
        cmocka_unit_test(test_failure_of_truncated_message_keeps_its_header),
        cmocka_unit_test(test_failure_with_nothing_readable_leaves_zeros),
        cmocka_unit_test(test_reason_fits_a_short_why_buffer),
        cmocka_unit_test(test_random_byte_flips_never_crash),
        cmocka_unit_test(test_random_bytes_never_crash),
        cmocka_unit_test(test_random_well_formed_msgpack_never_crashes),
        cmocka_unit_test(test_keys_sorted_accepts_strictly_increasing),
        cmocka_unit_test(test_keys_sorted_rejects_duplicates),
        cmocka_unit_test(test_keys_sorted_rejects_decreasing_as_unsigned),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
