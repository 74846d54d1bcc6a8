// Timing on a CUDA device: events around the work, warm-up, the median of many samples, and
// input sets rotated so that the L2 cache does not serve them (/work/shared/PERFORMANCE.md,
// "Timing").
//
//   Timing t = time_on_device([&](int set) { softmax(xs[set], -1); }, xs.size(), budget);
//
// run(set) queues one run of the work on input set `set` (the sets are rotated: 0, 1, ...,
// n−1, 0, ...) on the engine's compute stream of the current device, where every op and
// raw kernel of the engine queues its work. The events are recorded on that stream, so a
// sample is the device time between them, whatever the host did meanwhile.
//
// A sample spans `reps` consecutive runs (reps chosen so that a sample lasts at least
// sample_ms): with a short kernel the host queues launches faster than the device runs
// them, and the device never waits for the host inside a sample. Samples follow each other
// without a synchronisation; the host reads the events once, at the end.
#pragma once
#ifdef MMG_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "bench/bench_math.h"
#include "core/mmgrad.h"
#include "kernels/cuda/check.cuh"

namespace mmg::bench {

struct TimingBudget {
  double warmup_ms = 50;   // device time spent before the samples (clocks up, caches built)
  double sample_ms = 1.0;  // a sample spans at least this (several runs of a short kernel)
  double total_ms = 300;   // device time of all samples together, roughly
  int min_samples = 10;
  int max_samples = 200;
};

struct Timing {
  double ms = 0;    // median time of one run
  int samples = 0;  // samples taken
  int reps = 0;     // runs per sample
};

// A CUDA event, destroyed with its scope.
class Event {
 public:
  Event() { MMG_CUDA_CHECK(cudaEventCreate(&e_)); }
  ~Event() { cudaEventDestroy(e_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s) { MMG_CUDA_CHECK(cudaEventRecord(e_, s)); }
  void wait() { MMG_CUDA_CHECK(cudaEventSynchronize(e_)); }
  // Milliseconds from `start` to this event (both recorded and done).
  float since(const Event& start) const {
    float ms = 0;
    MMG_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
    return ms;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

inline Timing time_on_device(const std::function<void(int)>& run, int sets, const TimingBudget& budget) {
  cudaStream_t stream = cuda::current_stream();
  int next = 0;
  auto once = [&] {
    run(next);
    next = (next + 1) % std::max(1, sets);
  };
  // The first runs pay for module loading, cuBLASLt's heuristics and the allocator's first
  // blocks; then the time of one run, to size the warm-up and the samples.
  auto measure = [&](int runs) {
    Event a, b;
    a.record(stream);
    for (int i = 0; i < runs; ++i) once();
    b.record(stream);
    b.wait();
    return static_cast<double>(b.since(a)) / runs;
  };
  once();  // the first run of each kernel loads its module: kept out of every estimate
  MMG_CUDA_CHECK(cudaStreamSynchronize(stream));
  double run_ms = measure(2);
  const int warm = std::min(1000, static_cast<int>(budget.warmup_ms / std::max(run_ms, 1e-3)));
  if (warm > 0) run_ms = measure(warm);

  Timing t;
  t.reps = reps_per_sample(run_ms, budget.sample_ms, 1000);
  const double sample = run_ms * t.reps;
  t.samples =
      std::clamp(static_cast<int>(budget.total_ms / std::max(sample, 1e-3)), budget.min_samples, budget.max_samples);
  std::vector<Event> start(t.samples), stop(t.samples);
  for (int s = 0; s < t.samples; ++s) {
    start[s].record(stream);
    for (int i = 0; i < t.reps; ++i) once();
    stop[s].record(stream);
  }
  stop.back().wait();
  std::vector<double> per_run(t.samples);
  for (int s = 0; s < t.samples; ++s) per_run[s] = static_cast<double>(stop[s].since(start[s])) / t.reps;
  t.ms = median(per_run);
  return t;
}

// `first` and n − 1 copies of it in memory of their own (clones on the device): distinct
// buffers for the rotation. The values repeat, which does not matter to the timing; each
// is random, never zeros.
inline std::vector<std::vector<Tensor>> rotating_sets(const std::vector<Tensor>& first, int n) {
  std::vector<std::vector<Tensor>> sets = {first};
  for (int i = 1; i < n; ++i) {
    std::vector<Tensor> copy;
    for (const Tensor& t : first) copy.push_back(t.defined() ? t.detach().clone() : Tensor());
    sets.push_back(std::move(copy));
  }
  return sets;
}

inline double bytes_of(const std::vector<Tensor>& set) {
  double b = 0;
  for (const Tensor& t : set)
    if (t.defined()) b += static_cast<double>(t.numel()) * static_cast<double>(dtype_size(t.dtype()));
  return b;
}

}  // namespace mmg::bench
#endif  // MMG_WITH_CUDA
