// dropout: the mask against the Philox convention computed here element by element,
// reproducibility, the kept fraction and the mean within statistical bounds, the gradient,
// the identity and all-zero cases, thread-count independence, and the errors.
#include <doctest/doctest.h>

#include <cmath>

#include "core/mmgrad.h"
#include "kernels/cpu/parallel.h"
#include "kernels/philox.h"

using namespace mmg;

namespace {

const TensorOptions f64o{.dtype = DType::f64};

// The reference mask·scale: keep element i iff philox_uniform_f32(seed, base + i) >= p.
std::vector<double> reference_mask(uint64_t seed, uint64_t base, int64_t n, double p) {
  std::vector<double> m(n);
  for (int64_t i = 0; i < n; ++i)
    m[i] = philox_uniform_f32(seed, base + static_cast<uint64_t>(i)) >= static_cast<float>(p) ? 1.0 / (1.0 - p) : 0.0;
  return m;
}

}  // namespace

TEST_CASE("dropout keeps element i iff philox_uniform_f32(seed, offset + i) >= p, scaled by 1/(1-p)") {
  Generator data(1);
  Tensor x = randn({37, 11}, f64o, &data);
  Generator g(42);
  g.reserve(17);  // the draw starts at counter 17
  Tensor y = dropout(x, 0.3, true, &g);
  CHECK(g.offset() == 17 + 37 * 11);  // it reserved one counter per element
  auto m = reference_mask(42, 17, x.numel(), 0.3);
  auto vx = x.to_vector<double>(), vy = y.to_vector<double>();
  int mismatches = 0;
  for (size_t i = 0; i < vx.size(); ++i) mismatches += vy[i] != vx[i] * m[i];
  CHECK(mismatches == 0);

  // f32: the same mask, the scale applied in f32.
  Tensor xf = x.to(DType::f32);
  Generator gf(42);
  gf.reserve(17);
  auto vyf = dropout(xf, 0.3, true, &gf).to_vector<float>();
  auto vxf = xf.to_vector<float>();
  float scale = static_cast<float>(1.0 / 0.7);
  mismatches = 0;
  for (size_t i = 0; i < vxf.size(); ++i) mismatches += vyf[i] != (m[i] != 0 ? vxf[i] * scale : 0.0f);
  CHECK(mismatches == 0);
}

TEST_CASE("dropout is reproducible: manual_seed, and the same seed gives the same mask") {
  Tensor x = ones({1000});
  manual_seed(3);
  Tensor a = dropout(x, 0.5);
  manual_seed(3);
  Tensor b = dropout(x, 0.5);
  CHECK(allclose(a, b, 0, 0));
  Tensor c = dropout(x, 0.5);  // the stream moved on
  CHECK(!allclose(a, c, 0, 0));
  Generator g1(9), g2(9), g3(10);
  Tensor m1 = dropout(x, 0.25, true, &g1), m2 = dropout(x, 0.25, true, &g2), m3 = dropout(x, 0.25, true, &g3);
  CHECK(allclose(m1, m2, 0, 0));
  CHECK(!allclose(m1, m3, 0, 0));
}

TEST_CASE("dropout keeps a fraction 1-p and preserves the mean, within statistical bounds") {
  const int64_t n = 200000;
  Generator data(2);
  Tensor x = randn({n}, f64o, &data) + 3.0;
  auto vx = x.to_vector<double>();
  for (double p : {0.1, 0.5, 0.9}) {
    CAPTURE(p);
    Generator g(100 + static_cast<uint64_t>(p * 10));
    auto vy = dropout(x, p, true, &g).to_vector<double>();
    int64_t kept = 0;
    double sum_y = 0, sum_x = 0, sum_x2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      kept += vy[i] != 0;
      sum_y += vy[i];
      sum_x += vx[i];
      sum_x2 += vx[i] * vx[i];
    }
    // kept ~ Binomial(n, 1-p): within 5 standard deviations.
    double sd_kept = std::sqrt(n * p * (1 - p));
    CHECK(std::abs(kept - n * (1 - p)) < 5 * sd_kept);
    // E[y_i] = x_i; Var[y_i] = x_i² p/(1-p): the mean of y is the mean of x within 5 sd.
    double sd_mean = std::sqrt(sum_x2 * p / (1 - p)) / n;
    CHECK(std::abs(sum_y / n - sum_x / n) < 5 * sd_mean);
  }
}

TEST_CASE("the gradient of dropout is the same mask times the scale") {
  Generator data(3);
  Tensor x = randn({9, 13}, f64o, &data).requires_grad_();
  Tensor w = randn({9, 13}, f64o, &data);
  Generator g(77);
  Tensor y = dropout(x, 0.4, true, &g);
  sum(y * w).backward();
  auto m = reference_mask(77, 0, x.numel(), 0.4);
  auto gx = x.grad().to_vector<double>(), vw = w.to_vector<double>();
  int mismatches = 0;
  for (size_t i = 0; i < gx.size(); ++i) mismatches += gx[i] != vw[i] * m[i];
  CHECK(mismatches == 0);
}

TEST_CASE("dropout is the identity when p = 0 or not training, and zeros when p = 1") {
  Tensor x = randn({4, 5}, f64o).requires_grad_();
  Generator g(5);
  CHECK(dropout(x, 0.0, true, &g).is_same(x));
  CHECK(dropout(x, 0.7, false, &g).is_same(x));
  CHECK(g.offset() == 0);  // the identity draws nothing
  Tensor z = dropout(x, 1.0, true, &g);
  CHECK(z.to_vector<double>() == std::vector<double>(20, 0.0));
  sum(z).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>(20, 0.0));
}

TEST_CASE("dropout: non-contiguous and bf16 inputs, and any thread count, give the same mask") {
  int saved = cpu::num_threads();
  Generator data(4);
  Tensor x = randn({300, 200}, {}, &data);
  Generator g1(8), g2(8), g3(8), g4(8);
  cpu::set_num_threads(1);
  Tensor a = dropout(x, 0.5, true, &g1);
  cpu::set_num_threads(3);
  Tensor b = dropout(x, 0.5, true, &g2);
  cpu::set_num_threads(saved);
  CHECK(allclose(a, b, 0, 0));
  // Element i is the i-th element in row-major order of the (logical) input.
  Tensor xt = x.transpose(0, 1);
  CHECK(allclose(dropout(xt, 0.5, true, &g3), dropout(xt.contiguous(), 0.5, true, &g4), 0, 0));
  Tensor h = x.to(DType::bf16);
  Generator gh(8);
  Tensor yh = dropout(h, 0.5, true, &gh);
  CHECK(yh.dtype() == DType::bf16);
  Generator gf(8);
  CHECK(allclose(yh.to(DType::f32), dropout(h.to(DType::f32), 0.5, true, &gf).to(DType::bf16).to(DType::f32), 0, 0));
}

TEST_CASE("dropout errors") {
  Tensor x = ones({3});
  CHECK_THROWS_WITH_AS(dropout(x, 1.5), doctest::Contains("dropout: probability p must be in [0, 1], got 1.5 (input [3])"),
                       Error);
  CHECK_THROWS_WITH_AS(dropout(x, -0.1), doctest::Contains("dropout: probability p must be in [0, 1], got -0.1"), Error);
  CHECK_THROWS_WITH_AS(dropout(x, NAN), doctest::Contains("dropout: probability p must be in [0, 1], got nan"), Error);
  CHECK_THROWS_WITH_AS(dropout(arange(3), 0.5), doctest::Contains("dropout: needs a floating dtype, got i64 [3]"), Error);
}
