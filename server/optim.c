/*
 * optim.c - the four server-side optimizers, one ops table each.
 *
 * Every apply function works on one row in place.  The loops over dim take restrict
 * pointers and contain no branches, so that the compiler can vectorise them; anything
 * that depends only on the row (bias corrections) is computed once before the loop.
 *
 * The row's step count is advanced by Adam only: it is the one optimizer whose update
 * depends on how many updates the row has seen.  For the others the row's state is its
 * value and slots alone, so a copy of those is enough to restore the row.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "server/optim.h"

static void sgd_apply(const struct flr_table_spec *t, float *restrict w, uint32_t *steps,
                      const float *restrict g, uint32_t dim)
{
    const float lr = t->lr;

    for (uint32_t j = 0; j < dim; j++)
        w[j] -= lr * g[j];
}

/*
 * The kernels take every vector as its own restrict parameter: slots are carved out of the
 * row, and a pointer derived from another restrict pointer does not tell the compiler that
 * the two do not overlap.
 */
static void momentum_kernel(float *restrict w, float *restrict u, const float *restrict g,
                            uint32_t dim, float lr, float mu)
{
    for (uint32_t j = 0; j < dim; j++) {
        u[j] = mu * u[j] + g[j];
        w[j] -= lr * u[j];
    }
}

static void momentum_apply(const struct flr_table_spec *t, float *w, uint32_t *steps,
                           const float *g, uint32_t dim)
{
    momentum_kernel(w, w + dim, g, dim, t->lr, t->momentum);
}

static void adagrad_kernel(float *restrict w, float *restrict h, const float *restrict g,
                           uint32_t dim, float lr, float eps)
{
    for (uint32_t j = 0; j < dim; j++) {
        h[j] += g[j] * g[j];
        w[j] -= lr * g[j] / (sqrtf(h[j]) + eps);
    }
}

static void adagrad_apply(const struct flr_table_spec *t, float *w, uint32_t *steps, const float *g,
                          uint32_t dim)
{
    adagrad_kernel(w, w + dim, g, dim, t->lr, t->eps);
}

static void adam_kernel(float *restrict w, float *restrict m, float *restrict v,
                        const float *restrict g, uint32_t dim, float lr, float b1, float b2,
                        float eps, float inv_bc1, float inv_bc2)
{
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;

    for (uint32_t j = 0; j < dim; j++) {
        m[j] = b1 * m[j] + c1 * g[j];
        v[j] = b2 * v[j] + c2 * g[j] * g[j];
        w[j] -= lr * (m[j] * inv_bc1) / (sqrtf(v[j] * inv_bc2) + eps);
    }
}

static void adam_apply(const struct flr_table_spec *t, float *w, uint32_t *steps, const float *g,
                       uint32_t dim)
{
    /* Saturate rather than wrap: a step count of 0 would divide by zero below. */
    if (*steps < UINT32_MAX)
        (*steps)++;
    /* The corrections are computed in double: 1 - b2^n loses most of its digits in
     * float when b2 is close to 1 and n is small. */
    const double n = (double)*steps;
    const float inv_bc1 = (float)(1.0 / (1.0 - pow((double)t->beta1, n)));
    const float inv_bc2 = (float)(1.0 / (1.0 - pow((double)t->beta2, n)));

    adam_kernel(w, w + dim, w + 2 * (size_t)dim, g, dim, t->lr, t->beta1, t->beta2, t->eps, inv_bc1,
                inv_bc2);
}

static const struct flr_optim_ops optim_sgd = {
    .name = "sgd",
    .nslots = 0,
    .apply = sgd_apply,
};

static const struct flr_optim_ops optim_momentum = {
    .name = "momentum",
    .nslots = 1,
    .apply = momentum_apply,
};

static const struct flr_optim_ops optim_adagrad = {
    .name = "adagrad",
    .nslots = 1,
    .apply = adagrad_apply,
};

static const struct flr_optim_ops optim_adam = {
    .name = "adam",
    .nslots = 2,
    .apply = adam_apply,
};

static const struct flr_optim_ops *const optim_table[] = {
    [FLR_OPT_SGD] = &optim_sgd,
    [FLR_OPT_MOMENTUM] = &optim_momentum,
    [FLR_OPT_ADAGRAD] = &optim_adagrad,
    [FLR_OPT_ADAM] = &optim_adam,
};

const struct flr_optim_ops *flr_optim_ops(enum flr_optim_kind kind)
{
    if ((unsigned)kind >= sizeof(optim_table) / sizeof(optim_table[0]))
        return NULL;
    return optim_table[kind];
}
