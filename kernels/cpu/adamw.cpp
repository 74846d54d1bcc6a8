// Fused multi-tensor AdamW on the CPU (the math in kernels/adamw.h).
//
// The optimiser's update as tensor ops costs about a dozen passes and allocations per
// parameter, most parameters are too small to be worth threads, and it all ran on one core
// between two training steps. Here every tensor is one loop, and the tensors are spread
// over the threads by their element counts.
//
// Bit-identical to the tensor ops: each operation below is one of theirs, rounded to T. This
// file is compiled with -ffp-contract=off (CMakeLists.txt), so no a·b + c becomes a fused
// multiply-add; the vector division and square root are correctly rounded like the scalar
// ones (tests/nn/test_optim.cpp compares the two paths bit for bit).
#include <cmath>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/tensor_ranges.h"

namespace mmg::cpu {

template <class T>
static void adamw_tensor(const AdamWTensor<T>& a, int64_t begin, int64_t end, T beta1, T one_minus_beta1, T beta2,
                         T one_minus_beta2, T eps) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const T g = a.grad[i];
    const T theta = a.param[i] * a.decay;
    const T m = a.exp_avg[i] * beta1 + g * one_minus_beta1;
    const T v = a.exp_avg_sq[i] * beta2 + (g * g) * one_minus_beta2;
    const T denom = std::sqrt(v) / a.sqrt_bc2 + eps;
    a.param[i] = theta - (m / denom) * a.step_size;
    a.exp_avg_out[i] = m;
    a.exp_avg_sq_out[i] = v;
  }
}

template <class T>
void adamw_step(const AdamWTensor<T>* tensors, int64_t count, double beta1, double beta2, double eps) {
  // All tensors as one range of elements (kernels/cpu/tensor_ranges.h).
  const std::vector<int64_t> start = tensor_starts(count, [&](int64_t t) { return tensors[t].n; });
  const T b1 = T(beta1), omb1 = T(1.0 - beta1), b2 = T(beta2), omb2 = T(1.0 - beta2), e = T(eps);
  parallel_for(start[count], 1 << 14, [&](int64_t lo, int64_t hi) {
    for_each_tensor_part(start, lo, hi, [&](int64_t t, int64_t b, int64_t end) {
      adamw_tensor(tensors[t], b, end, b1, omb1, b2, omb2, e);
    });
  });
}

template void adamw_step<float>(const AdamWTensor<float>*, int64_t, double, double, double);
template void adamw_step<double>(const AdamWTensor<double>*, int64_t, double, double, double);

}  // namespace mmg::cpu
