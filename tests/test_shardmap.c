/* test_shardmap.c - placement, its inverse, records as JSON, the snapshot helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/shardmap.h"
#include "common/util.h"

/* A spec with dense table 0 of n rows and sparse table 1, over S shards. */
static void make_spec(struct flr_job_spec *s, uint64_t n, uint32_t nshards)
{
    memset(s, 0, sizeof(*s));
    strcpy(s->job, "t");
    strcpy(s->recovery, "none");
    s->num_workers = 1;
    s->num_servers = 1;
    s->num_shards = nshards;
    s->k = 1;
    s->ntables = 2;
    s->tables[0].id = 0;
    strcpy(s->tables[0].name, "d");
    s->tables[0].kind = FLR_TABLE_DENSE;
    s->tables[0].rows = n;
    s->tables[0].dim = 1;
    s->tables[0].lr = 1;
    s->tables[1].id = 1;
    strcpy(s->tables[1].name, "s");
    s->tables[1].kind = FLR_TABLE_SPARSE;
    s->tables[1].dim = 1;
    s->tables[1].lr = 1;
}

static void test_range_is_exact_inverse_for_small_sizes(void **state)
{
    struct flr_job_spec spec;

    for (uint64_t n = 1; n <= 48; n++) {
        for (uint32_t S = 1; S <= 48; S++) {
            make_spec(&spec, n, S);
            for (uint32_t s = 0; s < S; s++) {
                uint64_t lo, hi;
                flr_shard_dense_range(&spec, &spec.tables[0], s, &lo, &hi);
                assert_true(lo <= hi && hi <= n);
                for (uint64_t r = 0; r < n; r++) {
                    int in = r >= lo && r < hi;
                    int says = flr_shard_of_key(&spec, flr_key(0, r)) == s;
                    if (in != says)
                        fail_msg("n=%llu S=%u shard %u row %llu: range [%llu,%llu) but "
                                 "shard_of_key says %u",
                                 (unsigned long long)n, S, s, (unsigned long long)r,
                                 (unsigned long long)lo, (unsigned long long)hi,
                                 flr_shard_of_key(&spec, flr_key(0, r)));
                }
            }
        }
    }
}

/* Ranges tile [0, n) in order and are balanced (sizes floor(n/S) or ceil(n/S)); spot
 * checks at each boundary agree with flr_shard_of_key. */
static void check_partition(uint64_t n, uint32_t S)
{
    struct flr_job_spec spec;
    uint64_t prev_hi = 0, small = n / S, big = (n + S - 1) / S;
    uint32_t step = S > 4096 ? 61 : 1;

    make_spec(&spec, n, S);
    for (uint32_t s = 0; s < S; s++) {
        uint64_t lo, hi;
        flr_shard_dense_range(&spec, &spec.tables[0], s, &lo, &hi);
        assert_true(lo == prev_hi);
        assert_true(hi - lo == small || hi - lo == big);
        prev_hi = hi;
        if (s % step != 0 && s != S - 1)
            continue;
        if (lo < hi) {
            assert_int_equal(flr_shard_of_key(&spec, flr_key(0, lo)), s);
            assert_int_equal(flr_shard_of_key(&spec, flr_key(0, hi - 1)), s);
        }
        if (lo > 0)
            assert_true(flr_shard_of_key(&spec, flr_key(0, lo - 1)) < s);
        if (hi < n)
            assert_true(flr_shard_of_key(&spec, flr_key(0, hi)) > s);
    }
    assert_true(prev_hi == n);
    assert_int_equal(flr_shard_of_key(&spec, flr_key(0, 0)), 0);
    if (n >= S)
        assert_int_equal(flr_shard_of_key(&spec, flr_key(0, n - 1)), S - 1);
}

static void test_dense_placement_properties(void **state)
{
    static const struct {
        uint64_t n;
        uint32_t S;
    } cases[] = {
        {1, 1},
        {1, 8},
        {3, 8},
        {7, 8},
        {8, 8},
        {785, 8},
        {785, 7},
        {1000000, 3},
        {10, 65536},
        {65535, 65536},
        {65537, 65536},
        {(UINT64_C(1) << 48) - 1, 65536},
        {(UINT64_C(1) << 48) - 1, 1},
        {(UINT64_C(1) << 48) - 1, 3},
        {UINT64_C(123456789012345), 1000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_partition(cases[i].n, cases[i].S);
}

static void test_dense_placement_is_monotone(void **state)
{
    struct flr_job_spec spec;
    uint32_t prev = 0;

    make_spec(&spec, 100003, 37);
    for (uint64_t r = 0; r < 100003; r++) {
        uint32_t s = flr_shard_of_key(&spec, flr_key(0, r));
        assert_true(s >= prev && s < 37);
        assert_true(s == (uint32_t)(r * 37 / 100003));
        prev = s;
    }
}

static void test_out_of_range_keys(void **state)
{
    struct flr_job_spec spec;
    uint64_t lo = 1, hi = 1;

    make_spec(&spec, 100, 8);
    assert_int_equal(flr_shard_of_key(&spec, flr_key(0, 100)), 8);
    assert_int_equal(flr_shard_of_key(&spec, flr_key(0, FLR_KEY_ROW_MASK)), 8);
    assert_int_equal(flr_shard_of_key(&spec, flr_key(5, 1)), 8);

    /* Sparse tables and shards past the end have empty dense ranges. */
    flr_shard_dense_range(&spec, &spec.tables[1], 0, &lo, &hi);
    assert_true(lo == 0 && hi == 0);
    lo = hi = 1;
    flr_shard_dense_range(&spec, &spec.tables[0], 8, &lo, &hi);
    assert_true(lo == hi);

    spec.num_shards = 0;
    assert_int_equal(flr_shard_of_key(&spec, flr_key(0, 1)), 0);
}

static void check_sparse_spread(uint32_t S, uint32_t nkeys)
{
    struct flr_job_spec spec;
    uint32_t *count = calloc(S, sizeof(*count));
    double mean = (double)nkeys / S;

    assert_non_null(count);
    make_spec(&spec, 10, S);
    for (uint64_t r = 0; r < nkeys; r++) {
        /* Consecutive ids, the worst case for a weak hash. */
        uint64_t key = flr_key(1, r);
        uint32_t s = flr_shard_of_key(&spec, key);
        assert_true(s < S);
        assert_int_equal(s, (uint32_t)(flr_mix64(key) % S));
        count[s]++;
    }
    /* Each bucket within 5% of the mean: more than 5 standard deviations at these sizes. */
    for (uint32_t s = 0; s < S; s++)
        if (count[s] < mean * 0.95 || count[s] > mean * 1.05)
            fail_msg("S=%u shard %u holds %u keys, mean %.0f", S, s, count[s], mean);
    free(count);
}

static void test_sparse_spread_is_roughly_uniform(void **state)
{
    check_sparse_spread(16, 160000);
    check_sparse_spread(7, 70000);
    check_sparse_spread(100, 1000000);
}

static void test_state_names(void **state)
{
    for (int i = FLR_SHARD_UNASSIGNED; i <= FLR_SHARD_LOST; i++)
        assert_int_equal(flr_shard_state_parse(flr_shard_state_name(i)), i);
    for (int i = FLR_SERVER_STANDBY; i <= FLR_SERVER_SERVING; i++)
        assert_int_equal(flr_server_state_parse(flr_server_state_name(i)), i);
    assert_string_equal(flr_shard_state_name(FLR_SHARD_RECOVERING), "RECOVERING");
    assert_string_equal(flr_server_state_name(FLR_SERVER_SERVING), "SERVING");
    assert_string_equal(flr_shard_state_name((enum flr_shard_state)9), "UNKNOWN");
    assert_string_equal(flr_server_state_name((enum flr_server_state)9), "UNKNOWN");
    assert_int_equal(flr_shard_state_parse("active"), -1);
    assert_int_equal(flr_shard_state_parse(""), -1);
    assert_int_equal(flr_shard_state_parse(NULL), -1);
    assert_int_equal(flr_server_state_parse("IDLE"), -1);
}

/* Parses from a heap copy without a NUL, as ZooKeeper hands data over. */
static int shard_from(struct flr_shard_rec *r, const char *text)
{
    size_t n = strlen(text);
    char *buf = malloc(n ? n : 1);
    int rv;

    assert_non_null(buf);
    memcpy(buf, text, n);
    rv = flr_shard_rec_from_json(r, buf, n);
    free(buf);
    return rv;
}

static int server_from(struct flr_server_rec *r, const char *text)
{
    size_t n = strlen(text);
    char *buf = malloc(n ? n : 1);
    int rv;

    assert_non_null(buf);
    memcpy(buf, text, n);
    rv = flr_server_rec_from_json(r, buf, n);
    free(buf);
    return rv;
}

static void test_shard_rec_round_trip(void **state)
{
    static const struct flr_shard_rec recs[] = {
        {.owner = 1, .epoch = 3, .state = FLR_SHARD_ACTIVE},
        {.owner = 0, .epoch = 0, .state = FLR_SHARD_UNASSIGNED},
        {.owner = FLR_NO_OWNER, .epoch = 17, .state = FLR_SHARD_LOST},
        {.owner = FLR_NO_OWNER - 1, .epoch = INT64_MAX, .state = FLR_SHARD_RECOVERING},
        {.owner = 2, .epoch = 9, .state = FLR_SHARD_ACTIVE, .from1 = 1}, /* a drain from 0 */
    };
    for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
        struct flr_shard_rec back;
        char *text = NULL;

        assert_int_equal(flr_shard_rec_to_json(&recs[i], &text), 0);
        assert_non_null(text);
        memset(&back, 0xee, sizeof(back));
        assert_int_equal(shard_from(&back, text), 0);
        assert_int_equal(back.owner, recs[i].owner);
        assert_true(back.epoch == recs[i].epoch);
        assert_int_equal(back.state, recs[i].state);
        assert_int_equal(back.from1, recs[i].from1);
        if (recs[i].owner == FLR_NO_OWNER)
            assert_non_null(strstr(text, "\"owner\":null"));
        free(text);
    }

    char *text = NULL;
    assert_int_equal(flr_shard_rec_to_json(&recs[0], &text), 0);
    assert_string_equal(text, "{\"owner\":1,\"epoch\":3,\"state\":\"ACTIVE\"}");
    free(text);
}

static void test_shard_rec_owner_absent_or_null(void **state)
{
    struct flr_shard_rec r;

    assert_int_equal(shard_from(&r, "{\"epoch\":2,\"state\":\"UNASSIGNED\"}"), 0);
    assert_int_equal(r.owner, FLR_NO_OWNER);
    assert_int_equal(shard_from(&r, "{\"owner\":null,\"epoch\":2,\"state\":\"LOST\"}"), 0);
    assert_int_equal(r.owner, FLR_NO_OWNER);
    assert_int_equal(r.state, FLR_SHARD_LOST);
    /* Keys this version does not know are ignored. */
    assert_int_equal(
        shard_from(&r, "{\"owner\":4,\"epoch\":2,\"state\":\"ACTIVE\",\"chain\":[4,5]}"), 0);
    assert_int_equal(r.owner, 4);
}

static void test_shard_rec_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "null",
        "{\"owner\":1,\"epoch\":3,\"state\":\"ACTIVE\"} x",
        "{\"owner\":\"1\",\"epoch\":3,\"state\":\"ACTIVE\"}",
        "{\"owner\":-1,\"epoch\":3,\"state\":\"ACTIVE\"}",
        "{\"owner\":4294967295,\"epoch\":3,\"state\":\"ACTIVE\"}",
        "{\"owner\":4294967296,\"epoch\":3,\"state\":\"ACTIVE\"}",
        "{\"owner\":1.0,\"epoch\":3,\"state\":\"ACTIVE\"}",
        "{\"owner\":1,\"state\":\"ACTIVE\"}",
        "{\"owner\":1,\"epoch\":-3,\"state\":\"ACTIVE\"}",
        "{\"owner\":1,\"epoch\":3.5,\"state\":\"ACTIVE\"}",
        "{\"owner\":1,\"epoch\":\"3\",\"state\":\"ACTIVE\"}",
        "{\"owner\":1,\"epoch\":3}",
        "{\"owner\":1,\"epoch\":3,\"state\":\"active\"}",
        "{\"owner\":1,\"epoch\":3,\"state\":1}",
        "{\"owner\":1,\"epoch\":3,\"state\":\"ACTIVE\",\"state\":\"LOST\"}",
        "{\"owner\":1,\"epoch\":3,\"state\":\"ACTIVE\",\"from\":-1}",
        "{\"owner\":1,\"epoch\":3,\"state\":\"ACTIVE\",\"from\":\"0\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct flr_shard_rec r = {.owner = 77, .epoch = 88, .state = FLR_SHARD_RECOVERING};
        int rv = shard_from(&r, bad[i]);
        if (rv != FLR_EFORMAT)
            fail_msg("'%s': got %d", bad[i], rv);
        /* A failed parse leaves the record alone. */
        assert_int_equal(r.owner, 77);
        assert_true(r.epoch == 88);
        assert_int_equal(r.state, FLR_SHARD_RECOVERING);
    }

    /* The length bounds the parse: a valid prefix cut short is malformed. */
    struct flr_shard_rec r;
    const char *ok = "{\"owner\":1,\"epoch\":3,\"state\":\"ACTIVE\"}";
    assert_int_equal(flr_shard_rec_from_json(&r, ok, strlen(ok) - 1), FLR_EFORMAT);
    assert_int_equal(flr_shard_rec_from_json(&r, ok, strlen(ok)), 0);
    assert_int_equal(flr_shard_rec_from_json(&r, NULL, 0), FLR_EFORMAT);

    /* States out of range and epochs JSON cannot hold are refused on output. */
    char *text = (char *)1;
    struct flr_shard_rec w = {.owner = 1, .epoch = 1, .state = (enum flr_shard_state)7};
    assert_int_equal(flr_shard_rec_to_json(&w, &text), FLR_EINVAL);
    assert_null(text);
    w.state = FLR_SHARD_ACTIVE;
    w.epoch = UINT64_MAX;
    assert_int_equal(flr_shard_rec_to_json(&w, &text), FLR_EINVAL);
}

static void fill_server(struct flr_server_rec *r, uint32_t id)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    snprintf(r->endpoint, sizeof(r->endpoint), "tcp://127.0.0.1:%u", 40000 + id);
    r->incarnation = 1000 + id;
    r->pid = (int32_t)(4000 + id);
    snprintf(r->host, sizeof(r->host), "host-%u", id);
    r->state = FLR_SERVER_SERVING;
}

static void test_server_rec_round_trip(void **state)
{
    struct flr_server_rec a, b;
    char *text = NULL;

    fill_server(&a, 3);
    a.state = FLR_SERVER_STANDBY;
    assert_int_equal(flr_server_rec_to_json(&a, &text), 0);
    assert_string_equal(text, "{\"id\":3,\"endpoint\":\"tcp://127.0.0.1:40003\","
                              "\"incarnation\":1003,\"pid\":4003,\"host\":\"host-3\","
                              "\"state\":\"STANDBY\"}");
    memset(&b, 0xee, sizeof(b));
    assert_int_equal(server_from(&b, text), 0);
    assert_int_equal(b.id, a.id);
    assert_string_equal(b.endpoint, a.endpoint);
    assert_true(b.incarnation == a.incarnation);
    assert_int_equal(b.pid, a.pid);
    assert_string_equal(b.host, a.host);
    assert_int_equal(b.state, a.state);
    free(text);

    /* The longest strings that fit, extreme numbers. */
    memset(a.endpoint, 'e', sizeof(a.endpoint) - 1);
    a.endpoint[sizeof(a.endpoint) - 1] = '\0';
    memset(a.host, 'h', sizeof(a.host) - 1);
    a.host[sizeof(a.host) - 1] = '\0';
    a.id = FLR_NO_OWNER - 1;
    a.incarnation = INT64_MAX;
    a.pid = INT32_MIN;
    assert_int_equal(flr_server_rec_to_json(&a, &text), 0);
    assert_int_equal(server_from(&b, text), 0);
    assert_string_equal(b.endpoint, a.endpoint);
    assert_string_equal(b.host, a.host);
    assert_int_equal(b.id, a.id);
    assert_true(b.incarnation == a.incarnation);
    assert_int_equal(b.pid, a.pid);
    free(text);
}

static void test_server_rec_malformed(void **state)
{
    char long_ep[512], long_host[256];
    static const char *const bad[] = {
        "{}",
        "[1]",
        "{\"id\":3,\"endpoint\":\"tcp://x:1\",\"incarnation\":1,\"pid\":2,\"host\":\"h\"}",
        "{\"id\":3,\"endpoint\":\"tcp://x:1\",\"incarnation\":1,\"pid\":2,\"state\":\"SERVING\"}",
        "{\"id\":3,\"endpoint\":7,\"incarnation\":1,\"pid\":2,\"host\":\"h\",\"state\":"
        "\"SERVING\"}",
        "{\"id\":-3,\"endpoint\":\"e\",\"incarnation\":1,\"pid\":2,\"host\":\"h\",\"state\":"
        "\"SERVING\"}",
        "{\"id\":4294967295,\"endpoint\":\"e\",\"incarnation\":1,\"pid\":2,\"host\":\"h\","
        "\"state\":\"SERVING\"}",
        "{\"id\":3,\"endpoint\":\"e\",\"incarnation\":-1,\"pid\":2,\"host\":\"h\",\"state\":"
        "\"SERVING\"}",
        "{\"id\":3,\"endpoint\":\"e\",\"incarnation\":1,\"pid\":2147483648,\"host\":\"h\","
        "\"state\":\"SERVING\"}",
        "{\"id\":3,\"endpoint\":\"e\",\"incarnation\":1,\"pid\":\"2\",\"host\":\"h\",\"state\":"
        "\"SERVING\"}",
        "{\"id\":3,\"endpoint\":\"e\",\"incarnation\":1,\"pid\":2,\"host\":\"h\",\"state\":"
        "\"ACTIVE\"}",
        "{\"id\":3,\"endpoint\":null,\"incarnation\":1,\"pid\":2,\"host\":\"h\",\"state\":"
        "\"SERVING\"}",
    };
    struct flr_server_rec r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fill_server(&r, 9);
        int rv = server_from(&r, bad[i]);
        if (rv != FLR_EFORMAT)
            fail_msg("'%s': got %d", bad[i], rv);
        assert_int_equal(r.id, 9);
        assert_string_equal(r.host, "host-9");
    }

    /* Strings one byte too long for their buffers are refused, not truncated. */
    char ep[FLR_ENDPOINT_MAX + 1], host[65];
    memset(ep, 'e', sizeof(ep) - 1);
    ep[sizeof(ep) - 1] = '\0';
    memset(host, 'h', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(long_ep, sizeof(long_ep),
             "{\"id\":3,\"endpoint\":\"%s\",\"incarnation\":1,\"pid\":2,\"host\":\"h\","
             "\"state\":\"SERVING\"}",
             ep);
    snprintf(long_host, sizeof(long_host),
             "{\"id\":3,\"endpoint\":\"e\",\"incarnation\":1,\"pid\":2,\"host\":\"%s\","
             "\"state\":\"SERVING\"}",
             host);
    assert_int_equal(server_from(&r, long_ep), FLR_EFORMAT);
    assert_int_equal(server_from(&r, long_host), FLR_EFORMAT);
    /* An embedded NUL would cut a string short silently; it is refused. */
    assert_int_equal(server_from(&r, "{\"id\":3,\"endpoint\":\"a\\u0000b\",\"incarnation\":1,"
                                     "\"pid\":2,\"host\":\"h\",\"state\":\"SERVING\"}"),
                     FLR_EFORMAT);

    /* Output refuses a buffer without its NUL and values JSON cannot hold. */
    char *text = (char *)1;
    fill_server(&r, 1);
    memset(r.endpoint, 'x', sizeof(r.endpoint));
    assert_int_equal(flr_server_rec_to_json(&r, &text), FLR_EINVAL);
    assert_null(text);
    fill_server(&r, 1);
    memset(r.host, 'x', sizeof(r.host));
    assert_int_equal(flr_server_rec_to_json(&r, &text), FLR_EINVAL);
    fill_server(&r, 1);
    r.state = (enum flr_server_state)5;
    assert_int_equal(flr_server_rec_to_json(&r, &text), FLR_EINVAL);
    fill_server(&r, 1);
    r.incarnation = UINT64_MAX;
    assert_int_equal(flr_server_rec_to_json(&r, &text), FLR_EINVAL);
}

static void test_shardmap_alloc_and_servers(void **state)
{
    struct flr_shardmap *m = NULL;
    struct flr_server_rec r;
    static const uint32_t ids[] = {7, 3, 11, 0, 5, 9, 1, 100};

    assert_int_equal(flr_shardmap_alloc(&m, 8), 0);
    assert_non_null(m);
    assert_int_equal(m->nshards, 8);
    assert_int_equal(m->nservers, 0);
    for (uint32_t i = 0; i < 8; i++) {
        assert_int_equal(m->shards[i].owner, FLR_NO_OWNER);
        assert_true(m->shards[i].epoch == 0);
        assert_int_equal(m->shards[i].state, FLR_SHARD_UNASSIGNED);
    }
    assert_null(flr_shardmap_server(m, 3));

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        fill_server(&r, ids[i]);
        assert_int_equal(flr_shardmap_put_server(m, &r), 0);
    }
    assert_int_equal(m->nservers, 8);
    for (uint32_t i = 1; i < m->nservers; i++)
        assert_true(m->servers[i - 1].id < m->servers[i].id);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        const struct flr_server_rec *p = flr_shardmap_server(m, ids[i]);
        assert_non_null(p);
        assert_int_equal(p->id, ids[i]);
        assert_true(p->incarnation == 1000 + ids[i]);
    }
    assert_null(flr_shardmap_server(m, 2));
    assert_null(flr_shardmap_server(m, 101));

    /* Putting an existing id replaces the record in place. */
    fill_server(&r, 5);
    r.incarnation = 99;
    strcpy(r.endpoint, "ipc:///tmp/s5");
    assert_int_equal(flr_shardmap_put_server(m, &r), 0);
    assert_int_equal(m->nservers, 8);
    assert_true(flr_shardmap_server(m, 5)->incarnation == 99);
    assert_string_equal(flr_shardmap_server(m, 5)->endpoint, "ipc:///tmp/s5");
    flr_shardmap_free(m);

    /* An empty map is valid too. */
    assert_int_equal(flr_shardmap_alloc(&m, 0), 0);
    assert_int_equal(m->nshards, 0);
    assert_null(flr_shardmap_server(m, 0));
    flr_shardmap_free(m);
    flr_shardmap_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_is_exact_inverse_for_small_sizes),
        cmocka_unit_test(test_dense_placement_properties),
        cmocka_unit_test(test_dense_placement_is_monotone),
        cmocka_unit_test(test_out_of_range_keys),
        cmocka_unit_test(test_sparse_spread_is_roughly_uniform),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_shard_rec_round_trip),
        cmocka_unit_test(test_shard_rec_owner_absent_or_null),
        cmocka_unit_test(test_shard_rec_malformed),
        cmocka_unit_test(test_server_rec_round_trip),
        cmocka_unit_test(test_server_rec_malformed),
        cmocka_unit_test(test_shardmap_alloc_and_servers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
