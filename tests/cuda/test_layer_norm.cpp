// layer_norm on CUDA against the CPU: rows shorter and longer than the warp-per-row limit
// (1024), several trailing dims normalised together, with and without weight and bias, a
// large mean (the two-pass variance), more rows than the dγ/dβ row blocks (64), one row,
// bf16 — forward on poisoned outputs, gradients of x, weight and bias through autograd.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

void check_layer_norm(const Shape& xs, const Shape& ns, bool affine, DType dt, double offset, double rtol,
                      double atol) {
  const std::string name = "layer_norm " + dtype_name(dt) + " " + shape_str(xs) + " over " + shape_str(ns) +
                           (affine ? " with weight and bias" : "") + (offset != 0 ? " with a large mean" : "");
  Tensor x = uniform(xs, dt, -2 + offset, 2 + offset);
  Tensor w = uniform(ns, dt, 0.5, 1.5), b = uniform(ns, dt, -1, 1);
  auto make = [&](const Tensor& t, Device d) { return t.to(d).detach().requires_grad_(true); };
  Tensor xc = make(x, Device::cpu()), wc = make(w, Device::cpu()), bc = make(b, Device::cpu());
  Tensor xg = make(x, kGpu), wg = make(w, kGpu), bg = make(b, kGpu);
  Tensor want = affine ? layer_norm(xc, ns, wc, bc) : layer_norm(xc, ns);
  poison_like(want.shape(), want.dtype());
  Tensor got = affine ? layer_norm(xg, ns, wg, bg) : layer_norm(xg, ns);
  CHECK(got.device() == kGpu);
  check_parity(got, want, rtol, atol, name + " forward");
  Tensor r = uniform(want.shape(), dt, -1, 1);
  (want * r).sum().backward();
  (got * r.to(kGpu)).sum().backward();
  check_parity(xg.grad(), xc.grad(), rtol * 10, atol * 10, name + " dx");
  if (affine) {
    check_parity(wg.grad(), wc.grad(), rtol * 10, atol * 10, name + " dweight");
    check_parity(bg.grad(), bc.grad(), rtol * 10, atol * 10, name + " dbias");
  }
}

}  // namespace

TEST_CASE("cuda layer_norm: forward and backward, odd sizes, both kernels, f32 and f64") {
  require_gpu();
  struct Case {
    Shape x, normalized;
  };
  const std::vector<Case> cases = {{{1, 1}, {1}},         {{3, 7}, {7}},          {{5, 33}, {33}},
                                   {{2, 13, 97}, {97}},   {{4, 1024}, {1024}},    {{3, 1025}, {1025}},
                                   {{2, 5, 7}, {5, 7}},   {{131, 40}, {40}},      {{2, 4099}, {4099}},
                                   {{37}, {37}}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      for (bool affine : {false, true}) {
        check_layer_norm(c.x, c.normalized, affine, dt, 0.0, rtol_for(dt) * 20, atol_for(dt) * 20);
      }
    }
    check_layer_norm({6, 300}, {300}, true, dt, 1000.0, dt == DType::f64 ? 1e-9 : 1e-3, dt == DType::f64 ? 1e-9 : 1e-3);
  }
  check_layer_norm({7, 515}, {515}, true, DType::bf16, 0.0, 2e-2, 2e-2);
}
