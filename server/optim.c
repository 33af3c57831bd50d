/*
 * optim.c - the four server-side optimizers, one ops table each.
 *
 * Every apply function works on one row in place.  The loops over dim take restrict
 * pointers and contain no branches, so that the compiler can vectorise them; anything
 * that depends only on the row (bias corrections) is computed once before the loop.
 *
 * At -O2, GCC vectorises only a loop that needs no scalar remainder.  So each kernel's loop
 * is written once, over a range [lo, hi), and run twice: over the first opt_main(dim)
 * columns, a multiple of OPT_LANES that GCC can see, and then over the few left.  Each
 * column goes through the same operations in the same order either way, so the vector
 * and the scalar loop give bit-identical results.
 *
 * The row's step count is advanced by Adam only: it is the one optimizer whose update
 * depends on how many updates the row has seen.  For the others the row's state is its
 * value and slots alone, so a copy of those is enough to restore the row.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "server/optim.h"

/* A multiple of the float vector widths GCC picks: 4 with SSE, 8 with AVX. */
#define OPT_LANES 8u

/* The columns the vector loop takes: dim rounded down to a multiple of OPT_LANES. */
static inline uint32_t opt_main(uint32_t dim)
{
    return dim & ~(OPT_LANES - 1);
}

static inline void sgd_range(float *restrict w, const float *restrict g, uint32_t lo, uint32_t hi,
                             float lr)
{
    for (uint32_t j = lo; j < hi; j++)
        w[j] -= lr * g[j];
}

static void sgd_apply(const struct flr_table_spec *t, float *w, uint32_t *steps, const float *g,
                      uint32_t dim)
{
    sgd_range(w, g, 0, opt_main(dim), t->lr);
    sgd_range(w, g, opt_main(dim), dim, t->lr);
}

/*
 * The kernels take every vector as its own restrict parameter: slots are carved out of the
 * row, and a pointer derived from another restrict pointer does not tell the compiler that
 * the two do not overlap.
 */
static inline void momentum_range(float *restrict w, float *restrict u, const float *restrict g,
                                  uint32_t lo, uint32_t hi, float lr, float mu)
{
    for (uint32_t j = lo; j < hi; j++) {
        u[j] = mu * u[j] + g[j];
        w[j] -= lr * u[j];
    }
}

static void momentum_apply(const struct flr_table_spec *t, float *w, uint32_t *steps,
                           const float *g, uint32_t dim)
{
    momentum_range(w, w + dim, g, 0, opt_main(dim), t->lr, t->momentum);
    momentum_range(w, w + dim, g, opt_main(dim), dim, t->lr, t->momentum);
}

static inline void adagrad_range(float *restrict w, float *restrict h, const float *restrict g,
                                 uint32_t lo, uint32_t hi, float lr, float eps)
{
    for (uint32_t j = lo; j < hi; j++) {
        h[j] += g[j] * g[j];
        w[j] -= lr * g[j] / (sqrtf(h[j]) + eps);
    }
}

static void adagrad_apply(const struct flr_table_spec *t, float *w, uint32_t *steps, const float *g,
                          uint32_t dim)
{
    adagrad_range(w, w + dim, g, 0, opt_main(dim), t->lr, t->eps);
    adagrad_range(w, w + dim, g, opt_main(dim), dim, t->lr, t->eps);
}

/* The per-row constants of one Adam update. */
struct adam_step {
    float lr, b1, b2, eps, inv_bc1, inv_bc2;
};

static inline void adam_range(float *restrict w, float *restrict m, float *restrict v,
                              const float *restrict g, uint32_t lo, uint32_t hi,
                              const struct adam_step *k)
{
    const float lr = k->lr, b1 = k->b1, b2 = k->b2, eps = k->eps;
    const float inv_bc1 = k->inv_bc1, inv_bc2 = k->inv_bc2;
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;

    for (uint32_t j = lo; j < hi; j++) {
        m[j] = b1 * m[j] + c1 * g[j];
        v[j] = b2 * v[j] + c2 * g[j] * g[j];
        w[j] -= lr * (m[j] * inv_bc1) / (sqrtf(v[j] * inv_bc2) + eps);
    }
}

static void adam_apply(const struct flr_table_spec *t, float *w, uint32_t *steps, const float *g,
                       uint32_t dim)
{
    struct adam_step k = {.lr = t->lr, .b1 = t->beta1, .b2 = t->beta2, .eps = t->eps};
    float *m = w + dim, *v = w + 2 * (size_t)dim;

    /* Saturate rather than wrap: a step count of 0 would divide by zero below. */
    if (*steps < UINT32_MAX)
        (*steps)++;
    /* The corrections are computed in double: 1 - b2^n loses most of its digits in
     * float when b2 is close to 1 and n is small. */
    const double n = (double)*steps;
    k.inv_bc1 = (float)(1.0 / (1.0 - pow((double)t->beta1, n)));
    k.inv_bc2 = (float)(1.0 / (1.0 - pow((double)t->beta2, n)));

    adam_range(w, m, v, g, 0, opt_main(dim), &k);
    adam_range(w, m, v, g, opt_main(dim), dim, &k);
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
