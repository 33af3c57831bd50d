/*
 * elect.c - leader election among the coordinators of one job.
 *
 * Each coordinator creates an ephemeral-sequential node /flr/<job>/coordinators/c_NNNNNNNNNN
 * and watches only the candidate just before it, so a leader's death wakes exactly one
 * follower (no herd):
 *
 *     CANDIDATE --lowest sequence number--> LEADER
 *         |  ^
 *         |  +--predecessor's node deleted (it died or left): look again
 *         +-----session expired--> FAILED (our node is gone; give up)
 *
 * A leader stays leader for as long as its session lives; every wait of the coordinator
 * checks flr_zk_expired() and gives up when it is gone, because by then a follower may
 * already lead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/log.h"
#include "common/util.h"
#include "coord.h"

/* Returns the index of name in the sorted children, or -1. */
static int elect_index(char **names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

int coord_elect(struct coord *c, int *took_over, char *why, size_t whylen)
{
    char dir[FLR_PATH_MAX], path[FLR_PATH_MAX + 8], created[FLR_PATH_MAX + 16];
    char host[64] = {0}, *data;
    const char *mine;
    json_t *o;
    int rv, announced = 0;

    *took_over = 0;
    flr_job_path(dir, sizeof(dir), c->cfg.job, "/coordinators");
    if ((rv = flr_zk_mkdirs(c->zk, dir)) != 0) {
        flr_why(why, whylen, "cannot create %s: %s", dir, flr_strerror(rv));
        return rv;
    }
    gethostname(host, sizeof(host) - 1);
    /* "http" is where this coordinator's status endpoint listens: followers redirect to
     * the leader's, and flrctl finds the endpoint through it. */
    o = json_pack("{s:i s:s s:s}", "pid", (int)getpid(), "host", host, "http", c->http_url);
    data = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!data) {
        flr_why(why, whylen, "cannot join the election: %s", flr_strerror(FLR_ENOMEM));
        return FLR_ENOMEM;
    }
    snprintf(path, sizeof(path), "%s/c_", dir);
    rv = flr_zk_create(c->zk, path, data, (int)strlen(data), FLR_ZK_EPHEMERAL | FLR_ZK_SEQUENCE,
                       created, sizeof(created));
    free(data);
    if (rv != 0) {
        flr_why(why, whylen, "cannot join the election: %s", flr_strerror(rv));
        return rv;
    }
    mine = strrchr(created, '/') + 1;
    snprintf(c->candidate, sizeof(c->candidate), "%s", mine);

    while (!coord_stop) {
        char **names = NULL, pred[2 * FLR_PATH_MAX];
        int n = 0, idx, exists = 0;

        if ((rv = flr_zk_children(c->zk, dir, 0, &names, &n)) != 0) {
            flr_why(why, whylen, "cannot list candidates: %s", flr_strerror(rv));
            return rv;
        }
        idx = elect_index(names, n, c->candidate);
        if (idx < 0) {
            flr_zk_free_names(names, n);
            flr_why(why, whylen, "our candidate node %s is gone (session expired?)", created);
            return FLR_EZK_EXPIRED;
        }
        if (idx == 0) {
            flr_zk_free_names(names, n);
            return 0;
        }
        snprintf(pred, sizeof(pred), "%s/%s", dir, names[idx - 1]);
        flr_zk_free_names(names, n);
        /* Watch only the predecessor; if it is already gone, look again at once. */
        if ((rv = flr_zk_exists(c->zk, pred, 1, &exists)) != 0) {
            flr_why(why, whylen, "cannot watch %s: %s", pred, flr_strerror(rv));
            return rv;
        }
        if (!exists) {
            *took_over = 1;
            continue;
        }
        if (!announced) {
            flr_notice("coord.follower", "job %s: candidate %s follows %s", c->cfg.job,
                       c->candidate, strrchr(pred, '/') + 1);
            announced = 1;
        }
        for (;;) {
            struct flr_zk_event ev;
            if (coord_stop)
                break;
            if (flr_zk_expired(c->zk)) {
                flr_why(why, whylen, "ZooKeeper session expired while following");
                return FLR_EZK_EXPIRED;
            }
            if (flr_zk_next_event(c->zk, &ev, 200) != 0)
                continue;
            if (ev.kind == FLR_ZK_EV_DELETED && strcmp(ev.path, pred) == 0) {
                *took_over = 1;
                break;
            }
            if (ev.kind == FLR_ZK_EV_CONNECTED)
                break; /* watches may have been lost: look again */
        }
    }
    flr_why(why, whylen, "interrupted");
    return FLR_ECLOSED;
}
