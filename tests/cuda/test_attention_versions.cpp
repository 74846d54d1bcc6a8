// Every version of the CUDA attention family that computes f32 and f64 (kernel_families()
// entry "attention": v1 through the scores, v2 flash; v3 and v4, 16-bit only, have
// test_attention_mma.cpp and test_attention_short.cpp) against the CPU op, forward and backward (dq, dk, dv), on
// fresh random inputs with the outputs and gradients poisoned first. The cases are the
// shapes that break tiled kernels: lengths 1, 7, 197, 257 (not multiples of the 32-row
// tiles), Sq = Sk, Sq < Sk and Sq > Sk with causal, cross-attention 64 over 197, key-padding
// masks with a fully masked batch row, head dims 32, 64, 128 (v2's own instances), 24 and 100
// (v2's zero-padded columns), 200 (past v2: the op falls back to v1), and B·H = 70000 (more
// tiles than v2's grid has blocks); a query mask (right-padded texts) on every version. Then a
// gradcheck in f64 on the device for each version,
// and for v2: the same bits on a second run (no atomics) and memory O(S), not O(S²).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/attention_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

struct Case {
  int64_t B, H, Sq, Sk, D;
  bool causal, mask;
};

std::string name_of(const Case& c, DType dt, int version) {
  return "attention v" + std::to_string(version) + " " + dtype_name(dt) + " B " + std::to_string(c.B) + " H " +
         std::to_string(c.H) + " Sq " + std::to_string(c.Sq) + " Sk " + std::to_string(c.Sk) + " D " +
         std::to_string(c.D) + (c.causal ? " causal" : "") + (c.mask ? " masked" : "");
}

// Forward and backward of case c on the CPU and on the GPU (the version chosen by the
// caller's guard): the output, then the gradients of Σ out ⊙ r for a random r.
void check_case(const Case& c, DType dt, int version, double rtol, double atol) {
  Tensor q = uniform({c.B, c.H, c.Sq, c.D}, dt, -1, 1);
  Tensor k = uniform({c.B, c.H, c.Sk, c.D}, dt, -1, 1);
  Tensor v = uniform({c.B, c.H, c.Sk, c.D}, dt, -1, 1);
  Tensor mask = c.mask ? key_mask_for(c.B, c.Sk) : Tensor();
  Tensor r = uniform({c.B, c.H, c.Sq, c.D}, dt, -1, 1);
  const bool causal = c.causal;
  check_attention_parity(
      name_of(c, dt, version), q, k, v, mask, r, dt,
      [causal](const Tensor& a, const Tensor& b, const Tensor& w, const Tensor& m, bool) {
        return scaled_dot_product_attention(a, b, w, m, causal);
      },
      {.rtol = rtol, .abs = atol});
}

}  // namespace

TEST_CASE("cuda attention, every version: forward and backward against the CPU op") {
  require_gpu();
  const std::vector<Case> cases = {
      {2, 3, 197, 197, 64, false, false},  // ViT
      {2, 2, 77, 77, 32, false, true},     // text with padding, batch row 0 fully masked
      {3, 2, 32, 32, 64, true, true},      // causal text, Sq = Sk = one tile
      {2, 2, 64, 197, 64, false, true},    // cross-attention: 64 queries over 197 image tokens
      {2, 1, 7, 33, 32, true, false},      // causal, Sq < Sk (keys 7.. seen by no query)
      {2, 1, 33, 7, 128, true, true},      // causal, Sq > Sk (queries 7.. see every key)
      {1, 2, 1, 1, 24, false, false},      // one query, one key; D 24 on the 32 instance
      {1, 2, 1, 257, 128, false, true},    // one query over 257 keys
      {2, 1, 257, 1, 24, true, true},      // 257 queries over one key, masked in batch 0
      {1, 2, 257, 257, 128, true, false},  // causal over 9 tiles a side
      {2, 2, 7, 7, 24, true, true},
      {2, 2, 197, 197, 24, false, true},
      {1, 3, 13, 29, 100, true, true},     // D 100 on the 128 instance
      {2, 2, 9, 11, 200, false, true},     // D 200: v2 takes v1's path
      {1000, 70, 1, 5, 32, false, true},   // B·H 70000: more tiles than blocks
  };
  REQUIRE(attention_version_count() >= 2);
  for (DType dt : {DType::f32, DType::f64}) {
    // f32: the same sums in another order, a few ulp per term; sums over up to 257 terms
    // of size ~1 want an absolute floor above the relative tolerance.
    const double rtol = dt == DType::f64 ? 1e-10 : 1e-5;
    const double atol = dt == DType::f64 ? 1e-10 : 3e-5;
    for (int version : attention_versions_for(dt)) {
      KernelVersionGuard guard("attention", version);
      for (const Case& c : cases) check_case(c, dt, version, rtol, atol);
    }
  }
}

// A query mask (pad tokens nobody reads): the CPU kernels skip the masked queries, the CUDA op
// zeroes their rows after its kernels. Right-padded texts of odd lengths (one of them empty, one
// with a gap), with the same mask on the keys as a text attending to itself has; every version,
// v3 and v4 in bf16 and f16.
TEST_CASE("cuda attention, every version: a query mask against the CPU op") {
  require_gpu();
  REQUIRE(attention_version_count() >= 2);
  const int64_t B = 5, H = 3, S = 37, lengths[B] = {7, 18, 37, 0, 13};
  std::vector<bool> real(B * S);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < S; ++i) real[b * S + i] = i < lengths[b] && !(b == 1 && i == 3);
  const Tensor qmask = from_vector<bool>(real, {B, S});
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    const bool half = dt != DType::f32;
    for (int version : attention_versions_for(dt)) {
      if (half && version <= 2) continue;  // v1 and v2 in 16 bits: the test above
      KernelVersionGuard guard("attention", version);
      for (bool causal : {false, true}) {
        Tensor q = uniform({B, H, S, 24}, dt, -1, 1), k = uniform({B, H, S, 24}, dt, -1, 1);
        Tensor v = uniform({B, H, S, 24}, dt, -1, 1), r = uniform({B, H, S, 24}, dt, -1, 1);
        const std::string name = "attention v" + std::to_string(version) + " " + dtype_name(dt) + " query mask" +
                                 (causal ? " causal" : "");
        check_attention_parity(
            name, q, k, v, qmask, r, half ? DType::f32 : dt,
            [&qmask, causal](const Tensor& a, const Tensor& b, const Tensor& w, const Tensor& m, bool gpu) {
              return scaled_dot_product_attention(a, b, w, m, causal, std::nullopt, 0.0, nullptr,
                                                  gpu ? qmask.to(kGpu) : qmask);
            },
            half ? half_attention_tolerance(dt) : AttentionTolerance{.rtol = 1e-5, .abs = 3e-5});
      }
    }
  }
}

TEST_CASE("cuda attention, v1 and v2: bf16 inputs compute in f32") {
  require_gpu();
  REQUIRE(attention_version_count() >= 2);
  Tensor q = uniform({2, 2, 40, 64}, DType::bf16, -1, 1), k = uniform({2, 2, 50, 64}, DType::bf16, -1, 1);
  Tensor v = uniform({2, 2, 50, 64}, DType::bf16, -1, 1);
  Tensor mask = key_mask_for(2, 50);
  Tensor want = scaled_dot_product_attention(q, k, v, mask, true);
  for (int version : attention_versions_for(DType::f32)) {  // v3 and v4: their own tests
    KernelVersionGuard guard("attention", version);
    Tensor got = scaled_dot_product_attention(q.to(kGpu), k.to(kGpu), v.to(kGpu), mask.to(kGpu), true);
    check_parity(got, want, 1e-2, 1e-2, "attention bf16 v" + std::to_string(version));
  }
}

TEST_CASE("cuda attention, every version: gradcheck in f64 on the device, with masks and causal") {
  require_gpu();
  struct Small {
    int64_t B, H, Sq, Sk, D;
    bool causal, mask;
  };
  const std::vector<Small> cases = {
      {2, 1, 5, 7, 3, false, true}, {1, 2, 6, 4, 5, true, false}, {2, 1, 4, 6, 3, true, true}, {2, 2, 3, 3, 8, true, true}};
  REQUIRE(attention_version_count() >= 2);
  for (int version : attention_versions_for(DType::f64)) {
    KernelVersionGuard guard("attention", version);
    for (const Small& c : cases) {
      Tensor q = uniform({c.B, c.H, c.Sq, c.D}, DType::f64, -1, 1).to(kGpu);
      Tensor k = uniform({c.B, c.H, c.Sk, c.D}, DType::f64, -1, 1).to(kGpu);
      Tensor v = uniform({c.B, c.H, c.Sk, c.D}, DType::f64, -1, 1).to(kGpu);
      Tensor mask = c.mask ? key_mask_for(c.B, c.Sk).to(kGpu) : Tensor();
      const bool causal = c.causal;
      GradcheckResult res = gradcheck(
          [causal](const std::vector<Tensor>& a) {
            return scaled_dot_product_attention(a[0], a[1], a[2], a.size() > 3 ? a[3] : Tensor(), causal);
          },
          c.mask ? std::vector<Tensor>{q, k, v, mask} : std::vector<Tensor>{q, k, v});
      INFO(name_of({c.B, c.H, c.Sq, c.Sk, c.D, c.causal, c.mask}, DType::f64, version));
      CHECK_MESSAGE(res.ok, res.message);
      CHECK(res.elements_checked == q.numel() + k.numel() + v.numel());
    }
  }
}

TEST_CASE("cuda attention v2: the backward gives the same bits on every run (no atomics)") {
  require_gpu();
  KernelVersionGuard guard("attention", 2);
  Tensor q = uniform({2, 3, 197, 64}, DType::f32, -1, 1), k = uniform({2, 3, 197, 64}, DType::f32, -1, 1);
  Tensor v = uniform({2, 3, 197, 64}, DType::f32, -1, 1), r = uniform({2, 3, 197, 64}, DType::f32, -1, 1);
  Tensor mask = key_mask_for(2, 197).to(kGpu);
  std::vector<Tensor> first;
  for (int run = 0; run < 2; ++run) {
    Tensor qg = leaf(q, kGpu), kg = leaf(k, kGpu), vg = leaf(v, kGpu);
    Tensor out = scaled_dot_product_attention(qg, kg, vg, mask, false);
    sum(mul(out, r.to(kGpu))).backward();
    const std::vector<Tensor> now = {out.detach().to(Device::cpu()), qg.grad().to(Device::cpu()),
                                     kg.grad().to(Device::cpu()), vg.grad().to(Device::cpu())};
    if (run == 0) {
      first = now;
      continue;
    }
    const char* names[] = {"out", "dq", "dk", "dv"};
    for (size_t i = 0; i < now.size(); ++i) check_parity(now[i], first[i], 0.0, 0.0, std::string("rerun ") + names[i]);
  }
}

TEST_CASE("cuda attention v2: memory grows with S, not S² (v1 keeps P)") {
  require_gpu();
  // B·H = 4, S = 2048, D = 64, f32: each of q, k, v, out is 2 MiB; P would be 64 MiB.
  const int64_t S = 2048;
  const size_t p_bytes = size_t(4) * S * S * sizeof(float);
  Tensor q = uniform({1, 4, S, 64}, DType::f32, -1, 1).to(kGpu), k = uniform({1, 4, S, 64}, DType::f32, -1, 1).to(kGpu);
  Tensor v = uniform({1, 4, S, 64}, DType::f32, -1, 1).to(kGpu);
  q.requires_grad_(true);
  k.requires_grad_(true);
  v.requires_grad_(true);
  auto peak_growth = [&](int version) {
    KernelVersionGuard guard("attention", version);
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
    cuda_synchronize(0);
    const size_t before = cuda_memory_stats(0).allocated;
    cuda_reset_peak_memory(0);
    {
      Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), true);
      sum(out).backward();
    }
    cuda_synchronize(0);
    return cuda_memory_stats(0).peak_allocated - before;
  };
  const size_t v2 = peak_growth(2), v1 = peak_growth(1);
  INFO("peak growth: v1 " << v1 << " bytes, v2 " << v2 << " bytes, P " << p_bytes << " bytes");
  CHECK(v1 >= p_bytes);      // v1 holds P (and dS) at its peak
  CHECK(v2 < p_bytes / 2);   // v2: out, lse, Δ, the gradients — a few 2 MiB buffers
}
