/*
 * keeper.h - the worker's endpoint for lossless recovery (recovery = flr): servers send
 * it the rows they replicate, and a server rebuilding a lost shard asks it for what it
 * keeps (docs/recovery.md).
 *
 *     REPLICATE    -> REPLICATE_ACK   rows stored as copies (the newer copy wins)
 *     MANIFEST_REQ -> MANIFEST        clock, pseq counters, frontier records of a shard
 *     REBUILD_REQ  -> REBUILD_STREAM  a page of a table's copies, or one log entry
 *
 * Requests are answered directly on the nng thread that received them: every answer is a
 * bounded piece of work under the store's mutex, never a wait on anything else.
 */
#ifndef FLR_KEEPER_H
#define FLR_KEEPER_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "common/proto.h"
#include "common/spec.h"
#include "copies.h"

/* Table id of REBUILD_REQ that asks for the update log. */
#define FLR_REBUILD_LOG 0xffffffffu

/* Bytes of keys and rows in one REBUILD_STREAM page, at most. */
#define FLR_KEEPER_PAGE_BYTES ((size_t)16 << 20)

/* What the handler works on; everything is borrowed and must outlive the keeper. */
struct flr_keeper_ctx {
    struct flr_copies *copies;
    const struct flr_job_spec *spec;
    uint32_t worker_id;
    size_t page_bytes; /* FLR_KEEPER_PAGE_BYTES unless a test wants small pages */
    uint32_t max_keys; /* keys per page: the receiving decoder's limit */
};

/*
 * Answers one decoded request.  On success *reply is the encoded answer (an error status
 * with a one-line reason for bad input), owned by the caller.  Returns 0, or FLR_ENOMEM
 * when no answer could be built.  m (and what it points into) is only read.
 */
int flr_keeper_handle(const struct flr_keeper_ctx *ctx, const struct flr_msg *m, nng_msg **reply);

struct flr_keeper;

/* Listens on url ("tcp://127.0.0.1:0" picks a free port) and answers requests of at most
 * max_msg bytes with flr_keeper_handle.  ctx is copied.  Returns 0 or an FLR_E* code with
 * a reason in why. */
int flr_keeper_open(struct flr_keeper **kp, const char *url, const struct flr_keeper_ctx *ctx,
                    size_t max_msg, char *why, size_t whylen);

/* The URL bound (with the port chosen), valid until close. */
const char *flr_keeper_url(const struct flr_keeper *k);

/* Stops answering (waits for handlers running) and frees. */
void flr_keeper_close(struct flr_keeper *k);

/* Bytes the endpoint received (REPLICATE, requests) and sent (answers, rebuild streams). */
void flr_keeper_traffic(const struct flr_keeper *k, uint64_t *in, uint64_t *out);

#endif
