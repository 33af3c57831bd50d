/*
 * model.h - the built-in models, as ops tables.
 *
 * A model knows which tables it needs, which rows a batch touches, and how to compute the
 * gradient of its loss from the rows' values.  It does not talk to servers: the training
 * loop (worker/train.c) pulls the rows, calls grad(), and pushes the result.
 *
 * Built-in models:
 *   softmax  multinomial logistic regression on Fashion-MNIST.
 *            table 0 "w": dense, 785 rows (784 pixels + bias) x 10.
 *   mlp      one hidden layer (ReLU) on Fashion-MNIST.
 *            table 0 "w1": dense, 785 rows x hidden;  table 1 "w2": dense, hidden+1 rows x 10.
 *   ctr      sparse logistic regression on hashed CTR features.
 *            table 0 "w": sparse, rows = feature ids, dim 1.
 */
#ifndef FLR_MODEL_H
#define FLR_MODEL_H

#include <stdint.h>

#include "common/spec.h"
#include "data.h"

struct flr_model_cfg {
    char name[FLR_NAME_MAX]; /* softmax | mlp | ctr */
    uint32_t hidden;         /* mlp hidden units */
    uint32_t hash_bits;      /* ctr feature id bits */
    enum flr_optim_kind optim;
    float lr;
    float init_scale; /* 0 = the model's default */
    uint64_t seed;
};

/* The rows one batch needs from one table, and their values and gradients. */
struct flr_batch_table {
    uint32_t table; /* table id */
    uint32_t dim;
    uint64_t *keys; /* sorted unique keys (flr_key(table, row)) */
    uint32_t nkeys;
    uint32_t cap; /* capacity of keys/vals/grads, in rows */
    float *vals;  /* nkeys * dim, filled by the training loop's pull */
    float *grads; /* nkeys * dim, filled by grad() */
};

struct flr_batch {
    uint32_t ntables;
    struct flr_batch_table t[FLR_MAX_TABLES];
};

/* Frees the buffers of a batch (grown by the models with flr_batch_reserve). */
void flr_batch_fini(struct flr_batch *b);
int flr_batch_reserve(struct flr_batch_table *bt, uint32_t rows);

struct flr_model_ops {
    const char *name;
    enum flr_data_kind data;
    uint32_t nout; /* outputs per sample predict() writes: 10 classes, or 1 probability */
    enum flr_optim_kind default_optim; /* the optimizer a job gets unless it names one */
    uint64_t sparse_rows;              /* sparse row ids are below this (0: unbounded) */

    /* Fills the tables the model needs (ids 0.., names, shapes, init, optimizer). */
    int (*tables)(const struct flr_model_cfg *c, struct flr_table_spec *out, uint32_t *n);

    int (*alloc)(void **mp, const struct flr_model_cfg *c);
    void (*free)(void *m);

    /* Sets b's tables and keys for samples idx[0..n) of d (dense models: every row). */
    int (*keys)(void *m, const struct flr_dataset *d, const uint32_t *idx, uint32_t n,
                struct flr_batch *b);

    /* With b's vals filled, writes b's grads: the gradient of the mean loss over the batch
     * multiplied by scale; *loss gets the mean loss. */
    int (*grad)(void *m, const struct flr_dataset *d, const uint32_t *idx, uint32_t n,
                struct flr_batch *b, float scale, double *loss);

    /* With b's vals filled (keys from keys()), writes n * nout outputs: class
     * probabilities, or the probability of a click. */
    int (*predict)(void *m, const struct flr_dataset *d, const uint32_t *idx, uint32_t n,
                   const struct flr_batch *b, float *out);
};

/* Looks a model up by name; NULL when unknown. */
const struct flr_model_ops *flr_model_find(const char *name);

/* The names of all models, NULL-terminated (for --help and error messages). */
extern const char *const flr_model_names[];

#endif
