// gemm: general matrix product on row-major matrices (CPU: our AVX2 register tiles for f32,
// Eigen for f64 and where AVX2 is missing; CUDA: cuBLASLt).
//
//   C = alpha · op(A) · op(B) + beta · C        op(X) = X or Xᵀ
//
// op(A) is M×K, op(B) is K×N, C is M×N. All matrices are row-major with a leading
// dimension (the distance in elements between two consecutive rows as stored):
//   trans_a == false: A is stored M×K, element (m, k) at A[m·lda + k], lda >= K
//   trans_a == true : A is stored K×M, element (k, m) at A[k·lda + m], lda >= M
// and likewise for B (stored K×N, or N×K when trans_b) and C (M×N, ldc >= N).
//
// beta == 0 means "overwrite": C is never read, so it may hold garbage or NaN (as in BLAS).
// C must not overlap A or B.
//
// Threads: one large product is split into blocks of C over mmg::cpu::num_threads() threads
// (a product under ~1M multiply-adds stays on one thread: splitting it costs more than it
// gains); a batch of small products is spread over the batch with parallel_for, each
// product running single-threaded inside its chunk. Calling gemm from inside a
// parallel_for is fine (it then runs on its calling thread); calling it from several
// std::threads at once is not (Eigen's thread setting is global).
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/half.h"

namespace mmg::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// batch independent products: product b uses A + b·stride_a, B + b·stride_b, C + b·stride_c.
// stride_a == 0 (or stride_b == 0) broadcasts one A (or B) to the whole batch, e.g.
// x[b] · W for a shared weight. The C slices must not overlap (stride_c >= M·ldc, or the
// products would race).
template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                  const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc,
                  int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c);

// The linear layer's forward: y[rows, out] = x[rows, in] · W[out, in]ᵀ + bias[out], all
// contiguous, bias may be null. With the f32 register tiles the bias is added as each tile of y
// is written (no second pass over y); otherwise after the product.
template <class T>
void linear_forward(int64_t rows, int64_t out, int64_t in, const T* x, const T* w, const T* bias, T* y);

}  // namespace mmg::cpu

// ---- CUDA (kernels/cuda/gemm.cu) ----
// gemm on a CUDA device through cuBLASLt: plain C++ declarations.
//
// The same contract as cpu::gemm_batched above: row-major matrices with leading
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
// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
namespace mmg::cuda {

template <class T>
using gemm_scalar_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, gemm_scalar_t<T> alpha, const T* A,
                  int64_t lda, const T* B, int64_t ldb, gemm_scalar_t<T> beta, T* C, int64_t ldc, int64_t batch,
                  int64_t stride_a, int64_t stride_b, int64_t stride_c);

// Whether f32 products may use TF32 (process-wide; off at start).
void set_gemm_tf32(bool allow);

// ---- linear's products with cuBLASLt epilogues (one pass instead of two) ----
// Row-major x [M,K], W [N,K], G [M,N], all contiguous; bias vectors of N elements; T as above.
//
// y = x·Wᵀ + b: the bias added by the GEMM's epilogue (CUBLASLT_EPILOGUE_BIAS) as it writes
// y, instead of a copy of b into every row of y that the product then reads back (beta = 1).
template <class T>
bool linear_bias_forward(int64_t M, int64_t N, int64_t K, const T* x, const T* w, const T* bias, T* y);

// ∂L/∂W = Gᵀ·x [N,K] and ∂L/∂b = Σ_m G[m,:] [N] in one product: the bias gradient is the sum
// over the product's inner dim (the rows of G) of the operand G, which the epilogue
// (CUBLASLT_EPILOGUE_BGRADB) reduces while the tiles of G pass through, instead of a separate
// reduction pass over G.
template <class T>
bool linear_weight_bias_backward(int64_t M, int64_t N, int64_t K, const T* g, const T* x, T* grad_w, T* grad_b);

// Both return false, having queued nothing, when cuBLASLt offers no algorithm with that
// epilogue for these sizes and types (or a vector is not 16-byte aligned, or W has a single
// row or column, where cuBLASLt's heuristic is known to refuse); the caller then composes
// the two steps. The counts say how often each happened, so a test (or a reader) can see
// which path ran.
struct GemmEpilogueStats {
  int64_t fused = 0;     // products that ran with their epilogue
  int64_t composed = 0;  // calls that returned false
};
GemmEpilogueStats gemm_epilogue_stats();

}  // namespace mmg::cuda
