/*
 * copies.h - what a worker keeps for lossless recovery (recovery = flr, docs/recovery.md):
 * per shard, the copies of rows it pulled or was sent, the frontier records those copies
 * refer to, and the update log of the pushes it sent.
 *
 * One store per client.  Every function takes the store's one mutex, so the client's
 * thread (which adds copies and log entries) and the keeper endpoint's nng threads (which
 * add replicated rows and read everything for a rebuild) may call in at any time.
 *
 * A copy is kept in the format servers export rows in: width = dim * (1 + nslots) floats
 * (value, then optimizer slots), the u64 stamp S of the shard when the row was read, then
 * the u32 optimizer step count, all little-endian.  The row's stamp field is the copy's S;
 * of two copies of a row the one with the larger S is kept.
 *
 * A frontier record (S, C, V[num_workers]) says what a copy read at stamp S contains.  The
 * store keeps the records some copy refers to and forgets the others now and then.
 *
 * Log entries are kept per shard in push sequence (pseq) order.  The store assigns pseqs
 * (incarnation base + 1, 2, ... per shard) so that the counter and the log cannot disagree.
 */
#ifndef FLR_COPIES_H
#define FLR_COPIES_H

#include <stddef.h>
#include <stdint.h>

#include "common/spec.h"

struct flr_copies;

struct flr_copies_stats {
    uint64_t rows;        /* copies held, all shards and tables */
    uint64_t copy_bytes;  /* their keys and rows */
    uint64_t records;     /* frontier records held */
    uint64_t log_entries; /* update log entries held */
    uint64_t log_bytes;   /* their keys and gradients */
};

/* What a worker tells a rebuilding server about one shard (the MANIFEST). */
struct flr_copies_manifest {
    int64_t clock;           /* the worker's clock */
    uint64_t incarnation;    /* its incarnation base */
    uint64_t pseq_sent;      /* largest pseq assigned for the shard, or the base if none */
    uint64_t pseq_truncated; /* largest pseq truncated from the shard's log, 0 if none */
    uint64_t rows;           /* copies of the shard's rows */
    uint64_t log_entries;
    uint64_t log_bytes;
    size_t nrecords;
    uint64_t *records; /* malloc'd, owned by the caller: per record S, C, V[0..W-1] */
    size_t npages;
    uint64_t *pages; /* in the records' buffer, after them: per page of copies, table and
                        the key it starts at, tables in spec order and keys ascending */
};

/* One log entry as flr_copies_log_into hands it over: keys and grads point into the
 * store and are valid only during the call. */
struct flr_copies_entry {
    uint64_t pseq;
    int64_t clock;
    uint32_t table;
    uint32_t nkeys;
    uint32_t dim;
    uint64_t stamp; /* the stamp the push was acknowledged at, 0 when not (yet) known */
    int acked;
    int contained; /* flr_copies_log_into: only the header (nkeys 0), see there */
    uint64_t *keys;
    float *grads; /* nkeys * dim */
};

/* Bytes of one row of the table in the export format. */
size_t flr_copies_row_bytes(const struct flr_table_spec *t);

/* Allocates an empty store for the job (the spec is copied) and the incarnation base inc.
 * Returns 0, FLR_EINVAL (no shards or workers) or FLR_ENOMEM. */
int flr_copies_alloc(struct flr_copies **cp, const struct flr_job_spec *spec, uint64_t inc);
void flr_copies_free(struct flr_copies *cs);

/* The worker's current clock, as the MANIFEST reports it. */
void flr_copies_set_clock(struct flr_copies *cs, int64_t clock);

/*
 * Stores copies of n rows of one table of one shard, read at stamp S, and the record
 * (S, C, V).  V is num_workers u64 (unaligned is fine) or NULL for zeros.  A row replaces
 * the copy held only when S is larger.
 *
 * flr_copies_put_rows takes full rows in the export format (n * flr_copies_row_bytes); the
 * stamp field of each is set to S.  flr_copies_put_pulled takes the dim floats per key of
 * a pull reply of a slot-free table (steps 0).  Keys are not checked here.  Both return 0,
 * FLR_EINVAL (shard out of range; a table with slots for put_pulled), FLR_EUNKNOWN_TABLE
 * or FLR_ENOMEM (then some rows may have been stored).
 */
int flr_copies_put_rows(struct flr_copies *cs, uint32_t shard, uint32_t table, const void *keys,
                        uint32_t n, const void *rows, uint64_t S, int64_t C, const void *V);
int flr_copies_put_pulled(struct flr_copies *cs, uint32_t shard, uint32_t table, const void *keys,
                          uint32_t n, const void *vals, uint64_t S, int64_t C, const void *V);

/* Copies the row held for key into row (flr_copies_row_bytes bytes).  0 or
 * FLR_ENOT_FOUND (or FLR_EINVAL / FLR_EUNKNOWN_TABLE). */
int flr_copies_get(struct flr_copies *cs, uint32_t shard, uint32_t table, uint64_t key, void *row);

/*
 * Where a page of copies goes: called once per page, under the store's lock, with the
 * page's n sorted keys (NULL when n is 0), the bytes its rows take and the cursor to go on
 * from.  Returns the buffer of `bytes` bytes the rows are gathered into (any non-NULL
 * pointer when bytes is 0), or NULL when it cannot (out of memory).
 */
typedef void *(*flr_copies_sink)(void *arg, const uint64_t *keys, uint32_t n, size_t bytes,
                                 uint64_t next);

/*
 * One page of a shard's copies of a table: the keys in [cursor, end) (end 0: no end) in
 * ascending order, at most max_rows of them and at most max_bytes of keys and rows (but at
 * least one).  The page goes to sink, which is called exactly once unless the shard or
 * table is unknown; *n is the page's rows and *next the cursor to continue from,
 * UINT64_MAX when the page holds the range's last key.  Returns 0, FLR_EINVAL,
 * FLR_EUNKNOWN_TABLE or FLR_ENOMEM (sink or sorting).
 */
int flr_copies_page_into(struct flr_copies *cs, uint32_t shard, uint32_t table, uint64_t cursor,
                         uint64_t end, uint32_t max_rows, size_t max_bytes, flr_copies_sink sink,
                         void *arg, uint32_t *n, uint64_t *next);

/*
 * Appends a push of n keys and gradients (n * dim floats of the table) of clock to the
 * shard's log, before it is first sent, and assigns its pseq.  0, FLR_EINVAL,
 * FLR_EUNKNOWN_TABLE or FLR_ENOMEM (then nothing was appended and no pseq used).
 */
int flr_copies_log_append(struct flr_copies *cs, uint32_t shard, int64_t clock, uint32_t table,
                          const uint64_t *keys, uint32_t n, const float *grads, uint64_t *pseq);

/* Takes back the shard's newest entry, never sent, and its pseq, so that pseqs stay
 * gapless.  0, or FLR_EINVAL when pseq is not the newest one assigned. */
int flr_copies_log_cancel(struct flr_copies *cs, uint32_t shard, uint64_t pseq);

/* Marks an entry acknowledged at stamp (0 when unknown).  0 or FLR_ENOT_FOUND. */
int flr_copies_log_ack(struct flr_copies *cs, uint32_t shard, uint64_t pseq, uint64_t stamp);

/* Removes an entry the server refused (it was not applied).  0 or FLR_ENOT_FOUND. */
int flr_copies_log_drop(struct flr_copies *cs, uint32_t shard, uint64_t pseq);

/* Drops the shard's oldest entries that are acknowledged and have pseq <= covered; stops
 * at the first entry that is not.  Out-of-range shards are ignored. */
void flr_copies_log_truncate(struct flr_copies *cs, uint32_t shard, uint64_t covered);

/*
 * Hands the shard's first entry with cursor < pseq < end (end 0: no end) to fn, under the
 * store's lock: e points into the store and is valid only during the call; e is NULL when
 * there is no such entry.  next is e's pseq when the range holds more entries after it,
 * else UINT64_MAX.  Returns fn's result, or FLR_EINVAL (shard out of range).
 *
 * With self >= 0 (this worker's id), an entry that this worker's own copies show the
 * rebuilding server needs no more is handed over as its header only (contained set, nkeys
 * 0): every key has a copy whose record, as the last manifest sent it, contains the push.
 */
typedef int (*flr_copies_entry_fn)(void *arg, const struct flr_copies_entry *e, uint64_t next);
int flr_copies_log_into(struct flr_copies *cs, uint32_t shard, uint64_t cursor, uint64_t end,
                        int64_t self, flr_copies_entry_fn fn, void *arg);

/* Fills the shard's manifest, with the start of every page of copies as flr_copies_page_into
 * would cut them with max_rows and max_bytes (none when max_bytes is 0).  Free it with
 * flr_copies_manifest_fini.  0, FLR_EINVAL or FLR_ENOMEM. */
int flr_copies_manifest(struct flr_copies *cs, uint32_t shard, uint32_t max_rows, size_t max_bytes,
                        struct flr_copies_manifest *m);
void flr_copies_manifest_fini(struct flr_copies_manifest *m);

void flr_copies_stats(struct flr_copies *cs, struct flr_copies_stats *st);

#endif
