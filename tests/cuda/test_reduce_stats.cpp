// var, std, logsumexp and norm on CUDA against the CPU: rows shorter and longer than the
// warp-per-row limit (1024), reductions over leading, middle, several and all dims, keepdim,
// corrections 0, 1 and >= n, every p (1, 2, inf, 3, 0.5), rows of −inf, +inf and NaN, and
// the gradients (composed of CUDA ops) of each.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

using Case = ReduceCase;

std::vector<Case> cases() {
  return {{{7}, {}, false},          {{1}, {0}, true},           {{5, 33}, {1}, false},    {{5, 33}, {0}, false},
          {{2, 3, 31}, {1}, true},   {{2, 3, 31}, {0, 2}, false}, {{13, 1, 97}, {-1}, false}, {{3, 1029}, {1}, false},
          {{1, 5000}, {}, false},    {{4099, 3}, {0}, true},     {{257, 65}, {1}, false},  {{3, 4, 5, 6}, {1, 3}, true}};
}

double rtol(DType dt) { return rtol_for(dt) * 8; }
double atol(DType dt) { return atol_for(dt) * 8; }

}  // namespace

TEST_CASE("cuda var and std: dims, keepdim, corrections, forward and backward") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases()) {
      for (int64_t corr : {0, 1}) {
        Tensor x = uniform(c.shape, dt, -2, 2);
        const std::string suffix = " correction " + std::to_string(corr);
        check_op_parity(reduce_case_name("var", c, dt) + suffix, {x},
                        [&](const std::vector<Tensor>& a) { return var(a[0], c.dims, corr, c.keepdim); }, rtol(dt),
                        atol(dt));
        check_op_parity(reduce_case_name("std", c, dt) + suffix, {x},
                        [&](const std::vector<Tensor>& a) { return mmg::std(a[0], c.dims, corr, c.keepdim); },
                        rtol(dt), atol(dt));
      }
    }
  }
}

TEST_CASE("cuda var: a correction as large as n gives inf or NaN as on the CPU, and equal elements a zero std") {
  require_gpu();
  Tensor x = uniform({4, 3}, DType::f32, -1, 1);
  check_op_parity("var correction 3 of 3", {x}, [](const std::vector<Tensor>& a) { return var(a[0], {1}, 3); }, 1e-6,
                  1e-6);
  check_op_parity("var correction 5 of 3", {x}, [](const std::vector<Tensor>& a) { return var(a[0], {1}, 5); }, 1e-6,
                  1e-6);
  check_op_parity("std of equal elements", {full({3, 9}, 1.5)},
                  [](const std::vector<Tensor>& a) { return mmg::std(a[0], {1}); }, 1e-6, 1e-6);
}

TEST_CASE("cuda logsumexp: dims, long rows, rows of minus inf, inf and NaN") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases()) {
      if (c.dims.empty()) continue;  // logsumexp takes explicit dims
      Tensor x = uniform(c.shape, dt, -30, 30);
      check_op_parity(reduce_case_name("logsumexp", c, dt), {x},
                      [&](const std::vector<Tensor>& a) { return logsumexp(a[0], c.dims, c.keepdim); }, rtol(dt),
                      atol(dt));
    }
    const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
    Tensor special = tensor({-inf, -inf, -inf, 1.0, -inf, 2.0, inf, 0.5, 3.0, nan, 1.0, 1.0}, {.dtype = dt});
    special = reshape(special, {4, 3});
    Tensor got = logsumexp(special.to(kGpu), {1});
    check_parity(got, logsumexp(special, {1}), rtol(dt), atol(dt), "logsumexp special rows " + dtype_name(dt));
  }
}

TEST_CASE("cuda norm: p 1, 2, inf, 3 and 0.5 over dims, forward and backward") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    for (double p : {1.0, 2.0, std::numeric_limits<double>::infinity(), 3.0, 0.5}) {
      for (const Case& c : cases()) {
        Tensor x = uniform(c.shape, dt, -2, 2);
        check_op_parity(reduce_case_name("norm p " + std::to_string(p), c, dt), {x},
                        [&](const std::vector<Tensor>& a) { return norm(a[0], p, c.dims, c.keepdim); }, rtol(dt) * 4,
                        atol(dt) * 4);
      }
    }
    // Zero rows (gradient 0 rather than 0/0) and a NaN (p = inf: NaN wins).
    Tensor z = zeros({3, 5}, {.dtype = dt});
    for (double p : {1.0, 2.0, 3.0}) {
      check_op_parity("norm of zeros p " + std::to_string(p), {z},
                      [&](const std::vector<Tensor>& a) { return norm(a[0], p, {1}); }, rtol(dt), atol(dt));
    }
    Tensor withnan = tensor({1.0, std::nan(""), -3.0, 2.0}, {.dtype = dt});
    check_parity(norm(withnan.to(kGpu), std::numeric_limits<double>::infinity()),
                 norm(withnan, std::numeric_limits<double>::infinity()), 0, 0, "norm inf with NaN");
  }
}
