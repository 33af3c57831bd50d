/*
 * recover.c - the running job's operations: lost servers, recoveries, operator commands,
 * drills.
 *
 * A server is lost when its ephemeral node is gone (its session expired or it exited)
 * while shard records still name it the owner of ACTIVE shards.  Each lost server gets a
 * recovery, a small state machine whose state lives in /flr/<job>/recoveries/r_NNNNNNNNNN
 * so that a coordinator that takes over finishes what the last leader started:
 *
 *   (detect) bump /epoch -> E1, create the record            phase "fencing"
 *   fencing  every shard of the lost server: RECOVERING at E1 phase "placing"
 *            (workers stop sending to it and wait; a request that still reaches the old
 *            server carries an older epoch or finds its lease lapsed)
 *   placing  pick a live server that owns nothing (a STANDBY, or the replacement the
 *            launcher started); bump /epoch -> E2; record target and E2; shard records:
 *            owner = target, ACTIVE at E2                      phase "loading"
 *   loading  the target's STATUS shows every shard at E2       phase "done"
 *
 * Every step is idempotent: it writes only what is not yet written (shard records with
 * their znode version), so a new leader redoes the step it finds recorded.  Under
 * recovery = none the new owner opens the shards from their initialisers; the rows that
 * held trained values are counted as lost (dense rows exactly; sparse rows as last seen
 * in the lost server's STATUS).
 */
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/shardmap.h"
#include "common/transport.h"
#include "common/util.h"
#include "coord.h"

static const char *const rphase_names[] = {"fencing", "placing", "loading", "done"};

enum { OPS_TICK_MS = 100, OPS_LIST_MS = 500, OPS_ROWS_MS = 2000, OPS_STATUS_TIMEOUT_MS = 300 };

/* ---- events -------------------------------------------------------------------------------- */

void coord_event(struct coord *c, const char *kind, void *extra, const char *fmt, ...)
{
    json_t *ev = extra ? (json_t *)extra : json_object();
    char msg[512], path[FLR_PATH_MAX], id[48], *text;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* The log line's id is the event's kind: coord.server_lost, coord.job_running, ... */
    snprintf(id, sizeof(id), "coord.%s", kind);
    if (strcmp(kind, "server_lost") == 0 || strcmp(kind, "worker_lost") == 0 ||
        strcmp(kind, "command_rejected") == 0)
        flr_warn(id, "%s", msg);
    else
        flr_notice(id, "%s", msg);
    if (c->cur_request[0] && !json_object_get(ev, "request"))
        json_object_set_new(ev, "request", json_string(c->cur_request));
    json_object_set_new(ev, "at_ms", json_integer(flr_wall_ms()));
    json_object_set_new(ev, "kind", json_string(kind));
    json_object_set_new(ev, "message", json_string(msg));
    text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (!text)
        return;
    flr_job_path(path, sizeof(path), c->cfg.job, "/events/e_");
    if (flr_zk_create(c->zk, path, text, (int)strlen(text), FLR_ZK_SEQUENCE, NULL, 0) != 0)
        flr_warn("coord.event", "could not record the event in ZooKeeper");
    free(text);
}

/* ---- records -------------------------------------------------------------------------------- */

static json_t *jint_or_null(long long v)
{
    return v ? json_integer(v) : json_null();
}

static json_t *rec_json(const struct coord *c, const struct coord_recovery *r)
{
    long long detect = coord_recovery_detect_ms(r), recover = coord_recovery_recover_ms(r);
    json_t *shards = coord_shards_json(r->shards, r->nshards), *j;

    j = json_pack("{ss sI sI so ss ss so sI so so sI so so so so sI sI ss}", "id", r->id, "server",
                  (json_int_t)r->server, "incarnation", (json_int_t)r->incarnation, "shards",
                  shards, "mode", c->spec.recovery, "phase", rphase_names[r->phase], "killed_at_ms",
                  jint_or_null(r->killed_at_ms), "detected_at_ms", (json_int_t)r->detected_at_ms,
                  "launched_at_ms", jint_or_null(r->launched_at_ms), "serving_at_ms",
                  jint_or_null(r->serving_at_ms), "fenced_epoch", (json_int_t)r->fenced_epoch,
                  "target", r->target == FLR_NO_OWNER ? json_null() : json_integer(r->target),
                  "assigned_epoch", jint_or_null((long long)r->assigned_epoch), "detect_ms",
                  detect >= 0 ? json_integer(detect) : json_null(), "recover_ms",
                  recover >= 0 ? json_integer(recover) : json_null(), "rows_rebuilt",
                  (json_int_t)r->rows_rebuilt, "rows_lost", (json_int_t)r->rows_lost, "outcome",
                  r->outcome);
    if (j) {
        json_object_set_new(j, "target_incarnation",
                            json_integer((json_int_t)r->target_incarnation));
        json_object_set_new(j, "kind", json_string(r->drain ? "drain" : "loss"));
        if (r->request[0])
            json_object_set_new(j, "request", json_string(r->request));
    }
    return j;
}

static long long jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static int rec_parse(struct coord_recovery *r, const char *name, const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err), *sh, *t;
    const char *ph;

    memset(r, 0, sizeof(*r));
    if (!j)
        return FLR_EFORMAT;
    snprintf(r->id, sizeof(r->id), "%s", name);
    r->server = (uint32_t)jint(j, "server");
    r->incarnation = (uint64_t)jint(j, "incarnation");
    r->killed_at_ms = jint(j, "killed_at_ms");
    r->detected_at_ms = jint(j, "detected_at_ms");
    r->launched_at_ms = jint(j, "launched_at_ms");
    r->serving_at_ms = jint(j, "serving_at_ms");
    r->fenced_epoch = (uint64_t)jint(j, "fenced_epoch");
    r->assigned_epoch = (uint64_t)jint(j, "assigned_epoch");
    t = json_object_get(j, "target");
    r->target = json_is_integer(t) ? (uint32_t)json_integer_value(t) : FLR_NO_OWNER;
    r->target_incarnation = (uint64_t)jint(j, "target_incarnation");
    r->rows_rebuilt = jint(j, "rows_rebuilt");
    r->rows_lost = jint(j, "rows_lost");
    snprintf(r->request, sizeof(r->request), "%s",
             json_string_value(json_object_get(j, "request")) ?: "");
    r->drain = json_is_string(json_object_get(j, "kind")) &&
               strcmp(json_string_value(json_object_get(j, "kind")), "drain") == 0;
    snprintf(r->outcome, sizeof(r->outcome), "%s",
             json_string_value(json_object_get(j, "outcome")) ?: "");
    ph = json_string_value(json_object_get(j, "phase"));
    r->phase = RPH_DONE;
    for (int i = 0; ph && i <= RPH_DONE; i++)
        if (strcmp(ph, rphase_names[i]) == 0)
            r->phase = (enum coord_rphase)i;
    sh = json_object_get(j, "shards");
    r->nshards = (uint32_t)json_array_size(sh);
    if (r->nshards && !(r->shards = calloc(r->nshards, sizeof(*r->shards)))) {
        json_decref(j);
        return FLR_ENOMEM;
    }
    for (uint32_t i = 0; i < r->nshards; i++)
        r->shards[i] = (uint32_t)json_integer_value(json_array_get(sh, i));
    json_decref(j);
    return 0;
}

static int rec_save(struct coord *c, struct coord_recovery *r)
{
    char path[FLR_PATH_MAX + 40], *text;
    json_t *j = rec_json(c, r);
    int rv;

    if (!j || !(text = json_dumps(j, JSON_COMPACT))) {
        json_decref(j);
        return FLR_ENOMEM;
    }
    json_decref(j);
    flr_job_path(path, sizeof(path), c->cfg.job, "/recoveries/");
    strncat(path, r->id, sizeof(path) - strlen(path) - 1);
    rv = flr_zk_set(c->zk, path, text, (int)strlen(text), -1);
    free(text);
    if (rv != 0)
        flr_warn("coord.recovery", "%s: cannot record phase %s: %s", r->id, rphase_names[r->phase],
                 flr_strerror(rv));
    return rv;
}

/* Creates the record of a new recovery (its id is the node's name). */
static int rec_create(struct coord *c, struct coord_recovery *r)
{
    char path[FLR_PATH_MAX], created[FLR_PATH_MAX + 32], *text;
    json_t *j;
    int rv;

    snprintf(r->id, sizeof(r->id), "r_");
    if (!(j = rec_json(c, r)) || !(text = json_dumps(j, JSON_COMPACT))) {
        json_decref(j);
        return FLR_ENOMEM;
    }
    json_decref(j);
    flr_job_path(path, sizeof(path), c->cfg.job, "/recoveries/r_");
    rv = flr_zk_create(c->zk, path, text, (int)strlen(text), FLR_ZK_SEQUENCE, created,
                       sizeof(created));
    free(text);
    if (rv != 0)
        return rv;
    snprintf(r->id, sizeof(r->id), "%s", strrchr(created, '/') + 1);
    return rec_save(c, r); /* now with its id inside */
}

/* ---- epochs and shard records --------------------------------------------------------------- */

static int shard_load(struct coord *c, uint32_t s)
{
    char path[FLR_PATH_MAX], *data;
    int rv, len;

    flr_job_node(path, sizeof(path), c->cfg.job, "shards", s);
    if ((rv = flr_zk_get(c->zk, path, 0, &data, &len, &c->shardver[s], NULL)) != 0)
        return rv;
    rv = flr_shard_rec_from_json(&c->shardrec[s], data, (size_t)len);
    free(data);
    return rv;
}

/* Writes a shard record with the version we last saw.  If someone else changed it (no one
 * should: the leader is the only writer), reloads it and reports the conflict. */
static int shard_write(struct coord *c, uint32_t s, const struct flr_shard_rec *rec)
{
    char path[FLR_PATH_MAX], *json;
    int rv;

    if ((rv = flr_shard_rec_to_json(rec, &json)) != 0)
        return rv;
    flr_job_node(path, sizeof(path), c->cfg.job, "shards", s);
    rv = flr_zk_set(c->zk, path, json, (int)strlen(json), c->shardver[s]);
    free(json);
    if (rv == 0) {
        c->shardrec[s] = *rec;
        c->shardver[s]++;
    } else if (rv == FLR_EZK_BADVERSION) {
        flr_warn("coord.shard", "shard %u: record changed under us; re-reading it", s);
        (void)shard_load(c, s);
    }
    return rv;
}

/* ---- servers -------------------------------------------------------------------------------- */

static const struct flr_server_rec *server_rec(const struct coord *c, uint32_t id)
{
    for (int i = 0; i < c->nservers; i++)
        if (c->servers[i].id == id)
            return &c->servers[i];
    return NULL;
}

/* The last record seen of server id (it may be gone now). */
static const struct flr_server_rec *known_rec(const struct coord *c, uint32_t id)
{
    for (size_t i = 0; i < c->nknown; i++)
        if (c->known[i].id == id)
            return &c->known[i];
    return NULL;
}

static void known_put(struct coord *c, const struct flr_server_rec *r)
{
    struct flr_server_rec *v;

    for (size_t i = 0; i < c->nknown; i++)
        if (c->known[i].id == r->id) {
            c->known[i] = *r;
            return;
        }
    if (!(v = realloc(c->known, (c->nknown + 1) * sizeof(*v))))
        return;
    c->known = v;
    c->known[c->nknown++] = *r;
}

/* Re-lists the registered servers (leaving a child watch on /servers); reports servers
 * that left and servers that came. */
static int servers_refresh(struct coord *c)
{
    struct flr_server_rec *recs;
    int got, rv;

    if ((rv = coord_read_servers(c, 1, &recs, &got)) != 0)
        return rv;
    if (c->monitor_ready) {
        for (int i = 0; i < c->nservers; i++) {
            const struct flr_server_rec *old = &c->servers[i];
            int still = 0;
            for (int k = 0; k < got; k++)
                still |= recs[k].id == old->id && recs[k].incarnation == old->incarnation;
            if (!still)
                flr_info("coord.server_gone", "server %u (incarnation %llx) left", old->id,
                         (unsigned long long)old->incarnation);
        }
        for (int k = 0; k < got; k++) {
            int known = 0;
            for (int i = 0; i < c->nservers; i++)
                known |= recs[k].id == c->servers[i].id &&
                         recs[k].incarnation == c->servers[i].incarnation;
            if (!known)
                flr_info("coord.server_new", "server %u registered (%s, %s)", recs[k].id,
                         recs[k].endpoint, flr_server_state_name(recs[k].state));
        }
    }
    free(c->servers);
    c->servers = recs;
    c->nservers = got;
    for (int k = 0; k < got; k++)
        known_put(c, &recs[k]);
    return 0;
}

/*
 * A STATUS request to a server, kept in flight from one tick to the next: to a recovery's
 * target, and to every serving server for the rows its shards hold.  A server answers
 * requests on the thread that rebuilds its shards, so a synchronous poll during a rebuild
 * would block the coordinator's loop for its whole timeout on every tick, and time out;
 * so would a server that is stopped but not yet expired.  This one is answered once the
 * server is free; when the shards began serving comes in the answer (serving_since_ms), so
 * its delay does not count.
 */
struct coord_probe {
    struct flr_conn *conn;
    struct flr_call call;
    int busy;
    int done; /* set on nng's thread when the answer is in */
    uint64_t incarnation;
};

#define OPS_PROBE_TIMEOUT_MS 60000

static void probe_done(struct flr_call *call)
{
    struct coord_probe *p = call->arg;

    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
}

static void probe_free(struct coord_probe *p)
{
    if (!p)
        return;
    flr_call_cancel(&p->call);
    flr_call_fini(&p->call);
    if (p->call.reply)
        nng_msg_free(p->call.reply);
    flr_conn_close(p->conn);
    free(p);
}

/* Server t's STATUS, through the probe in *pp (made when NULL): 0 with *out once an answer
 * is in; FLR_ETIMEOUT while it is not (a request stays in flight, or with ask 0, none was
 * started); another error when t cannot be asked. */
static int probe_status(struct coord *c, struct coord_probe **pp, const struct flr_server_rec *t,
                        int ask, json_t **out)
{
    struct coord_probe *p = *pp;
    char why[128], *text;
    size_t len;
    nng_msg *req;
    int rv;

    *out = NULL;
    if (p && p->incarnation != t->incarnation) {
        probe_free(p);
        p = *pp = NULL;
    }
    if (!p) {
        if (!(p = calloc(1, sizeof(*p))))
            return FLR_ENOMEM;
        if ((rv = flr_call_init(&p->call)) != 0) {
            free(p);
            return rv;
        }
        if ((rv = flr_conn_open(&p->conn, t->endpoint, (size_t)64 << 20, why, sizeof(why))) != 0) {
            flr_call_fini(&p->call);
            free(p);
            return rv;
        }
        p->call.done = probe_done;
        p->call.arg = p;
        p->incarnation = t->incarnation;
        *pp = p;
    }
    if (p->busy) {
        if (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE))
            return FLR_ETIMEOUT;
        p->busy = 0;
        if ((rv = p->call.rv) == 0) {
            rv = flr_control_reply(p->call.reply, FLR_MSG_STATUS, &text, &len);
            nng_msg_free(p->call.reply);
            p->call.reply = NULL;
            if (rv == 0) {
                *out = json_loadb(text, len, 0, NULL);
                free(text);
                return *out ? 0 : FLR_EFORMAT;
            }
        }
        /* No answer, or a refusal: ask again below. */
    }
    if (!ask)
        return FLR_ETIMEOUT;
    if ((rv = flr_control_request(&req, c->cfg.job, FLR_MSG_STATUS, 0)) != 0)
        return rv;
    p->busy = 1;
    __atomic_store_n(&p->done, 0, __ATOMIC_RELEASE);
    flr_call_start(&p->call, p->conn, req, OPS_PROBE_TIMEOUT_MS, NULL);
    return FLR_ETIMEOUT;
}

/* Notes the rows each shard of a server holds (what a loss would lose). */
static void server_note_rows(struct coord *c, json_t *st)
{
    size_t i;
    json_t *sh;

    json_array_foreach(json_object_get(st, "shards"), i, sh)
    {
        long long s = jint(sh, "shard");
        if (s >= 0 && (uint32_t)s < c->spec.num_shards)
            c->shard_rows[s] = jint(sh, "rows");
    }
}

/*
 * The rows each serving server's shards hold, asked every OPS_ROWS_MS (start) and taken
 * as the answers come in, without waiting for them.  Probes of servers that no longer
 * serve are dropped.
 */
static void rows_poll(struct coord *c, int start)
{
    for (size_t id = 0; id < c->nrow_probes; id++) {
        const struct flr_server_rec *s = server_rec(c, (uint32_t)id);
        if (c->row_probes[id] && (!s || s->state != FLR_SERVER_SERVING)) {
            probe_free(c->row_probes[id]);
            c->row_probes[id] = NULL;
        }
    }
    for (int i = 0; i < c->nservers; i++) {
        const struct flr_server_rec *s = &c->servers[i];
        struct coord_probe *p;
        json_t *st;

        if (s->state != FLR_SERVER_SERVING)
            continue;
        if (s->id >= c->nrow_probes) {
            struct coord_probe **v = realloc(c->row_probes, (s->id + 1) * sizeof(*v));
            if (!v)
                continue;
            memset(v + c->nrow_probes, 0, (s->id + 1 - c->nrow_probes) * sizeof(*v));
            c->row_probes = v;
            c->nrow_probes = s->id + 1;
        }
        p = c->row_probes[s->id];
        if (!start && !(p && p->busy && p->incarnation == s->incarnation))
            continue; /* nothing in flight, and not time to ask */
        if (probe_status(c, &c->row_probes[s->id], s, start, &st) == 0) {
            server_note_rows(c, st);
            json_decref(st);
        }
    }
}

/* One more than the highest server id ever seen (a new server's id). */
static uint32_t next_server_id(const struct coord *c)
{
    uint32_t n = c->spec.num_servers + (uint32_t)c->cfg.standby;
    for (size_t i = 0; i < c->nknown; i++)
        if (c->known[i].id + 1 > n)
            n = c->known[i].id + 1;
    for (size_t i = 0; i < c->nrecs; i++)
        if (c->recs[i].launch_id > n)
            n = c->recs[i].launch_id;
    return n;
}

/* ---- recoveries ----------------------------------------------------------------------------- */

static struct coord_recovery *rec_active_for(struct coord *c, uint32_t server)
{
    for (size_t i = 0; i < c->nrecs; i++)
        if (c->recs[i].phase != RPH_DONE && c->recs[i].server == server)
            return &c->recs[i];
    return NULL;
}

/* Whether server id serves shards now. */
static int serves_shards(const struct coord *c, uint32_t id)
{
    for (uint32_t s = 0; s < c->spec.num_shards; s++)
        if (c->shardrec[s].owner == id && c->shardrec[s].state == FLR_SHARD_ACTIVE)
            return 1;
    return 0;
}

/* ... or is about to: the target of a recovery under way. */
static int server_owns_shards(const struct coord *c, uint32_t id)
{
    if (serves_shards(c, id))
        return 1;
    for (size_t i = 0; i < c->nrecs; i++)
        if (c->recs[i].phase != RPH_DONE && c->recs[i].target == id)
            return 1;
    return 0;
}

/* When a drill killed the server (its /kills node, written before the kill), or when the
 * local launcher saw it die; 0 when unknown. */
static int64_t killed_at(struct coord *c, uint32_t server, uint64_t incarnation)
{
    char path[FLR_PATH_MAX], *data;
    int64_t at = 0;
    int len;

    flr_job_node(path, sizeof(path), c->cfg.job, "kills", server);
    if (flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL) == 0) {
        json_error_t err;
        json_t *j = json_loads(data, 0, &err);
        if (j && (uint64_t)jint(j, "incarnation") == incarnation)
            at = jint(j, "at_ms");
        json_decref(j);
        free(data);
    }
    if (!at)
        at = c->launcher->died_at(c, server);
    return at;
}

static long long shard_dense_rows(const struct coord *c, uint32_t s)
{
    long long n = 0;
    for (uint32_t t = 0; t < c->spec.ntables; t++) {
        uint64_t lo, hi;
        if (c->spec.tables[t].kind != FLR_TABLE_DENSE)
            continue;
        flr_shard_dense_range(&c->spec, &c->spec.tables[t], s, &lo, &hi);
        n += (long long)(hi - lo);
    }
    return n;
}

static void shards_list(char *buf, size_t len, const uint32_t *v, uint32_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (uint32_t i = 0; i < n && k + 12 < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%u", i ? "," : "", v[i]);
}

void *coord_shards_json(const uint32_t *v, uint32_t n)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static int rec_start(struct coord *c, uint32_t server, int drain)
{
    const struct flr_server_rec *last = NULL;
    struct coord_recovery r = {0}, *v;
    uint32_t n = 0;
    int rv;

    for (uint32_t s = 0; s < c->spec.num_shards; s++)
        n += c->shardrec[s].owner == server && c->shardrec[s].state == FLR_SHARD_ACTIVE;
    if (!n || !(r.shards = calloc(n, sizeof(*r.shards))))
        return n ? FLR_ENOMEM : 0;
    for (uint32_t s = 0; s < c->spec.num_shards; s++)
        if (c->shardrec[s].owner == server && c->shardrec[s].state == FLR_SHARD_ACTIVE)
            r.shards[r.nshards++] = s;
    r.server = server;
    r.drain = drain;
    snprintf(r.request, sizeof(r.request), "%s", c->cur_request);
    r.target = FLR_NO_OWNER;
    r.phase = RPH_FENCING;
    r.detected_at_ms = flr_wall_ms();
    /* Its last record tells the incarnation that was lost. */
    last = known_rec(c, server);
    r.incarnation = last ? last->incarnation : 0;
    /* Recovery none: every row of the shards starts again from its initialiser.  The last
     * STATUS of the lost server says how many rows it held (sparse rows included);
     * without one, the dense rows are certain.  Under flr the rebuild counts what it could
     * not restore. */
    for (uint32_t i = 0; i < r.nshards && !drain && !coord_flr(c); i++) {
        long long rows = c->shard_rows[r.shards[i]], dense = shard_dense_rows(c, r.shards[i]);
        r.rows_lost += rows > dense ? rows : dense;
    }
    r.killed_at_ms = drain ? 0 : killed_at(c, server, r.incarnation);
    if ((rv = coord_bump_epoch(c, &r.fenced_epoch)) != 0 || (rv = rec_create(c, &r)) != 0) {
        free(r.shards);
        return rv;
    }
    if (!(v = realloc(c->recs, (c->nrecs + 1) * sizeof(*v)))) {
        free(r.shards);
        return FLR_ENOMEM;
    }
    c->recs = v;
    c->recs[c->nrecs++] = r;
    return 0;
}

static int rec_fence(struct coord *c, struct coord_recovery *r)
{
    char list[256];
    json_t *ex;
    int rv;

    for (uint32_t i = 0; i < r->nshards; i++) {
        uint32_t s = r->shards[i];
        struct flr_shard_rec rec = c->shardrec[s];
        if (rec.epoch >= r->fenced_epoch)
            continue; /* done before a takeover */
        rec.state = FLR_SHARD_RECOVERING;
        rec.epoch = r->fenced_epoch;
        if ((rv = shard_write(c, s, &rec)) != 0)
            return rv;
    }
    r->phase = RPH_PLACING;
    if ((rv = rec_save(c, r)) != 0)
        return rv;
    shards_list(list, sizeof(list), r->shards, r->nshards);
    ex = json_pack("{sI so ss sI}", "server", (json_int_t)r->server, "shards",
                   coord_shards_json(r->shards, r->nshards), "recovery", r->id, "epoch",
                   (json_int_t)r->fenced_epoch);
    if (r->drain) {
        if (r->request[0])
            json_object_set_new(ex, "request", json_string(r->request));
        coord_event(c, "drain_started", ex,
                    "draining server %u: shards %s frozen at epoch %llu, to be copied to "
                    "another server",
                    r->server, list, (unsigned long long)r->fenced_epoch);
        return 0;
    }
    coord_event(c, "server_lost", ex, "server %u lost (%s); shards %s RECOVERING at epoch %llu",
                r->server, r->killed_at_ms ? "killed" : "session gone", list,
                (unsigned long long)r->fenced_epoch);
    return 0;
}

/* A live server that owns nothing and is not the lost incarnation: a STANDBY first, then
 * the lowest id. */
static const struct flr_server_rec *rec_pick(struct coord *c, const struct coord_recovery *r)
{
    const struct flr_server_rec *best = NULL;

    for (int i = 0; i < c->nservers; i++) {
        const struct flr_server_rec *s = &c->servers[i];
        if (s->id == r->server && (r->drain || s->incarnation == r->incarnation))
            continue;
        if (server_owns_shards(c, s->id))
            continue;
        if (!best || (s->state == FLR_SERVER_STANDBY && best->state != FLR_SERVER_STANDBY))
            best = s;
    }
    return best;
}

/*
 * Writes the shard records that give a recovery's shards to its target, all in one
 * ZooKeeper multi: the target sees its shards assigned together, so it rebuilds them
 * together rather than the first it sees alone.  Shards already at the assigned epoch are
 * left as they are (a takeover redoing the step).
 */
static int rec_assign(struct coord *c, struct coord_recovery *r, int *more)
{
    struct flr_zk_write w[64];
    struct flr_shard_rec recs[64];
    char paths[64][FLR_PATH_MAX], *json[64];
    uint32_t idx[64];
    int n = 0, rv = 0;

    *more = 0;
    for (uint32_t i = 0; i < r->nshards; i++) {
        uint32_t s = r->shards[i];
        struct flr_shard_rec rec = c->shardrec[s];
        if (rec.epoch >= r->assigned_epoch)
            continue;
        rec.owner = r->target;
        rec.epoch = r->assigned_epoch;
        rec.state = FLR_SHARD_ACTIVE;
        rec.from1 = r->drain ? r->server + 1 : 0;
        rec.rebuild = !r->drain && coord_flr(c);
        if (n == 64) {
            /* More than one multi takes: this batch now, the rest on the next tick. */
            *more = 1;
            break;
        }
        if ((rv = flr_shard_rec_to_json(&rec, &json[n])) != 0)
            goto out;
        flr_job_node(paths[n], sizeof(paths[n]), c->cfg.job, "shards", s);
        w[n] = (struct flr_zk_write){paths[n], json[n], (int)strlen(json[n]), c->shardver[s]};
        recs[n] = rec;
        idx[n++] = s;
    }
    if (n == 0)
        return 0;
    if ((rv = flr_zk_set_many(c->zk, w, n)) == 0) {
        for (int k = 0; k < n; k++) {
            c->shardrec[idx[k]] = recs[k];
            c->shardver[idx[k]]++;
        }
    } else if (rv == FLR_EZK_BADVERSION) {
        flr_warn("coord.shard", "%s: a shard record changed under us; re-reading them", r->id);
        for (int k = 0; k < n; k++)
            (void)shard_load(c, idx[k]);
    }
out:
    while (n-- > 0)
        free(json[n]);
    return rv;
}

static int rec_place(struct coord *c, struct coord_recovery *r)
{
    const struct flr_server_rec *t = NULL;
    char why[256], list[256];
    int rv;

    if (r->target != FLR_NO_OWNER) {
        /* Placed before a takeover: keep that target if it still lives. */
        t = server_rec(c, r->target);
        if (!t || t->incarnation != r->target_incarnation) {
            r->target = FLR_NO_OWNER;
            r->assigned_epoch = 0;
            t = NULL;
        }
    }
    if (!t && !(t = rec_pick(c, r))) {
        int64_t now = flr_wall_ms();
        if (c->launcher == &coord_launcher_local &&
            (!r->launched_at_ms || now - r->launched_at_ms > c->cfg.recover_timeout_ms)) {
            /* A lost server is replaced under its own id; a drained one lives on, so the
             * server taking its shards gets a new id. */
            if (!r->launch_id)
                r->launch_id = r->drain ? next_server_id(c) + 1 : r->server + 1;
            if ((rv = c->launcher->start(c, r->launch_id - 1, why, sizeof(why))) != 0) {
                flr_err("coord.launch", "server %u: %s", r->launch_id - 1, why);
                return 0; /* tried again at the timeout */
            }
            r->launched_at_ms = now;
            (void)rec_save(c, r);
            coord_event(
                c, "server_launched",
                json_pack("{sI ss}", "server", (json_int_t)(r->launch_id - 1), "recovery", r->id),
                "server %u: process started to take the shards of server %u", r->launch_id - 1,
                r->server);
        } else if (c->launcher != &coord_launcher_local && !r->launched_at_ms) {
            r->launched_at_ms = now; /* when we began to wait */
            flr_notice("coord.wait_server",
                       "%s: waiting for a new or standby server to take shards of "
                       "server %u",
                       r->id, r->server);
        }
        return 0;
    }
    if (!r->assigned_epoch) {
        r->target = t->id;
        r->target_incarnation = t->incarnation;
        if ((rv = coord_bump_epoch(c, &r->assigned_epoch)) != 0 || (rv = rec_save(c, r)) != 0)
            return rv;
    }
    int more;
    if ((rv = rec_assign(c, r, &more)) != 0 || more)
        return rv;
    r->phase = RPH_LOADING;
    if ((rv = rec_save(c, r)) != 0)
        return rv;
    shards_list(list, sizeof(list), r->shards, r->nshards);
    coord_event(c, "shards_assigned",
                json_pack("{sI sI so ss sI}", "server", (json_int_t)r->server, "target",
                          (json_int_t)r->target, "shards", coord_shards_json(r->shards, r->nshards),
                          "recovery", r->id, "epoch", (json_int_t)r->assigned_epoch),
                "shards %s of server %u assigned to server %u at epoch %llu", list, r->server,
                r->target, (unsigned long long)r->assigned_epoch);
    return 0;
}

static int rec_load(struct coord *c, struct coord_recovery *r)
{
    const struct flr_server_rec *t = server_rec(c, r->target);
    json_t *st = NULL, *sh;
    uint32_t ready = 0;
    size_t i;
    int rv;

    if (!t || t->incarnation != r->target_incarnation) {
        /* The replacement died too: its shards are ACTIVE under a lost owner, which the
         * next detection turns into a recovery of its own. */
        snprintf(r->outcome, sizeof(r->outcome), "replacement server %u lost", r->target);
        probe_free(r->probe);
        r->probe = NULL;
        r->phase = RPH_DONE;
        return rec_save(c, r);
    }
    if (r->drain && !server_rec(c, r->server)) {
        /* The drained server died before its shards were copied: a loss after all. */
        for (uint32_t k = 0; k < r->nshards; k++) {
            struct flr_shard_rec rec = c->shardrec[r->shards[k]];
            long long rows = c->shard_rows[r->shards[k]];
            long long dense = shard_dense_rows(c, r->shards[k]);
            if (!coord_flr(c))
                r->rows_lost += rows > dense ? rows : dense;
            rec.from1 = 0;
            rec.rebuild = coord_flr(c);
            if ((rv = shard_write(c, r->shards[k], &rec)) != 0)
                return rv;
        }
        r->drain = 0;
        coord_event(c, "server_lost",
                    json_pack("{sI ss}", "server", (json_int_t)r->server, "recovery", r->id),
                    "server %u died while being drained; its shards %s on server %u", r->server,
                    coord_flr(c) ? "are rebuilt from the workers" : "start again", r->target);
        return rec_save(c, r);
    }
    if (probe_status(c, &r->probe, t, 1, &st) != 0)
        return 0; /* not answering yet */
    long long rebuilt = 0, lost = 0;
    int64_t since = 0;
    json_array_foreach(json_object_get(st, "shards"), i, sh)
    {
        for (uint32_t k = 0; k < r->nshards; k++)
            if (jint(sh, "shard") == (long long)r->shards[k] &&
                (uint64_t)jint(sh, "epoch") == r->assigned_epoch) {
                json_t *rb = json_object_get(sh, "rebuild");
                if (jint(sh, "serving_since_ms") > since)
                    since = jint(sh, "serving_since_ms");
                ready++;
                rebuilt += jint(rb, "rows_rebuilt") + jint(rb, "rows_from_log");
                lost += jint(rb, "rows_lost");
            }
    }
    server_note_rows(c, st);
    json_decref(st);
    if (ready < r->nshards)
        return 0; /* the next tick asks again, on the same connection */
    probe_free(r->probe);
    r->probe = NULL;
    /* The server says when the last shard began serving; the answer may come much later
     * (it serves the requests queued during a rebuild first).  Its clock is trusted only
     * between the detection and now. */
    r->serving_at_ms = flr_wall_ms();
    if (since > r->detected_at_ms && since < r->serving_at_ms)
        r->serving_at_ms = since;
    if (r->drain) {
        /* Copied and serving: the old server may let the shards go, then it stops. */
        const struct flr_server_rec *d = server_rec(c, r->server);
        for (uint32_t k = 0; k < r->nshards; k++) {
            struct flr_shard_rec rec = c->shardrec[r->shards[k]];
            r->rows_rebuilt += c->shard_rows[r->shards[k]];
            rec.from1 = 0;
            if ((rv = shard_write(c, r->shards[k], &rec)) != 0)
                return rv;
        }
        r->phase = RPH_DONE;
        if ((rv = rec_save(c, r)) != 0)
            return rv;
        if (d)
            (void)flr_shutdown_send(d->endpoint, c->cfg.job, 0, OPS_STATUS_TIMEOUT_MS * 3);
        coord_event(c, "server_drained",
                    json_pack("{sI sI ss sI}", "server", (json_int_t)r->server, "target",
                              (json_int_t)r->target, "recovery", r->id, "rows",
                              (json_int_t)r->rows_rebuilt),
                    "server %u drained: its shards serve on server %u (%lld rows copied in "
                    "%lld ms); it was asked to stop",
                    r->server, r->target, r->rows_rebuilt,
                    (long long)(r->serving_at_ms - r->detected_at_ms));
        return 0;
    }
    if (coord_flr(c)) {
        /* Rebuilt: the numbers are the new owner's; the flag has done its work. */
        r->rows_rebuilt = rebuilt;
        r->rows_lost = lost;
        for (uint32_t k = 0; k < r->nshards; k++) {
            struct flr_shard_rec rec = c->shardrec[r->shards[k]];
            rec.rebuild = 0;
            if ((rv = shard_write(c, r->shards[k], &rec)) != 0)
                return rv;
        }
    }
    r->phase = RPH_DONE;
    if ((rv = rec_save(c, r)) != 0)
        return rv;
    {
        json_t *ex = rec_json(c, r);
        json_object_set_new(ex, "recovery", json_string(r->id));
        json_object_del(ex, "id");
        coord_event(c, "server_recovered", ex,
                    "server %u recovered on server %u: detect %lld ms, recover %lld ms, "
                    "%lld rows rebuilt, %lld rows lost (recovery %s)",
                    r->server, r->target, coord_recovery_detect_ms(r), coord_recovery_recover_ms(r),
                    r->rows_rebuilt, r->rows_lost, c->spec.recovery);
    }
    return 0;
}

static int rec_advance(struct coord *c, struct coord_recovery *r)
{
    switch (r->phase) {
    case RPH_FENCING:
        return rec_fence(c, r);
    case RPH_PLACING:
        return rec_place(c, r);
    case RPH_LOADING:
        return rec_load(c, r);
    default:
        return 0;
    }
}

/* ---- operator commands and drills ---------------------------------------------------------- */

/* Kills server `id` for a drill or an operator: records when (so that the recovery can
 * tell the detection time), then SIGKILL through the launcher. */
static int ops_kill(struct coord *c, uint32_t id, const char *by, char *why, size_t whylen)
{
    const struct flr_server_rec *srv = server_rec(c, id);
    char path[FLR_PATH_MAX], data[128];
    int64_t at = flr_wall_ms();
    int rv;

    if (!srv) {
        flr_why(why, whylen, "server %u is not registered in job %s", id, c->cfg.job);
        return FLR_ENOT_FOUND;
    }
    snprintf(data, sizeof(data), "{\"at_ms\":%lld,\"incarnation\":%llu,\"by\":\"%s\"}",
             (long long)at, (unsigned long long)srv->incarnation, by);
    flr_job_node(path, sizeof(path), c->cfg.job, "kills", id);
    rv = flr_zk_set(c->zk, path, data, (int)strlen(data), -1);
    if (rv == FLR_EZK_NONODE)
        rv = flr_zk_create(c->zk, path, data, (int)strlen(data), 0, NULL, 0);
    if (rv != 0) {
        flr_why(why, whylen, "cannot record the kill: %s", flr_strerror(rv));
        return rv;
    }
    if ((rv = c->launcher->kill(c, id, srv->pid, srv->host, why, whylen)) != 0)
        return rv;
    coord_event(c, "server_killed", json_pack("{sI ss}", "server", (json_int_t)id, "by", by),
                "server %u (process %d) killed with SIGKILL by %s", id, (int)srv->pid, by);
    return 0;
}

/* Moves every shard of a live server to another one, copying their state, then stops it. */
static int ops_drain(struct coord *c, uint32_t id, char *why, size_t whylen)
{
    int rv;

    if (!server_rec(c, id)) {
        flr_why(why, whylen, "server %u is not registered in job %s", id, c->cfg.job);
        return FLR_ENOT_FOUND;
    }
    if (rec_active_for(c, id)) {
        flr_why(why, whylen, "server %u is already being recovered or drained", id);
        return FLR_EINVAL;
    }
    if (!serves_shards(c, id)) {
        /* Nothing to move: a standby just stops. */
        (void)flr_shutdown_send(server_rec(c, id)->endpoint, c->cfg.job, 0,
                                OPS_STATUS_TIMEOUT_MS * 3);
        coord_event(c, "server_drained", json_pack("{sI}", "server", (json_int_t)id),
                    "server %u owned no shards; it was asked to stop", id);
        return 0;
    }
    if ((rv = rec_start(c, id, 1)) != 0)
        flr_why(why, whylen, "cannot start the drain: %s", flr_strerror(rv));
    return rv;
}

/* Runs the operator commands queued under /flr/<job>/requests, oldest first. */
static void ops_requests(struct coord *c)
{
    char dir[FLR_PATH_MAX], path[2 * FLR_PATH_MAX], **names = NULL, *data, why[256];
    int n = 0, len;

    flr_job_path(dir, sizeof(dir), c->cfg.job, "/requests");
    if (flr_zk_children(c->zk, dir, 1, &names, &n) != 0)
        return;
    for (int i = 0; i < n; i++) {
        json_error_t err;
        json_t *j;
        const char *action;
        json_t *srv;
        int rv = FLR_EINVAL;

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL) != 0)
            continue;
        snprintf(c->cur_request, sizeof(c->cur_request), "%s", names[i]);
        j = json_loads(data, 0, &err);
        free(data);
        action = j ? json_string_value(json_object_get(j, "action")) : NULL;
        srv = j ? json_object_get(j, "server") : NULL;
        if (!action || !json_is_integer(srv) || json_integer_value(srv) < 0) {
            snprintf(why, sizeof(why), "request %s is not {\"action\":..., \"server\":N}",
                     names[i]);
        } else if (strcmp(action, "kill") == 0) {
            rv = ops_kill(c, (uint32_t)json_integer_value(srv), "operator", why, sizeof(why));
        } else if (strcmp(action, "drain") == 0) {
            rv = ops_drain(c, (uint32_t)json_integer_value(srv), why, sizeof(why));
        } else {
            snprintf(why, sizeof(why), "unknown action '%s' (known: kill, drain)", action);
        }
        if (rv != 0)
            coord_event(c, "command_rejected", json_pack("{ss}", "request", names[i]),
                        "command %s rejected: %s", names[i], why);
        json_decref(j);
        c->cur_request[0] = 0;
        (void)flr_zk_delete(c->zk, path, -1);
    }
    flr_zk_free_names(names, n);
}

/* The fraction of the training the slowest live worker has done, from the progress in
 * the workers' nodes; -1 when no worker reports it yet. */
static double ops_progress(struct coord *c)
{
    char dir[FLR_PATH_MAX], path[2 * FLR_PATH_MAX], **names = NULL, *data;
    double lo = -1;
    int n = 0, len;

    flr_job_path(dir, sizeof(dir), c->cfg.job, "/workers");
    if (flr_zk_children(c->zk, dir, 0, &names, &n) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        json_error_t err;
        json_t *j;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL) != 0)
            continue;
        if ((j = json_loads(data, 0, &err)) != NULL) {
            long long clock = jint(j, "clock"), total = jint(j, "clocks_total");
            if (total > 0) {
                double f = (double)clock / (double)total;
                if (lo < 0 || f < lo)
                    lo = f;
            }
            json_decref(j);
        }
        free(data);
    }
    flr_zk_free_names(names, n);
    return lo;
}

/* --kills N: kill a serving server at 1/(N+1), 2/(N+1), ... of the training, one at a
 * time (the next once the last recovery is done). */
static void ops_drill(struct coord *c)
{
    char why[256];
    double p;
    uint32_t owners[64], nown = 0;

    if (c->kills_done >= c->cfg.kills)
        return;
    for (size_t i = 0; i < c->nrecs; i++)
        if (c->recs[i].phase != RPH_DONE)
            return;
    if ((p = ops_progress(c)) < 0 || p < (double)(c->kills_done + 1) / (double)(c->cfg.kills + 1))
        return;
    for (int i = 0; i < c->nservers && nown < 64; i++)
        if (serves_shards(c, c->servers[i].id))
            owners[nown++] = c->servers[i].id;
    if (!nown)
        return;
    {
        uint32_t victim = owners[c->kills_done % nown];
        c->kills_done++;
        if (ops_kill(c, victim, "drill", why, sizeof(why)) != 0)
            flr_err("coord.drill", "cannot kill server %u: %s", victim, why);
    }
}

/* ---- the loop ------------------------------------------------------------------------------ */

int coord_launch_servers(struct coord *c, char *why, size_t whylen)
{
    uint32_t n = c->spec.num_servers + (uint32_t)c->cfg.standby;
    int rv;

    if (c->launcher != &coord_launcher_local)
        return 0;
    for (uint32_t id = 0; id < n; id++)
        if ((rv = c->launcher->start(c, id, why, whylen)) != 0)
            return rv;
    return 0;
}

int coord_ops_begin(struct coord *c, char *why, size_t whylen)
{
    char dir[FLR_PATH_MAX], path[2 * FLR_PATH_MAX], **names = NULL, *data;
    int rv, n = 0, len;
    uint32_t S = c->spec.num_shards;

    if (c->monitor_ready)
        return 0;
    if (!(c->shardrec = calloc(S, sizeof(*c->shardrec))) ||
        !(c->shardver = calloc(S, sizeof(*c->shardver))) ||
        !(c->shard_rows = calloc(S, sizeof(*c->shard_rows))))
        return FLR_ENOMEM;
    for (uint32_t s = 0; s < S; s++)
        if ((rv = shard_load(c, s)) != 0) {
            flr_why(why, whylen, "cannot read shard %u: %s", s, flr_strerror(rv));
            return rv;
        }
    /* Directories of jobs created by older coordinators. */
    static const char *const dirs[] = {"/recoveries", "/requests", "/kills", "/events"};
    for (size_t i = 0; i < FLR_ARRAY_LEN(dirs); i++) {
        flr_job_path(dir, sizeof(dir), c->cfg.job, dirs[i]);
        rv = flr_zk_create(c->zk, dir, "", 0, 0, NULL, 0);
        if (rv != 0 && rv != FLR_EZK_EXISTS) {
            flr_why(why, whylen, "cannot create %s: %s", dir, flr_strerror(rv));
            return rv;
        }
    }
    /* Recoveries the last leader did not finish. */
    flr_job_path(dir, sizeof(dir), c->cfg.job, "/recoveries");
    if ((rv = flr_zk_children(c->zk, dir, 0, &names, &n)) != 0) {
        flr_why(why, whylen, "cannot list recoveries: %s", flr_strerror(rv));
        return rv;
    }
    for (int i = 0; i < n; i++) {
        struct coord_recovery r, *v;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL) != 0)
            continue;
        rv = rec_parse(&r, names[i], data);
        free(data);
        if (rv != 0 || !(v = realloc(c->recs, (c->nrecs + 1) * sizeof(*v)))) {
            free(r.shards);
            continue;
        }
        c->recs = v;
        c->recs[c->nrecs++] = r;
        if (r.phase != RPH_DONE)
            flr_notice("coord.resume_recovery",
                       "%s: continuing the recovery of server %u from "
                       "phase %s",
                       r.id, r.server, rphase_names[r.phase]);
    }
    flr_zk_free_names(names, n);
    if ((rv = servers_refresh(c)) != 0) {
        flr_why(why, whylen, "cannot list servers: %s", flr_strerror(rv));
        return rv;
    }
    c->monitor_ready = 1;
    return 0;
}

int coord_ops_step(struct coord *c, char *why, size_t whylen)
{
    int64_t now = flr_now_ms();
    struct flr_zk_event ev;
    int relist = now - c->last_list_ms >= OPS_LIST_MS, rv;
    char servers[FLR_PATH_MAX], requests[FLR_PATH_MAX];

    if ((rv = coord_ops_begin(c, why, whylen)) != 0)
        return rv;
    c->launcher->poll(c);
    /* A server registered or left, or an operator queued a command: at once. */
    flr_job_path(servers, sizeof(servers), c->cfg.job, "/servers");
    flr_job_path(requests, sizeof(requests), c->cfg.job, "/requests");
    while (flr_zk_next_event(c->zk, &ev, 0) == 0)
        if (ev.kind == FLR_ZK_EV_CONNECTED || strcmp(ev.path, servers) == 0 ||
            strcmp(ev.path, requests) == 0)
            relist = 1;
    if (relist) {
        c->last_list_ms = now;
        if ((rv = servers_refresh(c)) != 0) {
            flr_why(why, whylen, "cannot list servers: %s", flr_strerror(rv));
            return rv == FLR_EZK_EXPIRED ? rv : 0;
        }
        ops_requests(c);
        ops_drill(c);
    }
    /* Lost owners: ACTIVE shards whose owner is not registered. */
    for (uint32_t s = 0; s < c->spec.num_shards; s++) {
        const struct flr_shard_rec *r = &c->shardrec[s];
        if (r->state != FLR_SHARD_ACTIVE || r->owner == FLR_NO_OWNER || server_rec(c, r->owner) ||
            rec_active_for(c, r->owner))
            continue;
        if ((rv = rec_start(c, r->owner, 0)) != 0)
            flr_warn("coord.recovery", "server %u lost, but the recovery could not start: %s",
                     r->owner, flr_strerror(rv));
    }
    for (size_t i = 0; i < c->nrecs; i++) {
        enum coord_rphase before;
        do {
            before = c->recs[i].phase;
            if ((rv = rec_advance(c, &c->recs[i])) != 0) {
                flr_warn("coord.recovery", "%s: phase %s: %s", c->recs[i].id,
                         rphase_names[c->recs[i].phase], flr_strerror(rv));
                break;
            }
        } while (c->recs[i].phase != before && c->recs[i].phase != RPH_DONE);
    }
    if (now - c->last_poll_ms >= OPS_ROWS_MS)
        c->last_poll_ms = now;
    rows_poll(c, c->last_poll_ms == now);
    return flr_zk_expired(c->zk) ? FLR_EZK_EXPIRED : 0;
}

void coord_ops_end(struct coord *c)
{
    for (size_t i = 0; i < c->nrecs; i++) {
        free(c->recs[i].shards);
        probe_free(c->recs[i].probe);
    }
    for (size_t id = 0; id < c->nrow_probes; id++)
        probe_free(c->row_probes[id]);
    free(c->row_probes);
    c->row_probes = NULL;
    c->nrow_probes = 0;
    free(c->recs);
    free(c->shardrec);
    free(c->shardver);
    free(c->shard_rows);
    free(c->servers);
    free(c->known);
    free(c->children);
    c->recs = NULL;
    c->nrecs = 0;
    c->shardrec = NULL;
    c->shardver = NULL;
    c->shard_rows = NULL;
    c->servers = NULL;
    c->known = NULL;
    c->children = NULL;
}
