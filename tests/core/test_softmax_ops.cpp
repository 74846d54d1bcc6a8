// softmax / log_softmax ops: values along any dim against loops over the definition,
// gradcheck in f64, half-precision inputs, the gradient reaching the input, and errors.
#include <doctest/doctest.h>

#include <cmath>

#include "core/mmgrad.h"
#include "tests/compare.h"

using namespace mmg;

namespace {

using mmg::test::max_abs_diff;

// softmax (or log_softmax) of x along d by loops, x viewed as [outer, n, inner].
std::vector<double> ref_softmax(const Tensor& x, int64_t d, bool log) {
  std::vector<double> v = x.to_vector<double>(), y(v.size());
  int64_t outer = 1, inner = 1, n = x.dim() == 0 ? 1 : x.size(d);
  for (int64_t i = 0; i < d; ++i) outer *= x.size(i);
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= x.size(i);
  for (int64_t a = 0; a < outer; ++a)
    for (int64_t c = 0; c < inner; ++c) {
      auto at = [&](int64_t j) { return (a * n + j) * inner + c; };
      double m = -INFINITY, z = 0;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, v[at(j)]);
      for (int64_t j = 0; j < n; ++j) z += std::exp(v[at(j)] - m);
      for (int64_t j = 0; j < n; ++j) y[at(j)] = log ? v[at(j)] - m - std::log(z) : std::exp(v[at(j)] - m) / z;
    }
  return y;
}

Tensor random(const Shape& s, DType dtype, uint64_t seed) {
  Generator gen(seed);
  return (randn(s, {.dtype = DType::f64}, &gen) * 2.0).to(dtype);
}

}  // namespace

TEST_CASE("softmax and log_softmax match the definition along every dim") {
  Tensor x = random({3, 4, 5}, DType::f64, 1);
  for (bool log : {false, true}) {
    for (int64_t dim : {0, 1, 2, -1, -3}) {
      CAPTURE(log);
      CAPTURE(dim);
      int64_t d = dim < 0 ? dim + 3 : dim;
      auto ref = ref_softmax(x, d, log);
      Tensor y = log ? log_softmax(x, dim) : softmax(x, dim);
      CHECK(y.shape() == x.shape());
      CHECK(y.dtype() == DType::f64);
      CHECK(max_abs_diff(y.to_vector<double>(), ref) < 1e-14);
      Tensor yf = log ? log_softmax(x.to(DType::f32), dim) : softmax(x.to(DType::f32), dim);
      CHECK(yf.dtype() == DType::f32);
      CHECK(max_abs_diff(yf.to_vector<double>(), ref) < 1e-5);
    }
  }
}

TEST_CASE("softmax takes non-contiguous input, 1-element rows and 0-d tensors") {
  Tensor base = random({5, 7}, DType::f64, 2);
  Tensor xt = transpose(base, 0, 1);  // [7,5], not contiguous
  CHECK(!xt.is_contiguous());
  CHECK(max_abs_diff(softmax(xt, 1).to_vector<double>(), ref_softmax(xt.contiguous(), 1, false)) < 1e-14);
  for (double v : softmax(random({4, 1}, DType::f64, 3), 1).to_vector<double>()) CHECK(v == 1.0);
  for (double v : log_softmax(random({4, 1}, DType::f64, 3), 1).to_vector<double>()) CHECK(v == 0.0);
  Tensor s = softmax(scalar_tensor(3.5, {.dtype = DType::f64}), 0);
  CHECK(s.dim() == 0);
  CHECK(s.item() == 1.0);
}

TEST_CASE("softmax and log_softmax pass gradcheck along every dim") {
  struct Case {
    Shape shape;
    int64_t dim;
  };
  const Case cases[] = {{{3, 4, 5}, 0}, {{3, 4, 5}, 1}, {{3, 4, 5}, 2}, {{1}, 0}, {{197}, -1}, {{2, 1, 7}, 1}};
  for (bool log : {false, true}) {
    for (const Case& c : cases) {
      CAPTURE(log);
      CAPTURE(shape_str(c.shape));
      CAPTURE(c.dim);
      GradcheckFn fn = [&](const std::vector<Tensor>& x) { return log ? log_softmax(x[0], c.dim) : softmax(x[0], c.dim); };
      GradcheckResult r = gradcheck(fn, {random(c.shape, DType::f64, 4)});
      CAPTURE(r.message);
      CHECK(r.ok);
      CHECK(r.elements_checked == numel_of(c.shape));
    }
  }
}

TEST_CASE("softmax backward composes with other ops and reaches the input") {
  // L = Σ w ⊙ softmax(x, 0): dL/dx_j = y_j (w_j − Σ_i w_i y_i) column by column.
  Tensor x = random({4, 3}, DType::f64, 5).requires_grad_();
  Tensor w = random({4, 3}, DType::f64, 6);
  Tensor y = softmax(x, 0);
  sum(mul(y, w)).backward();
  REQUIRE(x.grad().defined());
  auto yv = y.to_vector<double>(), wv = w.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (int c = 0; c < 3; ++c) {
    double dot = 0;
    for (int i = 0; i < 4; ++i) dot += wv[i * 3 + c] * yv[i * 3 + c];
    for (int j = 0; j < 4; ++j) CHECK(gv[j * 3 + c] == doctest::Approx(yv[j * 3 + c] * (wv[j * 3 + c] - dot)));
  }
}

TEST_CASE("softmax of bf16 and f16 is computed in f32 and returned in the input dtype") {
  Tensor x32 = random({6, 9}, DType::f32, 7);
  for (DType half : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(half));
    Tensor xh = x32.to(half).requires_grad_();
    Tensor y = softmax(xh, -1);
    CHECK(y.dtype() == half);
    auto ref = ref_softmax(xh.detach().to(DType::f64), 1, false);  // of the rounded input
    CHECK(max_abs_diff(y.to_vector<double>(), ref) < 1e-2);
    sum(mul(y, y)).backward();
    REQUIRE(xh.grad().defined());
    CHECK(xh.grad().dtype() == half);
    Tensor x64 = xh.detach().to(DType::f64).requires_grad_();
    sum(mul(softmax(x64, -1), softmax(x64, -1))).backward();
    CHECK(max_abs_diff(xh.grad().to_vector<double>(), x64.grad().to_vector<double>()) < 2e-2);
  }
}

TEST_CASE("softmax and log_softmax of bf16 and f16: the f32 op rounded once, gradients from the 16-bit y") {
  // Odd row lengths, along the last dim and along an inner one (moved last by the op).
  for (DType half : {DType::bf16, DType::f16}) {
    for (bool log : {false, true}) {
      for (const Shape& shape : {Shape{1}, Shape{7}, Shape{3, 127}, Shape{2, 769}, Shape{2, 3073}, Shape{5, 3, 7}}) {
        for (int64_t dim : {int64_t{-1}, int64_t{0}}) {
          if (dim == 0 && shape.size() == 1) continue;
          CAPTURE(dtype_name(half));
          CAPTURE(log);
          CAPTURE(shape_str(shape));
          CAPTURE(dim);
          auto f = [&](const Tensor& t) { return log ? log_softmax(t, dim) : softmax(t, dim); };
          Tensor xh = random(shape, half, 30 + shape.back()).requires_grad_();
          Tensor y = f(xh);
          CHECK(y.dtype() == half);
          // The kernels compute in f32 and round once: exactly the f32 op on the widened input.
          CHECK(y.to_vector<double>() == f(xh.detach().to(DType::f32)).to(half).to_vector<double>());
          // The gradient, in the input's dtype, against the backward formula in f64 on the
          // 16-bit y the op saved and the 16-bit gradient it was given.
          Tensor g = random(shape, half, 31);
          y.backward(g);
          REQUIRE(xh.grad().defined());
          CHECK(xh.grad().dtype() == half);
          const int64_t d = dim < 0 ? dim + static_cast<int64_t>(shape.size()) : dim;
          Tensor yd = y.detach().to(DType::f64), gd = g.to(DType::f64);
          Tensor s = log ? sum(gd, {d}, true) : sum(gd * yd, {d}, true);
          Tensor want = log ? gd - exp(yd) * s : yd * (gd - s);
          const std::vector<double> got = xh.grad().to_vector<double>(), w = want.to_vector<double>();
          const double rel = half == DType::bf16 ? 1.0 / 256 : 1.0 / 2048;
          int64_t off = 0;
          for (size_t i = 0; i < w.size(); ++i) off += std::abs(got[i] - w[i]) > rel * std::abs(w[i]) + 1e-5;
          CHECK(off == 0);
        }
      }
    }
  }
}

TEST_CASE("softmax and log_softmax reject bad arguments") {
  CHECK_THROWS_WITH_AS(softmax(zeros({2, 3}, {.dtype = DType::i64}), -1),
                       doctest::Contains("softmax: needs a floating dtype, got i64 [2,3]"), Error);
  CHECK_THROWS_WITH_AS(log_softmax(zeros({2, 3}), 2), doctest::Contains("log_softmax: dim 2 out of range for [2,3]"),
                       Error);
  CHECK_THROWS_WITH_AS(softmax(zeros({2, 3}), -3), doctest::Contains("softmax: dim -3 out of range for [2,3]"), Error);
  CHECK_THROWS_WITH_AS(softmax(Tensor(), 0), doctest::Contains("softmax: undefined tensor argument"), Error);
}
