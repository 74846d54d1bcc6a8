// Matrix products on CUDA (cuBLASLt) against the CPU (Eigen): matmul with every operand
// layout the op passes without copying (transposed views, broadcast batches, the tall
// product of a batch with a shared matrix), 1-D operands, linear with and without bias —
// forward on poisoned outputs and both gradients.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

// f32 products of length K differ by rounding order: a relative error of a few K·ulp.
double rtol_gemm(DType dt, int64_t K) { return dt == DType::f64 ? 1e-12 : 2e-6 * static_cast<double>(K + 8); }

template <class F>
void check_product(const std::string& what, const std::vector<Tensor>& xs, F f, double rtol) {
  std::vector<Tensor> c, g;
  for (const Tensor& x : xs) {
    c.push_back(x.clone().detach().requires_grad_(true));
    g.push_back(x.to(kGpu).detach().requires_grad_(true));
  }
  Tensor want = f(c);
  poison_like(want.shape(), want.dtype());
  Tensor got = f(g);
  CHECK(got.device() == kGpu);
  check_parity(got, want, rtol, rtol, what + " forward");
  Tensor r = uniform(want.shape(), want.dtype(), -1, 1);
  (want * r).sum().backward();
  (got * r.to(kGpu)).sum().backward();
  for (size_t i = 0; i < xs.size(); ++i)
    check_parity(g[i].grad(), c[i].grad(), rtol, rtol, what + " gradient " + std::to_string(i));
}

}  // namespace

TEST_CASE("cuda matmul: shapes, transposed views and broadcast batches, f32 and f64") {
  require_gpu();
  struct Case {
    Shape a, b;
    bool ta = false, tb = false;  // pass a (b) as the transpose of a stored transpose
  };
  const std::vector<Case> cases = {
      {{1, 1}, {1, 1}},          {{7, 13}, {13, 5}},         {{33, 257}, {257, 31}},     {{5, 3}, {3, 129}, true, false},
      {{5, 3}, {3, 129}, false, true}, {{17, 9}, {9, 11}, true, true}, {{4, 7, 13}, {13, 5}},   {{4, 7, 13}, {4, 13, 5}},
      {{13}, {13, 5}},           {{7, 13}, {13}},            {{13}, {13}},               {{2, 1, 7, 13}, {3, 13, 5}},
      {{1, 7, 13}, {6, 13, 5}},  {{3, 0, 4}, {4, 5}},        {{3, 4, 0}, {0, 5}},        {{64, 128}, {128, 96}}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      const int64_t K = c.a.back();
      // A transposed operand is stored transposed and viewed back inside f, on each device:
      // matmul then hands cuBLASLt the transpose flag instead of copying.
      Tensor a = c.ta ? uniform({c.a[1], c.a[0]}, dt, -1, 1) : uniform(c.a, dt, -1, 1);
      Tensor b = c.tb ? uniform({c.b[1], c.b[0]}, dt, -1, 1) : uniform(c.b, dt, -1, 1);
      const bool ta = c.ta, tb = c.tb;
      check_product("matmul " + dtype_name(dt) + " " + shape_str(c.a) + (c.ta ? " (transposed view)" : "") + " @ " +
                        shape_str(c.b) + (c.tb ? " (transposed view)" : ""),
                    {a, b},
                    [ta, tb](const auto& v) {
                      return matmul(ta ? v[0].transpose(0, 1) : v[0], tb ? v[1].transpose(0, 1) : v[1]);
                    },
                    rtol_gemm(dt, K));
    }
  }
}

TEST_CASE("cuda matmul: operands that start off the 256-byte alignment (slices of a larger matrix)") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    // Column and row slices keep their parent's row stride: no copy, a start 1 element in.
    // (Taken inside f, on each device: to(device) itself makes contiguous copies.)
    check_product("matmul of slices " + dtype_name(dt), {uniform({9, 40}, dt, -1, 1), uniform({35, 17}, dt, -1, 1)},
                  [](const auto& v) { return matmul(v[0].slice(1, 1, 34), v[1].slice(0, 2, 35)); }, rtol_gemm(dt, 33));
    check_product("batched matmul of a batch slice " + dtype_name(dt),
                  {uniform({5, 9, 33}, dt, -1, 1), uniform({3, 33, 7}, dt, -1, 1)},
                  [](const auto& v) { return matmul(v[0].slice(0, 1, 4), v[1]); }, rtol_gemm(dt, 33));
  }
}

TEST_CASE("cuda linear: x·Wᵀ + b with and without bias, leading dims, f32 and f64") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Shape& xs : {Shape{5, 33}, Shape{2, 7, 33}, Shape{33}, Shape{1, 33}}) {
      Tensor x = uniform(xs, dt, -1, 1), w = uniform({19, 33}, dt, -1, 1), b = uniform({19}, dt, -1, 1);
      check_product("linear with bias " + dtype_name(dt) + " " + shape_str(xs), {x, w, b},
                    [](const auto& v) { return linear(v[0], v[1], v[2]); }, rtol_gemm(dt, 33));
      check_product("linear " + dtype_name(dt) + " " + shape_str(xs), {x, w},
                    [](const auto& v) { return linear(v[0], v[1]); }, rtol_gemm(dt, 33));
    }
  }
}
