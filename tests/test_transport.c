/*
 * test_transport.c - REQ/REP with contexts: replies reach the right caller, many calls are
 * in flight on one connection, replies may be deferred and sent from another thread,
 * large messages pass, oversized ones are dropped, and timeouts fire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/transport.h"

/* The test server echoes each request with its first byte incremented, except requests
 * starting with 'H' (held until release_held) and 'D' (dropped). */
struct echo {
    pthread_mutex_t mu;
    struct flr_req *held[64];
    nng_msg *held_msg[64];
    int nheld;
    int seen;
};

static void echo_fn(void *arg, struct flr_req *req, nng_msg *msg)
{
    struct echo *e = arg;
    unsigned char *b = nng_msg_body(msg);

    pthread_mutex_lock(&e->mu);
    e->seen++;
    if (nng_msg_len(msg) > 0 && b[0] == 'H') {
        e->held[e->nheld] = req;
        e->held_msg[e->nheld++] = msg;
        pthread_mutex_unlock(&e->mu);
        return;
    }
    pthread_mutex_unlock(&e->mu);
    if (nng_msg_len(msg) > 0 && b[0] == 'D') {
        nng_msg_free(msg);
        flr_rep_reply(req, NULL);
        return;
    }
    if (nng_msg_len(msg) > 0)
        b[0]++;
    flr_rep_reply(req, msg);
}

static void release_held(struct echo *e)
{
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->nheld; i++)
        flr_rep_reply(e->held[i], e->held_msg[i]);
    e->nheld = 0;
    pthread_mutex_unlock(&e->mu);
}

struct fixture {
    struct echo e;
    struct flr_rep *rep;
    struct flr_conn *conn;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char why[256];
    pthread_mutex_init(&f->e.mu, NULL);
    assert_int_equal(
        flr_rep_open(&f->rep, "tcp://127.0.0.1:0", 32, 1 << 20, echo_fn, &f->e, why, sizeof(why)),
        0);
    assert_int_equal(flr_conn_open(&f->conn, flr_rep_url(f->rep), 8 << 20, why, sizeof(why)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    flr_conn_close(f->conn);
    flr_rep_close(f->rep);
    pthread_mutex_destroy(&f->e.mu);
    free(f);
    return 0;
}

static nng_msg *mkmsg(const char *s, size_t len)
{
    nng_msg *m;
    assert_int_equal(nng_msg_alloc(&m, len), 0);
    memcpy(nng_msg_body(m), s, len < strlen(s) ? len : strlen(s));
    return m;
}

static void bound_url_has_real_port(void **state)
{
    struct fixture *f = *state;
    const char *url = flr_rep_url(f->rep);
    assert_non_null(strstr(url, "tcp://127.0.0.1:"));
    assert_true(atoi(strrchr(url, ':') + 1) > 0);
}

static void sync_call_gets_its_reply(void **state)
{
    struct fixture *f = *state;
    nng_msg *reply;
    assert_int_equal(flr_call_sync(f->conn, mkmsg("abc", 3), 5000, &reply), 0);
    assert_int_equal(nng_msg_len(reply), 3);
    assert_memory_equal(nng_msg_body(reply), "bbc", 3);
    nng_msg_free(reply);
}

static void many_calls_in_flight_get_their_own_replies(void **state)
{
    struct fixture *f = *state;
    enum { N = 200 };
    struct flr_call *calls = calloc(N, sizeof(*calls));
    struct flr_waitgroup *wg;
    assert_int_equal(flr_waitgroup_alloc(&wg), 0);
    for (int i = 0; i < N; i++) {
        char buf[16];
        snprintf(buf, sizeof(buf), "a%05d", i);
        assert_int_equal(flr_call_init(&calls[i]), 0);
        flr_call_start(&calls[i], f->conn, mkmsg(buf, 6), 5000, wg);
    }
    flr_waitgroup_wait(wg);
    for (int i = 0; i < N; i++) {
        char want[16];
        snprintf(want, sizeof(want), "b%05d", i);
        assert_int_equal(calls[i].rv, 0);
        assert_memory_equal(nng_msg_body(calls[i].reply), want, 6);
        flr_call_fini(&calls[i]);
    }
    flr_waitgroup_free(wg);
    free(calls);
}

/* Waits (up to a second) until the echo holds a request, then answers what it holds. */
static void release_when_held(struct echo *e)
{
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&e->mu);
        int n = e->nheld;
        pthread_mutex_unlock(&e->mu);
        if (n)
            break;
        usleep(10000);
    }
    release_held(e);
}

static void deferred_replies_arrive_after_release(void **state)
{
    struct fixture *f = *state;
    struct flr_call held, quick;
    struct flr_waitgroup *wg1, *wg2;
    assert_int_equal(flr_waitgroup_alloc(&wg1), 0);
    assert_int_equal(flr_waitgroup_alloc(&wg2), 0);
    assert_int_equal(flr_call_init(&held), 0);
    assert_int_equal(flr_call_init(&quick), 0);
    flr_call_start(&held, f->conn, mkmsg("Hold", 4), 5000, wg1);
    /* A held request does not block others on the same connection. */
    flr_call_start(&quick, f->conn, mkmsg("quick", 5), 5000, wg2);
    flr_waitgroup_wait(wg2);
    assert_int_equal(quick.rv, 0);
    assert_int_equal(held.phase != 0, 1);
    release_when_held(&f->e);
    flr_waitgroup_wait(wg1);
    assert_int_equal(held.rv, 0);
    assert_memory_equal(nng_msg_body(held.reply), "Hold", 4);
    flr_call_fini(&held);
    flr_call_fini(&quick);
    flr_waitgroup_free(wg1);
    flr_waitgroup_free(wg2);
}

/* wait_any returns as each call finishes, while another is still held. */
static void wait_any_returns_per_finished_call(void **state)
{
    struct fixture *f = *state;
    struct flr_call held, quick;
    struct flr_waitgroup *wg;
    uint64_t seen = 0;

    assert_int_equal(flr_waitgroup_alloc(&wg), 0);
    assert_int_equal(flr_waitgroup_wait_any(wg, &seen, 10), FLR_ETIMEOUT); /* none out */
    assert_int_equal(flr_call_init(&held), 0);
    assert_int_equal(flr_call_init(&quick), 0);
    flr_call_start(&held, f->conn, mkmsg("Hold", 4), 5000, wg);
    flr_call_start(&quick, f->conn, mkmsg("quick", 5), 5000, wg);
    assert_int_equal(flr_waitgroup_wait_any(wg, &seen, 5000), 0);
    assert_int_equal(seen, 1);
    assert_int_equal(quick.rv, 0);
    assert_non_null(quick.reply);
    assert_int_equal(flr_waitgroup_wait_any(wg, &seen, 50), FLR_ETIMEOUT); /* held */
    release_when_held(&f->e);
    assert_int_equal(flr_waitgroup_wait_any(wg, &seen, 5000), 0);
    assert_int_equal(seen, 2);
    assert_int_equal(held.rv, 0);
    flr_call_fini(&held);
    flr_call_fini(&quick);
    flr_waitgroup_free(wg);
}

static void dropped_request_times_out(void **state)
{
    struct fixture *f = *state;
    nng_msg *reply = NULL;
    assert_int_equal(flr_call_sync(f->conn, mkmsg("Drop", 4), 200, &reply), FLR_ETIMEOUT);
    assert_null(reply);
}

static void large_message_passes_and_oversized_is_dropped(void **state)
{
    struct fixture *f = *state;
    nng_msg *reply = NULL, *big;
    /* The server accepts up to 1 MiB. */
    assert_int_equal(nng_msg_alloc(&big, (1 << 20) - 64), 0);
    memset(nng_msg_body(big), 'x', nng_msg_len(big));
    assert_int_equal(flr_call_sync(f->conn, big, 5000, &reply), 0);
    assert_int_equal(nng_msg_len(reply), (1 << 20) - 64);
    assert_int_equal(((unsigned char *)nng_msg_body(reply))[0], 'y');
    nng_msg_free(reply);
    reply = NULL;
    assert_int_equal(nng_msg_alloc(&big, 2 << 20), 0);
    memset(nng_msg_body(big), 'x', nng_msg_len(big));
    assert_int_not_equal(flr_call_sync(f->conn, big, 500, &reply), 0);
    assert_null(reply);
    /* The connection still works afterwards. */
    assert_int_equal(flr_call_sync(f->conn, mkmsg("ok", 2), 5000, &reply), 0);
    nng_msg_free(reply);
}

static void call_to_nobody_times_out(void **state)
{
    struct flr_conn *c;
    nng_msg *reply = NULL;
    char why[256];
    (void)state;
    assert_int_equal(flr_conn_open(&c, "tcp://127.0.0.1:1", 1 << 20, why, sizeof(why)), 0);
    assert_int_equal(flr_call_sync(c, mkmsg("x", 1), 200, &reply), FLR_ETIMEOUT);
    flr_conn_close(c);
}

static void listen_on_bad_url_fails_with_reason(void **state)
{
    struct flr_rep *r;
    char why[256] = "";
    (void)state;
    assert_int_equal(flr_rep_open(&r, "bogus://x", 4, 1024, echo_fn, NULL, why, sizeof(why)),
                     FLR_ETRANSPORT);
    assert_non_null(strstr(why, "bogus://x"));
}

static void close_with_held_requests_is_clean(void **state)
{
    struct echo e = {0};
    struct flr_rep *r;
    struct flr_conn *c;
    struct flr_call call;
    struct flr_waitgroup *wg;
    char why[256];
    (void)state;
    pthread_mutex_init(&e.mu, NULL);
    assert_int_equal(
        flr_rep_open(&r, "tcp://127.0.0.1:0", 4, 1 << 20, echo_fn, &e, why, sizeof(why)), 0);
    assert_int_equal(flr_conn_open(&c, flr_rep_url(r), 1 << 20, why, sizeof(why)), 0);
    assert_int_equal(flr_waitgroup_alloc(&wg), 0);
    assert_int_equal(flr_call_init(&call), 0);
    flr_call_start(&call, c, mkmsg("Hold", 4), 300, wg);
    for (int i = 0; i < 100 && !e.nheld; i++)
        usleep(10000);
    assert_int_equal(e.nheld, 1);
    /* The holder drops what it holds, then the transport closes. */
    nng_msg_free(e.held_msg[0]);
    flr_rep_reply(e.held[0], NULL);
    flr_rep_close(r);
    flr_waitgroup_wait(wg);
    assert_int_not_equal(call.rv, 0);
    flr_call_fini(&call);
    flr_waitgroup_free(wg);
    flr_conn_close(c);
    pthread_mutex_destroy(&e.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bound_url_has_real_port, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_call_gets_its_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(many_calls_in_flight_get_their_own_replies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(deferred_replies_arrive_after_release, setup, teardown),
        cmocka_unit_test_setup_teardown(wait_any_returns_per_finished_call, setup, teardown),
        cmocka_unit_test_setup_teardown(dropped_request_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(large_message_passes_and_oversized_is_dropped, setup,
                                        teardown),
        cmocka_unit_test(call_to_nobody_times_out),
        cmocka_unit_test(listen_on_bad_url_fails_with_reason),
        cmocka_unit_test(close_with_held_requests_is_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
