// linear on CUDA, every version of its kernel family ("linear": v1 bias copied into y and
// the GEMM accumulating onto it; v2 cuBLASLt epilogues, BIAS forward and BGRADB for the bias
// gradient) against the CPU: odd sizes (1, 7, 197, 769) for each of rows, in and out, with
// and without bias, f32 / f64 / bf16 / f16, forward on poisoned outputs and every gradient.
// Then that v2 does run its epilogues where cuBLASLt has them (its counts move), and v1 never.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

// Sums of length n on two devices differ by their order: a few n·ulp in f32 and f64; in the
// 16-bit types one rounding step of the result (f32 accumulation on both).
double linear_tol(DType dt, int64_t n) {
  switch (dt) {
    case DType::f64: return 1e-12 * static_cast<double>(n + 8);
    case DType::f32: return 2e-6 * static_cast<double>(n + 8);
    case DType::bf16: return 8e-3;
    default: return 1.5e-3;
  }
}

const int64_t kSizes[] = {1, 7, 197, 769};

}  // namespace

TEST_CASE("cuda linear: every version equals the CPU, odd sizes, with and without bias, forward and gradients") {
  require_gpu();
  int versions = 0;
  for (const KernelFamily& f : kernel_families())
    if (f.name == "linear") versions = static_cast<int>(f.versions.size());
  REQUIRE(versions >= 2);
  for (int v = 1; v <= versions; ++v) {
    KernelVersionGuard version("linear", v);
    for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16})
      for (int64_t rows : kSizes)
        for (int64_t in : kSizes)
          for (int64_t out : kSizes) {
            // Small weights keep the 16-bit sums in range and their roundings comparable.
            Tensor x = uniform({rows, in}, dt, -1, 1), w = uniform({out, in}, dt, -0.5, 0.5);
            Tensor b = uniform({out}, dt, -1, 1);
            const std::string what = "linear v" + std::to_string(v) + " " + dtype_name(dt) + " rows " +
                                     std::to_string(rows) + " in " + std::to_string(in) + " out " +
                                     std::to_string(out);
            const double tol = linear_tol(dt, std::max({rows, in, out}));  // the longest sum of the three products
            check_op_parity(what + " with bias", {x, w, b},
                            [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); }, tol, tol);
            check_op_parity(what, {x, w}, [](const std::vector<Tensor>& t) { return linear(t[0], t[1]); }, tol,
                            tol);
          }
  }
}

TEST_CASE("cuda linear: leading dims, a broadcast gradient (sum), and a bias that alone needs its gradient") {
  require_gpu();
  for (int v : {1, 2}) {
    KernelVersionGuard version("linear", v);
    for (DType dt : {DType::f32, DType::bf16}) {
      const double tol = linear_tol(dt, 197);
      const std::string what = "v" + std::to_string(v) + " " + dtype_name(dt);
      Tensor x = uniform({3, 5, 197}, dt, -1, 1), w = uniform({31, 197}, dt, -0.5, 0.5), b = uniform({31}, dt, -1, 1);
      // sum's backward hands linear a gradient expanded from one value (all strides 0).
      Tensor xc = x.clone().requires_grad_(true), wc = w.clone().requires_grad_(true), bc = b.clone().requires_grad_(true);
      Tensor xg = x.to(kGpu).requires_grad_(true), wg = w.to(kGpu).requires_grad_(true), bg = b.to(kGpu).requires_grad_(true);
      Tensor want = linear(xc, wc, bc);
      poison_like(want.shape(), dt);
      Tensor got = linear(xg, wg, bg);
      check_parity(got, want, tol, tol, what + " [3,5,197] forward");
      want.sum().backward();
      got.sum().backward();
      check_parity(xg.grad(), xc.grad(), tol, tol, what + " x gradient of a sum");
      check_parity(wg.grad(), wc.grad(), linear_tol(dt, 15), linear_tol(dt, 15), what + " weight gradient of a sum");
      check_parity(bg.grad(), bc.grad(), linear_tol(dt, 15), linear_tol(dt, 15), what + " bias gradient of a sum");
      // Frozen x and weight: only the bias learns (the fused weight-and-bias gradient is not needed).
      Tensor b2c = b.clone().requires_grad_(true), b2g = b.to(kGpu).requires_grad_(true);
      Tensor r = uniform({3, 5, 31}, dt, -1, 1);
      (linear(x, w, b2c) * r).sum().backward();
      (linear(x.to(kGpu), w.to(kGpu), b2g) * r.to(kGpu)).sum().backward();
      check_parity(b2g.grad(), b2c.grad(), linear_tol(dt, 15), linear_tol(dt, 15), what + " bias alone");
    }
  }
}

TEST_CASE("cuda linear: version 2 runs the cuBLASLt epilogues where they exist, version 1 never") {
  require_gpu();
  if constexpr (kWithCuda) {  // (this file also builds without CUDA, and skips)
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      Tensor x = uniform({64, 128}, dt, -1, 1).to(kGpu).requires_grad_(true);
      Tensor w = uniform({96, 128}, dt, -0.5, 0.5).to(kGpu).requires_grad_(true);
      Tensor b = uniform({96}, dt, -1, 1).to(kGpu).requires_grad_(true);
      {
        KernelVersionGuard v1("linear", 1);
        const cuda::GemmEpilogueStats before = cuda::gemm_epilogue_stats();
        linear(x, w, b).sum().backward();
        const cuda::GemmEpilogueStats after = cuda::gemm_epilogue_stats();
        CHECK(after.fused == before.fused);
        CHECK(after.composed == before.composed);
      }
      KernelVersionGuard v2("linear", 2);
      const cuda::GemmEpilogueStats s0 = cuda::gemm_epilogue_stats();
      Tensor y = linear(x, w, b);
      const cuda::GemmEpilogueStats s1 = cuda::gemm_epilogue_stats();
      INFO("dtype " << dtype_name(dt));
      CHECK_MESSAGE(s1.fused == s0.fused + 1, "the BIAS epilogue did not run (cuBLASLt refused it)");
      y.sum().backward();
      const cuda::GemmEpilogueStats s2 = cuda::gemm_epilogue_stats();
      if (dt == DType::f32) {
        // cuBLASLt does not document which types have BGRADB kernels; the uses we know of are
        // 16-bit. f32 may fall back to the composed gradients, which the parity tests cover.
        MESSAGE("f32 BGRADB epilogue: " << (s2.fused == s1.fused + 1 ? "ran" : "refused, composed instead"));
      } else {
        CHECK_MESSAGE(s2.fused == s1.fused + 1, "the BGRADB epilogue did not run (cuBLASLt refused it)");
      }
      // A single output feature: W has one row, which the epilogues are not asked for.
      Tensor w1 = uniform({1, 128}, dt, -0.5, 0.5).to(kGpu), b1 = uniform({1}, dt, -1, 1).to(kGpu);
      const cuda::GemmEpilogueStats s3 = cuda::gemm_epilogue_stats();
      linear(x.detach(), w1, b1);
      CHECK(cuda::gemm_epilogue_stats().composed == s3.composed + 1);
    }
  }
}
