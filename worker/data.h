/*
 * data.h - training and test data: Fashion-MNIST (IDX, gzip'd) and Criteo-format CTR TSV.
 *
 * Fashion-MNIST: images become n x 784 floats in [0, 1], labels 0..9.
 *
 * CTR (Criteo Kaggle TSV): each line is
 *     label \t I1..I13 \t C1..C26
 * with integer columns possibly empty and categorical columns 8-hex-digit strings possibly
 * empty.  Each sample becomes FLR_CTR_FIELDS feature ids (hashed to hash_bits bits):
 * field f's value v is hashed as flr_mix64(f << 56 ^ hash(v)) & mask, so features of
 * different fields do not collide by construction more than the hash does; integer
 * columns are bucketed by floor(log2(1 + x)) (negative and empty values get their own
 * bucket) and hashed the same way.  The last id of every sample is the bias feature 0.
 */
#ifndef FLR_DATA_H
#define FLR_DATA_H

#include <stdint.h>

#define FLR_FMNIST_DIM     784
#define FLR_FMNIST_CLASSES 10
#define FLR_CTR_INT        13
#define FLR_CTR_CAT        26
#define FLR_CTR_FIELDS     (FLR_CTR_INT + FLR_CTR_CAT + 1) /* + bias */

enum flr_data_kind { FLR_DATA_FMNIST = 0, FLR_DATA_CTR = 1 };

struct flr_dataset {
    enum flr_data_kind kind;
    uint32_t n;     /* samples */
    uint32_t dim;   /* FLR_FMNIST_DIM, or FLR_CTR_FIELDS ids per sample */
    float *x;       /* FMNIST: n * dim floats */
    uint64_t *feat; /* CTR: n * dim feature ids (row ids, < 2^hash_bits) */
    uint8_t *y;     /* labels: 0..9 or 0/1 */
};

/* Loads Fashion-MNIST from dir (train-*.gz or t10k-*.gz). why names the file and problem. */
int flr_fmnist_load(struct flr_dataset *d, const char *dir, int train, char *why, size_t whylen);

/* Loads a CTR TSV file; at most max_rows rows (0 = all). hash_bits in 8..40. */
int flr_ctr_load(struct flr_dataset *d, const char *path, uint32_t hash_bits, uint64_t max_rows,
                 char *why, size_t whylen);

/* Keeps only this worker's partition: samples i with i % nparts == part (in place). */
void flr_dataset_partition(struct flr_dataset *d, uint32_t part, uint32_t nparts);

/* Frees the arrays (the struct itself is the caller's). */
void flr_dataset_fini(struct flr_dataset *d);

/* Hashes one CTR feature: field index (0..FLR_CTR_FIELDS-1) and raw value text. */
uint64_t flr_ctr_feature(uint32_t field, const char *val, size_t len, uint32_t hash_bits);

/* Evaluation helpers. */
double flr_auc(const float *scores, const uint8_t *labels, uint32_t n);
double flr_logloss(const float *probs, const uint8_t *labels, uint32_t n);

#endif
