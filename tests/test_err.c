/* test_err.c - the error list and log level names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/log.h"

static const int all_codes[] = {
#define TEST_ERR_CODE(name, value, msg) value,
    FLR_ERRORS(TEST_ERR_CODE)
#undef TEST_ERR_CODE
};

static const char *const all_names[] = {
#define TEST_ERR_NAME(name, value, msg) #name,
    FLR_ERRORS(TEST_ERR_NAME)
#undef TEST_ERR_NAME
};

#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

static void test_codes_are_dense_from_zero(void **state)
{
    /* Codes travel on the wire: the list is 0..N-1 in order, with nothing skipped. */
    for (size_t i = 0; i < NCODES; i++)
        assert_int_equal(all_codes[i], (int)i);
    assert_int_equal(FLR_E_COUNT_, NCODES);
    assert_int_equal(FLR_EOK, 0);
}

static void test_every_code_has_a_distinct_name_and_message(void **state)
{
    for (size_t i = 0; i < NCODES; i++) {
        const char *name = flr_errname(all_codes[i]);
        const char *msg = flr_strerror(all_codes[i]);

        assert_non_null(name);
        assert_non_null(msg);
        assert_string_equal(name, all_names[i]);
        assert_true(strlen(msg) > 0);
        assert_string_not_equal(msg, "unknown error");
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(name, flr_errname(all_codes[j]));
            assert_string_not_equal(msg, flr_strerror(all_codes[j]));
        }
    }
    assert_string_equal(flr_errname(FLR_EWRONG_EPOCH), "WRONG_EPOCH");
    assert_string_equal(flr_strerror(FLR_EOK), "success");
    assert_string_equal(flr_strerror(FLR_ENOMEM), "out of memory");
}

static void test_out_of_range_codes(void **state)
{
    static const int bad[] = {-1,      -1000,     FLR_E_COUNT_, FLR_E_COUNT_ + 1,
                              1 << 30, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_string_equal(flr_strerror(bad[i]), "unknown error");
        assert_string_equal(flr_errname(bad[i]), "UNKNOWN");
    }
}

static void test_log_level_parse(void **state)
{
    assert_int_equal(flr_log_level_parse("error"), LOG_ERR);
    assert_int_equal(flr_log_level_parse("warning"), LOG_WARNING);
    assert_int_equal(flr_log_level_parse("warn"), LOG_WARNING);
    assert_int_equal(flr_log_level_parse("notice"), LOG_NOTICE);
    assert_int_equal(flr_log_level_parse("info"), LOG_INFO);
    assert_int_equal(flr_log_level_parse("debug"), LOG_DEBUG);
    assert_int_equal(flr_log_level_parse("DEBUG"), LOG_DEBUG);
    assert_int_equal(flr_log_level_parse("Info"), LOG_INFO);
    assert_int_equal(flr_log_level_parse(""), -1);
    assert_int_equal(flr_log_level_parse("verbose"), -1);
    assert_int_equal(flr_log_level_parse("debug2"), -1);
    assert_int_equal(flr_log_level_parse("err"), -1);
}

static void test_log_init_sets_level(void **state)
{
    int saved = flr_log_level_;

    flr_log_init("flr-test", LOG_DEBUG);
    assert_int_equal(flr_log_level_, LOG_DEBUG);
    /* An out-of-range level is ignored. */
    flr_log_init(NULL, 42);
    assert_int_equal(flr_log_level_, LOG_DEBUG);
    flr_log_init(NULL, LOG_ERR);
    assert_int_equal(flr_log_level_, LOG_ERR);
    flr_log_init(NULL, saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_are_dense_from_zero),
        cmocka_unit_test(test_every_code_has_a_distinct_name_and_message),
        cmocka_unit_test(test_out_of_range_codes),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_init_sets_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
