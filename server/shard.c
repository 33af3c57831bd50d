#include "shard.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "rebuild.h"
#include "store.h"

/* A request the shard keeps: a pull waiting for the clock, or a BSP push waiting for its
 * clock to close.  m points into msg, which the shard owns while it holds the request. */
struct held {
    struct flr_req *req; /* NULL for pushes: they were acknowledged on arrival */
    nng_msg *msg;
    struct flr_msg m;
};

struct held_list {
    struct held *v;
    size_t n, cap;
};

/* The most holders a row keeps (k - 1); a larger k is capped.  Each costs 2 bytes per
 * row, so a handful is what a server's memory affords anyway. */
#define SHARD_MAX_HOLDERS 16

/* One applied push of a worker, until the safe stamp passes its stamp. */
struct cov_entry {
    uint64_t stamp, pseq;
};

struct cov_fifo {
    struct cov_entry *v;
    size_t head, n, cap; /* live entries are v[head .. n) */
};

/* Rows being copied, or to copy again. */
struct repl_rows {
    struct flr_dirty *v;
    size_t n, cap;
};

/* A REPLICATE in flight: its rows wait for the worker's answer. */
struct repl_batch {
    uint64_t id;
    uint32_t worker;
    uint32_t tix;
    uint64_t stamp; /* S: the rows were read at it */
    uint64_t since; /* the oldest since of its rows */
    uint64_t bytes;
    struct repl_rows rows;
};

struct flr_shard {
    uint32_t id;
    uint32_t self;
    uint64_t epoch;
    uint64_t stamp;
    struct flr_job_spec spec;
    struct flr_store *store;

    uint32_t nworkers;
    int64_t *wclock;
    uint8_t *removed;  /* workers the coordinator removed: their clocks no longer count */
    uint64_t *left_at; /* per removed worker: the stamp when it was removed (see shard_leave) */
    int64_t min_clock;
    int64_t bound; /* pull at clock t waits for min_clock >= t - bound */
    int bsp;

    struct held_list pulls;
    struct held_list pushes; /* BSP only */
    struct flr_shard_stats st;

    /* Exactly-once pushes (docs/recovery.md): per worker the incarnation it last showed
     * (seq >> FLR_SHARD_INC_SHIFT, 0 = none yet) and the applied frontier F[w].  F[w]
     * belongs to inc[w] when F[w] >> FLR_SHARD_INC_SHIFT == inc[w]; otherwise the shard
     * does not know what it applied of that process: under recovery flr it applied nothing
     * (restores and drains install every frontier), under none (it was opened afresh after
     * a loss) it takes the first push it sees as the next.  Pushes below floor[w], sent before that
     * one, have an unknown past and are applied as they come. */
    uint64_t *inc;
    uint64_t *frontier;
    uint64_t *floor;
    struct held_list early; /* ASP/SSP: pushes waiting for their predecessor (req kept) */

    /* Recovery flr (docs/recovery.md): copies, the safe stamp and covered pseqs. */
    int flr;
    uint32_t nholders;    /* k - 1: holders a row wants (0: copies are not tracked) */
    struct cov_fifo *cov; /* per worker: (stamp, pseq) of applied pushes not yet covered */
    uint64_t *covered;    /* per worker: the covered pseq last derived */
    uint64_t safe;        /* the safe stamp, never decreasing */
    unsigned char *xbuf;  /* F[] as the wire's u64 array */
    uint64_t *maxseq;     /* BSP closing: per worker the largest pseq of the clock */
    uint64_t repl_prev;   /* the stamp at the previous replication pass */
    uint64_t next_batch;
    uint32_t rr;                /* round-robin cursor over targets */
    struct repl_batch *batches; /* REPLICATEs in flight */
    size_t nbatches, batches_cap;
    struct repl_rows retry; /* rows whose REPLICATE failed: served first */
    uint64_t retry_since;   /* oldest since on retry, UINT64_MAX when empty */
    uint64_t replicated_rows, replicated_bytes, replicate_errors;

    /* What the rebuild that restored this shard did (rebuilt = 0: it was not rebuilt). */
    int rebuilt;
    struct flr_rebuild_result rebuild;
};

static int held_push(struct held_list *l, struct flr_req *req, nng_msg *msg,
                     const struct flr_msg *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct held *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return FLR_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n].req = req;
    l->v[l->n].msg = msg;
    l->v[l->n].m = *m;
    l->n++;
    return 0;
}

static void held_drop_all(struct held_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].req)
            flr_rep_reply(l->v[i].req, NULL);
        nng_msg_free(l->v[i].msg);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

void flr_reply_error(struct flr_req *req, const struct flr_msg *in, const char *job, uint32_t self,
                     int status, const char *reason)
{
    struct flr_msg r = {0};
    nng_msg *out;

    r.type = flr_reply_type(in ? in->type : 0);
    r.job = job;
    r.job_len = (uint32_t)strlen(job);
    r.sender = self;
    r.shard = in ? in->shard : 0;
    r.shard_epoch = in ? in->shard_epoch : 0;
    r.request_id = in ? in->request_id : 0;
    r.status = status;
    r.reason = reason ? reason : flr_strerror(status);
    r.reason_len = (uint32_t)strnlen(r.reason, FLR_REASON_MAX);
    if (flr_msg_to_nng(&out, &r, NULL) != 0) {
        flr_rep_reply(req, NULL);
        return;
    }
    flr_rep_reply(req, out);
}

/* Frees s and all it holds (also a half-opened shard: calloc'd, so unset parts are NULL). */
static void shard_free(struct flr_shard *s)
{
    held_drop_all(&s->pulls);
    held_drop_all(&s->pushes);
    held_drop_all(&s->early);
    for (size_t i = 0; i < s->nbatches; i++)
        free(s->batches[i].rows.v);
    free(s->batches);
    free(s->retry.v);
    for (uint32_t w = 0; s->cov && w < s->nworkers; w++)
        free(s->cov[w].v);
    flr_store_free(s->store);
    free(s->maxseq);
    free(s->xbuf);
    free(s->covered);
    free(s->cov);
    free(s->floor);
    free(s->frontier);
    free(s->inc);
    free(s->wclock);
    free(s->removed);
    free(s->left_at);
    free(s);
}

static int shard_open(struct flr_shard **sp, const struct flr_job_spec *spec, uint32_t id,
                      uint64_t epoch, uint32_t self_id, unsigned store_flags)
{
    struct flr_shard *s;
    int rv;

    if (!(s = calloc(1, sizeof(*s))))
        return FLR_ENOMEM;
    s->spec = *spec;
    s->id = id;
    s->self = self_id;
    s->epoch = epoch;
    s->nworkers = spec->num_workers;
    s->wclock = calloc(s->nworkers, sizeof(*s->wclock));
    s->removed = calloc(s->nworkers, sizeof(*s->removed));
    s->left_at = calloc(s->nworkers, sizeof(*s->left_at));
    s->inc = calloc(s->nworkers, sizeof(*s->inc));
    s->frontier = calloc(s->nworkers, sizeof(*s->frontier));
    s->floor = calloc(s->nworkers, sizeof(*s->floor));
    s->cov = calloc(s->nworkers, sizeof(*s->cov));
    s->covered = calloc(s->nworkers, sizeof(*s->covered));
    s->xbuf = calloc(s->nworkers, 8);
    s->maxseq = calloc(s->nworkers, sizeof(*s->maxseq));
    s->retry_since = UINT64_MAX;
    if (!s->wclock || !s->removed || !s->left_at || !s->inc || !s->frontier || !s->floor ||
        !s->cov || !s->covered || !s->xbuf || !s->maxseq) {
        rv = FLR_ENOMEM;
        goto fail;
    }
    switch (spec->consistency) {
    case FLR_BSP:
        s->bsp = 1;
        s->bound = 0;
        break;
    case FLR_SSP:
        s->bound = spec->staleness;
        break;
    default:
        s->bound = INT64_MAX;
        break;
    }
    if ((rv = flr_store_alloc_flags(&s->store, &s->spec, id, store_flags)) != 0)
        goto fail;
    if (strcmp(spec->recovery, "flr") == 0) {
        s->flr = 1;
        s->nholders = spec->k > 1 ? spec->k - 1 : 0;
        if (s->nholders > SHARD_MAX_HOLDERS)
            s->nholders = SHARD_MAX_HOLDERS;
        if (s->nholders > 0 &&
            (rv = flr_store_track_copies(s->store, s->nholders, s->nworkers)) != 0)
            goto fail;
    }
    *sp = s;
    return 0;

fail:
    shard_free(s);
    return rv;
}

int flr_shard_open(struct flr_shard **sp, const struct flr_job_spec *spec, uint32_t id,
                   uint64_t epoch, uint32_t self_id)
{
    return shard_open(sp, spec, id, epoch, self_id, 0);
}

int flr_shard_open_for_rebuild(struct flr_shard **sp, const struct flr_job_spec *spec, uint32_t id,
                               uint64_t epoch, uint32_t self_id)
{
    return shard_open(sp, spec, id, epoch, self_id, FLR_STORE_UNINIT);
}

void flr_shard_close(struct flr_shard *s)
{
    if (s)
        shard_free(s);
}

uint64_t flr_shard_epoch(const struct flr_shard *s)
{
    return s->epoch;
}

uint64_t flr_shard_stamp(const struct flr_shard *s)
{
    return s->stamp;
}

uint64_t flr_shard_frontier(const struct flr_shard *s, uint32_t worker)
{
    return worker < s->nworkers ? s->frontier[worker] : 0;
}

const struct flr_msg *flr_shard_held_push(const struct flr_shard *s, size_t i)
{
    return i < s->pushes.n ? &s->pushes.v[i].m : NULL;
}

int flr_shard_adopt_push(struct flr_shard *s, nng_msg *msg, const struct flr_msg *m)
{
    int rv;

    if (!s->bsp || m->sender >= s->nworkers || m->clock < s->min_clock)
        return FLR_EBAD_REQUEST;
    if ((rv = held_push(&s->pushes, NULL, msg, m)) != 0)
        return rv;
    s->st.pushes++;
    s->st.keys_pushed += m->nkeys;
    return 0;
}

void flr_shard_set_stamp(struct flr_shard *s, uint64_t stamp)
{
    if (stamp > s->stamp)
        s->stamp = stamp;
}

int64_t flr_shard_min_clock(const struct flr_shard *s)
{
    return s->min_clock;
}

int64_t flr_shard_worker_clock(const struct flr_shard *s, uint32_t worker, int *removed)
{
    if (worker >= s->nworkers) {
        *removed = 0;
        return -1;
    }
    *removed = s->removed[worker];
    return s->wclock[worker];
}

const struct flr_shard_stats *flr_shard_stats(const struct flr_shard *s)
{
    return &s->st;
}

struct flr_store *flr_shard_store(struct flr_shard *s)
{
    return s->store;
}

/* ---- copies, the safe stamp and covered pseqs (recovery flr) ---------------------------- */

static uint32_t shard_live_workers(const struct flr_shard *s)
{
    uint32_t n = 0;

    for (uint32_t w = 0; w < s->nworkers; w++)
        n += !s->removed[w];
    return n;
}

/* Notes an applied push of worker w (ASP: each push; BSP: the largest pseq of the worker
 * in a closed clock).  Out of memory only delays its coverage: the entry is dropped, and
 * the worker keeps the push in its log until a later entry covers it. */
static void shard_cov_append(struct flr_shard *s, uint32_t w, uint64_t stamp, uint64_t pseq)
{
    struct cov_fifo *f = &s->cov[w];

    if (!s->flr || pseq == 0)
        return;
    if (f->head > 0 && f->n == f->cap) {
        memmove(f->v, f->v + f->head, (f->n - f->head) * sizeof(*f->v));
        f->n -= f->head;
        f->head = 0;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct cov_entry *v = realloc(f->v, cap * sizeof(*v));
        if (!v)
            return;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (struct cov_entry){stamp, pseq};
}

/* The stamp the push pseq of worker w was applied at, if it is not covered yet; else 0. */
static uint64_t shard_cov_stamp(const struct flr_shard *s, uint32_t w, uint64_t pseq)
{
    const struct cov_fifo *f = &s->cov[w];

    for (size_t i = f->n; i > f->head; i--)
        if (f->v[i - 1].pseq == pseq)
            return f->v[i - 1].stamp;
    return 0;
}

/* The stamp below every row still waiting for its copies (listed dirty, on the retry list
 * or in a REPLICATE not yet answered): every update at or below it is in enough copies
 * now.  It goes back when rows are listed again (a holder left). */
static uint64_t shard_safe_now(struct flr_shard *s)
{
    uint64_t lo = s->retry_since;
    const struct flr_dirty *d;

    if (s->nholders > 0) {
        if ((d = flr_store_dirty_head(s->store)) != NULL && d->since < lo)
            lo = d->since;
        for (size_t i = 0; i < s->nbatches; i++)
            if (s->batches[i].since < lo)
                lo = s->batches[i].since;
    }
    return lo == UINT64_MAX ? s->stamp : lo - 1;
}

/* Recomputes the safe stamp, which never decreases: the covered pseqs derived from it
 * were already reported. */
static uint64_t shard_safe(struct flr_shard *s)
{
    uint64_t safe = shard_safe_now(s);

    if (safe > s->safe)
        s->safe = safe;
    return s->safe;
}

/* The covered pseq of worker w: all its pushes up to it are applied at or below the safe
 * stamp.  0 without recovery flr. */
static uint64_t shard_covered(struct flr_shard *s, uint32_t w)
{
    struct cov_fifo *f;
    uint64_t safe;

    if (!s->flr || w >= s->nworkers)
        return 0;
    safe = shard_safe(s);
    f = &s->cov[w];
    /* Pushes applied without moving the frontier (see floor) may come late in the FIFO:
     * the covered pseq never goes back. */
    for (; f->head < f->n && f->v[f->head].stamp <= safe; f->head++)
        if (f->v[f->head].pseq > s->covered[w])
            s->covered[w] = f->v[f->head].pseq;
    if (f->head == f->n)
        f->head = f->n = 0;
    return s->covered[w];
}

/* Fills the wire's frontier vector (x) when replies carry one: recovery flr, ASP or SSP. */
static void shard_extra(struct flr_shard *s, struct flr_msg *r)
{
    if (!s->flr || s->bsp)
        return;
    for (uint32_t w = 0; w < s->nworkers; w++)
        for (int j = 0; j < 8; j++)
            s->xbuf[(size_t)w * 8 + j] = (unsigned char)(s->frontier[w] >> (8 * j));
    r->extra = s->xbuf;
    r->extra_len = (uint64_t)s->nworkers * 8;
}

/* Worker w's copies are gone (it was removed, or a new process replaced it): rows it held
 * are listed again at the current stamp, which keeps the list in order. */
static void shard_forget_holder(struct flr_shard *s, uint32_t w)
{
    if (s->nholders == 0)
        return;
    if (flr_store_drop_holder(s->store, w, s->stamp) != 0 ||
        flr_store_set_need(s->store, shard_live_workers(s), s->stamp) != 0)
        flr_err("srv.copies", "shard %u: out of memory listing the rows worker %u held", s->id, w);
}

static void shard_reject(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                         const struct flr_msg *m, int status, const char *why)
{
    uint64_t n = ++s->st.rejected_by[status > 0 && status < FLR_E_COUNT_ ? status : FLR_EINTERNAL];

    s->st.rejected++;
    /* The first few of each kind, then every 1000th: a flood cannot drown the log. */
    if (n <= 5 || n % 1000 == 0)
        flr_warn("srv.reject", "shard %u: rejected %s from %u (%s, %llu so far): %s", s->id,
                 flr_msg_type_name(m->type), m->sender, flr_errname(status), (unsigned long long)n,
                 why);
    flr_reply_error(req, m, s->spec.job, s->self, status, why);
    nng_msg_free(msg);
}

static int pull_ready(const struct flr_shard *s, const struct flr_msg *m)
{
    if (m->clock < 0 || s->bound == INT64_MAX)
        return 1;
    return s->min_clock >= m->clock - s->bound;
}

/* Answers a pull whose keys have been checked. Frees msg. */
static void shard_serve_pull(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                             const struct flr_msg *m, struct flr_tshard *t)
{
    const struct flr_table_spec *ts = flr_tshard_spec(t);
    struct flr_msg r = {0};
    nng_msg *out;
    void *vals;
    int rv;

    r.type = FLR_MSG_PULL_REPLY;
    r.job = s->spec.job;
    r.job_len = (uint32_t)strlen(s->spec.job);
    r.sender = s->self;
    r.shard = s->id;
    r.shard_epoch = s->epoch;
    r.request_id = m->request_id;
    r.reason = "";
    r.stamp = s->stamp;
    r.clock = s->min_clock;
    r.aux = shard_covered(s, m->sender);
    shard_extra(s, &r);
    r.vals = NULL;
    r.vals_len = (uint64_t)m->nkeys * ts->dim * sizeof(float);
    if ((rv = flr_msg_to_nng(&out, &r, &vals)) != 0) {
        shard_reject(s, req, msg, m, rv, "out of memory building the reply");
        return;
    }
    if ((rv = flr_tshard_read(t, m->keys, m->nkeys, vals)) != 0) {
        nng_msg_free(out);
        shard_reject(s, req, msg, m, rv, "out of memory creating rows");
        return;
    }
    if (s->nholders > 0 && m->sender < s->nworkers)
        flr_tshard_hold(t, m->keys, m->nkeys, m->sender);
    s->st.pulls++;
    s->st.keys_pulled += m->nkeys;
    s->st.bytes_out += nng_msg_len(out);
    nng_msg_free(msg);
    flr_rep_reply(req, out);
}

/* Answers a push or clock: p = stamp, q = the sender's covered pseq. */
static void shard_reply_ok(struct flr_shard *s, struct flr_req *req, const struct flr_msg *m,
                           int type, uint64_t stamp)
{
    struct flr_msg r = {0};
    nng_msg *out;

    r.type = type;
    r.job = s->spec.job;
    r.job_len = (uint32_t)strlen(s->spec.job);
    r.sender = s->self;
    r.shard = s->id;
    r.shard_epoch = s->epoch;
    r.request_id = m->request_id;
    r.reason = "";
    r.stamp = stamp;
    r.aux = shard_covered(s, m->sender);
    if (flr_msg_to_nng(&out, &r, NULL) != 0) {
        flr_rep_reply(req, NULL);
        return;
    }
    flr_rep_reply(req, out);
}

static int held_cmp(const void *a, const void *b)
{
    const struct held *x = a, *y = b;
    if (x->m.clock != y->m.clock)
        return x->m.clock < y->m.clock ? -1 : 1;
    if (x->m.sender != y->m.sender)
        return x->m.sender < y->m.sender ? -1 : 1;
    if (x->m.request_id != y->m.request_id)
        return x->m.request_id < y->m.request_id ? -1 : 1;
    return 0;
}

/* Applies every held BSP push of clocks below min_clock: summed per row in worker order,
 * request order within a worker, then one optimizer step per clock and table. */
static int shard_close_clocks(struct flr_shard *s)
{
    size_t i = 0, j, keep = 0;
    int rv = 0;

    if (s->pushes.n == 0)
        return 0;
    qsort(s->pushes.v, s->pushes.n, sizeof(s->pushes.v[0]), held_cmp);
    while (i < s->pushes.n && s->pushes.v[i].m.clock < s->min_clock) {
        int64_t c = s->pushes.v[i].m.clock;
        uint8_t touched[FLR_MAX_TABLES] = {0};
        memset(s->maxseq, 0, s->nworkers * sizeof(*s->maxseq));
        for (j = i; j < s->pushes.n && s->pushes.v[j].m.clock == c; j++) {
            const struct flr_msg *m = &s->pushes.v[j].m;
            struct flr_tshard *t = flr_store_table(s->store, m->table);
            for (uint32_t k = 0; k < s->spec.ntables; k++)
                if (s->spec.tables[k].id == m->table)
                    touched[k] = 1;
            /* By reference: the messages are freed once the clock is applied. */
            if (rv == 0)
                rv = flr_tshard_accumulate_ref(t, m->keys, m->nkeys, m->vals);
            if (m->seq > s->frontier[m->sender])
                s->frontier[m->sender] = m->seq;
            if (m->seq > s->maxseq[m->sender])
                s->maxseq[m->sender] = m->seq;
        }
        s->stamp++;
        for (uint32_t w = 0; w < s->nworkers; w++)
            shard_cov_append(s, w, s->stamp, s->maxseq[w]);
        for (uint32_t k = 0; k < s->spec.ntables; k++) {
            struct flr_tshard *t = flr_store_table(s->store, s->spec.tables[k].id);
            if (touched[k] && rv == 0)
                rv = flr_tshard_apply_accumulated(t, s->stamp);
            else if (touched[k])
                flr_tshard_drop_accumulated(t);
        }
        for (; i < j; i++)
            nng_msg_free(s->pushes.v[i].msg);
    }
    for (; i < s->pushes.n; i++)
        s->pushes.v[keep++] = s->pushes.v[i];
    s->pushes.n = keep;
    return rv;
}

/* Serves every held pull the clock now allows, in arrival order. */
static void shard_release_pulls(struct flr_shard *s)
{
    size_t i, keep = 0;

    for (i = 0; i < s->pulls.n; i++) {
        struct held h = s->pulls.v[i];
        if (pull_ready(s, &h.m)) {
            s->st.held_pulls--;
            shard_serve_pull(s, h.req, h.msg, &h.m, flr_store_table(s->store, h.m.table));
        } else {
            s->pulls.v[keep++] = h;
        }
    }
    s->pulls.n = keep;
}

/* The checks a pull and a push share: the table exists and the keys are sorted and
 * unique.  Returns the table, or NULL after rejecting the request. */
static struct flr_tshard *shard_check_table_keys(struct flr_shard *s, struct flr_req *req,
                                                 nng_msg *msg, const struct flr_msg *m)
{
    struct flr_tshard *t = flr_store_table(s->store, m->table);
    char why[FLR_REASON_MAX];
    int rv;

    if (!t) {
        snprintf(why, sizeof(why), "unknown table %u", m->table);
        shard_reject(s, req, msg, m, FLR_EUNKNOWN_TABLE, why);
        return NULL;
    }
    if ((rv = flr_keys_check_sorted(m->keys, m->nkeys)) != 0) {
        shard_reject(s, req, msg, m, rv, "keys are not sorted and unique");
        return NULL;
    }
    return t;
}

static enum flr_shard_verdict shard_pull(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                                         const struct flr_msg *m)
{
    struct flr_tshard *t;
    char why[FLR_REASON_MAX];
    int rv;

    if (!(t = shard_check_table_keys(s, req, msg, m)))
        return FLR_SHARD_REPLIED;
    if ((rv = flr_tshard_check_keys(t, m->keys, m->nkeys, why, sizeof(why))) != 0) {
        shard_reject(s, req, msg, m, rv, why);
        return FLR_SHARD_REPLIED;
    }
    if (!pull_ready(s, m)) {
        if (held_push(&s->pulls, req, msg, m) != 0) {
            shard_reject(s, req, msg, m, FLR_ENOMEM, "out of memory holding the pull");
            return FLR_SHARD_REPLIED;
        }
        s->st.held_pulls++;
        return FLR_SHARD_HELD;
    }
    shard_serve_pull(s, req, msg, m, t);
    return FLR_SHARD_REPLIED;
}

/* Applies one checked ASP/SSP push at the next stamp and counts it. */
static int shard_apply_push(struct flr_shard *s, struct flr_tshard *t, nng_msg *msg,
                            const struct flr_msg *m)
{
    int rv;

    if ((rv = flr_tshard_apply(t, m->keys, m->nkeys, m->vals, s->stamp + 1)) != 0)
        return rv;
    s->stamp++;
    s->st.pushes++;
    s->st.keys_pushed += m->nkeys;
    s->st.bytes_in += nng_msg_len(msg);
    if (m->seq != 0 && m->seq > s->frontier[m->sender])
        s->frontier[m->sender] = m->seq;
    shard_cov_append(s, m->sender, s->stamp, m->seq);
    return 0;
}

/* Applies a push and answers it.  Frees msg. */
static void shard_push_now(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                           const struct flr_msg *m, struct flr_tshard *t)
{
    int rv;

    if ((rv = shard_apply_push(s, t, msg, m)) != 0) {
        shard_reject(s, req, msg, m, rv, "out of memory applying the push");
        return;
    }
    shard_reply_ok(s, req, m, FLR_MSG_PUSH_REPLY, s->stamp);
    nng_msg_free(msg);
}

/* Applies the held pushes of worker w that now follow its frontier, in pseq order. */
static void shard_push_successors(struct flr_shard *s, uint32_t w)
{
    for (;;) {
        size_t i;

        for (i = 0; i < s->early.n; i++)
            if (s->early.v[i].m.sender == w && s->early.v[i].m.seq == s->frontier[w] + 1)
                break;
        if (i == s->early.n)
            return;
        struct held h = s->early.v[i];
        s->early.v[i] = s->early.v[--s->early.n];
        s->st.early_pushes--;
        shard_push_now(s, h.req, h.msg, &h.m, flr_store_table(s->store, h.m.table));
        if (s->frontier[w] != h.m.seq)
            return; /* it failed: its successors wait for its retry */
    }
}

/* Answers held requests of worker w without a reply (their sender is gone or retried)
 * and forgets them. */
static void shard_drop_early(struct flr_shard *s, uint32_t w, uint64_t seq)
{
    size_t keep = 0;

    for (size_t i = 0; i < s->early.n; i++) {
        struct held h = s->early.v[i];
        if (h.m.sender == w && (seq == 0 || h.m.seq == seq)) {
            flr_rep_reply(h.req, NULL);
            nng_msg_free(h.msg);
            s->st.early_pushes--;
        } else {
            s->early.v[keep++] = h;
        }
    }
    s->early.n = keep;
}

/* ASP and SSP: a worker's pushes are applied in pseq order, each once. */
static enum flr_shard_verdict shard_push_in_order(struct flr_shard *s, struct flr_req *req,
                                                  nng_msg *msg, const struct flr_msg *m,
                                                  struct flr_tshard *t)
{
    const uint32_t w = m->sender;

    if (m->seq == 0) {
        /* A client that numbers nothing: applied as it comes. */
        shard_push_now(s, req, msg, m, t);
        return FLR_SHARD_REPLIED;
    }
    if ((s->frontier[w] >> FLR_SHARD_INC_SHIFT) != s->inc[w]) {
        if (s->flr) {
            /* A shard under recovery flr learns every frontier it had (restore, drain):
             * one it does not know is of a process that never pushed to it. */
            s->frontier[w] = s->inc[w] << FLR_SHARD_INC_SHIFT;
        } else {
            /* Nothing known of this process's earlier pushes: this one is the next. */
            s->frontier[w] = m->seq - 1;
            s->floor[w] = m->seq;
        }
    }
    if (m->seq < s->floor[w]) {
        /* Sent before the first push this shard saw from the process, whose effect the
         * shard cannot know: applied as it comes, without moving the frontier. */
        uint64_t f = s->frontier[w];
        shard_push_now(s, req, msg, m, t);
        s->frontier[w] = f;
        return FLR_SHARD_REPLIED;
    }
    if (m->seq <= s->frontier[w]) {
        /* The stamp it was applied at, while the shard still knows it. */
        uint64_t at = shard_cov_stamp(s, w, m->seq);
        s->st.duplicate_pushes++;
        shard_reply_ok(s, req, m, FLR_MSG_PUSH_REPLY, at ? at : s->stamp);
        nng_msg_free(msg);
        return FLR_SHARD_REPLIED;
    }
    if (m->seq > s->frontier[w] + 1) {
        /* Early: it waits, unanswered, for its predecessor.  A retry replaces it. */
        shard_drop_early(s, w, m->seq);
        if (held_push(&s->early, req, msg, m) != 0) {
            shard_reject(s, req, msg, m, FLR_ENOMEM, "out of memory holding the push");
            return FLR_SHARD_REPLIED;
        }
        s->st.early_pushes++;
        return FLR_SHARD_HELD;
    }
    shard_push_now(s, req, msg, m, t);
    shard_push_successors(s, w);
    return FLR_SHARD_REPLIED;
}

/* BSP: whether a push is one the shard already applied or holds. */
static int shard_bsp_duplicate(const struct flr_shard *s, const struct flr_msg *m)
{
    if (m->seq == 0)
        return 0;
    if ((s->frontier[m->sender] >> FLR_SHARD_INC_SHIFT) == (m->seq >> FLR_SHARD_INC_SHIFT) &&
        m->seq <= s->frontier[m->sender])
        return 1;
    for (size_t i = 0; i < s->pushes.n; i++)
        if (s->pushes.v[i].m.sender == m->sender && s->pushes.v[i].m.seq == m->seq)
            return 1;
    return 0;
}

static enum flr_shard_verdict shard_push(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                                         const struct flr_msg *m)
{
    struct flr_tshard *t;
    char why[FLR_REASON_MAX];
    int rv;

    if (!(t = shard_check_table_keys(s, req, msg, m)))
        return FLR_SHARD_REPLIED;
    if ((rv = flr_tshard_check_push(t, m->keys, m->nkeys, m->vals, m->vals_len, why,
                                    sizeof(why))) != 0) {
        shard_reject(s, req, msg, m, rv, why);
        return FLR_SHARD_REPLIED;
    }
    if (m->sender >= s->nworkers) {
        snprintf(why, sizeof(why), "push from worker %u, but the job has %u workers", m->sender,
                 s->nworkers);
        shard_reject(s, req, msg, m, FLR_EBAD_REQUEST, why);
        return FLR_SHARD_REPLIED;
    }
    if (!s->bsp)
        return shard_push_in_order(s, req, msg, m, t);
    if (shard_bsp_duplicate(s, m)) {
        /* A retry of a push already held or applied: acknowledged again, held once. */
        s->st.duplicate_pushes++;
        shard_reply_ok(s, req, m, FLR_MSG_PUSH_REPLY, s->stamp);
        nng_msg_free(msg);
        return FLR_SHARD_REPLIED;
    }
    if (m->clock < s->min_clock || m->clock < 0) {
        snprintf(why, sizeof(why), "push for clock %lld, but clock %lld is already closed",
                 (long long)m->clock, (long long)s->min_clock);
        shard_reject(s, req, msg, m, FLR_EBAD_REQUEST, why);
        return FLR_SHARD_REPLIED;
    }
    if (held_push(&s->pushes, NULL, msg, m) != 0) {
        shard_reject(s, req, msg, m, FLR_ENOMEM, "out of memory holding the push");
        return FLR_SHARD_REPLIED;
    }
    /* Counted once accepted, like every other push. */
    s->st.pushes++;
    s->st.keys_pushed += m->nkeys;
    s->st.bytes_in += nng_msg_len(msg);
    shard_reply_ok(s, req, m, FLR_MSG_PUSH_REPLY, s->stamp);
    return FLR_SHARD_REPLIED;
}

/* The minimum clock over the workers that still count; INT64_MAX when none does. */
static int64_t shard_live_min(const struct flr_shard *s)
{
    int64_t mn = INT64_MAX;

    for (uint32_t w = 0; w < s->nworkers; w++)
        if (!s->removed[w] && s->wclock[w] < mn)
            mn = s->wclock[w];
    return mn;
}

/* Recomputes the minimum clock over the workers that still count; when it moved, applies
 * the BSP clocks it closed and answers the pulls it allows. */
static int shard_advance(struct flr_shard *s)
{
    const int64_t mn = shard_live_min(s);

    if (mn <= s->min_clock)
        return 0;
    s->min_clock = mn;
    if (s->bsp && shard_close_clocks(s) != 0)
        return FLR_ENOMEM;
    shard_release_pulls(s);
    return 0;
}

void flr_shard_remove_worker(struct flr_shard *s, uint32_t worker)
{
    if (worker >= s->nworkers || s->removed[worker])
        return;
    s->removed[worker] = 1;
    s->left_at[worker] = s->stamp;
    shard_drop_early(s, worker, 0);
    shard_forget_holder(s, worker);
    (void)shard_advance(s);
}

void flr_shard_readmit_worker(struct flr_shard *s, uint32_t worker)
{
    if (worker >= s->nworkers || !s->removed[worker])
        return;
    s->removed[worker] = 0;
    if (s->nholders > 0 && flr_store_set_need(s->store, shard_live_workers(s), s->stamp) != 0)
        flr_err("srv.copies", "shard %u: out of memory listing rows short of copies", s->id);
    /* It rejoins at the shard's clock: it must not pull the minimum back. */
    if (s->wclock[worker] < s->min_clock)
        s->wclock[worker] = s->min_clock;
}

/*
 * A pull or push at clock t comes from a worker that has finished t iterations, so its
 * clock is at least t.  A shard that was just opened on a relaunched server learns the
 * workers' clocks this way, without waiting for each one's next CLOCK (a worker blocked in
 * a pull would never send it).
 */
static int shard_note_clock(struct flr_shard *s, const struct flr_msg *m)
{
    if (m->sender >= s->nworkers || m->clock <= s->wclock[m->sender])
        return 0;
    s->wclock[m->sender] = m->clock;
    return shard_advance(s);
}

static enum flr_shard_verdict shard_clock(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                                          const struct flr_msg *m)
{
    char why[FLR_REASON_MAX];

    if (m->sender >= s->nworkers || m->clock < 0) {
        snprintf(why, sizeof(why), "clock %lld from worker %u (job has %u workers)",
                 (long long)m->clock, m->sender, s->nworkers);
        shard_reject(s, req, msg, m, FLR_EBAD_REQUEST, why);
        return FLR_SHARD_REPLIED;
    }
    s->st.clocks++;
    if (m->clock > s->wclock[m->sender])
        s->wclock[m->sender] = m->clock;
    if (shard_advance(s) != 0) {
        shard_reject(s, req, msg, m, FLR_ENOMEM, "out of memory applying the clock");
        return FLR_SHARD_REPLIED;
    }
    shard_reply_ok(s, req, m, FLR_MSG_CLOCK_REPLY, s->stamp);
    nng_msg_free(msg);
    return FLR_SHARD_REPLIED;
}

/* A new process of worker w (incarnation inc) replaced the one the shard knew: what the
 * old one held is gone, and the new one's pushes are counted from its base.  The BSP
 * pushes the old one had acknowledged stay held for their clock. */
static void shard_new_incarnation(struct flr_shard *s, uint32_t w, uint64_t inc)
{
    flr_info("srv.incarnation", "shard %u: worker %u is a new process (incarnation %llu, was %llu)",
             s->id, w, (unsigned long long)inc, (unsigned long long)s->inc[w]);
    s->inc[w] = inc;
    s->frontier[w] = inc << FLR_SHARD_INC_SHIFT;
    s->floor[w] = 0;
    shard_drop_early(s, w, 0);
    shard_forget_holder(s, w);
    s->cov[w].head = s->cov[w].n = 0;
    s->covered[w] = 0;
}

/* Follows the incarnation a request shows (seq 0: a client that shows none).  Returns 0,
 * or FLR_EBAD_REQUEST for a request of a process older than the one the shard knows. */
static int shard_note_incarnation(struct flr_shard *s, const struct flr_msg *m)
{
    uint64_t inc = m->seq >> FLR_SHARD_INC_SHIFT;

    if (m->seq == 0 || m->sender >= s->nworkers || inc == s->inc[m->sender])
        return 0;
    if (s->inc[m->sender] == 0)
        s->inc[m->sender] = inc;
    else if (inc > s->inc[m->sender])
        shard_new_incarnation(s, m->sender, inc);
    else
        return FLR_EBAD_REQUEST;
    return 0;
}

/*
 * A worker that finished asks whether it may go (docs/recovery.md, "A worker that
 * finishes").  The first LEAVE removes it, unless its published result did already: its
 * clock stops counting, its copies stop counting as holders, and the rows it held are
 * listed to be copied to the other workers.  Until every row listed at or before its
 * removal has its copies elsewhere, the shard may still need the worker's copies or log in
 * a rebuild: the reply's p is 0 ("stay").  Then p is the stamp of its removal (at least 1)
 * and the worker may go.  q is its covered pseq, as in every reply.
 */
static enum flr_shard_verdict shard_leave(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                                          const struct flr_msg *m)
{
    const uint32_t w = m->sender;
    uint64_t released = 0;

    if (!s->removed[w]) {
        flr_info("srv.worker_leaves", "shard %u: worker %u finished; its copies no longer count",
                 s->id, w);
        flr_shard_remove_worker(s, w);
    }
    if (!s->flr || shard_safe_now(s) >= s->left_at[w])
        released = s->left_at[w] ? s->left_at[w] : 1;
    shard_reply_ok(s, req, m, FLR_MSG_LEAVE_REPLY, released);
    nng_msg_free(msg);
    return FLR_SHARD_REPLIED;
}

enum flr_shard_verdict flr_shard_handle(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                                        const struct flr_msg *m)
{
    if (m->type == FLR_MSG_LEAVE) {
        if (m->sender >= s->nworkers || shard_note_incarnation(s, m) != 0) {
            char why[FLR_REASON_MAX];
            snprintf(why, sizeof(why), "LEAVE from worker %u: unknown worker or an old process",
                     m->sender);
            shard_reject(s, req, msg, m, FLR_EBAD_REQUEST, why);
            return FLR_SHARD_REPLIED;
        }
        return shard_leave(s, req, msg, m);
    }
    if (m->sender < s->nworkers && s->removed[m->sender]) {
        char why[FLR_REASON_MAX];
        snprintf(why, sizeof(why), "worker %u was removed from the job", m->sender);
        shard_reject(s, req, msg, m, FLR_EWORKER_REMOVED, why);
        return FLR_SHARD_REPLIED;
    }
    if ((m->type == FLR_MSG_PULL || m->type == FLR_MSG_PUSH || m->type == FLR_MSG_CLOCK) &&
        shard_note_incarnation(s, m) != 0) {
        char why[FLR_REASON_MAX];
        snprintf(why, sizeof(why), "worker %u: incarnation %llu is older than %llu", m->sender,
                 (unsigned long long)(m->seq >> FLR_SHARD_INC_SHIFT),
                 (unsigned long long)s->inc[m->sender]);
        shard_reject(s, req, msg, m, FLR_EBAD_REQUEST, why);
        return FLR_SHARD_REPLIED;
    }
    switch (m->type) {
    case FLR_MSG_PULL:
        if (shard_note_clock(s, m) != 0) {
            shard_reject(s, req, msg, m, FLR_ENOMEM, "out of memory applying the clock");
            return FLR_SHARD_REPLIED;
        }
        return shard_pull(s, req, msg, m);
    case FLR_MSG_PUSH:
        if (shard_note_clock(s, m) != 0) {
            shard_reject(s, req, msg, m, FLR_ENOMEM, "out of memory applying the clock");
            return FLR_SHARD_REPLIED;
        }
        return shard_push(s, req, msg, m);
    case FLR_MSG_CLOCK:
        return shard_clock(s, req, msg, m);
    default:
        shard_reject(s, req, msg, m, FLR_EBAD_REQUEST, "not a shard request");
        return FLR_SHARD_REPLIED;
    }
}

/* Checks that a rebuild's held push can be held here: a BSP push of a known worker, for a
 * known table and keys of this shard, with one gradient row per key. */
static int shard_check_rebuilt_push(struct flr_shard *s, const struct flr_msg *m)
{
    struct flr_tshard *t;
    char why[FLR_REASON_MAX];

    if (!s->bsp || m->type != FLR_MSG_PUSH || m->sender >= s->nworkers || m->clock < 0)
        return FLR_EBAD_REQUEST;
    if (!(t = flr_store_table(s->store, m->table)))
        return FLR_EUNKNOWN_TABLE;
    if (flr_keys_check_sorted(m->keys, m->nkeys) != 0)
        return FLR_EUNSORTED;
    return flr_tshard_check_push(t, m->keys, m->nkeys, m->vals, m->vals_len, why, sizeof(why));
}

/* Raises min_clock to the minimum over the counted workers' clocks, and to floor, without
 * closing any clock or answering any pull: for clocks the shard takes over from elsewhere
 * (a rebuild, a drained source), whose closed clocks are already applied. */
static void shard_install_min_clock(struct flr_shard *s, int64_t floor)
{
    const int64_t mn = shard_live_min(s);

    if (mn != INT64_MAX && mn > s->min_clock)
        s->min_clock = mn;
    if (floor > s->min_clock)
        s->min_clock = floor;
}

int flr_shard_restore(struct flr_shard *s, struct flr_rebuild_result *r)
{
    uint32_t n = r->nworkers < s->nworkers ? r->nworkers : s->nworkers;
    size_t i;
    int rv;

    /* Everything is checked before anything is installed: a failed restore leaves the
     * shard and the result as they were (listing rows dirty is idempotent). */
    for (i = 0; i < r->nheld; i++)
        if (r->held[i].msg && (rv = shard_check_rebuilt_push(s, &r->held[i].m)) != 0)
            return rv;
    /* No copy is known of the rebuilt rows: each is copied afresh. */
    if ((rv = flr_store_mark_all_dirty(s->store, r->stamp > s->stamp ? r->stamp : s->stamp)) != 0)
        return rv;
    if (s->pushes.cap - s->pushes.n < r->nheld) {
        struct held *v = realloc(s->pushes.v, (s->pushes.n + r->nheld) * sizeof(*v));
        if (!v)
            return FLR_ENOMEM;
        s->pushes.v = v;
        s->pushes.cap = s->pushes.n + r->nheld;
    }
    for (i = 0; i < r->nheld; i++) {
        if (!r->held[i].msg)
            continue;
        (void)held_push(&s->pushes, NULL, r->held[i].msg, &r->held[i].m);
        r->held[i].msg = NULL;
        s->st.pushes++;
        s->st.keys_pushed += r->held[i].m.nkeys;
    }
    for (uint32_t w = 0; w < n; w++) {
        if (r->clock && r->clock[w] >= 0)
            s->wclock[w] = r->clock[w];
        if (r->frontier) {
            s->frontier[w] = r->frontier[w];
            s->inc[w] = r->frontier[w] >> FLR_SHARD_INC_SHIFT;
        }
    }
    /* The rebuild closed every clock below the live workers' minimum and hands over the
     * pushes of the others, so the minimum is installed without closing anything. */
    shard_install_min_clock(s, INT64_MIN);
    flr_shard_set_stamp(s, r->stamp);
    /* The pushes the rebuild applied are covered once the rebuilt rows are copied. */
    for (uint32_t w = 0; w < n; w++)
        if (r->frontier)
            shard_cov_append(s, w, s->stamp, r->frontier[w]);

    s->rebuilt = 1;
    s->rebuild = *r;
    s->rebuild.clock = NULL;
    s->rebuild.frontier = NULL;
    s->rebuild.held = NULL;
    s->rebuild.nheld = 0;
    return 0;
}

const struct flr_rebuild_result *flr_shard_rebuild_info(const struct flr_shard *s)
{
    return s->rebuilt ? &s->rebuild : NULL;
}

/* Defined here while no rebuild module is linked into the server library: a result is
 * freed by whoever holds it last, and the shard is the one that takes it over. */
void flr_rebuild_result_free(struct flr_rebuild_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nheld; i++)
        if (r->held[i].msg)
            nng_msg_free(r->held[i].msg);
    free(r->held);
    free(r->clock);
    free(r->frontier);
    r->held = NULL;
    r->nheld = 0;
    r->clock = NULL;
    r->frontier = NULL;
}

void flr_shard_set_frontier(struct flr_shard *s, uint32_t worker, uint64_t frontier)
{
    if (worker >= s->nworkers || frontier == 0)
        return;
    s->frontier[worker] = frontier;
    s->inc[worker] = frontier >> FLR_SHARD_INC_SHIFT;
    s->floor[worker] = 0;
    shard_cov_append(s, worker, s->stamp, frontier);
}

void flr_shard_set_clocks(struct flr_shard *s, const int64_t *clock, uint32_t n, int64_t min_clock)
{
    for (uint32_t w = 0; w < n && w < s->nworkers; w++)
        if (clock[w] > s->wclock[w])
            s->wclock[w] = clock[w];
    shard_install_min_clock(s, min_clock);
}

int flr_shard_mark_all_dirty(struct flr_shard *s)
{
    return s->nholders > 0 ? flr_store_mark_all_dirty(s->store, s->stamp) : 0;
}

int flr_shard_copies(struct flr_shard *s, struct flr_shard_copies *out)
{
    memset(out, 0, sizeof(*out));
    if (!s->flr)
        return 0;
    out->k = s->spec.k;
    out->need = s->nholders > 0 ? flr_store_need(s->store) : 0;
    out->short_rows = s->nholders > 0 ? flr_store_short_rows(s->store) + s->retry.n : 0;
    for (size_t i = 0; i < s->nbatches; i++)
        out->short_rows += s->batches[i].rows.n;
    out->safe_stamp = shard_safe(s);
    out->replicated_rows = s->replicated_rows;
    out->replicated_bytes = s->replicated_bytes;
    out->replicate_errors = s->replicate_errors;
    out->holder_bytes = flr_store_holder_bytes(s->store);
    return 1;
}

/* ---- the replication pass ------------------------------------------------------------- */

static int rows_add(struct repl_rows *l, const struct flr_dirty *d)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct flr_dirty *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return FLR_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *d;
    return 0;
}

/* Puts row d on the retry list unless it is there already (its since counts for the safe
 * stamp until it is copied). */
static void shard_retry_add(struct flr_shard *s, const struct flr_dirty *d)
{
    if (flr_store_row_retry(s->store, d, 1))
        return;
    if (rows_add(&s->retry, d) != 0) {
        (void)flr_store_row_retry(s->store, d, 0);
        flr_err("srv.copies", "shard %u: out of memory keeping rows to copy", s->id);
    }
}

static void shard_retry_since(struct flr_shard *s)
{
    s->retry_since = UINT64_MAX;
    for (size_t i = 0; i < s->retry.n; i++)
        if (s->retry.v[i].since < s->retry_since)
            s->retry_since = s->retry.v[i].since;
}

/* A pass's batch for one target: rows of one table. */
struct repl_plan {
    uint32_t worker;
    int64_t tix; /* -1: no row yet */
    size_t bytes;
    struct repl_rows rows;
};

/* Gives row d to the targets it lacks, round-robin.  Returns how many took it; *short_by
 * gets how many more it would have needed. */
static uint32_t shard_plan_row(struct flr_shard *s, struct repl_plan *plan, uint32_t nplan,
                               size_t max_bytes, const struct flr_dirty *d, uint32_t *short_by)
{
    uint32_t holders[SHARD_MAX_HOLDERS], have, want, got = 0;
    struct flr_tshard *t = flr_store_table_at(s->store, d->tix);
    size_t rb = flr_tshard_row_bytes(t) + 8;

    have = flr_store_row_holders(s->store, d, holders);
    want = flr_store_need(s->store) > have ? flr_store_need(s->store) - have : 0;
    for (uint32_t i = 0; i < nplan && got < want; i++) {
        struct repl_plan *p = &plan[(s->rr + i) % nplan];
        uint32_t h;

        for (h = 0; h < have && holders[h] != p->worker; h++)
            ;
        if (h < have || (p->tix >= 0 && p->tix != d->tix) ||
            (p->rows.n > 0 && p->bytes + rb > max_bytes))
            continue;
        if (rows_add(&p->rows, d) != 0)
            break;
        p->tix = d->tix;
        p->bytes += rb;
        got++;
    }
    s->rr++;
    *short_by = want - got;
    return got;
}

static int dirty_key_cmp(const void *a, const void *b)
{
    const struct flr_dirty *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

/* Encodes a planned batch as a REPLICATE (keys sorted) and keeps its rows in flight. */
static int shard_send_plan(struct flr_shard *s, struct repl_plan *p, struct flr_shard_replica *out)
{
    struct flr_tshard *t = flr_store_table_at(s->store, (uint32_t)p->tix);
    size_t rb = flr_tshard_row_bytes(t);
    struct flr_msg r = {0};
    struct repl_batch *b;
    unsigned char *keys, *vals;
    void *vp;
    nng_msg *msg;
    int rv;

    if (s->nbatches == s->batches_cap) {
        size_t cap = s->batches_cap ? s->batches_cap * 2 : 8;
        struct repl_batch *v = realloc(s->batches, cap * sizeof(*v));
        if (!v)
            return FLR_ENOMEM;
        s->batches = v;
        s->batches_cap = cap;
    }
    if (!(keys = malloc(p->rows.n * 8)))
        return FLR_ENOMEM;
    qsort(p->rows.v, p->rows.n, sizeof(*p->rows.v), dirty_key_cmp);
    for (size_t i = 0; i < p->rows.n; i++)
        for (int j = 0; j < 8; j++)
            keys[i * 8 + j] = (unsigned char)(p->rows.v[i].key >> (8 * j));
    r.type = FLR_MSG_REPLICATE;
    r.job = s->spec.job;
    r.job_len = (uint32_t)strlen(s->spec.job);
    r.sender = s->self;
    r.shard = s->id;
    r.shard_epoch = s->epoch;
    r.request_id = ++s->next_batch;
    r.reason = "";
    r.table = flr_tshard_spec(t)->id;
    r.stamp = s->stamp;
    r.clock = s->min_clock;
    r.keys = keys;
    r.nkeys = (uint32_t)p->rows.n;
    r.vals = NULL;
    r.vals_len = (uint64_t)p->rows.n * rb;
    shard_extra(s, &r);
    rv = flr_msg_to_nng(&msg, &r, &vp);
    free(keys);
    if (rv != 0)
        return rv;
    vals = vp;
    for (size_t i = 0; i < p->rows.n; i++)
        flr_store_row_export(s->store, &p->rows.v[i], s->stamp, vals + i * rb);

    b = &s->batches[s->nbatches++];
    memset(b, 0, sizeof(*b));
    b->id = r.request_id;
    b->worker = p->worker;
    b->tix = (uint32_t)p->tix;
    b->stamp = s->stamp;
    b->since = UINT64_MAX;
    b->bytes = nng_msg_len(msg);
    b->rows = p->rows;
    memset(&p->rows, 0, sizeof(p->rows));
    for (size_t i = 0; i < b->rows.n; i++)
        if (b->rows.v[i].since < b->since)
            b->since = b->rows.v[i].since;
    out->id = b->id;
    out->worker = b->worker;
    out->msg = msg;
    return 0;
}

int flr_shard_replicate(struct flr_shard *s, const uint32_t *targets, uint32_t ntargets,
                        size_t max_bytes, struct flr_shard_replica *out, uint32_t *nout)
{
    struct repl_plan *plan = NULL;
    uint32_t nplan = 0;
    const uint64_t prev = s->repl_prev;
    size_t keep = 0;
    int rv = 0;

    *nout = 0;
    s->repl_prev = s->stamp;
    if (s->nholders == 0 || ntargets == 0)
        return 0;
    if (!(plan = calloc(ntargets, sizeof(*plan))))
        return FLR_ENOMEM;
    for (uint32_t i = 0; i < ntargets; i++)
        if (targets[i] < s->nworkers && !s->removed[targets[i]]) {
            plan[nplan].worker = targets[i];
            plan[nplan++].tix = -1;
        }

    /* Rows whose copy failed first, then the list's rows listed before the last pass
     * (later ones give pulls a chance to copy them). */
    /* A row that not enough targets took stays on (or goes to) the retry list. */
    for (size_t i = 0; i < s->retry.n; i++) {
        const struct flr_dirty *d = &s->retry.v[i];
        uint32_t short_by = 0;
        if (flr_store_row_short(s->store, d) &&
            (shard_plan_row(s, plan, nplan, max_bytes, d, &short_by), short_by > 0))
            s->retry.v[keep++] = *d;
        else
            (void)flr_store_row_retry(s->store, d, 0);
    }
    s->retry.n = keep;
    for (;;) {
        const struct flr_dirty *d = flr_store_dirty_head(s->store);
        uint32_t short_by = 0;
        if (!d || d->since > prev || shard_plan_row(s, plan, nplan, max_bytes, d, &short_by) == 0)
            break;
        if (short_by > 0)
            shard_retry_add(s, d);
        flr_store_dirty_pop(s->store);
    }

    for (uint32_t i = 0; i < nplan; i++) {
        if (plan[i].rows.n == 0)
            continue;
        if (rv == 0 && (rv = shard_send_plan(s, &plan[i], &out[*nout])) == 0) {
            (*nout)++;
            continue;
        }
        /* Not sent: the rows wait on the retry list. */
        for (size_t j = 0; j < plan[i].rows.n; j++)
            shard_retry_add(s, &plan[i].rows.v[j]);
        free(plan[i].rows.v);
    }
    shard_retry_since(s);
    free(plan);
    return rv;
}

void flr_shard_replicate_done(struct flr_shard *s, uint64_t id, int ok)
{
    struct repl_batch b;
    size_t i;

    for (i = 0; i < s->nbatches && s->batches[i].id != id; i++)
        ;
    if (i == s->nbatches)
        return;
    b = s->batches[i];
    s->batches[i] = s->batches[--s->nbatches];
    ok = ok && !s->removed[b.worker];
    if (ok) {
        s->replicated_rows += b.rows.n;
        s->replicated_bytes += b.bytes;
    } else {
        s->replicate_errors++;
    }
    for (size_t j = 0; j < b.rows.n; j++) {
        const struct flr_dirty *d = &b.rows.v[j];
        /* A copy that came back holds the row up to b.stamp; if the row changed since,
         * the change listed it again.  One that failed is sent again: the row waits on
         * the retry list (once, however many of its copies failed). */
        if (ok)
            (void)flr_store_row_add_holder(s->store, d, b.worker, b.stamp);
        else if (flr_store_row_short(s->store, d))
            shard_retry_add(s, d);
    }
    free(b.rows.v);
    shard_retry_since(s);
}
