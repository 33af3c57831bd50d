/*
 * status.h - one JSON document that says what a job is doing, built from what ZooKeeper
 * records under /flr/<job> (common/jobpaths.h) and from each live server's STATUS reply.
 *
 * The coordinator's status endpoint (http.c) serves it as GET /status and renders it as
 * Prometheus metrics (metrics.c); flrctl prints it, or builds it itself from ZooKeeper
 * when no endpoint answers.  The document's fields are listed in docs/operations.md; the
 * top level is
 *
 *     job, exists, state, epoch, model, recovery, consistency, staleness, num_servers,
 *     num_workers, num_shards, started_ms, now_ms, collect_ms, leader, coordinators,
 *     servers, workers, shards, throughput, curve, events, recoveries, requests, totals
 *
 * Every part of the tree may be missing (a job not created yet, no curve yet, a server
 * that does not answer): the document then says so (exists false, curve [], reachable
 * false) instead of failing.  Only a ZooKeeper error fails a collection.
 */
#ifndef FLR_STATUS_H
#define FLR_STATUS_H

#include <stddef.h>

#include <jansson.h>

#include "common/zk.h"

#define FLR_STATUS_EVENTS     50  /* newest events carried in the document */
#define FLR_STATUS_RECOVERIES 100 /* newest recoveries carried (totals count all of them) */
#define FLR_STATUS_PROBE_MS   500 /* how long a server's STATUS reply may take */

/*
 * Builds the document of job from ZooKeeper and the servers' STATUS replies (asked in
 * parallel, at most FLR_STATUS_PROBE_MS).  On success *doc is a new reference owned by
 * the caller, with "throughput" fields null (see flr_status_throughput).  On failure
 * returns FLR_EINVAL (bad job name), FLR_ENOMEM or a ZooKeeper error, *doc is NULL and
 * why says what failed.
 */
int flr_status_collect(struct flr_zk *zk, const char *job, json_t **doc, char *why, size_t whylen);

/*
 * Fills doc's "throughput" ({samples_per_second, keys_pushed_per_second, interval_ms})
 * from the difference between doc and an earlier document prev of the same job.  With
 * prev NULL, from another job, or not older than doc, the rates stay null.  Counters
 * that went back (a relaunched server, a shard that moved away) count from zero.
 */
void flr_status_throughput(json_t *doc, const json_t *prev);

/*
 * Reads the leading coordinator's election data: *leader is a new reference to
 * {"candidate","pid","host","http"} or NULL when no coordinator runs.  Returns 0 or a
 * ZooKeeper error.
 */
int flr_status_leader(struct flr_zk *zk, const char *job, json_t **leader, char *why,
                      size_t whylen);

/*
 * Appends an operator command for the leader: a persistent-sequential node
 * /flr/<job>/requests/q_ holding {"action","server","at_ms","from"}.  action is "kill" or
 * "drain"; the server must be registered in the job.  The created node's name (q_NNN) is
 * copied to created.  Returns 0, FLR_EINVAL (unknown action), FLR_ENOT_FOUND (no such
 * server registered, or no such job) or a ZooKeeper error, with a one-line reason.
 */
int flr_status_request_add(struct flr_zk *zk, const char *job, const char *action,
                           unsigned long server, const char *from, char *created, size_t createdlen,
                           char *why, size_t whylen);

/*
 * Parses a server id as given by an operator ("3"): decimal digits only, 0..1000000.
 * Returns 0 or FLR_EINVAL with a reason naming the text.
 */
int flr_status_parse_server_id(const char *text, unsigned long *id, char *why, size_t whylen);

#endif
