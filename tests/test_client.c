/*
 * test_client.c - the client library against a real ZooKeeper and two real flr-server
 * processes: routing of dense and sparse keys to shards, push and pull semantics, async
 * operations in flight together, request splitting, input errors, and transparent
 * re-routing when a shard moves to another server.  The whole group runs twice: under
 * recovery 'none', and under 'flr', where the client also keeps copies and an update log
 * and serves them on its own endpoint.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/proto.h"
#include "common/shardmap.h"
#include "common/transport.h"
#include "common/util.h"
#include "coordinator/coord.h"
#include "testzk.h"
#include "worker/flr_client.h"
#include "worker/keeper.h"

#define DENSE  0
#define SPARSE 1
#define DROWS  1000
#define DDIM   4
#define SDIM   2

static struct flr_testzk zk;
static struct coord co;
static pid_t servers[3]; /* the third is started by a test */
static pid_t stopped;    /* a server process stopped by a test, killed at teardown if still there */
static struct flr_client *cl;
static const char *recovery = "none"; /* the mode of the group that runs */

static pid_t spawn_server(int id)
{
    char path[512], ids[16];
    const char *b = getenv("FLR_BUILDDIR");
    pid_t pid;

    snprintf(path, sizeof(path), "%s/flr-server", b ? b : ".");
    snprintf(ids, sizeof(ids), "%d", id);
    if ((pid = fork()) == 0) {
        /* The server must not outlive a test that crashed. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        char *argv[] = {path,   "--zk", zk.hosts,      "--job",   "ct",
                        "--id", ids,    "--log-level", "warning", "--session-timeout",
                        "2000", NULL};
        execv(path, argv);
        _exit(127);
    }
    return pid;
}

static void build_spec(struct flr_job_spec *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->job, sizeof(s->job), "ct");
    snprintf(s->model, sizeof(s->model), "test");
    s->consistency = FLR_ASP;
    s->num_workers = 1;
    s->num_servers = 2;
    s->num_shards = 4;
    snprintf(s->recovery, sizeof(s->recovery), "%s", recovery);
    s->k = 2;
    s->ntables = 2;
    s->tables[0] = (struct flr_table_spec){.id = DENSE,
                                           .name = "d",
                                           .kind = FLR_TABLE_DENSE,
                                           .rows = DROWS,
                                           .dim = DDIM,
                                           .optim = FLR_OPT_SGD,
                                           .lr = 1.0f};
    s->tables[1] = (struct flr_table_spec){.id = SPARSE,
                                           .name = "s",
                                           .kind = FLR_TABLE_SPARSE,
                                           .dim = SDIM,
                                           .optim = FLR_OPT_SGD,
                                           .lr = 1.0f,
                                           .seed = 5};
}

static int group_setup(void **state)
{
    char why[512];
    struct flr_client_opts o;

    (void)state;
    if (flr_testzk_start(&zk) != 0)
        return -1;
    build_spec(&co.spec);
    snprintf(co.cfg.job, sizeof(co.cfg.job), "ct");
    co.cfg.reset = 1;
    co.cfg.server_timeout_ms = 20000;
    if (flr_zk_open(&co.zk, zk.hosts, 4000, 5000, why, sizeof(why)) != 0 ||
        coord_create(&co, why, sizeof(why)) != 0) {
        fprintf(stderr, "setup: %s\n", why);
        return -1;
    }
    servers[0] = spawn_server(0);
    servers[1] = spawn_server(1);
    if (coord_wait_servers(&co, why, sizeof(why)) != 0 ||
        coord_assign(&co, why, sizeof(why)) != 0) {
        fprintf(stderr, "setup: %s\n", why);
        return -1;
    }
    flr_client_opts_default(&o);
    o.zk = zk.hosts;
    o.job = "ct";
    o.timeout_ms = 10000;
    o.max_keys = 100; /* small, so that requests are split into many messages */
    if (flr_client_open(&cl, &o, why, sizeof(why)) != 0) {
        fprintf(stderr, "setup: client: %s\n", why);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    flr_client_close(cl);
    cl = NULL;
    if (stopped > 0) {
        kill(stopped, SIGKILL);
        waitpid(stopped, NULL, 0);
        stopped = 0;
    }
    for (int i = 0; i < 3; i++)
        if (servers[i] > 0) {
            kill(servers[i], SIGTERM);
            kill(servers[i], SIGCONT); /* a test that failed may have left it stopped */
            waitpid(servers[i], NULL, 0);
            servers[i] = 0;
        }
    if (co.zk)
        flr_zk_close(co.zk);
    co.zk = NULL;
    flr_testzk_stop(&zk);
    return 0;
}

static void dense_pull_of_fresh_rows_is_the_initial_value(void **state)
{
    uint64_t keys[DROWS];
    float *v = malloc(sizeof(float) * DROWS * DDIM);
    (void)state;
    for (int i = 0; i < DROWS; i++)
        keys[i] = FLR_KEY(DENSE, i);
    for (int i = 0; i < DROWS * DDIM; i++)
        v[i] = 99;
    assert_int_equal(flr_pull(cl, DENSE, keys, DROWS, v), 0);
    for (int i = 0; i < DROWS * DDIM; i++)
        assert_true(v[i] == 0.0f);
    free(v);
}

static void push_then_pull_applies_sgd_across_shards(void **state)
{
    uint64_t keys[DROWS];
    float *g = malloc(sizeof(float) * DROWS * DDIM), *v = malloc(sizeof(float) * DROWS * DDIM);
    (void)state;
    for (int i = 0; i < DROWS; i++)
        keys[i] = FLR_KEY(DENSE, i);
    for (int i = 0; i < DROWS * DDIM; i++)
        g[i] = (float)(i % 7);
    assert_int_equal(flr_push(cl, DENSE, keys, DROWS, g), 0);
    assert_int_equal(flr_push(cl, DENSE, keys, DROWS, g), 0);
    assert_int_equal(flr_pull(cl, DENSE, keys, DROWS, v), 0);
    for (int i = 0; i < DROWS * DDIM; i++)
        assert_true(v[i] == -2.0f * (float)(i % 7));
    free(g);
    free(v);
}

static void sparse_keys_are_routed_and_answered_in_caller_order(void **state)
{
    enum { N = 3000 };
    uint64_t *keys = malloc(sizeof(*keys) * N);
    float *g = malloc(sizeof(float) * N * SDIM), *v = malloc(sizeof(float) * N * SDIM);
    struct flr_rng r;
    (void)state;
    flr_rng_seed(&r, 11);
    keys[0] = FLR_KEY(SPARSE, 1 + flr_rng_next(&r) % 1000);
    for (int i = 1; i < N; i++)
        keys[i] = keys[i - 1] + 1 + flr_rng_next(&r) % 1000;
    /* Each key gets a gradient that encodes its own position. */
    for (int i = 0; i < N; i++) {
        g[i * SDIM] = (float)i;
        g[i * SDIM + 1] = (float)-i;
    }
    assert_int_equal(flr_push(cl, SPARSE, keys, N, g), 0);
    assert_int_equal(flr_pull(cl, SPARSE, keys, N, v), 0);
    for (int i = 0; i < N; i++) {
        assert_true(v[i * SDIM] == (float)-i);
        assert_true(v[i * SDIM + 1] == (float)i);
    }
    free(keys);
    free(g);
    free(v);
}

static void async_operations_run_together(void **state)
{
    uint64_t dk[10], sk[10];
    float dv[10 * DDIM], sv[10 * SDIM], sg[10 * SDIM];
    struct flr_op *a, *b, *c;
    (void)state;
    for (int i = 0; i < 10; i++) {
        dk[i] = FLR_KEY(DENSE, 990 + i);
        sk[i] = FLR_KEY(SPARSE, 5000000 + i * 17);
    }
    for (int i = 0; i < 10 * SDIM; i++)
        sg[i] = 1;
    assert_int_equal(flr_push_async(cl, SPARSE, sk, 10, sg, &c), 0);
    assert_int_equal(flr_wait(c), 0);
    assert_int_equal(flr_pull_async(cl, DENSE, dk, 10, dv, &a), 0);
    assert_int_equal(flr_pull_async(cl, SPARSE, sk, 10, sv, &b), 0);
    assert_int_equal(flr_wait(b), 0);
    assert_int_equal(flr_wait(a), 0);
    for (int i = 0; i < 10 * SDIM; i++)
        assert_true(sv[i] == -1.0f);
}

static void bad_input_is_refused_before_sending(void **state)
{
    uint64_t keys[3] = {FLR_KEY(DENSE, 5), FLR_KEY(DENSE, 3), FLR_KEY(DENSE, 9)};
    float v[3 * DDIM];
    (void)state;
    assert_int_equal(flr_pull(cl, DENSE, keys, 3, v), FLR_EUNSORTED);
    keys[1] = FLR_KEY(DENSE, 5);
    assert_int_equal(flr_pull(cl, DENSE, keys, 3, v), FLR_EUNSORTED);
    assert_int_equal(flr_pull(cl, 7, keys, 1, v), FLR_EUNKNOWN_TABLE);
    keys[0] = FLR_KEY(SPARSE, 1);
    assert_int_equal(flr_pull(cl, DENSE, keys, 1, v), FLR_EKEY_RANGE);
}

static void server_errors_reach_the_caller_with_a_reason(void **state)
{
    uint64_t keys[1] = {FLR_KEY(DENSE, DROWS + 5)};
    float v[DDIM];
    (void)state;
    /* Placement sends an out-of-range row nowhere sensible: the client reports it. */
    int rv = flr_pull(cl, DENSE, keys, 1, v);
    assert_int_not_equal(rv, 0);
}

static void clock_advances(void **state)
{
    (void)state;
    int64_t t = flr_client_clock(cl);
    assert_int_equal(flr_clock(cl), 0);
    assert_int_equal(flr_client_clock(cl), t + 1);
}

/* Our worker record from ZooKeeper (NULL when absent). */
static json_t *worker_record(void)
{
    char path[FLR_PATH_MAX], *data;
    json_error_t err;
    json_t *doc;
    int len;

    flr_job_node(path, sizeof(path), "ct", "workers", 0);
    if (flr_zk_get(co.zk, path, 0, &data, &len, NULL, NULL) != 0)
        return NULL;
    doc = json_loadb(data, (size_t)len, 0, &err);
    free(data);
    return doc;
}

/* One request to the worker's endpoint; *r points into *reply, which the caller frees. */
static void ask_worker(struct flr_conn *conn, int type, uint32_t shard, uint32_t table,
                       uint64_t cursor, struct flr_msg *r, nng_msg **reply)
{
    static msgpack_zone zone;
    static int zone_ready;
    struct flr_proto_limits lim;
    struct flr_msg m = {0};
    nng_msg *req;
    char why[256];

    if (!zone_ready)
        zone_ready = msgpack_zone_init(&zone, 1024);
    flr_proto_limits_default(&lim);
    m.type = type;
    m.job = "ct";
    m.job_len = 2;
    m.sender = 7;
    m.shard = shard;
    m.request_id = 1;
    m.table = table;
    m.aux = cursor;
    m.reason = "";
    assert_int_equal(flr_msg_to_nng(&req, &m, NULL), 0);
    assert_int_equal(flr_call_sync(conn, req, 5000, reply), 0);
    assert_int_equal(
        flr_msg_decode(r, nng_msg_body(*reply), nng_msg_len(*reply), &lim, &zone, why, sizeof(why)),
        0);
    assert_int_equal(r->type, flr_reply_type(type));
    assert_int_equal(r->status, 0);
}

static uint64_t manifest_u64(struct flr_conn *conn, uint32_t shard, const char *field)
{
    struct flr_msg r;
    nng_msg *reply;
    json_error_t err;
    json_t *doc;
    uint64_t v;

    ask_worker(conn, FLR_MSG_MANIFEST_REQ, shard, 0, 0, &r, &reply);
    doc = json_loadb(r.text, r.text_len, 0, &err);
    assert_non_null(doc);
    assert_true(json_is_integer(json_object_get(doc, field)));
    v = (uint64_t)json_integer_value(json_object_get(doc, field));
    json_decref(doc);
    nng_msg_free(reply);
    return v;
}

/*
 * Under recovery flr the worker registers an endpoint that answers MANIFEST_REQ and
 * REBUILD_REQ with what it sent and pulled: a push is in the log with the next pseq (or
 * already truncated), a pulled row of a slot-free table is a copy with the value pulled.
 * Under 'none' there is no endpoint and no store.
 */
static void flr_worker_serves_its_log_and_copies(void **state)
{
    uint64_t key = FLR_KEY(SPARSE, 123456789), sent, inc, cursor = 0;
    float g[SDIM] = {0.25f, -4.0f}, v[SDIM];
    uint32_t shard = flr_shard_of_key(&co.spec, key);
    json_t *rec = worker_record();
    struct flr_conn *conn;
    struct flr_msg r;
    nng_msg *reply;
    char why[256];
    int found = 0;

    (void)state;
    assert_non_null(rec);
    if (strcmp(recovery, "flr") != 0) {
        assert_string_equal(json_string_value(json_object_get(rec, "endpoint")), "");
        assert_null(json_object_get(rec, "log_entries"));
        json_decref(rec);
        return;
    }
    /* Progress was published at the first clock, with the store's counters (the log may
     * already be empty: the servers report pushes covered as soon as pulls copy them). */
    assert_true(json_integer_value(json_object_get(rec, "copy_bytes")) > 0);
    assert_true(json_is_integer(json_object_get(rec, "log_bytes")));
    assert_true(json_is_integer(json_object_get(rec, "log_entries")));
    assert_int_equal(flr_conn_open(&conn, json_string_value(json_object_get(rec, "endpoint")),
                                   (size_t)64 << 20, why, sizeof(why)),
                     0);
    json_decref(rec);

    inc = manifest_u64(conn, shard, "incarnation");
    assert_true((int64_t)(inc >> 22) > flr_wall_ms() - 600000 &&
                (int64_t)(inc >> 22) <= flr_wall_ms());
    sent = manifest_u64(conn, shard, "pseq_sent");
    assert_true(sent > inc); /* the earlier tests pushed to every shard */
    assert_int_equal(flr_push(cl, SPARSE, &key, 1, g), 0);
    assert_int_equal(manifest_u64(conn, shard, "pseq_sent"), sent + 1);
    if (manifest_u64(conn, shard, "pseq_truncated") < sent + 1) {
        /* Not covered yet: the push is in the log, as it was sent. */
        do {
            ask_worker(conn, FLR_MSG_REBUILD_REQ, shard, FLR_REBUILD_LOG, cursor, &r, &reply);
            if (r.nkeys == 1 && r.seq == sent + 1) {
                found = 1;
                assert_int_equal(r.table, SPARSE);
                assert_int_equal(r.clock, flr_client_clock(cl));
                assert_true(flr_load_u64(r.keys) == key);
                assert_memory_equal(r.vals, g, sizeof(g));
            }
            cursor = r.aux;
            nng_msg_free(reply);
        } while (cursor != UINT64_MAX);
        assert_true(found);
    }

    /* The pulled row is kept with the value the pull returned, stamped. */
    assert_int_equal(flr_pull(cl, SPARSE, &key, 1, v), 0);
    found = 0;
    cursor = 0;
    do {
        ask_worker(conn, FLR_MSG_REBUILD_REQ, shard, SPARSE, cursor, &r, &reply);
        assert_int_equal(r.vals_len, (uint64_t)r.nkeys * (SDIM * 4 + 12));
        for (uint32_t i = 0; i < r.nkeys; i++)
            if (flr_load_u64((const unsigned char *)r.keys + 8 * i) == key) {
                found = 1;
                assert_memory_equal((const unsigned char *)r.vals + i * (SDIM * 4 + 12), v,
                                    sizeof(v));
            }
        cursor = r.aux;
        nng_msg_free(reply);
    } while (cursor != UINT64_MAX);
    assert_true(found);
    flr_conn_close(conn);
}

/* Reads a shard's record; returns its version. */
static int32_t read_shard(uint32_t shard, struct flr_shard_rec *rec)
{
    char path[FLR_PATH_MAX], *data;
    int len;
    int32_t ver;

    flr_job_node(path, sizeof(path), "ct", "shards", shard);
    assert_int_equal(flr_zk_get(co.zk, path, 0, &data, &len, &ver, NULL), 0);
    assert_int_equal(flr_shard_rec_from_json(rec, data, (size_t)len), 0);
    free(data);
    return ver;
}

/* Writes a shard's record over version ver, as the coordinator does. */
static void write_shard(uint32_t shard, const struct flr_shard_rec *rec, int32_t ver)
{
    char path[FLR_PATH_MAX], *json;

    flr_job_node(path, sizeof(path), "ct", "shards", shard);
    assert_int_equal(flr_shard_rec_to_json(rec, &json), 0);
    assert_int_equal(flr_zk_set(co.zk, path, json, (int)strlen(json), ver), 0);
    free(json);
}

/* Moves shard 0 to the other server at a new epoch. */
static void move_shard0(void)
{
    struct flr_shard_rec rec;
    int32_t ver = read_shard(0, &rec);

    rec.owner = rec.owner == 0 ? 1 : 0;
    rec.epoch++;
    write_shard(0, &rec, ver);
}

static void requests_follow_a_shard_that_moved(void **state)
{
    uint64_t keys[DROWS];
    float *v = malloc(sizeof(float) * DROWS * DDIM);
    uint64_t lo, hi;
    (void)state;
    for (int i = 0; i < DROWS; i++)
        keys[i] = FLR_KEY(DENSE, i);
    move_shard0();
    flr_shard_dense_range(&co.spec, &co.spec.tables[0], 0, &lo, &hi);
    /* The client still holds the old epoch.  Once the old owner has seen the new record it
     * answers NOT_OWNER (or the new owner WRONG_EPOCH) and the client re-reads the map and
     * retries on its own.  Until then the old owner still serves: allow it a bounded time
     * to notice.  With recovery 'none' the moved shard restarts from its initialiser. */
    int moved = 0;
    for (int attempt = 0; attempt < 100 && !moved; attempt++) {
        assert_int_equal(flr_pull(cl, DENSE, keys, DROWS, v), 0);
        moved = v[lo * DDIM + 1] == 0.0f;
        if (!moved)
            usleep(50 * 1000);
    }
    assert_true(moved);
    for (uint64_t r = lo; r < hi; r++)
        assert_true(v[r * DDIM] == 0.0f);
    assert_true(v[hi * DDIM + 1] == -2.0f * (float)((hi * DDIM + 1) % 7));
    free(v);
}

/* Sets a shard's "rebuild" flag at its epoch, as the coordinator does while a new owner
 * rebuilds it and once it serves.  Its owner, serving that epoch already, ignores it. */
static void flag_rebuild(uint32_t shard, int on)
{
    struct flr_shard_rec rec;
    int32_t ver = read_shard(shard, &rec);

    rec.rebuild = on;
    write_shard(shard, &rec, ver);
    usleep(300 * 1000); /* the client's watch fires */
}

/*
 * While a shard's owner rebuilds it, a push for it is not sent: its bytes would compete
 * with the rebuild's stream, and the push is in the worker's log anyway.  A pull goes at
 * once.  The push goes when the coordinator clears the flag.  (Shard 1: shard 0 was moved
 * by hand above, without the frontiers a real move or rebuild gives its new owner.)
 */
static void push_waits_while_its_shard_rebuilds(void **state)
{
    uint64_t keys[DROWS], lo, hi;
    float *g = malloc(sizeof(float) * DROWS * DDIM), *before = malloc(sizeof(float) * DROWS * DDIM),
          *v = malloc(sizeof(float) * DROWS * DDIM);
    struct flr_op *op;
    uint32_t n;
    (void)state;

    flr_shard_dense_range(&co.spec, &co.spec.tables[0], 1, &lo, &hi);
    n = (uint32_t)(hi - lo);
    assert_true(n > 0);
    for (uint64_t r = lo; r < hi; r++)
        keys[r - lo] = FLR_KEY(DENSE, r);
    for (uint32_t i = 0; i < n * DDIM; i++)
        g[i] = 1.0f;
    assert_int_equal(flr_pull(cl, DENSE, keys, n, before), 0);

    flag_rebuild(1, 1);
    assert_int_equal(flr_push_async(cl, DENSE, keys, n, g, &op), 0);
    usleep(500 * 1000);
    assert_int_equal(flr_pull(cl, DENSE, keys, n, v), 0);
    assert_memory_equal(v, before, (size_t)n * DDIM * sizeof(float)); /* not applied */

    flag_rebuild(1, 0);
    assert_int_equal(flr_wait(op), 0);
    assert_int_equal(flr_pull(cl, DENSE, keys, n, v), 0);
    for (uint32_t i = 0; i < n * DDIM; i++)
        assert_true(v[i] == before[i] - 1.0f); /* SGD, lr 1: applied once */
    free(g);
    free(before);
    free(v);
}

/* Whether server id's node exists now (its process registered and its session lives). */
static int server_node_exists(int id)
{
    char path[FLR_PATH_MAX];
    int exists = 0;

    flr_job_node(path, sizeof(path), "ct", "servers", (uint32_t)id);
    assert_int_equal(flr_zk_exists(co.zk, path, 0, &exists), 0);
    return exists;
}

/*
 * The owner of shard 0 stops answering (SIGSTOP: its connection stays open, so nothing
 * fails) while a pull waits on it; its session expires and a new process of the same
 * server id takes its place at another endpoint, with the shard record unchanged.  The
 * pulls must move to the new process as soon as it registers, not wait out their timeout
 * on the old connection.  Two are in flight, waited on in turn as the training loop does
 * with one per table: the wait on the first reads the map change, and the second must
 * follow it all the same.
 */
static void request_in_flight_follows_a_replaced_server(void **state)
{
    uint64_t keys[DROWS], lo, hi;
    float *v = malloc(sizeof(float) * DROWS * DDIM), *v2 = malloc(sizeof(float) * DROWS * DDIM);
    struct flr_shard_rec rec;
    struct flr_op *op, *op2;
    pid_t old;
    int owner;
    int64_t t0;
    (void)state;

    (void)read_shard(0, &rec);
    owner = (int)rec.owner;
    assert_true(owner == 0 || owner == 1);
    flr_shard_dense_range(&co.spec, &co.spec.tables[0], 0, &lo, &hi);
    for (uint64_t r = lo; r < hi; r++)
        keys[r - lo] = FLR_KEY(DENSE, r);

    old = stopped = servers[owner];
    assert_int_equal(kill(old, SIGSTOP), 0);
    assert_int_equal(flr_pull_async(cl, DENSE, keys, (uint32_t)(hi - lo), v, &op), 0);
    assert_int_equal(flr_pull_async(cl, DENSE, keys, (uint32_t)(hi - lo), v2, &op2), 0);
    for (int i = 0; i < 300 && server_node_exists(owner); i++)
        usleep(50 * 1000);
    assert_false(server_node_exists(owner));
    servers[owner] = spawn_server(owner);
    for (int i = 0; i < 300 && !server_node_exists(owner); i++)
        usleep(50 * 1000);
    assert_true(server_node_exists(owner));

    /* A pull's own timeout is 10 s; following the new record takes well under a second. */
    t0 = flr_now_ms();
    assert_int_equal(flr_wait(op), 0);
    assert_int_equal(flr_wait(op2), 0);
    assert_true(flr_now_ms() - t0 < 3000);
    assert_memory_equal(v, v2, (size_t)(hi - lo) * DDIM * sizeof(float));
    kill(old, SIGKILL);
    waitpid(old, NULL, 0);
    stopped = 0;
    free(v);
    free(v2);
}

/* How many pulls server id's shard has answered (its STATUS); -1 when it holds none or
 * does not answer.  Asserts nothing: it runs while a server is stopped and another thread
 * waits in the client, which a failed assertion would leave behind. */
static long long server_pulls(int id, uint32_t shard)
{
    static msgpack_zone zone;
    static int zone_ready;
    char path[FLR_PATH_MAX], *data, why[256];
    struct flr_proto_limits lim;
    struct flr_server_rec rec;
    struct flr_conn *conn;
    struct flr_msg m = {0}, r;
    nng_msg *req, *reply = NULL;
    json_error_t err;
    json_t *doc = NULL, *sh;
    long long pulls = -1;
    size_t i;
    int len;

    if (!zone_ready)
        zone_ready = msgpack_zone_init(&zone, 1024);
    flr_proto_limits_default(&lim);
    flr_job_node(path, sizeof(path), "ct", "servers", (uint32_t)id);
    if (flr_zk_get(co.zk, path, 0, &data, &len, NULL, NULL) != 0)
        return -1;
    len = flr_server_rec_from_json(&rec, data, (size_t)len);
    free(data);
    if (len != 0 || flr_conn_open(&conn, rec.endpoint, 1 << 20, why, sizeof(why)) != 0)
        return -1;
    m.type = FLR_MSG_STATUS;
    m.job = "ct";
    m.job_len = 2;
    m.sender = 7;
    m.request_id = 1;
    m.reason = "";
    if (flr_msg_to_nng(&req, &m, NULL) == 0 && flr_call_sync(conn, req, 2000, &reply) == 0 &&
        flr_msg_decode(&r, nng_msg_body(reply), nng_msg_len(reply), &lim, &zone, why,
                       sizeof(why)) == 0 &&
        r.status == 0)
        doc = json_loadb(r.text, r.text_len, 0, &err);
    json_array_foreach(json_object_get(doc, "shards"), i, sh)
    {
        if (json_integer_value(json_object_get(sh, "shard")) == (json_int_t)shard)
            pulls = (long long)json_integer_value(json_object_get(sh, "pulls"));
    }
    json_decref(doc);
    if (reply)
        nng_msg_free(reply);
    flr_conn_close(conn);
    return pulls;
}

struct waiter {
    struct flr_op *op;
    int rv;
};

/* The worker's thread: waits for an operation, as the training loop does. */
static void *wait_op(void *arg)
{
    struct waiter *w = arg;
    w->rv = flr_wait(w->op);
    return NULL;
}

/*
 * A pull covers shard 0 and a shard of another server.  Shard 0 is fenced (RECOVERING)
 * and the other server stops answering (SIGSTOP), so the pull's request to it stays in
 * flight.  When shard 0 serves again on a third server, the pull's request for it must go
 * there at once, not wait for the request in flight to the other server: under BSP that
 * one could be held for a worker that waits for this one's clock on the new owner.
 */
static void retried_request_goes_without_waiting_for_the_others(void **state)
{
    uint64_t keys[2 * DROWS], lo0, hi0, lo, hi;
    float *v = malloc(sizeof(float) * 2 * DROWS * DDIM);
    struct flr_shard_rec rec0, rec;
    struct waiter w = {0};
    pthread_t th;
    uint32_t other = 1, n = 0;
    long long pulls = -1;
    char path[FLR_PATH_MAX], *json;
    int32_t ver;
    int moved;
    pid_t held;
    (void)state;

    (void)read_shard(0, &rec0);
    while (other < co.spec.num_shards && (read_shard(other, &rec), rec.owner == rec0.owner))
        other++;
    assert_true(other < co.spec.num_shards);
    assert_true(rec.owner < 2);
    flr_shard_dense_range(&co.spec, &co.spec.tables[0], 0, &lo0, &hi0);
    flr_shard_dense_range(&co.spec, &co.spec.tables[0], other, &lo, &hi);
    for (uint64_t r = lo0; r < hi0; r++)
        keys[n++] = FLR_KEY(DENSE, r);
    for (uint64_t r = lo; r < hi; r++)
        keys[n++] = FLR_KEY(DENSE, r);

    servers[2] = spawn_server(2);
    for (int i = 0; i < 300 && !server_node_exists(2); i++)
        usleep(50 * 1000);
    assert_true(server_node_exists(2));
    ver = read_shard(0, &rec0);
    rec0.state = FLR_SHARD_RECOVERING;
    rec0.epoch++;
    write_shard(0, &rec0, ver);
    usleep(300 * 1000); /* the client's watch fires */

    ver = read_shard(0, &rec0);
    rec0.owner = 2;
    rec0.state = FLR_SHARD_ACTIVE;
    rec0.epoch++;
    assert_int_equal(flr_shard_rec_to_json(&rec0, &json), 0);
    flr_job_node(path, sizeof(path), "ct", "shards", 0);

    /* Stopped for at most about a second: well within the server's 2 s session.  Nothing
     * below asserts until it runs again and the waiting thread is joined. */
    held = servers[rec.owner];
    assert_int_equal(kill(held, SIGSTOP), 0);
    assert_int_equal(flr_pull_async(cl, DENSE, keys, n, v, &w.op), 0);
    assert_int_equal(pthread_create(&th, NULL, wait_op, &w), 0);
    moved = flr_zk_set(co.zk, path, json, (int)strlen(json), ver);
    for (int i = 0; i < 40 && moved == 0 && pulls < 1; i++) {
        usleep(25 * 1000);
        pulls = server_pulls(2, 0);
    }
    kill(held, SIGCONT);
    pthread_join(th, NULL);
    free(json);
    assert_int_equal(moved, 0);
    assert_true(pulls >= 1);
    assert_int_equal(w.rv, 0);
    free(v);
}

/*
 * A finished worker leaves (last test: the servers no longer count this worker after).
 * Under flr every shard is asked with LEAVE; with no other worker to copy its rows to,
 * each releases it at once, and the worker is then removed: its pulls are refused.  Under
 * none there is nothing to hand over and nothing is sent.
 */
static void finished_worker_leaves(void **state)
{
    uint64_t key = FLR_KEY(DENSE, 3);
    float v[DDIM];

    (void)state;
    assert_int_equal(flr_client_leave(cl, 5000), 0);
    if (strcmp(recovery, "flr") != 0) {
        assert_int_equal(flr_pull(cl, DENSE, &key, 1, v), 0);
        return;
    }
    assert_int_equal(flr_pull(cl, DENSE, &key, 1, v), FLR_EWORKER_REMOVED);
    assert_non_null(strstr(flr_client_last_error(cl), "removed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dense_pull_of_fresh_rows_is_the_initial_value),
        cmocka_unit_test(push_then_pull_applies_sgd_across_shards),
        cmocka_unit_test(sparse_keys_are_routed_and_answered_in_caller_order),
        cmocka_unit_test(async_operations_run_together),
        cmocka_unit_test(bad_input_is_refused_before_sending),
        cmocka_unit_test(server_errors_reach_the_caller_with_a_reason),
        cmocka_unit_test(clock_advances),
        cmocka_unit_test(flr_worker_serves_its_log_and_copies),
        cmocka_unit_test(requests_follow_a_shard_that_moved),
        cmocka_unit_test(push_waits_while_its_shard_rebuilds),
        cmocka_unit_test(request_in_flight_follows_a_replaced_server),
        cmocka_unit_test(retried_request_goes_without_waiting_for_the_others),
        cmocka_unit_test(finished_worker_leaves),
    };
    int failed;

    recovery = "none";
    failed = cmocka_run_group_tests_name("recovery none", tests, group_setup, group_teardown);
    recovery = "flr";
    failed += cmocka_run_group_tests_name("recovery flr", tests, group_setup, group_teardown);
    return failed;
}
