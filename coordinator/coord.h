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
 * Leader election (elect.c) comes first: only the leader runs these phases.  A follower
 * that takes over resumes from the state ZooKeeper records (coord_resume): "waiting" is
 * redone from the server wait, "running" continues with the wait for results, "done" and
 * "failed" need nothing.  Every wait gives up when the session expires, because a
 * follower may already lead.  Failure handling during "running" comes next.
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
    char http[256];            /* status endpoint URL; "" or "off" disables it */
    char http_token_file[256]; /* operator token for POST (and reads with http_auth_reads) */
    int http_auth_reads;
};

struct coord {
    struct coord_cfg cfg;
    struct flr_zk *zk;
    struct flr_job_spec spec;
    int64_t started_ms; /* wall-clock ms when the job entered "running" (also in ZooKeeper,
                           /flr/<job>/started, so that a new leader reports the same) */
    int64_t finished_ms;
    char **results;     /* num_workers JSON documents */
    uint8_t *lost;      /* num_workers flags: removed because they died without a result */
    char candidate[64]; /* our election node's name, c_NNNNNNNNNN */
    char http_url[256]; /* our status endpoint, published in the election node; "" if off */
};

/*
 * Joins the election of the job's coordinators and returns once this one leads (see
 * elect.c).  *took_over is set when another candidate was ahead of us, i.e. we lead
 * because a leader died or left.  Returns 0, FLR_EZK_EXPIRED or FLR_ECLOSED (coord_stop).
 */
int coord_elect(struct coord *c, int *took_over, char *why, size_t whylen);

/*
 * Picks up a job another coordinator led, from what ZooKeeper records: reads the job's
 * spec and state.  Sets *phase to the state ("waiting", "running", "done", "failed", or
 * "" when there is no job).  Returns 0 or an error with a reason.
 */
int coord_resume(struct coord *c, char *phase, size_t phaselen, char *why, size_t whylen);

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
