/*
 * flr-datagen - writes a synthetic click-through data set in the Criteo Kaggle TSV format,
 * together with the ground-truth model that labelled it.
 *
 * Output (in --out-dir):
 *   train.tsv   --rows lines       label \t I1..I13 \t C1..C26
 *   test.tsv    --test-rows lines  the same format, drawn from an independent stream
 *   truth.json  the true model's AUC and log-loss on the test rows (computed from the true
 *               click probabilities), the click rates, and the parameters used
 *
 * The ground-truth model is a logistic regression over the same kind of features flr's
 * loader builds (data.h), so that sparse LR can learn it:
 *
 *   categorical column c (26): categories k = 0..vocab-1, drawn from a Zipf law with
 *       exponent --zipf (rank = k + 1); weight w[c][k] ~ N(0, (cat_scale * f_c *
 *       (k + 1)^-rank_decay)^2), where f_c in [0.25, 1] is the column's informativeness
 *       and DG_DEAD_CAT columns have f_c = 0.  The decay keeps the signal where the data
 *       is: without it, much of the score would sit in categories seen only a few dozen
 *       times in a million rows, which no learner can estimate well.  Written as 8 hex digits: a
 * bijective 32-bit mix of k, salted per column. integer column j (13): a Lomax (Pareto II) count
 * floor(s_j (u^(-1/a_j) - 1)), heavy tailed, with per-column shape a_j and scale s_j; column I2 is
 * -1..-3 one time in ten, as in Criteo.  DG_LIVE_INT columns carry a weight per bucket floor(log2(1
 * + x)) (and one for negative values) ~ N(0, int_scale^2); the rest carry none. every field is
 * empty with probability --empty-prob and then contributes nothing. score = bias + the weights
 * above;  label ~ Bernoulli(sigmoid(score)). The bias is set by bisection on a calibration sample
 * so that the mean click probability is --click-rate.
 *
 * With the defaults (vocab 10000, zipf 1.1, cat-scale 0.65, rank-decay 0.3, int-scale 0.4)
 * the true model's test AUC is 0.78-0.79 (seeds 1-3), and sparse LR over flr's hashed
 * features (hash_bits 20 or 22, Adagrad lr 0.02, 1-2 epochs) trained on the 1M rows comes
 * within 0.006 of it (model_ctr.c has the figures).
 *
 * Rows are generated in one pass with a seeded generator per file, formatted by hand into
 * a large buffer (no printf per field), and written to a temporary name that is renamed
 * into place when complete.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/err.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/prog.h"
#include "common/util.h"
#include "data.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

#define DG_MAX_VOCAB  1000000
#define DG_DEAD_CAT   6  /* categorical columns without influence on the label */
#define DG_LIVE_INT   6  /* integer columns with influence on the label */
#define DG_BUCKETS    65 /* floor(log2(1 + x)) = 0..63, and 64 for negative values */
#define DG_CALIB_ROWS 200000
#define DG_OUT_BUF    (4u << 20)
#define DG_LINE_MAX   1024 /* 1 + 13 * 21 + 26 * 9 + 39 separators fits well below */

struct dg_cfg {
    long long rows;
    long long test_rows;
    char out_dir[1024];
    long long seed;
    long long vocab;
    double zipf;
    double cat_scale;
    double int_scale;
    double rank_decay;
    double click_rate;
    double empty_prob;
    char log_level[16];
};

static const struct flr_opt dg_opts[] = {
    FLR_OPT_I("rows", struct dg_cfg, rows, "1000000", 1, 2000000000, "N",
              "training rows (train.tsv)"),
    FLR_OPT_I("test-rows", struct dg_cfg, test_rows, "100000", 1, 2000000000, "N",
              "test rows (test.tsv)"),
    FLR_OPT_S("out-dir", struct dg_cfg, out_dir, ".", "DIR",
              "directory for train.tsv, test.tsv and truth.json (created if missing)"),
    FLR_OPT_I("seed", struct dg_cfg, seed, "1", 0, INT64_MAX, "N", "random seed"),
    FLR_OPT_I("vocab", struct dg_cfg, vocab, "10000", 2, DG_MAX_VOCAB, "N",
              "categories per categorical column"),
    FLR_OPT_D("zipf", struct dg_cfg, zipf, "1.1", 0, 5, "S",
              "Zipf exponent of the category frequencies (0 = uniform)"),
    FLR_OPT_D("cat-scale", struct dg_cfg, cat_scale, "0.65", 0, 10, "SD",
              "standard deviation of the categorical weights"),
    FLR_OPT_D("int-scale", struct dg_cfg, int_scale, "0.4", 0, 10, "SD",
              "standard deviation of the integer-bucket weights"),
    FLR_OPT_D("rank-decay", struct dg_cfg, rank_decay, "0.3", 0, 2, "B",
              "categorical weights shrink as rank^-B: rare categories matter less"),
    FLR_OPT_D("click-rate", struct dg_cfg, click_rate, "0.25", 0.001, 0.999, "P",
              "target mean click probability (sets the bias)"),
    FLR_OPT_D("empty-prob", struct dg_cfg, empty_prob, "0.03", 0, 1, "P",
              "probability that a field is left empty"),
    FLR_OPT_LOG_LEVEL(struct dg_cfg, "notice"),
    {0},
};

/* The ground-truth model and the samplers. */
struct dg_model {
    uint32_t vocab;
    double empty_prob;
    double bias;
    /* Zipf over ranks 1..vocab as a Walker alias table: slot i keeps itself with
     * probability keep[i] / 2^32, else yields alias[i]. */
    uint32_t *keep;
    uint32_t *alias;
    float *catw;                /* FLR_CTR_CAT x vocab weights */
    uint32_t salt[FLR_CTR_CAT]; /* per-column salt of the hex strings */
    float catf[FLR_CTR_CAT];    /* informativeness f_c */
    float intw[FLR_CTR_INT][DG_BUCKETS];
    int int_live[FLR_CTR_INT];
    double int_shape[FLR_CTR_INT]; /* Lomax shape a_j */
    double int_scale[FLR_CTR_INT]; /* Lomax scale s_j */
};

/* One generated row, before formatting. */
struct dg_row {
    uint8_t label;
    uint8_t int_empty[FLR_CTR_INT];
    uint8_t cat_empty[FLR_CTR_CAT];
    int64_t ints[FLR_CTR_INT];
    uint32_t cats[FLR_CTR_CAT];
    double p; /* true click probability */
};

static int dg_alias_build(struct dg_model *m, double s)
{
    const uint32_t n = m->vocab;
    double *q = malloc(n * sizeof(*q)), sum = 0;
    uint32_t *small = malloc(n * sizeof(*small)), *large = malloc(n * sizeof(*large));
    uint32_t ns = 0, nl = 0, i;

    m->keep = malloc(n * sizeof(*m->keep));
    m->alias = malloc(n * sizeof(*m->alias));
    if (!q || !small || !large || !m->keep || !m->alias) {
        free(q);
        free(small);
        free(large);
        return FLR_ENOMEM;
    }
    for (i = 0; i < n; i++)
        sum += q[i] = pow((double)i + 1, -s);
    for (i = 0; i < n; i++) {
        q[i] *= n / sum;
        m->alias[i] = i;
        if (q[i] < 1)
            small[ns++] = i;
        else
            large[nl++] = i;
    }
    /* Vose's method: pair each short slot with a tall one. */
    while (ns > 0 && nl > 0) {
        uint32_t a = small[--ns], b = large[nl - 1];
        m->keep[a] = (uint32_t)fmin(q[a] * 4294967296.0, 4294967295.0);
        m->alias[a] = b;
        q[b] -= 1 - q[a];
        if (q[b] < 1) {
            nl--;
            small[ns++] = b;
        }
    }
    while (nl > 0)
        m->keep[large[--nl]] = UINT32_MAX;
    while (ns > 0) /* rounding leftovers */
        m->keep[small[--ns]] = UINT32_MAX;
    free(q);
    free(small);
    free(large);
    return 0;
}

static uint32_t dg_zipf(const struct dg_model *m, struct flr_rng *r)
{
    uint64_t u = flr_rng_next(r);
    uint32_t i = (uint32_t)(((u >> 32) * m->vocab) >> 32);

    return (uint32_t)u <= m->keep[i] ? i : m->alias[i];
}

/* A bijection on 32 bits (the murmur3 finaliser), so distinct categories never share a
 * hex string within a column. */
static uint32_t dg_mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    x *= 0xc2b2ae35u;
    x ^= x >> 16;
    return x;
}

/* Picks k distinct indices of 0..n-1 into flag[] (set to 1), from r. */
static void dg_pick(int *flag, uint32_t n, uint32_t k, struct flr_rng *r)
{
    uint32_t order[FLR_CTR_CAT], i;

    for (i = 0; i < n; i++)
        order[i] = i;
    for (i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(flr_rng_next(r) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    for (i = 0; i < n; i++)
        flag[i] = 0;
    for (i = 0; i < k && i < n; i++)
        flag[order[i]] = 1;
}

static int dg_model_init(struct dg_model *m, const struct dg_cfg *cfg)
{
    int dead[FLR_CTR_CAT];
    struct flr_rng r;
    uint32_t c, j, b;
    int rv;

    memset(m, 0, sizeof(*m));
    m->vocab = (uint32_t)cfg->vocab;
    m->empty_prob = cfg->empty_prob;
    if ((rv = dg_alias_build(m, cfg->zipf)) != 0)
        return rv;
    if ((m->catw = malloc((size_t)FLR_CTR_CAT * m->vocab * sizeof(float))) == NULL)
        return FLR_ENOMEM;

    flr_rng_seed(&r, flr_mix64((uint64_t)cfg->seed ^ 0x6d6f64656cULL));
    dg_pick(dead, FLR_CTR_CAT, DG_DEAD_CAT, &r);
    for (c = 0; c < FLR_CTR_CAT; c++) {
        float *w = m->catw + (size_t)c * m->vocab;
        uint32_t k;
        m->salt[c] = (uint32_t)flr_rng_next(&r);
        m->catf[c] = dead[c] ? 0.0f : (float)(0.25 + 0.75 * flr_rng_uniform(&r));
        for (k = 0; k < m->vocab; k++)
            w[k] = (float)(cfg->cat_scale * m->catf[c] * pow((double)k + 1, -cfg->rank_decay) *
                           flr_rng_normal(&r));
    }
    dg_pick(m->int_live, FLR_CTR_INT, DG_LIVE_INT, &r);
    for (j = 0; j < FLR_CTR_INT; j++) {
        /* Shapes 1..3 and scales 1..300 (log-uniform): from near-binary to long-tailed. */
        m->int_shape[j] = 1.0 + 2.0 * flr_rng_uniform(&r);
        m->int_scale[j] = exp(log(300.0) * flr_rng_uniform(&r));
        for (b = 0; b < DG_BUCKETS; b++)
            m->intw[j][b] = m->int_live[j] ? (float)(cfg->int_scale * flr_rng_normal(&r)) : 0.0f;
    }
    return 0;
}

static void dg_model_fini(struct dg_model *m)
{
    free(m->keep);
    free(m->alias);
    free(m->catw);
}

static uint32_t dg_bucket(int64_t x)
{
    if (x < 0)
        return DG_BUCKETS - 1;
    return 63 - (uint32_t)__builtin_clzll((uint64_t)x + 1);
}

/* Draws one row's features and returns its score without the bias. */
static double dg_draw(const struct dg_model *m, struct flr_rng *r, struct dg_row *row)
{
    const uint64_t empty_cut = (uint64_t)(m->empty_prob * 18446744073709551615.0);
    double s = 0;
    uint32_t j, c;

    for (j = 0; j < FLR_CTR_INT; j++) {
        double u;
        int64_t x;
        row->int_empty[j] = m->empty_prob > 0 && flr_rng_next(r) < empty_cut;
        if (row->int_empty[j])
            continue;
        if (j == 1 && flr_rng_uniform(r) < 0.1) {
            x = -1 - (int64_t)(flr_rng_next(r) % 3); /* -1..-3 */
        } else {
            u = 1.0 - flr_rng_uniform(r); /* (0, 1] */
            double v = m->int_scale[j] * (pow(u, -1.0 / m->int_shape[j]) - 1.0);
            x = v < 1e15 ? (int64_t)v : (int64_t)1e15;
        }
        row->ints[j] = x;
        s += m->intw[j][dg_bucket(x)];
    }
    for (c = 0; c < FLR_CTR_CAT; c++) {
        row->cat_empty[c] = m->empty_prob > 0 && flr_rng_next(r) < empty_cut;
        if (row->cat_empty[c])
            continue;
        row->cats[c] = dg_zipf(m, r);
        s += m->catw[(size_t)c * m->vocab + row->cats[c]];
    }
    return s;
}

static double dg_sigmoid(double s)
{
    return 1.0 / (1.0 + exp(-s));
}

/* Sets the bias so that the mean click probability over a calibration sample is the
 * target (bisection: the mean is increasing in the bias). */
static int dg_calibrate(struct dg_model *m, const struct dg_cfg *cfg)
{
    double *score = malloc(DG_CALIB_ROWS * sizeof(*score)), lo = -30, hi = 30;
    struct flr_rng r;
    struct dg_row row;
    uint32_t i, it;

    if (score == NULL)
        return FLR_ENOMEM;
    flr_rng_seed(&r, flr_mix64((uint64_t)cfg->seed ^ 0x63616c6962ULL));
    for (i = 0; i < DG_CALIB_ROWS; i++)
        score[i] = dg_draw(m, &r, &row);
    for (it = 0; it < 60; it++) {
        double mid = (lo + hi) / 2, mean = 0;
        for (i = 0; i < DG_CALIB_ROWS; i++)
            mean += dg_sigmoid(score[i] + mid);
        if (mean / DG_CALIB_ROWS < cfg->click_rate)
            lo = mid;
        else
            hi = mid;
    }
    m->bias = (lo + hi) / 2;
    free(score);
    return 0;
}

static char *dg_put_i64(char *p, int64_t v)
{
    char tmp[24];
    uint64_t u;
    int n = 0;

    if (v < 0) {
        *p++ = '-';
        u = (uint64_t)0 - (uint64_t)v;
    } else {
        u = (uint64_t)v;
    }
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static char *dg_put_hex8(char *p, uint32_t v)
{
    static const char hex[] = "0123456789abcdef";
    int i;

    for (i = 7; i >= 0; i--)
        *p++ = hex[(v >> (4 * i)) & 15];
    return p;
}

static char *dg_format(const struct dg_model *m, const struct dg_row *row, char *p)
{
    uint32_t j, c;

    *p++ = (char)('0' + row->label);
    for (j = 0; j < FLR_CTR_INT; j++) {
        *p++ = '\t';
        if (!row->int_empty[j])
            p = dg_put_i64(p, row->ints[j]);
    }
    for (c = 0; c < FLR_CTR_CAT; c++) {
        *p++ = '\t';
        if (!row->cat_empty[c])
            p = dg_put_hex8(p, dg_mix32(row->cats[c] + m->salt[c]));
    }
    *p++ = '\n';
    return p;
}

struct dg_stats {
    uint64_t rows, clicks;
    float *p;   /* true probabilities (test file only) */
    uint8_t *y; /* labels (test file only) */
};

/* Writes one file of n rows from the generator stream seeded with seed. */
static int dg_write(const struct dg_model *m, const char *dir, const char *name, uint64_t n,
                    uint64_t seed, struct dg_stats *st, char *why, size_t whylen)
{
    char path[1200], tmp[1300], *buf, *p;
    struct flr_rng r;
    struct dg_row row;
    uint64_t i;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((buf = malloc(DG_OUT_BUF + DG_LINE_MAX)) == NULL) {
        snprintf(why, whylen, "%s: out of memory", path);
        return FLR_ENOMEM;
    }
    if ((f = fopen(tmp, "wb")) == NULL) {
        snprintf(why, whylen, "%s: %s", tmp, strerror(errno));
        free(buf);
        return FLR_EIO;
    }
    flr_rng_seed(&r, seed);
    p = buf;
    for (i = 0; i < n; i++) {
        row.p = dg_sigmoid(m->bias + dg_draw(m, &r, &row));
        row.label = flr_rng_uniform(&r) < row.p;
        st->clicks += row.label;
        if (st->p != NULL) {
            st->p[i] = (float)row.p;
            st->y[i] = row.label;
        }
        p = dg_format(m, &row, p);
        if ((size_t)(p - buf) >= DG_OUT_BUF) {
            if (fwrite(buf, 1, (size_t)(p - buf), f) != (size_t)(p - buf))
                goto out_io;
            p = buf;
        }
    }
    st->rows = n;
    if (fwrite(buf, 1, (size_t)(p - buf), f) != (size_t)(p - buf) || fflush(f) != 0)
        goto out_io;
    if (fclose(f) != 0) {
        f = NULL;
        goto out_io;
    }
    f = NULL;
    if (rename(tmp, path) != 0)
        goto out_io;
    free(buf);
    return 0;

out_io:
    snprintf(why, whylen, "%s: %s", f ? tmp : path, strerror(errno));
    if (f != NULL)
        fclose(f);
    remove(tmp);
    free(buf);
    return FLR_EIO;
}

/* Creates dir and its missing parents. */
static int dg_mkdirs(const char *dir, char *why, size_t whylen)
{
    char path[1024];
    size_t i, len = strlen(dir);

    if (len == 0 || len >= sizeof(path)) {
        snprintf(why, whylen, "--out-dir: bad directory name");
        return FLR_ECONFIG;
    }
    memcpy(path, dir, len + 1);
    for (i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            snprintf(why, whylen, "%s: %s", path, strerror(errno));
            return FLR_EIO;
        }
        path[i] = dir[i];
    }
    return 0;
}

static int dg_write_truth(const struct dg_model *m, const struct dg_cfg *cfg,
                          const struct dg_stats *train, const struct dg_stats *test, double auc,
                          double logloss, char *why, size_t whylen)
{
    json_t *doc, *params, *live = json_array(), *dead = json_array();
    char path[1200], tmp[1300];
    uint32_t i;
    int rv = 0;

    for (i = 0; i < FLR_CTR_INT; i++) {
        char name[8];
        snprintf(name, sizeof(name), "I%u", i + 1);
        if (m->int_live[i])
            json_array_append_new(live, json_string(name));
    }
    for (i = 0; i < FLR_CTR_CAT; i++) {
        char name[8];
        snprintf(name, sizeof(name), "C%u", i + 1);
        if (m->catf[i] == 0)
            json_array_append_new(dead, json_string(name));
    }
    params = json_pack("{sI sI sf sf sf sf sf sf so so}", "seed", (json_int_t)cfg->seed, "vocab",
                       (json_int_t)cfg->vocab, "zipf", cfg->zipf, "cat_scale", cfg->cat_scale,
                       "int_scale", cfg->int_scale, "target_click_rate", cfg->click_rate,
                       "empty_prob", cfg->empty_prob, "bias", m->bias, "informative_int_columns",
                       live, "uninformative_cat_columns", dead);
    doc = json_pack("{ss sf sf sf sf sf sI sI so}", "format", "criteo-tsv", "auc", auc, "logloss",
                    logloss, "click_rate",
                    (double)(train->clicks + test->clicks) / (double)(train->rows + test->rows),
                    "click_rate_train", (double)train->clicks / (double)train->rows,
                    "click_rate_test", (double)test->clicks / (double)test->rows, "train_rows",
                    (json_int_t)train->rows, "test_rows", (json_int_t)test->rows, "params", params);
    if (doc == NULL) {
        snprintf(why, whylen, "truth.json: out of memory");
        return FLR_ENOMEM;
    }
    snprintf(path, sizeof(path), "%s/truth.json", cfg->out_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (json_dump_file(doc, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0 ||
        rename(tmp, path) != 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        remove(tmp);
        rv = FLR_EIO;
    }
    json_decref(doc);
    return rv;
}

int main(int argc, char **argv)
{
    static struct dg_cfg cfg;
    const struct flr_opts_info info = {
        "flr-datagen",
        "flr-datagen: writes a synthetic Criteo-format CTR data set and its ground truth",
        PACKAGE_VERSION};
    struct dg_stats train = {0}, test = {0};
    struct dg_model m;
    char why[1400];
    int rv;
    int64_t t0 = flr_now_ms();
    double auc, logloss;

    if ((rv = flr_prog_init(dg_opts, &cfg, &info, argc, argv, cfg.log_level)) >= 0)
        return rv;

    if ((rv = dg_mkdirs(cfg.out_dir, why, sizeof(why))) != 0) {
        flr_err("dg.outdir", "%s", why);
        return 1;
    }
    if ((rv = dg_model_init(&m, &cfg)) != 0 || (rv = dg_calibrate(&m, &cfg)) != 0) {
        flr_err("dg.model", "cannot build the ground-truth model: %s", flr_strerror(rv));
        dg_model_fini(&m);
        return 1;
    }
    test.p = malloc((size_t)cfg.test_rows * sizeof(*test.p));
    test.y = malloc((size_t)cfg.test_rows);
    if (test.p == NULL || test.y == NULL) {
        flr_err("dg.nomem", "out of memory for %lld test rows", cfg.test_rows);
        rv = FLR_ENOMEM;
        goto out;
    }
    if ((rv = dg_write(&m, cfg.out_dir, "train.tsv", (uint64_t)cfg.rows,
                       flr_mix64((uint64_t)cfg.seed ^ 0x747261696eULL), &train, why,
                       sizeof(why))) != 0 ||
        (rv = dg_write(&m, cfg.out_dir, "test.tsv", (uint64_t)cfg.test_rows,
                       flr_mix64((uint64_t)cfg.seed ^ 0x74657374ULL), &test, why, sizeof(why))) !=
            0) {
        flr_err("dg.write", "%s", why);
        goto out;
    }
    auc = flr_auc(test.p, test.y, (uint32_t)cfg.test_rows);
    logloss = flr_logloss(test.p, test.y, (uint32_t)cfg.test_rows);
    if ((rv = dg_write_truth(&m, &cfg, &train, &test, auc, logloss, why, sizeof(why))) != 0) {
        flr_err("dg.write", "%s", why);
        goto out;
    }
    flr_notice("dg.done",
               "%s: %llu train and %llu test rows, click rate %.4f, true model test AUC %.4f, "
               "log-loss %.4f (%.1f s)",
               cfg.out_dir, (unsigned long long)train.rows, (unsigned long long)test.rows,
               (double)(train.clicks + test.clicks) / (double)(train.rows + test.rows), auc,
               logloss, (flr_now_ms() - t0) / 1000.0);
out:
    free(test.p);
    free(test.y);
    dg_model_fini(&m);
    return rv == 0 ? 0 : 1;
}
