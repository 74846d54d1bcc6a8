// gemm on a CUDA device through cuBLASLt (kernels/cuda/gemm.cu): plain C++ declarations.
//
// The same contract as cpu::gemm_batched (kernels/gemm.h): row-major matrices with leading
// dimensions, op(X) = X or Xᵀ, batch products at A + b·stride_a, B + b·stride_b,
// C + b·stride_c, a stride of 0 sharing one operand with the whole batch, beta == 0 meaning
// C is never read. All pointers are device memory on the current device.
//
// T: float (computed in f32: no TF32, so results match the CPU's to f32 rounding) and double.
#pragma once
#include <cstdint>

namespace mmg::cuda {

template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                  const T* B, int64_t ldb, T beta, T* C, int64_t ldc, int64_t batch, int64_t stride_a,
                  int64_t stride_b, int64_t stride_c);

}  // namespace mmg::cuda
