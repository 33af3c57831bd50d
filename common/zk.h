/*
 * zk.h - a ZooKeeper session that follows the rules in DESIGN.md section 3.
 *
 * Wraps the multi-threaded C client (zookeeper_mt).  Synchronous calls may be made from
 * any thread.  Watch and session events arrive on the client's own thread; the wrapper's
 * watcher only copies them onto an internal queue and returns, and the owner thread takes
 * them with flr_zk_next_event().  Nothing blocks inside a watcher.
 *
 * Session state machine:
 *
 *     CONNECTING --(connected)--> CONNECTED --(connection lost)--> CONNECTING
 *          |                          |
 *          +------(session expired)---+--> EXPIRED --(flr_zk_reopen)--> CONNECTING
 *
 * After CONNECTED the owner gets FLR_ZK_EV_CONNECTED and must re-read the state it cares
 * about and re-arm its watches (watches are one-shot and events are missed while
 * disconnected).  After EXPIRED every ephemeral node of the session is gone and so are all
 * watches: the owner gets FLR_ZK_EV_EXPIRED, must treat everything it owned as lost (a
 * server stops serving), and calls flr_zk_reopen() to get a fresh handle and session.
 */
#ifndef FLR_ZK_H
#define FLR_ZK_H

#include <stdint.h>

struct flr_zk;

enum flr_zk_event_kind {
    FLR_ZK_EV_CONNECTED = 1,    /* (re)connected: re-read state, re-arm watches */
    FLR_ZK_EV_DISCONNECTED = 2, /* connection lost; the session may still be alive */
    FLR_ZK_EV_EXPIRED = 3,      /* session gone; call flr_zk_reopen() */
    FLR_ZK_EV_CREATED = 4,      /* a watched node was created */
    FLR_ZK_EV_DELETED = 5,      /* a watched node was deleted */
    FLR_ZK_EV_CHANGED = 6,      /* a watched node's data changed */
    FLR_ZK_EV_CHILD = 7         /* a watched node's children changed */
};

struct flr_zk_event {
    int kind;
    char path[256];
};

#define FLR_ZK_EPHEMERAL 1
#define FLR_ZK_SEQUENCE  2

/*
 * Opens a session to hosts ("127.0.0.1:2181,..."), waiting up to connect_timeout_ms for it
 * to be established.  session_ms is the requested session timeout (the server clamps it to
 * its [2, 20] tick bounds).  On failure returns FLR_ETIMEOUT or FLR_EZK with detail in why.
 */
int flr_zk_open(struct flr_zk **zp, const char *hosts, int session_ms, int connect_timeout_ms,
                char *why, size_t whylen);

/* Closes the session (its ephemeral nodes go at once) and frees zk. */
void flr_zk_close(struct flr_zk *zk);

/* After expiry: closes the old handle and opens a new session on the same hosts. */
int flr_zk_reopen(struct flr_zk *zk, int connect_timeout_ms, char *why, size_t whylen);

/* True once the session has expired (cheap; callable from any thread, e.g. a hot path). */
int flr_zk_expired(const struct flr_zk *zk);

/* The current session id (0 when none) and the negotiated session timeout in ms. */
int64_t flr_zk_session_id(const struct flr_zk *zk);
int flr_zk_session_timeout(const struct flr_zk *zk);

/*
 * Lease: flr_zk_lease_until() is a monotonic time (flr_now_ms) before which the session
 * is certainly alive on the ZooKeeper server, so nothing the session owns (its ephemeral
 * nodes) can have been taken over yet.  Every successful connection starts it; a
 * successful flr_zk_lease_renew() (an asynchronous read; at most one in flight) extends
 * it to its send time plus 4/5 of the session timeout.  A process that serves on behalf
 * of its ephemeral node renews every third of the timeout or so and stops serving when
 * the lease lapses, e.g. after it was paused: it cannot know whether it was replaced.
 */
int flr_zk_lease_renew(struct flr_zk *zk);
int64_t flr_zk_lease_until(const struct flr_zk *zk);

/*
 * Renews the lease and waits up to timeout_ms for it to hold again: for a process that
 * was busy (a long copy or rebuild) and could not renew, where a lapsed lease alone does
 * not tell a live session from a lost one.  A renewal that succeeds was answered by the
 * ZooKeeper server, which proves the session alive.  Returns 0 when the lease holds,
 * FLR_EZK_EXPIRED when the session is known gone, FLR_ETIMEOUT otherwise (cut off).
 */
int flr_zk_lease_confirm(struct flr_zk *zk, int timeout_ms);

/* Takes the next event, waiting up to timeout_ms (0 = poll). Returns 0 or FLR_ETIMEOUT. */
int flr_zk_next_event(struct flr_zk *zk, struct flr_zk_event *ev, int timeout_ms);

/* Waits up to timeout_ms for an event to be queued, without taking it: for a loop that
 * sleeps between rounds but must wake when something changes.  Returns 0 (an event is
 * queued) or FLR_ETIMEOUT. */
int flr_zk_wait_event(struct flr_zk *zk, int timeout_ms);

/*
 * Creates path with data.  flags: FLR_ZK_EPHEMERAL, FLR_ZK_SEQUENCE.  The created path
 * (with a sequence suffix) is copied to created if given.  Returns 0, FLR_EZK_EXISTS,
 * FLR_EZK_NONODE (parent missing) or FLR_EZK.
 *
 * For an ephemeral node, a connection loss during the create is resolved by reading the
 * node back and comparing its ephemeralOwner with our session: ours means the create went
 * through; another session's means FLR_EZK_EXISTS; absent means retry.
 */
int flr_zk_create(struct flr_zk *zk, const char *path, const void *data, int len, int flags,
                  char *created, int created_len);

/* Creates path and any missing parents as persistent nodes with empty data. Existing nodes
 * are fine. */
int flr_zk_mkdirs(struct flr_zk *zk, const char *path);

/* Reads a node.  *data is malloc'd and NUL-terminated (also for empty nodes), owned by the
 * caller; *len excludes the NUL.  version/ephemeral_owner may be NULL.  watch != 0 leaves
 * a data watch.  Returns 0, FLR_EZK_NONODE or FLR_EZK. */
int flr_zk_get(struct flr_zk *zk, const char *path, int watch, char **data, int *len,
               int32_t *version, int64_t *ephemeral_owner);

/* Writes a node if its version still equals version (-1: any).  Returns 0,
 * FLR_EZK_BADVERSION, FLR_EZK_NONODE or FLR_EZK. */
int flr_zk_set(struct flr_zk *zk, const char *path, const void *data, int len, int32_t version);

/* One write of flr_zk_set_many: path gets data (len bytes) if its version equals version. */
struct flr_zk_write {
    const char *path;
    const void *data;
    int len;
    int32_t version; /* >= 0 */
};

/* Writes n nodes (at most 64) as flr_zk_set would, all or none: one ZooKeeper multi, so a
 * watcher never sees some written and not the others.  Returns 0, FLR_EZK_BADVERSION or
 * FLR_EZK_NONODE (then nothing was written), FLR_EINVAL or FLR_EZK. */
int flr_zk_set_many(struct flr_zk *zk, const struct flr_zk_write *w, int n);

/* Deletes a node (version -1: any). Returns 0, FLR_EZK_NONODE, FLR_EZK_BADVERSION, FLR_EZK. */
int flr_zk_delete(struct flr_zk *zk, const char *path, int32_t version);

/* Deletes a node and everything below it. A missing node is fine. */
int flr_zk_delete_tree(struct flr_zk *zk, const char *path);

/* Sets *exists; watch != 0 leaves an exists watch (fires on create, delete, change). */
int flr_zk_exists(struct flr_zk *zk, const char *path, int watch, int *exists);

/* Lists children, sorted by name.  *names is a malloc'd array of malloc'd strings; free it
 * with flr_zk_free_names(). watch != 0 leaves a child watch. */
int flr_zk_children(struct flr_zk *zk, const char *path, int watch, char ***names, int *n);
void flr_zk_free_names(char **names, int n);

#endif
