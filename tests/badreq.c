/*
 * badreq - sends a running flr-server one malformed or misaddressed request of every
 * kind and checks that each is answered with the right error code, then that the server's
 * STATUS counts them.  Used by tests/it_badreq.sh while a real job trains.
 *
 *   badreq ZK_HOSTS JOB SERVER_ID
 *
 * Probe mode, for the fencing test: sends one PULL (no keys) for SHARD at EPOCH straight
 * to URL, as a worker with a stale map would, and says whether it was served:
 *
 *   badreq probe URL JOB SHARD EPOCH     exit 0: served; 1: rejected; 3: no reply
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/proto.h"
#include "common/shardmap.h"
#include "common/spec.h"
#include "common/transport.h"
#include "common/util.h"
#include "common/zk.h"

static int failures;
static struct flr_proto_limits lim;
static msgpack_zone zone;

/* Sends raw bytes and returns the reply's status (or -1 when there was no usable reply). */
static int exchange_raw(struct flr_conn *conn, const void *buf, size_t len, char *text,
                        size_t textlen)
{
    nng_msg *req, *rep;
    struct flr_msg r;
    char why[256];
    int rv;

    if (nng_msg_alloc(&req, len) != 0)
        return -1;
    memcpy(nng_msg_body(req), buf, len);
    if ((rv = flr_call_sync(conn, req, 10000, &rep)) != 0) {
        fprintf(stderr, "  no reply: %s\n", flr_strerror(rv));
        return -1;
    }
    rv = flr_msg_decode(&r, nng_msg_body(rep), nng_msg_len(rep), &lim, &zone, why, sizeof(why));
    if (rv != 0) {
        fprintf(stderr, "  undecodable reply: %s\n", why);
        nng_msg_free(rep);
        return -1;
    }
    rv = r.status;
    if (text)
        snprintf(text, textlen, "%.*s",
                 (int)(r.type == FLR_MSG_STATUS_REPLY ? r.text_len : r.reason_len),
                 r.type == FLR_MSG_STATUS_REPLY ? r.text : r.reason);
    nng_msg_free(rep);
    return rv;
}

static int exchange(struct flr_conn *conn, const struct flr_msg *m, char *text, size_t textlen)
{
    size_t n = flr_msg_encoded_size(m);
    void *buf = malloc(n);
    int rv;
    flr_msg_encode_into(m, buf, NULL);
    rv = exchange_raw(conn, buf, n, text, textlen);
    free(buf);
    return rv;
}

static void expect(const char *what, int got, int want, const char *reason)
{
    if (got == want) {
        printf("ok - %s: %s (%s)\n", what, flr_errname(got), reason);
    } else {
        printf("not ok - %s: got %s, want %s (%s)\n", what, got < 0 ? "no reply" : flr_errname(got),
               flr_errname(want), reason);
        failures++;
    }
}

static int probe(char **argv)
{
    struct flr_conn *conn;
    struct flr_msg m = {0};
    char why[256], text[256];
    int st;

    if (flr_conn_open(&conn, argv[2], 1u << 20, why, sizeof(why)) != 0) {
        fprintf(stderr, "badreq: %s\n", why);
        return 3;
    }
    m.type = FLR_MSG_PULL;
    m.job = argv[3];
    m.job_len = (uint32_t)strlen(argv[3]);
    m.sender = 0;
    m.shard = (uint32_t)strtoul(argv[4], NULL, 10);
    m.shard_epoch = strtoull(argv[5], NULL, 10);
    m.request_id = 1;
    m.table = 0;
    m.clock = 0;
    m.reason = "";
    st = exchange(conn, &m, text, sizeof(text));
    flr_conn_close(conn);
    if (st < 0) {
        printf("probe: no reply\n");
        return 3;
    }
    if (st == 0) {
        printf("probe: served\n");
        return 0;
    }
    printf("probe: rejected with %s\n", flr_errname(st));
    return 1;
}

int main(int argc, char **argv)
{
    struct flr_zk *zk;
    struct flr_conn *conn;
    struct flr_job_spec spec;
    struct flr_server_rec srv;
    char why[512], path[FLR_PATH_MAX], *data, text[4096];
    const char *job;
    uint32_t self, shard = UINT32_MAX, other = UINT32_MAX;
    uint64_t epoch = 0, lo = 0, hi = 0;
    int len;

    if (argc == 6 && strcmp(argv[1], "probe") == 0) {
        flr_proto_limits_default(&lim);
        msgpack_zone_init(&zone, 4096);
        return probe(argv);
    }
    if (argc != 4) {
        fprintf(stderr,
                "usage: badreq ZK_HOSTS JOB SERVER_ID | badreq probe URL JOB SHARD EPOCH\n");
        return 2;
    }
    job = argv[2];
    self = (uint32_t)atoi(argv[3]);
    flr_proto_limits_default(&lim);
    msgpack_zone_init(&zone, 4096);
    if (flr_zk_open(&zk, argv[1], 4000, 5000, why, sizeof(why)) != 0) {
        fprintf(stderr, "badreq: %s\n", why);
        return 1;
    }
    flr_job_path(path, sizeof(path), job, "/spec");
    if (flr_zk_get(zk, path, 0, &data, &len, NULL, NULL) != 0 ||
        flr_spec_from_json(&spec, data, why, sizeof(why)) != 0) {
        fprintf(stderr, "badreq: cannot read the job spec\n");
        return 1;
    }
    free(data);
    flr_job_node(path, sizeof(path), job, "servers", self);
    if (flr_zk_get(zk, path, 0, &data, &len, NULL, NULL) != 0 ||
        flr_server_rec_from_json(&srv, data, (size_t)len) != 0) {
        fprintf(stderr, "badreq: cannot read server %u\n", self);
        return 1;
    }
    free(data);
    for (uint32_t s = 0; s < spec.num_shards; s++) {
        struct flr_shard_rec rec;
        flr_job_node(path, sizeof(path), job, "shards", s);
        if (flr_zk_get(zk, path, 0, &data, &len, NULL, NULL) != 0)
            continue;
        if (flr_shard_rec_from_json(&rec, data, (size_t)len) == 0) {
            if (rec.owner == self && shard == UINT32_MAX) {
                shard = s;
                epoch = rec.epoch;
            } else if (rec.owner != self) {
                other = s;
            }
        }
        free(data);
    }
    if (shard == UINT32_MAX) {
        fprintf(stderr, "badreq: server %u owns no shard\n", self);
        return 1;
    }
    if (flr_conn_open(&conn, srv.endpoint, (size_t)64 << 20, why, sizeof(why)) != 0) {
        fprintf(stderr, "badreq: %s\n", why);
        return 1;
    }
    const struct flr_table_spec *t = &spec.tables[0];
    flr_shard_dense_range(&spec, t, shard, &lo, &hi);
    uint64_t keys[2] = {flr_key(t->id, lo), flr_key(t->id, lo + 1 < hi ? lo + 1 : lo)};
    uint32_t nk = hi - lo >= 2 ? 2 : 1;
    float *vals = calloc((size_t)2 * t->dim, sizeof(float));
    struct flr_msg base = {.type = FLR_MSG_PULL,
                           .job = job,
                           .job_len = (uint32_t)strlen(job),
                           .sender = 0,
                           .shard = shard,
                           .shard_epoch = epoch,
                           .request_id = 424242,
                           .table = t->id,
                           .clock = -1,
                           .keys = keys,
                           .nkeys = nk};
    struct flr_msg m;

    /* 1. Bytes that are not msgpack at all. */
    {
        unsigned char junk[100];
        struct flr_rng r;
        flr_rng_seed(&r, 7);
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (unsigned char)flr_rng_next(&r);
        junk[0] = 0x95; /* an array of 5: wrong length for any message */
        expect("garbage bytes", exchange_raw(conn, junk, sizeof(junk), text, sizeof(text)),
               FLR_EBAD_REQUEST, text);
    }
    /* 2. Wrong magic. */
    {
        size_t n = flr_msg_encoded_size(&base);
        unsigned char *buf = malloc(n);
        flr_msg_encode_into(&base, buf, NULL);
        unsigned char *p = memmem(buf, n, "FLR1", 4);
        if (p)
            p[3] = '9';
        expect("wrong magic", exchange_raw(conn, buf, n, text, sizeof(text)), FLR_EBAD_REQUEST,
               text);
        free(buf);
    }
    m = base;
    m.job = "someone-else";
    m.job_len = 12;
    expect("wrong job", exchange(conn, &m, text, sizeof(text)), FLR_EWRONG_JOB, text);
    m = base;
    m.shard = other != UINT32_MAX ? other : spec.num_shards + 5;
    expect("shard not owned", exchange(conn, &m, text, sizeof(text)), FLR_ENOT_OWNER, text);
    m = base;
    m.shard_epoch = epoch + 100;
    expect("stale epoch", exchange(conn, &m, text, sizeof(text)), FLR_EWRONG_EPOCH, text);
    m = base;
    m.table = 99;
    for (int i = 0; i < 2; i++)
        keys[i] = flr_key(99, i);
    expect("unknown table", exchange(conn, &m, text, sizeof(text)), FLR_EUNKNOWN_TABLE, text);
    keys[0] = flr_key(t->id, lo);
    keys[1] = flr_key(t->id, lo + 1 < hi ? lo + 1 : lo);
    m = base;
    {
        uint64_t far[1] = {flr_key(t->id, t->rows + 1000)};
        m.keys = far;
        m.nkeys = 1;
        expect("key out of range", exchange(conn, &m, text, sizeof(text)), FLR_EKEY_RANGE, text);
    }
    m = base;
    m.type = FLR_MSG_PUSH;
    m.vals = vals;
    m.vals_len = (uint64_t)nk * t->dim * 4 - 4 * nk; /* one float short per key */
    expect("wrong value length", exchange(conn, &m, text, sizeof(text)), FLR_EVALUE_LEN, text);
    m.vals_len = (uint64_t)nk * t->dim * 4;
    vals[1] = NAN;
    expect("NaN gradient", exchange(conn, &m, text, sizeof(text)), FLR_ENAN_GRAD, text);
    vals[1] = INFINITY;
    expect("infinite gradient", exchange(conn, &m, text, sizeof(text)), FLR_ENAN_GRAD, text);
    vals[1] = 0;
    if (nk == 2) {
        uint64_t rev[2] = {keys[1], keys[0]};
        m.keys = rev;
        expect("unsorted keys", exchange(conn, &m, text, sizeof(text)), FLR_EUNSORTED, text);
    }
    m = base;
    m.type = FLR_MSG_STATUS;
    if (exchange(conn, &m, text, sizeof(text)) != 0 || !strstr(text, "\"NAN_GRAD\":2") ||
        !strstr(text, "\"WRONG_EPOCH\"") || !strstr(text, "\"BAD_REQUEST\"")) {
        printf("not ok - status counts the rejections: %s\n", text);
        failures++;
    } else {
        printf("ok - status counts the rejections: %s\n", text);
    }
    free(vals);
    flr_conn_close(conn);
    flr_zk_close(zk);
    msgpack_zone_destroy(&zone);
    printf("%d passed, %d failed\n", 13 - failures, failures);
    return failures ? 1 : 0;
}
