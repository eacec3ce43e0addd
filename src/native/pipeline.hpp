// The mel pipeline: frames -> window -> real FFT -> |X|^power -> block-sparse mel product
// -> optional post-step, written into the caller's output.
//
// Like fft.hpp: a plain-data part (the views a plan hands to the kernels, the
// argument structs of the three entry shapes) and a kernel part compiled once per
// instruction set inside namespace supermel::SUPERMEL_ISA.
//
// Per batch of L frames (lane l = one frame):
//   x_l[j] * window[j]                      (gathered into the FFT's lane layout)
//   X_l = rfft(...)                         (fft.hpp)
//   P_l[k] = (|X_l[k]|^2 + eps)^(power/2)   (power 2: no pow; power 1: sqrt)
//   M_l[b] = sum_{k in band b} w_b[k] P_l[k]  (band b: bins start_b .. start_b + len_b - 1,
//                                            the filterbank's non-zero run; weights in W)
//   out_l[b] = post(M_l[b])
// W is the weight / output type: T, or double for float32 frames with a float64
// filterbank (librosa then returns float64: the float32 power is promoted before the product).

#ifndef SUPERMEL_PIPELINE_DATA_DEFINED
#define SUPERMEL_PIPELINE_DATA_DEFINED

#include <cstddef>
#include <cstdint>

#include "fft.hpp"
#include "single.hpp"

namespace supermel {

enum PowerMode : int { POWER_2 = 0, POWER_1 = 1, POWER_GENERAL = 2 };

//: Post-steps on each output value v (a, b the plan's constants).
enum PostMode : int {
    POST_NONE = 0,
    POST_LN_FLOOR = 1,     // ln(max(v, a))
    POST_LOG10_FLOOR = 2,  // log10(max(v, a))
    POST_LN_ADD = 3,       // ln(v + a)
    POST_DB = 4,           // a * log10(max(v, b))  (10: power_to_db with ref 1, no top_db)
};

template <class T, class W>
struct MelView {
    RfftView<T> fft;
    const T* window = nullptr;  // n_fft values
    int n_bins = 0;             // n_fft / 2 + 1
    int n_bands = 0;            // 0: no filterbank, the power bins are the output
    const int32_t* band_start = nullptr;
    const int32_t* band_len = nullptr;
    const int64_t* band_off = nullptr;  // offset of band b's weights in `weights`
    const W* weights = nullptr;
    int power_mode = POWER_2;
    T power_half = 1;  // power / 2 (POWER_GENERAL)
    T mag_eps = 0;
    int post = POST_NONE;
    W post_a = 0, post_b = 0;
    // the single-frame path (single.hpp): calls of up to single_max frames run it frame by frame
    const SingleView<T, W>* single = nullptr;
    int single_max = 0;
};

//: Workspace of one call (all 64-byte aligned, owned by the plan).
struct Work {
    void* buf_a;  // fft.work_elems * 2 L values of T
    void* buf_b;
    void* conv_a;  // fft.cfft.conv_len * 2 L values, or null
    void* conv_b;
    void* power;  // n_bins * L values of T
};

//: Frames of rows of a 2-D signal: frame t of row b starts at x + b row_stride + offset + t hop;
//: its output value for band (or bin) j goes to out + b out_row + t out_frame + j out_band.
//: The offline call (a padded signal, B rows) and the streaming ring buffer (one row per stream).
struct StridedArgs {
    const void* x;
    int64_t row_stride, offset, hop, n_rows, n_frames;
    void* out;
    int64_t out_row, out_frame, out_band;
    int64_t begin, end;  // the frames i = b n_frames + t this call computes: [begin, end)
};

//: Frames gathered from many rings: frame i starts at x + rows[i] row_stride + offsets[i];
//: its output for band j goes to out + i out_frame + j out_band (the pool's step).
struct GatherArgs {
    const void* x;
    int64_t row_stride;
    const int64_t* rows;
    const int64_t* offsets;
    int64_t count;
    void* out;
    int64_t out_frame, out_band;
    int64_t begin, end;  // the frames this call computes: [begin, end)
};

//: Lanes per batch: one 256-bit register of the type.
template <class T>
constexpr int lanes() { return sizeof(T) == 4 ? 8 : 4; }

}  // namespace supermel

#endif  // SUPERMEL_PIPELINE_DATA_DEFINED

// ---------------------------------------------------------------------------------------- kernels
#if defined(SUPERMEL_ISA) && !defined(SUPERMEL_PIPELINE_KERNELS_DONE)
#define SUPERMEL_PIPELINE_KERNELS_DONE
#include <cmath>
#include <type_traits>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace supermel {
namespace SUPERMEL_ISA {

#if defined(__AVX2__)
//: r[j] <- (r[0][j], ..., r[7][j]): an 8 x 8 float transpose in registers.
static inline void transpose8_ps(__m256* r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

// Transpose L frames into the lane layout: dst[stride j + l] = src[l][j] * win[j] (win may be
// null: no window), j < n. AVX2: 8 x 8 (float) / 4 x 4 (double) register transposes of
// unaligned loads; elsewhere (and for the last n mod L samples) element by element.
template <class T, int L>
static inline void transpose_frames(const T* const* src, const T* win, int n, T* dst, std::ptrdiff_t stride) {
    int j0 = 0;
#if defined(__AVX2__)
    if constexpr (std::is_same<T, float>::value && L == 8) {
        for (; j0 + 8 <= n; j0 += 8) {
            __m256 r[8];
            const __m256 w = win ? _mm256_loadu_ps(win + j0) : _mm256_set1_ps(1.0f);
            for (int l = 0; l < 8; ++l) r[l] = _mm256_mul_ps(_mm256_loadu_ps(src[l] + j0), w);
            transpose8_ps(r);
            float* d = dst + stride * j0;
            for (int l = 0; l < 8; ++l) _mm256_storeu_ps(d + l * stride, r[l]);
        }
    } else if constexpr (std::is_same<T, double>::value && L == 4) {
        for (; j0 + 4 <= n; j0 += 4) {
            __m256d r[4];
            const __m256d w = win ? _mm256_loadu_pd(win + j0) : _mm256_set1_pd(1.0);
            for (int l = 0; l < 4; ++l) r[l] = _mm256_mul_pd(_mm256_loadu_pd(src[l] + j0), w);
            const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
            const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
            double* d = dst + stride * j0;
            _mm256_storeu_pd(d + 0 * stride, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_storeu_pd(d + 1 * stride, _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_storeu_pd(d + 2 * stride, _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_storeu_pd(d + 3 * stride, _mm256_permute2f128_pd(t1, t3, 0x31));
        }
    }
#endif
    for (int j = j0; j < n; ++j) {
        const T wj = win ? win[j] : T(1);
        T* d = dst + stride * j;
        for (int l = 0; l < L; ++l) d[l] = src[l][j] * wj;
    }
}

// One batch of `cnt` <= L frames at src[l], outputs at dst[l] (lanes past cnt repeat the last
// frame and are not written).
template <class T, class W, int L>
static inline void mel_batch(const MelView<T, W>& v, const Work& ws, const T* const* src, W* const* dst, int cnt, int64_t out_band) {
    const T* win = v.window;
    T* P = static_cast<T*>(ws.power);
    auto fill = [&](T* d, std::ptrdiff_t stride) { transpose_frames<T, L>(src, win, v.fft.n, d, stride); };
    const T eps = v.mag_eps;
    auto emit = [&](int k, const CVec<T, L>& X) { vstore<T, L>(P + static_cast<std::ptrdiff_t>(L) * k, X.r * X.r + X.i * X.i + eps); };
    rfft_batch<T, L>(v.fft, static_cast<T*>(ws.buf_a), static_cast<T*>(ws.buf_b), static_cast<T*>(ws.conv_a), static_cast<T*>(ws.conv_b), fill, emit);
    const int nb = v.n_bins;
    if (v.power_mode == POWER_1) {
        for (int i = 0; i < nb * L; ++i) P[i] = std::sqrt(P[i]);
    } else if (v.power_mode == POWER_GENERAL) {
        const T e = v.power_half;
        for (int i = 0; i < nb * L; ++i) P[i] = std::pow(P[i], e);
    }
    const int n_out = v.n_bands > 0 ? v.n_bands : nb;
    bool contig = cnt == L;  // the L outputs of a band adjacent in memory: one store
    for (int l = 1; l < L; ++l) contig = contig && dst[l] == dst[0] + l;
    for (int b = 0; b < n_out; ++b) {
        W acc[L];
        if (v.n_bands > 0) {
            for (int l = 0; l < L; ++l) acc[l] = 0;
            const W* w = v.weights + v.band_off[b];
            const T* p = P + static_cast<std::ptrdiff_t>(L) * v.band_start[b];
            const int n = v.band_len[b];
            for (int k = 0; k < n; ++k) {
                const W wk = w[k];
                for (int l = 0; l < L; ++l) acc[l] += wk * static_cast<W>(p[L * k + l]);
            }
        } else {
            for (int l = 0; l < L; ++l) acc[l] = static_cast<W>(P[L * b + l]);
        }
        switch (v.post) {
            case POST_LN_FLOOR:
                for (int l = 0; l < L; ++l) acc[l] = std::log(acc[l] > v.post_a ? acc[l] : v.post_a);
                break;
            case POST_LOG10_FLOOR:
                for (int l = 0; l < L; ++l) acc[l] = std::log10(acc[l] > v.post_a ? acc[l] : v.post_a);
                break;
            case POST_LN_ADD:
                for (int l = 0; l < L; ++l) acc[l] = std::log(acc[l] + v.post_a);
                break;
            case POST_DB:
                for (int l = 0; l < L; ++l) acc[l] = v.post_a * std::log10(acc[l] > v.post_b ? acc[l] : v.post_b);
                break;
            default:
                break;
        }
        if (contig) {
            std::memcpy(dst[0] + b * out_band, acc, sizeof acc);
        } else {
            for (int l = 0; l < cnt; ++l) dst[l][b * out_band] = acc[l];
        }
    }
}

}  // namespace SUPERMEL_ISA
}  // namespace supermel
#include "single.hpp"
namespace supermel {
namespace SUPERMEL_ISA {

// A batch of cnt frames on the narrowest lane count that holds them: a lone frame (a one-hop
// streaming push, the last frame of a call) costs one lane, not eight. Every lane count runs the
// same operations in the same order (the kernels are built with -ffp-contract=off: no fused
// multiply-adds the compiler might place differently per width), so a frame's values do not
// depend on how many frames were computed with it.
template <class T, class W>
static inline void mel_any(const MelView<T, W>& v, const Work& ws, const T* const* src, W* const* dst, int cnt, int64_t out_band) {
    constexpr int L = lanes<T>();
    // up to a quarter of a batch (2 float32 frames, 1 float64 frame; measured): vectorised within
    // each frame (single.hpp)
    if (v.single != nullptr && cnt <= v.single_max && 4 * cnt <= L) {
        for (int l = 0; l < cnt; ++l) mel_single<T, W>(v, ws, src[l], dst[l], out_band);
        return;
    }
    if (cnt == 1)
        mel_batch<T, W, 1>(v, ws, src, dst, cnt, out_band);
    else if (cnt <= L / 2)
        mel_batch<T, W, L / 2>(v, ws, src, dst, cnt, out_band);
    else
        mel_batch<T, W, L>(v, ws, src, dst, cnt, out_band);
}

template <class T, class W>
static void run_strided(const MelView<T, W>& v, const StridedArgs& a, const Work& ws) {
    constexpr int L = lanes<T>();
    const T* x = static_cast<const T*>(a.x);
    W* out = static_cast<W*>(a.out);
    const int64_t total = a.end;
    const T* src[L];
    W* dst[L];
    for (int64_t i0 = a.begin; i0 < total; i0 += L) {
        const int cnt = static_cast<int>(total - i0 < L ? total - i0 : L);
        for (int l = 0; l < L; ++l) {
            const int64_t i = i0 + (l < cnt ? l : cnt - 1);
            const int64_t b = i / a.n_frames, t = i % a.n_frames;
            src[l] = x + b * a.row_stride + a.offset + t * a.hop;
            dst[l] = out + b * a.out_row + t * a.out_frame;
        }
        mel_any<T, W>(v, ws, src, dst, cnt, a.out_band);
    }
}

template <class T, class W>
static void run_gather(const MelView<T, W>& v, const GatherArgs& a, const Work& ws) {
    constexpr int L = lanes<T>();
    const T* x = static_cast<const T*>(a.x);
    W* out = static_cast<W*>(a.out);
    const T* src[L];
    W* dst[L];
    for (int64_t i0 = a.begin; i0 < a.end; i0 += L) {
        const int cnt = static_cast<int>(a.end - i0 < L ? a.end - i0 : L);
        for (int l = 0; l < L; ++l) {
            const int64_t i = i0 + (l < cnt ? l : cnt - 1);
            src[l] = x + a.rows[i] * a.row_stride + a.offsets[i];
            dst[l] = out + i * a.out_frame;
        }
        mel_any<T, W>(v, ws, src, dst, cnt, a.out_band);
    }
}

template <class T, int L>
static inline void rfft_lanes(const RfftView<T>& f, const T* const* src, T* const* dst, int cnt, const Work& ws) {
    auto fill = [&](T* d, std::ptrdiff_t stride) { transpose_frames<T, L>(src, nullptr, f.n, d, stride); };
    auto emit = [&](int k, const CVec<T, L>& X) {
        T re[L], im[L];
        vstore<T, L>(re, X.r);
        vstore<T, L>(im, X.i);
        for (int l = 0; l < cnt; ++l) {
            dst[l][2 * k] = re[l];
            dst[l][2 * k + 1] = im[l];
        }
    };
    rfft_batch<T, L>(f, static_cast<T*>(ws.buf_a), static_cast<T*>(ws.buf_b), static_cast<T*>(ws.conv_a), static_cast<T*>(ws.conv_b), fill, emit);
}

//: The bare real FFT (no window, complex output re/im interleaved: (count, n_bins, 2)),
//: for tests and benchmarks.
template <class T>
static void run_rfft(const RfftView<T>& f, const T* x, int64_t row_stride, int64_t count, T* out, int64_t out_row, const Work& ws) {
    constexpr int L = lanes<T>();
    const T* src[L];
    T* dst[L];
    for (int64_t i0 = 0; i0 < count; i0 += L) {
        const int cnt = static_cast<int>(count - i0 < L ? count - i0 : L);
        for (int l = 0; l < L; ++l) {
            const int64_t i = i0 + (l < cnt ? l : cnt - 1);
            src[l] = x + i * row_stride;
            dst[l] = out + i * out_row;
        }
        if (cnt == 1)
            rfft_lanes<T, 1>(f, src, dst, cnt, ws);
        else if (cnt <= L / 2)
            rfft_lanes<T, L / 2>(f, src, dst, cnt, ws);
        else
            rfft_lanes<T, L>(f, src, dst, cnt, ws);
    }
}

}  // namespace SUPERMEL_ISA
}  // namespace supermel
#endif  // SUPERMEL_ISA
