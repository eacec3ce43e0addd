// Plans: the storage behind the views of fft.hpp and pipeline.hpp, built once per
// configuration (twiddles in double precision, rounded once to the working type).
// Included by bindings.cpp only (baseline instruction set).
#pragma once

#include <cmath>
#include <complex>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <vector>

#include "pipeline.hpp"

namespace supermel {

constexpr double PI = 3.141592653589793238462643383279502884;

//: exp(-2 pi i num / den) with num reduced modulo den first (exact integer angles).
inline std::complex<double> unit_root(int64_t num, int64_t den) {
    num %= den;
    if (num < 0) num += den;
    const double a = 2.0 * PI * static_cast<double>(num) / static_cast<double>(den);
    return {std::cos(a), -std::sin(a)};
}

//: Prime factors of m as Stockham radices: 4s first, then 2, 3, 5, then other primes.
inline std::vector<int> radices(int m) {
    std::vector<int> f;
    while (m % 4 == 0) { f.push_back(4); m /= 4; }
    for (int p : {2, 3, 5}) while (m % p == 0) { f.push_back(p); m /= p; }
    for (int p = 7; static_cast<int64_t>(p) * p <= m; p += 2) while (m % p == 0) { f.push_back(p); m /= p; }
    if (m > 1) f.push_back(m);
    return f;
}

//: Smallest 2^a 3^b 5^c >= n.
inline int smooth_length(int64_t n) {
    int64_t best = INT64_MAX;
    for (int64_t a = 1; a < 2 * n + 2; a *= 2)
        for (int64_t b = a; b < 2 * n + 2; b *= 3)
            for (int64_t c = b; c < 2 * n + 2; c *= 5)
                if (c >= n && c < best) best = c;
    if (best > INT32_MAX / 16) throw std::length_error("FFT length too large");
    return static_cast<int>(best);
}

//: Reference complex DFT in double of a 2/3/5-smooth length (recursive decimation in time),
//: used once per plan for Bluestein's kernel.
inline void dft_smooth(const std::complex<double>* x, int n, int stride, std::complex<double>* out) {
    if (n == 1) { out[0] = x[0]; return; }
    const int r = n % 2 == 0 ? 2 : n % 3 == 0 ? 3 : 5;
    const int sub = n / r;
    std::vector<std::complex<double>> parts(static_cast<size_t>(n));
    for (int j = 0; j < r; ++j) dft_smooth(x + static_cast<int64_t>(j) * stride, sub, stride * r, parts.data() + static_cast<int64_t>(j) * sub);
    for (int k = 0; k < n; ++k) {
        std::complex<double> s = 0;
        for (int j = 0; j < r; ++j) s += parts[static_cast<size_t>(j) * sub + k % sub] * unit_root(static_cast<int64_t>(j) * k, n);
        out[k] = s;
    }
}

template <class T>
struct CfftPlan {
    std::vector<FftPass<T>> passes;
    std::vector<std::vector<T>> tw, rt;
    std::vector<T> chirp, kernel;
    std::unique_ptr<CfftPlan<T>> conv;
    CfftView<T> view;

    explicit CfftPlan(int m) {
        view.m = m;
        if (m <= 1) return;
        const std::vector<int> f = radices(m);
        bool generic_ok = true;
        for (int r : f) generic_ok = generic_ok && r <= MAX_GENERIC_RADIX;
        if (!generic_ok) {
            build_bluestein(m);
            return;
        }
        int n = m, s = 1;
        for (int r : f) {
            std::vector<T> w(static_cast<size_t>(2) * (n / r) * (r - 1));
            for (int p = 0; p < n / r; ++p)
                for (int k = 1; k < r; ++k) {
                    const std::complex<double> c = unit_root(static_cast<int64_t>(p) * k, n);
                    w[2 * (static_cast<size_t>(p) * (r - 1) + k - 1)] = static_cast<T>(c.real());
                    w[2 * (static_cast<size_t>(p) * (r - 1) + k - 1) + 1] = static_cast<T>(c.imag());
                }
            std::vector<T> c;
            if (r > 5) {  // generic radix: cos / sin of 2 pi j k / r for j, k = 1 .. (r-1)/2
                const int h = (r - 1) / 2;
                c.resize(static_cast<size_t>(2) * h * h);
                for (int k = 1; k <= h; ++k)
                    for (int j = 1; j <= h; ++j) {
                        const double a = 2.0 * PI * static_cast<double>((static_cast<int64_t>(j) * k) % r) / r;
                        c[2 * static_cast<size_t>(h) * (k - 1) + (j - 1)] = static_cast<T>(std::cos(a));
                        c[2 * static_cast<size_t>(h) * (k - 1) + h + (j - 1)] = static_cast<T>(std::sin(a));
                    }
            }
            tw.push_back(std::move(w));
            rt.push_back(std::move(c));
            passes.push_back(FftPass<T>{r, n, s, nullptr, nullptr});
            n /= r;
            s *= r;
        }
        for (size_t i = 0; i < passes.size(); ++i) {
            passes[i].tw = tw[i].data();
            passes[i].rt = rt[i].empty() ? nullptr : rt[i].data();
        }
        view.n_passes = static_cast<int>(passes.size());
        view.passes = passes.data();
    }

    void build_bluestein(int m) {
        const int M = smooth_length(2 * static_cast<int64_t>(m) - 1);
        conv = std::make_unique<CfftPlan<T>>(M);
        std::vector<std::complex<double>> c(static_cast<size_t>(m)), b(static_cast<size_t>(M), 0.0), B(static_cast<size_t>(M));
        chirp.resize(static_cast<size_t>(2) * m);
        for (int j = 0; j < m; ++j) {
            // c_j = exp(-pi i j^2 / m) = exp(-2 pi i (j^2 mod 2m) / 2m)
            c[j] = unit_root((static_cast<int64_t>(j) * j) % (2 * static_cast<int64_t>(m)), 2 * static_cast<int64_t>(m));
            chirp[2 * j] = static_cast<T>(c[j].real());
            chirp[2 * j + 1] = static_cast<T>(c[j].imag());
            b[j] = std::conj(c[j]);
            if (j > 0) b[M - j] = std::conj(c[j]);
        }
        dft_smooth(b.data(), M, 1, B.data());
        kernel.resize(static_cast<size_t>(2) * M);
        for (int k = 0; k < M; ++k) {
            kernel[2 * k] = static_cast<T>(B[k].real() / M);
            kernel[2 * k + 1] = static_cast<T>(B[k].imag() / M);
        }
        view.n_passes = 0;
        view.conv_len = M;
        view.chirp = chirp.data();
        view.kernel = kernel.data();
        view.conv = &conv->view;
    }
};

template <class T>
struct RfftPlan {
    std::unique_ptr<CfftPlan<T>> cplan;
    std::vector<T> post_tw;
    RfftView<T> view;

    explicit RfftPlan(int n) {
        if (n < 1) throw std::invalid_argument("n_fft must be >= 1");
        view.n = n;
        view.n_bins = n / 2 + 1;
        view.even = n % 2 == 0;
        const int m = view.even ? n / 2 : n;
        cplan = std::make_unique<CfftPlan<T>>(m);
        view.cfft = cplan->view;
        if (view.even) {
            post_tw.resize(static_cast<size_t>(2) * (n / 2 + 1));
            for (int k = 0; k <= n / 2; ++k) {
                const std::complex<double> w = unit_root(k, n);
                post_tw[2 * k] = static_cast<T>(w.real());
                post_tw[2 * k + 1] = static_cast<T>(w.imag());
            }
            view.post_tw = post_tw.data();
        }
        view.work_elems = static_cast<size_t>(m);
    }
};

//: 64-byte aligned scratch memory.
class Aligned {
  public:
    Aligned() = default;
    explicit Aligned(size_t bytes) : size_(bytes) {
        if (bytes) ptr_ = ::operator new(bytes, std::align_val_t(64));
    }
    Aligned(const Aligned&) = delete;
    Aligned& operator=(const Aligned&) = delete;
    Aligned(Aligned&& o) noexcept : ptr_(o.ptr_), size_(o.size_) { o.ptr_ = nullptr; o.size_ = 0; }
    Aligned& operator=(Aligned&& o) noexcept {
        if (this != &o) { release(); ptr_ = o.ptr_; size_ = o.size_; o.ptr_ = nullptr; o.size_ = 0; }
        return *this;
    }
    ~Aligned() { release(); }
    void* get() const { return ptr_; }

  private:
    void release() {
        if (ptr_) ::operator delete(ptr_, std::align_val_t(64));
        ptr_ = nullptr;
    }
    void* ptr_ = nullptr;
    size_t size_ = 0;
};

//: The buffers of one call (see Work).
struct Workspace {
    Aligned a, b, ca, cb, p;
    Work work{};

    template <class T>
    static Workspace make(const RfftView<T>& f) {
        constexpr int L = lanes<T>();
        Workspace w;
        const size_t e = sizeof(T) * 2 * L;
        w.a = Aligned(e * f.work_elems);
        w.b = Aligned(e * f.work_elems);
        if (f.cfft.conv_len) {
            w.ca = Aligned(e * f.cfft.conv_len);
            w.cb = Aligned(e * f.cfft.conv_len);
        }
        w.p = Aligned(sizeof(T) * L * f.n_bins);
        w.work = Work{w.a.get(), w.b.get(), w.ca.get(), w.cb.get(), w.p.get()};
        return w;
    }
};

}  // namespace supermel
