/*
 * copies.c - the worker's copies, frontier records and update log (see copies.h).
 *
 * Per shard and table, copies live in an arena of rows in arrival order with an
 * open-addressing index key -> row.  Copies are never removed (a newer one overwrites in
 * place), so a page cursor over the sorted keys stays valid; the sorted key array is
 * rebuilt only when keys were added since the last page.
 *
 * Records are a sorted array of S, C, V[W] (u64 each).  A pull almost always reads at a
 * stamp larger than every record held, so inserting is an append.  When the array holds
 * more than twice the records found live at the last collection (plus a few), the rows are
 * scanned and records no row refers to are dropped: the cost is amortised over the
 * inserts.
 *
 * The log of a shard is an array of entries in pseq order, with a head index: truncation
 * advances the head, and the array is compacted when half of it is dead.
 */
#include "copies.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"

#define CP_META_BYTES 12 /* u64 stamp, u32 steps after the floats */

struct cp_table {
    const struct flr_table_spec *spec;
    size_t row_bytes;
    uint64_t *keys;      /* n, arrival order */
    unsigned char *rows; /* n * row_bytes */
    size_t n, cap;
    uint32_t *index; /* icap slots: row index + 1, 0 = empty */
    size_t icap;
    uint64_t *sorted; /* the keys in ascending order, valid when nsorted == n */
    size_t nsorted, sorted_cap;
};

struct cp_entry {
    uint64_t pseq;
    int64_t clock;
    uint32_t table, nkeys, dim;
    int acked;
    uint64_t stamp;
    uint64_t *keys; /* one block: keys, then grads */
    float *grads;
};

struct cp_shard {
    struct cp_table *tabs; /* one per spec table, NULL until the first copy */
    uint64_t *recs;        /* nrecs * rec_u64s, ascending S */
    size_t nrecs, recs_cap, live_recs;
    struct cp_entry *log; /* entries [head, nlog) are held */
    size_t head, nlog, log_cap;
    uint64_t counter;   /* pushes sent: the last pseq is inc + counter */
    uint64_t truncated; /* largest pseq truncated, 0 if none */
    uint64_t rows, log_bytes;
    uint64_t *sent_recs; /* the records of the last manifest, as sent (nsent * rec_u64s) */
    size_t nsent;
};

struct flr_copies {
    pthread_mutex_t mu;
    struct flr_job_spec spec;
    uint64_t inc;
    int64_t clock;
    size_t rec_u64s; /* 2 + num_workers */
    struct cp_shard *shards;
    uint64_t copy_bytes, log_bytes, log_entries, rows, records;
};

size_t flr_copies_row_bytes(const struct flr_table_spec *t)
{
    size_t width = (size_t)t->dim * (1 + flr_optim_nslots(t->optim));
    return width * sizeof(float) + CP_META_BYTES;
}

int flr_copies_alloc(struct flr_copies **cp, const struct flr_job_spec *spec, uint64_t inc)
{
    struct flr_copies *cs;

    if (spec->num_shards == 0 || spec->num_workers == 0)
        return FLR_EINVAL;
    if (!(cs = calloc(1, sizeof(*cs))))
        return FLR_ENOMEM;
    if (!(cs->shards = calloc(spec->num_shards, sizeof(*cs->shards)))) {
        free(cs);
        return FLR_ENOMEM;
    }
    pthread_mutex_init(&cs->mu, NULL);
    cs->spec = *spec;
    cs->inc = inc;
    cs->clock = 0;
    cs->rec_u64s = 2 + (size_t)spec->num_workers;
    *cp = cs;
    return 0;
}

static void cp_table_fini(struct cp_table *t)
{
    free(t->keys);
    free(t->rows);
    free(t->index);
    free(t->sorted);
}

void flr_copies_free(struct flr_copies *cs)
{
    if (!cs)
        return;
    for (uint32_t s = 0; s < cs->spec.num_shards; s++) {
        struct cp_shard *sh = &cs->shards[s];
        if (sh->tabs)
            for (uint32_t t = 0; t < cs->spec.ntables; t++)
                cp_table_fini(&sh->tabs[t]);
        free(sh->tabs);
        free(sh->recs);
        free(sh->sent_recs);
        for (size_t i = sh->head; i < sh->nlog; i++)
            free(sh->log[i].keys);
        free(sh->log);
    }
    free(cs->shards);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
}

void flr_copies_set_clock(struct flr_copies *cs, int64_t clock)
{
    pthread_mutex_lock(&cs->mu);
    cs->clock = clock;
    pthread_mutex_unlock(&cs->mu);
}

/* ---- copies ----------------------------------------------------------------------- */

/* The table's slot in a shard, allocating the shard's tables on first use.  Called with
 * the lock held.  Returns 0, FLR_EINVAL, FLR_EUNKNOWN_TABLE or FLR_ENOMEM. */
static int cp_table_of(struct flr_copies *cs, uint32_t shard, uint32_t table, int create,
                       struct cp_table **out)
{
    struct cp_shard *sh;
    uint32_t i;

    if (shard >= cs->spec.num_shards)
        return FLR_EINVAL;
    for (i = 0; i < cs->spec.ntables && cs->spec.tables[i].id != table; i++)
        ;
    if (i == cs->spec.ntables)
        return FLR_EUNKNOWN_TABLE;
    sh = &cs->shards[shard];
    if (!sh->tabs) {
        if (!create) {
            *out = NULL;
            return 0;
        }
        if (!(sh->tabs = calloc(cs->spec.ntables, sizeof(*sh->tabs))))
            return FLR_ENOMEM;
        for (uint32_t j = 0; j < cs->spec.ntables; j++) {
            sh->tabs[j].spec = &cs->spec.tables[j];
            sh->tabs[j].row_bytes = flr_copies_row_bytes(&cs->spec.tables[j]);
        }
    }
    *out = &sh->tabs[i];
    return 0;
}

static size_t cp_slot(const struct cp_table *t, uint64_t key)
{
    size_t mask = t->icap - 1, i = (size_t)flr_mix64(key) & mask;

    while (t->index[i] != 0 && t->keys[t->index[i] - 1] != key)
        i = (i + 1) & mask;
    return i;
}

/* Index of the row of key, or -1. */
static long cp_find(const struct cp_table *t, uint64_t key)
{
    size_t i;

    if (t->icap == 0)
        return -1;
    i = cp_slot(t, key);
    return t->index[i] ? (long)t->index[i] - 1 : -1;
}

/* Makes room for one more row: arena and index (kept at most half full). */
static int cp_reserve(struct cp_table *t)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        uint64_t *k = realloc(t->keys, cap * sizeof(*k));
        if (!k)
            return FLR_ENOMEM;
        t->keys = k;
        unsigned char *r = realloc(t->rows, cap * t->row_bytes);
        if (!r)
            return FLR_ENOMEM;
        t->rows = r;
        t->cap = cap;
    }
    if (2 * (t->n + 1) > t->icap) {
        size_t icap = t->icap ? t->icap * 2 : 128;
        uint32_t *old = t->index;
        size_t oldcap = t->icap;
        if (t->n + 1 > UINT32_MAX - 1)
            return FLR_ENOMEM;
        if (!(t->index = calloc(icap, sizeof(*t->index)))) {
            t->index = old;
            return FLR_ENOMEM;
        }
        t->icap = icap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i])
                t->index[cp_slot(t, t->keys[old[i] - 1])] = old[i];
        free(old);
    }
    return 0;
}

/* The stamp field of a stored row. */
static uint64_t cp_row_stamp(const struct cp_table *t, size_t idx)
{
    return flr_load_u64(t->rows + idx * t->row_bytes + t->row_bytes - CP_META_BYTES);
}

/* The row to write key's copy of stamp S into, or NULL when the copy held is as new. */
static int cp_row_for(struct flr_copies *cs, struct cp_shard *sh, struct cp_table *t, uint64_t key,
                      uint64_t S, unsigned char **row)
{
    long idx = cp_find(t, key);
    int rv;

    *row = NULL;
    if (idx >= 0) {
        if (cp_row_stamp(t, (size_t)idx) >= S)
            return 0;
        *row = t->rows + (size_t)idx * t->row_bytes;
        return 0;
    }
    if ((rv = cp_reserve(t)) != 0)
        return rv;
    t->keys[t->n] = key;
    t->index[cp_slot(t, key)] = (uint32_t)(t->n + 1);
    *row = t->rows + t->n * t->row_bytes;
    t->n++;
    sh->rows++;
    cs->rows++;
    cs->copy_bytes += sizeof(uint64_t) + t->row_bytes;
    return 0;
}

/* Position of the first record with stamp >= S. */
static size_t cp_rec_lower(const struct flr_copies *cs, const struct cp_shard *sh, uint64_t S)
{
    return flr_lower_bound_u64(sh->recs, sh->nrecs, cs->rec_u64s * sizeof(uint64_t), S);
}

/* Drops the records no copy of the shard refers to. */
static void cp_rec_collect(struct flr_copies *cs, struct cp_shard *sh)
{
    unsigned char *live = calloc(sh->nrecs ? sh->nrecs : 1, 1);
    size_t out = 0, w = cs->rec_u64s;

    if (!live)
        return; /* try again at the next insert */
    for (uint32_t ti = 0; sh->tabs && ti < cs->spec.ntables; ti++) {
        const struct cp_table *t = &sh->tabs[ti];
        for (size_t r = 0; r < t->n; r++) {
            uint64_t S = cp_row_stamp(t, r);
            size_t pos = cp_rec_lower(cs, sh, S);
            if (pos < sh->nrecs && sh->recs[pos * w] == S)
                live[pos] = 1;
        }
    }
    for (size_t i = 0; i < sh->nrecs; i++)
        if (live[i]) {
            if (out != i)
                memmove(sh->recs + out * w, sh->recs + i * w, w * sizeof(uint64_t));
            out++;
        }
    cs->records -= sh->nrecs - out;
    sh->nrecs = sh->live_recs = out;
    free(live);
}

/*
 * Adds the record (S, C, V).  Two records of one stamp describe the same state of the
 * shard (every applied update advances the stamp), so each claim holds for it and so does
 * their union: keep the larger C and the larger V[w].
 */
static int cp_rec_add(struct flr_copies *cs, struct cp_shard *sh, uint64_t S, int64_t C,
                      const void *V)
{
    size_t w = cs->rec_u64s, pos = cp_rec_lower(cs, sh, S);
    uint64_t *rec;

    if (pos < sh->nrecs && sh->recs[pos * w] == S) {
        rec = sh->recs + pos * w;
        if (C > (int64_t)rec[1])
            rec[1] = (uint64_t)C;
        for (size_t i = 0; V && i + 2 < w; i++) {
            uint64_t v = flr_load_u64((const unsigned char *)V + i * 8);
            if (v > rec[2 + i])
                rec[2 + i] = v;
        }
        return 0;
    }
    if (sh->nrecs > 2 * sh->live_recs + 8)
        cp_rec_collect(cs, sh);
    if (sh->nrecs == sh->recs_cap) {
        size_t cap = sh->recs_cap ? sh->recs_cap * 2 : 16;
        uint64_t *v = realloc(sh->recs, cap * w * sizeof(*v));
        if (!v)
            return FLR_ENOMEM;
        sh->recs = v;
        sh->recs_cap = cap;
    }
    pos = cp_rec_lower(cs, sh, S);
    rec = sh->recs + pos * w;
    memmove(rec + w, rec, (sh->nrecs - pos) * w * sizeof(*rec));
    rec[0] = S;
    rec[1] = (uint64_t)C;
    if (V)
        memcpy(rec + 2, V, (w - 2) * sizeof(uint64_t));
    else
        memset(rec + 2, 0, (w - 2) * sizeof(uint64_t));
    sh->nrecs++;
    cs->records++;
    return 0;
}

/* Common part of the two puts: vals holds n rows of src_bytes each (full rows, or the
 * value floats only when pulled). */
static int cp_put(struct flr_copies *cs, uint32_t shard, uint32_t table, const void *keys,
                  uint32_t n, const void *vals, int pulled, uint64_t S, int64_t C, const void *V)
{
    struct cp_table *t;
    struct cp_shard *sh;
    int rv, stored = 0;

    pthread_mutex_lock(&cs->mu);
    if ((rv = cp_table_of(cs, shard, table, 1, &t)) != 0)
        goto out;
    if (pulled && flr_optim_nslots(t->spec->optim) != 0) {
        rv = FLR_EINVAL; /* a pulled row lacks the slots: not a qualified copy */
        goto out;
    }
    sh = &cs->shards[shard];
    {
        size_t fb = t->row_bytes - CP_META_BYTES;
        size_t src_bytes = pulled ? (size_t)t->spec->dim * sizeof(float) : t->row_bytes;
        const unsigned char *src = vals;
        for (uint32_t i = 0; i < n; i++, src += src_bytes) {
            uint64_t key = flr_load_u64((const unsigned char *)keys + (size_t)i * 8);
            unsigned char *row;
            if ((rv = cp_row_for(cs, sh, t, key, S, &row)) != 0)
                break;
            if (!row)
                continue;
            memcpy(row, src, fb);
            memcpy(row + fb, &S, sizeof(S));
            if (pulled)
                memset(row + fb + 8, 0, 4);
            else
                memcpy(row + fb + 8, src + fb + 8, 4);
            stored = 1;
        }
    }
    if (stored) {
        int rv2 = cp_rec_add(cs, sh, S, C, V);
        if (!rv)
            rv = rv2;
    }
out:
    pthread_mutex_unlock(&cs->mu);
    return rv;
}

int flr_copies_put_rows(struct flr_copies *cs, uint32_t shard, uint32_t table, const void *keys,
                        uint32_t n, const void *rows, uint64_t S, int64_t C, const void *V)
{
    return cp_put(cs, shard, table, keys, n, rows, 0, S, C, V);
}

int flr_copies_put_pulled(struct flr_copies *cs, uint32_t shard, uint32_t table, const void *keys,
                          uint32_t n, const void *vals, uint64_t S, int64_t C, const void *V)
{
    return cp_put(cs, shard, table, keys, n, vals, 1, S, C, V);
}

int flr_copies_get(struct flr_copies *cs, uint32_t shard, uint32_t table, uint64_t key, void *row)
{
    struct cp_table *t;
    long idx;
    int rv;

    pthread_mutex_lock(&cs->mu);
    if ((rv = cp_table_of(cs, shard, table, 0, &t)) == 0) {
        if (t && (idx = cp_find(t, key)) >= 0)
            memcpy(row, t->rows + (size_t)idx * t->row_bytes, t->row_bytes);
        else
            rv = FLR_ENOT_FOUND;
    }
    pthread_mutex_unlock(&cs->mu);
    return rv;
}

static int cp_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts the table's keys when keys were added since the last sort.  Lock held. */
static int cp_sort(struct cp_table *t)
{
    if (t->nsorted == t->n)
        return 0;
    if (t->sorted_cap < t->n) {
        uint64_t *v = realloc(t->sorted, t->cap * sizeof(*v));
        if (!v)
            return FLR_ENOMEM;
        t->sorted = v;
        t->sorted_cap = t->cap;
    }
    memcpy(t->sorted, t->keys, t->n * sizeof(*t->sorted));
    qsort(t->sorted, t->n, sizeof(*t->sorted), cp_cmp_u64);
    t->nsorted = t->n;
    return 0;
}

/* Rows per page of a table: at most max_rows and max_bytes of keys and rows, at least 1. */
static size_t cp_per_page(const struct cp_table *t, uint32_t max_rows, size_t max_bytes)
{
    size_t per = max_bytes / (sizeof(uint64_t) + t->row_bytes);

    if (per > max_rows)
        per = max_rows;
    return per ? per : 1;
}

int flr_copies_page_into(struct flr_copies *cs, uint32_t shard, uint32_t table, uint64_t cursor,
                         uint64_t end, uint32_t max_rows, size_t max_bytes, flr_copies_sink sink,
                         void *arg, uint32_t *n, uint64_t *next)
{
    struct cp_table *t;
    size_t first = 0, last = 0, count = 0;
    unsigned char *dst;
    int rv;

    *n = 0;
    *next = UINT64_MAX;
    pthread_mutex_lock(&cs->mu);
    if ((rv = cp_table_of(cs, shard, table, 0, &t)) != 0)
        goto out;
    if (t && t->n > 0) {
        if ((rv = cp_sort(t)) != 0)
            goto out;
        first = flr_lower_bound_u64(t->sorted, t->nsorted, sizeof(uint64_t), cursor);
        last = end ? flr_lower_bound_u64(t->sorted, t->nsorted, sizeof(uint64_t), end) : t->nsorted;
        if (last < first)
            last = first;
        count = last - first;
        if (count > cp_per_page(t, max_rows, max_bytes))
            count = cp_per_page(t, max_rows, max_bytes);
        if (first + count < last)
            *next = t->sorted[first + count];
    }
    if (!(dst = sink(arg, count ? t->sorted + first : NULL, (uint32_t)count,
                     count * (count ? t->row_bytes : 0), *next))) {
        rv = FLR_ENOMEM;
        goto out;
    }
    /* The rows are gathered straight into the sink's buffer (the reply), once. */
    for (size_t i = 0; i < count; i++)
        memcpy(dst + i * t->row_bytes,
               t->rows + (size_t)cp_find(t, t->sorted[first + i]) * t->row_bytes, t->row_bytes);
    *n = (uint32_t)count;
out:
    pthread_mutex_unlock(&cs->mu);
    return rv;
}

/* ---- update log ------------------------------------------------------------------- */

static size_t cp_entry_bytes(const struct cp_entry *e)
{
    return (size_t)e->nkeys * sizeof(uint64_t) + (size_t)e->nkeys * e->dim * sizeof(float);
}

/* Index of the first held entry with pseq >= pseq, nlog when none (entries are in pseq
 * order). */
static size_t cp_log_lower(const struct cp_shard *sh, uint64_t pseq)
{
    if (sh->head == sh->nlog)
        return sh->nlog;
    return sh->head + flr_lower_bound_u64(&sh->log[sh->head].pseq, sh->nlog - sh->head,
                                          sizeof(*sh->log), pseq);
}

/* Index of the held entry with pseq, or -1. */
static long cp_log_find(const struct cp_shard *sh, uint64_t pseq)
{
    size_t lo = cp_log_lower(sh, pseq);

    return lo < sh->nlog && sh->log[lo].pseq == pseq ? (long)lo : -1;
}

int flr_copies_log_append(struct flr_copies *cs, uint32_t shard, int64_t clock, uint32_t table,
                          const uint64_t *keys, uint32_t n, const float *grads, uint64_t *pseq)
{
    const struct flr_table_spec *ts = flr_spec_table(&cs->spec, table);
    struct cp_shard *sh;
    struct cp_entry e = {0};
    size_t kb = (size_t)n * sizeof(uint64_t), gb;
    int rv = 0;

    if (shard >= cs->spec.num_shards)
        return FLR_EINVAL;
    if (!ts)
        return FLR_EUNKNOWN_TABLE;
    gb = (size_t)n * ts->dim * sizeof(float);
    e.clock = clock;
    e.table = table;
    e.nkeys = n;
    e.dim = ts->dim;
    /* Copy outside the lock: a push may be large. */
    if (!(e.keys = malloc(kb + gb ? kb + gb : 1)))
        return FLR_ENOMEM;
    e.grads = (float *)((unsigned char *)e.keys + kb);
    memcpy(e.keys, keys, kb);
    memcpy(e.grads, grads, gb);

    pthread_mutex_lock(&cs->mu);
    sh = &cs->shards[shard];
    if (sh->nlog == sh->log_cap) {
        if (sh->head > 0 && sh->head >= sh->nlog / 2) {
            memmove(sh->log, sh->log + sh->head, (sh->nlog - sh->head) * sizeof(*sh->log));
            sh->nlog -= sh->head;
            sh->head = 0;
        } else {
            size_t cap = sh->log_cap ? sh->log_cap * 2 : 64;
            struct cp_entry *v = realloc(sh->log, cap * sizeof(*v));
            if (!v) {
                rv = FLR_ENOMEM;
                goto out;
            }
            sh->log = v;
            sh->log_cap = cap;
        }
    }
    e.pseq = cs->inc + ++sh->counter;
    sh->log[sh->nlog++] = e;
    sh->log_bytes += kb + gb;
    cs->log_bytes += kb + gb;
    cs->log_entries++;
    *pseq = e.pseq;
out:
    pthread_mutex_unlock(&cs->mu);
    if (rv)
        free(e.keys);
    return rv;
}

/* Removes the held entry at index i.  Called with the lock held. */
static void cp_log_remove(struct flr_copies *cs, struct cp_shard *sh, size_t i)
{
    size_t b = cp_entry_bytes(&sh->log[i]);

    free(sh->log[i].keys);
    memmove(sh->log + i, sh->log + i + 1, (sh->nlog - i - 1) * sizeof(*sh->log));
    sh->nlog--;
    sh->log_bytes -= b;
    cs->log_bytes -= b;
    cs->log_entries--;
}

int flr_copies_log_cancel(struct flr_copies *cs, uint32_t shard, uint64_t pseq)
{
    struct cp_shard *sh;
    int rv = FLR_EINVAL;

    if (shard >= cs->spec.num_shards)
        return FLR_EINVAL;
    pthread_mutex_lock(&cs->mu);
    sh = &cs->shards[shard];
    if (sh->counter > 0 && pseq == cs->inc + sh->counter && sh->nlog > sh->head &&
        sh->log[sh->nlog - 1].pseq == pseq) {
        cp_log_remove(cs, sh, sh->nlog - 1);
        sh->counter--;
        rv = 0;
    }
    pthread_mutex_unlock(&cs->mu);
    return rv;
}

int flr_copies_log_ack(struct flr_copies *cs, uint32_t shard, uint64_t pseq, uint64_t stamp)
{
    long i;
    int rv = FLR_ENOT_FOUND;

    if (shard >= cs->spec.num_shards)
        return FLR_EINVAL;
    pthread_mutex_lock(&cs->mu);
    if ((i = cp_log_find(&cs->shards[shard], pseq)) >= 0) {
        cs->shards[shard].log[i].acked = 1;
        cs->shards[shard].log[i].stamp = stamp;
        rv = 0;
    }
    pthread_mutex_unlock(&cs->mu);
    return rv;
}

int flr_copies_log_drop(struct flr_copies *cs, uint32_t shard, uint64_t pseq)
{
    long i;
    int rv = FLR_ENOT_FOUND;

    if (shard >= cs->spec.num_shards)
        return FLR_EINVAL;
    pthread_mutex_lock(&cs->mu);
    if ((i = cp_log_find(&cs->shards[shard], pseq)) >= 0) {
        cp_log_remove(cs, &cs->shards[shard], (size_t)i);
        rv = 0;
    }
    pthread_mutex_unlock(&cs->mu);
    return rv;
}

void flr_copies_log_truncate(struct flr_copies *cs, uint32_t shard, uint64_t covered)
{
    struct cp_shard *sh;

    if (shard >= cs->spec.num_shards)
        return;
    pthread_mutex_lock(&cs->mu);
    sh = &cs->shards[shard];
    while (sh->head < sh->nlog && sh->log[sh->head].acked && sh->log[sh->head].pseq <= covered) {
        struct cp_entry *e = &sh->log[sh->head++];
        size_t b = cp_entry_bytes(e);
        sh->truncated = e->pseq;
        free(e->keys);
        sh->log_bytes -= b;
        cs->log_bytes -= b;
        cs->log_entries--;
    }
    if (sh->head == sh->nlog)
        sh->head = sh->nlog = 0;
    pthread_mutex_unlock(&cs->mu);
}

/*
 * Whether this worker's own copies show that the rebuilding server already has entry e:
 * every key it touches has a copy whose record went out in the last manifest and contains
 * the push (BSP: the record's closed clock is past the push's; otherwise the record's
 * frontier for this worker reaches its pseq).  The server keeps, per row, the newest copy
 * any worker sent, whose record contains at least as much, so it would not replay e.
 * Lock held.
 */
static int cp_contained(const struct flr_copies *cs, const struct cp_shard *sh,
                        const struct cp_entry *e, uint32_t self)
{
    const size_t w = cs->rec_u64s;
    const struct cp_table *t = NULL;

    if (!sh->tabs || sh->nsent == 0 || self >= cs->spec.num_workers)
        return 0;
    for (uint32_t i = 0; i < cs->spec.ntables; i++)
        if (cs->spec.tables[i].id == e->table)
            t = &sh->tabs[i];
    if (!t || t->n == 0)
        return 0;
    for (uint32_t i = 0; i < e->nkeys; i++) {
        long idx = cp_find(t, e->keys[i]);
        size_t lo;
        uint64_t S;
        const uint64_t *rec;

        if (idx < 0)
            return 0;
        S = cp_row_stamp(t, (size_t)idx);
        lo = flr_lower_bound_u64(sh->sent_recs, sh->nsent, w * sizeof(uint64_t), S);
        if (lo == sh->nsent || sh->sent_recs[lo * w] != S)
            return 0;
        rec = sh->sent_recs + lo * w;
        if (cs->spec.consistency == FLR_BSP ? !(e->clock < (int64_t)rec[1])
                                            : !(e->pseq <= rec[2 + self]))
            return 0;
    }
    return 1;
}

int flr_copies_log_into(struct flr_copies *cs, uint32_t shard, uint64_t cursor, uint64_t end,
                        int64_t self, flr_copies_entry_fn fn, void *arg)
{
    struct cp_shard *sh;
    struct flr_copies_entry e;
    size_t lo;
    uint64_t next = UINT64_MAX;
    int rv;

    if (shard >= cs->spec.num_shards)
        return FLR_EINVAL;
    pthread_mutex_lock(&cs->mu);
    sh = &cs->shards[shard];
    lo = cursor == UINT64_MAX ? sh->nlog : cp_log_lower(sh, cursor + 1);
    if (lo == sh->nlog || (end && sh->log[lo].pseq >= end)) {
        rv = fn(arg, NULL, UINT64_MAX);
        goto out;
    }
    e = (struct flr_copies_entry){.pseq = sh->log[lo].pseq,
                                  .clock = sh->log[lo].clock,
                                  .table = sh->log[lo].table,
                                  .nkeys = sh->log[lo].nkeys,
                                  .dim = sh->log[lo].dim,
                                  .stamp = sh->log[lo].stamp,
                                  .acked = sh->log[lo].acked,
                                  .keys = sh->log[lo].keys,
                                  .grads = sh->log[lo].grads};
    if (lo + 1 < sh->nlog && (!end || sh->log[lo + 1].pseq < end))
        next = e.pseq;
    if (self >= 0 && cp_contained(cs, sh, &sh->log[lo], (uint32_t)self)) {
        e.contained = 1;
        e.nkeys = 0;
        e.keys = NULL;
        e.grads = NULL;
    }
    rv = fn(arg, &e, next);
out:
    pthread_mutex_unlock(&cs->mu);
    return rv;
}

/* ---- manifest and stats ----------------------------------------------------------- */

int flr_copies_manifest(struct flr_copies *cs, uint32_t shard, uint32_t max_rows, size_t max_bytes,
                        struct flr_copies_manifest *m)
{
    struct cp_shard *sh;
    size_t bytes, npages = 0;
    int rv = 0;

    memset(m, 0, sizeof(*m));
    if (shard >= cs->spec.num_shards)
        return FLR_EINVAL;
    pthread_mutex_lock(&cs->mu);
    sh = &cs->shards[shard];
    bytes = sh->nrecs * cs->rec_u64s * sizeof(uint64_t);
    /* What the rebuilding server will know: the log is filtered against it (a record may
     * grow, or copies arrive, after the manifest went out). */
    sh->nsent = 0;
    if (bytes) {
        uint64_t *v = realloc(sh->sent_recs, bytes);
        if (v) {
            memcpy(v, sh->recs, bytes);
            sh->sent_recs = v;
            sh->nsent = sh->nrecs;
        }
    }
    /* Where each page of copies starts, so that a rebuild can ask for several at once. */
    for (uint32_t i = 0; max_bytes && sh->tabs && i < cs->spec.ntables; i++)
        if (sh->tabs[i].n > 0)
            npages += (sh->tabs[i].n + cp_per_page(&sh->tabs[i], max_rows, max_bytes) - 1) /
                      cp_per_page(&sh->tabs[i], max_rows, max_bytes);
    /* One buffer, records then pages: the MANIFEST's extra as it goes on the wire. */
    if ((bytes || npages) && !(m->records = malloc(bytes + npages * 2 * sizeof(uint64_t)))) {
        rv = FLR_ENOMEM;
        goto out;
    }
    if (bytes)
        memcpy(m->records, sh->recs, bytes);
    m->nrecords = sh->nrecs;
    m->pages = npages ? m->records + sh->nrecs * cs->rec_u64s : NULL;
    for (uint32_t i = 0; npages && i < cs->spec.ntables; i++) {
        struct cp_table *t = &sh->tabs[i];
        size_t per;

        if (t->n == 0)
            continue;
        if ((rv = cp_sort(t)) != 0)
            goto out;
        per = cp_per_page(t, max_rows, max_bytes);
        for (size_t j = 0; j < t->nsorted; j += per) {
            m->pages[2 * m->npages] = cs->spec.tables[i].id;
            m->pages[2 * m->npages + 1] = t->sorted[j];
            m->npages++;
        }
    }
    m->clock = cs->clock;
    m->incarnation = cs->inc;
    m->pseq_sent = cs->inc + sh->counter;
    m->pseq_truncated = sh->truncated;
    m->rows = sh->rows;
    m->log_entries = sh->nlog - sh->head;
    m->log_bytes = sh->log_bytes;
out:
    pthread_mutex_unlock(&cs->mu);
    if (rv != 0)
        flr_copies_manifest_fini(m);
    return rv;
}

void flr_copies_manifest_fini(struct flr_copies_manifest *m)
{
    free(m->records); /* the pages are in the same buffer */
    m->records = NULL;
    m->pages = NULL;
    m->nrecords = 0;
    m->npages = 0;
}

void flr_copies_stats(struct flr_copies *cs, struct flr_copies_stats *st)
{
    pthread_mutex_lock(&cs->mu);
    st->rows = cs->rows;
    st->copy_bytes = cs->copy_bytes;
    st->records = cs->records;
    st->log_entries = cs->log_entries;
    st->log_bytes = cs->log_bytes;
    pthread_mutex_unlock(&cs->mu);
}
