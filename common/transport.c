/*
 * transport.c - nng REQ/REP with contexts.
 *
 * Each server context is a small state machine driven by its aio's completions:
 *
 *     RECV --(message)--> HELD --(flr_rep_reply)--> SEND --(sent or failed)--> RECV
 *                           |
 *                           +--(flr_rep_reply(NULL): drop)---------------------> RECV
 *
 * In HELD the context belongs to whoever holds the struct flr_req (the server's owner
 * thread); nng does not touch it.  Each client call is the mirror image:
 *
 *     IDLE --(flr_call_start)--> SENDING --(sent)--> RECEIVING --(reply)--> IDLE
 *                                    |                    |
 *                                    +----(error)---------+-----------------> IDLE
 */
#include "transport.h"

#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/transport/tcp/tcp.h>

#include "err.h"
#include "util.h"

enum { REP_RECV, REP_HELD, REP_SEND };

struct flr_req {
    struct flr_rep *rep;
    nng_ctx ctx;
    nng_aio *aio;
    int state;
};

struct flr_rep {
    nng_socket sock;
    nng_listener listener;
    char url[160];
    int nctx;
    struct flr_req *ctxs;
    flr_rep_fn fn;
    void *arg;
    atomic_int closing;
};

static int tr_map(int nrv)
{
    switch (nrv) {
    case 0:
        return 0;
    case NNG_ETIMEDOUT:
        return FLR_ETIMEOUT;
    case NNG_ECLOSED:
    case NNG_ECANCELED:
        return FLR_ECLOSED;
    case NNG_ENOMEM:
        return FLR_ENOMEM;
    default:
        return FLR_ETRANSPORT;
    }
}

static void rep_cb(void *arg)
{
    struct flr_req *req = arg;
    struct flr_rep *rep = req->rep;
    int rv = nng_aio_result(req->aio);

    if (req->state == REP_SEND) {
        if (rv != 0) {
            nng_msg *m = nng_aio_get_msg(req->aio);
            if (m)
                nng_msg_free(m);
        }
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&rep->closing))
            return;
        req->state = REP_RECV;
        nng_ctx_recv(req->ctx, req->aio);
        return;
    }
    /* REP_RECV */
    if (rv != 0) {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&rep->closing))
            return;
        /* A transient receive error (e.g. an oversized message dropped): keep listening. */
        nng_ctx_recv(req->ctx, req->aio);
        return;
    }
    req->state = REP_HELD;
    rep->fn(rep->arg, req, nng_aio_get_msg(req->aio));
}

int flr_rep_open(struct flr_rep **rp, const char *url, int ncontexts, size_t max_msg, flr_rep_fn fn,
                 void *arg, char *why, size_t whylen)
{
    struct flr_rep *r;
    int nrv, i;

    if (ncontexts < 1 || !fn)
        return FLR_EINVAL;
    if (!(r = calloc(1, sizeof(*r))))
        return FLR_ENOMEM;
    if (!(r->ctxs = calloc((size_t)ncontexts, sizeof(*r->ctxs)))) {
        free(r);
        return FLR_ENOMEM;
    }
    r->fn = fn;
    r->arg = arg;
    if ((nrv = nng_rep0_open(&r->sock)) != 0)
        goto fail_free;
    nng_socket_set_size(r->sock, NNG_OPT_RECVMAXSZ, max_msg);
    if ((nrv = nng_listener_create(&r->listener, r->sock, url)) != 0)
        goto fail_sock;
    nng_listener_set_size(r->listener, NNG_OPT_RECVMAXSZ, max_msg);
    if ((nrv = nng_listener_start(r->listener, 0)) != 0)
        goto fail_sock;
    snprintf(r->url, sizeof(r->url), "%s", url);
    if (strncmp(url, "tcp://", 6) == 0) {
        int port = 0;
        const char *colon = strrchr(url, ':');
        if (nng_listener_get_int(r->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0 && colon)
            snprintf(r->url, sizeof(r->url), "%.*s:%d", (int)(colon - url), url, port);
    }
    for (i = 0; i < ncontexts; i++) {
        struct flr_req *q = &r->ctxs[i];
        q->rep = r;
        if ((nrv = nng_aio_alloc(&q->aio, rep_cb, q)) != 0)
            goto fail_ctxs;
        if ((nrv = nng_ctx_open(&q->ctx, r->sock)) != 0) {
            nng_aio_free(q->aio);
            q->aio = NULL;
            goto fail_ctxs;
        }
        r->nctx = i + 1;
    }
    for (i = 0; i < r->nctx; i++) {
        r->ctxs[i].state = REP_RECV;
        nng_ctx_recv(r->ctxs[i].ctx, r->ctxs[i].aio);
    }
    *rp = r;
    return 0;

fail_ctxs:
    for (i = 0; i < r->nctx; i++) {
        nng_ctx_close(r->ctxs[i].ctx);
        nng_aio_free(r->ctxs[i].aio);
    }
fail_sock:
    nng_close(r->sock);
fail_free:
    if (why)
        snprintf(why, whylen, "cannot listen on %s: %s", url, nng_strerror(nrv));
    free(r->ctxs);
    free(r);
    return nrv == NNG_ENOMEM ? FLR_ENOMEM : FLR_ETRANSPORT;
}

const char *flr_rep_url(const struct flr_rep *r)
{
    return r->url;
}

void flr_rep_reply(struct flr_req *req, nng_msg *reply)
{
    if (atomic_load(&req->rep->closing)) {
        if (reply)
            nng_msg_free(reply);
        return;
    }
    if (!reply) {
        req->state = REP_RECV;
        nng_ctx_recv(req->ctx, req->aio);
        return;
    }
    req->state = REP_SEND;
    nng_aio_set_msg(req->aio, reply);
    nng_ctx_send(req->ctx, req->aio);
}

void flr_rep_close(struct flr_rep *r)
{
    int i;

    if (!r)
        return;
    atomic_store(&r->closing, 1);
    /* Stop every aio first: after this no callback runs and none is running. */
    for (i = 0; i < r->nctx; i++)
        nng_aio_stop(r->ctxs[i].aio);
    for (i = 0; i < r->nctx; i++) {
        nng_msg *m = nng_aio_get_msg(r->ctxs[i].aio);
        if (r->ctxs[i].state == REP_SEND && m)
            nng_msg_free(m);
        nng_ctx_close(r->ctxs[i].ctx);
        nng_aio_free(r->ctxs[i].aio);
    }
    nng_close(r->sock);
    free(r->ctxs);
    free(r);
}

/* ---- client side ------------------------------------------------------------------- */

struct flr_conn {
    nng_socket sock;
    char url[160];
};

int flr_conn_open(struct flr_conn **cp, const char *url, size_t max_msg, char *why, size_t whylen)
{
    struct flr_conn *c;
    int nrv;

    if (!(c = calloc(1, sizeof(*c))))
        return FLR_ENOMEM;
    if ((nrv = nng_req0_open(&c->sock)) != 0)
        goto fail;
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, max_msg);
    /* Never resend on a timer: a push is not idempotent.  Timeouts are the caller's. */
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 20);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 500);
    if ((nrv = nng_dial(c->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        nng_close(c->sock);
        goto fail;
    }
    snprintf(c->url, sizeof(c->url), "%s", url);
    *cp = c;
    return 0;
fail:
    if (why)
        snprintf(why, whylen, "cannot dial %s: %s", url, nng_strerror(nrv));
    free(c);
    return nrv == NNG_ENOMEM ? FLR_ENOMEM : FLR_ETRANSPORT;
}

void flr_conn_close(struct flr_conn *c)
{
    if (!c)
        return;
    nng_close(c->sock);
    free(c);
}

const char *flr_conn_url(const struct flr_conn *c)
{
    return c->url;
}

struct flr_waitgroup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    uint64_t completed; /* calls finished, ever */
};

int flr_waitgroup_alloc(struct flr_waitgroup **wgp)
{
    struct flr_waitgroup *wg = calloc(1, sizeof(*wg));
    if (!wg)
        return FLR_ENOMEM;
    pthread_mutex_init(&wg->mu, NULL);
    pthread_cond_init(&wg->cv, NULL);
    *wgp = wg;
    return 0;
}

void flr_waitgroup_free(struct flr_waitgroup *wg)
{
    if (!wg)
        return;
    pthread_mutex_destroy(&wg->mu);
    pthread_cond_destroy(&wg->cv);
    free(wg);
}

static void wg_add(struct flr_waitgroup *wg, int d)
{
    pthread_mutex_lock(&wg->mu);
    wg->n += d;
    if (d < 0) {
        wg->completed++;
        pthread_cond_broadcast(&wg->cv);
    }
    pthread_mutex_unlock(&wg->mu);
}

void flr_waitgroup_wait(struct flr_waitgroup *wg)
{
    pthread_mutex_lock(&wg->mu);
    while (wg->n > 0)
        pthread_cond_wait(&wg->cv, &wg->mu);
    pthread_mutex_unlock(&wg->mu);
}

int flr_waitgroup_timedwait(struct flr_waitgroup *wg, int timeout_ms)
{
    const struct timespec ts = flr_deadline_ts(timeout_ms);
    int n;

    pthread_mutex_lock(&wg->mu);
    while (wg->n > 0 && pthread_cond_timedwait(&wg->cv, &wg->mu, &ts) == 0)
        ;
    n = wg->n;
    pthread_mutex_unlock(&wg->mu);
    return n > 0 ? FLR_ETIMEOUT : 0;
}

int flr_waitgroup_wait_any(struct flr_waitgroup *wg, uint64_t *seen, int timeout_ms)
{
    const struct timespec ts = flr_deadline_ts(timeout_ms);
    int rv;

    pthread_mutex_lock(&wg->mu);
    while (wg->completed == *seen && wg->n > 0 &&
           pthread_cond_timedwait(&wg->cv, &wg->mu, &ts) == 0)
        ;
    rv = wg->completed != *seen ? 0 : FLR_ETIMEOUT;
    *seen = wg->completed;
    pthread_mutex_unlock(&wg->mu);
    return rv;
}

enum { CALL_IDLE, CALL_SENDING, CALL_RECEIVING };

static void call_complete(struct flr_call *call, int rv)
{
    struct flr_waitgroup *wg = call->wg;

    call->rv = rv;
    call->phase = CALL_IDLE;
    if (call->done)
        call->done(call);
    /* The call may be reused by its owner as soon as the wait group is signalled. */
    if (wg)
        wg_add(wg, -1);
}

static void call_cb(void *arg)
{
    struct flr_call *call = arg;
    int rv = nng_aio_result(call->aio);

    if (call->phase == CALL_SENDING) {
        if (rv != 0) {
            nng_msg *m = nng_aio_get_msg(call->aio);
            if (m)
                nng_msg_free(m);
            call_complete(call, tr_map(rv));
            return;
        }
        call->phase = CALL_RECEIVING;
        nng_ctx_recv(call->ctx, call->aio);
        return;
    }
    if (rv == 0)
        call->reply = nng_aio_get_msg(call->aio);
    call_complete(call, tr_map(rv));
}

void flr_call_cancel(struct flr_call *call)
{
    if (call->aio)
        nng_aio_cancel(call->aio);
}

int flr_call_init(struct flr_call *call)
{
    memset(call, 0, sizeof(*call));
    return nng_aio_alloc(&call->aio, call_cb, call) == 0 ? 0 : FLR_ENOMEM;
}

void flr_call_fini(struct flr_call *call)
{
    if (call->aio) {
        nng_aio_stop(call->aio);
        nng_aio_free(call->aio);
    }
    if (call->have_ctx)
        nng_ctx_close(call->ctx);
    if (call->reply)
        nng_msg_free(call->reply);
    memset(call, 0, sizeof(*call));
}

void flr_call_start(struct flr_call *call, struct flr_conn *conn, nng_msg *req, int timeout_ms,
                    struct flr_waitgroup *wg)
{
    int nrv;

    call->wg = wg;
    call->reply = NULL;
    if (wg)
        wg_add(wg, 1);
    /* A context belongs to one socket: keep it while the call talks to the same
     * connection, replace it when the call moves to another. */
    if (call->have_ctx && call->conn == conn)
        goto send;
    if (call->have_ctx) {
        nng_ctx_close(call->ctx);
        call->have_ctx = 0;
    }
    if ((nrv = nng_ctx_open(&call->ctx, conn->sock)) != 0) {
        nng_msg_free(req);
        call_complete(call, tr_map(nrv));
        return;
    }
    call->have_ctx = 1;
    call->conn = conn;
send:
    call->phase = CALL_SENDING;
    nng_aio_set_timeout(call->aio, timeout_ms > 0 ? timeout_ms : NNG_DURATION_INFINITE);
    nng_aio_set_msg(call->aio, req);
    nng_ctx_send(call->ctx, call->aio);
}

int flr_msg_to_nng(nng_msg **out, const struct flr_msg *m, void **vals_out)
{
    size_t size = flr_msg_encoded_size(m);
    nng_msg *msg;

    /* nng 1.5 zeroes every message body it allocates, whether for nng_msg_alloc(),
     * nng_msg_reserve(), nng_msg_realloc() or nng_msg_append(): one allocation of the final
     * size, encoded into in place, is the least it can cost. */
    if (nng_msg_alloc(&msg, size) != 0)
        return FLR_ENOMEM;
    flr_msg_encode_into(m, nng_msg_body(msg), vals_out);
    *out = msg;
    return 0;
}

int flr_call_sync(struct flr_conn *conn, nng_msg *req, int timeout_ms, nng_msg **reply)
{
    struct flr_call call;
    struct flr_waitgroup *wg;
    int rv;

    if ((rv = flr_waitgroup_alloc(&wg)) != 0) {
        nng_msg_free(req);
        return rv;
    }
    if ((rv = flr_call_init(&call)) != 0) {
        flr_waitgroup_free(wg);
        nng_msg_free(req);
        return rv;
    }
    flr_call_start(&call, conn, req, timeout_ms, wg);
    flr_waitgroup_wait(wg);
    rv = call.rv;
    *reply = call.reply;
    call.reply = NULL;
    flr_call_fini(&call);
    flr_waitgroup_free(wg);
    return rv;
}

/* One control exchange (STATUS or SHUTDOWN) on a connection of its own; the reply's text,
 * when text is not NULL, is returned malloc'd and NUL-terminated. */
int flr_control_request(nng_msg **req, const char *job, int type, uint32_t sender)
{
    struct flr_msg m = {0};

    m.type = type;
    m.job = job;
    m.job_len = (uint32_t)strlen(job);
    m.sender = sender;
    m.request_id = 1;
    m.reason = "";
    return flr_msg_to_nng(req, &m, NULL);
}

int flr_control_reply(const nng_msg *rep, int type, char **text, size_t *len)
{
    struct flr_proto_limits lim;
    struct flr_msg r;
    msgpack_zone zone;
    char why[128];
    int rv;

    if (text) {
        *text = NULL;
        *len = 0;
    }
    flr_proto_limits_default(&lim);
    lim.max_size = (size_t)64 << 20;
    msgpack_zone_init(&zone, 1024);
    rv = flr_msg_decode(&r, nng_msg_body((nng_msg *)rep), nng_msg_len(rep), &lim, &zone, why,
                        sizeof(why));
    if (rv == 0 && (r.type != flr_reply_type(type) || r.status != 0))
        rv = r.status ? r.status : FLR_EBAD_REQUEST;
    if (rv == 0 && text) {
        if (!(*text = malloc((size_t)r.text_len + 1))) {
            rv = FLR_ENOMEM;
        } else {
            memcpy(*text, r.text, r.text_len);
            (*text)[r.text_len] = 0;
            *len = r.text_len;
        }
    }
    msgpack_zone_destroy(&zone);
    return rv;
}

static int tr_control(const char *url, const char *job, int type, uint32_t sender, int timeout_ms,
                      char **text, size_t *len)
{
    struct flr_conn *conn = NULL;
    nng_msg *req, *rep = NULL;
    char why[128];
    int rv;

    if (text) {
        *text = NULL;
        *len = 0;
    }
    if ((rv = flr_conn_open(&conn, url, (size_t)64 << 20, why, sizeof(why))) != 0)
        return rv;
    if ((rv = flr_control_request(&req, job, type, sender)) != 0 ||
        (rv = flr_call_sync(conn, req, timeout_ms, &rep)) != 0) {
        flr_conn_close(conn);
        return rv;
    }
    rv = flr_control_reply(rep, type, text, len);
    nng_msg_free(rep);
    flr_conn_close(conn);
    return rv;
}

int flr_status_fetch(const char *url, const char *job, uint32_t sender, int timeout_ms, char **text,
                     size_t *len)
{
    return tr_control(url, job, FLR_MSG_STATUS, sender, timeout_ms, text, len);
}

int flr_shutdown_send(const char *url, const char *job, uint32_t sender, int timeout_ms)
{
    return tr_control(url, job, FLR_MSG_SHUTDOWN, sender, timeout_ms, NULL, NULL);
}
