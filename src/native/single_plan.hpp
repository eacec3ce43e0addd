// The tables of the single-frame path (single.hpp), built once per plan from the batched plan's
// own tables (the same values, rearranged). Included by bindings.cpp only (baseline
// instruction set), like plan.hpp.
#pragma once

#include <cstdint>
#include <vector>

#include "plan.hpp"
#include "single.hpp"

namespace supermel {

template <class T, class W>
struct SinglePlan {
    std::vector<SinglePass<T>> passes;
    std::vector<std::vector<T>> wr, wi;
    std::vector<T> post_r, post_i;
    std::vector<int32_t> g_steps, g_full, g_len, idx;
    std::vector<int64_t> g_off;
    std::vector<W> wt;
    SingleView<T, W> view;
    bool ok = false;  // false: not covered (Bluestein): the batched kernel runs

    //: fft: the plan's real FFT; bands: start, length, offset of each band's weights in `weights`.
    SinglePlan(const RfftView<T>& fft, const std::vector<int32_t>& band_start, const std::vector<int32_t>& band_len,
               const std::vector<int64_t>& band_off, const std::vector<W>& weights) {
        const CfftView<T>& c = fft.cfft;
        if (c.m > 1 && c.n_passes == 0) return;  // Bluestein
        view.m = c.m;
        for (int i = 0; i < c.n_passes; ++i) {
            const FftPass<T>& ps = c.passes[i];
            const int r = ps.radix, mm = ps.n / r;
            SinglePass<T> sp{r, ps.n, ps.stride, mm >= ps.stride, nullptr, nullptr, ps.tw, ps.rt};
            std::vector<T> a, b;
            if (sp.over_p) {  // row k - 1: w_n^{p k}, p < m' (the batched table's entries)
                a.resize(static_cast<size_t>(r - 1) * mm);
                b.resize(a.size());
                for (int p = 0; p < mm; ++p)
                    for (int k = 1; k < r; ++k) {
                        a[static_cast<size_t>(k - 1) * mm + p] = ps.tw[2 * (static_cast<size_t>(p) * (r - 1) + k - 1)];
                        b[static_cast<size_t>(k - 1) * mm + p] = ps.tw[2 * (static_cast<size_t>(p) * (r - 1) + k - 1) + 1];
                    }
            }
            wr.push_back(std::move(a));
            wi.push_back(std::move(b));
            passes.push_back(sp);
        }
        for (size_t i = 0; i < passes.size(); ++i) {
            passes[i].wr = wr[i].empty() ? nullptr : wr[i].data();
            passes[i].wi = wi[i].empty() ? nullptr : wi[i].data();
        }
        view.n_passes = static_cast<int>(passes.size());
        view.passes = passes.data();
        if (fft.even) {
            const int m = fft.n / 2;
            post_r.resize(static_cast<size_t>(m) + 1);
            post_i.resize(static_cast<size_t>(m) + 1);
            for (int k = 0; k <= m; ++k) {
                post_r[k] = fft.post_tw[2 * k];
                post_i[k] = fft.post_tw[2 * k + 1];
            }
            view.post_r = post_r.data();
            view.post_i = post_i.data();
        }
        constexpr int VW = lanes<W>();
        const int n_bands = static_cast<int>(band_start.size());
        const int n_groups = (n_bands + VW - 1) / VW;
        for (int g = 0; g < n_groups; ++g) {
            int steps = 0, full = INT32_MAX;
            for (int l = 0; l < VW; ++l) {
                const int b = g * VW + l;
                const int len = b < n_bands ? band_len[b] : 0;
                g_len.push_back(len);
                steps = len > steps ? len : steps;
                full = len < full ? len : full;
            }
            g_steps.push_back(steps);
            g_full.push_back(full);
            g_off.push_back(static_cast<int64_t>(idx.size()));
            for (int k = 0; k < steps; ++k)
                for (int l = 0; l < VW; ++l) {
                    const int b = g * VW + l;
                    const bool in = b < n_bands && k < band_len[b];
                    idx.push_back(in ? band_start[b] + k : 0);
                    wt.push_back(in ? weights[static_cast<size_t>(band_off[b] + k)] : W(0));
                }
        }
        view.n_groups = n_groups;
        view.g_steps = g_steps.data();
        view.g_full = g_full.data();
        view.g_off = g_off.data();
        view.g_len = g_len.data();
        view.idx = idx.data();
        view.wt = wt.data();
        ok = true;
    }
};

}  // namespace supermel
