// gemm on the CPU: Eigen maps over the caller's row-major buffers (no copies).
#include "kernels/gemm.h"

#include <Eigen/Core>
#include <algorithm>

#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// A product smaller than this many multiply-adds (M·N·K) does not gain from being split over
// threads (Eigen at n = 128 runs slower on 2 threads than on 1, see PERFORMANCE.md); a batch
// of such products is spread over the batch instead.
constexpr double kSmallProduct = 4.0 * 1024 * 1024;
// Each thread of a batched run should get at least this much work, else starting it costs
// more than it saves.
constexpr double kMinChunkWork = 64.0 * 1024;

// Eigen's thread count is one global setting. Inside a parallel region Eigen stays on one
// thread by itself, and writing the global from several threads at once would race, so
// only a caller outside any parallel region changes it.
static void set_eigen_threads(int n) {
#ifdef _OPENMP
  if (omp_in_parallel()) return;
#endif
  if (Eigen::nbThreads() != n) Eigen::setNbThreads(n);
}

// C = beta·C scaled in place, honouring "beta == 0 does not read C".
template <class T>
static void scale_c(MatrixMap<T>& c, T beta) {
  if (beta == T(0)) c.setZero();
  else if (beta != T(1)) c *= beta;
}

// One product on whatever threads Eigen is currently allowed to use.
template <class T>
static void gemm_one(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                     const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
                     int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  MatrixMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  // An empty inner dimension or alpha == 0 leaves only beta·C (and A, B are not read, as in BLAS).
  if (K <= 0 || alpha == T(0)) {
    scale_c(c, beta);
    return;
  }
  ConstMatrixMap<T> a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  ConstMatrixMap<T> b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  // Eigen evaluates "alpha * x * y" as one GEMM call with alpha folded in; with plain
  // assignment it zeroes the destination first, so a NaN-poisoned C is never read.
  auto run = [&](const auto& op_a, const auto& op_b) {
    if (beta == T(0)) {
      c.noalias() = alpha * op_a * op_b;
    } else {
      scale_c(c, beta);
      c.noalias() += alpha * op_a * op_b;
    }
  };
  if (!trans_a && !trans_b) run(a, b);
  else if (trans_a && !trans_b) run(a.transpose(), b);
  else if (!trans_a && trans_b) run(a, b.transpose());
  else run(a.transpose(), b.transpose());
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  // Set Eigen's threads each call so set_num_threads() is honoured, and keep small products
  // on one thread (Eigen's own cut-off, 50k multiply-adds, is far lower).
  const double work = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  set_eigen_threads(work < kSmallProduct ? 1 : num_threads());
  gemm_one(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                  const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc,
                  int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  auto one = [&](int64_t i) {
    gemm_one(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb,
             beta, C + i * stride_c, ldc);
  };
  const int threads = num_threads();
  const double work = static_cast<double>(M) * static_cast<double>(N) *
                      static_cast<double>(std::max<int64_t>(K, 1));
  // Spread over the batch when the products are too small to thread one by one, or when the
  // batch is long enough that its uneven split over threads costs little (<= 1/4 idle).
  const bool spread = batch > 1 && threads > 1 && (work < kSmallProduct || batch >= 4 * threads);
  if (!spread) {
    set_eigen_threads(work < kSmallProduct ? 1 : threads);
    for (int64_t i = 0; i < batch; ++i) one(i);
    return;
  }
  set_eigen_threads(1);  // each product single-threaded inside its chunk
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kMinChunkWork / work));
  parallel_for(batch, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) one(i);
  });
}

#define MMG_INSTANTIATE_GEMM(T)                                                              \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                        int64_t, T, T*, int64_t);                                            \
  template void gemm_batched<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, \
                                const T*, int64_t, T, T*, int64_t, int64_t, int64_t, int64_t, \
                                int64_t);
MMG_INSTANTIATE_GEMM(float)
MMG_INSTANTIATE_GEMM(double)
#undef MMG_INSTANTIATE_GEMM

}  // namespace mmg::cpu
