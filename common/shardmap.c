/*
 * shardmap.c - placement of keys on shards, shard and server records, the map snapshot.
 *
 * Dense placement: row r of a table with n rows goes to shard floor(r * S / n).  Shard s
 * therefore holds exactly the rows with s * n <= r * S < (s + 1) * n, that is
 * [ceil(s * n / S), ceil((s + 1) * n / S)), which is what flr_shard_dense_range()
 * returns; the two are computed from the same inequality so they cannot disagree.  With
 * n < 2^48 and S <= 65536 every product fits in 64 bits; larger values (an unvalidated
 * spec) take a 128-bit path instead of overflowing.
 *
 * Records are parsed strictly (types, ranges, string sizes) but keys that this version
 * does not know are ignored, so that a record can grow a field (a shard's chain, say)
 * without breaking older readers.
 */
#include "shardmap.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "util.h"

#define SM_MAX_FAST_SHARDS 65536

/* A GCC/Clang extension; __extension__ keeps -pedantic quiet about it. */
__extension__ typedef unsigned __int128 sm_u128;

static const char *const sm_shard_state_names[] = {"UNASSIGNED", "ACTIVE", "RECOVERING", "LOST"};
static const char *const sm_server_state_names[] = {"STANDBY", "SERVING"};

/* --- placement --------------------------------------------------------------------------- */

uint32_t flr_shard_of_key(const struct flr_job_spec *spec, uint64_t key)
{
    const struct flr_table_spec *t = flr_spec_table(spec, flr_key_table(key));
    uint32_t nshards = spec->num_shards;
    uint64_t row = flr_key_row(key);

    if (!t || nshards == 0)
        return nshards;
    if (t->kind == FLR_TABLE_SPARSE)
        return (uint32_t)(flr_mix64(key) % nshards);
    if (row >= t->rows)
        return nshards;
    /* row < 2^48, so row * S < 2^64 whenever S <= 2^16. */
    if (nshards <= SM_MAX_FAST_SHARDS)
        return (uint32_t)(row * nshards / t->rows);
    return (uint32_t)((sm_u128)row * nshards / t->rows);
}

/* ceil(s * n / S) without overflow. */
static uint64_t sm_first_row(uint64_t s, uint64_t n, uint64_t nshards)
{
    sm_u128 x = (sm_u128)s * n;
    sm_u128 q = x / nshards;

    return (uint64_t)(q + (x % nshards != 0));
}

void flr_shard_dense_range(const struct flr_job_spec *spec, const struct flr_table_spec *t,
                           uint32_t shard, uint64_t *lo, uint64_t *hi)
{
    uint32_t nshards = spec->num_shards;

    *lo = *hi = 0;
    if (!t || t->kind != FLR_TABLE_DENSE || nshards == 0 || shard >= nshards)
        return;
    *lo = sm_first_row(shard, t->rows, nshards);
    *hi = sm_first_row((uint64_t)shard + 1, t->rows, nshards);
}

/* --- state names ------------------------------------------------------------------------- */

const char *flr_shard_state_name(enum flr_shard_state s)
{
    if ((int)s < 0 || (size_t)s >= FLR_ARRAY_LEN(sm_shard_state_names))
        return "UNKNOWN";
    return sm_shard_state_names[s];
}

int flr_shard_state_parse(const char *s)
{
    for (size_t i = 0; s && i < FLR_ARRAY_LEN(sm_shard_state_names); i++)
        if (strcmp(s, sm_shard_state_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *flr_server_state_name(enum flr_server_state s)
{
    if ((int)s < 0 || (size_t)s >= FLR_ARRAY_LEN(sm_server_state_names))
        return "UNKNOWN";
    return sm_server_state_names[s];
}

int flr_server_state_parse(const char *s)
{
    for (size_t i = 0; s && i < FLR_ARRAY_LEN(sm_server_state_names); i++)
        if (strcmp(s, sm_server_state_names[i]) == 0)
            return (int)i;
    return -1;
}

/* --- JSON records ------------------------------------------------------------------------ */

/* Serialises o into *out, taking o's reference. */
static int sm_dump(json_t *o, char **out)
{
    char *text = json_dumps(o, JSON_COMPACT);

    json_decref(o);
    if (!text)
        return FLR_ENOMEM;
    *out = text;
    return 0;
}

/* Adds key: v to o; v may be NULL (a failed constructor), which fails the add. */
static int sm_set(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

int flr_shard_rec_to_json(const struct flr_shard_rec *r, char **out)
{
    json_t *o;

    *out = NULL;
    if (r->epoch > INT64_MAX || (int)r->state < 0 ||
        (size_t)r->state >= FLR_ARRAY_LEN(sm_shard_state_names))
        return FLR_EINVAL;
    if (!(o = json_object()))
        return FLR_ENOMEM;
    if (sm_set(o, "owner", r->owner == FLR_NO_OWNER ? json_null() : json_integer(r->owner)) ||
        sm_set(o, "epoch", json_integer((json_int_t)r->epoch)) ||
        sm_set(o, "state", json_string(flr_shard_state_name(r->state))) ||
        (r->from1 && sm_set(o, "from", json_integer(r->from1 - 1))) ||
        (r->rebuild && sm_set(o, "rebuild", json_true()))) {
        json_decref(o);
        return FLR_ENOMEM;
    }
    return sm_dump(o, out);
}

/* Parses a whole buffer into an object; NULL when it is not JSON or not an object. */
static json_t *sm_load_object(const char *json, size_t len)
{
    json_t *o;

    if (!json)
        return NULL;
    if (!(o = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL)))
        return NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Reads key as an integer in 0..max. */
static int sm_get_uint(json_t *o, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    json_int_t n;

    if (!json_is_integer(v))
        return -1;
    n = json_integer_value(v);
    if (n < 0 || (uint64_t)n > max)
        return -1;
    *out = (uint64_t)n;
    return 0;
}

/* Copies a string key into buf[size]; fails when absent, not a string or too long. */
static int sm_get_str(json_t *o, const char *key, char *buf, size_t size)
{
    json_t *v = json_object_get(o, key);
    size_t n;

    if (!json_is_string(v))
        return -1;
    n = json_string_length(v);
    if (n >= size || strlen(json_string_value(v)) != n)
        return -1;
    memcpy(buf, json_string_value(v), n + 1);
    return 0;
}

int flr_shard_rec_from_json(struct flr_shard_rec *r, const char *json, size_t len)
{
    json_t *o = sm_load_object(json, len), *owner;
    struct flr_shard_rec tmp;
    uint64_t v;
    int st, rv = FLR_EFORMAT;

    if (!o)
        return FLR_EFORMAT;
    owner = json_object_get(o, "owner");
    if (!owner || json_is_null(owner)) {
        tmp.owner = FLR_NO_OWNER;
    } else {
        /* FLR_NO_OWNER itself is spelled null, never as a number. */
        if (sm_get_uint(o, "owner", FLR_NO_OWNER - 1, &v) != 0)
            goto out;
        tmp.owner = (uint32_t)v;
    }
    if (sm_get_uint(o, "epoch", INT64_MAX, &tmp.epoch) != 0)
        goto out;
    if (!json_is_string(json_object_get(o, "state")) ||
        (st = flr_shard_state_parse(json_string_value(json_object_get(o, "state")))) < 0)
        goto out;
    tmp.state = (enum flr_shard_state)st;
    tmp.from1 = 0;
    if (json_object_get(o, "from")) {
        if (sm_get_uint(o, "from", FLR_NO_OWNER - 2, &v) != 0)
            goto out;
        tmp.from1 = (uint32_t)v + 1;
    }
    tmp.rebuild = 0;
    if (json_object_get(o, "rebuild")) {
        if (!json_is_boolean(json_object_get(o, "rebuild")))
            goto out;
        tmp.rebuild = json_is_true(json_object_get(o, "rebuild"));
    }
    *r = tmp;
    rv = 0;
out:
    json_decref(o);
    return rv;
}

int flr_server_rec_to_json(const struct flr_server_rec *r, char **out)
{
    json_t *o;
    size_t elen = strnlen(r->endpoint, sizeof(r->endpoint));
    size_t hlen = strnlen(r->host, sizeof(r->host));

    *out = NULL;
    if (r->id == FLR_NO_OWNER || elen == sizeof(r->endpoint) || hlen == sizeof(r->host) ||
        r->incarnation > INT64_MAX || (int)r->state < 0 ||
        (size_t)r->state >= FLR_ARRAY_LEN(sm_server_state_names))
        return FLR_EINVAL;
    if (!(o = json_object()))
        return FLR_ENOMEM;
    if (sm_set(o, "id", json_integer(r->id)) ||
        sm_set(o, "endpoint", json_stringn(r->endpoint, elen)) ||
        sm_set(o, "incarnation", json_integer((json_int_t)r->incarnation)) ||
        sm_set(o, "pid", json_integer(r->pid)) || sm_set(o, "host", json_stringn(r->host, hlen)) ||
        sm_set(o, "state", json_string(flr_server_state_name(r->state)))) {
        /* json_stringn also refuses invalid UTF-8, which a caller could have written. */
        json_decref(o);
        return FLR_EINVAL;
    }
    return sm_dump(o, out);
}

int flr_server_rec_from_json(struct flr_server_rec *r, const char *json, size_t len)
{
    json_t *o = sm_load_object(json, len), *pid;
    struct flr_server_rec tmp;
    uint64_t v;
    json_int_t p;
    int st, rv = FLR_EFORMAT;

    if (!o)
        return FLR_EFORMAT;
    memset(&tmp, 0, sizeof(tmp));
    if (sm_get_uint(o, "id", FLR_NO_OWNER - 1, &v) != 0)
        goto out;
    tmp.id = (uint32_t)v;
    if (sm_get_str(o, "endpoint", tmp.endpoint, sizeof(tmp.endpoint)) != 0 ||
        sm_get_uint(o, "incarnation", INT64_MAX, &tmp.incarnation) != 0 ||
        sm_get_str(o, "host", tmp.host, sizeof(tmp.host)) != 0)
        goto out;
    pid = json_object_get(o, "pid");
    if (!json_is_integer(pid))
        goto out;
    p = json_integer_value(pid);
    if (p < INT32_MIN || p > INT32_MAX)
        goto out;
    tmp.pid = (int32_t)p;
    if (!json_is_string(json_object_get(o, "state")) ||
        (st = flr_server_state_parse(json_string_value(json_object_get(o, "state")))) < 0)
        goto out;
    tmp.state = (enum flr_server_state)st;
    *r = tmp;
    rv = 0;
out:
    json_decref(o);
    return rv;
}

/* --- snapshot ---------------------------------------------------------------------------- */

int flr_shardmap_alloc(struct flr_shardmap **mp, uint32_t nshards)
{
    struct flr_shardmap *m;

    *mp = NULL;
    if (!(m = calloc(1, sizeof(*m))))
        return FLR_ENOMEM;
    if (nshards > 0 && !(m->shards = calloc(nshards, sizeof(*m->shards)))) {
        free(m);
        return FLR_ENOMEM;
    }
    m->nshards = nshards;
    for (uint32_t i = 0; i < nshards; i++) {
        m->shards[i].owner = FLR_NO_OWNER;
        m->shards[i].epoch = 0;
        m->shards[i].state = FLR_SHARD_UNASSIGNED;
    }
    *mp = m;
    return 0;
}

void flr_shardmap_free(struct flr_shardmap *m)
{
    if (!m)
        return;
    free(m->servers);
    free(m->shards);
    free(m);
}

/* Index of the first server whose id is >= id (binary search over the sorted array). */
static uint32_t sm_lower_bound(const struct flr_shardmap *m, uint32_t id)
{
    uint32_t lo = 0, hi = m->nservers;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->servers[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const struct flr_server_rec *flr_shardmap_server(const struct flr_shardmap *m, uint32_t id)
{
    uint32_t i = sm_lower_bound(m, id);

    return i < m->nservers && m->servers[i].id == id ? &m->servers[i] : NULL;
}

int flr_shardmap_put_server(struct flr_shardmap *m, const struct flr_server_rec *r)
{
    uint32_t i = sm_lower_bound(m, r->id);
    struct flr_server_rec *grown;

    if (i < m->nservers && m->servers[i].id == r->id) {
        m->servers[i] = *r;
        return 0;
    }
    if (m->nservers == UINT32_MAX)
        return FLR_ENOMEM;
    /* Grown one slot at a time: the table holds a few hundred servers at most and changes
     * only on membership events. */
    grown = realloc(m->servers, ((size_t)m->nservers + 1) * sizeof(*grown));
    if (!grown)
        return FLR_ENOMEM;
    m->servers = grown;
    memmove(&m->servers[i + 1], &m->servers[i], (m->nservers - i) * sizeof(*grown));
    m->servers[i] = *r;
    m->nservers++;
    return 0;
}
