/*
 * test_coord.c - coord_build_spec: the tables each model asks for, the optimizer and
 * learning-rate overrides, the default shard count, and the reasons given for an unknown
 * model or inconsistent counts.  No ZooKeeper is needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/spec.h"
#include "coordinator/coord.h"

/* A configuration as the coordinator's defaults leave it, for one model. */
static void cfg_set(struct coord_cfg *c, const char *model)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->job, sizeof(c->job), "unit");
    snprintf(c->model, sizeof(c->model), "%s", model);
    c->workers = 2;
    c->servers = 2;
    c->shards = 0;
    c->consistency = FLR_BSP;
    c->staleness = 0;
    c->optimizer = 0;
    c->lr = 0;
    c->hidden = 128;
    c->seed = 1;
    snprintf(c->recovery, sizeof(c->recovery), "none");
    c->k = 1;
}

static void build_ok(const struct coord_cfg *c, struct flr_job_spec *s)
{
    char why[512] = "";
    int rv = coord_build_spec(c, s, why, sizeof(why));
    if (rv != 0)
        fail_msg("coord_build_spec: %s: %s", flr_errname(rv), why);
}

static void softmax_is_one_dense_table_of_785_by_10(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    (void)state;

    cfg_set(&c, "softmax");
    build_ok(&c, &s);
    assert_string_equal(s.model, "softmax");
    assert_int_equal(s.ntables, 1);
    assert_int_equal(s.tables[0].id, 0);
    assert_int_equal(s.tables[0].kind, FLR_TABLE_DENSE);
    assert_int_equal(s.tables[0].rows, 785);
    assert_int_equal(s.tables[0].dim, 10);
    /* Without --optimizer the coordinator picks Adagrad and the model its learning rate. */
    assert_int_equal(s.tables[0].optim, FLR_OPT_ADAGRAD);
    assert_true(s.tables[0].lr > 0);
}

static void mlp_tables_take_hidden_units_from_cfg(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    (void)state;

    cfg_set(&c, "mlp");
    c.hidden = 32;
    build_ok(&c, &s);
    assert_int_equal(s.ntables, 2);
    assert_int_equal(s.tables[0].id, 0);
    assert_int_equal(s.tables[0].kind, FLR_TABLE_DENSE);
    assert_int_equal(s.tables[0].rows, 785);
    assert_int_equal(s.tables[0].dim, 32);
    assert_int_equal(s.tables[1].id, 1);
    assert_int_equal(s.tables[1].kind, FLR_TABLE_DENSE);
    assert_int_equal(s.tables[1].rows, 33);
    assert_int_equal(s.tables[1].dim, 10);

    c.hidden = 7;
    build_ok(&c, &s);
    assert_int_equal(s.tables[0].dim, 7);
    assert_int_equal(s.tables[1].rows, 8);
}

static void mlp_with_too_many_hidden_units_fails_with_reason(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    char why[512] = "";
    (void)state;

    cfg_set(&c, "mlp");
    c.hidden = 1 << 20;
    assert_int_not_equal(coord_build_spec(&c, &s, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "mlp"));
}

static void ctr_is_one_sparse_table_of_dim_1(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    (void)state;

    cfg_set(&c, "ctr");
    build_ok(&c, &s);
    assert_int_equal(s.ntables, 1);
    assert_int_equal(s.tables[0].kind, FLR_TABLE_SPARSE);
    assert_int_equal(s.tables[0].rows, 0);
    assert_int_equal(s.tables[0].dim, 1);
}

static void optimizer_and_lr_overrides_apply_to_every_table(void **state)
{
    static const char *const models[] = {"softmax", "mlp", "ctr"};
    struct coord_cfg c;
    struct flr_job_spec s;
    (void)state;

    for (size_t m = 0; m < sizeof(models) / sizeof(models[0]); m++) {
        cfg_set(&c, models[m]);
        c.optimizer = FLR_OPT_ADAM + 1;
        c.lr = 0.0125;
        build_ok(&c, &s);
        assert_true(s.ntables >= 1);
        for (uint32_t i = 0; i < s.ntables; i++) {
            assert_int_equal(s.tables[i].optim, FLR_OPT_ADAM);
            assert_true(s.tables[i].lr == 0.0125f);
        }
    }
}

static void optimizer_override_alone_keeps_a_learning_rate_per_table(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    (void)state;

    cfg_set(&c, "mlp");
    c.optimizer = FLR_OPT_SGD + 1;
    build_ok(&c, &s);
    for (uint32_t i = 0; i < s.ntables; i++) {
        assert_int_equal(s.tables[i].optim, FLR_OPT_SGD);
        assert_true(s.tables[i].lr > 0);
    }
}

static void default_shards_are_four_per_server(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    (void)state;

    cfg_set(&c, "softmax");
    c.servers = 3;
    build_ok(&c, &s);
    assert_int_equal(s.num_servers, 3);
    assert_int_equal(s.num_shards, 12);

    c.shards = 5;
    build_ok(&c, &s);
    assert_int_equal(s.num_shards, 5);
}

static void counts_and_names_are_copied(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    (void)state;

    cfg_set(&c, "ctr");
    c.workers = 5;
    c.servers = 2;
    c.shards = 6;
    c.seed = 1234;
    c.k = 2;
    build_ok(&c, &s);
    assert_string_equal(s.job, "unit");
    assert_string_equal(s.model, "ctr");
    assert_string_equal(s.recovery, "none");
    assert_int_equal(s.num_workers, 5);
    assert_int_equal(s.num_servers, 2);
    assert_int_equal(s.num_shards, 6);
    assert_int_equal(s.seed, 1234);
    assert_int_equal(s.k, 2);
}

static void staleness_is_kept_for_ssp_only(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    (void)state;

    cfg_set(&c, "softmax");
    c.staleness = 3;
    c.consistency = FLR_SSP;
    build_ok(&c, &s);
    assert_int_equal(s.consistency, FLR_SSP);
    assert_int_equal(s.staleness, 3);

    c.consistency = FLR_BSP;
    build_ok(&c, &s);
    assert_int_equal(s.consistency, FLR_BSP);
    assert_int_equal(s.staleness, 0);

    c.consistency = FLR_ASP;
    build_ok(&c, &s);
    assert_int_equal(s.consistency, FLR_ASP);
    assert_int_equal(s.staleness, 0);
}

static void built_spec_survives_a_json_round_trip(void **state)
{
    static const char *const models[] = {"softmax", "mlp", "ctr"};
    struct coord_cfg c;
    struct flr_job_spec s, back;
    char why[512] = "", *json = NULL, *again = NULL;
    (void)state;

    /* Servers and workers read the spec from its JSON: it must parse and mean the same. */
    for (size_t m = 0; m < sizeof(models) / sizeof(models[0]); m++) {
        cfg_set(&c, models[m]);
        c.hidden = 16;
        build_ok(&c, &s);
        assert_int_equal(flr_spec_to_json(&s, &json), 0);
        if (flr_spec_from_json(&back, json, why, sizeof(why)) != 0) {
            free(json);
            fail_msg("%s: %s", models[m], why);
        }
        assert_int_equal(flr_spec_to_json(&back, &again), 0);
        assert_string_equal(again, json);
        assert_int_equal(back.ntables, s.ntables);
        for (uint32_t i = 0; i < s.ntables; i++) {
            assert_int_equal(back.tables[i].rows, s.tables[i].rows);
            assert_int_equal(back.tables[i].dim, s.tables[i].dim);
            assert_true(back.tables[i].lr == s.tables[i].lr);
        }
        free(again);
        free(json);
    }
}

static void unknown_model_fails_with_the_known_models_listed(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    char why[512] = "";
    (void)state;

    cfg_set(&c, "resnet");
    assert_int_equal(coord_build_spec(&c, &s, why, sizeof(why)), FLR_ECONFIG);
    assert_non_null(strstr(why, "resnet"));
    assert_non_null(strstr(why, "softmax"));
    assert_non_null(strstr(why, "mlp"));
    assert_non_null(strstr(why, "ctr"));
}

static void unknown_model_reason_is_truncated_to_the_buffer(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    char why[64];
    (void)state;

    memset(why, 'X', sizeof(why));
    cfg_set(&c, "resnet");
    assert_int_equal(coord_build_spec(&c, &s, why, 20), FLR_ECONFIG);
    assert_int_equal(strlen(why), 19);
    for (size_t i = 20; i < sizeof(why); i++)
        assert_int_equal(why[i], 'X');
}

static void fewer_shards_than_servers_fails_validation(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    char why[512] = "";
    (void)state;

    cfg_set(&c, "softmax");
    c.servers = 4;
    c.shards = 2;
    assert_int_equal(coord_build_spec(&c, &s, why, sizeof(why)), FLR_ECONFIG);
    assert_non_null(strstr(why, "num_shards"));
}

static void zero_workers_or_servers_fail_validation(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    char why[512] = "";
    (void)state;

    cfg_set(&c, "softmax");
    c.workers = 0;
    assert_int_equal(coord_build_spec(&c, &s, why, sizeof(why)), FLR_ECONFIG);
    assert_non_null(strstr(why, "num_workers"));

    cfg_set(&c, "softmax");
    c.servers = 0;
    c.shards = 4;
    why[0] = '\0';
    assert_int_equal(coord_build_spec(&c, &s, why, sizeof(why)), FLR_ECONFIG);
    assert_non_null(strstr(why, "num_servers"));
}

static void bad_job_name_or_recovery_fails_validation(void **state)
{
    struct coord_cfg c;
    struct flr_job_spec s;
    char why[512] = "";
    (void)state;

    cfg_set(&c, "softmax");
    snprintf(c.job, sizeof(c.job), "a/b");
    assert_int_equal(coord_build_spec(&c, &s, why, sizeof(why)), FLR_ECONFIG);
    assert_non_null(strstr(why, "job"));

    cfg_set(&c, "softmax");
    snprintf(c.recovery, sizeof(c.recovery), "magic");
    why[0] = '\0';
    assert_int_equal(coord_build_spec(&c, &s, why, sizeof(why)), FLR_ECONFIG);
    assert_non_null(strstr(why, "recovery"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(softmax_is_one_dense_table_of_785_by_10),
        cmocka_unit_test(mlp_tables_take_hidden_units_from_cfg),
        cmocka_unit_test(mlp_with_too_many_hidden_units_fails_with_reason),
        cmocka_unit_test(ctr_is_one_sparse_table_of_dim_1),
        cmocka_unit_test(optimizer_and_lr_overrides_apply_to_every_table),
        cmocka_unit_test(optimizer_override_alone_keeps_a_learning_rate_per_table),
        cmocka_unit_test(default_shards_are_four_per_server),
        cmocka_unit_test(counts_and_names_are_copied),
        cmocka_unit_test(staleness_is_kept_for_ssp_only),
        cmocka_unit_test(built_spec_survives_a_json_round_trip),
        cmocka_unit_test(unknown_model_fails_with_the_known_models_listed),
        cmocka_unit_test(unknown_model_reason_is_truncated_to_the_buffer),
        cmocka_unit_test(fewer_shards_than_servers_fails_validation),
        cmocka_unit_test(zero_workers_or_servers_fail_validation),
        cmocka_unit_test(bad_job_name_or_recovery_fails_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
