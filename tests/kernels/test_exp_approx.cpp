// exp_approx (kernels/cpu/exp_approx.h) against std::exp in double: its accuracy over the
// whole range it claims, and its edges (0, −∞, underflow, overflow, NaN).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "kernels/cpu/exp_approx.h"

using mmg::cpu::exp_approx;

TEST_CASE("exp_approx is within 1.5 ulp of e^x on [-87.3, 88.3]") {
  double worst_ulps = 0;
  float worst_x = 0;
  int checked = 0;
  // Every 97th float step from −87.3 to 88.3, plus a dense sweep of softmax's [−20, 0].
  auto check = [&](float x) {
    const double exact = std::exp(static_cast<double>(x));
    const float got = exp_approx(x);
    // One ulp of the exact value as a float.
    const float e = static_cast<float>(exact);
    const double ulp = static_cast<double>(std::nextafter(e, std::numeric_limits<float>::infinity())) - e;
    const double ulps = std::abs(static_cast<double>(got) - exact) / ulp;
    if (ulps > worst_ulps) {
      worst_ulps = ulps;
      worst_x = x;
    }
    ++checked;
  };
  for (float x = -87.3f; x <= 88.3f; x += 0.0097f) check(x);
  for (float x = -20.0f; x <= 0.0f; x += 1.0e-4f) check(x);
  MESSAGE("exp_approx: worst error ", worst_ulps, " ulp, at x = ", worst_x);
  CHECK(checked > 200000);
  CHECK(worst_ulps <= 1.5);  // measured: 0.97
  CHECK(worst_ulps > 0.0);  // it is an approximation: some value is not the rounded e^x
}

TEST_CASE("exp_approx edges: exact 1 at 0, 0 for -inf and underflow, +inf for overflow, NaN stays NaN") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(exp_approx(0.0f) == 1.0f);
  CHECK(exp_approx(-0.0f) == 1.0f);
  CHECK(exp_approx(-inf) == 0.0f);
  CHECK(exp_approx(-88.0f) == 0.0f);
  CHECK(exp_approx(-1.0e30f) == 0.0f);
  CHECK(exp_approx(89.0f) == inf);
  CHECK(exp_approx(inf) == inf);
  CHECK(std::isnan(exp_approx(std::numeric_limits<float>::quiet_NaN())));
  // The smallest input it still computes gives a normal float near FLT_MIN.
  const float tiny = exp_approx(-87.33f);
  CHECK(tiny >= std::numeric_limits<float>::min());
  CHECK(tiny == doctest::Approx(std::exp(-87.33)).epsilon(1e-6));
}
