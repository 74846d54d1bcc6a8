// gemm on a CUDA device through cuBLASLt (kernels/cuda/gemm.cu): plain C++ declarations.
//
// The same contract as cpu::gemm_batched (kernels/gemm.h): row-major matrices with leading
// dimensions, op(X) = X or Xᵀ, batch products at A + b·stride_a, B + b·stride_b,
// C + b·stride_c, a stride of 0 sharing one operand with the whole batch, beta == 0 meaning
// C is never read. All pointers are device memory on the current device.
//
// T (A, B and C all of it):
//   float    computed in f32, so results match the CPU's to f32 rounding; in TF32 on the
//            tensor cores instead when set_gemm_tf32(true) (opt-in: ~1e-3 relative error)
//   double   computed in f64
//   bf16,    tensor-core products with f32 accumulation, rounded to T once at the end: the
//   f16      CPU's result (f32 math, then one conversion) up to the order of the sums
// alpha and beta are f32 for the 16-bit types (cuBLAS's scale type), T otherwise.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/half.h"

namespace mmg::cuda {

template <class T>
using gemm_scalar_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, gemm_scalar_t<T> alpha, const T* A,
                  int64_t lda, const T* B, int64_t ldb, gemm_scalar_t<T> beta, T* C, int64_t ldc, int64_t batch,
                  int64_t stride_a, int64_t stride_b, int64_t stride_c);

// Whether f32 products may use TF32 (process-wide; off at start).
void set_gemm_tf32(bool allow);

}  // namespace mmg::cuda
