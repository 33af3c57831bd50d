/*
 * test_metrics.c - the status document as Prometheus text: every family has HELP and TYPE
 * before its samples and its samples together, counters end in _total, label values are
 * escaped, totals and recovery durations come out in the right units, and fields the
 * document lacks leave neither a sample nor an empty header.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/err.h"
#include "coordinator/metrics.h"

/* A document shaped like flr_status_collect's, with awkward strings in it. */
static const char *const doc_text =
    "{\"job\":\"demo\",\"exists\":true,\"state\":\"running\",\"epoch\":4,\"model\":\"softmax\","
    "\"recovery\":\"flr\",\"consistency\":\"bsp\",\"started_ms\":1700000000000,"
    "\"now_ms\":1700000012345,\"collect_ms\":7,"
    "\"coordinators\":[{\"candidate\":\"c_0000000000\",\"pid\":10,\"host\":"
    "\"we\\\"ird\\\\host\\nx\","
    "\"http\":\"http://h:1\",\"leader\":true},"
    "{\"candidate\":\"c_0000000001\",\"pid\":11,\"host\":\"h2\",\"http\":\"\",\"leader\":false}],"
    "\"leader\":{\"candidate\":\"c_0000000000\",\"pid\":10,\"host\":\"h\",\"http\":\"http://h:1\"},"
    "\"servers\":["
    "{\"id\":0,\"endpoint\":\"tcp://h:2\",\"state\":\"SERVING\",\"incarnation\":7,\"pid\":20,"
    "\"host\":\"h\",\"reachable\":true,\"requests\":1000,\"shards\":[],"
    "\"rejected\":{\"WRONG_EPOCH\":3,\"NOT_OWNER\":1},\"keys_pushed\":50},"
    "{\"id\":2,\"endpoint\":\"tcp://h:3\",\"state\":\"STANDBY\",\"incarnation\":8,\"pid\":21,"
    "\"host\":\"h\",\"reachable\":false,\"requests\":null,\"shards\":[],\"rejected\":{}}],"
    "\"shards\":["
    "{\"shard\":0,\"owner\":0,\"epoch\":4,\"state\":\"ACTIVE\",\"rows\":100,\"bytes\":4096,"
    "\"pulls\":10,\"pushes\":9,\"held_pulls\":0},"
    "{\"shard\":1,\"owner\":1,\"epoch\":4,\"state\":\"RECOVERING\",\"rows\":null,\"bytes\":null,"
    "\"pulls\":null,\"pushes\":null},"
    "{\"shard\":2,\"owner\":null,\"epoch\":0,\"state\":\"UNASSIGNED\"}],"
    "\"workers\":["
    "{\"id\":0,\"alive\":true,\"removed\":false,\"finished\":false,\"clock\":12,\"samples\":768,"
    "\"epoch\":1,\"loss\":0.5},"
    "{\"id\":1,\"alive\":false,\"removed\":true,\"finished\":false,\"clock\":null,"
    "\"samples\":null,\"epoch\":null,\"loss\":null}],"
    "\"throughput\":{\"samples_per_second\":250.5,\"keys_pushed_per_second\":1000,"
    "\"interval_ms\":1000},"
    "\"curve\":[],\"events\":[],"
    "\"recoveries\":["
    "{\"id\":\"r_0000000000\",\"server\":1,\"phase\":\"done\",\"detect_ms\":1500,"
    "\"recover_ms\":2500,\"rows_rebuilt\":40,\"rows_lost\":2},"
    "{\"id\":\"r_0000000001\",\"server\":1,\"phase\":\"loading\",\"detect_ms\":500,"
    "\"recover_ms\":null,\"rows_rebuilt\":null,\"rows_lost\":null}],"
    "\"requests\":[{\"id\":\"q_0000000000\",\"action\":\"kill\",\"server\":0}],"
    "\"totals\":{\"recoveries\":2,\"recoveries_in_progress\":1,\"rows_rebuilt\":40,"
    "\"rows_lost\":2}}";

static char *render_text(const char *json)
{
    json_error_t err;
    json_t *doc = json_loads(json, 0, &err);
    char *out = NULL;
    size_t len = 0;

    if (!doc)
        fail_msg("test document does not parse: %s (line %d)", err.text, err.line);
    assert_int_equal(flr_metrics_render(doc, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    json_decref(doc);
    return out;
}

/* True when text has a line equal to line. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0))
            return 1;
    return 0;
}

/* The metric name of a sample line, without a summary's _sum/_count. */
static void sample_family(const char *line, char *name, size_t len, int summary_ok)
{
    size_t n = strcspn(line, "{ ");
    if (n >= len)
        n = len - 1;
    memcpy(name, line, n);
    name[n] = 0;
    if (summary_ok) {
        size_t l = strlen(name);
        if (l > 4 && strcmp(name + l - 4, "_sum") == 0)
            name[l - 4] = 0;
        else if (l > 6 && strcmp(name + l - 6, "_count") == 0)
            name[l - 6] = 0;
    }
}

static void every_family_has_help_then_type_then_contiguous_samples(void **state)
{
    char *text = render_text(doc_text), *save = NULL, *line;
    char help[128] = "", type[128] = "", current[128] = "", done[64][128];
    int ndone = 0, samples = 0;
    (void)state;

    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[128];
        if (strncmp(line, "# HELP ", 7) == 0) {
            sample_family(line + 7, help, sizeof(help), 0);
            /* A family never comes back once another started. */
            for (int i = 0; i < ndone; i++)
                if (strcmp(done[i], help) == 0)
                    fail_msg("family %s appears twice", help);
            if (current[0] && ndone < 64)
                snprintf(done[ndone++], sizeof(done[0]), "%s", current);
            current[0] = 0;
            /* Every family has help text. */
            assert_true(strlen(line) > 7 + strlen(help) + 1);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            sample_family(line + 7, type, sizeof(type), 0);
            assert_string_equal(type, help); /* TYPE right after its HELP */
            snprintf(current, sizeof(current), "%s", type);
            assert_true(strstr(line, " gauge") || strstr(line, " counter") ||
                        strstr(line, " summary"));
            continue;
        }
        assert_true(line[0] != '#');
        sample_family(line, name, sizeof(name), strstr(type, "_seconds") != NULL);
        if (strcmp(name, current) != 0)
            fail_msg("sample '%s' outside its family (current family %s)", line, current);
        samples++;
    }
    assert_true(samples > 40);
    free(text);
}

static void counters_end_in_total(void **state)
{
    char *text = render_text(doc_text), *p = text;
    int counters = 0;
    (void)state;

    while ((p = strstr(p, "# TYPE ")) != NULL) {
        char name[128], kind[32];
        assert_int_equal(sscanf(p, "# TYPE %127s %31s", name, kind), 2);
        if (strcmp(kind, "counter") == 0) {
            size_t l = strlen(name);
            counters++;
            if (l < 6 || strcmp(name + l - 6, "_total") != 0)
                fail_msg("counter %s does not end in _total", name);
        } else {
            size_t l = strlen(name);
            assert_false(l >= 6 && strcmp(name + l - 6, "_total") == 0);
        }
        p += 7;
    }
    assert_true(counters >= 7);
    free(text);
}

static void label_values_are_escaped(void **state)
{
    char *text = render_text(doc_text);
    char *buf = NULL;
    size_t n = 0;
    FILE *f;
    (void)state;

    /* host was  we"ird\host<newline>x  */
    assert_true(has_line(
        text,
        "flr_coordinator_leader{candidate=\"c_0000000000\",host=\"we\\\"ird\\\\host\\nx\"} 1"));
    free(text);

    assert_non_null(f = open_memstream(&buf, &n));
    assert_int_equal(flr_metrics_write_label(f, "a\\b\"c\nd\te"), 0);
    fclose(f);
    assert_string_equal(buf, "a\\\\b\\\"c\\nd\te");
    free(buf);
}

static void totals_durations_and_throughput(void **state)
{
    char *text = render_text(doc_text);
    (void)state;

    assert_true(has_line(text, "# TYPE flr_recoveries_total counter"));
    assert_true(has_line(text, "flr_recoveries_total 2"));
    assert_true(has_line(text, "flr_recoveries_in_progress 1"));
    assert_true(has_line(text, "flr_rows_rebuilt_total 40"));
    assert_true(has_line(text, "flr_rows_lost_total 2"));
    /* Durations in seconds: a summary over the recoveries that have one, and a gauge per
     * recovery and stage. */
    assert_true(has_line(text, "# TYPE flr_recovery_detect_seconds summary"));
    assert_true(has_line(text, "flr_recovery_detect_seconds_sum 2"));
    assert_true(has_line(text, "flr_recovery_detect_seconds_count 2"));
    assert_true(has_line(text, "flr_recovery_recover_seconds_sum 2.5"));
    assert_true(has_line(text, "flr_recovery_recover_seconds_count 1"));
    assert_true(has_line(text, "flr_recovery_duration_seconds{recovery=\"r_0000000000\",server="
                               "\"1\",stage=\"detect\"} 1.5"));
    assert_true(has_line(text, "flr_recovery_duration_seconds{recovery=\"r_0000000000\",server="
                               "\"1\",stage=\"recover\"} 2.5"));
    assert_null(strstr(text, "recovery=\"r_0000000001\",server=\"1\",stage=\"recover\""));
    assert_true(has_line(text, "flr_throughput_samples_per_second 250.5"));
    assert_true(has_line(text, "flr_throughput_keys_pushed_per_second 1000"));
    assert_true(has_line(text, "flr_job_start_time_seconds 1700000000"));
    assert_true(has_line(text, "flr_status_collect_duration_seconds 0.007"));
    assert_true(has_line(text, "flr_operator_requests_pending 1"));
    free(text);
}

static void servers_shards_and_workers(void **state)
{
    char *text = render_text(doc_text);
    (void)state;

    assert_true(has_line(text, "flr_job_info{flr_job=\"demo\",model=\"softmax\",recovery=\"flr\","
                               "consistency=\"bsp\"} 1"));
    assert_true(has_line(text, "flr_job_state{state=\"running\"} 1"));
    assert_true(has_line(text, "flr_job_state{state=\"waiting\"} 0"));
    assert_true(has_line(text, "flr_job_epoch 4"));
    assert_true(has_line(text, "flr_servers_registered 2"));
    assert_true(has_line(text, "flr_servers_reachable 1"));
    assert_true(has_line(text, "flr_server_up{server=\"0\"} 1"));
    /* Shard 1's owner is not registered: it shows as a server that is down. */
    assert_true(has_line(text, "flr_server_up{server=\"1\"} 0"));
    assert_true(has_line(text, "flr_server_reachable{server=\"2\"} 0"));
    assert_true(has_line(text, "flr_server_serving{server=\"2\"} 0"));
    assert_true(has_line(text, "flr_server_requests_total{server=\"0\"} 1000"));
    assert_null(strstr(text, "flr_server_requests_total{server=\"2\"}"));
    assert_true(has_line(text, "flr_server_rejected_total{server=\"0\",code=\"WRONG_EPOCH\"} 3"));
    assert_true(has_line(text, "flr_shard_state{shard=\"0\",server=\"0\",state=\"ACTIVE\"} 1"));
    assert_true(has_line(text, "flr_shard_state{shard=\"0\",server=\"0\",state=\"LOST\"} 0"));
    assert_true(has_line(text, "flr_shard_state{shard=\"1\",server=\"1\",state=\"RECOVERING\"} 1"));
    assert_true(has_line(text, "flr_shard_state{shard=\"2\",server=\"\",state=\"UNASSIGNED\"} 1"));
    assert_true(has_line(text, "flr_shard_rows{shard=\"0\",server=\"0\"} 100"));
    assert_null(strstr(text, "flr_shard_rows{shard=\"1\""));
    assert_true(has_line(text, "flr_shard_pushes_total{shard=\"0\",server=\"0\"} 9"));
    assert_true(has_line(text, "flr_workers_alive 1"));
    assert_true(has_line(text, "flr_worker_clock{worker=\"0\"} 12"));
    assert_true(has_line(text, "flr_worker_samples_total{worker=\"0\"} 768"));
    assert_true(has_line(text, "flr_worker_removed{worker=\"1\"} 1"));
    assert_true(has_line(text, "flr_worker_loss{worker=\"0\"} 0.5"));
    free(text);
}

static void missing_fields_leave_no_sample_and_no_header(void **state)
{
    char *text = render_text("{\"job\":\"x\",\"state\":\"absent\",\"epoch\":null}");
    (void)state;

    assert_true(has_line(text, "flr_job_state{state=\"absent\"} 1"));
    assert_null(strstr(text, "flr_job_epoch"));
    assert_null(strstr(text, "flr_recovery_detect_seconds"));
    assert_null(strstr(text, "flr_worker_clock"));
    assert_null(strstr(text, "flr_shard_state"));
    /* Counts of what is absent are zero, not missing. */
    assert_true(has_line(text, "flr_servers_registered 0"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_family_has_help_then_type_then_contiguous_samples),
        cmocka_unit_test(counters_end_in_total),
        cmocka_unit_test(label_values_are_escaped),
        cmocka_unit_test(totals_durations_and_throughput),
        cmocka_unit_test(servers_shards_and_workers),
        cmocka_unit_test(missing_fields_leave_no_sample_and_no_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
