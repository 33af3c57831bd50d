/*
 * store.h - one shard's slice of every table: rows, optimizer slots, per-row metadata.
 *
 * A struct flr_store belongs to one thread (the server's shard owner); nothing here locks.
 *
 * Dense table slices hold the contiguous rows [lo, hi) the placement gives the shard,
 * allocated up front.  Sparse slices are an open-addressing hash map from row id to a
 * row index in a chunked arena; a row is created on first touch (pull or push) and
 * initialised deterministically from (table seed, key), so every process, and every
 * incarnation of a shard, creates the same initial row.
 *
 * Each row records the stamp of the update that last changed it (0 = never updated) and
 * its optimizer step count.
 *
 * Gradients are validated (flr_tshard_check) before they are applied, so a bad push never
 * changes a shard.  BSP aggregation: flr_tshard_accumulate() sums gradients per row into
 * an accumulator in call order (flr_tshard_accumulate_ref() skips the sum where a row has
 * one gradient); flr_tshard_apply_accumulated() applies the optimizer once per touched row
 * and clears the accumulator.
 */
#ifndef FLR_STORE_H
#define FLR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/spec.h"

struct flr_store;
struct flr_tshard;

/* Creates the slices of every table of spec for one shard (dense rows initialised). */
int flr_store_alloc(struct flr_store **sp, const struct flr_job_spec *spec, uint32_t shard);

/*
 * The same, but with FLR_STORE_UNINIT the dense rows' floats are left as they are: for a
 * store that is about to be filled (a rebuild), which must give every dense row its floats
 * (flr_tshard_import) or its initial value (flr_tshard_init_row) before anything reads it.
 * Writing initial values only to overwrite them costs a pass over the whole slice, and the
 * slice is not faulted in ahead either: the data that fills it does that.
 */
enum { FLR_STORE_UNINIT = 1 };
int flr_store_alloc_flags(struct flr_store **sp, const struct flr_job_spec *spec, uint32_t shard,
                          unsigned flags);

/* Gives a dense row of the slice its initial value, zero slots and zero metadata. */
int flr_tshard_init_row(struct flr_tshard *t, uint64_t row);

void flr_store_free(struct flr_store *s);

/* Returns the slice of table id, or NULL when the job has no such table. */
struct flr_tshard *flr_store_table(struct flr_store *s, uint32_t table_id);

/* Bytes of memory the store holds (values, slots, metadata, indexes). */
size_t flr_store_bytes(const struct flr_store *s);

/* Rows present (dense: the slice; sparse: the rows touched so far). */
uint64_t flr_store_rows(const struct flr_store *s);

const struct flr_table_spec *flr_tshard_spec(const struct flr_tshard *t);

/*
 * Checks that every key (unaligned little-endian u64 in keys) belongs to this table and
 * this shard (dense: row in [lo, hi); sparse: placement says this shard).  Returns 0,
 * FLR_EUNKNOWN_TABLE or FLR_EKEY_RANGE with the offending key in why.
 */
int flr_tshard_check_keys(const struct flr_tshard *t, const void *keys, uint32_t n, char *why,
                          size_t whylen);

/*
 * Checks a push: keys as above, vals_len == n * dim * 4 (else FLR_EVALUE_LEN) and every
 * gradient finite (else FLR_ENAN_GRAD).
 */
int flr_tshard_check_push(const struct flr_tshard *t, const void *keys, uint32_t n,
                          const void *vals, uint64_t vals_len, char *why, size_t whylen);

/*
 * Copies the values (not the slots) of n rows into out (n * dim floats, may be unaligned),
 * creating missing sparse rows.  Keys must have passed flr_tshard_check_keys().
 * Returns 0 or FLR_ENOMEM.
 */
int flr_tshard_read(struct flr_tshard *t, const void *keys, uint32_t n, void *out);

/* Applies n gradients (already checked) with the table's optimizer, each row once, marking
 * each row with stamp. Returns 0 or FLR_ENOMEM. */
int flr_tshard_apply(struct flr_tshard *t, const void *keys, uint32_t n, const void *grads,
                     uint64_t stamp);

/* Adds n gradients (already checked) into the accumulator. Returns 0 or FLR_ENOMEM; after
 * a failure the clock is not to be applied but dropped (flr_tshard_drop_accumulated()). */
int flr_tshard_accumulate(struct flr_tshard *t, const void *keys, uint32_t n, const void *grads);

/*
 * The same, but keys and grads may be kept by reference: they must stay valid and unchanged
 * until flr_tshard_apply_accumulated() or flr_tshard_drop_accumulated().  While a clock's
 * pushes to a dense table each name rows above all rows before them, none is summed:
 * applying takes each as it is, as if summed from +0.0, so the outcome is bit for bit the
 * accumulator's.  Returns 0 or FLR_ENOMEM.
 */
int flr_tshard_accumulate_ref(struct flr_tshard *t, const void *keys, uint32_t n,
                              const void *grads);

/* Applies the accumulated gradients once per touched row (ascending row order) with stamp,
 * then clears the accumulator.  Cannot fail once the accumulating calls succeeded: returns
 * 0. */
int flr_tshard_apply_accumulated(struct flr_tshard *t, uint64_t stamp);

/* Empties the accumulator without applying it (a clock whose accumulating failed). */
void flr_tshard_drop_accumulated(struct flr_tshard *t);

/* Reads one row's value, slots and metadata (for tests and, later, recovery).  Returns
 * NULL when a sparse row does not exist; does not create it. */
const float *flr_tshard_peek(const struct flr_tshard *t, uint64_t row, uint64_t *stamp,
                             uint32_t *steps);

/*
 * Moving a shard between servers (a drain).  A row travels as its table key (u64) and
 * flr_tshard_row_bytes() bytes: its floats (value, then optimizer slots), its stamp (u64)
 * and its optimizer step count (u32), little-endian.  flr_tshard_export() writes up to max
 * rows starting at cursor (0 to begin) and sets *next to the cursor to continue from, or
 * UINT64_MAX when all rows are out; the table must not change between calls.
 * flr_tshard_import() writes rows into a table, creating sparse rows; 0, FLR_EKEY_RANGE
 * (a key of another table or outside the shard) or FLR_ENOMEM.
 */
size_t flr_tshard_row_bytes(const struct flr_tshard *t);
uint32_t flr_tshard_export(const struct flr_tshard *t, uint64_t cursor, uint32_t max, void *keys,
                           void *rows, uint64_t *next);
int flr_tshard_import(struct flr_tshard *t, const void *keys, uint32_t n, const void *rows);

/*
 * Copies (recovery flr, docs/recovery.md).  Once flr_store_track_copies() is called, every
 * row has nholders slots (2 bytes each) naming workers that hold a qualified copy of its
 * current version, and a queued bit.  A change by flr_tshard_apply() or
 * flr_tshard_apply_accumulated() (not flr_tshard_import()) clears the row's holders and,
 * unless the row is listed already, appends it to the store's dirty list with since =
 * the change's stamp.  The list is ordered by since as long as callers list rows with
 * non-decreasing stamps.  A row is short while it has fewer holders than need.  Without
 * flr_store_track_copies() (recovery none) none of this costs anything.
 */
#define FLR_STORE_NO_HOLDER 0xffffu

/* One row on the dirty list: its key, the stamp of its oldest change not in enough copies,
 * and where it lives (table index, row index), for the calls below. */
struct flr_dirty {
    uint64_t key;
    uint64_t since;
    uint32_t tix;
    uint32_t ridx;
};

/* Starts tracking copies: nholders (k - 1, at least 1) slots per row, need holders wanted
 * per row (capped at nholders).  Returns 0, FLR_EINVAL (tracking already started with
 * another count) or FLR_ENOMEM (nothing tracked). */
int flr_store_track_copies(struct flr_store *s, uint32_t nholders, uint32_t need);
uint32_t flr_store_need(const struct flr_store *s);

/* Changes how many holders a row needs (min(k - 1, live workers)); when it grows, rows
 * now short are listed with since.  Returns 0 or FLR_ENOMEM (need changed, nothing
 * listed). */
int flr_store_set_need(struct flr_store *s, uint32_t need, uint64_t since);

/* Forgets worker as a holder of every row (FLR_STORE_NO_HOLDER: forgets nobody); rows
 * left short are listed with since (here and below, rows never updated, stamp 0, need
 * no copy and are not listed).  Returns 0 or FLR_ENOMEM (nothing changed). */
int flr_store_drop_holder(struct flr_store *s, uint32_t worker, uint64_t since);

/* Clears every row's holders and lists every row with since (a rebuilt shard).  Returns 0
 * or FLR_ENOMEM (nothing changed). */
int flr_store_mark_all_dirty(struct flr_store *s, uint64_t since);

/* A pull by worker read these rows (keys checked, rows present): on a slot-free table each
 * row gains worker as a holder if it is not one and a slot is free. */
void flr_tshard_hold(struct flr_tshard *t, const void *keys, uint32_t n, uint32_t worker);

/* The oldest listed row that is still short, after dropping (and unqueueing) the rows at
 * the head that are not; NULL when none is.  Valid until the store changes. */
const struct flr_dirty *flr_store_dirty_head(struct flr_store *s);

/* Takes the head row off the list (it may be listed again by its next change). */
void flr_store_dirty_pop(struct flr_store *s);

/* Listed rows that are short (walks the list); bytes the holders and the list take. */
uint64_t flr_store_short_rows(const struct flr_store *s);
size_t flr_store_holder_bytes(const struct flr_store *s);

/* About one row named by d: whether it is short; its holders (out has room for k - 1);
 * adding worker as holder of a copy read at stamp (1 if it was added or is one, 0 when
 * the row changed after stamp); the table it belongs to; and its export (as
 * flr_tshard_export() writes a row) with stamp written as its stamp. */
int flr_store_row_short(const struct flr_store *s, const struct flr_dirty *d);
uint32_t flr_store_row_holders(const struct flr_store *s, const struct flr_dirty *d, uint32_t *out);
/* Sets (on) or clears a row's mark "on the shard's retry list"; returns the old mark. */
int flr_store_row_retry(struct flr_store *s, const struct flr_dirty *d, int on);

int flr_store_row_add_holder(struct flr_store *s, const struct flr_dirty *d, uint32_t worker,
                             uint64_t stamp);
struct flr_tshard *flr_store_table_at(struct flr_store *s, uint32_t tix);
void flr_store_row_export(const struct flr_store *s, const struct flr_dirty *d, uint64_t stamp,
                          void *row_out);

/* The deterministic initial value of a row: fills dim floats. */
void flr_table_init_row(const struct flr_table_spec *t, uint64_t row, float *out);

#endif
