/*
 * rebuild.c - recovery flr: a lost shard rebuilt on its new owner from the workers' copies
 * and update logs, before it serves (docs/recovery.md, "Rebuild").
 *
 * Two layers.  The core (struct flr_rebuild) takes what the workers sent and decides, with
 * no network: copies are imported into the store as they arrive (the largest S per row
 * wins), records and log entries are kept, and flr_rebuild_finish() replays the entries
 * the rows' copies do not contain.  The network part (flr_rebuild_shard) asks the workers
 * and feeds the core.
 *
 * What the core remembers per row: whether it holds a copy, that copy's S and the record
 * (S, C, V) it was read at, and whether a log entry touches the row (for the counts).
 * Rows that have neither are not listed at all, so the memory follows the copies.
 *
 * A copy whose S no manifest names is not used.  Without its record the rebuild cannot
 * tell which entries the copy already contains: replaying all of them could apply one
 * twice, replaying none could lose some.  The row falls back to another copy, else to its
 * initial value plus every log entry, and the ignored copy is counted; a worker keeps the
 * records its copies refer to, so this only happens when a worker breaks that rule.
 *
 * Per worker, the network part moves through these states (struct rb_peer, phase):
 *
 *     ABSENT --node listed--> MANIFEST --MANIFEST ok--> STREAM --every range answered--> DONE
 *     MANIFEST, STREAM --no answer or a bad reply--> FAILED (its manifest and entries
 *            are dropped, its answers in flight drained) --listed again after a pause-->
 *            MANIFEST
 *     any state but DONE --node gone--> ABSENT (dropped likewise)
 *
 * The manifest plans the STREAM phase (rb_plan): a range of keys per page of copies the
 * worker listed, one pseq range per logged push, and the log's tail.  Up to n->depth
 * ranges are asked for at once; an answer that does not finish its range queues the rest.
 * rb_list() (with rb_peer_restart) and rb_peer_fail() perform the transitions out of the
 * normal path, rb_take_answers() the others.  The rebuild ends when every listed worker is
 * DONE.
 */
#include "rebuild.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/log.h"
#include "common/shardmap.h"
#include "common/transport.h"
#include "common/util.h"
#include "common/zk.h"
#include "shard.h"
#include "store.h"

/* ---- a map from u64 to an index --------------------------------------------------------- */

#define RB_MAP_MIN_CAP 64

struct rb_slot {
    uint64_t key;
    uint32_t val;
    uint32_t used;
};

struct rb_map {
    struct rb_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t count;
};

static size_t rb_map_hash(const struct rb_map *m, uint64_t key)
{
    return (size_t)flr_mix64(key ^ 0x3c6ef372fe94f82bULL) & (m->cap - 1);
}

/* Returns the slot of key, or NULL. */
static struct rb_slot *rb_map_find(const struct rb_map *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = rb_map_hash(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].used)
            return NULL;
        if (m->slots[i].key == key)
            return &m->slots[i];
    }
}

static void rb_map_place(struct rb_map *m, uint64_t key, uint32_t val)
{
    size_t i = rb_map_hash(m, key);

    while (m->slots[i].used)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (struct rb_slot){.key = key, .val = val, .used = 1};
    m->count++;
}

/* Inserts a key known to be absent, growing the map (load <= 1/2). */
static int rb_map_insert(struct rb_map *m, uint64_t key, uint32_t val)
{
    if ((m->count + 1) * 2 > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : RB_MAP_MIN_CAP;
        struct rb_slot *old = m->slots;
        size_t oldcap = m->cap;

        if (nc > SIZE_MAX / sizeof(*old) || !(m->slots = calloc(nc, sizeof(*old)))) {
            m->slots = old;
            return FLR_ENOMEM;
        }
        m->cap = nc;
        m->count = 0;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].used)
                rb_map_place(m, old[i].key, old[i].val);
        free(old);
    }
    rb_map_place(m, key, val);
    return 0;
}

static void rb_map_fini(struct rb_map *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

/* Grows an array to hold need elements (doubling). */
static int rb_grow(void **p, size_t *cap, size_t need, size_t elsize)
{
    size_t nc = *cap ? *cap : 16;
    void *q;

    if (need <= *cap)
        return 0;
    while (nc < need) {
        if (nc > SIZE_MAX / 2)
            return FLR_ENOMEM;
        nc *= 2;
    }
    if (nc > SIZE_MAX / elsize || !(q = realloc(*p, nc * elsize)))
        return FLR_ENOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

/* ---- the core --------------------------------------------------------------------------- */

enum { RB_ROW_COPY = 1, RB_ROW_TOUCHED = 2 };

struct rb_row {
    uint64_t key;
    uint64_t s;   /* S of the copy (RB_ROW_COPY) */
    uint32_t rec; /* its record, an index into recs (RB_ROW_COPY) */
    uint32_t flags;
};

struct rb_rec {
    uint64_t s;
    int64_t c;
};

struct rb_entry {
    uint32_t worker;
    struct flr_rebuild_entry e;
    nng_msg *msg;
};

struct rb_worker {
    int answered;
    struct flr_rebuild_manifest man;
    uint64_t contained, ncontained; /* largest pseq and count of its contained entries */
};

struct flr_rebuild {
    const struct flr_job_spec *spec;
    struct flr_store *store;
    uint32_t shard;
    const uint8_t *removed;
    uint32_t nw; /* workers of the job: the length of every V */
    struct rb_worker *workers;

    struct rb_row *rows;
    size_t nrows, rows_cap;
    struct rb_map row_index; /* key -> rows[] */

    struct rb_rec *recs;
    uint64_t *recv; /* nrecs * nw: the V of each record */
    size_t nrecs, recs_cap, recv_cap;
    struct rb_map rec_index; /* S -> recs[] */

    struct rb_entry *entries;
    size_t nentries, entries_cap;

    uint64_t max_stamp; /* the largest S or acknowledged stamp seen */
    uint64_t copies_ignored;

    /* Called now and then while replaying (a long replay must not let the lease lapse);
     * a nonzero return stops the rebuild. */
    int (*tick)(void *arg);
    void *tick_arg;

    /* One entry's keys and gradients restricted to the rows that need it. */
    unsigned char *sub_keys, *sub_grads;
    size_t sub_keys_cap, sub_grads_cap;
};

/* Every 256th replayed entry: lets the caller keep its lease. */
static int rb_tick(struct flr_rebuild *rb, size_t i)
{
    if (!rb->tick || i % 256 != 255)
        return 0;
    return rb->tick(rb->tick_arg) ? FLR_ESHUTDOWN : 0;
}

/* Writes the reason (flr_why) and returns rv. */
#define rb_fail(why, whylen, rv, ...) (flr_why((why), (whylen), __VA_ARGS__), (rv))

int flr_rebuild_alloc(struct flr_rebuild **rbp, const struct flr_job_spec *spec,
                      struct flr_store *store, uint32_t shard, const uint8_t *removed)
{
    struct flr_rebuild *rb;

    if (!rbp || !spec || !store || shard >= spec->num_shards)
        return FLR_EINVAL;
    if (!(rb = calloc(1, sizeof(*rb))))
        return FLR_ENOMEM;
    rb->spec = spec;
    rb->store = store;
    rb->shard = shard;
    rb->removed = removed;
    rb->nw = spec->num_workers;
    if (!(rb->workers = calloc(rb->nw ? rb->nw : 1, sizeof(*rb->workers)))) {
        free(rb);
        return FLR_ENOMEM;
    }
    *rbp = rb;
    return 0;
}

static void rb_entries_free(struct flr_rebuild *rb)
{
    for (size_t i = 0; i < rb->nentries; i++)
        if (rb->entries[i].msg)
            nng_msg_free(rb->entries[i].msg);
    rb->nentries = 0;
}

void flr_rebuild_free(struct flr_rebuild *rb)
{
    if (!rb)
        return;
    rb_entries_free(rb);
    free(rb->entries);
    free(rb->rows);
    rb_map_fini(&rb->row_index);
    free(rb->recs);
    free(rb->recv);
    rb_map_fini(&rb->rec_index);
    free(rb->workers);
    free(rb->sub_keys);
    free(rb->sub_grads);
    free(rb);
}

uint64_t flr_rebuild_copies_ignored(const struct flr_rebuild *rb)
{
    return rb->copies_ignored;
}

/* Returns the row of key, creating it (no copy, untouched) when create is set; NULL when
 * absent or out of memory (*rv says which). */
static struct rb_row *rb_row_get(struct flr_rebuild *rb, uint64_t key, int create, int *rv)
{
    struct rb_slot *sl = rb_map_find(&rb->row_index, key);

    *rv = 0;
    if (sl)
        return &rb->rows[sl->val];
    if (!create)
        return NULL;
    if (rb->nrows >= UINT32_MAX ||
        (*rv = rb_grow((void **)&rb->rows, &rb->rows_cap, rb->nrows + 1, sizeof(*rb->rows))) != 0 ||
        (*rv = rb_map_insert(&rb->row_index, key, (uint32_t)rb->nrows)) != 0) {
        if (*rv == 0)
            *rv = FLR_ENOMEM;
        return NULL;
    }
    rb->rows[rb->nrows] = (struct rb_row){.key = key};
    return &rb->rows[rb->nrows++];
}

int flr_rebuild_add_manifest(struct flr_rebuild *rb, uint32_t worker,
                             const struct flr_rebuild_manifest *m, const void *records,
                             uint64_t records_len, char *why, size_t whylen)
{
    const unsigned char *p = records;
    const uint64_t rec_bytes = (2 + (uint64_t)rb->nw) * 8;
    uint64_t n;
    int rv;

    if (worker >= rb->nw)
        return rb_fail(why, whylen, FLR_EINVAL, "worker %" PRIu32 " of a job of %" PRIu32, worker,
                       rb->nw);
    if (records_len % rec_bytes != 0)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                       "records are %" PRIu64 " bytes, not a whole number of %" PRIu64
                       "-byte records (S, C, V[%" PRIu32 "])",
                       records_len, rec_bytes, rb->nw);
    n = records_len / rec_bytes;
    for (uint64_t i = 0; i < n; i++, p += rec_bytes) {
        uint64_t s = flr_load_u64(p);

        if (rb_map_find(&rb->rec_index, s))
            continue;
        if (rb->nrecs >= UINT32_MAX ||
            (rv = rb_grow((void **)&rb->recs, &rb->recs_cap, rb->nrecs + 1, sizeof(*rb->recs))) !=
                0 ||
            (rv = rb_grow((void **)&rb->recv, &rb->recv_cap, (rb->nrecs + 1) * rb->nw,
                          sizeof(*rb->recv))) != 0 ||
            (rv = rb_map_insert(&rb->rec_index, s, (uint32_t)rb->nrecs)) != 0)
            return rb_fail(why, whylen, FLR_ENOMEM, "out of memory keeping records");
        rb->recs[rb->nrecs].s = s;
        rb->recs[rb->nrecs].c = (int64_t)flr_load_u64(p + 8);
        for (uint32_t w = 0; w < rb->nw; w++)
            rb->recv[rb->nrecs * rb->nw + w] = flr_load_u64(p + 16 + (size_t)w * 8);
        rb->nrecs++;
        if (s > rb->max_stamp)
            rb->max_stamp = s;
    }
    rb->workers[worker].answered = 1;
    rb->workers[worker].man = *m;
    return 0;
}

int flr_rebuild_add_copies(struct flr_rebuild *rb, uint32_t worker, uint32_t table,
                           const void *keys, uint32_t n, const void *rows, uint64_t rows_len,
                           char *why, size_t whylen)
{
    struct flr_tshard *t = flr_store_table(rb->store, table);
    const unsigned char *k = keys, *r = rows;
    size_t rb_bytes, fb;
    int rv;

    if (!t)
        return rb_fail(why, whylen, FLR_EUNKNOWN_TABLE, "unknown table %" PRIu32, table);
    if ((rv = flr_keys_check_sorted(keys, n)) != 0)
        return rb_fail(why, whylen, rv, "keys of table %" PRIu32 " are not sorted and unique",
                       table);
    if ((rv = flr_tshard_check_keys(t, keys, n, why, whylen)) != 0)
        return rv;
    rb_bytes = flr_tshard_row_bytes(t);
    fb = rb_bytes - 12; /* the row's floats, before its u64 stamp and u32 steps */
    if (rows_len != (uint64_t)n * rb_bytes)
        return rb_fail(why, whylen, FLR_EVALUE_LEN,
                       "rows are %" PRIu64 " bytes, expected %" PRIu32 " x %zu of table %" PRIu32,
                       rows_len, n, rb_bytes, table);
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *row = r + (size_t)i * rb_bytes;
        uint64_t key = flr_load_u64(k + (size_t)i * 8), s = flr_load_u64(row + fb);
        struct rb_slot *rec = rb_map_find(&rb->rec_index, s);
        struct rb_row *x;

        if (s > rb->max_stamp)
            rb->max_stamp = s;
        if (!rec) {
            rb->copies_ignored++;
            continue;
        }
        if (!(x = rb_row_get(rb, key, 1, &rv)))
            return rb_fail(why, whylen, rv, "out of memory keeping rows");
        if ((x->flags & RB_ROW_COPY) && x->s >= s)
            continue;
        if ((rv = flr_tshard_import(t, k + (size_t)i * 8, 1, row)) != 0)
            return rb_fail(why, whylen, rv, "cannot import key 0x%016" PRIx64 ": %s", key,
                           flr_strerror(rv));
        x->flags |= RB_ROW_COPY;
        x->s = s;
        x->rec = rec->val;
    }
    return 0;
}

int flr_rebuild_add_entry(struct flr_rebuild *rb, uint32_t worker, nng_msg *msg,
                          const struct flr_rebuild_entry *e, char *why, size_t whylen)
{
    struct flr_tshard *t;
    int rv;

    if (worker >= rb->nw)
        return rb_fail(why, whylen, FLR_EINVAL, "worker %" PRIu32 " of a job of %" PRIu32, worker,
                       rb->nw);
    if (!(t = flr_store_table(rb->store, e->table)))
        return rb_fail(why, whylen, FLR_EUNKNOWN_TABLE,
                       "log entry pseq %" PRIu64 " names unknown table %" PRIu32, e->pseq,
                       e->table);
    if (e->nkeys == 0)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST, "log entry pseq %" PRIu64 " has no keys",
                       e->pseq);
    if (rb->spec->consistency == FLR_BSP && e->clock < 0)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                       "log entry pseq %" PRIu64 " has clock %" PRId64 " under BSP", e->pseq,
                       e->clock);
    if (rb->spec->consistency == FLR_BSP && !msg)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                       "a BSP log entry needs its message: it may be held");
    if ((rv = flr_keys_check_sorted(e->keys, e->nkeys)) != 0)
        return rb_fail(why, whylen, rv, "log entry pseq %" PRIu64 ": keys not sorted and unique",
                       e->pseq);
    if ((rv = flr_tshard_check_push(t, e->keys, e->nkeys, e->grads, e->grads_len, why, whylen)) !=
        0)
        return rv;
    if ((rv = rb_grow((void **)&rb->entries, &rb->entries_cap, rb->nentries + 1,
                      sizeof(*rb->entries))) != 0)
        return rb_fail(why, whylen, rv, "out of memory keeping log entries");
    rb->entries[rb->nentries++] = (struct rb_entry){.worker = worker, .e = *e, .msg = msg};
    return 0;
}

int flr_rebuild_add_contained(struct flr_rebuild *rb, uint32_t worker, uint64_t pseq, char *why,
                              size_t whylen)
{
    struct rb_worker *w;

    if (worker >= rb->nw)
        return rb_fail(why, whylen, FLR_EINVAL, "worker %" PRIu32 " of a job of %" PRIu32, worker,
                       rb->nw);
    w = &rb->workers[worker];
    if (!w->answered)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                       "contained entry pseq %" PRIu64 " before the worker's manifest", pseq);
    if (pseq > w->contained)
        w->contained = pseq;
    w->ncontained++;
    return 0;
}

void flr_rebuild_drop_worker(struct flr_rebuild *rb, uint32_t worker)
{
    size_t keep = 0;

    if (worker >= rb->nw)
        return;
    rb->workers[worker].answered = 0;
    memset(&rb->workers[worker].man, 0, sizeof(rb->workers[worker].man));
    rb->workers[worker].contained = rb->workers[worker].ncontained = 0;
    for (size_t i = 0; i < rb->nentries; i++) {
        if (rb->entries[i].worker == worker) {
            if (rb->entries[i].msg)
                nng_msg_free(rb->entries[i].msg);
            continue;
        }
        rb->entries[keep++] = rb->entries[i];
    }
    rb->nentries = keep;
}

/* ---- replay ----------------------------------------------------------------------------- */

static int rb_cmp_u64(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

/* (worker, pseq): the order a clock's pushes are summed in, and the order of the
 * unacknowledged entries. */
static int rb_cmp_worker_pseq(const void *a, const void *b)
{
    const struct rb_entry *x = a, *y = b;

    if (x->worker != y->worker)
        return x->worker < y->worker ? -1 : 1;
    return rb_cmp_u64(x->e.pseq, y->e.pseq);
}

/* BSP: by clock, then (worker, pseq). */
static int rb_cmp_clock(const void *a, const void *b)
{
    const struct rb_entry *x = a, *y = b;

    if (x->e.clock != y->e.clock)
        return x->e.clock < y->e.clock ? -1 : 1;
    return rb_cmp_worker_pseq(a, b);
}

/* ASP and SSP: acknowledged entries by the stamp they were applied at, then the others. */
static int rb_cmp_acked(const void *a, const void *b)
{
    const struct rb_entry *x = a, *y = b;

    if ((x->e.acked == 0) != (y->e.acked == 0))
        return x->e.acked == 0 ? 1 : -1;
    if (x->e.acked != y->e.acked)
        return rb_cmp_u64(x->e.acked, y->e.acked);
    return rb_cmp_worker_pseq(a, b);
}

/* Drops entries given twice (the same worker and pseq), keeping the first. */
static void rb_dedupe(struct flr_rebuild *rb)
{
    size_t keep = 0;

    if (rb->nentries == 0)
        return;
    qsort(rb->entries, rb->nentries, sizeof(*rb->entries), rb_cmp_worker_pseq);
    for (size_t i = 0; i < rb->nentries; i++) {
        if (keep > 0 && rb_cmp_worker_pseq(&rb->entries[keep - 1], &rb->entries[i]) == 0) {
            if (rb->entries[i].msg)
                nng_msg_free(rb->entries[i].msg);
            continue;
        }
        rb->entries[keep++] = rb->entries[i];
    }
    rb->nentries = keep;
}

/* Whether the row's copy already contains entry x. */
static int rb_contains(const struct flr_rebuild *rb, const struct rb_row *row,
                       const struct rb_entry *x)
{
    if (!row || !(row->flags & RB_ROW_COPY))
        return 0;
    if (rb->spec->consistency == FLR_BSP)
        return x->e.clock < rb->recs[row->rec].c;
    return x->e.pseq <= rb->recv[(size_t)row->rec * rb->nw + x->worker];
}

/*
 * Restricts entry x to the rows whose copy does not contain it, marking every row it
 * touches.  Sets *keys and *grads and *n: the entry's own blobs while every row needs it
 * (nothing is copied), else the rows that do, copied from the first contained one on.
 */
static int rb_restrict(struct flr_rebuild *rb, const struct rb_entry *x, const void **keys,
                       const void **grads, uint32_t *n)
{
    const struct flr_tshard *t = flr_store_table(rb->store, x->e.table);
    const size_t gb = (size_t)flr_tshard_spec(t)->dim * sizeof(float);
    const unsigned char *k = x->e.keys, *g = x->e.grads;
    uint32_t m = 0;
    int cut = 0, rv;

    for (uint32_t i = 0; i < x->e.nkeys; i++) {
        struct rb_row *row = rb_row_get(rb, flr_load_u64(k + (size_t)i * 8), 1, &rv);

        if (!row)
            return rv;
        row->flags |= RB_ROW_TOUCHED;
        if (rb_contains(rb, row, x)) {
            if (cut)
                continue;
            /* The first row left out: the m rows before it all go, copy them. */
            if ((rv = rb_grow((void **)&rb->sub_keys, &rb->sub_keys_cap, (size_t)x->e.nkeys * 8,
                              1)) != 0 ||
                (rv = rb_grow((void **)&rb->sub_grads, &rb->sub_grads_cap, (size_t)x->e.nkeys * gb,
                              1)) != 0)
                return rv;
            memcpy(rb->sub_keys, k, (size_t)m * 8);
            memcpy(rb->sub_grads, g, (size_t)m * gb);
            cut = 1;
            continue;
        }
        if (cut) {
            memcpy(rb->sub_keys + (size_t)m * 8, k + (size_t)i * 8, 8);
            memcpy(rb->sub_grads + (size_t)m * gb, g + (size_t)i * gb, gb);
        }
        m++;
    }
    *n = m;
    *keys = cut ? rb->sub_keys : x->e.keys;
    *grads = cut ? rb->sub_grads : x->e.grads;
    return 0;
}

/* Marks the rows an entry touches without replaying it (a held BSP push). */
static int rb_touch(struct flr_rebuild *rb, const struct rb_entry *x)
{
    const unsigned char *k = x->e.keys;
    int rv;

    for (uint32_t i = 0; i < x->e.nkeys; i++) {
        struct rb_row *row = rb_row_get(rb, flr_load_u64(k + (size_t)i * 8), 1, &rv);
        if (!row)
            return rv;
        row->flags |= RB_ROW_TOUCHED;
    }
    return 0;
}

static int rb_spec_index(const struct flr_job_spec *spec, uint32_t table)
{
    for (uint32_t i = 0; i < spec->ntables; i++)
        if (spec->tables[i].id == table)
            return (int)i;
    return -1;
}

/*
 * BSP.  The clocks below `closed` are closed again, each exactly as shard_close_clocks()
 * (shard.c) closes one: its pushes summed per row in (worker, pseq) order, then one
 * optimizer step per touched table with one stamp for the clock.  A row takes a clock's
 * push only when its copy does not contain the clock.  Later clocks' entries are held.
 */
static int rb_replay_bsp(struct flr_rebuild *rb, struct flr_rebuild_result *r, uint64_t *stamp)
{
    int64_t closed = INT64_MIN;
    size_t i = 0, nheld = 0;
    int rv;

    for (uint32_t w = 0; w < rb->nw; w++)
        if (rb->workers[w].answered && !(rb->removed && rb->removed[w]) &&
            (closed == INT64_MIN || rb->workers[w].man.clock < closed))
            closed = rb->workers[w].man.clock;
    /* A copy read with clock C closed proves every clock below C was closed. */
    for (size_t j = 0; j < rb->nrows; j++)
        if ((rb->rows[j].flags & RB_ROW_COPY) && rb->recs[rb->rows[j].rec].c > closed)
            closed = rb->recs[rb->rows[j].rec].c;
    if (closed < 0)
        closed = 0;

    qsort(rb->entries, rb->nentries, sizeof(*rb->entries), rb_cmp_clock);
    while (i < rb->nentries && rb->entries[i].e.clock < closed) {
        const int64_t c = rb->entries[i].e.clock;
        uint8_t touched[FLR_MAX_TABLES] = {0};
        int any = 0;

        for (; i < rb->nentries && rb->entries[i].e.clock == c; i++) {
            struct rb_entry *x = &rb->entries[i];
            struct flr_tshard *t = flr_store_table(rb->store, x->e.table);
            const void *keys, *grads;
            uint32_t n;

            if ((rv = rb_tick(rb, i)) != 0)
                return rv;
            if ((rv = rb_restrict(rb, x, &keys, &grads, &n)) != 0)
                return rv;
            if (rb->workers[x->worker].answered && x->e.pseq > r->frontier[x->worker])
                r->frontier[x->worker] = x->e.pseq;
            if (n == 0) {
                r->entries_skipped++;
                continue;
            }
            /* An entry's own buffers live as long as the rebuild; a restricted one's are
             * reused by the next rb_restrict(). */
            if ((rv = keys == x->e.keys ? flr_tshard_accumulate_ref(t, keys, n, grads)
                                        : flr_tshard_accumulate(t, keys, n, grads)) != 0)
                return rv;
            touched[rb_spec_index(rb->spec, x->e.table)] = 1;
            any = 1;
            r->entries_replayed++;
        }
        if (!any)
            continue;
        for (uint32_t k = 0; k < rb->spec->ntables; k++)
            if (touched[k] &&
                (rv = flr_tshard_apply_accumulated(
                     flr_store_table(rb->store, rb->spec->tables[k].id), *stamp)) != 0)
                return rv;
        (*stamp)++;
    }

    for (size_t j = i; j < rb->nentries; j++)
        if ((rv = rb_touch(rb, &rb->entries[j])) != 0)
            return rv;
    if (i < rb->nentries && !(r->held = calloc(rb->nentries - i, sizeof(*r->held))))
        return FLR_ENOMEM;
    for (uint32_t w = 0; w < rb->nw; w++)
        if (rb->workers[w].answered && rb->workers[w].man.pseq_truncated > r->frontier[w])
            r->frontier[w] = rb->workers[w].man.pseq_truncated;

    /* Nothing can fail from here on: hand the open clocks' pushes over. */
    for (size_t j = i; j < rb->nentries; j++) {
        struct rb_entry *x = &rb->entries[j];
        struct flr_msg *m = &r->held[nheld].m;

        memset(m, 0, sizeof(*m));
        m->type = FLR_MSG_PUSH;
        m->job = rb->spec->job;
        m->job_len = (uint32_t)strlen(rb->spec->job);
        m->sender = x->worker;
        m->shard = rb->shard;
        /* The shard orders a clock's held pushes by request id within a worker. */
        m->request_id = x->e.pseq;
        m->seq = x->e.pseq;
        m->clock = x->e.clock;
        m->table = x->e.table;
        m->keys = x->e.keys;
        m->nkeys = x->e.nkeys;
        m->vals = x->e.grads;
        m->vals_len = x->e.grads_len;
        r->held[nheld++].msg = x->msg;
        x->msg = NULL;
    }
    r->nheld = nheld;
    return 0;
}

/*
 * ASP and SSP.  Entries go in the order the lost shard applied them, as far as the
 * acknowledgements tell (their stamps), then the unacknowledged ones in (worker, pseq)
 * order; each to the rows whose copy does not contain it, one stamp per entry.
 */
static int rb_replay_async(struct flr_rebuild *rb, struct flr_rebuild_result *r, uint64_t *stamp)
{
    int rv;

    qsort(rb->entries, rb->nentries, sizeof(*rb->entries), rb_cmp_acked);
    for (size_t i = 0; i < rb->nentries; i++) {
        struct rb_entry *x = &rb->entries[i];
        const void *keys, *grads;
        uint32_t n;

        if ((rv = rb_tick(rb, i)) != 0)
            return rv;
        if ((rv = rb_restrict(rb, x, &keys, &grads, &n)) != 0)
            return rv;
        if (x->e.pseq > r->frontier[x->worker])
            r->frontier[x->worker] = x->e.pseq;
        if (n == 0) {
            r->entries_skipped++;
            continue;
        }
        if ((rv = flr_tshard_apply(flr_store_table(rb->store, x->e.table), keys, n, grads,
                                   *stamp)) != 0)
            return rv;
        (*stamp)++;
        r->entries_replayed++;
    }
    /* Every push a worker sent is in its log or contained in the copies; for a worker
     * that did not answer the records are all there is. */
    for (size_t j = 0; j < rb->nrecs; j++)
        for (uint32_t w = 0; w < rb->nw; w++)
            if (rb->recv[j * rb->nw + w] > r->frontier[w])
                r->frontier[w] = rb->recv[j * rb->nw + w];
    for (uint32_t w = 0; w < rb->nw; w++)
        if (rb->workers[w].answered && rb->workers[w].man.pseq_sent > r->frontier[w])
            r->frontier[w] = rb->workers[w].man.pseq_sent;
    return 0;
}

/* Counts rows by where they came from; dense rows with nothing are lost. */
static void rb_count_rows(struct flr_rebuild *rb, struct flr_rebuild_result *r)
{
    for (size_t j = 0; j < rb->nrows; j++) {
        if (rb->rows[j].flags & RB_ROW_COPY)
            r->rows_rebuilt++;
        else if (rb->rows[j].flags & RB_ROW_TOUCHED)
            r->rows_from_log++;
    }
    for (uint32_t k = 0; k < rb->spec->ntables; k++) {
        const struct flr_table_spec *ts = &rb->spec->tables[k];
        uint64_t lo, hi;

        if (ts->kind != FLR_TABLE_DENSE)
            continue;
        flr_shard_dense_range(rb->spec, ts, rb->shard, &lo, &hi);
        for (uint64_t row = lo; row < hi; row++)
            if (!rb_map_find(&rb->row_index, flr_key(ts->id, row)))
                r->rows_lost++;
    }
}

/* Gives every dense row that no copy filled its initial value: the store may have been
 * opened without them (FLR_STORE_UNINIT), and the replay starts from it. */
static void rb_init_uncopied(struct flr_rebuild *rb)
{
    for (uint32_t k = 0; k < rb->spec->ntables; k++) {
        const struct flr_table_spec *ts = &rb->spec->tables[k];
        struct flr_tshard *t = flr_store_table(rb->store, ts->id);
        uint64_t lo, hi;

        if (ts->kind != FLR_TABLE_DENSE)
            continue;
        flr_shard_dense_range(rb->spec, ts, rb->shard, &lo, &hi);
        for (uint64_t row = lo; row < hi; row++) {
            struct rb_slot *sl = rb_map_find(&rb->row_index, flr_key(ts->id, row));
            if (!sl || !(rb->rows[sl->val].flags & RB_ROW_COPY))
                (void)flr_tshard_init_row(t, row);
        }
    }
}

int flr_rebuild_finish(struct flr_rebuild *rb, struct flr_rebuild_result *r)
{
    uint64_t stamp;
    int rv;

    memset(r, 0, sizeof(*r));
    r->nworkers = rb->nw;
    if (!(r->clock = calloc(rb->nw ? rb->nw : 1, sizeof(*r->clock))) ||
        !(r->frontier = calloc(rb->nw ? rb->nw : 1, sizeof(*r->frontier)))) {
        rv = FLR_ENOMEM;
        goto fail;
    }
    rb_dedupe(rb);
    rb_init_uncopied(rb);
    for (size_t i = 0; i < rb->nentries; i++)
        if (rb->entries[i].e.acked > rb->max_stamp)
            rb->max_stamp = rb->entries[i].e.acked;
    /* Replayed updates are stamped above everything the lost shard had stamped. */
    stamp = rb->max_stamp + 1;
    rv = rb->spec->consistency == FLR_BSP ? rb_replay_bsp(rb, r, &stamp)
                                          : rb_replay_async(rb, r, &stamp);
    if (rv != 0)
        goto fail;
    for (uint32_t w = 0; w < rb->nw; w++) {
        const struct rb_worker *x = &rb->workers[w];
        r->clock[w] = x->answered ? x->man.clock : -1;
        r->workers += x->answered ? 1 : 0;
        /* Pushes the copies contain that their worker did not send: applied, so passed. */
        if (x->answered && x->contained > r->frontier[w])
            r->frontier[w] = x->contained;
        r->entries_skipped += x->answered ? x->ncontained : 0;
    }
    r->stamp = stamp;
    rb_count_rows(rb, r);
    rb_entries_free(rb);
    return 0;

fail:
    flr_rebuild_result_free(r);
    return rv;
}

/* ---- the network part ------------------------------------------------------------------- */

enum rb_phase { RB_ABSENT, RB_MANIFEST, RB_STREAM, RB_DONE, RB_FAILED };

static const char *const rb_phase_name[] = {"absent", "manifest", "copies and log", "done",
                                            "failed"};

/* How often the worker list is read again while nothing failed. */
#define RB_RELIST_MS 1000

/* Requests in flight: at most RB_DEPTH_MAX per worker and, in all, about RB_INFLIGHT_MAX
 * (each answer is a page of up to 16 MiB, or one log entry) but at least one per worker.
 * Several in flight let the worker gather the next pages while this thread imports one. */
#define RB_DEPTH_MAX    4
#define RB_INFLIGHT_MAX 16

/* One request: copies of table in keys [lo, hi), or (table FLR_REBUILD_LOG) the first log
 * entry with lo < pseq < hi; hi 0 = no end.  An answer that does not finish its range
 * names where to go on (aux), and the rest is asked for again. */
struct rb_range {
    uint32_t table;
    uint64_t lo, hi;
};

/* A request slot of a worker. */
struct rb_req {
    struct flr_call call; /* initialised while the worker's connection is open */
    int busy;
    int done; /* set on nng's thread (atomically) when the answer is in */
    struct rb_range range;
};

/* One worker as the rebuild talks to it. */
struct rb_peer {
    uint32_t id;
    enum rb_phase phase;
    char endpoint[FLR_ENDPOINT_MAX];
    struct flr_conn *conn;
    struct rb_req reqs[RB_DEPTH_MAX];
    uint32_t nbusy;
    int closing;           /* failed: its answers still in flight are taken and dropped, then it
                              is disconnected (closing a socket with requests in flight can hang
                              nng 1.5's close) */
    struct rb_range *todo; /* ranges still to ask for, [todo_head, ntodo) */
    size_t todo_head, ntodo, todo_cap;
    int64_t retry_at; /* RB_FAILED: when to ask again */
};

struct rb_net {
    const struct flr_rebuild_cfg *cfg;
    struct flr_shard *sh;
    struct flr_rebuild *rb;
    uint32_t npeers, depth;
    struct rb_peer *peers;
    msgpack_zone zone;
    uint64_t next_id;
    uint64_t bytes;
    int64_t listed_ms;        /* when /workers was last read */
    struct flr_waitgroup *wg; /* every request; woken as each answer comes in */
};

/* Runs on nng's thread when a request completes, before the wait group counts it. */
static void rb_req_done(struct flr_call *call)
{
    struct rb_req *q = call->arg;

    __atomic_store_n(&q->done, 1, __ATOMIC_RELEASE);
}

static void rb_peer_disconnect(struct rb_peer *p)
{
    if (!p->conn)
        return;
    /* Every call must be finished before its connection closes (fini waits for it). */
    for (uint32_t i = 0; i < RB_DEPTH_MAX; i++) {
        flr_call_cancel(&p->reqs[i].call);
        flr_call_fini(&p->reqs[i].call);
        p->reqs[i].busy = 0;
        p->reqs[i].done = 0;
    }
    flr_conn_close(p->conn);
    p->conn = NULL;
    p->nbusy = 0;
    p->closing = 0;
    p->todo_head = p->ntodo = 0;
}

/* Starts over with a worker at endpoint: MANIFEST first.  What it sent before is dropped. */
static int rb_peer_restart(struct rb_net *n, struct rb_peer *p, const char *endpoint)
{
    char why[256];
    int rv;

    rb_peer_disconnect(p);
    flr_rebuild_drop_worker(n->rb, p->id);
    snprintf(p->endpoint, sizeof(p->endpoint), "%s", endpoint);
    if ((rv = flr_conn_open(&p->conn, endpoint, n->cfg->lim->max_size, why, sizeof(why))) != 0) {
        flr_warn("srv.rebuild", "shard %u: cannot dial worker %u at %s: %s", n->cfg->shard, p->id,
                 endpoint, why);
        p->conn = NULL;
        return rv;
    }
    for (uint32_t i = 0; i < RB_DEPTH_MAX; i++) {
        if ((rv = flr_call_init(&p->reqs[i].call)) != 0) {
            while (i-- > 0)
                flr_call_fini(&p->reqs[i].call);
            flr_conn_close(p->conn);
            p->conn = NULL;
            return rv;
        }
        p->reqs[i].call.done = rb_req_done;
        p->reqs[i].call.arg = &p->reqs[i];
    }
    p->phase = RB_MANIFEST;
    return 0;
}

/* A worker failed: forget what it sent and ask it again after a pause. */
static void rb_peer_fail(struct rb_net *n, struct rb_peer *p, const char *what)
{
    flr_warn("srv.rebuild",
             "shard %u: worker %u (%s) failed while sending its %s: %s; asking it "
             "again",
             n->cfg->shard, p->id, p->endpoint, rb_phase_name[p->phase], what);
    /* The worker still answers: let its answers in flight come, then disconnect. */
    p->closing = 1;
    p->todo_head = p->ntodo = 0;
    flr_rebuild_drop_worker(n->rb, p->id);
    p->phase = RB_FAILED;
    p->retry_at = flr_now_ms() + n->cfg->retry_ms;
}

/* Whether /workers must be read again: periodically, and when a failed worker is due for
 * another try (its node may be gone, or name another endpoint). */
static int rb_list_due(const struct rb_net *n)
{
    const int64_t now = flr_now_ms();

    if (n->listed_ms == 0 || now - n->listed_ms >= RB_RELIST_MS)
        return 1;
    for (uint32_t w = 0; w < n->npeers; w++)
        if (n->peers[w].phase == RB_FAILED && now >= n->peers[w].retry_at)
            return 1;
    return 0;
}

/* Reads a worker's endpoint from its node.  Returns 0, FLR_EZK_NONODE or an error. */
static int rb_worker_endpoint(struct rb_net *n, uint32_t w, char *out, size_t len)
{
    char path[FLR_PATH_MAX], *data;
    json_t *doc, *ep;
    int dlen, rv;

    flr_job_node(path, sizeof(path), n->cfg->job, "workers", w);
    if ((rv = flr_zk_get(n->cfg->zk, path, 0, &data, &dlen, NULL, NULL)) != 0)
        return rv;
    doc = json_loadb(data, (size_t)dlen, 0, NULL);
    free(data);
    ep = json_object_get(doc, "endpoint");
    rv = json_is_string(ep) && json_string_length(ep) > 0 && json_string_length(ep) < len
             ? 0
             : FLR_EFORMAT;
    if (rv == 0)
        snprintf(out, len, "%s", json_string_value(ep));
    json_decref(doc);
    return rv;
}

/* Reads /workers: starts talking to workers that appeared (or are due for another try)
 * and forgets those whose node is gone. */
static int rb_list(struct rb_net *n)
{
    char path[FLR_PATH_MAX], **names = NULL, ep[FLR_ENDPOINT_MAX];
    uint8_t *listed;
    int nn = 0, rv;

    if (!(listed = calloc(n->npeers ? n->npeers : 1, 1)))
        return FLR_ENOMEM;
    flr_job_path(path, sizeof(path), n->cfg->job, "/workers");
    if ((rv = flr_zk_children(n->cfg->zk, path, 0, &names, &nn)) != 0)
        goto out;
    for (int i = 0; i < nn; i++) {
        char *end;
        unsigned long w = strtoul(names[i], &end, 10);
        struct rb_peer *p;

        if (*end || w >= n->npeers)
            continue;
        p = &n->peers[w];
        if (p->phase == RB_DONE) {
            listed[w] = 1;
            continue;
        }
        rv = rb_worker_endpoint(n, (uint32_t)w, ep, sizeof(ep));
        if (rv == FLR_EZK_NONODE)
            continue;
        if (rv == FLR_EFORMAT) {
            /* A worker that has not published its endpoint yet: look again later. */
            listed[w] = 1;
            continue;
        }
        if (rv != 0)
            goto out;
        listed[w] = 1;
        if (p->phase == RB_ABSENT ||
            (p->phase == RB_FAILED && !p->closing && flr_now_ms() >= p->retry_at) ||
            (p->phase != RB_FAILED && strcmp(ep, p->endpoint) != 0)) {
            if (rb_peer_restart(n, p, ep) != 0) {
                p->phase = RB_FAILED;
                p->retry_at = flr_now_ms() + n->cfg->retry_ms;
            }
        }
    }
    for (uint32_t w = 0; w < n->npeers; w++) {
        struct rb_peer *p = &n->peers[w];
        if (listed[w] || p->phase == RB_ABSENT || p->phase == RB_DONE)
            continue;
        flr_notice("srv.rebuild", "shard %u: worker %u is gone; rebuilding without it",
                   n->cfg->shard, w);
        rb_peer_disconnect(p);
        flr_rebuild_drop_worker(n->rb, w);
        p->phase = RB_ABSENT;
    }
    rv = 0;
    n->listed_ms = flr_now_ms();
out:
    flr_zk_free_names(names, nn);
    free(listed);
    return rv;
}

/* Queues a range to ask the worker for (a drained queue starts again at its front, so a
 * long stream of follow-up ranges does not grow it). */
static int rb_todo(struct rb_peer *p, uint32_t table, uint64_t lo, uint64_t hi)
{
    int rv;

    if (p->todo_head == p->ntodo)
        p->todo_head = p->ntodo = 0;
    rv = rb_grow((void **)&p->todo, &p->todo_cap, p->ntodo + 1, sizeof(*p->todo));

    if (rv == 0)
        p->todo[p->ntodo++] = (struct rb_range){table, lo, hi};
    return rv;
}

/* Sends a request in slot q: the manifest (range NULL) or a range. */
static int rb_ask(struct rb_net *n, struct rb_peer *p, struct rb_req *q,
                  const struct rb_range *range)
{
    struct flr_msg m = {0};
    nng_msg *req;
    int rv;

    m.type = range ? FLR_MSG_REBUILD_REQ : FLR_MSG_MANIFEST_REQ;
    m.job = n->cfg->job;
    m.job_len = (uint32_t)strlen(n->cfg->job);
    m.sender = n->cfg->self;
    m.shard = n->cfg->shard;
    m.shard_epoch = flr_shard_epoch(n->sh);
    m.request_id = ++n->next_id;
    if (range) {
        m.table = range->table;
        m.aux = range->lo;
        m.seq = range->hi;
        q->range = *range;
    }
    if ((rv = flr_msg_to_nng(&req, &m, NULL)) != 0)
        return rv;
    q->busy = 1;
    q->done = 0;
    p->nbusy++;
    flr_call_start(&q->call, p->conn, req, n->cfg->call_timeout_ms, n->wg);
    return 0;
}

/* Fills the worker's free slots: its manifest first, then its ranges. */
static int rb_peer_ask(struct rb_net *n, struct rb_peer *p)
{
    int rv;

    if (p->phase == RB_MANIFEST)
        return p->nbusy == 0 ? rb_ask(n, p, &p->reqs[0], NULL) : 0;
    for (uint32_t i = 0; i < n->depth && p->todo_head < p->ntodo; i++) {
        if (p->reqs[i].busy)
            continue;
        if ((rv = rb_ask(n, p, &p->reqs[i], &p->todo[p->todo_head])) != 0)
            return rv;
        p->todo_head++;
    }
    return 0;
}

/* Reads a non-negative integer member of a JSON object; absent reads as dflt when dflt is
 * not UINT64_MAX. */
static int rb_json_u64(json_t *doc, const char *name, uint64_t dflt, uint64_t *v)
{
    json_t *x = json_object_get(doc, name);

    if (!x && dflt != UINT64_MAX) {
        *v = dflt;
        return 0;
    }
    if (!json_is_integer(x) || json_integer_value(x) < 0)
        return FLR_EFORMAT;
    *v = (uint64_t)json_integer_value(x);
    return 0;
}

/* The longest stretch of pseqs asked for one by one; a log with more gaps than entries is
 * read in order instead. */
#define RB_LOG_GAPS(entries) (4 * (entries) + 64)

/*
 * Queues what the worker will be asked for after its manifest: each table's copies in the
 * ranges between the page starts the worker listed (all of a table it listed none for),
 * then each logged pseq on its own, then anything logged after the manifest.
 */
static int rb_plan(struct rb_net *n, struct rb_peer *p, const struct flr_rebuild_manifest *man,
                   uint64_t log_entries, const unsigned char *pages, uint64_t npages, char *why,
                   size_t whylen)
{
    const struct flr_job_spec *spec = n->cfg->spec;
    uint64_t j = 0, lo;
    int rv;

    p->todo_head = p->ntodo = 0;
    for (uint32_t t = 0; t < spec->ntables; t++) {
        const uint32_t id = spec->tables[t].id;
        uint64_t from = 0;

        /* The worker lists pages table by table in the spec's order, keys ascending. */
        for (; j < npages && flr_load_u64(pages + j * 16) == id; j++) {
            uint64_t key = flr_load_u64(pages + j * 16 + 8);
            if (key <= from && from != 0)
                return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                               "manifest pages of table %" PRIu32 " are not ascending", id);
            if (key > from && (rv = rb_todo(p, id, from, key)) != 0)
                return rv;
            from = key;
        }
        if ((rv = rb_todo(p, id, from, 0)) != 0)
            return rv;
    }
    if (j < npages)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                       "manifest page %" PRIu64 " names table %" PRIu64
                       " out of the spec's order or unknown",
                       j, flr_load_u64(pages + j * 16));
    lo = man->pseq_truncated > man->incarnation ? man->pseq_truncated : man->incarnation;
    if (man->pseq_sent < lo)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                       "manifest pseq_sent %" PRIu64 " below its log's start %" PRIu64,
                       man->pseq_sent, lo);
    if (log_entries > 0 && man->pseq_sent - lo <= RB_LOG_GAPS(log_entries)) {
        for (uint64_t q = lo + 1; q <= man->pseq_sent; q++)
            if ((rv = rb_todo(p, FLR_REBUILD_LOG, q - 1, q + 1)) != 0)
                return rv;
        lo = man->pseq_sent;
    }
    return rb_todo(p, FLR_REBUILD_LOG, lo, 0);
}

static int rb_take_manifest(struct rb_net *n, struct rb_peer *p, const struct flr_msg *r, char *why,
                            size_t whylen)
{
    struct flr_rebuild_manifest man = {0};
    const uint64_t rec_bytes = (2 + (uint64_t)n->cfg->spec->num_workers) * 8;
    uint64_t worker, nrec, npages, log_entries;
    json_t *doc = json_loadb(r->text, r->text_len, 0, NULL), *c;
    int rv;

    c = json_object_get(doc, "clock");
    if (!json_is_object(doc) || rb_json_u64(doc, "worker", UINT64_MAX, &worker) != 0 ||
        !json_is_integer(c) || rb_json_u64(doc, "incarnation", UINT64_MAX, &man.incarnation) != 0 ||
        rb_json_u64(doc, "pseq_sent", UINT64_MAX, &man.pseq_sent) != 0 ||
        rb_json_u64(doc, "pseq_truncated", UINT64_MAX, &man.pseq_truncated) != 0 ||
        rb_json_u64(doc, "log_entries", 0, &log_entries) != 0 ||
        rb_json_u64(doc, "records", r->extra_len / rec_bytes, &nrec) != 0 ||
        rb_json_u64(doc, "pages", 0, &npages) != 0) {
        json_decref(doc);
        return rb_fail(why, whylen, FLR_EFORMAT,
                       "manifest is not {\"worker\",\"clock\",\"incarnation\",\"pseq_sent\","
                       "\"pseq_truncated\",...} with integers");
    }
    man.clock = (int64_t)json_integer_value(c);
    json_decref(doc);
    if (worker != p->id)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST, "manifest of worker %" PRIu64, worker);
    if (nrec > r->extra_len / rec_bytes || npages > r->extra_len / 16 ||
        nrec * rec_bytes + npages * 16 != r->extra_len)
        return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                       "manifest extra of %" PRIu64 " bytes for %" PRIu64 " records and %" PRIu64
                       " pages",
                       r->extra_len, nrec, npages);
    if ((rv = flr_rebuild_add_manifest(n->rb, p->id, &man, r->extra, nrec * rec_bytes, why,
                                       whylen)) != 0)
        return rv;
    if ((rv = rb_plan(n, p, &man, log_entries, (const unsigned char *)r->extra + nrec * rec_bytes,
                      npages, why, whylen)) != 0)
        return rv;
    p->phase = RB_STREAM;
    return 0;
}

/* Checks that an answer stays in its range and queues the rest of the range, if any. */
static int rb_go_on(struct rb_peer *p, const struct rb_range *g, const struct flr_msg *r, char *why,
                    size_t whylen)
{
    int rv;

    if (r->aux == UINT64_MAX)
        return 0;
    if (r->aux <= g->lo || (g->hi && r->aux >= g->hi))
        return rb_fail(why, whylen, FLR_EBAD_REQUEST,
                       "cursor %" PRIu64 " outside the range asked for (%" PRIu64 ", %" PRIu64 ")",
                       r->aux, g->lo, g->hi);
    rv = rb_todo(p, g->table, r->aux, g->hi);
    return rv ? rb_fail(why, whylen, rv, "out of memory") : 0;
}

/* Takes an answer: validates it, feeds the core and queues what is left.  Returns 0 or the
 * reason the worker failed (in why). */
static int rb_take_reply(struct rb_net *n, struct rb_peer *p, struct rb_req *q, char *why,
                         size_t whylen)
{
    nng_msg *reply = q->call.reply;
    const int manifest = p->phase == RB_MANIFEST;
    const struct rb_range *g = &q->range;
    struct flr_msg r;
    int rv;

    q->call.reply = NULL;
    q->busy = 0;
    p->nbusy--;
    if (q->call.rv != 0) {
        nng_msg_free(reply);
        return rb_fail(why, whylen, q->call.rv, "no answer: %s", flr_strerror(q->call.rv));
    }
    n->bytes += nng_msg_len(reply);
    if ((rv = flr_msg_decode(&r, nng_msg_body(reply), nng_msg_len(reply), n->cfg->lim, &n->zone,
                             why, whylen)) != 0)
        goto bad;
    if (r.type != (manifest ? FLR_MSG_MANIFEST : FLR_MSG_REBUILD_STREAM) || r.status != 0 ||
        r.shard != n->cfg->shard) {
        rv = r.status ? r.status : FLR_EBAD_REQUEST;
        flr_why(why, whylen, "%s (status %s, shard %" PRIu32 "): %.*s", flr_msg_type_name(r.type),
                flr_errname(r.status), r.shard, (int)r.reason_len, r.reason ? r.reason : "");
        goto bad;
    }
    if (manifest) {
        rv = rb_take_manifest(n, p, &r, why, whylen);
        nng_msg_free(reply);
        return rv;
    }
    if ((rv = rb_go_on(p, g, &r, why, whylen)) != 0)
        goto bad;
    if (g->table != FLR_REBUILD_LOG) {
        if (r.table != g->table) {
            rv = rb_fail(why, whylen, FLR_EBAD_REQUEST,
                         "copies of table %" PRIu32 " when table %" PRIu32 " was asked for",
                         r.table, g->table);
            goto bad;
        }
        if (r.nkeys > 0 &&
            (flr_load_u64(r.keys) < g->lo ||
             (g->hi && flr_load_u64((const unsigned char *)r.keys + (r.nkeys - 1) * 8) >= g->hi))) {
            rv = rb_fail(why, whylen, FLR_EBAD_REQUEST,
                         "copies outside the keys asked for [%" PRIu64 ", %" PRIu64 ")", g->lo,
                         g->hi);
            goto bad;
        }
        rv = flr_rebuild_add_copies(n->rb, p->id, g->table, r.keys, r.nkeys, r.vals, r.vals_len,
                                    why, whylen);
        nng_msg_free(reply);
        return rv;
    }
    /* The log: one entry per answer, none when the range holds none (seq 0). */
    if (r.nkeys == 0 && r.seq == 0) {
        nng_msg_free(reply);
        return 0;
    }
    if (r.seq <= g->lo || (g->hi && r.seq >= g->hi)) {
        rv = rb_fail(why, whylen, FLR_EBAD_REQUEST,
                     "log entry pseq %" PRIu64 " outside the range asked for (%" PRIu64 ", %" PRIu64
                     ")",
                     r.seq, g->lo, g->hi);
        goto bad;
    }
    if (r.nkeys == 0) {
        /* Its worker's copies show it contained: only the pseq came. */
        rv = flr_rebuild_add_contained(n->rb, p->id, r.seq, why, whylen);
        nng_msg_free(reply);
        return rv;
    }
    struct flr_rebuild_entry e = {.table = r.table,
                                  .clock = r.clock,
                                  .pseq = r.seq,
                                  .acked = r.stamp,
                                  .keys = r.keys,
                                  .nkeys = r.nkeys,
                                  .grads = r.vals,
                                  .grads_len = r.vals_len};
    if ((rv = flr_rebuild_add_entry(n->rb, p->id, reply, &e, why, whylen)) != 0)
        goto bad;
    return 0;

bad:
    nng_msg_free(reply);
    return rv;
}

/* Keeps the lease; nonzero when the caller wants the rebuild stopped. */
static int rb_keep_lease(struct rb_net *n)
{
    return n->cfg->keep_lease ? n->cfg->keep_lease(n->cfg->arg) : 0;
}

/* Takes every answer that is in.  Returns 0, or FLR_ENOMEM (the rebuild cannot go on). */
static int rb_take_answers(struct rb_net *n)
{
    char why[FLR_REASON_MAX];
    int rv;

    for (uint32_t w = 0; w < n->npeers; w++) {
        struct rb_peer *p = &n->peers[w];

        for (uint32_t i = 0; i < RB_DEPTH_MAX && p->conn; i++) {
            struct rb_req *q = &p->reqs[i];
            if (!q->busy || !__atomic_load_n(&q->done, __ATOMIC_ACQUIRE))
                continue;
            if (p->closing) {
                nng_msg_free(q->call.reply); /* from a worker that failed: dropped */
                q->call.reply = NULL;
                q->busy = 0;
                p->nbusy--;
                continue;
            }
            if ((rv = rb_take_reply(n, p, q, why, sizeof(why))) == FLR_ENOMEM)
                return rv;
            if (rv != 0)
                rb_peer_fail(n, p, why); /* its other answers are dropped */
        }
        if (p->closing && p->nbusy == 0)
            rb_peer_disconnect(p);
        if (p->phase == RB_STREAM && p->nbusy == 0 && p->todo_head == p->ntodo) {
            rb_peer_disconnect(p);
            p->phase = RB_DONE;
        }
    }
    return 0;
}

int flr_rebuild_shard(struct flr_shard *sh, const struct flr_rebuild_cfg *cfg,
                      struct flr_rebuild_result *r)
{
    struct rb_net n = {.cfg = cfg, .sh = sh, .npeers = cfg->spec->num_workers};
    const int64_t t0 = flr_now_ms();
    const uint64_t faults0 = flr_minor_faults();
    int64_t t1;
    uint64_t seen = 0;
    int rv;

    memset(r, 0, sizeof(*r));
    n.depth = n.npeers ? RB_INFLIGHT_MAX / n.npeers : 1;
    n.depth = n.depth < 1 ? 1 : n.depth > RB_DEPTH_MAX ? RB_DEPTH_MAX : n.depth;
    if ((rv = flr_rebuild_alloc(&n.rb, cfg->spec, flr_shard_store(sh), cfg->shard, cfg->removed)) ==
        0) {
        n.rb->tick = cfg->keep_lease;
        n.rb->tick_arg = cfg->arg;
    }
    if (rv != 0)
        return rv;
    if (!(n.peers = calloc(n.npeers ? n.npeers : 1, sizeof(*n.peers)))) {
        flr_rebuild_free(n.rb);
        return FLR_ENOMEM;
    }
    for (uint32_t w = 0; w < n.npeers; w++)
        n.peers[w].id = w;
    if ((rv = flr_waitgroup_alloc(&n.wg)) != 0) {
        free(n.peers);
        flr_rebuild_free(n.rb);
        return rv;
    }
    msgpack_zone_init(&n.zone, 4096);

    for (;;) {
        int active = 0, waiting = 0;

        if (flr_zk_expired(cfg->zk)) {
            rv = FLR_EZK_EXPIRED;
            goto out;
        }
        if (cfg->timeout_ms > 0 && flr_now_ms() - t0 > cfg->timeout_ms) {
            rv = FLR_ETIMEOUT;
            goto out;
        }
        if (rb_keep_lease(&n) != 0) {
            rv = FLR_ESHUTDOWN;
            goto out;
        }
        if (rb_list_due(&n) && (rv = rb_list(&n)) != 0)
            goto out;
        for (uint32_t w = 0; w < n.npeers; w++) {
            struct rb_peer *p = &n.peers[w];
            if (p->phase == RB_FAILED)
                waiting++;
            if (p->closing)
                active++; /* answers to drain */
            if (p->phase != RB_MANIFEST && p->phase != RB_STREAM)
                continue;
            if ((rv = rb_peer_ask(&n, p)) != 0)
                goto out;
            active++;
        }
        if (active == 0 && waiting == 0)
            break;
        if (active)
            (void)flr_waitgroup_wait_any(n.wg, &seen, 100);
        else
            usleep(50 * 1000); /* only failed workers left: pause before listing again */
        if ((rv = rb_take_answers(&n)) != 0)
            goto out;
    }
    t1 = flr_now_ms();
    if ((rv = flr_rebuild_finish(n.rb, r)) == 0) {
        r->bytes = n.bytes;
        r->ms = flr_now_ms() - t0;
        r->replay_ms = flr_now_ms() - t1;
        r->page_faults = flr_minor_faults() - faults0;
        if (flr_rebuild_copies_ignored(n.rb) > 0)
            flr_warn("srv.rebuild",
                     "shard %u: %llu copies ignored: no worker sent the record they were read at",
                     cfg->shard, (unsigned long long)flr_rebuild_copies_ignored(n.rb));
    }

out:
    /* Stop every call before anything it could call back into goes. */
    for (uint32_t w = 0; w < n.npeers; w++) {
        rb_peer_disconnect(&n.peers[w]);
        free(n.peers[w].todo);
    }
    msgpack_zone_destroy(&n.zone);
    flr_waitgroup_free(n.wg);
    free(n.peers);
    flr_rebuild_free(n.rb);
    return rv;
}
