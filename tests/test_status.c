/*
 * test_status.c - the status collector against a real ZooKeeper (tests/zk.sh) and real
 * nng endpoints standing in for servers: every part of a job's tree lands in the
 * document, missing parts are tolerated, a server that does not answer is marked
 * unreachable and costs one probe timeout however many there are, throughput comes from
 * two documents, and operator requests are validated before they are written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/err.h"
#include "common/jobpaths.h"
#include "common/proto.h"
#include "common/spec.h"
#include "common/transport.h"
#include "common/util.h"
#include "common/zk.h"
#include "coordinator/status.h"
#include "tests/testzk.h"

static struct flr_testzk tzk;
static struct flr_zk *zk;

/* --- stand-ins for servers ----------------------------------------------------------------- */

/* Answers STATUS like flr-server does, with fixed counters. */
static void status_fn(void *arg, struct flr_req *req, nng_msg *msg)
{
    const char *text = arg;
    struct flr_msg r = {0};
    nng_msg *out;

    nng_msg_free(msg);
    r.type = FLR_MSG_STATUS_REPLY;
    r.job = "st";
    r.job_len = 2;
    r.reason = "";
    r.text = text;
    r.text_len = (uint32_t)strlen(text);
    if (flr_msg_to_nng(&out, &r, NULL) == 0)
        flr_rep_reply(req, out);
    else
        flr_rep_reply(req, NULL);
}

/* Takes requests and never answers (a stalled server). */
static void silent_fn(void *arg, struct flr_req *req, nng_msg *msg)
{
    (void)arg;
    (void)req;
    nng_msg_free(msg);
}

static const char server0_status[] =
    "{\"server\":0,\"endpoint\":\"x\",\"requests\":4321,"
    "\"shards\":[{\"shard\":0,\"epoch\":3,\"stamp\":9,\"min_clock\":9,\"rows\":100,"
    "\"bytes\":2048,\"pulls\":11,\"pushes\":12,\"keys_pulled\":1100,\"keys_pushed\":1200,"
    "\"held_pulls\":1},{\"shard\":2,\"epoch\":3,\"stamp\":9,\"min_clock\":9,\"rows\":50,"
    "\"bytes\":1024,\"pulls\":5,\"pushes\":6,\"keys_pulled\":500,\"keys_pushed\":600,"
    "\"held_pulls\":0}],\"rejected\":{\"WRONG_EPOCH\":2}}";

/* --- ZooKeeper helpers --------------------------------------------------------------------- */

static void put(const char *path, const char *data, int flags)
{
    char dir[FLR_PATH_MAX];
    int rv;

    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = 0;
    assert_int_equal(flr_zk_mkdirs(zk, dir), 0);
    rv = flr_zk_create(zk, path, data, (int)strlen(data), flags, NULL, 0);
    if (rv == FLR_EZK_EXISTS)
        rv = flr_zk_set(zk, path, data, (int)strlen(data), -1);
    assert_int_equal(rv, 0);
}

static void putf(const char *data, int flags, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void putf(const char *data, int flags, const char *fmt, ...)
{
    char path[FLR_PATH_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    put(path, data, flags);
}

static void write_spec(const char *job, uint32_t workers, uint32_t shards)
{
    struct flr_job_spec s;
    char *json = NULL, path[FLR_PATH_MAX];

    memset(&s, 0, sizeof(s));
    snprintf(s.job, sizeof(s.job), "%s", job);
    snprintf(s.model, sizeof(s.model), "test");
    s.consistency = FLR_SSP;
    s.staleness = 2;
    s.num_workers = workers;
    s.num_servers = 2;
    s.num_shards = shards;
    snprintf(s.recovery, sizeof(s.recovery), "none");
    s.k = 2;
    s.ntables = 1;
    s.tables[0] = (struct flr_table_spec){
        .id = 0, .name = "t", .kind = FLR_TABLE_DENSE, .rows = 300, .dim = 4, .lr = 0.1f};
    flr_table_spec_defaults(&s.tables[0]);
    assert_int_equal(flr_spec_to_json(&s, &json), 0);
    flr_job_path(path, sizeof(path), job, "/spec");
    put(path, json, 0);
    free(json);
}

static json_t *collect(const char *job)
{
    json_t *doc = NULL;
    char why[512] = "";
    int rv = flr_status_collect(zk, job, &doc, why, sizeof(why));
    if (rv != 0)
        fail_msg("flr_status_collect(%s): %s: %s", job, flr_errname(rv), why);
    assert_non_null(doc);
    return doc;
}

static json_int_t geti(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

static const char *gets(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s)
        fail_msg("%s is not a string", key);
    return s;
}

/* --- fixtures ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    char why[512];
    (void)state;

    signal(SIGPIPE, SIG_IGN);
    if (flr_testzk_start(&tzk) != 0)
        return -1;
    if (flr_zk_open(&zk, tzk.hosts, 4000, 5000, why, sizeof(why)) != 0) {
        fprintf(stderr, "setup: %s\n", why);
        flr_testzk_stop(&tzk);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    flr_zk_close(zk);
    flr_testzk_stop(&tzk);
    return 0;
}

/* --- tests --------------------------------------------------------------------------------- */

static void absent_job_is_a_document_not_an_error(void **state)
{
    json_t *doc = collect("nosuchjob");
    (void)state;

    assert_string_equal(gets(doc, "job"), "nosuchjob");
    assert_true(json_is_false(json_object_get(doc, "exists")));
    assert_string_equal(gets(doc, "state"), "absent");
    assert_true(json_is_null(json_object_get(doc, "epoch")));
    assert_true(json_is_null(json_object_get(doc, "leader")));
    assert_int_equal(json_array_size(json_object_get(doc, "servers")), 0);
    assert_int_equal(json_array_size(json_object_get(doc, "shards")), 0);
    assert_int_equal(json_array_size(json_object_get(doc, "workers")), 0);
    assert_true(json_is_array(json_object_get(doc, "curve")));
    assert_int_equal(json_array_size(json_object_get(doc, "events")), 0);
    assert_int_equal(geti(json_object_get(doc, "totals"), "recoveries"), 0);
    assert_true(
        json_is_null(json_object_get(json_object_get(doc, "throughput"), "samples_per_second")));
    assert_true(geti(doc, "now_ms") > 0);
    json_decref(doc);
}

static void bad_job_names_are_refused(void **state)
{
    json_t *doc = NULL;
    char why[256];
    (void)state;

    assert_int_equal(flr_status_collect(zk, "", &doc, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(flr_status_collect(zk, "a/b", &doc, why, sizeof(why)), FLR_EINVAL);
    assert_non_null(strstr(why, "a/b"));
    assert_null(doc);
}

static void collects_every_part_of_the_tree(void **state)
{
    struct flr_rep *good, *silent;
    char why[256], data[512];
    json_t *doc, *v, *s, *w;
    (void)state;

    assert_int_equal(flr_rep_open(&good, "tcp://127.0.0.1:0", 8, 1 << 20, status_fn,
                                  (void *)server0_status, why, sizeof(why)),
                     0);
    assert_int_equal(
        flr_rep_open(&silent, "tcp://127.0.0.1:0", 8, 1 << 20, silent_fn, NULL, why, sizeof(why)),
        0);

    write_spec("st", 3, 4);
    put("/flr/st/state", "running", 0);
    put("/flr/st/epoch", "3", 0);
    put("/flr/st/started", "1700000000000", 0);
    put("/flr/st/coordinators/c_0000000004",
        "{\"pid\":41,\"host\":\"h1\",\"http\":\"http://127.0.0.1:9999\"}", 0);
    put("/flr/st/coordinators/c_0000000007", "{\"pid\":42,\"host\":\"h2\",\"http\":\"\"}", 0);
    snprintf(data, sizeof(data),
             "{\"id\":0,\"endpoint\":\"%s\",\"incarnation\":5,\"pid\":100,\"host\":\"h\","
             "\"state\":\"SERVING\"}",
             flr_rep_url(good));
    put("/flr/st/servers/0", data, 0);
    snprintf(data, sizeof(data),
             "{\"id\":1,\"endpoint\":\"%s\",\"incarnation\":6,\"pid\":101,\"host\":\"h\","
             "\"state\":\"SERVING\"}",
             flr_rep_url(silent));
    put("/flr/st/servers/1", data, 0);
    for (int i = 0; i < 4; i++) {
        snprintf(data, sizeof(data), "{\"owner\":%d,\"epoch\":3,\"state\":\"%s\"}", i % 2,
                 i == 3 ? "RECOVERING" : "ACTIVE");
        putf(data, 0, "/flr/st/shards/%d", i);
    }
    put("/flr/st/workers/0",
        "{\"id\":0,\"pid\":200,\"host\":\"h\",\"endpoint\":\"\",\"clock\":17,\"samples\":1088,"
        "\"epoch\":1,\"loss\":0.25,\"at_ms\":1700000001000}",
        0);
    put("/flr/st/results/1",
        "{\"worker\":1,\"samples\":640,\"iterations\":10,\"epochs\":2,\"train_loss\":0.5,"
        "\"curve\":[{\"epoch\":1}]}",
        0);
    put("/flr/st/removed/2", "{\"at_ms\":1}", 0);
    put("/flr/st/curve", "[{\"epoch\":1,\"test_accuracy\":0.8,\"wall_seconds\":3.5}]", 0);
    for (int i = 0; i < FLR_STATUS_EVENTS + 10; i++) {
        snprintf(data, sizeof(data), "{\"at_ms\":%d,\"kind\":\"leader\",\"message\":\"event %d\"}",
                 1000 + i, i);
        put("/flr/st/events/e_", data, FLR_ZK_SEQUENCE);
    }
    put("/flr/st/recoveries/r_",
        "{\"id\":\"r_0000000000\",\"server\":1,\"incarnation\":4,\"shards\":[1],\"mode\":\"flr\","
        "\"phase\":\"done\",\"detect_ms\":800,\"recover_ms\":1200,\"rows_rebuilt\":5,"
        "\"rows_lost\":0}",
        FLR_ZK_SEQUENCE);
    put("/flr/st/recoveries/r_",
        "{\"server\":1,\"phase\":\"loading\",\"rows_rebuilt\":7,\"rows_lost\":1,\"detect_ms\":"
        "null}",
        FLR_ZK_SEQUENCE);

    doc = collect("st");
    assert_true(json_is_true(json_object_get(doc, "exists")));
    assert_string_equal(gets(doc, "state"), "running");
    assert_int_equal(geti(doc, "epoch"), 3);
    assert_int_equal(geti(doc, "started_ms"), 1700000000000LL);
    assert_string_equal(gets(doc, "recovery"), "none");
    assert_string_equal(gets(doc, "consistency"), "ssp");
    assert_int_equal(geti(doc, "num_shards"), 4);

    /* The lowest candidate leads. */
    v = json_object_get(doc, "leader");
    assert_string_equal(gets(v, "candidate"), "c_0000000004");
    assert_string_equal(gets(v, "http"), "http://127.0.0.1:9999");
    assert_int_equal(geti(v, "pid"), 41);
    v = json_object_get(doc, "coordinators");
    assert_int_equal(json_array_size(v), 2);
    assert_true(json_is_true(json_object_get(json_array_get(v, 0), "leader")));
    assert_true(json_is_false(json_object_get(json_array_get(v, 1), "leader")));

    /* Server 0 answered STATUS; server 1 took the request and never answered. */
    v = json_object_get(doc, "servers");
    assert_int_equal(json_array_size(v), 2);
    s = json_array_get(v, 0);
    assert_int_equal(geti(s, "id"), 0);
    assert_true(json_is_true(json_object_get(s, "reachable")));
    assert_int_equal(geti(s, "requests"), 4321);
    assert_int_equal(geti(s, "incarnation"), 5);
    assert_string_equal(gets(s, "state"), "SERVING");
    assert_int_equal(json_array_size(json_object_get(s, "shards")), 2);
    assert_int_equal(geti(json_object_get(s, "rejected"), "WRONG_EPOCH"), 2);
    assert_int_equal(geti(s, "keys_pushed"), 1800);
    s = json_array_get(v, 1);
    assert_true(json_is_false(json_object_get(s, "reachable")));
    assert_true(json_is_null(json_object_get(s, "requests")));
    assert_non_null(strstr(gets(s, "error"), "timed out"));

    /* Shards: records from ZooKeeper, counters from the owner when it answered. */
    v = json_object_get(doc, "shards");
    assert_int_equal(json_array_size(v), 4);
    s = json_array_get(v, 0);
    assert_int_equal(geti(s, "shard"), 0);
    assert_int_equal(geti(s, "owner"), 0);
    assert_string_equal(gets(s, "state"), "ACTIVE");
    assert_int_equal(geti(s, "rows"), 100);
    assert_int_equal(geti(s, "bytes"), 2048);
    assert_int_equal(geti(s, "pulls"), 11);
    assert_int_equal(geti(s, "pushes"), 12);
    s = json_array_get(v, 1);
    assert_int_equal(geti(s, "owner"), 1);
    assert_true(json_is_null(json_object_get(s, "rows")));
    assert_string_equal(gets(json_array_get(v, 3), "state"), "RECOVERING");

    /* Workers: live progress, a finished one from its result, a removed one. */
    v = json_object_get(doc, "workers");
    assert_int_equal(json_array_size(v), 3);
    w = json_array_get(v, 0);
    assert_true(json_is_true(json_object_get(w, "alive")));
    assert_int_equal(geti(w, "clock"), 17);
    assert_int_equal(geti(w, "samples"), 1088);
    assert_int_equal(geti(w, "epoch"), 1);
    assert_true(json_real_value(json_object_get(w, "loss")) == 0.25);
    w = json_array_get(v, 1);
    assert_true(json_is_false(json_object_get(w, "alive")));
    assert_true(json_is_true(json_object_get(w, "finished")));
    assert_int_equal(geti(w, "clock"), 10);
    assert_int_equal(geti(w, "samples"), 640);
    w = json_array_get(v, 2);
    assert_true(json_is_true(json_object_get(w, "removed")));
    assert_true(json_is_null(json_object_get(w, "clock")));

    /* The curve node wins over the result's curve. */
    v = json_object_get(doc, "curve");
    assert_int_equal(json_array_size(v), 1);
    assert_true(json_real_value(json_object_get(json_array_get(v, 0), "test_accuracy")) == 0.8);

    /* The newest FLR_STATUS_EVENTS events, oldest first. */
    v = json_object_get(doc, "events");
    assert_int_equal(json_array_size(v), FLR_STATUS_EVENTS);
    assert_string_equal(gets(json_array_get(v, 0), "message"), "event 10");
    assert_string_equal(gets(json_array_get(v, FLR_STATUS_EVENTS - 1), "message"), "event 59");
    assert_string_equal(gets(json_array_get(v, 0), "id"), "e_0000000010");

    /* Recoveries pass through; the second gets its node name as id. */
    v = json_object_get(doc, "recoveries");
    assert_int_equal(json_array_size(v), 2);
    assert_string_equal(gets(json_array_get(v, 0), "mode"), "flr");
    assert_string_equal(gets(json_array_get(v, 1), "id"), "r_0000000001");
    v = json_object_get(doc, "totals");
    assert_int_equal(geti(v, "recoveries"), 2);
    assert_int_equal(geti(v, "recoveries_in_progress"), 1);
    assert_int_equal(geti(v, "rows_rebuilt"), 12);
    assert_int_equal(geti(v, "rows_lost"), 1);
    assert_true(geti(doc, "collect_ms") >= 0);
    json_decref(doc);

    flr_rep_close(good);
    flr_rep_close(silent);
}

/* With the curve node missing, worker 0's result provides it once the job is over. */
static void curve_falls_back_to_worker_zero_result(void **state)
{
    json_t *doc;
    (void)state;

    write_spec("cv", 1, 1);
    put("/flr/cv/results/0", "{\"curve\":[{\"epoch\":1,\"test_accuracy\":0.7}]}", 0);
    doc = collect("cv");
    assert_int_equal(json_array_size(json_object_get(doc, "curve")), 1);
    /* No shard record yet: the shard is listed as missing, not skipped. */
    assert_string_equal(gets(json_array_get(json_object_get(doc, "shards"), 0), "state"),
                        "MISSING");
    json_decref(doc);
}

static void silent_servers_are_probed_in_parallel(void **state)
{
    struct flr_rep *silent[4];
    char why[256], data[512];
    int64_t t0;
    json_t *doc;
    size_t i;
    json_t *s;
    (void)state;

    write_spec("par", 1, 4);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(flr_rep_open(&silent[k], "tcp://127.0.0.1:0", 8, 1 << 20, silent_fn, NULL,
                                      why, sizeof(why)),
                         0);
        snprintf(data, sizeof(data),
                 "{\"id\":%d,\"endpoint\":\"%s\",\"incarnation\":1,\"pid\":1,\"host\":\"h\","
                 "\"state\":\"SERVING\"}",
                 k, flr_rep_url(silent[k]));
        putf(data, 0, "/flr/par/servers/%d", k);
    }
    t0 = flr_now_ms();
    doc = collect("par");
    /* Four silent servers cost one probe timeout, not four. */
    assert_true(flr_now_ms() - t0 < 2 * FLR_STATUS_PROBE_MS + 500);
    assert_true(flr_now_ms() - t0 >= FLR_STATUS_PROBE_MS - 50);
    for (i = 0; (s = json_array_get(json_object_get(doc, "servers"), i)) != NULL; i++)
        assert_true(json_is_false(json_object_get(s, "reachable")));
    json_decref(doc);
    for (int k = 0; k < 4; k++)
        flr_rep_close(silent[k]);
}

static void throughput_is_the_difference_of_two_documents(void **state)
{
    json_t *prev = json_loads("{\"job\":\"t\",\"now_ms\":1000,"
                              "\"workers\":[{\"id\":0,\"samples\":100},{\"id\":1,\"samples\":50}],"
                              "\"servers\":[{\"id\":0,\"incarnation\":1,\"keys_pushed\":1000},"
                              "{\"id\":1,\"incarnation\":1,\"keys_pushed\":500}]}",
                              0, NULL);
    json_t *now = json_loads("{\"job\":\"t\",\"now_ms\":3000,"
                             "\"workers\":[{\"id\":0,\"samples\":300},{\"id\":1,\"samples\":250}],"
                             "\"servers\":[{\"id\":0,\"incarnation\":1,\"keys_pushed\":3000},"
                             "{\"id\":1,\"incarnation\":2,\"keys_pushed\":200}]}",
                             0, NULL);
    json_t *tp, *other;
    (void)state;

    assert_non_null(prev);
    assert_non_null(now);
    flr_status_throughput(now, prev);
    tp = json_object_get(now, "throughput");
    /* (200 + 200) samples in 2 s; server 1 was relaunched, so its 200 keys are all new. */
    assert_true(json_real_value(json_object_get(tp, "samples_per_second")) == 200.0);
    assert_true(json_real_value(json_object_get(tp, "keys_pushed_per_second")) == 1100.0);
    assert_int_equal(geti(tp, "interval_ms"), 2000);

    /* No previous document, or one of another job: rates unknown. */
    flr_status_throughput(now, NULL);
    assert_true(
        json_is_null(json_object_get(json_object_get(now, "throughput"), "samples_per_second")));
    other = json_loads("{\"job\":\"u\",\"now_ms\":1}", 0, NULL);
    flr_status_throughput(now, other);
    assert_true(json_is_null(
        json_object_get(json_object_get(now, "throughput"), "keys_pushed_per_second")));
    json_decref(other);
    json_decref(prev);
    json_decref(now);
}

static void requests_are_checked_then_appended(void **state)
{
    char created[64], why[256];
    json_t *doc, *v;
    (void)state;

    put("/flr/rq/servers/3", "{\"id\":3}", FLR_ZK_EPHEMERAL);
    assert_int_equal(flr_status_request_add(zk, "rq", "kill", 3, "test", created, sizeof(created),
                                            why, sizeof(why)),
                     0);
    assert_string_equal(created, "q_0000000000");
    assert_int_equal(flr_status_request_add(zk, "rq", "drain", 3, "test", created, sizeof(created),
                                            why, sizeof(why)),
                     0);
    assert_string_equal(created, "q_0000000001");
    assert_int_equal(flr_status_request_add(zk, "rq", "kill", 4, "test", created, sizeof(created),
                                            why, sizeof(why)),
                     FLR_ENOT_FOUND);
    assert_string_equal(why, "server 4 is not registered in job rq");
    assert_int_equal(flr_status_request_add(zk, "rq", "explode", 3, "test", created,
                                            sizeof(created), why, sizeof(why)),
                     FLR_EINVAL);
    assert_non_null(strstr(why, "explode"));

    doc = collect("rq");
    v = json_object_get(doc, "requests");
    assert_int_equal(json_array_size(v), 2);
    assert_string_equal(gets(json_array_get(v, 0), "action"), "kill");
    assert_int_equal(geti(json_array_get(v, 0), "server"), 3);
    assert_string_equal(gets(json_array_get(v, 0), "from"), "test");
    assert_string_equal(gets(json_array_get(v, 0), "id"), "q_0000000000");
    assert_true(geti(json_array_get(v, 0), "at_ms") > 0);
    assert_string_equal(gets(json_array_get(v, 1), "action"), "drain");
    json_decref(doc);
}

static void server_ids_are_parsed_strictly(void **state)
{
    unsigned long id = 99;
    char why[256];
    (void)state;

    assert_int_equal(flr_status_parse_server_id("0", &id, why, sizeof(why)), 0);
    assert_int_equal(id, 0);
    assert_int_equal(flr_status_parse_server_id("1000000", &id, why, sizeof(why)), 0);
    assert_int_equal(id, 1000000);
    assert_int_equal(flr_status_parse_server_id("1000001", &id, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(flr_status_parse_server_id("abc", &id, why, sizeof(why)), FLR_EINVAL);
    assert_string_equal(why, "server id 'abc' is not a number in 0..1000000");
    assert_int_equal(flr_status_parse_server_id("-1", &id, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(flr_status_parse_server_id("1x", &id, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(flr_status_parse_server_id("", &id, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(flr_status_parse_server_id("99999999999999999999", &id, why, sizeof(why)),
                     FLR_EINVAL);
}

static void leader_lookup_reads_the_lowest_candidate(void **state)
{
    json_t *leader = NULL;
    char why[256];
    (void)state;

    assert_int_equal(flr_status_leader(zk, "nosuchjob", &leader, why, sizeof(why)), 0);
    assert_null(leader);
    put("/flr/ld/coordinators/c_0000000002", "{\"pid\":2,\"host\":\"b\",\"http\":\"\"}", 0);
    put("/flr/ld/coordinators/c_0000000001", "{\"pid\":1,\"host\":\"a\",\"http\":\"http://a:1\"}",
        0);
    assert_int_equal(flr_status_leader(zk, "ld", &leader, why, sizeof(why)), 0);
    assert_non_null(leader);
    assert_string_equal(gets(leader, "candidate"), "c_0000000001");
    assert_string_equal(gets(leader, "http"), "http://a:1");
    json_decref(leader);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(absent_job_is_a_document_not_an_error),
        cmocka_unit_test(bad_job_names_are_refused),
        cmocka_unit_test(collects_every_part_of_the_tree),
        cmocka_unit_test(curve_falls_back_to_worker_zero_result),
        cmocka_unit_test(silent_servers_are_probed_in_parallel),
        cmocka_unit_test(throughput_is_the_difference_of_two_documents),
        cmocka_unit_test(requests_are_checked_then_appended),
        cmocka_unit_test(server_ids_are_parsed_strictly),
        cmocka_unit_test(leader_lookup_reads_the_lowest_candidate),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
