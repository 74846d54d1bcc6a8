// The two benches mmg_bench runs (bench/main.cpp picks one): each adds its rows to the
// report, fills `meta` (device, baselines) for the JSON file, and returns the number of
// rows whose result check failed.
#pragma once
#include <nlohmann/json.hpp>

#include "bench/bench_options.h"
#include "bench/bench_report.h"

namespace mmg::bench {

// bench/cpu_bench.cpp: gemm, softmax, layer_norm, attention on the CPU's threads.
int run_cpu_bench(const BenchPlan& plan, const BenchOptions& opts, Report& report, nlohmann::json& meta);

// bench/cuda_bench.cpp: every CUDA kernel and version, against baselines measured in the
// same run. In a build without CUDA it throws OptionError.
int run_cuda_bench(const BenchPlan& plan, const BenchOptions& opts, Report& report, nlohmann::json& meta);

}  // namespace mmg::bench
