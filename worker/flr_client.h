/*
 * flr_client.h - the flr worker client library: the one header a training program needs.
 *
 * A client joins one job as one worker.  It finds the servers through ZooKeeper, routes
 * every key to the shard and server that own it, splits large requests into batches that
 * are in flight at once, and re-routes transparently when the shard map changes (a server
 * answering WRONG_EPOCH or NOT_OWNER makes the client re-read the map and retry).
 *
 * Keys are 64-bit: table id in the top 16 bits, row in the low 48 (FLR_KEY below).  Key
 * arrays passed to pull and push must be sorted and unique and belong to the one table
 * named in the call.  Values are row-major float32, dim floats per key.
 *
 * Consistency is the job's (BSP, SSP with bound s, or ASP): a pull issued after clock()
 * has been called t times returns once the server may answer under that model, e.g. under
 * BSP once every worker has finished iteration t and its updates are applied.
 *
 * Thread safety: one client is used by one thread at a time.
 */
#ifndef FLR_CLIENT_H
#define FLR_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLR_KEY(table, row) (((uint64_t)(table) << 48) | ((uint64_t)(row)&0xffffffffffffULL))

struct flr_client;
struct flr_op;

struct flr_client_opts {
    const char *zk;       /* ZooKeeper hosts, "127.0.0.1:2181" */
    const char *job;      /* job name */
    uint32_t worker_id;   /* 0 .. num_workers-1 */
    const char *endpoint; /* this worker's advertised endpoint, or NULL */
    int session_ms;       /* ZooKeeper session timeout (default 10000) */
    int timeout_ms;       /* how long an operation may take, retries included (default 120000) */
    int start_timeout_ms; /* how long open() waits for the job to start (default 120000) */
    uint32_t max_keys;    /* keys per message before splitting (default 1 Mi) */
    size_t max_msg;       /* largest message accepted (default 256 MiB) */
    const char *listen;   /* recovery flr: where the worker's recovery endpoint listens
                             (default "tcp://127.0.0.1:0"; endpoint above, if set, is
                             what the worker advertises instead of the URL bound) */
};

/* Fills the defaults above (zk and job stay NULL). */
void flr_client_opts_default(struct flr_client_opts *o);

/*
 * Connects to ZooKeeper, registers the worker, waits for the job to start (the
 * coordinator has assigned every shard), and reads the job spec and shard map.  Returns 0
 * or an FLR_E* code with a one-line reason in why.
 *
 * When the job's recovery is "flr" (docs/recovery.md) the client also keeps copies of the
 * rows it pulls and a log of the pushes it sends, and answers the servers' REPLICATE,
 * MANIFEST_REQ and REBUILD_REQ on its own endpoint (opened here, before the worker
 * registers with it).  Under any other mode it does none of this.
 */
int flr_client_open(struct flr_client **cp, const struct flr_client_opts *o, char *why,
                    size_t whylen);

/* Deregisters and frees. Outstanding async operations must have been waited for. */
void flr_client_close(struct flr_client *c);

/* The job spec as JSON (NUL-terminated, owned by the client). */
const char *flr_client_spec_json(const struct flr_client *c);

/* Table shape: rows (dense) or 0 (sparse), and dim. Returns 0 or FLR_EUNKNOWN_TABLE. */
int flr_client_table(const struct flr_client *c, uint32_t table, uint64_t *rows, uint32_t *dim);

/* Number of workers in the job, and this client's clock (iterations finished). */
uint32_t flr_client_num_workers(const struct flr_client *c);
int64_t flr_client_clock(const struct flr_client *c);

/* Reads n rows of table into vals (n * dim floats). */
int flr_pull(struct flr_client *c, uint32_t table, const uint64_t *keys, uint32_t n, float *vals);

/* Sends n gradients (n * dim floats) for the table's server-side optimizer. */
int flr_push(struct flr_client *c, uint32_t table, const uint64_t *keys, uint32_t n,
             const float *grads);

/* Marks the end of an iteration: waits for this worker's pushes, tells every shard, and
 * advances the clock. */
int flr_clock(struct flr_client *c);

/*
 * Asynchronous variants: start the operation and return at once.  keys, vals and grads
 * must stay valid (and vals unread) until flr_wait() on the returned op, which returns the
 * operation's result and frees the op.
 */
int flr_pull_async(struct flr_client *c, uint32_t table, const uint64_t *keys, uint32_t n,
                   float *vals, struct flr_op **op);
int flr_push_async(struct flr_client *c, uint32_t table, const uint64_t *keys, uint32_t n,
                   const float *grads, struct flr_op **op);
int flr_wait(struct flr_op *op);

/* Publishes a JSON result document under the job (/flr/<job>/results/<worker>). */
int flr_client_publish_result(struct flr_client *c, const char *json);

/* The clock this worker joined at: 0 in a new job; in a running job that a restarted
 * worker rejoins, the iteration it continues from (the client's clock starts there). */
int64_t flr_client_start_clock(const struct flr_client *c);

/* Progress for the job's status (published with the worker's registration about once a
 * second, from flr_clock): clocks in the whole training, samples so far, epoch, loss. */
void flr_client_progress(struct flr_client *c, int64_t clocks_total, int64_t samples,
                         uint32_t epoch, double loss);

/* Publishes the training curve (a JSON array) for the job's status. */
int flr_client_publish_curve(struct flr_client *c, const char *json);

/*
 * Leaves the job without taking anything a rebuild needs (recovery flr; call after
 * publishing the result, before closing).  A finished worker's copies and update log may
 * be the only record of its last updates until the servers have copied its rows to other
 * workers; this asks every shard (LEAVE) until each answers that it no longer needs them,
 * at most timeout_ms (0: not at all), and stays available to a rebuild meanwhile.  Returns
 * 0 (also when the job is over, or under recovery none), FLR_ETIMEOUT or another error.
 */
int flr_client_leave(struct flr_client *c, int timeout_ms);

/* Message of the last error, or "" (owned by the client). */
const char *flr_client_last_error(const struct flr_client *c);

#ifdef __cplusplus
}
#endif

/* Waits until every other worker of the job has published its result (at most timeout_ms).
 * Returns 0, FLR_ETIMEOUT or a ZooKeeper error. */
int flr_client_wait_others(struct flr_client *c, int timeout_ms);

/* What a worker moved and holds: data-path bytes sent and received, its recovery
 * endpoint's bytes in (REPLICATE) and out (rebuild streams), and the memory of its copies
 * and update log (now and at the largest seen at a clock). */
struct flr_client_traffic {
    uint64_t sent, received;
    uint64_t keeper_in, keeper_out;
    uint64_t copy_bytes, log_bytes;
    uint64_t peak_copy_bytes, peak_log_bytes;
};
void flr_client_traffic(struct flr_client *c, struct flr_client_traffic *t);

#endif
