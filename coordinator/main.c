/*
 * flr-coordinator - creates a job in ZooKeeper, assigns its shards to the servers that
 * register, starts the workers, waits for them, and reports.  Several may run for one job:
 * one leads, the others wait in line and the next takes over if the leader dies.
 */
#include "config.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/prog.h"
#include "coord.h"
#include "http.h"
#include "worker/model.h"

static void coord_on_signal(int sig)
{
    (void)sig;
    coord_stop = 1;
}

static const char *const consistency_choices[] = {"bsp", "ssp", "asp", NULL};
static const char *const launcher_choices[] = {"local", "external", NULL};
static const char *const optimizer_choices[] = {"default", "sgd",  "momentum",
                                                "adagrad", "adam", NULL};

static const struct flr_opt coord_opts[] = {
    FLR_OPTS_CLUSTER(struct coord_cfg),
    FLR_OPT_S("model", struct coord_cfg, model, "softmax", "NAME",
              "model the workers train: softmax, mlp, ctr, or oracle (integer gradients, for "
              "exactly-once checks)"),
    FLR_OPT_I("workers", struct coord_cfg, workers, "4", 1, 4096, "N", "number of workers"),
    FLR_OPT_I("servers", struct coord_cfg, servers, "2", 1, 1024, "N", "number of servers"),
    FLR_OPT_I("shards", struct coord_cfg, shards, "0", 0, 65536, "N",
              "number of shards (0 = 4 per server)"),
    FLR_OPT_E("consistency", struct coord_cfg, consistency, "bsp", consistency_choices,
              "consistency model"),
    FLR_OPT_I("staleness", struct coord_cfg, staleness, "2", 0, 1000000, "S",
              "SSP staleness bound (clocks)"),
    FLR_OPT_E("optimizer", struct coord_cfg, optimizer, "default", optimizer_choices,
              "server-side optimizer (default: the model's)"),
    FLR_OPT_D("lr", struct coord_cfg, lr, "0", 0, 1000, "RATE",
              "learning rate (0 = the model's default)"),
    FLR_OPT_I("hidden", struct coord_cfg, hidden, "128", 1, 4194304, "N",
              "MLP hidden units (the oracle model: its dense width)"),
    FLR_OPT_I("seed", struct coord_cfg, seed, "1", 0, INT64_MAX, "N", "initialiser seed"),
    FLR_OPT_S("recovery", struct coord_cfg, recovery, "flr", "MODE",
              "recovery mode: flr (rebuild lost shards from the workers' copies and "
              "update logs) or none (lost rows start again from their initialisers)"),
    FLR_OPT_I("k", struct coord_cfg, k, "2", 1, 16, "K",
              "flr: every row keeps K - 1 copies on workers besides its server, so K - 1 servers "
              "may be lost at once without losing an update"),
    FLR_OPT_S("report", struct coord_cfg, report, "", "FILE", "write a JSON report to FILE"),
    FLR_OPT_I("server-timeout", struct coord_cfg, server_timeout_ms, "60000", 100, 86400000, "MS",
              "how long to wait for servers to register and load their shards"),
    FLR_OPT_I("job-timeout", struct coord_cfg, job_timeout_ms, "0", 0, INT64_MAX, "MS",
              "give up when the workers have not finished by then (0 = never)"),
    FLR_OPT_B("reset", struct coord_cfg, reset, "false",
              "replace a job of the same name that has not finished"),
    FLR_OPT_E("launcher", struct coord_cfg, launcher_kind, "external", launcher_choices,
              "who starts servers: local (this coordinator starts and replaces them) or "
              "external (systemd, docker or an operator does; standbys take over)"),
    FLR_OPT_S("server-bin", struct coord_cfg, server_bin, "", "PATH",
              "local launcher: the flr-server to start (default: the one beside this program)"),
    FLR_OPT_S("server-args", struct coord_cfg, server_args, "", "ARGS",
              "local launcher: extra arguments for every server, space-separated"),
    FLR_OPT_S("server-logs", struct coord_cfg, server_logs, "", "DIR",
              "local launcher: write each server's log to DIR/server<ID>.log"),
    FLR_OPT_I("standby", struct coord_cfg, standby, "0", 0, 1024, "N",
              "local launcher: also start N standby servers, ready to take over"),
    FLR_OPT_I("kills", struct coord_cfg, kills, "0", 0, 1000, "N",
              "drill: SIGKILL a serving server N times, evenly spread over the training"),
    FLR_OPT_I("recover-timeout", struct coord_cfg, recover_timeout_ms, "30000", 100, 86400000, "MS",
              "local launcher: start the replacement again if it has not registered by "
              "then"),
    FLR_OPT_S("http", struct coord_cfg, http, "http://127.0.0.1:0", "URL",
              "status endpoint: /status, /metrics, dashboard (port 0 picks a free port; "
              "\"\" or off disables it)"),
    FLR_OPT_S("http-token-file", struct coord_cfg, http_token_file, "", "FILE",
              "file holding the operator token that POST requests must present"),
    FLR_OPT_B("http-auth-reads", struct coord_cfg, http_auth_reads, "false",
              "GET /status and /metrics need the token too"),
    FLR_OPT_LOG_LEVEL(struct coord_cfg, "info"),
    {0},
};

int main(int argc, char **argv)
{
    static struct coord c;
    const struct flr_opts_info info = {"flr-coordinator",
                                       "flr coordinator: creates a job, assigns shards, waits for "
                                       "the workers and reports",
                                       PACKAGE_VERSION};
    char why[512], token[FLR_HTTP_TOKEN_MAX] = "";
    int rv, http_on;
    struct sigaction sa = {0};
    struct flr_http *http = NULL;

    if ((rv = flr_prog_init(coord_opts, &c.cfg, &info, argc, argv, c.cfg.log_level)) >= 0)
        return rv;
    if (strcmp(c.cfg.recovery, "none") != 0 && strcmp(c.cfg.recovery, "flr") != 0) {
        fprintf(stderr,
                "flr-coordinator: --recovery: mode '%s' is not available in this release "
                "(available: flr, none)\n",
                c.cfg.recovery);
        return 2;
    }
    if (coord_build_spec(&c.cfg, &c.spec, why, sizeof(why)) != 0) {
        fprintf(stderr, "flr-coordinator: %s\n", why);
        return 2;
    }
    c.launcher = c.cfg.launcher_kind == 0 ? &coord_launcher_local : &coord_launcher_external;
    if (c.launcher == &coord_launcher_local)
        coord_launch_env();
    http_on = c.cfg.http[0] && strcmp(c.cfg.http, "off") != 0;
    if (http_on && flr_http_check_url(c.cfg.http, why, sizeof(why)) != 0) {
        fprintf(stderr, "flr-coordinator: --http: %s\n", why);
        return 2;
    }
    if (c.cfg.http_token_file[0] &&
        flr_http_read_token(c.cfg.http_token_file, token, sizeof(token), why, sizeof(why)) != 0) {
        fprintf(stderr, "flr-coordinator: --http-token-file: %s\n", why);
        return 2;
    }
    if (c.cfg.http_auth_reads && !token[0]) {
        fprintf(stderr, "flr-coordinator: --http-auth-reads needs --http-token-file\n");
        return 2;
    }
    sa.sa_handler = coord_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if ((rv = flr_zk_open(&c.zk, c.cfg.zk, (int)c.cfg.session_ms, 10000, why, sizeof(why))) != 0) {
        flr_err("coord.zk", "%s", why);
        return 1;
    }
    /* The endpoint starts before the election so that its URL goes into our election
     * node, and so that a follower serves too (it redirects to the leader). */
    if (http_on) {
        const struct flr_http_cfg hc = {.url = c.cfg.http,
                                        .zk = c.cfg.zk,
                                        .job = c.cfg.job,
                                        .session_ms = (int)c.cfg.session_ms,
                                        .token = token,
                                        .auth_reads = c.cfg.http_auth_reads};
        if ((rv = flr_http_start(&http, &hc, why, sizeof(why))) != 0) {
            flr_err("coord.http", "job %s: %s", c.cfg.job, why);
            flr_zk_close(c.zk);
            return 1;
        }
        snprintf(c.http_url, sizeof(c.http_url), "%s", flr_http_url(http));
        flr_notice("coord.http", "job %s: status endpoint at %s (dashboard /, /status, /metrics)",
                   c.cfg.job, c.http_url);
    }
    {
        char phase[32] = "";
        int took_over = 0;

        if ((rv = coord_elect(&c, &took_over, why, sizeof(why))) != 0) {
            flr_err("coord.elect", "job %s: %s", c.cfg.job, why);
            flr_http_stop(http);
            flr_zk_close(c.zk);
            return 1;
        }
        flr_notice("coord.leader", "job %s: %s leads%s", c.cfg.job, c.candidate,
                   took_over ? ", taking over from the previous leader" : "");
        if (took_over)
            coord_event(&c, "leader", json_pack("{ss}", "candidate", c.candidate),
                        "coordinator %s leads job %s, taking over", c.candidate, c.cfg.job);
        if (took_over && (rv = coord_resume(&c, phase, sizeof(phase), why, sizeof(why))) != 0) {
            flr_err("coord.resume", "job %s: %s", c.cfg.job, why);
            flr_http_stop(http);
            flr_zk_close(c.zk);
            return 1;
        }
        if (strcmp(phase, "done") == 0 || strcmp(phase, "failed") == 0) {
            flr_notice("coord.idle", "job %s already %s under the previous leader", c.cfg.job,
                       phase);
            flr_http_stop(http);
            flr_zk_close(c.zk);
            return 0;
        }
        if (strcmp(phase, "running") == 0) {
            flr_notice("coord.resume", "job %s: continuing the running job", c.cfg.job);
            rv = coord_wait_results(&c, why, sizeof(why));
        } else {
            if (strcmp(phase, "waiting") == 0)
                flr_notice("coord.resume", "job %s: continuing the job's start", c.cfg.job);
            else if ((rv = coord_create(&c, why, sizeof(why))) == 0)
                rv = coord_launch_servers(&c, why, sizeof(why));
            if (rv == 0)
                rv = coord_wait_servers(&c, why, sizeof(why));
            if (rv == 0)
                rv = coord_assign(&c, why, sizeof(why));
            if (rv == 0)
                rv = coord_wait_results(&c, why, sizeof(why));
        }
    }
    if (rv != 0 && rv != FLR_EZK_EXISTS)
        flr_err("coord.fail", "job %s: %s", c.cfg.job, why);
    else if (rv == FLR_EZK_EXISTS)
        flr_err("coord.exists", "%s", why);
    if (rv != FLR_EZK_EXISTS) {
        char why2[256];
        if (coord_finish(&c, rv == 0, why2, sizeof(why2)) != 0) {
            flr_err("coord.report", "%s", why2);
            rv = rv ? rv : FLR_EIO;
        }
    }
    /* Servers exit once the job is over; ours get a grace period, then SIGKILL. */
    c.launcher->stop(&c, 10000);
    coord_ops_end(&c);
    if (c.results)
        for (uint32_t w = 0; w < c.spec.num_workers; w++)
            free(c.results[w]);
    free(c.results);
    free(c.lost);
    flr_http_stop(http);
    flr_zk_close(c.zk);
    return rv == 0 ? 0 : 1;
}
