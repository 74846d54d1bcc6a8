// Dropout forward: one Philox draw per element (kernels/dropout.h).
//
// Launch: a 1-D grid-stride loop, 256 threads a block, grid_for(n) blocks. Each element
// draws from its own counter base + i, so which thread handles it does not matter: the
// mask is a pure function of (seed, base + i), the same one the CPU kernel evaluates.
// Philox gives four words per call and this uses one (as the CPU does): a teaching choice
// that keeps the counter convention of kernels/philox.h, at 4x the arithmetic a packed
// version would need — the kernel stays memory-bound on current GPUs anyway.
#include "kernels/cuda/check.cuh"
#include "kernels/dropout.h"
#include "kernels/philox.h"

namespace mmg::cuda {

constexpr int kDropoutBlock = 256;

template <class T>
__global__ void dropout_forward_kernel(const T* x, T* y, T* mask, int64_t n, uint64_t seed, uint64_t base, float p,
                                       T scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const bool keep = philox_uniform_f32(seed, base + static_cast<uint64_t>(i)) >= p;
    const T m = keep ? scale : T(0);
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, uint64_t seed, uint64_t base, float p, T scale) {
  if (n == 0) return;
  dropout_forward_kernel<T><<<grid_for(n, kDropoutBlock), kDropoutBlock, 0, current_stream()>>>(x, y, mask, n, seed,
                                                                                                base, p, scale);
  MMG_CUDA_LAUNCH_CHECK();
}

template void dropout_forward<float>(const float*, float*, float*, int64_t, uint64_t, uint64_t, float, float);
template void dropout_forward<double>(const double*, double*, double*, int64_t, uint64_t, uint64_t, float, double);

}  // namespace mmg::cuda
