/*
 * util.h - small inline helpers shared by every process: clocks, hashing, a seeded
 * random generator, unaligned loads from wire blobs.
 */
#ifndef FLR_UTIL_H
#define FLR_UTIL_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#define FLR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic time in milliseconds and nanoseconds. */
static inline int64_t flr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wall-clock time in milliseconds since the epoch (for reports and records that other
 * processes read; durations within a process use flr_now_ms). */
static inline int64_t flr_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The CLOCK_REALTIME instant ms milliseconds from now: what pthread_cond_timedwait takes. */
static inline struct timespec flr_deadline_ts(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Minor page faults the process has taken so far: how much fresh memory it touched. */
static inline uint64_t flr_minor_faults(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_minflt : 0;
}

static inline int64_t flr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A strong 64-bit finaliser (the splitmix64 mix). Used for shard placement of sparse
 * keys and for the deterministic per-key initialiser. */
static inline uint64_t flr_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Seeded generator (splitmix64 sequence): deterministic, fast, good enough for
 * initialisers, shuffles and synthetic data. */
struct flr_rng {
    uint64_t s;
};

static inline void flr_rng_seed(struct flr_rng *r, uint64_t seed)
{
    r->s = seed;
}

static inline uint64_t flr_rng_next(struct flr_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double flr_rng_uniform(struct flr_rng *r)
{
    return (double)(flr_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller; one value per call, simple over fast). */
static inline double flr_rng_normal(struct flr_rng *r)
{
    double u1 = flr_rng_uniform(r), u2 = flr_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Loads from wire blobs, which carry no alignment guarantee. The compiler turns these
 * memcpy calls into plain moves. */
static inline uint64_t flr_load_u64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline float flr_load_f32(const void *p)
{
    float v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/*
 * Binary search: the index of the first of n elements, stride bytes apart from base, whose
 * u64 (at base + i * stride, aligned) is >= key; n when there is none.  The elements must be
 * in ascending order of that u64: a sorted u64 array (stride 8), or an array of records or
 * structs with base at the field searched on.
 */
static inline size_t flr_lower_bound_u64(const void *base, size_t n, size_t stride, uint64_t key)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (*(const uint64_t *)(const void *)((const char *)base + mid * stride) < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * Asks the kernel to back [p, p + len), a large buffer, with huge pages where it can: a
 * first touch then faults in 2 MiB instead of 4 KiB.  On a virtual machine the first touch
 * of fresh memory one page at a time can cost more than filling it.  Best effort.
 */
static inline void flr_advise_huge(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    const uintptr_t ha = ((uintptr_t)p + huge - 1) & ~(huge - 1),
                    he = ((uintptr_t)p + len) & ~(huge - 1);

    if (he > ha)
        (void)madvise((void *)ha, he - ha, MADV_HUGEPAGE);
#else
    (void)p, (void)len;
#endif
}

/*
 * Prepares [p, p + len), a large buffer about to be written in full (a shard's rows), by
 * asking the kernel instead of taking a trap per page on first touch: back it with huge
 * pages where it can (flr_advise_huge), and fault it in now, a huge page per request.
 * Best effort: a kernel without MADV_POPULATE_WRITE (Linux 5.14) leaves the pages to fault
 * in as usual.
 */
static inline void flr_prefault(void *p, size_t len)
{
    const uintptr_t huge = (uintptr_t)2 << 20, page = 4096;
    const uintptr_t pa = ((uintptr_t)p + page - 1) & ~(page - 1),
                    pe = ((uintptr_t)p + len) & ~(page - 1);

    flr_advise_huge(p, len);
#ifdef MADV_POPULATE_WRITE
    /* A huge page at a time: the kernel holds the process's memory map lock while it
     * populates, and another thread's mmap() or brk() (a large malloc) waits for it. */
    for (uintptr_t at = pa; at < pe; at += huge)
        (void)madvise((void *)at, pe - at < huge ? pe - at : huge, MADV_POPULATE_WRITE);
#endif
    (void)huge, (void)pa, (void)pe;
}

/* Keys: table id in the top 16 bits, row in the low 48. */
#define FLR_KEY_ROW_BITS 48
#define FLR_KEY_ROW_MASK ((UINT64_C(1) << FLR_KEY_ROW_BITS) - 1)

static inline uint64_t flr_key(uint32_t table, uint64_t row)
{
    return ((uint64_t)table << FLR_KEY_ROW_BITS) | (row & FLR_KEY_ROW_MASK);
}

static inline uint32_t flr_key_table(uint64_t key)
{
    return (uint32_t)(key >> FLR_KEY_ROW_BITS);
}

static inline uint64_t flr_key_row(uint64_t key)
{
    return key & FLR_KEY_ROW_MASK;
}

#endif
