/*
 * zk.c - a ZooKeeper session over the multi-threaded C client (libzookeeper_mt).
 *
 * Session state machine (zk->state, guarded by zk->mu; zk->expired mirrors EXPIRED for
 * lock-free readers):
 *
 *     zk_connect()        watcher: CONNECTED            watcher: CONNECTING
 *   -------------> CONNECTING ----------------> CONNECTED ------------------> CONNECTING
 *                      |                           |
 *                      +--- watcher: EXPIRED ------+---> EXPIRED --flr_zk_reopen()--> CONNECTING
 *
 * - zk_connect() (from flr_zk_open and flr_zk_reopen) creates a new client handle and
 *   enters CONNECTING; it returns once the watcher has seen CONNECTED, or closes the handle
 *   again when connect_timeout_ms passes.
 * - The watcher moves CONNECTING -> CONNECTED (and counts the connection in conn_epoch),
 *   CONNECTED -> CONNECTING when the connection drops, and anything -> EXPIRED when the
 *   server reports that the session is gone.  An expired handle never connects again.
 * - flr_zk_reopen() closes the handle (state EXPIRED: there is no session while it runs,
 *   and it stays EXPIRED with no handle if the new session cannot be established) and then
 *   calls zk_connect().  The expired flag is cleared only when the new session connects.
 *
 * Invariants: EXPIRED => expired flag set; CONNECTED => flag clear and session_id != 0 (the
 * flag stays set through the CONNECTING that follows a reopen); each event on the queue was
 * produced by the handle that was current when the watcher ran (events of a handle being
 * closed are dropped, while events already queued stay, in order).
 *
 * Threads.  The client library runs its own I/O and completion threads; the watcher runs
 * on the completion thread, takes zk->mu for a few instructions to copy the event onto the
 * queue and returns.  Synchronous calls may come from any thread: they hold zk->hlock
 * shared for their whole duration, so that flr_zk_reopen() and flr_zk_close(), which hold it
 * exclusive to replace or free the handle, never pull it from under a call in flight.
 * flr_zk_reopen() and flr_zk_close() belong to the owner thread: the one that also takes
 * events with flr_zk_next_event().  No blocking client call is made with zk->mu held, and
 * zookeeper_close() (which joins the completion thread) is never called with zk->mu held,
 * so the watcher can always finish.
 *
 * Events.  A CONNECTED and a DISCONNECTED are queued once per transition (the client's
 * repeated CONNECTING reports while it retries are folded); ZOO_AUTH_FAILED_STATE counts as
 * EXPIRED, since the handle is as unusable; ZOO_NOTWATCHING_EVENT is ignored.  Paths longer
 * than the event's buffer are cut.  The queue grows on demand; for node events it has a
 * bound (see zk_queue_push).
 *
 * Connection loss.  A call that fails with ZCONNECTIONLOSS or ZOPERATIONTIMEOUT waits for
 * the client to reconnect (a new CONNECTED, bounded by about twice the session timeout)
 * and retries, at most ZK_MAX_LOSSES times per call.  Where the lost request may have been
 * applied, the outcome is settled by reading the node back:
 *   - ephemeral create: the node exists with our session as ephemeralOwner -> success;
 *     another owner -> FLR_EZK_EXISTS; absent -> create again;
 *   - ephemeral sequential create: the parent's children named prefix + 10 digits that
 *     belong to our session and hold our data are candidates; the highest is ours.  (If the
 *     same session already held an older such node with the same data and the retried
 *     create never reached the server, that older node is reported: it is ours and equal.)
 *   - persistent create: the node exists with our data -> success, else FLR_EZK_EXISTS;
 *   - persistent sequential create: not retried (a second create would leave a duplicate);
 *     returns FLR_EZK;
 *   - versioned set: FLR_EZK_BADVERSION on the retry, but the node is at version + 1 and
 *     holds our data -> success;
 *   - delete: FLR_EZK_NONODE on the retry -> success (the node is gone, as asked).
 * Reads are simply retried.
 *
 * Logging.  This library code never logs.  The client library itself logs to stderr;
 * flr_zk_open() lowers its process-wide level to errors (zoo_set_debug_level) once per
 * process.  A program that wants those lines elsewhere calls zoo_set_log_stream() itself.
 */
/* zk.h uses size_t without including its definition. */
#include <stddef.h>

#include "zk.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

/* The synchronous API of the multi-threaded client is declared only under THREADED. */
#ifndef THREADED
#define THREADED
#endif
#include <zookeeper/zookeeper.h>

#include "err.h"
#include "util.h"

#define ZK_MAX_LOSSES     5    /* connection losses tolerated by one call */
#define ZK_MAX_ROUNDS     16   /* create/resolve rounds of one create; get regrowths */
#define ZK_QUEUE_INIT     32   /* initial event queue capacity */
#define ZK_QUEUE_MAX      4096 /* node events held at most (about 1 MB) */
#define ZK_GET_GUESS      4096 /* first buffer size for flr_zk_get */
#define ZK_SEQ_DIGITS     10   /* width of a sequence suffix */
#define ZK_TREE_RETRIES   8    /* delete_tree passes when children keep appearing */
#define ZK_TREE_MAX_DEPTH 64   /* recursion bound for delete_tree */

enum zk_state { ZK_CONNECTING = 1, ZK_CONNECTED = 2, ZK_EXPIRED = 3 };

/* Per-handle watcher context: which wrapper, and which generation of handle. */
struct zk_ctx {
    struct flr_zk *zk;
    unsigned gen;
};

struct flr_zk {
    /* The handle.  Held shared by synchronous calls, exclusive by reopen and close. */
    pthread_rwlock_t hlock;
    zhandle_t *zh;      /* NULL after a failed reopen */
    struct zk_ctx *ctx; /* watcher context of zh */
    char *hosts;
    int session_ms; /* requested session timeout */

    /* Session state and event queue, guarded by mu; cv signals both. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned gen;        /* generation of the current handle */
    enum zk_state state; /* see the state machine above */
    uint64_t conn_epoch; /* number of CONNECTED transitions so far */
    struct flr_zk_event *q;
    size_t qcap, qhead, qlen;
    int qoverflow; /* node events were dropped; a CONNECTED stands in for them */

    /* Lock-free mirrors for readers on hot paths. */
    atomic_int expired;
    _Atomic int64_t session_id;
    atomic_int session_timeout;

    /* Lease (see flr_zk_lease_until): monotonic ms. */
    _Atomic int64_t lease_until;
    _Atomic int64_t lease_sent;
    atomic_int lease_pending;
};

/* Per-call retry bookkeeping. */
struct zk_try {
    int64_t deadline; /* when waiting for a reconnection stops (monotonic ms) */
    uint64_t epoch;   /* conn_epoch the last attempt was made under */
    int losses;       /* connection losses seen so far */
    int lost;         /* a request of this call may have been lost in flight */
};

static pthread_once_t zk_log_once = PTHREAD_ONCE_INIT;

static void zk_log_setup(void)
{
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
}

/* --- state and events ------------------------------------------------------------------ */

#ifndef NDEBUG
/* Checks the state machine's invariants; mu held. */
static void zk_assert_state(struct flr_zk *zk)
{
    assert(zk->state == ZK_CONNECTING || zk->state == ZK_CONNECTED || zk->state == ZK_EXPIRED);
    assert(zk->state != ZK_EXPIRED || atomic_load(&zk->expired));
    assert(zk->state != ZK_CONNECTED ||
           (!atomic_load(&zk->expired) && atomic_load(&zk->session_id) != 0));
    assert(zk->qlen <= zk->qcap);
}
#else
#define zk_assert_state(zk) ((void)0)
#endif

static void zk_copy_path(char *dst, size_t dstlen, const char *src)
{
    size_t n = src ? strlen(src) : 0;

    if (n >= dstlen)
        n = dstlen - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = 0;
}

/* Appends an event, growing the ring when it is full; mu held.  Returns -1 when memory
 * runs out (the event is dropped). */
static int zk_queue_put(struct flr_zk *zk, int kind, const char *path)
{
    struct flr_zk_event *ev;

    if (zk->qlen == zk->qcap) {
        size_t ncap = zk->qcap ? zk->qcap * 2 : ZK_QUEUE_INIT, i;
        struct flr_zk_event *nq = malloc(ncap * sizeof(*nq));

        if (!nq)
            return -1;
        for (i = 0; i < zk->qlen; i++)
            nq[i] = zk->q[(zk->qhead + i) % zk->qcap];
        free(zk->q);
        zk->q = nq;
        zk->qcap = ncap;
        zk->qhead = 0;
    }
    ev = &zk->q[(zk->qhead + zk->qlen) % zk->qcap];
    ev->kind = kind;
    zk_copy_path(ev->path, sizeof(ev->path), path);
    zk->qlen++;
    return 0;
}

/*
 * Queues an event; mu held.  Session events always go in.  Node events stop at
 * ZK_QUEUE_MAX: the ones after that are dropped and a single FLR_ZK_EV_CONNECTED is queued
 * in their place, which tells the owner to re-read its state and re-arm its watches, the
 * same recovery as after a disconnection.  The owner loses no information it cannot read
 * back, and a stalled owner cannot make the watcher allocate without bound.
 */
static void zk_queue_push(struct flr_zk *zk, int kind, const char *path)
{
    if (kind >= FLR_ZK_EV_CREATED && zk->qlen >= ZK_QUEUE_MAX) {
        if (!zk->qoverflow && zk_queue_put(zk, FLR_ZK_EV_CONNECTED, "") == 0)
            zk->qoverflow = 1;
        return;
    }
    (void)zk_queue_put(zk, kind, path);
}

/* The global watcher: translate, copy onto the queue, wake the waiters, return. */
static void zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *wctx)
{
    struct zk_ctx *ctx = wctx;
    struct flr_zk *zk;
    int kind;

    if (!ctx)
        return;
    zk = ctx->zk;
    if (type == ZOO_SESSION_EVENT) {
        if (state == ZOO_CONNECTED_STATE)
            kind = FLR_ZK_EV_CONNECTED;
        else if (state == ZOO_CONNECTING_STATE)
            kind = FLR_ZK_EV_DISCONNECTED;
        else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE)
            kind = FLR_ZK_EV_EXPIRED; /* both leave the handle unusable for good */
        else
            return;
    } else if (type == ZOO_CREATED_EVENT) {
        kind = FLR_ZK_EV_CREATED;
    } else if (type == ZOO_DELETED_EVENT) {
        kind = FLR_ZK_EV_DELETED;
    } else if (type == ZOO_CHANGED_EVENT) {
        kind = FLR_ZK_EV_CHANGED;
    } else if (type == ZOO_CHILD_EVENT) {
        kind = FLR_ZK_EV_CHILD;
    } else {
        return; /* ZOO_NOTWATCHING_EVENT and anything newer */
    }

    pthread_mutex_lock(&zk->mu);
    if (ctx->gen != zk->gen || zk->state == ZK_EXPIRED) {
        /* A handle being replaced or closed, or one that already expired. */
        pthread_mutex_unlock(&zk->mu);
        return;
    }
    switch (kind) {
    case FLR_ZK_EV_CONNECTED:
        if (zk->state == ZK_CONNECTED)
            goto out; /* no transition */
        /* Both are plain reads of fields the client set before reporting the state. */
        atomic_store(&zk->session_id, zoo_client_id(zh)->client_id);
        atomic_store(&zk->session_timeout, zoo_recv_timeout(zh));
        atomic_store(&zk->expired, 0);
        zk->state = ZK_CONNECTED;
        zk->conn_epoch++;
        break;
    case FLR_ZK_EV_DISCONNECTED:
        if (zk->state != ZK_CONNECTED)
            goto out; /* another failed attempt while already disconnected */
        zk->state = ZK_CONNECTING;
        break;
    case FLR_ZK_EV_EXPIRED:
        atomic_store(&zk->session_id, 0);
        atomic_store(&zk->expired, 1);
        zk->state = ZK_EXPIRED;
        break;
    default:
        break;
    }
    zk_queue_push(zk, kind, kind >= FLR_ZK_EV_CREATED ? path : "");
    pthread_cond_broadcast(&zk->cv);
out:
    zk_assert_state(zk);
    pthread_mutex_unlock(&zk->mu);
}

/* Waits on cv until deadline (monotonic ms; < 0: forever); mu held.  Returns ETIMEDOUT
 * once the deadline has passed. */
static int zk_wait_until(struct flr_zk *zk, int64_t deadline)
{
    struct timespec ts;

    if (deadline < 0)
        return pthread_cond_wait(&zk->cv, &zk->mu);
    if (flr_now_ms() >= deadline)
        return ETIMEDOUT;
    ts.tv_sec = (time_t)(deadline / 1000);
    ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
    return pthread_cond_timedwait(&zk->cv, &zk->mu, &ts);
}

/* --- lease ------------------------------------------------------------------------------ */

/*
 * The server expires a session once it has heard nothing from it for the session timeout.
 * A request that succeeded and was sent at time t (our monotonic clock) was heard at or
 * after t, so the session lives at least until t + timeout on the server's clock.  The
 * lease keeps a margin of a fifth of the timeout against clocks that run at different
 * rates and against the time the watcher of a lost node needs to act.
 */
static void zk_lease_extend(struct flr_zk *zk, int64_t sent_ms)
{
    int to = atomic_load(&zk->session_timeout);
    int64_t until, cur;

    if (to <= 0)
        return;
    until = sent_ms + (int64_t)to * 4 / 5;
    cur = atomic_load(&zk->lease_until);
    while (until > cur && !atomic_compare_exchange_weak(&zk->lease_until, &cur, until))
        ;
}

static void zk_lease_done(int rc, const struct Stat *st, const void *data)
{
    struct flr_zk *zk = (struct flr_zk *)(uintptr_t)data;

    (void)st;
    if (rc == ZOK || rc == ZNONODE)
        zk_lease_extend(zk, atomic_load(&zk->lease_sent));
    atomic_store(&zk->lease_pending, 0);
}

/*
 * Starts a new handle and waits for its session (the CONNECTING -> CONNECTED transition);
 * hlock held exclusive or the wrapper not yet shared.  On failure no handle is left, the
 * state is EXPIRED and the expired flag set.
 */
static int zk_connect(struct flr_zk *zk, int connect_timeout_ms, char *why, size_t whylen)
{
    struct zk_ctx *ctx;
    zhandle_t *zh;
    int64_t deadline = flr_now_ms() + (connect_timeout_ms > 0 ? connect_timeout_ms : 0);
    int connected, err;

    if (!(ctx = malloc(sizeof(*ctx)))) {
        flr_why(why, whylen, "out of memory");
        return FLR_ENOMEM;
    }
    pthread_mutex_lock(&zk->mu);
    ctx->zk = zk;
    ctx->gen = ++zk->gen;
    zk->state = ZK_CONNECTING;
    atomic_store(&zk->session_id, 0);
    atomic_store(&zk->session_timeout, 0);
    /* The flag stays set until the session is up: there is none to serve from before. */
    pthread_mutex_unlock(&zk->mu);

    errno = 0;
    atomic_store(&zk->lease_until, 0);
    atomic_store(&zk->lease_sent, flr_now_ms());
    zh = zookeeper_init(zk->hosts, zk_watcher, zk->session_ms, NULL, ctx, 0);
    if (!zh) {
        err = errno;
        free(ctx);
        pthread_mutex_lock(&zk->mu);
        zk->gen++;
        zk->state = ZK_EXPIRED;
        atomic_store(&zk->expired, 1);
        pthread_mutex_unlock(&zk->mu);
        flr_why(why, whylen, "could not start a ZooKeeper client for %s: %s", zk->hosts,
                err ? strerror(err) : "bad host list");
        return FLR_EZK;
    }

    pthread_mutex_lock(&zk->mu);
    while (zk->state == ZK_CONNECTING && zk_wait_until(zk, deadline) != ETIMEDOUT)
        ;
    connected = zk->state == ZK_CONNECTED;
    if (connected) {
        zk->zh = zh;
        zk->ctx = ctx;
        /* The server heard from the new session after we started connecting. */
        zk_lease_extend(zk, atomic_load(&zk->lease_sent));
    } else {
        zk->gen++; /* the watcher ignores this handle from now on */
        zk->state = ZK_EXPIRED;
        atomic_store(&zk->session_id, 0);
        atomic_store(&zk->expired, 1);
    }
    zk_assert_state(zk);
    pthread_mutex_unlock(&zk->mu);

    if (!connected) {
        zookeeper_close(zh);
        free(ctx);
        flr_why(why, whylen, "could not connect to ZooKeeper at %s within %d ms", zk->hosts,
                connect_timeout_ms);
        return FLR_ETIMEOUT;
    }
    return 0;
}

/* Closes the current handle, if any; hlock held exclusive. */
static void zk_disconnect(struct flr_zk *zk)
{
    atomic_store(&zk->lease_until, 0);
    pthread_mutex_lock(&zk->mu);
    zk->gen++;
    zk->state = ZK_EXPIRED;
    atomic_store(&zk->session_id, 0);
    atomic_store(&zk->expired, 1);
    pthread_mutex_unlock(&zk->mu);
    if (zk->zh)
        zookeeper_close(zk->zh);
    free(zk->ctx);
    zk->zh = NULL;
    zk->ctx = NULL;
}

/* --- retries ----------------------------------------------------------------------------- */

static int zk_err(int rc)
{
    if (rc == ZOK)
        return 0;
    if (rc == ZNONODE)
        return FLR_EZK_NONODE;
    if (rc == ZNODEEXISTS)
        return FLR_EZK_EXISTS;
    if (rc == ZBADVERSION)
        return FLR_EZK_BADVERSION;
    if (rc == ZSESSIONEXPIRED || rc == ZINVALIDSTATE)
        return FLR_EZK_EXPIRED;
    return FLR_EZK;
}

static int zk_is_loss(int rc)
{
    return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT;
}

static void zk_try_init(struct flr_zk *zk, struct zk_try *t)
{
    int to = atomic_load(&zk->session_timeout);

    if (to <= 0)
        to = zk->session_ms > 0 ? zk->session_ms : 10000;
    t->deadline = flr_now_ms() + 2 * (int64_t)to + 1000;
    t->losses = 0;
    t->lost = 0;
    pthread_mutex_lock(&zk->mu);
    t->epoch = zk->conn_epoch;
    pthread_mutex_unlock(&zk->mu);
}

/*
 * After a connection loss: waits until the client has connected again since the failed
 * attempt (or the session expired, or the call's deadline passed).  Returns 0 to retry,
 * FLR_EZK_EXPIRED, or FLR_EZK when the connection did not come back in time.
 */
static int zk_reconnected(struct flr_zk *zk, struct zk_try *t)
{
    int rv = 0;

    t->lost = 1;
    if (++t->losses > ZK_MAX_LOSSES)
        return FLR_EZK;
    pthread_mutex_lock(&zk->mu);
    while (zk->state != ZK_EXPIRED && zk->conn_epoch == t->epoch &&
           zk_wait_until(zk, t->deadline) != ETIMEDOUT)
        ;
    if (zk->state == ZK_EXPIRED)
        rv = FLR_EZK_EXPIRED;
    else if (zk->state != ZK_CONNECTED)
        rv = FLR_EZK;
    t->epoch = zk->conn_epoch;
    pthread_mutex_unlock(&zk->mu);
    return rv;
}

/* Takes the handle for a call: hlock shared.  Returns FLR_EZK_EXPIRED (lock released)
 * when a failed reopen left no handle. */
static int zk_enter(struct flr_zk *zk)
{
    pthread_rwlock_rdlock(&zk->hlock);
    if (!zk->zh) {
        pthread_rwlock_unlock(&zk->hlock);
        return FLR_EZK_EXPIRED;
    }
    return 0;
}

static void zk_leave(struct flr_zk *zk)
{
    pthread_rwlock_unlock(&zk->hlock);
}

/* --- calls, hlock held shared ------------------------------------------------------------ */

/* Reads a node into a malloc'd, NUL-terminated buffer. */
static int zk_get_held(struct flr_zk *zk, struct zk_try *t, const char *path, int watch,
                       char **data, int *len, struct Stat *st)
{
    int cap = ZK_GET_GUESS, n, rc, round;
    char *buf = malloc((size_t)cap + 1), *nbuf;

    if (!buf)
        return FLR_ENOMEM;
    for (round = 0; round < ZK_MAX_ROUNDS;) {
        n = cap;
        rc = zoo_get(zk->zh, path, watch, buf, &n, st);
        if (zk_is_loss(rc)) {
            int rv = zk_reconnected(zk, t);
            if (rv) {
                free(buf);
                return rv;
            }
            continue;
        }
        if (rc != ZOK) {
            free(buf);
            return zk_err(rc);
        }
        if (st->dataLength <= cap) {
            if (n < 0) /* a node without data */
                n = 0;
            buf[n] = 0;
            *data = buf;
            *len = n;
            return 0;
        }
        /* The node outgrew the buffer: size it from the Stat and read again. */
        cap = st->dataLength;
        if (!(nbuf = realloc(buf, (size_t)cap + 1))) {
            free(buf);
            return FLR_ENOMEM;
        }
        buf = nbuf;
        round++;
    }
    free(buf);
    return FLR_EZK; /* the node kept growing between reads */
}

/* Whether a node holds exactly data (NULL or len <= 0: empty). */
static int zk_same_data(const char *got, int gotlen, const void *data, int len)
{
    if (!data || len < 0)
        len = 0;
    return gotlen == len && (len == 0 || memcmp(got, data, (size_t)len) == 0);
}

enum zk_verdict { ZK_ABSENT = 0, ZK_OURS = 1, ZK_THEIRS = 2 };

/*
 * After a lost create of a non-sequential node, decides whose node path is: an ephemeral
 * is ours when our session owns it, a persistent node when it holds our data.
 */
static int zk_check_created(struct flr_zk *zk, struct zk_try *t, const char *path, const void *data,
                            int len, int ephemeral, int *verdict)
{
    struct Stat st;
    char *got;
    int gotlen, rc, rv;

    if (ephemeral) {
        for (;;) {
            rc = zoo_exists(zk->zh, path, 0, &st);
            if (!zk_is_loss(rc))
                break;
            if ((rv = zk_reconnected(zk, t)) != 0)
                return rv;
        }
        if (rc == ZNONODE) {
            *verdict = ZK_ABSENT;
            return 0;
        }
        if (rc != ZOK)
            return zk_err(rc);
        *verdict = st.ephemeralOwner == atomic_load(&zk->session_id) ? ZK_OURS : ZK_THEIRS;
        return 0;
    }
    rv = zk_get_held(zk, t, path, 0, &got, &gotlen, &st);
    if (rv == FLR_EZK_NONODE) {
        *verdict = ZK_ABSENT;
        return 0;
    }
    if (rv)
        return rv;
    *verdict = st.ephemeralOwner == 0 && zk_same_data(got, gotlen, data, len) ? ZK_OURS : ZK_THEIRS;
    free(got);
    return 0;
}

static int zk_children_held(struct flr_zk *zk, struct zk_try *t, const char *path, int watch,
                            char ***names, int *n);

/* Joins a parent path and a child name into a malloc'd path. */
static char *zk_join(const char *parent, const char *child)
{
    size_t pl = strlen(parent), cl = strlen(child);
    char *p = malloc(pl + cl + 2);

    if (!p)
        return NULL;
    memcpy(p, parent, pl);
    if (pl == 0 || parent[pl - 1] != '/')
        p[pl++] = '/';
    memcpy(p + pl, child, cl + 1);
    return p;
}

/*
 * After a lost ephemeral sequential create of path ("/dir/prefix"), looks for the node it
 * may have made: among the children prefix + ZK_SEQ_DIGITS digits, the highest one that our
 * session owns and that holds our data.  Sets *found (malloc'd full path) or leaves it NULL.
 */
static int zk_find_sequential(struct flr_zk *zk, struct zk_try *t, const char *path,
                              const void *data, int len, char **found)
{
    const char *slash = strrchr(path, '/');
    const char *prefix = slash ? slash + 1 : path;
    size_t plen = strlen(prefix);
    char *parent, **names = NULL, *best = NULL;
    int n = 0, i, rv;

    *found = NULL;
    if (!slash)
        return FLR_EINVAL;
    if (!(parent = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path))))
        return FLR_ENOMEM;
    rv = zk_children_held(zk, t, parent, 0, &names, &n);
    if (rv == FLR_EZK_NONODE) {
        rv = 0; /* no parent, so nothing was created; the retry reports it */
        goto out_parent;
    }
    if (rv)
        goto out_parent;
    /* names are sorted and the suffixes have a fixed width: scan from the highest. */
    for (i = n - 1; i >= 0 && !best; i--) {
        const char *s = names[i];
        struct Stat st;
        char *full, *got;
        int gotlen, k;

        if (strncmp(s, prefix, plen) != 0 || strlen(s + plen) != ZK_SEQ_DIGITS)
            continue;
        for (k = 0; k < ZK_SEQ_DIGITS && s[plen + k] >= '0' && s[plen + k] <= '9'; k++)
            ;
        if (k != ZK_SEQ_DIGITS)
            continue;
        if (!(full = zk_join(parent, s))) {
            rv = FLR_ENOMEM;
            break;
        }
        rv = zk_get_held(zk, t, full, 0, &got, &gotlen, &st);
        if (rv == FLR_EZK_NONODE) {
            free(full);
            rv = 0;
            continue;
        }
        if (rv) {
            free(full);
            break;
        }
        if (st.ephemeralOwner == atomic_load(&zk->session_id) &&
            zk_same_data(got, gotlen, data, len))
            best = full;
        else
            free(full);
        free(got);
    }
    flr_zk_free_names(names, n);
    *found = best;
out_parent:
    free(parent);
    return rv;
}

static int zk_create_held(struct flr_zk *zk, struct zk_try *t, const char *path, const void *data,
                          int len, int flags, char *created, int created_len)
{
    int eph = (flags & FLR_ZK_EPHEMERAL) != 0, seq = (flags & FLR_ZK_SEQUENCE) != 0;
    int mode = eph ? (seq ? ZOO_EPHEMERAL_SEQUENTIAL : ZOO_EPHEMERAL)
                   : (seq ? ZOO_PERSISTENT_SEQUENTIAL : ZOO_PERSISTENT);
    int namelen = (int)strlen(path) + ZK_SEQ_DIGITS + 2, rc, rv = FLR_EZK, round, verdict;
    char *name = malloc((size_t)namelen), *found = NULL;

    if (!name)
        return FLR_ENOMEM;
    if (!data || len < 0) {
        data = NULL;
        len = -1;
    }
    for (round = 0; round < ZK_MAX_ROUNDS; round++) {
        rc = zoo_create(zk->zh, path, data, len, &ZOO_OPEN_ACL_UNSAFE, mode, name, namelen);
        if (rc == ZOK) {
            rv = 0;
            break;
        }
        if (rc == ZNODEEXISTS && t->lost && !seq) {
            /* Possibly our own earlier attempt: settle it below. */
        } else if (!zk_is_loss(rc)) {
            rv = zk_err(rc);
            break;
        } else if ((rv = zk_reconnected(zk, t)) != 0) {
            break;
        } else if (seq && !eph) {
            rv = FLR_EZK; /* cannot tell whether it exists; never make a duplicate */
            break;
        }
        if (seq) {
            if ((rv = zk_find_sequential(zk, t, path, data, len, &found)) != 0)
                break;
            if (found) {
                zk_copy_path(name, (size_t)namelen, found);
                free(found);
                break;
            }
            continue;
        }
        if ((rv = zk_check_created(zk, t, path, data, len, eph, &verdict)) != 0)
            break;
        if (verdict == ZK_OURS) {
            zk_copy_path(name, (size_t)namelen, path);
            break;
        }
        if (verdict == ZK_THEIRS) {
            rv = FLR_EZK_EXISTS;
            break;
        }
        rv = FLR_EZK; /* absent: create again, unless the rounds run out */
    }
    if (rv == 0 && created && created_len > 0)
        zk_copy_path(created, (size_t)created_len, name);
    free(name);
    return rv;
}

static int zk_names_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int zk_children_held(struct flr_zk *zk, struct zk_try *t, const char *path, int watch,
                            char ***names, int *n)
{
    struct String_vector sv = {0, NULL};
    char **out;
    int rc, rv, i;

    for (;;) {
        rc = zoo_get_children(zk->zh, path, watch, &sv);
        if (!zk_is_loss(rc))
            break;
        if ((rv = zk_reconnected(zk, t)) != 0)
            return rv;
    }
    if (rc != ZOK)
        return zk_err(rc);
    /* One spare slot: the array is also NULL-terminated. */
    if (!(out = calloc((size_t)sv.count + 1, sizeof(*out)))) {
        deallocate_String_vector(&sv);
        return FLR_ENOMEM;
    }
    for (i = 0; i < sv.count; i++) {
        if (!(out[i] = strdup(sv.data[i]))) {
            flr_zk_free_names(out, i);
            deallocate_String_vector(&sv);
            return FLR_ENOMEM;
        }
    }
    qsort(out, (size_t)sv.count, sizeof(*out), zk_names_cmp);
    *names = out;
    *n = sv.count;
    deallocate_String_vector(&sv);
    return 0;
}

static int zk_delete_held(struct flr_zk *zk, struct zk_try *t, const char *path, int32_t version)
{
    int rc, rv;

    for (;;) {
        rc = zoo_delete(zk->zh, path, version);
        if (!zk_is_loss(rc))
            break;
        if ((rv = zk_reconnected(zk, t)) != 0)
            return rv;
    }
    if (rc == ZNONODE && t->lost)
        return 0; /* our lost attempt went through */
    return zk_err(rc);
}

static int zk_delete_tree_held(struct flr_zk *zk, const char *path, int depth)
{
    struct zk_try t;
    char **names, *child;
    int n, i, pass, rv;

    if (depth > ZK_TREE_MAX_DEPTH)
        return FLR_EZK;
    for (pass = 0; pass < ZK_TREE_RETRIES; pass++) {
        zk_try_init(zk, &t);
        rv = zk_children_held(zk, &t, path, 0, &names, &n);
        if (rv == FLR_EZK_NONODE)
            return 0;
        if (rv)
            return rv;
        for (i = 0, rv = 0; i < n && !rv; i++) {
            if (!(child = zk_join(path, names[i])))
                rv = FLR_ENOMEM;
            else
                rv = zk_delete_tree_held(zk, child, depth + 1);
            free(child);
        }
        flr_zk_free_names(names, n);
        if (rv)
            return rv;
        zk_try_init(zk, &t);
        rv = zk_delete_held(zk, &t, path, -1);
        if (rv == 0 || rv == FLR_EZK_NONODE)
            return 0;
        /* ZNOTEMPTY: a child appeared meanwhile; take another pass. */
        if (rv != FLR_EZK)
            return rv;
    }
    return FLR_EZK;
}

/* --- public interface -------------------------------------------------------------------- */

int flr_zk_open(struct flr_zk **zp, const char *hosts, int session_ms, int connect_timeout_ms,
                char *why, size_t whylen)
{
    struct flr_zk *zk;
    pthread_condattr_t ca;
    pthread_rwlockattr_t ra;
    int rv;

    if (!zp || !hosts || !*hosts || session_ms <= 0) {
        flr_why(why, whylen, "bad ZooKeeper arguments");
        return FLR_EINVAL;
    }
    *zp = NULL;
    pthread_once(&zk_log_once, zk_log_setup);
    if (!(zk = calloc(1, sizeof(*zk))))
        goto fail_nomem;
    if (!(zk->hosts = strdup(hosts)))
        goto fail_zk;
    if (!(zk->q = malloc(ZK_QUEUE_INIT * sizeof(*zk->q))))
        goto fail_hosts;
    zk->qcap = ZK_QUEUE_INIT;
    zk->session_ms = session_ms;
    zk->state = ZK_EXPIRED;
    atomic_init(&zk->expired, 1);
    atomic_init(&zk->session_id, 0);
    atomic_init(&zk->session_timeout, 0);

    /* Prefer the writer, so that a stream of calls cannot starve a reopen. */
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    rv = pthread_rwlock_init(&zk->hlock, &ra);
    pthread_rwlockattr_destroy(&ra);
    if (rv)
        goto fail_q;
    if (pthread_mutex_init(&zk->mu, NULL))
        goto fail_hlock;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rv = pthread_cond_init(&zk->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rv)
        goto fail_mu;

    if ((rv = zk_connect(zk, connect_timeout_ms, why, whylen)) != 0)
        goto fail_cv;
    *zp = zk;
    return 0;

fail_cv:
    pthread_cond_destroy(&zk->cv);
    pthread_mutex_destroy(&zk->mu);
    pthread_rwlock_destroy(&zk->hlock);
    free(zk->q);
    free(zk->hosts);
    free(zk);
    return rv;
fail_mu:
    pthread_mutex_destroy(&zk->mu);
fail_hlock:
    pthread_rwlock_destroy(&zk->hlock);
fail_q:
    free(zk->q);
fail_hosts:
    free(zk->hosts);
fail_zk:
    free(zk);
fail_nomem:
    flr_why(why, whylen, "out of memory");
    return FLR_ENOMEM;
}

void flr_zk_close(struct flr_zk *zk)
{
    if (!zk)
        return;
    pthread_rwlock_wrlock(&zk->hlock);
    zk_disconnect(zk);
    pthread_rwlock_unlock(&zk->hlock);
    pthread_cond_destroy(&zk->cv);
    pthread_mutex_destroy(&zk->mu);
    pthread_rwlock_destroy(&zk->hlock);
    free(zk->q);
    free(zk->hosts);
    free(zk);
}

int flr_zk_reopen(struct flr_zk *zk, int connect_timeout_ms, char *why, size_t whylen)
{
    int rv;

    if (!zk)
        return FLR_EINVAL;
    pthread_rwlock_wrlock(&zk->hlock);
    zk_disconnect(zk);
    rv = zk_connect(zk, connect_timeout_ms, why, whylen);
    pthread_rwlock_unlock(&zk->hlock);
    return rv;
}

int flr_zk_expired(const struct flr_zk *zk)
{
    return atomic_load(&((struct flr_zk *)zk)->expired) != 0;
}

int64_t flr_zk_session_id(const struct flr_zk *zk)
{
    return atomic_load(&((struct flr_zk *)zk)->session_id);
}

int flr_zk_session_timeout(const struct flr_zk *zk)
{
    return atomic_load(&((struct flr_zk *)zk)->session_timeout);
}

int flr_zk_lease_renew(struct flr_zk *zk)
{
    int rc;

    if (atomic_exchange(&zk->lease_pending, 1))
        return 0; /* one renewal in flight is enough */
    if (zk_enter(zk) != 0) {
        atomic_store(&zk->lease_pending, 0);
        return FLR_EZK_EXPIRED;
    }
    atomic_store(&zk->lease_sent, flr_now_ms());
    rc = zoo_aexists(zk->zh, "/", 0, zk_lease_done, zk);
    zk_leave(zk);
    if (rc != ZOK) {
        atomic_store(&zk->lease_pending, 0);
        return zk_err(rc);
    }
    return 0;
}

int64_t flr_zk_lease_until(const struct flr_zk *zk)
{
    return atomic_load(&((struct flr_zk *)zk)->lease_until);
}

int flr_zk_lease_confirm(struct flr_zk *zk, int timeout_ms)
{
    const int64_t deadline = flr_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);

    for (;;) {
        if (flr_zk_expired(zk))
            return FLR_EZK_EXPIRED;
        if (flr_now_ms() < atomic_load(&zk->lease_until))
            return 0;
        if (flr_now_ms() >= deadline)
            return FLR_ETIMEOUT;
        /* A renewal sent before the pause would extend the lease only from its old send
         * time; one in flight is let finish and another is sent. */
        if (flr_zk_lease_renew(zk) == FLR_EZK_EXPIRED)
            return FLR_EZK_EXPIRED;
        usleep(2000);
    }
}

/* Waits up to timeout_ms (< 0: without a bound) for the queue to hold an event; mu held.
 * Returns whether it does. */
static int zk_wait_queued(struct flr_zk *zk, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : flr_now_ms() + timeout_ms;

    while (zk->qlen == 0 && zk_wait_until(zk, deadline) != ETIMEDOUT)
        ;
    return zk->qlen > 0;
}

int flr_zk_next_event(struct flr_zk *zk, struct flr_zk_event *ev, int timeout_ms)
{
    int rv = FLR_ETIMEOUT;

    pthread_mutex_lock(&zk->mu);
    if (zk_wait_queued(zk, timeout_ms)) {
        *ev = zk->q[zk->qhead];
        zk->qhead = (zk->qhead + 1) % zk->qcap;
        zk->qlen--;
        if (zk->qlen <= ZK_QUEUE_MAX / 2)
            zk->qoverflow = 0;
        rv = 0;
    }
    pthread_mutex_unlock(&zk->mu);
    return rv;
}

int flr_zk_wait_event(struct flr_zk *zk, int timeout_ms)
{
    int rv;

    pthread_mutex_lock(&zk->mu);
    rv = zk_wait_queued(zk, timeout_ms) ? 0 : FLR_ETIMEOUT;
    pthread_mutex_unlock(&zk->mu);
    return rv;
}

int flr_zk_create(struct flr_zk *zk, const char *path, const void *data, int len, int flags,
                  char *created, int created_len)
{
    struct zk_try t;
    int rv;

    if (!zk || !path)
        return FLR_EINVAL;
    if ((rv = zk_enter(zk)) != 0)
        return rv;
    zk_try_init(zk, &t);
    rv = zk_create_held(zk, &t, path, data, len, flags, created, created_len);
    zk_leave(zk);
    return rv;
}

int flr_zk_mkdirs(struct flr_zk *zk, const char *path)
{
    struct zk_try t;
    size_t n;
    char *p, *s, c;
    int rv = 0;

    if (!zk || !path || path[0] != '/')
        return FLR_EINVAL;
    n = strlen(path);
    if (n == 1)
        return 0;
    if (path[n - 1] == '/')
        return FLR_EINVAL;
    if (!(p = strdup(path)))
        return FLR_ENOMEM;
    if ((rv = zk_enter(zk)) != 0) {
        free(p);
        return rv;
    }
    /* Each prefix in turn, from the top; the string is cut at each '/' and restored. */
    for (s = p + 1;; s++) {
        if (*s != '/' && *s != 0)
            continue;
        c = *s;
        *s = 0;
        zk_try_init(zk, &t);
        rv = zk_create_held(zk, &t, p, NULL, -1, 0, NULL, 0);
        *s = c;
        if (rv == FLR_EZK_EXISTS)
            rv = 0;
        if (rv || c == 0)
            break;
    }
    zk_leave(zk);
    free(p);
    return rv;
}

int flr_zk_get(struct flr_zk *zk, const char *path, int watch, char **data, int *len,
               int32_t *version, int64_t *ephemeral_owner)
{
    struct zk_try t;
    struct Stat st;
    int rv;

    if (!zk || !path || !data || !len)
        return FLR_EINVAL;
    if ((rv = zk_enter(zk)) != 0)
        return rv;
    zk_try_init(zk, &t);
    rv = zk_get_held(zk, &t, path, watch, data, len, &st);
    zk_leave(zk);
    if (rv)
        return rv;
    if (version)
        *version = st.version;
    if (ephemeral_owner)
        *ephemeral_owner = st.ephemeralOwner;
    return 0;
}

int flr_zk_set(struct flr_zk *zk, const char *path, const void *data, int len, int32_t version)
{
    struct zk_try t;
    struct Stat st;
    char *got;
    int rc, rv, gotlen;

    if (!zk || !path)
        return FLR_EINVAL;
    if (!data || len < 0) {
        data = NULL;
        len = -1;
    }
    if ((rv = zk_enter(zk)) != 0)
        return rv;
    zk_try_init(zk, &t);
    for (;;) {
        rc = zoo_set(zk->zh, path, data, len, version);
        if (!zk_is_loss(rc))
            break;
        if ((rv = zk_reconnected(zk, &t)) != 0)
            goto out;
    }
    rv = zk_err(rc);
    if (rc == ZBADVERSION && t.lost && version >= 0) {
        /* Our lost write may be the one that moved the version on. */
        int r = zk_get_held(zk, &t, path, 0, &got, &gotlen, &st);
        if (r == 0) {
            if (st.version == version + 1 && zk_same_data(got, gotlen, data, len))
                rv = 0;
            free(got);
        }
    }
out:
    zk_leave(zk);
    return rv;
}

int flr_zk_set_many(struct flr_zk *zk, const struct flr_zk_write *w, int n)
{
    zoo_op_t ops[64];
    zoo_op_result_t res[64];
    struct zk_try t;
    struct Stat st;
    char *got;
    int rc, rv, gotlen;

    if (!zk || !w || n < 1 || n > 64)
        return FLR_EINVAL;
    for (int i = 0; i < n; i++) {
        if (!w[i].path || !w[i].data || w[i].len < 0 || w[i].version < 0)
            return FLR_EINVAL;
        zoo_set_op_init(&ops[i], w[i].path, w[i].data, w[i].len, w[i].version, NULL);
    }
    if ((rv = zk_enter(zk)) != 0)
        return rv;
    zk_try_init(zk, &t);
    for (;;) {
        rc = zoo_multi(zk->zh, n, ops, res);
        if (!zk_is_loss(rc))
            break;
        if ((rv = zk_reconnected(zk, &t)) != 0)
            goto out;
        /* All or none went through: the first node tells which. */
        if (zk_get_held(zk, &t, w[0].path, 0, &got, &gotlen, &st) == 0) {
            int applied =
                st.version == w[0].version + 1 && zk_same_data(got, gotlen, w[0].data, w[0].len);
            free(got);
            if (applied) {
                rc = ZOK;
                break;
            }
        }
    }
    rv = zk_err(rc);
out:
    zk_leave(zk);
    return rv;
}

int flr_zk_delete(struct flr_zk *zk, const char *path, int32_t version)
{
    struct zk_try t;
    int rv;

    if (!zk || !path)
        return FLR_EINVAL;
    if ((rv = zk_enter(zk)) != 0)
        return rv;
    zk_try_init(zk, &t);
    rv = zk_delete_held(zk, &t, path, version);
    zk_leave(zk);
    return rv;
}

int flr_zk_delete_tree(struct flr_zk *zk, const char *path)
{
    int rv;

    if (!zk || !path || path[0] != '/' || path[1] == 0)
        return FLR_EINVAL; /* the root cannot be deleted */
    if ((rv = zk_enter(zk)) != 0)
        return rv;
    rv = zk_delete_tree_held(zk, path, 0);
    zk_leave(zk);
    return rv;
}

int flr_zk_exists(struct flr_zk *zk, const char *path, int watch, int *exists)
{
    struct zk_try t;
    struct Stat st;
    int rc, rv;

    if (!zk || !path || !exists)
        return FLR_EINVAL;
    if ((rv = zk_enter(zk)) != 0)
        return rv;
    zk_try_init(zk, &t);
    for (;;) {
        rc = zoo_exists(zk->zh, path, watch, &st);
        if (!zk_is_loss(rc))
            break;
        if ((rv = zk_reconnected(zk, &t)) != 0)
            goto out;
    }
    if (rc == ZOK || rc == ZNONODE) {
        *exists = rc == ZOK;
        rv = 0;
    } else {
        rv = zk_err(rc);
    }
out:
    zk_leave(zk);
    return rv;
}

int flr_zk_children(struct flr_zk *zk, const char *path, int watch, char ***names, int *n)
{
    struct zk_try t;
    int rv;

    if (!zk || !path || !names || !n)
        return FLR_EINVAL;
    if ((rv = zk_enter(zk)) != 0)
        return rv;
    zk_try_init(zk, &t);
    rv = zk_children_held(zk, &t, path, watch, names, n);
    zk_leave(zk);
    return rv;
}

void flr_zk_free_names(char **names, int n)
{
    int i;

    if (!names)
        return;
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
