// gemm on the CPU: f32 products in our own register tiles (version 2, gemm_tiles.cpp) where
// the CPU has AVX2 + FMA; f64, and f32 elsewhere, through Eigen maps over the caller's
// row-major buffers (version 1, here). `mmg bench --kernel gemm` times the two side by side.
#include "kernels/gemm.h"

#include <Eigen/Core>
#include <algorithm>

#include "kernels/cpu/gemm_tiles.h"
#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// A product smaller than this many multiply-adds (M·N·K, about 70 µs on one core) is not
// split over threads: waking them would cost a noticeable share of it. A batch of such
// products is spread over the batch instead.
constexpr double kSmallProduct = 1024.0 * 1024;
// Each thread of a batched run should get at least this much work, else starting it costs
// more than it saves.
constexpr double kMinChunkWork = 64.0 * 1024;

// Eigen's thread count is one global setting. mmgrad keeps it at 1 and spreads products over
// threads itself (gemm_split below). It is set at start-up, so that the products the other
// kernels run through Eigen (attention) are single-threaded too, and again before each
// product, in case a program (the bench) changed it. Inside a parallel region Eigen stays on
// one thread by itself, and writing the global from several threads at once would race, so
// only a caller outside any parallel region changes it.
static void set_eigen_threads(int n) {
  if (in_parallel()) return;
  if (Eigen::nbThreads() != n) Eigen::setNbThreads(n);
}
static const bool g_eigen_single_threaded = (Eigen::setNbThreads(1), true);

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
  if constexpr (kGemmTiles && std::is_same_v<T, float>) {
    return gemm_tiles(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, /*threaded=*/false);
  }
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

// One product split over the threads by blocks of C: rows of C when M >= N, else columns.
// Each block is an independent single-threaded product (op(A)'s rows times op(B), or op(A)
// times op(B)'s columns), so the threads meet only once, at the end.
//
// Why not Eigen's own threading: its parallel GEMM shares packed panels between threads and
// waits for them by spinning. On a busy machine (the development machines are shared, and a
// laptop runs other work) a thread that is descheduled stalls its partner for a whole time
// slice at every panel; the demo's step ran several times slower on 2 threads than on 1.
// Splitting C costs only a duplicate packing of the shared operand.
template <class T>
static void gemm_split(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                       int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, int threads) {
  if (M >= N) {
    parallel_for(M, (M + threads - 1) / threads, [&](int64_t r0, int64_t r1) {
      // Row r of op(A): row r of A, or column r of A when transposed.
      const T* a = trans_a ? A + r0 : A + r0 * lda;
      gemm_one(trans_a, trans_b, r1 - r0, N, K, alpha, a, lda, B, ldb, beta, C + r0 * ldc, ldc);
    });
  } else {
    parallel_for(N, (N + threads - 1) / threads, [&](int64_t c0, int64_t c1) {
      // Column c of op(B): column c of B, or row c of B when transposed.
      const T* b = trans_b ? B + c0 * ldb : B + c0;
      gemm_one(trans_a, trans_b, M, c1 - c0, K, alpha, A, lda, b, ldb, beta, C + c0, ldc);
    });
  }
}

// Whether one M×N×K product is worth splitting over the threads. Small products stay on one
// thread (Eigen's own cut-off, 50k multiply-adds, is far lower).
static bool split_over_threads(int64_t M, int64_t N, int64_t K) {
  const double work = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const int threads = num_threads();
  return work >= kSmallProduct && threads > 1 && std::max(M, N) >= 2 * threads;
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  set_eigen_threads(1);
  if (!split_over_threads(M, N, K)) {
    gemm_one(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if constexpr (kGemmTiles && std::is_same_v<T, float>) {
    return gemm_tiles(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, /*threaded=*/true);
  }
  gemm_split(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, num_threads());
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
  if (!spread) {  // few large products: each one split over the threads
    for (int64_t i = 0; i < batch; ++i)
      gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
           C + i * stride_c, ldc);
    return;
  }
  set_eigen_threads(1);  // each product single-threaded inside its chunk
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kMinChunkWork / work));
  parallel_for(batch, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) one(i);
  });
}

template <class T>
void linear_forward(int64_t rows, int64_t out, int64_t in, const T* x, const T* w, const T* bias, T* y) {
  const int64_t ld_in = std::max<int64_t>(in, 1), ld_out = std::max<int64_t>(out, 1);
  if constexpr (kGemmTiles && std::is_same_v<T, float>) {
    return gemm_tiles(false, true, rows, out, in, 1.0f, x, ld_in, w, ld_in, 0.0f, y, ld_out,
                      split_over_threads(rows, out, in), bias);
  }
  gemm<T>(false, true, rows, out, in, T(1), x, ld_in, w, ld_in, T(0), y, ld_out);
  if (bias == nullptr) return;
  parallel_for(rows, std::max<int64_t>(1, 16384 / ld_out), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < out; ++j) y[r * out + j] += bias[j];
  });
}

#define MMG_INSTANTIATE_GEMM(T)                                                              \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                        int64_t, T, T*, int64_t);                                            \
  template void gemm_batched<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, \
                                const T*, int64_t, T, T*, int64_t, int64_t, int64_t, int64_t, \
                                int64_t);                                                    \
  template void linear_forward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T*);
MMG_INSTANTIATE_GEMM(float)
MMG_INSTANTIATE_GEMM(double)
#undef MMG_INSTANTIATE_GEMM

}  // namespace mmg::cpu
