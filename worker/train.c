#include "train.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/util.h"
#include "data.h"

struct eval_out {
    double accuracy; /* classification */
    double loss;     /* cross-entropy or log-loss */
    double auc;      /* ctr */
};

/* Pulls (or pushes) every table of b, all in flight at once. */
static int train_exchange(struct flr_client *c, struct flr_batch *b, int push)
{
    struct flr_op *ops[FLR_MAX_TABLES];
    int rv = 0, r;
    uint32_t i, started = 0;

    for (i = 0; i < b->ntables; i++) {
        const struct flr_batch_table *t = &b->t[i];
        r = push ? flr_push_async(c, t->table, t->keys, t->nkeys, t->grads, &ops[i])
                 : flr_pull_async(c, t->table, t->keys, t->nkeys, t->vals, &ops[i]);
        if (r != 0) {
            rv = r;
            break;
        }
        started++;
    }
    for (i = 0; i < started; i++)
        if ((r = flr_wait(ops[i])) != 0 && !rv)
            rv = r;
    return rv;
}

static int train_pull(struct flr_client *c, struct flr_batch *b)
{
    return train_exchange(c, b, 0);
}

static int train_push(struct flr_client *c, struct flr_batch *b)
{
    return train_exchange(c, b, 1);
}

static int train_eval(struct flr_client *c, const struct flr_model_ops *ops, void *m,
                      const struct flr_dataset *test, struct flr_batch *b, struct eval_out *out)
{
    const uint32_t chunk = 4096;
    uint32_t *idx = malloc(chunk * sizeof(*idx));
    float *pred = malloc((size_t)chunk * ops->nout * sizeof(*pred));
    float *scores = ops->nout == 1 ? malloc((size_t)test->n * sizeof(float)) : NULL;
    uint64_t correct = 0;
    double loss = 0;
    int rv = 0;

    if (!idx || !pred || (ops->nout == 1 && !scores)) {
        rv = FLR_ENOMEM;
        goto done;
    }
    for (uint32_t s = 0; s < test->n; s += chunk) {
        uint32_t n = test->n - s < chunk ? test->n - s : chunk;
        for (uint32_t i = 0; i < n; i++)
            idx[i] = s + i;
        /* Dense models touch every row: one pull serves the whole test set. */
        if (s == 0 || ops->data == FLR_DATA_CTR) {
            if ((rv = ops->keys(m, test, idx, n, b)) != 0 || (rv = train_pull(c, b)) != 0)
                goto done;
        }
        if ((rv = ops->predict(m, test, idx, n, b, pred)) != 0)
            goto done;
        for (uint32_t i = 0; i < n; i++) {
            uint8_t y = test->y[s + i];
            if (ops->nout == 1) {
                float p = pred[i];
                scores[s + i] = p;
                if ((p >= 0.5f) == (y == 1))
                    correct++;
            } else {
                const float *pr = pred + (size_t)i * ops->nout;
                uint32_t best = 0;
                for (uint32_t k = 1; k < ops->nout; k++)
                    if (pr[k] > pr[best])
                        best = k;
                correct += best == y;
                loss += -log(fmax(pr[y], 1e-12));
            }
        }
    }
    out->accuracy = test->n ? (double)correct / test->n : 0;
    if (ops->nout == 1) {
        out->auc = flr_auc(scores, test->y, test->n);
        out->loss = flr_logloss(scores, test->y, test->n);
    } else {
        out->loss = test->n ? loss / test->n : 0;
        out->auc = 0;
    }
done:
    free(idx);
    free(pred);
    free(scores);
    return rv;
}

static void shuffle(uint32_t *v, uint32_t n, uint64_t seed)
{
    struct flr_rng r;
    flr_rng_seed(&r, seed);
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(flr_rng_next(&r) % i);
        uint32_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* Checks that the model this worker runs has exactly the tables the job was created with. */
static int train_check_tables(const struct flr_model_ops *ops, const struct flr_model_cfg *mc,
                              struct flr_client *c, char *why, size_t whylen)
{
    struct flr_table_spec t[FLR_MAX_TABLES];
    uint32_t n = 0;
    int rv;

    if ((rv = ops->tables(mc, t, &n)) != 0) {
        snprintf(why, whylen, "model %s: cannot describe its tables", ops->name);
        return rv;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t rows;
        uint32_t dim;
        if (flr_client_table(c, t[i].id, &rows, &dim) != 0 ||
            rows != (t[i].kind == FLR_TABLE_DENSE ? t[i].rows : 0) || dim != t[i].dim) {
            snprintf(why, whylen,
                     "model %s needs table %u '%s' with %llu rows x %u, which the job does not "
                     "have (was the coordinator started with the same model options?)",
                     ops->name, t[i].id, t[i].name, (unsigned long long)t[i].rows, t[i].dim);
            return FLR_ECONFIG;
        }
    }
    return 0;
}

static double read_truth_auc(const char *path)
{
    json_error_t err;
    json_t *j = path ? json_load_file(path, 0, &err) : NULL;
    double auc = -1;
    if (j) {
        json_t *a = json_object_get(j, "auc");
        if (json_is_number(a))
            auc = json_number_value(a);
        json_decref(j);
    }
    return auc;
}

/* ---- exactly-once oracle output ------------------------------------------------------ */

/* What this worker pushed, summed per parameter (exact: the oracle pushes integers). */
struct pushed {
    uint32_t ntables;
    uint64_t rows[FLR_MAX_TABLES];
    uint32_t dim[FLR_MAX_TABLES];
    double *sum[FLR_MAX_TABLES];
};

static int pushed_init(struct pushed *p, struct flr_client *c, const struct flr_model_ops *ops,
                       const struct flr_model_cfg *mc, char *why, size_t whylen)
{
    struct flr_table_spec t[FLR_MAX_TABLES];
    uint32_t n = 0;
    int rv;

    if ((rv = ops->tables(mc, t, &n)) != 0)
        return rv;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t rows;
        uint32_t dim;
        if ((rv = flr_client_table(c, t[i].id, &rows, &dim)) != 0)
            return rv;
        if (t[i].kind == FLR_TABLE_SPARSE)
            rows = ops->sparse_rows;
        if (rows == 0 || rows > (1u << 20) || t[i].id >= FLR_MAX_TABLES) {
            snprintf(why, whylen,
                     "--oracle-out: model %s has a table of unbounded rows (use the oracle "
                     "model)",
                     ops->name);
            return FLR_ECONFIG;
        }
        p->rows[t[i].id] = rows;
        p->dim[t[i].id] = dim;
        if (!(p->sum[t[i].id] = calloc(rows * dim, sizeof(double))))
            return FLR_ENOMEM;
        if (t[i].id + 1 > p->ntables)
            p->ntables = t[i].id + 1;
    }
    return 0;
}

static void pushed_add(struct pushed *p, const struct flr_batch *b)
{
    for (uint32_t i = 0; i < b->ntables; i++) {
        const struct flr_batch_table *t = &b->t[i];
        for (uint32_t k = 0; k < t->nkeys; k++) {
            uint64_t row = flr_key_row(t->keys[k]);
            for (uint32_t j = 0; j < t->dim; j++)
                p->sum[t->table][row * t->dim + j] += t->grads[(size_t)k * t->dim + j];
        }
    }
}

static void pushed_fini(struct pushed *p)
{
    for (uint32_t i = 0; i < FLR_MAX_TABLES; i++)
        free(p->sum[i]);
}

/* Writes one line per parameter that is not zero: "table row element value". */
static int pushed_write(const struct pushed *p, const char *prefix, uint32_t worker)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s.w%u.pushed", prefix, worker);
    if (!(f = fopen(path, "w")))
        return FLR_EIO;
    for (uint32_t t = 0; t < p->ntables; t++)
        for (uint64_t i = 0; p->sum[t] && i < p->rows[t] * p->dim[t]; i++)
            if (p->sum[t][i] != 0)
                fprintf(f, "%u %llu %llu %.17g\n", t, (unsigned long long)(i / p->dim[t]),
                        (unsigned long long)(i % p->dim[t]), p->sum[t][i]);
    return fclose(f) == 0 ? 0 : FLR_EIO;
}

/* Worker 0, once every other worker has finished: pulls every parameter and writes the
 * ones that are not zero, as pushed_write does. */
static int final_write(struct flr_client *c, const struct pushed *p, const char *prefix)
{
    char path[4096];
    uint64_t *keys = NULL;
    float *vals = NULL;
    FILE *f = NULL;
    int rv;

    if ((rv = flr_client_wait_others(c, 600000)) != 0)
        return rv;
    snprintf(path, sizeof(path), "%s.final", prefix);
    if (!(f = fopen(path, "w")))
        return FLR_EIO;
    for (uint32_t t = 0; t < p->ntables && rv == 0; t++) {
        if (!p->sum[t])
            continue;
        free(keys);
        free(vals);
        keys = malloc(p->rows[t] * sizeof(*keys));
        vals = malloc(p->rows[t] * p->dim[t] * sizeof(*vals));
        if (!keys || !vals) {
            rv = FLR_ENOMEM;
            break;
        }
        for (uint64_t r = 0; r < p->rows[t]; r++)
            keys[r] = flr_key(t, r);
        if ((rv = flr_pull(c, t, keys, (uint32_t)p->rows[t], vals)) != 0)
            break;
        for (uint64_t i = 0; i < p->rows[t] * p->dim[t]; i++)
            if (vals[i] != 0)
                fprintf(f, "%u %llu %llu %.17g\n", t, (unsigned long long)(i / p->dim[t]),
                        (unsigned long long)(i % p->dim[t]), (double)vals[i]);
    }
    free(keys);
    free(vals);
    if (fclose(f) != 0 && rv == 0)
        rv = FLR_EIO;
    return rv;
}

int flr_train_run(struct flr_client *c, const struct flr_train_cfg *cfg, char **result_json,
                  char *why, size_t whylen)
{
    const struct flr_model_ops *ops = flr_model_find(cfg->model.name);
    struct flr_dataset train = {0}, test = {0};
    struct flr_batch b = {0}, eb = {0};
    void *m = NULL;
    uint32_t *perm = NULL, W = flr_client_num_workers(c), total, iters;
    json_t *res = NULL, *curve = json_array();
    double loss_sum = 0, last_loss = 0, truth_auc = -1;
    uint64_t samples = 0, iterations = 0;
    int64_t t0 = flr_now_ms(), start = 0;
    int rv;
    float scale;
    struct eval_out ev = {0};
    struct pushed pushed = {0};

    if (!ops) {
        snprintf(why, whylen, "unknown model '%s'", cfg->model.name);
        return FLR_ECONFIG;
    }
    if ((rv = train_check_tables(ops, &cfg->model, c, why, whylen)) != 0)
        return rv;
    if (ops->data == FLR_DATA_FMNIST) {
        if ((rv = flr_fmnist_load(&train, cfg->data_dir, 1, why, whylen)) != 0)
            goto done;
        if (cfg->evaluate && (rv = flr_fmnist_load(&test, cfg->data_dir, 0, why, whylen)) != 0)
            goto done;
    } else {
        if (!cfg->train_path || !cfg->train_path[0]) {
            snprintf(why, whylen,
                     "model ctr needs --train FILE (a Criteo-format TSV; "
                     "flr-datagen writes one)");
            rv = FLR_ECONFIG;
            goto done;
        }
        if ((rv = flr_ctr_load(&train, cfg->train_path, cfg->model.hash_bits, cfg->max_rows, why,
                               whylen)) != 0)
            goto done;
        if (cfg->evaluate) {
            if (!cfg->test_path || !cfg->test_path[0]) {
                snprintf(why, whylen, "model ctr needs --test FILE to evaluate");
                rv = FLR_ECONFIG;
                goto done;
            }
            if ((rv = flr_ctr_load(&test, cfg->test_path, cfg->model.hash_bits, 0, why, whylen)) !=
                0)
                goto done;
            truth_auc = read_truth_auc(cfg->truth_path);
        }
    }
    total = train.n;
    flr_dataset_partition(&train, cfg->worker_id, W);
    /* Every worker runs the same number of iterations, or BSP would wait forever. */
    iters = (total / W) / cfg->batch;
    if (iters == 0) {
        snprintf(why, whylen, "batch %u is larger than a worker's share (%u samples)", cfg->batch,
                 total / W);
        rv = FLR_ECONFIG;
        goto done;
    }
    if ((rv = ops->alloc(&m, &cfg->model)) != 0) {
        snprintf(why, whylen, "model %s: out of memory", ops->name);
        goto done;
    }
    if (cfg->oracle_out && cfg->oracle_out[0] &&
        (rv = pushed_init(&pushed, c, ops, &cfg->model, why, whylen)) != 0)
        goto done;
    if (!(perm = malloc((size_t)train.n * sizeof(*perm)))) {
        rv = FLR_ENOMEM;
        goto done;
    }
    for (uint32_t i = 0; i < train.n; i++)
        perm[i] = i;
    /* Each worker's gradient is scaled by 1/W.  Under BSP the server sums the workers'
     * pushes of a clock, so a clock makes one step on the global batch's mean gradient;
     * under SSP and ASP each push is a 1/W step on stale weights.  Either way W pushes move
     * the model as far as one global batch, so one learning rate means the same thing in
     * every consistency model and results compare. */
    scale = 1.0f / (float)W;
    start = flr_client_start_clock(c);

    for (uint32_t e = 0; e < cfg->epochs; e++) {
        int64_t te = flr_now_ms();
        double eloss = 0;
        shuffle(perm, train.n, cfg->seed ^ flr_mix64(((uint64_t)cfg->worker_id << 32) | e));
        if ((int64_t)(e + 1) * iters <= start)
            continue; /* the whole epoch passed while this worker was away */
        for (uint32_t it = 0; it < iters; it++) {
            const uint32_t *idx = perm + (size_t)it * cfg->batch;
            double loss;
            /* A rejoining worker goes on from the job's clock: the iterations before it
             * were done (or skipped) while it was away. */
            if ((int64_t)e * iters + it < start)
                continue;
            if ((rv = ops->keys(m, &train, idx, cfg->batch, &b)) != 0)
                goto model_fail;
            if ((rv = train_pull(c, &b)) != 0)
                goto ps_fail;
            if ((rv = ops->grad(m, &train, idx, cfg->batch, &b, scale, &loss)) != 0)
                goto model_fail;
            if ((rv = train_push(c, &b)) != 0)
                goto ps_fail;
            if (pushed.ntables)
                pushed_add(&pushed, &b);
            if ((rv = flr_clock(c)) != 0)
                goto ps_fail;
            eloss += loss;
            samples += cfg->batch;
            iterations++;
            flr_client_progress(c, (int64_t)iters * cfg->epochs, samples, e + 1, eloss / (it + 1));
        }
        last_loss = eloss / iters;
        loss_sum += eloss;
        json_t *pt = json_pack("{sI sf sf}", "epoch", (json_int_t)(e + 1), "train_loss", last_loss,
                               "seconds", (flr_now_ms() - t0) / 1000.0);
        if (cfg->evaluate) {
            if ((rv = train_eval(c, ops, m, &test, &eb, &ev)) != 0) {
                json_decref(pt);
                goto ps_fail;
            }
            if (ops->nout == 1) {
                json_object_set_new(pt, "test_auc", json_real(ev.auc));
                json_object_set_new(pt, "test_logloss", json_real(ev.loss));
                flr_notice("wrk.epoch",
                           "epoch %u/%u: train loss %.4f, test AUC %.4f, log-loss "
                           "%.4f (%.1f s)",
                           e + 1, cfg->epochs, last_loss, ev.auc, ev.loss,
                           (flr_now_ms() - te) / 1000.0);
            } else {
                json_object_set_new(pt, "test_accuracy", json_real(ev.accuracy));
                json_object_set_new(pt, "test_loss", json_real(ev.loss));
                flr_notice("wrk.epoch",
                           "epoch %u/%u: train loss %.4f, test accuracy %.2f%% "
                           "(%.1f s)",
                           e + 1, cfg->epochs, last_loss, 100 * ev.accuracy,
                           (flr_now_ms() - te) / 1000.0);
            }
        } else {
            flr_info("wrk.epoch", "epoch %u/%u: train loss %.4f (%.1f s)", e + 1, cfg->epochs,
                     last_loss, (flr_now_ms() - te) / 1000.0);
        }
        json_array_append_new(curve, pt);
        if (cfg->evaluate) {
            char *text = json_dumps(curve, JSON_COMPACT | JSON_REAL_PRECISION(6));
            if (text && flr_client_publish_curve(c, text) != 0)
                flr_warn("wrk.curve", "could not publish the training curve");
            free(text);
        }
    }

    if (pushed.ntables) {
        if ((rv = pushed_write(&pushed, cfg->oracle_out, cfg->worker_id)) != 0) {
            snprintf(why, whylen, "--oracle-out: cannot write %s.w%u.pushed", cfg->oracle_out,
                     cfg->worker_id);
            goto done;
        }
        if (cfg->worker_id == 0 && (rv = final_write(c, &pushed, cfg->oracle_out)) != 0)
            goto ps_fail;
    }
    res = json_pack("{sI ss sI sI sI sf sf}", "worker", (json_int_t)cfg->worker_id, "model",
                    ops->name, "epochs", (json_int_t)cfg->epochs, "samples", (json_int_t)samples,
                    "iterations", (json_int_t)iterations, "train_loss", last_loss, "train_seconds",
                    (flr_now_ms() - t0) / 1000.0);
    json_object_set_new(res, "batch", json_integer(cfg->batch));
    {
        struct flr_client_traffic tr;
        flr_client_traffic(c, &tr);
        json_object_set_new(res, "traffic",
                            json_pack("{sI sI sI sI sI sI}", "sent_bytes", (json_int_t)tr.sent,
                                      "received_bytes", (json_int_t)tr.received,
                                      "replicated_in_bytes", (json_int_t)tr.keeper_in,
                                      "rebuild_out_bytes", (json_int_t)tr.keeper_out,
                                      "peak_copy_bytes", (json_int_t)tr.peak_copy_bytes,
                                      "peak_log_bytes", (json_int_t)tr.peak_log_bytes));
    }
    if (start > 0)
        json_object_set_new(res, "rejoined_at_clock", json_integer(start));
    if (cfg->evaluate) {
        if (ops->nout == 1) {
            json_object_set_new(res, "test_auc", json_real(ev.auc));
            json_object_set_new(res, "test_logloss", json_real(ev.loss));
            json_object_set_new(res, "test_accuracy", json_real(ev.accuracy));
            if (truth_auc >= 0)
                json_object_set_new(res, "truth_auc", json_real(truth_auc));
        } else {
            json_object_set_new(res, "test_accuracy", json_real(ev.accuracy));
            json_object_set_new(res, "test_loss", json_real(ev.loss));
        }
        json_object_set_new(res, "test_samples", json_integer(test.n));
    }
    json_object_set(res, "curve", curve);
    *result_json = json_dumps(res, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(res);
    rv = *result_json ? 0 : FLR_ENOMEM;
    (void)loss_sum;
    goto done;

model_fail:
    snprintf(why, whylen, "model %s failed: %s", ops->name, flr_strerror(rv));
    goto done;
ps_fail:
    snprintf(why, whylen, "parameter server: %s (%s)", flr_client_last_error(c), flr_strerror(rv));
done:
    pushed_fini(&pushed);
    json_decref(curve);
    if (m)
        ops->free(m);
    flr_batch_fini(&b);
    flr_batch_fini(&eb);
    free(perm);
    flr_dataset_fini(&train);
    flr_dataset_fini(&test);
    return rv;
}
