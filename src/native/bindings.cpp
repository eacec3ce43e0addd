// supermel._native_ext: the Python binding of the native CPU core (nanobind).
//
// One class, Plan: a configuration (n_fft, window, filterbank, power, post-step, dtypes)
// built once; its methods run the kernels on caller-provided numpy arrays, GIL released,
// writing into the caller's output array. supermel/_native.py checks every shape,
// stride, dtype and alignment before calling; the checks here repeat the ones memory
// safety depends on (a bad call raises ValueError, it never reaches a kernel).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels.hpp"
#include "plan.hpp"
#include "single_plan.hpp"

#if defined(_MSC_VER)
#include <immintrin.h>
#include <intrin.h>
#endif

namespace nb = nanobind;
using namespace supermel;

namespace {

using InArray = nb::ndarray<nb::ro, nb::device::cpu>;
using OutArray = nb::ndarray<nb::device::cpu>;

// ----------------------------------------------------------------------------- run-time dispatch
bool cpu_has_avx2() {
#if defined(SUPERMEL_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(SUPERMEL_HAVE_AVX2) && defined(_MSC_VER)
    // CPUID: FMA, OSXSAVE and AVX (leaf 1 ECX bits 12, 27, 28), the OS saving the YMM state
    // (XCR0 bits 1-2), AVX2 (leaf 7 EBX bit 5). Untested: no Windows machine here.
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return false;
    __cpuid(r, 1);
    const int need = (1 << 12) | (1 << 27) | (1 << 28);
    if ((r[2] & need) != need || (_xgetbv(0) & 6) != 6) return false;
    __cpuidex(r, 7, 0);
    return (r[1] & (1 << 5)) != 0;
#else
    return false;
#endif
}

bool g_avx2 = cpu_has_avx2();
//: Frames per call up to which plans built from now on take the single-frame path (single.hpp;
//: 0: never, tests compare it with the batched kernel).
int g_single_max = SINGLE_MAX_FRAMES;

#if defined(SUPERMEL_HAVE_AVX2)
#define SM_DISPATCH(fn, ...) (g_avx2 ? avx2::fn(__VA_ARGS__) : base::fn(__VA_ARGS__))
#else
#define SM_DISPATCH(fn, ...) base::fn(__VA_ARGS__)
#endif

// ----------------------------------------------------------------------------- checks
template <class T>
bool is(const nb::dlpack::dtype& d) { return d == nb::dtype<T>(); }

[[noreturn]] void fail(const std::string& msg) { throw nb::value_error(msg.c_str()); }

// The highest element offset a strided view reaches must lie inside the array: every
// pointer a kernel forms is base + an offset in [0, extent).
int64_t extent(int64_t n, int64_t stride) { return n > 0 ? (n - 1) * stride : 0; }

// Whether n values from p are all finite: exponent bits not all ones (integer test: vectorises,
// independent of -ffast-math). The caller guarantees p .. p + n lies in one array.
inline bool finite_run(const float* p, int64_t n) {
    const uint32_t* u = reinterpret_cast<const uint32_t*>(p);
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad |= static_cast<uint32_t>((u[i] & 0x7f800000u) == 0x7f800000u);
    return bad == 0;
}
inline bool finite_run(const double* p, int64_t n) {
    const uint64_t* u = reinterpret_cast<const uint64_t*>(p);
    uint64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad |= static_cast<uint64_t>((u[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
    return bad == 0;
}

//: Padding of the offline call (librosa's np.pad modes the native route takes).
enum PadMode : int { PAD_CONSTANT = 0, PAD_REFLECT = 1, PAD_EDGE = 2 };

// StreamPool.push_many's writes in one call: chunk i (x[starts[i] : starts[i] + lengths[i]]) goes
// to samples ats[i] .. of ring row slots[i] (position ats[i] mod C, wrapping around), and the
// row's mirror (its last L values, a copy of its first L) follows when its head changed.
template <class T>
void ring_write_impl(OutArray& ring, const int64_t* slots, const int64_t* ats, const T* x, int64_t x_len, const int64_t* starts, const int64_t* lengths,
                     int64_t count, int64_t C, int64_t L) {
    const int64_t rows = static_cast<int64_t>(ring.shape(0)), rs = static_cast<int64_t>(ring.stride(0));
    for (int64_t i = 0; i < count; ++i)
        if (slots[i] < 0 || slots[i] >= rows || ats[i] < 0 || lengths[i] < 0 || lengths[i] > C || starts[i] < 0 || starts[i] > x_len ||
            lengths[i] > x_len - starts[i])
            fail("a ring write lies outside the ring or the samples");
    T* base = static_cast<T*>(ring.data());
    nb::gil_scoped_release release;
    for (int64_t i = 0; i < count; ++i) {
        T* row = base + slots[i] * rs;
        const T* y = x + starts[i];
        const int64_t m = lengths[i], p = ats[i] % C, e = p + m;
        if (e <= C) {
            std::memcpy(row + p, y, static_cast<size_t>(m) * sizeof(T));
        } else {
            std::memcpy(row + p, y, static_cast<size_t>(C - p) * sizeof(T));
            std::memcpy(row, y + (C - p), static_cast<size_t>(e - C) * sizeof(T));
        }
        if (p < L || e > C) std::memcpy(row + C, row, static_cast<size_t>(L) * sizeof(T));
    }
}

void ring_write(OutArray ring, const InArray& slots, const InArray& ats, const InArray& x, const InArray& starts, const InArray& lengths, int64_t C,
                int64_t L) {
    if (ring.ndim() != 2 || ring.stride(1) != 1 || ring.stride(0) < 0 || C < 1 || L < 0 || L > C || static_cast<int64_t>(ring.shape(1)) != C + L)
        fail("the ring must be a 2-D (rows, C + L) array with unit stride along its rows");
    for (const InArray* a : {&slots, &ats, &starts, &lengths})
        if (!is<int64_t>(a->dtype()) || a->ndim() != 1 || (a->shape(0) > 1 && a->stride(0) != 1) || a->shape(0) != slots.shape(0))
            fail("slots, ats, starts and lengths must be contiguous 1-D int64 arrays of one length");
    if (x.ndim() != 1 || (x.shape(0) > 1 && x.stride(0) != 1) || x.dtype() != ring.dtype()) fail("x must be a contiguous 1-D array of the ring's dtype");
    const int64_t count = static_cast<int64_t>(slots.shape(0)), n = static_cast<int64_t>(x.shape(0));
    const auto* sl = static_cast<const int64_t*>(slots.data());
    const auto* at = static_cast<const int64_t*>(ats.data());
    const auto* st = static_cast<const int64_t*>(starts.data());
    const auto* ln = static_cast<const int64_t*>(lengths.data());
    if (is<float>(ring.dtype())) {
        if (reinterpret_cast<std::uintptr_t>(ring.data()) % alignof(float) || reinterpret_cast<std::uintptr_t>(x.data()) % alignof(float)) fail("misaligned");
        ring_write_impl<float>(ring, sl, at, static_cast<const float*>(x.data()), n, st, ln, count, C, L);
    } else if (is<double>(ring.dtype())) {
        if (reinterpret_cast<std::uintptr_t>(ring.data()) % alignof(double) || reinterpret_cast<std::uintptr_t>(x.data()) % alignof(double)) fail("misaligned");
        ring_write_impl<double>(ring, sl, at, static_cast<const double*>(x.data()), n, st, ln, count, C, L);
    } else {
        fail("the ring must be float32 or float64");
    }
}

// Kaldi's per-frame steps before the window (the kaldi-fbank preset on the native route): frame
// (b, t) of `frames` (B, T, W; any non-negative strides, unit along samples) -> out[b, t n_fft +
// lo + j] (out (B, T n_fft), C-contiguous), zeros elsewhere in the frame's n_fft slots; with
// remove_dc the frame's mean (summed in double) is subtracted, then pre-emphasis y[j] = s[j] - c
// s[j - 1], y[0] = s[0] (1 - c) (c = 0: none). Per frame, in a fixed order: a frame's values do
// not depend on the call it comes in (offline, streaming and pool equal bit for bit).
template <class T>
void kaldi_prep_impl(const InArray& frames, OutArray& out, int64_t n_fft, int64_t lo, bool remove_dc, double preemph) {
    const int64_t B = static_cast<int64_t>(frames.shape(0)), Tn = static_cast<int64_t>(frames.shape(1)), W = static_cast<int64_t>(frames.shape(2));
    const int64_t s0 = static_cast<int64_t>(frames.stride(0)), s1 = static_cast<int64_t>(frames.stride(1));
    const T* x = static_cast<const T*>(frames.data());
    T* o = static_cast<T*>(out.data());
    const T c = static_cast<T>(preemph), one_minus_c = static_cast<T>(1.0 - preemph);
    nb::gil_scoped_release release;
    std::vector<T> v(static_cast<size_t>(W));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < Tn; ++t) {
            const T* src = x + b * s0 + t * s1;
            T* dst = o + (b * Tn + t) * n_fft;
            std::fill(dst, dst + lo, T(0));
            std::fill(dst + lo + W, dst + n_fft, T(0));
            if (remove_dc) {
                double sum = 0;
                for (int64_t j = 0; j < W; ++j) sum += static_cast<double>(src[j]);
                const T mean = static_cast<T>(sum / static_cast<double>(W));
                for (int64_t j = 0; j < W; ++j) v[static_cast<size_t>(j)] = src[j] - mean;
            } else {
                std::copy(src, src + W, v.begin());
            }
            T* d = dst + lo;
            if (preemph != 0.0) {
                d[0] = v[0] * one_minus_c;
                for (int64_t j = 1; j < W; ++j) d[j] = v[static_cast<size_t>(j)] - c * v[static_cast<size_t>(j - 1)];
            } else {
                std::copy(v.begin(), v.end(), d);
            }
        }
}

void kaldi_prep(const InArray& frames, OutArray out, int64_t n_fft, int64_t lo, bool remove_dc, double preemph) {
    if (frames.ndim() != 3 || out.ndim() != 2 || frames.dtype() != out.dtype()) fail("frames (B, T, W) and out (B, T n_fft) of one dtype required");
    const int64_t B = static_cast<int64_t>(frames.shape(0)), Tn = static_cast<int64_t>(frames.shape(1)), W = static_cast<int64_t>(frames.shape(2));
    if (W < 1 || lo < 0 || n_fft < 1 || W > n_fft || lo > n_fft - W) fail("the frames must fit their n_fft slots at lo");
    if (frames.stride(0) < 0 || frames.stride(1) < 0 || (W > 1 && frames.stride(2) != 1)) fail("frames need non-negative strides, unit along samples");
    if (static_cast<int64_t>(out.shape(0)) != B || static_cast<int64_t>(out.shape(1)) != Tn * n_fft || (Tn * n_fft > 1 && out.stride(1) != 1) ||
        (B > 1 && out.stride(0) != Tn * n_fft))
        fail("out must be a C-contiguous (B, T n_fft) array");
    if (B == 0 || Tn == 0) return;
    if (is<float>(frames.dtype())) {
        if (reinterpret_cast<std::uintptr_t>(frames.data()) % alignof(float) || reinterpret_cast<std::uintptr_t>(out.data()) % alignof(float)) fail("misaligned");
        kaldi_prep_impl<float>(frames, out, n_fft, lo, remove_dc, preemph);
    } else if (is<double>(frames.dtype())) {
        if (reinterpret_cast<std::uintptr_t>(frames.data()) % alignof(double) || reinterpret_cast<std::uintptr_t>(out.data()) % alignof(double)) fail("misaligned");
        kaldi_prep_impl<double>(frames, out, n_fft, lo, remove_dc, preemph);
    } else {
        fail("frames must be float32 or float64");
    }
}

struct PlanBase {
    virtual ~PlanBase() = default;
    virtual void strided(const InArray& x, int64_t offset, int64_t hop, int64_t n_frames, OutArray& out, int threads) = 0;
    virtual void gather(const InArray& x, const InArray& rows, const InArray& offsets, OutArray& out, int threads) = 0;
    virtual void rfft(const InArray& x, OutArray& out) = 0;
    virtual int signal(const InArray& x, int64_t pad, int mode, int64_t hop, OutArray& out, int threads, bool check) = 0;
    virtual int ring(OutArray& buf, int64_t fill, const InArray& chunk, int64_t offset, int64_t hop, OutArray& out, bool check) = 0;
    // frames of rows of x at offset + t hop (t < k) -> out, on raw pointers the caller checked (StepRing)
    virtual void frames_raw(const void* x, int64_t row_stride, int64_t rows, int64_t offset, int64_t hop, int64_t k, void* out, int64_t out_row,
                            int64_t out_frame, int64_t out_band) = 0;
    int n_fft = 0, n_bins = 0, n_out = 0;
    bool f64 = false, w64 = false;
};

template <class T, class W>
struct PlanImpl final : PlanBase {
    RfftPlan<T> fft;
    std::vector<T> window;
    std::vector<int32_t> band_start, band_len;
    std::vector<int64_t> band_off;
    std::vector<W> weights;
    MelView<T, W> view;
    Workspace ws;
    std::unique_ptr<SinglePlan<T, W>> single;  // the single-frame path's tables (single.hpp)
    std::mutex ws_lock;  // the plan's workspace: one call at a time, others allocate their own

    PlanImpl(int n, const double* win, const double* fb, int n_bands, double power, double mag_eps, int post, double post_a, double post_b)
        : fft(n), window(win, win + n) {
        n_fft = n;
        n_bins = n / 2 + 1;
        f64 = sizeof(T) == 8;
        w64 = sizeof(W) == 8;
        // each band's non-zero run of bins (zeros inside the run are kept)
        for (int b = 0; b < n_bands; ++b) {
            const double* row = fb + static_cast<int64_t>(b) * n_bins;
            int lo = 0, hi = 0;
            for (int k = 0; k < n_bins; ++k)
                if (row[k] != 0) { lo = k; break; }
            for (int k = n_bins; k > 0; --k)
                if (row[k - 1] != 0) { hi = k; break; }
            if (hi <= lo) lo = hi = 0;
            band_start.push_back(lo);
            band_len.push_back(hi - lo);
            band_off.push_back(static_cast<int64_t>(weights.size()));
            for (int k = lo; k < hi; ++k) weights.push_back(static_cast<W>(row[k]));
        }
        n_out = n_bands > 0 ? n_bands : n_bins;
        view.fft = fft.view;
        view.window = window.data();
        view.n_bins = n_bins;
        view.n_bands = n_bands;
        view.band_start = band_start.data();
        view.band_len = band_len.data();
        view.band_off = band_off.data();
        view.weights = weights.data();
        view.power_mode = power == 2.0 ? POWER_2 : power == 1.0 ? POWER_1 : POWER_GENERAL;
        view.power_half = static_cast<T>(power / 2.0);
        view.mag_eps = static_cast<T>(mag_eps);
        view.post = post;
        view.post_a = static_cast<W>(post_a);
        view.post_b = static_cast<W>(post_b);
        ws = Workspace::make(fft.view);
        single = std::make_unique<SinglePlan<T, W>>(fft.view, band_start, band_len, band_off, weights);
        if (single->ok && g_single_max > 0) {
            view.single = &single->view;
            view.single_max = g_single_max;
        }
    }

    // Split frames [0, total) over up to `threads` threads (at least MIN_FRAMES_PER_THREAD frames
    // each, boundaries on whole lane batches); thread 0 is the caller. f(begin, end, work).
    static constexpr int64_t MIN_FRAMES_PER_THREAD = 256;

    template <class F>
    void parallel(int64_t total, int threads, F&& f) {
        constexpr int64_t L = lanes<T>();
        int64_t n = std::min<int64_t>(threads, total / MIN_FRAMES_PER_THREAD);
        if (n <= 1) {
            with_work([&](const Work& w) { f(0, total, w); });
            return;
        }
        const int64_t per = ((total + n - 1) / n + L - 1) / L * L;
        std::vector<std::thread> pool;
        std::vector<Workspace> spaces;
        spaces.reserve(static_cast<size_t>(n));
        for (int64_t k = 1; k < n; ++k) spaces.push_back(Workspace::make(fft.view));
        try {
            for (int64_t k = 1; k < n; ++k) {
                const int64_t b = k * per, e = std::min(total, (k + 1) * per);
                if (b >= e) break;
                const Work w = spaces[static_cast<size_t>(k - 1)].work;
                pool.emplace_back([&f, b, e, w]() { f(b, e, w); });
            }
            with_work([&](const Work& w) { f(0, std::min(total, per), w); });
        } catch (...) {  // (a thread that could not start): finish the started ones, then report
            for (auto& t : pool) t.join();
            throw;
        }
        for (auto& t : pool) t.join();
    }

    template <class F>
    void with_work(F&& f) {
        std::unique_lock<std::mutex> lock(ws_lock, std::try_to_lock);
        if (lock.owns_lock()) {
            f(ws.work);
        } else {
            Workspace own = Workspace::make(fft.view);
            f(own.work);
        }
    }

    void check_in(const InArray& x) const {
        if (!is<T>(x.dtype())) fail(std::string("frames must be ") + (f64 ? "float64" : "float32"));
        if (x.ndim() != 2) fail("frames must be a 2-D array");
        if (x.shape(0) > 0 && x.shape(1) > 1 && x.stride(1) != 1) fail("frames must have unit stride along their last axis");
        if (reinterpret_cast<std::uintptr_t>(x.data()) % alignof(T) != 0) fail("frames must be aligned to their dtype");
    }

    void check_out(const OutArray& out, int ndim) const {
        if (!is<W>(out.dtype())) fail(std::string("out must be ") + (w64 ? "float64" : "float32"));
        if (static_cast<int>(out.ndim()) != ndim) fail("out has the wrong number of dimensions");
        for (int i = 0; i < ndim; ++i)
            if (out.stride(i) < 0) fail("out must have non-negative strides");
        if (reinterpret_cast<std::uintptr_t>(out.data()) % alignof(W) != 0) fail("out must be aligned to its dtype");
    }

    void strided(const InArray& x, int64_t offset, int64_t hop, int64_t n_frames, OutArray& out, int threads) override {
        check_in(x);
        check_out(out, 3);  // (rows, n_out, n_frames)
        const int64_t rows = static_cast<int64_t>(x.shape(0)), len = static_cast<int64_t>(x.shape(1));
        if (offset < 0 || hop < 1 || n_frames < 0) fail("offset >= 0, hop >= 1, n_frames >= 0 required");
        // the last frame's end, offset + (n_frames - 1) hop + n_fft <= len, without overflow
        if (n_frames > 0 && (len < n_fft || offset > len - n_fft || n_frames - 1 > (len - n_fft - offset) / hop))
            fail("frames run past the end of the signal");
        if (x.stride(0) < 0) fail("frames must have non-negative strides");
        if (static_cast<int64_t>(out.shape(0)) != rows || static_cast<int64_t>(out.shape(1)) != n_out || static_cast<int64_t>(out.shape(2)) != n_frames)
            fail("out must have shape (rows, n_out, n_frames)");
        if (rows == 0 || n_frames == 0) return;
        const StridedArgs a{x.data(), static_cast<int64_t>(x.stride(0)), offset, hop, rows, n_frames,
                            out.data(), static_cast<int64_t>(out.stride(0)), static_cast<int64_t>(out.stride(2)), static_cast<int64_t>(out.stride(1)),
                            0, rows * n_frames};
        nb::gil_scoped_release release;
        parallel(rows * n_frames, threads, [&](int64_t b, int64_t e, const Work& w) {
            StridedArgs part = a;
            part.begin = b;
            part.end = e;
            SM_DISPATCH(mel_strided, view, part, w);
        });
    }

    void gather(const InArray& x, const InArray& rows, const InArray& offsets, OutArray& out, int threads) override {
        check_in(x);
        check_out(out, 2);  // (count, n_out) with any non-negative strides
        if (!is<int64_t>(rows.dtype()) || !is<int64_t>(offsets.dtype()) || rows.ndim() != 1 || offsets.ndim() != 1 ||
            rows.stride(0) != 1 || offsets.stride(0) != 1 || rows.shape(0) != offsets.shape(0))
            fail("rows and offsets must be contiguous 1-D int64 arrays of one length");
        const int64_t count = static_cast<int64_t>(rows.shape(0));
        if (static_cast<int64_t>(out.shape(0)) != count || static_cast<int64_t>(out.shape(1)) != n_out) fail("out must have shape (count, n_out)");
        const int64_t n_rows = static_cast<int64_t>(x.shape(0)), len = static_cast<int64_t>(x.shape(1));
        const int64_t* r = static_cast<const int64_t*>(rows.data());
        const int64_t* o = static_cast<const int64_t*>(offsets.data());
        for (int64_t i = 0; i < count; ++i)
            if (r[i] < 0 || r[i] >= n_rows || o[i] < 0 || len < n_fft || o[i] > len - n_fft) fail("a (row, offset) pair lies outside the signal");
        if (count == 0) return;
        const GatherArgs a{x.data(), static_cast<int64_t>(x.stride(0)), r, o, count, out.data(), static_cast<int64_t>(out.stride(0)),
                           static_cast<int64_t>(out.stride(1)), 0, count};
        nb::gil_scoped_release release;
        parallel(count, threads, [&](int64_t b, int64_t e, const Work& w) {
            GatherArgs part = a;
            part.begin = b;
            part.end = e;
            SM_DISPATCH(mel_gather, view, part, w);
        });
    }

    // The offline call in one crossing: rows of an unpadded signal x (rows, n) -> padded by `pad`
    // samples on each side (mode: PadMode; reflect needs n > pad) -> every frame at `hop` ->
    // out (rows, n_out, n_frames), n_frames = (n + 2 pad - n_fft) / hop + 1. With `check`:
    // returns 1 (nothing computed) when x has a NaN/Inf, 2 when the result has one, else 0.
    int signal(const InArray& x, int64_t pad, int mode, int64_t hop, OutArray& out, int threads, bool check) override {
        check_in(x);
        check_out(out, 3);
        const int64_t rows = static_cast<int64_t>(x.shape(0)), n = static_cast<int64_t>(x.shape(1));
        if (x.stride(0) < 0) fail("frames must have non-negative strides");
        if (pad < 0 || hop < 1 || mode < PAD_CONSTANT || mode > PAD_EDGE) fail("pad >= 0, hop >= 1 and a known pad mode required");
        if (n < 1 || (mode == PAD_REFLECT && n <= pad)) fail("the signal is too short for this padding");
        if (pad > (INT64_MAX / 4 - n) / 2) fail("pad too large");
        const int64_t len = n + 2 * pad;
        if (len < n_fft) fail("the padded signal is shorter than n_fft");
        const int64_t n_frames = (len - n_fft) / hop + 1;
        if (static_cast<int64_t>(out.shape(0)) != rows || static_cast<int64_t>(out.shape(1)) != n_out || static_cast<int64_t>(out.shape(2)) != n_frames)
            fail("out must have shape (rows, n_out, (n + 2 pad - n_fft) // hop + 1)");
        if (rows == 0) return 0;
        const T* xp = static_cast<const T*>(x.data());
        const int64_t xs = static_cast<int64_t>(x.stride(0));
        nb::gil_scoped_release release;
        if (check)
            for (int64_t r = 0; r < rows; ++r)
                if (!finite_run(xp + r * xs, n)) return 1;
        std::vector<T> padded;
        const T* src = xp;
        int64_t src_stride = xs;
        if (pad > 0) {
            padded.resize(static_cast<size_t>(rows * len));
            for (int64_t r = 0; r < rows; ++r) {
                const T* y = xp + r * xs;
                T* z = padded.data() + r * len;
                std::copy(y, y + n, z + pad);
                for (int64_t i = 0; i < pad; ++i) {
                    if (mode == PAD_CONSTANT) {
                        z[i] = T(0);
                        z[pad + n + i] = T(0);
                    } else if (mode == PAD_REFLECT) {
                        z[i] = y[pad - i];
                        z[pad + n + i] = y[n - 2 - i];
                    } else {
                        z[i] = y[0];
                        z[pad + n + i] = y[n - 1];
                    }
                }
            }
            src = padded.data();
            src_stride = len;
        }
        const StridedArgs a{src, src_stride, 0, hop, rows, n_frames,
                            out.data(), static_cast<int64_t>(out.stride(0)), static_cast<int64_t>(out.stride(2)), static_cast<int64_t>(out.stride(1)),
                            0, rows * n_frames};
        parallel(rows * n_frames, threads, [&](int64_t b, int64_t e, const Work& w) {
            StridedArgs part = a;
            part.begin = b;
            part.end = e;
            SM_DISPATCH(mel_strided, view, part, w);
        });
        if (check) {
            const W* o = static_cast<const W*>(out.data());
            const int64_t s0 = out.stride(0), s1 = out.stride(1), s2 = out.stride(2);
            if (s2 == 1 && s1 == n_frames && s0 == n_out * n_frames) {
                if (!finite_run(o, rows * n_out * n_frames)) return 2;
            } else {
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t j = 0; j < n_out; ++j)
                        for (int64_t t = 0; t < n_frames; ++t)
                            if (!finite_run(o + r * s0 + j * s1 + t * s2, 1)) return 2;
            }
        }
        return 0;
    }

    // A streaming push in one crossing: with `check`, returns 1 (the ring untouched) when the
    // chunk (rows, n) has a NaN/Inf; else copies it into buf[:, fill : fill + n] and computes
    // frames offset + t hop of buf (t < out.shape(2)) into out (rows, n_out, k); returns 0.
    int ring(OutArray& buf, int64_t fill, const InArray& chunk, int64_t offset, int64_t hop, OutArray& out, bool check) override {
        check_in(chunk);
        if (!is<T>(buf.dtype()) || buf.ndim() != 2 || (buf.shape(1) > 1 && buf.stride(1) != 1) || buf.stride(0) < 0 ||
            reinterpret_cast<std::uintptr_t>(buf.data()) % alignof(T) != 0)
            fail("the ring must be an aligned 2-D array of the frames' dtype, unit stride along its last axis");
        check_out(out, 3);
        const int64_t rows = static_cast<int64_t>(buf.shape(0)), cap = static_cast<int64_t>(buf.shape(1));
        const int64_t n = static_cast<int64_t>(chunk.shape(1)), k = static_cast<int64_t>(out.shape(2));
        if (static_cast<int64_t>(chunk.shape(0)) != rows || chunk.stride(0) < 0) fail("the chunk must have the ring's rows");
        if (fill < 0 || fill > cap || n > cap - fill) fail("the chunk does not fit in the ring");
        if (offset < 0 || hop < 1 || k < 0) fail("offset >= 0, hop >= 1 required");
        const int64_t len = fill + n;
        if (k > 0 && (len < n_fft || offset > len - n_fft || k - 1 > (len - n_fft - offset) / hop)) fail("frames run past the ring's samples");
        if (static_cast<int64_t>(out.shape(0)) != rows || static_cast<int64_t>(out.shape(1)) != n_out) fail("out must have shape (rows, n_out, k)");
        if (rows == 0) return 0;
        const T* cp = static_cast<const T*>(chunk.data());
        T* bp = static_cast<T*>(buf.data());
        const int64_t cs = static_cast<int64_t>(chunk.stride(0)), bs = static_cast<int64_t>(buf.stride(0));
        nb::gil_scoped_release release;
        if (check && n > 0)
            for (int64_t r = 0; r < rows; ++r)
                if (!finite_run(cp + r * cs, n)) return 1;
        if (n > 0)
            for (int64_t r = 0; r < rows; ++r) std::memmove(bp + r * bs + fill, cp + r * cs, static_cast<size_t>(n) * sizeof(T));
        if (k == 0) return 0;
        const StridedArgs a{bp, bs, offset, hop, rows, k,
                            out.data(), static_cast<int64_t>(out.stride(0)), static_cast<int64_t>(out.stride(2)), static_cast<int64_t>(out.stride(1)),
                            0, rows * k};
        with_work([&](const Work& w) { SM_DISPATCH(mel_strided, view, a, w); });
        return 0;
    }

    void rfft(const InArray& x, OutArray& out) override {
        check_in(x);
        if (!is<T>(out.dtype()) || out.ndim() != 3 || out.stride(2) != 1 || out.stride(1) != 2 || out.stride(0) < 0)
            fail("out must be (count, n_bins, 2) of the frames' dtype, contiguous in its last two axes");
        const int64_t count = static_cast<int64_t>(x.shape(0));
        if (static_cast<int64_t>(x.shape(1)) != n_fft || static_cast<int64_t>(out.shape(0)) != count || static_cast<int64_t>(out.shape(1)) != n_bins ||
            out.shape(2) != 2)
            fail("x must be (count, n_fft) and out (count, n_bins, 2)");
        if (reinterpret_cast<std::uintptr_t>(out.data()) % alignof(T) != 0) fail("out must be aligned to its dtype");
        if (count == 0) return;
        const T* xp = static_cast<const T*>(x.data());
        T* op = static_cast<T*>(out.data());
        const int64_t rs = static_cast<int64_t>(x.stride(0)), os = static_cast<int64_t>(out.stride(0));
        nb::gil_scoped_release release;
        with_work([&](const Work& w) { SM_DISPATCH(rfft, fft.view, xp, rs, count, op, os, w); });
    }

    void frames_raw(const void* x, int64_t row_stride, int64_t rows, int64_t offset, int64_t hop, int64_t k, void* out, int64_t out_row,
                    int64_t out_frame, int64_t out_band) override {
        const StridedArgs a{x, row_stride, offset, hop, rows, k, out, out_row, out_frame, out_band, 0, rows * k};
        with_work([&](const Work& w) { SM_DISPATCH(mel_strided, view, a, w); });
    }
};

struct Plan {
    std::unique_ptr<PlanBase> impl;

    Plan(int n_fft, const InArray& window, const InArray& fb, const std::string& dtype, const std::string& weights, double power, double mag_eps,
         int post, double post_a, double post_b) {
        if (n_fft < 1) fail("n_fft must be >= 1");
        if (!is<double>(window.dtype()) || window.ndim() != 1 || static_cast<int>(window.shape(0)) != n_fft || window.stride(0) != 1)
            fail("window must be a contiguous float64 array of n_fft values");
        const int n_bins = n_fft / 2 + 1;
        int n_bands = 0;
        if (fb.ndim() != 2 || !is<double>(fb.dtype()) ||
            (fb.shape(0) > 0 && (static_cast<int>(fb.shape(1)) != n_bins || fb.stride(1) != 1 || (fb.shape(0) > 1 && fb.stride(0) != n_bins))))
            fail("fb must be a C-contiguous float64 (n_mels, n_fft // 2 + 1) array, or (0, 0) for no filterbank");
        n_bands = static_cast<int>(fb.shape(0));
        if (!(power > 0)) fail("power must be > 0");
        if (post < POST_NONE || post > POST_DB) fail("unknown post-step");
        const double* w = static_cast<const double*>(window.data());
        const double* f = static_cast<const double*>(fb.data());
        if (dtype == "float32" && weights == "float32")
            impl = std::make_unique<PlanImpl<float, float>>(n_fft, w, f, n_bands, power, mag_eps, post, post_a, post_b);
        else if (dtype == "float32" && weights == "float64")
            impl = std::make_unique<PlanImpl<float, double>>(n_fft, w, f, n_bands, power, mag_eps, post, post_a, post_b);
        else if (dtype == "float64" && weights == "float64")
            impl = std::make_unique<PlanImpl<double, double>>(n_fft, w, f, n_bands, power, mag_eps, post, post_a, post_b);
        else
            fail("dtype/weights must be float32/float32, float32/float64 or float64/float64");
    }
};

// ------------------------------------------------------------------------- BufferView
// A Python object's buffer (PEP 3118) held for a scope and released at its end (RAII). held is
// false, the Python error cleared, when the object gives none; typed() tells whether it holds one
// element type, the format character fmt in native byte order, of item bytes, aligned to it.
struct BufferView {
    Py_buffer v{};
    bool held = false;
    BufferView(PyObject* o, int flags) {
        held = PyObject_GetBuffer(o, &v, flags) == 0;
        if (!held) PyErr_Clear();
    }
    ~BufferView() {
        if (held) PyBuffer_Release(&v);
    }
    BufferView(const BufferView&) = delete;
    BufferView& operator=(const BufferView&) = delete;
    bool typed(char fmt, int64_t item) const {
        if (!held) return false;
        const char* f = v.format ? v.format : "B";
        if (*f == '<' || *f == '=' || *f == '@') ++f;
        return f[0] == fmt && f[1] == 0 && v.itemsize == item && reinterpret_cast<std::uintptr_t>(v.buf) % static_cast<std::uintptr_t>(item) == 0;
    }
};

// ------------------------------------------------------------------------- StepRing
// The streaming steady state's push in one call (supermel._stream_steps._Step on the native
// route): two (rows, held + chunk) segments used in turn; a push copies the chunk behind the
// held samples of segment i, computes the k frames at offset + t hop into a new numpy array,
// copies the samples the next push keeps (the last `held`) to the head of the other segment and
// flips i. Everything about the segments is checked once, here; a call checks only its chunk
// (an exact numpy ndarray of the dtype, C-contiguous, aligned, of the expected shape) and returns
// None, changing nothing, when the chunk does not qualify, has a NaN/Inf (with check), or the
// native route is switched off: the caller's general path then runs (and raises its errors).
bool g_enabled = true;  // supermel._native.enabled(), mirrored by _native.py

struct StepRing {
    PlanBase* plan = nullptr;
    nb::object plan_ref, empty_fn, dtype_obj, shape2, shape3;
    OutArray seg_ref[2];  // keep the segments' arrays alive as long as this object
    char* seg[2] = {nullptr, nullptr};
    int64_t rows = 0, held = 0, chunk = 0, offset = 0, hop = 0, k = 0, width = 0;
    int64_t item = 0, out_item = 0;
    char fmt = 'f';
    int i = 0;
    PyTypeObject* ndarray_type = nullptr;

    StepRing(nb::handle plan_obj, OutArray s0, OutArray s1, int64_t held_, int64_t chunk_, int64_t offset_, int64_t hop_, int64_t k_) {
        Plan& p = nb::cast<Plan&>(plan_obj);
        plan = p.impl.get();
        plan_ref = nb::borrow(plan_obj);
        const bool f64 = plan->f64;
        item = f64 ? 8 : 4;
        out_item = plan->w64 ? 8 : 4;
        fmt = f64 ? 'd' : 'f';
        held = held_, chunk = chunk_, offset = offset_, hop = hop_, k = k_;
        width = held + chunk;
        if (held < 0 || chunk < 1 || hop < 1 || offset < 0 || k < 1 || width < plan->n_fft || offset > width - plan->n_fft ||
            k - 1 > (width - plan->n_fft - offset) / hop)
            fail("StepRing: frames run past the segments (or bad held/chunk/hop/offset/k)");
        OutArray* s[2] = {&s0, &s1};
        for (int j = 0; j < 2; ++j) {
            const OutArray& a = *s[j];
            if (!(f64 ? is<double>(a.dtype()) : is<float>(a.dtype())) || a.ndim() != 2 || static_cast<int64_t>(a.shape(1)) != width ||
                a.shape(0) < 1 || (a.shape(0) > 1 && static_cast<int64_t>(a.stride(0)) != width) || a.stride(1) != 1 ||
                reinterpret_cast<std::uintptr_t>(a.data()) % static_cast<std::uintptr_t>(item) != 0)
                fail("StepRing: the segments must be aligned C-contiguous (rows, held + chunk) arrays of the plan's dtype");
            seg[j] = static_cast<char*>(a.data());
            seg_ref[j] = a;
        }
        rows = static_cast<int64_t>(s0.shape(0));
        if (static_cast<int64_t>(s1.shape(0)) != rows || seg[0] == seg[1]) fail("StepRing: two distinct segments of one shape required");
        nb::module_ np = nb::module_::import_("numpy");
        empty_fn = np.attr("empty");
        dtype_obj = np.attr("dtype")(plan->w64 ? "float64" : "float32");
        shape2 = nb::make_tuple(plan->n_out, k);
        shape3 = nb::make_tuple(rows, plan->n_out, k);
        ndarray_type = reinterpret_cast<PyTypeObject*>(np.attr("ndarray").ptr());
    }

    // push(chunk, check, squeeze): the frames (n_out, k) (squeeze: a 1-D chunk of a one-row
    // ring) or (rows, n_out, k), or None (nothing changed).
    nb::object push(nb::handle chunk_obj, bool check, bool squeeze) {
        if (!g_enabled || Py_TYPE(chunk_obj.ptr()) != ndarray_type) return nb::none();
        BufferView view(chunk_obj.ptr(), PyBUF_STRIDES | PyBUF_FORMAT);
        const Py_buffer& v = view.v;
        bool okay = view.typed(fmt, item);
        if (okay) {
            if (squeeze)
                okay = rows == 1 && v.ndim == 1 && v.shape[0] == chunk && v.strides[0] == item;
            else
                okay = v.ndim == 2 && v.shape[0] == rows && v.shape[1] == chunk && v.strides[1] == item && (rows == 1 || v.strides[0] == chunk * item);
        }
        const char* cp = static_cast<const char*>(v.buf);
        if (okay && check) {
            okay = fmt == 'd' ? finite_run(reinterpret_cast<const double*>(cp), rows * chunk) : finite_run(reinterpret_cast<const float*>(cp), rows * chunk);
        }
        if (!okay) return nb::none();
        nb::object out = empty_fn(squeeze ? shape2 : shape3, dtype_obj);
        BufferView out_view(out.ptr(), PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS);
        if (!out_view.held) fail("numpy.empty gave an output that is not a writable C-contiguous buffer");
        const Py_buffer& o = out_view.v;
        char* s = seg[i];
        char* d = seg[1 - i];
        const int64_t rs = width * item;
        {
            nb::gil_scoped_release release;
            for (int64_t r = 0; r < rows; ++r) std::memmove(s + r * rs + held * item, cp + r * chunk * item, static_cast<size_t>(chunk * item));
            plan->frames_raw(s, width, rows, offset, hop, k, o.buf, plan->n_out * k, 1, k);
            for (int64_t r = 0; r < rows; ++r) std::memmove(d + r * rs, s + r * rs + chunk * item, static_cast<size_t>(held * item));
        }
        i = 1 - i;
        return out;
    }
};

// ------------------------------------------------------------------------- OfflineCall
// MelSpectrogram.native_call's per-call work in one C++ call: the input's layout (an exact numpy
// ndarray of the plan's dtype, 1-D or 2-D, C-contiguous, aligned, at least min_len samples), the
// memory estimate against the caller's limit, the output array, then Plan.signal (finiteness,
// padding, frames, the result's check). Returns the (n_out, n_frames) or (rows, n_out,
// n_frames) array, or None where the general path must run (it then raises or warns).
struct OfflineCall {
    PlanBase* plan = nullptr;
    nb::object plan_ref, empty_fn, dtype_obj;
    int64_t pad = 0, mode = 0, hop = 1, min_len = 1, block = 0, frame_cost = 0, item = 4;
    char fmt = 'f';
    PyTypeObject* ndarray_type = nullptr;

    OfflineCall(nb::handle plan_obj, int64_t pad_, int mode_, int64_t hop_, int64_t min_len_, int64_t block_, int64_t frame_cost_) {
        Plan& p = nb::cast<Plan&>(plan_obj);
        plan = p.impl.get();
        plan_ref = nb::borrow(plan_obj);
        if (pad_ < 0 || hop_ < 1 || mode_ < PAD_CONSTANT || mode_ > PAD_EDGE || min_len_ < plan->n_fft || block_ < 0 || frame_cost_ < 0)
            fail("OfflineCall: pad >= 0, hop >= 1, a known pad mode and min_len >= n_fft required");
        pad = pad_, mode = mode_, hop = hop_, min_len = min_len_, block = block_, frame_cost = frame_cost_;
        item = plan->f64 ? 8 : 4;
        fmt = plan->f64 ? 'd' : 'f';
        nb::module_ np = nb::module_::import_("numpy");
        empty_fn = np.attr("empty");
        dtype_obj = np.attr("dtype")(plan->w64 ? "float64" : "float32");
        ndarray_type = reinterpret_cast<PyTypeObject*>(np.attr("ndarray").ptr());
    }

    nb::object call(nb::handle arr, bool check, int64_t limit, int threads) {
        if (Py_TYPE(arr.ptr()) != ndarray_type) return nb::none();
        BufferView view(arr.ptr(), PyBUF_STRIDES | PyBUF_FORMAT);
        const Py_buffer& v = view.v;
        if (!view.typed(fmt, item)) return nb::none();
        int64_t rows, n;
        if (v.ndim == 1) {
            rows = 1, n = v.shape[0];
            if (n > 1 && v.strides[0] != item) return nb::none();
        } else if (v.ndim == 2) {
            rows = v.shape[0], n = v.shape[1];
            if ((n > 1 && v.strides[1] != item) || (rows > 1 && v.strides[0] != n * item)) return nb::none();
        } else {
            return nb::none();
        }
        if (rows < 1 || n < min_len || pad > (INT64_MAX / 8 - n) / 2) return nb::none();
        const int64_t n_out = plan->n_out, n_frames = (n + 2 * pad - plan->n_fft) / hop + 1;
        if (limit >= 0) {
            const double need = static_cast<double>(item) * (static_cast<double>(rows) * static_cast<double>(n + 2 * pad) +
                                                              static_cast<double>(std::min(rows * n_frames, block)) * static_cast<double>(frame_cost) +
                                                              static_cast<double>(rows) * static_cast<double>(n_frames) * static_cast<double>(n_out));
            if (need > static_cast<double>(limit)) return nb::none();  // the general path raises the memory guard's error
        }
        nb::object out = v.ndim == 1 ? empty_fn(nb::make_tuple(n_out, n_frames), dtype_obj) : empty_fn(nb::make_tuple(rows, n_out, n_frames), dtype_obj);
        BufferView out_view(out.ptr(), PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS);
        if (!out_view.held) fail("numpy.empty gave an output that is not a writable C-contiguous buffer");
        const Py_buffer& o = out_view.v;
        const size_t xs[2] = {static_cast<size_t>(rows), static_cast<size_t>(n)};
        const int64_t xst[2] = {n, 1};
        const size_t os[3] = {static_cast<size_t>(rows), static_cast<size_t>(n_out), static_cast<size_t>(n_frames)};
        const int64_t ost[3] = {n_out * n_frames, n_frames, 1};
        const nb::dlpack::dtype dt = plan->f64 ? nb::dtype<double>() : nb::dtype<float>();
        const nb::dlpack::dtype odt = plan->w64 ? nb::dtype<double>() : nb::dtype<float>();
        InArray x(v.buf, 2, xs, arr, xst, dt);
        OutArray y(o.buf, 3, os, out, ost, odt);
        const int rc = plan->signal(x, pad, static_cast<int>(mode), hop, y, rows * n_frames >= 512 ? std::max(1, threads) : 1, check);
        if (rc != 0) return nb::none();  // NaN/Inf in the audio or the result: the general path raises or warns
        return out;
    }
};

}  // namespace

#include "pool.hpp"  // StreamPool's push_many and step in C++ (register_pool below)

NB_MODULE(_native_ext, m) {
    m.doc() = "supermel's native CPU core (see supermel._native)";
    // Plans live in module-level caches and in objects a server moves out of the collector's reach
    // (gc.freeze): at interpreter exit some are still alive by design, and nanobind's leak report
    // would print a screen of false alarms after every `supermel serve`. Real leaks are the
    // sanitizers' job (tools/asan.sh).
    nb::set_leak_warnings(false);
    m.def("isa", []() { return std::string(g_avx2 ? "avx2" : "baseline"); }, "The kernels' instruction set in use.");
    m.def("avx2_supported", []() { return cpu_has_avx2(); });
    m.def(
        "set_isa",
        [](const std::string& name) {
            if (name == "baseline") g_avx2 = false;
            else if (name == "avx2") {
                if (!cpu_has_avx2()) fail("this CPU (or this build) has no AVX2 + FMA kernels");
                g_avx2 = true;
            } else
                fail("isa must be 'baseline' or 'avx2'");
        },
        "Force an instruction set (tests; not thread-safe against running calls).");
    m.def(
        "all_finite",
        [](const InArray& x) {
            if (x.ndim() < 1 || x.ndim() > 2) fail("all_finite takes a 1-D or 2-D array");
            const int64_t rows = x.ndim() == 2 ? static_cast<int64_t>(x.shape(0)) : 1;
            const int64_t n = static_cast<int64_t>(x.shape(x.ndim() - 1));
            if (rows == 0 || n == 0) return true;
            if (n > 1 && x.stride(x.ndim() - 1) != 1) fail("all_finite needs unit stride along the last axis");
            const int64_t rs = x.ndim() == 2 ? static_cast<int64_t>(x.stride(0)) : 0;
            if (rs < 0) fail("all_finite needs non-negative strides");
            if (is<float>(x.dtype())) {
                if (reinterpret_cast<std::uintptr_t>(x.data()) % alignof(float)) fail("misaligned");
                const float* p = static_cast<const float*>(x.data());
                for (int64_t r = 0; r < rows; ++r)
                    if (!finite_run(p + r * rs, n)) return false;
                return true;
            }
            if (is<double>(x.dtype())) {
                if (reinterpret_cast<std::uintptr_t>(x.data()) % alignof(double)) fail("misaligned");
                const double* p = static_cast<const double*>(x.data());
                for (int64_t r = 0; r < rows; ++r)
                    if (!finite_run(p + r * rs, n)) return false;
                return true;
            }
            fail("all_finite takes float32 or float64");
        },
        nb::arg("x"), "Whether every value of a float32/float64 array (unit stride along its last axis) is finite.");
    m.def("ring_write", &ring_write, nb::arg("ring"), nb::arg("slots"), nb::arg("ats"), nb::arg("x"), nb::arg("starts"), nb::arg("lengths"), nb::arg("C"),
          nb::arg("L"), "StreamPool.push_many's writes: x[starts[i] : starts[i] + lengths[i]] -> ring row slots[i] from sample ats[i] (mod C), mirror kept.");
    m.def("kaldi_prep", &kaldi_prep, nb::arg("frames"), nb::arg("out"), nb::arg("n_fft"), nb::arg("lo"), nb::arg("remove_dc"), nb::arg("preemph"),
          "Kaldi's per-frame DC removal and pre-emphasis: frames (B, T, W) -> out (B, T n_fft), each frame at lo in its n_fft slot.");
    m.attr("POST_NONE") = static_cast<int>(POST_NONE);
    m.attr("POST_LN_FLOOR") = static_cast<int>(POST_LN_FLOOR);
    m.attr("POST_LOG10_FLOOR") = static_cast<int>(POST_LOG10_FLOOR);
    m.attr("POST_LN_ADD") = static_cast<int>(POST_LN_ADD);
    m.attr("POST_DB") = static_cast<int>(POST_DB);
    nb::class_<Plan>(m, "Plan")
        .def(nb::init<int, const InArray&, const InArray&, const std::string&, const std::string&, double, double, int, double, double>(),
             nb::arg("n_fft"), nb::arg("window"), nb::arg("fb"), nb::arg("dtype"), nb::arg("weights"), nb::arg("power"), nb::arg("mag_eps"),
             nb::arg("post"), nb::arg("post_a"), nb::arg("post_b"))
        .def_prop_ro("n_fft", [](const Plan& p) { return p.impl->n_fft; })
        .def_prop_ro("n_out", [](const Plan& p) { return p.impl->n_out; })
        .def("strided",
             [](Plan& p, const InArray& x, int64_t offset, int64_t hop, int64_t n_frames, OutArray out, int threads) {
                 p.impl->strided(x, offset, hop, n_frames, out, std::max(1, threads));
             },
             nb::arg("x"), nb::arg("offset"), nb::arg("hop"), nb::arg("n_frames"), nb::arg("out"), nb::arg("threads") = 1,
             "Frames x[b, offset + t hop : ... + n_fft] of every row b -> out[b, :, t] (large calls split over `threads`).")
        .def("gather",
             [](Plan& p, const InArray& x, const InArray& rows, const InArray& offsets, OutArray out, int threads) {
                 p.impl->gather(x, rows, offsets, out, std::max(1, threads));
             },
             nb::arg("x"), nb::arg("rows"), nb::arg("offsets"), nb::arg("out"), nb::arg("threads") = 1,
             "Frames x[rows[i], offsets[i] : ... + n_fft] -> out[i, :] (large calls split over `threads`).")
        .def("signal",
             [](Plan& p, const InArray& x, int64_t pad, int mode, int64_t hop, OutArray out, int threads, bool check) {
                 return p.impl->signal(x, pad, mode, hop, out, std::max(1, threads), check);
             },
             nb::arg("x"), nb::arg("pad"), nb::arg("mode"), nb::arg("hop"), nb::arg("out"), nb::arg("threads") = 1, nb::arg("check") = false,
             "Rows of an unpadded signal, padded here (0 constant, 1 reflect, 2 edge) -> every frame -> out (rows, n_out, n_frames); "
             "with check: 1 when x is not finite (nothing computed), 2 when out is not, else 0.")
        .def("ring",
             [](Plan& p, OutArray buf, int64_t fill, const InArray& chunk, int64_t offset, int64_t hop, OutArray out, bool check) {
                 return p.impl->ring(buf, fill, chunk, offset, hop, out, check);
             },
             nb::arg("buf"), nb::arg("fill"), nb::arg("chunk"), nb::arg("offset"), nb::arg("hop"), nb::arg("out"), nb::arg("check") = false,
             "A streaming push: chunk -> buf[:, fill : fill + n], frames offset + t hop -> out (rows, n_out, k); "
             "with check: 1 (the ring untouched) when the chunk is not finite, else 0.")
        .def("rfft", [](Plan& p, const InArray& x, OutArray out) { p.impl->rfft(x, out); }, nb::arg("x"), nb::arg("out"),
             "The bare real FFT (no window): x (count, n_fft) -> out (count, n_bins, 2).");
    register_pool(m);  // pool.hpp

    // ------------------------------------------------------------------ the single-frame path
    m.def(
        "set_single_max",
        [](int n) {
            if (n < 0) fail("set_single_max needs n >= 0");
            const int old = g_single_max;
            g_single_max = n;
            return old;
        },
        nb::arg("n"),
        "Plans built from now on compute calls of up to n frames frame by frame, vectorised within the frame "
        "(0: the batched kernels only); returns the previous value (tests).");
    m.attr("SINGLE_MAX_FRAMES") = SINGLE_MAX_FRAMES;

    // ------------------------------------------------------------------ StepRing (streaming push)
    m.def("set_enabled", [](bool on) { g_enabled = on; }, nb::arg("on"), "Mirror of supermel._native.enabled() for StepRing.push.");
    nb::class_<StepRing>(m, "StepRing")
        .def(nb::init<nb::handle, OutArray, OutArray, int64_t, int64_t, int64_t, int64_t, int64_t>(), nb::arg("plan"), nb::arg("seg0"),
             nb::arg("seg1"), nb::arg("held"), nb::arg("chunk"), nb::arg("offset"), nb::arg("hop"), nb::arg("k"))
        .def("push", &StepRing::push, nb::arg("chunk"), nb::arg("check"), nb::arg("squeeze"),
             "One steady-state push: the frames (new array), or None (nothing changed) when the chunk does not qualify.")
        .def_prop_rw("i", [](const StepRing& r) { return r.i; }, [](StepRing& r, int v) {
            if (v != 0 && v != 1) fail("i must be 0 or 1");
            r.i = v;
        });

    // ------------------------------------------------------------------ OfflineCall (module calls)
    nb::class_<OfflineCall>(m, "OfflineCall")
        .def(nb::init<nb::handle, int64_t, int, int64_t, int64_t, int64_t, int64_t>(), nb::arg("plan"), nb::arg("pad"), nb::arg("mode"), nb::arg("hop"),
             nb::arg("min_len"), nb::arg("block"), nb::arg("frame_cost"))
        .def("__call__", &OfflineCall::call, nb::arg("x"), nb::arg("check"), nb::arg("limit"), nb::arg("threads"),
             "The offline call on x (1-D or 2-D numpy): the frames, or None where the general path must run.");
}
