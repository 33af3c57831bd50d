/*
 * status.c - the status document of a job (see status.h), read from ZooKeeper and from
 * the servers' STATUS replies.
 *
 * A collection reads every part of /flr/<job> once, without watches: it is a snapshot
 * taken about once a second by the coordinator's status thread, or once by flrctl.  The
 * servers are asked for their counters in parallel, so that one server that does not
 * answer costs FLR_STATUS_PROBE_MS, not that times the number of servers.
 *
 * Records written by other modules (events, recoveries, operator requests, shard and
 * server records) are passed through whole, so that a field another module adds shows
 * up without a change here; the fields the document promises are added or filled in.
 */
#include "status.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/proto.h"
#include "common/transport.h"
#include "common/util.h"

#define ST_MAX_MSG    (16u << 20) /* largest STATUS reply accepted */
#define ST_MAX_IDS    100000      /* bound on worker ids looked at */
#define ST_SERVER_MAX 1000000     /* largest server id (flr-server --id) */

struct st_ctx {
    struct flr_zk *zk;
    const char *job;
    char base[FLR_PATH_MAX];
    int nomem; /* an allocation failed somewhere: the collection fails with FLR_ENOMEM */
    char *why;
    size_t whylen;
};

/* --- small JSON helpers ---------------------------------------------------------------- */

/* Sets key to val (taking it); remembers a failed allocation. */
static void st_set(struct st_ctx *x, json_t *obj, const char *key, json_t *val)
{
    if (!val || json_object_set_new(obj, key, val) != 0)
        x->nomem = 1;
}

static void st_append(struct st_ctx *x, json_t *arr, json_t *val)
{
    if (!val || json_array_append_new(arr, val) != 0)
        x->nomem = 1;
}

/* Copies src[skey] to dst[dkey], or null when src lacks it. */
/* Gives obj every member named in the NULL-terminated list, null where it has none: a
 * record copied as it is keeps a fixed shape in the document. */
static void st_require(struct st_ctx *x, json_t *obj, const char *const *names)
{
    for (; *names; names++)
        if (!json_object_get(obj, *names))
            st_set(x, obj, *names, json_null());
}

static const char *const server_fields[] = {"endpoint", "state", "incarnation",
                                            "pid",      "host",  NULL};
static const char *const shard_fields[] = {"owner", "epoch", NULL};

static void st_copy(struct st_ctx *x, json_t *dst, const char *dkey, const json_t *src,
                    const char *skey)
{
    json_t *v = src ? json_object_get(src, skey) : NULL;
    st_set(x, dst, dkey, v ? json_incref(v) : json_null());
}

/* An integer value, or def when v is not a number. */
static json_int_t st_int(const json_t *v, json_int_t def)
{
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (json_int_t)json_real_value(v);
    return def;
}

/* Parses data as JSON; NULL when empty or not JSON. */
static json_t *st_parse(const char *data, int len)
{
    if (!data || len <= 0)
        return NULL;
    return json_loadb(data, (size_t)len, 0, NULL);
}

/* --- ZooKeeper reads ------------------------------------------------------------------- */

/* Reads base+suffix; *data is NULL when the node does not exist. */
static int st_get(struct st_ctx *x, const char *suffix, char **data, int *len)
{
    char path[2 * FLR_PATH_MAX];
    int rv;

    *data = NULL;
    *len = 0;
    snprintf(path, sizeof(path), "%s%s", x->base, suffix);
    rv = flr_zk_get(x->zk, path, 0, data, len, NULL, NULL);
    if (rv == FLR_EZK_NONODE) {
        *data = NULL;
        return 0;
    }
    if (rv != 0)
        flr_why(x->why, x->whylen, "reading %s: %s", path, flr_strerror(rv));
    return rv;
}

/* Reads base+suffix as JSON: *out is NULL when absent, empty or not JSON.  *present tells
 * whether the node exists (may be NULL). */
static int st_get_json(struct st_ctx *x, const char *suffix, json_t **out, int *present)
{
    char *data;
    int len, rv;

    *out = NULL;
    if ((rv = st_get(x, suffix, &data, &len)) != 0)
        return rv;
    if (present)
        *present = data != NULL;
    *out = st_parse(data, len);
    free(data);
    return 0;
}

/* Lists base+suffix's children (sorted by name); none when the node does not exist. */
static int st_children(struct st_ctx *x, const char *suffix, char ***names, int *n)
{
    char path[2 * FLR_PATH_MAX];
    int rv;

    *names = NULL;
    *n = 0;
    snprintf(path, sizeof(path), "%s%s", x->base, suffix);
    rv = flr_zk_children(x->zk, path, 0, names, n);
    if (rv == FLR_EZK_NONODE) {
        *names = NULL;
        *n = 0;
        return 0;
    }
    if (rv != 0)
        flr_why(x->why, x->whylen, "listing %s: %s", path, flr_strerror(rv));
    return rv;
}

/* True when name is all decimal digits (a server, worker or shard node). */
static int st_numeric(const char *name, unsigned long *v)
{
    char *end;

    if (!isdigit((unsigned char)name[0]) || strlen(name) > 9)
        return 0;
    *v = strtoul(name, &end, 10);
    return *end == '\0';
}

static int st_cmp_ulong(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

/* The numeric children of base+suffix, sorted by value.  *ids is malloc'd. */
static int st_numeric_children(struct st_ctx *x, const char *suffix, unsigned long **ids, int *n)
{
    char **names;
    int nn, rv, k = 0;

    *ids = NULL;
    *n = 0;
    if ((rv = st_children(x, suffix, &names, &nn)) != 0)
        return rv;
    if (nn > 0 && !(*ids = malloc((size_t)nn * sizeof(**ids)))) {
        flr_zk_free_names(names, nn);
        flr_why(x->why, x->whylen, "out of memory");
        return FLR_ENOMEM;
    }
    for (int i = 0; i < nn; i++)
        if (st_numeric(names[i], &(*ids)[k]))
            k++;
    flr_zk_free_names(names, nn);
    qsort(*ids, (size_t)k, sizeof(**ids), st_cmp_ulong);
    *n = k;
    return 0;
}

/* Reads the children of base+suffix named prefix* (sequential nodes, so name order is
 * creation order), keeping the newest keep of them as JSON objects with "id" set to the
 * node name.  *total is how many there are; fn, when given, sees every one of them. */
static int st_sequential(struct st_ctx *x, const char *suffix, const char *prefix, int keep,
                         json_t *out, int *total, void (*fn)(void *, const json_t *), void *arg)
{
    char **names, sub[FLR_PATH_MAX];
    int nn, rv, first, count = 0;
    size_t plen = strlen(prefix);

    if ((rv = st_children(x, suffix, &names, &nn)) != 0)
        return rv;
    for (int i = 0; i < nn; i++)
        if (strncmp(names[i], prefix, plen) == 0)
            count++;
    *total = count;
    first = count - keep; /* index among matching names of the first one kept */
    for (int i = 0, m = 0; i < nn && rv == 0; i++) {
        json_t *o;
        if (strncmp(names[i], prefix, plen) != 0)
            continue;
        if (m++ < first && !fn)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", suffix, names[i]);
        if ((rv = st_get_json(x, sub, &o, NULL)) != 0)
            break;
        if (!o) /* deleted meanwhile, or not JSON: skip rather than invent */
            continue;
        if (!json_is_object(o)) {
            json_t *w = json_object();
            st_set(x, w, "value", o);
            o = w;
            if (!o) {
                x->nomem = 1;
                continue;
            }
        }
        if (!json_object_get(o, "id"))
            st_set(x, o, "id", json_string(names[i]));
        if (fn)
            fn(arg, o);
        if (m - 1 >= first)
            st_append(x, out, o);
        else
            json_decref(o);
    }
    flr_zk_free_names(names, nn);
    return rv;
}

/* --- servers' STATUS ------------------------------------------------------------------- */

struct st_probe {
    json_t *server; /* the document's entry for the server (borrowed) */
    struct flr_conn *conn;
    struct flr_call call;
    int started;
};

/* Decodes a STATUS reply into the server's entry. */
static void st_probe_apply(struct st_ctx *x, struct st_probe *p, nng_msg *reply)
{
    struct flr_proto_limits lim;
    struct flr_msg m;
    msgpack_zone zone;
    char why[FLR_REASON_MAX];
    json_t *st = NULL, *shards;
    json_int_t keys_pushed = 0;

    flr_proto_limits_default(&lim);
    lim.max_size = ST_MAX_MSG;
    if (!msgpack_zone_init(&zone, 4096)) {
        x->nomem = 1;
        return;
    }
    if (flr_msg_decode(&m, nng_msg_body(reply), nng_msg_len(reply), &lim, &zone, why,
                       sizeof(why)) != 0) {
        st_set(x, p->server, "error", json_sprintf("bad STATUS reply: %s", why));
    } else if (m.type != FLR_MSG_STATUS_REPLY || m.status != 0) {
        st_set(x, p->server, "error",
               json_sprintf("STATUS answered with %s %s", flr_msg_type_name(m.type),
                            flr_errname(m.status)));
    } else if (!(st = json_loadb(m.text, m.text_len, 0, NULL)) || !json_is_object(st)) {
        st_set(x, p->server, "error", json_string("STATUS reply is not a JSON object"));
    } else {
        st_set(x, p->server, "reachable", json_true());
        st_copy(x, p->server, "requests", st, "requests");
        shards = json_object_get(st, "shards");
        if (json_is_array(shards)) {
            for (size_t i = 0; i < json_array_size(shards); i++) {
                json_t *sh = json_array_get(shards, i);
                keys_pushed += st_int(json_object_get(sh, "keys_pushed"), 0);
                /* Where the asking worker stands: we are no worker, so it means nothing. */
                json_object_del(sh, "sender_clock");
                json_object_del(sh, "sender_removed");
            }
            st_set(x, p->server, "shards", json_incref(shards));
        }
        if (json_is_object(json_object_get(st, "rejected")))
            st_copy(x, p->server, "rejected", st, "rejected");
        st_set(x, p->server, "keys_pushed", json_integer(keys_pushed));
        json_object_del(p->server, "error");
    }
    json_decref(st);
    msgpack_zone_destroy(&zone);
}

/* Asks every server with an endpoint for its STATUS, all at once, and waits for the
 * answers (each call ends by FLR_STATUS_PROBE_MS). */
static void st_probe_servers(struct st_ctx *x, json_t *servers)
{
    struct flr_waitgroup *wg = NULL;
    struct st_probe *p;
    size_t n = json_array_size(servers), i;

    if (n == 0)
        return;
    if (!(p = calloc(n, sizeof(*p))) || flr_waitgroup_alloc(&wg) != 0) {
        free(p);
        x->nomem = 1;
        return;
    }
    for (i = 0; i < n; i++) {
        json_t *s = json_array_get(servers, i);
        const char *ep = json_string_value(json_object_get(s, "endpoint"));
        struct flr_msg m = {0};
        nng_msg *req;
        char why[256];

        p[i].server = s;
        if (!ep || !*ep) {
            st_set(x, s, "error", json_string("no endpoint"));
            continue;
        }
        if (flr_conn_open(&p[i].conn, ep, ST_MAX_MSG, why, sizeof(why)) != 0) {
            st_set(x, s, "error", json_string(why));
            continue;
        }
        if (flr_call_init(&p[i].call) != 0) {
            x->nomem = 1;
            continue;
        }
        m.type = FLR_MSG_STATUS;
        m.job = x->job;
        m.job_len = (uint32_t)strlen(x->job);
        m.request_id = i + 1;
        if (flr_msg_to_nng(&req, &m, NULL) != 0) {
            x->nomem = 1;
            continue;
        }
        flr_call_start(&p[i].call, p[i].conn, req, FLR_STATUS_PROBE_MS, wg);
        p[i].started = 1;
    }
    flr_waitgroup_wait(wg);
    for (i = 0; i < n; i++) {
        if (p[i].started) {
            if (p[i].call.rv == 0 && p[i].call.reply) {
                st_probe_apply(x, &p[i], p[i].call.reply);
            } else {
                st_set(x, p[i].server, "error",
                       json_sprintf("no STATUS reply: %s", flr_strerror(p[i].call.rv)));
            }
            if (p[i].call.reply)
                nng_msg_free(p[i].call.reply);
            p[i].call.reply = NULL;
        }
        if (p[i].call.aio)
            flr_call_fini(&p[i].call);
        flr_conn_close(p[i].conn);
    }
    flr_waitgroup_free(wg);
    free(p);
}

/* --- parts of the document ------------------------------------------------------------- */

/* spec, state, epoch, started. */
static int st_job(struct st_ctx *x, json_t *doc, json_t **spec_out)
{
    static const char *const keys[] = {"model",       "recovery",    "consistency", "staleness",
                                       "num_workers", "num_servers", "num_shards",  "k"};
    json_t *spec = NULL, *started = NULL;
    char *state = NULL, *epoch = NULL, *start = NULL;
    int len, rv, have_spec = 0;

    if ((rv = st_get_json(x, "/spec", &spec, &have_spec)) != 0 ||
        (rv = st_get(x, "/state", &state, &len)) != 0 ||
        (rv = st_get(x, "/epoch", &epoch, &len)) != 0 ||
        (rv = st_get(x, "/started", &start, &len)) != 0)
        goto out;
    if (start)
        started = json_loadb(start, (size_t)len, JSON_DECODE_ANY, NULL);
    st_set(x, doc, "exists", json_boolean(have_spec || state));
    st_set(x, doc, "state", json_string(state && *state ? state : "absent"));
    if (epoch && *epoch) {
        char *end;
        long long e = strtoll(epoch, &end, 10);
        st_set(x, doc, "epoch", *end == '\0' ? json_integer(e) : json_null());
    } else {
        st_set(x, doc, "epoch", json_null());
    }
    for (size_t i = 0; i < FLR_ARRAY_LEN(keys); i++)
        st_copy(x, doc, keys[i], spec, keys[i]);
    /* Present only in jobs whose spec has it. */
    if (spec && json_object_get(spec, "outage"))
        st_copy(x, doc, "outage", spec, "outage");
    if (have_spec && !spec)
        st_set(x, doc, "spec_error", json_string("the spec is not JSON"));
    /* "started" holds the wall-clock ms as a decimal number; {"at_ms":N} is accepted
     * too. */
    if (json_is_object(started))
        st_copy(x, doc, "started_ms", started, "at_ms");
    else if (json_is_integer(started))
        st_set(x, doc, "started_ms", json_incref(started));
    else
        st_set(x, doc, "started_ms", json_null());
    *spec_out = spec;
    spec = NULL;
out:
    json_decref(spec);
    json_decref(started);
    free(state);
    free(epoch);
    free(start);
    return rv;
}

/* coordinators and leader: the lowest candidate leads. */
static int st_coordinators(struct st_ctx *x, json_t *doc)
{
    char **names, sub[FLR_PATH_MAX];
    json_t *arr = json_array(), *leader = NULL;
    int n, rv;

    if (!arr)
        x->nomem = 1;
    if ((rv = st_children(x, "/coordinators", &names, &n)) != 0) {
        json_decref(arr);
        return rv;
    }
    for (int i = 0; i < n && rv == 0 && arr; i++) {
        json_t *data, *e;
        if (strncmp(names[i], "c_", 2) != 0)
            continue;
        snprintf(sub, sizeof(sub), "/coordinators/%s", names[i]);
        if ((rv = st_get_json(x, sub, &data, NULL)) != 0)
            break;
        if (!(e = json_object())) {
            x->nomem = 1;
            json_decref(data);
            break;
        }
        st_set(x, e, "candidate", json_string(names[i]));
        st_copy(x, e, "pid", data, "pid");
        st_copy(x, e, "host", data, "host");
        if (json_is_string(json_object_get(data, "http")))
            st_copy(x, e, "http", data, "http");
        else
            st_set(x, e, "http", json_string(""));
        st_set(x, e, "leader", json_boolean(!leader));
        if (!leader)
            leader = json_deep_copy(e);
        json_decref(data);
        st_append(x, arr, e);
    }
    flr_zk_free_names(names, n);
    if (leader)
        json_object_del(leader, "leader");
    st_set(x, doc, "coordinators", arr);
    st_set(x, doc, "leader", leader ? leader : json_null());
    return rv;
}

/* servers: every registered server, with its STATUS counters. */
static int st_servers(struct st_ctx *x, json_t *doc)
{
    unsigned long *ids;
    json_t *arr = json_array();
    char sub[FLR_PATH_MAX];
    int n, rv;

    if (!arr)
        x->nomem = 1;
    if ((rv = st_numeric_children(x, "/servers", &ids, &n)) != 0) {
        json_decref(arr);
        return rv;
    }
    for (int i = 0; i < n && arr; i++) {
        json_t *rec, *e;
        snprintf(sub, sizeof(sub), "/servers/%lu", ids[i]);
        if ((rv = st_get_json(x, sub, &rec, NULL)) != 0)
            break;
        if (!rec) /* gone since the listing */
            continue;
        e = json_is_object(rec) ? json_deep_copy(rec) : json_object();
        if (!e) {
            x->nomem = 1;
            json_decref(rec);
            break;
        }
        st_set(x, e, "id", json_integer((json_int_t)ids[i]));
        st_require(x, e, server_fields);
        st_set(x, e, "reachable", json_false());
        st_set(x, e, "requests", json_null());
        st_set(x, e, "shards", json_array());
        st_set(x, e, "rejected", json_object());
        json_decref(rec);
        st_append(x, arr, e);
    }
    free(ids);
    if (rv == 0 && arr)
        st_probe_servers(x, arr);
    st_set(x, doc, "servers", arr);
    return rv;
}

/* The STATUS row of shard in server id's reply, or NULL. */
static json_t *st_server_shard(json_t *servers, json_int_t id, json_int_t shard)
{
    for (size_t i = 0; i < json_array_size(servers); i++) {
        json_t *s = json_array_get(servers, i), *rows = json_object_get(s, "shards");
        if (st_int(json_object_get(s, "id"), -1) != id)
            continue;
        for (size_t j = 0; j < json_array_size(rows); j++)
            if (st_int(json_object_get(json_array_get(rows, j), "shard"), -1) == shard)
                return json_array_get(rows, j);
    }
    return NULL;
}

/* shards: the shard records, with the owner's counters. */
static int st_shards(struct st_ctx *x, json_t *doc, const json_t *spec)
{
    json_t *arr = json_array(), *servers = json_object_get(doc, "servers");
    unsigned long *ids = NULL;
    char sub[FLR_PATH_MAX];
    json_int_t nspec = st_int(json_object_get(spec, "num_shards"), -1);
    int n, rv = 0;

    if (!arr)
        x->nomem = 1;
    if (nspec >= 0 && nspec <= 65536) {
        n = (int)nspec;
        if (n > 0 && !(ids = malloc((size_t)n * sizeof(*ids)))) {
            x->nomem = 1;
            n = 0;
        }
        for (int i = 0; i < n; i++)
            ids[i] = (unsigned long)i;
    } else if ((rv = st_numeric_children(x, "/shards", &ids, &n)) != 0) {
        json_decref(arr);
        return rv;
    }
    for (int i = 0; i < n && arr; i++) {
        json_t *rec, *e, *row;
        json_int_t owner;
        snprintf(sub, sizeof(sub), "/shards/%lu", ids[i]);
        if ((rv = st_get_json(x, sub, &rec, NULL)) != 0)
            break;
        e = json_is_object(rec) ? json_deep_copy(rec) : json_object();
        if (!e) {
            x->nomem = 1;
            json_decref(rec);
            break;
        }
        st_set(x, e, "shard", json_integer((json_int_t)ids[i]));
        st_require(x, e, shard_fields);
        if (json_is_string(json_object_get(rec, "state")))
            st_copy(x, e, "state", rec, "state");
        else
            st_set(x, e, "state", json_string(rec ? "UNKNOWN" : "MISSING"));
        owner = st_int(json_object_get(rec, "owner"), -1);
        row = owner >= 0 ? st_server_shard(servers, owner, (json_int_t)ids[i]) : NULL;
        st_copy(x, e, "rows", row, "rows");
        st_copy(x, e, "bytes", row, "bytes");
        st_copy(x, e, "pulls", row, "pulls");
        st_copy(x, e, "pushes", row, "pushes");
        st_copy(x, e, "held_pulls", row, "held_pulls");
        json_decref(rec);
        st_append(x, arr, e);
    }
    free(ids);
    st_set(x, doc, "shards", arr);
    return rv;
}

/* Adds id to the sorted set ids[0..*n) (capacity cap). */
static void st_idset_add(unsigned long *ids, int *n, int cap, unsigned long id)
{
    int i = *n;
    for (int k = 0; k < *n; k++)
        if (ids[k] == id)
            return;
    if (*n >= cap)
        return;
    while (i > 0 && ids[i - 1] > id) {
        ids[i] = ids[i - 1];
        i--;
    }
    ids[i] = id;
    (*n)++;
}

static int st_has(const unsigned long *ids, int n, unsigned long id)
{
    return bsearch(&id, ids, (size_t)n, sizeof(*ids), st_cmp_ulong) != NULL;
}

/* workers: every worker of the spec or seen in ZooKeeper, alive or not. */
static int st_workers(struct st_ctx *x, json_t *doc, const json_t *spec)
{
    unsigned long *live = NULL, *done = NULL, *gone = NULL, *all = NULL;
    int nlive = 0, ndone = 0, ngone = 0, nall = 0, cap, rv;
    json_int_t nspec = st_int(json_object_get(spec, "num_workers"), 0);
    json_t *arr = json_array();
    char sub[FLR_PATH_MAX];

    if (!arr)
        x->nomem = 1;
    if (nspec < 0 || nspec > ST_MAX_IDS)
        nspec = 0;
    if ((rv = st_numeric_children(x, "/workers", &live, &nlive)) != 0 ||
        (rv = st_numeric_children(x, "/results", &done, &ndone)) != 0 ||
        (rv = st_numeric_children(x, "/removed", &gone, &ngone)) != 0)
        goto out;
    cap = (int)nspec + nlive + ndone + ngone;
    if (cap > 0 && !(all = malloc((size_t)cap * sizeof(*all)))) {
        x->nomem = 1;
        goto out;
    }
    for (json_int_t i = 0; i < nspec; i++)
        all[nall++] = (unsigned long)i;
    for (int i = 0; i < nlive; i++)
        st_idset_add(all, &nall, cap, live[i]);
    for (int i = 0; i < ndone; i++)
        st_idset_add(all, &nall, cap, done[i]);
    for (int i = 0; i < ngone; i++)
        st_idset_add(all, &nall, cap, gone[i]);

    for (int i = 0; i < nall && arr; i++) {
        unsigned long id = all[i];
        int alive = st_has(live, nlive, id), finished = st_has(done, ndone, id);
        json_t *node = NULL, *res = NULL, *e = json_object();

        if (!e) {
            x->nomem = 1;
            break;
        }
        if (alive) {
            snprintf(sub, sizeof(sub), "/workers/%lu", id);
            if ((rv = st_get_json(x, sub, &node, &alive)) != 0) {
                json_decref(e);
                break;
            }
        }
        if (finished) {
            snprintf(sub, sizeof(sub), "/results/%lu", id);
            if ((rv = st_get_json(x, sub, &res, NULL)) != 0) {
                json_decref(node);
                json_decref(e);
                break;
            }
        }
        st_set(x, e, "id", json_integer((json_int_t)id));
        st_set(x, e, "alive", json_boolean(alive));
        st_set(x, e, "removed", json_boolean(st_has(gone, ngone, id)));
        st_set(x, e, "finished", json_boolean(finished));
        /* Progress as the worker publishes it; a finished worker's result says the same
         * in its own words once the node is gone. */
        if (node && json_object_get(node, "clock"))
            st_copy(x, e, "clock", node, "clock");
        else
            st_copy(x, e, "clock", res, "iterations");
        if (node && json_object_get(node, "samples"))
            st_copy(x, e, "samples", node, "samples");
        else
            st_copy(x, e, "samples", res, "samples");
        if (node && json_object_get(node, "epoch"))
            st_copy(x, e, "epoch", node, "epoch");
        else
            st_copy(x, e, "epoch", res, "epochs");
        if (node && json_object_get(node, "loss"))
            st_copy(x, e, "loss", node, "loss");
        else
            st_copy(x, e, "loss", res, "train_loss");
        st_copy(x, e, "at_ms", node, "at_ms");
        st_copy(x, e, "pid", node, "pid");
        st_copy(x, e, "host", node, "host");
        json_decref(node);
        json_decref(res);
        st_append(x, arr, e);
    }
out:
    free(live);
    free(done);
    free(gone);
    free(all);
    st_set(x, doc, "workers", arr);
    return rv;
}

/* curve: /curve, or the curve in worker 0's result once the job is over. */
static int st_curve(struct st_ctx *x, json_t *doc)
{
    json_t *curve = NULL, *res = NULL;
    int rv;

    if ((rv = st_get_json(x, "/curve", &curve, NULL)) != 0)
        return rv;
    if (!json_is_array(curve)) {
        json_decref(curve);
        curve = NULL;
        if ((rv = st_get_json(x, "/results/0", &res, NULL)) != 0)
            return rv;
        if (json_is_array(json_object_get(res, "curve")))
            curve = json_incref(json_object_get(res, "curve"));
        json_decref(res);
    }
    st_set(x, doc, "curve", curve ? curve : json_array());
    return 0;
}

struct st_totals {
    json_int_t count, in_progress, rebuilt, lost;
};

static void st_count_recovery(void *arg, const json_t *r)
{
    struct st_totals *t = arg;
    const char *phase = json_string_value(json_object_get(r, "phase"));

    t->count++;
    if (!phase || (strcmp(phase, "done") != 0 && strcmp(phase, "failed") != 0))
        t->in_progress++;
    t->rebuilt += st_int(json_object_get(r, "rows_rebuilt"), 0);
    t->lost += st_int(json_object_get(r, "rows_lost"), 0);
}

/* events, recoveries, pending operator requests, totals. */
static int st_history(struct st_ctx *x, json_t *doc)
{
    json_t *events = json_array(), *recs = json_array(), *reqs = json_array(), *tot;
    struct st_totals t = {0};
    int n, rv;

    if (!events || !recs || !reqs)
        x->nomem = 1;
    if (events && recs && reqs &&
        ((rv = st_sequential(x, "/events", "e_", FLR_STATUS_EVENTS, events, &n, NULL, NULL)) != 0 ||
         (rv = st_sequential(x, "/recoveries", "r_", FLR_STATUS_RECOVERIES, recs, &n,
                             st_count_recovery, &t)) != 0 ||
         (rv = st_sequential(x, "/requests", "q_", 1000, reqs, &n, NULL, NULL)) != 0)) {
        json_decref(events);
        json_decref(recs);
        json_decref(reqs);
        return rv;
    }
    st_set(x, doc, "events", events);
    st_set(x, doc, "recoveries", recs);
    st_set(x, doc, "requests", reqs);
    if ((tot = json_object())) {
        st_set(x, tot, "recoveries", json_integer(t.count));
        st_set(x, tot, "recoveries_in_progress", json_integer(t.in_progress));
        st_set(x, tot, "rows_rebuilt", json_integer(t.rebuilt));
        st_set(x, tot, "rows_lost", json_integer(t.lost));
    }
    st_set(x, doc, "totals", tot);
    return 0;
}

static json_t *st_throughput_null(void)
{
    return json_pack("{s:n s:n s:n}", "samples_per_second", "keys_pushed_per_second",
                     "interval_ms");
}

/* --- public ---------------------------------------------------------------------------- */

static int st_job_name_ok(const char *job)
{
    size_t n = job ? strlen(job) : 0;
    if (n == 0 || n >= FLR_JOB_MAX || strcmp(job, ".") == 0 || strcmp(job, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (job[i] == '/' || (unsigned char)job[i] < 0x20)
            return 0;
    return 1;
}

int flr_status_collect(struct flr_zk *zk, const char *job, json_t **doc, char *why, size_t whylen)
{
    struct st_ctx x = {.zk = zk, .job = job, .why = why, .whylen = whylen};
    json_t *d, *spec = NULL;
    int64_t t0 = flr_now_ms();
    int rv;

    *doc = NULL;
    if (!st_job_name_ok(job)) {
        flr_why(why, whylen, "'%.64s' is not a job name", job ? job : "");
        return FLR_EINVAL;
    }
    flr_job_path(x.base, sizeof(x.base), job, "");
    if (!(d = json_object())) {
        flr_why(why, whylen, "out of memory");
        return FLR_ENOMEM;
    }
    st_set(&x, d, "job", json_string(job));
    if ((rv = st_job(&x, d, &spec)) != 0)
        goto fail;
    st_set(&x, d, "now_ms", json_integer(flr_wall_ms()));
    if ((rv = st_coordinators(&x, d)) != 0 || (rv = st_servers(&x, d)) != 0 ||
        (rv = st_shards(&x, d, spec)) != 0 || (rv = st_workers(&x, d, spec)) != 0 ||
        (rv = st_curve(&x, d)) != 0 || (rv = st_history(&x, d)) != 0)
        goto fail;
    st_set(&x, d, "throughput", st_throughput_null());
    st_set(&x, d, "collect_ms", json_integer(flr_now_ms() - t0));
    if (x.nomem) {
        rv = FLR_ENOMEM;
        flr_why(why, whylen, "out of memory while building the status of job %s", job);
        goto fail;
    }
    json_decref(spec);
    *doc = d;
    return 0;
fail:
    json_decref(spec);
    json_decref(d);
    return rv;
}

/* The server entry with this id and incarnation in doc, or NULL. */
static const json_t *st_find_server(const json_t *doc, json_int_t id, const json_t *inc)
{
    const json_t *servers = json_object_get(doc, "servers");

    for (size_t i = 0; i < json_array_size(servers); i++) {
        const json_t *s = json_array_get(servers, i);
        if (st_int(json_object_get(s, "id"), -1) == id &&
            json_equal(json_object_get(s, "incarnation"), (json_t *)inc))
            return s;
    }
    return NULL;
}

static const json_t *st_find_worker(const json_t *doc, json_int_t id)
{
    const json_t *workers = json_object_get(doc, "workers");

    for (size_t i = 0; i < json_array_size(workers); i++)
        if (st_int(json_object_get(json_array_get(workers, i), "id"), -1) == id)
            return json_array_get(workers, i);
    return NULL;
}

void flr_status_throughput(json_t *doc, const json_t *prev)
{
    json_t *tp = st_throughput_null(), *workers, *servers;
    json_int_t dt, samples = 0, keys = 0;
    int have_samples = 0;

    if (!tp)
        return;
    json_object_set_new(doc, "throughput", tp);
    if (!prev || !json_equal(json_object_get(doc, "job"), json_object_get(prev, "job")))
        return;
    dt = st_int(json_object_get(doc, "now_ms"), 0) - st_int(json_object_get(prev, "now_ms"), 0);
    if (dt <= 0)
        return;
    json_object_set_new(tp, "interval_ms", json_integer(dt));
    workers = json_object_get(doc, "workers");
    servers = json_object_get(doc, "servers");
    for (size_t i = 0; i < json_array_size(workers); i++) {
        json_t *w = json_array_get(workers, i);
        const json_t *pw = st_find_worker(prev, st_int(json_object_get(w, "id"), -1));
        json_t *now = json_object_get(w, "samples");
        json_int_t d;
        if (!json_is_number(now))
            continue;
        have_samples = 1;
        d = st_int(now, 0) - st_int(pw ? json_object_get(pw, "samples") : NULL, 0);
        samples += d > 0 ? d : 0;
    }
    for (size_t i = 0; i < json_array_size(servers); i++) {
        json_t *s = json_array_get(servers, i), *now = json_object_get(s, "keys_pushed");
        const json_t *ps;
        json_int_t d;
        if (!json_is_integer(now))
            continue;
        ps = st_find_server(prev, st_int(json_object_get(s, "id"), -1),
                            json_object_get(s, "incarnation"));
        d = st_int(now, 0) - st_int(ps ? json_object_get(ps, "keys_pushed") : NULL, 0);
        /* A relaunched server starts from zero; a shard that moved away takes its count
         * along: count what is new, never a negative rate. */
        keys += d >= 0 ? d : st_int(now, 0);
    }
    if (have_samples)
        json_object_set_new(tp, "samples_per_second", json_real(samples * 1000.0 / dt));
    json_object_set_new(tp, "keys_pushed_per_second", json_real(keys * 1000.0 / dt));
}

int flr_status_leader(struct flr_zk *zk, const char *job, json_t **leader, char *why, size_t whylen)
{
    struct st_ctx x = {.zk = zk, .job = job, .why = why, .whylen = whylen};
    json_t *d;
    int rv;

    *leader = NULL;
    if (!st_job_name_ok(job)) {
        flr_why(why, whylen, "'%.64s' is not a job name", job ? job : "");
        return FLR_EINVAL;
    }
    flr_job_path(x.base, sizeof(x.base), job, "");
    if (!(d = json_object()))
        return FLR_ENOMEM;
    if ((rv = st_coordinators(&x, d)) == 0 && json_is_object(json_object_get(d, "leader")))
        *leader = json_incref(json_object_get(d, "leader"));
    json_decref(d);
    return rv;
}

int flr_status_parse_server_id(const char *text, unsigned long *id, char *why, size_t whylen)
{
    size_t n = text ? strlen(text) : 0;
    unsigned long v = 0;

    if (n == 0 || n > 7) {
        flr_why(why, whylen, "server id '%.32s%s' is not a number in 0..%d", text ? text : "",
                n > 32 ? "..." : "", ST_SERVER_MAX);
        return FLR_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)text[i])) {
            flr_why(why, whylen, "server id '%.32s' is not a number in 0..%d", text, ST_SERVER_MAX);
            return FLR_EINVAL;
        }
        v = v * 10 + (unsigned long)(text[i] - '0');
    }
    if (v > ST_SERVER_MAX) {
        flr_why(why, whylen, "server id %lu is out of range 0..%d", v, ST_SERVER_MAX);
        return FLR_EINVAL;
    }
    *id = v;
    return 0;
}

int flr_status_request_add(struct flr_zk *zk, const char *job, const char *action,
                           unsigned long server, const char *from, char *created, size_t createdlen,
                           char *why, size_t whylen)
{
    char path[FLR_PATH_MAX + 8], dir[FLR_PATH_MAX], made[FLR_PATH_MAX + 24], *text;
    json_t *o;
    int rv, exists = 0;

    if (!st_job_name_ok(job)) {
        flr_why(why, whylen, "'%.64s' is not a job name", job ? job : "");
        return FLR_EINVAL;
    }
    if (!action || (strcmp(action, "kill") != 0 && strcmp(action, "drain") != 0)) {
        flr_why(why, whylen, "unknown action '%.32s' (kill or drain)", action ? action : "");
        return FLR_EINVAL;
    }
    if (server > ST_SERVER_MAX) {
        flr_why(why, whylen, "server id %lu is out of range 0..%d", server, ST_SERVER_MAX);
        return FLR_EINVAL;
    }
    flr_job_node(path, sizeof(path), job, "servers", server);
    if ((rv = flr_zk_exists(zk, path, 0, &exists)) != 0) {
        flr_why(why, whylen, "reading %s: %s", path, flr_strerror(rv));
        return rv;
    }
    if (!exists) {
        flr_why(why, whylen, "server %lu is not registered in job %s", server, job);
        return FLR_ENOT_FOUND;
    }
    flr_job_path(dir, sizeof(dir), job, "/requests");
    if ((rv = flr_zk_mkdirs(zk, dir)) != 0) {
        flr_why(why, whylen, "creating %s: %s", dir, flr_strerror(rv));
        return rv;
    }
    o = json_pack("{s:s s:I s:I s:s}", "action", action, "server", (json_int_t)server, "at_ms",
                  (json_int_t)flr_wall_ms(), "from", from ? from : "");
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) {
        flr_why(why, whylen, "out of memory");
        return FLR_ENOMEM;
    }
    snprintf(path, sizeof(path), "%s/q_", dir);
    rv = flr_zk_create(zk, path, text, (int)strlen(text), FLR_ZK_SEQUENCE, made, sizeof(made));
    free(text);
    if (rv != 0) {
        flr_why(why, whylen, "creating %s: %s", path, flr_strerror(rv));
        return rv;
    }
    if (created)
        snprintf(created, createdlen, "%s", strrchr(made, '/') ? strrchr(made, '/') + 1 : made);
    return 0;
}
