// softmax and log_softmax on CUDA against the CPU: rows shorter than a warp, around the
// warp-per-row / block-per-row switch (1024) and longer than a block, over the last and
// over an inner dim, large logits (no overflow), rows of −inf (NaN, as on the CPU), bf16 —
// forward on poisoned outputs and the gradient through autograd. Every case runs for each
// version of the kernel family "softmax" (v2: online statistics, 16-byte accesses where the
// rows are whole packs and aligned — so also rows of multiples of 4 and a misaligned view).
// bf16 and f16 run natively (f32 math, one rounding at the store) against the CPU op, which
// does the same: odd lengths, rows longer than a block, rows of whole 8-element packs and
// views that break their alignment.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

void check_softmax(bool log, const Tensor& x, int64_t dim, double rtol, double atol) {
  const std::string name = std::string(log ? "log_softmax " : "softmax ") + dtype_name(x.dtype()) + " " +
                           shape_str(x.shape()) + " dim " + std::to_string(dim);
  auto f = [&](const Tensor& t) { return log ? log_softmax(t, dim) : softmax(t, dim); };
  Tensor xc = x.clone().detach().requires_grad_(true);
  Tensor xg = x.to(kGpu).detach().requires_grad_(true);
  Tensor want = f(xc);
  poison_like(want.shape(), want.dtype());
  Tensor got = f(xg);
  CHECK(got.device() == kGpu);
  check_parity(got, want, rtol, atol, name + " forward");
  Tensor r = uniform(want.shape(), want.dtype(), -1, 1);
  (want * r).sum().backward();
  (got * r.to(kGpu)).sum().backward();
  check_parity(xg.grad(), xc.grad(), rtol * 4, atol * 4, name + " gradient");
}

// The body once for each version of the kernel family, that version set.
template <class F>
void for_each_version(const std::string& family, F body) {
  const KernelFamily* fam = nullptr;
  for (const KernelFamily& f : kernel_families())
    if (f.name == family) fam = &f;
  REQUIRE_MESSAGE(fam != nullptr, "no kernel family " << family);
  for (int v = 1; v <= static_cast<int>(fam->versions.size()); ++v) {
    KernelVersionGuard guard(family, v);
    INFO(family << " version " << v);
    body();
  }
}

}  // namespace

TEST_CASE("cuda softmax and log_softmax: odd row lengths, both kernels, both dims, f32 and f64") {
  require_gpu();
  for_each_version("softmax", [] {
    for (bool log : {false, true}) {
      for (DType dt : {DType::f32, DType::f64}) {
        for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{257, 33}, Shape{5, 1024}, Shape{5, 1025}, Shape{2, 4099},
                               Shape{13}, Shape{2, 3, 97}}) {
          check_softmax(log, uniform(s, dt, -8, 8), -1, rtol_for(dt) * 8, atol_for(dt) * 4);
          if (s.size() >= 2) check_softmax(log, uniform(s, dt, -8, 8), 0, rtol_for(dt) * 8, atol_for(dt) * 4);
        }
      }
    }
  });
}

TEST_CASE("cuda softmax: large logits, rows of -inf, masked entries, bf16") {
  require_gpu();
  for_each_version("softmax", [] {
    // Logits of ±1e4 would overflow exp without the max subtraction.
    check_softmax(false, uniform({4, 300}, DType::f32, -1e4, 1e4), -1, 1e-5, 1e-6);
    check_softmax(true, uniform({4, 300}, DType::f32, -1e4, 1e4), -1, 1e-5, 1e-3);
    // A masked row (some −inf) is fine; a row of all −inf is NaN on both devices (forward only:
    // its gradient is NaN too).
    Tensor m = tensor({{0.5, -INFINITY, 2.0, -INFINITY}, {-INFINITY, -INFINITY, -INFINITY, -INFINITY}});
    for (bool log : {false, true}) {
      Tensor want = log ? log_softmax(m) : softmax(m);
      Tensor got = log ? log_softmax(m.to(kGpu)) : softmax(m.to(kGpu));
      check_parity(got, want, 1e-6, 1e-7, log ? "log_softmax with -inf" : "softmax with -inf");
    }
    check_softmax(false, uniform({7, 515}, DType::bf16, -4, 4), -1, 1e-2, 1e-2);
    // Masked entries among whole float4s (v2's packed path), in both row kernels.
    for (int64_t cols : {64, 2048}) {
      Tensor x = uniform({3, cols}, DType::f32, -3, 3);
      for (int64_t j = 0; j < cols; j += 5) x.slice(1, j, j + 1).fill_(-INFINITY);
      check_softmax(false, x, -1, 1e-5, 1e-6);
    }
  });
}

TEST_CASE("cuda softmax and log_softmax, every version: rows of whole float4s, aligned and not") {
  require_gpu();
  for_each_version("softmax", [] {
    for (bool log : {false, true}) {
      // Rows of multiples of 4: warp rows (up to 1024) and block rows, a pack count that is
      // not a multiple of the group, more rows than the grid covers at once.
      for (const Shape& s : {Shape{1, 4}, Shape{9, 8}, Shape{3, 768}, Shape{5, 1020}, Shape{5, 1024}, Shape{2, 1028},
                             Shape{2, 3072}, Shape{1, 4100}, Shape{3000, 12}}) {
        check_softmax(log, uniform(s, DType::f32, -8, 8), -1, rtol_for(DType::f32) * 8, atol_for(DType::f32) * 4);
      }
      // A view that starts 4 bytes past an aligned address: rows of 768 floats, not 16-byte
      // aligned, so v2 takes its one-element path; poisoned output, parity with the CPU.
      const int64_t rows = 5, cols = 768;
      Tensor flat = uniform({rows * cols + 1}, DType::f32, -8, 8);
      Tensor xg = flat.to(kGpu).slice(0, 1, rows * cols + 1).view({rows, cols});
      REQUIRE(reinterpret_cast<uintptr_t>(xg.data_ptr()) % 16 != 0);
      Tensor want = log ? log_softmax(flat.slice(0, 1, rows * cols + 1).view({rows, cols}))
                        : softmax(flat.slice(0, 1, rows * cols + 1).view({rows, cols}));
      poison_like(want.shape(), want.dtype());
      check_parity(log ? log_softmax(xg) : softmax(xg), want, rtol_for(DType::f32) * 8, atol_for(DType::f32) * 4,
                   std::string(log ? "log_softmax" : "softmax") + " of a misaligned view");
    }
  });
}

namespace {

// 16-bit tolerances: both devices compute in f32 and round once, so an element may differ by
// one ulp of the 16-bit result (2⁻⁷ relative for bf16, 2⁻¹⁰ for f16) where the two f32
// results straddle a rounding boundary.
double rtol_16(DType dt) { return dt == DType::bf16 ? 1e-2 : 2e-3; }
double atol_16(DType dt) { return dt == DType::bf16 ? 1e-4 : 2e-5; }

}  // namespace

TEST_CASE("cuda softmax and log_softmax, every version, bf16 and f16: odd lengths, long rows, whole packs") {
  require_gpu();
  for_each_version("softmax", [] {
    for (DType dt : {DType::bf16, DType::f16}) {
      for (bool log : {false, true}) {
        // Odd lengths (V = 1 in v2), lengths around the warp/block switch, whole 8-element
        // packs in warp rows and block rows, more rows than the grid covers at once.
        for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{2, 127}, Shape{5, 769}, Shape{3, 3073}, Shape{9, 8},
                               Shape{3, 768}, Shape{5, 1024}, Shape{2, 1032}, Shape{2, 4096}, Shape{3000, 16},
                               Shape{2, 3, 97}}) {
          check_softmax(log, uniform(s, dt, -8, 8), -1, rtol_16(dt), atol_16(dt));
          if (s.size() >= 2 && s[0] > 1) check_softmax(log, uniform(s, dt, -8, 8), 0, rtol_16(dt), atol_16(dt));
        }
      }
      // Masked entries among whole packs, and a row of all −∞ (NaN on both devices).
      for (int64_t cols : {64, 2048}) {
        Tensor x = uniform({3, cols}, dt, -3, 3);
        for (int64_t j = 0; j < cols; j += 5) x.slice(1, j, j + 1).fill_(-INFINITY);
        check_softmax(false, x, -1, rtol_16(dt), atol_16(dt));
      }
      Tensor m = tensor({{0.5, -INFINITY, 2.0, -INFINITY}, {-INFINITY, -INFINITY, -INFINITY, -INFINITY}}).to(dt);
      check_parity(softmax(m.to(kGpu)), softmax(m), rtol_16(dt), atol_16(dt),
                   std::string("softmax with -inf, ") + dtype_name(dt));
    }
  });
}

TEST_CASE("cuda softmax, every version, bf16 and f16: views 2 bytes and 16 bytes past an aligned address") {
  require_gpu();
  for_each_version("softmax", [] {
    for (DType dt : {DType::bf16, DType::f16}) {
      for (bool log : {false, true}) {
        // Rows of 768 (96 packs of 8). Offset 1 element: misaligned, v2 reads one element at
        // a time. Offset 8 elements: 16-byte aligned again, packs. Both poisoned, vs the CPU.
        for (int64_t offset : {1, 8}) {
          const int64_t rows = 5, cols = 768;
          Tensor flat = uniform({rows * cols + offset}, dt, -8, 8);
          Tensor xg = flat.to(kGpu).slice(0, offset, rows * cols + offset).view({rows, cols});
          CHECK((reinterpret_cast<uintptr_t>(xg.data_ptr()) % 16 == 0) == (offset == 8));
          Tensor xc = flat.slice(0, offset, rows * cols + offset).view({rows, cols});
          Tensor want = log ? log_softmax(xc) : softmax(xc);
          poison_like(want.shape(), want.dtype());
          check_parity(log ? log_softmax(xg) : softmax(xg), want, rtol_16(dt), atol_16(dt),
                       std::string(log ? "log_softmax" : "softmax") + " of a view at offset " +
                           std::to_string(offset) + ", " + dtype_name(dt));
        }
      }
    }
  });
}
