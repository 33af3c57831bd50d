/*
 * spec.h - the job spec: tables, consistency, counts, recovery mode.
 *
 * The coordinator writes it to /flr/<job>/spec as JSON; servers and workers read it.
 * Parsing is strict: unknown enum names, missing required fields, out-of-range values and
 * duplicate table ids or names are errors with a one-line reason.
 */
#ifndef FLR_SPEC_H
#define FLR_SPEC_H

#include <stddef.h>
#include <stdint.h>

#define FLR_MAX_TABLES 16
#define FLR_NAME_MAX   32

enum flr_table_kind { FLR_TABLE_DENSE = 0, FLR_TABLE_SPARSE = 1 };
enum flr_init_kind { FLR_INIT_ZEROS = 0, FLR_INIT_UNIFORM = 1, FLR_INIT_NORMAL = 2 };
enum flr_optim_kind {
    FLR_OPT_SGD = 0,
    FLR_OPT_MOMENTUM = 1,
    FLR_OPT_ADAGRAD = 2,
    FLR_OPT_ADAM = 3
};
enum flr_consistency { FLR_BSP = 0, FLR_SSP = 1, FLR_ASP = 2 };

struct flr_table_spec {
    uint32_t id;             /* 0..65535; the top 16 bits of every key of the table */
    char name[FLR_NAME_MAX]; /* [A-Za-z0-9_.-]+ */
    enum flr_table_kind kind;
    uint64_t rows; /* dense: row count (>= 1); sparse: 0 (unbounded) */
    uint32_t dim;  /* floats per row, 1..1048576 */
    enum flr_init_kind init;
    float init_scale; /* uniform: [-scale, scale); normal: stddev */
    uint64_t seed;
    enum flr_optim_kind optim;
    float lr;
    float momentum; /* momentum */
    float beta1;    /* adam */
    float beta2;    /* adam */
    float eps;      /* adagrad, adam */
};

struct flr_job_spec {
    char job[64];
    char model[FLR_NAME_MAX];
    enum flr_consistency consistency;
    uint32_t staleness; /* SSP bound s; BSP means 0; ASP ignores it */
    uint32_t num_workers;
    uint32_t num_servers;
    uint32_t num_shards;
    char recovery[16]; /* "none" for now */
    uint32_t k;
    uint64_t seed;
    uint32_t ntables;
    struct flr_table_spec tables[FLR_MAX_TABLES];
};

/* Enum <-> name ("dense", "uniform", "adagrad", "bsp"...). Parsers return -1 when unknown. */
const char *flr_table_kind_name(enum flr_table_kind k);
int flr_table_kind_parse(const char *s);
const char *flr_init_name(enum flr_init_kind k);
int flr_init_parse(const char *s);
const char *flr_optim_name(enum flr_optim_kind k);
int flr_optim_parse(const char *s);
const char *flr_consistency_name(enum flr_consistency c);
int flr_consistency_parse(const char *s);

/* Number of optimizer slot vectors stored beside each row (0, 1 or 2). */
uint32_t flr_optim_nslots(enum flr_optim_kind k);

/* Fills an optimizer's usual defaults (momentum 0.9, beta1 0.9, beta2 0.999, eps 1e-8 for
 * every optimizer, Adagrad included) into t, whatever t->optim is, so it may be called
 * before the optimizer is chosen; lr and the other fields are left alone. */
void flr_table_spec_defaults(struct flr_table_spec *t);

/* Checks a spec for internal consistency. Returns 0 or FLR_ECONFIG with a reason. */
int flr_spec_validate(const struct flr_job_spec *s, char *why, size_t whylen);

/* Serialises to JSON. *out is malloc'd, NUL-terminated, owned by the caller. */
int flr_spec_to_json(const struct flr_job_spec *s, char **out);

/* Parses and validates. Returns 0, FLR_EFORMAT (not JSON / wrong types) or FLR_ECONFIG. */
int flr_spec_from_json(struct flr_job_spec *s, const char *json, char *why, size_t whylen);

/* Finds a table by id; returns NULL when absent. */
const struct flr_table_spec *flr_spec_table(const struct flr_job_spec *s, uint32_t id);

#endif
