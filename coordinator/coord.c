#include "coord.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/log.h"
#include "common/shardmap.h"
#include "common/util.h"
#include "worker/model.h"

volatile int coord_stop;

int coord_build_spec(const struct coord_cfg *cfg, struct flr_job_spec *spec, char *why,
                     size_t whylen)
{
    const struct flr_model_ops *ops = flr_model_find(cfg->model);
    struct flr_model_cfg mc = {0};
    int rv;

    if (!ops) {
        size_t n = (size_t)snprintf(why, whylen, "--model: unknown model '%s'; known:", cfg->model);
        for (int i = 0; flr_model_names[i] && n < whylen; i++)
            n += (size_t)snprintf(why + n, whylen - n, " %s", flr_model_names[i]);
        return FLR_ECONFIG;
    }
    memset(spec, 0, sizeof(*spec));
    snprintf(spec->job, sizeof(spec->job), "%s", cfg->job);
    snprintf(spec->model, sizeof(spec->model), "%s", cfg->model);
    spec->consistency = (enum flr_consistency)cfg->consistency;
    spec->staleness = spec->consistency == FLR_SSP ? (uint32_t)cfg->staleness : 0;
    spec->num_workers = (uint32_t)cfg->workers;
    spec->num_servers = (uint32_t)cfg->servers;
    spec->num_shards = cfg->shards ? (uint32_t)cfg->shards : (uint32_t)cfg->servers * 4;
    snprintf(spec->recovery, sizeof(spec->recovery), "%s", cfg->recovery);
    spec->k = (uint32_t)cfg->k;
    spec->seed = (uint64_t)cfg->seed;

    snprintf(mc.name, sizeof(mc.name), "%s", cfg->model);
    mc.hidden = (uint32_t)cfg->hidden;
    mc.hash_bits = 22;
    mc.seed = (uint64_t)cfg->seed;
    mc.optim = cfg->optimizer ? (enum flr_optim_kind)(cfg->optimizer - 1) : ops->default_optim;
    mc.lr = (float)cfg->lr;
    if ((rv = ops->tables(&mc, spec->tables, &spec->ntables)) != 0) {
        snprintf(why, whylen, "model %s: cannot describe its tables", cfg->model);
        return rv;
    }
    for (uint32_t i = 0; i < spec->ntables; i++) {
        if (cfg->optimizer)
            spec->tables[i].optim = (enum flr_optim_kind)(cfg->optimizer - 1);
        if (cfg->lr > 0)
            spec->tables[i].lr = (float)cfg->lr;
    }
    return flr_spec_validate(spec, why, whylen);
}

int coord_set_state(struct coord *c, const char *state)
{
    char path[FLR_PATH_MAX];
    flr_job_path(path, sizeof(path), c->cfg.job, "/state");
    return flr_zk_set(c->zk, path, state, (int)strlen(state), -1);
}

int coord_create(struct coord *c, char *why, size_t whylen)
{
    static const char *const dirs[] = {"/servers", "/workers",     "/shards",     "/results",
                                       "/events",  "/removed",     "/recoveries", "/requests",
                                       "/kills",   "/coordinators"};
    char path[FLR_PATH_MAX], *json = NULL, *data;
    int rv, len;

    flr_job_path(path, sizeof(path), c->cfg.job, "/state");
    rv = flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL);
    if (rv == 0) {
        int over = strcmp(data, "done") == 0 || strcmp(data, "failed") == 0;
        if (!over && !c->cfg.reset) {
            snprintf(why, whylen,
                     "job %s already exists in state '%s' (pass --reset to replace "
                     "it)",
                     c->cfg.job, data);
            free(data);
            return FLR_EZK_EXISTS;
        }
        free(data);
    }
    /* Clear what an earlier job left, except the election's nodes: the candidates of this
     * job, us included, live there. */
    flr_job_path(path, sizeof(path), c->cfg.job, "");
    if ((rv = flr_zk_mkdirs(c->zk, path)) != 0) {
        snprintf(why, whylen, "cannot prepare %s in ZooKeeper: %s", path, flr_strerror(rv));
        return rv;
    }
    {
        char **names = NULL, child[2 * FLR_PATH_MAX];
        int n = 0;
        if ((rv = flr_zk_children(c->zk, path, 0, &names, &n)) != 0)
            goto zk_fail;
        for (int i = 0; i < n && rv == 0; i++) {
            if (strcmp(names[i], "coordinators") == 0)
                continue;
            snprintf(child, sizeof(child), "%s/%s", path, names[i]);
            rv = flr_zk_delete_tree(c->zk, child);
        }
        flr_zk_free_names(names, n);
        if (rv != 0)
            goto zk_fail;
    }
    for (size_t i = 0; i < FLR_ARRAY_LEN(dirs); i++) {
        flr_job_path(path, sizeof(path), c->cfg.job, dirs[i]);
        if ((rv = flr_zk_create(c->zk, path, "", 0, 0, NULL, 0)) != 0 && rv != FLR_EZK_EXISTS)
            goto zk_fail;
    }
    for (uint32_t s = 0; s < c->spec.num_shards; s++) {
        struct flr_shard_rec rec = {
            .owner = FLR_NO_OWNER, .epoch = 0, .state = FLR_SHARD_UNASSIGNED};
        flr_job_node(path, sizeof(path), c->cfg.job, "shards", s);
        if ((rv = flr_shard_rec_to_json(&rec, &json)) != 0)
            return rv;
        rv = flr_zk_create(c->zk, path, json, (int)strlen(json), 0, NULL, 0);
        free(json);
        if (rv != 0)
            goto zk_fail;
    }
    flr_job_path(path, sizeof(path), c->cfg.job, "/epoch");
    if ((rv = flr_zk_create(c->zk, path, "0", 1, 0, NULL, 0)) != 0)
        goto zk_fail;
    flr_job_path(path, sizeof(path), c->cfg.job, "/state");
    if ((rv = flr_zk_create(c->zk, path, "waiting", 7, 0, NULL, 0)) != 0)
        goto zk_fail;
    /* The spec goes last: servers and workers wait for it, and its presence means the
     * whole tree above exists. */
    if ((rv = flr_spec_to_json(&c->spec, &json)) != 0)
        return rv;
    flr_job_path(path, sizeof(path), c->cfg.job, "/spec");
    rv = flr_zk_create(c->zk, path, json, (int)strlen(json), 0, NULL, 0);
    free(json);
    if (rv != 0)
        goto zk_fail;
    coord_event(c, "job_created", NULL,
                "job %s created: model %s, %s, %u servers, %u workers, %u shards, recovery %s",
                c->cfg.job, c->spec.model, flr_consistency_name(c->spec.consistency),
                c->spec.num_servers, c->spec.num_workers, c->spec.num_shards, c->spec.recovery);
    return 0;
zk_fail:
    snprintf(why, whylen, "cannot write %s: %s", path, flr_strerror(rv));
    return rv;
}

int coord_read_servers(struct coord *c, int watch, struct flr_server_rec **out, int *nout)
{
    char path[FLR_PATH_MAX], p2[2 * FLR_PATH_MAX], **names = NULL, *data;
    struct flr_server_rec *recs;
    int n = 0, len, got = 0, rv;

    *out = NULL;
    *nout = 0;
    flr_job_path(path, sizeof(path), c->cfg.job, "/servers");
    if ((rv = flr_zk_children(c->zk, path, watch, &names, &n)) != 0)
        return rv;
    if (!(recs = calloc((size_t)n + 1, sizeof(*recs)))) {
        flr_zk_free_names(names, n);
        return FLR_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        snprintf(p2, sizeof(p2), "%s/%s", path, names[i]);
        if (flr_zk_get(c->zk, p2, 0, &data, &len, NULL, NULL) != 0)
            continue; /* gone since the listing */
        if (flr_server_rec_from_json(&recs[got], data, (size_t)len) == 0)
            got++;
        free(data);
    }
    flr_zk_free_names(names, n);
    /* Sorted by id, so that assignment is deterministic. */
    for (int i = 1; i < got; i++)
        for (int k = i; k > 0 && recs[k - 1].id > recs[k].id; k--) {
            struct flr_server_rec t = recs[k];
            recs[k] = recs[k - 1];
            recs[k - 1] = t;
        }
    *out = recs;
    *nout = got;
    return 0;
}

int coord_bump_epoch(struct coord *c, uint64_t *out)
{
    char path[FLR_PATH_MAX], *data, buf[32];
    int32_t version;
    int rv, len;

    flr_job_path(path, sizeof(path), c->cfg.job, "/epoch");
    for (int tries = 0; tries < 10; tries++) {
        if ((rv = flr_zk_get(c->zk, path, 0, &data, &len, &version, NULL)) != 0)
            return rv;
        *out = strtoull(data, NULL, 10) + 1;
        free(data);
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)*out);
        rv = flr_zk_set(c->zk, path, buf, (int)strlen(buf), version);
        if (rv != FLR_EZK_BADVERSION)
            return rv;
    }
    return FLR_EZK_BADVERSION;
}

/* How many registered servers, and how many of them SERVING; -1 on a ZooKeeper error. */
static int coord_count_servers(struct coord *c, int *serving)
{
    struct flr_server_rec *recs;
    int n;

    if (coord_read_servers(c, 0, &recs, &n) != 0)
        return -1;
    *serving = 0;
    for (int i = 0; i < n; i++)
        *serving += recs[i].state == FLR_SERVER_SERVING;
    free(recs);
    return n;
}

int coord_wait_servers(struct coord *c, char *why, size_t whylen)
{
    int64_t deadline = flr_now_ms() + c->cfg.server_timeout_ms;
    int n = 0, serving;
    /* With the local launcher every server is ours: wait for the standbys too, so that
     * the shards go to ids 0..servers-1 and the standbys are the ids above. */
    int want =
        (int)c->spec.num_servers + (c->launcher == &coord_launcher_local ? (int)c->cfg.standby : 0);

    while (!coord_stop) {
        if (flr_zk_expired(c->zk)) {
            snprintf(why, whylen, "ZooKeeper session expired: another coordinator may lead");
            return FLR_EZK_EXPIRED;
        }
        if ((n = coord_count_servers(c, &serving)) >= want)
            break;
        if (flr_now_ms() > deadline) {
            snprintf(why, whylen, "only %d of %u servers registered within %lld ms", n < 0 ? 0 : n,
                     c->spec.num_servers, c->cfg.server_timeout_ms);
            return FLR_ETIMEOUT;
        }
        usleep(50 * 1000);
    }
    if (coord_stop) {
        snprintf(why, whylen, "interrupted");
        return FLR_ECLOSED;
    }
    flr_info("coord.servers", "%d servers registered", n);
    return 0;
}

int coord_assign(struct coord *c, char *why, size_t whylen)
{
    struct flr_server_rec *recs = NULL;
    char path[FLR_PATH_MAX], *json, *data, buf[32];
    int64_t deadline = flr_now_ms() + c->cfg.server_timeout_ms;
    int n, rv = 0, len, serving = 0;
    int32_t version;
    uint64_t epoch;

    if ((rv = coord_read_servers(c, 0, &recs, &n)) != 0) {
        flr_job_path(path, sizeof(path), c->cfg.job, "/servers");
        goto zk_fail;
    }
    if (n < (int)c->spec.num_servers) {
        snprintf(why, whylen, "servers left before the shards were assigned");
        free(recs);
        return FLR_ECLOSED;
    }
    /* Bump the cluster epoch: ownership changes. */
    flr_job_path(path, sizeof(path), c->cfg.job, "/epoch");
    if ((rv = coord_bump_epoch(c, &epoch)) != 0)
        goto zk_fail;
    /* Round-robin over the first num_servers servers by id. Each record is written only if
     * it is unchanged since we read it. */
    for (uint32_t s = 0; s < c->spec.num_shards; s++) {
        struct flr_shard_rec rec;
        flr_job_node(path, sizeof(path), c->cfg.job, "shards", s);
        if ((rv = flr_zk_get(c->zk, path, 0, &data, &len, &version, NULL)) != 0)
            goto zk_fail;
        rv = flr_shard_rec_from_json(&rec, data, (size_t)len);
        free(data);
        if (rv != 0)
            goto zk_fail;
        rec.owner = recs[s % c->spec.num_servers].id;
        rec.epoch = epoch;
        rec.state = FLR_SHARD_ACTIVE;
        if ((rv = flr_shard_rec_to_json(&rec, &json)) != 0)
            goto zk_fail;
        rv = flr_zk_set(c->zk, path, json, (int)strlen(json), version);
        free(json);
        if (rv != 0)
            goto zk_fail;
    }
    free(recs);
    recs = NULL;
    /* Wait until every assigned server says SERVING. */
    while (!coord_stop) {
        if (coord_count_servers(c, &serving) >= 0 && serving >= (int)c->spec.num_servers)
            break;
        if (flr_now_ms() > deadline) {
            snprintf(why, whylen, "only %d of %u servers loaded their shards within %lld ms",
                     serving, c->spec.num_servers, c->cfg.server_timeout_ms);
            return FLR_ETIMEOUT;
        }
        usleep(20 * 1000);
    }
    if (coord_stop) {
        snprintf(why, whylen, "interrupted");
        return FLR_ECLOSED;
    }
    c->started_ms = flr_wall_ms();
    snprintf(buf, sizeof(buf), "%lld", (long long)c->started_ms);
    flr_job_path(path, sizeof(path), c->cfg.job, "/started");
    rv = flr_zk_create(c->zk, path, buf, (int)strlen(buf), 0, NULL, 0);
    if (rv == FLR_EZK_EXISTS)
        rv = flr_zk_set(c->zk, path, buf, (int)strlen(buf), -1);
    if (rv != 0 || (rv = coord_set_state(c, "running")) != 0) {
        snprintf(why, whylen, "cannot set the job running: %s", flr_strerror(rv));
        return rv;
    }
    coord_event(c, "job_running", json_pack("{sI}", "epoch", (json_int_t)epoch),
                "job %s running: %u shards assigned at epoch %llu", c->cfg.job, c->spec.num_shards,
                (unsigned long long)epoch);
    return 0;
zk_fail:
    snprintf(why, whylen, "assigning shards (%s): %s", path, flr_strerror(rv));
    free(recs);
    return rv;
}

/* Removes a worker whose ephemeral node is gone without a result: servers stop counting
 * its clock (so BSP and SSP go on) and the job no longer waits for it. */
static int coord_remove_worker(struct coord *c, uint32_t w)
{
    char path[FLR_PATH_MAX], data[64];
    int rv;

    snprintf(data, sizeof(data), "{\"at_ms\":%lld}", (long long)flr_wall_ms());
    flr_job_node(path, sizeof(path), c->cfg.job, "removed", w);
    rv = flr_zk_create(c->zk, path, data, (int)strlen(data), 0, NULL, 0);
    if (rv != 0 && rv != FLR_EZK_EXISTS)
        return rv;
    c->lost[w] = 1;
    coord_event(c, "worker_lost", json_pack("{sI}", "worker", (json_int_t)w),
                "worker %u is gone without a result: removed from the clock accounting, "
                "training goes on without it",
                w);
    return 0;
}

/* A removed worker registered again (it was restarted): count it again.  It catches up
 * with the job's clock and goes on with its data partition (see the client library). */
static int coord_readmit_worker(struct coord *c, uint32_t w)
{
    char path[FLR_PATH_MAX];
    int rv;

    flr_job_node(path, sizeof(path), c->cfg.job, "removed", w);
    rv = flr_zk_delete(c->zk, path, -1);
    if (rv != 0 && rv != FLR_EZK_NONODE)
        return rv;
    c->lost[w] = 0;
    coord_event(c, "worker_rejoined", json_pack("{sI}", "worker", (json_int_t)w),
                "worker %u registered again: readmitted, it rejoins at the job's clock", w);
    return 0;
}

int coord_wait_results(struct coord *c, char *why, size_t whylen)
{
    char path[FLR_PATH_MAX];
    int64_t deadline = c->cfg.job_timeout_ms > 0 ? flr_now_ms() + c->cfg.job_timeout_ms : 0;
    uint32_t W = c->spec.num_workers, have = 0, w;
    uint8_t *seen = calloc(W, 1);

    if (!seen || !(c->results = calloc(W, sizeof(*c->results))) ||
        !(c->lost = calloc(W, sizeof(*c->lost)))) {
        free(seen);
        return FLR_ENOMEM;
    }
    /* Workers removed under a previous leader stay removed. */
    for (w = 0; w < W; w++) {
        int exists = 0;
        flr_job_node(path, sizeof(path), c->cfg.job, "removed", w);
        if (flr_zk_exists(c->zk, path, 0, &exists) == 0 && exists) {
            c->lost[w] = 1;
            have++;
        }
    }
    while (!coord_stop && have < W) {
        if (flr_zk_expired(c->zk)) {
            snprintf(why, whylen, "ZooKeeper session expired: another coordinator may lead");
            free(seen);
            return FLR_EZK_EXPIRED;
        }
        for (w = 0; w < W; w++) {
            int len, alive = 0;
            if (c->lost[w]) {
                flr_job_node(path, sizeof(path), c->cfg.job, "workers", w);
                if (flr_zk_exists(c->zk, path, 0, &alive) == 0 && alive &&
                    coord_readmit_worker(c, w) == 0) {
                    have--;
                    seen[w] = 1;
                }
                continue;
            }
            if (c->results[w])
                continue;
            flr_job_node(path, sizeof(path), c->cfg.job, "results", w);
            if (flr_zk_get(c->zk, path, 0, &c->results[w], &len, NULL, NULL) == 0) {
                have++;
                flr_info("coord.result", "worker %u finished", w);
                continue;
            }
            flr_job_node(path, sizeof(path), c->cfg.job, "workers", w);
            if (flr_zk_exists(c->zk, path, 0, &alive) != 0)
                continue;
            if (alive) {
                seen[w] = 1;
                continue;
            }
            if (!seen[w])
                continue; /* not started yet */
            /* Gone: unless it published its result just now, it died. */
            flr_job_node(path, sizeof(path), c->cfg.job, "results", w);
            if (flr_zk_get(c->zk, path, 0, &c->results[w], &len, NULL, NULL) == 0) {
                have++;
                continue;
            }
            if (coord_remove_worker(c, w) == 0)
                have++;
        }
        if (have == W)
            break;
        if (deadline && flr_now_ms() > deadline) {
            snprintf(why, whylen, "only %u of %u workers finished within %lld ms", have, W,
                     c->cfg.job_timeout_ms);
            free(seen);
            return FLR_ETIMEOUT;
        }
        {
            /* A round every 100 ms, and at once when ZooKeeper reports a change (a server
             * registered or left): a replacement waiting to be given its shards must not
             * wait for the next round. */
            int64_t next = flr_now_ms() + 100;
            int rv = coord_ops_step(c, why, whylen);
            if (rv != 0) {
                free(seen);
                return rv;
            }
            if (flr_now_ms() < next)
                (void)flr_zk_wait_event(c->zk, (int)(next - flr_now_ms()));
        }
    }
    free(seen);
    if (coord_stop) {
        snprintf(why, whylen, "interrupted");
        return FLR_ECLOSED;
    }
    c->finished_ms = flr_wall_ms();
    return 0;
}

/* One entry per lost server, in the order they were detected (the report's "failures"). */
static json_t *coord_failures(const struct coord *c)
{
    json_t *a = json_array();

    for (size_t i = 0; i < c->nrecs; i++) {
        const struct coord_recovery *r = &c->recs[i];
        long long detect = coord_recovery_detect_ms(r), recover = coord_recovery_recover_ms(r);
        json_t *e;
        if (r->drain)
            continue; /* an operator's move, not a failure */
        e = json_pack("{sI so so so sI sI ss ss sI}", "server", (json_int_t)r->server, "shards",
                      coord_shards_json(r->shards, r->nshards), "detect_ms",
                      detect >= 0 ? json_integer(detect) : json_null(), "recover_ms",
                      recover >= 0 ? json_integer(recover) : json_null(), "rows_rebuilt",
                      (json_int_t)r->rows_rebuilt, "rows_lost", (json_int_t)r->rows_lost,
                      "recovery", c->spec.recovery, "id", r->id, "replacement",
                      (json_int_t)(r->target == FLR_NO_OWNER ? -1 : (int64_t)r->target));
        if (r->phase != RPH_DONE || r->outcome[0])
            json_object_set_new(e, "outcome",
                                json_string(r->outcome[0] ? r->outcome : "unfinished"));
        json_array_append_new(a, e);
    }
    return a;
}

/* Copies a member of the result of worker 0 into the report, if present. */
static void copy_field(json_t *report, json_t *w0, const char *name)
{
    json_t *v = w0 ? json_object_get(w0, name) : NULL;
    if (v)
        json_object_set(report, name, v);
}

static void print_human(const json_t *r)
{
    json_t *acc = json_object_get(r, "test_accuracy"), *auc = json_object_get(r, "test_auc");
    printf("\nflr job %s: model %s, %s, %lld servers x %lld workers, %lld shards\n",
           json_string_value(json_object_get(r, "job")),
           json_string_value(json_object_get(r, "model")),
           json_string_value(json_object_get(r, "consistency")),
           (long long)json_integer_value(json_object_get(r, "servers")),
           (long long)json_integer_value(json_object_get(r, "workers")),
           (long long)json_integer_value(json_object_get(r, "shards")));
    printf("  epochs           %lld (batch %lld per worker)\n",
           (long long)json_integer_value(json_object_get(r, "epochs")),
           (long long)json_integer_value(json_object_get(r, "batch")));
    if (auc) {
        json_t *truth = json_object_get(r, "truth_auc");
        printf("  test AUC         %.4f", json_number_value(auc));
        if (truth)
            printf("  (ground-truth model %.4f, gap %.4f)", json_number_value(truth),
                   json_number_value(truth) - json_number_value(auc));
        printf("\n  test log-loss    %.4f\n",
               json_number_value(json_object_get(r, "test_logloss")));
    } else if (acc) {
        printf("  test accuracy    %.2f%%\n", 100 * json_number_value(acc));
    }
    printf("  wall time        %.1f s (%.0f samples/s)\n",
           json_number_value(json_object_get(r, "wall_seconds")),
           json_number_value(json_object_get(r, "samples_per_second")));
    printf("  recovery         %s; failures: %zu\n",
           json_string_value(json_object_get(r, "recovery")),
           json_array_size(json_object_get(r, "failures")));
    {
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(r, "failures"), i, f)
        {
            json_t *d = json_object_get(f, "detect_ms"), *rc = json_object_get(f, "recover_ms");
            printf("    server %lld lost: detected after %s%lld ms, serving again after "
                   "%s%lld ms, %lld rows rebuilt, %lld rows lost\n",
                   (long long)json_integer_value(json_object_get(f, "server")),
                   json_is_integer(d) ? "" : "? ", (long long)json_integer_value(d),
                   json_is_integer(rc) ? "" : "? ", (long long)json_integer_value(rc),
                   (long long)json_integer_value(json_object_get(f, "rows_rebuilt")),
                   (long long)json_integer_value(json_object_get(f, "rows_lost")));
        }
    }
    if (json_array_size(json_object_get(r, "workers_lost")) > 0)
        printf("  workers lost     %zu (training went on without them)\n",
               json_array_size(json_object_get(r, "workers_lost")));
    fflush(stdout);
}

int coord_finish(struct coord *c, int ok, char *why, size_t whylen)
{
    json_t *report = NULL, *w0 = NULL, *workers = json_array();
    json_error_t jerr;
    double wall = (c->finished_ms - c->started_ms) / 1000.0;
    long long samples = 0;
    int rv = 0;

    if (ok) {
        for (uint32_t w = 0; w < c->spec.num_workers; w++) {
            json_t *j = c->results[w] ? json_loads(c->results[w], 0, &jerr) : NULL;
            if (!j)
                continue;
            samples += (long long)json_integer_value(json_object_get(j, "samples"));
            if (w == 0)
                w0 = json_incref(j);
            json_array_append_new(workers, j);
        }
        report = json_pack(
            "{ss ss ss sI sI sI sI ss sf sI sf}", "job", c->cfg.job, "model", c->spec.model,
            "consistency", flr_consistency_name(c->spec.consistency), "staleness",
            (json_int_t)c->spec.staleness, "servers", (json_int_t)c->spec.num_servers, "workers",
            (json_int_t)c->spec.num_workers, "shards", (json_int_t)c->spec.num_shards, "recovery",
            c->spec.recovery, "wall_seconds", wall, "train_samples", (json_int_t)samples,
            "samples_per_second", wall > 0 ? samples / wall : 0.0);
        copy_field(report, w0, "epochs");
        copy_field(report, w0, "batch");
        copy_field(report, w0, "test_accuracy");
        copy_field(report, w0, "test_loss");
        copy_field(report, w0, "test_auc");
        copy_field(report, w0, "test_logloss");
        copy_field(report, w0, "truth_auc");
        copy_field(report, w0, "curve");
        json_object_set_new(report, "optimizer",
                            json_string(flr_optim_name(c->spec.tables[0].optim)));
        json_object_set_new(report, "lr", json_real(c->spec.tables[0].lr));
        json_object_set_new(report, "failures", coord_failures(c));
        {
            json_t *lost = json_array();
            for (uint32_t w = 0; w < c->spec.num_workers; w++)
                if (c->lost && c->lost[w])
                    json_array_append_new(lost, json_integer(w));
            json_object_set_new(report, "workers_lost", lost);
        }
        json_object_set(report, "worker_results", workers);
        if (c->cfg.report[0] &&
            json_dump_file(report, c->cfg.report, JSON_INDENT(2) | JSON_REAL_PRECISION(8)) != 0) {
            snprintf(why, whylen, "cannot write the report to %s", c->cfg.report);
            rv = FLR_EIO;
        }
        print_human(report);
    }
    /* A coordinator that lost its session no longer leads: the job's end is not its to
     * record. */
    if (!flr_zk_expired(c->zk)) {
        if (coord_set_state(c, ok ? "done" : "failed") != 0)
            flr_warn("coord.state", "could not record the job's end in ZooKeeper");
        else
            coord_event(c, ok ? "job_done" : "job_failed", NULL, "job %s %s", c->cfg.job,
                        ok ? "done" : "failed");
    }
    json_decref(report);
    json_decref(w0);
    json_decref(workers);
    return rv;
}

int coord_resume(struct coord *c, char *phase, size_t phaselen, char *why, size_t whylen)
{
    char path[FLR_PATH_MAX], *data = NULL;
    int rv, len;

    phase[0] = 0;
    flr_job_path(path, sizeof(path), c->cfg.job, "/state");
    rv = flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL);
    if (rv == FLR_EZK_NONODE)
        return 0;
    if (rv != 0) {
        snprintf(why, whylen, "cannot read %s: %s", path, flr_strerror(rv));
        return rv;
    }
    snprintf(phase, phaselen, "%s", data);
    free(data);
    if (strcmp(phase, "waiting") != 0 && strcmp(phase, "running") != 0)
        return 0;
    /* The job to continue is the one ZooKeeper records, whatever our own flags say. */
    flr_job_path(path, sizeof(path), c->cfg.job, "/spec");
    if ((rv = flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL)) != 0) {
        /* The leader died before writing the spec: the job was never announced. */
        phase[0] = 0;
        return 0;
    }
    rv = flr_spec_from_json(&c->spec, data, why, whylen);
    free(data);
    if (rv != 0)
        return rv;
    c->started_ms = flr_wall_ms();
    flr_job_path(path, sizeof(path), c->cfg.job, "/started");
    if (flr_zk_get(c->zk, path, 0, &data, &len, NULL, NULL) == 0) {
        c->started_ms = strtoll(data, NULL, 10);
        free(data);
    }
    return 0;
}
