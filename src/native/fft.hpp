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

namespace supermel {
namespace SUPERMEL_ISA {

// Complex lane-vector helpers: c points at 2 L values (L re, then L im).
#define SM_LANES for (int l = 0; l < L; ++l)

template <class T, int L>
static inline void pass2(int n, int s, const T* tw, const T* x, T* y) {
    const int m = n / 2;
    for (int p = 0; p < m; ++p) {
        const T wr = tw[2 * p], wi = tw[2 * p + 1];
        for (int q = 0; q < s; ++q) {
            const T* a = x + 2 * L * (q + s * p);
            const T* b = x + 2 * L * (q + s * (p + m));
            T* y0 = y + 2 * L * (q + s * (2 * p));
            T* y1 = y + 2 * L * (q + s * (2 * p + 1));
            SM_LANES {
                const T dr = a[l] - b[l], di = a[L + l] - b[L + l];
                y0[l] = a[l] + b[l];
                y0[L + l] = a[L + l] + b[L + l];
                y1[l] = dr * wr - di * wi;
                y1[L + l] = dr * wi + di * wr;
            }
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
        const T w1r = w[0], w1i = w[1], w2r = w[2], w2i = w[3], w3r = w[4], w3i = w[5];
        for (int q = 0; q < s; ++q) {
            const T* a0 = x + 2 * L * (q + s * p);
            const T* a1 = x + 2 * L * (q + s * (p + m));
            const T* a2 = x + 2 * L * (q + s * (p + 2 * m));
            const T* a3 = x + 2 * L * (q + s * (p + 3 * m));
            T* y0 = y + 2 * L * (q + s * (4 * p));
            T* y1 = y0 + 2 * L * s;
            T* y2 = y1 + 2 * L * s;
            T* y3 = y2 + 2 * L * s;
            SM_LANES {
                const T t0r = a0[l] + a2[l], t0i = a0[L + l] + a2[L + l];
                const T t1r = a0[l] - a2[l], t1i = a0[L + l] - a2[L + l];
                const T t2r = a1[l] + a3[l], t2i = a1[L + l] + a3[L + l];
                const T t3r = a1[l] - a3[l], t3i = a1[L + l] - a3[L + l];
                y0[l] = t0r + t2r;
                y0[L + l] = t0i + t2i;
                const T b1r = t1r + t3i, b1i = t1i - t3r;  // t1 - i t3
                const T b2r = t0r - t2r, b2i = t0i - t2i;
                const T b3r = t1r - t3i, b3i = t1i + t3r;  // t1 + i t3
                y1[l] = b1r * w1r - b1i * w1i;
                y1[L + l] = b1r * w1i + b1i * w1r;
                y2[l] = b2r * w2r - b2i * w2i;
                y2[L + l] = b2r * w2i + b2i * w2r;
                y3[l] = b3r * w3r - b3i * w3i;
                y3[L + l] = b3r * w3i + b3i * w3r;
            }
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
        const T w1r = w[0], w1i = w[1], w2r = w[2], w2i = w[3];
        for (int q = 0; q < s; ++q) {
            const T* a0 = x + 2 * L * (q + s * p);
            const T* a1 = x + 2 * L * (q + s * (p + m));
            const T* a2 = x + 2 * L * (q + s * (p + 2 * m));
            T* y0 = y + 2 * L * (q + s * (3 * p));
            T* y1 = y0 + 2 * L * s;
            T* y2 = y1 + 2 * L * s;
            SM_LANES {
                const T t1r = a1[l] + a2[l], t1i = a1[L + l] + a2[L + l];
                const T t2r = a1[l] - a2[l], t2i = a1[L + l] - a2[L + l];
                const T mr = a0[l] - T(0.5) * t1r, mi = a0[L + l] - T(0.5) * t1i;
                const T nr = h * t2i, ni = -h * t2r;  // -i h t2
                y0[l] = a0[l] + t1r;
                y0[L + l] = a0[L + l] + t1i;
                const T b1r = mr + nr, b1i = mi + ni, b2r = mr - nr, b2i = mi - ni;
                y1[l] = b1r * w1r - b1i * w1i;
                y1[L + l] = b1r * w1i + b1i * w1r;
                y2[l] = b2r * w2r - b2i * w2i;
                y2[L + l] = b2r * w2i + b2i * w2r;
            }
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
            const T* a0 = x + 2 * L * (q + s * p);
            const T* a1 = x + 2 * L * (q + s * (p + m));
            const T* a2 = x + 2 * L * (q + s * (p + 2 * m));
            const T* a3 = x + 2 * L * (q + s * (p + 3 * m));
            const T* a4 = x + 2 * L * (q + s * (p + 4 * m));
            T* y0 = y + 2 * L * (q + s * (5 * p));
            T* y1 = y0 + 2 * L * s;
            T* y2 = y1 + 2 * L * s;
            T* y3 = y2 + 2 * L * s;
            T* y4 = y3 + 2 * L * s;
            SM_LANES {
                const T t1r = a1[l] + a4[l], t1i = a1[L + l] + a4[L + l];
                const T t2r = a2[l] + a3[l], t2i = a2[L + l] + a3[L + l];
                const T t3r = a1[l] - a4[l], t3i = a1[L + l] - a4[L + l];
                const T t4r = a2[l] - a3[l], t4i = a2[L + l] - a3[L + l];
                const T m1r = a0[l] + c1 * t1r + c2 * t2r, m1i = a0[L + l] + c1 * t1i + c2 * t2i;
                const T m2r = a0[l] + c2 * t1r + c1 * t2r, m2i = a0[L + l] + c2 * t1i + c1 * t2i;
                // n1 = -i (s1 t3 + s2 t4), n2 = -i (s2 t3 - s1 t4); -i (x + i y) = y - i x
                const T u1r = s1 * t3r + s2 * t4r, u1i = s1 * t3i + s2 * t4i;
                const T u2r = s2 * t3r - s1 * t4r, u2i = s2 * t3i - s1 * t4i;
                const T n1r = u1i, n1i = -u1r, n2r = u2i, n2i = -u2r;
                y0[l] = a0[l] + t1r + t2r;
                y0[L + l] = a0[L + l] + t1i + t2i;
                const T b1r = m1r + n1r, b1i = m1i + n1i, b4r = m1r - n1r, b4i = m1i - n1i;
                const T b2r = m2r + n2r, b2i = m2i + n2i, b3r = m2r - n2r, b3i = m2i - n2i;
                y1[l] = b1r * w[0] - b1i * w[1];
                y1[L + l] = b1r * w[1] + b1i * w[0];
                y2[l] = b2r * w[2] - b2i * w[3];
                y2[L + l] = b2r * w[3] + b2i * w[2];
                y3[l] = b3r * w[4] - b3i * w[5];
                y3[L + l] = b3r * w[5] + b3i * w[4];
                y4[l] = b4r * w[6] - b4i * w[7];
                y4[L + l] = b4r * w[7] + b4i * w[6];
            }
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
    T P[MAX_GENERIC_RADIX / 2][2][L], M[MAX_GENERIC_RADIX / 2][2][L];
    for (int p = 0; p < m; ++p) {
        const T* w = tw + 2 * (r - 1) * p;
        for (int q = 0; q < s; ++q) {
            const T* a0 = x + 2 * L * (q + s * p);
            T* y0 = y + 2 * L * (q + s * (r * p));
            for (int j = 1; j <= h; ++j) {
                const T* aj = x + 2 * L * (q + s * (p + j * m));
                const T* ak = x + 2 * L * (q + s * (p + (r - j) * m));
                SM_LANES {
                    P[j - 1][0][l] = aj[l] + ak[l];
                    P[j - 1][1][l] = aj[L + l] + ak[L + l];
                    M[j - 1][0][l] = aj[l] - ak[l];
                    M[j - 1][1][l] = aj[L + l] - ak[L + l];
                }
            }
            T sr[L], si[L];
            SM_LANES { sr[l] = a0[l]; si[l] = a0[L + l]; }
            for (int j = 0; j < h; ++j) SM_LANES { sr[l] += P[j][0][l]; si[l] += P[j][1][l]; }
            SM_LANES { y0[l] = sr[l]; y0[L + l] = si[l]; }
            for (int k = 1; k <= h; ++k) {
                T er[L], ei[L], orr[L], oi[L];
                SM_LANES { er[l] = a0[l]; ei[l] = a0[L + l]; orr[l] = 0; oi[l] = 0; }
                const T* ck = rt + 2 * h * (k - 1);
                for (int j = 0; j < h; ++j) {
                    const T c = ck[j], sn = ck[h + j];
                    SM_LANES {
                        er[l] += c * P[j][0][l];
                        ei[l] += c * P[j][1][l];
                        orr[l] += sn * M[j][0][l];
                        oi[l] += sn * M[j][1][l];
                    }
                }
                // b_k = E - i O, b_{r-k} = E + i O; -i (x + i y) = y - i x
                T* yk = y0 + 2 * L * s * k;
                T* yr = y0 + 2 * L * s * (r - k);
                const T wkr = w[2 * (k - 1)], wki = w[2 * (k - 1) + 1];
                const T wrr = w[2 * (r - k - 1)], wri = w[2 * (r - k - 1) + 1];
                SM_LANES {
                    const T bkr = er[l] + oi[l], bki = ei[l] - orr[l];
                    const T brr = er[l] - oi[l], bri = ei[l] + orr[l];
                    yk[l] = bkr * wkr - bki * wki;
                    yk[L + l] = bkr * wki + bki * wkr;
                    yr[l] = brr * wrr - bri * wri;
                    yr[L + l] = brr * wri + bri * wrr;
                }
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
    for (int j = 0; j < m; ++j) {
        const T cr = plan.chirp[2 * j], ci = plan.chirp[2 * j + 1];
        const T* a = x + 2 * L * j;
        T* d = conv_a + 2 * L * j;
        SM_LANES {
            const T ar = a[l], ai = a[L + l];
            d[l] = ar * cr - ai * ci;
            d[L + l] = ar * ci + ai * cr;
        }
    }
    for (int j = 2 * L * m; j < 2 * L * M; ++j) conv_a[j] = 0;
    T* A = stockham<T, L>(*plan.conv, conv_a, conv_b);
    for (int j = 0; j < M; ++j) {  // conj(A * B)
        const T br = plan.kernel[2 * j], bi = plan.kernel[2 * j + 1];
        T* a = A + 2 * L * j;
        SM_LANES {
            const T ar = a[l], ai = a[L + l];
            a[l] = ar * br - ai * bi;
            a[L + l] = -(ar * bi + ai * br);
        }
    }
    T* C = stockham<T, L>(*plan.conv, A, A == conv_a ? conv_b : conv_a);
    for (int k = 0; k < m; ++k) {  // X_k = c_k conj(C_k)
        const T cr = plan.chirp[2 * k], ci = plan.chirp[2 * k + 1];
        const T* c = C + 2 * L * k;
        T* d = x + 2 * L * k;
        SM_LANES {
            const T yr = c[l], yi = -c[L + l];
            d[l] = yr * cr - yi * ci;
            d[L + l] = yr * ci + yi * cr;
        }
    }
    return x;
}

template <class T, int L>
static T* cfft(const CfftView<T>& plan, T* x, T* work, T* conv_a, T* conv_b) {
    if (plan.m <= 1) return x;
    if (plan.n_passes == 0) return bluestein<T, L>(plan, x, conv_a, conv_b);
    return stockham<T, L>(plan, x, work);
}

// Real FFT of L frames: load(j, dst) writes the windowed sample j of every lane into dst[0 .. L)
// (called in order j = 0 .. N - 1, two at a time for even N). Then emit(k, re, im) receives bin k
// of every lane, k = 0 .. N / 2. buf_a, buf_b: work_elems elements of 2 L values each;
// conv_a, conv_b: the Bluestein buffers (conv_len elements each) or null.
template <class T, int L, class Load, class Emit>
static inline void rfft_batch(const RfftView<T>& plan, T* buf_a, T* buf_b, T* conv_a, T* conv_b, Load&& load, Emit&& emit) {
    const int N = plan.n;
    if (!plan.even) {  // odd N: complex FFT of (x_j, 0)
        for (int j = 0; j < N; ++j) {
            T* d = buf_a + 2 * L * j;
            load(j, d);
            SM_LANES d[L + l] = 0;
        }
        T* Z = cfft<T, L>(plan.cfft, buf_a, buf_b, conv_a, conv_b);
        for (int k = 0; k < plan.n_bins; ++k) emit(k, Z + 2 * L * k, Z + 2 * L * k + L);
        return;
    }
    const int m = N / 2;
    for (int j = 0; j < m; ++j) {
        T* d = buf_a + 2 * L * j;
        load(2 * j, d);
        load(2 * j + 1, d + L);
    }
    T* Z = cfft<T, L>(plan.cfft, buf_a, buf_b, conv_a, conv_b);
    T re[L], im[L];
    {  // k = 0 and k = m: Z_0 = a + i b gives X_0 = a + b, X_m = a - b
        const T* z0 = Z;
        SM_LANES { re[l] = z0[l] + z0[L + l]; im[l] = 0; }
        emit(0, re, im);
        SM_LANES { re[l] = z0[l] - z0[L + l]; im[l] = 0; }
        emit(m, re, im);
    }
    for (int k = 1; k < m; ++k) {
        const T* a = Z + 2 * L * k;
        const T* b = Z + 2 * L * (m - k);
        const T wr = plan.post_tw[2 * k], wi = plan.post_tw[2 * k + 1];
        SM_LANES {
            // E = (A + conj B) / 2, O = -i (A - conj B) / 2
            const T er = T(0.5) * (a[l] + b[l]), ei = T(0.5) * (a[L + l] - b[L + l]);
            const T dr = T(0.5) * (a[l] - b[l]), di = T(0.5) * (a[L + l] + b[L + l]);
            const T orr = di, oi = -dr;
            re[l] = er + (orr * wr - oi * wi);
            im[l] = ei + (orr * wi + oi * wr);
        }
        emit(k, re, im);
    }
}

#undef SM_LANES
}  // namespace SUPERMEL_ISA
}  // namespace supermel
#endif  // SUPERMEL_ISA
