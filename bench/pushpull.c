/*
 * pushpull.c - push and pull throughput between one worker and one flr-server.
 *
 * The program is the worker: it creates a one-worker, one-server, one-shard ASP job with
 * the coordinator's own functions (coord_create, coord_wait_servers, coord_assign),
 * starts a real flr-server process for it, opens the client library against it and times
 * flr_push and flr_pull over loopback TCP.  Every measured shape is one table of the job.
 * The server applies SGD on every push; at the end of each shape the values pulled last
 * are checked against the number of pushes, so a run also shows that the pushes landed.
 *
 * Figures (decimal units: MB = 1e6 bytes, GB = 1e9 bytes):
 *   ops/s      whole flr_push or flr_pull calls per second (each moves every key of the
 *              shape; the client may split it into several messages in flight at once);
 *   vals MB/s  value bytes per second: nkeys * dim * 4 per op;
 *   keys/s     keys per second: nkeys per op;
 *   GB/s       payload bytes per second, keys and values: nkeys * 8 + nkeys * dim * 4 per
 *              op.  A pull counts the same bytes as a push: its keys go to the server in
 *              the request and its values come back in the reply.  msgpack and nng
 *              framing, headers and acknowledgements are not counted.
 * Baseline: one TCP stream over 127.0.0.1, a thread writing 4 MiB buffers and the main
 * thread reading them, in GB/s of bytes received.
 *
 * Last line:
 *   pushpull: dense X GB/s, sparse Y Mkeys/s, loopback Z GB/s, ratio R
 * X is the best of the large-row dense shapes (1000 x 4KiB, 64 x 1MiB), each scored by
 * the mean of its push and pull GB/s; Y is the sparse 1M x 1 shape's mean of push and pull
 * keys/s in millions; Z is the loopback stream; R = X / Z.  A figure whose shapes were
 * not run (--shapes) prints as n/a.
 *
 * Life cycle: ZooKeeper (own, unless --zk) -> job -> flr-server -> client -> measure ->
 * close the client -> stop the server -> delete the job -> stop ZooKeeper -> remove the
 * temporary directory.  bench_cleanup() undoes whatever was reached, on success, on
 * failure and after SIGINT/SIGTERM (which only set a flag that every wait checks).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/spec.h"
#include "common/util.h"
#include "common/zk.h"
#include "coordinator/coord.h"
#include "worker/flr_client.h"

#ifndef FLR_SOURCE_DIR
#error "FLR_SOURCE_DIR must name the source tree (Makefile.am passes it)"
#endif
#ifndef FLR_BUILD_DIR
#error "FLR_BUILD_DIR must name the build tree (Makefile.am passes it)"
#endif

#define BENCH_LR        0.01f     /* SGD step size of every table */
#define BENCH_GRAD      0.25f     /* every pushed gradient component */
#define BENCH_DEFAULT_S 2.0       /* seconds per measurement */
#define BENCH_QUICK_S   0.5       /* seconds per measurement with --quick */
#define LB_CHUNK        (4 << 20) /* loopback write and read size */

struct bench_cfg {
    char zk[256];
    char server[512];
    double seconds;
    int quick;
    char shapes[256];
    long long max_keys;
    long long timeout_ms;
};

static const struct flr_opt bench_opts[] = {
    FLR_OPT_S("zk", struct bench_cfg, zk, "", "HOST:PORT",
              "ZooKeeper to use (default: start one on a free loopback port)"),
    FLR_OPT_S("server", struct bench_cfg, server, FLR_BUILD_DIR "/flr-server", "PATH",
              "the flr-server binary"),
    FLR_OPT_D("seconds", struct bench_cfg, seconds, "0", 0, 3600, "S",
              "time per measurement (0: 2, or 0.5 with --quick)"),
    FLR_OPT_B("quick", struct bench_cfg, quick, "false",
              "smaller shapes (a tenth of the keys or rows), for a smoke run"),
    FLR_OPT_S("shapes", struct bench_cfg, shapes, "", "LIST",
              "comma list of shapes to run: 10Mx1,1Mx1,1000x4KiB,64x1MiB (default: all)"),
    FLR_OPT_I("max-keys", struct bench_cfg, max_keys, "1048576", 1, 16777216, "N",
              "client keys per message before an op is split (flr_client_opts.max_keys)"),
    FLR_OPT_I("timeout", struct bench_cfg, timeout_ms, "60000", 1000, 3600000, "MS",
              "client per-request timeout"),
    {0},
};

/* A measured shape: one table, and every op moves all of its keys. */
struct shape {
    const char *id;    /* name for --shapes */
    const char *table; /* table name in the job spec */
    enum flr_table_kind kind;
    uint64_t keys;       /* keys per op (dense: the table's rows) */
    uint64_t quick_keys; /* the same with --quick */
    uint32_t dim;
    int large_rows; /* one of the shapes behind the dense figure */
};

static const struct shape bench_shapes[] = {
    {"10Mx1", "dense_10m", FLR_TABLE_DENSE, 10000000, 1000000, 1, 0},
    {"1Mx1", "sparse_1m", FLR_TABLE_SPARSE, 1000000, 100000, 1, 0},
    {"1000x4KiB", "rows_4kib", FLR_TABLE_DENSE, 1000, 100, 1024, 1},
    {"64x1MiB", "rows_1mib", FLR_TABLE_DENSE, 64, 8, 262144, 1},
};
#define NSHAPES FLR_ARRAY_LEN(bench_shapes)

struct dir_result {
    double ops_s, vals_mb_s, keys_s, gb_s;
};

struct shape_result {
    int ran;
    struct dir_result push, pull;
};

struct bench {
    struct bench_cfg cfg;
    double seconds;
    int selected[NSHAPES];
    char job[64];
    char tmpdir[256];
    char zkdir[300];
    char server_log[300];
    int zk_started; /* zk.sh start was run (it may have left a server behind) */
    struct coord coord;
    struct flr_client *client;
    struct shape_result res[NSHAPES];
    double loopback_gb_s;
};

/* Set by SIGINT/SIGTERM; every loop and wait checks it. */
static volatile sig_atomic_t bench_stop;
/* The flr-server child: its pid, and whether the SIGCHLD handler has reaped it. */
static volatile sig_atomic_t server_pid;
static volatile sig_atomic_t server_reaped;
static volatile sig_atomic_t server_status;

static void bench_on_stop(int sig)
{
    (void)sig;
    bench_stop = 1;
    coord_stop = 1;
}

/* A server that exits on its own is a failure: reap it and make every wait give up. */
static void bench_on_child(int sig)
{
    int saved = errno, st;
    pid_t pid = (pid_t)server_pid;

    (void)sig;
    if (pid > 0 && !server_reaped && waitpid(pid, &st, WNOHANG) == pid) {
        server_status = st;
        server_reaped = 1;
        coord_stop = 1;
    }
    errno = saved;
}

static double now_s(void)
{
    return (double)flr_now_ns() / 1e9;
}

/* ---- child processes ------------------------------------------------------------------ */

/* Waits for pid, retrying on EINTR. Returns its wait status, or -1. */
static int wait_child(pid_t pid)
{
    int st;

    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return st;
}

/* Runs argv (a script), its stdout into out (NUL-terminated, trailing newline cut) when
 * out is given.  Returns 0 when it exits with status 0. */
static int run_script(char *const argv[], char *out, size_t outlen)
{
    int fds[2] = {-1, -1}, st;
    size_t have = 0;
    pid_t pid;

    if (out && pipe(fds) != 0)
        return -1;
    if ((pid = fork()) < 0) {
        if (out) {
            close(fds[0]);
            close(fds[1]);
        }
        return -1;
    }
    if (pid == 0) {
        if (out) {
            dup2(fds[1], STDOUT_FILENO);
            close(fds[0]);
            close(fds[1]);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (out) {
        close(fds[1]);
        for (;;) {
            ssize_t n = read(fds[0], out + have, outlen - 1 - have);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            have += (size_t)n;
            if (have == outlen - 1)
                break;
        }
        close(fds[0]);
        out[have] = '\0';
        while (have > 0 && (out[have - 1] == '\n' || out[have - 1] == '\r'))
            out[--have] = '\0';
    }
    st = wait_child(pid);
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Asks the ZooKeeper at 127.0.0.1:port for "srvr": true once it serves requests. */
static int zk_serving(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[64] = {0};
    size_t have = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok = 0;

    if (fd < 0)
        return 0;
    if (connect(fd, (void *)&a, sizeof(a)) == 0 && send(fd, "srvr", 4, MSG_NOSIGNAL) == 4) {
        ssize_t n;
        while (have < sizeof(buf) - 1 && (n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0)) > 0)
            have += (size_t)n;
        ok = strncmp(buf, "Zookeeper version", 17) == 0;
    }
    close(fd);
    return ok;
}

static int zk_start(struct bench *b)
{
    char script[600], *argv[4];
    const char *colon;
    int64_t deadline;

    snprintf(script, sizeof(script), "%s/tests/zk.sh", FLR_SOURCE_DIR);
    argv[0] = script;
    argv[1] = "start";
    argv[2] = b->zkdir;
    argv[3] = NULL;
    b->zk_started = 1;
    if (run_script(argv, b->cfg.zk, sizeof(b->cfg.zk)) != 0 || !(colon = strrchr(b->cfg.zk, ':'))) {
        fprintf(stderr, "pushpull: could not start ZooKeeper with %s\n", script);
        return -1;
    }
    /* zk.sh returns once the server answers "ruok", which it does before it serves
     * sessions; a session opened in between is dropped and retried, and the ZooKeeper
     * client logs every drop.  Waiting for "srvr" keeps those lines out of the output. */
    deadline = flr_now_ms() + 10000;
    while (!zk_serving(atoi(colon + 1)) && flr_now_ms() < deadline && !bench_stop)
        usleep(20 * 1000);
    return bench_stop ? -1 : 0;
}

static void zk_stop(struct bench *b)
{
    char script[600], *argv[4];

    if (!b->zk_started)
        return;
    snprintf(script, sizeof(script), "%s/tests/zk.sh", FLR_SOURCE_DIR);
    argv[0] = script;
    argv[1] = "stop";
    argv[2] = b->zkdir;
    argv[3] = NULL;
    if (run_script(argv, NULL, 0) != 0)
        fprintf(stderr, "pushpull: zk.sh stop %s failed\n", b->zkdir);
    b->zk_started = 0;
}

/* Starts flr-server for the job, its stdout and stderr into the log file. */
static int server_start(struct bench *b)
{
    char *argv[] = {b->cfg.server, "--zk",     b->cfg.zk,           "--job", b->job, "--id",
                    "0",           "--listen", "tcp://127.0.0.1:0", NULL};
    pid_t pid;

    if (access(b->cfg.server, X_OK) != 0) {
        fprintf(stderr, "pushpull: %s is not executable (build it: make flr-server)\n",
                b->cfg.server);
        return -1;
    }
    if ((pid = fork()) < 0) {
        perror("pushpull: fork");
        return -1;
    }
    if (pid == 0) {
        int fd = open(b->server_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        /* Its own process group keeps a terminal's ^C away from it, so that the bench
         * stops it in order; the death signal covers the bench being killed. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    server_pid = pid;
    return 0;
}

/* Stops the server (SIGTERM, up to 5 s, then SIGKILL) and reaps it. */
static void server_stop(void)
{
    pid_t pid = (pid_t)server_pid;
    int64_t deadline;

    if (pid <= 0)
        return;
    if (!server_reaped) {
        kill(pid, SIGTERM);
        deadline = flr_now_ms() + 5000;
        for (;;) {
            int st;
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid || (r < 0 && errno == ECHILD))
                break; /* reaped here or by the SIGCHLD handler */
            if (flr_now_ms() > deadline) {
                kill(pid, SIGKILL);
                if (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                    continue;
                break;
            }
            usleep(10 * 1000);
        }
    }
    server_pid = 0;
}

/* Prints the end of the server's log (after a failure). */
static void server_log_tail(const struct bench *b)
{
    char line[1024], ring[20][1024];
    int n = 0;
    FILE *f = fopen(b->server_log, "r");

    if (!f)
        return;
    while (fgets(line, sizeof(line), f))
        snprintf(ring[n++ % 20], sizeof(ring[0]), "%s", line);
    fclose(f);
    fprintf(stderr, "pushpull: last lines of the flr-server log:\n");
    for (int i = n > 20 ? n - 20 : 0; i < n; i++)
        fprintf(stderr, "  %s", ring[i % 20]);
}

static void server_report_exit(const struct bench *b)
{
    int st = (int)server_status;

    if (!server_reaped)
        return;
    if (WIFEXITED(st))
        fprintf(stderr, "pushpull: flr-server exited with status %d\n", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        fprintf(stderr, "pushpull: flr-server was killed by signal %d\n", WTERMSIG(st));
    server_log_tail(b);
}

/* ---- the job ---------------------------------------------------------------------------- */

static void bench_build_spec(struct bench *b, struct flr_job_spec *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->job, sizeof(s->job), "%s", b->job);
    snprintf(s->model, sizeof(s->model), "pushpull");
    s->consistency = FLR_ASP;
    s->num_workers = 1;
    s->num_servers = 1;
    s->num_shards = 1;
    snprintf(s->recovery, sizeof(s->recovery), "none");
    s->k = 1;
    s->seed = 1;
    for (size_t i = 0; i < NSHAPES; i++) {
        const struct shape *sh = &bench_shapes[i];
        struct flr_table_spec *t;

        if (!b->selected[i])
            continue;
        t = &s->tables[s->ntables++];
        flr_table_spec_defaults(t);
        t->id = (uint32_t)i;
        snprintf(t->name, sizeof(t->name), "%s", sh->table);
        t->kind = sh->kind;
        t->rows = sh->kind == FLR_TABLE_DENSE ? (b->cfg.quick ? sh->quick_keys : sh->keys) : 0;
        t->dim = sh->dim;
        t->init = FLR_INIT_ZEROS;
        t->seed = 1;
        t->optim = FLR_OPT_SGD;
        t->lr = BENCH_LR;
    }
}

static int bench_setup(struct bench *b)
{
    struct coord *c = &b->coord;
    struct flr_client_opts o;
    char why[512];
    int rv;

    if (!b->cfg.zk[0] && zk_start(b) != 0)
        return -1;

    snprintf(c->cfg.zk, sizeof(c->cfg.zk), "%s", b->cfg.zk);
    snprintf(c->cfg.job, sizeof(c->cfg.job), "%s", b->job);
    snprintf(c->cfg.recovery, sizeof(c->cfg.recovery), "none");
    c->cfg.workers = 1;
    c->cfg.servers = 1;
    c->cfg.shards = 1;
    c->cfg.consistency = FLR_ASP;
    c->cfg.k = 1;
    c->cfg.session_ms = 10000;
    c->cfg.server_timeout_ms = 30000;
    c->cfg.reset = 1;
    bench_build_spec(b, &c->spec);
    if ((rv = flr_spec_validate(&c->spec, why, sizeof(why))) != 0) {
        fprintf(stderr, "pushpull: bad job spec: %s\n", why);
        return -1;
    }
    if ((rv = flr_zk_open(&c->zk, c->cfg.zk, (int)c->cfg.session_ms, 10000, why, sizeof(why))) !=
        0) {
        fprintf(stderr, "pushpull: ZooKeeper %s: %s\n", c->cfg.zk, why);
        return -1;
    }
    if ((rv = coord_create(c, why, sizeof(why))) != 0) {
        fprintf(stderr, "pushpull: creating job %s: %s\n", b->job, why);
        return -1;
    }
    if (server_start(b) != 0)
        return -1;
    if ((rv = coord_wait_servers(c, why, sizeof(why))) != 0 ||
        (rv = coord_assign(c, why, sizeof(why))) != 0) {
        if (server_reaped)
            server_report_exit(b);
        else if (!bench_stop)
            fprintf(stderr, "pushpull: starting the job: %s\n", why);
        return -1;
    }

    flr_client_opts_default(&o);
    o.zk = b->cfg.zk;
    o.job = b->job;
    o.worker_id = 0;
    o.max_keys = (uint32_t)b->cfg.max_keys;
    o.timeout_ms = (int)b->cfg.timeout_ms;
    o.start_timeout_ms = 30000;
    if ((rv = flr_client_open(&b->client, &o, why, sizeof(why))) != 0) {
        fprintf(stderr, "pushpull: opening the client: %s\n", why);
        return -1;
    }
    return 0;
}

static void bench_cleanup(struct bench *b)
{
    struct coord *c = &b->coord;
    char path[FLR_PATH_MAX];

    if (b->client) {
        flr_client_close(b->client);
        b->client = NULL;
    }
    server_stop();
    if (c->zk) {
        /* The job's tree goes too, so that a shared ZooKeeper keeps nothing of the run. */
        flr_job_path(path, sizeof(path), b->job, "");
        (void)flr_zk_delete_tree(c->zk, path);
        flr_zk_close(c->zk);
        c->zk = NULL;
    }
    zk_stop(b);
    if (b->tmpdir[0]) {
        unlink(b->server_log);
        rmdir(b->zkdir); /* zk.sh stop removes it; this covers a start that never ran */
        if (rmdir(b->tmpdir) != 0)
            fprintf(stderr, "pushpull: could not remove %s: %s\n", b->tmpdir, strerror(errno));
        b->tmpdir[0] = '\0';
    }
}

/* ---- measurements ----------------------------------------------------------------------- */

static int key_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Fills keys[0..n) with the shape's sorted, distinct keys: dense rows 0..n-1, or n
 * hashed sparse row ids. */
static void bench_keys(uint32_t table, enum flr_table_kind kind, uint64_t *keys, uint64_t n)
{
    uint64_t have = 0, next = 0;

    if (kind == FLR_TABLE_DENSE) {
        for (uint64_t i = 0; i < n; i++)
            keys[i] = flr_key(table, i);
        return;
    }
    while (have < n) {
        uint64_t kept = 0;
        while (have < n)
            keys[have++] = flr_key(table, flr_mix64(next++));
        qsort(keys, have, sizeof(*keys), key_cmp);
        for (uint64_t i = 0; i < have; i++)
            if (kept == 0 || keys[i] != keys[kept - 1])
                keys[kept++] = keys[i];
        have = kept;
    }
}

static int bench_op(struct bench *b, int push, uint32_t table, const uint64_t *keys, uint32_t n,
                    float *vals, const float *grads)
{
    int rv = push ? flr_push(b->client, table, keys, n, grads)
                  : flr_pull(b->client, table, keys, n, vals);
    if (rv != 0)
        fprintf(stderr, "pushpull: %s of table %u failed: %s (%s)\n", push ? "push" : "pull", table,
                flr_strerror(rv), flr_client_last_error(b->client));
    return rv;
}

/* One warm-up op, then ops until the time is up.  *nops counts every op, warm-up
 * included. */
static int bench_dir(struct bench *b, int push, uint32_t table, const uint64_t *keys, uint32_t n,
                     uint32_t dim, float *vals, const float *grads, uint64_t *nops,
                     struct dir_result *r)
{
    double t0, t, vbytes = (double)n * dim * 4, kbytes = (double)n * 8;
    uint64_t ops = 0;

    if (bench_op(b, push, table, keys, n, vals, grads) != 0)
        return -1;
    (*nops)++;
    t0 = now_s();
    do {
        if (bench_stop)
            return -1;
        if (bench_op(b, push, table, keys, n, vals, grads) != 0)
            return -1;
        ops++;
        (*nops)++;
        t = now_s() - t0;
    } while (t < b->seconds);
    r->ops_s = (double)ops / t;
    r->vals_mb_s = r->ops_s * vbytes / 1e6;
    r->keys_s = r->ops_s * n;
    r->gb_s = r->ops_s * (kbytes + vbytes) / 1e9;
    return 0;
}

static void print_row(const char *label, const char *dir, const struct dir_result *r)
{
    printf("%-22s %-4s %10.2f %11.1f %14.0f %8.3f\n", label, dir, r->ops_s, r->vals_mb_s, r->keys_s,
           r->gb_s);
    fflush(stdout);
}

/* Every pushed gradient is BENCH_GRAD and rows start at zero, so after p pushes (all
 * applied before the last pull began) each value is -p * lr * grad. */
static int bench_check(const float *vals, uint64_t n, uint32_t dim, uint64_t pushes,
                       const char *label)
{
    double want = -(double)pushes * BENCH_LR * BENCH_GRAD;
    size_t idx[3] = {0, (size_t)(n * dim / 2), (size_t)(n * dim - 1)};

    for (int i = 0; i < 3; i++) {
        double got = vals[idx[i]], err = got - want;
        if (err < 0)
            err = -err;
        if (err > 1e-3 * -want + 1e-6) {
            fprintf(stderr,
                    "pushpull: %s: value %zu is %.6g after %llu pushes, expected %.6g: the "
                    "server did not apply every push\n",
                    label, idx[i], got, (unsigned long long)pushes, want);
            return -1;
        }
    }
    return 0;
}

static int bench_shape(struct bench *b, size_t i)
{
    const struct shape *sh = &bench_shapes[i];
    uint64_t n = b->cfg.quick ? sh->quick_keys : sh->keys, pushes = 0, pulls = 0;
    size_t nvals = (size_t)n * sh->dim;
    uint64_t *keys = malloc((size_t)n * sizeof(*keys));
    float *vals = malloc(nvals * sizeof(*vals)), *grads = malloc(nvals * sizeof(*grads));
    char label[64], rowlab[16];
    int rv = -1;

    if (!keys || !vals || !grads) {
        fprintf(stderr, "pushpull: out of memory for shape %s\n", sh->id);
        goto out;
    }
    if (sh->dim * 4 >= 1024 * 1024)
        snprintf(rowlab, sizeof(rowlab), "%uMiB", sh->dim * 4 / (1024 * 1024));
    else if (sh->dim * 4 >= 1024)
        snprintf(rowlab, sizeof(rowlab), "%uKiB", sh->dim * 4 / 1024);
    else
        snprintf(rowlab, sizeof(rowlab), "%u", sh->dim);
    snprintf(label, sizeof(label), "%llu x %s %s", (unsigned long long)n, rowlab,
             sh->kind == FLR_TABLE_DENSE ? "dense" : "sparse");
    bench_keys((uint32_t)i, sh->kind, keys, n);
    for (size_t j = 0; j < nvals; j++)
        grads[j] = BENCH_GRAD;

    /* Pushes first: a sparse shape's rows are created by its first push, so the pulls
     * read existing rows. */
    if (bench_dir(b, 1, (uint32_t)i, keys, (uint32_t)n, sh->dim, vals, grads, &pushes,
                  &b->res[i].push) != 0)
        goto out;
    print_row(label, "push", &b->res[i].push);
    if (bench_dir(b, 0, (uint32_t)i, keys, (uint32_t)n, sh->dim, vals, grads, &pulls,
                  &b->res[i].pull) != 0)
        goto out;
    print_row(label, "pull", &b->res[i].pull);
    if (bench_check(vals, n, sh->dim, pushes, label) != 0)
        goto out;
    b->res[i].ran = 1;
    rv = 0;
out:
    free(keys);
    free(vals);
    free(grads);
    return rv;
}

/* ---- loopback baseline ------------------------------------------------------------------ */

struct lb_writer {
    int fd;
    atomic_int stop;
};

static void *lb_write(void *arg)
{
    struct lb_writer *w = arg;
    char *buf = malloc(LB_CHUNK);

    if (!buf)
        return NULL;
    memset(buf, 0x5a, LB_CHUNK);
    while (!atomic_load(&w->stop)) {
        size_t off = 0;
        while (off < LB_CHUNK) {
            ssize_t n = send(w->fd, buf + off, LB_CHUNK - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                goto done;
            off += (size_t)n;
        }
    }
done:
    free(buf);
    return NULL;
}

/* One TCP stream over 127.0.0.1 for the configured time; returns GB/s received, or -1. */
static double bench_loopback(const struct bench *b)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    struct lb_writer w = {.fd = -1};
    int lfd = -1, rfd = -1, started = 0;
    double gbs = -1, t0 = 0, t = 0;
    uint64_t bytes = 0;
    pthread_t th;
    char *buf = malloc(LB_CHUNK);

    if (!buf)
        return -1;
    if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 || bind(lfd, (void *)&a, sizeof(a)) != 0 ||
        listen(lfd, 1) != 0 || getsockname(lfd, (void *)&a, &alen) != 0)
        goto out;
    if ((w.fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(w.fd, (void *)&a, sizeof(a)) != 0)
        goto out;
    if ((rfd = accept(lfd, NULL, NULL)) < 0)
        goto out;
    if (pthread_create(&th, NULL, lb_write, &w) != 0)
        goto out;
    started = 1;
    /* The first 4 MiB warm the connection up; the clock starts after them. */
    for (uint64_t warm = 0; warm < LB_CHUNK;) {
        ssize_t n = recv(rfd, buf, LB_CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        warm += (uint64_t)n;
    }
    t0 = now_s();
    do {
        ssize_t n = recv(rfd, buf, LB_CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        bytes += (uint64_t)n;
        t = now_s() - t0;
    } while (t < b->seconds && !bench_stop);
    gbs = (double)bytes / t / 1e9;
out:
    if (started) {
        atomic_store(&w.stop, 1);
        /* Wakes a writer blocked in send(). */
        shutdown(w.fd, SHUT_RDWR);
        pthread_join(th, NULL);
    }
    if (rfd >= 0)
        close(rfd);
    if (w.fd >= 0)
        close(w.fd);
    if (lfd >= 0)
        close(lfd);
    free(buf);
    if (gbs < 0 && !bench_stop)
        fprintf(stderr, "pushpull: loopback baseline failed: %s\n", strerror(errno));
    return gbs;
}

/* ---- main ------------------------------------------------------------------------------- */

static int bench_select(struct bench *b)
{
    char list[sizeof(b->cfg.shapes)], *save = NULL;

    if (!b->cfg.shapes[0]) {
        for (size_t i = 0; i < NSHAPES; i++)
            b->selected[i] = 1;
        return 0;
    }
    snprintf(list, sizeof(list), "%s", b->cfg.shapes);
    for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        size_t i;
        for (i = 0; i < NSHAPES; i++)
            if (strcasecmp(tok, bench_shapes[i].id) == 0)
                break;
        if (i == NSHAPES) {
            fprintf(stderr, "pushpull: --shapes: unknown shape '%s'; known:", tok);
            for (i = 0; i < NSHAPES; i++)
                fprintf(stderr, " %s", bench_shapes[i].id);
            fprintf(stderr, "\n");
            return -1;
        }
        b->selected[i] = 1;
    }
    return 0;
}

static void print_summary(const struct bench *b)
{
    double dense = -1, sparse = -1;
    char xs[32] = "n/a", ys[32] = "n/a", zs[32] = "n/a", rs[32] = "n/a";

    for (size_t i = 0; i < NSHAPES; i++) {
        const struct shape_result *r = &b->res[i];
        if (!r->ran)
            continue;
        if (bench_shapes[i].large_rows) {
            double g = (r->push.gb_s + r->pull.gb_s) / 2;
            if (g > dense)
                dense = g;
        } else if (bench_shapes[i].kind == FLR_TABLE_SPARSE) {
            sparse = (r->push.keys_s + r->pull.keys_s) / 2 / 1e6;
        }
    }
    if (dense >= 0)
        snprintf(xs, sizeof(xs), "%.2f", dense);
    if (sparse >= 0)
        snprintf(ys, sizeof(ys), "%.2f", sparse);
    if (b->loopback_gb_s > 0)
        snprintf(zs, sizeof(zs), "%.2f", b->loopback_gb_s);
    if (dense >= 0 && b->loopback_gb_s > 0)
        snprintf(rs, sizeof(rs), "%.2f", dense / b->loopback_gb_s);
    printf("pushpull: dense %s GB/s, sparse %s Mkeys/s, loopback %s GB/s, ratio %s\n", xs, ys, zs,
           rs);
}

int main(int argc, char **argv)
{
    static struct bench b;
    const struct flr_opts_info info = {"pushpull",
                                       "push/pull throughput of one worker against one "
                                       "flr-server over loopback TCP",
                                       PACKAGE_VERSION};
    struct sigaction sa = {0};
    char why[512];
    int exit_now = 0, rv = 1;

    if (flr_opts_parse(bench_opts, &b.cfg, &info, argc, argv, stdout, &exit_now, why,
                       sizeof(why)) != 0) {
        fprintf(stderr, "pushpull: %s\n", why);
        return 2;
    }
    if (exit_now)
        return 0;
    if (bench_select(&b) != 0)
        return 2;
    b.seconds = b.cfg.seconds > 0 ? b.cfg.seconds : b.cfg.quick ? BENCH_QUICK_S : BENCH_DEFAULT_S;
    /* The coordinator functions log their progress; only problems matter here. */
    flr_log_init("pushpull", LOG_WARNING);

    /* No SA_RESTART for the stop signals: a blocked wait returns and sees the flag. */
    sa.sa_handler = bench_on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = bench_on_child;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    snprintf(b.job, sizeof(b.job), "pushpull-%d", (int)getpid());
    {
        const char *tmp = getenv("TMPDIR");
        snprintf(b.tmpdir, sizeof(b.tmpdir), "%s/flr-pushpull.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    }
    if (!mkdtemp(b.tmpdir)) {
        fprintf(stderr, "pushpull: cannot create %s: %s\n", b.tmpdir, strerror(errno));
        return 1;
    }
    snprintf(b.zkdir, sizeof(b.zkdir), "%s/zk", b.tmpdir);
    snprintf(b.server_log, sizeof(b.server_log), "%s/flr-server.log", b.tmpdir);

    if (bench_setup(&b) != 0)
        goto out;

    printf("pushpull: 1 worker -> 1 flr-server (1 shard, ASP, SGD lr %g) over tcp://127.0.0.1, "
           "max_keys %lld per message, %.2g s per measurement%s\n",
           (double)BENCH_LR, b.cfg.max_keys, b.seconds, b.cfg.quick ? ", quick shapes" : "");
    printf("units: MB = 1e6 B, GB = 1e9 B; per op: vals = nkeys*dim*4 B, GB/s counts "
           "keys + vals = nkeys*8 + nkeys*dim*4 B (push and pull alike)\n");
    printf("%-22s %-4s %10s %11s %14s %8s\n", "shape", "dir", "ops/s", "vals MB/s", "keys/s",
           "GB/s");
    fflush(stdout);
    for (size_t i = 0; i < NSHAPES; i++) {
        if (!b.selected[i])
            continue;
        if (bench_shape(&b, i) != 0) {
            if (server_reaped)
                server_report_exit(&b);
            goto out;
        }
    }
    if ((b.loopback_gb_s = bench_loopback(&b)) < 0)
        goto out;
    printf("loopback tcp 127.0.0.1, one stream, %d MiB writes: %.3f GB/s\n", LB_CHUNK >> 20,
           b.loopback_gb_s);
    print_summary(&b);
    rv = 0;
out:
    if (bench_stop)
        fprintf(stderr, "pushpull: interrupted\n");
    bench_cleanup(&b);
    return bench_stop ? 130 : rv;
}
