// The CUDA bench: the device, its two ceilings measured first (copy bandwidth, bf16 GEMM
// rate), then each area of bench/cuda_bench.h, and the helpers they share.
#include "bench/benches.h"

#ifdef MMG_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>

#include "bench/cuda_bench.h"
#include "core/mmgrad.h"
#include "kernels/cuda/runtime.h"

namespace mmg::bench {

int CudaBench::sets_for(double set_bytes) const {
  size_t free_bytes = 0, total = 0;
  cuda::mem_info(device, &free_bytes, &total);
  return rotation_count(set_bytes, l2_bytes, quick ? 32 : 256, 0.4 * static_cast<double>(free_bytes));
}

void CudaBench::add(Row r) {
  if (check_failed(r)) ++failed_checks;
  report->add(std::move(r));
}

void CudaBench::add_gbps(Row r, double bytes) {
  r.rate = bytes / (r.ms * 1e-3) / 1e9;
  r.unit = "GB/s";
  r.fraction = r.rate / copy_gbps;
  r.baseline = "copy";
  add(std::move(r));
}

void CudaBench::add_tflops(Row r, double flops) {
  r.rate = flops / (r.ms * 1e-3) / 1e12;
  r.unit = "TFLOP/s";
  r.fraction = r.rate / bf16_tflops;
  r.baseline = "bf16 gemm";
  add(std::move(r));
}

Grads backward_through(const Tensor& out, const Tensor& g, const std::vector<Tensor>& leaves, bool retain) {
  const std::shared_ptr<Node>& node = out.impl()->grad_fn;
  MMG_CHECK(node != nullptr, "bench: the output has no recorded backward (do its inputs require grad?)");
  const bool fused =
      std::none_of(node->inputs.begin(), node->inputs.end(), [](const Edge& e) { return e.fn != nullptr; });
  if (fused) {
    NoGradGuard no_grad;
    return node->backward(g);
  }
  out.backward(g, retain);
  Grads grads;
  for (const Tensor& leaf : leaves) {
    grads.push_back(leaf.grad());
    Tensor(leaf).zero_grad();
  }
  return grads;
}

Tensor on_cpu(const Tensor& t) { return t.detach().to(Device::cpu()); }

double relative_error(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape()) return NAN;
  return relative_error(on_cpu(got).to_vector<double>(), want.to_vector<double>());
}

std::string check_all(const std::vector<std::pair<Tensor, Tensor>>& pairs, double tol) {
  double worst = 0;
  for (const auto& [got, want] : pairs) {
    const double e = relative_error(got, want);
    if (!(e <= worst)) worst = e;  // NaN sticks
  }
  return check_verdict(worst, tol);
}

bool run_case(CudaBench& b, const Row& like, const std::function<void()>& fn) {
  try {
    fn();
    return true;
  } catch (const Error& e) {
    // The message's first line: an out-of-memory error says how much was asked and held.
    std::string why = e.what();
    why = why.substr(0, why.find('\n'));
    cuda_synchronize(b.device);
    cuda_empty_cache(b.device);
    b.add(skipped_row(like, why));
    return false;
  }
}

std::string dims(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

int run_cuda_bench(const BenchPlan& plan, const BenchOptions& opts, Report& report, nlohmann::json& meta) {
  CudaBench b;
  b.plan = plan;
  b.families = kernel_families();
  b.report = &report;
  b.quick = opts.quick;
  b.device = plan.device_index;
  if (opts.quick) b.budget = TimingBudget{.warmup_ms = 20, .sample_ms = 0.5, .total_ms = 60, .min_samples = 5};
  cuda::DeviceGuard guard(b.device);

  int l2 = 0, sms = 0, major = 0, minor = 0;
  MMG_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, b.device));
  MMG_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, b.device));
  MMG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, b.device));
  MMG_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, b.device));
  b.l2_bytes = l2;
  size_t free_bytes = 0, total = 0;
  cuda::mem_info(b.device, &free_bytes, &total);
  const std::string name = cuda_device_name(b.device);
  report.note(fmt::format("mmgrad CUDA benchmarks on cuda:{}: {} (sm_{}{}, {} SMs, L2 {:.0f} MiB, {:.1f} GiB)",
                          b.device, name, major, minor, sms, l2 / 1048576.0, total / 1073741824.0));
  report.note("times: CUDA events, median of samples after warm-up, inputs rotated over more than twice the L2 size");

  manual_seed(0);
  measure_copy_bandwidth(b);
  report.note(fmt::format("copy bandwidth (cudaMemcpyAsync device to device, read + write): {:.0f} GB/s", b.copy_gbps));
  if (b.wants("gemm") || b.wants("attention") || b.wants("clip_loss")) {
    try {
      measure_bf16_gemm_rate(b);
      report.note(fmt::format("bf16 GEMM rate (cuBLASLt, f32 accumulation, 8192³, best algorithm): {:.0f} TFLOP/s",
                              b.bf16_tflops));
    } catch (const Error& e) {  // the TFLOP/s rows then go without their fraction
      report.note(fmt::format("bf16 GEMM rate: not measured ({})", e.what()));
      cuda_empty_cache(b.device);
    }
  }

  for (const std::string& k : plan.kernels) {
    if (k == "softmax")
      bench_softmax(b);
    else if (k == "layer_norm")
      bench_layer_norm(b);
    else if (k == "elementwise")
      bench_elementwise(b);
    else if (k == "gemm")
      bench_gemm(b);
    else if (k == "attention")
      bench_attention(b);
    else if (k == "clip_loss")
      bench_clip_loss(b);
    cuda_synchronize(b.device);
    cuda_empty_cache(b.device);
  }

  meta = {{"device", fmt::format("cuda:{}", b.device)},
          {"gpu", name},
          {"compute_capability", fmt::format("{}.{}", major, minor)},
          {"sms", sms},
          {"l2_bytes", l2},
          {"memory_bytes", total},
          {"copy_gbps", number_or_null(b.copy_gbps)},
          {"bf16_gemm_tflops", number_or_null(b.bf16_tflops)},
          {"quick", opts.quick}};
  return b.failed_checks;
}

}  // namespace mmg::bench

#else  // a build without CUDA: resolve_options never picks this bench, since no GPU is usable

namespace mmg::bench {
int run_cuda_bench(const BenchPlan&, const BenchOptions&, Report&, nlohmann::json&) {
  throw OptionError("this build has no CUDA (nvcc was not found when it was configured; MMG_CUDA)");
}
}  // namespace mmg::bench

#endif  // MMG_WITH_CUDA
