/*
 * test_data.c - the Fashion-MNIST and CTR loaders, feature hashing, partitioning, metrics.
 *
 * Fixtures: tests/data/fmnist-tiny (4 images in IDX format, gzip'd), tests/data/ctr20.tsv
 * (20 Criteo-format lines).  Broken variants are written into a temporary directory by the
 * tests themselves.  The real Fashion-MNIST test set is checked when it is installed.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "common/err.h"
#include "common/util.h"
#include "worker/data.h"

#ifndef FLR_FASHION_MNIST_DIR
#define FLR_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

static char tmpdir[256];

static const char *srcdir(void)
{
    const char *s = getenv("FLR_SRCDIR");
#ifdef FLR_TEST_SRCDIR
    if (s == NULL || *s == '\0')
        s = FLR_TEST_SRCDIR;
#endif
    return s != NULL && *s != '\0' ? s : ".";
}

static const char *fmnist_dir(void)
{
    const char *s = getenv("FLR_FASHION_MNIST_DIR");
    return s != NULL && *s != '\0' ? s : FLR_FASHION_MNIST_DIR;
}

static void src_path(char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/tests/data/%s", srcdir(), rel);
}

static void tmp_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/flr-test-data.XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_gz(const char *name, const void *data, size_t len)
{
    char path[512];
    gzFile f;

    tmp_path(path, sizeof(path), name);
    f = gzopen(path, "wb");
    assert_non_null(f);
    if (len > 0)
        assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(f), Z_OK);
}

static void write_plain(const char *name, const void *data, size_t len)
{
    char path[512];
    FILE *f;

    tmp_path(path, sizeof(path), name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* The pixel pattern of the fixture: image i, pixel j. */
static unsigned tiny_pixel(uint32_t i, uint32_t j)
{
    return (j + i) % 3 ? (i * 31 + j * 7) & 255 : 0;
}

/* Writes an IDX pair into the temporary directory (as t10k-*), with knobs to break it. */
struct idx_knobs {
    uint32_t n_images, n_labels;
    uint32_t img_magic, lab_magic;
    uint32_t rows, cols;
    uint8_t bad_label;  /* written as label 1 when nonzero */
    size_t cut_pixels;  /* bytes dropped from the end of the pixel data */
    size_t extra_bytes; /* bytes added after the labels */
};

static void write_idx(const struct idx_knobs *k)
{
    size_t npix = (size_t)k->n_images * k->rows * k->cols;
    size_t ilen = 16 + npix - k->cut_pixels, llen = 8 + k->n_labels + k->extra_bytes, i;
    unsigned char *img = calloc(1, 16 + npix), *lab = calloc(1, llen);

    assert_non_null(img);
    assert_non_null(lab);
    put_be32(img, k->img_magic);
    put_be32(img + 4, k->n_images);
    put_be32(img + 8, k->rows);
    put_be32(img + 12, k->cols);
    for (i = 0; i < npix; i++)
        img[16 + i] = (unsigned char)(i * 13);
    put_be32(lab, k->lab_magic);
    put_be32(lab + 4, k->n_labels);
    for (i = 0; i < k->n_labels; i++)
        lab[8 + i] = (unsigned char)(i % 10);
    if (k->bad_label && k->n_labels > 1)
        lab[8 + 1] = k->bad_label;
    write_gz("t10k-images-idx3-ubyte.gz", img, ilen);
    write_gz("t10k-labels-idx1-ubyte.gz", lab, llen);
    free(img);
    free(lab);
}

static const struct idx_knobs idx_good = {
    .n_images = 3,
    .n_labels = 3,
    .img_magic = 2051,
    .lab_magic = 2049,
    .rows = 28,
    .cols = 28,
};

/* Loads the temporary IDX pair and expects failure rv with all of the given words in why. */
static void expect_idx_error(int rv_want, const char *w1, const char *w2)
{
    struct flr_dataset d;
    char why[512] = "";
    int rv = flr_fmnist_load(&d, tmpdir, 0, why, sizeof(why));

    if (rv != rv_want || strstr(why, w1) == NULL || (w2 && strstr(why, w2) == NULL))
        print_error("rv %d (%s), why: %s\n", rv, flr_errname(rv), why);
    assert_int_equal(rv, rv_want);
    assert_non_null(strstr(why, w1));
    if (w2 != NULL)
        assert_non_null(strstr(why, w2));
    assert_null(d.x);
    assert_null(d.y);
    assert_int_equal(strchr(why, '\n'), NULL);
}

/* --- Fashion-MNIST -------------------------------------------------------------------- */

static void fmnist_tiny_fixture_loads_scaled_pixels_and_labels(void **state)
{
    static const uint8_t labels[4] = {3, 0, 9, 5};
    struct flr_dataset d;
    char dir[512], why[256] = "";
    uint32_t i, j;

    (void)state;
    src_path(dir, sizeof(dir), "fmnist-tiny");
    assert_int_equal(flr_fmnist_load(&d, dir, 0, why, sizeof(why)), 0);
    assert_int_equal(d.kind, FLR_DATA_FMNIST);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.dim, FLR_FMNIST_DIM);
    assert_null(d.feat);
    for (i = 0; i < 4; i++) {
        assert_int_equal(d.y[i], labels[i]);
        for (j = 0; j < FLR_FMNIST_DIM; j++)
            assert_float_equal(d.x[i * FLR_FMNIST_DIM + j], tiny_pixel(i, j) / 255.0, 1e-7);
    }
    flr_dataset_fini(&d);
    assert_null(d.x);
    assert_int_equal(d.n, 0);
}

static void fmnist_missing_file_names_file_and_package(void **state)
{
    struct flr_dataset d;
    char dir[512], why[512] = "";

    (void)state;
    src_path(dir, sizeof(dir), "fmnist-tiny");
    assert_int_equal(flr_fmnist_load(&d, dir, 1, why, sizeof(why)), FLR_ENOT_FOUND);
    assert_non_null(strstr(why, "train-images-idx3-ubyte.gz: not found"));
    assert_non_null(strstr(why, "dataset-fashion-mnist"));
}

static void fmnist_good_pair_in_tmp_loads(void **state)
{
    struct flr_dataset d;
    char why[256];

    (void)state;
    write_idx(&idx_good);
    assert_int_equal(flr_fmnist_load(&d, tmpdir, 0, why, sizeof(why)), 0);
    assert_int_equal(d.n, 3);
    assert_float_equal(d.x[5], (unsigned char)(5 * 13) / 255.0, 1e-7);
    assert_int_equal(d.y[2], 2);
    flr_dataset_fini(&d);
}

static void fmnist_bad_image_magic_is_format_error(void **state)
{
    struct idx_knobs k = idx_good;

    (void)state;
    k.img_magic = 2049;
    write_idx(&k);
    expect_idx_error(FLR_EFORMAT, "t10k-images-idx3-ubyte.gz: bad magic number 2049", NULL);
}

static void fmnist_bad_label_magic_is_format_error(void **state)
{
    struct idx_knobs k = idx_good;

    (void)state;
    k.lab_magic = 2051;
    write_idx(&k);
    expect_idx_error(FLR_EFORMAT, "t10k-labels-idx1-ubyte.gz: bad magic number 2051", NULL);
}

static void fmnist_wrong_image_size_is_format_error(void **state)
{
    struct idx_knobs k = idx_good;

    (void)state;
    k.rows = 27;
    write_idx(&k);
    expect_idx_error(FLR_EFORMAT, "images are 27x28, expected 28x28", NULL);
}

static void fmnist_count_mismatch_is_format_error(void **state)
{
    struct idx_knobs k = idx_good;

    (void)state;
    k.n_labels = 2;
    write_idx(&k);
    expect_idx_error(FLR_EFORMAT, "t10k-labels-idx1-ubyte.gz: 2 labels but 3 images", NULL);
}

static void fmnist_label_out_of_range_is_format_error(void **state)
{
    struct idx_knobs k = idx_good;

    (void)state;
    k.bad_label = 10;
    write_idx(&k);
    expect_idx_error(FLR_EFORMAT, "label 10 out of range at item 1", NULL);
}

static void fmnist_truncated_pixels_are_format_error(void **state)
{
    struct idx_knobs k = idx_good;

    (void)state;
    k.cut_pixels = 100;
    write_idx(&k);
    expect_idx_error(FLR_EFORMAT, "t10k-images-idx3-ubyte.gz: truncated", NULL);
}

static void fmnist_trailing_bytes_are_format_error(void **state)
{
    struct idx_knobs k = idx_good;

    (void)state;
    k.extra_bytes = 1;
    write_idx(&k);
    expect_idx_error(FLR_EFORMAT, "t10k-labels-idx1-ubyte.gz: trailing data", NULL);
}

static void fmnist_truncated_gzip_stream_is_format_error(void **state)
{
    char path[512];
    unsigned char buf[4096];
    size_t len;
    FILE *f;

    (void)state;
    write_idx(&idx_good);
    /* Cut the compressed file in half: zlib sees the stream end early. */
    tmp_path(path, sizeof(path), "t10k-images-idx3-ubyte.gz");
    f = fopen(path, "rb");
    assert_non_null(f);
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(len > 40);
    write_plain("t10k-images-idx3-ubyte.gz", buf, len / 2);
    expect_idx_error(FLR_EFORMAT, "t10k-images-idx3-ubyte.gz: ", NULL);
}

static void fmnist_real_test_set_is_sane(void **state)
{
    struct flr_dataset d;
    char path[512], why[512] = "";
    uint32_t count[FLR_FMNIST_CLASSES] = {0}, i;
    double sum = 0;
    float lo = 1, hi = 0;

    (void)state;
    snprintf(path, sizeof(path), "%s/t10k-images-idx3-ubyte.gz", fmnist_dir());
    if (access(path, R_OK) != 0)
        skip();
    assert_int_equal(flr_fmnist_load(&d, fmnist_dir(), 0, why, sizeof(why)), 0);
    assert_int_equal(d.n, 10000);
    for (i = 0; i < d.n; i++)
        count[d.y[i]]++;
    for (i = 0; i < FLR_FMNIST_CLASSES; i++)
        assert_int_equal(count[i], 1000);
    for (i = 0; i < d.n * FLR_FMNIST_DIM; i++) {
        sum += d.x[i];
        lo = d.x[i] < lo ? d.x[i] : lo;
        hi = d.x[i] > hi ? d.x[i] : hi;
    }
    assert_float_equal(lo, 0, 0);
    assert_float_equal(hi, 1, 0);
    /* The test set's mean pixel is about 0.2868. */
    assert_float_equal(sum / ((double)d.n * FLR_FMNIST_DIM), 0.2868, 0.002);
    flr_dataset_fini(&d);
}

/* --- CTR -------------------------------------------------------------------------------- */

/* Splits a line of the fixture and hashes it the way the loader must. */
static void expected_features(const char *line, uint32_t bits, uint64_t *feat, uint8_t *y)
{
    const char *p = line;
    uint32_t col = 0;

    for (;;) {
        const char *q = strchr(p, '\t');
        size_t len = q ? (size_t)(q - p) : strcspn(p, "\r\n");
        if (col == 0)
            *y = (uint8_t)(p[0] - '0');
        else
            feat[col - 1] = flr_ctr_feature(col - 1, p, len, bits);
        col++;
        if (q == NULL)
            break;
        p = q + 1;
    }
    assert_int_equal(col, FLR_CTR_FIELDS);
    feat[FLR_CTR_FIELDS - 1] = 0;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *s;
    long len;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = malloc((size_t)len + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)len, f), (size_t)len);
    s[len] = '\0';
    fclose(f);
    return s;
}

/* Checks d against the fixture's text, row by row. */
static void check_against_fixture(const struct flr_dataset *d, uint32_t bits, uint32_t rows)
{
    char path[512], *text, *line, *save = NULL;
    uint64_t feat[FLR_CTR_FIELDS];
    uint32_t r = 0, j;
    uint8_t y;

    src_path(path, sizeof(path), "ctr20.tsv");
    text = read_text(path);
    for (line = strtok_r(text, "\n", &save); line && r < rows;
         line = strtok_r(NULL, "\n", &save), r++) {
        expected_features(line, bits, feat, &y);
        assert_int_equal(d->y[r], y);
        for (j = 0; j < FLR_CTR_FIELDS; j++)
            assert_int_equal(d->feat[(size_t)r * FLR_CTR_FIELDS + j], feat[j]);
    }
    assert_int_equal(r, rows);
    free(text);
}

static void ctr_fixture_loads_twenty_rows(void **state)
{
    struct flr_dataset d;
    char path[512], why[256] = "";
    uint32_t i, j, ones = 0;

    (void)state;
    src_path(path, sizeof(path), "ctr20.tsv");
    assert_int_equal(flr_ctr_load(&d, path, 20, 0, why, sizeof(why)), 0);
    assert_int_equal(d.kind, FLR_DATA_CTR);
    assert_int_equal(d.n, 20);
    assert_int_equal(d.dim, FLR_CTR_FIELDS);
    assert_null(d.x);
    for (i = 0; i < d.n; i++) {
        ones += d.y[i];
        for (j = 0; j + 1 < FLR_CTR_FIELDS; j++) {
            uint64_t f = d.feat[(size_t)i * FLR_CTR_FIELDS + j];
            assert_true(f != 0 && f < (1u << 20));
        }
        assert_int_equal(d.feat[(size_t)i * FLR_CTR_FIELDS + FLR_CTR_FIELDS - 1], 0);
    }
    assert_true(ones > 0 && ones < 20);
    check_against_fixture(&d, 20, 20);
    flr_dataset_fini(&d);
}

static void ctr_max_rows_stops_early(void **state)
{
    struct flr_dataset d;
    char path[512], why[256] = "";

    (void)state;
    src_path(path, sizeof(path), "ctr20.tsv");
    assert_int_equal(flr_ctr_load(&d, path, 12, 5, why, sizeof(why)), 0);
    assert_int_equal(d.n, 5);
    check_against_fixture(&d, 12, 5);
    flr_dataset_fini(&d);
}

static void ctr_gzip_crlf_and_missing_final_newline_read_alike(void **state)
{
    struct flr_dataset d;
    char path[512], why[256] = "", *text, *crlf, *p, *o;

    (void)state;
    src_path(path, sizeof(path), "ctr20.tsv");
    text = read_text(path);
    crlf = malloc(2 * strlen(text) + 1);
    assert_non_null(crlf);
    for (p = text, o = crlf; *p; p++) {
        if (*p == '\n')
            *o++ = '\r';
        *o++ = *p;
    }
    /* Drop the final "\r\n". */
    o -= 2;
    write_gz("ctr.tsv.gz", crlf, (size_t)(o - crlf));
    tmp_path(path, sizeof(path), "ctr.tsv.gz");
    assert_int_equal(flr_ctr_load(&d, path, 16, 0, why, sizeof(why)), 0);
    assert_int_equal(d.n, 20);
    check_against_fixture(&d, 16, 20);
    flr_dataset_fini(&d);
    free(crlf);
    free(text);
}

/* Writes the fixture's first three lines with line 2 replaced, loads, expects an error. */
static void expect_ctr_error(const char *line2, const char *want)
{
    struct flr_dataset d;
    char src[512], path[512], why[512] = "", *text, *buf, *l1, *l3;
    int rv;

    src_path(src, sizeof(src), "ctr20.tsv");
    text = read_text(src);
    l1 = text;
    l3 = strchr(strchr(text, '\n') + 1, '\n') + 1;
    *strchr(text, '\n') = '\0';
    *strchr(l3, '\n') = '\0';
    buf = malloc(strlen(l1) + strlen(line2) + strlen(l3) + 4);
    assert_non_null(buf);
    sprintf(buf, "%s\n%s\n%s\n", l1, line2, l3);
    write_plain("bad.tsv", buf, strlen(buf));
    tmp_path(path, sizeof(path), "bad.tsv");
    rv = flr_ctr_load(&d, path, 20, 0, why, sizeof(why));
    if (rv != FLR_EFORMAT || strstr(why, want) == NULL)
        print_error("rv %d, why: %s\n", rv, why);
    assert_int_equal(rv, FLR_EFORMAT);
    assert_non_null(strstr(why, "bad.tsv:2: "));
    assert_non_null(strstr(why, want));
    assert_null(d.feat);
    assert_null(d.y);
    free(buf);
    free(text);
}

/* A valid line with label lab and the given column count (ints 1, cats "0a0b0c0d"). */
static void make_line(char *buf, size_t len, const char *lab, int cols)
{
    int c;

    snprintf(buf, len, "%s", lab);
    for (c = 1; c < cols; c++)
        snprintf(buf + strlen(buf), len - strlen(buf), "\t%s", c <= 13 ? "1" : "0a0b0c0d");
}

static void ctr_wrong_column_count_names_file_and_line(void **state)
{
    char line[1024];

    (void)state;
    make_line(line, sizeof(line), "1", 39);
    expect_ctr_error(line, "39 columns, expected 40");
    make_line(line, sizeof(line), "1", 41);
    expect_ctr_error(line, "41 columns, expected 40");
    expect_ctr_error("", "bad label");
}

static void ctr_bad_label_names_file_and_line(void **state)
{
    char line[1024];

    (void)state;
    make_line(line, sizeof(line), "2", 40);
    expect_ctr_error(line, "bad label '2'");
    make_line(line, sizeof(line), "", 40);
    expect_ctr_error(line, "bad label ''");
    make_line(line, sizeof(line), "10", 40);
    expect_ctr_error(line, "bad label '10'");
}

static void ctr_bad_integer_names_column(void **state)
{
    char line[1024], *p;

    (void)state;
    make_line(line, sizeof(line), "0", 40);
    p = strchr(strchr(line, '\t') + 1, '\t') + 1; /* I2 */
    *p = 'x';
    expect_ctr_error(line, "column I2: bad integer 'x'");
}

static void ctr_truncated_gzip_is_format_error(void **state)
{
    struct flr_dataset d;
    char path[512], why[512] = "", *text, *gz;
    size_t len;
    FILE *f;

    (void)state;
    src_path(path, sizeof(path), "ctr20.tsv");
    text = read_text(path);
    write_gz("cut.tsv.gz", text, strlen(text));
    tmp_path(path, sizeof(path), "cut.tsv.gz");
    gz = read_text(path);
    f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    fclose(f);
    write_plain("cut.tsv.gz", gz, len - 12); /* loses the trailer and some data */
    assert_int_equal(flr_ctr_load(&d, path, 20, 0, why, sizeof(why)), FLR_EFORMAT);
    assert_non_null(strstr(why, "cut.tsv.gz"));
    assert_null(d.feat);
    free(gz);
    free(text);
}

static void ctr_missing_file_and_bad_hash_bits(void **state)
{
    struct flr_dataset d;
    char path[512], why[256] = "";

    (void)state;
    tmp_path(path, sizeof(path), "nope.tsv");
    assert_int_equal(flr_ctr_load(&d, path, 20, 0, why, sizeof(why)), FLR_ENOT_FOUND);
    assert_non_null(strstr(why, "nope.tsv: not found"));
    src_path(path, sizeof(path), "ctr20.tsv");
    assert_int_equal(flr_ctr_load(&d, path, 7, 0, why, sizeof(why)), FLR_EINVAL);
    assert_int_equal(flr_ctr_load(&d, path, 41, 0, why, sizeof(why)), FLR_EINVAL);
    write_plain("empty.tsv", "", 0);
    tmp_path(path, sizeof(path), "empty.tsv");
    assert_int_equal(flr_ctr_load(&d, path, 20, 0, why, sizeof(why)), FLR_EFORMAT);
    assert_non_null(strstr(why, "no rows"));
}

static uint64_t feat_s(uint32_t field, const char *s, uint32_t bits)
{
    return flr_ctr_feature(field, s, strlen(s), bits);
}

static void ctr_feature_buckets_integers_by_log2(void **state)
{
    (void)state;
    /* floor(log2(1 + x)): 0 -> 0, 1..2 -> 1, 3..6 -> 2, 7..14 -> 3. */
    assert_int_equal(feat_s(0, "1", 30), feat_s(0, "2", 30));
    assert_int_equal(feat_s(0, "3", 30), feat_s(0, "6", 30));
    assert_int_not_equal(feat_s(0, "6", 30), feat_s(0, "7", 30));
    assert_int_not_equal(feat_s(0, "0", 30), feat_s(0, "1", 30));
    assert_int_equal(feat_s(0, "7", 30), feat_s(0, "14", 30));
    /* Negative values share a bucket; empty has its own. */
    assert_int_equal(feat_s(1, "-1", 30), feat_s(1, "-3", 30));
    assert_int_not_equal(feat_s(1, "-1", 30), feat_s(1, "", 30));
    assert_int_not_equal(feat_s(1, "-1", 30), feat_s(1, "0", 30));
    assert_int_not_equal(feat_s(1, "", 30), feat_s(1, "0", 30));
    /* Huge values saturate instead of wrapping. */
    assert_int_equal(feat_s(2, "99999999999999999999999", 30),
                     feat_s(2, "18446744073709551615", 30));
}

static void ctr_feature_depends_on_field_and_value(void **state)
{
    (void)state;
    assert_int_not_equal(feat_s(13, "68fd1e64", 30), feat_s(14, "68fd1e64", 30));
    assert_int_not_equal(feat_s(13, "68fd1e64", 30), feat_s(13, "68fd1e65", 30));
    assert_int_equal(feat_s(13, "68fd1e64", 30), feat_s(13, "68fd1e64", 30));
    assert_int_not_equal(feat_s(0, "5", 30), feat_s(1, "5", 30));
    /* The same value at fewer bits is the same hash, masked. */
    assert_int_equal(feat_s(20, "abc", 30) & 0xfff, feat_s(20, "abc", 12) & 0xfff);
    /* The last field is the bias. */
    assert_int_equal(feat_s(FLR_CTR_FIELDS - 1, "anything", 30), 0);
}

static void ctr_feature_never_takes_the_bias_id(void **state)
{
    char val[16];
    uint32_t field, v, below = 0;

    (void)state;
    /* At 8 bits about 1 in 256 values would hash to 0 without the remap. */
    for (field = 0; field + 1 < FLR_CTR_FIELDS; field++) {
        for (v = 0; v < 2000; v++) {
            uint64_t f;
            snprintf(val, sizeof(val), "%08x", v * 2654435761u);
            f = flr_ctr_feature(field, val, strlen(val), 8);
            assert_int_not_equal(f, 0);
            assert_true(f < 256);
            below += f == 1;
        }
    }
    assert_true(below > 0);
}

/* --- partition -------------------------------------------------------------------------- */

static void partition_keeps_every_nth_sample(void **state)
{
    struct flr_dataset d = {.kind = FLR_DATA_FMNIST, .n = 10, .dim = FLR_FMNIST_DIM};
    struct flr_dataset c = {.kind = FLR_DATA_CTR, .n = 10, .dim = FLR_CTR_FIELDS};
    uint32_t i, j;

    (void)state;
    d.x = malloc(10 * FLR_FMNIST_DIM * sizeof(float));
    d.y = malloc(10);
    c.feat = malloc(10 * FLR_CTR_FIELDS * sizeof(uint64_t));
    c.y = malloc(10);
    for (i = 0; i < 10; i++) {
        d.y[i] = c.y[i] = (uint8_t)i;
        for (j = 0; j < FLR_FMNIST_DIM; j++)
            d.x[i * FLR_FMNIST_DIM + j] = (float)(i * 1000 + j);
        for (j = 0; j < FLR_CTR_FIELDS; j++)
            c.feat[i * FLR_CTR_FIELDS + j] = i * 100 + j;
    }
    flr_dataset_partition(&d, 1, 3);
    flr_dataset_partition(&c, 2, 3);
    assert_int_equal(d.n, 3);
    assert_int_equal(c.n, 3);
    for (i = 0; i < 3; i++) {
        assert_int_equal(d.y[i], 1 + 3 * i);
        assert_int_equal(c.y[i], 2 + 3 * i);
        for (j = 0; j < FLR_FMNIST_DIM; j++)
            assert_float_equal(d.x[i * FLR_FMNIST_DIM + j], (1 + 3 * i) * 1000 + j, 0);
        for (j = 0; j < FLR_CTR_FIELDS; j++)
            assert_int_equal(c.feat[i * FLR_CTR_FIELDS + j], (2 + 3 * i) * 100 + j);
    }
    flr_dataset_partition(&d, 0, 1);
    assert_int_equal(d.n, 3);
    flr_dataset_partition(&d, 3, 4); /* more parts than samples: empty */
    assert_int_equal(d.n, 0);
    flr_dataset_fini(&d);
    flr_dataset_fini(&c);
}

/* --- metrics ---------------------------------------------------------------------------- */

static double auc_brute(const float *s, const uint8_t *y, uint32_t n)
{
    double num = 0, pairs = 0;
    uint32_t i, j;

    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++)
            if (y[i] && !y[j]) {
                pairs++;
                num += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
            }
    return num / pairs;
}

static void auc_known_values(void **state)
{
    const float perfect[4] = {0.1f, 0.2f, 0.8f, 0.9f}, hand[4] = {0.1f, 0.4f, 0.35f, 0.8f};
    const float ties[4] = {0.5f, 0.5f, 0.5f, 0.9f}, flat[4] = {0.3f, 0.3f, 0.3f, 0.3f};
    const uint8_t y[4] = {0, 0, 1, 1}, yt[4] = {0, 1, 0, 1}, none[4] = {0, 0, 0, 0};

    (void)state;
    assert_float_equal(flr_auc(perfect, y, 4), 1.0, 1e-12);
    assert_float_equal(flr_auc(perfect, yt, 4), 0.75, 1e-12);
    assert_float_equal(flr_auc(hand, y, 4), 0.75, 1e-12);
    assert_float_equal(flr_auc(ties, yt, 4), 0.75, 1e-12);
    assert_float_equal(flr_auc(flat, y, 4), 0.5, 1e-12);
    assert_float_equal(flr_auc(perfect, none, 4), 0.5, 0);
    assert_float_equal(flr_auc(perfect, y, 0), 0.5, 0);
}

static void auc_matches_pairwise_count_with_many_ties(void **state)
{
    (void)state;
    enum { N = 1500 };
    float s[N];
    uint8_t y[N];
    struct flr_rng r;
    uint32_t i;

    flr_rng_seed(&r, 42);
    for (i = 0; i < N; i++) {
        s[i] = (float)(flr_rng_next(&r) % 37) / 37.0f; /* many ties */
        y[i] = flr_rng_uniform(&r) < 0.2 + 0.6 * s[i];
    }
    assert_float_equal(flr_auc(s, y, N), auc_brute(s, y, N), 1e-12);
}

static void logloss_known_values_and_clamping(void **state)
{
    const float p[4] = {0.5f, 0.9f, 0.2f, 0.0f};
    const uint8_t y[4] = {1, 1, 0, 0};
    const float bad[2] = {0.0f, 1.0f};
    const uint8_t ybad[2] = {1, 0};
    double want = (-log(0.5) - log(0.9f) - log(1 - 0.2f) - log(1 - 1e-7)) / 4;

    (void)state;
    assert_float_equal(flr_logloss(p, y, 4), want, 1e-9);
    /* Certain and wrong costs -log(1e-7), not infinity. */
    assert_float_equal(flr_logloss(bad, ybad, 2), -log(1e-7), 1e-6);
    assert_float_equal(flr_logloss(p, y, 0), 0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fmnist_tiny_fixture_loads_scaled_pixels_and_labels),
        cmocka_unit_test(fmnist_missing_file_names_file_and_package),
        cmocka_unit_test(fmnist_good_pair_in_tmp_loads),
        cmocka_unit_test(fmnist_bad_image_magic_is_format_error),
        cmocka_unit_test(fmnist_bad_label_magic_is_format_error),
        cmocka_unit_test(fmnist_wrong_image_size_is_format_error),
        cmocka_unit_test(fmnist_count_mismatch_is_format_error),
        cmocka_unit_test(fmnist_label_out_of_range_is_format_error),
        cmocka_unit_test(fmnist_truncated_pixels_are_format_error),
        cmocka_unit_test(fmnist_trailing_bytes_are_format_error),
        cmocka_unit_test(fmnist_truncated_gzip_stream_is_format_error),
        cmocka_unit_test(fmnist_real_test_set_is_sane),
        cmocka_unit_test(ctr_fixture_loads_twenty_rows),
        cmocka_unit_test(ctr_max_rows_stops_early),
        cmocka_unit_test(ctr_gzip_crlf_and_missing_final_newline_read_alike),
        cmocka_unit_test(ctr_wrong_column_count_names_file_and_line),
        cmocka_unit_test(ctr_bad_label_names_file_and_line),
        cmocka_unit_test(ctr_bad_integer_names_column),
        cmocka_unit_test(ctr_truncated_gzip_is_format_error),
        cmocka_unit_test(ctr_missing_file_and_bad_hash_bits),
        cmocka_unit_test(ctr_feature_buckets_integers_by_log2),
        cmocka_unit_test(ctr_feature_depends_on_field_and_value),
        cmocka_unit_test(ctr_feature_never_takes_the_bias_id),
        cmocka_unit_test(partition_keeps_every_nth_sample),
        cmocka_unit_test(auc_known_values),
        cmocka_unit_test(auc_matches_pairwise_count_with_many_ties),
        cmocka_unit_test(logloss_known_values_and_clamping),
    };

    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
