// Dropout: zero each element with probability p, scale the survivors by 1/(1−p).
//
// The mask comes from Philox with the engine's convention (kernels/philox.h): a dropout
// over n elements reserves counters [base, base + n) of a generator with key `seed`, and
//   keep_i  =  philox_uniform_f32(seed, base + i) >= p
// with p rounded to f32 and compared in f32. The CUDA kernel evaluates the same
// expression, so the same (seed, base) drops the same elements on every device and for
// every thread count. Element i is the i-th element in row-major order.
#pragma once
#include <cstdint>

namespace mmg::cpu {

// mask_i = keep_i ? scale : 0  and  y_i = x_i · mask_i   (x, y, mask contiguous, n elements).
// The op passes scale = 1/(1−p) (0 when p = 1); backward is dx = dy · mask.
template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, uint64_t seed, uint64_t base, float p, T scale);

}  // namespace mmg::cpu

// ---- CUDA (kernels/cuda/dropout.cu) ----
// Dropout on a CUDA device: the contract above, on device memory of the current device.
// Element i is kept when
//   philox_uniform_f32(seed, base + i) >= p        (kernels/philox.h, host and device code)
// so the same (seed, base) drops the same elements here as on the CPU, bit for bit.
//   mask_i = keep_i ? scale : 0,   y_i = x_i · mask_i        x, y, mask contiguous, n elements
// T: float, double.
// Declared in every build; defined only where CUDA is compiled, and core/ calls it only
// under `if constexpr (kWithCuda)` (core/device.h).
namespace mmg::cuda {

template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, uint64_t seed, uint64_t base, float p, T scale);

}  // namespace mmg::cuda
