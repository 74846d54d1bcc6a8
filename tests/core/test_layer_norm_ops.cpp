// layer_norm op: values against loops over the definition, gradcheck in f64 with and
// without affine parameters, every parameter receiving its gradient, half precision, errors.
#include <doctest/doctest.h>

#include <cmath>

#include "core/mmgrad.h"
#include "tests/compare.h"

using namespace mmg;

namespace {

using mmg::test::max_abs_diff;

Tensor random(const Shape& s, DType dtype, uint64_t seed) {
  Generator gen(seed);
  return randn(s, {.dtype = DType::f64}, &gen).to(dtype);
}

// (x − μ)/√(σ² + eps) · w + b over the last `cols` elements of each row, by loops.
std::vector<double> ref_layer_norm(const Tensor& x, int64_t cols, const Tensor& w, const Tensor& b, double eps) {
  auto xv = x.to_vector<double>();
  std::vector<double> wv = w.defined() ? w.to_vector<double>() : std::vector<double>(cols, 1.0);
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(cols, 0.0);
  std::vector<double> y(xv.size());
  for (size_t r = 0; r < xv.size() / cols; ++r) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < cols; ++j) mu += xv[r * cols + j] / cols;
    for (int64_t j = 0; j < cols; ++j) var += (xv[r * cols + j] - mu) * (xv[r * cols + j] - mu) / cols;
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = (xv[r * cols + j] - mu) / std::sqrt(var + eps) * wv[j] + bv[j];
  }
  return y;
}

}  // namespace

TEST_CASE("layer_norm matches the definition") {
  Tensor x = random({2, 3, 5}, DType::f64, 1) * 3.0 + 1.0;
  Tensor w = random({3, 5}, DType::f64, 2), b = random({3, 5}, DType::f64, 3);
  Tensor y = layer_norm(x, {3, 5}, w, b);
  CHECK(y.shape() == x.shape());
  CHECK(max_abs_diff(y.to_vector<double>(), ref_layer_norm(x, 15, w, b, 1e-5)) < 1e-12);
  Tensor w5 = random({5}, DType::f64, 4);
  CHECK(max_abs_diff(layer_norm(x, {5}).to_vector<double>(), ref_layer_norm(x, 5, Tensor(), Tensor(), 1e-5)) < 1e-12);
  CHECK(max_abs_diff(layer_norm(x, {5}, w5, Tensor(), 0.5).to_vector<double>(),
                     ref_layer_norm(x, 5, w5, Tensor(), 0.5)) < 1e-12);
  Tensor yf = layer_norm(x.to(DType::f32), {5}, w5.to(DType::f32));
  CHECK(yf.dtype() == DType::f32);
  CHECK(max_abs_diff(yf.to_vector<double>(), ref_layer_norm(x, 5, w5, Tensor(), 1e-5)) < 1e-5);
  // A non-contiguous input is normalised along its logical last dim.
  Tensor xt = transpose(random({5, 4}, DType::f64, 5), 0, 1);
  CHECK(max_abs_diff(layer_norm(xt, {5}).to_vector<double>(),
                     ref_layer_norm(xt.contiguous(), 5, Tensor(), Tensor(), 1e-5)) < 1e-12);
}

TEST_CASE("layer_norm passes gradcheck with and without weight and bias") {
  struct Case {
    Shape x, normalized;
    bool weight, bias;
    double eps;
  };
  const Case cases[] = {
      {{4, 7}, {7}, true, true, 1e-5},      {{2, 3, 5}, {3, 5}, true, true, 1e-5}, {{3, 6}, {6}, false, false, 1e-5},
      {{5, 4}, {4}, true, false, 1e-3},     {{5, 4}, {4}, false, true, 1e-5},      {{1, 1}, {1}, true, true, 1e-5},
      {{2, 1, 197}, {197}, true, true, 1e-5},
  };
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.x));
    CAPTURE(shape_str(c.normalized));
    CAPTURE(c.weight);
    CAPTURE(c.bias);
    std::vector<Tensor> inputs{random(c.x, DType::f64, 6), c.weight ? random(c.normalized, DType::f64, 7) : Tensor(),
                               c.bias ? random(c.normalized, DType::f64, 8) : Tensor()};
    Shape ns = c.normalized;
    double eps = c.eps;
    GradcheckFn fn = [ns, eps](const std::vector<Tensor>& a) { return layer_norm(a[0], ns, a[1], a[2], eps); };
    GradcheckResult r = gradcheck(fn, inputs);
    CAPTURE(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == numel_of(c.x) + (c.weight + c.bias) * numel_of(c.normalized));
  }
}

TEST_CASE("layer_norm: weight and bias receive their gradients, also when x needs none") {
  Tensor x = random({6, 8}, DType::f64, 9);
  Tensor w = random({8}, DType::f64, 10).requires_grad_();
  Tensor b = random({8}, DType::f64, 11).requires_grad_();
  Tensor dy = random({6, 8}, DType::f64, 12);
  sum(mul(layer_norm(x, {8}, w, b), dy)).backward();
  REQUIRE(w.grad().defined());
  REQUIRE(b.grad().defined());
  CHECK(!x.grad().defined());
  // dw_j = Σ_rows dy · x̂,  db_j = Σ_rows dy, with x̂ from the reference.
  auto xhat = ref_layer_norm(x, 8, Tensor(), Tensor(), 1e-5);
  auto dyv = dy.to_vector<double>(), dw = w.grad().to_vector<double>(), db = b.grad().to_vector<double>();
  for (int j = 0; j < 8; ++j) {
    double sw = 0, sb = 0;
    for (int r = 0; r < 6; ++r) {
      sw += dyv[r * 8 + j] * xhat[r * 8 + j];
      sb += dyv[r * 8 + j];
    }
    CHECK(dw[j] == doctest::Approx(sw).epsilon(1e-12));
    CHECK(db[j] == doctest::Approx(sb).epsilon(1e-12));
  }
  // And all three at once, each a non-zero gradient of its own shape.
  Tensor x2 = random({3, 4, 8}, DType::f32, 13).requires_grad_();
  Tensor w2 = random({8}, DType::f32, 14).requires_grad_(), b2 = random({8}, DType::f32, 15).requires_grad_();
  sum(mul(layer_norm(x2, {8}, w2, b2), random({3, 4, 8}, DType::f32, 16))).backward();
  for (Tensor* t : {&x2, &w2, &b2}) {
    REQUIRE(t->grad().defined());
    CHECK(t->grad().shape() == t->shape());
    double norm = 0;
    for (double v : t->grad().to_vector<double>()) norm += v * v;
    CHECK(norm > 0);
  }
}

TEST_CASE("layer_norm of bf16 and f16 is computed in f32 and returned in the input dtype") {
  for (DType half : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(half));
    Tensor x = random({4, 16}, half, 17).requires_grad_();
    Tensor w = random({16}, half, 18).requires_grad_();
    Tensor y = layer_norm(x, {16}, w);
    CHECK(y.dtype() == half);
    CHECK(max_abs_diff(y.to_vector<double>(), ref_layer_norm(x.detach(), 16, w.detach(), Tensor(), 1e-5)) < 3e-2);
    sum(y).backward();
    REQUIRE(x.grad().defined());
    CHECK(x.grad().dtype() == half);
    CHECK(w.grad().dtype() == half);
  }
}

TEST_CASE("layer_norm of bf16/f16 x with f32 or 16-bit parameters: x's dtype, the f32 op rounded once") {
  // As PyTorch: 16-bit activations with f32 (or same-dtype) weight and bias come out in the
  // activations' dtype; dx in x's dtype, dweight/dbias in each parameter's. The kernels read
  // the 16-bit x and dy as they are and compute in f32, so every result is the f32 op's on
  // the widened inputs, rounded once.
  for (DType half : {DType::bf16, DType::f16}) {
    for (DType pdt : {DType::f32, half}) {
      for (int64_t cols : {1, 7, 127, 769, 3073}) {
        CAPTURE(dtype_name(half));
        CAPTURE(dtype_name(pdt));
        CAPTURE(cols);
        Tensor x = random({3, cols}, half, 40 + cols).requires_grad_();
        Tensor w = (random({cols}, DType::f64, 41) * 0.2 + 1.0).to(pdt).requires_grad_();
        Tensor b = random({cols}, pdt, 42).requires_grad_();
        Tensor y = layer_norm(x, {cols}, w, b);
        CHECK(y.dtype() == half);
        Tensor x32 = x.detach().to(DType::f32).requires_grad_(), w32 = w.detach().to(DType::f32).requires_grad_(),
               b32 = b.detach().to(DType::f32).requires_grad_();
        Tensor y32 = layer_norm(x32, {cols}, w32, b32);
        CHECK(y.to_vector<double>() == y32.to(half).to_vector<double>());
        Tensor g = random({3, cols}, half, 43);
        y.backward(g);
        y32.backward(g.to(DType::f32));
        REQUIRE(x.grad().defined());
        REQUIRE(w.grad().defined());
        REQUIRE(b.grad().defined());
        CHECK(x.grad().dtype() == half);
        CHECK(w.grad().dtype() == pdt);
        CHECK(b.grad().dtype() == pdt);
        CHECK(x.grad().to_vector<double>() == x32.grad().to(half).to_vector<double>());
        CHECK(w.grad().to_vector<double>() == w32.grad().to(pdt).to_vector<double>());
        CHECK(b.grad().to_vector<double>() == b32.grad().to(pdt).to_vector<double>());
        // And within one rounding of the definition (f64 on the 16-bit values).
        const std::vector<double> ref = ref_layer_norm(x.detach(), cols, w.detach(), b.detach(), 1e-5);
        const std::vector<double> got = y.to_vector<double>();
        const double rel = half == DType::bf16 ? 1.0 / 256 : 1.0 / 2048;
        int64_t off = 0;
        for (size_t i = 0; i < ref.size(); ++i) off += std::abs(got[i] - ref[i]) > rel * std::abs(ref[i]) + 2e-5;
        CHECK(off == 0);
      }
    }
  }
}

TEST_CASE("layer_norm: other dtype mixes promote as arithmetic") {
  Tensor x = random({2, 5}, DType::bf16, 44);
  // An f64 weight: computed and returned in f64; the other 16-bit dtype: f32 (bf16 ⊔ f16).
  Tensor y64 = layer_norm(x, {5}, random({5}, DType::f64, 45));
  CHECK(y64.dtype() == DType::f64);
  Tensor w16 = random({5}, DType::f16, 46).requires_grad_();
  Tensor xg = x.detach().requires_grad_();
  Tensor y32 = layer_norm(xg, {5}, w16);
  CHECK(y32.dtype() == DType::f32);
  CHECK(y32.to_vector<double>() == layer_norm(x.to(DType::f32), {5}, w16.detach().to(DType::f32)).to_vector<double>());
  sum(y32).backward();
  CHECK(xg.grad().dtype() == DType::bf16);
  CHECK(w16.grad().dtype() == DType::f16);
  // A 16-bit weight beside an f32 bias: the kernels take both parameters in f32, each
  // gradient returns in its parameter's dtype.
  Tensor wb = random({5}, DType::bf16, 47).requires_grad_(), bf = random({5}, DType::f32, 48).requires_grad_();
  Tensor y = layer_norm(x, {5}, wb, bf);
  CHECK(y.dtype() == DType::bf16);
  sum(y).backward();
  CHECK(wb.grad().dtype() == DType::bf16);
  CHECK(bf.grad().dtype() == DType::f32);
  // An f32 x with 16-bit parameters is f32, as before.
  CHECK(layer_norm(x.to(DType::f32), {5}, wb.detach()).dtype() == DType::f32);
}

TEST_CASE("layer_norm rejects bad arguments") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH_AS(layer_norm(x, {4}), doctest::Contains("layer_norm: input [2,3] does not end with normalized_shape [4]"),
                       Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, {1, 2, 3}),
                       doctest::Contains("layer_norm: input [2,3] does not end with normalized_shape [1,2,3]"), Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, {}), doctest::Contains("layer_norm: normalized_shape must name at least one dim"),
                       Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, {3}, zeros({2})),
                       doctest::Contains("layer_norm: weight has shape [2] but normalized_shape is [3]"), Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, {3}, Tensor(), zeros({3}, {.dtype = DType::i32})),
                       doctest::Contains("layer_norm: bias needs a floating dtype, got i32 [3]"), Error);
  CHECK_THROWS_WITH_AS(layer_norm(zeros({2, 3}, {.dtype = DType::i64}), {3}),
                       doctest::Contains("layer_norm: needs a floating dtype, got i64 [2,3]"), Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, {3}, Tensor(), Tensor(), -1.0),
                       doctest::Contains("layer_norm: eps must be finite and >= 0, got -1"), Error);
  CHECK_THROWS_WITH_AS(layer_norm(zeros({2, 0}), {0}), doctest::Contains("layer_norm: normalized_shape [0] has no elements"),
                       Error);
}
