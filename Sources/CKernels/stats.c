#include "CKernels.h"
#include <math.h>

void ckpt_stats_f32(const float *x, int64_t n, ckpt_stats *out) {
    int64_t count = 0, nans = 0, infs = 0;
    double sum = 0, mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (isnan(v)) { nans++; continue; }
        if (isinf(v)) { infs++; continue; }
        count++;
        sum += v;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
    }
    const double mean = count ? sum / (double)count : 0.0;
    // Second pass against the run's own mean keeps the variance free of cancellation.
    double m2 = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (!isfinite(v)) continue;
        const double dv = (double)v - mean;
        m2 += dv * dv;
    }
    out->count = count;
    out->nan_count = nans;
    out->inf_count = infs;
    out->min = mn;
    out->max = mx;
    out->mean = mean;
    out->m2 = m2;
}
