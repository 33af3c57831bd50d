#include "testzk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *testzk_script(char *buf, size_t len)
{
    const char *src = getenv("FLR_SRCDIR");
    snprintf(buf, len, "%s/tests/zk.sh", src ? src : ".");
    return buf;
}

int flr_testzk_start(struct flr_testzk *z)
{
    char script[512], cmd[1024];
    const char *tmp = getenv("TMPDIR");
    FILE *p;

    memset(z, 0, sizeof(*z));
    snprintf(z->dir, sizeof(z->dir), "%s/flr-testzk-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(z->dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "'%s' start '%s'", testzk_script(script, sizeof(script)), z->dir);
    if (!(p = popen(cmd, "r"))) {
        perror("popen");
        return -1;
    }
    if (!fgets(z->hosts, sizeof(z->hosts), p))
        z->hosts[0] = 0;
    if (pclose(p) != 0 || !z->hosts[0]) {
        fprintf(stderr, "testzk: could not start ZooKeeper (%s)\n", cmd);
        z->hosts[0] = 0;
        return -1;
    }
    z->hosts[strcspn(z->hosts, "\r\n")] = 0;
    return 0;
}

void flr_testzk_stop(struct flr_testzk *z)
{
    char script[512], cmd[1024];

    if (!z->dir[0])
        return;
    snprintf(cmd, sizeof(cmd), "'%s' stop '%s'", testzk_script(script, sizeof(script)), z->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "testzk: stop failed (%s)\n", cmd);
    z->dir[0] = 0;
}
