/*
 * testzk.h - a real ZooKeeper server for C tests, started through tests/zk.sh on a free
 * loopback port with a temporary data directory.
 */
#ifndef FLR_TESTZK_H
#define FLR_TESTZK_H

struct flr_testzk {
    char dir[256];
    char hosts[64]; /* "127.0.0.1:PORT" */
};

/* Starts the server; returns 0, or -1 after printing why to stderr. */
int flr_testzk_start(struct flr_testzk *z);

/* Stops it and removes its directory (safe to call twice). */
void flr_testzk_stop(struct flr_testzk *z);

#endif
