// Pointwise ops: unary math (sqrt ... gelu, clamp), pow, maximum/minimum and where.
//
// Values are checked against std:: math applied element by element to the inputs'
// values (read back with to_vector, broadcast with expand); gradients against the
// derivatives written out here in closed form. Kinks (relu, abs, clamp, ties of
// maximum/minimum) are asserted at the exact points where they matter.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <string>

#include "core/mmgrad.h"

using namespace mmg;

namespace {

Generator& test_gen() {
  static Generator g(20240607);
  return g;
}

Tensor uniform(const Shape& s, DType dt, double lo, double hi) {
  return (rand(s, {.dtype = DType::f64}, &test_gen()) * (hi - lo) + lo).to(dt);
}

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

std::vector<double> map1(const Tensor& x, const std::function<double(double)>& f) {
  std::vector<double> v = values(x);
  for (double& e : v) e = f(e);
  return v;
}

// got ≈ want elementwise: |got − want| ≤ tol·(1 + |want|); NaN matches only NaN.
// Reports the first bad element and how many there are.
void check_close(const Tensor& got, const std::vector<double>& want, double tol) {
  std::vector<double> g = values(got);
  REQUIRE(g.size() == want.size());
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < g.size(); ++i) {
    bool ok = (std::isnan(g[i]) && std::isnan(want[i])) || g[i] == want[i] ||
              std::abs(g[i] - want[i]) <= tol * (1 + std::abs(want[i]));
    if (!ok && bad++ == 0) first = static_cast<int64_t>(i);
  }
  CAPTURE(bad);
  CAPTURE(first);
  if (first >= 0) {
    CAPTURE(g[first]);
    CAPTURE(want[first]);
    CHECK(bad == 0);
  } else {
    CHECK(bad == 0);
  }
}

// Reference math, in double.
double phi_cdf(double x) { return 0.5 * (1 + std::erf(x / std::numbers::sqrt2)); }
double phi_pdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi); }
double sigmoid_ref(double x) { return 1 / (1 + std::exp(-x)); }
constexpr double kTanhScale = 0.7978845608028654;  // √(2/π)
double gelu_tanh_ref(double x) { return 0.5 * x * (1 + std::tanh(kTanhScale * (x + 0.044715 * x * x * x))); }
double gelu_tanh_grad(double x) {
  double t = std::tanh(kTanhScale * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * kTanhScale * (1 + 3 * 0.044715 * x * x);
}

struct UnaryCase {
  std::string name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> value;  // f(x)
  std::function<double(double)> grad;   // f'(x), away from kinks
  double lo, hi;                        // input range
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, [](double) { return -1.0; }, -3, 3},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); },
       [](double x) { return std::exp(x); }, -3, 3},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); },
       [](double x) { return 1 / x; }, 0.1, 4},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); },
       [](double x) { return 0.5 / std::sqrt(x); }, 0.1, 4},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); },
       [](double x) { return -0.5 * std::pow(x, -1.5); }, 0.1, 4},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::abs(x); },
       [](double x) { return x > 0 ? 1.0 : -1.0; }, -3, 3},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); },
       [](double x) { return 1 - std::tanh(x) * std::tanh(x); }, -4, 4},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, sigmoid_ref,
       [](double x) { return sigmoid_ref(x) * (1 - sigmoid_ref(x)); }, -8, 8},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; },
       [](double x) { return x > 0 ? 1.0 : 0.0; }, -3, 3},
      {"gelu", [](const Tensor& x) { return gelu(x); }, [](double x) { return x * phi_cdf(x); },
       [](double x) { return phi_cdf(x) + x * phi_pdf(x); }, -5, 5},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, GeluApprox::tanh); }, gelu_tanh_ref, gelu_tanh_grad, -5, 5},
      {"clamp [-0.5,0.7]", [](const Tensor& x) { return clamp(x, -0.5, 0.7); },
       [](double x) { return std::min(std::max(x, -0.5), 0.7); },
       [](double x) { return (x >= -0.5 && x <= 0.7) ? 1.0 : 0.0; }, -2, 2},
      {"clamp min 0.2", [](const Tensor& x) { return clamp(x, 0.2, std::nullopt); },
       [](double x) { return std::max(x, 0.2); }, [](double x) { return x >= 0.2 ? 1.0 : 0.0; }, -2, 2},
      {"clamp max -0.1", [](const Tensor& x) { return clamp(x, std::nullopt, -0.1); },
       [](double x) { return std::min(x, -0.1); }, [](double x) { return x <= -0.1 ? 1.0 : 0.0; }, -2, 2},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }, [](double x) { return x * x * x; },
       [](double x) { return 3 * x * x; }, -2, 2},
      {"pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, [](double x) { return std::pow(x, -1.5); },
       [](double x) { return -1.5 * std::pow(x, -2.5); }, 0.2, 3},
  };
}

// Inputs of one dtype in several layouts: contiguous odd sizes, a transposed view, a
// strided slice, a 0-d scalar, a single element, an empty tensor.
std::vector<std::pair<std::string, Tensor>> layouts(DType dt, double lo, double hi) {
  return {
      {"[7,13]", uniform({7, 13}, dt, lo, hi)},
      {"[13,7] transposed", uniform({13, 7}, dt, lo, hi).transpose(0, 1)},
      {"[5,11] step-2 slice", uniform({5, 11}, dt, lo, hi).slice(1, 0, 11, 2)},
      {"0-d", uniform({}, dt, lo, hi)},
      {"[1]", uniform({1}, dt, lo, hi)},
      {"[0,3]", uniform({0, 3}, dt, lo, hi)},
  };
}

}  // namespace

TEST_CASE("unary ops match std:: math in f32 and f64 on contiguous and strided inputs") {
  for (const UnaryCase& c : unary_cases()) {
    for (DType dt : {DType::f32, DType::f64}) {
      for (const auto& [layout, x] : layouts(dt, c.lo, c.hi)) {
        CAPTURE(c.name);
        CAPTURE(dtype_name(dt));
        CAPTURE(layout);
        Tensor y = c.op(x);
        CHECK(y.dtype() == dt);
        CHECK(y.shape() == x.shape());
        check_close(y, map1(x, c.value), dt == DType::f64 ? 1e-13 : 3e-6);
      }
    }
  }
}

TEST_CASE("unary ops take bf16 and give bf16") {
  for (const UnaryCase& c : unary_cases()) {
    CAPTURE(c.name);
    Tensor x = uniform({3, 17}, DType::bf16, c.lo, c.hi);
    Tensor y = c.op(x);
    CHECK(y.dtype() == DType::bf16);
    CHECK(y.shape() == x.shape());
    // The bf16 input values are exact in double; the result is rounded once to bf16 (2^-8 relative).
    check_close(y, map1(x, c.value), 8e-3);
  }
}

TEST_CASE("unary gradients match the closed-form derivatives") {
  for (const UnaryCase& c : unary_cases()) {
    CAPTURE(c.name);
    Tensor x = uniform({6, 9}, DType::f64, c.lo, c.hi).requires_grad_();
    Tensor w = uniform({6, 9}, DType::f64, -1, 1);  // a random upstream gradient
    sum(c.op(x) * w).backward();
    std::vector<double> xv = values(x), wv = values(w), want(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) want[i] = wv[i] * c.grad(xv[i]);
    check_close(x.grad(), want, 1e-12);
  }
}

TEST_CASE("gelu: both forms agree closely, and the erf form is x·Φ(x) at known points") {
  Tensor x = linspace(-6, 6, 121, {.dtype = DType::f64});
  check_close(gelu(x, GeluApprox::tanh), values(gelu(x)), 1e-3);
  CHECK(gelu(scalar_tensor(0.0, {.dtype = DType::f64})).item() == 0.0);
  // Φ(1) = 0.8413447460685429 (tables of the normal distribution).
  CHECK(gelu(scalar_tensor(1.0, {.dtype = DType::f64})).item() == doctest::Approx(0.8413447460685429).epsilon(1e-15));
  // Far tails: gelu(x) → x for large x and → 0 for very negative x, without NaN.
  Tensor tails = gelu(tensor({-40.0, 40.0}, {.dtype = DType::f64}));
  CHECK(tails.to_vector<double>() == std::vector<double>{-0.0, 40.0});
}

TEST_CASE("sigmoid is stable at large |x|") {
  CHECK(sigmoid(tensor({-1000.0, 1000.0})).to_vector<float>() == std::vector<float>{0.0f, 1.0f});
  std::vector<double> y = values(sigmoid(tensor({-1000.0, -100.0, 0.0, 100.0, 1000.0}, {.dtype = DType::f64})));
  CHECK(y[0] == 0.0);
  CHECK(y[1] == doctest::Approx(std::exp(-100.0)).epsilon(1e-5));
  CHECK(y[2] == 0.5);
  CHECK(y[3] == 1.0);
  CHECK(y[4] == 1.0);
  Tensor x = tensor({-1000.0, 1000.0}, {.dtype = DType::f64, .requires_grad = true});
  sum(sigmoid(x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0.0, 0.0});
}

TEST_CASE("kinks: relu and abs give gradient 0 at 0, clamp passes it at both bounds") {
  Tensor x = tensor({-2.0, -0.0, 0.0, 1.5}, {.dtype = DType::f64, .requires_grad = true});
  sum(relu(x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 1});
  x.zero_grad();
  sum(abs(x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{-1, 0, 0, 1});
  CHECK(std::signbit(abs(x).to_vector<double>()[1]) == false);  // |−0| = +0

  Tensor c = tensor({-2.0, -1.0, 0.0, 1.0, 2.0}, {.dtype = DType::f64, .requires_grad = true});
  sum(clamp(c, -1.0, 1.0)).backward();
  CHECK(c.grad().to_vector<double>() == std::vector<double>{0, 1, 1, 1, 0});
  c.zero_grad();
  sum(clamp(c, 0.0, std::nullopt)).backward();
  CHECK(c.grad().to_vector<double>() == std::vector<double>{0, 0, 1, 1, 1});
  c.zero_grad();
  sum(clamp(c, std::nullopt, 0.0)).backward();
  CHECK(c.grad().to_vector<double>() == std::vector<double>{1, 1, 1, 0, 0});
  c.zero_grad();
  sum(clamp(c, 1.0, 1.0)).backward();  // min = max: a constant, except at x = 1 itself
  CHECK(clamp(c, 1.0, 1.0).to_vector<double>() == std::vector<double>{1, 1, 1, 1, 1});
  CHECK(c.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 1, 0});
}

TEST_CASE("NaN passes through relu, clamp, maximum and minimum") {
  double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = tensor({nan, 1.0}, {.dtype = DType::f64});
  CHECK(std::isnan(relu(x).to_vector<double>()[0]));
  CHECK(std::isnan(clamp(x, 0.0, 0.5).to_vector<double>()[0]));
  CHECK(clamp(x, 0.0, 0.5).to_vector<double>()[1] == 0.5);
  Tensor one = scalar_tensor(1.0, {.dtype = DType::f64});
  for (const Tensor& m : {maximum(x, one), maximum(one, x), minimum(x, one), minimum(one, x)}) {
    CHECK(std::isnan(m.to_vector<double>()[0]));
    CHECK(m.to_vector<double>()[1] == 1.0);
  }
}

TEST_CASE("integer inputs: abs, neg, relu, clamp keep their dtype") {
  Tensor i = from_vector<int64_t>({-3, 0, 2, -7});
  CHECK(abs(i).dtype() == DType::i64);
  CHECK(abs(i).to_vector<int64_t>() == std::vector<int64_t>{3, 0, 2, 7});
  CHECK(neg(i).to_vector<int64_t>() == std::vector<int64_t>{3, 0, -2, 7});
  Tensor j = from_vector<int32_t>({-3, 0, 2, -7});
  CHECK(relu(j).dtype() == DType::i32);
  CHECK(relu(j).to_vector<int32_t>() == std::vector<int32_t>{0, 0, 2, 0});
  CHECK(clamp(i, -4.0, 1.0).to_vector<int64_t>() == std::vector<int64_t>{-3, 0, 1, -4});
  CHECK(clamp(j, std::nullopt, 1e12).to_vector<int32_t>() == std::vector<int32_t>{-3, 0, 2, -7});
  CHECK(clamp(j, 1e12, std::nullopt).to_vector<int32_t>() ==
        std::vector<int32_t>(4, std::numeric_limits<int32_t>::max()));
  Tensor u = from_vector<uint8_t>({0, 5, 255});
  CHECK(abs(u).to_vector<uint8_t>() == std::vector<uint8_t>{0, 5, 255});
  CHECK(!abs(i).requires_grad());
}

TEST_CASE("geglu: a · gelu(g) over the halves [a | g], forward and backward as chunk, gelu and mul") {
  // The fused op against the same math composed of other ops: values and the input gradient,
  // in f64 and f32, both GELU forms, a contiguous input and a transposed one.
  for (DType dt : {DType::f64, DType::f32})
    for (GeluApprox approx : {GeluApprox::none, GeluApprox::tanh})
      for (bool transposed : {false, true}) {
        CAPTURE(dtype_name(dt));
        CAPTURE(static_cast<int>(approx));
        CAPTURE(transposed);
        Tensor base = uniform(transposed ? Shape{18, 5} : Shape{3, 5, 18}, dt, -5, 5);
        Tensor g = uniform(transposed ? Shape{5, 9} : Shape{3, 5, 9}, dt, -1, 1);
        Tensor h1 = base.detach().requires_grad_(), h2 = base.detach().requires_grad_();
        Tensor in1 = transposed ? h1.transpose(0, 1) : h1, in2 = transposed ? h2.transpose(0, 1) : h2;
        Tensor y1 = geglu(in1, approx);
        std::vector<Tensor> halves = chunk(in2, 2, -1);
        Tensor y2 = halves[0] * gelu(halves[1], approx);
        const double tol = dt == DType::f64 ? 1e-13 : 3e-6;
        REQUIRE(y1.shape() == y2.shape());
        check_close(y1, values(y2), tol);
        y1.backward(g);
        y2.backward(g);
        check_close(h1.grad(), values(h2.grad()), tol);
      }
  Tensor odd = zeros({2, 7});
  CHECK_THROWS_WITH_AS(geglu(odd), doctest::Contains("geglu: the last dim of [2,7] must be even"), Error);
  CHECK_THROWS_WITH_AS(geglu(arange(4)), doctest::Contains("geglu: needs a floating dtype, got i64 [4]"), Error);
  CHECK(geglu(zeros({0, 6})).shape() == Shape{0, 3});
}

TEST_CASE("unary ops name themselves and the dtype in their errors") {
  Tensor i = arange(3);
  CHECK_THROWS_WITH_AS(sqrt(i), doctest::Contains("sqrt: needs a floating dtype, got i64 [3]"), Error);
  CHECK_THROWS_WITH_AS(rsqrt(i), doctest::Contains("rsqrt: needs a floating dtype, got i64 [3]"), Error);
  CHECK_THROWS_WITH_AS(tanh(i), doctest::Contains("tanh: needs a floating dtype, got i64 [3]"), Error);
  CHECK_THROWS_WITH_AS(sigmoid(i), doctest::Contains("sigmoid: needs a floating dtype, got i64 [3]"), Error);
  CHECK_THROWS_WITH_AS(gelu(i), doctest::Contains("gelu: needs a floating dtype, got i64 [3]"), Error);
  CHECK_THROWS_WITH_AS(gelu(i, GeluApprox::tanh), doctest::Contains("gelu: needs a floating dtype, got i64 [3]"),
                       Error);
  Tensor b = lt(arange(2), scalar_tensor(1, {.dtype = DType::i64}));
  CHECK_THROWS_WITH_AS(abs(b), doctest::Contains("abs: needs a numeric dtype, got bool [2]"), Error);
  CHECK_THROWS_WITH_AS(relu(b), doctest::Contains("relu: needs a numeric dtype, got bool [2]"), Error);
  CHECK_THROWS_WITH_AS(sqrt(Tensor()), doctest::Contains("sqrt: undefined tensor argument"), Error);
  Tensor x = zeros({3});
  CHECK_THROWS_WITH_AS(clamp(x, std::nullopt, std::nullopt),
                       doctest::Contains("clamp: f32 [3]: at least one of min and max must be given"), Error);
  CHECK_THROWS_WITH_AS(clamp(x, 2.0, 1.0), doctest::Contains("clamp: min 2 is greater than max 1"), Error);
  CHECK_THROWS_WITH_AS(clamp(x, std::numeric_limits<double>::quiet_NaN(), 1.0),
                       doctest::Contains("clamp: a bound is NaN"), Error);
  CHECK_THROWS_WITH_AS(clamp(i, 0.5, std::nullopt),
                       doctest::Contains("clamp: bound 0.5 is not an integer but the tensor is i64 [3]"), Error);
}

// ---- binary ops ----

namespace {

// a and b broadcast to their common shape, read back as doubles: the reference operands.
std::pair<std::vector<double>, std::vector<double>> broadcast_values(const Tensor& a, const Tensor& b) {
  Shape s = broadcast_shapes(a.shape(), b.shape(), "test");
  return {values(a.detach().expand(s)), values(b.detach().expand(s))};
}

std::vector<double> map2(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& f) {
  auto [x, y] = broadcast_values(a, b);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = f(x[i], y[i]);
  return out;
}

// Σ over the broadcast dims, done by hand: the reference for gradients of broadcast inputs.
// `full` has shape `big`; the result has shape `small` (which broadcasts to `big`).
std::vector<double> sum_down(const std::vector<double>& full, const Shape& big, const Shape& small) {
  std::vector<double> out(static_cast<size_t>(numel_of(small)), 0.0);
  size_t lead = big.size() - small.size();
  for (int64_t i = 0; i < numel_of(big); ++i) {
    int64_t rest = i, target = 0, stride = 1;
    for (size_t d = big.size(); d-- > 0;) {
      int64_t idx = rest % big[d];
      rest /= big[d];
      if (d >= lead) {
        int64_t sd = small[d - lead];
        target += (sd == 1 ? 0 : idx) * stride;
        stride *= sd;
      }
    }
    out[target] += full[i];
  }
  return out;
}

}  // namespace

TEST_CASE("pow(a, b): values with broadcasting, 0-d and transposed operands") {
  for (DType dt : {DType::f32, DType::f64}) {
    double tol = dt == DType::f64 ? 1e-13 : 3e-6;
    CAPTURE(dtype_name(dt));
    Tensor a = uniform({3, 1}, dt, 0.2, 3), b = uniform({1, 5}, dt, -2, 2);
    Tensor y = pow(a, b);
    CHECK(y.shape() == Shape{3, 5});
    check_close(y, map2(a, b, [](double x, double p) { return std::pow(x, p); }), tol);
    Tensor s = uniform({}, dt, 0.2, 3), v = uniform({7}, dt, -2, 2);
    check_close(pow(s, v), map2(s, v, [](double x, double p) { return std::pow(x, p); }), tol);
    check_close(pow(abs(v), s), map2(abs(v), s, [](double x, double p) { return std::pow(x, p); }), tol);
    Tensor at = uniform({5, 4}, dt, 0.2, 3).transpose(0, 1), bt = uniform({4, 5}, dt, -2, 2);
    check_close(pow(at, bt), map2(at, bt, [](double x, double p) { return std::pow(x, p); }), tol);
  }
  Tensor h = uniform({9}, DType::bf16, 0.2, 3);
  CHECK(pow(h, h).dtype() == DType::bf16);
  check_close(pow(h, h), map2(h, h, [](double x, double p) { return std::pow(x, p); }), 8e-3);
  // Mixed: a float base with an integer exponent tensor gives the float dtype.
  Tensor e = from_vector<int64_t>({0, 1, 2, 3});
  Tensor base = tensor({1.5, 1.5, 1.5, 1.5});
  CHECK(pow(base, e).dtype() == DType::f32);
  CHECK(pow(base, e).to_vector<float>() == std::vector<float>{1.0f, 1.5f, 2.25f, 3.375f});
}

TEST_CASE("pow(a, b): gradients b·a^(b−1) and a^b·ln a, summed over broadcast dims") {
  Tensor a = uniform({3, 1}, DType::f64, 0.2, 3).requires_grad_();
  Tensor b = uniform({4}, DType::f64, -2, 2).requires_grad_();
  Tensor w = uniform({3, 4}, DType::f64, -1, 1);
  sum(pow(a, b) * w).backward();
  auto [x, p] = broadcast_values(a, b);
  std::vector<double> wv = values(w), ga(12), gb(12);
  for (size_t i = 0; i < 12; ++i) {
    ga[i] = wv[i] * p[i] * std::pow(x[i], p[i] - 1);
    gb[i] = wv[i] * std::pow(x[i], p[i]) * std::log(x[i]);
  }
  check_close(a.grad(), sum_down(ga, {3, 4}, {3, 1}), 1e-12);
  check_close(b.grad(), sum_down(gb, {3, 4}, {4}), 1e-12);
}

TEST_CASE("pow(a, b) at a = 0 and b = 0: the limits, not NaN") {
  Tensor a = tensor({0.0, 0.0, 2.0}, {.dtype = DType::f64, .requires_grad = true});
  Tensor b = tensor({2.0, 0.0, 0.0}, {.dtype = DType::f64, .requires_grad = true});
  Tensor y = pow(a, b);
  CHECK(y.to_vector<double>() == std::vector<double>{0, 1, 1});
  sum(y).backward();
  // ∂/∂a = b·a^(b−1): 2·0 = 0; b = 0 gives 0 (not 0·0^(−1)).
  CHECK(a.grad().to_vector<double>() == std::vector<double>{0, 0, 0});
  // ∂/∂b = a^b·ln a: a = 0 with b ≥ 0 gives 0 (not 0·(−∞)); 1·ln 2 for the last.
  CHECK(b.grad().to_vector<double>() == std::vector<double>{0, 0, std::log(2.0)});
}

TEST_CASE("pow: only the inputs that need a gradient get one, whatever the other's dtype") {
  Tensor base = tensor({1.5, 2.0}, {.requires_grad = true});
  Tensor e = from_vector<int64_t>({2, 3});
  sum(pow(base, e)).backward();
  CHECK(base.grad().to_vector<float>() == std::vector<float>{3.0f, 12.0f});
  Tensor ib = from_vector<int64_t>({2, 3});  // integer base, float exponent: ∂/∂b = a^b·ln a
  Tensor p = tensor({1.0, 2.0}, {.dtype = DType::f64, .requires_grad = true});
  sum(pow(ib, p)).backward();
  check_close(p.grad(), {2 * std::log(2.0), 9 * std::log(3.0)}, 1e-14);
}

TEST_CASE("pow(a, p): values and p·a^(p−1), with p = 0, 1, 2 exact") {
  for (double p : {0.0, 1.0, 2.0, 3.0, 0.5, -1.0, -2.5}) {
    CAPTURE(p);
    Tensor a = uniform({5, 7}, DType::f64, 0.2, 3).transpose(0, 1).detach().requires_grad_();
    Tensor y = pow(a, p);
    check_close(y, map1(a, [p](double x) { return std::pow(x, p); }), 1e-14);
    sum(y).backward();
    check_close(a.grad(), map1(a, [p](double x) { return p == 0 ? 0.0 : p * std::pow(x, p - 1); }), 1e-13);
  }
  Tensor a = tensor({-1.5, 0.0, 0.1, 3.0}, {.dtype = DType::f64, .requires_grad = true});
  Tensor sq = pow(a, 2.0);
  CHECK(sq.to_vector<double>() == std::vector<double>{2.25, 0.0, 0.1 * 0.1, 9.0});
  sum(sq).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{-3.0, 0.0, 0.2, 6.0});
  a.zero_grad();
  Tensor one = pow(a, 0.0);
  CHECK(one.to_vector<double>() == std::vector<double>{1, 1, 1, 1});
  sum(one).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 0});  // also at a = 0
  Tensor h = uniform({5}, DType::bf16, 0.2, 3);
  CHECK(pow(h, 2.0).dtype() == DType::bf16);
  check_close(pow(h, 2.0), map1(h, [](double x) { return x * x; }), 8e-3);
}

TEST_CASE("pow errors") {
  Tensor i = arange(3);
  CHECK_THROWS_WITH_AS(pow(i, i), doctest::Contains("pow: needs a floating dtype, got i64 [3] and i64 [3]"), Error);
  CHECK_THROWS_WITH_AS(pow(i, 2.0), doctest::Contains("pow: needs a floating dtype, got i64 [3]"), Error);
  CHECK_THROWS_WITH_AS(pow(zeros({2, 3}), zeros({4})), doctest::Contains("pow: cannot broadcast [2,3] with [4]"),
                       Error);
}

TEST_CASE("maximum and minimum: values with broadcasting, 0-d, strided, integers, bf16") {
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor a = uniform({4, 1, 3}, dt, -2, 2), b = uniform({5, 1}, dt, -2, 2);
    check_close(maximum(a, b), map2(a, b, [](double x, double y) { return std::max(x, y); }), 0);
    check_close(minimum(a, b), map2(a, b, [](double x, double y) { return std::min(x, y); }), 0);
    Tensor s = uniform({}, dt, -2, 2), t = uniform({7, 3}, dt, -2, 2).transpose(0, 1);
    check_close(maximum(t, s), map2(t, s, [](double x, double y) { return std::max(x, y); }), 0);
    check_close(minimum(s, t), map2(s, t, [](double x, double y) { return std::min(x, y); }), 0);
  }
  Tensor i = from_vector<int64_t>({-3, 5, 2}), j = from_vector<int64_t>({1, 1, 2});
  CHECK(maximum(i, j).dtype() == DType::i64);
  CHECK(maximum(i, j).to_vector<int64_t>() == std::vector<int64_t>{1, 5, 2});
  CHECK(minimum(i, j).to_vector<int64_t>() == std::vector<int64_t>{-3, 1, 2});
  Tensor h = uniform({6}, DType::bf16, -2, 2), k = uniform({6}, DType::bf16, -2, 2);
  CHECK(maximum(h, k).dtype() == DType::bf16);
  check_close(maximum(h, k), map2(h, k, [](double x, double y) { return std::max(x, y); }), 0);
}

TEST_CASE("maximum and minimum: the gradient goes to the winner, half to each at a tie") {
  Tensor a = tensor({1.0, 2.0, 3.0}, {.dtype = DType::f64, .requires_grad = true});
  Tensor b = tensor({3.0, 2.0, 1.0}, {.dtype = DType::f64, .requires_grad = true});
  sum(maximum(a, b)).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{0, 0.5, 1});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{1, 0.5, 0});
  a.zero_grad();
  b.zero_grad();
  sum(minimum(a, b)).backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{1, 0.5, 0});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{0, 0.5, 1});
  // Broadcast 0-d: its gradient sums over the elements it was compared with (one tie).
  Tensor x = tensor({1.0, 2.0, 3.0, 4.0}, {.dtype = DType::f64, .requires_grad = true});
  Tensor s = scalar_tensor(2.0, {.dtype = DType::f64, .requires_grad = true});
  sum(maximum(x, s)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0.5, 1, 1});
  CHECK(s.grad().item() == 1.5);
  CHECK(s.grad().dim() == 0);
}

TEST_CASE("maximum with an integer operand differentiates the float one") {
  Tensor x = tensor({-1.0, 0.0, 1.0}, {.requires_grad = true});
  Tensor zero = from_vector<int64_t>({0}).view({});
  Tensor y = maximum(x, zero);
  CHECK(y.dtype() == DType::f32);
  sum(y).backward();
  CHECK(x.grad().to_vector<float>() == std::vector<float>{0, 0.5f, 1});
}

TEST_CASE("where: 3-way broadcasting, values and gradients") {
  Generator g(7);
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor cond = lt(rand({3, 1, 1}, {}, &g), scalar_tensor(0.5));
    Tensor a = uniform({1, 4, 1}, dt, -2, 2).requires_grad_();
    Tensor b = uniform({5}, dt, -2, 2).requires_grad_();
    Tensor w = uniform({3, 4, 5}, dt, -1, 1);
    Tensor y = where(cond, a, b);
    CHECK(y.shape() == Shape{3, 4, 5});
    CHECK(y.dtype() == dt);
    Shape s{3, 4, 5};
    std::vector<double> c = values(cond.to(DType::f64).expand(s)), av = values(a.detach().expand(s)),
                        bv = values(b.detach().expand(s)), wv = values(w);
    std::vector<double> want(60), ga(60), gb(60);
    for (size_t i = 0; i < 60; ++i) {
      want[i] = c[i] != 0 ? av[i] : bv[i];
      ga[i] = c[i] != 0 ? wv[i] : 0;
      gb[i] = c[i] != 0 ? 0 : wv[i];
    }
    check_close(y, want, 0);
    sum(y * w).backward();
    check_close(a.grad(), sum_down(ga, s, {1, 4, 1}), dt == DType::f64 ? 1e-14 : 1e-6);
    check_close(b.grad(), sum_down(gb, s, {5}), dt == DType::f64 ? 1e-14 : 1e-6);
  }
}

TEST_CASE("where: 0-d operands, transposed operands, integers, mixed dtypes, bf16") {
  Tensor cond = from_vector<bool>({true, false, true, false, false, true}, {2, 3});
  Tensor a = tensor({{1, 2}, {3, 4}, {5, 6}}).transpose(0, 1);  // [2,3] view: 1 3 5 / 2 4 6
  Tensor y = where(cond, a, scalar_tensor(-1.0));
  CHECK(y.to_vector<float>() == std::vector<float>{1, -1, 5, -1, -1, 6});
  Tensor s = where(gt(scalar_tensor(1.0), scalar_tensor(0.0)), tensor({7.0, 8.0}), tensor({0.0, 0.0}));
  CHECK(s.to_vector<float>() == std::vector<float>{7, 8});
  Tensor i = where(cond, from_vector<int64_t>({10, 20, 30}), from_vector<int64_t>({0}));
  CHECK(i.dtype() == DType::i64);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{10, 0, 30, 0, 0, 30});
  Tensor m = where(cond, from_vector<int64_t>({1, 2, 3}), tensor({0.5}, {.dtype = DType::f64}));
  CHECK(m.dtype() == DType::f64);
  CHECK(m.to_vector<double>() == std::vector<double>{1, 0.5, 3, 0.5, 0.5, 3});
  Tensor h = tensor({1.5, 2.5, 3.5}).to(DType::bf16);
  Tensor hy = where(cond, h, zeros({1}).to(DType::bf16));
  CHECK(hy.dtype() == DType::bf16);
  CHECK(hy.to_vector<float>() == std::vector<float>{1.5f, 0, 3.5f, 0, 0, 3.5f});
  // Only the float operand requires grad; the gradient sums over rows.
  Tensor f = tensor({1.0, 1.0, 1.0}, {.requires_grad = true});
  sum(where(cond, f, from_vector<int64_t>({0}))).backward();
  CHECK(f.grad().to_vector<float>() == std::vector<float>{1, 0, 2});
}

TEST_CASE("where and maximum errors") {
  Tensor x = zeros({3});
  CHECK_THROWS_WITH_AS(where(x, x, x), doctest::Contains("where: condition must be bool, got f32 [3]"), Error);
  CHECK_THROWS_WITH_AS(where(arange(3), x, x), doctest::Contains("where: condition must be bool, got i64 [3]"), Error);
  Tensor c = gt(x, scalar_tensor(0.0));
  CHECK_THROWS_WITH_AS(where(c, zeros({2}), x), doctest::Contains("where: cannot broadcast [3] with [2]"), Error);
  CHECK_THROWS_WITH_AS(where(c, x, zeros({4, 2})), doctest::Contains("where: cannot broadcast [3] with [4,2]"),
                       Error);
  CHECK_THROWS_WITH_AS(where(c, Tensor(), x), doctest::Contains("where: undefined tensor argument"), Error);
  CHECK_THROWS_WITH_AS(maximum(zeros({2, 3}), zeros({4})), doctest::Contains("maximum: cannot broadcast [2,3] with [4]"),
                       Error);
  CHECK_THROWS_WITH_AS(minimum(zeros({2}), zeros({3})), doctest::Contains("minimum: cannot broadcast [2] with [3]"),
                       Error);
}

TEST_CASE("bf16 gradients flow through the pointwise ops in bf16") {
  Tensor x = tensor({-1.5, 0.5, 2.0}).to(DType::bf16).detach().requires_grad_();
  Tensor y = sum(relu(x) + tanh(x) + gelu(x) + clamp(x, -1.0, 1.0) + maximum(x, scalar_like(x, 0)));
  y.backward();
  CHECK(x.grad().dtype() == DType::bf16);
  std::vector<double> xv = values(x), want(3);
  for (size_t i = 0; i < 3; ++i) {
    double v = xv[i];
    want[i] = (v > 0) + (1 - std::tanh(v) * std::tanh(v)) + phi_cdf(v) + v * phi_pdf(v) +
              (v >= -1 && v <= 1) + (v > 0);
  }
  check_close(x.grad(), want, 2e-2);
}
