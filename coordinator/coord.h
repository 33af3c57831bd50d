/*
 * coord.h - the coordinator of one job.
 *
 * Job phases, each recorded in /flr/<job>/state so that another coordinator can pick the
 * job up where this one stopped:
 *
 *     CREATE   write spec, shard records (UNASSIGNED), epoch          coord_create()
 *     waiting  wait until num_servers servers have registered         coord_wait_servers()
 *              assign shards round-robin (conditional writes), bump
 *              the cluster epoch, wait until every server SERVING      coord_assign()
 *     running  workers train; wait for every worker's result          coord_wait_results()
 *     done     write the report; servers and workers exit             coord_finish()
 *
 * A later phase adds leader election before CREATE and failure handling during running.
 */
#ifndef FLR_COORD_H
#define FLR_COORD_H

#include <stdint.h>

#include "common/spec.h"
#include "common/zk.h"

struct coord_cfg {
    char zk[256];
    char job[64];
    char model[32];
    long long workers;
    long long servers;
    long long shards;
    int consistency;
    long long staleness;
    int optimizer; /* 0 = the model's default, else flr_optim_kind + 1 */
    double lr;     /* 0 = the model's default */
    long long hidden;
    long long seed;
    char recovery[16];
    long long k;
    char report[256];
    long long session_ms;
    long long server_timeout_ms;
    long long job_timeout_ms;
    int reset;
    char log_level[16];
};

struct coord {
    struct coord_cfg cfg;
    struct flr_zk *zk;
    struct flr_job_spec spec;
    int64_t started_ms; /* when the job entered "running" */
    int64_t finished_ms;
    char **results; /* num_workers JSON documents */
};

/* Set by a signal handler (or an embedder) to make every wait give up. */
extern volatile int coord_stop;

/* Builds the job spec from the configuration (model tables, overrides). */
int coord_build_spec(const struct coord_cfg *cfg, struct flr_job_spec *spec, char *why,
                     size_t whylen);

int coord_create(struct coord *c, char *why, size_t whylen);
int coord_wait_servers(struct coord *c, char *why, size_t whylen);
int coord_assign(struct coord *c, char *why, size_t whylen);
int coord_wait_results(struct coord *c, char *why, size_t whylen);
int coord_finish(struct coord *c, int ok, char *why, size_t whylen);

/* Sets /flr/<job>/state. */
int coord_set_state(struct coord *c, const char *state);

#endif
