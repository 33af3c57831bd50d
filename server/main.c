/*
 * flr-server - holds shards of a job's tables and answers pulls and pushes.
 *
 * Threads: nng's threads receive requests and only queue them; the main thread (the
 * owner) decodes, checks and applies every request and follows ZooKeeper.  Shards are
 * therefore touched by one thread only and take no locks.
 *
 * Server lifecycle:
 *
 *     START --spec found--> REGISTERED (ephemeral node, STANDBY)
 *           --shards assigned to us--> SERVING --job state "done" / SIGTERM--> EXIT 0
 *     any state --ZooKeeper session expired--> EXIT 3 (stops serving at once: it cannot
 *           know whether its shards were given to another server)
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/prog.h"
#include "common/proto.h"
#include "common/shardmap.h"
#include "common/spec.h"
#include "common/transport.h"
#include "common/util.h"
#include "common/zk.h"
#include "rebuild.h"
#include "shard.h"
#include "store.h"

struct srv_cfg {
    char zk[256];
    char job[64];
    long long id;
    char listen[128];
    char advertise[128];
    long long session_ms;
    long long contexts;
    long long max_msg_mb;
    long long max_keys;
    long long start_timeout_ms;
    long long replicate_ms;
    char log_level[16];
};

static const struct flr_opt srv_opts[] = {
    FLR_OPTS_CLUSTER(struct srv_cfg),
    FLR_OPT_I("id", struct srv_cfg, id, "0", 0, 1000000, "N", "server id, unique in the job"),
    FLR_OPT_S("listen", struct srv_cfg, listen, "tcp://127.0.0.1:0", "URL",
              "where to listen (port 0 picks a free port)"),
    FLR_OPT_S("advertise", struct srv_cfg, advertise, "", "URL",
              "endpoint published in ZooKeeper (default: the bound listen URL)"),
    FLR_OPT_I("contexts", struct srv_cfg, contexts, "256", 4, 65536, "N",
              "requests the server can hold at once"),
    FLR_OPT_I("max-msg-mb", struct srv_cfg, max_msg_mb, "256", 1, 4096, "MB",
              "largest accepted message"),
    FLR_OPT_I("max-keys", struct srv_cfg, max_keys, "16777216", 1, 1LL << 31, "N",
              "most keys in one message"),
    FLR_OPT_I("start-timeout", struct srv_cfg, start_timeout_ms, "120000", 100, 86400000, "MS",
              "how long to wait for the job to be created"),
    FLR_OPT_I("replicate-ms", struct srv_cfg, replicate_ms, "200", 10, 600000, "MS",
              "recovery flr: how often rows lacking copies are sent to workers (REPLICATE)"),
    FLR_OPT_LOG_LEVEL(struct srv_cfg, "info"),
    {0},
};

struct qnode {
    struct flr_req *req;
    nng_msg *msg;
    struct qnode *next;
};

/* Recovery flr: a worker as the replication pass sees it.  Its node under /workers names
 * the endpoint where it takes REPLICATE; at most one is in flight to it at a time. */
struct srv_worker {
    int live;                        /* its node exists */
    char want[FLR_ENDPOINT_MAX];     /* the endpoint its node names, "" when none */
    char endpoint[FLR_ENDPOINT_MAX]; /* the endpoint conn dials */
    struct flr_conn *conn;           /* open while it has an endpoint */
    struct flr_call call;            /* the REPLICATE in flight, if busy */
    atomic_int done;                 /* set by the call's completion (an nng thread) */
    int busy;
    uint32_t shard; /* what the call in flight copies */
    uint64_t epoch, batch;
};

struct srv {
    struct srv_cfg cfg;
    struct flr_zk *zk;
    struct flr_job_spec spec;
    char *spec_json;
    struct flr_rep *rep;
    char endpoint[FLR_ENDPOINT_MAX];
    uint64_t incarnation;
    struct flr_shard **shards; /* spec.num_shards entries, NULL when not ours */
    uint8_t *frozen;           /* spec.num_shards flags: held for a move (drain), not served */
    int64_t *serving_ms;       /* spec.num_shards: wall-clock ms it began serving here, 0 = not */
    int64_t resync_ms;         /* when to re-read the shard map after a failed load (0 = none) */
    uint8_t *removed;          /* spec.num_workers flags: workers the coordinator removed */
    int serving_published;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct qnode *head, *tail, *spare;

    msgpack_zone zone;
    struct flr_proto_limits lim;
    uint64_t rejected[FLR_E_COUNT_];
    uint64_t requests;
    int lease_lapsed;         /* logged once per lapse */
    int64_t lease_renewed_ms; /* when the last renewal was sent */

    int flr;                    /* recovery flr: copies are made */
    struct srv_worker *workers; /* spec.num_workers entries when flr */
    uint32_t replicate_first;   /* the shard the last replication pass started with */
    int64_t next_replicate_ms;  /* when the next replication pass runs */
    int64_t workers_reread_ms;  /* when to re-read nodes that named no endpoint yet */
};

static volatile sig_atomic_t srv_stop;

static void srv_on_signal(int sig)
{
    (void)sig;
    srv_stop = 1;
}

/* Runs on nng threads: queue and return. */
static void srv_on_request(void *arg, struct flr_req *req, nng_msg *msg)
{
    struct srv *s = arg;
    struct qnode *n;

    pthread_mutex_lock(&s->mu);
    if ((n = s->spare) != NULL)
        s->spare = n->next;
    pthread_mutex_unlock(&s->mu);
    if (!n && !(n = malloc(sizeof(*n)))) {
        nng_msg_free(msg);
        flr_rep_reply(req, NULL);
        return;
    }
    n->req = req;
    n->msg = msg;
    n->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = n;
    else
        s->head = n;
    s->tail = n;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int srv_dequeue(struct srv *s, struct flr_req **req, nng_msg **msg, int timeout_ms)
{
    struct qnode *n;
    struct timespec ts;

    pthread_mutex_lock(&s->mu);
    if (!s->head) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)timeout_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    if ((n = s->head) != NULL) {
        s->head = n->next;
        if (!s->head)
            s->tail = NULL;
        *req = n->req;
        *msg = n->msg;
        n->next = s->spare;
        s->spare = n;
    }
    pthread_mutex_unlock(&s->mu);
    return n ? 0 : FLR_ETIMEOUT;
}

static void srv_count_reject(struct srv *s, int code, const struct flr_msg *m, const char *why)
{
    uint64_t n = ++s->rejected[code < FLR_E_COUNT_ ? code : FLR_EINTERNAL];
    /* Log the first few of each kind, then every 1000th, so a flood cannot drown the log. */
    if (n <= 5 || n % 1000 == 0)
        flr_warn("srv.reject", "rejected %s from %u (%s, %llu so far): %s",
                 flr_msg_type_name(m->type), m->sender, flr_errname(code), (unsigned long long)n,
                 why);
}

static void srv_status_reply(struct srv *s, struct flr_req *req, const struct flr_msg *m)
{
    json_t *root = json_object(), *shards = json_array(), *rej = json_object();
    struct flr_msg r = {0};
    nng_msg *out;
    char *text;

    for (uint32_t i = 0; i < s->spec.num_shards; i++) {
        struct flr_shard *sh = s->shards[i];
        if (!sh)
            continue;
        const struct flr_shard_stats *st = flr_shard_stats(sh);
        int removed = 0;
        int64_t wc = flr_shard_worker_clock(sh, m->sender, &removed);
        json_t *o;
        json_array_append_new(
            shards,
            o = json_pack("{sI sI sI sI sI sI sI sI sI sI sI}", "shard", (json_int_t)i, "epoch",
                          (json_int_t)flr_shard_epoch(sh), "stamp", (json_int_t)flr_shard_stamp(sh),
                          "min_clock", (json_int_t)flr_shard_min_clock(sh), "rows",
                          (json_int_t)flr_store_rows(flr_shard_store(sh)), "bytes",
                          (json_int_t)flr_store_bytes(flr_shard_store(sh)), "pulls",
                          (json_int_t)st->pulls, "pushes", (json_int_t)st->pushes, "keys_pulled",
                          (json_int_t)st->keys_pulled, "keys_pushed", (json_int_t)st->keys_pushed,
                          "held_pulls", (json_int_t)st->held_pulls));
        /* For a worker that asks where it stands (rejoining after a restart). */
        json_object_set_new(o, "sender_clock", json_integer(wc));
        json_object_set_new(o, "sender_removed", json_boolean(removed));
        json_object_set_new(o, "duplicate_pushes", json_integer((json_int_t)st->duplicate_pushes));
        /* When it began serving here (the coordinator's measure of a recovery's end: the
         * requests queued meanwhile may delay this answer by much longer). */
        json_object_set_new(o, "serving_since_ms", json_integer((json_int_t)s->serving_ms[i]));
        struct flr_shard_copies c;
        if (flr_shard_copies(sh, &c))
            json_object_set_new(
                o, "copies",
                json_pack(
                    "{sI sI sI sI sI sI sI sI}", "k", (json_int_t)c.k, "need", (json_int_t)c.need,
                    "short_rows", (json_int_t)c.short_rows, "safe_stamp", (json_int_t)c.safe_stamp,
                    "replicated_rows", (json_int_t)c.replicated_rows, "replicated_bytes",
                    (json_int_t)c.replicated_bytes, "replicate_errors",
                    (json_int_t)c.replicate_errors, "holder_bytes", (json_int_t)c.holder_bytes));
        const struct flr_rebuild_result *rb = flr_shard_rebuild_info(sh);
        if (rb)
            json_object_set_new(
                o, "rebuild",
                json_pack("{sI sI sI sI sI sI sI sI sI}", "rows_rebuilt",
                          (json_int_t)rb->rows_rebuilt, "rows_lost", (json_int_t)rb->rows_lost,
                          "rows_from_log", (json_int_t)rb->rows_from_log, "entries_replayed",
                          (json_int_t)rb->entries_replayed, "entries_skipped",
                          (json_int_t)rb->entries_skipped, "workers", (json_int_t)rb->workers,
                          "bytes", (json_int_t)rb->bytes, "ms", (json_int_t)rb->ms, "replay_ms",
                          (json_int_t)rb->replay_ms));
    }
    for (int c = 1; c < FLR_E_COUNT_; c++) {
        uint64_t n = s->rejected[c];
        for (uint32_t i = 0; i < s->spec.num_shards; i++)
            if (s->shards[i])
                n += flr_shard_stats(s->shards[i])->rejected_by[c];
        if (n)
            json_object_set_new(rej, flr_errname(c), json_integer((json_int_t)n));
    }
    json_object_set_new(root, "server", json_integer((json_int_t)s->cfg.id));
    json_object_set_new(root, "endpoint", json_string(s->endpoint));
    json_object_set_new(root, "requests", json_integer((json_int_t)s->requests));
    json_object_set_new(root, "shards", shards);
    json_object_set_new(root, "rejected", rej);
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);

    r.type = FLR_MSG_STATUS_REPLY;
    r.job = s->cfg.job;
    r.job_len = (uint32_t)strlen(s->cfg.job);
    r.sender = (uint32_t)s->cfg.id;
    r.request_id = m->request_id;
    r.reason = "";
    r.text = text ? text : "{}";
    r.text_len = (uint32_t)strlen(r.text);
    if (flr_msg_to_nng(&out, &r, NULL) == 0)
        flr_rep_reply(req, out);
    else
        flr_rep_reply(req, NULL);
    free(text);
}

static void srv_keep_lease(struct srv *s);

/* DUMP of this "table": the pushes a BSP shard holds for clocks not yet closed. */
#define SRV_DUMP_HELD UINT32_MAX

/* A rebuild: how long a worker may take to answer one request, and the pause before a
 * worker that failed is asked again. */
#define SRV_REBUILD_CALL_MS  30000
#define SRV_REBUILD_RETRY_MS 1000

/* Shards rebuilt at a time, at least (more on a machine with more processors). */
#define SRV_REBUILD_WIDTH 4

/* Rows per DUMP reply: about 16 MiB of them. */
#define SRV_DUMP_BYTES ((size_t)16 << 20)

/* Answers a DUMP: the next rows of a table of a shard that is frozen for a move, or the
 * next push it holds for an open BSP clock. */
static void srv_dump_reply(struct srv *s, struct flr_req *req, nng_msg *msg,
                           const struct flr_msg *m)
{
    struct flr_shard *sh = m->shard < s->spec.num_shards ? s->shards[m->shard] : NULL;
    struct flr_msg r = {0};
    char why[FLR_REASON_MAX], *meta = NULL;
    void *keys = NULL, *rows = NULL;
    nng_msg *out;
    int rv;

    if (!sh || !s->frozen[m->shard]) {
        rv = sh ? FLR_EBAD_REQUEST : FLR_ENOT_OWNER;
        snprintf(why, sizeof(why), "shard %u is %s", m->shard,
                 sh ? "serving here, not frozen for a move" : "not held by this server");
        goto reject;
    }
    r.type = FLR_MSG_DUMP_REPLY;
    r.job = s->cfg.job;
    r.job_len = (uint32_t)strlen(s->cfg.job);
    r.sender = (uint32_t)s->cfg.id;
    r.shard = m->shard;
    r.shard_epoch = flr_shard_epoch(sh);
    r.request_id = m->request_id;
    r.reason = "";
    r.stamp = flr_shard_stamp(sh);
    r.clock = -1;
    if (m->table == SRV_DUMP_HELD) {
        /* The aux-th held push, as it arrived, with its sender, request id and pseq.  The
         * first reply also carries every worker's applied frontier, so that the new owner
         * still recognises retried pushes (under every consistency model), and the clocks:
         * a CLOCK this server acknowledged is never sent again. */
        const struct flr_msg *h = flr_shard_held_push(sh, m->aux);
        json_t *j =
            json_pack("{sI sI sI}", "worker", (json_int_t)(h ? h->sender : 0), "request_id",
                      (json_int_t)(h ? h->request_id : 0), "seq", (json_int_t)(h ? h->seq : 0));
        if (j && m->aux == 0) {
            json_t *fr = json_array(), *ck = json_array();
            for (uint32_t w = 0; w < s->spec.num_workers; w++) {
                int removed;
                json_array_append_new(fr, json_integer((json_int_t)flr_shard_frontier(sh, w)));
                json_array_append_new(
                    ck, json_integer((json_int_t)flr_shard_worker_clock(sh, w, &removed)));
            }
            json_object_set_new(j, "frontier", fr);
            json_object_set_new(j, "clock", ck);
            json_object_set_new(j, "min_clock", json_integer(flr_shard_min_clock(sh)));
        }
        meta = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!meta) {
            rv = FLR_ENOMEM;
            snprintf(why, sizeof(why), "out of memory dumping shard %u", m->shard);
            goto reject;
        }
        r.aux = flr_shard_held_push(sh, m->aux + 1) ? m->aux + 1 : UINT64_MAX;
        if (h) {
            r.table = h->table;
            r.clock = h->clock;
            r.keys = h->keys;
            r.nkeys = h->nkeys;
            r.vals = h->vals;
            r.vals_len = h->vals_len;
            r.seq = h->seq;
        }
        r.text = meta;
        r.text_len = (uint32_t)strlen(meta);
    } else {
        struct flr_tshard *t = flr_store_table(flr_shard_store(sh), m->table);
        size_t rb;
        uint32_t max;
        if (!t) {
            rv = FLR_EUNKNOWN_TABLE;
            snprintf(why, sizeof(why), "unknown table %u", m->table);
            goto reject;
        }
        rb = flr_tshard_row_bytes(t);
        max = (uint32_t)(SRV_DUMP_BYTES / (rb + 8));
        if (max > s->lim.max_keys)
            max = s->lim.max_keys;
        if (!(keys = malloc((size_t)max * 8)) || !(rows = malloc((size_t)max * rb))) {
            rv = FLR_ENOMEM;
            snprintf(why, sizeof(why), "out of memory dumping shard %u", m->shard);
            goto reject;
        }
        r.nkeys = flr_tshard_export(t, m->aux, max, keys, rows, &r.aux);
        r.keys = keys;
        r.vals = rows;
        r.vals_len = (uint64_t)r.nkeys * rb;
    }
    flr_rep_reply(req, flr_msg_to_nng(&out, &r, NULL) == 0 ? out : NULL);
    free(keys);
    free(rows);
    free(meta);
    nng_msg_free(msg);
    return;
reject:
    free(keys);
    free(meta);
    srv_count_reject(s, rv, m, why);
    flr_reply_error(req, m, s->cfg.job, (uint32_t)s->cfg.id, rv, why);
    nng_msg_free(msg);
}

/* One DUMP exchange with the source of a move.  On success *r is the decoded reply, which
 * points into *rep: the caller frees *rep, or keeps it as long as it uses *r. */
static int srv_dump_call(struct srv *s, struct flr_conn *conn, uint32_t shard, uint32_t table,
                         uint64_t cursor, nng_msg **rep, struct flr_msg *r)
{
    struct flr_msg m = {0};
    char why[FLR_REASON_MAX];
    nng_msg *req;
    int rv;

    m.type = FLR_MSG_DUMP;
    m.job = s->cfg.job;
    m.job_len = (uint32_t)strlen(s->cfg.job);
    m.sender = (uint32_t)s->cfg.id;
    m.shard = shard;
    m.request_id = cursor + 1;
    m.table = table;
    m.aux = cursor;
    *rep = NULL;
    srv_keep_lease(s); /* a long copy must not look like a lost session */
    if ((rv = flr_msg_to_nng(&req, &m, NULL)) != 0 ||
        (rv = flr_call_sync(conn, req, 30000, rep)) != 0)
        return rv;
    rv = flr_msg_decode(r, nng_msg_body(*rep), nng_msg_len(*rep), &s->lim, &s->zone, why,
                        sizeof(why));
    if (rv == 0 && (r->type != FLR_MSG_DUMP_REPLY || r->status != 0))
        rv = r->status ? r->status : FLR_EBAD_REQUEST;
    if (rv != 0) {
        nng_msg_free(*rep);
        *rep = NULL;
    }
    return rv;
}

/* Installs what the first held-push reply of a move says of the workers: their applied
 * frontiers and clocks.  Returns 0, or FLR_EFORMAT when they are missing or malformed (a
 * source without them would leave the new owner waiting for clocks it acknowledged). */
static int srv_take_progress(struct srv *s, uint32_t shard, json_t *meta)
{
    json_t *fr = json_object_get(meta, "frontier"), *ck = json_object_get(meta, "clock");
    json_t *mn = json_object_get(meta, "min_clock");
    const uint32_t n = s->spec.num_workers;
    struct flr_shard *sh = s->shards[shard];
    int64_t *clock;

    if (!json_is_array(fr) || !json_is_array(ck) || !json_is_integer(mn) ||
        json_array_size(fr) != n || json_array_size(ck) != n) {
        flr_err("srv.load", "shard %u: the source's reply lacks the workers' frontiers and clocks",
                shard);
        return FLR_EFORMAT;
    }
    if (!(clock = calloc(n ? n : 1, sizeof(*clock))))
        return FLR_ENOMEM;
    for (uint32_t w = 0; w < n; w++) {
        flr_shard_set_frontier(sh, w, (uint64_t)json_integer_value(json_array_get(fr, w)));
        clock[w] = (int64_t)json_integer_value(json_array_get(ck, w));
    }
    flr_shard_set_clocks(sh, clock, n, (int64_t)json_integer_value(mn));
    free(clock);
    return 0;
}

/*
 * Copies shard `shard` from server `from` (a drain moves it here): every table, DUMP
 * after DUMP, into the freshly opened shard, then the pushes the source holds for an open
 * BSP clock (acknowledged, so never re-sent).  Runs on the owner thread; the shard is not
 * served until it returns 0.
 */
static int srv_load_from(struct srv *s, uint32_t shard, uint32_t from)
{
    struct flr_shard *sh = s->shards[shard];
    char path[FLR_PATH_MAX], *data, why[256];
    struct flr_server_rec src;
    struct flr_conn *conn = NULL;
    uint64_t rows = 0, pushes = 0, cursor;
    struct flr_msg r;
    nng_msg *rep;
    int len, rv;

    flr_job_node(path, sizeof(path), s->cfg.job, "servers", from);
    if ((rv = flr_zk_get(s->zk, path, 0, &data, &len, NULL, NULL)) != 0)
        return rv;
    rv = flr_server_rec_from_json(&src, data, (size_t)len);
    free(data);
    if (rv != 0 ||
        (rv = flr_conn_open(&conn, src.endpoint, s->lim.max_size, why, sizeof(why))) != 0)
        return rv ? rv : FLR_EFORMAT;
    for (uint32_t i = 0; i < s->spec.ntables && rv == 0; i++) {
        struct flr_tshard *t = flr_store_table(flr_shard_store(sh), s->spec.tables[i].id);
        for (cursor = 0; rv == 0 && cursor != UINT64_MAX; nng_msg_free(rep)) {
            if ((rv = srv_dump_call(s, conn, shard, s->spec.tables[i].id, cursor, &rep, &r)) != 0)
                break;
            if (r.vals_len != (uint64_t)r.nkeys * flr_tshard_row_bytes(t))
                rv = FLR_EVALUE_LEN;
            else if ((rv = flr_tshard_import(t, r.keys, r.nkeys, r.vals)) == 0) {
                rows += r.nkeys;
                cursor = r.aux;
                flr_shard_set_stamp(sh, r.stamp);
            }
        }
    }
    /* The held pushes (BSP) and, in the first reply, the workers' applied frontiers and
     * clocks. */
    for (cursor = 0; rv == 0 && cursor != UINT64_MAX;) {
        json_error_t jerr;
        json_t *meta;
        if ((rv = srv_dump_call(s, conn, shard, SRV_DUMP_HELD, cursor, &rep, &r)) != 0)
            break;
        meta = json_loadb(r.text, r.text_len, 0, &jerr);
        if (cursor == 0 && (rv = srv_take_progress(s, shard, meta)) != 0) {
            json_decref(meta);
            nng_msg_free(rep);
            break;
        }
        cursor = r.aux;
        if (r.nkeys > 0) {
            struct flr_msg p = r;
            p.type = FLR_MSG_PUSH;
            p.sender = (uint32_t)json_integer_value(json_object_get(meta, "worker"));
            p.request_id = (uint64_t)json_integer_value(json_object_get(meta, "request_id"));
            p.seq = (uint64_t)json_integer_value(json_object_get(meta, "seq"));
            p.shard_epoch = flr_shard_epoch(sh);
            json_decref(meta);
            /* The push points into rep: on success the shard keeps both. */
            if ((rv = flr_shard_adopt_push(sh, rep, &p)) == 0) {
                pushes++;
                continue;
            }
        } else {
            json_decref(meta);
        }
        nng_msg_free(rep);
    }
    flr_conn_close(conn);
    /* The holders of the copied rows are known to the source only: copy them afresh. */
    if (rv == 0)
        rv = flr_shard_mark_all_dirty(sh);
    if (rv == 0)
        flr_notice("srv.moved", "shard %u: %llu rows and %llu held pushes copied from server %u",
                   shard, (unsigned long long)rows, (unsigned long long)pushes, from);
    return rv;
}

/* Where rebuild threads say that they ended. */
struct srv_rebuild_wake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* One shard rebuilt from the workers' copies and update logs on a thread of its own. */
struct srv_rebuild_job {
    struct srv *s;
    struct srv_rebuild_wake *wake;
    uint32_t shard;
    int64_t open_ms;
    pthread_t th;
    int started;
    int joined; /* 1: ended, to be joined; 2: joined */
    int done;   /* under wake->mu */
    int rv;
    struct flr_rebuild_result r;
};

/* The rebuild's lease callback, called on its thread: stops it on a signal.  The owner
 * thread keeps the lease meanwhile. */
static int srv_rebuild_stop(void *arg)
{
    (void)arg;
    return srv_stop != 0;
}

static void *srv_rebuild_thread(void *arg)
{
    struct srv_rebuild_job *j = arg;
    struct srv *s = j->s;
    struct flr_rebuild_cfg cfg = {0};

    cfg.zk = s->zk;
    cfg.job = s->cfg.job;
    cfg.self = (uint32_t)s->cfg.id;
    cfg.shard = j->shard;
    cfg.spec = &s->spec;
    cfg.removed = s->removed;
    cfg.lim = &s->lim;
    cfg.call_timeout_ms = SRV_REBUILD_CALL_MS;
    cfg.retry_ms = SRV_REBUILD_RETRY_MS;
    cfg.timeout_ms = 0; /* a worker is asked until it answers or its node goes */
    cfg.keep_lease = srv_rebuild_stop;
    j->rv = flr_rebuild_shard(s->shards[j->shard], &cfg, &j->r);
    pthread_mutex_lock(&j->wake->mu);
    j->done = 1;
    pthread_cond_signal(&j->wake->cv);
    pthread_mutex_unlock(&j->wake->mu);
    return NULL;
}

/* Installs a finished rebuild into its shard before it serves.  Returns 0 or the error
 * that leaves the shard half rebuilt (the caller closes it). */
static int srv_rebuild_install(struct srv *s, struct srv_rebuild_job *j)
{
    const struct flr_rebuild_result *r = &j->r;
    int rv;

    if ((rv = flr_shard_restore(s->shards[j->shard], &j->r)) != 0)
        return rv;
    flr_notice("srv.rebuilt",
               "shard %u: rebuilt at stamp %llu from %u workers in %lld ms (%llu bytes streamed "
               "in %lld ms, logs replayed in %lld ms, %llu page faults): %llu rows "
               "from copies, %llu from logs, %llu lost; %llu log entries replayed, %llu "
               "already in copies, %zu pushes held for open clocks",
               j->shard, (unsigned long long)r->stamp, r->workers, (long long)r->ms,
               (unsigned long long)r->bytes, (long long)(r->ms - r->replay_ms),
               (long long)r->replay_ms, (unsigned long long)r->page_faults,
               (unsigned long long)r->rows_rebuilt, (unsigned long long)r->rows_from_log,
               (unsigned long long)r->rows_lost, (unsigned long long)r->entries_replayed,
               (unsigned long long)r->entries_skipped, r->nheld);
    return 0;
}

/* Starts the rebuild of one job's shard on a thread of its own. */
static void srv_rebuild_start(struct srv *s, struct srv_rebuild_wake *wake,
                              struct srv_rebuild_job *j)
{
    flr_notice("srv.rebuild",
               "shard %u: opened in %lld ms; rebuilding from the workers' copies "
               "and logs",
               j->shard, (long long)j->open_ms);
    j->s = s;
    j->wake = wake;
    if (pthread_create(&j->th, NULL, srv_rebuild_thread, j) != 0)
        j->rv = FLR_ENOMEM;
    else
        j->started = 1;
}

/* Waits up to ms for a rebuild among jobs[0..n-1] to end, and joins those that ended.
 * Returns how many it joined. */
static size_t srv_rebuild_reap(struct srv_rebuild_wake *wake, struct srv_rebuild_job *jobs,
                               size_t n, int ms)
{
    const struct timespec ts = flr_deadline_ts(ms);
    size_t ended = 0;

    pthread_mutex_lock(&wake->mu);
    for (;;) {
        for (size_t k = 0; k < n; k++)
            if (jobs[k].started && !jobs[k].joined && jobs[k].done) {
                jobs[k].joined = 1;
                ended++;
            }
        if (ended > 0 || pthread_cond_timedwait(&wake->cv, &wake->mu, &ts) != 0)
            break;
    }
    pthread_mutex_unlock(&wake->mu);
    for (size_t k = 0; k < n; k++)
        if (jobs[k].joined == 1) {
            pthread_join(jobs[k].th, NULL);
            jobs[k].joined = 2;
        }
    return ended;
}

/*
 * Rebuilds the n shards of jobs from the workers' copies and update logs (recovery flr:
 * their previous owner is lost), each freshly opened, on threads of their own, so that the
 * shards of one lost server come back together rather than one after another: as many at
 * a time as the machine has processors, and at least SRV_REBUILD_WIDTH (a lost
 * server's shards by default: the rebuilds wait on the network as much as on the CPU).  The owner
 * thread keeps the lease meanwhile and serves nothing; once every rebuild has ended it installs
 * each outcome (srv_rebuild_install).  Each job's rv says how its shard fared.
 */
static void srv_rebuild_all(struct srv *s, struct srv_rebuild_job *jobs, size_t n)
{
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const size_t width = cpus > SRV_REBUILD_WIDTH ? (size_t)cpus : SRV_REBUILD_WIDTH;
    struct srv_rebuild_wake wake;
    size_t next = 0, running = 0;

    pthread_mutex_init(&wake.mu, NULL);
    pthread_cond_init(&wake.cv, NULL);
    for (;;) {
        for (; running < width && next < n; next++) {
            srv_rebuild_start(s, &wake, &jobs[next]);
            running += jobs[next].started;
        }
        if (running == 0)
            break;
        srv_keep_lease(s); /* a long rebuild must not look like a lost session */
        running -= srv_rebuild_reap(&wake, jobs, next, 50);
    }
    pthread_mutex_destroy(&wake.mu);
    pthread_cond_destroy(&wake.cv);
    for (size_t k = 0; k < n; k++) {
        if (jobs[k].rv == 0)
            jobs[k].rv = srv_rebuild_install(s, &jobs[k]);
        flr_rebuild_result_free(&jobs[k].r);
    }
}

static void srv_handle(struct srv *s, struct flr_req *req, nng_msg *msg)
{
    struct flr_msg m;
    char why[FLR_REASON_MAX];
    int rv;

    s->requests++;
    rv = flr_msg_decode(&m, nng_msg_body(msg), nng_msg_len(msg), &s->lim, &s->zone, why,
                        sizeof(why));
    if (rv != 0)
        goto reject;
    if (m.job_len != strlen(s->cfg.job) || memcmp(m.job, s->cfg.job, m.job_len) != 0) {
        rv = FLR_EWRONG_JOB;
        snprintf(why, sizeof(why), "message for job '%.*s', this server serves job '%s'",
                 (int)m.job_len, m.job, s->cfg.job);
        goto reject;
    }
    switch (m.type) {
    case FLR_MSG_PULL:
    case FLR_MSG_PUSH:
    case FLR_MSG_CLOCK:
    case FLR_MSG_LEAVE: {
        struct flr_shard *sh = m.shard < s->spec.num_shards ? s->shards[m.shard] : NULL;
        if (flr_now_ms() >= flr_zk_lease_until(s->zk)) {
            /* Paused or cut off for too long: the coordinator may already have given our
             * shards to another server.  Serve nothing until the lease is renewed. */
            if (!s->lease_lapsed) {
                s->lease_lapsed = 1;
                flr_warn("srv.lease", "ZooKeeper lease lapsed: not serving until it is renewed "
                                      "or the session is known to be gone");
            }
            rv = FLR_ELEASE_EXPIRED;
            snprintf(why, sizeof(why), "server %lld: its ZooKeeper lease lapsed", s->cfg.id);
            goto reject;
        }
        if (!sh) {
            rv = FLR_ENOT_OWNER;
            snprintf(why, sizeof(why), "server %lld does not own shard %u", s->cfg.id, m.shard);
            goto reject;
        }
        if (s->frozen[m.shard]) {
            rv = FLR_ERECOVERING;
            snprintf(why, sizeof(why), "shard %u is moving to another server", m.shard);
            goto reject;
        }
        if (m.shard_epoch != flr_shard_epoch(sh)) {
            rv = FLR_EWRONG_EPOCH;
            snprintf(why, sizeof(why), "shard %u is at epoch %llu, request has %llu", m.shard,
                     (unsigned long long)flr_shard_epoch(sh), (unsigned long long)m.shard_epoch);
            goto reject;
        }
        (void)flr_shard_handle(sh, req, msg, &m);
        return;
    }
    case FLR_MSG_STATUS:
        srv_status_reply(s, req, &m);
        nng_msg_free(msg);
        return;
    case FLR_MSG_DUMP:
        srv_dump_reply(s, req, msg, &m);
        return;
    case FLR_MSG_SHUTDOWN:
        flr_notice("srv.shutdown", "shutdown requested by %u", m.sender);
        flr_reply_error(req, &m, s->cfg.job, (uint32_t)s->cfg.id, 0, "");
        nng_msg_free(msg);
        srv_stop = 1;
        return;
    default:
        rv = FLR_EBAD_REQUEST;
        snprintf(why, sizeof(why), "a server does not accept %s", flr_msg_type_name(m.type));
        goto reject;
    }

reject:
    srv_count_reject(s, rv, &m, why);
    flr_reply_error(req, &m, s->cfg.job, (uint32_t)s->cfg.id, rv, why);
    nng_msg_free(msg);
}

static int srv_publish(struct srv *s, enum flr_server_state state, int create)
{
    struct flr_server_rec rec = {0};
    char path[FLR_PATH_MAX], *json = NULL;
    int rv;

    rec.id = (uint32_t)s->cfg.id;
    snprintf(rec.endpoint, sizeof(rec.endpoint), "%s", s->endpoint);
    rec.incarnation = s->incarnation;
    rec.pid = (int32_t)getpid();
    gethostname(rec.host, sizeof(rec.host) - 1);
    rec.state = state;
    if ((rv = flr_server_rec_to_json(&rec, &json)) != 0)
        return rv;
    flr_job_node(path, sizeof(path), s->cfg.job, "servers", (unsigned long)s->cfg.id);
    if (create)
        rv = flr_zk_create(s->zk, path, json, (int)strlen(json), FLR_ZK_EPHEMERAL, NULL, 0);
    else
        rv = flr_zk_set(s->zk, path, json, (int)strlen(json), -1);
    free(json);
    return rv;
}

/* A shard of ours that was opened (and copied or rebuilt) serves from now on. */
static void srv_shard_serves(struct srv *s, uint32_t i)
{
    struct flr_shard *sh = s->shards[i];

    for (uint32_t w = 0; w < s->spec.num_workers; w++)
        if (s->removed[w])
            flr_shard_remove_worker(sh, w);
    s->serving_ms[i] = flr_wall_ms();
    flr_info("srv.load", "shard %u: serving at epoch %llu (%llu rows, %zu bytes)", i,
             (unsigned long long)flr_shard_epoch(sh),
             (unsigned long long)flr_store_rows(flr_shard_store(sh)),
             flr_store_bytes(flr_shard_store(sh)));
}

/* Re-reads every shard record (leaving watches) and opens or closes our shards. */
static int srv_sync_shards(struct srv *s)
{
    char path[FLR_PATH_MAX], *data;
    struct srv_rebuild_job *jobs;
    size_t njobs = 0;
    int len, rv = 0, owned = 0;

    /* The shards to rebuild are opened here and rebuilt together after the loop.  A
     * recovery assigns its shards in one ZooKeeper multi, but the loop reads the records one
     * by one and may have read some of them before the multi landed: when it found a shard
     * to rebuild, a second pass picks up the rest (the multi landed before the first record
     * that showed it was read), so they are all rebuilt together. */
    if (!(jobs = calloc(s->spec.num_shards ? s->spec.num_shards : 1, sizeof(*jobs))))
        return FLR_ENOMEM;
    for (int pass = 0; pass < 2 && (pass == 0 || njobs > 0); pass++)
        for (uint32_t i = 0; i < s->spec.num_shards; i++) {
            struct flr_shard_rec rec;
            int queued = 0;
            for (size_t k = 0; k < njobs; k++)
                queued |= jobs[k].shard == i;
            if (queued)
                continue; /* opened for a rebuild by the first pass */
            flr_job_node(path, sizeof(path), s->cfg.job, "shards", i);
            rv = flr_zk_get(s->zk, path, 1, &data, &len, NULL, NULL);
            if (rv == FLR_EZK_NONODE)
                continue;
            if (rv != 0)
                goto fail;
            rv = flr_shard_rec_from_json(&rec, data, (size_t)len);
            free(data);
            if (rv != 0) {
                flr_warn("srv.shardrec", "shard %u: unreadable record, ignored", i);
                continue;
            }
            int mine = rec.owner == (uint32_t)s->cfg.id && rec.state == FLR_SHARD_ACTIVE;
            struct flr_shard *sh = s->shards[i];
            /* Held, not served, while it moves away: fenced for a drain, or the source the
             * new owner copies from. */
            int hold = sh && !mine &&
                       ((rec.owner == (uint32_t)s->cfg.id && rec.state == FLR_SHARD_RECOVERING) ||
                        rec.from1 == (uint32_t)s->cfg.id + 1);
            if (mine && sh && flr_shard_epoch(sh) == rec.epoch) {
                owned++;
                continue;
            }
            if (hold) {
                if (!s->frozen[i])
                    flr_notice("srv.freeze", "shard %u: frozen while it moves to another server",
                               i);
                s->frozen[i] = 1;
                continue;
            }
            s->frozen[i] = 0;
            if (sh) {
                flr_notice("srv.unload", "shard %u: no longer ours at epoch %llu", i,
                           (unsigned long long)rec.epoch);
                flr_shard_close(sh);
                s->shards[i] = NULL;
                s->serving_ms[i] = 0;
            }
            if (mine) {
                const int64_t t_open = flr_now_ms();
                /* Rebuilt from the workers (a shard copied from its drained owner is not): it
                 * gets its rows from the rebuild, not from initialisers. */
                const int rebuild = !rec.from1 && rec.rebuild;
                rv = rebuild ? flr_shard_open_for_rebuild(&s->shards[i], &s->spec, i, rec.epoch,
                                                          (uint32_t)s->cfg.id)
                             : flr_shard_open(&s->shards[i], &s->spec, i, rec.epoch,
                                              (uint32_t)s->cfg.id);
                if (rv != 0) {
                    flr_err("srv.load", "shard %u: cannot open: %s", i, flr_strerror(rv));
                    goto fail;
                }
                if (rec.from1 && rec.from1 != (uint32_t)s->cfg.id + 1 &&
                    (rv = srv_load_from(s, i, rec.from1 - 1)) != 0) {
                    flr_err("srv.load", "shard %u: cannot copy it from server %u: %s; retrying", i,
                            rec.from1 - 1, flr_strerror(rv));
                    flr_shard_close(s->shards[i]);
                    s->shards[i] = NULL;
                    s->resync_ms = flr_now_ms() + 1000;
                    continue;
                }
                if (rebuild) {
                    jobs[njobs].shard = i;
                    jobs[njobs++].open_ms = flr_now_ms() - t_open;
                    continue;
                }
                srv_shard_serves(s, i);
                owned++;
            }
        }
    if (njobs > 0) {
        srv_rebuild_all(s, jobs, njobs);
        for (size_t k = 0; k < njobs; k++) {
            const uint32_t i = jobs[k].shard;
            if (jobs[k].rv != 0) {
                flr_err("srv.rebuild", "shard %u: cannot rebuild it from the workers: %s; retrying",
                        i, flr_strerror(jobs[k].rv));
                flr_shard_close(s->shards[i]);
                s->shards[i] = NULL;
                s->resync_ms = flr_now_ms() + 1000;
                continue;
            }
            srv_shard_serves(s, i);
            owned++;
        }
    }
    free(jobs);
    if (owned && !s->serving_published) {
        if ((rv = srv_publish(s, FLR_SERVER_SERVING, 0)) != 0)
            return rv;
        s->serving_published = 1;
    }
    return 0;

fail:
    /* Opened to be rebuilt, not rebuilt: they must not look served at the next sync. */
    for (size_t k = 0; k < njobs; k++) {
        flr_shard_close(s->shards[jobs[k].shard]);
        s->shards[jobs[k].shard] = NULL;
    }
    free(jobs);
    return rv;
}

/* Marks in flags the workers listed under dir (leaving a child watch).  Returns 0 or the
 * ZooKeeper error. */
static int srv_list_workers(struct srv *s, const char *dir, uint8_t *flags)
{
    char path[FLR_PATH_MAX], **names = NULL;
    int n = 0, rv;

    flr_job_path(path, sizeof(path), s->cfg.job, dir);
    if ((rv = flr_zk_children(s->zk, path, 1, &names, &n)) != 0)
        return rv;
    for (int i = 0; i < n; i++) {
        char *end;
        unsigned long w = strtoul(names[i], &end, 10);
        if (!*end && w < s->spec.num_workers)
            flags[w] = 1;
    }
    flr_zk_free_names(names, n);
    return 0;
}

/* Workers whose clocks no longer count: those the coordinator removed (they died) and
 * those that finished (their result is written; they send nothing more).  A removed
 * worker that the coordinator readmits (it was restarted) counts again from the shard's
 * current clock. */
static void srv_sync_removed(struct srv *s)
{
    uint8_t *now = calloc(s->spec.num_workers, 1);

    if (!now)
        return;
    if (srv_list_workers(s, "/removed", now) != 0 || srv_list_workers(s, "/results", now) != 0) {
        free(now);
        return;
    }
    for (uint32_t w = 0; w < s->spec.num_workers; w++) {
        if (now[w] == s->removed[w])
            continue;
        s->removed[w] = now[w];
        flr_notice(now[w] ? "srv.worker_removed" : "srv.worker_readmitted",
                   now[w] ? "worker %u of job %s is gone or finished: its clock no longer counts"
                          : "worker %u rejoined job %s: its clock counts again",
                   w, s->cfg.job);
        for (uint32_t sh = 0; sh < s->spec.num_shards; sh++) {
            if (!s->shards[sh])
                continue;
            if (now[w])
                flr_shard_remove_worker(s->shards[sh], w);
            else
                flr_shard_readmit_worker(s->shards[sh], w);
        }
    }
    free(now);
}

/* ---- recovery flr: the workers' endpoints and the replication pass -------------------- */

/* REPLICATEs are at most about this big, and given this long to be acknowledged. */
#define SRV_REPLICATE_BYTES      ((size_t)8 << 20)
#define SRV_REPLICATE_TIMEOUT_MS 10000

static void srv_replicate_done(struct flr_call *call)
{
    struct srv_worker *wk = call->arg;
    atomic_store(&wk->done, 1);
}

/* Brings a worker's connection in line with the endpoint its node names (want): dials a
 * new one, closes an old one.  A REPLICATE in flight is cancelled first; the connection
 * changes once the poll has taken its completion. */
static void srv_worker_follow(struct srv *s, uint32_t w)
{
    struct srv_worker *wk = &s->workers[w];
    char why[256];

    if (strcmp(wk->endpoint, wk->want) == 0 && (wk->conn || !wk->want[0]))
        return;
    if (wk->busy) {
        flr_call_cancel(&wk->call);
        return;
    }
    if (wk->conn) {
        /* The call's context belongs to the connection: finish it first. */
        flr_call_fini(&wk->call);
        flr_conn_close(wk->conn);
        wk->conn = NULL;
        if (flr_call_init(&wk->call) != 0) {
            flr_err("srv.copies", "worker %u: out of memory: no more copies to it", w);
            wk->want[0] = wk->endpoint[0] = '\0';
            return;
        }
        wk->call.done = srv_replicate_done;
        wk->call.arg = wk;
    }
    snprintf(wk->endpoint, sizeof(wk->endpoint), "%s", wk->want);
    if (!wk->want[0])
        return;
    if (flr_conn_open(&wk->conn, wk->want, s->lim.max_size, why, sizeof(why)) != 0) {
        flr_warn("srv.copies", "worker %u: cannot dial %s: %s", w, wk->want, why);
        wk->want[0] = wk->endpoint[0] = '\0';
        return;
    }
    flr_info("srv.copies", "worker %u takes copies at %s", w, wk->want);
}

/* Takes the news of one worker's node: live or gone, and its endpoint. */
static void srv_worker_update(struct srv *s, uint32_t w, int live, const char *endpoint)
{
    struct srv_worker *wk = &s->workers[w];

    wk->live = live;
    snprintf(wk->want, sizeof(wk->want), "%s", live ? endpoint : "");
    srv_worker_follow(s, w);
}

/* Re-reads /workers (leaving a child watch) and each live worker's endpoint. */
static void srv_sync_workers(struct srv *s)
{
    char path[FLR_PATH_MAX], **names = NULL, *data;
    uint8_t *seen;
    int n = 0, len;

    if (!s->flr || !(seen = calloc(s->spec.num_workers, 1)))
        return;
    flr_job_path(path, sizeof(path), s->cfg.job, "/workers");
    if (flr_zk_children(s->zk, path, 1, &names, &n) != 0) {
        free(seen);
        return;
    }
    s->workers_reread_ms = 0;
    for (int i = 0; i < n; i++) {
        char *end, ep[FLR_ENDPOINT_MAX] = "";
        unsigned long w = strtoul(names[i], &end, 10);
        json_t *j;
        if (*end || w >= s->spec.num_workers)
            continue;
        seen[w] = 1;
        flr_job_node(path, sizeof(path), s->cfg.job, "workers", w);
        if (flr_zk_get(s->zk, path, 0, &data, &len, NULL, NULL) != 0)
            continue;
        if ((j = json_loadb(data, (size_t)len, 0, NULL)) != NULL) {
            const char *e = json_string_value(json_object_get(j, "endpoint"));
            snprintf(ep, sizeof(ep), "%s", e ? e : "");
            json_decref(j);
        }
        free(data);
        srv_worker_update(s, (uint32_t)w, 1, ep);
        /* A node may name its endpoint after it was created: look again later. */
        if (!ep[0])
            s->workers_reread_ms = flr_now_ms() + 1000;
    }
    flr_zk_free_names(names, n);
    for (uint32_t w = 0; w < s->spec.num_workers; w++)
        if (!seen[w] && s->workers[w].live)
            srv_worker_update(s, w, 0, "");
    free(seen);
}

/* Takes the answers of REPLICATEs that completed. */
static void srv_replicate_poll(struct srv *s)
{
    for (uint32_t w = 0; w < s->spec.num_workers; w++) {
        struct srv_worker *wk = &s->workers[w];
        struct flr_shard *sh;
        struct flr_msg r;
        int ok = 0;

        if (!wk->busy || !atomic_load(&wk->done))
            continue;
        wk->busy = 0;
        if (wk->call.rv == 0 && wk->call.reply) {
            ok = flr_msg_decode(&r, nng_msg_body(wk->call.reply), nng_msg_len(wk->call.reply),
                                &s->lim, &s->zone, NULL, 0) == 0 &&
                 r.type == FLR_MSG_REPLICATE_ACK && r.status == 0;
            nng_msg_free(wk->call.reply);
            wk->call.reply = NULL;
        }
        if (!ok)
            flr_debug("srv.copies", "worker %u: REPLICATE of shard %u failed: %s", w, wk->shard,
                      flr_strerror(wk->call.rv ? wk->call.rv : FLR_EBAD_REQUEST));
        sh = s->shards[wk->shard];
        if (sh && flr_shard_epoch(sh) == wk->epoch)
            flr_shard_replicate_done(sh, wk->batch, ok);
        /* The node changed while the call was in flight: follow it now. */
        srv_worker_follow(s, w);
    }
}

/* One replication pass over the shards served here (docs/recovery.md). */
static void srv_replicate(struct srv *s)
{
    uint32_t *targets, ntargets = 0, nout;
    struct flr_shard_replica *out;

    srv_replicate_poll(s);
    if (flr_now_ms() < s->next_replicate_ms)
        return;
    s->next_replicate_ms = flr_now_ms() + s->cfg.replicate_ms;
    if (!(targets = calloc(s->spec.num_workers, sizeof(*targets))) ||
        !(out = calloc(s->spec.num_workers, sizeof(*out)))) {
        free(targets);
        return;
    }
    for (uint32_t w = 0; w < s->spec.num_workers; w++)
        if (s->workers[w].live && s->workers[w].conn && !s->workers[w].busy && !s->removed[w])
            targets[ntargets++] = w;
    /* A worker takes one REPLICATE at a time, so the shards take turns at being first:
     * starting from shard 0 every pass would starve the others. */
    s->replicate_first = (s->replicate_first + 1) % s->spec.num_shards;
    for (uint32_t k = 0; k < s->spec.num_shards && ntargets > 0; k++) {
        uint32_t i = (s->replicate_first + k) % s->spec.num_shards;
        struct flr_shard *sh = s->shards[i];
        int rv;
        if (!sh || s->frozen[i])
            continue;
        rv = flr_shard_replicate(sh, targets, ntargets, SRV_REPLICATE_BYTES, out, &nout);
        if (rv != 0)
            flr_warn("srv.copies", "shard %u: replication pass: %s", i, flr_strerror(rv));
        for (uint32_t j = 0; j < nout; j++) {
            struct srv_worker *wk = &s->workers[out[j].worker];
            wk->busy = 1;
            wk->shard = i;
            wk->epoch = flr_shard_epoch(sh);
            wk->batch = out[j].id;
            atomic_store(&wk->done, 0);
            flr_call_start(&wk->call, wk->conn, out[j].msg, SRV_REPLICATE_TIMEOUT_MS, NULL);
            /* One REPLICATE in flight per worker: it is no target for the next shards. */
            for (uint32_t t = 0; t < ntargets; t++)
                if (targets[t] == out[j].worker) {
                    targets[t] = targets[--ntargets];
                    break;
                }
        }
    }
    free(targets);
    free(out);
}

static int srv_workers_open(struct srv *s)
{
    s->flr = strcmp(s->spec.recovery, "flr") == 0;
    if (!s->flr)
        return 0;
    if (!(s->workers = calloc(s->spec.num_workers, sizeof(*s->workers))))
        return FLR_ENOMEM;
    for (uint32_t w = 0; w < s->spec.num_workers; w++) {
        int rv;
        if ((rv = flr_call_init(&s->workers[w].call)) != 0)
            return rv;
        s->workers[w].call.done = srv_replicate_done;
        s->workers[w].call.arg = &s->workers[w];
    }
    return 0;
}

/* Stops every REPLICATE in flight and closes the workers' connections. */
static void srv_workers_close(struct srv *s)
{
    if (!s->workers)
        return;
    for (uint32_t w = 0; w < s->spec.num_workers; w++) {
        struct srv_worker *wk = &s->workers[w];
        flr_call_cancel(&wk->call);
        flr_call_fini(&wk->call);
        if (wk->conn)
            flr_conn_close(wk->conn);
    }
    free(s->workers);
    s->workers = NULL;
}

/* Reads the job state (leaving a watch); sets srv_stop when the job is over. */
static void srv_check_state(struct srv *s)
{
    char path[FLR_PATH_MAX], *data;
    int len;

    flr_job_path(path, sizeof(path), s->cfg.job, "/state");
    if (flr_zk_get(s->zk, path, 1, &data, &len, NULL, NULL) != 0)
        return;
    if (strcmp(data, "done") == 0 || strcmp(data, "failed") == 0) {
        flr_notice("srv.jobdone", "job %s is %s: exiting", s->cfg.job, data);
        srv_stop = 1;
    }
    free(data);
}

/* Renews the ZooKeeper lease every quarter of the session timeout (so two renewals may
 * fail before it lapses) and notes when a lapsed lease came back. */
static void srv_keep_lease(struct srv *s)
{
    int64_t now = flr_now_ms(), period = flr_zk_session_timeout(s->zk) / 4;

    if (period < 10)
        period = 10;
    if (now - s->lease_renewed_ms >= period) {
        s->lease_renewed_ms = now;
        (void)flr_zk_lease_renew(s->zk);
    }
    if (s->lease_lapsed && now < flr_zk_lease_until(s->zk)) {
        s->lease_lapsed = 0;
        flr_notice("srv.lease", "ZooKeeper lease renewed: the session survived, serving again");
    }
}

/*
 * The lease lapsed for longer than a session timeout: the server was paused, cut off, or
 * busy (loading or rebuilding a large shard blocks this thread).  Only ZooKeeper can tell
 * which: a renewal it answers proves the session alive, and no one can have taken the
 * shards.  Returns 0 to go on serving, or FLR_EZK_EXPIRED to stop.
 */
static int srv_confirm_session(struct srv *s)
{
    const int64_t lapsed = flr_now_ms() - flr_zk_lease_until(s->zk);
    int rv = flr_zk_lease_confirm(s->zk, flr_zk_session_timeout(s->zk));

    if (rv == 0) {
        s->lease_renewed_ms = flr_now_ms();
        flr_notice("srv.lease", "lease renewed after %lld ms: ZooKeeper confirmed the session",
                   (long long)lapsed);
        return 0;
    }
    flr_err("srv.expired",
            "no word from ZooKeeper for %lld ms, longer than the session timeout, and no "
            "answer to a renewal: the session is %s; stopping",
            (long long)lapsed, rv == FLR_EZK_EXPIRED ? "gone" : "presumed gone");
    return FLR_EZK_EXPIRED;
}

enum { SRV_SYNC_SHARDS = 1, SRV_SYNC_REMOVED = 2, SRV_SYNC_STATE = 4, SRV_SYNC_WORKERS = 8 };

/* What a ZooKeeper event asks the server to re-read (and so re-watch).  After a reconnect
 * events may have been missed, so everything is re-read. */
static unsigned srv_event_needs(const struct srv *s, const struct flr_zk_event *ev)
{
    char prefix[FLR_PATH_MAX];

    if (ev->kind == FLR_ZK_EV_CONNECTED)
        return SRV_SYNC_SHARDS | SRV_SYNC_REMOVED | SRV_SYNC_STATE | SRV_SYNC_WORKERS;
    if (ev->kind == FLR_ZK_EV_DISCONNECTED || ev->kind == FLR_ZK_EV_EXPIRED)
        return 0;
    flr_job_path(prefix, sizeof(prefix), s->cfg.job, "/shards/");
    if (strncmp(ev->path, prefix, strlen(prefix)) == 0)
        return SRV_SYNC_SHARDS;
    flr_job_path(prefix, sizeof(prefix), s->cfg.job, "/removed");
    if (strcmp(ev->path, prefix) == 0)
        return SRV_SYNC_REMOVED;
    flr_job_path(prefix, sizeof(prefix), s->cfg.job, "/results");
    if (strcmp(ev->path, prefix) == 0)
        return SRV_SYNC_REMOVED;
    flr_job_path(prefix, sizeof(prefix), s->cfg.job, "/state");
    if (strcmp(ev->path, prefix) == 0)
        return SRV_SYNC_STATE;
    flr_job_path(prefix, sizeof(prefix), s->cfg.job, "/workers");
    if (strcmp(ev->path, prefix) == 0)
        return SRV_SYNC_WORKERS;
    return 0;
}

static int srv_wait_spec(struct srv *s)
{
    char path[FLR_PATH_MAX], why[256];
    int64_t deadline = flr_now_ms() + s->cfg.start_timeout_ms;
    int len, rv;

    flr_job_path(path, sizeof(path), s->cfg.job, "/spec");
    for (;;) {
        rv = flr_zk_get(s->zk, path, 0, &s->spec_json, &len, NULL, NULL);
        if (rv == 0)
            break;
        if (rv != FLR_EZK_NONODE || flr_now_ms() > deadline || srv_stop) {
            flr_err("srv.spec", "job %s: no spec at %s after %lld ms (is the coordinator running?)",
                    s->cfg.job, path, s->cfg.start_timeout_ms);
            return rv ? rv : FLR_ETIMEOUT;
        }
        usleep(100 * 1000);
    }
    if ((rv = flr_spec_from_json(&s->spec, s->spec_json, why, sizeof(why))) != 0) {
        flr_err("srv.spec", "job %s: bad spec: %s", s->cfg.job, why);
        return rv;
    }
    return 0;
}

static int srv_run(struct srv *s)
{
    char why[256];
    int rv;

    if ((rv = flr_zk_open(&s->zk, s->cfg.zk, (int)s->cfg.session_ms, 10000, why, sizeof(why))) !=
        0) {
        flr_err("srv.zk", "%s", why);
        return rv;
    }
    if ((rv = srv_wait_spec(s)) != 0)
        return rv;
    if (!(s->shards = calloc(s->spec.num_shards, sizeof(*s->shards))) ||
        !(s->frozen = calloc(s->spec.num_shards, 1)) ||
        !(s->serving_ms = calloc(s->spec.num_shards, sizeof(*s->serving_ms))) ||
        !(s->removed = calloc(s->spec.num_workers, sizeof(*s->removed))))
        return FLR_ENOMEM;
    if ((rv = flr_rep_open(&s->rep, s->cfg.listen, (int)s->cfg.contexts,
                           (size_t)s->cfg.max_msg_mb << 20, srv_on_request, s, why, sizeof(why))) !=
        0) {
        flr_err("srv.listen", "%s", why);
        return rv;
    }
    snprintf(s->endpoint, sizeof(s->endpoint), "%s",
             s->cfg.advertise[0] ? s->cfg.advertise : flr_rep_url(s->rep));
    if ((rv = srv_publish(s, FLR_SERVER_STANDBY, 1)) != 0) {
        if (rv == FLR_EZK_EXISTS)
            flr_err("srv.register",
                    "server id %lld is already registered in job %s by a live "
                    "session",
                    s->cfg.id, s->cfg.job);
        else
            flr_err("srv.register", "cannot register: %s", flr_strerror(rv));
        return rv;
    }
    flr_notice("srv.start", "server %lld of job %s listening on %s (%u shards in job)", s->cfg.id,
               s->cfg.job, s->endpoint, s->spec.num_shards);
    if ((rv = srv_workers_open(s)) != 0)
        return rv;
    srv_sync_removed(s);
    srv_sync_workers(s);
    if ((rv = srv_sync_shards(s)) != 0)
        return rv;
    srv_check_state(s);

    while (!srv_stop) {
        struct flr_req *req;
        nng_msg *msg;
        struct flr_zk_event ev;
        int budget = 256;

        /* Requests first, a bounded batch at a time, then ZooKeeper's news. */
        while (budget-- > 0 && srv_dequeue(s, &req, &msg, budget == 255 ? 50 : 0) == 0)
            srv_handle(s, req, msg);
        if (flr_zk_expired(s->zk)) {
            flr_err("srv.expired", "ZooKeeper session expired: stopping at once, shards may "
                                   "already belong to another server");
            return FLR_EZK_EXPIRED;
        }
        srv_keep_lease(s);
        if (flr_now_ms() > flr_zk_lease_until(s->zk) + flr_zk_session_timeout(s->zk) &&
            (rv = srv_confirm_session(s)) != 0)
            return rv;
        /* Drain the news first, then re-read each kind of state once: an assignment fires
         * one watch per shard record, and re-reading the whole map for each would cost
         * shards^2 reads. */
        unsigned todo = 0;
        while (flr_zk_next_event(s->zk, &ev, 0) == 0)
            todo |= srv_event_needs(s, &ev);
        if (s->resync_ms && flr_now_ms() >= s->resync_ms) {
            s->resync_ms = 0;
            todo |= SRV_SYNC_SHARDS;
        }
        if (todo & SRV_SYNC_REMOVED)
            srv_sync_removed(s);
        if ((todo & SRV_SYNC_SHARDS) && (rv = srv_sync_shards(s)) != 0 && rv != FLR_EZK_EXPIRED)
            flr_warn("srv.sync", "reading the shard map failed: %s", flr_strerror(rv));
        if (todo & SRV_SYNC_STATE)
            srv_check_state(s);
        if (s->workers_reread_ms && flr_now_ms() >= s->workers_reread_ms)
            todo |= SRV_SYNC_WORKERS;
        if (todo & SRV_SYNC_WORKERS)
            srv_sync_workers(s);
        if (s->flr)
            srv_replicate(s);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct srv s;
    const struct flr_opts_info info = {"flr-server",
                                       "flr parameter server: holds shards, applies pushes, "
                                       "answers pulls",
                                       PACKAGE_VERSION};
    int rv;
    struct sigaction sa = {0};

    if ((rv = flr_prog_init(srv_opts, &s.cfg, &info, argc, argv, s.cfg.log_level)) >= 0)
        return rv;
    sa.sa_handler = srv_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    msgpack_zone_init(&s.zone, 4096);
    flr_proto_limits_default(&s.lim);
    s.lim.max_size = (size_t)s.cfg.max_msg_mb << 20;
    s.lim.max_keys = (uint32_t)s.cfg.max_keys;
    s.incarnation = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();

    rv = srv_run(&s);

    /* Shards first: they drop their held requests through the still-open transport.  Then
     * the transport (no callback runs after it), then what its callbacks queued. */
    srv_workers_close(&s);
    if (s.shards)
        for (uint32_t i = 0; i < s.spec.num_shards; i++)
            flr_shard_close(s.shards[i]);
    free(s.shards);
    free(s.frozen);
    free(s.serving_ms);
    free(s.removed);
    flr_rep_close(s.rep);
    while (s.head) {
        struct qnode *n = s.head;
        s.head = n->next;
        nng_msg_free(n->msg);
        free(n);
    }
    while (s.spare) {
        struct qnode *n = s.spare;
        s.spare = n->next;
        free(n);
    }
    if (s.zk)
        flr_zk_close(s.zk);
    free(s.spec_json);
    msgpack_zone_destroy(&s.zone);
    if (rv == 0)
        flr_notice("srv.exit", "server %lld stopped (%llu requests served)", s.cfg.id,
                   (unsigned long long)s.requests);
    return rv == 0 ? 0 : (rv == FLR_EZK_EXPIRED ? 3 : 1);
}
