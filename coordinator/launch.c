#include "launch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "coord.h"

/* ---- local: the coordinator's own children -------------------------------------------- */

void coord_launch_env(void)
{
    const char *cur = getenv("GLIBC_TUNABLES");
    char buf[1024];

    if (cur && strstr(cur, "glibc.malloc.hugetlb"))
        return; /* the operator's choice */
    if (cur && *cur)
        snprintf(buf, sizeof(buf), "%s:glibc.malloc.hugetlb=1", cur);
    else
        snprintf(buf, sizeof(buf), "glibc.malloc.hugetlb=1");
    setenv("GLIBC_TUNABLES", buf, 1);
}

static struct coord_child *child_slot(struct coord *c, uint32_t id, int create)
{
    struct coord_child *v;

    for (size_t i = 0; i < c->nchildren; i++)
        if (c->children[i].id == id)
            return &c->children[i];
    if (!create || !(v = realloc(c->children, (c->nchildren + 1) * sizeof(*v))))
        return NULL;
    c->children = v;
    memset(&v[c->nchildren], 0, sizeof(*v));
    v[c->nchildren].id = id;
    return &v[c->nchildren++];
}

/* The flr-server to start: --server-bin, else the one beside this program. */
static void server_bin(const struct coord *c, char *buf, size_t len)
{
    char self[400];
    ssize_t n;

    if (c->cfg.server_bin[0]) {
        snprintf(buf, len, "%s", c->cfg.server_bin);
        return;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        char *slash;
        self[n] = 0;
        if ((slash = strrchr(self, '/')) != NULL) {
            *slash = 0;
            snprintf(buf, len, "%s/flr-server", self);
            if (access(buf, X_OK) == 0)
                return;
        }
    }
    snprintf(buf, len, "flr-server"); /* found through PATH */
}

static int local_start(struct coord *c, uint32_t id, char *why, size_t whylen)
{
    struct coord_child *ch = child_slot(c, id, 1);
    char bin[512], ids[16], session[24], logpath[512], args[512];
    char *argv[64];
    int argc = 0, logfd = -1;
    pid_t pid;

    if (!ch) {
        flr_why(why, whylen, "out of memory");
        return FLR_ENOMEM;
    }
    if (ch->pid > 0 && kill(ch->pid, 0) == 0) {
        /* What is left of the lost process (paused, or cut off from ZooKeeper): it must
         * not come back as a second server with this id. */
        flr_notice("launch.kill_stale",
                   "server %u: stopping its old process %d before the "
                   "replacement starts",
                   id, (int)ch->pid);
        kill(ch->pid, SIGKILL);
        waitpid(ch->pid, NULL, 0);
        ch->pid = 0;
    }
    server_bin(c, bin, sizeof(bin));
    snprintf(ids, sizeof(ids), "%u", id);
    snprintf(session, sizeof(session), "%lld", c->cfg.session_ms);
    argv[argc++] = bin;
    argv[argc++] = "--zk";
    argv[argc++] = c->cfg.zk;
    argv[argc++] = "--job";
    argv[argc++] = c->cfg.job;
    argv[argc++] = "--id";
    argv[argc++] = ids;
    argv[argc++] = "--session-timeout";
    argv[argc++] = session;
    argv[argc++] = "--log-level";
    argv[argc++] = c->cfg.log_level;
    snprintf(args, sizeof(args), "%s", c->cfg.server_args);
    for (char *tok = strtok(args, " \t"); tok && argc < 62; tok = strtok(NULL, " \t"))
        argv[argc++] = tok;
    argv[argc] = NULL;
    if (c->cfg.server_logs[0]) {
        snprintf(logpath, sizeof(logpath), "%s/server%u.log", c->cfg.server_logs, id);
        if ((logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
            flr_why(why, whylen, "cannot open %s: %s", logpath, strerror(errno));
            return FLR_EIO;
        }
    }
    fflush(NULL);
    if ((pid = fork()) < 0) {
        if (logfd >= 0)
            close(logfd);
        flr_why(why, whylen, "cannot fork: %s", strerror(errno));
        return FLR_EIO;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        if (logfd >= 0) {
            dup2(logfd, 1);
            dup2(logfd, 2);
        }
        execvp(bin, argv);
        fprintf(stderr, "flr-coordinator: cannot start %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    if (logfd >= 0)
        close(logfd);
    ch->pid = pid;
    ch->died_ms = 0;
    flr_info("launch.start", "server %u started as process %d (%s)", id, (int)pid, bin);
    return 0;
}

static int local_kill(struct coord *c, uint32_t id, int32_t pid, const char *host, char *why,
                      size_t whylen)
{
    struct coord_child *ch = child_slot(c, id, 0);

    (void)host;
    if (ch && ch->pid > 0) {
        if (pid > 0 && pid != ch->pid) {
            flr_why(why, whylen, "server %u runs as process %d, not one this coordinator started",
                    id, (int)pid);
            return FLR_EINVAL;
        }
        if (kill(ch->pid, SIGKILL) != 0) {
            flr_why(why, whylen, "cannot kill process %d: %s", (int)ch->pid, strerror(errno));
            return FLR_EIO;
        }
        return 0;
    }
    return coord_launcher_external.kill(c, id, pid, host, why, whylen);
}

static void local_poll(struct coord *c)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < c->nchildren; i++) {
            struct coord_child *ch = &c->children[i];
            if (ch->pid != pid)
                continue;
            ch->pid = 0;
            ch->died_ms = flr_wall_ms();
            ch->status = status;
            if (WIFSIGNALED(status))
                flr_warn("launch.exit", "server %u (process %d) was killed by signal %d", ch->id,
                         (int)pid, WTERMSIG(status));
            else if (WEXITSTATUS(status) != 0)
                flr_warn("launch.exit", "server %u (process %d) exited with status %d", ch->id,
                         (int)pid, WEXITSTATUS(status));
            else
                flr_info("launch.exit", "server %u (process %d) exited", ch->id, (int)pid);
        }
    }
}

static int64_t local_died_at(struct coord *c, uint32_t id)
{
    struct coord_child *ch = child_slot(c, id, 0);
    return ch && ch->pid == 0 ? ch->died_ms : 0;
}

static void local_stop(struct coord *c, int grace_ms)
{
    int64_t deadline = flr_now_ms() + grace_ms;
    int left;

    do {
        local_poll(c);
        left = 0;
        for (size_t i = 0; i < c->nchildren; i++)
            left += c->children[i].pid > 0;
        if (left)
            usleep(20 * 1000);
    } while (left && flr_now_ms() < deadline);
    for (size_t i = 0; i < c->nchildren; i++)
        if (c->children[i].pid > 0) {
            flr_warn("launch.stop", "server %u (process %d) did not exit: killing it",
                     c->children[i].id, (int)c->children[i].pid);
            kill(c->children[i].pid, SIGKILL);
            waitpid(c->children[i].pid, NULL, 0);
            c->children[i].pid = 0;
        }
}

const struct coord_launcher_ops coord_launcher_local = {
    .name = "local",
    .start = local_start,
    .kill = local_kill,
    .poll = local_poll,
    .died_at = local_died_at,
    .stop = local_stop,
};

/* ---- external: servers are someone else's ------------------------------------------------ */

static int external_start(struct coord *c, uint32_t id, char *why, size_t whylen)
{
    (void)c;
    (void)id;
    (void)why;
    (void)whylen;
    return 0; /* the recovery waits for a new or standby server to register */
}

static int external_kill(struct coord *c, uint32_t id, int32_t pid, const char *host, char *why,
                         size_t whylen)
{
    char me[64] = {0};

    (void)c;
    gethostname(me, sizeof(me) - 1);
    if (pid <= 0 || strcmp(host, me) != 0) {
        flr_why(why, whylen,
                "server %u runs on host '%s', not on this coordinator's host '%s': "
                "stop it there",
                id, host, me);
        return FLR_EINVAL;
    }
    if (kill(pid, SIGKILL) != 0) {
        flr_why(why, whylen, "cannot kill server %u (process %d): %s", id, (int)pid,
                strerror(errno));
        return FLR_EIO;
    }
    return 0;
}

static void external_poll(struct coord *c)
{
    (void)c;
}

static int64_t external_died_at(struct coord *c, uint32_t id)
{
    (void)c;
    (void)id;
    return 0;
}

static void external_stop(struct coord *c, int grace_ms)
{
    (void)c;
    (void)grace_ms;
}

const struct coord_launcher_ops coord_launcher_external = {
    .name = "external",
    .start = external_start,
    .kill = external_kill,
    .poll = external_poll,
    .died_at = external_died_at,
    .stop = external_stop,
};

const struct coord_launcher_ops *coord_launcher_find(const char *name)
{
    if (strcmp(name, "local") == 0)
        return &coord_launcher_local;
    if (strcmp(name, "external") == 0)
        return &coord_launcher_external;
    return NULL;
}
