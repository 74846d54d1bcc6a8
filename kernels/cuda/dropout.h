// Dropout on a CUDA device (kernels/cuda/dropout.cu): the contract of kernels/dropout.h,
// on device memory of the current device. Element i is kept when
//   philox_uniform_f32(seed, base + i) >= p        (kernels/philox.h, host and device code)
// so the same (seed, base) drops the same elements here as on the CPU, bit for bit.
//   mask_i = keep_i ? scale : 0,   y_i = x_i · mask_i        x, y, mask contiguous, n elements
// T: float, double.
#pragma once
#include <cstdint>

namespace mmg::cuda {

template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, uint64_t seed, uint64_t base, float p, T scale);

}  // namespace mmg::cuda
