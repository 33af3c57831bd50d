/*
 * data.c - Fashion-MNIST and CTR loaders, partitioning, and the evaluation metrics.
 *
 * Both loaders read through zlib's gz* functions, which pass plain (uncompressed) files
 * through unchanged, so a CTR file may be given as train.tsv or train.tsv.gz.
 *
 * Errors are reported as one line in the caller's buffer, naming the file and the problem
 * ("t10k-labels-idx1-ubyte.gz: label 11 out of range at item 7"; "train.tsv:12: 39
 * columns, expected 40").  Nothing here logs or exits.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "common/err.h"
#include "common/util.h"
#include "data.h"

#define FM_IMAGES_MAGIC 2051
#define FM_LABELS_MAGIC 2049
#define FM_SIDE         28

/* Reads in pieces this large: big enough to amortise zlib's per-call cost. */
#define DATA_CHUNK (1u << 20)

/* The longest CTR line accepted (a Criteo line is a few hundred bytes). */
#define CTR_MAX_LINE (64u << 10)

/* Integer-column buckets beyond floor(log2(1 + x)), which is 0..63. */
#define CTR_BUCKET_NEG   64
#define CTR_BUCKET_EMPTY 65
#define CTR_BUCKET_BAD   66

/* Opens path for reading; distinguishes a missing file (FLR_ENOT_FOUND) from other
 * failures so that callers can add a hint about where the file comes from. */
static int data_open(gzFile *fp, const char *path, const char *hint, char *why, size_t whylen)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            flr_why(why, whylen, "%s: not found%s", path, hint);
            return FLR_ENOT_FOUND;
        }
        flr_why(why, whylen, "%s: %s", path, strerror(errno));
        return FLR_EIO;
    }
    if (S_ISDIR(st.st_mode)) {
        flr_why(why, whylen, "%s: is a directory", path);
        return FLR_EIO;
    }
    if ((*fp = gzopen(path, "rb")) == NULL) {
        flr_why(why, whylen, "%s: %s", path, errno ? strerror(errno) : "cannot open");
        return errno == ENOMEM ? FLR_ENOMEM : FLR_EIO;
    }
    gzbuffer(*fp, 256u << 10);
    return 0;
}

/* Describes a failed or short read: a zlib error (corrupt data) or a truncated file. */
static int data_read_error(gzFile f, const char *path, const char *what, char *why, size_t whylen)
{
    int zerr = Z_OK;
    const char *msg = gzerror(f, &zerr);

    if (zerr == Z_ERRNO) {
        flr_why(why, whylen, "%s: read error: %s", path, strerror(errno));
        return FLR_EIO;
    }
    if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
        flr_why(why, whylen, "%s: corrupt gzip data (%s)", path, msg);
        return FLR_EFORMAT;
    }
    flr_why(why, whylen, "%s: truncated %s", path, what);
    return FLR_EFORMAT;
}

/* Reads exactly len bytes. Returns 0, or -1 on a short read or error (see gzerror). */
static int data_read_full(gzFile f, void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len > 0) {
        unsigned want = len > DATA_CHUNK ? DATA_CHUNK : (unsigned)len;
        int got = gzread(f, p, want);
        if (got <= 0)
            return -1;
        p += got;
        len -= (size_t)got;
    }
    return 0;
}

static uint32_t data_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Fails with "trailing data" when anything follows the last item, and with "truncated"
 * when the gzip stream ends early (zlib notices that only at the end). */
static int data_expect_eof(gzFile f, const char *path, char *why, size_t whylen)
{
    unsigned char c;
    int zerr = Z_OK, got = gzread(f, &c, 1);

    if (got > 0) {
        flr_why(why, whylen, "%s: trailing data after the last item", path);
        return FLR_EFORMAT;
    }
    gzerror(f, &zerr);
    if (got == 0 && zerr == Z_OK)
        return 0;
    return data_read_error(f, path, "file", why, whylen);
}

#define FM_HINT " (install the Debian package dataset-fashion-mnist)"

/* Opens an IDX file and reads its header (hdrlen bytes) checking the magic number; on
 * success the file is open and positioned after the header. */
static int fm_open_idx(gzFile *fp, const char *path, unsigned char *hdr, size_t hdrlen,
                       uint32_t want_magic, const char *what, char *why, size_t whylen)
{
    uint32_t magic;
    int rv;

    if ((rv = data_open(fp, path, FM_HINT, why, whylen)) != 0)
        return rv;
    if (data_read_full(*fp, hdr, hdrlen) != 0)
        rv = data_read_error(*fp, path, "header", why, whylen);
    else if ((magic = data_be32(hdr)) != want_magic) {
        flr_why(why, whylen, "%s: bad magic number %" PRIu32 " (expected %" PRIu32 " for IDX %s)",
                path, magic, want_magic, what);
        rv = FLR_EFORMAT;
    }
    if (rv != 0)
        gzclose(*fp);
    return rv;
}

static int fm_load_labels(struct flr_dataset *d, const char *path, char *why, size_t whylen)
{
    unsigned char hdr[8];
    gzFile f;
    uint32_t n, i;
    int rv;

    if ((rv = fm_open_idx(&f, path, hdr, sizeof(hdr), FM_LABELS_MAGIC, "labels", why, whylen)) != 0)
        return rv;
    n = data_be32(hdr + 4);
    if (n != d->n) {
        flr_why(why, whylen, "%s: %" PRIu32 " labels but %" PRIu32 " images", path, n, d->n);
        rv = FLR_EFORMAT;
        goto out_close;
    }
    if ((d->y = malloc(n)) == NULL) {
        flr_why(why, whylen, "%s: out of memory for %" PRIu32 " labels", path, n);
        rv = FLR_ENOMEM;
        goto out_close;
    }
    if (data_read_full(f, d->y, n) != 0) {
        rv = data_read_error(f, path, "labels", why, whylen);
        goto out_close;
    }
    for (i = 0; i < n; i++) {
        if (d->y[i] >= FLR_FMNIST_CLASSES) {
            flr_why(why, whylen, "%s: label %u out of range at item %" PRIu32, path,
                    (unsigned)d->y[i], i);
            rv = FLR_EFORMAT;
            goto out_close;
        }
    }
    rv = data_expect_eof(f, path, why, whylen);
out_close:
    gzclose(f);
    return rv;
}

static int fm_load_images(struct flr_dataset *d, const char *path, char *why, size_t whylen)
{
    enum { BATCH = 1024 };
    unsigned char hdr[16];
    unsigned char *buf = NULL;
    gzFile f;
    uint32_t n, rows, cols, done;
    int rv;

    if ((rv = fm_open_idx(&f, path, hdr, sizeof(hdr), FM_IMAGES_MAGIC, "images", why, whylen)) != 0)
        return rv;
    n = data_be32(hdr + 4);
    rows = data_be32(hdr + 8);
    cols = data_be32(hdr + 12);
    if (rows != FM_SIDE || cols != FM_SIDE) {
        flr_why(why, whylen, "%s: images are %" PRIu32 "x%" PRIu32 ", expected %dx%d", path, rows,
                cols, FM_SIDE, FM_SIDE);
        rv = FLR_EFORMAT;
        goto out_close;
    }
    if (n == 0) {
        flr_why(why, whylen, "%s: holds no images", path);
        rv = FLR_EFORMAT;
        goto out_close;
    }
    d->n = n;
    if ((d->x = malloc((size_t)n * FLR_FMNIST_DIM * sizeof(float))) == NULL ||
        (buf = malloc((size_t)BATCH * FLR_FMNIST_DIM)) == NULL) {
        flr_why(why, whylen, "%s: out of memory for %" PRIu32 " images", path, n);
        rv = FLR_ENOMEM;
        goto out_free;
    }
    for (done = 0; done < n;) {
        uint32_t take = n - done < BATCH ? n - done : BATCH;
        size_t len = (size_t)take * FLR_FMNIST_DIM, i;
        float *x = d->x + (size_t)done * FLR_FMNIST_DIM;

        if (data_read_full(f, buf, len) != 0) {
            rv = data_read_error(f, path, "pixel data", why, whylen);
            goto out_free;
        }
        for (i = 0; i < len; i++)
            x[i] = (float)buf[i] * (1.0f / 255.0f);
        done += take;
    }
    rv = data_expect_eof(f, path, why, whylen);
out_free:
    free(buf);
out_close:
    gzclose(f);
    return rv;
}

int flr_fmnist_load(struct flr_dataset *d, const char *dir, int train, char *why, size_t whylen)
{
    const char *prefix = train ? "train" : "t10k";
    char path[4096];
    int rv;

    memset(d, 0, sizeof(*d));
    d->kind = FLR_DATA_FMNIST;
    d->dim = FLR_FMNIST_DIM;
    if (dir == NULL || *dir == '\0')
        dir = ".";

    if ((size_t)snprintf(path, sizeof(path), "%s/%s-images-idx3-ubyte.gz", dir, prefix) >=
        sizeof(path)) {
        flr_why(why, whylen, "%s: directory name too long", dir);
        return FLR_EINVAL;
    }
    if ((rv = fm_load_images(d, path, why, whylen)) != 0)
        goto out_fail;
    snprintf(path, sizeof(path), "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    if ((rv = fm_load_labels(d, path, why, whylen)) != 0)
        goto out_fail;
    return 0;

out_fail:
    flr_dataset_fini(d);
    return rv;
}

/* --- CTR -------------------------------------------------------------------------------- */

/* FNV-1a: short strings, good enough before the splitmix finaliser. */
static uint64_t ctr_hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The bucket of an integer column's text: floor(log2(1 + x)) for x >= 0 (0..63), or
 * CTR_BUCKET_NEG, CTR_BUCKET_EMPTY, CTR_BUCKET_BAD.  Values beyond 64 bits saturate. */
static uint32_t ctr_int_bucket(const char *s, size_t len)
{
    uint64_t v = 0;
    size_t i = 0;
    int neg = 0, sat = 0;

    if (len == 0)
        return CTR_BUCKET_EMPTY;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        if (++i == len)
            return CTR_BUCKET_BAD;
    }
    for (; i < len; i++) {
        unsigned dgt = (unsigned)(unsigned char)s[i] - '0';
        if (dgt > 9)
            return CTR_BUCKET_BAD;
        if (v > (UINT64_MAX - dgt) / 10)
            sat = 1;
        else
            v = v * 10 + dgt;
    }
    if (neg && (v != 0 || sat))
        return CTR_BUCKET_NEG;
    if (sat || v == UINT64_MAX)
        return 63;
    return 63 - (uint32_t)__builtin_clzll(v + 1);
}

static uint64_t ctr_mask(uint32_t hash_bits)
{
    if (hash_bits == 0 || hash_bits > FLR_KEY_ROW_BITS)
        hash_bits = FLR_KEY_ROW_BITS;
    return (UINT64_C(1) << hash_bits) - 1;
}

static uint64_t ctr_feature_masked(uint32_t field, const char *val, size_t len, uint64_t mask)
{
    uint64_t h, id;

    if (field >= FLR_CTR_FIELDS - 1)
        return 0;
    if (field < FLR_CTR_INT)
        h = ctr_int_bucket(val, len);
    else
        h = ctr_hash_bytes(val, len);
    id = flr_mix64((uint64_t)field << 56 ^ h) & mask;
    /* Id 0 belongs to the bias. */
    return id != 0 ? id : 1;
}

uint64_t flr_ctr_feature(uint32_t field, const char *val, size_t len, uint32_t hash_bits)
{
    return ctr_feature_masked(field, val, len, ctr_mask(hash_bits));
}

/* Parses one line (without its newline) into row r of d. */
static int ctr_parse_line(struct flr_dataset *d, uint64_t r, const char *s, size_t len,
                          uint64_t mask, const char *path, uint64_t lineno, char *why,
                          size_t whylen)
{
    uint64_t *feat = d->feat + r * FLR_CTR_FIELDS;
    const char *end = s + len, *p = s;
    uint32_t col = 0;

    if (len > 0 && s[len - 1] == '\r')
        end--;
    for (;;) {
        const char *q = memchr(p, '\t', (size_t)(end - p));
        const char *fe = q != NULL ? q : end;
        size_t flen = (size_t)(fe - p);

        if (col == 0) {
            if (flen != 1 || (p[0] != '0' && p[0] != '1')) {
                flr_why(why, whylen, "%s:%" PRIu64 ": bad label '%.*s' (expected 0 or 1)", path,
                        lineno, (int)(flen > 16 ? 16 : flen), p);
                return FLR_EFORMAT;
            }
            d->y[r] = (uint8_t)(p[0] - '0');
        } else if (col < FLR_CTR_FIELDS) {
            uint32_t field = col - 1;
            if (field < FLR_CTR_INT && ctr_int_bucket(p, flen) == CTR_BUCKET_BAD) {
                flr_why(why, whylen, "%s:%" PRIu64 ": column I%u: bad integer '%.*s'", path, lineno,
                        field + 1, (int)(flen > 24 ? 24 : flen), p);
                return FLR_EFORMAT;
            }
            feat[field] = ctr_feature_masked(field, p, flen, mask);
        }
        col++;
        if (q == NULL)
            break;
        p = q + 1;
    }
    if (col != FLR_CTR_FIELDS) {
        flr_why(why, whylen, "%s:%" PRIu64 ": %u columns, expected %d", path, lineno, col,
                FLR_CTR_FIELDS);
        return FLR_EFORMAT;
    }
    feat[FLR_CTR_FIELDS - 1] = 0;
    return 0;
}

/* Makes room for at least one more row. */
static int ctr_grow(struct flr_dataset *d, uint64_t *cap, uint64_t max_rows)
{
    uint64_t ncap = *cap ? *cap * 2 : 4096;
    uint64_t *feat;
    uint8_t *y;

    if (max_rows && ncap > max_rows)
        ncap = max_rows;
    if (ncap > UINT32_MAX)
        ncap = UINT32_MAX;
    if (ncap <= d->n)
        return FLR_ENOMEM;
    if ((feat = realloc(d->feat, (size_t)ncap * FLR_CTR_FIELDS * sizeof(*feat))) == NULL)
        return FLR_ENOMEM;
    d->feat = feat;
    if ((y = realloc(d->y, (size_t)ncap)) == NULL)
        return FLR_ENOMEM;
    d->y = y;
    *cap = ncap;
    return 0;
}

int flr_ctr_load(struct flr_dataset *d, const char *path, uint32_t hash_bits, uint64_t max_rows,
                 char *why, size_t whylen)
{
    uint64_t mask, cap = 0, lineno = 0;
    char *buf = NULL;
    size_t have = 0;
    int eof = 0, rv;
    gzFile f;

    memset(d, 0, sizeof(*d));
    d->kind = FLR_DATA_CTR;
    d->dim = FLR_CTR_FIELDS;
    if (hash_bits < 8 || hash_bits > 40) {
        flr_why(why, whylen, "%s: hash_bits %" PRIu32 " out of range 8..40", path, hash_bits);
        return FLR_EINVAL;
    }
    mask = ctr_mask(hash_bits);
    if ((rv = data_open(&f, path, "", why, whylen)) != 0)
        return rv;
    if ((buf = malloc(DATA_CHUNK + CTR_MAX_LINE)) == NULL) {
        flr_why(why, whylen, "%s: out of memory", path);
        rv = FLR_ENOMEM;
        goto out_fail;
    }

    /* buf holds [0, have): the unparsed tail of the previous read, then new data. */
    while (!eof && (max_rows == 0 || d->n < max_rows)) {
        size_t start = 0;
        int got = gzread(f, buf + have, DATA_CHUNK);

        if (got < 0) {
            rv = data_read_error(f, path, "file", why, whylen);
            goto out_fail;
        }
        if (got == 0) {
            int zerr = Z_OK;
            gzerror(f, &zerr);
            if (zerr != Z_OK) {
                rv = data_read_error(f, path, "file", why, whylen);
                goto out_fail;
            }
            eof = 1;
        }
        have += (size_t)got;
        while (start < have && (max_rows == 0 || d->n < max_rows)) {
            char *nl = memchr(buf + start, '\n', have - start);
            size_t len;

            if (nl == NULL) {
                if (!eof)
                    break;
                len = have - start; /* last line without a newline */
            } else {
                len = (size_t)(nl - (buf + start));
            }
            lineno++;
            if (d->n == cap && (rv = ctr_grow(d, &cap, max_rows)) != 0) {
                flr_why(why, whylen, "%s:%" PRIu64 ": out of memory", path, lineno);
                goto out_fail;
            }
            rv = ctr_parse_line(d, d->n, buf + start, len, mask, path, lineno, why, whylen);
            if (rv != 0)
                goto out_fail;
            d->n++;
            start += len + (nl != NULL);
        }
        if (max_rows != 0 && d->n >= max_rows)
            break; /* enough rows: what is left in the buffer is not read */
        if (start < have && !eof && have - start >= CTR_MAX_LINE) {
            flr_why(why, whylen, "%s:%" PRIu64 ": line longer than %u bytes", path, lineno + 1,
                    CTR_MAX_LINE);
            rv = FLR_EFORMAT;
            goto out_fail;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
    }
    if (d->n == 0) {
        flr_why(why, whylen, "%s: holds no rows", path);
        rv = FLR_EFORMAT;
        goto out_fail;
    }
    if (cap > d->n) { /* give back the growth slack; a failed shrink is harmless */
        void *p;
        if ((p = realloc(d->feat, (size_t)d->n * FLR_CTR_FIELDS * sizeof(*d->feat))) != NULL)
            d->feat = p;
        if ((p = realloc(d->y, d->n)) != NULL)
            d->y = p;
    }
    free(buf);
    gzclose(f);
    return 0;

out_fail:
    free(buf);
    gzclose(f);
    flr_dataset_fini(d);
    return rv;
}

/* --- dataset helpers -------------------------------------------------------------------- */

void flr_dataset_partition(struct flr_dataset *d, uint32_t part, uint32_t nparts)
{
    uint32_t i, m = 0;
    size_t w = d->dim;

    assert(nparts > 0 && part < nparts);
    if (nparts == 0 || part >= nparts) {
        d->n = 0;
        return;
    }
    if (nparts == 1)
        return;
    for (i = part; i < d->n; i += nparts, m++) {
        if (d->x != NULL)
            memmove(d->x + (size_t)m * w, d->x + (size_t)i * w, w * sizeof(*d->x));
        if (d->feat != NULL)
            memmove(d->feat + (size_t)m * w, d->feat + (size_t)i * w, w * sizeof(*d->feat));
        d->y[m] = d->y[i];
    }
    d->n = m;
    /* Give the rest back; a failed shrink leaves the larger block, which is harmless. */
    if (m > 0) {
        void *p;
        if (d->x != NULL && (p = realloc(d->x, (size_t)m * w * sizeof(*d->x))) != NULL)
            d->x = p;
        if (d->feat != NULL && (p = realloc(d->feat, (size_t)m * w * sizeof(*d->feat))) != NULL)
            d->feat = p;
        if ((p = realloc(d->y, m)) != NULL)
            d->y = p;
    }
}

void flr_dataset_fini(struct flr_dataset *d)
{
    free(d->x);
    free(d->feat);
    free(d->y);
    d->x = NULL;
    d->feat = NULL;
    d->y = NULL;
    d->n = 0;
}

/* --- metrics ---------------------------------------------------------------------------- */

struct auc_item {
    float s;
    uint8_t y;
};

/* Orders by score; NaN sorts first so that the order is total. */
static int auc_cmp(const void *a, const void *b)
{
    float x = ((const struct auc_item *)a)->s, y = ((const struct auc_item *)b)->s;

    if (x < y)
        return -1;
    if (x > y)
        return 1;
    if (isnan(x) || isnan(y))
        return isnan(y) - isnan(x);
    return 0;
}

/*
 * The exact AUC (Mann-Whitney U over the ranks of the scores, ties sharing their average
 * rank).  Returns 0.5 when only one class is present, NaN when memory runs out.
 */
double flr_auc(const float *scores, const uint8_t *labels, uint32_t n)
{
    struct auc_item *it;
    double npos = 0, rank_sum = 0;
    uint32_t i, j;

    if (n == 0)
        return 0.5;
    if ((it = malloc((size_t)n * sizeof(*it))) == NULL)
        return NAN;
    for (i = 0; i < n; i++) {
        it[i].s = scores[i];
        it[i].y = labels[i] != 0;
        npos += it[i].y;
    }
    if (npos == 0 || npos == n) {
        free(it);
        return 0.5;
    }
    qsort(it, n, sizeof(*it), auc_cmp);
    for (i = 0; i < n; i = j) {
        double pos = 0, avg;
        for (j = i; j < n && auc_cmp(&it[i], &it[j]) == 0; j++)
            pos += it[j].y;
        /* Ranks i+1 .. j share their mean. */
        avg = ((double)i + 1 + (double)j) / 2;
        rank_sum += pos * avg;
    }
    free(it);
    return (rank_sum - npos * (npos + 1) / 2) / (npos * ((double)n - npos));
}

/* Mean binary cross-entropy, probabilities clamped to [1e-7, 1 - 1e-7]. 0 when n is 0. */
double flr_logloss(const float *probs, const uint8_t *labels, uint32_t n)
{
    const double lo = 1e-7, hi = 1 - 1e-7;
    double sum = 0;
    uint32_t i;

    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        double p = probs[i];
        if (!(p >= lo)) /* also catches NaN */
            p = lo;
        if (p > hi)
            p = hi;
        sum -= labels[i] ? log(p) : log(1 - p);
    }
    return sum / n;
}
