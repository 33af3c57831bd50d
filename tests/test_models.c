/*
 * test_models.c - the built-in models: registry, table specs, keys, gradients (against
 * finite differences of a double-precision reference), and local training.
 *
 * The tests stand in for the servers with a local store: dense arrays per table (sparse
 * tables use small hash_bits so that an array indexed by row is enough), pulled into the
 * batch and updated with plain SGD, w -= lr * g.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/spec.h"
#include "common/util.h"
#include "worker/data.h"
#include "worker/model.h"

#ifndef FLR_FASHION_MNIST_DIR
#define FLR_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

#define CTR_TEST_BITS 14

/* --- fixtures --------------------------------------------------------------------------- */

/* n synthetic images: pixels in [0, 1] with about 40% zeros, random labels. */
static void make_fmnist(struct flr_dataset *d, uint32_t n, uint64_t seed)
{
    struct flr_rng r;
    size_t i;

    flr_rng_seed(&r, seed);
    memset(d, 0, sizeof(*d));
    d->kind = FLR_DATA_FMNIST;
    d->n = n;
    d->dim = FLR_FMNIST_DIM;
    d->x = malloc((size_t)n * FLR_FMNIST_DIM * sizeof(float));
    d->y = malloc(n);
    assert_non_null(d->x);
    assert_non_null(d->y);
    for (i = 0; i < (size_t)n * FLR_FMNIST_DIM; i++)
        d->x[i] = flr_rng_uniform(&r) < 0.4 ? 0.0f : (float)flr_rng_uniform(&r);
    for (i = 0; i < n; i++)
        d->y[i] = (uint8_t)(flr_rng_next(&r) % FLR_FMNIST_CLASSES);
}

/*
 * n CTR samples over a small vocabulary per field, labelled by a hidden logistic model
 * (truth, indexed by feature id, may be NULL).  Field 5 repeats field 4's id in every
 * sample, so that a feature occurring twice in one sample is always exercised.
 */
static void make_ctr(struct flr_dataset *d, uint32_t n, uint32_t vocab, uint64_t seed, float *truth)
{
    const uint64_t mask = (UINT64_C(1) << CTR_TEST_BITS) - 1;
    struct flr_rng r;
    uint32_t i, f;

    flr_rng_seed(&r, seed);
    memset(d, 0, sizeof(*d));
    d->kind = FLR_DATA_CTR;
    d->n = n;
    d->dim = FLR_CTR_FIELDS;
    d->feat = malloc((size_t)n * FLR_CTR_FIELDS * sizeof(uint64_t));
    d->y = malloc(n);
    assert_non_null(d->feat);
    assert_non_null(d->y);
    for (i = 0; i < n; i++) {
        uint64_t *x = d->feat + (size_t)i * FLR_CTR_FIELDS;
        double s = 0;
        for (f = 0; f + 1 < FLR_CTR_FIELDS; f++) {
            /* Skewed: small values are more frequent. */
            uint64_t v = (uint64_t)(vocab * flr_rng_uniform(&r) * flr_rng_uniform(&r));
            x[f] = (flr_mix64((uint64_t)f << 32 | v) & mask) | 1;
        }
        x[5] = x[4];
        x[FLR_CTR_FIELDS - 1] = 0;
        if (truth != NULL)
            for (f = 0; f < FLR_CTR_FIELDS; f++)
                s += truth[x[f]];
        d->y[i] = flr_rng_uniform(&r) < 1.0 / (1.0 + exp(-s));
    }
}

/* The local stand-in for the servers. */
struct store {
    uint32_t ntables;
    struct flr_table_spec spec[FLR_MAX_TABLES];
    uint64_t rows[FLR_MAX_TABLES];
    float *w[FLR_MAX_TABLES];
};

static void store_init(struct store *s, const struct flr_model_ops *ops,
                       const struct flr_model_cfg *cfg)
{
    uint32_t t;
    size_t i;

    memset(s, 0, sizeof(*s));
    assert_int_equal(ops->tables(cfg, s->spec, &s->ntables), 0);
    for (t = 0; t < s->ntables; t++) {
        const struct flr_table_spec *sp = &s->spec[t];
        struct flr_rng r;
        size_t len;

        s->rows[t] = sp->kind == FLR_TABLE_DENSE ? sp->rows : UINT64_C(1) << CTR_TEST_BITS;
        len = (size_t)s->rows[t] * sp->dim;
        s->w[t] = calloc(len, sizeof(float));
        assert_non_null(s->w[t]);
        flr_rng_seed(&r, sp->seed);
        for (i = 0; i < len; i++) {
            if (sp->init == FLR_INIT_UNIFORM)
                s->w[t][i] = (float)((2 * flr_rng_uniform(&r) - 1) * sp->init_scale);
            else if (sp->init == FLR_INIT_NORMAL)
                s->w[t][i] = (float)(flr_rng_normal(&r) * sp->init_scale);
        }
    }
}

static void store_fini(struct store *s)
{
    uint32_t t;

    for (t = 0; t < s->ntables; t++)
        free(s->w[t]);
}

static void store_pull(const struct store *s, struct flr_batch *b)
{
    uint32_t t, k;

    for (t = 0; t < b->ntables; t++) {
        struct flr_batch_table *bt = &b->t[t];
        assert_true(bt->table < s->ntables);
        assert_int_equal(bt->dim, s->spec[bt->table].dim);
        for (k = 0; k < bt->nkeys; k++) {
            uint64_t row = flr_key_row(bt->keys[k]);
            assert_int_equal(flr_key_table(bt->keys[k]), bt->table);
            assert_true(row < s->rows[bt->table]);
            memcpy(bt->vals + (size_t)k * bt->dim, s->w[bt->table] + row * bt->dim,
                   bt->dim * sizeof(float));
        }
    }
}

static void store_sgd(struct store *s, const struct flr_batch *b, float lr)
{
    uint32_t t, k, j;

    for (t = 0; t < b->ntables; t++) {
        const struct flr_batch_table *bt = &b->t[t];
        for (k = 0; k < bt->nkeys; k++) {
            float *w = s->w[bt->table] + flr_key_row(bt->keys[k]) * bt->dim;
            const float *g = bt->grads + (size_t)k * bt->dim;
            for (j = 0; j < bt->dim; j++)
                w[j] -= lr * g[j];
        }
    }
}

static void cfg_init(struct flr_model_cfg *c, const char *name)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->optim = FLR_OPT_SGD;
    c->lr = 0.1f;
    c->seed = 7;
    c->hash_bits = CTR_TEST_BITS;
}

/* --- registry and specs ----------------------------------------------------------------- */

static void registry_finds_every_listed_model(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; flr_model_names[i] != NULL; i++) {
        const struct flr_model_ops *ops = flr_model_find(flr_model_names[i]);
        assert_non_null(ops);
        assert_string_equal(ops->name, flr_model_names[i]);
        assert_non_null(ops->tables);
        assert_non_null(ops->alloc);
        assert_non_null(ops->free);
        assert_non_null(ops->keys);
        assert_non_null(ops->grad);
        assert_non_null(ops->predict);
    }
    assert_int_equal(i, 4);
    assert_int_equal(flr_model_find("oracle")->data, FLR_DATA_CTR);
    assert_int_equal(flr_model_find("oracle")->default_optim, FLR_OPT_SGD);
    assert_true(flr_model_find("oracle")->sparse_rows > 0);
    assert_int_equal(flr_model_find("softmax")->data, FLR_DATA_FMNIST);
    assert_int_equal(flr_model_find("softmax")->nout, 10);
    assert_int_equal(flr_model_find("mlp")->nout, 10);
    assert_int_equal(flr_model_find("ctr")->data, FLR_DATA_CTR);
    assert_int_equal(flr_model_find("ctr")->nout, 1);
    assert_null(flr_model_find("lstm"));
    assert_null(flr_model_find(""));
    assert_null(flr_model_find(NULL));
}

static void tables_describe_shapes_init_and_optimizer(void **state)
{
    struct flr_table_spec t[FLR_MAX_TABLES];
    struct flr_model_cfg c;
    uint32_t n = 0;

    (void)state;
    cfg_init(&c, "softmax");
    c.optim = FLR_OPT_ADAGRAD;
    c.lr = 0.25f;
    assert_int_equal(flr_model_find("softmax")->tables(&c, t, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(t[0].id, 0);
    assert_string_equal(t[0].name, "w");
    assert_int_equal(t[0].kind, FLR_TABLE_DENSE);
    assert_int_equal(t[0].rows, 785);
    assert_int_equal(t[0].dim, 10);
    assert_int_equal(t[0].init, FLR_INIT_ZEROS);
    assert_int_equal(t[0].optim, FLR_OPT_ADAGRAD);
    assert_float_equal(t[0].lr, 0.25, 0);
    assert_true(t[0].eps > 0);
    assert_float_equal(t[0].beta1, 0.9, 1e-6);

    cfg_init(&c, "mlp");
    c.hidden = 0;
    assert_int_equal(flr_model_find("mlp")->tables(&c, t, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(t[0].name, "w1");
    assert_string_equal(t[1].name, "w2");
    assert_int_equal(t[0].id, 0);
    assert_int_equal(t[1].id, 1);
    assert_int_equal(t[0].rows, 785);
    assert_int_equal(t[0].dim, 128);
    assert_int_equal(t[1].rows, 129);
    assert_int_equal(t[1].dim, 10);
    assert_int_equal(t[0].init, FLR_INIT_UNIFORM);
    assert_float_equal(t[0].init_scale, sqrt(6.0 / (784 + 128)), 1e-6);
    assert_float_equal(t[1].init_scale, sqrt(6.0 / (128 + 10)), 1e-6);
    assert_int_not_equal(t[0].seed, t[1].seed);
    {
        uint64_t s0 = t[0].seed;
        c.seed = 8;
        c.init_scale = 0.05f;
        c.hidden = 64;
        assert_int_equal(flr_model_find("mlp")->tables(&c, t, &n), 0);
        assert_int_not_equal(t[0].seed, s0);
        assert_float_equal(t[0].init_scale, 0.05, 0);
        assert_float_equal(t[1].init_scale, 0.05, 0);
        assert_int_equal(t[0].dim, 64);
        assert_int_equal(t[1].rows, 65);
    }

    cfg_init(&c, "ctr");
    c.lr = 0; /* the model's default */
    assert_int_equal(flr_model_find("ctr")->tables(&c, t, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(t[0].name, "w");
    assert_int_equal(t[0].kind, FLR_TABLE_SPARSE);
    assert_int_equal(t[0].rows, 0);
    assert_int_equal(t[0].dim, 1);
    assert_int_equal(t[0].init, FLR_INIT_ZEROS);
    assert_true(t[0].lr > 0);
}

/* --- keys ------------------------------------------------------------------------------- */

static void dense_keys_cover_every_row_and_reuse_buffers(void **state)
{
    const struct flr_model_ops *ops = flr_model_find("mlp");
    struct flr_batch b = {0};
    struct flr_dataset d;
    struct flr_model_cfg c;
    uint32_t idx[3] = {0, 1, 2}, k;
    uint64_t *keys0;
    void *m;

    (void)state;
    cfg_init(&c, "mlp");
    c.hidden = 9;
    make_fmnist(&d, 3, 1);
    assert_int_equal(ops->alloc(&m, &c), 0);
    assert_int_equal(ops->keys(m, &d, idx, 3, &b), 0);
    assert_int_equal(b.ntables, 2);
    assert_int_equal(b.t[0].nkeys, 785);
    assert_int_equal(b.t[0].dim, 9);
    assert_int_equal(b.t[1].nkeys, 10);
    assert_int_equal(b.t[1].dim, 10);
    for (k = 0; k < 785; k++)
        assert_int_equal(b.t[0].keys[k], flr_key(0, k));
    for (k = 0; k < 10; k++)
        assert_int_equal(b.t[1].keys[k], flr_key(1, k));
    keys0 = b.t[0].keys;
    assert_int_equal(ops->keys(m, &d, idx, 2, &b), 0);
    assert_ptr_equal(b.t[0].keys, keys0);
    ops->free(m);
    flr_batch_fini(&b);
    flr_dataset_fini(&d);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void ctr_keys_are_the_sorted_unique_features(void **state)
{
    const struct flr_model_ops *ops = flr_model_find("ctr");
    struct flr_batch b = {0};
    struct flr_dataset d;
    struct flr_model_cfg c;
    uint32_t idx[50], i, u;
    uint64_t all[50 * FLR_CTR_FIELDS];
    void *m;

    (void)state;
    cfg_init(&c, "ctr");
    make_ctr(&d, 200, 30, 3, NULL);
    for (i = 0; i < 50; i++)
        idx[i] = (i * 7) % 200;
    for (i = 0; i < 50 * FLR_CTR_FIELDS; i++)
        all[i] = d.feat[(size_t)idx[i / FLR_CTR_FIELDS] * FLR_CTR_FIELDS + i % FLR_CTR_FIELDS];
    qsort(all, 50 * FLR_CTR_FIELDS, sizeof(all[0]), cmp_u64);
    for (i = 0, u = 0; i < 50 * FLR_CTR_FIELDS; i++)
        if (i == 0 || all[i] != all[i - 1])
            all[u++] = all[i];

    assert_int_equal(ops->alloc(&m, &c), 0);
    assert_int_equal(ops->keys(m, &d, idx, 50, &b), 0);
    assert_int_equal(b.ntables, 1);
    assert_int_equal(b.t[0].table, 0);
    assert_int_equal(b.t[0].dim, 1);
    assert_int_equal(b.t[0].nkeys, u);
    for (i = 0; i < u; i++)
        assert_int_equal(b.t[0].keys[i], flr_key(0, all[i]));
    assert_int_equal(b.t[0].keys[0], 0); /* the bias */

    /* A smaller batch afterwards gets only its own keys. */
    assert_int_equal(ops->keys(m, &d, idx, 1, &b), 0);
    assert_true(b.t[0].nkeys <= FLR_CTR_FIELDS - 1);
    ops->free(m);
    flr_batch_fini(&b);
    flr_dataset_fini(&d);
}

static void models_reject_the_wrong_data_or_batch(void **state)
{
    const struct flr_model_ops *sm = flr_model_find("softmax"), *ctr = flr_model_find("ctr");
    struct flr_batch b = {0};
    struct flr_dataset img, clk;
    struct flr_model_cfg c;
    uint32_t idx[2] = {0, 1};
    void *ms, *mc;
    double loss;

    (void)state;
    make_fmnist(&img, 2, 1);
    make_ctr(&clk, 2, 10, 1, NULL);
    cfg_init(&c, "softmax");
    assert_int_equal(sm->alloc(&ms, &c), 0);
    assert_int_equal(ctr->alloc(&mc, &c), 0);
    assert_int_equal(sm->keys(ms, &clk, idx, 2, &b), FLR_EINVAL);
    assert_int_equal(ctr->keys(mc, &img, idx, 2, &b), FLR_EINVAL);

    /* Keys of sample 0 only cannot serve a gradient over samples 0 and 1. */
    assert_int_equal(ctr->keys(mc, &clk, idx, 1, &b), 0);
    memset(b.t[0].vals, 0, b.t[0].nkeys * sizeof(float));
    assert_int_equal(ctr->grad(mc, &clk, idx, 2, &b, 1.0f, &loss), FLR_EINVAL);
    /* A ctr batch is not a softmax batch. */
    assert_int_equal(sm->grad(ms, &img, idx, 2, &b, 1.0f, &loss), FLR_EINVAL);

    sm->free(ms);
    ctr->free(mc);
    flr_batch_fini(&b);
    flr_dataset_fini(&img);
    flr_dataset_fini(&clk);
}

/* --- gradients -------------------------------------------------------------------------- */

/* The mean loss of the model at parameters p (double, one array per table). */
typedef double (*ref_loss_fn)(double *const *p, const struct flr_batch *b,
                              const struct flr_dataset *d, const uint32_t *idx, uint32_t n);

static double ref_softmax_ce(const double *z, uint8_t y)
{
    double zmax = z[0], sum = 0;
    int c;

    for (c = 1; c < 10; c++)
        zmax = z[c] > zmax ? z[c] : zmax;
    for (c = 0; c < 10; c++)
        sum += exp(z[c] - zmax);
    return log(sum) + zmax - z[y];
}

static double ref_softmax(double *const *p, const struct flr_batch *b, const struct flr_dataset *d,
                          const uint32_t *idx, uint32_t n)
{
    const double *w = p[0];
    double loss = 0;
    uint32_t i, k, c;

    (void)b;
    for (i = 0; i < n; i++) {
        const float *x = d->x + (size_t)idx[i] * 784;
        double z[10];
        for (c = 0; c < 10; c++) {
            z[c] = w[784 * 10 + c];
            for (k = 0; k < 784; k++)
                z[c] += x[k] * w[k * 10 + c];
        }
        loss += ref_softmax_ce(z, d->y[idx[i]]);
    }
    return loss / n;
}

static double ref_mlp(double *const *p, const struct flr_batch *b, const struct flr_dataset *d,
                      const uint32_t *idx, uint32_t n)
{
    const uint32_t h = b->t[0].dim;
    const double *w1 = p[0], *w2 = p[1];
    double loss = 0, a[64];
    uint32_t i, j, k, c;

    assert_true(h <= 64);
    for (i = 0; i < n; i++) {
        const float *x = d->x + (size_t)idx[i] * 784;
        double z[10];
        for (j = 0; j < h; j++) {
            double s = w1[784 * h + j];
            for (k = 0; k < 784; k++)
                s += x[k] * w1[k * h + j];
            a[j] = s > 0 ? s : 0;
        }
        for (c = 0; c < 10; c++) {
            z[c] = w2[h * 10 + c];
            for (j = 0; j < h; j++)
                z[c] += a[j] * w2[j * 10 + c];
        }
        loss += ref_softmax_ce(z, d->y[idx[i]]);
    }
    return loss / n;
}

static double ref_ctr(double *const *p, const struct flr_batch *b, const struct flr_dataset *d,
                      const uint32_t *idx, uint32_t n)
{
    const struct flr_batch_table *bt = &b->t[0];
    double loss = 0;
    uint32_t i, j;

    for (i = 0; i < n; i++) {
        const uint64_t *f = d->feat + (size_t)idx[i] * d->dim;
        double s = 0;
        for (j = 0; j < d->dim; j++) {
            const uint64_t *k = bsearch(&f[j], bt->keys, bt->nkeys, sizeof(uint64_t), cmp_u64);
            assert_non_null(k);
            s += p[0][k - bt->keys];
        }
        loss += log1p(exp(-fabs(s))) + (s > 0 ? s : 0) - (d->y[idx[i]] ? s : 0);
    }
    return loss / n;
}

/*
 * Fills b's values with random numbers of the given spread, runs grad() (scale 1, then
 * scale 3), and compares with central differences of the reference, parameter by
 * parameter.
 */
static void check_gradient(const char *name, uint32_t hidden, const struct flr_dataset *d,
                           const uint32_t *idx, uint32_t n, ref_loss_fn ref, const float *spread)
{
    const struct flr_model_ops *ops = flr_model_find(name);
    const double h = 1e-6;
    struct flr_batch b = {0};
    struct flr_model_cfg c;
    struct flr_rng r;
    double *p[FLR_MAX_TABLES] = {0}, loss, loss3, want, worst = 0;
    float *g1[FLR_MAX_TABLES] = {0};
    uint32_t t;
    size_t i, len;
    void *m;

    cfg_init(&c, name);
    c.hidden = hidden;
    flr_rng_seed(&r, 99);
    assert_int_equal(ops->alloc(&m, &c), 0);
    assert_int_equal(ops->keys(m, d, idx, n, &b), 0);
    for (t = 0; t < b.ntables; t++) {
        len = (size_t)b.t[t].nkeys * b.t[t].dim;
        p[t] = malloc(len * sizeof(double));
        g1[t] = malloc(len * sizeof(float));
        assert_non_null(p[t]);
        assert_non_null(g1[t]);
        for (i = 0; i < len; i++) {
            b.t[t].vals[i] = (float)((2 * flr_rng_uniform(&r) - 1) * spread[t]);
            p[t][i] = b.t[t].vals[i];
        }
    }
    assert_int_equal(ops->grad(m, d, idx, n, &b, 1.0f, &loss), 0);
    for (t = 0; t < b.ntables; t++)
        memcpy(g1[t], b.t[t].grads, (size_t)b.t[t].nkeys * b.t[t].dim * sizeof(float));
    want = ref(p, &b, d, idx, n);
    assert_float_equal(loss, want, 1e-5 * (1 + want));

    assert_int_equal(ops->grad(m, d, idx, n, &b, 3.0f, &loss3), 0);
    assert_float_equal(loss3, loss, 1e-12);

    for (t = 0; t < b.ntables; t++) {
        len = (size_t)b.t[t].nkeys * b.t[t].dim;
        for (i = 0; i < len; i++) {
            const double keep = p[t][i];
            double lp, lm, fd, err;
            p[t][i] = keep + h;
            lp = ref(p, &b, d, idx, n);
            p[t][i] = keep - h;
            lm = ref(p, &b, d, idx, n);
            p[t][i] = keep;
            fd = (lp - lm) / (2 * h);
            err = fabs(g1[t][i] - fd) / (1e-4 + fabs(fd));
            worst = err > worst ? err : worst;
            if (err > 1e-3)
                print_error("%s table %u param %zu: grad %.8g, finite difference %.8g\n", name, t,
                            i, g1[t][i], fd);
            assert_true(err <= 1e-3);
            assert_float_equal(b.t[t].grads[i], 3 * g1[t][i], 1e-6 + 1e-5 * fabs(g1[t][i]));
        }
    }
    print_message("%s: worst relative gradient error %.2g\n", name, worst);
    for (t = 0; t < b.ntables; t++) {
        free(p[t]);
        free(g1[t]);
    }
    ops->free(m);
    flr_batch_fini(&b);
}

static void softmax_gradient_matches_finite_differences(void **state)
{
    const float spread[1] = {0.2f};
    uint32_t idx[5] = {4, 1, 1, 0, 3};
    struct flr_dataset d;

    (void)state;
    make_fmnist(&d, 5, 11);
    check_gradient("softmax", 0, &d, idx, 5, ref_softmax, spread);
    flr_dataset_fini(&d);
}

static void mlp_gradient_matches_finite_differences(void **state)
{
    const float spread[2] = {0.08f, 0.6f};
    uint32_t idx[4] = {2, 0, 3, 1};
    struct flr_dataset d;

    (void)state;
    make_fmnist(&d, 4, 12);
    /* An odd hidden size also exercises the loops' tails. */
    check_gradient("mlp", 7, &d, idx, 4, ref_mlp, spread);
    flr_dataset_fini(&d);
}

static void ctr_gradient_matches_finite_differences(void **state)
{
    const float spread[1] = {0.5f};
    uint32_t idx[6] = {5, 0, 9, 3, 3, 7};
    struct flr_dataset d;

    (void)state;
    make_ctr(&d, 10, 8, 13, NULL);
    check_gradient("ctr", 0, &d, idx, 6, ref_ctr, spread);
    flr_dataset_fini(&d);
}

static void empty_batch_has_zero_gradient(void **state)
{
    const struct flr_model_ops *ops = flr_model_find("softmax");
    struct flr_batch b = {0};
    struct flr_dataset d;
    struct flr_model_cfg c;
    double loss = 1;
    uint32_t i;
    void *m;

    (void)state;
    cfg_init(&c, "softmax");
    make_fmnist(&d, 1, 1);
    assert_int_equal(ops->alloc(&m, &c), 0);
    assert_int_equal(ops->keys(m, &d, NULL, 0, &b), 0);
    for (i = 0; i < 7850; i++)
        b.t[0].grads[i] = b.t[0].vals[i] = 1;
    assert_int_equal(ops->grad(m, &d, NULL, 0, &b, 1.0f, &loss), 0);
    assert_float_equal(loss, 0, 0);
    for (i = 0; i < 7850; i++)
        assert_float_equal(b.t[0].grads[i], 0, 0);
    ops->free(m);
    flr_batch_fini(&b);
    flr_dataset_fini(&d);
}

/* --- prediction ------------------------------------------------------------------------- */

static void predictions_are_probabilities(void **state)
{
    static const char *const names[2] = {"softmax", "mlp"};
    struct flr_dataset d;
    uint32_t idx[300], i, j, mi;

    (void)state;
    make_fmnist(&d, 300, 5);
    for (i = 0; i < 300; i++)
        idx[i] = i;
    for (mi = 0; mi < 2; mi++) {
        const struct flr_model_ops *ops = flr_model_find(names[mi]);
        struct flr_batch b = {0};
        struct flr_model_cfg c;
        struct store s;
        float *out = malloc(300 * 10 * sizeof(float));
        void *m;

        assert_non_null(out);
        cfg_init(&c, names[mi]);
        c.hidden = 16;
        store_init(&s, ops, &c);
        if (mi == 0)
            for (i = 0; i < 7850; i++)
                s.w[0][i] = 0.01f * (float)((i * 37) % 11) - 0.05f;
        assert_int_equal(ops->alloc(&m, &c), 0);
        /* More samples than the MLP's prediction block. */
        assert_int_equal(ops->keys(m, &d, idx, 300, &b), 0);
        store_pull(&s, &b);
        assert_int_equal(ops->predict(m, &d, idx, 300, &b, out), 0);
        for (i = 0; i < 300; i++) {
            double sum = 0;
            for (j = 0; j < 10; j++) {
                assert_true(out[i * 10 + j] >= 0 && out[i * 10 + j] <= 1);
                sum += out[i * 10 + j];
            }
            assert_float_equal(sum, 1, 1e-5);
        }
        /* Prediction agrees with the probabilities implied by grad()'s loss. */
        {
            double loss, want = 0;
            assert_int_equal(ops->grad(m, &d, idx, 300, &b, 1.0f, &loss), 0);
            for (i = 0; i < 300; i++)
                want -= log(out[i * 10 + d.y[i]]);
            assert_float_equal(loss, want / 300, 1e-5);
        }
        ops->free(m);
        flr_batch_fini(&b);
        store_fini(&s);
        free(out);
    }
    flr_dataset_fini(&d);
}

static void ctr_prediction_is_sigmoid_of_the_score(void **state)
{
    const struct flr_model_ops *ops = flr_model_find("ctr");
    struct flr_batch b = {0};
    struct flr_dataset d;
    struct flr_model_cfg c;
    struct store s;
    uint32_t idx[20], i, j;
    float out[20];
    void *m;

    (void)state;
    cfg_init(&c, "ctr");
    make_ctr(&d, 20, 40, 8, NULL);
    store_init(&s, ops, &c);
    for (i = 0; i < (1u << CTR_TEST_BITS); i++)
        s.w[0][i] = (float)((int)(i % 13) - 6) * 0.1f;
    for (i = 0; i < 20; i++)
        idx[i] = 19 - i;
    assert_int_equal(ops->alloc(&m, &c), 0);
    assert_int_equal(ops->keys(m, &d, idx, 20, &b), 0);
    store_pull(&s, &b);
    assert_int_equal(ops->predict(m, &d, idx, 20, &b, out), 0);
    for (i = 0; i < 20; i++) {
        double sc = 0;
        for (j = 0; j < FLR_CTR_FIELDS; j++)
            sc += s.w[0][d.feat[(size_t)idx[i] * FLR_CTR_FIELDS + j]];
        assert_float_equal(out[i], 1 / (1 + exp(-sc)), 1e-6);
    }
    ops->free(m);
    flr_batch_fini(&b);
    store_fini(&s);
    flr_dataset_fini(&d);
}

/* --- local training --------------------------------------------------------------------- */

/*
 * Trains with SGD for steps batches of bsz samples drawn from train[0..ntrain), and returns
 * the mean batch loss of the first and the last 20 steps.
 */
static void train_local(const struct flr_model_ops *ops, const struct flr_model_cfg *c,
                        struct store *s, const struct flr_dataset *d, uint32_t ntrain,
                        uint32_t steps, uint32_t bsz, float lr, double *first, double *last)
{
    struct flr_batch b = {0};
    struct flr_rng r;
    uint32_t *idx = malloc(bsz * sizeof(uint32_t)), step, i;
    void *m;

    assert_non_null(idx);
    flr_rng_seed(&r, 1234);
    *first = *last = 0;
    assert_int_equal(ops->alloc(&m, c), 0);
    for (step = 0; step < steps; step++) {
        double loss;
        for (i = 0; i < bsz; i++)
            idx[i] = (uint32_t)(flr_rng_next(&r) % ntrain);
        assert_int_equal(ops->keys(m, d, idx, bsz, &b), 0);
        store_pull(s, &b);
        assert_int_equal(ops->grad(m, d, idx, bsz, &b, 1.0f, &loss), 0);
        store_sgd(s, &b, lr);
        if (step < 20)
            *first += loss / 20;
        if (step >= steps - 20)
            *last += loss / 20;
    }
    ops->free(m);
    flr_batch_fini(&b);
    free(idx);
}

/* Fraction of samples [from, to) whose most probable class is the label. */
static double accuracy(const struct flr_model_ops *ops, const struct flr_model_cfg *c,
                       const struct store *s, const struct flr_dataset *d, uint32_t from,
                       uint32_t to)
{
    struct flr_batch b = {0};
    uint32_t n = to - from, i, j, hit = 0;
    uint32_t *idx = malloc(n * sizeof(uint32_t));
    float *out = malloc((size_t)n * 10 * sizeof(float));
    void *m;

    assert_non_null(idx);
    assert_non_null(out);
    for (i = 0; i < n; i++)
        idx[i] = from + i;
    assert_int_equal(ops->alloc(&m, c), 0);
    assert_int_equal(ops->keys(m, d, idx, n, &b), 0);
    store_pull(s, &b);
    assert_int_equal(ops->predict(m, d, idx, n, &b, out), 0);
    for (i = 0; i < n; i++) {
        uint32_t best = 0;
        for (j = 1; j < 10; j++)
            best = out[i * 10 + j] > out[i * 10 + best] ? j : best;
        hit += best == d->y[from + i];
    }
    ops->free(m);
    flr_batch_fini(&b);
    free(idx);
    free(out);
    return (double)hit / n;
}

static const char *fmnist_dir(void)
{
    const char *s = getenv("FLR_FASHION_MNIST_DIR");
    return s != NULL && *s != '\0' ? s : FLR_FASHION_MNIST_DIR;
}

/* Loads the real test set (10000 images) or skips the test. */
static void load_fmnist_or_skip(struct flr_dataset *d)
{
    char path[512], why[512];

    snprintf(path, sizeof(path), "%s/t10k-images-idx3-ubyte.gz", fmnist_dir());
    if (access(path, R_OK) != 0)
        skip();
    if (flr_fmnist_load(d, fmnist_dir(), 0, why, sizeof(why)) != 0)
        fail_msg("%s", why);
}

static void train_fmnist(const char *name, uint32_t hidden, float lr, double min_acc)
{
    const struct flr_model_ops *ops = flr_model_find(name);
    struct flr_model_cfg c;
    struct flr_dataset d;
    struct store s;
    double first, last, acc;

    load_fmnist_or_skip(&d);
    cfg_init(&c, name);
    c.hidden = hidden;
    store_init(&s, ops, &c);
    /* Train on the first 8000 images, measure on the last 2000. */
    train_local(ops, &c, &s, &d, 8000, 300, 64, lr, &first, &last);
    acc = accuracy(ops, &c, &s, &d, 8000, 10000);
    print_message("%s: loss %.3f -> %.3f, held-out accuracy %.3f\n", name, first, last, acc);
    assert_true(first > 1.5);
    assert_true(last < 0.5 * first);
    assert_true(acc >= min_acc);
    store_fini(&s);
    flr_dataset_fini(&d);
}

static void softmax_learns_fashion_mnist_locally(void **state)
{
    (void)state;
    train_fmnist("softmax", 0, 0.1f, 0.70);
}

static void mlp_learns_fashion_mnist_locally(void **state)
{
    (void)state;
    train_fmnist("mlp", 32, 0.1f, 0.70);
}

static void ctr_learns_synthetic_clicks_locally(void **state)
{
    const struct flr_model_ops *ops = flr_model_find("ctr");
    float *truth = calloc(1u << CTR_TEST_BITS, sizeof(float));
    struct flr_model_cfg c;
    struct flr_dataset d;
    struct store s;
    struct flr_rng r;
    double first, last, best = 0;
    uint32_t i, j;

    (void)state;
    assert_non_null(truth);
    flr_rng_seed(&r, 77);
    for (i = 1; i < (1u << CTR_TEST_BITS); i++)
        truth[i] = (float)(0.4 * flr_rng_normal(&r));
    truth[0] = -1.0f;
    make_ctr(&d, 20000, 50, 21, truth);
    for (i = 0; i < d.n; i++) {
        double sc = 0;
        for (j = 0; j < FLR_CTR_FIELDS; j++)
            sc += truth[d.feat[(size_t)i * FLR_CTR_FIELDS + j]];
        best += log1p(exp(-fabs(sc))) + (sc > 0 ? sc : 0) - (d.y[i] ? sc : 0);
    }
    best /= d.n;

    cfg_init(&c, "ctr");
    store_init(&s, ops, &c);
    train_local(ops, &c, &s, &d, d.n, 400, 64, 1.0f, &first, &last);
    print_message("ctr: loss %.3f -> %.3f (true model %.3f)\n", first, last, best);
    assert_float_equal(first, log(2), 0.1);
    assert_true(last < first - 0.5 * (first - best));
    store_fini(&s);
    flr_dataset_fini(&d);
    free(truth);
}

/* The oracle's gradients are integers, and a batch's are the sums of its samples': what a
 * job pushes in total does not depend on how samples are grouped or ordered. */
static void oracle_pushes_additive_integers(void **state)
{
    const struct flr_model_ops *ops = flr_model_find("oracle");
    float *truth = calloc(1u << CTR_TEST_BITS, sizeof(float));
    struct flr_model_cfg c;
    struct flr_dataset d;
    struct flr_batch all = {0}, part = {0};
    uint32_t idx[32];
    double loss;
    void *m;

    (void)state;
    assert_non_null(truth);
    make_ctr(&d, 200, 50, 5, truth);
    cfg_init(&c, "oracle");
    c.hidden = 8;
    assert_int_equal(ops->alloc(&m, &c), 0);
    for (uint32_t i = 0; i < 32; i++)
        idx[i] = i * 3;
    assert_int_equal(ops->keys(m, &d, idx, 32, &all), 0);
    memset(all.t[0].vals, 0, (size_t)all.t[0].nkeys * all.t[0].dim * sizeof(float));
    assert_int_equal(ops->grad(m, &d, idx, 32, &all, 0.25f, &loss), 0);
    for (uint32_t t = 0; t < all.ntables; t++)
        for (size_t i = 0; i < (size_t)all.t[t].nkeys * all.t[t].dim; i++)
            assert_true(all.t[t].grads[i] == floorf(all.t[t].grads[i]));
    /* The dense table: the sum over the two halves, in the other order, is the whole. */
    {
        size_t nd = (size_t)all.t[0].nkeys * all.t[0].dim;
        float *sum = calloc(nd, sizeof(float));
        int any = 0;
        assert_non_null(sum);
        for (int h = 1; h >= 0; h--) {
            assert_int_equal(ops->keys(m, &d, idx + 16 * h, 16, &part), 0);
            memset(part.t[0].vals, 0, nd * sizeof(float));
            assert_int_equal(ops->grad(m, &d, idx + 16 * h, 16, &part, 1.0f, &loss), 0);
            for (size_t i = 0; i < nd; i++)
                sum[i] += part.t[0].grads[i];
        }
        for (size_t i = 0; i < nd; i++) {
            assert_true(sum[i] == all.t[0].grads[i]);
            any |= sum[i] != 0;
        }
        assert_true(any);
        free(sum);
    }
    flr_batch_fini(&all);
    flr_batch_fini(&part);
    ops->free(m);
    flr_dataset_fini(&d);
    free(truth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registry_finds_every_listed_model),
        cmocka_unit_test(oracle_pushes_additive_integers),
        cmocka_unit_test(tables_describe_shapes_init_and_optimizer),
        cmocka_unit_test(dense_keys_cover_every_row_and_reuse_buffers),
        cmocka_unit_test(ctr_keys_are_the_sorted_unique_features),
        cmocka_unit_test(models_reject_the_wrong_data_or_batch),
        cmocka_unit_test(softmax_gradient_matches_finite_differences),
        cmocka_unit_test(mlp_gradient_matches_finite_differences),
        cmocka_unit_test(ctr_gradient_matches_finite_differences),
        cmocka_unit_test(empty_batch_has_zero_gradient),
        cmocka_unit_test(predictions_are_probabilities),
        cmocka_unit_test(ctr_prediction_is_sigmoid_of_the_score),
        cmocka_unit_test(softmax_learns_fashion_mnist_locally),
        cmocka_unit_test(mlp_learns_fashion_mnist_locally),
        cmocka_unit_test(ctr_learns_synthetic_clicks_locally),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
