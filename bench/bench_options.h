// mmg_bench's options, and what they mean on this machine.
//
// add_bench_options declares them to CLI11, which checks the syntax (numbers, unknown
// flags) as it reads the command line into BenchOptions; resolve_options then checks what a parser cannot — a device
// that is not there, a kernel the chosen device's bench does not time, a version a kernel does not have — and throws
// OptionError with a message that says what exists. Pure logic (the GPU count and the kernel families come in as
// arguments), tested in tests/bench/test_bench_logic.cpp.
#pragma once
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/kernel_versions.h"

namespace mmg::bench {

struct BenchOptions {
  std::string device = "auto";  // auto, cpu, cuda, cuda:N
  std::string kernel;           // empty: every kernel of the device's bench
  int version = 0;              // 0: every version of each kernel
  std::string dtype = "all";    // inputs on CUDA: f32, bf16, f16 or all (see BenchPlan)
  std::string json_path;        // empty: no JSON file
  bool markdown = false;
  bool quick = false;
};

struct OptionError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The kernels each bench times, in the order it times them.
inline const std::vector<std::string>& cuda_bench_kernels() {
  static const std::vector<std::string> k = {"copy", "softmax",   "layer_norm", "elementwise",
                                             "gemm", "attention", "clip_loss"};
  return k;
}
inline const std::vector<std::string>& cpu_bench_kernels() {
  static const std::vector<std::string> k = {"gemm", "softmax", "layer_norm", "attention"};
  return k;
}

inline std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

inline bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// The kernel family (core/kernel_versions.h) of a bench kernel, or nullptr when it has one
// version (no family registered under its name).
inline const KernelFamily* family_of(const std::string& kernel, const std::vector<KernelFamily>& families) {
  for (const KernelFamily& f : families)
    if (f.name == kernel) return &f;
  return nullptr;
}

inline void add_bench_options(CLI::App& app, BenchOptions& o, const std::vector<KernelFamily>& families) {
  app.add_option("--device", o.device, "cpu, cuda, cuda:N or auto (a GPU when one is usable, else the CPU)")
      ->capture_default_str();
  app.add_option("--kernel", o.kernel,
                 "Only this kernel. CUDA: " + join(cuda_bench_kernels()) + "; CPU: " + join(cpu_bench_kernels()));
  std::string versions;
  for (const KernelFamily& f : families)
    versions += fmt::format("{}{} 1-{}", versions.empty() ? "" : ", ", f.name, f.versions.size());
  app.add_option("--version", o.version,
                 "Only this version of --kernel's family (CUDA; default: every version). Families: " + versions);
  app.add_option("--dtype", o.dtype,
                 "Inputs on CUDA: f32, bf16, f16 or all. softmax, layer_norm and attention time f32, bf16 and f16 "
                 "(attention v3 and v4: bf16 and f16 only); clip_loss f32 and bf16 by default, f16 when asked (v3: bf16 and "
                 "f16 only)")
      ->capture_default_str();
  app.add_option("--json", o.json_path, "Also write every row as JSON to this file");
  app.add_flag("--markdown", o.markdown, "Print the table as markdown (for bench/results/<date>-<gpu>.md)");
  app.add_flag("--quick", o.quick, "Fewer, smaller shapes and shorter timing (a smoke run)");
}

// What to run, once the options are checked.
struct BenchPlan {
  bool cuda = false;
  int device_index = 0;
  std::vector<std::string> kernels;  // in bench order
  int version = 0;                   // 0: every version
  std::vector<std::string> dtypes;            // for gemm's linear cases: f32, bf16
  std::vector<std::string> clip_dtypes;       // for clip_loss: f32, bf16 (f16 when asked)
  std::vector<std::string> row_dtypes;        // for softmax and layer_norm: f32, bf16, f16
  std::vector<std::string> attention_dtypes;  // for attention: f32, bf16, f16
};

// The dtypes each kernel can time (the others ignore --dtype: copy, elementwise and gemm
// have their own fixed sets).
inline const std::vector<std::string>& row_kernel_dtypes() {
  static const std::vector<std::string> d = {"f32", "bf16", "f16"};
  return d;
}
inline const std::vector<std::string>& matmul_kernel_dtypes() {
  static const std::vector<std::string> d = {"f32", "bf16"};
  return d;
}

// gpu_count: usable GPUs (0 without CUDA or without a GPU); why_no_gpu: cuda_status() ("no
// usable GPU: ..."), quoted when a GPU is asked for and none is usable.
inline BenchPlan resolve_options(const BenchOptions& o, int gpu_count, const std::string& why_no_gpu,
                                 const std::vector<KernelFamily>& families) {
  BenchPlan plan;
  // ---- device ----
  if (o.device == "auto") {
    plan.cuda = gpu_count > 0;
  } else if (o.device == "cpu") {
    plan.cuda = false;
  } else if (o.device == "cuda" || o.device.rfind("cuda:", 0) == 0) {
    if (o.device != "cuda") {
      const std::string digits = o.device.substr(5);
      if (digits.empty() || digits.size() > 3 ||
          !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
        throw OptionError(fmt::format("--device {}: expected cpu, cuda, cuda:N or auto", o.device));
      plan.device_index = std::stoi(digits);
    }
    if (gpu_count == 0) throw OptionError(fmt::format("--device {}: {}", o.device, why_no_gpu));
    if (plan.device_index >= gpu_count)
      throw OptionError(fmt::format("--device {}: this machine has {} GPU(s), cuda:0 to cuda:{}", o.device, gpu_count,
                                    gpu_count - 1));
    plan.cuda = true;
  } else {
    throw OptionError(fmt::format("--device {}: expected cpu, cuda, cuda:N or auto", o.device));
  }
  const std::vector<std::string>& known = plan.cuda ? cuda_bench_kernels() : cpu_bench_kernels();

  // ---- kernel ----
  if (o.kernel.empty()) {
    plan.kernels = known;
  } else if (contains(known, o.kernel)) {
    plan.kernels = {o.kernel};
  } else if (!plan.cuda && contains(cuda_bench_kernels(), o.kernel)) {
    throw OptionError(fmt::format("--kernel {}: the CPU bench times {} ({} is timed on CUDA only{})", o.kernel,
                                  join(known), o.kernel, gpu_count == 0 ? ", and no GPU is usable" : ""));
  } else {
    throw OptionError(fmt::format("--kernel {}: expected one of {}", o.kernel, join(known)));
  }

  // ---- version ----
  if (o.version != 0) {
    if (o.version < 0) throw OptionError(fmt::format("--version {}: versions count from 1", o.version));
    if (o.kernel.empty())
      throw OptionError(
          fmt::format("--version {} needs --kernel: each kernel family numbers its own versions", o.version));
    if (!plan.cuda)
      throw OptionError(fmt::format("--version {}: the CPU has one version of each kernel (versions are CUDA paths{})",
                                    o.version, gpu_count == 0 ? "; no GPU is usable" : ""));
    const KernelFamily* f = family_of(o.kernel, families);
    const int n = f ? static_cast<int>(f->versions.size()) : 1;
    if (o.version > n)
      throw OptionError(f ? fmt::format("--version {}: '{}' has versions 1 to {}", o.version, o.kernel, n)
                          : fmt::format("--version {}: '{}' has one version", o.version, o.kernel));
    plan.version = o.version;
  }

  // ---- dtype ----
  if (o.dtype == "all") {
    plan.dtypes = matmul_kernel_dtypes();
    plan.clip_dtypes = matmul_kernel_dtypes();
    plan.row_dtypes = row_kernel_dtypes();
    plan.attention_dtypes = row_kernel_dtypes();
  } else if (contains(row_kernel_dtypes(), o.dtype)) {
    // Without --kernel, the kernels that do not time the dtype simply time nothing (gemm's
    // linear cases have no f16). clip_loss times f16 when asked: v3 runs it on tensor cores,
    // v1 and v2 compute it in f32.
    if (contains(matmul_kernel_dtypes(), o.dtype)) plan.dtypes = {o.dtype};
    plan.clip_dtypes = {o.dtype};
    plan.row_dtypes = {o.dtype};
    plan.attention_dtypes = {o.dtype};
  } else {
    throw OptionError(fmt::format("--dtype {}: expected f32, bf16, f16 or all", o.dtype));
  }
  return plan;
}

// The versions of `kernel` this run times: the one asked for, else all of its family's
// (1 when it has no family).
inline std::vector<int> versions_to_run(const std::string& kernel, const BenchPlan& plan,
                                        const std::vector<KernelFamily>& families) {
  if (plan.version != 0) return {plan.version};
  const KernelFamily* f = family_of(kernel, families);
  std::vector<int> v;
  for (int i = 1; i <= (f ? static_cast<int>(f->versions.size()) : 1); ++i) v.push_back(i);
  return v;
}

}  // namespace mmg::bench
