// CUDA tests skip themselves, visibly, where no GPU is usable: the test prints why and
// exits with code 77, which CTest reports as "Skipped" (SKIP_RETURN_CODE in CMakeLists).
//
// The helpers below serve the parity tests: every CUDA op is run on fresh random inputs
// (a new seed per run, printed with any failure) against the same op on the CPU, with its
// output memory poisoned with NaN first so that an element the kernel forgets to write
// cannot pass.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/mmgrad.h"

namespace mmg::testing {

inline void require_gpu() {
  if (cuda_device_count() > 0) return;
  std::printf("SKIPPED: no usable GPU (%s)\n", cuda_status().c_str());
  std::fflush(stdout);
  std::exit(77);
}

inline const Device kGpu = Device::cuda(0);

// A generator seeded freshly for each run; the seed is printed so a failure can be replayed
// (MMG_TEST_SEED=... fixes it).
inline Generator& fresh_gen() {
  static Generator g([] {
    uint64_t seed = std::random_device{}();
    if (const char* env = std::getenv("MMG_TEST_SEED")) seed = std::strtoull(env, nullptr, 10);
    std::printf("cuda tests: random seed %llu (MMG_TEST_SEED to replay)\n", static_cast<unsigned long long>(seed));
    return seed;
  }());
  return g;
}

// Uniform values in [lo, hi) of dtype dt, on the CPU.
inline Tensor uniform(const Shape& s, DType dt, double lo, double hi) {
  return (rand(s, {.dtype = DType::f64}, &fresh_gen()) * (hi - lo) + lo).to(dt);
}

// Uniform integers in [lo, hi) of dtype dt, on the CPU.
inline Tensor integers(const Shape& s, DType dt, int64_t lo, int64_t hi) {
  return randint(lo, hi, s, {.dtype = DType::i64}, &fresh_gen()).to(dt);
}

// Fills k idle blocks of the allocator's size class for `bytes` with NaN bytes (0xFF: NaN in
// f32, f64, bf16 and f16; −1 / 255 / true in the integer types): the next allocations of
// that class, an op's output among them, start out poisoned.
inline void poison_outputs(size_t bytes, int k = 4) {
  std::vector<Tensor> blocks;
  for (int i = 0; i < k; ++i) {
    Tensor t = empty({static_cast<int64_t>(bytes)}, {.dtype = DType::u8, .device = kGpu});
    t.fill_(255);
    blocks.push_back(t);
  }
  cuda_synchronize(0);
}  // the blocks go back to the cache here, poisoned

inline void poison_like(const Shape& shape, DType dt) {
  poison_outputs(static_cast<size_t>(numel_of(shape)) * dtype_size(dt));
}

// got (any device) ≈ want (CPU): same shape and dtype, |got − want| ≤ atol + rtol·|want|
// elementwise, NaN only where want is NaN. Reports the first bad element.
inline void check_parity(const Tensor& got, const Tensor& want, double rtol, double atol, const std::string& what) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  CHECK(got.dtype() == want.dtype());
  const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool ok = std::isnan(w[i]) ? std::isnan(g[i])
                                     : (g[i] == w[i] || std::abs(g[i] - w[i]) <= atol + rtol * std::abs(w[i]));
    if (!ok) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++bad;
    }
  }
  if (bad) {
    FAIL_CHECK(what << ": " << bad << " of " << g.size() << " elements differ; first at " << first << ": cuda "
                    << g[first] << " vs cpu " << w[first]);
  }
}

// An op's parity, forward and backward: f runs on CPU copies and on CUDA copies of `inputs`
// (floating inputs require grad; others, such as indices and masks, pass as they are), the
// output memory poisoned before the CUDA call; the outputs must agree, then the gradients of
// Σ out ⊙ r for a random r, input by input. Returns the CUDA output.
template <class F>
inline Tensor check_op_parity(const std::string& name, const std::vector<Tensor>& inputs, F f, double rtol,
                              double atol) {
  std::vector<Tensor> cpu, gpu;
  for (const Tensor& t : inputs) {
    const bool diff = t.defined() && is_floating(t.dtype());
    Tensor c = t.defined() ? t.clone().detach() : t, g = t.defined() ? t.to(kGpu).detach() : t;
    if (diff) {
      c.requires_grad_(true);
      g.requires_grad_(true);
    }
    cpu.push_back(c);
    gpu.push_back(g);
  }
  Tensor want = f(cpu);
  poison_outputs(static_cast<size_t>(want.numel()) * dtype_size(want.dtype()));
  Tensor got = f(gpu);
  CHECK(got.device() == kGpu);
  check_parity(got, want, rtol, atol, name + " forward");
  if (!want.requires_grad()) return got;
  Tensor r = (rand(want.shape(), {.dtype = DType::f64}, &fresh_gen()) * 2.0 - 1.0).to(want.dtype());
  sum(mul(want, r)).backward();
  sum(mul(got, r.to(kGpu))).backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!cpu[i].defined() || !cpu[i].requires_grad()) continue;
    const std::string what = name + " gradient of input " + std::to_string(i);
    if (!cpu[i].grad().defined()) {
      CHECK_MESSAGE(!gpu[i].grad().defined(), what);
      continue;
    }
    REQUIRE_MESSAGE(gpu[i].grad().defined(), what);
    check_parity(gpu[i].grad(), cpu[i].grad(), rtol, atol, what);
  }
  return got;
}

// Tolerances by dtype: float results of the same formula differ by a few ulp between the CPU
// and CUDA math libraries.
inline double rtol_for(DType dt) { return dt == DType::f64 ? 1e-12 : (dt == DType::f32 ? 2e-6 : 0.0); }
inline double atol_for(DType dt) { return dt == DType::f64 ? 1e-14 : (dt == DType::f32 ? 1e-6 : 0.0); }

// Shapes with the sizes that break kernels: 1, primes, non-multiples of 32 and 256, a row
// longer than a block, and an empty one.
inline std::vector<Shape> odd_shapes() {
  return {{1}, {7}, {257}, {3, 1}, {5, 33}, {2, 3, 31}, {1, 1029}, {13, 1, 97}, {4, 0}, {}};
}

// A reduction's test case: input shape, reduced dims, keepdim; and its name in messages.
struct ReduceCase {
  Shape shape;
  Shape dims;
  bool keepdim;
};

inline std::string reduce_case_name(const std::string& op, const ReduceCase& c, DType dt) {
  return op + " " + dtype_name(dt) + " " + shape_str(c.shape) + " dims " + shape_str(c.dims) +
         (c.keepdim ? " keepdim" : "");
}

}  // namespace mmg::testing
