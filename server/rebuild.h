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
};

/* Frees what a result still owns (arrays, held messages not taken over). */
void flr_rebuild_result_free(struct flr_rebuild_result *r);

#endif
