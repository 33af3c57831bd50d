/*
 * model_oracle.c - the exactly-once oracle: a model whose gradients are small integers.
 *
 * It learns nothing.  Its pushes are integers in [-3, 3] summed over a batch, so float32
 * sums of them are exact whatever their order, and with SGD at lr 1 every parameter ends
 * at its initial value (zero) minus the sum of every gradient pushed for it.  A test that
 * records what each worker pushed (flr-worker --oracle-out) can then check a job's final
 * parameters exactly: an update lost or applied twice shows as a wrong integer.
 *
 * Tables (both initialised to zeros; the job's optimizer):
 *     0 "dense":  dense, ORACLE_DENSE_ROWS rows x the job's hidden width (--hidden), every
 *                 row in every batch (bench/recovery.sh sizes a shard with it);
 *     1 "sparse": sparse, dim 2, rows = the samples' CTR feature ids folded to
 *                 ORACLE_SPARSE_BITS bits (a bounded set, so the final state can be read
 *                 in full), each batch touching only its samples' rows.
 * The gradient ignores the training loop's scale: integers are the point.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "model.h"

#define ORACLE_DENSE_ROWS  64
#define ORACLE_PATTERN     64 /* a row's gradient repeats this many integers */
#define ORACLE_SPARSE_DIM  2
#define ORACLE_SPARSE_BITS 10

struct oracle {
    uint64_t seed;
    uint32_t ddim; /* the dense table's width */
    uint64_t *ids; /* scratch for a batch's sparse rows */
    size_t cap;
};

static int oracle_tables(const struct flr_model_cfg *c, struct flr_table_spec *out, uint32_t *n)
{
    static const char *const names[] = {"dense", "sparse"};

    for (uint32_t i = 0; i < 2; i++) {
        struct flr_table_spec *t = &out[i];
        memset(t, 0, sizeof(*t));
        t->id = i;
        strcpy(t->name, names[i]);
        t->kind = i == 0 ? FLR_TABLE_DENSE : FLR_TABLE_SPARSE;
        t->rows = i == 0 ? ORACLE_DENSE_ROWS : 0;
        t->dim = i == 0 ? (c->hidden ? c->hidden : 4) : ORACLE_SPARSE_DIM;
        t->init = FLR_INIT_ZEROS;
        t->seed = flr_mix64(c->seed + i + 1);
        t->optim = c->optim;
        flr_table_spec_defaults(t);
        t->lr = c->lr > 0 ? c->lr : 1.0f;
    }
    *n = 2;
    return 0;
}

static int oracle_alloc(void **mp, const struct flr_model_cfg *c)
{
    struct oracle *m = calloc(1, sizeof(*m));

    if (!m)
        return FLR_ENOMEM;
    m->seed = c->seed;
    m->ddim = c->hidden ? c->hidden : 4;
    *mp = m;
    return 0;
}

static void oracle_free(void *mp)
{
    struct oracle *m = mp;

    if (m)
        free(m->ids);
    free(m);
}

static uint64_t oracle_row(uint64_t feat)
{
    return (feat ^ (feat >> ORACLE_SPARSE_BITS) ^ (feat >> 2 * ORACLE_SPARSE_BITS)) &
           ((1u << ORACLE_SPARSE_BITS) - 1);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int oracle_keys(void *mp, const struct flr_dataset *d, const uint32_t *idx, uint32_t n,
                       struct flr_batch *b)
{
    struct oracle *m = mp;
    struct flr_batch_table *dt = &b->t[0], *st = &b->t[1];
    size_t total = (size_t)n * d->dim, u = 0;
    int rv;

    if (d->kind != FLR_DATA_CTR || !d->feat)
        return FLR_EINVAL;
    b->ntables = 2;
    dt->table = 0;
    dt->dim = m->ddim;
    st->table = 1;
    st->dim = ORACLE_SPARSE_DIM;
    if ((rv = flr_batch_reserve(dt, ORACLE_DENSE_ROWS)) != 0)
        return rv;
    for (uint32_t r = 0; r < ORACLE_DENSE_ROWS; r++)
        dt->keys[r] = flr_key(0, r);
    dt->nkeys = ORACLE_DENSE_ROWS;
    if (total > m->cap) {
        uint64_t *v = realloc(m->ids, total * sizeof(*v));
        if (!v)
            return FLR_ENOMEM;
        m->ids = v;
        m->cap = total;
    }
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < d->dim; j++)
            m->ids[(size_t)i * d->dim + j] = oracle_row(d->feat[(size_t)idx[i] * d->dim + j]);
    qsort(m->ids, total, sizeof(*m->ids), u64_cmp);
    for (size_t i = 0; i < total; i++)
        if (i == 0 || m->ids[i] != m->ids[i - 1])
            m->ids[u++] = m->ids[i];
    if ((rv = flr_batch_reserve(st, (uint32_t)u)) != 0)
        return rv;
    for (size_t i = 0; i < u; i++)
        st->keys[i] = flr_key(1, m->ids[i]);
    st->nkeys = (uint32_t)u;
    return 0;
}

/* A small integer in [-span, span] from the seed, the sample and the place. */
static float oracle_int(uint64_t seed, uint64_t sample, uint64_t row, uint32_t j, uint32_t span)
{
    uint64_t h = flr_mix64(seed ^ flr_mix64(sample * 0x9e3779b97f4a7c15ULL ^ (row << 8) ^ j));
    return (float)((int64_t)(h % (2 * span + 1)) - (int64_t)span);
}

static int oracle_find(const struct flr_batch_table *t, uint64_t key)
{
    size_t lo = flr_lower_bound_u64(t->keys, t->nkeys, sizeof(uint64_t), key);

    return lo < t->nkeys && t->keys[lo] == key ? (int)lo : -1;
}

static int oracle_grad(void *mp, const struct flr_dataset *d, const uint32_t *idx, uint32_t n,
                       struct flr_batch *b, float scale, double *loss)
{
    struct oracle *m = mp;
    struct flr_batch_table *dt = &b->t[0], *st = &b->t[1];
    double sum = 0;

    (void)scale;
    memset(dt->grads, 0, (size_t)dt->nkeys * dt->dim * sizeof(float));
    memset(st->grads, 0, (size_t)st->nkeys * st->dim * sizeof(float));
    for (uint32_t i = 0; i < n; i++) {
        /* The sample's identity: its first feature and label, not its place in the
         * partition, so that what a sample pushes does not depend on the worker. */
        uint64_t sample = d->feat[(size_t)idx[i] * d->dim] ^ ((uint64_t)d->y[idx[i]] << 63);
        for (uint32_t r = 0; r < dt->nkeys; r++) {
            float pat[ORACLE_PATTERN], *g = dt->grads + (size_t)r * dt->dim;
            for (uint32_t j = 0; j < ORACLE_PATTERN; j++)
                pat[j] = oracle_int(m->seed, sample, r, j, 3);
            for (uint32_t j = 0; j < dt->dim; j++)
                g[j] += pat[j % ORACLE_PATTERN];
        }
        for (uint32_t f = 0; f < d->dim; f++) {
            uint64_t row = oracle_row(d->feat[(size_t)idx[i] * d->dim + f]);
            int k = oracle_find(st, flr_key(1, row));
            if (k < 0)
                return FLR_EINTERNAL;
            for (uint32_t j = 0; j < st->dim; j++)
                st->grads[(size_t)k * st->dim + j] += oracle_int(m->seed, sample, row, j + 8, 3);
        }
    }
    for (uint32_t r = 0; r < dt->nkeys; r++)
        sum += fabs(dt->vals[(size_t)r * dt->dim]);
    *loss = sum / dt->nkeys;
    return 0;
}

static int oracle_predict(void *mp, const struct flr_dataset *d, const uint32_t *idx, uint32_t n,
                          const struct flr_batch *b, float *out)
{
    (void)mp;
    (void)d;
    (void)idx;
    (void)b;
    for (uint32_t i = 0; i < n; i++)
        out[i] = 0.5f; /* it learns nothing: every sample is a coin flip */
    return 0;
}

static const struct flr_model_ops oracle_ops = {
    .name = "oracle",
    .data = FLR_DATA_CTR,
    .nout = 1,
    .default_optim = FLR_OPT_SGD,
    .sparse_rows = 1u << ORACLE_SPARSE_BITS,
    .tables = oracle_tables,
    .alloc = oracle_alloc,
    .free = oracle_free,
    .keys = oracle_keys,
    .grad = oracle_grad,
    .predict = oracle_predict,
};

const struct flr_model_ops *flr_model_oracle(void);

const struct flr_model_ops *flr_model_oracle(void)
{
    return &oracle_ops;
}
