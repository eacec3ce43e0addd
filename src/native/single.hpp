// The single-frame path: one frame's real FFT, power and mel product vectorised *within* the
// frame (a lone streaming push, the last frame or two of a call), where the batched kernels of
// fft.hpp / pipeline.hpp vectorise across frames and would leave 7 of 8 float32 lanes idle.
//
// Bit-identical to the batched kernels by construction: the same factorisation and passes, the
// same twiddle values (copied, in a split re/im layout), and, per output element, the same IEEE
// operations in the same order (every expression below mirrors its batched twin; the build uses
// -ffp-contract=off). Only *which* elements share a SIMD register changes:
//
// * FFT data live split: m real parts, then m imaginary parts.
// * A Stockham pass (radix r, sub-length n, stride s, m' = n / r) computes, for p < m', q < s,
//       y[q + s (r p + k)] = w_n^{p k} sum_j x[q + s (p + j m')] w_r^{j k}.
//   Early passes (m' >= s) vectorise over p, with the data in "q-major" order (element
//   q + s P stored at q n + P): inputs x[q n + p + j m'] and outputs y[(q + s k) m' + p] are then
//   contiguous in p, and the twiddles w_n^{p k} a contiguous table per k. Late passes (s > m')
//   vectorise over q in natural order (contiguous in q, one broadcast twiddle per p, as the
//   batched kernel). One transposition switches the order between the two (before the first
//   pass over q); the first pass's input (s = 1) and the last one's output (m' = 1) are the same
//   in both orders.
// * The real split (X_k from Z_k and Z_{m-k}) vectorises over k on a reversed copy of Z.
// * The mel product vectorises over bands (V bands at a time, each accumulated in its own order
//   over its bins: acc = 0, acc += w[k] P[start + k], k = 0, 1, ...), lanes whose band is shorter
//   than the group's longest finishing on scalar updates.
//
// Not covered (the batched kernel on one lane runs instead): Bluestein lengths (a prime factor
// above MAX_GENERIC_RADIX in the complex FFT's length).
//
// Plain-data part: the view the plan builder (single_plan.hpp, bindings only) fills; kernel part:
// compiled once per instruction set like the others.

#ifndef SUPERMEL_SINGLE_DATA_DEFINED
#define SUPERMEL_SINGLE_DATA_DEFINED

#include <cstddef>
#include <cstdint>

#include "fft.hpp"

namespace supermel {

//: Frames per call up to which the single-frame path runs (each frame alone; also at most a
//: quarter of a lane batch: 2 float32 frames, 1 float64 frame); more take the batched kernels.
//: 0 disables it (tests compare the two).
constexpr int SINGLE_MAX_FRAMES = 2;

template <class T>
struct SinglePass {
    int radix, n, stride;
    bool over_p;       // vectorised over p (q-major data) or over q (natural order)
    const T* wr;       // over_p: (r - 1) x m' twiddles w_n^{p k}, row k - 1 (real parts)
    const T* wi;       //         (imaginary parts)
    const T* tw;       // over_q: the batched pass's interleaved table
    const T* rt;       // generic radix: the batched pass's cos / sin table
};

template <class T, class W>
struct SingleView {
    int m = 0;                         // complex FFT length (N / 2 for even N, N for odd)
    int n_passes = 0;
    const SinglePass<T>* passes = nullptr;
    const T* post_r = nullptr;         // even N: W^k, k <= N / 2 (split)
    const T* post_i = nullptr;
    // mel product, bands in groups of VW = lanes<W>() (the last group's extra lanes have length 0)
    int n_groups = 0;
    const int32_t* g_steps = nullptr;  // per group: its longest band
    const int32_t* g_full = nullptr;   // per group: its shortest band (steps every lane runs)
    const int64_t* g_off = nullptr;    // per group: offset of its (steps x VW) tables
    const int32_t* g_len = nullptr;    // per group and lane: the band's length
    const int32_t* idx = nullptr;      // bin of (group, step, lane) (0 past the band's end)
    const W* wt = nullptr;             // weight of (group, step, lane) (0 past the band's end)
};

}  // namespace supermel

#endif  // SUPERMEL_SINGLE_DATA_DEFINED

// ---------------------------------------------------------------------------------------- kernels
#if defined(SUPERMEL_ISA) && !defined(SUPERMEL_SINGLE_KERNELS_DONE) && defined(SUPERMEL_PIPELINE_KERNELS_DONE)
#define SUPERMEL_SINGLE_KERNELS_DONE
#include <cmath>
#include <cstring>
#include <type_traits>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace supermel {
namespace SUPERMEL_ISA {

// Split complex vectors: V real parts at r[i], V imaginary parts at i[i].
template <class T, int V>
static inline CVec<T, V> sload(const T* re, const T* im, std::ptrdiff_t e) { return {vload<T, V>(re + e), vload<T, V>(im + e)}; }
template <class T, int V>
static inline void sstore(T* re, T* im, std::ptrdiff_t e, const CVec<T, V>& c) {
    vstore<T, V>(re + e, c.r);
    vstore<T, V>(im + e, c.i);
}
//: times w = (wr, wi), a scalar or a vector of twiddles: the expression of fft.hpp's cmul.
template <class T, int V, class TW>
static inline CVec<T, V> cmul_t(const CVec<T, V>& a, const TW& wr, const TW& wi) { return {a.r * wr - a.i * wi, a.r * wi + a.i * wr}; }

// One radix-r butterfly on a[0..r) -> b[0..r), twiddle k (k = 1 .. r-1) at (wr[k-1], wi[k-1]);
// each case the expressions of its batched pass (fft.hpp), in the same order.
template <class T, int V, int R, class TW>
static inline void butterfly(int r, const T* rt, const CVec<T, V>* a, CVec<T, V>* b, const TW* wr, const TW* wi) {
    if constexpr (R == 2) {
        b[0] = a[0] + a[1];
        b[1] = cmul_t<T, V>(a[0] - a[1], wr[0], wi[0]);
    } else if constexpr (R == 4) {
        const CVec<T, V> t0 = a[0] + a[2], t1 = a[0] - a[2], t2 = a[1] + a[3], t3 = mul_mi<T, V>(a[1] - a[3]);
        b[0] = t0 + t2;
        b[1] = cmul_t<T, V>(t1 + t3, wr[0], wi[0]);
        b[2] = cmul_t<T, V>(t0 - t2, wr[1], wi[1]);
        b[3] = cmul_t<T, V>(t1 - t3, wr[2], wi[2]);
    } else if constexpr (R == 3) {
        const T h = T(0.86602540378443864676372317075294);
        const CVec<T, V> t1 = a[1] + a[2];
        const CVec<T, V> mm = a[0] - scale<T, V>(t1, T(0.5));
        const CVec<T, V> nn = scale<T, V>(mul_mi<T, V>(a[1] - a[2]), h);
        b[0] = a[0] + t1;
        b[1] = cmul_t<T, V>(mm + nn, wr[0], wi[0]);
        b[2] = cmul_t<T, V>(mm - nn, wr[1], wi[1]);
    } else if constexpr (R == 5) {
        const T c1 = T(0.30901699437494742410229341718282), c2 = T(-0.80901699437494742410229341718282);
        const T s1 = T(0.95105651629515357211643933337938), s2 = T(0.58778525229247312916870595463907);
        const CVec<T, V> t1 = a[1] + a[4], t2 = a[2] + a[3], t3 = a[1] - a[4], t4 = a[2] - a[3];
        const CVec<T, V> m1 = a[0] + scale<T, V>(t1, c1) + scale<T, V>(t2, c2);
        const CVec<T, V> m2 = a[0] + scale<T, V>(t1, c2) + scale<T, V>(t2, c1);
        const CVec<T, V> n1 = mul_mi<T, V>(scale<T, V>(t3, s1) + scale<T, V>(t4, s2));
        const CVec<T, V> n2 = mul_mi<T, V>(scale<T, V>(t3, s2) - scale<T, V>(t4, s1));
        b[0] = a[0] + t1 + t2;
        b[1] = cmul_t<T, V>(m1 + n1, wr[0], wi[0]);
        b[2] = cmul_t<T, V>(m2 + n2, wr[1], wi[1]);
        b[3] = cmul_t<T, V>(m2 - n2, wr[2], wi[2]);
        b[4] = cmul_t<T, V>(m1 - n1, wr[3], wi[3]);
    } else {  // generic odd radix (pass_generic)
        const int h = (r - 1) / 2;
        CVec<T, V> P[MAX_GENERIC_RADIX / 2], M[MAX_GENERIC_RADIX / 2];
        CVec<T, V> sum = a[0];
        for (int j = 1; j <= h; ++j) {
            P[j - 1] = a[j] + a[r - j];
            M[j - 1] = a[j] - a[r - j];
            sum = sum + P[j - 1];
        }
        b[0] = sum;
        for (int k = 1; k <= h; ++k) {
            CVec<T, V> e = a[0], o = scale<T, V>(a[0], T(0));
            const T* ck = rt + 2 * h * (k - 1);
            for (int j = 0; j < h; ++j) {
                e = e + scale<T, V>(P[j], ck[j]);
                o = o + scale<T, V>(M[j], ck[h + j]);
            }
            const CVec<T, V> io = mul_mi<T, V>(o);
            b[k] = cmul_t<T, V>(e + io, wr[k - 1], wi[k - 1]);
            b[r - k] = cmul_t<T, V>(e - io, wr[r - k - 1], wi[r - k - 1]);
        }
    }
}

// Vectorised over p, q-major data: for q < s, p in [p0, p1) step V.
template <class T, int V, int R>
static inline void over_p_range(const SinglePass<T>& ps, const T* xr, const T* xi, T* yr, T* yi, int p0, int p1) {
    const int r = R > 0 ? R : ps.radix, n = ps.n, s = ps.stride, mm = n / r;
    CVec<T, V> a[MAX_GENERIC_RADIX], b[MAX_GENERIC_RADIX];
    Vec<T, V> wr[MAX_GENERIC_RADIX], wi[MAX_GENERIC_RADIX];
    for (int p = p0; p + V <= p1; p += V) {
        for (int k = 1; k < r; ++k) {
            wr[k - 1] = vload<T, V>(ps.wr + static_cast<std::ptrdiff_t>(k - 1) * mm + p);
            wi[k - 1] = vload<T, V>(ps.wi + static_cast<std::ptrdiff_t>(k - 1) * mm + p);
        }
        for (int q = 0; q < s; ++q) {
            const std::ptrdiff_t in = static_cast<std::ptrdiff_t>(q) * n + p;
            for (int j = 0; j < r; ++j) a[j] = sload<T, V>(xr, xi, in + static_cast<std::ptrdiff_t>(j) * mm);
            butterfly<T, V, R>(r, ps.rt, a, b, wr, wi);
            for (int k = 0; k < r; ++k) sstore<T, V>(yr, yi, static_cast<std::ptrdiff_t>(q + s * k) * mm + p, b[k]);
        }
    }
}

template <class T, int V, int R>
static inline void pass_over_p(const SinglePass<T>& ps, const T* xr, const T* xi, T* yr, T* yi) {
    const int mm = ps.n / (R > 0 ? R : ps.radix);
    int done = mm / V * V;
    over_p_range<T, V, R>(ps, xr, xi, yr, yi, 0, done);
    if constexpr (V >= 4) {  // the rest: half vectors, then single elements (the same operations)
        const int half = done + (mm - done) / (V / 2) * (V / 2);
        if (half > done) over_p_range<T, V / 2, R>(ps, xr, xi, yr, yi, done, half);
        done = half;
    }
    if (done < mm) over_p_range<T, 1, R>(ps, xr, xi, yr, yi, done, mm);
}

// Vectorised over q, natural order: for p < m', q in [q0, q1) step V (broadcast twiddles).
template <class T, int V, int R>
static inline void over_q_range(const SinglePass<T>& ps, const T* xr, const T* xi, T* yr, T* yi, int q0, int q1) {
    const int r = R > 0 ? R : ps.radix, n = ps.n, s = ps.stride, mm = n / r;
    CVec<T, V> a[MAX_GENERIC_RADIX], b[MAX_GENERIC_RADIX];
    T wr[MAX_GENERIC_RADIX], wi[MAX_GENERIC_RADIX];
    for (int p = 0; p < mm; ++p) {
        const T* w = ps.tw + 2 * (r - 1) * p;
        for (int k = 1; k < r; ++k) {
            wr[k - 1] = w[2 * (k - 1)];
            wi[k - 1] = w[2 * (k - 1) + 1];
        }
        for (int q = q0; q + V <= q1; q += V) {
            for (int j = 0; j < r; ++j) a[j] = sload<T, V>(xr, xi, q + static_cast<std::ptrdiff_t>(s) * (p + j * mm));
            butterfly<T, V, R>(r, ps.rt, a, b, wr, wi);
            for (int k = 0; k < r; ++k) sstore<T, V>(yr, yi, q + static_cast<std::ptrdiff_t>(s) * (r * p + k), b[k]);
        }
    }
}

template <class T, int V, int R>
static inline void pass_over_q(const SinglePass<T>& ps, const T* xr, const T* xi, T* yr, T* yi) {
    const int s = ps.stride;
    int done = s / V * V;
    over_q_range<T, V, R>(ps, xr, xi, yr, yi, 0, done);
    if constexpr (V >= 4) {
        const int half = done + (s - done) / (V / 2) * (V / 2);
        if (half > done) over_q_range<T, V / 2, R>(ps, xr, xi, yr, yi, done, half);
        done = half;
    }
    if (done < s) over_q_range<T, 1, R>(ps, xr, xi, yr, yi, done, s);
}

// (transpose8_ps: pipeline.hpp, whose kernels come first)

// dst[q + s P] = src[q n + P] for q < s, P < n (a plain copy: no arithmetic). AVX2: 8 x 8 (float)
// / 4 x 4 (double) register transposes; elsewhere, and for the edges, element by element.
template <class T>
static inline void qmajor_to_natural(const T* src, T* dst, int s, int n) {
    int q0 = 0;
#if defined(__AVX2__)
    if constexpr (std::is_same<T, float>::value) {
        for (; q0 + 8 <= s; q0 += 8) {
            int P0 = 0;
            for (; P0 + 8 <= n; P0 += 8) {
                __m256 r[8];
                for (int l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(src + static_cast<std::ptrdiff_t>(q0 + l) * n + P0);
                transpose8_ps(r);
                float* d = dst + q0 + static_cast<std::ptrdiff_t>(s) * P0;
                for (int j = 0; j < 8; ++j) _mm256_storeu_ps(d + static_cast<std::ptrdiff_t>(j) * s, r[j]);
            }
            for (int q = q0; q < q0 + 8; ++q)
                for (int P = P0; P < n; ++P) dst[q + static_cast<std::ptrdiff_t>(s) * P] = src[static_cast<std::ptrdiff_t>(q) * n + P];
        }
    } else if constexpr (std::is_same<T, double>::value) {
        for (; q0 + 4 <= s; q0 += 4) {
            int P0 = 0;
            for (; P0 + 4 <= n; P0 += 4) {
                __m256d r[4];
                for (int l = 0; l < 4; ++l) r[l] = _mm256_loadu_pd(src + static_cast<std::ptrdiff_t>(q0 + l) * n + P0);
                const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
                const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
                double* d = dst + q0 + static_cast<std::ptrdiff_t>(s) * P0;
                _mm256_storeu_pd(d + 0 * s, _mm256_permute2f128_pd(t0, t2, 0x20));
                _mm256_storeu_pd(d + 1 * s, _mm256_permute2f128_pd(t1, t3, 0x20));
                _mm256_storeu_pd(d + 2 * s, _mm256_permute2f128_pd(t0, t2, 0x31));
                _mm256_storeu_pd(d + 3 * s, _mm256_permute2f128_pd(t1, t3, 0x31));
            }
            for (int q = q0; q < q0 + 4; ++q)
                for (int P = P0; P < n; ++P) dst[q + static_cast<std::ptrdiff_t>(s) * P] = src[static_cast<std::ptrdiff_t>(q) * n + P];
        }
    }
#endif
    for (int q = q0; q < s; ++q)
        for (int P = 0; P < n; ++P) dst[q + static_cast<std::ptrdiff_t>(s) * P] = src[static_cast<std::ptrdiff_t>(q) * n + P];
}

template <class T, int V>
static inline void single_pass(const SinglePass<T>& ps, const T* xr, const T* xi, T* yr, T* yi) {
    if (ps.over_p) {
        switch (ps.radix) {
            case 4: pass_over_p<T, V, 4>(ps, xr, xi, yr, yi); break;
            case 2: pass_over_p<T, V, 2>(ps, xr, xi, yr, yi); break;
            case 3: pass_over_p<T, V, 3>(ps, xr, xi, yr, yi); break;
            case 5: pass_over_p<T, V, 5>(ps, xr, xi, yr, yi); break;
            default: pass_over_p<T, V, 0>(ps, xr, xi, yr, yi); break;
        }
    } else {
        switch (ps.radix) {
            case 4: pass_over_q<T, V, 4>(ps, xr, xi, yr, yi); break;
            case 2: pass_over_q<T, V, 2>(ps, xr, xi, yr, yi); break;
            case 3: pass_over_q<T, V, 3>(ps, xr, xi, yr, yi); break;
            case 5: pass_over_q<T, V, 5>(ps, xr, xi, yr, yi); break;
            default: pass_over_q<T, V, 0>(ps, xr, xi, yr, yi); break;
        }
    }
}

// The complex FFT of the split data at a (m re, then m im); b as large. Returns the buffer
// holding the result (natural order).
template <class T, int V>
static inline T* single_cfft(int m, int n_passes, const SinglePass<T>* passes, T* a, T* b) {
    T* src = a;
    T* dst = b;
    bool qmajor = false;
    for (int i = 0; i < n_passes; ++i) {
        const SinglePass<T>& ps = passes[i];
        if (!ps.over_p && qmajor) {  // q-major (q < s, P < n) -> natural, element q + s P
            qmajor_to_natural<T>(src, dst, ps.stride, ps.n);
            qmajor_to_natural<T>(src + m, dst + m, ps.stride, ps.n);
            T* t = src; src = dst; dst = t;
            qmajor = false;
        }
        single_pass<T, V>(ps, src, src + m, dst, dst + m);
        qmajor = ps.over_p;
        T* t = src; src = dst; dst = t;
    }
    return src;
}

// One frame at src (n_fft samples) -> its n_out outputs at dst[b out_band]: the batched
// mel_batch's results for this frame, bit for bit.
template <class T, class W>
static inline void mel_single(const MelView<T, W>& v, const Work& ws, const T* src, W* dst, int64_t out_band) {
    constexpr int V = lanes<T>();
    constexpr int VW = lanes<W>();
    const SingleView<T, W>& sv = *v.single;
    const int N = v.fft.n, m = sv.m;
    const T* win = v.window;
    T* A = static_cast<T*>(ws.buf_a);
    T* B = static_cast<T*>(ws.buf_b);
    T* P = static_cast<T*>(ws.power);
    const T eps = v.mag_eps;
    if (v.fft.even) {
        for (int j = 0; j < m; ++j) {
            A[j] = src[2 * j] * win[2 * j];
            A[m + j] = src[2 * j + 1] * win[2 * j + 1];
        }
    } else {
        for (int j = 0; j < N; ++j) {
            A[j] = src[j] * win[j];
            A[m + j] = 0;
        }
    }
    T* Z = m > 1 ? single_cfft<T, V>(m, sv.n_passes, sv.passes, A, B) : A;
    const T* zr = Z;
    const T* zi = Z + m;
    if (!v.fft.even) {
        int k = 0;
        for (; k + V <= v.n_bins; k += V) {
            const CVec<T, V> X = sload<T, V>(zr, zi, k);
            vstore<T, V>(P + k, X.r * X.r + X.i * X.i + eps);
        }
        for (; k < v.n_bins; ++k) P[k] = zr[k] * zr[k] + zi[k] * zi[k] + eps;
    } else {
        {  // k = 0 and k = m
            const T r0 = zr[0], i0 = zi[0];
            const T zero = r0 * T(0);
            const T x0 = r0 + i0, xm = r0 - i0;
            P[0] = x0 * x0 + zero * zero + eps;
            P[m] = xm * xm + zero * zero + eps;
        }
        // the reversed copy: br[k] = Z_{m-k} (k = 1 .. m-1) in the buffer Z does not use
        T* R = Z == A ? B : A;
        T* br = R;
        T* bi = R + m;
        for (int k = 1; k < m; ++k) {
            br[k] = zr[m - k];
            bi[k] = zi[m - k];
        }
        auto split = [&](auto vtag, int k) {
            constexpr int U = decltype(vtag)::value;
            const CVec<T, U> a = sload<T, U>(zr, zi, k), b = sload<T, U>(br, bi, k);
            const CVec<T, U> e{T(0.5) * (a.r + b.r), T(0.5) * (a.i - b.i)};
            const CVec<T, U> o = mul_mi<T, U>(CVec<T, U>{T(0.5) * (a.r - b.r), T(0.5) * (a.i + b.i)});
            const CVec<T, U> X = e + cmul_t<T, U>(o, vload<T, U>(sv.post_r + k), vload<T, U>(sv.post_i + k));
            vstore<T, U>(P + k, X.r * X.r + X.i * X.i + eps);
        };
        int k = 1;
        for (; k + V <= m; k += V) split(std::integral_constant<int, V>{}, k);
        for (; k < m; ++k) split(std::integral_constant<int, 1>{}, k);
    }
    const int nb = v.n_bins;
    if (v.power_mode == POWER_1) {
        for (int i = 0; i < nb; ++i) P[i] = std::sqrt(P[i]);
    } else if (v.power_mode == POWER_GENERAL) {
        const T e = v.power_half;
        for (int i = 0; i < nb; ++i) P[i] = std::pow(P[i], e);
    }
    auto post = [&](W x) -> W {
        switch (v.post) {
            case POST_LN_FLOOR: return std::log(x > v.post_a ? x : v.post_a);
            case POST_LOG10_FLOOR: return std::log10(x > v.post_a ? x : v.post_a);
            case POST_LN_ADD: return std::log(x + v.post_a);
            case POST_DB: return v.post_a * std::log10(x > v.post_b ? x : v.post_b);
            default: return x;
        }
    };
    if (v.n_bands == 0) {
        for (int b = 0; b < nb; ++b) dst[b * out_band] = post(static_cast<W>(P[b]));
        return;
    }
    for (int g = 0; g < sv.n_groups; ++g) {
        const int32_t* idx = sv.idx + sv.g_off[g];
        const W* wt = sv.wt + sv.g_off[g];
        const int full = sv.g_full[g], steps = sv.g_steps[g];
        W a[VW] = {};  // +0, as the batched kernel's accumulators
        Vec<W, VW> acc = vload<W, VW>(a);
        int k = 0;
#if defined(__AVX2__)
        if constexpr (std::is_same<T, float>::value && std::is_same<W, float>::value) {
            // 8 steps at a time: lane l's bins start_l + k .. + 7 are adjacent in P: 8 loads and a
            // register transpose instead of 64 scalar loads (the same values, the same order)
            for (; k + 8 <= full; k += 8) {
                __m256 r[8];
                for (int l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(P + idx[8 * k + l]);
                transpose8_ps(r);
                for (int j = 0; j < 8; ++j) {
                    Vec<W, VW> pv;
                    std::memcpy(&pv, &r[j], sizeof pv);
                    acc = acc + vload<W, VW>(wt + VW * (k + j)) * pv;
                }
            }
        }
#endif
        for (; k < full; ++k) {
            W pk[VW];
            for (int l = 0; l < VW; ++l) pk[l] = static_cast<W>(P[idx[VW * k + l]]);
            const Vec<W, VW> pv = vload<W, VW>(pk);
            acc = acc + vload<W, VW>(wt + VW * k) * pv;
        }
        vstore<W, VW>(a, acc);
        const int32_t* len = sv.g_len + static_cast<std::ptrdiff_t>(VW) * g;
        for (int k = full; k < steps; ++k)
            for (int l = 0; l < VW; ++l)
                if (k < len[l]) a[l] = a[l] + wt[VW * k + l] * static_cast<W>(P[idx[VW * k + l]]);
        const int b0 = g * VW;
        for (int l = 0; l < VW && b0 + l < v.n_bands; ++l) dst[(b0 + l) * out_band] = post(a[l]);
    }
}

}  // namespace SUPERMEL_ISA
}  // namespace supermel
#endif  // SUPERMEL_ISA
