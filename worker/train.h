/*
 * train.h - the training loop of flr-worker: data partition, pull, gradient, push, clock,
 * and (on worker 0) evaluation on the test set after every epoch.
 */
#ifndef FLR_TRAIN_H
#define FLR_TRAIN_H

#include <stdint.h>

#include "flr_client.h"
#include "model.h"

struct flr_train_cfg {
    struct flr_model_cfg model;
    const char *data_dir;   /* Fashion-MNIST directory */
    const char *train_path; /* CTR train TSV */
    const char *test_path;  /* CTR test TSV */
    const char *truth_path; /* CTR truth.json from flr-datagen, optional */
    uint64_t max_rows;      /* CTR rows to read, 0 = all */
    uint32_t epochs;
    uint32_t batch;
    uint32_t worker_id;
    int evaluate; /* evaluate on the test set after each epoch */
    int bsp;      /* the job is BSP: gradients are scaled by 1/workers */
    uint64_t seed;
    /* Exactly-once checks: write what this worker pushed to <prefix>.w<id>.pushed and, on
     * worker 0 once every other worker has finished, the final parameters to
     * <prefix>.final.  Needs tables of bounded rows (the oracle model). */
    const char *oracle_out;
};

/* Runs the whole training job through c.  On success *result_json is a malloc'd JSON
 * document (the caller publishes and frees it). */
int flr_train_run(struct flr_client *c, const struct flr_train_cfg *cfg, char **result_json,
                  char *why, size_t whylen);

#endif
