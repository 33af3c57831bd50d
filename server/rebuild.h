/*
 * rebuild.h - recovery flr: rebuilding a lost shard from the workers' copies and update
 * logs (docs/recovery.md, "Rebuild").
 *
 * flr_rebuild_shard() fills the store of a freshly opened shard and describes what the
 * shard itself must take over; flr_shard_restore() (shard.h) then installs that into the
 * shard before it serves.
 */
#ifndef FLR_REBUILD_H
#define FLR_REBUILD_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "common/proto.h"
#include "common/spec.h"

struct flr_shard;
struct flr_store;
struct flr_zk;

/* A push of a BSP clock that was not closed yet: acknowledged once, to be held again.
 * m points into msg (m.type PUSH, m.sender the worker, m.seq its pseq, m.clock, m.table,
 * m.keys, m.vals); the shard takes msg over. */
struct flr_rebuild_held {
    nng_msg *msg;
    struct flr_msg m;
};

struct flr_rebuild_result {
    uint32_t nworkers;
    int64_t *clock;     /* nworkers: the clock each worker reported, -1 when it did not answer */
    uint64_t *frontier; /* nworkers: F[w] after the rebuild (every push of w up to it applied) */
    uint64_t stamp;     /* the shard's stamp after the rebuild */
    struct flr_rebuild_held *held; /* BSP pushes of open clocks */
    size_t nheld;

    /* What the rebuild found and did, for STATUS, events and metrics. */
    uint64_t rows_rebuilt;     /* rows restored from a copy */
    uint64_t rows_lost;        /* rows with neither a copy nor a log entry */
    uint64_t rows_from_log;    /* rows without a copy, restored by replaying logs */
    uint64_t entries_replayed; /* log entries applied (to at least one row) */
    uint64_t entries_skipped;  /* log entries every copy already contained */
    uint32_t workers;          /* workers that contributed */
    uint64_t bytes;            /* bytes streamed from the workers */
    int64_t ms;                /* wall time of the rebuild */
    int64_t replay_ms;         /* of which replaying the logs and installing (the rest: the
                                  workers' streams) */
    uint64_t page_faults;      /* the process's minor page faults meanwhile: fresh memory
                                  touched (receive buffers, the shard) */
};

/* Frees what a result still owns (arrays, held messages not taken over). */
void flr_rebuild_result_free(struct flr_rebuild_result *r);

/*
 * The core: what the workers sent, fed in as it arrives, then flr_rebuild_finish().  No
 * network and no ZooKeeper here, so it can be tested on its own.  A struct flr_rebuild
 * belongs to one thread.  Every add_* call validates what it is given and returns 0 or an
 * FLR_E* code with a one-line reason in why; after a failure nothing of that call was kept
 * (copies already imported by earlier calls stay: they are valid whoever sent them).
 */
struct flr_rebuild;

/* A worker's MANIFEST, without its records. */
struct flr_rebuild_manifest {
    int64_t clock;           /* the worker's clock (iterations finished) */
    uint64_t incarnation;    /* its incarnation base */
    uint64_t pseq_sent;      /* the largest pseq it sent to the shard, 0 = none */
    uint64_t pseq_truncated; /* every push up to it was covered and dropped from its log */
};

/* One update-log entry: a push as the worker sent it. */
struct flr_rebuild_entry {
    uint32_t table;
    int64_t clock;
    uint64_t pseq;
    uint64_t acked;   /* the stamp its acknowledgement reported, 0 when unacknowledged */
    const void *keys; /* nkeys little-endian u64, sorted, unaligned */
    uint32_t nkeys;
    const void *grads; /* grads_len bytes: nkeys * dim float32, unaligned */
    uint64_t grads_len;
};

/*
 * Starts rebuilding shard `shard` into store, a freshly opened store of that shard
 * (initial rows only).  spec and store must outlive the rebuild, which changes store
 * (copies are imported as they arrive).  removed: spec->num_workers flags of the workers
 * the coordinator removed (their clocks do not count), or NULL.
 */
int flr_rebuild_alloc(struct flr_rebuild **rbp, const struct flr_job_spec *spec,
                      struct flr_store *store, uint32_t shard, const uint8_t *removed);

/* Frees the rebuild and every message it still holds. */
void flr_rebuild_free(struct flr_rebuild *rb);

/*
 * Records worker's manifest: m and its frontier records, records_len bytes of
 * little-endian u64 (unaligned), per record S, C (two's complement), V[0..W-1].  A record
 * already known by its S is kept as first given (records of one S are identical).
 * Errors: FLR_EINVAL (worker out of range), FLR_EBAD_REQUEST (records not whole), FLR_ENOMEM.
 */
int flr_rebuild_add_manifest(struct flr_rebuild *rb, uint32_t worker,
                             const struct flr_rebuild_manifest *m, const void *records,
                             uint64_t records_len, char *why, size_t whylen);

/*
 * Offers n copies of rows of table: keys (sorted, of this shard) and rows_len bytes of
 * rows in flr_tshard_export()'s format, whose stamp field is S, the shard stamp the copy
 * was read at.  A copy replaces the row's current copy when its S is larger.  A copy whose
 * S has no record (no manifest named it) is ignored and counted: without its record the
 * rebuild cannot tell which log entries it contains, so using it could apply an update
 * twice (see flr_rebuild_copies_ignored).
 * Errors: FLR_EUNKNOWN_TABLE, FLR_EUNSORTED, FLR_EKEY_RANGE, FLR_EVALUE_LEN, FLR_ENOMEM.
 */
int flr_rebuild_add_copies(struct flr_rebuild *rb, uint32_t worker, uint32_t table,
                           const void *keys, uint32_t n, const void *rows, uint64_t rows_len,
                           char *why, size_t whylen);

/*
 * Adds one of worker's log entries.  e's pointers point into msg (or msg is NULL and they
 * stay valid until flr_rebuild_finish/free); on success the rebuild takes msg, on failure
 * the caller keeps it.  Errors: FLR_EINVAL (worker), FLR_EUNKNOWN_TABLE, FLR_EUNSORTED,
 * FLR_EKEY_RANGE, FLR_EVALUE_LEN, FLR_ENAN_GRAD, FLR_EBAD_REQUEST (no keys; a negative clock
 * under BSP; a held BSP entry without msg), FLR_ENOMEM.
 */
int flr_rebuild_add_entry(struct flr_rebuild *rb, uint32_t worker, nng_msg *msg,
                          const struct flr_rebuild_entry *e, char *why, size_t whylen);

/*
 * Notes that worker's log entry pseq is contained in copies the rebuild holds (the worker
 * sent only its pseq: its own copies, as its manifest described them, contain the push).
 * The entry is not replayed but counts as skipped and moves the worker's frontier.
 * Errors: FLR_EINVAL (worker out of range), FLR_EBAD_REQUEST (before the manifest).
 */
int flr_rebuild_add_contained(struct flr_rebuild *rb, uint32_t worker, uint64_t pseq, char *why,
                              size_t whylen);

/* Forgets a worker's manifest and log entries (it failed and will be asked again, or its
 * node went).  Its copies and records stay: they are facts about the shard. */
void flr_rebuild_drop_worker(struct flr_rebuild *rb, uint32_t worker);

/* Copies ignored because no manifest held their record. */
uint64_t flr_rebuild_copies_ignored(const struct flr_rebuild *rb);

/*
 * Replays the log entries no copy contains (docs/recovery.md, "Rebuild", step 4) and fills
 * *r (nworkers, clock, frontier, stamp, held, the row and entry counts; bytes and ms stay
 * 0, the caller measures them).  On success *r owns what it holds (free it with
 * flr_rebuild_result_free) and the rebuild holds no more entries.  On failure (FLR_ENOMEM)
 * *r is zeroed and the store is half rebuilt: close the shard.
 */
int flr_rebuild_finish(struct flr_rebuild *rb, struct flr_rebuild_result *r);

/* ---- the network part ---- */

/* REBUILD_REQ's table for the update log. */
#define FLR_REBUILD_LOG UINT32_MAX

struct flr_rebuild_cfg {
    struct flr_zk *zk;                  /* lists /workers and reads their endpoints */
    const char *job;                    /* the job, as in every message */
    uint32_t self;                      /* this server's id: the sender of the requests */
    uint32_t shard;                     /* the shard being rebuilt */
    const struct flr_job_spec *spec;    /* the job's spec */
    const uint8_t *removed;             /* spec->num_workers flags, or NULL */
    const struct flr_proto_limits *lim; /* for the workers' replies */
    int call_timeout_ms;                /* a worker that takes longer failed */
    int retry_ms;                       /* pause before asking a failed worker again */
    int64_t timeout_ms;                 /* give up after this long (FLR_ETIMEOUT); 0 = never */
    /* Called often while waiting, may be NULL: keeps the server's ZooKeeper lease and
     * returns nonzero when the rebuild must stop at once (the server is shutting down). */
    int (*keep_lease)(void *arg);
    void *arg;
};

/*
 * Rebuilds shard cfg->shard into sh, freshly opened at its new epoch and not served yet:
 * asks every worker listed under /flr/<job>/workers for its MANIFEST, then streams its
 * copies (table by table) and its log with REBUILD_REQ, the workers in parallel, and
 * replays what the copies lack (flr_rebuild_finish).  A worker that does not answer, or
 * answers something invalid, loses what it sent so far and is asked again until it answers
 * or its node goes.  Runs on the shard's owner thread and blocks until done.
 *
 * On success *r describes the rebuild (bytes and ms included) and must be installed with
 * flr_shard_restore() and then freed with flr_rebuild_result_free().  On failure *r is
 * zeroed and sh is half rebuilt: close it.  Errors: FLR_ETIMEOUT (cfg->timeout_ms),
 * FLR_ESHUTDOWN (keep_lease said stop), FLR_EZK_EXPIRED, other ZooKeeper errors reading
 * /workers, FLR_ENOMEM.
 */
int flr_rebuild_shard(struct flr_shard *sh, const struct flr_rebuild_cfg *cfg,
                      struct flr_rebuild_result *r);

#endif
