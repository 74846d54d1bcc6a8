// gemm / gemm_batched against a naive triple loop in double.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/cpu/gemm_tiles.h"
#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace {

template <class T>
std::vector<T> random_vector(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// element (r, c) of op(X), X stored row-major with leading dimension ld
template <class T>
double op_at(const T* X, int64_t ld, bool trans, int64_t r, int64_t c) {
  return trans ? static_cast<double>(X[c * ld + r]) : static_cast<double>(X[r * ld + c]);
}

// C = alpha·op(A)·op(B) + beta·C, in double, the textbook way. beta == 0 ignores C.
template <class T>
std::vector<double> reference_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                                   double alpha, const T* A, int64_t lda, const T* B,
                                   int64_t ldb, double beta, const T* C, int64_t ldc) {
  std::vector<double> out(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += op_at(A, lda, ta, m, k) * op_at(B, ldb, tb, k, n);
      out[m * N + n] = alpha * acc + (beta == 0 ? 0.0 : beta * static_cast<double>(C[m * ldc + n]));
    }
  return out;
}

template <class T>
double tolerance(int64_t K) {
  return std::is_same_v<T, float> ? 2e-5 * (K + 4) : 1e-12 * (K + 4);
}

// Runs one case with padded leading dimensions and checks every element of C, and that the
// padding between rows of C was left alone.
template <class T>
void check_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, T beta,
                bool poison_c, std::mt19937& rng) {
  const int64_t pad = 3;
  const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  const int64_t a_rows = ta ? K : M, b_rows = tb ? N : K;
  auto A = random_vector<T>(std::max<int64_t>(a_rows * lda, 1), rng);
  auto B = random_vector<T>(std::max<int64_t>(b_rows * ldb, 1), rng);
  auto C = random_vector<T>(M * ldc, rng);
  if (poison_c)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = std::numeric_limits<T>::quiet_NaN();
  const auto C0 = C;
  auto want = reference_gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta,
                             C0.data(), ldc);
  mmg::cpu::gemm<T>(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  double worst = 0;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double got = C[m * ldc + n];
      REQUIRE(std::isfinite(got));
      worst = std::max(worst, std::abs(got - want[m * N + n]));
    }
    for (int64_t n = N; n < ldc; ++n) REQUIRE(C[m * ldc + n] == C0[m * ldc + n]);
  }
  INFO("ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N << " K=" << K);
  CHECK(worst <= tolerance<T>(K));
}

}  // namespace

TEST_CASE_TEMPLATE("gemm matches a naive loop: odd sizes, transposes, alpha, beta", T, float,
                   double) {
  std::mt19937 rng(7);
  const int64_t sizes[] = {1, 7, 13, 197};
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t M : sizes)
        for (int64_t N : sizes)
          for (int64_t K : sizes) {
            check_gemm<T>(ta, tb, M, N, K, T(1), T(0), false, rng);
            check_gemm<T>(ta, tb, M, N, K, T(-0.75), T(0.5), false, rng);
          }
}

TEST_CASE_TEMPLATE("gemm with beta 0 never reads C (NaN-poisoned)", T, float, double) {
  std::mt19937 rng(11);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t n : {1, 7, 13, 197}) {
        check_gemm<T>(ta, tb, n, n + 2, n + 1, T(1.5), T(0), true, rng);
        check_gemm<T>(ta, tb, n, n, 0, T(1), T(0), true, rng);  // K = 0: C = 0
      }
}

TEST_CASE_TEMPLATE("gemm edge cases: K = 0 and alpha = 0 give beta·C", T, float, double) {
  std::mt19937 rng(3);
  check_gemm<T>(false, false, 7, 13, 0, T(2), T(0.25), false, rng);
  check_gemm<T>(true, true, 13, 7, 5, T(0), T(-1), false, rng);
  check_gemm<T>(false, true, 13, 7, 5, T(0), T(0), true, rng);
}

TEST_CASE_TEMPLATE("gemm split over threads by rows (tall C) and by columns (wide C)", T, float, double) {
  // Products above the threading cut-off are cut into blocks of C's rows when M >= N, else of
  // its columns; each transpose moves where a block's operand starts. Odd sizes so the blocks
  // are uneven, and 3 threads as well as 2.
  std::mt19937 rng(13);
  const int saved = mmg::cpu::num_threads();
  for (int threads : {2, 3}) {
    mmg::cpu::set_num_threads(threads);
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        check_gemm<T>(ta, tb, 601, 37, 67, T(1), T(0), true, rng);        // tall: row blocks
        check_gemm<T>(ta, tb, 37, 601, 67, T(-0.5), T(0.25), false, rng);  // wide: column blocks
        check_gemm<T>(ta, tb, 5, 1031, 211, T(1), T(0), false, rng);      // wide and short
      }
  }
  mmg::cpu::set_num_threads(saved);
}

TEST_CASE("gemm f32: the register tiles' inner-dimension chunks, column blocks and thin shapes") {
  // f32 products run in 6×16 register tiles where the CPU has AVX2 + FMA (gemm_tiles.cpp).
  // Cases that reach its other branches: an inner dimension long enough to be cut into chunks
  // (a weight gradient over thousands of rows), C wider than one 256-column block with a
  // ragged last panel, the demo's thin shapes (N = 16 and 27 columns), and a small C over a
  // long inner dimension, which on 2 threads is split along the inner dimension.
  if (!mmg::cpu::kGemmTiles) MESSAGE("this build has no AVX2 + FMA: f32 products run through Eigen here");
  std::mt19937 rng(17);
  const int saved = mmg::cpu::num_threads();
  for (int threads : {1, 2}) {
    mmg::cpu::set_num_threads(threads);
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        check_gemm<float>(ta, tb, 13, 67, 1100, 1.0f, 0.0f, true, rng);       // chunked inner dim
        check_gemm<float>(ta, tb, 13, 67, 1100, -0.5f, 0.75f, false, rng);
        check_gemm<float>(ta, tb, 11, 300, 37, 1.0f, 0.0f, true, rng);        // two column blocks
        check_gemm<float>(ta, tb, 301, 300, 700, 0.5f, 0.25f, false, rng);    // both
        check_gemm<float>(ta, tb, 4099, 16, 27, 1.0f, 0.0f, true, rng);      // conv stem shapes
        check_gemm<float>(ta, tb, 16, 27, 4099, 1.0f, 0.0f, true, rng);       // inner split over threads
        check_gemm<float>(ta, tb, 37, 41, 2000, -0.5f, 0.75f, false, rng);
      }
  }
  mmg::cpu::set_num_threads(saved);
}

TEST_CASE("gemm uses several threads on a large product and agrees with one thread") {
  std::mt19937 rng(5);
  const int64_t n = 300;
  auto A = random_vector<double>(n * n, rng), B = random_vector<double>(n * n, rng);
  std::vector<double> C1(n * n), C2(n * n);
  const int saved = mmg::cpu::num_threads();
  mmg::cpu::set_num_threads(1);
  mmg::cpu::gemm<double>(false, true, n, n, n, 1.0, A.data(), n, B.data(), n, 0.0, C1.data(), n);
  mmg::cpu::set_num_threads(2);
  mmg::cpu::gemm<double>(false, true, n, n, n, 1.0, A.data(), n, B.data(), n, 0.0, C2.data(), n);
  mmg::cpu::set_num_threads(saved);
  auto want = reference_gemm(false, true, n, n, n, 1.0, A.data(), n, B.data(), n, 0.0,
                             C1.data(), n);
  for (int64_t i = 0; i < n * n; ++i) {
    REQUIRE(std::abs(C1[i] - want[i]) < 1e-11);
    REQUIRE(std::abs(C2[i] - want[i]) < 1e-11);
  }
}

// Every batch entry against the reference, for broadcast A (stride 0), broadcast B, and both
// batch-spread and one-by-one threading paths (small and large products, 1 and 2 threads).
template <class T>
void check_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t batch,
                   bool share_a, bool share_b, T beta, std::mt19937& rng) {
  const int64_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N + 1;
  const int64_t size_a = (ta ? K : M) * lda, size_b = (tb ? N : K) * ldb;
  const int64_t stride_a = share_a ? 0 : size_a + 2, stride_b = share_b ? 0 : size_b + 5;
  const int64_t stride_c = M * ldc + 1;
  auto A = random_vector<T>(std::max<int64_t>(stride_a * (batch - 1) + size_a, 1), rng);
  auto B = random_vector<T>(std::max<int64_t>(stride_b * (batch - 1) + size_b, 1), rng);
  auto C = random_vector<T>(stride_c * batch, rng);
  if (beta == T(0)) std::fill(C.begin(), C.end(), std::numeric_limits<T>::quiet_NaN());
  const auto C0 = C;
  const T alpha = T(0.5);
  mmg::cpu::gemm_batched<T>(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta,
                            C.data(), ldc, batch, stride_a, stride_b, stride_c);
  for (int64_t b = 0; b < batch; ++b) {
    auto want = reference_gemm(ta, tb, M, N, K, alpha, A.data() + b * stride_a, lda,
                               B.data() + b * stride_b, ldb, beta, C0.data() + b * stride_c, ldc);
    double worst = 0;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n)
        worst = std::max(worst, std::abs(C[b * stride_c + m * ldc + n] - want[m * N + n]));
    INFO("batch entry " << b << " M=" << M << " N=" << N << " K=" << K << " ta=" << ta
                        << " tb=" << tb << " share_a=" << share_a << " share_b=" << share_b);
    REQUIRE(worst <= tolerance<T>(K));
  }
}

TEST_CASE_TEMPLATE("gemm_batched: strides, stride-0 broadcast, both threading paths", T, float,
                   double) {
  std::mt19937 rng(13);
  const int saved = mmg::cpu::num_threads();
  for (int threads : {1, 2}) {
    mmg::cpu::set_num_threads(threads);
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [share_a, share_b] : {std::pair{false, false}, {true, false}, {false, true}}) {
          // small products, long batch: spread over the batch
          check_batched<T>(ta, tb, 7, 13, 5, 37, share_a, share_b, T(0), rng);
          check_batched<T>(ta, tb, 1, 1, 1, 5, share_a, share_b, T(1), rng);
          // large products, short batch: one by one, Eigen threads inside
          check_batched<T>(ta, tb, 197, 160, 170, 3, share_a, share_b, T(-0.5), rng);
        }
  }
  mmg::cpu::set_num_threads(saved);
}

TEST_CASE_TEMPLATE("linear_forward: y = x·Wᵀ + bias, the bias added as the product is written", T, float, double) {
  // Odd sizes: row tiles cut short (rows not a multiple of 6), a ragged last column panel, an
  // empty inner dimension (y = bias), a long one (split over threads: the bias added once),
  // and no bias; y NaN-poisoned, never read.
  std::mt19937 rng(19);
  const int saved = mmg::cpu::num_threads();
  for (int threads : {1, 2})
    for (auto [rows, out, in] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {5, 27, 7}, {601, 67, 64},
                                 {4099, 16, 27}, {13, 300, 0}, {17, 19, 4000}})
      for (bool with_bias : {true, false}) {
        mmg::cpu::set_num_threads(threads);
        auto x = random_vector<T>(std::max<int64_t>(rows * in, 1), rng);
        auto w = random_vector<T>(std::max<int64_t>(out * in, 1), rng);
        auto bias = random_vector<T>(out, rng);
        std::vector<T> y(rows * out, std::numeric_limits<T>::quiet_NaN());
        mmg::cpu::linear_forward<T>(rows, out, in, x.data(), w.data(), with_bias ? bias.data() : nullptr, y.data());
        double worst = 0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < out; ++j) {
            double want = with_bias ? static_cast<double>(bias[j]) : 0.0;
            for (int64_t k = 0; k < in; ++k) want += static_cast<double>(x[r * in + k]) * static_cast<double>(w[j * in + k]);
            REQUIRE(std::isfinite(static_cast<double>(y[r * out + j])));
            worst = std::max(worst, std::abs(static_cast<double>(y[r * out + j]) - want));
          }
        INFO("rows=" << rows << " out=" << out << " in=" << in << " bias=" << with_bias << " threads=" << threads);
        CHECK(worst <= tolerance<T>(in));
      }
  mmg::cpu::set_num_threads(saved);
}
