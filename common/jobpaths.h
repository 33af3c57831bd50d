/*
 * jobpaths.h - the ZooKeeper layout of a job (DESIGN.md section 3), in one place.
 *
 *   /flr/<job>/spec                 persistent  job spec (JSON)
 *   /flr/<job>/state                persistent  "waiting" | "running" | "done" | "failed"
 *   /flr/<job>/epoch                persistent  cluster epoch (decimal), bumped on ownership change
 *   /flr/<job>/started              persistent  wall-clock ms when the job started running
 *   /flr/<job>/coordinators/c_      ephemeral-sequential  leader election; data
 *                                   {"pid","host","http"} ("http": status endpoint URL or "")
 *   /flr/<job>/servers/<id>         ephemeral   server record (JSON, shardmap.h)
 *   /flr/<job>/workers/<id>         ephemeral   worker record {"id","pid","host","endpoint"}
 *                                   plus progress, rewritten about once a second:
 *                                   {"clock","samples","epoch","loss","at_ms"}
 *   /flr/<job>/shards/<shard>       persistent  shard record (JSON)
 *   /flr/<job>/results/<worker-id>  persistent  a finished worker's result (JSON)
 *   /flr/<job>/removed/<worker-id>  persistent  a worker removed from the clock accounting
 *   /flr/<job>/curve                persistent  training curve written by worker 0 after each
 *                                   evaluation: [{"epoch","test_accuracy"|"test_auc",
 *                                   "test_loss"|"test_logloss","wall_seconds"}, ...]
 *   /flr/<job>/events/e_            persistent-sequential  events: {"at_ms","kind","message",...}
 *   /flr/<job>/recoveries/r_        persistent-sequential  one recovery state machine per lost
 *                                   server (coordinator/recover.c)
 *   /flr/<job>/kills/<server-id>    persistent  {"at_ms","incarnation"}: when a drill killed it
 *   /flr/<job>/requests/q_          persistent-sequential  operator commands for the leader:
 *                                   {"action":"kill"|"drain","server",...}; the leader runs
 *                                   each one, records an event and deletes the node
 */
#ifndef FLR_JOBPATHS_H
#define FLR_JOBPATHS_H

#include <stdio.h>

#define FLR_ZK_ROOT  "/flr"
#define FLR_PATH_MAX 256

/* Formats "/flr/<job><suffix>" into buf; suffix may be "" or start with '/'. */
static inline int flr_job_path(char *buf, size_t len, const char *job, const char *suffix)
{
    int n = snprintf(buf, len, FLR_ZK_ROOT "/%s%s", job, suffix);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

/* Formats "/flr/<job>/<dir>/<id>". */
static inline int flr_job_node(char *buf, size_t len, const char *job, const char *dir,
                               unsigned long id)
{
    int n = snprintf(buf, len, FLR_ZK_ROOT "/%s/%s/%lu", job, dir, id);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

#endif
