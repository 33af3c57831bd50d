/*
 * flrctl - the operator's command line: a job's status, shards and events, and commands
 * for the leading coordinator (kill or drain a server).
 *
 * It talks to the leader's status endpoint (--url, or the "http" the leader publishes in
 * its election node).  When no endpoint answers it reads ZooKeeper itself with the same
 * collector the coordinator uses, and writes commands as request nodes itself, and says
 * so on stderr: an operator can still see and act on a job whose coordinator is down.
 *
 * Exit codes: 0 success, 1 a runtime error (one line naming it), 2 bad usage.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "common/err.h"
#include "common/opt.h"
#include "common/prog.h"
#include "common/zk.h"
#include "http.h"
#include "status.h"

struct ctl_cfg {
    char zk[256];
    char job[64];
    long long session_ms;
    char url[256];
    char token_file[256];
    long long timeout_ms;
    int json;
};

static const struct flr_opt ctl_opts[] = {
    FLR_OPTS_CLUSTER(struct ctl_cfg),
    FLR_OPT_S("url", struct ctl_cfg, url, "", "URL",
              "the coordinator's status endpoint (default: the leader's, from ZooKeeper)"),
    FLR_OPT_S("token-file", struct ctl_cfg, token_file, "", "FILE",
              "file holding the operator token (kill, drain; reads when the endpoint asks)"),
    FLR_OPT_I("timeout", struct ctl_cfg, timeout_ms, "5000", 100, 600000, "MS",
              "how long to wait for the endpoint or ZooKeeper"),
    FLR_OPT_B("json", struct ctl_cfg, json, "false", "status: print the JSON document"),
    {0},
};

static const char ctl_commands[] =
    "\nCommands:\n"
    "  status [--json]               the job, its leader, servers, workers and throughput\n"
    "                                (--json: the document GET /status serves)\n"
    "  shards                        every shard: owner, epoch, state, rows, bytes, traffic\n"
    "  events                        recent events, recoveries, pending operator commands\n"
    "  kill-server ID                ask the leader to kill server ID (needs --token-file)\n"
    "  drain ID                      ask the leader to drain server ID (needs --token-file)\n";

struct ctl {
    struct ctl_cfg cfg;
    char token[FLR_HTTP_TOKEN_MAX];
    struct flr_zk *zk; /* opened on demand */
};

/* One-line error, exit 1. */
static int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ctl_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("flrctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int ctl_zk(struct ctl *c, char *why, size_t whylen)
{
    if (c->zk)
        return 0;
    return flr_zk_open(&c->zk, c->cfg.zk, (int)c->cfg.session_ms, (int)c->cfg.timeout_ms, why,
                       whylen);
}

/* --- HTTP ------------------------------------------------------------------------------ */

enum { CTL_HTTP_OK = 0, CTL_HTTP_DOWN = 1, CTL_HTTP_ERROR = 2 };

struct ctl_reply {
    int status;
    char *body; /* malloc'd, NUL-terminated */
    size_t len;
};

/*
 * One request; follows up to 3 redirects (a follower sends us to the leader).  Returns
 * CTL_HTTP_OK with the reply (any status), CTL_HTTP_DOWN when nothing answers (refused,
 * timed out, unreachable), or CTL_HTTP_ERROR for anything else, with why.
 */
static int ctl_http(struct ctl *c, const char *method, const char *base, const char *path,
                    struct ctl_reply *out, char *why, size_t whylen)
{
    char url[1024];
    int redirects = 0;
    size_t bl = strlen(base);

    memset(out, 0, sizeof(*out));
    /* A base given as "http://host:port/" must not double the slash. */
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof(url), "%.*s%s", (int)bl, base, path);
    for (;;) {
        nng_url *u = NULL;
        nng_http_client *cli = NULL;
        nng_http_req *req = NULL;
        nng_http_res *res = NULL;
        nng_aio *aio = NULL;
        const char *loc;
        void *data;
        size_t len;
        int rv;

        if ((rv = nng_url_parse(&u, url)) != 0) {
            flr_why(why, whylen, "'%.200s' is not a URL (%s)", url, nng_strerror(rv));
            return CTL_HTTP_ERROR;
        }
        if (strcmp(u->u_scheme, "http") != 0) {
            flr_why(why, whylen, "'%.200s': only http:// is supported", url);
            nng_url_free(u);
            return CTL_HTTP_ERROR;
        }
        if ((rv = nng_http_client_alloc(&cli, u)) != 0 || (rv = nng_http_req_alloc(&req, u)) != 0 ||
            (rv = nng_http_res_alloc(&res)) != 0 || (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0 ||
            (rv = nng_http_req_set_method(req, method)) != 0) {
            flr_why(why, whylen, "%s %s: %s", method, url, nng_strerror(rv));
            rv = CTL_HTTP_ERROR;
            goto next;
        }
        if (c->token[0]) {
            char auth[FLR_HTTP_TOKEN_MAX + 16];
            snprintf(auth, sizeof(auth), "Bearer %s", c->token);
            nng_http_req_set_header(req, "Authorization", auth);
        }
        if (strcmp(method, "POST") == 0)
            nng_http_req_set_header(req, "Content-Length", "0");
        nng_aio_set_timeout(aio, (nng_duration)c->cfg.timeout_ms);
        nng_http_client_transact(cli, req, res, aio);
        nng_aio_wait(aio);
        if ((rv = nng_aio_result(aio)) != 0) {
            flr_why(why, whylen, "%s %s: %s", method, url, nng_strerror(rv));
            rv = (rv == NNG_ECONNREFUSED || rv == NNG_ETIMEDOUT || rv == NNG_EADDRINVAL ||
                  rv == NNG_EUNREACHABLE || rv == NNG_ECONNRESET || rv == NNG_ECLOSED ||
                  rv == NNG_ECONNSHUT || rv == NNG_ECONNABORTED)
                     ? CTL_HTTP_DOWN
                     : CTL_HTTP_ERROR;
            goto next;
        }
        out->status = nng_http_res_get_status(res);
        loc = nng_http_res_get_header(res, "Location");
        if ((out->status == 307 || out->status == 308) && loc && redirects < 3) {
            snprintf(url, sizeof(url), "%s", loc);
            redirects++;
            rv = -1; /* go round */
            goto next;
        }
        nng_http_res_get_data(res, &data, &len);
        if (!(out->body = malloc(len + 1))) {
            flr_why(why, whylen, "out of memory");
            rv = CTL_HTTP_ERROR;
            goto next;
        }
        memcpy(out->body, data, len);
        out->body[len] = 0;
        out->len = len;
        rv = CTL_HTTP_OK;
    next:
        if (aio)
            nng_aio_free(aio);
        if (res)
            nng_http_res_free(res);
        if (req)
            nng_http_req_free(req);
        if (cli)
            nng_http_client_free(cli);
        nng_url_free(u);
        if (rv >= 0)
            return rv;
    }
}

/* The body's first line, for one-line messages. */
static const char *ctl_line(struct ctl_reply *r)
{
    if (!r->body)
        return "";
    r->body[strcspn(r->body, "\r\n")] = 0;
    return r->body;
}

/*
 * Where the status endpoint is: --url, or the leader's "http".  Sets *base ("" when there
 * is none) and, when there is none, why says so.  Returns 0 or 1 after printing an error.
 */
static int ctl_endpoint(struct ctl *c, char *base, size_t len, char *why, size_t whylen)
{
    json_t *leader = NULL;
    const char *http;
    char zwhy[512];
    int rv;

    base[0] = 0;
    if (c->cfg.url[0]) {
        snprintf(base, len, "%s", c->cfg.url);
        return 0;
    }
    if ((rv = ctl_zk(c, zwhy, sizeof(zwhy))) != 0)
        return ctl_fail("cannot reach ZooKeeper at %s to find the endpoint: %s", c->cfg.zk, zwhy);
    if ((rv = flr_status_leader(c->zk, c->cfg.job, &leader, zwhy, sizeof(zwhy))) != 0)
        return ctl_fail("job %s: %s", c->cfg.job, zwhy);
    http = json_string_value(json_object_get(leader, "http"));
    if (http && *http)
        snprintf(base, len, "%s", http);
    else if (leader)
        flr_why(why, whylen, "the leading coordinator of job %s serves no status endpoint",
                c->cfg.job);
    else
        flr_why(why, whylen, "no coordinator of job %s is running", c->cfg.job);
    json_decref(leader);
    return 0;
}

/* --- reading the document ------------------------------------------------------------- */

/*
 * Gets the status document: from the endpoint, else from ZooKeeper (saying so).  With
 * raw != NULL the endpoint's text is kept as served.  Returns 0 or 1 after an error line.
 */
static int ctl_status_doc(struct ctl *c, json_t **doc, char **raw)
{
    char base[512], why[1024] = "", zwhy[512];
    struct ctl_reply r;
    int rv;

    *doc = NULL;
    if (raw)
        *raw = NULL;
    if (ctl_endpoint(c, base, sizeof(base), why, sizeof(why)) != 0)
        return 1;
    if (base[0]) {
        rv = ctl_http(c, "GET", base, "/status", &r, why, sizeof(why));
        if (rv == CTL_HTTP_ERROR)
            return ctl_fail("%s", why);
        if (rv == CTL_HTTP_OK && r.status == 200) {
            json_error_t jerr;
            if (!(*doc = json_loadb(r.body, r.len, 0, &jerr))) {
                free(r.body);
                return ctl_fail("GET %s/status: the reply is not JSON: %s", base, jerr.text);
            }
            if (raw)
                *raw = r.body;
            else
                free(r.body);
            return 0;
        }
        if (rv == CTL_HTTP_OK && r.status != 503) {
            rv = ctl_fail("GET %s/status: %d %s", base, r.status, ctl_line(&r));
            free(r.body);
            return rv;
        }
        if (rv == CTL_HTTP_OK) {
            snprintf(why, sizeof(why), "GET %s/status: %d %s", base, r.status, ctl_line(&r));
            free(r.body);
        }
    }
    fprintf(stderr, "flrctl: %s; reading ZooKeeper at %s directly\n", why, c->cfg.zk);
    if ((rv = ctl_zk(c, zwhy, sizeof(zwhy))) != 0)
        return ctl_fail("cannot reach ZooKeeper at %s: %s", c->cfg.zk, zwhy);
    if ((rv = flr_status_collect(c->zk, c->cfg.job, doc, zwhy, sizeof(zwhy))) != 0)
        return ctl_fail("job %s: %s", c->cfg.job, zwhy);
    return 0;
}

/* --- tables ---------------------------------------------------------------------------- */

#define CTL_COLS 12

struct ctl_table {
    int ncols, nrows, cap;
    char **cells; /* nrows * ncols */
};

static void ctl_row(struct ctl_table *t, ...)
{
    va_list ap;

    if (t->nrows == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char **n = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof(*n));
        if (!n)
            return;
        t->cells = n;
        t->cap = cap;
    }
    va_start(ap, t);
    for (int i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->nrows * t->ncols + i] = strdup(s ? s : "-");
    }
    va_end(ap);
    t->nrows++;
}

static int ctl_numeric(const char *s)
{
    char *end;
    if (!s || !*s || strcmp(s, "-") == 0)
        return 1;
    strtod(s, &end);
    return *end == 0 || strcmp(end, " s") == 0;
}

/* Prints the table: the first row is the header; numeric columns are right-aligned. */
static void ctl_print(struct ctl_table *t)
{
    int w[CTL_COLS] = {0}, right[CTL_COLS];

    for (int c = 0; c < t->ncols; c++) {
        right[c] = t->nrows > 1;
        for (int r = 0; r < t->nrows; r++) {
            const char *s = t->cells[r * t->ncols + c];
            int n = s ? (int)strlen(s) : 1;
            if (n > w[c])
                w[c] = n;
            if (r > 0 && !ctl_numeric(s))
                right[c] = 0;
        }
    }
    for (int r = 0; r < t->nrows; r++) {
        char line[2048];
        size_t n = 0;
        for (int c = 0; c < t->ncols && n < sizeof(line); c++) {
            const char *s = t->cells[r * t->ncols + c];
            int last = c == t->ncols - 1;
            n += (size_t)snprintf(line + n, sizeof(line) - n, right[c] ? "%*s%s" : "%-*s%s", w[c],
                                  s ? s : "-", last ? "" : "  ");
        }
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
        while (n > 0 && line[n - 1] == ' ')
            n--;
        printf("%.*s\n", (int)n, line);
    }
    for (int i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

/* A JSON value as table text in buf: numbers, strings, booleans as yes/no, null as "-". */
static const char *ctl_val(const json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, len, "%.4f", json_real_value(v));
    else if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(buf, len, "-");
    return buf;
}

#define V(o, k, b) ctl_val(json_object_get((o), (k)), (b), sizeof(b))

static const char *ctl_time(const json_t *ms, char *buf, size_t len)
{
    time_t t;
    struct tm tm;

    if (!json_is_number(ms)) {
        snprintf(buf, len, "-");
        return buf;
    }
    t = (time_t)(json_number_value(ms) / 1000);
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf + strlen(buf), len - strlen(buf), ".%03d",
             (int)((json_int_t)json_number_value(ms) % 1000));
    return buf;
}

static const char *ctl_secs(const json_t *ms, char *buf, size_t len)
{
    if (json_is_number(ms))
        snprintf(buf, len, "%.3f s", json_number_value(ms) / 1000.0);
    else
        snprintf(buf, len, "-");
    return buf;
}

/* Element i of the array doc[key], or NULL past its end (or when there is none). */
static json_t *ctl_at(const json_t *doc, const char *key, size_t i)
{
    return json_array_get(json_object_get(doc, key), i);
}

/* A rate as a whole number, "-" when unknown. */
static const char *ctl_rate(const json_t *v, char *buf, size_t len)
{
    if (json_is_number(v))
        snprintf(buf, len, "%.0f", json_number_value(v));
    else
        snprintf(buf, len, "-");
    return buf;
}

/* --- commands ---------------------------------------------------------------------------- */

static int ctl_cmd_status(struct ctl *c)
{
    json_t *doc, *leader, *tp, *tot, *s, *w;
    char *raw = NULL, a[64], b[64], d[64], e[64], f[64], g[64], h[64], i2[256];
    struct ctl_table t = {0};
    size_t i;

    if (ctl_status_doc(c, &doc, c->cfg.json ? &raw : NULL) != 0)
        return 1;
    if (c->cfg.json) {
        if (raw) {
            fputs(raw, stdout);
            if (raw[0] && raw[strlen(raw) - 1] != '\n')
                putchar('\n');
        } else {
            char *text = json_dumps(doc, JSON_COMPACT);
            if (!text) {
                json_decref(doc);
                return ctl_fail("out of memory");
            }
            puts(text);
            free(text);
        }
        free(raw);
        json_decref(doc);
        return 0;
    }
    printf("job %s: %s, epoch %s, model %s, recovery %s, consistency %s\n", V(doc, "job", i2),
           V(doc, "state", a), V(doc, "epoch", b), V(doc, "model", d), V(doc, "recovery", e),
           V(doc, "consistency", f));
    leader = json_object_get(doc, "leader");
    if (json_is_object(leader))
        printf("leader %s (pid %s on %s)%s%s\n", V(leader, "candidate", a), V(leader, "pid", b),
               V(leader, "host", d),
               json_string_length(json_object_get(leader, "http")) ? ", " : "",
               json_string_value(json_object_get(leader, "http")));
    else
        printf("leader: none\n");
    if (json_is_number(json_object_get(doc, "started_ms"))) {
        json_int_t up = json_integer_value(json_object_get(doc, "now_ms")) -
                        json_integer_value(json_object_get(doc, "started_ms"));
        const char *st = json_string_value(json_object_get(doc, "state"));
        printf("started %s UTC", ctl_time(json_object_get(doc, "started_ms"), a, sizeof(a)));
        if (st && strcmp(st, "running") == 0)
            printf(", running for %lld s", (long long)(up / 1000));
        putchar('\n');
    }
    tp = json_object_get(doc, "throughput");
    if (json_is_number(json_object_get(tp, "samples_per_second")) ||
        json_is_number(json_object_get(tp, "keys_pushed_per_second")))
        printf("throughput %s samples/s, %s keys pushed/s\n",
               ctl_rate(json_object_get(tp, "samples_per_second"), a, sizeof(a)),
               ctl_rate(json_object_get(tp, "keys_pushed_per_second"), b, sizeof(b)));
    tot = json_object_get(doc, "totals");
    printf("recoveries %s (%s in progress), rows rebuilt %s, rows lost %s\n",
           V(tot, "recoveries", a), V(tot, "recoveries_in_progress", b), V(tot, "rows_rebuilt", d),
           V(tot, "rows_lost", e));

    putchar('\n');
    t.ncols = 9;
    ctl_row(&t, "SERVER", "STATE", "REACHABLE", "INCARNATION", "PID", "HOST", "REQUESTS", "SHARDS",
            "ENDPOINT");
    for (i = 0; (s = ctl_at(doc, "servers", i)) != NULL; i++) {
        snprintf(g, sizeof(g), "%zu", json_array_size(json_object_get(s, "shards")));
        ctl_row(&t, V(s, "id", a), V(s, "state", b), V(s, "reachable", d), V(s, "incarnation", e),
                V(s, "pid", f), V(s, "host", i2), V(s, "requests", h), g,
                json_string_value(json_object_get(s, "endpoint")));
    }
    if (t.nrows == 1)
        ctl_row(&t, "(none)", "", "", "", "", "", "", "", "");
    ctl_print(&t);

    putchar('\n');
    t.ncols = 7;
    ctl_row(&t, "WORKER", "STATUS", "CLOCK", "EPOCH", "SAMPLES", "LOSS", "HOST");
    for (i = 0; (w = ctl_at(doc, "workers", i)) != NULL; i++) {
        const char *status = json_is_true(json_object_get(w, "finished"))  ? "finished"
                             : json_is_true(json_object_get(w, "removed")) ? "removed"
                             : json_is_true(json_object_get(w, "alive"))   ? "training"
                                                                           : "gone";
        ctl_row(&t, V(w, "id", a), status, V(w, "clock", b), V(w, "epoch", d), V(w, "samples", e),
                V(w, "loss", f), V(w, "host", i2));
    }
    if (t.nrows == 1)
        ctl_row(&t, "(none)", "", "", "", "", "", "");
    ctl_print(&t);
    json_decref(doc);
    return 0;
}

static int ctl_cmd_shards(struct ctl *c)
{
    json_t *doc, *s;
    char a[64], b[64], d[64], e[64], f[64], g[64], h[64], k[64];
    struct ctl_table t = {.ncols = 8};
    size_t i;

    if (ctl_status_doc(c, &doc, NULL) != 0)
        return 1;
    ctl_row(&t, "SHARD", "OWNER", "EPOCH", "STATE", "ROWS", "BYTES", "PULLS", "PUSHES");
    for (i = 0; (s = ctl_at(doc, "shards", i)) != NULL; i++)
        ctl_row(&t, V(s, "shard", a), V(s, "owner", b), V(s, "epoch", d), V(s, "state", e),
                V(s, "rows", f), V(s, "bytes", g), V(s, "pulls", h), V(s, "pushes", k));
    if (t.nrows == 1)
        ctl_row(&t, "(none)", "", "", "", "", "", "", "");
    ctl_print(&t);
    json_decref(doc);
    return 0;
}

static int ctl_cmd_events(struct ctl *c)
{
    json_t *doc, *e, *shards;
    char a[64], b[64], d[64], f[64], g[64], h[64], k[64], l[64], m[64], i2[64], sh[256];
    struct ctl_table t = {.ncols = 3};
    size_t i;

    if (ctl_status_doc(c, &doc, NULL) != 0)
        return 1;
    ctl_row(&t, "TIME (UTC)", "KIND", "MESSAGE");
    for (i = 0; (e = ctl_at(doc, "events", i)) != NULL; i++)
        ctl_row(&t, ctl_time(json_object_get(e, "at_ms"), a, sizeof(a)), V(e, "kind", b),
                json_string_value(json_object_get(e, "message")));
    if (t.nrows == 1)
        ctl_row(&t, "(no events)", "", "");
    ctl_print(&t);

    if (json_array_size(json_object_get(doc, "recoveries"))) {
        putchar('\n');
        t.ncols = 11;
        ctl_row(&t, "RECOVERY", "SERVER", "SHARDS", "KIND", "MODE", "PHASE", "KILLED (UTC)",
                "DETECT", "RECOVER", "ROWS_REBUILT", "ROWS_LOST");
        for (i = 0; (e = ctl_at(doc, "recoveries", i)) != NULL; i++) {
            size_t j, n = 0;
            json_t *x;
            sh[0] = 0;
            shards = json_object_get(e, "shards");
            for (j = 0; j < json_array_size(shards) && (x = json_array_get(shards, j)) != NULL; j++)
                if (n + 12 < sizeof(sh))
                    n += (size_t)snprintf(sh + n, sizeof(sh) - n, "%s%lld", j ? "," : "",
                                          (long long)json_integer_value(x));
            ctl_row(&t, V(e, "id", a), V(e, "server", b), sh[0] ? sh : "-",
                    json_is_string(json_object_get(e, "kind")) ? V(e, "kind", i2) : "loss",
                    V(e, "mode", d), V(e, "phase", f),
                    ctl_time(json_object_get(e, "killed_at_ms"), g, sizeof(g)),
                    ctl_secs(json_object_get(e, "detect_ms"), h, sizeof(h)),
                    ctl_secs(json_object_get(e, "recover_ms"), k, sizeof(k)),
                    V(e, "rows_rebuilt", l), V(e, "rows_lost", m));
        }
        ctl_print(&t);
    }
    if (json_array_size(json_object_get(doc, "requests"))) {
        putchar('\n');
        t.ncols = 5;
        ctl_row(&t, "PENDING", "ACTION", "SERVER", "FROM", "AT (UTC)");
        for (i = 0; (e = ctl_at(doc, "requests", i)) != NULL; i++)
            ctl_row(&t, V(e, "id", a), V(e, "action", b), V(e, "server", d), V(e, "from", f),
                    ctl_time(json_object_get(e, "at_ms"), g, sizeof(g)));
        ctl_print(&t);
    }
    json_decref(doc);
    return 0;
}

static int ctl_cmd_request(struct ctl *c, const char *action, unsigned long id)
{
    char base[512], why[1024] = "", zwhy[512], path[64], created[64];
    struct ctl_reply r;
    int rv;

    if (ctl_endpoint(c, base, sizeof(base), why, sizeof(why)) != 0)
        return 1;
    if (base[0]) {
        snprintf(path, sizeof(path), "/api/servers/%lu/%s", id, action);
        rv = ctl_http(c, "POST", base, path, &r, why, sizeof(why));
        if (rv == CTL_HTTP_ERROR)
            return ctl_fail("%s", why);
        if (rv == CTL_HTTP_OK && r.status == 202) {
            json_t *j = json_loads(r.body, 0, NULL);
            printf("%s of server %lu queued as %s; the leading coordinator carries it out\n",
                   action, id, json_string_value(json_object_get(j, "request")));
            json_decref(j);
            free(r.body);
            return 0;
        }
        if (rv == CTL_HTTP_OK && r.status != 503) {
            rv = ctl_fail("POST %s%s: %d %s%s", base, path, r.status, ctl_line(&r),
                          r.status == 403 && !c->token[0] ? " (give --token-file)" : "");
            free(r.body);
            return rv;
        }
        if (rv == CTL_HTTP_OK) {
            snprintf(why, sizeof(why), "POST %s%s: %d %s", base, path, r.status, ctl_line(&r));
            free(r.body);
        }
    }
    fprintf(stderr, "flrctl: %s; writing the request to ZooKeeper at %s directly\n", why,
            c->cfg.zk);
    if ((rv = ctl_zk(c, zwhy, sizeof(zwhy))) != 0)
        return ctl_fail("cannot reach ZooKeeper at %s: %s", c->cfg.zk, zwhy);
    if ((rv = flr_status_request_add(c->zk, c->cfg.job, action, id, "flrctl", created,
                                     sizeof(created), zwhy, sizeof(zwhy))) != 0)
        return ctl_fail("%s", zwhy);
    printf("%s of server %lu queued as %s; the leading coordinator carries it out\n", action, id,
           created);
    return 0;
}

/* --- main ------------------------------------------------------------------------------ */

/* Splits argv into options (for the option table) and positional words (the command). */
static int ctl_split(int argc, char **argv, char **opts, int *nopts, char **words, int *nwords)
{
    int after_dashes = 0;

    *nopts = 1;
    *nwords = 0;
    opts[0] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (after_dashes || a[0] != '-' || a[1] == 0) {
            words[(*nwords)++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            after_dashes = 1;
            continue;
        }
        opts[(*nopts)++] = argv[i];
        /* Does this option take the next word as its value? */
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 < argc)
                opts[(*nopts)++] = argv[++i];
            continue;
        }
        if (strncmp(a, "--", 2) == 0 && !strchr(a, '=')) {
            const struct flr_opt *o;
            for (o = ctl_opts; o->name; o++)
                if (strcmp(o->name, a + 2) == 0)
                    break;
            if (o->name && o->type != FLR_OPT_BOOL && i + 1 < argc)
                opts[(*nopts)++] = argv[++i];
        }
    }
    opts[*nopts] = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    static struct ctl c;
    const struct flr_opts_info info = {"flrctl",
                                       "flrctl COMMAND [ARGS]: a job's status, shards and events; "
                                       "kill or drain a server",
                                       PACKAGE_VERSION};
    char **opts = calloc((size_t)argc + 1, sizeof(*opts));
    char **words = calloc((size_t)argc + 1, sizeof(*words));
    char why[512];
    int nopts, nwords, exit_now = 0, rv, help = 0;
    const char *cmd;

    if (!opts || !words)
        return ctl_fail("out of memory");
    ctl_split(argc, argv, opts, &nopts, words, &nwords);
    for (int i = 1; i < nopts; i++)
        if (strcmp(opts[i], "--help") == 0 || strcmp(opts[i], "-h") == 0)
            help = 1;
    if (flr_opts_parse(ctl_opts, &c.cfg, &info, nopts, opts, stdout, &exit_now, why, sizeof(why)) !=
        0) {
        fprintf(stderr, "flrctl: %s\n", why);
        rv = 2;
        goto out;
    }
    if (exit_now) {
        if (help)
            fputs(ctl_commands, stdout);
        rv = 0;
        goto out;
    }
    if (nwords == 0) {
        fprintf(stderr, "flrctl: no command (status, shards, events, kill-server ID, drain ID; "
                        "see --help)\n");
        rv = 2;
        goto out;
    }
    cmd = words[0];
    if (c.cfg.token_file[0] &&
        flr_http_read_token(c.cfg.token_file, c.token, sizeof(c.token), why, sizeof(why)) != 0) {
        fprintf(stderr, "flrctl: --token-file: %s\n", why);
        rv = 2;
        goto out;
    }
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "shards") == 0 || strcmp(cmd, "events") == 0) {
        if (nwords != 1) {
            fprintf(stderr, "flrctl: %s takes no argument, got '%.64s'\n", cmd, words[1]);
            rv = 2;
            goto out;
        }
        if (c.cfg.json && strcmp(cmd, "status") != 0) {
            fprintf(stderr, "flrctl: --json goes with status only\n");
            rv = 2;
            goto out;
        }
        rv = strcmp(cmd, "status") == 0   ? ctl_cmd_status(&c)
             : strcmp(cmd, "shards") == 0 ? ctl_cmd_shards(&c)
                                          : ctl_cmd_events(&c);
    } else if (strcmp(cmd, "kill-server") == 0 || strcmp(cmd, "drain") == 0) {
        unsigned long id;
        if (nwords != 2) {
            fprintf(stderr, "flrctl: usage: flrctl %s ID\n", cmd);
            rv = 2;
            goto out;
        }
        if (flr_status_parse_server_id(words[1], &id, why, sizeof(why)) != 0) {
            fprintf(stderr, "flrctl: %s: %s\n", cmd, why);
            rv = 2;
            goto out;
        }
        rv = ctl_cmd_request(&c, strcmp(cmd, "drain") == 0 ? "drain" : "kill", id);
    } else {
        fprintf(stderr,
                "flrctl: unknown command '%.64s' (status, shards, events, kill-server, drain)\n",
                cmd);
        rv = 2;
    }
out:
    if (c.zk)
        flr_zk_close(c.zk);
    free(opts);
    free(words);
    return rv;
}
