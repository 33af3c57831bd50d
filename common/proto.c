/*
 * proto.c - the flr wire codec.
 *
 * Both directions are driven by two tables: proto_hdr[] describes the header fields that
 * every message carries after the magic and the type, and proto_body[] describes each
 * body field code once (its name, its wire type and where it lives in struct flr_msg).  A
 * message type contributes only its field string, taken from FLR_MSG_TYPES, so nothing
 * below switches on the message type.
 *
 * Encoding packs with a msgpack_packer whose write callback copies into the caller's
 * buffer at a running offset.  The same packing routine run with no buffer only adds up
 * lengths, which is how flr_msg_encoded_size() stays exact: it cannot disagree with the
 * encoder about which msgpack encoding an integer or a header gets.
 *
 * Decoding reads the outer array header by hand and then each element with
 * msgpack_unpack().  Every field of every message is a scalar (integer, str or bin), and
 * msgpack-c references str and bin bytes in the input rather than copying them, so no
 * element ever needs the zone.  Parsing element by element, rather than the whole array
 * at once, keeps hostile container headers away from msgpack-c: an array or map header
 * claiming four billion entries would otherwise make it reserve room for all of them
 * before discovering that the bytes are not there.  An element that starts with a
 * container header is reported as a wrong type without being parsed.
 */
#include "proto.h"

#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "util.h"

/* The header is [magic, type, job, sender, shard, shard_epoch, request_id]. */
#define PROTO_HDR_LEN 7

/* Msgpack-c represents the length of a str or bin in 32 bits. */
#define PROTO_BLOB_MAX UINT32_MAX

/* ---- tables --------------------------------------------------------------------------- */

struct proto_type {
    const char *name;
    const char *fields;
};

static const struct proto_type proto_types[] = {
#define PROTO_TYPE_ROW(name, code, fields) [code] = {#name, fields},
    FLR_MSG_TYPES(PROTO_TYPE_ROW)
#undef PROTO_TYPE_ROW
};

/* How a field travels and where it is kept. */
enum proto_kind {
    PROTO_U32,  /* uint that fits in 32 bits; uint32_t at off */
    PROTO_U64,  /* uint; uint64_t at off */
    PROTO_I32,  /* int that fits in 32 bits; int32_t at off */
    PROTO_I64,  /* int that fits in 64 bits; int64_t at off */
    PROTO_STR,  /* str; const char * at off, uint32_t length at len_off */
    PROTO_KEYS, /* bin of u64 keys; m->keys and m->nkeys */
    PROTO_VALS, /* bin of float32 values; m->vals and m->vals_len */
    PROTO_EXTRA /* bin of u64s; m->extra and m->extra_len */
};

struct proto_field {
    char code;        /* body field code; 0 for a header field */
    const char *name; /* used in decode errors */
    enum proto_kind kind;
    uint32_t max_len; /* PROTO_STR: longest accepted string in bytes, 0 for no limit */
    size_t off;
    size_t len_off;
};

/* One initialiser per field; clang-format would spread each over several lines. */
/* clang-format off */
#define PROTO_INT(c, nm, k, member) \
    {.code = (c), .name = (nm), .kind = (k), .off = offsetof(struct flr_msg, member)}
#define PROTO_STRING(c, nm, max, member) \
    {.code = (c), .name = (nm), .kind = PROTO_STR, .max_len = (max), \
     .off = offsetof(struct flr_msg, member), .len_off = offsetof(struct flr_msg, member##_len)}
/* clang-format on */

/* Array positions 2 to PROTO_HDR_LEN - 1, in order. */
static const struct proto_field proto_hdr[PROTO_HDR_LEN - 2] = {
    PROTO_STRING(0, "job", FLR_JOB_MAX, job),
    PROTO_INT(0, "sender", PROTO_U32, sender),
    PROTO_INT(0, "shard", PROTO_U32, shard),
    PROTO_INT(0, "shard_epoch", PROTO_U64, shard_epoch),
    PROTO_INT(0, "request_id", PROTO_U64, request_id),
};

/* The body field codes documented in proto.h. */
static const struct proto_field proto_body[] = {
    PROTO_INT('t', "table", PROTO_U32, table),
    PROTO_INT('c', "clock", PROTO_I64, clock),
    PROTO_INT('s', "status", PROTO_I32, status),
    PROTO_STRING('r', "reason", FLR_REASON_MAX, reason),
    PROTO_INT('p', "stamp", PROTO_U64, stamp),
    PROTO_INT('q', "aux", PROTO_U64, aux),
    {.code = 'k', .name = "keys", .kind = PROTO_KEYS},
    {.code = 'v', .name = "values", .kind = PROTO_VALS},
    PROTO_STRING('j', "text", 0, text),
    PROTO_INT('i', "seq", PROTO_U64, seq),
    {.code = 'x', .name = "extra", .kind = PROTO_EXTRA},
};

#undef PROTO_INT
#undef PROTO_STRING

/* Typed access to a member of struct flr_msg by its offset. */
typedef const char *proto_cstr;
#define PROTO_AT(m, off, type)  ((type *)((char *)(m) + (off)))
#define PROTO_CAT(m, off, type) ((const type *)((const char *)(m) + (off)))

static const struct proto_type *proto_type_find(int type)
{
    if (type <= 0 || (size_t)type >= FLR_ARRAY_LEN(proto_types) || !proto_types[type].name)
        return NULL;
    return &proto_types[type];
}

static const struct proto_field *proto_body_find(char code)
{
    for (size_t i = 0; i < FLR_ARRAY_LEN(proto_body); i++)
        if (proto_body[i].code == code)
            return &proto_body[i];
    return NULL;
}

static bool proto_has_field(const char *fields, char code)
{
    return strchr(fields, code) != NULL;
}

void flr_proto_limits_default(struct flr_proto_limits *lim)
{
    lim->max_size = (size_t)256 << 20;
    lim->max_keys = (uint32_t)16 << 20;
}

int flr_reply_type(int type)
{
    switch (type) {
    case FLR_MSG_PULL:
        return FLR_MSG_PULL_REPLY;
    case FLR_MSG_PUSH:
        return FLR_MSG_PUSH_REPLY;
    case FLR_MSG_CLOCK:
        return FLR_MSG_CLOCK_REPLY;
    case FLR_MSG_STATUS:
        return FLR_MSG_STATUS_REPLY;
    case FLR_MSG_SHUTDOWN:
        return FLR_MSG_SHUTDOWN_REPLY;
    case FLR_MSG_DUMP:
        return FLR_MSG_DUMP_REPLY;
    case FLR_MSG_REPLICATE:
        return FLR_MSG_REPLICATE_ACK;
    case FLR_MSG_MANIFEST_REQ:
        return FLR_MSG_MANIFEST;
    case FLR_MSG_REBUILD_REQ:
        return FLR_MSG_REBUILD_STREAM;
    case FLR_MSG_LEAVE:
        return FLR_MSG_LEAVE_REPLY;
    default:
        return FLR_MSG_ERROR_REPLY;
    }
}

const char *flr_msg_type_name(int type)
{
    const struct proto_type *t = proto_type_find(type);
    return t ? t->name : "UNKNOWN";
}

const char *flr_msg_fields(int type)
{
    const struct proto_type *t = proto_type_find(type);
    return t ? t->fields : NULL;
}

/* ---- encoding ------------------------------------------------------------------------- */

/* Destination of the packer; with buf == NULL the bytes are only counted. */
struct proto_out {
    char *buf;
    size_t off;
};

/* Never fails: the caller's buffer holds flr_msg_encoded_size() bytes, so the packer's
 * return values need no checking. */
static int proto_write(void *data, const char *bytes, size_t n)
{
    struct proto_out *out = data;

    if (out->buf && n > 0)
        memcpy(out->buf + out->off, bytes, n);
    out->off += n;
    return 0;
}

static void proto_pack_field(msgpack_packer *pk, struct proto_out *out, const struct proto_field *f,
                             const struct flr_msg *m, void **vals_out)
{
    switch (f->kind) {
    case PROTO_U32:
        msgpack_pack_uint64(pk, *PROTO_CAT(m, f->off, uint32_t));
        break;
    case PROTO_U64:
        msgpack_pack_uint64(pk, *PROTO_CAT(m, f->off, uint64_t));
        break;
    case PROTO_I32:
        msgpack_pack_int64(pk, *PROTO_CAT(m, f->off, int32_t));
        break;
    case PROTO_I64:
        msgpack_pack_int64(pk, *PROTO_CAT(m, f->off, int64_t));
        break;
    case PROTO_STR: {
        const char *s = *PROTO_CAT(m, f->off, proto_cstr);
        uint32_t len = *PROTO_CAT(m, f->len_off, uint32_t);

        assert(s || len == 0);
        msgpack_pack_str_with_body(pk, s, len);
        break;
    }
    case PROTO_KEYS:
        /* Msgpack cannot describe a longer blob; its packer would silently truncate the
         * length. */
        assert(m->nkeys <= PROTO_BLOB_MAX / sizeof(uint64_t));
        assert(m->keys || m->nkeys == 0);
        msgpack_pack_bin_with_body(pk, m->keys, (size_t)m->nkeys * sizeof(uint64_t));
        break;
    case PROTO_VALS:
        assert(m->vals_len <= PROTO_BLOB_MAX);
        msgpack_pack_bin(pk, (size_t)m->vals_len);
        if (m->vals) {
            msgpack_pack_bin_body(pk, m->vals, (size_t)m->vals_len);
        } else {
            /* Reserve the blob for the caller and keep packing after it, so that fields
             * following the values land where the decoder expects them. */
            assert(vals_out || m->vals_len == 0 || !out->buf);
            if (vals_out && out->buf)
                *vals_out = out->buf + out->off;
            out->off += (size_t)m->vals_len;
        }
        break;
    case PROTO_EXTRA:
        assert(m->extra_len <= PROTO_BLOB_MAX);
        assert(m->extra || m->extra_len == 0);
        msgpack_pack_bin_with_body(pk, m->extra, (size_t)m->extra_len);
        break;
    }
}

/* Packs m into out (or counts it when out->buf is NULL). */
static void proto_pack(const struct flr_msg *m, struct proto_out *out, void **vals_out)
{
    const char *fields = flr_msg_fields(m->type);
    msgpack_packer pk;

    /* Encoding a type that does not exist is a programmer's error. */
    assert(fields);
    if (vals_out)
        *vals_out = NULL;
    msgpack_packer_init(&pk, out, proto_write);
    msgpack_pack_array(&pk, PROTO_HDR_LEN + strlen(fields));
    msgpack_pack_str_with_body(&pk, FLR_MAGIC, strlen(FLR_MAGIC));
    msgpack_pack_uint64(&pk, (uint64_t)m->type);
    for (size_t i = 0; i < FLR_ARRAY_LEN(proto_hdr); i++)
        proto_pack_field(&pk, out, &proto_hdr[i], m, vals_out);
    for (const char *c = fields; *c; c++) {
        const struct proto_field *f = proto_body_find(*c);

        assert(f);
        proto_pack_field(&pk, out, f, m, vals_out);
    }
}

size_t flr_msg_encoded_size(const struct flr_msg *m)
{
    struct proto_out out = {NULL, 0};

    proto_pack(m, &out, NULL);
    return out.off;
}

size_t flr_msg_encode_into(const struct flr_msg *m, void *buf, void **vals_out)
{
    struct proto_out out = {buf, 0};

    proto_pack(m, &out, vals_out);
    return out.off;
}

/* ---- decoding ------------------------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static int proto_fail(char *why, size_t whylen, int rv,
                                                            const char *fmt, ...)
{
    va_list ap;

    if (why && whylen > 0) {
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return rv;
}

static const char *proto_objtype_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "float";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "unknown";
}

/* A cursor over the message being decoded. */
struct proto_rd {
    const char *buf;
    size_t len;
    size_t off;
    msgpack_zone *zone;
    bool opaque; /* stopped at a container that was not parsed */
};

/* Reads the outer array header and its element count. */
static int proto_rd_array(struct proto_rd *rd, uint32_t *n, char *why, size_t whylen)
{
    const unsigned char *p = (const unsigned char *)rd->buf;
    size_t avail = rd->len - rd->off;

    if (avail == 0)
        return proto_fail(why, whylen, FLR_EBAD_REQUEST, "message is empty");
    p += rd->off;
    if (p[0] >= 0x90 && p[0] <= 0x9f) {
        *n = p[0] & 0x0f;
        rd->off += 1;
    } else if (p[0] == 0xdc) {
        if (avail < 3)
            return proto_fail(why, whylen, FLR_EBAD_REQUEST, "message truncated in its header");
        *n = (uint32_t)p[1] << 8 | p[2];
        rd->off += 3;
    } else if (p[0] == 0xdd) {
        if (avail < 5)
            return proto_fail(why, whylen, FLR_EBAD_REQUEST, "message truncated in its header");
        *n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        rd->off += 5;
    } else {
        return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                          "message is not a msgpack array (first byte 0x%02x)", p[0]);
    }
    return 0;
}

/*
 * Reads array element idx into o.  An element that starts with an array or map header is
 * not parsed (see the top of the file): o gets its type with no contents, rd->opaque is
 * set and the cursor stays put, so the caller's type check reports it.
 */
static int proto_rd_elem(struct proto_rd *rd, unsigned idx, const char *name, msgpack_object *o,
                         char *why, size_t whylen)
{
    const unsigned char *p = (const unsigned char *)rd->buf;
    size_t off = rd->off;

    if (off >= rd->len)
        return proto_fail(why, whylen, FLR_EBAD_REQUEST, "field %u (%s): message truncated", idx,
                          name);
    memset(o, 0, sizeof(*o));
    if ((p[off] >= 0x80 && p[off] <= 0x8f) || p[off] == 0xde || p[off] == 0xdf) {
        o->type = MSGPACK_OBJECT_MAP;
        rd->opaque = true;
        return 0;
    }
    if ((p[off] >= 0x90 && p[off] <= 0x9f) || p[off] == 0xdc || p[off] == 0xdd) {
        o->type = MSGPACK_OBJECT_ARRAY;
        rd->opaque = true;
        return 0;
    }
    switch (msgpack_unpack(rd->buf, rd->len, &off, rd->zone, o)) {
    case MSGPACK_UNPACK_SUCCESS:
    case MSGPACK_UNPACK_EXTRA_BYTES:
        /* Msgpack-c may give an empty str or bin a NULL pointer (4.0 does for str); point
         * it at its empty body instead, so that every decoded string and blob points into
         * buf. */
        if (o->type == MSGPACK_OBJECT_STR && o->via.str.size == 0)
            o->via.str.ptr = rd->buf + off;
        else if (o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == 0)
            o->via.bin.ptr = rd->buf + off;
        rd->off = off;
        return 0;
    case MSGPACK_UNPACK_CONTINUE:
        return proto_fail(why, whylen, FLR_EBAD_REQUEST, "field %u (%s): message truncated", idx,
                          name);
    default:
        return proto_fail(why, whylen, FLR_EBAD_REQUEST, "field %u (%s): invalid msgpack", idx,
                          name);
    }
}

static int proto_wrong_type(unsigned idx, const char *name, const char *want,
                            const msgpack_object *o, char *why, size_t whylen)
{
    return proto_fail(why, whylen, FLR_EBAD_REQUEST, "field %u (%s): expected %s, got %s", idx,
                      name, want, proto_objtype_name(o->type));
}

/* Reads an unsigned integer no larger than max. */
static int proto_get_uint(unsigned idx, const char *name, const msgpack_object *o, uint64_t max,
                          uint64_t *v, char *why, size_t whylen)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return proto_wrong_type(idx, name, "uint", o, why, whylen);
    if (o->via.u64 > max)
        return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                          "field %u (%s): %" PRIu64 " is larger than %" PRIu64, idx, name,
                          o->via.u64, max);
    *v = o->via.u64;
    return 0;
}

/* Reads a signed integer in [lo, hi]. */
static int proto_get_int(unsigned idx, const char *name, const msgpack_object *o, int64_t lo,
                         int64_t hi, int64_t *v, char *why, size_t whylen)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)hi)
            return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                              "field %u (%s): %" PRIu64 " is larger than %" PRId64, idx, name,
                              o->via.u64, hi);
        *v = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (o->via.i64 < lo)
            return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                              "field %u (%s): %" PRId64 " is smaller than %" PRId64, idx, name,
                              o->via.i64, lo);
        *v = o->via.i64;
        return 0;
    }
    return proto_wrong_type(idx, name, "int", o, why, whylen);
}

/* Checks object o, element idx of the array, against field f and stores it in m.  Writes
 * nothing to m on failure.  lim is only used for the keys. */
static int proto_get_field(struct flr_msg *m, const struct proto_field *f, unsigned idx,
                           const msgpack_object *o, const struct flr_proto_limits *lim, char *why,
                           size_t whylen)
{
    uint64_t u;
    int64_t i;
    int rv;

    switch (f->kind) {
    case PROTO_U32:
        if ((rv = proto_get_uint(idx, f->name, o, UINT32_MAX, &u, why, whylen)) != 0)
            return rv;
        *PROTO_AT(m, f->off, uint32_t) = (uint32_t)u;
        return 0;
    case PROTO_U64:
        if ((rv = proto_get_uint(idx, f->name, o, UINT64_MAX, &u, why, whylen)) != 0)
            return rv;
        *PROTO_AT(m, f->off, uint64_t) = u;
        return 0;
    case PROTO_I32:
        if ((rv = proto_get_int(idx, f->name, o, INT32_MIN, INT32_MAX, &i, why, whylen)) != 0)
            return rv;
        *PROTO_AT(m, f->off, int32_t) = (int32_t)i;
        return 0;
    case PROTO_I64:
        if ((rv = proto_get_int(idx, f->name, o, INT64_MIN, INT64_MAX, &i, why, whylen)) != 0)
            return rv;
        *PROTO_AT(m, f->off, int64_t) = i;
        return 0;
    case PROTO_STR:
        if (o->type != MSGPACK_OBJECT_STR)
            return proto_wrong_type(idx, f->name, "str", o, why, whylen);
        if (f->max_len && o->via.str.size > f->max_len)
            return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                              "field %u (%s): %" PRIu32 " bytes, at most %" PRIu32 " allowed", idx,
                              f->name, o->via.str.size, f->max_len);
        *PROTO_AT(m, f->off, proto_cstr) = o->via.str.ptr;
        *PROTO_AT(m, f->len_off, uint32_t) = o->via.str.size;
        return 0;
    case PROTO_KEYS:
        if (o->type != MSGPACK_OBJECT_BIN)
            return proto_wrong_type(idx, f->name, "bin", o, why, whylen);
        if (o->via.bin.size % sizeof(uint64_t) != 0)
            return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                              "field %u (%s): %" PRIu32 " bytes is not a whole number of u64 keys",
                              idx, f->name, o->via.bin.size);
        if (o->via.bin.size / sizeof(uint64_t) > lim->max_keys)
            return proto_fail(why, whylen, FLR_ETOO_BIG,
                              "field %u (%s): %zu keys, at most %" PRIu32 " allowed", idx, f->name,
                              (size_t)(o->via.bin.size / sizeof(uint64_t)), lim->max_keys);
        m->keys = o->via.bin.ptr;
        m->nkeys = (uint32_t)(o->via.bin.size / sizeof(uint64_t));
        return 0;
    case PROTO_VALS:
        if (o->type != MSGPACK_OBJECT_BIN)
            return proto_wrong_type(idx, f->name, "bin", o, why, whylen);
        if (o->via.bin.size % sizeof(float) != 0)
            return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                              "field %u (%s): %" PRIu32
                              " bytes is not a whole number of float32 values",
                              idx, f->name, o->via.bin.size);
        m->vals = o->via.bin.ptr;
        m->vals_len = o->via.bin.size;
        return 0;
    case PROTO_EXTRA:
        if (o->type != MSGPACK_OBJECT_BIN)
            return proto_wrong_type(idx, f->name, "bin", o, why, whylen);
        if (o->via.bin.size % sizeof(uint64_t) != 0)
            return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                              "field %u (%s): %" PRIu32 " bytes is not a whole number of u64s", idx,
                              f->name, o->via.bin.size);
        m->extra = o->via.bin.ptr;
        m->extra_len = o->via.bin.size;
        return 0;
    }
    return proto_fail(why, whylen, FLR_EINTERNAL, "field %u (%s): unknown field kind", idx,
                      f->name);
}

/* Values come in whole rows, one per key. */
static int proto_check_rows(const struct flr_msg *m, char *why, size_t whylen)
{
    uint64_t row;

    if (m->vals_len == 0)
        return 0;
    if (m->nkeys == 0)
        return proto_fail(why, whylen, FLR_EBAD_REQUEST, "%" PRIu64 " value bytes but no keys",
                          m->vals_len);
    row = (uint64_t)m->nkeys * sizeof(float);
    if (m->vals_len % row != 0)
        return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                          "%" PRIu64 " value bytes is not a whole number of rows for %" PRIu32
                          " keys",
                          m->vals_len, m->nkeys);
    return 0;
}

static int proto_decode_strict(struct flr_msg *m, struct proto_rd *rd,
                               const struct flr_proto_limits *lim, char *why, size_t whylen)
{
    const struct proto_type *t;
    msgpack_object o;
    uint32_t n;
    size_t want;
    unsigned idx;
    int rv;

    if ((rv = proto_rd_array(rd, &n, why, whylen)) != 0)
        return rv;
    if (n < PROTO_HDR_LEN)
        return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                          "array has %" PRIu32 " elements, the header alone needs %d", n,
                          PROTO_HDR_LEN);

    if ((rv = proto_rd_elem(rd, 0, "magic", &o, why, whylen)) != 0)
        return rv;
    if (o.type != MSGPACK_OBJECT_STR)
        return proto_wrong_type(0, "magic", "str", &o, why, whylen);
    if (o.via.str.size != strlen(FLR_MAGIC) || memcmp(o.via.str.ptr, FLR_MAGIC, o.via.str.size))
        return proto_fail(why, whylen, FLR_EBAD_REQUEST, "field 0 (magic): not \"%s\"", FLR_MAGIC);

    if ((rv = proto_rd_elem(rd, 1, "type", &o, why, whylen)) != 0)
        return rv;
    if (o.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return proto_wrong_type(1, "type", "uint", &o, why, whylen);
    if (o.via.u64 > INT_MAX || !(t = proto_type_find((int)o.via.u64)))
        return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                          "field 1 (type): unknown message type %" PRIu64, o.via.u64);
    m->type = (int)o.via.u64;

    want = PROTO_HDR_LEN + strlen(t->fields);
    if (n != want)
        return proto_fail(why, whylen, FLR_EBAD_REQUEST,
                          "array has %" PRIu32 " elements, %s needs %zu", n, t->name, want);

    idx = 2;
    for (size_t i = 0; i < FLR_ARRAY_LEN(proto_hdr); i++, idx++) {
        if ((rv = proto_rd_elem(rd, idx, proto_hdr[i].name, &o, why, whylen)) != 0)
            return rv;
        if ((rv = proto_get_field(m, &proto_hdr[i], idx, &o, lim, why, whylen)) != 0)
            return rv;
    }
    for (const char *c = t->fields; *c; c++, idx++) {
        const struct proto_field *f = proto_body_find(*c);

        if (!f)
            return proto_fail(why, whylen, FLR_EINTERNAL, "field %u: unknown field code '%c'", idx,
                              *c);
        if ((rv = proto_rd_elem(rd, idx, f->name, &o, why, whylen)) != 0)
            return rv;
        if ((rv = proto_get_field(m, f, idx, &o, lim, why, whylen)) != 0)
            return rv;
    }

    if (proto_has_field(t->fields, 'k') && proto_has_field(t->fields, 'v') &&
        (rv = proto_check_rows(m, why, whylen)) != 0)
        return rv;
    if (rd->off != rd->len)
        return proto_fail(why, whylen, FLR_EBAD_REQUEST, "trailing bytes after the message (%zu)",
                          rd->len - rd->off);
    return 0;
}

/*
 * Reads what it can of the header of a message that failed to decode, so that the
 * receiver can address an error reply.  Each field is taken only if it is valid on its
 * own; the type only if it names a known message type.
 */
static void proto_peek(struct flr_msg *m, struct proto_rd *rd)
{
    msgpack_object o;
    uint32_t n;

    rd->off = 0;
    rd->opaque = false;
    if (proto_rd_array(rd, &n, NULL, 0) != 0)
        return;
    for (unsigned idx = 0; idx < n && idx < PROTO_HDR_LEN; idx++) {
        if (proto_rd_elem(rd, idx, "", &o, NULL, 0) != 0 || rd->opaque)
            return;
        if (idx == 1) {
            if (o.type == MSGPACK_OBJECT_POSITIVE_INTEGER && o.via.u64 <= INT_MAX &&
                proto_type_find((int)o.via.u64))
                m->type = (int)o.via.u64;
        } else if (idx >= 2 && proto_hdr[idx - 2].kind != PROTO_STR) {
            (void)proto_get_field(m, &proto_hdr[idx - 2], idx, &o, NULL, NULL, 0);
        }
    }
}

int flr_msg_decode(struct flr_msg *m, const void *buf, size_t len,
                   const struct flr_proto_limits *lim, msgpack_zone *zone, char *why, size_t whylen)
{
    struct proto_rd rd = {buf, len, 0, zone, false};
    int rv;

    assert(m && lim && zone && (buf || len == 0));
    memset(m, 0, sizeof(*m));
    if (why && whylen > 0)
        why[0] = '\0';
    msgpack_zone_clear(zone);

    if (len > lim->max_size)
        rv = proto_fail(why, whylen, FLR_ETOO_BIG, "message is %zu bytes, at most %zu allowed", len,
                        lim->max_size);
    else if ((rv = proto_decode_strict(m, &rd, lim, why, whylen)) == 0)
        return 0;

    /* Leave no half-decoded body behind, only the addressing. */
    memset(m, 0, sizeof(*m));
    proto_peek(m, &rd);
    return rv;
}

int flr_keys_check_sorted(const void *keys, uint32_t nkeys)
{
    const unsigned char *p = keys;

    for (uint32_t i = 1; i < nkeys; i++)
        if (flr_load_u64(p + (size_t)i * 8) <= flr_load_u64(p + (size_t)(i - 1) * 8))
            return FLR_EUNSORTED;
    return 0;
}
