// CPU kernel of kernels/dropout.h.
#include "kernels/dropout.h"

#include "kernels/cpu/parallel.h"
#include "kernels/philox.h"

namespace mmg::cpu {

// Each element draws from its own counter, so chunks are independent and any split of
// [0, n) among threads gives the same mask.
template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, uint64_t seed, uint64_t base, float p, T scale) {
  parallel_for(n, 1 << 13, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      bool keep = philox_uniform_f32(seed, base + static_cast<uint64_t>(i)) >= p;
      mask[i] = keep ? scale : T(0);
      y[i] = x[i] * mask[i];
    }
  });
}

template void dropout_forward<float>(const float*, float*, float*, int64_t, uint64_t, uint64_t, float, float);
template void dropout_forward<double>(const double*, double*, double*, int64_t, uint64_t, uint64_t, float, double);

}  // namespace mmg::cpu
