/*
 * transport.h - nng REQ/REP with contexts, many requests in flight.
 *
 * Server side (struct flr_rep): a REP socket listening on one URL with n contexts, each
 * receiving on its own aio.  Every received message is handed to the callback together
 * with a struct flr_req; the callback (or anyone later, from any thread) answers it exactly
 * once with flr_rep_reply().  A context is busy from receive until its reply has been
 * sent, so n bounds the requests a server holds at once (deferred BSP pulls included).
 *
 * Client side (struct flr_conn + struct flr_call): a REQ socket dialed to one URL; each
 * call runs on its own context, so any number may be in flight on one connection.
 * Waiting for several calls at once is done with a struct flr_waitgroup.
 */
#ifndef FLR_TRANSPORT_H
#define FLR_TRANSPORT_H

#include <stddef.h>

#include <nng/nng.h>

#include "proto.h"

struct flr_rep;
struct flr_req;

/* Called on an nng thread with a received message, which it owns from then on.  It must
 * not block; it queues the work and returns. */
typedef void (*flr_rep_fn)(void *arg, struct flr_req *req, nng_msg *msg);

/*
 * Listens on url ("tcp://127.0.0.1:0" picks a free port) with ncontexts contexts and a
 * maximum received message size of max_msg bytes (larger messages are dropped by nng).
 */
int flr_rep_open(struct flr_rep **rp, const char *url, int ncontexts, size_t max_msg, flr_rep_fn fn,
                 void *arg, char *why, size_t whylen);

/* The URL actually bound (with the port the system chose), valid until close. */
const char *flr_rep_url(const struct flr_rep *r);

/* Sends reply (taking it, also on failure) on the request's context and re-arms it.
 * reply == NULL drops the request without answering (the peer times out). */
void flr_rep_reply(struct flr_req *req, nng_msg *reply);

/* Stops receiving, waits for every callback to return, then frees.  Requests not yet
 * answered are dropped. */
void flr_rep_close(struct flr_rep *r);

struct flr_conn;

/* Dials url (non-blocking: nng reconnects in the background). */
int flr_conn_open(struct flr_conn **cp, const char *url, size_t max_msg, char *why, size_t whylen);
void flr_conn_close(struct flr_conn *c);
const char *flr_conn_url(const struct flr_conn *c);

/* Counts outstanding calls; flr_waitgroup_wait() returns when it reaches zero. */
struct flr_waitgroup;
int flr_waitgroup_alloc(struct flr_waitgroup **wgp);
void flr_waitgroup_free(struct flr_waitgroup *wg);
void flr_waitgroup_wait(struct flr_waitgroup *wg);
/* Waits at most timeout_ms; returns 0 when the count reached zero, else FLR_ETIMEOUT. */
int flr_waitgroup_timedwait(struct flr_waitgroup *wg, int timeout_ms);
/* Waits at most timeout_ms for a call to finish that had not when *seen was taken (start
 * with *seen 0); updates *seen.  Returns 0 when one did, else FLR_ETIMEOUT (at once when
 * none is outstanding).  A call's done callback has run before it counts as finished. */
int flr_waitgroup_wait_any(struct flr_waitgroup *wg, uint64_t *seen, int timeout_ms);

/* One request/reply exchange.  Storage belongs to the caller; init once, reuse many times.
 * A call must be finished (flr_call_fini) before the connection it last used is closed. */
struct flr_call {
    nng_aio *aio;
    nng_ctx ctx;
    int have_ctx;
    struct flr_conn *conn;               /* the connection ctx belongs to */
    int phase;                           /* 0 idle, 1 sending, 2 receiving */
    int rv;                              /* 0 or FLR_ETIMEOUT / FLR_ETRANSPORT / FLR_ECLOSED */
    nng_msg *reply;                      /* set when rv == 0; the caller takes it */
    struct flr_waitgroup *wg;            /* signalled on completion, may be NULL */
    void (*done)(struct flr_call *call); /* run on completion on an nng thread, may be NULL */
    void *arg;
};

int flr_call_init(struct flr_call *call);
void flr_call_fini(struct flr_call *call);

/*
 * Sends req (taking it) on conn and waits asynchronously for the reply, for at most
 * timeout_ms.  On completion sets call->rv and call->reply, runs call->done, then signals
 * wg.  A call may be restarted after it completed.
 */
void flr_call_start(struct flr_call *call, struct flr_conn *conn, nng_msg *req, int timeout_ms,
                    struct flr_waitgroup *wg);

/* Aborts a call in flight: it completes soon with an error (FLR_ECLOSED or
 * FLR_ETIMEOUT), as if the peer had not answered.  No effect on an idle call. */
void flr_call_cancel(struct flr_call *call);

/* Encodes m into a new nng message of exactly the encoded size (see flr_msg_encode_into
 * for vals_out, the zero-copy path). Returns 0 or FLR_ENOMEM. */
int flr_msg_to_nng(nng_msg **out, const struct flr_msg *m, void **vals_out);

/* A control request (STATUS, SHUTDOWN) of job from sender, and the text of its reply
 * (*text malloc'd and NUL-terminated, or NULL when text is NULL): 0, or the reply's
 * error status.  For callers that keep such a request in flight themselves. */
int flr_control_request(nng_msg **req, const char *job, int type, uint32_t sender);
int flr_control_reply(const nng_msg *rep, int type, char **text, size_t *len);

/* Asks the flr-server at url for its STATUS document (JSON): *text is malloc'd and
 * NUL-terminated, *len its length.  One connection per call: for tools and the
 * coordinator's polls, not for hot paths. */
int flr_status_fetch(const char *url, const char *job, uint32_t sender, int timeout_ms, char **text,
                     size_t *len);

/* Asks the flr-server at url to stop (SHUTDOWN); 0 once it acknowledged. */
int flr_shutdown_send(const char *url, const char *job, uint32_t sender, int timeout_ms);

/* Convenience: one synchronous exchange. */
int flr_call_sync(struct flr_conn *conn, nng_msg *req, int timeout_ms, nng_msg **reply);

#endif
