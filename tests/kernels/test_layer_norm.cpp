// Layer-norm kernels against naive double references: the forward from its definition,
// the backward through the explicit Jacobian and central finite differences, and the
// dγ/dβ reduction for bit-for-bit reproducibility across thread counts.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/layer_norm.h"
#include "tests/compare.h"

namespace {

using mmg::test::max_abs_diff;

std::vector<double> random_vec(int64_t n, uint32_t seed, double lo = -2, double hi = 2) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& e : v) e = dist(gen);
  return v;
}

struct Ref {
  std::vector<double> y, mean, rstd;
};

// y = γ (x − μ)/√(σ² + eps) + β from the definition (empty gamma/beta: no affine).
Ref ref_forward(const std::vector<double>& x, const std::vector<double>& gamma,
                const std::vector<double>& beta, int64_t rows, int64_t cols, double eps) {
  Ref out{std::vector<double>(x.size()), std::vector<double>(rows), std::vector<double>(rows)};
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < cols; ++j) mu += x[r * cols + j] / cols;
    for (int64_t j = 0; j < cols; ++j) var += std::pow(x[r * cols + j] - mu, 2) / cols;
    double sd = std::sqrt(var + eps);
    for (int64_t j = 0; j < cols; ++j) {
      double g = gamma.empty() ? 1.0 : gamma[j], b = beta.empty() ? 0.0 : beta[j];
      out.y[r * cols + j] = g * (x[r * cols + j] - mu) / sd + b;
    }
    out.mean[r] = mu;
    out.rstd[r] = 1 / sd;
  }
  return out;
}

struct Grads {
  std::vector<double> dx, dgamma, dbeta;
};

// The backward with the Jacobian written out: ∂y_c/∂x_j = γ_c rstd (δ_cj − 1/n − x̂_c x̂_j/n),
// ∂y_c/∂γ_c = x̂_c, ∂y_c/∂β_c = 1.
Grads ref_backward(const std::vector<double>& x, const std::vector<double>& gamma,
                   const std::vector<double>& dy, int64_t rows, int64_t cols, double eps) {
  Ref f = ref_forward(x, {}, {}, rows, cols, eps);  // no affine: f.y is x̂
  Grads g{std::vector<double>(x.size(), 0.0), std::vector<double>(cols, 0.0),
          std::vector<double>(cols, 0.0)};
  for (int64_t r = 0; r < rows; ++r) {
    const double* xh = &f.y[r * cols];
    for (int64_t j = 0; j < cols; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < cols; ++c) {
        double gc = gamma.empty() ? 1.0 : gamma[c];
        acc += dy[r * cols + c] * gc * f.rstd[r] *
               ((c == j) - 1.0 / cols - xh[c] * xh[j] / cols);
      }
      g.dx[r * cols + j] = acc;
      g.dgamma[j] += dy[r * cols + j] * xh[j];
      g.dbeta[j] += dy[r * cols + j];
    }
  }
  return g;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Runs the kernels in T; empty gamma/beta pass nullptr.
template <class T>
struct Run {
  std::vector<double> y, mean, rstd, dx, dgamma, dbeta;
};

template <class T>
Run<T> run(const std::vector<double>& x, const std::vector<double>& gamma,
           const std::vector<double>& beta, const std::vector<double>& dy, int64_t rows,
           int64_t cols, double eps) {
  auto xt = cast<T>(x), gt = cast<T>(gamma), bt = cast<T>(beta), dyt = cast<T>(dy);
  std::vector<T> y(x.size()), mean(rows), rstd(rows), dx(x.size()), dg(cols), db(cols);
  const T* gp = gamma.empty() ? nullptr : gt.data();
  const T* bp = beta.empty() ? nullptr : bt.data();
  mmg::cpu::layer_norm_forward(xt.data(), gp, bp, y.data(), mean.data(), rstd.data(), rows, cols,
                               T(eps));
  if (!dy.empty()) {
    mmg::cpu::layer_norm_backward(xt.data(), gp, mean.data(), rstd.data(), dyt.data(), dx.data(),
                                  dg.data(), db.data(), rows, cols);
  }
  return {widen(y), widen(mean), widen(rstd), widen(dx), widen(dg), widen(db)};
}

struct Size {
  int64_t rows, cols;
};
// Odd sizes; 400×96 is split over threads and over many reduction blocks.
const Size kSizes[] = {{1, 1}, {1, 7}, {3, 2}, {7, 197}, {65, 3}, {400, 96}};

}  // namespace

TEST_CASE("layer_norm forward matches the definition, with and without affine") {
  const double eps = 1e-5;
  for (Size s : kSizes) {
    for (bool affine : {false, true}) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      CAPTURE(affine);
      auto x = random_vec(s.rows * s.cols, 1 + static_cast<uint32_t>(s.cols));
      auto gamma = affine ? random_vec(s.cols, 2) : std::vector<double>{};
      auto beta = affine ? random_vec(s.cols, 3) : std::vector<double>{};
      Ref ref = ref_forward(x, gamma, beta, s.rows, s.cols, eps);
      auto d = run<double>(x, gamma, beta, {}, s.rows, s.cols, eps);
      CHECK(max_abs_diff(d.y, ref.y) < 1e-12);
      CHECK(max_abs_diff(d.mean, ref.mean) < 1e-14);
      CHECK(max_abs_diff(d.rstd, ref.rstd) < 1e-10);
      auto f = run<float>(x, gamma, beta, {}, s.rows, s.cols, eps);
      CHECK(max_abs_diff(f.y, ref.y) < 2e-5);
      CHECK(max_abs_diff(f.mean, ref.mean) < 1e-6);
    }
  }
}

TEST_CASE("layer_norm forward is stable when the mean dwarfs the spread") {
  // x = 1e4 + small noise: Σx² − nμ² in float would lose every significant digit.
  const int64_t rows = 3, cols = 50;
  auto x = random_vec(rows * cols, 9, -1, 1);
  for (auto& e : x) e += 1e4;
  Ref ref = ref_forward(x, {}, {}, rows, cols, 1e-5);
  auto f = run<float>(x, {}, {}, {}, rows, cols, 1e-5);
  // float keeps ~3 significant digits of the noise at 1e4 (ulp ~1e-3), so x̂ to ~1e-2.
  CHECK(max_abs_diff(f.y, ref.y) < 1e-2);
}

TEST_CASE("layer_norm backward matches the explicit Jacobian") {
  const double eps = 1e-5;
  for (Size s : kSizes) {
    for (bool affine : {false, true}) {
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      CAPTURE(affine);
      auto x = random_vec(s.rows * s.cols, 4 + static_cast<uint32_t>(s.rows));
      auto gamma = affine ? random_vec(s.cols, 5) : std::vector<double>{};
      auto beta = affine ? random_vec(s.cols, 6) : std::vector<double>{};
      auto dy = random_vec(s.rows * s.cols, 7);
      Grads ref = ref_backward(x, gamma, dy, s.rows, s.cols, eps);
      auto d = run<double>(x, gamma, beta, dy, s.rows, s.cols, eps);
      CHECK(max_abs_diff(d.dx, ref.dx) < 1e-9);
      CHECK(max_abs_diff(d.dgamma, ref.dgamma) < 1e-10);
      CHECK(max_abs_diff(d.dbeta, ref.dbeta) < 1e-10);
      auto f = run<float>(x, gamma, beta, dy, s.rows, s.cols, eps);
      double scale = static_cast<double>(s.rows);  // dγ, dβ are sums over rows
      CHECK(max_abs_diff(f.dx, ref.dx) < 2e-5);
      CHECK(max_abs_diff(f.dgamma, ref.dgamma) < 1e-5 * scale);
      CHECK(max_abs_diff(f.dbeta, ref.dbeta) < 1e-5 * scale);
    }
  }
}

TEST_CASE("layer_norm backward matches finite differences (double)") {
  const int64_t rows = 3, cols = 5;
  const double eps = 1e-5, h = 1e-6;
  auto x = random_vec(rows * cols, 11);
  auto gamma = random_vec(cols, 12);
  auto beta = random_vec(cols, 13);
  auto w = random_vec(rows * cols, 14);  // L = Σ w ⊙ y, so dy = w
  auto g = run<double>(x, gamma, beta, w, rows, cols, eps);
  auto loss = [&](const std::vector<double>& xx, const std::vector<double>& gg,
                  const std::vector<double>& bb) {
    auto y = run<double>(xx, gg, bb, {}, rows, cols, eps).y;
    double l = 0;
    for (size_t i = 0; i < y.size(); ++i) l += w[i] * y[i];
    return l;
  };
  auto numeric = [&](std::vector<double>& param, size_t i) {
    double saved = param[i];
    param[i] = saved + h;
    double lp = loss(x, gamma, beta);
    param[i] = saved - h;
    double lm = loss(x, gamma, beta);
    param[i] = saved;
    return (lp - lm) / (2 * h);
  };
  for (size_t i = 0; i < x.size(); ++i) {
    CHECK(g.dx[i] == doctest::Approx(numeric(x, i)).epsilon(1e-6).scale(1.0));
  }
  for (size_t j = 0; j < static_cast<size_t>(cols); ++j) {
    CHECK(g.dgamma[j] == doctest::Approx(numeric(gamma, j)).epsilon(1e-6).scale(1.0));
    CHECK(g.dbeta[j] == doctest::Approx(numeric(beta, j)).epsilon(1e-6).scale(1.0));
  }
}

TEST_CASE("layer_norm backward: dx, dgamma, dbeta may each be skipped") {
  const int64_t rows = 9, cols = 11;
  const double eps = 1e-5;
  auto x = random_vec(rows * cols, 15);
  auto gamma = random_vec(cols, 16);
  auto dy = random_vec(rows * cols, 17);
  Grads ref = ref_backward(x, gamma, dy, rows, cols, eps);
  std::vector<double> y(x.size()), mean(rows), rstd(rows), dx(x.size()), dg(cols);
  mmg::cpu::layer_norm_forward<double>(x.data(), gamma.data(), nullptr, y.data(), mean.data(),
                               rstd.data(), rows, cols, eps);
  mmg::cpu::layer_norm_backward<double>(x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(),
                                dx.data(), nullptr, nullptr, rows, cols);
  CHECK(max_abs_diff(dx, ref.dx) < 1e-10);
  mmg::cpu::layer_norm_backward<double>(x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(),
                                nullptr, dg.data(), nullptr, rows, cols);
  CHECK(max_abs_diff(dg, ref.dgamma) < 1e-10);
}

TEST_CASE("layer_norm dgamma/dbeta are identical bit for bit whatever the thread count") {
  const int64_t rows = 1000, cols = 33;
  auto x = random_vec(rows * cols, 18);
  auto gamma = random_vec(cols, 19);
  auto dy = random_vec(rows * cols, 20);
  int saved = mmg::cpu::num_threads();
  std::vector<Run<float>> runs;
  for (int threads : {1, 2, 3, 7}) {
    mmg::cpu::set_num_threads(threads);
    runs.push_back(run<float>(x, gamma, {}, dy, rows, cols, 1e-5));
  }
  mmg::cpu::set_num_threads(saved);
  for (size_t i = 1; i < runs.size(); ++i) {
    CHECK(runs[i].dgamma == runs[0].dgamma);
    CHECK(runs[i].dbeta == runs[0].dbeta);
    CHECK(runs[i].dx == runs[0].dx);
  }
  Grads ref = ref_backward(x, gamma, dy, rows, cols, 1e-5);
  CHECK(max_abs_diff(runs[0].dgamma, ref.dgamma) < 1e-3);
}

// ---- bf16 / f16 rows, with parameters of the same type or f32 ----

namespace {

// Bit patterns, to compare 16-bit and float results exactly.
template <class U>
auto bits_of(U v) {
  if constexpr (std::is_same_v<U, float>) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return b;
  } else {
    return v.bits;
  }
}

template <class H>
constexpr double half_ulp = std::is_same_v<H, mmg::bf16> ? 1.0 / 256 : 1.0 / 2048;

// x, dy in H; γ, β (when affine) in P. Checks the 16-bit kernels against the float kernels on
// the widened inputs (the same bits after one rounding; μ, rstd, and dγ/dβ before their
// rounding to P, identical), and against the double definition within one rounding.
template <class H, class P>
void check_16bit_layer_norm(int64_t rows, int64_t cols, bool affine) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(affine);
  const float eps = 1e-5f;
  const std::vector<H> x = cast<H>(random_vec(rows * cols, 50 + static_cast<uint32_t>(cols)));
  const std::vector<H> dy = cast<H>(random_vec(rows * cols, 51 + static_cast<uint32_t>(rows)));
  const std::vector<P> gamma = cast<P>(random_vec(cols, 52, 0.5, 1.5)), beta = cast<P>(random_vec(cols, 53));
  const P* gp = affine ? gamma.data() : nullptr;
  const P* bp = affine ? beta.data() : nullptr;
  std::vector<H> y(x.size()), dx(x.size());
  std::vector<float> mean(rows), rstd(rows);
  std::vector<P> dg(cols), db(cols);
  mmg::cpu::layer_norm_forward<H, P>(x.data(), gp, bp, y.data(), mean.data(), rstd.data(), rows, cols, eps);
  mmg::cpu::layer_norm_backward<H, P>(x.data(), gp, mean.data(), rstd.data(), dy.data(), dx.data(), dg.data(),
                                      db.data(), rows, cols);

  const std::vector<float> xf(x.begin(), x.end()), dyf(dy.begin(), dy.end()), gf(gamma.begin(), gamma.end()),
      bf(beta.begin(), beta.end());
  std::vector<float> yf(x.size()), dxf(x.size()), mf(rows), rf(rows), dgf(cols), dbf(cols);
  const float* gfp = affine ? gf.data() : nullptr;
  const float* bfp = affine ? bf.data() : nullptr;
  mmg::cpu::layer_norm_forward<float>(xf.data(), gfp, bfp, yf.data(), mf.data(), rf.data(), rows, cols, eps);
  mmg::cpu::layer_norm_backward<float>(xf.data(), gfp, mf.data(), rf.data(), dyf.data(), dxf.data(), dgf.data(),
                                       dbf.data(), rows, cols);
  CHECK(mean == mf);
  CHECK(rstd == rf);
  int64_t y_diff = 0, dx_diff = 0, p_diff = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    y_diff += bits_of(H(yf[i])) != bits_of(y[i]);
    dx_diff += bits_of(H(dxf[i])) != bits_of(dx[i]);
  }
  for (int64_t j = 0; j < cols; ++j)
    p_diff += (bits_of(P(dgf[j])) != bits_of(dg[j])) + (bits_of(P(dbf[j])) != bits_of(db[j]));
  CHECK(y_diff == 0);
  CHECK(dx_diff == 0);
  CHECK(p_diff == 0);

  // Against the double definition of the 16-bit inputs: one rounding to H (half an ulp) beside
  // float's own error (~1e-5 absolute here; dγ, dβ are sums over rows, so that times rows).
  const std::vector<double> xd(x.begin(), x.end()), dyd(dy.begin(), dy.end());
  const std::vector<double> gd = affine ? std::vector<double>(gamma.begin(), gamma.end()) : std::vector<double>{};
  const std::vector<double> bd = affine ? std::vector<double>(beta.begin(), beta.end()) : std::vector<double>{};
  const Ref ref = ref_forward(xd, gd, bd, rows, cols, eps);
  const Grads gref = ref_backward(xd, gd, dyd, rows, cols, eps);
  const double rel = half_ulp<H>, rel_p = std::is_same_v<P, float> ? 1e-6 : half_ulp<P>;
  int64_t y_off = 0, dx_off = 0, p_off = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    y_off += std::abs(double(y[i]) - ref.y[i]) > rel * std::abs(ref.y[i]) + 2e-5;
    dx_off += std::abs(double(dx[i]) - gref.dx[i]) > rel * std::abs(gref.dx[i]) + 2e-4;
  }
  for (int64_t j = 0; j < cols; ++j) {
    const double atol = 2e-5 * static_cast<double>(rows);
    p_off += std::abs(double(dg[j]) - gref.dgamma[j]) > rel_p * std::abs(gref.dgamma[j]) + atol;
    p_off += std::abs(double(db[j]) - gref.dbeta[j]) > rel_p * std::abs(gref.dbeta[j]) + atol;
  }
  CHECK(y_off == 0);
  CHECK(dx_off == 0);
  CHECK(p_off == 0);
}

template <class H>
void check_16bit_layer_norm_all(int64_t rows, int64_t cols) {
  for (bool affine : {false, true}) {
    check_16bit_layer_norm<H, H>(rows, cols, affine);
    check_16bit_layer_norm<H, float>(rows, cols, affine);
  }
}

}  // namespace

TEST_CASE("layer_norm of bf16 and f16 rows (parameters 16-bit or f32): the float kernels rounded once") {
  for (int64_t cols : {1, 7, 127, 769, 3073}) {
    INFO("bf16");
    check_16bit_layer_norm_all<mmg::bf16>(3, cols);
    INFO("f16");
    check_16bit_layer_norm_all<mmg::f16>(3, cols);
  }
  // More rows than the dγ/dβ row blocks (64), split over threads.
  check_16bit_layer_norm_all<mmg::bf16>(130, 33);
  check_16bit_layer_norm_all<mmg::f16>(130, 33);
}
