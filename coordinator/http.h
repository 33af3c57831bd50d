/*
 * http.h - the coordinator's status endpoint: JSON status, Prometheus metrics, the HTML
 * dashboard, and operator commands, over nng's HTTP server.
 *
 *     GET  /                          the dashboard (coordinator/dashboard.html)
 *     GET  /status                    the status document (status.h), JSON
 *     GET  /metrics                   the same as Prometheus text (metrics.h)
 *     POST /api/servers/<id>/kill     queue a command for the leader: 202 and the node name
 *     POST /api/servers/<id>/drain
 *
 * A thread of its own, with its own ZooKeeper session, collects the document once a
 * second and keeps it, rendered, under a mutex; GET handlers only copy that.  Commands are
 * handed to the same thread, which writes them to ZooKeeper and answers, so nng's threads
 * never wait on ZooKeeper.  A coordinator that does not lead redirects (307) to the
 * leader's endpoint when the leader publishes one, and serves its own copy otherwise.
 *
 * POST needs "Authorization: Bearer <token>"; reads need it too when auth_reads is set
 * (the dashboard page itself, which holds no data, is always served).
 */
#ifndef FLR_HTTP_H
#define FLR_HTTP_H

#include <stddef.h>

#define FLR_HTTP_TOKEN_MAX 256  /* longest operator token, bytes */
#define FLR_HTTP_BODY_MAX  4096 /* largest request body accepted (the API takes none) */

struct flr_http_cfg {
    const char *url;   /* where to listen: "http://127.0.0.1:0" (port 0 picks a free one) */
    const char *zk;    /* ZooKeeper hosts */
    const char *job;   /* the job to describe */
    int session_ms;    /* ZooKeeper session timeout of the status thread */
    const char *token; /* operator token; NULL or "" refuses every POST */
    int auth_reads;    /* reads need the token too */
    int refresh_ms;    /* collection period, 1000 by default when 0 */
};

struct flr_http;

/*
 * Checks that url is an http:// URL nng can listen on.  Returns 0 or FLR_ECONFIG with a
 * reason.  (For option checks before anything starts.)
 */
int flr_http_check_url(const char *url, char *why, size_t whylen);

/*
 * Listens on cfg->url and starts the status thread (which opens its ZooKeeper session
 * itself and retries while ZooKeeper is unreachable, so start does not wait for it).
 * cfg's strings are copied.  Returns 0, FLR_ECONFIG (bad URL), FLR_ETRANSPORT (cannot
 * listen) or FLR_ENOMEM, with a reason.
 */
int flr_http_start(struct flr_http **hp, const struct flr_http_cfg *cfg, char *why, size_t whylen);

/* The endpoint's URL as others should reach it: the bound port, and the host name in
 * place of a wildcard address.  Valid until flr_http_stop. */
const char *flr_http_url(const struct flr_http *h);

/* Stops serving (commands still queued are answered 503), stops the thread, closes its
 * session and frees h.  NULL is fine. */
void flr_http_stop(struct flr_http *h);

/*
 * Reads an operator token from path: the first line, surrounding white space removed.
 * An empty token is an error.  Returns 0 or FLR_ECONFIG with a reason.
 */
int flr_http_read_token(const char *path, char *token, size_t len, char *why, size_t whylen);

#endif
