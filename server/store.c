/*
 * store.c - one shard's slice of every table.
 *
 * Rows live in chunks.  A row is (1 + nslots) * dim floats, [ value | slots ], and its
 * metadata (stamp, step count) sits in arrays beside the chunk's values.  A row is named
 * inside its slice by a row index (ridx): chunk = ridx >> chunk_shift, position =
 * ridx & chunk_mask.
 *
 *   dense:  one chunk holding the rows [lo, hi); ridx = row - lo; chunk_shift = 32, so
 *           every ridx lands in chunk 0.  Allocated and initialised by flr_store_alloc.
 *   sparse: chunks of 2^chunk_shift rows, added as rows are created and never moved; an
 *           open-addressing map (linear probing, power-of-two capacity, load <= 0.7) from
 *           row id to ridx.  Rows are created on first touch, in touch order.
 *
 * Every call that changes rows first does all that can fail (allocating, creating sparse
 * rows, which only makes a row visible with its deterministic initial value), and only
 * then applies gradients, so an out-of-memory error never leaves a push half-applied.
 *
 * The BSP accumulator holds one gradient row per touched row and a list of the rows
 * touched since the last apply:
 *   dense:  acc has a row per slice row (slot = ridx) and a bitmap marks touched rows;
 *   sparse: acc grows by one row per newly touched row, and a second map (row -> slot)
 *           finds it.  That map is cleared in O(1) by advancing its generation.
 * Applying sorts the touched list by row, so the cost follows the touched rows, not the
 * slice.  A clock whose dense pushes name each row once (one worker, or workers with rows
 * of their own) needs no accumulator: those pushes are kept by reference and applied as
 * they are, and the accumulator is not even allocated until a clock needs it.
 */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/shardmap.h"
#include "common/util.h"
#include "server/optim.h"
#include "server/store.h"

#define TSH_ALIGN              64
#define TSH_PREFAULT_MIN       ((size_t)4 << 20)
#define TSH_CHUNK_MAX_ROWS     4096u
#define TSH_CHUNK_TARGET_BYTES ((size_t)4 << 20)
#define TSH_DENSE_SHIFT        32
#define TSH_MAP_MIN_CAP        16
#define TSH_GROW_MIN           16
/* Floats an element-wise update copies into scratch at a time: small enough for the copy
 * to stay in the L1 cache until the optimizer reads it. */
#define TSH_BLOCK 1024u
/* The most floats one optimizer call is given (its length is a uint32_t). */
#define TSH_SPAN_MAX ((size_t)1 << 30)
/* Sparse keys of one shard share flr_mix64(key) % S, so the map hashes with a salt to
 * keep its slots independent of the placement. */
#define TSH_HASH_SALT 0x6a09e667f3bcc909ULL

/* The bits of four floats: GCC and Clang keep it in a SIMD register where there is one. */
typedef uint32_t tsh_u32x4 __attribute__((vector_size(16)));

/* A map slot is live when its gen equals the map's gen. */
struct tsh_slot {
    uint64_t key;
    uint32_t val;
    uint32_t gen;
};

struct tsh_map {
    struct tsh_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t count;
    uint32_t gen;
};

struct tsh_chunk {
    float *vals; /* rows * width floats, TSH_ALIGN-aligned */
    uint64_t *stamps;
    uint32_t *steps;
    uint16_t *holders; /* copies tracked: rows * nholders worker ids, FLR_STORE_NO_HOLDER free */
    uint64_t *queued;  /* copies tracked: a bit per row, set while it is on the dirty list */
    uint64_t *retry;   /* in queued's allocation: a bit per row, set while the shard's retry
                        * list holds it */
};

/* The dirty list: a ring of rows whose copies are short, in order of since. */
struct tsh_dirty {
    struct flr_dirty *v;
    size_t head, len, cap; /* cap 0 or a power of two */
};

struct tsh_touch {
    uint64_t row;
    uint32_t ridx;
    uint32_t slot; /* accumulator row */
};

struct tsh_defer {
    const unsigned char *keys, *grads;
    uint32_t n;
};

struct flr_tshard {
    struct flr_table_spec spec;
    const struct flr_optim_ops *ops;
    const struct flr_store *store;
    struct tsh_dirty *dirty; /* the store's list */
    uint32_t tix;            /* index in the store */
    uint32_t nh;             /* holder slots per row; 0: copies are not tracked */
    uint32_t dim;
    uint32_t width;  /* floats per row */
    uint64_t lo, hi; /* dense: the rows held */
    uint32_t nrows;  /* rows present */

    struct tsh_chunk *chunks;
    size_t nchunks, chunks_cap;
    size_t chunk_rows;
    unsigned chunk_shift;
    uint64_t chunk_mask;
    struct tsh_map index; /* sparse: row -> ridx */

    float *scratch; /* scratch_len = max(dim, TSH_BLOCK) floats, aligned */
    size_t scratch_len;
    uint32_t *ridx; /* the rows of the current call, resolved */
    size_t ridx_cap;

    float *acc; /* acc_cap rows of dim floats */
    size_t acc_cap;
    uint64_t *acc_bits; /* dense: touched rows */
    size_t acc_words;
    struct tsh_map acc_index; /* sparse: row -> slot */
    struct tsh_touch *touched;
    size_t ntouched, touched_cap;

    /* Dense BSP pushes taken by reference (flr_tshard_accumulate_ref) while each names rows
     * after all the ones before it: no row has two gradients, so their sum is each
     * gradient itself and they are applied straight from the caller's buffers.  The first
     * push that overlaps them moves them into the accumulator. */
    struct tsh_defer *defer;
    size_t ndefer, defer_cap, defer_keys;
    uint64_t defer_end; /* one past the last row deferred */
};

struct flr_store {
    struct flr_job_spec spec;
    uint32_t shard;
    uint32_t ntables;
    struct flr_tshard tables[FLR_MAX_TABLES];
    uint32_t nholders, need; /* copies: holder slots per row, holders a row needs */
    struct tsh_dirty dirty;
};

static size_t tsh_round(size_t n)
{
    return (n + TSH_ALIGN - 1) & ~(size_t)(TSH_ALIGN - 1);
}

/* Allocates bytes aligned for vector code.  A large block is faulted in now when populate
 * (written in full right away: initial values, an import), else only advised to take huge
 * pages: it is filled as data arrives (a rebuild's stream), and faulting it in ahead would
 * cost the same again before the first byte comes. */
static void *tsh_aligned(size_t bytes, int populate)
{
    void *p;

    if (bytes == 0 || bytes > SIZE_MAX - TSH_ALIGN)
        return NULL;
    if (posix_memalign(&p, TSH_ALIGN, tsh_round(bytes)) != 0)
        return NULL;
    if (bytes >= TSH_PREFAULT_MIN)
        (populate ? flr_prefault : flr_advise_huge)(p, bytes);
    return p;
}

/* Returns p reallocated to hold at least need elements (doubling), updating *cap, or NULL
 * with p and *cap untouched. Only called when need > *cap. */
static void *tsh_grow(void *p, size_t *cap, size_t need, size_t elsize)
{
    size_t nc = *cap > TSH_GROW_MIN ? *cap : TSH_GROW_MIN;
    void *q;

    while (nc < need) {
        if (nc > SIZE_MAX / 2)
            return NULL;
        nc *= 2;
    }
    if (nc > SIZE_MAX / elsize)
        return NULL;
    if ((q = realloc(p, nc * elsize)) == NULL)
        return NULL;
    *cap = nc;
    return q;
}

/* ---- open-addressing map ------------------------------------------------------------ */

static size_t map_hash(const struct tsh_map *m, uint64_t key)
{
    return (size_t)flr_mix64(key ^ TSH_HASH_SALT) & (m->cap - 1);
}

static struct tsh_slot *map_find(const struct tsh_map *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = map_hash(m, key);; i = (i + 1) & (m->cap - 1)) {
        struct tsh_slot *s = &m->slots[i];
        if (s->gen != m->gen)
            return NULL;
        if (s->key == key)
            return s;
    }
}

/* Inserts a key known to be absent; capacity must have been reserved. */
static void map_insert(struct tsh_map *m, uint64_t key, uint32_t val)
{
    size_t i = map_hash(m, key);

    while (m->slots[i].gen == m->gen)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (struct tsh_slot){.key = key, .val = val, .gen = m->gen};
    m->count++;
}

/* Makes room for need entries within the load factor. On failure the map is unchanged. */
static int map_reserve(struct tsh_map *m, size_t need)
{
    size_t nc = m->cap ? m->cap : TSH_MAP_MIN_CAP;
    struct tsh_slot *old = m->slots;
    size_t oldcap = m->cap;
    uint32_t oldgen = m->gen;

    if (need > SIZE_MAX / 10)
        return FLR_ENOMEM;
    if (m->cap != 0 && need * 10 <= m->cap * 7)
        return 0;
    while (need * 10 > nc * 7) {
        if (nc > SIZE_MAX / 20)
            return FLR_ENOMEM;
        nc *= 2;
    }
    struct tsh_slot *slots = calloc(nc, sizeof(*slots));
    if (slots == NULL)
        return FLR_ENOMEM;
    m->slots = slots;
    m->cap = nc;
    m->count = 0;
    m->gen = 1;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].gen == oldgen)
            map_insert(m, old[i].key, old[i].val);
    free(old);
    return 0;
}

/* Empties the map without touching its slots. */
static void map_clear(struct tsh_map *m)
{
    m->count = 0;
    if (++m->gen == 0) {
        if (m->slots != NULL)
            memset(m->slots, 0, m->cap * sizeof(*m->slots));
        m->gen = 1;
    }
}

/* ---- rows --------------------------------------------------------------------------- */

static struct tsh_chunk *tsh_loc(const struct flr_tshard *t, uint32_t ridx, size_t *off)
{
    *off = (size_t)(ridx & t->chunk_mask);
    return &t->chunks[(uint64_t)ridx >> t->chunk_shift];
}

static float *tsh_row(const struct flr_tshard *t, uint32_t ridx)
{
    size_t off;
    struct tsh_chunk *c = tsh_loc(t, ridx, &off);

    return c->vals + off * t->width;
}

/* Gives a chunk of rows its holder slots (all free) and queued and retry bits (all
 * clear). */
static int tsh_chunk_track(struct tsh_chunk *c, size_t rows, uint32_t nh)
{
    size_t words = (rows + 63) / 64;

    if (rows > SIZE_MAX / sizeof(uint16_t) / nh)
        return FLR_ENOMEM;
    if ((c->holders = malloc(rows * nh * sizeof(uint16_t))) == NULL)
        return FLR_ENOMEM;
    if ((c->queued = calloc(2 * words, sizeof(uint64_t))) == NULL) {
        free(c->holders);
        c->holders = NULL;
        return FLR_ENOMEM;
    }
    c->retry = c->queued + words;
    memset(c->holders, 0xff, rows * nh * sizeof(uint16_t));
    return 0;
}

static int tsh_add_chunk(struct flr_tshard *t, size_t rows, int populate)
{
    struct tsh_chunk c = {0};

    if (t->nchunks == t->chunks_cap) {
        struct tsh_chunk *q =
            tsh_grow(t->chunks, &t->chunks_cap, t->nchunks + 1, sizeof(*t->chunks));
        if (q == NULL)
            return FLR_ENOMEM;
        t->chunks = q;
    }
    if (rows > SIZE_MAX / sizeof(float) / t->width)
        return FLR_ENOMEM;
    if ((c.vals = tsh_aligned(rows * t->width * sizeof(float), populate)) == NULL)
        goto fail_vals;
    if ((c.stamps = calloc(rows, sizeof(*c.stamps))) == NULL)
        goto fail_stamps;
    if ((c.steps = calloc(rows, sizeof(*c.steps))) == NULL)
        goto fail_steps;
    if (t->nh > 0 && tsh_chunk_track(&c, rows, t->nh) != 0)
        goto fail_track;
    t->chunks[t->nchunks++] = c;
    return 0;

fail_track:
    free(c.steps);
fail_steps:
    free(c.stamps);
fail_stamps:
    free(c.vals);
fail_vals:
    return FLR_ENOMEM;
}

/* Gives row ridx its initial value, zero slots and zero metadata. */
static void tsh_init_at(struct flr_tshard *t, uint32_t ridx, uint64_t row)
{
    size_t off;
    struct tsh_chunk *c = tsh_loc(t, ridx, &off);
    float *w = c->vals + off * t->width;

    flr_table_init_row(&t->spec, row, w);
    memset(w + t->dim, 0, (size_t)(t->width - t->dim) * sizeof(float));
    c->stamps[off] = 0;
    c->steps[off] = 0;
}

/* Finds a sparse row, creating it on first touch. */
static int tsh_sparse_row(struct flr_tshard *t, uint64_t row, uint32_t *ridx)
{
    struct tsh_slot *e = map_find(&t->index, row);
    int rv;

    if (e != NULL) {
        *ridx = e->val;
        return 0;
    }
    if (t->nrows == UINT32_MAX)
        return FLR_ENOMEM;
    if ((rv = map_reserve(&t->index, t->index.count + 1)) != 0)
        return rv;
    if (((uint64_t)t->nrows >> t->chunk_shift) == t->nchunks &&
        (rv = tsh_add_chunk(t, t->chunk_rows, 1)) != 0)
        return rv;
    *ridx = t->nrows++;
    tsh_init_at(t, *ridx, row);
    map_insert(&t->index, row, *ridx);
    return 0;
}

/* Resolves the n keys into t->ridx, creating missing sparse rows. */
static int tsh_resolve(struct flr_tshard *t, const unsigned char *keys, uint32_t n)
{
    int rv;

    if (n > t->ridx_cap) {
        uint32_t *q = tsh_grow(t->ridx, &t->ridx_cap, n, sizeof(*t->ridx));
        if (q == NULL)
            return FLR_ENOMEM;
        t->ridx = q;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t row = flr_key_row(flr_load_u64(keys + (size_t)i * 8));
        if (t->spec.kind == FLR_TABLE_DENSE) {
            assert(row >= t->lo && row < t->hi);
            t->ridx[i] = (uint32_t)(row - t->lo);
        } else if ((rv = tsh_sparse_row(t, row, &t->ridx[i])) != 0) {
            return rv;
        }
    }
    return 0;
}

/* Returns how many keys from the i-th on name consecutive rows (at least 1). */
static uint32_t tsh_run(const unsigned char *keys, uint32_t i, uint32_t n)
{
    const uint64_t row = flr_key_row(flr_load_u64(keys + (size_t)i * 8));
    uint32_t run = 1;

    while (i + run < n && flr_key_row(flr_load_u64(keys + (size_t)(i + run) * 8)) == row + run)
        run++;
    return run;
}

/* Copies n floats from a wire blob to dst.  Not one memcpy: GCC expands a memcpy whose
 * length it knows to be bounded into rep movsq, which is slow from a misaligned source, and
 * wire blobs mostly are misaligned.  This loop becomes vector moves or a library call. */
static void tsh_copy_in(float *restrict dst, const unsigned char *restrict src, size_t n)
{
    size_t i = 0;

    for (; n - i >= 4; i += 4) {
        tsh_u32x4 v;
        memcpy(&v, src + i * 4, sizeof(v));
        memcpy(dst + i, &v, sizeof(v));
    }
    memcpy(dst + i, src + i * 4, (n - i) * sizeof(float));
}

/* Writes +0.0 + each of n floats of a wire blob to dst: the sum of one gradient as the
 * accumulator forms it, which differs from the gradient itself in the sign of a zero. */
static void tsh_sum_in(float *restrict dst, const unsigned char *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = 0.0f + flr_load_f32(src + i * 4);
}

/* Returns the gradient row at g (dim floats of a wire blob) as aligned floats: g itself
 * when it is aligned for float, else a copy in scratch; with sum, always +0.0 + g in
 * scratch (tsh_sum_in). */
static const float *tsh_grad(struct flr_tshard *t, const unsigned char *g, int sum)
{
    if (sum) {
        tsh_sum_in(t->scratch, g, t->dim);
        return t->scratch;
    }
    if ((uintptr_t)g % _Alignof(float) == 0)
        return (const float *)(const void *)g;
    tsh_copy_in(t->scratch, g, t->dim);
    return t->scratch;
}

/* ---- copies: holders and the dirty list --------------------------------------------- */

/* Makes room on the dirty list for n more rows. On failure the list is unchanged. */
static int tsh_dirty_reserve(struct tsh_dirty *d, size_t n)
{
    size_t cap = d->cap ? d->cap : TSH_GROW_MIN;
    struct flr_dirty *v;

    if (d->len + n <= d->cap)
        return 0;
    while (cap < d->len + n) {
        if (cap > SIZE_MAX / 2 / sizeof(*v))
            return FLR_ENOMEM;
        cap *= 2;
    }
    if ((v = malloc(cap * sizeof(*v))) == NULL)
        return FLR_ENOMEM;
    for (size_t i = 0; i < d->len; i++)
        v[i] = d->v[(d->head + i) & (d->cap - 1)];
    free(d->v);
    d->v = v;
    d->head = 0;
    d->cap = cap;
    return 0;
}

static uint16_t *tsh_holders(const struct flr_tshard *t, uint32_t ridx)
{
    size_t off;
    struct tsh_chunk *c = tsh_loc(t, ridx, &off);

    return c->holders + off * t->nh;
}

/* Sets or clears (or only reads) a row's bit in a chunk's bitmap; returns its old value. */
static int tsh_bit(uint64_t *map, size_t off, int set, int clear)
{
    uint64_t bit = (uint64_t)1 << (off & 63), *w = &map[off >> 6];
    int was = (*w & bit) != 0;

    if (set)
        *w |= bit;
    if (clear)
        *w &= ~bit;
    return was;
}

static int tsh_queued(const struct flr_tshard *t, uint32_t ridx, int set, int clear)
{
    size_t off;
    struct tsh_chunk *c = tsh_loc(t, ridx, &off);

    return tsh_bit(c->queued, off, set, clear);
}

int flr_store_row_retry(struct flr_store *s, const struct flr_dirty *d, int on)
{
    size_t off;
    struct tsh_chunk *c = tsh_loc(&s->tables[d->tix], d->ridx, &off);

    return tsh_bit(c->retry, off, on, !on);
}

static uint32_t tsh_nholders(const struct flr_tshard *t, uint32_t ridx)
{
    const uint16_t *h = tsh_holders(t, ridx);
    uint32_t n = 0;

    for (uint32_t i = 0; i < t->nh; i++)
        n += h[i] != FLR_STORE_NO_HOLDER;
    return n;
}

/* Lists row ridx (of table row id row) on the dirty list unless it is listed already.
 * Room must have been reserved. */
static void tsh_list(struct flr_tshard *t, uint32_t ridx, uint64_t row, uint64_t since)
{
    struct tsh_dirty *d = t->dirty;

    if (tsh_queued(t, ridx, 1, 0))
        return;
    assert(d->len < d->cap);
    d->v[(d->head + d->len) & (d->cap - 1)] = (struct flr_dirty){
        .key = flr_key(t->spec.id, row), .since = since, .tix = t->tix, .ridx = ridx};
    d->len++;
}

/* Row ridx changed at stamp: its copies are stale.  Room on the list must be reserved. */
static void tsh_changed(struct flr_tshard *t, uint32_t ridx, uint64_t row, uint64_t stamp)
{
    memset(tsh_holders(t, ridx), 0xff, (size_t)t->nh * sizeof(uint16_t));
    tsh_list(t, ridx, row, stamp);
}

/* Applies one gradient row (aligned) to row ridx and marks it with stamp. */
static void tsh_update(struct flr_tshard *t, uint32_t ridx, const float *grad, uint64_t stamp)
{
    size_t off;
    struct tsh_chunk *c = tsh_loc(t, ridx, &off);

    t->ops->apply(&t->spec, c->vals + off * t->width, &c->steps[off], grad, t->dim);
    c->stamps[off] = stamp;
}

/*
 * Applies len gradient floats at g (a wire blob) to the len floats at w as if they were one
 * row.  Only for tables without slots: an optimizer that keeps no slots keeps no state per
 * row besides the value (only Adam counts steps, and it has two slots), so its update is
 * element-wise, and rows that lie back to back can be updated as one.  With sum, the
 * update takes +0.0 + g (tsh_sum_in), as a step on an accumulated sum does.
 */
static void tsh_apply_flat(struct flr_tshard *t, float *w, const unsigned char *g, size_t len,
                           int sum)
{
    uint32_t steps = 0;

    assert(t->width == t->dim);
    while (len > 0) {
        const float *grad;
        size_t m;

        if ((uintptr_t)g % _Alignof(float) == 0 && !sum) {
            m = len < TSH_SPAN_MAX ? len : TSH_SPAN_MAX;
            grad = (const float *)(const void *)g;
        } else {
            m = len < TSH_BLOCK ? len : TSH_BLOCK;
            if (sum)
                tsh_sum_in(t->scratch, g, m);
            else
                tsh_copy_in(t->scratch, g, m);
            grad = t->scratch;
        }
        t->ops->apply(&t->spec, w, &steps, grad, (uint32_t)m);
        w += m;
        g += m * sizeof(float);
        len -= m;
    }
    assert(steps == 0);
}

/* Applies the gradients at g (a wire blob, one row after another) to the nrows dense rows
 * from ridx on, and marks them with stamp; sum as for tsh_apply_flat(). */
static void tsh_apply_run(struct flr_tshard *t, uint32_t ridx, uint32_t nrows,
                          const unsigned char *g, uint64_t stamp, int sum)
{
    struct tsh_chunk *c = &t->chunks[0];
    const size_t rowbytes = (size_t)t->dim * sizeof(float);

    if (t->width == t->dim) {
        tsh_apply_flat(t, c->vals + (size_t)ridx * t->width, g, (size_t)nrows * t->dim, sum);
    } else {
        for (uint32_t r = 0; r < nrows; r++)
            t->ops->apply(&t->spec, c->vals + (size_t)(ridx + r) * t->width, &c->steps[ridx + r],
                          tsh_grad(t, g + r * rowbytes, sum), t->dim);
    }
    for (uint32_t r = 0; r < nrows; r++)
        c->stamps[ridx + r] = stamp;
    if (t->nh > 0)
        for (uint32_t r = 0; r < nrows; r++)
            tsh_changed(t, ridx + r, t->lo + ridx + r, stamp);
}

/* ---- initial values ----------------------------------------------------------------- */

void flr_table_init_row(const struct flr_table_spec *t, uint64_t row, float *out)
{
    const double scale = t->init_scale;
    const float top = (float)scale;
    struct flr_rng r;

    flr_rng_seed(&r, flr_mix64(t->seed ^ flr_mix64(row)));
    switch (t->init) {
    case FLR_INIT_UNIFORM:
        for (uint32_t j = 0; j < t->dim; j++) {
            float f = (float)(scale * (2.0 * flr_rng_uniform(&r) - 1.0));
            /* Rounding to float can reach scale itself; keep the interval half-open. */
            out[j] = f < top ? f : nextafterf(top, 0.0f);
        }
        break;
    case FLR_INIT_NORMAL:
        for (uint32_t j = 0; j < t->dim; j++)
            out[j] = (float)(scale * flr_rng_normal(&r));
        break;
    case FLR_INIT_ZEROS:
    default:
        memset(out, 0, (size_t)t->dim * sizeof(float));
        break;
    }
}

/* ---- life cycle ----------------------------------------------------------------------- */

static void tsh_fini(struct flr_tshard *t)
{
    for (size_t i = 0; i < t->nchunks; i++) {
        free(t->chunks[i].queued);
        free(t->chunks[i].holders);
        free(t->chunks[i].steps);
        free(t->chunks[i].stamps);
        free(t->chunks[i].vals);
    }
    free(t->chunks);
    free(t->index.slots);
    free(t->scratch);
    free(t->ridx);
    free(t->acc);
    free(t->acc_bits);
    free(t->acc_index.slots);
    free(t->touched);
    free(t->defer);
    memset(t, 0, sizeof(*t));
}

/* Sets up one table's slice. On failure the caller runs tsh_fini. */
static int tsh_init(struct flr_tshard *t, const struct flr_store *s, unsigned flags,
                    const struct flr_table_spec *spec)
{
    uint32_t nslots;
    int rv;

    t->spec = *spec;
    t->store = s;
    t->dim = spec->dim;
    t->index.gen = 1;
    t->acc_index.gen = 1;
    if ((t->ops = flr_optim_ops(spec->optim)) == NULL || spec->dim == 0)
        return FLR_EINVAL;
    nslots = flr_optim_nslots(spec->optim);
    assert(nslots == t->ops->nslots);
    if (spec->dim > UINT32_MAX / (1 + nslots))
        return FLR_EINVAL;
    t->width = (1 + nslots) * spec->dim;
    t->scratch_len = t->dim > TSH_BLOCK ? t->dim : TSH_BLOCK;
    if ((t->scratch = tsh_aligned(t->scratch_len * sizeof(float), 1)) == NULL)
        return FLR_ENOMEM;

    if (spec->kind == FLR_TABLE_SPARSE) {
        size_t rowbytes = (size_t)t->width * sizeof(float) + sizeof(uint64_t) + sizeof(uint32_t);
        size_t rows = TSH_CHUNK_TARGET_BYTES / rowbytes;
        unsigned shift = 0;

        if (rows > TSH_CHUNK_MAX_ROWS)
            rows = TSH_CHUNK_MAX_ROWS;
        while (((size_t)2 << shift) <= rows)
            shift++;
        t->chunk_shift = shift;
        t->chunk_rows = (size_t)1 << shift;
        t->chunk_mask = t->chunk_rows - 1;
        return 0;
    }

    flr_shard_dense_range(&s->spec, spec, s->shard, &t->lo, &t->hi);
    if (t->hi < t->lo || t->hi - t->lo > UINT32_MAX)
        return FLR_EINVAL;
    t->chunk_shift = TSH_DENSE_SHIFT;
    t->chunk_mask = ((uint64_t)1 << TSH_DENSE_SHIFT) - 1;
    t->chunk_rows = (size_t)(t->hi - t->lo);
    if (t->chunk_rows == 0)
        return 0;
    if ((rv = tsh_add_chunk(t, t->chunk_rows, !(flags & FLR_STORE_UNINIT))) != 0)
        return rv;
    t->nrows = (uint32_t)t->chunk_rows;
    for (uint32_t i = 0; i < t->nrows && !(flags & FLR_STORE_UNINIT); i++)
        tsh_init_at(t, i, t->lo + i);
    return 0;
}

int flr_tshard_init_row(struct flr_tshard *t, uint64_t row)
{
    if (t->spec.kind != FLR_TABLE_DENSE || row < t->lo || row >= t->hi)
        return FLR_EKEY_RANGE;
    tsh_init_at(t, (uint32_t)(row - t->lo), row);
    return 0;
}

int flr_store_alloc(struct flr_store **sp, const struct flr_job_spec *spec, uint32_t shard)
{
    return flr_store_alloc_flags(sp, spec, shard, 0);
}

int flr_store_alloc_flags(struct flr_store **sp, const struct flr_job_spec *spec, uint32_t shard,
                          unsigned flags)
{
    struct flr_store *s;
    int rv;

    if (sp == NULL || spec == NULL || spec->num_shards == 0 || shard >= spec->num_shards ||
        spec->ntables > FLR_MAX_TABLES)
        return FLR_EINVAL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return FLR_ENOMEM;
    s->spec = *spec;
    s->shard = shard;
    for (uint32_t i = 0; i < spec->ntables; i++) {
        s->ntables = i + 1;
        s->tables[i].dirty = &s->dirty;
        s->tables[i].tix = i;
        if ((rv = tsh_init(&s->tables[i], s, flags, &s->spec.tables[i])) != 0)
            goto fail_tables;
    }
    *sp = s;
    return 0;

fail_tables:
    flr_store_free(s);
    return rv;
}

void flr_store_free(struct flr_store *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->ntables; i++)
        tsh_fini(&s->tables[i]);
    free(s->dirty.v);
    free(s);
}

struct flr_tshard *flr_store_table(struct flr_store *s, uint32_t table_id)
{
    for (uint32_t i = 0; i < s->ntables; i++)
        if (s->tables[i].spec.id == table_id)
            return &s->tables[i];
    return NULL;
}

static size_t tsh_bytes(const struct flr_tshard *t)
{
    size_t chunk = tsh_round(t->chunk_rows * t->width * sizeof(float)) +
                   t->chunk_rows * (sizeof(uint64_t) + sizeof(uint32_t));
    size_t b = 0;

    b += t->nchunks * chunk + t->chunks_cap * sizeof(*t->chunks);
    b += t->index.cap * sizeof(*t->index.slots);
    b += t->scratch != NULL ? tsh_round(t->scratch_len * sizeof(float)) : 0;
    b += t->ridx_cap * sizeof(*t->ridx);
    b += t->acc_cap * t->dim * sizeof(float);
    b += t->acc_words * sizeof(*t->acc_bits);
    b += t->acc_index.cap * sizeof(*t->acc_index.slots);
    b += t->touched_cap * sizeof(*t->touched);
    return b;
}

size_t flr_store_bytes(const struct flr_store *s)
{
    size_t b = sizeof(*s);

    for (uint32_t i = 0; i < s->ntables; i++)
        b += tsh_bytes(&s->tables[i]);
    return b;
}

uint64_t flr_store_rows(const struct flr_store *s)
{
    uint64_t n = 0;

    for (uint32_t i = 0; i < s->ntables; i++)
        n += s->tables[i].nrows;
    return n;
}

const struct flr_table_spec *flr_tshard_spec(const struct flr_tshard *t)
{
    return &t->spec;
}

/* ---- checks ----------------------------------------------------------------------------- */

static int tsh_check_key(const struct flr_tshard *t, uint64_t key, char *why, size_t whylen)
{
    const struct flr_store *s = t->store;
    uint64_t row = flr_key_row(key);
    uint32_t shard;

    if (flr_key_table(key) != t->spec.id) {
        flr_why(why, whylen,
                "key 0x%016" PRIx64 " belongs to table %" PRIu32 ", not %" PRIu32 " (%s)", key,
                flr_key_table(key), t->spec.id, t->spec.name);
        return FLR_EKEY_RANGE;
    }
    if (t->spec.kind == FLR_TABLE_DENSE) {
        if (row >= t->spec.rows) {
            flr_why(why, whylen,
                    "key 0x%016" PRIx64 " (row %" PRIu64 ") is outside rows [0, %" PRIu64
                    ") of table %s",
                    key, row, t->spec.rows, t->spec.name);
            return FLR_EKEY_RANGE;
        }
        if (row >= t->lo && row < t->hi)
            return 0;
    }
    shard = flr_shard_of_key(&s->spec, key);
    if (t->spec.kind == FLR_TABLE_SPARSE && shard == s->shard)
        return 0;
    flr_why(why, whylen,
            "key 0x%016" PRIx64 " (row %" PRIu64 ") of table %s belongs to shard %" PRIu32
            ", not %" PRIu32,
            key, row, t->spec.name, shard, s->shard);
    return FLR_EKEY_RANGE;
}

/* The shard of a sparse key: flr_mix64(key) % nshards, as shardmap.h places it.  A power of
 * two (one shard included) needs no division, which costs tens of cycles per key. */
static uint32_t tsh_sparse_shard(uint64_t key, uint32_t nshards)
{
    uint64_t h = flr_mix64(key);

    if ((nshards & (nshards - 1)) == 0)
        return (uint32_t)(h & (nshards - 1));
    return (uint32_t)(h % nshards);
}

/* Returns nonzero when every key belongs to the slice.  It accepts exactly the keys that
 * tsh_check_key() accepts, but it knows the table already instead of looking it up for each
 * key, and it leaves the message to tsh_check_key(). */
static int tsh_keys_own(const struct flr_tshard *t, const unsigned char *k, uint32_t n)
{
    const struct flr_store *s = t->store;

    if (t->spec.kind == FLR_TABLE_DENSE) {
        /* Rows [lo, hi) of the table have the consecutive keys from flr_key(id, lo) on, as
         * long as the id and hi fit in their fields of a key. */
        const uint64_t first = flr_key(t->spec.id, t->lo), span = t->hi - t->lo;

        if (flr_key_table(first) != t->spec.id || t->hi > FLR_KEY_ROW_MASK + 1)
            return 0;
        for (uint32_t i = 0; i < n; i++)
            if (flr_load_u64(k + (size_t)i * 8) - first >= span)
                return 0;
        return 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key = flr_load_u64(k + (size_t)i * 8);
        if (flr_key_table(key) != t->spec.id ||
            tsh_sparse_shard(key, s->spec.num_shards) != s->shard)
            return 0;
    }
    return 1;
}

int flr_tshard_check_keys(const struct flr_tshard *t, const void *keys, uint32_t n, char *why,
                          size_t whylen)
{
    const unsigned char *k = keys;
    int rv;

    if (t == NULL) {
        flr_why(why, whylen, "unknown table");
        return FLR_EUNKNOWN_TABLE;
    }
    if (tsh_keys_own(t, k, n))
        return 0;
    for (uint32_t i = 0; i < n; i++)
        if ((rv = tsh_check_key(t, flr_load_u64(k + (size_t)i * 8), why, whylen)) != 0)
            return rv;
    return 0;
}

/*
 * A float is NaN or infinite when its exponent bits are all ones, that is when its bits
 * without the sign are at least TSH_F32_INF.  Adding TSH_F32_EXP_ONE to those bits then
 * carries into bit 31, and into bit 31 only then: OR-ing the sums of many floats tells
 * whether any of them is not finite, without a branch.
 */
#define TSH_F32_ABS     0x7fffffffu
#define TSH_F32_INF     0x7f800000u
#define TSH_F32_EXP_ONE 0x00800000u

static uint32_t tsh_load_u32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* Returns nonzero when any of the n floats at p (unaligned) is NaN or infinite. */
static int tsh_any_nonfinite(const unsigned char *p, size_t n)
{
    tsh_u32x4 acc0 = {0}, acc1 = {0}, a, b;
    uint32_t acc;
    size_t i = 0;

    for (; n - i >= 8; i += 8) {
        memcpy(&a, p + i * 4, sizeof(a));
        memcpy(&b, p + i * 4 + sizeof(a), sizeof(b));
        acc0 |= (a & TSH_F32_ABS) + TSH_F32_EXP_ONE;
        acc1 |= (b & TSH_F32_ABS) + TSH_F32_EXP_ONE;
    }
    acc0 |= acc1;
    acc = acc0[0] | acc0[1] | acc0[2] | acc0[3];
    for (; i < n; i++)
        acc |= (tsh_load_u32(p + i * 4) & TSH_F32_ABS) + TSH_F32_EXP_ONE;
    return (acc >> 31) != 0;
}

/* Names the key and column of the first gradient that is not finite (there is one). */
static void tsh_why_nonfinite(const struct flr_tshard *t, const unsigned char *k, uint32_t n,
                              const unsigned char *v, char *why, size_t whylen)
{
    const size_t rowbytes = (size_t)t->dim * sizeof(float);

    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *g = v + i * rowbytes;

        if (!tsh_any_nonfinite(g, t->dim))
            continue;
        for (uint32_t j = 0; j < t->dim; j++) {
            uint32_t bits = tsh_load_u32(g + (size_t)j * 4) & TSH_F32_ABS;
            if (bits >= TSH_F32_INF) {
                flr_why(why, whylen, "key 0x%016" PRIx64 " column %" PRIu32 ": gradient is %s",
                        flr_load_u64(k + (size_t)i * 8), j,
                        bits > TSH_F32_INF ? "NaN" : "infinite");
                return;
            }
        }
    }
}

int flr_tshard_check_push(const struct flr_tshard *t, const void *keys, uint32_t n,
                          const void *vals, uint64_t vals_len, char *why, size_t whylen)
{
    const unsigned char *k = keys, *v = vals;
    uint64_t expect;
    int rv;

    if ((rv = flr_tshard_check_keys(t, keys, n, why, whylen)) != 0)
        return rv;
    expect = (uint64_t)n * t->dim * sizeof(float);
    if (vals_len != expect) {
        flr_why(why, whylen,
                "values are %" PRIu64 " bytes, expected %" PRIu32 " keys x dim %" PRIu32
                " x 4 = %" PRIu64,
                vals_len, n, t->dim, expect);
        return FLR_EVALUE_LEN;
    }
    /* One pass over the whole blob; rows and columns matter only to name a bad value. */
    if (!tsh_any_nonfinite(v, (size_t)n * t->dim))
        return 0;
    tsh_why_nonfinite(t, k, n, v, why, whylen);
    return FLR_ENAN_GRAD;
}

/* ---- reads and updates ------------------------------------------------------------------ */

int flr_tshard_read(struct flr_tshard *t, const void *keys, uint32_t n, void *out)
{
    const unsigned char *k = keys;
    unsigned char *o = out;
    const size_t rowbytes = (size_t)t->dim * sizeof(float);
    uint32_t ridx;
    int rv;

    if (t->spec.kind == FLR_TABLE_SPARSE) {
        for (uint32_t i = 0; i < n; i++) {
            uint64_t row = flr_key_row(flr_load_u64(k + (size_t)i * 8));
            if ((rv = tsh_sparse_row(t, row, &ridx)) != 0)
                return rv;
            memcpy(o + i * rowbytes, tsh_row(t, ridx), rowbytes);
        }
        return 0;
    }
    /* Without slots, consecutive dense rows are consecutive in memory: copy runs. */
    for (uint32_t i = 0; i < n;) {
        uint64_t row = flr_key_row(flr_load_u64(k + (size_t)i * 8));
        uint32_t run = t->width == t->dim ? tsh_run(k, i, n) : 1;

        assert(row >= t->lo && row + run <= t->hi);
        memcpy(o + i * rowbytes, tsh_row(t, (uint32_t)(row - t->lo)), run * rowbytes);
        i += run;
    }
    return 0;
}

/* Applies n gradient rows of a dense table, in runs of consecutive rows; sum as for
 * tsh_apply_flat().  Room on the dirty list must be reserved. */
static void tsh_apply_dense(struct flr_tshard *t, const unsigned char *k, uint32_t n,
                            const unsigned char *g, uint64_t stamp, int sum)
{
    const size_t rowbytes = (size_t)t->dim * sizeof(float);

    for (uint32_t i = 0; i < n;) {
        uint64_t row = flr_key_row(flr_load_u64(k + (size_t)i * 8));
        uint32_t run = tsh_run(k, i, n);

        assert(row >= t->lo && row + run <= t->hi);
        tsh_apply_run(t, (uint32_t)(row - t->lo), run, g + i * rowbytes, stamp, sum);
        i += run;
    }
}

int flr_tshard_apply(struct flr_tshard *t, const void *keys, uint32_t n, const void *grads,
                     uint64_t stamp)
{
    const unsigned char *k = keys, *g = grads;
    const size_t rowbytes = (size_t)t->dim * sizeof(float);
    int rv;

    if (t->nh > 0 && (rv = tsh_dirty_reserve(t->dirty, n)) != 0)
        return rv;
    if (t->spec.kind == FLR_TABLE_DENSE) {
        tsh_apply_dense(t, k, n, g, stamp, 0);
        return 0;
    }
    if ((rv = tsh_resolve(t, k, n)) != 0)
        return rv;
    for (uint32_t i = 0; i < n; i++) {
        tsh_update(t, t->ridx[i], tsh_grad(t, g + i * rowbytes, 0), stamp);
        if (t->nh > 0)
            tsh_changed(t, t->ridx[i], flr_key_row(flr_load_u64(k + (size_t)i * 8)), stamp);
    }
    return 0;
}

/* A dense table's accumulator: a zeroed row per slice row, allocated once. */
static int tsh_acc_alloc_dense(struct flr_tshard *t)
{
    size_t words = ((size_t)t->nrows + 63) / 64;
    uint64_t *bits;
    float *acc;

    if ((size_t)t->nrows > SIZE_MAX / sizeof(float) / t->dim)
        return FLR_ENOMEM;
    if ((bits = calloc(words, sizeof(*bits))) == NULL)
        return FLR_ENOMEM;
    if ((acc = tsh_aligned((size_t)t->nrows * t->dim * sizeof(float), 1)) == NULL) {
        free(bits);
        return FLR_ENOMEM;
    }
    memset(acc, 0, (size_t)t->nrows * t->dim * sizeof(float));
    t->acc_bits = bits;
    t->acc = acc;
    t->acc_words = words;
    t->acc_cap = t->nrows;
    return 0;
}

/* Makes room in the accumulator for n more gradient rows. */
static int tsh_acc_reserve(struct flr_tshard *t, uint32_t n)
{
    size_t need;
    int rv;

    if (t->spec.kind == FLR_TABLE_DENSE) {
        if (t->acc == NULL && t->nrows > 0 && (rv = tsh_acc_alloc_dense(t)) != 0)
            return rv;
        need = t->ntouched + n < t->nrows ? t->ntouched + n : t->nrows;
    } else {
        need = t->acc_index.count + n;
        if ((rv = map_reserve(&t->acc_index, need)) != 0)
            return rv;
        if (need > t->acc_cap) {
            size_t cap = t->acc_cap;
            float *q = tsh_grow(t->acc, &cap, need, (size_t)t->dim * sizeof(float));
            if (q == NULL)
                return FLR_ENOMEM;
            t->acc = q;
            t->acc_cap = cap;
        }
        need = t->ntouched + n;
    }
    if (need > t->touched_cap) {
        struct tsh_touch *q = tsh_grow(t->touched, &t->touched_cap, need, sizeof(*t->touched));
        if (q == NULL)
            return FLR_ENOMEM;
        t->touched = q;
    }
    return 0;
}

/* Returns the accumulator row of a row, starting it (zeroed) on first touch. */
static float *tsh_acc_row(struct flr_tshard *t, uint64_t row, uint32_t ridx)
{
    uint32_t slot;

    if (t->spec.kind == FLR_TABLE_DENSE) {
        uint64_t bit = (uint64_t)1 << (ridx & 63);
        slot = ridx;
        if ((t->acc_bits[ridx >> 6] & bit) == 0) {
            t->acc_bits[ridx >> 6] |= bit;
            t->touched[t->ntouched++] = (struct tsh_touch){.row = row, .ridx = ridx, .slot = slot};
        }
    } else {
        struct tsh_slot *e = map_find(&t->acc_index, row);
        if (e != NULL) {
            slot = e->val;
        } else {
            slot = (uint32_t)t->acc_index.count;
            map_insert(&t->acc_index, row, slot);
            memset(t->acc + (size_t)slot * t->dim, 0, (size_t)t->dim * sizeof(float));
            t->touched[t->ntouched++] = (struct tsh_touch){.row = row, .ridx = ridx, .slot = slot};
        }
    }
    return t->acc + (size_t)slot * t->dim;
}

static void tsh_acc_add(float *restrict a, const unsigned char *restrict g, uint32_t dim)
{
    for (uint32_t j = 0; j < dim; j++)
        a[j] += flr_load_f32(g + (size_t)j * 4);
}

/* Rows the current clock will change, as far as known so far, in every table. */
static size_t tsh_pending(const struct flr_tshard *t)
{
    size_t pending = 0;

    for (uint32_t i = 0; i < t->store->ntables; i++)
        pending += t->store->tables[i].ntouched + t->store->tables[i].defer_keys;
    return pending;
}

/* Adds one push into the accumulator. */
static int tsh_acc_push(struct flr_tshard *t, const unsigned char *k, uint32_t n,
                        const unsigned char *g)
{
    const size_t rowbytes = (size_t)t->dim * sizeof(float);
    int rv;

    if ((rv = tsh_acc_reserve(t, n)) != 0)
        return rv;
    /* Room on the dirty list for every row the clock will change, so that applying it
     * cannot fail. */
    if (t->nh > 0 && (rv = tsh_dirty_reserve(t->dirty, n + tsh_pending(t))) != 0)
        return rv;
    if ((rv = tsh_resolve(t, k, n)) != 0)
        return rv;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t row = flr_key_row(flr_load_u64(k + (size_t)i * 8));
        tsh_acc_add(tsh_acc_row(t, row, t->ridx[i]), g + i * rowbytes, t->dim);
    }
    return 0;
}

/* Moves the pushes taken by reference into the accumulator, in the order they came. */
static int tsh_undefer(struct flr_tshard *t)
{
    int rv;

    for (size_t i = 0; i < t->ndefer; i++)
        if ((rv = tsh_acc_push(t, t->defer[i].keys, t->defer[i].n, t->defer[i].grads)) != 0)
            return rv;
    t->ndefer = 0;
    t->defer_keys = 0;
    return 0;
}

int flr_tshard_accumulate(struct flr_tshard *t, const void *keys, uint32_t n, const void *grads)
{
    int rv;

    if (n == 0)
        return 0;
    if (t->ndefer > 0 && (rv = tsh_undefer(t)) != 0) {
        flr_tshard_drop_accumulated(t); /* part moved, part not: the clock cannot be applied */
        return rv;
    }
    return tsh_acc_push(t, keys, n, grads);
}

int flr_tshard_accumulate_ref(struct flr_tshard *t, const void *keys, uint32_t n, const void *grads)
{
    const unsigned char *k = keys;
    int rv;

    if (n == 0)
        return 0;
    if (t->spec.kind != FLR_TABLE_DENSE || t->ntouched > 0 ||
        (t->ndefer > 0 && flr_key_row(flr_load_u64(k)) < t->defer_end))
        return flr_tshard_accumulate(t, keys, n, grads);
    if (t->ndefer == t->defer_cap) {
        struct tsh_defer *q = tsh_grow(t->defer, &t->defer_cap, t->ndefer + 1, sizeof(*q));
        if (q == NULL)
            return FLR_ENOMEM;
        t->defer = q;
    }
    if (t->nh > 0 && (rv = tsh_dirty_reserve(t->dirty, n + tsh_pending(t))) != 0)
        return rv;
    t->defer[t->ndefer++] = (struct tsh_defer){.keys = keys, .grads = grads, .n = n};
    t->defer_keys += n;
    t->defer_end = flr_key_row(flr_load_u64(k + (size_t)(n - 1) * 8)) + 1;
    return 0;
}

static int tsh_touch_cmp(const void *a, const void *b)
{
    const struct tsh_touch *x = a, *y = b;

    return (x->row > y->row) - (x->row < y->row);
}

/* Empties the accumulator; with apply, applying each touched row first. */
static void tsh_acc_flush(struct flr_tshard *t, int apply, uint64_t stamp)
{
    const size_t rowbytes = (size_t)t->dim * sizeof(float);
    size_t i;

    for (i = 1; apply && i < t->ntouched; i++)
        if (t->touched[i - 1].row > t->touched[i].row)
            break;
    if (apply && i < t->ntouched)
        qsort(t->touched, t->ntouched, sizeof(*t->touched), tsh_touch_cmp);
    for (i = 0; i < t->ntouched; i++) {
        const struct tsh_touch *e = &t->touched[i];
        float *a = t->acc + (size_t)e->slot * t->dim;

        if (apply) {
            tsh_update(t, e->ridx, a, stamp);
            if (t->nh > 0)
                tsh_changed(t, e->ridx, e->row, stamp);
        }
        if (t->spec.kind == FLR_TABLE_DENSE) {
            memset(a, 0, rowbytes);
            t->acc_bits[e->ridx >> 6] &= ~((uint64_t)1 << (e->ridx & 63));
        }
    }
    t->ntouched = 0;
    map_clear(&t->acc_index);
}

int flr_tshard_apply_accumulated(struct flr_tshard *t, uint64_t stamp)
{
    /* One or the other: deferred pushes move to the accumulator before anything is added. */
    tsh_acc_flush(t, 1, stamp);
    for (size_t i = 0; i < t->ndefer; i++)
        tsh_apply_dense(t, t->defer[i].keys, t->defer[i].n, t->defer[i].grads, stamp, 1);
    t->ndefer = 0;
    t->defer_keys = 0;
    return 0;
}

void flr_tshard_drop_accumulated(struct flr_tshard *t)
{
    tsh_acc_flush(t, 0, 0);
    t->ndefer = 0;
    t->defer_keys = 0;
}

const float *flr_tshard_peek(const struct flr_tshard *t, uint64_t row, uint64_t *stamp,
                             uint32_t *steps)
{
    struct tsh_chunk *c;
    uint32_t ridx;
    size_t off;

    if (t->spec.kind == FLR_TABLE_DENSE) {
        if (row < t->lo || row >= t->hi)
            return NULL;
        ridx = (uint32_t)(row - t->lo);
    } else {
        struct tsh_slot *e = map_find(&t->index, row);
        if (e == NULL)
            return NULL;
        ridx = e->val;
    }
    c = tsh_loc(t, ridx, &off);
    if (stamp != NULL)
        *stamp = c->stamps[off];
    if (steps != NULL)
        *steps = c->steps[off];
    return c->vals + off * t->width;
}

/* ---- export and import (moving a shard between servers) -------------------------------- */

#define TSH_META_BYTES 12 /* u64 stamp, u32 steps after the row's floats */

size_t flr_tshard_row_bytes(const struct flr_tshard *t)
{
    return (size_t)t->width * sizeof(float) + TSH_META_BYTES;
}

static void tsh_export_row(const struct flr_tshard *t, uint32_t ridx, uint64_t row,
                           unsigned char *key_out, unsigned char *row_out)
{
    uint64_t key = ((uint64_t)t->spec.id << 48) | row;
    size_t off, fb = (size_t)t->width * sizeof(float);
    const struct tsh_chunk *c = tsh_loc(t, ridx, &off);

    memcpy(key_out, &key, 8);
    memcpy(row_out, c->vals + off * t->width, fb);
    memcpy(row_out + fb, &c->stamps[off], 8);
    memcpy(row_out + fb + 8, &c->steps[off], 4);
}

uint32_t flr_tshard_export(const struct flr_tshard *t, uint64_t cursor, uint32_t max, void *keys,
                           void *rows, uint64_t *next)
{
    unsigned char *k = keys, *r = rows;
    size_t rb = flr_tshard_row_bytes(t);
    uint32_t n = 0;
    uint64_t i = cursor;

    if (t->spec.kind == FLR_TABLE_DENSE) {
        for (; i < t->nrows && n < max; i++, n++)
            tsh_export_row(t, (uint32_t)i, t->lo + i, k + (size_t)n * 8, r + (size_t)n * rb);
        *next = i < t->nrows ? i : UINT64_MAX;
    } else {
        /* Sparse rows in map-slot order; the map does not change while a shard is
         * frozen for a move. */
        for (; i < t->index.cap && n < max; i++) {
            const struct tsh_slot *sl = &t->index.slots[i];
            if (sl->gen != t->index.gen)
                continue;
            tsh_export_row(t, sl->val, sl->key, k + (size_t)n * 8, r + (size_t)n * rb);
            n++;
        }
        *next = i < t->index.cap ? i : UINT64_MAX;
    }
    return n;
}

int flr_tshard_import(struct flr_tshard *t, const void *keys, uint32_t n, const void *rows)
{
    const unsigned char *k = keys, *r = rows;
    size_t rb = flr_tshard_row_bytes(t), fb = (size_t)t->width * sizeof(float);
    int rv;

    for (uint32_t i = 0; i < n; i++) {
        uint64_t key, row;
        uint32_t ridx;
        size_t off;
        struct tsh_chunk *c;

        memcpy(&key, k + (size_t)i * 8, 8);
        row = key & 0xffffffffffffULL;
        if ((key >> 48) != t->spec.id)
            return FLR_EKEY_RANGE;
        if (t->spec.kind == FLR_TABLE_DENSE) {
            if (row < t->lo || row >= t->hi)
                return FLR_EKEY_RANGE;
            ridx = (uint32_t)(row - t->lo);
        } else if ((rv = tsh_sparse_row(t, row, &ridx)) != 0) {
            return rv;
        }
        c = tsh_loc(t, ridx, &off);
        memcpy(c->vals + off * t->width, r + (size_t)i * rb, fb);
        memcpy(&c->stamps[off], r + (size_t)i * rb + fb, 8);
        memcpy(&c->steps[off], r + (size_t)i * rb + fb + 8, 4);
    }
    return 0;
}

/* ---- copies ------------------------------------------------------------------------------ */

int flr_store_track_copies(struct flr_store *s, uint32_t nholders, uint32_t need)
{
    if (nholders == 0 || s->nholders != 0)
        return s->nholders == nholders ? 0 : FLR_EINVAL;
    for (uint32_t i = 0; i < s->ntables; i++) {
        struct flr_tshard *t = &s->tables[i];
        for (size_t j = 0; j < t->nchunks; j++)
            if (tsh_chunk_track(&t->chunks[j], t->chunk_rows, nholders) != 0)
                goto fail;
        t->nh = nholders;
    }
    s->nholders = nholders;
    s->need = need < nholders ? need : nholders;
    return 0;

fail:
    for (uint32_t i = 0; i < s->ntables; i++) {
        struct flr_tshard *t = &s->tables[i];
        for (size_t j = 0; j < t->nchunks; j++) {
            free(t->chunks[j].holders);
            free(t->chunks[j].queued);
            t->chunks[j].holders = NULL;
            t->chunks[j].queued = NULL;
            t->chunks[j].retry = NULL;
        }
        t->nh = 0;
    }
    return FLR_ENOMEM;
}

uint32_t flr_store_need(const struct flr_store *s)
{
    return s->need;
}

/* Calls fn on every row of the store. */
static void store_each_row(struct flr_store *s,
                           void (*fn)(struct flr_tshard *, uint32_t, uint64_t, void *), void *arg)
{
    for (uint32_t i = 0; i < s->ntables; i++) {
        struct flr_tshard *t = &s->tables[i];
        if (t->spec.kind == FLR_TABLE_DENSE) {
            for (uint32_t r = 0; r < t->nrows; r++)
                fn(t, r, t->lo + r, arg);
            continue;
        }
        for (size_t j = 0; j < t->index.cap; j++)
            if (t->index.slots[j].gen == t->index.gen)
                fn(t, t->index.slots[j].val, t->index.slots[j].key, arg);
    }
}

struct store_drop {
    uint32_t worker;
    uint64_t since;
    int all;
};

static void store_drop_row(struct flr_tshard *t, uint32_t ridx, uint64_t row, void *arg)
{
    const struct store_drop *d = arg;
    uint16_t *h = tsh_holders(t, ridx);

    size_t off;
    const struct tsh_chunk *c = tsh_loc(t, ridx, &off);

    for (uint32_t i = 0; i < t->nh; i++)
        if (d->all || h[i] == d->worker)
            h[i] = FLR_STORE_NO_HOLDER;
    /* A row never updated needs no copy: every process recreates its initial value. */
    if (c->stamps[off] != 0 && tsh_nholders(t, ridx) < t->store->need)
        tsh_list(t, ridx, row, d->since);
}

/* Drops worker's holdings (all of every row's with all) and lists the rows left short. */
static int store_drop(struct flr_store *s, uint32_t worker, uint64_t since, int all)
{
    struct store_drop d = {.worker = worker, .since = since, .all = all};
    int rv;

    if (s->nholders == 0)
        return 0;
    if ((rv = tsh_dirty_reserve(&s->dirty, (size_t)flr_store_rows(s))) != 0)
        return rv; /* room to list every row: listing cannot fail half-way */
    store_each_row(s, store_drop_row, &d);
    return 0;
}

int flr_store_drop_holder(struct flr_store *s, uint32_t worker, uint64_t since)
{
    return store_drop(s, worker, since, 0);
}

int flr_store_set_need(struct flr_store *s, uint32_t need, uint64_t since)
{
    uint32_t old = s->need;

    if (s->nholders == 0)
        return 0;
    s->need = need < s->nholders ? need : s->nholders;
    /* Rows that had enough holders may not any more. */
    return s->need > old ? flr_store_drop_holder(s, FLR_STORE_NO_HOLDER, since) : 0;
}

int flr_store_mark_all_dirty(struct flr_store *s, uint64_t since)
{
    return store_drop(s, FLR_STORE_NO_HOLDER, since, 1);
}

/* Adds worker to the holders of row ridx if it is not one and there is room. */
static void tsh_add_holder(struct flr_tshard *t, uint32_t ridx, uint32_t worker)
{
    uint16_t *h = tsh_holders(t, ridx), *free_slot = NULL;
    uint32_t j;

    for (j = 0; j < t->nh && h[j] != worker; j++)
        if (h[j] == FLR_STORE_NO_HOLDER && free_slot == NULL)
            free_slot = &h[j];
    if (j == t->nh && free_slot != NULL)
        *free_slot = (uint16_t)worker;
}

void flr_tshard_hold(struct flr_tshard *t, const void *keys, uint32_t n, uint32_t worker)
{
    const unsigned char *k = keys;

    /* Only a slot-free row is restored from the value a pull returns. */
    if (t->nh == 0 || t->width != t->dim || worker >= FLR_STORE_NO_HOLDER)
        return;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t row = flr_key_row(flr_load_u64(k + (size_t)i * 8));
        uint32_t ridx;

        if (t->spec.kind == FLR_TABLE_DENSE) {
            ridx = (uint32_t)(row - t->lo);
        } else {
            const struct tsh_slot *e = map_find(&t->index, row);
            if (e == NULL)
                continue;
            ridx = e->val;
        }
        tsh_add_holder(t, ridx, worker);
    }
}

int flr_store_row_short(const struct flr_store *s, const struct flr_dirty *d)
{
    return tsh_nholders(&s->tables[d->tix], d->ridx) < s->need;
}

const struct flr_dirty *flr_store_dirty_head(struct flr_store *s)
{
    while (s->dirty.len > 0) {
        const struct flr_dirty *d = &s->dirty.v[s->dirty.head];
        if (flr_store_row_short(s, d))
            return d;
        flr_store_dirty_pop(s);
    }
    return NULL;
}

void flr_store_dirty_pop(struct flr_store *s)
{
    const struct flr_dirty *d;

    if (s->dirty.len == 0)
        return;
    d = &s->dirty.v[s->dirty.head];
    (void)tsh_queued(&s->tables[d->tix], d->ridx, 0, 1);
    s->dirty.head = (s->dirty.head + 1) & (s->dirty.cap - 1);
    s->dirty.len--;
}

uint64_t flr_store_short_rows(const struct flr_store *s)
{
    uint64_t n = 0;

    for (size_t i = 0; i < s->dirty.len; i++)
        n += flr_store_row_short(s, &s->dirty.v[(s->dirty.head + i) & (s->dirty.cap - 1)]);
    return n;
}

size_t flr_store_holder_bytes(const struct flr_store *s)
{
    size_t b = s->dirty.cap * sizeof(*s->dirty.v);

    for (uint32_t i = 0; i < s->ntables; i++) {
        const struct flr_tshard *t = &s->tables[i];
        if (t->nh > 0)
            b += t->nchunks * (t->chunk_rows * t->nh * sizeof(uint16_t) +
                               (t->chunk_rows + 63) / 64 * sizeof(uint64_t));
    }
    return b;
}

uint32_t flr_store_row_holders(const struct flr_store *s, const struct flr_dirty *d, uint32_t *out)
{
    const struct flr_tshard *t = &s->tables[d->tix];
    const uint16_t *h = tsh_holders(t, d->ridx);
    uint32_t n = 0;

    for (uint32_t i = 0; i < t->nh; i++)
        if (h[i] != FLR_STORE_NO_HOLDER)
            out[n++] = h[i];
    return n;
}

int flr_store_row_add_holder(struct flr_store *s, const struct flr_dirty *d, uint32_t worker,
                             uint64_t stamp)
{
    struct flr_tshard *t = &s->tables[d->tix];
    size_t off;
    const struct tsh_chunk *c = tsh_loc(t, d->ridx, &off);

    if (c->stamps[off] > stamp || worker >= FLR_STORE_NO_HOLDER)
        return 0; /* changed since the copy was read */
    tsh_add_holder(t, d->ridx, worker);
    return 1;
}

struct flr_tshard *flr_store_table_at(struct flr_store *s, uint32_t tix)
{
    return tix < s->ntables ? &s->tables[tix] : NULL;
}

void flr_store_row_export(const struct flr_store *s, const struct flr_dirty *d, uint64_t stamp,
                          void *row_out)
{
    const struct flr_tshard *t = &s->tables[d->tix];
    size_t fb = (size_t)t->width * sizeof(float);
    unsigned char key[8], *r = row_out;

    tsh_export_row(t, d->ridx, flr_key_row(d->key), key, r);
    memcpy(r + fb, &stamp, 8);
}
