/*
 * http.c - the coordinator's status endpoint (see http.h).
 *
 * Threads and ownership:
 *
 *   - nng's HTTP threads run http_handle(): it routes, checks the token, and answers GETs
 *     from the cache (a copy made under mu).  A command (POST) is queued for the status
 *     thread together with its aio; the handler returns without answering.
 *   - the status thread (http_main) owns the ZooKeeper session: it collects the document
 *     every refresh_ms, renders it, swaps it into the cache, and runs queued commands
 *     between collections, finishing their aios.
 *
 * Status thread:
 *
 *     NO_SESSION --flr_zk_open ok--> COLLECTING --session expired--> NO_SESSION
 *                                        |  ^
 *                 command queued --------+  +------ refresh_ms passed
 *     any --stopping--> DRAIN: queued commands answered 503, thread exits
 *
 * Lifetime: struct flr_http is shared by flr_http_stop() and nng's handler, whose
 * callbacks may still run while the server winds down; it is freed when both have let go
 * (refs), the handler's side through the handler's destructor.
 */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "common/err.h"
#include "common/proto.h"
#include "common/util.h"
#include "common/zk.h"
#include "metrics.h"
#include "status.h"

/* The dashboard page, generated at build time from coordinator/dashboard.html. */
extern const char flr_dashboard_html[];
extern const size_t flr_dashboard_html_len;

#define HTTP_COLLECT_BODY (64u << 10) /* nng reads bodies up to this; larger ones get 400 */
#define HTTP_CONNECT_MS   2000        /* wait for the status thread's ZooKeeper session */

struct http_cmd {
    nng_aio *aio;
    char action[8];
    unsigned long server;
    struct http_cmd *next;
};

struct flr_http {
    /* Set at start, read-only afterwards. */
    char url[300]; /* published */
    char zk[256];
    char job[FLR_JOB_MAX];
    char token[FLR_HTTP_TOKEN_MAX];
    char host[256]; /* our host name, to recognise our own election node */
    int pid;
    int session_ms, refresh_ms, auth_reads;
    nng_http_server *srv;
    pthread_t thread;
    int thread_started;
    atomic_int refs;

    /* Guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    struct http_cmd *cmds, *cmds_tail;
    char *doc; /* the status document, JSON text, or NULL before the first collection */
    size_t doc_len;
    char *metrics; /* Prometheus text */
    size_t metrics_len;
    char leader[300]; /* the leader's endpoint when another coordinator leads, else "" */
    char error[256];  /* why the last collection failed, "" after one that worked */
};

static void http_unref(void *arg)
{
    struct flr_http *h = arg;

    if (atomic_fetch_sub(&h->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->doc);
    free(h->metrics);
    free(h);
}

/* --- responses --------------------------------------------------------------------------- */

/* Answers aio with status and body (copied); extra is one more header or NULL. */
static void http_reply(nng_aio *aio, uint16_t status, const char *ctype, const void *body,
                       size_t len, const char *hname, const char *hval)
{
    nng_http_res *res;

    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    /* nng 1.5 has no reason phrase for 413 ("Unknown HTTP Status" otherwise). */
    if (nng_http_res_set_status(res, status) != 0 ||
        (status == 413 && nng_http_res_set_reason(res, "Content Too Large") != 0) ||
        nng_http_res_set_header(res, "Content-Type", ctype) != 0 ||
        nng_http_res_set_header(res, "Cache-Control", "no-store") != 0 ||
        (hname && nng_http_res_set_header(res, hname, hval) != 0) ||
        nng_http_res_copy_data(res, body, len) != 0) {
        nng_http_res_free(res);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

/* A one-line plain-text answer. */
static void http_text(nng_aio *aio, uint16_t status, const char *hname, const char *hval,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void http_text(nng_aio *aio, uint16_t status, const char *hname, const char *hval,
                      const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    line[n] = 0;
    http_reply(aio, status, "text/plain; charset=utf-8", line, (size_t)n, hname, hval);
}

/* Copies at most 80 bytes of s into buf with anything unprintable made '?', for echoing
 * a client's input in a one-line answer. */
static const char *http_clean(const char *s, char *buf, size_t len)
{
    size_t i = 0;

    for (; s && *s && i + 4 < len && i < 80; s++)
        buf[i++] = isprint((unsigned char)*s) ? *s : '?';
    if (s && *s && i + 4 <= len) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = 0;
    return buf;
}

/* --- the status thread ------------------------------------------------------------------- */

/* Stores a new document and its metrics, and who leads. */
static void http_store(struct flr_http *h, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT), *met = NULL;
    size_t met_len = 0;
    const json_t *leader = json_object_get(doc, "leader");
    const char *lurl = json_string_value(json_object_get(leader, "http"));
    const char *lhost = json_string_value(json_object_get(leader, "host"));
    json_int_t lpid = json_integer_value(json_object_get(leader, "pid"));
    int self = leader && lhost && strcmp(lhost, h->host) == 0 && lpid == h->pid;

    if (!text)
        return;
    if (flr_metrics_render(doc, &met, &met_len) != 0)
        met = NULL;
    pthread_mutex_lock(&h->mu);
    free(h->doc);
    h->doc = text;
    h->doc_len = strlen(text);
    if (met) {
        free(h->metrics);
        h->metrics = met;
        h->metrics_len = met_len;
    }
    /* Redirect only to another coordinator's endpoint, never to our own. */
    if (!self && lurl && *lurl && strcmp(lurl, h->url) != 0)
        snprintf(h->leader, sizeof(h->leader), "%s", lurl);
    else
        h->leader[0] = 0;
    pthread_mutex_unlock(&h->mu);
}

/* A failed collection: the last good document is kept, marked stale. */
static void http_store_error(struct flr_http *h, json_t *prev, const char *why)
{
    pthread_mutex_lock(&h->mu);
    snprintf(h->error, sizeof(h->error), "%s", why);
    pthread_mutex_unlock(&h->mu);
    if (prev) {
        json_t *d = json_deep_copy(prev);
        if (d) {
            json_object_set_new(d, "stale", json_true());
            json_object_set_new(d, "error", json_string(why));
            http_store(h, d);
            json_decref(d);
        }
    }
}

static void http_run_cmd(struct flr_http *h, struct flr_zk *zk, struct http_cmd *cmd)
{
    char created[64], why[512], body[512];
    int rv, n;

    if (!zk) {
        http_text(cmd->aio, 503, "Retry-After", "1", "no ZooKeeper session: %s", h->error);
        return;
    }
    rv = flr_status_request_add(zk, h->job, cmd->action, cmd->server, "http", created,
                                sizeof(created), why, sizeof(why));
    if (rv == FLR_ENOT_FOUND) {
        http_text(cmd->aio, 404, NULL, NULL, "%s", why);
    } else if (rv != 0) {
        http_text(cmd->aio, 503, "Retry-After", "1", "%s", why);
    } else {
        n = snprintf(body, sizeof(body),
                     "{\"request\":\"%s\",\"action\":\"%s\",\"server\":%lu,\"job\":", created,
                     cmd->action, cmd->server);
        {
            json_t *j = json_string(h->job);
            char *js = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
            n += snprintf(body + n, sizeof(body) - (size_t)n, "%s}\n", js ? js : "null");
            free(js);
            json_decref(j);
        }
        http_reply(cmd->aio, 202, "application/json", body, (size_t)n, NULL, NULL);
    }
}

static void *http_main(void *arg)
{
    struct flr_http *h = arg;
    struct flr_zk *zk = NULL;
    json_t *prev = NULL;
    int64_t next = 0;
    char why[512];

    for (;;) {
        struct http_cmd *cmd = NULL;
        json_t *doc;

        pthread_mutex_lock(&h->mu);
        while (!h->stopping && !h->cmds && flr_now_ms() < next) {
            struct timespec ts;
            int64_t wait = next - flr_now_ms();
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        }
        if (h->stopping) {
            pthread_mutex_unlock(&h->mu);
            break;
        }
        if ((cmd = h->cmds) != NULL) {
            h->cmds = cmd->next;
            if (!h->cmds)
                h->cmds_tail = NULL;
        }
        pthread_mutex_unlock(&h->mu);

        if (zk && flr_zk_expired(zk) && flr_zk_reopen(zk, HTTP_CONNECT_MS, why, sizeof(why)) != 0)
            http_store_error(h, prev, why);
        if (!zk && flr_zk_open(&zk, h->zk, h->session_ms, HTTP_CONNECT_MS, why, sizeof(why)) != 0) {
            zk = NULL;
            http_store_error(h, prev, why);
        }
        if (cmd) {
            http_run_cmd(h, zk, cmd);
            free(cmd);
            continue;
        }
        next = flr_now_ms() + h->refresh_ms;
        if (!zk)
            continue;
        if (flr_status_collect(zk, h->job, &doc, why, sizeof(why)) != 0) {
            http_store_error(h, prev, why);
            continue;
        }
        flr_status_throughput(doc, prev);
        http_store(h, doc);
        pthread_mutex_lock(&h->mu);
        h->error[0] = 0;
        pthread_mutex_unlock(&h->mu);
        json_decref(prev);
        prev = doc;
    }

    /* Whatever is still queued gets an answer: nng waits for every handler's aio. */
    for (;;) {
        struct http_cmd *cmd;
        pthread_mutex_lock(&h->mu);
        if ((cmd = h->cmds) != NULL)
            h->cmds = cmd->next;
        pthread_mutex_unlock(&h->mu);
        if (!cmd)
            break;
        http_text(cmd->aio, 503, NULL, NULL, "the coordinator is shutting down");
        free(cmd);
    }
    json_decref(prev);
    if (zk)
        flr_zk_close(zk);
    return NULL;
}

/* --- requests ---------------------------------------------------------------------------- */

/* Checks "Authorization: Bearer <token>".  Returns NULL when it matches, else the reason. */
static const char *http_auth(struct flr_http *h, nng_http_req *req)
{
    const char *v = nng_http_req_get_header(req, "Authorization");
    size_t n = strlen(h->token), got;
    unsigned char diff = 0;

    if (!h->token[0])
        return "no operator token is configured (start flr-coordinator with --http-token-file)";
    if (!v)
        return "this request needs the header 'Authorization: Bearer <token>'";
    if (strncasecmp(v, "Bearer ", 7) != 0)
        return "the Authorization header must be 'Bearer <token>'";
    v += 7;
    while (*v == ' ')
        v++;
    got = strlen(v);
    /* Compare every byte whatever the first difference, so that timing says nothing. */
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)h->token[i] ^ (unsigned char)(i < got ? v[i] : 0);
    if (diff || got != n)
        return "the operator token does not match";
    return NULL;
}

enum http_route { R_NONE, R_DASHBOARD, R_STATUS, R_METRICS, R_COMMAND };

static void http_handle(nng_aio *aio)
{
    nng_http_req *req = nng_aio_get_input(aio, 0);
    nng_http_handler *hd = nng_aio_get_input(aio, 1);
    struct flr_http *h = nng_http_handler_get_data(hd);
    const char *method = nng_http_req_get_method(req), *uri = nng_http_req_get_uri(req);
    const char *bad;
    char path[512], clean[96], action[16] = "", leader[300];
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int post = strcmp(method, "POST") == 0;
    enum http_route route = R_NONE;
    unsigned long server = 0;
    void *body;
    size_t body_len, plen;

    plen = strcspn(uri, "?#");
    if (plen >= sizeof(path)) {
        http_text(aio, 404, NULL, NULL, "no such path (%zu bytes long)", plen);
        return;
    }
    memcpy(path, uri, plen);
    path[plen] = 0;

    nng_http_req_get_data(req, &body, &body_len);
    if (body_len > FLR_HTTP_BODY_MAX) {
        http_text(aio, 413, NULL, NULL,
                  "request body of %zu bytes is larger than the %u accepted (the API takes none)",
                  body_len, (unsigned)FLR_HTTP_BODY_MAX);
        return;
    }

    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        route = R_DASHBOARD;
    } else if (strcmp(path, "/status") == 0) {
        route = R_STATUS;
    } else if (strcmp(path, "/metrics") == 0) {
        route = R_METRICS;
    } else if (strncmp(path, "/api/servers/", 13) == 0) {
        const char *id = path + 13, *slash = strchr(id, '/');
        char idtext[32], why[256];
        if (!slash || strchr(slash + 1, '/') || (size_t)(slash - id) >= sizeof(idtext)) {
            http_text(aio, 404, NULL, NULL,
                      "no such path: %s (commands are POST /api/servers/ID/kill and "
                      "/api/servers/ID/drain)",
                      http_clean(path, clean, sizeof(clean)));
            return;
        }
        snprintf(action, sizeof(action), "%.15s", slash + 1);
        if (strcmp(slash + 1, "kill") != 0 && strcmp(slash + 1, "drain") != 0) {
            http_text(aio, 404, NULL, NULL, "unknown command '%s' (kill or drain)",
                      http_clean(slash + 1, clean, sizeof(clean)));
            return;
        }
        if (!post) {
            http_text(aio, 405, "Allow", "POST", "%s needs POST, not %s",
                      http_clean(path, clean, sizeof(clean)), method);
            return;
        }
        memcpy(idtext, id, (size_t)(slash - id));
        idtext[slash - id] = 0;
        if (flr_status_parse_server_id(idtext, &server, why, sizeof(why)) != 0) {
            http_text(aio, 400, NULL, NULL, "%s", why);
            return;
        }
        route = R_COMMAND;
    }
    if (route == R_NONE) {
        http_text(aio, 404, NULL, NULL, "no such path: %s (try /, /status or /metrics)",
                  http_clean(path, clean, sizeof(clean)));
        return;
    }
    if (route != R_COMMAND && !get) {
        http_text(aio, 405, "Allow", "GET, HEAD", "%s answers GET and HEAD, not %s", path,
                  http_clean(method, clean, sizeof(clean)));
        return;
    }

    if ((route == R_COMMAND || (h->auth_reads && route != R_DASHBOARD)) &&
        (bad = http_auth(h, req)) != NULL) {
        http_text(aio, 403, NULL, NULL, "%s", bad);
        return;
    }

    /* A follower sends the client to the leader, which has the freshest view and runs
     * the commands; it checks the token first so that it tells nothing to a client the
     * leader would turn away. */
    pthread_mutex_lock(&h->mu);
    snprintf(leader, sizeof(leader), "%s", h->leader);
    pthread_mutex_unlock(&h->mu);
    if (leader[0]) {
        char loc[1024];
        snprintf(loc, sizeof(loc), "%s%s", leader, uri);
        http_text(aio, 307, "Location", loc,
                  "this coordinator does not lead job %s; the leader serves %s", h->job, loc);
        return;
    }

    switch (route) {
    case R_DASHBOARD:
        http_reply(aio, 200, "text/html; charset=utf-8", flr_dashboard_html, flr_dashboard_html_len,
                   NULL, NULL);
        return;
    case R_STATUS:
    case R_METRICS: {
        char *copy = NULL, err[256];
        size_t len = 0;
        pthread_mutex_lock(&h->mu);
        {
            const char *src = route == R_STATUS ? h->doc : h->metrics;
            len = route == R_STATUS ? h->doc_len : h->metrics_len;
            if (src && (copy = malloc(len + 1)) != NULL)
                memcpy(copy, src, len + 1);
        }
        snprintf(err, sizeof(err), "%s", h->error);
        pthread_mutex_unlock(&h->mu);
        if (!copy) {
            http_text(aio, 503, "Retry-After", "1", "the status of job %s is not collected yet%s%s",
                      h->job, err[0] ? ": " : "", err);
            return;
        }
        http_reply(aio, 200, route == R_STATUS ? "application/json" : FLR_METRICS_CONTENT_TYPE,
                   copy, len, NULL, NULL);
        free(copy);
        return;
    }
    case R_COMMAND: {
        struct http_cmd *cmd = calloc(1, sizeof(*cmd));
        if (!cmd) {
            http_text(aio, 503, NULL, NULL, "out of memory");
            return;
        }
        cmd->aio = aio;
        cmd->server = server;
        snprintf(cmd->action, sizeof(cmd->action), "%s", action);
        pthread_mutex_lock(&h->mu);
        if (h->stopping) {
            pthread_mutex_unlock(&h->mu);
            free(cmd);
            http_text(aio, 503, NULL, NULL, "the coordinator is shutting down");
            return;
        }
        if (h->cmds_tail)
            h->cmds_tail->next = cmd;
        else
            h->cmds = cmd;
        h->cmds_tail = cmd;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        return; /* the status thread answers */
    }
    default:
        return;
    }
}

/* --- start and stop ---------------------------------------------------------------------- */

int flr_http_check_url(const char *url, char *why, size_t whylen)
{
    nng_url *u = NULL;
    int rv;

    if ((rv = nng_url_parse(&u, url)) != 0) {
        flr_why(why, whylen, "'%.200s' is not a URL (%s)", url, nng_strerror(rv));
        return FLR_ECONFIG;
    }
    if (strcmp(u->u_scheme, "http") != 0) {
        flr_why(why, whylen, "'%.200s': only http:// is served", url);
        nng_url_free(u);
        return FLR_ECONFIG;
    }
    if (u->u_path[0] && strcmp(u->u_path, "/") != 0) {
        flr_why(why, whylen, "'%.200s': give no path, the endpoint serves /", url);
        nng_url_free(u);
        return FLR_ECONFIG;
    }
    nng_url_free(u);
    return 0;
}

/* The URL others should use: bound port, and our host name for a wildcard address. */
static void http_published(struct flr_http *h, const nng_url *u)
{
    nng_sockaddr sa;
    unsigned port = 0;
    const char *host = u->u_hostname;

    if (nng_http_server_get_addr(h->srv, &sa) == 0) {
        if (sa.s_family == NNG_AF_INET)
            port = ntohs(sa.s_in.sa_port);
        else if (sa.s_family == NNG_AF_INET6)
            port = ntohs(sa.s_in6.sa_port);
    }
    if (!port)
        port = (unsigned)atoi(u->u_port);
    if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
        host = h->host;
    if (strchr(host, ':'))
        snprintf(h->url, sizeof(h->url), "http://[%s]:%u", host, port);
    else
        snprintf(h->url, sizeof(h->url), "http://%s:%u", host, port);
}

int flr_http_start(struct flr_http **hp, const struct flr_http_cfg *cfg, char *why, size_t whylen)
{
    static const struct {
        uint16_t code;
        const char *text;
    } pages[] = {
        {400, "bad request: malformed HTTP, or a body larger than 65536 bytes\n"},
        {404, "no such path (try /, /status or /metrics)\n"},
        {405, "method not allowed\n"},
        {500, "internal error\n"},
        {505, "HTTP version not supported (use HTTP/1.x)\n"},
    };
    struct flr_http *h;
    nng_http_handler *hd = NULL;
    nng_url *u = NULL;
    int rv, nrv;

    *hp = NULL;
    if ((rv = flr_http_check_url(cfg->url, why, whylen)) != 0)
        return rv;
    if (strlen(cfg->job) >= sizeof(h->job) || strlen(cfg->zk) >= sizeof(h->zk) ||
        (cfg->token && strlen(cfg->token) >= sizeof(h->token))) {
        flr_why(why, whylen, "job name, ZooKeeper hosts or token too long");
        return FLR_ECONFIG;
    }
    if (cfg->auth_reads && (!cfg->token || !cfg->token[0])) {
        flr_why(why, whylen, "reads cannot need a token when none is configured");
        return FLR_ECONFIG;
    }
    if (!(h = calloc(1, sizeof(*h))))
        return FLR_ENOMEM;
    snprintf(h->zk, sizeof(h->zk), "%s", cfg->zk);
    snprintf(h->job, sizeof(h->job), "%s", cfg->job);
    snprintf(h->token, sizeof(h->token), "%s", cfg->token ? cfg->token : "");
    gethostname(h->host, sizeof(h->host) - 1);
    h->pid = (int)getpid();
    h->session_ms = cfg->session_ms > 0 ? cfg->session_ms : 10000;
    h->refresh_ms = cfg->refresh_ms > 0 ? cfg->refresh_ms : 1000;
    h->auth_reads = cfg->auth_reads;
    atomic_init(&h->refs, 1);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);

    if ((nrv = nng_url_parse(&u, cfg->url)) != 0 || (nrv = nng_http_server_hold(&h->srv, u)) != 0)
        goto nng_fail;
    for (size_t i = 0; i < FLR_ARRAY_LEN(pages); i++)
        if ((nrv = nng_http_server_set_error_page(h->srv, pages[i].code, pages[i].text)) != 0)
            goto nng_fail;
    if ((nrv = nng_http_handler_alloc(&hd, "/", http_handle)) != 0)
        goto nng_fail;
    /* One handler for every path and method: routing, 404 and 405 answers are ours. */
    if ((nrv = nng_http_handler_set_method(hd, NULL)) != 0 ||
        (nrv = nng_http_handler_set_tree(hd)) != 0 ||
        (nrv = nng_http_handler_collect_body(hd, true, HTTP_COLLECT_BODY)) != 0 ||
        (nrv = nng_http_handler_set_data(hd, h, http_unref)) != 0)
        goto nng_fail;
    atomic_fetch_add(&h->refs, 1); /* the handler's */
    if ((nrv = nng_http_server_add_handler(h->srv, hd)) != 0) {
        nng_http_handler_free(hd); /* runs http_unref */
        hd = NULL;
        goto nng_fail;
    }
    hd = NULL; /* the server's now */
    if ((nrv = nng_http_server_start(h->srv)) != 0)
        goto nng_fail;
    http_published(h, u);
    nng_url_free(u);
    u = NULL;
    if (pthread_create(&h->thread, NULL, http_main, h) != 0) {
        flr_why(why, whylen, "cannot start the status thread");
        nng_http_server_stop(h->srv);
        nng_http_server_release(h->srv);
        http_unref(h);
        return FLR_ENOMEM;
    }
    h->thread_started = 1;
    *hp = h;
    return 0;

nng_fail:
    flr_why(why, whylen, "cannot serve %.200s: %s", cfg->url, nng_strerror(nrv));
    if (hd)
        nng_http_handler_free(hd);
    if (u)
        nng_url_free(u);
    if (h->srv)
        nng_http_server_release(h->srv); /* frees the handler, whose destructor unrefs */
    http_unref(h);
    return nrv == NNG_ENOMEM ? FLR_ENOMEM : FLR_ETRANSPORT;
}

const char *flr_http_url(const struct flr_http *h)
{
    return h->url;
}

void flr_http_stop(struct flr_http *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->thread_started)
        pthread_join(h->thread, NULL);
    nng_http_server_stop(h->srv);
    nng_http_server_release(h->srv);
    http_unref(h);
}

int flr_http_read_token(const char *path, char *token, size_t len, char *why, size_t whylen)
{
    char line[FLR_HTTP_TOKEN_MAX + 2];
    FILE *f;
    size_t a = 0, b;

    if (!(f = fopen(path, "r"))) {
        flr_why(why, whylen, "%s: %s", path, strerror(errno));
        return FLR_ECONFIG;
    }
    if (!fgets(line, sizeof(line), f))
        line[0] = 0;
    fclose(f);
    b = strlen(line);
    if (b == sizeof(line) - 1 && line[b - 1] != '\n') {
        flr_why(why, whylen, "%s: the token is longer than %d bytes", path, FLR_HTTP_TOKEN_MAX - 1);
        return FLR_ECONFIG;
    }
    while (a < b && isspace((unsigned char)line[a]))
        a++;
    while (b > a && isspace((unsigned char)line[b - 1]))
        b--;
    if (b == a) {
        flr_why(why, whylen, "%s: the token is empty", path);
        return FLR_ECONFIG;
    }
    if (b - a >= len) {
        flr_why(why, whylen, "%s: the token is too long", path);
        return FLR_ECONFIG;
    }
    memcpy(token, line + a, b - a);
    token[b - a] = 0;
    return 0;
}
