// Fused multi-tensor AdamW on a CUDA device (kernels/cuda/adamw.cu): one launch updates up
// to kAdamWMaxTensors parameters, instead of about a dozen elementwise ops per parameter.
//
// The CPU has no kernel in this family: its optimiser runs the update below as tensor ops.
//
// For every element of every tensor, with t the tensor's own step count:
//   θ ← θ · (1 − η·λ)                          decoupled weight decay (decay = 1 − η·λ)
//   m' = β₁·m + (1−β₁)·g
//   v' = β₂·v + (1−β₂)·g²
//   θ ← θ − (m' / (√v' / √bc₂ + ε)) · (η / bc₁)   bc₁ = 1 − β₁ᵗ, bc₂ = 1 − β₂ᵗ
// exactly the sequence of ops of the CPU optimiser (nn/optim.cpp, AdamW::update), each step
// rounded to T as there (no fused multiply-adds), so both agree bit for bit. θ is updated
// in place; the new moments go to separate outputs, so the optimiser's old state tensors
// (and any state_dict() snapshot holding them) are never written.
// All pointers: contiguous device memory of the current device, n elements each.
// T: float, double.
#pragma once
#include <cstdint>

// Declared in every build; defined only where CUDA is compiled, and the optimiser calls it
// only under `if constexpr (kWithCuda)` (core/device.h).
namespace mmg::cuda {

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

// The tensors of one launch travel in the kernel's parameters (no copy to the device first).
constexpr int kAdamWMaxTensors = 32;

// Updates tensors[0 .. count), any count (launches of kAdamWMaxTensors at a time). β₁, 1−β₁,
// β₂, 1−β₂ and ε are rounded to T from their double values, as the CPU's scalar ops do.
template <class T>
void adamw_step(const AdamWTensor<T>* tensors, int64_t count, double beta1, double beta2, double eps);

}  // namespace mmg::cuda
