/*
 * test_zk.c - the ZooKeeper session wrapper against a real ZooKeeper server.
 *
 * One server (tests/zk.sh, tickTime 200 ms) serves the whole group: started in the group
 * setup, stopped in the group teardown, and also killed from an atexit handler and on
 * SIGINT/SIGTERM so that no java process outlives the program.
 *
 * Connection loss is produced by a small TCP proxy between a session and the server: it
 * can stop passing replies (the request reaches the server, the answer never comes back)
 * or stop passing anything, on the connections open at that moment; new connections pass
 * normally, so the client reconnects to the same session.
 *
 * Session expiry is forced the usual way: a second raw handle joins the session with the
 * same client id and closes it.  The wrapper keeps its handle private, so this program
 * interposes zookeeper_init() to see the handle it creates.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#ifndef THREADED
#define THREADED /* the synchronous API of the multi-threaded client */
#endif
#include <zookeeper/zookeeper.h>

#include "common/err.h"
#include "common/util.h"
#include "common/zk.h"
#include "tests/testzk.h"

#define SESSION_MS 1000   /* short: loss is detected after 2/3 of it */
#define CONNECT_MS 5000   /* generous bound for a connection that should succeed */
#define EVENT_MS   15000  /* bound on waiting for an event that should come (a busy machine) */
#define QUIET_MS   200    /* how long "no event" is watched for */
#define BIG_NODE   204800 /* bytes; well under the server's 1 MB jute.maxbuffer */

static struct flr_testzk tzk;
static volatile sig_atomic_t tzk_pid; /* the java server, for the signal handler */

/* --- the server ------------------------------------------------------------------------ */

static void stop_server(void)
{
    flr_testzk_stop(&tzk);
    tzk_pid = 0;
}

static void on_signal(int sig)
{
    if (tzk_pid > 0)
        kill((pid_t)tzk_pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int group_setup(void **state)
{
    char path[300];
    FILE *f;
    long pid = 0;

    if (flr_testzk_start(&tzk) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/zk.pid", tzk.dir);
    if ((f = fopen(path, "r"))) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    tzk_pid = (sig_atomic_t)pid;
    atexit(stop_server);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    return 0;
}

static int group_teardown(void **state)
{
    stop_server();
    return 0;
}

/* --- the wrapper's handle, seen through zookeeper_init ----------------------------------- */

typedef zhandle_t *(*zk_init_fn)(const char *, watcher_fn, int, const clientid_t *, void *, int);

static zhandle_t *last_init;

zhandle_t *zookeeper_init(const char *host, watcher_fn fn, int recv_timeout,
                          const clientid_t *clientid, void *context, int flags)
{
    static zk_init_fn real;
    zhandle_t *zh;

    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "zookeeper_init");
    if (!real)
        return NULL;
    zh = real(host, fn, recv_timeout, clientid, context, flags);
    last_init = zh;
    return zh;
}

/* --- helpers ------------------------------------------------------------------------------- */

/* Polls cond every 10 ms until it holds or timeout_ms passes; returns whether it held. */
static int wait_for(int (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = flr_now_ms() + timeout_ms;
    struct timespec ts = {0, 10 * 1000000L};

    for (;;) {
        if (cond(arg))
            return 1;
        if (flr_now_ms() >= deadline)
            return 0;
        nanosleep(&ts, NULL);
    }
}

static struct flr_zk *open_at(const char *hosts, int session_ms)
{
    struct flr_zk *zk = NULL;
    char why[256] = "";
    int rv = flr_zk_open(&zk, hosts, session_ms, CONNECT_MS, why, sizeof(why));

    if (rv)
        fail_msg("flr_zk_open(%s): %s: %s", hosts, flr_errname(rv), why);
    return zk;
}

static struct flr_zk *open_zk(void)
{
    return open_at(tzk.hosts, SESSION_MS);
}

/* Takes events until one that is not a session event (session events are skipped when
 * skip_session) and checks its kind and path. */
static void expect_event_(struct flr_zk *zk, int kind, const char *path, int skip_session, int line)
{
    int64_t deadline = flr_now_ms() + EVENT_MS;
    struct flr_zk_event ev;

    for (;;) {
        int left = (int)(deadline - flr_now_ms());
        if (left < 0 || flr_zk_next_event(zk, &ev, left) != 0)
            fail_msg("line %d: no event %d on %s", line, kind, path);
        if (skip_session && ev.kind <= FLR_ZK_EV_EXPIRED && kind >= FLR_ZK_EV_CREATED)
            continue;
        if (ev.kind != kind || strcmp(ev.path, path) != 0)
            fail_msg("line %d: event %d on '%s', wanted %d on '%s'", line, ev.kind, ev.path, kind,
                     path);
        return;
    }
}

#define expect_event(zk, kind, path)   expect_event_(zk, kind, path, 1, __LINE__)
#define expect_session_event(zk, kind) expect_event_(zk, kind, "", 0, __LINE__)

/* Skips everything up to and including an event of this kind. */
static void skip_to_event(struct flr_zk *zk, int kind)
{
    int64_t deadline = flr_now_ms() + EVENT_MS;
    struct flr_zk_event ev;

    for (;;) {
        int left = (int)(deadline - flr_now_ms());
        if (left < 0 || flr_zk_next_event(zk, &ev, left) != 0)
            fail_msg("no event %d", kind);
        if (ev.kind == kind)
            return;
    }
}

static void expect_no_event(struct flr_zk *zk)
{
    struct flr_zk_event ev;
    int rv = flr_zk_next_event(zk, &ev, QUIET_MS);

    if (rv == 0)
        fail_msg("unexpected event %d on '%s'", ev.kind, ev.path);
}

static void expect_data(struct flr_zk *zk, const char *path, const char *want, int32_t want_version)
{
    char *data = NULL;
    int len = -1;
    int32_t version = -2;

    assert_int_equal(flr_zk_get(zk, path, 0, &data, &len, &version, NULL), 0);
    assert_int_equal(len, (int)strlen(want));
    assert_string_equal(data, want);
    assert_int_equal(version, want_version);
    free(data);
}

static int node_exists(struct flr_zk *zk, const char *path)
{
    int exists = -1;

    assert_int_equal(flr_zk_exists(zk, path, 0, &exists), 0);
    return exists;
}

static int64_t node_owner(struct flr_zk *zk, const char *path)
{
    char *data = NULL;
    int len;
    int64_t owner = -1;

    assert_int_equal(flr_zk_get(zk, path, 0, &data, &len, NULL, &owner), 0);
    free(data);
    return owner;
}

struct gone_arg {
    struct flr_zk *zk;
    const char *path;
};

static int node_gone(void *arg)
{
    struct gone_arg *g = arg;
    int exists = 1;

    return flr_zk_exists(g->zk, g->path, 0, &exists) == 0 && !exists;
}

/* --- a TCP proxy that can lose replies or requests ---------------------------------------- */

#define PROXY_CONNS 16

struct proxy_conn {
    int c, s;      /* client side, server side */
    int drop_up;   /* requests are swallowed */
    int drop_down; /* replies are swallowed */
};

struct proxy {
    int lfd, upstream_port;
    int wake[2];
    pthread_t th;
    pthread_mutex_t mu;
    struct proxy_conn conns[PROXY_CONNS];
    int nconns, accepted, stop;
    char hosts[64];
};

static int write_all(int fd, const char *p, ssize_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, (size_t)n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= w;
    }
    return 0;
}

static int connect_loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Moves what one side has to the other, or swallows it; returns -1 when the side closed. */
static int proxy_pump(int from, int to, int drop)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof(buf));

    if (n <= 0)
        return -1;
    if (!drop && write_all(to, buf, n) != 0)
        return -1;
    return 0;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    struct pollfd pfd[2 + 2 * PROXY_CONNS];

    for (;;) {
        int n = 0, i, k;

        pthread_mutex_lock(&p->mu);
        pfd[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (i = 0; i < p->nconns; i++) {
            pfd[n++] = (struct pollfd){.fd = p->conns[i].c, .events = POLLIN};
            pfd[n++] = (struct pollfd){.fd = p->conns[i].s, .events = POLLIN};
        }
        pthread_mutex_unlock(&p->mu);

        if (poll(pfd, (nfds_t)n, -1) < 0 && errno != EINTR)
            return NULL;

        pthread_mutex_lock(&p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        if (pfd[0].revents) {
            char b[16];
            if (read(p->wake[0], b, sizeof(b)) < 0)
                b[0] = 0;
        }
        /* The connections polled are the first (n - 2) / 2; new ones are appended after. */
        for (i = 0, k = 2; k < n; i++, k += 2) {
            struct proxy_conn *c = &p->conns[i];
            int dead = 0;

            if (pfd[k].revents && proxy_pump(c->c, c->s, c->drop_up) != 0)
                dead = 1;
            if (!dead && pfd[k + 1].revents && proxy_pump(c->s, c->c, c->drop_down) != 0)
                dead = 1;
            if (dead) {
                close(c->c);
                close(c->s);
                c->c = c->s = -1;
            }
        }
        for (i = 0, k = 0; i < p->nconns; i++)
            if (p->conns[i].c >= 0)
                p->conns[k++] = p->conns[i];
        p->nconns = k;
        if (pfd[1].revents) {
            int c = accept(p->lfd, NULL, NULL), s = -1;
            if (c >= 0 &&
                (p->nconns == PROXY_CONNS || (s = connect_loopback(p->upstream_port)) < 0)) {
                close(c);
                c = -1;
            }
            if (c >= 0) {
                p->conns[p->nconns++] = (struct proxy_conn){.c = c, .s = s};
                p->accepted++;
            }
        }
        pthread_mutex_unlock(&p->mu);
    }
}

static void proxy_start(struct proxy *p)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    const char *colon = strrchr(tzk.hosts, ':');

    memset(p, 0, sizeof(*p));
    assert_non_null(colon);
    p->upstream_port = atoi(colon + 1);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true((p->lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(p->lfd, 8), 0);
    assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&a, &alen), 0);
    snprintf(p->hosts, sizeof(p->hosts), "127.0.0.1:%d", ntohs(a.sin_port));
    assert_int_equal(pipe(p->wake), 0);
    pthread_mutex_init(&p->mu, NULL);
    assert_int_equal(pthread_create(&p->th, NULL, proxy_main, p), 0);
}

static void proxy_wake(struct proxy *p)
{
    if (write(p->wake[1], "x", 1) < 0)
        fail_msg("proxy wake: %s", strerror(errno));
}

/* From now on the connections open at this moment swallow replies, and requests too when
 * drop_requests; connections made later pass everything. */
static void proxy_cut(struct proxy *p, int drop_requests)
{
    int i;

    pthread_mutex_lock(&p->mu);
    for (i = 0; i < p->nconns; i++) {
        p->conns[i].drop_down = 1;
        p->conns[i].drop_up = drop_requests;
    }
    pthread_mutex_unlock(&p->mu);
}

static int proxy_accepted(struct proxy *p)
{
    int n;

    pthread_mutex_lock(&p->mu);
    n = p->accepted;
    pthread_mutex_unlock(&p->mu);
    return n;
}

static void proxy_stop(struct proxy *p)
{
    int i;

    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    proxy_wake(p);
    pthread_join(p->th, NULL);
    for (i = 0; i < p->nconns; i++) {
        close(p->conns[i].c);
        close(p->conns[i].s);
    }
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
}

/* --- sessions ---------------------------------------------------------------------------- */

static void test_open_connects_and_reports_its_session(void **state)
{
    struct flr_zk *zk = open_zk();
    struct flr_zk_event ev;

    assert_true(flr_zk_session_id(zk) != 0);
    assert_true(flr_zk_session_timeout(zk) > 0);
    assert_false(flr_zk_expired(zk));
    /* The first event is the connection itself; then the queue is empty. */
    expect_session_event(zk, FLR_ZK_EV_CONNECTED);
    assert_int_equal(flr_zk_next_event(zk, &ev, 0), FLR_ETIMEOUT);
    flr_zk_close(zk);
}

static void test_open_times_out_when_nobody_listens(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    struct flr_zk *zk = NULL;
    char hosts[64], why[256] = "", want[128];
    int fd, rv;
    int64_t t0;

    /* A bound socket that never listens: its port refuses connections and stays ours. */
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    snprintf(hosts, sizeof(hosts), "127.0.0.1:%d", ntohs(a.sin_port));

    t0 = flr_now_ms();
    rv = flr_zk_open(&zk, hosts, SESSION_MS, 500, why, sizeof(why));
    assert_int_equal(rv, FLR_ETIMEOUT);
    assert_null(zk);
    assert_true(flr_now_ms() - t0 < 2500);
    snprintf(want, sizeof(want), "could not connect to ZooKeeper at %s within 500 ms", hosts);
    assert_string_equal(why, want);
    close(fd);
}

static void test_open_rejects_bad_arguments(void **state)
{
    struct flr_zk *zk = NULL;
    char why[128];

    assert_int_equal(flr_zk_open(&zk, NULL, SESSION_MS, 100, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(flr_zk_open(&zk, "", SESSION_MS, 100, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(flr_zk_open(&zk, tzk.hosts, 0, 100, why, sizeof(why)), FLR_EINVAL);
    assert_null(zk);
}

/* --- nodes ------------------------------------------------------------------------------- */

static void test_create_get_set_delete_follow_versions(void **state)
{
    struct flr_zk *zk = open_zk();
    char created[64], *data = NULL;
    int len = -1;
    int32_t version = -2;
    int64_t owner = -1;

    assert_int_equal(flr_zk_create(zk, "/cgsd", "hello", 5, 0, created, sizeof(created)), 0);
    assert_string_equal(created, "/cgsd");
    assert_int_equal(flr_zk_get(zk, "/cgsd", 0, &data, &len, &version, &owner), 0);
    assert_int_equal(len, 5);
    assert_string_equal(data, "hello");
    assert_int_equal(version, 0);
    assert_int_equal(owner, 0); /* persistent */
    free(data);

    /* Conditional writes: the version read wins once, then it is stale. */
    assert_int_equal(flr_zk_set(zk, "/cgsd", "world!", 6, 0), 0);
    assert_int_equal(flr_zk_set(zk, "/cgsd", "stale", 5, 0), FLR_EZK_BADVERSION);
    expect_data(zk, "/cgsd", "world!", 1);
    assert_int_equal(flr_zk_set(zk, "/cgsd", "any", 3, -1), 0);
    expect_data(zk, "/cgsd", "any", 2);

    /* Empty data reads back as an empty, NUL-terminated string. */
    assert_int_equal(flr_zk_set(zk, "/cgsd", NULL, 0, 2), 0);
    expect_data(zk, "/cgsd", "", 3);

    assert_int_equal(flr_zk_delete(zk, "/cgsd", 1), FLR_EZK_BADVERSION);
    assert_int_equal(flr_zk_delete(zk, "/cgsd", 3), 0);
    assert_int_equal(flr_zk_delete(zk, "/cgsd", -1), FLR_EZK_NONODE);
    assert_int_equal(flr_zk_get(zk, "/cgsd", 0, &data, &len, NULL, NULL), FLR_EZK_NONODE);
    assert_int_equal(flr_zk_set(zk, "/cgsd", "x", 1, -1), FLR_EZK_NONODE);
    flr_zk_close(zk);
}

static void test_create_reports_existing_node_and_missing_parent(void **state)
{
    struct flr_zk *zk = open_zk();

    assert_int_equal(flr_zk_create(zk, "/crx", "a", 1, 0, NULL, 0), 0);
    assert_int_equal(flr_zk_create(zk, "/crx", "b", 1, 0, NULL, 0), FLR_EZK_EXISTS);
    assert_int_equal(flr_zk_create(zk, "/crx", "b", 1, FLR_ZK_EPHEMERAL, NULL, 0), FLR_EZK_EXISTS);
    assert_int_equal(flr_zk_create(zk, "/crx/no/such", "c", 1, 0, NULL, 0), FLR_EZK_NONODE);
    assert_int_equal(flr_zk_create(zk, "/crx/no/such", "c", 1, FLR_ZK_EPHEMERAL, NULL, 0),
                     FLR_EZK_NONODE);
    expect_data(zk, "/crx", "a", 0);
    assert_int_equal(flr_zk_delete(zk, "/crx", -1), 0);
    flr_zk_close(zk);
}

static void test_set_many_writes_all_or_none(void **state)
{
    struct flr_zk *zk = open_zk();
    struct flr_zk_write w[3] = {{"/sm/a", "1", 1, 0}, {"/sm/b", "2", 1, 0}, {"/sm/c", "3", 1, 0}};

    assert_int_equal(flr_zk_mkdirs(zk, "/sm"), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(flr_zk_create(zk, w[i].path, "0", 1, 0, NULL, 0), 0);
    assert_int_equal(flr_zk_set_many(zk, w, 3), 0);
    expect_data(zk, "/sm/a", "1", 1);
    expect_data(zk, "/sm/b", "2", 1);
    expect_data(zk, "/sm/c", "3", 1);

    /* One stale version: nothing is written. */
    w[0].data = w[1].data = w[2].data = "x";
    w[0].version = w[1].version = 1;
    w[2].version = 0;
    assert_int_equal(flr_zk_set_many(zk, w, 3), FLR_EZK_BADVERSION);
    expect_data(zk, "/sm/a", "1", 1);
    expect_data(zk, "/sm/b", "2", 1);
    expect_data(zk, "/sm/c", "3", 1);
    assert_int_equal(flr_zk_set_many(zk, w, 0), FLR_EINVAL);
    assert_int_equal(flr_zk_delete_tree(zk, "/sm"), 0);
    flr_zk_close(zk);
}

static void test_mkdirs_and_delete_tree(void **state)
{
    struct flr_zk *zk = open_zk();
    char **names = NULL;
    int n = -1;

    assert_int_equal(flr_zk_mkdirs(zk, "/tree/a/b/c"), 0);
    assert_int_equal(flr_zk_mkdirs(zk, "/tree/a/b/c"), 0); /* existing is fine */
    assert_int_equal(flr_zk_mkdirs(zk, "/tree/a/d"), 0);
    assert_int_equal(flr_zk_mkdirs(zk, "/"), 0);
    assert_int_equal(flr_zk_mkdirs(zk, "tree"), FLR_EINVAL);
    expect_data(zk, "/tree/a/b/c", "", 0);
    assert_int_equal(flr_zk_create(zk, "/tree/a/b/c/leaf", "x", 1, 0, NULL, 0), 0);
    assert_int_equal(flr_zk_create(zk, "/tree/a/eph", "y", 1, FLR_ZK_EPHEMERAL, NULL, 0), 0);

    assert_int_equal(flr_zk_children(zk, "/tree/a", 0, &names, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "b");
    assert_string_equal(names[1], "d");
    assert_string_equal(names[2], "eph");
    assert_null(names[3]);
    flr_zk_free_names(names, n);

    assert_int_equal(flr_zk_delete(zk, "/tree/a", -1), FLR_EZK); /* not empty */
    assert_int_equal(flr_zk_delete_tree(zk, "/tree"), 0);
    assert_false(node_exists(zk, "/tree"));
    assert_int_equal(flr_zk_delete_tree(zk, "/tree"), 0); /* missing is fine */
    assert_int_equal(flr_zk_delete_tree(zk, "/"), FLR_EINVAL);
    assert_int_equal(flr_zk_children(zk, "/tree", 0, &names, &n), FLR_EZK_NONODE);
    flr_zk_close(zk);
}

static void test_children_are_sorted_by_name(void **state)
{
    static const char *const order[] = {"zeta", "alpha", "mu", "beta", "b", "alpha2"};
    static const char *const sorted[] = {"alpha", "alpha2", "b", "beta", "mu", "zeta"};
    struct flr_zk *zk = open_zk();
    char path[64], **names = NULL;
    int i, n = -1;

    assert_int_equal(flr_zk_mkdirs(zk, "/sorted"), 0);
    assert_int_equal(flr_zk_children(zk, "/sorted", 0, &names, &n), 0);
    assert_int_equal(n, 0);
    flr_zk_free_names(names, n);
    for (i = 0; i < (int)FLR_ARRAY_LEN(order); i++) {
        snprintf(path, sizeof(path), "/sorted/%s", order[i]);
        assert_int_equal(flr_zk_create(zk, path, NULL, 0, 0, NULL, 0), 0);
    }
    assert_int_equal(flr_zk_children(zk, "/sorted", 0, &names, &n), 0);
    assert_int_equal(n, (int)FLR_ARRAY_LEN(sorted));
    for (i = 0; i < n; i++)
        assert_string_equal(names[i], sorted[i]);
    flr_zk_free_names(names, n);
    assert_int_equal(flr_zk_delete_tree(zk, "/sorted"), 0);
    flr_zk_close(zk);
}

static void test_ephemeral_node_goes_with_its_session(void **state)
{
    struct flr_zk *a = open_zk(), *b = open_zk();
    struct gone_arg g = {b, "/eph/a"};
    int64_t sid = flr_zk_session_id(a);

    assert_int_equal(flr_zk_mkdirs(b, "/eph"), 0);
    assert_int_equal(flr_zk_create(a, "/eph/a", "me", 2, FLR_ZK_EPHEMERAL, NULL, 0), 0);
    assert_true(node_exists(b, "/eph/a"));
    assert_int_equal(node_owner(b, "/eph/a"), sid);

    flr_zk_close(a);
    assert_true(wait_for(node_gone, &g, EVENT_MS));
    assert_int_equal(flr_zk_delete_tree(b, "/eph"), 0);
    flr_zk_close(b);
}

static void test_sequential_create_returns_names_in_order(void **state)
{
    struct flr_zk *zk = open_zk();
    char names[4][64], **kids = NULL;
    int i, n = -1;

    assert_int_equal(flr_zk_mkdirs(zk, "/seq"), 0);
    for (i = 0; i < 3; i++)
        assert_int_equal(
            flr_zk_create(zk, "/seq/n_", "s", 1, FLR_ZK_SEQUENCE, names[i], sizeof(names[i])), 0);
    assert_int_equal(flr_zk_create(zk, "/seq/n_", "e", 1, FLR_ZK_SEQUENCE | FLR_ZK_EPHEMERAL,
                                   names[3], sizeof(names[3])),
                     0);
    assert_string_equal(names[0], "/seq/n_0000000000");
    assert_string_equal(names[1], "/seq/n_0000000001");
    assert_string_equal(names[2], "/seq/n_0000000002");
    assert_string_equal(names[3], "/seq/n_0000000003");
    assert_int_equal(node_owner(zk, names[3]), flr_zk_session_id(zk));

    assert_int_equal(flr_zk_children(zk, "/seq", 0, &kids, &n), 0);
    assert_int_equal(n, 4);
    for (i = 0; i < n; i++)
        assert_string_equal(kids[i], names[i] + strlen("/seq/"));
    flr_zk_free_names(kids, n);
    assert_int_equal(flr_zk_delete_tree(zk, "/seq"), 0);
    flr_zk_close(zk);
}

static void test_get_reads_a_big_node(void **state)
{
    struct flr_zk *zk = open_zk();
    char *big = malloc(BIG_NODE), *data = NULL;
    int i, len = -1;

    assert_non_null(big);
    for (i = 0; i < BIG_NODE; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(flr_zk_create(zk, "/big", big, BIG_NODE, 0, NULL, 0), 0);
    assert_int_equal(flr_zk_get(zk, "/big", 0, &data, &len, NULL, NULL), 0);
    assert_int_equal(len, BIG_NODE);
    assert_memory_equal(data, big, BIG_NODE);
    assert_int_equal(data[len], 0);
    free(data);
    assert_int_equal(flr_zk_delete(zk, "/big", -1), 0);
    free(big);
    flr_zk_close(zk);
}

/* --- watches ----------------------------------------------------------------------------- */

static void test_child_and_data_watches_arrive_as_events(void **state)
{
    struct flr_zk *owner = open_zk(), *other = open_zk();
    char **names = NULL, *data = NULL;
    int n, len;

    assert_int_equal(flr_zk_mkdirs(other, "/w/x"), 0);
    expect_session_event(owner, FLR_ZK_EV_CONNECTED);

    /* A child watch fires once when a child comes. */
    assert_int_equal(flr_zk_children(owner, "/w", 1, &names, &n), 0);
    flr_zk_free_names(names, n);
    assert_int_equal(flr_zk_create(other, "/w/y", NULL, 0, 0, NULL, 0), 0);
    expect_event(owner, FLR_ZK_EV_CHILD, "/w");
    assert_int_equal(flr_zk_create(other, "/w/z", NULL, 0, 0, NULL, 0), 0);
    expect_no_event(owner); /* one-shot */

    /* A data watch fires on a change and, re-armed, on the deletion. */
    assert_int_equal(flr_zk_get(owner, "/w/x", 1, &data, &len, NULL, NULL), 0);
    free(data);
    assert_int_equal(flr_zk_set(other, "/w/x", "v", 1, -1), 0);
    expect_event(owner, FLR_ZK_EV_CHANGED, "/w/x");
    assert_int_equal(flr_zk_get(owner, "/w/x", 1, &data, &len, NULL, NULL), 0);
    free(data);
    assert_int_equal(flr_zk_delete(other, "/w/x", -1), 0);
    expect_event(owner, FLR_ZK_EV_DELETED, "/w/x");

    assert_int_equal(flr_zk_delete_tree(other, "/w"), 0);
    flr_zk_close(other);
    flr_zk_close(owner);
}

static void test_wait_event_wakes_on_an_event_and_leaves_it_queued(void **state)
{
    struct flr_zk *owner = open_zk(), *other = open_zk();
    char **names = NULL;
    int64_t t0;
    int n;

    assert_int_equal(flr_zk_mkdirs(other, "/wait"), 0);
    expect_session_event(owner, FLR_ZK_EV_CONNECTED);

    /* Nothing queued: it waits the whole timeout. */
    t0 = flr_now_ms();
    assert_int_equal(flr_zk_wait_event(owner, 150), FLR_ETIMEOUT);
    assert_true(flr_now_ms() - t0 >= 150);

    /* A child comes: the wait ends, and the event is still there to take. */
    assert_int_equal(flr_zk_children(owner, "/wait", 1, &names, &n), 0);
    flr_zk_free_names(names, n);
    assert_int_equal(flr_zk_create(other, "/wait/a", NULL, 0, 0, NULL, 0), 0);
    assert_int_equal(flr_zk_wait_event(owner, 10000), 0);
    assert_int_equal(flr_zk_wait_event(owner, 0), 0);
    expect_event(owner, FLR_ZK_EV_CHILD, "/wait");
    assert_int_equal(flr_zk_wait_event(owner, 0), FLR_ETIMEOUT);

    assert_int_equal(flr_zk_delete_tree(other, "/wait"), 0);
    flr_zk_close(other);
    flr_zk_close(owner);
}

static void test_many_events_queue_in_order(void **state)
{
    enum { NODES = 100 }; /* beyond the queue's first capacity */
    struct flr_zk *owner = open_zk(), *other = open_zk();
    char path[64], *data;
    int i, len;

    assert_int_equal(flr_zk_mkdirs(other, "/many"), 0);
    for (i = 0; i < NODES; i++) {
        snprintf(path, sizeof(path), "/many/n%03d", i);
        assert_int_equal(flr_zk_create(other, path, NULL, 0, 0, NULL, 0), 0);
        assert_int_equal(flr_zk_get(owner, path, 1, &data, &len, NULL, NULL), 0);
        free(data);
    }
    /* Nobody takes events while they pile up; then they come out in the order made. */
    for (i = NODES - 1; i >= 0; i--) {
        snprintf(path, sizeof(path), "/many/n%03d", i);
        assert_int_equal(flr_zk_set(other, path, "x", 1, -1), 0);
    }
    for (i = NODES - 1; i >= 0; i--) {
        snprintf(path, sizeof(path), "/many/n%03d", i);
        expect_event(owner, FLR_ZK_EV_CHANGED, path);
    }
    expect_no_event(owner);
    assert_int_equal(flr_zk_delete_tree(other, "/many"), 0);
    flr_zk_close(other);
    flr_zk_close(owner);
}

static void test_exists_watch_fires_on_create_change_and_delete(void **state)
{
    struct flr_zk *owner = open_zk(), *other = open_zk();
    int exists = -1;

    expect_session_event(owner, FLR_ZK_EV_CONNECTED);
    assert_int_equal(flr_zk_exists(owner, "/ex", 1, &exists), 0);
    assert_false(exists);
    assert_int_equal(flr_zk_create(other, "/ex", "1", 1, 0, NULL, 0), 0);
    expect_event(owner, FLR_ZK_EV_CREATED, "/ex");

    assert_int_equal(flr_zk_exists(owner, "/ex", 1, &exists), 0);
    assert_true(exists);
    assert_int_equal(flr_zk_set(other, "/ex", "2", 1, -1), 0);
    expect_event(owner, FLR_ZK_EV_CHANGED, "/ex");

    assert_int_equal(flr_zk_exists(owner, "/ex", 1, &exists), 0);
    assert_int_equal(flr_zk_delete(other, "/ex", -1), 0);
    expect_event(owner, FLR_ZK_EV_DELETED, "/ex");
    expect_no_event(owner);
    flr_zk_close(other);
    flr_zk_close(owner);
}

/* --- expiry -------------------------------------------------------------------------------- */

static atomic_int raw_connected;

static void raw_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    if (type == ZOO_SESSION_EVENT && state == ZOO_CONNECTED_STATE)
        atomic_store(&raw_connected, 1);
}

static int raw_is_connected(void *arg)
{
    return atomic_load(&raw_connected);
}

static int is_expired(void *arg)
{
    return flr_zk_expired(arg);
}

static void test_session_expiry_then_reopen(void **state)
{
    struct flr_zk *other = open_zk(), *zk = open_zk();
    struct gone_arg g = {other, "/exp/e"};
    clientid_t cid = *zoo_client_id(last_init);
    int64_t old_sid = flr_zk_session_id(zk);
    char why[256] = "", *data = NULL;
    zhandle_t *raw;
    int len;

    assert_int_equal(cid.client_id, old_sid);
    assert_int_equal(flr_zk_mkdirs(other, "/exp"), 0);
    assert_int_equal(flr_zk_create(zk, "/exp/e", "x", 1, FLR_ZK_EPHEMERAL, NULL, 0), 0);

    /* A second handle joins the session and closes it.  The first handle, cut off when the
     * second joined, may win the session back before the close goes out; then the close
     * ends nothing, and the second handle tries again. */
    for (int attempt = 0; attempt < 5 && !flr_zk_expired(zk); attempt++) {
        atomic_store(&raw_connected, 0);
        raw = zookeeper_init(tzk.hosts, raw_watcher, SESSION_MS, &cid, NULL, 0);
        assert_non_null(raw);
        assert_true(wait_for(raw_is_connected, NULL, CONNECT_MS));
        zookeeper_close(raw);
        (void)wait_for(is_expired, zk, EVENT_MS / 3);
    }
    assert_true(flr_zk_expired(zk));
    assert_int_equal(flr_zk_session_id(zk), 0);
    assert_true(wait_for(node_gone, &g, EVENT_MS));
    assert_int_equal(flr_zk_get(zk, "/exp/e", 0, &data, &len, NULL, NULL), FLR_EZK_EXPIRED);
    assert_int_equal(flr_zk_create(zk, "/exp/e", "x", 1, FLR_ZK_EPHEMERAL, NULL, 0),
                     FLR_EZK_EXPIRED);

    /* A new session works; the old session's events come first, in order. */
    assert_int_equal(flr_zk_reopen(zk, CONNECT_MS, why, sizeof(why)), 0);
    assert_false(flr_zk_expired(zk));
    assert_true(flr_zk_session_id(zk) != 0);
    assert_true(flr_zk_session_id(zk) != old_sid);
    skip_to_event(zk, FLR_ZK_EV_CONNECTED); /* the first session's */
    skip_to_event(zk, FLR_ZK_EV_EXPIRED);
    expect_session_event(zk, FLR_ZK_EV_CONNECTED);
    assert_int_equal(flr_zk_create(zk, "/exp/e", "y", 1, FLR_ZK_EPHEMERAL, NULL, 0), 0);
    assert_int_equal(node_owner(other, "/exp/e"), flr_zk_session_id(zk));

    flr_zk_close(zk);
    assert_true(wait_for(node_gone, &g, EVENT_MS));
    assert_int_equal(flr_zk_delete_tree(other, "/exp"), 0);
    flr_zk_close(other);
}

struct hammer {
    struct flr_zk *zk;
    atomic_int stop, calls, failures;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    char *data;
    int len, rv;

    while (!atomic_load(&h->stop)) {
        rv = flr_zk_get(h->zk, "/hammer", 0, &data, &len, NULL, NULL);
        if (rv == 0)
            free(data);
        else if (rv != FLR_EZK_EXPIRED)
            atomic_fetch_add(&h->failures, 1);
        atomic_fetch_add(&h->calls, 1);
    }
    return NULL;
}

static void test_calls_from_other_threads_survive_reopen(void **state)
{
    struct hammer h = {.zk = open_zk()};
    pthread_t th[3];
    char why[256];
    int i;

    assert_int_equal(flr_zk_create(h.zk, "/hammer", "h", 1, 0, NULL, 0), 0);
    atomic_init(&h.stop, 0);
    atomic_init(&h.calls, 0);
    atomic_init(&h.failures, 0);
    for (i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h), 0);
    for (i = 0; i < 3; i++)
        assert_int_equal(flr_zk_reopen(h.zk, CONNECT_MS, why, sizeof(why)), 0);
    atomic_store(&h.stop, 1);
    for (i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&h.failures), 0);
    assert_true(atomic_load(&h.calls) > 0);
    assert_int_equal(flr_zk_delete(h.zk, "/hammer", -1), 0);
    flr_zk_close(h.zk);
}

/* --- connection loss ------------------------------------------------------------------------ */

struct lossy {
    struct proxy proxy;
    struct flr_zk *zk;    /* through the proxy */
    struct flr_zk *other; /* direct */
};

static void lossy_open(struct lossy *l, const char *dir)
{
    proxy_start(&l->proxy);
    l->zk = open_at(l->proxy.hosts, SESSION_MS);
    l->other = open_zk();
    assert_int_equal(flr_zk_mkdirs(l->other, dir), 0);
    expect_session_event(l->zk, FLR_ZK_EV_CONNECTED);
    assert_int_equal(proxy_accepted(&l->proxy), 1);
}

/* Checks that the session went through a loss and came back, and closes everything. */
static void lossy_close(struct lossy *l, const char *dir)
{
    assert_true(proxy_accepted(&l->proxy) >= 2);
    expect_session_event(l->zk, FLR_ZK_EV_DISCONNECTED);
    expect_session_event(l->zk, FLR_ZK_EV_CONNECTED);
    assert_false(flr_zk_expired(l->zk));
    assert_int_equal(flr_zk_delete_tree(l->other, dir), 0);
    flr_zk_close(l->zk);
    flr_zk_close(l->other);
    proxy_stop(&l->proxy);
}

static void test_ephemeral_create_with_lost_reply_is_found_ours(void **state)
{
    struct lossy l;

    lossy_open(&l, "/lr");
    proxy_cut(&l.proxy, 0); /* the create reaches the server; its reply is lost */
    assert_int_equal(flr_zk_create(l.zk, "/lr/e", "x", 1, FLR_ZK_EPHEMERAL, NULL, 0), 0);
    assert_int_equal(node_owner(l.other, "/lr/e"), flr_zk_session_id(l.zk));
    lossy_close(&l, "/lr");
}

static void test_ephemeral_create_with_lost_request_is_retried(void **state)
{
    struct lossy l;

    lossy_open(&l, "/lq");
    proxy_cut(&l.proxy, 1); /* the create never reaches the server */
    assert_int_equal(flr_zk_create(l.zk, "/lq/e", "x", 1, FLR_ZK_EPHEMERAL, NULL, 0), 0);
    assert_int_equal(node_owner(l.other, "/lq/e"), flr_zk_session_id(l.zk));
    lossy_close(&l, "/lq");
}

static void test_ephemeral_create_after_loss_reports_another_owner(void **state)
{
    struct lossy l;

    lossy_open(&l, "/lo");
    assert_int_equal(flr_zk_create(l.other, "/lo/e", "o", 1, FLR_ZK_EPHEMERAL, NULL, 0), 0);
    proxy_cut(&l.proxy, 1);
    assert_int_equal(flr_zk_create(l.zk, "/lo/e", "x", 1, FLR_ZK_EPHEMERAL, NULL, 0),
                     FLR_EZK_EXISTS);
    assert_int_equal(node_owner(l.other, "/lo/e"), flr_zk_session_id(l.other));
    lossy_close(&l, "/lo");
}

static void test_sequential_ephemeral_create_with_lost_reply_returns_its_name(void **state)
{
    struct lossy l;
    char name[64] = "", **kids = NULL;
    int n = -1;

    lossy_open(&l, "/ls");
    assert_int_equal(
        flr_zk_create(l.other, "/ls/c_", "o", 1, FLR_ZK_EPHEMERAL | FLR_ZK_SEQUENCE, NULL, 0), 0);
    proxy_cut(&l.proxy, 0);
    assert_int_equal(flr_zk_create(l.zk, "/ls/c_", "x", 1, FLR_ZK_EPHEMERAL | FLR_ZK_SEQUENCE, name,
                                   sizeof(name)),
                     0);
    assert_string_equal(name, "/ls/c_0000000001");
    assert_int_equal(node_owner(l.other, name), flr_zk_session_id(l.zk));
    /* Exactly one node of ours: the lost create was not repeated. */
    assert_int_equal(flr_zk_children(l.other, "/ls", 0, &kids, &n), 0);
    assert_int_equal(n, 2);
    flr_zk_free_names(kids, n);
    lossy_close(&l, "/ls");
}

static void test_versioned_set_with_lost_reply_succeeds(void **state)
{
    struct lossy l;

    lossy_open(&l, "/lv");
    assert_int_equal(flr_zk_create(l.other, "/lv/n", "a", 1, 0, NULL, 0), 0);
    proxy_cut(&l.proxy, 0);
    assert_int_equal(flr_zk_set(l.zk, "/lv/n", "b", 1, 0), 0);
    expect_data(l.other, "/lv/n", "b", 1);
    lossy_close(&l, "/lv");
}

static void test_set_many_with_lost_reply_succeeds(void **state)
{
    struct lossy l;
    const struct flr_zk_write w[2] = {{"/lm/a", "b", 1, 0}, {"/lm/c", "d", 1, 0}};

    lossy_open(&l, "/lm");
    assert_int_equal(flr_zk_create(l.other, "/lm/a", "a", 1, 0, NULL, 0), 0);
    assert_int_equal(flr_zk_create(l.other, "/lm/c", "c", 1, 0, NULL, 0), 0);
    proxy_cut(&l.proxy, 0);
    assert_int_equal(flr_zk_set_many(l.zk, w, 2), 0);
    expect_data(l.other, "/lm/a", "b", 1);
    expect_data(l.other, "/lm/c", "d", 1);
    lossy_close(&l, "/lm");
}

static void test_get_is_retried_across_a_connection_loss(void **state)
{
    struct lossy l;

    lossy_open(&l, "/lg");
    assert_int_equal(flr_zk_create(l.other, "/lg/n", "data", 4, 0, NULL, 0), 0);
    proxy_cut(&l.proxy, 1);
    expect_data(l.zk, "/lg/n", "data", 0);
    lossy_close(&l, "/lg");
}

static void test_delete_with_lost_reply_succeeds(void **state)
{
    struct lossy l;

    lossy_open(&l, "/ld");
    assert_int_equal(flr_zk_create(l.other, "/ld/n", "a", 1, 0, NULL, 0), 0);
    proxy_cut(&l.proxy, 0);
    assert_int_equal(flr_zk_delete(l.zk, "/ld/n", 0), 0);
    assert_false(node_exists(l.other, "/ld/n"));
    lossy_close(&l, "/ld");
}

static void test_persistent_create_with_lost_reply_is_found_ours(void **state)
{
    struct lossy l;

    lossy_open(&l, "/lp");
    proxy_cut(&l.proxy, 0);
    assert_int_equal(flr_zk_create(l.zk, "/lp/n", "mine", 4, 0, NULL, 0), 0);
    expect_data(l.other, "/lp/n", "mine", 0);
    lossy_close(&l, "/lp");
}

static void test_persistent_sequential_create_with_lost_reply_is_not_repeated(void **state)
{
    struct lossy l;
    char **kids = NULL;
    int n = -1;

    lossy_open(&l, "/lps");
    proxy_cut(&l.proxy, 0);
    /* Which node is ours cannot be told, so the call fails rather than make a second. */
    assert_int_equal(flr_zk_create(l.zk, "/lps/e_", "ev", 2, FLR_ZK_SEQUENCE, NULL, 0), FLR_EZK);
    assert_int_equal(flr_zk_children(l.other, "/lps", 0, &kids, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(kids[0], "e_0000000000");
    flr_zk_free_names(kids, n);
    lossy_close(&l, "/lps");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_connects_and_reports_its_session),
        cmocka_unit_test(test_open_times_out_when_nobody_listens),
        cmocka_unit_test(test_open_rejects_bad_arguments),
        cmocka_unit_test(test_create_get_set_delete_follow_versions),
        cmocka_unit_test(test_create_reports_existing_node_and_missing_parent),
        cmocka_unit_test(test_set_many_writes_all_or_none),
        cmocka_unit_test(test_mkdirs_and_delete_tree),
        cmocka_unit_test(test_children_are_sorted_by_name),
        cmocka_unit_test(test_ephemeral_node_goes_with_its_session),
        cmocka_unit_test(test_sequential_create_returns_names_in_order),
        cmocka_unit_test(test_get_reads_a_big_node),
        cmocka_unit_test(test_child_and_data_watches_arrive_as_events),
        cmocka_unit_test(test_wait_event_wakes_on_an_event_and_leaves_it_queued),
        cmocka_unit_test(test_many_events_queue_in_order),
        cmocka_unit_test(test_exists_watch_fires_on_create_change_and_delete),
        cmocka_unit_test(test_session_expiry_then_reopen),
        cmocka_unit_test(test_calls_from_other_threads_survive_reopen),
        cmocka_unit_test(test_ephemeral_create_with_lost_reply_is_found_ours),
        cmocka_unit_test(test_ephemeral_create_with_lost_request_is_retried),
        cmocka_unit_test(test_ephemeral_create_after_loss_reports_another_owner),
        cmocka_unit_test(test_sequential_ephemeral_create_with_lost_reply_returns_its_name),
        cmocka_unit_test(test_versioned_set_with_lost_reply_succeeds),
        cmocka_unit_test(test_set_many_with_lost_reply_succeeds),
        cmocka_unit_test(test_get_is_retried_across_a_connection_loss),
        cmocka_unit_test(test_delete_with_lost_reply_succeeds),
        cmocka_unit_test(test_persistent_create_with_lost_reply_is_found_ours),
        cmocka_unit_test(test_persistent_sequential_create_with_lost_reply_is_not_repeated),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
