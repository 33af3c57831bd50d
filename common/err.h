/*
 * err.h - the one list of flr error codes.
 *
 * Every function that can fail returns an int: 0 on success, or one of the codes below.
 * The list is an X-macro so that the enum, the names and the messages cannot drift.
 * Codes are also carried on the wire (the status field of replies), so never renumber
 * an existing entry; append new ones.
 */
#ifndef FLR_ERR_H
#define FLR_ERR_H

#include <stddef.h>

/* X(NAME, value, "message") */
#define FLR_ERRORS(X)                                                                              \
    X(OK, 0, "success")                                                                            \
    X(NOMEM, 1, "out of memory")                                                                   \
    X(INVAL, 2, "invalid argument")                                                                \
    X(BAD_REQUEST, 3, "malformed request")                                                         \
    X(TOO_BIG, 4, "message exceeds the maximum size")                                              \
    X(WRONG_EPOCH, 5, "stale shard epoch")                                                         \
    X(NOT_OWNER, 6, "server does not own the shard")                                               \
    X(UNKNOWN_TABLE, 7, "unknown table")                                                           \
    X(KEY_RANGE, 8, "key out of range")                                                            \
    X(VALUE_LEN, 9, "wrong value length")                                                          \
    X(NAN_GRAD, 10, "gradient is NaN or infinite")                                                 \
    X(WRONG_JOB, 11, "message belongs to another job")                                             \
    X(TIMEOUT, 12, "timed out")                                                                    \
    X(CLOSED, 13, "closed")                                                                        \
    X(IO, 14, "input/output error")                                                                \
    X(ZK, 15, "ZooKeeper error")                                                                   \
    X(ZK_EXPIRED, 16, "ZooKeeper session expired")                                                 \
    X(ZK_NONODE, 17, "ZooKeeper node does not exist")                                              \
    X(ZK_EXISTS, 18, "ZooKeeper node already exists")                                              \
    X(ZK_BADVERSION, 19, "ZooKeeper node changed since it was read")                               \
    X(TRANSPORT, 20, "transport error")                                                            \
    X(CONFIG, 21, "bad configuration")                                                             \
    X(FORMAT, 22, "bad file format")                                                               \
    X(UNSORTED, 23, "keys are not sorted and unique")                                              \
    X(RECOVERING, 24, "shard is recovering")                                                       \
    X(SHUTDOWN, 25, "shutting down")                                                               \
    X(NOT_FOUND, 26, "not found")                                                                  \
    X(INTERNAL, 27, "internal error")                                                              \
    X(WORKER_REMOVED, 28, "worker was removed from the job")                                       \
    X(LEASE_EXPIRED, 29, "server's ZooKeeper lease lapsed: not serving")

enum flr_err {
#define FLR_ERR_ENUM(name, value, msg) FLR_E##name = value,
    FLR_ERRORS(FLR_ERR_ENUM)
#undef FLR_ERR_ENUM
        FLR_E_COUNT_
};

/* Returns a static, human-readable message for an error code (never NULL). */
const char *flr_strerror(int err);

/* Returns the code's name without prefix ("WRONG_EPOCH"), or "UNKNOWN". */
const char *flr_errname(int err);

/* Formats a one-line reason into the caller's buffer; does nothing when why is NULL or
 * whylen is 0.  Every module that explains its errors uses this. */
void flr_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
