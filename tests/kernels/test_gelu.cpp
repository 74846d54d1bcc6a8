// GELU kernels against double references: the forward by its definitions (erf and tanh
// forms), the backward by the closed-form derivative and by central finite differences of
// the forward.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/gelu.h"

namespace {

double gelu_ref(double x, bool tanh_approx) {
  if (tanh_approx) {
    const double k = std::sqrt(2.0 / std::numbers::pi);
    return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * x * x * x)));
  }
  return 0.5 * x * (1 + std::erf(x / std::numbers::sqrt2));
}

double gelu_grad_ref(double x, bool tanh_approx) {
  if (tanh_approx) {
    const double k = std::sqrt(2.0 / std::numbers::pi), c = 0.044715;
    const double t = std::tanh(k * (x + c * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x);
  }
  return 0.5 * (1 + std::erf(x / std::numbers::sqrt2)) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi);
}

// n points spread over [-9, 9] (past erf's saturation on both sides), plus 0 and ±tiny.
std::vector<double> points(int64_t n) {
  std::vector<double> x;
  for (int64_t i = 0; i < n; ++i) x.push_back(-9.0 + 18.0 * static_cast<double>(i) / static_cast<double>(n - 1));
  x.push_back(0.0);
  x.push_back(1e-30);
  x.push_back(-1e-30);
  return x;
}

}  // namespace

TEST_CASE_TEMPLATE("gelu kernels: forward and backward match the closed forms", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  // The tanh form's derivative has a factor x³·(1 − t²): in f32, 1 − t² near t = 1 carries an
  // absolute error of about one ulp of 1, amplified ~40× at |x| = 9.
  const double tol_dx = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  for (int threads : {1, 2}) {
    mmg::cpu::set_num_threads(threads);
    for (bool tanh_approx : {false, true}) {
      CAPTURE(tanh_approx);
      const std::vector<double> xd = points(40001);  // big enough to be split over threads
      const int64_t n = static_cast<int64_t>(xd.size());
      std::vector<T> x(xd.begin(), xd.end()), y(n), dy(n), dx(n);
      for (int64_t i = 0; i < n; ++i) dy[i] = T(0.5 + 0.25 * std::sin(static_cast<double>(i)));
      mmg::cpu::gelu_forward<T>(x.data(), y.data(), n, tanh_approx);
      mmg::cpu::gelu_backward<T>(x.data(), dy.data(), dx.data(), n, tanh_approx);
      double worst_y = 0, worst_dx = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double xi = static_cast<double>(x[i]);  // the value the kernel saw
        worst_y = std::max(worst_y, std::abs(y[i] - gelu_ref(xi, tanh_approx)) / (1 + std::abs(xi)));
        worst_dx = std::max(worst_dx, std::abs(dx[i] - static_cast<double>(dy[i]) * gelu_grad_ref(xi, tanh_approx)));
      }
      CHECK(worst_y < tol);
      CHECK(worst_dx < tol_dx);
      // The tails: x far right, 0 far left, never NaN.
      CHECK(static_cast<double>(y[n - 4]) == doctest::Approx(9.0).epsilon(1e-6));
      CHECK(std::abs(static_cast<double>(y[0])) < 1e-6);
      CHECK(!std::isnan(dx[0]));
      CHECK(!std::isnan(dx[n - 4]));
    }
  }
  mmg::cpu::set_num_threads(0);
}

TEST_CASE("gelu kernels: the backward is the derivative of the forward (finite differences, f64)") {
  for (bool tanh_approx : {false, true}) {
    CAPTURE(tanh_approx);
    const std::vector<double> x = {-4.5, -2.0, -0.7, -0.1, 0.0, 0.3, 1.0, 2.5, 5.0};
    const int64_t n = static_cast<int64_t>(x.size());
    std::vector<double> ones(n, 1.0), dx(n), plus(n), minus(n), xp(n), xm(n);
    const double h = 1e-6;
    for (int64_t i = 0; i < n; ++i) {
      xp[i] = x[i] + h;
      xm[i] = x[i] - h;
    }
    mmg::cpu::gelu_backward<double>(x.data(), ones.data(), dx.data(), n, tanh_approx);
    mmg::cpu::gelu_forward<double>(xp.data(), plus.data(), n, tanh_approx);
    mmg::cpu::gelu_forward<double>(xm.data(), minus.data(), n, tanh_approx);
    for (int64_t i = 0; i < n; ++i) {
      CAPTURE(x[i]);
      CHECK(dx[i] == doctest::Approx((plus[i] - minus[i]) / (2 * h)).epsilon(1e-7));
    }
  }
}
