/*
 * client.c - the worker client library (see flr_client.h for the contract).
 *
 * An operation (pull, push or clock) is cut into chunks: one per shard, split further so
 * that no message carries more than max_keys keys or about CL_MSG_BYTES bytes (less when
 * max_msg/2 is smaller; a row larger than that travels alone).  Every chunk
 * is a request on its own nng context, all in flight at once; the operation waits for all
 * of them with one wait group.  Keys of a dense table are contiguous per shard, so chunks
 * are slices of the caller's arrays; keys of a sparse table are grouped by shard with a
 * stable counting sort into scratch arrays first.
 *
 * A chunk answered WRONG_EPOCH, NOT_OWNER, RECOVERING or LEASE_EXPIRED, or lost to a
 * transport error or timeout, is retried on its own, whatever the operation's other chunks
 * are doing: at once when its shard serves again, else after a backoff with the shard map
 * re-read from ZooKeeper, until the retry deadline.  Operations and their buffers are
 * recycled, so steady-state training allocates only the messages themselves.
 *
 * Chunk states:  PENDING (0) --answer--> DONE (1)
 *                   |   ^
 *   retryable, or   v   | resend (shard serving; after a backoff unless it was blocked)
 *   cut off      RETRY (2) --deadline--> the operation fails (FLR_ETIMEOUT)
 */
#include "flr_client.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/shardmap.h"
#include "common/spec.h"
#include "common/transport.h"
#include "common/util.h"
#include "common/zk.h"
#include "copies.h"
#include "keeper.h"

enum { OP_PULL = 1, OP_PUSH = 2, OP_CLOCK = 3, OP_LEAVE = 4 };

/*
 * Payload bytes per message before an operation is split.  Large enough that the
 * per-message cost is small; small enough that the server applies one message while the
 * next ones are still on the wire, and far below glibc's largest mmap threshold (32 MiB),
 * above which every message buffer (the sender's encoding, the receiver's copy) is mapped
 * afresh and page-faulted in.  Measured with bench/pushpull: 64 rows of 1 MiB move about
 * twice as fast in 4 MiB messages as in one 64 MiB message.
 */
#define CL_MSG_BYTES ((uint64_t)4 << 20)

struct cl_conn {
    uint32_t server;
    uint64_t incarnation;
    char endpoint[FLR_ENDPOINT_MAX];
    struct flr_conn *conn;
};

struct chunk {
    uint32_t shard;
    uint32_t first, n;     /* slice of the routed key order */
    int state;             /* 0 pending, 1 done, 2 retry */
    atomic_int finished;   /* the call completed (set on nng's thread) */
    int waited;            /* it waited for its shard to serve again: goes without a pause */
    uint64_t epoch;        /* the shard epoch it was sent with */
    struct flr_conn *conn; /* the connection it was sent on */
    uint64_t pseq;         /* a push's sequence number (recovery flr), kept on every retry */
    struct flr_call call;
};

struct flr_op {
    struct flr_client *c;
    int kind;
    uint32_t table, dim;
    int keep_copies;      /* a pull whose rows are qualified copies (recovery flr, no slots) */
    const uint64_t *keys; /* routed order (caller's array or rkeys) */
    uint32_t n;
    float *vals;          /* pull destination (caller's, original order) */
    const float *grads;   /* push source, routed order (caller's array or rgrads) */
    const uint32_t *perm; /* routed index -> caller's index, NULL when identity */
    int64_t clock;
    int result;       /* the first error that fails the operation, 0 while none */
    int timeout_ms;   /* the operation's timeout (the client's, unless set after cl_op_get) */
    int64_t until;    /* 0, or when it fails even while a shard recovers (monotonic ms) */
    uint32_t staying; /* OP_LEAVE: shards that answered "stay" */

    /* recycled scratch */
    uint32_t *perm_buf;
    uint64_t *rkeys;
    float *rgrads;
    uint32_t *shard_of;
    uint32_t *count;       /* num_shards + 1 counters for the counting sort */
    size_t scratch_cap;    /* keys */
    size_t grads_cap;      /* floats */
    struct chunk **chunks; /* each allocated once: nng holds pointers to their calls */
    size_t nchunks, chunks_cap;
    struct flr_waitgroup *wg;
    struct flr_op *next_free;
};

struct flr_client {
    struct flr_client_opts o;
    char zk_hosts[256];
    char job[FLR_JOB_MAX];
    struct flr_zk *zk;
    char *spec_json;
    struct flr_job_spec spec;
    struct flr_shard_rec *shards; /* num_shards */
    struct cl_conn *conns;
    size_t nconns, conns_cap;
    struct flr_conn **retired;
    size_t nretired;
    int64_t clock;
    int64_t start_clock; /* where this worker (re)joined the job */
    uint64_t next_req;
    char rec[256];       /* our registration record, without progress */
    int64_t progress_ms; /* when progress was last published */
    int64_t clocks_total, samples;
    uint32_t epoch;
    double loss;
    msgpack_zone zone;
    struct flr_proto_limits lim;
    struct flr_op *free_ops;
    char last_error[FLR_REASON_MAX + 64];
    int map_stale; /* the last read of the map failed: its watches may not all be set */

    /* Recovery flr (docs/recovery.md); all NULL or 0 under any other mode. */
    char listen[FLR_ENDPOINT_MAX];
    uint64_t inc;                        /* incarnation base */
    struct flr_copies *copies;           /* copies, records and update log */
    uint64_t bytes_sent, bytes_received; /* requests and replies on the data path */
    uint64_t peak_copy_bytes, peak_log_bytes;
    struct flr_keeper *keeper; /* the endpoint servers replicate to and rebuild from */
};

void flr_client_opts_default(struct flr_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->session_ms = 10000;
    o->timeout_ms = 120000;
    o->start_timeout_ms = 120000;
    o->max_keys = 1u << 20;
    o->max_msg = (size_t)256 << 20;
    o->listen = "tcp://127.0.0.1:0";
}

static int cl_fail(struct flr_client *c, int rv, const char *fmt, const char *detail)
{
    snprintf(c->last_error, sizeof(c->last_error), fmt, detail);
    return rv;
}

/* ---- shard map -------------------------------------------------------------------- */

static struct flr_conn *cl_conn_for(struct flr_client *c, const struct flr_server_rec *srv)
{
    struct cl_conn *cc = NULL;
    char why[256];

    for (size_t i = 0; i < c->nconns; i++)
        if (c->conns[i].server == srv->id)
            cc = &c->conns[i];
    if (cc && cc->incarnation == srv->incarnation && strcmp(cc->endpoint, srv->endpoint) == 0)
        return cc->conn;
    if (!cc) {
        if (c->nconns == c->conns_cap) {
            size_t cap = c->conns_cap ? c->conns_cap * 2 : 8;
            struct cl_conn *v = realloc(c->conns, cap * sizeof(*v));
            if (!v)
                return NULL;
            c->conns = v;
            c->conns_cap = cap;
        }
        cc = &c->conns[c->nconns++];
        memset(cc, 0, sizeof(*cc));
        cc->server = srv->id;
    } else if (cc->conn) {
        /* The server restarted: keep the old socket open until close, since recycled
         * calls may still hold contexts on it. */
        struct flr_conn **v = realloc(c->retired, (c->nretired + 1) * sizeof(*v));
        if (!v)
            return NULL;
        c->retired = v;
        c->retired[c->nretired++] = cc->conn;
        cc->conn = NULL;
    }
    if (flr_conn_open(&cc->conn, srv->endpoint, c->o.max_msg, why, sizeof(why)) != 0) {
        cc->conn = NULL;
        return NULL;
    }
    cc->incarnation = srv->incarnation;
    snprintf(cc->endpoint, sizeof(cc->endpoint), "%s", srv->endpoint);
    return cc->conn;
}

/* Re-reads shard records and server records from ZooKeeper. */
static int cl_read_map_once(struct flr_client *c)
{
    char path[FLR_PATH_MAX], *data, **names = NULL;
    int len, rv, n = 0;

    for (uint32_t i = 0; i < c->spec.num_shards; i++) {
        flr_job_node(path, sizeof(path), c->job, "shards", i);
        /* Leave a watch: a changed record is re-read before the next request is routed. */
        if ((rv = flr_zk_get(c->zk, path, 1, &data, &len, NULL, NULL)) != 0)
            return cl_fail(c, rv, "reading shard record: %s", flr_strerror(rv));
        rv = flr_shard_rec_from_json(&c->shards[i], data, (size_t)len);
        free(data);
        if (rv != 0)
            return cl_fail(c, rv, "%s", "unreadable shard record");
    }
    flr_job_path(path, sizeof(path), c->job, "/servers");
    if ((rv = flr_zk_children(c->zk, path, 1, &names, &n)) != 0)
        return cl_fail(c, rv, "listing servers: %s", flr_strerror(rv));
    for (int i = 0; i < n; i++) {
        struct flr_server_rec srv;
        char p2[2 * FLR_PATH_MAX];
        snprintf(p2, sizeof(p2), "%s/%s", path, names[i]);
        /* A watch here too: a server's record can change without the listing changing. */
        if ((rv = flr_zk_get(c->zk, p2, 1, &data, &len, NULL, NULL)) == FLR_EZK_NONODE)
            continue; /* gone since the listing */
        if (rv != 0) {
            /* Skipping it could leave a connection to a process that is gone in use. */
            flr_zk_free_names(names, n);
            return cl_fail(c, rv, "reading server record: %s", flr_strerror(rv));
        }
        rv = flr_server_rec_from_json(&srv, data, (size_t)len);
        free(data);
        if (rv == 0)
            (void)cl_conn_for(c, &srv);
    }
    flr_zk_free_names(names, n);
    return 0;
}

/* Reads the map; a read that failed may have left watches unset, so it is marked stale
 * and read again at the next poll.  Not after a lost connection: its return is an event
 * of its own, and reading again before it would only wait for it. */
static int cl_read_map(struct flr_client *c)
{
    int rv = cl_read_map_once(c);

    c->map_stale = rv != 0 && rv != FLR_EZK && rv != FLR_EZK_EXPIRED;
    return rv;
}

static struct flr_conn *cl_shard_conn(struct flr_client *c, uint32_t shard)
{
    const struct flr_shard_rec *r = &c->shards[shard];

    if (r->owner == FLR_NO_OWNER || r->state != FLR_SHARD_ACTIVE)
        return NULL;
    for (size_t i = 0; i < c->nconns; i++)
        if (c->conns[i].server == r->owner)
            return c->conns[i].conn;
    return NULL;
}

/* ---- open / close ------------------------------------------------------------------ */

static int cl_wait_running(struct flr_client *c, char *why, size_t whylen)
{
    char path[FLR_PATH_MAX], *data;
    int64_t deadline = flr_now_ms() + c->o.start_timeout_ms;
    int len, rv;

    flr_job_path(path, sizeof(path), c->job, "/state");
    for (;;) {
        rv = flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL);
        if (rv == 0) {
            int running = strcmp(data, "running") == 0;
            int over = strcmp(data, "done") == 0 || strcmp(data, "failed") == 0;
            if (over)
                snprintf(why, whylen, "job %s is already %s", c->job, data);
            free(data);
            if (running)
                return 0;
            if (over)
                return FLR_ECLOSED;
        } else if (rv != FLR_EZK_NONODE) {
            snprintf(why, whylen, "reading %s: %s", path, flr_strerror(rv));
            return rv;
        }
        if (flr_now_ms() > deadline) {
            snprintf(why, whylen, "job %s did not start within %d ms (is the coordinator running?)",
                     c->job, c->o.start_timeout_ms);
            return FLR_ETIMEOUT;
        }
        usleep(50 * 1000);
    }
}

/*
 * Reads the clock the shards of the server at endpoint hold for us into *start (the
 * largest).  Returns 0, or 1 while the server cannot say or still counts us removed.
 */
static int cl_clock_at(struct flr_client *c, const char *endpoint, int64_t *start)
{
    json_error_t err;
    json_t *doc, *sh;
    size_t len, i;
    char *text;
    int pending = 0;

    if (flr_status_fetch(endpoint, c->job, c->o.worker_id, 2000, &text, &len) != 0)
        return 1;
    doc = json_loadb(text, len, 0, &err);
    free(text);
    if (!doc)
        return 1;
    json_array_foreach(json_object_get(doc, "shards"), i, sh)
    {
        int64_t wc = json_integer_value(json_object_get(sh, "sender_clock"));
        pending |= json_is_true(json_object_get(sh, "sender_removed"));
        if (wc > *start)
            *start = wc;
    }
    json_decref(doc);
    return pending;
}

/*
 * Where this worker starts: clock 0 in a new job; in a running job that it rejoins after
 * a restart, the clock its shards hold for it.  A worker the coordinator removed (it was
 * seen dead) waits to be readmitted; a readmitted worker's clock is the shards' minimum
 * clock, so it catches up with the others rather than pulling them back.  Its data
 * partition is the same; training goes on from that iteration.
 */
static int cl_rejoin(struct flr_client *c, char *why, size_t whylen)
{
    char path[FLR_PATH_MAX];
    int64_t deadline = flr_now_ms() + c->o.start_timeout_ms;
    int exists = 0, rv, said = 0;

    flr_job_node(path, sizeof(path), c->job, "removed", c->o.worker_id);
    for (;;) {
        int64_t start = 0;
        int pending = 0;
        if ((rv = flr_zk_exists(c->zk, path, 0, &exists)) != 0) {
            snprintf(why, whylen, "reading %s: %s", path, flr_strerror(rv));
            return rv;
        }
        if (!exists) {
            /* Ask every server that owns shards for our clock there. */
            for (uint32_t s = 0; s < c->spec.num_shards; s++)
                pending |= c->shards[s].state == FLR_SHARD_ACTIVE && !cl_shard_conn(c, s);
            for (size_t k = 0; k < c->nconns && !pending; k++) {
                int owns = 0;
                for (uint32_t s = 0; s < c->spec.num_shards; s++)
                    owns |= c->shards[s].owner == c->conns[k].server &&
                            c->shards[s].state == FLR_SHARD_ACTIVE;
                if (owns)
                    pending = cl_clock_at(c, c->conns[k].endpoint, &start);
            }
            if (!pending) {
                c->clock = c->start_clock = start;
                if (start > 0)
                    flr_notice("client.rejoin", "worker %u rejoins job %s at clock %lld",
                               c->o.worker_id, c->job, (long long)start);
                return 0;
            }
        } else if (!said++) {
            flr_notice("client.rejoin",
                       "worker %u was removed from job %s; waiting for the "
                       "coordinator to readmit it",
                       c->o.worker_id, c->job);
        }
        if (flr_now_ms() > deadline) {
            snprintf(why, whylen, "worker %u: not readmitted to job %s within %d ms",
                     c->o.worker_id, c->job, c->o.start_timeout_ms);
            return FLR_ETIMEOUT;
        }
        usleep(100 * 1000);
        (void)cl_read_map(c);
    }
}

/*
 * Recovery flr: a new incarnation base, an empty store, and the endpoint that serves it.
 * The endpoint listens before the worker registers, so the endpoint in the registration
 * answers from the start.
 */
static int cl_keeper_open(struct flr_client *c, char *why, size_t whylen)
{
    struct flr_keeper_ctx ctx = {0};
    int rv;

    c->inc = (uint64_t)flr_wall_ms() << 22;
    if ((rv = flr_copies_alloc(&c->copies, &c->spec, c->inc)) != 0) {
        snprintf(why, whylen, "worker %u: cannot keep copies: %s", c->o.worker_id,
                 flr_strerror(rv));
        return rv;
    }
    ctx.copies = c->copies;
    ctx.spec = &c->spec;
    ctx.worker_id = c->o.worker_id;
    return flr_keeper_open(&c->keeper, c->listen, &ctx, c->o.max_msg, why, whylen);
}

int flr_client_open(struct flr_client **cp, const struct flr_client_opts *o, char *why,
                    size_t whylen)
{
    struct flr_client *c;
    char path[FLR_PATH_MAX], rec[256], host[64] = {0};
    int len, rv;

    if (!o || !o->zk || !o->job || !o->job[0]) {
        snprintf(why, whylen, "the ZooKeeper hosts and the job name are required");
        return FLR_EINVAL;
    }
    if (!(c = calloc(1, sizeof(*c))))
        return FLR_ENOMEM;
    c->o = *o;
    snprintf(c->zk_hosts, sizeof(c->zk_hosts), "%s", o->zk);
    snprintf(c->job, sizeof(c->job), "%s", o->job);
    c->o.zk = c->zk_hosts;
    c->o.job = c->job;
    snprintf(c->listen, sizeof(c->listen), "%s",
             o->listen && o->listen[0] ? o->listen : "tcp://127.0.0.1:0");
    c->o.listen = c->listen;
    msgpack_zone_init(&c->zone, 4096);
    flr_proto_limits_default(&c->lim);
    c->lim.max_size = o->max_msg;

    if ((rv = flr_zk_open(&c->zk, o->zk, o->session_ms, 10000, why, whylen)) != 0)
        goto fail;
    flr_job_path(path, sizeof(path), c->job, "/spec");
    {
        int64_t deadline = flr_now_ms() + o->start_timeout_ms;
        while ((rv = flr_zk_get(c->zk, path, 0, &c->spec_json, &len, NULL, NULL)) ==
                   FLR_EZK_NONODE &&
               flr_now_ms() < deadline)
            usleep(50 * 1000);
    }
    if (rv != 0) {
        snprintf(why, whylen, "job %s: no spec in ZooKeeper (%s)", c->job, flr_strerror(rv));
        goto fail;
    }
    if ((rv = flr_spec_from_json(&c->spec, c->spec_json, why, whylen)) != 0)
        goto fail;
    if (o->worker_id >= c->spec.num_workers) {
        snprintf(why, whylen, "worker id %u is out of range: job %s has %u workers", o->worker_id,
                 c->job, c->spec.num_workers);
        rv = FLR_EINVAL;
        goto fail;
    }
    if (strcmp(c->spec.recovery, "flr") == 0 && (rv = cl_keeper_open(c, why, whylen)) != 0)
        goto fail;
    gethostname(host, sizeof(host) - 1);
    snprintf(rec, sizeof(rec), "{\"id\":%u,\"pid\":%d,\"host\":\"%s\",\"endpoint\":\"%s\"}",
             o->worker_id, (int)getpid(), host,
             o->endpoint && o->endpoint[0] ? o->endpoint
             : c->keeper                   ? flr_keeper_url(c->keeper)
                                           : "");
    snprintf(c->rec, sizeof(c->rec), "%s", rec);
    flr_job_node(path, sizeof(path), c->job, "workers", o->worker_id);
    {
        /* A restarted worker may find the node of its previous life, whose session has
         * not expired yet: wait for it to go, about one session timeout. */
        int64_t deadline = flr_now_ms() + 2 * (int64_t)o->session_ms + 1000;
        while ((rv = flr_zk_create(c->zk, path, rec, (int)strlen(rec), FLR_ZK_EPHEMERAL, NULL,
                                   0)) == FLR_EZK_EXISTS &&
               flr_now_ms() < deadline)
            usleep(100 * 1000);
    }
    if (rv != 0) {
        if (rv == FLR_EZK_EXISTS)
            snprintf(why, whylen, "worker id %u is already registered in job %s by a live session",
                     o->worker_id, c->job);
        else
            snprintf(why, whylen, "registering worker %u: %s", o->worker_id, flr_strerror(rv));
        goto fail;
    }
    if ((rv = cl_wait_running(c, why, whylen)) != 0)
        goto fail;
    if (!(c->shards = calloc(c->spec.num_shards, sizeof(*c->shards)))) {
        rv = FLR_ENOMEM;
        goto fail;
    }
    if ((rv = cl_read_map(c)) != 0) {
        snprintf(why, whylen, "%s", c->last_error);
        goto fail;
    }
    if ((rv = cl_rejoin(c, why, whylen)) != 0)
        goto fail;
    if (c->copies)
        flr_copies_set_clock(c->copies, c->clock);
    *cp = c;
    return 0;
fail:
    flr_client_close(c);
    return rv;
}

static void cl_op_free(struct flr_op *op)
{
    for (size_t i = 0; i < op->chunks_cap; i++) {
        flr_call_fini(&op->chunks[i]->call);
        free(op->chunks[i]);
    }
    free(op->chunks);
    free(op->perm_buf);
    free(op->rkeys);
    free(op->rgrads);
    free(op->shard_of);
    free(op->count);
    flr_waitgroup_free(op->wg);
    free(op);
}

void flr_client_close(struct flr_client *c)
{
    if (!c)
        return;
    /* The endpoint reads the store and the spec: stop it before anything goes. */
    flr_keeper_close(c->keeper);
    while (c->free_ops) {
        struct flr_op *op = c->free_ops;
        c->free_ops = op->next_free;
        cl_op_free(op);
    }
    for (size_t i = 0; i < c->nconns; i++)
        flr_conn_close(c->conns[i].conn);
    for (size_t i = 0; i < c->nretired; i++)
        flr_conn_close(c->retired[i]);
    free(c->conns);
    free(c->retired);
    if (c->zk)
        flr_zk_close(c->zk);
    free(c->shards);
    free(c->spec_json);
    flr_copies_free(c->copies);
    msgpack_zone_destroy(&c->zone);
    free(c);
}

const char *flr_client_spec_json(const struct flr_client *c)
{
    return c->spec_json;
}

int flr_client_table(const struct flr_client *c, uint32_t table, uint64_t *rows, uint32_t *dim)
{
    const struct flr_table_spec *t = flr_spec_table(&c->spec, table);
    if (!t)
        return FLR_EUNKNOWN_TABLE;
    if (rows)
        *rows = t->kind == FLR_TABLE_DENSE ? t->rows : 0;
    if (dim)
        *dim = t->dim;
    return 0;
}

uint32_t flr_client_num_workers(const struct flr_client *c)
{
    return c->spec.num_workers;
}

int64_t flr_client_clock(const struct flr_client *c)
{
    return c->clock;
}

const char *flr_client_last_error(const struct flr_client *c)
{
    return c->last_error;
}

/* ---- operations ------------------------------------------------------------------- */

/* Runs on nng's thread when a chunk's call completed, before the wait group hears of it. */
static void cl_chunk_done(struct flr_call *call)
{
    struct chunk *ch = call->arg;
    atomic_store_explicit(&ch->finished, 1, memory_order_release);
}

static struct flr_op *cl_op_get(struct flr_client *c)
{
    struct flr_op *op = c->free_ops;

    if (op) {
        c->free_ops = op->next_free;
    } else {
        if (!(op = calloc(1, sizeof(*op))))
            return NULL;
        if (flr_waitgroup_alloc(&op->wg) != 0) {
            free(op);
            return NULL;
        }
    }
    op->c = c;
    op->keep_copies = 0;
    op->nchunks = 0;
    op->perm = NULL;
    op->result = 0;
    op->timeout_ms = c->o.timeout_ms;
    op->until = 0;
    op->staying = 0;
    return op;
}

static void cl_op_put(struct flr_op *op)
{
    struct flr_client *c = op->c;
    /* Replies not taken (failed ops) are freed here. */
    for (size_t i = 0; i < op->nchunks; i++)
        if (op->chunks[i]->call.reply) {
            nng_msg_free(op->chunks[i]->call.reply);
            op->chunks[i]->call.reply = NULL;
        }
    op->next_free = c->free_ops;
    c->free_ops = op;
}

static int cl_op_add_chunk(struct flr_op *op, uint32_t shard, uint32_t first, uint32_t n)
{
    if (op->nchunks == op->chunks_cap) {
        /* Only the pointer array moves: each chunk stays where it was allocated, since
         * its call's aio holds the call's address as its callback argument. */
        size_t cap = op->chunks_cap ? op->chunks_cap * 2 : 16;
        struct chunk **v = realloc(op->chunks, cap * sizeof(*v));
        if (!v)
            return FLR_ENOMEM;
        op->chunks = v;
        for (size_t i = op->chunks_cap; i < cap; i++) {
            struct chunk *nc = calloc(1, sizeof(*nc));
            if (!nc || flr_call_init(&nc->call) != 0) {
                free(nc);
                return FLR_ENOMEM;
            }
            nc->call.done = cl_chunk_done;
            nc->call.arg = nc;
            v[i] = nc;
            op->chunks_cap = i + 1;
        }
    }
    struct chunk *ch = op->chunks[op->nchunks++];
    ch->shard = shard;
    ch->first = first;
    ch->n = n;
    ch->state = 0;
    ch->waited = 0;
    ch->pseq = 0;
    return 0;
}

/* Cuts the routed keys [first, first+n) of one shard into message-sized chunks. */
static int cl_op_cut(struct flr_op *op, uint32_t shard, uint32_t first, uint32_t n)
{
    struct flr_client *c = op->c;
    uint64_t row_bytes = 8 + (uint64_t)op->dim * 4;
    uint64_t budget = c->o.max_msg / 2 < CL_MSG_BYTES ? c->o.max_msg / 2 : CL_MSG_BYTES;
    uint64_t by_size = budget / row_bytes;
    uint32_t per = c->o.max_keys;
    int rv;

    if (by_size < per)
        per = by_size ? (uint32_t)by_size : 1;
    while (n > 0) {
        uint32_t k = n < per ? n : per;
        if ((rv = cl_op_add_chunk(op, shard, first, k)) != 0)
            return rv;
        first += k;
        n -= k;
    }
    return 0;
}

static int cl_grow(struct flr_op *op, uint32_t n, int need_grads)
{
    if (n > op->scratch_cap) {
        size_t cap = n + n / 2;
        uint32_t *p = realloc(op->perm_buf, cap * sizeof(*p));
        uint32_t *s = p ? realloc(op->shard_of, cap * sizeof(*s)) : NULL;
        uint64_t *k = s ? realloc(op->rkeys, cap * sizeof(*k)) : NULL;
        if (p)
            op->perm_buf = p;
        if (s)
            op->shard_of = s;
        if (!k)
            return FLR_ENOMEM;
        op->rkeys = k;
        op->scratch_cap = cap;
    }
    if (need_grads && (size_t)n * op->dim > op->grads_cap) {
        size_t cap = (size_t)n * op->dim;
        float *g = realloc(op->rgrads, cap * sizeof(*g));
        if (!g)
            return FLR_ENOMEM;
        op->rgrads = g;
        op->grads_cap = cap;
    }
    return 0;
}

/* Routes keys to shards and builds the chunks. */
static int cl_op_route(struct flr_op *op, const uint64_t *keys, uint32_t n, const float *grads)
{
    struct flr_client *c = op->c;
    const struct flr_table_spec *t = flr_spec_table(&c->spec, op->table);
    uint32_t S = c->spec.num_shards, i, monotone = 1, prev = 0, unsorted = 0, foreign = 0;
    int rv;

    /* Both checks in one pass: the key array may be far larger than the cache. */
    for (i = 0; i < n; i++) {
        unsorted |= i > 0 && keys[i] <= keys[i - 1];
        foreign |= flr_key_table(keys[i]) != op->table;
    }
    if (unsorted)
        return cl_fail(c, FLR_EUNSORTED, "%s", "keys must be sorted and unique");
    if (foreign)
        return cl_fail(c, FLR_EKEY_RANGE, "%s", "a key belongs to another table");
    if (t->kind == FLR_TABLE_DENSE) {
        /* A dense table's shards hold contiguous row ranges in shard order, so sorted keys
         * are one slice per shard: walk the ranges (flr_shard_dense_range agrees with
         * flr_shard_of_key) instead of placing every key. */
        uint32_t s = 0;
        uint64_t lo, hi;

        op->keys = keys;
        op->grads = grads;
        flr_shard_dense_range(&c->spec, t, 0, &lo, &hi);
        for (i = 0; i < n;) {
            uint32_t j = i;
            while (flr_key_row(keys[i]) >= hi && ++s < S)
                flr_shard_dense_range(&c->spec, t, s, &lo, &hi);
            if (s >= S)
                return cl_fail(c, FLR_EKEY_RANGE, "%s", "a key is beyond the table's rows");
            while (j < n && flr_key_row(keys[j]) < hi)
                j++;
            if ((rv = cl_op_cut(op, s, i, j - i)) != 0)
                return rv;
            i = j;
        }
        return 0;
    }
    if ((rv = cl_grow(op, n, 0)) != 0)
        return rv;
    for (i = 0; i < n; i++) {
        op->shard_of[i] = flr_shard_of_key(&c->spec, keys[i]);
        if (op->shard_of[i] < prev)
            monotone = 0;
        prev = op->shard_of[i];
    }
    if (monotone) {
        /* Dense tables (and lucky sparse batches): each shard's keys are a slice. */
        op->keys = keys;
        op->grads = grads;
        for (i = 0; i < n;) {
            uint32_t j = i;
            while (j < n && op->shard_of[j] == op->shard_of[i])
                j++;
            if ((rv = cl_op_cut(op, op->shard_of[i], i, j - i)) != 0)
                return rv;
            i = j;
        }
        return 0;
    }
    /* Stable counting sort by shard: keys stay sorted within each shard. */
    {
        uint32_t *count;
        if (!op->count) {
            /* One counter per shard, kept with the op: the shard count never changes. */
            if (!(op->count = malloc(((size_t)S + 1) * sizeof(*op->count))))
                return FLR_ENOMEM;
        }
        count = op->count;
        memset(count, 0, ((size_t)S + 1) * sizeof(*count));
        if (grads && (rv = cl_grow(op, n, 1)) != 0)
            return rv;
        for (i = 0; i < n; i++)
            count[op->shard_of[i] + 1]++;
        for (uint32_t s = 0; s < S; s++)
            count[s + 1] += count[s];
        for (i = 0; i < n; i++) {
            uint32_t pos = count[op->shard_of[i]]++;
            op->perm_buf[pos] = i;
            op->rkeys[pos] = keys[i];
            if (grads)
                memcpy(op->rgrads + (size_t)pos * op->dim, grads + (size_t)i * op->dim,
                       op->dim * sizeof(float));
        }
    }
    op->perm = op->perm_buf;
    op->keys = op->rkeys;
    op->grads = grads ? op->rgrads : NULL;
    for (i = 0; i < n;) {
        uint32_t s = op->shard_of[op->perm[i]], j = i;
        while (j < n && op->shard_of[op->perm[j]] == s)
            j++;
        if ((rv = cl_op_cut(op, s, i, j - i)) != 0)
            return rv;
        i = j;
    }
    return 0;
}

/*
 * Whether a push for shard waits: its owner is still rebuilding it (recovery flr; the
 * coordinator clears the flag once the shard serves).  The server answers nothing before
 * it serves, and a push's bytes sent meanwhile would only compete with the rebuild's
 * stream for the network and the server's memory.  Nothing is lost by waiting: the push is
 * in this worker's log, which the rebuild reads.  Pulls and clocks are small and go at
 * once, to be answered the moment the shard serves.
 */
static int cl_push_held(const struct flr_op *op, uint32_t shard)
{
    return op->kind == OP_PUSH && op->c->shards[shard].rebuild;
}

/* Sends one chunk to its shard's current owner. */
static void cl_chunk_send(struct flr_op *op, struct chunk *ch)
{
    struct flr_client *c = op->c;
    struct flr_conn *conn = cl_shard_conn(c, ch->shard);
    struct flr_msg m = {0};
    nng_msg *msg;

    ch->state = 0;
    if (!conn || cl_push_held(op, ch->shard)) {
        ch->state = 2; /* no owner, or not ready for it: retry after re-reading the map */
        return;
    }
    m.type = op->kind == OP_PULL    ? FLR_MSG_PULL
             : op->kind == OP_PUSH  ? FLR_MSG_PUSH
             : op->kind == OP_CLOCK ? FLR_MSG_CLOCK
                                    : FLR_MSG_LEAVE;
    m.job = c->job;
    m.job_len = (uint32_t)strlen(c->job);
    m.sender = c->o.worker_id;
    m.shard = ch->shard;
    m.shard_epoch = c->shards[ch->shard].epoch;
    ch->epoch = m.shard_epoch;
    ch->conn = conn;
    m.request_id = ++c->next_req;
    m.table = op->table;
    m.clock = op->clock;
    m.seq = op->kind == OP_PUSH ? ch->pseq : c->inc;
    if (op->kind == OP_PULL || op->kind == OP_PUSH) {
        m.keys = op->keys + ch->first;
        m.nkeys = ch->n;
    }
    if (op->kind == OP_PUSH) {
        m.vals = op->grads + (size_t)ch->first * op->dim;
        m.vals_len = (uint64_t)ch->n * op->dim * sizeof(float);
    }
    if (flr_msg_to_nng(&msg, &m, NULL) != 0) {
        ch->state = 2;
        return;
    }
    c->bytes_sent += nng_msg_len(msg);
    atomic_store_explicit(&ch->finished, 0, memory_order_relaxed);
    flr_call_start(&ch->call, conn, msg, op->timeout_ms, op->wg);
}

static void cl_op_start(struct flr_op *op)
{
    for (size_t i = 0; i < op->nchunks; i++)
        cl_chunk_send(op, op->chunks[i]);
}

/*
 * Keeps the rows of a pull chunk's reply as copies, with the frontier record they were
 * read at.  The reply's rows are in the chunk's (routed) key order, whatever order the
 * caller's array has.  Returns 0, or FLR_ENOMEM: the server now counts this worker as a
 * holder, so a copy it does not have must fail the pull rather than pass unnoticed.
 */
static int cl_keep_pulled(struct flr_op *op, const struct chunk *ch, const struct flr_msg *r)
{
    struct flr_client *c = op->c;
    int rv;

    if (!op->keep_copies)
        return 0;
    if (r->extra_len != 0 && r->extra_len != 8 * (uint64_t)c->spec.num_workers) {
        /* Without its record a copy cannot be placed in a rebuild; the server listed us
         * as a holder all the same, which only a malformed reply can cause. */
        snprintf(c->last_error, sizeof(c->last_error),
                 "shard %u: pull reply carries a frontier of %llu bytes for %u workers", ch->shard,
                 (unsigned long long)r->extra_len, c->spec.num_workers);
        return FLR_EBAD_REQUEST;
    }
    rv = flr_copies_put_pulled(c->copies, ch->shard, op->table, op->keys + ch->first, ch->n,
                               r->vals, r->stamp, r->clock, r->extra_len ? r->extra : NULL);
    if (rv != 0)
        snprintf(c->last_error, sizeof(c->last_error), "shard %u: cannot keep pulled rows: %s",
                 ch->shard, flr_strerror(rv));
    return rv;
}

/*
 * Consumes the outcome of a chunk whose call completed: copies a pull's rows into place
 * (and keeps them as copies), acknowledges a logged push, and sets the chunk's state to 1
 * (done) or 2 (to retry: the owner did not answer, or refused it as no longer its own).
 * An error that fails the operation is kept in op->result (the first one) and its reason in
 * c->last_error; the chunk is then done.
 */
static void cl_chunk_collect(struct flr_op *op, struct chunk *ch)
{
    struct flr_client *c = op->c;
    struct flr_msg r;
    char why[FLR_REASON_MAX];
    int rv, refused = 0;

    if (ch->call.rv != 0 || !ch->call.reply) {
        ch->state = 2;
        return;
    }
    c->bytes_received += nng_msg_len(ch->call.reply);
    rv = flr_msg_decode(&r, nng_msg_body(ch->call.reply), nng_msg_len(ch->call.reply), &c->lim,
                        &c->zone, why, sizeof(why));
    if (rv == 0 && r.status != 0) {
        rv = r.status;
        refused = 1;
        snprintf(why, sizeof(why), "%.*s", (int)r.reason_len, r.reason);
    }
    if (rv == FLR_EWRONG_EPOCH || rv == FLR_ENOT_OWNER || rv == FLR_ERECOVERING ||
        rv == FLR_ELEASE_EXPIRED) {
        ch->state = 2;
    } else if (rv != 0) {
        if (!op->result) {
            snprintf(c->last_error, sizeof(c->last_error), "shard %u: %s: %s", ch->shard,
                     flr_errname(rv), why);
            op->result = rv;
        }
        ch->state = 1;
        /* The server refused the push, so it was not applied: a rebuild must not
         * replay it.  (A reply that could not be read proves nothing: keep it.) */
        if (refused && op->kind == OP_PUSH && c->copies)
            (void)flr_copies_log_drop(c->copies, ch->shard, ch->pseq);
    } else if (op->kind == OP_PULL) {
        size_t rowb = (size_t)op->dim * sizeof(float);
        if (r.vals_len != (uint64_t)ch->n * rowb) {
            if (!op->result) {
                snprintf(c->last_error, sizeof(c->last_error),
                         "shard %u: pull reply has %llu value bytes, expected %zu", ch->shard,
                         (unsigned long long)r.vals_len, (size_t)ch->n * rowb);
                op->result = FLR_EBAD_REQUEST;
            }
        } else if (!op->perm) {
            memcpy(op->vals + (size_t)ch->first * op->dim, r.vals, r.vals_len);
        } else {
            const unsigned char *src = r.vals;
            for (uint32_t k = 0; k < ch->n; k++)
                memcpy(op->vals + (size_t)op->perm[ch->first + k] * op->dim, src + k * rowb, rowb);
        }
        if (r.vals_len == (uint64_t)ch->n * rowb && (rv = cl_keep_pulled(op, ch, &r)) != 0 &&
            !op->result)
            op->result = rv;
        ch->state = 1;
    } else {
        if (op->kind == OP_LEAVE && r.stamp == 0)
            op->staying++;
        ch->state = 1;
    }
    if (rv == 0 && c->copies) {
        if (op->kind == OP_PUSH)
            (void)flr_copies_log_ack(c->copies, ch->shard, ch->pseq, r.stamp);
        flr_copies_log_truncate(c->copies, ch->shard, r.aux);
    }
    nng_msg_free(ch->call.reply);
    ch->call.reply = NULL;
}

/* Re-reads the shard map when a watch says it changed (or the session reconnected, which
 * may have lost watch events), or when the last read failed (it may have left watches
 * unset, so no event would come).  Costs one non-blocking queue poll when nothing
 * changed. */
static int cl_follow_map(struct flr_client *c)
{
    struct flr_zk_event ev;
    int changed = 0;

    while (flr_zk_next_event(c->zk, &ev, 0) == 0)
        if (ev.kind != FLR_ZK_EV_DISCONNECTED)
            changed = 1;
    if (changed || c->map_stale) {
        changed = 1;
        (void)cl_read_map(c); /* on failure the old map stays; requests will retry */
    }
    return changed;
}

/* Whether a chunk must wait for its shard: the map shows no serving owner (the shard is
 * recovering), or the chunk is a push and the owner is still rebuilding the shard. */
static int cl_chunk_blocked(const struct flr_op *op, const struct chunk *ch)
{
    const struct flr_shard_rec *r = &op->c->shards[ch->shard];
    return r->state != FLR_SHARD_ACTIVE || r->owner == FLR_NO_OWNER || cl_push_held(op, ch->shard);
}

/* Whether a chunk in flight was sent to an owner the shard map has since left: a new
 * epoch (the coordinator fenced or moved the shard), or another connection for the same
 * owner (the server was replaced). */
static int cl_chunk_moved(struct flr_client *c, const struct chunk *ch)
{
    return c->shards[ch->shard].epoch != ch->epoch || cl_shard_conn(c, ch->shard) != ch->conn;
}

/*
 * Runs an operation until every chunk is done, one chunk at a time: a chunk that must be
 * retried goes again as soon as its shard has a serving owner, without waiting for the
 * operation's other chunks.  Under BSP those may be held on another server for a second
 * worker, whose own pull waits on the new owner for this worker's clock, which only the
 * retried chunk would bring.
 *
 * Meanwhile it follows the shard map: a chunk in flight to an owner the map has left is
 * cancelled at once rather than left to time out against a dead server.  Policy "block":
 * while a shard has no serving owner (RECOVERING), its chunks wait for the coordinator to
 * bring it back, however long that takes; the operation timeout counts only the time every
 * shard was available and a chunk still did not get its answer.
 */
static int cl_op_finish(struct flr_op *op)
{
    struct flr_client *c = op->c;
    int64_t deadline = flr_now_ms() + op->timeout_ms, retry_at = 0;
    int backoff_ms = 20, rv = 0, said = 0;

    for (;;) {
        const int inflight = flr_waitgroup_timedwait(op->wg, 100) != 0;
        int blocked = 0, due = 0, done = 1;
        int64_t now;

        /* Checked at every wake-up, not only when this call saw the map change: another
         * operation may have read the change first. */
        (void)cl_follow_map(c);
        for (size_t i = 0; i < op->nchunks; i++) {
            struct chunk *ch = op->chunks[i];
            if (ch->state == 0) {
                if (!atomic_load_explicit(&ch->finished, memory_order_acquire)) {
                    if (cl_chunk_moved(c, ch))
                        flr_call_cancel(&ch->call);
                    done = 0;
                    continue;
                }
                cl_chunk_collect(op, ch);
            }
            if (ch->state != 2)
                continue;
            done = 0;
            if (cl_chunk_blocked(op, ch))
                blocked = ch->waited = 1;
            else
                due = 1;
        }
        if (op->result || done) {
            rv = op->result;
            break;
        }
        if (!blocked && !due)
            continue; /* only answers to wait for */
        if (flr_zk_expired(c->zk)) {
            rv = op->result = cl_fail(c, FLR_EZK_EXPIRED, "%s", "ZooKeeper session expired");
            break;
        }
        now = flr_now_ms();
        if (op->until && now > op->until) {
            rv = op->result = cl_fail(c, FLR_ETIMEOUT, "%s", "out of time");
            break;
        }
        if (blocked) {
            if (!said++)
                flr_info("client.blocked", "worker %u: a shard is recovering; waiting for it",
                         c->o.worker_id);
            deadline = now + op->timeout_ms;
            backoff_ms = 20;
        } else if (now > deadline) {
            rv = op->result =
                cl_fail(c, FLR_ETIMEOUT, "%s", "shards did not become available in time");
            break;
        }
        /* A chunk whose shard came back goes at once; one refused or unanswered by a
         * serving owner goes after a growing pause, with the map read afresh (a missed
         * watch would leave it stale). */
        int pause_over = now >= retry_at;
        if (due && pause_over) {
            retry_at = now + backoff_ms;
            if (backoff_ms < 1000)
                backoff_ms *= 2;
            if (cl_read_map(c) != 0)
                pause_over = 0;
        }
        for (size_t i = 0; i < op->nchunks; i++) {
            struct chunk *ch = op->chunks[i];
            if (ch->state == 2 && !cl_chunk_blocked(op, ch) && (ch->waited || pause_over)) {
                ch->waited = 0;
                cl_chunk_send(op, ch);
            }
        }
        if (!inflight)
            usleep(20 * 1000); /* nothing to wake us: poll the map's event queue */
    }
    /* A failure may leave chunks in flight: stop them and take their outcomes (a push
     * answered meanwhile is acknowledged in the log) before the operation is recycled. */
    for (size_t i = 0; i < op->nchunks; i++)
        if (op->chunks[i]->state == 0)
            flr_call_cancel(&op->chunks[i]->call);
    flr_waitgroup_wait(op->wg);
    for (size_t i = 0; i < op->nchunks; i++)
        if (op->chunks[i]->state == 0)
            cl_chunk_collect(op, op->chunks[i]);
    return rv;
}

/* Logs every chunk of a push before any is sent, each with its pseq.  On failure takes back
 * those already logged (newest first), so that the shards' pseqs stay gapless. */
static int cl_log_push(struct flr_op *op)
{
    struct flr_client *c = op->c;
    int rv;

    for (size_t i = 0; i < op->nchunks; i++) {
        struct chunk *ch = op->chunks[i];
        rv = flr_copies_log_append(c->copies, ch->shard, op->clock, op->table, op->keys + ch->first,
                                   ch->n, op->grads + (size_t)ch->first * op->dim, &ch->pseq);
        if (rv != 0) {
            while (i-- > 0)
                (void)flr_copies_log_cancel(c->copies, op->chunks[i]->shard, op->chunks[i]->pseq);
            return cl_fail(c, rv, "logging a push: %s", flr_strerror(rv));
        }
    }
    return 0;
}

static int cl_start(struct flr_client *c, int kind, uint32_t table, const uint64_t *keys,
                    uint32_t n, float *vals, const float *grads, struct flr_op **opp)
{
    const struct flr_table_spec *t = flr_spec_table(&c->spec, table);
    struct flr_op *op;
    int rv;

    if (!t)
        return cl_fail(c, FLR_EUNKNOWN_TABLE, "%s", "unknown table");
    cl_follow_map(c);
    if (!(op = cl_op_get(c)))
        return FLR_ENOMEM;
    op->kind = kind;
    op->table = table;
    op->dim = t->dim;
    op->n = n;
    op->vals = vals;
    op->clock = c->clock;
    op->keep_copies = c->copies && kind == OP_PULL && flr_optim_nslots(t->optim) == 0;
    if ((rv = cl_op_route(op, keys, n, grads)) != 0 ||
        (kind == OP_PUSH && c->copies && (rv = cl_log_push(op)) != 0)) {
        cl_op_put(op);
        return rv;
    }
    cl_op_start(op);
    *opp = op;
    return 0;
}

int flr_pull_async(struct flr_client *c, uint32_t table, const uint64_t *keys, uint32_t n,
                   float *vals, struct flr_op **op)
{
    return cl_start(c, OP_PULL, table, keys, n, vals, NULL, op);
}

int flr_push_async(struct flr_client *c, uint32_t table, const uint64_t *keys, uint32_t n,
                   const float *grads, struct flr_op **op)
{
    return cl_start(c, OP_PUSH, table, keys, n, NULL, grads, op);
}

int flr_wait(struct flr_op *op)
{
    int rv = cl_op_finish(op);
    cl_op_put(op);
    return rv;
}

int flr_pull(struct flr_client *c, uint32_t table, const uint64_t *keys, uint32_t n, float *vals)
{
    struct flr_op *op;
    int rv = flr_pull_async(c, table, keys, n, vals, &op);
    return rv ? rv : flr_wait(op);
}

int flr_push(struct flr_client *c, uint32_t table, const uint64_t *keys, uint32_t n,
             const float *grads)
{
    struct flr_op *op;
    int rv = flr_push_async(c, table, keys, n, grads, &op);
    return rv ? rv : flr_wait(op);
}

/* Rewrites our worker node with the progress (at most once a second unless forced), for
 * the coordinator's status and drills. */
static void cl_publish_progress(struct flr_client *c, int force)
{
    char path[FLR_PATH_MAX], buf[768];
    int64_t now = flr_now_ms();
    size_t n;

    if (!force && now - c->progress_ms < 1000)
        return;
    c->progress_ms = now;
    n = strlen(c->rec);
    if (n < 2 || n >= sizeof(buf) - 400)
        return;
    memcpy(buf, c->rec, n - 1); /* without the closing brace */
    n += (size_t)snprintf(buf + n - 1, sizeof(buf) - (n - 1),
                          ",\"clock\":%lld,\"clocks_total\":%lld,\"samples\":%lld,\"epoch\":%u,"
                          "\"loss\":%.6g,\"at_ms\":%lld",
                          (long long)c->clock, (long long)c->clocks_total, (long long)c->samples,
                          c->epoch, c->loss, (long long)flr_wall_ms());
    if (c->copies) {
        struct flr_copies_stats st;
        flr_copies_stats(c->copies, &st);
        n += (size_t)snprintf(buf + n - 1, sizeof(buf) - (n - 1),
                              ",\"copy_bytes\":%llu,\"log_bytes\":%llu,\"log_entries\":%llu",
                              (unsigned long long)st.copy_bytes, (unsigned long long)st.log_bytes,
                              (unsigned long long)st.log_entries);
    }
    snprintf(buf + n - 1, sizeof(buf) - (n - 1), "}");
    flr_job_node(path, sizeof(path), c->job, "workers", c->o.worker_id);
    (void)flr_zk_set(c->zk, path, buf, (int)strlen(buf), -1);
}

/* Makes op a request of kind (OP_CLOCK, OP_LEAVE) at clock to every shard.  On failure
 * the op is put back. */
static int cl_op_every_shard(struct flr_op *op, int kind, int64_t clock)
{
    int rv;

    op->kind = kind;
    op->table = 0;
    op->dim = 0;
    op->clock = clock;
    for (uint32_t s = 0; s < op->c->spec.num_shards; s++)
        if ((rv = cl_op_add_chunk(op, s, 0, 0)) != 0) {
            cl_op_put(op);
            return rv;
        }
    return 0;
}

int flr_clock(struct flr_client *c)
{
    struct flr_op *op;
    int rv;

    if (!(op = cl_op_get(c)))
        return FLR_ENOMEM;
    if ((rv = cl_op_every_shard(op, OP_CLOCK, c->clock + 1)) != 0)
        return rv;
    cl_op_start(op);
    rv = cl_op_finish(op);
    cl_op_put(op);
    if (rv == 0) {
        c->clock++;
        if (c->copies) {
            struct flr_copies_stats st;
            flr_copies_set_clock(c->copies, c->clock);
            flr_copies_stats(c->copies, &st);
            if (st.copy_bytes > c->peak_copy_bytes)
                c->peak_copy_bytes = st.copy_bytes;
            if (st.log_bytes > c->peak_log_bytes)
                c->peak_log_bytes = st.log_bytes;
        }
        cl_publish_progress(c, 0);
    }
    return rv;
}

int64_t flr_client_start_clock(const struct flr_client *c)
{
    return c->start_clock;
}

void flr_client_progress(struct flr_client *c, int64_t clocks_total, int64_t samples,
                         uint32_t epoch, double loss)
{
    c->clocks_total = clocks_total;
    c->samples = samples;
    c->epoch = epoch;
    c->loss = loss;
}

int flr_client_publish_curve(struct flr_client *c, const char *json)
{
    char path[FLR_PATH_MAX];
    int rv;

    flr_job_path(path, sizeof(path), c->job, "/curve");
    rv = flr_zk_set(c->zk, path, json, (int)strlen(json), -1);
    if (rv == FLR_EZK_NONODE)
        rv = flr_zk_create(c->zk, path, json, (int)strlen(json), 0, NULL, 0);
    return rv;
}

int flr_client_publish_result(struct flr_client *c, const char *json)
{
    char path[FLR_PATH_MAX];
    int rv;

    flr_job_node(path, sizeof(path), c->job, "results", c->o.worker_id);
    rv = flr_zk_create(c->zk, path, json, (int)strlen(json), 0, NULL, 0);
    if (rv == FLR_EZK_EXISTS)
        rv = flr_zk_set(c->zk, path, json, (int)strlen(json), -1);
    return rv;
}

/* Whether the job is over (done or failed): no rebuild will ask this worker for anything. */
static int cl_job_over(struct flr_client *c)
{
    char path[FLR_PATH_MAX], *data = NULL;
    int len, over = 0;

    flr_job_path(path, sizeof(path), c->job, "/state");
    if (flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL) == 0 && data)
        over = strcmp(data, "done") == 0 || strcmp(data, "failed") == 0;
    free(data);
    return over;
}

/* One LEAVE round waits at most this long for its answers. */
#define CL_LEAVE_ROUND_MS 2000

int flr_client_leave(struct flr_client *c, int timeout_ms)
{
    const int64_t t0 = flr_now_ms(), deadline = t0 + timeout_ms;
    int rounds = 0;

    if (!c->copies || timeout_ms <= 0)
        return 0; /* recovery none (nothing of ours is needed), or told not to wait */
    for (;;) {
        int64_t left = deadline - flr_now_ms();
        struct flr_op *op;
        uint32_t staying;
        int rv;

        if (cl_job_over(c))
            return 0;
        if (!(op = cl_op_get(c)))
            return FLR_ENOMEM;
        if ((rv = cl_op_every_shard(op, OP_LEAVE, c->clock)) != 0)
            return rv;
        op->timeout_ms = (int)(left > CL_LEAVE_ROUND_MS ? CL_LEAVE_ROUND_MS : left > 1 ? left : 1);
        op->until = deadline; /* a recovering shard holds it up to there */
        cl_op_start(op);
        rv = cl_op_finish(op);
        staying = op->staying;
        cl_op_put(op);
        rounds++;
        if (rv != 0 && rv != FLR_ETIMEOUT)
            return rv; /* refused: asking again will not help (reason in last_error) */
        if (rv == 0 && staying == 0) {
            flr_info("client.left",
                     "worker %u: the servers no longer need its copies or log (%lld ms, %d "
                     "rounds)",
                     c->o.worker_id, (long long)(flr_now_ms() - t0), rounds);
            return 0;
        }
        if (flr_now_ms() >= deadline) {
            if (cl_job_over(c))
                return 0;
            if (rv)
                snprintf(c->last_error, sizeof(c->last_error),
                         "the servers did not answer LEAVE within %d ms", timeout_ms);
            else
                snprintf(c->last_error, sizeof(c->last_error),
                         "%u shards still needed this worker's copies or log after %d ms", staying,
                         timeout_ms);
            return FLR_ETIMEOUT;
        }
        usleep(50 * 1000);
    }
}

int flr_client_wait_others(struct flr_client *c, int timeout_ms)
{
    char path[FLR_PATH_MAX], **names = NULL;
    int64_t deadline = flr_now_ms() + timeout_ms;
    int n = 0, rv;

    flr_job_path(path, sizeof(path), c->job, "/results");
    for (;;) {
        uint32_t others = 0;
        if ((rv = flr_zk_children(c->zk, path, 0, &names, &n)) != 0 && rv != FLR_EZK_NONODE)
            return cl_fail(c, rv, "listing results: %s", flr_strerror(rv));
        for (int i = 0; i < n; i++)
            others += strtoul(names[i], NULL, 10) != c->o.worker_id;
        flr_zk_free_names(names, n);
        names = NULL;
        n = 0;
        if (others + 1 >= c->spec.num_workers)
            return 0;
        if (flr_now_ms() > deadline)
            return cl_fail(c, FLR_ETIMEOUT, "%s", "the other workers did not finish in time");
        usleep(100 * 1000);
    }
}

void flr_client_traffic(struct flr_client *c, struct flr_client_traffic *t)
{
    struct flr_copies_stats st = {0};

    memset(t, 0, sizeof(*t));
    t->sent = c->bytes_sent;
    t->received = c->bytes_received;
    flr_keeper_traffic(c->keeper, &t->keeper_in, &t->keeper_out);
    if (c->copies)
        flr_copies_stats(c->copies, &st);
    t->copy_bytes = st.copy_bytes;
    t->log_bytes = st.log_bytes;
    t->peak_copy_bytes = c->peak_copy_bytes > st.copy_bytes ? c->peak_copy_bytes : st.copy_bytes;
    t->peak_log_bytes = c->peak_log_bytes > st.log_bytes ? c->peak_log_bytes : st.log_bytes;
}
