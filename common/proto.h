/*
 * proto.h - the flr wire protocol: message types, their fields, the strict codec.
 *
 * Every message is one msgpack array:
 *
 *     [ "FLR1", type, job, sender, shard, shard_epoch, request_id, body... ]
 *
 * The body's fields depend on the type and are listed once, in FLR_MSG_TYPES below, as a
 * string of field codes.  The encoder and the decoder are both driven by that string, so a
 * new message type is one line here.  Field codes:
 *
 *     t  table      u32      table id
 *     c  clock      i64      worker clock (iterations finished); -1 = none
 *     s  status     i32      FLR_E* code; 0 on success
 *     r  reason     str      human-readable detail for an error, "" on success
 *     p  stamp      u64      shard stamp (sequence number of the last applied update)
 *     q  aux        u64      a second integer whose meaning depends on the type
 *     k  keys       bin      little-endian u64 keys, sorted and unique
 *     v  values     bin      little-endian float32, row-major, nkeys * width floats
 *     j  text       str      a JSON document (status replies, control messages)
 *     i  seq        u64      a push's sequence number; in PULL and CLOCK the sender's
 *                            incarnation base (see docs/recovery.md)
 *     x  extra      bin      little-endian u64 array (frontiers, frontier records)
 *
 * Keys and values travel as msgpack bin blobs so that encoding is a memcpy.  Decoding is
 * zero-copy: blob and string pointers in a decoded struct flr_msg point into the buffer
 * that was decoded and are valid only as long as it is.  Blob pointers are NOT aligned;
 * read them with flr_load_u64()/flr_load_f32() or memcpy.
 *
 * The decoder is strict: magic, type, array length, every field's msgpack type, integer
 * ranges, the key blob's length (a multiple of 8, at most max_keys keys), the value blob's
 * length (a whole number of float32 per key), and the message size against max_size.
 * Semantic checks that need the table (dim, row range) and the keys' order
 * (flr_keys_check_sorted) belong to the receiver.
 */
#ifndef FLR_PROTO_H
#define FLR_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#define FLR_MAGIC      "FLR1"
#define FLR_JOB_MAX    64  /* longest job name, bytes */
#define FLR_REASON_MAX 256 /* longest reason string, bytes */

/* X(NAME, code, "fields") — codes are on the wire: never renumber, only append. */
#define FLR_MSG_TYPES(X)                                                                           \
    X(PULL, 1, "tcki")                                                                             \
    X(PULL_REPLY, 2, "srpvcqx")                                                                    \
    X(PUSH, 3, "tckvi")                                                                            \
    X(PUSH_REPLY, 4, "srpq")                                                                       \
    X(CLOCK, 5, "ci")                                                                              \
    X(CLOCK_REPLY, 6, "srpq")                                                                      \
    X(STATUS, 7, "")                                                                               \
    X(STATUS_REPLY, 8, "srj")                                                                      \
    X(SHUTDOWN, 9, "")                                                                             \
    X(SHUTDOWN_REPLY, 10, "sr")                                                                    \
    X(ERROR_REPLY, 11, "sr")                                                                       \
    X(DUMP, 12, "tq")                                                                              \
    X(DUMP_REPLY, 13, "srpqkvtcj")                                                                 \
    X(REPLICATE, 14, "tpckvx")                                                                     \
    X(REPLICATE_ACK, 15, "sr")                                                                     \
    X(MANIFEST_REQ, 16, "")                                                                        \
    X(MANIFEST, 17, "srjx")                                                                        \
    X(REBUILD_REQ, 18, "tqi")                                                                      \
    X(REBUILD_STREAM, 19, "srtqkvcip")                                                             \
    X(LEAVE, 20, "ci")                                                                             \
    X(LEAVE_REPLY, 21, "srpq")

enum flr_msg_type {
    FLR_MSG_NONE = 0,
#define FLR_MSG_ENUM(name, code, fields) FLR_MSG_##name = code,
    FLR_MSG_TYPES(FLR_MSG_ENUM)
#undef FLR_MSG_ENUM
        FLR_MSG_COUNT_
};

/* A decoded (or to-be-encoded) message.  Fields not used by the type are ignored by the
 * encoder and zeroed by the decoder. */
struct flr_msg {
    /* header */
    int type;        /* enum flr_msg_type */
    const char *job; /* not NUL-terminated on decode: use job_len */
    uint32_t job_len;
    uint32_t sender; /* worker id, server id or coordinator id */
    uint32_t shard;
    uint64_t shard_epoch;
    uint64_t request_id;

    /* body */
    uint32_t table;
    int64_t clock;
    int32_t status;
    const char *reason; /* not NUL-terminated on decode: use reason_len */
    uint32_t reason_len;
    uint64_t stamp;
    uint64_t aux;
    const void *keys; /* nkeys little-endian u64, unaligned */
    uint32_t nkeys;
    const void *vals; /* vals_len bytes of little-endian float32, unaligned */
    uint64_t vals_len;
    const char *text; /* not NUL-terminated on decode: use text_len */
    uint32_t text_len;
    uint64_t seq;
    const void *extra; /* extra_len bytes: little-endian u64s, unaligned */
    uint64_t extra_len;
};

/* Limits the decoder enforces. */
struct flr_proto_limits {
    size_t max_size;   /* whole message, bytes */
    uint32_t max_keys; /* keys per message */
};

/* Defaults: 256 MiB messages, 16 Mi keys. */
void flr_proto_limits_default(struct flr_proto_limits *lim);

/* Returns the type's name ("PULL"), or "UNKNOWN". */
const char *flr_msg_type_name(int type);

/* The reply type that answers a request type (ERROR_REPLY for anything else). */
int flr_reply_type(int type);

/* Returns the field-code string of a type, or NULL if the type is unknown. */
const char *flr_msg_fields(int type);

/* Returns the exact encoded size of m in bytes (m->vals may be NULL: only vals_len counts). */
size_t flr_msg_encoded_size(const struct flr_msg *m);

/*
 * Encodes m into buf, which must hold flr_msg_encoded_size(m) bytes.  If m->vals is NULL
 * and the type has a values field, the value blob's header is written and *vals_out is set
 * to the vals_len bytes the caller must fill (the zero-extra-copy path for pull replies);
 * otherwise *vals_out (if given) is set to NULL.  Returns the number of bytes written.
 */
size_t flr_msg_encode_into(const struct flr_msg *m, void *buf, void **vals_out);

/*
 * Decodes the message in buf[0..len) into m.  On success returns 0.  On failure returns
 * FLR_EBAD_REQUEST (or FLR_ETOO_BIG) and writes a one-line reason to
 * why (if given).  After a failure, m->type, m->sender and m->request_id hold whatever
 * could be read (0 otherwise) so that the receiver can address an error reply.
 *
 * zone is scratch for msgpack-c; it is cleared on entry, so one zone per thread can be
 * reused for every message without allocating.  Pointers in m point into buf.
 */
int flr_msg_decode(struct flr_msg *m, const void *buf, size_t len,
                   const struct flr_proto_limits *lim, msgpack_zone *zone, char *why,
                   size_t whylen);

/* Checks that a key blob holds strictly increasing keys.  Returns 0 or FLR_EUNSORTED. */
int flr_keys_check_sorted(const void *keys, uint32_t nkeys);

#endif
