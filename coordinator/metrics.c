/*
 * metrics.c - the status document as Prometheus text exposition (format 0.0.4).
 *
 * Each family is written in one piece, HELP and TYPE first, because the format wants a
 * family's samples together.  The header is written lazily with the first sample, so a
 * family the document has nothing for (no recoveries yet) leaves no empty header behind.
 * Everything goes through one open_memstream buffer; a failed write or allocation makes
 * the whole rendering fail with FLR_ENOMEM rather than return half a page.
 */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

struct met {
    FILE *f;
    const char *name, *type, *help;
    int header; /* the current family's HELP and TYPE lines are written */
};

int flr_metrics_write_label(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        int rv;
        switch (*s) {
        case '\\':
            rv = fputs("\\\\", f);
            break;
        case '"':
            rv = fputs("\\\"", f);
            break;
        case '\n':
            rv = fputs("\\n", f);
            break;
        default:
            rv = fputc(*s, f);
            break;
        }
        if (rv == EOF)
            return -1;
    }
    return 0;
}

/* HELP text escapes backslash and newline only. */
static void met_write_help(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* Starts a family; its header is written with its first sample. */
static void met_family(struct met *m, const char *name, const char *type, const char *help)
{
    m->name = name;
    m->type = type;
    m->help = help;
    m->header = 0;
}

/* The shortest %g form that reads back as d (0.212, not 0.21199999999999999). */
static void met_shortest(FILE *f, double d)
{
    char buf[40];
    /* Whole numbers in full: 1700000000, not 1.7e+09. */
    if (d == floor(d) && fabs(d) < 1e15) {
        fprintf(f, "%.0f", d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    fputs(buf, f);
}

static void met_value(FILE *f, const json_t *v)
{
    double d;

    if (json_is_integer(v)) {
        fprintf(f, "%lld", (long long)json_integer_value(v));
        return;
    }
    if (json_is_boolean(v)) {
        fputs(json_is_true(v) ? "1" : "0", f);
        return;
    }
    d = json_number_value(v);
    if (isnan(d))
        fputs("NaN", f);
    else if (isinf(d))
        fputs(d > 0 ? "+Inf" : "-Inf", f);
    else
        met_shortest(f, d);
}

/* Writes one sample of the current family (see met_sample). */
static void met_vsample(struct met *m, const char *suffix, const json_t *v, va_list ap)
{
    const char *k;
    int first = 1;

    if (!json_is_number(v) && !json_is_boolean(v))
        return;
    if (!m->header) {
        fprintf(m->f, "# HELP %s ", m->name);
        met_write_help(m->f, m->help);
        fprintf(m->f, "\n# TYPE %s %s\n", m->name, m->type);
        m->header = 1;
    }
    fprintf(m->f, "%s%s", m->name, suffix);
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *val = va_arg(ap, const char *);
        fprintf(m->f, "%s%s=\"", first ? "{" : ",", k);
        flr_metrics_write_label(m->f, val ? val : "");
        fputc('"', m->f);
        first = 0;
    }
    fputs(first ? " " : "} ", m->f);
    met_value(m->f, v);
    fputc('\n', m->f);
}

/*
 * Writes one sample of the current family: name + suffix, the labels given as
 * NULL-terminated (name, value) pairs, and v.  Nothing is written when v is not a number
 * or boolean (a field the document does not know yet).
 */
static void met_sample(struct met *m, const char *suffix, const json_t *v, ...)
{
    va_list ap;

    va_start(ap, v);
    met_vsample(m, suffix, v, ap);
    va_end(ap);
}

/* The same for a number computed here. */
static void met_int(struct met *m, const char *suffix, long long n, ...)
{
    json_t *v = json_integer(n);
    va_list ap;

    if (!v)
        return;
    va_start(ap, n);
    met_vsample(m, suffix, v, ap);
    va_end(ap);
    json_decref(v);
}

static void met_real(struct met *m, const char *suffix, double d, ...)
{
    json_t *v = json_real(d);
    va_list ap;

    if (!v)
        return;
    va_start(ap, d);
    met_vsample(m, suffix, v, ap);
    va_end(ap);
    json_decref(v);
}

/* ms (a JSON number) as seconds; NULL when not a number. */
static json_t *met_seconds(const json_t *ms)
{
    return json_is_number(ms) ? json_real(json_number_value(ms) / 1000.0) : NULL;
}

static const char *met_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* A JSON integer field as decimal text in buf ("" when absent). */
static const char *met_id(const json_t *o, const char *key, char *buf, size_t len)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else
        buf[0] = 0;
    return buf;
}

static void met_job(struct met *m, const json_t *doc)
{
    static const char *const states[] = {"absent", "waiting", "running", "done", "failed"};
    const char *state = met_str(doc, "state");
    int known = 0;
    json_t *v;

    met_family(m, "flr_job_info", "gauge",
               "The job this coordinator serves, with its model, recovery mode and "
               "consistency model as labels; always 1.");
    met_int(m, "", 1, "flr_job", met_str(doc, "job"), "model", met_str(doc, "model"), "recovery",
            met_str(doc, "recovery"), "consistency", met_str(doc, "consistency"), NULL);
    met_family(m, "flr_job_state", "gauge",
               "1 for the job's current state (absent, waiting, running, done, failed), 0 for "
               "the others.");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        met_int(m, "", strcmp(state, states[i]) == 0, "state", states[i], NULL);
        known |= strcmp(state, states[i]) == 0;
    }
    if (!known && *state)
        met_int(m, "", 1, "state", state, NULL);

    met_family(m, "flr_job_epoch", "gauge",
               "Cluster epoch: bumped on every change of shard ownership.");
    met_sample(m, "", json_object_get(doc, "epoch"), NULL);

    met_family(m, "flr_job_start_time_seconds", "gauge",
               "Wall-clock time when the job started running, seconds since the Unix epoch.");
    v = met_seconds(json_object_get(doc, "started_ms"));
    met_sample(m, "", v, NULL);
    json_decref(v);

    met_family(m, "flr_status_time_seconds", "gauge",
               "Wall-clock time of the status collection these metrics come from.");
    v = met_seconds(json_object_get(doc, "now_ms"));
    met_sample(m, "", v, NULL);
    json_decref(v);

    met_family(m, "flr_status_collect_duration_seconds", "gauge",
               "How long reading ZooKeeper and the servers' STATUS took.");
    v = met_seconds(json_object_get(doc, "collect_ms"));
    met_sample(m, "", v, NULL);
    json_decref(v);
}

static void met_coordinators(struct met *m, const json_t *doc)
{
    const json_t *arr = json_object_get(doc, "coordinators"), *c;
    size_t i;

    met_family(m, "flr_coordinators", "gauge", "Coordinators taking part in the election.");
    met_int(m, "", (long long)json_array_size(arr), NULL);
    met_family(m, "flr_coordinator_leader", "gauge",
               "1 for the coordinator that leads the job, 0 for the followers.");
    for (i = 0; i < json_array_size(arr) && (c = json_array_get(arr, i)) != NULL; i++)
        met_sample(m, "", json_object_get(c, "leader"), "candidate", met_str(c, "candidate"),
                   "host", met_str(c, "host"), NULL);
}

/* True when server id is registered (appears in servers). */
static int met_registered(const json_t *servers, json_int_t id)
{
    size_t i;
    json_t *s;
    for (i = 0; i < json_array_size(servers) && (s = json_array_get(servers, i)) != NULL; i++)
        if (json_integer_value(json_object_get(s, "id")) == id)
            return 1;
    return 0;
}

static void met_servers(struct met *m, const json_t *doc)
{
    const json_t *servers = json_object_get(doc, "servers"), *shards, *s, *sh;
    long long reachable = 0;
    char id[32];
    size_t i;

    for (i = 0; i < json_array_size(servers) && (s = json_array_get(servers, i)) != NULL; i++)
        reachable += json_is_true(json_object_get(s, "reachable"));
    met_family(m, "flr_servers_registered", "gauge", "Servers registered in ZooKeeper.");
    met_int(m, "", (long long)json_array_size(servers), NULL);
    met_family(m, "flr_servers_reachable", "gauge", "Registered servers that answered STATUS.");
    met_int(m, "", reachable, NULL);

    met_family(m, "flr_server_up", "gauge",
               "1 while the server is registered in ZooKeeper; 0 for a shard owner that is not.");
    for (i = 0; i < json_array_size(servers) && (s = json_array_get(servers, i)) != NULL; i++)
        met_int(m, "", 1, "server", met_id(s, "id", id, sizeof(id)), NULL);
    shards = json_object_get(doc, "shards");
    {
        /* Owners without a registration, once each. */
        json_t *seen = json_object();
        for (i = 0; i < json_array_size(shards) && (sh = json_array_get(shards, i)) != NULL; i++) {
            const json_t *o = json_object_get(sh, "owner");
            if (!json_is_integer(o) || met_registered(servers, json_integer_value(o)))
                continue;
            met_id(sh, "owner", id, sizeof(id));
            if (seen && json_object_get(seen, id))
                continue;
            if (seen)
                json_object_set_new(seen, id, json_true());
            met_int(m, "", 0, "server", id, NULL);
        }
        json_decref(seen);
    }
    met_family(m, "flr_server_reachable", "gauge",
               "1 when the server answered STATUS within the probe timeout.");
    for (i = 0; i < json_array_size(servers) && (s = json_array_get(servers, i)) != NULL; i++)
        met_sample(m, "", json_object_get(s, "reachable"), "server",
                   met_id(s, "id", id, sizeof(id)), NULL);
    met_family(m, "flr_server_serving", "gauge",
               "1 for a server in state SERVING, 0 for a standby.");
    for (i = 0; i < json_array_size(servers) && (s = json_array_get(servers, i)) != NULL; i++)
        met_int(m, "", strcmp(met_str(s, "state"), "SERVING") == 0, "server",
                met_id(s, "id", id, sizeof(id)), NULL);
    met_family(m, "flr_server_incarnation", "gauge",
               "The server process's incarnation: changes when the server is relaunched.");
    for (i = 0; i < json_array_size(servers) && (s = json_array_get(servers, i)) != NULL; i++)
        met_sample(m, "", json_object_get(s, "incarnation"), "server",
                   met_id(s, "id", id, sizeof(id)), NULL);
    met_family(m, "flr_server_requests_total", "counter",
               "Messages the server took off its queue since it started.");
    for (i = 0; i < json_array_size(servers) && (s = json_array_get(servers, i)) != NULL; i++)
        met_sample(m, "", json_object_get(s, "requests"), "server", met_id(s, "id", id, sizeof(id)),
                   NULL);
    met_family(m, "flr_server_rejected_total", "counter",
               "Requests the server answered with an error, by error code.");
    for (i = 0; i < json_array_size(servers) && (s = json_array_get(servers, i)) != NULL; i++) {
        json_t *rej = json_object_get(s, "rejected");
        met_id(s, "id", id, sizeof(id));
        for (void *it = json_object_iter(rej); it; it = json_object_iter_next(rej, it))
            met_sample(m, "", json_object_iter_value(it), "server", id, "code",
                       json_object_iter_key(it), NULL);
    }
}

static void met_shards(struct met *m, const json_t *doc)
{
    static const char *const states[] = {"ACTIVE", "RECOVERING", "LOST", "UNASSIGNED"};
    static const struct {
        const char *name, *field, *type, *help;
    } cols[] = {
        {"flr_shard_epoch", "epoch", "gauge", "The shard's epoch (its fencing token)."},
        {"flr_shard_rows", "rows", "gauge", "Rows the shard holds, as its owner reports."},
        {"flr_shard_bytes", "bytes", "gauge",
         "Memory the shard's store holds (values, optimizer slots, indexes)."},
        {"flr_shard_pulls_total", "pulls", "counter", "Pulls the shard's owner answered."},
        {"flr_shard_pushes_total", "pushes", "counter", "Pushes the shard's owner accepted."},
        {"flr_shard_held_pulls", "held_pulls", "gauge",
         "Pulls waiting now for the slowest worker's clock."},
    };
    const json_t *shards = json_object_get(doc, "shards"), *sh;
    char id[32], owner[32];
    size_t i;

    met_family(m, "flr_shard_state", "gauge",
               "1 for the shard's current state (ACTIVE, RECOVERING, LOST, UNASSIGNED), 0 for "
               "the others; server is the owner.");
    for (i = 0; i < json_array_size(shards) && (sh = json_array_get(shards, i)) != NULL; i++) {
        const char *st = met_str(sh, "state");
        int known = 0;
        met_id(sh, "shard", id, sizeof(id));
        met_id(sh, "owner", owner, sizeof(owner));
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
            known |= strcmp(st, states[k]) == 0;
            met_int(m, "", strcmp(st, states[k]) == 0, "shard", id, "server", owner, "state",
                    states[k], NULL);
        }
        if (!known && *st)
            met_int(m, "", 1, "shard", id, "server", owner, "state", st, NULL);
    }
    for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
        met_family(m, cols[c].name, cols[c].type, cols[c].help);
        for (i = 0; i < json_array_size(shards) && (sh = json_array_get(shards, i)) != NULL; i++)
            met_sample(m, "", json_object_get(sh, cols[c].field), "shard",
                       met_id(sh, "shard", id, sizeof(id)), "server",
                       met_id(sh, "owner", owner, sizeof(owner)), NULL);
    }
}

static void met_workers(struct met *m, const json_t *doc)
{
    static const struct {
        const char *name, *field, *type, *help;
    } cols[] = {
        {"flr_worker_alive", "alive", "gauge", "1 while the worker is registered in ZooKeeper."},
        {"flr_worker_finished", "finished", "gauge", "1 once the worker published its result."},
        {"flr_worker_removed", "removed", "gauge",
         "1 when the coordinator removed the worker from the clock accounting."},
        {"flr_worker_clock", "clock", "gauge", "Iterations the worker has finished."},
        {"flr_worker_epoch", "epoch", "gauge", "The worker's current pass over its data."},
        {"flr_worker_samples_total", "samples", "counter", "Samples the worker has trained on."},
        {"flr_worker_loss", "loss", "gauge", "The worker's recent training loss."},
    };
    const json_t *workers = json_object_get(doc, "workers"), *w;
    long long alive = 0;
    char id[32];
    size_t i;

    for (i = 0; i < json_array_size(workers) && (w = json_array_get(workers, i)) != NULL; i++)
        alive += json_is_true(json_object_get(w, "alive"));
    met_family(m, "flr_workers_alive", "gauge", "Workers registered in ZooKeeper.");
    met_int(m, "", alive, NULL);
    for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
        met_family(m, cols[c].name, cols[c].type, cols[c].help);
        for (i = 0; i < json_array_size(workers) && (w = json_array_get(workers, i)) != NULL; i++)
            met_sample(m, "", json_object_get(w, cols[c].field), "worker",
                       met_id(w, "id", id, sizeof(id)), NULL);
    }
}

static void met_recoveries(struct met *m, const json_t *doc)
{
    const json_t *tot = json_object_get(doc, "totals"), *recs = json_object_get(doc, "recoveries");
    const json_t *r;
    static const struct {
        const char *name, *field, *stage, *help;
    } durs[] = {
        {"flr_recovery_detect_seconds", "detect_ms", "detect",
         "Time from a server's death to its detection, over the recoveries listed."},
        {"flr_recovery_recover_seconds", "recover_ms", "recover",
         "Time from a server's death (its detection when the kill time is unknown) to its "
         "shards serving again, over the recoveries listed."},
    };
    char srv[32];
    size_t i;

    met_family(m, "flr_recoveries_total", "counter", "Recoveries of lost servers started.");
    met_sample(m, "", json_object_get(tot, "recoveries"), NULL);
    met_family(m, "flr_recoveries_in_progress", "gauge", "Recoveries not done yet.");
    met_sample(m, "", json_object_get(tot, "recoveries_in_progress"), NULL);
    met_family(m, "flr_rows_rebuilt_total", "counter", "Rows rebuilt by recoveries.");
    met_sample(m, "", json_object_get(tot, "rows_rebuilt"), NULL);
    met_family(m, "flr_rows_lost_total", "counter",
               "Rows that recoveries could not restore (no copy and no log entry).");
    met_sample(m, "", json_object_get(tot, "rows_lost"), NULL);

    for (size_t d = 0; d < sizeof(durs) / sizeof(durs[0]); d++) {
        double sum = 0;
        long long count = 0;
        for (i = 0; i < json_array_size(recs) && (r = json_array_get(recs, i)) != NULL; i++) {
            const json_t *v = json_object_get(r, durs[d].field);
            if (json_is_number(v)) {
                sum += json_number_value(v) / 1000.0;
                count++;
            }
        }
        if (count == 0)
            continue;
        met_family(m, durs[d].name, "summary", durs[d].help);
        met_real(m, "_sum", sum, NULL);
        met_int(m, "_count", count, NULL);
    }
    met_family(m, "flr_recovery_duration_seconds", "gauge",
               "Each listed recovery's detect and recover times, by recovery id.");
    for (i = 0; i < json_array_size(recs) && (r = json_array_get(recs, i)) != NULL; i++) {
        for (size_t d = 0; d < sizeof(durs) / sizeof(durs[0]); d++) {
            json_t *v = met_seconds(json_object_get(r, durs[d].field));
            met_sample(m, "", v, "recovery", met_str(r, "id"), "server",
                       met_id(r, "server", srv, sizeof(srv)), "stage", durs[d].stage, NULL);
            json_decref(v);
        }
    }
}

static void met_misc(struct met *m, const json_t *doc)
{
    const json_t *tp = json_object_get(doc, "throughput");

    met_family(m, "flr_throughput_samples_per_second", "gauge",
               "Samples trained per second by all workers, between the last two collections.");
    met_sample(m, "", json_object_get(tp, "samples_per_second"), NULL);
    met_family(m, "flr_throughput_keys_pushed_per_second", "gauge",
               "Keys pushed per second to all servers, between the last two collections.");
    met_sample(m, "", json_object_get(tp, "keys_pushed_per_second"), NULL);
    met_family(m, "flr_operator_requests_pending", "gauge",
               "Operator commands (kill, drain) the leader has not taken yet.");
    met_int(m, "", (long long)json_array_size(json_object_get(doc, "requests")), NULL);
}

int flr_metrics_render(const json_t *doc, char **out, size_t *len)
{
    struct met m = {0};
    char *buf = NULL;
    size_t n = 0;
    int bad;

    *out = NULL;
    if (len)
        *len = 0;
    if (!(m.f = open_memstream(&buf, &n)))
        return FLR_ENOMEM;
    met_job(&m, doc);
    met_coordinators(&m, doc);
    met_servers(&m, doc);
    met_shards(&m, doc);
    met_workers(&m, doc);
    met_recoveries(&m, doc);
    met_misc(&m, doc);
    bad = ferror(m.f);
    if (fclose(m.f) != 0 || bad) {
        free(buf);
        return FLR_ENOMEM;
    }
    *out = buf;
    if (len)
        *len = n;
    return 0;
}
