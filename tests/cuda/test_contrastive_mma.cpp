// clip_loss version 3 on CUDA (tensor cores, kernels/cuda/contrastive_mma.cu) against the CPU
// op computed in f32 on the same rounded inputs: the loss, row/column lse through it, d image,
// d text and d logit_scale, for bf16 and f16 embeddings, N = 1, 7, 197, 1000 (1, and remainders
// of the 64-row tiles) at d = 8, 100, 512 and N = 4099 at d = 64, logit scale 1 and 100, the
// outputs poisoned first. Then: the f32/f64 error (no silent fallback), the result dtypes, and
// run-to-run determinism (the same bits twice). The host emulation of the same kernels
// (tests/kernels/test_contrastive_mma_tiling.cpp) meets the same tolerances on the CPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

// Rows of unit length, rounded to dt.
Tensor unit_rows(int64_t N, int64_t d, DType dt) {
  Tensor x = uniform({N, d}, DType::f64, -1, 1);
  return div(x, norm(x, 2.0, {1}, true)).to(dt);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector<double>()) m = std::max(m, std::abs(x));
  return m;
}

// got (any dtype) ≈ want (f32): tol relative to each element and to the tensor's largest, plus floor.
void check_close(const Tensor& got, const Tensor& want, double tol, double floor, const std::string& what) {
  check_parity(got.to(Device::cpu()).to(want.dtype()), want, tol, tol * max_abs(want) + floor, what);
}

// The emulation meets these with 3-10x to spare (its largest error ~1e-3 in bf16: the rounding of
// the outputs); the margin is for the tensor cores' own order of the f32 sums.
double v3_tol(DType dt) { return dt == DType::bf16 ? 1e-2 : 2e-3; }

struct Outputs {
  Tensor loss, d_img, d_txt, d_scale;
};

Tensor leaf_on(const Tensor& x, Device device) {
  Tensor t = device.is_cpu() ? x.clone().detach() : x.to(device).detach();
  t.requires_grad_(true);
  return t;
}

// The size classes of everything v3 allocates: [N, d] gradients (T) and the f32 partial sums,
// [N] lse and diagonal (f32) and d t's rows (f64), the one-element loss and d t.
void poison_v3_outputs(int64_t N, int64_t d, DType dt) {
  poison_like({N, d}, dt);
  poison_like({N, d}, DType::f32);
  poison_like({N}, DType::f32);
  poison_like({N}, DType::f64);
  poison_like({1}, DType::f32);
  poison_like({1}, dt);
}

Outputs clip_on(Device device, const Tensor& u, const Tensor& v, const Tensor& t, double w) {
  Tensor a = leaf_on(u, device), b = leaf_on(v, device), s = leaf_on(t, device);
  if (device.is_cuda()) poison_v3_outputs(u.size(0), u.size(1), u.dtype());
  Tensor loss = clip_loss(a, b, s);
  if (device.is_cuda()) poison_v3_outputs(u.size(0), u.size(1), u.dtype());
  (loss * w).backward();
  return {loss.detach(), a.grad(), b.grad(), s.grad()};
}

}  // namespace

TEST_CASE("cuda clip_loss v3: bf16 and f16 loss and gradients match the CPU op in f32 on the same inputs") {
  require_gpu();
  KernelVersionGuard guard("clip_loss", 3);
  const double w = 0.7;  // the incoming gradient
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (int64_t N : {1, 7, 197, 1000})
    for (int64_t d : {8, 100, 512}) shapes.push_back({N, d});
  shapes.push_back({4099, 64});  // past 4096, 3 rows into the last tile
  for (DType dt : {DType::bf16, DType::f16}) {
    const double tol = v3_tol(dt);
    for (auto [N, d] : shapes) {
      const Tensor u = unit_rows(N, d, dt), v = unit_rows(N, d, dt);
      for (double t : {0.0, std::log(100.0)}) {
        const Tensor ts = full(N == 7 ? Shape{1} : Shape{}, t, {.dtype = DType::f32});
        const double s = std::exp(t);
        const std::string name = std::string("clip_loss v3 ") + dtype_name(dt) + " N " + std::to_string(N) + " d " +
                                 std::to_string(d) + " s " + std::to_string(s);
        const Outputs want = clip_on(Device::cpu(), u.to(DType::f32), v.to(DType::f32), ts, w);
        const Outputs got = clip_on(kGpu, u, v, ts, w);
        REQUIRE(got.loss.device() == kGpu);
        CHECK(got.loss.dtype() == dt);
        CHECK(got.d_img.dtype() == dt);
        CHECK(got.d_txt.dtype() == dt);
        CHECK(got.d_scale.dtype() == DType::f32);
        REQUIRE(got.d_scale.shape() == ts.shape());
        check_close(got.loss, want.loss, tol, tol * std::max(1.0, s), name + " loss");
        check_close(got.d_img, want.d_img, tol, tol * w * s / double(N), name + " d image");
        check_close(got.d_txt, want.d_txt, tol, tol * w * s / double(N), name + " d text");
        // d t is summed from unrounded G in f32: tight, up to the f32 reference's own rounding.
        check_close(got.d_scale, want.d_scale, 1e-4, 1e-4 * 2.0 * w * std::max(1.0, s), name + " d logit_scale");
      }
    }
  }
}

TEST_CASE("cuda clip_loss v3: f32 and f64 embeddings are an error naming the op and the dtype") {
  require_gpu();
  KernelVersionGuard guard("clip_loss", 3);
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor u = unit_rows(5, 8, dt).to(kGpu), v = unit_rows(5, 8, dt).to(kGpu);
    const Tensor t = full({}, 1.0, {.dtype = dt, .device = kGpu});
    const std::string expected = std::string("clip_loss: version 3 (tensor cores) takes bf16 or f16 embeddings, got image ") +
                                 dtype_name(dt) + " [5,8]";
    try {
      clip_loss(u, v, t);
      FAIL("no error for " << dtype_name(dt));
    } catch (const Error& e) {
      CHECK_MESSAGE(std::string(e.what()).find(expected) != std::string::npos, e.what());
    }
  }
}

TEST_CASE("cuda clip_loss v3: the same bits on every run") {
  require_gpu();
  KernelVersionGuard guard("clip_loss", 3);
  for (DType dt : {DType::bf16, DType::f16}) {
    const int64_t N = 1000, d = 96;
    const Tensor u = unit_rows(N, d, dt), v = unit_rows(N, d, dt);
    const Tensor t = full({}, std::log(100.0), {.dtype = DType::f32});
    const Outputs a = clip_on(kGpu, u, v, t, 1.0), b = clip_on(kGpu, u, v, t, 1.0);
    auto bits = [](const Tensor& x) { return x.to(Device::cpu()).to(DType::f32).to_vector<float>(); };
    CHECK(bits(a.loss) == bits(b.loss));
    CHECK(bits(a.d_img) == bits(b.d_img));
    CHECK(bits(a.d_txt) == bits(b.d_txt));
    CHECK(bits(a.d_scale) == bits(b.d_scale));
  }
}
