#include "prog.h"

#include <stdio.h>

#include "log.h"

int flr_prog_init(const struct flr_opt *table, void *cfg, const struct flr_opts_info *info,
                  int argc, char **argv, const char *log_level)
{
    char why[512];
    int exit_now = 0, lvl;

    if (flr_opts_parse(table, cfg, info, argc, argv, stdout, &exit_now, why, sizeof(why)) != 0) {
        fprintf(stderr, "%s: %s\n", info->prog, why);
        return 2;
    }
    if (exit_now)
        return 0;
    if ((lvl = flr_log_level_parse(log_level)) < 0) {
        fprintf(stderr, "%s: --log-level: '%s' is not one of error, warning, notice, info, debug\n",
                info->prog, log_level);
        return 2;
    }
    flr_log_init(info->prog, lvl);
    return -1;
}
