// Fused multi-tensor AdamW (the math in kernels/adamw.h).
//
// Launch: the tensors of one batch are passed by value in the kernel's parameters (32 of
// them take about 2.5 KB of the 4 KB allowed). Every thread walks the batch's tensors in
// order, and within each a grid-stride loop over its elements: each tensor is spread over
// the whole grid, and a small one (a bias) costs the threads that get no element of it only
// one loop test. Block 256, grid_for(largest n in the batch).
//
// The arithmetic uses the round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...), which the
// compiler never contracts into fused multiply-adds: each operation is rounded as the CPU's
// separate tensor ops round it, so the update is bit-identical to the CPU optimiser's.
#include <algorithm>

#include "kernels/adamw.h"
#include "kernels/cuda/check.cuh"

namespace mmg::cuda {

constexpr int kAdamWBlock = 256;

template <class T>
struct AdamWBatch {
  AdamWTensor<T> tensors[kAdamWMaxTensors];
  int count;
};

// IEEE operations rounded to nearest, one at a time.
__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ inline double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ inline double sqrt_rn(double a) { return __dsqrt_rn(a); }

template <class T>
__global__ void adamw_kernel(AdamWBatch<T> batch, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps) {
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  for (int t = 0; t < batch.count; ++t) {
    const AdamWTensor<T>& a = batch.tensors[t];
    for (int64_t i = first; i < a.n; i += stride) {
      const T g = a.grad[i];
      const T theta = mul_rn(a.param[i], a.decay);
      const T m = add_rn(mul_rn(a.exp_avg[i], beta1), mul_rn(g, one_minus_beta1));
      const T v = add_rn(mul_rn(a.exp_avg_sq[i], beta2), mul_rn(mul_rn(g, g), one_minus_beta2));
      const T denom = add_rn(div_rn(sqrt_rn(v), a.sqrt_bc2), eps);
      a.param[i] = sub_rn(theta, mul_rn(div_rn(m, denom), a.step_size));
      a.exp_avg_out[i] = m;
      a.exp_avg_sq_out[i] = v;
    }
  }
}

template <class T>
void adamw_step(const AdamWTensor<T>* tensors, int64_t count, double beta1, double beta2, double eps) {
  for (int64_t first = 0; first < count; first += kAdamWMaxTensors) {
    AdamWBatch<T> batch{};
    batch.count = static_cast<int>(std::min<int64_t>(kAdamWMaxTensors, count - first));
    int64_t largest = 0;
    for (int k = 0; k < batch.count; ++k) {
      batch.tensors[k] = tensors[first + k];
      largest = std::max(largest, tensors[first + k].n);
    }
    if (largest == 0) continue;
    adamw_kernel<T><<<grid_for(largest, kAdamWBlock), kAdamWBlock, 0, current_stream()>>>(
        batch, T(beta1), T(1.0 - beta1), T(beta2), T(1.0 - beta2), T(eps));  // as the CPU rounds them
    MMG_CUDA_LAUNCH_CHECK();
  }
}

template void adamw_step<float>(const AdamWTensor<float>*, int64_t, double, double, double);
template void adamw_step<double>(const AdamWTensor<double>*, int64_t, double, double, double);

}  // namespace mmg::cuda
