// The CUDA half of mmg_bench: what every area shares (bench/cuda_bench.cpp) and the areas,
// one file each:
//   cuda_memory_bound.cpp  copy, softmax, layer_norm, elementwise: GB/s of the bytes that
//                          must move, as a fraction of the copy bandwidth measured first
//   cuda_gemm.cpp          the engine's gemm against cuBLASLt's best (f32, TF32, bf16), and
//                          the bf16 GEMM rate that attention and clip_loss are measured against
//   cuda_attention.cpp     every version of "attention", forward, backward, both
//   cuda_clip_loss.cpp     every version of "clip_loss", with its peak memory
// Each case is checked against the CPU before it is timed; a case that cannot run (out of
// memory, say) is a row that says why, and the bench goes on.
#pragma once
#ifdef MMG_WITH_CUDA
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_options.h"
#include "bench/bench_report.h"
#include "bench/cuda_timer.h"
#include "core/autograd.h"

namespace mmg::bench {

struct CudaBench {
  BenchPlan plan;
  std::vector<KernelFamily> families;
  Report* report = nullptr;
  bool quick = false;
  int device = 0;
  double l2_bytes = 0;
  double copy_gbps = NAN;    // cudaMemcpyAsync device to device, read + write bytes per second
  double bf16_tflops = NAN;  // cuBLASLt bf16 GEMM (f32 accumulation) at 8192³, best algorithm
  TimingBudget budget;
  int failed_checks = 0;

  bool wants(const std::string& kernel) const { return contains(plan.kernels, kernel); }
  std::vector<int> versions(const std::string& kernel) const { return versions_to_run(kernel, plan, families); }
  bool has_family(const std::string& kernel) const { return family_of(kernel, families) != nullptr; }
  // Input sets to rotate among for sets of set_bytes (rotation_count over the L2 size, within
  // 40% of the device's free memory).
  int sets_for(double set_bytes) const;
  // Prints and keeps the row; counts a failed check.
  void add(Row r);
  // Fills rate and fraction from bytes moved per run and the copy bandwidth.
  void add_gbps(Row r, double bytes);
  // Fills rate and fraction from FLOPs per run and the bf16 GEMM rate.
  void add_tflops(Row r, double flops);
};

// ---- the areas ----
void measure_copy_bandwidth(CudaBench& b);  // sets copy_gbps; rows when "copy" is asked for
void bench_softmax(CudaBench& b);
void bench_layer_norm(CudaBench& b);
void bench_elementwise(CudaBench& b);
void measure_bf16_gemm_rate(CudaBench& b);  // sets bf16_tflops
void bench_gemm(CudaBench& b);
void bench_attention(CudaBench& b);
void bench_clip_loss(CudaBench& b);

// ---- shared helpers (bench/cuda_bench.cpp) ----

// ‖got − want‖ / ‖want‖ with got on the device and want on the CPU.
double relative_error(const Tensor& got, const Tensor& want);
// "ok (rel ...)" or "FAILED: ..." for the worst of several (got, want) pairs.
std::string check_all(const std::vector<std::pair<Tensor, Tensor>>& pairs, double tol);

// The gradients of `out` (computed from `leaves`, in the op's input order) for incoming
// gradient g. When out's op is one recorded node over leaves (a fused op: softmax,
// layer_norm, attention, ...), its backward closure is called directly: exactly the
// backward kernels, as autograd would run them, with no copy into .grad. Otherwise (an op
// composed of several) autograd runs it, keeping the graph when `retain`, and the leaves'
// .grad is handed back and dropped.
Grads backward_through(const Tensor& out, const Tensor& g, const std::vector<Tensor>& leaves, bool retain);

// A copy on the CPU, detached.
Tensor on_cpu(const Tensor& t);

// Runs fn; an mmg::Error (out of memory, a shape a version refuses) becomes a skipped row
// built from `like`, and the device's cache is emptied so the next case starts clean.
// Returns false when it skipped.
bool run_case(CudaBench& b, const Row& like, const std::function<void()>& fn);

// "[12608,768]"
std::string dims(const std::vector<int64_t>& d);

}  // namespace mmg::bench
#endif  // MMG_WITH_CUDA
