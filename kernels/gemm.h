// gemm: general matrix product on row-major matrices (CPU: Eigen).
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
// Threads: one large product is split by Eigen itself over mmg::cpu::num_threads() OpenMP
// threads (a product under ~4M multiply-adds stays on one thread: splitting it costs more
// than it gains); a batch of small products is spread over the batch with parallel_for,
// each product running single-threaded inside its chunk. Calling gemm from inside a
// parallel_for is fine (it then runs on its calling thread); calling it from several
// std::threads at once is not (Eigen's thread setting is global).
#pragma once
#include <cstdint>

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

}  // namespace mmg::cpu
