// Reductions on CUDA against the CPU: sum and mean over every kind of dim set (all, last,
// leading — the in-place middle-dim kernel — middle, several, keepdim), rows shorter and
// longer than a block; max/min/argmax with their indices, ties and NaN; and the gradients.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

using Case = ReduceCase;

std::vector<Case> cases() {
  return {{{7}, {}, false},           {{1}, {0}, true},          {{5, 33}, {1}, false},     {{5, 33}, {0}, false},
          {{2, 3, 31}, {1}, true},    {{2, 3, 31}, {0, 2}, false}, {{13, 1, 97}, {-1}, false}, {{3, 1029}, {1}, false},
          {{1, 5000}, {}, false},     {{4099, 3}, {0}, true},    {{6, 0}, {1}, false},      {{}, {}, false},
          {{257, 65}, {1}, false},    {{3, 4, 5, 6}, {1, 3}, true}};
}

// Forward on poisoned outputs, then the gradient of Σ out·r.
template <class F>
void check_reduction(const char* op, const Case& c, DType dt, F f, double rtol, double atol) {
  const std::string name = reduce_case_name(op, c, dt);
  Tensor x = uniform(c.shape, dt, -2, 2);
  Tensor xc = x.clone().detach().requires_grad_(true);
  Tensor xg = x.to(kGpu).detach().requires_grad_(true);
  Tensor want = f(xc);
  poison_like(want.shape(), want.dtype());
  Tensor got = f(xg);
  check_parity(got, want, rtol, atol, name + " forward");
  Tensor r = uniform(want.shape(), dt, -1, 1);
  (want * r).sum().backward();
  (got * r.to(kGpu)).sum().backward();
  check_parity(xg.grad(), xc.grad(), rtol, atol, name + " gradient");
}

}  // namespace

TEST_CASE("cuda reductions: sum and mean over dims, forward and backward") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases()) {
      check_reduction("sum", c, dt, [&](const Tensor& t) { return sum(t, c.dims, c.keepdim); }, rtol_for(dt) * 4,
                      atol_for(dt) * 8);
      if (numel_of(c.shape) > 0)
        check_reduction("mean", c, dt, [&](const Tensor& t) { return mean(t, c.dims, c.keepdim); }, rtol_for(dt) * 4,
                        atol_for(dt) * 8);
    }
  }
  // A strided input (transposed) and a bf16 input (summed in f32, returned in bf16).
  Tensor t = uniform({33, 70}, DType::f32, -1, 1);
  check_parity(sum(t.to(kGpu).transpose(0, 1), {1}), sum(t.transpose(0, 1), {1}), 1e-6, 1e-6, "sum of a transpose");
  Tensor h = uniform({9, 300}, DType::bf16, -1, 1);
  check_parity(sum(h.to(kGpu), {1}), sum(h, {1}), 1e-2, 1e-2, "sum bf16");
}

TEST_CASE("cuda reductions: integer and bool sums are i64 and exact") {
  require_gpu();
  for (DType dt : {DType::i32, DType::i64, DType::u8, DType::boolean}) {
    Tensor x = integers({37, 1100}, dt, 0, dt == DType::boolean ? 2 : 100);
    for (const Shape& dims : {Shape{}, Shape{0}, Shape{1}}) {
      poison_like(sum(x, dims).shape(), DType::i64);
      Tensor got = sum(x.to(kGpu), dims);
      CHECK(got.dtype() == DType::i64);
      check_parity(got, sum(x, dims), 0, 0, "sum " + dtype_name(dt) + " dims " + shape_str(dims));
    }
  }
}

TEST_CASE("cuda reductions: max, min and argmax with indices, ties and NaN") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8}) {
    for (const Shape& s : {Shape{7, 1}, Shape{5, 33}, Shape{3, 1029}, Shape{2, 3, 31}, Shape{1, 4097}}) {
      // Few distinct values: many ties, so "the first index among ties" is tested.
      Tensor x = integers(s, DType::i64, 0, 5).to(dt);
      for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
        for (bool keep : {false, true}) {
          const std::string name = dtype_name(dt) + " " + shape_str(s) + " dim " + std::to_string(d);
          ValuesIndices want = max(x, d, keep);
          poison_like(want.values.shape(), dt);
          ValuesIndices got = max(x.to(kGpu), d, keep);
          check_parity(got.values, want.values, 0, 0, "max values " + name);
          check_parity(got.indices, want.indices, 0, 0, "max indices " + name);
          ValuesIndices wmin = min(x, d, keep), gmin = min(x.to(kGpu), d, keep);
          check_parity(gmin.values, wmin.values, 0, 0, "min values " + name);
          check_parity(gmin.indices, wmin.indices, 0, 0, "min indices " + name);
          check_parity(argmax(x.to(kGpu), d, keep), argmax(x, d, keep), 0, 0, "argmax " + name);
        }
      }
      check_parity(max(x.to(kGpu)), max(x), 0, 0, "max of all " + dtype_name(dt));
      check_parity(min(x.to(kGpu)), min(x), 0, 0, "min of all " + dtype_name(dt));
    }
  }
  // NaN wins, at its first position; a row without NaN is unaffected.
  Tensor n = tensor({{1, NAN, 3, NAN}, {2, 9, 9, 1}, {NAN, 0, 0, 0}});
  for (int64_t d : {0, 1}) {
    ValuesIndices want = max(n, d), got = max(n.to(kGpu), d);
    check_parity(got.values, want.values, 0, 0, "max with NaN");
    check_parity(got.indices, want.indices, 0, 0, "max indices with NaN");
    ValuesIndices wmin = min(n, d), gmin = min(n.to(kGpu), d);
    check_parity(gmin.indices, wmin.indices, 0, 0, "min indices with NaN");
  }
  // bool is reduced as u8 and returned as bool.
  Tensor b = integers({5, 33}, DType::boolean, 0, 2);
  check_parity(max(b.to(kGpu), 1).values, max(b, 1).values, 0, 0, "max bool");
}

TEST_CASE("cuda reductions: gradients of max along a dim and over all elements (shared among ties)") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = integers({6, 45}, DType::i64, 0, 4).to(dt);  // ties everywhere
    Tensor xc = x.clone().detach().requires_grad_(true), xg = x.to(kGpu).detach().requires_grad_(true);
    Tensor r = uniform({6}, dt, -1, 1);
    (max(xc, 1).values * r).sum().backward();
    (max(xg, 1).values * r.to(kGpu)).sum().backward();
    check_parity(xg.grad(), xc.grad(), 0, 0, "max along dim 1 gradient " + dtype_name(dt));
    Tensor yc = x.clone().detach().requires_grad_(true), yg = x.to(kGpu).detach().requires_grad_(true);
    (max(yc) * 3.0).backward();
    (max(yg) * 3.0).backward();
    check_parity(yg.grad(), yc.grad(), rtol_for(dt), atol_for(dt), "max over all gradient " + dtype_name(dt));
  }
}
