// Forward and backward passes of the decoder's trainable operations, side by side as in
// llm.c: f32 activations [tokens, channels] row-major, weights [out, in]. Backward
// functions overwrite input gradients and add into weight gradients (so micro-batches
// accumulate). Matrix products run on the pool through ckpt_gemm_f32's packed panels.
#include "CKernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *checked_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();  // out of memory: nothing sensible to return from a kernel
    return p;
}

// ---- linear: y = x · Wᵀ ----------------------------------------------------------------------

typedef struct {
    const float *w;
    int64_t ldw;
    int transposed;
    int64_t rows, k;
    const float *x;
    int64_t ldx, nt;
    float *y;
    int64_t ldy;
    float *packs;
    int64_t pack_floats;
    int accumulate;
} gemm_job;

static void gemm_task(void *ctx, int64_t task, int thread) {
    const gemm_job *j = ctx;
    const int64_t r0 = task * CKPT_PANEL_ROWS;
    const int64_t nr = j->rows - r0 < CKPT_PANEL_ROWS ? j->rows - r0 : CKPT_PANEL_ROWS;
    const float *w = j->transposed ? j->w + r0 : j->w + r0 * j->ldw;
    float *pack = j->packs + (int64_t)thread * j->pack_floats;
    if (j->accumulate) ckpt_gemm_f32_add(w, j->ldw, j->transposed, nr, j->k, j->x, j->ldx, j->nt, j->y + r0, j->ldy, pack);
    else ckpt_gemm_f32(w, j->ldw, j->transposed, nr, j->k, j->x, j->ldx, j->nt, j->y + r0, j->ldy, pack);
}

// y[t·ldy + r] (=, or += when accumulate) Σ_i W(r, i) · x[t·ldx + i], on the pool.
static void gemm_mt(const float *w, int64_t ldw, int transposed, int64_t rows, int64_t k, const float *x, int64_t ldx, int64_t nt,
                    float *y, int64_t ldy, int accumulate) {
    const int threads = ckpt_pool_threads();
    const int64_t pack_floats = CKPT_PANEL_ROWS * k + 32;
    gemm_job j = { w, ldw, transposed, rows, k, x, ldx, nt, y, ldy, NULL, pack_floats, accumulate };
    j.packs = checked_malloc(sizeof(float) * (size_t)(threads * pack_floats));
    ckpt_pool_run((rows + CKPT_PANEL_ROWS - 1) / CKPT_PANEL_ROWS, gemm_task, &j);
    free(j.packs);
}

void ckpt_linear_forward(const float *x, int64_t ntok, int64_t in, const float *w, int64_t out, float *y) {
    gemm_mt(w, in, 0, out, in, x, in, ntok, y, out, 0);
}

void ckpt_linear_forward_strided(const float *x, int64_t ntok, int64_t in, const float *w, int64_t out, float *y, int64_t ldy,
                                 int accumulate) {
    gemm_mt(w, in, 0, out, in, x, in, ntok, y, ldy, accumulate);
}

void ckpt_linear_backward_strided(const float *dy, int64_t lddy, const float *x, const float *w, int64_t ntok, int64_t in,
                                  int64_t out, float *dx, int accumulate_dx, float *dw) {
    // dx[t, i] = Σ_o dy[t, o] W[o, i]: W read transposed.
    if (dx) gemm_mt(w, in, 1, in, out, dy, lddy, ntok, dx, in, accumulate_dx);
    if (dw) {
        // dW[o, i] += Σ_t dy[t, o] x[t, i]: rows i of xᵀ against "tokens" o of dyᵀ.
        float *dyt = checked_malloc(sizeof(float) * (size_t)(ntok * out));
        // Transposed in 32 × 32 tiles, so reads and writes both stay in cache lines.
        for (int64_t t0 = 0; t0 < ntok; t0 += 32)
            for (int64_t o0 = 0; o0 < out; o0 += 32) {
                const int64_t t1 = t0 + 32 < ntok ? t0 + 32 : ntok, o1 = o0 + 32 < out ? o0 + 32 : out;
                for (int64_t t = t0; t < t1; t++)
                    for (int64_t o = o0; o < o1; o++) dyt[o * ntok + t] = dy[t * lddy + o];
            }
        gemm_mt(x, in, 1, in, ntok, dyt, ntok, out, dw, in, 1);
        free(dyt);
    }
}

void ckpt_linear_backward(const float *dy, const float *x, const float *w, int64_t ntok, int64_t in, int64_t out,
                          float *dx, float *dw) {
    ckpt_linear_backward_strided(dy, out, x, w, ntok, in, out, dx, 0, dw);
}

// ---- RMSNorm: y = x · rstd · w, rstd = 1/√(mean(x²) + eps) ----------------------------------

void ckpt_rmsnorm_forward(const float *x, const float *w, int64_t ntok, int64_t c, float eps, float *y, float *rstd) {
    for (int64_t t = 0; t < ntok; t++) {
        const float *xr = x + t * c;
        double ss = 0;
        for (int64_t i = 0; i < c; i++) ss += (double)xr[i] * xr[i];
        const float r = 1.0f / sqrtf((float)(ss / (double)c) + eps);
        rstd[t] = r;
        for (int64_t i = 0; i < c; i++) y[t * c + i] = xr[i] * r * w[i];
    }
}

void ckpt_rmsnorm_backward(const float *dy, const float *x, const float *w, const float *rstd, int64_t ntok, int64_t c,
                           float *dx, float *dw) {
    for (int64_t t = 0; t < ntok; t++) {
        const float *xr = x + t * c, *g = dy + t * c;
        const float r = rstd[t];
        // dx = r·(w⊙dy) − r³/c · x · Σ(x⊙w⊙dy)
        double dot = 0;
        for (int64_t i = 0; i < c; i++) dot += (double)xr[i] * w[i] * g[i];
        const float k = (float)(dot / (double)c) * r * r * r;
        for (int64_t i = 0; i < c; i++) {
            if (dx) dx[t * c + i] = r * w[i] * g[i] - k * xr[i];
            if (dw) dw[i] += xr[i] * r * g[i];
        }
    }
}

// ---- LayerNorm: y = (x − μ)·r·w + b, r = 1/√(var + eps) --------------------------------------

void ckpt_layernorm_forward(const float *x, const float *w, const float *b, int64_t ntok, int64_t c, float eps, float *y,
                            float *mean, float *rstd) {
    for (int64_t t = 0; t < ntok; t++) {
        const float *xr = x + t * c;
        double sum = 0, ss = 0;
        for (int64_t i = 0; i < c; i++) sum += xr[i];
        const float mu = (float)(sum / (double)c);
        for (int64_t i = 0; i < c; i++) { const double d = (double)xr[i] - mu; ss += d * d; }
        const float r = 1.0f / sqrtf((float)(ss / (double)c) + eps);
        mean[t] = mu;
        rstd[t] = r;
        for (int64_t i = 0; i < c; i++) y[t * c + i] = (xr[i] - mu) * r * w[i] + (b ? b[i] : 0.0f);
    }
}

void ckpt_layernorm_backward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd, int64_t ntok,
                             int64_t c, float *dx, float *dw, float *db) {
    for (int64_t t = 0; t < ntok; t++) {
        const float *xr = x + t * c, *g = dy + t * c;
        const float mu = mean[t], r = rstd[t];
        // With x̂ = (x − μ)·r and ĝ = w⊙dy: dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂)).
        double sg = 0, sgx = 0;
        for (int64_t i = 0; i < c; i++) {
            const double gh = (double)w[i] * g[i], xh = ((double)xr[i] - mu) * r;
            sg += gh;
            sgx += gh * xh;
        }
        const float mg = (float)(sg / (double)c), mgx = (float)(sgx / (double)c);
        for (int64_t i = 0; i < c; i++) {
            const float xh = (xr[i] - mu) * r;
            if (dx) dx[t * c + i] = r * (w[i] * g[i] - mg - xh * mgx);
            if (dw) dw[i] += xh * g[i];
            if (db) db[i] += g[i];
        }
    }
}

// ---- squared ReLU: y = max(u, 0)² ------------------------------------------------------------

void ckpt_relu_squared_backward(const float *dy, const float *u, int64_t n, float *du) {
    for (int64_t i = 0; i < n; i++) du[i] = u[i] > 0.0f ? 2.0f * u[i] * dy[i] : 0.0f;
}

// ---- SwiGLU: y = silu(g) · u -----------------------------------------------------------------

void ckpt_swiglu_backward(const float *dy, const float *g, const float *u, int64_t n, float *dg, float *du) {
    for (int64_t i = 0; i < n; i++) {
        const float sg = 1.0f / (1.0f + expf(-g[i]));
        const float silu = g[i] * sg;
        du[i] = dy[i] * silu;
        dg[i] = dy[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
}

// ---- GELU (tanh form) gate: y = gelu(g) · u, gelu(x) = ½x(1 + tanh(c(x + 0.044715x³))) ----------

void ckpt_gelu_tanh_mul_exact(const float *g, const float *u, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        y[i] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))) * u[i];
    }
}

void ckpt_geglu_backward(const float *dy, const float *g, const float *u, int64_t n, float *dg, float *du) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        const float th = tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x));
        const float gelu = 0.5f * x * (1.0f + th);
        const float dgelu = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
        du[i] = dy[i] * gelu;
        dg[i] = dy[i] * u[i] * dgelu;
    }
}

// ---- soft-capping: y = cap · tanh(x / cap) ------------------------------------------------------

void ckpt_softcap_backward(const float *y, float *dy, int64_t n, float cap) {
    for (int64_t i = 0; i < n; i++) {
        const float th = y[i] / cap;
        dy[i] *= 1 - th * th;
    }
}

// ---- causal attention with grouped KV heads --------------------------------------------------
// q [T, H·d], k and v [T, Hkv·d]; head h reads KV head h / (H / Hkv). Row t sees keys
// 0 … t (window > 0: only the last `window` of them). The forward pass keeps each row's
// log-sum-exp (lse [H, T]) and not its probabilities, so memory does not grow as T²: the
// backward pass recomputes them a block of queries at a time, as FlashAttention does.

typedef struct {
    const float *q, *k, *v, *dout;
    float *o, *lse, *dq, *dk, *dv;
    int64_t ntok;
    int heads, kv_heads, d, window;
    float scale, softcap;
} attn_job;

static inline int64_t first_key(int64_t t, int window) { return window > 0 && t + 1 > window ? t + 1 - window : 0; }

// Per head, per block of QB queries against only the keys the block can see (which skips
// most of the masked upper triangle), everything is a product of [QB, d] and [QB, keys]
// matrices done by the packed GEMM: S = Q Kᵀ, P = softmax(mask(S·scale)), O = P V;
// backward dP = dO Vᵀ, dS = P ⊙ (dP − Σ P⊙dP), dQ = dS K, and dK += dSᵀ Q, dV += Pᵀ dO
// accumulated over the query blocks.
#define QB 64

// Scaled (and soft-capped) scores of row t in place.
static inline void attn_scores(float *p, int64_t k0, int64_t t, float scale, float softcap) {
    for (int64_t s = k0; s <= t; s++) {
        p[s] *= scale;
        if (softcap > 0) p[s] = softcap * tanhf(p[s] / softcap);
    }
}

static void attn_forward_task(void *ctx, int64_t h, int thread) {
    (void)thread;
    const attn_job *j = ctx;
    const int64_t T = j->ntok, d = j->d, ldq = (int64_t)j->heads * d, ldk = (int64_t)j->kv_heads * d;
    const int64_t kvh = h / (j->heads / j->kv_heads);
    float *P = checked_malloc(sizeof(float) * (size_t)(QB * T));
    float *pack = checked_malloc(sizeof(float) * (size_t)(CKPT_PANEL_ROWS * (T > d ? T : d) + 32));
    for (int64_t t0 = 0; t0 < T; t0 += QB) {
        const int64_t t1 = t0 + QB < T ? t0 + QB : T, kb = first_key(t0, j->window);
        ckpt_gemm_f32(j->k + kb * ldk + kvh * d, ldk, 0, t1 - kb, d, j->q + t0 * ldq + h * d, ldq, t1 - t0, P + kb, T, pack);
        for (int64_t t = t0; t < t1; t++) {
            float *p = P + (t - t0) * T;
            const int64_t k0 = first_key(t, j->window);
            attn_scores(p, k0, t, j->scale, j->softcap);
            float mx = -INFINITY;
            for (int64_t s = k0; s <= t; s++) if (p[s] > mx) mx = p[s];
            double sum = 0;
            for (int64_t s = k0; s <= t; s++) { p[s] = expf(p[s] - mx); sum += p[s]; }
            const float inv = (float)(1.0 / sum);
            for (int64_t s = kb; s < t1; s++) p[s] = s >= k0 && s <= t ? p[s] * inv : 0;
            j->lse[h * T + t] = mx + (float)log(sum);
        }
        // O[t, i] = Σ_s P[t, s] V[s, i]: V read transposed.
        ckpt_gemm_f32(j->v + kb * ldk + kvh * d, ldk, 1, d, t1 - kb, P + kb, T, t1 - t0, j->o + t0 * ldq + h * d, ldq, pack);
    }
    free(P);
    free(pack);
}

void ckpt_attention_forward(const float *q, const float *k, const float *v, int64_t ntok, int heads, int kv_heads, int head_dim,
                            float scale, float softcap, int window, float *out, float *lse) {
    attn_job j = { q, k, v, NULL, out, lse, NULL, NULL, NULL, ntok, heads, kv_heads, head_dim, window, scale, softcap };
    ckpt_pool_run(heads, attn_forward_task, &j);
}

// One task per query head; its share of dK and dV goes to a per-head buffer (dk, dv here
// are [heads, T, d], zeroed), summed over each KV head's group afterwards.
static void attn_backward_task(void *ctx, int64_t h, int thread) {
    (void)thread;
    const attn_job *j = ctx;
    const int64_t T = j->ntok, d = j->d, ldq = (int64_t)j->heads * d, ldk = (int64_t)j->kv_heads * d;
    const int64_t kvh = h / (j->heads / j->kv_heads);
    float *P = checked_malloc(sizeof(float) * (size_t)(QB * T));
    float *dS = checked_malloc(sizeof(float) * (size_t)(QB * T));
    float *tr = checked_malloc(sizeof(float) * (size_t)(QB * T));
    float *pack = checked_malloc(sizeof(float) * (size_t)(CKPT_PANEL_ROWS * (T > d ? T : d) + 32));
    const float *go = j->dout + h * d, *qh = j->q + h * d;
    float *dv = j->dv + h * T * d, *dk = j->dk + h * T * d;
    for (int64_t t0 = 0; t0 < T; t0 += QB) {
        const int64_t t1 = t0 + QB < T ? t0 + QB : T, kb = first_key(t0, j->window), nq = t1 - t0, nk = t1 - kb;
        // P again from the scores and each row's log-sum-exp; dP = dO Vᵀ beside it.
        ckpt_gemm_f32(j->k + kb * ldk + kvh * d, ldk, 0, nk, d, qh + t0 * ldq, ldq, nq, P + kb, T, pack);
        ckpt_gemm_f32(j->v + kb * ldk + kvh * d, ldk, 0, nk, d, go + t0 * ldq, ldq, nq, dS + kb, T, pack);
        for (int64_t t = t0; t < t1; t++) {
            float *p = P + (t - t0) * T, *g = dS + (t - t0) * T, *cap = tr + (t - t0) * T;
            const int64_t k0 = first_key(t, j->window);
            attn_scores(p, k0, t, j->scale, j->softcap);
            const float lse = j->lse[h * T + t];
            double dot = 0;
            for (int64_t s = k0; s <= t; s++) {
                // Through a soft-cap c = cap·tanh(x/cap): dc/dx = 1 − (c/cap)².
                if (j->softcap > 0) { const float th = p[s] / j->softcap; cap[s] = 1 - th * th; }
                p[s] = expf(p[s] - lse);
                dot += (double)p[s] * g[s];
            }
            for (int64_t s = kb; s < t1; s++) {
                if (s < k0 || s > t) { p[s] = 0; g[s] = 0; continue; }
                g[s] = p[s] * (g[s] - (float)dot) * j->scale;
                if (j->softcap > 0) g[s] *= cap[s];
            }
        }
        // dQ = dS K
        ckpt_gemm_f32(j->k + kb * ldk + kvh * d, ldk, 1, d, nk, dS + kb, T, nq, j->dq + t0 * ldq + h * d, ldq, pack);
        // dV += Pᵀ dO and dK += dSᵀ Q over this block's keys: the block transposed into tr
        // (a key's row of nq queries), then one product each.
        for (int pass = 0; pass < 2; pass++) {
            const float *M = pass == 0 ? P : dS;
            for (int64_t t = 0; t < nq; t++)
                for (int64_t s = 0; s < nk; s++) tr[s * QB + t] = M[t * T + kb + s];
            if (pass == 0) ckpt_gemm_f32_add(go + t0 * ldq, ldq, 1, d, nq, tr, QB, nk, dv + kb * d, d, pack);
            else ckpt_gemm_f32_add(qh + t0 * ldq, ldq, 1, d, nq, tr, QB, nk, dk + kb * d, d, pack);
        }
    }
    free(P);
    free(dS);
    free(tr);
    free(pack);
}

void ckpt_attention_backward(const float *dout, const float *q, const float *k, const float *v, const float *lse, int64_t ntok,
                             int heads, int kv_heads, int head_dim, float scale, float softcap, int window, float *dq, float *dk,
                             float *dv) {
    const int64_t T = ntok, d = head_dim, ldk = (int64_t)kv_heads * d;
    float *dkh = calloc((size_t)(heads * T * d), sizeof(float));
    float *dvh = calloc((size_t)(heads * T * d), sizeof(float));
    if (!dkh || !dvh) abort();
    attn_job j = { q, k, v, dout, NULL, (float *)lse, dq, dkh, dvh, ntok, heads, kv_heads, head_dim, window, scale, softcap };
    ckpt_pool_run(heads, attn_backward_task, &j);
    const int group = heads / kv_heads;
    for (int64_t t = 0; t < T; t++)
        for (int g = 0; g < kv_heads; g++) {
            float *ok = dk + t * ldk + (int64_t)g * d, *ov = dv + t * ldk + (int64_t)g * d;
            for (int64_t i = 0; i < d; i++) { ok[i] = 0; ov[i] = 0; }
            for (int hh = g * group; hh < (g + 1) * group; hh++) {
                const float *sk = dkh + ((int64_t)hh * T + t) * d, *sv = dvh + ((int64_t)hh * T + t) * d;
                for (int64_t i = 0; i < d; i++) { ok[i] += sk[i]; ov[i] += sv[i]; }
            }
        }
    free(dkh);
    free(dvh);
}

// ---- AdamW (decoupled weight decay) ---------------------------------------------------------

typedef struct {
    float *w;
    const float *g;
    float *m, *v;
    int64_t n;
    float lr, beta1, beta2, eps, decay, grad_scale;
    double bc1, bc2;
} adamw_job;

#define ADAMW_BLOCK 65536

static void adamw_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const adamw_job *j = ctx;
    const int64_t a = task * ADAMW_BLOCK, b = a + ADAMW_BLOCK < j->n ? a + ADAMW_BLOCK : j->n;
    const float c1 = (float)(1.0 / j->bc1), c2 = (float)(1.0 / j->bc2);
    for (int64_t i = a; i < b; i++) {
        const float g = j->g[i] * j->grad_scale;
        const float m = j->beta1 * j->m[i] + (1 - j->beta1) * g;
        const float v = j->beta2 * j->v[i] + (1 - j->beta2) * g * g;
        j->m[i] = m;
        j->v[i] = v;
        j->w[i] -= j->lr * ((m * c1) / (sqrtf(v * c2) + j->eps) + j->decay * j->w[i]);
    }
}

void ckpt_adamw_update(float *w, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2, float eps,
                       float decay, float grad_scale, int64_t step) {
    adamw_job j = { w, g, m, v, n, lr, beta1, beta2, eps, decay, grad_scale, 1 - pow(beta1, (double)step), 1 - pow(beta2, (double)step) };
    ckpt_pool_run((n + ADAMW_BLOCK - 1) / ADAMW_BLOCK, adamw_task, &j);
}

double ckpt_sum_squares(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

// ---- AdamW with 8-bit blockwise state ---------------------------------------------------------
// Each block of 256 moments keeps one f32 scale (its largest magnitude) and a byte per value
// on a logarithmic grid below it, as bitsandbytes' dynamic maps do, so small moments beside
// large ones keep their relative precision. m: sign bit + 7-bit code, |m| = s·2^(−q/8)
// (q = 127: zero; steps of 9%, down to 1.6e-5·s). v is kept as √v, the quantity the update
// divides by: 8-bit code, √v = s·2^(−q/16) (q = 255: zero; steps of 4.4%, down to 1.6e-5·s,
// so v spans ten decades in a block: a v rounded to zero would blow its weight's step up).

static inline float m_decode(uint8_t c, float s) {
    const int q = c & 0x7F;
    if (q == 127) return 0;
    const float a = s * exp2f(-(float)q / 8);
    return c & 0x80 ? -a : a;
}

static inline uint8_t m_encode(float x, float s) {
    if (x == 0 || s == 0) return 127;
    float q = -8 * log2f(fabsf(x) / s);
    int qi = (int)(q + 0.5f);
    if (qi < 0) qi = 0;
    if (qi > 126) return 127;
    return (uint8_t)(qi | (x < 0 ? 0x80 : 0));
}

static inline float v_decode(uint8_t c, float s) {
    if (c == 255) return 0;
    const float r = s * exp2f(-(float)c / 16);
    return r * r;
}

// x is v, s is the block's largest √v.
static inline uint8_t v_encode(float x, float s) {
    if (x <= 0 || s == 0) return 255;
    int qi = (int)(-16 * log2f(sqrtf(x) / s) + 0.5f);
    if (qi < 0) qi = 0;
    return qi > 254 ? 255 : (uint8_t)qi;
}

typedef struct {
    float *w;
    const float *g;
    uint8_t *mq, *vq;
    float *ms, *vs;
    int64_t n;
    float lr, beta1, beta2, eps, decay, grad_scale;
    double bc1, bc2;
} adamw8_job;

static void adamw8_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const adamw8_job *j = ctx;
    const float c1 = (float)(1.0 / j->bc1), c2 = (float)(1.0 / j->bc2);
    for (int64_t blk = task * 64; blk < (task + 1) * 64; blk++) {
        const int64_t a = blk * CKPT_STATE_BLOCK;
        if (a >= j->n) return;
        const int64_t b = a + CKPT_STATE_BLOCK < j->n ? a + CKPT_STATE_BLOCK : j->n;
        float m[CKPT_STATE_BLOCK], v[CKPT_STATE_BLOCK];
        float mmax = 0, vmax = 0;
        for (int64_t i = a; i < b; i++) {
            const float g = j->g[i] * j->grad_scale;
            const float mi = j->beta1 * m_decode(j->mq[i], j->ms[blk]) + (1 - j->beta1) * g;
            const float vi = j->beta2 * v_decode(j->vq[i], j->vs[blk]) + (1 - j->beta2) * g * g;
            m[i - a] = mi;
            v[i - a] = vi;
            if (fabsf(mi) > mmax) mmax = fabsf(mi);
            if (vi > vmax) vmax = vi;
            j->w[i] -= j->lr * ((mi * c1) / (sqrtf(vi * c2) + j->eps) + j->decay * j->w[i]);
        }
        vmax = sqrtf(vmax);
        j->ms[blk] = mmax;
        j->vs[blk] = vmax;
        for (int64_t i = a; i < b; i++) {
            j->mq[i] = m_encode(m[i - a], mmax);
            j->vq[i] = v_encode(v[i - a], vmax);
        }
    }
}

void ckpt_adamw_update_8bit(float *w, const float *g, uint8_t *m_codes, float *m_scales, uint8_t *v_codes, float *v_scales, int64_t n,
                            float lr, float beta1, float beta2, float eps, float decay, float grad_scale, int64_t step) {
    adamw8_job j = { w, g, m_codes, v_codes, m_scales, v_scales, n, lr, beta1, beta2, eps, decay, grad_scale,
                     1 - pow(beta1, (double)step), 1 - pow(beta2, (double)step) };
    const int64_t blocks = (n + CKPT_STATE_BLOCK - 1) / CKPT_STATE_BLOCK;
    ckpt_pool_run((blocks + 63) / 64, adamw8_task, &j);
}
