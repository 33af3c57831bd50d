/*
 * flr-worker - trains one of the built-in models through the flr client library.
 *
 * It joins a job as worker N, reads the job spec (model, tables, consistency) from
 * ZooKeeper, trains on its partition of the data (sample i belongs to worker i % W), and
 * publishes a result document under /flr/<job>/results/N.  Worker 0 also evaluates on
 * the test set after every epoch (the training curve).
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/prog.h"
#include "common/shardmap.h"
#include "common/spec.h"
#include "flr_client.h"
#include "model.h"
#include "train.h"

struct wrk_cfg {
    char zk[256];
    char job[64];
    long long id;
    char data_dir[256];
    char train[256];
    char test[256];
    char truth[256];
    char result[256];
    char oracle_out[256];
    long long max_rows;
    long long epochs;
    long long batch;
    long long hash_bits;
    long long seed;
    int evaluate;
    long long session_ms;
    long long timeout_ms;
    long long start_timeout_ms;
    long long leave_timeout_ms;
    char listen[FLR_ENDPOINT_MAX];
    char advertise[FLR_ENDPOINT_MAX];
    char log_level[16];
};

static const char *const wrk_eval_choices[] = {"auto", "yes", "no", NULL};

static const struct flr_opt wrk_opts[] = {
    FLR_OPTS_CLUSTER(struct wrk_cfg),
    FLR_OPT_I("id", struct wrk_cfg, id, "0", 0, 4095, "N", "worker id: 0 .. workers-1"),
    FLR_OPT_S("data-dir", struct wrk_cfg, data_dir, FLR_FASHION_MNIST_DIR, "DIR",
              "Fashion-MNIST IDX files (softmax, mlp)"),
    FLR_OPT_S("train", struct wrk_cfg, train, "", "FILE", "CTR training TSV (ctr)"),
    FLR_OPT_S("test", struct wrk_cfg, test, "", "FILE", "CTR test TSV (ctr)"),
    FLR_OPT_S("truth", struct wrk_cfg, truth, "", "FILE",
              "truth.json from flr-datagen, reported beside the AUC (ctr)"),
    FLR_OPT_S("result", struct wrk_cfg, result, "", "FILE",
              "also write the result document to FILE"),
    FLR_OPT_I("max-rows", struct wrk_cfg, max_rows, "0", 0, 1LL << 40, "N",
              "read at most N training rows (ctr; 0 = all)"),
    FLR_OPT_I("epochs", struct wrk_cfg, epochs, "3", 1, 100000, "N", "passes over the data"),
    FLR_OPT_I("batch", struct wrk_cfg, batch, "64", 1, 1 << 20, "N",
              "samples per iteration per worker"),
    FLR_OPT_I("hash-bits", struct wrk_cfg, hash_bits, "22", 8, 40, "BITS",
              "CTR feature hashing space (ctr)"),
    FLR_OPT_I("seed", struct wrk_cfg, seed, "1", 0, INT64_MAX, "N", "data shuffling seed"),
    FLR_OPT_E("evaluate", struct wrk_cfg, evaluate, "auto", wrk_eval_choices,
              "evaluate on the test set each epoch (auto: worker 0 only)"),
    FLR_OPT_I("timeout", struct wrk_cfg, timeout_ms, "120000", 100, 86400000, "MS",
              "how long a request may wait before it fails"),
    FLR_OPT_I("start-timeout", struct wrk_cfg, start_timeout_ms, "120000", 100, 86400000, "MS",
              "how long to wait for the job to start"),
    FLR_OPT_I("leave-timeout", struct wrk_cfg, leave_timeout_ms, "30000", 0, 86400000, "MS",
              "recovery flr: how long a finished worker stays for the servers to copy its rows "
              "elsewhere before it exits (0: it does not wait)"),
    FLR_OPT_S("oracle-out", struct wrk_cfg, oracle_out, "", "PREFIX",
              "exactly-once checks: write what this worker pushed to PREFIX.wID.pushed and, on "
              "worker 0 after every other worker finished, the final parameters to "
              "PREFIX.final (oracle model)"),
    FLR_OPT_S("listen", struct wrk_cfg, listen, "tcp://127.0.0.1:0", "URL",
              "recovery flr: where the worker's copies are served (port 0 picks a free port)"),
    FLR_OPT_S("advertise", struct wrk_cfg, advertise, "", "URL",
              "recovery flr: endpoint published in ZooKeeper (default: the bound listen URL)"),
    FLR_OPT_LOG_LEVEL(struct wrk_cfg, "info"),
    {0},
};

static void wrk_on_alarm(int sig)
{
    static const char msg[] = "flr-worker: closing its connections took over 20 s; exiting "
                              "(the result is published)\n";
    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        /* nothing more to do */
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    static struct wrk_cfg cfg;
    const struct flr_opts_info info = {"flr-worker",
                                       "flr worker: trains a built-in model (softmax, mlp, ctr, "
                                       "oracle) against the job's servers",
                                       PACKAGE_VERSION};
    struct flr_client_opts co;
    struct flr_client *c = NULL;
    struct flr_job_spec spec;
    struct flr_train_cfg tc = {0};
    char why[512], *result = NULL;
    int rv;

    if ((rv = flr_prog_init(wrk_opts, &cfg, &info, argc, argv, cfg.log_level)) >= 0)
        return rv;
    signal(SIGPIPE, SIG_IGN);

    flr_client_opts_default(&co);
    co.zk = cfg.zk;
    co.job = cfg.job;
    co.worker_id = (uint32_t)cfg.id;
    co.session_ms = (int)cfg.session_ms;
    co.timeout_ms = (int)cfg.timeout_ms;
    co.start_timeout_ms = (int)cfg.start_timeout_ms;
    co.listen = cfg.listen;
    co.endpoint = cfg.advertise[0] ? cfg.advertise : NULL;
    if ((rv = flr_client_open(&c, &co, why, sizeof(why))) != 0) {
        flr_err("wrk.open", "worker %lld: %s", cfg.id, why);
        return 1;
    }
    if ((rv = flr_spec_from_json(&spec, flr_client_spec_json(c), why, sizeof(why))) != 0) {
        flr_err("wrk.spec", "bad job spec: %s", why);
        flr_client_close(c);
        return 1;
    }
    snprintf(tc.model.name, sizeof(tc.model.name), "%s", spec.model);
    tc.model.hash_bits = (uint32_t)cfg.hash_bits;
    tc.model.seed = spec.seed;
    tc.model.optim = spec.tables[0].optim;
    tc.model.lr = spec.tables[0].lr;
    /* The hidden width of the MLP (the oracle's dense width) is the job's: it is the dim
     * of its first table. */
    if (strcmp(spec.model, "mlp") == 0 || strcmp(spec.model, "oracle") == 0)
        tc.model.hidden = spec.tables[0].dim;
    tc.data_dir = cfg.data_dir;
    tc.train_path = cfg.train;
    tc.test_path = cfg.test;
    tc.truth_path = cfg.truth[0] ? cfg.truth : NULL;
    tc.max_rows = (uint64_t)cfg.max_rows;
    tc.epochs = (uint32_t)cfg.epochs;
    tc.batch = (uint32_t)cfg.batch;
    tc.worker_id = (uint32_t)cfg.id;
    tc.seed = (uint64_t)cfg.seed;
    tc.oracle_out = cfg.oracle_out;
    tc.evaluate = cfg.evaluate == 1 || (cfg.evaluate == 0 && cfg.id == 0);

    flr_notice("wrk.start", "worker %lld of %u: model %s, %s, %lld epochs, batch %lld", cfg.id,
               spec.num_workers, spec.model, flr_consistency_name(spec.consistency), cfg.epochs,
               cfg.batch);
    if ((rv = flr_train_run(c, &tc, &result, why, sizeof(why))) != 0) {
        flr_err("wrk.train", "worker %lld: %s", cfg.id, why);
        flr_client_close(c);
        return 1;
    }
    if ((rv = flr_client_publish_result(c, result)) != 0)
        flr_warn("wrk.result", "could not publish the result: %s", flr_strerror(rv));
    if (cfg.result[0]) {
        FILE *f = fopen(cfg.result, "w");
        if (!f || fprintf(f, "%s\n", result) < 0 || fclose(f) != 0)
            flr_warn("wrk.result", "could not write %s", cfg.result);
    }
    /* Its copies and log may be the only record of its last updates until the servers
     * have copied its rows to the other workers: stay until they say so. */
    if (flr_client_leave(c, (int)cfg.leave_timeout_ms) != 0)
        flr_warn("wrk.leave", "worker %lld leaves before the servers released it: %s", cfg.id,
                 flr_client_last_error(c));
    flr_notice("wrk.done", "worker %lld finished", cfg.id);
    free(result);
    /* The work is done and published.  Closing nng sockets can hang in rare cases with
     * nng 1.5 (a known nng_close deadlock); do not let that keep a finished worker alive. */
    signal(SIGALRM, wrk_on_alarm);
    alarm(20);
    flr_client_close(c);
    return 0;
}
