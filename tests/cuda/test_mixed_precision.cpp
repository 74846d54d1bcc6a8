// Mixed precision on CUDA: bf16/f16 products on the tensor cores (cuBLASLt, f32 accumulation)
// against the CPU's (f32 math, one rounding); TF32 on request; autocast on the device.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "nn/optim.h"
#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

// Both devices accumulate in f32 and round once to 16 bits; the sums' order differs, so a
// result may land one 16-bit step apart: 2⁻⁸ relative for bf16, 2⁻¹¹ for f16, plus the f32
// rounding of a length-K sum.
double rtol_low(DType dt) { return dt == DType::bf16 ? 8e-3 : 1.5e-3; }

}  // namespace

TEST_CASE("cuda matmul and linear in bf16 and f16: the CPU's result up to one rounding, forward and gradients") {
  require_gpu();
  struct Case {
    Shape a, b;
  };
  const std::vector<Case> cases = {{{1, 1}, {1, 1}},     {{7, 13}, {13, 5}},       {{33, 257}, {257, 31}},
                                   {{4, 7, 13}, {13, 5}}, {{4, 7, 13}, {4, 13, 5}}, {{2, 1, 7, 13}, {3, 13, 5}},
                                   {{64, 128}, {128, 96}}};
  for (DType dt : {DType::bf16, DType::f16}) {
    for (const Case& c : cases) {
      const std::string what = "matmul " + dtype_name(dt) + " " + shape_str(c.a) + " @ " + shape_str(c.b);
      CAPTURE(what);
      Tensor a = uniform(c.a, dt, -1, 1), b = uniform(c.b, dt, -1, 1);
      Tensor ac = a.clone().detach().requires_grad_(true), bc = b.clone().detach().requires_grad_(true);
      Tensor ag = a.to(kGpu).detach().requires_grad_(true), bg = b.to(kGpu).detach().requires_grad_(true);
      Tensor want = matmul(ac, bc);
      poison_like(want.shape(), dt);
      Tensor got = matmul(ag, bg);
      CHECK(got.dtype() == dt);
      check_parity(got, want, rtol_low(dt), 1e-3, what + " forward");
      Tensor r = uniform(want.shape(), dt, -1, 1);
      (want * r).sum().backward();
      (got * r.to(kGpu)).sum().backward();
      check_parity(ag.grad(), ac.grad(), rtol_low(dt), 2e-3, what + " grad a");
      check_parity(bg.grad(), bc.grad(), rtol_low(dt), 2e-3, what + " grad b");
    }
    Tensor x = uniform({5, 3, 37}, dt, -1, 1), w = uniform({19, 37}, dt, -0.3, 0.3), bias = uniform({19}, dt, -1, 1);
    Tensor want = linear(x, w, bias);
    poison_like(want.shape(), dt);
    check_parity(linear(x.to(kGpu), w.to(kGpu), bias.to(kGpu)), want, rtol_low(dt), 1e-3,
                 "linear " + dtype_name(dt));
  }
}

TEST_CASE("cuda TF32: f32 products within TF32's error when allowed, exact f32 again when not") {
  require_gpu();
  Tensor a = uniform({96, 256}, DType::f32, -1, 1), b = uniform({256, 80}, DType::f32, -1, 1);
  Tensor want = matmul(a, b);
  set_allow_tf32(true);
  Tensor tf32 = matmul(a.to(kGpu), b.to(kGpu));
  set_allow_tf32(false);
  // TF32 keeps 10 mantissa bits of each input: ~2⁻¹¹ relative per product, summed over K = 256.
  check_parity(tf32, want, 5e-3, 2e-2, "matmul with TF32");
  check_parity(matmul(a.to(kGpu), b.to(kGpu)), want, 1e-5, 1e-5, "matmul in f32 after TF32 is switched off");
}

TEST_CASE("cuda autocast: a layer's bf16 forward and f32 gradients equal the CPU's under the same autocast") {
  require_gpu();
  Tensor x = uniform({6, 33}, DType::f32, -1, 1), w = uniform({17, 33}, DType::f32, -0.3, 0.3);
  Tensor target = integers({6}, DType::i64, 0, 17);
  auto run = [&](const Device& dev) {
    Tensor wd = w.to(dev).detach().requires_grad_(true);
    Tensor loss;
    {
      AutocastGuard autocast(DType::bf16);
      loss = cross_entropy(gelu(linear(layer_norm(x.to(dev), {33}), wd)), target.to(dev));
    }
    loss.backward();
    CHECK(wd.grad().dtype() == DType::f32);
    return std::make_pair(loss, wd.grad());
  };
  auto [loss_cpu, grad_cpu] = run(Device::cpu());
  auto [loss_gpu, grad_gpu] = run(kGpu);
  check_parity(loss_gpu, loss_cpu, 1e-2, 1e-3, "autocast loss");
  check_parity(grad_gpu, grad_cpu, 2e-2, 2e-3, "autocast weight gradient");
}

// The weight-cast cache on device tensors (core/autocast.h): the same bytes for a second use,
// a fused AdamW step (which writes the parameter through a raw pointer, kernels/adamw.h)
// invalidates them, and the gradients equal the uncached run's bit for bit.
TEST_CASE("cuda autocast cache: one cast per weight, stale after a fused AdamW step, gradients as uncached") {
  require_gpu();
  Tensor w = uniform({17, 33}, DType::f32, -0.3, 0.3).to(kGpu).detach().requires_grad_(true);
  Tensor x1 = uniform({6, 33}, DType::f32, -1, 1).to(kGpu), x2 = uniform({5, 33}, DType::f32, -1, 1).to(kGpu);
  auto grad_of_w = [&](bool cache) {
    w.zero_grad();
    Tensor loss;
    {
      AutocastGuard autocast(DType::bf16, /*enabled=*/true, cache);
      loss = (gelu(linear(x1, w)).sum() + gelu(linear(x2, w)).sum()).to(DType::f32);
    }
    loss.backward();
    return w.grad().to_vector<double>();
  };
  const AutocastCacheStats before = autocast_cache_stats();
  const std::vector<double> cached = grad_of_w(true);
  CHECK(autocast_cache_stats().hits - before.hits == 1);
  CHECK(cached == grad_of_w(false));

  nn::AdamW opt({nn::ParamGroup{.params = {{"w", w}}, .lr = 1e-2}});
  AutocastGuard autocast(DType::bf16);
  Tensor c1 = autocast_to_low(w), c2 = autocast_to_low(w);
  CHECK(c1.device() == kGpu);
  CHECK(c1.data_ptr() == c2.data_ptr());
  linear(x1, w).to(DType::f32).sum().backward();
  opt.step();  // the fused CUDA step: f32, contiguous, on the device
  const AutocastCacheStats d0 = autocast_cache_stats();
  Tensor c3 = autocast_to_low(w);
  CHECK(autocast_cache_stats().misses - d0.misses == 1);
  CHECK(c3.data_ptr() != c1.data_ptr());
  CHECK(c3.to_vector<double>() == w.detach().to(DType::bf16).to_vector<double>());
  CHECK(c3.to_vector<double>() != c1.to_vector<double>());
}
