// layer_norm on CUDA against the CPU: rows shorter and longer than the warp-per-row limit
// (1024), several trailing dims normalised together, with and without weight and bias, a
// large mean (the two-pass variance), more rows than the dγ/dβ row blocks (64), one row,
// bf16 — forward on poisoned outputs, gradients of x, weight and bias through autograd.
// Every case runs for each version of the kernel family "layer_norm" (v2: Welford statistics,
// 16-byte accesses where rows are whole packs and aligned — so also rows of multiples of 4
// and a misaligned view). bf16 and f16 x run natively (f32 math, one rounding at the store)
// with weight and bias of the same dtype or f32, against the CPU op, which does the same.
#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

// x in dt; weight and bias in pdt (dt when unset: f32 beside 16-bit x is the mixed case).
void check_layer_norm(const Shape& xs, const Shape& ns, bool affine, DType dt, double offset, double rtol,
                      double atol, std::optional<DType> pdt = std::nullopt) {
  const DType p = pdt.value_or(dt);
  const std::string name = "layer_norm " + dtype_name(dt) + " " + shape_str(xs) + " over " + shape_str(ns) +
                           (affine ? " with weight and bias in " + dtype_name(p) : "") +
                           (offset != 0 ? " with a large mean" : "");
  Tensor x = uniform(xs, dt, -2 + offset, 2 + offset);
  Tensor w = uniform(ns, p, 0.5, 1.5), b = uniform(ns, p, -1, 1);
  auto make = [&](const Tensor& t, Device d) { return t.to(d).detach().requires_grad_(true); };
  Tensor xc = make(x, Device::cpu()), wc = make(w, Device::cpu()), bc = make(b, Device::cpu());
  Tensor xg = make(x, kGpu), wg = make(w, kGpu), bg = make(b, kGpu);
  Tensor want = affine ? layer_norm(xc, ns, wc, bc) : layer_norm(xc, ns);
  poison_like(want.shape(), want.dtype());
  Tensor got = affine ? layer_norm(xg, ns, wg, bg) : layer_norm(xg, ns);
  CHECK(got.device() == kGpu);
  check_parity(got, want, rtol, atol, name + " forward");
  Tensor r = uniform(want.shape(), dt, -1, 1);
  (want * r).sum().backward();
  (got * r.to(kGpu)).sum().backward();
  check_parity(xg.grad(), xc.grad(), rtol * 10, atol * 10, name + " dx");
  if (affine) {
    check_parity(wg.grad(), wc.grad(), rtol * 10, atol * 10, name + " dweight");
    check_parity(bg.grad(), bc.grad(), rtol * 10, atol * 10, name + " dbias");
  }
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

TEST_CASE("cuda layer_norm: forward and backward, odd sizes, both kernels, f32 and f64") {
  require_gpu();
  struct Case {
    Shape x, normalized;
  };
  const std::vector<Case> cases = {{{1, 1}, {1}},       {{3, 7}, {7}},       {{5, 33}, {33}},     {{2, 13, 97}, {97}},
                                   {{4, 1024}, {1024}}, {{3, 1025}, {1025}}, {{2, 5, 7}, {5, 7}}, {{131, 40}, {40}},
                                   {{2, 4099}, {4099}}, {{37}, {37}}};
  for_each_version("layer_norm", [&] {
    for (DType dt : {DType::f32, DType::f64}) {
      for (const Case& c : cases) {
        for (bool affine : {false, true}) {
          check_layer_norm(c.x, c.normalized, affine, dt, 0.0, rtol_for(dt) * 20, atol_for(dt) * 20);
        }
      }
      check_layer_norm({6, 300}, {300}, true, dt, 1000.0, dt == DType::f64 ? 1e-9 : 1e-3,
                       dt == DType::f64 ? 1e-9 : 1e-3);
    }
    check_layer_norm({7, 515}, {515}, true, DType::bf16, 0.0, 2e-2, 2e-2);
  });
}

TEST_CASE("cuda layer_norm, every version: rows of whole float4s, aligned and not") {
  require_gpu();
  for_each_version("layer_norm", [] {
    // Warp rows and block rows of multiples of 4, several trailing dims, more rows than the
    // dγ/dβ row blocks, and a large mean (the statistics' cancellation).
    struct Case {
      Shape x, normalized;
    };
    const std::vector<Case> cases = {{{1, 4}, {4}},       {{9, 8}, {8}},          {{3, 768}, {768}},
                                     {{4, 1020}, {1020}}, {{4, 1024}, {1024}},    {{2, 1028}, {1028}},
                                     {{2, 3072}, {3072}}, {{2, 3, 4, 8}, {4, 8}}, {{300, 12}, {12}}};
    for (const Case& c : cases)
      for (bool affine : {false, true})
        check_layer_norm(c.x, c.normalized, affine, DType::f32, 0.0, rtol_for(DType::f32) * 20,
                         atol_for(DType::f32) * 20);
    check_layer_norm({6, 1024}, {1024}, true, DType::f32, 1000.0, 1e-3, 1e-3);
    check_layer_norm({3, 2048}, {2048}, true, DType::f32, 1000.0, 1e-3, 1e-3);

    // A view that starts 4 bytes past an aligned address: v2 takes its one-element path.
    const int64_t rows = 5, cols = 768;
    Tensor flat = uniform({rows * cols + 1}, DType::f32, -2, 2), w = uniform({cols}, DType::f32, 0.5, 1.5),
           b = uniform({cols}, DType::f32, -1, 1);
    Tensor xg = flat.to(kGpu).slice(0, 1, rows * cols + 1).view({rows, cols});
    REQUIRE(reinterpret_cast<uintptr_t>(xg.data_ptr()) % 16 != 0);
    Tensor want = layer_norm(flat.slice(0, 1, rows * cols + 1).view({rows, cols}), {cols}, w, b);
    poison_like(want.shape(), want.dtype());
    check_parity(layer_norm(xg, {cols}, w.to(kGpu), b.to(kGpu)), want, rtol_for(DType::f32) * 20,
                 atol_for(DType::f32) * 20, "layer_norm of a misaligned view");
  });
}

TEST_CASE("cuda layer_norm, every version, bf16 and f16 with 16-bit or f32 parameters: odd lengths, whole packs") {
  require_gpu();
  struct Case {
    Shape x, normalized;
  };
  // Odd lengths (v2 one element at a time), warp and block rows of whole 8-element packs
  // (with an f32 γ: two 16-byte reads per pack), more rows than the dγ/dβ row blocks (64),
  // several trailing dims normalised together.
  const std::vector<Case> cases = {{{3, 1}, {1}},       {{3, 7}, {7}},          {{2, 127}, {127}},
                                   {{5, 769}, {769}},   {{3, 3073}, {3073}},    {{9, 8}, {8}},
                                   {{3, 768}, {768}},   {{4, 1024}, {1024}},    {{2, 1032}, {1032}},
                                   {{2, 2048}, {2048}}, {{300, 16}, {16}},      {{2, 3, 5, 8}, {5, 8}}};
  for_each_version("layer_norm", [&] {
    for (DType dt : {DType::bf16, DType::f16}) {
      // Both devices compute in f32 and round once: at most an ulp of the 16-bit result apart.
      const double rtol = dt == DType::bf16 ? 1e-2 : 2e-3, atol = dt == DType::bf16 ? 1e-3 : 2e-4;
      for (DType p : {dt, DType::f32})
        for (const Case& c : cases)
          for (bool affine : {false, true}) check_layer_norm(c.x, c.normalized, affine, dt, 0.0, rtol, atol, p);
    }
  });
}

TEST_CASE("cuda layer_norm, every version, bf16: views 2 bytes and 16 bytes past an aligned address") {
  require_gpu();
  for_each_version("layer_norm", [] {
    for (DType p : {DType::bf16, DType::f32}) {
      // Offset 1 element: misaligned, v2 reads one element at a time. Offset 8: aligned, packs.
      for (int64_t offset : {1, 8}) {
        const int64_t rows = 5, cols = 768;
        Tensor flat = uniform({rows * cols + offset}, DType::bf16, -2, 2), w = uniform({cols}, p, 0.5, 1.5),
               b = uniform({cols}, p, -1, 1);
        Tensor xg = flat.to(kGpu).slice(0, offset, rows * cols + offset).view({rows, cols});
        CHECK((reinterpret_cast<uintptr_t>(xg.data_ptr()) % 16 == 0) == (offset == 8));
        Tensor want = layer_norm(flat.slice(0, offset, rows * cols + offset).view({rows, cols}), {cols}, w, b);
        poison_like(want.shape(), want.dtype());
        check_parity(layer_norm(xg, {cols}, w.to(kGpu), b.to(kGpu)), want, 1e-2, 1e-3,
                     "layer_norm of a bf16 view at offset " + std::to_string(offset) + ", parameters " +
                         dtype_name(p));
      }
    }
  });
}
