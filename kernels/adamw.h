// Fused multi-tensor AdamW: one pass over each parameter's elements instead of about a
// dozen elementwise ops (each a tensor allocated and a loop) per parameter. Two kernels:
// cpu::adamw_step (kernels/cpu/adamw.cpp), the tensors spread over the CPU threads, and
// cuda::adamw_step (kernels/cuda/adamw.cu), up to kAdamWMaxTensors per launch.
//
// For every element of every tensor, with t the tensor's own step count:
//   θ ← θ · (1 − η·λ)                          decoupled weight decay (decay = 1 − η·λ)
//   m' = β₁·m + (1−β₁)·g
//   v' = β₂·v + (1−β₂)·g²
//   θ ← θ − (m' / (√v' / √bc₂ + ε)) · (η / bc₁)   bc₁ = 1 − β₁ᵗ, bc₂ = 1 − β₂ᵗ
// exactly the sequence of ops of the optimiser's tensor-op update (nn/optim.cpp,
// AdamW::update, which bf16/f16 parameters still take), each step rounded to T as there
// (no fused multiply-adds), so all three agree bit for bit. θ is updated in place; the new
// moments go to the outputs exp_avg_out, exp_avg_sq_out, which may be exp_avg, exp_avg_sq
// themselves (each element is read before it is written): the optimiser writes its moments in
// place unless a state_dict() snapshot holds them, and then to new tensors.
// All pointers: contiguous memory of one device (the CPU, or the current CUDA device), n
// elements each. T: float, double.
#pragma once
#include <cstdint>

namespace mmg {

template <class T>
struct AdamWTensor {
  T* param;
  const T* grad;
  const T* exp_avg;
  const T* exp_avg_sq;
  T* exp_avg_out;
  T* exp_avg_sq_out;
  int64_t n;
  T decay;      // 1 − η·λ
  T step_size;  // η / bc₁
  T sqrt_bc2;   // √bc₂
};

}  // namespace mmg

namespace mmg::cpu {

// Updates tensors[0 .. count). β₁, 1−β₁, β₂, 1−β₂ and ε are rounded to T from their double
// values, as the tensor ops round a double scalar.
template <class T>
void adamw_step(const AdamWTensor<T>* tensors, int64_t count, double beta1, double beta2, double eps);

}  // namespace mmg::cpu

// Declared in every build; defined only where CUDA is compiled, and the optimiser calls it
// only under `if constexpr (kWithCuda)` (core/device.h).
namespace mmg::cuda {

// The tensors of one launch travel in the kernel's parameters (no copy to the device first).
constexpr int kAdamWMaxTensors = 32;

// As cpu::adamw_step, for tensors on the current CUDA device (launches of kAdamWMaxTensors
// tensors at a time).
template <class T>
void adamw_step(const AdamWTensor<T>* tensors, int64_t count, double beta1, double beta2, double eps);

}  // namespace mmg::cuda
