/*
 * spec.c - the job spec: enum names, validation, JSON.
 *
 * JSON layout (every key below is written; on input the optional ones may be left out):
 *
 *   {"job":"demo", "model":"softmax", "consistency":"bsp", "staleness":0,
 *    "num_workers":4, "num_servers":2, "num_shards":8, "recovery":"none", "k":2, "seed":1,
 *    "tables":[{"id":0, "name":"w", "kind":"dense", "rows":785, "dim":10, "init":"zeros",
 *               "init_scale":0, "seed":7, "optim":"adagrad", "lr":0.1, "momentum":0.9,
 *               "beta1":0.9, "beta2":0.999, "eps":1e-08}]}
 *
 * Required: job, num_workers, num_servers, num_shards, tables; per table id, name, kind,
 * dim, optim, lr.  Optional with defaults: model "", consistency "bsp", staleness 0,
 * recovery "none", k 1, seed 0; per table rows 0, init "zeros", init_scale 0, seed 0 and
 * the optimizer constants of flr_table_spec_defaults().
 *
 * Seeds are 64-bit unsigned: a seed below 2^53 is written as a JSON integer (every JSON
 * reader holds it exactly), a larger one as a decimal string; both forms are read.
 *
 * Floats are written in the shortest decimal form that reads back as the same float
 * (0.1f is written 0.1, not 0.10000000149011612).
 *
 * Parsing is strict: unknown keys, duplicate keys, wrong JSON types and missing required
 * keys are FLR_EFORMAT; unknown enum names and out-of-range values are FLR_ECONFIG.
 */
#include "spec.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "util.h"

/* Seeds at or above this are written as strings. */
#define SPEC_SEED_INT_LIMIT (UINT64_C(1) << 53)

#define SPEC_MAX_WORKERS   4096
#define SPEC_MAX_SERVERS   1024
#define SPEC_MAX_SHARDS    65536
#define SPEC_MAX_TABLE_ID  65535
#define SPEC_MAX_DIM       4194304 /* 16 MiB rows */
#define SPEC_MAX_STALENESS 1000000
#define SPEC_MAX_K         16

static const char *const spec_kind_names[] = {"dense", "sparse"};
static const char *const spec_init_names[] = {"zeros", "uniform", "normal"};
static const char *const spec_optim_names[] = {"sgd", "momentum", "adagrad", "adam"};
static const char *const spec_cons_names[] = {"bsp", "ssp", "asp"};
static const char *const spec_recovery_names[] = {"none", "flr", "checkpoint", "chain", "cpr"};

#define SPEC_NAMES_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *spec_name(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : "unknown";
}

static int spec_parse_name(const char *const *names, int n, const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

const char *flr_table_kind_name(enum flr_table_kind k)
{
    return spec_name(spec_kind_names, SPEC_NAMES_LEN(spec_kind_names), (int)k);
}

int flr_table_kind_parse(const char *s)
{
    return spec_parse_name(spec_kind_names, SPEC_NAMES_LEN(spec_kind_names), s);
}

const char *flr_init_name(enum flr_init_kind k)
{
    return spec_name(spec_init_names, SPEC_NAMES_LEN(spec_init_names), (int)k);
}

int flr_init_parse(const char *s)
{
    return spec_parse_name(spec_init_names, SPEC_NAMES_LEN(spec_init_names), s);
}

const char *flr_optim_name(enum flr_optim_kind k)
{
    return spec_name(spec_optim_names, SPEC_NAMES_LEN(spec_optim_names), (int)k);
}

int flr_optim_parse(const char *s)
{
    return spec_parse_name(spec_optim_names, SPEC_NAMES_LEN(spec_optim_names), s);
}

const char *flr_consistency_name(enum flr_consistency c)
{
    return spec_name(spec_cons_names, SPEC_NAMES_LEN(spec_cons_names), (int)c);
}

int flr_consistency_parse(const char *s)
{
    return spec_parse_name(spec_cons_names, SPEC_NAMES_LEN(spec_cons_names), s);
}

uint32_t flr_optim_nslots(enum flr_optim_kind k)
{
    switch (k) {
    case FLR_OPT_SGD:
        return 0;
    case FLR_OPT_MOMENTUM:
    case FLR_OPT_ADAGRAD:
        return 1;
    case FLR_OPT_ADAM:
        return 2;
    }
    return 0;
}

void flr_table_spec_defaults(struct flr_table_spec *t)
{
    t->momentum = 0.9f;
    t->beta1 = 0.9f;
    t->beta2 = 0.999f;
    t->eps = 1e-8f;
}

const struct flr_table_spec *flr_spec_table(const struct flr_job_spec *s, uint32_t id)
{
    uint32_t n = s->ntables < FLR_MAX_TABLES ? s->ntables : FLR_MAX_TABLES;

    for (uint32_t i = 0; i < n; i++)
        if (s->tables[i].id == id)
            return &s->tables[i];
    return NULL;
}

/* --- validation -------------------------------------------------------------------------- */

/* Checks that buf[size] holds a NUL-terminated name of [A-Za-z0-9_.-] characters. */
static int spec_check_name(const char *what, const char *buf, size_t size, int allow_empty,
                           char *why, size_t whylen)
{
    size_t n = strnlen(buf, size);

    if (n == size) {
        flr_why(why, whylen, "%s: longer than %zu bytes", what, size - 1);
        return FLR_ECONFIG;
    }
    if (n == 0 && !allow_empty) {
        flr_why(why, whylen, "%s: must not be empty", what);
        return FLR_ECONFIG;
    }
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-')) {
            flr_why(why, whylen, "%s: '%s' may hold only letters, digits, '_', '.' and '-'", what,
                    buf);
            return FLR_ECONFIG;
        }
    }
    return 0;
}

static int spec_check_u32(const char *what, uint32_t v, uint32_t lo, uint32_t hi, char *why,
                          size_t whylen)
{
    if (v < lo || v > hi) {
        flr_why(why, whylen, "%s: %u is out of range %u..%u", what, (unsigned)v, (unsigned)lo,
                (unsigned)hi);
        return FLR_ECONFIG;
    }
    return 0;
}

/* Checks lo <= v < hi (hi_open) or lo <= v <= hi, and that v is finite. */
static int spec_check_float(const char *what, float v, double lo, double hi, int lo_open,
                            int hi_open, char *why, size_t whylen)
{
    double d = v;

    if (!isfinite(d)) {
        flr_why(why, whylen, "%s: %g is not a finite number", what, d);
        return FLR_ECONFIG;
    }
    if ((lo_open ? d <= lo : d < lo) || (hi_open ? d >= hi : d > hi)) {
        flr_why(why, whylen, "%s: %g is out of range %s%g, %g%s", what, d, lo_open ? "(" : "[", lo,
                hi, hi_open ? ")" : "]");
        return FLR_ECONFIG;
    }
    return 0;
}

static int spec_validate_table(const struct flr_table_spec *t, uint32_t i, char *why, size_t whylen)
{
    char what[64];
    int rv;

#define SPEC_WHAT(field) (snprintf(what, sizeof(what), "tables[%u].%s", (unsigned)i, field), what)
    if ((rv = spec_check_u32(SPEC_WHAT("id"), t->id, 0, SPEC_MAX_TABLE_ID, why, whylen)) != 0)
        return rv;
    if ((rv = spec_check_name(SPEC_WHAT("name"), t->name, sizeof(t->name), 0, why, whylen)) != 0)
        return rv;
    switch (t->kind) {
    case FLR_TABLE_DENSE:
        if (t->rows < 1 || t->rows > FLR_KEY_ROW_MASK) {
            flr_why(why, whylen, "tables[%u].rows: %llu is out of range 1..%llu for a dense table",
                    (unsigned)i, (unsigned long long)t->rows, (unsigned long long)FLR_KEY_ROW_MASK);
            return FLR_ECONFIG;
        }
        break;
    case FLR_TABLE_SPARSE:
        if (t->rows != 0) {
            flr_why(why, whylen, "tables[%u].rows: must be 0 for a sparse table, not %llu",
                    (unsigned)i, (unsigned long long)t->rows);
            return FLR_ECONFIG;
        }
        break;
    default:
        flr_why(why, whylen, "tables[%u].kind: unknown kind %d", (unsigned)i, (int)t->kind);
        return FLR_ECONFIG;
    }
    if ((rv = spec_check_u32(SPEC_WHAT("dim"), t->dim, 1, SPEC_MAX_DIM, why, whylen)) != 0)
        return rv;
    if ((int)t->init < 0 || (int)t->init >= SPEC_NAMES_LEN(spec_init_names)) {
        flr_why(why, whylen, "tables[%u].init: unknown initialiser %d", (unsigned)i, (int)t->init);
        return FLR_ECONFIG;
    }
    if ((rv = spec_check_float(SPEC_WHAT("init_scale"), t->init_scale, 0, INFINITY, 0, 1, why,
                               whylen)) != 0)
        return rv;
    if ((int)t->optim < 0 || (int)t->optim >= SPEC_NAMES_LEN(spec_optim_names)) {
        flr_why(why, whylen, "tables[%u].optim: unknown optimizer %d", (unsigned)i, (int)t->optim);
        return FLR_ECONFIG;
    }
    if ((rv = spec_check_float(SPEC_WHAT("lr"), t->lr, 0, INFINITY, 1, 1, why, whylen)) != 0)
        return rv;
    /* The constants must be finite for every optimizer (JSON cannot carry NaN or inf); the
     * optimizer that uses one also needs it in its working range. */
    if ((rv = spec_check_float(SPEC_WHAT("momentum"), t->momentum, -INFINITY, INFINITY, 0, 1, why,
                               whylen)) != 0 ||
        (rv = spec_check_float(SPEC_WHAT("beta1"), t->beta1, -INFINITY, INFINITY, 0, 1, why,
                               whylen)) != 0 ||
        (rv = spec_check_float(SPEC_WHAT("beta2"), t->beta2, -INFINITY, INFINITY, 0, 1, why,
                               whylen)) != 0 ||
        (rv = spec_check_float(SPEC_WHAT("eps"), t->eps, -INFINITY, INFINITY, 0, 1, why, whylen)) !=
            0)
        return rv;
    switch (t->optim) {
    case FLR_OPT_SGD:
        break;
    case FLR_OPT_MOMENTUM:
        rv = spec_check_float(SPEC_WHAT("momentum"), t->momentum, 0, 1, 0, 1, why, whylen);
        break;
    case FLR_OPT_ADAGRAD:
        rv = spec_check_float(SPEC_WHAT("eps"), t->eps, 0, INFINITY, 1, 1, why, whylen);
        break;
    case FLR_OPT_ADAM:
        if ((rv = spec_check_float(SPEC_WHAT("beta1"), t->beta1, 0, 1, 0, 1, why, whylen)) != 0 ||
            (rv = spec_check_float(SPEC_WHAT("beta2"), t->beta2, 0, 1, 0, 1, why, whylen)) != 0)
            break;
        rv = spec_check_float(SPEC_WHAT("eps"), t->eps, 0, INFINITY, 1, 1, why, whylen);
        break;
    }
#undef SPEC_WHAT
    return rv;
}

int flr_spec_validate(const struct flr_job_spec *s, char *why, size_t whylen)
{
    int rv;

    /* The model may be empty: a program that links the client library brings its own. */

    if ((rv = spec_check_name("job", s->job, sizeof(s->job), 0, why, whylen)) != 0 ||
        (rv = spec_check_name("model", s->model, sizeof(s->model), 1, why, whylen)) != 0)
        return rv;
    if ((int)s->consistency < 0 || (int)s->consistency >= SPEC_NAMES_LEN(spec_cons_names)) {
        flr_why(why, whylen, "consistency: unknown consistency model %d", (int)s->consistency);
        return FLR_ECONFIG;
    }
    if ((rv = spec_check_u32("staleness", s->staleness, 0, SPEC_MAX_STALENESS, why, whylen)) ||
        (rv = spec_check_u32("num_workers", s->num_workers, 1, SPEC_MAX_WORKERS, why, whylen)) ||
        (rv = spec_check_u32("num_servers", s->num_servers, 1, SPEC_MAX_SERVERS, why, whylen)))
        return rv;
    if (s->num_shards < s->num_servers || s->num_shards > SPEC_MAX_SHARDS) {
        flr_why(why, whylen, "num_shards: %u is out of range %u..%u (at least num_servers)",
                (unsigned)s->num_shards, (unsigned)s->num_servers, (unsigned)SPEC_MAX_SHARDS);
        return FLR_ECONFIG;
    }
    if (strnlen(s->recovery, sizeof(s->recovery)) == sizeof(s->recovery) ||
        spec_parse_name(spec_recovery_names, SPEC_NAMES_LEN(spec_recovery_names), s->recovery) <
            0) {
        flr_why(why, whylen, "recovery: '%.*s' is not one of none, flr, checkpoint, chain, cpr",
                (int)sizeof(s->recovery), s->recovery);
        return FLR_ECONFIG;
    }
    if ((rv = spec_check_u32("k", s->k, 1, SPEC_MAX_K, why, whylen)) != 0)
        return rv;
    if (s->ntables < 1 || s->ntables > FLR_MAX_TABLES) {
        flr_why(why, whylen, "tables: %u tables, expected 1..%d", (unsigned)s->ntables,
                FLR_MAX_TABLES);
        return FLR_ECONFIG;
    }
    for (uint32_t i = 0; i < s->ntables; i++) {
        if ((rv = spec_validate_table(&s->tables[i], i, why, whylen)) != 0)
            return rv;
        for (uint32_t j = 0; j < i; j++) {
            if (s->tables[j].id == s->tables[i].id) {
                flr_why(why, whylen, "tables[%u].id: %u is also the id of tables[%u]", (unsigned)i,
                        (unsigned)s->tables[i].id, (unsigned)j);
                return FLR_ECONFIG;
            }
            if (strcmp(s->tables[j].name, s->tables[i].name) == 0) {
                flr_why(why, whylen, "tables[%u].name: '%s' is also the name of tables[%u]",
                        (unsigned)i, s->tables[i].name, (unsigned)j);
                return FLR_ECONFIG;
            }
        }
    }
    return 0;
}

/* --- to JSON ----------------------------------------------------------------------------- */

/* A JSON number that reads back as exactly f, written in its shortest decimal form. */
static json_t *spec_json_float(float f)
{
    char buf[32];
    double d = f;

    if (!isfinite(d))
        return NULL;
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        if ((float)strtod(buf, NULL) == f) {
            d = strtod(buf, NULL);
            break;
        }
    }
    return json_real(d);
}

static json_t *spec_json_seed(uint64_t seed)
{
    char buf[24];

    if (seed < SPEC_SEED_INT_LIMIT)
        return json_integer((json_int_t)seed);
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)seed);
    return json_string(buf);
}

/* A JSON string from a fixed buffer, or NULL when the buffer lacks its NUL. */
static json_t *spec_json_str(const char *buf, size_t size)
{
    size_t n = strnlen(buf, size);

    return n < size ? json_stringn(buf, n) : NULL;
}

/* Adds key: v to o; v may be NULL (a failed constructor), which fails the add. */
static int spec_set(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0 ? 0 : -1;
}

static int spec_enum_ok(int v, int n)
{
    return v >= 0 && v < n;
}

static json_t *spec_table_to_json(const struct flr_table_spec *t)
{
    json_t *o = json_object();

    if (!o)
        return NULL;
    if (!spec_enum_ok((int)t->kind, SPEC_NAMES_LEN(spec_kind_names)) ||
        !spec_enum_ok((int)t->init, SPEC_NAMES_LEN(spec_init_names)) ||
        !spec_enum_ok((int)t->optim, SPEC_NAMES_LEN(spec_optim_names)) ||
        spec_set(o, "id", json_integer(t->id)) ||
        spec_set(o, "name", spec_json_str(t->name, sizeof(t->name))) ||
        spec_set(o, "kind", json_string(flr_table_kind_name(t->kind))) ||
        spec_set(o, "rows", t->rows <= INT64_MAX ? json_integer((json_int_t)t->rows) : NULL) ||
        spec_set(o, "dim", json_integer(t->dim)) ||
        spec_set(o, "init", json_string(flr_init_name(t->init))) ||
        spec_set(o, "init_scale", spec_json_float(t->init_scale)) ||
        spec_set(o, "seed", spec_json_seed(t->seed)) ||
        spec_set(o, "optim", json_string(flr_optim_name(t->optim))) ||
        spec_set(o, "lr", spec_json_float(t->lr)) ||
        spec_set(o, "momentum", spec_json_float(t->momentum)) ||
        spec_set(o, "beta1", spec_json_float(t->beta1)) ||
        spec_set(o, "beta2", spec_json_float(t->beta2)) ||
        spec_set(o, "eps", spec_json_float(t->eps))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int flr_spec_to_json(const struct flr_job_spec *s, char **out)
{
    json_t *root, *tables;
    char *text;

    *out = NULL;
    if (s->ntables > FLR_MAX_TABLES ||
        !spec_enum_ok((int)s->consistency, SPEC_NAMES_LEN(spec_cons_names)))
        return FLR_EINVAL;
    if (!(root = json_object()))
        return FLR_ENOMEM;
    if (spec_set(root, "job", spec_json_str(s->job, sizeof(s->job))) ||
        spec_set(root, "model", spec_json_str(s->model, sizeof(s->model))) ||
        spec_set(root, "consistency", json_string(flr_consistency_name(s->consistency))) ||
        spec_set(root, "staleness", json_integer(s->staleness)) ||
        spec_set(root, "num_workers", json_integer(s->num_workers)) ||
        spec_set(root, "num_servers", json_integer(s->num_servers)) ||
        spec_set(root, "num_shards", json_integer(s->num_shards)) ||
        spec_set(root, "recovery", spec_json_str(s->recovery, sizeof(s->recovery))) ||
        spec_set(root, "k", json_integer(s->k)) || spec_set(root, "seed", spec_json_seed(s->seed)))
        goto fail_root;
    if (!(tables = json_array()))
        goto fail_root;
    if (json_object_set_new(root, "tables", tables) != 0)
        goto fail_root;
    for (uint32_t i = 0; i < s->ntables; i++) {
        json_t *t = spec_table_to_json(&s->tables[i]);
        if (!t || json_array_append_new(tables, t) != 0)
            goto fail_root;
    }
    /* Nine significant digits read back as the same float; the values were already cut to
     * their shortest form, which %.9g prints without trailing zeros. */
    text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!text)
        return FLR_ENOMEM;
    *out = text;
    return 0;
fail_root:
    /* Constructors fail on out-of-memory and on values JSON cannot carry (a name without
     * its NUL, an enum out of range, a non-finite float); the latter is far likelier. */
    json_decref(root);
    return FLR_EINVAL;
}

/* --- from JSON --------------------------------------------------------------------------- */

/* Checks that every key of o is one of the NULL-terminated known keys; label names the
 * object in the reason ("tables[2]"), or is NULL for the root. */
static int spec_known_keys(json_t *o, const char *label, const char *const *known, char *why,
                           size_t whylen)
{
    const char *key;
    json_t *v;

    json_object_foreach(o, key, v)
    {
        int found = 0;
        for (const char *const *k = known; *k; k++)
            if (strcmp(*k, key) == 0)
                found = 1;
        if (!found) {
            flr_why(why, whylen, "%s%sunknown key '%.40s'", label ? label : "", label ? ": " : "",
                    key);
            return FLR_EFORMAT;
        }
    }
    return 0;
}

/* Fetches key; returns 1 when present, 0 when absent and optional, or a negated error
 * code when absent and required. */
static int spec_get(json_t *o, const char *where, const char *key, int required, json_t **v,
                    char *why, size_t whylen)
{
    *v = json_object_get(o, key);
    if (*v)
        return 1;
    if (!required)
        return 0;
    flr_why(why, whylen, "%s%s: missing", where, key);
    return -FLR_EFORMAT;
}

/* The result of a getter: 0 when absent (the caller's default stays), 1 when read, or a
 * negated error code. */
static int spec_get_u64(json_t *o, const char *where, const char *key, int required, uint64_t max,
                        uint64_t *out, char *why, size_t whylen)
{
    json_t *v;
    int rv = spec_get(o, where, key, required, &v, why, whylen);
    json_int_t n;

    if (rv <= 0)
        return rv;
    if (!json_is_integer(v)) {
        flr_why(why, whylen, "%s%s: expected an integer", where, key);
        return -FLR_EFORMAT;
    }
    n = json_integer_value(v);
    if (n < 0 || (uint64_t)n > max) {
        flr_why(why, whylen, "%s%s: %lld is out of range 0..%llu", where, key, (long long)n,
                (unsigned long long)max);
        return -FLR_ECONFIG;
    }
    *out = (uint64_t)n;
    return 1;
}

static int spec_get_u32(json_t *o, const char *where, const char *key, int required, uint32_t *out,
                        char *why, size_t whylen)
{
    uint64_t v;
    int rv = spec_get_u64(o, where, key, required, UINT32_MAX, &v, why, whylen);

    if (rv == 1)
        *out = (uint32_t)v;
    return rv;
}

static int spec_get_seed(json_t *o, const char *where, const char *key, uint64_t *out, char *why,
                         size_t whylen)
{
    json_t *v;
    int rv = spec_get(o, where, key, 0, &v, why, whylen);
    const char *s;
    char *end;
    unsigned long long n;

    if (rv <= 0)
        return rv;
    if (json_is_integer(v))
        return spec_get_u64(o, where, key, 0, UINT64_MAX, out, why, whylen);
    if (!json_is_string(v)) {
        flr_why(why, whylen, "%s%s: expected an integer or a decimal string", where, key);
        return -FLR_EFORMAT;
    }
    s = json_string_value(v);
    errno = 0;
    n = strtoull(s, &end, 10);
    if (!(s[0] >= '0' && s[0] <= '9') || *end != '\0' || errno == ERANGE) {
        flr_why(why, whylen, "%s%s: '%.40s' is not a 64-bit unsigned integer", where, key, s);
        return -FLR_ECONFIG;
    }
    *out = n;
    return 1;
}

static int spec_get_float(json_t *o, const char *where, const char *key, int required, float *out,
                          char *why, size_t whylen)
{
    json_t *v;
    int rv = spec_get(o, where, key, required, &v, why, whylen);
    double d;

    if (rv <= 0)
        return rv;
    if (!json_is_number(v)) {
        flr_why(why, whylen, "%s%s: expected a number", where, key);
        return -FLR_EFORMAT;
    }
    d = json_number_value(v);
    if (!isfinite((float)d)) {
        flr_why(why, whylen, "%s%s: %g does not fit in a float", where, key, d);
        return -FLR_ECONFIG;
    }
    *out = (float)d;
    return 1;
}

static int spec_get_str(json_t *o, const char *where, const char *key, int required, char *buf,
                        size_t size, char *why, size_t whylen)
{
    json_t *v;
    int rv = spec_get(o, where, key, required, &v, why, whylen);
    size_t n;

    if (rv <= 0)
        return rv;
    if (!json_is_string(v)) {
        flr_why(why, whylen, "%s%s: expected a string", where, key);
        return -FLR_EFORMAT;
    }
    n = json_string_length(v);
    if (n >= size || strlen(json_string_value(v)) != n) {
        flr_why(why, whylen, "%s%s: '%.40s' is longer than %zu bytes", where, key,
                json_string_value(v), size - 1);
        return -FLR_ECONFIG;
    }
    memcpy(buf, json_string_value(v), n + 1);
    return 1;
}

/* Reads an enum given by name; parse maps a name to its value or -1. */
static int spec_get_enum(json_t *o, const char *where, const char *key, int required,
                         const char *const *names, int nnames, int *out, char *why, size_t whylen)
{
    json_t *v;
    int rv = spec_get(o, where, key, required, &v, why, whylen), e;
    char list[128] = "";
    size_t used = 0;

    if (rv <= 0)
        return rv;
    if (!json_is_string(v)) {
        flr_why(why, whylen, "%s%s: expected a string", where, key);
        return -FLR_EFORMAT;
    }
    if ((e = spec_parse_name(names, nnames, json_string_value(v))) >= 0) {
        *out = e;
        return 1;
    }
    for (int i = 0; i < nnames && used < sizeof(list); i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    flr_why(why, whylen, "%s%s: '%.40s' is not one of %s", where, key, json_string_value(v), list);
    return -FLR_ECONFIG;
}

static const char *const spec_table_keys[] = {"id",       "name",       "kind",  "rows",  "dim",
                                              "init",     "init_scale", "seed",  "optim", "lr",
                                              "momentum", "beta1",      "beta2", "eps",   NULL};

static const char *const spec_root_keys[] = {
    "job",        "model",    "consistency", "staleness", "num_workers", "num_servers",
    "num_shards", "recovery", "k",           "seed",      "tables",      NULL};

/* Each getter returns 1, 0 or a negated error; this turns the latter into a return. */
#define SPEC_TRY(call)                                                                             \
    do {                                                                                           \
        int spec_rv_ = (call);                                                                     \
        if (spec_rv_ < 0)                                                                          \
            return -spec_rv_;                                                                      \
    } while (0)

static int spec_table_from_json(struct flr_table_spec *t, json_t *o, uint32_t i, char *why,
                                size_t whylen)
{
    char where[32], label[32];
    uint32_t id = 0;
    int kind = 0, init = 0, optim = 0;
    int rv;

    snprintf(where, sizeof(where), "tables[%u].", (unsigned)i);
    if (!json_is_object(o)) {
        flr_why(why, whylen, "tables[%u]: expected an object", (unsigned)i);
        return FLR_EFORMAT;
    }
    snprintf(label, sizeof(label), "tables[%u]", (unsigned)i);
    if ((rv = spec_known_keys(o, label, spec_table_keys, why, whylen)) != 0)
        return rv;
    memset(t, 0, sizeof(*t));
    flr_table_spec_defaults(t);
    SPEC_TRY(spec_get_u32(o, where, "id", 1, &id, why, whylen));
    t->id = id;
    SPEC_TRY(spec_get_str(o, where, "name", 1, t->name, sizeof(t->name), why, whylen));
    SPEC_TRY(spec_get_enum(o, where, "kind", 1, spec_kind_names, SPEC_NAMES_LEN(spec_kind_names),
                           &kind, why, whylen));
    t->kind = (enum flr_table_kind)kind;
    SPEC_TRY(spec_get_u64(o, where, "rows", 0, UINT64_MAX, &t->rows, why, whylen));
    SPEC_TRY(spec_get_u32(o, where, "dim", 1, &t->dim, why, whylen));
    SPEC_TRY(spec_get_enum(o, where, "init", 0, spec_init_names, SPEC_NAMES_LEN(spec_init_names),
                           &init, why, whylen));
    t->init = (enum flr_init_kind)init;
    SPEC_TRY(spec_get_float(o, where, "init_scale", 0, &t->init_scale, why, whylen));
    SPEC_TRY(spec_get_seed(o, where, "seed", &t->seed, why, whylen));
    SPEC_TRY(spec_get_enum(o, where, "optim", 1, spec_optim_names, SPEC_NAMES_LEN(spec_optim_names),
                           &optim, why, whylen));
    t->optim = (enum flr_optim_kind)optim;
    SPEC_TRY(spec_get_float(o, where, "lr", 1, &t->lr, why, whylen));
    SPEC_TRY(spec_get_float(o, where, "momentum", 0, &t->momentum, why, whylen));
    SPEC_TRY(spec_get_float(o, where, "beta1", 0, &t->beta1, why, whylen));
    SPEC_TRY(spec_get_float(o, where, "beta2", 0, &t->beta2, why, whylen));
    SPEC_TRY(spec_get_float(o, where, "eps", 0, &t->eps, why, whylen));
    return 0;
}

static int spec_root_from_json(struct flr_job_spec *s, json_t *root, char *why, size_t whylen)
{
    json_t *tables;
    int cons = FLR_BSP;
    int rv;

    if (!json_is_object(root)) {
        flr_why(why, whylen, "expected a JSON object");
        return FLR_EFORMAT;
    }
    if ((rv = spec_known_keys(root, NULL, spec_root_keys, why, whylen)) != 0)
        return rv;
    memset(s, 0, sizeof(*s));
    strcpy(s->recovery, "none");
    s->k = 1;
    SPEC_TRY(spec_get_str(root, "", "job", 1, s->job, sizeof(s->job), why, whylen));
    SPEC_TRY(spec_get_str(root, "", "model", 0, s->model, sizeof(s->model), why, whylen));
    SPEC_TRY(spec_get_enum(root, "", "consistency", 0, spec_cons_names,
                           SPEC_NAMES_LEN(spec_cons_names), &cons, why, whylen));
    s->consistency = (enum flr_consistency)cons;
    SPEC_TRY(spec_get_u32(root, "", "staleness", 0, &s->staleness, why, whylen));
    SPEC_TRY(spec_get_u32(root, "", "num_workers", 1, &s->num_workers, why, whylen));
    SPEC_TRY(spec_get_u32(root, "", "num_servers", 1, &s->num_servers, why, whylen));
    SPEC_TRY(spec_get_u32(root, "", "num_shards", 1, &s->num_shards, why, whylen));
    SPEC_TRY(spec_get_str(root, "", "recovery", 0, s->recovery, sizeof(s->recovery), why, whylen));
    SPEC_TRY(spec_get_u32(root, "", "k", 0, &s->k, why, whylen));
    SPEC_TRY(spec_get_seed(root, "", "seed", &s->seed, why, whylen));

    if (!(tables = json_object_get(root, "tables"))) {
        flr_why(why, whylen, "tables: missing");
        return FLR_EFORMAT;
    }
    if (!json_is_array(tables)) {
        flr_why(why, whylen, "tables: expected an array");
        return FLR_EFORMAT;
    }
    if (json_array_size(tables) > FLR_MAX_TABLES) {
        flr_why(why, whylen, "tables: %zu tables, expected 1..%d", json_array_size(tables),
                FLR_MAX_TABLES);
        return FLR_ECONFIG;
    }
    s->ntables = (uint32_t)json_array_size(tables);
    for (uint32_t i = 0; i < s->ntables; i++)
        if ((rv = spec_table_from_json(&s->tables[i], json_array_get(tables, i), i, why, whylen)) !=
            0)
            return rv;
    return 0;
}

int flr_spec_from_json(struct flr_job_spec *s, const char *json, char *why, size_t whylen)
{
    struct flr_job_spec tmp;
    json_error_t err;
    json_t *root;
    int rv;

    if (!json) {
        flr_why(why, whylen, "no JSON text");
        return FLR_EFORMAT;
    }
    if (!(root = json_loads(json, JSON_REJECT_DUPLICATES, &err))) {
        flr_why(why, whylen, "line %d, column %d: %s", err.line, err.column, err.text);
        return FLR_EFORMAT;
    }
    rv = spec_root_from_json(&tmp, root, why, whylen);
    json_decref(root);
    if (rv != 0)
        return rv;
    if ((rv = flr_spec_validate(&tmp, why, whylen)) != 0)
        return rv;
    *s = tmp;
    return 0;
}
