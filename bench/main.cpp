// mmg_bench (`mmg bench`, `make bench`): kernel benchmarks, printed as a table.
//
// On a machine with a usable GPU it times the CUDA kernels (bench/cuda_bench.h), else the
// CPU ops (bench/cpu_bench.cpp); --device picks one. Every rate stands beside a baseline
// measured in the same run — copy bandwidth for the memory-bound kernels, cuBLASLt for
// GEMM, the bf16 GEMM rate for attention and the contrastive loss — and beside the issue's
// goal where there is one. Goals are printed, never asserted.
//
// Exit status: 0; 1 for bad options, no usable GPU where one was asked for, or an error;
// 3 when a kernel's result failed its check against the CPU (the table says which).
#include <cstdio>
#include <fstream>

#include "bench/bench_options.h"
#include "bench/bench_report.h"
#include "bench/benches.h"
#include "core/mmgrad.h"

using namespace mmg;
using namespace mmg::bench;

int main(int argc, char** argv) {
  CLI::App app{"mmg_bench: kernel benchmarks against baselines measured in the same run"};
  BenchOptions o;
  add_bench_options(app, o, kernel_families());
  CLI11_PARSE(app, argc, argv);

  try {
    const BenchPlan plan = resolve_options(o, cuda_device_count(), cuda_status(), kernel_families());
    // Open the JSON file first: a path that cannot be written fails before the long run.
    std::ofstream json_file;
    if (!o.json_path.empty()) {
      json_file.open(o.json_path);
      if (!json_file) throw OptionError(fmt::format("--json {}: cannot open it for writing", o.json_path));
    }
    Report report(o.markdown);
    nlohmann::json meta;
    const int failed = plan.cuda ? run_cuda_bench(plan, o, report, meta) : run_cpu_bench(plan, o, report, meta);
    report.finish();
    if (json_file.is_open()) {
      json_file << report.json(meta).dump(1) << "\n";
      json_file.close();
      if (!json_file) throw OptionError(fmt::format("--json {}: writing it failed", o.json_path));
    }
    if (failed > 0) {
      std::fprintf(stderr, "mmg_bench: %d row(s) failed their check against the CPU (see the table)\n", failed);
      return 3;
    }
    return 0;
  } catch (const OptionError& e) {
    std::fprintf(stderr, "error: mmg bench: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: mmg bench: %s\n", e.what());
    return 1;
  }
}
