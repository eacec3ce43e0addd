// supermel's real FFT, batched across frames.
//
// Written for this project (no third-party source). Layout: a batch of L
// transforms is processed at once, interleaved: complex element j of the batch
// is 2 L values, the L real parts then the L imaginary parts ("lanes", one
// lane per frame). Every arithmetic loop runs over the lanes with L a
// compile-time constant, so the compiler turns it into SIMD instructions
// (8 float32 or 4 float64 lanes = one 256-bit AVX2 register); nothing in the
// kernels depends on the lane index, so a frame's result does not depend on
// which lane or batch it lands in.
//
// The complex FFT is Stockham's self-sorting mixed-radix algorithm (decimation
// in frequency): the length m = r_1 r_2 ... r_k is split into radix-4, 2, 3
// and 5 passes, other primes up to MAX_GENERIC_RADIX by a generic odd-radix
// pass, larger primes by Bluestein's chirp-z algorithm (a circular convolution
// of 2/3/5-smooth length, computed by the same passes). Pass s, of radix r on
// sub-length n with stride s (n s r... = m):
//
//     y[q + s (r p + k)] = w_n^{p k} * sum_j x[q + s (p + j n/r)] w_r^{j k},
//     p < n/r, q < s, k < r,  w_n = exp(-2 pi i / n)
//
// which leaves the output in natural order after the last pass (no bit
// reversal). Twiddles are computed in double precision from exact integer
// angles and rounded once to the working type.
//
// A real transform of even length N uses a complex FFT of N/2 points on
// z_j = x_{2j} + i x_{2j+1} and the split
//     X_k = E_k + W^k O_k,  E_k = (Z_k + conj Z_{N/2-k}) / 2,
//     O_k = -i (Z_k - conj Z_{N/2-k}) / 2,  W = exp(-2 pi i / N);
// an odd N runs the complex FFT of N points on (x_j, 0).
//
// This header has two parts: the plan (plain data, built once by plan.cpp in
// the baseline instruction set) and the kernels, compiled once per instruction
// set inside namespace supermel::SUPERMEL_ISA (kernels_*.cpp). The kernels use
// raw pointers only (no standard-library containers) so that code compiled for
// AVX2 can never be picked by the linker for a baseline caller.

#ifndef SUPERMEL_FFT_PLAN_DEFINED
#define SUPERMEL_FFT_PLAN_DEFINED

#include <cstddef>
#include <cstdint>

namespace supermel {

//: Largest prime handled by the generic odd-radix pass; larger ones go to Bluestein.
constexpr int MAX_GENERIC_RADIX = 61;

//: One Stockham pass: radix r over sub-length n (stride m / n).
template <class T>
struct FftPass {
    int radix;
    int n;        // sub-length this pass splits
    int stride;   // s: distance between the elements of one sub-transform
    const T* tw;  // (n / r) * (r - 1) complex twiddles w_n^{p k}: re then im per entry
    const T* rt;  // generic radix only: (r - 1) * (r - 1)... cos/sin table of w_r^{j k}
};

//: A complex FFT of length m (plain view: pointers into storage owned by the Python-side plan).
template <class T>
struct CfftView {
    int m = 0;
    int n_passes = 0;
    const FftPass<T>* passes = nullptr;
    // Bluestein (n_passes == 0 and m > 1): chirp c_j = exp(-pi i j^2 / m), the
    // transformed, 1/M-scaled kernel B of length M, and the plan of length M.
    int conv_len = 0;
    const T* chirp = nullptr;   // m complex (re, im pairs)
    const T* kernel = nullptr;  // M complex
    const CfftView<T>* conv = nullptr;
};

//: A real FFT of length N.
template <class T>
struct RfftView {
    int n = 0;               // N
    int n_bins = 0;          // N / 2 + 1
    bool even = true;
    CfftView<T> cfft;        // length N / 2 (even) or N (odd)
    const T* post_tw = nullptr;  // even N: W^k, k < N / 2 + 1 (re, im pairs)
    // complex elements (of 2 L values) each of the two work buffers needs
    std::size_t work_elems = 0;
};

}  // namespace supermel

#endif  // SUPERMEL_FFT_PLAN_DEFINED

// ---------------------------------------------------------------------------------------- kernels
#if defined(SUPERMEL_ISA) && !defined(SUPERMEL_FFT_KERNELS_DONE)
#define SUPERMEL_FFT_KERNELS_DONE
#include <cmath>
#include <cstring>

#define SM_LANES for (int l = 0; l < L; ++l)

namespace supermel {
namespace SUPERMEL_ISA {

// Lane vectors: L values of T in one SIMD value (GCC/Clang vector extensions; a plain
// array with element-wise operators elsewhere). Loads and stores are unaligned memcpys.
#if defined(__GNUC__) || defined(__clang__)
template <class T, int L>
struct VecT {
    typedef T type __attribute__((vector_size(sizeof(T) * L)));
};
template <class T, int L>
using Vec = typename VecT<T, L>::type;
#else
template <class T, int L>
struct Vec {
    T v[L];
#define SM_VOP(op)                                                                                     \
    friend Vec operator op(const Vec& a, const Vec& b) { Vec r; for (int l = 0; l < L; ++l) r.v[l] = a.v[l] op b.v[l]; return r; } \
    friend Vec operator op(T a, const Vec& b) { Vec r; for (int l = 0; l < L; ++l) r.v[l] = a op b.v[l]; return r; }           \
    friend Vec operator op(const Vec& a, T b) { Vec r; for (int l = 0; l < L; ++l) r.v[l] = a.v[l] op b; return r; }
    SM_VOP(+) SM_VOP(-) SM_VOP(*)
#undef SM_VOP
    friend Vec operator-(const Vec& a) { Vec r; for (int l = 0; l < L; ++l) r.v[l] = -a.v[l]; return r; }
};
#endif

template <class T, int L>
static inline Vec<T, L> vload(const T* p) {
    Vec<T, L> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <class T, int L>
static inline void vstore(T* p, const Vec<T, L>& v) { std::memcpy(p, &v, sizeof v); }

//: A complex lane vector: L real parts, L imaginary parts.
template <class T, int L>
struct CVec {
    Vec<T, L> r, i;
};
template <class T, int L>
static inline CVec<T, L> cload(const T* p) { return {vload<T, L>(p), vload<T, L>(p + L)}; }
template <class T, int L>
static inline void cstore(T* p, const CVec<T, L>& c) { vstore<T, L>(p, c.r); vstore<T, L>(p + L, c.i); }
template <class T, int L>
static inline CVec<T, L> operator+(const CVec<T, L>& a, const CVec<T, L>& b) { return {a.r + b.r, a.i + b.i}; }
template <class T, int L>
static inline CVec<T, L> operator-(const CVec<T, L>& a, const CVec<T, L>& b) { return {a.r - b.r, a.i - b.i}; }
//: times a scalar complex w = (wr, wi)
template <class T, int L>
static inline CVec<T, L> cmul(const CVec<T, L>& a, T wr, T wi) { return {a.r * wr - a.i * wi, a.r * wi + a.i * wr}; }
//: times -i: (x + i y) (-i) = y - i x
template <class T, int L>
static inline CVec<T, L> mul_mi(const CVec<T, L>& a) { return {a.i, -a.r}; }
template <class T, int L>
static inline CVec<T, L> scale(const CVec<T, L>& a, T s) { return {a.r * s, a.i * s}; }

// Element e of a batch buffer: 2 L values.
#define SM_AT(buf, e) ((buf) + 2 * L * static_cast<std::ptrdiff_t>(e))

template <class T, int L>
static inline void pass2(int n, int s, const T* tw, const T* x, T* y) {
    const int m = n / 2;
    for (int p = 0; p < m; ++p) {
        const T wr = tw[2 * p], wi = tw[2 * p + 1];
        for (int q = 0; q < s; ++q) {
            const CVec<T, L> a = cload<T, L>(SM_AT(x, q + s * p)), b = cload<T, L>(SM_AT(x, q + s * (p + m)));
            cstore<T, L>(SM_AT(y, q + s * (2 * p)), a + b);
            cstore<T, L>(SM_AT(y, q + s * (2 * p + 1)), cmul<T, L>(a - b, wr, wi));
        }
    }
}

// Radix 4 fused: t0 = a0 + a2, t1 = a0 - a2, t2 = a1 + a3, t3 = a1 - a3;
// b0 = t0 + t2, b2 = t0 - t2, b1 = t1 - i t3, b3 = t1 + i t3 (forward sign).
template <class T, int L>
static inline void pass4(int n, int s, const T* tw, const T* x, T* y) {
    const int m = n / 4;
    for (int p = 0; p < m; ++p) {
        const T* w = tw + 6 * p;
        for (int q = 0; q < s; ++q) {
            const CVec<T, L> a0 = cload<T, L>(SM_AT(x, q + s * p)), a1 = cload<T, L>(SM_AT(x, q + s * (p + m)));
            const CVec<T, L> a2 = cload<T, L>(SM_AT(x, q + s * (p + 2 * m))), a3 = cload<T, L>(SM_AT(x, q + s * (p + 3 * m)));
            const CVec<T, L> t0 = a0 + a2, t1 = a0 - a2, t2 = a1 + a3, t3 = mul_mi<T, L>(a1 - a3);
            T* y0 = SM_AT(y, q + s * (4 * p));
            cstore<T, L>(y0, t0 + t2);
            cstore<T, L>(y0 + 2 * L * s, cmul<T, L>(t1 + t3, w[0], w[1]));
            cstore<T, L>(y0 + 4 * L * s, cmul<T, L>(t0 - t2, w[2], w[3]));
            cstore<T, L>(y0 + 6 * L * s, cmul<T, L>(t1 - t3, w[4], w[5]));
        }
    }
}

// Radix 3: with w = exp(-2 pi i / 3) = -1/2 - i sqrt(3)/2,
// b0 = a0 + (a1 + a2), b1,2 = a0 - (a1 + a2) / 2 -+ i (sqrt(3)/2) (a1 - a2).
template <class T, int L>
static inline void pass3(int n, int s, const T* tw, const T* x, T* y) {
    const int m = n / 3;
    const T h = T(0.86602540378443864676372317075294);  // sqrt(3) / 2
    for (int p = 0; p < m; ++p) {
        const T* w = tw + 4 * p;
        for (int q = 0; q < s; ++q) {
            const CVec<T, L> a0 = cload<T, L>(SM_AT(x, q + s * p)), a1 = cload<T, L>(SM_AT(x, q + s * (p + m)));
            const CVec<T, L> a2 = cload<T, L>(SM_AT(x, q + s * (p + 2 * m)));
            const CVec<T, L> t1 = a1 + a2;
            const CVec<T, L> mm = a0 - scale<T, L>(t1, T(0.5));
            const CVec<T, L> nn = scale<T, L>(mul_mi<T, L>(a1 - a2), h);
            T* y0 = SM_AT(y, q + s * (3 * p));
            cstore<T, L>(y0, a0 + t1);
            cstore<T, L>(y0 + 2 * L * s, cmul<T, L>(mm + nn, w[0], w[1]));
            cstore<T, L>(y0 + 4 * L * s, cmul<T, L>(mm - nn, w[2], w[3]));
        }
    }
}

// Radix 5: t1 = a1 + a4, t2 = a2 + a3, t3 = a1 - a4, t4 = a2 - a3;
// b1,4 = a0 + c1 t1 + c2 t2 -+ i (s1 t3 + s2 t4), b2,3 = a0 + c2 t1 + c1 t2 -+ i (s2 t3 - s1 t4)
// with c_k = cos(2 pi k / 5), s_k = sin(2 pi k / 5).
template <class T, int L>
static inline void pass5(int n, int s, const T* tw, const T* x, T* y) {
    const int m = n / 5;
    const T c1 = T(0.30901699437494742410229341718282), c2 = T(-0.80901699437494742410229341718282);
    const T s1 = T(0.95105651629515357211643933337938), s2 = T(0.58778525229247312916870595463907);
    for (int p = 0; p < m; ++p) {
        const T* w = tw + 8 * p;
        for (int q = 0; q < s; ++q) {
            const CVec<T, L> a0 = cload<T, L>(SM_AT(x, q + s * p)), a1 = cload<T, L>(SM_AT(x, q + s * (p + m)));
            const CVec<T, L> a2 = cload<T, L>(SM_AT(x, q + s * (p + 2 * m))), a3 = cload<T, L>(SM_AT(x, q + s * (p + 3 * m)));
            const CVec<T, L> a4 = cload<T, L>(SM_AT(x, q + s * (p + 4 * m)));
            const CVec<T, L> t1 = a1 + a4, t2 = a2 + a3, t3 = a1 - a4, t4 = a2 - a3;
            const CVec<T, L> m1 = a0 + scale<T, L>(t1, c1) + scale<T, L>(t2, c2);
            const CVec<T, L> m2 = a0 + scale<T, L>(t1, c2) + scale<T, L>(t2, c1);
            const CVec<T, L> n1 = mul_mi<T, L>(scale<T, L>(t3, s1) + scale<T, L>(t4, s2));
            const CVec<T, L> n2 = mul_mi<T, L>(scale<T, L>(t3, s2) - scale<T, L>(t4, s1));
            T* y0 = SM_AT(y, q + s * (5 * p));
            cstore<T, L>(y0, a0 + t1 + t2);
            cstore<T, L>(y0 + 2 * L * s, cmul<T, L>(m1 + n1, w[0], w[1]));
            cstore<T, L>(y0 + 4 * L * s, cmul<T, L>(m2 + n2, w[2], w[3]));
            cstore<T, L>(y0 + 6 * L * s, cmul<T, L>(m2 - n2, w[4], w[5]));
            cstore<T, L>(y0 + 8 * L * s, cmul<T, L>(m1 - n1, w[6], w[7]));
        }
    }
}

// Generic odd radix r (a prime up to MAX_GENERIC_RADIX): with the symmetric pairs
// P_j = a_j + a_{r-j}, M_j = a_j - a_{r-j} (j = 1 .. (r-1)/2),
// b_k, b_{r-k} = a0 + sum_j cos(2 pi j k / r) P_j  -+  i sum_j sin(2 pi j k / r) M_j.
// rt holds cos then sin of 2 pi (j k mod r) / r for j, k = 1 .. (r-1)/2.
template <class T, int L>
static inline void pass_generic(int r, int n, int s, const T* tw, const T* rt, const T* x, T* y) {
    const int m = n / r, h = (r - 1) / 2;
    CVec<T, L> P[MAX_GENERIC_RADIX / 2], M[MAX_GENERIC_RADIX / 2];
    for (int p = 0; p < m; ++p) {
        const T* w = tw + 2 * (r - 1) * p;
        for (int q = 0; q < s; ++q) {
            const CVec<T, L> a0 = cload<T, L>(SM_AT(x, q + s * p));
            CVec<T, L> sum = a0;
            for (int j = 1; j <= h; ++j) {
                const CVec<T, L> aj = cload<T, L>(SM_AT(x, q + s * (p + j * m)));
                const CVec<T, L> ak = cload<T, L>(SM_AT(x, q + s * (p + (r - j) * m)));
                P[j - 1] = aj + ak;
                M[j - 1] = aj - ak;
                sum = sum + P[j - 1];
            }
            T* y0 = SM_AT(y, q + s * (r * p));
            cstore<T, L>(y0, sum);
            for (int k = 1; k <= h; ++k) {
                CVec<T, L> e = a0, o = scale<T, L>(a0, T(0));
                const T* ck = rt + 2 * h * (k - 1);
                for (int j = 0; j < h; ++j) {
                    e = e + scale<T, L>(P[j], ck[j]);
                    o = o + scale<T, L>(M[j], ck[h + j]);
                }
                const CVec<T, L> io = mul_mi<T, L>(o);  // -i O
                cstore<T, L>(y0 + 2 * L * s * k, cmul<T, L>(e + io, w[2 * (k - 1)], w[2 * (k - 1) + 1]));
                cstore<T, L>(y0 + 2 * L * s * (r - k), cmul<T, L>(e - io, w[2 * (r - k - 1)], w[2 * (r - k - 1) + 1]));
            }
        }
    }
}

// Complex FFT of the batch in x (m elements of 2 L values); work has as many.
// Returns the buffer that holds the result (x or work).
template <class T, int L>
static T* cfft(const CfftView<T>& plan, T* x, T* work, T* conv_a, T* conv_b);

template <class T, int L>
static T* stockham(const CfftView<T>& plan, T* x, T* work) {
    T* src = x;
    T* dst = work;
    for (int i = 0; i < plan.n_passes; ++i) {
        const FftPass<T>& ps = plan.passes[i];
        switch (ps.radix) {
            case 4: pass4<T, L>(ps.n, ps.stride, ps.tw, src, dst); break;
            case 2: pass2<T, L>(ps.n, ps.stride, ps.tw, src, dst); break;
            case 3: pass3<T, L>(ps.n, ps.stride, ps.tw, src, dst); break;
            case 5: pass5<T, L>(ps.n, ps.stride, ps.tw, src, dst); break;
            default: pass_generic<T, L>(ps.radix, ps.n, ps.stride, ps.tw, ps.rt, src, dst); break;
        }
        T* t = src; src = dst; dst = t;
    }
    return src;
}

// Bluestein: X_k = c_k sum_j (x_j c_j) conj(c_{k-j}), c_j = exp(-pi i j^2 / m), a circular
// convolution of length M >= 2 m - 1 computed as IFFT(FFT(a) * B), B = FFT(conj c) / M
// precomputed; IFFT(Y) = conj(FFT(conj Y)) (the 1 / M is in B).
template <class T, int L>
static T* bluestein(const CfftView<T>& plan, T* x, T* conv_a, T* conv_b) {
    const int m = plan.m, M = plan.conv_len;
    for (int j = 0; j < m; ++j) cstore<T, L>(SM_AT(conv_a, j), cmul<T, L>(cload<T, L>(SM_AT(x, j)), plan.chirp[2 * j], plan.chirp[2 * j + 1]));
    for (std::ptrdiff_t j = 2 * L * static_cast<std::ptrdiff_t>(m); j < 2 * L * static_cast<std::ptrdiff_t>(M); ++j) conv_a[j] = 0;
    T* A = stockham<T, L>(*plan.conv, conv_a, conv_b);
    for (int j = 0; j < M; ++j) {  // conj(A * B)
        const CVec<T, L> c = cmul<T, L>(cload<T, L>(SM_AT(A, j)), plan.kernel[2 * j], plan.kernel[2 * j + 1]);
        cstore<T, L>(SM_AT(A, j), CVec<T, L>{c.r, -c.i});
    }
    T* C = stockham<T, L>(*plan.conv, A, A == conv_a ? conv_b : conv_a);
    for (int k = 0; k < m; ++k) {  // X_k = c_k conj(C_k)
        const CVec<T, L> c = cload<T, L>(SM_AT(C, k));
        cstore<T, L>(SM_AT(x, k), cmul<T, L>(CVec<T, L>{c.r, -c.i}, plan.chirp[2 * k], plan.chirp[2 * k + 1]));
    }
    return x;
}

template <class T, int L>
static T* cfft(const CfftView<T>& plan, T* x, T* work, T* conv_a, T* conv_b) {
    if (plan.m <= 1) return x;
    if (plan.n_passes == 0) return bluestein<T, L>(plan, x, conv_a, conv_b);
    return stockham<T, L>(plan, x, work);
}

// Real FFT of L frames: fill(dst, stride) writes sample j of lane l at dst[stride j + l] for
// j < N (the windowed frames, transposed into the lane layout). For even N the stride is L:
// samples 2j and 2j + 1 land in the real and imaginary parts of complex element j, the
// packing of the half-length transform. Then emit(k, X) receives bin k of every lane (a CVec),
// k = 0 .. N / 2, in any order. buf_a, buf_b: work_elems elements of 2 L values each;
// conv_a, conv_b: the Bluestein buffers (conv_len elements each) or null.
template <class T, int L, class Fill, class Emit>
static inline void rfft_batch(const RfftView<T>& plan, T* buf_a, T* buf_b, T* conv_a, T* conv_b, Fill&& fill, Emit&& emit) {
    const int N = plan.n;
    if (!plan.even) {  // odd N: complex FFT of (x_j, 0)
        fill(buf_a, 2 * L);
        for (int j = 0; j < N; ++j) SM_LANES buf_a[2 * L * j + L + l] = 0;
        T* Z = cfft<T, L>(plan.cfft, buf_a, buf_b, conv_a, conv_b);
        for (int k = 0; k < plan.n_bins; ++k) emit(k, cload<T, L>(SM_AT(Z, k)));
        return;
    }
    const int m = N / 2;
    fill(buf_a, L);
    T* Z = cfft<T, L>(plan.cfft, buf_a, buf_b, conv_a, conv_b);
    {  // k = 0 and k = m: Z_0 = a + i b gives X_0 = a + b, X_m = a - b
        const CVec<T, L> z0 = cload<T, L>(Z);
        const Vec<T, L> zero = z0.r * T(0);
        emit(0, CVec<T, L>{z0.r + z0.i, zero});
        emit(m, CVec<T, L>{z0.r - z0.i, zero});
    }
    for (int k = 1; k < m; ++k) {
        // E = (A + conj B) / 2, O = -i (A - conj B) / 2, X_k = E + W^k O
        const CVec<T, L> a = cload<T, L>(SM_AT(Z, k)), b = cload<T, L>(SM_AT(Z, m - k));
        const CVec<T, L> e{T(0.5) * (a.r + b.r), T(0.5) * (a.i - b.i)};
        const CVec<T, L> o = mul_mi<T, L>(CVec<T, L>{T(0.5) * (a.r - b.r), T(0.5) * (a.i + b.i)});
        emit(k, e + cmul<T, L>(o, plan.post_tw[2 * k], plan.post_tw[2 * k + 1]));
    }
}

#undef SM_LANES
#undef SM_AT
}  // namespace SUPERMEL_ISA
}  // namespace supermel
#endif  // SUPERMEL_ISA
