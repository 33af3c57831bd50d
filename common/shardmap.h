/*
 * shardmap.h - keys -> shards -> servers.
 *
 * Placement (pure functions of the spec, identical in every process):
 *   - dense table with n rows: row r goes to shard floor(r * S / n), contiguous ranges;
 *   - sparse table: shard = flr_mix64(key) % S.
 *
 * Ownership (from ZooKeeper): /flr/<job>/shards/<shard> holds a shard record and
 * /flr/<job>/servers/<id> a server record, both JSON.  struct flr_shardmap is a snapshot
 * of both that every process caches and re-reads when a watch fires.
 */
#ifndef FLR_SHARDMAP_H
#define FLR_SHARDMAP_H

#include <stdint.h>

#include "spec.h"

#define FLR_ENDPOINT_MAX 128
#define FLR_NO_OWNER     UINT32_MAX

enum flr_shard_state {
    FLR_SHARD_UNASSIGNED = 0,
    FLR_SHARD_ACTIVE = 1,
    FLR_SHARD_RECOVERING = 2,
    FLR_SHARD_LOST = 3
};

enum flr_server_state { FLR_SERVER_STANDBY = 0, FLR_SERVER_SERVING = 1 };

struct flr_shard_rec {
    uint32_t owner; /* server id, FLR_NO_OWNER when unassigned */
    uint64_t epoch;
    enum flr_shard_state state;
    /* A drain: 1 + the id of the server the new owner copies the shard from before it
     * serves; 0 = none (the owner opens the shard from its initialisers).  JSON "from". */
    uint32_t from1;
    /* Recovery flr: the owner rebuilds the shard from the workers' copies and update logs
     * before it serves (docs/recovery.md).  JSON "rebuild": true. */
    int rebuild;
};

struct flr_server_rec {
    uint32_t id;
    char endpoint[FLR_ENDPOINT_MAX]; /* nng URL, e.g. tcp://127.0.0.1:40123 */
    uint64_t incarnation;            /* distinguishes restarts of the same id */
    int32_t pid;
    char host[64];
    enum flr_server_state state;
};

/* Placement.  Returns spec->num_shards (no shard) when the key's table is not in the spec
 * or a dense row is >= the table's rows. */
uint32_t flr_shard_of_key(const struct flr_job_spec *spec, uint64_t key);

/* For a dense table: the rows [*lo, *hi) of the table that shard holds (may be empty). */
void flr_shard_dense_range(const struct flr_job_spec *spec, const struct flr_table_spec *t,
                           uint32_t shard, uint64_t *lo, uint64_t *hi);

const char *flr_shard_state_name(enum flr_shard_state s);
int flr_shard_state_parse(const char *s);
const char *flr_server_state_name(enum flr_server_state s);
int flr_server_state_parse(const char *s);

/* JSON records (as stored in ZooKeeper). *out is malloc'd, owned by the caller. */
int flr_shard_rec_to_json(const struct flr_shard_rec *r, char **out);
int flr_shard_rec_from_json(struct flr_shard_rec *r, const char *json, size_t len);
int flr_server_rec_to_json(const struct flr_server_rec *r, char **out);
int flr_server_rec_from_json(struct flr_server_rec *r, const char *json, size_t len);

/* A snapshot of ownership. */
struct flr_shardmap {
    uint32_t nshards;
    struct flr_shard_rec *shards; /* nshards entries */
    uint32_t nservers;
    struct flr_server_rec *servers; /* nservers entries, sorted by id */
};

int flr_shardmap_alloc(struct flr_shardmap **mp, uint32_t nshards);
void flr_shardmap_free(struct flr_shardmap *m);

/* Returns the server record with that id, or NULL. */
const struct flr_server_rec *flr_shardmap_server(const struct flr_shardmap *m, uint32_t id);

/* Adds or replaces a server record (keeps the array sorted). */
int flr_shardmap_put_server(struct flr_shardmap *m, const struct flr_server_rec *r);

#endif
