// The compiled entry points of the kernels, one set per instruction set (kernels_base.cpp,
// kernels_avx2.cpp); bindings.cpp picks a set at run time by the CPU's features.
#pragma once

#include "pipeline.hpp"

namespace supermel {

#define SUPERMEL_DECLARE_KERNELS(NS)                                                                     \
    namespace NS {                                                                                       \
    void mel_strided(const MelView<float, float>& v, const StridedArgs& a, const Work& ws);              \
    void mel_strided(const MelView<float, double>& v, const StridedArgs& a, const Work& ws);             \
    void mel_strided(const MelView<double, double>& v, const StridedArgs& a, const Work& ws);            \
    void mel_gather(const MelView<float, float>& v, const GatherArgs& a, const Work& ws);                \
    void mel_gather(const MelView<float, double>& v, const GatherArgs& a, const Work& ws);               \
    void mel_gather(const MelView<double, double>& v, const GatherArgs& a, const Work& ws);              \
    void rfft(const RfftView<float>& f, const float* x, int64_t row_stride, int64_t count, float* out,   \
              int64_t out_row, const Work& ws);                                                          \
    void rfft(const RfftView<double>& f, const double* x, int64_t row_stride, int64_t count, double* out, \
              int64_t out_row, const Work& ws);                                                          \
    }

SUPERMEL_DECLARE_KERNELS(base)
#if defined(SUPERMEL_HAVE_AVX2)
SUPERMEL_DECLARE_KERNELS(avx2)
#endif

}  // namespace supermel
