// Row softmax / log-softmax kernels against naive double references: the forward by its
// definition, the backward by the explicit Jacobian and by central finite differences.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/softmax.h"
#include "tests/compare.h"

namespace {

using mmg::test::max_abs_diff;

std::vector<double> random_vec(int64_t n, uint32_t seed, double lo = -3, double hi = 3) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& e : v) e = dist(gen);
  return v;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// softmax straight from the definition, in double (max-subtracted only so that the
// large-magnitude cases stay finite).
std::vector<double> ref_softmax(const std::vector<double>& x, int64_t rows, int64_t cols) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double m = x[r * cols];
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, x[r * cols + j]);
    double z = 0;
    for (int64_t j = 0; j < cols; ++j) z += std::exp(x[r * cols + j] - m);
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = std::exp(x[r * cols + j] - m) / z;
  }
  return y;
}

std::vector<double> ref_log_softmax(const std::vector<double>& x, int64_t rows, int64_t cols) {
  std::vector<double> s = ref_softmax(x, rows, cols);
  for (auto& e : s) e = std::log(e);
  return s;
}

// dx_j = Σ_i dy_i ∂y_i/∂x_j with the full Jacobian written out.
// softmax: ∂y_i/∂x_j = s_i (δ_ij − s_j); log_softmax: ∂y_i/∂x_j = δ_ij − s_j.
std::vector<double> ref_backward(const std::vector<double>& x, const std::vector<double>& dy,
                                 int64_t rows, int64_t cols, bool log) {
  std::vector<double> s = ref_softmax(x, rows, cols), dx(x.size(), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double* sr = &s[r * cols];
    for (int64_t j = 0; j < cols; ++j) {
      double acc = 0;
      for (int64_t i = 0; i < cols; ++i) {
        double jac = log ? (i == j) - sr[j] : sr[i] * ((i == j) - sr[j]);
        acc += dy[r * cols + i] * jac;
      }
      dx[r * cols + j] = acc;
    }
  }
  return dx;
}

template <class T>
std::vector<double> run_forward(bool log, const std::vector<double>& x, int64_t rows,
                                int64_t cols) {
  std::vector<T> xt = cast<T>(x), yt(x.size());
  if (log) {
    mmg::cpu::log_softmax_forward(xt.data(), yt.data(), rows, cols);
  } else {
    mmg::cpu::softmax_forward(xt.data(), yt.data(), rows, cols);
  }
  return std::vector<double>(yt.begin(), yt.end());
}

template <class T>
std::vector<double> run_backward(bool log, const std::vector<double>& x,
                                 const std::vector<double>& dy, int64_t rows, int64_t cols) {
  std::vector<T> xt = cast<T>(x), yt(x.size()), dyt = cast<T>(dy), dxt(x.size());
  if (log) {
    mmg::cpu::log_softmax_forward(xt.data(), yt.data(), rows, cols);
    mmg::cpu::log_softmax_backward(yt.data(), dyt.data(), dxt.data(), rows, cols);
  } else {
    mmg::cpu::softmax_forward(xt.data(), yt.data(), rows, cols);
    mmg::cpu::softmax_backward(yt.data(), dyt.data(), dxt.data(), rows, cols);
  }
  return std::vector<double>(dxt.begin(), dxt.end());
}

struct Size {
  int64_t rows, cols;
};
// Odd sizes; 300×97 is large enough to be split over threads.
const Size kSizes[] = {{1, 1}, {1, 7}, {3, 1}, {7, 197}, {5, 64}, {300, 97}};

}  // namespace

TEST_CASE("softmax and log_softmax forward match the definition") {
  for (bool log : {false, true}) {
    for (Size s : kSizes) {
      CAPTURE(log);
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      auto x = random_vec(s.rows * s.cols, 1 + static_cast<uint32_t>(s.rows * 31 + s.cols));
      auto ref = log ? ref_log_softmax(x, s.rows, s.cols) : ref_softmax(x, s.rows, s.cols);
      CHECK(max_abs_diff(run_forward<double>(log, x, s.rows, s.cols), ref) < 1e-13);
      CHECK(max_abs_diff(run_forward<float>(log, x, s.rows, s.cols), ref) < 2e-6);
    }
  }
}

TEST_CASE("softmax rows sum to one and survive huge logits") {
  // |x| up to 1e4: exp(x) alone would overflow even in double.
  const int64_t rows = 4, cols = 33;
  auto x = random_vec(rows * cols, 7, -1e4, 1e4);
  auto y = run_forward<float>(false, x, rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t j = 0; j < cols; ++j) {
      REQUIRE(std::isfinite(y[r * cols + j]));
      sum += y[r * cols + j];
    }
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
  }
  // log_softmax stays finite where log(softmax) would be log(0) = −∞: compare with
  // x − logsumexp(x) computed in double.
  auto ly = run_forward<float>(true, x, rows, cols);
  for (size_t i = 0; i < ly.size(); ++i) {
    double m = -1e300, z = 0;
    int64_t r = static_cast<int64_t>(i) / cols;
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, x[r * cols + j]);
    for (int64_t j = 0; j < cols; ++j) z += std::exp(x[r * cols + j] - m);
    double expect = x[i] - m - std::log(z);
    CHECK(ly[i] == doctest::Approx(expect).epsilon(1e-6));
  }
}

TEST_CASE("softmax and log_softmax backward match the explicit Jacobian") {
  for (bool log : {false, true}) {
    for (Size s : kSizes) {
      CAPTURE(log);
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      auto x = random_vec(s.rows * s.cols, 11 + static_cast<uint32_t>(s.cols));
      auto dy = random_vec(s.rows * s.cols, 97 + static_cast<uint32_t>(s.rows));
      auto ref = ref_backward(x, dy, s.rows, s.cols, log);
      CHECK(max_abs_diff(run_backward<double>(log, x, dy, s.rows, s.cols), ref) < 1e-12);
      CHECK(max_abs_diff(run_backward<float>(log, x, dy, s.rows, s.cols), ref) < 1e-5);
    }
  }
}

TEST_CASE("softmax and log_softmax backward match finite differences (double)") {
  const int64_t rows = 3, cols = 7;
  const double h = 1e-6;
  for (bool log : {false, true}) {
    CAPTURE(log);
    auto x = random_vec(rows * cols, 5);
    auto w = random_vec(rows * cols, 6);  // L = Σ w ⊙ y, so dy = w
    auto dx = run_backward<double>(log, x, w, rows, cols);
    for (size_t i = 0; i < x.size(); ++i) {
      auto loss = [&](double delta) {
        auto xp = x;
        xp[i] += delta;
        auto y = run_forward<double>(log, xp, rows, cols);
        double l = 0;
        for (size_t t = 0; t < y.size(); ++t) l += w[t] * y[t];
        return l;
      };
      double numeric = (loss(h) - loss(-h)) / (2 * h);
      CHECK(dx[i] == doctest::Approx(numeric).epsilon(1e-7).scale(1.0));
    }
  }
}

TEST_CASE("softmax backward may run in place (dx aliases dy)") {
  const int64_t rows = 6, cols = 13;
  auto x = random_vec(rows * cols, 3);
  auto dy = random_vec(rows * cols, 4);
  for (bool log : {false, true}) {
    CAPTURE(log);
    std::vector<double> y(x.size()), g = dy;
    if (log) {
      mmg::cpu::log_softmax_forward(x.data(), y.data(), rows, cols);
      mmg::cpu::log_softmax_backward(y.data(), g.data(), g.data(), rows, cols);
    } else {
      mmg::cpu::softmax_forward(x.data(), y.data(), rows, cols);
      mmg::cpu::softmax_backward(y.data(), g.data(), g.data(), rows, cols);
    }
    CHECK(max_abs_diff(g, ref_backward(x, dy, rows, cols, log)) < 1e-12);
  }
}

TEST_CASE("softmax gives the same result on one thread and on many") {
  const int64_t rows = 513, cols = 129;
  auto x = random_vec(rows * cols, 21);
  int saved = mmg::cpu::num_threads();
  mmg::cpu::set_num_threads(1);
  auto one = run_forward<float>(false, x, rows, cols);
  mmg::cpu::set_num_threads(4);
  auto many = run_forward<float>(false, x, rows, cols);
  mmg::cpu::set_num_threads(saved);
  CHECK(one == many);
}

// ---- bf16 / f16 rows: widened to float, computed in float, rounded once ----

namespace {

template <class H>
std::vector<float> widen_f32(const std::vector<H>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// Relative rounding of one conversion to H: half an ulp, 2⁻⁸ for bf16 (8 significant bits),
// 2⁻¹¹ for f16 (11).
template <class H>
constexpr double half_ulp = std::is_same_v<H, mmg::bf16> ? 1.0 / 256 : 1.0 / 2048;

template <class H>
void forward_16bit(bool log, const H* x, H* y, int64_t rows, int64_t cols) {
  if (log) mmg::cpu::log_softmax_forward(x, y, rows, cols);
  else mmg::cpu::softmax_forward(x, y, rows, cols);
}
template <class H>
void backward_16bit(bool log, const H* y, const H* dy, H* dx, int64_t rows, int64_t cols) {
  if (log) mmg::cpu::log_softmax_backward(y, dy, dx, rows, cols);
  else mmg::cpu::softmax_backward(y, dy, dx, rows, cols);
}

template <class H>
void check_16bit_rows(bool log, int64_t rows, int64_t cols) {
  CAPTURE(log);
  CAPTURE(rows);
  CAPTURE(cols);
  const std::vector<H> x = cast<H>(random_vec(rows * cols, 40 + static_cast<uint32_t>(cols), -8, 8));
  const std::vector<H> dy = cast<H>(random_vec(rows * cols, 41 + static_cast<uint32_t>(cols)));
  std::vector<H> y(x.size()), dx(x.size());
  forward_16bit(log, x.data(), y.data(), rows, cols);
  backward_16bit(log, y.data(), dy.data(), dx.data(), rows, cols);

  // Exactly the float kernels on the widened inputs, each output rounded once.
  const std::vector<float> xf = widen_f32(x), yin = widen_f32(y), dyf = widen_f32(dy);
  std::vector<float> yf(x.size()), dxf(x.size());
  forward_16bit(log, xf.data(), yf.data(), rows, cols);
  backward_16bit(log, yin.data(), dyf.data(), dxf.data(), rows, cols);
  int64_t y_diff = 0, dx_diff = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    y_diff += H(yf[i]).bits != y[i].bits;
    dx_diff += H(dxf[i]).bits != dx[i].bits;
  }
  CHECK(y_diff == 0);
  CHECK(dx_diff == 0);

  // And within one rounding of the double definition (of the 16-bit inputs): y against the
  // softmax of x; dx against the backward formula on the 16-bit y and dy it read. Beside the
  // rounding (half an ulp, or half f16's smallest subnormal 2⁻²⁵), the float math's own
  // error: ~1e-6 relative in y, and in dx the row sum's (~1e-5 absolute where dy − Σ cancels).
  const std::vector<double> xd(x.begin(), x.end()), yd(y.begin(), y.end()), dyd(dy.begin(), dy.end());
  const std::vector<double> ref = log ? ref_log_softmax(xd, rows, cols) : ref_softmax(xd, rows, cols);
  const double rel = half_ulp<H> + 2e-6, tiny = std::is_same_v<H, mmg::f16> ? 0x1p-25 : 0.0;
  int64_t y_off = 0, dx_off = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;  // softmax: Σ dy·y; log_softmax: Σ dy
    for (int64_t j = 0; j < cols; ++j) s += log ? dyd[r * cols + j] : dyd[r * cols + j] * yd[r * cols + j];
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t i = r * cols + j;
      const double want_dx = log ? dyd[i] - std::exp(yd[i]) * s : yd[i] * (dyd[i] - s);
      y_off += std::abs(yd[i] - ref[i]) > rel * std::abs(ref[i]) + tiny;
      dx_off += std::abs(double(dx[i]) - want_dx) > rel * std::abs(want_dx) + 1e-5;
    }
  }
  CHECK(y_off == 0);
  CHECK(dx_off == 0);

  // In place (dx aliases dy): the same bits.
  std::vector<H> g = dy;
  backward_16bit(log, y.data(), g.data(), g.data(), rows, cols);
  int64_t alias_diff = 0;
  for (size_t i = 0; i < g.size(); ++i) alias_diff += g[i].bits != dx[i].bits;
  CHECK(alias_diff == 0);
}

}  // namespace

TEST_CASE("softmax and log_softmax of bf16 and f16 rows: the float kernels rounded once, odd row lengths") {
  for (bool log : {false, true}) {
    for (int64_t cols : {1, 7, 127, 769, 3073}) {
      check_16bit_rows<mmg::bf16>(log, 3, cols);
      check_16bit_rows<mmg::f16>(log, 3, cols);
    }
    // Rows spread over threads.
    check_16bit_rows<mmg::bf16>(log, 300, 97);
  }
}
