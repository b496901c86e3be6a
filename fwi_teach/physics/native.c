/* The acoustic time step of fwi_teach.physics as plain C, for data generation on CPU.
 *
 * Each shot's wavefield evolves independently of every other, so one call advances a
 * range of fields [f0, f1) through all time steps, one field at a time: the three
 * buffers of a field and its model's coefficients (about 0.6 MB for OpenFWI's grid
 * with the thin boundary) stay in the core's L2 cache for the whole run, and there is
 * no synchronisation between steps. Python calls this from one thread per core, each
 * on its own fields, so the result does not depend on the thread count, and a field's
 * arithmetic does not depend on which other fields share its call (the batch size).
 *
 * Update, for the interior cells of a halo-padded (H, W) field:
 *     next = a * p - b * prev + r * (S1 + ratio * S2)
 * with S1 (S2) the sum of the four neighbours at distance 1 (2). The halo stays zero.
 * Then the source sample is added at its cell and the receivers are read; only the
 * active box of the field is updated (see below). The three
 * buffers rotate, so on return they hold the last fields in an order that depends on nt:
 * callers that need the final state must not use this kernel.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define FWI_FTZ 1
#endif

/* Whether any |value| of a row (column) segment exceeds tol; if none does, zero it. */
static int row_active(float *row, int64_t x0, int64_t x1, float tol)
{
    for (int64_t x = x0; x < x1; ++x)
        if (fabsf(row[x]) > tol) return 1;
    memset(row + x0, 0, sizeof(float) * (size_t)(x1 - x0));
    return 0;
}

static int col_active(float *field, int64_t W, int64_t x, int64_t y0, int64_t y1, float tol)
{
    for (int64_t y = y0; y < y1; ++y)
        if (fabsf(field[y * W + x]) > tol) return 1;
    for (int64_t y = y0; y < y1; ++y)
        field[y * W + x] = 0.0f;
    return 0;
}

void fwi_advance(int64_t f0, int64_t f1, int64_t shots, int64_t H, int64_t W, int64_t halo, int64_t nt,
                 float *prev_all, float *cur_all, float *next_all,
                 const float *a_all, const float *b_all, const float *r_all, float ratio,
                 const float *src_amp, const int64_t *src_idx, const float *wavelet, float negligible,
                 int64_t n_rec, const int64_t *rec_idx, float *records)
{
#ifdef FWI_FTZ
    /* Flush denormals to zero on this thread for the duration of the call (and restore
     * the caller's setting): the sponge drives amplitudes below 1e-38, where denormal
     * arithmetic is many times slower. Every field is computed this way whatever the
     * thread or batch, so the records stay deterministic. */
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);
#endif
    const int64_t h = halo, hc = H - 2 * h, wc = W - 2 * h, plane = H * W;
    for (int64_t f = f0; f < f1; ++f) {
        const int64_t m = f / shots; /* the model this shot belongs to */
        const float *a = a_all + m * hc * wc, *b = b_all + m * hc * wc, *r = r_all + m * hc * wc;
        float *prev = prev_all + f * plane, *cur = cur_all + f * plane, *next = next_all + f * plane;
        float *rec = records + f * nt * n_rec;
        /* Active box [y0, y1) x [x0, x1): outside it all three buffers are zero. A step
         * can only make cells within 2 of the box non-zero, so it computes the box grown
         * by 2, then grows the box to the outermost new rows and columns holding a value
         * above tol (negligible x the source's peak amplitude) and sets the rest of the
         * new strip to zero. Ahead of the wavefront the scheme leaves a numerical precursor
         * that decays over a few dozen cells; this keeps its tail, far below float32
         * resolution of the records, from costing the whole grid from the first step.
         * The box never shrinks, and the rule depends only on the field itself, so the
         * result does not depend on the batch or the thread. */
        const int64_t sy = src_idx[f] / W, sx = src_idx[f] % W;
        int64_t y0 = sy, y1 = sy + 1, x0 = sx, x1 = sx + 1;
        float peak = 0.0f;
        for (int64_t t = 0; t < nt; ++t)
            peak = fabsf(wavelet[t]) > peak ? fabsf(wavelet[t]) : peak;
        const float tol = negligible * fabsf(src_amp[f]) * peak;
        for (int64_t t = 0; t < nt; ++t) {
            const int64_t by0 = y0 - 2 > h ? y0 - 2 : h, by1 = y1 + 2 < H - h ? y1 + 2 : H - h;
            const int64_t bx0 = x0 - 2 > h ? x0 - 2 : h, bx1 = x1 + 2 < W - h ? x1 + 2 : W - h;
            for (int64_t y = by0; y < by1; ++y) {
                const float *restrict c = cur + y * W;
                const float *restrict up1 = c - W, *restrict dn1 = c + W;
                const float *restrict up2 = c - 2 * W, *restrict dn2 = c + 2 * W;
                const float *restrict q = prev + y * W;
                float *restrict o = next + y * W;
                const float *restrict ar = a + (y - h) * wc - h, *restrict br = b + (y - h) * wc - h;
                const float *restrict rr = r + (y - h) * wc - h;
                for (int64_t x = bx0; x < bx1; ++x) {
                    const float s1 = (up1[x] + dn1[x]) + (c[x - 1] + c[x + 1]);
                    const float s2 = (up2[x] + dn2[x]) + (c[x - 2] + c[x + 2]);
                    o[x] = ar[x] * c[x] - br[x] * q[x] + rr[x] * (s1 + ratio * s2);
                }
            }
            next[src_idx[f]] += src_amp[f] * wavelet[t];
            for (int64_t k = 0; k < n_rec; ++k)
                rec[t * n_rec + k] = next[rec_idx[k]];
            if (by0 < y0 || by1 > y1 || bx0 < x0 || bx1 > x1) {
                int64_t ny0 = y0, ny1 = y1, nx0 = x0, nx1 = x1;
                for (int64_t y = by0; y < y0 && ny0 == y0; ++y)
                    if (row_active(next + y * W, bx0, bx1, tol)) ny0 = y;
                for (int64_t y = by1 - 1; y >= y1 && ny1 == y1; --y)
                    if (row_active(next + y * W, bx0, bx1, tol)) ny1 = y + 1;
                for (int64_t x = bx0; x < x0 && nx0 == x0; ++x)
                    if (col_active(next, W, x, ny0, ny1, tol)) nx0 = x;
                for (int64_t x = bx1 - 1; x >= x1 && nx1 == x1; --x)
                    if (col_active(next, W, x, ny0, ny1, tol)) nx1 = x + 1;
                y0 = ny0; y1 = ny1; x0 = nx0; x1 = nx1;
            }
            float *tmp = prev; prev = cur; cur = next; next = tmp;
        }
    }
#ifdef FWI_FTZ
    _mm_setcsr(csr);
#endif
}
