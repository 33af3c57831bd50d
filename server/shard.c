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

struct flr_shard {
    uint32_t id;
    uint32_t self;
    uint64_t epoch;
    uint64_t stamp;
    struct flr_job_spec spec;
    struct flr_store *store;

    uint32_t nworkers;
    int64_t *wclock;
    uint8_t *removed; /* workers the coordinator removed: their clocks no longer count */
    int64_t min_clock;
    int64_t bound; /* pull at clock t waits for min_clock >= t - bound */
    int bsp;

    struct held_list pulls;
    struct held_list pushes; /* BSP only */
    struct flr_shard_stats st;

    /* Exactly-once pushes (docs/recovery.md): per worker the incarnation it last showed
     * (seq >> FLR_SHARD_INC_SHIFT, 0 = none yet) and the applied frontier F[w].  F[w]
     * belongs to inc[w] when F[w] >> FLR_SHARD_INC_SHIFT == inc[w]; otherwise the shard
     * does not know what it applied of that process (it was opened afresh) and takes the
     * first push it sees as the next.  Pushes below floor[w], sent before that one, have
     * an unknown past and are applied as they come. */
    uint64_t *inc;
    uint64_t *frontier;
    uint64_t *floor;
    struct held_list early; /* ASP/SSP: pushes waiting for their predecessor (req kept) */

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

int flr_shard_open(struct flr_shard **sp, const struct flr_job_spec *spec, uint32_t id,
                   uint64_t epoch, uint32_t self_id)
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
    s->inc = calloc(s->nworkers, sizeof(*s->inc));
    s->frontier = calloc(s->nworkers, sizeof(*s->frontier));
    s->floor = calloc(s->nworkers, sizeof(*s->floor));
    if (!s->wclock || !s->removed || !s->inc || !s->frontier || !s->floor) {
        rv = FLR_ENOMEM;
        goto fail_workers;
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
    if ((rv = flr_store_alloc(&s->store, &s->spec, id)) != 0)
        goto fail_workers;
    *sp = s;
    return 0;

fail_workers:
    free(s->floor);
    free(s->frontier);
    free(s->inc);
    free(s->wclock);
    free(s->removed);
    free(s);
    return rv;
}

void flr_shard_close(struct flr_shard *s)
{
    if (!s)
        return;
    held_drop_all(&s->pulls);
    held_drop_all(&s->pushes);
    held_drop_all(&s->early);
    flr_store_free(s->store);
    free(s->floor);
    free(s->frontier);
    free(s->inc);
    free(s->wclock);
    free(s->removed);
    free(s);
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
    s->st.pulls++;
    s->st.keys_pulled += m->nkeys;
    s->st.bytes_out += nng_msg_len(out);
    nng_msg_free(msg);
    flr_rep_reply(req, out);
}

static void shard_reply_ok(struct flr_shard *s, struct flr_req *req, const struct flr_msg *m,
                           int type)
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
    r.stamp = s->stamp;
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
        for (j = i; j < s->pushes.n && s->pushes.v[j].m.clock == c; j++) {
            const struct flr_msg *m = &s->pushes.v[j].m;
            struct flr_tshard *t = flr_store_table(s->store, m->table);
            for (uint32_t k = 0; k < s->spec.ntables; k++)
                if (s->spec.tables[k].id == m->table)
                    touched[k] = 1;
            if (rv == 0)
                rv = flr_tshard_accumulate(t, m->keys, m->nkeys, m->vals);
            if (m->seq > s->frontier[m->sender])
                s->frontier[m->sender] = m->seq;
            nng_msg_free(s->pushes.v[j].msg);
        }
        s->stamp++;
        for (uint32_t k = 0; k < s->spec.ntables; k++)
            if (touched[k] && rv == 0)
                rv = flr_tshard_apply_accumulated(flr_store_table(s->store, s->spec.tables[k].id),
                                                  s->stamp);
        i = j;
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
    shard_reply_ok(s, req, m, FLR_MSG_PUSH_REPLY);
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
        /* Nothing known of this process's earlier pushes: this one is the next. */
        s->frontier[w] = m->seq - 1;
        s->floor[w] = m->seq;
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
        s->st.duplicate_pushes++;
        shard_reply_ok(s, req, m, FLR_MSG_PUSH_REPLY);
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
        shard_reply_ok(s, req, m, FLR_MSG_PUSH_REPLY);
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
    shard_reply_ok(s, req, m, FLR_MSG_PUSH_REPLY);
    return FLR_SHARD_REPLIED;
}

/* Recomputes the minimum clock over the workers that still count; when it moved, applies
 * the BSP clocks it closed and answers the pulls it allows. */
static int shard_advance(struct flr_shard *s)
{
    int64_t mn = INT64_MAX;

    for (uint32_t w = 0; w < s->nworkers; w++)
        if (!s->removed[w] && s->wclock[w] < mn)
            mn = s->wclock[w];
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
    (void)shard_advance(s);
}

void flr_shard_readmit_worker(struct flr_shard *s, uint32_t worker)
{
    if (worker >= s->nworkers || !s->removed[worker])
        return;
    s->removed[worker] = 0;
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
    shard_reply_ok(s, req, m, FLR_MSG_CLOCK_REPLY);
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

enum flr_shard_verdict flr_shard_handle(struct flr_shard *s, struct flr_req *req, nng_msg *msg,
                                        const struct flr_msg *m)
{
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

int flr_shard_restore(struct flr_shard *s, struct flr_rebuild_result *r)
{
    uint32_t n = r->nworkers < s->nworkers ? r->nworkers : s->nworkers;
    int64_t mn = INT64_MAX;
    size_t i;
    int rv;

    /* Everything is checked before anything is installed: a failed restore leaves the
     * shard and the result as they were. */
    for (i = 0; i < r->nheld; i++)
        if (r->held[i].msg && (rv = shard_check_rebuilt_push(s, &r->held[i].m)) != 0)
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
    for (uint32_t w = 0; w < s->nworkers; w++)
        if (!s->removed[w] && s->wclock[w] < mn)
            mn = s->wclock[w];
    if (mn != INT64_MAX && mn > s->min_clock)
        s->min_clock = mn;
    flr_shard_set_stamp(s, r->stamp);

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
