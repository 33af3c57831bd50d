/*
 * test_shard.c - one shard's request handling over the real transport: ASP applies pushes
 * at once, BSP holds pulls until every worker has clocked and applies a clock's pushes in
 * worker order whatever their arrival order, SSP answers within the staleness bound, bad
 * requests are rejected without touching the shard and counted by code, and closing a
 * shard that holds requests releases them.
 *
 * The shard is driven as the server drives it: nng's threads only queue what they
 * receive, and the test's main thread, the shard's owner, decodes and handles each
 * request (see server/main.c).  Clients use asynchronous calls so that a test can keep a
 * pull waiting while it sends clocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/spec.h"
#include "common/transport.h"
#include "common/util.h"
#include "server/rebuild.h"
#include "server/shard.h"
#include "server/store.h"

#define JOB        "test"
#define EPOCH      1
#define SELF       100
#define NWORKERS   3
#define DENSE      0 /* table id: dense, DENSE_ROWS x DENSE_DIM, SGD lr 1, zeros */
#define DENSE_ROWS 8
#define DENSE_DIM  3
#define SPARSE     1 /* table id: sparse, dim SPARSE_DIM, SGD lr 1, uniform init */
#define SPARSE_DIM 2
#define WAIT_MS    5000 /* bound on every wait; the tests take milliseconds */
#define QCAP       64

/* ---- the server side: a queue filled by nng threads, drained by the owner -------------- */

struct qitem {
    struct flr_req *req;
    nng_msg *msg;
};

struct fixture {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct qitem q[QCAP];
    size_t qhead, qlen;

    struct flr_rep *rep;
    struct flr_conn *conn;
    struct flr_job_spec spec;
    struct flr_shard *sh;
    msgpack_zone zone;  /* requests, decoded by the owner */
    msgpack_zone rzone; /* replies, decoded by the test */
    struct flr_proto_limits lim;
    uint64_t next_id;
};

/* Runs on nng threads: queue and return, like the server. */
static void on_request(void *arg, struct flr_req *req, nng_msg *msg)
{
    struct fixture *f = arg;

    pthread_mutex_lock(&f->mu);
    if (f->qlen == QCAP) {
        pthread_mutex_unlock(&f->mu);
        nng_msg_free(msg);
        flr_rep_reply(req, NULL);
        return;
    }
    f->q[(f->qhead + f->qlen) % QCAP] = (struct qitem){req, msg};
    f->qlen++;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int dequeue(struct fixture *f, struct qitem *it, int timeout_ms)
{
    struct timespec ts;
    int got = 0;

    pthread_mutex_lock(&f->mu);
    if (f->qlen == 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)timeout_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&f->cv, &f->mu, &ts);
    }
    if (f->qlen > 0) {
        *it = f->q[f->qhead];
        f->qhead = (f->qhead + 1) % QCAP;
        f->qlen--;
        got = 1;
    }
    pthread_mutex_unlock(&f->mu);
    return got;
}

/* Handles at most one queued request on the owner (this) thread. */
static void serve_one(struct fixture *f, int timeout_ms)
{
    struct qitem it;
    struct flr_msg m;
    char why[FLR_REASON_MAX];
    int rv;

    if (!dequeue(f, &it, timeout_ms))
        return;
    if (!f->sh) {
        nng_msg_free(it.msg);
        flr_rep_reply(it.req, NULL);
        fail_msg("a request arrived while no shard was open");
    }
    rv = flr_msg_decode(&m, nng_msg_body(it.msg), nng_msg_len(it.msg), &f->lim, &f->zone, why,
                        sizeof(why));
    if (rv != 0) {
        nng_msg_free(it.msg);
        flr_rep_reply(it.req, NULL);
        fail_msg("the test sent an undecodable request: %s", why);
    }
    (void)flr_shard_handle(f->sh, it.req, it.msg, &m);
}

/* ---- the client side ---------------------------------------------------------------- */

struct pending {
    struct flr_call call;
    atomic_int done;
};

static void pending_done(struct flr_call *call)
{
    struct pending *p = call->arg;
    atomic_store(&p->done, 1);
}

static void pending_init(struct pending *p)
{
    assert_int_equal(flr_call_init(&p->call), 0);
    p->call.done = pending_done;
    p->call.arg = p;
    atomic_store(&p->done, 0);
}

static int pending_is_done(struct pending *p)
{
    return atomic_load(&p->done);
}

/* What a reply said, copied out of its message. */
struct reply {
    int type;
    int status;
    uint64_t stamp;
    uint64_t aux;    /* q: the covered pseq */
    int64_t clock;   /* c: the closed clock (pull replies) */
    uint32_t nextra; /* x: the frontier vector */
    uint64_t extra[8];
    uint32_t nvals;
    float vals[64];
    char reason[FLR_REASON_MAX];
};

static uint64_t next_request_id(struct fixture *f)
{
    return ++f->next_id;
}

static nng_msg *encode(const struct flr_msg *m)
{
    nng_msg *out;
    assert_int_equal(flr_msg_to_nng(&out, m, NULL), 0);
    return out;
}

static struct flr_msg msg_base(struct fixture *f, int type, uint32_t worker, int64_t clock)
{
    struct flr_msg m = {0};
    m.type = type;
    m.job = JOB;
    m.job_len = (uint32_t)strlen(JOB);
    m.sender = worker;
    m.shard = 0;
    m.shard_epoch = EPOCH;
    m.request_id = next_request_id(f);
    m.clock = clock;
    m.reason = "";
    return m;
}

static nng_msg *mk_pull(struct fixture *f, uint32_t worker, uint32_t table, int64_t clock,
                        const uint64_t *keys, uint32_t nkeys)
{
    struct flr_msg m = msg_base(f, FLR_MSG_PULL, worker, clock);
    m.table = table;
    m.keys = keys;
    m.nkeys = nkeys;
    return encode(&m);
}

static nng_msg *mk_push(struct fixture *f, uint32_t worker, uint32_t table, int64_t clock,
                        const uint64_t *keys, uint32_t nkeys, const float *vals, uint32_t nvals)
{
    struct flr_msg m = msg_base(f, FLR_MSG_PUSH, worker, clock);
    m.table = table;
    m.keys = keys;
    m.nkeys = nkeys;
    m.vals = vals;
    m.vals_len = (uint64_t)nvals * sizeof(float);
    return encode(&m);
}

/* A push with a sequence number (pseq), as a client of recovery flr sends it. */
static nng_msg *mk_push_seq(struct fixture *f, uint32_t worker, uint32_t table, int64_t clock,
                            const uint64_t *keys, uint32_t nkeys, const float *vals, uint32_t nvals,
                            uint64_t seq)
{
    struct flr_msg m = msg_base(f, FLR_MSG_PUSH, worker, clock);
    m.table = table;
    m.keys = keys;
    m.nkeys = nkeys;
    m.vals = vals;
    m.vals_len = (uint64_t)nvals * sizeof(float);
    m.seq = seq;
    return encode(&m);
}

static nng_msg *mk_clock(struct fixture *f, uint32_t worker, int64_t clock)
{
    struct flr_msg m = msg_base(f, FLR_MSG_CLOCK, worker, clock);
    return encode(&m);
}

/* A pull or clock showing the sender's incarnation base. */
static nng_msg *mk_pull_inc(struct fixture *f, uint32_t worker, uint32_t table, int64_t clock,
                            const uint64_t *keys, uint32_t nkeys, uint64_t inc)
{
    struct flr_msg m = msg_base(f, FLR_MSG_PULL, worker, clock);
    m.table = table;
    m.keys = keys;
    m.nkeys = nkeys;
    m.seq = inc;
    return encode(&m);
}

static nng_msg *mk_clock_inc(struct fixture *f, uint32_t worker, int64_t clock, uint64_t inc)
{
    struct flr_msg m = msg_base(f, FLR_MSG_CLOCK, worker, clock);
    m.seq = inc;
    return encode(&m);
}

static void pending_start(struct fixture *f, struct pending *p, nng_msg *req)
{
    atomic_store(&p->done, 0);
    flr_call_start(&p->call, f->conn, req, WAIT_MS, NULL);
}

/* Serves requests until the call has its reply, then decodes the reply into out. */
static void pending_finish(struct fixture *f, struct pending *p, struct reply *out)
{
    int64_t deadline = flr_now_ms() + WAIT_MS;
    struct flr_msg r;
    char why[FLR_REASON_MAX];

    while (!pending_is_done(p)) {
        if (flr_now_ms() > deadline)
            fail_msg("no reply within %d ms", WAIT_MS);
        serve_one(f, 10);
    }
    assert_int_equal(p->call.rv, 0);
    assert_non_null(p->call.reply);
    assert_int_equal(flr_msg_decode(&r, nng_msg_body(p->call.reply), nng_msg_len(p->call.reply),
                                    &f->lim, &f->rzone, why, sizeof(why)),
                     0);
    memset(out, 0, sizeof(*out));
    out->type = r.type;
    out->status = r.status;
    out->stamp = r.stamp;
    out->aux = r.aux;
    out->clock = r.clock;
    assert_true(r.extra_len <= sizeof(out->extra));
    out->nextra = (uint32_t)(r.extra_len / 8);
    for (uint32_t i = 0; i < out->nextra; i++)
        out->extra[i] = flr_load_u64((const unsigned char *)r.extra + i * 8);
    snprintf(out->reason, sizeof(out->reason), "%.*s", (int)r.reason_len, r.reason);
    assert_true(r.vals_len <= sizeof(out->vals));
    out->nvals = (uint32_t)(r.vals_len / sizeof(float));
    if (r.vals_len)
        memcpy(out->vals, r.vals, (size_t)r.vals_len);
    nng_msg_free(p->call.reply);
    p->call.reply = NULL;
}

/* One request and its reply. */
static void rpc(struct fixture *f, nng_msg *req, struct reply *out)
{
    struct pending p;
    pending_init(&p);
    pending_start(f, &p, req);
    pending_finish(f, &p, out);
    flr_call_fini(&p.call);
}

/* Serves requests until the shard holds n pulls. */
static void serve_until_held(struct fixture *f, uint64_t n)
{
    int64_t deadline = flr_now_ms() + WAIT_MS;

    while (flr_shard_stats(f->sh)->held_pulls != n) {
        if (flr_now_ms() > deadline)
            fail_msg("the shard holds %llu pulls, expected %llu",
                     (unsigned long long)flr_shard_stats(f->sh)->held_pulls, (unsigned long long)n);
        serve_one(f, 10);
    }
}

static void push_ok(struct fixture *f, uint32_t worker, uint32_t table, int64_t clock,
                    const uint64_t *keys, uint32_t nkeys, const float *vals, uint32_t nvals)
{
    struct reply r;
    rpc(f, mk_push(f, worker, table, clock, keys, nkeys, vals, nvals), &r);
    assert_int_equal(r.type, FLR_MSG_PUSH_REPLY);
    if (r.status != 0)
        fail_msg("push rejected: %s: %s", flr_errname(r.status), r.reason);
}

static void clock_ok(struct fixture *f, uint32_t worker, int64_t clock)
{
    struct reply r;
    rpc(f, mk_clock(f, worker, clock), &r);
    assert_int_equal(r.type, FLR_MSG_CLOCK_REPLY);
    assert_int_equal(r.status, 0);
}

static void pull_ok(struct fixture *f, uint32_t worker, uint32_t table, int64_t clock,
                    const uint64_t *keys, uint32_t nkeys, struct reply *r)
{
    rpc(f, mk_pull(f, worker, table, clock, keys, nkeys), r);
    assert_int_equal(r->type, FLR_MSG_PULL_REPLY);
    if (r->status != 0)
        fail_msg("pull rejected: %s: %s", flr_errname(r->status), r->reason);
}

static void push_seq_ok(struct fixture *f, uint32_t worker, uint32_t table, int64_t clock,
                        const uint64_t *keys, uint32_t nkeys, const float *vals, uint32_t nvals,
                        uint64_t seq, struct reply *r)
{
    rpc(f, mk_push_seq(f, worker, table, clock, keys, nkeys, vals, nvals, seq), r);
    assert_int_equal(r->type, FLR_MSG_PUSH_REPLY);
    if (r->status != 0)
        fail_msg("push rejected: %s: %s", flr_errname(r->status), r->reason);
}

/* Serves requests until the shard holds n pushes waiting for their predecessors. */
static void serve_until_early(struct fixture *f, uint64_t n)
{
    int64_t deadline = flr_now_ms() + WAIT_MS;

    while (flr_shard_stats(f->sh)->early_pushes != n) {
        if (flr_now_ms() > deadline)
            fail_msg("the shard holds %llu early pushes, expected %llu",
                     (unsigned long long)flr_shard_stats(f->sh)->early_pushes,
                     (unsigned long long)n);
        serve_one(f, 10);
    }
}

/* Serves requests until the call completes (with a reply or an error). */
static void serve_until_done(struct fixture *f, struct pending *p)
{
    int64_t deadline = flr_now_ms() + WAIT_MS;

    while (!pending_is_done(p)) {
        if (flr_now_ms() > deadline)
            fail_msg("the call did not complete within %d ms", WAIT_MS);
        serve_one(f, 10);
    }
}

static void assert_row(struct fixture *f, uint64_t row, const float *want)
{
    const float *v =
        flr_tshard_peek(flr_store_table(flr_shard_store(f->sh), DENSE), row, NULL, NULL);
    assert_non_null(v);
    for (int j = 0; j < DENSE_DIM; j++)
        if (v[j] != want[j])
            fail_msg("row %llu column %d is %g, expected %g", (unsigned long long)row, j,
                     (double)v[j], (double)want[j]);
}

/* ---- fixtures ----------------------------------------------------------------------- */

static void table_set(struct flr_table_spec *t, uint32_t id, const char *name,
                      enum flr_table_kind kind, uint32_t dim)
{
    memset(t, 0, sizeof(*t));
    t->id = id;
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->kind = kind;
    t->rows = kind == FLR_TABLE_DENSE ? DENSE_ROWS : 0;
    t->dim = dim;
    t->optim = FLR_OPT_SGD;
    flr_table_spec_defaults(t);
    t->lr = 1.0f;
}

static void spec_set(struct flr_job_spec *s, enum flr_consistency c, uint32_t staleness)
{
    char why[256];

    memset(s, 0, sizeof(*s));
    snprintf(s->job, sizeof(s->job), "%s", JOB);
    s->consistency = c;
    s->staleness = staleness;
    s->num_workers = NWORKERS;
    s->num_servers = 1;
    s->num_shards = 1;
    snprintf(s->recovery, sizeof(s->recovery), "none");
    s->k = 1;
    s->seed = 7;
    s->ntables = 2;
    table_set(&s->tables[0], DENSE, "w", FLR_TABLE_DENSE, DENSE_DIM);
    s->tables[0].init = FLR_INIT_ZEROS;
    table_set(&s->tables[1], SPARSE, "emb", FLR_TABLE_SPARSE, SPARSE_DIM);
    s->tables[1].init = FLR_INIT_UNIFORM;
    s->tables[1].init_scale = 0.5f;
    s->tables[1].seed = 42;
    if (flr_spec_validate(s, why, sizeof(why)) != 0)
        fail_msg("test spec is invalid: %s", why);
}

static void shard_reopen(struct fixture *f)
{
    flr_shard_close(f->sh);
    f->sh = NULL;
    assert_int_equal(flr_shard_open(&f->sh, &f->spec, 0, EPOCH, SELF), 0);
}

static int setup_with_recovery(void **state, enum flr_consistency c, uint32_t staleness,
                               const char *recovery, uint32_t k);

static int setup_with(void **state, enum flr_consistency c, uint32_t staleness)
{
    return setup_with_recovery(state, c, staleness, "none", 1);
}

static int setup_with_recovery(void **state, enum flr_consistency c, uint32_t staleness,
                               const char *recovery, uint32_t k)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char why[256];

    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    msgpack_zone_init(&f->zone, 4096);
    msgpack_zone_init(&f->rzone, 4096);
    flr_proto_limits_default(&f->lim);
    spec_set(&f->spec, c, staleness);
    snprintf(f->spec.recovery, sizeof(f->spec.recovery), "%s", recovery);
    f->spec.k = k;
    assert_int_equal(flr_shard_open(&f->sh, &f->spec, 0, EPOCH, SELF), 0);
    if (flr_rep_open(&f->rep, "tcp://127.0.0.1:0", 16, 1 << 20, on_request, f, why, sizeof(why)) !=
        0)
        fail_msg("%s", why);
    if (flr_conn_open(&f->conn, flr_rep_url(f->rep), 1 << 20, why, sizeof(why)) != 0)
        fail_msg("%s", why);
    *state = f;
    return 0;
}

static int setup_asp(void **state)
{
    return setup_with(state, FLR_ASP, 0);
}

static int setup_bsp(void **state)
{
    return setup_with(state, FLR_BSP, 0);
}

static int setup_ssp2(void **state)
{
    return setup_with(state, FLR_SSP, 2);
}

static int setup_flr_asp(void **state)
{
    return setup_with_recovery(state, FLR_ASP, 0, "flr", 2);
}

static int setup_flr_bsp(void **state)
{
    return setup_with_recovery(state, FLR_BSP, 0, "flr", 2);
}

static int setup_flr_asp_k3(void **state)
{
    return setup_with_recovery(state, FLR_ASP, 0, "flr", 3);
}

/* The server's order: the shard drops what it holds through the open transport, then the
 * transport stops (no callback runs after that), then whatever was queued is freed. */
static int teardown(void **state)
{
    struct fixture *f = *state;

    flr_shard_close(f->sh);
    flr_conn_close(f->conn);
    flr_rep_close(f->rep);
    while (f->qlen > 0) {
        nng_msg_free(f->q[f->qhead].msg);
        f->qhead = (f->qhead + 1) % QCAP;
        f->qlen--;
    }
    msgpack_zone_destroy(&f->zone);
    msgpack_zone_destroy(&f->rzone);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* ---- ASP ------------------------------------------------------------------------------ */

static void asp_push_applies_at_once_and_pull_sees_it(void **state)
{
    struct fixture *f = *state;
    const uint64_t keys[2] = {flr_key(DENSE, 1), flr_key(DENSE, 5)};
    const float g[6] = {1.0f, -2.0f, 0.5f, 3.0f, 0.25f, -8.0f};
    const float h[6] = {0.5f, 0.5f, 0.5f, -1.0f, -1.0f, -1.0f};
    struct reply r;

    pull_ok(f, 0, DENSE, 0, keys, 2, &r);
    assert_int_equal(r.nvals, 6);
    for (int i = 0; i < 6; i++)
        assert_true(r.vals[i] == 0.0f);
    assert_int_equal(r.stamp, 0);

    push_ok(f, 0, DENSE, 0, keys, 2, g, 6);
    assert_int_equal(flr_shard_stamp(f->sh), 1);
    pull_ok(f, 1, DENSE, 0, keys, 2, &r);
    assert_int_equal(r.stamp, 1);
    for (int i = 0; i < 6; i++)
        assert_true(r.vals[i] == 0.0f - g[i]);

    push_ok(f, 2, DENSE, 0, keys, 2, h, 6);
    assert_int_equal(flr_shard_stamp(f->sh), 2);
    pull_ok(f, 0, DENSE, 0, keys, 2, &r);
    assert_int_equal(r.stamp, 2);
    for (int i = 0; i < 6; i++)
        assert_true(r.vals[i] == (0.0f - g[i]) - h[i]);

    assert_int_equal(flr_shard_stats(f->sh)->pushes, 2);
    assert_int_equal(flr_shard_stats(f->sh)->pulls, 3);
    assert_int_equal(flr_shard_stats(f->sh)->rejected, 0);
}

static void asp_sparse_pull_returns_initial_row_minus_gradient(void **state)
{
    struct fixture *f = *state;
    const uint64_t keys[2] = {flr_key(SPARSE, 7), flr_key(SPARSE, 123456789)};
    const float g[4] = {0.125f, -0.5f, 1.0f, 2.0f};
    const struct flr_table_spec *ts = flr_spec_table(&f->spec, SPARSE);
    float init[4];
    struct reply r;

    flr_table_init_row(ts, 7, init);
    flr_table_init_row(ts, 123456789, init + 2);
    /* The initial row must be non-trivial for the comparison to mean anything. */
    assert_true(init[0] != 0.0f || init[1] != 0.0f);

    push_ok(f, 1, SPARSE, 0, keys, 2, g, 4);
    pull_ok(f, 0, SPARSE, 0, keys, 2, &r);
    assert_int_equal(r.nvals, 4);
    assert_int_equal(r.stamp, 1);
    for (int i = 0; i < 4; i++)
        assert_true(r.vals[i] == init[i] - g[i]);
}

static void asp_pull_ahead_of_every_clock_is_answered_at_once(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 0);
    struct reply r;

    pull_ok(f, 0, DENSE, 1000, &key, 1, &r);
    assert_int_equal(flr_shard_min_clock(f->sh), 0);
    assert_int_equal(flr_shard_stats(f->sh)->held_pulls, 0);
}

/* ---- BSP ------------------------------------------------------------------------------ */

static void bsp_pull_is_held_until_every_worker_clocks_then_sees_all_pushes(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 2);
    const float g[NWORKERS][DENSE_DIM] = {{1, 2, 3}, {10, 20, 30}, {100, 200, 300}};
    struct pending pull;
    struct reply r;
    uint64_t stamp;
    const float *row;

    for (uint32_t w = 0; w < NWORKERS; w++)
        push_ok(f, w, DENSE, 0, &key, 1, g[w], DENSE_DIM);
    /* Held pushes change nothing before their clock closes. */
    row = flr_tshard_peek(flr_store_table(flr_shard_store(f->sh), DENSE), 2, &stamp, NULL);
    assert_non_null(row);
    for (int j = 0; j < DENSE_DIM; j++)
        assert_true(row[j] == 0.0f);
    assert_int_equal(flr_shard_stamp(f->sh), 0);

    pending_init(&pull);
    pending_start(f, &pull, mk_pull(f, 0, DENSE, 1, &key, 1));
    serve_until_held(f, 1);

    clock_ok(f, 0, 1);
    clock_ok(f, 1, 1);
    assert_int_equal(flr_shard_min_clock(f->sh), 0);
    assert_int_equal(flr_shard_stats(f->sh)->held_pulls, 1);
    assert_false(pending_is_done(&pull));

    clock_ok(f, 2, 1);
    assert_int_equal(flr_shard_min_clock(f->sh), 1);
    pending_finish(f, &pull, &r);
    flr_call_fini(&pull.call);
    assert_int_equal(r.type, FLR_MSG_PULL_REPLY);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nvals, DENSE_DIM);
    /* One optimizer step for the whole clock: the stamp counts clocks, not pushes. */
    assert_int_equal(r.stamp, 1);
    for (int j = 0; j < DENSE_DIM; j++)
        assert_true(r.vals[j] == 0.0f - ((g[0][j] + g[1][j]) + g[2][j]));
    assert_int_equal(flr_shard_stats(f->sh)->held_pulls, 0);
}

static void bsp_removing_a_dead_worker_releases_what_waited_for_it(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 4);
    const float g[DENSE_DIM] = {1, 1, 1};
    struct pending pull;
    struct reply r;

    /* Worker 2 pushes nothing and never clocks: it died. */
    push_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM);
    push_ok(f, 1, DENSE, 0, &key, 1, g, DENSE_DIM);
    clock_ok(f, 0, 1);
    clock_ok(f, 1, 1);
    pending_init(&pull);
    pending_start(f, &pull, mk_pull(f, 0, DENSE, 1, &key, 1));
    serve_until_held(f, 1);
    assert_int_equal(flr_shard_min_clock(f->sh), 0);

    flr_shard_remove_worker(f->sh, 2);
    assert_int_equal(flr_shard_min_clock(f->sh), 1);
    pending_finish(f, &pull, &r);
    flr_call_fini(&pull.call);
    assert_int_equal(r.status, 0);
    for (int j = 0; j < DENSE_DIM; j++)
        assert_true(r.vals[j] == -2.0f);

    /* A removed worker's later requests are refused, and change nothing. */
    struct reply late;
    rpc(f, mk_clock(f, 2, 1), &late);
    assert_int_equal(late.status, FLR_EWORKER_REMOVED);
    assert_int_equal(flr_shard_stats(f->sh)->rejected_by[FLR_EWORKER_REMOVED], 1);
    /* Removing twice is harmless. */
    flr_shard_remove_worker(f->sh, 2);
    assert_int_equal(flr_shard_min_clock(f->sh), 1);
}

/* Runs one BSP clock with the pushes arriving in the given worker order and returns the
 * row the shard ends with. */
static void bsp_run_clock(struct fixture *f, const uint32_t order[NWORKERS],
                          const float g[NWORKERS][DENSE_DIM], float out[DENSE_DIM])
{
    const uint64_t key = flr_key(DENSE, 4);
    struct reply r;

    for (int i = 0; i < NWORKERS; i++)
        push_ok(f, order[i], DENSE, 0, &key, 1, g[order[i]], DENSE_DIM);
    for (uint32_t w = 0; w < NWORKERS; w++)
        clock_ok(f, w, 1);
    pull_ok(f, 0, DENSE, 1, &key, 1, &r);
    assert_int_equal(r.nvals, DENSE_DIM);
    memcpy(out, r.vals, sizeof(float) * DENSE_DIM);
}

static void bsp_result_does_not_depend_on_push_arrival_order(void **state)
{
    struct fixture *f = *state;
    /* Float addition is not associative at these magnitudes: 1e8 + 1 == 1e8. Column 0
     * differs from the worker-order sum when summed in order 2, 1, 0, column 1 when summed
     * in order 0, 2, 1. */
    const float g[NWORKERS][DENSE_DIM] = {
        {1.0f, 1e8f, 0.5f},
        {1e8f, 1.0f, 0.25f},
        {-1e8f, -1e8f, 2.0f},
    };
    const uint32_t worker2_first[NWORKERS] = {2, 1, 0};
    const uint32_t worker0_first[NWORKERS] = {0, 2, 1};
    float a[DENSE_DIM], b[DENSE_DIM], want[DENSE_DIM];
    int differs_a = 0, differs_b = 0;

    for (int j = 0; j < DENSE_DIM; j++) {
        volatile float sum = g[0][j];
        volatile float sa = g[2][j], sb = g[0][j];
        sum += g[1][j];
        sum += g[2][j];
        want[j] = 0.0f - 1.0f * sum;
        sa += g[1][j];
        sa += g[0][j];
        sb += g[2][j];
        sb += g[1][j];
        differs_a |= sa != sum;
        differs_b |= sb != sum;
    }
    /* Both arrival orders would give another row if the shard summed as pushes arrive. */
    assert_true(differs_a);
    assert_true(differs_b);

    bsp_run_clock(f, worker2_first, g, a);
    shard_reopen(f);
    bsp_run_clock(f, worker0_first, g, b);

    assert_memory_equal(a, b, sizeof(a));
    assert_memory_equal(a, want, sizeof(a));
}

static void bsp_push_for_a_closed_clock_is_rejected(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 3);
    const float late[DENSE_DIM] = {5, 5, 5}, ok[DENSE_DIM] = {1, 2, 3};
    struct reply r;

    for (uint32_t w = 0; w < NWORKERS; w++)
        clock_ok(f, w, 1);
    assert_int_equal(flr_shard_min_clock(f->sh), 1);

    rpc(f, mk_push(f, 0, DENSE, 0, &key, 1, late, DENSE_DIM), &r);
    assert_int_equal(r.type, FLR_MSG_PUSH_REPLY);
    assert_int_equal(r.status, FLR_EBAD_REQUEST);
    assert_non_null(strstr(r.reason, "closed"));
    assert_int_equal(flr_shard_stats(f->sh)->rejected_by[FLR_EBAD_REQUEST], 1);
    assert_int_equal(flr_shard_stats(f->sh)->rejected, 1);

    /* A push for the open clock is still accepted, and only it is applied. */
    push_ok(f, 0, DENSE, 1, &key, 1, ok, DENSE_DIM);
    for (uint32_t w = 0; w < NWORKERS; w++)
        clock_ok(f, w, 2);
    pull_ok(f, 1, DENSE, 2, &key, 1, &r);
    for (int j = 0; j < DENSE_DIM; j++)
        assert_true(r.vals[j] == 0.0f - ok[j]);
}

static void bsp_push_for_a_closed_clock_is_not_counted_as_a_push(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 3);
    const float late[DENSE_DIM] = {5, 5, 5};
    struct reply r;

    for (uint32_t w = 0; w < NWORKERS; w++)
        clock_ok(f, w, 1);
    rpc(f, mk_push(f, 0, DENSE, 0, &key, 1, late, DENSE_DIM), &r);
    assert_int_equal(r.status, FLR_EBAD_REQUEST);
    /* A rejected push was not applied; the other rejections leave these counters alone. */
    assert_int_equal(flr_shard_stats(f->sh)->pushes, 0);
    assert_int_equal(flr_shard_stats(f->sh)->keys_pushed, 0);
}

/* ---- SSP ------------------------------------------------------------------------------ */

static void ssp_pull_is_answered_within_staleness_and_held_beyond(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 0);
    struct pending held;
    struct reply r;

    /* min_clock 0, staleness 2: a pull at clock 2 is within the bound, one at 3 is not. */
    pull_ok(f, 0, DENSE, 2, &key, 1, &r);

    pending_init(&held);
    pending_start(f, &held, mk_pull(f, 0, DENSE, 3, &key, 1));
    serve_until_held(f, 1);
    clock_ok(f, 0, 1);
    clock_ok(f, 1, 1);
    assert_int_equal(flr_shard_min_clock(f->sh), 0);
    assert_false(pending_is_done(&held));

    clock_ok(f, 2, 1);
    assert_int_equal(flr_shard_min_clock(f->sh), 1);
    pending_finish(f, &held, &r);
    flr_call_fini(&held.call);
    assert_int_equal(r.type, FLR_MSG_PULL_REPLY);
    assert_int_equal(r.status, 0);

    /* At min_clock 1 a pull at clock 3 no longer waits. */
    pull_ok(f, 1, DENSE, 3, &key, 1, &r);
    assert_int_equal(flr_shard_stats(f->sh)->held_pulls, 0);
}

static void ssp_push_applies_on_arrival(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 6);
    const float g[DENSE_DIM] = {1, 2, 3};
    struct reply r;

    push_ok(f, 2, DENSE, 0, &key, 1, g, DENSE_DIM);
    assert_int_equal(flr_shard_stamp(f->sh), 1);
    pull_ok(f, 0, DENSE, 0, &key, 1, &r);
    for (int j = 0; j < DENSE_DIM; j++)
        assert_true(r.vals[j] == 0.0f - g[j]);
}

/* ---- rejections ----------------------------------------------------------------------- */

/* What a rejection must not change. */
struct snapshot {
    float dense[DENSE_ROWS * DENSE_DIM];
    uint64_t stamps[DENSE_ROWS];
    uint64_t stamp, rows, pushes, pulls, clocks, keys_pushed;
    int64_t min_clock;
};

static void snapshot_take(struct fixture *f, struct snapshot *s)
{
    struct flr_tshard *t = flr_store_table(flr_shard_store(f->sh), DENSE);
    const struct flr_shard_stats *st = flr_shard_stats(f->sh);

    memset(s, 0, sizeof(*s));
    for (uint64_t row = 0; row < DENSE_ROWS; row++) {
        const float *v = flr_tshard_peek(t, row, &s->stamps[row], NULL);
        assert_non_null(v);
        memcpy(&s->dense[row * DENSE_DIM], v, sizeof(float) * DENSE_DIM);
    }
    s->stamp = flr_shard_stamp(f->sh);
    s->rows = flr_store_rows(flr_shard_store(f->sh));
    s->min_clock = flr_shard_min_clock(f->sh);
    s->pushes = st->pushes;
    s->pulls = st->pulls;
    s->clocks = st->clocks;
    s->keys_pushed = st->keys_pushed;
}

/* Gives the shard some state so that "unchanged" means something. */
static void rejection_prepare(struct fixture *f, struct snapshot *before)
{
    const uint64_t keys[2] = {flr_key(DENSE, 1), flr_key(DENSE, 2)};
    const uint64_t skey = flr_key(SPARSE, 99);
    const float g[6] = {1, 2, 3, 4, 5, 6}, sg[2] = {1, 1};

    push_ok(f, 0, DENSE, 0, keys, 2, g, 6);
    push_ok(f, 1, SPARSE, 0, &skey, 1, sg, 2);
    snapshot_take(f, before);
}

/* Sends req, expects it rejected with code, and checks the shard is as before. */
static void expect_rejected(struct fixture *f, nng_msg *req, int type, int code,
                            const struct snapshot *before)
{
    const struct flr_shard_stats *st = flr_shard_stats(f->sh);
    uint64_t total = st->rejected, by_code = st->rejected_by[code];
    struct snapshot after;
    struct reply r;

    rpc(f, req, &r);
    assert_int_equal(r.type, type);
    if (r.status != code)
        fail_msg("expected %s, got %s (%s)", flr_errname(code), flr_errname(r.status), r.reason);
    assert_true(r.reason[0] != '\0');
    assert_int_equal(st->rejected, total + 1);
    assert_int_equal(st->rejected_by[code], by_code + 1);
    snapshot_take(f, &after);
    assert_memory_equal(&after, before, sizeof(after));
}

static void push_with_nan_gradient_is_rejected_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t keys[2] = {flr_key(DENSE, 1), flr_key(DENSE, 3)};
    const float g[6] = {1, 2, 3, 4, NAN, 6}, ginf[6] = {INFINITY, 0, 0, 0, 0, 0};
    struct snapshot before;

    rejection_prepare(f, &before);
    expect_rejected(f, mk_push(f, 0, DENSE, 0, keys, 2, g, 6), FLR_MSG_PUSH_REPLY, FLR_ENAN_GRAD,
                    &before);
    expect_rejected(f, mk_push(f, 0, DENSE, 0, keys, 2, ginf, 6), FLR_MSG_PUSH_REPLY, FLR_ENAN_GRAD,
                    &before);
    assert_int_equal(flr_shard_stats(f->sh)->rejected_by[FLR_ENAN_GRAD], 2);
}

static void push_with_wrong_value_length_is_rejected_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t keys[2] = {flr_key(DENSE, 1), flr_key(DENSE, 3)};
    const float g[4] = {1, 2, 3, 4}; /* two floats per key; the table's rows have three */
    struct snapshot before;

    rejection_prepare(f, &before);
    expect_rejected(f, mk_push(f, 0, DENSE, 0, keys, 2, g, 4), FLR_MSG_PUSH_REPLY, FLR_EVALUE_LEN,
                    &before);
}

static void key_out_of_range_is_rejected_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t past_end[2] = {flr_key(DENSE, 1), flr_key(DENSE, DENSE_ROWS)};
    const uint64_t other_table = flr_key(SPARSE, 1);
    const float g[6] = {1, 2, 3, 4, 5, 6};
    struct snapshot before;

    rejection_prepare(f, &before);
    expect_rejected(f, mk_push(f, 0, DENSE, 0, past_end, 2, g, 6), FLR_MSG_PUSH_REPLY,
                    FLR_EKEY_RANGE, &before);
    /* A key of another table, sent as one of this table's keys. */
    expect_rejected(f, mk_push(f, 0, DENSE, 0, &other_table, 1, g, 3), FLR_MSG_PUSH_REPLY,
                    FLR_EKEY_RANGE, &before);
    expect_rejected(f, mk_pull(f, 0, DENSE, 0, past_end, 2), FLR_MSG_PULL_REPLY, FLR_EKEY_RANGE,
                    &before);
}

static void unsorted_keys_are_rejected_and_change_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t down[2] = {flr_key(DENSE, 3), flr_key(DENSE, 1)};
    const uint64_t dup[2] = {flr_key(DENSE, 2), flr_key(DENSE, 2)};
    const uint64_t sparse_down[2] = {flr_key(SPARSE, 500), flr_key(SPARSE, 400)};
    const float g[6] = {1, 2, 3, 4, 5, 6};
    struct snapshot before;

    rejection_prepare(f, &before);
    expect_rejected(f, mk_push(f, 0, DENSE, 0, down, 2, g, 6), FLR_MSG_PUSH_REPLY, FLR_EUNSORTED,
                    &before);
    expect_rejected(f, mk_push(f, 0, DENSE, 0, dup, 2, g, 6), FLR_MSG_PUSH_REPLY, FLR_EUNSORTED,
                    &before);
    /* A rejected sparse pull creates no rows. */
    expect_rejected(f, mk_pull(f, 0, SPARSE, 0, sparse_down, 2), FLR_MSG_PULL_REPLY, FLR_EUNSORTED,
                    &before);
}

static void unknown_table_is_rejected_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(9, 0);
    const float g[3] = {1, 2, 3};
    struct snapshot before;

    rejection_prepare(f, &before);
    expect_rejected(f, mk_push(f, 0, 9, 0, &key, 1, g, 3), FLR_MSG_PUSH_REPLY, FLR_EUNKNOWN_TABLE,
                    &before);
    expect_rejected(f, mk_pull(f, 0, 9, 0, &key, 1), FLR_MSG_PULL_REPLY, FLR_EUNKNOWN_TABLE,
                    &before);
}

static void clock_or_push_from_unknown_worker_is_rejected_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 1);
    const float g[3] = {1, 2, 3};
    struct snapshot before;

    rejection_prepare(f, &before);
    expect_rejected(f, mk_clock(f, NWORKERS, 1), FLR_MSG_CLOCK_REPLY, FLR_EBAD_REQUEST, &before);
    expect_rejected(f, mk_clock(f, UINT32_MAX, 1), FLR_MSG_CLOCK_REPLY, FLR_EBAD_REQUEST, &before);
    expect_rejected(f, mk_clock(f, 0, -1), FLR_MSG_CLOCK_REPLY, FLR_EBAD_REQUEST, &before);
    expect_rejected(f, mk_push(f, NWORKERS, DENSE, 0, &key, 1, g, 3), FLR_MSG_PUSH_REPLY,
                    FLR_EBAD_REQUEST, &before);
}

static void bsp_rejections_hold_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 1);
    const float bad[3] = {NAN, 0, 0}, g[3] = {1, 2, 3};
    struct reply r;

    /* Under BSP a valid push is held; a bad one must not be, or the clock would apply it. */
    rpc(f, mk_push(f, 0, DENSE, 0, &key, 1, bad, 3), &r);
    assert_int_equal(r.status, FLR_ENAN_GRAD);
    rpc(f, mk_clock(f, NWORKERS, 1), &r);
    assert_int_equal(r.status, FLR_EBAD_REQUEST);
    push_ok(f, 1, DENSE, 0, &key, 1, g, 3);
    for (uint32_t w = 0; w < NWORKERS; w++)
        clock_ok(f, w, 1);
    pull_ok(f, 0, DENSE, 1, &key, 1, &r);
    for (int j = 0; j < 3; j++)
        assert_true(r.vals[j] == 0.0f - g[j]);
    assert_int_equal(flr_shard_stats(f->sh)->rejected_by[FLR_ENAN_GRAD], 1);
    assert_int_equal(flr_shard_stats(f->sh)->rejected_by[FLR_EBAD_REQUEST], 1);
    assert_int_equal(flr_shard_stats(f->sh)->rejected, 2);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static void close_with_held_pull_and_push_releases_them(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 0);
    const float g[3] = {1, 2, 3};
    struct pending held;
    struct reply r;

    push_ok(f, 0, DENSE, 0, &key, 1, g, 3); /* held until clock 1 closes */
    pending_init(&held);
    flr_call_start(&held.call, f->conn, mk_pull(f, 0, DENSE, 1, &key, 1), 300, NULL);
    serve_until_held(f, 1);

    /* The shard drops the pull without answering: the caller times out. */
    flr_shard_close(f->sh);
    f->sh = NULL;
    for (int64_t deadline = flr_now_ms() + WAIT_MS; !pending_is_done(&held);) {
        assert_true(flr_now_ms() < deadline);
        serve_one(f, 10); /* nothing may arrive: there is no shard to hand it to */
    }
    assert_int_equal(held.call.rv, FLR_ETIMEOUT);
    assert_null(held.call.reply);
    flr_call_fini(&held.call);

    /* The dropped request's context serves again. */
    assert_int_equal(flr_shard_open(&f->sh, &f->spec, 0, EPOCH, SELF), 0);
    pull_ok(f, 0, DENSE, 0, &key, 1, &r);
    for (int j = 0; j < 3; j++)
        assert_true(r.vals[j] == 0.0f);
}

static void close_with_held_pull_is_clean_at_teardown(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 0);
    const float g[3] = {1, 2, 3};
    struct pending held;

    push_ok(f, 1, DENSE, 0, &key, 1, g, 3);
    pending_init(&held);
    pending_start(f, &held, mk_pull(f, 0, DENSE, 1, &key, 1));
    serve_until_held(f, 1);
    /* Abandon the call; teardown closes the shard while it still holds the pull. */
    flr_call_fini(&held.call);
}

/* ---- exactly-once pushes ------------------------------------------------------------- */

#define INC(ms) ((uint64_t)(ms) << FLR_SHARD_INC_SHIFT)

static void asp_retried_push_is_acknowledged_and_applied_once(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 1);
    const float g[DENSE_DIM] = {1, 2, 3}, want[DENSE_DIM] = {-1, -2, -3};
    struct reply r;

    /* The shard knows nothing of this process: its first push is taken as the next. */
    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(500) + 7, &r);
    assert_int_equal(r.stamp, 1);
    assert_int_equal(flr_shard_frontier(f->sh, 0), INC(500) + 7);
    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(500) + 7, &r);
    assert_int_equal(flr_shard_stamp(f->sh), 1);
    assert_row(f, 1, want);
    assert_int_equal(flr_shard_stats(f->sh)->duplicate_pushes, 1);
    assert_int_equal(flr_shard_stats(f->sh)->pushes, 1);

    /* Without a sequence number a push is applied every time, as before. */
    push_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM);
    push_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM);
    assert_int_equal(flr_shard_stamp(f->sh), 3);
}

static void asp_early_push_waits_for_its_predecessor(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 2);
    const float g[DENSE_DIM] = {1, 0, 0}, h[DENSE_DIM] = {0, 2, 0}, e[DENSE_DIM] = {0, 0, 4};
    const float want[DENSE_DIM] = {-2, -4, -4};
    struct pending early, gone, retry;
    struct reply r;

    rpc(f, mk_clock_inc(f, 1, 0, INC(9)), &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(flr_shard_frontier(f->sh, 1), 0);

    /* Known process: pseq 2 arrives first and waits for pseq 1. */
    push_seq_ok(f, 1, DENSE, 0, &key, 1, g, DENSE_DIM, INC(9) + 1, &r);
    pending_init(&early);
    pending_start(f, &early, mk_push_seq(f, 1, DENSE, 0, &key, 1, h, DENSE_DIM, INC(9) + 3));
    serve_until_early(f, 1);
    assert_false(pending_is_done(&early));
    assert_int_equal(flr_shard_stamp(f->sh), 1);
    push_seq_ok(f, 1, DENSE, 0, &key, 1, g, DENSE_DIM, INC(9) + 2, &r);
    assert_int_equal(r.stamp, 2);
    pending_finish(f, &early, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.stamp, 3);
    flr_call_fini(&early.call);
    assert_int_equal(flr_shard_frontier(f->sh, 1), INC(9) + 3);
    assert_int_equal(flr_shard_stats(f->sh)->early_pushes, 0);

    /* A retry of a waiting push replaces it; the first copy is never answered. */
    pending_init(&gone);
    flr_call_start(&gone.call, f->conn,
                   mk_push_seq(f, 1, DENSE, 0, &key, 1, e, DENSE_DIM, INC(9) + 5), 300, NULL);
    serve_until_early(f, 1);
    pending_init(&retry);
    pending_start(f, &retry, mk_push_seq(f, 1, DENSE, 0, &key, 1, e, DENSE_DIM, INC(9) + 5));
    serve_until_done(f, &gone);
    assert_int_equal(gone.call.rv, FLR_ETIMEOUT);
    flr_call_fini(&gone.call);
    assert_int_equal(flr_shard_stats(f->sh)->early_pushes, 1);
    push_seq_ok(f, 1, DENSE, 0, &key, 1, h, DENSE_DIM, INC(9) + 4, &r);
    pending_finish(f, &retry, &r);
    assert_int_equal(r.status, 0);
    flr_call_fini(&retry.call);
    /* g twice, h twice, e once. */
    assert_int_equal(flr_shard_stamp(f->sh), 5);
    assert_row(f, 2, want);
}

static void new_incarnation_resets_the_frontier_and_drops_waiting_pushes(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 3);
    const float g[DENSE_DIM] = {1, 1, 1}, want[DENSE_DIM] = {-2, -2, -2};
    struct pending stale;
    struct reply r;

    push_seq_ok(f, 2, DENSE, 0, &key, 1, g, DENSE_DIM, INC(100) + 1, &r);
    pending_init(&stale);
    flr_call_start(&stale.call, f->conn,
                   mk_push_seq(f, 2, DENSE, 0, &key, 1, g, DENSE_DIM, INC(100) + 3), 300, NULL);
    serve_until_early(f, 1);

    /* The worker restarted: its first pull shows the new base. */
    rpc(f, mk_pull_inc(f, 2, DENSE, 0, &key, 1, INC(200)), &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(flr_shard_frontier(f->sh, 2), INC(200));
    assert_int_equal(flr_shard_stats(f->sh)->early_pushes, 0);
    serve_until_done(f, &stale);
    assert_int_equal(stale.call.rv, FLR_ETIMEOUT);
    flr_call_fini(&stale.call);

    /* Its pushes count from the new base: pseq 1 is new, not a duplicate. */
    push_seq_ok(f, 2, DENSE, 0, &key, 1, g, DENSE_DIM, INC(200) + 1, &r);
    assert_int_equal(flr_shard_stamp(f->sh), 2);
    assert_row(f, 3, want);

    /* The old process's late requests are refused. */
    rpc(f, mk_push_seq(f, 2, DENSE, 0, &key, 1, g, DENSE_DIM, INC(100) + 2), &r);
    assert_int_equal(r.status, FLR_EBAD_REQUEST);
    assert_row(f, 3, want);
}

static void bsp_retried_push_is_held_once_and_applied_once(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 5);
    const float g[DENSE_DIM] = {1, 2, 3}, want[DENSE_DIM] = {-1, -2, -3};
    struct reply r;

    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(7) + 1, &r);
    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(7) + 1, &r);
    assert_non_null(flr_shard_held_push(f->sh, 0));
    assert_null(flr_shard_held_push(f->sh, 1));
    for (uint32_t w = 0; w < NWORKERS; w++)
        clock_ok(f, w, 1);
    assert_int_equal(flr_shard_stamp(f->sh), 1);
    assert_row(f, 5, want);
    assert_int_equal(flr_shard_frontier(f->sh, 0), INC(7) + 1);

    /* A retry that arrives after its clock closed is acknowledged, not refused. */
    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(7) + 1, &r);
    assert_null(flr_shard_held_push(f->sh, 0));
    assert_row(f, 5, want);
    assert_int_equal(flr_shard_stats(f->sh)->duplicate_pushes, 2);
    assert_int_equal(flr_shard_stats(f->sh)->rejected, 0);
}

/* ---- restoring a rebuilt shard -------------------------------------------------------- */

/* A held push as the rebuild hands it over: the message and its decoding into it. */
static void rebuilt_push(struct fixture *f, struct flr_rebuild_held *h, uint32_t worker,
                         int64_t clock, const uint64_t *key, const float *g, uint64_t seq)
{
    char why[FLR_REASON_MAX];

    h->msg = mk_push_seq(f, worker, DENSE, clock, key, 1, g, DENSE_DIM, seq);
    assert_int_equal(flr_msg_decode(&h->m, nng_msg_body(h->msg), nng_msg_len(h->msg), &f->lim,
                                    &f->zone, why, sizeof(why)),
                     0);
}

static void restore_installs_clocks_frontiers_stamp_and_held_pushes(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 3);
    const float g[DENSE_DIM] = {1, 2, 4};
    struct flr_rebuild_result r = {0};
    const struct flr_rebuild_result *info;
    struct reply rep;

    r.nworkers = NWORKERS;
    r.clock = calloc(NWORKERS, sizeof(*r.clock));
    r.frontier = calloc(NWORKERS, sizeof(*r.frontier));
    r.held = calloc(1, sizeof(*r.held));
    assert_non_null(r.clock);
    assert_non_null(r.frontier);
    assert_non_null(r.held);
    r.clock[0] = 3;
    r.clock[1] = 2;
    r.clock[2] = -1; /* did not answer: keeps what the shard knows */
    r.frontier[0] = INC(1000) + 5;
    r.frontier[1] = INC(2000) + 3;
    r.stamp = 10;
    rebuilt_push(f, &r.held[0], 1, 2, &key, g, INC(2000) + 3);
    r.nheld = 1;
    r.rows_rebuilt = 6;
    r.rows_lost = 1;
    r.rows_from_log = 1;
    r.entries_replayed = 4;
    r.entries_skipped = 2;
    r.workers = 2;
    r.bytes = 12345;
    r.ms = 17;

    /* Worker 2 already showed clock 2 to the fresh shard. */
    clock_ok(f, 2, 2);
    assert_int_equal(flr_shard_min_clock(f->sh), 0);
    assert_null(flr_shard_rebuild_info(f->sh));

    assert_int_equal(flr_shard_restore(f->sh, &r), 0);
    assert_null(r.held[0].msg);
    assert_int_equal(flr_shard_stamp(f->sh), 10);
    assert_int_equal(flr_shard_min_clock(f->sh), 2);
    assert_int_equal(flr_shard_frontier(f->sh, 0), INC(1000) + 5);
    assert_int_equal(flr_shard_frontier(f->sh, 1), INC(2000) + 3);
    assert_int_equal(flr_shard_frontier(f->sh, 2), 0);
    assert_non_null(flr_shard_held_push(f->sh, 0));
    info = flr_shard_rebuild_info(f->sh);
    assert_non_null(info);
    assert_int_equal(info->rows_rebuilt, 6);
    assert_int_equal(info->rows_lost, 1);
    assert_int_equal(info->rows_from_log, 1);
    assert_int_equal(info->entries_replayed, 4);
    assert_int_equal(info->entries_skipped, 2);
    assert_int_equal(info->workers, 2);
    assert_int_equal(info->bytes, 12345);
    assert_int_equal(info->ms, 17);
    assert_null(info->clock);
    flr_rebuild_result_free(&r);

    /* The worker retries the push the rebuild holds: acknowledged, not held twice. */
    push_seq_ok(f, 1, DENSE, 2, &key, 1, g, DENSE_DIM, INC(2000) + 3, &rep);
    assert_null(flr_shard_held_push(f->sh, 1));
    assert_int_equal(flr_shard_stats(f->sh)->duplicate_pushes, 1);

    /* The held push of clock 2 waits for clock 2 to close, then is applied once. */
    pull_ok(f, 0, DENSE, 2, &key, 1, &rep);
    for (int j = 0; j < DENSE_DIM; j++)
        assert_true(rep.vals[j] == 0.0f);
    clock_ok(f, 1, 3);
    assert_int_equal(flr_shard_min_clock(f->sh), 2);
    clock_ok(f, 2, 3);
    assert_int_equal(flr_shard_min_clock(f->sh), 3);
    assert_int_equal(flr_shard_stamp(f->sh), 11);
    pull_ok(f, 0, DENSE, 3, &key, 1, &rep);
    for (int j = 0; j < DENSE_DIM; j++)
        assert_true(rep.vals[j] == -g[j]);
}

/*
 * A drain: the new owner takes the source's clocks.  Worker 0 had clocked 3 and workers 1
 * and 2 had clocked 2 at the source, and only worker 1 sends anything here.  Its pull of
 * clock 2 is answered at once, as the source would have answered it (the new owner must
 * not wait for clocks the source acknowledged: they are never sent again).
 */
static void moved_shard_takes_the_sources_clocks(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 3);
    const int64_t clocks[NWORKERS] = {3, 2, 2}, lower[NWORKERS] = {1, 1, 1};
    struct pending pull;
    struct reply r;
    int removed;

    flr_shard_set_clocks(f->sh, clocks, NWORKERS, 2);
    assert_int_equal(flr_shard_min_clock(f->sh), 2);
    assert_int_equal(flr_shard_worker_clock(f->sh, 0, &removed), 3);
    assert_int_equal(flr_shard_stamp(f->sh), 0); /* nothing was closed here */
    pull_ok(f, 1, DENSE, 2, &key, 1, &r);

    /* Older clocks (a second source reply, say) lower nothing. */
    flr_shard_set_clocks(f->sh, lower, NWORKERS, 0);
    assert_int_equal(flr_shard_min_clock(f->sh), 2);
    assert_int_equal(flr_shard_worker_clock(f->sh, 0, &removed), 3);

    /* Clock 3 closes once workers 1 and 2 send it here. */
    pending_init(&pull);
    pending_start(f, &pull, mk_pull(f, 1, DENSE, 3, &key, 1));
    serve_until_held(f, 1);
    clock_ok(f, 1, 3);
    assert_false(pending_is_done(&pull));
    clock_ok(f, 2, 3);
    assert_int_equal(flr_shard_min_clock(f->sh), 3);
    pending_finish(f, &pull, &r);
    flr_call_fini(&pull.call);
    assert_int_equal(r.status, 0);
}

static void restore_refuses_a_held_push_it_cannot_hold_and_takes_nothing(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 3);
    const float g[DENSE_DIM] = {1, 2, 4};
    struct flr_rebuild_result r = {0};

    /* ASP holds no pushes for a clock. */
    r.nworkers = NWORKERS;
    r.held = calloc(1, sizeof(*r.held));
    assert_non_null(r.held);
    rebuilt_push(f, &r.held[0], 1, 0, &key, g, INC(1) + 1);
    r.nheld = 1;
    r.stamp = 4;
    assert_int_equal(flr_shard_restore(f->sh, &r), FLR_EBAD_REQUEST);
    assert_non_null(r.held[0].msg);
    assert_int_equal(flr_shard_stamp(f->sh), 0);
    assert_null(flr_shard_rebuild_info(f->sh));
    flr_rebuild_result_free(&r);
}

/* ---- recovery flr: copies, safe stamp, covered pseqs ------------------------------------- */

static uint64_t safe_stamp(struct fixture *f)
{
    struct flr_shard_copies c;
    assert_int_equal(flr_shard_copies(f->sh, &c), 1);
    return c.safe_stamp;
}

/* Runs one replication pass to the given targets; returns the replicas. */
static uint32_t replicate(struct fixture *f, const uint32_t *targets, uint32_t n,
                          struct flr_shard_replica *out)
{
    uint32_t got = 0;
    assert_int_equal(flr_shard_replicate(f->sh, targets, n, 8 << 20, out, &got), 0);
    return got;
}

static void recovery_none_replies_carry_no_copies_state(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 1);
    const float g[DENSE_DIM] = {1, 1, 1};
    struct flr_shard_copies c;
    struct flr_shard_replica out[1];
    const uint32_t t[1] = {1};
    struct reply r;

    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(3) + 1, &r);
    assert_int_equal(r.aux, 0);
    pull_ok(f, 0, DENSE, 0, &key, 1, &r);
    assert_int_equal(r.aux, 0);
    assert_int_equal(r.nextra, 0);
    assert_int_equal(flr_shard_copies(f->sh, &c), 0);
    assert_int_equal(replicate(f, t, 1, out), 0);
    assert_int_equal(replicate(f, t, 1, out), 0);
}

static void pulls_make_holders_and_covered_pseq_follows_the_safe_stamp(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 1);
    const float g[DENSE_DIM] = {1, 1, 1};
    struct reply r;

    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(3) + 1, &r);
    assert_int_equal(r.stamp, 1);
    assert_int_equal(r.aux, 0); /* the row has no copy yet */
    assert_int_equal(safe_stamp(f), 0);

    /* Worker 0's pull carries the record (S, C, V) and makes it a holder. */
    pull_ok(f, 0, DENSE, 0, &key, 1, &r);
    assert_int_equal(r.stamp, 1);
    assert_int_equal(r.clock, 0);
    assert_int_equal(r.nextra, NWORKERS);
    assert_int_equal(r.extra[0], INC(3) + 1);
    assert_int_equal(r.extra[1], 0);
    assert_int_equal(safe_stamp(f), 1);
    rpc(f, mk_clock(f, 0, 1), &r);
    assert_int_equal(r.aux, INC(3) + 1);

    /* A change clears the holders: the next push is covered only after a new copy. */
    push_seq_ok(f, 0, DENSE, 1, &key, 1, g, DENSE_DIM, INC(3) + 2, &r);
    assert_int_equal(r.aux, INC(3) + 1);
    assert_int_equal(safe_stamp(f), 1);
    pull_ok(f, 2, DENSE, 0, &key, 1, &r);
    assert_int_equal(r.aux, 0); /* worker 2 pushed nothing */
    push_seq_ok(f, 0, DENSE, 1, &key, 1, g, DENSE_DIM, INC(3) + 2, &r);
    assert_int_equal(r.stamp, 2); /* a duplicate reports the stamp it was applied at */
    assert_int_equal(r.aux, INC(3) + 2);
}

static void flr_shard_applies_a_new_process_from_its_first_push(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 5);
    const float g[DENSE_DIM] = {1, 1, 1}, want[DENSE_DIM] = {-2, -2, -2};
    struct pending second;
    struct reply r;

    /* Under flr a frontier the shard was not given is a process's base: pseq 2 waits. */
    pending_init(&second);
    pending_start(f, &second, mk_push_seq(f, 1, DENSE, 0, &key, 1, g, DENSE_DIM, INC(6) + 2));
    serve_until_early(f, 1);
    assert_int_equal(flr_shard_stamp(f->sh), 0);
    push_seq_ok(f, 1, DENSE, 0, &key, 1, g, DENSE_DIM, INC(6) + 1, &r);
    pending_finish(f, &second, &r);
    flr_call_fini(&second.call);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.stamp, 2);
    assert_row(f, 5, want);
}

static void replication_sends_listed_rows_and_acks_make_holders(void **state)
{
    struct fixture *f = *state;
    const uint64_t keys[2] = {flr_key(DENSE, 2), flr_key(DENSE, 3)};
    const float g[2 * DENSE_DIM] = {1, 1, 1, 2, 2, 2};
    const uint32_t targets[2] = {1, 2};
    struct flr_shard_replica out[2];
    struct flr_shard_copies c;
    struct flr_msg m;
    char why[FLR_REASON_MAX];
    struct reply r;
    uint32_t n, rows = 0;

    push_seq_ok(f, 0, DENSE, 0, keys, 2, g, 2 * DENSE_DIM, INC(5) + 1, &r);
    /* The rows were listed after the previous pass: pulls get a chance first. */
    assert_int_equal(replicate(f, targets, 2, out), 0);
    n = replicate(f, targets, 2, out);
    assert_true(n >= 1);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(flr_msg_decode(&m, nng_msg_body(out[i].msg), nng_msg_len(out[i].msg),
                                        &f->lim, &f->rzone, why, sizeof(why)),
                         0);
        assert_int_equal(m.type, FLR_MSG_REPLICATE);
        assert_int_equal(m.table, DENSE);
        assert_int_equal(m.stamp, 1);
        assert_int_equal(m.extra_len, NWORKERS * 8);
        assert_int_equal(flr_keys_check_sorted(m.keys, m.nkeys), 0);
        /* Full rows: value, then the copy's stamp S and the step count. */
        assert_int_equal(m.vals_len, (uint64_t)m.nkeys * (DENSE_DIM * 4 + 12));
        assert_int_equal(flr_load_u64((const unsigned char *)m.vals + DENSE_DIM * 4), 1);
        rows += m.nkeys;
        nng_msg_free(out[i].msg);
    }
    assert_int_equal(rows, 2);
    assert_int_equal(safe_stamp(f), 0);
    flr_shard_replicate_done(f->sh, out[0].id, 0); /* a failure: copied again */
    for (uint32_t i = 1; i < n; i++)
        flr_shard_replicate_done(f->sh, out[i].id, 1);
    assert_int_equal(safe_stamp(f), 0);
    assert_int_equal(flr_shard_copies(f->sh, &c), 1);
    assert_int_equal(c.replicate_errors, 1);
    assert_true(c.short_rows >= 1);

    n = replicate(f, targets, 2, out);
    assert_true(n >= 1);
    for (uint32_t i = 0; i < n; i++) {
        nng_msg_free(out[i].msg);
        flr_shard_replicate_done(f->sh, out[i].id, 1);
    }
    assert_int_equal(flr_shard_copies(f->sh, &c), 1);
    assert_int_equal(c.short_rows, 0);
    assert_int_equal(c.safe_stamp, 1);
    assert_int_equal(c.need, 1);
    assert_int_equal(c.k, 2);
    assert_true(c.replicated_rows >= 2);
    rpc(f, mk_clock(f, 0, 1), &r);
    assert_int_equal(r.aux, INC(5) + 1);
}

/* A copy of a row that changed while it travelled is no holder of the new version, but it
 * covers the updates up to the stamp it was read at. */
static void a_copy_of_a_row_changed_since_covers_it_up_to_its_stamp(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 4);
    const float g[DENSE_DIM] = {1, 1, 1};
    const uint32_t targets[1] = {1};
    struct flr_shard_replica out[1];
    struct reply r;

    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(5) + 1, &r);
    assert_int_equal(replicate(f, targets, 1, out), 0);
    assert_int_equal(replicate(f, targets, 1, out), 1);
    nng_msg_free(out[0].msg);
    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(5) + 2, &r);
    flr_shard_replicate_done(f->sh, out[0].id, 1);
    assert_int_equal(safe_stamp(f), 1);
    assert_int_equal(r.aux, 0);
    {
        struct flr_shard_copies c;
        assert_int_equal(flr_shard_copies(f->sh, &c), 1);
        assert_int_equal(c.short_rows, 1); /* the new version still needs its copy */
    }
}

/* k = 3: a row goes to two workers.  When every copy fails, pass after pass, the row waits
 * on the retry list once: it is sent again to two workers, never to more. */
static void a_failed_row_is_retried_once_per_pass(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 5);
    const float g[DENSE_DIM] = {1, 1, 1};
    const uint32_t targets[2] = {1, 2};
    struct flr_shard_replica out[2];
    struct flr_shard_copies c;
    struct reply r;
    uint32_t n;

    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(5) + 1, &r);
    assert_int_equal(replicate(f, targets, 2, out), 0);
    for (int pass = 0; pass < 4; pass++) {
        n = replicate(f, targets, 2, out);
        assert_int_equal(n, 2); /* one REPLICATE per worker, the row in each */
        for (uint32_t i = 0; i < n; i++) {
            nng_msg_free(out[i].msg);
            flr_shard_replicate_done(f->sh, out[i].id, 0);
        }
        assert_int_equal(flr_shard_copies(f->sh, &c), 1);
        assert_int_equal(c.need, 2);
        assert_int_equal(c.short_rows, 1);
        assert_int_equal(c.safe_stamp, 0);
    }
    n = replicate(f, targets, 2, out);
    assert_int_equal(n, 2);
    for (uint32_t i = 0; i < n; i++) {
        nng_msg_free(out[i].msg);
        flr_shard_replicate_done(f->sh, out[i].id, 1);
    }
    assert_int_equal(flr_shard_copies(f->sh, &c), 1);
    assert_int_equal(c.short_rows, 0);
    assert_int_equal(c.safe_stamp, 1);
}

static void removed_worker_leaves_its_rows_short_again(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 6);
    const float g[DENSE_DIM] = {1, 1, 1};
    struct flr_shard_copies c;
    struct reply r;

    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(5) + 1, &r);
    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(5) + 2, &r);
    pull_ok(f, 1, DENSE, 0, &key, 1, &r);
    assert_int_equal(safe_stamp(f), 2);
    flr_shard_remove_worker(f->sh, 1);
    assert_int_equal(flr_shard_copies(f->sh, &c), 1);
    assert_int_equal(c.short_rows, 1);
    /* Listed again at the current stamp: the safe stamp does not go back. */
    assert_int_equal(c.safe_stamp, 2);
    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(5) + 3, &r);
    assert_int_equal(safe_stamp(f), 2);
    assert_int_equal(r.aux, INC(5) + 2);
}

static nng_msg *mk_leave(struct fixture *f, uint32_t worker, int64_t clock)
{
    struct flr_msg m = msg_base(f, FLR_MSG_LEAVE, worker, clock);
    return encode(&m);
}

/* A finished worker may go only once the rows whose copies it held are copied to another
 * worker: until then a rebuild may need them (and its log). */
static void leaving_worker_stays_until_its_rows_are_copied_elsewhere(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 6);
    const float g[DENSE_DIM] = {1, 1, 1};
    const uint32_t to0[1] = {0};
    struct flr_shard_replica out[2];
    struct flr_shard_copies c;
    struct reply r;
    uint32_t n;

    /* Worker 1 pushes and pulls: its copy covers its push, so its log is empty. */
    push_seq_ok(f, 1, DENSE, 0, &key, 1, g, DENSE_DIM, INC(5) + 1, &r);
    pull_ok(f, 1, DENSE, 0, &key, 1, &r);
    rpc(f, mk_clock(f, 1, 1), &r);
    assert_int_equal(r.aux, INC(5) + 1);

    /* It finishes: the first LEAVE removes it, and the row it alone held must stay with it
     * until the row is copied to worker 0. */
    rpc(f, mk_leave(f, 1, 1), &r);
    assert_int_equal(r.type, FLR_MSG_LEAVE_REPLY);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.stamp, 0);
    assert_int_equal(flr_shard_copies(f->sh, &c), 1);
    assert_int_equal(c.short_rows, 1);
    /* A removed worker is refused anything but LEAVE. */
    rpc(f, mk_clock(f, 1, 2), &r);
    assert_int_equal(r.status, FLR_EWORKER_REMOVED);
    rpc(f, mk_leave(f, 1, 1), &r);
    assert_int_equal(r.stamp, 0);

    /* The replication pass copies the row to worker 0 (the first pass lets pulls go
     * first); once worker 0 acknowledges, worker 1 may go. */
    n = replicate(f, to0, 1, out);
    if (n == 0)
        n = replicate(f, to0, 1, out);
    assert_int_equal(n, 1);
    nng_msg_free(out[0].msg);
    rpc(f, mk_leave(f, 1, 1), &r);
    assert_int_equal(r.stamp, 0); /* in flight: not a copy yet */
    flr_shard_replicate_done(f->sh, out[0].id, 1);
    rpc(f, mk_leave(f, 1, 1), &r);
    assert_int_equal(r.stamp, 1); /* released: the stamp it was removed at */
    assert_int_equal(r.aux, INC(5) + 1);
    assert_int_equal(flr_shard_copies(f->sh, &c), 1);
    assert_int_equal(c.short_rows, 0);
}

/* With nobody left to hold copies, a leaving worker is released at once. */
static void last_worker_leaves_at_once(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 5);
    const float g[DENSE_DIM] = {1, 1, 1};
    struct reply r;

    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(5) + 1, &r);
    for (uint32_t w = 1; w < NWORKERS; w++)
        flr_shard_remove_worker(f->sh, w);
    rpc(f, mk_leave(f, 0, 0), &r);
    assert_int_equal(r.status, 0);
    assert_true(r.stamp > 0);
}

static void bsp_closed_clock_is_covered_once_its_rows_are_copied(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 7);
    const float g[DENSE_DIM] = {1, 1, 1};
    struct reply r;

    push_seq_ok(f, 0, DENSE, 0, &key, 1, g, DENSE_DIM, INC(8) + 1, &r);
    push_seq_ok(f, 1, DENSE, 0, &key, 1, g, DENSE_DIM, INC(9) + 1, &r);
    for (uint32_t w = 0; w < NWORKERS; w++)
        clock_ok(f, w, 1);
    assert_int_equal(flr_shard_stamp(f->sh), 1);
    rpc(f, mk_clock(f, 0, 1), &r);
    assert_int_equal(r.aux, 0);
    pull_ok(f, 2, DENSE, 1, &key, 1, &r);
    assert_int_equal(r.nextra, 0); /* BSP: the closed clock is the record */
    assert_int_equal(r.clock, 1);
    rpc(f, mk_clock(f, 0, 1), &r);
    assert_int_equal(r.aux, INC(8) + 1);
    rpc(f, mk_clock(f, 1, 1), &r);
    assert_int_equal(r.aux, INC(9) + 1);
}

static void restored_rows_are_listed_until_copied_afresh(void **state)
{
    struct fixture *f = *state;
    const uint64_t key = flr_key(DENSE, 2);
    struct flr_rebuild_result res = {0};
    unsigned char row[DENSE_DIM * 4 + 12] = {0};
    uint64_t stamp = 9;
    struct reply r;

    /* The rebuild filled one row, last changed at stamp 9. */
    memcpy(row + DENSE_DIM * 4, &stamp, 8);
    assert_int_equal(
        flr_tshard_import(flr_store_table(flr_shard_store(f->sh), DENSE), &key, 1, row), 0);
    res.nworkers = NWORKERS;
    res.frontier = calloc(NWORKERS, sizeof(*res.frontier));
    assert_non_null(res.frontier);
    res.frontier[0] = INC(4) + 6;
    res.stamp = 9;
    assert_int_equal(flr_shard_restore(f->sh, &res), 0);
    flr_rebuild_result_free(&res);
    assert_int_equal(safe_stamp(f), 8);
    rpc(f, mk_clock(f, 0, 0), &r);
    assert_int_equal(r.aux, 0);
    pull_ok(f, 1, DENSE, 0, &key, 1, &r);
    assert_int_equal(safe_stamp(f), 9);
    rpc(f, mk_clock(f, 0, 0), &r);
    assert_int_equal(r.aux, INC(4) + 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(asp_push_applies_at_once_and_pull_sees_it, setup_asp,
                                        teardown),
        cmocka_unit_test_setup_teardown(asp_sparse_pull_returns_initial_row_minus_gradient,
                                        setup_asp, teardown),
        cmocka_unit_test_setup_teardown(asp_pull_ahead_of_every_clock_is_answered_at_once,
                                        setup_asp, teardown),
        cmocka_unit_test_setup_teardown(
            bsp_pull_is_held_until_every_worker_clocks_then_sees_all_pushes, setup_bsp, teardown),
        cmocka_unit_test_setup_teardown(bsp_removing_a_dead_worker_releases_what_waited_for_it,
                                        setup_bsp, teardown),
        cmocka_unit_test_setup_teardown(bsp_result_does_not_depend_on_push_arrival_order, setup_bsp,
                                        teardown),
        cmocka_unit_test_setup_teardown(bsp_push_for_a_closed_clock_is_rejected, setup_bsp,
                                        teardown),
        cmocka_unit_test_setup_teardown(bsp_push_for_a_closed_clock_is_not_counted_as_a_push,
                                        setup_bsp, teardown),
        cmocka_unit_test_setup_teardown(ssp_pull_is_answered_within_staleness_and_held_beyond,
                                        setup_ssp2, teardown),
        cmocka_unit_test_setup_teardown(ssp_push_applies_on_arrival, setup_ssp2, teardown),
        cmocka_unit_test_setup_teardown(push_with_nan_gradient_is_rejected_and_changes_nothing,
                                        setup_asp, teardown),
        cmocka_unit_test_setup_teardown(
            push_with_wrong_value_length_is_rejected_and_changes_nothing, setup_asp, teardown),
        cmocka_unit_test_setup_teardown(key_out_of_range_is_rejected_and_changes_nothing, setup_asp,
                                        teardown),
        cmocka_unit_test_setup_teardown(unsorted_keys_are_rejected_and_change_nothing, setup_asp,
                                        teardown),
        cmocka_unit_test_setup_teardown(unknown_table_is_rejected_and_changes_nothing, setup_asp,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            clock_or_push_from_unknown_worker_is_rejected_and_changes_nothing, setup_bsp, teardown),
        cmocka_unit_test_setup_teardown(bsp_rejections_hold_nothing, setup_bsp, teardown),
        cmocka_unit_test_setup_teardown(close_with_held_pull_and_push_releases_them, setup_bsp,
                                        teardown),
        cmocka_unit_test_setup_teardown(close_with_held_pull_is_clean_at_teardown, setup_bsp,
                                        teardown),
        cmocka_unit_test_setup_teardown(asp_retried_push_is_acknowledged_and_applied_once,
                                        setup_asp, teardown),
        cmocka_unit_test_setup_teardown(asp_early_push_waits_for_its_predecessor, setup_asp,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            new_incarnation_resets_the_frontier_and_drops_waiting_pushes, setup_asp, teardown),
        cmocka_unit_test_setup_teardown(bsp_retried_push_is_held_once_and_applied_once, setup_bsp,
                                        teardown),
        cmocka_unit_test_setup_teardown(recovery_none_replies_carry_no_copies_state, setup_asp,
                                        teardown),
        cmocka_unit_test_setup_teardown(pulls_make_holders_and_covered_pseq_follows_the_safe_stamp,
                                        setup_flr_asp, teardown),
        cmocka_unit_test_setup_teardown(flr_shard_applies_a_new_process_from_its_first_push,
                                        setup_flr_asp, teardown),
        cmocka_unit_test_setup_teardown(replication_sends_listed_rows_and_acks_make_holders,
                                        setup_flr_asp, teardown),
        cmocka_unit_test_setup_teardown(a_copy_of_a_row_changed_since_covers_it_up_to_its_stamp,
                                        setup_flr_asp, teardown),
        cmocka_unit_test_setup_teardown(a_failed_row_is_retried_once_per_pass, setup_flr_asp_k3,
                                        teardown),
        cmocka_unit_test_setup_teardown(leaving_worker_stays_until_its_rows_are_copied_elsewhere,
                                        setup_flr_asp, teardown),
        cmocka_unit_test_setup_teardown(last_worker_leaves_at_once, setup_flr_asp, teardown),
        cmocka_unit_test_setup_teardown(removed_worker_leaves_its_rows_short_again, setup_flr_asp,
                                        teardown),
        cmocka_unit_test_setup_teardown(bsp_closed_clock_is_covered_once_its_rows_are_copied,
                                        setup_flr_bsp, teardown),
        cmocka_unit_test_setup_teardown(restored_rows_are_listed_until_copied_afresh, setup_flr_asp,
                                        teardown),
        cmocka_unit_test_setup_teardown(restore_installs_clocks_frontiers_stamp_and_held_pushes,
                                        setup_bsp, teardown),
        cmocka_unit_test_setup_teardown(moved_shard_takes_the_sources_clocks, setup_bsp, teardown),
        cmocka_unit_test_setup_teardown(
            restore_refuses_a_held_push_it_cannot_hold_and_takes_nothing, setup_asp, teardown),
    };
    int rv;

    /* Rejections are logged as warnings; the tests check them through the counters. */
    flr_log_init("test_shard", LOG_ERR);
    rv = cmocka_run_group_tests(tests, NULL, NULL);
    /* Releases nng's global threads and buffers so that valgrind sees no leak. */
    nng_fini();
    return rv;
}
