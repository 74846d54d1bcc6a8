// Reductions: values against naive loops in double, ties and NaN, edge cases of var,
// logsumexp and norm, gradients at the special points, the copy-free layouts, and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "core/mmgrad.h"
#include "core/ops/reduce_impl.h"
#include "kernels/cpu/parallel.h"

using namespace mmg;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// The reference: for every output position (row-major over the kept dims) the reduced
// elements, in row-major order of the reduced dims. `dims` empty = all dims.
std::vector<std::vector<double>> groups_of(const Tensor& x, Shape dims) {
  std::vector<double> v = x.to_vector<double>();
  const Shape& shape = x.shape();
  int64_t n = x.dim();
  std::vector<bool> reduced(n, dims.empty());
  for (int64_t d : dims) reduced[d < 0 ? d + n : d] = true;
  int64_t outs = 1;
  for (int64_t i = 0; i < n; ++i)
    if (!reduced[i]) outs *= shape[i];
  std::vector<std::vector<double>> groups(outs);
  for (int64_t lin = 0; lin < static_cast<int64_t>(v.size()); ++lin) {
    int64_t rest = lin, out = 0, out_stride = 1;
    for (int64_t i = n - 1; i >= 0; --i) {
      int64_t idx = rest % shape[i];
      rest /= shape[i];
      if (!reduced[i]) {
        out += idx * out_stride;
        out_stride *= shape[i];
      }
    }
    groups[out].push_back(v[lin]);
  }
  return groups;
}

Shape out_shape_of(const Shape& shape, Shape dims, bool keepdim) {
  int64_t n = static_cast<int64_t>(shape.size());
  std::vector<bool> reduced(n, dims.empty());
  for (int64_t d : dims) reduced[d < 0 ? d + n : d] = true;
  Shape out;
  for (int64_t i = 0; i < n; ++i)
    if (!reduced[i] || keepdim) out.push_back(reduced[i] ? 1 : shape[i]);
  return out;
}

double ref_sum(const std::vector<double>& g) {
  double s = 0;
  for (double v : g) s += v;
  return s;
}
double ref_mean(const std::vector<double>& g) { return ref_sum(g) / static_cast<double>(g.size()); }
double ref_var(const std::vector<double>& g, int64_t c) {
  double m = ref_mean(g), s = 0;
  for (double v : g) s += (v - m) * (v - m);
  return s / static_cast<double>(static_cast<int64_t>(g.size()) - c);
}
double ref_lse(const std::vector<double>& g) {
  double s = 0;
  for (double v : g) s += std::exp(v);  // inputs are small: the naive formula is exact enough
  return std::log(s);
}
double ref_norm(const std::vector<double>& g, double p) {
  double s = 0;
  if (std::isinf(p)) {
    for (double v : g) s = std::max(s, std::abs(v));
    return s;
  }
  for (double v : g) s += std::pow(std::abs(v), p);
  return std::pow(s, 1.0 / p);
}
int64_t ref_argmax(const std::vector<double>& g) {
  return std::max_element(g.begin(), g.end()) - g.begin();  // the first among equals
}
int64_t ref_argmin(const std::vector<double>& g) { return std::min_element(g.begin(), g.end()) - g.begin(); }

// Checks a reduction result against f applied to each group.
void check_against(const Tensor& got, const Tensor& x, const Shape& dims, bool keepdim,
                   const std::function<double(const std::vector<double>&)>& f, double tol) {
  REQUIRE(got.shape() == out_shape_of(x.shape(), dims, keepdim));
  auto groups = groups_of(x, dims);
  std::vector<double> v = got.to_vector<double>();
  REQUIRE(v.size() == groups.size());
  for (size_t i = 0; i < v.size(); ++i) {
    double want = f(groups[i]);
    if (std::isnan(want)) CHECK(std::isnan(v[i]));  // e.g. the mean of no elements
    else CHECK(std::abs(v[i] - want) <= tol * (1 + std::abs(want)));
  }
}

struct DimsCase {
  Shape dims;
  const char* name;
};
const std::vector<DimsCase> kDimsCases = {
    {{1}, "(1)"}, {{-1}, "(-1)"}, {{0, 2}, "(0,2)"}, {{2, 0}, "(2,0)"}, {{-3, -2}, "(-3,-2)"}, {{}, "all"}, {{0, 1, 2}, "(0,1,2)"}};

// Random inputs [5,7,3]: contiguous, permuted (non-contiguous) and strided by a slice step.
std::vector<std::pair<const char*, Tensor>> inputs_5_7_3(DType dtype, uint64_t seed) {
  Generator gen(seed);
  TensorOptions o{.dtype = dtype};
  return {{"contiguous", randn({5, 7, 3}, o, &gen)},
          {"permuted", permute(randn({7, 3, 5}, o, &gen), {2, 0, 1})},
          {"sliced", slice(randn({5, 13, 3}, o, &gen), 1, 0, 13, 2)}};
}

}  // namespace

TEST_CASE("reductions match naive loops: several dims, negative dims, keepdim, non-contiguous") {
  for (DType dtype : {DType::f64, DType::f32}) {
    double tol = dtype == DType::f64 ? 1e-12 : 2e-6;
    for (auto& [layout, x] : inputs_5_7_3(dtype, 7)) {
      for (const DimsCase& dc : kDimsCases) {
        for (bool keepdim : {false, true}) {
          CAPTURE(dtype_name(dtype));
          CAPTURE(layout);
          CAPTURE(dc.name);
          CAPTURE(keepdim);
          check_against(sum(x, dc.dims, keepdim), x, dc.dims, keepdim, ref_sum, tol);
          check_against(mean(x, dc.dims, keepdim), x, dc.dims, keepdim, ref_mean, tol);
          for (int64_t c : {0, 1, 2})
            check_against(var(x, dc.dims, c, keepdim), x, dc.dims, keepdim,
                          [c](const auto& g) { return ref_var(g, c); }, tol);
          check_against(mmg::std(x, dc.dims, 1, keepdim), x, dc.dims, keepdim,
                        [](const auto& g) { return std::sqrt(ref_var(g, 1)); }, tol);
          check_against(logsumexp(x, dc.dims, keepdim), x, dc.dims, keepdim, ref_lse, tol);
          for (double p : {1.0, 2.0, 3.0, 0.5, kInf})
            check_against(norm(x, p, dc.dims, keepdim), x, dc.dims, keepdim,
                          [p](const auto& g) { return ref_norm(g, p); }, tol);
        }
      }
    }
  }
}

TEST_CASE("max/min/argmax along a dim match naive loops, values and indices") {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (auto& [layout, x] : inputs_5_7_3(dtype, 11)) {
      for (int64_t dim : {0, 1, 2, -1, -3}) {
        for (bool keepdim : {false, true}) {
          CAPTURE(dtype_name(dtype));
          CAPTURE(layout);
          CAPTURE(dim);
          CAPTURE(keepdim);
          ValuesIndices mx = max(x, dim, keepdim), mn = min(x, dim, keepdim);
          CHECK(mx.indices.dtype() == DType::i64);
          CHECK(mx.values.dtype() == dtype);
          check_against(mx.values, x, {dim}, keepdim, [](const auto& g) { return *std::max_element(g.begin(), g.end()); }, 0);
          check_against(mn.values, x, {dim}, keepdim, [](const auto& g) { return *std::min_element(g.begin(), g.end()); }, 0);
          check_against(mx.indices, x, {dim}, keepdim, [](const auto& g) { return double(ref_argmax(g)); }, 0);
          check_against(mn.indices, x, {dim}, keepdim, [](const auto& g) { return double(ref_argmin(g)); }, 0);
          check_against(argmax(x, dim, keepdim), x, {dim}, keepdim, [](const auto& g) { return double(ref_argmax(g)); }, 0);
        }
      }
      CHECK(max(x).item() == std::ranges::max(x.to_vector<double>()));
      CHECK(min(x).item() == std::ranges::min(x.to_vector<double>()));
      CHECK(max(x).dim() == 0);
    }
  }
}

TEST_CASE("max/min: integer and bool inputs") {
  Tensor xi = from_vector<int32_t>({4, -7, 9, 9, -7, 9}, {2, 3});
  ValuesIndices m = max(xi, 1);
  CHECK(m.values.dtype() == DType::i32);
  CHECK(m.values.to_vector<int32_t>() == std::vector<int32_t>{9, 9});
  CHECK(m.indices.to_vector<int64_t>() == std::vector<int64_t>{2, 0});  // row 1: 9 at 0 and 2
  CHECK(min(xi, 0).indices.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0});  // columns 1, 2 tie
  CHECK(min(xi).item() == -7);
  Tensor xl = from_vector<int64_t>({int64_t{1} << 60, 3, -(int64_t{1} << 61)});
  CHECK(max(xl).to_vector<int64_t>()[0] == int64_t{1} << 60);
  CHECK(argmax(from_vector<uint8_t>({3, 250, 250, 7}), 0).item() == 1);
  Tensor xb = from_vector<bool>({false, true, true});
  CHECK(max(xb).dtype() == DType::boolean);
  CHECK(max(xb).item() == 1);
  CHECK(min(xb, 0).indices.item() == 0);
}

TEST_CASE("max/min: the first index among ties, a NaN wins and gives its own index") {
  Tensor x = tensor({{1, 3, 3, 2}, {5, 5, 1, 1}, {2, kNaN, 7, kNaN}}, {.dtype = DType::f64});
  ValuesIndices mx = max(x, 1), mn = min(x, 1);
  auto mxv = mx.values.to_vector<double>(), mnv = mn.values.to_vector<double>();
  CHECK(mxv[0] == 3);
  CHECK(mxv[1] == 5);
  CHECK(std::isnan(mxv[2]));
  CHECK(mx.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});
  CHECK(mnv[0] == 1);
  CHECK(std::isnan(mnv[2]));
  CHECK(mn.indices.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 1});
  CHECK(argmax(x, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});
  CHECK(std::isnan(max(x).item()));
  CHECK(std::isnan(min(x).item()));
  // A NaN first in its row, and at the end
  CHECK(max(tensor({kNaN, 1, 2}), 0).indices.item() == 0);
  CHECK(min(tensor({1, 0, kNaN}), 0).indices.item() == 2);
}

TEST_CASE("max/min: long rows are reduced in chunks and keep the first index and NaN") {
  // 40000 columns: more than one chunk of the row kernel, so chunk summaries are merged.
  const int64_t cols = 40000;
  std::vector<double> v(2 * cols);
  for (int64_t i = 0; i < 2 * cols; ++i) v[i] = std::sin(0.37 * static_cast<double>(i));  // |v| < 1
  v[20000] = v[35000] = 5;           // row 0: a tie across two chunks
  v[cols + 3] = v[cols + 39000] = -5;  // row 1: a tie for the min
  v[cols + 30000] = kNaN;            // row 1: NaN in a later chunk than the max
  v[cols + 36000] = 9;
  Tensor x = from_vector<double>(v, {2, cols});
  ValuesIndices mx = max(x, 1), mn = min(x, 1);
  CHECK(mx.values.to_vector<double>()[0] == 5);
  CHECK(mx.indices.to_vector<int64_t>() == std::vector<int64_t>{20000, 30000});
  CHECK(std::isnan(mx.values.to_vector<double>()[1]));
  CHECK(mn.indices.to_vector<int64_t>()[1] == 30000);
  CHECK(min(narrow(x, 0, 0, 1), 1).indices.item() == ref_argmin(std::vector<double>(v.begin(), v.begin() + cols)));
  // the same row in f32 and the whole-tensor max
  CHECK(argmax(x.to(DType::f32), 1).to_vector<int64_t>() == std::vector<int64_t>{20000, 30000});
  CHECK(max(narrow(x, 0, 0, 1)).item() == 5);
}

TEST_CASE("max/min along a dim: the gradient goes to the arg position, keepdim or not") {
  Generator gen(3);
  Tensor x = randn({4, 5, 3}, {.dtype = DType::f64}, &gen).requires_grad_();
  for (int64_t dim : {0, 1, -1}) {
    for (bool keepdim : {false, true}) {
      CAPTURE(dim);
      CAPTURE(keepdim);
      x.zero_grad();
      ValuesIndices m = min(x, dim, keepdim);
      Tensor g = randn(m.values.shape(), {.dtype = DType::f64}, &gen);
      m.values.backward(g);
      // naive scatter: grad[i] = g[out(i)] where i is the picked element of its row
      int64_t d = dim < 0 ? dim + 3 : dim;
      auto gx = x.grad().to_vector<double>();
      auto gv = g.to_vector<double>();
      auto idx = m.indices.to_vector<int64_t>();
      Shape s = x.shape();
      for (int64_t a = 0; a < s[0]; ++a)
        for (int64_t b = 0; b < s[1]; ++b)
          for (int64_t c = 0; c < s[2]; ++c) {
            int64_t coord[3] = {a, b, c};
            int64_t o = 0;
            for (int64_t k = 0; k < 3; ++k)
              if (k != d) o = o * s[k] + coord[k];
            double want = idx[o] == coord[d] ? gv[o] : 0.0;
            CHECK(gx[(a * s[1] + b) * s[2] + c] == want);
          }
    }
  }
}

TEST_CASE("max/min over all elements share the gradient among ties") {
  Tensor x = tensor({1, 3, 3, 2, 3}, {.dtype = DType::f64}).requires_grad_();
  Tensor m = max(x);
  CHECK(m.item() == 3);
  m.backward();
  auto g = x.grad().to_vector<double>();
  CHECK(g == std::vector<double>{0, 1.0 / 3, 1.0 / 3, 0, 1.0 / 3});
  Tensor y = tensor({{2, -1}, {-1, 5}}, {.dtype = DType::f64}).requires_grad_();
  (min(y) * 4.0).backward();
  CHECK(y.grad().to_vector<double>() == std::vector<double>{0, 2, 2, 0});
  // a NaN result: the NaNs share the gradient
  Tensor z = tensor({1, kNaN, 2}, {.dtype = DType::f64}).requires_grad_();
  max(z).backward();
  CHECK(z.grad().to_vector<double>() == std::vector<double>{0, 1, 0});
}

TEST_CASE("var/std: correction at or beyond the count gives inf or NaN, like PyTorch") {
  TensorOptions o{.dtype = DType::f64};
  CHECK(std::isnan(var(tensor({3}, o)).item()));  // one element, correction 1: 0/0
  CHECK(var(tensor({3}, o), {}, 0).item() == 0);
  CHECK(var(tensor({1, 2}, o), {}, 2).item() == kInf);   // 0.5/0
  CHECK(var(tensor({1, 2}, o), {}, 5).item() == kInf);   // max(0, n − c) = 0
  CHECK(std::isnan(var(tensor({2, 2}, o), {}, 2).item()));
  CHECK(mmg::std(tensor({1, 2}, o), {}, 3).item() == kInf);
  CHECK(std::isnan(var(zeros({0}, o)).item()));  // empty: NaN
}

TEST_CASE("var/std: stable for a large offset, long rows merged in chunks") {
  // 1e8 + small noise: Σx² − n·mean² would cancel catastrophically; two-pass + Chan do not.
  const int64_t n = 50000;  // several chunks
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = 1e8 + std::cos(0.1 * static_cast<double>(i));
  Tensor x = from_vector<double>(v);
  CHECK(var(x).item() == doctest::Approx(ref_var(v, 1)).epsilon(1e-7));
  std::vector<float> w(n);
  for (int64_t i = 0; i < n; ++i) w[i] = 1000.0f + static_cast<float>(std::cos(0.1 * static_cast<double>(i)));
  std::vector<double> wd(w.begin(), w.end());
  CHECK(var(from_vector<float>(w), {}, 0).item() == doctest::Approx(ref_var(wd, 0)).epsilon(1e-6));
}

TEST_CASE("var/std gradients: the closed forms, and 0 where std is 0") {
  Generator gen(5);
  Tensor x = randn({3, 6}, {.dtype = DType::f64}, &gen).requires_grad_();
  var(x, {1}, 1).backward(ones({3}, {.dtype = DType::f64}));
  auto xv = x.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (int64_t r = 0; r < 3; ++r) {
    double m = 0;
    for (int64_t c = 0; c < 6; ++c) m += xv[r * 6 + c] / 6;
    for (int64_t c = 0; c < 6; ++c) CHECK(gv[r * 6 + c] == doctest::Approx(2 * (xv[r * 6 + c] - m) / 5));
  }
  Tensor k = full({4}, 2.5, {.dtype = DType::f64}).requires_grad_();
  Tensor s = mmg::std(k);
  CHECK(s.item() == 0);
  s.backward();
  CHECK(k.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 0});
}

TEST_CASE("logsumexp: shifted by the max, rows of -inf give -inf with gradient 0") {
  TensorOptions o{.dtype = DType::f64};
  CHECK(logsumexp(tensor({1000, 1000}, o), {0}).item() == doctest::Approx(1000 + std::log(2.0)));
  CHECK(logsumexp(tensor({-1000, -1000}, o), {0}).item() == doctest::Approx(-1000 + std::log(2.0)));
  Tensor x = tensor({{-kInf, -kInf, -kInf}, {0, -kInf, 0}, {1, kInf, 2}}, o).requires_grad_();
  Tensor l = logsumexp(x, {1});
  auto lv = l.to_vector<double>();
  CHECK(lv[0] == -kInf);
  CHECK(lv[1] == doctest::Approx(std::log(2.0)));
  CHECK(lv[2] == kInf);
  logsumexp(narrow(x, 0, 0, 2), {1}).backward(ones({2}, o));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 0.5, 0, 0.5, 0, 0, 0});
  CHECK(std::isnan(logsumexp(tensor({1, kNaN}, o), {0}).item()));
  CHECK(logsumexp(zeros({0}, o), {}).item() == -kInf);
  // a long row merged in chunks, large values, an all -inf chunk first
  std::vector<double> v(40000, -kInf);
  for (int64_t i = 20000; i < 40000; ++i) v[i] = 500 + std::sin(static_cast<double>(i));
  std::vector<double> tail(v.begin() + 20000, v.end());
  double m = *std::ranges::max_element(tail), s = 0;
  for (double t : tail) s += std::exp(t - m);
  CHECK(logsumexp(from_vector<double>(v), {0}).item() == doctest::Approx(m + std::log(s)).epsilon(1e-12));
}

TEST_CASE("logsumexp gradient is the softmax of x over the dims") {
  Generator gen(9);
  Tensor x = randn({3, 4, 5}, {.dtype = DType::f64}, &gen).requires_grad_();
  logsumexp(x, {0, 2}, true).backward(ones({1, 4, 1}, {.dtype = DType::f64}));
  auto xv = x.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (int64_t b = 0; b < 4; ++b) {
    double s = 0;
    for (int64_t a = 0; a < 3; ++a)
      for (int64_t c = 0; c < 5; ++c) s += std::exp(xv[(a * 4 + b) * 5 + c]);
    for (int64_t a = 0; a < 3; ++a)
      for (int64_t c = 0; c < 5; ++c) {
        int64_t i = (a * 4 + b) * 5 + c;
        CHECK(gv[i] == doctest::Approx(std::exp(xv[i]) / s));
      }
  }
}

TEST_CASE("norm: gradients at 0 are 0, p = inf shares ties, general p matches the closed form") {
  TensorOptions o{.dtype = DType::f64};
  for (double p : {2.0, 1.0, kInf, 3.0, 0.5}) {
    CAPTURE(p);
    Tensor z = zeros({2, 3}, o).requires_grad_();
    Tensor n = norm(z, p, {1});
    CHECK(n.to_vector<double>() == std::vector<double>{0, 0});
    n.backward(ones({2}, o));
    CHECK(z.grad().to_vector<double>() == std::vector<double>(6, 0.0));
  }
  Tensor x = tensor({3, -4, 0}, o).requires_grad_();
  Tensor n2 = norm(x);
  CHECK(n2.item() == 5);
  n2.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0.6, -0.8, 0});
  Tensor t = tensor({-2, 1, 2, 0}, o).requires_grad_();
  norm(t, kInf).backward();
  CHECK(t.grad().to_vector<double>() == std::vector<double>{-0.5, 0, 0.5, 0});
  Tensor u = tensor({0.5, -2, 0, 1.5}, o).requires_grad_();
  double p = 0.5;
  Tensor nu = norm(u, p);
  nu.backward();
  auto uv = u.to_vector<double>(), gu = u.grad().to_vector<double>();
  for (size_t i = 0; i < uv.size(); ++i) {
    double want = uv[i] == 0 ? 0 : (uv[i] > 0 ? 1 : -1) * std::pow(std::abs(uv[i]) / nu.item(), p - 1);
    CHECK(gu[i] == doctest::Approx(want));
  }
  CHECK(std::isnan(norm(tensor({1, kNaN, 2}, o), kInf).item()));
  CHECK(norm(zeros({0}, o)).item() == 0);
}

TEST_CASE("bf16 inputs reduce in f32 and come back as bf16") {
  Generator gen(2);
  Tensor x = randn({4, 9}, {}, &gen).to(DType::bf16);
  Tensor xf = x.to(DType::f32);
  CHECK(var(x, {1}).dtype() == DType::bf16);
  CHECK(allclose(var(x, {1}).to(DType::f32), var(xf, {1}).to(DType::bf16).to(DType::f32)));
  CHECK(allclose(logsumexp(x, {1}).to(DType::f32), logsumexp(xf, {1}).to(DType::bf16).to(DType::f32)));
  CHECK(allclose(norm(x, 2, {0}).to(DType::f32), norm(xf, 2, {0}).to(DType::bf16).to(DType::f32)));
  CHECK(max(x, 1).indices.to_vector<int64_t>() == max(xf, 1).indices.to_vector<int64_t>());
}

TEST_CASE("sum/mean read leading or trailing reduced dims in place, rows_layout copies nothing then") {
  Generator gen(4);
  Tensor x = randn({6, 5, 4}, {.dtype = DType::f64}, &gen);
  ReducePlan trailing = plan_reduce(x, {1, 2}, false, "sum");
  CHECK(rows_layout(x, trailing).is_same(x));
  Tensor y = randn({6, 1, 4}, {.dtype = DType::f64}, &gen);
  CHECK(rows_layout(y, plan_reduce(y, {2}, false, "sum")).data_ptr() == y.data_ptr());
  ReducePlan leading = plan_reduce(x, {0}, false, "sum");
  CHECK(!rows_layout(x, leading).is_same(x));  // the general path does copy
  // The [outer, n, inner] kernel: leading dims, a middle dim, size-1 dims in between, the
  // split of a long reduced dim into pieces, and integer sums.
  struct Case {
    Shape shape, dims;
  };
  for (const Case& c : std::vector<Case>{{{6, 5, 4}, {0}},
                                         {{6, 5, 4}, {1}},
                                         {{6, 5, 4}, {0, 1}},
                                         {{3, 1, 7, 1, 5}, {0, 2}},
                                         {{3, 1, 7, 1, 5}, {1, 2, 3}},
                                         {{5000, 3}, {0}},
                                         {{3, 2000, 300}, {1}},
                                         {{2, 700, 1}, {1}},
                                         {{0, 5}, {0}},
                                         {{4, 0, 3}, {1}}}) {
    CAPTURE(shape_str(c.shape));
    CAPTURE(shape_str(c.dims));
    Tensor t = randn(c.shape, {.dtype = DType::f64}, &gen);
    check_against(sum(t, c.dims), t, c.dims, false, ref_sum, 1e-12);
    check_against(mean(t.to(DType::f32), c.dims, true), t.to(DType::f32), c.dims, true, ref_mean, 1e-5);
    Tensor ti = randint(-50, 50, c.shape, {.dtype = DType::i32}, &gen);
    Tensor si = sum(ti, c.dims);
    CHECK(si.dtype() == DType::i64);
    check_against(si, ti, c.dims, false, ref_sum, 0);
  }
}

TEST_CASE("reductions reject bad arguments with clear messages") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH_AS(max(x, 3), doctest::Contains("max: dim 3 out of range for [2,3]"), Error);
  CHECK_THROWS_WITH_AS(min(x, -3), doctest::Contains("min: dim -3 out of range for [2,3]"), Error);
  CHECK_THROWS_WITH_AS(argmax(x, 2), doctest::Contains("argmax: dim 2 out of range for [2,3]"), Error);
  CHECK_THROWS_WITH_AS(sum(x, {1, -1}), doctest::Contains("sum: dim 1 repeated in [1,-1]"), Error);
  CHECK_THROWS_WITH_AS(var(x, {0, 0}), doctest::Contains("var: dim 0 repeated in [0,0]"), Error);
  CHECK_THROWS_WITH_AS(logsumexp(x, {5}), doctest::Contains("logsumexp: dim 5 out of range for [2,3]"), Error);
  CHECK_THROWS_WITH_AS(var(zeros({2, 3}, {.dtype = DType::i64})),
                       doctest::Contains("var: needs a floating dtype, got i64 [2,3]"), Error);
  CHECK_THROWS_WITH_AS(mmg::std(zeros({4}, {.dtype = DType::i32})), doctest::Contains("std: needs a floating dtype, got i32 [4]"),
                       Error);
  CHECK_THROWS_WITH_AS(logsumexp(zeros({4}, {.dtype = DType::boolean}), {0}),
                       doctest::Contains("logsumexp: needs a floating dtype, got bool [4]"), Error);
  CHECK_THROWS_WITH_AS(norm(zeros({4}, {.dtype = DType::i64})), doctest::Contains("norm: needs a floating dtype, got i64 [4]"),
                       Error);
  CHECK_THROWS_WITH_AS(var(x, {}, -1), doctest::Contains("var: correction must be >= 0, got -1"), Error);
  CHECK_THROWS_WITH_AS(norm(x, 0.0), doctest::Contains("norm: p must be > 0 (or inf), got 0"), Error);
  CHECK_THROWS_WITH_AS(norm(x, -2.0), doctest::Contains("norm: p must be > 0 (or inf), got -2"), Error);
  CHECK_THROWS_WITH_AS(max(zeros({3, 0}), 1), doctest::Contains("max: cannot reduce 0 elements of [3,0]"), Error);
  CHECK_THROWS_WITH_AS(min(zeros({0})), doctest::Contains("min: cannot reduce 0 elements of [0]"), Error);
  CHECK_THROWS_WITH_AS(mean(zeros({2}, {.dtype = DType::i64})), doctest::Contains("mean: needs a floating dtype"), Error);
  CHECK_THROWS_WITH_AS(max(Tensor(), 0), doctest::Contains("max: undefined tensor argument"), Error);
  // Reducing no elements along a dim where other dims are empty is fine.
  CHECK(max(zeros({0, 3}), 1).values.shape() == Shape{0});
}

TEST_CASE("0-d inputs reduce to themselves") {
  Tensor s = scalar_tensor(2.5, {.dtype = DType::f64}).requires_grad_();
  ValuesIndices m = max(s, 0);
  CHECK(m.values.item() == 2.5);
  CHECK(m.indices.item() == 0);
  CHECK(max(s, -1, true).values.dim() == 0);
  m.values.backward();
  CHECK(s.grad().item() == 1);
  CHECK(sum(s, {0}).item() == 2.5);
  CHECK(norm(s).item() == 2.5);
  CHECK(logsumexp(s, {}).item() == 2.5);
}

TEST_CASE("results do not depend on the thread count (chunks are fixed by the sizes)") {
  Generator gen(6);
  Tensor row = randn({3, 50000}, {}, &gen);    // long rows: chunked and merged
  Tensor tall = randn({20000, 40}, {}, &gen);  // dim 0: the reduced dim is cut into pieces
  auto run = [&] {
    std::vector<std::vector<float>> r;
    r.push_back(sum(row, {1}).to_vector<float>());
    r.push_back(sum(row).to_vector<float>());
    r.push_back(var(row, {1}).to_vector<float>());
    r.push_back(logsumexp(row, {1}).to_vector<float>());
    r.push_back(norm(row, 3, {1}).to_vector<float>());
    r.push_back(sum(tall, {0}).to_vector<float>());
    return r;
  };
  cpu::set_num_threads(1);
  auto one = run();
  cpu::set_num_threads(3);
  auto three = run();
  cpu::set_num_threads(0);  // back to the default
  CHECK(one == three);
}
