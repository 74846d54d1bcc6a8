// clip_loss and hinge_ranking_loss on CUDA, every kernel version (v1: composed of ops, the
// N×N scores stored; v2: the fused tiled kernels of kernels/cuda/contrastive.cu), against the
// CPU op: the loss and every gradient (d image, d text, d logit_scale) on fresh random
// inputs, the CUDA outputs poisoned first; N = 1, 2, 7, 257, 1000 (1 and tile remainders),
// d = 1, 33, 512; logit scale 1 and 100. Then gradcheck in f64 on the device, the memory of
// v2 at N = 16384 (O(N·d), where v1 holds the N×N logits), run-to-run determinism, bf16.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

// Rows of unit length, as the models pass them.
Tensor unit_rows(int64_t N, int64_t d, DType dt) {
  Tensor x = uniform({N, d}, DType::f64, -1, 1);
  return div(x, norm(x, 2.0, {1}, true)).to(dt);
}

// Entries k/16, k in [−4, 4]: every score ⟨u_i, v_j⟩ is a multiple of 1/256 below 2^15/256 in
// size, exact in f32 on any device and in any order of summation, and with margin 0.2 every
// hinge's argument m − S_ii + S_ij stays at least 0.2/256 away from its kink. So the CPU and
// the GPU (and finite differences) take every kink alike, which rounding noise in f32 scores
// would not guarantee over a million pairs.
Tensor dyadic_rows(int64_t N, int64_t d, DType dt) {
  return (integers({N, d}, DType::i64, -4, 5).to(DType::f64) * (1.0 / 16.0)).to(dt);
}

std::string case_name(const std::string& op, int version, DType dt, int64_t N, int64_t d) {
  return op + " v" + std::to_string(version) + " " + dtype_name(dt) + " N " + std::to_string(N) + " d " +
         std::to_string(d);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector<double>()) m = std::max(m, std::abs(x));
  return m;
}

// got ≈ want to `tol` relative to the larger of |want| elementwise and the tensor's largest
// |want| (a normwise check: the rounding of a sum is relative to its terms, not its
// result), plus `floor` for results that are 0 or cancel.
void check_close(const Tensor& got, const Tensor& want, double tol, double floor, const std::string& what) {
  check_parity(got, want, tol, tol * max_abs(want) + floor, what);
}

struct Outputs {
  Tensor loss, d_img, d_txt, d_scale;
};

// A fresh leaf copy of x on `device` that requires grad (a CPU copy never shares storage
// with x, so gradients never pile up across runs).
Tensor leaf_on(const Tensor& x, Device device) {
  Tensor t = device.is_cpu() ? x.clone().detach() : x.to(device).detach();
  t.requires_grad_(true);
  return t;
}

// Poisons the size classes of everything a pair loss allocates on the GPU: [N, d] gradients,
// [N] lse and per-row scratch (T and f64), one-element loss and d t.
void poison_pair_outputs(int64_t N, int64_t d, DType dt) {
  poison_like({N, d}, dt);
  poison_like({N}, dt);
  poison_like({2 * N}, DType::f64);
  poison_like({N}, DType::f64);
  poison_like({1}, dt);
}

// The op and its backward of w·loss (so the kernels see an incoming gradient other than 1).
Outputs clip_on(Device device, const Tensor& u, const Tensor& v, const Tensor& t, double w) {
  Tensor a = leaf_on(u, device), b = leaf_on(v, device), s = leaf_on(t, device);
  if (device.is_cuda()) poison_pair_outputs(u.size(0), u.size(1), u.dtype());
  Tensor loss = clip_loss(a, b, s);
  if (device.is_cuda()) poison_pair_outputs(u.size(0), u.size(1), u.dtype());
  (loss * w).backward();
  return {loss.detach(), a.grad(), b.grad(), s.grad()};
}

Outputs hinge_on(Device device, const Tensor& u, const Tensor& v, double margin, double w) {
  Tensor a = leaf_on(u, device), b = leaf_on(v, device);
  if (device.is_cuda()) poison_pair_outputs(u.size(0), u.size(1), u.dtype());
  Tensor loss = hinge_ranking_loss(a, b, margin);
  if (device.is_cuda()) poison_pair_outputs(u.size(0), u.size(1), u.dtype());
  (loss * w).backward();
  return {loss.detach(), a.grad(), b.grad(), Tensor()};
}

double pair_tol(DType dt) { return dt == DType::f64 ? 1e-11 : 2e-5; }

const std::vector<int64_t> kSizes = {1, 2, 7, 257, 1000};
const std::vector<int64_t> kDims = {1, 33, 512};

}  // namespace

TEST_CASE("cuda clip_loss, every version: loss, d image, d text and d logit_scale match the CPU op") {
  require_gpu();
  const double w = 0.7;  // the incoming gradient
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = pair_tol(dt);
    for (int64_t N : kSizes) {
      for (int64_t d : kDims) {
        const Tensor u = unit_rows(N, d, dt), v = unit_rows(N, d, dt);
        for (double t : {0.0, std::log(100.0)}) {
          // One case keeps logit_scale as [1] (the shape a Parameter has), the others 0-d.
          const Shape scale_shape = N == 7 ? Shape{1} : Shape{};
          const Tensor ts = full(scale_shape, t, {.dtype = dt});
          const double s = std::exp(t);
          const Outputs want = clip_on(Device::cpu(), u, v, ts, w);
          for (int version : {1, 2}) {
            KernelVersionGuard guard("clip_loss", version);
            const std::string name = case_name("clip_loss", version, dt, N, d) + " s " + std::to_string(s);
            const Outputs got = clip_on(kGpu, u, v, ts, w);
            REQUIRE(got.loss.device() == kGpu);
            // The loss is a difference of terms of size ~s; d t is bounded by 2·w·s.
            check_close(got.loss, want.loss, tol, tol * std::max(1.0, s), name + " loss");
            check_close(got.d_img, want.d_img, tol, tol * w * s / double(N), name + " d image");
            check_close(got.d_txt, want.d_txt, tol, tol * w * s / double(N), name + " d text");
            REQUIRE(got.d_scale.shape() == scale_shape);
            check_close(got.d_scale, want.d_scale, tol, tol * 2.0 * w * std::max(1.0, s), name + " d logit_scale");
          }
        }
      }
    }
  }
}

TEST_CASE("cuda hinge_ranking_loss, every version: loss, d image and d text match the CPU op") {
  require_gpu();
  const double w = 1.3;
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = pair_tol(dt);
    for (int64_t N : kSizes) {
      for (int64_t d : kDims) {
        // f32: scores exact on both devices (see dyadic_rows); f64: rounding far below any kink.
        const Tensor u = dt == DType::f32 ? dyadic_rows(N, d, dt) : unit_rows(N, d, dt);
        const Tensor v = dt == DType::f32 ? dyadic_rows(N, d, dt) : unit_rows(N, d, dt);
        for (double margin : {0.2, 1.5}) {
          const Outputs want = hinge_on(Device::cpu(), u, v, margin, w);
          for (int version : {1, 2}) {
            KernelVersionGuard guard("hinge_ranking_loss", version);
            const std::string name =
                case_name("hinge_ranking_loss", version, dt, N, d) + " margin " + std::to_string(margin);
            const Outputs got = hinge_on(kGpu, u, v, margin, w);
            REQUIRE(got.loss.device() == kGpu);
            check_close(got.loss, want.loss, tol, tol, name + " loss");
            check_close(got.d_img, want.d_img, tol, tol * w / double(N), name + " d image");
            check_close(got.d_txt, want.d_txt, tol, tol * w / double(N), name + " d text");
          }
        }
      }
    }
  }
}

TEST_CASE("cuda clip_loss and hinge_ranking_loss, every version: gradcheck in f64 on the device") {
  require_gpu();
  for (int version : {1, 2}) {
    KernelVersionGuard clip_version("clip_loss", version);
    KernelVersionGuard hinge_version("hinge_ranking_loss", version);
    // 66 rows: two tiles of the fused kernels, the second with 2 rows.
    for (auto [N, d] : std::vector<std::pair<int64_t, int64_t>>{{1, 3}, {5, 4}, {66, 3}}) {
      const std::string name = "v" + std::to_string(version) + " N " + std::to_string(N) + " d " + std::to_string(d);
      const Tensor u = unit_rows(N, d, DType::f64).to(kGpu), v = unit_rows(N, d, DType::f64).to(kGpu);
      const Tensor t = full({}, 1.0, {.dtype = DType::f64, .device = kGpu});
      GradcheckResult clip = gradcheck([](const std::vector<Tensor>& a) { return clip_loss(a[0], a[1], a[2]); },
                                       {u, v, t});
      CHECK_MESSAGE(clip.ok, "clip_loss " << name << ": " << clip.message);
      CHECK(clip.elements_checked == 2 * N * d + 1);
      // Dyadic inputs: no finite-difference step of 1e-6 crosses a kink.
      const Tensor hu = dyadic_rows(N, d, DType::f64).to(kGpu), hv = dyadic_rows(N, d, DType::f64).to(kGpu);
      GradcheckResult hinge = gradcheck(
          [](const std::vector<Tensor>& a) { return hinge_ranking_loss(a[0], a[1], 0.2); }, {hu, hv});
      CHECK_MESSAGE(hinge.ok, "hinge_ranking_loss " << name << ": " << hinge.message);
    }
  }
}

TEST_CASE("cuda clip_loss v2: memory O(N·d) at N = 16384, where v1 holds the N×N logits") {
  require_gpu();
  const int64_t N = 16384, d = 64;
  const size_t logits_bytes = size_t(N) * size_t(N) * sizeof(float);  // 1 GiB
  const size_t rows_bytes = size_t(N) * size_t(d) * sizeof(float);    // 4 MiB: one [N, d]
  const Tensor u = unit_rows(N, d, DType::f32).to(kGpu), v = unit_rows(N, d, DType::f32).to(kGpu);
  const Tensor t = full({}, std::log(100.0), {.dtype = DType::f32, .device = kGpu});
  // The bytes allocated beyond what was live before, at the peak of forward + backward.
  auto peak_of = [&](int version, Outputs* out) {
    KernelVersionGuard guard("clip_loss", version);
    Tensor a = u.detach(), b = v.detach(), s = t.detach();  // fresh leaves on the same storage
    a.requires_grad_(true);
    b.requires_grad_(true);
    s.requires_grad_(true);
    cuda_synchronize(0);
    const size_t before = cuda_memory_stats(0).allocated;
    cuda_reset_peak_memory(0);
    Tensor loss = clip_loss(a, b, s);
    loss.backward();
    cuda_synchronize(0);
    *out = {loss.detach(), a.grad(), b.grad(), s.grad()};
    return cuda_memory_stats(0).peak_allocated - before;
  };
  Outputs fused, composed;
  const size_t fused_peak = peak_of(2, &fused);
  const size_t composed_peak = peak_of(1, &composed);
  MESSAGE("N " << N << " d " << d << ": peak beyond the inputs " << fused_peak / 1048576.0 << " MiB fused (v2), "
               << composed_peak / 1048576.0 << " MiB composed (v1); the logits are " << logits_bytes / 1048576.0
               << " MiB");
  CHECK(fused_peak <= 12 * rows_bytes);        // a few [N, d] gradients and O(N) rows
  CHECK(fused_peak * 16 <= logits_bytes);      // far below the N×N matrix
  CHECK(composed_peak >= logits_bytes);        // what the test would see if v2 stored it
  // And at this size the two versions agree.
  const double tol = 2e-5;
  check_close(fused.loss, composed.loss, tol, tol * 100.0, "N 16384 loss, v2 against v1");
  check_close(fused.d_img, composed.d_img, tol, tol * 100.0 / double(N), "N 16384 d image, v2 against v1");
  check_close(fused.d_txt, composed.d_txt, tol, tol * 100.0 / double(N), "N 16384 d text, v2 against v1");
  check_close(fused.d_scale, composed.d_scale, tol, tol * 200.0, "N 16384 d logit_scale, v2 against v1");
}

TEST_CASE("cuda clip_loss and hinge_ranking_loss v2: the same bits on every run") {
  require_gpu();
  KernelVersionGuard clip_version("clip_loss", 2);
  KernelVersionGuard hinge_version("hinge_ranking_loss", 2);
  const int64_t N = 1000, d = 96;
  const Tensor u = unit_rows(N, d, DType::f32), v = unit_rows(N, d, DType::f32);
  const Tensor t = full({}, std::log(100.0), {.dtype = DType::f32});
  const Outputs a = clip_on(kGpu, u, v, t, 1.0), b = clip_on(kGpu, u, v, t, 1.0);
  CHECK(a.loss.to_vector<float>() == b.loss.to_vector<float>());
  CHECK(a.d_img.to_vector<float>() == b.d_img.to_vector<float>());
  CHECK(a.d_txt.to_vector<float>() == b.d_txt.to_vector<float>());
  CHECK(a.d_scale.to_vector<float>() == b.d_scale.to_vector<float>());
  const Outputs c = hinge_on(kGpu, u, v, 0.2, 1.0), e = hinge_on(kGpu, u, v, 0.2, 1.0);
  CHECK(c.loss.to_vector<float>() == e.loss.to_vector<float>());
  CHECK(c.d_img.to_vector<float>() == e.d_img.to_vector<float>());
  CHECK(c.d_txt.to_vector<float>() == e.d_txt.to_vector<float>());
}

TEST_CASE("cuda clip_loss and hinge_ranking_loss v2: bf16 inputs compute in f32 and come back in bf16") {
  require_gpu();
  KernelVersionGuard clip_version("clip_loss", 2);
  KernelVersionGuard hinge_version("hinge_ranking_loss", 2);
  const int64_t N = 70, d = 40;
  const Tensor u = unit_rows(N, d, DType::bf16), v = unit_rows(N, d, DType::bf16);
  const Tensor t = full({}, 2.6592, {.dtype = DType::f32});  // an f32 scale beside bf16 embeddings
  const Outputs want = clip_on(Device::cpu(), u, v, t, 1.0), got = clip_on(kGpu, u, v, t, 1.0);
  CHECK(got.loss.dtype() == DType::bf16);
  CHECK(got.d_img.dtype() == DType::bf16);
  CHECK(got.d_scale.dtype() == DType::f32);
  check_close(got.loss, want.loss, 1e-2, 1e-2, "clip_loss bf16 loss");
  check_close(got.d_img, want.d_img, 1e-2, 0.0, "clip_loss bf16 d image");
  check_close(got.d_txt, want.d_txt, 1e-2, 0.0, "clip_loss bf16 d text");
  check_close(got.d_scale, want.d_scale, 1e-4, 1e-4, "clip_loss bf16 d logit_scale (f32)");
  const Tensor hu = dyadic_rows(N, d, DType::bf16), hv = dyadic_rows(N, d, DType::bf16);  // exact in bf16
  const Outputs hwant = hinge_on(Device::cpu(), hu, hv, 0.2, 1.0), hgot = hinge_on(kGpu, hu, hv, 0.2, 1.0);
  CHECK(hgot.loss.dtype() == DType::bf16);
  check_close(hgot.loss, hwant.loss, 1e-2, 1e-2, "hinge bf16 loss");
  check_close(hgot.d_img, hwant.d_img, 1e-2, 0.0, "hinge bf16 d image");
  check_close(hgot.d_txt, hwant.d_txt, 1e-2, 0.0, "hinge bf16 d text");
}
