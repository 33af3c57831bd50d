/*
 * keeper.c - the worker's recovery endpoint (see keeper.h).
 */
#include "keeper.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/shardmap.h"
#include "common/transport.h"
#include "common/util.h"

struct flr_keeper {
    struct flr_keeper_ctx ctx;
    struct flr_proto_limits lim;
    struct flr_rep *rep;
    uint64_t bytes_in, bytes_out; /* updated atomically: nng threads answer */
};

/* The reply header for request m: same shard, epoch and request id, from this worker. */
static void kp_reply_init(const struct flr_keeper_ctx *ctx, const struct flr_msg *m,
                          struct flr_msg *r)
{
    memset(r, 0, sizeof(*r));
    r->type = flr_reply_type(m->type);
    r->job = ctx->spec->job;
    r->job_len = (uint32_t)strlen(ctx->spec->job);
    r->sender = ctx->worker_id;
    r->shard = m->shard;
    r->shard_epoch = m->shard_epoch;
    r->request_id = m->request_id;
    r->reason = "";
}

/* Encodes an error answer with a one-line reason. */
static int kp_refuse(const struct flr_keeper_ctx *ctx, const struct flr_msg *m, int status,
                     const char *why, nng_msg **reply)
{
    struct flr_msg r;

    kp_reply_init(ctx, m, &r);
    r.status = status;
    r.reason = why;
    r.reason_len = (uint32_t)strnlen(why, FLR_REASON_MAX - 1);
    return flr_msg_to_nng(reply, &r, NULL);
}

static int kp_replicate(const struct flr_keeper_ctx *ctx, const struct flr_msg *m, nng_msg **reply)
{
    const struct flr_job_spec *spec = ctx->spec;
    const struct flr_table_spec *t = flr_spec_table(spec, m->table);
    char why[FLR_REASON_MAX];
    struct flr_msg r;
    size_t rb;
    int rv;

    if (!t) {
        snprintf(why, sizeof(why), "REPLICATE: unknown table %" PRIu32, m->table);
        return kp_refuse(ctx, m, FLR_EBAD_REQUEST, why, reply);
    }
    rb = flr_copies_row_bytes(t);
    if (m->vals_len != (uint64_t)m->nkeys * rb) {
        snprintf(why, sizeof(why),
                 "REPLICATE: %" PRIu64 " value bytes for %" PRIu32 " rows of %zu bytes",
                 m->vals_len, m->nkeys, rb);
        return kp_refuse(ctx, m, FLR_EBAD_REQUEST, why, reply);
    }
    if (m->extra_len != 0 && m->extra_len != 8 * (uint64_t)spec->num_workers) {
        snprintf(why, sizeof(why),
                 "REPLICATE: frontier of %" PRIu64 " bytes, expected 0 or %" PRIu32, m->extra_len,
                 8 * spec->num_workers);
        return kp_refuse(ctx, m, FLR_EBAD_REQUEST, why, reply);
    }
    if (flr_keys_check_sorted(m->keys, m->nkeys) != 0)
        return kp_refuse(ctx, m, FLR_EBAD_REQUEST, "REPLICATE: keys are not sorted and unique",
                         reply);
    for (uint32_t i = 0; i < m->nkeys; i++) {
        uint64_t key = flr_load_u64((const unsigned char *)m->keys + (size_t)i * 8);
        if (flr_key_table(key) != m->table || flr_shard_of_key(spec, key) != m->shard) {
            snprintf(why, sizeof(why),
                     "REPLICATE: key %" PRIu64 " is not a row of table %" PRIu32
                     " in shard %" PRIu32,
                     key, m->table, m->shard);
            return kp_refuse(ctx, m, FLR_EBAD_REQUEST, why, reply);
        }
    }
    rv = flr_copies_put_rows(ctx->copies, m->shard, m->table, m->keys, m->nkeys, m->vals, m->stamp,
                             m->clock, m->extra_len ? m->extra : NULL);
    if (rv != 0)
        return kp_refuse(ctx, m, rv, "REPLICATE: cannot store the rows", reply);
    kp_reply_init(ctx, m, &r);
    return flr_msg_to_nng(reply, &r, NULL);
}

static int kp_manifest(const struct flr_keeper_ctx *ctx, const struct flr_msg *m, nng_msg **reply)
{
    struct flr_copies_manifest man;
    const size_t rec_bytes = (2 + (size_t)ctx->spec->num_workers) * sizeof(uint64_t);
    struct flr_msg r;
    char text[640];
    int rv;

    if ((rv = flr_copies_manifest(ctx->copies, m->shard, ctx->max_keys, ctx->page_bytes, &man)) !=
        0)
        return kp_refuse(ctx, m, rv, "MANIFEST_REQ: cannot read the shard's manifest", reply);
    snprintf(text, sizeof(text),
             "{\"worker\":%" PRIu32 ",\"clock\":%" PRId64 ",\"incarnation\":%" PRIu64
             ",\"pseq_sent\":%" PRIu64 ",\"pseq_truncated\":%" PRIu64 ",\"rows\":%" PRIu64
             ",\"log_entries\":%" PRIu64 ",\"log_bytes\":%" PRIu64 ",\"records\":%zu,"
             "\"pages\":%zu}",
             ctx->worker_id, man.clock, man.incarnation, man.pseq_sent, man.pseq_truncated,
             man.rows, man.log_entries, man.log_bytes, man.nrecords, man.npages);
    kp_reply_init(ctx, m, &r);
    r.text = text;
    r.text_len = (uint32_t)strlen(text);
    /* extra: the records, then the pages (table, start key), in one buffer */
    r.extra = man.records;
    r.extra_len = (uint64_t)man.nrecords * rec_bytes + (uint64_t)man.npages * 16;
    rv = flr_msg_to_nng(reply, &r, NULL);
    flr_copies_manifest_fini(&man);
    return rv;
}

/* Encodes a REBUILD_STREAM reply straight from the store (called under its lock). */
struct kp_stream {
    const struct flr_keeper_ctx *ctx;
    const struct flr_msg *m;
    nng_msg **reply;
};

static int kp_log_reply(void *arg, const struct flr_copies_entry *e, uint64_t next)
{
    const struct kp_stream *st = arg;
    struct flr_msg r;

    kp_reply_init(st->ctx, st->m, &r);
    r.table = FLR_REBUILD_LOG;
    r.clock = -1;
    r.aux = UINT64_MAX;
    if (e) {
        r.table = e->table;
        r.clock = e->clock;
        r.seq = e->pseq;
        r.stamp = e->acked ? e->stamp : 0; /* a contained entry: seq without keys */
        r.keys = e->keys;
        r.nkeys = e->nkeys;
        r.vals = e->grads;
        r.vals_len = (uint64_t)e->nkeys * e->dim * sizeof(float);
        r.aux = next;
    }
    return flr_msg_to_nng(st->reply, &r, NULL);
}

/* The log: the first entry with aux < pseq < seq (seq 0: no end); one the server's copies
 * contain goes without its keys and gradients. */
static int kp_rebuild_log(const struct flr_keeper_ctx *ctx, const struct flr_msg *m,
                          nng_msg **reply)
{
    struct kp_stream st = {ctx, m, reply};
    int rv = flr_copies_log_into(ctx->copies, m->shard, m->aux, m->seq, ctx->worker_id,
                                 kp_log_reply, &st);

    if (rv == FLR_ENOMEM)
        return rv;
    if (rv != 0)
        return kp_refuse(ctx, m, rv, "REBUILD_REQ: cannot read the update log", reply);
    return 0;
}

static void *kp_page_reply(void *arg, const uint64_t *keys, uint32_t n, size_t bytes, uint64_t next)
{
    const struct kp_stream *st = arg;
    struct flr_msg r;
    void *vals = NULL;

    kp_reply_init(st->ctx, st->m, &r);
    r.table = st->m->table;
    r.clock = -1;
    r.aux = next;
    r.keys = keys;
    r.nkeys = n;
    r.vals = NULL; /* the rows are gathered into the message */
    r.vals_len = bytes;
    if (flr_msg_to_nng(st->reply, &r, &vals) != 0)
        return NULL;
    return bytes ? vals : (void *)st;
}

/* Copies of a table: keys in [aux, seq) (seq 0: no end), a page. */
static int kp_rebuild_table(const struct flr_keeper_ctx *ctx, const struct flr_msg *m,
                            nng_msg **reply)
{
    struct kp_stream st = {ctx, m, reply};
    uint64_t next;
    uint32_t n;
    int rv;

    *reply = NULL;
    rv = flr_copies_page_into(ctx->copies, m->shard, m->table, m->aux, m->seq, ctx->max_keys,
                              ctx->page_bytes, kp_page_reply, &st, &n, &next);
    if (rv == 0)
        return 0;
    if (*reply) {
        nng_msg_free(*reply);
        *reply = NULL;
    }
    if (rv == FLR_ENOMEM)
        return rv;
    return kp_refuse(ctx, m, rv, "REBUILD_REQ: cannot read the copies", reply);
}

int flr_keeper_handle(const struct flr_keeper_ctx *ctx, const struct flr_msg *m, nng_msg **reply)
{
    const struct flr_job_spec *spec = ctx->spec;
    char why[FLR_REASON_MAX];

    if (m->job_len != strlen(spec->job) || memcmp(m->job, spec->job, m->job_len) != 0) {
        snprintf(why, sizeof(why), "%s: message of job '%.*s', this worker is in job '%s'",
                 flr_msg_type_name(m->type), (int)(m->job_len < 64 ? m->job_len : 64),
                 m->job_len ? m->job : "", spec->job);
        return kp_refuse(ctx, m, FLR_EWRONG_JOB, why, reply);
    }
    switch (m->type) {
    case FLR_MSG_REPLICATE:
    case FLR_MSG_MANIFEST_REQ:
    case FLR_MSG_REBUILD_REQ:
        break;
    default:
        snprintf(why, sizeof(why),
                 "%s: a worker answers only REPLICATE, MANIFEST_REQ and "
                 "REBUILD_REQ",
                 flr_msg_type_name(m->type));
        return kp_refuse(ctx, m, FLR_EBAD_REQUEST, why, reply);
    }
    if (m->shard >= spec->num_shards) {
        snprintf(why, sizeof(why), "%s: shard %" PRIu32 " is out of range (job has %" PRIu32 ")",
                 flr_msg_type_name(m->type), m->shard, spec->num_shards);
        return kp_refuse(ctx, m, FLR_EBAD_REQUEST, why, reply);
    }
    if (m->type == FLR_MSG_REPLICATE)
        return kp_replicate(ctx, m, reply);
    if (m->type == FLR_MSG_MANIFEST_REQ)
        return kp_manifest(ctx, m, reply);
    if (m->table == FLR_REBUILD_LOG)
        return kp_rebuild_log(ctx, m, reply);
    if (!flr_spec_table(spec, m->table)) {
        snprintf(why, sizeof(why), "REBUILD_REQ: unknown table %" PRIu32, m->table);
        return kp_refuse(ctx, m, FLR_EBAD_REQUEST, why, reply);
    }
    return kp_rebuild_table(ctx, m, reply);
}

/* Runs on an nng thread; the answer is bounded work under the store's mutex. */
static void kp_on_request(void *arg, struct flr_req *req, nng_msg *msg)
{
    struct flr_keeper *k = arg;
    struct flr_msg m;
    msgpack_zone zone;
    nng_msg *reply = NULL;
    char why[FLR_REASON_MAX];
    int rv;

    msgpack_zone_init(&zone, 1024);
    __atomic_add_fetch(&k->bytes_in, nng_msg_len(msg), __ATOMIC_RELAXED);
    rv = flr_msg_decode(&m, nng_msg_body(msg), nng_msg_len(msg), &k->lim, &zone, why, sizeof(why));
    if (rv != 0) {
        /* Answer as far as the header could be read, so the sender sees why. */
        m.job = NULL;
        m.job_len = 0;
        if (kp_refuse(&k->ctx, &m, rv, why, &reply) != 0)
            reply = NULL;
    } else if (flr_keeper_handle(&k->ctx, &m, &reply) != 0) {
        reply = NULL; /* out of memory: the sender times out and asks again */
    }
    msgpack_zone_destroy(&zone);
    nng_msg_free(msg);
    if (reply)
        __atomic_add_fetch(&k->bytes_out, nng_msg_len(reply), __ATOMIC_RELAXED);
    flr_rep_reply(req, reply);
}

void flr_keeper_traffic(const struct flr_keeper *k, uint64_t *in, uint64_t *out)
{
    *in = k ? __atomic_load_n(&k->bytes_in, __ATOMIC_RELAXED) : 0;
    *out = k ? __atomic_load_n(&k->bytes_out, __ATOMIC_RELAXED) : 0;
}

int flr_keeper_open(struct flr_keeper **kp, const char *url, const struct flr_keeper_ctx *ctx,
                    size_t max_msg, char *why, size_t whylen)
{
    struct flr_keeper *k;
    int rv;

    if (!(k = calloc(1, sizeof(*k))))
        return FLR_ENOMEM;
    k->ctx = *ctx;
    if (!k->ctx.page_bytes)
        k->ctx.page_bytes = FLR_KEEPER_PAGE_BYTES;
    flr_proto_limits_default(&k->lim);
    if (!k->ctx.max_keys)
        k->ctx.max_keys = k->lim.max_keys;
    k->lim.max_size = max_msg;
    /* A few contexts: a rebuilding server asks for several shards at once. */
    if ((rv = flr_rep_open(&k->rep, url, 4, max_msg, kp_on_request, k, why, whylen)) != 0) {
        free(k);
        return rv;
    }
    *kp = k;
    return 0;
}

const char *flr_keeper_url(const struct flr_keeper *k)
{
    return flr_rep_url(k->rep);
}

void flr_keeper_close(struct flr_keeper *k)
{
    if (!k)
        return;
    flr_rep_close(k->rep);
    free(k);
}
