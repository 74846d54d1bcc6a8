// The contrastive loss on CUDA: every version of the "clip_loss" family, through the op
// clip_loss(img, txt, logit_scale) on device tensors, at N = 1k … 32k pairs of d = 512.
//
// Rows: forward, and forward + backward, in TFLOP/s (2·N²·d forward, 4·N²·d backward:
// bench/bench_math.h) as a fraction of the bf16 GEMM rate, with the peak device memory
// of one run above its inputs (the caching allocator's statistics, core/cuda_memory.h): a
// composed loss holds N×N logits (4.3 GB at N = 32k in f32), a fused one O(N·d).
// The result is checked against the CPU op up to N = 8192, and for being finite beyond.
// --dtype: f32 and bf16 by default, f16 when asked; v3 (tensor cores) takes bf16 and f16 only
// and gets a row saying so for f32.
#ifdef MMG_WITH_CUDA
#include <cmath>
#include <optional>

#include "bench/cuda_bench.h"

namespace mmg::bench {

static constexpr int64_t kDim = 512;
static constexpr int64_t kLargestChecked = 8192;  // the CPU reference beyond costs seconds

// "ok (finite)" when every value of every tensor is finite, else a failure.
static std::string check_finite(const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts)
    for (double x : on_cpu(t).to_vector<double>())
      if (!std::isfinite(x)) return "FAILED: a non-finite loss or gradient";
  return "ok (finite; CPU reference up to N 8192)";
}

// One N, one dtype: every version.
static void bench_n(CudaBench& b, int64_t N, const std::string& dtype_name) {
  const Device dev = Device::cuda(b.device);
  const DType dt = dtype_name == "bf16" ? DType::bf16 : (dtype_name == "f16" ? DType::f16 : DType::f32);
  // Embeddings of norm about 1, as a model's normalised ones; logit scale ln(1/0.07), CLIP's start.
  const double unit = 1.0 / std::sqrt(static_cast<double>(kDim));
  Tensor img = (randn({N, kDim}, {.device = dev}) * unit).to(dt),
         txt = (randn({N, kDim}, {.device = dev}) * unit).to(dt);
  Tensor scale = full({}, std::log(1 / 0.07), {.device = dev});
  const int n = b.sets_for(bytes_of({img, txt}));
  const auto sets = rotating_sets({img, txt, scale}, n);
  std::vector<std::vector<Tensor>> leaves;
  for (const auto& s : sets)
    leaves.push_back({s[0].detach().requires_grad_(), s[1].detach().requires_grad_(), s[2].detach().requires_grad_()});

  // The CPU reference, where it is affordable.
  Tensor loss_ref;
  Grads grads_ref;
  if (N <= kLargestChecked) {
    Tensor i0 = on_cpu(img).requires_grad_(), t0 = on_cpu(txt).requires_grad_(), s0 = on_cpu(scale).requires_grad_();
    loss_ref = clip_loss(i0, t0, s0);
    loss_ref.backward();
    grads_ref = {i0.grad(), t0.grad(), s0.grad()};
  }
  const double tol = dt == DType::f32 ? 2e-3 : 3e-2;
  auto check = [&](const Tensor& loss, const Grads& grads) {
    if (!loss_ref.defined()) return check_finite({loss, grads[0], grads[1], grads[2]});
    return check_all(
        {{loss, loss_ref.detach()}, {grads[0], grads_ref[0]}, {grads[1], grads_ref[1]}, {grads[2], grads_ref[2]}}, tol);
  };

  const std::string shape = fmt::format("N{} d{}", N, kDim);
  const nlohmann::json params = {{"N", N}, {"d", kDim}};
  for (int version : b.versions("clip_loss")) {
    if (version == 3 && dt != DType::bf16 && dt != DType::f16) {  // tensor cores: 16-bit inputs only
      Row r("clip_loss", "clip", shape, params);
      r.version = version;
      r.dtype = dtype_name;
      b.add(skipped_row(r, "v3 takes bf16 or f16 inputs"));
      continue;
    }
    KernelVersionGuard guard("clip_loss", version);
    auto row = [&](Direction d) {
      Row r("clip_loss", "clip", shape, params);
      r.version = version;
      r.dtype = dtype_name;
      r.direction = d;
      if (N >= 8192 && d == Direction::fwd_bwd) r.goal = "≥ 2× PyTorch composed (torch_compare.py), O(N·d) memory";
      return r;
    };
    auto loss_of = [&](const std::vector<Tensor>& s) { return clip_loss(s[0], s[1], s[2]); };
    auto grads_of = [&](int s) {
      const std::vector<Tensor>& l = leaves[s];
      return backward_through(loss_of(l), ones({}, {.dtype = dt, .device = dev}), l, false);
    };
    // Peak memory of fn above what is allocated before it.
    auto peak_of = [&](const std::function<void()>& fn) {
      cuda_synchronize(b.device);
      const size_t before = cuda_memory_stats(b.device).allocated;
      cuda_reset_peak_memory(b.device);
      fn();
      cuda_synchronize(b.device);
      return static_cast<double>(cuda_memory_stats(b.device).peak_allocated - before);
    };

    Row fwd = row(Direction::fwd);
    run_case(b, fwd, [&] {
      NoGradGuard no_grad;
      fwd.peak_bytes = peak_of([&] { loss_of(sets[0]); });
      fwd.note = fmt::format("peak {:.0f} MiB above inputs", *fwd.peak_bytes / 1048576.0);
      fwd.ms = time_on_device([&](int s) { loss_of(sets[s]); }, n, b.budget).ms;
      b.add_tflops(fwd, clip_loss_flops(N, kDim, Direction::fwd));
    });
    cuda_empty_cache(b.device);

    Row both = row(Direction::fwd_bwd);
    run_case(b, both, [&] {
      Tensor loss;
      Grads grads;
      both.peak_bytes = peak_of([&] {
        loss = loss_of(leaves[0]);
        grads = backward_through(loss, ones({}, {.dtype = dt, .device = dev}), leaves[0], false);
      });
      both.check = check(loss, grads);  // after the peak: the check's copies are not the loss's
      loss = Tensor();
      grads.clear();
      both.note = fmt::format("peak {:.0f} MiB above inputs", *both.peak_bytes / 1048576.0);
      both.ms = time_on_device([&](int s) { grads_of(s); }, n, b.budget).ms;
      b.add_tflops(both, clip_loss_flops(N, kDim, Direction::fwd_bwd));
    });
    cuda_empty_cache(b.device);
  }
}

void bench_clip_loss(CudaBench& b) {
  if (!b.has_family("clip_loss")) {
    b.report->note("clip_loss: skipped, no kernel family 'clip_loss' is registered (core/kernel_versions.cpp)");
    return;
  }
  const std::vector<int64_t> sizes =
      b.quick ? std::vector<int64_t>{1024, 4096} : std::vector<int64_t>{1024, 4096, 8192, 32768};
  for (int64_t N : sizes)
    for (const std::string& dt : b.plan.clip_dtypes) {
      Row like("clip_loss", "clip", fmt::format("N{} d{}", N, kDim));
      like.dtype = dt;
      run_case(b, like, [&] { bench_n(b, N, dt); });
      cuda_empty_cache(b.device);
    }
}

}  // namespace mmg::bench
#endif  // MMG_WITH_CUDA
