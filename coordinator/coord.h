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
#include <string.h>

#include "common/shardmap.h"
#include "common/spec.h"
#include "common/zk.h"
#include "launch.h"

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
    int launcher_kind;            /* 0 local, 1 external */
    char server_bin[256];         /* local: the flr-server to start ("" = beside this program) */
    char server_args[512];        /* local: extra arguments for every server */
    char server_logs[256];        /* local: directory for the servers' logs ("" = our stderr) */
    long long standby;            /* local: standby servers to start besides num_servers */
    long long kills;              /* drill: SIGKILL a server this many times during training */
    long long recover_timeout_ms; /* give up waiting for a replacement server after this */

    /* The status endpoint (http.c). */
    char http[256];            /* status endpoint URL; "" or "off" disables it */
    char http_token_file[256]; /* operator token for POST (and reads with http_auth_reads) */
    int http_auth_reads;
};

/* A recovery: the state machine of one lost server, mirrored in
 * /flr/<job>/recoveries/r_NNNNNNNNNN (recover.c). */
enum coord_rphase { RPH_FENCING, RPH_PLACING, RPH_LOADING, RPH_DONE };

struct coord_recovery {
    char id[32]; /* r_NNNNNNNNNN */
    uint32_t server;
    uint64_t incarnation;
    uint32_t *shards;
    uint32_t nshards;
    enum coord_rphase phase;
    int64_t killed_at_ms, detected_at_ms, serving_at_ms, launched_at_ms; /* wall ms, 0 = unknown */
    uint64_t fenced_epoch, assigned_epoch;
    uint32_t target; /* FLR_NO_OWNER until placed */
    uint64_t target_incarnation;
    long long rows_rebuilt, rows_lost;
    char outcome[64];          /* "" or why it ended other than serving */
    int drain;                 /* a drain (operator): the server lives and its shards are copied */
    uint32_t launch_id;        /* local launcher: the id it started for this recovery */
    char request[32];          /* the operator command that started it (a drain), or "" */
    struct coord_probe *probe; /* a STATUS in flight to the target (in memory only) */
};

/* A recovery's figures: kill -> detected, and kill (or detection, when the kill time is
 * unknown) -> serving again; -1 when not known (yet). */
static inline long long coord_recovery_detect_ms(const struct coord_recovery *r)
{
    return r->killed_at_ms ? (long long)(r->detected_at_ms - r->killed_at_ms) : -1;
}

static inline long long coord_recovery_recover_ms(const struct coord_recovery *r)
{
    int64_t from = r->killed_at_ms ? r->killed_at_ms : r->detected_at_ms;
    return r->serving_at_ms ? (long long)(r->serving_at_ms - from) : -1;
}

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

    /* Operations (recover.c, launch.c). */
    const struct coord_launcher_ops *launcher;
    struct coord_child *children; /* local launcher */
    size_t nchildren;
    struct flr_shard_rec *shardrec;  /* our copy of every shard record (we are the writer) */
    int32_t *shardver;               /* their znode versions */
    long long *shard_rows;           /* rows last seen in each shard (server STATUS) */
    struct coord_probe **row_probes; /* by server id: the STATUS asking for those rows */
    size_t nrow_probes;
    struct flr_server_rec *servers; /* live server records */
    int nservers;
    struct flr_server_rec *known; /* the last record seen of every server id */
    size_t nknown;
    struct coord_recovery *recs;
    size_t nrecs;
    int64_t last_poll_ms, last_list_ms;
    long long kills_done;
    int monitor_ready;
    char cur_request[32]; /* the operator command being run: its events name it */
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

/* Reads the registered servers (leaving a child watch on /servers when watch is set),
 * sorted by id; *out is malloc'd.  Returns 0 or the ZooKeeper error. */
int coord_read_servers(struct coord *c, int watch, struct flr_server_rec **out, int *nout);

/* Draws a new epoch: increments /flr/<job>/epoch conditionally, retrying when another
 * write raced ours. */
int coord_bump_epoch(struct coord *c, uint64_t *out);

/* Whether the job recovers lost shards by rebuilding them from the workers (flr). */
static inline int coord_flr(const struct coord *c)
{
    return strcmp(c->spec.recovery, "flr") == 0;
}

/* Sets /flr/<job>/state. */
int coord_set_state(struct coord *c, const char *state);

/* Appends an event /flr/<job>/events/e_ with kind, a one-line message and the extra JSON
 * members in `extra` (a jansson object, taken; may be NULL).  Also logs the message. */
void coord_event(struct coord *c, const char *kind, void *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* recover.c: the running job's operations loop, one step at a time.  coord_ops_begin()
 * loads what ZooKeeper records (shard records, unfinished recoveries); coord_ops_step()
 * notices lost servers, advances recoveries, runs operator commands and drills, and
 * reaps local children.  Returns 0 or an error that ends the job (session expired). */
int coord_ops_begin(struct coord *c, char *why, size_t whylen);
int coord_ops_step(struct coord *c, char *why, size_t whylen);
void coord_ops_end(struct coord *c);

/* A JSON array of shard numbers (a jansson json_t *). */
void *coord_shards_json(const uint32_t *v, uint32_t n);

/* Starts the job's servers (local launcher) after coord_create(). */
int coord_launch_servers(struct coord *c, char *why, size_t whylen);

#endif
