/*
 * metrics.h - a job's status document (status.h) as Prometheus metrics, in the text
 * exposition format 0.0.4: a HELP and a TYPE line before each family's samples, label
 * values escaped (backslash, double quote, newline), counters named *_total, durations in
 * seconds.  The metric names are listed in docs/operations.md.
 */
#ifndef FLR_METRICS_H
#define FLR_METRICS_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#define FLR_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Renders doc.  *out is malloc'd, NUL-terminated, owned by the caller; *len (may be NULL)
 * is its length.  Fields missing from doc or null produce no sample; a family without
 * samples produces no lines at all.  Returns 0 or FLR_ENOMEM.
 */
int flr_metrics_render(const json_t *doc, char **out, size_t *len);

/*
 * Writes s as a label value: backslash, double quote and newline escaped.  Exposed for
 * tests.  Returns 0 or -1 when the stream fails.
 */
int flr_metrics_write_label(FILE *f, const char *s);

#endif
