/*
 * shard.h - one shard as a server serves it: its store, epoch, stamp and consistency
 * state, and the handling of PULL, PUSH and CLOCK requests addressed to it.
 *
 * A shard belongs to the server's owner thread; nothing here locks.
 *
 * Consistency (DESIGN.md section 5).  Each worker w has a clock c_w: the number of
 * iterations it has finished (the value of its last CLOCK).  min_clock = min over the
 * job's workers.  A PULL carries the sender's clock t and is answered once
 * min_clock >= t - s (s = 0 for BSP, the bound for SSP, infinite for ASP); until then it
 * is held.  Under SSP and ASP a PUSH is applied on arrival.  Under BSP a PUSH of clock t
 * is held (its message kept, not copied) and when min_clock passes t the held pushes of
 * clock t are summed per row in worker order (request-id order within a worker) and the
 * optimizer is applied once, so the result does not depend on arrival order.
 *
 * Shard lifecycle (per server):
 *
 *     (absent) --flr_shard_open(epoch)--> SERVING --flr_shard_close--> (absent)
 *
 * Requests carrying another epoch than the shard's are answered WRONG_EPOCH.
 */
#ifndef FLR_SHARD_H
#define FLR_SHARD_H

#include <stdint.h>

#include <nng/nng.h>

#include "common/err.h"
#include "common/proto.h"
#include "common/spec.h"
#include "common/transport.h"

struct flr_shard;
struct flr_rebuild_result;

/* A worker's sequence numbers (docs/recovery.md): its incarnation base is
 * wall-clock ms << FLR_SHARD_INC_SHIFT, and its n-th push to a shard has pseq = base + n,
 * so seq >> FLR_SHARD_INC_SHIFT names the process that sent a request. */
#define FLR_SHARD_INC_SHIFT 22

/* What a request handler wants the caller to do with the request. */
enum flr_shard_verdict {
    FLR_SHARD_REPLIED = 0, /* a reply was sent; the caller frees nothing else */
    FLR_SHARD_HELD = 1     /* the shard keeps the request and message until later */
};

/* Counters a shard keeps (read by the server's status and logs). */
struct flr_shard_stats {
    uint64_t pulls, pushes, clocks;
    uint64_t keys_pulled, keys_pushed;
    uint64_t bytes_in, bytes_out;
    uint64_t held_pulls;                /* pulls currently waiting for the clock */
    uint64_t duplicate_pushes;          /* retried pushes acknowledged, not applied again */
    uint64_t early_pushes;              /* pushes waiting for their predecessor (ASP, SSP) */
    uint64_t rejected;                  /* requests answered with an error */
    uint64_t rejected_by[FLR_E_COUNT_]; /* the same, by error code */
};

/* Error reply helper shared with the server: answers req with an ERROR_REPLY or the
 * type's reply carrying status and reason. */
void flr_reply_error(struct flr_req *req, const struct flr_msg *in, const char *job, uint32_t self,
                     int status, const char *reason);

/* Opens shard id at epoch to be rebuilt (flr_rebuild_shard): its dense rows' floats are
 * left for the rebuild to fill (FLR_STORE_UNINIT). */
int flr_shard_open_for_rebuild(struct flr_shard **sp, const struct flr_job_spec *spec, uint32_t id,
                               uint64_t epoch, uint32_t self_id);

/* Opens shard id at epoch: creates the store (initialised rows). */
int flr_shard_open(struct flr_shard **sp, const struct flr_job_spec *spec, uint32_t id,
                   uint64_t epoch, uint32_t self_id);

/* Drops held requests (without answering) and frees the shard. */
void flr_shard_close(struct flr_shard *s);

uint64_t flr_shard_epoch(const struct flr_shard *s);
uint64_t flr_shard_stamp(const struct flr_shard *s);
int64_t flr_shard_min_clock(const struct flr_shard *s);

/* The applied frontier F[w] of a worker (0 for an unknown worker): every push of it with
 * pseq <= F[w] has been applied, or under BSP is held for its clock. */
uint64_t flr_shard_frontier(const struct flr_shard *s, uint32_t worker);

/* Moving a BSP shard: its pushes held for a clock not yet closed (they were acknowledged)
 * go with it.  flr_shard_held_push() returns the i-th or NULL; flr_shard_adopt_push()
 * holds one on the new server (taking msg, into which m points). */
const struct flr_msg *flr_shard_held_push(const struct flr_shard *s, size_t i);
int flr_shard_adopt_push(struct flr_shard *s, nng_msg *msg, const struct flr_msg *m);

/* Raises the shard's stamp (a moved shard keeps counting from its source's). */
void flr_shard_set_stamp(struct flr_shard *s, uint64_t stamp);

/* The clock the shard holds for a worker (-1 when it is not one of the job's) and whether
 * the worker is removed from the accounting. */
int64_t flr_shard_worker_clock(const struct flr_shard *s, uint32_t worker, int *removed);
const struct flr_shard_stats *flr_shard_stats(const struct flr_shard *s);
struct flr_store *flr_shard_store(struct flr_shard *s);

/* Stops counting a worker's clock (the coordinator removed it: it died).  Clocks and
 * pulls that were waiting only for it go ahead; its later requests are rejected with
 * FLR_EWORKER_REMOVED. */
void flr_shard_remove_worker(struct flr_shard *s, uint32_t worker);

/* Counts a removed worker again (it was restarted and readmitted), starting from the
 * shard's current minimum clock. */
void flr_shard_readmit_worker(struct flr_shard *s, uint32_t worker);

/*
 * Installs a rebuild's outcome (server/rebuild.h) into a shard just opened whose store the
 * rebuild filled, before the shard serves: the workers' clocks (those that reported one;
 * the minimum is recomputed without closing any clock), each worker's applied frontier
 * and incarnation, the stamp (raised to r->stamp), and the BSP pushes of open clocks,
 * which the shard holds as acknowledged pushes: it takes each r->held[i].msg and sets it
 * to NULL.  The rebuild's figures are kept for STATUS (flr_shard_rebuild_info).  Returns
 * 0, FLR_ENOMEM, or an error for a held push this shard cannot hold (not BSP, unknown
 * worker or table, bad keys or gradients); on error nothing is installed or taken.  r
 * stays the caller's to free with flr_rebuild_result_free().
 */
int flr_shard_restore(struct flr_shard *s, struct flr_rebuild_result *r);

/* The figures of the rebuild that restored the shard (its arrays are NULL), or NULL when
 * the shard was not rebuilt. */
const struct flr_rebuild_result *flr_shard_rebuild_info(const struct flr_shard *s);

/* Sets the applied frontier of a worker from a drained shard's source (its incarnation
 * follows); 0 changes nothing. */
void flr_shard_set_frontier(struct flr_shard *s, uint32_t worker, uint64_t frontier);

/*
 * Takes over a drained source's clocks before the shard serves: each worker's clock
 * (clock[0..n-1]; a lower one than the shard knows changes nothing) and the source's
 * minimum, which counted only the workers it had not removed.  Nothing is closed or
 * answered: the source applied every clock below its minimum, and its held pushes come
 * with flr_shard_adopt_push() (call this first: a push below the minimum is refused).
 * Without it the new owner would learn a worker's clock only from its next request, and
 * a worker whose requests wait on another server (BSP) for a worker that waits here could
 * wait for ever.
 */
void flr_shard_set_clocks(struct flr_shard *s, const int64_t *clock, uint32_t n, int64_t min_clock);

/* Lists every updated row as lacking copies (a shard moved here: its holders stayed with
 * the source).  0 or FLR_ENOMEM; nothing to do without recovery flr. */
int flr_shard_mark_all_dirty(struct flr_shard *s);

/* Recovery flr: the state of the shard's copies, for STATUS. */
struct flr_shard_copies {
    uint32_t k, need;          /* k of the spec; holders a row needs now */
    uint64_t short_rows;       /* rows listed, in flight or to retry, lacking copies */
    uint64_t safe_stamp;       /* every update at or below it is in enough copies */
    uint64_t replicated_rows;  /* rows acknowledged by REPLICATE_ACK */
    uint64_t replicated_bytes; /* bytes of those REPLICATEs */
    uint64_t replicate_errors; /* REPLICATEs that failed or timed out */
    uint64_t holder_bytes;     /* memory of the holders and the dirty list */
};

/* Fills out and returns 1 under recovery flr; returns 0 (out zeroed) otherwise. */
int flr_shard_copies(struct flr_shard *s, struct flr_shard_copies *out);

/*
 * The replication pass (recovery flr, docs/recovery.md "How copies are made").  targets
 * are the workers that may be sent a REPLICATE now (live, with an endpoint, none in flight
 * to them).  The shard serves the rows whose copies failed, then walks its dirty list
 * from the oldest row up to the first listed after the previous pass, and gives each row
 * to the targets that do not hold it, round-robin, one table and at most about max_bytes
 * per target.  For each target given rows it fills one out[] (out has room for ntargets):
 * id, worker and msg, the encoded REPLICATE, which the caller owns and sends.  The caller
 * reports each answer with flr_shard_replicate_done(s, id, ok): ok when the worker
 * answered REPLICATE_ACK with status 0.  Ids of a closed shard are simply forgotten.
 * Returns 0 or FLR_ENOMEM (rows not sent are kept for the next pass).
 */
struct flr_shard_replica {
    uint64_t id;
    uint32_t worker;
    nng_msg *msg;
};

int flr_shard_replicate(struct flr_shard *s, const uint32_t *targets, uint32_t ntargets,
                        size_t max_bytes, struct flr_shard_replica *out, uint32_t *nout);
void flr_shard_replicate_done(struct flr_shard *s, uint64_t id, int ok);

/*
 * Handles a decoded PULL, PUSH, CLOCK or LEAVE whose header (job, shard, epoch) has already
 * been checked.  A removed worker's requests are refused, except LEAVE, which a finished
 * worker sends until the shard no longer needs its copies and log (docs/recovery.md).  msg is the
 * buffer m points into.  Returns FLR_SHARD_REPLIED (the shard replied and freed msg) or
 * FLR_SHARD_HELD (the shard keeps req and msg).
 */
enum flr_shard_verdict flr_shard_handle(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                                        const struct flr_msg *m);

#endif
