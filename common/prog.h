/*
 * prog.h - the start of every flr program's main: options, --help and friends, logging.
 */
#ifndef FLR_PROG_H
#define FLR_PROG_H

#include "opt.h"

/* The options every program of a cluster shares.  The config struct names its fields zk,
 * job and session_ms (FLR_OPTS_CLUSTER) and log_level (FLR_OPT_LOG_LEVEL). */
#define FLR_OPTS_CLUSTER(st)                                                                       \
    FLR_OPT_S("zk", st, zk, "127.0.0.1:2181", "HOST:PORT[,...]", "ZooKeeper hosts"),               \
        FLR_OPT_S("job", st, job, "demo", "NAME", "job name"),                                     \
        FLR_OPT_I("session-timeout", st, session_ms, "10000", 400, 120000, "MS",                   \
                  "ZooKeeper session timeout")
#define FLR_OPT_LOG_LEVEL(st, def)                                                                 \
    FLR_OPT_S("log-level", st, log_level, def, "LEVEL", "error, warning, notice, info or debug")

/*
 * Parses argc/argv (and any --config file) with the option table into cfg, answers
 * --help, --version and --dump-config, checks the log level (log_level is the cfg field
 * the table fills, read after parsing) and starts logging as info->prog.  Bad options
 * and bad config are reported as one line on stderr.
 *
 * Returns -1 when main should go on, or the exit code main should return: 0 after
 * --help, --version or --dump-config, 2 after a bad option or config.
 */
int flr_prog_init(const struct flr_opt *table, void *cfg, const struct flr_opts_info *info,
                  int argc, char **argv, const char *log_level);

#endif
