/*
 * test_optim.c - each optimizer against values computed by hand for a few steps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/spec.h"
#include "server/optim.h"

#define TOL      1e-6
#define ADAM_TOL 1e-5

static struct flr_table_spec spec_for(enum flr_optim_kind kind)
{
    struct flr_table_spec t;

    memset(&t, 0, sizeof(t));
    t.kind = FLR_TABLE_DENSE;
    t.rows = 1;
    t.dim = 1;
    t.optim = kind;
    t.lr = 0.1f;
    t.momentum = 0.9f;
    t.beta1 = 0.9f;
    t.beta2 = 0.999f;
    t.eps = 0.01f;
    return t;
}

static void ops_tables_match_spec(void **state)
{
    static const struct {
        enum flr_optim_kind kind;
        const char *name;
    } all[] = {
        {FLR_OPT_SGD, "sgd"},
        {FLR_OPT_MOMENTUM, "momentum"},
        {FLR_OPT_ADAGRAD, "adagrad"},
        {FLR_OPT_ADAM, "adam"},
    };

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const struct flr_optim_ops *ops = flr_optim_ops(all[i].kind);
        assert_non_null(ops);
        assert_non_null(ops->apply);
        assert_string_equal(ops->name, all[i].name);
        assert_string_equal(ops->name, flr_optim_name(all[i].kind));
        assert_int_equal(ops->nslots, flr_optim_nslots(all[i].kind));
    }
    assert_int_equal(flr_optim_ops(FLR_OPT_SGD)->nslots, 0);
    assert_int_equal(flr_optim_ops(FLR_OPT_MOMENTUM)->nslots, 1);
    assert_int_equal(flr_optim_ops(FLR_OPT_ADAGRAD)->nslots, 1);
    assert_int_equal(flr_optim_ops(FLR_OPT_ADAM)->nslots, 2);
    assert_null(flr_optim_ops((enum flr_optim_kind)4));
    assert_null(flr_optim_ops((enum flr_optim_kind) - 1));
}

static void sgd_steps_by_lr_times_gradient(void **state)
{
    struct flr_table_spec t = spec_for(FLR_OPT_SGD);
    const struct flr_optim_ops *ops = flr_optim_ops(FLR_OPT_SGD);
    float w[2] = {1.0f, -2.0f};
    const float g1[2] = {0.5f, 1.0f}, g2[2] = {-1.0f, 0.25f};
    uint32_t steps = 0;

    t.dim = 2;
    /* w = [1, -2] - 0.1 * [0.5, 1] = [0.95, -2.1] */
    ops->apply(&t, w, &steps, g1, 2);
    assert_float_equal(w[0], 0.95, TOL);
    assert_float_equal(w[1], -2.1, TOL);
    /* w = [0.95, -2.1] - 0.1 * [-1, 0.25] = [1.05, -2.125] */
    ops->apply(&t, w, &steps, g2, 2);
    assert_float_equal(w[0], 1.05, TOL);
    assert_float_equal(w[1], -2.125, TOL);
    /* Only Adam counts steps. */
    assert_int_equal(steps, 0);
}

static void momentum_accumulates_velocity(void **state)
{
    struct flr_table_spec t = spec_for(FLR_OPT_MOMENTUM);
    const struct flr_optim_ops *ops = flr_optim_ops(FLR_OPT_MOMENTUM);
    float row[2] = {1.0f, 0.0f}; /* [ w | u ] */
    uint32_t steps = 0;
    float g;

    /* u = 0.9 * 0 + 1 = 1;       w = 1 - 0.1 * 1 = 0.9 */
    g = 1.0f;
    ops->apply(&t, row, &steps, &g, 1);
    assert_float_equal(row[1], 1.0, TOL);
    assert_float_equal(row[0], 0.9, TOL);
    /* u = 0.9 * 1 + 2 = 2.9;     w = 0.9 - 0.1 * 2.9 = 0.61 */
    g = 2.0f;
    ops->apply(&t, row, &steps, &g, 1);
    assert_float_equal(row[1], 2.9, TOL);
    assert_float_equal(row[0], 0.61, TOL);
    /* u = 0.9 * 2.9 - 1 = 1.61;  w = 0.61 - 0.1 * 1.61 = 0.449 */
    g = -1.0f;
    ops->apply(&t, row, &steps, &g, 1);
    assert_float_equal(row[1], 1.61, TOL);
    assert_float_equal(row[0], 0.449, TOL);
    assert_int_equal(steps, 0);
}

static void adagrad_scales_by_root_of_squared_sum(void **state)
{
    struct flr_table_spec t = spec_for(FLR_OPT_ADAGRAD);
    const struct flr_optim_ops *ops = flr_optim_ops(FLR_OPT_ADAGRAD);
    float row[2] = {1.0f, 0.0f}; /* [ w | h ] */
    uint32_t steps = 0;
    float g;

    t.eps = 0.1f; /* large, so that its place in the formula shows */
    /* h = 0 + 3*3 = 9;   w = 1 - 0.1 * 3 / (sqrt(9) + 0.1) = 1 - 0.3 / 3.1 = 0.9032258 */
    g = 3.0f;
    ops->apply(&t, row, &steps, &g, 1);
    assert_float_equal(row[1], 9.0, TOL);
    assert_float_equal(row[0], 0.9032258, TOL);
    /* h = 9 + 4*4 = 25;  w = 0.9032258 - 0.1 * 4 / (5 + 0.1) = 0.9032258 - 0.0784314
     *                      = 0.8247944 */
    g = 4.0f;
    ops->apply(&t, row, &steps, &g, 1);
    assert_float_equal(row[1], 25.0, TOL);
    assert_float_equal(row[0], 0.8247944, TOL);
    assert_int_equal(steps, 0);
}

static void adam_corrects_bias_with_row_steps(void **state)
{
    struct flr_table_spec t = spec_for(FLR_OPT_ADAM);
    const struct flr_optim_ops *ops = flr_optim_ops(FLR_OPT_ADAM);
    float row[3] = {1.0f, 0.0f, 0.0f}; /* [ w | m | v ] */
    uint32_t steps = 0;
    float g;

    /* lr 0.1, b1 0.9, b2 0.999, eps 0.01.
     * n = 1, g = 2:  m = 0.1 * 2 = 0.2;  v = 0.001 * 4 = 0.004
     *   mhat = 0.2 / (1 - 0.9) = 2;  vhat = 0.004 / (1 - 0.999) = 4
     *   w = 1 - 0.1 * 2 / (2 + 0.01) = 1 - 0.0995025 = 0.9004975 */
    g = 2.0f;
    ops->apply(&t, row, &steps, &g, 1);
    assert_int_equal(steps, 1);
    assert_float_equal(row[1], 0.2, TOL);
    assert_float_equal(row[2], 0.004, TOL);
    assert_float_equal(row[0], 0.9004975, ADAM_TOL);
    /* n = 2, g = -1: m = 0.9 * 0.2 - 0.1 = 0.08;  v = 0.999 * 0.004 + 0.001 = 0.004996
     *   mhat = 0.08 / (1 - 0.81) = 0.4210526;  vhat = 0.004996 / 0.001999 = 2.4992496
     *   w = 0.9004975 - 0.1 * 0.4210526 / (1.5808952 + 0.01) = 0.9004975 - 0.0264664
     *     = 0.8740312 */
    g = -1.0f;
    ops->apply(&t, row, &steps, &g, 1);
    assert_int_equal(steps, 2);
    assert_float_equal(row[1], 0.08, TOL);
    assert_float_equal(row[2], 0.004996, TOL);
    assert_float_equal(row[0], 0.8740312, ADAM_TOL);
    /* n = 3, g = 0.5: m = 0.072 + 0.05 = 0.122;  v = 0.004991004 + 0.00025 = 0.005241004
     *   mhat = 0.122 / (1 - 0.729) = 0.4501845;  vhat = 0.005241004 / 0.002997001
     *        = 1.7487495
     *   w = 0.8740312 - 0.1 * 0.4501845 / (1.3224029 + 0.01) = 0.8740312 - 0.0337874
     *     = 0.8402438 */
    g = 0.5f;
    ops->apply(&t, row, &steps, &g, 1);
    assert_int_equal(steps, 3);
    assert_float_equal(row[1], 0.122, TOL);
    assert_float_equal(row[2], 0.005241004, TOL);
    assert_float_equal(row[0], 0.8402438, ADAM_TOL);
}

static void adam_is_lazy_for_rows_not_updated(void **state)
{
    struct flr_table_spec t = spec_for(FLR_OPT_ADAM);
    const struct flr_optim_ops *ops = flr_optim_ops(FLR_OPT_ADAM);
    float a[3] = {1.0f, 0.0f, 0.0f}, b[3] = {1.0f, 0.0f, 0.0f};
    uint32_t steps_a = 0, steps_b = 0;
    float g = 2.0f;

    /* Row a is updated three times; row b sits out the first two. */
    ops->apply(&t, a, &steps_a, &g, 1);
    ops->apply(&t, a, &steps_a, &g, 1);
    assert_int_equal(steps_b, 0);
    assert_float_equal(b[0], 1.0, 0.0);
    assert_float_equal(b[1], 0.0, 0.0);
    assert_float_equal(b[2], 0.0, 0.0);
    g = 0.5f;
    ops->apply(&t, a, &steps_a, &g, 1);
    ops->apply(&t, b, &steps_b, &g, 1);
    assert_int_equal(steps_a, 3);
    assert_int_equal(steps_b, 1);
    /* Row b's first update is corrected as step 1, not step 3:
     *   m = 0.05, v = 0.00025; mhat = 0.5, vhat = 0.25
     *   w = 1 - 0.1 * 0.5 / (0.5 + 0.01) = 1 - 0.0980392 = 0.9019608 */
    assert_float_equal(b[1], 0.05, TOL);
    assert_float_equal(b[2], 0.00025, TOL);
    assert_float_equal(b[0], 0.9019608, ADAM_TOL);
}

static void adam_step_count_saturates(void **state)
{
    struct flr_table_spec t = spec_for(FLR_OPT_ADAM);
    const struct flr_optim_ops *ops = flr_optim_ops(FLR_OPT_ADAM);
    float row[3] = {1.0f, 0.0f, 0.0f};
    uint32_t steps = UINT32_MAX;
    float g = 1.0f;

    ops->apply(&t, row, &steps, &g, 1);
    assert_int_equal(steps, UINT32_MAX);
    /* Bias corrections are 1 at that depth: w = 1 - 0.1 * 0.1 / (sqrt(0.001) + 0.01). */
    assert_float_equal(row[0], (1.0 - 0.01 / (0.0316228 + 0.01)), ADAM_TOL);
}

/* A wide row must give every column what a one-column row gives it (the vectorised loop
 * and its remainder agree). */
static void columns_are_independent(void **state)
{
    enum { DIM = 37, STEPS = 3 };
    static const enum flr_optim_kind kinds[] = {FLR_OPT_SGD, FLR_OPT_MOMENTUM, FLR_OPT_ADAGRAD,
                                                FLR_OPT_ADAM};

    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct flr_table_spec t = spec_for(kinds[k]);
        const struct flr_optim_ops *ops = flr_optim_ops(kinds[k]);
        float wide[3 * DIM], narrow[3], g[DIM];
        uint32_t steps_wide = 0;

        t.dim = DIM;
        for (uint32_t j = 0; j < DIM; j++) {
            wide[j] = 0.5f - 0.03f * (float)j;
            wide[DIM + j] = 0.0f;
            wide[2 * DIM + j] = 0.0f;
        }
        for (int s = 0; s < STEPS; s++) {
            for (uint32_t j = 0; j < DIM; j++)
                g[j] = (float)((int)(j * 7 + (uint32_t)s * 3) % 11) * 0.1f - 0.5f;
            ops->apply(&t, wide, &steps_wide, g, DIM);
        }
        for (uint32_t j = 0; j < DIM; j++) {
            uint32_t steps = 0;
            narrow[0] = 0.5f - 0.03f * (float)j;
            narrow[1] = narrow[2] = 0.0f;
            t.dim = 1;
            for (int s = 0; s < STEPS; s++) {
                float gj = (float)((int)(j * 7 + (uint32_t)s * 3) % 11) * 0.1f - 0.5f;
                ops->apply(&t, narrow, &steps, &gj, 1);
            }
            assert_float_equal(wide[j], narrow[0], TOL);
            for (uint32_t s = 0; s < ops->nslots; s++)
                assert_float_equal(wide[(s + 1) * DIM + j], narrow[s + 1], TOL);
        }
    }
}

/* The vector loop must give each column exactly what the scalar loop gives it: a one-column
 * row runs the scalar loop only, so wide and one-column rows agree bit for bit, for widths
 * around every multiple of the vector length. */
static void vector_loop_matches_scalar_bit_for_bit(void **state)
{
    enum { MAXDIM = 1029, STEPS = 4 };
    static const enum flr_optim_kind kinds[] = {FLR_OPT_SGD, FLR_OPT_MOMENTUM, FLR_OPT_ADAGRAD,
                                                FLR_OPT_ADAM};
    static const uint32_t dims[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 1029};
    static float wide[3 * MAXDIM], g[STEPS][MAXDIM];

    for (uint32_t s = 0; s < STEPS; s++)
        for (uint32_t j = 0; j < MAXDIM; j++)
            g[s][j] = (float)((int)((j * 7919 + s * 104729) % 2001) - 1000) / 97.0f;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        const struct flr_optim_ops *ops = flr_optim_ops(kinds[k]);
        for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
            const uint32_t dim = dims[d];
            struct flr_table_spec t = spec_for(kinds[k]);
            uint32_t steps_wide = 0;

            t.dim = dim;
            for (uint32_t j = 0; j < 3 * dim; j++)
                wide[j] = j < dim ? 0.5f - 0.001f * (float)j : 0.0f;
            for (uint32_t s = 0; s < STEPS; s++)
                ops->apply(&t, wide, &steps_wide, g[s], dim);
            for (uint32_t j = 0; j < dim; j++) {
                float narrow[3] = {0.5f - 0.001f * (float)j, 0.0f, 0.0f};
                uint32_t steps = 0;

                t.dim = 1;
                for (uint32_t s = 0; s < STEPS; s++)
                    ops->apply(&t, narrow, &steps, &g[s][j], 1);
                assert_memory_equal(&wide[j], &narrow[0], sizeof(float));
                for (uint32_t sl = 0; sl < ops->nslots; sl++)
                    assert_memory_equal(&wide[(sl + 1) * dim + j], &narrow[sl + 1], sizeof(float));
                assert_int_equal(steps, steps_wide);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ops_tables_match_spec),
        cmocka_unit_test(sgd_steps_by_lr_times_gradient),
        cmocka_unit_test(momentum_accumulates_velocity),
        cmocka_unit_test(adagrad_scales_by_root_of_squared_sum),
        cmocka_unit_test(adam_corrects_bias_with_row_steps),
        cmocka_unit_test(adam_is_lazy_for_rows_not_updated),
        cmocka_unit_test(adam_step_count_saturates),
        cmocka_unit_test(columns_are_independent),
        cmocka_unit_test(vector_loop_matches_scalar_bit_for_bit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
