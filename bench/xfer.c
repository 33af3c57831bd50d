/*
 * xfer.c - the baseline for bench/recovery.sh: how long moving N bytes over loopback takes
 * with the transport flr uses (nng REQ/REP over tcp://127.0.0.1, 4 MiB messages, a few in
 * flight), from a sender's memory into a receiver's memory.
 *
 *   bench/xfer [--fresh [--huge]] [--stream [--staged]] BYTES [REPEATS]
 *
 * Prints "bytes seconds MB_per_s" for the best of REPEATS runs (default 3).  The receiver's
 * memory is allocated and touched once, before the first run, unless --fresh: then each run
 * receives into memory allocated for it and not touched before, as a rebuilding server's
 * new shard is, and the time includes the kernel faulting it in.
 *
 * --huge (with --fresh) advises that memory for huge pages, as a rebuilding server does
 * with a new shard (flr_advise_huge).
 *
 * --stream moves the bytes over an nng byte stream (tcp) instead: sent straight from the
 * sender's memory and received straight into the receiver's, with no message to copy into
 * or out of.  It shows what a transport without those two copies would gain.  --staged
 * puts the copies back without the messages: each piece passes through a buffer reused on
 * either side (the sender copies into it, the receiver out of it), as it would where the
 * ends gather rows into a buffer and scatter them out of one.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>

#include <time.h>

#include "common/util.h"

#define XFER_MSG    ((size_t)4 << 20)
#define XFER_FLIGHT 4

struct sink {
    nng_socket sock;
    nng_ctx ctx[XFER_FLIGHT];
    nng_aio *aio[XFER_FLIGHT];
    int sending[XFER_FLIGHT];
    char *dst; /* where received bytes are copied: the receiver's memory */
    size_t dst_len;
};

static struct sink sink;

/* Receiver: copy each request's bytes into place, answer with an empty message. */
static void sink_cb(void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;
    nng_aio *aio = sink.aio[i];
    nng_msg *m;
    uint64_t at;

    if (nng_aio_result(aio) != 0) {
        if (sink.sending[i])
            nng_msg_free(nng_aio_get_msg(aio));
        return; /* closed */
    }
    if (sink.sending[i]) {
        sink.sending[i] = 0;
        nng_ctx_recv(sink.ctx[i], aio);
        return;
    }
    m = nng_aio_get_msg(aio);
    memcpy(&at, nng_msg_body(m), sizeof(at));
    if (nng_msg_len(m) >= 8 && at + nng_msg_len(m) - 8 <= sink.dst_len)
        memcpy(sink.dst + at, (char *)nng_msg_body(m) + 8, nng_msg_len(m) - 8);
    nng_msg_clear(m);
    nng_aio_set_msg(aio, m);
    sink.sending[i] = 1;
    nng_ctx_send(sink.ctx[i], aio);
}

/* ---- --stream: an nng byte stream, no messages ---------------------------------------- */

#define XFER_PIECE ((size_t)16 << 20) /* bytes asked of one send or receive */

struct stream_io {
    nng_stream *s;
    char *p;
    size_t n;
    int send;
    char *stage; /* --staged: a piece's bytes pass through here, else NULL */
    int rv;
};

/* Moves len bytes at p whole (a call may move fewer). */
static int stream_io_piece(nng_stream *s, nng_aio *aio, int send, char *p, size_t len)
{
    size_t done = 0;
    int rv;

    while (done < len) {
        nng_iov iov = {.iov_buf = p + done, .iov_len = len - done};
        if ((rv = nng_aio_set_iov(aio, 1, &iov)) != 0)
            return rv;
        if (send)
            nng_stream_send(s, aio);
        else
            nng_stream_recv(s, aio);
        nng_aio_wait(aio);
        if ((rv = nng_aio_result(aio)) != 0)
            return rv;
        done += nng_aio_count(aio);
    }
    return 0;
}

/* Sends or receives all n bytes at p, a piece at a time, through io->stage if set. */
static void *stream_io_all(void *arg)
{
    struct stream_io *io = arg;
    nng_aio *aio;

    if ((io->rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
        return NULL;
    for (size_t done = 0; done < io->n && io->rv == 0;) {
        size_t len = io->n - done < XFER_PIECE ? io->n - done : XFER_PIECE;
        char *at = io->stage ? io->stage : io->p + done;

        if (io->stage && io->send)
            memcpy(io->stage, io->p + done, len);
        io->rv = stream_io_piece(io->s, aio, io->send, at, len);
        if (io->rv == 0 && io->stage && !io->send)
            memcpy(io->p + done, io->stage, len);
        done += len;
    }
    nng_aio_free(aio);
    return NULL;
}

/* Connects a stream to itself over loopback: *tx the dialer's end, *rx the listener's. */
static int stream_pair(nng_stream **tx, nng_stream **rx)
{
    nng_stream_listener *l;
    nng_stream_dialer *d;
    nng_aio *acc = NULL, *dial = NULL;
    char url[64];
    int port, rv;

    if ((rv = nng_stream_listener_alloc(&l, "tcp://127.0.0.1:0")) != 0 ||
        (rv = nng_stream_listener_listen(l)) != 0 ||
        (rv = nng_stream_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port)) != 0)
        return rv;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
    if ((rv = nng_stream_dialer_alloc(&d, url)) != 0 ||
        (rv = nng_aio_alloc(&acc, NULL, NULL)) != 0 || (rv = nng_aio_alloc(&dial, NULL, NULL)) != 0)
        return rv;
    nng_stream_listener_accept(l, acc);
    nng_stream_dialer_dial(d, dial);
    nng_aio_wait(dial);
    nng_aio_wait(acc);
    if ((rv = nng_aio_result(dial)) != 0 || (rv = nng_aio_result(acc)) != 0)
        return rv;
    *tx = nng_aio_get_output(dial, 0);
    *rx = nng_aio_get_output(acc, 0);
    nng_aio_free(acc);
    nng_aio_free(dial);
    return 0;
}

/* One run over the stream pair; returns 0 and the seconds it took, or an nng error.
 * stages: two XFER_PIECE buffers (sender's, receiver's) for --staged, else NULL. */
static int stream_run(nng_stream *tx, nng_stream *rx, char *src, size_t bytes, char *stages,
                      double *secs)
{
    struct stream_io out = {tx, src, bytes, 1, stages, 0},
                     in = {rx, sink.dst, bytes, 0, stages ? stages + XFER_PIECE : NULL, 0};
    struct timespec t0, t1;
    pthread_t th;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (pthread_create(&th, NULL, stream_io_all, &in) != 0)
        return NNG_ENOMEM;
    stream_io_all(&out);
    pthread_join(th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return out.rv ? out.rv : in.rv;
}

int main(int argc, char **argv)
{
    int fresh = 0, huge = 0, stream = 0, staged = 0, a = 1;
    for (; a < argc && strncmp(argv[a], "--", 2) == 0; a++) {
        if (strcmp(argv[a], "--fresh") == 0)
            fresh = 1;
        else if (strcmp(argv[a], "--huge") == 0)
            huge = 1;
        else if (strcmp(argv[a], "--stream") == 0)
            stream = 1;
        else if (strcmp(argv[a], "--staged") == 0)
            staged = 1;
        else
            break;
    }
    size_t bytes = argc > a ? strtoull(argv[a], NULL, 10) : 0;
    int repeats = argc > a + 1 ? atoi(argv[a + 1]) : 3;
    nng_stream *tx = NULL, *rx = NULL;
    nng_socket req;
    nng_listener l;
    nng_sockaddr sa;
    char url[128];
    char *src, *stages = NULL;
    double best = 0;
    int rv;

    if (bytes == 0 || repeats < 1 || (huge && !fresh) || (staged && !stream) ||
        (a < argc && strncmp(argv[a], "--", 2) == 0)) {
        fprintf(stderr, "usage: xfer [--fresh [--huge]] [--stream [--staged]] BYTES [REPEATS]\n");
        return 2;
    }
    if (staged && !(stages = malloc(2 * XFER_PIECE))) {
        fprintf(stderr, "xfer: out of memory\n");
        return 1;
    }
    if (stages)
        memset(stages, 0, 2 * XFER_PIECE); /* warm, as a buffer in use is */
    src = malloc(bytes);
    sink.dst = fresh ? NULL : malloc(bytes);
    sink.dst_len = bytes;
    if (!src || (!fresh && !sink.dst)) {
        fprintf(stderr, "xfer: out of memory\n");
        return 1;
    }
    memset(src, 0x5a, bytes);
    if (!fresh)
        memset(sink.dst, 0, bytes);
    if (stream && (rv = stream_pair(&tx, &rx)) != 0) {
        fprintf(stderr, "xfer: stream over loopback: %s\n", nng_strerror(rv));
        return 1;
    }
    if ((rv = nng_rep0_open(&sink.sock)) != 0 ||
        (rv = nng_socket_set_size(sink.sock, NNG_OPT_RECVMAXSZ, XFER_MSG + 64)) != 0 ||
        (rv = nng_listener_create(&l, sink.sock, "tcp://127.0.0.1:0")) != 0 ||
        (rv = nng_listener_start(l, 0)) != 0 ||
        (rv = nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa)) != 0) {
        fprintf(stderr, "xfer: listen: %s\n", nng_strerror(rv));
        return 1;
    }
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", (unsigned)ntohs(sa.s_in.sa_port));
    for (size_t i = 0; i < XFER_FLIGHT; i++) {
        nng_ctx_open(&sink.ctx[i], sink.sock);
        nng_aio_alloc(&sink.aio[i], sink_cb, (void *)(uintptr_t)i);
        nng_ctx_recv(sink.ctx[i], sink.aio[i]);
    }
    if ((rv = nng_req0_open(&req)) != 0 || (rv = nng_dial(req, url, NULL, 0)) != 0) {
        fprintf(stderr, "xfer: dial %s: %s\n", url, nng_strerror(rv));
        return 1;
    }
    for (int r = 0; r < repeats; r++) {
        nng_ctx ctx[XFER_FLIGHT];
        nng_aio *aio[XFER_FLIGHT];
        int state[XFER_FLIGHT] = {0}; /* 0 idle, 1 sending, 2 waiting for the answer */
        size_t next = 0;
        struct timespec t0, t1;
        double secs;

        if (fresh) {
            /* Pages never touched (mmap's, not a heap's that may be reused); the sink is
             * idle between runs. */
            if (sink.dst)
                munmap(sink.dst, bytes);
            sink.dst =
                mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (sink.dst == MAP_FAILED) {
                fprintf(stderr, "xfer: out of memory\n");
                return 1;
            }
            if (huge)
                flr_advise_huge(sink.dst, bytes);
        }
        if (stream) {
            if ((rv = stream_run(tx, rx, src, bytes, stages, &secs)) != 0) {
                fprintf(stderr, "xfer: stream: %s\n", nng_strerror(rv));
                return 1;
            }
            if (best == 0 || secs < best)
                best = secs;
            continue;
        }
        for (size_t i = 0; i < XFER_FLIGHT; i++) {
            nng_ctx_open(&ctx[i], req);
            nng_aio_alloc(&aio[i], NULL, NULL);
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            int active = 0;
            for (size_t i = 0; i < XFER_FLIGHT; i++) {
                if (state[i] != 0) {
                    nng_aio_wait(aio[i]);
                    if ((rv = nng_aio_result(aio[i])) != 0) {
                        fprintf(stderr, "xfer: %s\n", nng_strerror(rv));
                        return 1;
                    }
                    if (state[i] == 1) {
                        state[i] = 2;
                        nng_ctx_recv(ctx[i], aio[i]);
                        active = 1;
                        continue;
                    }
                    nng_msg_free(nng_aio_get_msg(aio[i]));
                    state[i] = 0;
                }
                if (next < bytes) {
                    size_t n = bytes - next < XFER_MSG ? bytes - next : XFER_MSG;
                    uint64_t at = next;
                    nng_msg *m;
                    if (nng_msg_alloc(&m, 0) != 0 || nng_msg_append(m, &at, sizeof(at)) != 0 ||
                        nng_msg_append(m, src + next, n) != 0) {
                        fprintf(stderr, "xfer: out of memory\n");
                        return 1;
                    }
                    nng_aio_set_msg(aio[i], m);
                    nng_ctx_send(ctx[i], aio[i]);
                    state[i] = 1;
                    next += n;
                    active = 1;
                }
            }
            if (!active)
                break;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (best == 0 || secs < best)
            best = secs;
        for (size_t i = 0; i < XFER_FLIGHT; i++) {
            nng_aio_free(aio[i]);
            nng_ctx_close(ctx[i]);
        }
    }
    if (memcmp(src, sink.dst, bytes) != 0) {
        fprintf(stderr, "xfer: the received bytes differ from the sent ones\n");
        return 1;
    }
    printf("%zu %.6f %.1f\n", bytes, best, (double)bytes / best / 1e6);
    free(stages);
    free(src);
    if (fresh)
        munmap(sink.dst, bytes);
    else
        free(sink.dst);
    return 0;
}
