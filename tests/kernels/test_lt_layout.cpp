// The row-major → cuBLASLt column-major mapping of kernels/cuda/lt_layout.h, which
// kernels/cuda/gemm.cu hands to cuBLASLt, checked on the CPU: cuBLASLt's product and its two
// epilogues are emulated here from their documented definitions (cublasLt.h), run on the
// layouts the mapping produces, and compared with the row-major math written the textbook
// way. So the index arithmetic of the CUDA path — which operand goes first, which dims are
// D's rows and columns, which vector BIAS adds and which BGRADB sums — is tested on every
// machine; what remains for a GPU is cuBLASLt itself.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/lt_layout.h"

using namespace mmg::cuda;

namespace {

std::vector<double> random_values(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

// op(X)[i, k] for X stored column-major (element (r, c) at r + c·ld), op = transpose when trans.
double op_at(const LtMatrix& m, const std::vector<double>& x, int64_t i, int64_t k) {
  return m.trans ? x[static_cast<size_t>(k + i * m.ld)] : x[static_cast<size_t>(i + k * m.ld)];
}
int64_t op_rows(const LtMatrix& m) { return m.trans ? m.cols : m.rows; }
int64_t op_cols(const LtMatrix& m) { return m.trans ? m.rows : m.cols; }

enum class Epi { none, bias, bgradb };

// cuBLASLt as its header defines it: D = op(first)·op(second), D stored column-major in `d`
// (only its rows×cols elements written). BIAS: "bias vector length must match matrix D rows
// ... broadcasted to all columns and added". BGRADB: "bias gradient based on the input matrix
// B [the second operand]. The bias size corresponds to the number of columns of the matrix D.
// The reduction happens over the GEMM's k dimension."
void emulate_lt(const LtGemm& g, const std::vector<double>& first, const std::vector<double>& second,
                std::vector<double>& d, Epi epi, std::vector<double>& bias) {
  REQUIRE(op_rows(g.first) == g.d.rows);
  REQUIRE(op_cols(g.second) == g.d.cols);
  REQUIRE(op_cols(g.first) == op_rows(g.second));
  REQUIRE(g.first.ld >= g.first.rows);
  REQUIRE(g.second.ld >= g.second.rows);
  REQUIRE(g.d.ld >= g.d.rows);
  const int64_t k_dim = op_cols(g.first);
  for (int64_t i = 0; i < g.d.rows; ++i)
    for (int64_t j = 0; j < g.d.cols; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < k_dim; ++k) acc += op_at(g.first, first, i, k) * op_at(g.second, second, k, j);
      if (epi == Epi::bias) acc += bias[static_cast<size_t>(i)];
      d[static_cast<size_t>(i + j * g.d.ld)] = acc;
    }
  if (epi == Epi::bgradb) {
    bias.assign(static_cast<size_t>(g.d.cols), 0.0);
    for (int64_t j = 0; j < g.d.cols; ++j)
      for (int64_t k = 0; k < k_dim; ++k) bias[static_cast<size_t>(j)] += op_at(g.second, second, k, j);
  }
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(std::abs(got[i] - want[i]) <= 1e-12 * (1 + std::abs(want[i])));
  }
}

}  // namespace

TEST_CASE("cuBLASLt layout: every row-major product, transposed operands and wide leading dims, as column-major") {
  std::mt19937 rng(7);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t M : {1, 3, 8})
        for (int64_t N : {1, 5})
          for (int64_t K : {1, 4, 9}) {
            const int64_t pad = 2;  // leading dims wider than the matrices, as for views
            const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
            const std::vector<double> A = random_values((ta ? K : M) * lda, rng);
            const std::vector<double> B = random_values((tb ? N : K) * ldb, rng);
            std::vector<double> C(static_cast<size_t>(M * ldc), 0.0), bias;
            emulate_lt(to_column_major({ta, tb, M, N, K, lda, ldb, ldc}), B, A, C, Epi::none, bias);
            std::vector<double> got, want;
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n) {
                double acc = 0;
                for (int64_t k = 0; k < K; ++k)
                  acc += (ta ? A[k * lda + m] : A[m * lda + k]) * (tb ? B[n * ldb + k] : B[k * ldb + n]);
                want.push_back(acc);
                got.push_back(C[static_cast<size_t>(m * ldc + n)]);
              }
            check_close(got, want,
                        "ta " + std::to_string(ta) + " tb " + std::to_string(tb) + " M " + std::to_string(M) + " N " +
                            std::to_string(N) + " K " + std::to_string(K));
          }
}

TEST_CASE("cuBLASLt layout: linear's forward with the BIAS epilogue is x·Wᵀ + b") {
  std::mt19937 rng(11);
  for (int64_t M : {1, 7, 19})
    for (int64_t N : {2, 7, 13})
      for (int64_t K : {2, 7, 23}) {
        const std::vector<double> x = random_values(M * K, rng), w = random_values(N * K, rng);
        std::vector<double> b = random_values(N, rng);
        std::vector<double> y(static_cast<size_t>(M * N));
        // The call linear_bias_forward makes: first operand W, second x, D = y's memory.
        emulate_lt(to_column_major(linear_forward_gemm(M, N, K)), w, x, y, Epi::bias, b);
        std::vector<double> want(static_cast<size_t>(M * N));
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            double acc = b[static_cast<size_t>(n)];
            for (int64_t k = 0; k < K; ++k) acc += x[m * K + k] * w[n * K + k];
            want[static_cast<size_t>(m * N + n)] = acc;
          }
        check_close(y, want, "forward M " + std::to_string(M) + " N " + std::to_string(N) + " K " + std::to_string(K));
      }
}

TEST_CASE("cuBLASLt layout: linear's weight gradient with the BGRADB epilogue gives Gᵀ·x and the bias gradient Σ rows G") {
  std::mt19937 rng(13);
  for (int64_t M : {1, 7, 19})
    for (int64_t N : {2, 7, 13})
      for (int64_t K : {2, 7, 23}) {
        const std::vector<double> g = random_values(M * N, rng), x = random_values(M * K, rng);
        std::vector<double> gw(static_cast<size_t>(N * K)), gb;
        // The call linear_weight_bias_backward makes: first operand x, second G (as Gᵀ).
        emulate_lt(to_column_major(linear_weight_grad_gemm(M, N, K)), x, g, gw, Epi::bgradb, gb);
        std::vector<double> want_w(static_cast<size_t>(N * K), 0.0), want_b(static_cast<size_t>(N), 0.0);
        for (int64_t n = 0; n < N; ++n) {
          for (int64_t m = 0; m < M; ++m) want_b[static_cast<size_t>(n)] += g[m * N + n];
          for (int64_t k = 0; k < K; ++k)
            for (int64_t m = 0; m < M; ++m) want_w[static_cast<size_t>(n * K + k)] += g[m * N + n] * x[m * K + k];
        }
        const std::string what = "M " + std::to_string(M) + " N " + std::to_string(N) + " K " + std::to_string(K);
        check_close(gw, want_w, "weight gradient " + what);
        check_close(gb, want_b, "bias gradient " + what);
      }
}
