/*
 * optim.h - server-side optimizers as ops tables.
 *
 * A row is stored as (1 + nslots) vectors of dim floats, back to back:
 *     [ value | slot0 | slot1 ]
 * momentum: slot0 = velocity.  adagrad: slot0 = sum of squared gradients.
 * adam: slot0 = first moment m, slot1 = second moment v; the per-row step count used for
 * bias correction lives in the row's metadata (*steps), so sparse rows get "lazy" Adam.
 *
 * Update rules (g = gradient, lr = t->lr):
 *   sgd:      w -= lr * g
 *   momentum: u = mu * u + g;  w -= lr * u
 *   adagrad:  h += g*g;        w -= lr * g / (sqrt(h) + eps)
 *   adam:     n = ++steps; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
 *             w -= lr * (m / (1-b1^n)) / (sqrt(v / (1-b2^n)) + eps)
 */
#ifndef FLR_OPTIM_H
#define FLR_OPTIM_H

#include <stdint.h>

#include "common/spec.h"

struct flr_optim_ops {
    const char *name;
    uint32_t nslots;
    /* Applies one gradient (an aligned float vector of dim values) to one row in place. */
    void (*apply)(const struct flr_table_spec *t, float *row, uint32_t *steps, const float *grad,
                  uint32_t dim);
};

/* Returns the ops table for a kind (never NULL for a valid kind). */
const struct flr_optim_ops *flr_optim_ops(enum flr_optim_kind kind);

#endif
