// Distillation losses of one position against a teacher record, with their gradients
// with respect to the student's logits. The record lists n ids with target
// probabilities q (from a top-k cache, renormalised, or counts / draws of a sample cache)
// and a tail: the target mass of every other id, taken as one bucket. The student's
// distribution is bucketed the same way, s_t being its mass outside the listed ids.
#include "CKernels.h"
#include <math.h>
#include <string.h>

typedef struct {
    const float *z;
    int64_t vocab;
    float inv_t;
    int kind;
    const int32_t *ids;
    const float *q;
    const int64_t *offsets;
    const float *tails;
    float scale;
    float *grad;
    double *losses;
    float *scratch;
    uint8_t *mask;
} kd_job;

static void kd_task(void *ctx, int64_t r, int thread) {
    const kd_job *j = ctx;
    const int64_t V = j->vocab;
    const float *z = j->z + r * V;
    float *g = j->grad + r * V;
    float *e = j->scratch + (int64_t)thread * V;
    uint8_t *mask = j->mask + (int64_t)thread * V;
    const int64_t a = j->offsets[r], b = j->offsets[r + 1];
    const int n = (int)(b - a);
    const int32_t *ids = j->ids + a;
    const float *q = j->q + a;
    const double qt = j->tails[r];
    float mx;
    const double total = ckpt_softmax_terms(z, V, j->inv_t, e, &mx);
    const double lse = log(total);
    // Student mass outside the listed ids, summed directly (no cancellation).
    for (int i = 0; i < n; i++) mask[ids[i]] = 1;
    double rest = 0;
    for (int64_t v = 0; v < V; v++) if (!mask[v]) rest += e[v];
    for (int i = 0; i < n; i++) mask[ids[i]] = 0;
    const double st = rest / total;
    const double log_st = rest > 0 ? log(rest) - lse : -INFINITY;
    const double c = (double)j->scale * (double)j->inv_t;
    double loss = 0;
    if (j->kind == CKPT_KD_FORWARD) {
        // KL(q ‖ s) over the buckets; d/dz = (s − q̃)/T, where q̃ spreads the tail's target
        // over the other ids in proportion to the student's own probabilities.
        if (qt > 0) loss += qt * (log(qt) - log_st);
        const double tail_share = qt > 0 && st > 0 ? qt / st : 0;
        for (int64_t v = 0; v < V; v++) {
            const double s = e[v] / total;
            g[v] += (float)(c * (s - tail_share * s));
        }
        for (int i = 0; i < n; i++) {
            const int32_t id = ids[i];
            const double s = e[id] / total;
            const double log_s = ((double)z[id] - mx) * j->inv_t - lse;
            if (q[i] > 0) loss += q[i] * (log((double)q[i]) - log_s);
            // Undo the tail term written above, put the listed id's own.
            g[id] += (float)(c * (tail_share * s - q[i]));
        }
    } else {
        // Reverse KL, JSD and TVD: f = Σ_b φ(s_b, q_b); with a_b = ∂φ/∂s_b (less any
        // constant), d/dz_v = (s_v/T)(a_{b(v)} − Σ_b s_b a_b).
        double a_tail = 0, mean = 0;
        for (int pass = 0; pass < 2; pass++) {
            // pass 0: loss and Σ s_b a_b; pass 1: gradient.
            for (int i = -1; i < n; i++) {
                double sb, qb;
                if (i < 0) { sb = st; qb = qt; }
                else { sb = exp(((double)z[ids[i]] - mx) * j->inv_t - lse); qb = q[i]; }
                double ab, fb;
                if (j->kind == CKPT_KD_REVERSE) {
                    const double ls = sb > 0 ? log(sb) : -INFINITY, lq = log(qb);
                    fb = sb > 0 ? sb * (ls - lq) : 0;
                    ab = sb > 0 ? ls - lq : 0;
                } else if (j->kind == CKPT_KD_JSD) {
                    const double m = 0.5 * (sb + qb);
                    fb = (qb > 0 ? 0.5 * qb * log(qb / m) : 0) + (sb > 0 ? 0.5 * sb * log(sb / m) : 0);
                    ab = sb > 0 ? 0.5 * log(sb / m) : 0;
                } else {
                    fb = 0.5 * fabs(sb - qb);
                    ab = sb > qb ? 0.5 : (sb < qb ? -0.5 : 0);
                }
                if (pass == 0) { loss += fb; mean += sb * ab; if (i < 0) a_tail = ab; }
                else if (i >= 0) {
                    g[ids[i]] += (float)(c * sb * (ab - a_tail));
                }
            }
            if (pass == 0) {
                for (int64_t v = 0; v < V; v++) g[v] += (float)(c * (e[v] / total) * (a_tail - mean));
            }
        }
    }
    j->losses[r] = loss;
}

void ckpt_kd_loss_rows(const float *z, int64_t rows, int64_t vocab, float inv_temperature, int kind, const int32_t *ids,
                       const float *q, const int64_t *offsets, const float *tails, float scale, float *grad, double *losses,
                       float *scratch, uint8_t *mask) {
    kd_job j = { z, vocab, inv_temperature, kind, ids, q, offsets, tails, scale, grad, losses, scratch, mask };
    ckpt_pool_run(rows, kd_task, &j);
}

typedef struct {
    const float *z;
    int64_t vocab;
    const int32_t *labels;
    float scale;
    float *grad;
    double *losses;
    float *scratch;
} ce_job;

static void ce_task(void *ctx, int64_t r, int thread) {
    const ce_job *j = ctx;
    const float *z = j->z + r * j->vocab;
    float *g = j->grad + r * j->vocab;
    float *e = j->scratch + (int64_t)thread * j->vocab;
    float mx;
    const double total = ckpt_softmax_terms(z, j->vocab, 1, e, &mx);
    const int32_t y = j->labels[r];
    if (y < 0) { j->losses[r] = 0; return; }  // no label (end of sequence)
    j->losses[r] = log(total) - ((double)z[y] - mx);
    for (int64_t v = 0; v < j->vocab; v++) g[v] += (float)(j->scale * (e[v] / total));
    g[y] -= j->scale;
}

void ckpt_ce_loss_rows(const float *z, int64_t rows, int64_t vocab, const int32_t *labels, float scale, float *grad,
                       double *losses, float *scratch) {
    ce_job j = { z, vocab, labels, scale, grad, losses, scratch };
    ckpt_pool_run(rows, ce_task, &j);
}
