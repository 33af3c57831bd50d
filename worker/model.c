/*
 * model.c - the registry of built-in models, and batch buffers.
 *
 * Each model lives in its own file as a static ops table with one exported constructor
 * (flr_model_softmax() etc., declared below rather than in model.h because only this
 * registry calls them).  Adding a model means adding a file, a line here and a name in
 * flr_model_names.
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "model.h"

const struct flr_model_ops *flr_model_softmax(void);
const struct flr_model_ops *flr_model_mlp(void);
const struct flr_model_ops *flr_model_ctr(void);
const struct flr_model_ops *flr_model_oracle(void);

static const struct flr_model_ops *(*const model_ctors[])(void) = {
    flr_model_softmax,
    flr_model_mlp,
    flr_model_ctr,
    flr_model_oracle,
};

/* In the order of model_ctors (a test checks that they agree). */
const char *const flr_model_names[] = {"softmax", "mlp", "ctr", "oracle", NULL};

const struct flr_model_ops *flr_model_find(const char *name)
{
    size_t i;

    if (name == NULL)
        return NULL;
    for (i = 0; i < sizeof(model_ctors) / sizeof(model_ctors[0]); i++) {
        const struct flr_model_ops *ops = model_ctors[i]();
        if (strcmp(ops->name, name) == 0)
            return ops;
    }
    return NULL;
}

/*
 * Grows keys, vals and grads to hold at least rows rows of bt->dim floats.  bt->dim must
 * be set before the first call and keep its value afterwards.  Contents are kept.  On
 * failure the buffers are unchanged in size (some may have grown) and cap is unchanged.
 */
int flr_batch_reserve(struct flr_batch_table *bt, uint32_t rows)
{
    uint64_t *keys;
    float *vals, *grads;
    uint32_t ncap;

    if (rows <= bt->cap)
        return 0;
    ncap = bt->cap + bt->cap / 2;
    if (ncap < rows)
        ncap = rows;
    if ((keys = realloc(bt->keys, (size_t)ncap * sizeof(*keys))) == NULL)
        return FLR_ENOMEM;
    bt->keys = keys;
    if ((vals = realloc(bt->vals, (size_t)ncap * bt->dim * sizeof(*vals))) == NULL)
        return FLR_ENOMEM;
    bt->vals = vals;
    if ((grads = realloc(bt->grads, (size_t)ncap * bt->dim * sizeof(*grads))) == NULL)
        return FLR_ENOMEM;
    bt->grads = grads;
    bt->cap = ncap;
    return 0;
}

void flr_batch_fini(struct flr_batch *b)
{
    uint32_t i;

    for (i = 0; i < FLR_MAX_TABLES; i++) {
        free(b->t[i].keys);
        free(b->t[i].vals);
        free(b->t[i].grads);
    }
    memset(b, 0, sizeof(*b));
}
