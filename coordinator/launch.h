/*
 * launch.h - how the coordinator gets a server process for a lost one.
 *
 * A launcher is an ops table, chosen with --launcher:
 *
 *   local     the coordinator starts flr-server processes itself (the demo's and the
 *             tests' mode): the job's servers and standbys when it creates the job, and a
 *             replacement with the lost server's id when one is lost.  It reaps its
 *             children and knows when each one died.
 *   external  something else starts servers (systemd Restart=, docker restart:, an
 *             operator).  The coordinator starts nothing: a recovery waits until a new or
 *             STANDBY server registers and hands it the shards.  A STANDBY server
 *             registered in advance takes over at once.
 *
 * Both can kill a server for drills: local by the child's pid, external by the pid in the
 * server's record when it runs on this host.
 */
#ifndef FLR_LAUNCH_H
#define FLR_LAUNCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct coord;

/*
 * Asks glibc, in the environment the local launcher's children inherit, to back the
 * heap with transparent huge pages (GLIBC_TUNABLES glibc.malloc.hugetlb=1) unless the
 * operator chose otherwise.  A server's rebuild and a large pull receive into freshly
 * allocated messages; with 4 KiB pages faulting them in costs more than the copy.  Call
 * before any thread starts (it changes the environment).
 */
void coord_launch_env(void);

struct coord_launcher_ops {
    const char *name;
    /* Starts server `id` (local) or does nothing (external).  Returns 0 or an error with
     * a reason. */
    int (*start)(struct coord *c, uint32_t id, char *why, size_t whylen);
    /* Sends SIGKILL to server `id`, whose record says it runs as pid on host. */
    int (*kill)(struct coord *c, uint32_t id, int32_t pid, const char *host, char *why,
                size_t whylen);
    /* Reaps children that exited; returns the wall-clock ms at which server `id` was last
     * seen to die (0 when unknown), via died_ms. */
    void (*poll)(struct coord *c);
    int64_t (*died_at)(struct coord *c, uint32_t id);
    /* At the end of the job: waits up to grace_ms for children to exit, then kills them. */
    void (*stop)(struct coord *c, int grace_ms);
};

extern const struct coord_launcher_ops coord_launcher_local;
extern const struct coord_launcher_ops coord_launcher_external;

/* Returns the ops for "local" or "external", or NULL. */
const struct coord_launcher_ops *coord_launcher_find(const char *name);

/* The children of the local launcher (one slot per server id that it started). */
struct coord_child {
    uint32_t id;
    pid_t pid; /* 0 when not running */
    int64_t died_ms;
    int status; /* wait status of the last exit */
};

#endif
